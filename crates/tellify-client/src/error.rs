//! What can go wrong for a producer, each error knowing whether trying again can help.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// Everything the client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The builder was given something unusable (a bad server URL, an empty token).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The server refused the events (a 4xx other than "try later"): the caller's
    /// mistake, never spooled, since sending them again would fail the same way.
    #[error(transparent)]
    Rejected(Rejection),
    /// The server could not be reached, timed out, or answered 5xx, 408 or 429; returned
    /// only when there is no spool to keep the events in (or by an explicit replay).
    #[error("{reason}")]
    Unavailable {
        reason: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Appending would make the spool file larger than its bound; nothing was appended.
    #[error(
        "the spool at {dir} is full: {used} bytes used, {needed} more needed, \
         limit {limit} bytes (max_spool_bytes); nothing was spooled"
    )]
    SpoolFull {
        dir: PathBuf,
        limit: u64,
        used: u64,
        needed: u64,
    },
    /// Another process holds the spool's lock.
    #[error("the spool at {dir} is in use by another process{}", holder_text(*.holder))]
    SpoolBusy { dir: PathBuf, holder: Option<u32> },
    /// The spool's files contradict each other in a way a crash cannot cause.
    #[error("the spool file {path} is damaged: {message}")]
    SpoolDamaged { path: PathBuf, message: String },
    /// Reading or writing the spool failed.
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An event could not be encoded as JSON (a field holding a non-finite number).
    #[error("event [{index}] cannot be encoded as JSON: {source}")]
    Encode {
        index: usize,
        #[source]
        source: serde_json::Error,
    },
}

fn holder_text(holder: Option<u32>) -> String {
    match holder {
        Some(pid) => format!(" (pid {pid})"),
        None => String::new(),
    }
}

impl Error {
    /// Whether asking again unchanged could succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::SpoolBusy { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// A 4xx answer: the status, the problem's `detail` and its `errors` entries.
#[derive(Clone, Debug)]
pub struct Rejection {
    pub status: u16,
    /// The problem's `detail`, or the start of a body that was not problem+json.
    pub detail: String,
    /// The problem's `errors` entries (`{"line", "field", "message"}` and the like), one
    /// per thing wrong; a `line` counts the events of the request from 1.
    pub problems: Vec<Value>,
}

impl std::error::Error for Rejection {}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = reqwest::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("error")
            .to_ascii_lowercase();
        write!(f, "server answered {} {reason}", self.status)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if self.status == 401 {
            write!(f, " (check the token)")?;
        }
        for entry in &self.problems {
            write!(f, "\n  - {}", describe_problem(entry))?;
        }
        Ok(())
    }
}

/// One entry of a problem's `errors`: where (`path`, `line`, `index`, `field`, `column`)
/// and what (`message`); anything else is shown as JSON.
fn describe_problem(entry: &Value) -> String {
    let Some(message) = entry.get("message").and_then(Value::as_str) else {
        return entry.to_string();
    };
    let mut place = Vec::new();
    if let Some(path) = entry.get("path").and_then(Value::as_str) {
        if !path.is_empty() {
            place.push(path.to_string());
        }
    }
    if let Some(line) = entry.get("line").and_then(Value::as_u64) {
        place.push(format!("line {line}"));
    }
    if let Some(index) = entry.get("index").and_then(Value::as_u64) {
        place.push(format!("event [{index}]"));
    }
    if let Some(field) = entry.get("field").and_then(Value::as_str) {
        place.push(format!("field `{field}`"));
    }
    if let Some(column) = entry.get("column").and_then(Value::as_u64) {
        place.push(format!("column {column}"));
    }
    if place.is_empty() {
        message.to_string()
    } else {
        format!("{}: {message}", place.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rejection_names_status_detail_and_each_problem() {
        let rejection = Rejection {
            status: 422,
            detail: "2 problems".to_string(),
            problems: vec![
                json!({"line": 2, "field": "severity", "message": "unknown"}),
                json!("odd"),
            ],
        };
        assert_eq!(
            rejection.to_string(),
            "server answered 422 unprocessable entity: 2 problems\n  \
             - line 2, field `severity`: unknown\n  - \"odd\""
        );
    }

    #[test]
    fn a_full_spool_names_its_limit() {
        let error = Error::SpoolFull {
            dir: PathBuf::from("/var/spool/x"),
            limit: 1000,
            used: 990,
            needed: 20,
        };
        let text = error.to_string();
        assert!(text.contains("limit 1000 bytes"), "{text}");
        assert!(!error.is_retryable());
    }
}
