//! Tokens: the bootstrap token's strength, expiry (moved past with the injected clock),
//! what an ingest-only token may call, and the limit on failed authentication.

use std::sync::Arc;

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tellify::clock::ManualClock;
use tellify::config::Settings;

use crate::helpers::{problem, spawn_app, spawn_app_with, TestApp};

async fn create_token(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    let response = app.post(token, "/api/v1/tokens", body).await;
    let status = response.status();
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn a_weak_bootstrap_token_stops_the_start_and_leaves_nothing_behind() {
    let data = tempfile::tempdir().expect("temp dir");
    let settings = Settings {
        listen: "127.0.0.1:0".parse().expect("address"),
        data: data.path().to_path_buf(),
        ..Settings::default()
    };
    let clock = Arc::new(ManualClock::new(
        "2026-11-23T09:00:00Z".parse().expect("time"),
    ));
    for weak in [
        "x",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "tfy_short_token",
    ] {
        let error =
            match tellify::app::start(settings.clone(), clock.clone(), Some(weak.into())).await {
                Ok(_) => panic!("`{weak}` was accepted as the bootstrap token"),
                Err(error) => format!("{error:#}"),
            };
        assert!(
            error.contains("TELLIFY_BOOTSTRAP_TOKEN: must be at least 24 characters with at least 10 different ones"),
            "{error}"
        );
        assert!(
            !error.contains(weak),
            "the message never shows the token: {error}"
        );
    }
    // Nothing was written, so a strong token works on the next start.
    let strong = "tfy_bootstrap_0123456789abcdef";
    let app = tellify::app::start(settings, clock, Some(strong.into()))
        .await
        .expect("a strong token starts");
    let me: Value = reqwest::Client::new()
        .get(format!("http://{}/api/v1/users/me", app.address))
        .bearer_auth(strong)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(me["scope"], "admin");
    app.stop().await.expect("stops");
}

#[tokio::test]
async fn a_token_expires_and_its_expiry_is_listed() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    for bad in ["30s", "1826d", "70000000h", "soon"] {
        let response = app
            .post(
                &ann,
                "/api/v1/tokens",
                json!({"name": "ci", "expires": bad}),
            )
            .await;
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(body["errors"][0]["path"], "expires", "{body}");
        assert!(
            body["detail"]
                .as_str()
                .expect("detail")
                .contains("expires: must be a duration from 1m to 1825d"),
            "{body}"
        );
    }

    let (status, created) = create_token(
        &app,
        &ann,
        json!({"name": "ci", "scopes": ["user"], "expires": "90d"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["expires"], "2027-02-21T09:00:00Z");
    let expiring = created["token"].as_str().expect("token").to_string();
    let listed = app.get_json(&ann, "/api/v1/tokens").await;
    let expiries: Vec<&Value> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|token| &token["expires"])
        .collect();
    assert_eq!(
        expiries,
        vec![&Value::Null, &json!("2027-02-21T09:00:00Z")],
        "{listed}"
    );

    // A token made by an expiring token ends with it, and cannot outlive it.
    let (status, child) = create_token(&app, &expiring, json!({"name": "child"})).await;
    assert_eq!(status, StatusCode::CREATED, "{child}");
    assert_eq!(child["expires"], "2027-02-21T09:00:00Z");
    let (status, refused) = create_token(
        &app,
        &expiring,
        json!({"name": "longer", "expires": "100d"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["errors"][0]["path"], "expires");

    assert_eq!(
        app.get(&expiring, "/api/v1/alerts").await.status(),
        StatusCode::OK
    );
    app.advance(SignedDuration::from_hours(90 * 24 - 1)).await;
    assert_eq!(
        app.get(&expiring, "/api/v1/alerts").await.status(),
        StatusCode::OK,
        "an hour before its end"
    );
    app.advance(SignedDuration::from_hours(1)).await;
    let (status, body) = problem(app.get(&expiring, "/api/v1/alerts").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["detail"], "token expired");
    let child = child["token"].as_str().expect("token");
    let (status, body) = problem(app.get(child, "/api/v1/alerts").await).await;
    assert_eq!(
        (status, &body["detail"]),
        (StatusCode::UNAUTHORIZED, &json!("token expired"))
    );
    assert_eq!(
        app.get(&ann, "/api/v1/alerts").await.status(),
        StatusCode::OK,
        "a token without expiry works on"
    );
}

#[tokio::test]
async fn an_ingest_token_may_only_ingest() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let (status, created) =
        create_token(&app, &ann, json!({"name": "farm", "scopes": ["ingest"]})).await;
    assert_eq!(status, StatusCode::CREATED);
    let ingest = created["token"].as_str().expect("token").to_string();

    // Its user's email (and everything else) is out of reach.
    for path in [
        "/api/v1/users/me",
        "/api/v1/users",
        "/api/v1/users/ann",
        "/api/v1/tokens",
        "/api/v1/events",
        "/api/v1/event-types",
        "/api/v1/event-types/disk",
        "/api/v1/alerts",
        "/api/v1/subscriptions",
        "/api/v1/contact-points",
        "/api/v1/policies",
        "/api/v1/silences",
        "/api/v1/deliveries",
        "/api/v1/groups",
        "/api/v1/audit",
        "/api/v1/handler-kinds",
        "/api/v1/stream",
        "/api/v2/status",
        "/api/v2/alerts",
        "/api/v2/silences",
    ] {
        let response = app.get(&ingest, path).await;
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "GET {path}: {body}");
        let detail = body["detail"].as_str().expect("detail");
        assert!(detail.contains("may only send events"), "{detail}");
        assert!(!detail.contains("ann@example.com"));
    }
    for (path, body) in [
        (
            "/api/v1/tokens",
            json!({"name": "more", "scopes": ["ingest"]}),
        ),
        (
            "/api/v1/subscriptions",
            json!({"kind": "count", "title": "x", "params": {}}),
        ),
        ("/api/v1/silences", json!({"filter": "true", "ends": "1h"})),
        ("/api/v1/alerts/nope/ack", json!({"expires": "1h"})),
        ("/api/v2/silences", json!({})),
    ] {
        let (status, answer) = problem(app.post(&ingest, path, body).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "POST {path}: {answer}");
    }

    // The ingest routes take it.
    assert_eq!(
        app.post_raw(&ingest, "/api/v1/events", "text/plain", "ok:1")
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let alert = json!([{"labels": {"alertname": "Down"}, "annotations": {}}]);
    assert_eq!(
        app.post(&ingest, "/api/v2/alerts", alert).await.status(),
        StatusCode::OK
    );
    let alerta = app
        .client
        .post(app.url("/alerta/api/alert"))
        .header("authorization", format!("Key {ingest}"))
        .json(&json!({"resource": "web01", "event": "HttpError", "environment": "Production", "severity": "major"}))
        .send()
        .await
        .expect("request");
    assert_eq!(alerta.status(), StatusCode::OK);
    let heartbeat = app
        .client
        .post(app.url("/alerta/api/heartbeat"))
        .header("authorization", format!("Key {ingest}"))
        .json(&json!({"origin": "cron/web01"}))
        .send()
        .await
        .expect("request");
    assert_eq!(heartbeat.status(), StatusCode::OK);
}

#[tokio::test]
async fn failed_authentication_is_limited_per_address_until_the_window_ends() {
    let app = spawn_app_with(|settings| {
        settings.auth.max_failures = 20;
        settings.auth.failure_window_secs = 60;
    })
    .await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for attempt in 0..30 {
        let response = app
            .get(&format!("tfy_wrong_{attempt:02}"), "/api/v1/alerts")
            .await;
        statuses.push(response.status().as_u16());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            let (_, body) = problem(response).await;
            let detail = body["detail"].as_str().expect("detail");
            assert!(
                detail.contains("too many failed authentications"),
                "{detail}"
            );
            assert!(!detail.contains("tfy_wrong"), "no secret in the answer");
        }
    }
    assert_eq!(statuses[..20], [401; 20]);
    assert_eq!(statuses[20..], [429; 10]);
    assert_eq!(retry_after, Some(60), "the clock has not moved");

    // The limit holds for the address whatever the token: the right one waits too, and
    // its check costs no lookup.
    let response = app.get(&app.admin, "/api/v1/alerts").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // The Alerta API counts against the same limit.
    let alerta = app
        .client
        .post(app.url("/alerta/api/alert"))
        .header("authorization", format!("Key {}", app.admin))
        .json(&json!({"resource": "r", "event": "e"}))
        .send()
        .await
        .expect("request");
    assert_eq!(alerta.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(alerta.headers().contains_key("retry-after"));

    app.advance(SignedDuration::from_secs(45)).await;
    let response = app.get("tfy_wrong", "/api/v1/alerts").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok()),
        Some("15")
    );

    // When the window ends, the address starts afresh.
    app.advance(SignedDuration::from_secs(15)).await;
    assert_eq!(
        app.get(&app.admin, "/api/v1/alerts").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get("tfy_wrong", "/api/v1/alerts").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A missing header is no guess at a token and does not count.
    for _ in 0..30 {
        let response = app
            .client
            .get(app.url("/api/v1/alerts"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        app.get(&app.admin, "/api/v1/alerts").await.status(),
        StatusCode::OK
    );
}
