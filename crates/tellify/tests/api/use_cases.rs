//! The brief's use cases, end to end through the public API.

use jiff::SignedDuration;
use serde_json::json;

use crate::helpers::{eventually, spawn_app};

#[tokio::test]
async fn threshold_fires_warn_then_critical_for_the_right_filesystem_and_resolves() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    app.subscribe(
        &ann,
        json!({"kind": "threshold", "title": "disks", "params": {
            "field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]}}),
    )
    .await;
    let all: String = (0..10)
        .map(|i| format!("fs:/sarc/fs{i} usage:50\n"))
        .collect();
    app.send_lines(&ann, &all).await;
    assert!(app.alerts(&ann, "").await.is_empty());

    app.send_lines(&ann, "fs:/sarc/fs3 usage:93.5\nfs:/sarc/fs4 usage:60")
        .await;
    let alerts = app.alerts(&ann, "state=firing").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["group_key"], "fs=/sarc/fs3");
    assert_eq!(alerts[0]["severity"], "warning");

    app.send_lines(&ann, "fs:/sarc/fs3 usage:97.2").await;
    let alerts = app.alerts(&ann, "state=firing").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["severity"], "critical");
    assert_eq!(alerts[0]["previous_severity"], "warning");
    assert_eq!(alerts[0]["count"], 2);

    app.send_lines(&ann, "fs:/sarc/fs3 usage:40").await;
    assert!(app.alerts(&ann, "state=firing").await.is_empty());
    let resolved = app.alerts(&ann, "state=resolved").await;
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["group_key"], "fs=/sarc/fs3");
    let detail = app
        .get_json(
            &ann,
            &format!("/api/v1/alerts/{}", resolved[0]["id"].as_str().unwrap()),
        )
        .await;
    let actions: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["fired", "severity_raised", "resolved"]);
}

#[tokio::test]
async fn a_match_subscription_fires_only_for_its_blocks_failures() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    app.subscribe(
        &ann,
        json!({"kind": "match", "title": "gc_t fails", "params": {
        "filter": "block == \"gc_t\" && status == \"fail\"", "severity": "critical"}}),
    )
    .await;
    app.subscribe(
        &bob,
        json!({"kind": "match", "title": "ux fails", "params": {
        "filter": "block == \"ux\" && status == \"fail\""}}),
    )
    .await;
    let mut lines = String::new();
    for block in ["gc_t", "ux", "mem", "io", "pll"] {
        for step in ["syn", "place", "route_opt"] {
            let status = if block == "gc_t" && step == "route_opt" || block == "mem" {
                "fail"
            } else {
                "good"
            };
            lines.push_str(&format!("project:vr0 block:{block} step:{step} user:gpupi runtag:r1 status:{status} tns:-50\n"));
        }
    }
    app.send_lines(&ann, &lines).await;
    let ann_alerts = app.alerts(&ann, "").await;
    assert_eq!(ann_alerts.len(), 1);
    assert_eq!(ann_alerts[0]["count"], 1);
    assert_eq!(ann_alerts[0]["severity"], "critical");
    assert!(
        app.alerts(&bob, "").await.is_empty(),
        "ux never failed and ann's alert is not bob's"
    );

    app.send_lines(&bob, "project:vr0 block:gc_t step:syn status:fail")
        .await;
    assert_eq!(app.alerts(&ann, "").await[0]["count"], 2);
}

#[tokio::test]
async fn count_fires_once_above_four_distinct_blocks_and_its_derived_event_reaches_another_user() {
    let app = spawn_app().await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let count_id = app
        .subscribe(
            &carol,
            json!({"kind": "count", "title": "place storm", "params": {
            "filter": "step == \"place\" && status == \"fail\"",
            "distinct": "block", "group_by": ["project", "runtag"], "limit": 4,
            "emit": {"type": "place.mass_failure", "severity": "critical"}}}),
        )
        .await;
    app.subscribe(
        &dave,
        json!({"kind": "match", "title": "mass failures", "params": {
        "filter": "event.type == \"place.mass_failure\""}}),
    )
    .await;
    let fail = |block: &str, runtag: &str| {
        format!("project:vr0 block:{block} step:place status:fail runtag:{runtag}\n")
    };
    for (i, block) in ["b1", "b2", "b3", "b4"].iter().enumerate() {
        app.send_lines(&carol, &fail(block, "r1")).await;
        assert!(
            app.alerts(&carol, "").await.is_empty(),
            "fired at {} blocks",
            i + 1
        );
    }
    // A repeat of a block and the same blocks in another run do not count.
    app.send_lines(&carol, &fail("b2", "r1")).await;
    let other_run: String = ["b5", "b6", "b7", "b8"]
        .iter()
        .map(|b| fail(b, "r2"))
        .collect();
    app.send_lines(&carol, &other_run).await;
    app.send_lines(
        &carol,
        "project:vr0 block:b9 step:route status:fail runtag:r1",
    )
    .await;
    assert!(app.alerts(&carol, "").await.is_empty());

    app.send_lines(&carol, &fail("b5", "r1")).await;
    app.send_lines(&carol, &fail("b6", "r1")).await;
    let alerts = app.alerts(&carol, "").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["subscription_id"], count_id.as_str());
    assert_eq!(alerts[0]["group_key"], "project=vr0 runtag=r1");
    assert_eq!(
        alerts[0]["count"], 1,
        "fires once, not again at the sixth block"
    );

    let dave_alerts = app.alerts(&dave, "").await;
    assert_eq!(dave_alerts.len(), 1);
    assert_eq!(
        dave_alerts[0]["severity"], "critical",
        "match takes the derived event's severity"
    );
    assert_eq!(dave_alerts[0]["count"], 1);
    let derived = app
        .get_json(
            &dave,
            "/api/v1/events?filter=event.type%20%3D%3D%20%22place.mass_failure%22",
        )
        .await;
    let items = derived["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["depth"], 1);
    assert_eq!(items[0]["severity"], "critical");
    assert_eq!(items[0]["fields"]["runtag"], "r1");
    assert_eq!(items[0]["source"]["producer"], "tellify");
}

#[tokio::test]
async fn absence_fires_when_the_heartbeat_stops_and_resolves_when_it_returns() {
    let app = spawn_app().await;
    let eve = app.user("eve").await;
    app.subscribe(
        &eve,
        json!({"kind": "absence", "title": "dashboard alive", "params": {
        "filter": "event.type == \"heartbeat\"", "group_by": ["host"], "interval": "90s"}}),
    )
    .await;
    for _ in 0..5 {
        app.send_lines(&eve, "type:heartbeat host:caddashboard")
            .await;
        app.advance(SignedDuration::from_secs(60)).await;
    }
    app.settle().await;
    assert!(
        app.alerts(&eve, "").await.is_empty(),
        "beats every minute keep it quiet"
    );

    // The last beat was 60 s ago; 45 s more passes the 90 s interval.
    app.advance(SignedDuration::from_secs(45)).await;
    let alerts = eventually("the absence alert", || async {
        let alerts = app.alerts(&eve, "state=firing").await;
        (!alerts.is_empty()).then_some(alerts)
    })
    .await;
    assert_eq!(alerts[0]["group_key"], "host=caddashboard");
    assert_eq!(alerts[0]["severity"], "critical");

    app.advance(SignedDuration::from_secs(600)).await;
    app.send_lines(&eve, "type:heartbeat host:caddashboard")
        .await;
    let alerts = app.alerts(&eve, "").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["state"], "resolved");
}
