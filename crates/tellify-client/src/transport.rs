//! `POST /api/v1/events` over one pooled HTTP client, and the sorting of its answers into
//! "stored", "refused" (the caller's error) and "unavailable" (worth spooling).

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;
use serde_json::Value;

use crate::error::{Error, Rejection};

/// What the server said when it stored a request's events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipt {
    /// One id per event, in the order sent; a duplicate gets the id it was stored under.
    pub ids: Vec<String>,
    /// Events the server already had under the same idempotency key.
    pub duplicates: u64,
}

pub(crate) struct Transport {
    http: reqwest::Client,
    events: Url,
    /// The server as configured, for error messages.
    server: String,
    token: String,
}

impl Transport {
    pub fn new(
        server: &str,
        token: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
        user_agent: &str,
    ) -> Result<Transport, Error> {
        let token = token.trim();
        if token.is_empty() {
            return Err(Error::Config("the API token is empty".to_string()));
        }
        let server = server.trim();
        let with_scheme = if server.contains("://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        let mut events = Url::parse(&with_scheme).map_err(|_| {
            Error::Config(format!(
                "`{server}` is not a server URL such as http://host:8080"
            ))
        })?;
        events.set_query(None);
        events.set_fragment(None);
        events
            .path_segments_mut()
            .map_err(|()| Error::Config(format!("`{server}` cannot be a base URL")))?
            .pop_if_empty()
            .extend(["api", "v1", "events"]);
        // reqwest is built without a TLS provider of its own; a producer that installed
        // none would otherwise panic on its first https request.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .user_agent(user_agent)
            .build()
            .map_err(|error| Error::Config(format!("cannot build the HTTP client: {error}")))?;
        Ok(Transport {
            http,
            events,
            server: with_scheme,
            token: token.to_string(),
        })
    }

    /// Posts NDJSON records. Any failure to get an answer, and 5xx, 408 and 429 answers,
    /// are [`Error::Unavailable`]: the request may or may not have been stored, which is
    /// why every event carries an idempotency key.
    pub async fn post(&self, body: Vec<u8>) -> Result<Receipt, Error> {
        let response = self
            .http
            .post(self.events.clone())
            .bearer_auth(&self.token)
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(body)
            .send()
            .await
            .map_err(|error| Error::Unavailable {
                reason: format!(
                    "cannot reach the tellify server at {}: {}",
                    self.server,
                    error_chain(&error)
                ),
                retry_after: None,
            })?;
        let status = response.status();
        if status.is_success() {
            let answer: Value = response.json().await.map_err(|error| Error::Unavailable {
                reason: format!("the server's answer was cut off or not JSON: {error}"),
                retry_after: None,
            })?;
            return Ok(receipt_of(&answer));
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let rejection = Rejection::from_response(response).await;
        if rejection.is_transient() {
            return Err(Error::Unavailable {
                reason: rejection.to_string(),
                retry_after,
            });
        }
        Err(Error::Rejected(rejection))
    }
}

fn receipt_of(answer: &Value) -> Receipt {
    let ids = answer
        .get("ids")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let duplicates = answer
        .get("duplicates")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Receipt { ids, duplicates }
}

/// "error sending request: connection refused" rather than only the outermost part.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_events_url_keeps_a_path_prefix_and_gains_a_scheme() {
        let transport = Transport::new(
            "h:8080/tellify/",
            "tfy_x",
            Duration::from_secs(1),
            Duration::from_secs(1),
            "test",
        )
        .unwrap();
        assert_eq!(
            transport.events.as_str(),
            "http://h:8080/tellify/api/v1/events"
        );
    }

    #[test]
    fn an_empty_token_is_a_configuration_error() {
        let error = Transport::new(
            "http://h",
            " ",
            Duration::from_secs(1),
            Duration::from_secs(1),
            "test",
        )
        .err()
        .unwrap();
        assert!(matches!(error, Error::Config(_)), "{error}");
    }

    #[test]
    fn a_receipt_holds_ids_and_duplicates() {
        let receipt = receipt_of(&json!({"ids": ["a", "b"], "accepted": 2, "duplicates": 1}));
        assert_eq!(receipt.ids, vec!["a", "b"]);
        assert_eq!(receipt.duplicates, 1);
    }
}
