//! The event-type registry: admins write types; each write refreshes the ingest check's
//! copy ([`crate::event_types::EventTypes`]) before the caller hears back, so an event sent
//! right after is checked against the new definition.

use serde_json::{Map, Value};
use tellify_engine::ParamError;
use tellify_model::Severity;
use tellify_store::EventType;

use super::caches;
use super::error::{require, ServiceError, ServiceResult};
use super::validate::{check_name, EVENT_TYPE_NAME};
use super::Services;
use crate::auth::{Principal, Scope};
use crate::event_types::compile_schema;

/// How long identical events are folded into one: up to a week.
const DEDUP_INTERVAL: tellify_model::DurationRange = tellify_model::DurationRange::new(
    jiff::SignedDuration::from_secs(1),
    jiff::SignedDuration::from_hours(24 * 7),
);

/// Creates or replaces the type `name` from its JSON definition (admins only), after
/// checking the whole body and reporting every problem with its path. Returns the stored
/// type and whether it is new.
pub async fn put(
    services: &Services,
    principal: &Principal,
    name: &str,
    body: &Value,
) -> ServiceResult<(EventType, bool)> {
    require(principal, Scope::Admin)?;
    let now = services.clock.now();
    let mut record = parse_definition(name, body).map_err(ServiceError::Invalid)?;
    record.created = now;
    record.updated = now;
    let created = services.store.put_event_type(record).await?;
    caches::event_type_changed(services, name).await?;
    let stored = services
        .store
        .event_type(name)
        .await?
        .ok_or(ServiceError::NotFound("event type"))?;
    Ok((stored, created))
}

/// Deletes the type `name` (admins only): events already stored keep their type; new ones
/// are no longer checked (or, with `ingest.strict_types`, no longer accepted).
pub async fn delete(services: &Services, principal: &Principal, name: &str) -> ServiceResult<()> {
    require(principal, Scope::Admin)?;
    let removed = services.store.delete_event_type(name).await?;
    caches::event_type_changed(services, name).await?;
    if !removed {
        return Err(ServiceError::NotFound("event type"));
    }
    Ok(())
}

/// Reads a type definition from a request body, collecting every problem with its path.
/// The times are left for the caller to set.
pub fn parse_definition(name: &str, body: &Value) -> Result<EventType, Vec<ParamError>> {
    let mut errors = Vec::new();
    check_name(name, "name", &EVENT_TYPE_NAME, &mut errors);
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

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;
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
}
