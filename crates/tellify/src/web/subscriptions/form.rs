//! The subscription form, generated from a handler kind's parameter JSON Schema
//! ([`tellify_engine::HandlerKind::param_schema`]), so every kind — built in or plugged in
//! — gets a form without a template of its own, and the form can never disagree with what
//! the engine validates.
//!
//! Three steps, all pure: [`rows`] turns the schema (and the values to show) into labelled
//! controls; [`params_from_form`] reads a submitted form back into the JSON `params` by
//! the same schema (numbers as numbers, one array item per line, empty optional fields
//! omitted, a value that does not parse passed on as typed so the service names the
//! problem); [`place_errors`] puts each [`ParamError`] next to the control its path names.
//! A control's form name IS its parameter path (`params.levels.warn`), so the service's
//! paths need no translation table.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};
use tellify_engine::{Filter, ParamError};

/// How a schema property is edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// One line of text.
    Text,
    /// A duration (`10m`), checked by the browser with the schema's pattern.
    Duration,
    /// Any number.
    Number,
    /// A whole number.
    Integer,
    /// One of a list (an `enum`, or a boolean that may be left unset).
    Select,
    /// A boolean the schema requires.
    Checkbox,
    /// A CEL filter: several lines, and its errors point at a position.
    Filter,
    /// An array: one item per line.
    Lines,
    /// Anything the form has no control for: JSON text.
    Json,
}

/// One choice of a select.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// Where a filter failed to compile, for a caret under the line.
pub struct FilterPosition {
    pub line: usize,
    pub column: usize,
    pub source_line: String,
    /// Spaces up to the column, then `^`.
    pub caret: String,
}

/// One labelled control.
pub struct Field {
    /// The form name, which is also the parameter's error path (`params.warn`).
    pub name: String,
    /// The element id (`f-params-warn`); errors are `{id}-error`, hints `{id}-hint`.
    pub id: String,
    pub label: String,
    pub control: Control,
    pub required: bool,
    /// The schema's description, the default and the expected form, in words.
    pub hint: String,
    /// The value as text (what was typed, or the stored value).
    pub value: String,
    pub checked: bool,
    pub choices: Vec<Choice>,
    pub min: String,
    pub max: String,
    pub pattern: String,
    pub maxlength: String,
    pub errors: Vec<String>,
    pub position: Option<FilterPosition>,
}

impl Field {
    /// The `aria-describedby` ids: the hint, and the errors when there are any.
    pub fn described_by(&self) -> String {
        let mut ids = Vec::new();
        if !self.hint.is_empty() {
            ids.push(format!("{}-hint", self.id));
        }
        if !self.errors.is_empty() {
            ids.push(format!("{}-error", self.id));
        }
        ids.join(" ")
    }

    /// The number input's `step`.
    pub fn step(&self) -> &'static str {
        if self.control == Control::Integer {
            "1"
        } else {
            "any"
        }
    }

    fn is(&self, control: Control) -> bool {
        self.control == control
    }

    pub fn is_number(&self) -> bool {
        self.is(Control::Number) || self.is(Control::Integer)
    }

    pub fn is_select(&self) -> bool {
        self.is(Control::Select)
    }

    pub fn is_checkbox(&self) -> bool {
        self.is(Control::Checkbox)
    }

    pub fn is_textarea(&self) -> bool {
        self.is(Control::Filter) || self.is(Control::Lines)
    }

    pub fn rows(&self) -> usize {
        if self.is(Control::Filter) {
            4
        } else {
            3
        }
    }
}

/// A nested object's frame.
pub struct Fieldset {
    pub legend: String,
    pub hint: String,
    pub required: bool,
}

/// One line of the generated form: a control, or the start or end of a fieldset (nested
/// objects nest fieldsets, flattened so the template needs no recursion).
pub struct Row {
    pub open: Option<Fieldset>,
    pub field: Option<Field>,
    pub close: bool,
}

/// The controls of a kind's parameters, showing `values` (the `params` object, or `Null`
/// for an empty form).
pub fn rows(schema: &Value, values: &Value) -> Vec<Row> {
    let mut out = Vec::new();
    object_rows(schema, values, "params", &mut out);
    out
}

fn object_rows(schema: &Value, values: &Value, prefix: &str, out: &mut Vec<Row>) {
    let required = required_of(schema);
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (property, property_schema) in properties {
        let name = format!("{prefix}.{property}");
        let value = values.get(property).unwrap_or(&Value::Null);
        let is_required = required.contains(&property.as_str());
        if type_of(property_schema) == "object" && property_schema.get("properties").is_some() {
            out.push(Row {
                open: Some(Fieldset {
                    legend: label_of(property),
                    hint: hint_of(property_schema, None),
                    required: is_required,
                }),
                field: None,
                close: false,
            });
            object_rows(property_schema, value, &name, out);
            out.push(Row {
                open: None,
                field: None,
                close: true,
            });
            continue;
        }
        out.push(Row {
            open: None,
            field: Some(field(property, property_schema, &name, is_required, value)),
            close: false,
        });
    }
}

fn field(property: &str, schema: &Value, name: &str, required: bool, value: &Value) -> Field {
    let control = control_of(property, schema, required);
    let text = |key: &str| {
        schema
            .get(key)
            .map(|v| match v {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    };
    let mut choices = Vec::new();
    let value_text = value_text(value, control);
    if control == Control::Select {
        if !required || value.is_null() {
            choices.push(Choice {
                value: String::new(),
                label: "(not set)".to_string(),
                selected: value_text.is_empty(),
            });
        }
        let options: Vec<Value> = match schema.get("enum").and_then(Value::as_array) {
            Some(options) => options.clone(),
            None => vec![Value::Bool(true), Value::Bool(false)],
        };
        for option in options {
            let option_text = value_text_of(&option);
            let label = match &option {
                Value::Bool(true) => "yes".to_string(),
                Value::Bool(false) => "no".to_string(),
                _ => option_text.clone(),
            };
            choices.push(Choice {
                selected: option_text == value_text,
                value: option_text,
                label,
            });
        }
    }
    let pattern = match control {
        Control::Duration => tellify_model::DURATION_PATTERN.to_string(),
        _ => String::new(),
    };
    Field {
        name: name.to_string(),
        id: format!("f-{}", name.replace(['.', '_'], "-")),
        label: label_of(property),
        control,
        required,
        hint: hint_of(schema, Some(control)),
        checked: value.as_bool().unwrap_or(false),
        value: value_text,
        choices,
        min: text("minimum"),
        max: text("maximum"),
        pattern,
        maxlength: text("maxLength"),
        errors: Vec::new(),
        position: None,
    }
}

fn control_of(property: &str, schema: &Value, required: bool) -> Control {
    if schema.get("enum").is_some() {
        return Control::Select;
    }
    let description = schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match type_of(schema) {
        "string" => {
            let pattern = schema.get("pattern").and_then(Value::as_str);
            if pattern == Some(tellify_model::DURATION_PATTERN) {
                Control::Duration
            } else if property == "filter" || description.contains("CEL") {
                Control::Filter
            } else {
                Control::Text
            }
        }
        "number" => Control::Number,
        "integer" => Control::Integer,
        "boolean" if required => Control::Checkbox,
        "boolean" => Control::Select,
        "array" => Control::Lines,
        _ => Control::Json,
    }
}

/// The schema's `type` (the first that is not `null` when it lists several).
fn type_of(schema: &Value) -> &str {
    match schema.get("type") {
        Some(Value::String(name)) => name,
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .find(|name| *name != "null")
            .unwrap_or(""),
        _ => "",
    }
}

fn required_of(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `group_by` → `Group by`.
pub fn label_of(property: &str) -> String {
    let words = property.replace(['_', '-'], " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn hint_of(schema: &Value, control: Option<Control>) -> String {
    let mut parts = Vec::new();
    if let Some(description) = schema.get("description").and_then(Value::as_str) {
        parts.push(description.to_string());
    }
    match control {
        Some(Control::Lines) => parts.push("one per line".to_string()),
        Some(Control::Duration) => parts.push("a duration such as 90s, 10m or 1h30m".to_string()),
        Some(Control::Filter) => parts.push("CEL, e.g. usage > 90 && fs == \"/\"".to_string()),
        Some(Control::Json) => parts.push("JSON".to_string()),
        _ => {}
    }
    if let Some(default) = schema.get("default") {
        parts.push(format!("default: {}", value_text_of(default)));
    }
    parts.join("; ")
}

fn value_text_of(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn value_text(value: &Value, control: Control) -> String {
    match (control, value) {
        (Control::Lines, Value::Array(items)) => items
            .iter()
            .map(value_text_of)
            .collect::<Vec<_>>()
            .join("\n"),
        (Control::Checkbox, _) => String::new(),
        _ => value_text_of(value),
    }
}

/// A submitted form: the last value of each name.
pub type FormValues = BTreeMap<String, String>;

/// Reads the parameters back from a submitted form, by the schema: only the schema's
/// properties are read; numbers become JSON numbers, lines become array items, empty
/// optional fields and optional objects left empty are omitted. A value that does not
/// parse (`9O` for a number) is passed on as the text typed, so the service's validation
/// reports it at its path like any other failure and the form keeps it.
pub fn params_from_form(schema: &Value, form: &FormValues) -> Value {
    let object = object_from_form(schema, form, "params").unwrap_or_default();
    Value::Object(object)
}

fn object_from_form(schema: &Value, form: &FormValues, prefix: &str) -> Option<Map<String, Value>> {
    let required = required_of(schema);
    let properties = schema.get("properties").and_then(Value::as_object)?;
    let mut object = Map::new();
    for (property, property_schema) in properties {
        let name = format!("{prefix}.{property}");
        let is_required = required.contains(&property.as_str());
        if type_of(property_schema) == "object" && property_schema.get("properties").is_some() {
            match object_from_form(property_schema, form, &name) {
                Some(inner) => {
                    object.insert(property.clone(), Value::Object(inner));
                }
                // A required object is sent even when empty, so its own required fields
                // are named one by one.
                None if is_required => {
                    object.insert(property.clone(), Value::Object(Map::new()));
                }
                None => {}
            }
            continue;
        }
        let control = control_of(property, property_schema, is_required);
        let raw = form.get(&name).map(String::as_str).unwrap_or_default();
        if control == Control::Checkbox {
            object.insert(property.clone(), Value::Bool(is_on(raw)));
            continue;
        }
        if raw.trim().is_empty() {
            continue;
        }
        let value = match control {
            Control::Number | Control::Integer => number_or_text(raw.trim()),
            Control::Select => choice_value(property_schema, raw),
            Control::Lines => {
                let items = property_schema.get("items").unwrap_or(&Value::Null);
                Value::Array(
                    raw.lines()
                        .map(str::trim)
                        .filter(|line| !line.is_empty())
                        .map(|line| item_value(items, line))
                        .collect(),
                )
            }
            Control::Filter => Value::String(raw.replace("\r\n", "\n").trim_end().to_string()),
            Control::Json => serde_json::from_str(raw.trim())
                .unwrap_or_else(|_| Value::String(raw.trim().to_string())),
            Control::Text | Control::Duration | Control::Checkbox => {
                Value::String(raw.trim().to_string())
            }
        };
        object.insert(property.clone(), value);
    }
    (!object.is_empty()).then_some(object)
}

/// A checkbox's value: present and not `false`.
pub fn is_on(raw: &str) -> bool {
    matches!(raw, "on" | "true" | "yes" | "1")
}

fn number_or_text(text: &str) -> Value {
    if let Ok(whole) = text.parse::<i64>() {
        return Value::Number(whole.into());
    }
    match text.parse::<f64>().ok().and_then(Number::from_f64) {
        Some(number) => Value::Number(number),
        None => Value::String(text.to_string()),
    }
}

fn item_value(items: &Value, text: &str) -> Value {
    match type_of(items) {
        "number" | "integer" => number_or_text(text),
        "boolean" => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text.to_string()),
        },
        _ => Value::String(text.to_string()),
    }
}

fn choice_value(schema: &Value, raw: &str) -> Value {
    let options: Vec<Value> = match schema.get("enum").and_then(Value::as_array) {
        Some(options) => options.clone(),
        None => vec![Value::Bool(true), Value::Bool(false)],
    };
    options
        .into_iter()
        .find(|option| value_text_of(option) == raw)
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

/// Puts each error next to the control its path names (`params.group_by.1` → the
/// `params.group_by` control, as "line 2: ..."; "`x` is a required property" at
/// `params` → the `params.x` control; an `anyOf` of required names → each of those
/// controls). Errors at `title`, `policy`, `group` and the like, and any path without a
/// control, are returned in `others` by path, for the caller to place.
pub fn place_errors(
    rows: &mut [Row],
    schema: &Value,
    errors: &[ParamError],
) -> BTreeMap<String, Vec<String>> {
    let mut others: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for error in errors {
        for target in targets(schema, error) {
            let field = rows
                .iter_mut()
                .filter_map(|row| row.field.as_mut())
                .find(|field| field.name == target.path);
            let Some(field) = field else {
                let message = target.with_line(target.message.clone());
                others.entry(target.path).or_default().push(message);
                continue;
            };
            let message = target.with_line(in_words(&target.message, field.control));
            if !field.errors.contains(&message) {
                field.errors.push(message);
            }
        }
    }
    for field in rows.iter_mut().filter_map(|row| row.field.as_mut()) {
        if field.control == Control::Filter && !field.errors.is_empty() {
            field.position = filter_position(&field.value);
        }
    }
    others
}

/// Where an error goes: the control's path, the message, and the array line it is about.
struct Target {
    path: String,
    message: String,
    line: Option<usize>,
}

impl Target {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Target {
        Target {
            path: path.into(),
            message: message.into(),
            line: None,
        }
    }

    fn with_line(&self, message: String) -> String {
        match self.line {
            Some(line) => format!("line {line}: {message}"),
            None => message,
        }
    }
}

/// The control path(s) and message an error belongs to.
fn targets(schema: &Value, error: &ParamError) -> Vec<Target> {
    let message = error.message.as_str();
    if let Some(property) = required_property(message) {
        return vec![Target::new(
            format!("{}.{property}", error.path),
            "is required",
        )];
    }
    if error.path == "params" && message.contains("anyOf") {
        let names = any_of_required(schema);
        if !names.is_empty() {
            let words = format!("set at least one of {}", names.join(", "));
            return names
                .iter()
                .map(|name| Target::new(format!("params.{name}"), words.clone()))
                .collect();
        }
    }
    // An array item's error belongs to the array's control, naming the line.
    if let Some((array, last)) = error.path.rsplit_once('.') {
        if let Ok(index) = last.parse::<usize>() {
            return vec![Target {
                path: array.to_string(),
                message: message.to_string(),
                line: Some(index + 1),
            }];
        }
    }
    vec![Target::new(error.path.clone(), message)]
}

/// `"warn" is a required property` → `warn`.
fn required_property(message: &str) -> Option<&str> {
    let rest = message.strip_prefix('"')?;
    let end = rest.find('"')?;
    (&rest[end..] == "\" is a required property").then(|| &rest[..end])
}

/// The names an `anyOf` of `required` lists asks for (`warn`, `critical`).
fn any_of_required(schema: &Value) -> Vec<String> {
    let mut names = Vec::new();
    for branch in schema
        .get("anyOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for name in required_of(branch) {
            names.push(name.to_string());
        }
    }
    names
}

/// The JSON Schema validator's wording, where it speaks of types and limits, in the
/// words of a form.
fn in_words(message: &str, control: Control) -> String {
    if message.contains("is not of type") {
        return match control {
            Control::Number => "must be a number".to_string(),
            Control::Integer => "must be a whole number".to_string(),
            _ => message.to_string(),
        };
    }
    for (marker, words) in [
        ("is less than the minimum of ", "must be at least "),
        ("is greater than the maximum of ", "must be at most "),
    ] {
        if let Some(at) = message.find(marker) {
            return format!("{words}{}", &message[at + marker.len()..]);
        }
    }
    if message.ends_with("is shorter than 1 character") {
        return "must not be empty".to_string();
    }
    message.to_string()
}

/// Where `source` fails to compile, with its line and a caret under the column.
pub fn filter_position(source: &str) -> Option<FilterPosition> {
    let error = Filter::compile(source).err()?;
    let source_line = source
        .split('\n')
        .nth(error.line.saturating_sub(1))
        .unwrap_or_default()
        .to_string();
    Some(FilterPosition {
        line: error.line,
        column: error.column,
        source_line,
        caret: format!("{}^", " ".repeat(error.column.saturating_sub(1))),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tellify_engine::Registry;

    use super::*;

    fn form(pairs: &[(&str, &str)]) -> FormValues {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn field<'a>(rows: &'a [Row], name: &str) -> &'a Field {
        rows.iter()
            .filter_map(|row| row.field.as_ref())
            .find(|field| field.name == name)
            .unwrap_or_else(|| panic!("no field {name}"))
    }

    #[test]
    fn every_property_of_every_kind_has_a_control() {
        let registry = Registry::builtin();
        for kind in registry.kinds() {
            let schema = kind.param_schema();
            let rows = rows(&schema, &Value::Null);
            let names: Vec<&str> = rows
                .iter()
                .filter_map(|row| row.field.as_ref())
                .map(|field| field.name.as_str())
                .collect();
            let mut expected = Vec::new();
            collect_leaves(&schema, "params", &mut expected);
            assert_eq!(names, expected, "{}", kind.name());
        }
    }

    fn collect_leaves(schema: &Value, prefix: &str, out: &mut Vec<String>) {
        for (name, property) in schema["properties"].as_object().unwrap() {
            if property.get("properties").is_some() {
                collect_leaves(property, &format!("{prefix}.{name}"), out);
            } else {
                out.push(format!("{prefix}.{name}"));
            }
        }
    }

    #[test]
    fn controls_follow_the_types() {
        let registry = Registry::builtin();
        let count = rows(&registry.get("count").unwrap().param_schema(), &Value::Null);
        assert_eq!(field(&count, "params.filter").control, Control::Filter);
        assert_eq!(field(&count, "params.window").control, Control::Duration);
        assert_eq!(field(&count, "params.limit").control, Control::Integer);
        assert!(field(&count, "params.limit").required);
        assert_eq!(field(&count, "params.group_by").control, Control::Lines);
        assert_eq!(field(&count, "params.severity").control, Control::Select);
        assert_eq!(field(&count, "params.emit.type").control, Control::Text);
        assert!(field(&count, "params.emit.type").required);
        let metric = rows(
            &registry.get("metric").unwrap().param_schema(),
            &Value::Null,
        );
        assert_eq!(field(&metric, "params.warn.value").control, Control::Number);
        let backend = field(&metric, "params.backend");
        let offered: Vec<&str> = backend.choices.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(offered, ["", "prometheus", "http-json"]);
    }

    #[test]
    fn the_form_reads_back_as_typed_params() {
        let registry = Registry::builtin();
        let schema = registry.get("count").unwrap().param_schema();
        let params = params_from_form(
            &schema,
            &form(&[
                ("params.filter", "type == \"login\"\r\n&& ok == false"),
                ("params.limit", "5"),
                ("params.window", " 10m "),
                ("params.group_by", "user\r\n\r\n host \n"),
                ("params.severity", ""),
                ("params.distinct", ""),
                ("params.emit.type", ""),
                ("params.emit.message", ""),
            ]),
        );
        assert_eq!(
            params,
            json!({
                "filter": "type == \"login\"\n&& ok == false",
                "group_by": ["user", "host"],
                "window": "10m",
                "limit": 5,
            })
        );
        let threshold = registry.get("threshold").unwrap().param_schema();
        let params = params_from_form(
            &threshold,
            &form(&[
                ("params.field", "usage"),
                ("params.warn", "90.5"),
                ("params.critical", "9O"),
            ]),
        );
        assert_eq!(
            params,
            json!({"field": "usage", "warn": 90.5, "critical": "9O"})
        );
    }

    #[test]
    fn stored_params_show_in_the_controls() {
        let registry = Registry::builtin();
        let schema = registry.get("metric").unwrap().param_schema();
        let rows = rows(
            &schema,
            &json!({"backend": "prometheus", "warn": {"value": 0.5, "message": "slow"}, "unknown_after": 3}),
        );
        assert_eq!(field(&rows, "params.warn.value").value, "0.5");
        assert_eq!(field(&rows, "params.unknown_after").value, "3");
        let backend = field(&rows, "params.backend");
        assert!(backend
            .choices
            .iter()
            .any(|c| c.selected && c.value == "prometheus"));
    }

    #[test]
    fn errors_land_next_to_their_controls() {
        let registry = Registry::builtin();
        let schema = registry.get("threshold").unwrap().param_schema();
        let params = json!({"field": "usage", "filter": "usage >", "group_by": ["fs", ""], "hysteresis": "x"});
        let errors = registry.build("threshold", &params).err().unwrap();
        let mut rows = rows(&schema, &params);
        let others = place_errors(&mut rows, &schema, &errors);
        assert_eq!(others, BTreeMap::new(), "{errors:?}");
        assert_eq!(
            field(&rows, "params.warn").errors,
            ["set at least one of warn, critical"]
        );
        assert_eq!(
            field(&rows, "params.hysteresis").errors,
            ["must be a number"]
        );
        assert!(field(&rows, "params.group_by").errors[0].starts_with("line 2: "));
        let filter = field(&rows, "params.filter");
        assert!(filter.errors[0].contains("line 1"), "{:?}", filter.errors);
        let position = filter.position.as_ref().expect("a position");
        assert_eq!(position.source_line, "usage >");
        assert_eq!(position.caret.len(), position.column);

        let missing = vec![ParamError::new(
            "params",
            "\"field\" is a required property",
        )];
        let mut rows = super::rows(&schema, &Value::Null);
        place_errors(&mut rows, &schema, &missing);
        assert_eq!(field(&rows, "params.field").errors, ["is required"]);
    }
}
