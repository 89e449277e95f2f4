use jiff::SignedDuration;
use serde::Serialize;
pub use tellify_model::DurationRange;

const fn days(count: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * count)
}

/// A `count` window: long enough for a monthly pattern, short enough that the entries a
/// window holds stay a bounded working set.
pub const COUNT_WINDOW: DurationRange = DurationRange::new(SignedDuration::from_secs(1), days(31));
/// An `absence` interval: a yearly heartbeat at most.
pub const ABSENCE_INTERVAL: DurationRange =
    DurationRange::new(SignedDuration::from_secs(1), days(366));
/// How often a `metric` subscription polls.
pub const POLL_INTERVAL: DurationRange = DurationRange::new(SignedDuration::from_secs(1), days(1));
/// How often a firing `metric` series repeats its alert.
pub const REPEAT_INTERVAL: DurationRange =
    DurationRange::new(SignedDuration::from_secs(1), days(366));
/// How long a Prometheus alert stays firing without being posted again.
pub const RESOLVE_TIMEOUT: DurationRange =
    DurationRange::new(SignedDuration::from_secs(1), days(31));

/// One thing wrong with a subscription's parameters, with the path to it
/// (`params.critical`, `params.filter`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParamError {
    pub path: String,
    pub message: String,
}

impl ParamError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ParamError {
        ParamError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Checks `params` against a JSON Schema, returning every failure with a `params.`-rooted
/// path. The schemas are ours and known to be valid, so a broken one is reported as a
/// failure at `params` rather than a panic.
pub fn check_schema(schema: &serde_json::Value, params: &serde_json::Value) -> Vec<ParamError> {
    let validator = match jsonschema::validator_for(schema) {
        Ok(validator) => validator,
        Err(error) => return vec![ParamError::new("params", format!("schema error: {error}"))],
    };
    validator
        .iter_errors(params)
        .map(|error| {
            let pointer = error.instance_path().to_string();
            let mut path = String::from("params");
            for segment in pointer.split('/').filter(|s| !s.is_empty()) {
                path.push('.');
                path.push_str(segment);
            }
            ParamError::new(path, error.to_string())
        })
        .collect()
}

/// Parses a duration parameter, recording a failure at `path` if it is not one or lies
/// outside `range` (the message names the range).
pub fn duration_param(
    value: Option<&str>,
    path: &str,
    range: DurationRange,
    errors: &mut Vec<ParamError>,
) -> Option<jiff::SignedDuration> {
    let text = value?;
    match range.parse(text) {
        Ok(duration) => Some(duration),
        Err(error) => {
            errors.push(ParamError::new(path, error.to_string()));
            None
        }
    }
}
