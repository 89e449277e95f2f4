//! `GET /events/tail`: the live tail's one SSE stream. Each new event that passes the
//! filter, type and text is sent as a rendered table row (`event: row`, its log position
//! as the SSE id); `static/events.js` puts it on top and keeps the last 200.
//!
//! No gap between the page and the stream: the page passes `after` (the log position it
//! searched up to); a reconnect sends `Last-Event-ID`. Either way the stream first sends
//! the matching events stored after that position (looking at most at [`MAX_REPLAY`]),
//! then live ones. When it cannot (too many missed, or the bus overtook this stream) it
//! says so (`event: gap`) rather than pretending to be complete.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tellify_engine::filter::Filter;
use tellify_model::StoredEvent;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::search::EventRows;
use super::EventRow;
use crate::services::{events, sessions, AppState};
use crate::stream::StreamItem;
use crate::web::format::Clock;
use crate::web::live::signal;
use crate::web::session::session_secret;
use crate::web::{Viewer, WebError};

/// Most stored events looked at when catching up after `after` / `Last-Event-ID`.
pub const MAX_REPLAY: usize = 1000;
/// Most rows sent when catching up (the page keeps no more).
pub const KEPT: usize = 200;
/// How often the stream checks that the session still exists.
const SESSION_CHECK: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
pub struct TailQuery {
    #[serde(default)]
    filter: String,
    #[serde(default, rename = "type")]
    event_type: String,
    #[serde(default)]
    text: String,
    after: Option<i64>,
}

/// What a tail lets through: the search's own rule (`services::events::matches`).
struct TailFilter {
    filter: Option<Arc<Filter>>,
    event_type: Option<String>,
    text: Option<String>,
}

impl TailFilter {
    fn passes(&self, event: &StoredEvent) -> bool {
        if let Some(kind) = &self.event_type {
            if event.event_type.as_deref() != Some(kind.as_str()) {
                return false;
            }
        }
        events::matches(self.filter.as_deref(), self.text.as_deref(), event)
    }
}

pub async fn tail(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Query(query): Query<TailQuery>,
) -> Result<Response, WebError> {
    crate::services::error::require(&viewer.principal, crate::auth::Scope::User)?;
    let filter = events::compile_filter(Some(&query.filter))
        .map_err(|error| WebError::BadRequest(format!("filter: {error}")))?;
    let trimmed = |text: &str| {
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    };
    let check = TailFilter {
        filter,
        event_type: trimmed(&query.event_type),
        text: trimmed(&query.text).map(|text| text.to_lowercase()),
    };
    let zone = viewer.principal.user.timezone.clone();
    let clock_source = state.clock.clone();
    let row = move |event: &StoredEvent| -> Option<Event> {
        let clock = Clock::new(&zone, clock_source.now());
        let html = EventRows {
            rows: vec![EventRow::new(event, 0, &clock)],
        }
        .render()
        .ok()?;
        Some(
            Event::default()
                .event("row")
                .id(event.seq.to_string())
                .data(html),
        )
    };
    // Subscribe before reading the log, so nothing falls between catch-up and live.
    let mut bus = state.bus.subscribe();
    let after = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<i64>().ok())
        .or(query.after);
    let mut first: Vec<Event> = vec![signal("ready")];
    let mut caught_up_to = i64::MIN;
    if let Some(after) = after {
        let missed = state.store.events_after(after, MAX_REPLAY).await?;
        if missed.len() >= MAX_REPLAY {
            first.push(signal("gap"));
        }
        let mut rows: Vec<Event> = Vec::new();
        for event in &missed {
            caught_up_to = event.seq;
            if check.passes(event) {
                rows.extend(row(event));
            }
        }
        let skip = rows.len().saturating_sub(KEPT);
        first.extend(rows.into_iter().skip(skip));
    }
    let secret = session_secret(&headers).unwrap_or_default().to_string();
    let (sender, receiver) = mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(async move {
        for event in first {
            if sender.send(Ok(event)).await.is_err() {
                return;
            }
        }
        let mut session_check = tokio::time::interval(SESSION_CHECK);
        session_check.tick().await;
        loop {
            let event = tokio::select! {
                item = bus.recv() => match item {
                    Ok(StreamItem::Event(event)) if event.seq > caught_up_to && check.passes(&event) => row(&event),
                    Ok(StreamItem::Resync) | Err(RecvError::Lagged(_)) => Some(signal("gap")),
                    Ok(_) => None,
                    Err(RecvError::Closed) => return,
                },
                _ = session_check.tick() => match sessions::resolve(&state, &secret).await {
                    Ok(Some(_)) => None,
                    _ => {
                        let _ = sender.send(Ok(signal("signed-out"))).await;
                        return;
                    }
                },
                _ = sender.closed() => return,
            };
            if let Some(event) = event {
                if sender.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(receiver))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
