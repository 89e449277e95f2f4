//! `kill -9` of the real server during a stream of ingests: every event that got a 202 is
//! there after a restart, and processing resumes so each event is processed exactly once.
//! And `kill -9` while a delivery is being sent: after a restart it is sent again once its
//! lease runs out, and recorded as sent.

use crate::support;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub(crate) const TOKEN: &str = "tfy_crash_test_admin_token";

/// The real `tellify serve`, killed and reaped when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use support::{first_delivery_sent, free_port, HttpSink};

async fn start(data: &std::path::Path, port: u16) -> Server {
    start_with(data, port, &[], Stdio::null()).await
}

/// Starts `tellify serve` on `port` with `data` and the extra `environment`, and waits
/// until it answers `/healthz`; its stderr goes to `stderr`.
pub(crate) async fn start_with(
    data: &std::path::Path,
    port: u16,
    environment: &[(&str, &str)],
    stderr: Stdio,
) -> Server {
    // Wrapped at once, so a failed start still kills and reaps the process.
    let server = Server {
        child: Command::new(env!("CARGO_BIN_EXE_tellify"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .env("TELLIFY_BOOTSTRAP_TOKEN", TOKEN)
            .env("TELLIFY_LOG", "warn")
            // A delivery whose sender died is retried after two seconds, not two minutes.
            .env("TELLIFY_NOTIFY__LEASE_SECS", "2")
            // The webhook sink listens on loopback, which the outbound guard refuses by default.
            .env("TELLIFY_OUTBOUND__ALLOW", r#"["127.0.0.0/8", "::1"]"#)
            .envs(environment.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
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

#[tokio::test]
async fn kill_9_loses_no_acknowledged_event_and_processes_each_once() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut server = start(data.path(), port).await;

    let response = client
        .post(format!("{base}/api/v1/subscriptions"))
        .bearer_auth(TOKEN)
        .json(&json!({"kind": "match", "title": "every event", "params": {"filter": "n >= 0"}}))
        .send()
        .await
        .expect("subscribe");
    assert_eq!(response.status(), 201);

    // Four producers send as fast as they can; the server is killed under them.
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut producers = Vec::new();
    for producer in 0..4 {
        let client = client.clone();
        let base = base.clone();
        let acknowledged = acknowledged.clone();
        producers.push(tokio::spawn(async move {
            for n in 0.. {
                let body =
                    format!("producer:{producer} n:{n}\nproducer:{producer} n:{n} second:true\n");
                let sent = client
                    .post(format!("{base}/api/v1/events"))
                    .bearer_auth(TOKEN)
                    .header("content-type", "text/plain")
                    .body(body)
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                if response.status() != 202 {
                    return;
                }
                let Ok(body) = response.json::<Value>().await else {
                    return;
                };
                let ids = body["ids"].as_array().cloned().unwrap_or_default();
                let mut kept = acknowledged.lock().expect("lock");
                kept.extend(ids.iter().filter_map(|id| id.as_str().map(str::to_string)));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill_9(&mut server);
    for producer in producers {
        let _ = producer.await;
    }
    let acknowledged: Vec<String> = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() > 20,
        "the stream was running ({} acknowledged)",
        acknowledged.len()
    );

    let _restarted = start(data.path(), port).await;
    // Wait for processing to catch up with the log.
    let health = loop {
        let health: Value = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["lag"] == 0 {
            break health;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stored_total = health["events"].as_i64().unwrap();
    assert!(stored_total as usize >= acknowledged.len());

    let mut stored: HashSet<String> = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/events?limit=1000");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page: Value = client
            .get(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for item in page["items"].as_array().unwrap() {
            stored.insert(item["id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost",
        missing.len()
    );
    assert_eq!(stored.len() as i64, stored_total);

    let alerts: Value = client
        .get(format!("{base}/api/v1/alerts"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alert = &alerts["items"][0];
    assert_eq!(
        alert["count"].as_i64().unwrap(),
        stored_total,
        "every stored event counted exactly once by the match alert"
    );
}

fn kill_9(server: &mut Server) {
    let pid = server.child.id().to_string();
    let status = Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let _ = server.child.wait();
}

#[tokio::test]
async fn kill_9_while_sending_resends_the_delivery_after_restart() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let hook = HttpSink::start(reqwest::StatusCode::OK, "got it").await;
    hook.set_hanging(true);
    let data = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut server = start(data.path(), port).await;
    let setup = [
        (
            "/api/v1/contact-points",
            json!({"name": "hook", "kind": "webhook", "address": hook.url("/hook")}),
        ),
        (
            "/api/v1/subscriptions",
            json!({"kind": "match", "title": "fails", "params": {"filter": "status == \"fail\""}}),
        ),
    ];
    for (path, body) in setup {
        let response = client
            .post(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("setup");
        assert_eq!(response.status(), 201, "{path}");
    }
    let response = client
        .put(format!("{base}/api/v1/policies/default"))
        .bearer_auth(TOKEN)
        .json(&json!({"rules": [{"contact_points": ["hook"]}]}))
        .send()
        .await
        .expect("policy");
    assert!(response.status().is_success());
    let response = client
        .post(format!("{base}/api/v1/events"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body("block:gc_t status:fail")
        .send()
        .await
        .expect("event");
    assert_eq!(response.status(), 202);

    // The webhook is reached but never answers: the delivery is in flight. Kill it there.
    let deadline = Instant::now() + Duration::from_secs(10);
    while hook.arrivals() == 0 {
        assert!(Instant::now() < deadline, "the delivery never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill_9(&mut server);
    hook.set_hanging(false);

    let _restarted = start(data.path(), port).await;
    let delivery = first_delivery_sent(&client, &base, TOKEN, "not resent after restart").await;
    assert_eq!(
        delivery["attempts"], 1,
        "the killed attempt left no outcome"
    );
    let answered = hook.requests();
    assert_eq!(answered.len(), 1, "answered once after the restart");
    assert_eq!(
        answered[0].header("idempotency-key").as_deref(),
        delivery["id"].as_str(),
        "the resend carries the same key, so a receiver can drop a duplicate"
    );
    assert_eq!(hook.arrivals(), 2, "the hung attempt and the resend");
}
