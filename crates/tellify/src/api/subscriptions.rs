use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tellify_engine::ParamError;
use tellify_store::{Subscription, SubscriptionHealth};

use super::{ApiError, ApiResult, AppState, Auth, JsonBody, Page};
use crate::auth::{Principal, Scope};

const MAX_TITLE: usize = 200;

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
    }
}

fn check_title(title: &str, errors: &mut Vec<ParamError>) {
    if title.trim().is_empty() {
        errors.push(ParamError::new("title", "must not be empty"));
    } else if title.chars().count() > MAX_TITLE {
        errors.push(ParamError::new(
            "title",
            format!("must be at most {MAX_TITLE} characters"),
        ));
    }
}

/// Names of policies and contact points: short, plain, usable in a URL path.
pub(super) fn check_policy_name(name: &str, path: &str, errors: &mut Vec<ParamError>) {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if name.is_empty() || name.len() > 64 || !plain {
        errors.push(ParamError::new(
            path,
            format!("`{name}` is not a valid name (1-64 letters, digits, `-`, `_` or `.`)"),
        ));
    }
}

/// A `metric` subscription's backend URL must pass the outbound guard: the server polls it
/// by itself. The engine checks its syntax (reported as `params.url` already, then not
/// again); a name is judged when it is resolved, at every poll.
fn check_outbound_url(state: &AppState, kind: &str, params: &Value, errors: &mut Vec<ParamError>) {
    if kind != "metric" || errors.iter().any(|error| error.path == "params.url") {
        return;
    }
    let Some(url) = params.get("url").and_then(Value::as_str) else {
        return;
    };
    if let Err(problem) = state.outbound.check_url_text(url.trim()) {
        errors.push(ParamError::new("params.url", problem));
    }
}

/// Loads a subscription the caller may see; anything else is a 404.
async fn visible(state: &AppState, principal: &Principal, id: &str) -> ApiResult<Subscription> {
    let subscription = state.store.subscription(id).await?;
    match subscription {
        Some(s) if principal.can_see(Some(&s.owner_user), s.owner_group.as_deref()) => Ok(s),
        _ => Err(ApiError::not_found("subscription")),
    }
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(request): JsonBody<CreateRequest>,
) -> ApiResult<(StatusCode, Json<SubscriptionView>)> {
    let principal = auth.require(Scope::User)?;
    let mut errors = Vec::new();
    check_title(&request.title, &mut errors);
    if let Some(policy) = &request.policy {
        check_policy_name(policy, "policy", &mut errors);
    }
    if let Err(found) = state.registry.build(&request.kind, &request.params) {
        errors.extend(found);
    }
    check_outbound_url(&state, &request.kind, &request.params, &mut errors);
    let mut owner_group = None;
    if let Some(name) = &request.group {
        match state.store.group_by_name(name).await? {
            Some(group) if principal.is_admin() || principal.group_ids.contains(&group.id) => {
                owner_group = Some(group.id)
            }
            _ => errors.push(ParamError::new(
                "group",
                format!("you are not a member of a group named `{name}`"),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::params(&errors));
    }
    let now = state.clock.now();
    let subscription = Subscription {
        id: tellify_model::new_id(),
        kind: request.kind,
        title: request.title.trim().to_string(),
        params: request.params,
        owner_user: principal.user.id.clone(),
        owner_group,
        enabled: request.enabled,
        latching: request.latching,
        policy: request.policy.clone(),
        created: now,
        updated: now,
        health: None,
    };
    state
        .store
        .insert_subscription(subscription.clone())
        .await?;
    state.worker.subscription_changed(&subscription.id);
    state
        .notifier
        .subscription_policy(&subscription.id, subscription.policy.as_deref());
    Ok((StatusCode::CREATED, Json(view(&state, subscription).await?)))
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Page<SubscriptionView>>> {
    let principal = auth.require(Scope::User)?;
    let viewer = (!principal.is_admin()).then(|| principal.viewer());
    let subscriptions = state.store.list_subscriptions(viewer.as_ref()).await?;
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
    let principal = auth.require(Scope::User)?;
    let subscription = visible(&state, principal, &id).await?;
    Ok(Json(view(&state, subscription).await?))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<UpdateRequest>,
) -> ApiResult<Json<SubscriptionView>> {
    let principal = auth.require(Scope::User)?;
    let mut subscription = visible(&state, principal, &id).await?;
    let mut errors = Vec::new();
    if let Some(title) = &request.title {
        check_title(title, &mut errors);
        subscription.title = title.trim().to_string();
    }
    if let Some(params) = request.params {
        if let Err(found) = state.registry.build(&subscription.kind, &params) {
            errors.extend(found);
        }
        if params != subscription.params {
            // New parameters deserve a fresh start.
            subscription.health = None;
        }
        check_outbound_url(&state, &subscription.kind, &params, &mut errors);
        subscription.params = params;
    }
    if let Some(policy) = &request.policy {
        if policy.is_empty() {
            subscription.policy = None;
        } else {
            check_policy_name(policy, "policy", &mut errors);
            subscription.policy = Some(policy.clone());
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::params(&errors));
    }
    if let Some(latching) = request.latching {
        subscription.latching = latching;
    }
    if let Some(enabled) = request.enabled {
        if enabled && !subscription.enabled {
            subscription.health = None;
        }
        subscription.enabled = enabled;
    }
    save(&state, subscription).await
}

async fn save(
    state: &AppState,
    mut subscription: Subscription,
) -> ApiResult<Json<SubscriptionView>> {
    subscription.updated = state.clock.now();
    state
        .store
        .update_subscription(subscription.clone())
        .await?;
    state.worker.subscription_changed(&subscription.id);
    state
        .notifier
        .subscription_policy(&subscription.id, subscription.policy.as_deref());
    Ok(Json(view(state, subscription).await?))
}

async fn set_enabled(
    state: AppState,
    auth: Auth,
    id: String,
    enabled: bool,
) -> ApiResult<Json<SubscriptionView>> {
    let principal = auth.require(Scope::User)?;
    let mut subscription = visible(&state, principal, &id).await?;
    if enabled && !subscription.enabled {
        // Switching a subscription back on is the owner saying "try again".
        subscription.health = None;
    }
    subscription.enabled = enabled;
    save(&state, subscription).await
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
    let principal = auth.require(Scope::User)?;
    let subscription = visible(&state, principal, &id).await?;
    state.store.delete_subscription(&subscription.id).await?;
    state.worker.subscription_changed(&subscription.id);
    state.notifier.subscription_policy(&subscription.id, None);
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
