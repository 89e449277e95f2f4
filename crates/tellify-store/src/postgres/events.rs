//! The event log on PostgreSQL: appends (idempotency keys, dedup windows), reads in log
//! order, search, charts, keyed lookups and the event type registry.
//!
//! Appends are serialised by the transaction advisory lock [`super::LOCK_EVENTS`], taken
//! before the first insert and held to the commit: positions (`seq`, an identity column)
//! therefore commit in the order they were given out, and the lookups an append makes
//! before inserting (an idempotency key already stored, an open dedup window) cannot race
//! another node's append. Changes to the type registry take the same lock, because they
//! close dedup windows the append path reads.
//!
//! A repeat is stored as in SQLite (see [`crate::event_types`]): a row of its own whose
//! body holds only what differs and whose `repeat_of` names the first occurrence, which
//! counts its repeats in `repeat_count`. `dedup_windows` maps a dedup key to the first
//! occurrence and the end of its window, fixed from the first sighting.
//!
//! Bodies are JSON in TEXT columns; queries that need a field read it with
//! `body::jsonb`. Search, charts and keyed lookups first pick a bounded set of candidate
//! rows through an index (`events_type`, `events_time`, the primary key or `event_keys`)
//! and only then look into the bodies of those rows.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use postgres::types::ToSql;
use postgres::{IsolationLevel, Row};
use tellify_engine::IndexValue;
use tellify_model::StoredEvent;

use super::{
    lock, millis, parse_time, read_json, time_text, unavailable, PostgresStore, Session, Sql, Tx,
};
use crate::keyed::{field_segments, KEYED_TYPES};
use crate::{
    Appended, ChartAggregate, ChartQuery, EventQuery, EventSearch, EventType, KeyedEventQuery,
    ListedEvent, SearchStep, StoreError, StoreResult,
};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    time_ms BIGINT NOT NULL,
    producer TEXT,
    idempotency_key TEXT,
    body TEXT NOT NULL,
    repeat_of BIGINT,
    repeat_count BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX events_idempotency ON events(producer, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_time ON events(time_ms);
CREATE INDEX events_type ON events(((body::jsonb) ->> 'type'), seq);
CREATE TABLE event_types (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    category TEXT,
    default_severity TEXT,
    schema TEXT,
    dedup_ms BIGINT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE dedup_windows (
    dedup_key BYTEA PRIMARY KEY,
    event_type TEXT NOT NULL,
    seq BIGINT NOT NULL,
    until_ms BIGINT NOT NULL
);
CREATE INDEX dedup_windows_type ON dedup_windows(event_type);
CREATE TABLE event_keys (
    event_type TEXT NOT NULL,
    producer TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (event_type, producer, time_ms, seq)
);
"#;

pub(super) async fn append_events(
    store: &PostgresStore,
    events: Vec<StoredEvent>,
) -> StoreResult<Vec<Appended>> {
    store.write(move |tx| insert_events(tx, events)).await
}

/// Appends `events` in order inside the caller's transaction, as [`crate::Store::append_events`]
/// does: an already stored (producer, idempotency key) is a duplicate (and that check wins
/// over dedup, because a repeat row carries its key too); an event of a type with a dedup
/// interval whose key has an open window becomes a repeat of the window's first occurrence.
///
/// Takes [`super::LOCK_EVENTS`] with its first statement (idempotent within a
/// transaction): a caller that also inserts alert history must call this before it takes
/// [`super::LOCK_HISTORY`].
pub(super) fn insert_events(
    tx: &mut Tx<'_>,
    events: Vec<StoredEvent>,
) -> StoreResult<Vec<Appended>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut appender = Appender {
        tx,
        intervals: HashMap::new(),
        locked: false,
    };
    let mut appended = Vec::with_capacity(events.len());
    for event in &events {
        appended.push(appender.append(event)?);
    }
    Ok(appended)
}

pub(super) async fn events_after(
    store: &PostgresStore,
    after: i64,
    limit: usize,
) -> StoreResult<Vec<StoredEvent>> {
    store
        .read(move |client| {
            let rows = client
                .query(EVENTS_AFTER, &[&after, &sql_count(limit)])
                .map_err(unavailable)?;
            rows.iter().map(read_logged_event).collect()
        })
        .await
}

/// The events after `$1`, at most `$2`, each with its first occurrence's body when it is a
/// repeat ([`read_logged_event`]). The first occurrence is looked up per row (a scalar
/// subquery, one index probe each): written as a join, PostgreSQL may plan it as a hash of
/// the whole `events` table for every batch, which grows with the log (seen: a seq scan of
/// every event on each worker step).
pub(super) const EVENTS_AFTER: &str = "SELECT e.seq, e.body,
         (SELECT o.body FROM events o WHERE o.seq = e.repeat_of)
     FROM events e WHERE e.seq > $1 ORDER BY e.seq LIMIT $2";

/// [`EVENTS_AFTER`] with the settings generation, in one statement: one row with no event
/// when there is none.
pub(super) const EVENTS_TO_PROCESS: &str = "SELECT e.seq, e.body,
         (SELECT o.body FROM events o WHERE o.seq = e.repeat_of), g.generation
     FROM settings_generation g
     LEFT JOIN LATERAL (
         SELECT seq, body, repeat_of FROM events WHERE seq > $1 ORDER BY seq LIMIT $2) e ON true
     WHERE g.id = 1
     ORDER BY e.seq";

/// The events after `after` with the settings generation ([`EVENTS_TO_PROCESS`]).
pub(super) async fn events_to_process(
    store: &PostgresStore,
    after: i64,
    limit: usize,
) -> StoreResult<(Vec<StoredEvent>, Option<i64>)> {
    store
        .read(move |client| {
            let rows = client
                .query(EVENTS_TO_PROCESS, &[&after, &sql_count(limit)])
                .map_err(unavailable)?;
            let generation: Option<i64> = match rows.first() {
                Some(row) => Some(row.try_get(3).map_err(unavailable)?),
                None => return Err(unavailable("the settings generation row is missing")),
            };
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                if row
                    .try_get::<_, Option<i64>>(0)
                    .map_err(unavailable)?
                    .is_some()
                {
                    events.push(read_logged_event(row)?);
                }
            }
            Ok((events, generation))
        })
        .await
}

pub(super) async fn event_seq_range(
    store: &PostgresStore,
    since: Timestamp,
    until: Timestamp,
) -> StoreResult<Option<(i64, i64)>> {
    store
        .read(move |client| {
            let row = client
                .query_one(
                    "SELECT MIN(seq), MAX(seq) FROM events WHERE time_ms >= $1 AND time_ms < $2",
                    &[&millis(since), &millis(until)],
                )
                .map_err(unavailable)?;
            let first: Option<i64> = row.get(0);
            let last: Option<i64> = row.get(1);
            Ok(first.zip(last))
        })
        .await
}

pub(super) async fn query_events(
    store: &PostgresStore,
    query: EventQuery,
) -> StoreResult<Vec<ListedEvent>> {
    store
        .read(move |client| {
            let before = query.before_seq.unwrap_or(i64::MAX);
            let since = query.since.map_or(i64::MIN, millis);
            let until = query.until.map_or(i64::MAX, millis);
            let rows = client
                .query(
                    "SELECT seq, body, repeat_count FROM events
                     WHERE seq < $1 AND time_ms >= $2 AND time_ms < $3 AND repeat_of IS NULL
                     ORDER BY seq DESC LIMIT $4",
                    &[&before, &since, &until, &sql_count(query.limit)],
                )
                .map_err(unavailable)?;
            rows.iter().map(read_listed_event).collect()
        })
        .await
}

pub(super) async fn search_events(
    store: &PostgresStore,
    search: EventSearch,
) -> StoreResult<SearchStep> {
    store.read(move |client| search_step(client, &search)).await
}

pub(super) async fn event(store: &PostgresStore, id: &str) -> StoreResult<Option<ListedEvent>> {
    let id = id.to_string();
    store
        .read(move |client| {
            client
                .query_opt(
                    "SELECT seq, body, repeat_count FROM events
                     WHERE id = $1 AND repeat_of IS NULL",
                    &[&id],
                )
                .map_err(unavailable)?
                .map(|row| read_listed_event(&row))
                .transpose()
        })
        .await
}

pub(super) async fn chart_events(
    store: &PostgresStore,
    query: ChartQuery,
) -> StoreResult<ChartAggregate> {
    store.read(move |client| chart(client, &query)).await
}

pub(super) async fn keyed_events(
    store: &PostgresStore,
    query: KeyedEventQuery,
) -> StoreResult<Vec<StoredEvent>> {
    store.read(move |client| keyed(client, &query)).await
}

pub(super) async fn last_seq(store: &PostgresStore) -> StoreResult<i64> {
    store
        .read(|client| {
            let row = client
                .query_one("SELECT COALESCE(MAX(seq), 0) FROM events", &[])
                .map_err(unavailable)?;
            Ok(row.get(0))
        })
        .await
}

/// Creates or replaces a type; returns true when it was created. A changed dedup interval
/// closes the type's open windows, so the next sighting starts a window of the new length.
pub(super) async fn put_event_type(
    store: &PostgresStore,
    event_type: EventType,
) -> StoreResult<bool> {
    store
        .write(move |tx| {
            // The append path reads the registry and the windows under this lock.
            lock(tx, super::LOCK_EVENTS)?;
            let previous: Option<Option<i64>> = tx
                .query_opt(
                    "SELECT dedup_ms FROM event_types WHERE name = $1",
                    &[&event_type.name],
                )
                .map_err(unavailable)?
                .map(|row| row.get(0));
            let dedup_ms = event_type.dedup_interval.map(duration_ms);
            let schema = event_type.schema.as_ref().map(|schema| schema.to_string());
            let severity = event_type
                .default_severity
                .map(|severity| severity.as_str());
            tx.execute(
                &format!(
                    "INSERT INTO event_types ({EVENT_TYPE_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description,
                         category = EXCLUDED.category,
                         default_severity = EXCLUDED.default_severity,
                         schema = EXCLUDED.schema, dedup_ms = EXCLUDED.dedup_ms,
                         updated = EXCLUDED.updated"
                ),
                &[
                    &event_type.name,
                    &event_type.description,
                    &event_type.category,
                    &severity,
                    &schema,
                    &dedup_ms,
                    &time_text(event_type.created),
                    &time_text(event_type.updated),
                ],
            )
            .map_err(unavailable)?;
            if let Some(previous_ms) = previous {
                if previous_ms != dedup_ms {
                    close_windows(tx, &event_type.name)?;
                }
            }
            Ok(previous.is_none())
        })
        .await
}

pub(super) async fn event_type(
    store: &PostgresStore,
    name: &str,
) -> StoreResult<Option<EventType>> {
    let name = name.to_string();
    store
        .read(move |client| {
            client
                .query_opt(
                    &format!("SELECT {EVENT_TYPE_COLUMNS} FROM event_types WHERE name = $1"),
                    &[&name],
                )
                .map_err(unavailable)?
                .map(|row| read_event_type(&row))
                .transpose()
        })
        .await
}

pub(super) async fn list_event_types(store: &PostgresStore) -> StoreResult<Vec<EventType>> {
    store
        .read(|client| {
            let rows = client
                .query(
                    &format!("SELECT {EVENT_TYPE_COLUMNS} FROM event_types ORDER BY name"),
                    &[],
                )
                .map_err(unavailable)?;
            rows.iter().map(read_event_type).collect()
        })
        .await
}

/// Deletes a type and its open windows; stored events of the type stay.
pub(super) async fn delete_event_type(store: &PostgresStore, name: &str) -> StoreResult<bool> {
    let name = name.to_string();
    store
        .write(move |tx| {
            lock(tx, super::LOCK_EVENTS)?;
            let removed = tx
                .execute("DELETE FROM event_types WHERE name = $1", &[&name])
                .map_err(unavailable)?;
            close_windows(tx, &name)?;
            Ok(removed == 1)
        })
        .await
}

// ---- appends ----

const INSERT_EVENT: &str = "INSERT INTO events (id, time_ms, producer, idempotency_key, body)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING seq";

/// The first event of an append in one call of the schema's function
/// `tellify_append_first` ([`APPEND_FUNCTION`]): `(seq, NULL)` when it was stored,
/// `(NULL, NULL)` when its idempotency key or id is taken, `(NULL, interval)` when its
/// type has a dedup interval and the caller's dedup path must decide.
const APPEND_FIRST: &str = "SELECT o_seq, o_dedup_ms FROM tellify_append_first(
     $1::text, $2::bigint, $3::text, $4::text, $5::text, $6::text, $7::boolean)";

/// Schema version 3. The function behind [`APPEND_FIRST`]. Three round trips were spent
/// under [`super::LOCK_EVENTS`] before the first event was in (the lock, the registry's
/// dedup interval, the insert), each waiting for the node to be scheduled again while
/// every other node's appends queued for the lock. The lock has to come first in a
/// statement of its own for what is read after it to be current (a statement's snapshot
/// is taken when it starts); a PL/pgSQL function takes a fresh snapshot for each of its
/// statements, so one call does all three.
pub(super) fn append_function() -> String {
    format!(
        r#"
CREATE FUNCTION tellify_append_first(
    p_id TEXT, p_time_ms BIGINT, p_producer TEXT, p_key TEXT, p_body TEXT, p_type TEXT,
    p_keyed BOOLEAN, OUT o_seq BIGINT, OUT o_dedup_ms BIGINT)
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock({schema_key}, {lock});
    IF p_type IS NOT NULL THEN
        SELECT t.dedup_ms INTO o_dedup_ms FROM event_types t WHERE t.name = p_type;
        IF o_dedup_ms > 0 THEN
            RETURN;
        END IF;
        o_dedup_ms := NULL;
    END IF;
    INSERT INTO events (id, time_ms, producer, idempotency_key, body)
        VALUES (p_id, p_time_ms, p_producer, p_key, p_body)
        ON CONFLICT DO NOTHING RETURNING events.seq INTO o_seq;
    IF o_seq IS NOT NULL AND p_keyed AND p_producer IS NOT NULL THEN
        INSERT INTO event_keys (event_type, producer, time_ms, seq)
            VALUES (p_type, p_producer, p_time_ms, o_seq) ON CONFLICT DO NOTHING;
    END IF;
END
$fn$;
"#,
        schema_key = super::SCHEMA_KEY,
        lock = super::LOCK_EVENTS,
    )
}

const INSERT_REPEAT: &str =
    "INSERT INTO events (id, time_ms, producer, idempotency_key, body, repeat_of)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING seq";

const COUNT_REPEAT: &str = "UPDATE events SET repeat_count = repeat_count + 1 WHERE seq = $1";

const DEDUP_INTERVAL: &str = "SELECT dedup_ms FROM event_types WHERE name = $1";

const OPEN_WINDOW: &str = "SELECT w.seq, e.id FROM dedup_windows w JOIN events e ON e.seq = w.seq
     WHERE w.dedup_key = $1 AND w.until_ms > $2";

const START_WINDOW: &str = "INSERT INTO dedup_windows (dedup_key, event_type, seq, until_ms)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (dedup_key) DO UPDATE SET event_type = EXCLUDED.event_type,
         seq = EXCLUDED.seq, until_ms = EXCLUDED.until_ms";

const RECORD_KEY: &str = "INSERT INTO event_keys (event_type, producer, time_ms, seq)
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";

/// The stored event by (producer, idempotency key); a repeat answers with its first
/// occurrence's id. Two forms, so the lookup reads `events_idempotency` either way.
const EXISTING_OF_PRODUCER: &str =
    "SELECT COALESCE((SELECT o.id FROM events o WHERE o.seq = e.repeat_of), e.id), e.seq,
         e.repeat_of IS NOT NULL
     FROM events e
     WHERE e.producer = $1 AND e.idempotency_key = $2 ORDER BY e.seq LIMIT 1";

const EXISTING_WITHOUT_PRODUCER: &str =
    "SELECT COALESCE((SELECT o.id FROM events o WHERE o.seq = e.repeat_of), e.id), e.seq,
         e.repeat_of IS NOT NULL
     FROM events e
     WHERE e.producer IS NULL AND e.idempotency_key = $1 ORDER BY e.seq LIMIT 1";

/// One append in a transaction that holds [`super::LOCK_EVENTS`]: the registry's dedup
/// intervals are read once per type (the registry cannot change while the lock is held).
struct Appender<'t, 'c> {
    tx: &'t mut Tx<'c>,
    intervals: HashMap<String, Option<i64>>,
    /// Whether this transaction holds [`super::LOCK_EVENTS`] yet.
    locked: bool,
}

impl Appender<'_, '_> {
    fn append(&mut self, event: &StoredEvent) -> StoreResult<Appended> {
        if !self.locked {
            self.locked = true;
            if let Some(appended) = self.append_first(event)? {
                return Ok(appended);
            }
        }
        let dedup = match (crate::dedup_key(event), event.event_type.as_deref()) {
            (Some(key), Some(name)) => self.dedup_interval_ms(name)?.map(|ms| (key, name, ms)),
            _ => None,
        };
        let sighted_ms = millis(event.received);
        if let Some((key, _, _)) = &dedup {
            if let Some((original_seq, original_id)) = self.open_window(key, sighted_ms)? {
                return match self.insert_repeat(event, original_seq)? {
                    Some(seq) => Ok(Appended {
                        id: original_id,
                        seq,
                        duplicate: false,
                        repeat: true,
                    }),
                    None => self.existing_event(event),
                };
            }
        }
        let body = serde_json::to_string(event).map_err(unavailable)?;
        let inserted = self
            .tx
            .query_opt(
                INSERT_EVENT,
                &[
                    &event.id,
                    &millis(event.time),
                    &event.source.producer,
                    &event.idempotency_key,
                    &body,
                ],
            )
            .map_err(unavailable)?;
        let Some(row) = inserted else {
            return self.existing_event(event);
        };
        let seq: i64 = row.get(0);
        self.record_key(event, seq)?;
        if let Some((key, name, interval_ms)) = dedup {
            let until_ms = sighted_ms.saturating_add(interval_ms);
            self.tx
                .execute(START_WINDOW, &[&key.as_slice(), &name, &seq, &until_ms])
                .map_err(unavailable)?;
        }
        Ok(Appended {
            id: event.id.clone(),
            seq,
            duplicate: false,
            repeat: false,
        })
    }

    /// The first event of the transaction, through [`APPEND_FIRST`]: one round trip
    /// takes the lock, reads the type's dedup interval under it and, when the type has
    /// none, stores the event. `None` when the event needs the dedup path, which goes on
    /// under the lock with the interval now known.
    fn append_first(&mut self, event: &StoredEvent) -> StoreResult<Option<Appended>> {
        let body = serde_json::to_string(event).map_err(unavailable)?;
        let event_type = event.event_type.as_deref();
        let keyed = event_type.is_some_and(|name| KEYED_TYPES.contains(&name));
        let row = self
            .tx
            .query_one(
                APPEND_FIRST,
                &[
                    &event.id,
                    &millis(event.time),
                    &event.source.producer,
                    &event.idempotency_key,
                    &body,
                    &event_type,
                    &keyed,
                ],
            )
            .map_err(unavailable)?;
        let seq: Option<i64> = row.get(0);
        let interval: Option<i64> = row.get(1);
        if let Some(name) = event_type {
            self.intervals.insert(name.to_string(), interval);
        }
        if interval.is_some() {
            return Ok(None);
        }
        let Some(seq) = seq else {
            return self.existing_event(event).map(Some);
        };
        Ok(Some(Appended {
            id: event.id.clone(),
            seq,
            duplicate: false,
            repeat: false,
        }))
    }

    /// The dedup interval of `name` in milliseconds, when it is registered with one.
    fn dedup_interval_ms(&mut self, name: &str) -> StoreResult<Option<i64>> {
        if let Some(known) = self.intervals.get(name) {
            return Ok(*known);
        }
        let found: Option<Option<i64>> = self
            .tx
            .query_opt(DEDUP_INTERVAL, &[&name])
            .map_err(unavailable)?
            .map(|row| row.get(0));
        let interval = found.flatten().filter(|ms| *ms > 0);
        self.intervals.insert(name.to_string(), interval);
        Ok(interval)
    }

    /// The first occurrence (`seq`, id) whose window for `key` is still open at `at_ms`.
    fn open_window(&mut self, key: &[u8; 32], at_ms: i64) -> StoreResult<Option<(i64, String)>> {
        Ok(self
            .tx
            .query_opt(OPEN_WINDOW, &[&key.as_slice(), &at_ms])
            .map_err(unavailable)?
            .map(|row| (row.get(0), row.get(1))))
    }

    /// Writes `event` as a repeat of the first occurrence at `original_seq`; returns its
    /// log position, or `None` when its (producer, idempotency key) is already stored (a
    /// retry, which is a duplicate rather than another repeat).
    fn insert_repeat(
        &mut self,
        event: &StoredEvent,
        original_seq: i64,
    ) -> StoreResult<Option<i64>> {
        let body = crate::event_types::repeat_body(event).map_err(unavailable)?;
        let inserted = self
            .tx
            .query_opt(
                INSERT_REPEAT,
                &[
                    &event.id,
                    &millis(event.time),
                    &event.source.producer,
                    &event.idempotency_key,
                    &body,
                    &original_seq,
                ],
            )
            .map_err(unavailable)?;
        let Some(row) = inserted else {
            return Ok(None);
        };
        self.tx
            .execute(COUNT_REPEAT, &[&original_seq])
            .map_err(unavailable)?;
        Ok(Some(row.get(0)))
    }

    /// Records the key of an appended (first-occurrence) event when its type is keyed.
    fn record_key(&mut self, event: &StoredEvent, seq: i64) -> StoreResult<()> {
        let (Some(event_type), Some(producer)) = (
            event.event_type.as_deref(),
            event.source.producer.as_deref(),
        ) else {
            return Ok(());
        };
        if !KEYED_TYPES.contains(&event_type) {
            return Ok(());
        }
        self.tx
            .execute(
                RECORD_KEY,
                &[&event_type, &producer, &millis(event.time), &seq],
            )
            .map_err(unavailable)?;
        Ok(())
    }

    /// The stored event an event that was not inserted duplicates, by (producer,
    /// idempotency key); an id taken by an event without that key is a conflict.
    fn existing_event(&mut self, event: &StoredEvent) -> StoreResult<Appended> {
        let existing = match (&event.source.producer, &event.idempotency_key) {
            (_, None) => None,
            (Some(producer), Some(key)) => self
                .tx
                .query_opt(EXISTING_OF_PRODUCER, &[producer, key])
                .map_err(unavailable)?,
            (None, Some(key)) => self
                .tx
                .query_opt(EXISTING_WITHOUT_PRODUCER, &[key])
                .map_err(unavailable)?,
        };
        let Some(row) = existing else {
            return Err(StoreError::Conflict(format!(
                "event id {} already exists",
                event.id
            )));
        };
        Ok(Appended {
            id: row.get(0),
            seq: row.get(1),
            duplicate: true,
            repeat: row.get(2),
        })
    }
}

// ---- the registry ----

const EVENT_TYPE_COLUMNS: &str =
    "name, description, category, default_severity, schema, dedup_ms, created, updated";

fn read_event_type(row: &Row) -> StoreResult<EventType> {
    let severity: Option<&str> = row.get(3);
    let schema: Option<&str> = row.get(4);
    let dedup_ms: Option<i64> = row.get(5);
    Ok(EventType {
        name: row.get(0),
        description: row.get(1),
        category: row.get(2),
        default_severity: severity
            .map(|text| {
                text.parse()
                    .map_err(|message: String| unavailable(format!("stored severity: {message}")))
            })
            .transpose()?,
        schema: schema.map(read_json).transpose()?,
        dedup_interval: dedup_ms.map(SignedDuration::from_millis),
        created: parse_time(row.get(6))?,
        updated: parse_time(row.get(7))?,
    })
}

fn duration_ms(duration: SignedDuration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn close_windows(tx: &mut Tx<'_>, name: &str) -> StoreResult<()> {
    tx.execute("DELETE FROM dedup_windows WHERE event_type = $1", &[&name])
        .map_err(unavailable)?;
    Ok(())
}

// ---- reading rows ----

/// A count or limit as a BIGINT parameter.
fn sql_count(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn decode_event(seq: i64, body: &str) -> StoreResult<StoredEvent> {
    let mut event: StoredEvent = read_json(body)?;
    event.seq = seq;
    Ok(event)
}

/// Columns: seq, body.
fn read_event(row: &Row) -> StoreResult<StoredEvent> {
    decode_event(row.get(0), row.get(1))
}

/// An event row as the log presents it: a repeat (`repeat_of` set) is rebuilt from its
/// first occurrence. Columns: seq, body, first occurrence's body (or NULL).
fn read_logged_event(row: &Row) -> StoreResult<StoredEvent> {
    let seq: i64 = row.get(0);
    let body: &str = row.get(1);
    let Some(original) = row.get::<_, Option<&str>>(2) else {
        return decode_event(seq, body);
    };
    let first: StoredEvent = read_json(original)?;
    crate::event_types::rebuild_repeat(first, seq, body)
        .map_err(|error| unavailable(format!("stored repeat: {error}")))
}

/// A first occurrence with its repeat count. Columns: seq, body, repeat_count.
fn read_listed_event(row: &Row) -> StoreResult<ListedEvent> {
    let repeat_count: i64 = row.get(2);
    Ok(ListedEvent {
        event: decode_event(row.get(0), row.get(1))?,
        repeat_count: u32::try_from(repeat_count.max(0)).unwrap_or(u32::MAX),
    })
}

/// The parameters of a statement that is built piece by piece: each added value answers
/// with its placeholder, cast to its SQL type so PostgreSQL never has to guess it.
#[derive(Default)]
struct Parameters {
    values: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Parameters {
    fn add(&mut self, value: impl ToSql + Sync + Send + 'static, sql_type: &str) -> String {
        self.values.push(Box::new(value));
        format!("${}::{sql_type}", self.values.len())
    }

    fn as_refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values
            .iter()
            .map(|value| value.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

// ---- search ----

/// How a search step picks its candidates (see `sqlite/search.rs`, whose paths these are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// Events of one type, through `events_type` (type, seq).
    Type,
    /// Every event in the time range, through `events_time`: chosen only when the range
    /// holds no more rows than a step may examine.
    TimeRange,
    /// Back along `seq` from the cursor.
    Scan,
}

/// One bounded step: at most `max_examined` candidates, newest first, along the cheapest
/// path; then the other predicates on those rows only. Both statements read one snapshot.
fn search_step(client: &mut Session, search: &EventSearch) -> StoreResult<SearchStep> {
    let mut tx = client
        .read_transaction(IsolationLevel::RepeatableRead)
        .map_err(unavailable)?;
    let budget = sql_count(search.max_examined.max(1));
    let since = search.since.map_or(i64::MIN, millis);
    let until = search.until.map_or(i64::MAX, millis);
    let path = choose_path(&mut tx, search, since, until, budget)?;

    let mut parameters = Parameters::default();
    let candidates = candidate_sql(path, search, since, until, budget, &mut parameters);
    let summary = tx
        .query_one(
            &format!(
                "WITH candidates AS MATERIALIZED ({candidates})
                 SELECT count(*), min(seq) FROM candidates"
            ),
            &parameters.as_refs(),
        )
        .map_err(unavailable)?;
    let examined: i64 = summary.get(0);
    let oldest: Option<i64> = summary.get(1);

    let mut parameters = Parameters::default();
    let candidates = candidate_sql(path, search, since, until, budget, &mut parameters);
    let mut sql = format!(
        "WITH candidates AS MATERIALIZED ({candidates})
         SELECT e.seq, e.body, e.repeat_count FROM candidates c JOIN events e ON e.seq = c.seq
         WHERE e.repeat_of IS NULL AND e.time_ms >= {} AND e.time_ms < {}",
        parameters.add(since, "bigint"),
        parameters.add(until, "bigint"),
    );
    for (name, value) in &search.field_equals {
        let value = match value {
            IndexValue::Str(text) => serde_json::Value::from(text.as_str()),
            IndexValue::Int(number) => serde_json::Value::from(*number),
            IndexValue::Bool(flag) => serde_json::Value::from(*flag),
        };
        // jsonb equality: a number matches whatever its notation (4 and 4.0).
        sql.push_str(&format!(
            " AND ((e.body::jsonb) -> 'fields' -> {}) = {}",
            parameters.add(name.clone(), "text"),
            parameters.add(value.to_string(), "text::jsonb"),
        ));
    }
    sql.push_str(&format!(
        " ORDER BY e.seq DESC LIMIT {}",
        parameters.add(sql_count(search.limit), "bigint")
    ));
    let rows = tx.query(&sql, &parameters.as_refs()).map_err(unavailable)?;
    let events = rows
        .iter()
        .map(read_listed_event)
        .collect::<StoreResult<Vec<_>>>()?;
    tx.commit().map_err(unavailable)?;
    let full_page = search.limit > 0 && events.len() >= search.limit;
    let resume_before = match events.last() {
        Some(last) if full_page => Some(last.seq),
        _ if examined >= budget => oldest,
        _ => None,
    };
    Ok(SearchStep {
        events,
        examined: usize::try_from(examined.max(0)).unwrap_or(usize::MAX),
        resume_before,
    })
}

fn choose_path(
    tx: &mut Tx<'_>,
    search: &EventSearch,
    since: i64,
    until: i64,
    budget: i64,
) -> StoreResult<Path> {
    if search.event_type.is_some() {
        return Ok(Path::Type);
    }
    if search.since.is_none() && search.until.is_none() {
        return Ok(Path::Scan);
    }
    // Counting stops one past the budget, so the probe is as bounded as the step.
    let in_range: i64 = tx
        .query_one(
            "SELECT count(*) FROM
                (SELECT 1 FROM events WHERE time_ms >= $1 AND time_ms < $2 LIMIT $3) probe",
            &[&since, &until, &budget.saturating_add(1)],
        )
        .map_err(unavailable)?
        .get(0);
    Ok(if in_range <= budget {
        Path::TimeRange
    } else {
        Path::Scan
    })
}

/// The candidates of a step, newest first: their `seq` only.
fn candidate_sql(
    path: Path,
    search: &EventSearch,
    since: i64,
    until: i64,
    budget: i64,
    parameters: &mut Parameters,
) -> String {
    let cursor = parameters.add(search.before_seq.unwrap_or(i64::MAX), "bigint");
    let filter = match path {
        Path::Type => format!(
            "((body::jsonb) ->> 'type') = {} AND ",
            parameters.add(search.event_type.clone().unwrap_or_default(), "text")
        ),
        Path::TimeRange => format!(
            "time_ms >= {} AND time_ms < {} AND ",
            parameters.add(since, "bigint"),
            parameters.add(until, "bigint")
        ),
        Path::Scan => String::new(),
    };
    format!(
        "SELECT seq FROM events WHERE {filter}seq < {cursor} ORDER BY seq DESC LIMIT {}",
        parameters.add(budget, "bigint")
    )
}

// ---- charts ----

/// The chart's one statement (see `sqlite/dashboard.rs`). Parameters: $1 since (ms), $2
/// until (ms), $3 most rows, $4 type (or NULL), $5 the field, $6 buckets, $7 the range's
/// length (ms), $8 the group field (NULL: one line), $9 the envelope path to fall back to
/// (or NULL).
///
/// The candidates are the newest `$3` rows of the range through `events_time`; each
/// candidate's body is parsed once.
///
/// Rows: `(0, NULL, NULL, rows looked at, NULL, oldest time looked at)`, then per group
/// key (as JSON, see [`chart_key`]) and bucket `(1, key, bucket, count, sum, mean time)`, then
/// `(2, NULL, NULL, events with a value that is not a number, NULL, NULL)`.
const CHART_SQL: &str = r#"
WITH candidates AS MATERIALIZED (
    SELECT seq, time_ms FROM events
    WHERE time_ms >= $1::bigint AND time_ms < $2::bigint
    ORDER BY time_ms DESC LIMIT $3::bigint
),
parsed AS MATERIALIZED (
    SELECT e.time_ms AS t, e.body::jsonb AS j
    FROM candidates c JOIN events e ON e.seq = c.seq
    WHERE e.repeat_of IS NULL
),
picked AS MATERIALIZED (
    SELECT t, j -> 'fields' -> $5::text AS raw,
           CASE WHEN $8::text IS NULL THEN '"all"'::jsonb
                ELSE coalesce(j -> 'fields' -> $8::text, j #> $9::text[], '"(none)"'::jsonb)
           END AS g
    FROM parsed
    WHERE ($4::text IS NULL OR (j ->> 'type') = $4::text)
      AND (j -> 'fields' -> $5::text) IS NOT NULL
)
SELECT 0, NULL::text, NULL::bigint, count(*), NULL::float8, min(time_ms)::float8
    FROM candidates
UNION ALL
SELECT 1, g::text,
       least((t - $1::bigint) * $6::bigint / $7::bigint, $6::bigint - 1),
       count(*), sum(raw::float8), avg(t)::float8
    FROM picked WHERE jsonb_typeof(raw) = 'number' GROUP BY g, 3
UNION ALL
SELECT 2, NULL, NULL, count(*), NULL, NULL
    FROM picked WHERE jsonb_typeof(raw) <> 'number'"#;

fn chart(client: &mut Session, query: &ChartQuery) -> StoreResult<ChartAggregate> {
    let since = millis(query.since);
    let until = millis(query.until);
    let budget = query.max_examined.max(1);
    let buckets = sql_count(query.buckets.max(1));
    let group = query.group.trim();
    let envelope: Option<Vec<String>> = match group {
        "host" => Some(vec!["source".to_string(), "host".to_string()]),
        "component" => Some(vec!["source".to_string(), "component".to_string()]),
        "type" => Some(vec!["type".to_string()]),
        "severity" => Some(vec!["severity".to_string()]),
        _ => None,
    };
    let group_field: Option<String> = (!group.is_empty()).then(|| group.to_string());
    let rows = client
        .query(
            CHART_SQL,
            &[
                &since,
                &until,
                &sql_count(budget),
                &query.event_type,
                &query.field,
                &buckets,
                &until.saturating_sub(since).max(1),
                &group_field,
                &envelope,
            ],
        )
        .map_err(unavailable)?;
    let mut aggregate = ChartAggregate::default();
    let mut oldest: Option<f64> = None;
    // key → bucket → (count, sum, sum of times): two JSON values can have one text (the
    // string "1" and the number 1), so groups with one key merge here.
    let mut lines = crate::dashboard::ChartLines::new();
    for row in &rows {
        let part: i32 = row.get(0);
        let count: i64 = row.get(3);
        let count = u64::try_from(count).unwrap_or(0);
        match part {
            0 => {
                aggregate.examined = usize::try_from(count).unwrap_or(usize::MAX);
                oldest = row.get(5);
            }
            1 => {
                let key = chart_key(row.get(1))?;
                let bucket: Option<i64> = row.get(2);
                let sum: Option<f64> = row.get(4);
                let mean: Option<f64> = row.get(5);
                aggregate.numeric += count;
                let slot = lines
                    .entry(key)
                    .or_default()
                    .entry(usize::try_from(bucket.unwrap_or(0)).unwrap_or(0))
                    .or_insert((0, 0.0, 0.0));
                slot.0 += count;
                slot.1 += sum.unwrap_or(0.0);
                slot.2 += mean.unwrap_or(0.0) * count as f64;
            }
            _ => aggregate.not_numeric = count,
        }
    }
    if aggregate.examined >= budget {
        aggregate.cut_at = oldest
            .map(|ms| Timestamp::from_millisecond(ms.round() as i64))
            .transpose()
            .map_err(unavailable)?;
    }
    aggregate
        .with_lines(lines, query.max_series)
        .map_err(unavailable)
}

/// A line's key from its group value as JSON text: a string as it is, anything else as
/// compact JSON, as SQLite writes it (PostgreSQL's `jsonb` text has spaces after `:`).
fn chart_key(json: Option<&str>) -> StoreResult<String> {
    let Some(json) = json else {
        return Ok(String::new());
    };
    Ok(match read_json::<serde_json::Value>(json)? {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    })
}

// ---- keyed lookups ----

/// A dotted path under the fields as a `text[]` for `#>`, or an error naming it.
fn fields_array(dotted: &str) -> StoreResult<Vec<String>> {
    let segments = field_segments(dotted)
        .ok_or_else(|| unavailable(format!("invalid field path `{dotted}`")))?;
    let mut path = vec!["fields".to_string()];
    path.extend(segments.into_iter().map(str::to_string));
    Ok(path)
}

/// [`KeyedEventQuery`]: a keyed type's producer reads its `event_keys` rows and the events
/// by `seq`; anything else reads the type through `events_type`, bounded by `since`.
fn keyed(client: &mut Session, query: &KeyedEventQuery) -> StoreResult<Vec<StoredEvent>> {
    let mut parameters = Parameters::default();
    let event_type = parameters.add(query.event_type.clone(), "text");
    let since = parameters.add(millis(query.since), "bigint");
    let mut conditions = vec![
        format!("((body::jsonb) ->> 'type') = {event_type}"),
        format!("time_ms >= {since}"),
        "repeat_of IS NULL".to_string(),
    ];
    if let Some(producer) = &query.producer {
        let producer = parameters.add(producer.clone(), "text");
        conditions.push(format!("producer = {producer}"));
        if KEYED_TYPES.contains(&query.event_type.as_str()) {
            conditions.push(format!(
                "seq IN (SELECT seq FROM event_keys
                         WHERE event_type = {event_type} AND producer = {producer}
                           AND time_ms >= {since})"
            ));
        }
    }
    for (field, value) in &query.equal {
        conditions.push(format!(
            "((body::jsonb) #> {}) = to_jsonb({})",
            parameters.add(fields_array(field)?, "text[]"),
            parameters.add(value.clone(), "text"),
        ));
    }
    if let Some((fields, text)) = &query.names {
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        let text = parameters.add(text.clone(), "text");
        let mut any = Vec::new();
        for field in fields {
            let path = parameters.add(fields_array(field)?, "text[]");
            // The field is the text, or a list that holds it.
            any.push(format!(
                "((body::jsonb) #> {path}) = to_jsonb({text})
                 OR (jsonb_typeof((body::jsonb) #> {path}) = 'array'
                     AND ((body::jsonb) #> {path}) @> jsonb_build_array({text}))"
            ));
        }
        conditions.push(format!("({})", any.join(" OR ")));
    }
    let filter = conditions.join(" AND ");
    let limit = parameters.add(sql_count(query.limit), "bigint");
    let sql = match &query.newest_per {
        None => {
            format!("SELECT seq, body FROM events WHERE {filter} ORDER BY seq DESC LIMIT {limit}")
        }
        Some(per) => {
            let per = parameters.add(fields_array(per)?, "text[]");
            format!(
                "SELECT seq, body FROM (
                     SELECT DISTINCT ON ((body::jsonb) #> {per}) seq, body FROM events
                     WHERE {filter} AND jsonb_typeof((body::jsonb) #> {per}) <> 'null'
                     ORDER BY (body::jsonb) #> {per}, seq DESC
                 ) newest ORDER BY seq DESC LIMIT {limit}"
            )
        }
    };
    let rows = client
        .query(&sql, &parameters.as_refs())
        .map_err(unavailable)?;
    rows.iter().map(read_event).collect()
}
