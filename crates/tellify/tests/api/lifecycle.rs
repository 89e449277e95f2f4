//! Ack, shelve (timed and one-shot), latching, clear, and their history.

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, TestApp};

async fn one_alert(app: &TestApp, token: &str) -> Value {
    let alerts = app.alerts(token, "state=all").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    alerts[0].clone()
}

async fn act(
    app: &TestApp,
    token: &str,
    id: &str,
    action: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = app
        .post(token, &format!("/api/v1/alerts/{id}/{action}"), body)
        .await;
    let status = response.status();
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn ack_expires_and_a_severity_rise_reopens() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    app.subscribe(&ann, json!({"kind": "threshold", "title": "disk", "params": {"field": "usage", "warn": 90, "critical": 97}})).await;
    app.send_lines(&ann, "usage:92").await;
    let id = one_alert(&app, &ann).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let (status, alert) = act(
        &app,
        &ann,
        &id,
        "ack",
        json!({"note": "looking", "expires": "1h"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{alert}");
    assert_eq!(alert["acked"], true);
    assert_eq!(alert["acked_by"], "ann");
    app.advance(SignedDuration::from_mins(61)).await;
    assert_eq!(
        one_alert(&app, &ann).await["acked"],
        false,
        "the ack expired"
    );

    act(&app, &ann, &id, "ack", json!({})).await;
    app.send_lines(&ann, "usage:98").await;
    let alert = one_alert(&app, &ann).await;
    assert_eq!(
        (alert["acked"].clone(), alert["severity"].clone()),
        (json!(false), json!("critical"))
    );

    let detail = app.get_json(&ann, &format!("/api/v1/alerts/{id}")).await;
    let history: Vec<(String, String)> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["action"].as_str().unwrap().to_string(),
                h["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("fired", "tellify"),
        ("acked", "ann"),
        ("acked", "ann"),
        ("severity_raised", "tellify"),
        ("unacked", "tellify"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(history, expected);
}

#[tokio::test]
async fn timed_and_one_shot_shelves() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    app.subscribe(
        &ann,
        json!({"kind": "threshold", "title": "disk", "params": {"field": "usage", "warn": 90}}),
    )
    .await;
    app.send_lines(&ann, "usage:92").await;
    let id = one_alert(&app, &ann).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let response = app
        .post(&ann, &format!("/api/v1/alerts/{id}/shelve"), json!({}))
        .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["detail"].as_str().unwrap().contains("until"));
    let response = app
        .post(
            &ann,
            &format!("/api/v1/alerts/{id}/shelve"),
            json!({"until": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(problem(response).await.0, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, alert) = act(
        &app,
        &ann,
        &id,
        "shelve",
        json!({"until": "30m", "reason": "maintenance"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(alert["shelve_reason"], "maintenance");
    assert!(alert["shelved_until"].is_string());
    app.advance(SignedDuration::from_mins(31)).await;
    assert!(
        one_alert(&app, &ann).await["shelved_until"].is_null(),
        "the shelve expired"
    );
    let (status, _) = act(&app, &ann, &id, "unshelve", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing to unshelve");

    let (status, alert) = act(&app, &ann, &id, "shelve", json!({"oneshot": true})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(alert["shelved_oneshot"], true);
    app.send_lines(&ann, "usage:50").await;
    let alert = one_alert(&app, &ann).await;
    assert_eq!(alert["state"], "resolved");
    assert_eq!(
        alert["shelved_oneshot"], false,
        "a one-shot shelve ends with the alert"
    );
    let detail = app.get_json(&ann, &format!("/api/v1/alerts/{id}")).await;
    let actions: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["fired", "shelved", "shelved", "resolved", "unshelved"]
    );
}

#[tokio::test]
async fn latching_stays_firing_until_acknowledged_and_clear_dismisses() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    app.subscribe(&ann, json!({"kind": "threshold", "title": "disk", "latching": true, "params": {"field": "usage", "warn": 90}})).await;
    app.send_lines(&ann, "usage:95").await;
    app.send_lines(&ann, "usage:10").await;
    let alert = one_alert(&app, &ann).await;
    assert_eq!(
        (alert["state"].clone(), alert["latched"].clone()),
        (json!("firing"), json!(true))
    );
    let id = alert["id"].as_str().unwrap().to_string();
    let (_, alert) = act(&app, &ann, &id, "ack", json!({"note": "fixed"})).await;
    assert_eq!(alert["state"], "resolved");

    app.send_lines(&ann, "usage:95").await;
    let alert = one_alert(&app, &ann).await;
    assert_eq!(
        (alert["state"].clone(), alert["count"].clone()),
        (json!("firing"), json!(1))
    );
    let (status, alert) = act(&app, &ann, &id, "clear", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (alert["state"].clone(), alert["cleared"].clone()),
        (json!("resolved"), json!(true))
    );
    assert!(
        app.alerts(&ann, "").await.is_empty(),
        "cleared alerts leave the default list"
    );
    assert_eq!(app.alerts(&ann, "state=cleared").await.len(), 1);
    let (status, _) = act(&app, &ann, &id, "clear", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let detail = app.get_json(&ann, &format!("/api/v1/alerts/{id}")).await;
    let actions: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["fired", "latched", "acked", "resolved", "fired", "cleared"]
    );
}

#[tokio::test]
async fn cleared_alerts_page_through_with_cursors() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    app.subscribe(
        &ann,
        json!({"kind": "match", "title": "each", "params": {"filter": "true", "group_by": ["n"]}}),
    )
    .await;
    let lines: String = (0..12).map(|n| format!("n:{n}\n")).collect();
    app.send_lines(&ann, &lines).await;
    let alerts = app.alerts(&ann, "limit=100").await;
    assert_eq!(alerts.len(), 12);
    // Clear every third alert; the cleared ones are scattered among resolved-looking pages.
    let mut cleared = Vec::new();
    for alert in alerts.iter().step_by(3) {
        let id = alert["id"].as_str().unwrap();
        act(&app, &ann, id, "clear", json!({})).await;
        cleared.push(id.to_string());
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .get_json(
                &ann,
                &format!("/api/v1/alerts?state=cleared&limit=3{cursor}"),
            )
            .await;
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["cleared"], true);
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    seen.sort();
    cleared.sort();
    assert_eq!(seen, cleared);
    assert_eq!(app.alerts(&ann, "limit=100").await.len(), 8);
    assert_eq!(app.alerts(&ann, "state=all&limit=100").await.len(), 12);
}
