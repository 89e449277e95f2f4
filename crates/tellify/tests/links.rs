//! Acting from a notification: the email and the webhook carry signed, single-use,
//! expiring links; following one changes nothing, confirming it acts once as the person
//! it was sent to, and a link stops working when it is used, expired, forged, or its user
//! is gone.

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tellify::channels::SmtpSecurity;
use tellify::clock::Clock;
use tellify::services::links::{self, LinkAction, ShelveChoice};
use tellify::services::ServiceError;

use crate::helpers::{eventually, spawn_app_with, TestApp};
use crate::support::{HttpSink, SmtpSink};

const PUBLIC_URL: &str = "https://tellify.example/";

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

async fn notify_through(app: &TestApp, token: &str, contact_point: &str) {
    let response = app
        .client
        .put(app.url("/api/v1/policies/default"))
        .bearer_auth(token)
        .json(&json!({"rules": [{"contact_points": [contact_point]}]}))
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success());
    app.subscribe(
        token,
        json!({"kind": "threshold", "title": "disks",
               "params": {"field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]}}),
    )
    .await;
}

/// The tokens of `{PUBLIC_URL}act/TOKEN` links in a message, in order of appearance.
fn act_tokens(data: &str) -> Vec<String> {
    crate::support::act_tokens(data, PUBLIC_URL)
}

async fn history(app: &TestApp, token: &str, alert: &str) -> Vec<(String, String)> {
    let detail = app
        .get_json(token, &format!("/api/v1/alerts/{alert}"))
        .await;
    detail["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().unwrap_or_default().to_string(),
                entry["actor"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// An email carries an Acknowledge and a Shelve link; inspecting one changes nothing,
/// redeeming it acknowledges as ann, and a second redeem is refused as already used.
#[tokio::test]
async fn an_emailed_ack_link_acts_once_as_its_user() {
    let smtp = SmtpSink::start().await;
    let port = smtp.port;
    let app = spawn_app_with(move |settings| {
        settings.smtp.host = Some("127.0.0.1".to_string());
        settings.smtp.port = port;
        settings.smtp.security = SmtpSecurity::None;
        settings.public_url = Some(PUBLIC_URL.to_string());
    })
    .await;
    let ann = app.user("ann").await;
    contact(&app, &ann, "mail", "email", "ann@example.com").await;
    notify_through(&app, &ann, "mail").await;
    app.send_lines(&ann, "fs:/home usage:98").await;
    app.app.state.notifier.wake();
    let mail = eventually("the email", || async { smtp.mails().into_iter().next() }).await;
    let tokens = act_tokens(&mail.data);
    // Text and HTML each carry both links.
    assert_eq!(tokens.len(), 4, "{}", mail.data);
    assert!(
        mail.data
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=")
            .contains("Acknowledge fs=/home: https://tellify.example/act/"),
        "{}",
        mail.data
    );
    let state = &app.app.state;
    let now = app.clock.now();
    let ack = tokens
        .iter()
        .find(|token| state.links.verify(token, now).unwrap().action == LinkAction::Ack)
        .expect("an ack link")
        .clone();
    let alert_id = app.alerts(&ann, "state=firing").await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();

    let view = links::inspect(state, &ack, now)
        .await
        .expect("a valid link");
    assert_eq!(view.alert.id, alert_id);
    assert_eq!(view.user.name, "ann");
    assert_eq!(view.action, LinkAction::Ack);
    assert!(!view.used);
    assert_eq!(view.expires, now + SignedDuration::from_hours(72));
    let alert = &app.alerts(&ann, "state=firing").await[0];
    assert_eq!(alert["acked"], json!(false), "looking changes nothing");

    let acked = links::redeem(state, &ack, None, app.clock.now())
        .await
        .expect("redeemed");
    assert!(acked.acked);
    assert_eq!(acked.acked_by.as_deref(), Some("ann"));
    assert_eq!(
        history(&app, &ann, &alert_id).await.last(),
        Some(&("acked".to_string(), "ann".to_string()))
    );

    let again = links::redeem(state, &ack, None, app.clock.now()).await;
    match again {
        Err(ServiceError::Gone(text)) => assert_eq!(text, "this link was already used"),
        other => panic!("expected already used, got {other:?}"),
    }
    assert_eq!(
        history(&app, &ann, &alert_id)
            .await
            .iter()
            .filter(|(action, _)| action == "acked")
            .count(),
        1,
        "the second redeem did nothing"
    );
    assert!(
        links::inspect(state, &ack, app.clock.now())
            .await
            .unwrap()
            .used
    );
}

/// Shelve links honour the choice; links expire with the ttl, a forged one is "not
/// valid", and an offboarded user's links stop working.
#[tokio::test]
async fn links_expire_are_checked_and_end_with_their_user() {
    let app = spawn_app_with(|settings| {
        settings.public_url = Some(PUBLIC_URL.to_string());
        settings.links.ttl = "1h".to_string();
    })
    .await;
    let ann = app.user("ann").await;
    app.user("bob").await;
    let hook = HttpSink::start(StatusCode::OK, "ok").await;
    contact(&app, &ann, "hook", "webhook", &hook.url("/h")).await;
    notify_through(&app, &ann, "hook").await;
    app.send_lines(&ann, "fs:/data usage:95").await;
    let state = &app.app.state;
    let alert_id = app.alerts(&ann, "state=firing").await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let ann_id = state
        .store
        .user_by_name("ann")
        .await
        .unwrap()
        .expect("ann")
        .id;
    let now = app.clock.now();

    let shelve = links::mint(state, &alert_id, &ann_id, LinkAction::Shelve, now);
    let shelved = links::redeem(state, &shelve, Some(ShelveChoice::UntilResolved), now)
        .await
        .expect("shelved");
    assert!(shelved.shelved_oneshot);
    assert_eq!(shelved.shelved_by.as_deref(), Some("ann"));

    let late = links::mint(state, &alert_id, &ann_id, LinkAction::Ack, now);
    app.advance(SignedDuration::from_mins(61)).await;
    match links::inspect(state, &late, app.clock.now()).await {
        Err(ServiceError::Gone(text)) => {
            assert!(text.starts_with("this link expired at"), "{text}")
        }
        other => panic!("expected expired, got {other:?}"),
    }

    // A link for bob on ann's alert: bob may not see it, so it answers like no alert.
    let bob_id = state
        .store
        .user_by_name("bob")
        .await
        .unwrap()
        .expect("bob")
        .id;
    let now = app.clock.now();
    let foreign = links::mint(state, &alert_id, &bob_id, LinkAction::Ack, now);
    assert!(matches!(
        links::redeem(state, &foreign, None, now).await,
        Err(ServiceError::NotFound("alert"))
    ));

    let mut forged = links::mint(state, &alert_id, &ann_id, LinkAction::Ack, now);
    forged.replace_range(10..11, if &forged[10..11] == "A" { "B" } else { "A" });
    assert!(matches!(
        links::inspect(state, &forged, now).await,
        Err(ServiceError::NotFound("link"))
    ));

    let kept = links::mint(state, &alert_id, &ann_id, LinkAction::Ack, now);
    assert!(links::inspect(state, &kept, now).await.is_ok());
    let response = app
        .client
        .delete(app.url("/api/v1/users/ann"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success(), "{}", response.status());
    assert!(matches!(
        links::inspect(state, &kept, now).await,
        Err(ServiceError::NotFound(_))
    ));
}

/// Each alert of a webhook payload carries its `actions`, whose links act for the
/// contact point's owner.
#[tokio::test]
async fn webhook_payloads_carry_action_links() {
    let hook = HttpSink::start(StatusCode::OK, "ok").await;
    let app = spawn_app_with(|settings| {
        settings.public_url = Some(PUBLIC_URL.to_string());
    })
    .await;
    let ann = app.user("ann").await;
    contact(&app, &ann, "hook", "webhook", &hook.url("/h")).await;
    notify_through(&app, &ann, "hook").await;
    app.send_lines(&ann, "fs:/a usage:95\nfs:/b usage:99").await;
    app.app.state.notifier.wake();
    let payload: Value = eventually("the webhook", || async {
        hook.requests().first().map(|request| request.json())
    })
    .await;
    let alerts = payload["alerts"].as_array().expect("alerts");
    assert!(!alerts.is_empty());
    let state = &app.app.state;
    for alert in alerts {
        let ack = alert["actions"]["ack"].as_str().expect("ack url");
        let shelve = alert["actions"]["shelve"].as_str().expect("shelve url");
        assert!(ack.starts_with("https://tellify.example/act/"), "{ack}");
        let ack_claim = state
            .links
            .verify(&act_tokens(ack)[0], app.clock.now())
            .expect("valid");
        assert_eq!(ack_claim.action, LinkAction::Ack);
        assert_eq!(ack_claim.alert_id, alert["id"].as_str().unwrap());
        let shelve_claim = state
            .links
            .verify(&act_tokens(shelve)[0], app.clock.now())
            .expect("valid");
        assert_eq!(shelve_claim.action, LinkAction::Shelve);
    }
}

/// Without `public_url` there is nowhere to link to: no links, and `actions` is null.
#[tokio::test]
async fn without_a_public_url_messages_carry_no_links() {
    let hook = HttpSink::start(StatusCode::OK, "ok").await;
    let app = spawn_app_with(|_| {}).await;
    let ann = app.user("ann").await;
    contact(&app, &ann, "hook", "webhook", &hook.url("/h")).await;
    notify_through(&app, &ann, "hook").await;
    app.send_lines(&ann, "fs:/a usage:95").await;
    app.app.state.notifier.wake();
    let payload: Value = eventually("the webhook", || async {
        hook.requests().first().map(|request| request.json())
    })
    .await;
    assert_eq!(payload["alerts"][0]["actions"], Value::Null);
    assert!(!payload["text"]
        .as_str()
        .unwrap_or_default()
        .contains("/act/"));
}

/// The pages behind a link, with no session at all: GET shows the alert and changes
/// nothing, POST acknowledges as ann, a second POST is 410 "already used", an altered
/// link is 404 "not valid".
#[tokio::test]
async fn the_act_pages_confirm_then_act_once_without_a_session() {
    let hook = HttpSink::start(StatusCode::OK, "ok").await;
    let app = spawn_app_with(|settings| {
        settings.public_url = Some(PUBLIC_URL.to_string());
    })
    .await;
    let ann = app.user("ann").await;
    contact(&app, &ann, "hook", "webhook", &hook.url("/h")).await;
    notify_through(&app, &ann, "hook").await;
    app.send_lines(&ann, "fs:/srv usage:99").await;
    app.app.state.notifier.wake();
    let payload: Value = eventually("the webhook", || async {
        hook.requests().first().map(|request| request.json())
    })
    .await;
    let alert_id = payload["alerts"][0]["id"].as_str().expect("id").to_string();
    let ack_url = payload["alerts"][0]["actions"]["ack"]
        .as_str()
        .expect("ack url");
    let path = format!("/act/{}", act_tokens(ack_url)[0]);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    let page = client.get(app.url(&path)).send().await.expect("get");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("Acknowledge as ann"), "{html}");
    assert!(html.contains("fs=/srv"), "{html}");
    assert!(html.contains(&format!("action=\"{path}\"")), "{html}");
    let again = client.get(app.url(&path)).send().await.expect("get");
    assert_eq!(again.status(), StatusCode::OK, "looking twice is fine");
    assert_eq!(
        app.alerts(&ann, "state=firing").await[0]["acked"],
        json!(false),
        "GET changes nothing"
    );

    let cross_site = client
        .post(app.url(&path))
        .header("sec-fetch-site", "cross-site")
        .form(&[("shelve", "")])
        .send()
        .await
        .expect("post");
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);

    let done = client
        .post(app.url(&path))
        .form(&[("shelve", "")])
        .send()
        .await
        .expect("post");
    assert_eq!(done.status(), StatusCode::OK);
    let html = done.text().await.expect("html");
    assert!(html.contains("Acknowledged."), "{html}");
    let alert = &app.alerts(&ann, "state=firing").await[0];
    assert_eq!(alert["acked"], json!(true));
    assert_eq!(
        history(&app, &ann, &alert_id).await.last(),
        Some(&("acked".to_string(), "ann".to_string())),
        "the history names the link's user"
    );

    let second = client
        .post(app.url(&path))
        .form(&[("shelve", "")])
        .send()
        .await
        .expect("post");
    assert_eq!(second.status(), StatusCode::GONE);
    let html = second.text().await.expect("html");
    assert!(html.contains("This link was already used"), "{html}");
    assert_eq!(
        history(&app, &ann, &alert_id)
            .await
            .iter()
            .filter(|(action, _)| action == "acked")
            .count(),
        1,
        "the second click changed nothing"
    );
    let used = client.get(app.url(&path)).send().await.expect("get");
    assert_eq!(used.status(), StatusCode::GONE);

    let mut forged = path.clone();
    forged.push('A');
    let invalid = client.get(app.url(&forged)).send().await.expect("get");
    assert_eq!(invalid.status(), StatusCode::NOT_FOUND);
    let html = invalid.text().await.expect("html");
    assert!(html.contains("This link is not valid"), "{html}");
    assert!(!html.contains("fs=/srv"), "nothing about the alert: {html}");
}

#[tokio::test]
async fn an_address_that_keeps_sending_invalid_links_is_held_off() {
    let app = spawn_app_with(|settings| {
        settings.public_url = Some(PUBLIC_URL.to_string());
    })
    .await;
    let client = reqwest::Client::new();
    let limit = tellify::services::sessions::BAD_LINKS_PER_ADDRESS;
    for attempt in 0..limit {
        let path = format!("/act/forged-{attempt}");
        let answer = if attempt % 2 == 0 {
            client.get(app.url(&path)).send().await
        } else {
            client
                .post(app.url(&path))
                .form(&[("shelve", "")])
                .send()
                .await
        }
        .expect("request");
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "attempt {attempt}");
    }
    let held = client
        .get(app.url("/act/forged-again"))
        .send()
        .await
        .expect("get");
    assert_eq!(held.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(held.headers().contains_key("retry-after"));
    let html = held.text().await.expect("html");
    assert!(html.contains("Too many links that are not valid"), "{html}");

    app.clock.advance(tellify::services::sessions::LOGIN_WINDOW);
    let later = client
        .get(app.url("/act/forged-later"))
        .send()
        .await
        .expect("get");
    assert_eq!(later.status(), StatusCode::NOT_FOUND, "the window passed");
}

/// A browser that is signed in sees its navigation around the act page and no "sign in"
/// hint; signed in as someone else, it is told whom the link acts for; a browser without
/// a session sees the bare page.
#[tokio::test]
async fn the_act_page_in_a_signed_in_browser_shows_the_navigation() {
    let hook = HttpSink::start(StatusCode::OK, "ok").await;
    let app = spawn_app_with(|settings| {
        settings.public_url = Some(PUBLIC_URL.to_string());
    })
    .await;
    let ann = crate::web::person(&app, "ann").await;
    crate::web::person(&app, "bob").await;
    contact(&app, &ann, "hook", "webhook", &hook.url("/h")).await;
    notify_through(&app, &ann, "hook").await;
    app.send_lines(&ann, "fs:/srv usage:99").await;
    app.app.state.notifier.wake();
    let payload: Value = eventually("the webhook", || async {
        hook.requests().first().map(|request| request.json())
    })
    .await;
    let alert_id = payload["alerts"][0]["id"].as_str().expect("id").to_string();
    let ack_url = payload["alerts"][0]["actions"]["ack"]
        .as_str()
        .expect("ack url");
    let path = format!("/act/{}", act_tokens(ack_url)[0]);
    let open_alert = format!("<a href=\"/alerts/{alert_id}\">Open the alert in tellify</a>");

    let anonymous = reqwest::get(app.url(&path)).await.expect("get");
    let html = anonymous.text().await.expect("html");
    assert!(!html.contains("<nav aria-label=\"Main\">"), "{html}");
    assert!(html.contains("(after signing in as ann)"), "{html}");

    let mut as_ann =
        crate::web::Browser::signed_in(&app, "ann", &crate::web::password_of("ann")).await;
    let html = as_ann.page(&path).await;
    assert!(html.contains("<nav aria-label=\"Main\">"), "{html}");
    assert!(html.contains("<a href=\"/account\""), "{html}");
    assert!(html.contains(&format!("{open_alert}</p>")), "{html}");
    assert!(!html.contains("signing in"), "no sign-in hint: {html}");
    assert!(!html.contains("act-other-user"), "{html}");

    let mut as_bob =
        crate::web::Browser::signed_in(&app, "bob", &crate::web::password_of("bob")).await;
    let html = as_bob.page(&path).await;
    assert!(html.contains("<nav aria-label=\"Main\">"), "{html}");
    assert!(
        html.contains("You are signed in as bob, but this link acts for ann"),
        "{html}"
    );
    assert!(
        !html.contains(&open_alert),
        "bob cannot open ann's alert: {html}"
    );
    assert_eq!(
        app.alerts(&ann, "state=firing").await[0]["acked"],
        json!(false),
        "looking changes nothing"
    );

    // Confirming with ann's session acts as ann and keeps the navigation.
    let done = as_ann.post(&path, &[("shelve", "")]).await;
    assert_eq!(done.status(), StatusCode::OK);
    let html = done.text().await.expect("html");
    assert!(html.contains("Acknowledged."), "{html}");
    assert!(html.contains("<nav aria-label=\"Main\">"), "{html}");
    // A used link, read while signed in, still says so in words, inside the navigation.
    let used = as_ann.get(&path).await;
    assert_eq!(used.status(), StatusCode::GONE);
    let html = used.text().await.expect("html");
    assert!(html.contains("This link was already used"), "{html}");
    assert!(html.contains("<nav aria-label=\"Main\">"), "{html}");
}
