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
pub struct CreateRequest {
    kind: String,
    title: String,
    #[serde(default = "empty_object")]
    params: Value,
    /// A group the caller belongs to; every member then sees and manages it.
    group: Option<String>,
    #[serde(default)]
    latching: bool,
    #[serde(default = "yes")]
    enabled: bool,
    /// The owner's policy to notify with; `default` when absent.
    policy: Option<String>,
}

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

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn yes() -> bool {
    true
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
    JsonBody(request): JsonBody<CreateRequest>,
) -> ApiResult<(StatusCode, Json<SubscriptionView>)> {
    let subscription = subscriptions::create(
        &state,
        &auth.0,
        subscriptions::NewSubscription {
            kind: request.kind,
            title: request.title,
            params: request.params,
            group: request.group,
            latching: request.latching,
            enabled: request.enabled,
            policy: request.policy,
        },
    )
    .await?;
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
