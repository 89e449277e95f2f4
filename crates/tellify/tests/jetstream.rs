//! The JetStream event log (`serve --store postgres://… --log nats://…`), in-process
//! against a throwaway `nats-server` (every write synced) and a fresh PostgreSQL schema:
//! what an acknowledgement means, retries on another node, batches whose node died
//! between JetStream and PostgreSQL, a NATS crash, and what is refused.

use std::time::Duration;

use async_nats::jetstream;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tellify_model::{EventInput, StoredEvent};
use tellify_store::postgres::testing::TestDatabase;

use crate::helpers::{eventually, spawn_app_with, TestApp};
use crate::support::nats::{publish_batch, stream_state, TestNats, STREAM, SUBJECT};

async fn node(database: &TestDatabase, nats: &TestNats) -> TestApp {
    let (store, log) = (database.url(), nats.url());
    spawn_app_with(move |settings| {
        settings.store = Some(store);
        settings.log = Some(log);
    })
    .await
}

async fn jetstream_of(nats: &TestNats) -> jetstream::Context {
    nats.jetstream().await
}

/// How many messages the event log's stream holds.
async fn logged_messages(nats: &TestNats) -> u64 {
    stream_state(&nats.jetstream().await).await.messages
}

async fn post_events(app: &TestApp, token: &str, body: &Value) -> (StatusCode, Value) {
    let response = app.post(token, "/api/v1/events", body.clone()).await;
    let status = response.status();
    (status, response.json().await.expect("json"))
}

async fn stored_events(app: &TestApp) -> Vec<Value> {
    app.get_json(&app.admin, "/api/v1/events?limit=1000").await["items"]
        .as_array()
        .expect("items")
        .clone()
}

fn ids(answer: &Value) -> Vec<String> {
    answer["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn a_batch_is_logged_once_stored_once_and_a_retry_on_another_node_is_a_duplicate() {
    let nats = TestNats::start("8MB");
    let database = TestDatabase::create().await.expect("test database");
    let first = node(&database, &nats).await;
    let mut second = node(&database, &nats).await;
    second.admin = first.admin.clone();
    let ann = first.user("ann").await;
    first
        .subscribe(
            &ann,
            json!({"kind": "threshold", "title": "disks", "params": {
                "field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]}}),
        )
        .await;

    // The stream is made as the settings say: files, one replica, a two-minute window.
    let mut stream = jetstream_of(&nats)
        .await
        .get_stream(STREAM)
        .await
        .expect("the stream exists");
    let config = stream.info().await.expect("info").config.clone();
    assert_eq!(config.storage, jetstream::stream::StorageType::File);
    assert_eq!(config.num_replicas, 1);
    assert_eq!(config.duplicate_window, Duration::from_secs(120));
    assert_eq!(config.subjects, vec![SUBJECT.to_string()]);

    let batch = json!([
        {"idempotency_key": "k-1", "fields": {"fs": "/a", "usage": 50}},
        {"idempotency_key": "k-2", "fields": {"fs": "/b", "usage": 93}},
    ]);
    let (status, answer) = post_events(&first, &ann, &batch).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["duplicates"], 0, "{answer}");
    assert_eq!(logged_messages(&nats).await, 1);
    let logged = ids(&answer);

    // The same batch through the other node: JetStream knows its id, one copy stays.
    let (status, retry) = post_events(&second, &ann, &batch).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retry}");
    assert_eq!(retry["duplicates"], 2, "{retry}");
    assert_eq!(ids(&retry), logged);
    assert_eq!(
        logged_messages(&nats).await,
        1,
        "the retry was logged again"
    );
    let stored = stored_events(&first).await;
    assert_eq!(stored.len(), 2, "{stored:?}");

    // The events were processed as on any store.
    let alert = eventually("the /b alert", || async {
        first
            .alerts(&ann, "state=firing")
            .await
            .into_iter()
            .find(|alert| alert["group_key"] == "fs=/b")
    })
    .await;
    assert_eq!(alert["severity"], "warning");

    // A batch with an event without a key is a batch of its own each time, as on SQLite.
    let keyless = json!([{"fields": {"fs": "/c", "usage": 10}}]);
    for _ in 0..2 {
        let (status, answer) = post_events(&second, &ann, &keyless).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["duplicates"], 0, "{answer}");
    }
    assert_eq!(logged_messages(&nats).await, 3);
    assert_eq!(stored_events(&first).await.len(), 4);
    second.stop().await;
    first.stop().await;
}

/// A one-event batch of `ann` as the ingest node logs it: the message body, and the event
/// ([`publish_batch`] logs it under the `Nats-Msg-Id` a node gives it, so an HTTP retry of
/// it is JetStream's duplicate).
fn logged_batch(key: &str, usage: u32) -> (Value, StoredEvent) {
    let input: EventInput = serde_json::from_value(json!({
        "idempotency_key": key, "fields": {"fs": "/lost", "usage": usage}}))
    .expect("input");
    let event = StoredEvent::from_input(
        input,
        Some("ann".to_string()),
        "2026-11-23T09:00:00Z".parse().expect("time"),
        0,
    );
    (json!({"events": [event]}), event)
}

#[tokio::test]
async fn a_batch_whose_node_died_after_logging_it_is_stored_by_the_recoverer() {
    let nats = TestNats::start("8MB");
    let database = TestDatabase::create().await.expect("test database");
    let app = node(&database, &nats).await;
    let ann = app.user("ann").await;
    app.subscribe(
        &ann,
        json!({"kind": "threshold", "title": "disks", "params": {
            "field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]}}),
    )
    .await;
    let js = jetstream_of(&nats).await;
    // Something that is not a batch of ours never holds the log up.
    js.publish(SUBJECT, "not a batch".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    // What a node that died right after JetStream's acknowledgement leaves behind.
    let (body, event) = logged_batch("lost-1", 99);
    js.publish(SUBJECT, serde_json::to_vec(&body).expect("json").into())
        .await
        .expect("publish")
        .await
        .expect("ack");

    let stored = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let stored = stored_events(&app).await;
            if !stored.is_empty() {
                return stored;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the recoverer stores the batch within 15 s");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["id"], event.id.as_str());
    assert_eq!(stored[0]["idempotency_key"], "lost-1");
    let alert = eventually("the alert of the recovered event", || async {
        app.alerts(&ann, "state=firing").await.into_iter().next()
    })
    .await;
    assert_eq!(alert["group_key"], "fs=/lost");
    assert_eq!(alert["severity"], "critical");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("tellify_event_log_recovered_total 1"),
        "{}",
        metrics
            .lines()
            .filter(|line| line.contains("recovered"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Checked positions are remembered: a restart does not store the batch again.
    let admin = app.admin.clone();
    app.stop().await;
    let mut again = node(&database, &nats).await;
    again.admin = admin;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(stored_events(&again).await.len(), 1);
    again.stop().await;
}

#[tokio::test]
async fn a_retry_of_a_batch_whose_node_died_gets_the_logged_copy() {
    let nats = TestNats::start("8MB");
    let database = TestDatabase::create().await.expect("test database");
    let app = node(&database, &nats).await;
    let ann = app.user("ann").await;
    // The dead node logged the batch under the id a node gives it (producer and keys).
    let (_, event) = logged_batch("retried-1", 10);
    publish_batch(&jetstream_of(&nats).await, std::slice::from_ref(&event)).await;
    // The producer got no answer and retries at once, before the recoverer would act.
    let (status, answer) = post_events(
        &app,
        &ann,
        &json!([{"idempotency_key": "retried-1", "fields": {"fs": "/lost", "usage": 10}}]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(ids(&answer), vec![event.id.clone()], "{answer}");
    assert_eq!(logged_messages(&nats).await, 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stored = stored_events(&app).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_batch_larger_than_a_nats_message_is_refused_whole_with_413() {
    let nats = TestNats::start("64KB");
    let database = TestDatabase::create().await.expect("test database");
    let app = node(&database, &nats).await;
    let ann = app.user("ann").await;
    let batch = Value::Array(
        (0..1000)
            .map(|n| json!({"idempotency_key": format!("big-{n}"), "fields": {"n": n, "pad": "x".repeat(40)}}))
            .collect(),
    );
    let (status, answer) = post_events(&app, &ann, &batch).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    let detail = answer["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("max_payload of 65536"), "{answer}");
    assert!(detail.contains("nothing was stored"), "{answer}");
    assert_eq!(logged_messages(&nats).await, 0);
    assert!(stored_events(&app).await.is_empty());
    // A smaller batch goes through.
    let (status, answer) = post_events(&app, &ann, &json!([{"fields": {"n": 1}}])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    app.stop().await;
}

/// The server's `max_payload` bounds a message with its headers, and a node logs a keyed
/// batch with a `Nats-Msg-Id`: a batch that would fit only without that header is just as
/// impossible to log, so it must be refused with 413 like any larger one — a 503 would
/// have its producer retry it forever.
#[tokio::test]
async fn a_batch_too_large_only_with_its_message_id_header_is_refused_with_413() {
    let nats = TestNats::start("64KB");
    let database = TestDatabase::create().await.expect("test database");
    let app = node(&database, &nats).await;
    let ann = app.user("ann").await;
    // `pad` bytes of padding in fields of at most 8000 (an event's longest string is 8192).
    let padded = |pad: usize, key: usize| {
        let mut fields = serde_json::Map::new();
        for (n, start) in (0..pad).step_by(8000).enumerate() {
            fields.insert(format!("p{n}"), json!("x".repeat((pad - start).min(8000))));
        }
        json!([{"idempotency_key": format!("edge-{key}"), "fields": fields}])
    };
    // Find the smallest padding that is not accepted; every answer on the way must be
    // 202 or 413. Around that edge lie the batches whose header tips them over.
    let (mut fits, mut too_large) = (0, 70_000);
    let mut answers = Vec::new();
    let mut key = 0;
    while too_large - fits > 1 {
        key += 1;
        let pad = (fits + too_large) / 2;
        let (status, answer) = post_events(&app, &ann, &padded(pad, key)).await;
        answers.push((pad, status));
        match status {
            StatusCode::ACCEPTED => fits = pad,
            StatusCode::PAYLOAD_TOO_LARGE => too_large = pad,
            _ => {
                panic!("a batch with {pad} bytes of padding: {status} {answer}; so far {answers:?}")
            }
        }
    }
    assert!(fits > 60_000, "{answers:?}");
    app.stop().await;
}

#[tokio::test]
async fn what_jetstream_acknowledged_survives_a_kill_9_of_nats_and_ingest_resumes() {
    let mut nats = TestNats::start("8MB");
    let database = TestDatabase::create().await.expect("test database");
    let app = node(&database, &nats).await;
    let ann = app.user("ann").await;
    for n in 0..20 {
        let (status, answer) = post_events(
            &app,
            &ann,
            &json!([{"idempotency_key": format!("before-{n}"), "fields": {"n": n}}]),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    let health = app.get_json(&app.admin, "/healthz").await;
    assert_eq!(health["log"], "connected", "{health}");
    nats.kill_and_restart();
    assert_eq!(logged_messages(&nats).await, 20, "{}", nats.log_text());
    // The node reconnects on its own; until then a producer is told to retry.
    let answer = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (status, answer) = post_events(
                &app,
                &ann,
                &json!([{"idempotency_key": "after", "fields": {"n": 99}}]),
            )
            .await;
            if status == StatusCode::ACCEPTED {
                return answer;
            }
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("ingest resumes within 20 s of NATS coming back");
    assert_eq!(ids(&answer).len(), 1);
    let health = app.get_json(&app.admin, "/healthz").await;
    assert_eq!(health["log"], "connected", "{health}");
    assert_eq!(logged_messages(&nats).await, 21);
    assert_eq!(stored_events(&app).await.len(), 21);
    app.stop().await;
}

#[tokio::test]
async fn a_stream_kept_in_memory_is_refused_and_a_log_needs_postgres() {
    let nats = TestNats::start("8MB");
    let database = TestDatabase::create().await.expect("test database");
    jetstream_of(&nats)
        .await
        .create_stream(jetstream::stream::Config {
            name: "VOLATILE".to_string(),
            subjects: vec!["tellify.events.VOLATILE".to_string()],
            storage: jetstream::stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .expect("memory stream");
    let data = tempfile::tempdir().expect("temp dir");
    let mut settings = tellify::config::Settings {
        listen: "127.0.0.1:0".parse().expect("address"),
        data: data.path().to_path_buf(),
        store: Some(database.url()),
        log: Some(nats.url()),
        ..Default::default()
    };
    settings.jetstream.stream = "VOLATILE".to_string();
    let clock = std::sync::Arc::new(tellify::clock::SystemClock);
    let refused = tellify::app::start(settings.clone(), clock.clone(), None::<String>)
        .await
        .err()
        .expect("a memory stream is refused");
    let text = format!("{refused:#}");
    assert!(text.contains("keeps its messages in memory"), "{text}");

    // On SQLite the store is the log.
    settings.store = None;
    let refused = tellify::app::start(settings, clock, None::<String>)
        .await
        .err()
        .expect("a log on SQLite is refused");
    let text = format!("{refused:#}");
    assert!(
        text.contains("log: an external event log needs a PostgreSQL store"),
        "{text}"
    );
}
