//! `count`: counts events, or distinct values of a field, per group key, in a sliding
//! time window or per sequence key; fires once when the count exceeds `limit` and can
//! emit a derived event that other subscriptions see.

use std::collections::BTreeMap;
use tellify_model::later;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tellify_model::{EventInput, Severity, StoredEvent};

use super::{
    compile_filter, duration_schema, field_value, filter_hints, filter_schema, group_by_schema,
    group_fields, group_key, parse_params, scalar_text, severity_schema, AlertOutput, Handler,
    HandlerKind, Outputs,
};
use crate::dispatch::DispatchHints;
use crate::filter::{EventContext, Filter};
use crate::validation::{duration_param, ParamError, COUNT_WINDOW};

/// Most entries kept per group; beyond it the oldest are dropped.
const MAX_ENTRIES: usize = 10_000;

pub struct CountKind;

#[derive(Deserialize)]
struct Params {
    filter: Option<String>,
    distinct: Option<String>,
    #[serde(default)]
    group_by: Vec<String>,
    window: Option<String>,
    sequence: Option<String>,
    limit: u64,
    severity: Option<Severity>,
    emit: Option<Emit>,
}

#[derive(Clone, Deserialize)]
struct Emit {
    #[serde(rename = "type")]
    event_type: String,
    severity: Option<Severity>,
    message: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct GroupState {
    /// (distinct value or "", time in ms) per counted event.
    entries: Vec<(String, i64)>,
    firing: bool,
    sequence: Option<String>,
    fields: tellify_model::Fields,
}

struct Count {
    filter: Filter,
    distinct: Option<String>,
    group_by: Vec<String>,
    window: Option<SignedDuration>,
    sequence: Option<String>,
    limit: u64,
    severity: Severity,
    emit: Option<Emit>,
    groups: BTreeMap<String, GroupState>,
}

impl HandlerKind for CountKind {
    fn name(&self) -> &'static str {
        "count"
    }

    fn title(&self) -> &'static str {
        "Count"
    }

    fn description(&self) -> &'static str {
        "Counts matching events, or distinct values of a field, for each group key, in a \
         sliding time window or per sequence key, and fires once when the count exceeds \
         the limit. Can emit a derived event that other subscriptions can match."
    }

    fn required_fields(&self) -> &'static str {
        "the `distinct` field, the `sequence` field and the `group_by` fields, if given"
    }

    fn param_schema(&self) -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "required": ["limit"],
            "properties": {
                "filter": filter_schema(),
                "distinct": {"type": "string", "minLength": 1, "description": "count distinct values of this field instead of events"},
                "group_by": group_by_schema(),
                "window": duration_schema("sliding window such as 10m; without it the count runs per group (and sequence)"),
                "sequence": {"type": "string", "minLength": 1, "description": "field whose new value restarts the count"},
                "limit": {"type": "integer", "minimum": 0, "maximum": MAX_ENTRIES - 1, "description": "fires when the count exceeds this"},
                "severity": severity_schema(),
                "emit": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["type"],
                    "properties": {
                        "type": {"type": "string", "minLength": 1, "maxLength": 128},
                        "severity": severity_schema(),
                        "message": {"type": "string", "maxLength": 1024}
                    }
                }
            }
        })
    }

    fn build(&self, params: &Value) -> Result<Box<dyn Handler>, Vec<ParamError>> {
        let parsed: Params = parse_params(&self.param_schema(), params)?;
        let mut errors = Vec::new();
        let filter = compile_filter(parsed.filter.as_deref(), &mut errors);
        let window = duration_param(
            parsed.window.as_deref(),
            "params.window",
            COUNT_WINDOW,
            &mut errors,
        );
        match filter {
            Some(filter) if errors.is_empty() => Ok(Box::new(Count {
                filter,
                distinct: parsed.distinct,
                group_by: parsed.group_by,
                window,
                sequence: parsed.sequence,
                limit: parsed.limit,
                severity: parsed.severity.unwrap_or(Severity::Warning),
                emit: parsed.emit,
                groups: BTreeMap::new(),
            })),
            _ => Err(errors),
        }
    }
}

impl Count {
    fn prune(&self, group: &mut GroupState, now_ms: i64) {
        if let Some(window) = self.window {
            let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
            let horizon = now_ms.saturating_sub(window_ms);
            group.entries.retain(|(_, time)| *time > horizon);
        }
    }

    fn what(&self) -> String {
        match &self.distinct {
            Some(field) => format!("distinct {field} values"),
            None => "events".to_string(),
        }
    }
}

impl Handler for Count {
    fn dispatch_hints(&self) -> DispatchHints {
        let mut required: Vec<String> = self.distinct.iter().cloned().collect();
        required.extend(self.sequence.iter().cloned());
        required.extend(self.group_by.iter().cloned());
        filter_hints(&self.filter, &required)
    }

    fn on_event(
        &mut self,
        event: &StoredEvent,
        context: &EventContext,
        _now: Timestamp,
        out: &mut Outputs,
    ) {
        if !self.filter.matches(context) {
            return;
        }
        let Some(key) = group_key(event, &self.group_by) else {
            return;
        };
        let value = match &self.distinct {
            Some(field) => match field_value(event, field) {
                Some(value) => scalar_text(&value),
                None => return,
            },
            None => String::new(),
        };
        let sequence = match &self.sequence {
            Some(field) => match field_value(event, field) {
                Some(value) => Some(scalar_text(&value)),
                None => return,
            },
            None => None,
        };
        let time_ms = event.time.as_millisecond();
        let mut group = self.groups.remove(&key).unwrap_or_default();
        if self.sequence.is_some() && group.sequence != sequence {
            if group.firing {
                out.alerts.push(AlertOutput::Resolve {
                    group_key: key.clone(),
                    message: Some("a new sequence started".to_string()),
                });
            }
            group = GroupState {
                sequence,
                ..GroupState::default()
            };
        }
        group.fields = group_fields(event, &self.group_by);
        let existing = if self.distinct.is_some() {
            group.entries.iter().position(|(seen, _)| *seen == value)
        } else {
            None
        };
        match existing {
            Some(position) => group.entries[position].1 = time_ms,
            None => group.entries.push((value, time_ms)),
        }
        if group.entries.len() > MAX_ENTRIES {
            group.entries.remove(0);
        }
        self.prune(&mut group, time_ms);
        out.state_changed = true;
        let count = group.entries.len() as u64;
        if count > self.limit && !group.firing {
            group.firing = true;
            let message = format!(
                "{count} {} {}(limit {})",
                self.what(),
                match self.window {
                    Some(window) => format!("in {} ", friendly(window)),
                    None => String::new(),
                },
                self.limit
            );
            let mut fields = group.fields.clone();
            fields.insert("count".to_string(), json!(count));
            fields.insert("limit".to_string(), json!(self.limit));
            if self.distinct.is_some() {
                let values: Vec<&str> = group.entries.iter().map(|(v, _)| v.as_str()).collect();
                fields.insert("values".to_string(), json!(values));
            }
            out.alerts.push(AlertOutput::Fire {
                group_key: key.clone(),
                severity: self.severity,
                message: message.clone(),
                fields: fields.clone(),
                event_id: Some(event.id.clone()),
            });
            if let Some(emit) = &self.emit {
                out.derived.push(EventInput {
                    event_type: Some(emit.event_type.clone()),
                    severity: Some(emit.severity.unwrap_or(self.severity)),
                    message: Some(emit.message.clone().unwrap_or(message)),
                    fields,
                    ..EventInput::default()
                });
            }
        }
        self.groups.insert(key, group);
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Outputs) {
        if self.window.is_none() {
            return;
        }
        let now_ms = now.as_millisecond();
        let keys: Vec<String> = self.groups.keys().cloned().collect();
        for key in keys {
            let Some(mut group) = self.groups.remove(&key) else {
                continue;
            };
            let before = group.entries.len();
            self.prune(&mut group, now_ms);
            if group.entries.len() != before {
                out.state_changed = true;
            }
            if group.firing && group.entries.len() as u64 <= self.limit {
                group.firing = false;
                out.state_changed = true;
                out.alerts.push(AlertOutput::Resolve {
                    group_key: key.clone(),
                    message: Some(format!(
                        "{} {} in the window",
                        group.entries.len(),
                        self.what()
                    )),
                });
            }
            if !group.entries.is_empty() || group.firing {
                self.groups.insert(key, group);
            } else {
                out.state_changed = true;
            }
        }
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        let window = self.window?;
        self.groups
            .values()
            .filter_map(|group| group.entries.iter().map(|(_, time)| *time).min())
            .min()
            .and_then(|oldest| Timestamp::from_millisecond(oldest).ok())
            .map(|oldest| later(oldest, window))
    }

    fn save_state(&self) -> Value {
        json!({ "groups": self.groups })
    }

    fn load_state(&mut self, state: &Value) -> Result<(), String> {
        let groups = state.get("groups").cloned().unwrap_or(json!({}));
        self.groups = serde_json::from_value(groups).map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn friendly(duration: SignedDuration) -> String {
    format!("{:#}", duration)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn params() -> Value {
        json!({
            "filter": "step == \"place\" && status == \"fail\"",
            "distinct": "block", "group_by": ["project", "runtag"], "limit": 4,
            "emit": {"type": "place.mass_failure"}
        })
    }

    #[test]
    fn fires_once_above_the_limit_and_emits_a_derived_event() {
        let mut handler = CountKind.build(&params()).unwrap();
        let mut fires = 0;
        let mut derived = 0;
        for (i, block) in ["a", "b", "c", "d", "d", "e", "f"].iter().enumerate() {
            let out = feed(
                handler.as_mut(),
                &event_at(
                    i as i64,
                    json!({"project": "vr0", "runtag": "r1", "block": block, "step": "place", "status": "fail"}),
                ),
            );
            if i < 5 {
                assert!(out.alerts.is_empty(), "fired early at {i}");
            }
            fires += out.alerts.len();
            derived += out.derived.len();
        }
        assert_eq!((fires, derived), (1, 1));
        let other_run = feed(
            handler.as_mut(),
            &event_at(
                9,
                json!({"project": "vr0", "runtag": "r2", "block": "z", "step": "place", "status": "fail"}),
            ),
        );
        assert!(other_run.alerts.is_empty());
    }

    #[test]
    fn a_sliding_window_forgets_and_resolves_on_tick() {
        let mut handler = CountKind
            .build(&json!({"window": "10m", "limit": 2}))
            .unwrap();
        for second in [0, 60, 120] {
            feed(handler.as_mut(), &event_at(second, json!({"x": 1})));
        }
        assert_eq!(handler.next_deadline(), Some(at(600)));
        let mut out = Outputs::default();
        handler.on_tick(at(601), &mut out);
        assert!(matches!(out.alerts[0], AlertOutput::Resolve { .. }));
        // Old entries left the window: two more events do not exceed the limit again.
        let out = feed(handler.as_mut(), &event_at(700, json!({"x": 1})));
        assert!(out.alerts.is_empty());
    }

    #[test]
    fn a_new_sequence_restarts_the_count() {
        let mut handler = CountKind
            .build(&json!({"sequence": "run", "limit": 1}))
            .unwrap();
        feed(handler.as_mut(), &event_at(0, json!({"run": 1})));
        assert_eq!(
            feed(handler.as_mut(), &event_at(1, json!({"run": 1})))
                .alerts
                .len(),
            1
        );
        let out = feed(handler.as_mut(), &event_at(2, json!({"run": 2})));
        assert!(matches!(out.alerts[0], AlertOutput::Resolve { .. }));
        assert_eq!(out.alerts.len(), 1);
    }

    #[test]
    fn bad_window_and_limit_are_reported() {
        let errors = CountKind
            .build(&json!({"window": "soon", "limit": 2}))
            .err()
            .unwrap();
        assert_eq!(errors[0].path, "params.window");
        let errors = CountKind.build(&json!({"limit": -1})).err().unwrap();
        assert_eq!(errors[0].path, "params.limit");
    }
}
