//! The outbound guard through the API: user-supplied URLs at internal addresses are refused
//! when written (literal addresses) or when called (names), nothing of what answered is
//! shown, and the operator's allow list opens the guard.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{problem, spawn_app_with, TestApp};
use crate::support::HttpSink;

/// A server whose guard is as it ships: nothing internal allowed.
async fn spawn_guarded() -> TestApp {
    spawn_app_with(|settings| settings.outbound.allow.clear()).await
}

async fn create_contact(
    app: &TestApp,
    token: &str,
    kind: &str,
    address: &str,
) -> reqwest::Response {
    app.post(
        token,
        "/api/v1/contact-points",
        json!({"name": "hook", "kind": kind, "address": address}),
    )
    .await
}

#[tokio::test]
async fn contact_points_at_internal_addresses_are_refused_when_created() {
    let sink = HttpSink::start(StatusCode::OK, "").await;
    let port = sink.address.port();
    let app = spawn_guarded().await;
    let ann = app.user("ann").await;
    let refused = [
        (
            "webhook",
            format!("http://127.0.0.1:{port}/hook"),
            "127.0.0.1 is a loopback address",
        ),
        (
            "webhook",
            format!("http://[::1]:{port}/hook"),
            "::1 is a loopback address",
        ),
        (
            "webhook",
            format!("http://0.0.0.0:{port}/hook"),
            "0.0.0.0 is an unspecified address",
        ),
        (
            "webhook",
            format!("http://2130706433:{port}/hook"),
            "127.0.0.1 is a loopback address",
        ),
        (
            "webhook",
            format!("http://0x7f.1:{port}/hook"),
            "127.0.0.1 is a loopback address",
        ),
        (
            "webhook",
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "cloud metadata",
        ),
        (
            "webhook",
            "http://[fd00:ec2::254]/".to_string(),
            "cloud metadata",
        ),
        (
            "webhook",
            "http://10.1.2.3/hook".to_string(),
            "10.1.2.3 is a private address",
        ),
        (
            "chat",
            "http://192.168.1.1/services/T0/B0/xyz".to_string(),
            "a private address",
        ),
        (
            "engine",
            "http://100.64.0.1:8000".to_string(),
            "carrier-grade nat",
        ),
    ];
    for (kind, address, reason) in refused {
        let (status, body) = problem(create_contact(&app, &ann, kind, &address).await).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{address}: {body}"
        );
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("address: "), "{address}: {detail}");
        assert!(detail.contains(reason), "{address}: {detail}");
        assert!(
            detail.contains("(an operator can allow it with [outbound] allow)"),
            "{detail}"
        );
        assert!(
            !detail.contains("xyz"),
            "the chat path is a secret: {detail}"
        );
    }
    let listed = app.get_json(&ann, "/api/v1/contact-points").await;
    assert_eq!(listed["items"], json!([]), "{listed}");
    assert_eq!(sink.arrivals(), 0);
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_when_called_and_nothing_arrives() {
    let sink = HttpSink::start(StatusCode::OK, "").await;
    let port = sink.address.port();
    let app = spawn_guarded().await;
    let ann = app.user("ann").await;
    let address = format!("http://localhost:{port}/hook");
    let response = create_contact(&app, &ann, "webhook", &address).await;
    assert_eq!(response.status(), StatusCode::CREATED);

    let (status, body) = problem(
        app.post(&ann, "/api/v1/contact-points/hook/test", json!({}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("refused"), "{detail}");
    assert!(detail.contains("localhost ("), "{detail}");
    assert!(detail.contains("is a loopback address"), "{detail}");
    assert_eq!(sink.arrivals(), 0, "the sink was reached");
}

#[tokio::test]
async fn a_test_never_shows_what_the_target_answered() {
    let sink = HttpSink::start(
        StatusCode::INTERNAL_SERVER_ERROR,
        "<html>admin console: api_key=SECRET-OF-THE-INSIDE</html>",
    )
    .await;
    let app = spawn_app_with(|_| {}).await;
    let ann = app.user("ann").await;
    let response = create_contact(&app, &ann, "webhook", &sink.url("/hook")).await;
    assert_eq!(response.status(), StatusCode::CREATED);

    let response = app
        .post(&ann, "/api/v1/contact-points/hook/test", json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let text = response.text().await.expect("body");
    assert!(text.contains("500"), "{text}");
    assert!(!text.contains("SECRET-OF-THE-INSIDE"), "{text}");
    assert!(!text.contains("admin console"), "{text}");
    assert_eq!(sink.arrivals(), 1);
}

#[tokio::test]
async fn metric_subscriptions_and_imports_at_internal_addresses_are_refused() {
    let app = spawn_guarded().await;
    let ann = app.user("ann").await;
    let params = json!({
        "backend": "prometheus", "url": "http://127.0.0.1:9090", "query": "up",
        "interval": "1m",
        "warn": {"value": 1, "message": "w"}, "critical": {"value": 2, "message": "c"},
    });
    let (status, body) = problem(
        app.post(
            &ann,
            "/api/v1/subscriptions",
            json!({"kind": "metric", "title": "up", "params": params}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("params.url: 127.0.0.1 is a loopback address"),
        "{detail}"
    );

    // The same on an update of a subscription that was fine.
    let mut public = params.clone();
    public["url"] = json!("http://prometheus.invalid:9090");
    let id = app
        .subscribe(
            &ann,
            json!({"kind": "metric", "title": "up", "params": public}),
        )
        .await;
    let mut internal = public.clone();
    internal["url"] = json!("http://[::ffff:10.0.0.1]:9090");
    let (status, body) = problem(
        app.client
            .put(app.url(&format!("/api/v1/subscriptions/{id}")))
            .bearer_auth(&ann)
            .json(&json!({"params": internal}))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("params.url: "),
        "{body}"
    );

    let (status, body) = problem(
        app.post(
            &ann,
            "/api/v1/subscriptions/import",
            json!({"backend": "http-json", "url": "http://169.254.169.254"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("url: 169.254.169.254 is a link-local address"),
        "{detail}"
    );
}

#[tokio::test]
async fn an_import_by_a_name_that_resolves_to_loopback_is_refused_and_quotes_nothing() {
    let sink = HttpSink::start(StatusCode::OK, "[]").await;
    let app = spawn_guarded().await;
    let ann = app.user("ann").await;
    let url = format!("http://localhost:{}", sink.address.port());
    let (status, body) = problem(
        app.post(
            &ann,
            "/api/v1/subscriptions/import",
            json!({"backend": "http-json", "url": url}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let detail: &str = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("refused") && detail.contains("loopback"),
        "{detail}"
    );
    assert_eq!(sink.arrivals(), 0);

    // Allowed, but answering an error page: the status only.
    let broken = HttpSink::start(StatusCode::FORBIDDEN, "token=SECRET-IMPORT-PAGE").await;
    let app = spawn_app_with(|_| {}).await;
    let ann = app.user("ann").await;
    let response = app
        .post(
            &ann,
            "/api/v1/subscriptions/import",
            json!({"backend": "http-json", "url": broken.url("")}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let text = response.text().await.expect("body");
    assert!(text.contains("403"), "{text}");
    assert!(!text.contains("SECRET-IMPORT-PAGE"), "{text}");
}
