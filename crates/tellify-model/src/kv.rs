//! The `key:value` text form of an event:
//! `project:vr0 block:gc_t step:place status:fail tns:-50 "free text"`.
//!
//! - `key:value` pairs become typed fields: `true`/`false` are booleans, numbers are
//!   numbers, everything else is a string. A quoted value (`msg:"disk is full"`) is always
//!   a string; `\"` and `\\` escape inside quotes.
//! - The envelope keys `type`, `severity`, `message`, `host`, `component`, `time` and
//!   `idempotency_key` set the envelope instead of a field.
//! - Bare words (anything without `key:`) are kept: they form the message, or, when the
//!   line also has `message:`, the field `words`.

use crate::{EventInput, Severity, Source};

/// A syntax error in a `key:value` line; `column` counts characters from 1.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct KvError {
    pub column: usize,
    pub message: String,
}

/// Parses one line of `key:value` words into an event.
pub fn parse_kv_line(line: &str) -> Result<EventInput, KvError> {
    let chars: Vec<char> = line.chars().collect();
    let mut position = 0usize;
    let mut event = EventInput::default();
    let mut words: Vec<String> = Vec::new();
    let mut source = Source::default();
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
            let fail = |message: String| KvError {
                column: value_column,
                message,
            };
            match key.as_str() {
                "type" => event.event_type = Some(value),
                "severity" => {
                    event.severity = Some(value.parse::<Severity>().map_err(fail)?);
                }
                "message" => event.message = Some(value),
                "host" => source.host = Some(value),
                "component" => source.component = Some(value),
                "idempotency_key" => event.idempotency_key = Some(value),
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
                        serde_json::Value::String(value)
                    } else {
                        infer(&value)
                    };
                    event.fields.insert(key, typed);
                }
            }
        } else {
            let (word, _, next) = scan_value(&chars, position)?;
            position = next;
            words.push(word);
        }
    }
    if source.host.is_some() || source.component.is_some() {
        event.source = Some(source);
    }
    if !words.is_empty() {
        let joined = words.join(" ");
        if event.message.is_none() {
            event.message = Some(joined);
        } else {
            event
                .fields
                .insert("words".to_string(), serde_json::Value::String(joined));
        }
    }
    Ok(event)
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
    let looks_numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
    if looks_numeric {
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
        fn any_line_parses_or_errors_inside_it(line in "\\PC{0,60}") {
            match parse_kv_line(&line) {
                Ok(_) => {}
                Err(error) => prop_assert!(error.column >= 1 && error.column <= line.chars().count() + 1),
            }
        }
    }
}
