//! Filter expressions in CEL (the Common Expression Language): safe, not Turing-complete,
//! and widely known. Event fields are top-level names (`block == "gc_t" && tns < 0`); the
//! envelope is `event.type`, `event.severity`, `event.message`, `event.host`,
//! `event.component`, `event.producer` and `event.time` (RFC 3339 text), and `severity`,
//! `message`, `host` and `component` are also top-level unless a field has that name.
//!
//! A missing field makes the expression false, never an error at run time.
//!
//! **Invariant:** a filter's cost is bounded before it is accepted. [`Filter::compile`]
//! refuses what could be slow on some event (see [`cost`]): comprehensions nested more
//! than two deep, large literals, deep trees, non-literal regular expressions and any
//! filter whose estimated cost exceeds the budget. As a second line, an evaluation can be
//! timed against a run-time budget by an [`EvaluationMeter`] the caller passes in; the
//! engine itself never reads a clock.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::{Context, Env, Program, Value};
use tellify_model::StoredEvent;

use crate::dispatch::IndexValue;

pub mod cost;
pub mod schema;
mod slips;

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// A compiled filter, with the equality predicates the dispatch index can use.
#[derive(Debug)]
pub struct Filter {
    source: String,
    program: Program,
    equalities: Vec<(String, IndexValue)>,
    estimated_cost: f64,
}

/// A filter that does not compile, with where the problem is (1-based).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct FilterError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub kind: FilterErrorKind,
}

/// Why a filter was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterErrorKind {
    /// Not a filter: a syntax error, empty or too long.
    Invalid,
    /// A valid expression whose cost is not bounded well enough (see [`cost`]).
    TooCostly,
}

/// One evaluation took longer than the run-time budget. The filter counts as not
/// matching; the caller decides what happens to its owner (the worker marks the
/// subscription failing).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "filter evaluation took {} µs, more than the budget of {} µs",
    elapsed_nanos / 1000,
    budget_nanos / 1000
)]
pub struct BudgetExceeded {
    pub elapsed_nanos: u64,
    pub budget_nanos: u64,
}

/// A filter failed on an event for a reason other than a missing field: a type error
/// (`size(n)` where `n` is a number, a string compared with a number), a division by zero,
/// a result that is not a boolean. It counts as not matching, and is recorded in the
/// context for the caller to collect with [`EventContext::take_failure`] (the worker
/// counts it for the subscription's owner). The message names types and operators, never
/// a value of the event, so it can be shown to whoever owns the filter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EvaluationFailed {
    pub message: String,
}

/// Times evaluations for the run-time budget. The engine never reads a clock: the
/// binary passes one in (a monotonic clock in production, a scripted one in tests).
pub trait EvaluationMeter {
    /// A reading of a monotonic clock, in nanoseconds from any fixed origin.
    fn now_nanos(&self) -> u64;
    /// The longest one evaluation may take, in nanoseconds.
    fn budget_nanos(&self) -> u64;
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
                kind: FilterErrorKind::Invalid,
            });
        }
        if source.trim().is_empty() {
            return Err(FilterError {
                line: 1,
                column: 1,
                message: "filter is empty (use `true` to match every event)".to_string(),
                kind: FilterErrorKind::Invalid,
            });
        }
        let program = ENV.compile(source).map_err(|errors| {
            if let Some(slip) = slips::find_slip(source) {
                let (line, column) = line_and_column(source, slip.offset);
                return FilterError {
                    line,
                    column,
                    message: format!(
                        "syntax error: `{}` is not an operator in a filter; did you mean {}?",
                        slip.written, slip.meant
                    ),
                    kind: FilterErrorKind::Invalid,
                };
            }
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
                kind: FilterErrorKind::Invalid,
            }
        })?;
        let estimated_cost = cost::estimate(program.expression()).map_err(|refusal| {
            let offset = program
                .source_info()
                .offset_for(refusal.expr_id)
                .map_or(0, |(start, _)| start as usize);
            let (line, column) = line_and_column(source, offset);
            FilterError {
                line,
                column,
                message: refusal.message,
                kind: FilterErrorKind::TooCostly,
            }
        })?;
        if let Some(unknown) = slips::find_unknown_function(&program, source, &ENV) {
            let (line, column) = line_and_column(source, unknown.offset);
            return Err(FilterError {
                line,
                column,
                message: unknown.message,
                kind: FilterErrorKind::Invalid,
            });
        }
        let mut equalities = Vec::new();
        collect_equalities(program.expression(), &mut equalities);
        Ok(Filter {
            source: source.to_string(),
            program,
            equalities,
            estimated_cost,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The static estimate of one evaluation, in cost units (at most [`cost::MAX_COST`]).
    pub fn estimated_cost(&self) -> f64 {
        self.estimated_cost
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
    ///
    /// An evaluation over the run-time budget counts as false and is recorded in the
    /// context, for the caller to collect with [`EventContext::take_over_budget`]; so is
    /// an evaluation that failed for another reason than a missing field
    /// ([`EventContext::take_failure`]).
    pub fn matches(&self, context: &EventContext) -> bool {
        match self.evaluate(context) {
            Ok(matched) => matched,
            Err(over_budget) => {
                context.over_budget.set(Some(over_budget));
                false
            }
        }
    }

    /// Like [`Filter::matches`], with an evaluation over the budget of the context's
    /// meter (if it has one) as an error. A failure other than a missing field is still
    /// recorded in the context ([`EventContext::take_failure`]).
    pub fn evaluate(&self, context: &EventContext) -> Result<bool, BudgetExceeded> {
        if self.rejects(context.event) {
            return Ok(false);
        }
        let cel_context = context.cel();
        let Some(meter) = context.meter else {
            return Ok(context.judge(self.program.execute(cel_context)));
        };
        let started = meter.now_nanos();
        let outcome = self.program.execute(cel_context);
        let elapsed_nanos = meter.now_nanos().saturating_sub(started);
        let budget_nanos = meter.budget_nanos();
        if elapsed_nanos > budget_nanos {
            return Err(BudgetExceeded {
                elapsed_nanos,
                budget_nanos,
            });
        }
        Ok(context.judge(outcome))
    }

    fn rejects(&self, event: &StoredEvent) -> bool {
        self.equalities
            .iter()
            .any(|(name, expected)| certainly_differs(event, name, expected))
    }
}

/// 1-based line and column of a byte offset in `source`.
fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset.min(source.len())).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |text| text.chars().count())
        + 1;
    (line, column)
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
    meter: Option<&'a dyn EvaluationMeter>,
    over_budget: Cell<Option<BudgetExceeded>>,
    failed: Cell<Option<EvaluationFailed>>,
}

impl<'a> EventContext<'a> {
    pub fn new(event: &'a StoredEvent) -> EventContext<'a> {
        EventContext {
            event,
            context: std::cell::OnceCell::new(),
            meter: None,
            over_budget: Cell::new(None),
            failed: Cell::new(None),
        }
    }

    /// Times every evaluation against `meter`'s budget.
    pub fn with_meter(mut self, meter: &'a dyn EvaluationMeter) -> EventContext<'a> {
        self.meter = Some(meter);
        self
    }

    /// The last evaluation over the budget since the previous call, if any. The worker
    /// asks after offering the event to each subscription, so it knows whose filter it was.
    pub fn take_over_budget(&self) -> Option<BudgetExceeded> {
        self.over_budget.take()
    }

    /// The last evaluation since the previous call that failed for another reason than a
    /// missing field, if any; asked, like [`EventContext::take_over_budget`], after each
    /// subscription.
    pub fn take_failure(&self) -> Option<EvaluationFailed> {
        self.failed.take()
    }

    pub fn event(&self) -> &StoredEvent {
        self.event
    }

    /// Whether an outcome of CEL is a match, recording a failure that is not a missing
    /// field (which only makes the filter false).
    fn judge(&self, outcome: Result<Value, cel::ExecutionError>) -> bool {
        let message = match outcome {
            Ok(Value::Bool(matched)) => return matched,
            Ok(other) => format!(
                "the filter gave {}, not a boolean (true or false)",
                a(other.type_of())
            ),
            Err(error) => match describe_failure(&error) {
                Some(message) => message,
                None => return false,
            },
        };
        self.failed.set(Some(EvaluationFailed { message }));
        false
    }

    fn cel(&self) -> &Context<'static, 'static> {
        self.context.get_or_init(|| build_context(self.event))
    }
}

/// What went wrong in an evaluation, in words that name types and operators but never a
/// value of the event; `None` for a missing field or key, which only makes a filter false.
fn describe_failure(error: &cel::ExecutionError) -> Option<String> {
    use cel::ExecutionError as E;
    let message = match error {
        E::UndeclaredReference(_) | E::NoSuchKey(_) => return None,
        E::ValuesNotComparable(left, right) => format!(
            "{} cannot be compared with {}",
            a(left.type_of()),
            a(right.type_of())
        ),
        E::NoSuchOverload(overload) => {
            let function = overload.function().trim_matches('_');
            format!(
                "`{function}` does not apply to ({})",
                overload.argument_types().join(", ")
            )
        }
        E::UnexpectedType { got, want } => format!("got {} where {} is needed", a(got), a(want)),
        E::UnsupportedTargetType { target } => {
            format!("a function does not take {}", a(target.type_of()))
        }
        E::NotSupportedAsMethod { method, target } => {
            format!("`{method}` is not a method of {}", a(target.type_of()))
        }
        E::UnsupportedBinaryOperator(operator, left, right) => format!(
            "`{operator}` does not apply to {} and {}",
            a(left.type_of()),
            a(right.type_of())
        ),
        E::UnsupportedIndex(index, target) => format!(
            "{} cannot be indexed with {}",
            a(target.type_of()),
            a(index.type_of())
        ),
        E::UnsupportedKeyType(key) => format!("{} cannot be a map key", a(key.type_of())),
        E::InvalidArgumentCount { .. } | E::MissingArgumentOrTarget => error.to_string(),
        E::FunctionError { function, .. } => format!("`{function}` failed on this event"),
        E::DivisionByZero(_) => "division by zero".to_string(),
        E::RemainderByZero(_) => "remainder by zero".to_string(),
        E::Overflow(operator, _, _) => format!("`{operator}` overflowed"),
        E::IndexOutOfBounds(_) => "a list index is out of range".to_string(),
        E::DuplicateKey(_) => "a map repeats a key".to_string(),
        _ => "the filter could not be evaluated".to_string(),
    };
    Some(message)
}

/// A type name with its article: `a string`, `an int`.
fn a(type_name: impl std::fmt::Display) -> String {
    let name = type_name.to_string();
    let article = if name.starts_with(['a', 'e', 'i', 'o']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
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
    fn a_slip_gets_a_hint_at_its_position() {
        let error = Filter::compile(r#"status = "fail""#).unwrap_err();
        assert_eq!(error.kind, FilterErrorKind::Invalid);
        assert!(error.message.contains("did you mean ==?"), "{error}");
        assert_eq!((error.line, error.column), (1, 8), "{error}");
        for (source, hint, position) in [
            (r#"a == 1 and b == 2"#, "did you mean &&?", (1, 8)),
            (r#"a == 1 or b == 2"#, "did you mean ||?", (1, 8)),
            (r#"a == 1 & b == 2"#, "did you mean &&?", (1, 8)),
            (r#"a == 1 | b == 2"#, "did you mean ||?", (1, 8)),
            (r#"not (a == 1)"#, "did you mean !?", (1, 1)),
            (r#"a == 1 && not(b == 2)"#, "did you mean !?", (1, 11)),
            (
                r#"a == 1 && lower(b) == "x""#,
                "`lower` is not a function",
                (1, 11),
            ),
            (
                r#"a == 1 && b.lower() == "x""#,
                "`lower` is not a function",
                (1, 13),
            ),
            ("a == 1 &&\n  b = 2", "did you mean ==?", (2, 5)),
        ] {
            let error = Filter::compile(source).unwrap_err();
            assert!(error.message.contains(hint), "{source}: {error}");
            assert_eq!((error.line, error.column), position, "{source}: {error}");
        }
        // Anything else keeps the parser's own message, and every function cel has passes.
        let error = Filter::compile("a == (1").unwrap_err();
        assert!(!error.message.contains("did you mean"), "{error}");
        let known = r#"size(a) > 0 && int(b) == 1 && string(c) == "x" && double(d) > 1.0
            && name.startsWith("x") && name.endsWith("y") && name.contains("z")
            && name.matches("^x") && xs.exists(x, x > 1) && has(event.message)
            && type(a) == int && uint(e) > 0u && bool(f) && dyn(g) == 1"#;
        assert!(Filter::compile(known).is_ok());
    }

    /// The failure an evaluation recorded, with whether it matched.
    fn failure(filter: &str, fields: serde_json::Value) -> (bool, Option<String>) {
        let filter = Filter::compile(filter).unwrap();
        let event = event(fields);
        let context = EventContext::new(&event);
        let matched = filter.matches(&context);
        (matched, context.take_failure().map(|failed| failed.message))
    }

    #[test]
    fn a_failure_other_than_a_missing_field_is_recorded_without_the_events_values() {
        let fields = json!({"tags": 5, "name": "secret-name", "n": 0, "xs": [1]});
        for (source, expected) in [
            ("size(tags) > 2", "`size` does not apply to (int)"),
            ("name > 2", "`>` does not apply to (string, int)"),
            ("tags", "the filter gave an int, not a boolean"),
            ("10 / n > 1", "division by zero"),
            ("xs[3] == 1", "a list index is out of range"),
        ] {
            let (matched, failed) = failure(source, fields.clone());
            assert!(!matched, "{source}");
            let message = failed.unwrap_or_else(|| panic!("no failure recorded: {source}"));
            assert!(message.contains(expected), "{source}: {message}");
            assert!(!message.contains("secret"), "{source}: {message}");
        }
        for source in [
            "missing > 2",
            "size(missing) > 2",
            "!(missing > 2)",
            r#"event.message == "x""#,
            r#"tags == 5 && name == "secret-name""#,
        ] {
            let (_, failed) = failure(source, fields.clone());
            assert_eq!(failed, None, "{source}");
        }
        let filter = Filter::compile("size(tags) > 2").unwrap();
        let event = event(fields);
        let context = EventContext::new(&event);
        assert_eq!(filter.evaluate(&context), Ok(false));
        assert!(context.take_failure().is_some(), "evaluate records it too");
        assert_eq!(context.take_failure(), None, "taken once");
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

    fn refusal(filter: &str) -> FilterError {
        match Filter::compile(filter) {
            Ok(_) => panic!("accepted: {filter}"),
            Err(error) => error,
        }
    }

    /// The filter from the finding (nested `all()` over a list, 0.4 s per event on main).
    fn nested_all_filter() -> String {
        let mut filter =
            String::from("xs.all(a, xs.all(b, xs.all(c, a + b + c >= 0 && a * b * c >= 0 && ");
        while filter.len() < 700 {
            filter.push_str("(a - b + c) * (b - c + a) >= -1000000 && ");
        }
        filter.push_str("true)))");
        filter
    }

    #[test]
    fn nested_comprehensions_are_refused_at_compile_time() {
        let error = refusal(&nested_all_filter());
        assert_eq!(error.kind, FilterErrorKind::TooCostly);
        assert!(
            error.message.contains("nested comprehensions")
                && error.message.contains("at most 2 levels"),
            "{error}"
        );
        assert_eq!(
            (error.line, error.column),
            (1, 27),
            "points at the third level"
        );
        let mapped = refusal("xs.map(a, xs.map(b, xs.exists(c, c == a + b))).size() > 0");
        assert!(mapped.message.contains("nested comprehensions"), "{mapped}");
        assert!(Filter::compile("xs.all(a, [1, 2, 3].exists(b, a > b))").is_ok());
        assert!(Filter::compile("xs.exists(a, a > 1) && ys.exists(b, b > 1)").is_ok());
    }

    #[test]
    fn a_filter_whose_estimate_exceeds_the_budget_is_refused() {
        let mut body = String::from("a != b");
        for _ in 0..40 {
            body.push_str(" && a.contains(b)");
        }
        let source = format!("xs.all(a, ys.all(b, {body}))");
        let error = refusal(&source);
        assert_eq!(error.kind, FilterErrorKind::TooCostly);
        assert!(
            error.message.contains("estimated cost")
                && error.message.contains("exceeds the budget of 1e5"),
            "{error}"
        );
        let cheap = Filter::compile(r#"xs.all(a, a in ys) && host == "cad""#).unwrap();
        assert!(cheap.estimated_cost() <= cost::MAX_COST);
        let plain = Filter::compile(r#"block == "gc_t" && tns < 0"#).unwrap();
        assert!(plain.estimated_cost() < 100.0, "{}", plain.estimated_cost());
    }

    #[test]
    fn literals_patterns_and_depth_are_bounded() {
        let items: Vec<String> = (0..=cost::MAX_LITERAL_ITEMS)
            .map(|i| i.to_string())
            .collect();
        let error = refusal(&format!("n in [{}]", items.join(", ")));
        assert!(error.message.contains("literal has 101 items"), "{error}");
        let error = refusal("message.matches(pattern)");
        assert!(error.message.contains("literal pattern"), "{error}");
        assert!(Filter::compile(r#"message.matches("^disk [0-9]+% full$")"#).is_ok());
        // Short, yet megabytes compiled: cel would compile it on every evaluation.
        let error = refusal(r#"message.matches("\\w{1000}\\w{1000}")"#);
        assert!(
            error.message.contains("compiles to more than 256 KiB"),
            "{error}"
        );
        let error = refusal(r#"message.matches("(unclosed")"#);
        assert!(
            error.message.contains("not a regular expression"),
            "{error}"
        );
        assert!(Filter::compile(r#"alertname == "x" && job.matches("^(?:api|web)$")"#).is_ok());
        // cel's own parser recursion limit (96) applies to what nests in the grammar...
        let parenthesised = format!("{}n{} > 0", "(".repeat(300), ")".repeat(300));
        let error = refusal(&parenthesised);
        assert_eq!(error.kind, FilterErrorKind::Invalid);
        assert!(
            error.message.to_lowercase().contains("recursion limit"),
            "{error}"
        );
        // ...and the estimate's own depth limit to the chains the parser reads in a loop,
        // which the interpreter would recurse through, up to the longest filter there is.
        let chain = format!("n{} > 0", "+n".repeat((MAX_FILTER_BYTES - 8) / 2));
        let error = refusal(&chain);
        assert_eq!(error.kind, FilterErrorKind::TooCostly);
        assert!(error.message.contains("nests deeper than 64"), "{error}");
        let selections = format!("a{} == 1", ".b".repeat(100));
        let error = refusal(&selections);
        assert_eq!(error.kind, FilterErrorKind::TooCostly);
        assert!(error.message.contains("nests deeper than 64"), "{error}");
        assert!(Filter::compile(&format!("a{} == 1", ".b".repeat(30))).is_ok());
    }

    /// A meter whose clock moves by `step` nanoseconds on every reading.
    struct ScriptedMeter {
        now: Cell<u64>,
        step: u64,
        budget: u64,
    }

    impl EvaluationMeter for ScriptedMeter {
        fn now_nanos(&self) -> u64 {
            let now = self.now.get() + self.step;
            self.now.set(now);
            now
        }

        fn budget_nanos(&self) -> u64 {
            self.budget
        }
    }

    #[test]
    fn an_evaluation_over_the_budget_is_reported_as_a_budget_error() {
        let filter = Filter::compile("xs.exists(x, x > 2)").unwrap();
        let event = event(json!({"xs": [1, 2, 3]}));
        let slow = ScriptedMeter {
            now: Cell::new(0),
            step: 7_000_000,
            budget: 5_000_000,
        };
        let context = EventContext::new(&event).with_meter(&slow);
        let error = filter.evaluate(&context).unwrap_err();
        assert_eq!(
            error,
            BudgetExceeded {
                elapsed_nanos: 7_000_000,
                budget_nanos: 5_000_000
            }
        );
        assert!(
            error
                .to_string()
                .contains("more than the budget of 5000 µs"),
            "{error}"
        );
        assert!(
            context.take_over_budget().is_none(),
            "evaluate reports, it does not record"
        );
        assert!(!filter.matches(&context), "over budget counts as no match");
        assert_eq!(context.take_over_budget(), Some(error));
        assert_eq!(context.take_over_budget(), None, "taken once");
        let fast = ScriptedMeter {
            now: Cell::new(0),
            step: 1_000,
            budget: 5_000_000,
        };
        let context = EventContext::new(&event).with_meter(&fast);
        assert_eq!(filter.evaluate(&context), Ok(true));
        assert!(filter.matches(&context));
        assert_eq!(context.take_over_budget(), None);
        // The equality fast path never runs CEL, so it is never over budget.
        let prefiltered = Filter::compile(r#"kind == "x" && xs.exists(x, x > 2)"#).unwrap();
        let context = EventContext::new(&event).with_meter(&slow);
        assert_eq!(prefiltered.evaluate(&context), Ok(false));
    }

    /// Prints estimated cost and measured time of the most expensive shapes of filter the
    /// budget admits; run by hand to calibrate `cost::MAX_COST` (see docs/security-cel.md):
    /// `cargo test --release -p tellify-engine calibrate -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn calibrate_cost_units() {
        let numbers: Vec<i64> = (0..100).collect();
        let words: Vec<String> = (0..100)
            .map(|i| format!("word-{i}-{}", "x".repeat(60)))
            .collect();
        let event = event(json!({"xs": numbers, "ys": words, "message": "m".repeat(8000)}));
        let mut candidates = vec![
            nested_all_filter(),
            "xs.all(a, xs.all(b, a + b >= 0))".to_string(),
            "xs.all(a, a in ys)".to_string(),
            "xs.exists(a, ys.exists(b, b < a))".to_string(),
            "xs.all(a, ys.exists(b, a == b))".to_string(),
            "xs.all(a, xs.all(b, a + b >= 0 && a - b <= 1000 && a * b >= 0))".to_string(),
            "ys.all(a, ys.all(b, a == b || a.contains(b) || b.startsWith(a)))".to_string(),
            "xs.map(a, xs.map(b, a * b)).size() > 0".to_string(),
            r#"ys.all(a, a.matches("^word-[0-9]+-x+$"))"#.to_string(),
            r#"message.matches("^(m+)+$")"#.to_string(),
            r#"message.matches("(?:m{100}){100}")"#.to_string(),
            r#"message.matches("\\w{1000}\\w{1000}")"#.to_string(),
            r#"message.matches("(?:\\pL{50}|\\pN{50}){40}")"#.to_string(),
            r#"message.matches("\\w{5}")"#.to_string(),
            r#"message.matches("\\w{40}")"#.to_string(),
            r#"message.matches("\\w{150}")"#.to_string(),
        ];
        let mut long_body = String::from("a >= 0");
        while long_body.len() < 3900 {
            long_body.push_str(" && a + 1 > 0");
        }
        candidates.push(format!("xs.all(a, {long_body})"));
        for source in candidates {
            let estimate = match Filter::compile(&source) {
                Ok(filter) => format!("{:.0}", filter.estimated_cost()),
                Err(error) => format!("refused: {}", error.message),
            };
            let program = ENV.compile(&source).unwrap();
            let context = EventContext::new(&event);
            let cel = context.cel();
            let started = std::time::Instant::now();
            let rounds = 5;
            for _ in 0..rounds {
                let _ = program.execute(cel);
            }
            let per_evaluation = started.elapsed() / rounds;
            println!(
                "{:>10.3} ms  {estimate:>40}  {}",
                per_evaluation.as_secs_f64() * 1000.0,
                &source[..source.len().min(70)]
            );
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
