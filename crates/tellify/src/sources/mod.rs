//! Brokers as event sources: tellify consumes messages from RabbitMQ queues and NATS
//! subjects and stores each as events, exactly like a `POST /api/v1/events` body.
//!
//! Every source keeps the HTTP rule that an event is durable before anyone hears "yes":
//! a message is acknowledged only after [`store_events`] returned. A message that can
//! never be stored as it is (it does not parse, or breaks the limits) is published to a
//! dead-letter queue or subject with the reason in the `x-tellify-error` header and only
//! then acknowledged, so nothing is dropped silently. While the store is unavailable or
//! processing is too far behind, messages are left unacknowledged (AMQP requeue, JetStream
//! nak with a delay) so the broker delivers them again.
//!
//! A source is one file here implementing [`Source`] (connect, consume, settle each
//! message) plus one line in [`start`]; parsing, idempotency keys, reconnecting with
//! backoff and shutdown are shared.

pub mod amqp;
pub mod nats;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backoff::{Backoff, Jitter, Streak};
use crate::ingest::{count_rejected, parse_events_checked, store_events, IngestError, Problem};
use crate::services::AppState;
use crate::telemetry;

/// The header a dead-lettered message carries its reason in.
pub const ERROR_HEADER: &str = "x-tellify-error";
/// The header naming the tellify source that dead-lettered a message.
pub const SOURCE_HEADER: &str = "x-tellify-source";

/// `[sources]`: the brokers tellify consumes events from. None by default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesSettings {
    /// `[[sources.amqp]]`: RabbitMQ (AMQP 0-9-1) queues bound to a topic exchange.
    pub amqp: Vec<amqp::AmqpSettings>,
    /// `[[sources.nats]]`: NATS subjects, or JetStream durable consumers.
    pub nats: Vec<nats::NatsSettings>,
}

/// How a message body is read: the same formats `POST /api/v1/events` accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON event or an array of events.
    #[default]
    Json,
    /// One JSON event per line.
    Ndjson,
    /// `key:value` text, one event per line.
    Kv,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Kv => "text/plain",
        }
    }
}

/// What became of one message; tells the source how to settle it with its broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed (or already stored, for a redelivery): acknowledge it.
    Stored { accepted: usize, duplicates: usize },
    /// Can never be stored as it is: dead-letter it with this reason, then acknowledge it.
    Rejected(String),
    /// Could be stored later: leave it with the broker so it is delivered again.
    Unavailable(String),
}

/// One broker connection that turns messages into events.
#[async_trait]
pub trait Source: Send + 'static {
    /// The producer name of its events and the `source` field of its logs, such as
    /// `amqp:orders`.
    fn name(&self) -> &str;

    /// Connects, declares what it needs and consumes until shutdown (`Ok`) or until the
    /// broker goes away (`Err`); [`supervise`] then reconnects with backoff. Calls
    /// [`SourceContext::consuming`] once messages flow.
    async fn run(&mut self, context: &mut SourceContext) -> anyhow::Result<()>;
}

/// What a running source is given: the ingest path, the shutdown signal and backoffs.
pub struct SourceContext {
    pub ingest: Ingest,
    pub shutdown: watch::Receiver<bool>,
    reconnect: Streak,
    store_retry: Streak,
}

impl SourceContext {
    /// The connection works: the next reconnect starts from the shortest delay again.
    pub fn consuming(&mut self) {
        self.reconnect.reset();
        telemetry::source_up(&self.ingest.producer, true);
        tracing::info!(source = %self.ingest.producer, "source consuming");
    }

    /// Whether shutdown was asked for.
    pub fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Waits until shutdown is asked for.
    pub async fn stopped(&mut self) {
        let _ = self.shutdown.wait_for(|stop| *stop).await;
    }

    /// Settles the bookkeeping of one outcome: logs and metrics, and after a message
    /// could not be stored, a growing pause (so a broken store is not hammered with
    /// redeliveries). Returns `false` when shutdown came during the pause.
    pub async fn settled(&mut self, outcome: &Outcome) -> bool {
        let source = self.ingest.producer.as_str();
        let label = match outcome {
            Outcome::Stored { .. } => "stored",
            Outcome::Rejected(_) => "dead_lettered",
            Outcome::Unavailable(_) => "retry",
        };
        metrics::counter!(telemetry::SOURCE_MESSAGES, "source" => source.to_string(), "outcome" => label)
            .increment(1);
        match outcome {
            Outcome::Stored {
                accepted,
                duplicates,
            } => {
                tracing::debug!(source, accepted, duplicates, "message stored");
                self.store_retry.reset();
                true
            }
            Outcome::Rejected(reason) => {
                tracing::warn!(source, %reason, "message dead-lettered");
                true
            }
            Outcome::Unavailable(reason) => {
                let delay = self.store_retry.next_delay();
                tracing::warn!(source, %reason, delay_ms = delay.as_millis() as u64, "message left for redelivery");
                self.pause(delay).await
            }
        }
    }

    /// The delay a broker should wait before delivering a message again after
    /// [`Outcome::Unavailable`] (JetStream nak delay).
    pub fn redelivery_delay(&self) -> Duration {
        self.store_retry.current_step().max(Duration::from_secs(1))
    }

    /// Sleeps `delay` unless shutdown comes first; `false` means shutdown.
    async fn pause(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.shutdown.wait_for(|stop| *stop) => return false,
        }
        !self.stopping()
    }
}

/// Turns a message body into stored events for one source.
#[derive(Clone)]
pub struct Ingest {
    services: AppState,
    producer: String,
    format: Format,
}

impl Ingest {
    pub fn new(services: AppState, producer: String, format: Format) -> Ingest {
        Ingest {
            services,
            producer,
            format,
        }
    }

    /// Parses `body` and stores its events. `message_key` (a broker message id or
    /// sequence) becomes the idempotency key of events that bring none, so a message
    /// delivered again after a crash is stored once.
    pub async fn handle(&self, body: &[u8], message_key: Option<&str>) -> Outcome {
        let settings = &self.services.settings;
        if body.len() > settings.ingest.max_body_bytes {
            return Outcome::Rejected(format!(
                "message is {} bytes, more than the limit of {} (ingest.max_body_bytes)",
                body.len(),
                settings.ingest.max_body_bytes
            ));
        }
        // The same checks as `POST /api/v1/events`, declared event types included.
        let mut inputs = match parse_events_checked(
            self.format.content_type(),
            body,
            &settings.ingest,
            &settings.limits,
            &self
                .services
                .event_types
                .check(settings.ingest.strict_types),
        ) {
            Ok(inputs) => inputs,
            Err(error) => {
                count_rejected();
                return Outcome::Rejected(describe(&error));
            }
        };
        if let Some(key) = message_key.map(str::trim).filter(|key| !key.is_empty()) {
            let key = bounded_key(key);
            let several = inputs.len() > 1;
            for (index, input) in inputs.iter_mut().enumerate() {
                if input.idempotency_key.is_none() {
                    input.idempotency_key = Some(if several {
                        format!("{key}#{index}")
                    } else {
                        key.clone()
                    });
                }
            }
        }
        match store_events(&self.services, inputs, &self.producer).await {
            Ok(appended) => {
                let duplicates = appended.iter().filter(|a| a.duplicate).count();
                Outcome::Stored {
                    accepted: appended.len() - duplicates,
                    duplicates,
                }
            }
            Err(error) if error.is_retryable() => Outcome::Unavailable(error.to_string()),
            Err(error) => Outcome::Rejected(format!("the store refused the events: {error}")),
        }
    }

    pub fn producer(&self) -> &str {
        &self.producer
    }
}

/// Builds every configured source and starts each on its own task with the shutdown
/// signal. Configuration mistakes (a name too long for the broker, say) fail here, at start.
pub fn start(
    settings: &SourcesSettings,
    services: AppState,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut amqp_sources = Vec::new();
    for source in &settings.amqp {
        amqp_sources.push((amqp::AmqpSource::new(source.clone())?, source.format));
    }
    let mut nats_sources = Vec::new();
    for source in &settings.nats {
        nats_sources.push((nats::NatsSource::new(source.clone())?, source.format));
    }
    let mut tasks = Vec::new();
    for (source, format) in amqp_sources {
        tasks.push(spawn_source(Box::new(source), format, &services, &shutdown));
    }
    for (source, format) in nats_sources {
        if !source.hears_everything() {
            tasks.push(spawn_source(Box::new(source), format, &services, &shutdown));
            continue;
        }
        // Outside a queue group a core subject reaches every subscriber: one node
        // consumes it (`crate::lease`).
        telemetry::source_up(source.name(), false);
        let job_services = services.clone();
        tasks.push(tokio::spawn(crate::lease::run_singleton(
            services.clone(),
            format!("source:{}", source.name()),
            shutdown.clone(),
            move |stop| {
                let ingest = Ingest::new(job_services.clone(), source.name().to_string(), format);
                supervise(Box::new(source.clone()), ingest, stop)
            },
        )));
    }
    Ok(tasks)
}

/// Starts a source that may run on every node sharing the store (a shared queue).
fn spawn_source(
    source: Box<dyn Source>,
    format: Format,
    services: &AppState,
    shutdown: &watch::Receiver<bool>,
) -> JoinHandle<()> {
    let ingest = Ingest::new(services.clone(), source.name().to_string(), format);
    telemetry::source_up(source.name(), false);
    tokio::spawn(supervise(source, ingest, shutdown.clone()))
}

/// Exponential backoff without jitter: each source has one connection, so there is no
/// herd to spread out.
fn unjittered(initial: Duration, cap: Duration) -> Streak {
    Streak::new(Backoff::new(initial, cap), Jitter::None)
}

/// Runs `source` until shutdown, reconnecting with exponential backoff (100 ms doubling
/// up to 30 s) whenever the broker goes away, so a broker restart needs no tellify restart.
pub async fn supervise(
    mut source: Box<dyn Source>,
    ingest: Ingest,
    shutdown: watch::Receiver<bool>,
) {
    let mut context = SourceContext {
        ingest,
        shutdown,
        reconnect: unjittered(Duration::from_millis(100), Duration::from_secs(30)),
        store_retry: unjittered(Duration::from_millis(200), Duration::from_secs(30)),
    };
    loop {
        if context.stopping() {
            break;
        }
        match source.run(&mut context).await {
            Ok(()) => break,
            Err(error) => {
                telemetry::source_up(source.name(), false);
                let delay = context.reconnect.next_delay();
                tracing::warn!(
                    source = source.name(),
                    error = format!("{error:#}"),
                    delay_ms = delay.as_millis() as u64,
                    "source disconnected, reconnecting"
                );
                if !context.pause(delay).await {
                    break;
                }
            }
        }
    }
    tracing::info!(source = source.name(), "source stopped");
}

/// The reason put into `x-tellify-error`: every problem with its line, index and field,
/// on one line (a header value cannot hold line breaks), at most 1000 bytes.
pub fn describe(error: &IngestError) -> String {
    let text = match error {
        IngestError::UnsupportedMediaType(message) | IngestError::TooLarge(message) => {
            message.clone()
        }
        IngestError::Malformed(problems) | IngestError::Invalid(problems) => problems
            .iter()
            .map(describe_problem)
            .collect::<Vec<_>>()
            .join("; "),
    };
    header_safe(&text)
}

/// Makes `text` fit a header value: no control characters, at most 1000 bytes.
pub fn header_safe(text: &str) -> String {
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.len() > 1000 {
        let mut end = 1000;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    clean
}

fn describe_problem(problem: &Problem) -> String {
    let mut place = Vec::new();
    if let Some(line) = problem.line {
        place.push(format!("line {line}"));
    }
    if let Some(index) = problem.index {
        place.push(format!("index {index}"));
    }
    if let Some(field) = &problem.field {
        place.push(format!("`{field}`"));
    }
    if place.is_empty() {
        problem.message.clone()
    } else {
        format!("{}: {}", place.join(" "), problem.message)
    }
}

/// Keeps an idempotency key short: a long broker id is replaced by its SHA-256, so it
/// never trips the event's string limit.
fn bounded_key(key: &str) -> String {
    if key.len() <= 128 {
        return key.to_string();
    }
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `url` with any password or user replaced by `***`, for logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{path}"),
        None => url.to_string(),
    }
}

/// `text` (an error from a broker client) with the password of `url` replaced by `***`,
/// in case the client quotes what it was given.
pub fn scrub(text: &str, url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return text.to_string();
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return text.to_string();
    };
    let secret = userinfo
        .split_once(':')
        .map_or(userinfo, |(_, password)| password);
    if secret.is_empty() {
        return text.to_string();
    }
    text.replace(secret, "***")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = unjittered(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u128> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 350, 350]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn redact_hides_credentials_only() {
        assert_eq!(
            redact("amqp://tellify:s3cret@rabbit:5672/%2f"),
            "amqp://***@rabbit:5672/%2f"
        );
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact("nats://token@host"), "nats://***@host");
        assert_eq!(
            scrub("cannot log in as tellify:s3cret", "amqp://tellify:s3cret@h"),
            "cannot log in as tellify:***"
        );
    }

    #[test]
    fn describe_names_every_problem_on_one_line() {
        let error = IngestError::Invalid(vec![
            Problem {
                line: Some(2),
                index: None,
                field: Some("severity".to_string()),
                message: "must be one of info, warning, critical".to_string(),
            },
            Problem {
                line: None,
                index: None,
                field: None,
                message: "bad\nthing".to_string(),
            },
        ]);
        assert_eq!(
            describe(&error),
            "line 2 `severity`: must be one of info, warning, critical; bad thing"
        );
        let long = header_safe(&"é".repeat(800));
        assert!(long.len() <= 1000 && long.chars().all(|c| c == 'é'));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn the_documented_configuration_loads_with_its_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "tellify.toml",
                r#"
[[sources.amqp]]
url = "amqp://tellify:secret@rabbit.internal:5672/%2f"
exchange = "alerts"
binding_key = "alerts.#"
queue = "tellify-events"
dead_letter_queue = "tellify-events.dead-letter"
prefetch = 64
format = "json"

[[sources.amqp]]
exchange = "logs"
queue = "tellify-kv"
format = "kv"

[[sources.nats]]
url = "nats://nats.internal:4222"
subject = "events.>"
stream = "EVENTS"
durable = "tellify"
dead_letter_subject = "tellify.dead-letter"
format = "ndjson"

[[sources.nats]]
subject = "heartbeats"
dead_letter_subject = "heartbeats.dead-letter"
format = "kv"
"#,
            )?;
            let settings = crate::config::Settings::load(None).map_err(|e| e.to_string())?;
            let sources = &settings.sources;
            assert_eq!(sources.amqp.len(), 2);
            assert_eq!(sources.amqp[0].prefetch, 64);
            assert_eq!(sources.amqp[1].url, "amqp://127.0.0.1:5672/%2f");
            assert_eq!(sources.amqp[1].binding_key, "#");
            assert_eq!(sources.amqp[1].dead_letter_queue, None);
            assert_eq!(sources.amqp[1].format, Format::Kv);
            assert_eq!(sources.nats[0].stream.as_deref(), Some("EVENTS"));
            assert_eq!(sources.nats[1].stream, None);
            assert_eq!(sources.nats[1].queue_group, "tellify");
            assert_eq!(sources.nats[1].url, "nats://127.0.0.1:4222");
            assert!(!format!("{:?}", sources.amqp[0]).contains("secret"));
            for source in &sources.amqp {
                amqp::AmqpSource::new(source.clone()).map_err(|e| e.to_string())?;
            }
            for source in &sources.nats {
                nats::NatsSource::new(source.clone()).map_err(|e| e.to_string())?;
            }

            jail.create_file(
                "bad.toml",
                "[[sources.nats]]\nsubject = \"a\"\ndead_letter_subject = \"b\"\ndurrable = \"x\"\n",
            )?;
            let error = crate::config::Settings::load(Some(std::path::Path::new("bad.toml")))
                .unwrap_err()
                .to_string();
            assert!(error.contains("durrable"), "{error}");
            Ok(())
        });
        assert!(crate::config::Settings::default().sources.amqp.is_empty());
        assert!(crate::config::Settings::default().sources.nats.is_empty());
    }

    #[test]
    fn sources_refuse_settings_that_cannot_work() {
        let amqp = |queue: &str, url: &str, dead: Option<&str>| amqp::AmqpSettings {
            url: url.to_string(),
            exchange: "x".to_string(),
            binding_key: "#".to_string(),
            queue: queue.to_string(),
            dead_letter_queue: dead.map(str::to_string),
            prefetch: 1,
            format: Format::Json,
        };
        let error = |result: anyhow::Result<amqp::AmqpSource>| match result {
            Ok(_) => String::new(),
            Err(error) => error.to_string(),
        };
        assert!(error(amqp::AmqpSource::new(amqp("", "amqp://h", None))).contains("`queue`"));
        assert!(error(amqp::AmqpSource::new(amqp("q", "amqps://h", None))).contains("amqps"));
        assert!(error(amqp::AmqpSource::new(amqp("q", "amqp://h", Some("q")))).contains("differ"));
        let long = "q".repeat(300);
        assert!(error(amqp::AmqpSource::new(amqp(&long, "amqp://h", None))).contains("255"));
        let nats = nats::NatsSettings {
            url: "nats://h".to_string(),
            subject: "events.>".to_string(),
            stream: None,
            durable: "tellify".to_string(),
            queue_group: String::new(),
            dead_letter_subject: "dead.>".to_string(),
            prefetch: 1,
            format: Format::Json,
        };
        let Err(error) = nats::NatsSource::new(nats) else {
            panic!("a wildcard dead-letter subject is refused")
        };
        assert!(error.to_string().contains("wildcards"), "{error}");
    }

    #[test]
    fn long_keys_are_hashed() {
        assert_eq!(bounded_key("msg-1"), "msg-1");
        let hashed = bounded_key(&"x".repeat(300));
        assert_eq!(hashed.len(), 64);
        assert_eq!(hashed, bounded_key(&"x".repeat(300)));
    }
}
