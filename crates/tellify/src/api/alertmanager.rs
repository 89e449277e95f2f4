//! The Prometheus Alertmanager API v2, so a Prometheus server can name tellify as its
//! Alertmanager and `amtool` works against it: `/api/v2/alerts`, `/api/v2/status`,
//! `/api/v2/silences` and `/api/v2/silence/{id}`, authenticated with tellify tokens sent
//! as `Authorization: Bearer`.
//!
//! Nothing here has tables of its own. A posted alert becomes an event of type
//! `alertmanager` (labels as top-level fields, the rest under `alertmanager`), stored
//! through the same durable path as `POST /api/v1/events`, so it is searchable and
//! subscriptions of kind `alertmanager` turn it into tellify alerts. `GET /api/v2/alerts`
//! reads the newest copy of each alert back from the event log. Silences are the
//! caller's tellify silences whose filter is the canonical CEL form of Alertmanager
//! matchers (`name == "v" && name.matches("^(?:re)$")`), which this module also parses
//! back.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Map, Value};
use tellify_engine::filter::{EventContext, Filter};
use tellify_engine::handlers::alertmanager::{fingerprint, labels_of, EVENT_TYPE, META_FIELD};
use tellify_model::{EventInput, Fields, Limits, Severity, StoredEvent};
use tellify_store::{EventQuery, Silence};

use super::{ApiError, ApiResult, AppState, Auth};
use crate::auth::Scope;
use crate::ingest::{store_events, EventCheck, IngestError, Problem};

/// Alertmanager's default: an alert sent without `endsAt` counts as resolved this long
/// after its last copy.
const RESOLVE_TIMEOUT: SignedDuration = SignedDuration::from_secs(300);
/// How far back `GET /api/v2/alerts` looks for alerts. Prometheus re-sends firing alerts
/// every minute, so an alert whose newest copy is older than this has long ended.
const ALERT_WINDOW: SignedDuration = SignedDuration::from_secs(3600);
/// Most events `GET /api/v2/alerts` reads; bounds its cost under heavy ingest.
const MAX_SCAN: usize = 200_000;
/// `0001-01-01T00:00:00Z`, Go's zero `time.Time`, in Unix seconds.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;
/// The one receiver tellify reports: who is told is decided by subscriptions and policies.
const RECEIVER: &str = "tellify";

// ---- alerts ----

/// `POST /api/v2/alerts`: stores each alert as an `alertmanager` event, durably, before
/// answering 200. A batch with any bad alert is rejected whole.
pub async fn post_alerts(
    State(state): State<AppState>,
    auth: Auth,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<StatusCode> {
    let principal = auth.require(Scope::Ingest)?;
    let body = body.map_err(|rejection| {
        ApiError::new(rejection.status(), "Bad Request", rejection.body_text())
    })?;
    let now = state.clock.now();
    let inputs = alerts_to_events(
        &body,
        now,
        state.settings.ingest.max_batch_events,
        &state.settings.limits,
        &state.event_types.check(state.settings.ingest.strict_types),
    )
    .inspect_err(|_| crate::ingest::count_rejected())?;
    if inputs.is_empty() {
        return Ok(StatusCode::OK);
    }
    store_events(&state, inputs, &principal.user.name).await?;
    Ok(StatusCode::OK)
}

/// Turns an Alertmanager `postableAlerts` body into events, reporting every problem with
/// the alert's index and the field (`[2] labels.alertname`). `check` is the event-type
/// registry's check, as for `POST /api/v1/events`, so a registered `alertmanager` type's
/// schema and `ingest.strict_types` hold here too.
pub fn alerts_to_events(
    body: &[u8],
    now: Timestamp,
    max_batch: usize,
    limits: &Limits,
    check: &dyn EventCheck,
) -> Result<Vec<EventInput>, IngestError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        IngestError::Malformed(vec![Problem {
            line: Some(error.line()),
            index: None,
            field: None,
            message: format!("invalid JSON: {error}"),
        }])
    })?;
    let Value::Array(items) = value else {
        return Err(IngestError::Invalid(vec![Problem {
            line: None,
            index: None,
            field: None,
            message: "the body must be a JSON array of alerts".to_string(),
        }]));
    };
    if items.len() > max_batch {
        return Err(IngestError::TooLarge(format!(
            "{} alerts in one request, more than the limit of {max_batch} \
             (ingest.max_batch_events)",
            items.len()
        )));
    }
    let mut problems = Vec::new();
    let mut events = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let mut fail = |field: &str, message: String| {
            problems.push(Problem {
                line: None,
                index: Some(index),
                field: (!field.is_empty()).then(|| field.to_string()),
                message,
            })
        };
        let Some(mut event) = alert_to_event(item, now, &mut fail) else {
            continue;
        };
        let mut found = event.validate(limits).err().unwrap_or_default();
        found.extend(check.check(&mut event));
        if !found.is_empty() {
            for problem in found {
                fail(&wire_path(&problem.field), problem.message);
            }
            continue;
        }
        events.push(event);
    }
    if !problems.is_empty() {
        return Err(IngestError::Invalid(problems));
    }
    Ok(events)
}

/// One `postableAlert` as an event; `None` after reporting what is wrong with it.
fn alert_to_event(
    item: Value,
    now: Timestamp,
    fail: &mut impl FnMut(&str, String),
) -> Option<EventInput> {
    let Value::Object(mut alert) = item else {
        fail("", "an alert must be a JSON object".to_string());
        return None;
    };
    let mut ok = true;
    let labels = match alert.remove("labels") {
        Some(Value::Object(labels)) if !labels.is_empty() => labels,
        Some(Value::Object(_)) | None | Some(Value::Null) => {
            fail("labels", "an alert needs at least one label".to_string());
            return None;
        }
        Some(_) => {
            fail("labels", "must be an object of strings".to_string());
            return None;
        }
    };
    for (name, value) in &labels {
        if !is_label_name(name) {
            fail(
                &format!("labels.{name}"),
                "a label name must match [a-zA-Z_][a-zA-Z0-9_]*".to_string(),
            );
            ok = false;
        } else if name == META_FIELD {
            fail(
                &format!("labels.{name}"),
                format!("the label name `{META_FIELD}` is reserved by tellify"),
            );
            ok = false;
        }
        if !value.is_string() {
            fail(&format!("labels.{name}"), "must be a string".to_string());
            ok = false;
        }
    }
    let annotations = match alert.remove("annotations") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(annotations)) => {
            for (name, value) in &annotations {
                if !value.is_string() {
                    fail(
                        &format!("annotations.{name}"),
                        "must be a string".to_string(),
                    );
                    ok = false;
                }
            }
            annotations
        }
        Some(_) => {
            fail("annotations", "must be an object of strings".to_string());
            ok = false;
            Map::new()
        }
    };
    let mut time = |key: &str| -> Option<Timestamp> {
        match alert.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) if text.is_empty() => None,
            Some(Value::String(text)) => match text.parse::<Timestamp>() {
                // Go clients send their zero time (0001-01-01) for "not set".
                Ok(time) if time.as_second() <= GO_ZERO_TIME_SECONDS => None,
                Ok(time) => Some(time),
                Err(_) => {
                    fail(
                        key,
                        format!("`{text}` is not an RFC 3339 time such as 2026-11-23T18:00:00Z"),
                    );
                    ok = false;
                    None
                }
            },
            Some(_) => {
                fail(key, "must be an RFC 3339 time string".to_string());
                ok = false;
                None
            }
        }
    };
    let starts_at = time("startsAt");
    let ends_at = time("endsAt");
    let generator_url = match alert.get("generatorURL") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()).filter(|text| !text.is_empty()),
        Some(_) => {
            fail("generatorURL", "must be a string".to_string());
            ok = false;
            None
        }
    };
    if let (Some(start), Some(end)) = (starts_at, ends_at) {
        if end < start {
            fail("endsAt", "must not be before `startsAt`".to_string());
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let label = |name: &str| labels.get(name).and_then(Value::as_str);
    let annotation = |name: &str| {
        annotations
            .get(name)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
    };
    let severity = match label("severity").map(str::to_ascii_lowercase).as_deref() {
        Some("critical") => Severity::Critical,
        Some("info") => Severity::Info,
        _ => Severity::Warning,
    };
    let message = annotation("summary")
        .or_else(|| annotation("description"))
        .or_else(|| label("alertname"))
        .unwrap_or("alert")
        .to_string();
    let fingerprint = fingerprint(
        labels
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.as_str()?))),
    );
    let status = if ends_at.is_some_and(|end| end <= now) {
        "resolved"
    } else {
        "firing"
    };
    let mut meta = Map::new();
    meta.insert("status".into(), Value::String(status.into()));
    meta.insert(
        "starts_at".into(),
        Value::String(starts_at.unwrap_or(now).to_string()),
    );
    if let Some(end) = ends_at {
        meta.insert("ends_at".into(), Value::String(end.to_string()));
    }
    if let Some(url) = generator_url {
        meta.insert("generator_url".into(), Value::String(url));
    }
    meta.insert("fingerprint".into(), Value::String(fingerprint));
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    let mut fields: Fields = labels;
    fields.insert(META_FIELD.to_string(), Value::Object(meta));
    Some(EventInput {
        event_type: Some(EVENT_TYPE.to_string()),
        severity: Some(severity),
        message: Some(message),
        fields,
        ..Default::default()
    })
}

/// The path of an event problem in terms of the posted alert.
fn wire_path(event_path: &str) -> String {
    let meta = format!("fields.{META_FIELD}");
    if let Some(rest) = event_path.strip_prefix(&meta) {
        return match rest.trim_start_matches('.') {
            "" => "labels".to_string(),
            "generator_url" => "generatorURL".to_string(),
            other => other.to_string(),
        };
    }
    match event_path {
        "fields" => "labels".to_string(),
        "message" => "annotations".to_string(),
        other => match other.strip_prefix("fields.") {
            Some(label) => format!("labels.{label}"),
            None => other.to_string(),
        },
    }
}

/// `GET /api/v2/alerts?active=&silenced=&inhibited=&unprocessed=&filter=&receiver=`: the
/// alerts still firing, newest copy of each, in Alertmanager's `gettableAlert` shape.
pub async fn list_alerts(
    State(state): State<AppState>,
    auth: Auth,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Vec<Value>>> {
    let principal = auth.require(Scope::User)?;
    let query = AlertQuery::parse(raw.as_deref())?;
    let now = state.clock.now();
    let silences = active_silences(&state, &principal.user.id, now).await?;
    let newest = newest_alerts(&state, now).await?;
    let mut alerts = Vec::new();
    for event in newest {
        let Some(alert) = AmAlert::from_event(&event) else {
            continue;
        };
        if alert.has_ended(now) {
            continue;
        }
        let labels_event = labels_as_event(&alert.labels);
        let context = EventContext::new(&labels_event);
        if !query.matchers.iter().all(|filter| filter.matches(&context)) {
            continue;
        }
        let silenced_by: Vec<&str> = silences
            .iter()
            .filter(|(_, filter)| filter.matches(&context))
            .map(|(id, _)| id.as_str())
            .collect();
        let shown = if silenced_by.is_empty() {
            query.active
        } else {
            query.silenced
        };
        if !shown {
            continue;
        }
        alerts.push(alert.to_json(&silenced_by));
    }
    Ok(Json(alerts))
}

/// The query of `GET /api/v2/alerts`, read by hand because `filter` repeats.
struct AlertQuery {
    active: bool,
    silenced: bool,
    matchers: Vec<Filter>,
}

impl AlertQuery {
    fn parse(raw: Option<&str>) -> ApiResult<AlertQuery> {
        let pairs = query_pairs(raw)?;
        let mut query = AlertQuery {
            active: true,
            silenced: true,
            matchers: Vec::new(),
        };
        let mut matchers = Vec::new();
        for (key, value) in pairs {
            match key.as_str() {
                "active" => query.active = parse_bool(&key, &value)?,
                "silenced" => query.silenced = parse_bool(&key, &value)?,
                // tellify has no inhibitions and processes every alert at once.
                "inhibited" | "unprocessed" => {
                    parse_bool(&key, &value)?;
                }
                "filter" => matchers
                    .extend(parse_matcher_list(&value).map_err(|message| {
                        ApiError::bad_request(format!("`filter`: {message}"))
                    })?),
                // Every alert goes to the one receiver, whatever a receiver regex says.
                _ => {}
            }
        }
        for matcher in matchers {
            let source = matcher.to_cel();
            let filter = Filter::compile(&source)
                .map_err(|error| ApiError::bad_request(format!("`filter`: {error}")))?;
            query.matchers.push(filter);
        }
        Ok(query)
    }
}

/// The newest `alertmanager` event of each fingerprint within [`ALERT_WINDOW`].
async fn newest_alerts(state: &AppState, now: Timestamp) -> ApiResult<Vec<StoredEvent>> {
    let mut newest: Vec<StoredEvent> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut before = None;
    let mut scanned = 0;
    loop {
        let rows = state
            .store
            .query_events(EventQuery {
                since: Some(now - ALERT_WINDOW),
                until: None,
                before_seq: before,
                limit: 1000,
            })
            .await?;
        let exhausted = rows.len() < 1000;
        for event in rows {
            scanned += 1;
            before = Some(event.seq);
            if event.event_type.as_deref() != Some(EVENT_TYPE) {
                continue;
            }
            let Some(fingerprint) = event
                .fields
                .get(META_FIELD)
                .and_then(|meta| meta.get("fingerprint"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            if seen.insert(fingerprint.to_string()) {
                newest.push(event.event);
            }
        }
        if exhausted || scanned >= MAX_SCAN {
            return Ok(newest);
        }
    }
}

/// An alert as read back from its newest event.
struct AmAlert {
    labels: Fields,
    annotations: Value,
    starts_at: String,
    ends_at: Option<Timestamp>,
    updated_at: Timestamp,
    generator_url: Option<String>,
    fingerprint: String,
    resolved: bool,
}

impl AmAlert {
    fn from_event(event: &StoredEvent) -> Option<AmAlert> {
        let meta = event.fields.get(META_FIELD)?.as_object()?;
        let text = |key: &str| meta.get(key).and_then(Value::as_str).map(str::to_string);
        let labels: Fields = labels_of(event)
            .into_iter()
            .map(|(name, value)| (name.to_string(), Value::String(value.to_string())))
            .collect();
        Some(AmAlert {
            labels,
            annotations: meta.get("annotations").cloned().unwrap_or(json!({})),
            starts_at: text("starts_at").unwrap_or_else(|| event.received.to_string()),
            ends_at: text("ends_at").and_then(|end| end.parse().ok()),
            updated_at: event.received,
            generator_url: text("generator_url"),
            fingerprint: text("fingerprint")?,
            resolved: text("status").as_deref() == Some("resolved"),
        })
    }

    /// Alertmanager's rule: ended once `endsAt` passed, or for an alert sent without one,
    /// once the resolve timeout passed since its last copy.
    fn has_ended(&self, now: Timestamp) -> bool {
        self.resolved || self.effective_end() <= now
    }

    fn effective_end(&self) -> Timestamp {
        self.ends_at
            .unwrap_or_else(|| tellify_model::later(self.updated_at, RESOLVE_TIMEOUT))
    }

    fn to_json(&self, silenced_by: &[&str]) -> Value {
        let state = if silenced_by.is_empty() {
            "active"
        } else {
            "suppressed"
        };
        json!({
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at,
            "endsAt": self.effective_end().to_string(),
            "updatedAt": self.updated_at.to_string(),
            "generatorURL": self.generator_url.clone().unwrap_or_default(),
            "fingerprint": self.fingerprint,
            "receivers": [{"name": RECEIVER}],
            "status": {"state": state, "silencedBy": silenced_by, "inhibitedBy": []},
        })
    }
}

/// Labels as an event, for matching matchers and silences against them the way the
/// planner matches silences against a tellify alert's fields.
fn labels_as_event(labels: &Fields) -> StoredEvent {
    let input = EventInput {
        event_type: Some(EVENT_TYPE.to_string()),
        fields: labels.clone(),
        ..Default::default()
    };
    StoredEvent::from_input(input, None, Timestamp::UNIX_EPOCH, 0)
}

/// The caller's silences in force at `now`, compiled.
async fn active_silences(
    state: &AppState,
    user_id: &str,
    now: Timestamp,
) -> ApiResult<Vec<(String, Filter)>> {
    let mut active = Vec::new();
    for silence in state.store.list_silences(user_id).await? {
        if silence.starts > now || silence.ends <= now {
            continue;
        }
        if let Ok(filter) = Filter::compile(&silence.filter) {
            active.push((silence.id, filter));
        }
    }
    Ok(active)
}

// ---- status ----

/// `GET /api/v2/status`: enough of Alertmanager's status document for amtool and
/// dashboards: tellify is one ready node with one receiver.
pub async fn status(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require(Scope::User)?;
    let original = format!(
        "# tellify {version}: routing is done by tellify subscriptions and policies\n\
         route:\n  receiver: {RECEIVER}\nreceivers:\n- name: {RECEIVER}\n",
        version = env!("CARGO_PKG_VERSION")
    );
    Ok(Json(json!({
        "cluster": {"name": "tellify", "status": "ready", "peers": []},
        "versionInfo": {
            "version": env!("CARGO_PKG_VERSION"),
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "none (tellify)",
        },
        "config": {"original": original},
        "uptime": state.started.to_string(),
    })))
}

// ---- silences ----

/// `POST /api/v2/silences`: creates (or, with an `id`, replaces) one of the caller's
/// silences; answers `{"silenceID"}`.
pub async fn post_silence(
    State(state): State<AppState>,
    auth: Auth,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let principal = auth.require(Scope::User)?;
    let user = principal.user.clone();
    let now = state.clock.now();
    let request = parse_postable_silence(&body, now)?;
    let id = match &request.id {
        Some(id) => {
            if !state.store.delete_silence(&user.id, id).await? {
                return Err(ApiError::not_found("silence"));
            }
            id.clone()
        }
        None => tellify_model::new_id(),
    };
    let silence = Silence {
        id: id.clone(),
        user_id: user.id.clone(),
        filter: matchers_to_cel(&request.matchers),
        starts: request.starts,
        ends: request.ends,
        comment: request.comment,
        created: now,
    };
    state.store.create_silence(silence).await?;
    state.notifier.user_changed(&user.id).await?;
    Ok(Json(json!({ "silenceID": id })))
}

/// `GET /api/v2/silences?filter=`: the caller's silences that are written as matchers.
/// Silences made through `/api/v1/silences` with other CEL filters are not shown here.
pub async fn list_silences(
    State(state): State<AppState>,
    auth: Auth,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Vec<Value>>> {
    let principal = auth.require(Scope::User)?;
    let mut wanted = Vec::new();
    for (key, value) in query_pairs(raw.as_deref())? {
        if key == "filter" {
            for matcher in parse_matcher_list(&value)
                .map_err(|message| ApiError::bad_request(format!("`filter`: {message}")))?
            {
                let filter = Filter::compile(&matcher.to_cel())
                    .map_err(|error| ApiError::bad_request(format!("`filter`: {error}")))?;
                wanted.push(filter);
            }
        }
    }
    let now = state.clock.now();
    let mut items = Vec::new();
    for silence in state.store.list_silences(&principal.user.id).await? {
        let Some(matchers) = cel_to_matchers(&silence.filter) else {
            continue;
        };
        let values: Fields = matchers
            .iter()
            .map(|m| (m.name.clone(), Value::String(m.value.clone())))
            .collect();
        let event = labels_as_event(&values);
        let context = EventContext::new(&event);
        if !wanted.iter().all(|filter| filter.matches(&context)) {
            continue;
        }
        items.push(gettable_silence(
            &silence,
            &matchers,
            &principal.user.name,
            now,
        ));
    }
    Ok(Json(items))
}

/// `GET /api/v2/silence/{id}`.
pub async fn get_silence(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let principal = auth.require(Scope::User)?;
    let now = state.clock.now();
    let silence = state
        .store
        .list_silences(&principal.user.id)
        .await?
        .into_iter()
        .find(|silence| silence.id == id)
        .ok_or_else(|| ApiError::not_found("silence"))?;
    let matchers = cel_to_matchers(&silence.filter).unwrap_or_default();
    Ok(Json(gettable_silence(
        &silence,
        &matchers,
        &principal.user.name,
        now,
    )))
}

/// `DELETE /api/v2/silence/{id}` (`amtool silence expire`): the silence ends now. tellify
/// removes it rather than keeping an expired copy.
pub async fn delete_silence(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let principal = auth.require(Scope::User)?;
    if !state.store.delete_silence(&principal.user.id, &id).await? {
        return Err(ApiError::not_found("silence"));
    }
    state.notifier.user_changed(&principal.user.id).await?;
    Ok(StatusCode::OK)
}

fn gettable_silence(silence: &Silence, matchers: &[Matcher], owner: &str, now: Timestamp) -> Value {
    let state = if silence.ends <= now {
        "expired"
    } else if silence.starts > now {
        "pending"
    } else {
        "active"
    };
    let matchers: Vec<Value> = matchers
        .iter()
        .map(|m| json!({"name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal}))
        .collect();
    json!({
        "id": silence.id,
        "matchers": matchers,
        "startsAt": silence.starts.to_string(),
        "endsAt": silence.ends.to_string(),
        "updatedAt": silence.created.to_string(),
        "createdBy": owner,
        "comment": silence.comment.clone().unwrap_or_default(),
        "status": {"state": state},
    })
}

struct PostableSilence {
    id: Option<String>,
    matchers: Vec<Matcher>,
    starts: Timestamp,
    ends: Timestamp,
    comment: Option<String>,
}

/// Reads a `postableSilence`, reporting every problem with its path.
fn parse_postable_silence(body: &[u8], now: Timestamp) -> ApiResult<PostableSilence> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("invalid JSON: {error}")))?;
    let Value::Object(object) = value else {
        return Err(ApiError::unprocessable("a silence must be a JSON object"));
    };
    let mut errors: Vec<tellify_engine::ParamError> = Vec::new();
    let mut fail = |path: &str, message: String| {
        errors.push(tellify_engine::ParamError::new(path, message));
    };
    let id = match object.get("id") {
        Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
        Some(Value::String(_)) | Some(Value::Null) | None => None,
        Some(_) => {
            fail("id", "must be a string".to_string());
            None
        }
    };
    let mut matchers = Vec::new();
    match object.get("matchers") {
        Some(Value::Array(items)) if !items.is_empty() => {
            for (index, item) in items.iter().enumerate() {
                match Matcher::from_json(item) {
                    Ok(matcher) => matchers.push(matcher),
                    Err((field, message)) => fail(&format!("matchers[{index}]{field}"), message),
                }
            }
        }
        _ => fail(
            "matchers",
            "needs at least one matcher {name, value, isRegex, isEqual}".to_string(),
        ),
    }
    let mut time = |key: &str| -> Option<Timestamp> {
        match object.get(key).and_then(Value::as_str) {
            Some(text) => match text.parse::<Timestamp>() {
                Ok(time) => Some(time),
                Err(_) => {
                    fail(key, format!("`{text}` is not an RFC 3339 time"));
                    None
                }
            },
            None => {
                fail(key, "is required (an RFC 3339 time)".to_string());
                None
            }
        }
    };
    let starts = time("startsAt");
    let ends = time("endsAt");
    let comment = object
        .get("comment")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let (Some(starts), Some(ends)) = (starts, ends) {
        if ends <= starts {
            fail("endsAt", "must be after `startsAt`".to_string());
        }
        if ends <= now {
            fail("endsAt", "must be in the future".to_string());
        }
        if let Err(message) = super::check_horizon("endsAt", ends, now) {
            fail("endsAt", message);
        }
    }
    match (starts, ends) {
        (Some(starts), Some(ends)) if errors.is_empty() => Ok(PostableSilence {
            id,
            matchers,
            // A silence that starts in the past starts now, as in Alertmanager.
            starts: starts.max(now),
            ends,
            comment,
        }),
        _ => Err(ApiError::params(&errors)),
    }
}

// ---- matchers ----

/// An Alertmanager matcher: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    pub is_equal: bool,
}

impl Matcher {
    fn from_json(value: &Value) -> Result<Matcher, (String, String)> {
        let Value::Object(object) = value else {
            return Err((String::new(), "must be an object".to_string()));
        };
        let name = match object.get("name") {
            Some(Value::String(name)) => name.clone(),
            _ => return Err((".name".to_string(), "must be a string".to_string())),
        };
        if let Err(message) = check_matcher_name(&name) {
            return Err((".name".to_string(), message));
        }
        let value = match object.get("value") {
            Some(Value::String(value)) => value.clone(),
            _ => return Err((".value".to_string(), "must be a string".to_string())),
        };
        let flag = |key: &str, default: bool| match object.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(_) => Err((format!(".{key}"), "must be true or false".to_string())),
        };
        Ok(Matcher {
            name,
            value,
            is_regex: flag("isRegex", false)?,
            is_equal: flag("isEqual", true)?,
        })
    }

    /// The canonical CEL form; [`cel_to_matchers`] reads it back. Regexes are anchored,
    /// as Alertmanager anchors them.
    pub fn to_cel(&self) -> String {
        let quote = |text: &str| Value::String(text.to_string()).to_string();
        match (self.is_regex, self.is_equal) {
            (false, true) => format!("{} == {}", self.name, quote(&self.value)),
            (false, false) => format!("{} != {}", self.name, quote(&self.value)),
            (true, true) => format!(
                "{}.matches({})",
                self.name,
                quote(&format!("^(?:{})$", self.value))
            ),
            (true, false) => format!(
                "!{}.matches({})",
                self.name,
                quote(&format!("^(?:{})$", self.value))
            ),
        }
    }
}

/// Matchers joined with `&&`, the filter of a silence made through this API.
pub fn matchers_to_cel(matchers: &[Matcher]) -> String {
    let parts: Vec<String> = matchers.iter().map(Matcher::to_cel).collect();
    parts.join(" && ")
}

/// Reads back a filter written by [`matchers_to_cel`]; `None` for any other filter.
pub fn cel_to_matchers(source: &str) -> Option<Vec<Matcher>> {
    let mut rest = source.trim();
    let mut matchers = Vec::new();
    loop {
        let negated = rest.starts_with('!');
        if negated {
            rest = &rest[1..];
        }
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if !is_label_name(name) {
            return None;
        }
        rest = &rest[name_len..];
        let matcher = if let Some(after) = rest.strip_prefix(".matches(") {
            let (pattern, after) = take_string(after)?;
            rest = after.strip_prefix(')')?;
            let inner = pattern.strip_prefix("^(?:")?.strip_suffix(")$")?;
            Matcher {
                name: name.to_string(),
                value: inner.to_string(),
                is_regex: true,
                is_equal: !negated,
            }
        } else {
            if negated {
                return None;
            }
            let (is_equal, after) = if let Some(after) = rest.strip_prefix(" == ") {
                (true, after)
            } else {
                (false, rest.strip_prefix(" != ")?)
            };
            let (value, after) = take_string(after)?;
            rest = after;
            Matcher {
                name: name.to_string(),
                value,
                is_regex: false,
                is_equal,
            }
        };
        matchers.push(matcher);
        if rest.is_empty() {
            return Some(matchers);
        }
        rest = rest.strip_prefix(" && ")?;
    }
}

/// A JSON string literal at the start of `text`, and what follows it.
fn take_string(text: &str) -> Option<(String, &str)> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<String>();
    let value = stream.next()?.ok()?;
    let used = stream.byte_offset();
    Some((value, &text[used..]))
}

/// Parses amtool's matcher syntax: `name="value"`, `name!=value`, `name=~"re"`,
/// `name!~re`, several separated by commas, optionally inside `{...}`.
pub fn parse_matcher_list(text: &str) -> Result<Vec<Matcher>, String> {
    let trimmed = text.trim();
    let inner = trimmed
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or(trimmed);
    let mut matchers = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        check_matcher_name(name).map_err(|message| format!("`{text}`: {message}"))?;
        rest = rest[name_len..].trim_start();
        let (is_regex, is_equal, after) = if let Some(after) = rest.strip_prefix("=~") {
            (true, true, after)
        } else if let Some(after) = rest.strip_prefix("!~") {
            (true, false, after)
        } else if let Some(after) = rest.strip_prefix("!=") {
            (false, false, after)
        } else if let Some(after) = rest.strip_prefix('=') {
            (false, true, after)
        } else {
            return Err(format!("`{text}`: expected =, !=, =~ or !~ after `{name}`"));
        };
        rest = after.trim_start();
        let value = if rest.starts_with('"') {
            let (value, after) =
                take_string(rest).ok_or_else(|| format!("`{text}`: unterminated quoted value"))?;
            rest = after;
            value
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let value = rest[..end].trim().to_string();
            rest = &rest[end..];
            value
        };
        matchers.push(Matcher {
            name: name.to_string(),
            value,
            is_regex,
            is_equal,
        });
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("`{text}`: expected `,` between matchers"));
        }
    }
    Ok(matchers)
}

/// Words CEL reserves: a label of that name cannot be a top-level name in a filter.
const CEL_RESERVED: [&str; 21] = [
    "as",
    "break",
    "const",
    "continue",
    "else",
    "false",
    "for",
    "function",
    "if",
    "import",
    "in",
    "let",
    "loop",
    "namespace",
    "null",
    "package",
    "return",
    "true",
    "var",
    "void",
    "while",
];

fn check_matcher_name(name: &str) -> Result<(), String> {
    if !is_label_name(name) {
        return Err(format!(
            "`{name}` is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if CEL_RESERVED.contains(&name) {
        return Err(format!(
            "`{name}` is a reserved word in tellify's filter language and cannot be matched"
        ));
    }
    // In a filter, `event` is the envelope (`event.type`, ...), which hides a label of that
    // name: a matcher on it would never select anything.
    if name == "event" {
        return Err(
            "`event` names the event envelope in tellify's filter language and cannot be matched"
                .to_string(),
        );
    }
    Ok(())
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphabetic() || first == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn query_pairs(raw: Option<&str>) -> ApiResult<Vec<(String, String)>> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let uri: axum::http::Uri = format!("/?{raw}")
        .parse()
        .map_err(|_| ApiError::bad_request("invalid query string"))?;
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|query| query.0)
        .map_err(|rejection| {
            ApiError::bad_request(format!(
                "invalid query parameters: {}",
                rejection.body_text()
            ))
        })
}

fn parse_bool(name: &str, value: &str) -> ApiResult<bool> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(ApiError::bad_request(format!(
            "`{name}`: `{other}` is not true or false"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::NoCheck;

    fn now() -> Timestamp {
        "2026-11-23T09:00:00Z".parse().unwrap()
    }

    fn convert(body: &str) -> Result<Vec<EventInput>, IngestError> {
        alerts_to_events(body.as_bytes(), now(), 1000, &Limits::default(), &NoCheck)
    }

    #[test]
    fn a_prometheus_alert_becomes_an_alertmanager_event() {
        let events = convert(
            r#"[{"labels": {"alertname": "DiskFull", "severity": "critical", "instance": "cad"},
                 "annotations": {"summary": "disk /sarc is full"},
                 "startsAt": "2026-11-23T08:59:00Z", "endsAt": "2026-11-23T09:04:00Z",
                 "generatorURL": "http://prom/graph"}]"#,
        )
        .unwrap();
        let event = &events[0];
        assert_eq!(event.event_type.as_deref(), Some("alertmanager"));
        assert_eq!(event.severity, Some(Severity::Critical));
        assert_eq!(event.message.as_deref(), Some("disk /sarc is full"));
        assert_eq!(event.fields["alertname"], "DiskFull");
        let meta = &event.fields["alertmanager"];
        assert_eq!(meta["status"], "firing");
        assert_eq!(meta["ends_at"], "2026-11-23T09:04:00Z");
        assert_eq!(meta["generator_url"], "http://prom/graph");
        assert_eq!(meta["annotations"]["summary"], "disk /sarc is full");
        assert_eq!(
            meta["fingerprint"],
            fingerprint([
                ("alertname", "DiskFull"),
                ("instance", "cad"),
                ("severity", "critical")
            ])
        );
    }

    #[test]
    fn ends_at_in_the_past_means_resolved_and_defaults_apply() {
        let events = convert(
            r#"[{"labels": {"alertname": "A"}, "endsAt": "2026-11-23T08:00:00Z"},
                {"labels": {"alertname": "B", "severity": "page"}, "startsAt": "0001-01-01T00:00:00Z"}]"#,
        )
        .unwrap();
        assert_eq!(events[0].fields["alertmanager"]["status"], "resolved");
        assert_eq!(events[1].fields["alertmanager"]["status"], "firing");
        assert_eq!(events[1].severity, Some(Severity::Warning));
        assert_eq!(events[1].message.as_deref(), Some("B"));
        assert_eq!(
            events[1].fields["alertmanager"]["starts_at"],
            now().to_string()
        );
        assert!(events[1].fields["alertmanager"].get("ends_at").is_none());
    }

    #[test]
    fn every_problem_names_the_alert_and_field() {
        let Err(IngestError::Invalid(problems)) = convert(
            r#"[{"labels": {"alertname": "ok"}},
                {"labels": {"bad-name": "x", "n": 1}, "startsAt": "yesterday"},
                {"labels": {}},
                {"labels": {"alertmanager": "x"}, "annotations": {"summary": 3}}]"#,
        ) else {
            panic!("expected invalid")
        };
        let found: Vec<(Option<usize>, Option<&str>)> = problems
            .iter()
            .map(|p| (p.index, p.field.as_deref()))
            .collect();
        assert_eq!(
            found,
            vec![
                (Some(1), Some("labels.bad-name")),
                (Some(1), Some("labels.n")),
                (Some(1), Some("startsAt")),
                (Some(2), Some("labels")),
                (Some(3), Some("labels.alertmanager")),
                (Some(3), Some("annotations.summary")),
            ]
        );
        assert!(matches!(convert("{oops"), Err(IngestError::Malformed(_))));
        assert!(matches!(convert("{}"), Err(IngestError::Invalid(_))));
        let too_many = alerts_to_events(b"[{}, {}]", now(), 1, &Limits::default(), &NoCheck);
        assert!(matches!(too_many, Err(IngestError::TooLarge(_))));
    }

    #[test]
    fn limits_are_reported_in_terms_of_the_alert() {
        let limits = Limits {
            max_string_bytes: 8,
            ..Limits::default()
        };
        let body = r#"[{"labels": {"alertname": "a very long name"}, "annotations": {"summary": "s", "runbook": "https://long.example"}}]"#;
        let Err(IngestError::Invalid(problems)) =
            alerts_to_events(body.as_bytes(), now(), 10, &limits, &NoCheck)
        else {
            panic!("expected invalid")
        };
        let fields: Vec<&str> = problems.iter().filter_map(|p| p.field.as_deref()).collect();
        assert!(fields.contains(&"labels.alertname"), "{fields:?}");
        assert!(fields.contains(&"annotations.runbook"), "{fields:?}");
    }

    #[test]
    fn the_event_type_check_applies_and_speaks_of_the_alert() {
        struct NoDiskFull;
        impl EventCheck for NoDiskFull {
            fn check(&self, event: &mut EventInput) -> Vec<tellify_model::FieldProblem> {
                if event.fields.get("alertname").and_then(Value::as_str) == Some("DiskFull") {
                    vec![tellify_model::FieldProblem {
                        field: "fields.alertname".to_string(),
                        message: "not allowed".to_string(),
                    }]
                } else {
                    Vec::new()
                }
            }
        }
        let body = br#"[{"labels": {"alertname": "Ok"}}, {"labels": {"alertname": "DiskFull"}}]"#;
        let Err(IngestError::Invalid(problems)) =
            alerts_to_events(body, now(), 10, &Limits::default(), &NoDiskFull)
        else {
            panic!("expected invalid")
        };
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].index, Some(1));
        assert_eq!(problems[0].field.as_deref(), Some("labels.alertname"));
    }

    #[test]
    fn matchers_round_trip_through_cel() {
        let matchers = parse_matcher_list(
            r#"{alertname="Disk \"Full\"", instance!=cad, job=~"node|prom", env!~"dev.*"}"#,
        )
        .unwrap();
        assert_eq!(matchers.len(), 4);
        assert_eq!(matchers[0].value, "Disk \"Full\"");
        assert_eq!(matchers[1].value, "cad");
        assert!(!matchers[1].is_equal && !matchers[1].is_regex);
        let cel = matchers_to_cel(&matchers);
        assert_eq!(
            cel,
            r#"alertname == "Disk \"Full\"" && instance != "cad" && job.matches("^(?:node|prom)$") && !env.matches("^(?:dev.*)$")"#
        );
        assert_eq!(cel_to_matchers(&cel), Some(matchers));
        assert!(Filter::compile(&cel).is_ok());
        assert_eq!(cel_to_matchers("alertname == \"x\" || true"), None);
        assert_eq!(cel_to_matchers("severity >= 2"), None);
        assert!(parse_matcher_list("alertname").is_err());
        assert!(parse_matcher_list("namespace=\"x\"").is_err());
    }

    #[test]
    fn a_label_named_event_cannot_be_matched() {
        // Found by the `alertmanager_payload` fuzz target: `event == "x"` compares the
        // envelope, not the label, so the matcher (a silence) never selected anything.
        let error = parse_matcher_list("event=\"x\"").unwrap_err();
        assert!(error.contains("envelope"), "{error}");
        let error =
            Matcher::from_json(&serde_json::json!({"name": "event", "value": "x"})).unwrap_err();
        assert_eq!(error.0, ".name");
    }

    #[test]
    fn matcher_filters_select_labels_like_alertmanager() {
        let labels: Fields =
            serde_json::from_str(r#"{"alertname": "DiskFull", "job": "node", "env": "prod"}"#)
                .unwrap();
        let event = labels_as_event(&labels);
        let context = EventContext::new(&event);
        let check = |text: &str| {
            let matchers = parse_matcher_list(text).unwrap();
            Filter::compile(&matchers_to_cel(&matchers))
                .unwrap()
                .matches(&context)
        };
        assert!(check("alertname=DiskFull"));
        assert!(check("job=~\"no.*\",env!~\"dev\""));
        assert!(!check("job=~\"no\""), "regexes are anchored");
        assert!(!check("alertname!=DiskFull"));
    }

    #[test]
    fn silences_are_validated_with_every_problem() {
        let error = match parse_postable_silence(
            br#"{"matchers": [{"name": "bad-name", "value": "x"}, {"name": "a", "value": 1}],
                 "startsAt": "2026-11-23T10:00:00Z", "endsAt": "2026-11-23T09:30:00Z"}"#,
            now(),
        ) {
            Err(error) => error,
            Ok(_) => panic!("expected invalid"),
        };
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            error.detail.contains("matchers[0].name"),
            "{}",
            error.detail
        );
        assert!(
            error.detail.contains("matchers[1].value"),
            "{}",
            error.detail
        );
        assert!(
            error.detail.contains("endsAt: must be after"),
            "{}",
            error.detail
        );
        let ok = parse_postable_silence(
            br#"{"matchers": [{"name": "alertname", "value": "X", "isRegex": false, "isEqual": true}],
                 "startsAt": "2026-11-23T08:00:00Z", "endsAt": "2026-11-23T10:00:00Z", "comment": "c"}"#,
            now(),
        )
        .unwrap_or_else(|error| panic!("{}", error.detail));
        assert_eq!(ok.starts, now(), "a start in the past becomes now");
        assert_eq!(matchers_to_cel(&ok.matchers), "alertname == \"X\"");
    }
}
