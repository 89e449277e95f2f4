//! The Prometheus HTTP API: `GET {url}/api/v1/query?query=Q`. An instant vector gives one
//! sample per series, keyed by its labels; a scalar one sample without labels. Values
//! are strings (`"1.5"`, `"NaN"`, `"+Inf"`): a `NaN` fails its series only.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tellify_model::Fields;

use super::{endpoint, json_problem, PollError, Reading, Sample, MAX_ANSWER_BYTES};
use crate::outbound::{read_capped, OutboundClient};

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Value,
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: Fields,
    value: (Value, String),
}

/// The error types Prometheus documents; another word in `errorType` is not repeated, since
/// it is the backend's text and not necessarily Prometheus's.
const ERROR_TYPES: &[&str] = &[
    "bad_data",
    "execution",
    "canceled",
    "timeout",
    "internal",
    "unavailable",
    "not_found",
    "not_acceptable",
];

/// Polls `query` once. Prometheus answers a bad query with 400 (and a failed execution
/// with 422): those will not pass by retrying; 5xx (503 while it starts) may. Its error
/// text is not kept (the result event is readable by everyone and the URL may not be a
/// Prometheus at all), only its documented `errorType`.
pub(crate) async fn query(
    client: &OutboundClient,
    url: &str,
    query: &str,
    timeout: Duration,
) -> Result<Vec<Sample>, PollError> {
    let response = client
        .get(endpoint(url, "api/v1/query")?)
        .map_err(|denied| PollError::from_denied(&denied))?
        .query(&[("query", query)])
        .timeout(timeout)
        .send()
        .await
        .map_err(PollError::from_transport)?;
    let status = response.status();
    let body = read_capped(response, MAX_ANSWER_BYTES).await;
    if !status.is_success() {
        let mut error = PollError::from_status(status);
        let error_type = body
            .ok()
            .and_then(|body| serde_json::from_slice::<Answer>(&body).ok())
            .and_then(|answer| known_error_type(answer.error_type.as_deref()));
        if let Some(error_type) = error_type {
            error.message = format!("{} (prometheus {error_type})", error.message);
        }
        return Err(error);
    }
    parse(&body.map_err(PollError::from_answer)?)
}

fn known_error_type(error_type: Option<&str>) -> Option<&'static str> {
    let error_type = error_type?;
    ERROR_TYPES
        .iter()
        .copied()
        .find(|known| *known == error_type)
}

fn parse(body: &[u8]) -> Result<Vec<Sample>, PollError> {
    let answer: Answer = serde_json::from_slice(body).map_err(|error| {
        PollError::retryable(format!(
            "answer is not a prometheus query result ({})",
            json_problem(&error)
        ))
    })?;
    if answer.status != "success" {
        return Err(PollError::permanent(format!(
            "prometheus error {}",
            known_error_type(answer.error_type.as_deref()).unwrap_or("of an unknown type")
        )));
    }
    let Some(data) = answer.data else {
        return Err(PollError::retryable("answer has no `data`"));
    };
    match data.result_type.as_str() {
        "vector" => {
            let samples: Vec<VectorSample> =
                serde_json::from_value(data.result).map_err(|error| {
                    PollError::retryable(format!("malformed vector ({})", json_problem(&error)))
                })?;
            Ok(samples
                .into_iter()
                .map(|sample| Sample {
                    labels: Some(sample.metric),
                    value: Reading::parse(&sample.value.1),
                })
                .collect())
        }
        "scalar" => {
            let (_, text): (Value, String) =
                serde_json::from_value(data.result).map_err(|error| {
                    PollError::retryable(format!("malformed scalar ({})", json_problem(&error)))
                })?;
            Ok(vec![Sample {
                labels: Some(Fields::new()),
                value: Reading::parse(&text),
            }])
        }
        "matrix" | "string" => Err(PollError::permanent(format!(
            "query gives a {}, not an instant vector or scalar",
            data.result_type
        ))),
        _ => Err(PollError::permanent(
            "query gives an unknown result type, not an instant vector or scalar",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_give_one_sample_per_series_and_nan_fails_only_its_own() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"a"},"value":[1700000000.1,"1"]},
            {"metric":{"job":"b"},"value":[1700000000.1,"NaN"]},
            {"metric":{"job":"c"},"value":[1700000000.1,"+Inf"]}]}}"#;
        let samples = parse(body.as_bytes()).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].labels.as_ref().unwrap()["job"], "a");
        assert_eq!(samples[0].value.as_ref().unwrap().value, 1.0);
        assert!(samples[1].value.is_err());
        assert_eq!(samples[2].value.as_ref().unwrap().value, f64::MAX);
    }

    #[test]
    fn scalars_errors_and_matrices() {
        let scalar =
            parse(br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2.5"]}}"#)
                .unwrap();
        assert_eq!(scalar[0].value.as_ref().unwrap().value, 2.5);
        assert!(scalar[0].labels.as_ref().unwrap().is_empty());
        let error =
            parse(br#"{"status":"error","errorType":"bad_data","error":"parse error SECRET"}"#)
                .unwrap_err();
        assert!(!error.retryable && error.message.contains("bad_data"));
        assert!(!error.message.contains("SECRET"), "{}", error.message);
        let odd = parse(br#"{"status":"error","errorType":"SECRET"}"#).unwrap_err();
        assert!(!odd.message.contains("SECRET"), "{}", odd.message);
        let quoted =
            parse(br#"{"status":"success","data":{"resultType":"vector","result":"SECRET"}}"#)
                .unwrap_err();
        assert!(!quoted.message.contains("SECRET"), "{}", quoted.message);
        let matrix = parse(br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#)
            .unwrap_err();
        assert!(matrix.message.contains("matrix"));
        assert!(parse(b"oops").unwrap_err().retryable);
    }
}
