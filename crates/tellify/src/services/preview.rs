//! The subscription preview: a subscription as written in the form, not yet saved, run
//! with the real engine over the stored events of a past window, answering what it would
//! have fired and when.
//!
//! The subscription is read and validated exactly as `create` does
//! ([`super::subscriptions::validate_new`]), so the form shows the same field errors
//! whichever button was pressed. Then the kind's handler is built from the registry, put
//! in a [`DispatchIndex`] of its own with the handler's own hints (the worker's index
//! type), and offered the window's events in log order, as the worker would offer them;
//! the handler applies its own filter. Time passes at each event's `time` (never going
//! back), and the handler's deadlines are ticked at their own instants up to the window's
//! end, so absence and count windows close inside the window. Each output moves an alert
//! held in memory through [`tellify_engine::alerts::apply_output`], the state machine
//! the processing commit uses, which says which transitions happened.
//!
//! **Invariant:** a preview saves nothing: no store write, no cache change, no bus
//! publish, no notification. Handler state, alerts and ids live in this call only.
//!
//! Which events: the event log is shared, as `GET /api/v1/events` shows it to every
//! `user` token and as the worker offers every event to every subscription; a preview
//! uses exactly the events the caller's subscription would be offered, and a token
//! without the `user` scope gets none (403). Derived events a handler emits are counted
//! as outputs but not fed back through the log.
//!
//! Bounded: at most [`PreviewBudget::max_events`] events scanned and
//! [`PreviewBudget::max_wall`] of wall time; past either the preview stops where it is and
//! says so (`truncated`, `truncated_reason`).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::Value;
use tellify_engine::alerts::{apply_output, Alert, AlertOrigin, Transition};
use tellify_engine::filter::{EventContext, Filter};
use tellify_engine::handlers::{Handler, Outputs};
use tellify_engine::DispatchIndex;
use tellify_model::{Severity, StoredEvent};

use super::error::{ServiceError, ServiceResult};
use super::subscriptions::{validate_new, NewSubscription};
use super::Services;
use crate::auth::Principal;

/// The window when none is given: the last 24 hours.
pub const DEFAULT_WINDOW: SignedDuration = SignedDuration::from_hours(24);
/// The longest window a preview may look at.
pub const MAX_WINDOW: SignedDuration = SignedDuration::from_hours(24 * 7);

/// Events read from the store in one step.
const EVENTS_PER_STEP: usize = 1000;
/// Most deadline ticks in a row between two events; a handler asking for more is
/// ticking in a loop, and the preview goes on with the next event.
const MAX_TICKS_IN_A_ROW: usize = 10_000;

/// What to preview. `subscription` is exactly the body `POST /api/v1/subscriptions`
/// takes; the window defaults to the 24 hours before now.
#[derive(Clone, Debug)]
pub struct PreviewRequest {
    pub subscription: Value,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

/// How much one preview may cost.
#[derive(Clone, Copy, Debug)]
pub struct PreviewBudget {
    /// Most stored events looked at.
    pub max_events: u64,
    /// Most wall-clock time spent.
    pub max_wall: Duration,
}

impl Default for PreviewBudget {
    fn default() -> PreviewBudget {
        PreviewBudget {
            max_events: 200_000,
            max_wall: Duration::from_secs(2),
        }
    }
}

/// What the subscription would have done in the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Preview {
    /// The window looked at, `[from, to)`.
    pub from: Timestamp,
    pub to: Timestamp,
    /// Stored events looked at (their `time` in the window, or between two that are).
    pub events_scanned: u64,
    /// Events the subscription was offered and its filter accepted.
    pub events_matched: u64,
    /// The preview stopped at its budget before the window's end; `truncated_reason` says
    /// which budget, and the firings stop where it stopped.
    pub truncated: bool,
    pub truncated_reason: Option<TruncatedReason>,
    /// Every alert transition, in order.
    pub fired: Vec<PreviewFiring>,
    /// How many different alerts (group keys) moved.
    pub alerts: usize,
    /// Filter evaluations that failed at run time (a type error, not a missing field) or
    /// handler calls that failed; each counts as not matching, as in the worker.
    pub errors: u64,
}

/// Which budget stopped a preview.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TruncatedReason {
    /// [`PreviewBudget::max_events`] events were looked at.
    Events,
    /// [`PreviewBudget::max_wall`] passed.
    Time,
}

/// One transition the subscription's alert would have made.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PreviewFiring {
    /// When (the event's time, or the deadline's for a timer).
    pub at: Timestamp,
    pub group_key: String,
    /// The alert's severity after the transition.
    pub severity: Severity,
    /// `fired`, `severity_raised`, `severity_lowered`, `latched`, `resolved`, ...
    pub transition: Transition,
    /// Whether this transition notifies (through the owner's policy).
    pub notifies: bool,
    /// The event that fired it, for firings from an event.
    pub event_id: Option<String>,
    /// The alert's message after the transition.
    pub summary: String,
    /// How many times the condition was seen in this firing episode (repeats count).
    pub count: u64,
}

/// Runs `request` within the default [`PreviewBudget`].
pub async fn preview(
    services: &Services,
    principal: &Principal,
    request: PreviewRequest,
) -> ServiceResult<Preview> {
    preview_with(services, principal, request, PreviewBudget::default()).await
}

/// Runs `request` within `budget`.
pub async fn preview_with(
    services: &Services,
    principal: &Principal,
    request: PreviewRequest,
    budget: PreviewBudget,
) -> ServiceResult<Preview> {
    let subscription: NewSubscription = serde_json::from_value(request.subscription)
        .map_err(|error| ServiceError::field("subscription", error.to_string()))?;
    let (from, to) = window(services.clock.now(), request.from, request.to)?;
    let owner_group = validate_new(services, principal, &subscription).await?;
    let handler = services
        .registry
        .build(&subscription.kind, &subscription.params)
        .map_err(ServiceError::Invalid)?;
    // The handler's own filter, compiled again only to count what it accepts.
    let filter = subscription
        .params
        .get("filter")
        .and_then(Value::as_str)
        .and_then(|source| Filter::compile(source).ok());
    let origin = AlertOrigin {
        subscription_id: "preview".to_string(),
        owner_user: Some(principal.user.id.clone()),
        owner_group,
        kind: subscription.kind.clone(),
        title: subscription.title.trim().to_string(),
        latching: subscription.latching,
    };
    let mut run = Run::new(handler, filter, origin, from);
    let started = Instant::now();
    let mut truncated_reason = None;
    if let Some((first, last)) = services.store.event_seq_range(from, to).await? {
        let mut after = first - 1;
        'steps: while after < last {
            let events = services.store.events_after(after, EVENTS_PER_STEP).await?;
            if events.is_empty() {
                break;
            }
            let mut batch = Vec::with_capacity(events.len());
            for event in events {
                if event.seq > last {
                    break;
                }
                if run.scanned >= budget.max_events {
                    truncated_reason = Some(TruncatedReason::Events);
                    break;
                }
                after = event.seq;
                run.scanned += 1;
                if from <= event.time && event.time < to {
                    batch.push(event);
                }
            }
            let reached_last = after >= last;
            run = tokio::task::spawn_blocking(move || {
                for event in &batch {
                    run.offer(event);
                }
                run
            })
            .await
            .map_err(|_| ServiceError::Internal("the preview stopped".to_string()))?;
            if truncated_reason.is_some() || reached_last {
                break 'steps;
            }
            if started.elapsed() >= budget.max_wall {
                truncated_reason = Some(TruncatedReason::Time);
                break;
            }
        }
    }
    if truncated_reason.is_none() {
        run.tick_until(to);
    }
    Ok(run.finish(from, to, truncated_reason))
}

/// The window `[from, to)`: both given, or 24 hours back from `to` (default now); at most
/// [`MAX_WINDOW`] long.
fn window(
    now: Timestamp,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
) -> ServiceResult<(Timestamp, Timestamp)> {
    let to = to.unwrap_or(now);
    let from = match from {
        Some(from) => from,
        None => to.checked_sub(DEFAULT_WINDOW).unwrap_or(Timestamp::MIN),
    };
    if from >= to {
        return Err(ServiceError::field("from", "must be before `to`"));
    }
    if to.duration_since(from) > MAX_WINDOW {
        return Err(ServiceError::field(
            "to",
            "the window is longer than 7 days; choose a shorter one",
        ));
    }
    Ok((from, to))
}

/// One preview in progress: the handler, its dispatch index, and the alerts in memory.
struct Run {
    handler: Box<dyn Handler>,
    index: DispatchIndex<()>,
    filter: Option<Filter>,
    origin: AlertOrigin,
    alerts: BTreeMap<String, Alert>,
    fired: Vec<PreviewFiring>,
    now: Timestamp,
    scanned: u64,
    matched: u64,
    errors: u64,
    ids: Arc<AtomicU64>,
}

impl Run {
    fn new(
        handler: Box<dyn Handler>,
        filter: Option<Filter>,
        origin: AlertOrigin,
        from: Timestamp,
    ) -> Run {
        let mut index = DispatchIndex::default();
        index.insert((), &handler.dispatch_hints());
        Run {
            handler,
            index,
            filter,
            origin,
            alerts: BTreeMap::new(),
            fired: Vec::new(),
            now: from,
            scanned: 0,
            matched: 0,
            errors: 0,
            ids: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Offers one event at its time, after the deadlines due before it.
    fn offer(&mut self, event: &StoredEvent) {
        let now = event.time.max(self.now);
        self.tick_until(now);
        self.now = now;
        if self.index.candidates(event).is_empty() {
            return;
        }
        let counting = EventContext::new(event);
        if self.filter.as_ref().is_none_or(|f| f.matches(&counting)) {
            self.matched += 1;
        }
        let context = EventContext::new(event);
        let handler = &mut self.handler;
        let called = catch_unwind(AssertUnwindSafe(|| {
            let mut outputs = Outputs::default();
            handler.on_event(event, &context, now, &mut outputs);
            outputs
        }));
        if context.take_failure().is_some() {
            self.errors += 1;
        }
        self.absorb(called, now);
    }

    /// Ticks the handler at each of its deadlines up to `until` (inclusive).
    fn tick_until(&mut self, until: Timestamp) {
        let mut previous = None;
        for _ in 0..MAX_TICKS_IN_A_ROW {
            let Some(deadline) = self.handler.next_deadline() else {
                return;
            };
            if deadline > until || previous.is_some_and(|before| deadline <= before) {
                return;
            }
            previous = Some(deadline);
            let at = deadline.max(self.now);
            self.now = at;
            let handler = &mut self.handler;
            let called = catch_unwind(AssertUnwindSafe(|| {
                let mut outputs = Outputs::default();
                handler.on_tick(at, &mut outputs);
                outputs
            }));
            self.absorb(called, at);
        }
    }

    /// Applies a handler call's alert outputs as the processing commit would; a panic or
    /// a reported failure drops them and counts an error, as in the worker.
    fn absorb(&mut self, called: std::thread::Result<Outputs>, now: Timestamp) {
        let Ok(mut outputs) = called else {
            self.errors += 1;
            return;
        };
        if outputs.failure.take().is_some() {
            self.errors += 1;
            return;
        }
        let ids = self.ids.clone();
        let next_id = move || format!("preview-{}", ids.fetch_add(1, Ordering::Relaxed) + 1);
        for output in outputs.alerts {
            let key = output.group_key().to_string();
            let current = self.alerts.get(&key).cloned();
            let Some((alert, history)) =
                apply_output(current, &output, &self.origin, now, &next_id)
            else {
                continue;
            };
            for entry in history {
                self.fired.push(PreviewFiring {
                    at: entry.at,
                    group_key: alert.group_key.clone(),
                    severity: alert.severity,
                    transition: entry.action,
                    notifies: entry.action.notifies().is_some(),
                    event_id: match entry.action {
                        Transition::Fired
                        | Transition::SeverityRaised
                        | Transition::SeverityLowered => alert.event_id.clone(),
                        _ => None,
                    },
                    summary: alert.message.clone(),
                    count: alert.count,
                });
            }
            self.alerts.insert(key, alert);
        }
    }

    fn finish(
        self,
        from: Timestamp,
        to: Timestamp,
        truncated_reason: Option<TruncatedReason>,
    ) -> Preview {
        Preview {
            from,
            to,
            events_scanned: self.scanned,
            events_matched: self.matched,
            truncated: truncated_reason.is_some(),
            truncated_reason,
            fired: self.fired,
            alerts: self.alerts.len(),
            errors: self.errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn the_window_defaults_to_the_last_day_and_is_at_most_a_week() {
        let now = at("2026-11-23T09:00:00Z");
        assert_eq!(
            window(now, None, None).unwrap(),
            (at("2026-11-22T09:00:00Z"), now)
        );
        let too_long = window(now, Some(at("2026-11-15T09:00:00Z")), None);
        assert!(
            matches!(&too_long, Err(ServiceError::Invalid(errors)) if errors[0].path == "to"),
            "{too_long:?}"
        );
        let backwards = window(now, Some(now), Some(at("2026-11-22T09:00:00Z")));
        assert!(
            matches!(&backwards, Err(ServiceError::Invalid(errors)) if errors[0].path == "from"),
            "{backwards:?}"
        );
        assert!(window(now, Some(at("2026-11-16T09:00:00Z")), None).is_ok());
    }
}
