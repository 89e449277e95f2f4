//! Importing an HTTP JSON engine's own alert definitions (`GET {url}/alerts`) as `metric`
//! subscriptions of the caller (`POST /api/v1/subscriptions/import`), so people who keep
//! their levels in the engine need not copy them by hand.
//!
//! An import is repeatable: a definition updates the caller's `metric` subscription with
//! the same title (in the same group, or outside any group) instead of adding a second one,
//! so running it again after the engine changed brings tellify up to date. Every definition
//! is checked before anything is written, and one bad definition (reported with its index,
//! `alerts[3].warn.value`) stops the whole import: a half-imported engine would be harder
//! to reason about than an error.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tellify_engine::ParamError;
use tellify_store::Subscription;

use super::error::{require, ServiceError, ServiceResult};
use super::people::owning_group;
use super::subscriptions::{self, MAX_TITLE};
use super::validate::{check_name, SETTING_NAME};
use super::Services;
use crate::auth::{Principal, Scope};

/// The only backend that publishes definitions; Prometheus keeps its rules elsewhere.
const HTTP_JSON: &str = "http-json";

/// Most definitions one import takes: more is a misconfigured engine, not a team's alerts.
const MAX_DEFINITIONS: usize = 1000;

/// Most bytes of the engine's `/alerts` answer read, so a misbehaving engine cannot make
/// the server buffer without bound (a thousand definitions take a few hundred KiB).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// What to import, and for whom.
pub struct ImportRequest {
    /// Only `http-json` engines publish definitions.
    pub backend: String,
    pub url: String,
    /// A group the caller belongs to; the subscriptions are then the group's.
    pub group: Option<String>,
    /// The policy the subscriptions notify with; on an update, absent keeps the old one.
    pub policy: Option<String>,
}

pub struct ImportResult {
    pub created: usize,
    pub updated: usize,
    /// The ids of the imported subscriptions, in the order of the engine's definitions.
    pub subscriptions: Vec<String>,
}

/// One definition, read and checked, ready to become a subscription.
struct Definition {
    title: String,
    params: Map<String, Value>,
}

pub async fn import(
    services: &Services,
    principal: &Principal,
    request: ImportRequest,
) -> ServiceResult<ImportResult> {
    require(principal, Scope::User)?;
    let mut errors = Vec::new();
    if request.backend != HTTP_JSON {
        errors.push(ParamError::new(
            "backend",
            format!(
                "`{}` cannot be imported; only `{HTTP_JSON}` engines publish definitions",
                request.backend
            ),
        ));
    }
    let url = request.url.trim().trim_end_matches('/').to_string();
    if let Err(problem) = check_base_url(&url) {
        errors.push(ParamError::new("url", problem));
    } else if let Err(problem) = services.outbound.check_url_text(&url) {
        errors.push(ParamError::new("url", problem));
    }
    if let Some(policy) = &request.policy {
        if check_name(policy, "policy", &SETTING_NAME, &mut errors) {
            super::subscriptions::check_policy_exists(
                services,
                &principal.user.id,
                policy,
                &mut errors,
            )
            .await?;
        }
    }
    let owner_group = owning_group(
        services,
        principal,
        request.group.as_deref(),
        "group",
        &mut errors,
    )
    .await?;
    ServiceError::check(errors)?;
    let mut errors = Vec::new();

    let timeout = Duration::from_secs(services.settings.pollers.timeout_secs.max(1));
    let answer = fetch_definitions(services, &url, timeout).await?;
    let definitions = read_definitions(services, &url, &answer)?;

    let viewer = principal.viewer();
    let existing = services.store.list_subscriptions(Some(&viewer)).await?;
    let mut by_title: HashMap<&str, Vec<&Subscription>> = HashMap::new();
    for subscription in &existing {
        // A group's subscriptions are shared by its members, so any member's import
        // updates them; outside a group only the caller's own count.
        let same_owner = match &owner_group {
            Some(group) => subscription.owner_group.as_ref() == Some(group),
            None => {
                subscription.owner_group.is_none() && subscription.owner_user == principal.user.id
            }
        };
        if same_owner && subscription.kind == "metric" {
            by_title
                .entry(subscription.title.as_str())
                .or_default()
                .push(subscription);
        }
    }
    // Decide every definition before writing any, so an ambiguous match fails the whole
    // import like any other invalid definition.
    let mut plan: Vec<(Definition, Option<Subscription>)> = Vec::new();
    for (index, definition) in definitions.into_iter().enumerate() {
        let matches = by_title
            .get(definition.title.as_str())
            .cloned()
            .unwrap_or_default();
        if matches.len() > 1 {
            errors.push(ParamError::new(
                format!("alerts[{index}].name"),
                format!(
                    "{} of your metric subscriptions are titled `{}`; rename or delete all but one",
                    matches.len(),
                    definition.title
                ),
            ));
            continue;
        }
        let current = matches.first().map(|found| (*found).clone());
        plan.push((definition, current));
    }
    ServiceError::check(errors)?;

    let now = services.clock.now();
    let mut result = ImportResult {
        created: 0,
        updated: 0,
        subscriptions: Vec::with_capacity(plan.len()),
    };
    for (definition, current) in plan {
        let subscription = match current {
            Some(mut subscription) => {
                subscription.params = merged_params(&subscription.params, definition.params);
                if request.policy.is_some() {
                    subscription.policy = request.policy.clone();
                }
                result.updated += 1;
                subscriptions::save(services, subscription).await?
            }
            None => {
                let subscription = Subscription {
                    id: tellify_model::new_id(),
                    kind: "metric".to_string(),
                    title: definition.title,
                    params: Value::Object(definition.params),
                    owner_user: principal.user.id.clone(),
                    owner_group: owner_group.clone(),
                    enabled: true,
                    latching: false,
                    policy: request.policy.clone(),
                    created: now,
                    updated: now,
                    health: None,
                    filter_errors: None,
                };
                result.created += 1;
                subscriptions::insert(services, subscription).await?
            }
        };
        result.subscriptions.push(subscription.id);
    }
    Ok(result)
}

/// An absolute http(s) URL with a host and nothing after the path: the same base URL the
/// `metric` kind polls.
fn check_base_url(url: &str) -> Result<(), String> {
    crate::channels::check_http_url(url)?;
    if url.contains(['?', '#']) || url.chars().any(char::is_whitespace) {
        return Err("must be a base url without query, fragment or spaces".to_string());
    }
    Ok(())
}

/// `GET {url}/alerts` through the outbound guard, read up to [`MAX_ANSWER_BYTES`]. Any
/// failure of the engine is a 502 naming only the engine's `scheme://host` and what went
/// wrong in tellify's words; the answer itself is never quoted, since the URL is the
/// caller's choice and may point at a page only this server can read.
async fn fetch_definitions(
    services: &Services,
    url: &str,
    timeout: Duration,
) -> ServiceResult<Value> {
    let engine = reqwest::Url::parse(&format!("{url}/alerts"))
        .map_err(|_| ServiceError::Unprocessable("url: is not a valid url".to_string()))?;
    let origin = crate::channels::endpoint_origin(&engine);
    let client = services.outbound.client(timeout).map_err(|error| {
        tracing::error!(error = %format!("{error:#}"), "cannot build the import http client");
        ServiceError::Internal("cannot reach the engine from this server".to_string())
    })?;
    let response = client
        .get(engine)
        .map_err(|denied| bad_gateway(format!("engine at {origin} refused: {denied}")))?
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|error| {
            let error = error.without_url();
            if let Some(denied) = crate::outbound::denied_by_guard(&error) {
                return bad_gateway(format!("engine at {origin} refused: {denied}"));
            }
            let cause = if error.is_timeout() {
                "timed out".to_string()
            } else {
                crate::channels::error_chain(&error)
            };
            bad_gateway(format!("engine at {origin} did not answer: {cause}"))
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(bad_gateway(format!(
            "engine at {origin} answered {status} to GET /alerts"
        )));
    }
    let bytes = crate::outbound::read_capped(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|error| bad_gateway(format!("engine at {origin}: {error}")))?;
    serde_json::from_slice(&bytes).map_err(|_| {
        bad_gateway(format!(
            "engine at {origin} answered GET /alerts with something that is not json"
        ))
    })
}

fn bad_gateway(detail: String) -> ServiceError {
    ServiceError::Upstream(detail)
}

/// Every definition of the answer as `metric` parameters, validated by the `metric` kind
/// itself, so an import accepts exactly what `POST /subscriptions` would. Failures carry
/// the engine's names (`alerts[2].intervalSecs`), not tellify's.
fn read_definitions(
    services: &Services,
    url: &str,
    answer: &Value,
) -> ServiceResult<Vec<Definition>> {
    let Some(items) = answer.as_array() else {
        return Err(bad_gateway(
            "engine's GET /alerts answer is not a json array of definitions".to_string(),
        ));
    };
    if items.len() > MAX_DEFINITIONS {
        return Err(ServiceError::Unprocessable(format!(
            "alerts: the engine has {} definitions; one import takes at most {MAX_DEFINITIONS}",
            items.len()
        )));
    }
    let mut errors = Vec::new();
    let mut definitions = Vec::with_capacity(items.len());
    let mut first_index_of: HashMap<String, usize> = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        let Some(definition) = read_definition(services, url, index, item, &mut errors) else {
            continue;
        };
        if let Some(first) = first_index_of.get(&definition.title) {
            errors.push(ParamError::new(
                format!("alerts[{index}].name"),
                format!("`{}` is also the name of alerts[{first}]", definition.title),
            ));
            continue;
        }
        first_index_of.insert(definition.title.clone(), index);
        definitions.push(definition);
    }
    ServiceError::check(errors)?;
    Ok(definitions)
}

/// One definition, or `None` with its failures added to `errors`.
fn read_definition(
    services: &Services,
    url: &str,
    index: usize,
    item: &Value,
    errors: &mut Vec<ParamError>,
) -> Option<Definition> {
    let at = |field: &str| format!("alerts[{index}].{field}");
    let Some(object) = item.as_object() else {
        errors.push(ParamError::new(
            format!("alerts[{index}]"),
            "must be an object",
        ));
        return None;
    };
    let before = errors.len();
    let name = object.get("name").and_then(Value::as_str).map(str::trim);
    let title = match name {
        Some(name) if !name.is_empty() && name.chars().count() <= MAX_TITLE => name.to_string(),
        _ => {
            errors.push(ParamError::new(
                at("name"),
                format!("must be a string of 1 to {MAX_TITLE} characters"),
            ));
            String::new()
        }
    };
    let query = match object.get("query") {
        Some(Value::String(query)) => Value::String(query.clone()),
        _ => {
            errors.push(ParamError::new(at("query"), "must be a string"));
            Value::Null
        }
    };
    let interval = match object.get("intervalSecs").and_then(Value::as_u64) {
        Some(seconds) if seconds >= 1 => Some(format!("{seconds}s")),
        _ => {
            errors.push(ParamError::new(
                at("intervalSecs"),
                "must be a whole number of seconds, at least 1",
            ));
            None
        }
    };
    // Engines commonly say "no repeat" with 0 or null as well as by leaving it out.
    let repeat = match object.get("repeatIntervalSecs") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_u64() {
            Some(0) => None,
            Some(seconds) => Some(format!("{seconds}s")),
            None => {
                errors.push(ParamError::new(
                    at("repeatIntervalSecs"),
                    "must be a whole number of seconds (0 or absent: never)",
                ));
                None
            }
        },
    };
    let mut params = Map::new();
    params.insert("backend".into(), json!(HTTP_JSON));
    params.insert("url".into(), json!(url));
    params.insert("query".into(), query);
    params.insert("interval".into(), json!(interval.unwrap_or_default()));
    if let Some(repeat) = repeat {
        params.insert("repeat_interval".into(), json!(repeat));
    }
    for level in ["warn", "critical"] {
        params.insert(level.into(), level_params(object.get(level)));
    }
    // The kind checks the rest, and every definition's failures are reported at once;
    // a field already found wrong above is not reported twice.
    let found = services
        .registry
        .build("metric", &Value::Object(params.clone()))
        .err()
        .unwrap_or_default();
    for error in found {
        let path = engine_path(index, &error.path);
        let already = errors[before..].iter().any(|known| known.path == path);
        if !already {
            errors.push(ParamError::new(path, error.message));
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(Definition { title, params })
}

/// The `value` and `message` of a level: other keys an engine may add are not ours to
/// judge, while anything that is not an object goes on as it is for the schema to refuse.
fn level_params(level: Option<&Value>) -> Value {
    match level {
        Some(Value::Object(object)) => {
            let mut kept = Map::new();
            for key in ["value", "message"] {
                if let Some(value) = object.get(key) {
                    kept.insert(key.to_string(), value.clone());
                }
            }
            Value::Object(kept)
        }
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

/// A `metric` parameter path (`params.critical.value`) in the engine's terms
/// (`alerts[1].critical.value`); the URL is the request's, not the definition's.
fn engine_path(index: usize, path: &str) -> String {
    let rest = path.strip_prefix("params").unwrap_or(path);
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    let (head, tail) = match rest.split_once('.') {
        Some((head, tail)) => (head, Some(tail)),
        None => (rest, None),
    };
    let head = match head {
        "url" => return "url".to_string(),
        "interval" => "intervalSecs",
        "repeat_interval" => "repeatIntervalSecs",
        other => other,
    };
    match (head.is_empty(), tail) {
        (true, _) => format!("alerts[{index}]"),
        (false, Some(tail)) => format!("alerts[{index}].{head}.{tail}"),
        (false, None) => format!("alerts[{index}].{head}"),
    }
}

/// The imported keys replace the old ones; keys the import does not set (such as
/// `unknown_after`, added by hand) are kept, and a repeat interval the engine no longer
/// has is dropped.
fn merged_params(current: &Value, imported: Map<String, Value>) -> Value {
    let mut merged = current.as_object().cloned().unwrap_or_default();
    merged.remove("repeat_interval");
    for (key, value) in imported {
        merged.insert(key, value);
    }
    Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_paths_read_in_the_engines_terms() {
        assert_eq!(engine_path(3, "params.warn.value"), "alerts[3].warn.value");
        assert_eq!(engine_path(0, "params.interval"), "alerts[0].intervalSecs");
        assert_eq!(
            engine_path(1, "params.repeat_interval"),
            "alerts[1].repeatIntervalSecs"
        );
        assert_eq!(engine_path(2, "params"), "alerts[2]");
        assert_eq!(engine_path(2, "params.url"), "url");
    }

    #[test]
    fn an_update_keeps_hand_added_keys_and_drops_a_removed_repeat() {
        let current = json!({"query": "old", "unknown_after": 5, "repeat_interval": "1h"});
        let mut imported = Map::new();
        imported.insert("query".into(), json!("new"));
        assert_eq!(
            merged_params(&current, imported),
            json!({"query": "new", "unknown_after": 5})
        );
    }

    #[test]
    fn levels_keep_value_and_message_only() {
        let level = json!({"value": 3, "message": "high", "color": "red"});
        assert_eq!(
            level_params(Some(&level)),
            json!({"value": 3, "message": "high"})
        );
        assert_eq!(level_params(Some(&json!(7))), json!(7));
        assert_eq!(level_params(None), Value::Null);
    }
}
