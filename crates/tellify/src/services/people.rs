//! Users, groups, memberships and tokens: who may change them, what a valid one is, the
//! write, the audit record where one is kept, and the caches told.

use tellify_engine::ParamError;
use tellify_store::{Group, OffboardCounts, Token, User};

use super::caches;
use super::error::{require, ServiceError, ServiceResult};
use super::validate::{check_name, PERSON_NAME};
use super::Services;
use crate::auth::{new_token, parse_token_lifetime, Principal, Scope};

/// The users the caller may see: everyone for an admin, else themselves.
pub async fn list_users(services: &Services, principal: &Principal) -> ServiceResult<Vec<User>> {
    require(principal, Scope::User)?;
    if principal.is_admin() {
        return Ok(services.store.list_users().await?);
    }
    Ok(vec![principal.user.clone()])
}

/// A user by name: admins see anyone, others only themselves.
pub async fn user(services: &Services, principal: &Principal, name: &str) -> ServiceResult<User> {
    require(principal, Scope::User)?;
    if !principal.is_admin() && principal.user.name != name {
        return Err(ServiceError::NotFound("user"));
    }
    services
        .store
        .user_by_name(name)
        .await?
        .ok_or(ServiceError::NotFound("user"))
}

/// A user to create (admins only).
pub struct NewUser {
    pub name: String,
    pub email: Option<String>,
    /// An IANA zone; UTC when absent.
    pub timezone: Option<String>,
    pub admin: bool,
}

pub async fn create_user(
    services: &Services,
    principal: &Principal,
    request: NewUser,
) -> ServiceResult<User> {
    require(principal, Scope::Admin)?;
    let mut errors = Vec::new();
    check_name(&request.name, "name", &PERSON_NAME, &mut errors);
    if let Some(email) = &request.email {
        let parts: Vec<&str> = email.split('@').collect();
        if parts.len() != 2 || parts[0].is_empty() || !parts[1].contains('.') {
            errors.push(ParamError::new(
                "email",
                format!("`{email}` is not an email address"),
            ));
        }
    }
    let timezone = request.timezone.unwrap_or_else(|| "UTC".to_string());
    if jiff::tz::TimeZone::get(&timezone).is_err() {
        errors.push(ParamError::new(
            "timezone",
            format!("`{timezone}` is not an IANA time zone such as Europe/Berlin"),
        ));
    }
    ServiceError::check(errors)?;
    let user = User {
        id: tellify_model::new_id(),
        name: request.name,
        email: request.email,
        timezone,
        admin: request.admin,
        created: services.clock.now(),
    };
    services.store.create_user(user.clone()).await?;
    caches::user_settings_changed(services, &user.id).await?;
    Ok(user)
}

/// Offboards a user: everything of theirs goes in one transaction, with an audit record.
/// When this returns, nothing more is sent to them: sends already under way have ended.
/// A dry run only counts. Returns the user and what went (or would go).
pub async fn offboard_user(
    services: &Services,
    principal: &Principal,
    name: &str,
    dry_run: bool,
) -> ServiceResult<(User, OffboardCounts)> {
    require(principal, Scope::Admin)?;
    let user = services
        .store
        .user_by_name(name)
        .await?
        .ok_or(ServiceError::NotFound("user"))?;
    if user.id == principal.user.id {
        return Err(ServiceError::Conflict(
            "you cannot offboard yourself; ask another admin".to_string(),
        ));
    }
    let subscriptions: Vec<String> = services
        .store
        .list_subscriptions(None)
        .await?
        .into_iter()
        .filter(|s| s.owner_user == user.id)
        .map(|s| s.id)
        .collect();
    let removed = services
        .store
        .offboard_user(
            &user.id,
            dry_run,
            &principal.user.name,
            services.clock.now(),
        )
        .await?;
    if !dry_run {
        caches::subscriptions_reread(services, &subscriptions);
        caches::people_changed(services).await?;
        services.notifier.quiesce_user(&user.id).await;
        tracing::info!(user = %user.name, actor = %principal.user.name, "user offboarded");
    }
    Ok((user, removed))
}

/// A group to create (admins only), with its first members by user name.
pub struct NewGroup {
    pub name: String,
    pub members: Vec<String>,
}

pub async fn create_group(
    services: &Services,
    principal: &Principal,
    request: NewGroup,
) -> ServiceResult<Group> {
    require(principal, Scope::Admin)?;
    let mut errors = Vec::new();
    check_name(&request.name, "name", &PERSON_NAME, &mut errors);
    let mut member_ids = Vec::new();
    for (index, member) in request.members.iter().enumerate() {
        match services.store.user_by_name(member).await? {
            Some(user) => member_ids.push(user.id),
            None => errors.push(ParamError::new(
                format!("members[{index}]"),
                format!("no user named `{member}`"),
            )),
        }
    }
    ServiceError::check(errors)?;
    let group = Group {
        id: tellify_model::new_id(),
        name: request.name.clone(),
        members: Vec::new(),
        created: services.clock.now(),
    };
    services.store.create_group(group).await?;
    let created = group_named(services, &request.name).await?;
    for user_id in member_ids {
        services.store.add_member(&created.id, &user_id).await?;
    }
    caches::people_changed(services).await?;
    group_named(services, &request.name).await
}

/// The groups the caller may see: every group for an admin, else the groups they are in.
pub async fn list_groups(services: &Services, principal: &Principal) -> ServiceResult<Vec<Group>> {
    require(principal, Scope::User)?;
    let mut groups = services.store.list_groups().await?;
    if !principal.is_admin() {
        groups.retain(|group| principal.group_ids.contains(&group.id));
    }
    Ok(groups)
}

/// A group the caller may see: admins see every group, others the groups they are in.
pub async fn visible_group(
    services: &Services,
    principal: &Principal,
    name: &str,
) -> ServiceResult<Group> {
    require(principal, Scope::User)?;
    match services.store.group_by_name(name).await? {
        Some(group) if principal.is_admin() || principal.group_ids.contains(&group.id) => Ok(group),
        _ => Err(ServiceError::NotFound("group")),
    }
}

/// The group a subscription is to belong to: one the caller is a member of (admins: any).
/// A failure is reported at `path` in `errors`; `None` then, as for no group at all.
pub async fn owning_group(
    services: &Services,
    principal: &Principal,
    name: Option<&str>,
    path: &str,
    errors: &mut Vec<ParamError>,
) -> ServiceResult<Option<String>> {
    let Some(name) = name else {
        return Ok(None);
    };
    match services.store.group_by_name(name).await? {
        Some(group) if principal.is_admin() || principal.group_ids.contains(&group.id) => {
            Ok(Some(group.id))
        }
        _ => {
            errors.push(ParamError::new(
                path,
                format!("you are not a member of a group named `{name}`"),
            ));
            Ok(None)
        }
    }
}

/// Adds the user named `user` to the group `group` (admins only).
pub async fn add_member(
    services: &Services,
    principal: &Principal,
    group: &str,
    user: &str,
) -> ServiceResult<Group> {
    require(principal, Scope::Admin)?;
    let found = group_named(services, group).await?;
    let member = services
        .store
        .user_by_name(user)
        .await?
        .ok_or_else(|| ServiceError::field("user", format!("no user named `{user}`")))?;
    services.store.add_member(&found.id, &member.id).await?;
    caches::people_changed(services).await?;
    group_named(services, group).await
}

/// Takes the user named `user` out of the group `group` (admins only); the group's
/// subscriptions they created stay with the group, and the worker rereads them.
pub async fn remove_member(
    services: &Services,
    principal: &Principal,
    group: &str,
    user: &str,
) -> ServiceResult<()> {
    require(principal, Scope::Admin)?;
    let found = group_named(services, group).await?;
    let member = services
        .store
        .user_by_name(user)
        .await?
        .ok_or(ServiceError::NotFound("user"))?;
    let leaving: Vec<String> = services
        .store
        .list_subscriptions(None)
        .await?
        .into_iter()
        .filter(|s| s.owner_user == member.id && s.owner_group.as_deref() == Some(&found.id))
        .map(|s| s.id)
        .collect();
    if !services.store.remove_member(&found.id, &member.id).await? {
        return Err(ServiceError::NotFound("membership"));
    }
    caches::subscriptions_reread(services, &leaving);
    caches::people_changed(services).await?;
    Ok(())
}

async fn group_named(services: &Services, name: &str) -> ServiceResult<Group> {
    services
        .store
        .group_by_name(name)
        .await?
        .ok_or(ServiceError::NotFound("group"))
}

/// A token to mint.
pub struct NewToken {
    pub name: String,
    /// `user` when absent.
    pub scopes: Option<Vec<String>>,
    /// Admins only: mint the token for this user.
    pub user: Option<String>,
    /// How long the token works, from now: a duration from `1m` to `1825d`. When absent
    /// the token never expires, unless the token creating it does: then it ends with it.
    pub expires: Option<String>,
}

/// A minted token: the record, and the secret, which exists only here.
pub struct MintedToken {
    pub token: Token,
    pub secret: String,
    pub owner: User,
}

pub async fn create_token(
    services: &Services,
    principal: &Principal,
    request: NewToken,
) -> ServiceResult<MintedToken> {
    require(principal, Scope::User)?;
    let mut errors = Vec::new();
    if request.name.trim().is_empty() || request.name.len() > 100 {
        errors.push(ParamError::new("name", "must be 1 to 100 characters"));
    }
    let scopes = request.scopes.unwrap_or_else(|| vec!["user".to_string()]);
    if scopes.is_empty() {
        errors.push(ParamError::new(
            "scopes",
            "give at least one of ingest, user, admin",
        ));
    }
    let owner = match &request.user {
        None => principal.user.clone(),
        Some(name) if principal.is_admin() => match services.store.user_by_name(name).await? {
            Some(user) => user,
            None => {
                errors.push(ParamError::new("user", format!("no user named `{name}`")));
                principal.user.clone()
            }
        },
        Some(name) if *name == principal.user.name => principal.user.clone(),
        Some(_) => {
            return Err(ServiceError::Forbidden(
                "only admins can mint tokens for someone else".to_string(),
            ))
        }
    };
    for (index, scope) in scopes.iter().enumerate() {
        match Scope::parse(scope) {
            None => errors.push(ParamError::new(
                format!("scopes[{index}]"),
                format!("unknown scope `{scope}` (use ingest, user or admin)"),
            )),
            Some(Scope::Admin) if !owner.admin => errors.push(ParamError::new(
                format!("scopes[{index}]"),
                format!("`{}` is not an admin", owner.name),
            )),
            Some(wanted) if !principal.has(wanted) => errors.push(ParamError::new(
                format!("scopes[{index}]"),
                "a token cannot grant more than the token that creates it",
            )),
            _ => {}
        }
    }
    let now = services.clock.now();
    let mut expires = None;
    if let Some(text) = &request.expires {
        match parse_token_lifetime(text).and_then(|lifetime| {
            now.checked_add(lifetime)
                .map_err(|_| "is past the end of time".to_string())
        }) {
            Ok(end) => expires = Some(end),
            Err(message) => errors.push(ParamError::new("expires", message)),
        }
    }
    // A token never outlives the token that creates it, or expiry would be one call away
    // from undone: without `expires` the new token inherits the creator's end.
    if let Some(limit) = principal.expires {
        match expires {
            None if request.expires.is_none() => expires = Some(limit),
            Some(end) if end > limit => errors.push(ParamError::new(
                "expires",
                format!("must end by {limit}, when the token creating this one expires"),
            )),
            _ => {}
        }
    }
    ServiceError::check(errors)?;
    let (secret, hash) = new_token();
    let token = Token {
        id: tellify_model::new_id(),
        user_id: owner.id.clone(),
        name: request.name.trim().to_string(),
        scopes,
        hash,
        created: now,
        expires,
    };
    services.store.create_token(token.clone()).await?;
    Ok(MintedToken {
        token,
        secret,
        owner,
    })
}

/// Tokens (never their secrets): the caller's own by default or when `user` is their
/// name; admins may name another user, or `*` for everyone's.
pub async fn list_tokens(
    services: &Services,
    principal: &Principal,
    user: Option<&str>,
) -> ServiceResult<Vec<Token>> {
    require(principal, Scope::User)?;
    let own = user == Some(principal.user.name.as_str());
    let tokens = match user {
        None => services.store.list_tokens(Some(&principal.user.id)).await?,
        Some(_) if own => services.store.list_tokens(Some(&principal.user.id)).await?,
        Some(_) if !principal.is_admin() => {
            return Err(ServiceError::Forbidden(
                "only admins can list others' tokens".to_string(),
            ))
        }
        Some("*") => services.store.list_tokens(None).await?,
        Some(name) => {
            let found = services
                .store
                .user_by_name(name)
                .await?
                .ok_or(ServiceError::NotFound("user"))?;
            services.store.list_tokens(Some(&found.id)).await?
        }
    };
    Ok(tokens)
}

/// Revokes a token of the caller's (admins: anyone's); it stops working at once.
pub async fn revoke_token(
    services: &Services,
    principal: &Principal,
    id: &str,
) -> ServiceResult<()> {
    require(principal, Scope::User)?;
    match services.store.token(id).await? {
        Some(token) if principal.is_admin() || token.user_id == principal.user.id => {
            services.store.delete_token(&token.id).await?;
            caches::token_revoked(services);
            Ok(())
        }
        _ => Err(ServiceError::NotFound("token")),
    }
}
