//! The event-type registry end to end: admin-only writes, schema checks at ingest (nothing
//! stored from a bad batch), default severity, dedup windows with every occurrence still
//! reaching the handlers, and strict mode.

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, spawn_app_with, TestApp};

async fn put_type(app: &TestApp, token: &str, name: &str, body: Value) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/api/v1/event-types/{name}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn delete_type(app: &TestApp, token: &str, name: &str) -> reqwest::Response {
    app.client
        .delete(app.url(&format!("/api/v1/event-types/{name}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

async fn register(app: &TestApp, name: &str, body: Value) {
    let response = put_type(app, &app.admin, name, body).await;
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, StatusCode::CREATED, "{text}");
}

async fn send_json(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    let response = app.post(token, "/api/v1/events", body).await;
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    app.settle().await;
    (status, body)
}

async fn events(app: &TestApp, token: &str) -> Vec<Value> {
    let body = app.get_json(token, "/api/v1/events").await;
    body["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn admins_write_event_types_and_everyone_reads_them() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let definition = json!({
        "description": "a filesystem filled up", "category": "storage",
        "default_severity": "warning", "dedup_interval": "10m",
        "schema": {"type": "object", "required": ["fs"]}
    });
    let forbidden = put_type(&app, &ann, "disk", definition.clone()).await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);

    let response = put_type(&app, &app.admin, "disk", definition.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.expect("json");
    assert_eq!(created["name"], "disk");
    assert_eq!(created["dedup_interval"], "10m");
    assert_eq!(created["default_severity"], "warning");
    assert_eq!(
        created["schema"],
        json!({"type": "object", "required": ["fs"]})
    );
    let mut changed = definition.clone();
    changed["description"] = json!("nearly full");
    let replaced = put_type(&app, &app.admin, "disk", changed).await;
    assert_eq!(replaced.status(), StatusCode::OK);

    // A user reads the registry; a producer (ingest scope) may only send events.
    let response = app
        .post(
            &app.admin,
            "/api/v1/tokens",
            json!({"name": "farm", "scopes": ["ingest"], "user": "ann"}),
        )
        .await;
    let producer = response.json::<Value>().await.expect("json")["token"]
        .as_str()
        .expect("token")
        .to_string();
    let list = app.get_json(&ann, "/api/v1/event-types").await;
    assert_eq!(list["items"].as_array().expect("items").len(), 1);
    let one = app.get_json(&ann, "/api/v1/event-types/disk").await;
    assert_eq!(one["description"], "nearly full");
    assert_eq!(one["created"], created["created"]);
    assert_eq!(
        app.get(&producer, "/api/v1/event-types").await.status(),
        StatusCode::FORBIDDEN
    );

    // Every problem of a bad definition comes back with its path.
    let (status, body) = problem(
        put_type(
            &app,
            &app.admin,
            "bad",
            json!({"default_severity": "fatal", "schema": {"type": 7}, "dedup_interval": "soon", "colour": 1}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert_eq!(
        paths,
        vec!["default_severity", "schema", "dedup_interval", "colour"],
        "{body}"
    );

    assert_eq!(
        delete_type(&app, &ann, "disk").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        delete_type(&app, &app.admin, "disk").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&ann, "/api/v1/event-types/disk").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        delete_type(&app, &app.admin, "disk").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_schema_violation_is_a_422_naming_the_field_and_nothing_of_the_batch_is_stored() {
    let app = spawn_app().await;
    register(
        &app,
        "disk",
        json!({"schema": {"type": "object", "required": ["fs", "usage"],
                          "properties": {"usage": {"type": "number"}}}}),
    )
    .await;
    let lines = concat!(
        "{\"type\": \"disk\", \"fields\": {\"fs\": \"/a\", \"usage\": 91}}\n",
        "{\"type\": \"disk\", \"fields\": {\"fs\": \"/b\", \"usage\": \"high\"}}\n",
    );
    let (status, body) = problem(
        app.post_raw(&app.admin, "/api/v1/events", "application/x-ndjson", lines)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["line"], 2);
    assert_eq!(errors[0]["field"], "fields.usage");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("field `fields.usage`"),
        "{body}"
    );

    // A missing required field is named too, in text lines as well.
    let (status, body) = problem(
        app.post_raw(
            &app.admin,
            "/api/v1/events",
            "text/plain",
            "type:disk fs:/c",
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "fields.usage", "{body}");
    assert_eq!(body["errors"][0]["line"], 1);

    app.settle().await;
    assert!(events(&app, &app.admin).await.is_empty());
    assert_eq!(app.app.state.store.last_seq().await.expect("seq"), 0);
}

#[tokio::test]
async fn a_schema_refusal_names_the_rule_in_words_with_its_field_and_line() {
    let app = spawn_app().await;
    register(
        &app,
        "disk",
        json!({"schema": {"type": "object", "required": ["fs"], "properties": {
            "usage": {"type": "number", "maximum": 100},
            "level": {"enum": ["low", "high"]},
            "size": {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^[0-9]+[KMG]$"}]}
        }}}),
    )
    .await;
    let cases = [
        (
            "text/plain",
            "type:disk fs:/a usage:50\ntype:disk fs:/home usage:95%\n",
            2,
            "fields.usage",
            r#"must be a number, got the string "95%""#,
        ),
        (
            "text/plain",
            "type:disk usage:5\n",
            1,
            "fields.fs",
            "is required by event type `disk`",
        ),
        (
            "application/x-ndjson",
            "{\"type\": \"disk\", \"fields\": {\"fs\": \"/a\", \"level\": \"medium\"}}\n",
            1,
            "fields.level",
            r#"must be one of "low", "high", got the string "medium""#,
        ),
        (
            "application/x-ndjson",
            "\n\n{\"type\": \"disk\", \"fields\": {\"fs\": \"/a\", \"usage\": 150}}\n",
            3,
            "fields.usage",
            "must be at most 100, got the number 150",
        ),
        (
            "text/plain",
            "type:disk fs:/a size:lots\n",
            1,
            "fields.size",
            "matches none of the allowed shapes: must be a whole number, got the string \"lots\"; \
             or must match the pattern `^[0-9]+[KMG]$`, got the string \"lots\"",
        ),
    ];
    for (content_type, body, line, field, message) in cases {
        let (status, problem) = problem(
            app.post_raw(&app.admin, "/api/v1/events", content_type, body)
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        let errors = problem["errors"].as_array().expect("errors");
        assert_eq!(errors.len(), 1, "{problem}");
        assert_eq!(errors[0]["line"], line, "{problem}");
        assert_eq!(errors[0]["field"], field, "{problem}");
        assert_eq!(errors[0]["message"], message, "{problem}");
        let detail = problem["detail"].as_str().expect("detail");
        assert_eq!(
            detail,
            format!("line {line}: field `{field}`: {message}"),
            "{problem}"
        );
        assert!(!detail.contains("anyOf"), "{detail}");
    }
    app.settle().await;
    assert!(events(&app, &app.admin).await.is_empty());
}

#[tokio::test]
async fn the_type_default_severity_applies_only_when_none_was_sent() {
    let app = spawn_app().await;
    register(&app, "disk", json!({"default_severity": "critical"})).await;
    send_json(
        &app,
        &app.admin,
        json!({"type": "disk", "message": "no severity"}),
    )
    .await;
    send_json(
        &app,
        &app.admin,
        json!({"type": "disk", "message": "says info", "severity": "info"}),
    )
    .await;
    send_json(
        &app,
        &app.admin,
        json!({"type": "other", "message": "untyped"}),
    )
    .await;
    let stored = events(&app, &app.admin).await;
    let severity_of = |message: &str| {
        stored
            .iter()
            .find(|e| e["message"] == message)
            .map(|e| e["severity"].clone())
            .expect("event")
    };
    assert_eq!(severity_of("no severity"), "critical");
    assert_eq!(severity_of("says info"), "info");
    assert_eq!(severity_of("untyped"), "info");
}

#[tokio::test]
async fn identical_events_in_one_window_are_stored_once_and_every_occurrence_is_processed() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    register(&app, "disk", json!({"dedup_interval": "10m"})).await;
    app.subscribe(
        &ann,
        json!({"kind": "count", "title": "disk storm", "params": {
            "filter": "event.type == \"disk\"", "window": "1h", "limit": 4}}),
    )
    .await;
    let match_id = app
        .subscribe(
            &ann,
            json!({"kind": "match", "title": "disk", "params": {"filter": "event.type == \"disk\" && fs == \"/a\""}}),
        )
        .await;
    let disk = json!({"type": "disk", "message": "full", "fields": {"fs": "/a"}});

    let (status, first) = send_json(&app, &ann, disk.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let first_id = first["ids"][0].as_str().expect("id").to_string();
    for occurrence in 2..=4 {
        app.advance(SignedDuration::from_mins(2)).await;
        let (_, body) = send_json(&app, &ann, disk.clone()).await;
        assert_eq!(
            body["ids"][0],
            first_id.as_str(),
            "a repeat answers with the first id"
        );
        assert_eq!(body["repeats"], 1);
        assert_eq!(body["duplicates"], 0);
        let count_alerts = app.alerts(&ann, "").await;
        assert!(
            count_alerts.iter().all(|a| a["kind"] != "count"),
            "count fired at {occurrence}: {count_alerts:?}"
        );
    }
    // 9:08, still inside the window that opened at 9:00.
    app.advance(SignedDuration::from_mins(2)).await;
    send_json(&app, &ann, disk.clone()).await;

    let stored = events(&app, &ann).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["id"], first_id.as_str());
    assert_eq!(stored[0]["repeat_count"], 4);
    let one = app
        .get_json(&ann, &format!("/api/v1/events/{first_id}"))
        .await;
    assert_eq!(one["repeat_count"], 4);

    // The handlers saw all five: the count went over its limit of 4, the match counted 5.
    let alerts = app.alerts(&ann, "").await;
    let count_alert = alerts
        .iter()
        .find(|a| a["kind"] == "count")
        .expect("count alert after the fifth occurrence");
    assert_eq!(count_alert["state"], "firing");
    let match_alert = alerts
        .iter()
        .find(|a| a["subscription_id"] == match_id.as_str())
        .expect("match alert");
    assert_eq!(match_alert["count"], 5, "{match_alert}");

    // 9:11: the window (fixed from 9:00, not from the last repeat at 9:08) is over.
    app.advance(SignedDuration::from_mins(3)).await;
    let (_, body) = send_json(&app, &ann, disk.clone()).await;
    assert_ne!(body["ids"][0], first_id.as_str());
    assert_eq!(body["repeats"], 0);
    let stored = events(&app, &ann).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["repeat_count"], 0);
    assert_eq!(stored[1]["repeat_count"], 4);

    // Other fields are another event, and an idempotent retry is a duplicate, not a repeat.
    let keyed =
        json!({"type": "disk", "message": "full", "fields": {"fs": "/a"}, "idempotency_key": "k1"});
    let (_, body) = send_json(&app, &ann, keyed.clone()).await;
    assert_eq!(body["repeats"], 1);
    let (_, body) = send_json(&app, &ann, keyed).await;
    assert_eq!(body["duplicates"], 1);
    assert_eq!(body["repeats"], 0);
    send_json(
        &app,
        &ann,
        json!({"type": "disk", "message": "full", "fields": {"fs": "/b"}}),
    )
    .await;
    let stored = events(&app, &ann).await;
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[1]["repeat_count"], 1, "the retry did not count");
}

#[tokio::test]
async fn strict_types_rejects_events_of_unregistered_types() {
    let app = spawn_app_with(|settings| settings.ingest.strict_types = true).await;
    register(&app, "disk", json!({})).await;
    let (status, body) = problem(
        app.post(
            &app.admin,
            "/api/v1/events",
            json!([{"type": "disk", "message": "ok"}, {"type": "dsik", "message": "typo"}]),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["index"], 1);
    assert_eq!(body["errors"][0]["field"], "type");
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.contains("event type `dsik` is not registered"),
        "{detail}"
    );
    let (status, _) = problem(
        app.post_raw(&app.admin, "/api/v1/events", "text/plain", "no:type")
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(events(&app, &app.admin).await.is_empty());

    let (status, _) = send_json(&app, &app.admin, json!({"type": "disk", "message": "ok"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(events(&app, &app.admin).await.len(), 1);
}
