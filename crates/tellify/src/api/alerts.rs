use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use tellify_engine::alerts::{Action, Alert, HistoryEntry};
use tellify_model::Severity;

use super::{
    clamp_limit, parse_future_param, ApiError, ApiResult, AppState, Auth, JsonBody, Page,
    QueryParams,
};
use crate::auth::Scope;
use crate::services::alerts::{self, AlertFilter, StateFilter};

#[derive(Deserialize)]
pub struct ListQuery {
    /// `firing`, `resolved`, `cleared` or `all`.
    state: Option<String>,
    subscription: Option<String>,
    severity: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct AlertWithHistory {
    #[serde(flatten)]
    alert: Alert,
    history: Vec<HistoryEntry>,
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<Page<Alert>>> {
    let principal = auth.require(Scope::User)?;
    let alert_state = StateFilter::parse(query.state.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("`state`: {e}")))?;
    let severity = query
        .severity
        .as_deref()
        .map(|s| {
            s.parse::<Severity>()
                .map_err(|e| ApiError::bad_request(format!("`severity`: {e}")))
        })
        .transpose()?;
    let page = alerts::list(
        &state,
        principal,
        AlertFilter {
            state: alert_state,
            subscription: query.subscription,
            severity,
            before: query.cursor,
            limit: clamp_limit(query.limit, 100, 1000),
        },
    )
    .await?;
    Ok(Json(Page {
        items: page.items,
        next: page.next,
    }))
}

pub async fn get_one(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertWithHistory>> {
    let principal = auth.require(Scope::User)?;
    let (alert, history) = alerts::with_history(&state, principal, &id).await?;
    Ok(Json(AlertWithHistory { alert, history }))
}

pub(super) async fn act(
    state: AppState,
    auth: Auth,
    id: String,
    action: Action,
) -> ApiResult<Json<Alert>> {
    let principal = auth.require(Scope::User)?;
    Ok(Json(alerts::act(&state, principal, &id, action).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    note: Option<String>,
    /// RFC 3339 time or a duration from now (`2h`).
    expires: Option<String>,
}

pub async fn ack(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Alert>> {
    let request: AckRequest = super::optional_json(&body)?;
    let now = state.clock.now();
    let expires = request
        .expires
        .as_deref()
        .map(|t| parse_future_param("expires", t, now))
        .transpose()?;
    act(
        state,
        auth,
        id,
        Action::Ack {
            note: request.note,
            expires,
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShelveRequest {
    /// RFC 3339 time or a duration from now (`30m`).
    until: Option<String>,
    #[serde(default)]
    oneshot: bool,
    reason: Option<String>,
}

pub async fn shelve(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ShelveRequest>,
) -> ApiResult<Json<Alert>> {
    let now = state.clock.now();
    let until = request
        .until
        .as_deref()
        .map(|t| parse_future_param("until", t, now))
        .transpose()?;
    act(
        state,
        auth,
        id,
        Action::Shelve {
            until,
            oneshot: request.oneshot,
            reason: request.reason,
        },
    )
    .await
}

pub async fn unshelve(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Alert>> {
    act(state, auth, id, Action::Unshelve).await
}

pub async fn clear(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Alert>> {
    act(state, auth, id, Action::Clear).await
}
