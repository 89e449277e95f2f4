//! What `tellify serve` says when it cannot start: the cause and what to do next, on
//! stderr, with a non-zero exit, and nothing created that a later start would regret.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::free_port;

/// Runs `tellify serve` to its end (it must not start), with `environment`.
fn serve(data: &Path, port: u16, extra: &[&str], environment: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tellify"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .args(extra)
        .env("TELLIFY_LOG", "warn")
        .envs(environment.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("tellify runs")
}

fn failed_with(output: &Output) -> String {
    assert!(!output.status.success(), "must not start: {output:?}");
    assert_eq!(output.status.code(), Some(1));
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn a_bad_setting_names_the_key_the_variable_what_is_expected_and_creates_nothing() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let output = serve(
        &data,
        free_port(),
        &[],
        &[("TELLIFY_NOTIFY__MAX_ATTEMPTS", "many")],
    );
    let stderr = failed_with(&output);
    assert!(stderr.contains("`notify.max_attempts`"), "{stderr}");
    assert!(stderr.contains("TELLIFY_NOTIFY__MAX_ATTEMPTS"), "{stderr}");
    assert!(stderr.contains("expected u32"), "{stderr}");
    assert!(stderr.contains("fix or remove it"), "{stderr}");
    assert!(!data.exists(), "nothing created");

    let output = serve(
        &data,
        free_port(),
        &[],
        &[("TELLIFY_HTTP__MAX_CONNECTIONS", "0")],
    );
    let stderr = failed_with(&output);
    assert!(
        stderr.contains("http.max_connections: must be 1 to 1000000 (is 0)"),
        "{stderr}"
    );
    assert!(!data.exists(), "nothing created");
}

#[test]
fn a_taken_port_says_so_and_how_to_listen_elsewhere_before_creating_a_store() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let output = serve(&data, port, &[], &[]);
    let stderr = failed_with(&output);
    assert!(
        stderr.contains(&format!(
            "address 127.0.0.1:{port} is in use — another tellify?"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--listen or TELLIFY_LISTEN"), "{stderr}");
    assert!(!data.exists(), "no store whose bootstrap token nobody saw");
}

#[test]
fn a_data_directory_that_cannot_be_made_names_the_path_and_the_fix() {
    let root = tempfile::tempdir().expect("temp dir");
    let file = root.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let data = file.join("data");
    let output = serve(&data, free_port(), &[], &[]);
    let stderr = failed_with(&output);
    assert!(
        stderr.contains(&format!(
            "cannot create the data directory {}",
            data.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--data or TELLIFY_DATA"), "{stderr}");
    assert!(stderr.contains("write permission"), "{stderr}");

    let output = serve(&file, free_port(), &[], &[]);
    let stderr = failed_with(&output);
    assert!(
        stderr.contains(&format!(
            "the data directory {} is not a directory",
            file.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_data_directory_without_write_permission_says_which_permission() {
    use std::os::unix::fs::PermissionsExt;
    if rustix::process::geteuid().is_root() {
        // Root writes through any mode bits; the unreadable-path case above still runs.
        return;
    }
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o500)).expect("chmod");
    let output = serve(&data, free_port(), &[], &[]);
    let stderr = failed_with(&output);
    assert!(
        stderr.contains(&format!(
            "cannot write in the data directory {}",
            data.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(!data.join("tellify.db").exists());
}

#[test]
fn a_start_that_fails_late_creates_no_admin_so_the_next_start_shows_its_token() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let config = root.path().join("tellify.toml");
    std::fs::write(&config, "[[export.syslog]]\naddress = \"\"\n").expect("config");
    let output = serve(
        &data,
        free_port(),
        &["--config", config.to_str().expect("utf-8 path")],
        &[],
    );
    let stderr = failed_with(&output);
    assert!(stderr.contains("export.syslog[0].address"), "{stderr}");

    // The next start, with the mistake fixed, creates the admin and shows its token.
    std::fs::write(&config, "").expect("config");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tellify"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(&data)
        .args(["--config".as_ref(), config.as_os_str()])
        .env("TELLIFY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tellify runs");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let token = lines.next().and_then(Result::ok).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.contains("created user `admin`"), "{first}");
    assert!(token.starts_with("tfy_"), "{token}");
}
