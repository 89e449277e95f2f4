//! `alertmanager`: Prometheus alerts as tellify alerts. The Alertmanager-compatible API
//! stores each posted alert as an event of type `alertmanager` whose top-level fields are
//! the alert's labels and whose `alertmanager` object holds the rest (status, times,
//! fingerprint, annotations). This kind keeps one alert per fingerprint: it fires while
//! the alert is re-sent, resolves when a resolved copy arrives, and resolves by itself
//! when `endsAt` passes or, for an alert sent without `endsAt`, when it is not re-sent
//! within `resolve_timeout` — the rules Alertmanager itself applies, so a Prometheus that
//! goes away cannot leave an alert firing forever.

use std::collections::BTreeMap;
use tellify_model::later;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tellify_model::{Fields, Severity, StoredEvent};

use super::{
    compile_filter, duration_schema, filter_hints, filter_schema, parse_params, AlertOutput,
    Handler, HandlerKind, Outputs,
};
use crate::dispatch::DispatchHints;
use crate::filter::{EventContext, Filter};
use crate::validation::{duration_param, ParamError, RESOLVE_TIMEOUT};

/// The event type the Alertmanager-compatible API stores.
pub const EVENT_TYPE: &str = "alertmanager";
/// The field holding everything of an alert that is not a label. Prometheus label names
/// cannot collide with it because the API rejects a label of this name.
pub const META_FIELD: &str = "alertmanager";
/// Used when a subscription does not say: Alertmanager's own default.
const DEFAULT_RESOLVE_TIMEOUT: SignedDuration = SignedDuration::from_secs(300);

/// Alertmanager's fingerprint of a label set: FNV-1a (64 bit) over the labels sorted by
/// name, each name and value followed by the byte 255, as 16 hex digits. Matching
/// Alertmanager exactly lets tools that store fingerprints (amtool, Grafana) recognise
/// the same alert here.
pub fn fingerprint<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    const OFFSET: u64 = 0xcbf29ce484222325;
    const PRIME: u64 = 0x100000001b3;
    let mut sorted: Vec<(&str, &str)> = labels.into_iter().collect();
    sorted.sort_unstable();
    let mut hash = OFFSET;
    let mut add = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, value) in sorted {
        add(name.as_bytes());
        add(&[255]);
        add(value.as_bytes());
        add(&[255]);
    }
    format!("{hash:016x}")
}

/// The labels of an `alertmanager` event: every top-level string field but the metadata.
pub fn labels_of(event: &StoredEvent) -> Vec<(&str, &str)> {
    event
        .fields
        .iter()
        .filter(|(name, _)| name.as_str() != META_FIELD)
        .filter_map(|(name, value)| Some((name.as_str(), value.as_str()?)))
        .collect()
}

/// A readable group key: the labels sorted by name, `name=value`, space-separated.
pub fn labels_group_key(labels: &[(&str, &str)]) -> String {
    let mut sorted = labels.to_vec();
    sorted.sort_unstable();
    let parts: Vec<String> = sorted
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    parts.join(" ")
}

pub struct AlertmanagerKind;

#[derive(Deserialize)]
struct Params {
    filter: Option<String>,
    resolve_timeout: Option<String>,
}

/// A firing alert this subscription is tracking, by fingerprint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Tracked {
    group_key: String,
    /// When the alert resolves unless it is re-sent or its `endsAt` is moved.
    deadline: Timestamp,
    /// The deadline when the state was last marked for saving (see `on_event`).
    #[serde(default = "Timestamp::default")]
    saved_deadline: Timestamp,
    /// Whether the deadline is the sender's `endsAt` (else `resolve_timeout` from the last
    /// copy), for the resolve message.
    ends_at_given: bool,
    /// What the alert last fired with: a copy that changes neither is not fired again.
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    message: String,
}

struct Alertmanager {
    filter: Filter,
    resolve_timeout: SignedDuration,
    tracked: BTreeMap<String, Tracked>,
}

impl HandlerKind for AlertmanagerKind {
    fn name(&self) -> &'static str {
        "alertmanager"
    }

    fn title(&self) -> &'static str {
        "Prometheus / Alertmanager alerts"
    }

    fn description(&self) -> &'static str {
        "One alert per Prometheus alert (by its labels' fingerprint) posted to the \
         Alertmanager-compatible API: fires while it is sent as firing, resolves when it is \
         sent as resolved, when its endsAt passes, or when it was sent without endsAt and is \
         not re-sent within resolve_timeout."
    }

    fn required_fields(&self) -> &'static str {
        "events of type `alertmanager` (posted to /api/v2/alerts)"
    }

    fn param_schema(&self) -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "filter": filter_schema(),
                "resolve_timeout": duration_schema(
                    "resolve an alert sent without endsAt when it is not re-sent for this long, such as 5m (the default)"
                ),
            }
        })
    }

    fn build(&self, params: &Value) -> Result<Box<dyn Handler>, Vec<ParamError>> {
        let parsed: Params = parse_params(&self.param_schema(), params)?;
        let mut errors = Vec::new();
        let filter = compile_filter(parsed.filter.as_deref(), &mut errors);
        let resolve_timeout = duration_param(
            parsed.resolve_timeout.as_deref(),
            "params.resolve_timeout",
            RESOLVE_TIMEOUT,
            &mut errors,
        )
        .unwrap_or(DEFAULT_RESOLVE_TIMEOUT);
        if resolve_timeout <= SignedDuration::ZERO {
            errors.push(ParamError::new(
                "params.resolve_timeout",
                "must be longer than zero",
            ));
        }
        match filter {
            Some(filter) if errors.is_empty() => Ok(Box::new(Alertmanager {
                filter,
                resolve_timeout,
                tracked: BTreeMap::new(),
            })),
            _ => Err(errors),
        }
    }
}

impl Handler for Alertmanager {
    fn dispatch_hints(&self) -> DispatchHints {
        filter_hints(&self.filter, &[META_FIELD.to_string()])
    }

    fn on_event(
        &mut self,
        event: &StoredEvent,
        context: &EventContext,
        now: Timestamp,
        out: &mut Outputs,
    ) {
        if event.event_type.as_deref() != Some(EVENT_TYPE) {
            return;
        }
        let Some(meta) = event.fields.get(META_FIELD).and_then(Value::as_object) else {
            return;
        };
        if !self.filter.matches(context) {
            return;
        }
        let fingerprint = match meta.get("fingerprint").and_then(Value::as_str) {
            Some(given) => given.to_string(),
            None => fingerprint(labels_of(event)),
        };
        let ends_at = meta
            .get("ends_at")
            .and_then(Value::as_str)
            .and_then(|text| text.parse::<Timestamp>().ok());
        let sent_resolved = meta.get("status").and_then(Value::as_str) == Some("resolved");
        if sent_resolved || ends_at.is_some_and(|end| end <= now) {
            // Prometheus repeats a resolved alert for a while; only the first copy counts.
            if let Some(tracked) = self.tracked.remove(&fingerprint) {
                out.state_changed = true;
                out.alerts.push(AlertOutput::Resolve {
                    group_key: tracked.group_key,
                    message: Some("resolved by its sender".to_string()),
                });
            }
            return;
        }
        let deadline = ends_at.unwrap_or_else(|| later(now, self.resolve_timeout));
        let message = event.message.as_deref().unwrap_or("alert");
        if let Some(tracked) = self.tracked.get_mut(&fingerprint) {
            if tracked.severity == Some(event.severity) && tracked.message == message {
                // Prometheus re-sends every firing alert each minute. A copy that changes
                // nothing only moves the deadline: firing again would cost the store a
                // write per copy. The move is saved once the saved deadline has less than
                // half of the new window left, so after a restart an alert can at worst
                // resolve early by half its window, and the state is not rewritten for
                // every copy.
                let saved_left = tracked.saved_deadline.duration_since(now);
                let new_left = deadline.duration_since(now);
                if deadline < tracked.saved_deadline || saved_left * 2 < new_left {
                    tracked.saved_deadline = deadline;
                    out.state_changed = true;
                }
                tracked.deadline = deadline;
                tracked.ends_at_given = ends_at.is_some();
                return;
            }
        }
        let labels = labels_of(event);
        let group_key = labels_group_key(&labels);
        self.tracked.insert(
            fingerprint.clone(),
            Tracked {
                group_key: group_key.clone(),
                deadline,
                saved_deadline: deadline,
                ends_at_given: ends_at.is_some(),
                severity: Some(event.severity),
                message: message.to_string(),
            },
        );
        out.state_changed = true;
        out.alerts.push(AlertOutput::Fire {
            group_key,
            severity: event.severity,
            message: message.to_string(),
            fields: alert_fields(&labels, meta, &fingerprint),
            event_id: Some(event.id.clone()),
        });
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Outputs) {
        let due: Vec<String> = self
            .tracked
            .iter()
            .filter(|(_, tracked)| tracked.deadline <= now)
            .map(|(fingerprint, _)| fingerprint.clone())
            .collect();
        for fingerprint in due {
            let Some(tracked) = self.tracked.remove(&fingerprint) else {
                continue;
            };
            out.state_changed = true;
            let message = if tracked.ends_at_given {
                "its endsAt passed without an update".to_string()
            } else {
                format!("not re-sent within {:#}", self.resolve_timeout)
            };
            out.alerts.push(AlertOutput::Resolve {
                group_key: tracked.group_key,
                message: Some(message),
            });
        }
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        self.tracked.values().map(|tracked| tracked.deadline).min()
    }

    fn save_state(&self) -> Value {
        json!({ "tracked": self.tracked })
    }

    fn load_state(&mut self, state: &Value) -> Result<(), String> {
        let tracked = state.get("tracked").cloned().unwrap_or(json!({}));
        self.tracked = serde_json::from_value(tracked).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The alert's fields: its labels, so silences and filters name them directly, plus the
/// fingerprint, generator URL and annotations under `alertmanager`.
fn alert_fields(labels: &[(&str, &str)], meta: &Fields, fingerprint: &str) -> Fields {
    let mut fields = Fields::new();
    for (name, value) in labels {
        fields.insert(name.to_string(), Value::String(value.to_string()));
    }
    let mut extra = Fields::new();
    extra.insert("fingerprint".to_string(), Value::String(fingerprint.into()));
    for key in ["generator_url", "annotations"] {
        if let Some(value) = meta.get(key) {
            extra.insert(key.to_string(), value.clone());
        }
    }
    fields.insert(META_FIELD.to_string(), Value::Object(extra));
    fields
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use tellify_model::EventInput;

    /// An `alertmanager` event as the API stores it, received at `second`.
    fn alert_event(second: i64, labels: Value, status: &str, ends_at: Option<i64>) -> StoredEvent {
        let mut fields = labels.as_object().cloned().unwrap_or_default();
        let pairs: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let mut meta = json!({
            "status": status,
            "starts_at": at(0).to_string(),
            "fingerprint": fingerprint(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            "annotations": {"summary": "disk is full"},
        });
        if let Some(end) = ends_at {
            meta["ends_at"] = json!(at(end).to_string());
        }
        fields.insert(META_FIELD.to_string(), meta);
        let input = EventInput {
            event_type: Some(EVENT_TYPE.to_string()),
            severity: Some(Severity::Critical),
            message: Some("disk is full".to_string()),
            fields,
            ..Default::default()
        };
        StoredEvent::from_input(input, None, at(second), 0)
    }

    fn offer(handler: &mut Box<dyn Handler>, event: &StoredEvent) -> Outputs {
        feed(handler.as_mut(), event)
    }

    fn disk() -> Value {
        json!({"alertname": "DiskFull", "instance": "cad:9100"})
    }

    #[test]
    fn fingerprint_matches_alertmanager() {
        // The empty set hashes to FNV-1a's offset basis, as in Prometheus' model package.
        assert_eq!(fingerprint([]), "cbf29ce484222325");
        let one = fingerprint([("alertname", "DiskFull"), ("instance", "cad:9100")]);
        let reordered = fingerprint([("instance", "cad:9100"), ("alertname", "DiskFull")]);
        assert_eq!(one, reordered);
        assert_ne!(one, fingerprint([("alertname", "DiskFull")]));
        // What Alertmanager 0.25 answers for this label set in `GET /api/v2/alerts`.
        assert_eq!(one, "cbff8f1113794029");
    }

    #[test]
    fn fires_per_fingerprint_with_a_readable_group_key_and_resolves_when_sent_resolved() {
        let mut handler = AlertmanagerKind.build(&json!({})).unwrap();
        let out = offer(&mut handler, &alert_event(10, disk(), "firing", Some(250)));
        let AlertOutput::Fire {
            group_key,
            severity,
            message,
            fields,
            ..
        } = &out.alerts[0]
        else {
            panic!("expected a fire: {out:?}")
        };
        assert_eq!(group_key, "alertname=DiskFull instance=cad:9100");
        assert_eq!(*severity, Severity::Critical);
        assert_eq!(message, "disk is full");
        assert_eq!(fields["alertname"], "DiskFull");
        assert_eq!(
            fields["alertmanager"]["annotations"]["summary"],
            "disk is full"
        );

        let other = json!({"alertname": "DiskFull", "instance": "sim:9100"});
        let out = offer(&mut handler, &alert_event(11, other, "firing", Some(250)));
        assert_eq!(
            out.alerts[0].group_key(),
            "alertname=DiskFull instance=sim:9100"
        );
        assert_eq!(handler.next_deadline(), Some(at(250)));

        let out = offer(&mut handler, &alert_event(20, disk(), "resolved", Some(20)));
        assert!(matches!(
            &out.alerts[0],
            AlertOutput::Resolve { group_key, .. } if group_key == "alertname=DiskFull instance=cad:9100"
        ));
        // Only the other alert is still tracked, and a repeated resolved copy is quiet.
        assert_eq!(handler.next_deadline(), Some(at(250)));
        let again = offer(&mut handler, &alert_event(21, disk(), "resolved", Some(20)));
        assert!(again.alerts.is_empty() && !again.state_changed);
    }

    #[test]
    fn resolves_when_ends_at_passes_unless_it_is_extended() {
        let mut handler = AlertmanagerKind.build(&json!({})).unwrap();
        offer(&mut handler, &alert_event(0, disk(), "firing", Some(240)));
        // Prometheus re-sends a minute later with endsAt moved forward: nothing to fire
        // again; the deadline moves, and is saved only once the saved one draws near.
        let out = offer(&mut handler, &alert_event(60, disk(), "firing", Some(300)));
        assert!(out.alerts.is_empty() && !out.state_changed, "{out:?}");
        assert_eq!(handler.next_deadline(), Some(at(300)));
        let near = offer(&mut handler, &alert_event(200, disk(), "firing", Some(300)));
        assert!(
            near.alerts.is_empty() && near.state_changed,
            "saved 40 s ahead, new 100 s"
        );
        let mut out = Outputs::default();
        handler.on_tick(at(240), &mut out);
        assert!(out.alerts.is_empty(), "the extended endsAt holds: {out:?}");
        let saved = handler.save_state();
        assert_eq!(saved["tracked"].as_object().map(|t| t.len()), Some(1));
        handler.on_tick(at(300), &mut out);
        assert!(matches!(
            &out.alerts[0],
            AlertOutput::Resolve { message: Some(message), .. } if message.contains("endsAt")
        ));
        assert!(handler.next_deadline().is_none());
    }

    #[test]
    fn an_alert_without_ends_at_resolves_after_resolve_timeout_of_silence() {
        let mut handler = AlertmanagerKind
            .build(&json!({"resolve_timeout": "2m"}))
            .unwrap();
        offer(&mut handler, &alert_event(0, disk(), "firing", None));
        offer(&mut handler, &alert_event(100, disk(), "firing", None));
        assert_eq!(handler.next_deadline(), Some(at(220)));
        let mut out = Outputs::default();
        handler.on_tick(at(219), &mut out);
        assert!(out.alerts.is_empty());
        handler.on_tick(at(220), &mut out);
        assert!(matches!(
            &out.alerts[0],
            AlertOutput::Resolve { message: Some(message), .. } if message.contains("2m")
        ));
    }

    #[test]
    fn a_copy_with_another_severity_or_message_fires_again() {
        let mut handler = AlertmanagerKind.build(&json!({})).unwrap();
        offer(&mut handler, &alert_event(0, disk(), "firing", Some(240)));
        let mut warning = alert_event(10, disk(), "firing", Some(240));
        warning.severity = Severity::Warning;
        let out = offer(&mut handler, &warning);
        assert!(matches!(
            &out.alerts[0],
            AlertOutput::Fire {
                severity: Severity::Warning,
                ..
            }
        ));
        let mut reworded = alert_event(20, disk(), "firing", Some(240));
        reworded.severity = Severity::Warning;
        reworded.message = Some("disk is almost full".to_string());
        assert_eq!(offer(&mut handler, &reworded).alerts.len(), 1);
        let same = offer(&mut handler, &reworded);
        assert!(same.alerts.is_empty() && !same.state_changed, "{same:?}");
    }

    #[test]
    fn a_firing_copy_whose_ends_at_already_passed_resolves() {
        let mut handler = AlertmanagerKind.build(&json!({})).unwrap();
        offer(&mut handler, &alert_event(0, disk(), "firing", Some(100)));
        let out = offer(&mut handler, &alert_event(150, disk(), "firing", Some(120)));
        assert!(matches!(out.alerts[0], AlertOutput::Resolve { .. }));
        assert!(handler.next_deadline().is_none());
    }

    #[test]
    fn the_filter_selects_alerts_and_other_events_are_ignored() {
        let mut handler = AlertmanagerKind
            .build(&json!({"filter": "alertname == \"DiskFull\""}))
            .unwrap();
        let other = json!({"alertname": "Watchdog"});
        assert!(offer(&mut handler, &alert_event(0, other, "firing", None))
            .alerts
            .is_empty());
        let plain = event_at(0, json!({"alertname": "DiskFull"}));
        assert!(offer(&mut handler, &plain).alerts.is_empty());
        assert_eq!(
            offer(&mut handler, &alert_event(0, disk(), "firing", None))
                .alerts
                .len(),
            1
        );
        let hints = handler.dispatch_hints();
        assert_eq!(hints.equalities.len(), 1);
        assert_eq!(hints.required_fields, vec!["alertmanager".to_string()]);
    }

    #[test]
    fn state_survives_a_restart() {
        let mut handler = AlertmanagerKind.build(&json!({})).unwrap();
        offer(&mut handler, &alert_event(0, disk(), "firing", None));
        let saved = handler.save_state();
        let mut restored = AlertmanagerKind.build(&json!({})).unwrap();
        restored.load_state(&saved).unwrap();
        assert_eq!(restored.next_deadline(), Some(at(300)));
        assert!(restored.load_state(&json!({"tracked": 3})).is_err());
    }

    #[test]
    fn bad_parameters_are_reported_with_their_paths() {
        let errors = AlertmanagerKind
            .build(&json!({"filter": "((", "resolve_timeout": "soon"}))
            .err()
            .unwrap();
        assert_eq!(
            paths(&errors),
            vec!["params.filter", "params.resolve_timeout"]
        );
        let errors = AlertmanagerKind
            .build(&json!({"resolve_timeout": "0s"}))
            .err()
            .unwrap();
        assert_eq!(paths(&errors), vec!["params.resolve_timeout"]);
    }
}
