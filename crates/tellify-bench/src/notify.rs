//! `notify` and `notify-latency`: per-user setup (user, webhook contact point on the
//! sink, `default` policy, own subscription), then a burst of events or a steady rate,
//! measured at the sink.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Bytes;
use futures_util::StreamExt;
use rand::Rng;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::cpu::{CpuReport, CpuSample};
use crate::drain::{wait_for_drain, DrainReport};
use crate::latency::LATENCY_GRACE;
use crate::report::{milliseconds, Percentiles};
use crate::setup::CREATE_CONCURRENCY;
use crate::sink::{Arrival, Sink};
use crate::storm::post_all;
use crate::target::{call, create_subscription, expect_success, subscription_titles, Target};
use crate::{run_prefix, Args, Mode};

/// Title of every bench user's own subscription.
pub(crate) const NOTIFY_TITLE: &str = "notify bench";

/// Title of every bench user's fan-out subscription.
pub(crate) const FANOUT_TITLE: &str = "fanout bench";

/// The field whose value `"on"` user `index`'s fan-out subscription asks for:
/// `fan_<size>` of the smallest of `sizes` (ascending) above `index`, or `None` when
/// `index` is beyond them all. An event for the first `size` users carries `fan_<s>`
/// for every `s` up to `size`, so one server serves every size with equality filters.
pub(crate) fn fanout_field(index: usize, sizes: &[usize]) -> Option<String> {
    sizes
        .iter()
        .find(|size| index < **size)
        .map(|size| format!("fan_{size}"))
}

/// How long a `notify` run waits without a single new webhook before it gives up.
pub(crate) const NOTIFY_STALL: Duration = Duration::from_secs(60);

/// The name of bench user `index`.
pub(crate) fn bench_user(index: usize) -> String {
    format!("nb{index}")
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum SetupStep {
    Users,
    ContactPoints,
    Policies,
    Subscriptions,
    /// The `fanout` mode's subscription (see [`fanout_field`]).
    FanoutSubscriptions,
}

impl SetupStep {
    pub(crate) fn name(self) -> &'static str {
        match self {
            SetupStep::Users => "users",
            SetupStep::ContactPoints => "contact points",
            SetupStep::Policies => "policies",
            SetupStep::Subscriptions => "tokens+subscriptions",
            SetupStep::FanoutSubscriptions => "tokens+fan-out subscriptions",
        }
    }
}

/// Whether one step for one user created something (`true`) or found it there.
pub(crate) async fn setup_step(
    client: &reqwest::Client,
    target: &Target,
    sink_base: &str,
    step: SetupStep,
    index: usize,
    fanout_sizes: &[usize],
) -> anyhow::Result<bool> {
    let name = bench_user(index);
    let admin = |request: reqwest::RequestBuilder| {
        request.header(reqwest::header::AUTHORIZATION, &target.authorization)
    };
    let for_user = [("user", name.as_str())];
    match step {
        SetupStep::Users => {
            let (status, body) = call(
                admin(client.post(target.url("/api/v1/users")))
                    .json(&json!({"name": name, "timezone": "UTC"})),
            )
            .await?;
            if status == reqwest::StatusCode::CONFLICT {
                return Ok(false);
            }
            expect_success("create user", status, &body)?;
            Ok(true)
        }
        SetupStep::ContactPoints => {
            let point = json!({
                "name": "hook",
                "kind": "webhook",
                "address": format!("{sink_base}/hook/{name}"),
            });
            let create = || {
                admin(client.post(target.url("/api/v1/contact-points")))
                    .query(&for_user)
                    .json(&point)
            };
            let (status, body) = call(create()).await?;
            if status != reqwest::StatusCode::CONFLICT {
                expect_success("create contact point", status, &body)?;
                return Ok(true);
            }
            // Left from an earlier session: it points at that session's sink. The `default`
            // policy names it, so it goes with force; the policy step puts it back.
            let (status, body) = call(
                admin(client.delete(target.url("/api/v1/contact-points/hook")))
                    .query(&for_user)
                    .query(&[("force", "true")]),
            )
            .await?;
            expect_success("replace contact point", status, &body)?;
            let (status, body) = call(create()).await?;
            expect_success("create contact point", status, &body)?;
            Ok(false)
        }
        SetupStep::Policies => {
            let (status, body) = call(
                admin(client.put(target.url("/api/v1/policies/default")))
                    .query(&for_user)
                    .json(&json!({"rules": [{"contact_points": ["hook"]}]})),
            )
            .await?;
            expect_success("put policy", status, &body)?;
            Ok(status == reqwest::StatusCode::CREATED)
        }
        SetupStep::Subscriptions => {
            let params = json!({
                "filter": format!("nb_user == \"{name}\""),
                "group_by": ["n"],
            });
            ensure_own_subscription(client, target, &name, NOTIFY_TITLE, params).await
        }
        SetupStep::FanoutSubscriptions => {
            let Some(field) = fanout_field(index, fanout_sizes) else {
                return Ok(false);
            };
            let params = json!({"filter": format!("{field} == \"on\""), "group_by": ["n"]});
            ensure_own_subscription(client, target, &name, FANOUT_TITLE, params).await
        }
    }
}

/// Makes sure user `name` has a match subscription titled `title` with `params`; whether
/// it was created. A subscription belongs to whoever creates it, so the user gets a token.
async fn ensure_own_subscription(
    client: &reqwest::Client,
    target: &Target,
    name: &str,
    title: &str,
    params: Value,
) -> anyhow::Result<bool> {
    let (status, body) = call(
        client
            .post(target.url("/api/v1/tokens"))
            .header(reqwest::header::AUTHORIZATION, &target.authorization)
            .json(&json!({"name": "bench-notify", "scopes": ["user"], "user": name})),
    )
    .await?;
    expect_success("create token", status, &body)?;
    let token = body
        .get("token")
        .and_then(Value::as_str)
        .context("token answer has no `token`")?;
    let user_target = target.with_token(token)?;
    if subscription_titles(client, &user_target)
        .await?
        .contains(title)
    {
        return Ok(false);
    }
    create_subscription(
        client,
        &user_target,
        json!({"kind": "match", "title": title, "params": params}),
    )
    .await?;
    Ok(true)
}

pub(crate) struct StepReport {
    pub(crate) step: SetupStep,
    pub(crate) created: usize,
    pub(crate) existing: usize,
    pub(crate) failed: usize,
    pub(crate) first_error: Option<String>,
    pub(crate) seconds: f64,
}

pub(crate) struct NotifySetup {
    pub(crate) users: usize,
    pub(crate) steps: Vec<StepReport>,
    pub(crate) failed: usize,
}

impl NotifySetup {
    pub(crate) fn summary_line(&self) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|step| {
                let mut part = format!(
                    "{} {:.1} s ({:.0}/s, existing={} failed={})",
                    step.step.name(),
                    step.seconds,
                    self.users as f64 / step.seconds.max(1e-9),
                    step.existing,
                    step.failed
                );
                if let Some(error) = &step.first_error {
                    part.push_str(&format!(" first error: {error}"));
                }
                part
            })
            .collect();
        format!("setup    users={}: {}", self.users, steps.join("; "))
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "users": self.users,
            "failed": self.failed,
            "steps": self.steps.iter().map(|step| json!({
                "step": step.step.name(),
                "created": step.created,
                "existing": step.existing,
                "failed": step.failed,
                "first_error": step.first_error,
                "seconds": step.seconds,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Makes sure users `nb0` .. `nb{N-1}` exist, each with the contact point `hook` on this
/// sink (`/hook/nb<i>`) and a `default` policy sending there at once, and then has the
/// subscription `steps` ask for: their own `nb_user == "nb<i>"` grouped by `n`
/// ([`SetupStep::Subscriptions`]) and the fan-out one ([`SetupStep::FanoutSubscriptions`],
/// tiers from `fanout_sizes`). One step at a time for all users, so each step's rate is
/// reported on its own.
pub(crate) async fn ensure_notify_users(
    client: &reqwest::Client,
    target: &Target,
    sink_base: &str,
    users: usize,
    subscriptions: &[SetupStep],
    fanout_sizes: &[usize],
) -> anyhow::Result<NotifySetup> {
    let mut setup = NotifySetup {
        users,
        steps: Vec::new(),
        failed: 0,
    };
    let steps = [
        SetupStep::Users,
        SetupStep::ContactPoints,
        SetupStep::Policies,
    ];
    for step in steps.iter().chain(subscriptions).copied() {
        let started = Instant::now();
        let results: Vec<anyhow::Result<bool>> = futures_util::stream::iter(0..users)
            .map(|index| setup_step(client, target, sink_base, step, index, fanout_sizes))
            .buffer_unordered(CREATE_CONCURRENCY)
            .collect()
            .await;
        let mut report = StepReport {
            step,
            created: 0,
            existing: 0,
            failed: 0,
            first_error: None,
            seconds: 0.0,
        };
        for result in results {
            match result {
                Ok(true) => report.created += 1,
                Ok(false) => report.existing += 1,
                Err(error) => {
                    report.failed += 1;
                    report
                        .first_error
                        .get_or_insert_with(|| format!("{error:#}"));
                }
            }
        }
        report.seconds = started.elapsed().as_secs_f64();
        setup.failed += report.failed;
        setup.steps.push(report);
    }
    Ok(setup)
}

/// What a `notify` or `notify-latency` run measured.
pub(crate) struct NotifyReport {
    pub(crate) mode: Mode,
    pub(crate) users: usize,
    /// Seconds spent sending the events.
    pub(crate) load_seconds: f64,
    pub(crate) sent: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) request_ms: Percentiles,
    /// Alert notifications the run's events should cause (one per acknowledged event).
    pub(crate) expected: u64,
    /// Webhook requests received (a retried delivery counts each time).
    pub(crate) deliveries: u64,
    pub(crate) duplicates: u64,
    /// Distinct alerts of this run that arrived.
    pub(crate) alerts: u64,
    /// Alerts that arrived but were not from this run's events.
    pub(crate) foreign: u64,
    pub(crate) unreadable: u64,
    pub(crate) largest_delivery: usize,
    /// Seconds from the first event sent to the first and to the last webhook.
    pub(crate) first_delivery: Option<f64>,
    pub(crate) last_delivery: Option<f64>,
    /// `notify-latency`: the rate asked for and event-to-webhook milliseconds.
    pub(crate) target_rate: Option<u32>,
    pub(crate) end_to_end_ms: Option<Percentiles>,
    pub(crate) drain: DrainReport,
    pub(crate) cpu: Option<CpuReport>,
}

impl NotifyReport {
    /// The span from the first to the last webhook.
    pub(crate) fn delivery_span(&self) -> Option<f64> {
        match (self.first_delivery, self.last_delivery) {
            (Some(first), Some(last)) if last > first => Some(last - first),
            _ => None,
        }
    }

    pub(crate) fn per_second(&self, count: u64) -> Option<f64> {
        self.delivery_span().map(|span| count as f64 / span)
    }

    pub(crate) fn summary_line(&self) -> String {
        let rate = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.0}"));
        let seconds = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.2}"));
        let mut line = format!(
            "{:<8} users={} {:.1}s sent={} ({:.0} ev/s, post p50={} p99={} ms) errors={}",
            self.mode.name(),
            self.users,
            self.load_seconds,
            self.sent,
            self.sent as f64 / self.load_seconds.max(1e-9),
            milliseconds(self.request_ms.p50),
            milliseconds(self.request_ms.p99),
            self.errors,
        );
        line.push_str(&format!(
            " | webhooks={} alerts={}/{} duplicates={} largest={} first at {} s last at {} s",
            self.deliveries,
            self.alerts,
            self.expected,
            self.duplicates,
            self.largest_delivery,
            seconds(self.first_delivery),
            seconds(self.last_delivery),
        ));
        match (&self.end_to_end_ms, self.target_rate) {
            (Some(latency), Some(target_rate)) => line.push_str(&format!(
                " | {}/s asked: event→webhook p50={} p90={} p99={} max={} ms",
                target_rate,
                milliseconds(latency.p50),
                milliseconds(latency.p90),
                milliseconds(latency.p99),
                milliseconds(latency.max),
            )),
            _ => line.push_str(&format!(
                " | first→last: {} deliveries/s, {} alert notifications/s; first event→last webhook: {} alerts/s",
                rate(self.per_second(self.deliveries)),
                rate(self.per_second(self.alerts)),
                rate(
                    self.last_delivery
                        .filter(|last| *last > 0.0)
                        .map(|last| self.alerts as f64 / last)
                ),
            )),
        }
        if self.foreign > 0 || self.unreadable > 0 {
            line.push_str(&format!(
                " (foreign alerts={} unreadable={})",
                self.foreign, self.unreadable
            ));
        }
        line.push_str(&format!(" | {}", self.drain.summary()));
        if let Some(cpu) = &self.cpu {
            line.push_str(&format!(" | {}", cpu.summary()));
        }
        if let Some(error) = &self.first_error {
            line.push_str(&format!(" | first error: {error}"));
        }
        line
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "mode": self.mode.name(),
            "users": self.users,
            "load_seconds": self.load_seconds,
            "sent": self.sent,
            "errors": self.errors,
            "first_error": self.first_error,
            "request_ms": self.request_ms.to_json(),
            "expected_alerts": self.expected,
            "deliveries": self.deliveries,
            "duplicate_deliveries": self.duplicates,
            "alerts": self.alerts,
            "foreign_alerts": self.foreign,
            "unreadable": self.unreadable,
            "largest_delivery": self.largest_delivery,
            "first_delivery_seconds": self.first_delivery,
            "last_delivery_seconds": self.last_delivery,
            "deliveries_per_second": self.per_second(self.deliveries),
            "alerts_per_second": self.per_second(self.alerts),
            "target_rate": self.target_rate,
            "end_to_end_ms": self.end_to_end_ms.map(Percentiles::to_json),
            "drain": self.drain.to_json(),
            "cpu": self.cpu.as_ref().map(CpuReport::to_json),
        })
    }
}

/// One notify-mode event: opens a new alert (`n` is unique) on `user`'s subscription.
pub(crate) fn notify_event(user: &str, n: &str) -> String {
    json!({
        "type": "bench_notify",
        "message": format!("bench notification {n}"),
        "fields": {"nb_user": user, "n": n},
    })
    .to_string()
}

/// Waits until `expected` alerts reached the sink, nothing new arrived for
/// [`NOTIFY_STALL`], or `timeout` passed.
pub(crate) async fn wait_for_webhooks(sink: &Sink, expected: u64, timeout: Duration) {
    let started = Instant::now();
    while sink.alerts() < expected && started.elapsed() < timeout {
        let quiet_since = sink.last_arrival().unwrap_or(started);
        if quiet_since.elapsed() >= NOTIFY_STALL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Deliveries, duplicates and alerts of a run, and event→webhook times of the alerts
/// whose send time is in `sent_at`.
pub(crate) struct Tally {
    pub(crate) deliveries: u64,
    pub(crate) duplicates: u64,
    pub(crate) alerts: u64,
    pub(crate) foreign: u64,
    pub(crate) largest: usize,
    pub(crate) first: Option<f64>,
    pub(crate) last: Option<f64>,
    pub(crate) end_to_end_ms: Vec<f64>,
}

pub(crate) fn tally_arrivals(
    arrivals: &[Arrival],
    prefix: &str,
    started: Instant,
    sent_at: &HashMap<String, Instant>,
) -> Tally {
    let mut ids = HashSet::new();
    let mut seen = HashSet::new();
    let mut tally = Tally {
        deliveries: arrivals.len() as u64,
        duplicates: 0,
        alerts: 0,
        foreign: 0,
        largest: 0,
        first: None,
        last: None,
        end_to_end_ms: Vec::new(),
    };
    for arrival in arrivals {
        if !ids.insert(arrival.delivery_id.as_str()) {
            tally.duplicates += 1;
        }
        tally.largest = tally.largest.max(arrival.alerts.len());
        let offset = arrival.at.saturating_duration_since(started).as_secs_f64();
        tally.first = Some(tally.first.map_or(offset, |first: f64| first.min(offset)));
        tally.last = Some(tally.last.map_or(offset, |last: f64| last.max(offset)));
        for n in &arrival.alerts {
            match n {
                Some(n) if n.starts_with(prefix) => {
                    if seen.insert(n.as_str()) {
                        tally.alerts += 1;
                        if let Some(sent) = sent_at.get(n) {
                            tally.end_to_end_ms.push(
                                arrival.at.saturating_duration_since(*sent).as_secs_f64() * 1000.0,
                            );
                        }
                    }
                }
                _ => tally.foreign += 1,
            }
        }
    }
    tally
}

/// `notify`: all events as NDJSON batches over `--batched-connections`, as fast as the
/// server takes them, then waits for every alert to reach the sink.
pub(crate) async fn run_notify_burst(
    target: &Target,
    sink: &Sink,
    args: &Args,
) -> anyhow::Result<NotifyReport> {
    let users = args.users.max(1);
    let prefix = run_prefix(Mode::Notify);
    let batch = args.batch_size.max(1);
    let bodies: Vec<(Bytes, u64)> = (0..args.burst_events)
        .collect::<Vec<_>>()
        .chunks(batch)
        .map(|chunk| {
            let mut body = String::new();
            for index in chunk {
                body.push_str(&notify_event(
                    &bench_user(index % users),
                    &format!("{prefix}-{index}"),
                ));
                body.push('\n');
            }
            (Bytes::from(body), chunk.len() as u64)
        })
        .collect();
    sink.take();
    let cpu_before = CpuSample::take(args.server_pid);
    let started = Instant::now();
    let total = post_all(
        target,
        bodies,
        "application/x-ndjson",
        args.batched_connections,
    )
    .await?;
    let load_seconds = started.elapsed().as_secs_f64();
    wait_for_webhooks(sink, total.events, Duration::from_secs(args.notify_timeout)).await;
    let cpu = CpuSample::take(args.server_pid).and_then(|after| {
        cpu_before
            .as_ref()
            .map(|before| CpuReport::between(before, &after))
    });
    let unreadable = sink.log.unreadable.load(Ordering::Relaxed);
    let arrivals = sink.take();
    let tally = tally_arrivals(&arrivals, &prefix, started, &HashMap::new());
    let drain = wait_for_drain(target, Duration::from_secs(args.drain_timeout)).await?;
    Ok(NotifyReport {
        mode: Mode::Notify,
        users,
        load_seconds,
        sent: total.events + total.errors,
        errors: total.errors,
        first_error: total.first_error,
        request_ms: Percentiles::of(total.request_ms),
        expected: total.events,
        deliveries: tally.deliveries,
        duplicates: tally.duplicates,
        alerts: tally.alerts,
        foreign: tally.foreign,
        unreadable,
        largest_delivery: tally.largest,
        first_delivery: tally.first,
        last_delivery: tally.last,
        target_rate: None,
        end_to_end_ms: None,
        drain,
        cpu,
    })
}

/// `notify-latency`: `--latency-rate` events/s for `--duration`, each opening a new alert
/// for a random bench user; event POST start → webhook arrival.
pub(crate) async fn run_notify_latency(
    client: &reqwest::Client,
    target: &Target,
    sink: &Sink,
    args: &Args,
) -> anyhow::Result<NotifyReport> {
    let users = args.users.max(1);
    let prefix = run_prefix(Mode::NotifyLatency);
    let rate = args.latency_rate.max(1);
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let failures = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    sink.take();
    let cpu_before = CpuSample::take(args.server_pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let mut posts = JoinSet::new();
    let mut request_ms = Vec::new();
    let mut sent: u64 = 0;
    let mut random = rand::rng();
    loop {
        interval.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        let n = format!("{prefix}-{sent}");
        sent += 1;
        let user = bench_user(random.random_range(0..users));
        let request = client
            .post(target.url("/api/v1/events"))
            .header(reqwest::header::AUTHORIZATION, &target.authorization)
            .header(CONTENT_TYPE, "application/json")
            .body(notify_event(&user, &n));
        let sent_at = sent_at.clone();
        let failures = failures.clone();
        let first_error = first_error.clone();
        posts.spawn(async move {
            let at = Instant::now();
            if let Ok(mut sent_at) = sent_at.lock() {
                sent_at.insert(n.clone(), at);
            }
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() => None,
                Ok(response) => Some(format!("HTTP {}", response.status())),
                Err(error) => Some(format!("{error}")),
            };
            if let Some(message) = failure {
                failures.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = first_error.lock() {
                    first.get_or_insert(message);
                }
                return None;
            }
            Some(at.elapsed().as_secs_f64() * 1000.0)
        });
        while let Some(joined) = posts.try_join_next() {
            if let Ok(Some(milliseconds)) = joined {
                request_ms.push(milliseconds);
            }
        }
    }
    let load_seconds = started.elapsed().as_secs_f64();
    while let Some(joined) = posts.join_next().await {
        if let Ok(Some(milliseconds)) = joined {
            request_ms.push(milliseconds);
        }
    }
    let cpu = CpuSample::take(args.server_pid).and_then(|after| {
        cpu_before
            .as_ref()
            .map(|before| CpuReport::between(before, &after))
    });
    let errors = failures.load(Ordering::Relaxed);
    let expected = sent - errors;
    let grace = LATENCY_GRACE.min(Duration::from_secs(args.notify_timeout));
    wait_for_webhooks(sink, expected, grace).await;
    let unreadable = sink.log.unreadable.load(Ordering::Relaxed);
    let arrivals = sink.take();
    let sent_at = match sent_at.lock() {
        Ok(mut sent_at) => std::mem::take(&mut *sent_at),
        Err(_) => bail!("send times poisoned"),
    };
    let tally = tally_arrivals(&arrivals, &prefix, started, &sent_at);
    let drain = wait_for_drain(target, Duration::from_secs(args.drain_timeout)).await?;
    let first_error = first_error.lock().ok().and_then(|first| first.clone());
    Ok(NotifyReport {
        mode: Mode::NotifyLatency,
        users,
        load_seconds,
        sent,
        errors,
        first_error,
        request_ms: Percentiles::of(request_ms),
        expected,
        deliveries: tally.deliveries,
        duplicates: tally.duplicates,
        alerts: tally.alerts,
        foreign: tally.foreign,
        unreadable,
        largest_delivery: tally.largest,
        first_delivery: tally.first,
        last_delivery: tally.last,
        target_rate: Some(rate),
        end_to_end_ms: Some(Percentiles::of(tally.end_to_end_ms)),
        drain,
        cpu,
    })
}
