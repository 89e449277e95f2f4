//! `/api/v1/event-types`: the registry of event types. Admins write; every token reads, so
//! producers can look up the schema their events must satisfy.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use jiff::SignedDuration;
use serde::Serialize;
use serde_json::Value;
use tellify_model::Severity;
use tellify_store::EventType;

use super::{ApiError, ApiResult, AppState, Auth, JsonBody, Page};

use crate::auth::Scope;
use crate::services::event_types;

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
    let (stored, created) = event_types::put(&state, &auth.0, &name, &body).await?;
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
    event_types::delete(&state, &auth.0, &name).await?;
    Ok(StatusCode::NO_CONTENT)
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
