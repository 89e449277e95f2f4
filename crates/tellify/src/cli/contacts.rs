//! `tellify contacts`: contact points (`/api/v1/contact-points`), the places a user's
//! notifications go.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Map, Value};

use super::client::Client;
use super::output::{
    items, print, print_json, print_line, text, truncate, zone_override, Table, Times,
    MESSAGE_WIDTH, TITLE_WIDTH,
};
use super::{for_user, Connection};

#[derive(clap::Args, Debug)]
pub struct ContactsArgs {
    #[command(flatten)]
    connection: Connection,
    /// Print the server's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Admins: manage this user's contact points instead of your own.
    #[arg(long, value_name = "NAME", global = true)]
    user: Option<String>,
    #[command(subcommand)]
    command: ContactsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ContactsCommand {
    /// Add a contact point. A webhook gets a signing secret, printed only this once.
    #[command(after_help = "Examples:
  tellify contacts create work-email --kind email --address ana@example.com
  tellify contacts create pager --kind sms --address +4915112345678
  tellify contacts create hooks --kind webhook --address https://example.com/tellify")]
    Create {
        /// 1 to 64 letters, digits, '-', '_' or '.'; policies refer to it by this name.
        name: String,
        /// The channel: where and how the message goes.
        #[arg(long, value_parser = ["email", "sms", "webhook", "chat", "engine"])]
        kind: String,
        /// An email address, an E.164 phone number (+4915112345678), an http(s) URL
        /// for webhook and chat, or an HTTP JSON engine's base URL for engine.
        #[arg(long, value_name = "ADDR")]
        address: String,
        /// Webhooks: the HMAC signing secret (at least 16 characters); one is generated
        /// when absent.
        #[arg(long, value_name = "SECRET")]
        secret: Option<String>,
    },
    /// List contact points.
    List,
    /// Delete a contact point (refused while policies name it, unless --force).
    Delete {
        /// The contact point's name.
        name: String,
        /// Also take it out of the policies that name it (a rule left without contact
        /// points goes; a policy left without rules is deleted).
        #[arg(long)]
        force: bool,
    },
    /// Send a test message now and print the provider's answer; fails with the
    /// provider's error.
    Test {
        /// The contact point's name.
        name: String,
    },
}

pub async fn run(args: ContactsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.connection)?;
    let json = args.json;
    let query = for_user(args.user.as_deref());
    let forced_zone = zone_override()?;
    match args.command {
        ContactsCommand::Create {
            name,
            kind,
            address,
            secret,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), name.into());
            body.insert("kind".into(), kind.into());
            body.insert("address".into(), address.into());
            if let Some(secret) = secret {
                body.insert("secret".into(), secret.into());
            }
            let body = Value::Object(body);
            let created = client
                .call_json(Method::POST, &["contact-points"], &query, Some(&body))
                .await?;
            if json {
                return print_json(&created).map(|()| ExitCode::SUCCESS);
            }
            created_text(&created)?;
        }
        ContactsCommand::List => {
            let page = client.get(&["contact-points"], &query).await?;
            if json {
                return print_json(&page).map(|()| ExitCode::SUCCESS);
            }
            let times = Times::for_caller(&client, forced_zone).await;
            list(&page, &times)?;
        }
        ContactsCommand::Delete { name, force } => {
            let mut query = query.clone();
            if force {
                query.push(("force", "true"));
            }
            client
                .call_json(Method::DELETE, &["contact-points", &name], &query, None)
                .await?;
            if !json {
                print_line(&format!("deleted contact point {name}"))?;
            }
        }
        ContactsCommand::Test { name } => {
            // A failed test is a 502 whose detail is the provider's error; it comes back
            // as an error and so a nonzero exit.
            let result = client
                .call_json(
                    Method::POST,
                    &["contact-points", &name, "test"],
                    &query,
                    None,
                )
                .await?;
            if json {
                return print_json(&result).map(|()| ExitCode::SUCCESS);
            }
            print_line(&format!(
                "test sent to {}: {}",
                text(result.get("contact_point")),
                text(result.get("answer"))
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The created contact point; a generated webhook secret goes on its own line, with a
/// note on stderr that it is not shown again.
fn created_text(created: &Value) -> anyhow::Result<()> {
    print_line(&format!(
        "created {} contact point {}: {}",
        text(created.get("kind")),
        text(created.get("name")),
        truncate(&text(created.get("address")), MESSAGE_WIDTH)
    ))?;
    if let Some(secret) = created.get("secret").and_then(Value::as_str) {
        print_line(&format!("secret: {secret}"))?;
        eprintln!("requests to it are signed with this secret; keep it now, it is not shown again");
    }
    if let Some(warning) = created.get("warning").and_then(Value::as_str) {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

fn list(page: &Value, times: &Times) -> anyhow::Result<()> {
    let points = items(page);
    if points.is_empty() {
        eprintln!("no contact points");
        return Ok(());
    }
    let mut table = Table::new(&["NAME", "KIND", "SIGNED", "CREATED", "ADDRESS"]);
    for point in points {
        // A `!` after the name: its channel is not configured (the warning follows).
        let mut name = truncate(&text(point.get("name")), TITLE_WIDTH);
        if point.get("warning").is_some() {
            name.push('!');
        }
        table.row(vec![
            name,
            text(point.get("kind")),
            signed(point).to_string(),
            times.optional(point.get("created")),
            truncate(&text(point.get("address")), MESSAGE_WIDTH),
        ]);
    }
    print(&table.render())?;
    // Contact points whose channel cannot send yet, each said once below the table.
    for point in points {
        if let Some(warning) = point.get("warning").and_then(Value::as_str) {
            eprintln!("warning: {}: {warning}", text(point.get("name")));
        }
    }
    Ok(())
}

/// `yes` for a webhook that signs its requests, `no` for one that does not, `-` for the
/// kinds that have no signing.
fn signed(point: &Value) -> &'static str {
    if point.get("kind").and_then(Value::as_str) != Some("webhook") {
        return "-";
    }
    if point.get("signed").and_then(Value::as_bool) == Some(true) {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_webhooks_say_whether_they_sign() {
        assert_eq!(signed(&json!({"kind": "webhook", "signed": true})), "yes");
        assert_eq!(signed(&json!({"kind": "webhook", "signed": false})), "no");
        assert_eq!(signed(&json!({"kind": "email", "signed": false})), "-");
    }
}
