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
//! - `fanout`: the same users with a fan-out subscription each; one event that the first N
//!   users' subscriptions all match (N from `--fanout-sizes`, each `--fanout-rounds` times),
//!   so N alerts and N webhooks to N different URLs; 202 → webhook p50 / p99 / last, and
//!   whether every user got exactly one.
//! - `spool-replay`: the producer library (`tellify-client`) spools `--spool-events`
//!   events to a temporary directory while no server answers, then replays them to the
//!   server in batches of `--spool-batch`, in order; events/s of the replay.
//! - `am-ingest`: Prometheus-style alerts posted to the Alertmanager API
//!   (`POST /api/v2/alerts`), `--batch-size` (100) per request over
//!   `--batched-connections` (8), 10,000 distinct alerts re-sent over and over, with one
//!   `alertmanager` subscription (`bench alertmanager`) that keeps an alert per
//!   fingerprint; alerts/s.
//! - `dashboard`: seeds a user `dash` with `--dashboard-alerts` alerts and the log up to
//!   `--dashboard-events` events (API only), signs in through the sign-in form and asks
//!   each dashboard page `--page-requests` times in a row; per page p50 / p99 / max of the
//!   server's `Server-Timing` and of the client's time, and the time to the first
//!   snapshot of `/live?view=alerts`.
//!
//! - `storm`, `storm-users`, `storm-single`: the alert storm (issue 12). Every event of a
//!   burst of `--burst-events` distinct events opens its own alert and sends its own
//!   notification to one webhook contact point on the bench's sink, through a policy that
//!   sends at once. `storm`: one catch-all match subscription grouped by the unique field
//!   `n`, NDJSON batches of `--batch-size` over `--batched-connections`; `storm-users`: the
//!   same with `--storm-subscriptions` subscriptions, each matching one value of a `user`
//!   field; `storm-single`: the catch-all subscription, one event per POST over
//!   `--single-connections`. Events/s from the first POST to the last webhook, whether
//!   every event was notified exactly once, and the server's peak resident memory.
//!
//! One file per mode (`throughput.rs` for `batched` and `single`, `latency.rs`,
//! `notify.rs`, `storm.rs`, `spool.rs`, `alertmanager.rs`, `dashboard.rs`); `target.rs` is the server and its token,
//! `setup.rs` the `bench i` subscriptions, `sink.rs` the webhook receiver, `drain.rs` the
//! wait for the worker, `cpu.rs` the `/proc` accounting and `report.rs` the summaries.
//! `main.rs` holds the flags and runs the modes in order.
//!
//! Example:
//!
//! ```text
//! tellify-bench --server http://127.0.0.1:8080 --token tfy_... \
//!     --subscriptions 10000 --duration 20 batched single latency
//! ```

mod alertmanager;
mod cpu;
mod dashboard;
mod drain;
mod fanout;
mod latency;
mod notify;
mod report;
mod setup;
mod sink;
mod spool;
mod storm;
mod target;
mod throughput;

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use serde_json::json;

use crate::alertmanager::run_am_ingest;
use crate::dashboard::run_dashboard;
use crate::fanout::{fanout_sizes, run_fanout};
use crate::latency::run_latency;
use crate::notify::{ensure_notify_users, run_notify_burst, run_notify_latency, SetupStep};
use crate::setup::ensure_subscriptions;
use crate::sink::Sink;
use crate::spool::run_spool_replay;
use crate::storm::run_storm;
use crate::target::{plain_client, Target};
use crate::throughput::run_throughput;

#[derive(Parser, Debug)]
#[command(
    name = "tellify-bench",
    about = "Load generator for a running tellify server (loopback only)."
)]
struct Args {
    /// Base URL of the server, or of several nodes of one cluster separated by commas
    /// (requests go to them in turn); only loopback addresses are accepted.
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
    /// `storm-users` mode: subscriptions, each matching one value of the `user` field.
    #[arg(long, default_value_t = 10_000)]
    storm_subscriptions: usize,
    /// `notify` modes: longest wait, in seconds, for the webhooks after the events went in.
    #[arg(long, default_value_t = 600)]
    notify_timeout: u64,
    /// `fanout` mode: how many users one event reaches, one run each (the users set up
    /// are at least the largest).
    #[arg(
        long,
        env = "TELLIFY_BENCH_FANOUT_SIZES",
        value_delimiter = ',',
        default_value = "1000,10000"
    )]
    fanout_sizes: Vec<usize>,
    /// `fanout` mode: events (rounds) per size.
    #[arg(long, env = "TELLIFY_BENCH_FANOUT_ROUNDS", default_value_t = 3)]
    fanout_rounds: usize,
    /// `fanout` mode: seconds between rounds.
    #[arg(long, env = "TELLIFY_BENCH_FANOUT_GAP", default_value_t = 1.0)]
    fanout_gap: f64,
    /// `spool-replay` mode: events to spool, then replay.
    #[arg(long, env = "TELLIFY_BENCH_SPOOL_EVENTS", default_value_t = 100_000)]
    spool_events: usize,
    /// `spool-replay` mode: events per replayed request.
    #[arg(long, default_value_t = tellify_client::DEFAULT_REPLAY_BATCH)]
    spool_batch: usize,
    /// `dashboard` mode: alerts (events `kind:hit n:<i>`) the signed-in user has.
    #[arg(long, env = "TELLIFY_BENCH_DASHBOARD_ALERTS", default_value_t = 10_000)]
    dashboard_alerts: usize,
    /// `dashboard` mode: events the log holds before the pages are asked (`kind:noise`
    /// events fill it up).
    #[arg(
        long,
        env = "TELLIFY_BENCH_DASHBOARD_EVENTS",
        default_value_t = 1_000_000
    )]
    dashboard_events: usize,
    /// `dashboard` mode: requests per page, one after the other.
    #[arg(long, env = "TELLIFY_BENCH_PAGE_REQUESTS", default_value_t = 200)]
    page_requests: usize,
    /// `dashboard` mode: at most this many seconds of requests per page.
    #[arg(long, default_value_t = 60)]
    page_seconds: u64,
    /// `dashboard` mode: connections to `/live?view=alerts`, one after the other.
    #[arg(long, default_value_t = 20)]
    live_connects: usize,
    /// `dashboard` mode: the `admin` user's password (`TELLIFY_BOOTSTRAP_PASSWORD` of the
    /// server), to measure `/admin`; without it that page is skipped.
    #[arg(long, env = "TELLIFY_BENCH_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
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
    Fanout,
    SpoolReplay,
    AmIngest,
    Dashboard,
    Storm,
    StormUsers,
    StormSingle,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Batched => "batched",
            Mode::Single => "single",
            Mode::Latency => "latency",
            Mode::Notify => "notify",
            Mode::NotifyLatency => "notify-latency",
            Mode::Fanout => "fanout",
            Mode::SpoolReplay => "spool-replay",
            Mode::AmIngest => "am-ingest",
            Mode::Dashboard => "dashboard",
            Mode::Storm => "storm",
            Mode::StormUsers => "storm-users",
            Mode::StormSingle => "storm-single",
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
    let per_user = args
        .modes
        .iter()
        .any(|mode| matches!(mode, Mode::Notify | Mode::NotifyLatency));
    let fan_out = args.modes.contains(&Mode::Fanout);
    let notify = if per_user || fan_out {
        let sink = Sink::start().await?;
        say(format!("sink     listening on {}", sink.base));
        let sizes = fanout_sizes(&args);
        let mut users = if per_user { args.users } else { 0 };
        let mut subscriptions = Vec::new();
        if per_user {
            subscriptions.push(SetupStep::Subscriptions);
        }
        if fan_out {
            users = users.max(sizes.last().copied().unwrap_or(0));
            subscriptions.push(SetupStep::FanoutSubscriptions);
        }
        let setup =
            ensure_notify_users(&client, &target, &sink.base, users, &subscriptions, &sizes)
                .await?;
        say(setup.summary_line());
        if setup.failed > 0 {
            bail!("notify setup failed for {} users", setup.failed);
        }
        Some((sink, setup))
    } else {
        None
    };
    let storm_sink = if args
        .modes
        .iter()
        .any(|mode| matches!(mode, Mode::Storm | Mode::StormUsers | Mode::StormSingle))
    {
        let sink = Sink::start().await?;
        say(format!("sink     listening on {} (storm)", sink.base));
        Some(sink)
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
            (Mode::Fanout, Some((sink, _))) => {
                let report = run_fanout(&client, &target, sink, &args).await?;
                (report.summary_line(), report.to_json())
            }
            (Mode::Notify | Mode::NotifyLatency | Mode::Fanout, None) => {
                bail!("notify setup missing")
            }
            (Mode::AmIngest, _) => {
                let report = run_am_ingest(&client, &target, &args).await?;
                (report.summary_line(), report.to_json())
            }
            (Mode::Dashboard, _) => {
                let report = run_dashboard(&client, &target, &args).await?;
                (report.summary_line(), report.to_json())
            }
            (Mode::Storm | Mode::StormUsers | Mode::StormSingle, _) => {
                let Some(sink) = &storm_sink else {
                    bail!("storm sink missing");
                };
                let report = run_storm(&client, &target, sink, *mode, &args).await?;
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

/// A prefix that keeps `n` (and so group keys) unique across runs against one server.
fn run_prefix(mode: Mode) -> String {
    format!(
        "{}-{}-{}",
        mode.name(),
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    )
}
