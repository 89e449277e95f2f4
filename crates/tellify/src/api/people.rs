//! Users, groups and tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tellify_store::{Group, Token, User};

use super::{ApiResult, AppState, Auth, JsonBody, Page, QueryParams};
use crate::auth::Scope;
use crate::services::people;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    name: String,
    email: Option<String>,
    timezone: Option<String>,
    #[serde(default)]
    admin: bool,
    /// The dashboard password (10 to 1024 characters); hashed, never echoed.
    password: Option<String>,
}

pub async fn create_user(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(request): JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let user = people::create_user(
        &state,
        &auth.0,
        people::NewUser {
            name: request.name,
            email: request.email,
            timezone: request.timezone,
            admin: request.admin,
            password: request.password,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// `PUT /users/{name}/password`: an admin sets or resets a user's password; every session
/// of that user ends.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    password: String,
}

pub async fn set_password(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<SetPassword>,
) -> ApiResult<StatusCode> {
    people::set_password(&state, &auth.0, &name, &request.password, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /users/me/password`: the caller changes their own password, giving the current
/// one when they have one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeOwnPassword {
    password: String,
    current: Option<String>,
}

pub async fn change_own_password(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(request): JsonBody<ChangeOwnPassword>,
) -> ApiResult<StatusCode> {
    people::set_password(
        &state,
        &auth.0,
        "me",
        &request.password,
        request.current.as_deref(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_users(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Page<User>>> {
    let items = people::list_users(&state, &auth.0).await?;
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
    let user = people::user(&state, &auth.0, &name).await?;
    Ok(Json(user))
}

/// A JSON merge patch of a user: absent fields stay, `null` clears `email` and
/// `display_name` and sets `timezone` back to UTC.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default, deserialize_with = "present")]
    timezone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    display_name: Option<Option<String>>,
    /// Admins only.
    admin: Option<bool>,
    /// Admins only: every group the user is to be in.
    groups: Option<Vec<String>>,
}

/// A field that is present, `null` or not: `Some(None)` for `null`, so a merge patch can
/// tell "clear it" from "leave it" (absent fields get the `default`, `None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Changes a user (`me` is the caller): their own time zone, email and display name, and
/// for admins anyone's, with the admin flag and the groups.
pub async fn update_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<UpdateUser>,
) -> ApiResult<Json<User>> {
    let change = people::UserChange {
        timezone: request.timezone,
        email: request.email,
        display_name: request.display_name,
        admin: request.admin,
        groups: request.groups,
    };
    Ok(Json(
        people::update_user(&state, &auth.0, &name, change).await?,
    ))
}

/// `PATCH /users/me`: [`update_user`] of the caller.
pub async fn update_me(
    state: State<AppState>,
    auth: Auth,
    request: JsonBody<UpdateUser>,
) -> ApiResult<Json<User>> {
    update_user(state, auth, Path("me".to_string()), request).await
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
    let (user, removed) = people::offboard_user(&state, &auth.0, &name, params.dry_run).await?;
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
    let created = people::create_group(
        &state,
        &auth.0,
        people::NewGroup {
            name: request.name,
            members: request.members,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn list_groups(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Page<Group>>> {
    let items = people::list_groups(&state, &auth.0).await?;
    Ok(Json(Page { items, next: None }))
}

pub async fn get_group(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Group>> {
    Ok(Json(people::visible_group(&state, &auth.0, &name).await?))
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
    let group = people::add_member(&state, &auth.0, &name, &request.user).await?;
    Ok(Json(group))
}

pub async fn remove_member(
    State(state): State<AppState>,
    auth: Auth,
    Path((name, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    people::remove_member(&state, &auth.0, &name, &user).await?;
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
    let minted = people::create_token(
        &state,
        &auth.0,
        people::NewToken {
            name: request.name,
            scopes: request.scopes,
            user: request.user,
            expires: request.expires,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: minted.token.id,
            token: minted.secret,
            name: minted.token.name,
            scopes: minted.token.scopes,
            user: minted.owner.name,
            expires: minted.token.expires,
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
    let items = people::list_tokens(&state, &auth.0, query.user.as_deref()).await?;
    Ok(Json(Page { items, next: None }))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    people::revoke_token(&state, &auth.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
