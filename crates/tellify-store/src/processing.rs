//! The processing commit, written once for every backend.
//!
//! What a batch of handler outputs does — which alert each output moves and how
//! (`engine::alerts::apply_output`), which of the resulting transitions notify
//! (`Transition::notifies`), what the planner puts in the outbox, when repeats stop — is
//! decided here. A backend only carries it out: it implements [`ProcessingTx`] with plain
//! reads and writes inside one transaction of its own, and calls [`commit`],
//! [`plan_repeats`] and [`act_on_alert`] from that transaction. So the SQLite store and a
//! PostgreSQL store make the same decisions, and this module is tested without a
//! database (the fake at the bottom).
//!
//! The trait is synchronous on purpose: the commit is the hot path, and SQLite runs it on
//! its writer thread without an executor. A backend with an async client runs the whole
//! commit on one blocking thread that owns its transaction.
//!
//! Nothing here mints an id or reads a clock: a new alert's id comes from the commit's
//! [`IdSourceRef`], `now` is the commit's (each output's `at`, or the caller's `now`).

use jiff::{SignedDuration, Timestamp};
use tellify_engine::alerts::{apply_action, apply_output, Action, Alert, AlertState, HistoryEntry};
use tellify_engine::alerts::{Transition, ENGINE_ACTOR};
use tellify_engine::render::Transition as Notified;
use tellify_model::StoredEvent;

use crate::{
    AlertChange, Appended, CommitOutcome, NewNotification, PlannerRef, ProcessingCommit,
    RepeatSchedule, StoreError, StoreResult, SubscriptionHealth,
};

/// One transaction of a backend, as the processing decisions need it. Every method is a
/// plain read or write; none decides anything. Nothing is visible to others before the
/// backend commits the transaction, and a failure anywhere rolls all of it back.
pub trait ProcessingTx {
    /// Whether the subscription still exists (it may have been deleted since its
    /// outputs were computed).
    fn subscription_exists(&mut self, subscription_id: &str) -> StoreResult<bool>;
    fn alert_by_key(
        &mut self,
        subscription_id: &str,
        group_key: &str,
    ) -> StoreResult<Option<Alert>>;
    fn alert_by_id(&mut self, alert_id: &str) -> StoreResult<Option<Alert>>;
    /// Inserts or replaces the alert with its id.
    fn save_alert(&mut self, alert: &Alert) -> StoreResult<()>;
    /// Appends one history entry of the alert; returns its position in the history of all
    /// alerts, which only grows and is never reused.
    fn append_history(&mut self, alert_id: &str, entry: &HistoryEntry) -> StoreResult<i64>;
    /// Stores planned notifications, each once per idempotency key; one for a contact point
    /// (or user) that is gone is skipped. Returns how many were stored.
    fn write_notifications(
        &mut self,
        notifications: &[NewNotification],
        now: Timestamp,
    ) -> StoreResult<usize>;
    /// Inserts or replaces the repeat schedule of each (alert, user) whose user still exists.
    fn schedule_repeats(&mut self, schedules: &[RepeatSchedule]) -> StoreResult<()>;
    /// Removes every repeat schedule of the alert.
    fn stop_repeats(&mut self, alert_id: &str) -> StoreResult<()>;
    /// Repeat schedules due by `now`, earliest first, at most `limit`.
    fn due_repeats(&mut self, now: Timestamp, limit: usize) -> StoreResult<Vec<DueRepeat>>;
    /// Removes the repeat schedule of one (alert, user).
    fn drop_repeat(&mut self, alert_id: &str, user_id: &str) -> StoreResult<()>;
    /// Moves one schedule on to `next_at` and counts the repeat.
    fn advance_repeat(
        &mut self,
        alert_id: &str,
        user_id: &str,
        next_at: Timestamp,
    ) -> StoreResult<()>;
    fn save_handler_state(
        &mut self,
        subscription_id: &str,
        state: &serde_json::Value,
    ) -> StoreResult<()>;
    /// Records a subscription's health; with `disable` the subscription is switched off.
    fn save_health(
        &mut self,
        subscription_id: &str,
        health: Option<&SubscriptionHealth>,
        disable: bool,
    ) -> StoreResult<()>;
    /// Appends events to the log as `Store::append_events` does (idempotency, dedup).
    fn append_derived(&mut self, events: Vec<StoredEvent>) -> StoreResult<Vec<Appended>>;
    fn save_cursor(&mut self, cursor: i64) -> StoreResult<()>;
}

/// A repeat schedule whose time has come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueRepeat {
    pub alert_id: String,
    pub user_id: String,
    pub every_ms: i64,
    /// Repeats planned so far.
    pub count: i64,
}

/// A source of new ids that can sit in a [`ProcessingCommit`]: the worker passes
/// `tellify_model::new_id`, a test a counter.
#[derive(Clone)]
pub struct IdSourceRef(pub std::sync::Arc<dyn Fn() -> String + Send + Sync>);

impl IdSourceRef {
    pub fn new(source: impl Fn() -> String + Send + Sync + 'static) -> IdSourceRef {
        IdSourceRef(std::sync::Arc::new(source))
    }

    pub fn next_id(&self) -> String {
        (self.0)()
    }
}

impl Default for IdSourceRef {
    /// ULIDs (`tellify_model::new_id`), what the running service uses.
    fn default() -> IdSourceRef {
        IdSourceRef::new(tellify_model::new_id)
    }
}

impl std::fmt::Debug for IdSourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdSourceRef")
    }
}

impl PartialEq for IdSourceRef {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Applies a processing commit inside `tx`: every output to its alert (skipping
/// subscriptions deleted since), with its history and the outbox rows its notifying
/// transitions call for; then handler states, health, derived events and the cursor.
pub fn commit(tx: &mut impl ProcessingTx, commit: ProcessingCommit) -> StoreResult<CommitOutcome> {
    let mut existing = SubscriptionsSeen::default();
    let ids = || commit.ids.next_id();
    let mut changes: Vec<AlertChange> = Vec::new();
    for item in &commit.outputs {
        let subscription_id = &item.origin.subscription_id;
        if !existing.exists(tx, subscription_id)? {
            continue;
        }
        let current = tx.alert_by_key(subscription_id, item.output.group_key())?;
        let Some((alert, history)) =
            apply_output(current, &item.output, &item.origin, item.at, &ids)
        else {
            continue;
        };
        tx.save_alert(&alert)?;
        for entry in &history {
            let position = tx.append_history(&alert.id, entry)?;
            if let Some(planner) = &commit.planner {
                plan_transition(tx, planner, &alert, entry, position, item.at)?;
            }
        }
        changes.push(AlertChange { alert, history });
    }
    for (subscription_id, state) in &commit.states {
        if !existing.exists(tx, subscription_id)? {
            continue;
        }
        tx.save_handler_state(subscription_id, state)?;
    }
    for update in &commit.health {
        let disable = update.health.as_ref().is_some_and(|health| health.disabled);
        tx.save_health(&update.subscription_id, update.health.as_ref(), disable)?;
    }
    let derived = tx.append_derived(commit.derived)?;
    tx.save_cursor(commit.cursor)?;
    Ok(CommitOutcome { changes, derived })
}

/// Plans repeated notifications for the schedules due by `now`: an alert still firing,
/// unacknowledged, unshelved and not cleared gets the planner's notifications for that
/// user and moves on to its next time; any other leaves the schedule. Returns how many
/// notifications were stored.
pub fn plan_repeats(
    tx: &mut impl ProcessingTx,
    now: Timestamp,
    planner: &PlannerRef,
    limit: usize,
) -> StoreResult<usize> {
    let mut written = 0;
    for due in tx.due_repeats(now, limit)? {
        let alert = tx.alert_by_id(&due.alert_id)?;
        let Some(alert) = alert.filter(|alert| {
            alert.state == AlertState::Firing && still_notifiable(alert, Notified::Repeat, now)
        }) else {
            tx.drop_repeat(&due.alert_id, &due.user_id)?;
            continue;
        };
        let mut plan = planner.0.plan(&alert, Notified::Repeat, due.count + 1, now);
        plan.notifications.retain(|n| n.user_id == due.user_id);
        let next_at = plan
            .repeats
            .iter()
            .find(|schedule| schedule.user_id == due.user_id)
            .map(|schedule| schedule.next_at)
            .unwrap_or_else(|| {
                let every = SignedDuration::from_millis(due.every_ms.max(1000));
                now.checked_add(every).unwrap_or(Timestamp::MAX)
            });
        written += tx.write_notifications(&plan.notifications, now)?;
        tx.advance_repeat(&due.alert_id, &due.user_id, next_at)?;
    }
    Ok(written)
}

/// Applies a person's action to the alert `alert_id` and records it.
pub fn act_on_alert(
    tx: &mut impl ProcessingTx,
    alert_id: &str,
    action: &Action,
    actor: &str,
    now: Timestamp,
) -> StoreResult<AlertChange> {
    let mut alert = tx.alert_by_id(alert_id)?.ok_or(StoreError::NotFound)?;
    let history = apply_action(&mut alert, action, actor, now)?;
    tx.save_alert(&alert)?;
    for entry in &history {
        tx.append_history(&alert.id, entry)?;
    }
    Ok(AlertChange { alert, history })
}

/// Writes the outbox rows one history entry calls for: only the engine's transitions
/// notify (a person who acted knows), and a resolved alert repeats no more.
fn plan_transition(
    tx: &mut impl ProcessingTx,
    planner: &PlannerRef,
    alert: &Alert,
    entry: &HistoryEntry,
    position: i64,
    now: Timestamp,
) -> StoreResult<()> {
    if entry.actor != ENGINE_ACTOR {
        return Ok(());
    }
    let Some(notified) = entry.action.notifies() else {
        return Ok(());
    };
    if entry.action == Transition::Resolved {
        tx.stop_repeats(&alert.id)?;
    }
    let plan = planner.0.plan(alert, notified, position, now);
    tx.write_notifications(&plan.notifications, now)?;
    tx.schedule_repeats(&plan.repeats)?;
    Ok(())
}

/// Whether an alert should still make noise about `notified` at `now`: a person who
/// acknowledged or shelved it since has said they know. Asked when planning and again
/// when a notification is ganged into a delivery.
pub fn still_notifiable(alert: &Alert, notified: Notified, now: Timestamp) -> bool {
    if notified == Notified::Resolved {
        return !alert.cleared;
    }
    !(alert.cleared || alert.is_acked(now) || alert.is_shelved(now))
}

/// Which subscriptions exist, asked once per commit.
#[derive(Default)]
struct SubscriptionsSeen(std::collections::HashMap<String, bool>);

impl SubscriptionsSeen {
    fn exists(&mut self, tx: &mut impl ProcessingTx, id: &str) -> StoreResult<bool> {
        if let Some(found) = self.0.get(id) {
            return Ok(*found);
        }
        let found = tx.subscription_exists(id)?;
        self.0.insert(id.to_string(), found);
        Ok(found)
    }
}
