//! Alerts on PostgreSQL: reads, the dashboard's summaries, history and its export, and
//! the processing commits ([`crate::processing`] over a PostgreSQL transaction), a
//! person's action and planned repeats.
//!
//! What a commit, an action or a repeat does is decided in [`crate::processing`]; this
//! file only carries it out as plain SQL over one transaction ([`PgProcessing`]).
//!
//! Several nodes write alerts at once, so two rules keep every change: each writer that
//! records history takes [`super::LOCK_HISTORY`] at its start (a processing commit with
//! derived events takes [`super::LOCK_EVENTS`] before it), so alert writers that record
//! history run one after the other and each reads the alert as the previous one left it;
//! and every alert a writer is about to change is read `FOR NO KEY UPDATE`, so a writer
//! that does not take the lock (offboarding rewrites names in alert bodies) cannot slip a
//! change in between the read and the write. Due repeats are claimed `FOR UPDATE SKIP
//! LOCKED`: two nodes planning repeats at once share the due schedules instead of both
//! planning the same one. Planning repeats only reads alerts, without a row lock: it holds
//! repeat rows that a commit may be about to change, so waiting for an alert a commit
//! holds could close a cycle (a notification's foreign key takes only a key-share lock,
//! which a `NO KEY UPDATE` does not block).
//!
//! **Invariant:** `alert_history.id` (an identity column) only grows, is never reused, and
//! becomes visible in order: it is handed out under [`super::LOCK_HISTORY`], held until
//! the commit.

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use postgres::types::{FromSql, ToSql};
use postgres::Row;
use tellify_engine::alerts::{Action, Alert, HistoryEntry, Transition};
use tellify_model::StoredEvent;

use super::{
    health_text, lock, millis, parse_time, read_json, time_text, unavailable, PostgresStore, Sql,
    Tx, LOCK_EVENTS, LOCK_HISTORY,
};
use crate::processing::{DueRepeat, ProcessingTx};
use crate::{
    AlertChange, AlertQuery, Appended, ClearedFilter, CommitOutcome, FilterErrorUpdate,
    LoggedAlertChange, NewNotification, PlannerRef, ProcessingCommit, ProcessingSnapshot,
    RepeatSchedule, StoreResult, SubscriptionAlerts, SubscriptionHealth, Viewer,
};

/// The alert tables. Besides the alert body (JSON text, as SQLite keeps it) an alert row
/// has the columns its lists filter on and the time it was last seen firing in
/// milliseconds (`last_seen_ms`), written with the body by every save, for the
/// dashboard's per-subscription summary (`alerts_subscription_state` covers it). Who
/// acknowledged or shelved an alert is read through partial expression indexes on the
/// body, so a rewrite of the body alone (offboarding) keeps them right. Ids compare
/// bytewise (`COLLATE "C"`), as SQLite does, whatever the database's collation: the lists
/// page and sort by them.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE alerts (
    id TEXT COLLATE "C" PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    group_key TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    cleared BOOLEAN NOT NULL,
    owner_user TEXT,
    owner_group TEXT,
    last_seen_ms BIGINT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (subscription_id, group_key)
);
CREATE INDEX alerts_owner ON alerts(owner_user);
CREATE INDEX alerts_subscription_state ON alerts(
    subscription_id, state, cleared, owner_user, owner_group, last_seen_ms);
CREATE INDEX alerts_acked_by ON alerts(((body::jsonb) ->> 'acked_by'))
    WHERE ((body::jsonb) -> 'acked') = 'true'::jsonb;
CREATE INDEX alerts_shelved_by ON alerts(((body::jsonb) ->> 'shelved_by'))
    WHERE ((body::jsonb) ->> 'shelved_by') IS NOT NULL;
CREATE TABLE alert_history (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX alert_history_alert ON alert_history(alert_id, id);
CREATE TABLE export_positions (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE repeats (
    alert_id TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    next_ms BIGINT NOT NULL,
    every_ms BIGINT NOT NULL,
    count BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (alert_id, user_id)
);
CREATE INDEX repeats_due ON repeats(next_ms);
"#;

pub(super) async fn alert(store: &PostgresStore, id: &str) -> StoreResult<Option<Alert>> {
    let id = id.to_string();
    store
        .read(move |client| {
            let row = client
                .query_opt("SELECT body FROM alerts WHERE id = $1", &[&id])
                .map_err(unavailable)?;
            row.map(|row| read_json(column::<&str>(&row, 0)?))
                .transpose()
        })
        .await
}

pub(super) async fn list_alerts(
    store: &PostgresStore,
    query: AlertQuery,
) -> StoreResult<Vec<Alert>> {
    store
        .read(move |client| {
            let statement = "SELECT id, owner_user, owner_group, body FROM alerts
                     WHERE ($1::text IS NULL OR id < $1)
                       AND ($2::text IS NULL OR state = $2)
                       AND ($3::text IS NULL OR subscription_id = $3)
                       AND ($4::text IS NULL OR severity = $4)
                       AND ($5::boolean IS NULL OR cleared = $5)
                       AND ($6::text IS NULL OR (owner_group IS NULL AND owner_user = $6)
                            OR owner_group IN (SELECT group_id FROM group_members
                                               WHERE user_id = $6))
                     ORDER BY id DESC LIMIT $7";
            let state = query.state.map(|state| state.as_str().to_string());
            let severity = query.severity.map(|severity| severity.as_str().to_string());
            let cleared = match query.cleared {
                ClearedFilter::Exclude => Some(false),
                ClearedFilter::Only => Some(true),
                ClearedFilter::Include => None,
            };
            let viewer_id = query.viewer.as_ref().map(|viewer| viewer.user_id.clone());
            // Pages of the size asked for: the viewer's own groups are checked again on
            // each row, so a page may keep fewer than it read and the next one follows.
            let page = i64::try_from(query.limit.max(1)).unwrap_or(i64::MAX);
            let mut before = query.before_id.clone();
            let mut alerts = Vec::new();
            while alerts.len() < query.limit {
                let rows = client
                    .query(
                        statement,
                        &[
                            &before,
                            &state,
                            &query.subscription_id,
                            &severity,
                            &cleared,
                            &viewer_id,
                            &page,
                        ],
                    )
                    .map_err(unavailable)?;
                for row in &rows {
                    if alerts.len() >= query.limit {
                        break;
                    }
                    let owner_user: Option<&str> = column(row, 1)?;
                    let owner_group: Option<&str> = column(row, 2)?;
                    let allowed = query
                        .viewer
                        .as_ref()
                        .is_none_or(|viewer| viewer.can_see(owner_user, owner_group));
                    if allowed {
                        alerts.push(read_json(column(row, 3)?)?);
                    }
                }
                let Some(last) = rows.last() else {
                    break;
                };
                if (rows.len() as i64) < page {
                    break;
                }
                before = Some(column::<String>(last, 0)?);
            }
            Ok(alerts)
        })
        .await
}

/// Who may see an alert, on the columns `owner_user` and `owner_group` of `alias`; $1 is
/// the viewer's user id (NULL: everyone's alerts).
fn visible(alias: &str) -> String {
    format!(
        "($1::text IS NULL OR ({alias}.owner_group IS NULL AND {alias}.owner_user = $1)
          OR {alias}.owner_group IN (SELECT group_id FROM group_members WHERE user_id = $1))"
    )
}

const SUBSCRIPTION_ALERTS_SQL: &str = "
SELECT a.subscription_id,
       count(*) FILTER (WHERE a.state = 'firing' AND NOT a.cleared),
       max(a.last_seen_ms)
FROM alerts a
WHERE a.subscription_id IN (SELECT s.id FROM subscriptions s WHERE {subscription_visible})
  AND {alert_visible}
GROUP BY a.subscription_id
ORDER BY a.subscription_id COLLATE \"C\"";

pub(super) async fn subscription_alerts(
    store: &PostgresStore,
    viewer: Option<&Viewer>,
) -> StoreResult<Vec<SubscriptionAlerts>> {
    let user_id = viewer.map(|viewer| viewer.user_id.clone());
    store
        .read(move |client| {
            let sql = SUBSCRIPTION_ALERTS_SQL
                .replace("{subscription_visible}", &visible("s"))
                .replace("{alert_visible}", &visible("a"));
            let rows = client.query(&sql, &[&user_id]).map_err(unavailable)?;
            let mut found = Vec::with_capacity(rows.len());
            for row in &rows {
                let firing: i64 = column(row, 1)?;
                let last_seen_ms: Option<i64> = column(row, 2)?;
                let last_fired = last_seen_ms
                    .map(Timestamp::from_millisecond)
                    .transpose()
                    .map_err(unavailable)?;
                found.push(SubscriptionAlerts {
                    subscription_id: column(row, 0)?,
                    firing: u64::try_from(firing).unwrap_or(0),
                    last_fired,
                });
            }
            Ok(found)
        })
        .await
}

/// The actor's acknowledged and shelved alerts, each through its partial index (the
/// predicates repeat the indexes' own).
const HELD_ALERTS_SQL: &str = "
SELECT id, owner_user, owner_group, body FROM alerts
WHERE ((body::jsonb) ->> 'acked_by') = $1 AND ((body::jsonb) -> 'acked') = 'true'::jsonb
  AND NOT cleared
UNION
SELECT id, owner_user, owner_group, body FROM alerts
WHERE ((body::jsonb) ->> 'shelved_by') = $1 AND NOT cleared
ORDER BY 1 DESC";

pub(super) async fn held_alerts(
    store: &PostgresStore,
    actor: &str,
    viewer: Option<&Viewer>,
) -> StoreResult<Vec<Alert>> {
    let actor = actor.to_string();
    let viewer = viewer.cloned();
    store
        .read(move |client| {
            let rows = client
                .query(HELD_ALERTS_SQL, &[&actor])
                .map_err(unavailable)?;
            let mut alerts = Vec::new();
            for row in &rows {
                let owner_user: Option<&str> = column(row, 1)?;
                let owner_group: Option<&str> = column(row, 2)?;
                let allowed = viewer
                    .as_ref()
                    .is_none_or(|viewer| viewer.can_see(owner_user, owner_group));
                if allowed {
                    alerts.push(read_json(column(row, 3)?)?);
                }
            }
            Ok(alerts)
        })
        .await
}

pub(super) async fn alert_history(
    store: &PostgresStore,
    id: &str,
) -> StoreResult<Vec<HistoryEntry>> {
    let id = id.to_string();
    store
        .read(move |client| {
            let rows = client
                .query(
                    "SELECT at, actor, action, detail FROM alert_history
                     WHERE alert_id = $1 ORDER BY id",
                    &[&id],
                )
                .map_err(unavailable)?;
            rows.iter().map(|row| read_history(row, 0)).collect()
        })
        .await
}

pub(super) async fn act_on_alert(
    store: &PostgresStore,
    id: &str,
    action: Action,
    actor: &str,
    now: Timestamp,
) -> StoreResult<AlertChange> {
    let (id, actor) = (id.to_string(), actor.to_string());
    store
        .write(move |tx| {
            lock(tx, LOCK_HISTORY)?;
            crate::processing::act_on_alert(&mut PgProcessing::new(tx), &id, &action, &actor, now)
        })
        .await
}

pub(super) async fn load_processing(store: &PostgresStore) -> StoreResult<ProcessingSnapshot> {
    store
        .read(|client| {
            let cursor: i64 = column(
                &client
                    .query_one("SELECT cursor FROM processing WHERE id = 1", &[])
                    .map_err(unavailable)?,
                0,
            )?;
            let rows = client
                .query("SELECT subscription_id, state FROM handler_state", &[])
                .map_err(unavailable)?;
            let mut states = HashMap::with_capacity(rows.len());
            for row in &rows {
                states.insert(column(row, 0)?, read_json(column(row, 1)?)?);
            }
            Ok(ProcessingSnapshot { cursor, states })
        })
        .await
}

/// Takes [`LOCK_EVENTS`] first when the commit appends derived events, then
/// [`LOCK_HISTORY`] always (see the module documentation): a commit without derived
/// events never waits for appends.
pub(super) async fn commit_processing(
    store: &PostgresStore,
    commit: ProcessingCommit,
) -> StoreResult<CommitOutcome> {
    store
        .write(move |tx| {
            if commit.derived.is_empty() {
                super::check_fence(tx, commit.lease.as_ref(), Some(LOCK_HISTORY))?;
            } else {
                super::check_fence(tx, commit.lease.as_ref(), None)?;
                lock(tx, LOCK_EVENTS)?;
                lock(tx, LOCK_HISTORY)?;
            }
            crate::processing::commit(&mut PgProcessing::new(tx), commit)
        })
        .await
}

pub(super) async fn plan_repeats(
    store: &PostgresStore,
    now: Timestamp,
    planner: PlannerRef,
    limit: usize,
) -> StoreResult<usize> {
    store
        .write(move |tx| {
            let mut processing = PgProcessing::new(tx);
            processing.lock_alerts = false;
            crate::processing::plan_repeats(&mut processing, now, &planner, limit)
        })
        .await
}

pub(super) async fn alert_changes_after(
    store: &PostgresStore,
    after: i64,
    limit: usize,
) -> StoreResult<Vec<LoggedAlertChange>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    store
        .read(move |client| {
            let rows = client
                .query(
                    "SELECT h.at, h.actor, h.action, h.detail, h.id, a.body
                     FROM alert_history h JOIN alerts a ON a.id = h.alert_id
                     WHERE h.id > $1 ORDER BY h.id LIMIT $2",
                    &[&after, &limit],
                )
                .map_err(unavailable)?;
            let mut changes = Vec::with_capacity(rows.len());
            for row in &rows {
                changes.push(LoggedAlertChange {
                    entry: read_history(row, 0)?,
                    position: column(row, 4)?,
                    alert: read_json(column(row, 5)?)?,
                });
            }
            Ok(changes)
        })
        .await
}

pub(super) async fn last_alert_change(store: &PostgresStore) -> StoreResult<i64> {
    store
        .read(|client| {
            let row = client
                .query_one("SELECT COALESCE(MAX(id), 0) FROM alert_history", &[])
                .map_err(unavailable)?;
            column(&row, 0)
        })
        .await
}

/// One column of a row; a value of an unexpected type is a store failure, not a panic.
fn column<'r, T: FromSql<'r>>(row: &'r Row, index: usize) -> StoreResult<T> {
    row.try_get(index).map_err(unavailable)
}

/// A history entry from the columns `at, actor, action, detail` starting at `first`.
fn read_history(row: &Row, first: usize) -> StoreResult<HistoryEntry> {
    Ok(HistoryEntry {
        at: parse_time(column(row, first)?)?,
        actor: column(row, first + 1)?,
        action: read_transition(column(row, first + 2)?)?,
        detail: read_json(column(row, first + 3)?)?,
    })
}

/// A history action as stored: the name of a [`Transition`].
fn read_transition(text: &str) -> StoreResult<Transition> {
    text.parse()
        .map_err(|error| unavailable(format!("stored transition `{text}`: {error}")))
}

/// An open PostgreSQL transaction, seen as a [`ProcessingTx`]. Its statements come from
/// the session's prepared-statement cache (`session.rs`).
pub(super) struct PgProcessing<'a, 'b> {
    tx: &'a mut Tx<'b>,
    /// The alerts saved in this transaction with their JSON bodies, by id: the outbox
    /// rows planned for the same alert carry the same body.
    bodies: HashMap<String, (Alert, String)>,
    /// Whether alerts are read to be changed (`FOR NO KEY UPDATE`, the default) or only
    /// read (planning repeats).
    lock_alerts: bool,
}

impl<'a, 'b> PgProcessing<'a, 'b> {
    pub(super) fn new(tx: &'a mut Tx<'b>) -> PgProcessing<'a, 'b> {
        PgProcessing {
            tx,
            bodies: HashMap::new(),
            lock_alerts: true,
        }
    }

    fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<u64> {
        self.tx.execute(sql, params).map_err(unavailable)
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<Row>> {
        self.tx.query(sql, params).map_err(unavailable)
    }

    fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Option<Row>> {
        self.tx.query_opt(sql, params).map_err(unavailable)
    }

    fn read_alert(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Option<Alert>> {
        let row = self.query_opt(sql, params)?;
        row.map(|row| read_json(column::<&str>(&row, 0)?))
            .transpose()
    }

    /// The JSON of `alert`: the body saved in this transaction when it is the same alert.
    fn alert_json(&self, alert: &Alert) -> StoreResult<String> {
        match self.bodies.get(&alert.id) {
            Some((saved, body)) if saved == alert => Ok(body.clone()),
            _ => serde_json::to_string(alert).map_err(unavailable),
        }
    }
}

/// The alerts with the given (subscription, group key) pairs (`$1`, `$2`), locked in id
/// order, for a processing commit.
pub(super) const ALERTS_BY_KEYS: &str = "SELECT a.body FROM alerts a
     JOIN unnest($1::text[], $2::text[]) AS k(subscription_id, group_key)
       ON a.subscription_id = k.subscription_id AND a.group_key = k.group_key
     ORDER BY a.id FOR NO KEY UPDATE OF a";

impl ProcessingTx for PgProcessing<'_, '_> {
    fn subscription_exists(&mut self, subscription_id: &str) -> StoreResult<bool> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM subscriptions WHERE id = $1",
                &[&subscription_id],
            )?
            .is_some())
    }

    fn alert_by_key(
        &mut self,
        subscription_id: &str,
        group_key: &str,
    ) -> StoreResult<Option<Alert>> {
        let sql = if self.lock_alerts {
            "SELECT body FROM alerts WHERE subscription_id = $1 AND group_key = $2
             FOR NO KEY UPDATE"
        } else {
            "SELECT body FROM alerts WHERE subscription_id = $1 AND group_key = $2"
        };
        self.read_alert(sql, &[&subscription_id, &group_key])
    }

    fn alert_by_id(&mut self, alert_id: &str) -> StoreResult<Option<Alert>> {
        let sql = if self.lock_alerts {
            "SELECT body FROM alerts WHERE id = $1 FOR NO KEY UPDATE"
        } else {
            "SELECT body FROM alerts WHERE id = $1"
        };
        self.read_alert(sql, &[&alert_id])
    }

    fn save_alert(&mut self, alert: &Alert) -> StoreResult<()> {
        self.save_alerts(&[alert])
    }

    fn append_history(&mut self, alert_id: &str, entry: &HistoryEntry) -> StoreResult<i64> {
        let rows = self.query(
            "INSERT INTO alert_history (alert_id, at, actor, action, detail)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &alert_id,
                &time_text(entry.at),
                &entry.actor,
                &entry.action.as_str(),
                &entry.detail.to_string(),
            ],
        )?;
        let row = rows
            .first()
            .ok_or_else(|| unavailable("a history row was not inserted"))?;
        column(row, 0)
    }

    fn write_notifications(
        &mut self,
        notifications: &[NewNotification],
        now: Timestamp,
    ) -> StoreResult<usize> {
        if notifications.is_empty() {
            return Ok(0);
        }
        let created = time_text(now);
        let count = notifications.len();
        let mut keys = Vec::with_capacity(count);
        let mut users = Vec::with_capacity(count);
        let mut points = Vec::with_capacity(count);
        let mut alert_ids = Vec::with_capacity(count);
        let mut groups = Vec::with_capacity(count);
        let mut transitions = Vec::with_capacity(count);
        let mut due = Vec::with_capacity(count);
        let mut alerts = Vec::with_capacity(count);
        for notification in notifications {
            keys.push(notification.idempotency_key.as_str());
            users.push(notification.user_id.as_str());
            points.push(notification.contact_point_id.as_str());
            alert_ids.push(notification.alert_id.as_str());
            groups.push(notification.alert.owner_group.as_deref());
            transitions.push(notification.transition.as_str());
            due.push(millis(notification.due_at));
            alerts.push(self.alert_json(&notification.alert)?);
        }
        // The contact point must still be the user's own (it and the user may have been
        // deleted since the plan was made); a second copy of a key is not stored, also
        // within this one statement (`DO NOTHING` skips a row that conflicts with one it
        // inserted itself).
        let inserted = self.execute(
            "INSERT INTO notifications (idempotency_key, user_id, contact_point_id,
                 alert_id, owner_group, transition, due_ms, alert, created)
             SELECT n.key, n.user_id, n.point_id, n.alert_id, n.owner_group, n.transition,
                 n.due_ms, n.alert, $9
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::int8[], $8::text[])
                  WITH ORDINALITY AS n(key, user_id, point_id, alert_id, owner_group,
                                       transition, due_ms, alert, position)
             WHERE EXISTS (SELECT 1 FROM contact_points c
                           WHERE c.id = n.point_id AND c.user_id = n.user_id)
             ORDER BY n.position
             ON CONFLICT (idempotency_key) DO NOTHING",
            &[
                &keys,
                &users,
                &points,
                &alert_ids,
                &groups,
                &transitions,
                &due,
                &alerts,
                &created,
            ],
        )?;
        Ok(usize::try_from(inserted).unwrap_or(0))
    }

    fn schedule_repeats(&mut self, schedules: &[RepeatSchedule]) -> StoreResult<()> {
        if schedules.is_empty() {
            return Ok(());
        }
        // One row per (alert, user), the last one given: `DO UPDATE` may not meet the same
        // row twice in one statement.
        let mut last: HashMap<(&str, &str), &RepeatSchedule> = HashMap::new();
        for schedule in schedules {
            last.insert((&schedule.alert_id, &schedule.user_id), schedule);
        }
        let mut alert_ids = Vec::with_capacity(last.len());
        let mut users = Vec::with_capacity(last.len());
        let mut next = Vec::with_capacity(last.len());
        let mut every = Vec::with_capacity(last.len());
        let mut rows: Vec<&RepeatSchedule> = last.into_values().collect();
        rows.sort_unstable_by(|a, b| (&a.alert_id, &a.user_id).cmp(&(&b.alert_id, &b.user_id)));
        for schedule in rows {
            alert_ids.push(schedule.alert_id.as_str());
            users.push(schedule.user_id.as_str());
            next.push(millis(schedule.next_at));
            every.push(schedule.every_ms);
        }
        self.execute(
            "INSERT INTO repeats (alert_id, user_id, next_ms, every_ms)
             SELECT r.alert_id, r.user_id, r.next_ms, r.every_ms
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[])
                  AS r(alert_id, user_id, next_ms, every_ms)
             WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = r.user_id)
             ON CONFLICT (alert_id, user_id) DO UPDATE SET next_ms = EXCLUDED.next_ms,
                 every_ms = EXCLUDED.every_ms",
            &[&alert_ids, &users, &next, &every],
        )?;
        Ok(())
    }

    fn stop_repeats(&mut self, alert_id: &str) -> StoreResult<()> {
        self.execute("DELETE FROM repeats WHERE alert_id = $1", &[&alert_id])?;
        Ok(())
    }

    fn due_repeats(&mut self, now: Timestamp, limit: usize) -> StoreResult<Vec<DueRepeat>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(
            "SELECT alert_id, user_id, every_ms, count FROM repeats WHERE next_ms <= $1
             ORDER BY next_ms LIMIT $2 FOR UPDATE SKIP LOCKED",
            &[&millis(now), &limit],
        )?;
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            due.push(DueRepeat {
                alert_id: column(row, 0)?,
                user_id: column(row, 1)?,
                every_ms: column(row, 2)?,
                count: column(row, 3)?,
            });
        }
        Ok(due)
    }

    fn drop_repeat(&mut self, alert_id: &str, user_id: &str) -> StoreResult<()> {
        self.execute(
            "DELETE FROM repeats WHERE alert_id = $1 AND user_id = $2",
            &[&alert_id, &user_id],
        )?;
        Ok(())
    }

    fn advance_repeat(
        &mut self,
        alert_id: &str,
        user_id: &str,
        next_at: Timestamp,
    ) -> StoreResult<()> {
        self.execute(
            "UPDATE repeats SET next_ms = $3, count = count + 1
             WHERE alert_id = $1 AND user_id = $2",
            &[&alert_id, &user_id, &millis(next_at)],
        )?;
        Ok(())
    }

    fn save_handler_state(
        &mut self,
        subscription_id: &str,
        state: &serde_json::Value,
    ) -> StoreResult<()> {
        self.execute(
            "INSERT INTO handler_state (subscription_id, state) VALUES ($1, $2)
             ON CONFLICT (subscription_id) DO UPDATE SET state = EXCLUDED.state",
            &[&subscription_id, &state.to_string()],
        )?;
        Ok(())
    }

    fn save_health(
        &mut self,
        subscription_id: &str,
        health: Option<&SubscriptionHealth>,
        disable: bool,
    ) -> StoreResult<()> {
        self.execute(
            "UPDATE subscriptions SET health = $2,
                 enabled = CASE WHEN $3 THEN false ELSE enabled END WHERE id = $1",
            &[&subscription_id, &health_text(health), &disable],
        )?;
        Ok(())
    }

    fn add_filter_errors(&mut self, update: &FilterErrorUpdate) -> StoreResult<()> {
        let added = i64::try_from(update.count).unwrap_or(i64::MAX);
        self.execute(
            "UPDATE subscriptions SET filter_errors = jsonb_build_object(
                 'count', coalesce(((filter_errors::jsonb) ->> 'count')::bigint, 0) + $2,
                 'last_error', $3::text, 'last_at', $4::text)::text
             WHERE id = $1",
            &[
                &update.subscription_id,
                &added,
                &update.last_error,
                &time_text(update.last_at),
            ],
        )?;
        Ok(())
    }

    fn append_derived(&mut self, events: Vec<StoredEvent>) -> StoreResult<Vec<Appended>> {
        // Nothing to append: no call, so no lock on the event log is asked for here (the
        // commit took it first when there were events; see `commit_processing`).
        if events.is_empty() {
            return Ok(Vec::new());
        }
        super::events::insert_events(self.tx, events)
    }

    fn save_cursor(&mut self, cursor: i64) -> StoreResult<()> {
        self.execute("UPDATE processing SET cursor = $1 WHERE id = 1", &[&cursor])?;
        Ok(())
    }

    // Each of these is one statement over arrays (`unnest`), whatever the commit's size:
    // on the synchronous client every statement is a round trip, and a processing commit
    // paid several per event.

    fn subscriptions_existing(&mut self, ids: &[&str]) -> StoreResult<HashSet<String>> {
        let rows = self.query("SELECT id FROM subscriptions WHERE id = ANY($1)", &[&ids])?;
        rows.iter().map(|row| column(row, 0)).collect()
    }

    fn alerts_by_keys(&mut self, keys: &[(&str, &str)]) -> StoreResult<Vec<Alert>> {
        let (subscriptions, groups): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
        // Rows are locked in id order, so two writers that lock several never wait for
        // each other in a cycle.
        let sql = if self.lock_alerts {
            ALERTS_BY_KEYS
        } else {
            "SELECT a.body FROM alerts a
             JOIN unnest($1::text[], $2::text[]) AS k(subscription_id, group_key)
               ON a.subscription_id = k.subscription_id AND a.group_key = k.group_key"
        };
        let rows = self.query(sql, &[&subscriptions, &groups])?;
        rows.iter()
            .map(|row| read_json(column::<&str>(row, 0)?))
            .collect()
    }

    fn save_alerts(&mut self, alerts: &[&Alert]) -> StoreResult<()> {
        let mut columns = AlertColumns::with_capacity(alerts.len());
        for alert in alerts {
            let body = serde_json::to_string(alert).map_err(unavailable)?;
            columns.push(alert, &body);
            self.bodies
                .insert(alert.id.clone(), ((*alert).clone(), body));
        }
        let c = &columns;
        self.execute(
            "INSERT INTO alerts (id, subscription_id, group_key, state, severity, cleared,
                                 owner_user, owner_group, last_seen_ms, body)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::bool[], $7::text[], $8::text[], $9::int8[], $10::text[])
             ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state,
                 severity = EXCLUDED.severity, cleared = EXCLUDED.cleared,
                 last_seen_ms = EXCLUDED.last_seen_ms, body = EXCLUDED.body",
            &[
                &c.ids,
                &c.subscriptions,
                &c.groups,
                &c.states,
                &c.severities,
                &c.cleared,
                &c.owner_users,
                &c.owner_groups,
                &c.last_seen,
                &c.bodies,
            ],
        )?;
        Ok(())
    }

    fn append_histories(&mut self, entries: &[(&str, &HistoryEntry)]) -> StoreResult<Vec<i64>> {
        let mut alert_ids = Vec::with_capacity(entries.len());
        let mut ats = Vec::with_capacity(entries.len());
        let mut actors = Vec::with_capacity(entries.len());
        let mut actions = Vec::with_capacity(entries.len());
        let mut details = Vec::with_capacity(entries.len());
        for (alert_id, entry) in entries {
            alert_ids.push(*alert_id);
            ats.push(time_text(entry.at));
            actors.push(entry.actor.as_str());
            actions.push(entry.action.as_str());
            details.push(entry.detail.to_string());
        }
        // Rows are inserted in the order of the arrays, and the identity column numbers
        // them as they are inserted: the positions, sorted, are the entries' in order.
        let rows = self.query(
            "INSERT INTO alert_history (alert_id, at, actor, action, detail)
             SELECT alert_id, at, actor, action, detail
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                  WITH ORDINALITY AS e(alert_id, at, actor, action, detail, n)
             ORDER BY n
             RETURNING id",
            &[&alert_ids, &ats, &actors, &actions, &details],
        )?;
        let mut positions: Vec<i64> = rows
            .iter()
            .map(|row| column(row, 0))
            .collect::<StoreResult<_>>()?;
        positions.sort_unstable();
        Ok(positions)
    }

    fn stop_repeats_of(&mut self, alert_ids: &[String]) -> StoreResult<()> {
        self.execute(
            "DELETE FROM repeats WHERE alert_id = ANY($1)",
            &[&alert_ids],
        )?;
        Ok(())
    }

    fn save_handler_states(&mut self, states: &[(&str, &serde_json::Value)]) -> StoreResult<()> {
        let ids: Vec<&str> = states.iter().map(|(id, _)| *id).collect();
        let texts: Vec<String> = states.iter().map(|(_, state)| state.to_string()).collect();
        self.execute(
            "INSERT INTO handler_state (subscription_id, state)
             SELECT * FROM unnest($1::text[], $2::text[])
             ON CONFLICT (subscription_id) DO UPDATE SET state = EXCLUDED.state",
            &[&ids, &texts],
        )?;
        Ok(())
    }
}

/// The columns of alert rows, for one multi-row insert.
struct AlertColumns {
    ids: Vec<String>,
    subscriptions: Vec<String>,
    groups: Vec<String>,
    states: Vec<&'static str>,
    severities: Vec<&'static str>,
    cleared: Vec<bool>,
    owner_users: Vec<Option<String>>,
    owner_groups: Vec<Option<String>>,
    last_seen: Vec<i64>,
    bodies: Vec<String>,
}

impl AlertColumns {
    fn with_capacity(capacity: usize) -> AlertColumns {
        AlertColumns {
            ids: Vec::with_capacity(capacity),
            subscriptions: Vec::with_capacity(capacity),
            groups: Vec::with_capacity(capacity),
            states: Vec::with_capacity(capacity),
            severities: Vec::with_capacity(capacity),
            cleared: Vec::with_capacity(capacity),
            owner_users: Vec::with_capacity(capacity),
            owner_groups: Vec::with_capacity(capacity),
            last_seen: Vec::with_capacity(capacity),
            bodies: Vec::with_capacity(capacity),
        }
    }

    fn push(&mut self, alert: &Alert, body: &str) {
        self.ids.push(alert.id.clone());
        self.subscriptions.push(alert.subscription_id.clone());
        self.groups.push(alert.group_key.clone());
        self.states.push(alert.state.as_str());
        self.severities.push(alert.severity.as_str());
        self.cleared.push(alert.cleared);
        self.owner_users.push(alert.owner_user.clone());
        self.owner_groups.push(alert.owner_group.clone());
        self.last_seen.push(millis(alert.last_seen));
        self.bodies.push(body.to_string());
    }
}
