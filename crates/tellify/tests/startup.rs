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
    let (summary, token) = first_start_output(&mut child);
    let _ = child.kill();
    let _ = child.wait();
    assert!(summary.contains("created user `admin`"), "{summary}");
    assert!(token.starts_with("tfy_"), "{token}");
}

/// What a first start prints up to the admin token, and the token.
fn first_start_output(child: &mut std::process::Child) -> (String, String) {
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut before = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap_or_default();
        before.push_str(&line);
        before.push('\n');
        if line.starts_with("created user `admin`") {
            break;
        }
    }
    let token = lines.next().and_then(Result::ok).unwrap_or_default();
    (before, token)
}

/// Starts `tellify serve` on `data` and `port` with stdout piped.
fn spawn_serve(data: &Path, port: u16, environment: &[(&str, &str)]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tellify"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .env("TELLIFY_LOG", "warn")
        .envs(environment.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tellify runs")
}

fn tellify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tellify"))
        .args(args)
        .env("TELLIFY_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("tellify runs")
}

fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn wait_for_health(port: u16) {
    let client = http_client();
    for _ in 0..200 {
        let answer = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await;
        if answer.is_ok_and(|answer| answer.status().is_success()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server on port {port} never answered /healthz");
}

#[test]
fn the_first_start_says_what_it_runs_with() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    // The CLI's own variables (here its time zone) are no settings, and no reason to stop.
    let mut child = spawn_serve(&data, free_port(), &[("TELLIFY_TZ", "Europe/Berlin")]);
    let (summary, token) = first_start_output(&mut child);
    let _ = child.kill();
    let _ = child.wait();
    assert!(token.starts_with("tfy_"), "{token}");
    assert!(summary.contains("config    none"), "{summary}");
    assert!(
        summary.contains(&format!("data      {}", data.join("tellify.db").display())),
        "{summary}"
    );
    assert!(
        summary.contains("not configured: email (set [smtp] host)"),
        "{summary}"
    );
    assert!(summary.contains("sources   HTTP only"), "{summary}");
}

#[tokio::test]
async fn a_lost_admin_token_is_reset_offline_and_the_reset_is_audited() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let data_arg = data.to_str().expect("utf-8 path");
    let port = free_port();
    let mut server = spawn_serve(&data, port, &[]);
    let (_, lost) = first_start_output(&mut server);
    wait_for_health(port).await;

    // Not beside a running server, and no second server on the same directory.
    let refused = tellify(&["admin", "reset-token", "--data", data_arg]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("a tellify server is running"), "{stderr}");
    let second = serve(&data, free_port(), &[], &[]);
    let stderr = failed_with(&second);
    assert!(stderr.contains("a tellify server is running"), "{stderr}");

    let _ = server.kill();
    let _ = server.wait();
    let reset = tellify(&["admin", "reset-token", "--data", data_arg]);
    assert!(reset.status.success(), "{reset:?}");
    let token = String::from_utf8_lossy(&reset.stdout).trim().to_string();
    assert!(token.starts_with("tfy_") && token != lost, "{token}");
    let stderr = String::from_utf8_lossy(&reset.stderr);
    assert!(stderr.contains("revoked bootstrap"), "{stderr}");

    let mut server = spawn_serve(&data, port, &[]);
    // A later start shows no token, and says where a lost one is replaced.
    let stdout = server.stdout.take().expect("stdout");
    let said: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .take_while(|line| !line.starts_with("tellify listening"))
        .collect();
    assert!(
        said.iter()
            .any(|line| line.contains("tellify admin reset-token --data")),
        "{said:?}"
    );
    assert!(!said.iter().any(|line| line.contains("tfy_")), "{said:?}");
    wait_for_health(port).await;
    let client = http_client();
    let me = |token: String| {
        client
            .get(format!("http://127.0.0.1:{port}/api/v1/users/me"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(me(token.clone()).await.expect("me").status(), 200);
    assert_eq!(me(lost).await.expect("me").status(), 401);
    let audit: serde_json::Value = client
        .get(format!("http://127.0.0.1:{port}/api/v1/audit"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let _ = server.kill();
    let _ = server.wait();
    let record = &audit["items"][0];
    assert_eq!(record["action"], "token.reset", "{audit}");
    assert_eq!(record["subject"], "user admin", "{audit}");
    assert!(
        record["actor"]
            .as_str()
            .unwrap_or_default()
            .starts_with("local:"),
        "{audit}"
    );
    assert_eq!(
        record["detail"]["revoked"],
        serde_json::json!(["bootstrap"])
    );

    // A directory that holds no store is named, and nothing is created there.
    let empty = root.path().join("empty");
    let missing = tellify(&[
        "admin",
        "reset-token",
        "--data",
        empty.to_str().expect("utf-8 path"),
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no tellify store"));
    assert!(!empty.exists());
}

#[test]
fn config_check_lists_every_problem_with_its_key() {
    let root = tempfile::tempdir().expect("temp dir");
    let config = root.path().join("tellify.toml");
    std::fs::write(
        &config,
        "shutdown_grace_secs = 0\n[notify]\nmax_attempts = \"many\"\nconcurrency = \"lots\"\n[http]\nmax_connections = 0\n[smtp]\nhots = \"x\"\n",
    )
    .expect("config");
    let output = tellify(&["config", "check", config.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "`notify.max_attempts`",
        "`notify.concurrency`",
        "hots",
        "http.max_connections: must be 1 to 1000000 (is 0)",
        "shutdown_grace_secs: must be 1 to 600 (is 0)",
    ] {
        assert!(stderr.contains(expected), "{expected} in {stderr}");
    }
    assert!(stderr.starts_with("5 problems:"), "{stderr}");

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tellify.example.toml");
    let output = tellify(&["config", "check", example]);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("is valid"));
}

/// Runs `tellify` as a client with `token` and `stdin`.
fn tellify_with_stdin(port: u16, token: &str, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tellify"))
        .args(args)
        .env("TELLIFY_LOG", "warn")
        .env("TELLIFY_SERVER", format!("http://127.0.0.1:{port}"))
        .env("TELLIFY_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tellify runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("tellify ends")
}

/// Whether `password` is the admin's: `tellify passwd` with it as the current password
/// succeeds (and sets `next`), with another one it is refused.
fn admin_password_is(port: u16, token: &str, password: &str, next: &str) {
    let wrong = tellify_with_stdin(
        port,
        token,
        &["passwd", "--password-stdin"],
        &format!("{password}x\n{next}\n"),
    );
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("403") && stderr.contains("current password"),
        "{stderr}"
    );
    let right = tellify_with_stdin(
        port,
        token,
        &["passwd", "--password-stdin"],
        &format!("{password}\n{next}\n"),
    );
    assert!(right.status.success(), "{right:?}");
}

/// The lines a later start prints before it listens.
fn later_start_output(child: &mut std::process::Child) -> Vec<String> {
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .take_while(|line| !line.starts_with("tellify listening"))
        .collect()
}

#[tokio::test]
async fn the_first_start_prints_the_admin_password_once_and_a_lost_one_is_reset_offline() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let data_arg = data.to_str().expect("utf-8 path");
    let port = free_port();
    let mut server = spawn_serve(&data, port, &[]);
    let lines = later_start_output(&mut server);
    let after = |start: &str| -> String {
        let at = lines
            .iter()
            .position(|line| line.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?}: {lines:?}"));
        lines.get(at + 1).cloned().unwrap_or_default()
    };
    let token = after("created user `admin`");
    let password = after("`admin`'s password");
    let said = lines
        .iter()
        .find(|line| line.starts_with("`admin`'s password"))
        .cloned()
        .unwrap_or_default();
    assert!(token.starts_with("tfy_"), "{lines:?}");
    assert!(
        said.contains(&format!("sign in at http://127.0.0.1:{port}/"))
            && said.contains("shown only this once"),
        "{said}"
    );
    assert_eq!(password.chars().count(), 24, "{password}");
    wait_for_health(port).await;
    admin_password_is(port, &token, &password, "the admin's second password");
    let _ = server.kill();
    let _ = server.wait();

    // A later start prints no password, and says how to replace a lost one.
    let mut server = spawn_serve(&data, port, &[]);
    let said = later_start_output(&mut server);
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        said.iter()
            .any(|line| line.contains("tellify admin reset-password --data")),
        "{said:?}"
    );
    assert!(
        !said.iter().any(|line| line.contains(&password)),
        "{said:?}"
    );

    let reset = tellify(&["admin", "reset-password", "--data", data_arg]);
    assert!(reset.status.success(), "{reset:?}");
    let new = String::from_utf8_lossy(&reset.stdout).trim().to_string();
    assert_eq!(new.chars().count(), 24, "{new}");
    let stderr = String::from_utf8_lossy(&reset.stderr);
    assert!(
        stderr.contains("new dashboard password for `admin`"),
        "{stderr}"
    );
    let unknown = tellify(&[
        "admin",
        "reset-password",
        "--data",
        data_arg,
        "--user",
        "zed",
    ]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("no user `zed` in this store; its users: admin"),
        "{unknown:?}"
    );

    let mut server = spawn_serve(&data, port, &[]);
    later_start_output(&mut server);
    wait_for_health(port).await;
    admin_password_is(port, &token, &new, "the admin's fourth password");
    let audit: serde_json::Value = http_client()
        .get(format!("http://127.0.0.1:{port}/api/v1/audit"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let _ = server.kill();
    let _ = server.wait();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|record| record["action"].as_str())
        .collect();
    // Newest first: the change after the reset, the reset, the first change, the creation.
    assert_eq!(
        actions,
        [
            "password.set",
            "password.reset",
            "password.set",
            "user.created"
        ],
        "{audit}"
    );
    let reset_record = &audit["items"][1];
    assert!(
        reset_record["actor"]
            .as_str()
            .unwrap_or_default()
            .starts_with("local:"),
        "{audit}"
    );
    assert_eq!(reset_record["subject"], "user admin");
    assert!(!audit.to_string().contains(&new), "{audit}");
}

#[tokio::test]
async fn a_bootstrap_password_from_the_environment_is_checked_and_then_used() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let short = serve(
        &data,
        free_port(),
        &[],
        &[("TELLIFY_BOOTSTRAP_PASSWORD", "too short")],
    );
    let stderr = failed_with(&short);
    assert!(
        stderr.contains("TELLIFY_BOOTSTRAP_PASSWORD: must be at least 10 characters"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("too short"),
        "the value is not repeated: {stderr}"
    );

    // Fixed, the next start creates the admin with it: a recognised variable, not an
    // unknown setting, and no password is printed.
    let chosen = "the operator's own admin password";
    let port = free_port();
    let mut server = spawn_serve(&data, port, &[("TELLIFY_BOOTSTRAP_PASSWORD", chosen)]);
    let said = later_start_output(&mut server);
    let at = said
        .iter()
        .position(|line| line.starts_with("created user `admin`"))
        .unwrap_or_else(|| panic!("{said:?}"));
    let token = said[at + 1].clone();
    assert!(token.starts_with("tfy_"), "{said:?}");
    assert!(
        !said.iter().any(|line| line.contains("password")),
        "{said:?}"
    );
    wait_for_health(port).await;
    admin_password_is(port, &token, chosen, "the admin's next password");
    let _ = server.kill();
    let _ = server.wait();
}
