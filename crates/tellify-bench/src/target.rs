//! The server under test: its base URL and token (loopback only), `/healthz`, and the
//! small request helpers every mode's setup uses.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

/// The server under test and the token to call it with. Several nodes of one cluster
/// (`--server URL,URL,…`) share the requests round-robin; `base` is the first.
pub(crate) struct Target {
    pub(crate) base: String,
    bases: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
    pub(crate) authorization: String,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Health {
    pub(crate) events: i64,
    pub(crate) lag: i64,
}

impl Target {
    /// Accepts only loopback servers: this tool is for measuring a local server, never
    /// for loading someone else's.
    pub(crate) fn new(server: &str, token: &str) -> anyhow::Result<Target> {
        let mut bases = Vec::new();
        for server in server.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let url =
                reqwest::Url::parse(server).with_context(|| format!("bad --server `{server}`"))?;
            let host = url.host_str().unwrap_or("");
            let loopback = host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                bail!("--server must be a loopback address (127.0.0.1), not `{host}`");
            }
            bases.push(server.trim_end_matches('/').to_string());
        }
        if bases.is_empty() {
            bail!("--server must name at least one server");
        }
        if token.trim().is_empty() {
            bail!("--token must not be empty");
        }
        Ok(Target {
            base: bases[0].clone(),
            bases,
            next: Default::default(),
            authorization: format!("Bearer {}", token.trim()),
        })
    }

    /// The same servers with another token.
    pub(crate) fn with_token(&self, token: &str) -> anyhow::Result<Target> {
        Target::new(&self.bases.join(","), token)
    }

    /// `path` on the next server in turn.
    pub(crate) fn url(&self, path: &str) -> String {
        let turn = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}{path}", self.bases[turn % self.bases.len()])
    }

    pub(crate) async fn health(&self, client: &reqwest::Client) -> anyhow::Result<Health> {
        let body: Value = client
            .get(self.url("/healthz"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let number = |name: &str| {
            body.get(name)
                .and_then(Value::as_i64)
                .with_context(|| format!("/healthz answer has no `{name}`: {body}"))
        };
        Ok(Health {
            events: number("events")?,
            lag: number("lag")?,
        })
    }
}

/// A client for short requests; each request must finish within 60 s.
pub(crate) fn plain_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the HTTP client")
}

/// Titles of every subscription the token can see.
pub(crate) async fn subscription_titles(
    client: &reqwest::Client,
    target: &Target,
) -> anyhow::Result<HashSet<String>> {
    let page: Value = client
        .get(target.url("/api/v1/subscriptions"))
        .header(reqwest::header::AUTHORIZATION, &target.authorization)
        .send()
        .await?
        .error_for_status()
        .context("cannot list subscriptions")?
        .json()
        .await?;
    let items = page
        .get("items")
        .and_then(Value::as_array)
        .context("subscription list has no `items`")?;
    Ok(items
        .iter()
        .filter_map(|item| item.get("title").and_then(Value::as_str))
        .map(str::to_string)
        .collect())
}

pub(crate) async fn create_subscription(
    client: &reqwest::Client,
    target: &Target,
    body: Value,
) -> anyhow::Result<()> {
    let response = client
        .post(target.url("/api/v1/subscriptions"))
        .header(reqwest::header::AUTHORIZATION, &target.authorization)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    bail!("create subscription: HTTP {status}: {text}")
}

/// Sends a request; answers the status and the body as JSON (`Null` when it is not).
pub(crate) async fn call(
    request: reqwest::RequestBuilder,
) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

pub(crate) fn expect_success(
    what: &str,
    status: reqwest::StatusCode,
    body: &Value,
) -> anyhow::Result<()> {
    if status.is_success() {
        return Ok(());
    }
    bail!(
        "{what}: HTTP {status}: {}",
        truncate(&body.to_string(), 200)
    )
}

pub(crate) fn truncate(text: &str, limit: usize) -> &str {
    match text.char_indices().nth(limit) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_servers_are_accepted() {
        assert!(Target::new("http://127.0.0.1:8080", "t").is_ok());
        assert!(Target::new("http://[::1]:8080/", "t").is_ok());
        assert!(Target::new("http://localhost:1", "t").is_ok());
        assert!(Target::new("http://10.0.0.1:8080", "t").is_err());
        assert!(Target::new("http://127.0.0.1:1,http://10.0.0.1:8080", "t").is_err());
        let cluster = Target::new("http://127.0.0.1:1, http://127.0.0.1:2/", "t").unwrap();
        let urls: Vec<String> = (0..3).map(|_| cluster.url("/x")).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:1/x",
                "http://127.0.0.1:2/x",
                "http://127.0.0.1:1/x"
            ]
        );
        assert!(Target::new("http://example.com", "t").is_err());
        assert!(Target::new("http://127.0.0.1:8080", " ").is_err());
    }
}
