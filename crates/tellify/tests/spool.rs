//! The producer spool end to end, with the real binary: events sent while the server is
//! down are spooled; a replay killed with `kill -9` halfway and started again stores
//! every event exactly once, in the order it was sent.

use crate::support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_tellify");
const TOKEN: &str = "tfy_spool_test_admin_token";
const EVENTS: usize = 1000;

/// A child process killed and reaped when dropped, even if the test panics.
struct Process {
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary with no `TELLIFY_*` variables of the test's own environment.
fn tellify() -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TELLIFY_") {
            command.env_remove(name);
        }
    }
    command
}

fn cli(server: &str, args: &[&str], spool: &Path) -> Command {
    let mut command = tellify();
    command
        .args(args)
        .arg("--spool")
        .arg(spool)
        .env("TELLIFY_SERVER", server)
        .env("TELLIFY_TOKEN", TOKEN);
    command
}

fn run_with_stdin(mut command: Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the cli");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait for the cli")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn start_server(data: &Path, port: u16) -> Process {
    let server = Process {
        child: tellify()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .env("TELLIFY_BOOTSTRAP_TOKEN", TOKEN)
            .env("TELLIFY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("server starts"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            if response.status().is_success() {
                return server;
            }
        }
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stored_events(client: &reqwest::Client, base: &str) -> i64 {
    let health: Value = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("healthz json");
    health["events"].as_i64().expect("events in healthz")
}

/// Every stored event as (log position, field `n`), in log order.
async fn events_in_log_order(client: &reqwest::Client, base: &str) -> Vec<(i64, i64)> {
    let mut stored: Vec<(i64, i64)> = support::all_events(client, base, TOKEN, 500)
        .await
        .iter()
        .map(|item| {
            let seq = item["seq"].as_i64().expect("seq");
            let n = item["fields"]["n"].as_i64().expect("field n");
            (seq, n)
        })
        .collect();
    stored.sort_unstable();
    stored
}

fn spool_status(server: &str, spool: &Path) -> String {
    let output = cli(server, &["spool", "status"], spool)
        .output()
        .expect("spool status");
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
}

#[tokio::test]
async fn a_replay_killed_halfway_and_restarted_stores_every_event_once_in_order() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("spool");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");

    // The server is down: all 1,000 events go to the spool, and the command succeeds.
    let lines: String = (0..EVENTS).map(|n| format!("run:spool n:{n}\n")).collect();
    let sent = run_with_stdin(cli(&base, &["send"], &spool), &lines);
    let stderr = text(&sent.stderr);
    assert!(sent.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("spooled {EVENTS} events in")),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot reach the tellify server"),
        "{stderr}"
    );
    assert!(sent.stdout.is_empty(), "no ids: nothing was stored yet");
    let status = spool_status(&base, &spool);
    assert!(
        status.contains(&format!("pending   {EVENTS} events")),
        "{status}"
    );

    let _server = start_server(&dir.path().join("data"), port).await;
    let client = reqwest::Client::new();
    assert_eq!(stored_events(&client, &base).await, 0);

    // Small batches make the replay take long enough to be killed in the middle.
    let mut replay = Process {
        child: cli(&base, &["spool", "replay", "--batch", "2"], &spool)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the replay"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored_events(&client, &base).await < 50 {
        assert!(Instant::now() < deadline, "the replay stored nothing");
        assert!(
            replay.child.try_wait().expect("try_wait").is_none(),
            "the replay ended before it could be killed"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = Command::new("kill")
        .args(["-9", &replay.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let _ = replay.child.wait();
    let at_kill = stored_events(&client, &base).await;
    assert!(
        at_kill > 0 && at_kill < EVENTS as i64,
        "killed in the middle of the replay, with {at_kill} events stored"
    );

    // Started again, it resumes where the acknowledged offset says.
    let finished = cli(&base, &["spool", "replay"], &spool)
        .output()
        .expect("replay again");
    let stdout = text(&finished.stdout);
    assert!(
        finished.status.success(),
        "{stdout}{}",
        text(&finished.stderr)
    );
    assert!(stdout.contains("replayed "), "{stdout}");

    let stored = events_in_log_order(&client, &base).await;
    let numbers: Vec<i64> = stored.iter().map(|(_, n)| *n).collect();
    let expected: Vec<i64> = (0..EVENTS as i64).collect();
    assert_eq!(numbers.len(), EVENTS, "exactly {EVENTS} events stored");
    assert_eq!(numbers, expected, "stored once each, in the order sent");
    let status = spool_status(&base, &spool);
    assert!(status.contains("pending   0 events"), "{status}");

    // With the server up and the spool empty, a send goes straight to the server.
    let direct = run_with_stdin(cli(&base, &["send"], &spool), "run:spool n:1000\n");
    assert!(direct.status.success(), "{}", text(&direct.stderr));
    assert_eq!(text(&direct.stdout).lines().count(), 1, "one stored id");
    assert_eq!(stored_events(&client, &base).await, EVENTS as i64 + 1);
}

#[tokio::test]
async fn a_bad_event_is_returned_to_the_caller_not_spooled() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("spool");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = start_server(&dir.path().join("data"), port).await;

    let refused = run_with_stdin(
        cli(&base, &["send"], &spool),
        "{\"type\": \"ok\"}\n{\"type\": \"\"}\n",
    );
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("stdin lines 1-2 were not stored"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 2, field `type`"),
        "the problem names the stdin line: {stderr}"
    );
    let status = spool_status(&base, &spool);
    assert!(status.contains("pending   0 events"), "{status}");
}
