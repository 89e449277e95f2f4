//! The plain HTTP JSON engine: `GET {url}/query?target=Q` answers `{"value": <number>}`,
//! one series without labels.

use std::time::Duration;

use serde_json::Value;

use super::{truncate, PollError, Reading, Sample};

/// Polls `query` once; a 5xx or a transport failure is retryable, anything the engine
/// says about the request itself (a 4xx) is not.
pub(crate) async fn query(
    client: &reqwest::Client,
    url: &str,
    query: &str,
    timeout: Duration,
) -> Result<Vec<Sample>, PollError> {
    let response = client
        .get(format!("{url}/query"))
        .query(&[("target", query)])
        .timeout(timeout)
        .send()
        .await
        .map_err(|error| PollError::from_transport(&error))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|error| PollError::from_transport(&error))?;
    if !status.is_success() {
        return Err(PollError::from_status(status, &body));
    }
    let value = parse(&body)?;
    Ok(vec![Sample {
        labels: None,
        value: Ok(value),
    }])
}

/// Reads `{"value": <number>}`; a number sent as a string (`"1.5"`, `"NaN"`) is read
/// like Prometheus values are. A malformed answer may be a passing glitch: retryable.
fn parse(body: &str) -> Result<Reading, PollError> {
    let answer: Value = serde_json::from_str(body).map_err(|error| {
        PollError::retryable(format!(
            "answer is not json ({error}): {}",
            truncate(body.trim(), 100)
        ))
    })?;
    match answer.get("value") {
        Some(Value::Number(number)) => number
            .as_f64()
            .map(|value| Reading { value, text: None })
            .ok_or_else(|| PollError::retryable("value is not a number")),
        Some(Value::String(text)) => Reading::parse(text).map_err(PollError::retryable),
        Some(Value::Null) | None => Err(PollError::retryable("answer has no `value`")),
        Some(_) => Err(PollError::retryable("value is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_numeric_strings_are_read_and_the_rest_refused() {
        assert_eq!(parse(r#"{"value": 4.5}"#).unwrap().value, 4.5);
        assert_eq!(parse(r#"{"value": "7"}"#).unwrap().value, 7.0);
        assert!(parse(r#"{"value": "NaN"}"#)
            .unwrap_err()
            .message
            .contains("NaN"));
        assert!(parse(r#"{"value": null}"#)
            .unwrap_err()
            .message
            .contains("no `value`"));
        assert!(parse(r#"{"value": [1]}"#).is_err());
        assert!(parse("<html>")
            .unwrap_err()
            .message
            .starts_with("answer is not json"));
    }
}
