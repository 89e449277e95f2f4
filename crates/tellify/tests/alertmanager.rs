//! The Alertmanager API v2 against the real tools: a real Prometheus (Debian's
//! `prometheus`) names tellify as its Alertmanager, and `amtool` (from
//! `prometheus-alertmanager`) lists alerts and adds, queries and expires silences. Plus
//! the same API over plain HTTP: resolving by `endsAt`, bad input, missing tokens.
//!
//! The tools are started by the tests; `scripts/test` installs them. Without them the
//! tests fail and say so.

#[allow(dead_code)]
use crate::helpers;
use crate::support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use helpers::{problem, spawn_app, TestApp};
use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const AMTOOL: &str = "/usr/bin/amtool";

/// The path of a tool the test needs, or a failure that says how to get it.
fn tool(path: &'static str, package: &str) -> &'static str {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run scripts/test, which installs Debian's `{package}` package \
         (or `apt-get install {package}`)"
    );
    path
}

/// A child process that is killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server on a manual clock set to the real time, since the tools stamp their alerts
/// and silences with it.
async fn spawn_real_time_app() -> TestApp {
    let app = spawn_app().await;
    app.clock.set(Timestamp::now());
    app
}

/// Polls `check` for up to `seconds`, for waits on external processes.
async fn within<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {seconds}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post_alerts(app: &TestApp, token: &str, alerts: Value) -> reqwest::Response {
    app.post(token, "/api/v2/alerts", alerts).await
}

async fn am_alerts(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let body = app
        .get_json(token, &format!("/api/v2/alerts?{query}"))
        .await;
    body.as_array().expect("an array of alerts").clone()
}

// Multi-threaded: the server runs in this process while the test waits on the tools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sends_its_alerts_and_a_subscription_fires() {
    let prometheus = tool(PROMETHEUS, "prometheus");
    let app = spawn_real_time_app().await;
    let subscription = app
        .subscribe(
            &app.admin,
            json!({"kind": "alertmanager", "title": "prometheus",
                   "params": {"filter": "alertname == \"TellifyAlwaysFiring\""}}),
        )
        .await;
    let address = app.base.trim_start_matches("http://").to_string();
    let directory = tempfile::tempdir().expect("temp dir");
    let config = directory.path().join("prometheus.yml");
    std::fs::write(
        directory.path().join("rules.yml"),
        "groups:\n- name: tellify\n  interval: 1s\n  rules:\n  - alert: TellifyAlwaysFiring\n    \
         expr: vector(1)\n    for: 0s\n    labels:\n      severity: critical\n    \
         annotations:\n      summary: always firing\n",
    )
    .expect("write rules");
    std::fs::write(
        &config,
        format!(
            "global:\n  evaluation_interval: 1s\n  scrape_interval: 1m\n\
             rule_files: [rules.yml]\n\
             alerting:\n  alertmanagers:\n  - api_version: v2\n    authorization:\n      \
             credentials: {token}\n    static_configs:\n    - targets: ['{address}']\n",
            token = app.admin
        ),
    )
    .expect("write config");
    let log = std::fs::File::create(directory.path().join("prometheus.log")).expect("log file");
    let _prometheus = Running(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            // Its first send can come before it has found its Alertmanager; resend soon
            // instead of after the default minute.
            .arg("--rules.alert.resend-delay=1s")
            .arg(format!(
                "--storage.tsdb.path={}",
                directory.path().join("data").display()
            ))
            .arg(format!(
                "--web.listen-address=127.0.0.1:{}",
                support::free_port()
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts"),
    );

    let log_path = directory.path().join("prometheus.log");
    let alert = within(60, "the Prometheus alert to fire in tellify", || async {
        let alerts = app.alerts(&app.admin, "state=firing").await;
        let found = alerts
            .into_iter()
            .find(|alert| alert["subscription_id"] == subscription.as_str());
        if found.is_none() {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            assert!(
                !text.contains("level=error"),
                "prometheus reported an error:\n{text}"
            );
        }
        found
    })
    .await;
    assert_eq!(alert["kind"], "alertmanager");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["message"], "always firing");
    assert_eq!(
        alert["group_key"],
        "alertname=TellifyAlwaysFiring severity=critical"
    );

    // The alert is an ordinary, searchable event sent by the token's user.
    let events = app
        .get_json(
            &app.admin,
            "/api/v1/events?filter=event.type%20%3D%3D%20%22alertmanager%22",
        )
        .await;
    let event = &events["items"][0];
    assert_eq!(event["fields"]["alertname"], "TellifyAlwaysFiring");
    assert_eq!(event["source"]["producer"], "admin");
    assert_eq!(event["fields"]["alertmanager"]["status"], "firing");
    assert!(event["fields"]["alertmanager"]["generator_url"]
        .as_str()
        .is_some_and(|url| url.contains("/graph")));
    // Prometheus always sends endsAt for a firing alert: a few evaluation intervals ahead.
    let ends_at: Timestamp = event["fields"]["alertmanager"]["ends_at"]
        .as_str()
        .expect("ends_at")
        .parse()
        .expect("a time");
    assert!(ends_at > app.clock_now());

    let listed = am_alerts(&app, &app.admin, "").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["labels"]["alertname"], "TellifyAlwaysFiring");
    assert_eq!(listed[0]["status"]["state"], "active");
}

/// Runs amtool against the app with the token in an `http_config` file.
fn amtool(app: &TestApp, http_config: &Path, args: &[&str]) -> Output {
    let output = Command::new(tool(AMTOOL, "prometheus-alertmanager"))
        .arg(format!("--alertmanager.url={}", app.base))
        .arg(format!("--http.config.file={}", http_config.display()))
        .args(args)
        .output()
        .expect("amtool runs");
    assert!(
        output.status.success(),
        "amtool {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_lists_alerts_and_adds_queries_and_expires_silences() {
    tool(AMTOOL, "prometheus-alertmanager");
    let app = spawn_real_time_app().await;
    let ann = app.user("ann").await;
    let now = app.clock_now();
    let response = post_alerts(
        &app,
        &ann,
        json!([{"labels": {"alertname": "DiskFull", "instance": "cad:9100"},
                "annotations": {"summary": "disk /sarc is full"},
                "startsAt": now.to_string(), "endsAt": (now + SignedDuration::from_mins(5)).to_string()}]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let directory = tempfile::tempdir().expect("temp dir");
    let http_config = directory.path().join("http.yml");
    std::fs::write(
        &http_config,
        format!("authorization:\n  credentials: {ann}\n"),
    )
    .expect("write http config");
    let run = |args: &[&str]| amtool(&app, &http_config, args);

    let listed = stdout(&run(&["alert", "query"]));
    assert!(
        listed.contains("DiskFull") && listed.contains("disk /sarc is full"),
        "{listed}"
    );
    let extended = stdout(&run(&[
        "-o",
        "json",
        "alert",
        "query",
        "alertname=DiskFull",
    ]));
    let alerts: Value = serde_json::from_str(&extended).expect("amtool prints JSON");
    assert_eq!(alerts[0]["labels"]["instance"], "cad:9100");
    assert!(
        stdout(&run(&["alert", "query", "alertname=Other"]))
            .lines()
            .count()
            <= 1
    );

    let added = run(&[
        "silence",
        "add",
        "alertname=DiskFull",
        "instance=~cad.*",
        "--comment",
        "cleaning up",
        "--duration",
        "1h",
    ]);
    let id = stdout(&added).trim().to_string();
    assert!(!id.is_empty() && !id.contains(' '), "silence id: {id:?}");

    // It is ann's tellify silence, in the canonical filter form.
    let silences = app.get_json(&ann, "/api/v1/silences").await;
    assert_eq!(silences["items"][0]["id"], id.as_str());
    assert_eq!(
        silences["items"][0]["filter"],
        "alertname == \"DiskFull\" && instance.matches(\"^(?:cad.*)$\")"
    );
    let queried = stdout(&run(&["silence", "query"]));
    assert!(
        queried.contains(&id) && queried.contains("cleaning up"),
        "{queried}"
    );
    let quiet = stdout(&run(&["silence", "query", "-q", "alertname=DiskFull"]));
    assert_eq!(quiet.trim(), id);
    // amtool starts the silence at its own "now", which the manual clock has not reached.
    app.clock
        .set(Timestamp::now() + SignedDuration::from_secs(1));
    let alerts = am_alerts(&app, &ann, "").await;
    assert_eq!(alerts[0]["status"]["state"], "suppressed");
    assert_eq!(alerts[0]["status"]["silencedBy"], json!([id]));
    assert!(am_alerts(&app, &ann, "silenced=false").await.is_empty());

    run(&["silence", "expire", &id]);
    let queried = stdout(&run(&["silence", "query", "-q"]));
    assert!(!queried.contains(&id), "{queried}");
    let alerts = am_alerts(&app, &ann, "").await;
    assert_eq!(alerts[0]["status"]["state"], "active");

    let status = stdout(&run(&["config", "show"]));
    assert!(status.contains("receiver: tellify"), "{status}");
}

#[tokio::test]
async fn alerts_fire_and_resolve_by_ends_at_and_bad_input_stores_nothing() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    app.subscribe(
        &ann,
        json!({"kind": "alertmanager", "title": "disks",
               "params": {"filter": "alertname == \"DiskFull\""}}),
    )
    .await;
    let now = app.clock_now();
    let alert = |ends_at: Timestamp| {
        json!([{"labels": {"alertname": "DiskFull", "instance": "cad", "severity": "warning"},
                "annotations": {"summary": "disk full"},
                "startsAt": now.to_string(), "endsAt": ends_at.to_string(),
                "generatorURL": "http://prometheus/graph"}])
    };

    // No token, a wrong token, a token without the needed scope.
    let response = app
        .client
        .post(app.url("/api/v2/alerts"))
        .json(&alert(now))
        .send()
        .await
        .expect("request");
    let (status, _) = problem(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = problem(app.get("tfy_nope", "/api/v2/alerts").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = problem(app.get("", "/api/v2/status").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A bad batch is rejected whole, naming the alert and field.
    let response = post_alerts(
        &app,
        &ann,
        json!([{"labels": {"alertname": "DiskFull"}},
               {"labels": {"alertname": 7}, "endsAt": "soon"}]),
    )
    .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let places: Vec<(Value, Value)> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|error| (error["index"].clone(), error["field"].clone()))
        .collect();
    assert_eq!(
        places,
        vec![
            (json!(1), json!("labels.alertname")),
            (json!(1), json!("endsAt"))
        ]
    );
    let response = app
        .post_raw(&ann, "/api/v2/alerts", "application/json", "[{".to_string())
        .await;
    assert_eq!(problem(response).await.0, StatusCode::BAD_REQUEST);
    app.settle().await;
    let events = app.get_json(&ann, "/api/v1/events").await;
    assert_eq!(
        events["items"],
        json!([]),
        "nothing stored from bad batches"
    );

    // Firing: endsAt ahead.
    let response = post_alerts(&app, &ann, alert(now + SignedDuration::from_mins(5))).await;
    assert_eq!(response.status(), StatusCode::OK);
    app.settle().await;
    let alerts = app.alerts(&ann, "state=firing").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["severity"], "warning");
    assert_eq!(
        alerts[0]["group_key"],
        "alertname=DiskFull instance=cad severity=warning"
    );
    let listed = am_alerts(&app, &ann, "filter=alertname%3D%22DiskFull%22").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["fingerprint"].as_str().map(str::len), Some(16));
    assert_eq!(listed[0]["receivers"], json!([{"name": "tellify"}]));
    assert_eq!(listed[0]["generatorURL"], "http://prometheus/graph");
    assert!(am_alerts(&app, &ann, "filter=alertname%3D~%22Disk%22")
        .await
        .is_empty());

    // Resolved: Prometheus sends endsAt in the past.
    app.advance(SignedDuration::from_secs(30)).await;
    let response = post_alerts(&app, &ann, alert(now)).await;
    assert_eq!(response.status(), StatusCode::OK);
    app.settle().await;
    let alerts = app.alerts(&ann, "").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["state"], "resolved");
    assert!(am_alerts(&app, &ann, "").await.is_empty());

    // Firing again, then silent: resolves when its endsAt passes, by the engine's timer.
    let response = post_alerts(
        &app,
        &ann,
        alert(app.clock_now() + SignedDuration::from_mins(4)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    app.settle().await;
    assert_eq!(app.alerts(&ann, "state=firing").await.len(), 1);
    app.advance(SignedDuration::from_mins(5)).await;
    helpers::eventually("the alert to resolve at its endsAt", || async {
        app.alerts(&ann, "state=firing")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(am_alerts(&app, &ann, "").await.is_empty());

    let status = app.get_json(&ann, "/api/v2/status").await;
    assert_eq!(status["cluster"]["status"], "ready");
}

#[tokio::test]
async fn silences_map_onto_the_callers_tellify_silences() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    let now = app.clock_now();
    let body = json!({
        "matchers": [{"name": "alertname", "value": "DiskFull", "isRegex": false, "isEqual": true},
                     {"name": "env", "value": "dev.*", "isRegex": true, "isEqual": false}],
        "startsAt": now.to_string(),
        "endsAt": (now + SignedDuration::from_hours(1)).to_string(),
        "createdBy": "ann", "comment": "maintenance"});
    let response = app.post(&ann, "/api/v2/silences", body.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.json::<Value>().await.expect("json")["silenceID"]
        .as_str()
        .expect("silenceID")
        .to_string();

    let listed = app.get_json(&ann, "/api/v2/silences").await;
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["matchers"], body["matchers"]);
    assert_eq!(listed[0]["status"]["state"], "active");
    assert_eq!(listed[0]["createdBy"], "ann");
    assert_eq!(app.get_json(&bob, "/api/v2/silences").await, json!([]));
    let (status, _) = problem(app.get(&bob, &format!("/api/v2/silence/{id}")).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "someone else's silence");
    let filtered = app
        .get_json(&ann, "/api/v2/silences?filter=alertname%3DOther")
        .await;
    assert_eq!(filtered, json!([]));

    // Replacing by id keeps the id; a silence that has ended shows as expired.
    let mut replaced = body.clone();
    replaced["id"] = json!(id);
    replaced["endsAt"] = json!((now + SignedDuration::from_mins(10)).to_string());
    let response = app.post(&ann, "/api/v2/silences", replaced).await;
    assert_eq!(response.status(), StatusCode::OK);
    app.advance(SignedDuration::from_mins(11)).await;
    let one = app.get_json(&ann, &format!("/api/v2/silence/{id}")).await;
    assert_eq!(one["status"]["state"], "expired");

    let mut bad = body.clone();
    bad["matchers"] = json!([]);
    bad["endsAt"] = json!("tomorrow");
    let (status, problem_body) = problem(app.post(&ann, "/api/v2/silences", bad).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let detail = problem_body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("matchers") && detail.contains("endsAt"),
        "{detail}"
    );

    let response = app
        .client
        .delete(app.url(&format!("/api/v2/silence/{id}")))
        .bearer_auth(&ann)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.get_json(&ann, "/api/v2/silences").await, json!([]));
}

trait ClockNow {
    fn clock_now(&self) -> Timestamp;
}

impl ClockNow for TestApp {
    fn clock_now(&self) -> Timestamp {
        use tellify::clock::Clock;
        self.clock.now()
    }
}

#[tokio::test]
async fn alert_groups_and_receivers_have_alertmanagers_shapes() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let now = app.clock_now();
    let later = (now + SignedDuration::from_mins(30)).to_string();
    let alert = |name: Option<&str>, instance: &str| {
        let mut labels = json!({"instance": instance, "severity": "critical"});
        if let Some(name) = name {
            labels["alertname"] = json!(name);
        }
        json!({"labels": labels, "annotations": {"summary": format!("{instance} down")},
               "startsAt": now.to_string(), "endsAt": later})
    };
    let response = post_alerts(
        &app,
        &app.admin,
        json!([
            alert(Some("NodeDown"), "cad"),
            alert(Some("DiskFull"), "cad"),
            alert(Some("NodeDown"), "sarc"),
            alert(None, "lone"),
        ]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    // A re-send is the same alert: still one entry, with the newer copy's time.
    app.advance(SignedDuration::from_secs(60)).await;
    let response = post_alerts(&app, &app.admin, json!([alert(Some("NodeDown"), "cad")])).await;
    assert_eq!(response.status(), StatusCode::OK);

    let groups = app.get_json(&ann, "/api/v2/alerts/groups").await;
    let groups = groups.as_array().expect("an array of alert groups");
    let summary: Vec<(Value, Vec<&str>)> = groups
        .iter()
        .map(|group| {
            assert_eq!(group["receiver"], json!({"name": "tellify"}));
            let mut instances: Vec<&str> = group["alerts"]
                .as_array()
                .expect("alerts")
                .iter()
                .map(|alert| alert["labels"]["instance"].as_str().expect("instance"))
                .collect();
            instances.sort();
            (group["labels"].clone(), instances)
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (json!({}), vec!["lone"]),
            (json!({"alertname": "DiskFull"}), vec!["cad"]),
            (json!({"alertname": "NodeDown"}), vec!["cad", "sarc"]),
        ]
    );
    // Each alert in a group is a full gettableAlert, as in `/api/v2/alerts`.
    let node_down = &groups[2]["alerts"];
    let cad = node_down
        .as_array()
        .expect("alerts")
        .iter()
        .find(|alert| alert["labels"]["instance"] == "cad")
        .expect("cad");
    for key in [
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "updatedAt",
        "generatorURL",
        "fingerprint",
        "receivers",
        "status",
    ] {
        assert!(cad.get(key).is_some(), "{key} missing in {cad}");
    }
    assert_eq!(cad["updatedAt"], app.clock_now().to_string());
    assert_eq!(
        cad["status"],
        json!({"state": "active", "silencedBy": [], "inhibitedBy": []})
    );
    assert_eq!(cad["receivers"], json!([{"name": "tellify"}]));

    // The same filters as `/api/v2/alerts`.
    let filtered = app
        .get_json(&ann, "/api/v2/alerts/groups?filter=instance%3D%22sarc%22")
        .await;
    assert_eq!(filtered.as_array().map(Vec::len), Some(1));
    assert_eq!(filtered[0]["labels"], json!({"alertname": "NodeDown"}));
    let (status, body) = problem(app.get(&ann, "/api/v2/alerts/groups?filter=1bad").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let receivers = app.get_json(&ann, "/api/v2/receivers").await;
    assert_eq!(receivers, json!([{"name": "tellify"}]));
    let (status, _) = problem(app.get("", "/api/v2/receivers").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = problem(app.get("tfy_nope", "/api/v2/alerts/groups").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
