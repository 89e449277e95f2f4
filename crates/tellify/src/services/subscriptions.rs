//! Subscriptions: create, change, switch on and off, delete. Each checks that the caller
//! may see the subscription (owner, member of its group, or admin; anything else is "not
//! found"), validates the parameters against the kind, writes, and tells the worker and
//! the planner in the same call. Imports of engine definitions are in [`super::import`].

use serde_json::Value;
use tellify_engine::filter::schema::FieldTypes;
use tellify_engine::{Filter, ParamError};
use tellify_store::Subscription;

use super::caches;
use super::error::{require, ServiceError, ServiceResult};
use super::people::owning_group;
use super::validate::{check_name, SETTING_NAME};
use super::Services;
use crate::auth::{Principal, Scope};

/// Longest subscription title, in characters.
pub const MAX_TITLE: usize = 200;

/// A subscription to create, owned by the caller (and a group of theirs, if named). Its
/// serde form is the body of `POST /api/v1/subscriptions` (and the `subscription` of a
/// preview), so both read it the same way.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    pub kind: String,
    pub title: String,
    #[serde(default = "empty_object")]
    pub params: Value,
    /// A group the caller belongs to; every member then sees and manages it.
    pub group: Option<String>,
    #[serde(default)]
    pub latching: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The owner's policy to notify with; `default` when absent.
    pub policy: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn yes() -> bool {
    true
}

/// Changes to a subscription; `None` leaves a field as it is.
#[derive(Default)]
pub struct SubscriptionChanges {
    pub title: Option<String>,
    pub params: Option<Value>,
    pub latching: Option<bool>,
    pub enabled: Option<bool>,
    /// A policy name, or "" to go back to `default`.
    pub policy: Option<String>,
}

/// A subscription the caller may see; anything else is "not found".
pub async fn visible(
    services: &Services,
    principal: &Principal,
    id: &str,
) -> ServiceResult<Subscription> {
    require(principal, Scope::User)?;
    match services.store.subscription(id).await? {
        Some(s) if principal.can_see(Some(&s.owner_user), s.owner_group.as_deref()) => Ok(s),
        _ => Err(ServiceError::NotFound("subscription")),
    }
}

/// The subscriptions the caller may see: every one for an admin, else their own and their
/// groups'.
pub async fn list(services: &Services, principal: &Principal) -> ServiceResult<Vec<Subscription>> {
    require(principal, Scope::User)?;
    let viewer = (!principal.is_admin()).then(|| principal.viewer());
    Ok(services.store.list_subscriptions(viewer.as_ref()).await?)
}

pub async fn create(
    services: &Services,
    principal: &Principal,
    request: NewSubscription,
) -> ServiceResult<Subscription> {
    let owner_group = validate_new(services, principal, &request).await?;
    let now = services.clock.now();
    let subscription = Subscription {
        id: tellify_model::new_id(),
        kind: request.kind,
        title: request.title.trim().to_string(),
        params: request.params,
        owner_user: principal.user.id.clone(),
        owner_group,
        enabled: request.enabled,
        latching: request.latching,
        policy: request.policy,
        created: now,
        updated: now,
        health: None,
        filter_errors: None,
    };
    insert(services, subscription).await
}

/// Every check `create` makes, with every failure at once; on success the id of the
/// group that will own it, if one was named. The preview ([`super::preview`]) calls it
/// too, so a form shows the same errors whichever button was pressed.
pub(super) async fn validate_new(
    services: &Services,
    principal: &Principal,
    request: &NewSubscription,
) -> ServiceResult<Option<String>> {
    require(principal, Scope::User)?;
    let mut errors = Vec::new();
    check_title(&request.title, &mut errors);
    if let Some(policy) = &request.policy {
        if check_name(policy, "policy", &SETTING_NAME, &mut errors) {
            check_policy_exists(services, &principal.user.id, policy, &mut errors).await?;
        }
    }
    if let Err(found) = services.registry.build(&request.kind, &request.params) {
        errors.extend(found);
    }
    check_filter_fits_its_type(services, &request.params, &mut errors);
    check_outbound_url(services, &request.kind, &request.params, &mut errors);
    let owner_group = owning_group(
        services,
        principal,
        request.group.as_deref(),
        "group",
        &mut errors,
    )
    .await?;
    ServiceError::check(errors)?;
    Ok(owner_group)
}

pub async fn update(
    services: &Services,
    principal: &Principal,
    id: &str,
    changes: SubscriptionChanges,
) -> ServiceResult<Subscription> {
    let mut subscription = visible(services, principal, id).await?;
    let mut errors = Vec::new();
    if let Some(title) = &changes.title {
        check_title(title, &mut errors);
        subscription.title = title.trim().to_string();
    }
    if let Some(params) = changes.params {
        if let Err(found) = services.registry.build(&subscription.kind, &params) {
            errors.extend(found);
        }
        if params != subscription.params {
            // New parameters deserve a fresh start, and the old filter's failures go too.
            subscription.health = None;
            subscription.filter_errors = None;
        }
        check_filter_fits_its_type(services, &params, &mut errors);
        check_outbound_url(services, &subscription.kind, &params, &mut errors);
        subscription.params = params;
    }
    if let Some(policy) = &changes.policy {
        if policy.is_empty() {
            subscription.policy = None;
        } else {
            if check_name(policy, "policy", &SETTING_NAME, &mut errors) {
                let owner = subscription.owner_user.clone();
                check_policy_exists(services, &owner, policy, &mut errors).await?;
            }
            subscription.policy = Some(policy.clone());
        }
    }
    ServiceError::check(errors)?;
    if let Some(latching) = changes.latching {
        subscription.latching = latching;
    }
    if let Some(enabled) = changes.enabled {
        if enabled && !subscription.enabled {
            subscription.health = None;
        }
        subscription.enabled = enabled;
    }
    save(services, subscription).await
}

/// A subscription names a policy of its owner's: one they do not have would be silently
/// replaced by `default` at every notification, so it is refused, with the names they have.
/// `default` itself is always accepted (it is what an unnamed policy means).
pub(super) async fn check_policy_exists(
    services: &Services,
    owner_id: &str,
    name: &str,
    errors: &mut Vec<ParamError>,
) -> ServiceResult<()> {
    if name == "default" || services.store.policy(owner_id, name).await?.is_some() {
        return Ok(());
    }
    let names: Vec<String> = services
        .store
        .list_policies(owner_id)
        .await?
        .into_iter()
        .map(|policy| format!("`{}`", policy.name))
        .collect();
    let have = if names.is_empty() {
        "there are none yet".to_string()
    } else {
        format!("there are {}", names.join(", "))
    };
    errors.push(ParamError::new(
        "policy",
        format!(
            "the owner has no policy named `{name}` ({have}); create it first with \
             PUT /api/v1/policies/{name} (`tellify policies set {name} ...`)"
        ),
    ));
    Ok(())
}

/// Switches a subscription on or off. Switching it back on is the owner saying "try
/// again": its failure record is cleared.
pub async fn set_enabled(
    services: &Services,
    principal: &Principal,
    id: &str,
    enabled: bool,
) -> ServiceResult<Subscription> {
    let mut subscription = visible(services, principal, id).await?;
    if enabled && !subscription.enabled {
        subscription.health = None;
    }
    subscription.enabled = enabled;
    save(services, subscription).await
}

pub async fn delete(services: &Services, principal: &Principal, id: &str) -> ServiceResult<()> {
    let subscription = visible(services, principal, id).await?;
    services.store.delete_subscription(&subscription.id).await?;
    caches::subscription_gone(services, &subscription.id).await;
    Ok(())
}

/// Writes a changed subscription (stamped now) and tells the caches.
pub(super) async fn save(
    services: &Services,
    mut subscription: Subscription,
) -> ServiceResult<Subscription> {
    subscription.updated = services.clock.now();
    services
        .store
        .update_subscription(subscription.clone())
        .await?;
    caches::subscription_saved(services, &subscription).await;
    Ok(subscription)
}

/// Inserts a new subscription and tells the caches.
pub(super) async fn insert(
    services: &Services,
    subscription: Subscription,
) -> ServiceResult<Subscription> {
    services
        .store
        .insert_subscription(subscription.clone())
        .await?;
    caches::subscription_saved(services, &subscription).await;
    Ok(subscription)
}

fn check_title(title: &str, errors: &mut Vec<ParamError>) {
    if title.trim().is_empty() {
        errors.push(ParamError::new("title", "must not be empty"));
    } else if title.chars().count() > MAX_TITLE {
        errors.push(ParamError::new(
            "title",
            format!("must be at most {MAX_TITLE} characters"),
        ));
    }
}

/// A filter bound to a registered event type (`event.type == "disk" && ...`) only ever
/// sees events that passed the type's schema: a comparison the schema makes impossible
/// (`usage > "90"` when `usage` is a number) or a field a closed schema does not allow
/// would silently never match, so each is refused with the reason. Only certain conflicts
/// count (see [`tellify_engine::filter::schema`]); a filter that does not compile was
/// reported already, and an unregistered type or one without a schema is not checked.
fn check_filter_fits_its_type(services: &Services, params: &Value, errors: &mut Vec<ParamError>) {
    if errors.iter().any(|error| error.path == "params.filter") {
        return;
    }
    let Some(source) = params.get("filter").and_then(Value::as_str) else {
        return;
    };
    let Ok(filter) = Filter::compile(source) else {
        return;
    };
    let Some(type_name) = filter.event_type() else {
        return;
    };
    let Some(registered) = services.event_types.get(type_name) else {
        return;
    };
    let Some(schema) = &registered.record.schema else {
        return;
    };
    let types = FieldTypes::from_schema(type_name, schema);
    for conflict in filter.schema_conflicts(&types) {
        errors.push(ParamError::new("params.filter", conflict));
    }
}

/// A `metric` subscription's backend URL must pass the outbound guard: the server polls it
/// by itself. The engine checks its syntax (reported as `params.url` already, then not
/// again); a name is judged when it is resolved, at every poll.
fn check_outbound_url(
    services: &Services,
    kind: &str,
    params: &Value,
    errors: &mut Vec<ParamError>,
) {
    if kind != "metric" || errors.iter().any(|error| error.path == "params.url") {
        return;
    }
    let Some(url) = params.get("url").and_then(Value::as_str) else {
        return;
    };
    if let Err(problem) = services.outbound.check_url_text(url.trim()) {
        errors.push(ParamError::new("params.url", problem));
    }
}
