//! `tellify alerts`: list, show and act on alerts (`/api/v1/alerts`).

use std::process::ExitCode;

use serde_json::{json, Map, Value};

use super::client::Client;
use super::output::{
    fields_text, items, key_values, optional_time, print, print_json, print_line, text, truncate,
    Table, MESSAGE_WIDTH, TITLE_WIDTH,
};
use super::Connection;

/// Most alerts the server returns in one page.
const SERVER_PAGE_LIMIT: usize = 1000;

#[derive(clap::Args, Debug)]
pub struct AlertsArgs {
    #[command(flatten)]
    connection: Connection,
    /// Print the server's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AlertsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum AlertsCommand {
    /// List alerts, newest first (firing and resolved ones unless --state says otherwise).
    List {
        /// Only alerts in this state (`all` for every state).
        #[arg(long, value_parser = ["firing", "resolved", "cleared", "all"])]
        state: Option<String>,
        /// info, warning or critical.
        #[arg(long)]
        severity: Option<String>,
        /// Only alerts of this subscription (its id).
        #[arg(long, value_name = "ID")]
        subscription: Option<String>,
        /// Show at most this many.
        #[arg(
            long,
            value_name = "N",
            default_value_t = 100,
            value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000)
        )]
        limit: usize,
    },
    /// Show one alert and its history.
    Get {
        /// The alert's id.
        id: String,
    },
    /// Acknowledge an alert: notifications stop until it changes or the ack expires.
    Ack {
        /// The alert's id.
        id: String,
        /// A note for the others watching it.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// When the acknowledgement lapses: a duration (2h) or an RFC 3339 time.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
    },
    /// Shelve an alert: silence it for a while or until it resolves.
    #[command(group(clap::ArgGroup::new("how_long").required(true).args(["until", "oneshot"])))]
    Shelve {
        /// The alert's id.
        id: String,
        /// Until when: a duration (30m) or an RFC 3339 time.
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// Until the alert next resolves.
        #[arg(long)]
        oneshot: bool,
        /// Why, for the others watching it.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Undo a shelve.
    Unshelve {
        /// The alert's id.
        id: String,
    },
    /// Clear a resolved alert from the default list.
    Clear {
        /// The alert's id.
        id: String,
    },
}

pub async fn run(args: AlertsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.connection)?;
    let json = args.json;
    match args.command {
        AlertsCommand::List {
            state,
            severity,
            subscription,
            limit,
        } => {
            let filters = Filters {
                state,
                severity,
                subscription,
            };
            list(&client, &filters, limit, json).await?;
        }
        AlertsCommand::Get { id } => {
            let alert = client.get(&["alerts", &id], &[]).await?;
            if json {
                print_json(&alert)?;
            } else {
                print(&describe(&alert))?;
            }
        }
        AlertsCommand::Ack { id, note, expires } => {
            let mut body = Map::new();
            if let Some(note) = note {
                body.insert("note".into(), note.into());
            }
            if let Some(expires) = expires {
                body.insert("expires".into(), expires.into());
            }
            act(&client, &id, "ack", Some(Value::Object(body)), json).await?;
        }
        AlertsCommand::Shelve {
            id,
            until,
            oneshot,
            reason,
        } => {
            let body = json!({"until": until, "oneshot": oneshot, "reason": reason});
            act(&client, &id, "shelve", Some(body), json).await?;
        }
        AlertsCommand::Unshelve { id } => act(&client, &id, "unshelve", None, json).await?,
        AlertsCommand::Clear { id } => act(&client, &id, "clear", None, json).await?,
    }
    Ok(ExitCode::SUCCESS)
}

struct Filters {
    state: Option<String>,
    severity: Option<String>,
    subscription: Option<String>,
}

/// Fetches up to `limit` alerts, following the server's cursor across pages.
async fn list(client: &Client, filters: &Filters, limit: usize, json: bool) -> anyhow::Result<()> {
    let mut alerts: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_limit = (limit - alerts.len()).min(SERVER_PAGE_LIMIT).to_string();
        let mut query: Vec<(&str, &str)> = vec![("limit", &page_limit)];
        if let Some(state) = &filters.state {
            query.push(("state", state));
        }
        if let Some(severity) = &filters.severity {
            query.push(("severity", severity));
        }
        if let Some(subscription) = &filters.subscription {
            query.push(("subscription", subscription));
        }
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor));
        }
        let page = client.get(&["alerts"], &query).await?;
        alerts.extend(items(&page).iter().cloned());
        cursor = page.get("next").and_then(Value::as_str).map(String::from);
        if cursor.is_none() || alerts.len() >= limit {
            break;
        }
    }
    // The server gives a cursor whenever a page is full, so there may be nothing more.
    let more = cursor.is_some();
    if json {
        return print_json(&json!({"items": alerts, "next": cursor}));
    }
    if alerts.is_empty() {
        eprintln!("no alerts");
        return Ok(());
    }
    let mut table = Table::new(&[
        "ID",
        "STATE",
        "SEVERITY",
        "FLAGS",
        "COUNT",
        "LAST SEEN",
        "TITLE",
        "GROUP",
        "MESSAGE",
    ]);
    for alert in &alerts {
        table.row(vec![
            text(alert.get("id")),
            text(alert.get("state")),
            text(alert.get("severity")),
            flags(alert),
            text(alert.get("count")),
            optional_time(alert.get("last_seen")),
            truncate(&text(alert.get("title")), TITLE_WIDTH),
            truncate(&text(alert.get("group_key")), TITLE_WIDTH),
            truncate(&text(alert.get("message")), MESSAGE_WIDTH),
        ]);
    }
    print(&table.render())?;
    if more {
        eprintln!(
            "showing the first {}; there may be more (raise --limit)",
            alerts.len()
        );
    }
    Ok(())
}

/// Acked, shelved, latched, cleared: what else is true of an alert besides its state.
fn flags(alert: &Value) -> String {
    let is = |key: &str| alert.get(key).and_then(Value::as_bool).unwrap_or(false);
    let mut flags = Vec::new();
    if is("acked") {
        flags.push("acked");
    }
    if is("shelved_oneshot") || alert.get("shelved_until").is_some_and(|v| !v.is_null()) {
        flags.push("shelved");
    }
    if is("latched") {
        flags.push("latched");
    }
    if is("cleared") {
        flags.push("cleared");
    }
    if flags.is_empty() {
        "-".to_string()
    } else {
        flags.join(",")
    }
}

async fn act(
    client: &Client,
    id: &str,
    action: &str,
    body: Option<Value>,
    json: bool,
) -> anyhow::Result<()> {
    let alert = client.post(&["alerts", id, action], body.as_ref()).await?;
    if json {
        return print_json(&alert);
    }
    let done = match action {
        "ack" => "acked",
        "shelve" => "shelved",
        "unshelve" => "unshelved",
        _ => "cleared",
    };
    print_line(&format!(
        "{done} alert {id}: {} [{}] is {} ({})",
        truncate(&text(alert.get("title")), TITLE_WIDTH),
        truncate(&text(alert.get("group_key")), TITLE_WIDTH),
        text(alert.get("state")),
        flags(&alert)
    ))
}

fn describe(alert: &Value) -> String {
    let mut pairs = vec![
        ("id", text(alert.get("id"))),
        ("title", text(alert.get("title"))),
        ("state", text(alert.get("state"))),
        ("flags", flags(alert)),
        ("severity", text(alert.get("severity"))),
        ("group", text(alert.get("group_key"))),
        ("message", text(alert.get("message"))),
        ("count", text(alert.get("count"))),
        ("first seen", optional_time(alert.get("first_seen"))),
        ("last seen", optional_time(alert.get("last_seen"))),
    ];
    if alert.get("resolved_at").is_some_and(|v| !v.is_null()) {
        pairs.push(("resolved", optional_time(alert.get("resolved_at"))));
    }
    if alert.get("acked").and_then(Value::as_bool) == Some(true) {
        let mut acked = format!(
            "by {} at {}",
            text(alert.get("acked_by")),
            optional_time(alert.get("acked_at"))
        );
        if alert.get("ack_expires").is_some_and(|v| !v.is_null()) {
            acked.push_str(&format!(
                ", until {}",
                optional_time(alert.get("ack_expires"))
            ));
        }
        if let Some(note) = alert.get("ack_note").and_then(Value::as_str) {
            acked.push_str(&format!(": {note}"));
        }
        pairs.push(("acked", acked));
    }
    let shelved_until = alert.get("shelved_until").filter(|v| !v.is_null());
    let oneshot = alert.get("shelved_oneshot").and_then(Value::as_bool) == Some(true);
    if shelved_until.is_some() || oneshot {
        let until = if oneshot {
            "until it resolves".to_string()
        } else {
            format!("until {}", optional_time(shelved_until))
        };
        let mut shelved = format!("by {} {until}", text(alert.get("shelved_by")));
        if let Some(reason) = alert.get("shelve_reason").and_then(Value::as_str) {
            shelved.push_str(&format!(": {reason}"));
        }
        pairs.push(("shelved", shelved));
    }
    pairs.push((
        "subscription",
        format!(
            "{} ({})",
            text(alert.get("subscription_id")),
            text(alert.get("kind"))
        ),
    ));
    let fields = fields_text(alert.get("fields"));
    if !fields.is_empty() {
        pairs.push(("fields", fields));
    }
    if alert.get("event_id").is_some_and(|v| !v.is_null()) {
        pairs.push(("last event", text(alert.get("event_id"))));
    }
    let mut output = key_values(&pairs);
    let history = alert
        .get("history")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !history.is_empty() {
        output.push_str("\nhistory:\n");
        let mut table = Table::new(&["AT", "ACTOR", "ACTION", "DETAIL"]);
        for entry in history {
            let detail = match entry.get("detail") {
                Some(Value::Object(map)) if map.is_empty() => String::new(),
                None | Some(Value::Null) => String::new(),
                Some(other) => truncate(&other.to_string(), MESSAGE_WIDTH),
            };
            table.row(vec![
                optional_time(entry.get("at")),
                text(entry.get("actor")),
                text(entry.get("action")),
                detail,
            ]);
        }
        for line in table.render().lines() {
            output.push_str("  ");
            output.push_str(line);
            output.push('\n');
        }
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_name_what_is_true_besides_the_state() {
        assert_eq!(flags(&json!({"acked": false})), "-");
        assert_eq!(
            flags(
                &json!({"acked": true, "shelved_until": "2030-01-01T00:00:00Z", "cleared": true})
            ),
            "acked,shelved,cleared"
        );
    }

    #[test]
    fn an_alert_shows_its_ack_and_history() {
        let alert = json!({
            "id": "a1", "title": "vr0", "state": "firing", "severity": "critical",
            "acked": true, "acked_by": "alice", "ack_note": "on it",
            "history": [{"at": "t", "actor": "tellify", "action": "fired", "detail": {}}]
        });
        let text = describe(&alert);
        assert!(
            text.contains("acked         by alice at -: on it"),
            "{text}"
        );
        assert!(text.contains("  t   tellify  fired"), "{text}");
    }
}
