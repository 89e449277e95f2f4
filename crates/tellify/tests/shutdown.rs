//! SIGTERM (what systemd, Docker and Kubernetes send) to the real server under ingest and
//! delivery load: it exits 0 within the grace, every event that got a 202 is there after
//! a restart, no delivery reaches the receiver twice, and what was still due is sent
//! after the restart.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::crash::{start_with, Server, TOKEN};
use crate::support::{all_events, first_delivery_sent, free_port, HttpSink};

/// No rate limit: every alert's notification goes out as soon as it is due.
const ENVIRONMENT: [(&str, &str); 4] = [
    ("TELLIFY_NOTIFY__MAX_PER_CONTACT_POINT", "0"),
    ("TELLIFY_NOTIFY__MAX_PER_USER", "0"),
    ("TELLIFY_SHUTDOWN_GRACE_SECS", "5"),
    ("TELLIFY_LOG", "info"),
];

#[tokio::test]
async fn sigterm_under_load_exits_0_loses_no_event_and_sends_no_delivery_twice() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let hook = HttpSink::start(reqwest::StatusCode::OK, "got it").await;
    let data = tempfile::tempdir().expect("temp dir");
    let logs = tempfile::tempdir().expect("temp dir");
    let log_path = logs.path().join("stderr.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut server = start_with(data.path(), port, &ENVIRONMENT, Stdio::from(log)).await;
    set_up_one_alert_per_event(&client, &base, &hook).await;

    // Four producers send as fast as they can; SIGTERM comes in the middle of it.
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut producers = Vec::new();
    for producer in 0..4 {
        let client = client.clone();
        let base = base.clone();
        let acknowledged = acknowledged.clone();
        producers.push(tokio::spawn(async move {
            for n in 0.. {
                let (first, second) = (2 * n, 2 * n + 1);
                let body =
                    format!("producer:{producer} n:{first}\nproducer:{producer} n:{second}\n");
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while hook.requests().is_empty() {
        assert!(Instant::now() < deadline, "no delivery before the stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stopped_at = Instant::now();
    signal(&server, "-TERM");
    let status = wait_for_exit(&mut server, Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "a SIGTERM stop is a clean exit");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(5 + 3),
        "stopped within the grace (took {:?})",
        stopped_at.elapsed()
    );
    for producer in producers {
        let _ = producer.await;
    }
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(log.contains("SIGTERM"), "the stop is logged: {log}");
    assert!(!log.contains("stopped unexpectedly"), "{log}");
    let acknowledged: Vec<String> = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() > 20,
        "under load ({} acknowledged)",
        acknowledged.len()
    );
    let sent_before_restart = hook.requests().len();

    let _restarted = start_with(data.path(), port, &ENVIRONMENT, Stdio::null()).await;
    let stored = caught_up_events(&client, &base).await;
    let missing = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .count();
    assert_eq!(missing, 0, "acknowledged events lost by the stop");

    // Every event is an alert of its own, notified once: wait until each reached the hook.
    let deadline = Instant::now() + Duration::from_secs(30);
    let notified = loop {
        let notified = alerts_at_the_hook(&hook);
        let total: usize = notified.values().sum();
        if total >= stored.len() {
            break notified;
        }
        assert!(
            Instant::now() < deadline,
            "{total} of {} alerts notified after the restart",
            stored.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let twice: Vec<_> = alerts_at_the_hook(&hook)
        .into_iter()
        .filter(|(_, times)| *times > 1)
        .collect();
    assert!(twice.is_empty(), "alerts notified twice: {twice:?}");
    assert_eq!(notified.len(), stored.len(), "one alert per stored event");
    let requests = hook.requests();
    let keys: Vec<String> = requests
        .iter()
        .map(|request| request.header("idempotency-key").expect("idempotency key"))
        .collect();
    let distinct: HashSet<&String> = keys.iter().collect();
    assert_eq!(
        distinct.len(),
        keys.len(),
        "a delivery id reached the hook twice"
    );
    assert!(sent_before_restart > 0 && requests.len() >= sent_before_restart);
}

/// A webhook contact point, a default policy to it, and a `match` subscription with one
/// alert per event (grouped by producer and number).
async fn set_up_one_alert_per_event(client: &reqwest::Client, base: &str, hook: &HttpSink) {
    let setup = [
        (
            "/api/v1/contact-points",
            json!({"name": "hook", "kind": "webhook", "address": hook.url("/hook")}),
        ),
        (
            "/api/v1/subscriptions",
            json!({"kind": "match", "title": "every event", "params": {
                "filter": "n >= 0", "group_by": ["producer", "n"]}}),
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
}

/// How many times each alert id reached the hook.
fn alerts_at_the_hook(hook: &HttpSink) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for request in hook.requests() {
        for alert in request.json()["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let id = alert["id"].as_str().expect("alert id").to_string();
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    seen
}

/// Waits until processing caught up with the log, then lists every stored event id.
async fn caught_up_events(client: &reqwest::Client, base: &str) -> HashSet<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health: Value = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz")
            .json()
            .await
            .expect("json");
        if health["lag"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processing did not catch up: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    all_events(client, base, TOKEN, 1000)
        .await
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_string())
        .collect()
}

fn signal(server: &Server, name: &str) {
    let pid = server.child.id().to_string();
    let status = Command::new("kill")
        .args([name, &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

async fn wait_for_exit(server: &mut Server, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "still running {limit:?} after the signal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigint_stops_an_idle_server_cleanly_too() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut server = start_with(data.path(), port, &ENVIRONMENT, Stdio::null()).await;
    signal(&server, "-INT");
    let status = wait_for_exit(&mut server, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_send_still_hanging_at_the_end_of_the_grace_gives_its_delivery_back() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let hook = HttpSink::start(reqwest::StatusCode::OK, "got it").await;
    hook.set_hanging(true);
    let data = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let environment = [
        ("TELLIFY_SHUTDOWN_GRACE_SECS", "2"),
        // Longer than the test: only the give-back makes the delivery due again.
        ("TELLIFY_NOTIFY__LEASE_SECS", "600"),
        ("TELLIFY_NOTIFY__HTTP_TIMEOUT_SECS", "60"),
    ];
    let mut server = start_with(data.path(), port, &environment, Stdio::null()).await;
    set_up_one_alert_per_event(&client, &base, &hook).await;
    let response = client
        .post(format!("{base}/api/v1/events"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body("producer:1 n:1")
        .send()
        .await
        .expect("event");
    assert_eq!(response.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while hook.arrivals() == 0 {
        assert!(Instant::now() < deadline, "the delivery never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stopped_at = Instant::now();
    signal(&server, "-TERM");
    let status = wait_for_exit(&mut server, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
    let took = stopped_at.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "the hanging send had most of the 2 s grace, no more (took {took:?})"
    );
    hook.set_hanging(false);

    let _restarted = start_with(data.path(), port, &environment, Stdio::null()).await;
    let delivery = first_delivery_sent(&client, &base, TOKEN, "not sent after the restart").await;
    assert_eq!(
        delivery["attempts"], 2,
        "the given-back attempt and the send"
    );
    let answered = hook.requests();
    assert_eq!(answered.len(), 1, "answered once, after the restart");
    assert_eq!(
        answered[0].header("idempotency-key").as_deref(),
        delivery["id"].as_str(),
        "with the same key as the interrupted attempt"
    );
}
