//! Alerts on PostgreSQL: reads, the dashboard's summaries, history and its export, and
//! the processing commits ([`crate::processing`] over a PostgreSQL transaction), a
//! person's action and planned repeats.
#![allow(unused_variables)]

use jiff::Timestamp;
use tellify_engine::alerts::{Action, Alert, HistoryEntry};

use super::PostgresStore;
use crate::{
    AlertChange, AlertQuery, CommitOutcome, LoggedAlertChange, PlannerRef, ProcessingCommit,
    ProcessingSnapshot, StoreResult, SubscriptionAlerts, Viewer,
};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    group_key TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    cleared BOOLEAN NOT NULL,
    owner_user TEXT,
    owner_group TEXT,
    body TEXT NOT NULL,
    UNIQUE (subscription_id, group_key)
);
CREATE INDEX alerts_owner ON alerts(owner_user);
CREATE TABLE alert_history (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX alert_history_alert ON alert_history(alert_id);
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
    todo!("postgres alerts: alert")
}

pub(super) async fn list_alerts(
    store: &PostgresStore,
    query: AlertQuery,
) -> StoreResult<Vec<Alert>> {
    todo!("postgres alerts: list_alerts")
}

pub(super) async fn subscription_alerts(
    store: &PostgresStore,
    viewer: Option<&Viewer>,
) -> StoreResult<Vec<SubscriptionAlerts>> {
    todo!("postgres alerts: subscription_alerts")
}

pub(super) async fn held_alerts(
    store: &PostgresStore,
    actor: &str,
    viewer: Option<&Viewer>,
) -> StoreResult<Vec<Alert>> {
    todo!("postgres alerts: held_alerts")
}

pub(super) async fn alert_history(
    store: &PostgresStore,
    id: &str,
) -> StoreResult<Vec<HistoryEntry>> {
    todo!("postgres alerts: alert_history")
}

pub(super) async fn act_on_alert(
    store: &PostgresStore,
    id: &str,
    action: Action,
    actor: &str,
    now: Timestamp,
) -> StoreResult<AlertChange> {
    todo!("postgres alerts: act_on_alert")
}

pub(super) async fn load_processing(store: &PostgresStore) -> StoreResult<ProcessingSnapshot> {
    todo!("postgres alerts: load_processing")
}

pub(super) async fn commit_processing(
    store: &PostgresStore,
    commit: ProcessingCommit,
) -> StoreResult<CommitOutcome> {
    todo!("postgres alerts: commit_processing")
}

pub(super) async fn plan_repeats(
    store: &PostgresStore,
    now: Timestamp,
    planner: PlannerRef,
    limit: usize,
) -> StoreResult<usize> {
    todo!("postgres alerts: plan_repeats")
}

pub(super) async fn alert_changes_after(
    store: &PostgresStore,
    after: i64,
    limit: usize,
) -> StoreResult<Vec<LoggedAlertChange>> {
    todo!("postgres alerts: alert_changes_after")
}

pub(super) async fn last_alert_change(store: &PostgresStore) -> StoreResult<i64> {
    todo!("postgres alerts: last_alert_change")
}
