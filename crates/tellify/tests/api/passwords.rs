//! Dashboard passwords through the API: an admin gives one when creating a user and resets
//! anyone's; a person changes their own with the current one; every change ends the
//! sessions it should, and the audit log records it without the password.

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tellify::services::sessions::{self, SignInError};

use crate::helpers::{problem, spawn_app, TestApp};

const ANN_PASSWORD: &str = "ann's first password";

async fn put(app: &TestApp, token: &str, path: &str, body: Value) -> Response {
    app.client
        .put(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// Creates `name` with `password` and a `user` token; returns the token.
async fn user_with_password(app: &TestApp, name: &str, password: &str) -> String {
    let response = app
        .post(
            &app.admin,
            "/api/v1/users",
            json!({"name": name, "password": password}),
        )
        .await;
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("password").is_none(), "never echoed: {body}");
    assert!(!body.to_string().contains("argon2"), "no hash: {body}");
    let response = app
        .post(
            &app.admin,
            "/api/v1/tokens",
            json!({"name": "test", "scopes": ["user"], "user": name}),
        )
        .await;
    let body: Value = response.json().await.expect("json");
    body["token"].as_str().expect("token").to_string()
}

/// Signs in as the dashboard does; the session's secret, or why not.
async fn sign_in(app: &TestApp, name: &str, password: &str) -> Result<String, SignInError> {
    sessions::sign_in(&app.app.state, name, password, None)
        .await
        .map(|session| session.secret)
}

/// Whether a session's secret still opens a session.
async fn open(app: &TestApp, secret: &str) -> bool {
    sessions::resolve(&app.app.state, secret)
        .await
        .expect("resolve")
        .is_some()
}

/// Every audit record as one text, to look for what must never be in it.
async fn audit_text(app: &TestApp) -> (Vec<Value>, String) {
    let page = app.get_json(&app.admin, "/api/v1/audit?limit=1000").await;
    let items = page["items"].as_array().expect("items").clone();
    let text = page.to_string();
    (items, text)
}

#[tokio::test]
async fn a_user_created_with_a_password_signs_in_with_it_and_a_short_one_creates_nobody() {
    let app = spawn_app().await;
    user_with_password(&app, "ann", ANN_PASSWORD).await;
    let session = sign_in(&app, "ann", ANN_PASSWORD).await.expect("signed in");
    assert!(open(&app, &session).await);
    assert!(matches!(
        sign_in(&app, "ann", "ann's wrong password").await,
        Err(SignInError::Mismatch)
    ));

    // Too short: every field's problem at once, and no user.
    let response = app
        .post(
            &app.admin,
            "/api/v1/users",
            json!({"name": "bob", "password": "short", "timezone": "Mars/Base"}),
        )
        .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|error| error["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"password") && paths.contains(&"timezone"),
        "{body}"
    );
    assert!(
        !body.to_string().contains("short\""),
        "the password is not echoed: {body}"
    );
    let response = app.get(&app.admin, "/api/v1/users/bob").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // A user created without one cannot sign in until it is set.
    app.user("carol").await;
    assert!(sign_in(&app, "carol", "any password at all").await.is_err());

    let (records, text) = audit_text(&app).await;
    let created = records
        .iter()
        .find(|record| record["action"] == "user.created" && record["subject"] == "user ann")
        .expect("audited");
    assert_eq!(created["detail"]["password"], true, "{created}");
    assert!(!text.contains(ANN_PASSWORD), "{text}");
}

#[tokio::test]
async fn an_admin_resets_anyones_password_and_a_user_cannot_touch_anothers() {
    let app = spawn_app().await;
    let ann = user_with_password(&app, "ann", ANN_PASSWORD).await;
    user_with_password(&app, "bob", "bob's first password").await;
    let bobs_session = sign_in(&app, "bob", "bob's first password")
        .await
        .expect("signed in");

    // Another user's name answers as an unknown one does.
    let body = json!({"password": "ann sets bob's password"});
    for name in ["bob", "nobody"] {
        let response = put(
            &app,
            &ann,
            &format!("/api/v1/users/{name}/password"),
            body.clone(),
        )
        .await;
        let (status, problem_body) = problem(response).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}: {problem_body}");
        assert_eq!(problem_body["detail"], "user not found");
    }
    assert!(sign_in(&app, "bob", "ann sets bob's password")
        .await
        .is_err());
    assert!(open(&app, &bobs_session).await, "nothing happened to bob");

    // The admin needs no current password; every session of bob's ends.
    let response = put(
        &app,
        &app.admin,
        "/api/v1/users/bob/password",
        json!({"password": "reset by the admin"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(!open(&app, &bobs_session).await, "bob's session ended");
    assert!(sign_in(&app, "bob", "bob's first password").await.is_err());
    sign_in(&app, "bob", "reset by the admin")
        .await
        .expect("the new password works");

    // The body is exact, and the new password is checked.
    let response = put(
        &app,
        &app.admin,
        "/api/v1/users/bob/password",
        json!({"password": "reset by the admin", "current": "x"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = put(
        &app,
        &app.admin,
        "/api/v1/users/bob/password",
        json!({"password": "tiny"}),
    )
    .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["path"], "password", "{body}");

    let (records, text) = audit_text(&app).await;
    let reset = records
        .iter()
        .find(|record| record["action"] == "password.reset")
        .expect("audited");
    assert_eq!(reset["subject"], "user bob");
    assert_eq!(reset["actor"], "admin");
    assert!(!text.contains("reset by the admin"), "{text}");
}

#[tokio::test]
async fn changing_my_own_password_needs_the_current_one_and_ends_my_other_sessions() {
    let app = spawn_app().await;
    let ann = user_with_password(&app, "ann", ANN_PASSWORD).await;
    let laptop = sign_in(&app, "ann", ANN_PASSWORD).await.expect("signed in");
    let phone = sign_in(&app, "ann", ANN_PASSWORD).await.expect("signed in");

    let new = "ann's second password";
    for (body, words) in [
        (json!({"password": new}), "give your current password"),
        (
            json!({"password": new, "current": "not ann's password"}),
            "current password is not right",
        ),
    ] {
        let response = put(&app, &ann, "/api/v1/users/me/password", body).await;
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let detail = body["detail"].as_str().expect("detail");
        assert!(detail.contains(words), "{detail}");
        assert!(open(&app, &laptop).await, "a refusal changes nothing");
    }
    // Her own name on the admin route is her own change: the current one is needed there too.
    let response = put(
        &app,
        &ann,
        "/api/v1/users/ann/password",
        json!({"password": new}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let response = put(
        &app,
        &ann,
        "/api/v1/users/me/password",
        json!({"password": new, "current": ANN_PASSWORD}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // Through the API no session is the caller's, so all of them end.
    assert!(!open(&app, &laptop).await && !open(&app, &phone).await);
    assert!(sign_in(&app, "ann", ANN_PASSWORD).await.is_err());
    let laptop = sign_in(&app, "ann", new).await.expect("signed in");
    let phone = sign_in(&app, "ann", new).await.expect("signed in");

    // From a dashboard session: that session stays, the others end.
    let state = &app.app.state;
    let signed_in = sessions::resolve(state, &laptop)
        .await
        .expect("resolve")
        .expect("open");
    tellify::services::people::set_password_keeping(
        state,
        &signed_in.principal,
        "me",
        "ann's third password",
        Some(new),
        Some(&signed_in.id_hash),
    )
    .await
    .expect("changed");
    assert!(
        open(&app, &laptop).await,
        "the session that changed it stays"
    );
    assert!(!open(&app, &phone).await, "the others end");

    let (records, text) = audit_text(&app).await;
    let set: Vec<&Value> = records
        .iter()
        .filter(|record| record["action"] == "password.set")
        .collect();
    assert_eq!(set.len(), 2, "{records:?}");
    assert_eq!(set[0]["actor"], "ann");
    assert!(
        !text.contains(new) && !text.contains(ANN_PASSWORD),
        "{text}"
    );
}

#[tokio::test]
async fn a_role_change_ends_the_users_sessions() {
    let app = spawn_app().await;
    user_with_password(&app, "ann", ANN_PASSWORD).await;
    let session = sign_in(&app, "ann", ANN_PASSWORD).await.expect("signed in");
    let response = app
        .client
        .patch(app.url("/api/v1/users/ann"))
        .bearer_auth(&app.admin)
        .json(&json!({"timezone": "Europe/Berlin"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        open(&app, &session).await,
        "a profile change keeps sessions"
    );
    let response = app
        .client
        .patch(app.url("/api/v1/users/ann"))
        .bearer_auth(&app.admin)
        .json(&json!({"admin": true}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!open(&app, &session).await, "a role change ends them");
}

#[tokio::test]
async fn the_first_start_makes_an_admin_password_that_signs_in() {
    let app = spawn_app().await;
    let password = app
        .app
        .bootstrap_password
        .clone()
        .expect("generated on the first start");
    assert_eq!(password.chars().count(), 24, "{password}");
    assert!(
        !password.contains(['0', 'O', 'o', '1', 'l', 'I']),
        "no look-alikes: {password}"
    );
    sign_in(&app, "admin", &password)
        .await
        .expect("the admin signs in");
    let (records, text) = audit_text(&app).await;
    let created = records
        .iter()
        .find(|record| record["subject"] == "user admin")
        .expect("audited");
    assert_eq!(
        created["detail"]["password_from"],
        "generated and printed once"
    );
    assert!(!text.contains(&password));
}

#[tokio::test]
async fn wrong_current_passwords_count_against_the_accounts_sign_in_limit() {
    let app = spawn_app().await;
    let ann = user_with_password(&app, "ann", ANN_PASSWORD).await;
    let new = "ann's second password";
    let limit = sessions::LOGIN_FAILURES_PER_ACCOUNT;
    for attempt in 0..limit {
        let response = put(
            &app,
            &ann,
            "/api/v1/users/me/password",
            json!({"password": new, "current": format!("guess {attempt}")}),
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "attempt {attempt}"
        );
    }
    // The budget is spent: even the right password is refused now, with when to retry,
    // and signing in to the same account (any case) is limited too.
    let response = put(
        &app,
        &ann,
        "/api/v1/users/me/password",
        json!({"password": new, "current": ANN_PASSWORD}),
    )
    .await;
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u32>().ok())
        .expect("a Retry-After in seconds");
    assert!(retry_after > 0 && retry_after <= 15 * 60, "{retry_after}");
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("too many wrong passwords")),
        "{body}"
    );
    assert!(matches!(
        sign_in(&app, "ANN", ANN_PASSWORD).await,
        Err(SignInError::Limited { .. })
    ));

    // The password did not change, and once the window has passed it works again.
    app.clock.advance(sessions::LOGIN_WINDOW);
    assert!(sign_in(&app, "ann", ANN_PASSWORD).await.is_ok());
    let response = put(
        &app,
        &ann,
        "/api/v1/users/me/password",
        json!({"password": new, "current": ANN_PASSWORD}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}
