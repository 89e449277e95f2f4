//! The external event log (`--log nats://…`): NATS JetStream in front of a PostgreSQL
//! store shared by several nodes.
//!
//! **The path of a batch.** [`EventLog::append`] publishes the whole batch (its events,
//! with their ids and receive time already given) as one message of the stream and waits
//! for JetStream's acknowledgement, which comes once the message is stored with the
//! stream's replication. Only then is the batch appended to PostgreSQL, by the same node,
//! under its message id ([`Store::append_logged`]), and only once that commits is
//! the producer answered 202 — with the ids the store gave (an idempotency key stored
//! before, a repeat inside a dedup window), as on SQLite.
//!
//! **Nothing acknowledged is lost.** A node can die between JetStream's acknowledgement
//! and its PostgreSQL commit. One node at a time ([`crate::lease::run_singleton`], lease
//! `event-log`) walks the stream behind the writers ([`recover`]): every position not in
//! the store that is older than [`RECOVERY_GRACE`] is read back and appended. Appending
//! a batch twice is impossible (the store records its message id in the same
//! transaction), so the publisher and the recoverer may race; the first wins and the
//! second gets its result.
//!
//! **Retries.** A batch whose events all carry idempotency keys is published with a
//! `Nats-Msg-Id` made from the producer and the keys. A producer that retries it on any
//! node within the stream's duplicate window gets JetStream's "duplicate" with the first
//! copy's position: that copy is appended (if its node died first) and the answer is 202
//! with every event a duplicate. After the window, the store's own idempotency keys still
//! answer the retry. A batch without keys gets an id of its own: a retry of it is a new
//! batch, as on SQLite.
//!
//! **Durability.** The stream keeps messages in files (memory storage is refused) with
//! `jetstream.replicas` copies. Whether a write is on disk before the acknowledgement is
//! the NATS server's setting, not the stream's: run it with `sync_interval: always` in its
//! `jetstream` block (its default syncs every two minutes; an operating system crash
//! would lose what was acknowledged since).

use std::time::Duration;

use anyhow::Context as _;
use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, stream};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tellify_model::StoredEvent;
use tellify_store::{Appended, LogCursor, Store, StoreError};
use tokio::sync::watch;

use crate::services::AppState;

/// How old an unstored position of the log must be before the recoverer appends it: its
/// publisher normally does so within milliseconds of the acknowledgement.
pub const RECOVERY_GRACE: Duration = Duration::from_secs(2);
/// How often the recoverer looks at the end of the stream when it is caught up.
const RECOVERY_POLL: Duration = Duration::from_millis(500);
/// Most positions the recoverer checks with one store read.
const RECOVERY_STEP: u64 = 1000;
/// The lease of the recoverer.
pub const RECOVERY_LEASE: &str = "event-log";

/// The JetStream stream of the event log (`[jetstream]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JetStreamSettings {
    /// The stream's name; it takes the subject `tellify.events.<stream>`. Created when
    /// missing. Two installations on one NATS need two names.
    pub stream: String,
    /// Copies of each message, 1 to 5: JetStream acknowledges once a majority has it.
    pub replicas: usize,
    /// How long a `Nats-Msg-Id` is remembered, in seconds (10 to 86400): a retry within
    /// it is answered from JetStream, a later one from the store's idempotency keys.
    pub duplicate_window_secs: u64,
    /// How long the stream keeps messages, in hours (1 to 8760). Everything acknowledged
    /// is in PostgreSQL within seconds; the stream's copy is for recovery and audit.
    pub max_age_hours: u64,
}

impl Default for JetStreamSettings {
    fn default() -> Self {
        JetStreamSettings {
            stream: "TELLIFY_EVENTS".to_string(),
            replicas: 1,
            duplicate_window_secs: 120,
            max_age_hours: 168,
        }
    }
}

impl JetStreamSettings {
    /// Every setting out of its range, naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let name_ok = !self.stream.is_empty()
            && self.stream.len() <= 64
            && self
                .stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            problems.push(format!(
                "jetstream.stream: must be 1 to 64 letters, digits, `_` or `-` (is `{}`)",
                self.stream
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            problems.push(format!(
                "jetstream.replicas: must be 1 to 5 (is {})",
                self.replicas
            ));
        }
        if !(10..=86_400).contains(&self.duplicate_window_secs) {
            problems.push(format!(
                "jetstream.duplicate_window_secs: must be 10 to 86400 (is {})",
                self.duplicate_window_secs
            ));
        }
        if !(1..=8760).contains(&self.max_age_hours) {
            problems.push(format!(
                "jetstream.max_age_hours: must be 1 to 8760 (is {})",
                self.max_age_hours
            ));
        }
        problems
    }

    fn subject(&self) -> String {
        format!("tellify.events.{}", self.stream)
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![self.subject()],
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            duplicate_window: Duration::from_secs(self.duplicate_window_secs),
            max_age: Duration::from_secs(self.max_age_hours * 3600),
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            allow_direct: true,
            ..Default::default()
        }
    }
}

/// Checks the `log` setting: `nats://` addresses, comma-separated.
pub fn check_address(address: &str) -> Result<(), String> {
    let servers = servers(address);
    if servers.is_empty() {
        return Err("must name a NATS server: nats://host:4222".to_string());
    }
    for server in servers {
        let scheme = server.split_once("://").map(|(scheme, _)| scheme);
        if !matches!(scheme, Some("nats" | "tls")) {
            return Err(format!(
                "must be nats://host:port (several comma-separated), not {}",
                crate::sources::redact(server)
            ));
        }
        if let Err(error) = server.parse::<async_nats::ServerAddr>() {
            return Err(format!(
                "not a NATS address ({error}): {}",
                crate::sources::redact(server)
            ));
        }
    }
    Ok(())
}

fn servers(address: &str) -> Vec<&str> {
    address
        .split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .collect()
}

/// What a log message holds: one batch of events as the ingest node made them.
#[derive(Serialize, Deserialize)]
struct LoggedBatch {
    events: Vec<StoredEvent>,
}

/// Why a batch did not get into the log or the store.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The batch is larger than one message of the NATS server may be.
    #[error(
        "the batch is {size} bytes as an event log message, more than the NATS server's \
         max_payload of {limit}: send fewer events per request (or raise max_payload)"
    )]
    TooLarge { size: usize, limit: usize },
    /// JetStream did not acknowledge the batch: nothing was stored, try again.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The store failed after the batch was logged: it is appended later from the log;
    /// a retry with the same idempotency keys is safe.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A batch [`EventLog::append`] logged and stored.
pub struct Logged {
    pub events: Vec<StoredEvent>,
    pub appended: Vec<Appended>,
    /// Whether this call stored the batch (not the recoverer or a concurrent retry).
    pub stored_here: bool,
}

/// The connection to the event log's stream.
pub struct EventLog {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    settings: JetStreamSettings,
    subject: String,
    /// The stream's identity ([`LogCursor::epoch`]): its creation time.
    epoch: String,
    address: String,
}

impl EventLog {
    /// Connects, makes the stream when it is missing (or brings its replicas, duplicate
    /// window and age up to the settings), refuses a stream kept in memory, and tells the
    /// store which stream this is ([`Store::open_log`]).
    pub async fn connect(
        address: &str,
        settings: &JetStreamSettings,
        store: &dyn Store,
    ) -> anyhow::Result<EventLog> {
        let shown = crate::sources::redact(address);
        let client = async_nats::ConnectOptions::new()
            .name("tellify event log")
            .connection_timeout(Duration::from_secs(5))
            .connect(servers(address))
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot connect to the event log at {shown}: {}",
                    crate::sources::scrub(&error.to_string(), address)
                )
            })?;
        let jetstream = jetstream::new(client.clone());
        let wanted = settings.stream_config();
        let mut stream = jetstream
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot open the event log stream `{}` at {shown} (is JetStream on? `nats-server -js`): {error}",
                    settings.stream
                )
            })?;
        let info = stream
            .info()
            .await
            .context("cannot read the event log stream")?;
        let config = info.config.clone();
        if config.storage != stream::StorageType::File {
            anyhow::bail!(
                "the event log stream `{}` keeps its messages in memory: acknowledged events would not survive a restart of NATS; delete it or name another with jetstream.stream",
                settings.stream
            );
        }
        if !config.subjects.contains(&settings.subject()) {
            anyhow::bail!(
                "the stream `{}` at {shown} is not tellify's event log (its subjects are {:?}); name another with jetstream.stream",
                settings.stream,
                config.subjects
            );
        }
        if (config.num_replicas, config.duplicate_window, config.max_age)
            != (wanted.num_replicas, wanted.duplicate_window, wanted.max_age)
        {
            let updated = stream::Config {
                num_replicas: wanted.num_replicas,
                duplicate_window: wanted.duplicate_window,
                max_age: wanted.max_age,
                ..config
            };
            jetstream.update_stream(updated).await.with_context(|| {
                format!(
                    "cannot bring the event log stream `{}` to the [jetstream] settings",
                    settings.stream
                )
            })?;
        }
        let epoch = info.created.unix_timestamp_nanos().to_string();
        let last = i64::try_from(info.state.last_sequence).unwrap_or(i64::MAX);
        let cursor = store
            .open_log(&epoch, last)
            .await
            .context("cannot record the event log in the store")?;
        tracing::info!(
            stream = %settings.stream,
            checked_through = cursor.through,
            "events are logged in JetStream"
        );
        Ok(EventLog {
            client,
            jetstream,
            subject: settings.subject(),
            settings: settings.clone(),
            epoch,
            address: shown,
        })
    }

    /// Where the log is, without credentials.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the connection to NATS is up.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Logs `events` (one batch, all or none), then appends them to `store` under their
    /// message id. Returns the events as stored (a retried batch: the first copy's), what
    /// the store made of each (every event of a batch JetStream and the store had already
    /// is a duplicate), and whether this call stored them (else another call did, and
    /// announced them).
    pub async fn append(
        &self,
        store: &dyn Store,
        events: Vec<StoredEvent>,
    ) -> Result<Logged, LogError> {
        let producer = events
            .first()
            .and_then(|event| event.source.producer.clone());
        let batch = LoggedBatch { events };
        let payload = serde_json::to_vec(&batch)
            .map_err(|error| LogError::Unavailable(format!("cannot encode the batch: {error}")))?;
        let id = message_id(producer.as_deref(), &batch.events);
        let limit = self.client.server_info().max_payload;
        let size = message_size(&id, payload.len());
        if size > limit {
            return Err(LogError::TooLarge { size, limit });
        }
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, id.as_str());
        let ack = self
            .jetstream
            .publish_with_headers(self.subject.clone(), headers, payload.into())
            .await
            .map_err(|error| {
                // The client's own count of the message, should it ever differ from ours.
                if error.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded {
                    LogError::TooLarge { size, limit }
                } else {
                    LogError::Unavailable(error.to_string())
                }
            })?
            .await
            .map_err(|error| LogError::Unavailable(error.to_string()))?;
        let position = i64::try_from(ack.sequence)
            .map_err(|_| LogError::Unavailable("stream sequence out of range".into()))?;
        let events = if ack.duplicate {
            self.read(ack.sequence).await?
        } else {
            batch.events
        };
        let (mut appended, first) = store.append_logged(position, &id, events.clone()).await?;
        if ack.duplicate && !first {
            for stored in &mut appended {
                stored.duplicate = true;
            }
        }
        Ok(Logged {
            events,
            appended,
            stored_here: first,
        })
    }

    /// The batch at `position`, as logged.
    async fn read(&self, position: u64) -> Result<Vec<StoredEvent>, LogError> {
        let stream = self
            .jetstream
            .get_stream_no_info(&self.settings.stream)
            .await
            .map_err(|error| LogError::Unavailable(error.to_string()))?;
        let message = stream
            .get_raw_message(position)
            .await
            .map_err(|error| LogError::Unavailable(format!("position {position}: {error}")))?;
        decode(&message.payload).map_err(|error| {
            LogError::Unavailable(format!(
                "position {position} is not a tellify batch: {error}"
            ))
        })
    }
}

fn decode(payload: &[u8]) -> Result<Vec<StoredEvent>, serde_json::Error> {
    serde_json::from_slice::<LoggedBatch>(payload).map(|batch| batch.events)
}

/// The size of a batch's message as the NATS server holds it to `max_payload`: the payload
/// and the header block carrying the `Nats-Msg-Id` (`NATS/1.0`, the header line, an empty
/// line). A batch that fits only without its header can never be logged, so it must be
/// refused as too large, not as unavailable (which a producer retries).
fn message_size(message_id: &str, payload: usize) -> usize {
    let header_block = "NATS/1.0\r\n".len()
        + NATS_MESSAGE_ID.to_string().len()
        + ": ".len()
        + message_id.len()
        + "\r\n\r\n".len();
    header_block + payload
}

/// The `Nats-Msg-Id` of a batch: the producer and every idempotency key, hashed, when each
/// event has one (a retry of the batch has the same); else the first event's own id.
fn message_id(producer: Option<&str>, events: &[StoredEvent]) -> String {
    let keys: Option<Vec<&str>> = events
        .iter()
        .map(|event| event.idempotency_key.as_deref())
        .collect();
    match keys {
        Some(keys) if !keys.is_empty() => {
            let mut hash = Sha256::new();
            hash.update(producer.unwrap_or_default().as_bytes());
            for key in keys {
                hash.update([0]);
                hash.update(key.as_bytes());
            }
            format!("keys-{:x}", hash.finalize())
        }
        _ => format!(
            "batch-{}",
            events.first().map(|event| event.id.as_str()).unwrap_or("")
        ),
    }
}

/// The recoverer: appends every logged batch its node did not, once it is older than
/// [`RECOVERY_GRACE`], walking the stream from the store's [`LogCursor`] until `stop`.
/// Runs under the `event-log` lease on one node at a time.
pub async fn recover(
    services: AppState,
    log: std::sync::Arc<EventLog>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let pause = match recover_step(&services, &log).await {
            Ok(true) => Duration::ZERO,
            Ok(false) => RECOVERY_POLL,
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "cannot check the event log; retrying");
                RECOVERY_POLL * 4
            }
        };
        if pause.is_zero() && !*stop.borrow() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One step of [`recover`]: checks up to [`RECOVERY_STEP`] positions after the cursor and
/// saves how far it got. True when there may be more to check at once.
async fn recover_step(services: &AppState, log: &EventLog) -> anyhow::Result<bool> {
    let store = services.store.as_ref();
    // Fetching the stream reads its state (one request).
    let stream = log
        .jetstream
        .get_stream(&log.settings.stream)
        .await
        .context("cannot open the event log stream")?;
    let state = stream.cached_info().state.clone();
    let Some(mut cursor) = store.log_cursor().await? else {
        anyhow::bail!("the store has no event log cursor; restart this node");
    };
    if cursor.epoch != log.epoch {
        anyhow::bail!(
            "the event log stream `{}` was made again while this node ran; restart it",
            log.settings.stream
        );
    }
    let started = cursor.through;
    // Positions the stream no longer has (its age limit) cannot be checked.
    let first = i64::try_from(state.first_sequence).unwrap_or(i64::MAX);
    cursor.through = cursor.through.max(first - 1);
    let last = i64::try_from(state.last_sequence).unwrap_or(i64::MAX);
    let until = last.min(cursor.through + RECOVERY_STEP as i64);
    let positions: Vec<i64> = (cursor.through + 1..=until).collect();
    let stored = store.logged(positions.clone()).await?;
    let mut held_up = false;
    for position in positions {
        if stored.binary_search(&position).is_ok() {
            cursor.through = position;
            continue;
        }
        let message = match stream.get_raw_message(position as u64).await {
            Ok(message) => message,
            Err(error) if error.kind() == stream::RawMessageErrorKind::NoMessageFound => {
                cursor.through = position;
                continue;
            }
            Err(error) => return Err(error).context(format!("cannot read position {position}")),
        };
        // Wall time, not the injected clock: it is compared with the NATS server's.
        let published = message.time.unix_timestamp_nanos();
        let now = jiff::Timestamp::now().as_nanosecond();
        if now.saturating_sub(published) < RECOVERY_GRACE.as_nanos() as i128 {
            // Its node is probably appending it now; look again later.
            held_up = true;
            break;
        }
        let events = match decode(&message.payload) {
            Ok(events) => events,
            Err(error) => {
                // Not a batch of ours: recorded as empty, so it never holds the log up.
                tracing::warn!(position, %error, "the event log holds a message that is not a tellify batch; skipped");
                Vec::new()
            }
        };
        // A message without an id (not ours) is known by its position in this stream.
        let id = message
            .headers
            .get(NATS_MESSAGE_ID)
            .map(|value| value.as_str().to_string())
            .unwrap_or_else(|| format!("position-{}-{position}", log.epoch));
        let (appended, first) = store.append_logged(position, &id, events.clone()).await?;
        if first && !appended.is_empty() {
            metrics::counter!(crate::telemetry::EVENT_LOG_RECOVERED).increment(events.len() as u64);
            tracing::info!(
                position,
                events = events.len(),
                "appended a logged batch its node did not"
            );
            crate::ingest::announce_appended(services, events, &appended);
        }
        cursor.through = position;
    }
    if cursor.through > started {
        let forget_before = jiff::Timestamp::now()
            - jiff::SignedDuration::from_secs(log.settings.duplicate_window_secs as i64 + 600);
        store
            .save_log_cursor(
                LogCursor {
                    epoch: cursor.epoch.clone(),
                    through: cursor.through,
                },
                forget_before,
            )
            .await?;
    }
    Ok(!held_up && cursor.through < last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, key: Option<&str>) -> StoredEvent {
        let mut event = StoredEvent::from_input(
            tellify_model::EventInput {
                event_type: Some("disk".into()),
                ..Default::default()
            },
            Some("alice".into()),
            jiff::Timestamp::UNIX_EPOCH,
            0,
        );
        event.id = id.to_string();
        event.idempotency_key = key.map(str::to_string);
        event
    }

    #[test]
    fn a_batch_with_every_key_has_the_same_message_id_on_every_retry() {
        let first = [event("a", Some("k1")), event("b", Some("k2"))];
        let retry = [event("c", Some("k1")), event("d", Some("k2"))];
        assert_eq!(
            message_id(Some("alice"), &first),
            message_id(Some("alice"), &retry)
        );
        assert!(message_id(Some("alice"), &first).starts_with("keys-"));
        // Another producer, or other keys, is another batch.
        assert_ne!(
            message_id(Some("bob"), &first),
            message_id(Some("alice"), &first)
        );
        let other = [event("c", Some("k1")), event("d", Some("k3"))];
        assert_ne!(
            message_id(Some("alice"), &other),
            message_id(Some("alice"), &first)
        );
        // Keys are separated: ("k1","k2") is not ("k1k","2").
        let shifted = [event("c", Some("k1k")), event("d", Some("2"))];
        assert_ne!(
            message_id(Some("alice"), &shifted),
            message_id(Some("alice"), &first)
        );
    }

    #[test]
    fn a_batch_with_an_event_without_a_key_is_never_a_duplicate_of_another() {
        let batch = [event("a", Some("k1")), event("b", None)];
        assert_eq!(message_id(Some("alice"), &batch), "batch-a");
        let retry = [event("c", Some("k1")), event("d", None)];
        assert_ne!(
            message_id(Some("alice"), &batch),
            message_id(Some("alice"), &retry)
        );
    }

    #[test]
    fn settings_out_of_range_are_named() {
        let settings = JetStreamSettings {
            stream: "bad.name".into(),
            replicas: 7,
            duplicate_window_secs: 1,
            max_age_hours: 0,
        };
        let problems = settings.problems().join("\n");
        for key in [
            "jetstream.stream",
            "jetstream.replicas",
            "jetstream.duplicate_window_secs",
            "jetstream.max_age_hours",
        ] {
            assert!(problems.contains(key), "{key} missing from {problems}");
        }
        assert!(JetStreamSettings::default().problems().is_empty());
    }

    #[test]
    fn only_nats_addresses_are_a_log() {
        assert!(check_address("nats://127.0.0.1:4222").is_ok());
        assert!(check_address("nats://a:4222, nats://b:4222").is_ok());
        let refused = check_address("postgres://u:secret@db/x").unwrap_err();
        assert!(refused.contains("nats://host:port"), "{refused}");
        assert!(!refused.contains("secret"), "{refused}");
        assert!(check_address(" , ").is_err());
    }
}
