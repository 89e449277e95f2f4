//! Pollers: the IO half of the `metric` subscription kind. The engine is pure, so this
//! task queries the metrics backends and stores each outcome as a `tellify.metric` event
//! through [`store_events`], the ingest path every producer takes; the `metric` handler
//! turns those into alerts like any event. Poll results are therefore durable, processed
//! exactly once, visible in `GET /api/v1/events` and on the live stream, and counted in
//! the ingest metrics. While processing is too far behind (`ingest.max_backlog_events`) a
//! result is refused and dropped like a failed append: the next slot polls again.
//!
//! Every few seconds (and whenever woken) the poller lists the enabled `metric`
//! subscriptions and schedules each distinct poll key (backend, url, query) at the
//! shortest interval asking for it. Each key polls at a stable offset inside its interval
//! (a hash of the key), so a thousand subscriptions with a one-minute interval spread
//! over the minute instead of arriving at once, also after a restart. Polls run under a
//! semaphore of `pollers.max_concurrency`; a failed attempt is retried with exponential
//! backoff and jitter, but never past the interval, so the next poll is never delayed.
//! A poll that still fails is appended as a failure (`ok: false`), never as OK.
//!
//! Scheduling reads the injected [`Clock`](crate::clock::Clock), so tests move time and
//! wake the poller through its [`PollerHandle`]; retries and timeouts run on real time,
//! since they wait for real servers.
//!
//! A backend URL is a user's choice, so polls go through the [`crate::outbound`] guard and
//! read at most `MAX_ANSWER_BYTES`. A failure event is readable by every user, so it says
//! what happened in tellify's words (a status, a refusal, "answer is not json") and never
//! quotes the backend's answer.

mod http_json;
mod prometheus;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tellify_engine::handlers::metric::{Backend, PollSpec, POLLER_PRODUCER, RESULT_EVENT_TYPE};
use tellify_model::{EventInput, Fields, Severity, Source};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::backoff::Backoff;
use crate::ingest::store_events;
use crate::services::AppState;

/// `[pollers]` settings: how the server polls metric backends for `metric` subscriptions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollerSettings {
    /// Backend requests in flight at once, over every subscription: a slow backend then
    /// cannot open unbounded connections, and tellify cannot overload a backend.
    pub max_concurrency: usize,
    /// Retries of a failed attempt within one poll (so `retries + 1` attempts at most),
    /// always inside the poll's interval.
    pub retries: u32,
    /// Timeout of one attempt, in seconds; an attempt also ends when the interval does.
    pub timeout_secs: u64,
    /// The wait after the first failed attempt, in milliseconds; it doubles with each
    /// further failure, with jitter (between half and all of it).
    pub backoff_initial_ms: u64,
}

impl Default for PollerSettings {
    fn default() -> Self {
        PollerSettings {
            max_concurrency: 16,
            retries: 3,
            timeout_secs: 10,
            backoff_initial_ms: 250,
        }
    }
}

/// How often the subscriptions are listed again when nothing wakes the poller.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// The longest the loop sleeps before looking at the clock again.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Longest error text kept in a result event.
const MAX_ERROR_CHARS: usize = 500;
/// Most bytes of a backend's answer read; a longer answer fails the poll.
pub(crate) const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// How the rest of the server (and tests) talk to the poller.
#[derive(Clone)]
pub struct PollerHandle {
    wake: Arc<Notify>,
    completed: watch::Receiver<u64>,
}

impl PollerHandle {
    /// Lists the subscriptions again and starts the polls that are due now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// How many polls have finished (their results appended) since the start.
    pub fn completed(&self) -> u64 {
        *self.completed.borrow()
    }

    /// Waits until at least `count` polls have finished (or the poller stopped).
    pub async fn wait_for(&self, count: u64) {
        let mut completed = self.completed.clone();
        let _ = completed.wait_for(|done| *done >= count).await;
    }
}

/// The lease under which the poller runs: with several nodes on one store, one polls.
pub const POLLER_LEASE: &str = "metric-poller";

/// Starts the poller task; it runs until `shutdown` flips to true, polling while this node
/// holds [`POLLER_LEASE`] (see [`crate::lease`]), so several nodes on one store poll each
/// backend once, not once per node.
pub fn start(
    services: AppState,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(JoinHandle<()>, PollerHandle)> {
    let settings = services.settings.pollers.clone();
    let timeout = Duration::from_secs(settings.timeout_secs.max(1));
    let client = services.outbound.client(timeout)?;
    let wake = Arc::new(Notify::new());
    let (completed_sender, completed) = watch::channel(0);
    let context = Arc::new(PollContext {
        services: services.clone(),
        client,
        semaphore: Semaphore::new(settings.max_concurrency.max(1)),
        settings,
        completed: completed_sender,
        failing: std::sync::Mutex::new(HashSet::new()),
    });
    let poller_wake = wake.clone();
    // Each stretch of holding the lease starts with a fresh schedule: the polls due are
    // those of the subscriptions then, at their stable offsets.
    let task = tokio::spawn(crate::lease::run_singleton(
        services,
        POLLER_LEASE.to_string(),
        shutdown,
        move |stop| {
            let poller = Poller {
                context: context.clone(),
                wake: poller_wake.clone(),
                schedule: HashMap::new(),
                in_flight: HashSet::new(),
            };
            poller.run(stop)
        },
    ));
    Ok((task, PollerHandle { wake, completed }))
}

/// One sample of a successful answer: a series (its labels, `None` for a backend
/// without series) and its value, or why this one series has none (a `NaN`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    pub labels: Option<Fields>,
    pub value: Result<Reading, String>,
}

/// A number read from a backend. JSON has no infinities, so ±Inf are carried as the
/// largest finite numbers, which compare the same way against any level.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Reading {
    pub value: f64,
    /// The backend's own spelling, when the number had to stand in (`+Inf`).
    pub text: Option<String>,
}

impl Reading {
    pub fn parse(text: &str) -> Result<Reading, String> {
        match text.trim() {
            "NaN" | "nan" => Err("value is NaN".to_string()),
            "+Inf" | "Inf" | "inf" => Ok(Reading {
                value: f64::MAX,
                text: Some("+Inf".to_string()),
            }),
            "-Inf" | "-inf" => Ok(Reading {
                value: f64::MIN,
                text: Some("-Inf".to_string()),
            }),
            other => match other.parse::<f64>() {
                Ok(value) if value.is_finite() => Ok(Reading { value, text: None }),
                _ => Err("value is not a number".to_string()),
            },
        }
    }
}

/// A failed attempt, and whether trying again can help.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PollError {
    pub message: String,
    pub retryable: bool,
}

impl PollError {
    pub fn retryable(message: impl Into<String>) -> PollError {
        PollError {
            message: message.into(),
            retryable: true,
        }
    }

    pub fn permanent(message: impl Into<String>) -> PollError {
        PollError {
            message: message.into(),
            retryable: false,
        }
    }

    /// Transport failures (refused, reset, timed out) can pass; a request that cannot be
    /// built, or that the outbound guard refused, will not.
    pub fn from_transport(error: reqwest::Error) -> PollError {
        // The URL is left out: the event is readable by users who did not write it.
        let error = error.without_url();
        if let Some(denied) = crate::outbound::denied_by_guard(&error) {
            return PollError::from_denied(&denied);
        }
        let message = if error.is_timeout() {
            "request timed out".to_string()
        } else if error.is_connect() {
            format!("cannot connect: {}", error_chain(&error))
        } else {
            format!("request failed: {}", error_chain(&error))
        };
        if error.is_builder() {
            PollError::permanent(message)
        } else {
            PollError::retryable(message)
        }
    }

    /// The outbound guard refused the backend's address: waiting will not change that.
    pub fn from_denied(denied: &crate::outbound::Denied) -> PollError {
        PollError::permanent(format!("refused: {denied}"))
    }

    /// 5xx, 429 and 408 may pass; other statuses are the request's fault and will not.
    /// The answer's body is not quoted: it may be an internal page, and the result event
    /// is readable by every user.
    pub fn from_status(status: reqwest::StatusCode) -> PollError {
        let message = format!("http {}", status.as_u16());
        let retryable = status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT;
        PollError { message, retryable }
    }

    /// Reading the answer failed: too large (for good) or broken off (may pass).
    pub fn from_answer(error: crate::outbound::AnswerError) -> PollError {
        match error {
            crate::outbound::AnswerError::TooLarge(_) => PollError::permanent(error.to_string()),
            crate::outbound::AnswerError::BrokeOff(_) => PollError::retryable(error.to_string()),
        }
    }
}

/// A JSON parse failure in tellify's words: its kind and place, never the text around it
/// (serde's own message quotes the values it met).
pub(crate) fn json_problem(error: &serde_json::Error) -> String {
    let kind = match error.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected shape",
        serde_json::error::Category::Eof => "cut short",
    };
    format!("{kind} at line {} column {}", error.line(), error.column())
}

/// `{base}/{path}` as a URL, or a permanent failure: the base was checked when the
/// subscription was written, so this only fails for data written before that check.
pub(crate) fn endpoint(base: &str, path: &str) -> Result<reqwest::Url, PollError> {
    reqwest::Url::parse(&format!("{base}/{path}"))
        .map_err(|_| PollError::permanent("backend url is not a valid url"))
}

struct PollContext {
    services: AppState,
    client: crate::outbound::OutboundClient,
    semaphore: Semaphore,
    settings: PollerSettings,
    completed: watch::Sender<u64>,
    /// Poll keys whose latest poll failed, for `tellify_polls_failing`.
    failing: std::sync::Mutex<HashSet<String>>,
}

struct Scheduled {
    spec: PollSpec,
    next_due: Timestamp,
}

struct Poller {
    context: Arc<PollContext>,
    wake: Arc<Notify>,
    schedule: HashMap<String, Scheduled>,
    /// Keys with a poll under way: a key never polls twice at once.
    in_flight: HashSet<String>,
}

impl Poller {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut running: JoinSet<String> = JoinSet::new();
        let mut refresh = true;
        let mut refreshed = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            if refresh || refreshed.elapsed() >= REFRESH_EVERY {
                if let Err(error) = self.refresh().await {
                    tracing::warn!(%error, "cannot list metric subscriptions");
                }
                refreshed = tokio::time::Instant::now();
                refresh = false;
            }
            self.launch_due(&mut running);
            let sleep = self.until_next_due();
            tokio::select! {
                _ = self.wake.notified() => refresh = true,
                Some(joined) = running.join_next(), if !running.is_empty() => {
                    match joined {
                        Ok(key) => {
                            self.in_flight.remove(&key);
                        }
                        Err(error) => {
                            // A panicked poll names no key: forget every in-flight
                            // mark rather than leave that key unpolled for good.
                            tracing::error!(%error, "poll task failed");
                            self.in_flight.clear();
                        }
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
        }
        running.shutdown().await;
    }

    /// Lists the enabled `metric` subscriptions and brings the schedule in line: new
    /// keys get their first slot, gone keys are dropped, a changed interval reschedules.
    async fn refresh(&mut self) -> anyhow::Result<()> {
        let subscriptions = self.context.services.store.list_subscriptions(None).await?;
        let now = self.context.services.clock.now();
        // Per key: the spec with the shortest interval, and the newest change.
        let mut wanted: HashMap<String, (PollSpec, Timestamp)> = HashMap::new();
        for subscription in subscriptions {
            if !subscription.enabled || subscription.kind != "metric" {
                continue;
            }
            let Ok(spec) = PollSpec::from_params(&subscription.params) else {
                tracing::warn!(subscription = %subscription.id, "metric subscription no longer validates; not polled");
                continue;
            };
            match wanted.get_mut(&spec.key) {
                Some((known, updated)) => {
                    if spec.interval < known.interval {
                        *known = spec;
                    }
                    *updated = (*updated).max(subscription.updated);
                }
                None => {
                    wanted.insert(spec.key.clone(), (spec, subscription.updated));
                }
            }
        }
        self.schedule.retain(|key, _| wanted.contains_key(key));
        for (key, (spec, updated)) in wanted {
            match self.schedule.get_mut(&key) {
                Some(scheduled) if scheduled.spec.interval == spec.interval => {
                    scheduled.spec = spec;
                }
                Some(scheduled) => {
                    scheduled.next_due = slot_at_or_after(&key, spec.interval, now);
                    scheduled.spec = spec;
                }
                None => {
                    let next_due = first_due(&key, spec.interval, updated, now);
                    self.schedule.insert(key, Scheduled { spec, next_due });
                }
            }
        }
        Ok(())
    }

    fn launch_due(&mut self, running: &mut JoinSet<String>) {
        let now = self.context.services.clock.now();
        for (key, scheduled) in self.schedule.iter_mut() {
            if scheduled.next_due > now || self.in_flight.contains(key) {
                continue;
            }
            // Slots missed while the server was down or busy are skipped, not caught up.
            let next = slot_at_or_after(
                key,
                scheduled.spec.interval,
                now + SignedDuration::from_millis(1),
            );
            let slot = next - scheduled.spec.interval;
            scheduled.next_due = next;
            self.in_flight.insert(key.clone());
            let context = self.context.clone();
            let spec = scheduled.spec.clone();
            let key = key.clone();
            running.spawn(async move {
                context.poll(&spec, slot).await;
                key
            });
        }
    }

    /// Real time until the earliest due poll, at most [`LOOK_EVERY`].
    fn until_next_due(&self) -> Duration {
        let now = self.context.services.clock.now();
        let earliest = self
            .schedule
            .iter()
            .filter(|(key, _)| !self.in_flight.contains(*key))
            .map(|(_, scheduled)| scheduled.next_due)
            .min();
        let Some(earliest) = earliest else {
            return LOOK_EVERY;
        };
        let wait = Duration::try_from(earliest.duration_since(now)).unwrap_or(Duration::ZERO);
        wait.clamp(Duration::from_millis(10), LOOK_EVERY)
    }
}

impl PollContext {
    /// One poll: attempts with backoff inside the interval, then one result event per
    /// series (or one failure event), appended and handed to the worker.
    async fn poll(&self, spec: &PollSpec, slot: Timestamp) {
        let interval = Duration::try_from(spec.interval).unwrap_or(LOOK_EVERY);
        let deadline = tokio::time::Instant::now() + interval;
        let mut attempts = 0u32;
        let mut last_error: Option<PollError> = None;
        let outcome = loop {
            let Ok(permit) = self.semaphore.acquire().await else {
                break Err(PollError::permanent("poller is shutting down"));
            };
            // Waiting for a permit may have used up the interval: then the poll has failed
            // (with the last error, or as too slow) rather than delaying the next one.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break Err(last_error
                    .unwrap_or_else(|| PollError::permanent("no time left in the interval")));
            }
            attempts += 1;
            let timeout = left.min(Duration::from_secs(self.settings.timeout_secs.max(1)));
            let result = match spec.backend {
                Backend::Prometheus => {
                    prometheus::query(&self.client, &spec.url, &spec.query, timeout).await
                }
                Backend::HttpJson => {
                    http_json::query(&self.client, &spec.url, &spec.query, timeout).await
                }
            };
            drop(permit);
            let error = match result {
                Ok(samples) => break Ok(samples),
                Err(error) => error,
            };
            if !error.retryable || attempts > self.settings.retries {
                break Err(error);
            }
            let wait = attempt_backoff(self.settings.backoff_initial_ms).jittered(attempts);
            if tokio::time::Instant::now() + wait >= deadline {
                break Err(error);
            }
            tracing::debug!(attempt = attempts, key = %spec.key, error = %error.message, "poll attempt failed; retrying");
            last_error = Some(error);
            tokio::time::sleep(wait).await;
        };
        if let Err(error) = &outcome {
            tracing::warn!(attempts, key = %spec.key, backend = spec.backend.as_str(), error = %error.message, "poll failed");
        }
        self.record_health(&spec.key, outcome.is_ok());
        let events = result_events(spec, slot, attempts, outcome);
        // The one ingest path: the results reach the live stream and the ingest metrics
        // like any producer's events.
        if let Err(error) = store_events(&self.services, events, POLLER_PRODUCER).await {
            tracing::error!(%error, key = %spec.key, "cannot store the poll result; the next poll tries again");
        }
        self.completed.send_modify(|count| *count += 1);
    }
}

impl PollContext {
    /// Counts the poll and keeps the set of failing poll keys for `/metrics`.
    fn record_health(&self, key: &str, ok: bool) {
        let failing = match self.failing.lock() {
            Ok(mut failing) => {
                if ok {
                    failing.remove(key);
                } else {
                    failing.insert(key.to_string());
                }
                failing.len()
            }
            Err(_) => 0,
        };
        crate::telemetry::poll_finished(ok, failing);
    }
}

/// The events of one poll. Each carries an idempotency key of (poll key, slot, series),
/// so a result appended twice (a retried append) is stored once.
fn result_events(
    spec: &PollSpec,
    slot: Timestamp,
    attempts: u32,
    outcome: Result<Vec<Sample>, PollError>,
) -> Vec<EventInput> {
    let base = |ok: bool| {
        let mut fields = Fields::new();
        fields.insert("poll_key".into(), json!(spec.key));
        fields.insert("backend".into(), json!(spec.backend.as_str()));
        fields.insert("query".into(), json!(truncate(&spec.query, 1000)));
        fields.insert("attempts".into(), json!(attempts));
        fields.insert("ok".into(), json!(ok));
        fields
    };
    let event = |fields: Fields, severity: Severity, message: String, series: &str| EventInput {
        event_type: Some(RESULT_EVENT_TYPE.to_string()),
        severity: Some(severity),
        message: Some(message),
        source: Some(Source {
            component: Some(spec.backend.as_str().to_string()),
            ..Default::default()
        }),
        idempotency_key: Some(format!(
            "{}:{}:{}",
            spec.key,
            slot.as_millisecond(),
            short_hash(series)
        )),
        fields,
        ..Default::default()
    };
    let samples = match outcome {
        Ok(samples) => samples,
        Err(error) => {
            let message = truncate(&error.message, MAX_ERROR_CHARS);
            let mut fields = base(false);
            fields.insert("error".into(), json!(message));
            return vec![event(
                fields,
                Severity::Warning,
                format!("poll failed: {message}"),
                "*",
            )];
        }
    };
    let mut events = Vec::with_capacity(samples.len());
    for sample in samples {
        let series = sample
            .labels
            .as_ref()
            .map(tellify_engine::handlers::metric::series_key)
            .unwrap_or_default();
        let ok = sample.value.is_ok();
        let mut fields = base(ok);
        if let Some(labels) = &sample.labels {
            fields.insert("labels".into(), Value::Object(labels.clone()));
        }
        let (severity, message) = match sample.value {
            Ok(reading) => {
                fields.insert("value".into(), json!(reading.value));
                let shown = reading
                    .text
                    .clone()
                    .unwrap_or_else(|| reading.value.to_string());
                if let Some(text) = reading.text {
                    fields.insert("value_text".into(), json!(text));
                }
                (Severity::Info, format!("{} = {shown}", spec.query))
            }
            Err(error) => {
                let message = truncate(&error, MAX_ERROR_CHARS);
                fields.insert("error".into(), json!(message));
                (Severity::Warning, format!("poll failed: {message}"))
            }
        };
        events.push(event(fields, severity, truncate(&message, 1000), &series));
    }
    events
}

/// The waits between attempts of one poll: between half and all of
/// `initial * 2^(failures-1)`, so retries of many polls do not arrive in step. No cap of
/// its own: a poll's attempts end with its interval.
fn attempt_backoff(initial_ms: u64) -> Backoff {
    Backoff::uncapped(Duration::from_millis(initial_ms.max(1)))
}

/// Where inside its interval a key polls: a stable hash of the key, so polls spread
/// out and keep their place across restarts.
fn offset_ms(key: &str, interval: SignedDuration) -> i64 {
    let interval_ms = interval.as_millis().max(1) as i64;
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % interval_ms as u64) as i64
}

/// The first slot of `key` at or after `at`: slots are `offset + n * interval` from the
/// Unix epoch.
fn slot_at_or_after(key: &str, interval: SignedDuration, at: Timestamp) -> Timestamp {
    let interval_ms = interval.as_millis().max(1) as i64;
    let offset = offset_ms(key, interval);
    let at_ms = at.as_millisecond();
    let mut slot = offset + (at_ms - offset).div_euclid(interval_ms) * interval_ms;
    if slot < at_ms {
        slot += interval_ms;
    }
    Timestamp::from_millisecond(slot).unwrap_or(at)
}

/// The first poll of a newly seen key. A subscription made or changed within the last
/// interval polls at its first slot after the change, even if that slot passed before
/// the poller noticed it; an older one (a restart) waits for its next slot, so the polls
/// of a restarted server stay spread out.
fn first_due(key: &str, interval: SignedDuration, updated: Timestamp, now: Timestamp) -> Timestamp {
    if updated + interval >= now && updated <= now {
        slot_at_or_after(key, interval, updated)
    } else {
        slot_at_or_after(key, interval, now)
    }
}

fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn slots_repeat_at_the_interval_and_keys_spread_over_it() {
        let interval = SignedDuration::from_secs(60);
        let first = slot_at_or_after("a", interval, at(1_000_000));
        assert!(first >= at(1_000_000) && first < at(1_000_060));
        assert_eq!(slot_at_or_after("a", interval, first), first);
        assert_eq!(
            slot_at_or_after("a", interval, first + SignedDuration::from_millis(1)),
            first + interval
        );
        let offsets: HashSet<i64> = (0..50)
            .map(|n| offset_ms(&format!("key{n}"), interval))
            .collect();
        assert!(offsets.len() > 40, "offsets spread: {offsets:?}");
        assert!(offsets.iter().all(|offset| (0..60_000).contains(offset)));
    }

    #[test]
    fn a_fresh_subscription_polls_in_its_first_slot_and_a_restart_waits() {
        let interval = SignedDuration::from_secs(60);
        let created = at(1_000_000);
        let first = slot_at_or_after("k", interval, created);
        // Noticed late, but within the interval: the missed first slot is due now.
        let now = created + SignedDuration::from_secs(59);
        assert_eq!(first_due("k", interval, created, now), first);
        // Long-standing subscription after a restart: its next slot.
        let now = created + SignedDuration::from_secs(3600);
        assert!(first_due("k", interval, created, now) >= now);
    }

    #[test]
    fn backoff_doubles_with_jitter() {
        assert_eq!(
            attempt_backoff(100).delay(1, 1.0),
            Duration::from_millis(100)
        );
        assert_eq!(
            attempt_backoff(100).delay(1, 0.0),
            Duration::from_millis(50)
        );
        assert_eq!(
            attempt_backoff(100).delay(3, 1.0),
            Duration::from_millis(400)
        );
    }

    #[test]
    fn readings_refuse_nan_and_carry_infinities() {
        assert_eq!(Reading::parse("1.5").unwrap().value, 1.5);
        assert!(Reading::parse("NaN").unwrap_err().contains("NaN"));
        let infinite = Reading::parse("+Inf").unwrap();
        assert_eq!(
            (infinite.value, infinite.text.as_deref()),
            (f64::MAX, Some("+Inf"))
        );
        assert!(Reading::parse("lots").is_err());
    }

    #[test]
    fn a_failed_poll_is_one_failure_event_and_a_success_one_event_per_series() {
        let spec = PollSpec::from_params(&json!({"backend": "prometheus", "url": "http://p", "query": "up",
            "interval": "1m", "warn": {"value": 1, "message": "w"}, "critical": {"value": 2, "message": "c"}}))
        .unwrap();
        let failed = result_events(&spec, at(60), 4, Err(PollError::retryable("http 500")));
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].fields["ok"], json!(false));
        assert_eq!(failed[0].fields["error"], json!("http 500"));
        assert!(!failed[0].fields.contains_key("labels"));
        let labels = |job: &str| json!({"job": job}).as_object().cloned();
        let samples = vec![
            Sample {
                labels: labels("a"),
                value: Ok(Reading {
                    value: 3.0,
                    text: None,
                }),
            },
            Sample {
                labels: labels("b"),
                value: Err("value is NaN".into()),
            },
        ];
        let events = result_events(&spec, at(60), 1, Ok(samples));
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].fields["value"], json!(3.0));
        assert_eq!(events[0].fields["labels"], json!({"job": "a"}));
        assert_eq!(events[1].fields["ok"], json!(false));
        assert_ne!(events[0].idempotency_key, events[1].idempotency_key);
        // The same slot and series always make the same key.
        let again = result_events(&spec, at(60), 2, Err(PollError::retryable("x")));
        assert_eq!(again[0].idempotency_key, failed[0].idempotency_key);
    }
}
