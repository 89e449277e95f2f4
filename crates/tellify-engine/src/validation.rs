use serde::Serialize;

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

/// Parses a duration parameter, recording a failure at `path` if it is not one.
pub fn duration_param(
    value: Option<&str>,
    path: &str,
    errors: &mut Vec<ParamError>,
) -> Option<jiff::SignedDuration> {
    let text = value?;
    match tellify_model::parse_duration(text) {
        Ok(duration) => Some(duration),
        Err(error) => {
            errors.push(ParamError::new(path, error.to_string()));
            None
        }
    }
}
