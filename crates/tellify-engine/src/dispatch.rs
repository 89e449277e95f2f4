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

/// Subscriptions filed under one field, by the value their predicate wants.
struct ValueBuckets<K> {
    strings: HashMap<String, Vec<K>>,
    integers: HashMap<i64, Vec<K>>,
    booleans: HashMap<bool, Vec<K>>,
}

impl<K> Default for ValueBuckets<K> {
    fn default() -> Self {
        ValueBuckets {
            strings: HashMap::new(),
            integers: HashMap::new(),
            booleans: HashMap::new(),
        }
    }
}

impl<K> ValueBuckets<K> {
    fn bucket_mut(&mut self, value: &IndexValue) -> &mut Vec<K> {
        match value {
            IndexValue::Str(text) => self.strings.entry(text.clone()).or_default(),
            IndexValue::Int(number) => self.integers.entry(*number).or_default(),
            IndexValue::Bool(flag) => self.booleans.entry(*flag).or_default(),
        }
    }
}

/// Maps events to the subscriptions (`K`) that may match them. Looking up an event
/// allocates nothing but the list of candidates.
pub struct DispatchIndex<K> {
    by_equality: HashMap<String, ValueBuckets<K>>,
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

/// Envelope values by the names filters use: `event.<name>`, and the bare name as well
/// where the short form exists.
fn envelope(event: &StoredEvent) -> [(&'static str, Option<&'static str>, Option<&str>); 6] {
    [
        ("event.type", None, event.event_type.as_deref()),
        (
            "event.severity",
            Some("severity"),
            Some(event.severity.as_str()),
        ),
        ("event.message", Some("message"), event.message.as_deref()),
        ("event.host", Some("host"), event.source.host.as_deref()),
        (
            "event.component",
            Some("component"),
            event.source.component.as_deref(),
        ),
        ("event.producer", None, event.source.producer.as_deref()),
    ]
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
                .entry(name.clone())
                .or_default()
                .bucket_mut(value)
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
        let bucket = match &placement {
            Placement::Equality(name, value) => self
                .by_equality
                .get_mut(name)
                .map(|buckets| buckets.bucket_mut(value)),
            Placement::Field(field) => self.by_field.get_mut(field),
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
        if !self.by_equality.is_empty() {
            for (name, value) in &event.fields {
                self.probe(name, value, &mut found);
            }
            for (full, short, value) in envelope(event) {
                let Some(text) = value else { continue };
                self.probe_text(full, text, &mut found);
                if let Some(short) = short {
                    if !event.fields.contains_key(short) {
                        self.probe_text(short, text, &mut found);
                    }
                }
            }
        }
        if !self.by_field.is_empty() {
            for name in event.fields.keys() {
                if let Some(bucket) = self.by_field.get(name) {
                    found.extend(bucket.iter().cloned());
                }
            }
            // Envelope values stand in for missing fields of the same name.
            for (full, short, value) in envelope(event) {
                let name = short.unwrap_or(&full["event.".len()..]);
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

    fn probe(&self, name: &str, value: &serde_json::Value, found: &mut Vec<K>) {
        let Some(buckets) = self.by_equality.get(name) else {
            return;
        };
        let bucket = match value {
            serde_json::Value::String(text) => buckets.strings.get(text.as_str()),
            serde_json::Value::Bool(flag) => buckets.booleans.get(flag),
            serde_json::Value::Number(number) => match number.as_i64() {
                Some(integer) => buckets.integers.get(&integer),
                None => number
                    .as_f64()
                    .filter(|float| float.fract() == 0.0 && float.abs() < 9.0e15)
                    .and_then(|float| buckets.integers.get(&(float as i64))),
            },
            _ => None,
        };
        if let Some(bucket) = bucket {
            found.extend(bucket.iter().cloned());
        }
    }

    fn probe_text(&self, name: &str, text: &str, found: &mut Vec<K>) {
        let bucket = self
            .by_equality
            .get(name)
            .and_then(|buckets| buckets.strings.get(text));
        if let Some(bucket) = bucket {
            found.extend(bucket.iter().cloned());
        }
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
