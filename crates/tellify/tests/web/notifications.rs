//! My notifications: contact points (add, "send me a test", delete with force), the
//! policy editor, silences, my deliveries (live) and the explain pages; another user's
//! ids answer 404 like unknown ones.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{location, next_snapshot, password_of, person, Browser};
use crate::helpers::{eventually, spawn_app, TestApp};
use crate::support::HttpSink;

async fn contact(app: &TestApp, token: &str, name: &str, kind: &str, address: &str) {
    let response = app
        .post(
            token,
            "/api/v1/contact-points",
            json!({"name": name, "kind": kind, "address": address}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn policy(app: &TestApp, token: &str, name: &str, rules: Value) {
    let response = app
        .client
        .put(app.url(&format!("/api/v1/policies/{name}")))
        .bearer_auth(token)
        .json(&json!({ "rules": rules }))
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success());
}

/// A webhook to `hook`, a policy sending everything to it at once, and a threshold
/// subscription: one event later, a delivery is sent.
async fn sent_delivery(app: &TestApp, token: &str, hook: &HttpSink) -> Value {
    contact(app, token, "hook", "webhook", &hook.url("/hooks")).await;
    policy(app, token, "default", json!([{"contact_points": ["hook"]}])).await;
    app.subscribe(
        token,
        json!({"kind": "threshold", "title": "disk", "params": {"field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]}}),
    )
    .await;
    app.send_lines(token, "usage:98 fs:/home").await;
    app.app.state.notifier.wake();
    eventually("a sent delivery", || async {
        let listed = app.get_json(token, "/api/v1/deliveries").await;
        let first = listed["items"][0].clone();
        (first["status"] == "sent").then_some(first)
    })
    .await
}

#[tokio::test]
async fn a_webhook_added_through_the_form_answers_send_me_a_test_with_the_sinks_answer() {
    let hook = HttpSink::start(StatusCode::ACCEPTED, "{}").await;
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let form = browser.page("/notifications/contact-points").await;
    assert!(form.contains("<label for=\"f-address\">"), "{form}");

    // A bad address is refused next to its field, and what was typed stays.
    let response = browser
        .post(
            "/notifications/contact-points",
            &[
                ("name", "hook"),
                ("kind", "webhook"),
                ("address", "not a url"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(page.contains("id=\"f-address-error\""), "{page}");
    assert!(page.contains("value=\"not a url\""));

    let response = browser
        .post(
            "/notifications/contact-points",
            &[
                ("name", "hook"),
                ("kind", "webhook"),
                ("address", &hook.url("/hooks/tellify")),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("whsec_"),
        "the generated secret is shown once: {page}"
    );
    let points = app.get_json(&ann, "/api/v1/contact-points").await;
    assert_eq!(points["items"][0]["name"], "hook");
    assert_eq!(points["items"][0]["signed"], true);

    let overview = browser.page("/notifications").await;
    assert!(
        overview.contains("data-contact-point=\"hook\""),
        "{overview}"
    );
    let response = browser
        .post("/notifications/contact-points/hook/test", &[])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains("✓ sent"), "{page}");
    assert!(
        page.contains("202 Accepted"),
        "the provider's answer: {page}"
    );
    let requests = hook.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/hooks/tellify");
    assert_eq!(requests[0].json()["test"], true);
}

#[tokio::test]
async fn a_failing_test_shows_the_channels_error_on_the_page() {
    let hook = HttpSink::start(StatusCode::INTERNAL_SERVER_ERROR, "down").await;
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    contact(&app, &ann, "hook", "webhook", &hook.url("/h")).await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    browser.page("/notifications").await;
    let response = browser
        .post("/notifications/contact-points/hook/test", &[])
        .await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let page = response.text().await.unwrap();
    assert!(page.contains("✗ failed"), "{page}");
    assert!(page.contains("500"), "{page}");
    assert!(
        !page.contains("down"),
        "never the body of what answered: {page}"
    );
}

#[tokio::test]
async fn a_policy_with_two_rules_through_the_schedule_editor_and_an_invalid_submit() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    contact(&app, &ann, "work", "webhook", "http://127.0.0.1:9/work").await;
    contact(&app, &ann, "home", "webhook", "http://127.0.0.1:9/home").await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let page = browser.page("/notifications/policies/new").await;
    assert!(page.contains("Europe/Berlin"), "the editor says my zone");
    assert!(
        page.contains("value=\"default\""),
        "the first policy is the default"
    );

    // "Add a rule" re-renders the form with a second rule, keeping the first as typed.
    let first_rule = [
        ("name", "default"),
        ("rules", "1"),
        ("r0.days", "mon"),
        ("r0.days", "tue"),
        ("r0.days", "wed"),
        ("r0.days", "thu"),
        ("r0.days", "fri"),
        ("r0.from", "09:00"),
        ("r0.to", "18:00"),
        ("r0.min_severity", "warning"),
        ("r0.cp", "work"),
        ("r0.mode", "now"),
    ];
    let mut fields = first_rule.to_vec();
    fields.push(("op", "add"));
    let response = browser.post("/notifications/policies", &fields).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains("Rule 2"), "{page}");
    assert!(page.contains("name=\"r0.from\" value=\"09:00\""), "{page}");

    // An invalid submit: each error next to its field, nothing saved.
    let mut fields = first_rule.to_vec();
    fields[1] = ("rules", "2");
    fields.extend([
        ("r1.days", "mon"),
        ("r1.from", "25:00"),
        ("r1.outside", "on"),
        ("r1.min_severity", "critical"),
        ("r1.mode", "digest"),
        ("r1.digest", "soon"),
        ("op", "save"),
    ]);
    let response = browser.post("/notifications/policies", &fields).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    for field in ["r1-from", "r1-digest", "r1-cp"] {
        assert!(
            page.contains(&format!("id=\"f-{field}-error\"")),
            "{field}: {page}"
        );
    }
    assert!(page.contains("aria-describedby=\"f-r1-from-error\""));
    assert!(page.contains("value=\"25:00\""), "what was typed stays");
    let missing = app.get(&ann, "/api/v1/policies/default").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Fixed, the two rules are saved in my zone's wall-clock terms.
    let mut fields = first_rule.to_vec();
    fields[1] = ("rules", "2");
    fields.extend([
        ("r1.days", "mon"),
        ("r1.days", "tue"),
        ("r1.days", "wed"),
        ("r1.days", "thu"),
        ("r1.days", "fri"),
        ("r1.from", "09:00"),
        ("r1.to", "18:00"),
        ("r1.outside", "on"),
        ("r1.min_severity", "critical"),
        ("r1.cp", "home"),
        ("r1.mode", "digest"),
        ("r1.digest", "30m"),
        ("r1.repeat", "2h"),
        ("r1.resolved", "on"),
        ("op", "save"),
    ]);
    let response = browser.post("/notifications/policies", &fields).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&response).await,
        "/notifications?done=policy-saved"
    );
    let saved = app.get_json(&ann, "/api/v1/policies/default").await;
    let rules = saved["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 2, "{saved}");
    assert_eq!(rules[0]["when"]["from"], "09:00");
    assert_eq!(rules[0]["min_severity"], "warning");
    assert_eq!(rules[0]["contact_points"], json!(["work"]));
    assert_eq!(rules[0]["mode"], "now");
    assert_eq!(rules[1]["when"]["outside"], true);
    assert_eq!(rules[1]["mode"], json!({"digest": "30m"}));
    assert_eq!(rules[1]["repeat"], "2h");
    assert_eq!(rules[1]["notify_resolved"], true);

    // Editing shows it back; moving rule 2 up and saving swaps them.
    let page = browser.page("/notifications/policies/default").await;
    assert!(page.contains("name=\"r1.digest\" value=\"30m\""), "{page}");
    let overview = browser.page("/notifications?done=policy-saved").await;
    assert!(overview.contains("Policy saved."));
    assert!(overview.contains("in a digest every 30m"), "{overview}");

    // When will I be told: the week from the start of today (Monday) in my zone.
    let week = browser.page("/notifications/week?policy=default").await;
    assert!(week.contains("Mon 23 Nov 00:00"), "{week}");
    assert!(week.contains("rule 1: work at once"), "{week}");
    assert!(
        week.contains("rule 2: home in a digest every 30m"),
        "{week}"
    );
    assert!(
        week.contains("nobody is told"),
        "a warning outside work hours: {week}"
    );
}

#[tokio::test]
async fn a_silence_through_the_form_and_a_contact_point_deleted_by_force() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    contact(&app, &ann, "hook", "webhook", "http://127.0.0.1:9/h").await;
    policy(&app, &ann, "default", json!([{"contact_points": ["hook"]}])).await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    browser.page("/notifications/silences").await;
    let response = browser
        .post(
            "/notifications/silences",
            &[("filter", "fs == "), ("ends", "2h")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(page.contains("id=\"f-filter-error\""), "{page}");
    let response = browser
        .post(
            "/notifications/silences",
            &[
                ("filter", "fs == \"/home\""),
                ("ends", "2h"),
                ("comment", "maintenance"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let silences = app.get_json(&ann, "/api/v1/silences").await;
    assert_eq!(silences["items"][0]["filter"], "fs == \"/home\"");
    assert_eq!(silences["items"][0]["ends"], "2026-11-23T11:00:00Z");
    let overview = browser.page("/notifications").await;
    assert!(overview.contains("maintenance"));
    assert!(
        overview.contains("12:00 CET"),
        "until, in my zone: {overview}"
    );

    // The contact point the policy uses: the 409 names it and offers force.
    let confirm = browser
        .page("/notifications/contact-points/hook/delete")
        .await;
    assert!(confirm.contains("Delete hook"));
    let response = browser
        .post("/notifications/contact-points/hook/delete", &[])
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let page = response.text().await.unwrap();
    assert!(page.contains("`default`"), "{page}");
    assert!(page.contains("name=\"force\" value=\"true\""));
    let response = browser
        .post(
            "/notifications/contact-points/hook/delete",
            &[("force", "true")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let points = app.get_json(&ann, "/api/v1/contact-points").await;
    assert_eq!(points["items"], json!([]));
    let gone = app.get(&ann, "/api/v1/policies/default").await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND, "its only rule went");
}

#[tokio::test]
async fn my_deliveries_list_the_sent_one_and_explain_it() {
    let hook = HttpSink::start(StatusCode::OK, "{}").await;
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    let delivery = sent_delivery(&app, &ann, &hook).await;
    let id = delivery["id"].as_str().unwrap();
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let page = browser.page("/deliveries").await;
    assert!(page.contains(&format!("data-delivery=\"{id}\"")), "{page}");
    assert!(page.contains("✓</span> sent"));
    assert!(page.contains("hook") && page.contains("webhook"));
    assert!(page.contains("10:00 CET"), "the time in my zone: {page}");
    let failed = browser.page("/deliveries?status=failed").await;
    assert!(!failed.contains(&format!("data-delivery=\"{id}\"")));
    assert!(failed.contains("No deliveries with this status."));

    let explained = browser.page(&format!("/deliveries/{id}")).await;
    assert!(
        explained.contains("disk"),
        "the alert it carried: {explained}"
    );
    assert!(explained.contains("fired"));
    assert!(
        explained.contains("200 OK"),
        "the provider's answer: {explained}"
    );
    let alert_id = app.alerts(&ann, "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(explained.contains("How it came to this"), "{explained}");
    let why = browser.page(&format!("/alerts/{alert_id}/explain")).await;
    assert!(why.contains(&format!("/deliveries/{id}")), "{why}");
    assert!(why.contains("How it came to this"), "{why}");
    assert!(why.contains("policy"), "the rule that decided: {why}");
}

#[tokio::test]
async fn another_users_contact_point_policy_silence_and_delivery_are_not_found() {
    let hook = HttpSink::start(StatusCode::OK, "{}").await;
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    person(&app, "bob").await;
    let delivery = sent_delivery(&app, &ann, &hook).await;
    let delivery_id = delivery["id"].as_str().unwrap();
    let silence = app
        .post(
            &ann,
            "/api/v1/silences",
            json!({"filter": "true", "ends": "1h"}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let silence_id = silence["id"].as_str().unwrap();
    let alert_id = app.alerts(&ann, "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bob = Browser::signed_in(&app, "bob", &password_of("bob")).await;
    bob.page("/notifications").await;
    let unknown = bob.get("/deliveries/01JZZZZZZZZZZZZZZZZZZZZZZZ").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let not_found = unknown.text().await.unwrap();
    for path in [
        format!("/deliveries/{delivery_id}"),
        format!("/alerts/{alert_id}/explain"),
        "/notifications/policies/default".to_string(),
        "/notifications/week?policy=default".to_string(),
        "/notifications/contact-points/hook/delete".to_string(),
    ] {
        let response = bob.get(&path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(response.text().await.unwrap(), not_found, "{path}");
    }
    for path in [
        "/notifications/contact-points/hook/test".to_string(),
        "/notifications/contact-points/hook/delete".to_string(),
        "/notifications/policies/default/delete".to_string(),
        format!("/notifications/silences/{silence_id}/delete"),
    ] {
        let response = bob.post(&path, &[("force", "true")]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(response.text().await.unwrap(), not_found, "{path}");
    }
    assert_eq!(hook.requests().len(), 1, "bob sent no test to ann's hook");
    let points = app.get_json(&ann, "/api/v1/contact-points").await;
    assert_eq!(points["items"][0]["name"], "hook", "bob deleted nothing");
    let silences = app.get_json(&ann, "/api/v1/silences").await;
    assert_eq!(silences["items"].as_array().unwrap().len(), 1);
    let deliveries = bob.page("/deliveries").await;
    assert!(!deliveries.contains(delivery_id));
}

#[tokio::test]
async fn my_deliveries_change_live_without_reload() {
    let hook = HttpSink::start(StatusCode::OK, "{}").await;
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let page = browser.page("/deliveries").await;
    assert!(
        page.contains("data-live=\"/live?view=deliveries\""),
        "{page}"
    );
    let response = browser.get("/live?view=deliveries").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let snapshot = next_snapshot(&mut stream, &mut buffer).await;
    assert!(snapshot.contains("Nothing sent to you yet"), "{snapshot}");

    let delivery = sent_delivery(&app, &ann, &hook).await;
    let id = delivery["id"].as_str().unwrap();
    // Snapshots follow the delivery until one shows it sent.
    loop {
        let snapshot = next_snapshot(&mut stream, &mut buffer).await;
        if snapshot.contains(&format!("data-delivery=\"{id}\""))
            && snapshot.contains("✓</span> sent")
        {
            break;
        }
    }
}

/// The segments of one day of one severity's strip on the week page: (kind, x, width,
/// from, to, label), in order.
fn strip_segments(page: &str, severity: &str, date: &str) -> Vec<[String; 6]> {
    let strip = page
        .split_once(&format!(
            "<div class=\"strip\" aria-hidden=\"true\" data-severity=\"{severity}\">"
        ))
        .unwrap_or_else(|| panic!("a strip for {severity}: {page}"))
        .1;
    let strip = strip.split_once("</div>").expect("the strip ends").0;
    let day = strip
        .split_once(&format!("data-date=\"{date}\""))
        .unwrap_or_else(|| panic!("a bar for {date}: {strip}"))
        .1;
    let day = day
        .split_once("<line class=\"hour\"")
        .expect("the bar ends")
        .0;
    let attribute = |piece: &str, name: &str| -> String {
        let start = piece
            .find(&format!(" {name}=\""))
            .unwrap_or_else(|| panic!("{name} in {piece}"))
            + name.len()
            + 3;
        piece[start..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    day.split("<svg class=\"seg seg-")
        .skip(1)
        .map(|piece| {
            let kind = piece.split('"').next().unwrap_or_default().to_string();
            let label = piece
                .split_once("<text x=\"6\" y=\"50%\">")
                .and_then(|(_, rest)| rest.split_once("</text>"))
                .map(|(label, _)| label.to_string())
                .unwrap_or_default();
            [
                kind,
                attribute(piece, "x"),
                attribute(piece, "width"),
                attribute(piece, "data-from"),
                attribute(piece, "data-to"),
                label,
            ]
        })
        .collect()
}

#[tokio::test]
async fn the_week_page_draws_a_strip_per_severity_and_day() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    contact(&app, &ann, "mail", "email", "ann@example.com").await;
    contact(&app, &ann, "phone", "webhook", "http://127.0.0.1:9/sms").await;
    // Rule 1: warnings and worse by mail at once, 09:00 to 18:00 Monday to Friday in
    // Berlin; rule 2: everything else in an hourly digest; rule 3: critical ones also to
    // the phone on Saturday mornings.
    policy(
        &app,
        &ann,
        "default",
        json!([
            {"when": {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:00", "to": "18:00"},
             "min_severity": "warning", "contact_points": ["mail"], "mode": "now"},
            {"when": {"days": ["sat"], "from": "06:00", "to": "12:00"},
             "min_severity": "critical", "contact_points": ["phone"], "mode": "now", "continue": true},
            {"contact_points": ["mail"], "mode": {"digest": "1h"}},
        ]),
    )
    .await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let page = browser.page("/notifications/week?policy=default").await;
    let segment = |kind: &str, x: &str, width: &str, from: &str, to: &str, label: &str| {
        [kind, x, width, from, to, label].map(str::to_string)
    };

    // The test clock is Monday 23 November 2026, 10:00 in Berlin; the strip starts today.
    assert_eq!(
        strip_segments(&page, "warning", "2026-11-23"),
        [
            segment("held", "0%", "37.5%", "00:00", "09:00", "‖ mail"),
            segment("now", "37.5%", "37.5%", "09:00", "18:00", "➜ mail"),
            segment("held", "75%", "25%", "18:00", "24:00", "‖ mail"),
        ]
    );
    assert!(
        page.contains("<title>09:00–18:00: rule 1: mail at once</title>"),
        "each segment has its words: {page}"
    );
    assert!(
        page.contains("<span class=\"strip-day\">Mon 23</span>"),
        "{page}"
    );
    assert!(
        page.contains("<span class=\"strip-day\">Sun 29</span>"),
        "seven days: {page}"
    );
    assert!(
        !page.contains("data-date=\"2026-11-30\""),
        "seven days only: {page}"
    );
    // The weekend has no work hours; a critical alert also goes to the phone on Saturday
    // morning, while the digest goes on.
    assert_eq!(
        strip_segments(&page, "warning", "2026-11-28"),
        [segment("held", "0%", "100%", "00:00", "24:00", "‖ mail")]
    );
    assert_eq!(
        strip_segments(&page, "critical", "2026-11-28"),
        [
            segment("held", "0%", "25%", "00:00", "06:00", "‖ mail"),
            segment("now", "25%", "25%", "06:00", "12:00", "➜ phone ‖ mail"),
            segment("held", "50%", "50%", "12:00", "24:00", "‖ mail"),
        ]
    );
    // Below rule 1's minimum, every day is one digest.
    assert_eq!(
        strip_segments(&page, "info", "2026-11-23"),
        [segment("held", "0%", "100%", "00:00", "24:00", "‖ mail")]
    );
    // A key to read it by, and the table is still there under each strip.
    assert!(page.contains("‖ hatched: held for a digest"), "{page}");
    assert!(
        page.contains("<span class=\"h12\">12</span>"),
        "an hour scale: {page}"
    );
    assert_eq!(page.matches("<table class=\"week\">").count(), 3);
}
