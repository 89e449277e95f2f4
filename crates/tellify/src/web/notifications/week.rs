//! "When will I be told" (`/notifications/week?policy=NAME`): a policy's coming 7 days per
//! severity, which channel is used when and what waits for a digest.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::rule_words;
use crate::services::{notify, schedule, AppState};
use crate::web::format::severity_icon;
use crate::web::{render, Layout, Viewer, WebError};

/// One stretch of a severity's week, as shown: local times, and what happens then.
pub struct Stretch {
    pub from: String,
    pub to: String,
    pub from_iso: String,
    /// `nothing` when no rule applies, else e.g. `sms now; email digest every 1h`.
    pub what: String,
    pub nothing: bool,
    pub held: bool,
}

/// One severity's week.
pub struct SeverityRow {
    pub severity: &'static str,
    pub icon: &'static str,
    pub stretches: Vec<Stretch>,
}

/// `"now"`, `{"digest": "1h"}` or `{"hold_until": "08:00"}` in words.
fn mode_words(mode: &serde_json::Value) -> (String, bool) {
    if let Some(every) = mode.get("digest").and_then(|v| v.as_str()) {
        return (format!("in a digest every {every}"), true);
    }
    if let Some(until) = mode.get("hold_until").and_then(|v| v.as_str()) {
        return (format!("held until {until}"), true);
    }
    ("at once".to_string(), false)
}

fn severity_rows(view: &schedule::WeekView) -> Vec<SeverityRow> {
    let zone = jiff::tz::TimeZone::get(&view.zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let local = |t: jiff::Timestamp| {
        t.to_zoned(zone.clone())
            .strftime("%a %d %b %H:%M")
            .to_string()
    };
    view.severities
        .iter()
        .rev()
        .map(|week| SeverityRow {
            severity: week.severity.as_str(),
            icon: severity_icon(week.severity),
            stretches: week
                .segments
                .iter()
                .map(|segment| {
                    let mut held = false;
                    let what = if segment.nothing {
                        "nobody is told".to_string()
                    } else {
                        segment
                            .applies
                            .iter()
                            .map(|applied| {
                                let (mode, is_held) = mode_words(&applied.mode);
                                held |= is_held;
                                format!(
                                    "rule {}: {} {}",
                                    applied.rule + 1,
                                    applied.contact_points.join(", "),
                                    mode
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("; ")
                    };
                    Stretch {
                        from: local(segment.from),
                        to: local(segment.to),
                        from_iso: segment.from.to_string(),
                        what,
                        nothing: segment.nothing,
                        held,
                    }
                })
                .collect(),
        })
        .collect()
}

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
    severities: Vec<SeverityRow>,
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
    let view = schedule::week(&state, &viewer.principal, None, name).await?;
    render(&WeekPage {
        severities: severity_rows(&view),
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
