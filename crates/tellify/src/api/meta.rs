use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, ApiResult, AppState, Auth};
use crate::auth::Scope;

/// The OpenAPI 3.1 description of this API, kept beside the router.
const OPENAPI: &str = include_str!("openapi.json");

pub async fn handler_kinds(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require(Scope::User)?;
    let kinds: Vec<Value> = state
        .registry
        .kinds()
        .map(|kind| {
            json!({
                "name": kind.name(),
                "title": kind.title(),
                "description": kind.description(),
                "required_fields": kind.required_fields(),
                "params_schema": kind.param_schema(),
            })
        })
        .collect();
    Ok(Json(json!({ "items": kinds })))
}

/// Unauthenticated liveness and progress: how far the log and processing are.
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.last_seq().await {
        Ok(last) => {
            let processed = state.worker.processed();
            let mut body = json!({
                "status": "ok",
                "events": last,
                "processed": processed,
                "lag": (last - processed).max(0),
            });
            if let Some(log) = &state.log {
                body["log"] = json!(if log.connected() {
                    "connected"
                } else {
                    "reconnecting"
                });
            }
            (StatusCode::OK, Json(body))
        }
        Err(error) => {
            tracing::error!(%error, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "Not Found",
        "no such endpoint (see /api/openapi.json)",
    )
}
