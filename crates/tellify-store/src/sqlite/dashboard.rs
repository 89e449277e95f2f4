//! The dashboard's summaries in the SQLite store (see [`crate::dashboard`]).
//!
//! A chart walks the time index back from the end of its range, at most `max_examined`
//! rows, and lets SQLite bucket the field's numbers straight from the stored JSON: one
//! statement, no event decoded in Rust. The alert summaries read expression indexes on
//! the stored alert body (migration 13), so the processing and action code that writes
//! alerts has nothing new to keep up to date.

use jiff::Timestamp;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;
use tellify_engine::alerts::Alert;

use super::{read_json, search::field_path, unavailable};
use crate::{ChartAggregate, ChartQuery, StoreResult, SubscriptionAlerts, Viewer};

/// Indexes for the subscription list's state (every alert's subscription, state and last
/// time seen firing, covering the aggregate with its visibility check) and for "my acks
/// and shelves" (partial: only alerts someone acknowledged or shelved are in them).
pub(super) const MIGRATION: &str = r#"
CREATE INDEX alerts_subscription_state ON alerts(
    subscription_id, state, cleared, owner_user, owner_group,
    unixepoch(json_extract(body, '$.last_seen'), 'subsec'));
CREATE INDEX alerts_acked_by ON alerts(json_extract(body, '$.acked_by'))
    WHERE json_extract(body, '$.acked');
CREATE INDEX alerts_shelved_by ON alerts(json_extract(body, '$.shelved_by'))
    WHERE json_extract(body, '$.shelved_by') IS NOT NULL;
"#;

/// The chart's one statement. Parameters: ?1 since (ms), ?2 until (ms), ?3 most rows,
/// ?4 type (or NULL), ?5 the field's JSON path, ?6 buckets, ?7 the range's length (ms),
/// ?8 the group field's JSON path (NULL: one line), ?9 the envelope's JSON path to fall
/// back to (or NULL).
///
/// Each candidate's body is parsed once: the field and the group key are taken as JSON
/// text (`->`), grouped as such, and only each group's key is turned into text.
///
/// Rows: `(0, NULL, NULL, rows looked at, NULL, oldest time looked at)`, then per group
/// key (as JSON) and bucket `(1, key, bucket, count, sum, mean time)`, then
/// `(2, NULL, NULL, events with a value that is not a number, NULL, NULL)`.
const CHART_SQL: &str = "
WITH candidates AS MATERIALIZED (
    SELECT seq, time_ms FROM events INDEXED BY events_time
    WHERE time_ms >= ?1 AND time_ms < ?2
    ORDER BY time_ms DESC LIMIT ?3
),
picked AS MATERIALIZED (
    SELECT e.time_ms AS t, e.body -> ?5 AS raw,
           CASE WHEN ?8 IS NULL THEN '\"all\"'
                ELSE coalesce(e.body -> ?8, e.body -> ?9, '\"(none)\"') END AS g
    FROM candidates c CROSS JOIN events e
    WHERE e.seq = c.seq AND e.repeat_of IS NULL
      AND (?4 IS NULL OR json_extract(e.body, '$.type') = ?4)
      AND raw IS NOT NULL
)
SELECT 0, NULL, NULL, count(*), NULL, min(time_ms) FROM candidates
UNION ALL
SELECT 1, CASE WHEN json_type(g) = 'text' THEN g ->> '$' ELSE g END,
       min((t - ?1) * ?6 / ?7, ?6 - 1), count(*), total(CAST(raw AS REAL)), avg(t)
    FROM picked WHERE json_type(raw) IN ('integer', 'real') GROUP BY g, 3
UNION ALL
SELECT 2, NULL, NULL, count(*), NULL, NULL
    FROM picked WHERE json_type(raw) NOT IN ('integer', 'real')";

pub(super) fn chart(connection: &Connection, query: &ChartQuery) -> StoreResult<ChartAggregate> {
    let since = query.since.as_millisecond();
    let until = query.until.as_millisecond();
    let budget = query.max_examined.max(1);
    let buckets = query.buckets.max(1) as i64;
    let group = query.group.trim();
    let envelope = match group {
        "host" => Some("$.source.host"),
        "component" => Some("$.source.component"),
        "type" => Some("$.type"),
        "severity" => Some("$.severity"),
        _ => None,
    };
    let parameters = [
        SqlValue::Integer(since),
        SqlValue::Integer(until),
        SqlValue::Integer(budget as i64),
        query
            .event_type
            .clone()
            .map_or(SqlValue::Null, SqlValue::Text),
        SqlValue::Text(field_path(&query.field)),
        SqlValue::Integer(buckets),
        SqlValue::Integer((until - since).max(1)),
        if group.is_empty() {
            SqlValue::Null
        } else {
            SqlValue::Text(field_path(group))
        },
        envelope.map_or(SqlValue::Null, |path| SqlValue::Text(path.to_string())),
    ];
    let mut statement = connection.prepare_cached(CHART_SQL).map_err(unavailable)?;
    let mut rows = statement
        .query(rusqlite::params_from_iter(parameters.iter()))
        .map_err(unavailable)?;
    let mut aggregate = ChartAggregate::default();
    let mut oldest: Option<i64> = None;
    // key → bucket → (count, sum, sum of times): two JSON values can have one text (the
    // string "1" and the number 1), so groups with one key merge here.
    let mut lines = crate::dashboard::ChartLines::new();
    while let Some(row) = rows.next().map_err(unavailable)? {
        let part: i64 = row.get(0).map_err(unavailable)?;
        let count: i64 = row.get(3).map_err(unavailable)?;
        match part {
            0 => {
                aggregate.examined = count.max(0) as usize;
                oldest = row.get(5).map_err(unavailable)?;
            }
            1 => {
                let key: String = row.get(1).map_err(unavailable)?;
                let bucket: i64 = row.get(2).map_err(unavailable)?;
                let sum: f64 = row.get(4).map_err(unavailable)?;
                let mean: f64 = row.get(5).map_err(unavailable)?;
                let count = count.max(0) as u64;
                aggregate.numeric += count;
                let slot = lines
                    .entry(key)
                    .or_default()
                    .entry(bucket.max(0) as usize)
                    .or_insert((0, 0.0, 0.0));
                slot.0 += count;
                slot.1 += sum;
                slot.2 += mean * count as f64;
            }
            _ => aggregate.not_numeric = count.max(0) as u64,
        }
    }
    if aggregate.examined >= budget {
        aggregate.cut_at = oldest
            .map(Timestamp::from_millisecond)
            .transpose()
            .map_err(unavailable)?;
    }
    aggregate
        .with_lines(lines, query.max_series)
        .map_err(unavailable)
}

/// Who may see an alert, on the columns `owner_user` and `owner_group` of `alias`;
/// ?1 is the viewer's user id (NULL: everyone's alerts).
fn visible(alias: &str) -> String {
    format!(
        "(?1 IS NULL OR ({alias}.owner_group IS NULL AND {alias}.owner_user = ?1)
          OR {alias}.owner_group IN (SELECT group_id FROM group_members WHERE user_id = ?1))"
    )
}

const SUBSCRIPTION_ALERTS_SQL: &str = "
SELECT a.subscription_id, sum(a.state = 'firing' AND a.cleared = 0),
       max(unixepoch(json_extract(a.body, '$.last_seen'), 'subsec'))
FROM alerts a INDEXED BY alerts_subscription_state
WHERE a.subscription_id IN (SELECT s.id FROM subscriptions s WHERE {subscription_visible})
  AND {alert_visible}
GROUP BY a.subscription_id
ORDER BY a.subscription_id";

pub(super) fn subscription_alerts(
    connection: &Connection,
    viewer: Option<&Viewer>,
) -> StoreResult<Vec<SubscriptionAlerts>> {
    let sql = SUBSCRIPTION_ALERTS_SQL
        .replace("{subscription_visible}", &visible("s"))
        .replace("{alert_visible}", &visible("a"));
    let mut statement = connection.prepare_cached(&sql).map_err(unavailable)?;
    let user_id = viewer.map(|viewer| viewer.user_id.clone());
    let mut rows = statement.query([user_id]).map_err(unavailable)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next().map_err(unavailable)? {
        let last_seen: Option<f64> = row.get(2).map_err(unavailable)?;
        let last_fired = last_seen
            .map(|seconds| Timestamp::from_millisecond((seconds * 1000.0).round() as i64))
            .transpose()
            .map_err(unavailable)?;
        let firing: i64 = row.get(1).map_err(unavailable)?;
        found.push(SubscriptionAlerts {
            subscription_id: row.get(0).map_err(unavailable)?,
            firing: firing.max(0) as u64,
            last_fired,
        });
    }
    Ok(found)
}

const HELD_ALERTS_SQL: &str = "
SELECT id, owner_user, owner_group, body FROM alerts INDEXED BY alerts_acked_by
WHERE json_extract(body, '$.acked_by') = ?2 AND json_extract(body, '$.acked') AND cleared = 0
UNION
SELECT id, owner_user, owner_group, body FROM alerts INDEXED BY alerts_shelved_by
WHERE json_extract(body, '$.shelved_by') = ?2 AND cleared = 0
ORDER BY 1 DESC";

pub(super) fn held_alerts(
    connection: &Connection,
    actor: &str,
    viewer: Option<&Viewer>,
) -> StoreResult<Vec<Alert>> {
    let mut statement = connection
        .prepare_cached(HELD_ALERTS_SQL)
        .map_err(unavailable)?;
    let user_id = viewer.map(|viewer| viewer.user_id.clone());
    let mut rows = statement
        .query(rusqlite::params![user_id, actor])
        .map_err(unavailable)?;
    let mut alerts = Vec::new();
    while let Some(row) = rows.next().map_err(unavailable)? {
        let owner_user: Option<String> = row.get(1).map_err(unavailable)?;
        let owner_group: Option<String> = row.get(2).map_err(unavailable)?;
        let allowed = viewer
            .is_none_or(|viewer| viewer.can_see(owner_user.as_deref(), owner_group.as_deref()));
        if allowed {
            alerts.push(read_json(row.get(3).map_err(unavailable)?).map_err(unavailable)?);
        }
    }
    Ok(alerts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::query_plans::{migrated, plan};

    #[test]
    fn a_chart_walks_the_time_index_and_reads_only_the_rows_it_looked_at() {
        let connection = migrated();
        let plan = plan(&connection, CHART_SQL, 9);
        assert!(
            plan.contains("INDEX events_time (time_ms>? AND time_ms<?)"),
            "{plan}"
        );
        assert!(
            plan.contains("SEARCH e USING INTEGER PRIMARY KEY (rowid=?)"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN e"), "{plan}");
    }

    #[test]
    fn the_subscription_state_is_read_from_the_covering_index() {
        let connection = migrated();
        let sql = SUBSCRIPTION_ALERTS_SQL
            .replace("{subscription_visible}", &visible("s"))
            .replace("{alert_visible}", &visible("a"));
        let plan = plan(&connection, &sql, 1);
        assert!(
            plan.contains("COVERING INDEX alerts_subscription_state (subscription_id=?)"),
            "{plan}"
        );
    }

    #[test]
    fn held_alerts_are_found_through_the_partial_indexes() {
        let connection = migrated();
        let plan = plan(&connection, HELD_ALERTS_SQL, 2);
        assert!(plan.contains("INDEX alerts_acked_by (<expr>=?)"), "{plan}");
        assert!(
            plan.contains("INDEX alerts_shelved_by (<expr>=?)"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN alerts"), "{plan}");
    }
}
