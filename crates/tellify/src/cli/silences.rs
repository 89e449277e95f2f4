//! `tellify silences`: silences (`/api/v1/silences`); alerts matching a silence's filter
//! do not notify between its start and end.

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
pub struct SilencesArgs {
    #[command(flatten)]
    connection: Connection,
    /// Print the server's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Admins: manage this user's silences instead of your own.
    #[arg(long, value_name = "NAME", global = true)]
    user: Option<String>,
    #[command(subcommand)]
    command: SilencesCommand,
}

#[derive(clap::Subcommand, Debug)]
enum SilencesCommand {
    /// Silence the alerts a filter matches, from now (or --starts) until --ends.
    #[command(after_help = r#"Example:
  tellify silences create --filter 'block == "gc_t"' --ends 2h --comment 'rebuilding gc_t'"#)]
    Create {
        /// A CEL expression over the alert: its fields, `severity`, `message`, `title`,
        /// `subscription`, `group_key`, `kind`.
        #[arg(long, value_name = "EXPR")]
        filter: String,
        /// When it ends: a duration from now (2h) or an RFC 3339 time.
        #[arg(long, value_name = "WHEN")]
        ends: String,
        /// When it starts (default now): a duration from now or an RFC 3339 time.
        #[arg(long, value_name = "WHEN")]
        starts: Option<String>,
        /// Why, for whoever reads the list.
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
    },
    /// List silences.
    List,
    /// Delete a silence: matching alerts notify again at once.
    Delete {
        /// The silence's id.
        id: String,
    },
}

pub async fn run(args: SilencesArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.connection)?;
    let json = args.json;
    let query = for_user(args.user.as_deref());
    let forced_zone = zone_override()?;
    match args.command {
        SilencesCommand::Create {
            filter,
            ends,
            starts,
            comment,
        } => {
            let mut body = Map::new();
            body.insert("filter".into(), filter.into());
            body.insert("ends".into(), ends.into());
            if let Some(starts) = starts {
                body.insert("starts".into(), starts.into());
            }
            if let Some(comment) = comment {
                body.insert("comment".into(), comment.into());
            }
            let body = Value::Object(body);
            let silence = client
                .call_json(Method::POST, &["silences"], &query, Some(&body))
                .await?;
            if json {
                return print_json(&silence).map(|()| ExitCode::SUCCESS);
            }
            let times = Times::for_caller(&client, forced_zone).await;
            print_line(&format!(
                "created silence {} from {} until {}: {}",
                text(silence.get("id")),
                times.optional(silence.get("starts")),
                times.optional(silence.get("ends")),
                truncate(&text(silence.get("filter")), MESSAGE_WIDTH)
            ))?;
        }
        SilencesCommand::List => {
            let page = client.get(&["silences"], &query).await?;
            if json {
                return print_json(&page).map(|()| ExitCode::SUCCESS);
            }
            let times = Times::for_caller(&client, forced_zone).await;
            list(&page, jiff::Timestamp::now(), &times)?;
        }
        SilencesCommand::Delete { id } => {
            client
                .call_json(Method::DELETE, &["silences", &id], &query, None)
                .await?;
            if !json {
                print_line(&format!("deleted silence {id}"))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(page: &Value, now: jiff::Timestamp, times: &Times) -> anyhow::Result<()> {
    let silences = items(page);
    if silences.is_empty() {
        eprintln!("no silences");
        return Ok(());
    }
    let mut table = Table::new(&["ID", "STATE", "STARTS", "ENDS", "FILTER", "COMMENT"]);
    for silence in silences {
        table.row(vec![
            text(silence.get("id")),
            state(silence, now).to_string(),
            times.optional(silence.get("starts")),
            times.optional(silence.get("ends")),
            truncate(&text(silence.get("filter")), TITLE_WIDTH),
            truncate(&text(silence.get("comment")), MESSAGE_WIDTH),
        ]);
    }
    print(&table.render())
}

/// `pending` before it starts, `active` while it silences, `expired` after it ends.
fn state(silence: &Value, now: jiff::Timestamp) -> &'static str {
    let time = |key: &str| {
        silence
            .get(key)
            .and_then(Value::as_str)
            .and_then(|text| text.parse::<jiff::Timestamp>().ok())
    };
    match (time("starts"), time("ends")) {
        (Some(starts), _) if now < starts => "pending",
        (_, Some(ends)) if now >= ends => "expired",
        (Some(_), Some(_)) => "active",
        _ => "-",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_silence_is_pending_then_active_then_expired() {
        let silence = json!({"starts": "2030-01-01T10:00:00Z", "ends": "2030-01-01T12:00:00Z"});
        let at = |text: &str| text.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(state(&silence, at("2030-01-01T09:00:00Z")), "pending");
        assert_eq!(state(&silence, at("2030-01-01T10:00:00Z")), "active");
        assert_eq!(state(&silence, at("2030-01-01T12:00:00Z")), "expired");
        assert_eq!(state(&json!({}), at("2030-01-01T12:00:00Z")), "-");
    }
}
