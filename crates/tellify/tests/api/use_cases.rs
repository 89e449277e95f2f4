//! The brief's use cases, end to end through the public API.

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tellify::channels::SmtpSecurity;

use crate::helpers::{eventually, spawn_app, spawn_app_with, TestApp};
use crate::support::{HttpSink, SmtpSink};

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

async fn contact_point(app: &TestApp, token: &str, name: &str, kind: &str, address: &str) {
    let response = app
        .post(
            token,
            "/api/v1/contact-points",
            json!({"name": name, "kind": kind, "address": address}),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "contact point {name}"
    );
}

/// `default` policy: every alert to `contact_points` at once.
async fn notify_at_once(app: &TestApp, token: &str, contact_points: Value) {
    let response = app
        .client
        .put(app.url("/api/v1/policies/default"))
        .bearer_auth(token)
        .json(&json!({"rules": [{"contact_points": contact_points}]}))
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success(), "{}", response.status());
}

/// The message as a reader sees it: quoted-printable soft breaks joined, `=3D` undone.
fn unfold_quoted_printable(data: &str) -> String {
    data.replace("=\r\n", "").replace("=3D", "=")
}

/// The SMS bodies the provider stand-in received, in order.
fn sms_bodies(sms: &HttpSink) -> Vec<String> {
    sms.requests()
        .iter()
        .map(|request| {
            form_urlencoded::parse(&request.body)
                .find(|(key, _)| key == "Body")
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// A Berlin user reads alert times on her own clock, named by the zone in force: CET
/// in winter, CEST in summer; an SMS about today says only the time.
#[tokio::test]
async fn a_berlin_user_reads_her_own_time_in_email_and_sms_in_winter_and_summer() {
    let smtp = SmtpSink::start().await;
    let sms = HttpSink::start(StatusCode::CREATED, r#"{"sid": "SM1"}"#).await;
    let smtp_port = smtp.port;
    let sms_url = sms.url("");
    let app = spawn_app_with(move |settings| {
        settings.smtp.host = Some("127.0.0.1".to_string());
        settings.smtp.port = smtp_port;
        settings.smtp.security = SmtpSecurity::None;
        settings.sms.url = sms_url;
        settings.sms.account = Some("AC1".to_string());
        settings.sms.token = Some("sms-secret".to_string());
        settings.sms.from = Some("+15550001111".to_string());
    })
    .await;
    let ann = app.user("ann").await; // Europe/Berlin
    contact_point(&app, &ann, "mail", "email", "ann@example.com").await;
    contact_point(&app, &ann, "phone", "sms", "+4915112345678").await;
    notify_at_once(&app, &ann, json!(["mail", "phone"])).await;
    app.subscribe(
        &ann,
        json!({"kind": "match", "title": "builds",
               "params": {"filter": "status == \"fail\"", "group_by": ["block"],
                          "severity": "critical"}}),
    )
    .await;

    // 22:30 UTC on a November evening is 23:30 in Berlin, standard time.
    app.clock.set("2026-11-23T22:30:00Z".parse().expect("time"));
    app.send_lines(&ann, "block:gc_t status:fail").await;
    app.app.state.notifier.wake();
    let winter = eventually("the winter email and SMS", || async {
        let mails = smtp.mails();
        (mails.len() == 1 && sms.requests().len() == 1).then(|| mails[0].clone())
    })
    .await;
    let body = unfold_quoted_printable(&winter.data);
    assert!(
        body.contains("[CRITICAL] builds [block=gc_t]")
            && body.contains("(firing since 2026-11-23 23:30 CET, seen 1x)"),
        "text part: {body}"
    );
    assert!(
        body.contains("<em>(firing since 2026-11-23 23:30 CET, seen 1x)</em>"),
        "html part: {body}"
    );
    assert!(!body.contains("UTC"), "no time in UTC: {body}");
    let texts = sms_bodies(&sms);
    assert!(texts[0].starts_with("23:30 CET "), "{texts:?}");

    // 12:05 UTC on the first of July is 14:05 in Berlin, summer time.
    app.clock.set("2027-07-01T12:05:00Z".parse().expect("time"));
    app.send_lines(&ann, "block:gc_u status:fail").await;
    app.app.state.notifier.wake();
    let summer = eventually("the summer email and SMS", || async {
        let mails = smtp.mails();
        (mails.len() == 2 && sms.requests().len() == 2).then(|| mails[1].clone())
    })
    .await;
    let body = unfold_quoted_printable(&summer.data);
    assert!(
        body.contains("[CRITICAL] builds [block=gc_u]")
            && body.contains("(firing since 2027-07-01 14:05 CEST, seen 1x)"),
        "{body}"
    );
    assert!(!body.contains("UTC"), "no time in UTC: {body}");
    let texts = sms_bodies(&sms);
    assert!(texts[1].starts_with("14:05 CEST "), "{texts:?}");
}

/// A webhook's `text` is for people (the owner's zone, named); its `alerts[]` are for
/// programs and keep RFC 3339 in UTC.
#[tokio::test]
async fn a_webhook_text_is_in_the_owners_zone_and_its_json_times_stay_rfc_3339() {
    let hook = HttpSink::start(StatusCode::OK, "ok").await;
    let app = spawn_app().await;
    let ann = app.user("ann").await; // Europe/Berlin
    contact_point(&app, &ann, "hook", "webhook", &hook.url("/hook")).await;
    notify_at_once(&app, &ann, json!(["hook"])).await;
    app.subscribe(
        &ann,
        json!({"kind": "match", "title": "builds",
               "params": {"filter": "status == \"fail\""}}),
    )
    .await;
    app.clock.set("2027-07-01T21:30:00Z".parse().expect("time"));
    app.send_lines(&ann, "block:gc_t status:fail").await;
    app.app.state.notifier.wake();
    let request = eventually("the webhook", || async { hook.requests().first().cloned() }).await;
    let body = request.json();
    let text = body["text"].as_str().expect("text");
    assert!(
        text.contains("firing since 2027-07-01 23:30 CEST"),
        "{text}"
    );
    let alert = &body["alerts"][0];
    assert_eq!(alert["first_seen"], "2027-07-01T21:30:00Z", "{body}");
    assert_eq!(alert["last_seen"], "2027-07-01T21:30:00Z", "{body}");
}
