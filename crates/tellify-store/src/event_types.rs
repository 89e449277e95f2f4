//! The event-type registry's records, events as search lists them (with their repeat
//! count), the dedup key that decides which events are repeats of one another, and the
//! stored form of a repeat that every backend shares.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tellify_model::{Severity, StoredEvent};

/// A registered event type: what producers may rely on when they name it in `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventType {
    pub name: String,
    pub description: String,
    pub category: Option<String>,
    /// Given to an event of this type whose producer sent no severity.
    pub default_severity: Option<Severity>,
    /// A JSON Schema the event's `fields` object must satisfy.
    pub schema: Option<Value>,
    /// Identical events of this type inside one interval, counted from the first
    /// sighting, are stored once with a repeat count.
    pub dedup_interval: Option<SignedDuration>,
    pub created: Timestamp,
    pub updated: Timestamp,
}

/// A stored event with how many identical events followed it inside its dedup window.
///
/// Search lists an event once; each repeat still has its own place in the log, so the
/// worker sees every occurrence (see [`crate::Store::events_after`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListedEvent {
    #[serde(flatten)]
    pub event: StoredEvent,
    /// Occurrences after the first: five identical events in one window list as one
    /// event with `repeat_count` 4.
    pub repeat_count: u32,
}

impl std::ops::Deref for ListedEvent {
    type Target = StoredEvent;

    fn deref(&self) -> &StoredEvent {
        &self.event
    }
}

/// The dedup key of `event`: SHA-256 over canonical JSON (object keys sorted) of its type,
/// severity, message, source (host, component, producer), derivation depth and fields.
///
/// Time, id and idempotency key are left out on purpose: they differ between occurrences
/// of the same thing. Depth is in so that a repeat can be rebuilt exactly from the first
/// occurrence. `None` for an event without a type, which can never be deduplicated.
pub fn dedup_key(event: &StoredEvent) -> Option<[u8; 32]> {
    let event_type = event.event_type.as_deref()?;
    let mut text = Vec::with_capacity(256);
    text.push(b'[');
    for part in [
        Some(event_type),
        Some(event.severity.as_str()),
        event.message.as_deref(),
        event.source.host.as_deref(),
        event.source.component.as_deref(),
        event.source.producer.as_deref(),
    ] {
        write_optional_string(part, &mut text);
        text.push(b',');
    }
    text.extend_from_slice(event.depth.to_string().as_bytes());
    text.push(b',');
    write_canonical_object(&event.fields, &mut text);
    text.push(b']');
    Some(Sha256::digest(&text).into())
}

/// What a repeat row stores of its own: everything else is the first occurrence's. A
/// backend keeps a repeat as a row whose body is this (as JSON) and that points at its
/// first occurrence.
#[derive(Serialize, Deserialize)]
struct Occurrence {
    time: Timestamp,
    received: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
}

/// The stored body of `event` as a repeat: its own times and idempotency key.
pub(crate) fn repeat_body(event: &StoredEvent) -> serde_json::Result<String> {
    serde_json::to_string(&Occurrence {
        time: event.time,
        received: event.received,
        idempotency_key: event.idempotency_key.clone(),
    })
}

/// Rebuilds a repeat as the log presents it: the first occurrence with the repeat's own
/// position, times and idempotency key (`occurrence` is a [`repeat_body`]).
pub(crate) fn rebuild_repeat(
    mut original: StoredEvent,
    seq: i64,
    occurrence: &str,
) -> serde_json::Result<StoredEvent> {
    let occurrence: Occurrence = serde_json::from_str(occurrence)?;
    original.seq = seq;
    original.time = occurrence.time;
    original.received = occurrence.received;
    original.idempotency_key = occurrence.idempotency_key;
    Ok(original)
}

fn write_optional_string(text: Option<&str>, out: &mut Vec<u8>) {
    match text {
        Some(text) => write_string(text, out),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    // Serializing a `str` cannot fail; an empty string would still keep keys distinct.
    if let Ok(encoded) = serde_json::to_string(text) {
        out.extend_from_slice(encoded.as_bytes());
    }
}

fn write_canonical_object(object: &serde_json::Map<String, Value>, out: &mut Vec<u8>) {
    let mut keys: Vec<&String> = object.keys().collect();
    keys.sort();
    out.push(b'{');
    for (index, key) in keys.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        if let Some(value) = object.get(key) {
            write_canonical(value, out);
        }
    }
    out.push(b'}');
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(object) => write_canonical_object(object, out),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::String(text) => write_string(text, out),
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tellify_model::EventInput;

    fn event(json: &str) -> StoredEvent {
        let input: EventInput = serde_json::from_str(json).unwrap();
        StoredEvent::from_input(input, Some("ann".into()), Timestamp::UNIX_EPOCH, 0)
    }

    #[test]
    fn the_key_ignores_field_order_time_and_idempotency_key() {
        let first = event(r#"{"type": "disk", "fields": {"fs": "/a", "n": {"x": 1, "y": 2}}}"#);
        let second = event(
            r#"{"type": "disk", "time": "2026-01-01T00:00:00Z", "idempotency_key": "k",
                "fields": {"n": {"y": 2, "x": 1}, "fs": "/a"}}"#,
        );
        assert_eq!(dedup_key(&first), dedup_key(&second));
    }

    #[test]
    fn the_key_tells_apart_what_makes_events_different() {
        let base = dedup_key(&event(r#"{"type": "disk", "fields": {"fs": "/a"}}"#));
        for other in [
            r#"{"type": "disk", "fields": {"fs": "/b"}}"#,
            r#"{"type": "disk", "severity": "warning", "fields": {"fs": "/a"}}"#,
            r#"{"type": "disk", "message": "m", "fields": {"fs": "/a"}}"#,
            r#"{"type": "disk", "source": {"host": "h"}, "fields": {"fs": "/a"}}"#,
            r#"{"type": "disk2", "fields": {"fs": "/a"}}"#,
        ] {
            assert_ne!(base, dedup_key(&event(other)), "{other}");
        }
        let mut from_someone_else = event(r#"{"type": "disk", "fields": {"fs": "/a"}}"#);
        from_someone_else.source.producer = Some("bob".into());
        assert_ne!(base, dedup_key(&from_someone_else));
        assert_eq!(dedup_key(&event(r#"{"message": "untyped"}"#)), None);
    }
}
