use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::clock::SystemClock;
use crate::config::Settings;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory for the SQLite store (default ./tellify-data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Keep state in this PostgreSQL database instead
    /// (postgres://user:password@host:5432/database); every node names the same one.
    #[arg(long, value_name = "ADDRESS")]
    store: Option<String>,
    /// Log every event in NATS JetStream before acknowledging it (nats://host:4222,
    /// several comma-separated); needs a PostgreSQL --store.
    #[arg(long, value_name = "ADDRESS")]
    log: Option<String>,
    /// Configuration file (default ./tellify.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init_logging();
    // Listened for from the start, so a stop during start-up is not the default "die now".
    let stop_requested = stop_signal().context("cannot listen for SIGTERM and SIGINT")?;
    let config_file = crate::config::config_file(args.config.as_deref());
    let mut settings = Settings::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    if let Some(data) = args.data {
        settings.data = data;
    }
    if let Some(store) = args.store {
        settings.store = Some(store);
    }
    if let Some(log) = args.log {
        settings.log = Some(log);
    }
    let bootstrap = crate::app::Bootstrap {
        token: std::env::var("TELLIFY_BOOTSTRAP_TOKEN").ok(),
        password: std::env::var("TELLIFY_BOOTSTRAP_PASSWORD").ok(),
    };
    let app = crate::app::start(settings, Arc::new(SystemClock), bootstrap).await?;
    let state = &app.state;
    print!(
        "{}",
        summary(
            &state.settings,
            config_file.as_deref(),
            &state.channels.configured()
        )
    );
    print!(
        "{}",
        first_start_secrets(
            app.bootstrap_token.as_deref(),
            app.bootstrap_password.as_deref(),
            app.address,
            &store_flag(&state.settings),
        )
    );
    println!("tellify listening on http://{}", app.address);
    app.run_until(stop_requested).await?;
    Ok(ExitCode::SUCCESS)
}

/// The flag that names this server's store to `tellify admin` (the password hidden).
fn store_flag(settings: &Settings) -> String {
    match settings.store_location() {
        Ok(crate::config::StoreLocation::Postgres(address)) => {
            format!("--store '{}'", crate::config::redact_address(&address))
        }
        _ => format!("--data {}", settings.data.display()),
    }
}

/// What `serve` says about the `admin` user's secrets: on the first start each one that
/// was generated, shown only this once (the token first, on the line after `created user
/// `admin``; then the password and where to sign in with it); on later starts how to
/// replace a lost one.
pub fn first_start_secrets(
    token: Option<&str>,
    password: Option<&str>,
    address: SocketAddr,
    store_flag: &str,
) -> String {
    let mut text = String::new();
    if let Some(token) = token {
        text.push_str("created user `admin`; its API token (shown only this once):\n");
        text.push_str(&format!("{token}\n"));
    }
    if let Some(password) = password {
        if token.is_none() {
            text.push_str("created user `admin` (its API token from TELLIFY_BOOTSTRAP_TOKEN)\n");
        }
        text.push_str(&format!(
            "`admin`'s password, to sign in at http://{address}/ (shown only this once):\n"
        ));
        text.push_str(&format!("{password}\n"));
    }
    if token.is_none() && password.is_none() {
        text.push_str(&format!(
            "  admin     lost its token? stop tellify and run `tellify admin reset-token {store_flag}`\n"
        ));
        text.push_str(&format!(
            "  sign in   http://{address}/ (lost the password? stop tellify and run `tellify admin reset-password {store_flag}`)\n"
        ));
    }
    text
}

/// What this start runs with, one line each: where the settings came from, the data
/// directory, the address, which channels can send, and what is switched on. No secret
/// and no URL (broker URLs carry credentials) is printed.
pub fn summary(settings: &Settings, config_file: Option<&Path>, channels: &[&str]) -> String {
    let mut text = String::new();
    let mut line = |key: &str, value: String| text.push_str(&format!("  {key:<9} {value}\n"));
    line(
        "config",
        match config_file {
            Some(path) => format!("{} (then TELLIFY_ variables)", path.display()),
            None => "none: defaults and TELLIFY_ variables".to_string(),
        },
    );
    match settings.store_location() {
        Ok(crate::config::StoreLocation::Postgres(address)) => {
            line("store", crate::config::redact_address(&address))
        }
        Ok(crate::config::StoreLocation::Sqlite(directory)) => {
            let data = std::path::absolute(&directory).unwrap_or(directory);
            line("data", data.join("tellify.db").display().to_string());
        }
        Err(problem) => line("store", problem),
    }
    if let Some(log) = &settings.log {
        line(
            "log",
            format!(
                "{} (JetStream stream {})",
                crate::sources::redact(log),
                settings.jetstream.stream
            ),
        );
    }
    line("listen", format!("http://{}", settings.listen));
    let missing: Vec<&str> = ["email", "sms"]
        .into_iter()
        .filter(|kind| !channels.contains(kind))
        .collect();
    let mut channel_text = channels.join(", ");
    if !missing.is_empty() {
        let how: Vec<&str> = missing
            .iter()
            .map(|kind| match *kind {
                "email" => "email (set [smtp] host)",
                _ => "sms (set [sms] account, token, from)",
            })
            .collect();
        channel_text.push_str(&format!("; not configured: {}", how.join(", ")));
    }
    line("channels", channel_text);
    let mut sources: Vec<String> = Vec::new();
    for amqp in &settings.sources.amqp {
        sources.push(format!("amqp queue {}", amqp.queue));
    }
    for nats in &settings.sources.nats {
        sources.push(format!("nats subject {}", nats.subject));
    }
    line("sources", list_or_none(sources, "HTTP only"));
    let exports = settings
        .export
        .syslog
        .iter()
        .map(|syslog| format!("syslog {}", syslog.address))
        .collect();
    line("exports", list_or_none(exports, "none"));
    line(
        "links",
        match &settings.public_url {
            Some(_) => format!(
                "Acknowledge / Shelve links in notifications, valid {}",
                settings.links.ttl
            ),
            None => "off: set public_url so notifications can link back to tellify".to_string(),
        },
    );
    line(
        "polling",
        format!(
            "metric subscriptions, at most {} requests at once",
            settings.pollers.max_concurrency
        ),
    );
    format!("tellify {}\n{text}", env!("CARGO_PKG_VERSION"))
}

fn list_or_none(items: Vec<String>, none: &str) -> String {
    if items.is_empty() {
        none.to_string()
    } else {
        items.join(", ")
    }
}

/// Completes on the first SIGTERM (systemd, Docker, Kubernetes) or SIGINT (Ctrl-C): both
/// stop the server gracefully.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "stop requested");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!(signal = "ctrl-c", "stop requested");
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_the_config_the_store_and_what_cannot_send() {
        let mut settings = Settings {
            data: PathBuf::from("/srv/tellify"),
            ..Settings::default()
        };
        let text = summary(&settings, None, &["webhook", "chat", "engine"]);
        assert!(
            text.contains("config    none: defaults and TELLIFY_ variables"),
            "{text}"
        );
        assert!(text.contains("data      /srv/tellify/tellify.db"), "{text}");
        assert!(text.contains("listen    http://127.0.0.1:8080"), "{text}");
        assert!(
            text.contains("not configured: email (set [smtp] host), sms (set [sms]"),
            "{text}"
        );
        assert!(text.contains("sources   HTTP only"), "{text}");
        assert!(
            text.contains("links     off: set public_url so notifications can link back"),
            "{text}"
        );

        settings.public_url = Some("https://tellify.example".to_string());
        settings.sources.nats.push(
            serde_json::from_value(serde_json::json!({
                "url": "nats://user:secret@127.0.0.1:4222", "subject": "events.>",
                "dead_letter_subject": "events.dead"
            }))
            .unwrap(),
        );
        let text = summary(
            &settings,
            Some(Path::new("tellify.toml")),
            &["email", "sms", "webhook"],
        );
        assert!(text.contains("config    tellify.toml"), "{text}");
        assert!(text.contains("sources   nats subject events.>"), "{text}");
        assert!(
            text.contains("links     Acknowledge / Shelve links in notifications, valid 72h"),
            "{text}"
        );
        assert!(!text.contains("not configured"), "{text}");
        assert!(!text.contains("secret"), "no URL, no credentials: {text}");
        assert!(!text.contains("  log "), "{text}");

        settings.store = Some("postgres://tellify:pw@db/tellify".to_string());
        settings.log = Some("nats://tellify:hunter2@nats:4222".to_string());
        let text = summary(&settings, None, &[]);
        assert!(
            text.contains("log       nats://***@nats:4222 (JetStream stream TELLIFY_EVENTS)"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }
}
