//! A person's notification settings and what was sent: `/contact-points`, `/policies`,
//! `/silences`, `/deliveries`. Everyone manages their own; an admin may act for another
//! user with `?user=NAME`. Anything of someone else's answers 404.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tellify_engine::filter::Filter;
use tellify_engine::policy::Policy;
use tellify_engine::ParamError;
use tellify_store::{
    ContactPoint, Delivery, DeliveryAttempt, DeliveryQuery, DeliveryStatus, PolicyRecord, Silence,
    User,
};

use super::subscriptions::check_policy_name;
use super::{
    clamp_limit, parse_future_param, ApiError, ApiResult, AppState, Auth, JsonBody, Page,
    QueryParams,
};
use crate::auth::Scope;
use crate::channels::ContactKind;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ForUser {
    /// Admins only: act for this user.
    user: Option<String>,
}

/// The user a request is about: the caller, or for an admin the one named in `?user=`.
async fn subject(state: &AppState, auth: &Auth, wanted: Option<&str>) -> ApiResult<User> {
    let principal = auth.require(Scope::User)?;
    let Some(name) = wanted else {
        return Ok(principal.user.clone());
    };
    if name == principal.user.name {
        return Ok(principal.user.clone());
    }
    if !principal.is_admin() {
        return Err(ApiError::forbidden(
            "only an admin may manage another user's notifications",
        ));
    }
    state
        .store
        .user_by_name(name)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))
}

// ---- contact points ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateContactPoint {
    name: String,
    kind: String,
    address: String,
    /// Webhooks: the HMAC signing secret; one is generated when absent.
    secret: Option<String>,
}

#[derive(Serialize)]
pub struct ContactPointView {
    id: String,
    name: String,
    kind: String,
    address: String,
    /// Webhooks: whether requests are signed.
    signed: bool,
    /// The generated signing secret, shown only in the response that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    created: Timestamp,
}

fn contact_view(point: ContactPoint, reveal: bool) -> ContactPointView {
    ContactPointView {
        signed: point.secret.is_some(),
        secret: if reveal { point.secret } else { None },
        id: point.id,
        name: point.name,
        kind: point.kind,
        address: point.address,
        created: point.created,
    }
}

pub async fn create_contact_point(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<ForUser>,
    JsonBody(request): JsonBody<CreateContactPoint>,
) -> ApiResult<(StatusCode, Json<ContactPointView>)> {
    let user = subject(&state, &auth, query.user.as_deref()).await?;
    let mut errors = Vec::new();
    check_policy_name(&request.name, "name", &mut errors);
    let kind: Option<ContactKind> = match request.kind.parse() {
        Ok(kind) => Some(kind),
        Err(error) => {
            errors.push(ParamError::new("kind", error));
            None
        }
    };
    if let Some(kind) = kind {
        if let Err(error) = state.channels.check_address(kind, request.address.trim()) {
            errors.push(ParamError::new("address", error));
        }
    }
    if let Some(secret) = &request.secret {
        if kind != Some(ContactKind::Webhook) {
            errors.push(ParamError::new("secret", "only webhooks take a secret"));
        } else if secret.len() < 16 {
            errors.push(ParamError::new("secret", "must be at least 16 characters"));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::params(&errors));
    }
    let generated = kind == Some(ContactKind::Webhook) && request.secret.is_none();
    let secret = match (kind, request.secret) {
        (Some(ContactKind::Webhook), Some(secret)) => Some(secret),
        (Some(ContactKind::Webhook), None) => {
            Some(crate::auth::new_token().0.replacen("tfy_", "whsec_", 1))
        }
        _ => None,
    };
    let point = ContactPoint {
        id: tellify_model::new_id(),
        user_id: user.id.clone(),
        name: request.name,
        kind: request.kind,
        address: request.address.trim().to_string(),
        secret,
        created: state.clock.now(),
    };
    state
        .store
        .create_contact_point(point.clone())
        .await
        .map_err(|error| match error {
            tellify_store::StoreError::Conflict(_) => ApiError::conflict(format!(
                "a contact point named `{}` already exists",
                point.name
            )),
            other => other.into(),
        })?;
    state.notifier.user_changed(&user.id).await?;
    Ok((StatusCode::CREATED, Json(contact_view(point, generated))))
}

pub async fn list_contact_points(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<ForUser>,
) -> ApiResult<Json<Page<ContactPointView>>> {
    let user = subject(&state, &auth, query.user.as_deref()).await?;
    let items = state
        .store
        .list_contact_points(&user.id)
        .await?
        .into_iter()
        .map(|point| contact_view(point, false))
        .collect();
    Ok(Json(Page { items, next: None }))
}

async fn own_contact_point(state: &AppState, user: &User, name: &str) -> ApiResult<ContactPoint> {
    state
        .store
        .contact_point(&user.id, name)
        .await?
        .ok_or_else(|| ApiError::not_found("contact point"))
}

pub async fn get_contact_point(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<ForUser>,
) -> ApiResult<Json<ContactPointView>> {
    let user = subject(&state, &auth, query.user.as_deref()).await?;
    let point = own_contact_point(&state, &user, &name).await?;
    Ok(Json(contact_view(point, false)))
}

pub async fn delete_contact_point(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<ForUser>,
) -> ApiResult<StatusCode> {
    let user = subject(&state, &auth, query.user.as_deref()).await?;
    if !state.store.delete_contact_point(&user.id, &name).await? {
        return Err(ApiError::not_found("contact point"));
    }
    state.notifier.user_changed(&user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
pub struct TestResult {
    ok: bool,
    contact_point: String,
    /// The provider's receipt: its status (and an SMS provider's message id), never its body.
    answer: String,
}

/// "Send me a test": sends at once and shows the provider's receipt; a failure is a 502
/// whose detail is the channel's tellify-written error (a status, a refusal by the outbound
/// guard, a timeout), never the body of what answered.
pub async fn test_contact_point(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<ForUser>,
) -> ApiResult<Json<TestResult>> {
    let user = subject(&state, &auth, query.user.as_deref()).await?;
    let point = own_contact_point(&state, &user, &name).await?;
    let link = state.settings.public_url.as_deref();
    match crate::notify::send_test(&state.channels, &point, link).await {
        Ok(answer) => Ok(Json(TestResult {
            ok: true,
            contact_point: point.name,
            answer,
        })),
        Err(error) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "Bad Gateway",
            format!("the test to `{}` failed: {error}", point.name),
        )),
    }
}

// ---- policies ----

#[derive(Serialize)]
pub struct PolicyView {
    name: String,
    rules: Value,
    updated: Timestamp,
}

fn policy_view(record: PolicyRecord) -> PolicyView {
    let rules = record
        .rules
        .get("rules")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    PolicyView {
        name: record.name,
        rules,
        updated: record.updated,
    }
}

pub async fn put_policy(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<ForUser>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<PolicyView>)> {
    let user = subject(&state, &auth, query.user.as_deref()).await?;
    let mut errors = Vec::new();
    check_policy_name(&name, "name", &mut errors);
    let limits = state.settings.notify.policy_limits().unwrap_or_default();
    let policy = match Policy::parse_with(&body, &limits) {
        Ok(policy) => Some(policy),
        Err(found) => {
            errors.extend(found);
            None
        }
    };
    if let Some(policy) = &policy {
        let known: std::collections::HashSet<String> = state
            .store
            .list_contact_points(&user.id)
            .await?
            .into_iter()
            .map(|point| point.name)
            .collect();
        for (rule_index, rule) in policy.rules.iter().enumerate() {
            for (point_index, point) in rule.contact_points.iter().enumerate() {
                if !known.contains(point) {
                    errors.push(ParamError::new(
                        format!("rules[{rule_index}].contact_points[{point_index}]"),
                        format!("you have no contact point named `{point}`"),
                    ));
                }
            }
        }
    }
    let Some(policy) = policy.filter(|_| errors.is_empty()) else {
        return Err(ApiError::params(&errors));
    };
    let record = PolicyRecord {
        user_id: user.id.clone(),
        name,
        rules: policy.to_json(),
        updated: state.clock.now(),
    };
    let created = state.store.put_policy(record.clone()).await?;
    state.notifier.user_changed(&user.id).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(policy_view(record))))
}

pub async fn list_policies(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<ForUser>,
) -> ApiResult<Json<Page<PolicyView>>> {
    let user = subject(&state, &auth, query.user.as_deref()).await?;
    let items = state
        .store
        .list_policies(&user.id)
        .await?
        .into_iter()
        .map(policy_view)
        .collect();
    Ok(Json(Page { items, next: None }))
}

pub async fn get_policy(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<ForUser>,
) -> ApiResult<Json<PolicyView>> {
    let user = subject(&state, &auth, query.user.as_deref()).await?;
    let record = state
        .store
        .policy(&user.id, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("policy"))?;
    Ok(Json(policy_view(record)))
}

pub async fn delete_policy(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<ForUser>,
) -> ApiResult<StatusCode> {
    let user = subject(&state, &auth, query.user.as_deref()).await?;
    if !state.store.delete_policy(&user.id, &name).await? {
        return Err(ApiError::not_found("policy"));
    }
    state.notifier.user_changed(&user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- silences ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSilence {
    /// A CEL expression over the alert: its fields, `severity`, `message`, `title`,
    /// `subscription`, `group_key`, `kind`.
    filter: String,
    /// RFC 3339 or a duration from now; now when absent.
    starts: Option<String>,
    /// RFC 3339 or a duration from now (`2h`).
    ends: String,
    comment: Option<String>,
}

pub async fn create_silence(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<ForUser>,
    JsonBody(request): JsonBody<CreateSilence>,
) -> ApiResult<(StatusCode, Json<Silence>)> {
    let user = subject(&state, &auth, query.user.as_deref()).await?;
    let now = state.clock.now();
    let mut errors = Vec::new();
    if let Err(error) = Filter::compile(&request.filter) {
        errors.push(ParamError::new("filter", error.to_string()));
    }
    let starts = match &request.starts {
        Some(text) => match parse_future_param("starts", text, now) {
            Ok(time) => Some(time),
            Err(error) => {
                errors.push(ParamError::new("starts", error.detail));
                None
            }
        },
        None => Some(now),
    };
    let ends = match parse_future_param("ends", &request.ends, now) {
        Ok(time) => Some(time),
        Err(error) => {
            errors.push(ParamError::new("ends", error.detail));
            None
        }
    };
    if let (Some(starts), Some(ends)) = (starts, ends) {
        if ends <= starts {
            errors.push(ParamError::new("ends", "must be after `starts`"));
        }
    }
    let (Some(starts), Some(ends)) = (starts, ends) else {
        return Err(ApiError::params(&errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::params(&errors));
    }
    let silence = Silence {
        id: tellify_model::new_id(),
        user_id: user.id.clone(),
        filter: request.filter,
        starts,
        ends,
        comment: request.comment,
        created: now,
    };
    state.store.create_silence(silence.clone()).await?;
    state.notifier.user_changed(&user.id).await?;
    Ok((StatusCode::CREATED, Json(silence)))
}

pub async fn list_silences(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<ForUser>,
) -> ApiResult<Json<Page<Silence>>> {
    let user = subject(&state, &auth, query.user.as_deref()).await?;
    let items = state.store.list_silences(&user.id).await?;
    Ok(Json(Page { items, next: None }))
}

pub async fn delete_silence(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<ForUser>,
) -> ApiResult<StatusCode> {
    let user = subject(&state, &auth, query.user.as_deref()).await?;
    if !state.store.delete_silence(&user.id, &id).await? {
        return Err(ApiError::not_found("silence"));
    }
    state.notifier.user_changed(&user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- deliveries ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    user: Option<String>,
    status: Option<String>,
    alert: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub async fn list_deliveries(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(params): QueryParams<DeliveryParams>,
) -> ApiResult<Json<Page<Delivery>>> {
    let user = subject(&state, &auth, params.user.as_deref()).await?;
    let status = match params.status.as_deref() {
        None => None,
        Some(text) => Some(DeliveryStatus::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`status`: `{text}` is not one of pending, sending, sent, failed"
            ))
        })?),
    };
    let limit = clamp_limit(params.limit, 50, 500);
    let items = state
        .store
        .list_deliveries(DeliveryQuery {
            user_id: Some(user.id.clone()),
            status,
            alert_id: params.alert,
            before_id: params.cursor,
            limit,
        })
        .await?;
    let next = (items.len() == limit)
        .then(|| items.last().map(|d| d.id.clone()))
        .flatten();
    Ok(Json(Page { items, next }))
}

#[derive(Serialize)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    delivery: Delivery,
    attempt_log: Vec<DeliveryAttempt>,
    alerts: Vec<Value>,
}

pub async fn get_delivery(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryDetail>> {
    let principal = auth.require(Scope::User)?;
    let Some((delivery, attempt_log, items)) = state.store.delivery(&id).await? else {
        return Err(ApiError::not_found("delivery"));
    };
    if delivery.user_id != principal.user.id && !principal.is_admin() {
        return Err(ApiError::not_found("delivery"));
    }
    let alerts = items
        .into_iter()
        .map(|item| {
            serde_json::json!({
                "id": item.alert_id,
                "transition": item.transition,
                "title": item.alert.title,
                "severity": item.alert.severity,
                "message": item.alert.message,
            })
        })
        .collect();
    Ok(Json(DeliveryDetail {
        delivery,
        attempt_log,
        alerts,
    }))
}
