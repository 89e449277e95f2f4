//! [`KeyedEventQuery`] in SQLite: the type of an event is an expression on its stored body
//! (as for search), indexed together with the producer and the time, so a lookup for one
//! producer reads only that producer's events of that type in the time range; field values
//! are then compared on those rows with `json_extract`. A lookup for every producer goes
//! through the time index, bounded by its time range.

use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;
use tellify_model::StoredEvent;

use super::{read_event, unavailable};
use crate::keyed::fields_path;
use crate::{KeyedEventQuery, StoreError, StoreResult};

pub(super) const MIGRATION: &str = r#"
CREATE INDEX events_type_producer ON events(json_extract(body, '$.type'), producer, time_ms);
"#;

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
    let index = match &query.producer {
        Some(producer) => {
            parameters.push(SqlValue::Text(producer.clone()));
            conditions.push(format!("producer = ?{}", parameters.len()));
            "events_type_producer"
        }
        None => "events_time",
    };
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
            "SELECT seq, body FROM events INDEXED BY {index} WHERE {filter}
             ORDER BY seq DESC LIMIT ?{limit}"
        ),
        Some(per) => {
            parameters.push(SqlValue::Text(
                fields_path(per).ok_or_else(|| bad_path(per))?,
            ));
            let per = parameters.len();
            // SQLite takes the bare `body` from the row that holds max(seq).
            format!(
                "SELECT max(seq), body FROM events INDEXED BY {index}
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
