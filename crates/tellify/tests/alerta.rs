//! The Alerta-compatible API against the real `alerta` CLI (PyPI package `alerta`):
//! sending, duplicates, severity changes, correlation, closing, heartbeats and bad keys,
//! each checked both in the CLI's output (Alerta's answer) and in what tellify stored.
//!
//! `scripts/test` installs the CLI into `target/alerta-venv`; `TELLIFY_ALERTA_CLI` names
//! another one. Without it the tests fail and say so.

#[allow(dead_code)]
use crate::helpers;

use std::path::PathBuf;

use helpers::{eventually, spawn_app, TestApp};
use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The `alerta` executable, or a failure that says how to get it.
fn alerta_cli() -> PathBuf {
    let path = match std::env::var_os("TELLIFY_ALERTA_CLI") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/alerta-venv/bin/alerta"
        )),
    };
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which installs the `alerta` CLI from PyPI into \
         target/alerta-venv (python3 -m venv target/alerta-venv && \
         target/alerta-venv/bin/pip install alerta), or set TELLIFY_ALERTA_CLI",
        path.display()
    );
    path
}

/// What one CLI run printed.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `alerta` against the app with `key` as its API key, isolated from the user's
/// `~/.alerta.conf` and `~/.netrc`.
async fn alerta(app: &TestApp, key: &str, args: &[&str]) -> Run {
    let home = tempfile::tempdir().expect("temp home");
    let endpoint = app.url("/alerta/api");
    let output = tokio::process::Command::new(alerta_cli())
        .arg("--endpoint-url")
        .arg(&endpoint)
        .args(args)
        .env("HOME", home.path())
        .env("ALERTA_CONF_FILE", home.path().join("alerta.conf"))
        .env("ALERTA_API_KEY", key)
        // With TERM set and stdin not a terminal, `alerta send` reads alerts from stdin.
        .env_remove("TERM")
        .env_remove("PS1")
        .stdin(std::process::Stdio::null())
        .env_remove("ALERTA_ENDPOINT")
        .env_remove("ALERTA_DEFAULT_PROFILE")
        .output()
        .await
        .expect("the alerta CLI runs");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    }
}

/// Runs `alerta` and expects it to succeed, returning what it printed.
async fn alerta_ok(app: &TestApp, key: &str, args: &[&str]) -> String {
    let run = alerta(app, key, args).await;
    assert!(
        run.success && !run.stdout.starts_with("ERROR"),
        "alerta {args:?} failed: {}{}",
        run.stdout,
        run.stderr
    );
    run.stdout
}

/// The `(id, message)` of `alerta send`'s `ID (MESSAGE)` line.
fn sent(stdout: &str) -> (String, String) {
    let (id, rest) = stdout.split_once(' ').expect("`ID (MESSAGE)`");
    let message = rest.trim_start_matches('(').trim_end_matches(')');
    (id.to_string(), message.to_string())
}

async fn events_of_type(app: &TestApp, event_type: &str) -> Vec<Value> {
    let body = app.get_json(&app.admin, "/api/v1/events?limit=100").await;
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|event| event["type"] == event_type)
        .cloned()
        .collect()
}

async fn alerta_alerts(app: &TestApp, token: &str) -> Vec<Value> {
    let mut alerts = app.alerts(token, "").await;
    alerts.retain(|alert| alert["kind"] == "alerta");
    alerts
}

const SEND_MAJOR: [&str; 13] = [
    "send",
    "-r",
    "web01",
    "-e",
    "HttpError",
    "-E",
    "Production",
    "-s",
    "major",
    "-S",
    "Web",
    "-t",
    "500 errors",
];

#[tokio::test]
async fn send_duplicate_and_close_with_the_cli() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    app.subscribe(
        &ann,
        json!({"kind": "alerta", "title": "alerta", "params": {"filter": "environment == \"Production\""}}),
    )
    .await;

    let (id, message) = sent(&alerta_ok(&app, &app.admin, &SEND_MAJOR).await);
    assert_eq!(message, "indeterminate -> major");
    app.settle().await;
    let events = events_of_type(&app, "alerta").await;
    assert_eq!(events.len(), 1);
    let fields = &events[0]["fields"];
    assert_eq!(events[0]["severity"], "critical");
    assert_eq!(events[0]["message"], "500 errors");
    assert_eq!(fields["resource"], "web01");
    assert_eq!(fields["event"], "HttpError");
    assert_eq!(fields["environment"], "Production");
    assert_eq!(fields["service"], json!(["Web"]));
    assert_eq!(fields["alerta_severity"], "major");
    assert_eq!(fields["alerta_status"], "open");
    assert_eq!(fields["alerta_id"], id.as_str());
    assert_eq!(fields["timeout"], 86400);
    let alerts = alerta_alerts(&app, &ann).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["state"], "firing");
    assert_eq!(alerts[0]["severity"], "critical");
    assert_eq!(alerts[0]["count"], 1);
    assert_eq!(
        alerts[0]["group_key"],
        "environment=Production resource=web01 event=HttpError producer=admin"
    );

    // The same alert again is a duplicate: Alerta's answer counts it, the alert too.
    let (again, message) = sent(&alerta_ok(&app, &app.admin, &SEND_MAJOR).await);
    assert_eq!(
        (again.as_str(), message.as_str()),
        (id.as_str(), "1 duplicates")
    );
    app.settle().await;
    let alerts = alerta_alerts(&app, &ann).await;
    assert_eq!((alerts.len(), &alerts[0]["count"]), (1, &json!(2)));

    // Another severity is a change, with the previous severity.
    let mut minor = SEND_MAJOR;
    minor[8] = "minor";
    let (changed, message) = sent(&alerta_ok(&app, &app.admin, &minor).await);
    assert_eq!(
        (changed.as_str(), message.as_str()),
        (id.as_str(), "major -> minor")
    );
    app.settle().await;
    let alerts = alerta_alerts(&app, &ann).await;
    assert_eq!(alerts[0]["severity"], "warning");

    // A normal severity closes it, and the tellify alert resolves.
    let mut normal = SEND_MAJOR;
    normal[8] = "normal";
    let (closed, message) = sent(&alerta_ok(&app, &app.admin, &normal).await);
    assert_eq!(
        (closed.as_str(), message.as_str()),
        (id.as_str(), "minor -> normal")
    );
    app.settle().await;
    let alerts = alerta_alerts(&app, &ann).await;
    assert_eq!(alerts[0]["state"], "resolved", "{alerts:?}");
    let events = events_of_type(&app, "alerta").await;
    assert_eq!(events[0]["fields"]["alerta_status"], "closed");

    // Another environment is another alert, which this subscription does not follow.
    let mut staging = SEND_MAJOR;
    staging[6] = "Staging";
    let (other, message) = sent(&alerta_ok(&app, &app.admin, &staging).await);
    assert_ne!(other, id);
    assert_eq!(message, "indeterminate -> major");
    app.settle().await;
    assert_eq!(alerta_alerts(&app, &ann).await.len(), 1);
}

/// Posts an alert as Alerta's clients do (`Authorization: Key`) and returns the answer's
/// `alert`.
async fn post_alert(app: &TestApp, key: &str, body: Value) -> Value {
    let response = app
        .client
        .post(app.url("/alerta/api/alert"))
        .header("authorization", format!("Key {key}"))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.expect("json");
    answer["alert"].clone()
}

#[tokio::test]
async fn one_users_post_never_continues_another_users_alert() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    app.subscribe(
        &ann,
        json!({"kind": "alerta", "title": "alerta", "params": {}}),
    )
    .await;
    let alert = |severity: &str| {
        json!({
            "resource": "web01", "event": "HttpError", "environment": "Production",
            "severity": severity, "correlate": ["HttpError", "HttpOK"],
        })
    };

    let anns = post_alert(&app, &ann, alert("major")).await;
    assert_eq!(anns["duplicateCount"], 0);
    // bob sends the same resource and event: his own new alert, not a duplicate of ann's.
    let bobs = post_alert(&app, &bob, alert("major")).await;
    assert_ne!(bobs["id"], anns["id"]);
    assert_eq!(bobs["duplicateCount"], 0);
    assert_eq!(bobs["previousSeverity"], "indeterminate");
    // His correlated `ok` closes his alert, not hers.
    let ok = json!({"resource": "web01", "event": "HttpOK", "environment": "Production", "severity": "ok"});
    let closed = post_alert(&app, &bob, ok).await;
    assert_eq!(closed["id"], bobs["id"]);
    assert_eq!(closed["status"], "closed");
    let again = post_alert(&app, &ann, alert("major")).await;
    assert_eq!(again["id"], anns["id"]);
    assert_eq!(
        again["duplicateCount"], 1,
        "ann's alert saw only ann's posts"
    );
    assert_eq!(again["status"], "open");

    // A subscription that sees both users' posts keeps their alerts apart too.
    app.settle().await;
    let mut alerts: Vec<(String, String, i64)> = alerta_alerts(&app, &ann)
        .await
        .iter()
        .map(|alert| {
            (
                alert["group_key"].as_str().unwrap_or_default().to_string(),
                alert["state"].as_str().unwrap_or_default().to_string(),
                alert["count"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    alerts.sort();
    assert_eq!(
        alerts,
        vec![
            (
                "environment=Production resource=web01 event=HttpError producer=ann".to_string(),
                "firing".to_string(),
                2
            ),
            (
                "environment=Production resource=web01 event=HttpError producer=bob".to_string(),
                "resolved".to_string(),
                1
            ),
        ]
    );
}

#[tokio::test]
async fn a_correlated_event_replaces_the_alert_and_its_ok_resolves_it() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    app.subscribe(
        &ann,
        json!({"kind": "alerta", "title": "alerta", "params": {}}),
    )
    .await;
    let send = |event: &'static str, severity: &'static str| {
        let app = &app;
        async move {
            let args = [
                "send",
                "-r",
                "db01",
                "-e",
                event,
                "-E",
                "Production",
                "-s",
                severity,
                "-C",
                "NodeDown",
                "-C",
                "NodeUp",
                "-C",
                "NodeSlow",
            ];
            let out = alerta_ok(app, &app.admin, &args).await;
            app.settle().await;
            sent(&out)
        }
    };
    let (id, _) = send("NodeDown", "critical").await;
    let (slow, message) = send("NodeSlow", "minor").await;
    assert_eq!(
        (slow.as_str(), message.as_str()),
        (id.as_str(), "critical -> minor")
    );
    let alerts = alerta_alerts(&app, &ann).await;
    assert_eq!(
        alerts.len(),
        1,
        "one alert across correlated events: {alerts:?}"
    );
    assert_eq!(alerts[0]["severity"], "warning");
    assert_eq!(alerts[0]["previous_severity"], "critical");
    assert_eq!(alerts[0]["fields"]["event"], "NodeSlow");

    let (up, message) = send("NodeUp", "ok").await;
    assert_eq!(
        (up.as_str(), message.as_str()),
        (id.as_str(), "minor -> ok")
    );
    let alerts = alerta_alerts(&app, &ann).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["state"], "resolved");
}

#[tokio::test]
async fn an_alert_expires_after_its_timeout() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    app.subscribe(
        &ann,
        json!({"kind": "alerta", "title": "alerta", "params": {}}),
    )
    .await;
    let args = [
        "send",
        "-r",
        "web02",
        "-e",
        "Slow",
        "-s",
        "warning",
        "--timeout",
        "120",
    ];
    alerta_ok(&app, &app.admin, &args).await;
    app.settle().await;
    assert_eq!(alerta_alerts(&app, &ann).await[0]["state"], "firing");
    app.advance(SignedDuration::from_secs(121)).await;
    eventually("the alert to expire", || async {
        let alerts = alerta_alerts(&app, &ann).await;
        (alerts[0]["state"] == "resolved").then_some(())
    })
    .await;
    // After the timeout the same alert starts anew.
    let (_, message) = sent(&alerta_ok(&app, &app.admin, &args).await);
    assert_eq!(message, "indeterminate -> warning");
}

#[tokio::test]
async fn heartbeats_are_stored_and_an_absence_subscription_notices_them_stop() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    app.subscribe(
        &ann,
        json!({"kind": "absence", "title": "origin1 alive", "params": {
            "filter": "event.type == \"alerta.heartbeat\" && origin == \"origin1\"",
            "interval": "5m"}}),
    )
    .await;
    let id = alerta_ok(
        &app,
        &app.admin,
        &["heartbeat", "-O", "origin1", "-T", "london"],
    )
    .await;
    app.settle().await;
    let beats = events_of_type(&app, "alerta.heartbeat").await;
    assert_eq!(beats.len(), 1);
    assert_eq!(beats[0]["id"], id.as_str());
    assert_eq!(beats[0]["fields"]["origin"], "origin1");
    assert_eq!(beats[0]["fields"]["tags"], json!(["london"]));
    assert!(app.alerts(&ann, "state=firing").await.is_empty());
    app.advance(SignedDuration::from_secs(301)).await;
    let alerts = eventually("the missing heartbeat alert", || async {
        let alerts = app.alerts(&ann, "state=firing").await;
        (!alerts.is_empty()).then_some(alerts)
    })
    .await;
    assert_eq!(alerts[0]["kind"], "absence");
}

#[tokio::test]
async fn bad_keys_and_bad_alerts_are_refused_in_alertas_shape() {
    let app = spawn_app().await;
    let run = alerta(&app, "tfy_not_a_token", &SEND_MAJOR).await;
    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stderr.contains("ERROR: unknown or revoked token"),
        "{}",
        run.stderr
    );
    let response = app
        .client
        .post(app.url("/alerta/api/alert"))
        .header("authorization", "Key tfy_not_a_token")
        .json(&json!({"resource": "web01", "event": "HttpError"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "error");
    assert_eq!(body["code"], 401);

    let run = alerta(
        &app,
        &app.admin,
        &["send", "-r", "web01", "-e", "X", "-s", "loud"],
    )
    .await;
    assert!(!run.success);
    assert!(
        run.stderr.contains("severity: `loud` is not one of"),
        "{}",
        run.stderr
    );
    // Bearer works too, and every problem is reported at once.
    let response = app
        .post(
            &app.admin,
            "/alerta/api/alert",
            json!({"tags": "x", "timeout": -1}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["message"],
        "resource: is required; event: is required; tags: must be a list of strings; \
         timeout: must be a whole number of seconds, 0 or more"
    );
    assert!(events_of_type(&app, "alerta").await.is_empty());
}

#[tokio::test]
async fn the_prefix_is_configurable() {
    let app = helpers::spawn_app_with(|settings| {
        settings.alerta.prefix = "/compat/alerta/".to_string().try_into().expect("prefix");
    })
    .await;
    let response = app
        .client
        .get(app.url("/compat/alerta/config"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["alarm_model"]["severity"]["major"], 2);
    let response = app
        .client
        .get(app.url("/alerta/api/config"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let bad: Result<tellify::config::AlertaPrefix, String> = "alerta".to_string().try_into();
    assert!(bad.is_err());
}

/// `alerta --json query` as `key` sees it, with the CLI's filter arguments.
async fn query_json(app: &TestApp, key: &str, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["--json", "query"];
    args.extend_from_slice(filters);
    let out = alerta_ok(app, key, &args).await;
    serde_json::from_str(&out).unwrap_or_else(|error| panic!("{error}: {out}"))
}

/// The tellify alert `id` as `token` sees it.
async fn tellify_alert(app: &TestApp, token: &str, id: &str) -> Value {
    app.get_json(token, &format!("/api/v1/alerts/{id}")).await
}

#[tokio::test]
async fn query_ack_shelve_unshelve_close_and_delete_with_the_cli() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    app.subscribe(
        &ann,
        json!({"kind": "alerta", "title": "alerta", "params": {}}),
    )
    .await;
    let send = |args: &'static [&'static str]| {
        let app = &app;
        let ann = ann.clone();
        async move {
            let out = alerta_ok(app, &ann, args).await;
            app.settle().await;
            sent(&out).0
        }
    };
    let web = &[
        "send",
        "-r",
        "web01",
        "-e",
        "HttpError",
        "-s",
        "major",
        "-S",
        "Web",
    ];
    let sent_web = send(web).await;
    send(web).await;
    let db = &["send", "-r", "db01", "-e", "NodeDown", "-s", "critical"];
    let sent_db = send(db).await;
    send(&["send", "-r", "db01", "-e", "NodeDown", "-s", "minor"]).await;

    let listed = query_json(&app, &ann, &[]).await;
    let by_resource = |resource: &str| -> Value {
        listed
            .iter()
            .find(|alert| alert["resource"] == resource)
            .cloned()
            .unwrap_or_else(|| panic!("{resource} not in {listed:?}"))
    };
    let web01 = by_resource("web01");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(
        (
            &web01["duplicateCount"],
            &web01["previousSeverity"],
            &web01["severity"],
            &web01["status"],
            &web01["service"],
        ),
        (
            &json!(1),
            &json!("indeterminate"),
            &json!("major"),
            &json!("open"),
            &json!(["Web"])
        )
    );
    let db01 = by_resource("db01");
    assert_eq!(
        (
            &db01["duplicateCount"],
            &db01["previousSeverity"],
            &db01["severity"]
        ),
        (&json!(0), &json!("critical"), &json!("minor"))
    );
    // The CLI's own table and detail views read the same answer.
    let table = alerta_ok(&app, &ann, &["query"]).await;
    assert!(table.contains("web01") && table.contains("db01"), "{table}");
    let full = alerta_ok(&app, &ann, &["query", "--full"]).await;
    assert!(full.contains("critical -> minor"), "{full}");
    // Filters select; a filter this API does not know is refused with what it knows.
    let only_db = query_json(&app, &ann, &["-f", "resource=db01"]).await;
    assert_eq!(only_db.len(), 1);
    assert_eq!(only_db[0]["event"], "NodeDown");
    let run = alerta(&app, &ann, &["query", "-f", "colour=red"]).await;
    assert!(
        run.stderr.contains("`colour`: not a filter of this API"),
        "{}",
        run.stderr
    );
    // Another user sees none of ann's alerts.
    assert!(query_json(&app, &bob, &[]).await.is_empty());

    let web_id = web01["id"].as_str().expect("id").to_string();
    let db_id = db01["id"].as_str().expect("id").to_string();
    // bob's actions on ann's alert change nothing (the CLI skips the 404) ...
    alerta_ok(&app, &bob, &["ack", "-i", &web_id]).await;
    assert_eq!(tellify_alert(&app, &ann, &web_id).await["acked"], false);
    let response = app
        .client
        .put(app.url(&format!("/alerta/api/alert/{web_id}/action")))
        .header("authorization", format!("Key {bob}"))
        .json(&json!({"action": "ack"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "error");

    // ... while ann's act, by the short id the table shows.
    alerta_ok(&app, &ann, &["ack", "-i", &web_id[..8], "--text", "on it"]).await;
    let acked = tellify_alert(&app, &ann, &web_id).await;
    assert_eq!(
        (&acked["acked"], &acked["ack_note"]),
        (&json!(true), &json!("on it"))
    );
    assert_eq!(
        query_json(&app, &ann, &["-i", &web_id]).await[0]["status"],
        "ack"
    );

    alerta_ok(&app, &ann, &["shelve", "-i", &db_id, "--timeout", "600"]).await;
    let shelved = tellify_alert(&app, &ann, &db_id).await;
    let until: jiff::Timestamp = shelved["shelved_until"]
        .as_str()
        .expect("shelved_until")
        .parse()
        .expect("time");
    let now = tellify::clock::Clock::now(app.clock.as_ref());
    assert_eq!(until, now + SignedDuration::from_secs(600));
    assert_eq!(
        query_json(&app, &ann, &["-f", "resource=db01"]).await[0]["status"],
        "shelved"
    );
    alerta_ok(&app, &ann, &["unshelve", "-i", &db_id]).await;
    assert_eq!(
        tellify_alert(&app, &ann, &db_id).await["shelved_until"],
        Value::Null
    );
    // Acting on what a filter selects asks for the count first, then the alerts.
    alerta_ok(
        &app,
        &ann,
        &["shelve", "-f", "resource=db01", "--timeout", "60"],
    )
    .await;
    assert_ne!(
        tellify_alert(&app, &ann, &db_id).await["shelved_until"],
        Value::Null
    );
    assert_eq!(
        tellify_alert(&app, &ann, &web_id).await["shelved_until"],
        Value::Null
    );
    alerta_ok(&app, &ann, &["unshelve", "-f", "resource=db01"]).await;
    assert_eq!(
        tellify_alert(&app, &ann, &db_id).await["shelved_until"],
        Value::Null
    );

    // `close` with the id `alerta send` printed clears the alert it names.
    assert_ne!(sent_web, web_id);
    alerta_ok(&app, &ann, &["close", "-i", &sent_web]).await;
    let closed = tellify_alert(&app, &ann, &web_id).await;
    assert_eq!(
        (&closed["cleared"], &closed["state"]),
        (&json!(true), &json!("resolved"))
    );
    let left = query_json(&app, &ann, &[]).await;
    assert_eq!(left.len(), 1, "a closed alert leaves the list: {left:?}");

    // `delete` clears too, and deleting again still succeeds.
    alerta_ok(&app, &ann, &["delete", "-i", &sent_db]).await;
    assert_eq!(tellify_alert(&app, &ann, &db_id).await["cleared"], true);
    assert!(query_json(&app, &ann, &[]).await.is_empty());
    for _ in 0..2 {
        let response = app
            .client
            .delete(app.url(&format!("/alerta/api/alert/{db_id}")))
            .header("authorization", format!("Key {ann}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = app
        .client
        .delete(app.url("/alerta/api/alert/nothing-of-that-name"))
        .header("authorization", format!("Key {ann}"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app
        .client
        .put(app.url(&format!("/alerta/api/alert/{db_id}/action")))
        .header("authorization", format!("Key {ann}"))
        .json(&json!({"action": "explode"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["message"],
        "action: `explode` is not one of ack, shelve, unshelve, close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_of_one_alert_count_every_duplicate() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let mut posts = tokio::task::JoinSet::new();
    for copy in 0..8 {
        // Half the copies of one alert, half each an alert of its own.
        let resource = if copy % 2 == 0 {
            "web01".to_string()
        } else {
            format!("host{copy}")
        };
        let client = app.client.clone();
        let url = app.url("/alerta/api/alert");
        let ann = ann.clone();
        posts.spawn(async move {
            let response = client
                .post(url)
                .header("authorization", format!("Key {ann}"))
                .json(&json!({"resource": resource, "event": "HttpError", "severity": "major"}))
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), StatusCode::OK);
            let answer: Value = response.json().await.expect("json");
            answer["alert"].clone()
        });
    }
    let mut web01_counts = Vec::new();
    let mut web01_ids = std::collections::BTreeSet::new();
    let mut others = Vec::new();
    while let Some(alert) = posts.join_next().await {
        let alert = alert.expect("post");
        if alert["resource"] == "web01" {
            web01_counts.push(alert["duplicateCount"].as_u64().expect("count"));
            web01_ids.insert(alert["id"].as_str().expect("id").to_string());
        } else {
            others.push(alert["duplicateCount"].as_u64().expect("count"));
        }
    }
    web01_counts.sort();
    assert_eq!(
        web01_counts,
        vec![0, 1, 2, 3],
        "each copy of one alert sent at once counts once"
    );
    assert_eq!(web01_ids.len(), 1, "all copies continue one alert");
    assert_eq!(others, vec![0, 0, 0, 0]);
}
