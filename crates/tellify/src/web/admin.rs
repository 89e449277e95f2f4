//! The admin pages under `/admin` (admins only: anyone else gets the same 404 page as for
//! a page that does not exist): an overview with the server's health, users (create,
//! reset a password, change the role, offboard after a dry-run preview), groups and their
//! members, event types, and everyone's tokens. Every page calls the service layer
//! (`services::people`, `services::event_types`, `services::health`), which checks again
//! that the caller is an admin.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};
use tellify_store::{EventType, Group, User};

use super::fields::FieldErrors;
use super::format::{url_encode, Clock};
use super::{render, render_status, see_other, CsrfForm, Layout, Viewer, WebError};
use crate::services::health::Health;
use crate::services::sessions::SignedIn;
use crate::services::{event_types, health, people, AppState};

/// The viewer, if an admin; anyone else is told the page does not exist.
fn admin_only(viewer: &SignedIn) -> Result<(), WebError> {
    if viewer.principal.is_admin() {
        Ok(())
    } else {
        Err(WebError::NotFound)
    }
}

/// `?done=` after an action: a fixed text per code, never text from the URL.
#[derive(Deserialize, Default)]
pub struct DoneQuery {
    #[serde(default)]
    done: String,
}

fn notice(done: &str) -> Option<String> {
    let text = match done {
        "created" => "Created.",
        "password" => "Password set. Every session of theirs has ended.",
        "role" => "Role changed. Their sessions have ended.",
        "offboarded" => "Offboarded: everything of theirs is gone.",
        "member-added" => "Member added.",
        "member-removed" => "Member removed.",
        "saved" => "Saved.",
        "deleted" => "Deleted.",
        "revoked" => "Token revoked.",
        _ => return None,
    };
    Some(text.to_string())
}

fn layout(title: &str, viewer: &SignedIn, done: &str) -> Layout {
    Layout::new(title, "admin", viewer).with_notice(notice(done))
}

// ---- overview and health ----

#[derive(Template)]
#[template(path = "admin.html")]
struct OverviewPage {
    layout: Layout,
    users: usize,
    admins: usize,
    groups: usize,
    event_types: usize,
    tokens: usize,
    health: HealthView,
}

/// The health figures as shown.
struct HealthView {
    figures: Health,
    started: String,
    ingest_rate: String,
    oldest_due: String,
}

pub async fn overview(State(state): State<AppState>, viewer: Viewer) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    let principal = &viewer.principal;
    let users = people::list_users(&state, principal).await?;
    let groups = people::list_groups(&state, principal).await?;
    let tokens = people::list_tokens(&state, principal, Some("*")).await?;
    let event_types = state.store.list_event_types().await?;
    let figures = health::health(&state, principal).await?;
    let clock = Clock::new(&principal.user.timezone, state.clock.now());
    let health = HealthView {
        started: figures.started.map(|at| clock.full(at)).unwrap_or_default(),
        ingest_rate: format!("{:.1}", figures.ingest_per_minute),
        oldest_due: figures
            .outbox_oldest_due
            .map(|at| format!("{} ({})", clock.full(at), clock.relative(at)))
            .unwrap_or_else(|| "nothing is due".to_string()),
        figures,
    };
    render(&OverviewPage {
        layout: layout("Admin", &viewer, ""),
        admins: users.iter().filter(|user| user.admin).count(),
        users: users.len(),
        groups: groups.len(),
        event_types: event_types.len(),
        tokens: tokens.len(),
        health,
    })
}

// ---- users ----

/// A user as a row.
struct UserRow {
    name: String,
    display_name: String,
    email: String,
    timezone: String,
    admin: bool,
    created: String,
}

impl UserRow {
    fn new(user: &User, clock: &Clock) -> UserRow {
        UserRow {
            name: user.name.clone(),
            display_name: user.display_name.clone().unwrap_or_default(),
            email: user.email.clone().unwrap_or_default(),
            timezone: user.timezone.clone(),
            admin: user.admin,
            created: clock.full(user.created),
        }
    }
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<UserRow>,
    form: NewUserForm,
    errors: FieldErrors,
}

#[derive(Deserialize, Default)]
pub struct NewUserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    timezone: String,
    /// A checkbox: present (`on`) when ticked.
    #[serde(default)]
    admin: Option<String>,
    #[serde(default)]
    password: String,
}

async fn users_page(
    state: &AppState,
    viewer: &SignedIn,
    done: &str,
    form: NewUserForm,
    errors: FieldErrors,
) -> Result<UsersPage, WebError> {
    let clock = Clock::new(&viewer.principal.user.timezone, state.clock.now());
    let users = people::list_users(state, &viewer.principal)
        .await?
        .iter()
        .map(|user| UserRow::new(user, &clock))
        .collect();
    Ok(UsersPage {
        layout: layout("Users", viewer, done),
        users,
        form: NewUserForm {
            // What was typed comes back, but never the password.
            password: String::new(),
            ..form
        },
        errors,
    })
}

pub async fn users(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<DoneQuery>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    let page = users_page(
        &state,
        &viewer,
        &query.done,
        NewUserForm {
            timezone: "UTC".to_string(),
            ..Default::default()
        },
        FieldErrors::default(),
    )
    .await?;
    render(&page)
}

fn optional(text: &str) -> Option<String> {
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

pub async fn create_user(
    State(state): State<AppState>,
    CsrfForm { viewer, form }: CsrfForm<NewUserForm>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    let request = people::NewUser {
        name: form.name.trim().to_string(),
        email: optional(&form.email),
        timezone: optional(&form.timezone),
        admin: form.admin.is_some(),
        password: (!form.password.is_empty()).then(|| form.password.clone()),
    };
    match people::create_user(&state, &viewer.principal, request).await {
        Ok(user) => Ok(see_other(&format!(
            "/admin/users/{}?done=created",
            url_encode(&user.name)
        ))),
        Err(error) => {
            let (status, errors) = FieldErrors::from_service(error)?;
            let page = users_page(&state, &viewer, "", form, errors).await?;
            render_status(status, &page)
        }
    }
}

#[derive(Template)]
#[template(path = "admin_user.html")]
struct UserPage {
    layout: Layout,
    user: UserRow,
    groups: Vec<String>,
    is_self: bool,
    password_errors: FieldErrors,
    role_errors: FieldErrors,
}

async fn user_page(
    state: &AppState,
    viewer: &SignedIn,
    name: &str,
    done: &str,
) -> Result<UserPage, WebError> {
    let user = people::user(state, &viewer.principal, name).await?;
    let clock = Clock::new(&viewer.principal.user.timezone, state.clock.now());
    let groups = people::list_groups(state, &viewer.principal)
        .await?
        .into_iter()
        .filter(|group| group.members.contains(&user.name))
        .map(|group| group.name)
        .collect();
    Ok(UserPage {
        layout: layout(&format!("User {}", user.name), viewer, done),
        is_self: user.id == viewer.principal.user.id,
        user: UserRow::new(&user, &clock),
        groups,
        password_errors: FieldErrors::default(),
        role_errors: FieldErrors::default(),
    })
}

pub async fn user(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(query): Query<DoneQuery>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    render(&user_page(&state, &viewer, &name, &query.done).await?)
}

#[derive(Deserialize)]
pub struct ResetPasswordForm {
    #[serde(default)]
    password: String,
}

pub async fn reset_password(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CsrfForm { viewer, form }: CsrfForm<ResetPasswordForm>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    match people::set_password(&state, &viewer.principal, &name, &form.password, None).await {
        Ok(()) => Ok(see_other(&format!(
            "/admin/users/{}?done=password",
            url_encode(&name)
        ))),
        Err(error) => {
            let (status, mut errors) = FieldErrors::from_service(error)?;
            if let Some(message) = errors.form.take() {
                // Refused for one's own password: the account page asks for the current one.
                errors.add("password", message);
            }
            let mut page = user_page(&state, &viewer, &name, "").await?;
            page.password_errors = errors;
            render_status(status, &page)
        }
    }
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    admin: Option<String>,
}

pub async fn change_role(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CsrfForm { viewer, form }: CsrfForm<RoleForm>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    let change = people::UserChange {
        admin: Some(form.admin.as_deref() == Some("true")),
        ..Default::default()
    };
    match people::update_user(&state, &viewer.principal, &name, change).await {
        Ok(_) => Ok(see_other(&format!(
            "/admin/users/{}?done=role",
            url_encode(&name)
        ))),
        Err(error) => {
            let (status, errors) = FieldErrors::from_service(error)?;
            let mut page = user_page(&state, &viewer, &name, "").await?;
            page.role_errors = errors;
            render_status(status, &page)
        }
    }
}

#[derive(Template)]
#[template(path = "admin_offboard.html")]
struct OffboardPage {
    layout: Layout,
    name: String,
    /// What would go, by kind, with its count.
    counts: Vec<(String, u64)>,
    total: u64,
}

/// The dry run: what offboarding would remove, and the form that does it.
pub async fn offboard_preview(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    preview(&state, &viewer, &name, StatusCode::OK).await
}

async fn preview(
    state: &AppState,
    viewer: &SignedIn,
    name: &str,
    status: StatusCode,
) -> Result<Response, WebError> {
    let (user, counts) = people::offboard_user(state, &viewer.principal, name, true).await?;
    let counts: Vec<(String, u64)> = match serde_json::to_value(&counts) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .map(|(kind, count)| (kind.replace('_', " "), count.as_u64().unwrap_or(0)))
            .collect(),
        _ => Vec::new(),
    };
    let total = counts.iter().map(|(_, count)| count).sum();
    render_status(
        status,
        &OffboardPage {
            layout: layout(&format!("Offboard {}", user.name), viewer, ""),
            name: user.name,
            counts,
            total,
        },
    )
}

#[derive(Deserialize)]
pub struct OffboardForm {
    /// `yes` from the preview's button; anything else shows the preview again.
    #[serde(default)]
    confirm: String,
}

pub async fn offboard(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CsrfForm { viewer, form }: CsrfForm<OffboardForm>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    if form.confirm != "yes" {
        return preview(&state, &viewer, &name, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    people::offboard_user(&state, &viewer.principal, &name, false).await?;
    Ok(see_other("/admin/users?done=offboarded"))
}

// ---- groups ----

#[derive(Template)]
#[template(path = "admin_groups.html")]
struct GroupsPage {
    layout: Layout,
    groups: Vec<Group>,
    users: Vec<String>,
    name: String,
    errors: FieldErrors,
    /// The group whose member form failed, and why.
    member_error: Option<(String, String)>,
}

async fn groups_page(
    state: &AppState,
    viewer: &SignedIn,
    done: &str,
) -> Result<GroupsPage, WebError> {
    let groups = people::list_groups(state, &viewer.principal).await?;
    let users = people::list_users(state, &viewer.principal)
        .await?
        .into_iter()
        .map(|user| user.name)
        .collect();
    Ok(GroupsPage {
        layout: layout("Groups", viewer, done),
        groups,
        users,
        name: String::new(),
        errors: FieldErrors::default(),
        member_error: None,
    })
}

pub async fn groups(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<DoneQuery>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    render(&groups_page(&state, &viewer, &query.done).await?)
}

#[derive(Deserialize)]
pub struct NewGroupForm {
    #[serde(default)]
    name: String,
}

pub async fn create_group(
    State(state): State<AppState>,
    CsrfForm { viewer, form }: CsrfForm<NewGroupForm>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    let request = people::NewGroup {
        name: form.name.trim().to_string(),
        members: Vec::new(),
    };
    match people::create_group(&state, &viewer.principal, request).await {
        Ok(_) => Ok(see_other("/admin/groups?done=created")),
        Err(error) => {
            let (status, errors) = FieldErrors::from_service(error)?;
            let mut page = groups_page(&state, &viewer, "").await?;
            page.name = form.name;
            page.errors = errors;
            render_status(status, &page)
        }
    }
}

#[derive(Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    user: String,
}

pub async fn add_member(
    State(state): State<AppState>,
    Path(group): Path<String>,
    CsrfForm { viewer, form }: CsrfForm<MemberForm>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    match people::add_member(&state, &viewer.principal, &group, form.user.trim()).await {
        Ok(_) => Ok(see_other("/admin/groups?done=member-added")),
        Err(error) => {
            let (status, errors) = FieldErrors::from_service(error)?;
            let mut page = groups_page(&state, &viewer, "").await?;
            let message = errors
                .of("user")
                .or(errors.form.clone())
                .unwrap_or_default();
            page.member_error = Some((group, message));
            render_status(status, &page)
        }
    }
}

pub async fn remove_member(
    State(state): State<AppState>,
    Path((group, user)): Path<(String, String)>,
    CsrfForm { viewer, .. }: CsrfForm<super::auth::Nothing>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    people::remove_member(&state, &viewer.principal, &group, &user).await?;
    Ok(see_other("/admin/groups?done=member-removed"))
}

// ---- event types ----

/// An event type as a row, and as its form's fields.
#[derive(Default)]
struct EventTypeView {
    name: String,
    description: String,
    category: String,
    default_severity: String,
    dedup_interval: String,
    schema: String,
}

impl EventTypeView {
    fn new(record: &EventType) -> EventTypeView {
        EventTypeView {
            name: record.name.clone(),
            description: record.description.clone(),
            category: record.category.clone().unwrap_or_default(),
            default_severity: record
                .default_severity
                .map(|severity| severity.as_str().to_string())
                .unwrap_or_default(),
            dedup_interval: record
                .dedup_interval
                .map(tellify_model::format_duration)
                .unwrap_or_default(),
            schema: record
                .schema
                .as_ref()
                .and_then(|schema| serde_json::to_string_pretty(schema).ok())
                .unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "admin_event_types.html")]
struct EventTypesPage {
    layout: Layout,
    types: Vec<EventTypeView>,
}

pub async fn event_types(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<DoneQuery>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    let types = state
        .store
        .list_event_types()
        .await?
        .iter()
        .map(EventTypeView::new)
        .collect();
    render(&EventTypesPage {
        layout: layout("Event types", &viewer, &query.done),
        types,
    })
}

#[derive(Template)]
#[template(path = "admin_event_type.html")]
struct EventTypePage {
    layout: Layout,
    /// False for a new type (the name is editable).
    existing: bool,
    form: EventTypeView,
    errors: FieldErrors,
    severities: [&'static str; 3],
}

fn event_type_page(
    viewer: &SignedIn,
    existing: bool,
    form: EventTypeView,
    errors: FieldErrors,
    done: &str,
) -> EventTypePage {
    let title = if existing {
        format!("Event type {}", form.name)
    } else {
        "New event type".to_string()
    };
    EventTypePage {
        layout: layout(&title, viewer, done),
        existing,
        form,
        errors,
        severities: ["info", "warning", "critical"],
    }
}

pub async fn new_event_type(viewer: Viewer) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    render(&event_type_page(
        &viewer,
        false,
        EventTypeView::default(),
        FieldErrors::default(),
        "",
    ))
}

pub async fn event_type(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(query): Query<DoneQuery>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    let record = state
        .store
        .event_type(&name)
        .await?
        .ok_or(WebError::NotFound)?;
    render(&event_type_page(
        &viewer,
        true,
        EventTypeView::new(&record),
        FieldErrors::default(),
        &query.done,
    ))
}

#[derive(Deserialize)]
pub struct EventTypeForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    default_severity: String,
    #[serde(default)]
    dedup_interval: String,
    #[serde(default)]
    schema: String,
    /// `yes` when editing an existing type.
    #[serde(default)]
    existing: String,
}

/// Creates or replaces an event type from its form: the same definition `PUT
/// /api/v1/event-types/{name}` takes, so the same checks run.
pub async fn save_event_type(
    State(state): State<AppState>,
    CsrfForm { viewer, form }: CsrfForm<EventTypeForm>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    let name = form.name.trim().to_string();
    let mut errors = FieldErrors::default();
    let mut body = Map::new();
    body.insert(
        "description".into(),
        Value::String(form.description.clone()),
    );
    for (key, value) in [
        ("category", &form.category),
        ("default_severity", &form.default_severity),
        ("dedup_interval", &form.dedup_interval),
    ] {
        if let Some(value) = optional(value) {
            body.insert(key.into(), Value::String(value));
        }
    }
    if !form.schema.trim().is_empty() {
        match serde_json::from_str::<Value>(&form.schema) {
            Ok(schema) => {
                body.insert("schema".into(), schema);
            }
            Err(error) => errors.add("schema", format!("not JSON: {error}")),
        }
    }
    let existing = form.existing == "yes";
    let view = EventTypeView {
        name: name.clone(),
        description: form.description,
        category: form.category,
        default_severity: form.default_severity,
        dedup_interval: form.dedup_interval,
        schema: form.schema,
    };
    if errors.is_empty() {
        match event_types::put(&state, &viewer.principal, &name, &Value::Object(body)).await {
            Ok(_) => {
                return Ok(see_other(&format!(
                    "/admin/event-types/{}?done=saved",
                    url_encode(&name)
                )))
            }
            Err(error) => {
                let (status, found) = FieldErrors::from_service(error)?;
                let page = event_type_page(&viewer, existing, view, found, "");
                return render_status(status, &page);
            }
        }
    }
    let page = event_type_page(&viewer, existing, view, errors, "");
    render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

pub async fn delete_event_type(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CsrfForm { viewer, .. }: CsrfForm<super::auth::Nothing>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    event_types::delete(&state, &viewer.principal, &name).await?;
    Ok(see_other("/admin/event-types?done=deleted"))
}

// ---- tokens ----

struct TokenRow {
    id: String,
    name: String,
    owner: String,
    scopes: String,
    created: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "admin_tokens.html")]
struct TokensPage {
    layout: Layout,
    tokens: Vec<TokenRow>,
}

pub async fn tokens(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<DoneQuery>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    let principal = &viewer.principal;
    let owners: HashMap<String, String> = people::list_users(&state, principal)
        .await?
        .into_iter()
        .map(|user| (user.id, user.name))
        .collect();
    let clock = Clock::new(&principal.user.timezone, state.clock.now());
    let tokens = people::list_tokens(&state, principal, Some("*"))
        .await?
        .into_iter()
        .map(|token| TokenRow {
            owner: owners
                .get(&token.user_id)
                .cloned()
                .unwrap_or_else(|| token.user_id.clone()),
            scopes: token.scopes.join(", "),
            created: clock.full(token.created),
            expires: token
                .expires
                .map(|at| clock.full(at))
                .unwrap_or_else(|| "never".to_string()),
            id: token.id,
            name: token.name,
        })
        .collect();
    render(&TokensPage {
        layout: layout("Tokens", &viewer, &query.done),
        tokens,
    })
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, .. }: CsrfForm<super::auth::Nothing>,
) -> Result<Response, WebError> {
    admin_only(&viewer)?;
    people::revoke_token(&state, &viewer.principal, &id).await?;
    Ok(see_other("/admin/tokens?done=revoked"))
}

/// Any other page under `/admin`: the 404 page, for admins and everyone else alike.
pub async fn unknown() -> WebError {
    WebError::NotFound
}
