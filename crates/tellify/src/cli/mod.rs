//! The command line: `tellify serve` runs the server; every other subcommand talks to a
//! running server given by `--server`/`TELLIFY_SERVER` and `--token`/`TELLIFY_TOKEN`.

mod admin;
mod alerts;
mod audit;
mod client;
mod completions;
mod config;
mod contacts;
mod deliveries;
mod migrate_store;
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

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{ColorChoice, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "tellify",
    version,
    about = "Events in, alerts out — for everyone.",
    after_help = "--server and --token may come before the subcommand or after it."
)]
pub struct Cli {
    /// `--server` and `--token` before the subcommand (`tellify --server URL alerts
    /// list`): hidden here, shown by each client subcommand.
    #[command(flatten)]
    pub connection: LeadingConnection,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments (exiting with clap's message on a mistake), with
    /// colour only when stdout is a terminal and `NO_COLOR` is not set.
    pub fn parse_for_terminal() -> Cli {
        let command = Cli::command().color(color_choice(
            std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty()),
            std::io::stdout().is_terminal(),
        ));
        let mut matches = command.get_matches();
        Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|error| error.exit())
    }
}

/// Never colour for `NO_COLOR` or a pipe; otherwise clap decides for each stream.
fn color_choice(no_color: bool, stdout_is_terminal: bool) -> ColorChoice {
    if no_color || !stdout_is_terminal {
        ColorChoice::Never
    } else {
        ColorChoice::Auto
    }
}

/// The client options as accepted before the subcommand. Same ids as [`Connection`], so
/// clap hands a value given here to the subcommand's own (later on the line wins).
#[derive(clap::Args, Debug, Clone)]
pub struct LeadingConnection {
    /// Base URL of the tellify server.
    #[arg(long, global = true, hide = true)]
    pub server: Option<String>,
    /// API token (`tfy_...`).
    #[arg(long, global = true, hide = true)]
    pub token: Option<String>,
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
    /// Change your own dashboard password (`--password-stdin`: current and new on two
    /// lines).
    Passwd(users::PasswdArgs),
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
    /// Copy a stopped server's SQLite store into an empty PostgreSQL database
    /// (`--from sqlite://DIR --to postgres://…`), all or nothing.
    MigrateStore(migrate_store::MigrateStoreArgs),
    /// Check a configuration offline (`tellify config check [FILE]`).
    Config(config::ConfigArgs),
    /// List the audit log: who created, changed or removed users, groups and tokens
    /// (admins only).
    Audit(audit::AuditArgs),
    /// Write shell completions (bash, zsh, fish, ...) to stdout.
    Completions(completions::CompletionsArgs),
    /// Write the man page (roff) to stdout.
    Man(completions::ManArgs),
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
        Command::Passwd(args) => users::passwd(args).await,
        Command::Contacts(args) => contacts::run(args).await,
        Command::Policies(args) => policies::run(args).await,
        Command::Silences(args) => silences::run(args).await,
        Command::Deliveries(args) => deliveries::run(args).await,
        Command::Spool(args) => spool::run(args).await,
        Command::Admin(args) => admin::run(args).await,
        Command::MigrateStore(args) => migrate_store::run(args).await,
        Command::Config(args) => config::run(args).await,
        Command::Audit(args) => audit::run(args).await,
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
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

    /// Every argument a user can see says what it is for, and its default is stated
    /// once: by clap (`[default: x]`), not again in the text.
    #[test]
    fn every_visible_argument_has_help_and_no_doubled_default() {
        fn walk(command: &clap::Command, path: &str, problems: &mut Vec<String>) {
            for arg in command.get_arguments() {
                if arg.is_hide_set() {
                    continue;
                }
                let name = format!("{path} {}", arg.get_id());
                let help = arg
                    .get_long_help()
                    .or(arg.get_help())
                    .map(|help| help.to_string())
                    .unwrap_or_default();
                if help.trim().is_empty() {
                    problems.push(format!("{name}: no help text"));
                }
                let lower = help.to_lowercase();
                let shows_default = arg.get_action().takes_values()
                    && !arg.is_hide_default_value_set()
                    && !arg.get_default_values().is_empty();
                if shows_default && lower.contains("default") {
                    problems.push(format!(
                        "{name}: says its default in the text and clap shows it too: {help}"
                    ));
                }
                if lower.matches("[default:").count() > 0 {
                    problems.push(format!("{name}: writes clap's `[default: ...]` by hand"));
                }
            }
            for subcommand in command.get_subcommands() {
                walk(
                    subcommand,
                    &format!("{path} {}", subcommand.get_name()),
                    problems,
                );
            }
        }
        let mut command = super::Cli::command();
        command.build();
        let mut problems = Vec::new();
        walk(&command, "tellify", &mut problems);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn colour_is_off_for_no_color_and_for_a_pipe() {
        use clap::ColorChoice;
        assert_eq!(super::color_choice(true, true), ColorChoice::Never);
        assert_eq!(super::color_choice(false, false), ColorChoice::Never);
        assert_eq!(super::color_choice(false, true), ColorChoice::Auto);
    }
}
