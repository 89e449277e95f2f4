//! Explain and "when will I be told": `GET /api/v1/deliveries/{id}/explain`,
//! `GET /api/v1/alerts/{id}/explain` and `GET /api/v1/policies/{name}/week`. Each only
//! extracts and shapes; the answers are the service layer's (`services::explain`,
//! `services::schedule`). The preview is with the subscriptions (`subscriptions.rs`).

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;

use super::{ApiResult, AppState, Auth, QueryParams};
use crate::services::explain::{self, Explanation};
use crate::services::schedule::{self, WeekView};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForUser {
    /// Admins only: another user's policy.
    user: Option<String>,
}

pub async fn explain_delivery(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Explanation>> {
    Ok(Json(explain::delivery(&state, &auth.0, &id).await?))
}

pub async fn explain_alert(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Explanation>> {
    Ok(Json(explain::alert(&state, &auth.0, &id).await?))
}

pub async fn policy_week(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<ForUser>,
) -> ApiResult<Json<WeekView>> {
    Ok(Json(
        schedule::week(&state, &auth.0, query.user.as_deref(), &name).await?,
    ))
}
