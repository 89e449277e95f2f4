//! Human output shared by the client subcommands: aligned tables, `key  value` blocks,
//! truncation, local times, and writing to stdout without panicking on a closed pipe.

use std::io::Write;

use serde_json::Value;

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

/// An RFC 3339 time from the server, shown in the local time zone to the second; text
/// that is not a time is shown as it came.
pub fn local_time(text: &str) -> String {
    match text.parse::<jiff::Timestamp>() {
        Ok(time) => time
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => text.to_string(),
    }
}

/// `local_time` of an optional JSON string, or `-`.
pub fn optional_time(value: Option<&Value>) -> String {
    match value.and_then(Value::as_str) {
        Some(text) => local_time(text),
        None => "-".to_string(),
    }
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
