//! `GET /api/v1/stream`: events and alert changes, each caller seeing only their alerts.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use crate::helpers::{spawn_app, TestApp};

/// Collects server-sent text from the stream until `until` appears (or 5 s pass).
pub(crate) async fn read_until(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    seen: &mut String,
    until: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains(until) {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {until:?}; got {seen}"));
        let chunk = chunk.expect("stream open").expect("chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

pub(crate) async fn open(
    app: &TestApp,
    token: &str,
    query: &str,
) -> impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin {
    let response = app.get(token, &format!("/api/v1/stream{query}")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut stream = Box::pin(response.bytes_stream());
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "event: ready").await;
    stream
}

#[tokio::test]
async fn the_stream_shows_events_and_only_the_callers_alerts() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    app.subscribe(
        &ann,
        json!({"kind": "match", "title": "fails", "params": {"filter": "status == \"fail\""}}),
    )
    .await;
    let mut ann_stream = open(&app, &ann, "").await;
    let mut bob_stream = open(&app, &bob, "?filter=status%20%3D%3D%20%22fail%22").await;

    app.send_lines(&ann, "block:gc_t status:good\nblock:gc_t status:fail")
        .await;
    let mut ann_seen = String::new();
    read_until(&mut ann_stream, &mut ann_seen, "event: alert").await;
    assert!(
        ann_seen.contains("\"status\":\"good\""),
        "unfiltered stream has every event"
    );
    assert!(ann_seen.contains("\"state\":\"firing\""));
    assert!(ann_seen.contains("\"action\":\"fired\""));

    app.send_lines(&ann, "block:marker status:fail").await;
    let mut bob_seen = String::new();
    read_until(&mut bob_stream, &mut bob_seen, "marker").await;
    assert!(
        !bob_seen.contains("\"status\":\"good\""),
        "bob's filter drops good builds: {bob_seen}"
    );
    assert!(bob_seen.contains("event: event"));
    assert!(
        !bob_seen.contains("event: alert"),
        "ann's alert is not bob's: {bob_seen}"
    );
}

#[tokio::test]
async fn reconnecting_with_last_event_id_replays_what_was_missed() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let ids = app.send_lines(&ann, "n:1\nn:2\nn:3\nn:4").await;
    let second = app
        .get_json(&ann, &format!("/api/v1/events/{}", ids[1]))
        .await;
    let seq = second["seq"].as_i64().unwrap();
    let response = app
        .client
        .get(app.url("/api/v1/stream?filter=n%20%21%3D%204"))
        .bearer_auth(&ann)
        .header("last-event-id", seq.to_string())
        .send()
        .await
        .unwrap();
    let mut stream = Box::pin(response.bytes_stream());
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "\"n\":3").await;
    app.send_lines(&ann, "n:5").await;
    read_until(&mut stream, &mut seen, "\"n\":5").await;
    assert!(
        !seen.contains("\"n\":1") && !seen.contains("\"n\":2"),
        "only what came after: {seen}"
    );
    assert!(
        !seen.contains("\"n\":4"),
        "the filter applies to the replay: {seen}"
    );
    assert_eq!(seen.matches("\"n\":3").count(), 1, "no repeats: {seen}");
}
