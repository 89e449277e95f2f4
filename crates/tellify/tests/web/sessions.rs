//! Signing in and out, sessions, CSRF and the security headers.

use reqwest::StatusCode;

use super::{location, password_of, person, Browser};
use crate::helpers::spawn_app;

#[tokio::test]
async fn a_page_without_a_session_goes_to_sign_in_and_back_after_it() {
    let app = spawn_app().await;
    person(&app, "ann").await;
    let mut browser = Browser::new(&app);
    let response = browser.get("/acks?x=1").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).await, "/login?next=%2Facks%3Fx%3D1");
    let page = browser.page("/login?next=%2Facks%3Fx%3D1").await;
    assert!(page.contains("name=\"next\" value=\"/acks?x=1\""), "{page}");
    let response = browser
        .post(
            "/login",
            &[
                ("name", "ann"),
                ("password", &password_of("ann")),
                ("next", "/acks?x=1"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).await, "/acks?x=1");
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain http: no Secure flag: {cookie}"
    );
    let page = browser.page("/acks").await;
    assert!(page.contains("My acks and shelves"));
}

#[tokio::test]
async fn sign_in_never_follows_next_to_another_site() {
    let app = spawn_app().await;
    person(&app, "ann").await;
    let mut browser = Browser::new(&app);
    let response = browser
        .post(
            "/login",
            &[
                ("name", "ann"),
                ("password", &password_of("ann")),
                ("next", "//evil.example/x"),
            ],
        )
        .await;
    assert_eq!(location(&response).await, "/");
}

#[tokio::test]
async fn a_wrong_password_says_so_without_telling_whether_the_account_exists() {
    let app = spawn_app().await;
    person(&app, "ann").await;
    let mut browser = Browser::new(&app);
    let wrong = browser.sign_in("ann", "not-her-password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get("set-cookie").is_none());
    let wrong_text = wrong.text().await.unwrap();
    let unknown = browser.sign_in("nobody", "not-her-password").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let unknown_text = unknown.text().await.unwrap();
    let message = "that name and password do not match an account";
    assert!(wrong_text.contains(message), "{wrong_text}");
    assert!(unknown_text.contains(message), "{unknown_text}");
    // The name typed stays in the form; the password does not.
    assert!(wrong_text.contains("value=\"ann\""));
    assert!(!wrong_text.contains("not-her-password"));
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_account_even_with_the_right_password_after() {
    let app = spawn_app().await;
    person(&app, "ann").await;
    let mut browser = Browser::new(&app);
    for _ in 0..tellify::services::sessions::LOGIN_FAILURES_PER_ACCOUNT {
        let response = browser.sign_in("Ann", "guess-guess-guess").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = browser.sign_in("ann", &password_of("ann")).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited
        .text()
        .await
        .unwrap()
        .contains("too many failed sign-ins"));
    // Another account is not locked by ann's failures...
    person(&app, "bob").await;
    let bob = browser.sign_in("bob", &password_of("bob")).await;
    assert_eq!(bob.status(), StatusCode::SEE_OTHER);
    // ...and ann may try again once the window has passed.
    app.advance(tellify::services::sessions::LOGIN_WINDOW).await;
    let again = browser.sign_in("ann", &password_of("ann")).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn signing_in_makes_a_new_session_and_signing_out_ends_it_on_the_server() {
    let app = spawn_app().await;
    person(&app, "ann").await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let first = browser.cookie.clone().expect("cookie");
    // Signing in again with a session rotates the id and ends the old one.
    let response = browser.sign_in("ann", &password_of("ann")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let second = browser.cookie.clone().expect("cookie");
    assert_ne!(first, second);
    let mut old = Browser::new(&app);
    old.cookie = Some(first);
    assert_eq!(old.get("/").await.status(), StatusCode::SEE_OTHER);

    browser.page("/").await;
    let copy = browser.cookie.clone();
    let response = browser.post("/logout", &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).await, "/login");
    assert_eq!(browser.cookie, None, "the cookie is cleared");
    // A copy of the cookie kept elsewhere opens nothing either.
    let mut stolen = Browser::new(&app);
    stolen.cookie = copy;
    assert_eq!(stolen.get("/").await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn an_idle_session_ends() {
    let app = spawn_app().await;
    person(&app, "ann").await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    app.advance(jiff::SignedDuration::from_hours(11)).await;
    assert_eq!(
        browser.get("/").await.status(),
        StatusCode::OK,
        "used within the idle time"
    );
    app.advance(jiff::SignedDuration::from_hours(11)).await;
    assert_eq!(
        browser.get("/").await.status(),
        StatusCode::OK,
        "use extended it"
    );
    app.advance(tellify::services::sessions::IDLE).await;
    assert_eq!(browser.get("/").await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn forms_need_the_sessions_token_and_this_site() {
    let app = spawn_app().await;
    person(&app, "ann").await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let missing = browser.post("/logout", &[("_csrf", "")]).await;
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    let wrong = browser.post("/logout", &[("_csrf", &"0".repeat(64))]).await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert!(wrong.text().await.unwrap().contains("Reload the page"));
    // The right token from another site is refused too.
    let csrf = browser.csrf.clone().unwrap();
    let cross = browser
        .client
        .post(format!("{}/logout", browser.base))
        .header(
            "cookie",
            format!("tellify_session={}", browser.cookie.clone().unwrap()),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "cross-site")
        .body(format!("_csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let origin = browser
        .client
        .post(format!("{}/logout", browser.base))
        .header(
            "cookie",
            format!("tellify_session={}", browser.cookie.clone().unwrap()),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example")
        .body(format!("_csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(origin.status(), StatusCode::FORBIDDEN);
    // The session survived all of that.
    assert_eq!(browser.get("/").await.status(), StatusCode::OK);
    assert_eq!(
        browser.post("/logout", &[]).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn every_dashboard_answer_has_a_strict_policy_and_assets_are_versioned() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    let page = browser.get("/login").await;
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>"), "no inline script");
    assert!(!html.contains(" style="), "no inline style");
    let version = tellify::web::asset_version();
    assert!(html.contains(&format!("/static/{version}/app.js")));
    let asset = browser.get(&format!("/static/{version}/app.js")).await;
    assert_eq!(asset.status(), StatusCode::OK);
    assert!(asset.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(
        asset.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        browser
            .get(&format!("/static/{version}/nope.js"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}
