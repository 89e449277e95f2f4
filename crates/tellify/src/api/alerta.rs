//! Alerta's API, so the `alerta` CLI and Alerta integrations can send to tellify:
//! `POST {prefix}/alert`, `POST {prefix}/heartbeat` and the public `GET {prefix}/config`
//! the CLI reads before every command, under `alerta.prefix` (default `/alerta/api`).
//! Callers authenticate with tellify tokens sent as Alerta does, `Authorization: Key
//! <token>`, or as `Bearer`.
//!
//! Nothing here has tables of its own. A posted alert becomes an event of type `alerta`
//! (Alerta's fields as top-level fields), stored through the same durable path as
//! `POST /api/v1/events`; subscriptions of kind `alerta` turn it into tellify alerts.
//! Alerta answers with the alert's `duplicateCount` and `previousSeverity`, which do not
//! depend on any subscription, so the answer is computed here with the engine's
//! correlation rules from the newest stored event of the same alert, and written into
//! the new event so that the next lookup finds it in one step. Errors come back in
//! Alerta's shape (`{"status": "error", "message": ...}`) because the CLI ignores
//! anything else and would report success.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tellify_engine::handlers::alerta::{
    receive, AlertaAlert, AlertaSeverity, Incoming, DEFAULT_TIMEOUT_SECONDS, EVENT_TYPE,
    HEARTBEAT_TYPE, SEVERITY_FIELD,
};
use tellify_model::{EventInput, Fields, Severity};
use tellify_store::EventQuery;

use super::{ApiError, AppState};
use crate::auth::{Principal, Scope};
use crate::ingest::{store_events, EventCheck};

/// How far back a posted alert looks for the alert it continues. Alerta's default
/// timeout is a day; an alert with a longer timeout not re-sent for a day starts anew.
const LOOKBACK: SignedDuration = SignedDuration::from_secs(86_400);
/// Most events one lookup reads; bounds its cost under heavy ingest.
const MAX_SCAN: usize = 100_000;
/// Used when an alert names no environment: Alerta's `DEFAULT_ENVIRONMENT`.
const DEFAULT_ENVIRONMENT: &str = "Production";

/// `[alerta]`: the Alerta-compatible API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertaSettings {
    /// The path the API is served under; the `alerta` CLI's `endpoint` is the server's
    /// URL followed by it (`http://tellify:8080/alerta/api`).
    pub prefix: AlertaPrefix,
}

impl Default for AlertaSettings {
    fn default() -> Self {
        AlertaSettings {
            prefix: AlertaPrefix("/alerta/api".to_string()),
        }
    }
}

/// A path prefix the router can nest under: starts with `/`, is not `/` alone, has no
/// trailing `/` and no `{` or `*` (which the router would read as parameters). Checked
/// when the settings load, so a bad value stops the start instead of panicking later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AlertaPrefix(String);

impl AlertaPrefix {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AlertaPrefix {
    type Error = String;

    fn try_from(text: String) -> Result<AlertaPrefix, String> {
        let trimmed = text.trim_end_matches('/');
        if !trimmed.starts_with('/') {
            return Err(format!("alerta.prefix `{text}` must start with `/`"));
        }
        if trimmed.contains(['{', '}', '*']) {
            return Err(format!(
                "alerta.prefix `{text}` must not contain `{{`, `}}` or `*`"
            ));
        }
        Ok(AlertaPrefix(trimmed.to_string()))
    }
}

impl From<AlertaPrefix> for String {
    fn from(prefix: AlertaPrefix) -> String {
        prefix.0
    }
}

/// `router` with the Alerta routes nested under `prefix`. They are not in
/// `openapi.json`, whose paths are fixed; docs/integrations.md documents them.
pub fn nested(router: Router<AppState>, prefix: &AlertaPrefix) -> Router<AppState> {
    let alerta = Router::new()
        .route("/config", get(config))
        .route("/alert", post(post_alert))
        .route("/heartbeat", post(post_heartbeat))
        .fallback(not_found);
    router.nest(prefix.as_str(), alerta)
}

/// An error in Alerta's shape, which its clients read.
pub struct AlertaError(ApiError);

impl From<ApiError> for AlertaError {
    fn from(error: ApiError) -> AlertaError {
        AlertaError(error)
    }
}

impl From<tellify_store::StoreError> for AlertaError {
    fn from(error: tellify_store::StoreError) -> AlertaError {
        AlertaError(error.into())
    }
}

impl From<crate::ingest::StoreEventsError> for AlertaError {
    fn from(error: crate::ingest::StoreEventsError) -> AlertaError {
        AlertaError(error.into())
    }
}

impl IntoResponse for AlertaError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        let body = json!({
            "status": "error",
            "message": self.0.detail,
            "code": status.as_u16(),
            "errors": self.0.errors,
        });
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.0.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Key realm=\"tellify\""),
            );
        }
        response
    }
}

type AlertaResult<T> = Result<T, AlertaError>;

/// The caller, from `Authorization: Key <token>` (how Alerta's clients send an API key)
/// or `Authorization: Bearer <token>`. Any scope passes, `ingest` included: use it only on
/// routes that ingest (`/alert`, `/heartbeat`; see `api::INGEST_ROUTES`).
pub struct AlertaAuth(Principal);

impl FromRequestParts<AppState> for AlertaAuth {
    type Rejection = AlertaError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header_value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Key <token>` header"))?;
        let (scheme, secret) = header_value.split_once(' ').ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Key <token>`")
        })?;
        if !scheme.eq_ignore_ascii_case("key") && !scheme.eq_ignore_ascii_case("bearer") {
            return Err(
                ApiError::unauthorized("the Authorization header must be `Key <token>`").into(),
            );
        }
        let principal = super::authenticate(parts, state, secret.trim()).await?;
        Ok(AlertaAuth(principal))
    }
}

impl AlertaAuth {
    fn require(&self, scope: Scope) -> AlertaResult<&Principal> {
        if self.0.has(scope) {
            return Ok(&self.0);
        }
        Err(ApiError::forbidden(format!(
            "this token has the `{}` scope; this needs `{}`",
            self.0.scope.as_str(),
            scope.as_str()
        ))
        .into())
    }
}

/// `GET {prefix}/config`: what the `alerta` CLI fetches, unauthenticated, before every
/// command (it stops if this fails). It holds nothing secret: Alerta's alarm model and
/// that a key is required.
async fn config() -> Json<Value> {
    let mut severities = Map::new();
    for severity in AlertaSeverity::ALL {
        severities.insert(severity.as_str().to_string(), json!(severity.code()));
    }
    Json(json!({
        "auth_required": true,
        "provider": "basic",
        "customer_views": false,
        "signup_enabled": false,
        "alarm_model": {
            "name": "Alerta (tellify)",
            "severity": severities,
            "defaults": {
                "status": "open",
                "normal_severity": "normal",
                "previous_severity": "indeterminate",
            },
        },
    }))
}

async fn not_found() -> AlertaError {
    AlertaError(ApiError::not_found("resource"))
}

/// A posted alert, checked; what the event and the answer are made of.
struct PostedAlert {
    incoming: Incoming,
    service: Vec<String>,
    tags: Vec<String>,
    correlate_given: Vec<String>,
    attributes: Map<String, Value>,
    group: Option<String>,
    value: Option<String>,
    text: Option<String>,
    origin: Option<String>,
    alert_type: Option<String>,
    create_time: Option<String>,
}

/// `POST {prefix}/alert`: stores the alert as an `alerta` event, durably, then answers
/// as Alerta does, with the alert after Alerta's duplicate and correlation rules.
async fn post_alert(
    State(state): State<AppState>,
    auth: AlertaAuth,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> AlertaResult<Json<Value>> {
    let principal = auth.require(Scope::Ingest)?;
    let body = body.map_err(|rejection| {
        ApiError::new(rejection.status(), "Bad Request", rejection.body_text())
    })?;
    let mut posted = parse_alert(&body)?;
    // Alerts are the poster's own: only their later posts continue them.
    posted.incoming.owner = Some(principal.user.name.clone());
    // One alert at a time, so two copies of the same alert sent at once cannot both
    // read the same predecessor and answer the same duplicateCount. The lock is held
    // across the lookup and the durable append; the CLI sends one alert per call.
    let _serial = SERIAL.lock().await;
    let now = state.clock.now();
    let previous = find_previous(&state, &posted.incoming, now).await?;
    let new_id = tellify_model::new_id();
    let (alert, _) = receive(previous.as_ref(), &posted.incoming, &new_id, now);
    let mut input = posted_to_event(&posted, &alert);
    let check = state.event_types.check(state.settings.ingest.strict_types);
    check_event(&mut input, &state.settings.limits, &check)?;
    let appended = store_events(&state, vec![input], &principal.user.name).await?;
    let event_id = appended
        .first()
        .map(|stored| stored.id.clone())
        .unwrap_or_default();
    let answer = alert_json(&posted, &alert, &event_id, now);
    Ok(Json(
        json!({"status": "ok", "id": alert.id, "alert": answer}),
    ))
}

/// Serialises alert posts; see [`post_alert`].
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The newest alert `incoming` continues (same environment and resource, and the same
/// event or one it correlates with), from the events of the last [`LOOKBACK`].
async fn find_previous(
    state: &AppState,
    incoming: &Incoming,
    now: Timestamp,
) -> AlertaResult<Option<AlertaAlert>> {
    let mut before = None;
    let mut scanned = 0;
    loop {
        let rows = state
            .store
            .query_events(EventQuery {
                since: Some(now - LOOKBACK),
                until: None,
                before_seq: before,
                limit: 1000,
            })
            .await?;
        let exhausted = rows.len() < 1000;
        for event in rows {
            scanned += 1;
            before = Some(event.seq);
            let Some(alert) = AlertaAlert::from_event(&event.event) else {
                continue;
            };
            if alert.continued_by(incoming) {
                return Ok(Some(alert));
            }
        }
        if exhausted || scanned >= MAX_SCAN {
            return Ok(None);
        }
    }
}

/// Checks the envelope rules, limits and a registered `alerta` type's schema, as
/// `POST /api/v1/events` does.
fn check_event(
    input: &mut EventInput,
    limits: &tellify_model::Limits,
    check: &dyn EventCheck,
) -> AlertaResult<()> {
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
    Err(ApiError::bad_request(summary.join("; ")).into())
}

/// Reads a posted alert, reporting every problem at once.
fn parse_alert(body: &[u8]) -> AlertaResult<PostedAlert> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("invalid JSON: {error}")))?;
    let Value::Object(alert) = value else {
        return Err(ApiError::bad_request("the body must be a JSON object").into());
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
    let attributes = match alert.get("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(attributes)) => attributes.clone(),
        Some(_) => {
            problems.push("attributes: must be a JSON object".to_string());
            Map::new()
        }
    };
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
        return Err(ApiError::bad_request(problems.join("; ")).into());
    };
    Ok(PostedAlert {
        incoming: Incoming {
            // Set from the caller's token by `post_alert`.
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

fn required_text(
    alert: &Map<String, Value>,
    name: &str,
    problems: &mut Vec<String>,
) -> Option<String> {
    let found = optional_text(alert, name, problems);
    if found.is_none() && !problems.iter().any(|p| p.starts_with(name)) {
        problems.push(format!("{name}: is required"));
    }
    found
}

/// A string field; `null`, absent and empty all mean "not given".
fn optional_text(
    alert: &Map<String, Value>,
    name: &str,
    problems: &mut Vec<String>,
) -> Option<String> {
    match alert.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.is_empty() => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            problems.push(format!("{name}: must be a string"));
            None
        }
    }
}

fn text_list(alert: &Map<String, Value>, name: &str, problems: &mut Vec<String>) -> Vec<String> {
    match alert.get(name) {
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

/// The event stored for a posted alert: Alerta's fields as top-level fields, the
/// severity mapped to tellify's, and the computed state (see `AlertaAlert::write_state`).
fn posted_to_event(posted: &PostedAlert, alert: &AlertaAlert) -> EventInput {
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

/// Alerta's time format, which its CLI parses strictly: `2026-11-23T09:00:00.000Z`.
fn alerta_time(time: Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The `alert` of the answer, in Alerta's shape.
fn alert_json(posted: &PostedAlert, alert: &AlertaAlert, event_id: &str, now: Timestamp) -> Value {
    let trend = match alert.severity.code().cmp(&alert.previous_severity.code()) {
        std::cmp::Ordering::Less => "moreSevere",
        std::cmp::Ordering::Greater => "lessSevere",
        std::cmp::Ordering::Equal => "noChange",
    };
    let status = if alert.closed { "closed" } else { "open" };
    json!({
        "id": alert.id,
        "href": null,
        "resource": alert.resource,
        "event": alert.event,
        "environment": alert.environment,
        "severity": alert.severity.as_str(),
        "previousSeverity": alert.previous_severity.as_str(),
        "trendIndication": trend,
        "correlate": alert.correlate,
        "status": status,
        "service": posted.service,
        "group": posted.group.as_deref().unwrap_or("Misc"),
        "value": posted.value.as_deref().unwrap_or("n/a"),
        "text": posted.text.as_deref().unwrap_or(""),
        "tags": posted.tags,
        "attributes": posted.attributes,
        "origin": posted.origin,
        "type": posted.alert_type.as_deref().unwrap_or("exceptionAlert"),
        "createTime": posted.create_time.clone().unwrap_or_else(|| alerta_time(now)),
        "timeout": alert.timeout_seconds,
        "rawData": null,
        "customer": null,
        "duplicateCount": alert.duplicate_count,
        "repeat": alert.repeat,
        "receiveTime": alerta_time(now),
        "lastReceiveId": event_id,
        "lastReceiveTime": alerta_time(now),
        "history": [],
    })
}

/// `POST {prefix}/heartbeat`: stores an `alerta.heartbeat` event, so an `absence`
/// subscription notices when an origin stops sending.
async fn post_heartbeat(
    State(state): State<AppState>,
    auth: AlertaAuth,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> AlertaResult<Json<Value>> {
    let principal = auth.require(Scope::Ingest)?;
    let body = body.map_err(|rejection| {
        ApiError::new(rejection.status(), "Bad Request", rejection.body_text())
    })?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("invalid JSON: {error}")))?;
    let Value::Object(heartbeat) = value else {
        return Err(ApiError::bad_request("the body must be a JSON object").into());
    };
    let mut problems = Vec::new();
    let origin = required_text(&heartbeat, "origin", &mut problems);
    let tags = text_list(&heartbeat, "tags", &mut problems);
    let attributes = match heartbeat.get("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(attributes)) => attributes.clone(),
        Some(_) => {
            problems.push("attributes: must be a JSON object".to_string());
            Map::new()
        }
    };
    let timeout = match heartbeat.get("timeout") {
        None | Some(Value::Null) => Some(DEFAULT_TIMEOUT_SECONDS),
        Some(value) => value.as_u64(),
    };
    if timeout.is_none() {
        problems.push("timeout: must be a whole number of seconds, 0 or more".to_string());
    }
    let (Some(origin), Some(timeout), true) = (origin, timeout, problems.is_empty()) else {
        return Err(ApiError::bad_request(problems.join("; ")).into());
    };
    let mut fields = Fields::new();
    fields.insert("origin".into(), json!(origin));
    fields.insert("tags".into(), json!(tags));
    fields.insert("attributes".into(), Value::Object(attributes.clone()));
    fields.insert("timeout".into(), json!(timeout));
    let mut input = EventInput {
        event_type: Some(HEARTBEAT_TYPE.to_string()),
        severity: Some(Severity::Info),
        message: Some(format!("heartbeat from {origin}")),
        fields,
        ..Default::default()
    };
    let check = state.event_types.check(state.settings.ingest.strict_types);
    check_event(&mut input, &state.settings.limits, &check)?;
    let appended = store_events(&state, vec![input], &principal.user.name).await?;
    let id = appended
        .first()
        .map(|stored| stored.id.clone())
        .unwrap_or_default();
    let now = alerta_time(state.clock.now());
    let create_time = heartbeat
        .get("createTime")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| now.clone());
    Ok(Json(json!({
        "status": "ok",
        "id": id,
        "heartbeat": {
            "id": id,
            "href": null,
            "origin": origin,
            "tags": tags,
            "attributes": attributes,
            "type": "Heartbeat",
            "createTime": create_time,
            "timeout": timeout,
            "maxLatency": 2000,
            "receiveTime": now,
            "status": "ok",
            "customer": null,
        },
    })))
}

/// The pure steps of `POST {prefix}/alert` in the order [`post_alert`] takes them, with
/// `previous` standing in for the stored alert it continues: read the body, apply
/// Alerta's rules, build the event and check it, and build the answer's `alert`. For the
/// fuzz targets (`fuzz/`), which cannot reach a private function.
#[doc(hidden)]
pub fn post_alert_offline(
    body: &[u8],
    previous: Option<&AlertaAlert>,
    event_id: &str,
    now: Timestamp,
    limits: &tellify_model::Limits,
) -> Result<(EventInput, Value), AlertaError> {
    let posted = parse_alert(body)?;
    let (alert, _) = receive(previous, &posted.incoming, event_id, now);
    let mut input = posted_to_event(&posted, &alert);
    check_event(&mut input, limits, &crate::ingest::NoCheck)?;
    let answer = alert_json(&posted, &alert, event_id, now);
    Ok((input, answer))
}
