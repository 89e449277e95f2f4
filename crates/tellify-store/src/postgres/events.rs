//! The event log on PostgreSQL: appends (idempotency keys, dedup windows), reads in log
//! order, search, charts, keyed lookups and the event type registry.
#![allow(unused_variables)]

use jiff::Timestamp;
use tellify_model::StoredEvent;

use super::PostgresStore;
use crate::{
    Appended, ChartAggregate, ChartQuery, EventQuery, EventSearch, EventType, KeyedEventQuery,
    ListedEvent, SearchStep, StoreResult,
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
CREATE INDEX events_type ON events(((body::jsonb) ->> 'type'));
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
    todo!("postgres events: append_events")
}

pub(super) async fn events_after(
    store: &PostgresStore,
    after: i64,
    limit: usize,
) -> StoreResult<Vec<StoredEvent>> {
    todo!("postgres events: events_after")
}

pub(super) async fn event_seq_range(
    store: &PostgresStore,
    since: Timestamp,
    until: Timestamp,
) -> StoreResult<Option<(i64, i64)>> {
    todo!("postgres events: event_seq_range")
}

pub(super) async fn query_events(
    store: &PostgresStore,
    query: EventQuery,
) -> StoreResult<Vec<ListedEvent>> {
    todo!("postgres events: query_events")
}

pub(super) async fn search_events(
    store: &PostgresStore,
    search: EventSearch,
) -> StoreResult<SearchStep> {
    todo!("postgres events: search_events")
}

pub(super) async fn event(store: &PostgresStore, id: &str) -> StoreResult<Option<ListedEvent>> {
    todo!("postgres events: event")
}

pub(super) async fn chart_events(
    store: &PostgresStore,
    query: ChartQuery,
) -> StoreResult<ChartAggregate> {
    todo!("postgres events: chart_events")
}

pub(super) async fn keyed_events(
    store: &PostgresStore,
    query: KeyedEventQuery,
) -> StoreResult<Vec<StoredEvent>> {
    todo!("postgres events: keyed_events")
}

pub(super) async fn last_seq(store: &PostgresStore) -> StoreResult<i64> {
    todo!("postgres events: last_seq")
}

pub(super) async fn put_event_type(
    store: &PostgresStore,
    event_type: EventType,
) -> StoreResult<bool> {
    todo!("postgres events: put_event_type")
}

pub(super) async fn event_type(
    store: &PostgresStore,
    name: &str,
) -> StoreResult<Option<EventType>> {
    todo!("postgres events: event_type")
}

pub(super) async fn list_event_types(store: &PostgresStore) -> StoreResult<Vec<EventType>> {
    todo!("postgres events: list_event_types")
}

pub(super) async fn delete_event_type(store: &PostgresStore, name: &str) -> StoreResult<bool> {
    todo!("postgres events: delete_event_type")
}

pub(super) fn insert_events(
    tx: &mut postgres::Transaction<'_>,
    events: Vec<StoredEvent>,
) -> StoreResult<Vec<Appended>> {
    let _ = (tx, events);
    todo!("postgres events: insert_events")
}
