//! Dashboard pages: my notifications. `/notifications` is the overview of my contact
//! points, policies and silences; each has its submodule with its forms
//! ([`contact_points`], [`policies`] with the schedule editor, [`silences`]).
//! [`deliveries`] is "my deliveries" (`/deliveries`, live) and the explain pages of a
//! delivery and of an alert; [`week`] is "when will I be told".
//!
//! Every page calls `crate::services::notify` (the functions the JSON API calls), for the
//! signed-in person only: another user's contact point, policy, silence or delivery is
//! "not found", the same 404 page as an unknown one.

mod contact_points;
pub mod deliveries;
mod policies;
mod silences;
mod week;

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use tellify_engine::policy::{Mode, Rule};
use tellify_engine::ParamError;

use super::format::{severity_icon, Clock};
use super::{render, Layout, Viewer, WebError};
use crate::services::{notify, AppState};

/// This area's routes, merged into [`super::routes`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/notifications", get(overview))
        .route(
            "/notifications/contact-points",
            get(contact_points::new_page).post(contact_points::create),
        )
        .route(
            "/notifications/contact-points/{name}/test",
            post(contact_points::test),
        )
        .route(
            "/notifications/contact-points/{name}/delete",
            get(contact_points::confirm_delete).post(contact_points::delete),
        )
        .route("/notifications/policies/new", get(policies::new_page))
        .route("/notifications/policies", post(policies::submit))
        .route("/notifications/policies/{name}", get(policies::edit_page))
        .route(
            "/notifications/policies/{name}/delete",
            post(policies::delete),
        )
        .route(
            "/notifications/silences",
            get(silences::new_page).post(silences::create),
        )
        .route(
            "/notifications/silences/{id}/delete",
            post(silences::delete),
        )
        .route("/notifications/week", get(week::page))
        .route("/deliveries", get(deliveries::list_page))
        .route("/deliveries/{id}", get(deliveries::detail))
        .route("/alerts/{id}/explain", get(deliveries::explain_alert))
}

/// A finished action's message, from its code (never text from the URL).
fn notice(done: &str) -> Option<String> {
    let text = match done {
        "contact-point-deleted" => "Contact point deleted.",
        "policy-saved" => "Policy saved.",
        "policy-deleted" => "Policy deleted.",
        "silence-created" => "Silence created.",
        "silence-deleted" => "Silence deleted.",
        _ => return None,
    };
    Some(text.to_string())
}

#[derive(Deserialize, Default)]
pub struct DoneQuery {
    #[serde(default)]
    done: String,
}

/// A contact point as a row.
pub struct ContactRow {
    pub name: String,
    pub kind: String,
    pub address: String,
    pub signed: bool,
    /// Why nothing is sent to it now (its channel is not configured), if so.
    pub warning: Option<String>,
}

/// A policy as a row: its rules in words.
pub struct PolicyRow {
    pub name: String,
    pub rules: Vec<String>,
}

/// A silence as a row.
pub struct SilenceRow {
    pub id: String,
    pub filter: String,
    pub starts: String,
    pub ends: String,
    pub ends_iso: String,
    pub comment: String,
    pub active: bool,
}

#[derive(Template)]
#[template(path = "notifications_overview.html")]
struct OverviewPage {
    layout: Layout,
    contact_points: Vec<ContactRow>,
    policies: Vec<PolicyRow>,
    silences: Vec<SilenceRow>,
    timezone: String,
}

async fn overview(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<DoneQuery>,
) -> Result<Response, WebError> {
    let principal = &viewer.principal;
    let clock = Clock::new(&principal.user.timezone, state.clock.now());
    let contact_points = notify::list_contact_points(&state, principal, None)
        .await?
        .into_iter()
        .map(|point| ContactRow {
            warning: notify::contact_point_warning(&state, &point),
            signed: point.secret.is_some(),
            name: point.name,
            kind: point.kind,
            address: point.address,
        })
        .collect();
    let policies = notify::list_policies(&state, principal, None)
        .await?
        .into_iter()
        .map(|record| PolicyRow {
            rules: record.policy.rules.iter().map(rule_words).collect(),
            name: record.name,
        })
        .collect();
    let now = clock.now();
    let silences = notify::list_silences(&state, principal, None)
        .await?
        .into_iter()
        .filter(|silence| silence.ends > now)
        .map(|silence| SilenceRow {
            active: silence.starts <= now,
            starts: clock.at(silence.starts),
            ends: clock.at(silence.ends),
            ends_iso: clock.iso(silence.ends),
            comment: silence.comment.unwrap_or_default(),
            filter: silence.filter,
            id: silence.id,
        })
        .collect();
    render(&OverviewPage {
        layout: Layout::new("My notifications", "notifications", &viewer)
            .with_notice(notice(&query.done)),
        contact_points,
        policies,
        silences,
        timezone: principal.user.timezone.clone(),
    })
}

/// A rule in one line: `mon-fri 09:00-18:00 · ⚠ warning and above → work-email, at once,
/// again every 1h, resolves too`.
pub fn rule_words(rule: &Rule) -> String {
    let when = match &rule.when {
        Some(window) => window.to_string(),
        None => "always".to_string(),
    };
    let mut words = format!(
        "{when} · {} {} and above → {}, {}",
        severity_icon(rule.min_severity),
        rule.min_severity.as_str(),
        rule.contact_points.join(", "),
        mode_words(&rule.mode)
    );
    if let Some(repeat) = rule.to_json()["repeat"].as_str() {
        words.push_str(&format!(", again every {repeat}"));
    }
    if rule.notify_resolved {
        words.push_str(", resolves too");
    }
    if rule.continue_ {
        words.push_str(", then the next rules too");
    }
    words
}

/// `at once`, `in a digest every 15m`, `held until 07:00`.
pub fn mode_words(mode: &Mode) -> String {
    let json = mode.to_json();
    match mode {
        Mode::Now => "at once".to_string(),
        Mode::Digest(_) => format!(
            "in a digest every {}",
            json["digest"].as_str().unwrap_or_default()
        ),
        Mode::HoldUntil(_) => format!(
            "held until {}",
            json["hold_until"].as_str().unwrap_or_default()
        ),
    }
}

/// A service's field errors by field path, and those no field claims.
#[derive(Default)]
pub struct FieldErrors {
    pub by_field: BTreeMap<String, String>,
    pub general: Vec<String>,
}

impl FieldErrors {
    /// Sorts `errors` onto the fields `place` names (`None`: no field, shown on top).
    pub fn sort(errors: &[ParamError], place: impl Fn(&str) -> Option<String>) -> FieldErrors {
        let mut sorted = FieldErrors::default();
        for error in errors {
            match place(&error.path) {
                Some(field) => {
                    let entry = sorted.by_field.entry(field).or_default();
                    if !entry.is_empty() {
                        entry.push_str("; ");
                    }
                    entry.push_str(&error.message);
                }
                None => sorted
                    .general
                    .push(format!("{}: {}", error.path, error.message)),
            }
        }
        sorted
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.by_field.get(field).map(String::as_str)
    }
}
