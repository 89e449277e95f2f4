//! `POST /api/v1/events` over one pooled HTTP client, and the sorting of its answers into
//! "stored", "refused" (the caller's error) and "unavailable" (worth spooling).

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;
use serde_json::Value;
use tellify_model::InputWarning;

use crate::error::{Error, Rejection};

/// What the server said when it stored a request's events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipt {
    /// One id per event, in the order sent; a duplicate gets the id it was stored under.
    pub ids: Vec<String>,
    /// Events the server already had under the same idempotency key.
    pub duplicates: u64,
    /// What the server stored, but thinks was probably not meant as it read it (the
    /// answer's `warnings`; `line` counts the events of the request from 1). A warning it
    /// cannot read is left out: the events are stored either way.
    pub warnings: Vec<InputWarning>,
}

/// Where a server's API lives, from a server given as `host:port` or as a URL: `http://`
/// is added when there is no scheme, a path prefix (`https://h/tellify/`) is kept, a query
/// and a fragment are dropped. The producer library and the `tellify` CLI both read
/// `--server` with it.
#[derive(Clone, Debug)]
pub struct ApiRoot {
    /// `<server>/api/v1`, without a trailing slash.
    pub api: Url,
    /// The server as given, with the scheme added: for messages.
    pub server: String,
}

/// A `--server` that cannot be the root of an API.
#[derive(Debug, thiserror::Error)]
pub enum ServerUrlError {
    #[error("`{server}` is not a server URL such as http://host:8080")]
    NotAUrl {
        server: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("`{server}` cannot be a base URL")]
    CannotBeABase { server: String },
}

impl ApiRoot {
    pub fn parse(server: &str) -> Result<ApiRoot, ServerUrlError> {
        let server = server.trim();
        let with_scheme = if server.contains("://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        let mut api = Url::parse(&with_scheme).map_err(|error| ServerUrlError::NotAUrl {
            server: server.to_string(),
            source: Box::new(error),
        })?;
        api.set_query(None);
        api.set_fragment(None);
        api.path_segments_mut()
            .map_err(|()| ServerUrlError::CannotBeABase {
                server: server.to_string(),
            })?
            .pop_if_empty()
            .extend(["api", "v1"]);
        Ok(ApiRoot {
            api,
            server: with_scheme,
        })
    }

    /// The URL of an endpoint under `/api/v1` from its path segments (each one escaped),
    /// plus a query.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, ServerUrlError> {
        let mut url = self.api.clone();
        url.path_segments_mut()
            .map_err(|()| ServerUrlError::CannotBeABase {
                server: self.server.clone(),
            })?
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }
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
        let root = ApiRoot::parse(server).map_err(|error| Error::Config(error.to_string()))?;
        let events = root
            .url(&["events"], &[])
            .map_err(|error| Error::Config(error.to_string()))?;
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
            server: root.server,
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
    let warnings = answer
        .get("warnings")
        .and_then(Value::as_array)
        .map(|warnings| {
            warnings
                .iter()
                .filter_map(|warning| serde_json::from_value(warning.clone()).ok())
                .collect()
        })
        .unwrap_or_default();
    Receipt {
        ids,
        duplicates,
        warnings,
    }
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
    fn the_api_root_escapes_segments_and_names_a_bad_server() {
        let root = ApiRoot::parse(" 127.0.0.1:9/x/?a=b#c ").unwrap();
        assert_eq!(root.server, "http://127.0.0.1:9/x/?a=b#c");
        let url = root
            .url(&["alerts", "a/b"], &[("filter", "a == \"b c\"")])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/x/api/v1/alerts/a%2Fb?filter=a+%3D%3D+%22b+c%22"
        );
        let error = ApiRoot::parse("http://").err().unwrap();
        assert_eq!(
            error.to_string(),
            "`http://` is not a server URL such as http://host:8080"
        );
        let error = ApiRoot::parse("urn:x://y").err().unwrap();
        assert_eq!(error.to_string(), "`urn:x://y` cannot be a base URL");
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
        assert!(receipt.warnings.is_empty());
    }

    #[test]
    fn a_receipt_reads_warnings_and_never_fails_on_them() {
        let receipt = receipt_of(&json!({
            "ids": ["a"], "accepted": 1, "duplicates": 0,
            "warnings": [
                {"line": 1, "word": "usage:95%", "message": "kept as the string"},
                {"word": "fs=/home", "message": "a bare word", "column": 3},
                {"unexpected": true},
                "odd"
            ]
        }));
        assert_eq!(receipt.ids, vec!["a"]);
        let words: Vec<(Option<usize>, &str)> = receipt
            .warnings
            .iter()
            .map(|warning| (warning.line, warning.word.as_str()))
            .collect();
        assert_eq!(words, vec![(Some(1), "usage:95%"), (None, "fs=/home")]);
        let odd = receipt_of(&json!({"ids": ["a"], "warnings": "not a list"}));
        assert_eq!(odd.ids, vec!["a"]);
        assert!(odd.warnings.is_empty());
    }
}
