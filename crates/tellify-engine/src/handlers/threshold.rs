//! `threshold`: a numeric field against warn and critical levels, per group key, with
//! hysteresis; fires while above a level and resolves when the value falls back.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tellify_model::{Severity, StoredEvent};

use super::{
    compile_filter, field_value, filter_hints, filter_schema, group_by_schema, group_fields,
    group_key, parse_params, AlertOutput, Handler, HandlerKind, Outputs,
};
use crate::dispatch::DispatchHints;
use crate::filter::{EventContext, Filter};
use crate::validation::ParamError;

pub struct ThresholdKind;

#[derive(Deserialize)]
struct Params {
    filter: Option<String>,
    field: String,
    warn: Option<f64>,
    critical: Option<f64>,
    #[serde(default)]
    group_by: Vec<String>,
    #[serde(default)]
    hysteresis: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Ok,
    Warning,
    Critical,
}

struct Threshold {
    filter: Filter,
    field: String,
    warn: Option<f64>,
    critical: Option<f64>,
    group_by: Vec<String>,
    hysteresis: f64,
    /// Groups that are not OK; a group absent here is OK.
    levels: BTreeMap<String, Level>,
}

impl HandlerKind for ThresholdKind {
    fn name(&self) -> &'static str {
        "threshold"
    }

    fn title(&self) -> &'static str {
        "Threshold"
    }

    fn description(&self) -> &'static str {
        "Compares a numeric field with warn and critical levels for each group key (for \
         example per filesystem). Fires at warning or critical, changes severity when the \
         level changes, and resolves when the value falls back below warn minus the \
         hysteresis."
    }

    fn required_fields(&self) -> &'static str {
        "the numeric `field` and the `group_by` fields"
    }

    fn param_schema(&self) -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "required": ["field"],
            "anyOf": [{"required": ["warn"]}, {"required": ["critical"]}],
            "properties": {
                "filter": filter_schema(),
                "field": {"type": "string", "minLength": 1, "description": "the numeric field to compare"},
                "warn": {"type": "number", "description": "warning at or above this value"},
                "critical": {"type": "number", "description": "critical at or above this value"},
                "group_by": group_by_schema(),
                "hysteresis": {"type": "number", "minimum": 0, "description": "how far below a level the value must fall to leave it"},
            }
        })
    }

    fn build(&self, params: &Value) -> Result<Box<dyn Handler>, Vec<ParamError>> {
        let parsed: Params = parse_params(&self.param_schema(), params)?;
        let mut errors = Vec::new();
        let filter = compile_filter(parsed.filter.as_deref(), &mut errors);
        if let (Some(warn), Some(critical)) = (parsed.warn, parsed.critical) {
            if critical <= warn {
                errors.push(ParamError::new(
                    "params.critical",
                    format!("must be greater than warn ({warn})"),
                ));
            }
        }
        match filter {
            Some(filter) if errors.is_empty() => Ok(Box::new(Threshold {
                filter,
                field: parsed.field,
                warn: parsed.warn,
                critical: parsed.critical,
                group_by: parsed.group_by,
                hysteresis: parsed.hysteresis,
                levels: BTreeMap::new(),
            })),
            _ => Err(errors),
        }
    }
}

impl Threshold {
    fn level_of(&self, value: f64) -> Level {
        if self.critical.is_some_and(|critical| value >= critical) {
            Level::Critical
        } else if self.warn.is_some_and(|warn| value >= warn) {
            Level::Warning
        } else {
            Level::Ok
        }
    }

    fn describe(&self, value: f64) -> String {
        let mut levels = Vec::new();
        if let Some(warn) = self.warn {
            levels.push(format!("warn {warn}"));
        }
        if let Some(critical) = self.critical {
            levels.push(format!("critical {critical}"));
        }
        format!("{} is {value} ({})", self.field, levels.join(", "))
    }
}

impl Handler for Threshold {
    fn dispatch_hints(&self) -> DispatchHints {
        let mut required = vec![self.field.clone()];
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
        let Some(value) = field_value(event, &self.field).and_then(|v| v.as_f64()) else {
            return;
        };
        if !self.filter.matches(context) {
            return;
        }
        let Some(key) = group_key(event, &self.group_by) else {
            return;
        };
        let current = self.levels.get(&key).copied().unwrap_or(Level::Ok);
        let raw = self.level_of(value);
        let lowered = self.level_of(value + self.hysteresis).min(current);
        let next = raw.max(lowered);
        if next != current {
            out.state_changed = true;
            if next == Level::Ok {
                self.levels.remove(&key);
            } else {
                self.levels.insert(key.clone(), next);
            }
        }
        let severity = match next {
            Level::Ok => {
                if current != Level::Ok {
                    out.alerts.push(AlertOutput::Resolve {
                        group_key: key,
                        message: Some(self.describe(value)),
                    });
                }
                return;
            }
            Level::Warning => Severity::Warning,
            Level::Critical => Severity::Critical,
        };
        let mut fields = group_fields(event, &self.group_by);
        fields.insert(self.field.clone(), json!(value));
        out.alerts.push(AlertOutput::Fire {
            group_key: key,
            severity,
            message: self.describe(value),
            fields,
            event_id: Some(event.id.clone()),
        });
    }

    fn save_state(&self) -> Value {
        json!({ "levels": self.levels })
    }

    fn load_state(&mut self, state: &Value) -> Result<(), String> {
        let levels = state.get("levels").cloned().unwrap_or(json!({}));
        self.levels = serde_json::from_value(levels).map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn fired(out: &Outputs) -> Vec<(String, Option<Severity>)> {
        out.alerts
            .iter()
            .map(|alert| match alert {
                AlertOutput::Fire {
                    group_key,
                    severity,
                    ..
                } => (group_key.clone(), Some(*severity)),
                AlertOutput::Resolve { group_key, .. } => (group_key.clone(), None),
            })
            .collect()
    }

    #[test]
    fn warn_then_critical_then_resolve_with_hysteresis() {
        let mut handler = ThresholdKind
            .build(&json!({"field": "pct", "warn": 90, "critical": 97, "group_by": ["fs"], "hysteresis": 2}))
            .unwrap();
        let mut step = |pct: f64| {
            fired(&feed(
                handler.as_mut(),
                &event_at(1, json!({"fs": "/a", "pct": pct})),
            ))
        };
        assert!(step(50.0).is_empty());
        assert_eq!(
            step(91.0),
            vec![("fs=/a".to_string(), Some(Severity::Warning))]
        );
        assert_eq!(
            step(97.5),
            vec![("fs=/a".to_string(), Some(Severity::Critical))]
        );
        // 96 is below critical but inside the hysteresis band: stays critical.
        assert_eq!(
            step(96.0),
            vec![("fs=/a".to_string(), Some(Severity::Critical))]
        );
        assert_eq!(
            step(94.0),
            vec![("fs=/a".to_string(), Some(Severity::Warning))]
        );
        assert_eq!(
            step(89.0),
            vec![("fs=/a".to_string(), Some(Severity::Warning))]
        );
        assert_eq!(step(87.0), vec![("fs=/a".to_string(), None)]);
        assert!(step(10.0).is_empty());
    }

    #[test]
    fn state_survives_a_save_and_load() {
        let params = json!({"field": "pct", "warn": 90, "group_by": ["fs"]});
        let mut first = ThresholdKind.build(&params).unwrap();
        feed(first.as_mut(), &event_at(1, json!({"fs": "/a", "pct": 95})));
        let mut second = ThresholdKind.build(&params).unwrap();
        second.load_state(&first.save_state()).unwrap();
        let out = feed(
            second.as_mut(),
            &event_at(2, json!({"fs": "/a", "pct": 10})),
        );
        assert!(matches!(out.alerts[0], AlertOutput::Resolve { .. }));
    }

    #[test]
    fn validation_names_each_bad_parameter() {
        let errors = ThresholdKind
            .build(&json!({"field": "pct", "warn": 97, "critical": 90, "filter": "(("}))
            .err()
            .unwrap();
        let found = paths(&errors);
        assert!(
            found.contains(&"params.critical") && found.contains(&"params.filter"),
            "{errors:?}"
        );
        let errors = ThresholdKind.build(&json!({"warn": "high"})).err().unwrap();
        let found = paths(&errors);
        assert!(
            found.contains(&"params") && found.contains(&"params.warn"),
            "{errors:?}"
        );
        assert!(ThresholdKind.build(&json!({"field": "pct"})).is_err());
    }
}
