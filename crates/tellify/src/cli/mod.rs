//! The command line: `tellify serve` runs the server; every other subcommand talks to a
//! running server given by `--server`/`TELLIFY_SERVER` and `--token`/`TELLIFY_TOKEN`.

mod alerts;
mod client;
mod contacts;
mod deliveries;
mod output;
mod policies;
mod send;
mod serve;
mod silences;
mod subs;
mod tail;
mod tokens;
mod users;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::Value;

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
    /// Manage contact points: where notifications go (email, sms, webhook, chat).
    Contacts(contacts::ContactsArgs),
    /// Manage notification policies: when and how each contact point is notified.
    Policies(policies::PoliciesArgs),
    /// Manage silences: alerts matching a filter do not notify for a while.
    Silences(silences::SilencesArgs),
    /// List and show notification deliveries and their attempts.
    Deliveries(deliveries::DeliveriesArgs),
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

/// How long one of [`request`]'s requests may take, as for [`client::Client`]'s own.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends a request that [`client::Client`] has no method for (PUT, or POST and DELETE with
/// a query such as `?user=`), through the client's URL building and error handling. It
/// answers the status with the JSON body, `null` for 204 or an empty body.
///
/// This belongs in `client.rs` as `put` and a query argument on `post` and `delete`; it is
/// here until that file grows them.
async fn request(
    client: &client::Client,
    connection: &Connection,
    method: Method,
    segments: &[&str],
    query: &[(&str, &str)],
    body: Option<&Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let url = client.url(segments, query)?;
    let token = connection
        .token
        .as_deref()
        .map(str::trim)
        .unwrap_or_default();
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("tellify-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")?;
    let mut builder = http
        .request(method, url)
        .bearer_auth(token)
        .timeout(REQUEST_TIMEOUT);
    if let Some(body) = body {
        builder = builder.json(body);
    }
    let response = client.send(builder).await?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .context("the connection broke while reading the answer")?;
    if status == StatusCode::NO_CONTENT || bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((status, Value::Null));
    }
    let value = serde_json::from_slice(&bytes).context("the server's answer is not JSON")?;
    Ok((status, value))
}

/// [`request`] for its JSON answer only.
async fn request_json(
    client: &client::Client,
    connection: &Connection,
    method: Method,
    segments: &[&str],
    query: &[(&str, &str)],
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let (_, value) = request(client, connection, method, segments, query, body).await?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
