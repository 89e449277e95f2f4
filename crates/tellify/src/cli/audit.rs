//! `tellify audit`: the audit log (`/api/v1/audit`, admins only): who created, changed
//! or removed users, groups and tokens, newest first.

use std::process::ExitCode;

use serde_json::Value;

use super::client::Client;
use super::output::{
    items, optional_time, print, print_json, text, truncate, use_callers_zone, Table,
};
use super::Connection;

/// Widest DETAIL cell; `--json` shows all of it.
const DETAIL_WIDTH: usize = 80;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    connection: Connection,
    /// Print the server's JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Show at most this many records, newest first (the server allows up to 1000).
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: usize,
}

pub async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.connection)?;
    let limit = args.limit.to_string();
    let page = client.get(&["audit"], &[("limit", &limit)]).await?;
    if args.json {
        print_json(&page)?;
    } else {
        use_callers_zone(&client).await?;
        list(&page)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn list(page: &Value) -> anyhow::Result<()> {
    let records = items(page);
    if records.is_empty() {
        eprintln!("no audit records");
        return Ok(());
    }
    let mut table = Table::new(&["AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL"]);
    for record in records {
        table.row(vec![
            optional_time(record.get("at")),
            text(record.get("actor")),
            text(record.get("action")),
            text(record.get("subject")),
            truncate(&detail_text(record.get("detail")), DETAIL_WIDTH),
        ]);
    }
    print(&table.render())
}

/// A record's detail on one line: `key: value` pairs, a change as `from → to`, lists
/// joined with commas, nested objects the same way in braces.
fn detail_text(detail: Option<&Value>) -> String {
    match detail {
        None | Some(Value::Null) => "-".to_string(),
        Some(value) => value_text(value),
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::Null => "none".to_string(),
        Value::String(text) => text.clone(),
        Value::Array(values) if values.is_empty() => "none".to_string(),
        Value::Array(values) => values.iter().map(value_text).collect::<Vec<_>>().join(","),
        Value::Object(map) => {
            if let (Some(from), Some(to), 2) = (map.get("from"), map.get("to"), map.len()) {
                return format!("{} → {}", value_text(from), value_text(to));
            }
            let parts: Vec<String> = map
                .iter()
                .map(|(key, value)| match value {
                    Value::Object(inner) if !(inner.contains_key("from") && inner.len() == 2) => {
                        format!("{key}: {{{}}}", value_text(value))
                    }
                    _ => format!("{key}: {}", value_text(value)),
                })
                .collect();
            parts.join(", ")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_detail_reads_as_changes_and_values_on_one_line() {
        let changed = json!({"timezone": {"from": "UTC", "to": "Europe/Berlin"},
                             "email": {"from": null, "to": "ann@example.com"}});
        assert_eq!(
            detail_text(Some(&changed)),
            "timezone: UTC → Europe/Berlin, email: none → ann@example.com"
        );
        let role = json!({"admin": {"from": false, "to": true},
                          "groups": {"joined": ["ops", "db"], "left": []}});
        assert_eq!(
            detail_text(Some(&role)),
            "admin: false → true, groups: {joined: ops,db, left: none}"
        );
        assert_eq!(
            detail_text(Some(
                &json!({"id": "01J", "scopes": ["user"], "expires": null})
            )),
            "id: 01J, scopes: user, expires: none"
        );
        assert_eq!(detail_text(None), "-");
    }
}
