//! `tellify tokens`: API tokens (`/api/v1/tokens`).

use std::collections::HashMap;
use std::process::ExitCode;

use serde_json::{Map, Value};

use super::client::Client;
use super::output::{
    items, optional_time, print, print_json, text, truncate, use_callers_zone, Table, TITLE_WIDTH,
};
use super::Connection;

#[derive(clap::Args, Debug)]
pub struct TokensArgs {
    #[command(flatten)]
    connection: Connection,
    /// Print the server's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: TokensCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TokensCommand {
    /// List your tokens (admins: another user's with --user NAME, everyone's with --user '*').
    List {
        /// Admins: this user's tokens, or everyone's with '*'.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Create a token. Prints its secret on the first line (shown only this once), then
    /// its id.
    #[command(after_help = "Example:
  TOKEN=$(tellify tokens create ci --scope ingest --expires 90d | head -n 1)")]
    Create {
        /// A name saying what the token is for.
        name: String,
        /// ingest, user or admin; repeat for several (default user). A token never
        /// grants more than the token creating it.
        #[arg(long = "scope", value_name = "SCOPE", value_parser = ["ingest", "user", "admin"])]
        scopes: Vec<String>,
        /// Admins: create the token for this user.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// How long the token works, from 1m to 1825d (5 years), such as 90d. Without it
        /// the token never expires (unless the token creating it does; then it ends with it).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        /// The token's id (from `tellify tokens list`), not its secret.
        id: String,
    },
}

pub async fn run(args: TokensArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.connection)?;
    let json = args.json;
    match args.command {
        TokensCommand::List { user } => {
            let query: Vec<(&str, &str)> = match &user {
                Some(name) => vec![("user", name)],
                None => Vec::new(),
            };
            let page = client.get(&["tokens"], &query).await?;
            if json {
                print_json(&page)?;
            } else {
                use_callers_zone(&client).await?;
                let owners = owner_names(&client, user.as_deref()).await?;
                list(&page, owners.as_ref())?;
            }
        }
        TokensCommand::Create {
            name,
            scopes,
            user,
            expires,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), name.into());
            if !scopes.is_empty() {
                body.insert("scopes".into(), scopes.into());
            }
            if let Some(user) = user {
                body.insert("user".into(), user.into());
            }
            if let Some(expires) = expires {
                body.insert("expires".into(), expires.into());
            }
            let created = client.post(&["tokens"], Some(&Value::Object(body))).await?;
            if json {
                print_json(&created)?;
            } else {
                let secret = created
                    .get("token")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow::anyhow!("the server's answer has no `token`"))?;
                print(&format!("{secret}\nid: {}\n", text(created.get("id"))))?;
                eprintln!(
                    "created token `{}` for {} with scopes {}, {}; keep the secret now, it \
                     is not shown again",
                    text(created.get("name")),
                    text(created.get("user")),
                    scope_list(&created),
                    expiry(&created, "expiring")
                );
            }
        }
        TokensCommand::Revoke { id } => {
            client.delete(&["tokens", &id]).await?;
            if !json {
                print(&format!("revoked token {id}\n"))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// User names by id when the list spans other users (`--user`), so the table can say
/// whose each token is; `None` when every token is the caller's own.
async fn owner_names(
    client: &Client,
    user: Option<&str>,
) -> anyhow::Result<Option<HashMap<String, String>>> {
    if user.is_none() {
        return Ok(None);
    }
    let users = client.get(&["users"], &[]).await?;
    let names = items(&users)
        .iter()
        .map(|user| (text(user.get("id")), text(user.get("name"))))
        .collect();
    Ok(Some(names))
}

fn scope_list(token: &Value) -> String {
    let scopes: Vec<&str> = token
        .get("scopes")
        .and_then(Value::as_array)
        .map(|scopes| scopes.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    scopes.join(",")
}

/// `never`, or the expiry time after `prefix`.
fn expiry(token: &Value, prefix: &str) -> String {
    match token.get("expires") {
        Some(Value::String(_)) => format!("{prefix} {}", optional_time(token.get("expires")))
            .trim()
            .to_string(),
        _ if prefix.is_empty() => "never".to_string(),
        _ => "never expiring".to_string(),
    }
}

fn list(page: &Value, owners: Option<&HashMap<String, String>>) -> anyhow::Result<()> {
    let tokens = items(page);
    if tokens.is_empty() {
        eprintln!("no tokens");
        return Ok(());
    }
    let mut headers = vec!["ID", "SCOPES", "CREATED", "EXPIRES"];
    if owners.is_some() {
        headers.push("USER");
    }
    headers.push("NAME");
    let mut table = Table::new(&headers);
    for token in tokens {
        let mut row = vec![
            text(token.get("id")),
            scope_list(token),
            optional_time(token.get("created")),
            expiry(token, ""),
        ];
        if let Some(owners) = owners {
            let id = text(token.get("user_id"));
            row.push(owners.get(&id).cloned().unwrap_or(id));
        }
        row.push(truncate(&text(token.get("name")), TITLE_WIDTH));
        table.row(row);
    }
    print(&table.render())
}
