//! Users, groups, memberships and tokens: who may change them, what a valid one is, the
//! write, the audit record where one is kept, and the caches told.

use serde_json::{json, Map, Value};
use tellify_engine::ParamError;
use tellify_store::{AuditRecord, Group, OffboardCounts, Token, User};

use super::caches;
use super::error::{require, ServiceError, ServiceResult};
use super::sessions::{check_password, hash_password, verify_password};
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
    /// The password to sign in to the dashboard with; checked and hashed, never kept or
    /// echoed as given. Without one the user signs in only once a password is set.
    pub password: Option<String>,
}

pub async fn create_user(
    services: &Services,
    principal: &Principal,
    request: NewUser,
) -> ServiceResult<User> {
    require(principal, Scope::Admin)?;
    let mut errors = Vec::new();
    check_name(&request.name, "name", &PERSON_NAME, &mut errors);
    if request.name == "me" {
        errors.push(ParamError::new(
            "name",
            "`me` is reserved: /api/v1/users/me and `tellify users ... me` name the caller",
        ));
    }
    if let Some(email) = &request.email {
        check_email(email, &mut errors);
    }
    let timezone = request.timezone.unwrap_or_else(|| "UTC".to_string());
    check_timezone(&timezone, &mut errors);
    if let Some(password) = &request.password {
        collect(check_password(password, "password"), &mut errors);
    }
    ServiceError::check(errors)?;
    let hash = match request.password {
        Some(password) => Some(hash_off_thread(password).await?),
        None => None,
    };
    let user = User {
        id: tellify_model::new_id(),
        name: request.name,
        email: request.email,
        display_name: None,
        timezone,
        admin: request.admin,
        created: services.clock.now(),
    };
    services.store.create_user(user.clone()).await?;
    if let Some(hash) = &hash {
        services
            .store
            .set_password_hash(&user.id, Some(hash.clone()), None)
            .await?;
    }
    caches::user_settings_changed(services, &user.id).await?;
    audit(
        services,
        principal,
        "user.created",
        format!("user {}", user.name),
        json!({"admin": user.admin, "timezone": user.timezone, "email": user.email,
               "password": hash.is_some()}),
    )
    .await?;
    Ok(user)
}

/// What a `PATCH /users/{name}` asks to change; `None` leaves a field as it is. For
/// `email` and `display_name`, `Some(None)` clears it; for `timezone` it means UTC.
#[derive(Default)]
pub struct UserChange {
    pub timezone: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub display_name: Option<Option<String>>,
    /// Admins only.
    pub admin: Option<bool>,
    /// Admins only: the names of every group the user is to be in, and no other.
    pub groups: Option<Vec<String>>,
}

/// Longest display name, in characters.
const MAX_DISPLAY_NAME: usize = 100;

/// Changes a user: people change their own time zone, email and display name (`name` is
/// theirs or `me`); admins change anyone's, and also the admin flag and the groups. Each
/// change is audited, with what it was and what it became.
pub async fn update_user(
    services: &Services,
    principal: &Principal,
    name: &str,
    change: UserChange,
) -> ServiceResult<User> {
    require(principal, Scope::User)?;
    let name = if name == "me" {
        principal.user.name.as_str()
    } else {
        name
    };
    let is_self = name == principal.user.name;
    if !principal.is_admin() {
        if !is_self {
            return Err(ServiceError::NotFound("user"));
        }
        for (field, given) in [
            ("admin", change.admin.is_some()),
            ("groups", change.groups.is_some()),
        ] {
            if given {
                return Err(ServiceError::Forbidden(format!(
                    "only admins can change `{field}`; you may change timezone, email and \
                     display_name"
                )));
            }
        }
    }
    let before = services
        .store
        .user_by_name(name)
        .await?
        .ok_or(ServiceError::NotFound("user"))?;
    if is_self && change.admin == Some(false) && before.admin {
        return Err(ServiceError::Conflict(
            "you cannot take away your own admin role; ask another admin".to_string(),
        ));
    }
    let mut errors = Vec::new();
    let mut after = before.clone();
    if let Some(timezone) = change.timezone {
        let timezone = timezone.unwrap_or_else(|| "UTC".to_string());
        check_timezone(&timezone, &mut errors);
        after.timezone = timezone;
    }
    if let Some(email) = change.email {
        if let Some(email) = &email {
            check_email(email, &mut errors);
        }
        after.email = email;
    }
    if let Some(display_name) = change.display_name {
        if let Some(text) = &display_name {
            check_display_name(text, &mut errors);
        }
        after.display_name = display_name;
    }
    if let Some(admin) = change.admin {
        after.admin = admin;
    }
    let memberships = match &change.groups {
        None => None,
        Some(names) => Some(group_ids_named(services, names, &mut errors).await?),
    };
    ServiceError::check(errors)?;
    let groups_before = services.store.groups_of(&before.id).await?;
    let membership_change = memberships
        .as_ref()
        .map(|wanted| MembershipChange::between(&groups_before, wanted));
    let profile = profile_changes(&before, &after);
    let role = role_changes(&before, &after, membership_change.as_ref(), services).await?;
    if profile.is_empty() && role.is_empty() {
        return Ok(before);
    }
    if before.admin && !after.admin {
        // Another admin must remain, whoever asks.
        let admins = services
            .store
            .list_users()
            .await?
            .into_iter()
            .filter(|user| user.admin && user.id != before.id)
            .count();
        if admins == 0 {
            return Err(ServiceError::Conflict(format!(
                "`{}` is the last admin; make another user admin first",
                before.name
            )));
        }
    }
    // Listed before the write: leaving a group deletes the user's subscriptions of it.
    let left: Vec<String> = match &membership_change {
        Some(change) if !change.removed.is_empty() => services
            .store
            .list_subscriptions(None)
            .await?
            .into_iter()
            .filter(|s| {
                s.owner_user == after.id
                    && s.owner_group
                        .as_ref()
                        .is_some_and(|group| change.removed.contains(group))
            })
            .map(|s| s.id)
            .collect(),
        _ => Vec::new(),
    };
    if !services
        .store
        .update_user(after.clone(), memberships)
        .await?
    {
        return Err(ServiceError::NotFound("user"));
    }
    for id in &left {
        caches::subscription_gone(services, id).await;
    }
    if before.admin != after.admin {
        // A session carries the role it was opened with in the user's mind: whoever holds
        // one signs in again and sees the pages of their new role.
        services.store.delete_web_sessions_of(&after.id).await?;
    }
    // Cached principals carry the user (zone, admin flag) and their groups.
    caches::people_changed(services).await?;
    let subject = format!("user {}", after.name);
    if !profile.is_empty() {
        audit(
            services,
            principal,
            "user.updated",
            subject.clone(),
            Value::Object(profile),
        )
        .await?;
    }
    if !role.is_empty() {
        audit(
            services,
            principal,
            "user.role_changed",
            subject,
            Value::Object(role),
        )
        .await?;
    }
    Ok(after)
}

/// Groups a user joins and leaves, by id.
struct MembershipChange {
    added: Vec<String>,
    removed: Vec<String>,
}

impl MembershipChange {
    fn between(before: &[String], after: &[String]) -> MembershipChange {
        MembershipChange {
            added: after
                .iter()
                .filter(|id| !before.contains(id))
                .cloned()
                .collect(),
            removed: before
                .iter()
                .filter(|id| !after.contains(id))
                .cloned()
                .collect(),
        }
    }
}

/// The ids of the groups named, each once; a name without a group is reported at
/// `groups[i]`.
async fn group_ids_named(
    services: &Services,
    names: &[String],
    errors: &mut Vec<ParamError>,
) -> ServiceResult<Vec<String>> {
    let mut ids = Vec::new();
    for (index, name) in names.iter().enumerate() {
        match services.store.group_by_name(name).await? {
            Some(group) if !ids.contains(&group.id) => ids.push(group.id),
            Some(_) => {}
            None => errors.push(ParamError::new(
                format!("groups[{index}]"),
                format!("no group named `{name}`"),
            )),
        }
    }
    Ok(ids)
}

/// `{"field": {"from": .., "to": ..}}` for each of time zone, email and display name
/// that changed.
fn profile_changes(before: &User, after: &User) -> Map<String, Value> {
    let mut changes = Map::new();
    let mut compare = |field: &str, from: Value, to: Value| {
        if from != to {
            changes.insert(field.to_string(), json!({"from": from, "to": to}));
        }
    };
    compare("timezone", json!(before.timezone), json!(after.timezone));
    compare("email", json!(before.email), json!(after.email));
    compare(
        "display_name",
        json!(before.display_name),
        json!(after.display_name),
    );
    changes
}

/// The admin flag's change and the groups joined and left (by name).
async fn role_changes(
    before: &User,
    after: &User,
    memberships: Option<&MembershipChange>,
    services: &Services,
) -> ServiceResult<Map<String, Value>> {
    let mut changes = Map::new();
    if before.admin != after.admin {
        changes.insert(
            "admin".to_string(),
            json!({"from": before.admin, "to": after.admin}),
        );
    }
    let Some(memberships) = memberships else {
        return Ok(changes);
    };
    if memberships.added.is_empty() && memberships.removed.is_empty() {
        return Ok(changes);
    }
    let groups = services.store.list_groups().await?;
    let names = |ids: &[String]| -> Vec<String> {
        groups
            .iter()
            .filter(|group| ids.contains(&group.id))
            .map(|group| group.name.clone())
            .collect()
    };
    changes.insert(
        "groups".to_string(),
        json!({"joined": names(&memberships.added), "left": names(&memberships.removed)}),
    );
    Ok(changes)
}

fn check_email(email: &str, errors: &mut Vec<ParamError>) {
    let parts: Vec<&str> = email.split('@').collect();
    if parts.len() != 2 || parts[0].is_empty() || !parts[1].contains('.') {
        errors.push(ParamError::new(
            "email",
            format!("`{email}` is not an email address"),
        ));
    }
}

fn check_timezone(timezone: &str, errors: &mut Vec<ParamError>) {
    if jiff::tz::TimeZone::get(timezone).is_err() {
        errors.push(ParamError::new(
            "timezone",
            format!("`{timezone}` is not an IANA time zone such as Europe/Berlin"),
        ));
    }
}

fn check_display_name(text: &str, errors: &mut Vec<ParamError>) {
    if text.trim().is_empty() || text.chars().count() > MAX_DISPLAY_NAME {
        errors.push(ParamError::new(
            "display_name",
            format!("must be 1 to {MAX_DISPLAY_NAME} characters"),
        ));
    } else if text.chars().any(char::is_control) {
        errors.push(ParamError::new(
            "display_name",
            "must not hold control characters such as line breaks",
        ));
    }
}

/// Keeps an administrative act in the audit log: who (the caller), what, on what, and
/// what changed; never a secret.
async fn audit(
    services: &Services,
    principal: &Principal,
    action: &str,
    subject: String,
    detail: Value,
) -> ServiceResult<()> {
    services
        .store
        .append_audit(AuditRecord {
            id: tellify_model::new_id(),
            at: services.clock.now(),
            actor: principal.user.name.clone(),
            action: action.to_string(),
            subject,
            detail,
        })
        .await?;
    Ok(())
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
        caches::subscriptions_reread(services, &subscriptions).await;
        caches::people_changed(services).await?;
        services.notifier.quiesce_user(&user.id).await;
        tracing::info!(user = %user.name, actor = %principal.user.name, "user offboarded");
    }
    Ok((user, removed))
}

/// Sets a user's dashboard password. A person changes their own (`name` is theirs or
/// `me`) by giving the `current` one, when they have one; their other sessions end. An
/// admin sets or resets anyone else's without it, and every session of that user ends.
/// Admins too give their current password to change their own: a session left open
/// must not be enough to lock its owner out. Audited as `password.set` (own) or
/// `password.reset` (someone else's), never with the password.
pub async fn set_password(
    services: &Services,
    principal: &Principal,
    name: &str,
    new: &str,
    current: Option<&str>,
) -> ServiceResult<()> {
    set_password_keeping(services, principal, name, new, current, None).await
}

/// [`set_password`] from a dashboard session: when the user changes their own password,
/// `keep_session` (the session's id hash) stays signed in and only their other sessions
/// end.
pub async fn set_password_keeping(
    services: &Services,
    principal: &Principal,
    name: &str,
    new: &str,
    current: Option<&str>,
    keep_session: Option<&str>,
) -> ServiceResult<()> {
    require(principal, Scope::User)?;
    let name = if name == "me" {
        principal.user.name.as_str()
    } else {
        name
    };
    let is_self = name == principal.user.name;
    if !is_self && !principal.is_admin() {
        return Err(ServiceError::NotFound("user"));
    }
    let user = services
        .store
        .user_by_name(name)
        .await?
        .ok_or(ServiceError::NotFound("user"))?;
    check_password(new, "password")?;
    if is_self {
        if let Some(hash) = services.store.password_hash(&user.id).await? {
            let Some(current) = current.filter(|given| !given.is_empty()) else {
                return Err(ServiceError::Forbidden(
                    "give your current password (`current`) to change it; if it is lost, \
                     an admin can reset it"
                        .to_string(),
                ));
            };
            // A wrong current password counts against the account's sign-in budget, so
            // a session left open is not a way to guess the password without limit.
            let now = services.clock.now();
            if let Err(retry_after) = services.login_limits.check_account(&user.name, now) {
                return Err(ServiceError::Limited {
                    message: "too many wrong passwords for this account".to_string(),
                    retry_after,
                });
            }
            if !verify_off_thread(current.to_string(), hash).await? {
                services.login_limits.record_account(&user.name, now);
                tracing::info!(user = %user.name, "password change refused: wrong current password");
                return Err(ServiceError::Forbidden(
                    "the current password is not right; nothing was changed".to_string(),
                ));
            }
        }
    }
    let hash = hash_off_thread(new.to_string()).await?;
    let keep = if is_self {
        keep_session.map(str::to_string)
    } else {
        None
    };
    let kept = keep.is_some();
    if !services
        .store
        .set_password_hash(&user.id, Some(hash), keep)
        .await?
    {
        return Err(ServiceError::NotFound("user"));
    }
    let action = if is_self {
        "password.set"
    } else {
        "password.reset"
    };
    audit(
        services,
        principal,
        action,
        format!("user {}", user.name),
        json!({"sessions_ended": if kept { "all others" } else { "all" }}),
    )
    .await?;
    Ok(())
}

/// A new random password to hand to a person (the first admin's, an offline reset):
/// [`NEW_PASSWORD_LENGTH`] characters from an alphabet without look-alikes (no 0/O, 1/l/I),
/// about 139 bits.
pub fn new_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut rng = rand::rng();
    (0..NEW_PASSWORD_LENGTH)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// How long [`new_password`]'s passwords are.
pub const NEW_PASSWORD_LENGTH: usize = 24;

/// The argon2id hash of `password`, computed on a blocking thread: it takes tens of
/// milliseconds on purpose, which would stall the async workers.
pub async fn hash_off_thread(password: String) -> ServiceResult<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|_| ServiceError::Internal("the password could not be hashed".to_string()))?
}

async fn verify_off_thread(password: String, hash: String) -> ServiceResult<bool> {
    tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|_| ServiceError::Internal("the password could not be checked".to_string()))
}

/// Moves a failed check's field errors into `errors`, so they are reported with the
/// others (the checks passed here fail with field errors only).
fn collect(result: ServiceResult<()>, errors: &mut Vec<ParamError>) {
    if let Err(ServiceError::Invalid(mut found)) = result {
        errors.append(&mut found);
    }
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
    let group = group_named(services, &request.name).await?;
    audit(
        services,
        principal,
        "group.created",
        format!("group {}", group.name),
        json!({"members": group.members}),
    )
    .await?;
    Ok(group)
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
    if !found.members.contains(&member.name) {
        audit(
            services,
            principal,
            "user.role_changed",
            format!("user {}", member.name),
            json!({"groups": {"joined": [found.name], "left": []}}),
        )
        .await?;
    }
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
    caches::subscriptions_reread(services, &leaving).await;
    caches::people_changed(services).await?;
    audit(
        services,
        principal,
        "user.role_changed",
        format!("user {}", member.name),
        json!({"groups": {"joined": [], "left": [found.name]}}),
    )
    .await?;
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
    audit(
        services,
        principal,
        "token.created",
        format!("token {} of {}", token.name, owner.name),
        json!({"id": token.id, "scopes": token.scopes, "expires": token.expires}),
    )
    .await?;
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
            caches::token_revoked(services).await;
            let owner = match services.store.user_by_id(&token.user_id).await? {
                Some(user) => user.name,
                None => token.user_id.clone(),
            };
            audit(
                services,
                principal,
                "token.revoked",
                format!("token {} of {owner}", token.name),
                json!({"id": token.id}),
            )
            .await?;
            Ok(())
        }
        _ => Err(ServiceError::NotFound("token")),
    }
}
