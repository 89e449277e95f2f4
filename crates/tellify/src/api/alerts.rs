use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use tellify_engine::alerts::{Action, Alert, AlertState, HistoryEntry};
use tellify_model::Severity;
use tellify_store::{AlertQuery, ClearedFilter};

use super::{
    clamp_limit, parse_future_param, ApiError, ApiResult, AppState, Auth, JsonBody, Page,
    QueryParams,
};
use crate::auth::{Principal, Scope};
use crate::stream::{AlertNotice, StreamItem};

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
    let (alert_state, cleared) = match query.state.as_deref() {
        None | Some("") => (None, ClearedFilter::Exclude),
        Some("firing") => (Some(AlertState::Firing), ClearedFilter::Exclude),
        Some("resolved") => (Some(AlertState::Resolved), ClearedFilter::Exclude),
        Some("cleared") => (None, ClearedFilter::Only),
        Some("all") => (None, ClearedFilter::Include),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`state`: `{other}` is not one of firing, resolved, cleared, all"
            )))
        }
    };
    let severity = query
        .severity
        .as_deref()
        .map(|s| {
            s.parse::<Severity>()
                .map_err(|e| ApiError::bad_request(format!("`severity`: {e}")))
        })
        .transpose()?;
    let limit = clamp_limit(query.limit, 100, 1000);
    let viewer = (!principal.is_admin()).then(|| principal.viewer());
    let mut alerts = state
        .store
        .list_alerts(AlertQuery {
            viewer,
            state: alert_state,
            subscription_id: query.subscription,
            severity,
            cleared,
            before_id: query.cursor,
            // One more than asked tells whether another page follows.
            limit: limit + 1,
        })
        .await?;
    let more = alerts.len() > limit;
    alerts.truncate(limit);
    let now = state.clock.now();
    let next = if more {
        alerts.last().map(|a| a.id.clone())
    } else {
        None
    };
    let items = alerts.into_iter().map(|alert| alert.at(now)).collect();
    Ok(Json(Page { items, next }))
}

async fn visible(state: &AppState, principal: &Principal, id: &str) -> ApiResult<Alert> {
    match state.store.alert(id).await? {
        Some(alert)
            if principal.can_see(alert.owner_user.as_deref(), alert.owner_group.as_deref()) =>
        {
            Ok(alert)
        }
        _ => Err(ApiError::not_found("alert")),
    }
}

pub async fn get_one(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertWithHistory>> {
    let principal = auth.require(Scope::User)?;
    let alert = visible(&state, principal, &id).await?;
    let history = state.store.alert_history(&id).await?;
    Ok(Json(AlertWithHistory {
        alert: alert.at(state.clock.now()),
        history,
    }))
}

pub(super) async fn act(
    state: AppState,
    auth: Auth,
    id: String,
    action: Action,
) -> ApiResult<Json<Alert>> {
    let principal = auth.require(Scope::User)?;
    visible(&state, principal, &id).await?;
    let now = state.clock.now();
    let change = state
        .store
        .act_on_alert(&id, action, &principal.user.name, now)
        .await?;
    state.bus.publish(StreamItem::Alert(Arc::new(AlertNotice {
        alert: change.alert.clone(),
        history: change.history,
    })));
    Ok(Json(change.alert.at(now)))
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
