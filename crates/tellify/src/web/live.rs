//! `GET /live?view=…`: one SSE stream per tab that keeps a page's live region equal to a
//! fresh load. On every (re)connect it sends a full `snapshot` of the region, then a new
//! snapshot whenever something the viewer may see changed (debounced), and once a minute
//! (relative times and expiries move on their own). `app.js` swaps the region in, unless
//! someone is typing in a form inside it, and keeps selected rows selected.
//!
//! Views: `alerts` (the home list, with the list's filters), `alert` (`id`: one alert's
//! page body), `deliveries` (my deliveries, with the list's `status` filter). A view renders the same template the page includes, from the same function.

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::alerts::{alert_list, alert_page, AlertListFragment, ListQuery};
use super::notifications::deliveries::{delivery_list, DeliveryQuery};
use super::session::session_secret;
use super::{Viewer, WebError};
use crate::services::sessions;
use crate::services::AppState;
use crate::stream::StreamItem;

/// Changes closer together than this make one snapshot.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// A snapshot at least this often, changes or not.
const REFRESH: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
pub struct ViewQuery {
    view: String,
    #[serde(default)]
    id: String,
}

/// An SSE event that carries only its name (`signed-out`, `gone`, the tail's `ready` and
/// `gap`). Its name is its data too: axum writes no `data:` line for empty data, and a
/// browser's `EventSource` drops an event without data, so an empty signal never fires.
pub fn signal(name: &'static str) -> Event {
    Event::default().event(name).data(name)
}

#[derive(Clone)]
enum View {
    Alerts(ListQuery),
    Alert(String),
    Deliveries(DeliveryQuery),
}

pub async fn live(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: axum::http::HeaderMap,
    Query(view): Query<ViewQuery>,
    Query(list): Query<ListQuery>,
    Query(deliveries): Query<DeliveryQuery>,
) -> Result<Response, WebError> {
    let view = match view.view.as_str() {
        "alerts" => View::Alerts(list),
        "alert" if !view.id.is_empty() => View::Alert(view.id),
        "deliveries" => View::Deliveries(deliveries),
        other => {
            return Err(WebError::BadRequest(format!(
                "view: `{other}` is not one of alerts, alert (with id), deliveries"
            )))
        }
    };
    // Render once before answering: a view the viewer may not see is a 404 now, not an
    // empty stream.
    let first = snapshot(&state, &viewer, &view).await?;
    let secret = session_secret(&headers).unwrap_or_default().to_string();
    let (sender, receiver) = mpsc::channel::<Result<Event, Infallible>>(4);
    let mut bus = state.bus.subscribe();
    tokio::spawn(async move {
        if sender.send(Ok(first)).await.is_err() {
            return;
        }
        loop {
            let changed = tokio::select! {
                item = bus.recv() => match item {
                    Ok(item) => concerns(&viewer, &view, &item),
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(REFRESH) => true,
                _ = sender.closed() => return,
            };
            if !changed {
                continue;
            }
            // Let a burst of changes settle into one snapshot.
            let settle = tokio::time::sleep(DEBOUNCE);
            tokio::pin!(settle);
            loop {
                tokio::select! {
                    _ = &mut settle => break,
                    item = bus.recv() => if let Err(RecvError::Closed) = item { return },
                }
            }
            // The session may have ended meanwhile (signed out, offboarded).
            let current = match sessions::resolve(&state, &secret).await {
                Ok(Some(current)) => current,
                _ => {
                    let _ = sender.send(Ok(signal("signed-out"))).await;
                    return;
                }
            };
            let event = match snapshot(&state, &current, &view).await {
                Ok(event) => event,
                Err(WebError::NotFound) => signal("gone"),
                Err(error) => {
                    tracing::warn!(?error, "a live view failed to render");
                    continue;
                }
            };
            if sender.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(receiver))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Whether a bus item can change what `view` shows this viewer.
fn concerns(viewer: &sessions::SignedIn, view: &View, item: &StreamItem) -> bool {
    match item {
        StreamItem::Alert(notice) => {
            let alert = &notice.alert;
            let visible = viewer
                .principal
                .can_see(alert.owner_user.as_deref(), alert.owner_group.as_deref());
            match view {
                View::Alerts(_) => visible,
                View::Alert(id) => visible && alert.id == *id,
                View::Deliveries(_) => false,
            }
        }
        StreamItem::Delivery(notice) => {
            matches!(view, View::Deliveries(_)) && notice.user_id == viewer.principal.user.id
        }
        StreamItem::Event(_) => false,
        StreamItem::Resync => true,
    }
}

async fn snapshot(
    state: &AppState,
    viewer: &sessions::SignedIn,
    view: &View,
) -> Result<Event, WebError> {
    let html = match view {
        View::Alerts(query) => AlertListFragment {
            list: alert_list(state, viewer, query).await?,
            csrf: viewer.csrf.clone(),
        }
        .render(),
        View::Alert(id) => alert_page(state, viewer, id).await?.body.render(),
        View::Deliveries(query) => delivery_list(state, viewer, query).await?.render(),
    }
    .map_err(|error| WebError::Internal(format!("a live view failed to render: {error}")))?;
    Ok(Event::default().event("snapshot").data(html))
}
