//! People change what they own (`PATCH /api/v1/users/{name}`), admins change roles, and
//! every such act lands in the audit log with who did it and what changed.

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, TestApp};

async fn patch(app: &TestApp, token: &str, path: &str, body: Value) -> Response {
    app.client
        .patch(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn patched(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let response = patch(app, token, path, body.clone()).await;
    assert_eq!(response.status(), StatusCode::OK, "PATCH {path} {body}");
    response.json().await.expect("json")
}

/// The audit records with `action`, oldest first.
async fn audit_of(app: &TestApp, action: &str) -> Vec<Value> {
    let page = app.get_json(&app.admin, "/api/v1/audit?limit=1000").await;
    let mut records: Vec<Value> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|record| record["action"] == action)
        .cloned()
        .collect();
    records.reverse();
    records
}

#[tokio::test]
async fn a_user_changes_their_own_zone_email_and_name_but_nothing_else() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    app.user("bob").await;

    let user = patched(
        &app,
        &ann,
        "/api/v1/users/me",
        json!({"timezone": "America/New_York", "email": "ann@new.example.com",
               "display_name": "Ann Smith"}),
    )
    .await;
    assert_eq!(user["name"], "ann");
    assert_eq!(user["timezone"], "America/New_York");
    assert_eq!(user["email"], "ann@new.example.com");
    assert_eq!(user["display_name"], "Ann Smith");
    // Her own name works as `me` does, and the next request sees the change at once
    // (cached principals carry the user).
    let me = app.get_json(&ann, "/api/v1/users/me").await;
    assert_eq!(me["user"]["timezone"], "America/New_York");
    let user = patched(
        &app,
        &ann,
        "/api/v1/users/ann",
        json!({"email": null, "display_name": null}),
    )
    .await;
    assert_eq!(user["email"], Value::Null);
    assert_eq!(user["display_name"], Value::Null);
    assert_eq!(user["timezone"], "America/New_York", "absent fields stay");

    // Roles are not hers to change: 403 naming the field.
    for (field, value) in [("admin", json!(true)), ("groups", json!([]))] {
        let response = patch(&app, &ann, "/api/v1/users/me", json!({ field: value })).await;
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("`{field}`")), "{detail}");
    }
    // Someone else is not hers to see.
    let response = patch(&app, &ann, "/api/v1/users/bob", json!({"timezone": "UTC"})).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // Bad values: 422 naming every field.
    let response = patch(
        &app,
        &ann,
        "/api/v1/users/me",
        json!({"timezone": "Mars/Base", "email": "nope", "display_name": "a\nb"}),
    )
    .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["timezone", "email", "display_name"], "{body}");
    let response = patch(&app, &ann, "/api/v1/users/me", json!({"nickname": "x"})).await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["detail"].as_str().unwrap().contains("nickname"),
        "{body}"
    );
    let unchanged = app.get_json(&ann, "/api/v1/users/me").await;
    assert_eq!(unchanged["user"]["timezone"], "America/New_York");

    // Each change is audited with what it was and what it became; the refused ones not.
    let updates = audit_of(&app, "user.updated").await;
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(updates[0]["actor"], "ann");
    assert_eq!(updates[0]["subject"], "user ann");
    assert_eq!(
        updates[0]["detail"],
        json!({"timezone": {"from": "Europe/Berlin", "to": "America/New_York"},
               "email": {"from": "ann@example.com", "to": "ann@new.example.com"},
               "display_name": {"from": null, "to": "Ann Smith"}})
    );
    assert_eq!(
        updates[1]["detail"],
        json!({"email": {"from": "ann@new.example.com", "to": null},
               "display_name": {"from": "Ann Smith", "to": null}})
    );
    // The audit log is for admins only.
    assert_eq!(
        app.get(&ann, "/api/v1/audit").await.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn an_admin_sets_the_role_and_exact_groups_and_every_act_is_audited() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    for (group, members) in [("ops", json!(["ann"])), ("db", json!([]))] {
        let response = app
            .post(
                &app.admin,
                "/api/v1/groups",
                json!({"name": group, "members": members}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    let user = patched(
        &app,
        &app.admin,
        "/api/v1/users/ann",
        json!({"admin": true, "groups": ["db"], "timezone": "UTC"}),
    )
    .await;
    assert_eq!(user["admin"], true);
    let members = |group: &'static str| {
        let app = &app;
        async move {
            app.get_json(&app.admin, &format!("/api/v1/groups/{group}"))
                .await["members"]
                .clone()
        }
    };
    assert_eq!(
        members("ops").await,
        json!([]),
        "out of the groups not named"
    );
    assert_eq!(members("db").await, json!(["ann"]));
    // Her memberships moved at once for her too: she sees db, not ops.
    let groups = app.get_json(&ann, "/api/v1/groups").await;
    let names: Vec<&str> = groups["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| group["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db"]);

    let response = patch(
        &app,
        &app.admin,
        "/api/v1/users/ann",
        json!({"groups": ["db", "nosuch"]}),
    )
    .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["path"], "groups[1]", "{body}");
    let response = patch(
        &app,
        &app.admin,
        "/api/v1/users/me",
        json!({"admin": false}),
    )
    .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let response = patch(
        &app,
        &app.admin,
        "/api/v1/users/nobody",
        json!({"admin": true}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // A token made and revoked, a member added and removed through the groups API.
    let response = app
        .post(
            &app.admin,
            "/api/v1/tokens",
            json!({"name": "laptop", "user": "ann", "expires": "30d"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let token: Value = response.json().await.unwrap();
    let secret = token["token"].as_str().unwrap().to_string();
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{}", token["id"].as_str().unwrap())))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .post(
            &app.admin,
            "/api/v1/groups/ops/members",
            json!({"user": "ann"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .client
        .delete(app.url("/api/v1/groups/db/members/ann"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // ann's creation, after the first admin's at the first start.
    let mut created = audit_of(&app, "user.created").await;
    assert_eq!(created.len(), 2);
    let first = created
        .iter()
        .position(|record| record["subject"] == "user admin");
    let first = created.remove(first.expect("the first admin's creation"));
    assert_eq!(first["actor"], "tellify serve (first start)");
    assert_eq!(created[0]["actor"], "admin");
    assert_eq!(created[0]["subject"], "user ann");
    assert_eq!(created[0]["detail"]["admin"], false);
    let groups = audit_of(&app, "group.created").await;
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["detail"], json!({"members": ["ann"]}));
    let roles = audit_of(&app, "user.role_changed").await;
    let details: Vec<&Value> = roles.iter().map(|record| &record["detail"]).collect();
    assert_eq!(
        details,
        [
            &json!({"admin": {"from": false, "to": true},
                    "groups": {"joined": ["db"], "left": ["ops"]}}),
            &json!({"groups": {"joined": ["ops"], "left": []}}),
            &json!({"groups": {"joined": [], "left": ["db"]}}),
        ]
    );
    assert!(roles.iter().all(|record| record["subject"] == "user ann"));
    let updated = audit_of(&app, "user.updated").await;
    assert_eq!(
        updated[0]["detail"],
        json!({"timezone": {"from": "Europe/Berlin", "to": "UTC"}})
    );
    // The test token of `app.user` and the laptop one.
    let minted = audit_of(&app, "token.created").await;
    assert_eq!(minted.len(), 2);
    assert_eq!(minted[1]["subject"], "token laptop of ann");
    assert_eq!(minted[1]["detail"]["id"], token["id"]);
    assert_eq!(minted[1]["detail"]["scopes"], json!(["user"]));
    let revoked = audit_of(&app, "token.revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["subject"], "token laptop of ann");
    // Nothing secret is kept.
    let whole = app
        .get_json(&app.admin, "/api/v1/audit?limit=1000")
        .await
        .to_string();
    assert!(!whole.contains(&secret));
    assert!(!whole.contains(&ann));
    assert!(!whole.contains("tfy_"), "{whole}");
}

/// `me` names the caller in `/api/v1/users/me`: a user of that name could never be
/// reached, changed or offboarded, so the name is refused.
#[tokio::test]
async fn no_user_may_be_named_me() {
    let app = spawn_app().await;
    let response = app
        .post(&app.admin, "/api/v1/users", json!({"name": "me"}))
        .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("`me` is reserved"), "{body}");
}
