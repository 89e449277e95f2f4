//! The event-type side of the SQLite store: the registry, and the dedup windows the
//! append path consults.
//!
//! A repeat is a row of its own in `events` (so it has a log position and the worker sees
//! it once) whose `repeat_of` names the first occurrence's `seq` and whose body holds only
//! what differs: time, received time and idempotency key. The first occurrence keeps the
//! full body and counts its repeats in `repeat_count`. `dedup_windows` maps a dedup key to
//! the first occurrence and the end of its window; it is read and written only on the
//! writer thread, inside the append transaction, so nothing about it is cached in memory.

use jiff::SignedDuration;
use rusqlite::{params, Connection, OptionalExtension};
use tellify_model::StoredEvent;

use super::{parse_time, read_json, time_text, unavailable};
use crate::{EventType, StoreResult};

pub(super) const MIGRATION: &str = r#"
ALTER TABLE events ADD COLUMN repeat_of INTEGER;
ALTER TABLE events ADD COLUMN repeat_count INTEGER NOT NULL DEFAULT 0;
CREATE TABLE event_types (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    category TEXT,
    default_severity TEXT,
    schema TEXT,
    dedup_ms INTEGER,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE dedup_windows (
    dedup_key BLOB PRIMARY KEY,
    event_type TEXT NOT NULL,
    seq INTEGER NOT NULL,
    until_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dedup_windows_type ON dedup_windows(event_type);
"#;

const COLUMNS: &str =
    "name, description, category, default_severity, schema, dedup_ms, created, updated";

/// Creates or replaces a type; returns true when it was created. A changed dedup interval
/// closes the type's open windows, so the next sighting starts a window of the new length.
pub(super) fn put_event_type(connection: &Connection, event_type: &EventType) -> StoreResult<bool> {
    let previous: Option<Option<i64>> = connection
        .query_row(
            "SELECT dedup_ms FROM event_types WHERE name = ?1",
            [&event_type.name],
            |row| row.get(0),
        )
        .optional()
        .map_err(unavailable)?;
    let dedup_ms = event_type.dedup_interval.map(duration_ms);
    let schema = event_type.schema.as_ref().map(|schema| schema.to_string());
    connection
        .execute(
            &format!(
                "INSERT INTO event_types ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (name) DO UPDATE SET description = excluded.description,
                     category = excluded.category, default_severity = excluded.default_severity,
                     schema = excluded.schema, dedup_ms = excluded.dedup_ms,
                     updated = excluded.updated"
            ),
            params![
                event_type.name,
                event_type.description,
                event_type.category,
                event_type.default_severity.map(|s| s.as_str()),
                schema,
                dedup_ms,
                time_text(event_type.created),
                time_text(event_type.updated)
            ],
        )
        .map_err(unavailable)?;
    if let Some(previous_ms) = previous {
        if previous_ms != dedup_ms {
            close_windows(connection, &event_type.name)?;
        }
    }
    Ok(previous.is_none())
}

pub(super) fn event_type(connection: &Connection, name: &str) -> StoreResult<Option<EventType>> {
    connection
        .query_row(
            &format!("SELECT {COLUMNS} FROM event_types WHERE name = ?1"),
            [name],
            read_event_type,
        )
        .optional()
        .map_err(unavailable)
}

pub(super) fn list_event_types(connection: &Connection) -> StoreResult<Vec<EventType>> {
    let mut statement = connection
        .prepare(&format!("SELECT {COLUMNS} FROM event_types ORDER BY name"))
        .map_err(unavailable)?;
    let rows = statement
        .query_map([], read_event_type)
        .map_err(unavailable)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
}

/// Deletes a type and its open windows; stored events of the type stay.
pub(super) fn delete_event_type(connection: &Connection, name: &str) -> StoreResult<bool> {
    let removed = connection
        .execute("DELETE FROM event_types WHERE name = ?1", [name])
        .map_err(unavailable)?;
    close_windows(connection, name)?;
    Ok(removed == 1)
}

fn close_windows(connection: &Connection, name: &str) -> StoreResult<()> {
    connection
        .execute("DELETE FROM dedup_windows WHERE event_type = ?1", [name])
        .map_err(unavailable)?;
    Ok(())
}

fn read_event_type(row: &rusqlite::Row) -> rusqlite::Result<EventType> {
    let severity: Option<String> = row.get(3)?;
    let schema: Option<String> = row.get(4)?;
    let dedup_ms: Option<i64> = row.get(5)?;
    Ok(EventType {
        name: row.get(0)?,
        description: row.get(1)?,
        category: row.get(2)?,
        default_severity: severity
            .map(|text| {
                text.parse().map_err(|message: String| {
                    rusqlite::Error::FromSqlConversionFailure(
                        3,
                        rusqlite::types::Type::Text,
                        message.into(),
                    )
                })
            })
            .transpose()?,
        schema: schema.map(read_json).transpose()?,
        dedup_interval: dedup_ms.map(SignedDuration::from_millis),
        created: parse_time(row.get(6)?)?,
        updated: parse_time(row.get(7)?)?,
    })
}

fn duration_ms(duration: SignedDuration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The dedup interval of `name` in milliseconds, when it is registered with one. A point
/// query on the primary key, run per typed event on the writer thread.
pub(super) fn dedup_interval_ms(connection: &Connection, name: &str) -> StoreResult<Option<i64>> {
    let found: Option<Option<i64>> = connection
        .prepare_cached("SELECT dedup_ms FROM event_types WHERE name = ?1")
        .map_err(unavailable)?
        .query_row([name], |row| row.get(0))
        .optional()
        .map_err(unavailable)?;
    Ok(found.flatten().filter(|ms| *ms > 0))
}

/// The first occurrence (`seq`, id) whose window for `key` is still open at `at_ms`.
pub(super) fn open_window(
    connection: &Connection,
    key: &[u8; 32],
    at_ms: i64,
) -> StoreResult<Option<(i64, String)>> {
    connection
        .prepare_cached(
            "SELECT w.seq, e.id FROM dedup_windows w JOIN events e ON e.seq = w.seq
             WHERE w.dedup_key = ?1 AND w.until_ms > ?2",
        )
        .map_err(unavailable)?
        .query_row(params![key.as_slice(), at_ms], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()
        .map_err(unavailable)
}

/// Starts the window `[first, first + interval)` of a first occurrence, replacing an
/// expired one for the same key.
pub(super) fn start_window(
    connection: &Connection,
    key: &[u8; 32],
    event_type: &str,
    seq: i64,
    until_ms: i64,
) -> StoreResult<()> {
    connection
        .prepare_cached(
            "INSERT INTO dedup_windows (dedup_key, event_type, seq, until_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (dedup_key) DO UPDATE SET event_type = excluded.event_type,
                 seq = excluded.seq, until_ms = excluded.until_ms",
        )
        .map_err(unavailable)?
        .execute(params![key.as_slice(), event_type, seq, until_ms])
        .map_err(unavailable)?;
    Ok(())
}

/// Writes `event` as a repeat of the first occurrence at `original_seq`; returns its log
/// position, or `None` when its (producer, idempotency key) is already stored (a retry,
/// which is a duplicate rather than another repeat).
pub(super) fn insert_repeat(
    connection: &Connection,
    event: &StoredEvent,
    original_seq: i64,
) -> StoreResult<Option<i64>> {
    let body = crate::event_types::repeat_body(event).map_err(unavailable)?;
    let changed = connection
        .prepare_cached(
            "INSERT INTO events (id, time_ms, producer, idempotency_key, body, repeat_of)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        )
        .map_err(unavailable)?
        .execute(params![
            event.id,
            event.time.as_millisecond(),
            event.source.producer,
            event.idempotency_key,
            body,
            original_seq
        ])
        .map_err(unavailable)?;
    if changed == 0 {
        return Ok(None);
    }
    let seq = connection.last_insert_rowid();
    connection
        .prepare_cached("UPDATE events SET repeat_count = repeat_count + 1 WHERE seq = ?1")
        .map_err(unavailable)?
        .execute([original_seq])
        .map_err(unavailable)?;
    Ok(Some(seq))
}
