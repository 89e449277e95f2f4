//! A small client for the tellify HTTP API, shared by the client subcommands: it knows
//! the base URL and the bearer token, speaks JSON, and turns `application/problem+json`
//! answers into [`ApiError`]s that name the status, the detail and every listed problem
//! (read by `tellify_client::Rejection`, the producer library's reader).

use std::fmt;
use std::time::Duration;

use anyhow::Context;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;
use tellify_client::{ApiRoot, Rejection};

use super::Connection;

/// How long an ordinary request may take; the event stream has no limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client {
    http: reqwest::Client,
    /// `<server>/api/v1`, and the server as the user gave it, for error messages.
    root: ApiRoot,
    token: String,
}

/// A non-2xx answer from the server, read by the client library's problem+json reader;
/// shown with a 401 hint that names where the CLI takes its token from.
#[derive(Debug)]
pub struct ApiError(pub Rejection);

impl std::error::Error for ApiError {}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .with_unauthorized_hint("check --token or TELLIFY_TOKEN")
            .fmt(f)
    }
}

impl ApiError {
    /// Whether asking again unchanged could succeed (the server or a proxy was unwell).
    pub fn is_transient(&self) -> bool {
        self.0.is_transient()
    }
}

impl Client {
    pub fn new(connection: &Connection) -> anyhow::Result<Client> {
        let token = connection
            .token
            .as_deref()
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .context("no API token: pass --token or set TELLIFY_TOKEN")?
            .to_string();
        let root = ApiRoot::parse(&connection.server)?;
        // reqwest is built without a default TLS provider; `main` installs ring, and this
        // keeps other callers (tests, embedders) from a panic when they did not.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("tellify-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client { http, root, token })
    }

    /// The URL of an API endpoint from its path segments (each one escaped), plus a query.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> anyhow::Result<Url> {
        Ok(self.root.url(segments, query)?)
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.token)
    }

    /// Sends a request and returns the response if it is a success; otherwise an
    /// [`ApiError`] (a connection failure stays a `reqwest` error, with context).
    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the tellify server at {}", self.root.server))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(ApiError(Rejection::from_response(response).await).into())
    }

    async fn json_of(&self, request: RequestBuilder) -> anyhow::Result<Value> {
        Ok(self.answer_of(request).await?.1)
    }

    /// The status and JSON answer (`null` for 204 or an empty body) of a successful request.
    async fn answer_of(&self, request: RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
        let response = self.send(request.timeout(REQUEST_TIMEOUT)).await?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok((status, Value::Null));
        }
        let body = response
            .bytes()
            .await
            .context("the connection broke while reading the answer")?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok((status, Value::Null));
        }
        let value = serde_json::from_slice(&body).context("the server's answer is not JSON")?;
        Ok((status, value))
    }

    /// Any method with a query (`?user=`, `?dry_run=`) and an optional JSON body; returns
    /// the status with the answer, so a caller can tell "created" from "replaced".
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let url = self.url(segments, query)?;
        let mut request = self.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.answer_of(request).await
    }

    /// [`Client::call`] for its JSON answer only.
    pub async fn call_json(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        Ok(self.call(method, segments, query, body).await?.1)
    }

    pub async fn get(&self, segments: &[&str], query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let url = self.url(segments, query)?;
        self.json_of(self.request(Method::GET, url)).await
    }

    /// POSTs `body` as JSON, or nothing when `body` is `None`.
    pub async fn post(&self, segments: &[&str], body: Option<&Value>) -> anyhow::Result<Value> {
        let url = self.url(segments, &[])?;
        let mut request = self.request(Method::POST, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.json_of(request).await
    }

    pub async fn patch(&self, segments: &[&str], body: &Value) -> anyhow::Result<Value> {
        let url = self.url(segments, &[])?;
        self.json_of(self.request(Method::PATCH, url).json(body))
            .await
    }

    pub async fn delete(&self, segments: &[&str]) -> anyhow::Result<()> {
        let url = self.url(segments, &[])?;
        self.json_of(self.request(Method::DELETE, url)).await?;
        Ok(())
    }

    /// Opens a long-lived GET (the event stream): no overall timeout, and the caller
    /// reads the body as it arrives.
    pub async fn open_stream(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
        last_event_id: Option<&str>,
    ) -> anyhow::Result<Response> {
        let url = self.url(segments, query)?;
        let mut request = self
            .request(Method::GET, url)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        self.send(request).await
    }
}

/// Reads a JSON argument (`--params`, `--json`), or the file after `@`.
pub fn json_argument(flag: &str, text: &str) -> anyhow::Result<Value> {
    let source = match text.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("{flag}: cannot read {path}"))?
        }
        None => text.to_string(),
    };
    serde_json::from_str(&source).with_context(|| format!("{flag} is not valid JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn connection(server: &str) -> Connection {
        Connection {
            server: server.to_string(),
            token: Some("tfy_x".to_string()),
        }
    }

    #[test]
    fn urls_escape_segments_and_keep_a_path_prefix() {
        let client = Client::new(&connection("http://h:8080/tellify/")).unwrap();
        let url = client.url(&["alerts", "a/b", "ack"], &[]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://h:8080/tellify/api/v1/alerts/a%2Fb/ack"
        );
        let client = Client::new(&connection("127.0.0.1:9")).unwrap();
        let url = client
            .url(&["stream"], &[("filter", "a == \"b c\"")])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/api/v1/stream?filter=a+%3D%3D+%22b+c%22"
        );
    }

    #[test]
    fn a_missing_token_is_a_clear_error() {
        let error = Client::new(&Connection {
            server: "http://h".to_string(),
            token: None,
        })
        .err()
        .unwrap();
        assert!(error.to_string().contains("--token"));
    }

    #[test]
    fn a_401_names_where_the_token_comes_from() {
        let error = ApiError(Rejection::from_body(
            401,
            true,
            r#"{"title":"Unauthorized","detail":"token expired"}"#,
        ));
        assert_eq!(
            error.to_string(),
            "server answered 401 unauthorized: token expired (check --token or TELLIFY_TOKEN)"
        );
        assert!(!error.is_transient());
    }

    #[test]
    fn problems_name_status_detail_and_each_entry() {
        let error = ApiError(Rejection {
            status: 422,
            detail: "2 problems".to_string(),
            problems: vec![
                json!({"path": "params.filter", "message": "bad"}),
                json!({"line": 2, "field": "severity", "message": "unknown"}),
                json!("odd"),
            ],
        });
        assert_eq!(
            error.to_string(),
            "server answered 422 unprocessable entity: 2 problems\n  \
             - params.filter: bad\n  - line 2, field `severity`: unknown\n  - \"odd\""
        );
        // The server's detail is often the problems joined: each is shown once.
        let error = ApiError(Rejection {
            status: 422,
            detail: "timezone: `Mars/Base` is not an IANA time zone".to_string(),
            problems: vec![json!({"path": "timezone",
                                  "message": "`Mars/Base` is not an IANA time zone"})],
        });
        assert_eq!(
            error.to_string(),
            "server answered 422 unprocessable entity: timezone: `Mars/Base` is not an IANA \
             time zone"
        );
    }
}
