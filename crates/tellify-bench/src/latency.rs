//! `latency`: a steady rate of events, each firing an alert with a new group key, timed
//! from the POST to the alert's notice on `GET /api/v1/stream`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{json, Value};
use tellify_client::SseParser;
use tokio::task::JoinSet;

use crate::cpu::{CpuReport, CpuSample};
use crate::drain::wait_for_drain;
use crate::report::{LatencyResult, Percentiles, RunReport};
use crate::target::{create_subscription, subscription_titles, Target};
use crate::{Args, Mode};

/// Title of the subscription the latency run fires.
pub(crate) const LATENCY_TITLE: &str = "latency";

/// How long the latency run waits, after the last send, for alerts still on their way.
pub(crate) const LATENCY_GRACE: Duration = Duration::from_secs(10);

/// Send times of events whose alerts have not been seen yet, and what was seen.
#[derive(Default)]
pub(crate) struct LatencyBook {
    pub(crate) pending: HashMap<String, Instant>,
    pub(crate) seen_ms: Vec<f64>,
    pub(crate) lagged_notices: u64,
}

pub(crate) async fn ensure_latency_subscription(
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

pub(crate) async fn run_latency(
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
pub(crate) async fn listen_for_alerts(
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
        for item in parser.push(&chunk) {
            match item.event.as_str() {
                "ready" => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Ok(()));
                    }
                }
                "alert" => book_alert(&book, &item.data, arrived),
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

pub(crate) fn book_alert(book: &Mutex<LatencyBook>, data: &str, arrived: Instant) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
