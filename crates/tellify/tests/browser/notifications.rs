//! My notifications in Chromium: a policy made with the schedule editor and read back in
//! the "when will I be told" week, and a webhook delivery seen in "my deliveries" and
//! explained from the event to the provider's answer.

use reqwest::StatusCode;
use serde_json::json;

use super::{contact, policy, Browser};
use crate::helpers::spawn_app;
use crate::support::{first_delivery_sent, HttpSink};
use crate::web::{password_of, person};

/// The rows of the week table of one severity: (from, until, what happens, row class).
async fn week_of(browser: &Browser, severity: &str) -> Vec<(String, String, String, String)> {
    let css = format!("section[aria-labelledby='week-{severity}'] table.week");
    let rows = browser.table(&css).await;
    let classes: Vec<String> = serde_json::from_value(
        browser
            .eval(&format!(
                "return Array.from(document.querySelectorAll({} + ' tbody tr')).map(function (r) {{ return r.className; }});",
                json!(css)
            ))
            .await,
    )
    .unwrap_or_default();
    rows.into_iter()
        .zip(classes)
        .map(|(row, class)| (row[0].clone(), row[1].clone(), row[2].clone(), class))
        .collect()
}

#[tokio::test]
async fn a_policy_from_the_schedule_editor_shows_in_when_will_i_be_told() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    contact(&app, &ann, "mail", "email", "ann@example.com").await;
    let browser = Browser::start(&app).await;
    browser.sign_in("ann", &password_of("ann")).await;
    browser.open("/notifications").await;
    browser.wait_for("main h1").await;
    browser.look_at("notifications").await;
    browser.click("a[href='/notifications/policies/new']").await;
    browser.wait_for("form.policy-editor").await;

    // Rule 1: work hours (Monday to Friday, 09:00 to 18:00 in Berlin), warnings and worse,
    // by email at once.
    browser.fill("#f-name", "default").await;
    for day in ["mon", "tue", "wed", "thu", "fri"] {
        browser
            .click(&format!("input[name='r0.days'][value='{day}']"))
            .await;
    }
    browser.fill("#f-r0-from", "0900AM").await;
    browser.fill("#f-r0-to", "0600PM").await;
    assert_eq!(
        browser.value("#f-r0-from").await,
        "09:00",
        "typed as a person would"
    );
    assert_eq!(browser.value("#f-r0-to").await, "18:00");
    browser
        .click("#f-r0-min_severity option[value='warning']")
        .await;
    browser.click("input[name='r0.cp'][value='mail']").await;
    browser.click("input[name='r0.mode'][value='now']").await;
    browser.look_at("policy-editor").await;

    // Rule 2, added with its button: every other time, held for an hourly digest.
    browser.click("button[name=op][value=add]").await;
    browser.wait_for("#rule-1").await;
    assert_eq!(browser.value("#f-r0-from").await, "09:00", "rule 1 kept");
    browser.click("input[name='r1.cp'][value='mail']").await;
    browser.click("input[name='r1.mode'][value='digest']").await;
    browser.fill("#f-r1-digest", "1h").await;
    browser.click("button.primary[name=op][value=save]").await;
    browser
        .wait_until(
            "the policy is saved",
            "location.search.includes('done=policy-saved')",
        )
        .await;
    let saved = app.get_json(&ann, "/api/v1/policies/default").await;
    let rules = saved["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 2, "{saved}");
    assert_eq!(rules[0]["when"]["from"], "09:00", "{saved}");
    assert_eq!(rules[0]["when"]["to"], "18:00", "{saved}");
    assert_eq!(rules[0]["min_severity"], "warning");
    assert_eq!(rules[1]["mode"], json!({"digest": "1h"}));
    assert!(browser.text("main").await.contains("Policy saved."));
    browser.look_at("notifications-policy-saved").await;

    browser
        .click("a[href='/notifications/week?policy=default']")
        .await;
    browser.wait_for("table.week").await;
    // The test clock is Monday 23 November, 10:00 in Berlin; the week starts at 00:00.
    let warning = week_of(&browser, "warning").await;
    let at = |from: &str| {
        warning
            .iter()
            .find(|row| row.0 == from)
            .unwrap_or_else(|| panic!("no stretch from {from}: {warning:?}"))
            .clone()
    };
    let night = at("Mon 23 Nov 00:00");
    assert_eq!(night.1, "Mon 23 Nov 09:00", "{warning:?}");
    assert!(
        night.2.contains("rule 2: mail in a digest every 1h"),
        "{warning:?}"
    );
    assert_eq!(night.3, "held");
    let work = at("Mon 23 Nov 09:00");
    assert_eq!(work.1, "Mon 23 Nov 18:00", "{warning:?}");
    assert!(work.2.contains("rule 1: mail at once"), "{warning:?}");
    assert_eq!(work.3, "now");
    let friday = at("Fri 27 Nov 09:00");
    assert_eq!(friday.1, "Fri 27 Nov 18:00", "{warning:?}");
    let weekend = at("Fri 27 Nov 18:00");
    assert!(weekend.2.contains("digest"), "{warning:?}");
    assert!(
        !warning
            .iter()
            .any(|row| row.0.starts_with("Sat") || row.0.starts_with("Sun")),
        "no work hours at the weekend: {warning:?}"
    );
    // Below the first rule's minimum, everything waits for the digest.
    let info = week_of(&browser, "info").await;
    assert!(!info.is_empty());
    assert!(
        info.iter()
            .all(|row| row.2.contains("rule 2") && row.3 == "held"),
        "{info:?}"
    );
    // Above each table, a strip of seven day bars; Monday's work hours sit in the middle
    // of the warning bar, 09:00 (37.5 %) to 18:00 (75 %) of its width.
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('div.strip svg.strip-bar').length;")
            .await,
        json!(21),
        "seven days for each of three severities"
    );
    let placed = browser
        .eval(
            "var bar = document.querySelector('div.strip[data-severity=warning] svg.strip-bar');
             var box = bar.getBoundingClientRect();
             var work = bar.querySelector('svg.seg-now').getBoundingClientRect();
             return [Math.round((work.left - box.left) / box.width * 1000), Math.round(work.width / box.width * 1000)];",
        )
        .await;
    assert_eq!(placed, json!([375, 375]), "drawn where the hours are");
    browser.look_at("when-will-i-be-told").await;
}

#[tokio::test]
async fn a_delivery_in_my_deliveries_is_explained_from_event_to_answer() {
    let hook = HttpSink::start(StatusCode::OK, "{\"ok\":true}").await;
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    contact(&app, &ann, "hook", "webhook", &hook.url("/hooks")).await;
    policy(&app, &ann, "default", json!([{"contact_points": ["hook"]}])).await;
    app.subscribe(
        &ann,
        json!({"kind": "threshold", "title": "disk", "params": {"field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]}}),
    )
    .await;
    app.send_lines(&ann, "usage:98 fs:/home").await;
    app.app.state.notifier.wake();
    let delivery = first_delivery_sent(&app.client, &app.base, &ann, "the webhook").await;
    let id = delivery["id"].as_str().expect("id").to_string();
    assert_eq!(hook.requests().len(), 1);

    let browser = Browser::start(&app).await;
    browser.sign_in("ann", &password_of("ann")).await;
    browser.open("/deliveries").await;
    let row = format!("tr[data-delivery='{id}']");
    browser.wait_for(&row).await;
    let cells = browser.table("table.deliveries").await;
    assert_eq!(cells.len(), 1, "{cells:?}");
    let cells = &cells[0];
    assert_eq!(cells[0], "✓ sent", "{cells:?}");
    assert_eq!(cells[2], "hook");
    assert_eq!(cells[3], "webhook");
    assert_eq!(cells[4], "1", "one attempt: {cells:?}");
    assert!(cells[6].contains("10:00"), "in ann's zone: {cells:?}");
    browser.look_at("deliveries").await;

    browser.click(&format!("{row} a")).await;
    browser.wait_for("section.explain").await;
    assert_eq!(browser.path().await, format!("/deliveries/{id}"));
    let chain: Vec<(String, String)> = serde_json::from_value(
        browser
            .eval(
                "return Array.from(document.querySelectorAll('section.explain ol.chain li')).map(function (li) {\
                   var k = li.querySelector('.kind'); return [k ? k.innerText : '', li.innerText]; });",
            )
            .await,
    )
    .expect("the chain");
    let kinds: Vec<&str> = chain.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "event",
            "subscription",
            "transition",
            "policy",
            "decision",
            "delivery",
            "answer"
        ],
        "{chain:?}"
    );
    let step = |kind: &str| {
        chain
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, text)| text.clone())
            .unwrap_or_default()
    };
    assert!(step("subscription").contains("disk"), "{chain:?}");
    assert!(step("transition").contains("fired"), "{chain:?}");
    // Rules are numbered from 1 here, as in the editor ("Rule 1") and the week view.
    assert!(step("policy").contains("rule 1: matched"), "{chain:?}");
    assert!(
        step("decision").contains("rule 1: sent at once to hook"),
        "{chain:?}"
    );
    assert!(step("delivery").contains("hook"), "{chain:?}");
    assert!(
        step("answer").contains("200 OK"),
        "the provider's answer: {chain:?}"
    );
    assert!(browser.text("#receipt").await.contains("200 OK"));
    browser.look_at("delivery-explained").await;
}
