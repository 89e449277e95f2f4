//! Filter expressions in CEL (the Common Expression Language): safe, not Turing-complete,
//! and widely known. Event fields are top-level names (`block == "gc_t" && tns < 0`); the
//! envelope is `event.type`, `event.severity`, `event.message`, `event.host`,
//! `event.component`, `event.producer` and `event.time` (RFC 3339 text), and `severity`,
//! `message`, `host` and `component` are also top-level unless a field has that name.
//!
//! A missing field makes the expression false, never an error at run time.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::{Context, Env, Program, Value};
use tellify_model::StoredEvent;

use crate::dispatch::IndexValue;

/// Longest filter accepted, in bytes; CEL's cost is linear in the expression and the input.
pub const MAX_FILTER_BYTES: usize = 4096;

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// A compiled filter, with the equality predicates the dispatch index can use.
#[derive(Debug)]
pub struct Filter {
    source: String,
    program: Program,
    equalities: Vec<(String, IndexValue)>,
}

/// A filter that does not compile, with where the problem is (1-based).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct FilterError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Filter {
    pub fn compile(source: &str) -> Result<Filter, FilterError> {
        if source.len() > MAX_FILTER_BYTES {
            return Err(FilterError {
                line: 1,
                column: 1,
                message: format!(
                    "filter is {} bytes, more than the limit of {MAX_FILTER_BYTES}",
                    source.len()
                ),
            });
        }
        if source.trim().is_empty() {
            return Err(FilterError {
                line: 1,
                column: 1,
                message: "filter is empty (use `true` to match every event)".to_string(),
            });
        }
        let program = ENV.compile(source).map_err(|errors| {
            let first = errors.errors.first();
            let (line, column) = first
                .map(|e| (e.pos.0.max(1) as usize, e.pos.1.max(1) as usize))
                .unwrap_or((1, 1));
            let message = first
                .map(|e| e.msg.clone())
                .unwrap_or_else(|| "syntax error".to_string());
            FilterError {
                line,
                column,
                message: format!(
                    "syntax error: {}",
                    message.trim_start_matches("Syntax error: ")
                ),
            }
        })?;
        let mut equalities = Vec::new();
        collect_equalities(program.expression(), &mut equalities);
        Ok(Filter {
            source: source.to_string(),
            program,
            equalities,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// `name == literal` predicates that must all hold for the filter to be true.
    pub fn equalities(&self) -> &[(String, IndexValue)] {
        &self.equalities
    }

    /// True only when the expression evaluates to boolean `true`; errors (a missing field,
    /// a type mismatch) count as false.
    ///
    /// The equality predicates are checked against the event first: when one of them is
    /// certainly false, so is the whole conjunction, and CEL is not run at all.
    pub fn matches(&self, context: &EventContext) -> bool {
        if self.rejects(context.event) {
            return false;
        }
        matches!(self.program.execute(context.cel()), Ok(Value::Bool(true)))
    }

    fn rejects(&self, event: &StoredEvent) -> bool {
        self.equalities
            .iter()
            .any(|(name, expected)| certainly_differs(event, name, expected))
    }
}

/// Walks the top-level `&&` chain and records `ident == literal` (either order).
fn collect_equalities(expr: &cel::common::ast::IdedExpr, out: &mut Vec<(String, IndexValue)>) {
    use cel::common::ast::Expr;
    let Expr::Call(call) = &expr.expr else {
        return;
    };
    match call.func_name.as_str() {
        "_&&_" => {
            for arg in &call.args {
                collect_equalities(arg, out);
            }
        }
        "_==_" if call.args.len() == 2 => {
            let pair = (&call.args[0], &call.args[1]);
            let found =
                name_and_literal(pair.0, pair.1).or_else(|| name_and_literal(pair.1, pair.0));
            if let Some(found) = found {
                out.push(found);
            }
        }
        _ => {}
    }
}

fn name_and_literal(
    name: &cel::common::ast::IdedExpr,
    literal: &cel::common::ast::IdedExpr,
) -> Option<(String, IndexValue)> {
    use cel::common::ast::{Expr, LiteralValue};
    let key = match &name.expr {
        Expr::Ident(ident) if ident != "event" => ident.clone(),
        Expr::Select(select) => match &select.operand.expr {
            Expr::Ident(root) if root == "event" && !select.test => {
                format!("event.{}", select.field)
            }
            _ => return None,
        },
        _ => return None,
    };
    let Expr::Literal(value) = &literal.expr else {
        return None;
    };
    let value = match value {
        LiteralValue::String(text) => IndexValue::Str(text.inner().to_string()),
        LiteralValue::Int(number) => IndexValue::Int(*number.inner()),
        LiteralValue::Boolean(flag) => IndexValue::Bool(*flag.inner()),
        _ => return None,
    };
    Some((key, value))
}

/// Whether the predicate `name == expected` is certainly false for `event` (a missing
/// value, another type or another value); `false` when in doubt, leaving it to CEL.
fn certainly_differs(event: &StoredEvent, name: &str, expected: &IndexValue) -> bool {
    let envelope = |key: &str| -> Option<Option<&str>> {
        match key {
            "type" => Some(event.event_type.as_deref()),
            "severity" => Some(Some(event.severity.as_str())),
            "message" => Some(event.message.as_deref()),
            "host" => Some(event.source.host.as_deref()),
            "component" => Some(event.source.component.as_deref()),
            "producer" => Some(event.source.producer.as_deref()),
            "id" => Some(Some(event.id.as_str())),
            _ => None,
        }
    };
    let text_differs = |text: Option<&str>| match (text, expected) {
        (None, _) => true,
        (Some(text), IndexValue::Str(wanted)) => text != wanted,
        (Some(_), _) => true,
    };
    if let Some(key) = name.strip_prefix("event.") {
        return match envelope(key) {
            Some(text) => text_differs(text),
            None => false,
        };
    }
    let Some(value) = event.fields.get(name) else {
        return match name {
            "severity" | "message" | "host" | "component" => {
                envelope(name).is_some_and(text_differs)
            }
            _ => true,
        };
    };
    match (value, expected) {
        (serde_json::Value::String(text), IndexValue::Str(wanted)) => text != wanted,
        (serde_json::Value::Bool(flag), IndexValue::Bool(wanted)) => flag != wanted,
        (serde_json::Value::Number(number), IndexValue::Int(wanted)) => match number.as_i64() {
            Some(integer) => integer != *wanted,
            None => number.as_f64().is_some_and(|float| float != *wanted as f64),
        },
        // A number is never equal to a string or a boolean, nor null to anything.
        (serde_json::Value::Number(_), _) => true,
        (serde_json::Value::String(_), _) | (serde_json::Value::Bool(_), _) => true,
        (serde_json::Value::Null, _) => true,
        _ => false,
    }
}

/// An event prepared for evaluation, shared by every filter that looks at it. The CEL
/// context is built on first use only: most candidates are rejected by their equality
/// predicates before CEL runs.
pub struct EventContext<'a> {
    event: &'a StoredEvent,
    context: std::cell::OnceCell<Context<'static, 'static>>,
}

impl<'a> EventContext<'a> {
    pub fn new(event: &'a StoredEvent) -> EventContext<'a> {
        EventContext {
            event,
            context: std::cell::OnceCell::new(),
        }
    }

    pub fn event(&self) -> &StoredEvent {
        self.event
    }

    fn cel(&self) -> &Context<'static, 'static> {
        self.context.get_or_init(|| build_context(self.event))
    }
}

fn build_context(event: &StoredEvent) -> Context<'static, 'static> {
    let mut context = Context::with_env(ENV.clone());
    for (name, value) in &event.fields {
        context.add_variable_from_value(name.clone(), json_to_cel(value));
    }
    let mut envelope: HashMap<String, Value> = HashMap::new();
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(text) = value {
            envelope.insert(key.to_string(), Value::from(text));
        }
    };
    put("type", event.event_type.as_deref());
    put("severity", Some(event.severity.as_str()));
    put("message", event.message.as_deref());
    put("host", event.source.host.as_deref());
    put("component", event.source.component.as_deref());
    put("producer", event.source.producer.as_deref());
    put("id", Some(&event.id));
    envelope.insert("time".to_string(), Value::from(event.time.to_string()));
    for shortcut in ["severity", "message", "host", "component"] {
        if event.fields.contains_key(shortcut) {
            continue;
        }
        if let Some(value) = envelope.get(shortcut) {
            context.add_variable_from_value(shortcut, value.clone());
        }
    }
    context.add_variable_from_value("event", envelope);
    context
}

fn json_to_cel(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(flag) => Value::Bool(*flag),
        serde_json::Value::Number(number) => {
            if let Some(integer) = number.as_i64() {
                Value::Int(integer)
            } else if let Some(unsigned) = number.as_u64() {
                Value::UInt(unsigned)
            } else {
                Value::Float(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(text) => Value::from(text.as_str()),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(json_to_cel).collect()))
        }
        serde_json::Value::Object(map) => {
            let converted: HashMap<String, Value> = map
                .iter()
                .map(|(key, item)| (key.clone(), json_to_cel(item)))
                .collect();
            Value::from(converted)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(fields: serde_json::Value) -> StoredEvent {
        let input = tellify_model::EventInput {
            event_type: Some("build".to_string()),
            fields: fields.as_object().cloned().unwrap_or_default(),
            ..Default::default()
        };
        StoredEvent::from_input(
            input,
            Some("ci".to_string()),
            jiff::Timestamp::UNIX_EPOCH,
            0,
        )
    }

    fn check(filter: &str, fields: serde_json::Value) -> bool {
        Filter::compile(filter)
            .unwrap()
            .matches(&EventContext::new(&event(fields)))
    }

    #[test]
    fn fields_and_envelope_are_reachable() {
        assert!(check(
            r#"block == "gc_t" && tns < 0"#,
            json!({"block": "gc_t", "tns": -50})
        ));
        assert!(!check(
            r#"block == "gc_t" && tns < 0"#,
            json!({"block": "gc_t", "tns": 5})
        ));
        assert!(check(
            r#"event.type == "build" && severity == "info""#,
            json!({"a": 1})
        ));
        assert!(check(r#"event.producer == "ci""#, json!({})));
        assert!(check("pct > 90.0", json!({"pct": 93.5})));
    }

    #[test]
    fn a_missing_field_is_false_not_an_error() {
        assert!(!check("usage > 90", json!({"other": 1})));
        assert!(!check("!(usage > 90)", json!({"other": 1})));
        assert!(!check(r#"status == "fail""#, json!({})));
        assert!(check(
            r#"has(event.type) && !has(event.message)"#,
            json!({})
        ));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let error = Filter::compile("block == ").unwrap_err();
        assert!(error.message.contains("syntax error"), "{error}");
        assert_eq!(error.line, 1);
        assert!(Filter::compile(&"a".repeat(MAX_FILTER_BYTES + 1)).is_err());
        assert!(Filter::compile("  ").is_err());
    }

    #[test]
    fn the_equality_prefilter_never_disagrees_with_cel() {
        let filters = [
            r#"block == "gc_t" && status == "fail""#,
            "n == 3 && ok == true",
            r#"severity == "critical" && event.type == "build""#,
            r#"host == "cad" || n == 3"#,
        ];
        let values = [
            json!({"block": "gc_t", "status": "fail"}),
            json!({"block": "gc_t", "status": 1}),
            json!({"block": 5, "status": "fail"}),
            json!({"n": 3, "ok": true}),
            json!({"n": 3.0, "ok": true}),
            json!({"n": 3.5, "ok": true}),
            json!({"n": "3", "ok": true}),
            json!({"n": 3, "ok": null}),
            json!({"severity": "critical"}),
            json!({"host": "cad"}),
            json!({}),
        ];
        for source in filters {
            let filter = Filter::compile(source).unwrap();
            for fields in &values {
                let event = event(fields.clone());
                let context = EventContext::new(&event);
                let by_cel = matches!(filter.program.execute(context.cel()), Ok(Value::Bool(true)));
                assert!(
                    !(filter.rejects(&event) && by_cel),
                    "prefilter rejected what CEL accepts: {source} on {fields}"
                );
                assert_eq!(filter.matches(&context), by_cel, "{source} on {fields}");
            }
        }
    }

    #[test]
    fn equalities_are_extracted_from_the_conjunction_only() {
        let filter = Filter::compile(
            r#"block == "gc_t" && 3 == n && event.type == "x" && (a == "1" || b == "2")"#,
        )
        .unwrap();
        assert_eq!(
            filter.equalities(),
            &[
                ("block".to_string(), IndexValue::Str("gc_t".to_string())),
                ("n".to_string(), IndexValue::Int(3)),
                ("event.type".to_string(), IndexValue::Str("x".to_string())),
            ]
        );
    }
}
