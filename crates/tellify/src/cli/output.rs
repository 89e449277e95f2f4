//! Human output shared by the client subcommands: aligned tables, `key  value` blocks,
//! truncation, times in the caller's zone, and writing to stdout without panicking on a
//! closed pipe.
//!
//! Times are shown in one zone per command, named by its abbreviation
//! (`2026-11-23 23:30:00 CET`): `TELLIFY_TZ` when it is set, else the caller's own zone
//! (the `timezone` of `GET /api/v1/users/me`, asked once per command), else this machine's
//! zone, else UTC. `--json` prints the server's RFC 3339 times untouched.

use std::io::Write;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::Value;

use super::client::Client;

/// The environment variable that picks the zone times are shown in, over everything else.
pub const ZONE_VARIABLE: &str = "TELLIFY_TZ";

/// Widest a message column may be in a table; longer values end in `…`.
pub const MESSAGE_WIDTH: usize = 60;
/// Widest a title or name column may be in a table.
pub const TITLE_WIDTH: usize = 40;

/// Writes `text` to stdout as is and flushes. A closed pipe (`| head`) comes back as an
/// `io::Error` of kind `BrokenPipe`, which [`super::run`] treats as a normal end.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Writes one line to stdout.
pub fn print_line(line: &str) -> anyhow::Result<()> {
    print(&format!("{line}\n"))
}

/// Prints a server answer as indented JSON, for `--json`.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    print_line(&serde_json::to_string_pretty(value)?)
}

/// A table of plain text columns separated by two spaces; the last column is not padded.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (index, cell) in row.iter().enumerate() {
                if index < widths.len() {
                    widths[index] = widths[index].max(cell.chars().count());
                }
            }
        }
        let mut text = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        render_row(&headers, &widths, &mut text);
        for row in &self.rows {
            render_row(row, &widths, &mut text);
        }
        text
    }
}

fn render_row(cells: &[String], widths: &[usize], text: &mut String) {
    let mut line = String::new();
    for (index, cell) in cells.iter().enumerate() {
        if index > 0 {
            line.push_str("  ");
        }
        line.push_str(cell);
        let last = index + 1 == cells.len();
        if !last {
            let width = widths.get(index).copied().unwrap_or(0);
            let padding = width.saturating_sub(cell.chars().count());
            line.push_str(&" ".repeat(padding));
        }
    }
    text.push_str(line.trim_end());
    text.push('\n');
}

/// Renders `key  value` lines with the values aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    let mut text = String::new();
    for (key, value) in pairs {
        text.push_str(&format!("{key:<width$}  {value}\n"));
    }
    text
}

/// Makes `text` fit on one line of at most `max` characters: control characters become
/// spaces and a cut value ends in `…`.
pub fn truncate(text: &str, max: usize) -> String {
    let single_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if single_line.chars().count() <= max {
        return single_line;
    }
    let kept: String = single_line.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// The zone a command shows its times in.
#[derive(Clone, Debug, PartialEq)]
pub struct Times {
    zone: TimeZone,
}

impl Times {
    pub fn new(zone: TimeZone) -> Times {
        Times { zone }
    }

    /// `TELLIFY_TZ` if it names a zone, else this machine's zone, else UTC: for commands
    /// that do not ask the server who is calling.
    pub fn machine() -> Times {
        match zone_override() {
            Ok(Some(zone)) => Times::new(zone),
            _ => Times::new(machine_zone()),
        }
    }

    /// The caller's times: `forced` (from [`zone_override`]) without asking anyone, else
    /// [`Caller::ask`]'s zone.
    pub async fn for_caller(client: &Client, forced: Option<TimeZone>) -> Times {
        match forced {
            Some(zone) => Times::new(zone),
            None => Caller::ask(client, None).await.times,
        }
    }

    /// An RFC 3339 time from the server in this zone to the second, with the zone's
    /// abbreviation: `2026-11-23 23:30:00 CET`. Text that is not a time is shown as it came.
    pub fn show(&self, text: &str) -> String {
        match text.parse::<Timestamp>() {
            Ok(time) => time
                .to_zoned(self.zone.clone())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string(),
            Err(_) => text.to_string(),
        }
    }

    /// [`Times::show`] of an optional JSON string, or `-`.
    pub fn optional(&self, value: Option<&Value>) -> String {
        match value.and_then(Value::as_str) {
            Some(text) => self.show(text),
            None => "-".to_string(),
        }
    }
}

/// Who the command runs as, from one `GET /api/v1/users/me`.
pub struct Caller {
    /// Admins see everyone's alerts, so their lists say whose each one is.
    pub admin: bool,
    pub times: Times,
}

impl Caller {
    /// Asks the server once who is calling. Times are in `forced` when given, else in the
    /// caller's own zone; when the server cannot say (or names a zone this machine does
    /// not know) they fall back to this machine's zone, with a note on stderr.
    pub async fn ask(client: &Client, forced: Option<TimeZone>) -> Caller {
        let me = match client.get(&["users", "me"], &[]).await {
            Ok(me) => me,
            Err(error) => {
                eprintln!("note: times in this machine's zone: cannot ask who you are ({error:#})");
                return Caller {
                    admin: false,
                    times: Times::new(forced.unwrap_or_else(machine_zone)),
                };
            }
        };
        let user = me.get("user");
        let admin = user
            .and_then(|user| user.get("admin"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let zone = match forced {
            Some(zone) => zone,
            None => users_zone(user.and_then(|user| user.get("timezone"))),
        };
        Caller {
            admin,
            times: Times::new(zone),
        }
    }
}

/// The zone `TELLIFY_TZ` names, `None` when it is unset or empty; a name this machine
/// does not know is an error that says where it came from.
pub fn zone_override() -> anyhow::Result<Option<TimeZone>> {
    parse_zone_override(std::env::var(ZONE_VARIABLE).ok().as_deref())
}

fn parse_zone_override(value: Option<&str>) -> anyhow::Result<Option<TimeZone>> {
    let Some(name) = value.map(str::trim).filter(|name| !name.is_empty()) else {
        return Ok(None);
    };
    match TimeZone::get(name) {
        Ok(zone) => Ok(Some(zone)),
        Err(_) => anyhow::bail!(
            "{ZONE_VARIABLE}: `{name}` is not a time zone this machine knows; use an IANA name \
             such as Europe/Berlin, or unset it to see times in your own zone"
        ),
    }
}

/// The zone a user's `timezone` names; this machine's zone when it names none.
fn users_zone(timezone: Option<&Value>) -> TimeZone {
    let Some(name) = timezone.and_then(Value::as_str) else {
        return machine_zone();
    };
    match TimeZone::get(name) {
        Ok(zone) => zone,
        Err(_) => {
            eprintln!("note: times in this machine's zone: it does not know your zone `{name}`");
            machine_zone()
        }
    }
}

/// This machine's zone (`TZ`, `/etc/localtime`), or UTC when it has none.
fn machine_zone() -> TimeZone {
    TimeZone::try_system().unwrap_or(TimeZone::UTC)
}

/// The zone [`local_time`] and [`optional_time`] use once [`use_callers_zone`] has run.
static CALLER_TIMES: std::sync::OnceLock<Times> = std::sync::OnceLock::new();

/// Makes this command's [`local_time`] and [`optional_time`] show the caller's zone: one
/// `GET /api/v1/users/me`, or none when `TELLIFY_TZ` names a zone. A command runs once
/// per process, so the first answer holds for all of it.
pub async fn use_callers_zone(client: &Client) -> anyhow::Result<()> {
    let times = Times::for_caller(client, zone_override()?).await;
    let _ = CALLER_TIMES.set(times);
    Ok(())
}

fn current_times() -> Times {
    CALLER_TIMES.get().cloned().unwrap_or_else(Times::machine)
}

/// An RFC 3339 time from the server in the caller's zone ([`use_callers_zone`]), else in
/// [`Times::machine`]'s, named; text that is not a time is shown as it came.
pub fn local_time(text: &str) -> String {
    current_times().show(text)
}

/// `local_time` of an optional JSON string, or `-`.
pub fn optional_time(value: Option<&Value>) -> String {
    current_times().optional(value)
}

/// A JSON string as its text, other scalars as JSON, null or absent as `-`.
pub fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(text)) if text.is_empty() => "-".to_string(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// Event or alert fields as `name=value` words; string values with spaces are quoted.
pub fn fields_text(fields: Option<&Value>) -> String {
    let Some(Value::Object(fields)) = fields else {
        return String::new();
    };
    let mut words = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        let rendered = match value {
            Value::String(text) if text.is_empty() || text.contains(char::is_whitespace) => {
                format!("{text:?}")
            }
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        words.push(format!("{name}={rendered}"));
    }
    words.join(" ")
}

/// The `items` array of a page answer (`{"items": [...], "next": ...}`).
pub fn items(page: &Value) -> &[Value] {
    page.get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns_and_leave_the_last_unpadded() {
        let mut table = Table::new(&["ID", "NAME", "NOTE"]);
        table.row(vec!["1".into(), "a".into(), "x".into()]);
        table.row(vec!["22".into(), "bbbb".into(), "y".into()]);
        assert_eq!(table.render(), "ID  NAME  NOTE\n1   a     x\n22  bbbb  y\n");
    }

    #[test]
    fn truncation_keeps_one_line_and_marks_the_cut() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("two\nlines", 20), "two lines");
        assert_eq!(truncate("abcdefghij", 5), "abcd…");
    }

    fn zone(name: &str) -> Times {
        Times::new(TimeZone::get(name).unwrap())
    }

    #[test]
    fn times_are_shown_in_the_zone_and_name_it_across_the_dst_change() {
        let berlin = zone("Europe/Berlin");
        assert_eq!(
            berlin.show("2026-11-23T22:30:00Z"),
            "2026-11-23 23:30:00 CET"
        );
        assert_eq!(
            berlin.show("2027-07-01T12:05:00Z"),
            "2027-07-01 14:05:00 CEST"
        );
        assert_eq!(
            zone("America/New_York").show("2026-11-23T22:30:00.5Z"),
            "2026-11-23 17:30:00 EST"
        );
        assert_eq!(
            Times::new(TimeZone::UTC).show("2026-11-23T22:30:00Z"),
            "2026-11-23 22:30:00 UTC"
        );
        assert_eq!(berlin.show("not a time"), "not a time");
        assert_eq!(berlin.optional(Some(&Value::Null)), "-");
        assert_eq!(berlin.optional(None), "-");
    }

    #[test]
    fn tellify_tz_names_a_zone_or_is_refused_with_its_name() {
        assert!(parse_zone_override(None).unwrap().is_none());
        assert!(parse_zone_override(Some(" ")).unwrap().is_none());
        assert_eq!(
            parse_zone_override(Some("Asia/Kolkata")).unwrap(),
            Some(TimeZone::get("Asia/Kolkata").unwrap())
        );
        let error = parse_zone_override(Some("Mars/Olympus")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("TELLIFY_TZ: `Mars/Olympus` is not a time zone"),
            "{error}"
        );
    }

    #[test]
    fn a_users_zone_is_theirs_and_falls_back_to_the_machines() {
        assert_eq!(
            users_zone(Some(&json!("Europe/Berlin"))),
            TimeZone::get("Europe/Berlin").unwrap()
        );
        assert_eq!(users_zone(Some(&json!("Nowhere/Land"))), machine_zone());
        assert_eq!(users_zone(None), machine_zone());
    }

    #[test]
    fn fields_render_as_name_value_words() {
        // Written in sorted order so the test holds with or without serde_json's
        // `preserve_order`.
        let fields = json!({"block": "gc_t", "note": "disk full", "tns": -50});
        assert_eq!(
            fields_text(Some(&fields)),
            "block=gc_t note=\"disk full\" tns=-50"
        );
    }
}
