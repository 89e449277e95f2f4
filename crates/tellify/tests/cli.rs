//! End-to-end tests of the client subcommands: the real binary serves on a free port with
//! a fresh data directory, and the same binary runs each CLI command as a subprocess, the
//! way a user or a script would.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_tellify");
const ADMIN_TOKEN: &str = "tfy_cli_test_bootstrap_admin";
/// Longest any single CLI call may take before the test fails instead of hanging.
const CALL_LIMIT: Duration = Duration::from_secs(10);

/// A running `tellify serve`; killed when dropped, even if the test panics.
struct Server {
    _child: Child,
    url: String,
    dir: tempfile::TempDir,
}

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Starts the binary as a server and waits until `/healthz` answers.
async fn spawn_server() -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
    let mut command = Command::new(BIN);
    clear_tellify_environment(&mut command);
    let mut child = command
        .args(["serve", "--listen", &listen, "--data"])
        .arg(dir.path().join("data"))
        .current_dir(dir.path())
        .env("TELLIFY_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
        // The webhook receiver listens on loopback; this is also the documented env form.
        .env("TELLIFY_OUTBOUND__ALLOW", r#"["127.0.0.0/8", "::1"]"#)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start the server");
    let url = format!("http://{listen}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(response) = http.get(format!("{url}/healthz")).send().await {
            if response.status().is_success() {
                break;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            panic!("the server exited with {status}:\n{log}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the server did not become healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server {
        _child: child,
        url,
        dir,
    }
}

/// The test's own environment must not leak a server or token into the commands.
fn clear_tellify_environment(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TELLIFY_") {
            command.env_remove(name);
        }
    }
}

impl Server {
    fn cli(&self, token: &str, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        clear_tellify_environment(&mut command);
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("TELLIFY_SERVER", &self.url)
            .env("TELLIFY_TOKEN", token)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn run_with_stdin(&self, token: &str, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .cli(token, args)
            .stdin(Stdio::piped())
            .spawn()
            .expect("start the cli");
        let mut input = child.stdin.take().expect("stdin");
        input
            .write_all(stdin.as_bytes())
            .await
            .expect("write stdin");
        drop(input);
        finish(child, args).await
    }

    async fn run(&self, token: &str, args: &[&str]) -> Output {
        let child = self
            .cli(token, args)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the cli");
        finish(child, args).await
    }

    /// Runs a command that must succeed and returns its stdout.
    async fn ok(&self, token: &str, args: &[&str]) -> String {
        let output = self.run(token, args).await;
        assert!(
            output.success,
            "`tellify {}` failed:\n{}",
            args.join(" "),
            output.stderr
        );
        output.stdout
    }
}

async fn finish(child: Child, args: &[&str]) -> Output {
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

fn line_with<'a>(text: &'a str, parts: &[&str]) -> &'a str {
    text.lines()
        .find(|line| parts.iter().all(|part| line.contains(part)))
        .unwrap_or_else(|| panic!("no line with {parts:?} in:\n{text}"))
}

/// The server's problem is shown, and only once (not as a headline and again as a list).
fn printed_once(stderr: &str, problem: &str) {
    assert_eq!(stderr.matches(problem).count(), 1, "{stderr}");
}

fn is_id(text: &str) -> bool {
    text.len() == 26 && text.chars().all(|c| c.is_ascii_alphanumeric())
}

#[tokio::test]
async fn a_user_subscribes_sends_tails_acks_and_loses_access_when_revoked() {
    let server = spawn_server().await;

    // An admin creates a user and a token for them; the secret is the first line.
    let created = server
        .ok(
            ADMIN_TOKEN,
            &["users", "create", "alice", "--email", "alice@example.com"],
        )
        .await;
    assert!(created.starts_with("created user alice ("), "{created}");
    let minted = server
        .ok(
            ADMIN_TOKEN,
            &[
                "tokens", "create", "laptop", "--user", "alice", "--scope", "user",
            ],
        )
        .await;
    let mut minted_lines = minted.lines();
    let alice = minted_lines.next().expect("secret line").to_string();
    assert!(alice.starts_with("tfy_") && alice.len() == 68, "{minted}");
    let token_id = minted_lines
        .next()
        .and_then(|line| line.strip_prefix("id: "))
        .expect("id line")
        .to_string();
    assert!(is_id(&token_id), "{minted}");

    let me = server.ok(&alice, &["users", "me"]).await;
    assert!(
        line_with(&me, &["name", "alice"]).ends_with("alice"),
        "{me}"
    );
    assert!(line_with(&me, &["scope"]).ends_with("user"), "{me}");

    // Alice subscribes to failures of project vr0, one alert per block.
    let params = r#"{"filter": "project == \"vr0\" && status == \"fail\"", "group_by": ["block"]}"#;
    let subscribed = server
        .ok(
            &alice,
            &[
                "subs",
                "create",
                "--kind",
                "match",
                "--title",
                "vr0 failures",
                "--params",
                params,
            ],
        )
        .await;
    assert!(
        subscribed.starts_with("created subscription ")
            && subscribed.contains("(match): vr0 failures"),
        "{subscribed}"
    );
    let listed = server.ok(&alice, &["subs", "list"]).await;
    line_with(&listed, &["match", "enabled", "alice", "vr0 failures"]);

    // Invalid parameters come back with the status and every problem.
    let rejected = server
        .run(
            &alice,
            &[
                "subs",
                "create",
                "--kind",
                "match",
                "--title",
                "x",
                "--params",
                r#"{"colour": 1}"#,
            ],
        )
        .await;
    assert!(!rejected.success);
    assert!(
        rejected
            .stderr
            .contains("server answered 422 unprocessable entity"),
        "{}",
        rejected.stderr
    );
    assert!(rejected.stderr.contains("params"), "{}", rejected.stderr);

    // Follow the stream in the background until six items have come.
    let mut tail = server
        .cli(&alice, &["tail", "--count", "6"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start tail");
    let tail_stderr = tail.stderr.take().expect("tail stderr");
    let mut tail_notes = BufReader::new(tail_stderr).lines();
    tokio::time::timeout(CALL_LIMIT, async {
        while let Some(line) = tail_notes.next_line().await.expect("tail stderr") {
            if line.contains("connected") {
                return;
            }
        }
        panic!("tail ended before connecting");
    })
    .await
    .expect("tail connects");
    let mut tail_stdout = tail.stdout.take().expect("tail stdout");
    let tail_output = tokio::spawn(async move {
        let mut text = String::new();
        tail_stdout.read_to_string(&mut text).await.map(|_| text)
    });

    // key:value words become one event; a value with spaces stays one value.
    let sent = server
        .ok(
            &alice,
            &[
                "send",
                "project:vr0",
                "block:gc_t",
                "status:fail",
                "tns:-50",
                "note:disk is full",
            ],
        )
        .await;
    let ids: Vec<&str> = sent.lines().collect();
    assert!(ids.len() == 1 && is_id(ids[0]), "{sent}");

    // Stdin: one event per non-empty line.
    let piped = server
        .run_with_stdin(
            &alice,
            &["send"],
            "project:vr0 block:gc_u status:fail\n\nproject:vr0 block:gc_t status:pass\n",
        )
        .await;
    assert!(piped.success, "{}", piped.stderr);
    let ids: Vec<&str> = piped.stdout.lines().collect();
    assert!(
        ids.len() == 2 && ids.iter().all(|id| is_id(id)),
        "{}",
        piped.stdout
    );

    // Mixed JSON and key:value lines are refused before anything is sent.
    let mixed = server
        .run_with_stdin(&alice, &["send"], "{\"message\": \"x\"}\nfoo:bar\n")
        .await;
    assert!(!mixed.success && mixed.stdout.is_empty());
    assert!(
        mixed
            .stderr
            .contains("stdin line 2 is a key:value line but line 1 is a JSON object"),
        "{}",
        mixed.stderr
    );

    let json_sent = server
        .ok(
            &alice,
            &[
                "send",
                "--json",
                r#"{"type": "deploy", "message": "hello world", "fields": {"version": "1.2"}}"#,
            ],
        )
        .await;
    assert!(is_id(json_sent.trim()), "{json_sent}");

    // Four events and two alerts (one per failing block) reached the tail.
    let status = tokio::time::timeout(CALL_LIMIT, tail.wait())
        .await
        .expect("tail exits after --count items")
        .expect("tail status");
    assert!(status.success());
    let tailed = tail_output
        .await
        .expect("tail reader")
        .expect("tail stdout");
    assert_eq!(tailed.lines().count(), 6, "{tailed}");
    line_with(
        &tailed,
        &[
            "  event  ",
            "block=gc_t",
            "note=\"disk is full\"",
            "status=fail",
            "tns=-50",
        ],
    );
    line_with(&tailed, &["  event  ", "block=gc_u", "status=fail"]);
    line_with(&tailed, &["  event  ", "block=gc_t", "status=pass"]);
    line_with(&tailed, &["  event  deploy  hello world  version=1.2"]);
    line_with(
        &tailed,
        &["  alert  firing", "vr0 failures  [block=gc_t]", "(fired)"],
    );
    line_with(
        &tailed,
        &["  alert  firing", "vr0 failures  [block=gc_u]", "(fired)"],
    );

    // Both alerts are listed; acknowledge the one for gc_t.
    let table = server.ok(&alice, &["alerts", "list"]).await;
    assert!(table.starts_with("ID "), "{table}");
    line_with(&table, &["firing", "vr0 failures", "block=gc_t"]);
    line_with(&table, &["firing", "vr0 failures", "block=gc_u"]);
    let listed: Value =
        serde_json::from_str(&server.ok(&alice, &["alerts", "list", "--json"]).await)
            .expect("alerts json");
    let alerts = listed["items"].as_array().expect("items");
    assert_eq!(alerts.len(), 2, "{listed}");
    let alert_id = alerts
        .iter()
        .find(|alert| alert["group_key"] == "block=gc_t")
        .and_then(|alert| alert["id"].as_str())
        .expect("gc_t alert")
        .to_string();
    let acked = server
        .ok(
            &alice,
            &[
                "alerts",
                "ack",
                &alert_id,
                "--note",
                "looking into it",
                "--expires",
                "2h",
            ],
        )
        .await;
    assert_eq!(
        acked.trim(),
        format!("acked alert {alert_id}: vr0 failures [block=gc_t] is firing (acked)")
    );
    let shown = server.ok(&alice, &["alerts", "get", &alert_id]).await;
    line_with(&shown, &["acked", "by alice", "looking into it"]);
    line_with(&shown, &["tellify", "fired"]);
    line_with(&shown, &["alice", "acked"]);
    let missing = server.run(&alice, &["alerts", "ack", "nope"]).await;
    assert!(!missing.success);
    assert_eq!(
        missing.stderr.trim(),
        "error: server answered 404 not found: alert not found"
    );

    // A token may expire; lists show when.
    let expiring = server
        .ok(
            &alice,
            &[
                "tokens",
                "create",
                "ci",
                "--scope",
                "ingest",
                "--expires",
                "90d",
            ],
        )
        .await;
    assert!(expiring.starts_with("tfy_"), "{expiring}");
    let listed = server.ok(&alice, &["tokens", "list"]).await;
    line_with(&listed, &["ID", "SCOPES", "CREATED", "EXPIRES", "NAME"]);
    assert!(
        line_with(&listed, &["user", "laptop"]).contains(" never "),
        "{listed}"
    );
    assert!(
        !line_with(&listed, &["ingest", "ci"]).contains("never"),
        "{listed}"
    );
    let too_long = server
        .run(&alice, &["tokens", "create", "ci", "--expires", "6000d"])
        .await;
    assert!(!too_long.success);
    assert!(
        too_long
            .stderr
            .contains("expires: must be a duration from 1m to 1825d"),
        "{}",
        too_long.stderr
    );

    // Once revoked, the token stops working with a clear message.
    let revoked = server.ok(&alice, &["tokens", "revoke", &token_id]).await;
    assert_eq!(revoked.trim(), format!("revoked token {token_id}"));
    let refused = server.run(&alice, &["alerts", "list"]).await;
    assert!(!refused.success);
    assert!(refused.stdout.is_empty());
    assert_eq!(
        refused.stderr.trim(),
        "error: server answered 401 unauthorized: unknown or revoked token \
         (check --token or TELLIFY_TOKEN)"
    );
}

#[tokio::test]
async fn without_a_token_or_a_server_the_cli_says_what_is_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(BIN);
    clear_tellify_environment(&mut command);
    let output = command
        .args(["alerts", "list"])
        .current_dir(dir.path())
        .output()
        .await
        .expect("run the cli");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "error: no API token: pass --token or set TELLIFY_TOKEN"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let server = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(BIN);
    clear_tellify_environment(&mut command);
    let output = command
        .args(["send", "a:1", "--server", &server, "--token", "tfy_x"])
        .current_dir(dir.path())
        .output()
        .await
        .expect("run the cli");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: cannot reach the tellify server at {server}: "
        )),
        "{stderr}"
    );
}

/// A webhook receiver on a free port that accepts everything with 202; the server's
/// webhook channel posts to it.
async fn spawn_webhook_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let address = listener.local_addr().expect("receiver address");
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { axum::http::StatusCode::ACCEPTED }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}/hook")
}

#[tokio::test]
async fn a_user_sets_up_notifications_and_an_admin_offboards_them() {
    let server = spawn_server().await;
    let hook = spawn_webhook_receiver().await;
    server.ok(ADMIN_TOKEN, &["users", "create", "bob"]).await;
    let minted = server
        .ok(
            ADMIN_TOKEN,
            &[
                "tokens", "create", "cli", "--user", "bob", "--scope", "user",
            ],
        )
        .await;
    let bob = minted.lines().next().expect("secret line").to_string();

    // A webhook gets a signing secret, shown once; listing never shows it again.
    let created = server
        .ok(
            &bob,
            &[
                "contacts",
                "create",
                "hooks",
                "--kind",
                "webhook",
                "--address",
                &hook,
            ],
        )
        .await;
    let mut created_lines = created.lines();
    assert_eq!(
        created_lines.next(),
        Some(format!("created webhook contact point hooks: {hook}").as_str()),
        "{created}"
    );
    let secret = created_lines
        .next()
        .and_then(|line| line.strip_prefix("secret: "))
        .expect("secret line");
    assert!(
        secret.starts_with("whsec_") && secret.len() > 20,
        "{created}"
    );
    let listed = server.ok(&bob, &["contacts", "list"]).await;
    line_with(&listed, &["hooks", "webhook", "yes", &hook]);
    assert!(!listed.contains(secret), "{listed}");

    // A bad address is refused with the field at fault, and nothing is created.
    let refused = server
        .run(
            &bob,
            &[
                "contacts",
                "create",
                "work-email",
                "--kind",
                "email",
                "--address",
                "bob-at-example",
            ],
        )
        .await;
    assert!(!refused.success && refused.stdout.is_empty());
    assert!(
        refused.stderr.starts_with(
            "error: server answered 422 unprocessable entity: address: must be an email \
             address like name@example.com"
        ),
        "{}",
        refused.stderr
    );
    printed_once(&refused.stderr, "address: must be an email address");
    server
        .ok(
            &bob,
            &[
                "contacts",
                "create",
                "work-email",
                "--kind",
                "email",
                "--address",
                "bob@example.com",
            ],
        )
        .await;

    // A test prints the provider's answer, or fails with its error.
    let tested = server.ok(&bob, &["contacts", "test", "hooks"]).await;
    assert_eq!(tested.trim(), "test sent to hooks: 202 Accepted");
    let failed = server.run(&bob, &["contacts", "test", "work-email"]).await;
    assert!(!failed.success && failed.stdout.is_empty());
    assert_eq!(
        failed.stderr.trim(),
        "error: server answered 502 bad gateway: the test to `work-email` failed: \
         email is not configured on this server: set [smtp] host (TELLIFY_SMTP__HOST)"
    );

    // The one-rule shorthand; the window comes back in its JSON form.
    let set = server
        .ok(
            &bob,
            &[
                "policies",
                "set",
                "default",
                "--contact",
                "work-email",
                "--contact",
                "hooks",
                "--when",
                "mon-fri 09:00-18:00",
                "--min-severity",
                "warning",
                "--digest",
                "15m",
                "--notify-resolved",
            ],
        )
        .await;
    assert_eq!(
        set.trim(),
        "created policy default (1 rule, contact points: hooks,work-email)"
    );
    let policy: Value =
        serde_json::from_str(&server.ok(&bob, &["policies", "get", "default"]).await)
            .expect("policy json");
    assert_eq!(policy["name"], "default");
    assert_eq!(
        policy["rules"],
        serde_json::json!([{
            "when": {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:00",
                     "to": "18:00", "outside": false},
            "min_severity": "warning",
            "contact_points": ["work-email", "hooks"],
            "mode": {"digest": "15m"},
            "repeat": null,
            "notify_resolved": true,
            "continue": false,
        }])
    );
    // Setting it again from the `get` output on stdin replaces it.
    let replaced = server
        .run_with_stdin(
            &bob,
            &["policies", "set", "default", "--file", "-"],
            &policy.to_string(),
        )
        .await;
    assert!(replaced.success, "{}", replaced.stderr);
    assert_eq!(
        replaced.stdout.trim(),
        "replaced policy default (1 rule, contact points: hooks,work-email)"
    );
    let unknown = server
        .run(&bob, &["policies", "set", "night", "--contact", "pager"])
        .await;
    assert!(!unknown.success);
    printed_once(
        &unknown.stderr,
        "rules[0].contact_points[0]: you have no contact point named `pager`",
    );
    let bad_window = server
        .run(
            &bob,
            &[
                "policies",
                "set",
                "x",
                "--contact",
                "hooks",
                "--when",
                "someday",
            ],
        )
        .await;
    assert!(!bad_window.success);
    assert!(
        bad_window.stderr.starts_with("error: --when: "),
        "{}",
        bad_window.stderr
    );

    let silenced = server
        .ok(
            &bob,
            &[
                "silences",
                "create",
                "--filter",
                "block == \"gc_t\"",
                "--ends",
                "2h",
                "--comment",
                "rebuilding",
            ],
        )
        .await;
    assert!(silenced.starts_with("created silence "), "{silenced}");
    let silences = server.ok(&bob, &["silences", "list"]).await;
    line_with(&silences, &["active", "block == \"gc_t\"", "rebuilding"]);

    // Nothing was sent yet.
    let deliveries = server.run(&bob, &["deliveries", "list"]).await;
    assert!(deliveries.success, "{}", deliveries.stderr);
    assert!(deliveries.stdout.is_empty(), "{}", deliveries.stdout);
    assert_eq!(deliveries.stderr.trim(), "no deliveries");
    let as_json: Value =
        serde_json::from_str(&server.ok(&bob, &["deliveries", "list", "--json"]).await)
            .expect("deliveries json");
    assert_eq!(as_json, serde_json::json!({"items": [], "next": null}));

    // An admin sees bob's settings with --user; bob cannot use --user for someone else.
    let for_bob = server
        .ok(ADMIN_TOKEN, &["contacts", "list", "--user", "bob"])
        .await;
    line_with(&for_bob, &["work-email", "email", "bob@example.com"]);
    let not_admin = server
        .run(&bob, &["policies", "list", "--user", "admin"])
        .await;
    assert!(!not_admin.success);
    assert!(
        not_admin
            .stderr
            .starts_with("error: server answered 403 forbidden"),
        "{}",
        not_admin.stderr
    );

    // A dry run counts and removes nothing.
    let dry = server
        .ok(ADMIN_TOKEN, &["users", "delete", "bob", "--dry-run"])
        .await;
    assert!(
        dry.starts_with("dry run: deleting user bob would remove\n"),
        "{dry}"
    );
    assert!(
        line_with(&dry, &["contact points"]).ends_with(" 2"),
        "{dry}"
    );
    assert!(line_with(&dry, &["policies"]).ends_with(" 1"), "{dry}");
    assert!(line_with(&dry, &["silences"]).ends_with(" 1"), "{dry}");
    assert!(line_with(&dry, &["tokens"]).ends_with(" 1"), "{dry}");
    let users = server.ok(ADMIN_TOKEN, &["users", "list"]).await;
    line_with(&users, &["bob", "user"]);
    line_with(&server.ok(&bob, &["contacts", "list"]).await, &["hooks"]);

    let deleted = server.ok(ADMIN_TOKEN, &["users", "delete", "bob"]).await;
    assert!(
        deleted.starts_with("deleted user bob, removing\n"),
        "{deleted}"
    );
    assert!(
        line_with(&deleted, &["contact points"]).ends_with(" 2"),
        "{deleted}"
    );
    let users = server.ok(ADMIN_TOKEN, &["users", "list"]).await;
    assert!(
        !users.lines().any(|line| line.starts_with("bob ")),
        "{users}"
    );
    let gone = server.run(&bob, &["contacts", "list"]).await;
    assert!(!gone.success);
    assert!(
        gone.stderr.contains("server answered 401 unauthorized"),
        "{}",
        gone.stderr
    );
    let again = server.run(ADMIN_TOKEN, &["users", "delete", "bob"]).await;
    assert!(!again.success);
    assert_eq!(
        again.stderr.trim(),
        "error: server answered 404 not found: user not found"
    );
}

/// Runs the binary with only the arguments given: no server or token from the
/// environment, so flags alone must say where and who.
async fn run_bare(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(BIN);
    clear_tellify_environment(&mut command);
    command.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
    for (name, value) in envs {
        command.env(name, value);
    }
    let child = command
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the cli");
    finish(child, args).await
}

#[tokio::test]
async fn a_user_updates_themselves_an_admin_their_role_and_the_audit_lists_both() {
    let server = spawn_server().await;
    server.ok(ADMIN_TOKEN, &["users", "create", "ann"]).await;
    server
        .ok(ADMIN_TOKEN, &["users", "group-create", "ops"])
        .await;
    let minted = server
        .ok(
            ADMIN_TOKEN,
            &["tokens", "create", "laptop", "--user", "ann"],
        )
        .await;
    let ann = minted.lines().next().expect("secret line").to_string();

    let updated = server
        .ok(
            &ann,
            &[
                "users",
                "update",
                "me",
                "--timezone",
                "Europe/Berlin",
                "--display-name",
                "Ann Smith",
                "--email",
                "ann@example.com",
            ],
        )
        .await;
    assert!(updated.starts_with("updated user ann\n"), "{updated}");
    assert!(line_with(&updated, &["timezone"]).ends_with("Europe/Berlin"));
    assert!(line_with(&updated, &["display name"]).ends_with("Ann Smith"));
    let me = server.ok(&ann, &["users", "me"]).await;
    assert!(
        line_with(&me, &["timezone"]).ends_with("Europe/Berlin"),
        "{me}"
    );

    // Her role is not hers to change; the server's reason is shown once, exit non-zero.
    let refused = server
        .run(&ann, &["users", "update", "me", "--admin", "true"])
        .await;
    assert!(!refused.success && refused.stdout.is_empty());
    printed_once(&refused.stderr, "only admins can change `admin`");
    let nothing = server.run(&ann, &["users", "update", "me"]).await;
    assert!(!nothing.success);
    assert!(
        nothing.stderr.contains("nothing to change"),
        "{}",
        nothing.stderr
    );

    let promoted = server
        .ok(
            ADMIN_TOKEN,
            &[
                "users", "update", "ann", "--admin", "true", "--groups", "ops", "--json",
            ],
        )
        .await;
    let promoted: Value = serde_json::from_str(&promoted).expect("json");
    assert_eq!(promoted["admin"], true);
    let groups = server.ok(ADMIN_TOKEN, &["users", "groups"]).await;
    assert!(line_with(&groups, &["ops"]).ends_with("ann"), "{groups}");

    let audit = server.ok(ADMIN_TOKEN, &["audit"]).await;
    let header = audit.lines().next().unwrap_or_default();
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        columns,
        ["AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL"],
        "{audit}"
    );
    line_with(
        &audit,
        &[
            "ann",
            "user.updated",
            "user ann",
            "timezone: UTC → Europe/Berlin",
        ],
    );
    line_with(
        &audit,
        &[
            "admin",
            "user.role_changed",
            "user ann",
            "admin: false → true, groups: {joined: ops, left: none}",
        ],
    );
    line_with(&audit, &["admin", "token.created", "token laptop of ann"]);
    line_with(&audit, &["admin", "user.created", "user ann"]);
    line_with(
        &audit,
        &["tellify serve (first start)", "user.created", "user admin"],
    );
    assert!(!audit.contains(&ann), "no token secret in the audit");
    let limited = server
        .ok(ADMIN_TOKEN, &["audit", "--limit", "1", "--json"])
        .await;
    let limited: Value = serde_json::from_str(&limited).expect("json");
    assert_eq!(limited["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(limited["items"][0]["action"], "user.role_changed");
    // Her token has the `user` scope: the audit log is not for it.
    let denied = server.run(&ann, &["audit"]).await;
    assert!(!denied.success);
    printed_once(&denied.stderr, "server answered 403 forbidden");
}

#[tokio::test]
async fn a_server_error_is_printed_once_and_the_exit_code_says_it_failed() {
    let server = spawn_server().await;
    let failed = server
        .run(
            ADMIN_TOKEN,
            &["users", "update", "admin", "--timezone", "Mars/Base"],
        )
        .await;
    assert!(!failed.success);
    assert_eq!(
        failed.stderr.trim(),
        "error: server answered 422 unprocessable entity: timezone: `Mars/Base` is not an \
         IANA time zone such as Europe/Berlin"
    );
    let failed = server
        .run(
            ADMIN_TOKEN,
            &[
                "users",
                "update",
                "admin",
                "--timezone",
                "Mars/Base",
                "--email",
                "nope",
            ],
        )
        .await;
    assert!(!failed.success);
    printed_once(&failed.stderr, "`Mars/Base` is not an IANA time zone");
    printed_once(&failed.stderr, "`nope` is not an email address");
}

#[tokio::test]
async fn server_and_token_work_before_and_after_the_subcommand() {
    let server = spawn_server().await;
    let url = server.url.as_str();
    for args in [
        vec!["--server", url, "--token", ADMIN_TOKEN, "users", "list"],
        vec!["users", "list", "--server", url, "--token", ADMIN_TOKEN],
        vec!["users", "--server", url, "list", "--token", ADMIN_TOKEN],
        vec!["--token", ADMIN_TOKEN, "alerts", "list", "--server", url],
    ] {
        let output = run_bare(&args, &[]).await;
        assert!(output.success, "{args:?}: {}", output.stderr);
    }
    // `--json` too, on either side of the inner subcommand.
    for args in [
        vec![
            "--server",
            url,
            "--token",
            ADMIN_TOKEN,
            "users",
            "--json",
            "list",
        ],
        vec![
            "--server",
            url,
            "--token",
            ADMIN_TOKEN,
            "users",
            "list",
            "--json",
        ],
    ] {
        let output = run_bare(&args, &[]).await;
        assert!(output.success, "{args:?}: {}", output.stderr);
        let page: Value = serde_json::from_str(&output.stdout).expect("json");
        assert_eq!(page["items"][0]["name"], "admin", "{args:?}");
    }
    // The command line wins over the environment, wherever on it the flag is.
    let output = run_bare(
        &["--server", url, "users", "list", "--token", ADMIN_TOKEN],
        &[("TELLIFY_SERVER", "http://127.0.0.1:9")],
    )
    .await;
    assert!(output.success, "{}", output.stderr);
}

#[tokio::test]
async fn completions_and_the_man_page_come_from_the_same_definition() {
    let bash = run_bare(&["completions", "bash"], &[]).await;
    assert!(bash.success, "{}", bash.stderr);
    assert!(bash.stdout.contains("subs"), "bash completions name `subs`");
    assert!(bash.stdout.contains("--server"), "and `--server`");
    assert!(
        bash.stdout.contains("--display-name"),
        "and the flags of `users update`"
    );
    for shell in ["zsh", "fish"] {
        let script = run_bare(&["completions", shell], &[]).await;
        assert!(script.success, "{shell}: {}", script.stderr);
        assert!(script.stdout.contains("completions"), "{shell}");
    }
    let unknown = run_bare(&["completions", "tcsh"], &[]).await;
    assert!(!unknown.success);
    assert!(unknown.stderr.contains("tcsh"), "{}", unknown.stderr);

    let man = run_bare(&["man"], &[]).await;
    assert!(man.success, "{}", man.stderr);
    let title = man
        .stdout
        .lines()
        .find(|line| !line.starts_with(".ie ") && !line.starts_with(".el "))
        .unwrap_or_default();
    assert!(title.starts_with(".TH tellify"), "{title}");
    for name in ["serve", "alerts", "subs", "users", "audit", "completions"] {
        assert!(
            man.stdout.contains(&format!("tellify\\-{name}")) || man.stdout.contains(name),
            "the man page names `{name}`"
        );
    }
    assert!(man.stdout.contains(".SH \"TELLIFY USERS UPDATE\""));
}

#[tokio::test]
async fn no_colour_codes_reach_a_pipe_or_a_log_file() {
    // Help on a pipe: no colour, even when the environment asks to force it.
    for envs in [
        vec![],
        vec![("CLICOLOR_FORCE", "1")],
        vec![("NO_COLOR", "1")],
    ] {
        let help = run_bare(&["users", "--help"], &envs).await;
        assert!(help.success);
        assert!(help.stdout.contains("Usage"), "{}", help.stdout);
        assert!(!help.stdout.contains('\u{1b}'), "{envs:?}: {}", help.stdout);
    }
    let mistake = run_bare(&["users", "lst"], &[("CLICOLOR_FORCE", "1")]).await;
    assert!(!mistake.success);
    assert!(!mistake.stderr.contains('\u{1b}'), "{}", mistake.stderr);

    // The server's log, written to a file, is plain text.
    let server = spawn_server().await;
    server.ok(ADMIN_TOKEN, &["users", "create", "ann"]).await;
    let log = std::fs::read_to_string(server.dir.path().join("server.log")).expect("log");
    assert!(log.contains("INFO"), "the server logged: {log}");
    assert!(!log.contains("\u{1b}["), "{log}");
}

#[tokio::test]
async fn passwords_come_from_stdin_and_people_change_their_own_with_the_current_one() {
    let server = spawn_server().await;
    let created = server
        .run_with_stdin(
            ADMIN_TOKEN,
            &["users", "create", "ann", "--password-stdin"],
            "ann's first password\n",
        )
        .await;
    assert!(created.success, "{}", created.stderr);
    assert!(
        created.stdout.starts_with("created user ann"),
        "{}",
        created.stdout
    );
    let short = server
        .run_with_stdin(
            ADMIN_TOKEN,
            &["users", "create", "bob", "--password-stdin"],
            "short\n",
        )
        .await;
    assert!(!short.success);
    printed_once(&short.stderr, "password: must be at least 10 characters");
    let bob = server.run(ADMIN_TOKEN, &["users", "get", "bob"]).await;
    assert!(!bob.success && bob.stderr.contains("404"), "{}", bob.stderr);

    let minted = server
        .ok(
            ADMIN_TOKEN,
            &["tokens", "create", "laptop", "--user", "ann"],
        )
        .await;
    let ann = minted.lines().next().expect("secret line").to_string();
    let passwd = ["passwd", "--password-stdin"];
    let wrong = server
        .run_with_stdin(&ann, &passwd, "not ann's password\nann's second password\n")
        .await;
    assert!(!wrong.success);
    assert!(wrong.stderr.contains("403"), "{}", wrong.stderr);
    printed_once(&wrong.stderr, "the current password is not right");
    let changed = server
        .run_with_stdin(
            &ann,
            &passwd,
            "ann's first password\r\nann's second password\r\n",
        )
        .await;
    assert!(changed.success, "{}", changed.stderr);
    assert!(
        changed.stdout.starts_with("password changed"),
        "{}",
        changed.stdout
    );

    // The admin resets it without the current one; ann cannot reset the admin's.
    let reset = server
        .run_with_stdin(
            ADMIN_TOKEN,
            &["users", "set-password", "ann", "--password-stdin"],
            "ann's third password\n",
        )
        .await;
    assert!(reset.success, "{}", reset.stderr);
    let refused = server
        .run_with_stdin(
            &ann,
            &["users", "set-password", "admin", "--password-stdin"],
            "ann owns the admin now\n",
        )
        .await;
    assert!(!refused.success);
    assert!(refused.stderr.contains("404"), "{}", refused.stderr);
    let old = server
        .run_with_stdin(
            &ann,
            &passwd,
            "ann's second password\nann's fourth password\n",
        )
        .await;
    assert!(!old.success, "the reset replaced the second password");
    let current = server
        .run_with_stdin(
            &ann,
            &passwd,
            "ann's third password\nann's fourth password\n",
        )
        .await;
    assert!(current.success, "{}", current.stderr);

    // A password is never an argument.
    let no_flag = server
        .run(ADMIN_TOKEN, &["users", "set-password", "ann"])
        .await;
    assert!(!no_flag.success);
    assert!(
        no_flag.stderr.contains("--password-stdin"),
        "{}",
        no_flag.stderr
    );
    let empty = server.run_with_stdin(&ann, &passwd, "").await;
    assert!(!empty.success);
    assert!(
        empty.stderr.contains("no password on stdin"),
        "{}",
        empty.stderr
    );
}

#[tokio::test]
async fn a_preview_shows_what_a_subscription_would_have_fired_without_saving_it() {
    let server = spawn_server().await;
    server.ok(ADMIN_TOKEN, &["users", "create", "ann"]).await;
    let minted = server
        .ok(
            ADMIN_TOKEN,
            &[
                "tokens", "create", "cli", "--user", "ann", "--scope", "user",
            ],
        )
        .await;
    let ann = minted.lines().next().expect("secret line").to_string();
    for (fs, usage) in [
        ("/srv", "70"),
        ("/srv", "97"),
        ("/home", "85"),
        ("/tmp", "10"),
    ] {
        let (fs, usage) = (format!("fs:{fs}"), format!("usage:{usage}"));
        server.ok(&ann, &["send", &fs, &usage]).await;
    }

    let params = r#"{"field": "usage", "warn": 80, "critical": 95, "group_by": ["fs"]}"#;
    let args = [
        "subs",
        "preview",
        "--kind",
        "threshold",
        "--title",
        "disk",
        "--params",
        params,
        "--from",
        "1h",
    ];
    let mut shown = String::new();
    // The worker stores events asynchronously after the 202; the preview reads the log.
    for _ in 0..100 {
        shown = server.ok(&ann, &args).await;
        if shown.contains("4 events scanned") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(shown.contains("4 events scanned, 4 matched"), "{shown}");
    let srv = line_with(&shown, &["fs=/srv", "critical"]);
    assert!(srv.contains("fired") && srv.contains("yes"), "{shown}");
    let home = line_with(&shown, &["fs=/home", "warning"]);
    assert!(home.contains("fired"), "{shown}");
    assert!(!shown.contains("fs=/tmp"), "below warn: {shown}");

    let json: serde_json::Value =
        serde_json::from_str(&server.ok(&ann, &[&args[..], &["--json"]].concat()).await)
            .expect("json");
    assert_eq!(json["alerts"], 2, "{json}");

    // Nothing was saved.
    let list = server.ok(&ann, &["subs", "list"]).await;
    assert!(!list.contains("disk"), "{list}");

    // A bad parameter is named, as `create` names it, and the command fails.
    let bad = server
        .run(
            &ann,
            &[
                "subs",
                "preview",
                "--kind",
                "threshold",
                "--title",
                "disk",
                "--params",
                r#"{"field": "usage", "warn": 90, "critical": 80}"#,
            ],
        )
        .await;
    assert!(!bad.success);
    assert!(bad.stderr.contains("params.critical"), "{}", bad.stderr);
}
