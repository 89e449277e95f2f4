//! `/events/{id}`: one event — its envelope, its fields as a table and as JSON, the
//! alerts it last fired that I may see, and a link to search similar events.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use tellify_model::StoredEvent;

use super::{local_input, value_text};
use crate::services::alerts::{self, AlertFilter, StateFilter};
use crate::services::{events, AppState};
use crate::web::format::{severity_icon, url_encode, Clock};
use crate::web::{render, Layout, Viewer, WebError};

/// How many of my newest alerts are looked through for ones this event fired.
const ALERTS_LOOKED_AT: usize = 200;

#[derive(Template)]
#[template(path = "events_detail.html")]
struct DetailPage {
    layout: Layout,
    envelope: Vec<(&'static str, String)>,
    time: String,
    time_iso: String,
    severity: &'static str,
    icon: &'static str,
    fields: Vec<(String, String)>,
    json: String,
    alerts: Vec<FiredAlert>,
    similar: String,
    alerts_looked_at: usize,
}

struct FiredAlert {
    id: String,
    title: String,
    group_key: String,
    severity: &'static str,
    icon: &'static str,
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let event = events::get(&state, &viewer.principal, &id).await?;
    let clock = Clock::new(&viewer.principal.user.timezone, state.clock.now());
    // Cheaply knowable: among my newest alerts, those whose last firing was this event.
    let mine = alerts::list(
        &state,
        &viewer.principal,
        AlertFilter {
            state: StateFilter::All,
            limit: ALERTS_LOOKED_AT,
            ..AlertFilter::default()
        },
    )
    .await?;
    let fired = mine
        .items
        .iter()
        .filter(|alert| alert.event_id.as_deref() == Some(event.id.as_str()))
        .map(|alert| FiredAlert {
            id: alert.id.clone(),
            title: alert.title.clone(),
            group_key: alert.group_key.clone(),
            severity: alert.severity.as_str(),
            icon: severity_icon(alert.severity),
        })
        .collect();
    let envelope = vec![
        ("Id", event.id.clone()),
        ("Position", event.seq.to_string()),
        ("Received", clock.full(event.received)),
        ("Type", event.event_type.clone().unwrap_or_default()),
        ("Message", event.message.clone().unwrap_or_default()),
        ("Host", event.source.host.clone().unwrap_or_default()),
        (
            "Component",
            event.source.component.clone().unwrap_or_default(),
        ),
        ("Sent by", event.source.producer.clone().unwrap_or_default()),
        (
            "Idempotency key",
            event.idempotency_key.clone().unwrap_or_default(),
        ),
        ("Derivation depth", event.depth.to_string()),
        (
            "Repeats in its dedup window",
            event.repeat_count.to_string(),
        ),
    ];
    let fields = event
        .fields
        .iter()
        .map(|(name, value)| (name.clone(), value_text(value)))
        .collect();
    render(&DetailPage {
        layout: Layout::new(
            event
                .message
                .clone()
                .unwrap_or_else(|| format!("Event {}", event.id)),
            "events",
            &viewer,
        ),
        envelope,
        time: clock.full(event.time),
        time_iso: clock.iso(event.time),
        severity: event.severity.as_str(),
        icon: severity_icon(event.severity),
        fields,
        json: serde_json::to_string_pretty(&event).unwrap_or_default(),
        alerts: fired,
        similar: similar_link(&event, &clock),
        alerts_looked_at: ALERTS_LOOKED_AT,
    })
}

/// A search for events like this one: its type and host, from an hour before it to an
/// hour after.
fn similar_link(event: &StoredEvent, clock: &Clock) -> String {
    let hour = jiff::SignedDuration::from_hours(1);
    let mut parts = vec![
        format!(
            "from={}",
            url_encode(&local_input(clock, event.time - hour))
        ),
        format!("to={}", url_encode(&local_input(clock, event.time + hour))),
    ];
    if let Some(kind) = &event.event_type {
        parts.push(format!("type={}", url_encode(kind)));
    }
    if let Some(host) = &event.source.host {
        parts.push(format!("filter={}", url_encode(&host_filter(host))));
    }
    format!("/events?{}", parts.join("&"))
}

/// `host == "…"` with the host as a CEL string literal (JSON's escapes are CEL's).
fn host_filter(host: &str) -> String {
    let literal = serde_json::to_string(host).unwrap_or_else(|_| "\"\"".to_string());
    format!("host == {literal}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_similar_filter_quotes_any_host_so_it_compiles() {
        for host in ["db1", "a\"b", "back\\slash", "new\nline"] {
            let filter = host_filter(host);
            tellify_engine::filter::Filter::compile(&filter)
                .unwrap_or_else(|error| panic!("{filter}: {error}"));
        }
    }
}
