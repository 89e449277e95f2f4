use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Severity;

/// The producer's data: a JSON object whose leaves are strings, numbers and booleans.
pub type Fields = serde_json::Map<String, serde_json::Value>;

/// Where an event comes from, as the producer describes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
}

/// An event as a producer sends it. Every key is optional, but at least one of `type`,
/// `message` and `fields` must be present (see [`EventInput::validate`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Fields::is_empty")]
    pub fields: Fields,
}

/// Size limits an event must respect; configurable by the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most fields in one event, counting nested ones.
    pub max_fields: usize,
    /// Deepest nesting of objects and arrays inside `fields` (1 = flat).
    pub max_depth: usize,
    /// Longest string anywhere in an event, in bytes.
    pub max_string_bytes: usize,
    /// Longest field name, in bytes.
    pub max_key_bytes: usize,
    /// Most list items in one event, in any one list and in all of its lists together.
    /// Filters iterate and compare lists, so their cost bound rests on this: it may be
    /// lowered, not raised above [`MAX_LIST_ITEMS_CEILING`].
    pub max_list_items: usize,
}

/// The highest `max_list_items` an operator may set: the filter cost bound in the engine
/// assumes no event carries a longer list.
pub const MAX_LIST_ITEMS_CEILING: usize = 100;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_fields: 100,
            max_depth: 4,
            max_string_bytes: 8192,
            max_key_bytes: 128,
            max_list_items: MAX_LIST_ITEMS_CEILING,
        }
    }
}

/// One thing wrong with an input, with the path to it (`fields.tns`, `type`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

impl EventInput {
    /// Checks the event against `limits` and the envelope rules, returning every problem.
    pub fn validate(&self, limits: &Limits) -> Result<(), Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let mut push = |field: &str, message: String| {
            problems.push(FieldProblem {
                field: field.to_string(),
                message,
            })
        };
        if self.event_type.is_none() && self.message.is_none() && self.fields.is_empty() {
            push(
                "",
                "an event needs at least one of `type`, `message` or `fields`".to_string(),
            );
        }
        let strings = [
            ("type", self.event_type.as_deref()),
            ("message", self.message.as_deref()),
            ("idempotency_key", self.idempotency_key.as_deref()),
            (
                "source.host",
                self.source.as_ref().and_then(|s| s.host.as_deref()),
            ),
            (
                "source.component",
                self.source.as_ref().and_then(|s| s.component.as_deref()),
            ),
        ];
        for (name, value) in strings {
            if let Some(text) = value {
                if text.len() > limits.max_string_bytes {
                    push(
                        name,
                        format!(
                            "is {} bytes, more than the limit of {}",
                            text.len(),
                            limits.max_string_bytes
                        ),
                    );
                }
            }
        }
        if let Some(kind) = &self.event_type {
            if kind.is_empty() {
                push("type", "must not be empty".to_string());
            }
        }
        let mut tally = Tally::default();
        check_object(&self.fields, "fields", 1, limits, &mut tally, &mut push);
        if tally.fields > limits.max_fields {
            push(
                "fields",
                format!(
                    "has {} fields, more than the limit of {}",
                    tally.fields, limits.max_fields
                ),
            );
        }
        if tally.list_items > limits.max_list_items && !tally.long_list {
            push(
                "fields",
                format!(
                    "lists hold {} items in all, more than the limit of {}",
                    tally.list_items, limits.max_list_items
                ),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// What an event's fields hold, counted while they are checked.
#[derive(Default)]
struct Tally {
    fields: usize,
    list_items: usize,
    /// One list alone is over the limit (and was reported with its path).
    long_list: bool,
}

fn check_object(
    object: &Fields,
    path: &str,
    depth: usize,
    limits: &Limits,
    count: &mut Tally,
    push: &mut impl FnMut(&str, String),
) {
    for (key, value) in object {
        count.fields += 1;
        let child = format!("{path}.{key}");
        if key.is_empty() {
            push(path, "a field name must not be empty".to_string());
        }
        if key.len() > limits.max_key_bytes {
            push(
                &child,
                format!(
                    "field name is {} bytes, more than the limit of {}",
                    key.len(),
                    limits.max_key_bytes
                ),
            );
        }
        check_value(value, &child, depth, limits, count, push);
    }
}

fn check_value(
    value: &serde_json::Value,
    path: &str,
    depth: usize,
    limits: &Limits,
    count: &mut Tally,
    push: &mut impl FnMut(&str, String),
) {
    match value {
        serde_json::Value::String(text) if text.len() > limits.max_string_bytes => push(
            path,
            format!(
                "is {} bytes, more than the limit of {}",
                text.len(),
                limits.max_string_bytes
            ),
        ),
        serde_json::Value::Object(inner) => {
            if depth >= limits.max_depth {
                push(
                    path,
                    format!("nests deeper than the limit of {}", limits.max_depth),
                );
                return;
            }
            check_object(inner, path, depth + 1, limits, count, push);
        }
        serde_json::Value::Array(items) => {
            count.list_items += items.len();
            if items.len() > limits.max_list_items {
                count.long_list = true;
                push(
                    path,
                    format!(
                        "has {} items, more than the limit of {}",
                        items.len(),
                        limits.max_list_items
                    ),
                );
                return;
            }
            if depth >= limits.max_depth {
                push(
                    path,
                    format!("nests deeper than the limit of {}", limits.max_depth),
                );
                return;
            }
            for (index, item) in items.iter().enumerate() {
                check_value(
                    item,
                    &format!("{path}[{index}]"),
                    depth + 1,
                    limits,
                    count,
                    push,
                );
            }
        }
        _ => {}
    }
}

/// Where a stored event came from: the producer's description plus who sent it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The authenticated user whose token sent the event, or `tellify` for derived events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<String>,
}

/// An event as tellify stores it: the producer's input plus an id, a position in the
/// log (`seq`), the time it was received and, for derived events, how deep the chain is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: String,
    pub seq: i64,
    pub time: Timestamp,
    pub received: Timestamp,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub source: StoredSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub fields: Fields,
    /// 0 for events from producers; n for an event derived from a depth n-1 event.
    #[serde(default)]
    pub depth: u32,
}

impl StoredEvent {
    /// Builds the stored form of `input`; `seq` is filled in by the store.
    pub fn from_input(
        input: EventInput,
        producer: Option<String>,
        received: Timestamp,
        depth: u32,
    ) -> StoredEvent {
        let source = input.source.unwrap_or_default();
        StoredEvent {
            id: crate::new_id(),
            seq: 0,
            time: input.time.unwrap_or(received),
            received,
            event_type: input.event_type,
            severity: input.severity.unwrap_or(Severity::Info),
            message: input.message,
            source: StoredSource {
                host: source.host,
                component: source.component,
                producer,
            },
            idempotency_key: input.idempotency_key,
            fields: input.fields,
            depth,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> EventInput {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn an_event_needs_type_message_or_fields() {
        let problems = event(r#"{"severity": "info"}"#)
            .validate(&Limits::default())
            .unwrap_err();
        assert!(problems[0].message.contains("at least one"));
        assert!(event(r#"{"message": "hi"}"#)
            .validate(&Limits::default())
            .is_ok());
    }

    #[test]
    fn unknown_envelope_keys_are_rejected() {
        let error = serde_json::from_str::<EventInput>(r#"{"sevrity": "info"}"#).unwrap_err();
        assert!(error.to_string().contains("sevrity"));
    }

    #[test]
    fn limits_report_every_problem_with_its_path() {
        let limits = Limits {
            max_fields: 2,
            max_depth: 2,
            max_string_bytes: 5,
            max_key_bytes: 3,
            max_list_items: 100,
        };
        let input = event(
            r#"{"message": "too long text", "fields": {"a": 1, "long": 2, "n": {"m": {"x": 1}}}}"#,
        );
        let problems = input.validate(&limits).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"message"), "{problems:?}");
        assert!(fields.contains(&"fields.long"), "{problems:?}");
        assert!(fields.contains(&"fields.n.m"), "{problems:?}");
        assert!(fields.contains(&"fields"), "{problems:?}");
    }

    #[test]
    fn a_list_longer_than_the_limit_is_refused_with_its_path() {
        let items: Vec<u32> = (0..101).collect();
        let input = EventInput {
            fields: serde_json::json!({"ok": [1, 2, 3], "nested": {"xs": items}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ..Default::default()
        };
        let problems = input.validate(&Limits::default()).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "fields.nested.xs");
        assert_eq!(
            problems[0].message,
            "has 101 items, more than the limit of 100"
        );
        let mut shorter = input.clone();
        shorter.fields["nested"]["xs"] = serde_json::json!((0..97).collect::<Vec<u32>>());
        assert!(shorter.validate(&Limits::default()).is_ok());
        // The limit holds for all lists together, nested ones included.
        shorter
            .fields
            .insert("more".to_string(), serde_json::json!([[1], [2]]));
        let problems = shorter.validate(&Limits::default()).unwrap_err();
        assert_eq!(problems[0].field, "fields");
        assert_eq!(
            problems[0].message,
            "lists hold 104 items in all, more than the limit of 100"
        );
    }
}
