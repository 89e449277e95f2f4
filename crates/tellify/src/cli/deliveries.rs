//! `tellify deliveries`: what was sent (`/api/v1/deliveries`): one message to one contact
//! point, carrying one or more alert transitions, with every attempt to send it.

use std::process::ExitCode;

use serde_json::{json, Value};

use super::client::Client;
use super::output::{
    items, key_values, print, print_json, text, truncate, zone_override, Table, Times,
    MESSAGE_WIDTH, TITLE_WIDTH,
};
use super::Connection;

/// Most deliveries the server returns in one page.
const SERVER_PAGE_LIMIT: usize = 500;

#[derive(clap::Args, Debug)]
pub struct DeliveriesArgs {
    #[command(flatten)]
    connection: Connection,
    /// Print the server's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: DeliveriesCommand,
}

#[derive(clap::Subcommand, Debug)]
enum DeliveriesCommand {
    /// List deliveries, newest first.
    List {
        /// Only deliveries in this state.
        #[arg(long, value_parser = ["pending", "sending", "sent", "failed"])]
        status: Option<String>,
        /// Only deliveries that carry this alert (its id).
        #[arg(long, value_name = "ID")]
        alert: Option<String>,
        /// Show at most this many.
        #[arg(
            long,
            value_name = "N",
            default_value_t = 100,
            value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000)
        )]
        limit: usize,
        /// Admins: this user's deliveries instead of your own.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Show one delivery: its alerts and every attempt to send it.
    Get {
        /// The delivery's id.
        id: String,
    },
}

pub async fn run(args: DeliveriesArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.connection)?;
    let json = args.json;
    let forced_zone = zone_override()?;
    match args.command {
        DeliveriesCommand::List {
            status,
            alert,
            limit,
            user,
        } => {
            let filters = Filters {
                status,
                alert,
                user,
            };
            list(&client, &filters, limit, json, forced_zone).await?;
        }
        DeliveriesCommand::Get { id } => {
            let delivery = client.get(&["deliveries", &id], &[]).await?;
            if json {
                print_json(&delivery)?;
            } else {
                let times = Times::for_caller(&client, forced_zone).await;
                print(&describe(&delivery, &times))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

struct Filters {
    status: Option<String>,
    alert: Option<String>,
    user: Option<String>,
}

/// Fetches up to `limit` deliveries, following the server's cursor across pages.
async fn list(
    client: &Client,
    filters: &Filters,
    limit: usize,
    json: bool,
    forced_zone: Option<jiff::tz::TimeZone>,
) -> anyhow::Result<()> {
    let mut deliveries: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_limit = (limit - deliveries.len())
            .min(SERVER_PAGE_LIMIT)
            .to_string();
        let mut query: Vec<(&str, &str)> = vec![("limit", &page_limit)];
        if let Some(status) = &filters.status {
            query.push(("status", status));
        }
        if let Some(alert) = &filters.alert {
            query.push(("alert", alert));
        }
        if let Some(user) = &filters.user {
            query.push(("user", user));
        }
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor));
        }
        let page = client.get(&["deliveries"], &query).await?;
        deliveries.extend(items(&page).iter().cloned());
        cursor = page.get("next").and_then(Value::as_str).map(String::from);
        if cursor.is_none() || deliveries.len() >= limit {
            break;
        }
    }
    // The server gives a cursor whenever a page is full, so there may be nothing more.
    let more = cursor.is_some();
    if json {
        return print_json(&json!({"items": deliveries, "next": cursor}));
    }
    if deliveries.is_empty() {
        eprintln!("no deliveries");
        return Ok(());
    }
    let times = Times::for_caller(client, forced_zone).await;
    let mut table = Table::new(&[
        "ID",
        "STATUS",
        "ATTEMPTS",
        "CREATED",
        "CONTACT POINT",
        "ITEMS",
        "SUBJECT",
        "LAST ERROR",
    ]);
    for delivery in &deliveries {
        table.row(vec![
            text(delivery.get("id")),
            text(delivery.get("status")),
            text(delivery.get("attempts")),
            times.optional(delivery.get("created")),
            contact_point(delivery),
            text(delivery.get("items")),
            truncate(&text(delivery.get("subject")), TITLE_WIDTH),
            truncate(&text(delivery.get("last_error")), MESSAGE_WIDTH),
        ]);
    }
    print(&table.render())?;
    if more {
        eprintln!(
            "showing the first {}; there may be more (raise --limit)",
            deliveries.len()
        );
    }
    Ok(())
}

/// `name (kind)`.
fn contact_point(delivery: &Value) -> String {
    truncate(
        &format!(
            "{} ({})",
            text(delivery.get("contact_point")),
            text(delivery.get("kind"))
        ),
        TITLE_WIDTH,
    )
}

fn describe(delivery: &Value, times: &Times) -> String {
    let mut pairs = vec![
        ("id", text(delivery.get("id"))),
        ("status", text(delivery.get("status"))),
        ("contact point", contact_point(delivery)),
        ("subject", text(delivery.get("subject"))),
        ("items", text(delivery.get("items"))),
        ("attempts", text(delivery.get("attempts"))),
        ("created", times.optional(delivery.get("created"))),
    ];
    let status = delivery.get("status").and_then(Value::as_str);
    if matches!(status, Some("pending" | "sending")) {
        pairs.push(("next attempt", times.optional(delivery.get("next_attempt"))));
    }
    if delivery.get("sent_at").is_some_and(|v| !v.is_null()) {
        pairs.push(("sent", times.optional(delivery.get("sent_at"))));
    }
    if delivery.get("receipt").is_some_and(|v| !v.is_null()) {
        pairs.push(("receipt", text(delivery.get("receipt"))));
    }
    if delivery.get("last_error").is_some_and(|v| !v.is_null()) {
        pairs.push(("last error", text(delivery.get("last_error"))));
    }
    let mut output = key_values(&pairs);

    let alerts = array(delivery, "alerts");
    if !alerts.is_empty() {
        output.push_str("\nalerts:\n");
        let mut table = Table::new(&["ID", "TRANSITION", "SEVERITY", "TITLE", "MESSAGE"]);
        for alert in alerts {
            table.row(vec![
                text(alert.get("id")),
                text(alert.get("transition")),
                text(alert.get("severity")),
                truncate(&text(alert.get("title")), TITLE_WIDTH),
                truncate(&text(alert.get("message")), MESSAGE_WIDTH),
            ]);
        }
        indent(&table.render(), &mut output);
    }

    let attempts = array(delivery, "attempt_log");
    if !attempts.is_empty() {
        output.push_str("\nattempts:\n");
        let mut table = Table::new(&["AT", "RESULT", "DETAIL"]);
        for attempt in attempts {
            let result = if attempt.get("ok").and_then(Value::as_bool) == Some(true) {
                "ok"
            } else {
                "failed"
            };
            table.row(vec![
                times.optional(attempt.get("at")),
                result.to_string(),
                truncate(&text(attempt.get("detail")), MESSAGE_WIDTH),
            ]);
        }
        indent(&table.render(), &mut output);
    }
    output
}

fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn indent(text: &str, output: &mut String) {
    for line in text.lines() {
        output.push_str("  ");
        output.push_str(line);
        output.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_shows_its_alerts_and_attempts() {
        let delivery = json!({
            "id": "d1", "status": "sent", "contact_point": "work-email", "kind": "email",
            "subject": "[tellify] vr0 failures", "items": 1, "attempts": 2,
            "sent_at": "t2", "receipt": "250 ok", "last_error": "421 try later",
            "alerts": [{"id": "a1", "transition": "fired", "severity": "critical",
                        "title": "vr0 failures", "message": "gc_t failed"}],
            "attempt_log": [
                {"at": "t1", "ok": false, "detail": "421 try later"},
                {"at": "t2", "ok": true, "detail": "250 ok"}
            ]
        });
        let text = describe(&delivery, &Times::new(jiff::tz::TimeZone::UTC));
        assert!(
            text.contains("contact point  work-email (email)\n"),
            "{text}"
        );
        assert!(text.contains("receipt        250 ok\n"), "{text}");
        assert!(!text.contains("next attempt"), "{text}");
        assert!(
            text.contains("  a1  fired       critical  vr0 failures  gc_t failed\n"),
            "{text}"
        );
        assert!(text.contains("  t1  failed  421 try later\n"), "{text}");
        assert!(text.contains("  t2  ok      250 ok\n"), "{text}");
    }

    #[test]
    fn a_deliverys_times_are_the_readers() {
        let delivery = json!({
            "id": "d1", "status": "sent", "created": "2026-11-23T22:30:00Z",
            "sent_at": "2027-07-01T12:05:00Z",
            "attempt_log": [{"at": "2027-07-01T12:05:00Z", "ok": true, "detail": "250 ok"}]
        });
        let berlin = Times::new(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
        let text = describe(&delivery, &berlin);
        assert!(
            text.contains("created        2026-11-23 23:30:00 CET\n"),
            "{text}"
        );
        assert!(
            text.contains("sent           2027-07-01 14:05:00 CEST\n"),
            "{text}"
        );
        assert!(
            text.contains("  2027-07-01 14:05:00 CEST  ok      250 ok\n"),
            "{text}"
        );
    }
}
