//! `storm`, `storm-users` and `storm-single`: the alert storm of issue 12. Every event
//! becomes its own alert and its own notification: one webhook contact point on the
//! bench's sink, a policy that sends at once, and either one catch-all match subscription
//! grouped by the unique field `n` (`storm`, `storm-single`) or `--storm-subscriptions`
//! subscriptions each matching one value of the field `user` (`storm-users`). A burst of
//! `--burst-events` distinct events goes in as NDJSON batches of `--batch-size` over
//! `--batched-connections` (or one event per POST over `--single-connections` for
//! `storm-single`); the run measures events/s from the first POST to the last webhook
//! received, checks that every event was notified exactly once, and reads the server's
//! peak resident memory (`VmHWM`).
//!
//! Each run creates its subscriptions and deletes them afterwards, so the storm modes can
//! follow each other (and other modes) against one server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Bytes;
use futures_util::StreamExt;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::cpu::{CpuReport, CpuSample};
use crate::drain::{wait_for_drain, DrainReport};
use crate::notify::{tally_arrivals, wait_for_webhooks};
use crate::report::{milliseconds, Percentiles};
use crate::setup::CREATE_CONCURRENCY;
use crate::sink::Sink;
use crate::target::{call, expect_success, plain_client, truncate, Target};
use crate::throughput::ConnectionTally;
use crate::{run_prefix, Args, Mode};

/// The contact point and policy every storm subscription notifies through.
const STORM_NAME: &str = "storm";

/// What one storm run measured.
pub(crate) struct StormReport {
    mode: Mode,
    subscriptions: usize,
    setup_seconds: f64,
    sent: u64,
    errors: u64,
    first_error: Option<String>,
    load_seconds: f64,
    request_ms: Percentiles,
    /// Webhook requests received.
    deliveries: u64,
    /// Distinct events of this run whose alert arrived.
    notified: u64,
    /// Alert notifications of this run that arrived more than once.
    notified_twice: u64,
    /// Webhook requests whose delivery id arrived before.
    duplicate_deliveries: u64,
    foreign: u64,
    /// Webhook bodies the sink could not read.
    unreadable: u64,
    largest_delivery: usize,
    /// Seconds from the first POST to the last webhook.
    last_delivery: Option<f64>,
    peak_resident_kib: Option<u64>,
    drain: DrainReport,
    cpu: Option<CpuReport>,
}

impl StormReport {
    fn events_per_second(&self) -> Option<f64> {
        self.last_delivery
            .filter(|last| *last > 0.0)
            .map(|last| self.notified as f64 / last)
    }

    fn exactly_once(&self) -> bool {
        self.notified == self.sent - self.errors
            && self.notified_twice == 0
            && self.errors == 0
            && self.foreign == 0
            && self.unreadable == 0
    }

    pub(crate) fn summary_line(&self) -> String {
        let mut line = format!(
            "{:<8} subs={} events={} errors={} unreadable={} | first POST→last webhook {} s: {} ev/s | notified={} twice={} exactly once: {} | posting {:.2} s (post p50={} p99={} ms) | webhooks={} largest={} | peak RSS {}",
            self.mode.name(),
            self.subscriptions,
            self.sent,
            self.errors,
            self.unreadable,
            self.last_delivery.map_or("-".to_string(), |v| format!("{v:.2}")),
            self.events_per_second().map_or("-".to_string(), |v| format!("{v:.0}")),
            self.notified,
            self.notified_twice,
            if self.exactly_once() { "yes" } else { "NO" },
            self.load_seconds,
            milliseconds(self.request_ms.p50),
            milliseconds(self.request_ms.p99),
            self.deliveries,
            self.largest_delivery,
            self.peak_resident_kib
                .map_or("-".to_string(), |kib| format!("{:.0} MB", kib as f64 / 1024.0)),
        );
        if self.duplicate_deliveries > 0 || self.foreign > 0 {
            line.push_str(&format!(
                " (duplicate deliveries={} foreign alerts={})",
                self.duplicate_deliveries, self.foreign
            ));
        }
        line.push_str(&format!(
            " | setup {:.1} s | {}",
            self.setup_seconds,
            self.drain.summary()
        ));
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
            "subscriptions": self.subscriptions,
            "setup_seconds": self.setup_seconds,
            "sent": self.sent,
            "errors": self.errors,
            "first_error": self.first_error,
            "load_seconds": self.load_seconds,
            "request_ms": self.request_ms.to_json(),
            "deliveries": self.deliveries,
            "notified": self.notified,
            "notified_twice": self.notified_twice,
            "duplicate_deliveries": self.duplicate_deliveries,
            "foreign_alerts": self.foreign,
            "unreadable": self.unreadable,
            "exactly_once": self.exactly_once(),
            "largest_delivery": self.largest_delivery,
            "last_delivery_seconds": self.last_delivery,
            "events_per_second": self.events_per_second(),
            "peak_resident_kib": self.peak_resident_kib,
            "drain": self.drain.to_json(),
            "cpu": self.cpu.as_ref().map(CpuReport::to_json),
        })
    }
}

/// The server's peak resident memory so far (`VmHWM`), in KiB.
pub(crate) fn peak_resident_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One storm event: `n` is unique, `user` spreads the events over `users` values.
fn storm_event(n: &str, user: usize) -> String {
    json!({
        "type": "storm",
        "message": format!("storm {n}"),
        "fields": {"n": n, "user": format!("u{user}")},
    })
    .to_string()
}

/// The token's own contact point `storm` on this sink and a policy `storm` sending to it
/// at once.
async fn ensure_contact_point(
    client: &reqwest::Client,
    target: &Target,
    sink: &Sink,
) -> anyhow::Result<()> {
    let auth = |request: reqwest::RequestBuilder| {
        request.header(reqwest::header::AUTHORIZATION, &target.authorization)
    };
    let point = json!({
        "name": STORM_NAME,
        "kind": "webhook",
        "address": format!("{}/hook/{STORM_NAME}", sink.base),
    });
    let (status, body) =
        call(auth(client.post(target.url("/api/v1/contact-points"))).json(&point)).await?;
    if status == reqwest::StatusCode::CONFLICT {
        // Left from an earlier run: it points at that run's sink.
        let (status, body) = call(
            auth(client.delete(target.url(&format!("/api/v1/contact-points/{STORM_NAME}"))))
                .query(&[("force", "true")]),
        )
        .await?;
        expect_success("replace the storm contact point", status, &body)?;
        let (status, body) =
            call(auth(client.post(target.url("/api/v1/contact-points"))).json(&point)).await?;
        expect_success("create the storm contact point", status, &body)?;
    } else {
        expect_success("create the storm contact point", status, &body)?;
    }
    let (status, body) = call(
        auth(client.put(target.url(&format!("/api/v1/policies/{STORM_NAME}"))))
            .json(&json!({"rules": [{"contact_points": [STORM_NAME]}]})),
    )
    .await?;
    expect_success("put the storm policy", status, &body)
}

/// Creates the run's subscriptions (their ids), all notifying through the `storm` policy.
async fn create_storm_subscriptions(
    client: &reqwest::Client,
    target: &Target,
    mode: Mode,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let bodies: Vec<Value> = match mode {
        Mode::StormUsers => (0..count)
            .map(|user| {
                json!({
                    "kind": "match",
                    "title": format!("storm u{user}"),
                    "params": {"filter": format!("user == \"u{user}\""), "group_by": ["n"]},
                    "policy": STORM_NAME,
                })
            })
            .collect(),
        _ => vec![json!({
            "kind": "match",
            "title": "storm catch-all",
            "params": {"filter": "true", "group_by": ["n"]},
            "policy": STORM_NAME,
        })],
    };
    let results: Vec<anyhow::Result<String>> = futures_util::stream::iter(bodies)
        .map(|body| async move {
            let (status, answer) = call(
                client
                    .post(target.url("/api/v1/subscriptions"))
                    .header(reqwest::header::AUTHORIZATION, &target.authorization)
                    .json(&body),
            )
            .await?;
            expect_success("create a storm subscription", status, &answer)?;
            answer
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .context("subscription answer has no `id`")
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn delete_subscriptions(client: &reqwest::Client, target: &Target, ids: Vec<String>) {
    futures_util::stream::iter(ids)
        .map(|id| async move {
            let request = client
                .delete(target.url(&format!("/api/v1/subscriptions/{id}")))
                .header(reqwest::header::AUTHORIZATION, &target.authorization);
            if let Err(error) = call(request).await {
                eprintln!("warning: cannot delete storm subscription {id}: {error:#}");
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
}

/// Posts every body (with how many events it holds) once, over `connections` keep-alive
/// connections, and adds up what each connection saw.
pub(crate) async fn post_all(
    target: &Target,
    bodies: Vec<(Bytes, u64)>,
    content_type: &'static str,
    connections: usize,
) -> anyhow::Result<ConnectionTally> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..connections.max(1) {
        let client = plain_client()?;
        let url = target.url("/api/v1/events");
        let authorization = target.authorization.clone();
        let (bodies, next) = (bodies.clone(), next.clone());
        tasks.spawn(async move {
            let mut tally = ConnectionTally::default();
            while let Some((body, size)) = bodies.get(next.fetch_add(1, Ordering::Relaxed)) {
                let sent = Instant::now();
                let result = client
                    .post(&url)
                    .header(reqwest::header::AUTHORIZATION, &authorization)
                    .header(CONTENT_TYPE, content_type)
                    .body(body.clone())
                    .send()
                    .await;
                tally.requests += 1;
                let failure = match result {
                    Ok(response) if response.status().is_success() => response
                        .bytes()
                        .await
                        .err()
                        .map(|e| format!("reading answer: {e}")),
                    Ok(response) => {
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        Some(format!("HTTP {status}: {}", truncate(&text, 200)))
                    }
                    Err(error) => Some(format!("{error}")),
                };
                match failure {
                    None => {
                        tally.events += size;
                        tally.request_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                    Some(message) => {
                        tally.errors += size;
                        tally.first_error.get_or_insert(message);
                    }
                }
            }
            tally
        });
    }
    let mut total = ConnectionTally::default();
    while let Some(joined) = tasks.join_next().await {
        let tally = joined.context("load task failed")?;
        total.events += tally.events;
        total.requests += tally.requests;
        total.errors += tally.errors;
        if total.first_error.is_none() {
            total.first_error = tally.first_error;
        }
        total.request_ms.extend(tally.request_ms);
    }
    Ok(total)
}

/// One storm run: set-up, the burst, the wait for every webhook, the clean-up.
pub(crate) async fn run_storm(
    client: &reqwest::Client,
    target: &Target,
    sink: &Sink,
    mode: Mode,
    args: &Args,
) -> anyhow::Result<StormReport> {
    let setup_started = Instant::now();
    ensure_contact_point(client, target, sink).await?;
    let subscriptions = match mode {
        Mode::StormUsers => args.storm_subscriptions.max(1),
        _ => 1,
    };
    let ids = create_storm_subscriptions(client, target, mode, subscriptions).await?;
    let setup_seconds = setup_started.elapsed().as_secs_f64();
    // The worker loads new subscriptions before its next batch; wait until it is idle.
    wait_for_drain(target, Duration::from_secs(args.drain_timeout)).await?;
    let prefix = run_prefix(mode);
    let events: Vec<String> = (0..args.burst_events)
        .map(|index| storm_event(&format!("{prefix}-{index}"), index % subscriptions))
        .collect();
    let (bodies, content_type, connections) = if mode == Mode::StormSingle {
        let bodies = events
            .into_iter()
            .map(|event| (Bytes::from(event), 1))
            .collect();
        (bodies, "application/json", args.single_connections)
    } else {
        let bodies = events
            .chunks(args.batch_size.max(1))
            .map(|chunk| {
                let mut body = String::new();
                for event in chunk {
                    body.push_str(event);
                    body.push('\n');
                }
                (Bytes::from(body), chunk.len() as u64)
            })
            .collect();
        (bodies, "application/x-ndjson", args.batched_connections)
    };
    sink.take();
    let cpu_before = CpuSample::take(args.server_pid);
    let started = Instant::now();
    let total = post_all(target, bodies, content_type, connections).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    wait_for_webhooks(sink, total.events, Duration::from_secs(args.notify_timeout)).await;
    let cpu = CpuSample::take(args.server_pid).and_then(|after| {
        cpu_before
            .as_ref()
            .map(|before| CpuReport::between(before, &after))
    });
    let peak_resident_kib = peak_resident_kib(args.server_pid);
    let unreadable = sink.log.unreadable.load(Ordering::Relaxed);
    let arrivals = sink.take();
    let tally = tally_arrivals(&arrivals, &prefix, started, &HashMap::new());
    let carried: u64 = arrivals
        .iter()
        .flat_map(|arrival| arrival.alerts.iter())
        .filter(|n| n.as_deref().is_some_and(|n| n.starts_with(&prefix)))
        .count() as u64;
    let drain = wait_for_drain(target, Duration::from_secs(args.drain_timeout)).await?;
    delete_subscriptions(client, target, ids).await;
    if total.events == 0 {
        bail!(
            "{}: the server took no events (first error: {})",
            mode.name(),
            total.first_error.as_deref().unwrap_or("none")
        );
    }
    Ok(StormReport {
        mode,
        subscriptions,
        setup_seconds,
        sent: total.events + total.errors,
        errors: total.errors,
        first_error: total.first_error,
        load_seconds,
        request_ms: Percentiles::of(total.request_ms),
        deliveries: tally.deliveries,
        notified: tally.alerts,
        notified_twice: carried - tally.alerts,
        duplicate_deliveries: tally.duplicates,
        foreign: tally.foreign,
        unreadable,
        largest_delivery: tally.largest,
        last_delivery: tally.last,
        peak_resident_kib,
        drain,
        cpu,
    })
}
