//! The route-table authorization test: every route of the router, called as every kind of
//! caller, with the status each must get. A route that is added without a row here fails
//! `every_route_has_a_row` (the routes are read from the router's source), so nobody can
//! add an endpoint without deciding who may call it.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Revoked,
    Expired,
    Ingest,
    Other,
    Member,
    Owner,
    Admin,
}

const CALLERS: [Caller; 8] = [
    Caller::Anonymous,
    Caller::Revoked,
    Caller::Expired,
    Caller::Ingest,
    Caller::Other,
    Caller::Member,
    Caller::Owner,
    Caller::Admin,
];

/// Tokens of every caller and the resources `ann` (the owner) has, some shared with the
/// group `ops` (ann and carol, the member; bob is the other user).
struct World {
    tokens: Vec<(Caller, Option<String>)>,
    ann_token_id: String,
    subscription: String,
    alert: String,
    event: String,
    delivery: String,
    silence: String,
    group: String,
    suffix: String,
}

async fn token_for(
    app: &TestApp,
    user: &str,
    scopes: Value,
    expires: Option<&str>,
) -> (String, String) {
    let mut body =
        json!({"name": format!("t{}", tellify_model::new_id()), "scopes": scopes, "user": user});
    if let Some(expires) = expires {
        body["expires"] = json!(expires);
    }
    let response = app.post(&app.admin, "/api/v1/tokens", body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.expect("json");
    (
        created["token"].as_str().expect("token").to_string(),
        created["id"].as_str().expect("id").to_string(),
    )
}

async fn world(app: &TestApp, hook: &str) -> World {
    // The event type the `{name}` routes name (an earlier row may have deleted it).
    let response = app
        .client
        .put(app.url("/api/v1/event-types/deploy"))
        .bearer_auth(&app.admin)
        .json(&json!({"description": "deploys"}))
        .send()
        .await
        .expect("event type");
    assert!(response.status().is_success());
    let suffix = tellify_model::new_id().to_lowercase();
    let ann = format!("ann{suffix}");
    let bob = format!("bob{suffix}");
    let carol = format!("carol{suffix}");
    let group = format!("ops{suffix}");
    for name in [&ann, &bob, &carol] {
        let response = app
            .post(
                &app.admin,
                "/api/v1/users",
                json!({"name": name, "timezone": "UTC", "email": format!("{name}@example.com")}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let response = app
        .post(
            &app.admin,
            "/api/v1/groups",
            json!({"name": group, "members": [ann, carol]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let (owner, ann_token_id) = token_for(app, &ann, json!(["user"]), None).await;
    let (other, _) = token_for(app, &bob, json!(["user"]), None).await;
    let (member, _) = token_for(app, &carol, json!(["user"]), None).await;
    let (ingest, _) = token_for(app, &ann, json!(["ingest"]), None).await;
    let (revoked, revoked_id) = token_for(app, &ann, json!(["user"]), None).await;
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{revoked_id}")))
        .bearer_auth(&app.admin)
        .send()
        .await
        .expect("revoke");
    assert!(response.status().is_success());
    let (expired, _) = token_for(app, &ann, json!(["user"]), Some("1h")).await;
    app.clock.advance(jiff::SignedDuration::from_hours(2));

    let subscription = app
        .subscribe(&owner, json!({"kind": "match", "title": "all", "group": group, "params": {"filter": format!("run == \"{suffix}\"")}}))
        .await;
    let response = app
        .post(
            &owner,
            "/api/v1/contact-points",
            json!({"name": "hook", "kind": "webhook", "address": hook}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app
        .client
        .put(app.url("/api/v1/policies/default"))
        .bearer_auth(&owner)
        .json(&json!({"rules": [{"contact_points": ["hook"]}]}))
        .send()
        .await
        .expect("policy");
    assert!(response.status().is_success());
    let response = app
        .post(
            &owner,
            "/api/v1/silences",
            json!({"filter": "subscription == \"none\"", "ends": "1h"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let silence: Value = response.json().await.expect("json");
    let ids = app.send_lines(&owner, &format!("run:{suffix}")).await;
    let alerts = app
        .alerts(&owner, &format!("subscription={subscription}"))
        .await;
    let alert = alerts[0]["id"].as_str().expect("alert").to_string();
    app.app.state.notifier.wake();
    let delivery = crate::helpers::eventually("a delivery", || async {
        let listed = app.get_json(&owner, "/api/v1/deliveries").await;
        listed["items"][0]["id"].as_str().map(str::to_string)
    })
    .await;
    World {
        tokens: vec![
            (Caller::Anonymous, None),
            (Caller::Revoked, Some(revoked)),
            (Caller::Expired, Some(expired)),
            (Caller::Ingest, Some(ingest)),
            (Caller::Other, Some(other)),
            (Caller::Member, Some(member)),
            (Caller::Owner, Some(owner)),
            (Caller::Admin, Some(app.admin.clone())),
        ],
        ann_token_id,
        subscription,
        alert,
        event: ids[0].clone(),
        delivery,
        silence: silence["id"].as_str().expect("silence").to_string(),
        group,
        suffix,
    }
}

impl World {
    /// The concrete path of a route pattern, with this world's ids and names.
    fn path(&self, pattern: &str) -> String {
        let ann = format!("ann{}", self.suffix);
        let carol = format!("carol{}", self.suffix);
        pattern
            .replace(
                "/subscriptions/{id}",
                &format!("/subscriptions/{}", self.subscription),
            )
            .replace("/alerts/{id}", &format!("/alerts/{}", self.alert))
            .replace("/alert/{id}", &format!("/alert/{}", self.alert))
            .replace("/events/{id}", &format!("/events/{}", self.event))
            .replace(
                "/deliveries/{id}",
                &format!("/deliveries/{}", self.delivery),
            )
            .replace("/silences/{id}", &format!("/silences/{}", self.silence))
            .replace("/tokens/{id}", &format!("/tokens/{}", self.ann_token_id))
            .replace("/users/{name}", &format!("/users/{ann}"))
            .replace(
                "/groups/{name}/members/{user}",
                &format!("/groups/{}/members/{carol}", self.group),
            )
            .replace("/groups/{name}", &format!("/groups/{}", self.group))
            .replace("/contact-points/{name}", "/contact-points/hook")
            .replace("/policies/{name}", "/policies/default")
            .replace("/event-types/{name}", "/event-types/deploy")
            .replace("/silence/{id}", &format!("/silence/{}", self.silence))
    }

    fn token(&self, caller: Caller) -> Option<&str> {
        self.tokens
            .iter()
            .find(|(who, _)| *who == caller)
            .and_then(|(_, token)| token.as_deref())
    }
}

/// The body a write sends, when it needs one to get past parsing.
fn body_for(method: &Method, pattern: &str, suffix: &str, now: jiff::Timestamp) -> Option<Value> {
    let body = match (method.as_str(), pattern) {
        ("POST", "/api/v1/events") => json!({"message": "hello"}),
        ("PUT", "/api/v1/event-types/{name}") => json!({"description": "deploys"}),
        ("POST", "/api/v1/subscriptions") => {
            json!({"kind": "match", "title": "x", "params": {"filter": "true"}})
        }
        ("PUT" | "PATCH", "/api/v1/subscriptions/{id}") => json!({"title": "renamed"}),
        ("PATCH", "/api/v1/users/me" | "/api/v1/users/{name}") => {
            json!({"timezone": "Europe/Berlin"})
        }
        ("POST", "/api/v1/subscriptions/preview") => {
            json!({"subscription": {"kind": "match", "title": "x", "params": {"filter": "true"}}})
        }
        ("PUT", "/api/v1/users/me/password" | "/api/v1/users/{name}/password") => {
            json!({"password": "a new password 1"})
        }
        ("POST", "/api/v1/subscriptions/import") => json!({"url": "https://engine.example.com"}),
        ("POST", "/api/v1/alerts/{id}/ack") => json!({"note": "mine"}),
        ("POST", "/api/v1/alerts/{id}/shelve") => json!({"until": "1h"}),
        ("POST", "/api/v1/users") => json!({"name": format!("dave{suffix}")}),
        ("POST", "/api/v1/contact-points") => {
            json!({"name": "hook2", "kind": "webhook", "address": "https://hooks.example.com/x"})
        }
        ("PUT", "/api/v1/policies/{name}") => json!({"rules": [{"contact_points": ["hook"]}]}),
        ("POST", "/api/v1/silences") => json!({"filter": "true", "ends": "1h"}),
        ("POST", "/api/v1/groups") => json!({"name": format!("g{suffix}")}),
        ("POST", "/api/v1/groups/{name}/members") => json!({"user": format!("bob{suffix}")}),
        ("POST", "/api/v1/tokens") => json!({"name": "more"}),
        ("POST", "/api/v2/alerts") => json!([{"labels": {"alertname": "x"}}]),
        ("POST", "/api/v2/silences") => {
            json!({
                "matchers": [{"name": "a", "value": "b", "isRegex": false, "isEqual": true}],
                "startsAt": now.to_string(),
                "endsAt": tellify_model::later(now, jiff::SignedDuration::from_hours(1)).to_string(),
                "createdBy": "x", "comment": "x"})
        }
        ("POST", "/alerta/api/alert") => json!({"resource": "r", "event": "e"}),
        ("POST", "/alerta/api/heartbeat") => json!({"origin": "o"}),
        ("PUT", "/alerta/api/alert/{id}/action") => json!({"action": "ack"}),
        _ => return None,
    };
    Some(body)
}

/// Every (method, route) of the router, read from its source, with the Alerta routes under
/// their default prefix.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (file, prefix_of) in [
        ("src/api/mod.rs", None),
        ("src/api/alerta.rs", Some("/alerta/api")),
    ] {
        let source =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_string() + file)
                .expect("router source");
        // The router only, not the module's unit tests.
        let source = source.split("#[cfg(test)]").next().unwrap_or_default();
        let compact: String = source
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace("( ", "(")
            .replace(" )", ")");
        let mut section = "/api/v1";
        let mut rest = compact.as_str();
        while let Some(start) = rest.find(".route(\"") {
            let before = &rest[..start];
            if before.contains("let alertmanager_v2") {
                section = "/api/v2";
            }
            if before.contains("let router = Router::new()") {
                section = "";
            }
            rest = &rest[start + 8..];
            let end = rest.find('"').expect("closing quote");
            let path = &rest[..end];
            // The handlers of this route: up to the `.route(` or `.fallback(` that follows.
            let tail = &rest[end..];
            let stop = [tail.find(".route(\""), tail.find(".fallback(")]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(tail.len());
            let handlers = &tail[..stop];
            let base = match prefix_of {
                Some(prefix) => prefix.to_string(),
                None => section.to_string(),
            };
            for method in ["get", "post", "put", "patch", "delete"] {
                let called = [
                    format!("({method}("),
                    format!(" {method}("),
                    format!(".{method}("),
                    format!("::{method}("),
                ];
                if called
                    .iter()
                    .any(|needle| handlers.contains(needle.as_str()))
                {
                    routes.insert((method.to_uppercase(), format!("{base}{path}")));
                }
            }
        }
    }
    routes
}

/// Expected statuses for anonymous, revoked, expired, ingest, other, member, owner, admin.
type Row = (&'static str, &'static str, [u16; 8]);

const A: u16 = 401; // anonymous, revoked and expired callers

#[rustfmt::skip]
const TABLE: &[Row] = &[
    // Columns: anonymous, revoked, expired, ingest, other user, group member, owner, admin.
    // `ann` (owner) and `carol` (member) share the group `ops`; the subscription and its
    // alert belong to the group; contact points, policies, silences, deliveries and tokens
    // are ann's own. Admins act in their own namespace unless a route takes `?user=`.
    // 404 (not 403) for what the caller may not see; 409 is an allowed call that conflicts
    // (unshelving what is not shelved); 422 an allowed call whose body names someone
    // else's contact point (policies) or an unreachable engine (import).
    ("POST",  "/api/v1/events",                            [A, A, A, 202, 202, 202, 202, 202]),
    ("GET",   "/api/v1/events",                            [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v1/events/{id}",                       [A, A, A, 403, 200, 200, 200, 200]),
    ("DELETE", "/api/v1/contact-points/{name}",             [A, A, A, 403, 404, 404, 204, 404]),
    ("DELETE", "/api/v1/event-types/{name}",                [A, A, A, 403, 403, 403, 403, 204]),
    ("DELETE", "/api/v1/groups/{name}/members/{user}",      [A, A, A, 403, 403, 403, 403, 204]),
    ("DELETE", "/api/v1/policies/{name}",                   [A, A, A, 403, 404, 404, 204, 404]),
    ("DELETE", "/api/v1/silences/{id}",                     [A, A, A, 403, 404, 404, 204, 404]),
    ("DELETE", "/api/v1/subscriptions/{id}",                [A, A, A, 403, 404, 204, 204, 204]),
    ("DELETE", "/api/v1/tokens/{id}",                       [A, A, A, 403, 404, 404, 204, 204]),
    ("DELETE", "/api/v1/users/{name}",                      [A, A, A, 403, 403, 403, 403, 200]),
    ("DELETE", "/api/v2/silence/{id}",                      [A, A, A, 403, 404, 404, 200, 404]),
    ("DELETE", "/alerta/api/alert/{id}",                    [A, A, A, 403, 404, 200, 200, 200]),
    ("GET",   "/alerta/api/alerts",                        [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/alerta/api/alerts/count",                  [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/alerta/api/config",                        [200, 200, 200, 200, 200, 200, 200, 200]),
    ("GET",   "/api/openapi.json",                         [200, 200, 200, 200, 200, 200, 200, 200]),
    ("GET",   "/api/v1/alerts",                            [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v1/alerts/{id}",                       [A, A, A, 403, 404, 200, 200, 200]),
    ("GET",   "/api/v1/alerts/{id}/explain",               [A, A, A, 403, 404, 200, 200, 200]),
    ("GET",   "/api/v1/audit",                             [A, A, A, 403, 403, 403, 403, 200]),
    ("GET",   "/api/v1/contact-points",                    [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v1/contact-points/{name}",             [A, A, A, 403, 404, 404, 200, 404]),
    ("GET",   "/api/v1/deliveries",                        [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v1/deliveries/{id}",                   [A, A, A, 403, 404, 404, 200, 200]),
    ("GET",   "/api/v1/deliveries/{id}/explain",           [A, A, A, 403, 404, 404, 200, 200]),
    ("GET",   "/api/v1/event-types",                       [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v1/event-types/{name}",                [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v1/groups",                            [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v1/groups/{name}",                     [A, A, A, 403, 404, 200, 200, 200]),
    ("GET",   "/api/v1/handler-kinds",                     [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v1/policies",                          [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v1/policies/{name}",                   [A, A, A, 403, 404, 404, 200, 404]),
    ("GET",   "/api/v1/policies/{name}/week",              [A, A, A, 403, 404, 404, 200, 404]),
    ("GET",   "/api/v1/silences",                          [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v1/stream",                            [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v1/subscriptions",                     [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v1/subscriptions/costs",               [A, A, A, 403, 403, 403, 403, 200]),
    ("GET",   "/api/v1/subscriptions/{id}",                [A, A, A, 403, 404, 200, 200, 200]),
    ("GET",   "/api/v1/tokens",                            [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v1/users",                             [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v1/users/me",                          [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v1/users/{name}",                      [A, A, A, 403, 404, 404, 200, 200]),
    ("GET",   "/api/v2/alerts",                            [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v2/alerts/groups",                     [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v2/receivers",                         [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v2/silence/{id}",                      [A, A, A, 403, 404, 404, 200, 404]),
    ("GET",   "/api/v2/silences",                          [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/api/v2/status",                            [A, A, A, 403, 200, 200, 200, 200]),
    ("GET",   "/healthz",                                  [200, 200, 200, 200, 200, 200, 200, 200]),
    ("GET",   "/metrics",                                  [200, 200, 200, 200, 200, 200, 200, 200]),
    ("PATCH", "/api/v1/subscriptions/{id}",                [A, A, A, 403, 404, 200, 200, 200]),
    ("PATCH", "/api/v1/users/me",                          [A, A, A, 403, 200, 200, 200, 200]),
    ("PATCH", "/api/v1/users/{name}",                      [A, A, A, 403, 404, 404, 200, 200]),
    ("POST",  "/alerta/api/alert",                         [A, A, A, 200, 200, 200, 200, 200]),
    ("POST",  "/alerta/api/heartbeat",                     [A, A, A, 200, 200, 200, 200, 200]),
    ("POST",  "/api/v1/alerts/{id}/ack",                   [A, A, A, 403, 404, 200, 200, 200]),
    ("POST",  "/api/v1/alerts/{id}/clear",                 [A, A, A, 403, 404, 200, 200, 200]),
    ("POST",  "/api/v1/alerts/{id}/shelve",                [A, A, A, 403, 404, 200, 200, 200]),
    ("POST",  "/api/v1/alerts/{id}/unshelve",              [A, A, A, 403, 404, 409, 409, 409]),
    ("POST",  "/api/v1/contact-points",                    [A, A, A, 403, 201, 201, 201, 201]),
    ("POST",  "/api/v1/contact-points/{name}/test",        [A, A, A, 403, 404, 404, 200, 404]),
    ("POST",  "/api/v1/groups",                            [A, A, A, 403, 403, 403, 403, 201]),
    ("POST",  "/api/v1/groups/{name}/members",             [A, A, A, 403, 403, 403, 403, 200]),
    ("POST",  "/api/v1/silences",                          [A, A, A, 403, 201, 201, 201, 201]),
    ("POST",  "/api/v1/subscriptions",                     [A, A, A, 403, 201, 201, 201, 201]),
    ("POST",  "/api/v1/subscriptions/import",              [A, A, A, 403, 422, 422, 422, 422]),
    ("POST",  "/api/v1/subscriptions/preview",             [A, A, A, 403, 200, 200, 200, 200]),
    ("POST",  "/api/v1/subscriptions/{id}/disable",        [A, A, A, 403, 404, 200, 200, 200]),
    ("POST",  "/api/v1/subscriptions/{id}/enable",         [A, A, A, 403, 404, 200, 200, 200]),
    ("POST",  "/api/v1/tokens",                            [A, A, A, 403, 201, 201, 201, 201]),
    ("POST",  "/api/v1/users",                             [A, A, A, 403, 403, 403, 403, 201]),
    ("POST",  "/api/v2/alerts",                            [A, A, A, 200, 200, 200, 200, 200]),
    ("POST",  "/api/v2/silences",                          [A, A, A, 403, 200, 200, 200, 200]),
    ("PUT",   "/alerta/api/alert/{id}/action",             [A, A, A, 403, 404, 200, 200, 200]),
    ("PUT",   "/api/v1/event-types/{name}",                [A, A, A, 403, 403, 403, 403, 200]),
    ("PUT",   "/api/v1/policies/{name}",                   [A, A, A, 403, 422, 422, 200, 422]),
    ("PUT",   "/api/v1/subscriptions/{id}",                [A, A, A, 403, 404, 200, 200, 200]),
    // Without `current`: the bootstrap admin has a password, so changing it needs it (403);
    // the others have none yet. An admin resets anyone's; a user only their own.
    ("PUT",   "/api/v1/users/me/password",                 [A, A, A, 403, 204, 204, 204, 403]),
    ("PUT",   "/api/v1/users/{name}/password",             [A, A, A, 403, 404, 404, 204, 204]),
];

#[tokio::test]
async fn every_route_has_a_row() {
    let routes = routes_in_source();
    assert!(routes.len() > 40, "the router was read: {routes:?}");
    let rows: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|(method, path, _)| (method.to_string(), path.to_string()))
        .collect();
    let missing: Vec<_> = routes.difference(&rows).collect();
    assert!(
        missing.is_empty(),
        "routes without a row in TABLE: {missing:#?}"
    );
    let stale: Vec<_> = rows.difference(&routes).collect();
    assert!(
        stale.is_empty(),
        "rows for routes that no longer exist: {stale:#?}"
    );
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_table_says() {
    let hook = crate::support::HttpSink::start(StatusCode::OK, "ok").await;
    // Many calls here are meant to fail authentication; the per-address limit would
    // otherwise answer them (and everything after them) 429.
    let app = spawn_app_with(|settings| settings.auth.max_failures = 100_000).await;
    let shared = world(&app, &hook.url("/hook")).await;
    let mut mismatches = Vec::new();
    let mut seen = Vec::new();
    for (method, pattern, expected) in TABLE {
        let method: Method = method.parse().expect("method");
        for (index, caller) in CALLERS.iter().enumerate() {
            // A write may consume what it acts on: give each such call a world of its own.
            let own;
            let world = if method == Method::GET {
                &shared
            } else {
                own = world(&app, &hook.url("/hook")).await;
                &own
            };
            let path = world.path(pattern);
            let mut request = app.client.request(method.clone(), app.url(&path));
            if let Some(token) = world.token(*caller) {
                request = if pattern.starts_with("/alerta/") {
                    request.header("authorization", format!("Key {token}"))
                } else {
                    request.bearer_auth(token)
                };
            }
            if method == Method::DELETE && *pattern == "/api/v1/contact-points/{name}" {
                // The world's `default` policy names `hook`: without force that is a 409
                // (api::notify::a_contact_point_in_use_is_kept_unless_forced).
                request = request.query(&[("force", "true")]);
            }
            let now = tellify::clock::Clock::now(app.clock.as_ref());
            if let Some(body) = body_for(&method, pattern, &world.suffix, now) {
                request = request.json(&body);
            }
            let status = request.send().await.expect("request").status().as_u16();
            seen.push(format!("{method} {pattern} {caller:?} -> {status}"));
            if status != expected[index] {
                mismatches.push(format!(
                    "{method} {pattern} as {caller:?}: got {status}, expected {}",
                    expected[index]
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{}\n\nall:\n{}",
        mismatches.join("\n"),
        seen.join("\n")
    );
}
