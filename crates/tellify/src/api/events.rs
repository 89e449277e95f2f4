use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tellify_engine::filter::{EventContext, Filter};
use tellify_store::{EventQuery, ListedEvent};

use super::{
    clamp_limit, parse_time_param, ApiError, ApiResult, AppState, Auth, Page, QueryParams,
};
use crate::auth::Scope;
use crate::ingest::{parse_events_checked, store_events};
use crate::telemetry;

/// Rows scanned at most per `GET /events` request when a filter is selective.
const MAX_SCAN: usize = 20_000;

/// `POST /api/v1/events`: stores the events durably, then answers 202 with their ids.
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
    check_backlog(&state)?;
    let inputs = parse_events_checked(
        content_type,
        &body,
        &state.settings.ingest,
        &state.settings.limits,
        &state.event_types.check(state.settings.ingest.strict_types),
    )
    .inspect_err(|_| metrics::counter!(telemetry::INGEST_REJECTED).increment(1))?;
    let appended = store_events(&state, inputs, &principal.user.name).await?;
    let duplicates = appended.iter().filter(|a| a.duplicate).count();
    let repeats = appended.iter().filter(|a| a.repeat && !a.duplicate).count();
    let ids: Vec<&str> = appended.iter().map(|a| a.id.as_str()).collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({"ids": ids, "accepted": ids.len(), "duplicates": duplicates, "repeats": repeats}),
        ),
    ))
}

/// 503 with `Retry-After` while processing is more than `ingest.max_backlog_events` behind,
/// so alerts stay timely and producers back off; shared by every ingest route.
pub(super) fn check_backlog(state: &AppState) -> ApiResult<()> {
    let limit = state.settings.ingest.max_backlog_events as i64;
    let backlog = state.worker.backlog();
    if limit > 0 && backlog > limit {
        metrics::counter!(telemetry::INGEST_REJECTED).increment(1);
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            format!(
                "processing is {backlog} events behind (limit {limit}, ingest.max_backlog_events); \
                 nothing was stored, retry shortly"
            ),
        );
        error.retry_after = Some(1);
        return Err(error);
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct ListQuery {
    filter: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/v1/events`: newest first, filtered with the subscription filter language.
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<Page<ListedEvent>>> {
    auth.require(Scope::User)?;
    let now = state.clock.now();
    let filter = match query.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(source) => Some(Filter::compile(source).map_err(|error| {
            ApiError::bad_request(format!("`filter`: {error}")).with_errors(&[json!({
                "field": "filter", "line": error.line, "column": error.column, "message": error.message
            })])
        })?),
        None => None,
    };
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
    let limit = clamp_limit(query.limit, 100, 1000);
    let mut before = match query.cursor.as_deref() {
        Some(cursor) => Some(cursor.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "`cursor`: `{cursor}` is not a cursor from a previous page"
            ))
        })?),
        None => None,
    };
    // Collect one more match than asked: it tells whether another page follows. A selective
    // filter stops after MAX_SCAN rows and hands back a cursor to scan on from.
    let mut items: Vec<ListedEvent> = Vec::new();
    let mut scanned = 0;
    let page_size = if filter.is_some() { 1000 } else { limit + 1 };
    loop {
        let rows = state
            .store
            .query_events(EventQuery {
                since,
                until,
                before_seq: before,
                limit: page_size,
            })
            .await?;
        let exhausted = rows.len() < page_size;
        for event in rows {
            scanned += 1;
            before = Some(event.seq);
            let keep = match &filter {
                Some(filter) => filter.matches(&EventContext::new(&event)),
                None => true,
            };
            if keep {
                items.push(event);
                if items.len() > limit {
                    break;
                }
            }
        }
        if items.len() > limit {
            items.truncate(limit);
            let next = items.last().map(|event| event.seq.to_string());
            return Ok(Json(Page { items, next }));
        }
        if exhausted {
            return Ok(Json(Page { items, next: None }));
        }
        if scanned >= MAX_SCAN {
            let next = before.map(|seq| seq.to_string());
            return Ok(Json(Page { items, next }));
        }
    }
}

pub async fn get_one(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ListedEvent>> {
    auth.require(Scope::User)?;
    let event = state
        .store
        .event(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("event"))?;
    Ok(Json(event))
}
