//! `POST /api/v1/subscriptions/import`: an HTTP JSON engine's own alert definitions become
//! `metric` subscriptions of the caller. The work is [`crate::services::import`]; this is
//! its HTTP shape.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiResult, AppState, Auth, JsonBody};
use crate::services::import;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    backend: String,
    url: String,
    /// A group the caller belongs to; the subscriptions are then the group's.
    group: Option<String>,
    /// The policy the subscriptions notify with; on an update, absent keeps the old one.
    policy: Option<String>,
}

#[derive(Serialize)]
pub struct ImportResult {
    created: usize,
    updated: usize,
    /// The ids of the imported subscriptions, in the order of the engine's definitions.
    subscriptions: Vec<String>,
}

pub async fn import(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(request): JsonBody<ImportRequest>,
) -> ApiResult<Json<ImportResult>> {
    let result = import::import(
        &state,
        &auth.0,
        import::ImportRequest {
            backend: request.backend,
            url: request.url,
            group: request.group,
            policy: request.policy,
        },
    )
    .await?;
    Ok(Json(ImportResult {
        created: result.created,
        updated: result.updated,
        subscriptions: result.subscriptions,
    }))
}
