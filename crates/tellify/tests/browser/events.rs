//! The events' live tail in Chromium: a CEL filter set on the page, events sent with the
//! API, only the matching ones appearing without reload, then one event's page.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::Browser;
use crate::helpers::{spawn_app, TestApp};
use crate::web::{password_of, person};

/// Sends one event (JSON) and returns its id.
async fn send(app: &TestApp, token: &str, event: Value) -> String {
    let response = app.post(token, "/api/v1/events", event).await;
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["ids"][0].as_str().expect("id").to_string()
}

#[tokio::test]
async fn the_live_tail_shows_only_events_matching_its_filter_without_reload() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    let earlier = send(
        &app,
        &ann,
        json!({"type": "disk", "message": "before the tail", "fields": {"usage": 99, "fs": "/"}}),
    )
    .await;
    let browser = Browser::start(&app).await;
    browser.sign_in("ann", &password_of("ann")).await;
    browser.open("/events").await;
    browser.wait_for("table.events").await;
    browser.look_at("events-search").await;
    browser.click("nav.event-views a[href*='live=1']").await;
    browser
        .wait_until(
            "the tail is open",
            "document.querySelector('tbody[data-tail][data-live-state=open]')",
        )
        .await;
    browser
        .fill("#filter", "usage > 90 && fs == \"/home\"")
        .await;
    browser.click("form.event-search button[type=submit]").await;
    browser
        .wait_until(
            "the tail with the filter",
            "location.search.includes('filter=') && document.querySelector('tbody[data-tail][data-live-state=open]')",
        )
        .await;
    assert_eq!(
        browser.value("#filter").await,
        "usage > 90 && fs == \"/home\"",
        "the filter stays in its field"
    );
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('#event-rows tr').length;")
            .await,
        json!(0),
        "an earlier event that does not match is not shown: {earlier}"
    );
    assert_eq!(
        browser
            .eval("var s = document.getElementById('tail-status'); return [s.hidden, s.classList.contains('live-ok')];")
            .await,
        json!([false, true]),
        "a live tail says so in the calm style, not the warning one"
    );
    browser.look_at("events-tail").await;

    // A marker that a reload would lose.
    browser.eval("window.tellifyMarker = 7; return 1;").await;
    let cool = send(
        &app,
        &ann,
        json!({"type": "disk", "message": "home fine", "fields": {"usage": 20, "fs": "/home"}}),
    )
    .await;
    let other = send(
        &app,
        &ann,
        json!({"type": "disk", "message": "var filling", "fields": {"usage": 97, "fs": "/var"}}),
    )
    .await;
    let hot = send(
        &app,
        &ann,
        json!({"type": "disk", "message": "home filling", "fields": {"usage": 95, "fs": "/home"}}),
    )
    .await;
    browser
        .wait_until(
            "the matching event appears",
            &format!("document.querySelector('tr[data-event=\"{hot}\"]')"),
        )
        .await;
    let hotter = send(
        &app,
        &ann,
        json!({"type": "disk", "message": "home full", "fields": {"usage": 99, "fs": "/home"}}),
    )
    .await;
    browser
        .wait_until(
            "the second matching event appears",
            &format!("document.querySelector('tr[data-event=\"{hotter}\"]')"),
        )
        .await;
    assert_eq!(
        browser.eval("return window.tellifyMarker;").await,
        json!(7),
        "no reload"
    );
    let shown: Vec<String> = serde_json::from_value(
        browser
            .eval("return Array.from(document.querySelectorAll('#event-rows tr')).map(function (r) { return r.dataset.event; });")
            .await,
    )
    .expect("ids");
    assert_eq!(
        shown,
        [hotter.clone(), hot.clone()],
        "newest first, only matching ones"
    );
    assert!(!shown.contains(&cool) && !shown.contains(&other));
    let text = browser.text("#event-rows").await;
    assert!(
        text.contains("home filling") && !text.contains("var filling"),
        "{text}"
    );
    browser.look_at("events-tail-live").await;

    // One event's page, from its row.
    browser
        .click(&format!("tr[data-event='{hot}'] a.open"))
        .await;
    browser.wait_for("#envelope-title").await;
    assert_eq!(browser.path().await, format!("/events/{hot}"));
    let fields = browser.table("#fields-title ~ table.kv").await;
    assert!(
        fields.contains(&vec!["usage".to_string(), "95".to_string()])
            && fields.contains(&vec!["fs".to_string(), "/home".to_string()]),
        "{fields:?}"
    );
    assert!(browser.text("main").await.contains("home filling"));
    browser.look_at("event-detail").await;
}
