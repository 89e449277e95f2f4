//! [`Client`]: sends events, and keeps them in the spool when the server cannot take them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tellify_model::EventInput;

use crate::error::Error;
use crate::spool::{Spool, SpoolStatus};
use crate::transport::{Receipt, Transport};

/// Default bound of the spool file: 256 MiB, about a million typical events.
pub const DEFAULT_MAX_SPOOL_BYTES: u64 = 256 * 1024 * 1024;
/// Default events per replayed request.
pub const DEFAULT_REPLAY_BATCH: usize = 1000;
/// Default bytes per replayed request, well below the server's default body limit (8 MiB).
pub const DEFAULT_REPLAY_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Settings of a [`Client`]; start with [`Client::builder`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    server: String,
    token: String,
    spool: Option<PathBuf>,
    max_spool_bytes: u64,
    replay_batch: usize,
    replay_batch_bytes: usize,
    connect_timeout: Duration,
    request_timeout: Duration,
    user_agent: String,
}

impl ClientBuilder {
    /// Keeps events in a spool directory when the server cannot take them. Without one,
    /// an unreachable server is an [`Error::Unavailable`] for the caller to handle.
    pub fn spool(mut self, dir: impl Into<PathBuf>) -> ClientBuilder {
        self.spool = Some(dir.into());
        self
    }

    /// The largest the spool file may grow, in bytes; beyond it a send fails with
    /// [`Error::SpoolFull`] instead of dropping anything.
    pub fn max_spool_bytes(mut self, bytes: u64) -> ClientBuilder {
        self.max_spool_bytes = bytes;
        self
    }

    /// Events per request when replaying the spool (at least 1).
    pub fn replay_batch(mut self, events: usize) -> ClientBuilder {
        self.replay_batch = events.max(1);
        self
    }

    /// Bytes per request when replaying the spool (a larger single event is sent alone).
    pub fn replay_batch_bytes(mut self, bytes: usize) -> ClientBuilder {
        self.replay_batch_bytes = bytes.max(1);
        self
    }

    /// How long connecting may take before the server counts as unreachable.
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// How long a request may take in all before the server counts as unavailable.
    pub fn request_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.request_timeout = timeout;
        self
    }

    pub fn user_agent(mut self, user_agent: impl Into<String>) -> ClientBuilder {
        self.user_agent = user_agent.into();
        self
    }

    /// Builds the client; with a spool, opens and locks it (recovering from a crash), so
    /// this does blocking file IO once.
    pub fn build(self) -> Result<Client, Error> {
        let transport = Transport::new(
            &self.server,
            &self.token,
            self.connect_timeout,
            self.request_timeout,
            &self.user_agent,
        )?;
        let spool = match &self.spool {
            Some(dir) => Some(Arc::new(Mutex::new(Spool::open(
                dir,
                self.max_spool_bytes,
            )?))),
            None => None,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                transport,
                spool,
                replay_batch: self.replay_batch,
                replay_batch_bytes: self.replay_batch_bytes,
                wake: tokio::sync::Notify::new(),
                replaying: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

/// What became of events handed to [`Client::send_batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// The server stored them (durably) and answered with their ids.
    Sent(Receipt),
    /// They are on disk in the spool (fsynced) and will be replayed in order.
    Spooled { events: usize, reason: SpoolReason },
}

/// Why events went to the spool instead of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpoolReason {
    /// The server could not be reached or answered 5xx/408/429; the error says which.
    Unavailable(String),
    /// The spool already held events, and new ones wait behind them to keep the order.
    Behind { pending: u64 },
}

/// A producer's connection to a tellify server: cheap to clone, reuses connections, and
/// (with a spool) never loses an event the server could not take.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub transport: Transport,
    pub spool: Option<Arc<Mutex<Spool>>>,
    pub replay_batch: usize,
    pub replay_batch_bytes: usize,
    /// Woken when events are spooled, so the background replay starts at once.
    pub wake: tokio::sync::Notify,
    /// One replay at a time: batches must reach the server in order.
    pub replaying: tokio::sync::Mutex<()>,
}

impl Client {
    /// A builder for a client of the server at `server` (`http://host:8080`), sending
    /// with the API token `token` (one with `ingest` scope is enough).
    pub fn builder(server: impl Into<String>, token: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            server: server.into(),
            token: token.into(),
            spool: None,
            max_spool_bytes: DEFAULT_MAX_SPOOL_BYTES,
            replay_batch: DEFAULT_REPLAY_BATCH,
            replay_batch_bytes: DEFAULT_REPLAY_BATCH_BYTES,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            user_agent: concat!("tellify-client/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }

    /// Sends one event; see [`Client::send_batch`].
    pub async fn send(&self, event: EventInput) -> Result<SendOutcome, Error> {
        self.send_batch(vec![event]).await
    }

    /// Sends events as one request, all or nothing. Each event without an idempotency key
    /// gets a new one (a ULID) and each without a `time` gets the current time, so a
    /// spooled event keeps the moment it happened and a replay never stores it twice.
    ///
    /// With a spool: when the server is unavailable, or the spool still holds earlier
    /// events, the events are appended to the spool and this returns
    /// [`SendOutcome::Spooled`] at once. A refusal (4xx) is returned, never spooled.
    pub async fn send_batch(&self, mut events: Vec<EventInput>) -> Result<SendOutcome, Error> {
        if events.is_empty() {
            return Ok(SendOutcome::Sent(Receipt::default()));
        }
        let now = jiff::Timestamp::now();
        for event in &mut events {
            if event.idempotency_key.is_none() {
                event.idempotency_key = Some(tellify_model::new_id());
            }
            if event.time.is_none() {
                event.time = Some(now);
            }
        }
        let count = events.len();
        let records = encode(&events)?;
        let Some(spool) = &self.inner.spool else {
            return self
                .inner
                .transport
                .post(records)
                .await
                .map(SendOutcome::Sent);
        };
        // While the spool holds anything, new events join it behind the older ones.
        let behind = {
            let spool = spool.clone();
            let records = records.clone();
            blocking(move || {
                let mut spool = lock(&spool);
                let pending = spool.pending();
                if pending == 0 {
                    return Ok(None);
                }
                spool.append(&records, count)?;
                Ok(Some(pending))
            })
            .await?
        };
        if let Some(pending) = behind {
            self.inner.wake.notify_one();
            return Ok(SendOutcome::Spooled {
                events: count,
                reason: SpoolReason::Behind { pending },
            });
        }
        match self.inner.transport.post(records.clone()).await {
            Ok(receipt) => Ok(SendOutcome::Sent(receipt)),
            Err(Error::Unavailable { reason, .. }) => {
                let spool = spool.clone();
                blocking(move || lock(&spool).append(&records, count)).await?;
                tracing::debug!(events = count, reason = %reason, "events spooled");
                self.inner.wake.notify_one();
                Ok(SendOutcome::Spooled {
                    events: count,
                    reason: SpoolReason::Unavailable(reason),
                })
            }
            Err(other) => Err(other),
        }
    }

    /// What the spool holds, or `None` for a client without one.
    pub async fn spool_status(&self) -> Result<Option<SpoolStatus>, Error> {
        let Some(spool) = &self.inner.spool else {
            return Ok(None);
        };
        let spool = spool.clone();
        blocking(move || lock(&spool).status()).await.map(Some)
    }

    /// The spool directory, if the client has one.
    pub fn spool_dir(&self) -> Option<PathBuf> {
        self.inner
            .spool
            .as_ref()
            .map(|spool| lock(spool).dir().to_path_buf())
    }
}

/// Reads a spool's status without opening it for writing (no lock taken), so a spool
/// that a running producer owns can be inspected.
pub fn read_spool_status(dir: &Path) -> Result<SpoolStatus, Error> {
    crate::spool::read_status(dir)
}

/// One JSON object per line, each ending in `\n`: the spool's record format and the
/// request body alike.
fn encode(events: &[EventInput]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(events.len() * 256);
    for (index, event) in events.iter().enumerate() {
        serde_json::to_writer(&mut out, event).map_err(|source| Error::Encode { index, source })?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The spool's mutex, even if a panic elsewhere poisoned it: every spool operation
/// leaves the files consistent before it can panic, so the state is still good.
pub(crate) fn lock(spool: &Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    spool
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs spool IO (and its fsyncs) off the async threads.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| Error::io("spool", std::io::Error::other(error.to_string())))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tellify_model::Fields;

    #[test]
    fn records_are_json_lines_that_parse_back_as_events() {
        let mut fields = Fields::new();
        fields.insert("n".to_string(), 7.into());
        let event = EventInput {
            message: Some("line\nbreak".to_string()),
            idempotency_key: Some("k".to_string()),
            fields,
            ..EventInput::default()
        };
        let records = encode(&[event.clone(), event.clone()]).unwrap();
        let text = String::from_utf8(records).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "a line break inside a value stays escaped");
        let back: EventInput = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(back, event);
    }
}
