//! Bad input of every kind, other users' ids, revoked and under-scoped tokens.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, spawn_app_with, TestApp};

async fn stored_events(app: &TestApp) -> i64 {
    app.app.state.store.last_seq().await.expect("last seq")
}

async fn ingest(app: &TestApp, content_type: &str, body: &str) -> (StatusCode, Value) {
    problem(
        app.post_raw(&app.admin, "/api/v1/events", content_type, body.to_string())
            .await,
    )
    .await
}

#[tokio::test]
async fn bad_ingest_is_rejected_whole_with_the_line_and_field_named() {
    let app = spawn_app_with(|settings| {
        settings.ingest.max_body_bytes = 4096;
        settings.ingest.max_batch_events = 50;
        settings.limits.max_fields = 5;
    })
    .await;

    let (status, body) = ingest(&app, "application/json", "{\"message\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"].as_str().unwrap().contains("invalid JSON"),
        "{body}"
    );

    let (status, body) = ingest(
        &app,
        "application/json",
        r#"[{"message": "fine"}, {"severity": "fatal", "fields": {"a": 1}}]"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["index"], 1);
    assert_eq!(body["errors"][0]["field"], "severity");

    let (status, body) = ingest(
        &app,
        "application/x-ndjson",
        "{\"message\": \"a\"}\n{\"message\": \"b\"}\n{\"mesage\": \"c\"}\n",
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["line"], 3);
    assert!(body["detail"].as_str().unwrap().contains("mesage"));

    let (status, body) = ingest(&app, "text/plain", "a:1 b:2\nc:\"unclosed\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["line"], 2);
    assert!(
        body["detail"].as_str().unwrap().contains("column 3"),
        "{body}"
    );

    let (status, body) = ingest(
        &app,
        "application/json",
        r#"{"fields": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["detail"].as_str().unwrap().contains("limit of 5"),
        "{body}"
    );

    let (status, body) = ingest(&app, "application/xml", "<event/>").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(body["detail"].as_str().unwrap().contains("text/plain"));

    let many: String = (0..51).map(|i| format!("n:{i}\n")).collect();
    let (status, body) = ingest(&app, "text/plain", &many).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("max_batch_events"));

    let huge = format!("{{\"message\": \"{}\"}}", "x".repeat(5000));
    let response = app
        .post_raw(&app.admin, "/api/v1/events", "application/json", huge)
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let (status, _) = ingest(&app, "application/json", "[]").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        stored_events(&app).await,
        0,
        "nothing of a rejected batch is stored"
    );
}

#[tokio::test]
async fn an_idempotency_key_stores_a_retried_event_once() {
    let app = spawn_app().await;
    let body = json!({"message": "deploy done", "idempotency_key": "deploy-42"});
    let first: Value = app
        .post(&app.admin, "/api/v1/events", body.clone())
        .await
        .json()
        .await
        .unwrap();
    let second = app.post(&app.admin, "/api/v1/events", body).await;
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["ids"], second["ids"]);
    assert_eq!(second["duplicates"], 1);
    assert_eq!(stored_events(&app).await, 1);
}

#[tokio::test]
async fn subscription_errors_name_every_path_and_store_nothing() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let response = app
        .post(
            &ann,
            "/api/v1/subscriptions",
            json!({"kind": "threshold", "title": " ", "params": {
            "field": "usage", "warn": 97, "critical": 90, "filter": "usage >", "colour": "red"}}),
        )
        .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"title") && paths.contains(&"params"),
        "{body}"
    );

    let response = app
        .post(
            &ann,
            "/api/v1/subscriptions",
            json!({"kind": "threshold", "title": "t", "params": {
            "field": "usage", "warn": 97, "critical": 90, "filter": "usage >"}}),
        )
        .await;
    let (_, body) = problem(response).await;
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["params.filter", "params.critical"], "{body}");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("column"));

    let response = app
        .post(
            &ann,
            "/api/v1/subscriptions",
            json!({"kind": "telepathy", "title": "t"}),
        )
        .await;
    let (_, body) = problem(response).await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("unknown kind `telepathy`"));

    let response = app
        .post(
            &ann,
            "/api/v1/subscriptions",
            json!({"kind": "count", "title": "t", "params": {"limit": "four", "window": "soon"}}),
        )
        .await;
    let (_, body) = problem(response).await;
    assert!(
        body["detail"].as_str().unwrap().contains("params.limit"),
        "{body}"
    );

    let response = app
        .post_raw(
            &ann,
            "/api/v1/subscriptions",
            "application/json",
            "{not json",
        )
        .await;
    assert_eq!(problem(response).await.0, StatusCode::BAD_REQUEST);

    let list = app.get_json(&ann, "/api/v1/subscriptions").await;
    assert!(list["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn another_users_ids_are_not_found_and_groups_share() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    let sub = app
        .subscribe(
            &ann,
            json!({"kind": "match", "title": "mine", "params": {"filter": "true"}}),
        )
        .await;
    app.send_lines(&ann, "x:1").await;
    let alert = app.alerts(&ann, "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    for path in [
        format!("/api/v1/subscriptions/{sub}"),
        format!("/api/v1/alerts/{alert}"),
    ] {
        assert_eq!(
            app.get(&bob, &path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
        assert_eq!(
            app.get(&ann, &path).await.status(),
            StatusCode::OK,
            "{path}"
        );
        assert_eq!(
            app.get(&app.admin, &path).await.status(),
            StatusCode::OK,
            "admin sees {path}"
        );
    }
    let response = app
        .post(&bob, &format!("/api/v1/alerts/{alert}/ack"), json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/subscriptions/{sub}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app
        .post(
            &bob,
            &format!("/api/v1/subscriptions/{sub}/disable"),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(app.alerts(&bob, "").await.is_empty());

    // A group subscription is shared by its members.
    let response = app
        .post(
            &app.admin,
            "/api/v1/groups",
            json!({"name": "vr0", "members": ["ann", "bob"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let shared = app.subscribe(&ann, json!({"kind": "match", "title": "team", "group": "vr0", "params": {"filter": "team == true"}})).await;
    assert_eq!(
        app.get(&bob, &format!("/api/v1/subscriptions/{shared}"))
            .await
            .status(),
        StatusCode::OK
    );
    let carol = app.user("carol").await;
    let response = app
        .post(
            &carol,
            "/api/v1/subscriptions",
            json!({"kind": "match", "title": "x", "group": "vr0", "params": {"filter": "true"}}),
        )
        .await;
    assert_eq!(problem(response).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    app.send_lines(&ann, "team:true").await;
    let bob_alerts = app.alerts(&bob, "").await;
    assert_eq!(bob_alerts.len(), 1);
    assert_eq!(bob_alerts[0]["subscription_id"], shared.as_str());
    assert!(app.alerts(&carol, "").await.is_empty());
}

#[tokio::test]
async fn tokens_scopes_and_revocation() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    assert_eq!(
        problem(
            app.client
                .get(app.url("/api/v1/alerts"))
                .send()
                .await
                .unwrap()
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("tfy_nonsense", "/api/v1/alerts").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let created: Value = app
        .post(
            &ann,
            "/api/v1/tokens",
            json!({"name": "ci", "scopes": ["ingest"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let ingest = created["token"].as_str().unwrap().to_string();
    assert_eq!(
        app.post_raw(&ingest, "/api/v1/events", "text/plain", "ok:1")
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let (status, body) = problem(app.get(&ingest, "/api/v1/events").await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["detail"].as_str().unwrap().contains("ingest"));

    let response = app
        .post(
            &ann,
            "/api/v1/tokens",
            json!({"name": "x", "scopes": ["admin"]}),
        )
        .await;
    assert_eq!(
        problem(response).await.0,
        StatusCode::UNPROCESSABLE_ENTITY,
        "ann is no admin"
    );
    let response = app
        .post(
            &ann,
            "/api/v1/tokens",
            json!({"name": "x", "user": "admin"}),
        )
        .await;
    assert_eq!(problem(response).await.0, StatusCode::FORBIDDEN);
    let response = app
        .post(&ann, "/api/v1/users", json!({"name": "mallory"}))
        .await;
    assert_eq!(problem(response).await.0, StatusCode::FORBIDDEN);

    let listed = app.get_json(&ann, "/api/v1/tokens").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert!(
        listed["items"][0].get("hash").is_none(),
        "hashes never leave the server"
    );
    let bob = app.user("bob").await;
    let id = created["id"].as_str().unwrap();
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "bob cannot revoke ann's token"
    );
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{id}")))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, body) = problem(
        app.post_raw(&ingest, "/api/v1/events", "text/plain", "ok:1")
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["detail"].as_str().unwrap().contains("revoked"));

    let response = app
        .post(
            &app.admin,
            "/api/v1/users",
            json!({"name": "Bad Name", "email": "nope", "timezone": "Mars/Olympus"}),
        )
        .await;
    let (_, body) = problem(response).await;
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["name", "email", "timezone"]);
}

#[tokio::test]
async fn events_are_listed_with_filter_time_range_and_cursor() {
    let app = spawn_app().await;
    let lines: String = (0..30)
        .map(|i| format!("n:{i} parity:{}\n", if i % 2 == 0 { "even" } else { "odd" }))
        .collect();
    app.send_lines(&app.admin, &lines).await;
    let page = app
        .get_json(
            &app.admin,
            "/api/v1/events?filter=parity%20%3D%3D%20%22even%22&limit=10",
        )
        .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 10);
    assert_eq!(items[0]["fields"]["n"], 28, "newest first");
    let cursor = page["next"].as_str().unwrap();
    let rest = app
        .get_json(
            &app.admin,
            &format!("/api/v1/events?filter=parity%20%3D%3D%20%22even%22&limit=10&cursor={cursor}"),
        )
        .await;
    let rest_items = rest["items"].as_array().unwrap();
    assert_eq!(rest_items.len(), 5);
    assert!(rest["next"].is_null());
    let exact = app
        .get_json(
            &app.admin,
            "/api/v1/events?filter=parity%20%3D%3D%20%22even%22&limit=15",
        )
        .await;
    assert_eq!(exact["items"].as_array().unwrap().len(), 15);
    assert!(exact["next"].is_null(), "no cursor when nothing follows");
    let plain = app.get_json(&app.admin, "/api/v1/events?limit=30").await;
    assert!(plain["next"].is_null());
    let (status, body) = problem(app.get(&app.admin, "/api/v1/events?filter=n%20%3E").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("column"));
    let future = app
        .get_json(&app.admin, "/api/v1/events?since=2030-01-01T00:00:00Z")
        .await;
    assert!(future["items"].as_array().unwrap().is_empty());
    let (status, body) = problem(app.get(&app.admin, "/api/v1/alerts?limit=abc").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("limit"), "{body}");
    let recent = app
        .get_json(&app.admin, "/api/v1/events?since=5m&limit=1000")
        .await;
    assert_eq!(recent["items"].as_array().unwrap().len(), 30);
}

#[tokio::test]
async fn ingest_pushes_back_when_processing_is_too_far_behind() {
    let app = spawn_app_with(|settings| settings.ingest.max_backlog_events = 100).await;
    app.send_lines(&app.admin, "n:1").await;
    // Pretend ingest stored far more than the worker has processed.
    app.app.state.worker.appended(10_000);
    let response = app
        .post_raw(&app.admin, "/api/v1/events", "text/plain", "n:2")
        .await;
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("max_backlog_events"),
        "{body}"
    );
    assert_eq!(
        stored_events(&app).await,
        1,
        "the refused event was not stored"
    );
}
