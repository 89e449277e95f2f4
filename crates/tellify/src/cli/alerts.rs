//! `tellify alerts`: list, show and act on alerts (`/api/v1/alerts`).

use std::process::ExitCode;

use serde_json::{json, Map, Value};

use super::client::Client;
use super::output::{
    fields_text, items, key_values, print, print_json, print_line, text, truncate, zone_override,
    Caller, Table, Times, MESSAGE_WIDTH, TITLE_WIDTH,
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
    /// List alerts, newest first (firing and resolved ones unless --state says otherwise);
    /// for an admin, with each alert's owner.
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
        /// Print only the alert ids, newest first, one per line (for scripts:
        /// `tellify alerts ack "$(tellify alerts list -q | head -n 1)"`).
        #[arg(short, long, conflicts_with = "json")]
        quiet: bool,
    },
    /// Show one alert and its history; for an admin, with its owner.
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
    let forced_zone = zone_override()?;
    match args.command {
        AlertsCommand::List {
            state,
            severity,
            subscription,
            limit,
            quiet,
        } => {
            let filters = Filters {
                state,
                severity,
                subscription,
                quiet,
            };
            list(&client, &filters, limit, json, forced_zone).await?;
        }
        AlertsCommand::Get { id } => {
            let alert = client.get(&["alerts", &id], &[]).await?;
            if json {
                print_json(&alert)?;
            } else {
                let caller = Caller::ask(&client, forced_zone).await;
                let owner = if caller.admin {
                    let owners = Owners::fetch(&client, std::slice::from_ref(&alert)).await?;
                    Some(owners.of(&alert))
                } else {
                    None
                };
                print(&describe(&alert, &caller.times, owner))?;
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
    /// Ids only.
    quiet: bool,
}

/// Fetches up to `limit` alerts, following the server's cursor across pages.
async fn list(
    client: &Client,
    filters: &Filters,
    limit: usize,
    json: bool,
    forced_zone: Option<jiff::tz::TimeZone>,
) -> anyhow::Result<()> {
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
    if filters.quiet {
        let ids: String = alerts
            .iter()
            .map(|alert| format!("{}\n", text(alert.get("id"))))
            .collect();
        return print(&ids);
    }
    if alerts.is_empty() {
        eprintln!("no alerts");
        return Ok(());
    }
    let caller = Caller::ask(client, forced_zone).await;
    // Only an admin sees other people's alerts; everyone else's list is theirs (and their
    // groups'), so only an admin's list says whose each alert is.
    let owners = if caller.admin {
        Some(Owners::fetch(client, &alerts).await?)
    } else {
        None
    };
    print(&alerts_table(&alerts, &caller.times, owners.as_ref()))?;
    if more {
        eprintln!(
            "showing the first {}; there may be more (raise --limit)",
            alerts.len()
        );
    }
    Ok(())
}

/// The alerts as a table; with `owners`, an OWNER column before the title.
fn alerts_table(alerts: &[Value], times: &Times, owners: Option<&Owners>) -> String {
    let mut headers = vec!["ID", "STATE", "SEVERITY", "FLAGS", "COUNT", "LAST SEEN"];
    if owners.is_some() {
        headers.push("OWNER");
    }
    headers.extend(["TITLE", "GROUP", "MESSAGE"]);
    let mut table = Table::new(&headers);
    for alert in alerts {
        let mut row = vec![
            text(alert.get("id")),
            text(alert.get("state")),
            text(alert.get("severity")),
            flags(alert),
            text(alert.get("count")),
            times.optional(alert.get("last_seen")),
        ];
        if let Some(owners) = owners {
            row.push(truncate(&owners.of(alert), TITLE_WIDTH));
        }
        row.extend([
            truncate(&text(alert.get("title")), TITLE_WIDTH),
            truncate(&text(alert.get("group_key")), TITLE_WIDTH),
            truncate(&text(alert.get("message")), MESSAGE_WIDTH),
        ]);
        table.row(row);
    }
    table.render()
}

/// User and group names by id, to say whose an alert is (the API gives ids).
#[derive(Default)]
struct Owners {
    users: std::collections::HashMap<String, String>,
    groups: std::collections::HashMap<String, String>,
}

impl Owners {
    /// Reads the users (and, when a listed alert is a group's, the groups) the caller
    /// may see: one request each.
    async fn fetch(client: &Client, alerts: &[Value]) -> anyhow::Result<Owners> {
        let mut owners = Owners::default();
        let users = client.get(&["users"], &[]).await?;
        owners.users = names_by_id(&users);
        let any_group = alerts
            .iter()
            .any(|alert| alert.get("owner_group").is_some_and(Value::is_string));
        if any_group {
            let groups = client.get(&["groups"], &[]).await?;
            owners.groups = names_by_id(&groups);
        }
        Ok(owners)
    }

    /// `ann`, or `ann/ops` for an alert of a group subscription (who made it, and the
    /// group). An id no longer known (an offboarded user) is shown as it is.
    fn of(&self, alert: &Value) -> String {
        let name = |names: &std::collections::HashMap<String, String>, key: &str| {
            let id = alert.get(key).and_then(Value::as_str)?;
            Some(names.get(id).cloned().unwrap_or_else(|| id.to_string()))
        };
        let user = name(&self.users, "owner_user").unwrap_or_else(|| "-".to_string());
        match name(&self.groups, "owner_group") {
            Some(group) => format!("{user}/{group}"),
            None => user,
        }
    }
}

/// `{"items": [{"id", "name"}, ...]}` as a map from id to name.
fn names_by_id(page: &Value) -> std::collections::HashMap<String, String> {
    items(page)
        .iter()
        .filter_map(|item| {
            let id = item.get("id").and_then(Value::as_str)?;
            let name = item.get("name").and_then(Value::as_str)?;
            Some((id.to_string(), name.to_string()))
        })
        .collect()
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

/// The alert as `key  value` lines and its history; `owner` (for an admin) after the title.
fn describe(alert: &Value, times: &Times, owner: Option<String>) -> String {
    let mut pairs = vec![
        ("id", text(alert.get("id"))),
        ("title", text(alert.get("title"))),
    ];
    if let Some(owner) = owner {
        pairs.push(("owner", owner));
    }
    pairs.extend([
        ("state", text(alert.get("state"))),
        ("flags", flags(alert)),
        ("severity", text(alert.get("severity"))),
        ("group", text(alert.get("group_key"))),
        ("message", text(alert.get("message"))),
        ("count", text(alert.get("count"))),
        ("first seen", times.optional(alert.get("first_seen"))),
        ("last seen", times.optional(alert.get("last_seen"))),
    ]);
    if alert.get("resolved_at").is_some_and(|v| !v.is_null()) {
        pairs.push(("resolved", times.optional(alert.get("resolved_at"))));
    }
    if alert.get("acked").and_then(Value::as_bool) == Some(true) {
        let mut acked = format!(
            "by {} at {}",
            text(alert.get("acked_by")),
            times.optional(alert.get("acked_at"))
        );
        if alert.get("ack_expires").is_some_and(|v| !v.is_null()) {
            acked.push_str(&format!(
                ", until {}",
                times.optional(alert.get("ack_expires"))
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
            format!("until {}", times.optional(shelved_until))
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
                times.optional(entry.get("at")),
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
        let text = describe(&alert, &Times::new(jiff::tz::TimeZone::UTC), None);
        assert!(
            text.contains("acked         by alice at -: on it"),
            "{text}"
        );
        assert!(text.contains("  t   tellify  fired"), "{text}");
    }

    #[test]
    fn an_admins_table_says_whose_each_alert_is() {
        let alerts = vec![
            json!({"id": "a1", "state": "firing", "severity": "critical", "count": 1,
                   "last_seen": "2026-11-23T22:30:00Z", "title": "disks", "group_key": "",
                   "message": "full", "owner_user": "u-ann", "owner_group": null}),
            json!({"id": "a2", "state": "firing", "severity": "warning", "count": 2,
                   "last_seen": "2027-07-01T12:05:00Z", "title": "builds", "group_key": "",
                   "message": "failed", "owner_user": "u-bob", "owner_group": "g-ops"}),
            json!({"id": "a3", "state": "resolved", "severity": "info", "count": 1,
                   "last_seen": "2027-07-01T12:05:00Z", "title": "old", "group_key": "",
                   "message": "gone", "owner_user": "u-gone", "owner_group": null}),
        ];
        let owners = Owners {
            users: [("u-ann", "ann"), ("u-bob", "bob")]
                .into_iter()
                .map(|(id, name)| (id.to_string(), name.to_string()))
                .collect(),
            groups: [("g-ops".to_string(), "ops".to_string())]
                .into_iter()
                .collect(),
        };
        let berlin = Times::new(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
        let table = alerts_table(&alerts, &berlin, Some(&owners));
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].contains("LAST SEEN                 OWNER    TITLE"),
            "{table}"
        );
        assert!(
            lines[1].contains("2026-11-23 23:30:00 CET   ann      disks"),
            "{table}"
        );
        assert!(
            lines[2].contains("2027-07-01 14:05:00 CEST  bob/ops  builds"),
            "{table}"
        );
        assert!(lines[3].contains("u-gone"), "{table}");

        let table = alerts_table(&alerts, &berlin, None);
        assert!(
            !table.contains("OWNER") && !table.contains("ann"),
            "{table}"
        );
    }
}
