//! Alerta's payloads as events. A posted alert becomes one event of type `alerta`
//! (Alerta's fields as top-level fields), a heartbeat one of type `alerta.heartbeat`.
//!
//! Alerta answers a post with the alert's `duplicateCount` and `previousSeverity`, which
//! depend on no subscription: [`receive_alert`] computes them with the engine's
//! correlation rules from the newest stored event of the same alert, found with one keyed
//! store lookup ([`tellify_store::Store::keyed_events`]: the poster, environment and
//! resource, and the event or one it correlates with), and writes them into the new event,
//! so that the next lookup again needs only that one event.
//!
//! **Invariant:** posts of the same Alerta key — the poster, environment and resource,
//! which covers every alert correlation can join — run one at a time, from the lookup to
//! the durable append, so two copies sent at once count two duplicates. Posts of other
//! keys do not wait for each other: there is no process-wide lock.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Map, Value};
use tellify_engine::handlers::alerta::{
    receive, AlertaAlert, AlertaSeverity, Incoming, DEFAULT_TIMEOUT_SECONDS, EVENT_TYPE,
    HEARTBEAT_TYPE, SEVERITY_FIELD,
};
use tellify_model::{EventInput, Fields, Limits, Severity};
use tellify_store::{KeyedEventQuery, StoreError};

use super::{store_events, EventCheck, StoreEventsError};
use crate::services::Services;

/// How far back a posted alert looks for the alert it continues. Alerta's default
/// timeout is a day; an alert with a longer timeout not re-sent for a day starts anew.
const LOOKBACK: SignedDuration = SignedDuration::from_secs(86_400);
/// Most candidate events one lookup reads: the newest that still parses as an Alerta
/// alert wins, so this only matters when newer events of the key were written by hand
/// through the events API and do not parse.
const LOOKUP_LIMIT: usize = 16;
/// Used when an alert names no environment: Alerta's `DEFAULT_ENVIRONMENT`.
const DEFAULT_ENVIRONMENT: &str = "Production";

/// Why a posted alert or heartbeat was not stored.
#[derive(Debug)]
pub enum AlertaIngestError {
    /// The payload is not acceptable; every problem, joined with `; `.
    Invalid(String),
    /// A backlog or the store refused it.
    Store(StoreEventsError),
}

impl From<StoreError> for AlertaIngestError {
    fn from(error: StoreError) -> AlertaIngestError {
        AlertaIngestError::Store(error.into())
    }
}

impl From<StoreEventsError> for AlertaIngestError {
    fn from(error: StoreEventsError) -> AlertaIngestError {
        AlertaIngestError::Store(error)
    }
}

/// A posted alert, checked; what the event and the answer are made of.
#[derive(Clone, Debug)]
pub struct PostedAlert {
    pub incoming: Incoming,
    pub service: Vec<String>,
    pub tags: Vec<String>,
    pub correlate_given: Vec<String>,
    pub attributes: Map<String, Value>,
    pub group: Option<String>,
    pub value: Option<String>,
    pub text: Option<String>,
    pub origin: Option<String>,
    pub alert_type: Option<String>,
    pub create_time: Option<String>,
}

/// A stored alert: the Alerta alert after the rules, and the id of the stored event.
#[derive(Clone, Debug)]
pub struct ReceivedAlert {
    pub alert: AlertaAlert,
    pub event_id: String,
}

/// Stores a posted alert of `owner` as an `alerta` event, durably, after Alerta's duplicate
/// and correlation rules (see the module's invariant).
pub async fn receive_alert(
    services: &Services,
    mut posted: PostedAlert,
    owner: &str,
) -> Result<ReceivedAlert, AlertaIngestError> {
    // Alerts are the poster's own: only their later posts continue them.
    posted.incoming.owner = Some(owner.to_string());
    let _serial = KEY_LOCKS
        .lock(alerta_key(
            owner,
            &posted.incoming.environment,
            &posted.incoming.resource,
        ))
        .await;
    let now = services.clock.now();
    let previous = find_previous(services, &posted.incoming, now).await?;
    let new_id = tellify_model::new_id();
    let (alert, _) = receive(previous.as_ref(), &posted.incoming, &new_id, now);
    let mut input = posted_to_event(&posted, &alert);
    let check = services
        .event_types
        .check(services.settings.ingest.strict_types);
    check_event(&mut input, &services.settings.limits, &check)
        .inspect_err(|_| super::count_rejected())
        .map_err(AlertaIngestError::Invalid)?;
    let appended = store_events(services, vec![input], owner).await?;
    let event_id = appended
        .first()
        .map(|stored| stored.id.clone())
        .unwrap_or_default();
    Ok(ReceivedAlert { alert, event_id })
}

/// The newest alert `incoming` continues (same owner, environment and resource, and the
/// same event or one that lists it in `correlate`), from the events of the last
/// [`LOOKBACK`].
async fn find_previous(
    services: &Services,
    incoming: &Incoming,
    now: Timestamp,
) -> Result<Option<AlertaAlert>, StoreError> {
    let candidates = services
        .store
        .keyed_events(KeyedEventQuery {
            event_type: EVENT_TYPE.to_string(),
            producer: incoming.owner.clone(),
            since: now - LOOKBACK,
            equal: vec![
                ("environment".to_string(), incoming.environment.clone()),
                ("resource".to_string(), incoming.resource.clone()),
            ],
            names: Some((
                vec!["event".to_string(), "correlate".to_string()],
                incoming.event.clone(),
            )),
            newest_per: None,
            limit: LOOKUP_LIMIT,
        })
        .await?;
    Ok(candidates
        .iter()
        .filter_map(AlertaAlert::from_event)
        .find(|alert| alert.continued_by(incoming)))
}

/// The lock key of an Alerta alert; the separator cannot occur in JSON text a sender
/// would use.
fn alerta_key(owner: &str, environment: &str, resource: &str) -> String {
    format!("{owner}\u{1f}{environment}\u{1f}{resource}")
}

/// One async lock per key in use, dropped when its last holder or waiter is done, so
/// the map holds only keys being posted right now.
struct KeyLocks {
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The process's Alerta key locks. Keys name the owner by user name; two apps in one
/// process (tests) with the same user names only share a wait, never data.
static KEY_LOCKS: LazyLock<KeyLocks> = LazyLock::new(|| KeyLocks {
    held: Mutex::new(HashMap::new()),
});

struct KeyGuard {
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyLocks {
    async fn lock(&'static self, key: String) -> KeyGuard {
        let lock = {
            let mut held = self
                .held
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            held.entry(key.clone()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        KeyGuard {
            key,
            guard: Some(guard),
        }
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        let mut held = KEY_LOCKS
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.guard = None;
        // Only the map's own reference left: nobody holds or waits for this key.
        if held
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            held.remove(&self.key);
        }
    }
}

/// Checks the envelope rules, limits and a registered type's schema, as
/// `POST /api/v1/events` does; the problems joined, each named by its field.
pub fn check_event(
    input: &mut EventInput,
    limits: &Limits,
    check: &dyn EventCheck,
) -> Result<(), String> {
    let mut found = input.validate(limits).err().unwrap_or_default();
    found.extend(check.check(input));
    if found.is_empty() {
        return Ok(());
    }
    let summary: Vec<String> = found
        .iter()
        .map(|problem| {
            let field = problem
                .field
                .strip_prefix("fields.")
                .unwrap_or(&problem.field);
            format!("{field}: {}", problem.message)
        })
        .collect();
    Err(summary.join("; "))
}

/// Reads a posted alert, reporting every problem at once.
pub fn parse_alert(body: &[u8]) -> Result<PostedAlert, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| format!("invalid JSON: {error}"))?;
    let Value::Object(alert) = value else {
        return Err("the body must be a JSON object".to_string());
    };
    let mut problems = Vec::new();
    let resource = required_text(&alert, "resource", &mut problems);
    let event = required_text(&alert, "event", &mut problems);
    let environment = optional_text(&alert, "environment", &mut problems)
        .unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_string());
    let severity = match optional_text(&alert, "severity", &mut problems) {
        None => Some(AlertaSeverity::Normal),
        Some(name) => {
            let parsed = AlertaSeverity::parse(&name);
            if parsed.is_none() {
                let known: Vec<&str> = AlertaSeverity::ALL.iter().map(|s| s.as_str()).collect();
                problems.push(format!(
                    "severity: `{name}` is not one of {}",
                    known.join(", ")
                ));
            }
            parsed
        }
    };
    let status = optional_text(&alert, "status", &mut problems);
    let correlate = text_list(&alert, "correlate", &mut problems);
    let service = text_list(&alert, "service", &mut problems);
    let tags = text_list(&alert, "tags", &mut problems);
    let attributes = attributes(&alert, &mut problems);
    let timeout_seconds = match alert.get("timeout") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT_SECONDS,
        Some(value) => match value.as_u64() {
            Some(seconds) => seconds,
            None => {
                problems.push("timeout: must be a whole number of seconds, 0 or more".into());
                DEFAULT_TIMEOUT_SECONDS
            }
        },
    };
    // Alerta's `value` is text, but senders often put a number there.
    let value = match alert.get("value") {
        Some(Value::Number(number)) => Some(number.to_string()),
        _ => optional_text(&alert, "value", &mut problems),
    };
    let group = optional_text(&alert, "group", &mut problems);
    let text = optional_text(&alert, "text", &mut problems);
    let origin = optional_text(&alert, "origin", &mut problems);
    let alert_type = optional_text(&alert, "type", &mut problems);
    let create_time = alert
        .get("createTime")
        .and_then(Value::as_str)
        .map(str::to_string);
    let (Some(resource), Some(event), Some(severity), true) =
        (resource, event, severity, problems.is_empty())
    else {
        return Err(problems.join("; "));
    };
    Ok(PostedAlert {
        incoming: Incoming {
            // Set from the caller's token by `receive_alert`.
            owner: None,
            environment,
            resource,
            event,
            severity,
            correlate: correlate.clone(),
            status_closed: status.as_deref() == Some("closed"),
            timeout_seconds,
        },
        service,
        tags,
        correlate_given: correlate,
        attributes,
        group,
        value,
        text,
        origin,
        alert_type,
        create_time,
    })
}

/// The event stored for a posted alert: Alerta's fields as top-level fields, the
/// severity mapped to tellify's, and the computed state (see `AlertaAlert::write_state`).
pub fn posted_to_event(posted: &PostedAlert, alert: &AlertaAlert) -> EventInput {
    let incoming = &posted.incoming;
    let mut fields = Fields::new();
    fields.insert("resource".into(), json!(incoming.resource));
    fields.insert("event".into(), json!(incoming.event));
    fields.insert("environment".into(), json!(incoming.environment));
    fields.insert(SEVERITY_FIELD.into(), json!(incoming.severity.as_str()));
    fields.insert("service".into(), json!(posted.service));
    fields.insert("tags".into(), json!(posted.tags));
    fields.insert("correlate".into(), json!(posted.correlate_given));
    fields.insert(
        "attributes".into(),
        Value::Object(posted.attributes.clone()),
    );
    fields.insert("timeout".into(), json!(incoming.timeout_seconds));
    let optional = [
        ("group", &posted.group),
        ("value", &posted.value),
        ("text", &posted.text),
        ("origin", &posted.origin),
        ("type", &posted.alert_type),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            fields.insert(name.to_string(), json!(value));
        }
    }
    alert.write_state(&mut fields);
    let message = posted
        .text
        .clone()
        .unwrap_or_else(|| format!("{} on {}", incoming.event, incoming.resource));
    EventInput {
        event_type: Some(EVENT_TYPE.to_string()),
        severity: Some(incoming.severity.severity()),
        message: Some(message),
        fields,
        ..Default::default()
    }
}

/// A posted heartbeat, checked.
#[derive(Clone, Debug)]
pub struct PostedHeartbeat {
    pub origin: String,
    pub tags: Vec<String>,
    pub attributes: Map<String, Value>,
    pub timeout: u64,
    pub create_time: Option<String>,
}

/// Reads a posted heartbeat, reporting every problem at once.
pub fn parse_heartbeat(body: &[u8]) -> Result<PostedHeartbeat, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| format!("invalid JSON: {error}"))?;
    let Value::Object(heartbeat) = value else {
        return Err("the body must be a JSON object".to_string());
    };
    let mut problems = Vec::new();
    let origin = required_text(&heartbeat, "origin", &mut problems);
    let tags = text_list(&heartbeat, "tags", &mut problems);
    let attributes = attributes(&heartbeat, &mut problems);
    let timeout = match heartbeat.get("timeout") {
        None | Some(Value::Null) => Some(DEFAULT_TIMEOUT_SECONDS),
        Some(value) => value.as_u64(),
    };
    if timeout.is_none() {
        problems.push("timeout: must be a whole number of seconds, 0 or more".to_string());
    }
    let (Some(origin), Some(timeout), true) = (origin, timeout, problems.is_empty()) else {
        return Err(problems.join("; "));
    };
    Ok(PostedHeartbeat {
        origin,
        tags,
        attributes,
        timeout,
        create_time: heartbeat
            .get("createTime")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Stores a heartbeat as an `alerta.heartbeat` event, durably; returns the event's id.
pub async fn receive_heartbeat(
    services: &Services,
    heartbeat: &PostedHeartbeat,
    owner: &str,
) -> Result<String, AlertaIngestError> {
    let mut fields = Fields::new();
    fields.insert("origin".into(), json!(heartbeat.origin));
    fields.insert("tags".into(), json!(heartbeat.tags));
    fields.insert(
        "attributes".into(),
        Value::Object(heartbeat.attributes.clone()),
    );
    fields.insert("timeout".into(), json!(heartbeat.timeout));
    let mut input = EventInput {
        event_type: Some(HEARTBEAT_TYPE.to_string()),
        severity: Some(Severity::Info),
        message: Some(format!("heartbeat from {}", heartbeat.origin)),
        fields,
        ..Default::default()
    };
    let check = services
        .event_types
        .check(services.settings.ingest.strict_types);
    check_event(&mut input, &services.settings.limits, &check)
        .inspect_err(|_| super::count_rejected())
        .map_err(AlertaIngestError::Invalid)?;
    let appended = store_events(services, vec![input], owner).await?;
    Ok(appended
        .first()
        .map(|stored| stored.id.clone())
        .unwrap_or_default())
}

fn attributes(object: &Map<String, Value>, problems: &mut Vec<String>) -> Map<String, Value> {
    match object.get("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(attributes)) => attributes.clone(),
        Some(_) => {
            problems.push("attributes: must be a JSON object".to_string());
            Map::new()
        }
    }
}

fn required_text(
    object: &Map<String, Value>,
    name: &str,
    problems: &mut Vec<String>,
) -> Option<String> {
    let found = optional_text(object, name, problems);
    if found.is_none() && !problems.iter().any(|p| p.starts_with(name)) {
        problems.push(format!("{name}: is required"));
    }
    found
}

/// A string field; `null`, absent and empty all mean "not given".
fn optional_text(
    object: &Map<String, Value>,
    name: &str,
    problems: &mut Vec<String>,
) -> Option<String> {
    match object.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.is_empty() => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            problems.push(format!("{name}: must be a string"));
            None
        }
    }
}

fn text_list(object: &Map<String, Value>, name: &str, problems: &mut Vec<String>) -> Vec<String> {
    match object.get(name) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let texts: Vec<String> = items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            if texts.len() != items.len() {
                problems.push(format!("{name}: must be a list of strings"));
            }
            texts
        }
        Some(_) => {
            problems.push(format!("{name}: must be a list of strings"));
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn posts_of_one_key_wait_for_each_other_and_other_keys_do_not() {
        let first = KEY_LOCKS.lock(alerta_key("t-ann", "P", "web01")).await;
        // Another key is free while the first is held.
        let other = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            KEY_LOCKS.lock(alerta_key("t-ann", "P", "web02")),
        )
        .await;
        assert!(other.is_ok(), "another key must not wait");
        drop(other);
        let same = KEY_LOCKS.lock(alerta_key("t-ann", "P", "web01"));
        tokio::pin!(same);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), &mut same).await;
        assert!(waited.is_err(), "the same key waits for its holder");
        drop(first);
        let second = same.await;
        drop(second);
        let held = KEY_LOCKS.held.lock().unwrap();
        assert!(
            !held.keys().any(|key| key.starts_with("t-ann")),
            "released keys leave the map"
        );
    }

    #[test]
    fn every_problem_of_a_posted_alert_is_reported() {
        let error =
            parse_alert(br#"{"tags": "x", "timeout": -1, "severity": "loud"}"#).unwrap_err();
        assert_eq!(
            error,
            "resource: is required; event: is required; severity: `loud` is not one of \
             security, critical, major, minor, warning, indeterminate, informational, \
             normal, ok, cleared, debug, trace, unknown; tags: must be a list of strings; \
             timeout: must be a whole number of seconds, 0 or more"
        );
        let posted = parse_alert(br#"{"resource": "r", "event": "e", "value": 3}"#).unwrap();
        assert_eq!(posted.incoming.environment, "Production");
        assert_eq!(posted.value.as_deref(), Some("3"));
        assert!(parse_heartbeat(br#"{"timeout": "x"}"#)
            .unwrap_err()
            .contains("origin: is required"));
    }
}
