use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tellify_store::{FilterErrors, Subscription, SubscriptionHealth};

use super::{ApiError, ApiResult, AppState, Auth, JsonBody, Page};
use crate::auth::Scope;
use crate::services::subscriptions;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    title: Option<String>,
    params: Option<Value>,
    latching: Option<bool>,
    enabled: Option<bool>,
    /// A policy name, or "" to go back to `default`.
    policy: Option<String>,
}

/// A subscription as the API shows it, with owner names rather than ids.
#[derive(Serialize)]
pub struct SubscriptionView {
    id: String,
    kind: String,
    title: String,
    params: Value,
    owner: Option<String>,
    group: Option<String>,
    enabled: bool,
    latching: bool,
    policy: Option<String>,
    created: jiff::Timestamp,
    updated: jiff::Timestamp,
    /// Present while it is failing: the last error, how often in a row, and whether the
    /// server disabled it for failing too often.
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<SubscriptionHealth>,
    /// Present once its filter failed on an event (a type error, not a missing field):
    /// how often since the parameters last changed, the last error and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    filter_errors: Option<FilterErrors>,
}

async fn view(state: &AppState, subscription: Subscription) -> ApiResult<SubscriptionView> {
    let owner = state
        .store
        .user_by_id(&subscription.owner_user)
        .await?
        .map(|u| u.name);
    let mut groups = HashMap::new();
    if subscription.owner_group.is_some() {
        for group in state.store.list_groups().await? {
            groups.insert(group.id, group.name);
        }
    }
    Ok(render(subscription, owner, &groups))
}

fn render(
    subscription: Subscription,
    owner: Option<String>,
    groups: &HashMap<String, String>,
) -> SubscriptionView {
    let group = subscription
        .owner_group
        .as_ref()
        .and_then(|id| groups.get(id).cloned());
    SubscriptionView {
        id: subscription.id,
        kind: subscription.kind,
        title: subscription.title,
        params: subscription.params,
        owner,
        group,
        enabled: subscription.enabled,
        latching: subscription.latching,
        policy: subscription.policy,
        created: subscription.created,
        updated: subscription.updated,
        health: subscription.health,
        filter_errors: subscription.filter_errors,
    }
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(request): JsonBody<subscriptions::NewSubscription>,
) -> ApiResult<(StatusCode, Json<SubscriptionView>)> {
    let subscription = subscriptions::create(&state, &auth.0, request).await?;
    Ok((StatusCode::CREATED, Json(view(&state, subscription).await?)))
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Page<SubscriptionView>>> {
    let subscriptions = subscriptions::list(&state, &auth.0).await?;
    let users: HashMap<String, String> = state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect();
    let groups: HashMap<String, String> = state
        .store
        .list_groups()
        .await?
        .into_iter()
        .map(|g| (g.id, g.name))
        .collect();
    let items = subscriptions
        .into_iter()
        .map(|s| {
            let owner = users.get(&s.owner_user).cloned();
            render(s, owner, &groups)
        })
        .collect();
    Ok(Json(Page { items, next: None }))
}

pub async fn get_one(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<SubscriptionView>> {
    let subscription = subscriptions::visible(&state, &auth.0, &id).await?;
    Ok(Json(view(&state, subscription).await?))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<UpdateRequest>,
) -> ApiResult<Json<SubscriptionView>> {
    let changes = subscriptions::SubscriptionChanges {
        title: request.title,
        params: request.params,
        latching: request.latching,
        enabled: request.enabled,
        policy: request.policy,
    };
    let subscription = subscriptions::update(&state, &auth.0, &id, changes).await?;
    Ok(Json(view(&state, subscription).await?))
}

async fn set_enabled(
    state: AppState,
    auth: Auth,
    id: String,
    enabled: bool,
) -> ApiResult<Json<SubscriptionView>> {
    let subscription = subscriptions::set_enabled(&state, &auth.0, &id, enabled).await?;
    Ok(Json(view(&state, subscription).await?))
}

pub async fn enable(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<SubscriptionView>> {
    set_enabled(state, auth, id, true).await
}

pub async fn disable(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<SubscriptionView>> {
    set_enabled(state, auth, id, false).await
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    subscriptions::delete(&state, &auth.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One row of `GET /api/v1/subscriptions/costs`.
#[derive(Serialize)]
pub struct CostView {
    id: String,
    title: Option<String>,
    owner: Option<String>,
    calls: u64,
    total_ms: f64,
    max_ms: f64,
    mean_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<SubscriptionHealth>,
}

/// `GET /api/v1/subscriptions/costs` (admins): the subscriptions that took the most
/// processing time since the server started, costliest first, with their health.
pub async fn costs(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Page<CostView>>> {
    let principal = auth.require(Scope::User)?;
    if !principal.is_admin() {
        return Err(ApiError::forbidden("only admins see processing costs"));
    }
    let users: HashMap<String, String> = state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect();
    let mut items = Vec::new();
    for cost in state.worker.costliest() {
        let subscription = state.store.subscription(&cost.subscription_id).await?;
        let mean_us = cost.total_micros.checked_div(cost.calls).unwrap_or(0);
        items.push(CostView {
            title: subscription.as_ref().map(|s| s.title.clone()),
            owner: subscription
                .as_ref()
                .and_then(|s| users.get(&s.owner_user).cloned()),
            health: subscription.and_then(|s| s.health),
            id: cost.subscription_id,
            calls: cost.calls,
            total_ms: cost.total_micros as f64 / 1000.0,
            max_ms: cost.max_micros as f64 / 1000.0,
            mean_us,
        });
    }
    Ok(Json(Page { items, next: None }))
}

/// The body of `POST /api/v1/subscriptions/preview`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    /// Exactly the body `POST /api/v1/subscriptions` takes.
    subscription: Value,
    /// RFC 3339, or a duration meaning that long ago (`24h`), as `since` in event search.
    from: Option<String>,
    to: Option<String>,
}

/// `POST /api/v1/subscriptions/preview`: what the subscription, not saved, would have
/// fired over the stored events of a window.
pub async fn preview(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<PreviewBody>,
) -> ApiResult<Json<crate::services::preview::Preview>> {
    let now = state.clock.now();
    let mut errors = Vec::new();
    let mut when = |name: &str, text: Option<String>| {
        let text = text?;
        match crate::services::validate::parse_when(name, &text, now, false) {
            Ok(time) => Some(time),
            Err(message) => {
                errors.push(tellify_engine::ParamError::new(name, message));
                None
            }
        }
    };
    let from = when("from", body.from);
    let to = when("to", body.to);
    crate::services::ServiceError::check(errors)?;
    let request = crate::services::preview::PreviewRequest {
        subscription: body.subscription,
        from,
        to,
    };
    Ok(Json(
        crate::services::preview::preview(&state, &auth.0, request).await?,
    ))
}
