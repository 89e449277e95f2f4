//! Event search and reading, shared by `GET /api/v1/events` and the dashboard's event
//! pages (search, detail, chart).
//!
//! **Invariant:** a search is bounded per request. It goes back through the log in store
//! steps of at most [`ROWS_PER_STEP`] rows: the filter's `event.type == "x"` (or the
//! asked type) and `field == literal` predicates are pushed into the store, the rest of
//! the filter and the text match run on a blocking thread. It stops at a full page, at
//! the start of the log, or at the `[search]` budget (rows examined, milliseconds),
//! whichever comes first, and then says where to go on (`next`) and whether it stopped
//! early (`partial`).
//!
//! Who may read events: anyone with the `user` scope (events are not owned; alerts are).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;
use tellify_engine::filter::{EventContext, Filter, FilterError};
use tellify_engine::IndexValue;
use tellify_model::StoredEvent;
use tellify_store::{ChartAggregate, ChartQuery, EventSearch, ListedEvent};

use super::error::{require, ServiceError, ServiceResult};
use super::Services;
use crate::auth::{Principal, Scope};

/// Rows one store step looks at: one step holds a read connection for a few milliseconds.
pub const ROWS_PER_STEP: usize = 1000;

/// What to search for. Every part narrows; none given is "the newest events".
#[derive(Clone, Default)]
pub struct SearchRequest {
    pub filter: Option<Arc<Filter>>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Only events of this type (pushed into the store's type index).
    pub event_type: Option<String>,
    /// Only events whose message, source or field names and values contain this text,
    /// ignoring case.
    pub text: Option<String>,
    /// Only events older than this log position (a previous page's `next`).
    pub before: Option<i64>,
    /// Most events answered.
    pub limit: usize,
}

/// A page of events, newest first. `next` resumes the search; `partial` says it stopped
/// at its budget (time or rows) rather than at a full page or the start of the log.
#[derive(Clone, Debug, Serialize)]
pub struct EventPage {
    pub items: Vec<ListedEvent>,
    pub next: Option<String>,
    pub partial: bool,
    /// Stored events looked at (an upper bound).
    pub examined: usize,
}

/// Compiles a search filter; blank is no filter. The faces shape the error (its line and
/// column go next to the field).
pub fn compile_filter(source: Option<&str>) -> Result<Option<Arc<Filter>>, FilterError> {
    match source.filter(|text| !text.trim().is_empty()) {
        Some(text) => Filter::compile(text).map(|filter| Some(Arc::new(filter))),
        None => Ok(None),
    }
}

/// Reads a `next` cursor from a previous page.
pub fn parse_cursor(cursor: &str) -> ServiceResult<i64> {
    cursor.parse::<i64>().map_err(|_| {
        ServiceError::field(
            "cursor",
            format!("`{cursor}` is not a cursor from a previous page"),
        )
    })
}

/// Searches the log, newest first, within the `[search]` budget (see the module doc).
pub async fn search(
    services: &Services,
    principal: &Principal,
    request: SearchRequest,
) -> ServiceResult<EventPage> {
    require(principal, Scope::User)?;
    let limit = request.limit.max(1);
    let text = request
        .text
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_lowercase);
    let (filter_type, field_equals) = match &request.filter {
        Some(filter) => pushdown(filter),
        None => (None, Vec::new()),
    };
    let event_type = request
        .event_type
        .clone()
        .filter(|kind| !kind.trim().is_empty())
        .or(filter_type);
    let narrowing = Narrowing {
        filter: request.filter.clone(),
        text,
    };
    let budget = &services.settings.search;
    let deadline = Instant::now() + Duration::from_millis(budget.time_budget_ms);
    let mut before = request.before;
    // Collect one more match than asked: it tells whether another page follows.
    let mut items: Vec<ListedEvent> = Vec::new();
    let mut examined = 0;
    loop {
        let rows_left = budget.max_rows_examined.saturating_sub(examined);
        let max_examined = rows_left.clamp(1, ROWS_PER_STEP);
        // With a filter the store cannot tell which of its rows will match: it hands back
        // every row that passed what it could check, and the filter picks.
        let wanted = limit + 1 - items.len();
        let step_limit = if narrowing.is_some() {
            max_examined
        } else {
            wanted
        };
        let step = services
            .store
            .search_events(EventSearch {
                since: request.since,
                until: request.until,
                before_seq: before,
                event_type: event_type.clone(),
                field_equals: field_equals.clone(),
                limit: step_limit,
                max_examined,
            })
            .await?;
        examined += step.examined;
        let (kept, unfinished) = if narrowing.is_some() {
            let narrowing = narrowing.clone();
            tokio::task::spawn_blocking(move || {
                narrowing.evaluate_until(step.events, wanted, deadline)
            })
            .await
            .map_err(|error| {
                tracing::error!(%error, "event search evaluation stopped");
                ServiceError::Internal("the search failed".to_string())
            })?
        } else {
            (step.events, None)
        };
        items.extend(kept);
        if items.len() > limit {
            items.truncate(limit);
            let next = items.last().map(|event| event.seq.to_string());
            return Ok(EventPage {
                items,
                next,
                partial: false,
                examined,
            });
        }
        if let Some(seq) = unfinished {
            // Stopped by the deadline before this event: the next page starts with it.
            return Ok(partial_page(items, seq.saturating_add(1), examined));
        }
        let Some(resume) = step.resume_before else {
            return Ok(EventPage {
                items,
                next: None,
                partial: false,
                examined,
            });
        };
        before = Some(resume);
        // Checked after a step, so every request moves the cursor on.
        if examined >= budget.max_rows_examined || Instant::now() >= deadline {
            return Ok(partial_page(items, resume, examined));
        }
    }
}

/// A numeric field of the events in a range bucketed per group key by the store (see
/// [`tellify_store::Store::chart_events`]): for anyone who may search events. Bounded by
/// the query's `max_examined`, the newest events first. It cannot apply a CEL filter or a
/// text match; a chart with either reads its events through [`search`] instead.
pub async fn chart(
    services: &Services,
    principal: &Principal,
    query: ChartQuery,
) -> ServiceResult<ChartAggregate> {
    require(principal, Scope::User)?;
    Ok(services.store.chart_events(query).await?)
}

/// One event by id, for anyone who may search events.
pub async fn get(
    services: &Services,
    principal: &Principal,
    id: &str,
) -> ServiceResult<ListedEvent> {
    require(principal, Scope::User)?;
    services
        .store
        .event(id)
        .await?
        .ok_or(ServiceError::NotFound("event"))
}

/// Whether `event` passes `filter` (none passes all) and contains `text` (lowercase; none
/// passes all): the live tail's check, the same as a search's.
pub fn matches(filter: Option<&Filter>, text: Option<&str>, event: &StoredEvent) -> bool {
    if let Some(text) = text.filter(|text| !text.is_empty()) {
        if !contains_text(event, text) {
            return false;
        }
    }
    filter.is_none_or(|filter| filter.matches(&EventContext::new(event)))
}

/// Whether the event's message, type, source, or a field's name or value contains
/// `needle` (already lowercase).
pub fn contains_text(event: &StoredEvent, needle: &str) -> bool {
    let has = |text: &str| text.to_lowercase().contains(needle);
    let envelope = [
        event.message.as_deref(),
        event.event_type.as_deref(),
        event.source.host.as_deref(),
        event.source.component.as_deref(),
        event.source.producer.as_deref(),
    ];
    if envelope.into_iter().flatten().any(has) {
        return true;
    }
    event.fields.iter().any(|(name, value)| {
        has(name)
            || match value {
                serde_json::Value::String(text) => has(text),
                other => has(&other.to_string()),
            }
    })
}

fn partial_page(items: Vec<ListedEvent>, before: i64, examined: usize) -> EventPage {
    EventPage {
        items,
        next: Some(before.to_string()),
        partial: true,
        examined,
    }
}

/// What a search checks beyond the store's predicates.
#[derive(Clone)]
struct Narrowing {
    filter: Option<Arc<Filter>>,
    text: Option<String>,
}

impl Narrowing {
    fn is_some(&self) -> bool {
        self.filter.is_some() || self.text.is_some()
    }

    /// Checks `events` (newest first) until `wanted` match or the deadline passes;
    /// returns the matches and, when stopped by the deadline, the `seq` of the first event
    /// not looked at. The first event is always looked at, so a search makes progress
    /// however small its budget.
    fn evaluate_until(
        &self,
        events: Vec<ListedEvent>,
        wanted: usize,
        deadline: Instant,
    ) -> (Vec<ListedEvent>, Option<i64>) {
        let mut kept = Vec::new();
        for (index, event) in events.into_iter().enumerate() {
            if kept.len() >= wanted {
                break;
            }
            if index > 0 && Instant::now() >= deadline {
                return (kept, Some(event.seq));
            }
            if matches(self.filter.as_deref(), self.text.as_deref(), &event) {
                kept.push(event);
            }
        }
        (kept, None)
    }
}

/// The filter's predicates the store can apply: `event.type == "x"` through its type
/// index, `name == literal` on ordinary top-level fields as a pre-filter. The names that
/// fall back to the envelope when no field has them (`severity`, `host`, ...) stay with
/// CEL, so the pre-filter never drops an event the filter accepts.
fn pushdown(filter: &Filter) -> (Option<String>, Vec<(String, IndexValue)>) {
    let mut event_type = None;
    let mut field_equals = Vec::new();
    for (name, value) in filter.equalities() {
        match (name.as_str(), value) {
            ("event.type", IndexValue::Str(kind)) if event_type.is_none() => {
                event_type = Some(kind.clone())
            }
            ("severity" | "message" | "host" | "component", _) => {}
            (field, _) if !field.starts_with("event.") => {
                field_equals.push((field.to_string(), value.clone()))
            }
            _ => {}
        }
    }
    (event_type, field_equals)
}
