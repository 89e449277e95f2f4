//! Nothing a producer sends is accepted silently: `key:value` input that parses, but
//! probably not as meant, is stored as read and named in the 202's `warnings` and on
//! `tellify send`'s stderr (the spool and its replay unaffected); a refused NDJSON or
//! JSON-array request names the one offending line or index, once.

use std::path::Path;
use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::helpers::{problem, spawn_app, TestApp};

const BIN: &str = env!("CARGO_BIN_EXE_tellify");

/// The binary as a producer runs it, with none of the test's own `TELLIFY_*` variables.
fn tellify(server: &str, token: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TELLIFY_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .env("TELLIFY_SERVER", server)
        .env("TELLIFY_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

async fn run(mut command: Command, stdin: &str) -> Run {
    let mut child = command.spawn().expect("start the cli");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let output = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the cli finishes")
        .expect("wait for the cli");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn post(app: &TestApp, content_type: &str, body: &str) -> (StatusCode, Value) {
    let response = app
        .post_raw(&app.admin, "/api/v1/events", content_type, body.to_string())
        .await;
    let status = response.status();
    (status, response.json().await.expect("json"))
}

async fn stored_fields(app: &TestApp) -> Vec<Value> {
    let page = app.get_json(&app.admin, "/api/v1/events").await;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|event| event["fields"].clone())
        .collect()
}

#[tokio::test]
async fn key_value_surprises_are_stored_as_read_and_named_in_the_202() {
    let app = spawn_app().await;
    let (status, answer) = post(
        &app,
        "text/plain",
        "fs=/home usage:95%\n\nmessage:disk full\r\nproject:vr0 ok:true\n",
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["ids"].as_array().expect("ids").len(), 3, "{answer}");
    assert_eq!(answer["accepted"], 3);
    let warnings = answer["warnings"].as_array().expect("warnings");
    let places: Vec<(u64, &str)> = warnings
        .iter()
        .map(|w| {
            (
                w["line"].as_u64().unwrap_or(0),
                w["word"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        places,
        vec![(1, "fs=/home"), (1, "usage:95%"), (3, "full")],
        "{answer}"
    );
    for warning in warnings {
        let mut keys: Vec<&String> = warning.as_object().expect("object").keys().collect();
        keys.sort();
        assert_eq!(keys, vec!["line", "message", "word"], "{warning}");
    }
    let message = |index: usize| warnings[index]["message"].as_str().unwrap_or("");
    assert!(message(0).contains("`fs:/home`"), "{answer}");
    assert!(message(1).contains("not a number"), "{answer}");
    assert!(message(2).contains(r#"`message:"disk full"`"#), "{answer}");

    // Stored as read: the warning changes nothing of the event.
    let fields = stored_fields(&app).await;
    assert!(
        fields.iter().any(|f| f["usage"] == json!("95%")),
        "{fields:?}"
    );
    assert!(
        fields.iter().any(|f| f["words"] == json!("full")),
        "{fields:?}"
    );

    // Clean input, quoted values and JSON (typed by the producer) answer as before.
    for (content_type, body) in [
        (
            "text/plain",
            "project:vr0 tns:-50 usage:\"95%\" 'fs:/home' message:\"disk full\"\n",
        ),
        ("application/json", r#"{"fields": {"usage": "95%"}}"#),
        ("application/x-ndjson", "{\"message\": \"fs=/home\"}\n"),
    ] {
        let (status, answer) = post(&app, content_type, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert!(answer.get("warnings").is_none(), "{content_type}: {answer}");
        assert_eq!(
            answer.as_object().expect("object").len(),
            4,
            "ids, accepted, duplicates, repeats: {answer}"
        );
    }
}

#[tokio::test]
async fn tellify_send_prints_each_warning_and_still_succeeds() {
    let app = spawn_app().await;
    let words = run(
        tellify(
            &app.base,
            &app.admin,
            &["send", "fs=/home", "usage:95%", "message:disk", "full"],
        ),
        "",
    )
    .await;
    assert!(words.success, "{}", words.stderr);
    assert_eq!(words.stdout.lines().count(), 1, "one id: {}", words.stdout);
    let warnings: Vec<&str> = words
        .stderr
        .lines()
        .filter(|line| line.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 3, "{}", words.stderr);
    assert!(
        warnings[0].starts_with("warning: `fs=/home`: "),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with("warning: `usage:95%`: "),
        "{warnings:?}"
    );
    assert!(warnings[2].starts_with("warning: `full`: "), "{warnings:?}");

    // A value the shell kept together is quoted for the user: nothing to warn about.
    let quoted = run(
        tellify(
            &app.base,
            &app.admin,
            &["send", "message:disk full", "usage:95"],
        ),
        "",
    )
    .await;
    assert!(quoted.success, "{}", quoted.stderr);
    assert!(!quoted.stderr.contains("warning"), "{}", quoted.stderr);

    let stdin = run(
        tellify(&app.base, &app.admin, &["send", "--quiet"]),
        "ok:1\n\nlatency:10ms\n",
    )
    .await;
    assert!(stdin.success, "{}", stdin.stderr);
    assert!(
        stdin
            .stderr
            .contains("warning: stdin line 3: `latency:10ms`: "),
        "{}",
        stdin.stderr
    );
    assert_eq!(
        stdin.stderr.matches("warning").count(),
        1,
        "{}",
        stdin.stderr
    );
    let fields = stored_fields(&app).await;
    assert!(
        fields.iter().any(|f| f["latency"] == json!("10ms")),
        "{fields:?}"
    );
}

#[tokio::test]
async fn warned_events_spool_and_replay_like_any_other() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("spool");
    let spool_arg = spool.to_str().expect("utf-8 path");
    let nowhere = format!("http://127.0.0.1:{}", crate::support::free_port());

    let spooled = run(
        tellify(
            &nowhere,
            &app.admin,
            &["send", "--spool", spool_arg, "usage:95%", "run:spooled"],
        ),
        "",
    )
    .await;
    assert!(spooled.success, "{}", spooled.stderr);
    assert!(
        spooled.stderr.contains("warning: `usage:95%`: "),
        "{}",
        spooled.stderr
    );
    assert!(
        spooled.stderr.contains("spooled 1 events"),
        "{}",
        spooled.stderr
    );
    assert_spool_holds_json_only(&spool);

    let replayed = run(
        tellify(
            &app.base,
            &app.admin,
            &["spool", "replay", "--spool", spool_arg],
        ),
        "",
    )
    .await;
    assert!(replayed.success, "{}", replayed.stderr);
    let fields = stored_fields(&app).await;
    assert_eq!(
        fields,
        vec![json!({"usage": "95%", "run": "spooled"})],
        "stored once, as read"
    );
}

/// The spool keeps events, not what was said about them.
fn assert_spool_holds_json_only(spool: &Path) {
    let mut found = false;
    for entry in std::fs::read_dir(spool).expect("spool dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains("usage") {
            found = true;
            assert!(!text.contains("warning"), "{}: {text}", path.display());
        }
    }
    assert!(found, "the event is in the spool");
}

#[tokio::test]
async fn an_ndjson_refusal_names_the_one_offending_line() {
    let app = spawn_app().await;
    let ok = r#"{"message": "ok"}"#;
    let bad = r#"{"severity": "fatal", "colour": 1}"#;
    let long = format!(r#"{{"message": "{}"}}"#, "x".repeat(9000));
    let cases = [
        (
            format!("{bad}\n{ok}\n{ok}\n"),
            1,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("{ok}\n{ok}\n{bad}\n"),
            3,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("{ok}\r\n\r\n{bad}\r\n"),
            3,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("{ok}\n\n{ok}\n  {{oops"),
            4,
            StatusCode::BAD_REQUEST,
        ),
        (format!("{ok}\n{long}"), 2, StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (body, line, expected_status) in cases {
        let response = app
            .post_raw(
                &app.admin,
                "/api/v1/events",
                "application/x-ndjson",
                body.clone(),
            )
            .await;
        let (status, problem) = problem(response).await;
        assert_eq!(status, expected_status, "{problem}");
        let errors = problem["errors"].as_array().expect("errors");
        assert!(
            errors.iter().all(|e| e["line"] == json!(line)),
            "line {line}: {problem}"
        );
        let detail = problem["detail"].as_str().expect("detail");
        assert_eq!(detail.matches("line").count(), 1, "{detail}");
        assert!(detail.starts_with(&format!("line {line}: ")), "{detail}");
    }

    let (status, problem) = problem(
        app.post(
            &app.admin,
            "/api/v1/events",
            json!([{"message": "a"}, {"message": "b"}, {"severity": "fatal", "colour": 1}]),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = problem["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{problem}");
    assert!(errors.iter().all(|e| e["index"] == json!(2)), "{problem}");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(
        detail.starts_with("event [2]: field `severity`"),
        "{detail}"
    );
    assert_eq!(detail.matches("[2]").count(), 1, "{detail}");
    app.settle().await;
    assert_eq!(app.app.state.store.last_seq().await.expect("seq"), 0);
}

#[tokio::test]
async fn tellify_send_names_the_stdin_line_or_array_index_of_a_refused_event_once() {
    let app = spawn_app().await;
    let refused = run(
        tellify(&app.base, &app.admin, &["send"]),
        "{\"type\": \"ok\"}\n\n{\"type\": \"\"}\n",
    )
    .await;
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("line 3, field `type`"),
        "{}",
        refused.stderr
    );
    // The request's own numbering (the bad event was its line 2) is not shown.
    assert!(!refused.stderr.contains("line 2"), "{}", refused.stderr);
    assert_eq!(
        refused.stderr.matches("field `type`").count(),
        1,
        "{}",
        refused.stderr
    );

    let refused = run(
        tellify(
            &app.base,
            &app.admin,
            &[
                "send",
                "--json",
                r#"[{"type": "a"}, {"type": "b"}, {"type": ""}]"#,
            ],
        ),
        "",
    )
    .await;
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("event [2], field `type`"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("line"), "{}", refused.stderr);
    assert_eq!(
        refused.stderr.matches("field `type`").count(),
        1,
        "{}",
        refused.stderr
    );
    app.settle().await;
    assert_eq!(app.app.state.store.last_seq().await.expect("seq"), 0);
}
