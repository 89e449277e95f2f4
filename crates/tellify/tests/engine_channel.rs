//! The HTTP JSON engine from both sides: its `GET /alerts` definitions imported as
//! `metric` subscriptions, and the `engine` contact point calling its `POST /notify` and
//! `POST /resolve`. A local fake engine records every call; time is the manual clock.

#[allow(dead_code)]
use crate::helpers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use helpers::{eventually, problem, spawn_app_with, TestApp};
use jiff::SignedDuration;
use serde_json::{json, Value};
use tellify::channels::{Channel, ChannelError, ContactKind, ContactTarget, EngineChannel};
use tellify::channels::{OutgoingMessage, SmsSettings, SmtpSettings};

/// What the fake engine publishes and what it was told.
#[derive(Default)]
struct Engine {
    definitions: Vec<Value>,
    /// `target` → value for `GET /query`.
    values: HashMap<String, f64>,
    /// Every `/notify` and `/resolve` call: (endpoint, body, Idempotency-Key).
    calls: Vec<(String, Value, String)>,
    /// What `/notify` and `/resolve` answer.
    status: Option<StatusCode>,
}

type Shared = Arc<Mutex<Engine>>;

async fn list_alerts(State(engine): State<Shared>) -> Json<Value> {
    Json(Value::Array(engine.lock().unwrap().definitions.clone()))
}

async fn query(
    State(engine): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, StatusCode> {
    let target = query.get("target").ok_or(StatusCode::BAD_REQUEST)?;
    let value = engine.lock().unwrap().values.get(target).copied();
    let value = value.ok_or(StatusCode::NOT_FOUND)?;
    Ok(Json(json!({"value": value})))
}

fn record(engine: &Shared, endpoint: &str, headers: &HeaderMap, body: Value) -> StatusCode {
    let mut engine = engine.lock().unwrap();
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    engine.calls.push((endpoint.to_string(), body, key));
    engine.status.unwrap_or(StatusCode::OK)
}

async fn notify(
    State(engine): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    record(&engine, "notify", &headers, body)
}

async fn resolve(
    State(engine): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    record(&engine, "resolve", &headers, body)
}

/// Serves the fake engine under `prefix` on a free port; returns its base URL.
async fn spawn_engine(engine: Shared, prefix: &str) -> String {
    let routes = Router::new()
        .route("/alerts", get(list_alerts))
        .route("/query", get(query))
        .route("/notify", post(notify))
        .route("/resolve", post(resolve))
        .with_state(engine);
    let router = if prefix.is_empty() {
        routes
    } else {
        Router::new().nest(prefix, routes)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}{prefix}")
}

fn definition(name: &str, query: &str, warn: Value, critical: f64) -> Value {
    json!({
        "name": name, "query": query, "intervalSecs": 60, "repeatIntervalSecs": 3600,
        "warn": {"value": warn, "message": format!("{name} is high")},
        "critical": {"value": critical, "message": format!("{name} is critical")},
    })
}

fn three_definitions() -> Vec<Value> {
    vec![
        definition("queue depth", "queue.depth", json!(100), 1000.0),
        definition("error rate", "errors.rate", json!(0.05), 0.2),
        json!({
            "name": "disk usage", "query": "disk.used", "intervalSecs": 30,
            "warn": {"value": 80, "message": "disk usage is high"},
            "critical": {"value": 95, "message": "disk usage is critical"},
        }),
    ]
}

async fn spawn() -> TestApp {
    spawn_app_with(|settings| {
        settings.pollers.backoff_initial_ms = 5;
        settings.pollers.timeout_secs = 5;
        settings.notify.backoff_initial_ms = 50;
    })
    .await
}

async fn import(app: &TestApp, token: &str, url: &str) -> reqwest::Response {
    app.post(
        token,
        "/api/v1/subscriptions/import",
        json!({"backend": "http-json", "url": url}),
    )
    .await
}

async fn subscriptions(app: &TestApp, token: &str) -> Vec<Value> {
    let page = app.get_json(token, "/api/v1/subscriptions").await;
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn import_creates_metric_subscriptions_and_a_second_import_updates_them() {
    let engine: Shared = Arc::default();
    engine.lock().unwrap().definitions = three_definitions();
    let url = spawn_engine(engine.clone(), "").await;
    let app = spawn().await;
    let ann = app.user("ann").await;

    let response = import(&app, &ann, &format!("{url}/")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let first: Value = response.json().await.unwrap();
    assert_eq!(first["created"], 3, "{first}");
    assert_eq!(first["updated"], 0, "{first}");
    let ids = first["subscriptions"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 3);

    let queue = app
        .get_json(
            &ann,
            &format!("/api/v1/subscriptions/{}", ids[0].as_str().unwrap()),
        )
        .await;
    assert_eq!(queue["kind"], "metric");
    assert_eq!(queue["title"], "queue depth");
    assert_eq!(queue["owner"], "ann");
    assert_eq!(
        queue["params"],
        json!({
            "backend": "http-json", "url": url, "query": "queue.depth",
            "interval": "60s", "repeat_interval": "3600s",
            "warn": {"value": 100, "message": "queue depth is high"},
            "critical": {"value": 1000.0, "message": "queue depth is critical"},
        })
    );
    let disk = app
        .get_json(
            &ann,
            &format!("/api/v1/subscriptions/{}", ids[2].as_str().unwrap()),
        )
        .await;
    assert_eq!(disk["params"]["interval"], "30s");
    assert!(disk["params"].get("repeat_interval").is_none(), "{disk}");

    // The engine raises a level; importing again updates in place and adds nothing.
    engine.lock().unwrap().definitions[0] =
        definition("queue depth", "queue.depth", json!(500), 5000.0);
    let response = import(&app, &ann, &url).await;
    assert_eq!(response.status(), StatusCode::OK);
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["created"], 0, "{second}");
    assert_eq!(second["updated"], 3, "{second}");
    assert_eq!(second["subscriptions"].as_array().unwrap(), &ids);
    let listed = subscriptions(&app, &ann).await;
    assert_eq!(listed.len(), 3, "no duplicates: {listed:?}");
    let queue = app
        .get_json(
            &ann,
            &format!("/api/v1/subscriptions/{}", ids[0].as_str().unwrap()),
        )
        .await;
    assert_eq!(queue["params"]["warn"]["value"], 500);

    // Another user's import is theirs alone: it creates, it does not touch ann's.
    let bob = app.user("bob").await;
    let response = import(&app, &bob, &url).await;
    let third: Value = response.json().await.unwrap();
    assert_eq!(third["created"], 3, "{third}");
    assert_eq!(subscriptions(&app, &ann).await.len(), 3);
}

#[tokio::test]
async fn an_invalid_definition_is_reported_with_its_index_and_nothing_is_created() {
    let engine: Shared = Arc::default();
    let mut definitions = three_definitions();
    definitions[1] = definition("error rate", "errors.rate", json!("high"), 0.2);
    definitions[2]["intervalSecs"] = json!(0);
    definitions.push(definition("queue depth", "queue.other", json!(1), 2.0));
    engine.lock().unwrap().definitions = definitions;
    let url = spawn_engine(engine, "").await;
    let app = spawn().await;
    let ann = app.user("ann").await;

    let (status, body) = problem(import(&app, &ann, &url).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "alerts[1].warn.value",
            "alerts[2].intervalSecs",
            "alerts[3].name"
        ],
        "{body}"
    );
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("alerts[1].warn.value: "), "{detail}");
    assert!(detail.contains("also the name of alerts[0]"), "{detail}");
    assert!(
        subscriptions(&app, &ann).await.is_empty(),
        "nothing created"
    );

    // A request that names no engine tellify can poll is refused before any fetch.
    let response = app
        .post(
            &ann,
            "/api/v1/subscriptions/import",
            json!({"backend": "prometheus", "url": "ftp://engine"}),
        )
        .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["backend", "url"], "{body}");
}

#[tokio::test]
async fn an_engine_that_is_down_is_a_bad_gateway_naming_only_its_host() {
    let app = spawn().await;
    let ann = app.user("ann").await;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (status, body) =
        problem(import(&app, &ann, &format!("http://127.0.0.1:{port}/secret-base")).await).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("http://127.0.0.1:{port}")),
        "{detail}"
    );
    assert!(!detail.contains("secret-base"), "{detail}");
}

fn engine_message(alerts: Value) -> OutgoingMessage {
    OutgoingMessage {
        delivery_id: "d-1".to_string(),
        subject: "subject".to_string(),
        text: String::new(),
        html: String::new(),
        chat: String::new(),
        sms: String::new(),
        payload: serde_json::to_vec(&json!({"alerts": alerts}))
            .unwrap()
            .into(),
    }
}

fn engine_target(address: &str) -> ContactTarget {
    ContactTarget {
        kind: ContactKind::Engine,
        name: "engine".to_string(),
        address: address.to_string(),
        secret: None,
    }
}

/// The guard with the test engines' loopback addresses allowed.
fn loopback_guard() -> tellify::outbound::OutboundGuard {
    tellify::outbound::OutboundGuard::new(&tellify::outbound::OutboundSettings {
        allow: vec!["127.0.0.0/8".to_string(), "::1".to_string()],
    })
    .unwrap()
}

fn channel() -> EngineChannel {
    let _ = rustls::crypto::ring::default_provider().install_default();
    EngineChannel::new(loopback_guard().client(Duration::from_secs(5)).unwrap())
}

#[tokio::test]
async fn the_channel_notifies_and_resolves_and_sorts_failures() {
    let engine: Shared = Arc::default();
    let url = spawn_engine(engine.clone(), "/secret-base").await;
    let channels = tellify::channels::Channels::new(
        &SmtpSettings::default(),
        &SmsSettings::default(),
        Duration::from_secs(5),
        &loopback_guard(),
    )
    .unwrap();
    let message = engine_message(json!([
        {"transition": "fired", "title": "queue depth", "message": "queue depth is high", "state": "firing"},
        {"transition": "resolved", "title": "disk usage", "message": "disk usage is high", "state": "resolved"},
    ]));
    let receipt = channels
        .get(ContactKind::Engine)
        .send(&engine_target(&format!("{url}/")), &message)
        .await
        .unwrap();
    assert_eq!(receipt.detail, "2 engine calls answered 2xx");
    let calls = std::mem::take(&mut engine.lock().unwrap().calls);
    assert_eq!(
        calls,
        vec![
            (
                "notify".to_string(),
                json!({"alertName": "queue depth", "message": "queue depth is high"}),
                "d-1.0".to_string()
            ),
            (
                "resolve".to_string(),
                json!({"alertName": "disk usage"}),
                "d-1.1".to_string()
            ),
        ]
    );

    // 5xx and 429 can pass; a 4xx will not; neither error names the path.
    for (status, retryable) in [
        (StatusCode::SERVICE_UNAVAILABLE, true),
        (StatusCode::TOO_MANY_REQUESTS, true),
        (StatusCode::NOT_FOUND, false),
    ] {
        engine.lock().unwrap().status = Some(status);
        let error = channel()
            .send(&engine_target(&url), &message)
            .await
            .unwrap_err();
        assert_eq!(error.is_retryable(), retryable, "{status}: {error}");
        let text = error.to_string();
        assert!(
            text.starts_with("notify 1 of 2: engine endpoint http://127.0.0.1:"),
            "{text}"
        );
        assert!(text.contains(&status.as_u16().to_string()), "{text}");
        assert!(!text.contains("secret-base"), "{text}");
    }
    // The first failure stops the delivery: the resolve was never attempted.
    let calls = engine.lock().unwrap().calls.clone();
    assert!(
        calls.iter().all(|(endpoint, _, _)| endpoint == "notify"),
        "{calls:?}"
    );

    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let error = channel()
        .send(
            &engine_target(&format!("http://127.0.0.1:{port}/secret-base")),
            &message,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, ChannelError::Retryable(_)), "{error}");
    assert!(!error.to_string().contains("secret-base"), "{error}");
}

/// Sets the engine's value, moves time by one interval and waits until exactly one poll
/// ran and its result was processed, then lets the notifier look at the outbox.
async fn poll(app: &TestApp, engine: &Shared, value: f64) {
    engine
        .lock()
        .unwrap()
        .values
        .insert("queue.depth".to_string(), value);
    let poller = &app.app.poller;
    let before = poller.completed();
    app.advance(SignedDuration::from_secs(60)).await;
    poller.wake();
    tokio::time::timeout(Duration::from_secs(10), poller.wait_for(before + 1))
        .await
        .expect("the poll finishes");
    app.settle().await;
    app.app.state.notifier.wake();
}

/// The whole loop: imported definitions are polled, a value above warn fires an alert,
/// and the `engine` contact point tells the engine under the definition's name; the
/// return to OK resolves it there too.
#[tokio::test]
async fn an_imported_definition_that_fires_is_notified_back_to_the_engine_by_name() {
    let engine: Shared = Arc::default();
    {
        let mut state = engine.lock().unwrap();
        state.definitions = vec![definition("queue depth", "queue.depth", json!(100), 1000.0)];
        state.values.insert("queue.depth".to_string(), 10.0);
    }
    let url = spawn_engine(engine.clone(), "").await;
    let app = spawn().await;
    let ann = app.user("ann").await;
    let response = app
        .post(
            &ann,
            "/api/v1/contact-points",
            json!({"name": "engine", "kind": "engine", "address": url}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app
        .client
        .put(app.url("/api/v1/policies/default"))
        .bearer_auth(&ann)
        .json(&json!({"rules": [{"contact_points": ["engine"], "notify_resolved": true}]}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert_eq!(import(&app, &ann, &url).await.status(), StatusCode::OK);

    poll(&app, &engine, 10.0).await;
    poll(&app, &engine, 250.0).await;
    eventually("the notify call", || async {
        (engine.lock().unwrap().calls.len() == 1).then_some(())
    })
    .await;
    poll(&app, &engine, 20.0).await;
    eventually("the resolve call", || async {
        (engine.lock().unwrap().calls.len() == 2).then_some(())
    })
    .await;
    let calls: Vec<(String, Value)> = engine
        .lock()
        .unwrap()
        .calls
        .iter()
        .map(|(endpoint, body, _)| (endpoint.clone(), body.clone()))
        .collect();
    assert_eq!(
        calls,
        vec![
            (
                "notify".to_string(),
                json!({"alertName": "queue depth", "message": "queue depth is high"})
            ),
            ("resolve".to_string(), json!({"alertName": "queue depth"})),
        ]
    );
    // The outcome is committed after the engine answered, so the test may look first.
    eventually("both deliveries marked sent", || async {
        let deliveries = app.get_json(&ann, "/api/v1/deliveries").await;
        let statuses: Vec<String> = deliveries["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|delivery| delivery["status"].as_str().unwrap().to_string())
            .collect();
        (statuses == ["sent", "sent"]).then_some(())
    })
    .await;
}
