//! `GET /api/v1/stream`: server-sent events of new events (`event: event`) and alert
//! changes (`event: alert`) that the caller may see. `?filter=` narrows the events;
//! `?events=false` or `?alerts=false` turns one kind off.
//!
//! Each event item carries its log position as the SSE id. A client that reconnects with
//! `Last-Event-ID` first gets the events stored after that position (up to
//! [`MAX_REPLAY`]) and then the live stream, without gaps or repeats. Alert changes are
//! live only; `GET /api/v1/alerts` has their current state.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tellify_engine::filter::{EventContext, Filter};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::{ApiError, ApiResult, AppState, Auth, QueryParams};
use crate::auth::Scope;
use crate::stream::StreamItem;

/// Most events replayed after a `Last-Event-ID`.
pub const MAX_REPLAY: usize = 10_000;

#[derive(Deserialize)]
pub struct StreamQuery {
    filter: Option<String>,
    events: Option<bool>,
    alerts: Option<bool>,
}

pub async fn stream(
    State(state): State<AppState>,
    auth: Auth,
    headers: axum::http::HeaderMap,
    QueryParams(query): QueryParams<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let principal = auth.require(Scope::User)?.clone();
    let filter = match query.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(source) => {
            Some(Arc::new(Filter::compile(source).map_err(|error| {
                ApiError::bad_request(format!("`filter`: {error}"))
            })?))
        }
        None => None,
    };
    let want_events = query.events.unwrap_or(true);
    let want_alerts = query.alerts.unwrap_or(true);
    let now = state.clock.clone();
    // Subscribe before reading the log, so nothing falls between replay and live items.
    let receiver = state.bus.subscribe();
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<i64>().ok());
    let mut replayed: Vec<Result<Event, Infallible>> =
        vec![Ok(Event::default().event("ready").data("{}"))];
    let mut replayed_up_to = i64::MIN;
    if let (Some(after), true) = (last_event_id, want_events) {
        for event in state.store.events_after(after, MAX_REPLAY).await? {
            replayed_up_to = event.seq;
            let keep = filter
                .as_ref()
                .is_none_or(|filter| filter.matches(&EventContext::new(&event)));
            if keep {
                replayed.push(Ok(event_item(&event)));
            }
        }
    }
    let ready = futures_util::stream::iter(replayed);
    let items = BroadcastStream::new(receiver).filter_map(move |item| {
        let filter = filter.clone();
        let principal = principal.clone();
        let now = now.clone();
        async move {
            let event = match item {
                Err(BroadcastStreamRecvError::Lagged(missed)) => Some(
                    Event::default()
                        .event("lagged")
                        .data(json!({"missed": missed}).to_string()),
                ),
                Ok(StreamItem::Event(event)) if want_events => {
                    let keep = event.seq > replayed_up_to
                        && filter
                            .as_ref()
                            .is_none_or(|filter| filter.matches(&EventContext::new(&event)));
                    keep.then(|| event_item(&event))
                }
                Ok(StreamItem::Alert(notice)) if want_alerts => {
                    let alert = &notice.alert;
                    principal
                        .can_see(alert.owner_user.as_deref(), alert.owner_group.as_deref())
                        .then(|| {
                            let body = json!({
                                "alert": alert.clone().at(now.now()),
                                "changes": notice.history,
                            });
                            Event::default().event("alert").data(body.to_string())
                        })
                }
                Ok(StreamItem::Resync) => Some(
                    Event::default().event("resync").data(
                        json!({"reason": "changes made on other nodes may have been missed; \
                                reconnect with Last-Event-ID to read missed events"})
                        .to_string(),
                    ),
                ),
                Ok(_) => None,
            };
            event.map(Ok)
        }
    });
    Ok(Sse::new(ready.chain(items)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn event_item(event: &tellify_model::StoredEvent) -> Event {
    Event::default()
        .event("event")
        .id(event.seq.to_string())
        .data(serde_json::to_string(event).unwrap_or_default())
}
