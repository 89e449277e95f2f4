//! `metric` subscriptions end to end: the poller queries a local flaky engine (HTTP 500
//! on every 7th call, 50 ms answers otherwise) and a fake Prometheus, appends the results,
//! and the worker turns them into alerts. Time is the manual clock: each step moves it by
//! one interval and wakes the poller, so every step is exactly one poll.

#[allow(dead_code)]
use crate::helpers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use helpers::{spawn_app_with, TestApp};
use jiff::SignedDuration;
use serde_json::{json, Value};

/// What the fake backends answer; the test changes it between polls.
#[derive(Default)]
struct Backend {
    /// The http-json engine's value for the target `load`.
    value: f64,
    /// The fake Prometheus' series: `instance` label → value text.
    series: Vec<(String, String)>,
    /// Every call so far; every 7th answers 500.
    calls: u64,
    failed: u64,
    /// Every call fails (a backend that is down).
    down: bool,
}

type Shared = Arc<Mutex<Backend>>;

/// Counts the call and decides its fate: `Err` for a 500, else after a short delay.
async fn answer(backend: &Shared) -> Result<(), StatusCode> {
    let fail = {
        let mut state = backend.lock().unwrap();
        state.calls += 1;
        let fail = state.down || state.calls.is_multiple_of(7);
        if fail {
            state.failed += 1;
        }
        fail
    };
    if fail {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

async fn engine_query(
    State(backend): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, StatusCode> {
    if query.get("target").map(String::as_str) != Some("load") {
        return Err(StatusCode::BAD_REQUEST);
    }
    answer(&backend).await?;
    let value = backend.lock().unwrap().value;
    Ok(Json(json!({"value": value})))
}

async fn prometheus_query(
    State(backend): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, StatusCode> {
    if query.get("query").map(String::as_str) != Some("node_load1") {
        return Err(StatusCode::BAD_REQUEST);
    }
    answer(&backend).await?;
    let result: Vec<Value> = backend
        .lock()
        .unwrap()
        .series
        .iter()
        .map(|(instance, value)| {
            json!({"metric": {"__name__": "node_load1", "instance": instance, "job": "node"},
                   "value": [1_700_000_000.5, value]})
        })
        .collect();
    Ok(Json(
        json!({"status": "success", "data": {"resultType": "vector", "result": result}}),
    ))
}

/// Serves both backends on a free port; returns the base URL.
async fn spawn_backend(backend: Shared) -> String {
    let router = Router::new()
        .route("/query", get(engine_query))
        .route("/api/v1/query", get(prometheus_query))
        .with_state(backend);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
}

async fn spawn() -> TestApp {
    spawn_app_with(|settings| {
        settings.pollers.backoff_initial_ms = 5;
        settings.pollers.retries = 3;
        settings.pollers.timeout_secs = 5;
    })
    .await
}

/// Moves time by one interval (a minute), lets exactly one poll of each key run and
/// waits until the worker has processed its results.
async fn poll_once(app: &TestApp, polls_per_step: u64) {
    let poller = &app.app.poller;
    let before = poller.completed();
    app.advance(SignedDuration::from_secs(60)).await;
    poller.wake();
    tokio::time::timeout(
        Duration::from_secs(10),
        poller.wait_for(before + polls_per_step),
    )
    .await
    .expect("the poll finishes");
    app.settle().await;
    assert_eq!(
        poller.completed(),
        before + polls_per_step,
        "one poll per key and interval"
    );
}

async fn alert_of(app: &TestApp, subscription: &str, group_key: &str) -> Option<Value> {
    let alerts = app
        .alerts(
            &app.admin,
            &format!("subscription={subscription}&state=all"),
        )
        .await;
    let alert = alerts
        .into_iter()
        .find(|alert| alert["group_key"] == group_key)?;
    let id = alert["id"].as_str().unwrap().to_string();
    Some(
        app.get_json(&app.admin, &format!("/api/v1/alerts/{id}"))
            .await,
    )
}

/// The alert's state as `state/severity: message`, or `none`.
async fn shown(app: &TestApp, subscription: &str, group_key: &str) -> String {
    match alert_of(app, subscription, group_key).await {
        Some(alert) => format!(
            "{}/{}: {}",
            alert["state"].as_str().unwrap(),
            alert["severity"].as_str().unwrap(),
            alert["message"].as_str().unwrap()
        ),
        None => "none".to_string(),
    }
}

fn actions(alert: &Value) -> Vec<String> {
    alert["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap().to_string())
        .collect()
}

fn metric_params(url: &str, backend: &str, query: &str, warn: f64, critical: f64) -> Value {
    json!({
        "backend": backend, "url": url, "query": query,
        "interval": "1m", "unknown_after": 3,
        "warn": {"value": warn, "message": "load is high"},
        "critical": {"value": critical, "message": "load is critical"},
    })
}

#[tokio::test]
async fn a_flaky_engine_gives_every_transition_once_and_no_false_resolve() {
    let backend: Shared = Arc::default();
    let url = spawn_backend(backend.clone()).await;
    let app = spawn().await;
    let subscription = app
        .subscribe(
            &app.admin,
            json!({"kind": "metric", "title": "load",
                   "params": metric_params(&url, "http-json", "load", 5.0, 10.0)}),
        )
        .await;
    // The same query with other levels shares the poll and never fires.
    let calm = app
        .subscribe(
            &app.admin,
            json!({"kind": "metric", "title": "calm",
                   "params": metric_params(&format!("{url}/"), "http-json", "load", 100.0, 200.0)}),
        )
        .await;

    // (value, or None for "the engine is down"; what the alert shows afterwards)
    let timeline: Vec<(Option<f64>, &str)> = vec![
        (Some(1.0), "none"),
        (Some(5.0), "none"), // warn itself is OK
        (Some(7.0), "firing/warning: load is high"),
        (Some(10.0), "firing/warning: load is high"), // critical itself is WARN
        (Some(12.0), "firing/critical: load is critical"),
        (Some(7.0), "firing/warning: load is high"),
        (Some(3.0), "resolved/warning: load is high"),
        (Some(2.0), "resolved/warning: load is high"),
        (Some(12.0), "firing/critical: load is critical"),
        // Down: two failed polls change nothing, the third makes it unknown.
        (None, "firing/critical: load is critical"),
        (None, "firing/critical: load is critical"),
        (None, "firing/warning: unknown: http 500"),
        (None, "firing/warning: unknown: http 500"),
        (Some(12.0), "firing/critical: load is critical"),
        (Some(0.5), "resolved/critical: load is critical"),
    ];
    for (step, (value, expected)) in timeline.iter().enumerate() {
        {
            let mut state = backend.lock().unwrap();
            match value {
                Some(value) => {
                    state.down = false;
                    state.value = *value;
                }
                None => state.down = true,
            }
        }
        poll_once(&app, 1).await;
        let found = shown(&app, &subscription, "").await;
        // A resolved alert keeps its last severity and message; compare the state only.
        if expected.starts_with("resolved") {
            assert!(found.starts_with("resolved/"), "step {step}: {found}");
        } else {
            assert_eq!(found, *expected, "step {step}");
        }
    }
    let alert = alert_of(&app, &subscription, "").await.unwrap();
    assert_eq!(
        actions(&alert),
        [
            "fired",
            "severity_raised",
            "severity_lowered",
            "resolved",
            "fired",            // fired again, at critical
            "severity_lowered", // unknown is a warning
            "severity_raised",
            "resolved",
        ],
        "{alert}"
    );
    let last = alert["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["detail"]["message"],
        "value 0.5 is back at or below warn"
    );
    // The calm subscription never crossed its levels, but the outage concerned it too.
    let calm = alert_of(&app, &calm, "").await.unwrap();
    assert_eq!(actions(&calm), ["fired", "resolved"], "{calm}");
    assert_eq!(calm["history"][0]["detail"]["message"], "unknown: http 500");
    // The every-7th-call failures happened and were absorbed by retries.
    let state = backend.lock().unwrap();
    let down_calls = 4 * 4; // four polls while down, four attempts each
    assert!(
        state.failed > down_calls,
        "failures outside the outage: {} of {} calls",
        state.failed,
        state.calls
    );
}

#[tokio::test]
async fn unknown_after_consecutive_failures_from_ok_and_recovery() {
    let backend: Shared = Arc::default();
    let url = spawn_backend(backend.clone()).await;
    let app = spawn().await;
    let subscription = app
        .subscribe(
            &app.admin,
            json!({"kind": "metric", "title": "load",
                   "params": metric_params(&url, "http-json", "load", 5.0, 10.0)}),
        )
        .await;
    backend.lock().unwrap().value = 1.0;
    poll_once(&app, 1).await;
    backend.lock().unwrap().down = true;
    poll_once(&app, 1).await;
    poll_once(&app, 1).await;
    assert_eq!(shown(&app, &subscription, "").await, "none");
    poll_once(&app, 1).await;
    let alert = alert_of(&app, &subscription, "").await.unwrap();
    assert_eq!(alert["state"], "firing");
    assert_eq!(alert["fields"]["state"], "unknown");
    assert_eq!(alert["fields"]["failures"], 3);
    assert_eq!(alert["message"], "unknown: http 500");
    // The failed polls are in the event log, marked as such.
    let events = app
        .get_json(
            &app.admin,
            "/api/v1/events?filter=event.type%20%3D%3D%20%22tellify.metric%22%20%26%26%20ok%20%3D%3D%20false",
        )
        .await;
    assert_eq!(events["items"].as_array().unwrap().len(), 3, "{events}");
    {
        let mut state = backend.lock().unwrap();
        state.down = false;
        state.value = 2.0;
    }
    poll_once(&app, 1).await;
    let alert = alert_of(&app, &subscription, "").await.unwrap();
    assert_eq!(alert["state"], "resolved");
    assert_eq!(actions(&alert), ["fired", "resolved"]);
}

#[tokio::test]
async fn prometheus_series_alert_apart_and_repeat_while_not_ok() {
    let backend: Shared = Arc::default();
    let url = spawn_backend(backend.clone()).await;
    let app = spawn().await;
    let mut params = metric_params(&url, "prometheus", "node_load1", 5.0, 10.0);
    params["repeat_interval"] = json!("2m");
    let subscription = app
        .subscribe(
            &app.admin,
            json!({"kind": "metric", "title": "node load", "params": params}),
        )
        .await;
    let set = |a: &str, b: &str| {
        backend.lock().unwrap().series = vec![("a".into(), a.into()), ("b".into(), b.into())];
    };
    // Group keys are every label, sorted, the metric name too.
    let (a, b) = (
        "__name__=node_load1 instance=a job=node",
        "__name__=node_load1 instance=b job=node",
    );
    set("7", "1");
    poll_once(&app, 1).await;
    assert_eq!(
        shown(&app, &subscription, a).await,
        "firing/warning: load is high"
    );
    assert_eq!(shown(&app, &subscription, b).await, "none");
    // NaN in b fails b only; a is still known and warning.
    set("7", "NaN");
    poll_once(&app, 1).await;
    assert_eq!(shown(&app, &subscription, b).await, "none");
    set("1", "+Inf");
    poll_once(&app, 1).await;
    assert!(shown(&app, &subscription, a).await.starts_with("resolved/"));
    assert_eq!(
        shown(&app, &subscription, b).await,
        "firing/critical: load is critical"
    );
    let fired_count = alert_of(&app, &subscription, b).await.unwrap()["count"].clone();
    assert_eq!(fired_count, 1);
    // Still critical for two more minutes: one re-fire, counted, not a new transition.
    set("1", "50");
    poll_once(&app, 1).await;
    poll_once(&app, 1).await;
    let alert = alert_of(&app, &subscription, b).await.unwrap();
    assert_eq!(alert["count"], 2, "{alert}");
    assert_eq!(actions(&alert), ["fired"]);
    assert_eq!(alert["fields"]["instance"], "b");
    let alert = alert_of(&app, &subscription, a).await.unwrap();
    assert_eq!(actions(&alert), ["fired", "resolved"]);
}

// ---------------------------------------------------------------------------------------------
// What a poll may show and read

const FAILED_POLLS: &str =
    "/api/v1/events?filter=event.type%20%3D%3D%20%22tellify.metric%22%20%26%26%20ok%20%3D%3D%20false";

/// A backend answering every path with `status` and `body`; counts its calls.
async fn spawn_answering(
    status: StatusCode,
    body: impl Fn() -> axum::body::Body + Clone + Send + Sync + 'static,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let router = Router::new().fallback(move || {
        let body = body.clone();
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (status, body())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}"), calls)
}

#[tokio::test]
async fn a_failed_poll_is_recorded_without_the_backends_text() {
    let (engine, _) = spawn_answering(StatusCode::INTERNAL_SERVER_ERROR, || {
        axum::body::Body::from("internal page: password=SECRET-ENGINE-TEXT")
    })
    .await;
    let (prometheus, _) = spawn_answering(StatusCode::BAD_REQUEST, || {
        axum::body::Body::from(
            r#"{"status":"error","errorType":"bad_data","error":"SECRET-PROMETHEUS-TEXT"}"#,
        )
    })
    .await;
    let app = spawn().await;
    let ann = app.user("ann").await;
    app.subscribe(
        &ann,
        json!({"kind": "metric", "title": "engine",
               "params": metric_params(&engine, "http-json", "load", 5.0, 10.0)}),
    )
    .await;
    app.subscribe(
        &ann,
        json!({"kind": "metric", "title": "prometheus",
               "params": metric_params(&prometheus, "prometheus", "up", 5.0, 10.0)}),
    )
    .await;
    poll_once(&app, 2).await;

    let events = app.get_json(&app.admin, FAILED_POLLS).await;
    let text = events.to_string();
    assert_eq!(events["items"].as_array().unwrap().len(), 2, "{events}");
    assert!(text.contains("http 500"), "{text}");
    assert!(text.contains("http 400 (prometheus bad_data)"), "{text}");
    assert!(!text.contains("SECRET"), "{text}");
}

#[tokio::test]
async fn an_answer_larger_than_the_cap_fails_the_poll() {
    // 64 MiB in 64 KiB chunks, without a length: the poller must stop reading by itself.
    let (engine, _) = spawn_answering(StatusCode::OK, || {
        let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
        let chunks = std::iter::repeat_n(chunk, 1024).map(Ok::<_, std::io::Error>);
        axum::body::Body::from_stream(futures_util::stream::iter(chunks))
    })
    .await;
    let app = spawn().await;
    app.subscribe(
        &app.admin,
        json!({"kind": "metric", "title": "huge",
               "params": metric_params(&engine, "http-json", "load", 5.0, 10.0)}),
    )
    .await;
    poll_once(&app, 1).await;
    let events = app.get_json(&app.admin, FAILED_POLLS).await;
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{events}");
    assert_eq!(
        items[0]["fields"]["error"], "answer larger than 1048576 bytes",
        "{events}"
    );
    // A failure that waiting cannot mend is not retried.
    assert_eq!(items[0]["fields"]["attempts"], 1, "{events}");
}

#[tokio::test]
async fn a_backend_name_that_resolves_to_loopback_is_refused_at_poll_time() {
    let (engine, calls) =
        spawn_answering(StatusCode::OK, || axum::body::Body::from(r#"{"value": 1}"#)).await;
    let by_name = engine.replace("127.0.0.1", "localhost");
    let app = spawn_app_with(|settings| {
        settings.outbound.allow.clear();
        settings.pollers.backoff_initial_ms = 5;
        settings.pollers.timeout_secs = 5;
    })
    .await;
    app.subscribe(
        &app.admin,
        json!({"kind": "metric", "title": "inside",
               "params": metric_params(&by_name, "http-json", "load", 5.0, 10.0)}),
    )
    .await;
    poll_once(&app, 1).await;
    let events = app.get_json(&app.admin, FAILED_POLLS).await;
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{events}");
    let error = items[0]["fields"]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("refused: localhost ("), "{error}");
    assert!(error.contains("is a loopback address"), "{error}");
    assert_eq!(items[0]["fields"]["attempts"], 1, "{events}");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// The value of an unlabelled counter in `/metrics` text (0 while it was never counted).
async fn counter(app: &TestApp, name: &str) -> u64 {
    let text = app.metrics().await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|value| value.trim().parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}

#[tokio::test]
async fn a_poll_result_reaches_the_live_stream_and_the_ingest_metrics() {
    let backend: Shared = Arc::default();
    backend.lock().unwrap().value = 7.5;
    let url = spawn_backend(backend.clone()).await;
    let app = spawn().await;
    app.subscribe(
        &app.admin,
        json!({"kind": "metric", "title": "load",
               "params": metric_params(&url, "http-json", "load", 5.0, 10.0)}),
    )
    .await;
    let mut stream = crate::api::stream::open(&app, &app.admin, "").await;
    let ingested_before = counter(&app, "tellify_events_ingested_total").await;

    poll_once(&app, 1).await;

    let mut seen = String::new();
    crate::api::stream::read_until(&mut stream, &mut seen, "\"poll_key\"").await;
    assert!(seen.contains("event: event"), "{seen}");
    assert!(seen.contains("tellify.metric"), "{seen}");
    assert!(seen.contains("\"value\":7.5"), "the poll's reading: {seen}");
    // Each test runs in its own process under nextest, so only this app counts here.
    let ingested_after = counter(&app, "tellify_events_ingested_total").await;
    assert!(
        ingested_after > ingested_before,
        "the poll result is counted as ingested: {ingested_before} -> {ingested_after}"
    );
}
