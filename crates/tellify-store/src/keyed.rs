//! Keyed lookups in the event log, for the compatibility APIs whose answers depend on an
//! earlier event of the same thing: Alerta's duplicate count (the newest event of the same
//! alert) and Alertmanager's alert list (the newest event of each fingerprint). A lookup
//! names the event type, optionally the producer, a time bound and field values, so a
//! backend answers it from an index instead of the caller paging through the log.

use jiff::Timestamp;

/// The newest events of one type that match a key, newest first. Repeats (see
/// [`crate::Store::append_events`]) are not returned: the first event stands for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyedEventQuery {
    pub event_type: String,
    /// Only events of this producer (the user whose token sent them).
    pub producer: Option<String>,
    /// Only events whose time is at or after this.
    pub since: Timestamp,
    /// Top-level fields that must hold exactly these texts.
    pub equal: Vec<(String, String)>,
    /// When set, `(fields, text)`: one of these top-level fields must be `text` or a list
    /// that holds it (Alerta's `event` or its `correlate` list).
    pub names: Option<(Vec<String>, String)>,
    /// When set, a dotted path under the fields (`alertmanager.fingerprint`): only the
    /// newest event of each distinct value there, and none without a value.
    pub newest_per: Option<String>,
    pub limit: usize,
}

/// The event types whose events are looked up by producer: a backend may keep a structure
/// of its own for them (each event of one of them that has a producer, not its repeats).
pub(crate) const KEYED_TYPES: [&str; 1] = [tellify_engine::handlers::alerta::EVENT_TYPE];

/// The segments of a dotted path under an event's fields, or `None` for a path with a
/// segment that cannot be quoted (empty, or holding `"`).
pub(crate) fn field_segments(dotted: &str) -> Option<Vec<&str>> {
    let mut segments = Vec::new();
    for segment in dotted.split('.') {
        if segment.is_empty() || segment.contains('"') {
            return None;
        }
        segments.push(segment);
    }
    Some(segments)
}

/// The SQLite JSON path of a dotted path under an event's fields, each segment quoted, or
/// `None` for a segment that cannot be quoted (see [`field_segments`]).
pub(crate) fn fields_path(dotted: &str) -> Option<String> {
    let mut path = String::from("$.fields");
    for segment in field_segments(dotted)? {
        path.push_str(&format!(".\"{segment}\""));
    }
    Some(path)
}
