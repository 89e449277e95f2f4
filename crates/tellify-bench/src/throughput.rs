//! `batched`, `single` and the load loop of `am-ingest`: pre-built bodies posted as fast
//! as the server answers, over a fixed number of keep-alive connections, for `--duration`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use rand::Rng;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;
use tokio::task::JoinSet;

use crate::alertmanager::alertmanager_batch;
use crate::cpu::{CpuReport, CpuSample};
use crate::drain::wait_for_drain;
use crate::report::{Percentiles, RunReport};
use crate::target::{plain_client, truncate, Target};
use crate::{Args, Mode};

/// Pre-built request bodies, so generating load costs the client as little CPU as
/// possible (it shares the machine with the server).
pub(crate) fn request_bodies(mode: Mode, args: &Args, count: usize) -> Vec<Bytes> {
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
pub(crate) struct ConnectionTally {
    pub(crate) events: u64,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) request_ms: Vec<f64>,
}

pub(crate) async fn run_throughput(
    target: &Target,
    mode: Mode,
    args: &Args,
) -> anyhow::Result<RunReport> {
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
