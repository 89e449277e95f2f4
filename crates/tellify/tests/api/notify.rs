//! Notifications end to end: policies route alerts to real receivers (an SMTP server and
//! local HTTP sinks), digests gang alerts, the outbox retries, and offboarding leaves
//! nothing behind. Time moves only through the injected clock.

use hmac::{Hmac, Mac};
use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use tellify::channels::SmtpSecurity;

use crate::helpers::{eventually, problem, spawn_app, spawn_app_with, TestApp};
use crate::support::{free_port, HttpSink, SmtpSink};

const WEEKDAYS: [&str; 5] = ["mon", "tue", "wed", "thu", "fri"];

async fn contact(app: &TestApp, token: &str, name: &str, kind: &str, address: &str) -> Value {
    let response = app
        .post(
            token,
            "/api/v1/contact-points",
            json!({"name": name, "kind": kind, "address": address}),
        )
        .await;
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn put_policy(app: &TestApp, token: &str, name: &str, rules: Value) {
    let response = app
        .client
        .put(app.url(&format!("/api/v1/policies/{name}")))
        .bearer_auth(token)
        .json(&json!({ "rules": rules }))
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert!(status.is_success(), "{status} {body}");
}

async fn deliveries(app: &TestApp, token: &str) -> Vec<Value> {
    let body = app.get_json(token, "/api/v1/deliveries?limit=500").await;
    body["items"].as_array().expect("items").clone()
}

fn sent(deliveries: &[Value]) -> usize {
    deliveries.iter().filter(|d| d["status"] == "sent").count()
}

fn smtp_to(settings: &mut tellify::config::Settings, port: u16) {
    settings.smtp.host = Some("127.0.0.1".to_string());
    settings.smtp.port = port;
    settings.smtp.security = SmtpSecurity::None;
    settings.notify.backoff_initial_ms = 1000;
}

/// The brief's first use case as one policy: a warning during work hours goes to the
/// work email; a critical in the evening goes to the home email and the phone at once.
#[tokio::test]
async fn work_hours_and_evening_rules_route_to_email_and_sms() {
    let smtp = SmtpSink::start().await;
    let sms = HttpSink::start(
        StatusCode::CREATED,
        r#"{"sid": "SM42", "status": "queued"}"#,
    )
    .await;
    let sms_url = sms.url("");
    let port = smtp.port;
    let app = spawn_app_with(move |settings| {
        smtp_to(settings, port);
        settings.sms.url = sms_url;
        settings.sms.account = Some("AC77".to_string());
        settings.sms.token = Some("sms-secret".to_string());
        settings.sms.from = Some("+15550001111".to_string());
    })
    .await;
    let ann = app.user("ann").await; // Europe/Berlin
    contact(&app, &ann, "work-email", "email", "ann@work.example").await;
    contact(&app, &ann, "home-email", "email", "ann@home.example").await;
    contact(&app, &ann, "phone", "sms", "+4915112345678").await;
    let work_hours = json!({"days": WEEKDAYS, "from": "09:00", "to": "18:00"});
    let mut evenings = work_hours.clone();
    evenings["outside"] = json!(true);
    put_policy(
        &app,
        &ann,
        "default",
        json!([
            {"when": work_hours, "min_severity": "warning", "contact_points": ["work-email"]},
            {"when": evenings, "min_severity": "critical", "contact_points": ["home-email", "phone"]}
        ]),
    )
    .await;
    app.subscribe(
        &ann,
        json!({"kind": "threshold", "title": "disks",
               "params": {"field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]}}),
    )
    .await;

    // Monday 10:00 in Berlin: a warning goes to the work email.
    app.send_lines(&ann, "fs:/sarc/cad usage:93.5").await;
    let mails = eventually("the work email", || async {
        let mails = smtp.mails();
        (mails.len() == 1).then_some(mails)
    })
    .await;
    let mail = &mails[0];
    assert_eq!(mail.to, vec!["ann@work.example".to_string()]);
    let subject = mail.header("Subject").expect("subject");
    assert!(
        subject.contains("WARNING") && subject.contains("disks"),
        "{subject}"
    );
    assert!(mail.data.contains("multipart/alternative"), "{}", mail.data);
    assert!(mail.data.contains("text/plain") && mail.data.contains("text/html"));
    assert!(mail.data.contains("/sarc/cad"));
    assert!(mail
        .header("Message-ID")
        .is_some_and(|id| id.contains("@tellify")));

    // Monday 20:30 in Berlin: a warning says nothing, a critical goes home and to the phone.
    app.clock.set("2026-11-23T19:30:00Z".parse().expect("time"));
    app.send_lines(&ann, "fs:/home usage:95\nfs:/scratch usage:98.2")
        .await;
    app.app.state.notifier.wake();
    eventually("the home email and the SMS", || async {
        (smtp.mails().len() == 2 && sms.requests().len() == 1).then_some(())
    })
    .await;
    let home = &smtp.mails()[1];
    assert_eq!(home.to, vec!["ann@home.example".to_string()]);
    assert!(home.data.contains("/scratch") && !home.data.contains("/home usage"));
    let text = &sms.requests()[0];
    assert_eq!(text.path, "/2010-04-01/Accounts/AC77/Messages.json");
    let form: Vec<(String, String)> = form_urlencoded::parse(&text.body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    };
    assert_eq!(field("To"), "+4915112345678");
    assert_eq!(field("From"), "+15550001111");
    assert!(field("Body").contains("/scratch") && field("Body").chars().count() <= 160);
    assert!(text
        .header("authorization")
        .is_some_and(|auth| auth.starts_with("Basic ")));

    let listed = eventually("three sent deliveries", || async {
        let listed = deliveries(&app, &ann).await;
        (sent(&listed) == 3).then_some(listed)
    })
    .await;
    assert_eq!(listed.len(), 3, "the evening warning notified no one");
    assert!(listed.iter().all(|d| d["attempts"] == 1));
    let sms_delivery = listed.iter().find(|d| d["kind"] == "sms").expect("sms");
    assert!(sms_delivery["receipt"]
        .as_str()
        .unwrap_or_default()
        .contains("SM42"));
}

fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A 15-minute digest gangs every alert of its period into one signed webhook call; a
/// failing receiver gets retries with backoff until it answers, and each digest arrives
/// once.
#[tokio::test]
async fn digests_gang_alerts_into_one_signed_webhook_and_retry_until_delivered() {
    let hook = HttpSink::start(StatusCode::OK, "thanks").await;
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let created = contact(&app, &ann, "hook", "webhook", &hook.url("/hooks/tellify")).await;
    let secret = created["secret"]
        .as_str()
        .expect("secret shown once")
        .to_string();
    let listed = app.get_json(&ann, "/api/v1/contact-points").await;
    assert!(listed["items"][0].get("secret").is_none(), "{listed}");
    put_policy(
        &app,
        &ann,
        "default",
        json!([{"contact_points": ["hook"], "mode": {"digest": "15m"}, "notify_resolved": true}]),
    )
    .await;
    app.subscribe(
        &ann,
        json!({"kind": "match", "title": "builds",
               "params": {"filter": "status == \"fail\"", "group_by": ["block"]}}),
    )
    .await;
    app.send_lines(
        &ann,
        "block:gc_t status:fail\nblock:gc_u status:fail\nblock:gc_v status:fail",
    )
    .await;
    // 10:00 in Berlin: the digest period ends at 10:15.
    app.advance(SignedDuration::from_mins(14)).await;
    app.app.state.notifier.wake();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(hook.requests().is_empty(), "nothing before the period ends");
    app.advance(SignedDuration::from_mins(1)).await;
    app.app.state.notifier.wake();
    let request = eventually("the digest", || async { hook.requests().first().cloned() }).await;
    let body = request.json();
    assert_eq!(body["count"], 3, "{body}");
    assert_eq!(body["alerts"].as_array().expect("alerts").len(), 3);
    let timestamp = request.header("x-tellify-timestamp").expect("timestamp");
    assert_eq!(
        request.header("x-tellify-signature").expect("signature"),
        signature(&secret, &timestamp, &request.body)
    );
    let delivery_id = request.header("idempotency-key").expect("idempotency key");

    // The next period: the receiver fails twice, then takes it.
    hook.fail_next(2);
    app.send_lines(&ann, "block:gc_w status:fail").await;
    app.advance(SignedDuration::from_mins(15)).await;
    app.app.state.notifier.wake();
    let failing = eventually("a failed first attempt", || async {
        let listed = deliveries(&app, &ann).await;
        listed
            .into_iter()
            .find(|d| d["status"] == "pending" && d["attempts"] == 1)
    })
    .await;
    assert!(failing["last_error"]
        .as_str()
        .unwrap_or_default()
        .contains("500"));
    for _ in 0..2 {
        app.advance(SignedDuration::from_secs(5)).await;
        app.app.state.notifier.wake();
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    let id = failing["id"].as_str().expect("id").to_string();
    let done = eventually("the retried digest", || async {
        let detail = app
            .get_json(&ann, &format!("/api/v1/deliveries/{id}"))
            .await;
        (detail["status"] == "sent").then_some(detail)
    })
    .await;
    assert_eq!(done["attempts"], 3);
    assert_eq!(done["attempt_log"].as_array().expect("log").len(), 3);
    let requests = hook.requests();
    assert_eq!(requests.len(), 2, "each digest arrived once");
    assert_ne!(requests[1].header("idempotency-key"), Some(delivery_id));
    let blocks: Vec<String> = requests
        .iter()
        .flat_map(|r| r.json()["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| a["group_key"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut unique = blocks.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        blocks.len(),
        unique.len(),
        "no alert in two digests: {blocks:?}"
    );
}

/// The SMTP server is down for a while: the deliveries wait and retry, and once it is
/// back every one of them arrives, none twice.
#[tokio::test]
async fn smtp_down_for_a_while_delays_but_loses_and_repeats_nothing() {
    let port = free_port();
    let app = spawn_app_with(move |settings| smtp_to(settings, port)).await;
    let ann = app.user("ann").await;
    contact(&app, &ann, "mail", "email", "ann@work.example").await;
    put_policy(&app, &ann, "default", json!([{"contact_points": ["mail"]}])).await;
    app.subscribe(
        &ann,
        json!({"kind": "match", "title": "builds",
               "params": {"filter": "status == \"fail\"", "group_by": ["block"]}}),
    )
    .await;
    for (round, block) in ["blockone", "blocktwo", "blockthree"].iter().enumerate() {
        app.send_lines(&ann, &format!("block:{block} status:fail"))
            .await;
        app.app.state.notifier.wake();
        eventually("a failed attempt", || async {
            let listed = deliveries(&app, &ann).await;
            (listed.len() == round + 1 && listed.iter().all(|d| d["attempts"].as_u64() >= Some(1)))
                .then_some(())
        })
        .await;
    }
    let listed = deliveries(&app, &ann).await;
    assert!(
        listed.iter().all(|d| d["status"] == "pending"),
        "{listed:?}"
    );
    let smtp = SmtpSink::start_on(port).await;
    for _ in 0..3 {
        app.advance(SignedDuration::from_mins(5)).await;
        app.app.state.notifier.wake();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    eventually("all three mails", || async {
        (smtp.mails().len() == 3).then_some(())
    })
    .await;
    app.advance(SignedDuration::from_hours(1)).await;
    app.app.state.notifier.wake();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 3, "nothing sent twice");
    for block in ["block=blockone", "block=blocktwo", "block=blockthree"] {
        let count = mails.iter().filter(|m| m.data.contains(block)).count();
        assert_eq!(count, 1, "{block} arrives once");
    }
    let listed = deliveries(&app, &ann).await;
    assert_eq!(sent(&listed), 3);
}

/// Repeats while firing and unacknowledged, silence once acknowledged, and a resolve
/// notice when the rule asks for one.
#[tokio::test]
async fn repeats_stop_when_acknowledged_and_resolves_notify() {
    let hook = HttpSink::start(StatusCode::NO_CONTENT, "").await;
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    contact(&app, &ann, "hook", "webhook", &hook.url("/h")).await;
    put_policy(
        &app,
        &ann,
        "default",
        json!([{"contact_points": ["hook"], "repeat": "1h", "notify_resolved": true}]),
    )
    .await;
    app.subscribe(
        &ann,
        json!({"kind": "threshold", "title": "disks",
               "params": {"field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]}}),
    )
    .await;
    app.send_lines(&ann, "fs:/data usage:95").await;
    app.app.state.notifier.wake();
    eventually("the first notice", || async {
        (hook.requests().len() == 1).then_some(())
    })
    .await;
    app.advance(SignedDuration::from_mins(61)).await;
    app.app.state.notifier.wake();
    eventually("the repeat", || async {
        (hook.requests().len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        hook.requests()[1].json()["alerts"][0]["transition"],
        "repeat"
    );
    let alert = app.alerts(&ann, "state=firing").await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let response = app
        .post(
            &ann,
            &format!("/api/v1/alerts/{alert}/ack"),
            json!({"note": "on it"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    app.advance(SignedDuration::from_mins(61)).await;
    app.app.state.notifier.wake();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(hook.requests().len(), 2, "no repeat once acknowledged");
    app.send_lines(&ann, "fs:/data usage:40").await;
    app.app.state.notifier.wake();
    eventually("the resolve notice", || async {
        (hook.requests().len() == 3).then_some(())
    })
    .await;
    assert_eq!(
        hook.requests()[2].json()["alerts"][0]["transition"],
        "resolved"
    );
}

/// A user's silence mutes matching alerts and only those.
#[tokio::test]
async fn silences_mute_matching_alerts() {
    let hook = HttpSink::start(StatusCode::OK, "ok").await;
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    contact(&app, &ann, "hook", "webhook", &hook.url("/h")).await;
    put_policy(&app, &ann, "default", json!([{"contact_points": ["hook"]}])).await;
    app.subscribe(
        &ann,
        json!({"kind": "match", "title": "builds",
               "params": {"filter": "status == \"fail\"", "group_by": ["block"]}}),
    )
    .await;
    let response = app
        .post(
            &ann,
            "/api/v1/silences",
            json!({"filter": "block == \"noisy\"", "ends": "2h", "comment": "known flaky"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    app.send_lines(&ann, "block:noisy status:fail\nblock:real status:fail")
        .await;
    app.app.state.notifier.wake();
    let request = eventually("the unsilenced alert", || async {
        hook.requests().first().cloned()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(hook.requests().len(), 1);
    let body = request.json();
    assert_eq!(body["count"], 1);
    assert_eq!(body["alerts"][0]["group_key"], "block=real");
}

/// People see and change only their own notification settings, and bad input names
/// every problem.
#[tokio::test]
async fn notification_settings_are_private_and_validated() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    contact(&app, &ann, "work", "email", "ann@work.example").await;
    let (status, body) = problem(app.get(&bob, "/api/v1/contact-points/work").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let listed = app.get_json(&bob, "/api/v1/contact-points").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(0));
    let (status, _) = problem(app.get(&bob, "/api/v1/contact-points?user=ann").await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let as_admin = app
        .get_json(&app.admin, "/api/v1/contact-points?user=ann")
        .await;
    assert_eq!(as_admin["items"][0]["name"], "work");

    let (status, body) = problem(
        app.post(
            &ann,
            "/api/v1/contact-points",
            json!({"name": "bad name!", "kind": "pager", "address": "x"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(paths.contains(&"name") && paths.contains(&"kind"), "{body}");

    let response = app
        .client
        .put(app.url("/api/v1/policies/default"))
        .bearer_auth(&ann)
        .json(&json!({"rules": [
            {"contact_points": ["work"], "when": {"days": ["funday"], "from": "25:00", "to": "18:00"}},
            {"contact_points": ["nowhere"], "mode": {"digest": "soon"}}
        ]}))
        .send()
        .await
        .expect("request");
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<String> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["path"].as_str().map(str::to_string))
        .collect();
    for expected in [
        "rules[0].when.days[0]",
        "rules[0].when.from",
        "rules[1].mode.digest",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} in {paths:?}"
        );
    }
    let response = app
        .client
        .put(app.url("/api/v1/policies/default"))
        .bearer_auth(&ann)
        .json(&json!({"rules": [{"contact_points": ["nowhere"]}]}))
        .send()
        .await
        .expect("request");
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["errors"][0]["path"], "rules[0].contact_points[0]",
        "{body}"
    );
    let (status, _) = problem(app.get(&bob, "/api/v1/policies/default").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The test button sends at once and shows the provider's answer, or its error.
#[tokio::test]
async fn send_me_a_test_shows_the_providers_answer() {
    let hook = HttpSink::start(StatusCode::ACCEPTED, "queued-123").await;
    let broken = HttpSink::start(StatusCode::BAD_REQUEST, "no such channel").await;
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    contact(&app, &ann, "hook", "webhook", &hook.url("/h")).await;
    contact(
        &app,
        &ann,
        "chat",
        "chat",
        &broken.url("/services/T000/B000/XXXX"),
    )
    .await;
    let response = app
        .post(&ann, "/api/v1/contact-points/hook/test", json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["answer"].as_str().unwrap_or_default().contains("202"),
        "{body}"
    );
    assert_eq!(hook.requests()[0].json()["test"], true);
    let (status, body) = problem(
        app.post(&ann, "/api/v1/contact-points/chat/test", json!({}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("400"), "{detail}");
    assert!(
        !detail.contains("XXXX"),
        "the webhook path is a secret: {detail}"
    );
}

/// Leaving a group takes the member's group subscriptions with it.
#[tokio::test]
async fn leaving_a_group_removes_the_members_group_subscriptions() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    app.user("bob").await;
    let response = app
        .post(
            &app.admin,
            "/api/v1/groups",
            json!({"name": "vr0", "members": ["ann", "bob"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let group_sub = app
        .subscribe(
            &ann,
            json!({"kind": "match", "title": "vr0 fails", "group": "vr0",
                   "params": {"filter": "status == \"fail\""}}),
        )
        .await;
    let own_sub = app
        .subscribe(
            &ann,
            json!({"kind": "match", "title": "mine", "params": {"filter": "status == \"fail\""}}),
        )
        .await;
    let response = app
        .client
        .delete(app.url("/api/v1/groups/vr0/members/ann"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let gone = app
        .get(&app.admin, &format!("/api/v1/subscriptions/{group_sub}"))
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let kept = app
        .get(&ann, &format!("/api/v1/subscriptions/{own_sub}"))
        .await;
    assert_eq!(kept.status(), StatusCode::OK);
}

/// Offboarding: a dry run lists what will go; the real call removes it all, writes an
/// audit record, and a digest that was waiting for the person is never sent.
#[tokio::test]
async fn offboarding_removes_everything_and_pending_digests_never_go_out() {
    let hook = HttpSink::start(StatusCode::OK, "ok").await;
    let app = spawn_app().await;
    let name = "annika-leaver";
    let ann = app.user(name).await;
    let bob = app.user("bob").await;
    let response = app
        .post(
            &app.admin,
            "/api/v1/groups",
            json!({"name": "vr0", "members": [name, "bob"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    contact(&app, &ann, "hook", "webhook", &hook.url("/ann")).await;
    contact(&app, &bob, "hook", "webhook", &hook.url("/bob")).await;
    put_policy(
        &app,
        &ann,
        "default",
        json!([{"contact_points": ["hook"], "mode": {"digest": "1h"}}]),
    )
    .await;
    put_policy(
        &app,
        &ann,
        "nights",
        json!([{"contact_points": ["hook"], "mode": {"hold_until": "06:00"}}]),
    )
    .await;
    put_policy(
        &app,
        &bob,
        "default",
        json!([{"contact_points": ["hook"], "mode": {"digest": "1h"}}]),
    )
    .await;
    app.subscribe(
        &ann,
        json!({"kind": "match", "title": "mine", "params": {"filter": "status == \"fail\"", "group_by": ["block"]}}),
    )
    .await;
    app.subscribe(
        &bob,
        json!({"kind": "match", "title": "vr0", "group": "vr0",
               "params": {"filter": "status == \"fail\"", "group_by": ["block"]}}),
    )
    .await;
    let response = app
        .post(
            &ann,
            "/api/v1/silences",
            json!({"filter": "block == \"x\"", "ends": "1d"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // bob's own subscription: the group alert goes quiet once acknowledged, this one not.
    app.subscribe(
        &bob,
        json!({"kind": "match", "title": "bob's", "params": {"filter": "status == \"fail\""}}),
    )
    .await;
    app.send_lines(&ann, "block:gc_t status:fail").await;
    // ann acts on the group's alert, so its history names her.
    let group_alert = app
        .alerts(&bob, "state=firing")
        .await
        .into_iter()
        .find(|a| a["title"] == "vr0")
        .expect("group alert");
    let response = app
        .post(
            &ann,
            &format!(
                "/api/v1/alerts/{}/ack",
                group_alert["id"].as_str().unwrap_or_default()
            ),
            json!({"note": "mine"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let user_id = app.get_json(&ann, "/api/v1/users/me").await["user"]["id"]
        .as_str()
        .expect("id")
        .to_string();

    let dry = app
        .client
        .delete(app.url(&format!("/api/v1/users/{name}?dry_run=true")))
        .bearer_auth(&app.admin)
        .send()
        .await
        .expect("request");
    assert_eq!(dry.status(), StatusCode::OK);
    let dry: Value = dry.json().await.expect("json");
    assert_eq!(dry["dry_run"], true);
    let removed = &dry["removed"];
    assert_eq!(removed["subscriptions"], 1, "{dry}");
    assert_eq!(removed["alerts"], 1);
    assert_eq!(removed["policies"], 2);
    assert_eq!(removed["contact_points"], 1);
    assert_eq!(removed["silences"], 1);
    assert_eq!(removed["tokens"], 1);
    assert_eq!(
        removed["notifications"], 2,
        "her digest of her own and the group's alert"
    );
    assert_eq!(removed["group_memberships"], 1);
    assert_eq!(
        app.get(&ann, "/api/v1/users/me").await.status(),
        StatusCode::OK
    );

    let gone = app
        .client
        .delete(app.url(&format!("/api/v1/users/{name}")))
        .bearer_auth(&app.admin)
        .send()
        .await
        .expect("request");
    assert_eq!(gone.status(), StatusCode::OK);
    let gone: Value = gone.json().await.expect("json");
    assert_eq!(gone["removed"], dry["removed"]);
    assert_eq!(
        app.get(&ann, "/api/v1/users/me").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let audit = app.get_json(&app.admin, "/api/v1/audit").await;
    assert_eq!(audit["items"][0]["subject"], format!("user {name}"));
    assert_eq!(audit["items"][0]["actor"], "admin");

    // No row anywhere still names her: every table but the event log (producer data,
    // kept as sent) and the audit log (the record of her removal).
    let database = app.app.state.settings.data.join("tellify.db");
    let connection = rusqlite::Connection::open(database).expect("open");
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .expect("tables")
        .query_map([], |row| row.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("names");
    assert!(tables.len() >= 15, "{tables:?}");
    for table in tables.iter().filter(|t| *t != "events" && *t != "audit") {
        let mut statement = connection
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .expect("select");
        let columns = statement.column_count();
        let mut rows = statement.query([]).expect("query");
        while let Some(row) = rows.next().expect("row") {
            for column in 0..columns {
                if let Ok(Some(text)) = row.get::<_, Option<String>>(column) {
                    assert!(
                        !text.contains(&user_id) && !text.contains(name),
                        "{table} still names the user: {text}"
                    );
                }
            }
        }
    }

    // The hour passes: bob's digest goes out, hers never does.
    app.advance(SignedDuration::from_hours(2)).await;
    app.app.state.notifier.wake();
    eventually("bob's digest", || async {
        hook.requests()
            .iter()
            .any(|r| r.path == "/bob")
            .then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(hook.requests().iter().all(|r| r.path != "/ann"));
}

#[tokio::test]
async fn a_contact_point_over_its_rate_gets_what_was_held_back_in_one_summary_later() {
    let hook = HttpSink::start(StatusCode::OK, "thanks").await;
    let app = spawn_app_with(|settings| {
        settings.notify.max_per_contact_point = 2;
        settings.notify.rate_window = "10m".to_string();
    })
    .await;
    let ann = app.user("ann").await;
    contact(&app, &ann, "hook", "webhook", &hook.url("/hooks/tellify")).await;
    put_policy(&app, &ann, "default", json!([{"contact_points": ["hook"]}])).await;
    app.subscribe(
        &ann,
        json!({"kind": "match", "title": "storm",
               "params": {"filter": "status == \"fail\"", "group_by": ["block"]}}),
    )
    .await;
    for block in ["a", "b"] {
        app.send_lines(&ann, &format!("block:{block} status:fail"))
            .await;
        app.app.state.notifier.wake();
        eventually("a message per alert while under the rate", || async {
            (hook.requests().len() == if block == "a" { 1 } else { 2 }).then_some(())
        })
        .await;
    }
    // The storm goes on: three more alerts within the window are held back, not sent.
    app.send_lines(
        &ann,
        "block:c status:fail\nblock:d status:fail\nblock:e status:fail",
    )
    .await;
    app.app.state.notifier.wake();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(hook.requests().len(), 2, "held back at the limit");
    // When the window has passed, everything held back goes out in one message.
    app.advance(SignedDuration::from_mins(11)).await;
    let summary = eventually("the summary", || async { hook.requests().get(2).cloned() }).await;
    let body = summary.json();
    assert_eq!(body["count"], 3, "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        hook.requests().len(),
        3,
        "one message for the three, nothing dropped"
    );
}

/// A subscription naming a policy its owner does not have would quietly fall back to
/// `default` at every alert: creating, changing or importing with one is a 422 that says
/// which policies there are. `default` is always accepted.
#[tokio::test]
async fn a_subscription_naming_a_missing_policy_is_refused() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let subscription = |policy: &str| json!({"kind": "match", "title": "builds", "params": {"filter": "true"}, "policy": policy});
    let response = app
        .post(&ann, "/api/v1/subscriptions", subscription("nosuch"))
        .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["path"], "policy", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no policy named `nosuch`") && message.contains("none yet"),
        "{body}"
    );
    app.subscribe(&ann, subscription("default")).await;

    contact(&app, &ann, "mail", "email", "ann@example.com").await;
    put_policy(
        &app,
        &ann,
        "evenings",
        json!([{"contact_points": ["mail"]}]),
    )
    .await;
    let id = app.subscribe(&ann, subscription("evenings")).await;
    let response = app
        .client
        .patch(app.url(&format!("/api/v1/subscriptions/{id}")))
        .bearer_auth(&ann)
        .json(&json!({"policy": "nosuch"}))
        .send()
        .await
        .expect("request");
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("there are `evenings`"),
        "{body}"
    );
    let stored = app
        .get_json(&ann, &format!("/api/v1/subscriptions/{id}"))
        .await;
    assert_eq!(
        stored["policy"], "evenings",
        "a refused change changes nothing"
    );
}

/// A contact point a policy names is kept, and the 409 says which policies; with
/// `force=true` it goes, a rule left without contact points goes with it, and a policy
/// left without rules is deleted.
#[tokio::test]
async fn a_contact_point_in_use_is_kept_unless_forced() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    contact(&app, &ann, "work", "email", "ann@work.example").await;
    contact(&app, &ann, "home", "email", "ann@home.example").await;
    put_policy(
        &app,
        &ann,
        "default",
        json!([{"contact_points": ["work", "home"]}]),
    )
    .await;
    put_policy(&app, &ann, "nights", json!([{"contact_points": ["home"]}])).await;
    let delete = |force: bool| {
        let request = app
            .client
            .delete(app.url("/api/v1/contact-points/home"))
            .bearer_auth(&ann);
        let request = if force {
            request.query(&[("force", "true")])
        } else {
            request
        };
        request.send()
    };
    let (status, body) = problem(delete(false).await.expect("request")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("`default`") && detail.contains("`nights`") && detail.contains("force"),
        "{body}"
    );
    app.get_json(&ann, "/api/v1/contact-points/home").await;

    let response = delete(true).await.expect("request");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let missing = app.get(&ann, "/api/v1/contact-points/home").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let default = app.get_json(&ann, "/api/v1/policies/default").await;
    assert_eq!(
        default["rules"][0]["contact_points"],
        json!(["work"]),
        "{default}"
    );
    let nights = app.get(&ann, "/api/v1/policies/nights").await;
    assert_eq!(
        nights.status(),
        StatusCode::NOT_FOUND,
        "a policy left without rules is deleted"
    );
}

#[tokio::test]
async fn a_contact_point_whose_channel_is_not_configured_carries_a_warning() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let email = contact(&app, &ann, "work", "email", "ann@work.example").await;
    let warning = email["warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("email is not configured") && warning.contains("[smtp] host"),
        "{email}"
    );
    let sms = contact(&app, &ann, "phone", "sms", "+4915112345678").await;
    assert!(
        sms["warning"]
            .as_str()
            .is_some_and(|warning| warning.contains("[sms]")),
        "{sms}"
    );
    let hook = contact(&app, &ann, "hook", "webhook", "https://hooks.example.com/x").await;
    assert!(hook.get("warning").is_none(), "{hook}");
    // The list says it each time, not only the answer that created it.
    let list = app.get_json(&ann, "/api/v1/contact-points").await;
    let warned: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|point| point.get("warning").is_some())
        .filter_map(|point| point["name"].as_str())
        .collect();
    assert_eq!(warned, ["phone", "work"], "{list}");

    // With SMTP configured, email carries no warning.
    let configured = spawn_app_with(|settings| {
        settings.smtp.host = Some("127.0.0.1".to_string());
        settings.smtp.from = "tellify@example.com".to_string();
    })
    .await;
    let bob = configured.user("bob").await;
    let email = contact(&configured, &bob, "work", "email", "bob@work.example").await;
    assert!(email.get("warning").is_none(), "{email}");
}

/// A digest waiting for a contact point that its owner then deletes is not dropped: it
/// shows as a failed delivery saying why, and nothing reaches the old address.
#[tokio::test]
async fn a_digest_waiting_for_a_deleted_contact_point_is_recorded_as_failed() {
    let hook = HttpSink::start(StatusCode::OK, "ok").await;
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    contact(&app, &ann, "hook", "webhook", &hook.url("/ann")).await;
    put_policy(
        &app,
        &ann,
        "default",
        json!([{"contact_points": ["hook"], "mode": {"digest": "1h"}}]),
    )
    .await;
    app.subscribe(
        &ann,
        json!({"kind": "match", "title": "mine", "params": {"filter": "status == \"fail\""}}),
    )
    .await;
    app.send_lines(&ann, "block:gc_t status:fail").await;
    eventually("the alert fires", || async {
        (!app.alerts(&ann, "state=firing").await.is_empty()).then_some(())
    })
    .await;
    let response = app
        .client
        .delete(app.url("/api/v1/contact-points/hook"))
        .bearer_auth(&ann)
        .query(&[("force", "true")])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let deliveries = app.get_json(&ann, "/api/v1/deliveries").await;
    let items = deliveries["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{deliveries}");
    assert_eq!(items[0]["status"], "failed", "{deliveries}");
    assert_eq!(
        items[0]["last_error"], "contact point hook was deleted before this was sent",
        "{deliveries}"
    );
    app.advance(SignedDuration::from_hours(2)).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(hook.arrivals(), 0, "nothing reaches the deleted address");
}

/// A delivery whose stored alert no longer reads fails alone, with a reason that names the
/// alert; the claim it was part of goes on, and everyone else's messages go out. (The
/// claim parsed every alert on the store's writer: one unreadable copy failed the whole
/// claim, every round, and nobody was notified again.)
#[tokio::test]
async fn an_unreadable_stored_alert_fails_its_own_delivery_and_no_other() {
    let hook = HttpSink::start(StatusCode::OK, "thanks").await;
    let app = spawn_app().await;
    let mut tokens = Vec::new();
    for name in ["ann", "bob"] {
        let token = app.user(name).await;
        tokens.push(token.clone());
        contact(
            &app,
            &token,
            "hook",
            "webhook",
            &hook.url(&format!("/{name}")),
        )
        .await;
        put_policy(
            &app,
            &token,
            "default",
            json!([{"contact_points": ["hook"], "mode": {"digest": "15m"}}]),
        )
        .await;
        app.subscribe(
            &token,
            json!({"kind": "match", "title": "builds",
                   "params": {"filter": "status == \"fail\"", "group_by": ["block"]}}),
        )
        .await;
    }
    let ann = tokens[0].clone();
    app.send_lines(&ann, "block:b1 status:fail").await;

    // Both notifications wait for the digest; ann's stored copy of her alert is damaged.
    let database = app.app.state.settings.data.join("tellify.db");
    let connection = rusqlite::Connection::open(database).expect("open");
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .expect("busy timeout");
    let waiting: i64 = connection
        .query_row(
            "SELECT COUNT(*) FROM notifications WHERE delivery_id IS NULL",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(waiting, 2, "one notification each for ann and bob");
    let alert_id: String = connection
        .query_row(
            "UPDATE notifications SET alert = '{\"state\": 5'
             WHERE contact_point_id IN (SELECT id FROM contact_points WHERE address LIKE '%/ann')
             RETURNING alert_id",
            [],
            |row| row.get(0),
        )
        .expect("damage ann's copy");
    drop(connection);

    app.advance(SignedDuration::from_mins(15)).await;
    app.app.state.notifier.wake();
    let bob = eventually("bob's digest", || async {
        hook.requests().into_iter().find(|r| r.path == "/bob")
    })
    .await;
    assert_eq!(bob.json()["count"], 1, "{}", bob.json());
    let failed = eventually("ann's delivery failed", || async {
        deliveries(&app, &ann)
            .await
            .into_iter()
            .find(|d| d["status"] == "failed")
    })
    .await;
    let error = failed["last_error"].as_str().expect("last_error");
    assert!(
        error.contains(&alert_id) && error.contains("unreadable"),
        "the reason names the alert: {error}"
    );
    assert!(
        hook.requests().iter().all(|r| r.path != "/ann"),
        "nothing half-rendered reached ann"
    );
}
