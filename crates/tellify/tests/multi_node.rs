//! Several nodes on one PostgreSQL database: every node's live stream shows what any node
//! did, and the jobs that must run once (the metric poller, a syslog exporter) run on
//! exactly one node and move to another when it stops.
//!
//! Two in-process apps share a fresh schema. The first one started makes `admin` and
//! takes the processing lease, so events are POSTed to it and its worker fires the
//! alerts; the second one's bootstrap token is ignored (users exist), so both are driven
//! with the first one's `admin` token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tellify::export::syslog::{SyslogSettings, Transport, What};
use tellify_store::postgres::testing::TestDatabase;
use tokio::io::AsyncReadExt;

use crate::api::stream::{open, read_until};
use crate::helpers::{spawn_app_with, TestApp};
use crate::support::HttpSink;

/// How long a test waits for something another node does.
const WAIT: Duration = Duration::from_secs(15);

async fn node(
    database: &TestDatabase,
    adjust: impl FnOnce(&mut tellify::config::Settings),
) -> TestApp {
    let url = database.url();
    spawn_app_with(move |settings| {
        settings.store = Some(url);
        adjust(settings);
    })
    .await
}

/// Two nodes on one fresh database; the second is driven with the first one's `admin`.
async fn two_nodes(
    adjust: impl Fn(&mut tellify::config::Settings) + Clone,
) -> (TestDatabase, TestApp, TestApp) {
    let database = TestDatabase::create().await.expect("test database");
    let first = node(&database, adjust.clone()).await;
    let mut second = node(&database, adjust).await;
    second.admin = first.admin.clone();
    (database, first, second)
}

/// Waits (up to [`WAIT`]) until `check` holds.
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stream_on_one_node_shows_events_and_alerts_made_on_another() {
    let (_database, a, b) = two_nodes(|_| {}).await;
    let ann = a.user("ann").await;
    let bob = a.user("bob").await;
    a.subscribe(
        &ann,
        json!({"kind": "match", "title": "fails", "params": {"filter": "status == \"fail\""}}),
    )
    .await;
    let mut ann_on_b = open(&b, &ann, "").await;
    let mut bob_on_b = open(&b, &bob, "?filter=status%20%3D%3D%20%22fail%22").await;

    a.send_lines(&ann, "block:mn_a status:good\nblock:mn_a status:fail")
        .await;
    let mut ann_seen = String::new();
    read_until(&mut ann_on_b, &mut ann_seen, "event: alert").await;
    assert!(
        ann_seen.contains("\"status\":\"good\""),
        "an unfiltered stream on b has every event posted to a: {ann_seen}"
    );
    assert!(ann_seen.contains("\"state\":\"firing\""), "{ann_seen}");
    assert!(ann_seen.contains("\"action\":\"fired\""), "{ann_seen}");

    a.send_lines(&ann, "block:mn_marker status:fail").await;
    let mut bob_seen = String::new();
    read_until(&mut bob_on_b, &mut bob_seen, "mn_marker").await;
    assert!(
        !bob_seen.contains("\"status\":\"good\""),
        "bob's filter drops good builds on b as on a: {bob_seen}"
    );
    assert!(
        !bob_seen.contains("event: alert"),
        "ann's alert is not bob's on b either: {bob_seen}"
    );
    assert_eq!(
        bob_seen.matches("\"block\":\"mn_a\"").count(),
        1,
        "each event once: {bob_seen}"
    );
}

/// A node whose connection to the other nodes' announcements is cut (its PostgreSQL
/// backend terminated) connects again and tells its live streams to resync: what other
/// nodes did meanwhile was not relayed, and a client must read it from the log.
#[tokio::test]
async fn a_node_that_lost_the_announcements_tells_its_streams_to_resync() {
    let (database, a, b) = two_nodes(|_| {}).await;
    let ann = a.user("ann").await;
    let mut ann_on_b = open(&b, &ann, "").await;
    let mut seen = String::new();
    let channel = tellify_store::postgres::announcement_channel(database.schema());
    // Every listening connection of this schema's nodes (its channel is named after it).
    let output = std::process::Command::new("psql")
        .args([&tellify_store::postgres::testing::server_url(), "-At", "-c"])
        .arg(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query LIKE 'LISTEN%' AND query LIKE '%{channel}%' AND pid <> pg_backend_pid()"
        ))
        .output()
        .expect("psql runs");
    assert!(output.status.success(), "{output:?}");
    let cut = String::from_utf8_lossy(&output.stdout).lines().count();
    assert!(cut >= 2, "both nodes listen: {cut}");
    read_until(&mut ann_on_b, &mut seen, "event: resync").await;
    assert!(seen.contains("Last-Event-ID"), "{seen}");
    // The streams go on: an event posted on a after the reconnect shows on b.
    a.send_lines(&ann, "block:after_resync status:good").await;
    read_until(&mut ann_on_b, &mut seen, "after_resync").await;
}

#[tokio::test]
async fn a_persons_ack_on_one_node_shows_on_another_nodes_stream() {
    let (_database, a, b) = two_nodes(|_| {}).await;
    let ann = a.user("ann").await;
    a.subscribe(
        &ann,
        json!({"kind": "threshold", "title": "disk", "params": {"field": "usage", "warn": 90, "critical": 97}}),
    )
    .await;
    a.send_lines(&ann, "usage:92").await;
    let alerts = a.alerts(&ann, "").await;
    let id = alerts[0]["id"].as_str().expect("alert id").to_string();
    let mut ann_on_b = open(&b, &ann, "?events=false").await;

    let response = a
        .post(
            &ann,
            &format!("/api/v1/alerts/{id}/ack"),
            json!({"note": "on it"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut seen = String::new();
    read_until(&mut ann_on_b, &mut seen, "\"action\":\"acked\"").await;
    let acked: Value = seen
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| data.contains("\"action\":\"acked\""))
        .map(|data| serde_json::from_str(data).expect("alert json"))
        .next()
        .expect("the ack's alert item");
    assert_eq!(acked["alert"]["id"], id.as_str());
    assert_eq!(
        acked["alert"]["acked"], true,
        "b shows the alert as it is now"
    );
    assert_eq!(acked["alert"]["acked_by"], "ann");
    let changes = acked["changes"].as_array().expect("changes");
    assert_eq!(
        changes.len(),
        1,
        "only the change, not the whole history: {acked}"
    );
    assert_eq!(changes[0]["action"], "acked");
}

/// The metric poller polls on one node only, and on the other once the first stops.
#[tokio::test]
async fn the_metric_poller_runs_on_one_node_and_moves_when_it_stops() {
    let backend = HttpSink::start(StatusCode::OK, r#"{"value": 1}"#).await;
    let (_database, a, b) = two_nodes(|settings| {
        settings.pollers.backoff_initial_ms = 5;
    })
    .await;
    a.subscribe(
        &a.admin,
        json!({"kind": "metric", "title": "load", "params": {
            "backend": "http-json", "url": backend.url(""), "query": "load",
            "interval": "1m", "unknown_after": 3,
            "warn": {"value": 5.0, "message": "load is high"},
            "critical": {"value": 10.0, "message": "load is critical"},
        }}),
    )
    .await;
    for round in 1..=3 {
        for node in [&a, &b] {
            node.advance(SignedDuration::from_secs(60)).await;
            node.app.poller.wake();
        }
        wait_until("a poll", || backend.arrivals() >= round).await;
        // Long enough for a second poller's request to arrive, had there been one.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            backend.arrivals(),
            round,
            "one poll per interval over both nodes"
        );
    }
    assert_eq!(
        a.app.poller.completed(),
        3,
        "the first node holds the poller's lease"
    );
    assert_eq!(b.app.poller.completed(), 0, "the second node stands by");

    a.app.stop().await.expect("the first node stops");
    let deadline = tokio::time::Instant::now() + WAIT;
    while b.app.poller.completed() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second node never took the poller over"
        );
        b.advance(SignedDuration::from_secs(60)).await;
        b.app.poller.wake();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(backend.arrivals() > 3);
}

/// A node that died without giving the poller's lease up is replaced once the lease ran
/// out, and not before.
#[tokio::test]
async fn the_metric_poller_moves_once_a_dead_nodes_lease_ran_out() {
    use tellify_store::Store;
    let backend = HttpSink::start(StatusCode::OK, r#"{"value": 1}"#).await;
    let database = TestDatabase::create().await.expect("test database");
    let store = tellify_store::postgres::PostgresStore::open(&database.url())
        .await
        .expect("store");
    let start: jiff::Timestamp = "2026-11-23T09:00:00Z".parse().expect("time");
    let dead_until = start + SignedDuration::from_secs(6);
    let taken = store
        .acquire_lease(
            tellify::pollers::POLLER_LEASE,
            "a-node-that-died",
            start,
            dead_until,
        )
        .await
        .expect("lease");
    assert!(taken.is_some());
    let b = node(&database, |_| {}).await;
    b.subscribe(
        &b.admin,
        json!({"kind": "metric", "title": "load", "params": {
            "backend": "http-json", "url": backend.url(""), "query": "load",
            "interval": "1m", "unknown_after": 3,
            "warn": {"value": 5.0, "message": "load is high"},
            "critical": {"value": 10.0, "message": "load is critical"},
        }}),
    )
    .await;
    b.advance(SignedDuration::from_secs(5)).await;
    b.app.poller.wake();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(backend.arrivals(), 0, "the dead node's lease still runs");

    let deadline = tokio::time::Instant::now() + WAIT;
    while b.app.poller.completed() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the poller never moved after the lease ran out"
        );
        b.advance(SignedDuration::from_secs(60)).await;
        b.app.poller.wake();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(backend.arrivals() > 0);
}

/// Everything a syslog receiver on loopback was sent, over any number of connections.
struct SyslogReceiver {
    port: u16,
    received: Arc<Mutex<String>>,
}

impl SyslogReceiver {
    async fn start() -> SyslogReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let received = Arc::new(Mutex::new(String::new()));
        let shared = received.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 8192];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 {
                            break;
                        }
                        shared
                            .lock()
                            .expect("lock")
                            .push_str(&String::from_utf8_lossy(&buffer[..read]));
                    }
                });
            }
        });
        SyslogReceiver { port, received }
    }

    fn count(&self, text: &str) -> usize {
        self.received.lock().expect("lock").matches(text).count()
    }
}

/// A syslog exporter sends each event once over both nodes, and the second node resumes
/// from the saved position once the first stops.
#[tokio::test]
async fn a_syslog_exporter_runs_on_one_node_and_the_other_resumes_after_it() {
    let receiver = SyslogReceiver::start().await;
    let port = receiver.port;
    let (_database, a, b) = two_nodes(move |settings| {
        settings.export.syslog = vec![SyslogSettings {
            address: format!("127.0.0.1:{port}"),
            transport: Transport::Tcp,
            what: vec![What::Events],
            retry_initial_ms: 20,
            ..SyslogSettings::default()
        }];
    })
    .await;
    let mut first_ids = Vec::new();
    for n in 1..=3 {
        first_ids.extend(
            a.send_lines(&a.admin, &format!("mn_syslog:first_{n}"))
                .await,
        );
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while receiver.count(&first_ids[2]) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first node's events never reached the receiver: {}",
            receiver.received.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in &first_ids {
        assert_eq!(receiver.count(id), 1, "sent once over both nodes");
    }

    a.app.stop().await.expect("the first node stops");
    let response = b
        .post_raw(
            &b.admin,
            "/api/v1/events",
            "text/plain",
            "mn_syslog:second_1",
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("json");
    let second = body["ids"][0].as_str().expect("id").to_string();
    wait_until("the second node's export of a new event", || {
        receiver.count(&second) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(&second), 1);
    for id in &first_ids {
        assert_eq!(
            receiver.count(id),
            1,
            "the second node resumed after what the first one sent: {}",
            receiver.received.lock().expect("lock")
        );
    }
}

/// A burst of 10,000 events in one batch is announced as runs of positions, not event by
/// event, and a stream on the other node still shows each event once.
#[tokio::test]
async fn a_burst_is_announced_as_runs_and_shown_once_on_the_other_node() {
    const BURST: usize = 10_000;
    let (_database, a, b) = two_nodes(|_| {}).await;
    let mut announcements = b
        .app
        .state
        .store
        .follow_announcements()
        .expect("postgres announces");
    let mut on_b = open(&b, &b.admin, "?alerts=false").await;
    // The listener connects on its own thread; an announcement before it listens is lost.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let lines: Vec<String> = (0..BURST).map(|n| format!("mn_burst:n{n}")).collect();
    let response = a
        .post_raw(&a.admin, "/api/v1/events", "text/plain", lines.join("\n"))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let mut runs = Vec::new();
    let mut covered = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while covered < BURST as i64 {
        let announced = tokio::time::timeout_at(deadline, announcements.recv())
            .await
            .unwrap_or_else(|_| panic!("only {covered} positions announced: {runs:?}"))
            .expect("announcements go on");
        if announced.from != a.app.state.node {
            continue;
        }
        if let tellify_store::Announcement::Events { first, last } = announced.change {
            covered += last - first + 1;
            runs.push((first, last));
        }
    }
    assert!(
        runs.len() <= 3,
        "a batch is a few runs, not one per event: {} runs",
        runs.len()
    );

    // Line by line: the whole text would be searched again on every chunk otherwise.
    let (mut events, mut last_seen, mut pending) = (0, false, String::new());
    let (mut ids, mut odd) = (std::collections::HashSet::new(), Vec::new());
    let last = format!("\"mn_burst\":\"n{}\"", BURST - 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !last_seen {
        let chunk = tokio::time::timeout_at(deadline, on_b.next())
            .await
            .unwrap_or_else(|_| panic!("b showed {events} of {BURST} events"))
            .expect("stream open")
            .expect("chunk");
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            if line.starts_with("event: event") {
                events += 1;
            }
            if let Some(data) = line.strip_prefix("data: ") {
                if !data.contains("mn_burst")
                    || !ids.insert(data.split(',').next().unwrap_or_default().to_string())
                {
                    odd.push(data.to_string());
                }
            }
            last_seen |= line.contains(&last);
        }
    }
    assert_eq!(events, BURST, "each event once on b: {odd:?}");
}

/// How many stored events `producer` made, as one node reads them.
async fn stored_from(app: &TestApp, producer: &str) -> usize {
    crate::support::all_events(&app.client, &app.base, &app.admin, 500)
        .await
        .iter()
        .filter(|event| event["source"]["producer"] == producer)
        .count()
}

/// Sends `body` to `subject` as a request until someone answers (a source subscribes on
/// its own time, and after a node stopped, the other one takes the subject over). Only
/// "no responders" is tried again: a request someone took may have been stored, however
/// late its answer comes, so sending it again would store it twice.
async fn request(client: &async_nats::Client, subject: &str, body: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match client
            .request(subject.to_string(), body.to_string().into())
            .await
        {
            Ok(answer) => {
                return serde_json::from_slice(&answer.payload).expect("json answer");
            }
            Err(error) if error.kind() == async_nats::RequestErrorKind::NoResponders => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "nobody answers on {subject}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("request on {subject}: {error}"),
        }
    }
}

/// A NATS core subject outside a queue group reaches every subscriber, so one node
/// consumes it, and the other once the first stops.
#[tokio::test]
async fn a_nats_subject_outside_a_queue_group_is_consumed_by_one_node() {
    let client = async_nats::connect("nats://127.0.0.1:4222")
        .await
        .expect("NATS answers on 127.0.0.1:4222");
    let subject = format!("tellify-test-mn-{}", tellify_model::new_id().to_lowercase());
    let settings = tellify::sources::nats::NatsSettings {
        url: "nats://127.0.0.1:4222".to_string(),
        subject: subject.clone(),
        stream: None,
        durable: "tellify".to_string(),
        queue_group: String::new(),
        dead_letter_subject: format!("{subject}-dead"),
        prefetch: 8,
        format: tellify::sources::Format::Kv,
    };
    let (_database, a, b) = two_nodes(move |node| node.sources.nats = vec![settings.clone()]).await;
    let producer = format!("nats:{subject}");
    for n in 1..=3 {
        let answer = request(&client, &subject, &format!("mn_nats:first_{n}")).await;
        assert_eq!(answer["accepted"], 1, "{answer}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stored_from(&a, &producer).await,
        3,
        "each message stored once"
    );

    a.app.stop().await.expect("the first node stops");
    let answer = request(&client, &subject, "mn_nats:second_1").await;
    assert_eq!(answer["accepted"], 1, "{answer}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stored_from(&b, &producer).await,
        4,
        "the second node took the subject over"
    );
}
