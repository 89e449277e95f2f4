//! "When will I be told" (`/notifications/week?policy=NAME`): a policy's coming 7 days per
//! severity, which channel is used when and what waits for a digest.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::rule_words;
use crate::services::{notify, AppState};
use crate::web::{render, Layout, Viewer, WebError};

#[derive(Deserialize, Default)]
pub struct WeekQuery {
    #[serde(default)]
    policy: String,
}

#[derive(Template)]
#[template(path = "notifications_week.html")]
struct WeekPage {
    layout: Layout,
    policy: String,
    rules: Vec<String>,
    timezone: String,
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<WeekQuery>,
) -> Result<Response, WebError> {
    let name = if query.policy.is_empty() {
        "default"
    } else {
        query.policy.as_str()
    };
    let record = notify::policy(&state, &viewer.principal, None, name).await?;
    render(&WeekPage {
        layout: Layout::new(
            format!("When will I be told: {}", record.name),
            "notifications",
            &viewer,
        ),
        rules: record.policy.rules.iter().map(rule_words).collect(),
        policy: record.name,
        timezone: viewer.principal.user.timezone.clone(),
    })
}
