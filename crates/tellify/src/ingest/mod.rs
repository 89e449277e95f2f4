//! Turning a request body into events: JSON (one event or an array), NDJSON, or
//! `key:value` text lines. A batch is all-or-nothing: any problem rejects the whole
//! request, and every problem is reported with the line or index and field it is in.
//! Lines count from 1 as an editor shows them: blank lines count, `\r\n` ends a line like
//! `\n`, and the last line needs no line break. What is accepted, but probably not as the
//! producer meant it (`fs=/home`, `usage:95%` in `key:value` text), comes back as
//! warnings next to the events ([`parse_events_reporting`]).
//! [`store_events`] then stores a parsed batch. It is the only way events enter the log:
//! the HTTP API, the Alertmanager and Alerta APIs, broker sources and metric pollers all
//! go through it, so they share one durability rule, one backlog check, one publish to
//! the live stream and one set of ingest metrics (`tests/tidy.rs` keeps `append_events`
//! inside this module).

pub mod alerta;
pub mod alertmanager;

use serde::Serialize;
use serde_json::Value;
use tellify_model::{
    parse_kv_line_reporting, EventInput, FieldProblem, InputWarning, Limits, Severity, Source,
    StoredEvent,
};
use tellify_store::{Appended, StoreError};

use crate::config::IngestSettings;
use crate::services::Services;
use crate::stream::StreamItem;
use crate::telemetry;

/// One thing wrong with an ingest request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// 1-based line (NDJSON and text) of the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 0-based position in a JSON array.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The field, such as `severity` or `fields.tns`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum IngestError {
    /// 415: a content type we do not read.
    UnsupportedMediaType(String),
    /// 413: too many events.
    TooLarge(String),
    /// 400: the body is not well-formed.
    Malformed(Vec<Problem>),
    /// 422: well-formed, but some event is not acceptable.
    Invalid(Vec<Problem>),
}

/// Where an event sat in the request, for error messages.
#[derive(Clone, Copy)]
enum Position {
    Line(usize),
    Index(usize),
    Single,
}

impl Position {
    fn problem(self, field: Option<String>, message: String) -> Problem {
        let (line, index) = match self {
            Position::Line(line) => (Some(line), None),
            Position::Index(index) => (None, Some(index)),
            Position::Single => (None, None),
        };
        Problem {
            line,
            index,
            field,
            message,
        }
    }
}

/// A check every parsed event goes through after the envelope rules, which may also
/// complete the event: the event-type registry (schema, default severity, strict mode)
/// plugs in here, so its problems carry the same line or index as the others.
pub trait EventCheck {
    fn check(&self, event: &mut EventInput) -> Vec<FieldProblem>;
}

/// Nothing beyond the envelope rules and limits.
pub struct NoCheck;

impl EventCheck for NoCheck {
    fn check(&self, _event: &mut EventInput) -> Vec<FieldProblem> {
        Vec::new()
    }
}

pub fn parse_events(
    content_type: &str,
    body: &[u8],
    settings: &IngestSettings,
    limits: &Limits,
) -> Result<Vec<EventInput>, IngestError> {
    parse_events_checked(content_type, body, settings, limits, &NoCheck)
}

/// [`parse_events`], with `check` run on every event; any problem rejects the batch.
pub fn parse_events_checked(
    content_type: &str,
    body: &[u8],
    settings: &IngestSettings,
    limits: &Limits,
    check: &dyn EventCheck,
) -> Result<Vec<EventInput>, IngestError> {
    parse_events_reporting(content_type, body, settings, limits, check).map(|batch| batch.events)
}

/// The events of an accepted request, and what in it may not mean what the producer
/// thought (each warning with its line).
#[derive(Debug, Default)]
pub struct ParsedBatch {
    pub events: Vec<EventInput>,
    /// The first [`MAX_WARNINGS`] warnings, in request order.
    pub warnings: Vec<InputWarning>,
    /// How many more there were: an 8 MiB body of `a=b` words must not become an answer
    /// (and a server allocation) many times its size.
    pub warnings_omitted: usize,
}

/// Most warnings one answer spells out; the rest are counted (`warnings_omitted`).
pub const MAX_WARNINGS: usize = 100;

/// [`parse_events_checked`], keeping the warnings for the answer.
pub fn parse_events_reporting(
    content_type: &str,
    body: &[u8],
    settings: &IngestSettings,
    limits: &Limits,
    check: &dyn EventCheck,
) -> Result<ParsedBatch, IngestError> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(body).map_err(|error| {
        IngestError::Malformed(vec![Problem {
            line: None,
            index: None,
            field: None,
            message: format!("body is not UTF-8 (byte {})", error.valid_up_to()),
        }])
    })?;
    let mut problems = Vec::new();
    let mut events = Vec::new();
    let mut warnings = Vec::new();
    let mut warnings_omitted = 0;
    match media.as_str() {
        "application/json" | "" => {
            let value: Value = serde_json::from_str(text).map_err(|error| {
                IngestError::Malformed(vec![Problem {
                    line: Some(error.line()),
                    index: None,
                    field: None,
                    message: json_error_message(&error),
                }])
            })?;
            match value {
                Value::Array(items) => {
                    check_count(items.len(), settings)?;
                    for (index, item) in items.into_iter().enumerate() {
                        collect(
                            decode(item, Position::Index(index)),
                            &mut events,
                            &mut problems,
                        );
                    }
                }
                other => collect(decode(other, Position::Single), &mut events, &mut problems),
            }
        }
        "application/x-ndjson" | "application/jsonl" | "application/json-seq" => {
            let lines: Vec<(usize, &str)> = numbered_lines(text);
            check_count(lines.len(), settings)?;
            let mut malformed = Vec::new();
            for (line, content) in lines {
                match serde_json::from_str::<Value>(content) {
                    Ok(value) => collect(
                        decode(value, Position::Line(line)),
                        &mut events,
                        &mut problems,
                    ),
                    Err(error) => malformed
                        .push(Position::Line(line).problem(None, json_error_message(&error))),
                }
            }
            if !malformed.is_empty() {
                return Err(IngestError::Malformed(malformed));
            }
        }
        "text/plain" => {
            let lines = numbered_lines(text);
            check_count(lines.len(), settings)?;
            for (line, content) in lines {
                match parse_kv_line_reporting(content) {
                    Ok(parsed) => {
                        events.push((Position::Line(line), parsed.event));
                        for mut warning in parsed.warnings {
                            if warnings.len() < MAX_WARNINGS {
                                warning.line = Some(line);
                                warnings.push(warning);
                            } else {
                                warnings_omitted += 1;
                            }
                        }
                    }
                    Err(error) => problems.push(
                        Position::Line(line)
                            .problem(None, format!("column {}: {}", error.column, error.message)),
                    ),
                }
            }
        }
        other => {
            return Err(IngestError::UnsupportedMediaType(format!(
                "content type `{other}` is not accepted; use application/json, \
                 application/x-ndjson or text/plain (key:value lines)"
            )))
        }
    }
    if events.is_empty() && problems.is_empty() {
        problems.push(Position::Single.problem(None, "the request holds no events".to_string()));
    }
    for (position, event) in &mut events {
        let mut found = event.validate(limits).err().unwrap_or_default();
        found.extend(check.check(event));
        for problem in found {
            let field = (!problem.field.is_empty()).then_some(problem.field);
            problems.push(position.problem(field, problem.message));
        }
    }
    if !problems.is_empty() {
        // Decoding and checking run in two passes: put each event's problems together,
        // in request order, so its line is named once.
        problems.sort_by_key(|problem| (problem.line, problem.index));
        return Err(IngestError::Invalid(problems));
    }
    Ok(ParsedBatch {
        events: events.into_iter().map(|(_, event)| event).collect(),
        warnings,
        warnings_omitted,
    })
}

/// Most problems spelled out in a problem's `detail`; all of them are in its `errors`.
const MAX_DESCRIBED_PROBLEMS: usize = 5;

/// The problems of a refused request in one sentence for a problem's `detail`, each place
/// named once: `line 3: field `severity`: ...; field `colour`: ...; line 5: ...`.
pub fn describe_problems(problems: &[Problem]) -> String {
    let mut text = String::new();
    let mut previous_place: Option<(Option<usize>, Option<usize>)> = None;
    for problem in problems.iter().take(MAX_DESCRIBED_PROBLEMS) {
        let place = (problem.line, problem.index);
        if !text.is_empty() {
            text.push_str("; ");
        }
        if previous_place != Some(place) {
            match place {
                (Some(line), _) => text.push_str(&format!("line {line}: ")),
                (None, Some(index)) => text.push_str(&format!("event [{index}]: ")),
                (None, None) => {}
            }
        }
        previous_place = Some(place);
        if let Some(field) = &problem.field {
            text.push_str(&format!("field `{field}`: "));
        }
        text.push_str(&problem.message);
    }
    if problems.len() > MAX_DESCRIBED_PROBLEMS {
        text.push_str(&format!(
            "; and {} more (see `errors`)",
            problems.len() - MAX_DESCRIBED_PROBLEMS
        ));
    }
    text
}

/// serde_json's message without its own `at line L column C`: the line is the request's
/// (the problem's `line`), so only the column is kept, in front.
fn json_error_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let reason = match text.rfind(" at line ") {
        Some(cut) => &text[..cut],
        None => text.as_str(),
    };
    format!("invalid JSON at column {}: {reason}", error.column())
}

/// Why [`store_events`] stored nothing of a batch.
#[derive(Debug, thiserror::Error)]
pub enum StoreEventsError {
    /// Processing is more than `ingest.max_backlog_events` behind: the producer should
    /// retry shortly, so alerts stay timely.
    #[error("processing is {backlog} events behind (limit {limit}, ingest.max_backlog_events)")]
    Backlog { backlog: i64, limit: i64 },
    /// The store failed or refused the batch.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The batch does not fit in one message of the event log (`--log`).
    #[error("{0}")]
    TooLarge(String),
}

impl StoreEventsError {
    /// Whether the same batch may be stored later (a backlog, an unavailable store).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreEventsError::Backlog { .. } => true,
            StoreEventsError::Store(error) => error.is_retryable(),
            StoreEventsError::TooLarge(_) => false,
        }
    }
}

/// The one way events enter the log, for every producer: HTTP ingest, the Alertmanager
/// and Alerta APIs, broker sources and metric pollers. It refuses the batch while
/// processing is too far behind (`ingest.max_backlog_events`), appends `inputs` as events
/// of `producer`, durably, wakes the worker, counts them in the ingest metrics and feeds
/// the live stream. When this returns `Ok`, the events are committed: only then may the
/// caller answer 202 or acknowledge a broker message.
pub async fn store_events(
    services: &Services,
    inputs: Vec<EventInput>,
    producer: &str,
) -> Result<Vec<Appended>, StoreEventsError> {
    check_backlog(services)?;
    let received = services.clock.now();
    let events: Vec<StoredEvent> = inputs
        .into_iter()
        .map(|input| StoredEvent::from_input(input, Some(producer.to_string()), received, 0))
        .collect();
    let (events, appended, stored_here) = match &services.log {
        None => {
            let kept = if services.bus.has_listeners() {
                events.clone()
            } else {
                Vec::new()
            };
            let appended = services.store.append_events(events).await?;
            (kept, appended, true)
        }
        Some(log) => match log.append(services.store.as_ref(), events).await {
            Ok(logged) => (logged.events, logged.appended, logged.stored_here),
            Err(crate::eventlog::LogError::Store(error)) => return Err(error.into()),
            Err(error @ crate::eventlog::LogError::TooLarge { .. }) => {
                count_rejected();
                return Err(StoreEventsError::TooLarge(error.to_string()));
            }
            Err(error @ crate::eventlog::LogError::Unavailable(_)) => {
                return Err(StoreError::Unavailable(error.to_string()).into())
            }
        },
    };
    let duplicates = appended.iter().filter(|a| a.duplicate).count();
    metrics::counter!(telemetry::EVENTS_DUPLICATE).increment(duplicates as u64);
    // A batch the event log's recoverer (or a concurrent retry) stored first was announced
    // by whoever stored it.
    if stored_here {
        announce_appended(services, events, &appended);
    }
    Ok(appended)
}

/// What follows every append, whoever made it (ingest, or the event log's recoverer):
/// wakes the worker, counts the new events, tells the other nodes' live views and feeds
/// this node's. `events` are the appended events in order (or none when nobody listens
/// live), `appended` what the store made of each.
pub(crate) fn announce_appended(
    services: &Services,
    events: Vec<StoredEvent>,
    appended: &[Appended],
) {
    if let Some(newest) = appended.iter().map(|a| a.seq).max() {
        services.worker.appended(newest);
    }
    let fresh = appended.iter().filter(|a| !a.duplicate).count();
    metrics::counter!(telemetry::EVENTS_INGESTED).increment(fresh as u64);
    // Other nodes' live views hear of the batch as its runs of positions and read it.
    services.bus.tell_events(
        appended
            .iter()
            .filter(|stored| !stored.duplicate)
            .map(|stored| stored.seq),
    );
    if services.bus.has_listeners() {
        for (mut event, stored) in events.into_iter().zip(appended) {
            if !stored.duplicate {
                event.seq = stored.seq;
                // A repeat goes out under its first occurrence's id, as the worker sees it.
                event.id.clone_from(&stored.id);
                services
                    .bus
                    .publish(StreamItem::Event(std::sync::Arc::new(event)));
            }
        }
    }
}

/// Counts one batch refused before anything of it was stored (it did not parse, broke a
/// limit or a schema, or came during a backlog). Every way in calls this, so
/// `tellify_ingest_rejected_total` means the same for all of them.
pub fn count_rejected() {
    metrics::counter!(telemetry::INGEST_REJECTED).increment(1);
}

/// The one backlog check: refuses new events while processing is more than
/// `ingest.max_backlog_events` behind (0 turns the check off).
fn check_backlog(services: &Services) -> Result<(), StoreEventsError> {
    let limit = services.settings.ingest.max_backlog_events as i64;
    let backlog = services.worker.backlog();
    if limit > 0 && backlog > limit {
        count_rejected();
        return Err(StoreEventsError::Backlog { backlog, limit });
    }
    Ok(())
}

/// The non-blank lines of `text`, numbered from 1 counting the blank ones, as written
/// (not trimmed), so the columns of an error are the line's own.
fn numbered_lines(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.trim().is_empty())
        .collect()
}

fn check_count(count: usize, settings: &IngestSettings) -> Result<(), IngestError> {
    if count > settings.max_batch_events {
        return Err(IngestError::TooLarge(format!(
            "{count} events in one request, more than the limit of {} \
             (ingest.max_batch_events)",
            settings.max_batch_events
        )));
    }
    Ok(())
}

fn collect(
    decoded: Result<(Position, EventInput), Vec<Problem>>,
    events: &mut Vec<(Position, EventInput)>,
    problems: &mut Vec<Problem>,
) {
    match decoded {
        Ok(event) => events.push(event),
        Err(found) => problems.extend(found),
    }
}

/// Decodes one JSON event key by key, so each problem names its field.
fn decode(value: Value, position: Position) -> Result<(Position, EventInput), Vec<Problem>> {
    let Value::Object(object) = value else {
        return Err(vec![
            position.problem(None, "an event must be a JSON object".to_string())
        ]);
    };
    let mut problems = Vec::new();
    let mut event = EventInput::default();
    for (key, value) in object {
        let mut fail =
            |message: String| problems.push(position.problem(Some(key.clone()), message));
        match key.as_str() {
            "type" => match value {
                Value::String(text) => event.event_type = Some(text),
                Value::Null => {}
                _ => fail("must be a string".to_string()),
            },
            "message" => match value {
                Value::String(text) => event.message = Some(text),
                Value::Null => {}
                _ => fail("must be a string".to_string()),
            },
            "idempotency_key" => match value {
                Value::String(text) => event.idempotency_key = Some(text),
                Value::Null => {}
                _ => fail("must be a string".to_string()),
            },
            "severity" => match value {
                Value::String(text) => match text.parse::<Severity>() {
                    Ok(severity) => event.severity = Some(severity),
                    Err(message) => fail(message),
                },
                Value::Null => {}
                _ => fail("must be one of info, warning, critical".to_string()),
            },
            "time" => match value {
                Value::String(text) => match text.parse() {
                    Ok(time) => event.time = Some(time),
                    Err(_) => fail(format!(
                        "`{text}` is not an RFC 3339 timestamp such as 2026-11-23T18:00:00Z"
                    )),
                },
                Value::Null => {}
                _ => fail("must be an RFC 3339 timestamp string".to_string()),
            },
            "source" => match serde_json::from_value::<Source>(value) {
                Ok(source) => event.source = Some(source),
                Err(error) => fail(format!(
                    "must be {{\"host\", \"component\"}} strings: {error}"
                )),
            },
            "fields" => match value {
                Value::Object(fields) => event.fields = fields,
                Value::Null => {}
                _ => fail("must be a JSON object".to_string()),
            },
            other => fail(format!(
                "unknown key `{other}`; an event has type, severity, message, time, source, \
                 idempotency_key and fields (put your data in `fields`)"
            )),
        }
    }
    if problems.is_empty() {
        Ok((position, event))
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(content_type: &str, body: &str) -> Result<Vec<EventInput>, IngestError> {
        parse_events(
            content_type,
            body.as_bytes(),
            &IngestSettings::default(),
            &Limits::default(),
        )
    }

    #[test]
    fn reads_json_ndjson_and_text() {
        assert_eq!(
            parse("application/json", r#"{"message": "a"}"#)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            parse(
                "application/json; charset=utf-8",
                r#"[{"message": "a"}, {"type": "b"}]"#
            )
            .unwrap()
            .len(),
            2
        );
        assert_eq!(
            parse(
                "application/x-ndjson",
                "{\"message\": \"a\"}\n\n{\"message\": \"b\"}\n"
            )
            .unwrap()
            .len(),
            2
        );
        let events = parse("text/plain", "project:vr0 status:fail\nhost:x alive\n").unwrap();
        assert_eq!(events[1].message.as_deref(), Some("alive"));
    }

    #[test]
    fn problems_name_line_index_and_field() {
        let Err(IngestError::Invalid(problems)) = parse(
            "application/json",
            r#"[{"message": "ok"}, {"severity": "fatal", "colour": 1}]"#,
        ) else {
            panic!("expected invalid")
        };
        assert_eq!(problems.len(), 2);
        assert!(problems.iter().all(|p| p.index == Some(1)));
        let fields: Vec<_> = problems.iter().filter_map(|p| p.field.as_deref()).collect();
        assert_eq!(fields, vec!["severity", "colour"]);

        let Err(IngestError::Malformed(problems)) =
            parse("application/x-ndjson", "{\"message\": \"a\"}\n{oops\n")
        else {
            panic!("expected malformed")
        };
        assert_eq!(problems[0].line, Some(2));

        let Err(IngestError::Invalid(problems)) = parse("text/plain", "a:1\nb:\"open\n") else {
            panic!("expected invalid")
        };
        assert_eq!(problems[0].line, Some(2));
        assert!(problems[0].message.contains("column 3"));
    }

    fn invalid(content_type: &str, body: &str) -> Vec<Problem> {
        match parse(content_type, body) {
            Err(IngestError::Invalid(problems)) | Err(IngestError::Malformed(problems)) => problems,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn lines_of(problems: &[Problem]) -> Vec<Option<usize>> {
        problems.iter().map(|problem| problem.line).collect()
    }

    #[test]
    fn ndjson_lines_count_blank_lines_and_crlf_like_an_editor() {
        let bad = r#"{"severity": "fatal"}"#;
        let ok = r#"{"message": "ok"}"#;
        for (body, line) in [
            (format!("{bad}\n{ok}\n{ok}\n"), 1),
            (format!("{ok}\n{ok}\n{bad}\n"), 3),
            (format!("{ok}\n\n\n{bad}\n"), 4),
            (format!("{ok}\r\n\r\n{bad}\r\n"), 3),
            (format!("{ok}\n{bad}"), 2),
            (format!("\n{ok}\r\n  \n{bad}\r"), 4),
        ] {
            let problems = invalid("application/x-ndjson", &body);
            assert_eq!(
                lines_of(&problems),
                vec![Some(line)],
                "{body:?}: {problems:?}"
            );
            let detail = describe_problems(&problems);
            assert_eq!(detail.matches("line ").count(), 1, "{detail}");
            assert!(detail.starts_with(&format!("line {line}: ")), "{detail}");
        }
    }

    #[test]
    fn a_json_syntax_error_names_its_line_once_and_the_column_as_written() {
        let problems = invalid(
            "application/x-ndjson",
            "{\"message\": \"a\"}\n\n   {oops}\n",
        );
        assert_eq!(lines_of(&problems), vec![Some(3)]);
        let detail = describe_problems(&problems);
        assert_eq!(detail.matches("line").count(), 1, "{detail}");
        assert!(
            detail.starts_with("line 3: invalid JSON at column 5: "),
            "{detail}"
        );
        let problems = invalid("application/json", "[\n{\"message\": \"a\"},\n{oops}]");
        let detail = describe_problems(&problems);
        assert_eq!(detail.matches("line").count(), 1, "{detail}");
        assert!(
            detail.starts_with("line 3: invalid JSON at column 2: "),
            "{detail}"
        );
    }

    #[test]
    fn several_problems_of_one_event_name_its_line_or_index_once() {
        let long = "x".repeat(Limits::default().max_string_bytes + 1);
        let body = format!(
            "{{\"message\": \"ok\"}}\n{{\"severity\": \"fatal\", \"colour\": 1}}\n\
             {{\"message\": \"{long}\"}}\n"
        );
        let problems = invalid("application/x-ndjson", &body);
        assert_eq!(lines_of(&problems), vec![Some(2), Some(2), Some(3)]);
        let detail = describe_problems(&problems);
        assert_eq!(detail.matches("line 2").count(), 1, "{detail}");
        assert_eq!(detail.matches("line 3").count(), 1, "{detail}");
        assert!(detail.contains("field `severity`"), "{detail}");
        assert!(detail.contains("field `colour`"), "{detail}");

        let problems = invalid(
            "application/json",
            r#"[{"message": "ok"}, {"message": "ok"}, {"severity": "fatal", "colour": 1}]"#,
        );
        let detail = describe_problems(&problems);
        assert!(
            detail.starts_with("event [2]: field `severity`"),
            "{detail}"
        );
        assert_eq!(detail.matches("[2]").count(), 1, "{detail}");
    }

    #[test]
    fn a_long_list_of_problems_says_how_many_more() {
        let body = "{\"severity\": \"fatal\"}\n".repeat(7);
        let detail = describe_problems(&invalid("application/x-ndjson", &body));
        assert!(detail.ends_with("; and 2 more (see `errors`)"), "{detail}");
    }

    #[test]
    fn key_value_warnings_carry_their_line() {
        let batch = parse_events_reporting(
            "text/plain",
            b"project:vr0 ok:true\n\nfs=/home usage:95%\r\nmessage:disk full\n",
            &IngestSettings::default(),
            &Limits::default(),
            &NoCheck,
        )
        .unwrap();
        assert_eq!(batch.events.len(), 3);
        let found: Vec<(Option<usize>, &str)> = batch
            .warnings
            .iter()
            .map(|warning| (warning.line, warning.word.as_str()))
            .collect();
        assert_eq!(
            found,
            vec![
                (Some(3), "fs=/home"),
                (Some(3), "usage:95%"),
                (Some(4), "full")
            ]
        );
        let problems = invalid("text/plain", "a:1\n  b:\"open\n");
        assert!(problems[0].message.contains("column 5"), "{problems:?}");
    }

    #[test]
    fn warnings_beyond_the_cap_are_counted_not_kept() {
        // 60 lines of 3 warned words: 180 warnings, the first MAX_WARNINGS kept in order.
        let body = "a=1 b=2 c=3\n".repeat(60);
        let batch = parse_events_reporting(
            "text/plain",
            body.as_bytes(),
            &IngestSettings::default(),
            &Limits::default(),
            &NoCheck,
        )
        .unwrap();
        assert_eq!(batch.events.len(), 60);
        assert_eq!(batch.warnings.len(), MAX_WARNINGS);
        assert_eq!(batch.warnings_omitted, 180 - MAX_WARNINGS);
        assert_eq!(batch.warnings[0].line, Some(1));
        assert_eq!(batch.warnings[MAX_WARNINGS - 1].line, Some(34));
    }

    #[test]
    fn rejects_other_media_types_empty_bodies_and_oversized_batches() {
        assert!(matches!(
            parse("application/xml", "<a/>"),
            Err(IngestError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            parse("application/json", "[]"),
            Err(IngestError::Invalid(_))
        ));
        let settings = IngestSettings {
            max_batch_events: 2,
            ..Default::default()
        };
        let result = parse_events(
            "text/plain",
            b"a:1\nb:2\nc:3\n",
            &settings,
            &Limits::default(),
        );
        assert!(
            matches!(result, Err(IngestError::TooLarge(message)) if message.contains("limit of 2"))
        );
    }
}
