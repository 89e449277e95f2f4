//! The HTTP API under `/api/v1`, plus `/healthz`, `/metrics` and `/api/openapi.json`.
//! Only this module (and a future `web/`) knows HTTP shapes.

pub mod alerta;
mod alertmanager;
mod alerts;
pub mod error;
mod event_types;
mod events;
mod import;
mod meta;
mod notify;
mod people;
mod stream;
mod subscriptions;

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use tellify_engine::Registry;
use tellify_store::Store;

pub use error::{ApiError, ApiResult};
pub use events::SearchSettings;

use crate::auth::{Authenticator, Principal, Scope};
use crate::channels::Channels;
use crate::clock::Clock;
use crate::config::Settings;
use crate::notify::NotifierHandle;
use crate::stream::Bus;
use crate::worker::WorkerHandle;

/// Everything a request handler may need.
pub struct Services {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub bus: Bus,
    pub worker: WorkerHandle,
    pub auth: Authenticator,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub notifier: NotifierHandle,
    pub channels: Arc<Channels>,
    /// When this server started, for the Alertmanager-compatible `/api/v2/status`.
    pub started: jiff::Timestamp,
    /// Registered event types with their compiled schemas, for the ingest check.
    pub event_types: Arc<crate::event_types::EventTypes>,
}

pub type AppState = Arc<Services>;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/events", post(events::ingest).get(events::list))
        .route("/events/{id}", get(events::get_one))
        .route("/event-types", get(event_types::list))
        .route(
            "/event-types/{name}",
            get(event_types::get_one)
                .put(event_types::put)
                .delete(event_types::delete),
        )
        .route("/handler-kinds", get(meta::handler_kinds))
        .route(
            "/subscriptions",
            post(subscriptions::create).get(subscriptions::list),
        )
        .route(
            "/subscriptions/{id}",
            get(subscriptions::get_one)
                .put(subscriptions::update)
                .patch(subscriptions::update)
                .delete(subscriptions::delete),
        )
        .route("/subscriptions/{id}/enable", post(subscriptions::enable))
        .route("/subscriptions/{id}/disable", post(subscriptions::disable))
        .route("/subscriptions/import", post(import::import))
        .route("/alerts", get(alerts::list))
        .route("/alerts/{id}", get(alerts::get_one))
        .route("/alerts/{id}/ack", post(alerts::ack))
        .route("/alerts/{id}/shelve", post(alerts::shelve))
        .route("/alerts/{id}/unshelve", post(alerts::unshelve))
        .route("/alerts/{id}/clear", post(alerts::clear))
        .route("/users", post(people::create_user).get(people::list_users))
        .route("/users/me", get(people::me))
        .route(
            "/users/{name}",
            get(people::get_user).delete(people::offboard_user),
        )
        .route("/audit", get(people::list_audit))
        .route(
            "/contact-points",
            post(notify::create_contact_point).get(notify::list_contact_points),
        )
        .route(
            "/contact-points/{name}",
            get(notify::get_contact_point).delete(notify::delete_contact_point),
        )
        .route(
            "/contact-points/{name}/test",
            post(notify::test_contact_point),
        )
        .route("/policies", get(notify::list_policies))
        .route(
            "/policies/{name}",
            get(notify::get_policy)
                .put(notify::put_policy)
                .delete(notify::delete_policy),
        )
        .route(
            "/silences",
            post(notify::create_silence).get(notify::list_silences),
        )
        .route(
            "/silences/{id}",
            axum::routing::delete(notify::delete_silence),
        )
        .route("/deliveries", get(notify::list_deliveries))
        .route("/deliveries/{id}", get(notify::get_delivery))
        .route(
            "/groups",
            post(people::create_group).get(people::list_groups),
        )
        .route("/groups/{name}", get(people::get_group))
        .route("/groups/{name}/members", post(people::add_member))
        .route(
            "/groups/{name}/members/{user}",
            axum::routing::delete(people::remove_member),
        )
        .route(
            "/tokens",
            post(people::create_token).get(people::list_tokens),
        )
        .route("/tokens/{id}", axum::routing::delete(people::revoke_token))
        .route("/stream", get(stream::stream))
        .fallback(meta::not_found);
    // The Prometheus Alertmanager API v2, for Prometheus servers and amtool.
    let alertmanager_v2 = Router::new()
        .route(
            "/alerts",
            get(alertmanager::list_alerts).post(alertmanager::post_alerts),
        )
        .route("/status", get(alertmanager::status))
        .route(
            "/silences",
            get(alertmanager::list_silences).post(alertmanager::post_silence),
        )
        .route(
            "/silence/{id}",
            get(alertmanager::get_silence).delete(alertmanager::delete_silence),
        )
        .fallback(meta::not_found);
    let router = Router::new()
        .nest("/api/v1", api)
        .nest("/api/v2", alertmanager_v2)
        .route("/api/openapi.json", get(meta::openapi))
        .route("/healthz", get(meta::healthz))
        .route("/metrics", get(meta::metrics))
        .fallback(meta::not_found);
    // Alerta's API, for the `alerta` CLI, under the configurable `alerta.prefix`.
    alerta::nested(router, &state.settings.alerta.prefix)
        .layer(axum::extract::DefaultBodyLimit::max(
            state.settings.ingest.max_body_bytes,
        ))
        .with_state(state)
}

/// The authenticated caller, from `Authorization: Bearer <token>`.
pub struct Auth(pub Principal);

impl Auth {
    pub fn require(&self, scope: Scope) -> ApiResult<&Principal> {
        if self.0.has(scope) {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(format!(
                "this token has the `{}` scope; this needs `{}`",
                self.0.scope.as_str(),
                scope.as_str()
            )))
        }
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header_value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| {
                ApiError::unauthorized("missing `Authorization: Bearer <token>` header")
            })?;
        let secret = header_value
            .strip_prefix("Bearer ")
            .or_else(|| header_value.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        match state.auth.resolve(state.store.as_ref(), secret).await? {
            Some(principal) => Ok(Auth(principal)),
            None => Err(ApiError::unauthorized("unknown or revoked token")),
        }
    }
}

/// Query parameters whose errors come back as problem+json naming the parameter.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|query| QueryParams(query.0))
            .map_err(|rejection| {
                ApiError::bad_request(format!(
                    "invalid query parameters: {}",
                    rejection.body_text()
                ))
            })
    }
}

/// A JSON request body whose errors come back as problem+json: 400 for malformed JSON,
/// 422 for a well-formed body of the wrong shape.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|error| ApiError::new(error.status(), "Bad Request", error.body_text()))?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request("the request needs a JSON body"));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|error| {
                let message = format!("invalid request body: {error}");
                match error.classify() {
                    serde_json::error::Category::Data => ApiError::unprocessable(message),
                    _ => ApiError::bad_request(message),
                }
            })
    }
}

/// Parses an optional JSON body: empty means the default.
pub fn optional_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|error| ApiError::unprocessable(format!("invalid request body: {error}")))
}

/// A page of results: `{"items": [...], "next": <cursor or null>}`.
#[derive(serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Parses a time: RFC 3339, or a duration counted back from `now` (`10m` ago) when
/// `ahead` is false, forward (`in 1h`) when it is true.
fn parse_when(
    name: &str,
    text: &str,
    now: jiff::Timestamp,
    ahead: bool,
) -> Result<jiff::Timestamp, String> {
    if let Ok(time) = text.parse::<jiff::Timestamp>() {
        return Ok(time);
    }
    match tellify_model::parse_duration(text) {
        Ok(duration) if ahead => Ok(now + duration),
        Ok(duration) => Ok(now - duration),
        Err(_) => Err(format!(
            "`{name}`: `{text}` is neither an RFC 3339 time (2026-11-23T18:00:00Z) nor a duration (10m, 2h)"
        )),
    }
}

/// A query parameter such as `since`: RFC 3339, or a duration meaning "that long ago".
pub fn parse_time_param(
    name: &str,
    text: &str,
    now: jiff::Timestamp,
) -> ApiResult<jiff::Timestamp> {
    parse_when(name, text, now, false).map_err(ApiError::bad_request)
}

/// A body field such as `until`: RFC 3339, or a duration from now.
pub fn parse_future_param(
    name: &str,
    text: &str,
    now: jiff::Timestamp,
) -> ApiResult<jiff::Timestamp> {
    parse_when(name, text, now, true).map_err(ApiError::unprocessable)
}

pub fn clamp_limit(limit: Option<usize>, default: usize, max: usize) -> usize {
    limit.unwrap_or(default).clamp(1, max)
}
