//! My alerts, an alert's page, the actions, and the live stream.

use reqwest::StatusCode;
use serde_json::json;

use super::{an_early_alert_then_many, location, next_snapshot, password_of, person, Browser};
use crate::helpers::{spawn_app, TestApp};

async fn disk_alert(app: &TestApp, token: &str) -> String {
    app.subscribe(
        token,
        json!({"kind": "threshold", "title": "disk", "params": {"field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]}}),
    )
    .await;
    app.send_lines(token, "usage:98 fs:/home").await;
    app.alerts(token, "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn my_alerts_show_severity_in_words_and_times_in_my_zone() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    let id = disk_alert(&app, &ann).await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let page = browser.page("/").await;
    assert!(page.contains(&format!("data-alert=\"{id}\"")), "{page}");
    assert!(page.contains("critical"), "severity word");
    assert!(page.contains("/home"), "group key");
    // The test clock is 09:00 UTC; ann lives in Europe/Berlin.
    assert!(page.contains("10:00 CET"), "{page}");
    let detail = browser.page(&format!("/alerts/{id}")).await;
    assert!(detail.contains("History"));
    assert!(detail.contains("fired"));
    assert!(detail.contains("usage"), "the event behind it is shown");
}

#[tokio::test]
async fn another_users_alert_is_not_found_exactly_like_a_missing_one() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    person(&app, "bob").await;
    let id = disk_alert(&app, &ann).await;
    let mut bob = Browser::signed_in(&app, "bob", &password_of("bob")).await;
    let theirs = bob.get(&format!("/alerts/{id}")).await;
    let missing = bob.get("/alerts/01JZZZZZZZZZZZZZZZZZZZZZZZ").await;
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(theirs.text().await.unwrap(), missing.text().await.unwrap());
    let act = bob
        .post(&format!("/alerts/{id}/act"), &[("action", "ack")])
        .await;
    assert_eq!(act.status(), StatusCode::NOT_FOUND);
    let alert = &app.alerts(&ann, "").await[0];
    assert_eq!(alert["acked"], json!(false), "bob changed nothing");
    assert!(!bob.page("/").await.contains(&id));
}

#[tokio::test]
async fn acknowledge_with_a_note_and_expiry_then_shelve_until_tomorrow_morning() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    let id = disk_alert(&app, &ann).await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    browser.page(&format!("/alerts/{id}")).await;
    let response = browser
        .post(
            &format!("/alerts/{id}/act"),
            &[
                ("action", "ack"),
                ("note", "on it"),
                ("expires", "4h"),
                ("back", &format!("/alerts/{id}")),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&response).await,
        format!("/alerts/{id}?done=acked&n=1")
    );
    let alert = &app.alerts(&ann, "").await[0];
    assert_eq!(alert["acked"], json!(true));
    assert_eq!(alert["acked_by"], json!("ann"));
    assert_eq!(alert["ack_note"], json!("on it"));
    assert_eq!(alert["ack_expires"], json!("2026-11-23T13:00:00Z"));
    let page = browser.page(&format!("/alerts/{id}?done=acked&n=1")).await;
    assert!(page.contains("Acknowledged."));
    assert!(
        page.contains("acknowledged by ann until 14:00 CET"),
        "{page}"
    );

    let response = browser
        .post(
            &format!("/alerts/{id}/act"),
            &[
                ("action", "shelve"),
                ("shelve", "tomorrow"),
                ("reason", "maintenance"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let alert = &app.alerts(&ann, "").await[0];
    // 08:00 tomorrow in Berlin (CET, UTC+1) is 07:00 UTC.
    assert_eq!(alert["shelved_until"], json!("2026-11-24T07:00:00Z"));
    assert_eq!(alert["shelve_reason"], json!("maintenance"));
    let acks = browser.page("/acks").await;
    assert!(
        acks.contains("shelved by ann until 2026-11-24 08:00 CET"),
        "{acks}"
    );
    assert!(acks.contains("acknowledged by ann"));
}

#[tokio::test]
async fn a_bulk_action_is_one_request_and_skips_what_is_not_mine() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    let bob = person(&app, "bob").await;
    app.subscribe(
        &ann,
        json!({"kind": "match", "title": "each", "params": {"filter": "true", "group_by": ["n"]}}),
    )
    .await;
    app.send_lines(&ann, "n:1\nn:2\nn:3").await;
    let bobs = disk_alert(&app, &bob).await;
    let mine: Vec<String> = app
        .alerts(&ann, "")
        .await
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(mine.len(), 3);
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let mut fields: Vec<(&str, &str)> = vec![("action", "ack"), ("note", "bulk"), ("back", "/")];
    fields.extend(mine[..2].iter().map(|id| ("id", id.as_str())));
    fields.push(("id", bobs.as_str()));
    let response = browser.post("/alerts/bulk", &fields).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).await, "/?done=acked&n=2");
    let acked: Vec<bool> = app
        .alerts(&ann, "")
        .await
        .iter()
        .filter(|a| mine[..2].contains(&a["id"].as_str().unwrap().to_string()))
        .map(|a| a["acked"].as_bool().unwrap())
        .collect();
    assert_eq!(acked, vec![true, true]);
    assert_eq!(
        app.alerts(&ann, "")
            .await
            .iter()
            .filter(|a| a["acked"] == json!(true))
            .count(),
        2
    );
    assert_eq!(app.alerts(&bob, "").await[0]["acked"], json!(false));
}

#[tokio::test]
async fn whatever_an_event_carries_is_shown_as_text() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    app.subscribe(
        &ann,
        json!({"kind": "match", "title": "<script>alert(1)</script>", "params": {"filter": "true", "group_by": ["host"]}}),
    )
    .await;
    let response = app
        .post(
            &ann,
            "/api/v1/events",
            json!({"message": "<script>alert('m')</script>", "fields": {"host": "<script>alert('h')</script>", "note": "<img src=x onerror=alert(2)>", "<b>bold</b>": "<b>bold</b>"}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    app.settle().await;
    let id = app.alerts(&ann, "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    for path in [
        "/".to_string(),
        format!("/alerts/{id}"),
        "/acks".to_string(),
    ] {
        let page = browser.page(&path).await;
        assert!(!page.contains("<script>alert"), "{path}: {page}");
        assert!(!page.contains("<img src=x"), "{path}");
        assert!(!page.contains("<b>bold"), "{path}");
    }
    let detail = browser.page(&format!("/alerts/{id}")).await;
    assert!(
        detail.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{detail}"
    );
}

#[tokio::test]
async fn the_live_stream_sends_a_snapshot_on_connect_and_after_each_change_equal_to_a_fresh_load() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    let bob = person(&app, "bob").await;
    let first = disk_alert(&app, &ann).await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let response = browser.get("/live?view=alerts").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let snapshot = next_snapshot(&mut stream, &mut buffer).await;
    assert!(snapshot.contains(&first));

    // A new alert of ann's arrives as a new snapshot holding it.
    app.send_lines(&ann, "usage:99 fs:/var").await;
    let snapshot = next_snapshot(&mut stream, &mut buffer).await;
    let alerts = app.alerts(&ann, "").await;
    assert_eq!(alerts.len(), 2);
    for alert in &alerts {
        assert!(
            snapshot.contains(alert["id"].as_str().unwrap()),
            "{snapshot}"
        );
    }
    // The snapshot is the list of a fresh load.
    let page = browser.page("/").await;
    let fresh_start = page.find("<div id=\"alert-list\"").unwrap();
    let fresh = &page[fresh_start..];
    for line in snapshot.lines().filter(|l| l.contains("data-alert=")) {
        assert!(fresh.contains(line.trim()), "{line}");
    }

    // Bob's alerts do not wake ann's stream; ann's ack does.
    disk_alert(&app, &bob).await;
    browser.page("/").await;
    let ack = browser
        .post(&format!("/alerts/{first}/act"), &[("action", "ack")])
        .await;
    assert_eq!(ack.status(), StatusCode::SEE_OTHER);
    let snapshot = next_snapshot(&mut stream, &mut buffer).await;
    assert!(snapshot.contains("acknowledged by ann"), "{snapshot}");
    let bobs = app.alerts(&bob, "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!snapshot.contains(&bobs));
}

#[tokio::test]
async fn a_live_view_of_someone_elses_alert_is_not_found() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    person(&app, "bob").await;
    let id = disk_alert(&app, &ann).await;
    let mut bob = Browser::signed_in(&app, "bob", &password_of("bob")).await;
    let response = bob.get(&format!("/live?view=alert&id={id}")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let mut ann_browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let response = ann_browser.get(&format!("/live?view=alert&id={id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn my_acks_and_shelves_hold_the_oldest_open_alert_among_thousands() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    let early = an_early_alert_then_many(&app, &ann, 1001).await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let response = browser
        .post(
            &format!("/alerts/{early}/act"),
            &[("action", "ack"), ("note", "on it"), ("expires", "4h")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let acks = browser.page("/acks").await;
    assert!(
        acks.contains(&format!("href=\"/alerts/{early}\"")),
        "{acks}"
    );
    assert!(acks.contains("acknowledged by ann"), "{acks}");

    // Once the acknowledgement expires it leaves the view.
    app.advance(jiff::SignedDuration::from_hours(5)).await;
    let acks = browser.page("/acks").await;
    assert!(
        !acks.contains(&format!("href=\"/alerts/{early}\"")),
        "{acks}"
    );
}
