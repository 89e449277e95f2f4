//! `absence`: a heartbeat. Fires when no matching event arrives within `interval` for a
//! group key that has been seen, and resolves on the next one. Driven by server-side
//! ticks, not by a client cron.

use std::collections::BTreeMap;
use tellify_model::later;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tellify_model::{Severity, StoredEvent};

use super::{
    compile_filter, duration_schema, filter_hints, filter_schema, group_by_schema, group_fields,
    group_key, parse_params, severity_schema, AlertOutput, Handler, HandlerKind, Outputs,
};
use crate::dispatch::DispatchHints;
use crate::filter::{EventContext, Filter};
use crate::validation::{duration_param, ParamError, ABSENCE_INTERVAL};

pub struct AbsenceKind;

#[derive(Deserialize)]
struct Params {
    filter: Option<String>,
    #[serde(default)]
    group_by: Vec<String>,
    interval: String,
    severity: Option<Severity>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Beat {
    last_seen: Timestamp,
    firing: bool,
    fields: tellify_model::Fields,
}

struct Absence {
    filter: Filter,
    group_by: Vec<String>,
    interval: SignedDuration,
    severity: Severity,
    beats: BTreeMap<String, Beat>,
}

impl HandlerKind for AbsenceKind {
    fn name(&self) -> &'static str {
        "absence"
    }

    fn title(&self) -> &'static str {
        "Absence (heartbeat)"
    }

    fn description(&self) -> &'static str {
        "Fires when no matching event arrives within the interval for a group key that has \
         been seen before, and resolves when the next one arrives."
    }

    fn required_fields(&self) -> &'static str {
        "the `group_by` fields, if any"
    }

    fn param_schema(&self) -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "required": ["interval"],
            "properties": {
                "filter": filter_schema(),
                "group_by": group_by_schema(),
                "interval": duration_schema("longest allowed silence, such as 90s or 5m"),
                "severity": severity_schema(),
            }
        })
    }

    fn build(&self, params: &Value) -> Result<Box<dyn Handler>, Vec<ParamError>> {
        let parsed: Params = parse_params(&self.param_schema(), params)?;
        let mut errors = Vec::new();
        let filter = compile_filter(parsed.filter.as_deref(), &mut errors);
        let interval = duration_param(
            Some(&parsed.interval),
            "params.interval",
            ABSENCE_INTERVAL,
            &mut errors,
        );
        match (filter, interval) {
            (Some(filter), Some(interval)) if errors.is_empty() => Ok(Box::new(Absence {
                filter,
                group_by: parsed.group_by,
                interval,
                severity: parsed.severity.unwrap_or(Severity::Critical),
                beats: BTreeMap::new(),
            })),
            _ => Err(errors),
        }
    }
}

impl Handler for Absence {
    fn dispatch_hints(&self) -> DispatchHints {
        filter_hints(&self.filter, &self.group_by)
    }

    fn on_event(
        &mut self,
        event: &StoredEvent,
        context: &EventContext,
        now: Timestamp,
        out: &mut Outputs,
    ) {
        if !self.filter.matches(context) {
            return;
        }
        let Some(key) = group_key(event, &self.group_by) else {
            return;
        };
        let was_firing = self.beats.get(&key).is_some_and(|beat| beat.firing);
        self.beats.insert(
            key.clone(),
            Beat {
                last_seen: now,
                firing: false,
                fields: group_fields(event, &self.group_by),
            },
        );
        out.state_changed = true;
        if was_firing {
            out.alerts.push(AlertOutput::Resolve {
                group_key: key,
                message: Some("heartbeat is back".to_string()),
            });
        }
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Outputs) {
        for (key, beat) in self.beats.iter_mut() {
            if beat.firing || later(beat.last_seen, self.interval) > now {
                continue;
            }
            beat.firing = true;
            out.state_changed = true;
            out.alerts.push(AlertOutput::Fire {
                group_key: key.clone(),
                severity: self.severity,
                // A length of silence, not a clock time: the message is stored once and
                // read by people in many zones, and each message shows the alert's
                // times in its reader's own zone.
                message: format!(
                    "no event for {:#} (expected within {:#})",
                    now.duration_since(beat.last_seen),
                    self.interval,
                ),
                fields: beat.fields.clone(),
                event_id: None,
            });
        }
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        self.beats
            .values()
            .filter(|beat| !beat.firing)
            .map(|beat| later(beat.last_seen, self.interval))
            .min()
    }

    fn save_state(&self) -> Value {
        json!({ "beats": self.beats })
    }

    fn load_state(&mut self, state: &Value) -> Result<(), String> {
        let beats = state.get("beats").cloned().unwrap_or(json!({}));
        self.beats = serde_json::from_value(beats).map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn fires_when_the_heartbeat_stops_and_resolves_when_it_returns() {
        let mut handler = AbsenceKind
            .build(&json!({"filter": "event.type == \"alive\" || true", "group_by": ["host"], "interval": "90s"}))
            .unwrap();
        let beat = |handler: &mut Box<dyn Handler>, second: i64| {
            let event = event_at(second, json!({"host": "cad"}));
            let mut out = Outputs::default();
            handler.on_event(&event, &EventContext::new(&event), at(second), &mut out);
            out
        };
        assert!(handler.next_deadline().is_none());
        for minute in 0..3 {
            beat(&mut handler, minute * 60);
        }
        assert_eq!(handler.next_deadline(), Some(at(120 + 90)));
        let mut out = Outputs::default();
        handler.on_tick(at(209), &mut out);
        assert!(out.alerts.is_empty());
        handler.on_tick(at(210), &mut out);
        assert_eq!(out.alerts.len(), 1);
        let AlertOutput::Fire { message, .. } = &out.alerts[0] else {
            panic!("{:?}", out.alerts[0]);
        };
        assert_eq!(message, "no event for 1m 30s (expected within 1m 30s)");
        assert!(handler.next_deadline().is_none());
        let mut again = Outputs::default();
        handler.on_tick(at(400), &mut again);
        assert!(again.alerts.is_empty(), "fires once per silence");
        let out = beat(&mut handler, 500);
        assert!(matches!(out.alerts[0], AlertOutput::Resolve { .. }));
    }
}
