//! The dashboard over HTTP: sign-in, sessions, CSRF, the alert pages and their live
//! stream, against the real router, worker and store (`crate::helpers::spawn_app`). A
//! [`Browser`] keeps one session cookie and reads each form's CSRF token from the page,
//! as a browser would. The browser tests proper (Chromium) are in `tests/browser/`.

mod admin;
mod alerts;
mod events;
mod notifications;
mod sessions;
mod subscriptions;

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Response, StatusCode};
use tellify::services::sessions::hash_password;

use crate::helpers::TestApp;

/// A cookie jar of one: the session cookie, and the CSRF token of the last page read.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: app.base.clone(),
            cookie: None,
            csrf: None,
        }
    }

    /// A new browser already signed in as `name` (who has `password`).
    pub async fn signed_in(app: &TestApp, name: &str, password: &str) -> Browser {
        let mut browser = Browser::new(app);
        let response = browser.sign_in(name, password).await;
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "sign in as {name}"
        );
        browser.page("/").await;
        browser
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", format!("tellify_session={cookie}"));
        }
        request
    }

    fn remember(&mut self, response: &Response) {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap_or_default();
            if let Some(rest) = text.strip_prefix("tellify_session=") {
                let secret = rest.split(';').next().unwrap_or_default();
                self.cookie = (!secret.is_empty()).then(|| secret.to_string());
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> Response {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET");
        self.remember(&response);
        response
    }

    /// GETs a page that must answer 200 and returns its HTML, keeping its CSRF token.
    pub async fn page(&mut self, path: &str) -> String {
        let response = self.get(path).await;
        let status = response.status();
        let html = response.text().await.expect("html");
        assert_eq!(status, StatusCode::OK, "GET {path}: {html}");
        if let Some(token) = csrf_of(&html) {
            self.csrf = Some(token);
        }
        html
    }

    /// POSTs a form; `_csrf` is added from the last page unless the fields have one.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let mut body: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !fields.iter().any(|(k, _)| *k == "_csrf") {
            if let Some(csrf) = &self.csrf {
                body.push(("_csrf".to_string(), csrf.clone()));
            }
        }
        let encoded: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(body)
            .finish();
        let response = self
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .body(encoded)
            .send()
            .await
            .expect("POST");
        self.remember(&response);
        response
    }

    pub async fn sign_in(&mut self, name: &str, password: &str) -> Response {
        self.post(
            "/login",
            &[("name", name), ("password", password), ("next", "/")],
        )
        .await
    }
}

/// The first `_csrf` hidden field's value on a page.
pub fn csrf_of(html: &str) -> Option<String> {
    let at = html.find("name=\"_csrf\" value=\"")?;
    let rest = &html[at + "name=\"_csrf\" value=\"".len()..];
    Some(rest[..rest.find('"')?].to_string())
}

/// Gives an existing user a password, through the store.
pub async fn set_password(app: &TestApp, name: &str, password: &str) {
    let state = &app.app.state;
    let user = state
        .store
        .user_by_name(name)
        .await
        .expect("store")
        .expect("user exists");
    let hash = hash_password(password).expect("hash");
    state
        .store
        .set_password_hash(&user.id, Some(hash), None)
        .await
        .expect("store");
}

/// A user with an API token and a password; returns the token.
pub async fn person(app: &TestApp, name: &str) -> String {
    let token = app.user(name).await;
    set_password(app, name, &password_of(name)).await;
    token
}

pub fn password_of(name: &str) -> String {
    format!("{name}-correct-horse")
}

pub async fn location(response: &Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Reads SSE frames until one named `snapshot` arrives (5 s at most); returns its data.
pub async fn next_snapshot(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
) -> String {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer[..end].to_string();
            buffer.replace_range(..end + 2, "");
            if frame.lines().any(|line| line == "event: snapshot") {
                return frame
                    .lines()
                    .filter_map(|line| line.strip_prefix("data: ").or(line.strip_prefix("data:")))
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a snapshot within 5 s")
            .expect("stream open")
            .expect("chunk");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// `token`'s subscription `early` with one firing alert, then `count` firing alerts of
/// their subscription `busy`, all newer: a page that reads only the newest alerts misses
/// `early`'s. Returns the id of `early`'s alert.
pub async fn an_early_alert_then_many(app: &TestApp, token: &str, count: usize) -> String {
    app.subscribe(
        token,
        serde_json::json!({"kind": "match", "title": "early", "params": {"filter": "kind == \"early\""}}),
    )
    .await;
    app.send_lines(token, "kind:early").await;
    let early = app.alerts(token, "").await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    app.subscribe(
        token,
        serde_json::json!({"kind": "match", "title": "busy", "params": {"filter": "kind == \"hit\"", "group_by": ["n"]}}),
    )
    .await;
    let lines: Vec<String> = (0..count).map(|n| format!("kind:hit n:{n}")).collect();
    for chunk in lines.chunks(1000) {
        app.send_lines(token, &chunk.join("\n")).await;
    }
    early
}
