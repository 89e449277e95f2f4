//! My alerts in Chromium: sign in, an alert appearing live, the keyboard, a dropped and
//! restored live stream, and hostile event text.

use serde_json::json;

use super::Browser;
use crate::helpers::{spawn_app, TestApp};
use crate::web::{password_of, person};

async fn disk(app: &TestApp, token: &str) {
    app.subscribe(
        token,
        json!({"kind": "threshold", "title": "disk", "params": {"field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]}}),
    )
    .await;
}

#[tokio::test]
async fn an_alert_appears_live_and_is_acknowledged_with_the_keyboard() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    disk(&app, &ann).await;
    let browser = Browser::start(&app).await;
    browser.open("/").await;
    assert!(browser.path().await.starts_with("/login?next="));
    browser.wait_for("#name").await;
    browser.look_at("sign-in").await;
    browser.sign_in("ann", &password_of("ann")).await;
    browser.wait_for("#alert-list[data-live-state=open]").await;
    browser.look_at("alerts-empty").await;

    // A marker that a reload would lose.
    browser.eval("window.tellifyMarker = 42; return 1;").await;
    app.send_lines(&ann, "usage:98 fs:/home").await;
    browser
        .wait_until(
            "the alert shows up",
            "document.querySelector('tr[data-alert]')",
        )
        .await;
    assert_eq!(
        browser.eval("return window.tellifyMarker;").await,
        json!(42),
        "no reload"
    );
    let row = browser.text("tr[data-alert]").await;
    assert!(row.contains("critical") && row.contains("/home"), "{row}");
    browser.look_at("alerts-firing").await;

    // j moves to the alert, a acknowledges it.
    browser.keys("j").await;
    browser
        .wait_until(
            "the row is current",
            "document.querySelector('tr.current[data-alert]')",
        )
        .await;
    browser.keys("a").await;
    browser
        .wait_until(
            "the page says it is done",
            "location.search.includes('done=acked')",
        )
        .await;
    let alert = &app.alerts(&ann, "").await[0];
    assert_eq!(alert["acked"], json!(true));
    assert_eq!(alert["acked_by"], json!("ann"));
    assert!(browser
        .text("#alert-list")
        .await
        .contains("acknowledged by ann"));

    // ? shows the keys.
    browser.keys("?").await;
    browser
        .wait_until(
            "the keys dialog opens",
            "document.getElementById('keys').open",
        )
        .await;
    browser.look_at("keyboard-help").await;
}

#[tokio::test]
async fn a_dropped_live_stream_comes_back_equal_to_a_fresh_load() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    disk(&app, &ann).await;
    app.send_lines(&ann, "usage:98 fs:/home").await;
    let browser = Browser::start(&app).await;
    browser.sign_in("ann", &password_of("ann")).await;
    browser.wait_for("#alert-list[data-live-state=open]").await;
    browser.eval("window.tellifyLive.drop(); return 1;").await;

    // While the stream is down: a new alert, an ack through the API, and a resolve.
    app.send_lines(&ann, "usage:95 fs:/var\nusage:99 fs:/data")
        .await;
    let alerts = app.alerts(&ann, "").await;
    let home = alerts
        .iter()
        .find(|a| {
            a["group_key"]
                .as_str()
                .unwrap_or_default()
                .contains("/home")
        })
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let response = app
        .post(&ann, &format!("/api/v1/alerts/{home}/ack"), json!({}))
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    app.send_lines(&ann, "usage:10 fs:/data").await;
    let stale = browser.text("#alert-list").await;
    assert!(!stale.contains("/var"), "the dropped stream saw nothing");

    let before: u64 = browser
        .eval("return Number(document.getElementById('alert-list').dataset.snapshots || 0);")
        .await
        .as_u64()
        .unwrap_or(0);
    browser
        .eval("window.tellifyLive.restore(); return 1;")
        .await;
    browser
        .wait_until(
            "a snapshot after reconnecting",
            &format!("Number(document.getElementById('alert-list').dataset.snapshots) > {before}"),
        )
        .await;
    let live = browser.text("#alert-list").await;
    browser.open("/").await;
    browser.wait_for("#alert-list").await;
    let fresh = browser.text("#alert-list").await;
    assert_eq!(live, fresh, "the live page equals a fresh load");
    assert!(
        fresh.contains("/var") && fresh.contains("acknowledged by ann"),
        "{fresh}"
    );
}

#[tokio::test]
async fn script_in_every_event_field_runs_nowhere() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    let hostile =
        "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">";
    app.subscribe(
        &ann,
        json!({"kind": "match", "title": hostile, "params": {"filter": "true", "group_by": ["host"]}}),
    )
    .await;
    let browser = Browser::start(&app).await;
    browser.sign_in("ann", &password_of("ann")).await;
    browser.wait_for("#alert-list[data-live-state=open]").await;
    let response = app
        .post(
            &ann,
            "/api/v1/events",
            json!({"type": "hostile", "message": hostile, "source": {"host": hostile},
                   "fields": {"host": hostile, "note": hostile, "nested": {"deep": hostile}}}),
        )
        .await;
    assert_eq!(
        response.status(),
        reqwest::StatusCode::ACCEPTED,
        "{}",
        response.text().await.unwrap()
    );
    app.settle().await;
    // Arrives live (innerHTML), then on a fresh load, then on its own page.
    browser
        .wait_until(
            "the alert shows up",
            "document.querySelector('tr[data-alert]')",
        )
        .await;
    let id = app.alerts(&ann, "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        "/".to_string(),
        format!("/alerts/{id}"),
        "/acks".to_string(),
    ] {
        browser.open(&path).await;
        browser.wait_for("main").await;
        let title = browser.eval("return document.title;").await;
        assert_ne!(title, json!("pwned"), "{path}");
        let injected = browser
            .eval("return document.querySelectorAll('main script, main img[src=x]').length;")
            .await;
        assert_eq!(injected, json!(0), "{path}");
    }
    browser.open(&format!("/alerts/{id}")).await;
    browser.wait_for("main h1").await;
    assert!(
        browser.text("main").await.contains("<script>"),
        "shown as text"
    );
    browser.look_at("alert-page").await;
    browser.open("/acks").await;
    browser.look_at("acks").await;
}

/// A session ended elsewhere (an admin resets the password) sends the open page to the
/// sign-in page at the next change, through the live stream's `signed-out` signal.
#[tokio::test]
async fn a_page_whose_session_ended_goes_to_sign_in_at_the_next_change() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    disk(&app, &ann).await;
    let browser = Browser::start(&app).await;
    browser.sign_in("ann", &password_of("ann")).await;
    browser.wait_for("#alert-list[data-live-state=open]").await;
    let response = app
        .client
        .put(app.url("/api/v1/users/ann/password"))
        .bearer_auth(&app.admin)
        .json(&json!({"password": "a-new-correct-horse"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    app.send_lines(&ann, "usage:98 fs:/home").await;
    browser
        .wait_until("the page goes to sign in", "location.pathname === '/login'")
        .await;
    assert_eq!(browser.path().await, "/login?next=%2F");
    browser.wait_for("#name").await;
}
