//! Acting from an email in Chromium: the signed Acknowledge link of a captured email,
//! followed while signed in, confirms before it acts, acts once, and then says it was used.

use serde_json::json;
use tellify::channels::SmtpSecurity;
use tellify::clock::Clock;
use tellify::services::links::LinkAction;

use super::{contact, policy, Browser};
use crate::helpers::{eventually, spawn_app_with};
use crate::support::{act_tokens, free_port, SmtpSink};
use crate::web::{password_of, person};

#[tokio::test]
async fn the_emailed_ack_link_confirms_then_acknowledges_once() {
    let smtp = SmtpSink::start().await;
    let smtp_port = smtp.port;
    // The server's own address is the public URL, so the email's link opens as it is.
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}/");
    let public_url = public.clone();
    let app = spawn_app_with(move |settings| {
        settings.listen = format!("127.0.0.1:{port}").parse().expect("address");
        settings.public_url = Some(public_url);
        settings.smtp.host = Some("127.0.0.1".to_string());
        settings.smtp.port = smtp_port;
        settings.smtp.security = SmtpSecurity::None;
    })
    .await;
    let ann = person(&app, "ann").await;
    contact(&app, &ann, "mail", "email", "ann@example.com").await;
    policy(&app, &ann, "default", json!([{"contact_points": ["mail"]}])).await;
    app.subscribe(
        &ann,
        json!({"kind": "threshold", "title": "disks",
               "params": {"field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]}}),
    )
    .await;
    app.send_lines(&ann, "fs:/home usage:98").await;
    app.app.state.notifier.wake();
    let mail = eventually("the email", || async { smtp.mails().into_iter().next() }).await;
    let state = &app.app.state;
    let ack = act_tokens(&mail.data, &public)
        .into_iter()
        .find(|token| {
            state
                .links
                .verify(token, app.clock.now())
                .map(|link| link.action == LinkAction::Ack)
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("an Acknowledge link in {}", mail.data));
    let link = format!("{public}act/{ack}");

    let browser = Browser::start(&app).await;
    browser.sign_in("ann", &password_of("ann")).await;
    browser
        .client
        .goto(&link)
        .await
        .unwrap_or_else(|e| panic!("open {link}: {e}"));
    browser.wait_for("#act-title").await;
    assert_eq!(browser.status().await, 200);
    let page = browser.text("main").await;
    assert!(page.contains("fs=/home"), "the alert it is about: {page}");
    assert!(page.contains("Nothing happens until you press the button"));
    assert_eq!(
        browser
            .eval("return [!!document.querySelector('nav[aria-label=Main]'), document.querySelector('main').textContent.includes('signing in')];")
            .await,
        json!([true, false]),
        "signed in: the usual navigation, and no sign-in hint"
    );
    let alert = &app.alerts(&ann, "").await[0];
    assert_eq!(
        alert["acked"],
        json!(false),
        "opening the link changes nothing"
    );
    browser.look_at("act-confirm").await;

    browser
        .click("form[action^='/act/'] button[type=submit]")
        .await;
    browser.wait_for("#act-done").await;
    assert_eq!(browser.text("#act-done").await, "Acknowledged.");
    let alert = &app.alerts(&ann, "").await[0];
    assert_eq!(alert["acked"], json!(true));
    assert_eq!(alert["acked_by"], json!("ann"));
    browser.look_at("act-done").await;

    // The same link again: already used, and nothing to press.
    browser
        .client
        .goto(&link)
        .await
        .unwrap_or_else(|e| panic!("open {link}: {e}"));
    browser.wait_for("main h1").await;
    assert_eq!(browser.status().await, 410);
    let page = browser.text("main").await;
    assert!(page.contains("This link was already used"), "{page}");
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('form[action^=\"/act/\"]').length;")
            .await,
        json!(0)
    );
    browser.look_at("act-used").await;
}
