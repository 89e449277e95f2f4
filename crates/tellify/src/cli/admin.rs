//! `tellify admin ...`: what an operator does on the machine itself, with the server
//! stopped, straight on the data directory (no token needed: the file permissions are the
//! authority). Every act is audited like an admin's through the API: `reset-token` makes a
//! new API token, `reset-password` a new dashboard password.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use tellify_store::postgres::PostgresStore;
use tellify_store::sqlite::SqliteStore;
use tellify_store::{AuditRecord, Store, Token};

use super::output::print_line;
use crate::config::{Settings, StoreLocation};
use crate::data_lock::DataLock;

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Make a new API token for a user (default `admin`) when theirs is lost; works only
    /// while no server runs on the data directory, prints the token once, and audits it.
    ResetToken(ResetTokenArgs),
    /// Set a new random dashboard password for a user (default `admin`) when theirs is
    /// lost; works only while no server runs on the data directory, prints the password
    /// once, ends every dashboard session of the user, and audits it.
    ResetPassword(ResetTokenArgs),
}

#[derive(Args, Debug)]
struct ResetTokenArgs {
    /// Data directory of the stopped server (default: `data` from the configuration,
    /// `./tellify-data`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The PostgreSQL store instead of a data directory (default: `store` from the
    /// configuration). Servers on it may keep running: the reset is one transaction.
    #[arg(long, value_name = "ADDRESS", conflicts_with = "data")]
    store: Option<String>,
    /// Configuration file to read `data` and `store` from (default ./tellify.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Whose token or password to reset.
    #[arg(long, default_value = "admin")]
    user: String,
}

/// The token name prefix of tokens made here; a later reset revokes them (and the first
/// start's `bootstrap` token), not the tokens the user made for themselves.
const RECOVERY_PREFIX: &str = "recovery-";

pub async fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AdminCommand::ResetToken(args) => reset_token(args).await,
        AdminCommand::ResetPassword(args) => reset_password(args).await,
    }
}

/// Opens the store: a stopped server's data directory, holding its lock (`what` says
/// what for, in the refusal when a server runs), or the PostgreSQL store, which needs no
/// lock.
async fn open_stopped_store(
    args: &ResetTokenArgs,
    what: &str,
) -> anyhow::Result<(Option<DataLock>, Box<dyn Store>)> {
    let mut settings = match &args.data {
        Some(data) => Settings {
            data: data.clone(),
            ..Settings::default()
        },
        None => Settings::load(args.config.as_deref())?,
    };
    if let Some(store) = &args.store {
        settings.store = Some(store.clone());
    }
    let location = settings
        .store_location()
        .map_err(|problem| anyhow::anyhow!("store: {problem}"))?;
    let data = match location {
        StoreLocation::Postgres(address) => {
            let store = PostgresStore::open(&address).await.with_context(|| {
                format!(
                    "cannot open the PostgreSQL store at {}",
                    crate::config::redact_address(&address)
                )
            })?;
            return Ok((None, Box::new(store)));
        }
        StoreLocation::Sqlite(data) => data,
    };
    if !data.join("tellify.db").exists() {
        anyhow::bail!(
            "no tellify store in {}: check --data; on a new directory `tellify serve` creates `admin` and prints its token and password",
            data.display()
        );
    }
    let lock = DataLock::acquire(&data, what)?;
    let store = SqliteStore::open(&data)
        .with_context(|| format!("cannot open the store in {}", data.display()))?;
    Ok((Some(lock), Box::new(store)))
}

async fn reset_token(args: ResetTokenArgs) -> anyhow::Result<ExitCode> {
    let (_lock, store) = open_stopped_store(&args, "reset a token").await?;
    let (secret, revoked) = reset(store.as_ref(), &args.user, jiff::Timestamp::now()).await?;
    eprintln!(
        "new API token for `{}` (shown only this once){}:",
        args.user,
        if revoked.is_empty() {
            String::new()
        } else {
            format!("; revoked {}", revoked.join(", "))
        }
    );
    print_line(&secret)?;
    Ok(ExitCode::SUCCESS)
}

async fn reset_password(args: ResetTokenArgs) -> anyhow::Result<ExitCode> {
    let (_lock, store) = open_stopped_store(&args, "reset a password").await?;
    let password = reset_password_of(store.as_ref(), &args.user, jiff::Timestamp::now()).await?;
    eprintln!(
        "new dashboard password for `{}` (shown only this once); their sessions ended:",
        args.user
    );
    print_line(&password)?;
    Ok(ExitCode::SUCCESS)
}

/// Sets a new random password for the user, ends every dashboard session of theirs, and
/// audits it (never the password); returns the password.
pub async fn reset_password_of(
    store: &dyn Store,
    user_name: &str,
    now: jiff::Timestamp,
) -> anyhow::Result<String> {
    let user = user_named(store, user_name).await?;
    let password = crate::services::people::new_password();
    let hash = crate::services::people::hash_off_thread(password.clone())
        .await
        .map_err(|error| anyhow::anyhow!("cannot hash the password: {error}"))?;
    store.set_password_hash(&user.id, Some(hash), None).await?;
    store
        .append_audit(AuditRecord {
            id: tellify_model::new_id(),
            at: now,
            actor: local_actor(),
            action: "password.reset".to_string(),
            subject: format!("user {}", user.name),
            detail: serde_json::json!({"sessions_ended": "all", "by": "tellify admin reset-password"}),
        })
        .await?;
    Ok(password)
}

/// The operator at the machine, as the audit log names them.
fn local_actor() -> String {
    let operator = std::env::var("USER").unwrap_or_else(|_| "unknown".to_string());
    format!("local:{operator}")
}

/// The user named, or an error listing the store's users.
async fn user_named(store: &dyn Store, user_name: &str) -> anyhow::Result<tellify_store::User> {
    if let Some(user) = store.user_by_name(user_name).await? {
        return Ok(user);
    }
    let names: Vec<String> = store
        .list_users()
        .await?
        .into_iter()
        .map(|user| user.name)
        .collect();
    anyhow::bail!(
        "no user `{user_name}` in this store; its users: {}",
        names.join(", ")
    )
}

/// Makes the new token, revokes earlier bootstrap and recovery tokens of the user, and
/// audits it; returns the secret and the names of the revoked tokens.
pub async fn reset(
    store: &dyn Store,
    user_name: &str,
    now: jiff::Timestamp,
) -> anyhow::Result<(String, Vec<String>)> {
    let user = user_named(store, user_name).await?;
    let mut revoked = Vec::new();
    for token in store.list_tokens(Some(&user.id)).await? {
        if token.name == "bootstrap" || token.name.starts_with(RECOVERY_PREFIX) {
            store.delete_token(&token.id).await?;
            revoked.push(token.name);
        }
    }
    let (secret, hash) = crate::auth::new_token();
    let name = format!("{RECOVERY_PREFIX}{}", now.strftime("%Y%m%dT%H%M%SZ"));
    let scope = if user.admin { "admin" } else { "user" };
    store
        .create_token(Token {
            id: tellify_model::new_id(),
            user_id: user.id.clone(),
            name: name.clone(),
            scopes: vec![scope.to_string()],
            hash,
            created: now,
            expires: None,
        })
        .await?;
    store
        .append_audit(AuditRecord {
            id: tellify_model::new_id(),
            at: now,
            actor: local_actor(),
            action: "token.reset".to_string(),
            subject: format!("user {}", user.name),
            detail: serde_json::json!({"token": name, "scope": scope, "revoked": revoked}),
        })
        .await?;
    Ok((secret, revoked))
}
