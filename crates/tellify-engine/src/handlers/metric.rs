//! `metric`: a query against a metrics backend (Prometheus or a plain HTTP JSON engine),
//! polled at an interval and compared with warn and critical levels.
//!
//! The engine does no IO, so the polling happens in the server (`tellify::pollers`): it
//! appends each poll's outcome to the event log as a `tellify.metric` event, and this
//! handler reacts to those events like to any other. That keeps poll results durable and
//! processed exactly once, and lets several subscriptions with the same query share one
//! poll: they all compute the same [`poll_key`] and the dispatch index hands each result
//! only to them.
//!
//! Per series (Prometheus returns one per label set; the HTTP JSON engine one, with the
//! group key `""`) the handler keeps the last known level (OK, WARN, CRITICAL), whether
//! the series is UNKNOWN, and the consecutive failures. A failed poll never resolves.

use std::collections::BTreeMap;
use tellify_model::later;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tellify_model::{Fields, Severity, StoredEvent};

use super::{duration_schema, parse_params, AlertOutput, Handler, HandlerKind, Outputs};
use crate::dispatch::{DispatchHints, IndexValue};
use crate::filter::EventContext;
use crate::validation::{duration_param, ParamError, POLL_INTERVAL, REPEAT_INTERVAL};

/// The event type of poll results.
pub const RESULT_EVENT_TYPE: &str = "tellify.metric";
/// The producer poll results must come from: events of the result type sent by anyone
/// else (through the ingest API) are ignored, so nobody can fake a metric into OK.
pub const POLLER_PRODUCER: &str = "tellify-poller";
/// Consecutive failed polls after which a series is UNKNOWN, unless `unknown_after` says.
pub const DEFAULT_UNKNOWN_AFTER: u32 = 3;
/// The shortest polling interval accepted: anything faster is a load test, not alerting.
pub const MIN_INTERVAL: SignedDuration = SignedDuration::from_secs(1);

/// Which kind of metrics backend a subscription polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Backend {
    /// The Prometheus HTTP API: `GET {url}/api/v1/query?query=Q`, one series per label set.
    #[serde(rename = "prometheus")]
    Prometheus,
    /// A plain engine: `GET {url}/query?target=Q` answering `{"value": <number>}`.
    #[serde(rename = "http-json")]
    HttpJson,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Prometheus => "prometheus",
            Backend::HttpJson => "http-json",
        }
    }
}

/// What the poller needs from a `metric` subscription: where to poll, what and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollSpec {
    pub backend: Backend,
    /// The base URL, without a trailing slash.
    pub url: String,
    pub query: String,
    pub interval: SignedDuration,
    /// [`poll_key`] of the three above.
    pub key: String,
}

impl PollSpec {
    /// Reads the polling part of `metric` parameters, with every failure and its path.
    pub fn from_params(params: &Value) -> Result<PollSpec, Vec<ParamError>> {
        let (spec, _) = parse(params)?;
        Ok(spec)
    }
}

/// A stable name for (backend, url, query): the same in every process and release, since
/// it is stored in result events and matched against restarted handlers. FNV-1a (64 bit)
/// is enough: it only has to tell queries apart, not resist an adversary.
pub fn poll_key(backend: Backend, url: &str, query: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [backend.as_str(), url.trim_end_matches('/'), query] {
        for byte in part.bytes().chain(std::iter::once(0u8)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("m{hash:016x}")
}

/// The group key of a series: its labels as `name=value`, sorted by name and
/// space-separated; `""` for a series without labels.
pub fn series_key(labels: &Fields) -> String {
    let sorted: BTreeMap<&String, &Value> = labels.iter().collect();
    let parts: Vec<String> = sorted
        .into_iter()
        .map(|(name, value)| format!("{name}={}", super::scalar_text(value)))
        .collect();
    parts.join(" ")
}

pub struct MetricKind;

#[derive(Deserialize)]
struct Params {
    backend: Backend,
    url: String,
    query: String,
    interval: String,
    repeat_interval: Option<String>,
    warn: LevelParams,
    critical: LevelParams,
    unknown_after: Option<u32>,
}

#[derive(Clone, Debug, Deserialize)]
struct LevelParams {
    value: f64,
    message: String,
}

/// What a series is as far as the handler knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Ok,
    Warn,
    Critical,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Critical => "critical",
        }
    }
}

/// One series' state; saved with the handler.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Series {
    /// The level of the last successful poll (OK before the first one).
    level: Option<Level>,
    /// Too many consecutive failures: the value is not known. The level above is kept,
    /// so a later OK resolves and a later CRITICAL fires critical.
    #[serde(default)]
    unknown: bool,
    #[serde(default)]
    failures: u32,
    last_error: Option<String>,
    last_value: Option<f64>,
    /// The alert of this series is firing (this handler fired it and has not resolved it).
    #[serde(default)]
    open: bool,
    /// When the alert was last fired, for `repeat_interval`.
    last_fired: Option<Timestamp>,
    /// The newest poll result applied; older ones are ignored.
    last_poll: Option<Timestamp>,
    #[serde(default)]
    labels: Fields,
}

impl Series {
    fn level(&self) -> Level {
        self.level.unwrap_or(Level::Ok)
    }
}

struct Metric {
    spec: PollSpec,
    repeat_interval: Option<SignedDuration>,
    warn: LevelParams,
    critical: LevelParams,
    unknown_after: u32,
    series: BTreeMap<String, Series>,
}

impl HandlerKind for MetricKind {
    fn name(&self) -> &'static str {
        "metric"
    }

    fn title(&self) -> &'static str {
        "Metric query"
    }

    fn description(&self) -> &'static str {
        "Polls a query against a metrics backend (Prometheus or an HTTP JSON engine) at an \
         interval and compares each series with warn and critical levels: OK up to warn, \
         WARN up to critical, CRITICAL above. Fires on a change into WARN or CRITICAL, \
         re-fires every repeat interval while not OK, resolves on the return to OK, and \
         turns UNKNOWN after a number of consecutive failed polls; a failed poll never \
         resolves."
    }

    fn required_fields(&self) -> &'static str {
        "none: it reads the poll results the server appends (`tellify.metric` events)"
    }

    fn param_schema(&self) -> Value {
        let level = |what: &str| {
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["value", "message"],
                "properties": {
                    "value": {"type": "number", "description": format!("{what} above this value")},
                    "message": {"type": "string", "minLength": 1, "maxLength": 1024, "description": "the alert's message at this level"},
                }
            })
        };
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "required": ["backend", "url", "query", "interval", "warn", "critical"],
            "properties": {
                "backend": {"type": "string", "enum": ["prometheus", "http-json"], "description": "the kind of metrics backend"},
                "url": {"type": "string", "minLength": 1, "maxLength": 2048, "description": "base URL of the backend, e.g. http://prometheus:9090"},
                "query": {"type": "string", "minLength": 1, "maxLength": 4096, "description": "PromQL expression, or the engine's target"},
                "interval": duration_schema("how often to poll, such as 30s or 5m"),
                "repeat_interval": duration_schema("re-fire this often while not OK, such as 1h; absent: never"),
                "warn": level("WARN"),
                "critical": level("CRITICAL"),
                "unknown_after": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "consecutive failed polls before the alert turns unknown (default 3)"},
            }
        })
    }

    fn build(&self, params: &Value) -> Result<Box<dyn Handler>, Vec<ParamError>> {
        let (spec, parsed) = parse(params)?;
        let mut errors = Vec::new();
        let repeat_interval = duration_param(
            parsed.repeat_interval.as_deref(),
            "params.repeat_interval",
            REPEAT_INTERVAL,
            &mut errors,
        );
        if let Some(repeat) = repeat_interval {
            if repeat < MIN_INTERVAL {
                errors.push(ParamError::new(
                    "params.repeat_interval",
                    "must be at least 1s",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Box::new(Metric {
            spec,
            repeat_interval,
            warn: parsed.warn,
            critical: parsed.critical,
            unknown_after: parsed.unknown_after.unwrap_or(DEFAULT_UNKNOWN_AFTER),
            series: BTreeMap::new(),
        }))
    }
}

/// Schema, then every semantic check at once: the URL, the interval (and the repeat
/// interval, so a bad one is reported in the same round) and the order of the levels.
fn parse(params: &Value) -> Result<(PollSpec, Params), Vec<ParamError>> {
    let schema = MetricKind.param_schema();
    let parsed: Params = parse_params(&schema, params)?;
    let mut errors = Vec::new();
    let url = parsed.url.trim().trim_end_matches('/').to_string();
    if let Some(problem) = url_problem(&url) {
        errors.push(ParamError::new("params.url", problem));
    }
    let interval = duration_param(
        Some(&parsed.interval),
        "params.interval",
        POLL_INTERVAL,
        &mut errors,
    );
    if interval.is_some_and(|interval| interval < MIN_INTERVAL) {
        errors.push(ParamError::new("params.interval", "must be at least 1s"));
    }
    if let Some(text) = parsed.repeat_interval.as_deref() {
        if let Err(error) = REPEAT_INTERVAL.parse(text) {
            errors.push(ParamError::new("params.repeat_interval", error.to_string()));
        }
    }
    if parsed.critical.value <= parsed.warn.value {
        errors.push(ParamError::new(
            "params.critical.value",
            format!("must be greater than warn.value ({})", parsed.warn.value),
        ));
    }
    match interval {
        Some(interval) if errors.is_empty() => {
            let key = poll_key(parsed.backend, &url, &parsed.query);
            let spec = PollSpec {
                backend: parsed.backend,
                url,
                query: parsed.query.clone(),
                interval,
                key,
            };
            Ok((spec, parsed))
        }
        _ => Err(errors),
    }
}

fn url_problem(url: &str) -> Option<&'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let Some(rest) = rest else {
        return Some("must start with http:// or https://");
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Some("has no host");
    }
    if url.contains(['?', '#']) || url.chars().any(char::is_whitespace) {
        return Some("must be a base URL without query, fragment or spaces");
    }
    None
}

impl Metric {
    /// The exact boundaries of the issue: OK up to and including warn, WARN up to and
    /// including critical, CRITICAL above.
    fn level_of(&self, value: f64) -> Level {
        if value > self.critical.value {
            Level::Critical
        } else if value > self.warn.value {
            Level::Warn
        } else {
            Level::Ok
        }
    }

    fn fire_output(&self, key: &str, series: &Series, event_id: Option<String>) -> AlertOutput {
        let mut fields = series.labels.clone();
        if series.unknown {
            fields.insert("state".into(), json!("unknown"));
            fields.insert("failures".into(), json!(series.failures));
            if let Some(error) = &series.last_error {
                fields.insert("error".into(), json!(error));
            }
            if let Some(value) = series.last_value {
                fields.insert("last_value".into(), json!(value));
            }
            return AlertOutput::Fire {
                group_key: key.to_string(),
                severity: Severity::Warning,
                message: format!(
                    "unknown: {}",
                    series.last_error.as_deref().unwrap_or("no result")
                ),
                fields,
                event_id,
            };
        }
        let level = series.level();
        let (severity, message) = match level {
            Level::Critical => (Severity::Critical, &self.critical.message),
            _ => (Severity::Warning, &self.warn.message),
        };
        fields.insert("state".into(), json!(level.as_str()));
        if let Some(value) = series.last_value {
            fields.insert("value".into(), json!(value));
        }
        AlertOutput::Fire {
            group_key: key.to_string(),
            severity,
            message: message.clone(),
            fields,
            event_id,
        }
    }

    fn on_success(
        &mut self,
        key: String,
        labels: Fields,
        value: f64,
        event: &StoredEvent,
        now: Timestamp,
        out: &mut Outputs,
    ) {
        let level = self.level_of(value);
        let series = self.series.entry(key.clone()).or_default();
        let was_unknown = series.unknown;
        let previous = series.level();
        series.level = Some(level);
        series.unknown = false;
        series.failures = 0;
        series.last_error = None;
        series.last_value = Some(value);
        series.last_poll = Some(event.time);
        series.labels = labels;
        out.state_changed = true;
        if level == Level::Ok {
            if series.open {
                series.open = false;
                series.last_fired = None;
                out.alerts.push(AlertOutput::Resolve {
                    group_key: key.clone(),
                    message: Some(format!("value {value} is back at or below warn")),
                });
            }
        } else if !series.open || was_unknown || previous != level {
            series.open = true;
            series.last_fired = Some(now);
            let series = series.clone();
            out.alerts
                .push(self.fire_output(&key, &series, Some(event.id.clone())));
        }
        // A failure before any series was known was booked under the empty key; now that
        // the query answers with labelled series, that placeholder has nothing to watch.
        if !key.is_empty() {
            let placeholder = self
                .series
                .get("")
                .is_some_and(|series| series.level.is_none());
            if placeholder {
                if let Some(series) = self.series.remove("") {
                    if series.open {
                        out.alerts.push(AlertOutput::Resolve {
                            group_key: String::new(),
                            message: Some("the query answers again".to_string()),
                        });
                    }
                }
            }
        }
    }

    fn on_failure(
        &mut self,
        key: Option<String>,
        error: String,
        event: &StoredEvent,
        now: Timestamp,
        out: &mut Outputs,
    ) {
        // A failure of the whole poll concerns every series; with none known yet, the
        // empty key stands for the query so the failure is not invisible.
        let keys: Vec<String> = match key {
            Some(key) => vec![key],
            None if self.series.is_empty() => vec![String::new()],
            None => self.series.keys().cloned().collect(),
        };
        for key in keys {
            let unknown_after = self.unknown_after;
            let series = self.series.entry(key.clone()).or_default();
            if series.last_poll.is_some_and(|last| last > event.time) {
                continue;
            }
            series.failures = series.failures.saturating_add(1);
            series.last_error = Some(error.clone());
            series.last_poll = Some(event.time);
            out.state_changed = true;
            if series.unknown || series.failures < unknown_after {
                continue;
            }
            series.unknown = true;
            series.open = true;
            series.last_fired = Some(now);
            let series = series.clone();
            out.alerts
                .push(self.fire_output(&key, &series, Some(event.id.clone())));
        }
    }
}

impl Handler for Metric {
    fn dispatch_hints(&self) -> DispatchHints {
        DispatchHints {
            equalities: vec![
                (
                    "poll_key".to_string(),
                    IndexValue::Str(self.spec.key.clone()),
                ),
                (
                    "event.type".to_string(),
                    IndexValue::Str(RESULT_EVENT_TYPE.to_string()),
                ),
            ],
            required_fields: vec!["poll_key".to_string()],
        }
    }

    fn on_event(
        &mut self,
        event: &StoredEvent,
        _context: &EventContext,
        now: Timestamp,
        out: &mut Outputs,
    ) {
        if event.event_type.as_deref() != Some(RESULT_EVENT_TYPE)
            || event.source.producer.as_deref() != Some(POLLER_PRODUCER)
            || event.fields.get("poll_key").and_then(Value::as_str) != Some(&self.spec.key)
        {
            return;
        }
        let labels = event
            .fields
            .get("labels")
            .and_then(Value::as_object)
            .cloned();
        let ok = event.fields.get("ok").and_then(Value::as_bool) == Some(true);
        let value = event.fields.get("value").and_then(Value::as_f64);
        match (ok, value) {
            (true, Some(value)) => {
                let labels = labels.unwrap_or_default();
                let key = series_key(&labels);
                let stale = self
                    .series
                    .get(&key)
                    .and_then(|series| series.last_poll)
                    .is_some_and(|last| last > event.time);
                if !stale {
                    self.on_success(key, labels, value, event, now, out);
                }
            }
            _ => {
                let error = event
                    .fields
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or(if ok {
                        "result without a value"
                    } else {
                        "poll failed"
                    })
                    .to_string();
                let key = labels.as_ref().map(series_key);
                self.on_failure(key, error, event, now, out);
            }
        }
    }

    /// Re-fires every open alert whose repeat interval has passed. A re-fire of a firing
    /// alert only increments its count: whether a person hears about it again is their
    /// policy's `repeat`, not this handler's business.
    fn on_tick(&mut self, now: Timestamp, out: &mut Outputs) {
        let Some(repeat) = self.repeat_interval else {
            return;
        };
        let due: Vec<String> = self
            .series
            .iter()
            .filter(|(_, series)| {
                series.open
                    && series
                        .last_fired
                        .is_some_and(|last| later(last, repeat) <= now)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            let Some(series) = self.series.get_mut(&key) else {
                continue;
            };
            series.last_fired = Some(now);
            let series = series.clone();
            out.alerts.push(self.fire_output(&key, &series, None));
            out.state_changed = true;
        }
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        let repeat = self.repeat_interval?;
        self.series
            .values()
            .filter(|series| series.open)
            .filter_map(|series| series.last_fired.map(|last| later(last, repeat)))
            .min()
    }

    fn save_state(&self) -> Value {
        json!({ "series": self.series })
    }

    fn load_state(&mut self, state: &Value) -> Result<(), String> {
        let series = state.get("series").cloned().unwrap_or(json!({}));
        self.series = serde_json::from_value(series).map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn params() -> Value {
        json!({
            "backend": "http-json", "url": "http://engine.example/", "query": "load",
            "interval": "1m", "repeat_interval": "10m",
            "warn": {"value": 5, "message": "load is high"},
            "critical": {"value": 10, "message": "load is critical"},
        })
    }

    fn key() -> String {
        poll_key(Backend::HttpJson, "http://engine.example", "load")
    }

    fn result(second: i64, fields: Value) -> StoredEvent {
        let mut event = event_at(second, fields);
        event.event_type = Some(RESULT_EVENT_TYPE.to_string());
        event.source.producer = Some(POLLER_PRODUCER.to_string());
        event.fields.insert("poll_key".into(), json!(key()));
        event
    }

    fn value(second: i64, value: f64) -> StoredEvent {
        result(second, json!({"ok": true, "value": value}))
    }

    fn failure(second: i64) -> StoredEvent {
        result(second, json!({"ok": false, "error": "http 500"}))
    }

    /// What an output does, in short: `warning:load is high`, `resolve:`.
    fn summary(out: &Outputs) -> Vec<String> {
        out.alerts
            .iter()
            .map(|alert| match alert {
                AlertOutput::Fire {
                    group_key,
                    severity,
                    message,
                    ..
                } => format!("{group_key}|{}:{message}", severity.as_str()),
                AlertOutput::Resolve { group_key, .. } => format!("{group_key}|resolve"),
            })
            .collect()
    }

    #[test]
    fn levels_have_the_exact_boundaries_and_transitions_fire_once() {
        let mut handler = MetricKind.build(&params()).unwrap();
        let mut step = |event: StoredEvent| summary(&feed(handler.as_mut(), &event));
        assert!(step(value(0, 1.0)).is_empty());
        assert!(step(value(60, 5.0)).is_empty(), "warn itself is still OK");
        assert_eq!(step(value(120, 5.5)), vec!["|warning:load is high"]);
        assert!(step(value(180, 10.0)).is_empty(), "critical itself is WARN");
        assert_eq!(step(value(240, 10.1)), vec!["|critical:load is critical"]);
        assert!(step(value(300, 50.0)).is_empty());
        assert_eq!(step(value(360, 7.0)), vec!["|warning:load is high"]);
        assert_eq!(step(value(420, 5.0)), vec!["|resolve"]);
        assert!(step(value(480, 0.0)).is_empty());
    }

    #[test]
    fn failures_never_resolve_and_turn_unknown_after_the_limit() {
        let mut handler = MetricKind.build(&params()).unwrap();
        let mut step = |event: StoredEvent| summary(&feed(handler.as_mut(), &event));
        assert_eq!(step(value(0, 11.0)), vec!["|critical:load is critical"]);
        assert!(step(failure(60)).is_empty());
        assert!(step(failure(120)).is_empty());
        assert_eq!(step(failure(180)), vec!["|warning:unknown: http 500"]);
        assert!(step(failure(240)).is_empty(), "unknown fires once");
        // Back with the same level: the alert says critical again.
        assert_eq!(step(value(300, 12.0)), vec!["|critical:load is critical"]);
        assert!(step(failure(360)).is_empty(), "one failure does not reset");
        assert!(step(value(420, 12.0)).is_empty());
        assert_eq!(step(value(480, 1.0)), vec!["|resolve"]);
    }

    #[test]
    fn unknown_from_ok_fires_and_the_next_ok_resolves() {
        let mut handler = MetricKind
            .build(
                &json!({"backend": "http-json", "url": "https://e", "query": "q", "interval": "30s",
                "unknown_after": 2,
                "warn": {"value": 1, "message": "w"}, "critical": {"value": 2, "message": "c"}}),
            )
            .unwrap();
        let key = poll_key(Backend::HttpJson, "https://e", "q");
        let mut step = |event: StoredEvent| {
            let mut event = event;
            event.fields.insert("poll_key".into(), json!(key));
            let out = feed(handler.as_mut(), &event);
            let fields = match out.alerts.first() {
                Some(AlertOutput::Fire { fields, .. }) => fields.get("state").cloned(),
                _ => None,
            };
            (summary(&out), fields)
        };
        assert!(step(value(0, 0.0)).0.is_empty());
        assert!(step(failure(30)).0.is_empty());
        let (fired, state) = step(failure(60));
        assert_eq!(fired, vec!["|warning:unknown: http 500"]);
        assert_eq!(state, Some(json!("unknown")));
        assert_eq!(step(value(90, 0.5)).0, vec!["|resolve"]);
    }

    #[test]
    fn repeats_every_repeat_interval_while_not_ok() {
        let mut handler = MetricKind.build(&params()).unwrap();
        assert!(handler.next_deadline().is_none());
        feed(handler.as_mut(), &value(0, 6.0));
        assert_eq!(handler.next_deadline(), Some(at(600)));
        let mut out = Outputs::default();
        handler.on_tick(at(599), &mut out);
        assert!(out.alerts.is_empty());
        handler.on_tick(at(600), &mut out);
        assert_eq!(summary(&out), vec!["|warning:load is high"]);
        assert_eq!(handler.next_deadline(), Some(at(1200)));
        // An escalation is a fire of its own and restarts the repeat clock.
        feed(handler.as_mut(), &value(900, 20.0));
        assert_eq!(handler.next_deadline(), Some(at(1500)));
        feed(handler.as_mut(), &value(960, 1.0));
        assert!(handler.next_deadline().is_none(), "resolved: no repeats");
    }

    #[test]
    fn prometheus_series_are_kept_apart_by_their_labels() {
        let params = json!({"backend": "prometheus", "url": "http://prom:9090", "query": "up",
            "interval": "15s", "unknown_after": 1,
            "warn": {"value": 0.5, "message": "w"}, "critical": {"value": 0.9, "message": "c"}});
        let mut handler = MetricKind.build(&params).unwrap();
        let key = poll_key(Backend::Prometheus, "http://prom:9090", "up");
        let mut step = |fields: Value| {
            let mut event = result(1, fields);
            event.fields.insert("poll_key".into(), json!(key));
            summary(&feed(handler.as_mut(), &event))
        };
        // A failure before any series is known is booked under the query itself.
        assert_eq!(
            step(json!({"ok": false, "error": "down"})),
            vec!["|warning:unknown: down"]
        );
        assert_eq!(
            step(json!({"ok": true, "value": 1, "labels": {"job": "a", "instance": "x"}})),
            vec!["instance=x job=a|critical:c", "|resolve"]
        );
        assert!(step(json!({"ok": true, "value": 0, "labels": {"job": "b"}})).is_empty());
        // A NaN in one series fails that series only.
        assert_eq!(
            step(json!({"ok": false, "error": "value is NaN", "labels": {"job": "b"}})),
            vec!["job=b|warning:unknown: value is NaN"]
        );
        assert_eq!(
            step(json!({"ok": true, "value": 0.7, "labels": {"instance": "x", "job": "a"}})),
            vec!["instance=x job=a|warning:w"]
        );
    }

    #[test]
    fn only_the_poller_results_for_this_query_count() {
        let mut handler = MetricKind.build(&params()).unwrap();
        let mut forged = value(0, 99.0);
        forged.source.producer = Some("mallory".into());
        assert!(feed(handler.as_mut(), &forged).alerts.is_empty());
        let mut other = value(0, 99.0);
        other.fields.insert("poll_key".into(), json!("m0"));
        assert!(feed(handler.as_mut(), &other).alerts.is_empty());
        let hints = handler.dispatch_hints();
        assert_eq!(
            hints.equalities[0],
            ("poll_key".to_string(), IndexValue::Str(key()))
        );
        // An older result arriving late does not undo a newer one.
        feed(handler.as_mut(), &value(120, 20.0));
        assert!(feed(handler.as_mut(), &value(60, 1.0)).alerts.is_empty());
    }

    #[test]
    fn state_survives_a_save_and_load() {
        let mut first = MetricKind.build(&params()).unwrap();
        feed(first.as_mut(), &value(0, 20.0));
        feed(first.as_mut(), &failure(60));
        let mut second = MetricKind.build(&params()).unwrap();
        second.load_state(&first.save_state()).unwrap();
        assert_eq!(second.next_deadline(), Some(at(600)));
        let out = feed(second.as_mut(), &failure(120));
        assert!(out.alerts.is_empty());
        let out = feed(second.as_mut(), &failure(180));
        assert_eq!(summary(&out), vec!["|warning:unknown: http 500"]);
    }

    #[test]
    fn poll_keys_are_stable_and_shared_by_equal_queries() {
        assert_eq!(
            poll_key(Backend::HttpJson, "http://e/", "q"),
            poll_key(Backend::HttpJson, "http://e", "q")
        );
        assert_ne!(
            poll_key(Backend::HttpJson, "http://e", "q"),
            poll_key(Backend::Prometheus, "http://e", "q")
        );
        // Stored in events: it must never change between releases.
        assert_eq!(
            poll_key(Backend::Prometheus, "http://prom:9090", "up"),
            "mdfdfd1b1b6c899dc"
        );
        assert_eq!(poll_key(Backend::HttpJson, "", "").len(), 17);
        let spec = PollSpec::from_params(&params()).unwrap();
        assert_eq!(spec.key, key());
        assert_eq!(spec.url, "http://engine.example");
        assert_eq!(spec.interval, SignedDuration::from_secs(60));
    }

    #[test]
    fn validation_names_every_bad_parameter() {
        let errors = MetricKind
            .build(
                &json!({"backend": "http-json", "url": "ftp://x", "query": "q",
                "interval": "soon", "repeat_interval": "later",
                "warn": {"value": 5, "message": "w"}, "critical": {"value": 5, "message": "c"}}),
            )
            .err()
            .unwrap();
        let found = paths(&errors);
        for path in [
            "params.url",
            "params.interval",
            "params.repeat_interval",
            "params.critical.value",
        ] {
            assert!(found.contains(&path), "{path}: {errors:?}");
        }
        let errors = MetricKind
            .build(
                &json!({"backend": "graphite", "url": "http://x", "query": "q", "interval": "1m",
                "warn": {"value": "high"}, "critical": {"value": 9, "message": "c"}}),
            )
            .err()
            .unwrap();
        let found = paths(&errors);
        assert!(
            found.contains(&"params.backend") && found.contains(&"params.warn.value"),
            "{errors:?}"
        );
        assert!(
            found.contains(&"params.warn"),
            "missing message: {errors:?}"
        );
        let errors = MetricKind
            .build(&json!({"backend": "prometheus", "url": "http://x", "query": "q", "interval": "100ms",
                "warn": {"value": 1, "message": "w"}, "critical": {"value": 2, "message": "c"}}))
            .err()
            .unwrap();
        assert_eq!(paths(&errors), vec!["params.interval"], "{errors:?}");
    }
}
