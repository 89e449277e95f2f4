//! Preview, explain and "when will I be told": through the service layer and the API,
//! on a real store, with the injected clock.

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tellify::auth::Principal;
use tellify::clock::Clock;
use tellify::services::preview::{self, PreviewBudget, PreviewRequest, TruncatedReason};
use tellify::services::ServiceError;
use tellify_engine::alerts::Transition;

use crate::helpers::{eventually, problem, spawn_app, TestApp};
use crate::support::HttpSink;

async fn principal(app: &TestApp, secret: &str) -> Principal {
    let state = &app.app.state;
    state
        .auth
        .authenticate(state.store.as_ref(), secret, None, state.clock.now())
        .await
        .map_err(|_| "token does not authenticate")
        .expect("principal")
}

async fn contact(app: &TestApp, token: &str, name: &str, sink: &HttpSink) {
    let response = app
        .post(
            token,
            "/api/v1/contact-points",
            json!({"name": name, "kind": "webhook", "address": sink.url(&format!("/{name}"))}),
        )
        .await;
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::CREATED, "{body}");
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

fn threshold() -> Value {
    json!({"kind": "threshold", "title": "disks",
           "params": {"field": "usage", "warn": 80, "critical": 90, "group_by": ["fs"]}})
}

/// Stores usage readings five minutes apart: /home warns, goes critical, falls back.
async fn disk_history(app: &TestApp, token: &str) {
    for line in [
        "fs:/home usage:50",
        "fs:/home usage:85",
        "fs:/home usage:95",
        "fs:/var usage:10",
        "fs:/home usage:60",
    ] {
        app.send_lines(token, line).await;
        app.clock.advance(SignedDuration::from_mins(5));
    }
}

/// Everything a preview could have written, read back.
async fn store_snapshot(app: &TestApp) -> Value {
    let store = &app.app.state.store;
    let alerts = store
        .list_alerts(tellify_store::AlertQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("alerts");
    let subscriptions = store.list_subscriptions(None).await.expect("subscriptions");
    let processing = store.load_processing().await.expect("processing");
    json!({
        "alerts": alerts.len(),
        "subscriptions": subscriptions.len(),
        "last_seq": store.last_seq().await.expect("seq"),
        "cursor": processing.cursor,
        "states": processing.states.len(),
        "changes": store.last_alert_change().await.expect("changes"),
    })
}

/// The preview of a threshold subscription over stored events gives the firing, the
/// escalation and the resolve at the events' times, and saves nothing.
#[tokio::test]
async fn a_threshold_preview_fires_escalates_and_resolves_and_saves_nothing() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let start = app.clock.now();
    disk_history(&app, &ann).await;
    let state = app.app.state.clone();
    let who = principal(&app, &ann).await;
    let before = store_snapshot(&app).await;
    let mut stream = state.bus.subscribe();

    let result = preview::preview(
        &state,
        &who,
        PreviewRequest {
            subscription: threshold(),
            from: None,
            to: None,
        },
    )
    .await
    .expect("preview");

    assert_eq!(result.events_scanned, 5);
    assert_eq!(result.events_matched, 5, "no filter: every reading");
    assert!(!result.truncated);
    assert_eq!(result.alerts, 1, "only /home moved");
    assert_eq!(result.errors, 0);
    let moves: Vec<(Transition, &str, i64)> = result
        .fired
        .iter()
        .map(|firing| {
            (
                firing.transition,
                firing.severity.as_str(),
                firing.at.duration_since(start).as_mins(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        vec![
            (Transition::Fired, "warning", 5),
            (Transition::SeverityRaised, "critical", 10),
            (Transition::Resolved, "critical", 20),
        ]
    );
    assert!(result
        .fired
        .iter()
        .all(|firing| firing.group_key.contains("/home")));
    assert!(result.fired[0].event_id.is_some());
    assert!(result.fired[0].notifies);

    assert_eq!(store_snapshot(&app).await, before, "the store is unchanged");
    assert!(
        matches!(
            stream.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty)
        ),
        "nothing was published"
    );

    // A window that ends before the escalation sees only the firing.
    let early = preview::preview(
        &state,
        &who,
        PreviewRequest {
            subscription: threshold(),
            from: Some(start),
            to: Some(start + SignedDuration::from_mins(7)),
        },
    )
    .await
    .expect("preview");
    assert_eq!(early.events_scanned, 2);
    assert_eq!(early.fired.len(), 1);

    // The budget stops it and says why.
    let cut = preview::preview_with(
        &state,
        &who,
        PreviewRequest {
            subscription: threshold(),
            from: None,
            to: None,
        },
        PreviewBudget {
            max_events: 2,
            ..PreviewBudget::default()
        },
    )
    .await
    .expect("preview");
    assert!(cut.truncated);
    assert_eq!(cut.truncated_reason, Some(TruncatedReason::Events));
    assert_eq!(cut.events_scanned, 2);

    // Invalid subscriptions answer exactly as create does.
    let refused = preview::preview(
        &state,
        &who,
        PreviewRequest {
            subscription: json!({"kind": "threshold", "title": " ",
                                  "params": {"warn": 97, "critical": 90}}),
            from: None,
            to: None,
        },
    )
    .await;
    let Err(ServiceError::Invalid(errors)) = refused else {
        panic!("{refused:?}");
    };
    let paths: Vec<&str> = errors.iter().map(|error| error.path.as_str()).collect();
    assert!(paths.contains(&"title"), "{paths:?}");
}

#[tokio::test]
async fn the_preview_api_answers_firings_and_refuses_a_bad_body_like_create() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    disk_history(&app, &ann).await;

    let response = app
        .post(
            &ann,
            "/api/v1/subscriptions/preview",
            json!({"subscription": threshold(), "from": "1h"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    let transitions: Vec<&str> = body["fired"]
        .as_array()
        .expect("fired")
        .iter()
        .map(|firing| firing["transition"].as_str().unwrap())
        .collect();
    assert_eq!(transitions, vec!["fired", "severity_raised", "resolved"]);
    assert_eq!(body["truncated"], false);
    assert_eq!(body["alerts"], 1);

    let bad = json!({"kind": "threshold", "title": " ", "params": {
        "field": "usage", "warn": 97, "critical": 90, "filter": "usage >", "colour": "red"}});
    let created = app.post(&ann, "/api/v1/subscriptions", bad.clone()).await;
    let (_, created) = problem(created).await;
    let previewed = app
        .post(
            &ann,
            "/api/v1/subscriptions/preview",
            json!({"subscription": bad}),
        )
        .await;
    let (status, previewed) = problem(previewed).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        previewed["errors"], created["errors"],
        "the same field errors"
    );
    let paths: Vec<&str> = previewed["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"title") && paths.contains(&"params"),
        "{previewed}"
    );

    let too_long = app
        .post(
            &ann,
            "/api/v1/subscriptions/preview",
            json!({"subscription": threshold(), "from": "8d"}),
        )
        .await;
    let (status, body) = problem(too_long).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["path"], "to", "{body}");
}

fn decisions(explanation: &Value) -> Vec<String> {
    explanation["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|step| step["kind"] == "decision")
        .map(|step| step["outcome"].as_str().unwrap().to_string())
        .collect()
}

/// Critical goes to `pager` at once; warning to `digest` in an hourly digest; info
/// matches no rule. Explain says so for each, and hides other people's ids.
#[tokio::test]
async fn explain_tells_now_from_digest_from_a_severity_below_the_minimum() {
    let pager = HttpSink::start(StatusCode::OK, "paged").await;
    let digest = HttpSink::start(StatusCode::OK, "digested").await;
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    contact(&app, &ann, "pager", &pager).await;
    contact(&app, &ann, "digest", &digest).await;
    put_policy(
        &app,
        &ann,
        "default",
        json!([
            {"min_severity": "critical", "contact_points": ["pager"]},
            {"min_severity": "warning", "contact_points": ["digest"], "mode": {"digest": "1h"}}
        ]),
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
        "block:a status:fail severity:critical\nblock:b status:fail severity:warning\nblock:c status:fail severity:info",
    )
    .await;
    app.app.state.notifier.wake();
    eventually("the page", || async {
        (pager.requests().len() == 1).then_some(())
    })
    .await;
    app.advance(SignedDuration::from_hours(1)).await;
    eventually("the digest", || async {
        (digest.requests().len() == 1).then_some(())
    })
    .await;

    let deliveries = app.get_json(&ann, "/api/v1/deliveries").await;
    let deliveries = deliveries["items"].as_array().expect("items").clone();
    let id_to = |name: &str| {
        deliveries
            .iter()
            .find(|d| d["contact_point"] == name)
            .and_then(|d| d["id"].as_str())
            .expect("delivery")
            .to_string()
    };
    let paged = eventually("the page recorded as sent", || async {
        let body = app
            .get_json(
                &ann,
                &format!("/api/v1/deliveries/{}/explain", id_to("pager")),
            )
            .await;
        (body["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["kind"] == "answer"))
        .then_some(body)
    })
    .await;
    assert_eq!(decisions(&paged), vec!["now"], "{paged:#}");
    let kinds: Vec<&str> = paged["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "event",
            "subscription",
            "transition",
            "policy",
            "decision",
            "delivery",
            "answer"
        ],
        "{paged:#}"
    );
    let answer = paged["steps"].as_array().unwrap().last().unwrap();
    assert_eq!(answer["ok"], true);
    assert!(
        answer["detail"].as_str().unwrap().contains("paged") || answer["title"].as_str().is_some()
    );

    let digested = app
        .get_json(
            &ann,
            &format!("/api/v1/deliveries/{}/explain", id_to("digest")),
        )
        .await;
    assert_eq!(decisions(&digested), vec!["digest"], "{digested:#}");
    let policy = digested["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["kind"] == "policy")
        .expect("policy step");
    assert_eq!(policy["decision"]["rules"][0]["verdict"], "below_minimum");
    assert_eq!(policy["decision"]["rules"][1]["verdict"], "selected");

    // The info alert sent nothing: no rule took its severity.
    let alerts = app.alerts(&ann, "").await;
    let info = alerts
        .iter()
        .find(|alert| alert["severity"] == "info")
        .expect("info alert");
    let info_id = info["id"].as_str().unwrap();
    let quiet = app
        .get_json(&ann, &format!("/api/v1/alerts/{info_id}/explain"))
        .await;
    assert_eq!(decisions(&quiet), vec!["no_rule"], "{quiet:#}");
    let policy = quiet["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["kind"] == "policy")
        .expect("policy step");
    let verdicts: Vec<&str> = policy["decision"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| rule["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, vec!["below_minimum", "below_minimum"]);
    assert!(quiet["summary"]
        .as_str()
        .unwrap()
        .contains("nothing was sent"));

    // The critical alert's explain shows its delivery.
    let critical = alerts
        .iter()
        .find(|alert| alert["severity"] == "critical")
        .expect("critical alert");
    let loud = app
        .get_json(
            &ann,
            &format!(
                "/api/v1/alerts/{}/explain",
                critical["id"].as_str().unwrap()
            ),
        )
        .await;
    assert!(
        loud["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["kind"] == "delivery"),
        "{loud:#}"
    );

    // Bob sees neither: the same 404 as an id that does not exist.
    for path in [
        format!("/api/v1/deliveries/{}/explain", id_to("pager")),
        format!("/api/v1/alerts/{info_id}/explain"),
    ] {
        let (status, theirs) = problem(app.get(&bob, &path).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let unknown = path
            .replace(&id_to("pager"), "nope")
            .replace(info_id, "nope");
        let (status, none) = problem(app.get(&bob, &unknown).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(theirs["detail"], none["detail"]);
    }
}

/// Work hours critical to SMS, outside them an email digest: the week strip per
/// severity, and another user's policy is not found.
#[tokio::test]
async fn the_week_of_a_two_rule_policy() {
    let sink = HttpSink::start(StatusCode::OK, "ok").await;
    let app = spawn_app().await;
    let ann = app.user("ann").await; // Europe/Berlin; the clock says Monday 10:00 there
    let bob = app.user("bob").await;
    contact(&app, &ann, "sms", &sink).await;
    contact(&app, &ann, "email", &sink).await;
    let work = json!({"days": ["mon-fri"], "from": "09:00", "to": "18:00"});
    let mut outside = work.clone();
    outside["outside"] = json!(true);
    put_policy(
        &app,
        &ann,
        "work",
        json!([
            {"when": work, "min_severity": "critical", "contact_points": ["sms"]},
            {"when": outside, "min_severity": "warning", "contact_points": ["email"],
             "mode": {"digest": "2h"}}
        ]),
    )
    .await;
    let week = app.get_json(&ann, "/api/v1/policies/work/week").await;
    assert_eq!(week["zone"], "Europe/Berlin");
    assert_eq!(week["start"], "2026-11-22T23:00:00Z", "{week:#}");
    assert_eq!(week["end"], "2026-11-29T23:00:00Z");
    let critical = &week["severities"][2];
    assert_eq!(critical["severity"], "critical");
    let segments = critical["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 11, "{critical:#}");
    assert_eq!(segments[0]["local_from"], "2026-11-23T00:00");
    assert_eq!(
        segments[0]["applies"][0]["contact_points"],
        json!(["email"])
    );
    assert_eq!(segments[0]["applies"][0]["mode"], json!({"digest": "2h"}));
    assert_eq!(segments[1]["local_from"], "2026-11-23T09:00");
    assert_eq!(segments[1]["local_to"], "2026-11-23T18:00");
    assert_eq!(segments[1]["applies"][0]["contact_points"], json!(["sms"]));
    assert_eq!(segments[1]["applies"][0]["mode"], "now");
    let info = &week["severities"][0];
    assert_eq!(info["segments"].as_array().unwrap().len(), 1);
    assert_eq!(info["segments"][0]["nothing"], true);

    let (status, _) = problem(app.get(&bob, "/api/v1/policies/work/week").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
