//! `tellify tail`: follows `GET /api/v1/stream` (server-sent events) and prints one line
//! per new event or alert change. A dropped connection is re-opened with a short backoff;
//! what happened while it was down is not replayed (see `tellify alerts list`).

use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tellify_client::{SseItem, SseParser};

use super::client::{ApiError, Client};
use super::output::{fields_text, print_line, text, truncate, zone_override, Times};
use super::Connection;

/// The server sends a keep-alive comment every 15 s; this much silence means the
/// connection is dead even if TCP has not noticed.
const IDLE_LIMIT: Duration = Duration::from_secs(45);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// Longest message shown on a human line.
const MESSAGE_WIDTH: usize = 120;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  tellify tail
  tellify tail --filter 'project == \"vr0\" && status == \"fail\"' --events-only
  tellify tail --json | jq .")]
pub struct TailArgs {
    #[command(flatten)]
    connection: Connection,
    /// Only events matching this filter (the subscription filter language); alerts are
    /// not filtered.
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
    /// Show only events.
    #[arg(long, conflicts_with = "alerts_only")]
    events_only: bool,
    /// Show only alert changes.
    #[arg(long)]
    alerts_only: bool,
    /// Print each item's JSON as the server sent it, one per line.
    #[arg(long)]
    json: bool,
    /// Exit after this many events and alert changes.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..=1_000_000_000)
    )]
    count: Option<u64>,
}

/// How one connection ended.
enum Ending {
    /// `--count` items were printed.
    Done,
    /// The connection dropped or went silent; `connected` says whether it had worked.
    Dropped {
        connected: bool,
        cause: anyhow::Error,
    },
}

pub async fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.connection)?;
    let forced_zone = zone_override()?;
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(filter) = args.filter.as_deref() {
        query.push(("filter", filter));
    }
    if args.events_only {
        query.push(("alerts", "false"));
    }
    if args.alerts_only {
        query.push(("events", "false"));
    }
    let mut printed = 0u64;
    let mut last_id: Option<String> = None;
    let mut ever_connected = false;
    let mut backoff = FIRST_BACKOFF;
    // Asked once, before the stream opens; `--json` keeps the server's RFC 3339 times.
    let times = match (args.json, forced_zone) {
        (true, _) => Times::new(jiff::tz::TimeZone::UTC),
        (false, forced) => Times::for_caller(&client, forced).await,
    };
    loop {
        let position = Position {
            printed: &mut printed,
            last_id: &mut last_id,
        };
        match follow(&client, &query, &args, &times, position).await? {
            Ending::Done => return Ok(ExitCode::SUCCESS),
            Ending::Dropped { connected, cause } => {
                // A first connection that fails is most likely a wrong --server; later
                // failures are a restart or a network blip worth waiting out.
                if !ever_connected && !connected {
                    return Err(cause);
                }
                ever_connected |= connected;
                let what = if connected {
                    backoff = FIRST_BACKOFF;
                    "connection lost"
                } else {
                    "cannot reconnect"
                };
                eprintln!(
                    "tail: {what} ({cause:#}); retrying in {:.1}s",
                    backoff.as_secs_f64()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// How far the tail got: items printed, and the last id seen (to resume after).
struct Position<'a> {
    printed: &'a mut u64,
    last_id: &'a mut Option<String>,
}

/// Follows one connection until it ends. Errors the user must fix (a bad filter, a
/// revoked token) are returned as `Err`; anything a retry may cure is `Ending::Dropped`.
async fn follow(
    client: &Client,
    query: &[(&str, &str)],
    args: &TailArgs,
    times: &Times,
    position: Position<'_>,
) -> anyhow::Result<Ending> {
    let Position { printed, last_id } = position;
    let response = match client
        .open_stream(&["stream"], query, last_id.as_deref())
        .await
    {
        Ok(response) => response,
        Err(error) => {
            let permanent = error
                .downcast_ref::<ApiError>()
                .is_some_and(|api| !api.is_transient());
            if permanent {
                return Err(error);
            }
            return Ok(Ending::Dropped {
                connected: false,
                cause: error,
            });
        }
    };
    let mut body = response.bytes_stream();
    let mut parser = SseParser::resuming_after(last_id.clone());
    let mut connected = false;
    loop {
        let chunk = match tokio::time::timeout(IDLE_LIMIT, body.next()).await {
            Err(_silent) => {
                return Ok(Ending::Dropped {
                    connected,
                    cause: anyhow::anyhow!("no data for {}s", IDLE_LIMIT.as_secs()),
                })
            }
            Ok(None) => {
                return Ok(Ending::Dropped {
                    connected,
                    cause: anyhow::anyhow!("the server closed the stream"),
                })
            }
            Ok(Some(Err(error))) => {
                return Ok(Ending::Dropped {
                    connected,
                    cause: error.into(),
                })
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        let items = parser.push(&chunk);
        if parser.last_id() != last_id.as_deref() {
            *last_id = parser.last_id().map(str::to_string);
        }
        for item in items {
            match item.event.as_str() {
                "ready" => {
                    connected = true;
                    eprintln!("tail: connected; waiting for events and alerts");
                }
                "lagged" => {
                    let missed = serde_json::from_str::<Value>(&item.data)
                        .ok()
                        .and_then(|v| v.get("missed").and_then(Value::as_u64))
                        .unwrap_or(0);
                    eprintln!("tail: fell behind and missed {missed} items");
                }
                "event" | "alert" => {
                    print_item(&item, args.json, times)?;
                    *printed += 1;
                    if args.count.is_some_and(|count| *printed >= count) {
                        return Ok(Ending::Done);
                    }
                }
                _ => {}
            }
        }
    }
}

fn print_item(item: &SseItem, json: bool, times: &Times) -> anyhow::Result<()> {
    if json {
        return print_line(&item.data);
    }
    let line = match serde_json::from_str::<Value>(&item.data) {
        Ok(value) if item.event == "event" => event_line(&value, times),
        Ok(value) => alert_line(&value, times),
        Err(_) => format!("{}: {}", item.event, truncate(&item.data, MESSAGE_WIDTH)),
    };
    print_line(&line)
}

/// `2026-11-23 18:00:01 CET  critical  event  type  message  host=h field=value ...`
fn event_line(event: &Value, times: &Times) -> String {
    let mut parts = vec![
        times.show(&text(event.get("time"))),
        format!("{:<8}", text(event.get("severity"))),
        "event".to_string(),
    ];
    if let Some(kind) = event.get("type").and_then(Value::as_str) {
        parts.push(kind.to_string());
    }
    if let Some(message) = event.get("message").and_then(Value::as_str) {
        parts.push(truncate(message, MESSAGE_WIDTH));
    }
    let source = event.get("source");
    let mut details = Vec::new();
    for key in ["host", "component"] {
        if let Some(value) = source.and_then(|s| s.get(key)).and_then(Value::as_str) {
            details.push(format!("{key}={value}"));
        }
    }
    let fields = fields_text(event.get("fields"));
    if !fields.is_empty() {
        details.push(fields);
    }
    if !details.is_empty() {
        parts.push(truncate(&details.join(" "), 200));
    }
    parts.join("  ")
}

/// `2026-11-23 18:00:01 CET  critical  alert  firing  title  [group]  message  (fired)`
fn alert_line(notice: &Value, times: &Times) -> String {
    let alert = notice.get("alert").unwrap_or(notice);
    let changes = notice
        .get("changes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let time = changes
        .last()
        .and_then(|change| change.get("at"))
        .or_else(|| alert.get("last_seen"));
    let mut parts = vec![
        times.show(&text(time)),
        format!("{:<8}", text(alert.get("severity"))),
        "alert".to_string(),
        format!("{:<8}", text(alert.get("state"))),
        truncate(&text(alert.get("title")), 60),
    ];
    if let Some(group) = alert.get("group_key").and_then(Value::as_str) {
        if !group.is_empty() {
            parts.push(format!("[{}]", truncate(group, 60)));
        }
    }
    parts.push(truncate(&text(alert.get("message")), MESSAGE_WIDTH));
    let actions: Vec<String> = changes
        .iter()
        .map(|change| {
            let action = text(change.get("action"));
            match change.get("actor").and_then(Value::as_str) {
                Some(actor) if actor != "tellify" => format!("{action} by {actor}"),
                _ => action,
            }
        })
        .collect();
    if !actions.is_empty() {
        parts.push(format!("({})", actions.join(", ")));
    }
    parts.join("  ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc() -> Times {
        Times::new(jiff::tz::TimeZone::UTC)
    }

    #[test]
    fn lines_show_the_time_in_the_readers_zone_named() {
        let berlin = Times::new(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
        let event = json!({"time": "2026-11-23T22:30:00Z", "severity": "info", "type": "build"});
        assert_eq!(
            event_line(&event, &berlin),
            "2026-11-23 23:30:00 CET  info      event  build"
        );
        let notice = json!({
            "alert": {"state": "firing", "severity": "warning", "title": "vr0 fails",
                      "message": "status fail", "last_seen": "2027-07-01T12:05:00Z"},
            "changes": []
        });
        assert!(
            alert_line(&notice, &berlin).starts_with("2027-07-01 14:05:00 CEST  warning   alert"),
            "{}",
            alert_line(&notice, &berlin)
        );
    }

    #[test]
    fn event_lines_show_type_message_and_fields() {
        let event = json!({
            "time": "not a time", "severity": "critical", "type": "build",
            "message": "gc_t\nfailed", "source": {"host": "cad1"},
            "fields": {"block": "gc_t", "tns": -50}
        });
        assert_eq!(
            event_line(&event, &utc()),
            "not a time  critical  event  build  gc_t failed  host=cad1 block=gc_t tns=-50"
        );
    }

    #[test]
    fn alert_lines_show_state_title_group_message_and_actions() {
        let notice = json!({
            "alert": {"state": "firing", "severity": "warning", "title": "vr0 fails",
                      "group_key": "block=gc_t", "message": "status fail", "last_seen": "x"},
            "changes": [{"at": "y", "actor": "alice", "action": "acked"}]
        });
        assert_eq!(
            alert_line(&notice, &utc()),
            "y  warning   alert  firing    vr0 fails  [block=gc_t]  status fail  (acked by alice)"
        );
    }
}
