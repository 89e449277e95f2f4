//! The command line: `tellify serve` runs the server; every other subcommand talks to a
//! running server given by `--server`/`TELLIFY_SERVER` and `--token`/`TELLIFY_TOKEN`.

mod admin;
mod alerts;
mod client;
mod config;
mod contacts;
mod deliveries;
mod output;
mod policies;
mod send;
mod serve;
mod silences;
mod spool;
mod subs;
mod tail;
mod tokens;
mod users;

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
    /// Send events: key:value words as one event, --json, or stdin lines.
    Send(send::SendArgs),
    /// Follow new events and alert changes as they happen.
    Tail(tail::TailArgs),
    /// List, show, acknowledge, shelve and clear alerts.
    Alerts(alerts::AlertsArgs),
    /// Manage subscriptions and list handler kinds.
    Subs(subs::SubsArgs),
    /// Manage users and groups.
    Users(users::UsersArgs),
    /// Manage API tokens.
    Tokens(tokens::TokensArgs),
    /// Manage contact points: where notifications go (email, sms, webhook, chat, engine).
    Contacts(contacts::ContactsArgs),
    /// Manage notification policies: when and how each contact point is notified.
    Policies(policies::PoliciesArgs),
    /// Manage silences: alerts matching a filter do not notify for a while.
    Silences(silences::SilencesArgs),
    /// List and show notification deliveries and their attempts.
    Deliveries(deliveries::DeliveriesArgs),
    /// Show and replay a producer's disk spool (`tellify send --spool DIR`).
    Spool(spool::SpoolArgs),
    /// Operator commands on a stopped server's data directory (reset a lost token).
    Admin(admin::AdminArgs),
    /// Check a configuration offline (`tellify config check [FILE]`).
    Config(config::ConfigArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Send(args) => send::run(args).await,
        Command::Tail(args) => tail::run(args).await,
        Command::Alerts(args) => alerts::run(args).await,
        Command::Subs(args) => subs::run(args).await,
        Command::Users(args) => users::run(args).await,
        Command::Tokens(args) => tokens::run(args).await,
        Command::Contacts(args) => contacts::run(args).await,
        Command::Policies(args) => policies::run(args).await,
        Command::Silences(args) => silences::run(args).await,
        Command::Deliveries(args) => deliveries::run(args).await,
        Command::Spool(args) => spool::run(args).await,
        Command::Admin(args) => admin::run(args).await,
        Command::Config(args) => config::run(args).await,
    };
    match result {
        // The reader went away (`tellify tail | head`): nothing is wrong.
        Err(error) if is_broken_pipe(&error) => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `?user=NAME` when an admin acts for another user, else no query.
fn for_user(user: Option<&str>) -> Vec<(&'static str, &str)> {
    match user {
        Some(name) => vec![("user", name)],
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
