//! `match`: fires an alert for every event its filter matches.

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};
use tellify_model::{Severity, StoredEvent};

use super::{
    compile_filter, filter_hints, filter_schema, group_by_schema, group_fields, group_key,
    parse_params, severity_schema, AlertOutput, Handler, HandlerKind, Outputs,
};
use crate::dispatch::DispatchHints;
use crate::filter::{EventContext, Filter};
use crate::validation::ParamError;

pub struct MatchKind;

#[derive(Deserialize)]
struct Params {
    filter: String,
    severity: Option<Severity>,
    #[serde(default)]
    group_by: Vec<String>,
}

struct Match {
    filter: Filter,
    severity: Option<Severity>,
    group_by: Vec<String>,
}

impl HandlerKind for MatchKind {
    fn name(&self) -> &'static str {
        "match"
    }

    fn title(&self) -> &'static str {
        "Match"
    }

    fn description(&self) -> &'static str {
        "Fires an alert whenever an event matches the filter. The severity comes from the \
         parameters or, if not given, from the event. Repeats raise the alert's count."
    }

    fn required_fields(&self) -> &'static str {
        "the `group_by` fields, if any"
    }

    fn param_schema(&self) -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "required": ["filter"],
            "properties": {
                "filter": filter_schema(),
                "severity": severity_schema(),
                "group_by": group_by_schema(),
            }
        })
    }

    fn build(&self, params: &Value) -> Result<Box<dyn Handler>, Vec<ParamError>> {
        let parsed: Params = parse_params(&self.param_schema(), params)?;
        let mut errors = Vec::new();
        let filter = compile_filter(Some(&parsed.filter), &mut errors);
        match filter {
            Some(filter) if errors.is_empty() => Ok(Box::new(Match {
                filter,
                severity: parsed.severity,
                group_by: parsed.group_by,
            })),
            _ => Err(errors),
        }
    }
}

impl Handler for Match {
    fn dispatch_hints(&self) -> DispatchHints {
        filter_hints(&self.filter, &self.group_by)
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
        let message = event
            .message
            .clone()
            .or_else(|| event.event_type.clone())
            .unwrap_or_else(|| Value::Object(event.fields.clone()).to_string());
        out.alerts.push(AlertOutput::Fire {
            group_key: key,
            severity: self.severity.unwrap_or(event.severity),
            message,
            fields: group_fields(event, &self.group_by),
            event_id: Some(event.id.clone()),
        });
    }

    fn save_state(&self) -> Value {
        Value::Null
    }

    fn load_state(&mut self, _state: &Value) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn fires_only_on_matching_events_with_the_right_severity() {
        let mut handler = MatchKind
            .build(&json!({"filter": "block == \"gc_t\" && status == \"fail\"", "group_by": ["block"]}))
            .unwrap();
        assert!(feed(
            handler.as_mut(),
            &event_at(1, json!({"block": "gc_t", "status": "good"}))
        )
        .alerts
        .is_empty());
        let out = feed(
            handler.as_mut(),
            &event_at(2, json!({"block": "gc_t", "status": "fail"})),
        );
        match &out.alerts[0] {
            AlertOutput::Fire {
                group_key,
                severity,
                ..
            } => {
                assert_eq!(group_key, "block=gc_t");
                assert_eq!(*severity, Severity::Info);
            }
            other => panic!("unexpected {other:?}"),
        }
        let hints = handler.dispatch_hints();
        assert_eq!(hints.equalities.len(), 2);
    }

    #[test]
    fn reports_every_parameter_failure_with_its_path() {
        let errors = MatchKind
            .build(&json!({"severity": "fatal", "group_by": "x"}))
            .err()
            .unwrap();
        let found = paths(&errors);
        assert!(found.contains(&"params"), "{errors:?}");
        assert!(found.contains(&"params.severity"), "{errors:?}");
        assert!(found.contains(&"params.group_by"), "{errors:?}");
        let errors = MatchKind
            .build(&json!({"filter": "a == ", "colour": "red"}))
            .err()
            .unwrap();
        let found = paths(&errors);
        assert!(
            found.contains(&"params") && found.contains(&"params.filter"),
            "{errors:?}"
        );
        let errors = MatchKind.build(&json!({"filter": "a == "})).err().unwrap();
        assert_eq!(errors[0].path, "params.filter");
        assert!(errors[0].message.contains("column"));
    }
}
