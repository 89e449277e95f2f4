//! `tellify policies`: notification policies (`/api/v1/policies`), which say when and how
//! each contact point hears about an alert.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::client::Client;
use super::output::{
    items, print, print_json, print_line, text, truncate, zone_override, Table, Times,
    MESSAGE_WIDTH, TITLE_WIDTH,
};
use super::{for_user, Connection};

#[derive(clap::Args, Debug)]
pub struct PoliciesArgs {
    #[command(flatten)]
    connection: Connection,
    /// Print the server's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Admins: manage this user's policies instead of your own.
    #[arg(long, value_name = "NAME", global = true)]
    user: Option<String>,
    #[command(subcommand)]
    command: PoliciesCommand,
}

#[derive(clap::Subcommand, Debug)]
enum PoliciesCommand {
    /// Create or replace a policy, from a JSON file or as one rule from flags.
    #[command(
        group(clap::ArgGroup::new("source").required(true).args(["file", "contacts"])),
        after_help = r#"Examples:
  tellify policies set default --contact work-email --when "mon-fri 09:00-18:00"
  tellify policies set default --contact pager --min-severity critical --repeat 1h
  tellify policies set night --contact work-email --when "not mon-fri 09:00-18:00" --hold-until 08:00
  tellify policies get default > p.json && $EDITOR p.json && tellify policies set default --file p.json

A file holds {"rules": [...]}; each rule has "when", "min_severity", "contact_points",
"mode", "repeat", "notify_resolved" and "continue". The output of `policies get` works
as is."#
    )]
    Set {
        /// 1 to 64 letters, digits, '-', '_' or '.'; subscriptions without a policy use
        /// `default`.
        name: String,
        /// The whole policy as JSON, from this file or `-` for stdin.
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with_all = ["when", "min_severity", "digest", "hold_until", "repeat", "notify_resolved"]
        )]
        file: Option<String>,
        /// One rule: a contact point to notify; repeat for more.
        #[arg(long = "contact", value_name = "NAME")]
        contacts: Vec<String>,
        /// Only at these times: `mon-fri 09:00-18:00`, `not mon-fri 09:00-18:00`,
        /// `sat,sun`, `18:00-09:00` (every day); in the user's time zone.
        #[arg(long, value_name = "WINDOW")]
        when: Option<String>,
        /// Only alerts at least this severe: info (default), warning or critical.
        #[arg(long, value_name = "SEVERITY")]
        min_severity: Option<String>,
        /// Gather notifications and send them together every PERIOD (15m).
        #[arg(long, value_name = "PERIOD", conflicts_with = "hold_until")]
        digest: Option<String>,
        /// Hold notifications until the clock next shows this time (06:00).
        #[arg(long, value_name = "HH:MM")]
        hold_until: Option<String>,
        /// Notify again this often while an alert keeps firing (1h).
        #[arg(long, value_name = "DURATION")]
        repeat: Option<String>,
        /// Also notify when an alert resolves.
        #[arg(long)]
        notify_resolved: bool,
    },
    /// List policies.
    List,
    /// Print a policy as JSON.
    Get {
        /// The policy's name.
        name: String,
    },
    /// Delete a policy.
    Delete {
        /// The policy's name.
        name: String,
    },
}

/// The flags of the one-rule form of `policies set`.
struct RuleFlags {
    contacts: Vec<String>,
    when: Option<String>,
    min_severity: Option<String>,
    digest: Option<String>,
    hold_until: Option<String>,
    repeat: Option<String>,
    notify_resolved: bool,
}

pub async fn run(args: PoliciesArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.connection)?;
    let json = args.json;
    let query = for_user(args.user.as_deref());
    let forced_zone = zone_override()?;
    match args.command {
        PoliciesCommand::Set {
            name,
            file,
            contacts,
            when,
            min_severity,
            digest,
            hold_until,
            repeat,
            notify_resolved,
        } => {
            let body = match file {
                Some(path) => policy_from_file(&path)?,
                None => policy_from_flags(RuleFlags {
                    contacts,
                    when,
                    min_severity,
                    digest,
                    hold_until,
                    repeat,
                    notify_resolved,
                })?,
            };
            let (status, policy) = client
                .call(Method::PUT, &["policies", &name], &query, Some(&body))
                .await?;
            if json {
                return print_json(&policy).map(|()| ExitCode::SUCCESS);
            }
            let done = if status == StatusCode::CREATED {
                "created"
            } else {
                "replaced"
            };
            let count = rules(&policy).len();
            let noun = if count == 1 { "rule" } else { "rules" };
            print_line(&format!(
                "{done} policy {} ({count} {noun}, contact points: {})",
                text(policy.get("name")),
                contact_points(&policy)
            ))?;
        }
        PoliciesCommand::List => {
            let page = client.get(&["policies"], &query).await?;
            if json {
                return print_json(&page).map(|()| ExitCode::SUCCESS);
            }
            let times = Times::for_caller(&client, forced_zone).await;
            list(&page, &times)?;
        }
        PoliciesCommand::Get { name } => {
            let policy = client.get(&["policies", &name], &query).await?;
            print_json(&policy)?;
        }
        PoliciesCommand::Delete { name } => {
            client
                .call_json(Method::DELETE, &["policies", &name], &query, None)
                .await?;
            if !json {
                print_line(&format!("deleted policy {name}"))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads `{"rules": [...]}` from a file or stdin (`-`). The `name` and `updated` keys of
/// `policies get` output are dropped, so a policy can be fetched, edited and set again.
fn policy_from_file(path: &str) -> anyhow::Result<Value> {
    let source = if path == "-" {
        std::io::read_to_string(std::io::stdin()).context("--file -: cannot read stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("--file: cannot read {path}"))?
    };
    let mut policy: Value = serde_json::from_str(&source)
        .with_context(|| format!("--file {path} is not valid JSON"))?;
    if let Value::Object(object) = &mut policy {
        object.remove("name");
        object.remove("updated");
    }
    Ok(policy)
}

/// A policy of one rule from the flags; the server checks every value and fills in the
/// defaults.
fn policy_from_flags(flags: RuleFlags) -> anyhow::Result<Value> {
    let mut rule = Map::new();
    if let Some(when) = &flags.when {
        let window = tellify_engine::policy::parse_window_text(when)
            .map_err(|error| anyhow::anyhow!("--when: {error}"))?;
        rule.insert("when".into(), window.to_json());
    }
    if let Some(severity) = flags.min_severity {
        rule.insert("min_severity".into(), severity.into());
    }
    rule.insert("contact_points".into(), flags.contacts.into());
    if let Some(period) = flags.digest {
        rule.insert("mode".into(), json!({ "digest": period }));
    } else if let Some(time) = flags.hold_until {
        rule.insert("mode".into(), json!({ "hold_until": time }));
    }
    if let Some(repeat) = flags.repeat {
        rule.insert("repeat".into(), repeat.into());
    }
    rule.insert("notify_resolved".into(), flags.notify_resolved.into());
    Ok(json!({ "rules": [Value::Object(rule)] }))
}

fn rules(policy: &Value) -> &[Value] {
    policy
        .get("rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Every contact point the policy's rules name, deduplicated and sorted.
fn contact_points(policy: &Value) -> String {
    let mut names = BTreeSet::new();
    for rule in rules(policy) {
        let listed = rule
            .get("contact_points")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        names.extend(listed.iter().filter_map(Value::as_str));
    }
    if names.is_empty() {
        return "-".to_string();
    }
    names.into_iter().collect::<Vec<_>>().join(",")
}

fn list(page: &Value, times: &Times) -> anyhow::Result<()> {
    let policies = items(page);
    if policies.is_empty() {
        eprintln!("no policies");
        return Ok(());
    }
    let mut table = Table::new(&["NAME", "RULES", "UPDATED", "CONTACT POINTS"]);
    for policy in policies {
        table.row(vec![
            truncate(&text(policy.get("name")), TITLE_WIDTH),
            rules(policy).len().to_string(),
            times.optional(policy.get("updated")),
            truncate(&contact_points(policy), MESSAGE_WIDTH),
        ]);
    }
    print(&table.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(contacts: &[&str]) -> RuleFlags {
        RuleFlags {
            contacts: contacts.iter().map(|name| name.to_string()).collect(),
            when: None,
            min_severity: None,
            digest: None,
            hold_until: None,
            repeat: None,
            notify_resolved: false,
        }
    }

    #[test]
    fn the_shorthand_is_one_rule_with_its_window_as_json() {
        let policy = policy_from_flags(RuleFlags {
            when: Some("mon-fri 09:00-18:00".to_string()),
            digest: Some("15m".to_string()),
            repeat: Some("1h".to_string()),
            notify_resolved: true,
            ..flags(&["work-email", "pager"])
        })
        .unwrap();
        assert_eq!(
            policy,
            json!({"rules": [{
                "when": {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:00",
                         "to": "18:00", "outside": false},
                "contact_points": ["work-email", "pager"],
                "mode": {"digest": "15m"},
                "repeat": "1h",
                "notify_resolved": true,
            }]})
        );
    }

    #[test]
    fn a_bad_window_names_the_flag() {
        let error = policy_from_flags(RuleFlags {
            when: Some("someday".to_string()),
            ..flags(&["work-email"])
        })
        .unwrap_err();
        assert!(error.to_string().starts_with("--when: "), "{error}");
    }

    #[test]
    fn contact_points_are_listed_once_each() {
        let policy = json!({"rules": [
            {"contact_points": ["b", "a"]},
            {"contact_points": ["a"]},
        ]});
        assert_eq!(contact_points(&policy), "a,b");
        assert_eq!(contact_points(&json!({"rules": []})), "-");
    }
}
