//! `/events`: the search page, and with `live=1` the live tail over it.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{local_input, parse_search, EventRow, FormErrors, SearchQuery};
use crate::services::events;
use crate::services::AppState;
use crate::web::format::{url_encode, Clock};
use crate::web::{render_status, Layout, Viewer, WebError};

/// Events on one page of results.
pub const PAGE: usize = 100;

#[derive(Template)]
#[template(path = "events_search.html")]
struct SearchPage {
    layout: Layout,
    query: SearchQuery,
    /// The range as the form shows it, in my zone.
    from: String,
    to: String,
    zone: String,
    errors: FormErrors,
    rows: EventRows,
    empty: bool,
    /// The next page's link, when there is one.
    next: Option<String>,
    partial: bool,
    examined: usize,
    live: bool,
    /// Which of the area's views this is (`search`, `live`).
    current: &'static str,
    /// The tail's stream URL (only when live).
    tail_url: String,
    search_link: String,
    live_link: String,
    chart_link: String,
}

/// Rows alone: the page's table body, and each row the tail sends.
#[derive(Template)]
#[template(path = "events_rows.html")]
pub struct EventRows {
    pub rows: Vec<EventRow>,
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<SearchQuery>,
) -> Result<Response, WebError> {
    let clock = Clock::new(&viewer.principal.user.timezone, state.clock.now());
    let mut parsed = parse_search(&query, &clock);
    let live = query.is_live();
    let base = query.query_string();
    let with = |extra: &str| {
        let joined = [base.as_str(), extra]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("&");
        if joined.is_empty() {
            joined
        } else {
            format!("?{joined}")
        }
    };
    let mut page = SearchPage {
        layout: Layout::new(if live { "Live tail" } else { "Events" }, "events", &viewer),
        from: if query.from.trim().is_empty() {
            local_input(&clock, parsed.since)
        } else {
            query.from.clone()
        },
        to: query.to.clone(),
        zone: viewer.principal.user.timezone.clone(),
        errors: FormErrors::default(),
        rows: EventRows { rows: Vec::new() },
        empty: true,
        next: None,
        partial: false,
        examined: 0,
        live,
        current: if live { "live" } else { "search" },
        tail_url: String::new(),
        search_link: format!("/events{}", with("")),
        live_link: format!("/events{}", with("live=1")),
        chart_link: format!("/events/chart{}", with("")),
        query: query.clone(),
    };
    if parsed.errors.any() {
        page.errors = std::mem::take(&mut parsed.errors);
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    // Read before the search, so the tail starts where the page's rows end.
    let last_seq = state.store.last_seq().await?;
    parsed.request.limit = PAGE;
    let found = events::search(&state, &viewer.principal, parsed.request).await?;
    page.rows.rows = found
        .items
        .iter()
        .map(|event| EventRow::new(event, event.repeat_count, &clock))
        .collect();
    page.empty = page.rows.rows.is_empty();
    page.partial = found.partial;
    page.examined = found.examined;
    page.next = found
        .next
        .map(|next| format!("/events{}", with(&format!("before={}", url_encode(&next)))));
    if live {
        page.tail_url = format!(
            "/events/tail?after={last_seq}&filter={}&type={}&text={}",
            url_encode(&query.filter),
            url_encode(&query.event_type),
            url_encode(&query.text)
        );
    }
    render_status(StatusCode::OK, &page)
}
