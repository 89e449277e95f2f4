//! Handler kinds: the plug-ins of the engine. A kind validates parameters and builds a
//! [`Handler`], which turns events (and the passing of time) into [`Outputs`].
//!
//! Adding a kind is one new file plus one line in [`Registry::builtin`].

mod absence;
pub mod alerta;
pub mod alertmanager;
mod count;
mod match_kind;
pub mod metric;
mod threshold;

use jiff::Timestamp;
use serde_json::Value;
use tellify_model::{EventInput, Fields, Severity, StoredEvent};

use crate::alerts::Alert;
use crate::dispatch::DispatchHints;
use crate::filter::{EventContext, Filter};
use crate::render::{alert_times, Reader};
use crate::validation::{check_schema, ParamError};

/// What a handler asks the alert layer to do.
#[derive(Clone, Debug, PartialEq)]
pub enum AlertOutput {
    Fire {
        group_key: String,
        severity: Severity,
        message: String,
        fields: Fields,
        event_id: Option<String>,
    },
    Resolve {
        group_key: String,
        message: Option<String>,
    },
}

impl AlertOutput {
    pub fn group_key(&self) -> &str {
        match self {
            AlertOutput::Fire { group_key, .. } | AlertOutput::Resolve { group_key, .. } => {
                group_key
            }
        }
    }
}

/// Everything a handler produced for one event or tick.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outputs {
    pub alerts: Vec<AlertOutput>,
    pub derived: Vec<EventInput>,
    /// The handler's state changed and must be saved.
    pub state_changed: bool,
    /// The handler could not do its work on this input (its filter ran over budget, say):
    /// the worker then ignores the other outputs and marks the subscription failing.
    pub failure: Option<String>,
}

/// A kind of handler: its description, parameter schema and validator.
pub trait HandlerKind: Send + Sync {
    fn name(&self) -> &'static str;
    fn title(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// Which fields an event must have before the handler is called, in words.
    fn required_fields(&self) -> &'static str;
    /// The JSON Schema (draft 2020-12) of the parameters.
    fn param_schema(&self) -> Value;
    /// Validates `params` (every failure, not just the first) and builds a handler.
    fn build(&self, params: &Value) -> Result<Box<dyn Handler>, Vec<ParamError>>;

    /// A plain-text body for several alerts of this kind, every time in `reader`'s zone.
    fn render_text(&self, alerts: &[Alert], reader: &Reader) -> String {
        let mut text = String::new();
        for alert in alerts {
            text.push_str(&format!(
                "[{}] {}{}: {} ({}, seen {}x)\n",
                alert.severity.as_str().to_uppercase(),
                alert.title,
                group_suffix(&alert.group_key),
                alert.message,
                alert_times(alert, reader),
                alert.count,
            ));
        }
        text
    }

    /// An HTML body for several alerts of this kind; every value is escaped, every time
    /// in `reader`'s zone.
    fn render_html(&self, alerts: &[Alert], reader: &Reader) -> String {
        let mut html = String::from("<ul>\n");
        for alert in alerts {
            html.push_str(&format!(
                "<li><strong>{}</strong> {}{}: {} <em>({}, seen {}x)</em></li>\n",
                escape_html(&alert.severity.as_str().to_uppercase()),
                escape_html(&alert.title),
                escape_html(&group_suffix(&alert.group_key)),
                escape_html(&alert.message),
                escape_html(&alert_times(alert, reader)),
                alert.count,
            ));
        }
        html.push_str("</ul>\n");
        html
    }

    /// One line, at most 160 characters, for an SMS.
    fn render_sms(&self, alerts: &[Alert]) -> String {
        let parts: Vec<String> = alerts
            .iter()
            .map(|alert| {
                format!(
                    "{} {}{}: {}",
                    &alert.severity.as_str()[..4].to_uppercase(),
                    alert.title,
                    group_suffix(&alert.group_key),
                    alert.message
                )
            })
            .collect();
        let line = if parts.len() > 1 {
            format!("{} alerts: {}", parts.len(), parts.join("; "))
        } else {
            parts.join("")
        };
        truncate_chars(&line.replace('\n', " "), 160)
    }
}

/// A running instance of a kind for one subscription, with its state.
pub trait Handler: Send + Sync {
    fn dispatch_hints(&self) -> DispatchHints;
    /// Offers an event that passed dispatch; the handler applies its own filter.
    fn on_event(
        &mut self,
        event: &StoredEvent,
        context: &EventContext,
        now: Timestamp,
        out: &mut Outputs,
    );
    /// Lets time pass: called at or after [`Handler::next_deadline`].
    fn on_tick(&mut self, _now: Timestamp, _out: &mut Outputs) {}
    /// When the handler next needs [`Handler::on_tick`], if ever.
    fn next_deadline(&self) -> Option<Timestamp> {
        None
    }
    fn save_state(&self) -> Value;
    /// Restores saved state; unreadable state is reported and the handler starts afresh.
    fn load_state(&mut self, state: &Value) -> Result<(), String>;
}

/// The known handler kinds, by name.
pub struct Registry {
    kinds: Vec<Box<dyn HandlerKind>>,
}

impl Registry {
    pub fn builtin() -> Registry {
        Registry {
            kinds: vec![
                Box::new(match_kind::MatchKind),
                Box::new(threshold::ThresholdKind),
                Box::new(count::CountKind),
                Box::new(absence::AbsenceKind),
                Box::new(alertmanager::AlertmanagerKind),
                Box::new(metric::MetricKind),
                Box::new(alerta::AlertaKind),
            ],
        }
    }

    /// A registry of exactly these kinds (plug-ins, tests).
    pub fn with_kinds(kinds: Vec<Box<dyn HandlerKind>>) -> Registry {
        Registry { kinds }
    }

    pub fn get(&self, name: &str) -> Option<&dyn HandlerKind> {
        self.kinds
            .iter()
            .find(|kind| kind.name() == name)
            .map(|kind| kind.as_ref())
    }

    pub fn kinds(&self) -> impl Iterator<Item = &dyn HandlerKind> {
        self.kinds.iter().map(|kind| kind.as_ref())
    }

    /// Validates parameters for `kind`, with every failure and its path.
    pub fn build(&self, kind: &str, params: &Value) -> Result<Box<dyn Handler>, Vec<ParamError>> {
        match self.get(kind) {
            Some(found) => found.build(params),
            None => {
                let names: Vec<&str> = self.kinds.iter().map(|k| k.name()).collect();
                Err(vec![ParamError::new(
                    "kind",
                    format!("unknown kind `{kind}` (known: {})", names.join(", ")),
                )])
            }
        }
    }
}

// ---- helpers shared by the kinds ----

/// Checks the schema, then deserializes; schema failures are returned as they are.
pub(crate) fn parse_params<T: serde::de::DeserializeOwned>(
    schema: &Value,
    params: &Value,
) -> Result<T, Vec<ParamError>> {
    let mut errors = check_schema(schema, params);
    if !errors.is_empty() {
        // Report a broken filter together with the schema failures, not one round later.
        let filter = params.get("filter").and_then(Value::as_str);
        let filter_already_failed = errors.iter().any(|e| e.path == "params.filter");
        if let (Some(source), false) = (filter, filter_already_failed) {
            compile_filter(Some(source), &mut errors);
        }
        return Err(errors);
    }
    serde_json::from_value(params.clone())
        .map_err(|error| vec![ParamError::new("params", error.to_string())])
}

/// Compiles an optional filter (absent means "every event"), recording a failure.
pub(crate) fn compile_filter(source: Option<&str>, errors: &mut Vec<ParamError>) -> Option<Filter> {
    let source = source.unwrap_or("true");
    match Filter::compile(source) {
        Ok(filter) => Some(filter),
        Err(error) => {
            errors.push(ParamError::new("params.filter", error.to_string()));
            None
        }
    }
}

/// The value of `name` in an event: a field, or else the envelope value of that name
/// (`host`, `component`, `type`, `severity`, `message`, `producer`), so `group_by: ["host"]`
/// works whether the producer sent `host` as a field or as the source host.
pub fn field_value(event: &StoredEvent, name: &str) -> Option<Value> {
    if let Some(value) = event.fields.get(name) {
        return Some(value.clone());
    }
    let envelope = match name {
        "host" => event.source.host.as_deref(),
        "component" => event.source.component.as_deref(),
        "producer" => event.source.producer.as_deref(),
        "type" => event.event_type.as_deref(),
        "message" => event.message.as_deref(),
        "severity" => Some(event.severity.as_str()),
        _ => None,
    };
    envelope.map(|text| Value::String(text.to_string()))
}

/// The group key of an event: `name=value` for each `group_by` field, space-separated;
/// `None` if the event lacks one of them.
pub(crate) fn group_key(event: &StoredEvent, group_by: &[String]) -> Option<String> {
    let mut parts = Vec::with_capacity(group_by.len());
    for name in group_by {
        let value = field_value(event, name)?;
        parts.push(format!("{name}={}", scalar_text(&value)));
    }
    Some(parts.join(" "))
}

pub(crate) fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn group_fields(event: &StoredEvent, group_by: &[String]) -> Fields {
    let mut fields = Fields::new();
    for name in group_by {
        if let Some(value) = field_value(event, name) {
            fields.insert(name.clone(), value);
        }
    }
    fields
}

pub(crate) fn filter_hints(filter: &Filter, required: &[String]) -> DispatchHints {
    DispatchHints {
        equalities: filter.equalities().to_vec(),
        required_fields: required.to_vec(),
    }
}

pub(crate) fn severity_schema() -> Value {
    serde_json::json!({"type": "string", "enum": ["info", "warning", "critical"]})
}

pub(crate) fn group_by_schema() -> Value {
    serde_json::json!({
        "type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 8,
        "description": "fields whose values split alerts, e.g. [\"filesystem\"]"
    })
}

/// A duration parameter (`10m`): a string with [`tellify_model::DURATION_PATTERN`], so a
/// form can tell it from other text; the kind's `duration_param` still checks its range.
pub(crate) fn duration_schema(description: &str) -> Value {
    serde_json::json!({
        "type": "string", "pattern": tellify_model::DURATION_PATTERN, "description": description
    })
}

pub(crate) fn filter_schema() -> Value {
    serde_json::json!({
        "type": "string", "minLength": 1, "maxLength": crate::filter::MAX_FILTER_BYTES,
        "description": "a CEL expression over the event; fields are top-level names"
    })
}

fn group_suffix(group_key: &str) -> String {
    if group_key.is_empty() {
        String::new()
    } else {
        format!(" [{group_key}]")
    }
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn event_at(seconds: i64, fields: Value) -> StoredEvent {
        let time = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(seconds);
        let input = EventInput {
            fields: fields.as_object().cloned().unwrap_or_default(),
            ..Default::default()
        };
        StoredEvent::from_input(input, None, time, 0)
    }

    pub fn at(seconds: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(seconds)
    }

    /// Feeds one event through a handler, returning its outputs.
    pub fn feed(handler: &mut dyn Handler, event: &StoredEvent) -> Outputs {
        let mut out = Outputs::default();
        let context = EventContext::new(event);
        handler.on_event(event, &context, event.time, &mut out);
        out
    }

    pub fn paths(errors: &[ParamError]) -> Vec<&str> {
        errors.iter().map(|e| e.path.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_valid_schema_and_rejects_unknown_parameters() {
        let registry = Registry::builtin();
        for kind in registry.kinds() {
            let errors = kind.build(&serde_json::json!({"bogus": 1})).err().unwrap();
            assert!(
                errors.iter().any(|e| e.message.contains("bogus")),
                "{}: {errors:?}",
                kind.name()
            );
            assert!(!kind.title().is_empty() && !kind.description().is_empty());
        }
        let errors = registry
            .build("nope", &serde_json::json!({}))
            .err()
            .unwrap();
        assert!(errors[0]
            .message
            .contains("known: match, threshold, count, absence"));
    }

    #[test]
    fn renderers_escape_html_and_keep_sms_to_one_line() {
        let registry = Registry::builtin();
        let kind = registry.get("match").unwrap();
        let origin = crate::alerts::AlertOrigin {
            subscription_id: "s".into(),
            owner_user: None,
            owner_group: None,
            kind: "match".into(),
            title: "<script>".into(),
            latching: false,
        };
        let output = AlertOutput::Fire {
            group_key: "k".into(),
            severity: Severity::Critical,
            message: "a\nb".repeat(100),
            fields: Fields::new(),
            event_id: None,
        };
        let (alert, _) =
            crate::alerts::apply_output(None, &output, &origin, Timestamp::UNIX_EPOCH, &|| {
                "a1".to_string()
            })
            .unwrap();
        let reader = crate::render::Reader::utc(Timestamp::UNIX_EPOCH);
        let html = kind.render_html(std::slice::from_ref(&alert), &reader);
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
        let sms = kind.render_sms(&[alert.clone(), alert]);
        assert!(sms.chars().count() <= 160 && !sms.contains('\n'));
        assert!(sms.starts_with("2 alerts"));
    }
}
