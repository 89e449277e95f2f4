//! The admin pages and my account, driven over HTTP with a session cookie: only admins
//! see `/admin` (anyone else gets the site's 404 page), every form needs the session's
//! CSRF token, offboarding shows its dry run before it removes anything, and each form's
//! errors are shown next to their field.

use reqwest::StatusCode;
use serde_json::json;

use super::{location, password_of, person, Browser};
use crate::helpers::{spawn_app, TestApp};

/// The admin, signed in with the password the first start made.
async fn admin_browser(app: &TestApp) -> Browser {
    let password = app
        .app
        .bootstrap_password
        .clone()
        .expect("the first start made a password");
    Browser::signed_in(app, "admin", &password).await
}

/// The HTML of a page answered with `status`.
async fn answered(browser: &mut Browser, path: &str, status: StatusCode) -> String {
    let response = browser.get(path).await;
    assert_eq!(response.status(), status, "GET {path}");
    response.text().await.expect("html")
}

async fn exists(app: &TestApp, name: &str) -> bool {
    app.get(&app.admin, &format!("/api/v1/users/{name}"))
        .await
        .status()
        == StatusCode::OK
}

#[tokio::test]
async fn a_non_admin_gets_the_sites_not_found_page_on_every_admin_page() {
    let app = spawn_app().await;
    person(&app, "ann").await;
    let mut ann = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let not_found = answered(&mut ann, "/alerts/no-such-alert", StatusCode::NOT_FOUND).await;
    assert!(
        !ann.page("/").await.contains("href=\"/admin\""),
        "no admin link"
    );
    for path in [
        "/admin",
        "/admin/users",
        "/admin/users/admin",
        "/admin/users/admin/offboard",
        "/admin/groups",
        "/admin/event-types",
        "/admin/event-types/new",
        "/admin/tokens",
        "/admin/no-such-page",
    ] {
        let page = answered(&mut ann, path, StatusCode::NOT_FOUND).await;
        assert_eq!(page, not_found, "{path} answers the site's 404 page");
    }
    // A form with her valid CSRF token does nothing either.
    ann.page("/").await;
    let response = ann
        .post(
            "/admin/users",
            &[
                ("name", "eve"),
                ("password", "eve's password 1"),
                ("admin", "on"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(!exists(&app, "eve").await);
    let response = ann
        .post("/admin/users/admin/offboard", &[("confirm", "yes")])
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(exists(&app, "admin").await);

    // An admin sees them; an unknown admin page is the same 404 page for them too.
    let mut admin = admin_browser(&app).await;
    assert!(admin.page("/").await.contains("href=\"/admin\""));
    for path in [
        "/admin",
        "/admin/users",
        "/admin/groups",
        "/admin/event-types",
        "/admin/tokens",
    ] {
        admin.page(path).await;
    }
    let page = answered(&mut admin, "/admin/no-such-page", StatusCode::NOT_FOUND).await;
    assert_eq!(page, not_found);
}

#[tokio::test]
async fn a_form_without_the_sessions_csrf_token_is_refused() {
    let app = spawn_app().await;
    person(&app, "ann").await;
    let mut admin = admin_browser(&app).await;
    admin.page("/admin/users").await;
    for token in ["", "not-the-token"] {
        let response = admin
            .post(
                "/admin/users",
                &[
                    ("_csrf", token),
                    ("name", "eve"),
                    ("password", "eve's password 1"),
                ],
            )
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "_csrf={token:?}");
    }
    assert!(!exists(&app, "eve").await);
    let response = admin
        .post(
            "/admin/users/ann/offboard",
            &[("_csrf", ""), ("confirm", "yes")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(exists(&app, "ann").await);

    let mut ann = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    ann.page("/account").await;
    let response = ann
        .post(
            "/account/password",
            &[
                ("_csrf", ""),
                ("current", &password_of("ann")),
                ("password", "ann's new password"),
                ("password_again", "ann's new password"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let mut again = Browser::new(&app);
    let response = again.sign_in("ann", &password_of("ann")).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "the password stayed"
    );
}

#[tokio::test]
async fn offboarding_shows_the_dry_run_before_it_removes_anything() {
    let app = spawn_app().await;
    let bob = person(&app, "bob").await;
    app.subscribe(
        &bob,
        json!({"kind": "match", "title": "bob's backups", "params": {"filter": "true"}}),
    )
    .await;
    let mut bobs_browser = Browser::signed_in(&app, "bob", &password_of("bob")).await;
    let mut admin = admin_browser(&app).await;

    let user_page = admin.page("/admin/users/bob").await;
    assert!(
        user_page.contains("href=\"/admin/users/bob/offboard\""),
        "{user_page}"
    );
    let preview = admin.page("/admin/users/bob/offboard").await;
    assert!(preview.contains("dry run"), "{preview}");
    assert!(
        preview.contains("<th scope=\"row\">subscriptions</th><td class=\"num\">1</td>"),
        "{preview}"
    );
    assert!(preview.contains("<th scope=\"row\">tokens</th><td class=\"num\">1</td>"));
    assert!(exists(&app, "bob").await, "the preview removes nothing");
    bobs_browser.page("/").await;

    // A POST without the preview's confirmation shows the preview again and does nothing.
    let response = admin.post("/admin/users/bob/offboard", &[]).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response.text().await.expect("html").contains("dry run"));
    assert!(exists(&app, "bob").await);

    let response = admin
        .post("/admin/users/bob/offboard", &[("confirm", "yes")])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).await, "/admin/users?done=offboarded");
    assert!(!exists(&app, "bob").await);
    let response = bobs_browser.get("/").await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "bob's session ended"
    );
    let users = admin.page("/admin/users?done=offboarded").await;
    assert!(users.contains("Offboarded"), "{users}");
    assert!(!users.contains("/admin/users/bob\""), "{users}");
    // An admin cannot offboard themselves: the page says so.
    let response = admin
        .post("/admin/users/admin/offboard", &[("confirm", "yes")])
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn an_admin_creates_a_user_with_a_password_then_resets_it_and_changes_the_role() {
    let app = spawn_app().await;
    let mut admin = admin_browser(&app).await;
    admin.page("/admin/users").await;
    let response = admin
        .post(
            "/admin/users",
            &[
                ("name", "carol"),
                ("timezone", "Mars/Base"),
                ("password", "short"),
                ("email", "carol@example.com"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.expect("html");
    assert!(page.contains("id=\"timezone-error\""), "{page}");
    assert!(page.contains("is not an IANA time zone"), "{page}");
    assert!(page.contains("id=\"password-error\""), "{page}");
    assert!(
        page.contains("value=\"carol@example.com\""),
        "what was typed stays"
    );
    assert!(!page.contains("value=\"short\""), "but never the password");
    assert!(!exists(&app, "carol").await);

    let response = admin
        .post(
            "/admin/users",
            &[
                ("name", "carol"),
                ("timezone", "Europe/Berlin"),
                ("password", "carol's first password"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).await, "/admin/users/carol?done=created");
    let mut carol = Browser::signed_in(&app, "carol", "carol's first password").await;

    admin.page("/admin/users/carol").await;
    let response = admin
        .post("/admin/users/carol/password", &[("password", "tiny")])
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response
        .text()
        .await
        .expect("html")
        .contains("id=\"password-error\""));
    let response = admin
        .post(
            "/admin/users/carol/password",
            &[("password", "carol's reset password")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        carol.get("/").await.status(),
        StatusCode::SEE_OTHER,
        "signed out"
    );
    let mut carol = Browser::signed_in(&app, "carol", "carol's reset password").await;

    let response = admin
        .post("/admin/users/carol/role", &[("admin", "true")])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let user = app.get_json(&app.admin, "/api/v1/users/carol").await;
    assert_eq!(user["admin"], true);
    assert_eq!(
        carol.get("/").await.status(),
        StatusCode::SEE_OTHER,
        "signed out"
    );
    // The last admin stays one: taking it from yourself is refused with words.
    let response = admin
        .post("/admin/users/admin/role", &[("admin", "false")])
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(response
        .text()
        .await
        .expect("html")
        .contains("id=\"role-error\""));
}

#[tokio::test]
async fn groups_members_event_types_and_tokens_are_managed_from_their_pages() {
    let app = spawn_app().await;
    person(&app, "ann").await;
    let mut admin = admin_browser(&app).await;

    admin.page("/admin/groups").await;
    let response = admin.post("/admin/groups", &[("name", "Bad Name")]).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response
        .text()
        .await
        .expect("html")
        .contains("id=\"group-name-error\""));
    let response = admin.post("/admin/groups", &[("name", "ops")]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let response = admin
        .post("/admin/groups/ops/members", &[("user", "ann")])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let group = app.get_json(&app.admin, "/api/v1/groups/ops").await;
    assert_eq!(group["members"], json!(["ann"]));
    let page = admin.page("/admin/groups").await;
    assert!(page.contains("Remove ann from ops"), "{page}");
    let response = admin
        .post("/admin/groups/ops/members/ann/remove", &[])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let group = app.get_json(&app.admin, "/api/v1/groups/ops").await;
    assert_eq!(group["members"], json!([]));

    // Event types: a schema that is not JSON, or not a schema, is shown at its field.
    admin.page("/admin/event-types/new").await;
    let response = admin
        .post(
            "/admin/event-types",
            &[
                ("name", "disk"),
                ("schema", "{not json"),
                ("description", "disks"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.expect("html");
    assert!(page.contains("id=\"et-schema-error\">not JSON"), "{page}");
    assert!(
        page.contains("{not json</textarea>"),
        "what was typed stays: {page}"
    );
    let response = admin
        .post(
            "/admin/event-types",
            &[
                ("name", "disk"),
                ("schema", r#"{"type": 5}"#),
                ("dedup_interval", "soon"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.expect("html");
    assert!(
        page.contains("id=\"et-schema-error\">not a valid JSON Schema"),
        "{page}"
    );
    assert!(page.contains("id=\"et-dedup-error\""), "{page}");
    let response = admin
        .post(
            "/admin/event-types",
            &[
                ("name", "disk"),
                ("description", "<script>alert(1)</script>"),
                ("default_severity", "warning"),
                ("dedup_interval", "10m"),
                (
                    "schema",
                    r#"{"type": "object", "properties": {"usage": {"type": "number"}}}"#,
                ),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let stored = app.get_json(&app.admin, "/api/v1/event-types/disk").await;
    assert_eq!(stored["default_severity"], "warning");
    assert_eq!(stored["dedup_interval"], "10m");
    let list = admin.page("/admin/event-types").await;
    assert!(
        list.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{list}"
    );
    assert!(!list.contains("<script>alert"), "escaped: {list}");
    let edit = admin.page("/admin/event-types/disk").await;
    assert!(
        edit.contains("<option value=\"warning\" selected>"),
        "{edit}"
    );
    let response = admin.post("/admin/event-types/disk/delete", &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let response = app.get(&app.admin, "/api/v1/event-types/disk").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Tokens: everyone's, and a revoked one stops working at once.
    let bob_token = app.user("bob").await;
    let page = admin.page("/admin/tokens").await;
    assert!(page.contains("<td>bob</td>"), "{page}");
    let tokens = app.get_json(&app.admin, "/api/v1/tokens?user=bob").await;
    let id = tokens["items"][0]["id"].as_str().expect("id").to_string();
    let response = admin.post(&format!("/admin/tokens/{id}/revoke"), &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let response = app.get(&bob_token, "/api/v1/users/me").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_health_section_shows_figures_from_the_store_and_the_counters() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    app.send_lines(&ann, "type:disk fs:/home usage:50\n").await;
    let mut admin = admin_browser(&app).await;
    let page = admin.page("/admin").await;
    for words in [
        "Ingest rate",
        "events a minute on average since the start",
        "Processing lag",
        "0 events stored but not processed yet",
        "Outbox backlog",
        "0 notifications and deliveries due and not sent; oldest due since: nothing is due",
    ] {
        assert!(page.contains(words), "{words}: {page}");
    }
    let last = app.app.state.store.last_seq().await.expect("seq");
    assert!(page.contains(&format!("processed up to #{last}")), "{page}");
}

#[tokio::test]
async fn on_my_account_page_i_change_my_password_name_and_zone() {
    let app = spawn_app().await;
    person(&app, "ann").await;
    let mut laptop = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let mut phone = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let page = laptop.page("/account").await;
    assert!(
        page.contains("<label for=\"current\">Current password</label>"),
        "{page}"
    );

    let new = "ann's second password";
    let response = laptop
        .post(
            "/account/password",
            &[
                ("current", "wrong"),
                ("password", new),
                ("password_again", new),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let page = response.text().await.expect("html");
    assert!(
        page.contains("id=\"current-error\">the current password is not right"),
        "{page}"
    );
    let response = laptop
        .post(
            "/account/password",
            &[
                ("current", &password_of("ann")),
                ("password", new),
                ("password_again", "something else"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response
        .text()
        .await
        .expect("html")
        .contains("id=\"password_again-error\""));
    let response = laptop
        .post(
            "/account/password",
            &[
                ("current", &password_of("ann")),
                ("password", new),
                ("password_again", new),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).await, "/account?done=password");
    let page = laptop.page("/account?done=password").await;
    assert!(
        page.contains("Password changed"),
        "this session stays: {page}"
    );
    assert_eq!(
        phone.get("/").await.status(),
        StatusCode::SEE_OTHER,
        "the other ended"
    );
    Browser::signed_in(&app, "ann", new).await;

    let response = laptop
        .post(
            "/account/profile",
            &[
                ("display_name", "Ann <b>Smith</b>"),
                ("timezone", "Mars/Base"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.expect("html");
    assert!(page.contains("id=\"timezone-error\""), "{page}");
    assert!(
        page.contains("Ann &#60;b&#62;Smith&#60;/b&#62;"),
        "typed, escaped: {page}"
    );
    let response = laptop
        .post(
            "/account/profile",
            &[
                ("display_name", "Ann Smith"),
                ("timezone", "America/New_York"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let user = app.get_json(&app.admin, "/api/v1/users/ann").await;
    assert_eq!(user["timezone"], "America/New_York");
    assert_eq!(user["display_name"], "Ann Smith");
}
