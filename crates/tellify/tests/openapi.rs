//! Keeps `src/api/openapi.json` honest: it must be OpenAPI 3.1, describe exactly the
//! routes that `src/api/mod.rs` registers (read from the source, so a new route without
//! documentation fails here), and every `$ref` in it must resolve.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tellify_engine::Registry;

/// The document exactly as `GET /api/openapi.json` serves it.
const DOCUMENT: &str = include_str!("../src/api/openapi.json");

const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Paths that need no bearer token.
const PUBLIC_PATHS: [&str; 3] = ["/healthz", "/metrics", "/api/openapi.json"];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("openapi.json is not valid JSON")
}

fn router_source() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/mod.rs");
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
}

// ---- reading the router from its source ----

/// The source with `//` and `/* */` comments blanked out; string literals are kept.
fn strip_comments(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        let next = chars.get(index + 1).copied();
        if c == '"' {
            out.push(c);
            index += 1;
            while index < chars.len() {
                out.push(chars[index]);
                if chars[index] == '\\' && index + 1 < chars.len() {
                    out.push(chars[index + 1]);
                    index += 2;
                    continue;
                }
                index += 1;
                if chars[index - 1] == '"' {
                    break;
                }
            }
        } else if c == '/' && next == Some('/') {
            while index < chars.len() && chars[index] != '\n' {
                index += 1;
            }
        } else if c == '/' && next == Some('*') {
            index += 2;
            while index < chars.len()
                && !(chars[index] == '*' && chars.get(index + 1) == Some(&'/'))
            {
                index += 1;
            }
            index += 2;
        } else {
            out.push(c);
            index += 1;
        }
    }
    out
}

/// The index just past the bracket that closes the one opened at `open`.
fn matching_close(text: &str, open: usize) -> usize {
    let bytes = text.as_bytes();
    let (opening, closing) = match bytes[open] {
        b'(' => (b'(', b')'),
        b'{' => (b'{', b'}'),
        other => panic!("not an opening bracket: {}", other as char),
    };
    let mut depth = 0usize;
    let mut in_string = false;
    let mut index = open;
    while index < bytes.len() {
        let b = bytes[index];
        if in_string {
            if b == b'\\' {
                index += 1;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == opening {
            depth += 1;
        } else if b == closing {
            depth -= 1;
            if depth == 0 {
                return index + 1;
            }
        }
        index += 1;
    }
    panic!("unbalanced brackets in the router source");
}

/// Reads the string literal that starts at or after `from` (skipping whitespace).
fn string_literal(text: &str, from: usize) -> (String, usize) {
    let rest = &text[from..];
    let start = from + rest.len() - rest.trim_start().len();
    assert!(
        text[start..].starts_with('"'),
        "expected a string literal at `{}`",
        &text[start..(start + 40).min(text.len())]
    );
    let end = start + 1 + text[start + 1..].find('"').expect("unterminated string");
    (text[start + 1..end].to_string(), end + 1)
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The HTTP methods a method-router expression such as
/// `get(a::b).put(a::c)` or `axum::routing::delete(x)` registers.
fn methods_in(expression: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let chars: Vec<char> = expression.chars().collect();
    let mut index = 0;
    while index < chars.len() {
        if is_ident_char(chars[index]) && (index == 0 || !is_ident_char(chars[index - 1])) {
            let start = index;
            while index < chars.len() && is_ident_char(chars[index]) {
                index += 1;
            }
            let word: String = chars[start..index].iter().collect();
            let called = chars.get(index) == Some(&'(');
            if called {
                if HTTP_METHODS.contains(&word.as_str()) {
                    found.insert(word.to_uppercase());
                } else {
                    assert!(
                        !matches!(word.as_str(), "any" | "on" | "on_service" | "get_service"),
                        "the router uses `{word}(...)`, which this test cannot map to methods; \
                         extend tests/openapi.rs"
                    );
                }
            }
        } else {
            index += 1;
        }
    }
    found
}

/// Every `(METHOD, full path)` the router in `src/api/mod.rs` registers.
fn router_routes() -> BTreeSet<(String, String)> {
    routes_in(&router_source())
}

/// Every `(METHOD, full path)` that `fn router` in `source` registers, with `.nest`
/// prefixes applied.
fn routes_in(source: &str) -> BTreeSet<(String, String)> {
    let source = strip_comments(source);
    let start = source
        .find("fn router(")
        .expect("no `fn router(` in src/api/mod.rs");
    let body_open = start + source[start..].find('{').expect("router has no body");
    let body = &source[body_open..matching_close(&source, body_open)];

    for unsupported in [".merge(", ".route_service(", ".nest_service("] {
        assert!(
            !body.contains(unsupported),
            "the router uses `{unsupported}`, which this test does not follow; extend tests/openapi.rs"
        );
    }

    // `.nest("/prefix", name)`: the routes of `let name = Router::new()...;` get the prefix.
    let mut nested: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut search = 0;
    while let Some(found) = body[search..].find(".nest(") {
        let at = search + found;
        let (prefix, after) = string_literal(body, at + ".nest(".len());
        let rest = body[after..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
        let name: String = rest.chars().take_while(|c| is_ident_char(*c)).collect();
        assert!(
            !name.is_empty(),
            "`.nest(\"{prefix}\", ...)` must name a router variable"
        );
        let binding = format!("let {name} =");
        let let_at = body
            .find(&binding)
            .unwrap_or_else(|| panic!("no `{binding}` for the router nested at {prefix}"));
        let end = let_at + body[let_at..].find(';').expect("unterminated let");
        // A `;` inside the builder would end the span early; the builder has none.
        nested.push((let_at..end, prefix));
        search = after;
    }

    let mut routes = BTreeSet::new();
    let mut search = 0;
    while let Some(found) = body[search..].find(".route(") {
        let at = search + found;
        let open = at + ".route".len();
        let close = matching_close(body, open);
        let (path, after_path) = string_literal(body, open + 1);
        let methods = methods_in(&body[after_path..close - 1]);
        assert!(
            !methods.is_empty(),
            "route {path} registers no method this test recognizes"
        );
        let prefix = nested
            .iter()
            .find(|(span, _)| span.contains(&at))
            .map(|(_, prefix)| prefix.as_str())
            .unwrap_or("");
        for method in methods {
            routes.insert((method, format!("{prefix}{path}")));
        }
        search = close;
    }
    assert!(
        routes.len() > 10,
        "found only {} routes in src/api/mod.rs; is the parser still right?",
        routes.len()
    );
    routes
}

fn documented_routes(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"]
        .as_object()
        .expect("the document has no `paths` object");
    let mut routes = BTreeSet::new();
    for (path, item) in paths {
        let item = item
            .as_object()
            .unwrap_or_else(|| panic!("path item {path} is not an object"));
        for key in item.keys() {
            if HTTP_METHODS.contains(&key.as_str()) {
                routes.insert((key.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

fn operations(document: &Value) -> Vec<(String, String, &Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if HTTP_METHODS.contains(&method.as_str()) {
                found.push((method.to_uppercase(), path.clone(), operation));
            }
        }
    }
    found
}

// ---- the tests ----

#[test]
fn document_is_openapi_3_1() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["info"]["title"].is_string());
    assert!(document["info"]["version"].is_string());
}

#[test]
fn the_router_parser_sees_known_routes() {
    let routes = router_routes();
    for (method, path) in [
        ("POST", "/api/v1/events"),
        ("PATCH", "/api/v1/subscriptions/{id}"),
        ("DELETE", "/api/v1/groups/{name}/members/{user}"),
        ("GET", "/api/openapi.json"),
        ("GET", "/healthz"),
    ] {
        assert!(
            routes.contains(&(method.to_string(), path.to_string())),
            "{method} {path} missing from {routes:?}"
        );
    }
}

/// Routes the router has but the document lacks, and the other way round.
fn differences(
    routes: &BTreeSet<(String, String)>,
    documented: &BTreeSet<(String, String)>,
) -> (Vec<String>, Vec<String>) {
    let describe = |(method, path): &(String, String)| format!("{method} {path}");
    (
        routes.difference(documented).map(describe).collect(),
        documented.difference(routes).map(describe).collect(),
    )
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let (undocumented, unknown) = differences(&router_routes(), &documented_routes(&document()));
    assert!(
        undocumented.is_empty(),
        "routes in src/api/mod.rs missing from src/api/openapi.json: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "src/api/openapi.json documents routes the router lacks: {unknown:?}"
    );
}

#[test]
fn an_undocumented_route_would_fail() {
    let source = router_source();
    let nested = source.replacen(
        "let api = Router::new()",
        "let api = Router::new()\n        .route(\"/widgets/{id}\", get(widgets::get_one).delete(widgets::delete))",
        1,
    );
    assert_ne!(
        nested, source,
        "the router no longer starts with `let api = Router::new()`"
    );
    let outer = source.replacen(
        ".route(\"/healthz\", get(meta::healthz))",
        ".route(\"/healthz\", get(meta::healthz).post(meta::poke))",
        1,
    );
    assert_ne!(
        outer, source,
        "the router no longer has `.route(\"/healthz\", get(meta::healthz))`"
    );
    let documented = documented_routes(&document());
    let (undocumented, unknown) = differences(&routes_in(&nested), &documented);
    assert_eq!(
        undocumented,
        vec!["DELETE /api/v1/widgets/{id}", "GET /api/v1/widgets/{id}"]
    );
    assert!(unknown.is_empty());
    let (undocumented, _) = differences(&routes_in(&outer), &documented);
    assert_eq!(undocumented, vec!["POST /healthz"]);
}

/// Resolves a local JSON pointer (`#/components/schemas/Alert`).
fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    document.pointer(pointer)
}

fn collect_refs(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref" {
                    let target = child
                        .as_str()
                        .unwrap_or_else(|| panic!("`$ref` at {at} is not a string"));
                    found.push((at.to_string(), target.to_string()));
                } else {
                    collect_refs(child, &format!("{at}/{key}"), found);
                }
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                collect_refs(child, &format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_ref_resolves_to_a_component() {
    let document = document();
    let mut refs = Vec::new();
    collect_refs(&document, "#", &mut refs);
    assert!(!refs.is_empty());
    let mut broken = Vec::new();
    for (at, target) in &refs {
        let is_component = target.starts_with("#/components/")
            && target.split('/').count() == 4
            && resolve(&document, target).is_some();
        if !is_component {
            broken.push(format!("{at} -> {target}"));
        }
    }
    assert!(broken.is_empty(), "unresolved `$ref`s: {broken:?}");
}

#[test]
fn security_is_bearer_except_on_public_paths() {
    let document = document();
    assert_eq!(
        document["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    assert_eq!(
        document["security"],
        serde_json::json!([{"bearerAuth": []}])
    );
    for (method, path, operation) in operations(&document) {
        let public = PUBLIC_PATHS.contains(&path.as_str());
        if public {
            assert_eq!(
                operation["security"],
                serde_json::json!([]),
                "{method} {path} is public and must say `security: []`"
            );
        } else {
            assert!(
                operation.get("security").is_none(),
                "{method} {path} must keep the document's bearer security"
            );
            assert!(
                operation["responses"].get("401").is_some(),
                "{method} {path} needs a 401 response"
            );
        }
    }
}

#[test]
fn operations_are_complete() {
    let document = document();
    let mut ids = BTreeSet::new();
    for (method, path, operation) in operations(&document) {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
        let responses = operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} has no responses"));
        assert!(
            responses.keys().any(|code| code.starts_with('2')),
            "{method} {path} has no success response"
        );
        // Every `{name}` in the path is a declared path parameter.
        let declared: BTreeSet<String> = operation["parameters"]
            .as_array()
            .map(|parameters| {
                parameters
                    .iter()
                    .map(
                        |parameter| match parameter.get("$ref").and_then(Value::as_str) {
                            Some(target) => resolve(&document, target).unwrap().clone(),
                            None => parameter.clone(),
                        },
                    )
                    .filter(|parameter| parameter["in"] == "path")
                    .map(|parameter| parameter["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let in_path: BTreeSet<String> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_string)
            .collect();
        assert_eq!(
            declared, in_path,
            "{method} {path}: path parameters do not match the path"
        );
    }
}

/// The documented `params` schemas of the handler kinds are the engine's own.
#[test]
fn handler_kind_params_match_the_engine() {
    let document = document();
    let schemas = &document["components"]["schemas"];
    let registry = Registry::builtin();
    let mut names = BTreeMap::new();
    for kind in registry.kinds() {
        let name = kind.name();
        let component = format!("{}{}Params", name[..1].to_uppercase(), &name[1..]);
        let mut documented = schemas
            .get(&component)
            .unwrap_or_else(|| panic!("no components.schemas.{component} for kind `{name}`"))
            .clone();
        documented.as_object_mut().unwrap().remove("description");
        let mut engine = kind.param_schema();
        engine.as_object_mut().unwrap().remove("$schema");
        assert_eq!(
            documented, engine,
            "components.schemas.{component} differs from the `{name}` kind's param_schema()"
        );
        names.insert(name.to_string(), component);
    }
    // Creating a subscription selects the params schema by kind.
    let branches = schemas["CreateSubscriptionRequest"]["allOf"]
        .as_array()
        .expect("CreateSubscriptionRequest needs an allOf of per-kind branches");
    let selected: BTreeMap<String, String> = branches
        .iter()
        .map(|branch| {
            let kind = branch["if"]["properties"]["kind"]["const"]
                .as_str()
                .unwrap()
                .to_string();
            let target = branch["then"]["properties"]["params"]["$ref"]
                .as_str()
                .unwrap()
                .trim_start_matches("#/components/schemas/")
                .to_string();
            (kind, target)
        })
        .collect();
    assert_eq!(selected, names);
}
