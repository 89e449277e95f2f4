//! What can go wrong for a producer, each error knowing whether trying again can help.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

/// Longest non-JSON error body quoted in a [`Rejection`], in characters.
const MAX_QUOTED_BODY: usize = 300;

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

/// A non-2xx answer read as `application/problem+json`: the status, the problem's
/// `detail` and its `errors` entries. The library returns it for a 4xx as
/// [`Error::Rejected`]; the `tellify` CLI reads every error answer of the API with it.
#[derive(Clone, Debug)]
pub struct Rejection {
    pub status: u16,
    /// The problem's `detail` (its `title` without one), or the start of a body that was
    /// not problem+json, on one line.
    pub detail: String,
    /// The problem's `errors` entries (`{"line", "field", "message"}` and the like), one
    /// per thing wrong; a `line` counts the events of the request from 1.
    pub problems: Vec<Value>,
}

impl Rejection {
    /// Reads an error answer's body; a body that cannot be read counts as empty.
    pub async fn from_response(response: reqwest::Response) -> Rejection {
        let status = response.status().as_u16();
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.contains("json"));
        let body = response.text().await.unwrap_or_default();
        Rejection::from_body(status, is_json, &body)
    }

    /// An answer whose `Content-Type` mentions JSON is read as a problem; any other body
    /// (a proxy's HTML page, plain text) is quoted, shortened to one line.
    pub fn from_body(status: u16, is_json: bool, body: &str) -> Rejection {
        let parsed = is_json
            .then(|| serde_json::from_str::<Value>(body).ok())
            .flatten();
        let Some(problem) = parsed else {
            return Rejection {
                status,
                detail: one_line(body.trim(), MAX_QUOTED_BODY),
                problems: Vec::new(),
            };
        };
        Rejection {
            status,
            detail: problem
                .get("detail")
                .and_then(Value::as_str)
                .or_else(|| problem.get("title").and_then(Value::as_str))
                .unwrap_or("")
                .to_string(),
            problems: problem
                .get("errors")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Whether asking again unchanged could succeed: 5xx, 408 and 429 (the server or a
    /// proxy was unwell or busy).
    pub fn is_transient(&self) -> bool {
        is_transient_status(self.status)
    }

    /// The message with `hint` in parentheses after a 401's detail, for callers that
    /// know where the token came from (`check --token or TELLIFY_TOKEN`); [`Display`]
    /// says `check the token`.
    ///
    /// [`Display`]: fmt::Display
    pub fn with_unauthorized_hint<'a>(&'a self, hint: &'a str) -> impl fmt::Display + 'a {
        HintedRejection {
            rejection: self,
            hint,
        }
    }
}

/// 5xx, 408 and 429: answers that say "not now" rather than "not this".
fn is_transient_status(status: u16) -> bool {
    (500..600).contains(&status) || status == 408 || status == 429
}

impl std::error::Error for Rejection {}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_unauthorized_hint("check the token").fmt(f)
    }
}

struct HintedRejection<'a> {
    rejection: &'a Rejection,
    hint: &'a str,
}

impl fmt::Display for HintedRejection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rejection = self.rejection;
        let reason = reqwest::StatusCode::from_u16(rejection.status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("error")
            .to_ascii_lowercase();
        write!(f, "server answered {} {reason}", rejection.status)?;
        let problems: Vec<String> = rejection.problems.iter().map(describe_problem).collect();
        // tellify's detail is often the problems themselves, joined by "; ": each is
        // then shown once, on the headline when there is one, else as the list.
        let detail_repeats = !problems.is_empty()
            && rejection
                .detail
                .split("; ")
                .all(|part| problems.iter().any(|problem| problem == part));
        let list_only = detail_repeats && problems.len() > 1;
        if !rejection.detail.is_empty() && !list_only {
            write!(f, ": {}", rejection.detail)?;
        }
        if rejection.status == 401 {
            write!(f, " ({})", self.hint)?;
        }
        if detail_repeats && problems.len() == 1 {
            return Ok(());
        }
        for problem in &problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// `text` with control characters as spaces, cut to `max` characters with an ellipsis.
fn one_line(text: &str, max: usize) -> String {
    let single_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if single_line.chars().count() <= max {
        return single_line;
    }
    let kept: String = single_line.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
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
    fn a_detail_that_repeats_the_problems_is_shown_once() {
        let one = Rejection {
            status: 422,
            detail: "params.filter: bad".to_string(),
            problems: vec![json!({"path": "params.filter", "message": "bad"})],
        };
        assert_eq!(
            one.to_string(),
            "server answered 422 unprocessable entity: params.filter: bad"
        );
        let two = Rejection {
            status: 422,
            detail: "line 1, field `a`: bad; line 2: worse".to_string(),
            problems: vec![
                json!({"line": 1, "field": "a", "message": "bad"}),
                json!({"line": 2, "message": "worse"}),
            ],
        };
        assert_eq!(
            two.to_string(),
            "server answered 422 unprocessable entity\n  - line 1, field `a`: bad\n  \
             - line 2: worse"
        );
    }

    #[test]
    fn a_problem_answer_gives_detail_or_title_and_its_errors() {
        let body = r#"{"title":"Unprocessable Entity","detail":"1 problem",
                       "errors":[{"path":"params.filter","message":"bad"}]}"#;
        let rejection = Rejection::from_body(422, true, body);
        assert_eq!(rejection.detail, "1 problem");
        assert_eq!(
            rejection.problems,
            vec![json!({"path": "params.filter", "message": "bad"})]
        );
        let rejection = Rejection::from_body(404, true, r#"{"title":"Not Found"}"#);
        assert_eq!(rejection.detail, "Not Found");
        assert!(rejection.problems.is_empty());
    }

    #[test]
    fn a_body_that_is_not_a_problem_is_quoted_on_one_line_and_cut() {
        let rejection = Rejection::from_body(502, false, "  <html>\n<b>bad gateway</b>\n");
        assert_eq!(rejection.detail, "<html> <b>bad gateway</b>");
        let rejection = Rejection::from_body(400, true, "not json");
        assert_eq!(
            rejection.detail, "not json",
            "a JSON label on non-JSON is quoted"
        );
        let long = "x".repeat(1000);
        let detail = Rejection::from_body(500, false, &long).detail;
        assert_eq!(detail.chars().count(), MAX_QUOTED_BODY);
        assert!(detail.ends_with('…'), "{detail}");
    }

    #[test]
    fn a_401_carries_the_callers_hint() {
        let rejection = Rejection::from_body(401, true, r#"{"detail":"token expired"}"#);
        assert_eq!(
            rejection.to_string(),
            "server answered 401 unauthorized: token expired (check the token)"
        );
        assert_eq!(
            rejection
                .with_unauthorized_hint("check --token or TELLIFY_TOKEN")
                .to_string(),
            "server answered 401 unauthorized: token expired (check --token or TELLIFY_TOKEN)"
        );
        assert!(!rejection.is_transient());
    }

    #[test]
    fn only_server_trouble_is_transient() {
        for status in [500, 502, 503, 408, 429] {
            assert!(
                Rejection::from_body(status, false, "").is_transient(),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 409, 422] {
            assert!(
                !Rejection::from_body(status, false, "").is_transient(),
                "{status}"
            );
        }
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
