//! Alertmanager's `postableAlerts` (what Prometheus posts to `/api/v2/alerts`) as events.
//! Each alert becomes one event of type `alertmanager`: its labels as top-level fields
//! (so filters read `alertname == "DiskFull"`), everything else under the `alertmanager`
//! field (status, start and end, generator URL, annotations, fingerprint). A batch with any
//! bad alert is rejected whole, every problem named by the alert's index and the field as
//! the sender wrote it (`[2] labels.alertname`).

use jiff::Timestamp;
use serde_json::{Map, Value};
use tellify_engine::handlers::alertmanager::{fingerprint, EVENT_TYPE, META_FIELD};
use tellify_engine::matchers::is_label_name;
use tellify_model::{EventInput, Fields, Limits, Severity};

use super::{EventCheck, IngestError, Problem};

/// `0001-01-01T00:00:00Z`, Go's zero `time.Time`, in Unix seconds.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

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
}
