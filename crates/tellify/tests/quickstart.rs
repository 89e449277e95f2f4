//! The README's Quick start, run as a newcomer would paste it: its `sh` blocks are taken
//! from README.md itself (so the two cannot drift), run in order in one shell against a
//! fresh `tellify serve` with a real SMTP server, every command must exit 0, and ann's
//! alert and its notification must arrive.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::{free_port, SmtpSink};

/// Marks a Quick start block the test must not run (it starts a server, or undoes the story).
const NOT_RUN: &str = "not run by tests/quickstart.rs";
const README_SERVER: &str = "http://127.0.0.1:8080";
const README_TOKEN: &str = "tfy_...";

/// The `sh` blocks of the README's "Quick start" section, in order, without those marked
/// [`NOT_RUN`].
fn quick_start_blocks(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## ")
        .find(|section| section.starts_with("Quick start"))
        .expect("the README has a Quick start section");
    let mut blocks = Vec::new();
    // The block being read, and whether it is kept.
    let mut current: Option<(String, bool)> = None;
    let mut skip_next = false;
    for line in section.lines() {
        match &mut current {
            Some(_) if line.trim_end() == "```" => {
                if let Some((block, true)) = current.take() {
                    blocks.push(block);
                }
            }
            Some((block, _)) => {
                block.push_str(line);
                block.push('\n');
            }
            None if line.trim_end() == "```sh" => {
                current = Some((String::new(), !skip_next));
                skip_next = false;
            }
            None if line.starts_with("```") => current = Some((String::new(), false)),
            None => skip_next |= line.contains(NOT_RUN),
        }
    }
    blocks
}

#[test]
fn the_extraction_keeps_the_runnable_blocks_in_order() {
    let readme = "# x\n\n## Quick start\n\ntext\n<!-- not run by tests/quickstart.rs -->\n```sh\nserve\n```\n\n```sh\none\ntwo\n```\n```text\nno\n```\n```sh\nthree\n```\n\n## Next\n```sh\nlater\n```\n";
    assert_eq!(quick_start_blocks(readme), ["one\ntwo\n", "three\n"]);
}

#[tokio::test]
async fn the_readme_quick_start_works_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let blocks = quick_start_blocks(&readme);
    assert!(blocks.len() >= 4, "the story has its steps: {blocks:?}");
    let script = blocks.join("\n");
    assert!(
        script.contains(README_SERVER) && script.contains(README_TOKEN),
        "the Quick start sets TELLIFY_SERVER and the admin token as the test expects"
    );

    let smtp = SmtpSink::start().await;
    let root = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let admin = "tfy_quickstart_admin_token_0123456789";
    let binary = Path::new(env!("CARGO_BIN_EXE_tellify"));
    let mut server = tokio::process::Command::new(binary)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(root.path().join("data"))
        .current_dir(root.path())
        .env("TELLIFY_LOG", "warn")
        .env("TELLIFY_BOOTSTRAP_TOKEN", admin)
        .env("TELLIFY_SMTP__HOST", "127.0.0.1")
        .env("TELLIFY_SMTP__PORT", smtp.port.to_string())
        .env("TELLIFY_SMTP__SECURITY", "none")
        .env("TELLIFY_SMTP__FROM", "tellify@example.com")
        .env_remove("TELLIFY_TOKEN")
        .env_remove("TELLIFY_SERVER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("tellify serve");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut healthy = false;
    for _ in 0..200 {
        if let Ok(answer) = client.get(format!("{base}/healthz")).send().await {
            healthy = answer.status().is_success();
            if healthy {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthy, "the server answers /healthz");

    // The README's placeholders become this server and its admin token; `tellify` is the
    // binary under test (the alias line stays: a script does not expand aliases).
    let script = script
        .replace(README_SERVER, &base)
        .replace(README_TOKEN, admin);
    let path = format!(
        "{}:{}",
        binary.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let shell = format!(
        "set -euo pipefail\ntrap 'echo \"quick start command failed: $BASH_COMMAND\" >&2' ERR\n{script}"
    );
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("bash")
            .arg("-c")
            .arg(&shell)
            .current_dir(root.path())
            .env("PATH", path)
            .env("TELLIFY_LOG", "warn")
            .env_remove("TELLIFY_TOKEN")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("the Quick start finishes within 2 minutes")
    .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "every Quick start command exits 0\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );

    // ann's disk alert fired and she acknowledged it.
    let alerts: Value = client
        .get(format!("{base}/api/v1/alerts?state=all"))
        .bearer_auth(admin)
        .send()
        .await
        .expect("alerts")
        .json()
        .await
        .expect("json");
    let disk = alerts["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|alert| alert["fields"]["fs"] == "/home")
        .unwrap_or_else(|| panic!("the /home alert fired: {alerts}"));
    assert_eq!(disk["severity"], "critical", "{disk}");
    assert_eq!(disk["acked"], true, "{disk}");

    // And she heard about it by email, at work or at home depending on the hour.
    let mut heard = false;
    for _ in 0..300 {
        heard = smtp.mails().iter().any(|mail| {
            mail.to
                .iter()
                .any(|to| to.contains("ann@work.example") || to.contains("ann@home.example"))
                && mail.data.contains("/home")
        });
        if heard {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = server.kill().await;
    assert!(
        heard,
        "an email about /home reached ann: {:?}",
        smtp.mails()
            .iter()
            .map(|mail| (&mail.to, mail.header("Subject")))
            .collect::<Vec<_>>()
    );
}
