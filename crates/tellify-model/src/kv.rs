//! The `key:value` text form of an event:
//! `project:vr0 block:gc_t step:place status:fail tns:-50 "free text"`.
//!
//! - `key:value` pairs become typed fields: `true`/`false` are booleans, numbers are
//!   numbers, everything else is a string. A quoted value (`msg:"disk is full"`,
//!   `'fs:/home'` quotes the whole word) is always a string; `\"` and `\\` escape inside
//!   quotes.
//! - The envelope keys `type`, `severity`, `message`, `host`, `component`, `time` and
//!   `idempotency_key` set the envelope instead of a field.
//! - Bare words (anything without `key:`) are kept: they form the message, or, when the
//!   line also has `message:`, the field `words`.
//!
//! Nothing is accepted silently: what parses, but probably not as the producer meant it,
//! comes back as an [`InputWarning`] next to the event ([`parse_kv_line_reporting`]): a
//! bare `fs=/home`, a number with a unit (`usage:95%` stays a string), words after an
//! unquoted space that read as the rest of a value (`message:disk full`), leading zeros a
//! number drops, digits a number cannot hold, `True` or `null` that stay strings, an
//! envelope key given twice or in another case, a URL read as a field (`https://x`), and
//! bare words that overwrite a `words:` field. Quoting says "I mean this text" and
//! silences them.

use serde::{Deserialize, Serialize};

use crate::{EventInput, Severity, Source};

/// A syntax error in a `key:value` line; `column` counts characters from 1.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct KvError {
    pub column: usize,
    pub message: String,
}

/// Something a producer sent that was accepted, but probably not as they meant it: the
/// `warnings` of a 202 answer, and what `tellify send` prints to stderr.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputWarning {
    /// 1-based line of the request body; absent for a line on its own (`tellify send`
    /// words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The word or words as written.
    pub word: String,
    /// What was made of it and how to write what was probably meant.
    pub message: String,
}

/// A parsed `key:value` line and what in it may not mean what the producer thought.
#[derive(Clone, Debug, PartialEq)]
pub struct KvLine {
    pub event: EventInput,
    pub warnings: Vec<InputWarning>,
}

/// The keys that set the envelope rather than a field.
const ENVELOPE_KEYS: [&str; 7] = [
    "type",
    "severity",
    "message",
    "host",
    "component",
    "time",
    "idempotency_key",
];

/// Parses one line of `key:value` words into an event, without its warnings.
pub fn parse_kv_line(line: &str) -> Result<EventInput, KvError> {
    parse_kv_line_reporting(line).map(|parsed| parsed.event)
}

/// One word of a line as written, for the warnings that look at neighbours.
enum Token {
    /// `key:value`; `text_like` when the value is free text that could have gone on past
    /// a space (`message`, or a field whose unquoted value is a string).
    Pair {
        written: String,
        key: String,
        value: String,
        text_like: bool,
    },
    /// A bare word; quoted ones never warn.
    Word { text: String, quoted: bool },
}

/// Parses one line of `key:value` words into an event, with a warning for each thing in
/// it that parsed, but probably not as meant (see the module documentation).
pub fn parse_kv_line_reporting(line: &str) -> Result<KvLine, KvError> {
    let chars: Vec<char> = line.chars().collect();
    let mut position = 0usize;
    let mut event = EventInput::default();
    let mut words: Vec<String> = Vec::new();
    let mut source = Source::default();
    let mut warnings: Vec<InputWarning> = Vec::new();
    let mut tokens: Vec<Token> = Vec::new();
    let mut envelope_seen: Vec<String> = Vec::new();
    while position < chars.len() {
        if chars[position].is_whitespace() {
            position += 1;
            continue;
        }
        let start = position;
        let key_end = scan_key(&chars, position);
        if key_end > position && key_end < chars.len() && chars[key_end] == ':' {
            let key: String = chars[position..key_end].iter().collect();
            position = key_end + 1;
            let value_column = position + 1;
            let (value, quoted, next) = scan_value(&chars, position)?;
            position = next;
            if value.is_empty() && !quoted {
                return Err(KvError {
                    column: start + 1,
                    message: format!("`{key}:` has no value"),
                });
            }
            let written: String = chars[start..next].iter().collect();
            let fail = |message: String| KvError {
                column: value_column,
                message,
            };
            if ENVELOPE_KEYS.contains(&key.as_str()) {
                if envelope_seen.contains(&key) {
                    warnings.push(warning(
                        &written,
                        format!("`{key}` is given more than once; the last one counts"),
                    ));
                } else {
                    envelope_seen.push(key.clone());
                }
            }
            let mut text_like = false;
            match key.as_str() {
                "type" => event.event_type = Some(value.clone()),
                "severity" => {
                    event.severity = Some(value.parse::<Severity>().map_err(fail)?);
                }
                "message" => {
                    event.message = Some(value.clone());
                    text_like = !quoted;
                }
                "host" => source.host = Some(value.clone()),
                "component" => source.component = Some(value.clone()),
                "idempotency_key" => event.idempotency_key = Some(value.clone()),
                "time" => {
                    event.time = Some(value.parse().map_err(|_| {
                        fail(format!(
                            "time `{value}` is not an RFC 3339 timestamp such as 2026-11-23T18:00:00Z"
                        ))
                    })?);
                }
                _ => {
                    if event.fields.contains_key(&key) {
                        return Err(KvError {
                            column: start + 1,
                            message: format!("duplicate key `{key}`"),
                        });
                    }
                    let typed = if quoted {
                        serde_json::Value::String(value.clone())
                    } else {
                        let typed = infer(&value);
                        warnings.extend(
                            field_warning(&written, &key, &value, &typed)
                                .map(|message| warning(&written, message)),
                        );
                        typed
                    };
                    text_like = !quoted && typed.is_string();
                    event.fields.insert(key.clone(), typed);
                }
            }
            tokens.push(Token::Pair {
                written,
                key,
                value,
                text_like,
            });
        } else {
            let (word, quoted, next) = scan_value(&chars, position)?;
            position = next;
            if !quoted {
                warnings.extend(bare_word_warning(&word).map(|message| warning(&word, message)));
            }
            tokens.push(Token::Word {
                text: word.clone(),
                quoted,
            });
            words.push(word);
        }
    }
    if source.host.is_some() || source.component.is_some() {
        event.source = Some(source);
    }
    let has_message = event.message.is_some();
    warnings.extend(spilled_words(&tokens, has_message));
    if !words.is_empty() {
        let joined = words.join(" ");
        if event.message.is_none() {
            event.message = Some(joined);
        } else {
            if let Some(replaced) = event.fields.get("words") {
                warnings.push(warning(
                    &joined,
                    format!(
                        "the bare words replace the field `words:{}`: with `message:` in the \
                         line, bare words are kept in the field `words`; rename that field",
                        display_value(replaced)
                    ),
                ));
            }
            event
                .fields
                .insert("words".to_string(), serde_json::Value::String(joined));
        }
    }
    Ok(KvLine { event, warnings })
}

fn warning(word: &str, message: String) -> InputWarning {
    InputWarning {
        line: None,
        word: word.to_string(),
        message,
    }
}

/// A value as a producer would write it back.
fn display_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// What may surprise in an unquoted field `key:value` read as `typed`.
fn field_warning(
    written: &str,
    key: &str,
    value: &str,
    typed: &serde_json::Value,
) -> Option<String> {
    let lower_key = key.to_ascii_lowercase();
    if lower_key != key && ENVELOPE_KEYS.contains(&lower_key.as_str()) {
        return Some(format!(
            "`{key}` is a field, not the event's `{lower_key}`: keys are case-sensitive; \
             write `{lower_key}:{value}`"
        ));
    }
    if key.chars().all(|c| c.is_ascii_digit()) {
        return Some(format!(
            "became the field `{key}` with the value {}; quote the word (\"{written}\") if it \
             is text",
            typed
        ));
    }
    if let Some(rest) = value.strip_prefix("//") {
        return Some(format!(
            "became the field `{key}` with the value \"//{rest}\"; quote it (\"{written}\") \
             to keep it as text, or name it (`url:{written}`)"
        ));
    }
    if let Some(unit) = number_with_unit(value) {
        return Some(format!(
            "kept as the string \"{value}\", not a number (`{unit}` follows the digits): \
             write `{key}:{}` to send a number (and say the unit in the key, such as \
             `{key}_{}`), or quote it (`{key}:\"{value}\"`) to say it is text",
            &value[..value.len() - unit.len()].trim_end(),
            unit_name(unit)
        ));
    }
    if typed.is_number() && has_leading_zero(value) {
        return Some(format!(
            "read as the number {typed}, which drops the leading zeros; quote it \
             (`{key}:\"{value}\"`) to keep the text"
        ));
    }
    if typed.is_number() && value.parse::<i64>().is_err() && is_integer_text(value) {
        return Some(format!(
            "too many digits for an exact number: read as {typed}; quote it \
             (`{key}:\"{value}\"`) to keep every digit"
        ));
    }
    if typed.is_string() && looks_numeric(value) && value.parse::<f64>().is_ok() {
        return Some(format!(
            "too large for a number, kept as the string \"{value}\"; quote it \
             (`{key}:\"{value}\"`) to say it is text"
        ));
    }
    let lower = value.to_ascii_lowercase();
    if (lower == "true" || lower == "false") && typed.is_string() {
        return Some(format!(
            "kept as the string \"{value}\", not a boolean: booleans are written `true` and \
             `false`"
        ));
    }
    if lower == "null" {
        return Some(format!(
            "kept as the string \"{value}\": key:value text has no null; leave the key out"
        ));
    }
    None
}

/// What may surprise in an unquoted bare word.
fn bare_word_warning(word: &str) -> Option<String> {
    if word == "=" {
        return Some(
            "a lone `=` is a bare word: write fields as `key:value`, \
             without spaces"
                .to_string(),
        );
    }
    let chars: Vec<char> = word.chars().collect();
    let key_end = scan_key(&chars, 0);
    if key_end > 0 && chars.get(key_end) == Some(&'=') {
        let key: String = chars[..key_end].iter().collect();
        let value: String = chars[key_end + 1..].iter().collect();
        return Some(format!(
            "a bare word, not a field: fields are written with a colon, \
             `{key}:{value}`"
        ));
    }
    None
}

/// Bare words right after an unquoted free-text value: an unquoted space ended the value,
/// so they went to the message (or `words`), which is rarely what was meant.
fn spilled_words(tokens: &[Token], has_message: bool) -> Vec<InputWarning> {
    let mut warnings = Vec::new();
    let mut index = 0;
    while index < tokens.len() {
        let Token::Pair {
            written,
            key,
            value,
            text_like: true,
        } = &tokens[index]
        else {
            index += 1;
            continue;
        };
        let mut run: Vec<&str> = Vec::new();
        let mut next = index + 1;
        while let Some(Token::Word {
            text,
            quoted: false,
        }) = tokens.get(next)
        {
            run.push(text);
            next += 1;
        }
        if !run.is_empty() {
            let spilled = run.join(" ");
            let went_to = if key == "message" || has_message {
                "the field `words`"
            } else {
                "the message"
            };
            warnings.push(warning(
                &spilled,
                format!(
                    "not part of `{written}`: an unquoted space ends a value, so this went to \
                     {went_to}; quote the value (`{key}:\"{value} {spilled}\"`) if it belongs \
                     to it"
                ),
            ));
        }
        index = next;
    }
    warnings
}

/// The unit after the digits of a value such as `95%`, `10ms` or `1.5 GB`-less `1.5GB`:
/// a number followed only by `%` or by letters (optionally `/letters`, as in `req/s`).
fn number_with_unit(value: &str) -> Option<&str> {
    let digits_end = value
        .char_indices()
        .find(|&(index, c)| {
            !(c.is_ascii_digit() || c == '.' || ((c == '-' || c == '+') && index == 0))
        })
        .map(|(index, _)| index)?;
    let number = &value[..digits_end];
    if !number.chars().any(|c| c.is_ascii_digit()) || number.parse::<f64>().is_err() {
        return None;
    }
    let unit = &value[digits_end..];
    if unit == "%" {
        return Some(unit);
    }
    let (head, per) = match unit.split_once('/') {
        Some((head, per)) => (head, Some(per)),
        None => (unit, None),
    };
    let letters = |text: &str| {
        !text.is_empty()
            && text.chars().count() <= 5
            && text.chars().all(|c| c.is_alphabetic() || c == '°')
    };
    // `1st`, `2nd`: ordinals, not units.
    let ordinal = matches!(unit, "st" | "nd" | "rd" | "th");
    let exponent = unit.starts_with(['e', 'E']) && unit.len() == 1;
    if letters(head) && per.is_none_or(letters) && !ordinal && !exponent {
        return Some(unit);
    }
    None
}

/// `percent` for `%`, else the unit itself, for a suggested key such as `usage_percent`.
fn unit_name(unit: &str) -> String {
    if unit == "%" {
        return "percent".to_string();
    }
    unit.replace('/', "_per_").to_ascii_lowercase()
}

fn has_leading_zero(value: &str) -> bool {
    let unsigned = value.trim_start_matches(['-', '+']);
    let mut chars = unsigned.chars();
    chars.next() == Some('0') && chars.next().is_some_and(|c| c.is_ascii_digit())
}

fn is_integer_text(value: &str) -> bool {
    let unsigned = value.strip_prefix(['-', '+']).unwrap_or(value);
    !unsigned.is_empty() && unsigned.chars().all(|c| c.is_ascii_digit())
}

fn looks_numeric(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
}

/// Returns the end of a key starting at `position` (equal to `position` if none).
fn scan_key(chars: &[char], position: usize) -> usize {
    let mut end = position;
    while end < chars.len() {
        let c = chars[end];
        let allowed = c.is_alphanumeric() || c == '_' || c == '-' || c == '.';
        if !allowed {
            break;
        }
        end += 1;
    }
    end
}

/// Reads a value or bare word: a quoted string or everything up to the next whitespace.
fn scan_value(chars: &[char], position: usize) -> Result<(String, bool, usize), KvError> {
    let Some(&first) = chars.get(position) else {
        return Ok((String::new(), false, position));
    };
    if first == '"' || first == '\'' {
        let mut value = String::new();
        let mut index = position + 1;
        while index < chars.len() {
            let c = chars[index];
            if c == '\\' && index + 1 < chars.len() {
                value.push(chars[index + 1]);
                index += 2;
                continue;
            }
            if c == first {
                let after = index + 1;
                if after < chars.len() && !chars[after].is_whitespace() {
                    return Err(KvError {
                        column: after + 1,
                        message: "expected a space after the closing quote".to_string(),
                    });
                }
                return Ok((value, true, after));
            }
            value.push(c);
            index += 1;
        }
        return Err(KvError {
            column: position + 1,
            message: format!("unterminated quote {first}"),
        });
    }
    let mut end = position;
    while end < chars.len() && !chars[end].is_whitespace() {
        end += 1;
    }
    Ok((chars[position..end].iter().collect(), false, end))
}

fn infer(text: &str) -> serde_json::Value {
    match text {
        "true" => return serde_json::Value::Bool(true),
        "false" => return serde_json::Value::Bool(false),
        _ => {}
    }
    if let Ok(integer) = text.parse::<i64>() {
        return serde_json::Value::from(integer);
    }
    if looks_numeric(text) {
        if let Ok(float) = text.parse::<f64>() {
            if let Some(number) = serde_json::Number::from_f64(float) {
                return serde_json::Value::Number(number);
            }
        }
    }
    serde_json::Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_brief_example_becomes_typed_fields() {
        let event = parse_kv_line("project:vr0 block:gc_t step:place status:fail tns:-50").unwrap();
        assert_eq!(
            serde_json::Value::Object(event.fields),
            json!({"project": "vr0", "block": "gc_t", "step": "place", "status": "fail", "tns": -50})
        );
        assert_eq!(event.message, None);
    }

    #[test]
    fn types_quotes_envelope_and_bare_words() {
        let event = parse_kv_line(
            r#"disk full severity:critical host:cad1 pct:93.5 ok:false note:"a \"b\" c" path:/sarc/cad"#,
        )
        .unwrap();
        assert_eq!(event.message.as_deref(), Some("disk full"));
        assert_eq!(event.severity, Some(Severity::Critical));
        assert_eq!(event.source.unwrap().host.as_deref(), Some("cad1"));
        assert_eq!(event.fields["pct"], json!(93.5));
        assert_eq!(event.fields["ok"], json!(false));
        assert_eq!(event.fields["note"], json!("a \"b\" c"));
        assert_eq!(event.fields["path"], json!("/sarc/cad"));
    }

    #[test]
    fn quoted_numbers_stay_strings_and_words_move_aside_with_a_message() {
        let event = parse_kv_line(r#"id:"0042" message:hello extra words"#).unwrap();
        assert_eq!(event.fields["id"], json!("0042"));
        assert_eq!(event.message.as_deref(), Some("hello"));
        assert_eq!(event.fields["words"], json!("extra words"));
    }

    #[test]
    fn errors_name_the_column() {
        let error = parse_kv_line("a:1 b:\"open").unwrap_err();
        assert_eq!(error.column, 7);
        assert!(error.message.contains("unterminated"));
        let error = parse_kv_line("a:1 severity:fatal").unwrap_err();
        assert_eq!(error.column, 14);
        assert!(error.message.contains("fatal"));
        let error = parse_kv_line("a:1 a:2").unwrap_err();
        assert!(error.message.contains("duplicate key `a`"));
        let error = parse_kv_line("a:1 b:").unwrap_err();
        assert!(error.message.contains("no value"));
    }

    fn warned(line: &str) -> Vec<(String, String)> {
        parse_kv_line_reporting(line)
            .unwrap()
            .warnings
            .into_iter()
            .map(|warning| (warning.word, warning.message))
            .collect()
    }

    #[test]
    fn an_equals_sign_instead_of_a_colon_is_a_bare_word_with_a_warning() {
        let parsed = parse_kv_line_reporting("fs=/home usage:95").unwrap();
        assert_eq!(parsed.event.message.as_deref(), Some("fs=/home"));
        let warnings = warned("fs=/home usage:95");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].0, "fs=/home");
        assert!(warnings[0].1.contains("`fs:/home`"), "{warnings:?}");
        let warnings = warned("fs = /home");
        assert!(warnings.iter().any(|(word, _)| word == "="), "{warnings:?}");
    }

    #[test]
    fn a_number_with_a_unit_stays_a_string_and_says_so() {
        for (line, key, unit) in [
            ("usage:95%", "usage", "%"),
            ("latency:10ms", "latency", "ms"),
            ("size:1.5GB", "size", "GB"),
            ("rate:100req/s", "rate", "req/s"),
        ] {
            let parsed = parse_kv_line_reporting(line).unwrap();
            assert!(parsed.event.fields[key].is_string(), "{line}");
            assert_eq!(parsed.warnings.len(), 1, "{line}: {:?}", parsed.warnings);
            assert_eq!(parsed.warnings[0].word, line);
            let message = &parsed.warnings[0].message;
            assert!(message.contains("not a number"), "{message}");
            assert!(message.contains(&format!("`{unit}`")), "{message}");
        }
        let message = &warned("usage:95%")[0].1;
        assert!(message.contains("`usage:95`"), "{message}");
        assert!(message.contains("usage_percent"), "{message}");
        assert!(message.contains(r#"`usage:"95%"`"#), "{message}");
    }

    #[test]
    fn text_that_only_looks_numeric_does_not_warn() {
        for line in [
            "day:2026-11-23",
            "ip:10.0.0.1",
            "version:1.2.3",
            "hex:0x1f",
            "place:1st",
            "tns:-50",
            "pct:93.5",
            "big:1e5",
            "zero:0",
            "half:0.5",
            "ok:true",
            "name:vr0",
            "path:/sarc/cad",
            "disk full severity:critical host:cad1 after host",
            r#"usage:"95%" message:"disk full" 'fs:/home' "free text""#,
        ] {
            assert_eq!(warned(line), Vec::new(), "{line}");
        }
    }

    #[test]
    fn words_after_an_unquoted_space_warn_where_they_went() {
        let parsed = parse_kv_line_reporting("message:disk full").unwrap();
        assert_eq!(parsed.event.message.as_deref(), Some("disk"));
        assert_eq!(parsed.event.fields["words"], json!("full"));
        assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
        assert_eq!(parsed.warnings[0].word, "full");
        let message = &parsed.warnings[0].message;
        assert!(message.contains("`message:disk`"), "{message}");
        assert!(message.contains("the field `words`"), "{message}");
        assert!(message.contains(r#"`message:"disk full"`"#), "{message}");

        let warnings = warned("note:disk is full host:cad1");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].0, "is full");
        assert!(warnings[0].1.contains("the message"), "{warnings:?}");
        // After a number, a severity or a quoted value, words are the message as written.
        assert_eq!(warned("tns:-50 failed"), Vec::new());
        assert_eq!(warned("severity:critical disk full"), Vec::new());
        assert_eq!(warned(r#"note:"disk" full"#), Vec::new());
    }

    #[test]
    fn other_silent_surprises_warn() {
        let cases = [
            ("id:0042", "leading zeros"),
            ("id:123456789012345678901", "every digit"),
            ("x:1e400", "too large"),
            ("ok:True", "not a boolean"),
            ("x:null", "no null"),
            ("Severity:critical", "case-sensitive"),
            ("see https://ci/job/5", "field `https`"),
            ("at 12:30", "field `12`"),
            ("severity:info severity:critical", "more than once"),
            (
                r#"words:mine message:"m" a b"#,
                "replace the field `words:mine`",
            ),
        ];
        for (line, expected) in cases {
            let warnings = warned(line);
            assert_eq!(warnings.len(), 1, "{line}: {warnings:?}");
            assert!(warnings[0].1.contains(expected), "{line}: {warnings:?}");
        }
        // The values themselves are unchanged: a warning never changes what is stored.
        let event = parse_kv_line("id:0042 ok:True severity:info severity:critical").unwrap();
        assert_eq!(event.fields["id"], json!(42));
        assert_eq!(event.fields["ok"], json!("True"));
        assert_eq!(event.severity, Some(Severity::Critical));
    }

    #[test]
    fn arbitrary_lines_never_panic() {
        for line in [
            "",
            ":",
            "::",
            "\"",
            "a:\"\\",
            "é:ü ß",
            "a:'x'y",
            "1e400:1e400 x:1e400",
        ] {
            let _ = parse_kv_line(line);
        }
        assert_eq!(
            parse_kv_line("x:1e400").unwrap().fields["x"],
            json!("1e400")
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const RESERVED: [&str; 7] = [
        "type",
        "severity",
        "message",
        "host",
        "component",
        "time",
        "idempotency_key",
    ];

    fn value() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
            "[a-zA-Z_/][a-zA-Z0-9_/.:-]{0,12}".prop_map(serde_json::Value::from),
            "[ a-z\"\\\\é]{0,12}".prop_map(serde_json::Value::from),
        ]
    }

    /// Writes a value the way a producer would: quoted when it would not survive bare.
    fn render(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::String(text) => {
                let bare_safe = !text.is_empty()
                    && !text.contains([' ', '"', '\\', '\''])
                    && infer(text) == serde_json::Value::String(text.clone());
                if bare_safe {
                    text.clone()
                } else {
                    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
                }
            }
            other => other.to_string(),
        }
    }

    proptest! {
        #[test]
        fn rendered_fields_parse_back_to_the_same_typed_values(
            fields in proptest::collection::btree_map("[a-z][a-z0-9_]{0,8}", value(), 0..8)
        ) {
            let fields: Vec<_> = fields.into_iter().filter(|(k, _)| !RESERVED.contains(&k.as_str())).collect();
            let line: Vec<String> = fields.iter().map(|(k, v)| format!("{k}:{}", render(v))).collect();
            let event = parse_kv_line(&line.join(" ")).unwrap();
            prop_assert_eq!(event.fields.len(), fields.len());
            for (key, value) in &fields {
                prop_assert_eq!(&event.fields[key], value);
            }
        }

        #[test]
        fn quoted_strings_and_plain_numbers_never_warn(
            fields in proptest::collection::btree_map("[a-z][a-z0-9_]{0,8}", value(), 0..8)
        ) {
            let line: Vec<String> = fields
                .iter()
                .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
                .map(|(k, v)| match v {
                    serde_json::Value::String(text) => {
                        format!("{k}:\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
                    }
                    other => format!("{k}:{other}"),
                })
                .collect();
            let parsed = parse_kv_line_reporting(&line.join(" ")).unwrap();
            prop_assert_eq!(parsed.warnings, Vec::new());
        }

        #[test]
        fn any_line_parses_or_errors_inside_it(line in "\\PC{0,60}") {
            match parse_kv_line(&line) {
                Ok(_) => {}
                Err(error) => prop_assert!(error.column >= 1 && error.column <= line.chars().count() + 1),
            }
        }
    }
}
