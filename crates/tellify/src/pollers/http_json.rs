//! The plain HTTP JSON engine: `GET {url}/query?target=Q` answers `{"value": <number>}`,
//! one series without labels.

use std::time::Duration;

use serde_json::Value;

use super::{endpoint, json_problem, PollError, Reading, Sample, MAX_ANSWER_BYTES};
use crate::outbound::{read_capped, OutboundClient};

/// Polls `query` once; a 5xx or a transport failure is retryable, anything the engine
/// says about the request itself (a 4xx) is not.
pub(crate) async fn query(
    client: &OutboundClient,
    url: &str,
    query: &str,
    timeout: Duration,
) -> Result<Vec<Sample>, PollError> {
    let response = client
        .get(endpoint(url, "query")?)
        .map_err(|denied| PollError::from_denied(&denied))?
        .query(&[("target", query)])
        .timeout(timeout)
        .send()
        .await
        .map_err(PollError::from_transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(PollError::from_status(status));
    }
    let body = read_capped(response, MAX_ANSWER_BYTES)
        .await
        .map_err(PollError::from_answer)?;
    let value = parse(&body)?;
    Ok(vec![Sample {
        labels: None,
        value: Ok(value),
    }])
}

/// Reads `{"value": <number>}`; a number sent as a string (`"1.5"`, `"NaN"`) is read
/// like Prometheus values are. A malformed answer may be a passing glitch: retryable.
fn parse(body: &[u8]) -> Result<Reading, PollError> {
    let answer: Value = serde_json::from_slice(body).map_err(|error| {
        PollError::retryable(format!("answer is not json ({})", json_problem(&error)))
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
        assert_eq!(parse(br#"{"value": 4.5}"#).unwrap().value, 4.5);
        assert_eq!(parse(br#"{"value": "7"}"#).unwrap().value, 7.0);
        assert!(parse(br#"{"value": "NaN"}"#)
            .unwrap_err()
            .message
            .contains("NaN"));
        assert!(parse(br#"{"value": null}"#)
            .unwrap_err()
            .message
            .contains("no `value`"));
        assert!(parse(br#"{"value": [1]}"#).is_err());
        assert!(parse(b"<html>")
            .unwrap_err()
            .message
            .starts_with("answer is not json"));
    }
}
