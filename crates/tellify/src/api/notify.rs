//! A person's notification settings and what was sent: `/contact-points`, `/policies`,
//! `/silences`, `/deliveries`. Everyone manages their own; an admin may act for another
//! user with `?user=NAME`. Anything of someone else's answers 404.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tellify_store::{
    ContactPoint, Delivery, DeliveryAttempt, DeliveryStatus, PolicyRecord, Silence,
};

use super::{clamp_limit, ApiError, ApiResult, AppState, Auth, JsonBody, Page, QueryParams};
use crate::services::notify;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ForUser {
    /// Admins only: act for this user.
    user: Option<String>,
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
    /// Set while this kind's channel is not configured on the server (email without
    /// `[smtp] host`, SMS without `[sms]` credentials): nothing is sent to it until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

fn contact_view(state: &AppState, point: ContactPoint, reveal: bool) -> ContactPointView {
    let warning = notify::contact_point_warning(state, &point);
    ContactPointView {
        warning,
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
    let created = notify::create_contact_point(
        &state,
        &auth.0,
        query.user.as_deref(),
        notify::NewContactPoint {
            name: request.name,
            kind: request.kind,
            address: request.address,
            secret: request.secret,
        },
    )
    .await?;
    let (point, generated) = (created.point, created.generated_secret);
    Ok((
        StatusCode::CREATED,
        Json(contact_view(&state, point, generated)),
    ))
}

pub async fn list_contact_points(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<ForUser>,
) -> ApiResult<Json<Page<ContactPointView>>> {
    let items = notify::list_contact_points(&state, &auth.0, query.user.as_deref())
        .await?
        .into_iter()
        .map(|point| contact_view(&state, point, false))
        .collect();
    Ok(Json(Page { items, next: None }))
}

pub async fn get_contact_point(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<ForUser>,
) -> ApiResult<Json<ContactPointView>> {
    let point = notify::contact_point(&state, &auth.0, query.user.as_deref(), &name).await?;
    Ok(Json(contact_view(&state, point, false)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeleteContactPoint {
    /// Admins only: act for this user.
    user: Option<String>,
    /// Also take the contact point out of the policies that name it.
    #[serde(default)]
    force: bool,
}

pub async fn delete_contact_point(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<DeleteContactPoint>,
) -> ApiResult<StatusCode> {
    notify::delete_contact_point(&state, &auth.0, query.user.as_deref(), &name, query.force)
        .await?;
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
    let outcome = notify::test_contact_point(&state, &auth.0, query.user.as_deref(), &name).await?;
    if !outcome.ok {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "Bad Gateway",
            format!(
                "the test to `{}` failed: {}",
                outcome.contact_point, outcome.answer
            ),
        ));
    }
    Ok(Json(TestResult {
        ok: true,
        contact_point: outcome.contact_point,
        answer: outcome.answer,
    }))
}

// ---- policies ----

#[derive(Serialize)]
pub struct PolicyView {
    name: String,
    rules: Value,
    updated: Timestamp,
}

fn policy_view(record: PolicyRecord) -> PolicyView {
    let rules = Value::Array(
        record
            .policy
            .rules
            .iter()
            .map(|rule| rule.to_json())
            .collect(),
    );
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
    let (record, created) =
        notify::put_policy(&state, &auth.0, query.user.as_deref(), &name, &body).await?;
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
    let items = notify::list_policies(&state, &auth.0, query.user.as_deref())
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
    let record = notify::policy(&state, &auth.0, query.user.as_deref(), &name).await?;
    Ok(Json(policy_view(record)))
}

pub async fn delete_policy(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<ForUser>,
) -> ApiResult<StatusCode> {
    notify::delete_policy(&state, &auth.0, query.user.as_deref(), &name).await?;
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
    let silence = notify::create_silence(
        &state,
        &auth.0,
        query.user.as_deref(),
        notify::NewSilence {
            filter: request.filter,
            starts: request.starts,
            ends: request.ends,
            comment: request.comment,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(silence)))
}

pub async fn list_silences(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<ForUser>,
) -> ApiResult<Json<Page<Silence>>> {
    let items = notify::list_silences(&state, &auth.0, query.user.as_deref()).await?;
    Ok(Json(Page { items, next: None }))
}

pub async fn delete_silence(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<ForUser>,
) -> ApiResult<StatusCode> {
    notify::delete_silence(&state, &auth.0, query.user.as_deref(), &id).await?;
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
    let status = match params.status.as_deref() {
        None => None,
        Some(text) => Some(DeliveryStatus::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`status`: `{text}` is not one of pending, sending, sent, failed"
            ))
        })?),
    };
    let limit = clamp_limit(params.limit, 50, 500);
    let (items, next) = notify::list_deliveries(
        &state,
        &auth.0,
        params.user.as_deref(),
        notify::DeliveryFilter {
            status,
            alert: params.alert,
            cursor: params.cursor,
            limit,
        },
    )
    .await?;
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
    let (delivery, attempt_log, items) = notify::delivery(&state, &auth.0, &id).await?;
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
