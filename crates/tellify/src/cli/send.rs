//! `tellify send`: posts events to `POST /api/v1/events` — key:value words as one text
//! line, a JSON event or array with `--json`, or stdin lines in batches.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::client::{json_argument, Client};
use super::Connection;

/// A partial stdin batch is sent once no new line has come for this long, so a slow
/// producer (`tail -f log | tellify send`) does not wait for a full batch.
const IDLE_FLUSH: Duration = Duration::from_millis(200);

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  tellify send project:vr0 block:gc_t status:fail tns:-50
  tellify send --json '{\"type\": \"deploy\", \"fields\": {\"version\": \"1.2\"}}'
  tail -f build.log | tellify send")]
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
}

pub async fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.connection)?;
    if let Some(json) = &args.json {
        let value = json_argument("--json", json)?;
        let body = serde_json::to_string(&value)?;
        let answer = post(&client, "application/json", body).await?;
        print_ids(&answer, args.quiet)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.words.is_empty() {
        let line = kv_line(&args.words)?;
        let answer = post(&client, "text/plain", line).await?;
        print_ids(&answer, args.quiet)?;
        return Ok(ExitCode::SUCCESS);
    }
    send_stdin(&client, args.batch, args.quiet).await?;
    Ok(ExitCode::SUCCESS)
}

async fn post(client: &Client, content_type: &str, body: String) -> anyhow::Result<Value> {
    client.post_raw(&["events"], content_type, body).await
}

fn print_ids(answer: &Value, quiet: bool) -> anyhow::Result<()> {
    if quiet {
        return Ok(());
    }
    let ids = answer
        .get("ids")
        .and_then(Value::as_array)
        .context("the server's answer has no `ids`")?;
    let mut text = String::new();
    for id in ids {
        text.push_str(id.as_str().unwrap_or_default());
        text.push('\n');
    }
    super::output::print(&text)?;
    let duplicates = answer
        .get("duplicates")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if duplicates > 0 {
        eprintln!("{duplicates} of these were already stored (same idempotency key)");
    }
    Ok(())
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

    fn content_type(self) -> &'static str {
        match self {
            LineKind::Json => "application/x-ndjson",
            LineKind::KeyValue => "text/plain",
        }
    }
}

/// Stdin lines waiting to be sent. Blank lines inside a batch are kept so the server's
/// line numbers count from `first_line` without gaps.
struct Batch {
    first_line: usize,
    last_line: usize,
    text: String,
    events: usize,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            first_line: 0,
            last_line: 0,
            text: String::new(),
            events: 0,
        }
    }
}

async fn send_stdin(client: &Client, batch_size: usize, quiet: bool) -> anyhow::Result<()> {
    if std::io::stdin().is_terminal() {
        eprintln!("reading events from stdin, one per line (Ctrl-D to end)");
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut batch = Batch::new();
    // The kind of the first event line and its number: every later line must match it.
    let mut mode: Option<(LineKind, usize)> = None;
    let mut number = 0usize;
    let mut sent = 0usize;
    loop {
        let next = if batch.events > 0 {
            match tokio::time::timeout(IDLE_FLUSH, lines.next_line()).await {
                Ok(next) => next,
                Err(_idle) => {
                    sent += flush(client, &mut batch, mode, quiet).await?;
                    continue;
                }
            }
        } else {
            lines.next_line().await
        };
        let Some(line) = next.context("cannot read stdin")? else {
            break;
        };
        number += 1;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            if batch.events > 0 {
                batch.text.push('\n');
                batch.last_line = number;
            }
            continue;
        }
        let kind = LineKind::of(trimmed);
        match mode {
            None => mode = Some((kind, number)),
            Some((first_kind, first_number)) if first_kind != kind => {
                let already = if sent > 0 {
                    format!(" ({sent} events before it were already stored)")
                } else {
                    String::new()
                };
                anyhow::bail!(
                    "stdin line {number} is {} but line {first_number} is {}; send only \
                     JSON lines or only key:value lines{already}",
                    kind.describe(),
                    first_kind.describe()
                );
            }
            Some(_) => {}
        }
        if batch.events == 0 {
            batch.first_line = number;
        }
        batch.text.push_str(trimmed);
        batch.text.push('\n');
        batch.last_line = number;
        batch.events += 1;
        if batch.events >= batch_size {
            sent += flush(client, &mut batch, mode, quiet).await?;
        }
    }
    sent += flush(client, &mut batch, mode, quiet).await?;
    if sent == 0 {
        anyhow::bail!("no events to send: give key:value words, --json, or lines on stdin");
    }
    Ok(())
}

/// Sends the batch, if it holds any event, and returns how many events it held.
async fn flush(
    client: &Client,
    batch: &mut Batch,
    mode: Option<(LineKind, usize)>,
    quiet: bool,
) -> anyhow::Result<usize> {
    let Some((kind, _)) = mode else {
        return Ok(0);
    };
    if batch.events == 0 {
        return Ok(0);
    }
    let full = std::mem::replace(batch, Batch::new());
    let answer = post(client, kind.content_type(), full.text)
        .await
        .with_context(|| {
            if full.first_line > 1 {
                format!(
                    "stdin lines {}-{} were not stored (line numbers below count from stdin \
                     line {})",
                    full.first_line, full.last_line, full.first_line
                )
            } else {
                format!("stdin lines 1-{} were not stored", full.last_line)
            }
        })?;
    print_ids(&answer, quiet)?;
    Ok(full.events)
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
    fn lines_starting_with_a_brace_are_json() {
        assert!(LineKind::of("{\"message\": \"x\"}") == LineKind::Json);
        assert!(LineKind::of("project:vr0") == LineKind::KeyValue);
    }
}
