//! The Prometheus HTTP API: `GET {url}/api/v1/query?query=Q`. An instant vector gives one
//! sample per series, keyed by its labels; a scalar one sample without labels. Values
//! are strings (`"1.5"`, `"NaN"`, `"+Inf"`): a `NaN` fails its series only.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tellify_model::Fields;

use super::{truncate, PollError, Reading, Sample};

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
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

/// Polls `query` once. Prometheus answers a bad query with 400 (and a failed execution
/// with 422): those will not pass by retrying; 5xx (503 while it starts) may.
pub(crate) async fn query(
    client: &reqwest::Client,
    url: &str,
    query: &str,
    timeout: Duration,
) -> Result<Vec<Sample>, PollError> {
    let response = client
        .get(format!("{url}/api/v1/query"))
        .query(&[("query", query)])
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
        // Prometheus explains a refused query in its JSON body; say that, not the JSON.
        let explained = serde_json::from_str::<Answer>(&body)
            .ok()
            .and_then(|answer| answer.error)
            .unwrap_or(body);
        return Err(PollError::from_status(status, &explained));
    }
    parse(&body)
}

fn parse(body: &str) -> Result<Vec<Sample>, PollError> {
    let answer: Answer = serde_json::from_str(body).map_err(|error| {
        PollError::retryable(format!(
            "answer is not a prometheus query result ({error}): {}",
            truncate(body.trim(), 100)
        ))
    })?;
    if answer.status != "success" {
        return Err(PollError::permanent(format!(
            "prometheus error {}: {}",
            answer.error_type.as_deref().unwrap_or("unknown"),
            answer.error.as_deref().unwrap_or("no detail")
        )));
    }
    let Some(data) = answer.data else {
        return Err(PollError::retryable("answer has no `data`"));
    };
    match data.result_type.as_str() {
        "vector" => {
            let samples: Vec<VectorSample> = serde_json::from_value(data.result)
                .map_err(|error| PollError::retryable(format!("malformed vector: {error}")))?;
            Ok(samples
                .into_iter()
                .map(|sample| Sample {
                    labels: Some(sample.metric),
                    value: Reading::parse(&sample.value.1),
                })
                .collect())
        }
        "scalar" => {
            let (_, text): (Value, String) = serde_json::from_value(data.result)
                .map_err(|error| PollError::retryable(format!("malformed scalar: {error}")))?;
            Ok(vec![Sample {
                labels: Some(Fields::new()),
                value: Reading::parse(&text),
            }])
        }
        other => Err(PollError::permanent(format!(
            "query gives a {other}, not an instant vector or scalar"
        ))),
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
        let samples = parse(body).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].labels.as_ref().unwrap()["job"], "a");
        assert_eq!(samples[0].value.as_ref().unwrap().value, 1.0);
        assert!(samples[1].value.is_err());
        assert_eq!(samples[2].value.as_ref().unwrap().value, f64::MAX);
    }

    #[test]
    fn scalars_errors_and_matrices() {
        let scalar =
            parse(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"2.5"]}}"#)
                .unwrap();
        assert_eq!(scalar[0].value.as_ref().unwrap().value, 2.5);
        assert!(scalar[0].labels.as_ref().unwrap().is_empty());
        let error = parse(r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#)
            .unwrap_err();
        assert!(!error.retryable && error.message.contains("parse error"));
        let matrix = parse(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#)
            .unwrap_err();
        assert!(matrix.message.contains("matrix"));
        assert!(parse("oops").unwrap_err().retryable);
    }
}
