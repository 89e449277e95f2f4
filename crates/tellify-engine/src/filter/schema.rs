//! A filter checked against the registered schema of the event type it is bound to.
//!
//! A filter is bound to a type when its top-level conjunction says `event.type == "disk"`:
//! it can only ever see events of that type, which ingest has checked against the type's
//! JSON Schema. Two mistakes can then be proven from the parsed expression alone, before
//! any event arrives: a field compared with a literal of a type the schema rules out
//! (`usage > "90"` when `usage` is a number: never true), and a field the schema does not
//! allow at all (`additionalProperties: false`). Anything less than certain passes: a
//! field without a `type`, a schema that leaves other fields open, a name bound by a
//! comprehension, and `severity`, `message`, `host` and `component`, which fall back to
//! the envelope when an event has no such field.

use std::collections::{BTreeSet, HashMap, HashSet};

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use serde_json::Value;

use super::Filter;

/// Names that are the envelope's when an event has no field of that name.
const SHORTCUTS: [&str; 4] = ["severity", "message", "host", "component"];

/// What an event type's schema says for certain about its fields.
#[derive(Clone, Debug, Default)]
pub struct FieldTypes {
    type_name: String,
    /// The JSON types a field may have, by name; absent or empty: not known.
    fields: HashMap<String, BTreeSet<JsonType>>,
    /// Every field the schema names in `properties`.
    declared: BTreeSet<String>,
    /// No other field is allowed (`additionalProperties: false`, no `patternProperties`).
    closed: bool,
}

/// A JSON Schema type, as far as a CEL literal can be compared with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum JsonType {
    Number,
    String,
    Boolean,
    Array,
    Object,
    Null,
}

impl JsonType {
    fn parse(name: &str) -> Option<JsonType> {
        Some(match name {
            "number" | "integer" => JsonType::Number,
            "string" => JsonType::String,
            "boolean" => JsonType::Boolean,
            "array" => JsonType::Array,
            "object" => JsonType::Object,
            "null" => JsonType::Null,
            _ => return None,
        })
    }

    fn described(self) -> &'static str {
        match self {
            JsonType::Number => "a number",
            JsonType::String => "a string",
            JsonType::Boolean => "a boolean",
            JsonType::Array => "a list",
            JsonType::Object => "an object",
            JsonType::Null => "null",
        }
    }
}

impl FieldTypes {
    /// Reads the top level of `schema` (the JSON Schema of the type's `fields`): each
    /// property's `type`, and whether other properties are allowed. Whatever it does not
    /// understand counts as unknown, never as a constraint.
    pub fn from_schema(type_name: &str, schema: &Value) -> FieldTypes {
        let mut types = FieldTypes {
            type_name: type_name.to_string(),
            ..FieldTypes::default()
        };
        let Some(schema) = schema.as_object() else {
            return types;
        };
        if let Some(Value::Object(properties)) = schema.get("properties") {
            for (name, property) in properties {
                types.declared.insert(name.clone());
                let allowed: BTreeSet<JsonType> = match property.get("type") {
                    Some(Value::String(name)) => JsonType::parse(name).into_iter().collect(),
                    Some(Value::Array(names)) => names
                        .iter()
                        .filter_map(Value::as_str)
                        .filter_map(JsonType::parse)
                        .collect(),
                    _ => BTreeSet::new(),
                };
                if !allowed.is_empty() {
                    types.fields.insert(name.clone(), allowed);
                }
            }
        }
        types.closed = schema.get("additionalProperties") == Some(&Value::Bool(false))
            && !schema.contains_key("patternProperties");
        types
    }
}

impl Filter {
    /// The event type the filter is bound to: `event.type == "name"` in its top-level
    /// conjunction.
    pub fn event_type(&self) -> Option<&str> {
        self.equalities
            .iter()
            .find_map(|(name, value)| match (name.as_str(), value) {
                ("event.type", crate::IndexValue::Str(type_name)) => Some(type_name.as_str()),
                _ => None,
            })
    }

    /// Every way the filter certainly cannot fit `types`, one sentence each, in the order
    /// they appear; empty when it may.
    pub fn schema_conflicts(&self, types: &FieldTypes) -> Vec<String> {
        let mut walk = Walk {
            types,
            bound: Vec::new(),
            conflicts: Vec::new(),
            seen: HashSet::new(),
        };
        walk.expr(self.program.expression());
        walk.conflicts
    }
}

struct Walk<'a> {
    types: &'a FieldTypes,
    /// Names bound by the comprehensions around the current node.
    bound: Vec<String>,
    conflicts: Vec<String>,
    seen: HashSet<String>,
}

impl Walk<'_> {
    fn expr(&mut self, expr: &IdedExpr) {
        match &expr.expr {
            Expr::Ident(name) => self.field_named(name),
            Expr::Select(select) => self.expr(&select.operand),
            Expr::List(list) => {
                for element in &list.elements {
                    self.expr(element);
                }
            }
            Expr::Map(map) => self.entries(&map.entries),
            Expr::Struct(structure) => self.entries(&structure.entries),
            Expr::Call(call) => {
                self.comparison(&call.func_name, &call.args);
                if let Some(target) = &call.target {
                    self.expr(target);
                }
                for argument in &call.args {
                    self.expr(argument);
                }
            }
            Expr::Comprehension(comprehension) => {
                self.expr(&comprehension.iter_range);
                self.expr(&comprehension.accu_init);
                let before = self.bound.len();
                self.bound.push(comprehension.iter_var.clone());
                if let Some(second) = &comprehension.iter_var2 {
                    self.bound.push(second.clone());
                }
                self.bound.push(comprehension.accu_var.clone());
                self.expr(&comprehension.loop_cond);
                self.expr(&comprehension.loop_step);
                self.expr(&comprehension.result);
                self.bound.truncate(before);
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn entries(&mut self, entries: &[cel::common::ast::IdedEntryExpr]) {
        for entry in entries {
            match &entry.expr {
                EntryExpr::MapEntry(pair) => {
                    self.expr(&pair.key);
                    self.expr(&pair.value);
                }
                EntryExpr::StructField(field) => self.expr(&field.value),
            }
        }
    }

    /// A name that is an event field (not the envelope, a shortcut or a bound name).
    fn field<'n>(&self, name: &'n str) -> Option<&'n str> {
        let is_field = name != "event"
            && !SHORTCUTS.contains(&name)
            && !self.bound.iter().any(|bound| bound == name);
        is_field.then_some(name)
    }

    fn field_named(&mut self, name: &str) {
        let Some(name) = self.field(name) else {
            return;
        };
        if !self.types.closed || self.types.declared.contains(name) {
            return;
        }
        let allowed: Vec<&str> = self.types.declared.iter().map(String::as_str).collect();
        let allowed = if allowed.is_empty() {
            "it allows no fields".to_string()
        } else {
            format!("its fields are {}", allowed.join(", "))
        };
        self.push(format!(
            "{name} is not a field of event type {} ({allowed})",
            self.types.type_name
        ));
    }

    /// `field <op> literal` (either way round) whose literal the field's type rules out.
    fn comparison(&mut self, function: &str, args: &[IdedExpr]) {
        let comparing = matches!(function, "_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_");
        if !comparing || args.len() != 2 {
            return;
        }
        let (name, literal) = match (&args[0].expr, &args[1].expr) {
            (Expr::Ident(name), Expr::Literal(literal))
            | (Expr::Literal(literal), Expr::Ident(name)) => (name, literal),
            _ => return,
        };
        let Some(name) = self.field(name) else {
            return;
        };
        let Some(allowed) = self.types.fields.get(name) else {
            return;
        };
        let Some((literal_type, shown)) = literal_type(literal) else {
            return;
        };
        if allowed.contains(&literal_type) {
            return;
        }
        let allowed: Vec<&str> = allowed.iter().map(|kind| kind.described()).collect();
        self.push(format!(
            "{name} is {} in event type {}, but is compared with {shown}",
            allowed.join(" or "),
            self.types.type_name
        ));
    }

    fn push(&mut self, conflict: String) {
        if self.seen.insert(conflict.clone()) {
            self.conflicts.push(conflict);
        }
    }
}

/// The JSON type a literal could be equal to, and how to show it; `None` for `null` and
/// bytes, which are left alone.
fn literal_type(literal: &LiteralValue) -> Option<(JsonType, String)> {
    Some(match literal {
        LiteralValue::String(text) => (
            JsonType::String,
            format!("the string {}", Value::from(text.inner())),
        ),
        LiteralValue::Int(number) => (JsonType::Number, format!("the number {}", number.inner())),
        LiteralValue::UInt(number) => (JsonType::Number, format!("the number {}", number.inner())),
        LiteralValue::Double(number) => {
            (JsonType::Number, format!("the number {}", number.inner()))
        }
        LiteralValue::Boolean(flag) => (JsonType::Boolean, format!("the boolean {}", flag.inner())),
        LiteralValue::Null | LiteralValue::Bytes(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn disk() -> FieldTypes {
        FieldTypes::from_schema(
            "disk",
            &json!({
                "type": "object",
                "properties": {
                    "usage": {"type": "number"},
                    "mount": {"type": "string"},
                    "ok": {"type": "boolean"},
                    "tags": {"type": "array"},
                    "note": {"type": ["string", "null"]},
                    "anything": {}
                }
            }),
        )
    }

    fn closed() -> FieldTypes {
        FieldTypes::from_schema(
            "disk",
            &json!({
                "type": "object", "additionalProperties": false,
                "properties": {"usage": {"type": "integer"}, "mount": {"type": "string"}}
            }),
        )
    }

    fn conflicts(source: &str, types: &FieldTypes) -> Vec<String> {
        Filter::compile(source).unwrap().schema_conflicts(types)
    }

    #[test]
    fn the_bound_type_comes_from_the_top_level_conjunction() {
        let bound = Filter::compile(r#"event.type == "disk" && usage > 90"#).unwrap();
        assert_eq!(bound.event_type(), Some("disk"));
        let either = Filter::compile(r#"event.type == "disk" || usage > 90"#).unwrap();
        assert_eq!(either.event_type(), None);
        assert_eq!(Filter::compile("usage > 90").unwrap().event_type(), None);
    }

    #[test]
    fn a_literal_of_a_type_the_schema_rules_out_is_a_conflict() {
        assert_eq!(
            conflicts(r#"event.type == "disk" && usage > "90""#, &disk()),
            vec![r#"usage is a number in event type disk, but is compared with the string "90""#]
        );
        assert_eq!(
            conflicts(r#"mount == 5 || ok == "yes" || 90 < mount"#, &disk()),
            vec![
                "mount is a string in event type disk, but is compared with the number 5",
                r#"ok is a boolean in event type disk, but is compared with the string "yes""#,
                "mount is a string in event type disk, but is compared with the number 90",
            ]
        );
        assert_eq!(
            conflicts("note == 3", &disk()),
            vec!["note is a string or null in event type disk, but is compared with the number 3"]
        );
        assert_eq!(
            conflicts("tags == true", &disk()),
            vec!["tags is a list in event type disk, but is compared with the boolean true"]
        );
    }

    #[test]
    fn only_certain_conflicts_are_reported() {
        for source in [
            r#"usage > 90 && usage < 95.5 && mount == "/home" && ok == true"#,
            r#"note == "x" && note == null && anything == "x" && anything == 3"#,
            r#"unknown == "x" && severity == "critical" && host == "cad""#,
            r#"[1, 2].exists(mount, mount > 1) && tags.exists(usage, usage == "x")"#,
            r#"string(usage) == "90" && size(mount) > 2 && usage + 1 > 2"#,
        ] {
            assert_eq!(conflicts(source, &disk()), Vec::<String>::new(), "{source}");
        }
    }

    #[test]
    fn a_closed_schema_refuses_a_field_it_does_not_allow() {
        assert_eq!(
            conflicts(r#"cpu > 90 && usage > 90 && host == "cad""#, &closed()),
            vec!["cpu is not a field of event type disk (its fields are mount, usage)"]
        );
        assert_eq!(
            conflicts("xs.exists(x, x > 1)", &closed()),
            vec!["xs is not a field of event type disk (its fields are mount, usage)"],
            "the bound `x` is not a field, `xs` is"
        );
        assert!(conflicts("cpu > 90", &disk()).is_empty(), "open schema");
        let patterned = FieldTypes::from_schema(
            "disk",
            &json!({"additionalProperties": false, "patternProperties": {"^x": {}}}),
        );
        assert!(conflicts("xs > 1", &patterned).is_empty());
    }
}
