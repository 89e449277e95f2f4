use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// Configuration file (default ./tellify.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init_logging();
    // Listened for from the start, so a stop during start-up is not the default "die now".
    let stop_requested = stop_signal().context("cannot listen for SIGTERM and SIGINT")?;
    let mut settings = Settings::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    if let Some(data) = args.data {
        settings.data = data;
    }
    let bootstrap = std::env::var("TELLIFY_BOOTSTRAP_TOKEN").ok();
    let app = crate::app::start(settings, Arc::new(SystemClock), bootstrap).await?;
    if let Some(token) = &app.bootstrap_token {
        println!("created user `admin`; its API token (shown only this once):");
        println!("{token}");
    }
    println!("tellify listening on http://{}", app.address);
    app.run_until(stop_requested).await?;
    Ok(ExitCode::SUCCESS)
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
