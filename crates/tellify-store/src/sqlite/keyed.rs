//! [`KeyedEventQuery`] in SQLite. Events of the types the compatibility APIs look up by
//! producer ([`KEYED_TYPES`], Alerta's) also get a row in `event_keys` (type, producer,
//! time, seq) when they are appended, so a lookup for one producer reads only that
//! producer's events of that type in the time range; field values are then compared on
//! those rows with `json_extract`. Every other lookup goes through the time index, bounded
//! by its time range. A side table rather than an expression index on `events`: an index
//! over every event's type and producer cost a fifth of batched ingest throughput, and
//! only Alerta's events need it.

use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;
use tellify_model::StoredEvent;

use super::{read_event, unavailable};
use crate::keyed::{fields_path, KEYED_TYPES};
use crate::{KeyedEventQuery, StoreError, StoreResult};

/// `event_keys`, filled from the events already stored (the type list is [`KEYED_TYPES`];
/// a test checks they agree).
pub(super) const MIGRATION: &str = r#"
CREATE TABLE event_keys (
    event_type TEXT NOT NULL,
    producer TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (event_type, producer, time_ms, seq)
) WITHOUT ROWID;
INSERT INTO event_keys (event_type, producer, time_ms, seq)
    SELECT json_extract(body, '$.type'), producer, time_ms, seq FROM events
    WHERE repeat_of IS NULL AND producer IS NOT NULL
      AND json_extract(body, '$.type') IN ('alerta');
"#;

/// Records the key of an appended (first-occurrence) event when its type is keyed.
pub(super) fn record_key(
    connection: &Connection,
    event: &StoredEvent,
    seq: i64,
) -> StoreResult<()> {
    let (Some(event_type), Some(producer)) = (
        event.event_type.as_deref(),
        event.source.producer.as_deref(),
    ) else {
        return Ok(());
    };
    if !KEYED_TYPES.contains(&event_type) {
        return Ok(());
    }
    connection
        .prepare_cached(
            "INSERT OR IGNORE INTO event_keys (event_type, producer, time_ms, seq)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(unavailable)?
        .execute(rusqlite::params![
            event_type,
            producer,
            event.time.as_millisecond(),
            seq
        ])
        .map_err(unavailable)?;
    Ok(())
}

pub(super) fn keyed_events(
    connection: &Connection,
    query: &KeyedEventQuery,
) -> StoreResult<Vec<StoredEvent>> {
    let bad_path = |path: &str| StoreError::Unavailable(format!("invalid field path `{path}`"));
    let mut parameters: Vec<SqlValue> = vec![
        SqlValue::Text(query.event_type.clone()),
        SqlValue::Integer(query.since.as_millisecond()),
    ];
    let mut conditions = vec![
        "json_extract(body, '$.type') = ?1".to_string(),
        "time_ms >= ?2".to_string(),
        "repeat_of IS NULL".to_string(),
    ];
    // Where the candidates come from: a keyed type's producer reads its `event_keys` rows
    // and the events by seq (`NOT INDEXED` still allows lookups by rowid); anything else
    // reads the time range through `events_time`.
    let mut source = "events INDEXED BY events_time".to_string();
    if let Some(producer) = &query.producer {
        parameters.push(SqlValue::Text(producer.clone()));
        let producer = parameters.len();
        conditions.push(format!("producer = ?{producer}"));
        if KEYED_TYPES.contains(&query.event_type.as_str()) {
            source = "events NOT INDEXED".to_string();
            conditions.push(format!(
                "seq IN (SELECT seq FROM event_keys
                         WHERE event_type = ?1 AND producer = ?{producer} AND time_ms >= ?2)"
            ));
        }
    }
    for (field, value) in &query.equal {
        parameters.push(SqlValue::Text(
            fields_path(field).ok_or_else(|| bad_path(field))?,
        ));
        let path = parameters.len();
        parameters.push(SqlValue::Text(value.clone()));
        conditions.push(format!("json_extract(body, ?{path}) = ?{}", path + 1));
    }
    if let Some((fields, text)) = &query.names {
        parameters.push(SqlValue::Text(text.clone()));
        let text = parameters.len();
        let mut any = Vec::new();
        for field in fields {
            parameters.push(SqlValue::Text(
                fields_path(field).ok_or_else(|| bad_path(field))?,
            ));
            // json_each over a text yields that text; over a list, its items.
            any.push(format!(
                "EXISTS (SELECT 1 FROM json_each(body, ?{}) WHERE json_each.value = ?{text})",
                parameters.len()
            ));
        }
        if any.is_empty() {
            return Ok(Vec::new());
        }
        conditions.push(format!("({})", any.join(" OR ")));
    }
    parameters.push(SqlValue::Integer(query.limit as i64));
    let limit = parameters.len();
    let filter = conditions.join(" AND ");
    let sql = match &query.newest_per {
        None => format!(
            "SELECT seq, body FROM {source} WHERE {filter}
             ORDER BY seq DESC LIMIT ?{limit}"
        ),
        Some(per) => {
            parameters.push(SqlValue::Text(
                fields_path(per).ok_or_else(|| bad_path(per))?,
            ));
            let per = parameters.len();
            // SQLite takes the bare `body` from the row that holds max(seq).
            format!(
                "SELECT max(seq), body FROM {source}
                 WHERE {filter} AND json_extract(body, ?{per}) IS NOT NULL
                 GROUP BY json_extract(body, ?{per}) ORDER BY 1 DESC LIMIT ?{limit}"
            )
        }
    };
    let mut statement = connection.prepare_cached(&sql).map_err(unavailable)?;
    let rows = statement
        .query_map(rusqlite::params_from_iter(parameters), read_event)
        .map_err(unavailable)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use super::MIGRATION;
    use crate::keyed::KEYED_TYPES;

    #[test]
    fn the_migration_fills_event_keys_for_exactly_the_keyed_types() {
        let quoted: Vec<String> = KEYED_TYPES.iter().map(|name| format!("'{name}'")).collect();
        assert!(
            MIGRATION.contains(&format!("IN ({})", quoted.join(", "))),
            "MIGRATION's type list must be KEYED_TYPES: {KEYED_TYPES:?}"
        );
    }
}
