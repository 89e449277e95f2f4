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

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use tellify_engine::alerts::{apply_action, apply_output, Action, Alert, AlertState, HistoryEntry};
use tellify_engine::alerts::{Transition, ENGINE_ACTOR};
use tellify_engine::render::Transition as Notified;
use tellify_model::StoredEvent;

pub use crate::IdSourceRef;
use crate::{
    AlertChange, AlertStanding, Appended, ClaimRequest, CommitOutcome, DeliveryJob,
    FilterErrorUpdate, NewNotification, OutputToApply, PlannerRef, ProcessingCommit,
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
    /// Adds a commit's filter failures to the subscription's record (creating it), with
    /// the last error and time replaced; nothing when the subscription is gone.
    fn add_filter_errors(&mut self, update: &FilterErrorUpdate) -> StoreResult<()>;
    /// Appends events to the log as `Store::append_events` does (idempotency, dedup).
    fn append_derived(&mut self, events: Vec<StoredEvent>) -> StoreResult<Vec<Appended>>;
    fn save_cursor(&mut self, cursor: i64) -> StoreResult<()>;
    /// Claims what is due for sending, as [`crate::Store::take_deliveries`] does, inside
    /// this transaction; `None` for a backend that claims only in a transaction of its own.
    fn claim_deliveries(
        &mut self,
        request: &ClaimRequest,
    ) -> StoreResult<Option<Vec<DeliveryJob>>> {
        let _ = request;
        Ok(None)
    }

    // What [`commit`] calls: each table once per commit. The defaults call the one-row
    // methods above in turn; a backend that pays a round trip per statement writes each
    // as one statement.

    /// Which of `ids` (distinct) are subscriptions that still exist.
    fn subscriptions_existing(&mut self, ids: &[&str]) -> StoreResult<HashSet<String>> {
        let mut found = HashSet::with_capacity(ids.len());
        for id in ids {
            if self.subscription_exists(id)? {
                found.insert((*id).to_string());
            }
        }
        Ok(found)
    }
    /// The alerts with these (subscription id, group key) pairs (distinct), those that
    /// exist, in no particular order, read to be changed.
    fn alerts_by_keys(&mut self, keys: &[(&str, &str)]) -> StoreResult<Vec<Alert>> {
        let mut found = Vec::with_capacity(keys.len());
        for (subscription_id, group_key) in keys {
            found.extend(self.alert_by_key(subscription_id, group_key)?);
        }
        Ok(found)
    }
    /// Inserts or replaces each alert (distinct ids) with its id.
    fn save_alerts(&mut self, alerts: &[&Alert]) -> StoreResult<()> {
        for alert in alerts {
            self.save_alert(alert)?;
        }
        Ok(())
    }
    /// Appends history entries, in order; returns their positions in the same order.
    fn append_histories(&mut self, entries: &[(&str, &HistoryEntry)]) -> StoreResult<Vec<i64>> {
        let mut positions = Vec::with_capacity(entries.len());
        for (alert_id, entry) in entries {
            positions.push(self.append_history(alert_id, entry)?);
        }
        Ok(positions)
    }
    /// Removes every repeat schedule of these alerts.
    fn stop_repeats_of(&mut self, alert_ids: &[String]) -> StoreResult<()> {
        for alert_id in alert_ids {
            self.stop_repeats(alert_id)?;
        }
        Ok(())
    }
    /// Saves the handler state of each subscription (distinct ids).
    fn save_handler_states(&mut self, states: &[(&str, &serde_json::Value)]) -> StoreResult<()> {
        for (subscription_id, state) in states {
            self.save_handler_state(subscription_id, state)?;
        }
        Ok(())
    }
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

/// Applies a processing commit inside `tx`: every output to its alert (skipping
/// subscriptions deleted since), with its history and the outbox rows its notifying
/// transitions call for; then handler states, health, filter failures, derived events and
/// the cursor.
///
/// The writes go table by table, each once for the whole commit (the batch methods of
/// [`ProcessingTx`]): a backend that pays a round trip per statement pays a dozen per
/// commit rather than a handful per event. The outputs are applied in memory first, in
/// order, so an alert that several outputs move ends as the last one left it, and every
/// transition is planned with the alert as it was right after that transition.
pub fn commit(tx: &mut impl ProcessingTx, commit: ProcessingCommit) -> StoreResult<CommitOutcome> {
    let ids = || commit.ids.next_id();
    let mut asked: Vec<&str> = commit
        .outputs
        .iter()
        .map(|item| item.origin.subscription_id.as_str())
        .chain(commit.states.iter().map(|(id, _)| id.as_str()))
        .collect();
    asked.sort_unstable();
    asked.dedup();
    let existing = if asked.is_empty() {
        HashSet::new()
    } else {
        tx.subscriptions_existing(&asked)?
    };
    let outputs: Vec<&OutputToApply> = commit
        .outputs
        .iter()
        .filter(|item| existing.contains(&item.origin.subscription_id))
        .collect();
    let mut keys: Vec<(&str, &str)> = outputs
        .iter()
        .map(|item| {
            (
                item.origin.subscription_id.as_str(),
                item.output.group_key(),
            )
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let stored: HashMap<(String, String), Alert> = if keys.is_empty() {
        HashMap::new()
    } else {
        tx.alerts_by_keys(&keys)?
            .into_iter()
            .map(|alert| {
                (
                    (alert.subscription_id.clone(), alert.group_key.clone()),
                    alert,
                )
            })
            .collect()
    };
    // Apply every output in memory, in order; `changes[i].1` is when output i happened.
    let mut changes: Vec<(AlertChange, Timestamp)> = Vec::new();
    let mut last_of: HashMap<(String, String), usize> = HashMap::new();
    for item in outputs {
        let key = (
            item.origin.subscription_id.clone(),
            item.output.group_key().to_string(),
        );
        // As the last output in this commit left it, else as stored.
        let current = match last_of.get(&key) {
            Some(&earlier) => Some(changes[earlier].0.alert.clone()),
            None => stored.get(&key).cloned(),
        };
        let Some((alert, history)) =
            apply_output(current, &item.output, &item.origin, item.at, &ids)
        else {
            continue;
        };
        last_of.insert(key, changes.len());
        changes.push((AlertChange { alert, history }, item.at));
    }
    // Each alert once, as the last output left it.
    let mut last: Vec<usize> = last_of.into_values().collect();
    last.sort_unstable();
    let saved: Vec<&Alert> = last.iter().map(|&i| &changes[i].0.alert).collect();
    if !saved.is_empty() {
        tx.save_alerts(&saved)?;
    }
    let entries: Vec<(&str, &HistoryEntry)> = changes
        .iter()
        .flat_map(|(change, _)| {
            change
                .history
                .iter()
                .map(|entry| (change.alert.id.as_str(), entry))
        })
        .collect();
    let positions = if entries.is_empty() {
        Vec::new()
    } else {
        tx.append_histories(&entries)?
    };
    if positions.len() != entries.len() {
        return Err(StoreError::Unavailable(format!(
            "{} history entries were written for {}",
            positions.len(),
            entries.len()
        )));
    }
    let mut notified = 0;
    let mut last_due = None;
    if let Some(planner) = &commit.planner {
        let mut outbox = Outbox::default();
        let mut positions = positions.into_iter();
        for (change, at) in &changes {
            for entry in &change.history {
                let position = positions.next().unwrap_or_default();
                outbox.plan_transition(planner, &change.alert, entry, position, *at);
            }
        }
        last_due = outbox.last_due();
        notified = outbox.write(tx)?;
    }
    let states: Vec<(&str, &serde_json::Value)> = commit
        .states
        .iter()
        .filter(|(id, _)| existing.contains(id))
        .map(|(id, state)| (id.as_str(), state))
        .collect();
    if !states.is_empty() {
        tx.save_handler_states(&states)?;
    }
    for update in &commit.health {
        let disable = update.health.as_ref().is_some_and(|health| health.disabled);
        tx.save_health(&update.subscription_id, update.health.as_ref(), disable)?;
    }
    for update in &commit.filter_errors {
        tx.add_filter_errors(update)?;
    }
    let derived = tx.append_derived(commit.derived)?;
    tx.save_cursor(commit.cursor)?;
    // Last, so the claim sees this commit's notifications (and nothing else waits on it).
    let (claimed, due_later) = match &commit.claim {
        Some(request) if notified > 0 && request.limit > 0 => (
            tx.claim_deliveries(request)?,
            last_due.is_some_and(|due| due > request.now),
        ),
        _ => (None, false),
    };
    Ok(CommitOutcome {
        changes: changes.into_iter().map(|(change, _)| change).collect(),
        derived,
        claimed,
        due_later,
    })
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
            alert.state == AlertState::Firing
                && still_notifiable(&alert.standing(), Notified::Repeat, now)
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

/// What the notifying transitions of one commit put in the outbox, gathered so that each
/// table is written once: the alerts whose repeats stop, the repeat schedules set after
/// that, and the notifications.
#[derive(Default)]
struct Outbox {
    /// Alerts resolved in this commit: their schedules stored so far are removed.
    stopped: Vec<String>,
    /// The schedules to store, one per (alert, user): the last one planned after its
    /// alert's last stop.
    schedules: BTreeMap<(String, String), RepeatSchedule>,
    /// Notifications in runs planned at the same time (`created` is that time).
    notifications: Vec<(Timestamp, Vec<NewNotification>)>,
}

impl Outbox {
    /// Plans what one history entry calls for: only the engine's transitions notify (a
    /// person who acted knows), and a resolved alert repeats no more.
    fn plan_transition(
        &mut self,
        planner: &PlannerRef,
        alert: &Alert,
        entry: &HistoryEntry,
        position: i64,
        now: Timestamp,
    ) {
        if entry.actor != ENGINE_ACTOR {
            return;
        }
        let Some(notified) = entry.action.notifies() else {
            return;
        };
        if entry.action == Transition::Resolved {
            let ended: Vec<(String, String)> = self
                .schedules
                .range((alert.id.clone(), String::new())..)
                .take_while(|((alert_id, _), _)| *alert_id == alert.id)
                .map(|(key, _)| key.clone())
                .collect();
            for key in ended {
                self.schedules.remove(&key);
            }
            if !self.stopped.contains(&alert.id) {
                self.stopped.push(alert.id.clone());
            }
        }
        let plan = planner.0.plan(alert, notified, position, now);
        for schedule in plan.repeats {
            let key = (schedule.alert_id.clone(), schedule.user_id.clone());
            self.schedules.insert(key, schedule);
        }
        match self.notifications.last_mut() {
            Some((at, run)) if *at == now => run.extend(plan.notifications),
            _ => self.notifications.push((now, plan.notifications)),
        }
    }

    /// When the last of the planned notifications is due.
    fn last_due(&self) -> Option<Timestamp> {
        self.notifications
            .iter()
            .flat_map(|(_, run)| run.iter().map(|notification| notification.due_at))
            .max()
    }

    /// Stops, then notifications, then the schedules set since the stops. Returns how
    /// many notifications were stored.
    fn write(self, tx: &mut impl ProcessingTx) -> StoreResult<usize> {
        if !self.stopped.is_empty() {
            tx.stop_repeats_of(&self.stopped)?;
        }
        let mut written = 0;
        for (now, run) in &self.notifications {
            if !run.is_empty() {
                written += tx.write_notifications(run, *now)?;
            }
        }
        if !self.schedules.is_empty() {
            let schedules: Vec<RepeatSchedule> = self.schedules.into_values().collect();
            tx.schedule_repeats(&schedules)?;
        }
        Ok(written)
    }
}

/// Whether an alert should still make noise about `notified` at `now`: a person who
/// acknowledged or shelved it since has said they know. Asked when planning and again
/// when a notification is ganged into a delivery.
pub fn still_notifiable(alert: &AlertStanding, notified: Notified, now: Timestamp) -> bool {
    if notified == Notified::Resolved {
        return !alert.cleared;
    }
    !(alert.cleared || alert.is_acked(now) || alert.is_shelved(now))
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use serde_json::json;
    use tellify_engine::alerts::AlertOrigin;
    use tellify_engine::handlers::AlertOutput;
    use tellify_model::{EventInput, Fields, Severity};

    use super::*;
    use crate::{HealthUpdate, NotificationPlanner, OutputToApply, Plan};

    /// A transaction over maps: what a backend stores, without a database.
    #[derive(Default)]
    struct MemoryTx {
        subscriptions: HashSet<String>,
        alerts: HashMap<String, Alert>,
        history: Vec<(String, HistoryEntry)>,
        notifications: HashMap<String, NewNotification>,
        /// (alert id, user id) → (next time, repeats so far)
        repeats: HashMap<(String, String), (Timestamp, i64, i64)>,
        states: HashMap<String, serde_json::Value>,
        health: HashMap<String, (Option<SubscriptionHealth>, bool)>,
        filter_errors: HashMap<String, crate::FilterErrors>,
        events: Vec<StoredEvent>,
        cursor: i64,
    }

    impl ProcessingTx for MemoryTx {
        fn subscription_exists(&mut self, subscription_id: &str) -> StoreResult<bool> {
            Ok(self.subscriptions.contains(subscription_id))
        }

        fn alert_by_key(
            &mut self,
            subscription_id: &str,
            group_key: &str,
        ) -> StoreResult<Option<Alert>> {
            Ok(self
                .alerts
                .values()
                .find(|a| a.subscription_id == subscription_id && a.group_key == group_key)
                .cloned())
        }

        fn alert_by_id(&mut self, alert_id: &str) -> StoreResult<Option<Alert>> {
            Ok(self.alerts.get(alert_id).cloned())
        }

        fn save_alert(&mut self, alert: &Alert) -> StoreResult<()> {
            self.alerts.insert(alert.id.clone(), alert.clone());
            Ok(())
        }

        fn append_history(&mut self, alert_id: &str, entry: &HistoryEntry) -> StoreResult<i64> {
            self.history.push((alert_id.to_string(), entry.clone()));
            Ok(self.history.len() as i64)
        }

        fn write_notifications(
            &mut self,
            notifications: &[NewNotification],
            _now: Timestamp,
        ) -> StoreResult<usize> {
            let mut written = 0;
            for notification in notifications {
                if !self
                    .notifications
                    .contains_key(&notification.idempotency_key)
                {
                    self.notifications
                        .insert(notification.idempotency_key.clone(), notification.clone());
                    written += 1;
                }
            }
            Ok(written)
        }

        fn schedule_repeats(&mut self, schedules: &[RepeatSchedule]) -> StoreResult<()> {
            for schedule in schedules {
                let key = (schedule.alert_id.clone(), schedule.user_id.clone());
                let count = self.repeats.get(&key).map_or(0, |(_, _, count)| *count);
                self.repeats
                    .insert(key, (schedule.next_at, schedule.every_ms, count));
            }
            Ok(())
        }

        fn stop_repeats(&mut self, alert_id: &str) -> StoreResult<()> {
            self.repeats.retain(|(alert, _), _| alert != alert_id);
            Ok(())
        }

        fn due_repeats(&mut self, now: Timestamp, limit: usize) -> StoreResult<Vec<DueRepeat>> {
            let mut due: Vec<(Timestamp, DueRepeat)> = self
                .repeats
                .iter()
                .filter(|(_, (next_at, _, _))| *next_at <= now)
                .map(|((alert_id, user_id), (next_at, every_ms, count))| {
                    let repeat = DueRepeat {
                        alert_id: alert_id.clone(),
                        user_id: user_id.clone(),
                        every_ms: *every_ms,
                        count: *count,
                    };
                    (*next_at, repeat)
                })
                .collect();
            due.sort_by_key(|(next_at, _)| *next_at);
            Ok(due.into_iter().take(limit).map(|(_, due)| due).collect())
        }

        fn drop_repeat(&mut self, alert_id: &str, user_id: &str) -> StoreResult<()> {
            self.repeats
                .remove(&(alert_id.to_string(), user_id.to_string()));
            Ok(())
        }

        fn advance_repeat(
            &mut self,
            alert_id: &str,
            user_id: &str,
            next_at: Timestamp,
        ) -> StoreResult<()> {
            let key = (alert_id.to_string(), user_id.to_string());
            if let Some((next, _, count)) = self.repeats.get_mut(&key) {
                *next = next_at;
                *count += 1;
            }
            Ok(())
        }

        fn save_handler_state(
            &mut self,
            subscription_id: &str,
            state: &serde_json::Value,
        ) -> StoreResult<()> {
            self.states
                .insert(subscription_id.to_string(), state.clone());
            Ok(())
        }

        fn save_health(
            &mut self,
            subscription_id: &str,
            health: Option<&SubscriptionHealth>,
            disable: bool,
        ) -> StoreResult<()> {
            self.health
                .insert(subscription_id.to_string(), (health.cloned(), disable));
            Ok(())
        }

        fn add_filter_errors(&mut self, update: &FilterErrorUpdate) -> StoreResult<()> {
            let before = self
                .filter_errors
                .get(&update.subscription_id)
                .map_or(0, |errors| errors.count);
            self.filter_errors.insert(
                update.subscription_id.clone(),
                crate::FilterErrors {
                    count: before + update.count,
                    last_error: update.last_error.clone(),
                    last_at: update.last_at,
                },
            );
            Ok(())
        }

        fn append_derived(&mut self, events: Vec<StoredEvent>) -> StoreResult<Vec<Appended>> {
            let mut appended = Vec::new();
            for mut event in events {
                event.seq = 1000 + self.events.len() as i64;
                appended.push(Appended {
                    id: event.id.clone(),
                    seq: event.seq,
                    duplicate: false,
                    repeat: false,
                });
                self.events.push(event);
            }
            Ok(appended)
        }

        fn save_cursor(&mut self, cursor: i64) -> StoreResult<()> {
            self.cursor = cursor;
            Ok(())
        }
    }

    /// Tells `ann` at her `pager` about every transition; repeats firing alerts every minute.
    struct PagerPlanner;

    impl NotificationPlanner for PagerPlanner {
        fn plan(
            &self,
            alert: &Alert,
            transition: Notified,
            occurrence: i64,
            now: Timestamp,
        ) -> Plan {
            let mut plan = Plan::default();
            plan.notifications.push(NewNotification {
                user_id: "ann".into(),
                contact_point_id: "pager".into(),
                alert_id: alert.id.clone(),
                transition: transition.as_str().to_string(),
                idempotency_key: format!("{}:{transition}:{occurrence}", alert.id),
                due_at: now,
                alert: alert.clone(),
            });
            if transition != Notified::Resolved {
                plan.repeats.push(RepeatSchedule {
                    alert_id: alert.id.clone(),
                    user_id: "ann".into(),
                    next_at: now + SignedDuration::from_secs(60),
                    every_ms: 60_000,
                });
            }
            plan
        }
    }

    fn t(seconds: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(seconds)
    }

    fn origin(latching: bool) -> AlertOrigin {
        AlertOrigin {
            subscription_id: "s1".into(),
            owner_user: Some("ann".into()),
            owner_group: None,
            kind: "match".into(),
            title: "disk".into(),
            latching,
        }
    }

    fn fire(severity: Severity, seconds: i64) -> OutputToApply {
        OutputToApply {
            origin: origin(false),
            output: AlertOutput::Fire {
                group_key: "/srv".into(),
                severity,
                message: "full".into(),
                fields: Fields::new(),
                event_id: None,
            },
            at: t(seconds),
        }
    }

    fn resolve(seconds: i64) -> OutputToApply {
        OutputToApply {
            origin: origin(false),
            output: AlertOutput::Resolve {
                group_key: "/srv".into(),
                message: None,
            },
            at: t(seconds),
        }
    }

    /// A commit with the pager planner and ids `alert-1`, `alert-2`, ...
    fn commit_of(cursor: i64, outputs: Vec<OutputToApply>) -> ProcessingCommit {
        let counter = Arc::new(AtomicUsize::new(0));
        ProcessingCommit {
            cursor,
            outputs,
            planner: Some(PlannerRef(Arc::new(PagerPlanner))),
            ids: IdSourceRef::new(move || {
                format!("alert-{}", counter.fetch_add(1, Ordering::Relaxed) + 1)
            }),
            ..Default::default()
        }
    }

    fn store() -> MemoryTx {
        MemoryTx {
            subscriptions: HashSet::from(["s1".to_string()]),
            ..Default::default()
        }
    }

    fn planned(tx: &MemoryTx) -> Vec<String> {
        let mut planned: Vec<String> = tx
            .notifications
            .values()
            .map(|n| n.transition.clone())
            .collect();
        planned.sort();
        planned
    }

    #[test]
    fn a_new_alert_fires_with_the_callers_id_and_is_planned_as_fired() {
        let mut tx = store();
        let outcome = commit(&mut tx, commit_of(1, vec![fire(Severity::Warning, 1)])).unwrap();
        assert_eq!(outcome.changes.len(), 1);
        let alert = &outcome.changes[0].alert;
        assert_eq!(alert.id, "alert-1");
        assert_eq!(outcome.changes[0].history[0].action, Transition::Fired);
        assert_eq!(tx.alerts["alert-1"].state, AlertState::Firing);
        assert_eq!(planned(&tx), vec!["fired"]);
        let notification = tx.notifications.values().next().unwrap();
        assert_eq!(
            notification.idempotency_key, "alert-1:fired:1",
            "the occurrence is the history position"
        );
        assert_eq!(
            tx.repeats[&("alert-1".to_string(), "ann".to_string())].0,
            t(61)
        );
    }

    /// Ganging reads only an alert's standing from its stored JSON: it must say what the
    /// whole alert says, for every way an alert can stop being notifiable.
    #[test]
    fn the_standing_read_from_stored_json_decides_as_the_whole_alert_does() {
        let mut tx = store();
        commit(&mut tx, commit_of(1, vec![fire(Severity::Warning, 1)])).unwrap();
        let firing = tx.alerts["alert-1"].clone();
        let mut variants = vec![firing.clone()];
        let mut acked = firing.clone();
        acked.acked = true;
        variants.push(acked.clone());
        acked.ack_expires = Some(t(50));
        variants.push(acked);
        let mut shelved = firing.clone();
        shelved.shelved_until = Some(t(50));
        variants.push(shelved);
        let mut oneshot = firing.clone();
        oneshot.shelved_oneshot = true;
        variants.push(oneshot);
        let mut cleared = firing;
        cleared.cleared = true;
        variants.push(cleared);
        for alert in &variants {
            let stored = serde_json::to_string(alert).unwrap();
            let read: AlertStanding = serde_json::from_str(&stored).unwrap();
            assert_eq!(read, alert.standing(), "{stored}");
            for now in [t(10), t(100)] {
                for notified in [Notified::Fired, Notified::Resolved, Notified::Repeat] {
                    let whole = !(alert.cleared || alert.is_acked(now) || alert.is_shelved(now))
                        || (notified == Notified::Resolved && !alert.cleared);
                    assert_eq!(
                        still_notifiable(&read, notified, now),
                        whole,
                        "{notified:?} at {now} for {stored}"
                    );
                }
            }
        }
        // The decisions differ across the variants: the test is not vacuous.
        let decided: HashSet<bool> = variants
            .iter()
            .map(|alert| still_notifiable(&alert.standing(), Notified::Fired, t(10)))
            .collect();
        assert_eq!(decided.len(), 2);
    }

    #[test]
    fn a_severity_change_either_way_is_planned_as_escalated() {
        let mut tx = store();
        let outputs = vec![
            fire(Severity::Warning, 1),
            fire(Severity::Critical, 2),
            fire(Severity::Warning, 3),
        ];
        let outcome = commit(&mut tx, commit_of(3, outputs)).unwrap();
        let actions: Vec<Transition> = outcome
            .changes
            .iter()
            .flat_map(|change| change.history.iter().map(|entry| entry.action))
            .collect();
        assert_eq!(
            actions,
            vec![
                Transition::Fired,
                Transition::SeverityRaised,
                Transition::SeverityLowered
            ]
        );
        assert_eq!(planned(&tx), vec!["escalated", "escalated", "fired"]);
        assert_eq!(tx.alerts.len(), 1, "one alert per subscription and key");
    }

    #[test]
    fn a_resolve_is_planned_as_resolved_and_stops_the_repeats() {
        let mut tx = store();
        commit(&mut tx, commit_of(1, vec![fire(Severity::Warning, 1)])).unwrap();
        assert_eq!(tx.repeats.len(), 1);
        let outcome = commit(&mut tx, commit_of(2, vec![resolve(5)])).unwrap();
        assert_eq!(outcome.changes[0].alert.state, AlertState::Resolved);
        assert_eq!(planned(&tx), vec!["fired", "resolved"]);
        assert!(tx.repeats.is_empty());
    }

    #[test]
    fn transitions_that_do_not_notify_plan_nothing() {
        let mut tx = store();
        let latching = |output: OutputToApply| OutputToApply {
            origin: origin(true),
            ..output
        };
        let outputs = vec![
            latching(fire(Severity::Warning, 1)),
            // The same severity again changes the alert but records no transition.
            latching(fire(Severity::Warning, 2)),
            // A latching alert latches instead of resolving: nobody is told.
            latching(resolve(3)),
        ];
        let outcome = commit(&mut tx, commit_of(3, outputs)).unwrap();
        assert_eq!(outcome.changes.len(), 3);
        assert!(outcome.changes[1].history.is_empty());
        assert_eq!(outcome.changes[2].history[0].action, Transition::Latched);
        assert_eq!(planned(&tx), vec!["fired"]);

        // A person's acknowledgement (which resolves the latched alert) notifies nobody.
        let ack = Action::Ack {
            note: None,
            expires: None,
        };
        let change = act_on_alert(&mut tx, "alert-1", &ack, "bob", t(4)).unwrap();
        let actions: Vec<Transition> = change.history.iter().map(|h| h.action).collect();
        assert_eq!(actions, vec![Transition::Acked, Transition::Resolved]);
        assert_eq!(planned(&tx), vec!["fired"]);
        assert_eq!(tx.history.len(), 4);
    }

    #[test]
    fn without_a_planner_changes_are_saved_but_nothing_is_planned() {
        let mut tx = store();
        let mut unplanned = commit_of(1, vec![fire(Severity::Warning, 1)]);
        unplanned.planner = None;
        let outcome = commit(&mut tx, unplanned).unwrap();
        assert_eq!(outcome.changes.len(), 1);
        assert_eq!(tx.history.len(), 1);
        assert!(tx.notifications.is_empty() && tx.repeats.is_empty());
    }

    #[test]
    fn the_cursor_and_handler_states_are_saved_together_for_live_subscriptions_only() {
        let mut tx = store();
        let mut batch = commit_of(7, vec![fire(Severity::Warning, 1)]);
        batch.outputs.push(OutputToApply {
            origin: AlertOrigin {
                subscription_id: "deleted".into(),
                ..origin(false)
            },
            ..fire(Severity::Critical, 1)
        });
        batch.states = vec![
            ("s1".into(), json!({"count": 2})),
            ("deleted".into(), json!({"count": 9})),
        ];
        let outcome = commit(&mut tx, batch).unwrap();
        assert_eq!(tx.cursor, 7);
        assert_eq!(
            tx.states,
            HashMap::from([("s1".into(), json!({"count": 2}))])
        );
        assert_eq!(
            outcome.changes.len(),
            1,
            "outputs of a deleted subscription drop"
        );
        assert_eq!(tx.alerts.len(), 1);
    }

    #[test]
    fn derived_events_are_appended_and_returned_in_order() {
        let mut tx = store();
        let derived = |message: &str| {
            let input = EventInput {
                message: Some(message.to_string()),
                ..Default::default()
            };
            StoredEvent::from_input(input, Some("tellify".into()), t(1), 0)
        };
        let mut batch = commit_of(2, vec![]);
        batch.derived = vec![derived("first"), derived("second")];
        let outcome = commit(&mut tx, batch).unwrap();
        assert_eq!(
            outcome.derived.iter().map(|a| a.seq).collect::<Vec<_>>(),
            vec![1000, 1001]
        );
        let messages: Vec<&str> = tx
            .events
            .iter()
            .filter_map(|e| e.message.as_deref())
            .collect();
        assert_eq!(messages, vec!["first", "second"]);
        assert_eq!(tx.cursor, 2);
    }

    #[test]
    fn a_health_record_that_says_disabled_switches_the_subscription_off() {
        let mut tx = store();
        let failing = SubscriptionHealth {
            failures: 5,
            last_error: "handler panicked".into(),
            since: t(1),
            last_at: t(5),
            disabled: true,
        };
        let mut batch = commit_of(1, vec![]);
        batch.health = vec![
            HealthUpdate {
                subscription_id: "s1".into(),
                health: Some(failing.clone()),
            },
            HealthUpdate {
                subscription_id: "s2".into(),
                health: None,
            },
        ];
        commit(&mut tx, batch).unwrap();
        assert_eq!(tx.health["s1"], (Some(failing), true));
        assert_eq!(tx.health["s2"], (None, false));
    }

    #[test]
    fn filter_failures_add_up_across_commits_with_the_last_error_kept() {
        let mut tx = store();
        let failures = |count, last_error: &str, at| FilterErrorUpdate {
            subscription_id: "s1".into(),
            count,
            last_error: last_error.into(),
            last_at: t(at),
        };
        let mut batch = commit_of(1, vec![]);
        batch.filter_errors = vec![failures(2, "first", 1)];
        commit(&mut tx, batch).unwrap();
        let mut batch = commit_of(2, vec![]);
        batch.filter_errors = vec![failures(3, "second", 2)];
        commit(&mut tx, batch).unwrap();
        let record = &tx.filter_errors["s1"];
        assert_eq!(
            (record.count, record.last_error.as_str(), record.last_at),
            (5, "second", t(2))
        );
    }

    #[test]
    fn a_due_repeat_is_planned_for_a_firing_alert_and_dropped_once_acknowledged() {
        let mut tx = store();
        commit(&mut tx, commit_of(1, vec![fire(Severity::Warning, 1)])).unwrap();
        let planner = PlannerRef(Arc::new(PagerPlanner));
        assert_eq!(plan_repeats(&mut tx, t(30), &planner, 10).unwrap(), 0);
        assert_eq!(plan_repeats(&mut tx, t(61), &planner, 10).unwrap(), 1);
        assert_eq!(planned(&tx), vec!["fired", "repeat"]);
        let key = ("alert-1".to_string(), "ann".to_string());
        assert_eq!((tx.repeats[&key].0, tx.repeats[&key].2), (t(121), 1));

        let ack = Action::Ack {
            note: None,
            expires: None,
        };
        act_on_alert(&mut tx, "alert-1", &ack, "bob", t(100)).unwrap();
        assert_eq!(plan_repeats(&mut tx, t(121), &planner, 10).unwrap(), 0);
        assert!(
            tx.repeats.is_empty(),
            "an acknowledged alert leaves the schedule"
        );
    }

    #[test]
    fn acting_on_a_missing_alert_is_not_found() {
        let mut tx = store();
        let result = act_on_alert(&mut tx, "nope", &Action::Clear, "bob", t(1));
        assert!(matches!(result, Err(StoreError::NotFound)));
    }
}
