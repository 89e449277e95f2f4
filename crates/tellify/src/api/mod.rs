//! The HTTP API under `/api/v1`, plus `/healthz`, `/metrics` and `/api/openapi.json`.
//! Only this module and the dashboard (`web/`) know HTTP shapes.

pub mod alerta;
#[doc(hidden)]
pub mod alertmanager;
mod alerts;
pub mod error;
mod event_types;
mod events;
mod import;
mod insight;
mod meta;
mod notify;
mod people;
mod stream;
mod subscriptions;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::routing::{get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;

pub use crate::services::validate::{check_horizon, MAX_HORIZON};
pub use crate::services::{AppState, Services};
pub use error::{ApiError, ApiResult};

use crate::auth::{AuthFailure, Principal, Scope};

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
        .route("/subscriptions/preview", post(subscriptions::preview))
        .route("/subscriptions/costs", get(subscriptions::costs))
        .route("/alerts", get(alerts::list))
        .route("/alerts/{id}", get(alerts::get_one))
        .route("/alerts/{id}/ack", post(alerts::ack))
        .route("/alerts/{id}/shelve", post(alerts::shelve))
        .route("/alerts/{id}/unshelve", post(alerts::unshelve))
        .route("/alerts/{id}/clear", post(alerts::clear))
        .route("/users", post(people::create_user).get(people::list_users))
        .route("/users/me", get(people::me).patch(people::update_me))
        .route("/users/me/password", put(people::change_own_password))
        .route("/users/{name}/password", put(people::set_password))
        .route(
            "/users/{name}",
            get(people::get_user)
                .patch(people::update_user)
                .delete(people::offboard_user),
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
        .route("/deliveries/{id}/explain", get(insight::explain_delivery))
        .route("/alerts/{id}/explain", get(insight::explain_alert))
        .route("/policies/{name}/week", get(insight::policy_week))
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
        .route("/alerts/groups", get(alertmanager::list_alert_groups))
        .route("/receivers", get(alertmanager::list_receivers))
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
        .route_layer(axum::middleware::from_fn(crate::telemetry::time_request))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.settings.ingest.max_body_bytes,
        ))
        .layer(axum::middleware::from_fn(catch_panics))
        .with_state(state)
}

/// A request handler that panics answers 500 with problem+json, and the server lives on:
/// the panic is logged and counted (`tellify_http_panics_total`), nothing of it reaches
/// the client.
async fn catch_panics(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    crate::telemetry::guard_panics(request, next, || {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "the server failed on this request; it has been logged",
        )
        .into_response()
    })
    .await
}

/// The only routes an `ingest` token may call: event ingest. Every other route answers
/// such a token 403, whatever scope the handler asks for, so a route added later is closed
/// to ingest tokens unless it is listed here. The Alerta API's routes that only send
/// (`POST {prefix}/alert` and `/heartbeat`, [`alerta::INGEST_PATHS`]) are ingest routes
/// too, under whatever prefix is configured.
pub const INGEST_ROUTES: &[(&str, &str)] =
    &[("POST", "/api/v1/events"), ("POST", "/api/v2/alerts")];

/// The authenticated caller, from `Authorization: Bearer <token>` or Alerta's spelling of
/// the same, `Authorization: Key <token>` (either scheme on any route). The one extractor
/// of the API: the Alerta routes wrap it only to answer in Alerta's shape.
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
            .split_once(' ')
            .filter(|(scheme, _)| {
                scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("key")
            })
            .map(|(_, secret)| secret.trim())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        let principal = authenticate(parts, state, secret).await?;
        if principal.scope == Scope::Ingest && !is_ingest_route(parts, state) {
            return Err(ApiError::forbidden(
                "this token has the `ingest` scope, which may only send events \
                 (POST /api/v1/events, the Alertmanager and Alerta APIs); this needs `user`",
            ));
        }
        Ok(Auth(principal))
    }
}

fn is_ingest_route(parts: &Parts, state: &AppState) -> bool {
    let Some(path) = parts.extensions.get::<MatchedPath>() else {
        return false;
    };
    let path = path.as_str();
    let method = parts.method.as_str();
    if INGEST_ROUTES
        .iter()
        .any(|(ingest_method, route)| method == *ingest_method && path == *route)
    {
        return true;
    }
    let alerta_path = path.strip_prefix(state.settings.alerta.prefix.as_str());
    method == "POST" && alerta_path.is_some_and(|rest| alerta::INGEST_PATHS.contains(&rest))
}

/// Resolves a token sent with a request: 429 when the client's address has failed too
/// often, 401 for an unknown, revoked or expired token. Shared by every way a token
/// arrives (`Bearer`, Alerta's `Key`).
pub async fn authenticate(parts: &Parts, state: &AppState, secret: &str) -> ApiResult<Principal> {
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|connect| connect.0.ip());
    let now = state.clock.now();
    match state
        .auth
        .authenticate(state.store.as_ref(), secret, client, now)
        .await
    {
        Ok(principal) => Ok(principal),
        Err(AuthFailure::Unknown) => Err(ApiError::unauthorized("unknown or revoked token")),
        Err(AuthFailure::Expired) => Err(ApiError::unauthorized("token expired")),
        Err(AuthFailure::Limited { retry_after }) => {
            let mut error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                format!(
                    "too many failed authentications from this address; try again in {retry_after} s"
                ),
            );
            error.retry_after = Some(retry_after);
            Err(error)
        }
        Err(AuthFailure::Store(error)) => Err(error.into()),
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

/// A query parameter such as `since`: RFC 3339, or a duration meaning "that long ago".
pub fn parse_time_param(
    name: &str,
    text: &str,
    now: jiff::Timestamp,
) -> ApiResult<jiff::Timestamp> {
    crate::services::validate::parse_when(name, text, now, false).map_err(ApiError::bad_request)
}

/// A body field such as `until`: RFC 3339, or a duration from now; at most
/// [`MAX_HORIZON`] ahead.
pub fn parse_future_param(
    name: &str,
    text: &str,
    now: jiff::Timestamp,
) -> ApiResult<jiff::Timestamp> {
    crate::services::validate::parse_future(name, text, now).map_err(ApiError::unprocessable)
}

pub fn clamp_limit(limit: Option<usize>, default: usize, max: usize) -> usize {
    limit.unwrap_or(default).clamp(1, max)
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_problem_json_and_the_server_lives_on() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let router = axum::Router::new()
            .route(
                "/boom",
                get(|| async {
                    if std::hint::black_box(true) {
                        panic!("boom at {}", 1);
                    }
                    "unreachable"
                }),
            )
            .route("/fine", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(super::catch_panics));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let client = reqwest::Client::new();
        let response = client
            .get(format!("http://{address}/boom"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("boom"),
            "nothing of the panic reaches the client: {body}"
        );
        let response = client
            .get(format!("http://{address}/fine"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "the server lives on");
    }
}
