//! Issue 8's findings 1, 2 and 5, as an attacker with an ordinary user token tried them:
//! durations that overflowed time arithmetic (a crash loop, request panics), and
//! notification intervals without a floor. Each must now be refused with a 422 naming the
//! field and its range, and nothing one user stores may stop the server or its restart.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tellify::clock::{Clock, ManualClock};
use tellify::config::Settings;

use crate::helpers::{problem, spawn_app, spawn_app_with, TestApp};

/// The 422's `errors` as `path: message` lines.
fn error_lines(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e["path"].as_str().unwrap_or(""),
                        e["message"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn refused(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    problem(app.post(token, path, body).await).await
}

#[tokio::test]
async fn durations_that_overflowed_are_refused_with_their_field_and_range() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let cases = [
        (
            json!({"kind": "count", "title": "c", "params": {"window": "175307616h", "limit": 3}}),
            "params.window",
        ),
        (
            json!({"kind": "absence", "title": "a", "params": {"interval": "70000000h"}}),
            "params.interval",
        ),
        (
            json!({"kind": "count", "title": "c", "params": {"window": "40d", "limit": 3}}),
            "params.window",
        ),
        (
            json!({"kind": "metric", "title": "m", "params": {
            "backend": "prometheus", "url": "http://prometheus.example:9090", "query": "up",
            "interval": "1m", "repeat_interval": "175307616h",
            "warn": {"value": 1, "message": "w"}, "critical": {"value": 2, "message": "c"}}}),
            "params.repeat_interval",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = refused(&app, &ann, "/api/v1/subscriptions", body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {problem}"
        );
        let lines = error_lines(&problem);
        assert!(
            lines.iter().any(|line| line.starts_with(field)
                && (line.contains("between") || line.contains("at most"))),
            "{field} named with its range: {lines:?}"
        );
    }
    // The server is alive and the same user can still work.
    let id = app
        .subscribe(
            &ann,
            json!({"kind": "count", "title": "ok", "params": {"window": "10m", "limit": 3}}),
        )
        .await;
    assert!(!id.is_empty());
}

#[tokio::test]
async fn times_that_panicked_requests_answer_with_the_field_named() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    app.subscribe(
        &ann,
        json!({"kind": "match", "title": "all", "params": {"filter": "true"}}),
    )
    .await;
    app.send_lines(&app.admin, "x:1").await;
    let alerts = app.alerts(&ann, "state=firing").await;
    let alert = alerts[0]["id"].as_str().expect("alert id").to_string();

    let (status, body) = refused(
        &app,
        &ann,
        "/api/v1/silences",
        json!({"filter": "true", "ends": "70000000h"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("ends"), "{body}");

    let (status, body) = refused(
        &app,
        &ann,
        "/api/v1/silences",
        json!({"filter": "true", "ends": "9999-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.to_string().contains("366d"),
        "the horizon is named: {body}"
    );

    let (status, body) = refused(
        &app,
        &ann,
        &format!("/api/v1/alerts/{alert}/ack"),
        json!({"expires": "70000000h"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["detail"].as_str().unwrap_or("").contains("expires"),
        "{body}"
    );

    let (status, body) = refused(
        &app,
        &ann,
        &format!("/api/v1/alerts/{alert}/shelve"),
        json!({"until": "70000000h"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["detail"].as_str().unwrap_or("").contains("until"),
        "{body}"
    );

    let (status, body) = problem(app.get(&ann, "/api/v1/events?since=175307616h").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"].as_str().unwrap_or("").contains("since"),
        "{body}"
    );

    // Within range, the same requests work, so the limits are not a blanket refusal.
    let response = app
        .post(
            &ann,
            &format!("/api/v1/alerts/{alert}/ack"),
            json!({"expires": "2h"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app.get(&ann, "/api/v1/events?since=1000d").await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn policy_repeat_and_digest_have_a_floor_that_the_operator_sets() {
    let app = spawn_app_with(|settings| settings.notify.min_repeat = "5m".into()).await;
    let ann = app.user("ann").await;
    let response = app
        .post(
            &ann,
            "/api/v1/contact-points",
            json!({"name": "hook", "kind": "webhook", "address": "https://hooks.example.com/x"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    for (rule, field, range) in [
        (
            json!({"contact_points": ["hook"], "repeat": "1ns"}),
            "rules[0].repeat",
            "between 5m and 31d",
        ),
        (
            json!({"contact_points": ["hook"], "repeat": "2m"}),
            "rules[0].repeat",
            "between 5m and 31d",
        ),
        (
            json!({"contact_points": ["hook"], "mode": {"digest": "1s"}}),
            "rules[0].mode.digest",
            "between 1m and 7d",
        ),
        (
            json!({"contact_points": ["hook"], "mode": {"digest": "30d"}}),
            "rules[0].mode.digest",
            "between 1m and 7d",
        ),
    ] {
        let response = app
            .client
            .put(app.url("/api/v1/policies/default"))
            .bearer_auth(&ann)
            .json(&json!({"rules": [rule]}))
            .send()
            .await
            .expect("request");
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let lines = error_lines(&body);
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with(field) && line.contains(range)),
            "{field} with {range}: {lines:?}"
        );
    }
    let response = app
        .client
        .put(app.url("/api/v1/policies/default"))
        .bearer_auth(&ann)
        .json(&json!({"rules": [{"contact_points": ["hook"], "repeat": "5m", "mode": {"digest": "1m"}}]}))
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success(), "{}", response.status());
}

/// Starts the server on `data` with a manual clock.
async fn start_on(data: &std::path::Path, clock: Arc<ManualClock>) -> tellify::app::RunningApp {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = Settings {
        listen: "127.0.0.1:0".parse().expect("address"),
        data: data.to_path_buf(),
        ..Settings::default()
    };
    tellify::app::start(
        settings,
        clock,
        Some(format!("tfy_admin_{}", tellify_model::new_id())),
    )
    .await
    .expect("app starts")
}

#[tokio::test]
async fn a_stored_subscription_that_cannot_run_is_disabled_with_its_reason_and_restarts_come_up() {
    let data = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(
        "2026-11-23T09:00:00Z".parse().expect("time"),
    ));
    let app = start_on(data.path(), clock.clone()).await;
    let store = app.state.store.clone();
    let admin = store.list_users().await.expect("users")[0].clone();
    // What main accepted before these limits: the window that crashed the worker. Written
    // to the store directly, as an older version would have left it.
    let now = clock.now();
    let bad = tellify_store::Subscription {
        id: tellify_model::new_id(),
        kind: "count".into(),
        title: "crash loop".into(),
        params: json!({"window": "175307616h", "limit": 1}),
        owner_user: admin.id.clone(),
        owner_group: None,
        enabled: true,
        latching: false,
        policy: None,
        created: now,
        updated: now,
        health: None,
        filter_errors: None,
    };
    store
        .insert_subscription(bad.clone())
        .await
        .expect("insert");
    let good = tellify_store::Subscription {
        id: tellify_model::new_id(),
        title: "everything".into(),
        kind: "match".into(),
        params: json!({"filter": "true"}),
        ..bad.clone()
    };
    store
        .insert_subscription(good.clone())
        .await
        .expect("insert");
    app.stop().await.expect("stops");

    // The restart comes up despite the stored subscription, disables it with the reason,
    // and goes on processing for everyone else.
    let app = start_on(data.path(), clock.clone()).await;
    let stored = app
        .state
        .store
        .append_events(vec![tellify_model::StoredEvent::from_input(
            tellify_model::EventInput {
                message: Some("after restart".into()),
                ..Default::default()
            },
            None,
            clock.now(),
            0,
        )])
        .await
        .expect("append");
    app.state.worker.appended(stored[0].seq);
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        app.state.worker.wait_for(stored[0].seq),
    )
    .await
    .expect("the worker keeps processing");
    let bad_now = app
        .state
        .store
        .subscription(&bad.id)
        .await
        .expect("read")
        .expect("still there");
    assert!(!bad_now.enabled, "disabled");
    let health = bad_now.health.expect("health recorded");
    assert!(health.disabled);
    assert!(
        health.last_error.contains("params.window"),
        "{}",
        health.last_error
    );
    let alerts = app
        .state
        .store
        .list_alerts(tellify_store::AlertQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("alerts");
    assert!(
        alerts.iter().any(|alert| alert.subscription_id == good.id),
        "the other subscription fired"
    );
    app.stop().await.expect("stops");
    // And a third start is as quiet.
    let app = start_on(data.path(), clock).await;
    app.stop().await.expect("stops");
}
