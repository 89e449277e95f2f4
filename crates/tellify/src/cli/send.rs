//! `tellify send`: sends events through the producer library (`tellify-client`) —
//! key:value words as one event, a JSON event or array with `--json`, or stdin lines in
//! batches. With `--spool DIR` events the server cannot take are kept on disk and
//! replayed in order later (`tellify spool replay`), instead of failing the command.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tellify_client::{EventInput, SendOutcome, SpoolReason, DEFAULT_MAX_SPOOL_BYTES};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::client::json_argument;
use super::Connection;

/// A partial stdin batch is sent once no new line has come for this long, so a slow
/// producer (`tail -f log | tellify send`) does not wait for a full batch.
const IDLE_FLUSH: Duration = Duration::from_millis(200);

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  tellify send project:vr0 block:gc_t status:fail tns:-50
  tellify send --json '{\"type\": \"deploy\", \"fields\": {\"version\": \"1.2\"}}'
  tail -f build.log | tellify send
  tail -f build.log | tellify send --spool /var/spool/tellify-build")]
pub struct SendArgs {
    #[command(flatten)]
    connection: Connection,
    /// key:value words forming ONE event (`severity:critical host:cad1 disk full`). A word
    /// holding spaces, such as 'note:disk is full', is quoted for you. Without words or
    /// --json, stdin is read: one event per line, key:value text or JSON objects.
    #[arg(conflicts_with = "json", value_name = "WORDS")]
    words: Vec<String>,
    /// A JSON event or array of events (or @FILE holding one).
    #[arg(long, value_name = "JSON")]
    json: Option<String>,
    /// Print nothing on success (by default the stored ids, one per line).
    #[arg(long, short)]
    quiet: bool,
    /// Stdin lines sent per request.
    #[arg(
        long,
        default_value_t = 500,
        value_name = "N",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000)
    )]
    batch: usize,
    /// Keep events in this spool directory (created if needed) when the server cannot be
    /// reached or answers 5xx, and succeed; while the spool holds events, new ones join
    /// it to keep their order. Whatever it holds is sent first when the server is back.
    #[arg(long, env = "TELLIFY_SPOOL", value_name = "DIR")]
    spool: Option<PathBuf>,
    /// The largest the spool file may grow; a send that does not fit fails, naming it.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_SPOOL_BYTES)]
    spool_max_bytes: u64,
}

pub async fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let client = producer(
        &args.connection,
        args.spool.as_deref(),
        args.spool_max_bytes,
        None,
    )?;
    let mut tally = Tally::default();
    if args.spool.is_some() {
        replay_first(&client).await;
    }
    if let Some(json) = &args.json {
        let value = json_argument("--json", json)?;
        let events = json_events(&value)?;
        let outcome = match client.send_batch(events).await {
            Err(tellify_client::Error::Rejected(mut rejection)) if value.is_array() => {
                lines_to_indexes(&mut rejection);
                return Err(anyhow::Error::new(rejection));
            }
            other => other?,
        };
        tally.record(outcome, args.quiet)?;
        tally.finish(args.spool.as_deref());
        return Ok(ExitCode::SUCCESS);
    }
    if !args.words.is_empty() {
        let line = kv_line(&args.words)?;
        let parsed = tellify_model::parse_kv_line_reporting(&line)
            .map_err(|error| anyhow::anyhow!("the words are not key:value text: {error}"))?;
        warn_about(&parsed.warnings, None);
        let outcome = client.send(parsed.event).await?;
        tally.record(outcome, args.quiet)?;
        tally.finish(args.spool.as_deref());
        return Ok(ExitCode::SUCCESS);
    }
    let result = send_stdin(&client, args.batch, args.quiet, &mut tally).await;
    // Say what was spooled even when a later line failed: those events are kept.
    tally.finish(args.spool.as_deref());
    result?;
    Ok(ExitCode::SUCCESS)
}

/// A producer client for the connection, with a spool when one is given.
pub(super) fn producer(
    connection: &Connection,
    spool: Option<&Path>,
    spool_max_bytes: u64,
    replay_batch: Option<usize>,
) -> anyhow::Result<tellify_client::Client> {
    let token = connection
        .token
        .as_deref()
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .context("no API token: pass --token or set TELLIFY_TOKEN")?;
    let mut builder = tellify_client::Client::builder(&connection.server, token)
        .user_agent(concat!("tellify-cli/", env!("CARGO_PKG_VERSION")))
        .max_spool_bytes(spool_max_bytes);
    if let Some(dir) = spool {
        builder = builder.spool(dir);
    }
    if let Some(events) = replay_batch {
        builder = builder.replay_batch(events);
    }
    Ok(builder.build()?)
}

/// Sends what an earlier run spooled before anything new, so a producer that only ever
/// runs `tellify send --spool` drains its spool once the server is back.
async fn replay_first(client: &tellify_client::Client) {
    match client.replay().await {
        Ok(report) if report.replayed > 0 => eprintln!(
            "sent {} events from the spool first ({} already stored)",
            report.replayed, report.duplicates
        ),
        Ok(_) => {}
        // Still away: the new events join the spool behind the old ones.
        Err(error) if error.is_retryable() => {}
        Err(error) => eprintln!("warning: the spool could not be replayed: {error}"),
    }
}

/// Turns `--json` (one event or an array) into events.
fn json_events(value: &Value) -> anyhow::Result<Vec<EventInput>> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                serde_json::from_value(item.clone())
                    .with_context(|| format!("--json event [{index}] is not an event"))
            })
            .collect(),
        single => Ok(vec![
            serde_json::from_value(single.clone()).context("--json is not an event")?
        ]),
    }
}

/// Prints each warning to stderr, `warning: stdin line 3: `usage:95%`: kept as ...`; the
/// events are sent as read all the same, so the command still succeeds.
fn warn_about(warnings: &[tellify_model::InputWarning], stdin_line: Option<usize>) {
    for warning in warnings {
        eprintln!("{}", warning_text(warning, stdin_line));
    }
}

fn warning_text(warning: &tellify_model::InputWarning, stdin_line: Option<usize>) -> String {
    let place = match stdin_line {
        Some(line) => format!("stdin line {line}: "),
        None => String::new(),
    };
    format!("warning: {place}`{}`: {}", warning.word, warning.message)
}

/// What the sends came to, reported once at the end.
#[derive(Default)]
struct Tally {
    spooled: usize,
    /// Why the first spooled events were spooled.
    reason: Option<String>,
}

impl Tally {
    fn record(&mut self, outcome: SendOutcome, quiet: bool) -> anyhow::Result<()> {
        match outcome {
            SendOutcome::Sent(receipt) => {
                // The server's own warnings (none for the JSON this client sends today).
                warn_about(&receipt.warnings, None);
                if !quiet {
                    let mut text = String::new();
                    for id in &receipt.ids {
                        text.push_str(id);
                        text.push('\n');
                    }
                    super::output::print(&text)?;
                }
                if receipt.duplicates > 0 {
                    eprintln!(
                        "{} of these were already stored (same idempotency key)",
                        receipt.duplicates
                    );
                }
            }
            SendOutcome::Spooled { events, reason } => {
                self.spooled += events;
                if self.reason.is_none() {
                    self.reason = Some(match reason {
                        SpoolReason::Unavailable(why) => why,
                        SpoolReason::Behind { pending } => {
                            format!("the spool already held {pending} events")
                        }
                    });
                }
            }
        }
        Ok(())
    }

    fn finish(&self, spool: Option<&Path>) {
        let (Some(dir), true) = (spool, self.spooled > 0) else {
            return;
        };
        eprintln!(
            "spooled {} events in {} ({}); `tellify spool replay --spool {}` sends them",
            self.spooled,
            dir.display(),
            self.reason
                .as_deref()
                .unwrap_or("the server is unavailable"),
            dir.display()
        );
    }
}

/// Joins words into one key:value line, quoting any word that holds whitespace so it
/// stays one value.
fn kv_line(words: &[String]) -> anyhow::Result<String> {
    let mut parts = Vec::with_capacity(words.len());
    for word in words {
        if word.contains(['\n', '\r']) {
            anyhow::bail!(
                "the word `{}` holds a line break; one call sends one event \
                 (pipe several lines to `tellify send` on stdin instead)",
                super::output::truncate(word, 40)
            );
        }
        if word.is_empty() {
            continue;
        }
        parts.push(quote_word(word));
    }
    Ok(parts.join(" "))
}

fn quote_word(word: &str) -> String {
    if !word.contains(char::is_whitespace) || word.starts_with(['"', '\'']) {
        return word.to_string();
    }
    if let Some((key, value)) = word.split_once(':') {
        let is_key = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if is_key {
            if value.starts_with(['"', '\'']) {
                return word.to_string();
            }
            return format!("{key}:{}", quoted(value));
        }
    }
    quoted(word)
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LineKind {
    Json,
    KeyValue,
}

impl LineKind {
    fn of(line: &str) -> LineKind {
        if line.starts_with('{') {
            LineKind::Json
        } else {
            LineKind::KeyValue
        }
    }

    fn describe(self) -> &'static str {
        match self {
            LineKind::Json => "a JSON object",
            LineKind::KeyValue => "a key:value line",
        }
    }

    /// The event on `line`, and what in a key:value line may not mean what was meant.
    fn parse(self, line: &str) -> anyhow::Result<(EventInput, Vec<tellify_model::InputWarning>)> {
        match self {
            LineKind::Json => Ok((serde_json::from_str(line)?, Vec::new())),
            LineKind::KeyValue => {
                let parsed = tellify_model::parse_kv_line_reporting(line)?;
                Ok((parsed.event, parsed.warnings))
            }
        }
    }
}

/// Stdin events waiting to be sent, each with its stdin line number.
#[derive(Default)]
struct Batch {
    events: Vec<EventInput>,
    lines: Vec<usize>,
}

async fn send_stdin(
    client: &tellify_client::Client,
    batch_size: usize,
    quiet: bool,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    if std::io::stdin().is_terminal() {
        eprintln!("reading events from stdin, one per line (Ctrl-D to end)");
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut batch = Batch::default();
    // The kind of the first event line and its number: every later line must match it.
    let mut mode: Option<(LineKind, usize)> = None;
    let mut number = 0usize;
    let mut handled = 0usize;
    loop {
        let next = if batch.events.is_empty() {
            lines.next_line().await
        } else {
            match tokio::time::timeout(IDLE_FLUSH, lines.next_line()).await {
                Ok(next) => next,
                Err(_idle) => {
                    handled += flush(client, &mut batch, quiet, tally).await?;
                    continue;
                }
            }
        };
        let Some(line) = next.context("cannot read stdin")? else {
            break;
        };
        number += 1;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let kind = LineKind::of(trimmed);
        let already = if handled > 0 {
            format!(" ({handled} events before it were already handled)")
        } else {
            String::new()
        };
        match mode {
            None => mode = Some((kind, number)),
            Some((first_kind, first_number)) if first_kind != kind => {
                anyhow::bail!(
                    "stdin line {number} is {} but line {first_number} is {}; send only \
                     JSON lines or only key:value lines{already}",
                    kind.describe(),
                    first_kind.describe()
                );
            }
            Some(_) => {}
        }
        let (event, warnings) = kind
            .parse(trimmed)
            .with_context(|| format!("stdin line {number} is not an event{already}"))?;
        warn_about(&warnings, Some(number));
        batch.events.push(event);
        batch.lines.push(number);
        if batch.events.len() >= batch_size {
            handled += flush(client, &mut batch, quiet, tally).await?;
        }
    }
    handled += flush(client, &mut batch, quiet, tally).await?;
    if handled == 0 {
        anyhow::bail!("no events to send: give key:value words, --json, or lines on stdin");
    }
    Ok(())
}

/// Sends the batch, if it holds any event, and returns how many events it held.
async fn flush(
    client: &tellify_client::Client,
    batch: &mut Batch,
    quiet: bool,
    tally: &mut Tally,
) -> anyhow::Result<usize> {
    if batch.events.is_empty() {
        return Ok(0);
    }
    let full = std::mem::take(batch);
    let count = full.events.len();
    let (first, last) = (
        full.lines.first().copied().unwrap_or(0),
        full.lines.last().copied().unwrap_or(0),
    );
    match client.send_batch(full.events).await {
        Ok(outcome) => tally.record(outcome, quiet)?,
        Err(tellify_client::Error::Rejected(mut rejection)) => {
            renumber(&mut rejection.problems, &full.lines);
            if !rejection.problems.is_empty() {
                // The server's summary counts the lines of its request; the problems,
                // renumbered, name stdin lines: say each place once, and rightly.
                rejection.detail = "the batch was refused".to_string();
            }
            return Err(anyhow::Error::new(rejection)
                .context(format!("stdin lines {first}-{last} were not stored")));
        }
        Err(error) => {
            return Err(anyhow::Error::new(error)
                .context(format!("stdin lines {first}-{last} were not stored")))
        }
    }
    Ok(count)
}

/// The events of a `--json` array go out as request lines 1, 2, ...; the user wrote an
/// array, so its problems name `event [0]`, `event [1]`, ... (one place each, like the
/// API's answer to a JSON array).
fn lines_to_indexes(rejection: &mut tellify_client::Rejection) {
    for problem in &mut rejection.problems {
        let Some(object) = problem.as_object_mut() else {
            continue;
        };
        let Some(line) = object.remove("line").and_then(|line| line.as_u64()) else {
            continue;
        };
        object.insert("index".to_string(), Value::from(line.saturating_sub(1)));
    }
    if !rejection.problems.is_empty() {
        rejection.detail = "the batch was refused".to_string();
    }
}

/// The server numbers the events of a request from 1; the user wants stdin lines.
fn renumber(problems: &mut [Value], stdin_lines: &[usize]) {
    for problem in problems {
        let Some(line) = problem.get("line").and_then(Value::as_u64) else {
            continue;
        };
        let Some(stdin_line) = stdin_lines.get((line as usize).wrapping_sub(1)) else {
            continue;
        };
        if let Some(object) = problem.as_object_mut() {
            object.insert("line".to_string(), Value::from(*stdin_line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn words_become_one_line_and_spaced_values_are_quoted() {
        assert_eq!(
            kv_line(&words(&[
                "project:vr0",
                "block:gc_t",
                "status:fail",
                "tns:-50"
            ]))
            .unwrap(),
            "project:vr0 block:gc_t status:fail tns:-50"
        );
        assert_eq!(
            kv_line(&words(&[
                "note:disk \"really\" full",
                "two words",
                "k:'kept'"
            ]))
            .unwrap(),
            "note:\"disk \\\"really\\\" full\" \"two words\" k:'kept'"
        );
        let parsed = tellify_model::parse_kv_line(
            &kv_line(&words(&["note:disk is full", "host:cad1"])).unwrap(),
        )
        .unwrap();
        assert_eq!(parsed.fields["note"], "disk is full");
    }

    #[test]
    fn a_word_with_a_line_break_is_refused() {
        let error = kv_line(&words(&["a:1\nb:2"])).unwrap_err().to_string();
        assert!(error.contains("line break"), "{error}");
    }

    #[test]
    fn problems_name_stdin_lines_not_request_lines() {
        let mut problems = vec![
            serde_json::json!({"line": 2, "message": "bad"}),
            serde_json::json!({"message": "no line"}),
        ];
        renumber(&mut problems, &[3, 7]);
        assert_eq!(problems[0]["line"], 7);
        assert!(problems[1].get("line").is_none());
    }

    #[test]
    fn problems_of_a_json_array_name_its_indexes() {
        let mut rejection = tellify_client::Rejection {
            status: 422,
            detail: "line 3: field `type`: must not be empty".to_string(),
            problems: vec![serde_json::json!({"line": 3, "field": "type", "message": "bad"})],
        };
        lines_to_indexes(&mut rejection);
        assert_eq!(
            rejection.problems[0],
            serde_json::json!({"index": 2, "field": "type", "message": "bad"})
        );
        let text = rejection.to_string();
        assert!(text.contains("event [2], field `type`: bad"), "{text}");
        assert!(!text.contains("line"), "{text}");
    }

    #[test]
    fn json_events_take_one_event_or_an_array() {
        let one = json_events(&serde_json::json!({"type": "deploy"})).unwrap();
        assert_eq!(one[0].event_type.as_deref(), Some("deploy"));
        let two = json_events(&serde_json::json!([{"message": "a"}, {"message": "b"}])).unwrap();
        assert_eq!(two.len(), 2);
        let error = json_events(&serde_json::json!([{"message": "a"}, {"bogus": 1}]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("event [1]"), "{error}");
    }

    #[test]
    fn key_value_lines_bring_their_warnings_and_json_lines_none() {
        let (event, warnings) = LineKind::KeyValue.parse("usage:95% fs:/home").unwrap();
        assert_eq!(event.fields["usage"], "95%");
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            warning_text(&warnings[0], Some(4)),
            format!(
                "warning: stdin line 4: `usage:95%`: {}",
                warnings[0].message
            )
        );
        let (_, warnings) = LineKind::Json
            .parse(r#"{"fields": {"usage": "95%"}}"#)
            .unwrap();
        assert!(warnings.is_empty());
    }

    #[test]
    fn quoting_a_spaced_word_for_the_user_does_not_warn() {
        let line = kv_line(&words(&["message:disk full", "usage:95"])).unwrap();
        let parsed = tellify_model::parse_kv_line_reporting(&line).unwrap();
        assert_eq!(parsed.event.message.as_deref(), Some("disk full"));
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    }

    #[test]
    fn lines_starting_with_a_brace_are_json() {
        assert!(LineKind::of("{\"message\": \"x\"}") == LineKind::Json);
        assert!(LineKind::of("project:vr0") == LineKind::KeyValue);
    }
}
