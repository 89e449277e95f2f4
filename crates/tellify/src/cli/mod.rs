//! The command line: `tellify serve` runs the server; every other subcommand talks to a
//! running server given by `--server`/`TELLIFY_SERVER` and `--token`/`TELLIFY_TOKEN`.

mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "tellify",
    version,
    about = "Events in, alerts out — for everyone."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the server is and who we are, for client subcommands.
#[derive(clap::Args, Debug, Clone)]
pub struct Connection {
    /// Base URL of the tellify server.
    #[arg(
        long,
        env = "TELLIFY_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// API token (`tfy_...`).
    #[arg(long, env = "TELLIFY_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (HTTP API and worker) on the embedded store.
    Serve(serve::ServeArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
    }
}
