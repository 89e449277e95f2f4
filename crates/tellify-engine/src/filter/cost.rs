//! The static cost bound of a filter, computed once when it is compiled.
//!
//! The cel interpreter cannot be interrupted, so a filter that is slow on one event stalls
//! every subscription behind it. Instead of measuring, this module proves an upper bound:
//! it walks the parsed expression and estimates, in *cost units* (about one interpreter
//! step each), the most an evaluation can do on any event the ingest limits let in. A
//! filter whose estimate exceeds [`MAX_COST`] is refused, so are comprehensions nested
//! deeper than [`MAX_COMPREHENSION_NESTING`], literals larger than [`MAX_LITERAL_ITEMS`],
//! expressions deeper than [`MAX_EXPRESSION_DEPTH`] and `matches` with a pattern that is
//! not a literal or compiles to more than [`MAX_PATTERN_KIB`].
//!
//! The estimate rests on the shape of what an event can carry: no list longer than
//! [`ASSUMED_LIST_ITEMS`] (the ingest limit `limits.max_list_items` may not be set higher)
//! and no string longer than [`ASSUMED_STRING_BYTES`]. Each comprehension multiplies the
//! cost of its body by the most elements its range can have; comparisons and string
//! functions cost in proportion to the sizes they touch. The bound is deliberately
//! coarse: it is there to make a slow filter impossible, not to predict the fast ones.

use cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue};

/// Most comprehensions (`all`, `exists`, `exists_one`, `map`, `filter`) nested inside one
/// another's bodies. Each level multiplies the work by the length of a list.
pub const MAX_COMPREHENSION_NESTING: usize = 2;
/// Most elements in one list or map literal.
pub const MAX_LITERAL_ITEMS: usize = 100;
/// Deepest expression tree; the interpreter evaluates it recursively.
pub const MAX_EXPRESSION_DEPTH: usize = 64;
/// The longest list (and largest object) the estimate assumes an event can carry.
pub const ASSUMED_LIST_ITEMS: usize = tellify_model::MAX_LIST_ITEMS_CEILING;
/// The most values (object members and list items, nested ones included) the estimate
/// assumes an event can carry: the default `limits.max_fields` plus the ceiling of
/// `limits.max_list_items`.
pub const ASSUMED_EVENT_VALUES: usize = 100 + ASSUMED_LIST_ITEMS;
/// The longest string the estimate assumes an event can carry, in bytes.
pub const ASSUMED_STRING_BYTES: usize = 8192;
/// The budget of the estimate, in cost units. Calibrated so that the most expensive
/// filter it admits evaluates in a few milliseconds (see `docs/security-cel.md`).
pub const MAX_COST: f64 = 100_000.0;
/// Bytes a string function or comparison handles per cost unit.
const BYTES_PER_UNIT: f64 = 4096.0;
/// What copying or comparing one value of a list or map costs.
const UNITS_PER_VALUE: f64 = 0.1;
/// The largest compiled form of a `matches` pattern, in KiB. cel compiles the pattern
/// again on every evaluation, in time proportional to this size: a short pattern can
/// compile to megabytes (`\w{1000}`), so the size is measured, not guessed.
pub const MAX_PATTERN_KIB: usize = 256;
/// What compiling a regular expression costs per KiB of its compiled form.
const REGEX_UNITS_PER_KIB: f64 = 35.0;
/// The fixed part of compiling a regular expression.
const REGEX_BASE_UNITS: f64 = 100.0;

/// Why a filter is refused, and the node it is about.
#[derive(Debug)]
pub(super) struct Refusal {
    pub expr_id: u64,
    pub message: String,
}

/// The estimated cost of evaluating `root` once, or why it is refused.
pub(super) fn estimate(root: &IdedExpr) -> Result<f64, Refusal> {
    let mut walker = Walker { scope: Vec::new() };
    let (cost, _) = walker.walk(root, 0, 0)?;
    if cost > MAX_COST {
        return Err(Refusal {
            expr_id: root.id,
            message: format!(
                "too costly: estimated cost {} exceeds the budget of {}",
                scientific(cost),
                scientific(MAX_COST)
            ),
        });
    }
    Ok(cost)
}

/// `1.2e9`: the cost figures span many orders of magnitude.
pub(super) fn scientific(value: f64) -> String {
    let text = format!("{value:.1e}");
    text.replace(".0e", "e")
}

/// An upper bound on the size of a value: how many items it holds (0 for a scalar), how
/// many items each of them holds, how many values it holds in all (nested ones
/// included), and how long its strings are.
#[derive(Clone, Copy, Debug)]
struct Shape {
    items: f64,
    element_items: f64,
    values: f64,
    bytes: f64,
}

impl Shape {
    /// Anything read from an event.
    const EVENT: Shape = Shape {
        items: ASSUMED_LIST_ITEMS as f64,
        element_items: ASSUMED_LIST_ITEMS as f64,
        values: ASSUMED_EVENT_VALUES as f64,
        bytes: ASSUMED_STRING_BYTES as f64,
    };
    const SCALAR: Shape = Shape {
        items: 0.0,
        element_items: 0.0,
        values: 0.0,
        bytes: 0.0,
    };

    fn text(bytes: usize) -> Shape {
        Shape {
            bytes: bytes as f64,
            ..Shape::SCALAR
        }
    }

    /// One element (or one map value) of this value.
    fn element(self) -> Shape {
        Shape {
            items: self.element_items,
            element_items: self.element_items.max(ASSUMED_LIST_ITEMS as f64),
            values: self.values,
            bytes: self.bytes,
        }
    }

    fn union(self, other: Shape) -> Shape {
        Shape {
            items: self.items.max(other.items),
            element_items: self.element_items.max(other.element_items),
            values: self.values.max(other.values),
            bytes: self.bytes.max(other.bytes),
        }
    }

    /// Roughly how much work touching all of it once takes (a deep comparison, a copy).
    fn weight(self) -> f64 {
        UNITS_PER_VALUE * self.values + self.bytes / BYTES_PER_UNIT
    }
}

struct Walker {
    /// Comprehension variables in scope, innermost last.
    scope: Vec<(String, Shape)>,
}

impl Walker {
    /// The cost of evaluating `expr` once and the shape of its value. `depth` is the
    /// depth in the tree, `nesting` the number of comprehension bodies around it.
    fn walk(
        &mut self,
        expr: &IdedExpr,
        depth: usize,
        nesting: usize,
    ) -> Result<(f64, Shape), Refusal> {
        if depth > MAX_EXPRESSION_DEPTH {
            return Err(refuse(
                expr,
                format!("expression nests deeper than {MAX_EXPRESSION_DEPTH} levels"),
            ));
        }
        let depth = depth + 1;
        match &expr.expr {
            Expr::Literal(literal) => Ok((1.0, literal_shape(literal))),
            Expr::Ident(name) => Ok((1.0, self.lookup(name))),
            Expr::Select(select) => {
                let (cost, operand) = self.walk(&select.operand, depth, nesting)?;
                let shape = if select.test {
                    Shape::SCALAR
                } else {
                    operand.element().union(Shape::EVENT)
                };
                Ok((cost + 1.0, shape))
            }
            Expr::List(list) => {
                check_literal_size(expr, list.elements.len())?;
                let mut cost = 1.0;
                let mut element = Shape::SCALAR;
                for item in &list.elements {
                    let (item_cost, shape) = self.walk(item, depth, nesting)?;
                    cost += item_cost;
                    element = element.union(shape);
                }
                let count = list.elements.len() as f64;
                Ok((
                    cost,
                    Shape {
                        items: count,
                        element_items: element.items,
                        values: count * (1.0 + element.values),
                        bytes: element.bytes,
                    },
                ))
            }
            Expr::Map(map) => self.entries(expr, &map.entries, depth, nesting),
            Expr::Struct(structure) => self.entries(expr, &structure.entries, depth, nesting),
            Expr::Call(call) => self.call(expr, call, depth, nesting),
            Expr::Comprehension(comprehension) => {
                self.comprehension(expr, comprehension, depth, nesting)
            }
            // What the parser could not make sense of never evaluates to anything.
            _ => Ok((1.0, Shape::SCALAR)),
        }
    }

    fn lookup(&self, name: &str) -> Shape {
        self.scope
            .iter()
            .rev()
            .find(|(bound, _)| bound == name)
            .map(|(_, shape)| *shape)
            .unwrap_or(Shape::EVENT)
    }

    fn entries(
        &mut self,
        expr: &IdedExpr,
        entries: &[cel::common::ast::IdedEntryExpr],
        depth: usize,
        nesting: usize,
    ) -> Result<(f64, Shape), Refusal> {
        check_literal_size(expr, entries.len())?;
        let mut cost = 1.0;
        let mut value = Shape::SCALAR;
        for entry in entries {
            match &entry.expr {
                EntryExpr::MapEntry(pair) => {
                    let (key_cost, _) = self.walk(&pair.key, depth, nesting)?;
                    let (value_cost, shape) = self.walk(&pair.value, depth, nesting)?;
                    cost += key_cost + value_cost;
                    value = value.union(shape);
                }
                EntryExpr::StructField(field) => {
                    let (value_cost, shape) = self.walk(&field.value, depth, nesting)?;
                    cost += value_cost;
                    value = value.union(shape);
                }
            }
        }
        let count = entries.len() as f64;
        Ok((
            cost,
            Shape {
                items: count,
                element_items: value.items,
                values: count * (1.0 + value.values),
                bytes: value.bytes,
            },
        ))
    }

    fn comprehension(
        &mut self,
        expr: &IdedExpr,
        comprehension: &ComprehensionExpr,
        depth: usize,
        nesting: usize,
    ) -> Result<(f64, Shape), Refusal> {
        if nesting + 1 > MAX_COMPREHENSION_NESTING {
            return Err(refuse(
                expr,
                format!(
                    "too costly: nested comprehensions: at most {MAX_COMPREHENSION_NESTING} \
                     levels of all, exists, exists_one, map and filter"
                ),
            ));
        }
        let (range_cost, range) = self.walk(&comprehension.iter_range, depth, nesting)?;
        let (init_cost, _) = self.walk(&comprehension.accu_init, depth, nesting)?;
        let scope_before = self.scope.len();
        let element = range.element();
        self.scope.push((comprehension.iter_var.clone(), element));
        if let Some(second) = &comprehension.iter_var2 {
            self.scope.push((second.clone(), element));
        }
        // The standard macros only ever append one item to the accumulator, which the
        // interpreter does in place: inside the loop it costs as little as a scalar.
        self.scope
            .push((comprehension.accu_var.clone(), Shape::SCALAR));
        let body = self
            .walk(&comprehension.loop_cond, depth, nesting + 1)
            .and_then(|(cond_cost, _)| {
                self.walk(&comprehension.loop_step, depth, nesting + 1)
                    .map(|(step_cost, step)| (cond_cost + step_cost, step))
            });
        self.scope.truncate(scope_before);
        let (body_cost, step) = body?;
        // After the loop, the accumulator holds at most one item per element.
        self.scope.push((
            comprehension.accu_var.clone(),
            Shape {
                items: range.items,
                element_items: step.element_items,
                values: range.items * step.values.max(1.0),
                bytes: step.bytes,
            },
        ));
        let result = self.walk(&comprehension.result, depth, nesting);
        self.scope.truncate(scope_before);
        let (result_cost, shape) = result?;
        let cost = range_cost + init_cost + range.items * body_cost + result_cost;
        Ok((cost, shape))
    }

    fn call(
        &mut self,
        expr: &IdedExpr,
        call: &CallExpr,
        depth: usize,
        nesting: usize,
    ) -> Result<(f64, Shape), Refusal> {
        let mut cost = 1.0;
        let mut shapes = Vec::with_capacity(call.args.len() + 1);
        if let Some(target) = &call.target {
            let (target_cost, shape) = self.walk(target, depth, nesting)?;
            cost += target_cost;
            shapes.push(shape);
        }
        for argument in &call.args {
            let (argument_cost, shape) = self.walk(argument, depth, nesting)?;
            cost += argument_cost;
            shapes.push(shape);
        }
        let first = shapes.first().copied().unwrap_or(Shape::SCALAR);
        let second = shapes.get(1).copied().unwrap_or(Shape::SCALAR);
        let (extra, shape) = match call.func_name.as_str() {
            "_&&_" | "_||_" | "!_" | "-_" | "_-_" | "_*_" | "_/_" | "_%_" | "size" => {
                (0.0, Shape::SCALAR)
            }
            "_?_:_" => {
                let then = shapes.get(1).copied().unwrap_or(Shape::SCALAR);
                let otherwise = shapes.get(2).copied().unwrap_or(Shape::SCALAR);
                (0.0, then.union(otherwise))
            }
            "_==_" | "_!=_" => (first.weight().min(second.weight()), Shape::SCALAR),
            "_<_" | "_<=_" | "_>_" | "_>=_" => (
                first.bytes.min(second.bytes) / BYTES_PER_UNIT,
                Shape::SCALAR,
            ),
            // A scan of the list: each item is compared once, and together the items
            // weigh no more than the list.
            "@in" => (
                second.items * (1.0 + first.bytes.min(second.bytes) / BYTES_PER_UNIT)
                    + second.weight(),
                Shape::SCALAR,
            ),
            "_+_" => {
                let joined = Shape {
                    items: first.items + second.items,
                    element_items: first.element_items.max(second.element_items),
                    values: first.values + second.values,
                    bytes: first.bytes + second.bytes,
                };
                (joined.weight(), joined)
            }
            "_[_]" => (1.0, first.element().union(Shape::EVENT)),
            "contains" | "startsWith" | "endsWith" => {
                ((first.bytes + second.bytes) / BYTES_PER_UNIT, Shape::SCALAR)
            }
            "matches" => {
                let pattern = call.args.last().and_then(|argument| match &argument.expr {
                    Expr::Literal(LiteralValue::String(text)) => Some(text.inner()),
                    _ => None,
                });
                let Some(pattern) = pattern else {
                    return Err(refuse(
                        expr,
                        "`matches` needs a literal pattern (a string in quotes)".to_string(),
                    ));
                };
                let compile_cost =
                    pattern_cost(pattern).map_err(|message| refuse(expr, message))?;
                let subject = if call.target.is_some() || call.args.len() > 1 {
                    first.bytes
                } else {
                    0.0
                };
                (compile_cost + subject / BYTES_PER_UNIT, Shape::SCALAR)
            }
            "string" | "bytes" | "int" | "uint" | "double" | "bool" | "dyn" | "type"
            | "timestamp" | "duration" => (
                first.bytes / BYTES_PER_UNIT,
                Shape::text(ASSUMED_STRING_BYTES).union(Shape::text(first.bytes as usize)),
            ),
            _ => {
                // Anything else (`max`, `min`, the time accessors, functions a later
                // version adds) is charged for touching every argument once.
                let touched: f64 = shapes.iter().map(|shape| shape.weight()).sum();
                let widest = shapes
                    .iter()
                    .fold(Shape::EVENT, |widest, shape| widest.union(*shape));
                (touched, widest)
            }
        };
        Ok((cost + extra, shape))
    }
}

/// What compiling `pattern` costs, from the smallest of a few size limits it compiles
/// within; each trial is itself bounded by its limit.
fn pattern_cost(pattern: &str) -> Result<f64, String> {
    for kib in [4, 16, 64, MAX_PATTERN_KIB] {
        match regex::RegexBuilder::new(pattern)
            .size_limit(kib * 1024)
            .build()
        {
            Ok(_) => return Ok(REGEX_BASE_UNITS + REGEX_UNITS_PER_KIB * kib as f64),
            Err(regex::Error::CompiledTooBig(_)) => continue,
            Err(error) => {
                let reason = error.to_string();
                let last = reason.lines().last().unwrap_or_default().trim().to_string();
                return Err(format!(
                    "`matches` pattern is not a regular expression: {last}"
                ));
            }
        }
    }
    Err(format!(
        "too costly: `matches` pattern compiles to more than {MAX_PATTERN_KIB} KiB"
    ))
}

fn literal_shape(literal: &LiteralValue) -> Shape {
    match literal {
        LiteralValue::String(text) => Shape::text(text.inner().len()),
        LiteralValue::Bytes(bytes) => Shape::text(bytes.inner().len()),
        _ => Shape::SCALAR,
    }
}

fn check_literal_size(expr: &IdedExpr, items: usize) -> Result<(), Refusal> {
    if items > MAX_LITERAL_ITEMS {
        return Err(refuse(
            expr,
            format!("a literal has {items} items, more than the limit of {MAX_LITERAL_ITEMS}"),
        ));
    }
    Ok(())
}

fn refuse(expr: &IdedExpr, message: String) -> Refusal {
    Refusal {
        expr_id: expr.id,
        message,
    }
}
