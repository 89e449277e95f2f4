use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tellify_engine::filter::{EventContext, Filter, FilterErrorKind};
use tellify_engine::IndexValue;
use tellify_store::{EventSearch, ListedEvent};

use super::{clamp_limit, parse_time_param, ApiError, ApiResult, AppState, Auth, QueryParams};
use crate::auth::Scope;
use crate::ingest::{count_rejected, parse_events_reporting, store_events, StoreEventsError};

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
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    filter: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// Rows one store step looks at: one step holds a read connection for a few milliseconds.
const ROWS_PER_STEP: usize = 1000;

/// A page of events. `next` resumes the search; `partial` says it stopped at its budget
/// (time or rows) rather than at a full page or the start of the log.
#[derive(Serialize)]
pub struct EventPage {
    pub items: Vec<ListedEvent>,
    pub next: Option<String>,
    pub partial: bool,
    /// Stored events looked at (an upper bound).
    pub examined: usize,
}

/// `GET /api/v1/events`: newest first, filtered with the subscription filter language.
///
/// The search goes back through the log in bounded store steps: the filter's type and
/// `field == literal` predicates are pushed into the store, the rest of the filter runs on
/// a blocking thread. It stops at a full page, at the start of the log, or at the
/// `[search]` budget, whichever comes first; `next` then says where to go on.
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<EventPage>> {
    auth.require(Scope::User)?;
    let now = state.clock.now();
    let filter = match query.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(source) => Some(Arc::new(Filter::compile(source).map_err(|error| {
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
        })?)),
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
    let (event_type, field_equals) = match &filter {
        Some(filter) => pushdown(filter),
        None => (None, Vec::new()),
    };
    let budget = &state.settings.search;
    let deadline = Instant::now() + Duration::from_millis(budget.time_budget_ms);
    // Collect one more match than asked: it tells whether another page follows.
    let mut items: Vec<ListedEvent> = Vec::new();
    let mut examined = 0;
    loop {
        let rows_left = budget.max_rows_examined.saturating_sub(examined);
        let max_examined = rows_left.clamp(1, ROWS_PER_STEP);
        // With a filter the store cannot tell which of its rows will match: it hands back
        // every row that passed what it could check, and the filter picks.
        let wanted = limit + 1 - items.len();
        let step_limit = if filter.is_some() {
            max_examined
        } else {
            wanted
        };
        let step = state
            .store
            .search_events(EventSearch {
                since,
                until,
                before_seq: before,
                event_type: event_type.clone(),
                field_equals: field_equals.clone(),
                limit: step_limit,
                max_examined,
            })
            .await?;
        examined += step.examined;
        let (kept, unfinished) = match &filter {
            Some(filter) => {
                let filter = filter.clone();
                tokio::task::spawn_blocking(move || {
                    evaluate_until(&filter, step.events, wanted, deadline)
                })
                .await
                .map_err(|error| {
                    tracing::error!(%error, "event search evaluation stopped");
                    ApiError::new(
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "Internal Server Error",
                        "the search failed",
                    )
                })?
            }
            None => (step.events, None),
        };
        items.extend(kept);
        if items.len() > limit {
            items.truncate(limit);
            let next = items.last().map(|event| event.seq.to_string());
            return Ok(Json(EventPage {
                items,
                next,
                partial: false,
                examined,
            }));
        }
        if let Some(seq) = unfinished {
            // Stopped by the deadline before this event: the next page starts with it.
            return Ok(partial_page(items, seq.saturating_add(1), examined));
        }
        let Some(resume) = step.resume_before else {
            return Ok(Json(EventPage {
                items,
                next: None,
                partial: false,
                examined,
            }));
        };
        before = Some(resume);
        // Checked after a step, so every request moves the cursor on.
        if examined >= budget.max_rows_examined || Instant::now() >= deadline {
            return Ok(partial_page(items, resume, examined));
        }
    }
}

fn partial_page(items: Vec<ListedEvent>, before: i64, examined: usize) -> Json<EventPage> {
    Json(EventPage {
        items,
        next: Some(before.to_string()),
        partial: true,
        examined,
    })
}

/// The filter's predicates the store can apply: `event.type == "x"` through its type
/// index, `name == literal` on ordinary top-level fields as a pre-filter. The names that
/// fall back to the envelope when no field has them (`severity`, `host`, ...) stay with
/// CEL, so the pre-filter never drops an event the filter accepts.
fn pushdown(filter: &Filter) -> (Option<String>, Vec<(String, IndexValue)>) {
    let mut event_type = None;
    let mut field_equals = Vec::new();
    for (name, value) in filter.equalities() {
        match (name.as_str(), value) {
            ("event.type", IndexValue::Str(kind)) if event_type.is_none() => {
                event_type = Some(kind.clone())
            }
            ("severity" | "message" | "host" | "component", _) => {}
            (field, _) if !field.starts_with("event.") => {
                field_equals.push((field.to_string(), value.clone()))
            }
            _ => {}
        }
    }
    (event_type, field_equals)
}

/// Runs the filter over `events` (newest first) until `wanted` match or the deadline
/// passes; returns the matches and, when stopped by the deadline, the `seq` of the first
/// event not looked at. The first event is always looked at, so a search makes progress
/// however small its budget.
fn evaluate_until(
    filter: &Filter,
    events: Vec<ListedEvent>,
    wanted: usize,
    deadline: Instant,
) -> (Vec<ListedEvent>, Option<i64>) {
    let mut kept = Vec::new();
    for (index, event) in events.into_iter().enumerate() {
        if kept.len() >= wanted {
            break;
        }
        if index > 0 && Instant::now() >= deadline {
            return (kept, Some(event.seq));
        }
        if filter.matches(&EventContext::new(&event)) {
            kept.push(event);
        }
    }
    (kept, None)
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
