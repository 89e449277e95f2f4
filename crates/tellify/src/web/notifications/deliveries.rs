//! My deliveries (`/deliveries`, filtered by status, live) and the explain pages: one
//! delivery (`/deliveries/{id}`: its record, attempts and the provider's answers, and the
//! alerts it carried) and one alert (`/alerts/{id}/explain`: the deliveries it caused).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use tellify_store::{Delivery, DeliveryStatus};

use crate::services::sessions::SignedIn;
use crate::services::{alerts, notify, AppState};
use crate::web::format::{severity_icon, url_encode, Clock};
use crate::web::{render, Layout, Viewer, WebError};

/// Most deliveries on one page of the list.
const PAGE: usize = 100;

/// The list's filter, from the query string (also the live stream's).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DeliveryQuery {
    /// `pending`, `sending`, `sent`, `failed` or empty (all).
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub before: String,
}

impl DeliveryQuery {
    fn query_string(&self) -> String {
        if self.status.is_empty() {
            String::new()
        } else {
            format!("status={}", url_encode(&self.status))
        }
    }
}

/// One delivery as a row.
pub struct DeliveryRow {
    pub id: String,
    pub status: &'static str,
    /// The status's sign, shown with its word (never colour alone).
    pub icon: &'static str,
    pub attempts: u32,
    pub last_error: String,
    pub contact_point: String,
    pub kind: String,
    pub subject: String,
    pub items: u32,
    pub created: String,
    pub created_iso: String,
    pub sent: String,
    /// Pending: when the next attempt is due.
    pub next_attempt: String,
    pub receipt: String,
}

impl DeliveryRow {
    pub fn new(delivery: &Delivery, clock: &Clock) -> DeliveryRow {
        DeliveryRow {
            id: delivery.id.clone(),
            status: delivery.status.as_str(),
            icon: status_icon(delivery.status),
            attempts: delivery.attempts,
            last_error: delivery.last_error.clone().unwrap_or_default(),
            contact_point: delivery.contact_point.clone(),
            kind: delivery.kind.clone(),
            subject: delivery.subject.clone().unwrap_or_default(),
            items: delivery.items,
            created: clock.at(delivery.created),
            created_iso: clock.iso(delivery.created),
            sent: delivery.sent_at.map(|t| clock.at(t)).unwrap_or_default(),
            next_attempt: match delivery.status {
                DeliveryStatus::Pending => clock.at(delivery.next_attempt),
                _ => String::new(),
            },
            receipt: delivery.receipt.clone().unwrap_or_default(),
        }
    }
}

pub fn status_icon(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Pending => "…",
        DeliveryStatus::Sending => "↻",
        DeliveryStatus::Sent => "✓",
        DeliveryStatus::Failed => "✗",
    }
}

/// The list region, for the page and the live stream alike.
#[derive(Template)]
#[template(path = "notifications_deliveries_list.html")]
pub struct DeliveryListFragment {
    pub rows: Vec<DeliveryRow>,
    /// The next page's link, when there is one.
    pub next: Option<String>,
    pub filtered: bool,
}

/// The list for one viewer and filter; the page and the live view both render it, so a
/// live update always equals a fresh load.
pub async fn delivery_list(
    state: &AppState,
    viewer: &SignedIn,
    query: &DeliveryQuery,
) -> Result<DeliveryListFragment, WebError> {
    let principal = &viewer.principal;
    let clock = Clock::new(&principal.user.timezone, state.clock.now());
    let status = match query.status.as_str() {
        "" => None,
        text => Some(DeliveryStatus::parse(text).ok_or_else(|| {
            WebError::BadRequest(format!(
                "status: `{text}` is not one of pending, sending, sent, failed"
            ))
        })?),
    };
    let (items, next) = notify::list_deliveries(
        state,
        principal,
        None,
        notify::DeliveryFilter {
            status,
            alert: None,
            cursor: (!query.before.is_empty()).then(|| query.before.clone()),
            limit: PAGE,
        },
    )
    .await?;
    let next = next.map(|id| {
        let filter = query.query_string();
        let separator = if filter.is_empty() { "" } else { "&" };
        format!("/deliveries?{filter}{separator}before={}", url_encode(&id))
    });
    Ok(DeliveryListFragment {
        rows: items.iter().map(|d| DeliveryRow::new(d, &clock)).collect(),
        next,
        filtered: status.is_some(),
    })
}

#[derive(Template)]
#[template(path = "notifications_deliveries.html")]
struct ListPage {
    layout: Layout,
    fragment: DeliveryListFragment,
    filter: DeliveryQuery,
    live_url: String,
}

pub async fn list_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<DeliveryQuery>,
) -> Result<Response, WebError> {
    let fragment = delivery_list(&state, &viewer, &query).await?;
    let live_url = if query.before.is_empty() {
        let filter = query.query_string();
        let separator = if filter.is_empty() { "" } else { "&" };
        format!("/live?view=deliveries{separator}{filter}")
    } else {
        // An older page stays as it is.
        String::new()
    };
    render(&ListPage {
        layout: Layout::new("My deliveries", "deliveries", &viewer),
        fragment,
        filter: query,
        live_url,
    })
}

/// An attempt as shown.
pub struct AttemptRow {
    pub at: String,
    pub at_iso: String,
    pub ok: bool,
    pub detail: String,
}

/// An alert transition a delivery carried.
pub struct ItemRow {
    pub alert_id: String,
    pub transition: String,
    pub title: String,
    pub severity: &'static str,
    pub icon: &'static str,
    pub group_key: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "notifications_delivery.html")]
struct DetailPage {
    layout: Layout,
    delivery: DeliveryRow,
    attempts: Vec<AttemptRow>,
    items: Vec<ItemRow>,
}

/// Explain a delivery: what it carried, where it went, every attempt and what the
/// provider answered.
pub async fn detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let principal = &viewer.principal;
    let (delivery, attempts, items) = notify::delivery(&state, principal, &id).await?;
    let clock = Clock::new(&principal.user.timezone, state.clock.now());
    render(&DetailPage {
        layout: Layout::new(
            format!("Delivery to {}", delivery.contact_point),
            "deliveries",
            &viewer,
        ),
        delivery: DeliveryRow::new(&delivery, &clock),
        attempts: attempts
            .iter()
            .map(|attempt| AttemptRow {
                at: clock.full(attempt.at),
                at_iso: clock.iso(attempt.at),
                ok: attempt.ok,
                detail: attempt.detail.clone(),
            })
            .collect(),
        items: items
            .iter()
            .map(|item| ItemRow {
                alert_id: item.alert_id.clone(),
                transition: item.transition.clone(),
                title: item.alert.title.clone(),
                severity: item.alert.severity.as_str(),
                icon: severity_icon(item.alert.severity),
                group_key: item.alert.group_key.clone(),
                message: item.alert.message.clone(),
            })
            .collect(),
    })
}

#[derive(Template)]
#[template(path = "notifications_alert_explain.html")]
struct AlertExplainPage {
    layout: Layout,
    alert_id: String,
    title: String,
    severity: &'static str,
    icon: &'static str,
    group_key: String,
    deliveries: Vec<DeliveryRow>,
}

/// Explain an alert: the deliveries it caused (an alert that sent nothing shows none).
pub async fn explain_alert(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let principal = &viewer.principal;
    let (alert, _) = alerts::with_history(&state, principal, &id).await?;
    let clock = Clock::new(&principal.user.timezone, state.clock.now());
    let (deliveries, _) = notify::list_deliveries(
        &state,
        principal,
        None,
        notify::DeliveryFilter {
            alert: Some(alert.id.clone()),
            limit: PAGE,
            ..Default::default()
        },
    )
    .await?;
    render(&AlertExplainPage {
        layout: Layout::new(
            format!("Why was I told: {}", alert.title),
            "alerts",
            &viewer,
        ),
        alert_id: alert.id.clone(),
        title: alert.title.clone(),
        severity: alert.severity.as_str(),
        icon: severity_icon(alert.severity),
        group_key: alert.group_key.clone(),
        deliveries: deliveries
            .iter()
            .map(|d| DeliveryRow::new(d, &clock))
            .collect(),
    })
}
