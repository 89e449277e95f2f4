//! `tellify subs`: subscriptions (`/api/v1/subscriptions`) and the handler kinds they
//! can use (`/api/v1/handler-kinds`).

use std::process::ExitCode;

use serde_json::{Map, Value};

use super::client::{json_argument, Client};
use super::output::{
    items, key_values, optional_time, print, print_json, print_line, text, truncate,
    use_callers_zone, Table, MESSAGE_WIDTH, TITLE_WIDTH,
};
use super::Connection;

#[derive(clap::Args, Debug)]
pub struct SubsArgs {
    #[command(flatten)]
    connection: Connection,
    /// Print the server's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: SubsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum SubsCommand {
    /// List the subscriptions you can see.
    List,
    /// Show one subscription with its parameters, health and filter errors.
    #[command(visible_alias = "show")]
    Get {
        /// The subscription's id.
        id: String,
    },
    /// Create a subscription.
    #[command(after_help = r#"Example:
  tellify subs create --kind match --title 'vr0 failures' \
    --params '{"filter": "project == \"vr0\" && status == \"fail\"", "group_by": ["block"]}'"#)]
    Create {
        #[command(flatten)]
        subscription: NewSubscription,
    },
    /// Run a subscription, not saved, over the stored events of a window (default: the last
    /// 24 hours) and show what it would have fired and when. Takes the flags of `create`;
    /// nothing is saved or notified.
    #[command(after_help = r#"Example:
  tellify subs preview --kind threshold --title 'disk' --from 48h \
    --params '{"field": "usage", "warn": 80, "critical": 95, "group_by": ["fs"]}'"#)]
    Preview {
        #[command(flatten)]
        subscription: NewSubscription,
        /// Window start: RFC 3339, or a duration meaning that long ago (`24h`, `7d`).
        #[arg(long)]
        from: Option<String>,
        /// Window end (exclusive), same forms; default now.
        #[arg(long)]
        to: Option<String>,
    },
    /// Change a subscription's title or parameters.
    Update {
        /// The subscription's id.
        id: String,
        /// A new title.
        #[arg(long)]
        title: Option<String>,
        /// The new parameters as JSON (or @FILE); they replace the old ones.
        #[arg(long, value_name = "JSON")]
        params: Option<String>,
        /// Notify with this policy ("" goes back to `default`).
        #[arg(long)]
        policy: Option<String>,
    },
    /// Delete a subscription.
    Delete {
        /// The subscription's id.
        id: String,
    },
    /// Turn a subscription on.
    Enable {
        /// The subscription's id.
        id: String,
    },
    /// Turn a subscription off: it sees no events until enabled again.
    Disable {
        /// The subscription's id.
        id: String,
    },
    /// List the handler kinds and their parameters.
    Kinds,
    /// Import an HTTP JSON engine's alert definitions as metric subscriptions; running it
    /// again updates them.
    #[command(
        after_help = "Example:\n  tellify subs import --backend http-json --url http://engine:8000"
    )]
    Import {
        /// The engine's kind; only `http-json` publishes definitions.
        #[arg(long, default_value = "http-json")]
        backend: String,
        /// The engine's base URL; its `GET /alerts` lists the definitions.
        #[arg(long)]
        url: String,
        /// Make them subscriptions of a group you belong to.
        #[arg(long)]
        group: Option<String>,
        /// Notify with this policy of yours instead of `default`.
        #[arg(long)]
        policy: Option<String>,
    },
}

/// A subscription as `subs create` and `subs preview` take it.
#[derive(clap::Args, Debug)]
struct NewSubscription {
    /// The handler kind (see `tellify subs kinds`).
    #[arg(long)]
    kind: String,
    /// A name for it, shown in lists and notifications.
    #[arg(long)]
    title: String,
    /// The kind's parameters as JSON (or @FILE).
    #[arg(long, value_name = "JSON")]
    params: Option<String>,
    /// Share it with a group you belong to.
    #[arg(long)]
    group: Option<String>,
    /// Keep its alerts firing after the condition clears, until acknowledged.
    #[arg(long)]
    latching: bool,
    /// Notify with this policy of yours instead of `default`.
    #[arg(long)]
    policy: Option<String>,
}

pub async fn run(args: SubsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.connection)?;
    let json = args.json;
    match args.command {
        SubsCommand::List => {
            let page = client.get(&["subscriptions"], &[]).await?;
            if json {
                return print_json(&page).map(|()| ExitCode::SUCCESS);
            }
            use_callers_zone(&client).await?;
            list(&page)?;
        }
        SubsCommand::Get { id } => {
            let subscription = client.get(&["subscriptions", &id], &[]).await?;
            if json {
                return print_json(&subscription).map(|()| ExitCode::SUCCESS);
            }
            use_callers_zone(&client).await?;
            print(&describe(&subscription)?)?;
        }
        SubsCommand::Create { subscription } => {
            let body = new_subscription(subscription)?;
            let created = client.post(&["subscriptions"], Some(&body)).await?;
            done(&created, "created", json)?;
        }
        SubsCommand::Preview {
            subscription,
            from,
            to,
        } => {
            let mut body = Map::new();
            body.insert("subscription".into(), new_subscription(subscription)?);
            if let Some(from) = from {
                body.insert("from".into(), from.into());
            }
            if let Some(to) = to {
                body.insert("to".into(), to.into());
            }
            let preview = client
                .post(&["subscriptions", "preview"], Some(&Value::Object(body)))
                .await?;
            if json {
                return print_json(&preview).map(|()| ExitCode::SUCCESS);
            }
            use_callers_zone(&client).await?;
            print(&preview_text(&preview))?;
        }
        SubsCommand::Update {
            id,
            title,
            params,
            policy,
        } => {
            let mut body = Map::new();
            if let Some(title) = title {
                body.insert("title".into(), title.into());
            }
            if let Some(params) = params {
                body.insert("params".into(), json_argument("--params", &params)?);
            }
            if let Some(policy) = policy {
                body.insert("policy".into(), policy.into());
            }
            if body.is_empty() {
                anyhow::bail!("nothing to update: give --title, --params or --policy");
            }
            let updated = client
                .patch(&["subscriptions", &id], &Value::Object(body))
                .await?;
            done(&updated, "updated", json)?;
        }
        SubsCommand::Delete { id } => {
            client.delete(&["subscriptions", &id]).await?;
            if !json {
                print_line(&format!("deleted subscription {id}"))?;
            }
        }
        SubsCommand::Enable { id } => {
            let changed = client.post(&["subscriptions", &id, "enable"], None).await?;
            done(&changed, "enabled", json)?;
        }
        SubsCommand::Disable { id } => {
            let changed = client
                .post(&["subscriptions", &id, "disable"], None)
                .await?;
            done(&changed, "disabled", json)?;
        }
        SubsCommand::Kinds => {
            let kinds = client.get(&["handler-kinds"], &[]).await?;
            if json {
                return print_json(&kinds).map(|()| ExitCode::SUCCESS);
            }
            print(&describe_kinds(&kinds))?;
        }
        SubsCommand::Import {
            backend,
            url,
            group,
            policy,
        } => {
            let mut body = Map::new();
            body.insert("backend".into(), backend.into());
            body.insert("url".into(), url.into());
            if let Some(group) = group {
                body.insert("group".into(), group.into());
            }
            if let Some(policy) = policy {
                body.insert("policy".into(), policy.into());
            }
            let result = client
                .post(&["subscriptions", "import"], Some(&Value::Object(body)))
                .await?;
            if json {
                return print_json(&result).map(|()| ExitCode::SUCCESS);
            }
            print_line(&format!(
                "imported {} subscriptions: {} created, {} updated",
                items_in(&result),
                text(result.get("created")),
                text(result.get("updated"))
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The body of `POST /subscriptions` (and a preview's `subscription`) from the flags.
fn new_subscription(subscription: NewSubscription) -> anyhow::Result<Value> {
    let NewSubscription {
        kind,
        title,
        params,
        group,
        latching,
        policy,
    } = subscription;
    let mut body = Map::new();
    body.insert("kind".into(), kind.into());
    body.insert("title".into(), title.into());
    if let Some(params) = params {
        body.insert("params".into(), json_argument("--params", &params)?);
    }
    if let Some(group) = group {
        body.insert("group".into(), group.into());
    }
    body.insert("latching".into(), latching.into());
    if let Some(policy) = policy {
        body.insert("policy".into(), policy.into());
    }
    Ok(Value::Object(body))
}

/// A preview as text: the window and what was scanned, each transition it would have
/// made (time in the caller's zone, severity, group key, whether it notifies, summary),
/// and why it stopped early when it did.
fn preview_text(preview: &Value) -> String {
    let mut out = format!(
        "window {} .. {}: {} events scanned, {} matched; {} transitions on {} alerts",
        optional_time(preview.get("from")),
        optional_time(preview.get("to")),
        text(preview.get("events_scanned")),
        text(preview.get("events_matched")),
        items_of(preview, "fired").len(),
        text(preview.get("alerts")),
    );
    let errors = preview.get("errors").and_then(Value::as_u64).unwrap_or(0);
    if errors > 0 {
        out.push_str(&format!("; {errors} filter or handler errors at run time"));
    }
    out.push('\n');
    if preview.get("truncated").and_then(Value::as_bool) == Some(true) {
        let reason = match preview.get("truncated_reason").and_then(Value::as_str) {
            Some("events") => "it reached the most events a preview reads",
            Some("time") => "it ran out of time",
            _ => "it reached its budget",
        };
        out.push_str(&format!(
            "stopped early ({reason}): later events were not looked at; narrow the window\n"
        ));
    }
    let fired = items_of(preview, "fired");
    if fired.is_empty() {
        out.push_str("it would not have fired in this window\n");
        return out;
    }
    let mut table = Table::new(&[
        "AT",
        "TRANSITION",
        "SEVERITY",
        "GROUP",
        "NOTIFIES",
        "COUNT",
        "SUMMARY",
    ]);
    for firing in fired {
        let notifies = match firing.get("notifies").and_then(Value::as_bool) {
            Some(true) => "yes",
            _ => "no",
        };
        table.row(vec![
            optional_time(firing.get("at")),
            text(firing.get("transition")),
            text(firing.get("severity")),
            truncate(&text(firing.get("group_key")), TITLE_WIDTH),
            notifies.to_string(),
            text(firing.get("count")),
            truncate(&text(firing.get("summary")), MESSAGE_WIDTH),
        ]);
    }
    out.push_str(&table.render());
    out
}

/// The array `key` of `value`, or nothing.
fn items_of<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// How many subscription ids an import answered with.
fn items_in(result: &Value) -> usize {
    result
        .get("subscriptions")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

fn done(subscription: &Value, what: &str, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(subscription);
    }
    print_line(&format!(
        "{what} subscription {} ({}): {}",
        text(subscription.get("id")),
        text(subscription.get("kind")),
        truncate(&text(subscription.get("title")), MESSAGE_WIDTH)
    ))
}

fn list(page: &Value) -> anyhow::Result<()> {
    let subscriptions = items(page);
    if subscriptions.is_empty() {
        eprintln!("no subscriptions");
        return Ok(());
    }
    print(&list_table(subscriptions))
}

/// The table of `subs list`; FILTER ERRORS counts the events its filter failed on.
fn list_table(subscriptions: &[Value]) -> String {
    let mut table = Table::new(&["ID", "KIND", "STATUS", "FILTER ERRORS", "OWNER", "TITLE"]);
    for subscription in subscriptions {
        let filter_errors = subscription
            .get("filter_errors")
            .and_then(|errors| errors.get("count"))
            .and_then(Value::as_u64)
            .map_or_else(String::new, |count| count.to_string());
        table.row(vec![
            text(subscription.get("id")),
            text(subscription.get("kind")),
            status(subscription),
            filter_errors,
            owner(subscription),
            truncate(&text(subscription.get("title")), MESSAGE_WIDTH),
        ]);
    }
    table.render()
}

/// How often the filter failed on events and the last error, for `subs get`.
fn filter_errors_text(subscription: &Value) -> String {
    let Some(errors) = subscription.get("filter_errors").filter(|e| e.is_object()) else {
        return String::new();
    };
    let count = errors.get("count").and_then(Value::as_u64).unwrap_or(0);
    let events = if count == 1 { "event" } else { "events" };
    format!(
        "failed on {count} {events}, last at {}: {} (the filter was false for them)",
        optional_time(errors.get("last_at")),
        text(errors.get("last_error"))
    )
}

/// `enabled` or `disabled`, plus `latching` when it latches and `failing` (or
/// `disabled,failed`) while its handler fails.
fn status(subscription: &Value) -> String {
    let enabled = subscription.get("enabled").and_then(Value::as_bool) == Some(true);
    let mut status = if enabled { "enabled" } else { "disabled" }.to_string();
    if subscription.get("latching").and_then(Value::as_bool) == Some(true) {
        status.push_str(",latching");
    }
    if let Some(health) = subscription.get("health").filter(|h| h.is_object()) {
        let disabled = health.get("disabled").and_then(Value::as_bool) == Some(true);
        status.push_str(if disabled { ",failed" } else { ",failing" });
    }
    status
}

/// The last failure and how often in a row, for `subs get`.
fn health_text(subscription: &Value) -> String {
    let Some(health) = subscription.get("health").filter(|h| h.is_object()) else {
        return String::new();
    };
    let failures = health.get("failures").and_then(Value::as_u64).unwrap_or(0);
    let error = text(health.get("last_error"));
    if health.get("disabled").and_then(Value::as_bool) == Some(true) {
        format!("disabled after {failures} failures in a row: {error} (fix it, then `tellify subs enable`)")
    } else {
        format!("{failures} failure(s) in a row: {error}")
    }
}

/// `user` or `user/group` for a group subscription.
fn owner(subscription: &Value) -> String {
    let user = text(subscription.get("owner"));
    match subscription.get("group").and_then(Value::as_str) {
        Some(group) => truncate(&format!("{user}/{group}"), TITLE_WIDTH),
        None => truncate(&user, TITLE_WIDTH),
    }
}

fn describe(subscription: &Value) -> anyhow::Result<String> {
    let pairs = [
        ("id", text(subscription.get("id"))),
        ("kind", text(subscription.get("kind"))),
        ("title", text(subscription.get("title"))),
        ("status", status(subscription)),
        ("health", health_text(subscription)),
        ("filter errors", filter_errors_text(subscription)),
        ("owner", text(subscription.get("owner"))),
        ("group", text(subscription.get("group"))),
        ("policy", text(subscription.get("policy"))),
        ("created", optional_time(subscription.get("created"))),
        ("updated", optional_time(subscription.get("updated"))),
    ];
    let params = serde_json::to_string_pretty(subscription.get("params").unwrap_or(&Value::Null))?;
    let mut output = key_values(&pairs);
    output.push_str("params:\n");
    for line in params.lines() {
        output.push_str("  ");
        output.push_str(line);
        output.push('\n');
    }
    Ok(output)
}

/// Each kind as a short block: name and title, description, required fields, and its
/// parameters from the JSON schema (required ones marked).
fn describe_kinds(kinds: &Value) -> String {
    let mut output = String::new();
    for (index, kind) in items(kinds).iter().enumerate() {
        if index > 0 {
            output.push('\n');
        }
        output.push_str(&format!(
            "{} — {}\n",
            text(kind.get("name")),
            text(kind.get("title"))
        ));
        if let Some(description) = kind.get("description").and_then(Value::as_str) {
            output.push_str(&format!("  {description}\n"));
        }
        if let Some(fields) = kind.get("required_fields").and_then(Value::as_str) {
            output.push_str(&format!("  needs: {fields}\n"));
        }
        let schema = kind.get("params_schema");
        let required: Vec<&str> = schema
            .and_then(|s| s.get("required"))
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(Value::Object(properties)) = schema.and_then(|s| s.get("properties")) {
            let mut table = Table::new(&["PARAM", "", "ABOUT"]);
            for (name, property) in properties {
                let about = property
                    .get("description")
                    .and_then(Value::as_str)
                    .or_else(|| property.get("type").and_then(Value::as_str))
                    .unwrap_or("");
                let needed = if required.contains(&name.as_str()) {
                    "required"
                } else {
                    ""
                };
                table.row(vec![name.clone(), needed.to_string(), truncate(about, 80)]);
            }
            if !table.is_empty() {
                for line in table.render().lines() {
                    output.push_str("  ");
                    output.push_str(line);
                    output.push('\n');
                }
            }
        }
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_show_their_parameters_and_which_are_required() {
        let kinds = json!({"items": [{
            "name": "match", "title": "Match", "description": "Fires on a match.",
            "required_fields": "none",
            "params_schema": {"required": ["filter"], "properties": {
                "filter": {"type": "string", "description": "a CEL filter"},
                "severity": {"type": "string"}
            }}
        }]});
        let text = describe_kinds(&kinds);
        assert!(
            text.starts_with("match — Match\n  Fires on a match.\n"),
            "{text}"
        );
        assert!(text.contains("filter    required  a CEL filter"), "{text}");
        assert!(text.contains("severity            string"), "{text}");
    }

    #[test]
    fn owner_and_status_read_at_a_glance() {
        let subscription =
            json!({"owner": "alice", "group": "cad", "enabled": false, "latching": true});
        assert_eq!(owner(&subscription), "alice/cad");
        assert_eq!(status(&subscription), "disabled,latching");
        let failing = json!({"enabled": false, "health": {"failures": 5, "last_error": "its handler panicked", "disabled": true}});
        assert_eq!(status(&failing), "disabled,failed");
        assert!(health_text(&failing).contains("after 5 failures in a row: its handler panicked"));
    }

    #[test]
    fn filter_errors_show_in_the_list_and_in_get() {
        let failing = json!({
            "id": "01S", "kind": "match", "title": "disk", "owner": "ann", "enabled": true,
            "filter_errors": {"count": 3, "last_error": "event 01E: `size` does not apply to (int)",
                              "last_at": "2026-12-06T07:00:00Z"}
        });
        let quiet =
            json!({"id": "02S", "kind": "match", "title": "cpu", "owner": "ann", "enabled": true});
        let table = list_table(&[failing.clone(), quiet]);
        let header = table.lines().next().unwrap_or_default();
        assert!(header.contains("FILTER ERRORS"), "{table}");
        let row = table
            .lines()
            .find(|line| line.starts_with("01S"))
            .unwrap_or_default();
        let column = header.find("FILTER ERRORS").unwrap_or_default();
        assert_eq!(row.get(column..column + 1), Some("3"), "{table}");
        let shown = describe(&failing).unwrap();
        let line = shown
            .lines()
            .find(|line| line.starts_with("filter errors"))
            .unwrap_or_default();
        assert!(
            line.contains("failed on 3 events, last at ")
                && line.ends_with(
                    "event 01E: `size` does not apply to (int) (the filter was false for them)"
                ),
            "{shown}"
        );
        assert!(filter_errors_text(&json!({"id": "02S"})).is_empty());
    }
}
