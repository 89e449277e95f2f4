//! Alerta's API, so the `alerta` CLI and Alerta integrations can send to tellify and
//! work its alerts, under `alerta.prefix` (default `/alerta/api`):
//! `POST {prefix}/alert`, `POST {prefix}/heartbeat`, `GET {prefix}/alerts` (`alerta
//! query`) and `/alerts/count`, `PUT {prefix}/alert/{id}/action` (`alerta ack|shelve|unshelve|close`),
//! `DELETE {prefix}/alert/{id}` (`alerta delete`) and the public `GET {prefix}/config` the
//! CLI reads before every command. Callers authenticate with tellify tokens through the
//! API's one extractor ([`super::Auth`]), which also takes Alerta's spelling,
//! `Authorization: Key <token>`.
//!
//! Nothing here has tables of its own, and only routing, extraction and answers live
//! here: a posted alert becomes an event through `ingest::alerta`, and subscriptions of
//! kind `alerta` turn such events into tellify alerts. Those alerts are what `GET /alerts`
//! lists and what the actions act on, with tellify's ownership rules (404 for what the
//! caller may not see). Errors come back in Alerta's shape (`{"status": "error",
//! "message": ...}`) because the CLI ignores anything else and would report success.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tellify_engine::alerts::{Action, Alert, AlertState};
use tellify_engine::handlers::alerta::{
    receive, AlertaAlert, AlertaSeverity, DUPLICATE_COUNT_FIELD, ID_FIELD, PREVIOUS_SEVERITY_FIELD,
    SEVERITY_FIELD,
};
use tellify_model::EventInput;
use tellify_store::{AlertQuery, ClearedFilter};

use super::{ApiError, AppState, Auth};
use crate::auth::{Principal, Scope};
use crate::ingest::alerta::{
    check_event, parse_alert, parse_heartbeat, posted_to_event, receive_alert, receive_heartbeat,
    AlertaIngestError, PostedAlert,
};

/// The routes under the prefix that an `ingest` token may call (see
/// [`super::INGEST_ROUTES`]): they only send.
pub const INGEST_PATHS: [&str; 2] = ["/alert", "/heartbeat"];
/// Most alerts `GET {prefix}/alerts` answers with, and looks through to resolve an id.
const MAX_ALERTS: usize = 1000;
/// How long `alerta shelve` shelves when it names no timeout: the CLI's own default.
const DEFAULT_SHELVE_SECONDS: u64 = 7200;

/// `router` with the Alerta routes nested under `prefix`. They are not in
/// `openapi.json`, whose paths are fixed; docs/integrations.md documents them.
pub fn nested(router: Router<AppState>, prefix: &crate::config::AlertaPrefix) -> Router<AppState> {
    let alerta = Router::new()
        .route("/config", get(config))
        .route("/alert", post(post_alert))
        .route("/heartbeat", post(post_heartbeat))
        .route("/alerts", get(list_alerts))
        .route("/alerts/count", get(count_alerts))
        .route("/alert/{id}/action", put(alert_action))
        .route("/alert/{id}", axum::routing::delete(delete_alert))
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

impl From<AlertaIngestError> for AlertaError {
    fn from(error: AlertaIngestError) -> AlertaError {
        match error {
            AlertaIngestError::Invalid(message) => AlertaError(ApiError::bad_request(message)),
            AlertaIngestError::Store(error) => AlertaError(error.into()),
        }
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

/// The caller, through the API's one extractor ([`Auth`]: `Bearer` or Alerta's `Key`),
/// with its errors in Alerta's shape.
pub struct AlertaAuth(Auth);

impl FromRequestParts<AppState> for AlertaAuth {
    type Rejection = AlertaError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(AlertaAuth(Auth::from_request_parts(parts, state).await?))
    }
}

impl AlertaAuth {
    fn require(&self, scope: Scope) -> AlertaResult<&Principal> {
        Ok(self.0.require(scope)?)
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

/// `POST {prefix}/alert`: stores the alert as an `alerta` event, durably, then answers
/// as Alerta does, with the alert after Alerta's duplicate and correlation rules.
async fn post_alert(
    State(state): State<AppState>,
    auth: AlertaAuth,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> AlertaResult<Json<Value>> {
    let principal = auth.require(Scope::Ingest)?;
    let body = read_body(body)?;
    let posted = parse_alert(&body)
        .inspect_err(|_| crate::ingest::count_rejected())
        .map_err(ApiError::bad_request)?;
    let received = receive_alert(&state, posted.clone(), &principal.user.name).await?;
    let answer = alert_json(
        &posted,
        &received.alert,
        &received.event_id,
        state.clock.now(),
    );
    Ok(Json(
        json!({"status": "ok", "id": received.alert.id, "alert": answer}),
    ))
}

fn read_body(body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> AlertaResult<Bytes> {
    body.map_err(|rejection| {
        ApiError::new(rejection.status(), "Bad Request", rejection.body_text()).into()
    })
}

/// Alerta's time format, which its CLI parses strictly: `2026-11-23T09:00:00.000Z`.
fn alerta_time(time: Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The `alert` of the answer, in Alerta's shape.
fn alert_json(posted: &PostedAlert, alert: &AlertaAlert, event_id: &str, now: Timestamp) -> Value {
    let trend = trend(alert.severity, alert.previous_severity);
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
    let body = read_body(body)?;
    let heartbeat = parse_heartbeat(&body)
        .inspect_err(|_| crate::ingest::count_rejected())
        .map_err(ApiError::bad_request)?;
    let id = receive_heartbeat(&state, &heartbeat, &principal.user.name).await?;
    let now = alerta_time(state.clock.now());
    let create_time = heartbeat.create_time.clone().unwrap_or_else(|| now.clone());
    Ok(Json(json!({
        "status": "ok",
        "id": id,
        "heartbeat": {
            "id": id,
            "href": null,
            "origin": heartbeat.origin,
            "tags": heartbeat.tags,
            "attributes": heartbeat.attributes,
            "type": "Heartbeat",
            "createTime": create_time,
            "timeout": heartbeat.timeout,
            "maxLatency": 2000,
            "receiveTime": now,
            "status": "ok",
            "customer": null,
        },
    })))
}

// ---- reading and working alerts ----

/// What `GET {prefix}/alerts` may filter on (`alerta query -f name=value`); several values
/// of one name are alternatives, as in Alerta.
const FILTERS: [&str; 8] = [
    "id",
    "resource",
    "event",
    "environment",
    "severity",
    "status",
    "service",
    "group",
];
/// Parameters the CLI sends that change only paging and presentation, which tellify
/// answers in one page.
const IGNORED: [&str; 7] = [
    "page",
    "page-size",
    "sort-by",
    "reverse",
    "show-raw-data",
    "show-history",
    "from-date",
];

/// `GET {prefix}/alerts`: the tellify alerts of kind `alerta` the caller may see and has
/// not cleared, in Alerta's shape, with each alert's `duplicateCount` and
/// `previousSeverity` as its last post answered them.
async fn list_alerts(
    State(state): State<AppState>,
    auth: AlertaAuth,
    RawQuery(raw): RawQuery,
) -> AlertaResult<Json<Value>> {
    let principal = auth.require(Scope::User)?;
    let now = state.clock.now();
    let alerts = selected_alerts(&state, principal, raw.as_deref(), now).await?;
    let mut answer = counts(&alerts);
    answer["alerts"] = json!(alerts);
    answer["page"] = json!(1);
    answer["pageSize"] = json!(MAX_ALERTS);
    answer["pages"] = json!(1);
    answer["more"] = json!(false);
    answer["lastTime"] = json!(alerta_time(now));
    answer["autoRefresh"] = json!(true);
    Ok(Json(answer))
}

/// `GET {prefix}/alerts/count` (same filters as `/alerts`): what the CLI asks before
/// acting on the alerts a filter selects (`alerta ack -f resource=web01`).
async fn count_alerts(
    State(state): State<AppState>,
    auth: AlertaAuth,
    RawQuery(raw): RawQuery,
) -> AlertaResult<Json<Value>> {
    let principal = auth.require(Scope::User)?;
    let now = state.clock.now();
    let alerts = selected_alerts(&state, principal, raw.as_deref(), now).await?;
    Ok(Json(counts(&alerts)))
}

/// The caller's `alerta` alerts the query's filters select, in Alerta's shape.
async fn selected_alerts(
    state: &AppState,
    principal: &Principal,
    raw: Option<&str>,
    now: Timestamp,
) -> AlertaResult<Vec<Value>> {
    let filters = parse_filters(raw)?;
    let mut alerts = Vec::new();
    for alert in visible_alerta_alerts(state, principal).await? {
        let alert = alert.at(now);
        let shaped = listed_alert_json(&alert, now);
        let selected = filters.iter().all(|(name, values)| {
            values
                .iter()
                .any(|value| filter_matches(&alert, &shaped, name, value))
        });
        if selected {
            alerts.push(shaped);
        }
    }
    Ok(alerts)
}

/// `{"status", "total", "severityCounts", "statusCounts"}` of shaped alerts.
fn counts(alerts: &[Value]) -> Value {
    let mut severity_counts = Map::new();
    let mut status_counts = Map::new();
    for alert in alerts {
        for (counts, key) in [
            (&mut severity_counts, "severity"),
            (&mut status_counts, "status"),
        ] {
            let name = alert[key].as_str().unwrap_or("unknown").to_string();
            let count = counts.get(&name).and_then(Value::as_u64).unwrap_or(0);
            counts.insert(name, json!(count + 1));
        }
    }
    json!({
        "status": "ok",
        "total": alerts.len(),
        "severityCounts": severity_counts,
        "statusCounts": status_counts,
    })
}

/// The query's filters by name; `q` (Alerta's query language) and unknown names are
/// refused with what is accepted.
fn parse_filters(raw: Option<&str>) -> AlertaResult<Vec<(String, Vec<String>)>> {
    let mut filters: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in super::alertmanager::query_pairs(raw)? {
        if IGNORED.contains(&name.as_str()) {
            continue;
        }
        if name == "q" {
            return Err(ApiError::bad_request(
                "`q`: Alerta's query language is not supported; filter with \
                 name=value (alerta query -f resource=web01)",
            )
            .into());
        }
        if !FILTERS.contains(&name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "`{name}`: not a filter of this API; filter on one of {}",
                FILTERS.join(", ")
            ))
            .into());
        }
        match filters.iter_mut().find(|(known, _)| *known == name) {
            Some((_, values)) => values.push(value),
            None => filters.push((name, vec![value])),
        }
    }
    Ok(filters)
}

fn filter_matches(alert: &Alert, shaped: &Value, name: &str, value: &str) -> bool {
    match name {
        "id" => names_alert(alert, value),
        "service" => shaped["service"]
            .as_array()
            .is_some_and(|services| services.iter().any(|s| s == value)),
        _ => shaped[name].as_str() == Some(value),
    }
}

/// Whether `id` names the alert: its tellify id, the first 8 or more characters of it (the
/// CLI's short ids), or the Alerta id that `alerta send` printed for it.
fn names_alert(alert: &Alert, id: &str) -> bool {
    alert.id == id
        || (id.len() >= 8 && alert.id.starts_with(id))
        || alert.fields.get(ID_FIELD).and_then(Value::as_str) == Some(id)
}

/// The caller's visible, uncleared alerts of kind `alerta`, newest first.
async fn visible_alerta_alerts(
    state: &AppState,
    principal: &Principal,
) -> AlertaResult<Vec<Alert>> {
    let viewer = (!principal.is_admin()).then(|| principal.viewer());
    let mut alerts = state
        .store
        .list_alerts(AlertQuery {
            viewer,
            state: None,
            subscription_id: None,
            severity: None,
            cleared: ClearedFilter::Exclude,
            before_id: None,
            limit: MAX_ALERTS,
        })
        .await?;
    alerts.retain(|alert| alert.kind == tellify_engine::handlers::alerta::EVENT_TYPE);
    Ok(alerts)
}

/// The tellify alerts `id` names for the caller (see [`names_alert`]): the alert of that
/// id, of any kind, if the caller may see it; else every visible `alerta` alert it names
/// (one Alerta alert followed by several subscriptions is several tellify alerts). None is
/// 404, as for what the caller may not see.
async fn alerts_named(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> AlertaResult<Vec<String>> {
    if let Some(alert) = state.store.alert(id).await? {
        if principal.can_see(alert.owner_user.as_deref(), alert.owner_group.as_deref()) {
            return Ok(vec![alert.id]);
        }
    }
    let named: Vec<String> = visible_alerta_alerts(state, principal)
        .await?
        .into_iter()
        .filter(|alert| names_alert(alert, id))
        .map(|alert| alert.id)
        .collect();
    if named.is_empty() {
        return Err(ApiError::not_found("alert").into());
    }
    Ok(named)
}

/// The body of `PUT {prefix}/alert/{id}/action`, as the CLI sends it.
#[derive(Deserialize)]
struct ActionRequest {
    action: String,
    #[serde(default)]
    text: Option<String>,
    /// Seconds a shelve lasts (the CLI's `--timeout`).
    #[serde(default)]
    timeout: Option<u64>,
}

/// `PUT {prefix}/alert/{id}/action`: `ack`, `shelve` (for `timeout` seconds, 2 h unless
/// given), `unshelve` and `close`, as tellify's acknowledge, shelve, unshelve and clear.
async fn alert_action(
    State(state): State<AppState>,
    auth: AlertaAuth,
    Path(id): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> AlertaResult<Json<Value>> {
    let principal = auth.require(Scope::User)?.clone();
    let body = read_body(body)?;
    let request: ActionRequest = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("invalid request body: {error}")))?;
    let now = state.clock.now();
    let text = request.text.filter(|text| !text.trim().is_empty());
    let action = match request.action.as_str() {
        "ack" => Action::Ack {
            note: text,
            expires: None,
        },
        "shelve" => {
            let seconds = request.timeout.unwrap_or(DEFAULT_SHELVE_SECONDS);
            let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
            let until = tellify_model::later(now, SignedDuration::from_secs(seconds));
            super::check_horizon("timeout", until, now).map_err(ApiError::bad_request)?;
            Action::Shelve {
                until: Some(until),
                oneshot: false,
                reason: text,
            }
        }
        "unshelve" => Action::Unshelve,
        "close" => Action::Clear,
        other => {
            return Err(ApiError::bad_request(format!(
                "action: `{other}` is not one of ack, shelve, unshelve, close"
            ))
            .into())
        }
    };
    for alert_id in alerts_named(&state, &principal, &id).await? {
        crate::services::alerts::act(&state, &principal, &alert_id, action.clone())
            .await
            .map_err(ApiError::from)?;
    }
    Ok(Json(json!({"status": "ok"})))
}

/// `DELETE {prefix}/alert/{id}`: tellify keeps no alert without its history, so deleting
/// clears the alert (as `close` does), which takes it out of `GET {prefix}/alerts`.
/// Deleting what is already cleared succeeds.
async fn delete_alert(
    State(state): State<AppState>,
    auth: AlertaAuth,
    Path(id): Path<String>,
) -> AlertaResult<Json<Value>> {
    let principal = auth.require(Scope::User)?.clone();
    for alert_id in alerts_named(&state, &principal, &id).await? {
        let cleared = crate::services::alerts::act(&state, &principal, &alert_id, Action::Clear)
            .await
            .map_err(ApiError::from);
        match cleared {
            Ok(_) => {}
            Err(error) if error.status == StatusCode::CONFLICT => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(Json(json!({"status": "ok"})))
}

/// A tellify alert of kind `alerta` in Alerta's shape. Alerta's fields come from the
/// event that last fired it; the status is tellify's: cleared or resolved is `closed`,
/// then `shelved`, `ack`, `open`.
fn listed_alert_json(alert: &Alert, now: Timestamp) -> Value {
    let fields = &alert.fields;
    let text = |name: &str| fields.get(name).and_then(Value::as_str);
    let list = |name: &str| match fields.get(name) {
        Some(Value::Array(items)) => Value::Array(items.clone()),
        _ => json!([]),
    };
    let severity = text(SEVERITY_FIELD)
        .and_then(AlertaSeverity::parse)
        .unwrap_or(AlertaSeverity::Indeterminate);
    let previous = text(PREVIOUS_SEVERITY_FIELD)
        .and_then(AlertaSeverity::parse)
        .unwrap_or(AlertaSeverity::Indeterminate);
    let duplicate_count = fields
        .get(DUPLICATE_COUNT_FIELD)
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let status = if alert.cleared || alert.state == AlertState::Resolved {
        "closed"
    } else if alert.is_shelved(now) {
        "shelved"
    } else if alert.acked {
        "ack"
    } else {
        "open"
    };
    json!({
        "id": alert.id,
        "href": null,
        "resource": text("resource").unwrap_or_default(),
        "event": text("event").unwrap_or_default(),
        "environment": text("environment").unwrap_or_default(),
        "severity": severity.as_str(),
        "previousSeverity": previous.as_str(),
        "trendIndication": trend(severity, previous),
        "correlate": list("correlate"),
        "status": status,
        "service": list("service"),
        "group": text("group").unwrap_or("Misc"),
        "value": text("value").unwrap_or("n/a"),
        "text": text("text").unwrap_or(&alert.message),
        "tags": list("tags"),
        "attributes": fields.get("attributes").cloned().unwrap_or(json!({})),
        "origin": text("origin"),
        "type": text("type").unwrap_or("exceptionAlert"),
        "createTime": alerta_time(alert.first_seen),
        "timeout": fields.get("timeout").and_then(Value::as_u64),
        "rawData": null,
        "customer": null,
        "duplicateCount": duplicate_count,
        "repeat": duplicate_count > 0,
        "receiveTime": alerta_time(alert.first_seen),
        "lastReceiveId": alert.event_id,
        "lastReceiveTime": alerta_time(alert.last_seen),
        "history": [],
    })
}

fn trend(severity: AlertaSeverity, previous: AlertaSeverity) -> &'static str {
    match severity.code().cmp(&previous.code()) {
        std::cmp::Ordering::Less => "moreSevere",
        std::cmp::Ordering::Greater => "lessSevere",
        std::cmp::Ordering::Equal => "noChange",
    }
}

/// The pure steps of `POST {prefix}/alert` in the order it takes them, with `previous`
/// standing in for the stored alert it continues: read the body, apply Alerta's rules,
/// build the event and check it, and build the answer's `alert`. For the fuzz targets
/// (`fuzz/`).
#[doc(hidden)]
pub fn post_alert_offline(
    body: &[u8],
    previous: Option<&AlertaAlert>,
    event_id: &str,
    now: Timestamp,
    limits: &tellify_model::Limits,
) -> Result<(EventInput, Value), AlertaError> {
    let posted = parse_alert(body).map_err(ApiError::bad_request)?;
    let (alert, _) = receive(previous, &posted.incoming, event_id, now);
    let mut input = posted_to_event(&posted, &alert);
    check_event(&mut input, limits, &crate::ingest::NoCheck).map_err(ApiError::bad_request)?;
    let answer = alert_json(&posted, &alert, event_id, now);
    Ok((input, answer))
}
