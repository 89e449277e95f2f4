//! My subscriptions in Chromium: a threshold subscription made through the form generated
//! from its schema, an invalid submit first, then the preview over events sent earlier.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::Browser;
use crate::helpers::{spawn_app, TestApp};
use crate::web::{password_of, person};

/// Sends one event with its own `time` and waits until it is processed.
async fn send_at(app: &TestApp, token: &str, time: &str, fs: &str, usage: u32) {
    let response = app
        .post(
            token,
            "/api/v1/events",
            json!({"time": time, "type": "disk", "message": format!("{fs} at {usage}%"),
                   "fields": {"fs": fs, "usage": usage}}),
        )
        .await;
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.settle().await;
}

/// The error paragraph inside the container of the control named `name`, and that
/// container's text: the error must sit next to its own field.
async fn error_at(browser: &Browser, name: &str) -> String {
    browser
        .text(&format!("div.field[data-field='{name}'] p.field-error"))
        .await
}

#[tokio::test]
async fn a_threshold_subscription_through_the_form_with_an_invalid_submit_then_its_preview() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    // The test clock is Monday 09:00 UTC (10:00 in ann's Berlin). Sent earlier, each with its
    // own time: one more than 24 h ago, the rest inside the preview's default window.
    send_at(&app, &ann, "2026-11-22T08:00:00Z", "/old", 99).await;
    send_at(&app, &ann, "2026-11-22T12:00:00Z", "/home", 95).await;
    send_at(&app, &ann, "2026-11-23T06:30:00Z", "/var", 98).await;
    send_at(&app, &ann, "2026-11-23T07:00:00Z", "/tmp", 10).await;
    send_at(&app, &ann, "2026-11-23T07:15:00Z", "/boot", 99).await;

    let browser = Browser::start(&app).await;
    browser.sign_in("ann", &password_of("ann")).await;
    browser.open("/subscriptions/new").await;
    browser.look_at("subscription-kinds").await;
    browser
        .click("a[href='/subscriptions/new?kind=threshold']")
        .await;
    browser.wait_for("#subscription-form").await;
    browser.look_at("subscription-form").await;

    // One invalid submit: critical below warn, and a CEL filter with `=` for `==`.
    browser.fill("#f-title", "Disk space").await;
    browser.fill("#f-params-filter", "fs = \"/boot\"").await;
    browser.fill("#f-params-field", "usage").await;
    browser.fill("#f-params-warn", "95").await;
    browser.fill("#f-params-critical", "90").await;
    browser.fill("#f-params-group-by", "fs").await;
    browser.click("#save-button").await;
    browser.wait_for("#form-errors").await;
    assert_eq!(browser.status().await, 422);
    let critical = error_at(&browser, "params.critical").await;
    assert!(
        critical.contains("must be greater than warn (95)"),
        "{critical}"
    );
    let filter = error_at(&browser, "params.filter").await;
    assert!(filter.contains("line 1, column 4"), "{filter}");
    assert!(
        browser
            .text("div.field[data-field='params.filter'] pre.caret")
            .await
            .contains('^'),
        "the caret under the position"
    );
    assert_eq!(
        error_at(&browser, "params.warn").await,
        "",
        "no error at a good field"
    );
    assert_eq!(
        browser
            .eval(
                "return document.getElementById('f-params-critical').getAttribute('aria-invalid');"
            )
            .await,
        json!("true")
    );
    // What was typed stays, in every field.
    assert_eq!(browser.value("#f-title").await, "Disk space");
    assert_eq!(browser.value("#f-params-filter").await, "fs = \"/boot\"");
    assert_eq!(browser.value("#f-params-field").await, "usage");
    assert_eq!(browser.value("#f-params-warn").await, "95");
    assert_eq!(browser.value("#f-params-critical").await, "90");
    assert_eq!(browser.value("#f-params-group-by").await, "fs");
    let listed = app.get_json(&ann, "/api/v1/subscriptions").await;
    assert_eq!(listed["items"], json!([]), "nothing was created");
    browser.look_at("subscription-form-errors").await;

    // Fixed, it is created.
    browser.fill("#f-params-filter", "fs != \"/boot\"").await;
    browser.fill("#f-params-warn", "90").await;
    browser.fill("#f-params-critical", "97").await;
    browser.click("#save-button").await;
    browser
        .wait_until(
            "the subscription's page",
            "location.search === '?done=created'",
        )
        .await;
    let path = browser.path().await;
    let id = path
        .strip_prefix("/subscriptions/")
        .and_then(|rest| rest.strip_suffix("?done=created"))
        .unwrap_or_else(|| panic!("went to {path}"))
        .to_string();
    assert!(browser.text("main").await.contains("Subscription created."));
    let saved = app
        .get_json(&ann, &format!("/api/v1/subscriptions/{id}"))
        .await;
    assert_eq!(saved["title"], json!("Disk space"));
    assert_eq!(
        saved["params"],
        json!({"filter": "fs != \"/boot\"", "field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]})
    );
    browser.look_at("subscription-created").await;

    // The preview over the last 24 h, from the edit form: what it would have fired, when.
    browser.open(&format!("/subscriptions/{id}/edit")).await;
    browser.click("#preview-button").await;
    browser.wait_for("#preview").await;
    assert_eq!(
        browser.eval("return location.hash;").await,
        json!("#preview"),
        "the page opens at the preview, below the form"
    );
    let rows = browser.table("#preview table.preview").await;
    let summary: Vec<(String, String, String)> = rows
        .iter()
        .map(|row| (row[0].clone(), row[1].clone(), row[2].clone()))
        .collect();
    assert_eq!(summary.len(), 2, "{rows:?}");
    assert!(summary[0].0.contains("13:00"), "in ann's zone: {rows:?}");
    assert!(summary[0].1.contains("/home"), "{rows:?}");
    assert!(summary[0].2.contains("warning"), "{rows:?}");
    assert!(summary[1].0.contains("07:30"), "{rows:?}");
    assert!(summary[1].1.contains("/var"), "{rows:?}");
    assert!(summary[1].2.contains("critical"), "{rows:?}");
    assert!(rows.iter().all(|row| row[3].contains("fired")), "{rows:?}");
    let said = browser.text("#preview").await;
    for absent in ["/old", "/tmp", "/boot"] {
        assert!(!said.contains(absent), "{absent} fires nothing: {said}");
    }
    assert!(said.contains("Nothing was saved."), "{said}");
    assert!(
        app.alerts(&ann, "").await.is_empty(),
        "the preview made no alert"
    );
    browser.look_at("subscription-preview").await;
}
