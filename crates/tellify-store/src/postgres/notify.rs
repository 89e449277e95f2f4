//! Notifications on PostgreSQL: contact points, policies, silences, the planner's
//! directory, the outbox (ganging, leases, outcomes), offboarding and the audit log.
#![allow(unused_variables)]

use jiff::Timestamp;
use postgres::Transaction;

use super::PostgresStore;
use crate::{
    AuditRecord, ContactPoint, Delivery, DeliveryHold, DeliveryJob, DeliveryQuery, DeliveryRecord,
    FinishedDelivery, NotifyDirectory, OffboardCounts, PolicyRecord, Silence, StoreResult,
};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE contact_points (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    address TEXT NOT NULL,
    secret TEXT,
    created TEXT NOT NULL,
    UNIQUE (user_id, name)
);
CREATE TABLE policies (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    rules TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
);
CREATE TABLE silences (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    filter TEXT NOT NULL,
    starts TEXT NOT NULL,
    ends TEXT NOT NULL,
    comment TEXT,
    created TEXT NOT NULL
);
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    contact_point_id TEXT NOT NULL,
    contact_point TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    last_error TEXT,
    receipt TEXT,
    items BIGINT NOT NULL,
    subject TEXT,
    created TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_ms) WHERE status IN ('pending', 'sending');
CREATE INDEX deliveries_user ON deliveries(user_id, id);
CREATE TABLE notifications (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    contact_point_id TEXT NOT NULL,
    alert_id TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    owner_group TEXT,
    transition TEXT NOT NULL,
    due_ms BIGINT NOT NULL,
    delivery_id TEXT,
    alert TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX notifications_due ON notifications(due_ms) WHERE delivery_id IS NULL;
CREATE INDEX notifications_delivery ON notifications(delivery_id);
CREATE INDEX notifications_user ON notifications(user_id);
CREATE INDEX notifications_alert ON notifications(alert_id);
CREATE TABLE delivery_attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    ok BOOLEAN NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts(delivery_id);
CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
"#;

/// What leaving a group removes (see [`crate::Store::remove_member`]): the member's
/// subscriptions of the group, with their alerts, and the group's alerts still to be sent
/// to them.
pub(super) fn leave_group(
    tx: &mut Transaction<'_>,
    group_id: &str,
    user_id: &str,
) -> StoreResult<()> {
    todo!("postgres notify: leave_group")
}

pub(super) async fn create_contact_point(
    store: &PostgresStore,
    point: ContactPoint,
) -> StoreResult<()> {
    todo!("postgres notify: create_contact_point")
}

pub(super) async fn list_contact_points(
    store: &PostgresStore,
    user_id: &str,
) -> StoreResult<Vec<ContactPoint>> {
    todo!("postgres notify: list_contact_points")
}

pub(super) async fn contact_point(
    store: &PostgresStore,
    user_id: &str,
    name: &str,
) -> StoreResult<Option<ContactPoint>> {
    todo!("postgres notify: contact_point")
}

pub(super) async fn delete_contact_point(
    store: &PostgresStore,
    user_id: &str,
    name: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    todo!("postgres notify: delete_contact_point")
}

pub(super) async fn put_policy(store: &PostgresStore, policy: PolicyRecord) -> StoreResult<bool> {
    todo!("postgres notify: put_policy")
}

pub(super) async fn list_policies(
    store: &PostgresStore,
    user_id: &str,
) -> StoreResult<Vec<PolicyRecord>> {
    todo!("postgres notify: list_policies")
}

pub(super) async fn policy(
    store: &PostgresStore,
    user_id: &str,
    name: &str,
) -> StoreResult<Option<PolicyRecord>> {
    todo!("postgres notify: policy")
}

pub(super) async fn delete_policy(
    store: &PostgresStore,
    user_id: &str,
    name: &str,
) -> StoreResult<bool> {
    todo!("postgres notify: delete_policy")
}

pub(super) async fn create_silence(store: &PostgresStore, silence: Silence) -> StoreResult<()> {
    todo!("postgres notify: create_silence")
}

pub(super) async fn list_silences(
    store: &PostgresStore,
    user_id: &str,
) -> StoreResult<Vec<Silence>> {
    todo!("postgres notify: list_silences")
}

pub(super) async fn delete_silence(
    store: &PostgresStore,
    user_id: &str,
    id: &str,
) -> StoreResult<bool> {
    todo!("postgres notify: delete_silence")
}

pub(super) async fn notify_directory(store: &PostgresStore) -> StoreResult<NotifyDirectory> {
    todo!("postgres notify: notify_directory")
}

pub(super) async fn take_deliveries(
    store: &PostgresStore,
    now: Timestamp,
    lease_until: Timestamp,
    limit: usize,
    hold: &DeliveryHold,
) -> StoreResult<Vec<DeliveryJob>> {
    todo!("postgres notify: take_deliveries")
}

pub(super) async fn finish_deliveries(
    store: &PostgresStore,
    results: Vec<FinishedDelivery>,
) -> StoreResult<()> {
    todo!("postgres notify: finish_deliveries")
}

pub(super) async fn list_deliveries(
    store: &PostgresStore,
    query: DeliveryQuery,
) -> StoreResult<Vec<Delivery>> {
    todo!("postgres notify: list_deliveries")
}

pub(super) async fn delivery(
    store: &PostgresStore,
    id: &str,
) -> StoreResult<Option<DeliveryRecord>> {
    todo!("postgres notify: delivery")
}

pub(super) async fn next_outbox_due(store: &PostgresStore) -> StoreResult<Option<Timestamp>> {
    todo!("postgres notify: next_outbox_due")
}

pub(super) async fn outbox_backlog(
    store: &PostgresStore,
    now: Timestamp,
) -> StoreResult<(u64, Option<Timestamp>)> {
    todo!("postgres notify: outbox_backlog")
}

pub(super) async fn offboard_user(
    store: &PostgresStore,
    user_id: &str,
    dry_run: bool,
    actor: &str,
    now: Timestamp,
) -> StoreResult<OffboardCounts> {
    todo!("postgres notify: offboard_user")
}

pub(super) async fn append_audit(store: &PostgresStore, record: AuditRecord) -> StoreResult<()> {
    todo!("postgres notify: append_audit")
}

pub(super) async fn list_audit(
    store: &PostgresStore,
    limit: usize,
) -> StoreResult<Vec<AuditRecord>> {
    todo!("postgres notify: list_audit")
}
