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
            ParamError::new(path, message_of(&error))
        })
        .collect()
}

/// A schema failure in words. A duration that does not look like one is said the way the
/// duration parser says it, not as a regular expression.
fn message_of(error: &jsonschema::ValidationError<'_>) -> String {
    if let jsonschema::error::ValidationErrorKind::Pattern { pattern } = error.kind() {
        if pattern == tellify_model::DURATION_PATTERN {
            let text = error.instance().as_str().unwrap_or_default().to_string();
            return tellify_model::DurationError {
                text,
                reason: "use a form like 90s, 10m, 1h30m or 2d".to_string(),
            }
            .to_string();
        }
    }
    error.to_string()
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_duration_pattern_admits_every_form_the_parser_takes() {
        let schema = json!({"type": "string", "pattern": tellify_model::DURATION_PATTERN});
        for text in [
            "90s", "10m", "1h30m", "2 days", "1h, 30m", " 5m ", "1.5h", "PT10M", "2d",
        ] {
            assert!(tellify_model::parse_duration(text).is_ok(), "{text} parses");
            assert_eq!(
                check_schema(&schema, &json!(text)),
                vec![],
                "{text} matches"
            );
        }
        for text in ["", "soon", "10", "m10", "10m!"] {
            let errors = check_schema(&schema, &json!(text));
            assert_eq!(
                errors,
                vec![ParamError::new(
                    "params",
                    format!("invalid duration `{text}`: use a form like 90s, 10m, 1h30m or 2d")
                )],
                "{text}"
            );
        }
    }
}
