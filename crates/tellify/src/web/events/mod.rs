//! The dashboard's event pages: search (`/events`, a time range in my zone, a CEL filter
//! with its compile error next to the field, type, text; paged, newest first), the live
//! tail (`/events?live=1`: the same search, then new matching events over one SSE stream
//! from `/events/tail`), one event's page (`/events/{id}`), and a chart of a numeric field
//! over time per group key (`/events/chart`, server-rendered SVG with a table fallback).
//!
//! Every search goes through `services::events::search`, the one the JSON API calls, so
//! both are bounded by the same `[search]` budget and see the same events.

mod chart;
mod detail;
mod search;
mod tail;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use jiff::Timestamp;
use serde::Deserialize;
use tellify_engine::filter::Filter;
use tellify_model::StoredEvent;

use super::format::{severity_icon, url_encode, Clock};
use crate::services::events::{compile_filter, parse_cursor, SearchRequest};
use crate::services::validate::parse_when;
use crate::services::AppState;

/// This area's routes, merged into [`super::routes`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(search::page))
        .route("/events/tail", get(tail::tail))
        .route("/events/chart", get(chart::page))
        .route("/events/{id}", get(detail::page))
}

/// The search form, from the query string (the tail's and the chart's too).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SearchQuery {
    /// Start of the range: a local time in my zone (`2026-11-23T10:00`), an RFC 3339
    /// time, or a duration ago (`2h`); empty is one hour ago.
    #[serde(default)]
    pub from: String,
    /// End of the range, as `from`; empty is open (up to now).
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub filter: String,
    #[serde(default, rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub text: String,
    /// The previous page's `next`.
    #[serde(default)]
    pub before: String,
    /// `1`: the live tail is on.
    #[serde(default)]
    pub live: String,
    /// The chart's numeric field and group field.
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub group: String,
}

impl SearchQuery {
    /// The query string of this search (without the cursor), for links.
    pub fn query_string(&self) -> String {
        let mut parts = Vec::new();
        for (key, value) in [
            ("from", &self.from),
            ("to", &self.to),
            ("filter", &self.filter),
            ("type", &self.event_type),
            ("text", &self.text),
        ] {
            if !value.trim().is_empty() {
                parts.push(format!("{key}={}", url_encode(value)));
            }
        }
        parts.join("&")
    }

    pub fn is_live(&self) -> bool {
        matches!(self.live.as_str(), "1" | "on" | "true")
    }
}

/// A filter that did not compile, where it went wrong.
pub struct FilterProblem {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

/// Every field's problem with a search form, for next to each field.
#[derive(Default)]
pub struct FormErrors {
    pub filter: Option<FilterProblem>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub before: Option<String>,
}

impl FormErrors {
    pub fn any(&self) -> bool {
        self.filter.is_some() || self.from.is_some() || self.to.is_some() || self.before.is_some()
    }
}

/// A search form read: the service's request, the range it covers, and the problems.
pub struct ParsedSearch {
    pub request: SearchRequest,
    pub since: Timestamp,
    pub until: Timestamp,
    pub errors: FormErrors,
}

/// Reads a search form in the viewer's zone. Every problem is kept, each for its field.
pub fn parse_search(query: &SearchQuery, clock: &Clock) -> ParsedSearch {
    let mut errors = FormErrors::default();
    let now = clock.now();
    let default_since = now - jiff::SignedDuration::from_hours(1);
    let since = match query.from.trim() {
        "" => default_since,
        text => parse_local("from", text, clock).unwrap_or_else(|error| {
            errors.from = Some(error);
            default_since
        }),
    };
    let until = match query.to.trim() {
        "" => None,
        text => match parse_local("to", text, clock) {
            Ok(time) => Some(time),
            Err(error) => {
                errors.to = Some(error);
                None
            }
        },
    };
    if let Some(until) = until {
        if until <= since && errors.from.is_none() {
            errors.to = Some("must be after the start of the range".to_string());
        }
    }
    let filter: Option<Arc<Filter>> = match compile_filter(Some(&query.filter)) {
        Ok(filter) => filter,
        Err(error) => {
            errors.filter = Some(FilterProblem {
                message: error.message,
                line: error.line,
                column: error.column,
            });
            None
        }
    };
    let before = match query.before.trim() {
        "" => None,
        text => match parse_cursor(text) {
            Ok(seq) => Some(seq),
            Err(_) => {
                errors.before = Some("not a position from a previous page".to_string());
                None
            }
        },
    };
    let text = query.text.trim();
    let event_type = query.event_type.trim();
    ParsedSearch {
        request: SearchRequest {
            filter,
            since: Some(since),
            until,
            event_type: (!event_type.is_empty()).then(|| event_type.to_string()),
            text: (!text.is_empty()).then(|| text.to_string()),
            before,
            limit: 0,
        },
        since,
        until: until.unwrap_or(now),
        errors,
    }
}

/// A time as people type it on this site: a local date and time in their zone
/// (`2026-11-23T10:00`, as a `datetime-local` field sends it), an RFC 3339 time, or a
/// duration ago (`2h`).
pub fn parse_local(name: &str, text: &str, clock: &Clock) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(civil) = text.replacen(' ', "T", 1).parse::<jiff::civil::DateTime>() {
        return civil
            .to_zoned(clock.zone().clone())
            .map(|zoned| zoned.timestamp())
            .map_err(|error| format!("`{text}` is not a time in your zone: {error}"));
    }
    parse_when(name, text, clock.now(), false).map_err(|error| {
        // The shared message starts with the field's name; next to the field it is noise.
        error
            .strip_prefix(&format!("`{name}`: "))
            .unwrap_or(&error)
            .to_string()
            + "; or a local time such as 2026-11-23T10:00"
    })
}

/// `2026-11-23T10:00` in the viewer's zone, as a `datetime-local` field shows it.
pub fn local_input(clock: &Clock, time: Timestamp) -> String {
    clock.local(time).strftime("%Y-%m-%dT%H:%M").to_string()
}

/// One event as a row of a list (the search page and the live tail render the same).
pub struct EventRow {
    pub id: String,
    pub seq: i64,
    pub time: String,
    pub time_iso: String,
    pub severity: &'static str,
    pub icon: &'static str,
    pub event_type: String,
    pub source: String,
    pub message: String,
    /// `name=value` pairs, cut at [`FIELDS_SHOWN`] characters.
    pub fields: String,
    pub repeats: u32,
}

/// Most characters of the fields shown in a row; the event's page has them all.
pub const FIELDS_SHOWN: usize = 160;

impl EventRow {
    pub fn new(event: &StoredEvent, repeats: u32, clock: &Clock) -> EventRow {
        let source = [
            event.source.host.as_deref(),
            event.source.component.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" / ");
        let mut fields = event
            .fields
            .iter()
            .map(|(name, value)| format!("{name}={}", value_text(value)))
            .collect::<Vec<_>>()
            .join(" ");
        if fields.chars().count() > FIELDS_SHOWN {
            fields = fields.chars().take(FIELDS_SHOWN).collect::<String>() + "…";
        }
        EventRow {
            id: event.id.clone(),
            seq: event.seq,
            time: clock.at(event.time),
            time_iso: clock.iso(event.time),
            severity: event.severity.as_str(),
            icon: severity_icon(event.severity),
            event_type: event.event_type.clone().unwrap_or_default(),
            source,
            message: event.message.clone().unwrap_or_default(),
            fields,
            repeats,
        }
    }
}

/// A field's value as text: strings as they are, anything else as JSON.
pub fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Clock {
        Clock::new("Europe/Berlin", "2026-11-23T09:00:00Z".parse().unwrap())
    }

    #[test]
    fn a_range_is_read_in_my_zone_and_defaults_to_the_last_hour() {
        let clock = clock();
        let parsed = parse_search(&SearchQuery::default(), &clock);
        assert_eq!(parsed.since.to_string(), "2026-11-23T08:00:00Z");
        assert_eq!(parsed.request.until, None);
        let query = SearchQuery {
            from: "2026-11-23T09:30".into(),
            to: "2026-11-23 10:15".into(),
            ..SearchQuery::default()
        };
        let parsed = parse_search(&query, &clock);
        assert!(!parsed.errors.any());
        assert_eq!(parsed.since.to_string(), "2026-11-23T08:30:00Z");
        assert_eq!(parsed.until.to_string(), "2026-11-23T09:15:00Z");
        assert_eq!(local_input(&clock, parsed.since), "2026-11-23T09:30");
    }

    #[test]
    fn every_bad_field_has_its_own_error() {
        let query = SearchQuery {
            from: "yesterday-ish".into(),
            to: "2h".into(),
            filter: "usage >".into(),
            before: "x".into(),
            ..SearchQuery::default()
        };
        let parsed = parse_search(&query, &clock());
        assert!(parsed.errors.from.is_some());
        assert!(parsed.errors.before.is_some());
        let filter = parsed.errors.filter.expect("filter error");
        assert_eq!(filter.line, 1);
        assert!(filter.column > 1, "{}", filter.column);
        // `to` (2 h ago) is before the default start only when `from` is fine.
        assert!(parsed.errors.to.is_none());
    }
}
