//! Nothing accepted silently in CEL filters (issue 10): a slip such as `=` gets a hint
//! with its position, a filter its event type's schema makes impossible is refused with
//! the reason, and a filter that fails on real events is counted for its owner.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, TestApp};

/// The problem+json of a refused subscription: the one error on `params.filter`.
async fn refused_filter(app: &TestApp, token: &str, filter: &str) -> String {
    let response = app
        .post(
            token,
            "/api/v1/subscriptions",
            json!({"kind": "match", "title": "t", "params": {"filter": filter}}),
        )
        .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{filter}: {body}");
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["path"], "params.filter", "{body}");
    errors[0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn change_filter(app: &TestApp, token: &str, id: &str, filter: &str) -> reqwest::Response {
    app.client
        .patch(app.url(&format!("/api/v1/subscriptions/{id}")))
        .bearer_auth(token)
        .json(&json!({"params": {"filter": filter}}))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn a_slip_in_a_filter_gets_a_hint_with_its_position() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let message = refused_filter(&app, &ann, r#"status = "fail""#).await;
    assert_eq!(
        message,
        "syntax error: `=` is not an operator in a filter; did you mean ==? (line 1, column 8)"
    );
    for (filter, hint) in [
        (
            r#"status == "fail" and block == "gc_t""#,
            "`and` is not an operator in a filter; did you mean &&? (line 1, column 18)",
        ),
        (
            r#"status == "fail" or block == "gc_t""#,
            "did you mean ||? (line 1, column 18)",
        ),
        (
            r#"status == "fail" & block == "gc_t""#,
            "did you mean &&? (line 1, column 18)",
        ),
        (
            r#"status == "fail" | block == "gc_t""#,
            "did you mean ||? (line 1, column 18)",
        ),
    ] {
        let message = refused_filter(&app, &ann, filter).await;
        assert!(message.ends_with(hint), "{filter}: {message}");
    }
    // The same hint on a change.
    let id = app
        .subscribe(
            &ann,
            json!({"kind": "match", "title": "t", "params": {"filter": "status == \"fail\""}}),
        )
        .await;
    let (status, body) = problem(change_filter(&app, &ann, &id, "n = 1").await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.to_string()
            .contains("did you mean ==? (line 1, column 3)"),
        "{body}"
    );
}

async fn register_disk(app: &TestApp) {
    let response = app
        .client
        .put(app.url("/api/v1/event-types/disk"))
        .bearer_auth(&app.admin)
        .json(&json!({"schema": {
            "type": "object", "additionalProperties": false,
            "properties": {"usage": {"type": "number"}, "mount": {"type": "string"}}
        }}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_filter_its_event_types_schema_makes_impossible_is_refused_with_the_reason() {
    let app = spawn_app().await;
    register_disk(&app).await;
    let ann = app.user("ann").await;
    let message = refused_filter(&app, &ann, r#"event.type == "disk" && usage > "90""#).await;
    assert_eq!(
        message,
        r#"usage is a number in event type disk, but is compared with the string "90""#
    );
    let message = refused_filter(&app, &ann, r#"event.type == "disk" && cpu > 90"#).await;
    assert_eq!(
        message,
        "cpu is not a field of event type disk (its fields are mount, usage)"
    );
    // What fits, what is not bound to the type, and an unregistered type all pass.
    for filter in [
        r#"event.type == "disk" && usage > 90 && mount == "/home" && host == "cad""#,
        r#"usage > "90""#,
        r#"event.type == "cpu" && usage > "90""#,
    ] {
        app.subscribe(
            &ann,
            json!({"kind": "match", "title": "t", "params": {"filter": filter}}),
        )
        .await;
    }
    // A change is checked the same way, and every other kind's filter too.
    let id = app
        .subscribe(
            &ann,
            json!({"kind": "match", "title": "t", "params": {"filter": "event.type == \"disk\""}}),
        )
        .await;
    let response = change_filter(&app, &ann, &id, r#"event.type == "disk" && mount == 1"#).await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.to_string()
            .contains("mount is a string in event type disk, but is compared with the number 1"),
        "{body}"
    );
    let response = app
        .post(
            &ann,
            "/api/v1/subscriptions",
            json!({"kind": "threshold", "title": "t", "params": {
                "filter": "event.type == \"disk\" && mount == true",
                "field": "usage", "warn": 80, "critical": 90
            }}),
        )
        .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.to_string()
            .contains("mount is a string in event type disk"),
        "{body}"
    );
}

async fn subscription(app: &TestApp, token: &str, id: &str) -> Value {
    app.get_json(token, &format!("/api/v1/subscriptions/{id}"))
        .await
}

#[tokio::test]
async fn a_filter_that_fails_on_real_events_is_counted_and_shown_to_its_owner() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    let id = app
        .subscribe(
            &ann,
            json!({"kind": "match", "title": "many tags", "params": {"filter": "size(tags) > 2"}}),
        )
        .await;
    assert!(
        subscription(&app, &ann, &id)
            .await
            .get("filter_errors")
            .is_none(),
        "nothing failed yet"
    );
    let events = json!([
        {"type": "build", "fields": {"tags": 5}},
        {"type": "build", "fields": {"tags": [1, 2, 3]}},
        {"type": "build", "fields": {"other": 1}},
        {"type": "build", "fields": {"tags": "ab"}},
        {"type": "build", "fields": {"tags": 7}}
    ]);
    let response = app.post(&app.admin, "/api/v1/events", events).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let ids: Value = response.json().await.expect("json");
    app.settle().await;

    // Two events had a number for `tags`; the missing field and the string are no failure.
    let shown = subscription(&app, &ann, &id).await;
    let errors = &shown["filter_errors"];
    assert_eq!(errors["count"], 2, "{shown}");
    let last_error = errors["last_error"].as_str().unwrap_or_default();
    let last_event = ids["ids"][4].as_str().unwrap_or_default();
    assert_eq!(
        last_error,
        format!("event {last_event}: `size` does not apply to (int)"),
        "{shown}"
    );
    assert_eq!(errors["last_at"], "2026-11-23T09:00:00Z", "{shown}");
    assert_eq!(shown["enabled"], true, "filter failures never disable it");
    assert!(shown.get("health").is_none(), "{shown}");
    assert_eq!(
        app.alerts(&ann, "").await.len(),
        1,
        "the list of three matched"
    );
    let listed = app.get_json(&ann, "/api/v1/subscriptions").await;
    assert_eq!(listed["items"][0]["filter_errors"]["count"], 2, "{listed}");
    // Only who may see the subscription sees its errors.
    let response = app.get(&bob, &format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let metrics = app.metrics().await;
    let counted = metrics
        .lines()
        .find(|line| line.starts_with("tellify_filter_errors_total"))
        .and_then(|line| line.split_whitespace().last())
        .and_then(|value| value.parse::<f64>().ok());
    assert!(counted.is_some_and(|value| value >= 2.0), "{metrics}");

    // More failures add up; a new filter starts again.
    let response = app
        .post(
            &app.admin,
            "/api/v1/events",
            json!({"type": "build", "fields": {"tags": 9}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    app.settle().await;
    assert_eq!(
        subscription(&app, &ann, &id).await["filter_errors"]["count"],
        3
    );
    let response = change_filter(&app, &ann, &id, "has(event.message)").await;
    assert_eq!(response.status(), StatusCode::OK);
    let changed: Value = response.json().await.expect("json");
    assert!(changed.get("filter_errors").is_none(), "{changed}");
    assert!(
        subscription(&app, &ann, &id)
            .await
            .get("filter_errors")
            .is_none(),
        "cleared in the store too"
    );
}
