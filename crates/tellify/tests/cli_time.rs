//! Times on the command line: every table and `tellify tail` show times in the caller's
//! zone, named by its abbreviation; `TELLIFY_TZ` overrides it; `--json` keeps the server's
//! RFC 3339. The server runs in-process on the injected clock (so the times are known);
//! the CLI is the real binary, run the way a person runs it.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::{eventually, spawn_app, TestApp};
use crate::support::HttpSink;

const BIN: &str = env!("CARGO_BIN_EXE_tellify");
/// Longest any single CLI call may take before the test fails instead of hanging.
const CALL_LIMIT: Duration = Duration::from_secs(10);

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

/// The CLI as `token`, against `app`, with this machine's zone pinned to UTC (so only
/// the caller's zone or `TELLIFY_TZ` can move a time) and `env` on top.
fn cli(app: &TestApp, token: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TELLIFY_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .env("TELLIFY_SERVER", &app.base)
        .env("TELLIFY_TOKEN", token)
        .env("TZ", "UTC")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn run(app: &TestApp, token: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = cli(app, token, args, env).spawn().expect("start the cli");
    let output = tokio::time::timeout(CALL_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`tellify {}` hung", args.join(" ")))
        .expect("wait for the cli");
    Output {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs a command that must succeed and returns its stdout.
async fn ok(app: &TestApp, token: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = run(app, token, args, env).await;
    assert!(
        output.success,
        "`tellify {}` failed:\n{}",
        args.join(" "),
        output.stderr
    );
    output.stdout
}

fn line_with<'a>(text: &'a str, parts: &[&str]) -> &'a str {
    text.lines()
        .find(|line| parts.iter().all(|part| line.contains(part)))
        .unwrap_or_else(|| panic!("no line with {parts:?} in:\n{text}"))
}

/// How many `GET /api/v1/users/me` the server has answered (from `/metrics`).
async fn me_lookups(app: &TestApp) -> u64 {
    let metrics = app.metrics().await;
    metrics
        .lines()
        .filter(|line| line.contains("_count") && line.contains("/users/me\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn builds_subscription(app: &TestApp, token: &str) {
    app.subscribe(
        token,
        json!({"kind": "match", "title": "builds",
               "params": {"filter": "status == \"fail\"", "group_by": ["block"]}}),
    )
    .await;
}

/// A fresh user with `timezone` and a `user` token for them.
async fn user_in(app: &TestApp, name: &str, timezone: &str) -> String {
    let response = app
        .post(
            &app.admin,
            "/api/v1/users",
            json!({"name": name, "timezone": timezone}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED, "create {name}");
    let response = app
        .post(
            &app.admin,
            "/api/v1/tokens",
            json!({"name": "cli", "scopes": ["user"], "user": name}),
        )
        .await;
    let body: Value = response.json().await.expect("json");
    body["token"].as_str().expect("token").to_string()
}

#[tokio::test]
async fn alert_tables_show_the_callers_own_zone_named_across_the_dst_change() {
    let app = spawn_app().await;
    let ann = app.user("ann").await; // Europe/Berlin
    builds_subscription(&app, &ann).await;
    // 22:30 UTC in November is 23:30 in Berlin (CET); 12:05 UTC in July is 14:05 (CEST).
    app.clock.set("2026-11-23T22:30:00Z".parse().expect("time"));
    app.send_lines(&ann, "block:winter status:fail").await;
    app.clock.set("2027-07-01T12:05:00Z".parse().expect("time"));
    app.send_lines(&ann, "block:summer status:fail").await;

    let before = me_lookups(&app).await;
    let table = ok(&app, &ann, &["alerts", "list"], &[]).await;
    assert!(
        line_with(&table, &["block=winter"]).contains("2026-11-23 23:30:00 CET "),
        "{table}"
    );
    assert!(
        line_with(&table, &["block=summer"]).contains("2027-07-01 14:05:00 CEST "),
        "{table}"
    );
    assert!(
        !table.contains("UTC"),
        "nothing in this machine's zone: {table}"
    );
    assert!(
        !table.lines().next().unwrap_or_default().contains("OWNER"),
        "a user's list is their own: {table}"
    );
    assert_eq!(
        me_lookups(&app).await,
        before + 1,
        "one lookup of the caller per command"
    );

    let listed: Value =
        serde_json::from_str(&ok(&app, &ann, &["alerts", "list", "--json"], &[]).await)
            .expect("json");
    let winter = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|alert| alert["group_key"] == "block=winter")
        .expect("the winter alert")
        .clone();
    assert_eq!(winter["first_seen"], "2026-11-23T22:30:00Z", "{winter}");
    assert_eq!(winter["last_seen"], "2026-11-23T22:30:00Z", "{winter}");

    let id = winter["id"].as_str().expect("id");
    let shown = ok(&app, &ann, &["alerts", "get", id], &[]).await;
    assert!(
        line_with(&shown, &["first seen"]).ends_with("2026-11-23 23:30:00 CET"),
        "{shown}"
    );
    assert!(
        line_with(&shown, &["tellify", "fired"]).contains("2026-11-23 23:30:00 CET"),
        "history: {shown}"
    );

    // TELLIFY_TZ wins over the caller's zone; a command that needs nothing else of the
    // caller then asks nobody (alerts still ask whether the caller is an admin).
    let new_york = [("TELLIFY_TZ", "America/New_York")];
    let shown = ok(&app, &ann, &["alerts", "get", id], &new_york).await;
    assert!(
        line_with(&shown, &["first seen"]).ends_with("2026-11-23 17:30:00 EST"),
        "{shown}"
    );
    let before = me_lookups(&app).await;
    ok(&app, &ann, &["policies", "list"], &new_york).await;
    assert_eq!(me_lookups(&app).await, before);
    ok(&app, &ann, &["policies", "list"], &[]).await;
    assert_eq!(me_lookups(&app).await, before + 1);
    let table = ok(&app, &ann, &["alerts", "list"], &new_york).await;
    assert!(
        line_with(&table, &["block=summer"]).contains("2027-07-01 08:05:00 EDT "),
        "{table}"
    );

    let refused = run(
        &app,
        &ann,
        &["alerts", "list"],
        &[("TELLIFY_TZ", "Mars/Olympus")],
    )
    .await;
    assert!(!refused.success);
    assert!(
        refused
            .stderr
            .contains("TELLIFY_TZ: `Mars/Olympus` is not a time zone"),
        "{}",
        refused.stderr
    );

    // Someone in Kolkata sees the same moment on their own clock.
    let ravi = user_in(&app, "ravi", "Asia/Kolkata").await;
    builds_subscription(&app, &ravi).await;
    app.send_lines(&ravi, "block:monsoon status:fail").await;
    let table = ok(&app, &ravi, &["alerts", "list"], &[]).await;
    assert!(
        line_with(&table, &["block=monsoon"]).contains("2027-07-01 17:35:00 IST "),
        "{table}"
    );
}

#[tokio::test]
async fn an_admins_alert_list_says_whose_each_alert_is() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    // Each watches their own block, so each alert has one owner.
    for (token, block) in [(&ann, "gc_t"), (&bob, "gc_u")] {
        app.subscribe(
            token,
            json!({"kind": "match", "title": "builds",
                   "params": {"filter": format!("block == \"{block}\""), "group_by": ["block"]}}),
        )
        .await;
    }
    app.send_lines(&ann, "block:gc_t status:fail").await;
    app.send_lines(&bob, "block:gc_u status:fail").await;

    let table = ok(&app, &app.admin, &["alerts", "list"], &[]).await;
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.contains("LAST SEEN") && header.contains("  OWNER  ") && header.contains("TITLE"),
        "{table}"
    );
    // The column sits between the time and the title.
    let cells_of = |group: &str| -> Vec<String> {
        line_with(&table, &[group])
            .split("  ")
            .map(str::trim)
            .filter(|cell| !cell.is_empty())
            .map(str::to_string)
            .collect()
    };
    let ann_row = cells_of("block=gc_t");
    let owner = ann_row
        .iter()
        .position(|cell| cell == "ann")
        .expect("owner cell");
    assert!(
        ann_row[owner - 1].ends_with(" UTC") && ann_row[owner + 1] == "builds",
        "{table}"
    );
    let bob_row = cells_of("block=gc_u");
    let owner = bob_row
        .iter()
        .position(|cell| cell == "bob")
        .expect("owner cell");
    assert_eq!(bob_row[owner + 1], "builds", "{table}");
    // The admin's own zone is UTC (the default), so the server's 09:00 stays 09:00.
    assert!(
        line_with(&table, &["block=gc_t"]).contains("2026-11-23 09:00:00 UTC"),
        "{table}"
    );

    let id = ann_row[0].clone();
    let shown = ok(&app, &app.admin, &["alerts", "get", &id], &[]).await;
    assert!(line_with(&shown, &["owner"]).ends_with("  ann"), "{shown}");
    let shown = ok(&app, &ann, &["alerts", "get", &id], &[]).await;
    assert!(!shown.contains("owner"), "{shown}");

    let own = ok(&app, &ann, &["alerts", "list"], &[]).await;
    assert!(
        !own.contains("OWNER") && !own.contains("block=gc_u"),
        "{own}"
    );
}

#[tokio::test]
async fn deliveries_silences_contacts_policies_and_tail_show_the_callers_zone() {
    let hook = HttpSink::start(StatusCode::OK, "ok").await;
    let app = spawn_app().await;
    let ann = app.user("ann").await; // Europe/Berlin
    app.clock.set("2026-11-23T22:30:00Z".parse().expect("time"));
    let hook_url = hook.url("/hook");
    ok(
        &app,
        &ann,
        &[
            "contacts",
            "create",
            "hook",
            "--kind",
            "webhook",
            "--address",
            &hook_url,
        ],
        &[],
    )
    .await;
    ok(
        &app,
        &ann,
        &["policies", "set", "default", "--contact", "hook"],
        &[],
    )
    .await;
    builds_subscription(&app, &ann).await;

    let contacts = ok(&app, &ann, &["contacts", "list"], &[]).await;
    assert!(
        line_with(&contacts, &["hook", "webhook"]).contains("2026-11-23 23:30:00 CET"),
        "{contacts}"
    );
    let policies = ok(&app, &ann, &["policies", "list"], &[]).await;
    assert!(
        line_with(&policies, &["default"]).contains("2026-11-23 23:30:00 CET"),
        "{policies}"
    );

    // `tail` follows the stream and prints each alert change on the caller's clock.
    let mut tail = cli(&app, &ann, &["tail", "--alerts-only", "--count", "1"], &[])
        .spawn()
        .expect("start tail");
    let mut stderr = BufReader::new(tail.stderr.take().expect("stderr")).lines();
    tokio::time::timeout(CALL_LIMIT, async {
        while let Some(line) = stderr.next_line().await.expect("stderr line") {
            if line.contains("connected") {
                return;
            }
        }
        panic!("tail ended before it connected");
    })
    .await
    .expect("tail connects");
    app.send_lines(&ann, "block:gc_t status:fail").await;
    let tailed = tokio::time::timeout(CALL_LIMIT, tail.wait_with_output())
        .await
        .expect("tail ends after one item")
        .expect("tail output");
    let tailed = String::from_utf8_lossy(&tailed.stdout).into_owned();
    assert!(tailed.starts_with("2026-11-23 23:30:00 CET  "), "{tailed}");
    assert!(tailed.contains("builds"), "{tailed}");

    app.app.state.notifier.wake();
    eventually("the webhook", || async {
        (!hook.requests().is_empty()).then_some(())
    })
    .await;
    let delivery = eventually("a sent delivery", || async {
        let page = app.get_json(&ann, "/api/v1/deliveries").await;
        let first = page["items"][0].clone();
        (first["status"] == "sent").then_some(first)
    })
    .await;
    let deliveries = ok(&app, &ann, &["deliveries", "list"], &[]).await;
    assert!(
        line_with(&deliveries, &["sent", "hook"]).contains("2026-11-23 23:30:00 CET"),
        "{deliveries}"
    );
    let id = delivery["id"].as_str().expect("id");
    let shown = ok(&app, &ann, &["deliveries", "get", id], &[]).await;
    assert!(
        line_with(&shown, &["created"]).ends_with("2026-11-23 23:30:00 CET"),
        "{shown}"
    );
    assert!(
        line_with(&shown, &["sent  "]).ends_with("2026-11-23 23:30:00 CET"),
        "{shown}"
    );

    // A silence for two hours from 23:30 CET ends at 01:30 CET the next day.
    let created = ok(
        &app,
        &ann,
        &[
            "silences",
            "create",
            "--filter",
            "block == \"gc_t\"",
            "--ends",
            "2h",
        ],
        &[],
    )
    .await;
    assert!(
        created.contains("from 2026-11-23 23:30:00 CET until 2026-11-24 01:30:00 CET"),
        "{created}"
    );
    let silences = ok(&app, &ann, &["silences", "list"], &[]).await;
    assert!(
        line_with(&silences, &["gc_t"])
            .contains("2026-11-23 23:30:00 CET  2026-11-24 01:30:00 CET"),
        "{silences}"
    );
    let listed: Value =
        serde_json::from_str(&ok(&app, &ann, &["silences", "list", "--json"], &[]).await)
            .expect("json");
    assert_eq!(
        listed["items"][0]["ends"], "2026-11-24T00:30:00Z",
        "{listed}"
    );
}

#[tokio::test]
async fn users_tokens_subscriptions_and_the_audit_show_the_callers_zone() {
    let app = spawn_app().await;
    // The injected clock stands at a winter time: 22:30 UTC is 07:30 the next day in Tokyo.
    app.clock.set("2026-11-23T22:30:00Z".parse().expect("time"));
    let kenji = user_in(&app, "kenji", "Asia/Tokyo").await;
    builds_subscription(&app, &kenji).await;
    let subscriptions = app.get_json(&kenji, "/api/v1/subscriptions").await;
    let id = subscriptions["items"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    for args in [
        &["users", "get", "me"][..],
        &["tokens", "list"],
        &["subs", "get", &id],
    ] {
        let shown = ok(&app, &kenji, args, &[]).await;
        assert!(
            shown.contains("2026-11-24 07:30:00 JST"),
            "`tellify {}` in kenji's zone:\n{shown}",
            args.join(" ")
        );
    }
    // The admin's zone is UTC: the audit of kenji's creation reads in it.
    let audit = ok(&app, &app.admin, &["audit"], &[]).await;
    assert!(
        line_with(&audit, &["user.created", "kenji"]).contains("2026-11-23 22:30:00 UTC"),
        "{audit}"
    );
    let tokyo = ok(
        &app,
        &app.admin,
        &["audit"],
        &[("TELLIFY_TZ", "Asia/Tokyo")],
    )
    .await;
    assert!(
        line_with(&tokyo, &["user.created", "kenji"]).contains("07:30:00 JST"),
        "{tokyo}"
    );
}
