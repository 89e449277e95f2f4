//! The dispatch index: each subscription is filed under one key that every event it can
//! match must carry, so an event is offered only to subscriptions that can match it.
//!
//! A subscription is filed under, in order of preference: one of its filter's equality
//! predicates (`block == "gc_t"` → key `block = "gc_t"`), one field the handler requires
//! (`usage` → any event with a `usage` field), or the catch-all list. Each subscription
//! sits in exactly one bucket, so candidates never repeat and adding a subscription with
//! an equality predicate costs nothing for events that do not carry its value.

use std::collections::HashMap;
use std::hash::Hash;

use tellify_model::StoredEvent;

/// A scalar an equality predicate compares with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IndexValue {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// What a subscription tells the index about the events it can match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DispatchHints {
    /// `name == value` predicates that must all hold.
    pub equalities: Vec<(String, IndexValue)>,
    /// Fields the event must have.
    pub required_fields: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Placement {
    Equality(String, IndexValue),
    Field(String),
    Always,
}

/// Maps events to the subscriptions (`K`) that may match them.
pub struct DispatchIndex<K> {
    by_equality: HashMap<(String, IndexValue), Vec<K>>,
    by_field: HashMap<String, Vec<K>>,
    always: Vec<K>,
    placements: HashMap<K, Placement>,
}

impl<K> Default for DispatchIndex<K> {
    fn default() -> Self {
        DispatchIndex {
            by_equality: HashMap::new(),
            by_field: HashMap::new(),
            always: Vec::new(),
            placements: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> DispatchIndex<K> {
    pub fn len(&self) -> usize {
        self.placements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.placements.is_empty()
    }

    /// Files `key` (replacing an earlier filing of the same key).
    pub fn insert(&mut self, key: K, hints: &DispatchHints) {
        self.remove(&key);
        let placement = if let Some((name, value)) = hints.equalities.first() {
            self.by_equality
                .entry((name.clone(), value.clone()))
                .or_default()
                .push(key.clone());
            Placement::Equality(name.clone(), value.clone())
        } else if let Some(field) = hints.required_fields.first() {
            self.by_field
                .entry(field.clone())
                .or_default()
                .push(key.clone());
            Placement::Field(field.clone())
        } else {
            self.always.push(key.clone());
            Placement::Always
        };
        self.placements.insert(key, placement);
    }

    pub fn remove(&mut self, key: &K) {
        let Some(placement) = self.placements.remove(key) else {
            return;
        };
        let bucket = match placement {
            Placement::Equality(name, value) => self.by_equality.get_mut(&(name, value)),
            Placement::Field(field) => self.by_field.get_mut(&field),
            Placement::Always => Some(&mut self.always),
        };
        if let Some(bucket) = bucket {
            if let Some(position) = bucket.iter().position(|k| k == key) {
                bucket.swap_remove(position);
            }
        }
    }

    /// Every subscription that may match `event`; each at most once.
    pub fn candidates(&self, event: &StoredEvent) -> Vec<K> {
        let mut found: Vec<K> = self.always.clone();
        let mut probe = |name: &str, value: IndexValue| {
            if self.by_equality.is_empty() {
                return;
            }
            if let Some(bucket) = self.by_equality.get(&(name.to_string(), value)) {
                found.extend(bucket.iter().cloned());
            }
        };
        for (name, value) in &event.fields {
            match value {
                serde_json::Value::String(text) => probe(name, IndexValue::Str(text.clone())),
                serde_json::Value::Bool(flag) => probe(name, IndexValue::Bool(*flag)),
                serde_json::Value::Number(number) => {
                    if let Some(integer) = number.as_i64() {
                        probe(name, IndexValue::Int(integer));
                    } else if let Some(float) = number.as_f64() {
                        if float.fract() == 0.0 && float.abs() < 9.0e15 {
                            probe(name, IndexValue::Int(float as i64));
                        }
                    }
                }
                _ => {}
            }
        }
        let envelope = [
            ("type", event.event_type.as_deref()),
            ("severity", Some(event.severity.as_str())),
            ("message", event.message.as_deref()),
            ("host", event.source.host.as_deref()),
            ("component", event.source.component.as_deref()),
            ("producer", event.source.producer.as_deref()),
        ];
        for (name, value) in envelope {
            let Some(text) = value else { continue };
            probe(&format!("event.{name}"), IndexValue::Str(text.to_string()));
            let shortcut = name != "type" && name != "producer" && !event.fields.contains_key(name);
            if shortcut {
                probe(name, IndexValue::Str(text.to_string()));
            }
        }
        if !self.by_field.is_empty() {
            for name in event.fields.keys() {
                if let Some(bucket) = self.by_field.get(name) {
                    found.extend(bucket.iter().cloned());
                }
            }
            // Envelope values stand in for missing fields of the same name.
            for (name, value) in envelope {
                if value.is_none() || event.fields.contains_key(name) {
                    continue;
                }
                if let Some(bucket) = self.by_field.get(name) {
                    found.extend(bucket.iter().cloned());
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(fields: serde_json::Value) -> StoredEvent {
        let input = tellify_model::EventInput {
            fields: fields.as_object().cloned().unwrap_or_default(),
            ..Default::default()
        };
        StoredEvent::from_input(input, None, jiff::Timestamp::UNIX_EPOCH, 0)
    }

    fn hints(eq: &[(&str, IndexValue)], fields: &[&str]) -> DispatchHints {
        DispatchHints {
            equalities: eq.iter().map(|(n, v)| (n.to_string(), v.clone())).collect(),
            required_fields: fields.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn events_reach_only_subscriptions_that_can_match() {
        let mut index = DispatchIndex::default();
        for block in 0..1000 {
            index.insert(
                block,
                &hints(&[("block", IndexValue::Str(format!("b{block}")))], &[]),
            );
        }
        index.insert(5000, &hints(&[], &["usage"]));
        index.insert(6000, &hints(&[], &[]));
        index.insert(
            7000,
            &hints(&[("severity", IndexValue::Str("critical".into()))], &[]),
        );
        let mut got = index.candidates(&event(json!({"block": "b7", "usage": 3})));
        got.sort();
        assert_eq!(got, vec![7, 5000, 6000]);
        assert_eq!(index.candidates(&event(json!({"x": 1}))), vec![6000]);
        index.remove(&6000);
        index.remove(&7);
        assert!(index.candidates(&event(json!({"block": "b7"}))).is_empty());
        assert_eq!(index.len(), 1001);
    }

    #[test]
    fn envelope_values_stand_in_for_required_fields() {
        let mut index = DispatchIndex::default();
        index.insert("beat", &hints(&[], &["host"]));
        let mut with_host = event(json!({}));
        with_host.source.host = Some("cad".to_string());
        assert_eq!(index.candidates(&with_host), vec!["beat"]);
        assert!(index.candidates(&event(json!({}))).is_empty());
    }

    #[test]
    fn integral_floats_probe_integer_keys() {
        let mut index = DispatchIndex::default();
        index.insert("a", &hints(&[("n", IndexValue::Int(50))], &[]));
        assert_eq!(index.candidates(&event(json!({"n": 50.0}))), vec!["a"]);
    }
}
