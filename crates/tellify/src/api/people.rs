//! Users, groups and tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tellify_engine::ParamError;
use tellify_store::{Group, Token, User};

use super::{ApiError, ApiResult, AppState, Auth, JsonBody, Page, QueryParams};
use crate::auth::{new_token, parse_token_lifetime, Scope};

fn check_name(name: &str, path: &str, errors: &mut Vec<ParamError>) {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !valid {
        errors.push(ParamError::new(
            path,
            "must be 1 to 64 characters of a-z, 0-9, '.', '_' or '-'",
        ));
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    name: String,
    email: Option<String>,
    timezone: Option<String>,
    #[serde(default)]
    admin: bool,
}

pub async fn create_user(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(request): JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    auth.require(Scope::Admin)?;
    let mut errors = Vec::new();
    check_name(&request.name, "name", &mut errors);
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
    if !errors.is_empty() {
        return Err(ApiError::params(&errors));
    }
    let user = User {
        id: tellify_model::new_id(),
        name: request.name,
        email: request.email,
        timezone,
        admin: request.admin,
        created: state.clock.now(),
    };
    state.store.create_user(user.clone()).await?;
    state.notifier.user_changed(&user.id).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

pub async fn list_users(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Page<User>>> {
    let principal = auth.require(Scope::User)?;
    let items = if principal.is_admin() {
        state.store.list_users().await?
    } else {
        vec![principal.user.clone()]
    };
    Ok(Json(Page { items, next: None }))
}

pub async fn me(auth: Auth) -> ApiResult<Json<Value>> {
    let principal = &auth.0;
    Ok(Json(json!({
        "user": principal.user,
        "scope": principal.scope.as_str(),
        "token_id": principal.token_id,
    })))
}

pub async fn get_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<User>> {
    let principal = auth.require(Scope::User)?;
    if !principal.is_admin() && principal.user.name != name {
        return Err(ApiError::not_found("user"));
    }
    let user = state
        .store
        .user_by_name(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(user))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OffboardParams {
    #[serde(default)]
    dry_run: bool,
}

#[derive(Serialize)]
pub struct OffboardReport {
    user: String,
    dry_run: bool,
    /// What went (or, in a dry run, would go), by kind.
    removed: tellify_store::OffboardCounts,
}

/// Offboards a user: everything of theirs goes in one transaction, with an audit record.
/// When this returns, nothing more is sent to them: sends already under way have ended.
pub async fn offboard_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    super::QueryParams(params): super::QueryParams<OffboardParams>,
) -> ApiResult<Json<OffboardReport>> {
    let principal = auth.require(Scope::Admin)?;
    let user = state
        .store
        .user_by_name(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    if user.id == principal.user.id {
        return Err(ApiError::conflict(
            "you cannot offboard yourself; ask another admin",
        ));
    }
    let subscriptions: Vec<String> = state
        .store
        .list_subscriptions(None)
        .await?
        .into_iter()
        .filter(|s| s.owner_user == user.id)
        .map(|s| s.id)
        .collect();
    let removed = state
        .store
        .offboard_user(
            &user.id,
            params.dry_run,
            &principal.user.name,
            state.clock.now(),
        )
        .await?;
    if !params.dry_run {
        state.auth.invalidate();
        for id in &subscriptions {
            state.worker.subscription_changed(id);
        }
        state.notifier.directory_changed().await?;
        state.notifier.quiesce_user(&user.id).await;
        tracing::info!(user = %user.name, actor = %principal.user.name, "user offboarded");
    }
    Ok(Json(OffboardReport {
        user: user.name,
        dry_run: params.dry_run,
        removed,
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    limit: Option<usize>,
}

pub async fn list_audit(
    State(state): State<AppState>,
    auth: Auth,
    super::QueryParams(params): super::QueryParams<AuditParams>,
) -> ApiResult<Json<Page<tellify_store::AuditRecord>>> {
    auth.require(Scope::Admin)?;
    let limit = super::clamp_limit(params.limit, 100, 1000);
    let items = state.store.list_audit(limit).await?;
    Ok(Json(Page { items, next: None }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    name: String,
    #[serde(default)]
    members: Vec<String>,
}

pub async fn create_group(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(request): JsonBody<CreateGroup>,
) -> ApiResult<(StatusCode, Json<Group>)> {
    auth.require(Scope::Admin)?;
    let mut errors = Vec::new();
    check_name(&request.name, "name", &mut errors);
    let mut member_ids = Vec::new();
    for (index, member) in request.members.iter().enumerate() {
        match state.store.user_by_name(member).await? {
            Some(user) => member_ids.push(user.id),
            None => errors.push(ParamError::new(
                format!("members[{index}]"),
                format!("no user named `{member}`"),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::params(&errors));
    }
    let group = Group {
        id: tellify_model::new_id(),
        name: request.name.clone(),
        members: Vec::new(),
        created: state.clock.now(),
    };
    state.store.create_group(group).await?;
    let created = state
        .store
        .group_by_name(&request.name)
        .await?
        .ok_or_else(|| ApiError::not_found("group"))?;
    for user_id in member_ids {
        state.store.add_member(&created.id, &user_id).await?;
    }
    state.auth.invalidate();
    state.notifier.directory_changed().await?;
    let created = state
        .store
        .group_by_name(&request.name)
        .await?
        .ok_or_else(|| ApiError::not_found("group"))?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn list_groups(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Page<Group>>> {
    let principal = auth.require(Scope::User)?;
    let mut items = state.store.list_groups().await?;
    if !principal.is_admin() {
        items.retain(|group| principal.group_ids.contains(&group.id));
    }
    Ok(Json(Page { items, next: None }))
}

async fn visible_group(state: &AppState, auth: &Auth, name: &str) -> ApiResult<Group> {
    let principal = auth.require(Scope::User)?;
    match state.store.group_by_name(name).await? {
        Some(group) if principal.is_admin() || principal.group_ids.contains(&group.id) => Ok(group),
        _ => Err(ApiError::not_found("group")),
    }
}

pub async fn get_group(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Group>> {
    Ok(Json(visible_group(&state, &auth, &name).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    user: String,
}

pub async fn add_member(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<AddMember>,
) -> ApiResult<Json<Group>> {
    auth.require(Scope::Admin)?;
    let group = state
        .store
        .group_by_name(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("group"))?;
    let user = state
        .store
        .user_by_name(&request.user)
        .await?
        .ok_or_else(|| {
            ApiError::params(&[ParamError::new(
                "user",
                format!("no user named `{}`", request.user),
            )])
        })?;
    state.store.add_member(&group.id, &user.id).await?;
    state.auth.invalidate();
    state.notifier.directory_changed().await?;
    let group = state
        .store
        .group_by_name(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("group"))?;
    Ok(Json(group))
}

pub async fn remove_member(
    State(state): State<AppState>,
    auth: Auth,
    Path((name, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    auth.require(Scope::Admin)?;
    let group = state
        .store
        .group_by_name(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("group"))?;
    let user = state
        .store
        .user_by_name(&user)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let leaving: Vec<String> = state
        .store
        .list_subscriptions(None)
        .await?
        .into_iter()
        .filter(|s| s.owner_user == user.id && s.owner_group.as_deref() == Some(&group.id))
        .map(|s| s.id)
        .collect();
    if !state.store.remove_member(&group.id, &user.id).await? {
        return Err(ApiError::not_found("membership"));
    }
    state.auth.invalidate();
    for id in &leaving {
        state.worker.subscription_changed(id);
    }
    state.notifier.directory_changed().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    scopes: Option<Vec<String>>,
    /// Admins only: mint the token for this user.
    user: Option<String>,
    /// How long the token works, from now: a duration from `1m` to `1825d`. When absent
    /// the token never expires, unless the token creating it does: then it ends with it.
    expires: Option<String>,
}

#[derive(Serialize)]
pub struct CreatedToken {
    id: String,
    /// Shown only in this response.
    token: String,
    name: String,
    scopes: Vec<String>,
    user: String,
    expires: Option<jiff::Timestamp>,
}

pub async fn create_token(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(request): JsonBody<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let principal = auth.require(Scope::User)?;
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
        Some(name) if principal.is_admin() => match state.store.user_by_name(name).await? {
            Some(user) => user,
            None => {
                errors.push(ParamError::new("user", format!("no user named `{name}`")));
                principal.user.clone()
            }
        },
        Some(name) if *name == principal.user.name => principal.user.clone(),
        Some(_) => {
            return Err(ApiError::forbidden(
                "only admins can mint tokens for someone else",
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
    let now = state.clock.now();
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
    if !errors.is_empty() {
        return Err(ApiError::params(&errors));
    }
    let (secret, hash) = new_token();
    let token = Token {
        id: tellify_model::new_id(),
        user_id: owner.id.clone(),
        name: request.name.trim().to_string(),
        scopes: scopes.clone(),
        hash,
        created: now,
        expires,
    };
    state.store.create_token(token.clone()).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: token.id,
            token: secret,
            name: token.name,
            scopes,
            user: owner.name,
            expires: token.expires,
        }),
    ))
}

#[derive(Deserialize)]
pub struct TokenQuery {
    /// Admins: a user's name, or `*` for everyone.
    user: Option<String>,
}

pub async fn list_tokens(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(query): QueryParams<TokenQuery>,
) -> ApiResult<Json<Page<Token>>> {
    let principal = auth.require(Scope::User)?;
    let own = query.user.as_deref() == Some(principal.user.name.as_str());
    let items = match query.user.as_deref() {
        None => state.store.list_tokens(Some(&principal.user.id)).await?,
        Some(_) if own => state.store.list_tokens(Some(&principal.user.id)).await?,
        Some(_) if !principal.is_admin() => {
            return Err(ApiError::forbidden("only admins can list others' tokens"))
        }
        Some("*") => state.store.list_tokens(None).await?,
        Some(name) => {
            let user = state
                .store
                .user_by_name(name)
                .await?
                .ok_or_else(|| ApiError::not_found("user"))?;
            state.store.list_tokens(Some(&user.id)).await?
        }
    };
    Ok(Json(Page { items, next: None }))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let principal = auth.require(Scope::User)?;
    let token = state.store.token(&id).await?;
    match token {
        Some(token) if principal.is_admin() || token.user_id == principal.user.id => {
            state.store.delete_token(&token.id).await?;
            state.auth.invalidate();
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(ApiError::not_found("token")),
    }
}
