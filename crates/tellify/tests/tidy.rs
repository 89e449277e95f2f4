//! House rules checked as tests: no `unwrap()`/`expect()` in non-test code, and no SQL
//! outside `tellify-store`.

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
            // Unit tests sit at the end of a file, after `#[cfg(test)]`.
            let production = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .to_string();
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
