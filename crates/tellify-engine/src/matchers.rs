//! Alertmanager matchers and their canonical CEL form. A silence made through the
//! Alertmanager API is stored as an ordinary tellify silence whose filter is the matchers
//! written as CEL (`name == "v" && name.matches("^(?:re)$")`); [`cel_to_matchers`] reads
//! exactly that form back, so `amtool silence query` shows what was posted, and any other
//! filter is simply not a matcher silence. Pure: the API and the fuzz target share it.

use serde_json::Value;

/// An Alertmanager matcher: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    pub is_equal: bool,
}

impl Matcher {
    /// Reads a matcher of Alertmanager's JSON form (`{name, value, isRegex, isEqual}`);
    /// the error is the path under the matcher (`.name`) and what is wrong there.
    pub fn from_json(value: &Value) -> Result<Matcher, (String, String)> {
        let Value::Object(object) = value else {
            return Err((String::new(), "must be an object".to_string()));
        };
        let name = match object.get("name") {
            Some(Value::String(name)) => name.clone(),
            _ => return Err((".name".to_string(), "must be a string".to_string())),
        };
        if let Err(message) = check_matcher_name(&name) {
            return Err((".name".to_string(), message));
        }
        let value = match object.get("value") {
            Some(Value::String(value)) => value.clone(),
            _ => return Err((".value".to_string(), "must be a string".to_string())),
        };
        let flag = |key: &str, default: bool| match object.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(_) => Err((format!(".{key}"), "must be true or false".to_string())),
        };
        Ok(Matcher {
            name,
            value,
            is_regex: flag("isRegex", false)?,
            is_equal: flag("isEqual", true)?,
        })
    }

    /// The canonical CEL form; [`cel_to_matchers`] reads it back. Regexes are anchored,
    /// as Alertmanager anchors them.
    pub fn to_cel(&self) -> String {
        let quote = |text: &str| Value::String(text.to_string()).to_string();
        match (self.is_regex, self.is_equal) {
            (false, true) => format!("{} == {}", self.name, quote(&self.value)),
            (false, false) => format!("{} != {}", self.name, quote(&self.value)),
            (true, true) => format!(
                "{}.matches({})",
                self.name,
                quote(&format!("^(?:{})$", self.value))
            ),
            (true, false) => format!(
                "!{}.matches({})",
                self.name,
                quote(&format!("^(?:{})$", self.value))
            ),
        }
    }
}

/// Matchers joined with `&&`, the filter of a silence made through this API.
pub fn matchers_to_cel(matchers: &[Matcher]) -> String {
    let parts: Vec<String> = matchers.iter().map(Matcher::to_cel).collect();
    parts.join(" && ")
}

/// Reads back a filter written by [`matchers_to_cel`]; `None` for any other filter.
pub fn cel_to_matchers(source: &str) -> Option<Vec<Matcher>> {
    let mut rest = source.trim();
    let mut matchers = Vec::new();
    loop {
        let negated = rest.starts_with('!');
        if negated {
            rest = &rest[1..];
        }
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if !is_label_name(name) {
            return None;
        }
        rest = &rest[name_len..];
        let matcher = if let Some(after) = rest.strip_prefix(".matches(") {
            let (pattern, after) = take_string(after)?;
            rest = after.strip_prefix(')')?;
            let inner = pattern.strip_prefix("^(?:")?.strip_suffix(")$")?;
            Matcher {
                name: name.to_string(),
                value: inner.to_string(),
                is_regex: true,
                is_equal: !negated,
            }
        } else {
            if negated {
                return None;
            }
            let (is_equal, after) = if let Some(after) = rest.strip_prefix(" == ") {
                (true, after)
            } else {
                (false, rest.strip_prefix(" != ")?)
            };
            let (value, after) = take_string(after)?;
            rest = after;
            Matcher {
                name: name.to_string(),
                value,
                is_regex: false,
                is_equal,
            }
        };
        matchers.push(matcher);
        if rest.is_empty() {
            return Some(matchers);
        }
        rest = rest.strip_prefix(" && ")?;
    }
}

/// A JSON string literal at the start of `text`, and what follows it.
fn take_string(text: &str) -> Option<(String, &str)> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<String>();
    let value = stream.next()?.ok()?;
    let used = stream.byte_offset();
    Some((value, &text[used..]))
}

/// Parses amtool's matcher syntax: `name="value"`, `name!=value`, `name=~"re"`,
/// `name!~re`, several separated by commas, optionally inside `{...}`.
pub fn parse_matcher_list(text: &str) -> Result<Vec<Matcher>, String> {
    let trimmed = text.trim();
    let inner = trimmed
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or(trimmed);
    let mut matchers = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        check_matcher_name(name).map_err(|message| format!("`{text}`: {message}"))?;
        rest = rest[name_len..].trim_start();
        let (is_regex, is_equal, after) = if let Some(after) = rest.strip_prefix("=~") {
            (true, true, after)
        } else if let Some(after) = rest.strip_prefix("!~") {
            (true, false, after)
        } else if let Some(after) = rest.strip_prefix("!=") {
            (false, false, after)
        } else if let Some(after) = rest.strip_prefix('=') {
            (false, true, after)
        } else {
            return Err(format!("`{text}`: expected =, !=, =~ or !~ after `{name}`"));
        };
        rest = after.trim_start();
        let value = if rest.starts_with('"') {
            let (value, after) =
                take_string(rest).ok_or_else(|| format!("`{text}`: unterminated quoted value"))?;
            rest = after;
            value
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let value = rest[..end].trim().to_string();
            rest = &rest[end..];
            value
        };
        matchers.push(Matcher {
            name: name.to_string(),
            value,
            is_regex,
            is_equal,
        });
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("`{text}`: expected `,` between matchers"));
        }
    }
    Ok(matchers)
}

/// Words CEL reserves: a label of that name cannot be a top-level name in a filter.
const CEL_RESERVED: [&str; 21] = [
    "as",
    "break",
    "const",
    "continue",
    "else",
    "false",
    "for",
    "function",
    "if",
    "import",
    "in",
    "let",
    "loop",
    "namespace",
    "null",
    "package",
    "return",
    "true",
    "var",
    "void",
    "while",
];

pub fn check_matcher_name(name: &str) -> Result<(), String> {
    if !is_label_name(name) {
        return Err(format!(
            "`{name}` is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if CEL_RESERVED.contains(&name) {
        return Err(format!(
            "`{name}` is a reserved word in tellify's filter language and cannot be matched"
        ));
    }
    // In a filter, `event` is the envelope (`event.type`, ...), which hides a label of that
    // name: a matcher on it would never select anything.
    if name == "event" {
        return Err(
            "`event` names the event envelope in tellify's filter language and cannot be matched"
                .to_string(),
        );
    }
    Ok(())
}

/// Whether `name` is a Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphabetic() || first == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{EventContext, Filter};
    use jiff::Timestamp;
    use tellify_model::{EventInput, Fields, StoredEvent};

    /// Labels as an event, the way the API matches matchers against an alert's labels.
    fn labels_as_event(labels: &Fields) -> StoredEvent {
        let input = EventInput {
            event_type: Some("alertmanager".to_string()),
            fields: labels.clone(),
            ..Default::default()
        };
        StoredEvent::from_input(input, None, Timestamp::UNIX_EPOCH, 0)
    }

    #[test]
    fn matchers_round_trip_through_cel() {
        let matchers = parse_matcher_list(
            r#"{alertname="Disk \"Full\"", instance!=cad, job=~"node|prom", env!~"dev.*"}"#,
        )
        .unwrap();
        assert_eq!(matchers.len(), 4);
        assert_eq!(matchers[0].value, "Disk \"Full\"");
        assert_eq!(matchers[1].value, "cad");
        assert!(!matchers[1].is_equal && !matchers[1].is_regex);
        let cel = matchers_to_cel(&matchers);
        assert_eq!(
            cel,
            r#"alertname == "Disk \"Full\"" && instance != "cad" && job.matches("^(?:node|prom)$") && !env.matches("^(?:dev.*)$")"#
        );
        assert_eq!(cel_to_matchers(&cel), Some(matchers));
        assert!(Filter::compile(&cel).is_ok());
        assert_eq!(cel_to_matchers("alertname == \"x\" || true"), None);
        assert_eq!(cel_to_matchers("severity >= 2"), None);
        assert!(parse_matcher_list("alertname").is_err());
        assert!(parse_matcher_list("namespace=\"x\"").is_err());
    }

    #[test]
    fn a_label_named_event_cannot_be_matched() {
        // Found by the `alertmanager_payload` fuzz target: `event == "x"` compares the
        // envelope, not the label, so the matcher (a silence) never selected anything.
        let error = parse_matcher_list("event=\"x\"").unwrap_err();
        assert!(error.contains("envelope"), "{error}");
        let error =
            Matcher::from_json(&serde_json::json!({"name": "event", "value": "x"})).unwrap_err();
        assert_eq!(error.0, ".name");
    }

    #[test]
    fn matcher_filters_select_labels_like_alertmanager() {
        let labels: Fields =
            serde_json::from_str(r#"{"alertname": "DiskFull", "job": "node", "env": "prod"}"#)
                .unwrap();
        let event = labels_as_event(&labels);
        let context = EventContext::new(&event);
        let check = |text: &str| {
            let matchers = parse_matcher_list(text).unwrap();
            Filter::compile(&matchers_to_cel(&matchers))
                .unwrap()
                .matches(&context)
        };
        assert!(check("alertname=DiskFull"));
        assert!(check("job=~\"no.*\",env!~\"dev\""));
        assert!(!check("job=~\"no\""), "regexes are anchored");
        assert!(!check("alertname!=DiskFull"));
    }
}
