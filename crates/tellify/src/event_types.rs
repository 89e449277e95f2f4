//! The event-type registry in memory: every registered type with its JSON Schema compiled
//! once, so ingest checks an event without a database read or a schema compile.
//!
//! Loaded at start and refreshed (awaited) by the service layer on every change to a type
//! (`services::caches::event_type_changed`), so the copy here is never behind what the
//! API answered. Dedup windows are not kept here: they live in the store and are consulted
//! on its writer thread, which survives restarts.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{JsonType, ValidationError};
use serde_json::Value;
use tellify_model::{EventInput, FieldProblem};
use tellify_store::{EventType, Store, StoreResult};

use crate::ingest::EventCheck;

/// A registered type, ready to check events.
pub struct CompiledType {
    pub record: EventType,
    validator: Option<jsonschema::Validator>,
}

/// Every registered type by name.
#[derive(Default)]
pub struct EventTypes {
    types: RwLock<HashMap<String, Arc<CompiledType>>>,
}

impl EventTypes {
    /// Reads and compiles every type in the store.
    pub async fn load(store: &dyn Store) -> StoreResult<EventTypes> {
        let registry = EventTypes::default();
        let mut types = HashMap::new();
        for record in store.list_event_types().await? {
            types.insert(record.name.clone(), Arc::new(compile(record)));
        }
        if let Ok(mut slot) = registry.types.write() {
            *slot = types;
        }
        Ok(registry)
    }

    /// Rereads every type (another node's changes may have been missed).
    pub async fn reload(&self, store: &dyn Store) -> StoreResult<()> {
        let mut types = HashMap::new();
        for record in store.list_event_types().await? {
            types.insert(record.name.clone(), Arc::new(compile(record)));
        }
        if let Ok(mut slot) = self.types.write() {
            *slot = types;
        }
        Ok(())
    }

    /// Rereads one type after a change (`None` in the store removes it here too).
    pub async fn refresh(&self, store: &dyn Store, name: &str) -> StoreResult<()> {
        let record = store.event_type(name).await?;
        if let Ok(mut types) = self.types.write() {
            match record {
                Some(record) => {
                    types.insert(name.to_string(), Arc::new(compile(record)));
                }
                None => {
                    types.remove(name);
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<Arc<CompiledType>> {
        self.types.read().ok()?.get(name).cloned()
    }

    /// The ingest check for this registry; with `strict`, every event must name a
    /// registered type.
    pub fn check(&self, strict: bool) -> TypeCheck<'_> {
        TypeCheck {
            types: self,
            strict,
        }
    }
}

/// Compiles a type's schema. A stored schema always compiled when it was registered; if
/// it no longer does (a library upgrade), the type keeps working without field checks
/// rather than refusing every event of it.
fn compile(record: EventType) -> CompiledType {
    let validator = match record.schema.as_ref().map(compile_schema) {
        Some(Ok(validator)) => Some(validator),
        Some(Err(error)) => {
            tracing::error!(event_type = %record.name, %error, "stored schema does not compile; fields are not checked");
            None
        }
        None => None,
    };
    CompiledType { record, validator }
}

/// Compiles a JSON Schema for an event's `fields`, or says why it is not one.
pub fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    if !schema.is_object() && !schema.is_boolean() {
        return Err("must be a JSON Schema object".to_string());
    }
    jsonschema::validator_for(schema).map_err(|error| error.to_string())
}

impl CompiledType {
    /// Every way `fields` fails the type's schema, each with its path (`fields.usage`) and
    /// the rule that failed in words (`must be a number, got the string "95%"`).
    pub fn field_problems(&self, fields: &Value) -> Vec<FieldProblem> {
        let Some(validator) = &self.validator else {
            return Vec::new();
        };
        let name = &self.record.name;
        let mut problems = Vec::new();
        for error in validator.iter_errors(fields) {
            let path = field_path(&error);
            match error.kind() {
                ValidationErrorKind::Required { property } => {
                    problems.push(FieldProblem {
                        field: format!("{path}.{}", property_name(property)),
                        message: format!("is required by event type `{name}`"),
                    });
                }
                ValidationErrorKind::AdditionalProperties { unexpected }
                | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                    for property in unexpected {
                        problems.push(FieldProblem {
                            field: format!("{path}.{property}"),
                            message: format!("is not a field of event type `{name}`"),
                        });
                    }
                }
                _ => problems.push(FieldProblem {
                    field: path,
                    message: schema_rule_in_words(&error),
                }),
            }
        }
        problems
    }
}

/// `fields` followed by the failing value's place, dot-separated (`fields.mount.ro`).
fn field_path(error: &ValidationError<'_>) -> String {
    let mut path = String::from("fields");
    let pointer = error.instance_path().to_string();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        path.push('.');
        path.push_str(&segment.replace("~1", "/").replace("~0", "~"));
    }
    path
}

fn property_name(property: &Value) -> String {
    property
        .as_str()
        .map_or_else(|| property.to_string(), str::to_string)
}

/// The rule `error` says was broken, in words a producer understands, with what was sent
/// where that helps: `must be one of "low", "high", got the string "medium"`.
fn schema_rule_in_words(error: &ValidationError<'_>) -> String {
    let got = describe_value(error.instance());
    match error.kind() {
        ValidationErrorKind::Type { kind } => {
            let expected: Vec<JsonType> = match kind {
                TypeKind::Single(single) => vec![*single],
                TypeKind::Multiple(set) => set.iter().collect(),
            };
            format!("must be {}, got {got}", type_names(&expected))
        }
        ValidationErrorKind::Required { property } => {
            format!("`{}` is required", property_name(property))
        }
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            format!("must not have {}", quoted_list(unexpected))
        }
        ValidationErrorKind::Enum { options } => match options.as_array() {
            Some(options) => format!("must be one of {}, got {got}", json_list(options)),
            None => format!("must be {options}, got {got}"),
        },
        ValidationErrorKind::Constant { expected_value } => {
            format!("must be {expected_value}, got {got}")
        }
        ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}, got {got}"),
        ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}, got {got}"),
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            format!("must be less than {limit}, got {got}")
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            format!("must be more than {limit}, got {got}")
        }
        ValidationErrorKind::MultipleOf { multiple_of } => {
            format!("must be a multiple of {multiple_of}, got {got}")
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!("must be at most {limit} characters long, got {got}")
        }
        ValidationErrorKind::MinLength { limit } => {
            format!("must be at least {limit} characters long, got {got}")
        }
        ValidationErrorKind::Pattern { pattern } => {
            format!("must match the pattern `{pattern}`, got {got}")
        }
        ValidationErrorKind::Format { format } => {
            format!("must be a valid {format}, got {got}")
        }
        ValidationErrorKind::MaxItems { limit } => {
            format!("must hold at most {limit} items, got {got}")
        }
        ValidationErrorKind::MinItems { limit } => {
            format!("must hold at least {limit} items, got {got}")
        }
        ValidationErrorKind::AdditionalItems { limit } => {
            format!("must hold at most {limit} items, got {got}")
        }
        ValidationErrorKind::UnevaluatedItems { .. } => {
            format!("holds items the schema does not allow, got {got}")
        }
        ValidationErrorKind::UniqueItems => format!("must not hold the same item twice, got {got}"),
        ValidationErrorKind::Contains => {
            format!("must hold at least one item of the allowed shape, got {got}")
        }
        ValidationErrorKind::MaxProperties { limit } => {
            format!("must hold at most {limit} fields, got {got}")
        }
        ValidationErrorKind::MinProperties { limit } => {
            format!("must hold at least {limit} fields, got {got}")
        }
        ValidationErrorKind::FalseSchema => "is not allowed".to_string(),
        ValidationErrorKind::Not { schema } => {
            format!("must not match {schema}, got {got}")
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            alternatives_in_words(error, context, &got)
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => {
            format!("must match exactly one of the allowed shapes, but matches several, got {got}")
        }
        ValidationErrorKind::PropertyNames { error: name_error } => format!(
            "has a field name that is not allowed: {}",
            schema_rule_in_words(name_error)
        ),
        ValidationErrorKind::ContentEncoding { content_encoding } => {
            format!("must be {content_encoding}-encoded, got {got}")
        }
        ValidationErrorKind::ContentMediaType { content_media_type } => {
            format!("must hold {content_media_type} content, got {got}")
        }
        ValidationErrorKind::Custom { message, .. } => message.clone(),
        _ => error.to_string(),
    }
}

/// anyOf / oneOf with no match: the shapes that were allowed, each with why it did not
/// fit. When every shape only wanted another type, that is one phrase: `must be a
/// number or a string, got the boolean true`.
fn alternatives_in_words(
    parent: &ValidationError<'_>,
    context: &[Vec<ValidationError<'static>>],
    got: &str,
) -> String {
    let mut only_types: Vec<JsonType> = Vec::new();
    let all_type_errors = context.iter().all(|errors| {
        errors.len() == 1
            && errors[0].instance_path() == parent.instance_path()
            && match errors[0].kind() {
                ValidationErrorKind::Type { kind } => {
                    match kind {
                        TypeKind::Single(single) => only_types.push(*single),
                        TypeKind::Multiple(set) => only_types.extend(set.iter()),
                    }
                    true
                }
                _ => false,
            }
    });
    if all_type_errors && !only_types.is_empty() {
        only_types.sort();
        only_types.dedup();
        return format!("must be {}, got {got}", type_names(&only_types));
    }
    let parent_path = field_path(parent);
    let shapes: Vec<String> = context
        .iter()
        .map(|errors| {
            let reasons: Vec<String> = errors
                .iter()
                .map(|error| {
                    let path = field_path(error);
                    let rule = match error.kind() {
                        ValidationErrorKind::Required { property } => {
                            format!("`{}` is required", property_name(property))
                        }
                        _ => schema_rule_in_words(error),
                    };
                    if path == parent_path {
                        rule
                    } else {
                        format!("`{path}` {rule}")
                    }
                })
                .collect();
            reasons.join(" and ")
        })
        .collect();
    format!(
        "matches none of the allowed shapes: {}",
        shapes.join("; or ")
    )
}

/// `a number`, `a number or a string`, `a whole number, a string or null`.
fn type_names(types: &[JsonType]) -> String {
    let mut names: Vec<&str> = Vec::new();
    let has_number = types.contains(&JsonType::Number);
    // `null` reads best last: `a string or null`.
    let null_last = types
        .iter()
        .filter(|kind| **kind != JsonType::Null)
        .chain(types.iter().filter(|kind| **kind == JsonType::Null));
    for kind in null_last {
        let name = match kind {
            JsonType::Integer if has_number => continue,
            JsonType::Integer => "a whole number",
            JsonType::Number => "a number",
            JsonType::String => "a string",
            JsonType::Boolean => "a boolean (true or false)",
            JsonType::Array => "a list",
            JsonType::Object => "an object",
            JsonType::Null => "null",
        };
        names.push(name);
    }
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "nothing".to_string(),
    }
}

/// What a producer sent, briefly: `the string "95%"`, `the number 5`, `a list of 3 items`.
fn describe_value(value: &Value) -> String {
    const LONGEST: usize = 40;
    match value {
        Value::String(text) => {
            let shown: String = text.chars().take(LONGEST).collect();
            let cut = if text.chars().count() > LONGEST {
                "…"
            } else {
                ""
            };
            format!("the string {}{cut}", Value::String(shown))
        }
        Value::Number(number) => format!("the number {number}"),
        Value::Bool(flag) => format!("the boolean {flag}"),
        Value::Null => "null".to_string(),
        Value::Array(items) => match items.len() {
            1 => "a list of 1 item".to_string(),
            count => format!("a list of {count} items"),
        },
        Value::Object(fields) => match fields.len() {
            1 => "an object with 1 field".to_string(),
            count => format!("an object with {count} fields"),
        },
    }
}

/// `"low", "high"` for a JSON list; long lists end with how many there are.
fn json_list(options: &[Value]) -> String {
    const SHOWN: usize = 10;
    let mut text: Vec<String> = options.iter().take(SHOWN).map(Value::to_string).collect();
    if options.len() > SHOWN {
        text.push(format!("… ({} in all)", options.len()));
    }
    text.join(", ")
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks each event of a batch against its registered type, and fills in the type's
/// default severity where the producer sent none.
pub struct TypeCheck<'a> {
    types: &'a EventTypes,
    strict: bool,
}

impl EventCheck for TypeCheck<'_> {
    fn check(&self, event: &mut EventInput) -> Vec<FieldProblem> {
        let Some(name) = event.event_type.as_deref() else {
            if self.strict {
                return vec![FieldProblem {
                    field: "type".to_string(),
                    message: "is required: only events of registered types are accepted \
                              (ingest.strict_types)"
                        .to_string(),
                }];
            }
            return Vec::new();
        };
        let Some(registered) = self.types.get(name) else {
            if self.strict {
                return vec![FieldProblem {
                    field: "type".to_string(),
                    message: format!(
                        "event type `{name}` is not registered; only events of registered \
                         types are accepted (ingest.strict_types; see GET /api/v1/event-types)"
                    ),
                }];
            }
            return Vec::new();
        };
        if event.severity.is_none() {
            event.severity = registered.record.default_severity;
        }
        // Lend the fields to the validator as a JSON value without copying them.
        let fields = Value::Object(std::mem::take(&mut event.fields));
        let problems = registered.field_problems(&fields);
        if let Value::Object(fields) = fields {
            event.fields = fields;
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use serde_json::json;
    use tellify_model::Severity;

    fn registry(schema: Value) -> EventTypes {
        let record = EventType {
            name: "disk".to_string(),
            description: String::new(),
            category: None,
            default_severity: Some(Severity::Warning),
            schema: Some(schema),
            dedup_interval: None,
            created: Timestamp::UNIX_EPOCH,
            updated: Timestamp::UNIX_EPOCH,
        };
        let registry = EventTypes::default();
        registry
            .types
            .write()
            .unwrap()
            .insert("disk".to_string(), Arc::new(compile(record)));
        registry
    }

    fn input(json: Value) -> EventInput {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn every_schema_failure_names_its_field() {
        let registry = registry(json!({
            "type": "object",
            "required": ["fs", "usage"],
            "properties": {"usage": {"type": "number"}, "mount": {"type": "object", "properties": {"ro": {"type": "boolean"}}}},
            "additionalProperties": false
        }));
        let mut event = input(
            json!({"type": "disk", "fields": {"usage": "high", "colour": 1, "mount": {"ro": 3}}}),
        );
        let problems = registry.check(false).check(&mut event);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"fields.fs"), "{problems:?}");
        assert!(fields.contains(&"fields.usage"), "{problems:?}");
        assert!(fields.contains(&"fields.colour"), "{problems:?}");
        assert!(fields.contains(&"fields.mount.ro"), "{problems:?}");
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert_eq!(
            event.fields["usage"],
            json!("high"),
            "fields are handed back"
        );
    }

    /// The message for `fields` under `schema`, one problem expected.
    fn only_problem(schema: Value, fields: Value) -> FieldProblem {
        let registry = registry(schema);
        let mut event = input(json!({"type": "disk", "fields": fields}));
        let problems = registry.check(false).check(&mut event);
        assert_eq!(problems.len(), 1, "{problems:?}");
        problems.into_iter().next().unwrap()
    }

    #[test]
    fn each_schema_rule_is_named_in_words() {
        let cases = [
            (
                json!({"properties": {"usage": {"type": "number"}}}),
                json!({"usage": "95%"}),
                "fields.usage",
                r#"must be a number, got the string "95%""#,
            ),
            (
                json!({"properties": {"count": {"type": "integer"}}}),
                json!({"count": 1.5}),
                "fields.count",
                "must be a whole number, got the number 1.5",
            ),
            (
                json!({"properties": {"level": {"enum": ["low", "high"]}}}),
                json!({"level": "medium"}),
                "fields.level",
                r#"must be one of "low", "high", got the string "medium""#,
            ),
            (
                json!({"properties": {"x": {"maximum": 100}}}),
                json!({"x": 150}),
                "fields.x",
                "must be at most 100, got the number 150",
            ),
            (
                json!({"properties": {"x": {"exclusiveMinimum": 0}}}),
                json!({"x": 0}),
                "fields.x",
                "must be more than 0, got the number 0",
            ),
            (
                json!({"properties": {"fs": {"type": "string", "maxLength": 3}}}),
                json!({"fs": "/home"}),
                "fields.fs",
                r#"must be at most 3 characters long, got the string "/home""#,
            ),
            (
                json!({"properties": {"fs": {"pattern": "^/"}}}),
                json!({"fs": "home"}),
                "fields.fs",
                r#"must match the pattern `^/`, got the string "home""#,
            ),
            (
                json!({"properties": {"tags": {"type": "array", "maxItems": 1}}}),
                json!({"tags": ["a", "b"]}),
                "fields.tags",
                "must hold at most 1 items, got a list of 2 items",
            ),
            (
                json!({"properties": {"v": {"type": ["string", "null"]}}}),
                json!({"v": 3}),
                "fields.v",
                "must be a string or null, got the number 3",
            ),
            (
                json!({"properties": {"v": {"const": "on"}}}),
                json!({"v": "off"}),
                "fields.v",
                r#"must be "on", got the string "off""#,
            ),
            (
                json!({"properties": {"secret": false}}),
                json!({"secret": 1}),
                "fields.secret",
                "is not allowed",
            ),
        ];
        for (schema, fields, field, message) in cases {
            let problem = only_problem(schema, fields);
            assert_eq!(problem.field, field);
            assert_eq!(problem.message, message);
        }
        let problem = only_problem(json!({"required": ["fs"]}), json!({}));
        assert_eq!(problem.field, "fields.fs");
        assert!(problem.message.starts_with("is required"), "{problem:?}");
    }

    #[test]
    fn any_of_and_one_of_say_which_shapes_were_allowed() {
        let problem = only_problem(
            json!({"properties": {"usage": {"anyOf": [{"type": "number"}, {"type": "string"}]}}}),
            json!({"usage": true}),
        );
        assert_eq!(problem.field, "fields.usage");
        assert_eq!(
            problem.message,
            "must be a number or a string, got the boolean true"
        );
        let problem = only_problem(
            json!({"properties": {"usage": {"oneOf": [
                {"type": "number", "maximum": 100},
                {"type": "string", "pattern": "^[0-9]+%$"}
            ]}}}),
            json!({"usage": "lots"}),
        );
        assert!(
            !problem.message.contains("anyOf") && !problem.message.contains("oneOf"),
            "{problem:?}"
        );
        assert_eq!(
            problem.message,
            r#"matches none of the allowed shapes: must be a number, got the string "lots"; or must match the pattern `^[0-9]+%$`, got the string "lots""#
        );
        let problem = only_problem(
            json!({"anyOf": [{"required": ["fs"]}, {"required": ["mount"]}]}),
            json!({"x": 1}),
        );
        assert_eq!(problem.field, "fields");
        assert_eq!(
            problem.message,
            "matches none of the allowed shapes: `fs` is required; or `mount` is required"
        );
    }

    #[test]
    fn the_default_severity_fills_only_a_missing_one() {
        let registry = registry(json!({"type": "object"}));
        let mut without = input(json!({"type": "disk"}));
        assert!(registry.check(false).check(&mut without).is_empty());
        assert_eq!(without.severity, Some(Severity::Warning));
        let mut with = input(json!({"type": "disk", "severity": "critical"}));
        registry.check(false).check(&mut with);
        assert_eq!(with.severity, Some(Severity::Critical));
    }

    #[test]
    fn strict_rejects_unregistered_and_missing_types_only_when_on() {
        let registry = registry(json!(true));
        let mut unknown = input(json!({"type": "dsik", "message": "x"}));
        assert!(registry.check(false).check(&mut unknown).is_empty());
        let problems = registry.check(true).check(&mut unknown);
        assert_eq!(problems[0].field, "type");
        assert!(problems[0].message.contains("`dsik` is not registered"));
        let mut untyped = input(json!({"message": "x"}));
        assert_eq!(registry.check(true).check(&mut untyped)[0].field, "type");
        let mut known = input(json!({"type": "disk"}));
        assert!(registry.check(true).check(&mut known).is_empty());
    }

    #[test]
    fn a_schema_that_is_not_one_is_refused() {
        assert!(compile_schema(&json!("object")).is_err());
        assert!(compile_schema(&json!({"type": "no-such-type"})).is_err());
        assert!(compile_schema(&json!({"type": "object"})).is_ok());
    }
}
