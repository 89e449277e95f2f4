use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tellify::app::RunningApp;
use tellify::clock::ManualClock;
use tellify::config::Settings;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub admin: String,
    pub clock: Arc<ManualClock>,
    pub app: RunningApp,
    _data: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the whole server on a free port with a fresh data directory and a manual clock.
/// The outbound guard allows loopback, where the tests' sinks and backends listen; a test
/// of the guard itself clears `outbound.allow`.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().expect("address"),
        data: data.path().to_path_buf(),
        ..Settings::default()
    };
    settings.outbound.allow = vec!["127.0.0.0/8".to_string(), "::1".to_string()];
    adjust(&mut settings);
    let clock = Arc::new(ManualClock::new(
        "2026-11-23T09:00:00Z".parse().expect("time"),
    ));
    let admin = format!("tfy_admin_{}", tellify_model::new_id());
    let app = tellify::app::start(settings, clock.clone(), Some(admin.clone()))
        .await
        .expect("app starts");
    TestApp {
        base: format!("http://{}", app.address),
        client: reqwest::Client::new(),
        admin,
        clock,
        app,
        _data: data,
    }
}

impl TestApp {
    /// Stops the server the way SIGTERM does (its data directory goes with it).
    pub async fn stop(self) {
        self.app.stop().await.expect("a clean stop");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, token: &str, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_raw(
        &self,
        token: &str,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get_json(&self, token: &str, path: &str) -> Value {
        let response = self.get(token, path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("json")
    }

    /// Creates a user and returns a `user`-scope token for them.
    pub async fn user(&self, name: &str) -> String {
        let response = self
            .post(&self.admin, "/api/v1/users", json!({"name": name, "email": format!("{name}@example.com"), "timezone": "Europe/Berlin"}))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "create user {name}");
        let response = self
            .post(
                &self.admin,
                "/api/v1/tokens",
                json!({"name": "test", "scopes": ["user"], "user": name}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        body["token"].as_str().expect("token").to_string()
    }

    pub async fn subscribe(&self, token: &str, body: Value) -> String {
        let response = self.post(token, "/api/v1/subscriptions", body).await;
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("id").to_string()
    }

    /// Sends `key:value` lines and waits until the worker has processed them.
    pub async fn send_lines(&self, token: &str, lines: &str) -> Vec<String> {
        let response = self
            .post_raw(token, "/api/v1/events", "text/plain", lines.to_string())
            .await;
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        self.settle().await;
        body["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|id| id.as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Waits until every stored event is processed.
    pub async fn settle(&self) {
        let state = &self.app.state;
        let last = state.store.last_seq().await.expect("last seq");
        tokio::time::timeout(Duration::from_secs(10), state.worker.wait_for(last))
            .await
            .expect("worker keeps up");
        // Derived events land during processing; process those too.
        let again = state.store.last_seq().await.expect("last seq");
        if again != last {
            tokio::time::timeout(Duration::from_secs(10), state.worker.wait_for(again))
                .await
                .expect("worker keeps up");
        }
    }

    /// Moves the injected clock and lets the worker look at its timers.
    pub async fn advance(&self, by: SignedDuration) {
        self.clock.advance(by);
        self.app.state.worker.wake();
        self.app.state.notifier.wake();
    }

    /// The `/metrics` text (Prometheus exposition, no token).
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    pub async fn alerts(&self, token: &str, query: &str) -> Vec<Value> {
        let body = self
            .get_json(token, &format!("/api/v1/alerts?{query}"))
            .await;
        body["items"].as_array().expect("items").clone()
    }
}

/// Polls `check` until it returns `Some`, for up to five seconds.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn problem(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "application/problem+json", "status {status}");
    (status, response.json().await.expect("json"))
}
