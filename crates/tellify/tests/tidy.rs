//! House rules checked as tests: no `unwrap()`/`expect()` in non-test code, no SQL
//! outside `tellify-store`, the import rule of `crates/tellify` (only the HTTP layer and
//! the wiring import `api`; the stages import no HTTP layer), only `ingest/` appends
//! events, and only `outbound.rs` builds an HTTP client.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(directory: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Source files of every crate, without integration tests.
fn sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    for krate in std::fs::read_dir(workspace().join("crates"))
        .expect("crates dir")
        .flatten()
    {
        rust_files(&krate.path().join("src"), &mut files);
    }
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable source");
            // Unit tests sit at the end of a file, after `#[cfg(test)]`, or make up a
            // whole file that says so in its first attribute, `#![cfg(test)]`.
            let production = if text.contains("\n#![cfg(test)]\n") {
                String::new()
            } else {
                text.split("#[cfg(test)]")
                    .next()
                    .unwrap_or_default()
                    .to_string()
            };
            (path, production)
        })
        .collect()
}

#[test]
fn no_unwrap_or_expect_outside_tests() {
    let mut offenders = Vec::new();
    for (path, text) in sources() {
        // The conformance suite is test code that backends' tests call.
        if path.ends_with("conformance.rs") {
            continue;
        }
        for (number, line) in text.lines().enumerate() {
            if line.contains(".unwrap()") || line.contains(".expect(") {
                offenders.push(format!(
                    "{}:{}: {}",
                    path.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "unwrap/expect in non-test code:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn sql_lives_only_in_the_store() {
    let mut offenders = Vec::new();
    for (path, text) in sources() {
        if path.to_string_lossy().contains("tellify-store") {
            continue;
        }
        for (number, line) in text.lines().enumerate() {
            let upper = line.to_ascii_uppercase();
            let sql = [
                "SELECT ",
                "INSERT INTO",
                "UPDATE ",
                "DELETE FROM",
                "CREATE TABLE",
            ]
            .iter()
            .any(|keyword| upper.contains(keyword) && line.contains('"') && line.contains(keyword));
            if sql {
                offenders.push(format!(
                    "{}:{}: {}",
                    path.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "SQL outside tellify-store:\n{}",
        offenders.join("\n")
    );
}

/// Production code of `crates/tellify/src`, each file with its path relative to `src/`
/// (`/`-separated), its lines numbered from 1, and comments blanked.
fn tellify_sources() -> Vec<(String, Vec<(usize, String)>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable source");
            let relative = path
                .strip_prefix(&root)
                .expect("under src")
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let mut lines = Vec::new();
            for (index, line) in text.lines().enumerate() {
                // Unit tests sit at the end of a file, after `#[cfg(test)]`.
                if line.trim_start().starts_with("#[cfg(test)]") {
                    break;
                }
                lines.push((index + 1, without_comment(line).to_string()));
            }
            (relative, lines)
        })
        .collect()
}

/// `line` up to a `//` comment that is not inside a string literal.
fn without_comment(line: &str) -> &str {
    let mut in_string = false;
    let mut previous = ' ';
    for (at, character) in line.char_indices() {
        match character {
            '"' if previous != '\\' => in_string = !in_string,
            '/' if !in_string && previous == '/' => return &line[..at - 1],
            _ => {}
        }
        previous = character;
    }
    line
}

/// `code` without the whitespace that separates no two words: `use crate::{\n api }`
/// becomes `use crate::{api}`.
fn compact(code: &str) -> String {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut pending_space = false;
    for character in code.chars() {
        if character.is_whitespace() {
            pending_space = true;
            continue;
        }
        if pending_space && out.chars().next_back().is_some_and(word) && word(character) {
            out.push(' ');
        }
        pending_space = false;
        out.push(character);
    }
    out
}

/// Whether `code` names `module` as an item of a path starting at `root` (`crate`,
/// `super`, `tellify`): `crate::api::ApiError`, `crate::api;`, or `api` inside a group
/// such as `use crate::{api, config}` (after [`compact`]).
fn names_module(code: &str, root: &str, module: &str) -> bool {
    let is_boundary = |rest: &str| {
        !rest
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    };
    let direct = format!("{root}::{module}");
    for (at, _) in code.match_indices(&direct) {
        let before_ok = code[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if before_ok && is_boundary(&code[at + direct.len()..]) {
            return true;
        }
    }
    let group = format!("{root}::{{");
    for (at, _) in code.match_indices(&group) {
        let inside = &code[at + group.len()..];
        let inside = &inside[..inside.find(';').unwrap_or(inside.len())];
        for (item, _) in inside.match_indices(module) {
            let before = inside[..item].chars().next_back();
            if matches!(before, Some('{') | Some(',') | None)
                && is_boundary(&inside[item + module.len()..])
            {
                return true;
            }
        }
    }
    false
}

/// Every line of `files` whose code (a `use` statement joined over its lines, or any
/// other line) satisfies `offends`, as `path:line: code`.
fn offending_lines(
    files: &[(String, Vec<(usize, String)>)],
    exempt: impl Fn(&str) -> bool,
    offends: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut offenders = Vec::new();
    for (path, lines) in files {
        if exempt(path) {
            continue;
        }
        let mut statement = String::new();
        let mut first_line = 0;
        for (number, line) in lines {
            let trimmed = line.trim();
            let opens_use = trimmed.starts_with("use ")
                || (trimmed.starts_with("pub") && trimmed.contains(" use "));
            if statement.is_empty() && !opens_use {
                let compact = compact(trimmed);
                if offends(&compact) {
                    offenders.push(format!("src/{path}:{number}: {trimmed}"));
                }
                continue;
            }
            if statement.is_empty() {
                first_line = *number;
            }
            statement.push_str(trimmed);
            statement.push(' ');
            if trimmed.ends_with(';') {
                let compact = compact(&statement);
                if offends(&compact) {
                    offenders.push(format!("src/{path}:{first_line}: {}", statement.trim()));
                }
                statement.clear();
            }
        }
    }
    offenders
}

/// The import rule of ARCHITECTURE.md: `api/` is the HTTP face, and only the wiring
/// (`app.rs`, `main.rs`) and the other face (`cli/`) may reach into it; stages below it
/// (ingest, sources, pollers, notify, export, the worker) get what they share from
/// `services/`.
#[test]
fn only_the_http_layer_and_the_wiring_import_api() {
    let files = tellify_sources();
    let exempt = |path: &str| {
        path.starts_with("api/")
            || path.starts_with("cli/")
            || path == "app.rs"
            || path == "main.rs"
    };
    let offenders = offending_lines(&files, exempt, |code| {
        ["crate", "super", "tellify"]
            .iter()
            .any(|root| names_module(code, root, "api"))
    });
    assert!(
        offenders.is_empty(),
        "these modules import `api`; move what they need below it (services/, ingest/):\n{}",
        offenders.join("\n")
    );
}

/// The stages that take events in and send notifications out know nothing of HTTP
/// serving: no `api`, no `server`, no axum or hyper.
#[test]
fn the_stages_import_no_http_layer() {
    let files = tellify_sources();
    let stages = ["ingest/", "sources/", "pollers/", "notify/", "export/"];
    let exempt = |path: &str| !stages.iter().any(|stage| path.starts_with(stage));
    let offenders = offending_lines(&files, exempt, |code| {
        ["crate", "super", "tellify"]
            .iter()
            .any(|root| names_module(code, root, "api") || names_module(code, root, "server"))
            || code.contains("axum::")
            || code.contains("hyper::")
    });
    assert!(
        offenders.is_empty(),
        "the HTTP layer imported by a stage:\n{}",
        offenders.join("\n")
    );
}

/// Only ingest appends events, so every event reaches the backlog check, the live stream
/// and the ingest metrics (`ingest::store_events`).
#[test]
fn only_ingest_appends_events() {
    let files = tellify_sources();
    let offenders = offending_lines(
        &files,
        |path| path.starts_with("ingest/"),
        |code| code.contains("append_events("),
    );
    assert!(
        offenders.is_empty(),
        "events appended outside ingest/; call ingest::store_events:\n{}",
        offenders.join("\n")
    );
}

/// Calls to user-supplied URLs go through the outbound guard, so only `outbound.rs` (and
/// the CLI and load generator, which call tellify itself) build an HTTP client.
#[test]
fn only_outbound_builds_an_http_client() {
    let files = tellify_sources();
    let exempt =
        |path: &str| path == "outbound.rs" || path.starts_with("cli/") || path.starts_with("bin/");
    let offenders = offending_lines(&files, exempt, |code| {
        code.contains("reqwest::Client::") || code.contains("reqwest::ClientBuilder")
    });
    assert!(
        offenders.is_empty(),
        "an HTTP client built outside outbound.rs; use outbound::OutboundGuard::client:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_import_check_sees_every_spelling() {
    for code in [
        "use crate::api::ApiError;",
        "use crate::api;",
        "use crate::{api, config};",
        "use crate::{config, api::SearchSettings};",
        "use crate::{\n    api::{ApiError, AppState},\n    config,\n};",
        "pub search: crate::api::SearchSettings,",
        "use super::api::events;",
        "use tellify::api::alerta;",
    ] {
        let code = compact(code);
        assert!(
            ["crate", "super", "tellify"]
                .iter()
                .any(|root| names_module(&code, root, "api")),
            "{code}"
        );
    }
    for code in [
        "use crate::apis::Thing;",
        "use crate::services::api_like;",
        "use crate::{config, rapid};",
        "let x = my_crate::api::call();",
    ] {
        let code = compact(code);
        assert!(
            !["crate", "super", "tellify"]
                .iter()
                .any(|root| names_module(&code, root, "api")),
            "{code}"
        );
    }
    assert_eq!(compact("use crate::{\n    api,\n};"), "use crate::{api,};");
    assert_eq!(without_comment("let a = 1; // crate::api"), "let a = 1; ");
    assert_eq!(
        without_comment(r#"let url = "http://x"; // c"#),
        r#"let url = "http://x"; "#
    );
}

#[test]
fn offenders_are_named_by_file_and_line() {
    let lines = |text: &str| -> Vec<(usize, String)> {
        text.lines()
            .enumerate()
            .map(|(index, line)| (index + 1, without_comment(line).to_string()))
            .collect()
    };
    let files = vec![
        (
            "worker.rs".to_string(),
            lines("use std::sync::Arc;\n// crate::api in a comment\nuse crate::{\n    api::AppState,\n    clock::Clock,\n};\nfn f() {}"),
        ),
        ("api/events.rs".to_string(), lines("use crate::api::ApiError;")),
    ];
    let offenders = offending_lines(
        &files,
        |path| path.starts_with("api/"),
        |code| names_module(code, "crate", "api"),
    );
    assert_eq!(
        offenders,
        ["src/worker.rs:3: use crate::{ api::AppState, clock::Clock, };"]
    );
}
