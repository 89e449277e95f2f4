//! `alerta`: Alerta alerts as tellify alerts, with Alerta's duplicate and correlation
//! rules. The Alerta-compatible API stores each posted alert as an event of type `alerta`
//! whose top-level fields are Alerta's (`resource`, `event`, `environment`, `correlate`,
//! `timeout`, ...) plus `alerta_severity`, the sender's own severity name, since
//! tellify's three severities cannot tell `major` from `critical`.
//!
//! An Alerta alert is identified by (environment, resource, event) and its owner, the user
//! whose token posted it (the event's `source.producer`): one user's post never continues
//! another user's alert, even with the same environment, resource and event. A re-send with the
//! same severity is a *duplicate* (its `duplicateCount` goes up); an alert whose event is
//! the same with another severity, or is named in the `correlate` list of an alert of the
//! same environment and resource, *replaces* that alert, which keeps its identity and
//! records `previousSeverity`. `ok`, `normal` and `cleared` close it, and an alert not
//! re-sent within its `timeout` (seconds, 86400 unless given, 0 = never) expires. The rules
//! live here, as pure functions, because two places need them: this kind (per
//! subscription, over the events its filter selects) and the API, which must answer the
//! sender with Alerta's `duplicateCount` and `previousSeverity` before any subscription
//! has seen the alert.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tellify_model::{Fields, Severity, StoredEvent};

use super::{
    compile_filter, filter_hints, filter_schema, parse_params, AlertOutput, Handler, HandlerKind,
    Outputs,
};
use crate::dispatch::DispatchHints;
use crate::filter::{EventContext, Filter};
use crate::validation::ParamError;

/// The event type of a posted Alerta alert.
pub const EVENT_TYPE: &str = "alerta";
/// The event type of a posted Alerta heartbeat.
pub const HEARTBEAT_TYPE: &str = "alerta.heartbeat";
/// Alerta's default `timeout` of an alert and of a heartbeat, in seconds.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 86_400;

/// The sender's severity name (tellify's own severity is the envelope's).
pub const SEVERITY_FIELD: &str = "alerta_severity";
/// `open` or `closed`, as the API computed it.
pub const STATUS_FIELD: &str = "alerta_status";
/// The id of the Alerta alert this event belongs to, as the API answered it.
pub const ID_FIELD: &str = "alerta_id";
/// The Alerta alert's `previousSeverity` after this event, as the API answered it.
pub const PREVIOUS_SEVERITY_FIELD: &str = "alerta_previous_severity";
/// The Alerta alert's `duplicateCount` after this event, as the API answered it.
pub const DUPLICATE_COUNT_FIELD: &str = "alerta_duplicate_count";

/// Alerta's severities (its default alarm model), parsed at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertaSeverity {
    Security,
    Critical,
    Major,
    Minor,
    Warning,
    Indeterminate,
    Informational,
    Normal,
    Ok,
    Cleared,
    Debug,
    Trace,
    Unknown,
}

impl AlertaSeverity {
    pub const ALL: [AlertaSeverity; 13] = [
        AlertaSeverity::Security,
        AlertaSeverity::Critical,
        AlertaSeverity::Major,
        AlertaSeverity::Minor,
        AlertaSeverity::Warning,
        AlertaSeverity::Indeterminate,
        AlertaSeverity::Informational,
        AlertaSeverity::Normal,
        AlertaSeverity::Ok,
        AlertaSeverity::Cleared,
        AlertaSeverity::Debug,
        AlertaSeverity::Trace,
        AlertaSeverity::Unknown,
    ];

    /// Parses a severity name as Alerta spells it (case-insensitive).
    pub fn parse(text: &str) -> Option<AlertaSeverity> {
        let lower = text.to_ascii_lowercase();
        AlertaSeverity::ALL
            .into_iter()
            .find(|severity| severity.as_str() == lower)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertaSeverity::Security => "security",
            AlertaSeverity::Critical => "critical",
            AlertaSeverity::Major => "major",
            AlertaSeverity::Minor => "minor",
            AlertaSeverity::Warning => "warning",
            AlertaSeverity::Indeterminate => "indeterminate",
            AlertaSeverity::Informational => "informational",
            AlertaSeverity::Normal => "normal",
            AlertaSeverity::Ok => "ok",
            AlertaSeverity::Cleared => "cleared",
            AlertaSeverity::Debug => "debug",
            AlertaSeverity::Trace => "trace",
            AlertaSeverity::Unknown => "unknown",
        }
    }

    /// The tellify severity: security, critical and major page; minor and warning warn;
    /// the rest inform.
    pub fn severity(self) -> Severity {
        match self {
            AlertaSeverity::Security | AlertaSeverity::Critical | AlertaSeverity::Major => {
                Severity::Critical
            }
            AlertaSeverity::Minor | AlertaSeverity::Warning => Severity::Warning,
            _ => Severity::Info,
        }
    }

    /// Whether this severity closes an alert: Alerta's "normal" severities.
    pub fn is_normal(self) -> bool {
        matches!(
            self,
            AlertaSeverity::Normal | AlertaSeverity::Ok | AlertaSeverity::Cleared
        )
    }

    /// Alerta's code for the severity (0 most severe), for its `/config` alarm model.
    pub fn code(self) -> u8 {
        match self {
            AlertaSeverity::Security => 0,
            AlertaSeverity::Critical => 1,
            AlertaSeverity::Major => 2,
            AlertaSeverity::Minor => 3,
            AlertaSeverity::Warning => 4,
            AlertaSeverity::Indeterminate => 5,
            AlertaSeverity::Informational => 6,
            AlertaSeverity::Normal | AlertaSeverity::Ok | AlertaSeverity::Cleared => 7,
            AlertaSeverity::Debug => 8,
            AlertaSeverity::Trace => 9,
            AlertaSeverity::Unknown => 10,
        }
    }
}

/// What a received alert says, as far as the correlation rules care.
#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    /// The user who posted it (the event's producer); `None` for an event without one.
    pub owner: Option<String>,
    pub environment: String,
    pub resource: String,
    pub event: String,
    pub severity: AlertaSeverity,
    pub correlate: Vec<String>,
    /// Sent with `status: closed`, which closes it whatever its severity.
    pub status_closed: bool,
    pub timeout_seconds: u64,
}

impl Incoming {
    /// Reads an `alerta` event; `None` for any other event or one missing a key field.
    pub fn from_event(event: &StoredEvent) -> Option<Incoming> {
        if event.event_type.as_deref() != Some(EVENT_TYPE) {
            return None;
        }
        let text = |name: &str| event.fields.get(name).and_then(Value::as_str);
        let correlate = match event.fields.get("correlate") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        Some(Incoming {
            owner: event.source.producer.clone(),
            environment: text("environment").unwrap_or_default().to_string(),
            resource: text("resource")?.to_string(),
            event: text("event")?.to_string(),
            severity: AlertaSeverity::parse(text(SEVERITY_FIELD)?)?,
            correlate,
            status_closed: text(STATUS_FIELD) == Some("closed"),
            timeout_seconds: event
                .fields
                .get("timeout")
                .and_then(Value::as_u64)
                .unwrap_or(DEFAULT_TIMEOUT_SECONDS),
        })
    }

    /// Whether this alert closes what it continues.
    pub fn closes(&self) -> bool {
        self.status_closed || self.severity.is_normal()
    }
}

/// One Alerta alert as the correlation rules see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertaAlert {
    /// The id of the event that opened it; kept through duplicates and correlation.
    pub id: String,
    /// The user who posted it; only their posts continue it. Absent in state saved before
    /// alerts had owners, which then no post continues.
    #[serde(default)]
    pub owner: Option<String>,
    pub environment: String,
    pub resource: String,
    /// The event it was last sent as: correlation changes it.
    pub event: String,
    pub severity: AlertaSeverity,
    pub previous_severity: AlertaSeverity,
    pub correlate: Vec<String>,
    pub duplicate_count: u64,
    /// The last copy was a duplicate.
    pub repeat: bool,
    pub closed: bool,
    pub last_receive: Timestamp,
    pub timeout_seconds: u64,
}

/// How a received alert related to what was there before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    New,
    Duplicate,
    Correlated,
}

impl AlertaAlert {
    /// When it expires unless re-sent; `None` with a timeout of 0.
    pub fn expires_at(&self) -> Option<Timestamp> {
        if self.timeout_seconds == 0 {
            return None;
        }
        let seconds = i64::try_from(self.timeout_seconds).unwrap_or(i64::MAX);
        self.last_receive
            .checked_add(SignedDuration::from_secs(seconds))
            .ok()
            .or(Some(Timestamp::MAX))
    }

    pub fn is_alive(&self, now: Timestamp) -> bool {
        self.expires_at().is_none_or(|end| now < end)
    }

    /// Whether `incoming` continues this alert: the same owner, environment and resource,
    /// and the same event (a duplicate or a severity change) or an event this alert lists
    /// in `correlate` (Alerta's correlation).
    pub fn continued_by(&self, incoming: &Incoming) -> bool {
        self.owner == incoming.owner
            && self.environment == incoming.environment
            && self.resource == incoming.resource
            && (self.event == incoming.event || self.correlate.contains(&incoming.event))
    }

    /// Reads the state the API wrote into an `alerta` event (see [`write_state`]).
    pub fn from_event(event: &StoredEvent) -> Option<AlertaAlert> {
        let incoming = Incoming::from_event(event)?;
        let text = |name: &str| event.fields.get(name).and_then(Value::as_str);
        Some(AlertaAlert {
            id: text(ID_FIELD).unwrap_or(&event.id).to_string(),
            owner: incoming.owner,
            environment: incoming.environment,
            resource: incoming.resource,
            event: incoming.event,
            severity: incoming.severity,
            previous_severity: text(PREVIOUS_SEVERITY_FIELD)
                .and_then(AlertaSeverity::parse)
                .unwrap_or(AlertaSeverity::Indeterminate),
            correlate: incoming.correlate,
            duplicate_count: event
                .fields
                .get(DUPLICATE_COUNT_FIELD)
                .and_then(Value::as_u64)
                .unwrap_or(0),
            repeat: false,
            closed: text(STATUS_FIELD) == Some("closed"),
            last_receive: event.received,
            timeout_seconds: incoming.timeout_seconds,
        })
    }

    /// Writes what the API answered into the event's fields, so the next alert of this
    /// identity finds it with one lookup instead of replaying history.
    pub fn write_state(&self, fields: &mut Fields) {
        fields.insert(ID_FIELD.to_string(), json!(self.id));
        fields.insert(
            PREVIOUS_SEVERITY_FIELD.to_string(),
            json!(self.previous_severity.as_str()),
        );
        fields.insert(
            DUPLICATE_COUNT_FIELD.to_string(),
            json!(self.duplicate_count),
        );
        let status = if self.closed { "closed" } else { "open" };
        fields.insert(STATUS_FIELD.to_string(), json!(status));
    }
}

/// Applies Alerta's rules: `previous` is the alert `incoming` continues, if any (see
/// [`AlertaAlert::continued_by`]); one that expired no longer counts. A new alert takes
/// `event_id` as its id and `indeterminate` as its previous severity, as in Alerta.
pub fn receive(
    previous: Option<&AlertaAlert>,
    incoming: &Incoming,
    event_id: &str,
    now: Timestamp,
) -> (AlertaAlert, Received) {
    let previous = previous.filter(|alert| alert.is_alive(now) && alert.continued_by(incoming));
    let mut alert = AlertaAlert {
        id: event_id.to_string(),
        owner: incoming.owner.clone(),
        environment: incoming.environment.clone(),
        resource: incoming.resource.clone(),
        event: incoming.event.clone(),
        severity: incoming.severity,
        previous_severity: AlertaSeverity::Indeterminate,
        correlate: incoming.correlate.clone(),
        duplicate_count: 0,
        repeat: false,
        closed: incoming.closes(),
        last_receive: now,
        timeout_seconds: incoming.timeout_seconds,
    };
    let Some(previous) = previous else {
        return (alert, Received::New);
    };
    alert.id.clone_from(&previous.id);
    if previous.event == incoming.event && previous.severity == incoming.severity {
        alert.previous_severity = previous.previous_severity;
        // The count comes from a stored event, which any user can write through the
        // events API: it may already be at the maximum.
        alert.duplicate_count = previous.duplicate_count.saturating_add(1);
        alert.repeat = true;
        return (alert, Received::Duplicate);
    }
    alert.previous_severity = previous.severity;
    (alert, Received::Correlated)
}

pub struct AlertaKind;

#[derive(Deserialize)]
struct Params {
    filter: Option<String>,
}

/// An Alerta alert this subscription follows, with the tellify alert it maps to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Tracked {
    group_key: String,
    alert: AlertaAlert,
}

struct Alerta {
    filter: Filter,
    /// By [`identity`] of the alert's current event. A closed alert stays until it would
    /// have expired, so a correlated event can reopen the same tellify alert.
    tracked: BTreeMap<String, Tracked>,
}

/// The map key of (owner, environment, resource, event); the separator cannot occur in
/// JSON text that a sender would use, and keeps one owner's environment and resource
/// contiguous.
fn identity(owner: Option<&str>, environment: &str, resource: &str, event: &str) -> String {
    let owner = owner.unwrap_or_default();
    format!("{owner}\u{1f}{environment}\u{1f}{resource}\u{1f}{event}")
}

/// The tellify alert of an Alerta alert: its identity, with the owner when there is one, so
/// two users' alerts of the same name stay two alerts in a subscription that sees both.
fn group_key(alert: &AlertaAlert) -> String {
    let mut key = format!(
        "environment={} resource={} event={}",
        alert.environment, alert.resource, alert.event
    );
    if let Some(owner) = &alert.owner {
        key.push_str(&format!(" producer={owner}"));
    }
    key
}

impl HandlerKind for AlertaKind {
    fn name(&self) -> &'static str {
        "alerta"
    }

    fn title(&self) -> &'static str {
        "Alerta alerts"
    }

    fn description(&self) -> &'static str {
        "One alert per Alerta alert (environment, resource, event) posted to the \
         Alerta-compatible API, with Alerta's rules: a re-send is a duplicate, an event \
         named in another's correlate list replaces it, ok/normal/cleared resolve it, and \
         one not re-sent within its timeout (default 86400 s) resolves by itself."
    }

    fn required_fields(&self) -> &'static str {
        "events of type `alerta` (posted to the Alerta API's /alert)"
    }

    fn param_schema(&self) -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "filter": filter_schema(),
            }
        })
    }

    fn build(&self, params: &Value) -> Result<Box<dyn Handler>, Vec<ParamError>> {
        let parsed: Params = parse_params(&self.param_schema(), params)?;
        let mut errors = Vec::new();
        match compile_filter(parsed.filter.as_deref(), &mut errors) {
            Some(filter) if errors.is_empty() => Ok(Box::new(Alerta {
                filter,
                tracked: BTreeMap::new(),
            })),
            _ => Err(errors),
        }
    }
}

impl Alerta {
    /// The tracked alert `incoming` continues: the same event first (a duplicate or a
    /// severity change), else one of the same environment and resource whose `correlate`
    /// names the event.
    fn continued(&self, incoming: &Incoming) -> Option<String> {
        let owner = incoming.owner.as_deref();
        let exact = identity(
            owner,
            &incoming.environment,
            &incoming.resource,
            &incoming.event,
        );
        if self.tracked.contains_key(&exact) {
            return Some(exact);
        }
        let prefix = identity(owner, &incoming.environment, &incoming.resource, "");
        self.tracked
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .find(|(_, tracked)| tracked.alert.continued_by(incoming))
            .map(|(key, _)| key.clone())
    }
}

impl Handler for Alerta {
    fn dispatch_hints(&self) -> DispatchHints {
        filter_hints(&self.filter, &[SEVERITY_FIELD.to_string()])
    }

    fn on_event(
        &mut self,
        event: &StoredEvent,
        context: &EventContext,
        now: Timestamp,
        out: &mut Outputs,
    ) {
        let Some(incoming) = Incoming::from_event(event) else {
            return;
        };
        if !self.filter.matches(context) {
            return;
        }
        let previous_key = self.continued(&incoming);
        let previous = previous_key
            .as_ref()
            .and_then(|key| self.tracked.remove(key))
            .filter(|tracked| tracked.alert.is_alive(now));
        // The API names a new alert's id in the event; a hand-made event's own id serves.
        let new_id = event
            .fields
            .get(ID_FIELD)
            .and_then(Value::as_str)
            .unwrap_or(&event.id);
        let (alert, received) = receive(
            previous.as_ref().map(|tracked| &tracked.alert),
            &incoming,
            new_id,
            now,
        );
        let was_open = previous
            .as_ref()
            .is_some_and(|tracked| !tracked.alert.closed);
        let group_key = match (&previous, received) {
            (Some(tracked), Received::Duplicate | Received::Correlated) => {
                tracked.group_key.clone()
            }
            _ => group_key(&alert),
        };
        if previous_key.is_some() {
            out.state_changed = true;
        }
        let key = identity(
            alert.owner.as_deref(),
            &alert.environment,
            &alert.resource,
            &alert.event,
        );
        if alert.closed {
            if received == Received::New {
                // Closing what was never open here leaves nothing to follow.
                return;
            }
            if was_open {
                out.alerts.push(AlertOutput::Resolve {
                    group_key: group_key.clone(),
                    message: Some(format!("closed by severity {}", alert.severity.as_str())),
                });
            }
            self.tracked.insert(key, Tracked { group_key, alert });
            out.state_changed = true;
            return;
        }
        let message = event
            .message
            .clone()
            .unwrap_or_else(|| format!("{} on {}", alert.event, alert.resource));
        let mut fields = event.fields.clone();
        alert.write_state(&mut fields);
        out.alerts.push(AlertOutput::Fire {
            group_key: group_key.clone(),
            severity: alert.severity.severity(),
            message,
            fields,
            event_id: Some(event.id.clone()),
        });
        self.tracked.insert(key, Tracked { group_key, alert });
        out.state_changed = true;
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Outputs) {
        let expired: Vec<String> = self
            .tracked
            .iter()
            .filter(|(_, tracked)| !tracked.alert.is_alive(now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            let Some(tracked) = self.tracked.remove(&key) else {
                continue;
            };
            out.state_changed = true;
            if tracked.alert.closed {
                continue;
            }
            out.alerts.push(AlertOutput::Resolve {
                group_key: tracked.group_key,
                message: Some(format!(
                    "expired: not re-sent within its timeout of {} s",
                    tracked.alert.timeout_seconds
                )),
            });
        }
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        self.tracked
            .values()
            .filter_map(|tracked| tracked.alert.expires_at())
            .min()
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

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use tellify_model::EventInput;

    /// An `alerta` event as the API stores it, received at `second`.
    fn alerta_event(second: i64, event: &str, severity: &str, extra: Value) -> StoredEvent {
        let mut fields = json!({
            "resource": "web01",
            "event": event,
            "environment": "Production",
            "alerta_severity": severity,
            "timeout": 600,
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        for (name, value) in extra.as_object().cloned().unwrap_or_default() {
            fields.insert(name, value);
        }
        let input = EventInput {
            event_type: Some(EVENT_TYPE.to_string()),
            severity: AlertaSeverity::parse(severity).map(AlertaSeverity::severity),
            message: Some(format!("{event} on web01")),
            fields,
            ..Default::default()
        };
        let mut stored = StoredEvent::from_input(input, None, at(second), 0);
        stored.id = format!("ev{second}");
        stored
    }

    fn build() -> Box<dyn Handler> {
        AlertaKind.build(&json!({})).unwrap()
    }

    #[test]
    fn severities_map_to_tellify_and_normal_ones_close() {
        let expect = [
            ("security", Severity::Critical, false),
            ("Critical", Severity::Critical, false),
            ("major", Severity::Critical, false),
            ("minor", Severity::Warning, false),
            ("warning", Severity::Warning, false),
            ("informational", Severity::Info, false),
            ("debug", Severity::Info, false),
            ("trace", Severity::Info, false),
            ("indeterminate", Severity::Info, false),
            ("ok", Severity::Info, true),
            ("normal", Severity::Info, true),
            ("cleared", Severity::Info, true),
        ];
        for (name, severity, normal) in expect {
            let parsed = AlertaSeverity::parse(name).unwrap();
            assert_eq!((parsed.severity(), parsed.is_normal()), (severity, normal));
        }
        assert_eq!(AlertaSeverity::parse("loud"), None);
    }

    #[test]
    fn a_resend_is_a_duplicate_and_a_severity_change_records_the_previous_severity() {
        let mut handler = build();
        let out = feed(
            handler.as_mut(),
            &alerta_event(0, "HttpError", "major", json!({})),
        );
        let AlertOutput::Fire {
            group_key,
            severity,
            fields,
            ..
        } = &out.alerts[0]
        else {
            panic!("expected a fire: {out:?}")
        };
        assert_eq!(
            group_key,
            "environment=Production resource=web01 event=HttpError"
        );
        assert_eq!(*severity, Severity::Critical);
        assert_eq!(fields[ID_FIELD], "ev0");
        assert_eq!(fields[DUPLICATE_COUNT_FIELD], 0);

        let out = feed(
            handler.as_mut(),
            &alerta_event(5, "HttpError", "major", json!({})),
        );
        let AlertOutput::Fire { fields, .. } = &out.alerts[0] else {
            panic!("a duplicate fires again, so the tellify alert counts it: {out:?}")
        };
        assert_eq!(fields[ID_FIELD], "ev0");
        assert_eq!(fields[DUPLICATE_COUNT_FIELD], 1);

        let out = feed(
            handler.as_mut(),
            &alerta_event(9, "HttpError", "minor", json!({})),
        );
        let AlertOutput::Fire {
            severity, fields, ..
        } = &out.alerts[0]
        else {
            panic!("expected a fire: {out:?}")
        };
        assert_eq!(*severity, Severity::Warning);
        assert_eq!(fields[PREVIOUS_SEVERITY_FIELD], "major");
        assert_eq!(fields[DUPLICATE_COUNT_FIELD], 0);
    }

    #[test]
    fn a_duplicate_of_a_stored_count_at_the_maximum_stays_at_the_maximum() {
        // Found by the `alerta_payload` fuzz target: an `alerta` event stored through
        // the events API can carry any count.
        let stored = alerta_event(
            0,
            "HttpError",
            "major",
            json!({DUPLICATE_COUNT_FIELD: u64::MAX}),
        );
        let previous = AlertaAlert::from_event(&stored).unwrap();
        let incoming =
            Incoming::from_event(&alerta_event(1, "HttpError", "major", json!({}))).unwrap();
        let (alert, received) = receive(Some(&previous), &incoming, "ev1", at(1));
        assert_eq!(received, Received::Duplicate);
        assert_eq!(alert.duplicate_count, u64::MAX);
    }

    #[test]
    fn a_correlated_event_replaces_the_alert_and_a_normal_one_resolves_it() {
        let mut handler = build();
        let correlate = json!({"correlate": ["HttpError", "HttpOK"]});
        feed(
            handler.as_mut(),
            &alerta_event(0, "HttpError", "major", correlate.clone()),
        );
        // Another event on the same resource that does not correlate is its own alert.
        let disk = feed(
            handler.as_mut(),
            &alerta_event(1, "DiskFull", "minor", json!({})),
        );
        assert_eq!(
            disk.alerts[0].group_key(),
            "environment=Production resource=web01 event=DiskFull"
        );
        let out = feed(
            handler.as_mut(),
            &alerta_event(10, "HttpOK", "normal", correlate.clone()),
        );
        assert_eq!(
            out.alerts,
            vec![AlertOutput::Resolve {
                group_key: "environment=Production resource=web01 event=HttpError".to_string(),
                message: Some("closed by severity normal".to_string()),
            }]
        );
        // The closed alert is remembered: the error coming back reopens the same one.
        let again = feed(
            handler.as_mut(),
            &alerta_event(20, "HttpError", "critical", correlate),
        );
        let AlertOutput::Fire {
            group_key, fields, ..
        } = &again.alerts[0]
        else {
            panic!("expected a fire: {again:?}")
        };
        assert_eq!(
            group_key,
            "environment=Production resource=web01 event=HttpError"
        );
        assert_eq!(fields[ID_FIELD], "ev0");
        assert_eq!(fields[PREVIOUS_SEVERITY_FIELD], "normal");
        // A normal alert nobody raised leaves nothing behind.
        let quiet = feed(handler.as_mut(), &alerta_event(30, "Ping", "ok", json!({})));
        assert!(quiet.alerts.is_empty() && !quiet.state_changed, "{quiet:?}");
    }

    #[test]
    fn an_alert_not_resent_within_its_timeout_expires() {
        let mut handler = build();
        feed(
            handler.as_mut(),
            &alerta_event(0, "HttpError", "major", json!({})),
        );
        feed(
            handler.as_mut(),
            &alerta_event(100, "HttpError", "major", json!({})),
        );
        assert_eq!(handler.next_deadline(), Some(at(700)));
        let mut out = Outputs::default();
        handler.on_tick(at(699), &mut out);
        assert!(out.alerts.is_empty());
        handler.on_tick(at(700), &mut out);
        assert!(matches!(
            &out.alerts[0],
            AlertOutput::Resolve { message: Some(message), .. } if message.contains("600 s")
        ));
        assert_eq!(handler.next_deadline(), None);
        // A timeout of 0 never expires.
        feed(
            handler.as_mut(),
            &alerta_event(800, "HttpError", "major", json!({"timeout": 0})),
        );
        assert_eq!(handler.next_deadline(), None);
    }

    #[test]
    fn an_expired_alert_is_not_continued() {
        let incoming = |event: &StoredEvent| Incoming::from_event(event).unwrap();
        let first = alerta_event(0, "HttpError", "major", json!({}));
        let (alert, received) = receive(None, &incoming(&first), "a", at(0));
        assert_eq!(received, Received::New);
        let later = alerta_event(601, "HttpError", "major", json!({}));
        let (again, received) = receive(Some(&alert), &incoming(&later), "b", at(601));
        assert_eq!((again.id.as_str(), received), ("b", Received::New));
        let soon = alerta_event(599, "HttpError", "major", json!({}));
        let (again, received) = receive(Some(&alert), &incoming(&soon), "b", at(599));
        assert_eq!((again.id.as_str(), received), ("a", Received::Duplicate));
    }

    #[test]
    fn one_users_post_never_continues_anothers_alert() {
        let posted_by = |owner: &str, second: i64, severity: &str, extra: Value| {
            let mut event = alerta_event(second, "HttpError", severity, extra);
            event.source.producer = Some(owner.to_string());
            event
        };
        let mut handler = build();
        let correlate = json!({"correlate": ["HttpError", "HttpOK"]});
        let ann = feed(
            handler.as_mut(),
            &posted_by("ann", 0, "major", correlate.clone()),
        );
        assert_eq!(
            ann.alerts[0].group_key(),
            "environment=Production resource=web01 event=HttpError producer=ann"
        );
        // bob sends the same alert: a new alert of his, not a duplicate of ann's.
        let bob = feed(handler.as_mut(), &posted_by("bob", 5, "major", json!({})));
        let AlertOutput::Fire {
            group_key, fields, ..
        } = &bob.alerts[0]
        else {
            panic!("expected a fire: {bob:?}")
        };
        assert_eq!(
            group_key,
            "environment=Production resource=web01 event=HttpError producer=bob"
        );
        assert_eq!(fields[ID_FIELD], "ev5");
        assert_eq!(fields[DUPLICATE_COUNT_FIELD], 0);
        // bob's HttpOK would correlate with ann's alert, which lists it: it does not.
        let correlated = feed(
            handler.as_mut(),
            &posted_by("bob", 6, "normal", json!({"event": "HttpOK"})),
        );
        assert!(correlated.alerts.is_empty(), "{correlated:?}");
        // bob's `ok` closes his own alert only.
        let closed = feed(handler.as_mut(), &posted_by("bob", 7, "ok", json!({})));
        assert_eq!(
            closed.alerts,
            vec![AlertOutput::Resolve {
                group_key: "environment=Production resource=web01 event=HttpError producer=bob"
                    .to_string(),
                message: Some("closed by severity ok".to_string()),
            }]
        );
        let again = feed(handler.as_mut(), &posted_by("ann", 8, "major", json!({})));
        let AlertOutput::Fire { fields, .. } = &again.alerts[0] else {
            panic!("expected a fire: {again:?}")
        };
        assert_eq!(fields[ID_FIELD], "ev0");
        assert_eq!(
            fields[DUPLICATE_COUNT_FIELD], 1,
            "ann's own alert, untouched"
        );
        // The API's lookup applies the same rule.
        let ann_alert = AlertaAlert::from_event(&posted_by("ann", 0, "major", correlate)).unwrap();
        let bob_post = Incoming::from_event(&posted_by("bob", 9, "major", json!({}))).unwrap();
        assert!(!ann_alert.continued_by(&bob_post));
    }

    #[test]
    fn the_filter_selects_alerts_and_state_survives_a_restart() {
        let mut handler = AlertaKind
            .build(&json!({"filter": "environment == \"Production\""}))
            .unwrap();
        let staging = alerta_event(0, "HttpError", "major", json!({"environment": "Staging"}));
        assert!(feed(handler.as_mut(), &staging).alerts.is_empty());
        let plain = event_at(0, json!({"resource": "web01", "event": "HttpError"}));
        assert!(feed(handler.as_mut(), &plain).alerts.is_empty());
        feed(
            handler.as_mut(),
            &alerta_event(0, "HttpError", "major", json!({})),
        );
        let saved = handler.save_state();
        let mut restored = AlertaKind.build(&json!({})).unwrap();
        restored.load_state(&saved).unwrap();
        assert_eq!(restored.next_deadline(), Some(at(600)));
        let out = feed(
            restored.as_mut(),
            &alerta_event(1, "HttpError", "major", json!({})),
        );
        let AlertOutput::Fire { fields, .. } = &out.alerts[0] else {
            panic!("expected a fire: {out:?}")
        };
        assert_eq!(fields[DUPLICATE_COUNT_FIELD], 1);
        assert!(restored.load_state(&json!({"tracked": 3})).is_err());
        let errors = AlertaKind.build(&json!({"filter": "(("})).err().unwrap();
        assert_eq!(paths(&errors), vec!["params.filter"]);
    }
}
