//! `tellify-bench`: a load generator that measures a running tellify server.
//!
//! It talks only HTTP, and only to a server on this machine (a loopback address), so what
//! it measures is the whole path a producer sees: parsing, the durable append, the
//! worker and the stream. Every load loop is bounded by `--duration` and stops by itself;
//! after each run it waits for the worker to catch up (`/healthz` lag 0), because an
//! ingest rate the worker cannot keep up with is not a rate the server sustains.
//!
//! Modes, run in the order given:
//!
//! - `batched`: NDJSON batches (100 events each) over 8 connections; events/s.
//! - `single`: one JSON event per POST over 32 connections; events/s.
//! - `latency`: a steady 200 events/s, each firing an alert with a new group key, while
//!   listening on `GET /api/v1/stream?events=false`; send-to-alert milliseconds.
//! - `notify`: notifications. The bench runs a webhook sink of its own (loopback, answers
//!   200 at once), sets up `--users` users (`nb0` ..), each with a webhook contact point on
//!   that sink, a `default` policy sending to it at once and a subscription of their own,
//!   then sends a burst of `--burst-events` events (NDJSON, 100 per request) that open one
//!   alert each, spread evenly over the users; deliveries/s and alert notifications/s
//!   from the first to the last delivery at the sink.
//! - `notify-latency`: the same users; a steady 200 events/s, each opening a new alert for
//!   a random user; milliseconds from sending the event to its webhook arriving.
//! - `spool-replay`: the producer library (`tellify-client`) spools `--spool-events`
//!   events to a temporary directory while no server answers, then replays them to the
//!   server in batches of `--spool-batch`, in order; events/s of the replay.
//! - `am-ingest`: Prometheus-style alerts posted to the Alertmanager API
//!   (`POST /api/v2/alerts`), `--batch-size` (100) per request over
//!   `--batched-connections` (8), 10,000 distinct alerts re-sent over and over, with one
//!   `alertmanager` subscription (`bench alertmanager`) that keeps an alert per
//!   fingerprint; alerts/s.
//!
//! Example:
//!
//! ```text
//! tellify-bench --server http://127.0.0.1:8080 --token tfy_... \
//!     --subscriptions 10000 --duration 20 batched single latency
//! ```

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Bytes;
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use rand::Rng;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{json, Value};
use tokio::task::JoinSet;

/// Title of the subscription the latency run fires.
const LATENCY_TITLE: &str = "latency";

/// Subscriptions created at once during setup.
const CREATE_CONCURRENCY: usize = 16;

/// How long the latency run waits, after the last send, for alerts still on their way.
const LATENCY_GRACE: Duration = Duration::from_secs(10);

/// How often `/healthz` is asked while waiting for the worker to catch up.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Linux reports process CPU time in clock ticks of 1/100 s (`USER_HZ`) on every
/// architecture Rust supports; reading it through `sysconf` would need `libc` for one number.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Parser, Debug)]
#[command(
    name = "tellify-bench",
    about = "Load generator for a running tellify server (loopback only)."
)]
struct Args {
    /// Base URL of the server; only loopback addresses are accepted.
    #[arg(long, env = "TELLIFY_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// API token with ingest and user scope (the bootstrap admin token works).
    #[arg(long, env = "TELLIFY_TOKEN", hide_env_values = true)]
    token: String,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Match subscriptions `bench 0` .. `bench N-1` to have before the runs; ones that
    /// already exist (same title) are kept, missing ones are created concurrently.
    #[arg(long, default_value_t = 0)]
    subscriptions: usize,
    /// Create no `bench i` subscriptions, even missing ones.
    #[arg(long)]
    skip_create: bool,
    /// Distinct `block` values in generated events (default: --subscriptions, at least 1),
    /// so the failing share of events fires a subscription at the same rate whatever N is.
    #[arg(long)]
    blocks: Option<usize>,
    /// Percentage of generated events with `status: "fail"`.
    #[arg(long, default_value_t = 1.0)]
    fail_percent: f64,
    /// Events per request in `batched` mode.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Concurrent connections in `batched` mode.
    #[arg(long, default_value_t = 8)]
    batched_connections: usize,
    /// Concurrent connections in `single` mode.
    #[arg(long, default_value_t = 32)]
    single_connections: usize,
    /// Events per second in `latency` mode.
    #[arg(long, default_value_t = 200)]
    latency_rate: u32,
    /// Longest wait, in seconds, for the processing lag to reach 0 after a run.
    #[arg(long, default_value_t = 300)]
    drain_timeout: u64,
    /// Process id of the server: report its CPU use (per thread name) during each run.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print a JSON summary on stdout (the one-line summaries then go to stderr).
    #[arg(long)]
    json: bool,
    /// `notify` modes: users `nb0` .. `nb{N-1}` to set up, each with a webhook contact
    /// point, a `default` policy and a subscription of their own.
    #[arg(long, env = "TELLIFY_BENCH_USERS", default_value_t = 10_000)]
    users: usize,
    /// `notify` mode: events in the burst, one new alert each.
    #[arg(long, env = "TELLIFY_BENCH_BURST", default_value_t = 100_000)]
    burst_events: usize,
    /// `notify` modes: longest wait, in seconds, for the webhooks after the events went in.
    #[arg(long, default_value_t = 600)]
    notify_timeout: u64,
    /// `spool-replay` mode: events to spool, then replay.
    #[arg(long, env = "TELLIFY_BENCH_SPOOL_EVENTS", default_value_t = 100_000)]
    spool_events: usize,
    /// `spool-replay` mode: events per replayed request.
    #[arg(long, default_value_t = tellify_client::DEFAULT_REPLAY_BATCH)]
    spool_batch: usize,
    /// The runs, in order.
    #[arg(required = true, value_enum)]
    modes: Vec<Mode>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Batched,
    Single,
    Latency,
    Notify,
    NotifyLatency,
    SpoolReplay,
    AmIngest,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Batched => "batched",
            Mode::Single => "single",
            Mode::Latency => "latency",
            Mode::Notify => "notify",
            Mode::NotifyLatency => "notify-latency",
            Mode::SpoolReplay => "spool-replay",
            Mode::AmIngest => "am-ingest",
        }
    }
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let target = Target::new(&args.server, &args.token)?;
    let client = plain_client()?;
    let started = jiff::Timestamp::now();
    let health = target
        .health(&client)
        .await
        .context("server not reachable")?;
    let say = |line: String| {
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(format!(
        "server {} ({} events in the log, lag {})",
        target.base, health.events, health.lag
    ));
    let setup = if args.skip_create {
        None
    } else {
        let setup = ensure_subscriptions(&client, &target, args.subscriptions).await?;
        say(setup.summary_line());
        Some(setup)
    };
    let notify = if args
        .modes
        .iter()
        .any(|mode| matches!(mode, Mode::Notify | Mode::NotifyLatency))
    {
        let sink = Sink::start().await?;
        say(format!("sink     listening on {}", sink.base));
        let setup = ensure_notify_users(&client, &target, &sink.base, args.users).await?;
        say(setup.summary_line());
        if setup.failed > 0 {
            bail!("notify setup failed for {} users", setup.failed);
        }
        Some((sink, setup))
    } else {
        None
    };
    let mut runs = Vec::new();
    for mode in &args.modes {
        let (line, value) = match (mode, &notify) {
            (Mode::Batched | Mode::Single, _) => {
                let report = run_throughput(&target, *mode, &args).await?;
                (report.summary_line(), report.to_json())
            }
            (Mode::Latency, _) => {
                let report = run_latency(&client, &target, &args).await?;
                (report.summary_line(), report.to_json())
            }
            (Mode::Notify, Some((sink, _))) => {
                let report = run_notify_burst(&target, sink, &args).await?;
                (report.summary_line(), report.to_json())
            }
            (Mode::NotifyLatency, Some((sink, _))) => {
                let report = run_notify_latency(&client, &target, sink, &args).await?;
                (report.summary_line(), report.to_json())
            }
            (Mode::Notify | Mode::NotifyLatency, None) => bail!("notify setup missing"),
            (Mode::AmIngest, _) => {
                let report = run_am_ingest(&client, &target, &args).await?;
                (report.summary_line(), report.to_json())
            }
            (Mode::SpoolReplay, _) => {
                let report = run_spool_replay(&target, &args).await?;
                (report.summary_line(), report.to_json())
            }
        };
        say(line);
        runs.push(value);
    }
    if args.json {
        let summary = json!({
            "server": target.base,
            "started": started.to_string(),
            "subscriptions": args.subscriptions,
            "duration_seconds": args.duration,
            "setup": setup.map(|s| s.to_json()),
            "notify_setup": notify.as_ref().map(|(_, setup)| setup.to_json()),
            "runs": runs,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}

/// The server under test and the token to call it with.
struct Target {
    base: String,
    authorization: String,
}

#[derive(Clone, Copy, Debug)]
struct Health {
    events: i64,
    lag: i64,
}

impl Target {
    /// Accepts only loopback servers: this tool is for measuring a local server, never
    /// for loading someone else's.
    fn new(server: &str, token: &str) -> anyhow::Result<Target> {
        let url =
            reqwest::Url::parse(server).with_context(|| format!("bad --server `{server}`"))?;
        let host = url.host_str().unwrap_or("");
        let loopback = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            bail!("--server must be a loopback address (127.0.0.1), not `{host}`");
        }
        if token.trim().is_empty() {
            bail!("--token must not be empty");
        }
        Ok(Target {
            base: server.trim_end_matches('/').to_string(),
            authorization: format!("Bearer {}", token.trim()),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn health(&self, client: &reqwest::Client) -> anyhow::Result<Health> {
        let body: Value = client
            .get(self.url("/healthz"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let number = |name: &str| {
            body.get(name)
                .and_then(Value::as_i64)
                .with_context(|| format!("/healthz answer has no `{name}`: {body}"))
        };
        Ok(Health {
            events: number("events")?,
            lag: number("lag")?,
        })
    }
}

/// A client for short requests; each request must finish within 60 s.
fn plain_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the HTTP client")
}

// ---------------------------------------------------------------------------------------
// Setup

struct SetupReport {
    wanted: usize,
    existing: usize,
    created: usize,
    failed: usize,
    first_error: Option<String>,
    seconds: f64,
}

impl SetupReport {
    fn summary_line(&self) -> String {
        let mut line = format!(
            "setup    subscriptions={} existing={} created={} failed={} in {:.1} s",
            self.wanted, self.existing, self.created, self.failed, self.seconds
        );
        if let Some(error) = &self.first_error {
            line.push_str(&format!(" (first error: {error})"));
        }
        line
    }

    fn to_json(&self) -> Value {
        json!({
            "wanted": self.wanted,
            "existing": self.existing,
            "created": self.created,
            "failed": self.failed,
            "first_error": self.first_error,
            "seconds": self.seconds,
        })
    }
}

/// Titles of every subscription the token can see.
async fn subscription_titles(
    client: &reqwest::Client,
    target: &Target,
) -> anyhow::Result<HashSet<String>> {
    let page: Value = client
        .get(target.url("/api/v1/subscriptions"))
        .header(reqwest::header::AUTHORIZATION, &target.authorization)
        .send()
        .await?
        .error_for_status()
        .context("cannot list subscriptions")?
        .json()
        .await?;
    let items = page
        .get("items")
        .and_then(Value::as_array)
        .context("subscription list has no `items`")?;
    Ok(items
        .iter()
        .filter_map(|item| item.get("title").and_then(Value::as_str))
        .map(str::to_string)
        .collect())
}

async fn create_subscription(
    client: &reqwest::Client,
    target: &Target,
    body: Value,
) -> anyhow::Result<()> {
    let response = client
        .post(target.url("/api/v1/subscriptions"))
        .header(reqwest::header::AUTHORIZATION, &target.authorization)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    bail!("create subscription: HTTP {status}: {text}")
}

/// Makes sure `bench 0` .. `bench N-1` exist, creating the missing ones concurrently.
async fn ensure_subscriptions(
    client: &reqwest::Client,
    target: &Target,
    wanted: usize,
) -> anyhow::Result<SetupReport> {
    let started = Instant::now();
    let titles = subscription_titles(client, target).await?;
    let missing: Vec<usize> = (0..wanted)
        .filter(|index| !titles.contains(&format!("bench {index}")))
        .collect();
    let existing = wanted - missing.len();
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(missing)
        .map(|index| {
            let body = json!({
                "kind": "match",
                "title": format!("bench {index}"),
                "params": {"filter": format!("block == \"b{index}\" && status == \"fail\"")},
            });
            create_subscription(client, target, body)
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    let mut report = SetupReport {
        wanted,
        existing,
        created: 0,
        failed: 0,
        first_error: None,
        seconds: 0.0,
    };
    for result in results {
        match result {
            Ok(()) => report.created += 1,
            Err(error) => {
                report.failed += 1;
                report
                    .first_error
                    .get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

// ---------------------------------------------------------------------------------------
// Reports

/// What one run measured.
struct RunReport {
    mode: Mode,
    subscriptions: usize,
    load_seconds: f64,
    /// Events the server acknowledged (2xx).
    events: u64,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    /// Milliseconds from sending a request to its 2xx answer.
    request_ms: Percentiles,
    latency: Option<LatencyResult>,
    drain: DrainReport,
    cpu: Option<CpuReport>,
}

struct LatencyResult {
    target_rate: u32,
    sent: u64,
    seen: u64,
    /// Milliseconds from sending the event to receiving its alert on the stream.
    end_to_end_ms: Percentiles,
    lagged_notices: u64,
}

impl RunReport {
    fn events_per_second(&self) -> f64 {
        if self.load_seconds > 0.0 {
            self.events as f64 / self.load_seconds
        } else {
            0.0
        }
    }

    fn summary_line(&self) -> String {
        let mut line = format!(
            "{:<8} subs={} {:.1}s",
            self.mode.name(),
            self.subscriptions,
            self.load_seconds
        );
        match &self.latency {
            Some(latency) => line.push_str(&format!(
                " sent={} ({:.1}/s of {}/s) seen={} e2e p50={} p99={} max={} ms | post p50={} p99={} ms",
                latency.sent,
                self.events_per_second(),
                latency.target_rate,
                latency.seen,
                milliseconds(latency.end_to_end_ms.p50),
                milliseconds(latency.end_to_end_ms.p99),
                milliseconds(latency.end_to_end_ms.max),
                milliseconds(self.request_ms.p50),
                milliseconds(self.request_ms.p99),
            )),
            None => line.push_str(&format!(
                " events={} rate={:.0} ev/s requests={} (p50={} p99={} ms)",
                self.events,
                self.events_per_second(),
                self.requests,
                milliseconds(self.request_ms.p50),
                milliseconds(self.request_ms.p99),
            )),
        }
        line.push_str(&format!(" errors={}", self.errors));
        line.push_str(&format!(" | {}", self.drain.summary()));
        if let Some(cpu) = &self.cpu {
            line.push_str(&format!(" | {}", cpu.summary()));
        }
        if let Some(error) = &self.first_error {
            line.push_str(&format!(" | first error: {error}"));
        }
        line
    }

    fn to_json(&self) -> Value {
        let mut value = json!({
            "mode": self.mode.name(),
            "subscriptions": self.subscriptions,
            "load_seconds": self.load_seconds,
            "events": self.events,
            "events_per_second": self.events_per_second(),
            "requests": self.requests,
            "errors": self.errors,
            "first_error": self.first_error,
            "request_ms": self.request_ms.to_json(),
            "drain": self.drain.to_json(),
            "cpu": self.cpu.as_ref().map(CpuReport::to_json),
        });
        if let (Some(latency), Some(object)) = (&self.latency, value.as_object_mut()) {
            object.insert(
                "latency".to_string(),
                json!({
                    "target_rate": latency.target_rate,
                    "sent": latency.sent,
                    "seen": latency.seen,
                    "end_to_end_ms": latency.end_to_end_ms.to_json(),
                    "lagged_notices": latency.lagged_notices,
                }),
            );
        }
        value
    }
}

fn milliseconds(value: Option<f64>) -> String {
    match value {
        Some(value) if value >= 100.0 => format!("{value:.0}"),
        Some(value) => format!("{value:.1}"),
        None => "-".to_string(),
    }
}

/// Nearest-rank percentiles of a set of samples, computed by sorting.
#[derive(Clone, Copy, Debug, Default)]
struct Percentiles {
    count: usize,
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
}

impl Percentiles {
    fn of(mut samples: Vec<f64>) -> Percentiles {
        samples.sort_by(f64::total_cmp);
        Percentiles {
            count: samples.len(),
            p50: nearest_rank(&samples, 50.0),
            p90: nearest_rank(&samples, 90.0),
            p99: nearest_rank(&samples, 99.0),
            max: samples.last().copied(),
        }
    }

    fn to_json(self) -> Value {
        json!({"count": self.count, "p50": self.p50, "p90": self.p90, "p99": self.p99, "max": self.max})
    }
}

/// The smallest sample with at least `percent`% of the samples at or below it.
fn nearest_rank(sorted: &[f64], percent: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

// ---------------------------------------------------------------------------------------
// Throughput runs

/// Pre-built request bodies, so generating load costs the client as little CPU as
/// possible (it shares the machine with the server).
fn request_bodies(mode: Mode, args: &Args, count: usize) -> Vec<Bytes> {
    let blocks = args.blocks.unwrap_or(args.subscriptions).max(1);
    let mut random = rand::rng();
    let mut event = move || {
        let block = random.random_range(0..blocks);
        let failing = random.random_bool((args.fail_percent / 100.0).clamp(0.0, 1.0));
        json!({
            "type": "build",
            "fields": {
                "block": format!("b{block}"),
                "step": "place",
                "status": if failing { "fail" } else { "good" },
                "tns": -5,
            }
        })
        .to_string()
    };
    (0..count)
        .map(|_| match mode {
            Mode::Batched => {
                let mut body = String::new();
                for _ in 0..args.batch_size.max(1) {
                    body.push_str(&event());
                    body.push('\n');
                }
                Bytes::from(body)
            }
            Mode::AmIngest => alertmanager_batch(args.batch_size.max(1)),
            _ => Bytes::from(event()),
        })
        .collect()
}

/// What one connection did.
#[derive(Default)]
struct ConnectionTally {
    events: u64,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    request_ms: Vec<f64>,
}

async fn run_throughput(target: &Target, mode: Mode, args: &Args) -> anyhow::Result<RunReport> {
    let (connections, content_type, events_per_request) = match mode {
        Mode::Batched => (
            args.batched_connections,
            "application/x-ndjson",
            args.batch_size.max(1) as u64,
        ),
        Mode::AmIngest => (
            args.batched_connections,
            "application/json",
            args.batch_size.max(1) as u64,
        ),
        _ => (args.single_connections, "application/json", 1),
    };
    let path = match mode {
        Mode::AmIngest => "/api/v2/alerts",
        _ => "/api/v1/events",
    };
    let bodies = Arc::new(request_bodies(mode, args, 512));
    let duration = Duration::from_secs(args.duration);
    let cpu_before = CpuSample::take(args.server_pid);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for connection in 0..connections.max(1) {
        // One client per connection, so the load is exactly `connections` keep-alive
        // connections rather than whatever a shared pool decides.
        let client = plain_client()?;
        let url = target.url(path);
        let authorization = target.authorization.clone();
        let bodies = bodies.clone();
        tasks.spawn(async move {
            let mut tally = ConnectionTally::default();
            let mut next_body = connection * 7;
            while Instant::now() < deadline {
                let body = bodies[next_body % bodies.len()].clone();
                next_body += 1;
                let sent = Instant::now();
                let result = client
                    .post(&url)
                    .header(reqwest::header::AUTHORIZATION, &authorization)
                    .header(CONTENT_TYPE, content_type)
                    .body(body)
                    .send()
                    .await;
                tally.requests += 1;
                let failure = match result {
                    Ok(response) if response.status().is_success() => {
                        // Read the answer so the connection can be reused.
                        match response.bytes().await {
                            Ok(_) => None,
                            Err(error) => Some(format!("reading answer: {error}")),
                        }
                    }
                    Ok(response) => {
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        Some(format!("HTTP {status}: {}", truncate(&text, 200)))
                    }
                    Err(error) => Some(format!("{error}")),
                };
                match failure {
                    None => {
                        tally.events += events_per_request;
                        tally.request_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                    Some(message) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert(message);
                        // Do not spin on a server that refuses: back off a little.
                        tokio::time::sleep(Duration::from_millis(10)).await;
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
    let load_seconds = started.elapsed().as_secs_f64();
    let cpu = CpuSample::take(args.server_pid).and_then(|after| {
        cpu_before
            .as_ref()
            .map(|before| CpuReport::between(before, &after))
    });
    let drain = wait_for_drain(target, Duration::from_secs(args.drain_timeout)).await?;
    Ok(RunReport {
        mode,
        subscriptions: args.subscriptions,
        load_seconds,
        events: total.events,
        requests: total.requests,
        errors: total.errors,
        first_error: total.first_error,
        request_ms: Percentiles::of(total.request_ms),
        latency: None,
        drain,
        cpu,
    })
}

// ---------------------------------------------------------------------------------------
// Alertmanager API ingest

/// Title of the `alertmanager` subscription the `am-ingest` run feeds.
const AM_TITLE: &str = "bench alertmanager";

/// `am-ingest`: makes sure the `alertmanager` subscription exists, then posts alerts.
async fn run_am_ingest(
    client: &reqwest::Client,
    target: &Target,
    args: &Args,
) -> anyhow::Result<RunReport> {
    if !subscription_titles(client, target)
        .await?
        .contains(AM_TITLE)
    {
        let body = json!({"kind": "alertmanager", "title": AM_TITLE, "params": {}});
        create_subscription(client, target, body).await?;
    }
    run_throughput(target, Mode::AmIngest, args).await
}

/// One `POST /api/v2/alerts` body as Prometheus sends it: `size` firing alerts drawn from
/// 10,000 label sets (10 alert names on 1,000 instances), `endsAt` ten minutes ahead.
fn alertmanager_batch(size: usize) -> Bytes {
    let mut random = rand::rng();
    let now = jiff::Timestamp::now();
    let ends = now + jiff::SignedDuration::from_mins(10);
    let alerts: Vec<Value> = (0..size)
        .map(|_| {
            let name = random.random_range(0..10);
            let instance = random.random_range(0..1000);
            let critical = random.random_bool(0.01);
            json!({
                "labels": {
                    "alertname": format!("BenchAlert{name}"),
                    "instance": format!("host{instance}:9100"),
                    "job": "node",
                    "severity": if critical { "critical" } else { "warning" },
                },
                "annotations": {"summary": format!("bench alert {name} on host{instance}")},
                "startsAt": now.to_string(),
                "endsAt": ends.to_string(),
                "generatorURL": "http://prometheus.bench:9090/graph?g0.expr=up",
            })
        })
        .collect();
    Bytes::from(Value::Array(alerts).to_string())
}

fn truncate(text: &str, limit: usize) -> &str {
    match text.char_indices().nth(limit) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

// ---------------------------------------------------------------------------------------
// Latency run

/// Send times of events whose alerts have not been seen yet, and what was seen.
#[derive(Default)]
struct LatencyBook {
    pending: HashMap<String, Instant>,
    seen_ms: Vec<f64>,
    lagged_notices: u64,
}

async fn ensure_latency_subscription(
    client: &reqwest::Client,
    target: &Target,
) -> anyhow::Result<()> {
    if subscription_titles(client, target)
        .await?
        .contains(LATENCY_TITLE)
    {
        return Ok(());
    }
    let body = json!({
        "kind": "match",
        "title": LATENCY_TITLE,
        "params": {"filter": "bench_latency == true", "group_by": ["run"]},
    });
    create_subscription(client, target, body).await
}

async fn run_latency(
    client: &reqwest::Client,
    target: &Target,
    args: &Args,
) -> anyhow::Result<RunReport> {
    ensure_latency_subscription(client, target).await?;
    let book = Arc::new(Mutex::new(LatencyBook::default()));
    let (ready_sender, ready) = tokio::sync::oneshot::channel();
    let listener = tokio::spawn(listen_for_alerts(
        target.url("/api/v1/stream?events=false"),
        target.authorization.clone(),
        book.clone(),
        ready_sender,
    ));
    match tokio::time::timeout(Duration::from_secs(10), ready).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => {
            listener.abort();
            bail!("cannot open the stream: {error}");
        }
        _ => {
            listener.abort();
            bail!("the stream did not say `ready` within 10 s");
        }
    }

    // A run prefix keeps group keys unique across runs against the same server.
    let prefix = format!(
        "{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    );
    let rate = args.latency_rate.max(1);
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    // Late ticks are spaced out again rather than fired in a burst to catch up.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let failures = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let cpu_before = CpuSample::take(args.server_pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let mut posts = JoinSet::new();
    let mut request_ms = Vec::new();
    let mut sent: u64 = 0;
    loop {
        interval.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        let run = format!("{prefix}-{sent}");
        sent += 1;
        let body = json!({
            "type": "bench_latency",
            "fields": {"bench_latency": true, "run": run},
        })
        .to_string();
        let request = client
            .post(target.url("/api/v1/events"))
            .header(reqwest::header::AUTHORIZATION, &target.authorization)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        let book = book.clone();
        let failures = failures.clone();
        let first_error = first_error.clone();
        posts.spawn(async move {
            let sent_at = Instant::now();
            if let Ok(mut book) = book.lock() {
                book.pending.insert(run.clone(), sent_at);
            }
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() => None,
                Ok(response) => Some(format!("HTTP {}", response.status())),
                Err(error) => Some(format!("{error}")),
            };
            if let Some(message) = failure {
                failures.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut book) = book.lock() {
                    book.pending.remove(&run);
                }
                if let Ok(mut first) = first_error.lock() {
                    first.get_or_insert(message);
                }
                return None;
            }
            Some(sent_at.elapsed().as_secs_f64() * 1000.0)
        });
        // Collect finished posts as we go so the set stays small.
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
    let grace_end = Instant::now() + LATENCY_GRACE;
    while Instant::now() < grace_end {
        let waiting = book.lock().map(|book| book.pending.len()).unwrap_or(0);
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    listener.abort();
    let (seen_ms, lagged_notices) = match book.lock() {
        Ok(mut book) => (std::mem::take(&mut book.seen_ms), book.lagged_notices),
        Err(_) => bail!("latency book poisoned"),
    };
    let drain = wait_for_drain(target, Duration::from_secs(args.drain_timeout)).await?;
    let errors = failures.load(Ordering::Relaxed);
    let first_error = first_error.lock().ok().and_then(|first| first.clone());
    Ok(RunReport {
        mode: Mode::Latency,
        subscriptions: args.subscriptions,
        load_seconds,
        events: sent - errors,
        requests: sent,
        errors,
        first_error,
        request_ms: Percentiles::of(request_ms),
        latency: Some(LatencyResult {
            target_rate: rate,
            sent,
            seen: seen_ms.len() as u64,
            end_to_end_ms: Percentiles::of(seen_ms),
            lagged_notices,
        }),
        drain,
        cpu,
    })
}

/// Reads the server-sent event stream and books every alert whose `run` we sent.
async fn listen_for_alerts(
    url: String,
    authorization: String,
    book: Arc<Mutex<LatencyBook>>,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    let client = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            let _ = ready.send(Err(error.to_string()));
            return;
        }
    };
    let response = client
        .get(&url)
        .header(reqwest::header::AUTHORIZATION, &authorization)
        .header(ACCEPT, "text/event-stream")
        .send()
        .await;
    let response = match response {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => {
            let _ = ready.send(Err(format!("HTTP {}", response.status())));
            return;
        }
        Err(error) => {
            let _ = ready.send(Err(error.to_string()));
            return;
        }
    };
    let mut ready = Some(ready);
    let mut chunks = response.bytes_stream();
    let mut parser = SseParser::default();
    while let Some(Ok(chunk)) = chunks.next().await {
        let arrived = Instant::now();
        for (name, data) in parser.feed(&chunk) {
            match name.as_str() {
                "ready" => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Ok(()));
                    }
                }
                "alert" => book_alert(&book, &data, arrived),
                "lagged" => {
                    if let Ok(mut book) = book.lock() {
                        book.lagged_notices += 1;
                    }
                }
                _ => {}
            }
        }
    }
}

fn book_alert(book: &Mutex<LatencyBook>, data: &str, arrived: Instant) {
    let Ok(notice) = serde_json::from_str::<Value>(data) else {
        return;
    };
    let alert = &notice["alert"];
    let run = match alert["fields"]["run"].as_str() {
        Some(run) => run.to_string(),
        None => match alert["group_key"]
            .as_str()
            .and_then(|key| key.strip_prefix("run="))
        {
            Some(run) => run.to_string(),
            None => return,
        },
    };
    let Ok(mut book) = book.lock() else {
        return;
    };
    if let Some(sent_at) = book.pending.remove(&run) {
        let milliseconds = arrived.saturating_duration_since(sent_at).as_secs_f64() * 1000.0;
        book.seen_ms.push(milliseconds);
    }
}

/// A minimal `text/event-stream` reader: `event:` and `data:` lines, dispatched on a
/// blank line.
#[derive(Default)]
struct SseParser {
    buffer: Vec<u8>,
    event: String,
    data: String,
}

impl SseParser {
    fn feed(&mut self, chunk: &[u8]) -> Vec<(String, String)> {
        self.buffer.extend_from_slice(chunk);
        let mut dispatched = Vec::new();
        while let Some(end) = self.buffer.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.event.is_empty() || !self.data.is_empty() {
                    let name = std::mem::take(&mut self.event);
                    let data = std::mem::take(&mut self.data);
                    dispatched.push((
                        if name.is_empty() {
                            "message".into()
                        } else {
                            name
                        },
                        data,
                    ));
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            match field {
                "event" => self.event = value.to_string(),
                "data" => {
                    if !self.data.is_empty() {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                }
                _ => {}
            }
        }
        dispatched
    }
}

// ---------------------------------------------------------------------------------------
// Notifications: a webhook sink, per-user setup, a burst and a latency run

/// Title of every bench user's own subscription.
const NOTIFY_TITLE: &str = "notify bench";

/// How long a `notify` run waits without a single new webhook before it gives up.
const NOTIFY_STALL: Duration = Duration::from_secs(60);

/// The name of bench user `index`.
fn bench_user(index: usize) -> String {
    format!("nb{index}")
}

/// One webhook as the sink received it.
struct Arrival {
    at: Instant,
    delivery_id: String,
    /// `alerts[].fields.n` of every alert the delivery carried (`None` without one).
    alerts: Vec<Option<String>>,
}

/// What the sink has received since the last [`Sink::take`].
#[derive(Default)]
struct SinkLog {
    arrivals: Mutex<Vec<Arrival>>,
    /// Alerts carried by the arrivals since the last take.
    alerts: AtomicU64,
    /// Requests whose body was not a webhook payload.
    unreadable: AtomicU64,
}

/// A webhook receiver inside this process: `POST /hook/{user}` answers 200 at once and
/// records when the request arrived.
struct Sink {
    base: String,
    log: Arc<SinkLog>,
}

#[derive(serde::Deserialize)]
struct HookPayload {
    delivery_id: String,
    #[serde(default)]
    alerts: Vec<HookAlert>,
}

#[derive(serde::Deserialize)]
struct HookAlert {
    #[serde(default)]
    fields: serde_json::Map<String, Value>,
}

impl Sink {
    async fn start() -> anyhow::Result<Sink> {
        use axum::serve::ListenerExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the webhook sink")?;
        let address = listener.local_addr()?;
        let log = Arc::new(SinkLog::default());
        let router = axum::Router::new()
            .route("/hook/{user}", axum::routing::post(sink_hook))
            .with_state(log.clone());
        // The 200 must leave at once, as the server's own answers do.
        let listener = listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                eprintln!("error: the webhook sink stopped: {error}");
            }
        });
        Ok(Sink {
            base: format!("http://{address}"),
            log,
        })
    }

    /// Everything received since the last take; the alert counter starts again at 0.
    fn take(&self) -> Vec<Arrival> {
        let taken = match self.log.arrivals.lock() {
            Ok(mut arrivals) => {
                self.log.alerts.store(0, Ordering::Relaxed);
                std::mem::take(&mut *arrivals)
            }
            Err(_) => Vec::new(),
        };
        self.log.unreadable.store(0, Ordering::Relaxed);
        taken
    }

    fn alerts(&self) -> u64 {
        self.log.alerts.load(Ordering::Relaxed)
    }

    fn last_arrival(&self) -> Option<Instant> {
        self.log
            .arrivals
            .lock()
            .ok()
            .and_then(|arrivals| arrivals.last().map(|arrival| arrival.at))
    }
}

async fn sink_hook(
    axum::extract::State(log): axum::extract::State<Arc<SinkLog>>,
    body: Bytes,
) -> axum::http::StatusCode {
    let at = Instant::now();
    let Ok(payload) = serde_json::from_slice::<HookPayload>(&body) else {
        log.unreadable.fetch_add(1, Ordering::Relaxed);
        return axum::http::StatusCode::OK;
    };
    let alerts: Vec<Option<String>> = payload
        .alerts
        .iter()
        .map(|alert| {
            alert
                .fields
                .get("n")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    if let Ok(mut arrivals) = log.arrivals.lock() {
        log.alerts.fetch_add(alerts.len() as u64, Ordering::Relaxed);
        arrivals.push(Arrival {
            at,
            delivery_id: payload.delivery_id,
            alerts,
        });
    }
    axum::http::StatusCode::OK
}

/// Sends a request; answers the status and the body as JSON (`Null` when it is not).
async fn call(request: reqwest::RequestBuilder) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn expect_success(what: &str, status: reqwest::StatusCode, body: &Value) -> anyhow::Result<()> {
    if status.is_success() {
        return Ok(());
    }
    bail!(
        "{what}: HTTP {status}: {}",
        truncate(&body.to_string(), 200)
    )
}

#[derive(Clone, Copy, Debug)]
enum SetupStep {
    Users,
    ContactPoints,
    Policies,
    Subscriptions,
}

impl SetupStep {
    fn name(self) -> &'static str {
        match self {
            SetupStep::Users => "users",
            SetupStep::ContactPoints => "contact points",
            SetupStep::Policies => "policies",
            SetupStep::Subscriptions => "tokens+subscriptions",
        }
    }
}

/// Whether one step for one user created something (`true`) or found it there.
async fn setup_step(
    client: &reqwest::Client,
    target: &Target,
    sink_base: &str,
    step: SetupStep,
    index: usize,
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
            // Left from an earlier session: it points at that session's sink.
            let (status, body) = call(
                admin(client.delete(target.url("/api/v1/contact-points/hook"))).query(&for_user),
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
            // A subscription belongs to whoever creates it, so each user gets a token.
            let (status, body) = call(
                admin(client.post(target.url("/api/v1/tokens")))
                    .json(&json!({"name": "bench-notify", "scopes": ["user"], "user": name})),
            )
            .await?;
            expect_success("create token", status, &body)?;
            let token = body
                .get("token")
                .and_then(Value::as_str)
                .context("token answer has no `token`")?;
            let user_target = Target::new(&target.base, token)?;
            if subscription_titles(client, &user_target)
                .await?
                .contains(NOTIFY_TITLE)
            {
                return Ok(false);
            }
            create_subscription(
                client,
                &user_target,
                json!({
                    "kind": "match",
                    "title": NOTIFY_TITLE,
                    "params": {
                        "filter": format!("nb_user == \"{name}\""),
                        "group_by": ["n"],
                    },
                }),
            )
            .await?;
            Ok(true)
        }
    }
}

struct StepReport {
    step: SetupStep,
    created: usize,
    existing: usize,
    failed: usize,
    first_error: Option<String>,
    seconds: f64,
}

struct NotifySetup {
    users: usize,
    steps: Vec<StepReport>,
    failed: usize,
}

impl NotifySetup {
    fn summary_line(&self) -> String {
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

    fn to_json(&self) -> Value {
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
/// sink, a `default` policy sending there at once, and their own subscription
/// `nb_user == "nb<i>"` grouped by `n`. One step at a time for all users, so each step's
/// rate is reported on its own.
async fn ensure_notify_users(
    client: &reqwest::Client,
    target: &Target,
    sink_base: &str,
    users: usize,
) -> anyhow::Result<NotifySetup> {
    let mut setup = NotifySetup {
        users,
        steps: Vec::new(),
        failed: 0,
    };
    for step in [
        SetupStep::Users,
        SetupStep::ContactPoints,
        SetupStep::Policies,
        SetupStep::Subscriptions,
    ] {
        let started = Instant::now();
        let results: Vec<anyhow::Result<bool>> = futures_util::stream::iter(0..users)
            .map(|index| setup_step(client, target, sink_base, step, index))
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
struct NotifyReport {
    mode: Mode,
    users: usize,
    /// Seconds spent sending the events.
    load_seconds: f64,
    sent: u64,
    errors: u64,
    first_error: Option<String>,
    request_ms: Percentiles,
    /// Alert notifications the run's events should cause (one per acknowledged event).
    expected: u64,
    /// Webhook requests received (a retried delivery counts each time).
    deliveries: u64,
    duplicates: u64,
    /// Distinct alerts of this run that arrived.
    alerts: u64,
    /// Alerts that arrived but were not from this run's events.
    foreign: u64,
    unreadable: u64,
    largest_delivery: usize,
    /// Seconds from the first event sent to the first and to the last webhook.
    first_delivery: Option<f64>,
    last_delivery: Option<f64>,
    /// `notify-latency`: the rate asked for and event-to-webhook milliseconds.
    target_rate: Option<u32>,
    end_to_end_ms: Option<Percentiles>,
    drain: DrainReport,
    cpu: Option<CpuReport>,
}

impl NotifyReport {
    /// The span from the first to the last webhook.
    fn delivery_span(&self) -> Option<f64> {
        match (self.first_delivery, self.last_delivery) {
            (Some(first), Some(last)) if last > first => Some(last - first),
            _ => None,
        }
    }

    fn per_second(&self, count: u64) -> Option<f64> {
        self.delivery_span().map(|span| count as f64 / span)
    }

    fn summary_line(&self) -> String {
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

    fn to_json(&self) -> Value {
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
fn notify_event(user: &str, n: &str) -> String {
    json!({
        "type": "bench_notify",
        "message": format!("bench notification {n}"),
        "fields": {"nb_user": user, "n": n},
    })
    .to_string()
}

/// A prefix that keeps `n` (and so group keys) unique across runs against one server.
fn run_prefix(mode: Mode) -> String {
    format!(
        "{}-{}-{}",
        mode.name(),
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    )
}

/// Waits until `expected` alerts reached the sink, nothing new arrived for
/// [`NOTIFY_STALL`], or `timeout` passed.
async fn wait_for_webhooks(sink: &Sink, expected: u64, timeout: Duration) {
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
struct Tally {
    deliveries: u64,
    duplicates: u64,
    alerts: u64,
    foreign: u64,
    largest: usize,
    first: Option<f64>,
    last: Option<f64>,
    end_to_end_ms: Vec<f64>,
}

fn tally_arrivals(
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
async fn run_notify_burst(
    target: &Target,
    sink: &Sink,
    args: &Args,
) -> anyhow::Result<NotifyReport> {
    let users = args.users.max(1);
    let prefix = run_prefix(Mode::Notify);
    let batch = args.batch_size.max(1);
    let bodies: Vec<Bytes> = (0..args.burst_events)
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
            Bytes::from(body)
        })
        .collect();
    let sizes: Vec<u64> = (0..args.burst_events)
        .collect::<Vec<_>>()
        .chunks(batch)
        .map(|chunk| chunk.len() as u64)
        .collect();
    let bodies = Arc::new(bodies);
    let sizes = Arc::new(sizes);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    sink.take();
    let cpu_before = CpuSample::take(args.server_pid);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..args.batched_connections.max(1) {
        let client = plain_client()?;
        let url = target.url("/api/v1/events");
        let authorization = target.authorization.clone();
        let (bodies, sizes, next) = (bodies.clone(), sizes.clone(), next.clone());
        tasks.spawn(async move {
            let mut tally = ConnectionTally::default();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let (Some(body), Some(size)) = (bodies.get(index), sizes.get(index)) else {
                    break;
                };
                let sent = Instant::now();
                let result = client
                    .post(&url)
                    .header(reqwest::header::AUTHORIZATION, &authorization)
                    .header(CONTENT_TYPE, "application/x-ndjson")
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
async fn run_notify_latency(
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

// ---------------------------------------------------------------------------------------
// Spool replay

/// What the `spool-replay` run measured.
struct SpoolReplayReport {
    events: usize,
    batch: usize,
    spool_bytes: u64,
    spool_seconds: f64,
    replay_seconds: f64,
    replayed: u64,
    duplicates: u64,
    drain: DrainReport,
}

impl SpoolReplayReport {
    fn replay_rate(&self) -> f64 {
        if self.replay_seconds > 0.0 {
            self.replayed as f64 / self.replay_seconds
        } else {
            0.0
        }
    }

    fn summary_line(&self) -> String {
        format!(
            "spool-replay events={} batch={} spooled in {:.2} s ({:.0} ev/s, {} bytes) | \
             replayed={} duplicates={} in {:.2} s rate={:.0} ev/s | {}",
            self.events,
            self.batch,
            self.spool_seconds,
            self.events as f64 / self.spool_seconds.max(f64::EPSILON),
            self.spool_bytes,
            self.replayed,
            self.duplicates,
            self.replay_seconds,
            self.replay_rate(),
            self.drain.summary()
        )
    }

    fn to_json(&self) -> Value {
        json!({
            "mode": Mode::SpoolReplay.name(),
            "events": self.events,
            "batch": self.batch,
            "spool_bytes": self.spool_bytes,
            "spool_seconds": self.spool_seconds,
            "replay_seconds": self.replay_seconds,
            "replayed": self.replayed,
            "duplicates": self.duplicates,
            "replay_events_per_second": self.replay_rate(),
            "drain": self.drain.to_json(),
        })
    }
}

/// Spools the events through a client whose server refuses connections (a port nobody
/// listens on), so every one takes the real spool path, then replays them to the server.
async fn run_spool_replay(target: &Target, args: &Args) -> anyhow::Result<SpoolReplayReport> {
    let prefix = run_prefix(Mode::SpoolReplay);
    let dir = std::env::temp_dir().join(format!("tellify-bench-{prefix}"));
    let token = args.token.trim();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .context("cannot find a free port")?
        .port();
    let offline = tellify_client::Client::builder(format!("http://127.0.0.1:{closed_port}"), token)
        .spool(&dir)
        .max_spool_bytes(u64::MAX)
        .build()?;
    let blocks = args.blocks.unwrap_or(args.subscriptions).max(1);
    let started = Instant::now();
    let mut n = 0usize;
    while n < args.spool_events {
        let count = 1000.min(args.spool_events - n);
        let mut events = Vec::with_capacity(count);
        for i in n..n + count {
            let mut event = tellify_model::EventInput {
                event_type: Some("bench".to_string()),
                ..Default::default()
            };
            event.fields.insert("run".to_string(), json!(prefix));
            event.fields.insert("n".to_string(), json!(i));
            event
                .fields
                .insert("block".to_string(), json!(format!("b{}", i % blocks)));
            event.fields.insert("status".to_string(), json!("pass"));
            events.push(event);
        }
        match offline.send_batch(events).await? {
            tellify_client::SendOutcome::Spooled { .. } => {}
            tellify_client::SendOutcome::Sent(_) => bail!("a closed port took events"),
        }
        n += count;
    }
    let spool_seconds = started.elapsed().as_secs_f64();
    let spool_bytes = offline
        .spool_status()
        .await?
        .map(|status| status.pending_bytes)
        .unwrap_or(0);
    // Releases the spool's lock for the replaying client.
    drop(offline);

    let online = tellify_client::Client::builder(&target.base, token)
        .spool(&dir)
        .max_spool_bytes(u64::MAX)
        .replay_batch(args.spool_batch)
        .build()?;
    let started = Instant::now();
    let replayed = online.replay().await;
    let replay_seconds = started.elapsed().as_secs_f64();
    drop(online);
    let _ = std::fs::remove_dir_all(&dir);
    let replayed = replayed?;
    let drain = wait_for_drain(target, Duration::from_secs(args.drain_timeout)).await?;
    Ok(SpoolReplayReport {
        events: args.spool_events,
        batch: args.spool_batch,
        spool_bytes,
        spool_seconds,
        replay_seconds,
        replayed: replayed.replayed,
        duplicates: replayed.duplicates,
        drain,
    })
}

// ---------------------------------------------------------------------------------------
// Drain

/// How far behind the worker was when the load stopped, and how long it took to catch up.
struct DrainReport {
    lag_at_end: i64,
    /// The lag 1 s after the load stopped (0 if it drained sooner).
    lag_after_one_second: i64,
    /// Seconds until the lag was 0; `None` if it did not reach 0 within the timeout.
    drained_after: Option<f64>,
    events_in_log: i64,
}

impl DrainReport {
    fn summary(&self) -> String {
        let drained = match self.drained_after {
            Some(seconds) => format!("drained in {seconds:.2} s"),
            None => "NOT drained".to_string(),
        };
        format!(
            "lag at end={} after 1 s={} {drained}",
            self.lag_at_end, self.lag_after_one_second
        )
    }

    fn to_json(&self) -> Value {
        json!({
            "lag_at_end": self.lag_at_end,
            "lag_after_one_second": self.lag_after_one_second,
            "drained_after_seconds": self.drained_after,
            "events_in_log": self.events_in_log,
        })
    }
}

async fn wait_for_drain(target: &Target, timeout: Duration) -> anyhow::Result<DrainReport> {
    let client = plain_client()?;
    let started = Instant::now();
    let first = target.health(&client).await?;
    let mut report = DrainReport {
        lag_at_end: first.lag,
        lag_after_one_second: first.lag,
        drained_after: None,
        events_in_log: first.events,
    };
    let mut health = first;
    let mut one_second_recorded = false;
    loop {
        let elapsed = started.elapsed();
        if !one_second_recorded && elapsed >= Duration::from_secs(1) {
            report.lag_after_one_second = health.lag;
            one_second_recorded = true;
        }
        if health.lag == 0 {
            report.drained_after = Some(elapsed.as_secs_f64());
            if !one_second_recorded {
                report.lag_after_one_second = 0;
            }
            report.events_in_log = health.events;
            return Ok(report);
        }
        if elapsed >= timeout {
            report.events_in_log = health.events;
            return Ok(report);
        }
        tokio::time::sleep(DRAIN_POLL).await;
        health = target.health(&client).await?;
    }
}

// ---------------------------------------------------------------------------------------
// CPU accounting from /proc, so a report can say who used the two cores.

struct CpuSample {
    taken: Instant,
    machine: MachineTicks,
    bench_ticks: u64,
    /// Server CPU ticks per thread name (`tokio-runtime-w`, `tellify-sqlite-`, ...).
    server_threads: Option<HashMap<String, u64>>,
    /// Every other process, children included (a compiler that exits inside the window
    /// is counted through its parent's `cutime`).
    other_processes: u64,
}

/// Machine-wide jiffies from the first line of `/proc/stat`.
#[derive(Clone, Copy, Default)]
struct MachineTicks {
    busy: u64,
    iowait: u64,
    /// `irq` + `softirq`: kernel work no process is charged for (loopback TCP, disk).
    interrupts: u64,
    total: u64,
}

/// CPU use over one load window, in percent of one core (a 2-core machine has 200%).
struct CpuReport {
    seconds: f64,
    /// Cores the machine has, from the ticks `/proc/stat` counted.
    cores: f64,
    machine_busy: f64,
    machine_iowait: f64,
    interrupts: f64,
    bench: f64,
    /// Per server thread name, busiest first.
    server_threads: Option<Vec<(String, f64)>>,
    other_processes: f64,
}

impl CpuSample {
    /// Samples the machine, this process, other processes and (if given) the server;
    /// `None` where `/proc` is missing.
    fn take(server_pid: Option<u32>) -> Option<CpuSample> {
        let machine = machine_ticks()?;
        let bench_ticks = process_ticks("/proc/self/stat")?.own;
        let server_threads = server_pid.and_then(thread_ticks);
        let other_processes = other_process_ticks(&[Some(std::process::id()), server_pid]);
        Some(CpuSample {
            taken: Instant::now(),
            machine,
            bench_ticks,
            server_threads,
            other_processes,
        })
    }
}

impl CpuReport {
    fn between(before: &CpuSample, after: &CpuSample) -> CpuReport {
        let seconds = after
            .taken
            .saturating_duration_since(before.taken)
            .as_secs_f64()
            .max(1e-9);
        let percent = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / seconds * 100.0;
        let server_threads = match (&before.server_threads, &after.server_threads) {
            (Some(first), Some(last)) => {
                let mut threads: Vec<(String, f64)> = last
                    .iter()
                    .map(|(name, ticks)| {
                        let earlier = first.get(name).copied().unwrap_or(0);
                        (name.clone(), percent(ticks.saturating_sub(earlier)))
                    })
                    .filter(|(_, used)| *used > 0.0)
                    .collect();
                threads.sort_by(|a, b| b.1.total_cmp(&a.1));
                Some(threads)
            }
            _ => None,
        };
        let (first, last) = (before.machine, after.machine);
        CpuReport {
            seconds,
            cores: percent(last.total.saturating_sub(first.total)) / 100.0,
            machine_busy: percent(last.busy.saturating_sub(first.busy)),
            machine_iowait: percent(last.iowait.saturating_sub(first.iowait)),
            interrupts: percent(last.interrupts.saturating_sub(first.interrupts)),
            bench: percent(after.bench_ticks.saturating_sub(before.bench_ticks)),
            server_threads,
            other_processes: percent(after.other_processes.saturating_sub(before.other_processes)),
        }
    }

    fn server(&self) -> Option<f64> {
        self.server_threads
            .as_ref()
            .map(|threads| threads.iter().map(|(_, used)| used).sum())
    }

    /// Busy time nobody above accounts for (kernel threads' rounding, short-lived
    /// processes whose parent has not reaped them yet).
    fn unaccounted(&self) -> f64 {
        let known =
            self.server().unwrap_or(0.0) + self.bench + self.other_processes + self.interrupts;
        (self.machine_busy - known).max(0.0)
    }

    fn summary(&self) -> String {
        let server = match (self.server(), &self.server_threads) {
            (Some(total), Some(threads)) => {
                let parts: Vec<String> = threads
                    .iter()
                    .take(3)
                    .map(|(name, used)| format!("{name} {used:.0}"))
                    .collect();
                format!("server {total:.0} ({}) + ", parts.join(", "))
            }
            _ => String::new(),
        };
        format!(
            "cpu % of one core ({:.0} cores): busy {:.0} = {server}bench {:.0} + other processes {:.0} + irq {:.0} + rest {:.0}; iowait {:.0}",
            self.cores,
            self.machine_busy,
            self.bench,
            self.other_processes,
            self.interrupts,
            self.unaccounted(),
            self.machine_iowait
        )
    }

    fn to_json(&self) -> Value {
        let threads = self.server_threads.as_ref().map(|threads| {
            threads
                .iter()
                .map(|(name, used)| (name.clone(), json!(used)))
                .collect::<serde_json::Map<String, Value>>()
        });
        json!({
            "unit": "percent of one core",
            "window_seconds": self.seconds,
            "cores": self.cores.round(),
            "machine_busy": self.machine_busy,
            "machine_iowait": self.machine_iowait,
            "irq_and_softirq": self.interrupts,
            "bench": self.bench,
            "server": self.server(),
            "server_threads": threads,
            "other_processes": self.other_processes,
            "unaccounted": self.unaccounted(),
        })
    }
}

fn machine_ticks() -> Option<MachineTicks> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|value| value.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let column = |index: usize| values.get(index).copied().unwrap_or(0);
    let total: u64 = (0..8).map(column).sum();
    let idle = column(3) + column(4);
    Some(MachineTicks {
        busy: total.saturating_sub(idle),
        iowait: column(4),
        interrupts: column(5) + column(6),
        total,
    })
}

/// CPU ticks from a `/proc/.../stat` file.
struct ProcessTicks {
    name: String,
    /// `utime + stime`.
    own: u64,
    /// `cutime + cstime`: reaped children.
    children: u64,
}

fn process_ticks(path: &str) -> Option<ProcessTicks> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the name comes field 3 (state); utime, stime, cutime, cstime are fields 14-17.
    let field = |index: usize| rest.get(index).and_then(|value| value.parse::<u64>().ok());
    Some(ProcessTicks {
        name,
        own: field(11)? + field(12)?,
        children: field(13)? + field(14)?,
    })
}

/// CPU ticks of every thread of `pid`, summed per thread name.
fn thread_ticks(pid: u32) -> Option<HashMap<String, u64>> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut by_name: HashMap<String, u64> = HashMap::new();
    for entry in entries.flatten() {
        let path = entry.path().join("stat");
        if let Some(ticks) = path.to_str().and_then(process_ticks) {
            *by_name.entry(ticks.name).or_default() += ticks.own;
        }
    }
    Some(by_name)
}

/// Ticks of every process except `excluded`, with their reaped children.
fn other_process_ticks(excluded: &[Option<u32>]) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if excluded.contains(&Some(pid)) {
            continue;
        }
        if let Some(ticks) = process_ticks(&format!("/proc/{pid}/stat")) {
            total += ticks.own + ticks.children;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let percentiles = Percentiles::of(samples);
        assert_eq!(percentiles.p50, Some(50.0));
        assert_eq!(percentiles.p99, Some(99.0));
        assert_eq!(percentiles.max, Some(100.0));
        assert_eq!(Percentiles::of(vec![7.0]).p99, Some(7.0));
        assert_eq!(Percentiles::of(Vec::new()).p50, None);
    }

    #[test]
    fn sse_events_are_split_across_chunks() {
        let mut parser = SseParser::default();
        assert!(parser.feed(b"event: ready\ndata: {}\n").is_empty());
        let first = parser.feed(b"\nevent: alert\ndata: {\"a\"");
        assert_eq!(first, vec![("ready".to_string(), "{}".to_string())]);
        let second = parser.feed(b":1}\r\n\r\n: keep-alive\n\n");
        assert_eq!(second, vec![("alert".to_string(), "{\"a\":1}".to_string())]);
    }

    #[test]
    fn only_loopback_servers_are_accepted() {
        assert!(Target::new("http://127.0.0.1:8080", "t").is_ok());
        assert!(Target::new("http://[::1]:8080/", "t").is_ok());
        assert!(Target::new("http://localhost:1", "t").is_ok());
        assert!(Target::new("http://10.0.0.1:8080", "t").is_err());
        assert!(Target::new("http://example.com", "t").is_err());
        assert!(Target::new("http://127.0.0.1:8080", " ").is_err());
    }

    #[test]
    fn alerts_are_matched_by_run_field_or_group_key() {
        let book = Mutex::new(LatencyBook::default());
        let sent = Instant::now();
        if let Ok(mut open) = book.lock() {
            open.pending.insert("r-1".to_string(), sent);
            open.pending.insert("r-2".to_string(), sent);
        }
        book_alert(
            &book,
            r#"{"alert":{"fields":{"run":"r-1"}}}"#,
            Instant::now(),
        );
        book_alert(
            &book,
            r#"{"alert":{"group_key":"run=r-2"}}"#,
            Instant::now(),
        );
        book_alert(
            &book,
            r#"{"alert":{"fields":{"run":"other"}}}"#,
            Instant::now(),
        );
        let open = book.lock().unwrap();
        assert_eq!(open.seen_ms.len(), 2);
        assert!(open.pending.is_empty());
    }
}
