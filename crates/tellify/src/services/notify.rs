//! A person's notification settings: contact points, policies and silences. Everyone
//! manages their own; an admin may act for another user. Each write refreshes the
//! planner's copy of that user before it returns, so the next alert is planned with it.

use std::collections::HashSet;

use jiff::Timestamp;
use serde_json::Value;
use tellify_engine::filter::Filter;
use tellify_engine::policy::Policy;
use tellify_engine::ParamError;
use tellify_store::{
    ContactPoint, Delivery, DeliveryQuery, DeliveryRecord, DeliveryStatus, PolicyRecord, Silence,
    StoreError, User,
};

use super::caches;
use super::error::{require, ServiceError, ServiceResult};
use super::validate::{check_name, parse_future, SETTING_NAME};
use super::Services;
use crate::auth::{Principal, Scope};
use crate::channels::ContactKind;

/// The user a call is about: the caller, or for an admin the user named `wanted`.
/// Anyone else asking for another user is refused; an unknown user is "not found".
pub async fn subject(
    services: &Services,
    principal: &Principal,
    wanted: Option<&str>,
) -> ServiceResult<User> {
    require(principal, Scope::User)?;
    let Some(name) = wanted else {
        return Ok(principal.user.clone());
    };
    if name == principal.user.name {
        return Ok(principal.user.clone());
    }
    if !principal.is_admin() {
        return Err(ServiceError::Forbidden(
            "only an admin may manage another user's notifications".to_string(),
        ));
    }
    services
        .store
        .user_by_name(name)
        .await?
        .ok_or(ServiceError::NotFound("user"))
}

// ---- contact points ----

/// A contact point to create.
pub struct NewContactPoint {
    pub name: String,
    /// `email`, `sms`, `webhook`, `chat` or `engine`.
    pub kind: String,
    pub address: String,
    /// Webhooks: the HMAC signing secret; one is generated when absent.
    pub secret: Option<String>,
}

/// A created contact point, and whether its secret was generated (and so must be shown
/// to the caller this once).
pub struct CreatedContactPoint {
    pub point: ContactPoint,
    pub generated_secret: bool,
}

pub async fn create_contact_point(
    services: &Services,
    principal: &Principal,
    for_user: Option<&str>,
    request: NewContactPoint,
) -> ServiceResult<CreatedContactPoint> {
    let user = subject(services, principal, for_user).await?;
    let mut errors = Vec::new();
    check_name(&request.name, "name", &SETTING_NAME, &mut errors);
    let kind: Option<ContactKind> = match request.kind.parse() {
        Ok(kind) => Some(kind),
        Err(error) => {
            errors.push(ParamError::new("kind", error));
            None
        }
    };
    if let Some(kind) = kind {
        if let Err(error) = services
            .channels
            .check_address(kind, request.address.trim())
        {
            errors.push(ParamError::new("address", error));
        }
    }
    if let Some(secret) = &request.secret {
        if kind != Some(ContactKind::Webhook) {
            errors.push(ParamError::new("secret", "only webhooks take a secret"));
        } else if secret.len() < 16 {
            errors.push(ParamError::new("secret", "must be at least 16 characters"));
        }
    }
    ServiceError::check(errors)?;
    let generated_secret = kind == Some(ContactKind::Webhook) && request.secret.is_none();
    let secret = match (kind, request.secret) {
        (Some(ContactKind::Webhook), Some(secret)) => Some(secret),
        (Some(ContactKind::Webhook), None) => {
            Some(crate::auth::new_token().0.replacen("tfy_", "whsec_", 1))
        }
        _ => None,
    };
    let point = ContactPoint {
        id: tellify_model::new_id(),
        user_id: user.id.clone(),
        name: request.name,
        kind: request.kind,
        address: request.address.trim().to_string(),
        secret,
        created: services.clock.now(),
    };
    services
        .store
        .create_contact_point(point.clone())
        .await
        .map_err(|error| match error {
            StoreError::Conflict(_) => ServiceError::Conflict(format!(
                "a contact point named `{}` already exists",
                point.name
            )),
            other => other.into(),
        })?;
    caches::user_settings_changed(services, &user.id).await?;
    Ok(CreatedContactPoint {
        point,
        generated_secret,
    })
}

/// One of the user's contact points.
pub async fn contact_point(
    services: &Services,
    principal: &Principal,
    for_user: Option<&str>,
    name: &str,
) -> ServiceResult<ContactPoint> {
    let user = subject(services, principal, for_user).await?;
    services
        .store
        .contact_point(&user.id, name)
        .await?
        .ok_or(ServiceError::NotFound("contact point"))
}

/// Deletes a contact point; deliveries to it that are not yet sent go with it.
/// Deletes the user's contact point `name`. One that policies still name is refused with
/// their names (a policy would otherwise point at nothing, and its alerts go nowhere
/// without a word), unless `force`: then it is taken out of those policies first — a rule
/// left without contact points goes, and a policy left without rules is deleted.
pub async fn delete_contact_point(
    services: &Services,
    principal: &Principal,
    for_user: Option<&str>,
    name: &str,
    force: bool,
) -> ServiceResult<()> {
    let user = subject(services, principal, for_user).await?;
    if services
        .store
        .contact_point(&user.id, name)
        .await?
        .is_none()
    {
        return Err(ServiceError::NotFound("contact point"));
    }
    let using: Vec<PolicyRecord> = services
        .store
        .list_policies(&user.id)
        .await?
        .into_iter()
        .filter(|record| {
            record
                .policy
                .contact_point_names()
                .iter()
                .any(|n| n == name)
        })
        .collect();
    if !using.is_empty() && !force {
        let names: Vec<String> = using.iter().map(|r| format!("`{}`", r.name)).collect();
        return Err(ServiceError::Conflict(format!(
            "contact point `{name}` is used by the policies {}; take it out of them first, \
             or delete with force (`?force=true`, `tellify contacts delete {name} --force`) to \
             remove it from them",
            names.join(", ")
        )));
    }
    for mut record in using {
        for rule in &mut record.policy.rules {
            rule.contact_points.retain(|point| point != name);
        }
        record
            .policy
            .rules
            .retain(|rule| !rule.contact_points.is_empty());
        if record.policy.rules.is_empty() {
            services.store.delete_policy(&user.id, &record.name).await?;
        } else {
            record.updated = services.clock.now();
            services.store.put_policy(record).await?;
        }
    }
    let deleted = services
        .store
        .delete_contact_point(&user.id, name, services.clock.now())
        .await?;
    caches::user_settings_changed(services, &user.id).await?;
    if !deleted {
        return Err(ServiceError::NotFound("contact point"));
    }
    Ok(())
}

// ---- policies ----

/// Creates or replaces the user's policy `name` from its JSON shape: parsed once here
/// against the operator's limits, every contact point it names checked to exist. Returns
/// the stored record and whether it is new.
pub async fn put_policy(
    services: &Services,
    principal: &Principal,
    for_user: Option<&str>,
    name: &str,
    body: &Value,
) -> ServiceResult<(PolicyRecord, bool)> {
    let user = subject(services, principal, for_user).await?;
    let mut errors = Vec::new();
    check_name(name, "name", &SETTING_NAME, &mut errors);
    let limits = services.settings.notify.policy_limits().unwrap_or_default();
    let policy = match Policy::parse_with(body, &limits) {
        Ok(policy) => Some(policy),
        Err(found) => {
            errors.extend(found);
            None
        }
    };
    if let Some(policy) = &policy {
        let known: HashSet<String> = services
            .store
            .list_contact_points(&user.id)
            .await?
            .into_iter()
            .map(|point| point.name)
            .collect();
        for (rule_index, rule) in policy.rules.iter().enumerate() {
            for (point_index, point) in rule.contact_points.iter().enumerate() {
                if !known.contains(point) {
                    errors.push(ParamError::new(
                        format!("rules[{rule_index}].contact_points[{point_index}]"),
                        format!("you have no contact point named `{point}`"),
                    ));
                }
            }
        }
    }
    let Some(policy) = policy.filter(|_| errors.is_empty()) else {
        return Err(ServiceError::Invalid(errors));
    };
    let record = PolicyRecord {
        user_id: user.id.clone(),
        name: name.to_string(),
        policy,
        updated: services.clock.now(),
    };
    let created = services.store.put_policy(record.clone()).await?;
    caches::user_settings_changed(services, &user.id).await?;
    Ok((record, created))
}

pub async fn delete_policy(
    services: &Services,
    principal: &Principal,
    for_user: Option<&str>,
    name: &str,
) -> ServiceResult<()> {
    let user = subject(services, principal, for_user).await?;
    if !services.store.delete_policy(&user.id, name).await? {
        return Err(ServiceError::NotFound("policy"));
    }
    caches::user_settings_changed(services, &user.id).await?;
    Ok(())
}

// ---- silences ----

/// A silence as a person writes it: times as RFC 3339 or a duration from now.
pub struct NewSilence {
    /// A CEL expression over the alert.
    pub filter: String,
    /// Now when absent.
    pub starts: Option<String>,
    pub ends: String,
    pub comment: Option<String>,
}

pub async fn create_silence(
    services: &Services,
    principal: &Principal,
    for_user: Option<&str>,
    request: NewSilence,
) -> ServiceResult<Silence> {
    let user = subject(services, principal, for_user).await?;
    let now = services.clock.now();
    let mut errors = Vec::new();
    if let Err(error) = Filter::compile(&request.filter) {
        errors.push(ParamError::new("filter", error.to_string()));
    }
    let starts = match &request.starts {
        Some(text) => match parse_future("starts", text, now) {
            Ok(time) => Some(time),
            Err(error) => {
                errors.push(ParamError::new("starts", error));
                None
            }
        },
        None => Some(now),
    };
    let ends = match parse_future("ends", &request.ends, now) {
        Ok(time) => Some(time),
        Err(error) => {
            errors.push(ParamError::new("ends", error));
            None
        }
    };
    if let (Some(starts), Some(ends)) = (starts, ends) {
        if ends <= starts {
            errors.push(ParamError::new("ends", "must be after `starts`"));
        }
    }
    let (Some(starts), Some(ends)) = (starts, ends) else {
        return Err(ServiceError::Invalid(errors));
    };
    ServiceError::check(errors)?;
    let silence = Silence {
        id: tellify_model::new_id(),
        user_id: user.id.clone(),
        filter: request.filter,
        starts,
        ends,
        comment: request.comment,
        created: now,
    };
    services.store.create_silence(silence.clone()).await?;
    caches::user_settings_changed(services, &user.id).await?;
    Ok(silence)
}

/// A silence whose filter and times a face has already worked out (the Alertmanager API
/// turns matchers into CEL): written for the caller, replacing their silence `replaces`
/// when given (a missing one is "not found").
pub struct SilenceWrite {
    pub replaces: Option<String>,
    pub filter: String,
    pub starts: Timestamp,
    pub ends: Timestamp,
    pub comment: Option<String>,
}

pub async fn write_silence(
    services: &Services,
    principal: &Principal,
    request: SilenceWrite,
) -> ServiceResult<Silence> {
    let user = subject(services, principal, None).await?;
    let id = match &request.replaces {
        Some(id) => {
            if !services.store.delete_silence(&user.id, id).await? {
                return Err(ServiceError::NotFound("silence"));
            }
            id.clone()
        }
        None => tellify_model::new_id(),
    };
    let silence = Silence {
        id,
        user_id: user.id.clone(),
        filter: request.filter,
        starts: request.starts,
        ends: request.ends,
        comment: request.comment,
        created: services.clock.now(),
    };
    services.store.create_silence(silence.clone()).await?;
    caches::user_settings_changed(services, &user.id).await?;
    Ok(silence)
}

pub async fn delete_silence(
    services: &Services,
    principal: &Principal,
    for_user: Option<&str>,
    id: &str,
) -> ServiceResult<()> {
    let user = subject(services, principal, for_user).await?;
    if !services.store.delete_silence(&user.id, id).await? {
        return Err(ServiceError::NotFound("silence"));
    }
    caches::user_settings_changed(services, &user.id).await?;
    Ok(())
}

// ---- reads, "send me a test" and deliveries ----

/// The user's contact points, by name.
pub async fn list_contact_points(
    services: &Services,
    principal: &Principal,
    for_user: Option<&str>,
) -> ServiceResult<Vec<ContactPoint>> {
    let user = subject(services, principal, for_user).await?;
    Ok(services.store.list_contact_points(&user.id).await?)
}

/// Why nothing is sent to `point` now (its channel is not configured on this server), if so.
pub fn contact_point_warning(services: &Services, point: &ContactPoint) -> Option<String> {
    point
        .kind
        .parse::<ContactKind>()
        .ok()
        .and_then(|kind| services.channels.warning(kind))
}

/// The answer of "send me a test": what the provider said, or why it failed.
pub struct TestOutcome {
    pub contact_point: String,
    pub ok: bool,
    /// The provider's receipt (its status, an SMS provider's message id) when `ok`, else
    /// the channel's tellify-written error; never the body of what answered.
    pub answer: String,
}

/// Sends a test message to the user's contact point `name` at once, outside the outbox.
/// A failed send is an outcome (`ok: false`), not an error: the caller shows it.
pub async fn test_contact_point(
    services: &Services,
    principal: &Principal,
    for_user: Option<&str>,
    name: &str,
) -> ServiceResult<TestOutcome> {
    let point = contact_point(services, principal, for_user, name).await?;
    let link = services.settings.public_url.as_deref();
    let (ok, answer) = match crate::notify::send_test(&services.channels, &point, link).await {
        Ok(answer) => (true, answer),
        Err(error) => (false, error.to_string()),
    };
    Ok(TestOutcome {
        contact_point: point.name,
        ok,
        answer,
    })
}

/// The user's policies, by name.
pub async fn list_policies(
    services: &Services,
    principal: &Principal,
    for_user: Option<&str>,
) -> ServiceResult<Vec<PolicyRecord>> {
    let user = subject(services, principal, for_user).await?;
    Ok(services.store.list_policies(&user.id).await?)
}

/// One of the user's policies.
pub async fn policy(
    services: &Services,
    principal: &Principal,
    for_user: Option<&str>,
    name: &str,
) -> ServiceResult<PolicyRecord> {
    let user = subject(services, principal, for_user).await?;
    services
        .store
        .policy(&user.id, name)
        .await?
        .ok_or(ServiceError::NotFound("policy"))
}

/// The user's silences.
pub async fn list_silences(
    services: &Services,
    principal: &Principal,
    for_user: Option<&str>,
) -> ServiceResult<Vec<Silence>> {
    let user = subject(services, principal, for_user).await?;
    Ok(services.store.list_silences(&user.id).await?)
}

/// Which of the user's deliveries to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub alert: Option<String>,
    /// Only deliveries older than this one (the previous page's last id).
    pub cursor: Option<String>,
    pub limit: usize,
}

/// A page of the user's deliveries and the next page's cursor.
pub async fn list_deliveries(
    services: &Services,
    principal: &Principal,
    for_user: Option<&str>,
    filter: DeliveryFilter,
) -> ServiceResult<(Vec<Delivery>, Option<String>)> {
    let user = subject(services, principal, for_user).await?;
    let limit = filter.limit.max(1);
    let items = services
        .store
        .list_deliveries(DeliveryQuery {
            user_id: Some(user.id.clone()),
            status: filter.status,
            alert_id: filter.alert,
            before_id: filter.cursor,
            limit,
        })
        .await?;
    let next = (items.len() == limit)
        .then(|| items.last().map(|delivery| delivery.id.clone()))
        .flatten();
    Ok((items, next))
}

/// One delivery with its attempts and the alert transitions it carries: the caller's own,
/// or anyone's for an admin; anything else is "not found", like an unknown id.
pub async fn delivery(
    services: &Services,
    principal: &Principal,
    id: &str,
) -> ServiceResult<DeliveryRecord> {
    require(principal, Scope::User)?;
    let Some(record) = services.store.delivery(id).await? else {
        return Err(ServiceError::NotFound("delivery"));
    };
    if record.0.user_id != principal.user.id && !principal.is_admin() {
        return Err(ServiceError::NotFound("delivery"));
    }
    Ok(record)
}
