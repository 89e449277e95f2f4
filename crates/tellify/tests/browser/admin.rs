//! The admin pages in Chromium: offboarding a user shows its dry run first, and only the
//! confirming click removes the user, as the dry run said, and ends their session.

use reqwest::StatusCode;
use serde_json::json;

use super::{contact, Browser};
use crate::helpers::spawn_app;
use crate::web::{password_of, person};

#[tokio::test]
async fn an_admin_offboards_a_user_after_the_dry_run() {
    let app = spawn_app().await;
    let bob = person(&app, "bob").await;
    app.subscribe(
        &bob,
        json!({"kind": "match", "title": "bob's backups", "params": {"filter": "true"}}),
    )
    .await;
    app.subscribe(
        &bob,
        json!({"kind": "threshold", "title": "bob's disks", "params": {"field": "usage", "warn": 90}}),
    )
    .await;
    contact(&app, &bob, "pager", "webhook", "http://127.0.0.1:9/pager").await;
    let subscriptions = app.get_json(&app.admin, "/api/v1/subscriptions").await;
    assert!(
        subscriptions.to_string().contains("bob's disks"),
        "the admin sees them"
    );
    // Bob is signed in elsewhere (a session of his own, with its cookie).
    let mut bobs_session = crate::web::Browser::signed_in(&app, "bob", &password_of("bob")).await;
    let password = app
        .app
        .bootstrap_password
        .clone()
        .expect("the first start made a password");

    let browser = Browser::start(&app).await;
    browser.sign_in("admin", &password).await;
    browser.open("/admin/users").await;
    browser.wait_for("main h1").await;
    browser.look_at("admin-users").await;
    browser.click("a[href='/admin/users/bob']").await;
    browser
        .wait_for("a[href='/admin/users/bob/offboard']")
        .await;
    browser.look_at("admin-user").await;
    browser.click("a[href='/admin/users/bob/offboard']").await;

    // The dry run: what will go, counted, and nothing gone yet.
    browser.wait_for("#offboard-preview").await;
    assert!(browser.text("main").await.contains("This is a dry run"));
    let preview: Vec<(String, String)> = browser
        .table("#offboard-preview")
        .await
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    let count = |what: &str| {
        preview
            .iter()
            .find(|(kind, _)| kind == what)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| panic!("the dry run lists {what}: {preview:?}"))
    };
    assert_eq!(count("subscriptions"), "2", "{preview:?}");
    assert_eq!(count("tokens"), "1", "{preview:?}");
    assert_eq!(count("contact points"), "1", "{preview:?}");
    assert_eq!(
        app.get(&app.admin, "/api/v1/users/bob").await.status(),
        StatusCode::OK,
        "the dry run removes nothing"
    );
    assert_eq!(bobs_session.get("/").await.status(), StatusCode::OK);
    browser.look_at("admin-offboard-preview").await;

    browser
        .click("#offboard-preview ~ form button.danger")
        .await;
    browser
        .wait_until(
            "back on the users page",
            "location.search.includes('done=offboarded')",
        )
        .await;
    assert!(browser.text("main").await.contains("Offboarded"));
    assert_eq!(
        browser
            .eval("return document.querySelectorAll(\"a[href='/admin/users/bob']\").length;")
            .await,
        json!(0),
        "bob is no longer listed"
    );
    browser.look_at("admin-offboarded").await;

    // As the dry run said: the user, their subscriptions and token are gone.
    assert_eq!(
        app.get(&app.admin, "/api/v1/users/bob").await.status(),
        StatusCode::NOT_FOUND
    );
    let subscriptions = app.get_json(&app.admin, "/api/v1/subscriptions").await;
    assert!(
        !subscriptions.to_string().contains("bob's"),
        "{subscriptions}"
    );
    assert_eq!(
        app.get(&bob, "/api/v1/alerts").await.status(),
        StatusCode::UNAUTHORIZED,
        "bob's token no longer works"
    );
    let response = bobs_session.get("/").await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "bob's session ended"
    );
    assert!(crate::web::location(&response).await.starts_with("/login"));
}
