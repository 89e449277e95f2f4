//! My alerts (the home page), one alert's page, my acks and shelves, and the actions:
//! acknowledge (note, expiry), shelve (1 h, until tomorrow 08:00 in my zone, until it
//! resolves; with a reason), unshelve and clear, one at a time or in bulk (one request).

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use tellify_engine::alerts::{Action, Alert, AlertState, HistoryEntry};
use tellify_model::Severity;

use super::format::{severity_icon, url_encode, Clock};
use super::{render, see_other, CsrfForm, Layout, Viewer, WebError};
use crate::services::alerts::{self, AlertFilter, StateFilter};
use crate::services::links::ShelveChoice;
use crate::services::sessions::SignedIn;
use crate::services::validate::parse_future;
use crate::services::{subscriptions, AppState};

/// Most alerts on one page of the list.
const PAGE: usize = 200;
/// Most recently resolved alerts under the firing ones in the default view.
const RECENT: usize = 50;

/// The list's filters, from the query string (also the live stream's).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListQuery {
    /// `firing`, `resolved`, `cleared`, `all`, or empty: firing first, then recent.
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub subscription: String,
    /// `subscription`, `severity` or empty (no grouping).
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub before: String,
    /// A finished action's code, shown once (`acked`, `shelved`, ...).
    #[serde(default)]
    pub done: String,
    #[serde(default)]
    pub n: usize,
}

impl ListQuery {
    /// The query string that shows this list again (without `done`).
    pub fn query_string(&self) -> String {
        let mut parts = Vec::new();
        for (key, value) in [
            ("state", &self.state),
            ("severity", &self.severity),
            ("subscription", &self.subscription),
            ("group", &self.group),
        ] {
            if !value.is_empty() {
                parts.push(format!("{key}={}", url_encode(value)));
            }
        }
        parts.join("&")
    }
}

/// One alert as a row.
pub struct Row {
    pub id: String,
    pub severity: &'static str,
    pub icon: &'static str,
    pub title: String,
    pub message: String,
    pub subscription_id: String,
    pub group_key: String,
    pub state: &'static str,
    pub since: String,
    pub since_iso: String,
    pub since_relative: String,
    pub count: u64,
    /// "acked by ann, until 14:00 CET" and the like.
    pub ack: Option<String>,
    pub shelve: Option<String>,
    pub firing: bool,
    pub shelved: bool,
    pub acked: bool,
    pub owner: String,
}

impl Row {
    pub fn new(alert: &Alert, clock: &Clock) -> Row {
        let now = clock.now();
        let since = match alert.state {
            AlertState::Firing => alert.first_seen,
            AlertState::Resolved => alert.resolved_at.unwrap_or(alert.last_seen),
        };
        let ack = alert.is_acked(now).then(|| {
            let by = alert.acked_by.as_deref().unwrap_or("someone");
            match alert.ack_expires {
                Some(until) => format!("acknowledged by {by} until {}", clock.at(until)),
                None => format!("acknowledged by {by}"),
            }
        });
        let shelve = match (alert.shelved_until, alert.shelved_oneshot) {
            (Some(until), _) if until > now => Some(format!(
                "shelved by {} until {}",
                alert.shelved_by.as_deref().unwrap_or("someone"),
                clock.at(until)
            )),
            (_, true) => Some(format!(
                "shelved by {} until it resolves",
                alert.shelved_by.as_deref().unwrap_or("someone")
            )),
            _ => None,
        };
        Row {
            id: alert.id.clone(),
            severity: alert.severity.as_str(),
            icon: severity_icon(alert.severity),
            title: alert.title.clone(),
            message: alert.message.clone(),
            subscription_id: alert.subscription_id.clone(),
            group_key: alert.group_key.clone(),
            state: if alert.cleared {
                "cleared"
            } else if alert.state == AlertState::Firing {
                "firing"
            } else {
                "resolved"
            },
            since: clock.at(since),
            since_iso: clock.iso(since),
            since_relative: clock.relative(since),
            count: alert.count,
            shelved: shelve.is_some(),
            acked: ack.is_some(),
            ack,
            shelve,
            firing: alert.state == AlertState::Firing && !alert.cleared,
            owner: alert
                .owner_group
                .as_ref()
                .map(|g| format!("group {g}"))
                .unwrap_or_default(),
        }
    }
}

/// A titled part of the list.
pub struct Section {
    pub heading: String,
    pub rows: Vec<Row>,
}

/// The alert list as shown: sections, and the next page's cursor.
pub struct AlertList {
    pub sections: Vec<Section>,
    pub next: Option<String>,
    pub query: String,
    pub empty: bool,
}

/// The list for one viewer and query; the page and the live stream both render it, so a
/// live update always equals a fresh load.
pub async fn alert_list(
    state: &AppState,
    viewer: &SignedIn,
    query: &ListQuery,
) -> Result<AlertList, WebError> {
    let principal = &viewer.principal;
    let clock = Clock::new(&principal.user.timezone, state.clock.now());
    let severity = match query.severity.as_str() {
        "" => None,
        text => Some(
            text.parse::<Severity>()
                .map_err(|e| WebError::BadRequest(format!("severity: {e}")))?,
        ),
    };
    let subscription = (!query.subscription.is_empty()).then(|| query.subscription.clone());
    let before = (!query.before.is_empty()).then(|| query.before.clone());
    let filter = |state_filter, limit| AlertFilter {
        state: state_filter,
        subscription: subscription.clone(),
        severity,
        before: before.clone(),
        limit,
    };
    let (alerts, next) = if query.state.is_empty() {
        // Firing first, then the most recently resolved.
        let firing = alerts::list(state, principal, filter(StateFilter::Firing, PAGE)).await?;
        let mut all = firing.items;
        let mut next = firing.next;
        if next.is_none() {
            let recent =
                alerts::list(state, principal, filter(StateFilter::Resolved, RECENT)).await?;
            all.extend(recent.items);
            next = None;
        }
        (all, next)
    } else {
        let wanted = StateFilter::parse(&query.state).map_err(WebError::BadRequest)?;
        let page = alerts::list(state, principal, filter(wanted, PAGE)).await?;
        (page.items, page.next)
    };
    let empty = alerts.is_empty();
    let mut groups: BTreeMap<(u8, String), Vec<Row>> = BTreeMap::new();
    for alert in &alerts {
        let key = match query.group.as_str() {
            "subscription" => (0, alert.title.clone()),
            "severity" => (
                match alert.severity {
                    Severity::Critical => 0,
                    Severity::Warning => 1,
                    Severity::Info => 2,
                },
                format!(
                    "{} {}",
                    severity_icon(alert.severity),
                    alert.severity.as_str()
                ),
            ),
            _ => {
                if alert.state == AlertState::Firing && !alert.cleared {
                    (0, "Firing".to_string())
                } else {
                    (1, "Recent".to_string())
                }
            }
        };
        groups.entry(key).or_default().push(Row::new(alert, &clock));
    }
    let sections = groups
        .into_iter()
        .map(|((_, heading), rows)| Section { heading, rows })
        .collect();
    Ok(AlertList {
        sections,
        next,
        query: query.query_string(),
        empty,
    })
}

/// What a finished action says, from its code (never text from the URL).
fn notice(done: &str, count: usize) -> Option<String> {
    let what = match done {
        "acked" => "Acknowledged",
        "shelved" => "Shelved",
        "unshelved" => "Unshelved",
        "cleared" => "Cleared",
        _ => return None,
    };
    Some(if count > 1 {
        format!("{what} {count} alerts.")
    } else {
        format!("{what}.")
    })
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    layout: Layout,
    fragment: AlertListFragment,
    filter: ListQuery,
    subscriptions: Vec<(String, String)>,
    live_url: String,
    csrf: String,
}

pub async fn home(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, WebError> {
    let list = alert_list(&state, &viewer, &query).await?;
    let mut subscriptions: Vec<(String, String)> = subscriptions::list(&state, &viewer.principal)
        .await?
        .into_iter()
        .map(|s| (s.id, s.title))
        .collect();
    subscriptions.sort_by(|a, b| a.1.cmp(&b.1));
    let live_url = format!("/live?view=alerts&{}", list.query);
    render(&AlertsPage {
        layout: Layout::new("My alerts", "alerts", &viewer)
            .with_notice(notice(&query.done, query.n)),
        csrf: viewer.csrf.clone(),
        fragment: AlertListFragment {
            list,
            csrf: viewer.csrf.clone(),
        },
        filter: query,
        subscriptions,
        live_url,
    })
}

/// The list alone, for the live stream.
#[derive(Template)]
#[template(path = "alerts_list.html")]
pub struct AlertListFragment {
    pub list: AlertList,
    pub csrf: String,
}

/// One history entry as shown.
pub struct HistoryRow {
    pub at: String,
    pub at_iso: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub event_id: Option<String>,
}

impl HistoryRow {
    fn new(entry: &HistoryEntry, clock: &Clock) -> HistoryRow {
        let event_id = entry
            .detail
            .get("event_id")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let detail = match &entry.detail {
            serde_json::Value::Object(map) => map
                .iter()
                .filter(|(key, _)| key.as_str() != "event_id")
                .map(|(key, value)| match value {
                    serde_json::Value::String(text) => format!("{key}: {text}"),
                    other => format!("{key}: {other}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
        HistoryRow {
            at: clock.full(entry.at),
            at_iso: clock.iso(entry.at),
            actor: entry.actor.clone(),
            action: entry.action.as_str().replace('_', " "),
            detail,
            event_id,
        }
    }
}

/// An event behind an alert, as shown.
pub struct EventRow {
    pub id: String,
    pub time: String,
    pub body: String,
}

#[derive(Template)]
#[template(path = "alert.html")]
pub struct AlertPage {
    layout: Layout,
    pub body: AlertBody,
    csrf: String,
    live_url: String,
    back: String,
}

/// The live part of an alert's page: its state, fields, history and events.
#[derive(Template)]
#[template(path = "alert_body.html")]
pub struct AlertBody {
    pub alert: Row,
    pub history: Vec<HistoryRow>,
    pub events: Vec<EventRow>,
    pub fields: Vec<(String, String)>,
}

/// One alert's page content, for the page and its live region.
pub async fn alert_page(
    state: &AppState,
    viewer: &SignedIn,
    id: &str,
) -> Result<AlertPage, WebError> {
    let (alert, history) = alerts::with_history(state, &viewer.principal, id).await?;
    let clock = Clock::new(&viewer.principal.user.timezone, state.clock.now());
    let mut event_ids: Vec<String> = history
        .iter()
        .rev()
        .filter_map(|entry| entry.detail.get("event_id").and_then(|v| v.as_str()))
        .map(str::to_string)
        .collect();
    if let Some(id) = &alert.event_id {
        event_ids.insert(0, id.clone());
    }
    event_ids.dedup();
    event_ids.truncate(10);
    let mut events = Vec::new();
    for event_id in &event_ids {
        if let Some(event) = state.store.event(event_id).await? {
            if events.iter().any(|e: &EventRow| e.id == event.id) {
                continue;
            }
            events.push(EventRow {
                id: event.id.clone(),
                time: clock.full(event.time),
                body: serde_json::to_string_pretty(&event.event).unwrap_or_default(),
            });
        }
    }
    let fields = alert
        .fields
        .iter()
        .map(|(key, value)| {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (key.clone(), text)
        })
        .collect();
    Ok(AlertPage {
        layout: Layout::new(alert.title.clone(), "alerts", viewer),
        body: AlertBody {
            alert: Row::new(&alert, &clock),
            history: history
                .iter()
                .rev()
                .map(|e| HistoryRow::new(e, &clock))
                .collect(),
            events,
            fields,
        },
        csrf: viewer.csrf.clone(),
        live_url: format!("/live?view=alert&id={}", url_encode(id)),
        back: format!("/alerts/{}", url_encode(id)),
    })
}

pub async fn detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Response, WebError> {
    let mut page = alert_page(&state, &viewer, &id).await?;
    page.layout.notice = notice(&query.done, query.n);
    render(&page)
}

/// The action form (one alert or many).
#[derive(Deserialize)]
pub struct ActionForm {
    /// `ack`, `shelve`, `unshelve` or `clear`.
    #[serde(default)]
    action: String,
    #[serde(default)]
    note: String,
    /// Ack expiry: empty (none) or a duration (`2h`) or a time.
    #[serde(default)]
    expires: String,
    /// `1h`, `tomorrow` (08:00 in my zone) or `resolves`.
    #[serde(default)]
    shelve: String,
    #[serde(default)]
    reason: String,
    /// Where to go back to (a local path).
    #[serde(default)]
    back: String,
    #[serde(default)]
    id: Vec<String>,
}

fn action_of(form: &ActionForm, clock: &Clock) -> Result<(Action, &'static str), WebError> {
    let text = |value: &str| {
        let trimmed = value.trim();
        (!trimmed.is_empty()).then(|| trimmed.to_string())
    };
    match form.action.as_str() {
        "ack" => {
            let expires = match form.expires.trim() {
                "" => None,
                given => Some(
                    parse_future("expires", given, clock.now()).map_err(WebError::BadRequest)?,
                ),
            };
            Ok((
                Action::Ack {
                    note: text(&form.note),
                    expires,
                },
                "acked",
            ))
        }
        "shelve" => {
            // The same three choices, and the same "tomorrow 08:00", as an action link's.
            let given = if form.shelve.is_empty() {
                "1h"
            } else {
                form.shelve.as_str()
            };
            let choice = ShelveChoice::parse(given).ok_or_else(|| {
                WebError::BadRequest(format!(
                    "shelve: `{given}` is not one of 1h, tomorrow, resolves"
                ))
            })?;
            let action = match choice.action(clock.zone(), clock.now()) {
                Action::Shelve { until, oneshot, .. } => Action::Shelve {
                    until,
                    oneshot,
                    reason: text(&form.reason),
                },
                other => other,
            };
            Ok((action, "shelved"))
        }
        "unshelve" => Ok((Action::Unshelve, "unshelved")),
        "clear" => Ok((Action::Clear, "cleared")),
        other => Err(WebError::BadRequest(format!(
            "action: `{other}` is not one of ack, shelve, unshelve, clear"
        ))),
    }
}

fn back_to(back: &str, done: &str, count: usize) -> String {
    let path = super::format::safe_next(Some(back));
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}done={done}&n={count}")
}

pub async fn act(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, form }: CsrfForm<ActionForm>,
) -> Result<Response, WebError> {
    let clock = Clock::new(&viewer.principal.user.timezone, state.clock.now());
    let (action, done) = action_of(&form, &clock)?;
    alerts::act(&state, &viewer.principal, &id, action).await?;
    let back = if form.back.is_empty() {
        format!("/alerts/{}", url_encode(&id))
    } else {
        form.back.clone()
    };
    Ok(see_other(&back_to(&back, done, 1)))
}

/// One action on every selected alert, in one request. Alerts that are not the viewer's
/// are "not found" and stop nothing else; the page says how many were done.
pub async fn bulk(
    State(state): State<AppState>,
    CsrfForm { viewer, form }: CsrfForm<ActionForm>,
) -> Result<Response, WebError> {
    if form.id.is_empty() {
        return Err(WebError::BadRequest(
            "select at least one alert for a bulk action".to_string(),
        ));
    }
    if form.id.len() > PAGE {
        return Err(WebError::BadRequest(format!(
            "at most {PAGE} alerts at once"
        )));
    }
    let clock = Clock::new(&viewer.principal.user.timezone, state.clock.now());
    let (action, done) = action_of(&form, &clock)?;
    let mut done_count = 0;
    let mut failures = Vec::new();
    for id in &form.id {
        match alerts::act(&state, &viewer.principal, id, action.clone()).await {
            Ok(_) => done_count += 1,
            Err(error) => failures.push(format!("{id}: {error}")),
        }
    }
    if !failures.is_empty() && done_count == 0 {
        return Err(WebError::BadRequest(failures.join("; ")));
    }
    let back = if form.back.is_empty() {
        "/"
    } else {
        &form.back
    };
    Ok(see_other(&back_to(back, done, done_count)))
}

#[derive(Template)]
#[template(path = "acks.html")]
struct AcksPage {
    layout: Layout,
    acked: Vec<Row>,
    shelved: Vec<Row>,
    csrf: String,
}

/// My acks and shelves, with what expires when.
pub async fn acks(State(state): State<AppState>, viewer: Viewer) -> Result<Response, WebError> {
    let principal = &viewer.principal;
    let clock = Clock::new(&principal.user.timezone, state.clock.now());
    let held = alerts::held(&state, principal).await?;
    let name = &principal.user.name;
    let now = clock.now();
    let mut acked = Vec::new();
    let mut shelved = Vec::new();
    for alert in &held {
        if alert.is_acked(now) && alert.acked_by.as_deref() == Some(name) {
            acked.push(Row::new(alert, &clock));
        }
        if alert.is_shelved(now) && alert.shelved_by.as_deref() == Some(name) {
            shelved.push(Row::new(alert, &clock));
        }
    }
    render(&AcksPage {
        layout: Layout::new("My acks and shelves", "acks", &viewer),
        acked,
        shelved,
        csrf: viewer.csrf.clone(),
    })
}
