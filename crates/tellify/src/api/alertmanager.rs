//! The Prometheus Alertmanager API v2, so a Prometheus server can name tellify as its
//! Alertmanager, `amtool` works against it and dashboards that read Alertmanager's API
//! (karma, Grafana's Alertmanager data source) list tellify's alerts: `/api/v2/alerts`,
//! `/api/v2/alerts/groups`, `/api/v2/receivers`, `/api/v2/status`, `/api/v2/silences` and
//! `/api/v2/silence/{id}`, authenticated with tellify tokens sent as `Authorization:
//! Bearer`.
//!
//! Nothing here has tables of its own, and only routing, extraction and answers live
//! here. A posted alert becomes an event of type `alertmanager` through
//! `ingest::alertmanager`, so it is searchable and subscriptions of kind `alertmanager`
//! turn it into tellify alerts. `GET /api/v2/alerts` and `/alerts/groups` read the newest
//! copy of each alert back from the event log with one keyed store lookup. Silences are
//! the caller's tellify silences whose filter is the canonical CEL form of Alertmanager
//! matchers (`tellify_engine::matchers`).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use tellify_engine::filter::{EventContext, Filter};
use tellify_engine::handlers::alertmanager::{labels_of, EVENT_TYPE, META_FIELD};
use tellify_engine::matchers::{cel_to_matchers, matchers_to_cel, parse_matcher_list, Matcher};
use tellify_model::{EventInput, Fields, StoredEvent};
use tellify_store::{KeyedEventQuery, Silence};

use super::{ApiError, ApiResult, AppState, Auth};
use crate::auth::{Principal, Scope};
use crate::ingest::alertmanager::alerts_to_events;
use crate::ingest::store_events;

/// Alertmanager's default: an alert sent without `endsAt` counts as resolved this long
/// after its last copy.
const RESOLVE_TIMEOUT: SignedDuration = SignedDuration::from_secs(300);
/// How far back `GET /api/v2/alerts` looks for alerts. Prometheus re-sends firing alerts
/// every minute, so an alert whose newest copy is older than this has long ended.
const ALERT_WINDOW: SignedDuration = SignedDuration::from_secs(3600);
/// Most alerts `GET /api/v2/alerts` reads back; bounds its cost under heavy ingest.
const MAX_ALERTS: usize = 10_000;
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

/// `GET /api/v2/alerts?active=&silenced=&inhibited=&unprocessed=&filter=&receiver=`: the
/// alerts still firing, newest copy of each, in Alertmanager's `gettableAlert` shape.
pub async fn list_alerts(
    State(state): State<AppState>,
    auth: Auth,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Vec<Value>>> {
    let principal = auth.require(Scope::User)?;
    let query = AlertQuery::parse(raw.as_deref())?;
    let alerts = shown_alerts(&state, principal, &query).await?;
    Ok(Json(
        alerts
            .iter()
            .map(|(alert, silenced_by)| alert.to_json(silenced_by))
            .collect(),
    ))
}

/// `GET /api/v2/alerts/groups` (same query as `/alerts`): the alerts of `/alerts` in
/// Alertmanager's `alertGroups` shape, grouped by `alertname` (an alert without one is in
/// the group with no labels), all for the one receiver; groups in label order.
pub async fn list_alert_groups(
    State(state): State<AppState>,
    auth: Auth,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Vec<Value>>> {
    let principal = auth.require(Scope::User)?;
    let query = AlertQuery::parse(raw.as_deref())?;
    let alerts = shown_alerts(&state, principal, &query).await?;
    let mut groups: BTreeMap<Option<String>, Vec<Value>> = BTreeMap::new();
    for (alert, silenced_by) in &alerts {
        let name = alert
            .labels
            .get(GROUP_BY)
            .and_then(Value::as_str)
            .map(str::to_string);
        groups
            .entry(name)
            .or_default()
            .push(alert.to_json(silenced_by));
    }
    let groups = groups
        .into_iter()
        .map(|(name, alerts)| {
            let labels = match name {
                Some(name) => json!({ GROUP_BY: name }),
                None => json!({}),
            };
            json!({"labels": labels, "receiver": {"name": RECEIVER}, "alerts": alerts})
        })
        .collect();
    Ok(Json(groups))
}

/// The label `/api/v2/alerts/groups` groups by, Alertmanager's usual `group_by`.
const GROUP_BY: &str = "alertname";

/// `GET /api/v2/receivers`: the one receiver tellify reports.
pub async fn list_receivers(auth: Auth) -> ApiResult<Json<Vec<Value>>> {
    auth.require(Scope::User)?;
    Ok(Json(vec![json!({ "name": RECEIVER })]))
}

/// The alerts a query shows, each with the ids of the caller's silences that silence it.
async fn shown_alerts(
    state: &AppState,
    principal: &Principal,
    query: &AlertQuery,
) -> ApiResult<Vec<(AmAlert, Vec<String>)>> {
    let now = state.clock.now();
    let silences = active_silences(state, &principal.user.id, now).await?;
    let newest = newest_alerts(state, now).await?;
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
        let silenced_by: Vec<String> = silences
            .iter()
            .filter(|(_, filter)| filter.matches(&context))
            .map(|(id, _)| id.clone())
            .collect();
        let shown = if silenced_by.is_empty() {
            query.active
        } else {
            query.silenced
        };
        if shown {
            alerts.push((alert, silenced_by));
        }
    }
    Ok(alerts)
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

/// The newest `alertmanager` event of each fingerprint within [`ALERT_WINDOW`], newest
/// first.
async fn newest_alerts(state: &AppState, now: Timestamp) -> ApiResult<Vec<StoredEvent>> {
    let newest = state
        .store
        .keyed_events(KeyedEventQuery {
            event_type: EVENT_TYPE.to_string(),
            producer: None,
            since: now - ALERT_WINDOW,
            equal: Vec::new(),
            names: None,
            newest_per: Some(format!("{META_FIELD}.fingerprint")),
            limit: MAX_ALERTS,
        })
        .await?;
    Ok(newest)
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

    fn to_json(&self, silenced_by: &[String]) -> Value {
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
         route:\n  receiver: {RECEIVER}\n  group_by: [{GROUP_BY}]\nreceivers:\n- name: {RECEIVER}\n",
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

/// The query string as name-value pairs in order (a name may repeat).
pub(super) fn query_pairs(raw: Option<&str>) -> ApiResult<Vec<(String, String)>> {
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

    fn now() -> Timestamp {
        "2026-11-23T09:00:00Z".parse().unwrap()
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
