use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use serde::Deserialize;
use serde_json::json;
use tellify_engine::filter::FilterErrorKind;
use tellify_store::ListedEvent;

use super::{clamp_limit, parse_time_param, ApiError, ApiResult, AppState, Auth, QueryParams};
use crate::auth::Scope;
use crate::ingest::{count_rejected, parse_events_reporting, store_events, StoreEventsError};
use crate::services::events::{self, EventPage, SearchRequest};

/// `POST /api/v1/events`: stores the events durably, then answers 202 with their ids
/// (and `warnings`, when some of the input was probably not meant as it was read).
pub async fn ingest(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let principal = auth.require(Scope::Ingest)?;
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "Payload Too Large",
                format!(
                    "request body is larger than the limit of {} bytes (ingest.max_body_bytes)",
                    state.settings.ingest.max_body_bytes
                ),
            )
        } else {
            ApiError::new(status, "Bad Request", rejection.body_text())
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let batch = parse_events_reporting(
        content_type,
        &body,
        &state.settings.ingest,
        &state.settings.limits,
        &state.event_types.check(state.settings.ingest.strict_types),
    )
    .inspect_err(|_| count_rejected())?;
    let appended = store_events(&state, batch.events, &principal.user.name).await?;
    let duplicates = appended.iter().filter(|a| a.duplicate).count();
    let repeats = appended.iter().filter(|a| a.repeat && !a.duplicate).count();
    let ids: Vec<&str> = appended.iter().map(|a| a.id.as_str()).collect();
    let mut answer =
        json!({"ids": ids, "accepted": ids.len(), "duplicates": duplicates, "repeats": repeats});
    // Stored as sent, but probably not as meant: said in the answer, only when there is
    // something to say, so answers to clean input stay as they were.
    if !batch.warnings.is_empty() {
        answer["warnings"] = json!(batch.warnings);
    }
    if batch.warnings_omitted > 0 {
        answer["warnings_omitted"] = json!(batch.warnings_omitted);
    }
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// A batch `ingest::store_events` did not store: a backlog is 503 with `Retry-After`, so
/// producers back off and alerts stay timely; a store failure maps as everywhere.
impl From<StoreEventsError> for ApiError {
    fn from(error: StoreEventsError) -> ApiError {
        match error {
            StoreEventsError::Backlog { .. } => {
                let mut refused = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable",
                    format!("{error}; nothing was stored, retry shortly"),
                );
                refused.retry_after = Some(1);
                refused
            }
            StoreEventsError::Store(error) => error.into(),
            StoreEventsError::TooLarge(_) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload Too Large",
                format!("{error}; nothing was stored"),
            ),
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    filter: Option<String>,
    since: Option<String>,
    until: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    text: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/v1/events`: newest first, filtered with the subscription filter language,
/// within the `[search]` budget (`services::events::search`).
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<EventPage>> {
    let principal = auth.require(Scope::User)?;
    let now = state.clock.now();
    let filter = events::compile_filter(query.filter.as_deref()).map_err(|error| {
        let problem = json!({
            "field": "filter", "path": "filter", "line": error.line,
            "column": error.column, "message": error.message
        });
        let detail = format!("`filter`: {error}");
        match error.kind {
            FilterErrorKind::TooCostly => ApiError::unprocessable(detail),
            FilterErrorKind::Invalid => ApiError::bad_request(detail),
        }
        .with_errors(&[problem])
    })?;
    let since = query
        .since
        .as_deref()
        .map(|t| parse_time_param("since", t, now))
        .transpose()?;
    let until = query
        .until
        .as_deref()
        .map(|t| parse_time_param("until", t, now))
        .transpose()?;
    let before = match query.cursor.as_deref() {
        Some(cursor) => Some(events::parse_cursor(cursor).map_err(|_| {
            ApiError::bad_request(format!(
                "`cursor`: `{cursor}` is not a cursor from a previous page"
            ))
        })?),
        None => None,
    };
    let page = events::search(
        &state,
        principal,
        SearchRequest {
            filter,
            since,
            until,
            event_type: query.event_type,
            text: query.text,
            before,
            limit: clamp_limit(query.limit, 100, 1000),
        },
    )
    .await?;
    Ok(Json(page))
}

pub async fn get_one(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ListedEvent>> {
    let principal = auth.require(Scope::User)?;
    Ok(Json(events::get(&state, principal, &id).await?))
}
