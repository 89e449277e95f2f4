use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

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
    let shutdown = app.shutdown_handle();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        let _ = shutdown.send(true);
    });
    app.wait().await?;
    Ok(ExitCode::SUCCESS)
}
