//! `/api/v1/event-types`: the registry of event types. Admins write; every token reads, so
//! producers can look up the schema their events must satisfy.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use jiff::SignedDuration;
use serde::Serialize;
use serde_json::{Map, Value};
use tellify_engine::ParamError;
use tellify_model::Severity;
use tellify_store::EventType;

use super::{ApiError, ApiResult, AppState, Auth, JsonBody, Page};

/// How long identical events are folded into one: up to a week.
const DEDUP_INTERVAL: tellify_model::DurationRange = tellify_model::DurationRange::new(
    jiff::SignedDuration::from_secs(1),
    jiff::SignedDuration::from_hours(24 * 7),
);
use crate::auth::Scope;
use crate::event_types::compile_schema;

/// Longest type name, in bytes.
const MAX_NAME_BYTES: usize = 128;

/// An event type as the API shows it.
#[derive(Serialize)]
pub struct EventTypeView {
    name: String,
    description: String,
    category: Option<String>,
    default_severity: Option<Severity>,
    schema: Option<Value>,
    /// Written like `10m` or `1h30m`; `null` when events of the type are never merged.
    dedup_interval: Option<String>,
    created: jiff::Timestamp,
    updated: jiff::Timestamp,
}

fn view(record: EventType) -> EventTypeView {
    EventTypeView {
        name: record.name,
        description: record.description,
        category: record.category,
        default_severity: record.default_severity,
        schema: record.schema,
        dedup_interval: record.dedup_interval.map(format_interval),
        created: record.created,
        updated: record.updated,
    }
}

/// `GET /api/v1/event-types`: every type, by name.
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Page<EventTypeView>>> {
    auth.require(Scope::User)?;
    let items = state
        .store
        .list_event_types()
        .await?
        .into_iter()
        .map(view)
        .collect();
    Ok(Json(Page { items, next: None }))
}

/// `GET /api/v1/event-types/{name}`.
pub async fn get_one(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<EventTypeView>> {
    auth.require(Scope::User)?;
    let record = state
        .store
        .event_type(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("event type"))?;
    Ok(Json(view(record)))
}

/// `PUT /api/v1/event-types/{name}`: creates (201) or replaces (200) a type, after checking
/// the whole body and reporting every problem with its path.
pub async fn put(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<EventTypeView>)> {
    auth.require(Scope::Admin)?;
    let now = state.clock.now();
    let mut record = parse_definition(&name, &body).map_err(|errors| ApiError::params(&errors))?;
    record.created = now;
    record.updated = now;
    let created = state.store.put_event_type(record).await?;
    // The ingest check must know the new definition before this call answers.
    state
        .event_types
        .refresh(state.store.as_ref(), &name)
        .await?;
    let stored = state
        .store
        .event_type(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("event type"))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(stored))))
}

/// `DELETE /api/v1/event-types/{name}`: events already stored keep their type; new ones
/// are no longer checked (or, with `ingest.strict_types`, no longer accepted).
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require(Scope::Admin)?;
    let removed = state.store.delete_event_type(&name).await?;
    state
        .event_types
        .refresh(state.store.as_ref(), &name)
        .await?;
    if !removed {
        return Err(ApiError::not_found("event type"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Reads a type definition from a request body, collecting every problem with its path.
/// The times are left for the caller to set.
fn parse_definition(name: &str, body: &Value) -> Result<EventType, Vec<ParamError>> {
    let mut errors = Vec::new();
    check_name(name, &mut errors);
    let empty = Map::new();
    let object = match body {
        Value::Object(object) => object,
        _ => {
            errors.push(ParamError::new("", "the body must be a JSON object"));
            &empty
        }
    };
    let mut record = EventType {
        name: name.to_string(),
        description: String::new(),
        category: None,
        default_severity: None,
        schema: None,
        dedup_interval: None,
        created: jiff::Timestamp::UNIX_EPOCH,
        updated: jiff::Timestamp::UNIX_EPOCH,
    };
    for (key, value) in object {
        let mut fail = |message: String| errors.push(ParamError::new(key.as_str(), message));
        match (key.as_str(), value) {
            (_, Value::Null) if key != "name" => {}
            ("name", Value::String(text)) if text == name => {}
            ("name", _) => fail(format!("must be `{name}`, the name in the path, or absent")),
            ("description", Value::String(text)) => record.description = text.clone(),
            ("category", Value::String(text)) => record.category = Some(text.clone()),
            ("default_severity", Value::String(text)) => match text.parse::<Severity>() {
                Ok(severity) => record.default_severity = Some(severity),
                Err(message) => fail(message),
            },
            ("schema", schema) => match compile_schema(schema) {
                Ok(_) => record.schema = Some(schema.clone()),
                Err(message) => fail(format!("not a valid JSON Schema: {message}")),
            },
            ("dedup_interval", Value::String(text)) => match DEDUP_INTERVAL.parse(text) {
                Ok(interval) => record.dedup_interval = Some(interval),
                Err(error) => fail(error.to_string()),
            },
            ("description" | "category" | "default_severity" | "dedup_interval", _) => {
                fail("must be a string".to_string())
            }
            (other, _) => fail(format!(
                "unknown key `{other}`; an event type has description, category, \
                 default_severity, schema and dedup_interval"
            )),
        }
    }
    if errors.is_empty() {
        Ok(record)
    } else {
        Err(errors)
    }
}

fn check_name(name: &str, errors: &mut Vec<ParamError>) {
    if name.is_empty() {
        errors.push(ParamError::new("name", "must not be empty"));
        return;
    }
    if name.len() > MAX_NAME_BYTES {
        errors.push(ParamError::new(
            "name",
            format!(
                "is {} bytes, more than the limit of {MAX_NAME_BYTES}",
                name.len()
            ),
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if !name.chars().all(allowed) {
        errors.push(ParamError::new(
            "name",
            format!("`{name}` may hold only letters, digits and `.`, `_`, `-`, `:`"),
        ));
    }
}

/// Writes an interval the way people type one: `90s`, `10m`, `1h30m`, `500ms`.
fn format_interval(interval: SignedDuration) -> String {
    let total_ms = interval.as_millis().max(0);
    let (hours, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    let mut text = String::new();
    for (amount, unit) in [(hours, "h"), (minutes, "m"), (seconds, "s"), (millis, "ms")] {
        if amount > 0 {
            text.push_str(&format!("{amount}{unit}"));
        }
    }
    if text.is_empty() {
        text.push_str("0s");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_definition_reports_every_problem_with_its_path() {
        let errors = parse_definition(
            "disk full",
            &json!({"default_severity": "fatal", "schema": {"type": 5}, "dedup_interval": "soon",
                    "description": 3, "colour": "red", "name": "other"}),
        )
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for path in [
            "name",
            "default_severity",
            "schema",
            "dedup_interval",
            "description",
            "colour",
        ] {
            assert!(paths.contains(&path), "{path} missing from {errors:?}");
        }
    }

    #[test]
    fn a_good_definition_parses() {
        let record = parse_definition(
            "disk",
            &json!({"description": "d", "category": "storage", "default_severity": "warn",
                    "schema": {"type": "object"}, "dedup_interval": "10m", "name": "disk"}),
        )
        .unwrap();
        assert_eq!(record.default_severity, Some(Severity::Warning));
        assert_eq!(record.dedup_interval, Some(SignedDuration::from_mins(10)));
        assert_eq!(record.category.as_deref(), Some("storage"));
    }

    #[test]
    fn intervals_are_written_as_typed() {
        assert_eq!(format_interval(SignedDuration::from_mins(10)), "10m");
        assert_eq!(format_interval(SignedDuration::from_secs(5400)), "1h30m");
        assert_eq!(
            format_interval(SignedDuration::from_millis(1500)),
            "1s500ms"
        );
    }
}
