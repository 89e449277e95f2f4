//! tellify on PostgreSQL (`serve --store postgres://…`), in-process against the machine's
//! server, each test in a fresh schema: one node end to end, then two nodes on one
//! database (the processing lease, the changes each node tells the other).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tellify_store::postgres::testing::TestDatabase;

use crate::helpers::{eventually, spawn_app_with, TestApp};
use crate::support::HttpSink;

async fn node(database: &TestDatabase) -> TestApp {
    let url = database.url();
    spawn_app_with(move |settings| settings.store = Some(url)).await
}

/// A second node on the same database: its bootstrap token is ignored (users exist), so
/// it is given the first node's.
async fn second_node(database: &TestDatabase, first: &TestApp) -> TestApp {
    let mut node = node(database).await;
    node.admin = first.admin.clone();
    node
}

async fn webhook_to(app: &TestApp, token: &str, url: &str) {
    let response = app
        .post(
            token,
            "/api/v1/contact-points",
            json!({"name": "hook", "kind": "webhook", "address": url}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app
        .client
        .put(app.url("/api/v1/policies/default"))
        .bearer_auth(token)
        .json(&json!({"rules": [{"contact_points": ["hook"]}]}))
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success(), "{}", response.status());
}

async fn post_lines(app: &TestApp, token: &str, lines: &str) -> Value {
    let response = app
        .post_raw(token, "/api/v1/events", "text/plain", lines.to_string())
        .await;
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body
}

/// The whole path on PostgreSQL: an event fires a threshold alert, a webhook goes out,
/// the alert resolves; a restart on the same database finds every alert and event.
#[tokio::test]
async fn events_fire_alerts_and_notify_on_postgres_and_survive_a_restart() {
    let database = TestDatabase::create().await.expect("test database");
    let hook = HttpSink::start(StatusCode::OK, "ok").await;
    let app = node(&database).await;
    let ann = app.user("ann").await;
    webhook_to(&app, &ann, &hook.url("/hook")).await;
    app.subscribe(
        &ann,
        json!({"kind": "threshold", "title": "disks", "params": {
            "field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]}}),
    )
    .await;
    app.send_lines(&ann, "fs:/a usage:50\nfs:/b usage:93").await;
    let firing = app.alerts(&ann, "state=firing").await;
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(firing[0]["group_key"], "fs=/b");
    assert_eq!(firing[0]["severity"], "warning");
    app.app.state.notifier.wake();
    let request = eventually("the webhook", || async { hook.requests().first().cloned() }).await;
    assert_eq!(request.json()["alerts"][0]["group_key"], "fs=/b");
    app.send_lines(&ann, "fs:/b usage:10").await;
    assert!(app.alerts(&ann, "state=firing").await.is_empty());
    let admin = app.admin.clone();
    app.stop().await;

    let again = node(&database).await;
    let resolved = again.alerts(&ann, "state=resolved").await;
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    let detail = again
        .get_json(
            &ann,
            &format!("/api/v1/alerts/{}", resolved[0]["id"].as_str().expect("id")),
        )
        .await;
    let actions: Vec<&str> = detail["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|entry| entry["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, vec!["fired", "resolved"]);
    let events = again.get_json(&admin, "/api/v1/events?limit=10").await;
    assert_eq!(
        events["items"].as_array().expect("items").len(),
        3,
        "{events}"
    );
}

/// Two nodes on one database: one processes at a time, whichever node took the event;
/// a subscription made on the node that does not process is used by the one that does;
/// a token revoked on one node is refused by the other at once; when the processing
/// node stops, the other takes over.
#[tokio::test]
async fn two_nodes_share_processing_subscriptions_and_revocations() {
    let database = TestDatabase::create().await.expect("test database");
    let first = node(&database).await;
    // The first node holds the processing lease before the second starts.
    let ann = first.user("ann").await;
    first.send_lines(&ann, "warmup:1").await;
    let second = second_node(&database, &first).await;

    // A subscription made on the second node, an event posted there: the first node's
    // worker (the lease holder) learns of the subscription and fires the alert.
    second
        .subscribe(
            &ann,
            json!({"kind": "match", "title": "builds",
                   "params": {"filter": "status == \"fail\""}}),
        )
        .await;
    post_lines(&second, &ann, "block:b1 status:fail").await;
    let firing = eventually("the alert, fired by the processing node", || async {
        let firing = second.alerts(&ann, "state=firing").await;
        (!firing.is_empty()).then_some(firing)
    })
    .await;
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(
        first.app.state.worker.processed(),
        second.app.state.store.last_seq().await.expect("last seq"),
        "the first node processed everything"
    );
    // The second node follows that progress (its back-pressure and /healthz lag are the
    // cluster's, not frozen at its start).
    let last = second.app.state.store.last_seq().await.expect("last seq");
    tokio::time::timeout(
        Duration::from_secs(5),
        second.app.state.worker.wait_for(last),
    )
    .await
    .expect("the node that does not process sees the progress of the one that does");
    assert_eq!(second.app.state.worker.backlog(), 0);

    // A token revoked on the first node is refused by the second, which had it cached.
    let response = first
        .post(
            &first.admin,
            "/api/v1/tokens",
            json!({"name": "short", "scopes": ["user"], "user": "ann"}),
        )
        .await;
    let created: Value = response.json().await.expect("json");
    let token = created["token"].as_str().expect("token").to_string();
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(
        second.get(&token, "/api/v1/alerts").await.status(),
        StatusCode::OK
    );
    let revoked = first
        .client
        .delete(first.url(&format!("/api/v1/tokens/{id}")))
        .bearer_auth(&first.admin)
        .send()
        .await
        .expect("request");
    assert!(revoked.status().is_success(), "{}", revoked.status());
    eventually("the second node refusing the revoked token", || async {
        (second.get(&token, "/api/v1/alerts").await.status() == StatusCode::UNAUTHORIZED)
            .then_some(())
    })
    .await;

    // The processing node stops (giving its lease up); the second takes over.
    first.stop().await;
    let posted = post_lines(&second, &ann, "block:b2 status:fail").await;
    let id = posted["ids"][0].as_str().expect("id").to_string();
    let last = second.app.state.store.last_seq().await.expect("last seq");
    tokio::time::timeout(
        Duration::from_secs(15),
        second.app.state.worker.wait_for(last),
    )
    .await
    .expect("the second node takes over processing");
    let firing = second.alerts(&ann, "state=firing").await;
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(
        firing[0]["count"], 2,
        "both failures counted once each: {firing:?}"
    );
    let events = second
        .get_json(&second.admin, "/api/v1/events?limit=10")
        .await;
    assert!(
        events["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|event| event["id"] == id.as_str()),
        "{events}"
    );
}

/// A subscription that reached the database without any announcement (as if the node
/// that wrote it died before telling the others, or its announcement is still on the
/// way) is used for the next event all the same: the processing node compares the
/// store's settings generation with every batch.
#[tokio::test]
async fn the_processing_node_uses_a_subscription_it_was_never_told_about() {
    let database = TestDatabase::create().await.expect("test database");
    let first = node(&database).await;
    let ann = first.user("ann").await;
    first.send_lines(&ann, "warmup:1").await;
    let second = second_node(&database, &first).await;
    let store = second.app.state.store.clone();
    let owner = store
        .user_by_name("ann")
        .await
        .expect("read")
        .expect("ann")
        .id;
    let now = jiff::Timestamp::now();
    store
        .insert_subscription(tellify_store::Subscription {
            id: tellify_model::new_id(),
            kind: "match".to_string(),
            title: "silent".to_string(),
            params: json!({"filter": "status == \"fail\""}),
            owner_user: owner,
            owner_group: None,
            enabled: true,
            latching: false,
            created: now,
            updated: now,
            policy: None,
            health: None,
            filter_errors: None,
        })
        .await
        .expect("written straight to the store, unannounced");
    post_lines(&second, &ann, "block:b1 status:fail").await;
    let firing = eventually("the alert of the unannounced subscription", || async {
        let firing = first.alerts(&ann, "state=firing").await;
        (!firing.is_empty()).then_some(firing)
    })
    .await;
    assert_eq!(firing[0]["title"], "silent", "{firing:?}");
}

/// A timer set on the processing node fires once, on the node that takes processing over
/// after the first one stops: an absence subscription's deadline, armed by a heartbeat
/// the first node processed, raises one alert on the second, and a later wake of the
/// timers raises no second one.
#[tokio::test]
async fn a_timer_armed_on_one_node_fires_once_on_the_node_that_takes_over() {
    let database = TestDatabase::create().await.expect("test database");
    let first = node(&database).await;
    let ann = first.user("ann").await;
    first
        .subscribe(
            &ann,
            json!({"kind": "absence", "title": "backup alive", "params": {
                "filter": "job == \"backup\"", "interval": "5m"}}),
        )
        .await;
    first.send_lines(&ann, "job:backup").await;
    let second = second_node(&database, &first).await;
    assert!(first.alerts(&ann, "state=firing").await.is_empty());

    // The first node stops; the deadline passes on the second node's clock.
    first.stop().await;
    second.advance(jiff::SignedDuration::from_secs(301)).await;
    let firing = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            second.advance(jiff::SignedDuration::from_secs(1)).await;
            let firing = second.alerts(&ann, "state=firing").await;
            if !firing.is_empty() {
                return firing;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the second node fires the absence within 15 s of the first one's stop");
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(firing[0]["kind"], "absence");
    // More wakes of the timers, more time: still one alert, fired once.
    for _ in 0..3 {
        second.advance(jiff::SignedDuration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all = second.alerts(&ann, "state=all").await;
    assert_eq!(all.len(), 1, "{all:?}");
    let id = all[0]["id"].as_str().expect("id");
    let detail = second.get_json(&ann, &format!("/api/v1/alerts/{id}")).await;
    let fired = detail["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|entry| entry["action"] == "fired")
        .count();
    assert_eq!(fired, 1, "{detail}");
}
