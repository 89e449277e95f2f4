//! My account (every signed-in person): change my password (the current one and the new
//! one twice; my other sessions end, this one stays), my display name and my time zone —
//! `services::people` on `me`, as `PATCH /api/v1/users/me` and `PUT
//! /api/v1/users/me/password` do.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::fields::FieldErrors;
use super::{render, render_status, see_other, CsrfForm, Layout, Viewer, WebError};
use crate::services::sessions::SignedIn;
use crate::services::{people, AppState, ServiceError};

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    name: String,
    display_name: String,
    timezone: String,
    profile_errors: FieldErrors,
    password_errors: FieldErrors,
}

#[derive(Deserialize, Default)]
pub struct DoneQuery {
    #[serde(default)]
    done: String,
}

fn page(viewer: &SignedIn, notice: Option<String>) -> AccountPage {
    let user = &viewer.principal.user;
    AccountPage {
        layout: Layout::new("My account", "account", viewer).with_notice(notice),
        name: user.name.clone(),
        display_name: user.display_name.clone().unwrap_or_default(),
        timezone: user.timezone.clone(),
        profile_errors: FieldErrors::default(),
        password_errors: FieldErrors::default(),
    }
}

pub async fn account(viewer: Viewer, Query(query): Query<DoneQuery>) -> Result<Response, WebError> {
    let notice = match query.done.as_str() {
        "password" => Some("Password changed. Your other sessions have ended.".to_string()),
        "profile" => Some("Saved.".to_string()),
        _ => None,
    };
    render(&page(&viewer, notice))
}

#[derive(Deserialize)]
pub struct ProfileForm {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    timezone: String,
}

pub async fn save_profile(
    State(state): State<AppState>,
    CsrfForm { viewer, form }: CsrfForm<ProfileForm>,
) -> Result<Response, WebError> {
    let display_name = form.display_name.trim();
    let change = people::UserChange {
        timezone: Some(Some(form.timezone.trim().to_string())),
        display_name: Some((!display_name.is_empty()).then(|| display_name.to_string())),
        ..Default::default()
    };
    match people::update_user(&state, &viewer.principal, "me", change).await {
        Ok(_) => Ok(see_other("/account?done=profile")),
        Err(error) => {
            let (status, errors) = FieldErrors::from_service(error)?;
            let mut shown = page(&viewer, None);
            shown.display_name = form.display_name;
            shown.timezone = form.timezone;
            shown.profile_errors = errors;
            render_status(status, &shown)
        }
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_again: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    CsrfForm { viewer, form }: CsrfForm<PasswordForm>,
) -> Result<Response, WebError> {
    let refused = |status: StatusCode, errors: FieldErrors| {
        let mut shown = page(&viewer, None);
        shown.password_errors = errors;
        render_status(status, &shown)
    };
    if form.password != form.password_again {
        let mut errors = FieldErrors::default();
        errors.add("password_again", "does not match the new password");
        return refused(StatusCode::UNPROCESSABLE_ENTITY, errors);
    }
    let result = people::set_password_keeping(
        &state,
        &viewer.principal,
        "me",
        &form.password,
        Some(&form.current),
        Some(&viewer.id_hash),
    )
    .await;
    match result {
        Ok(()) => Ok(see_other("/account?done=password")),
        // The only refusal of one's own change is about the current password.
        Err(ServiceError::Forbidden(message)) => {
            let mut errors = FieldErrors::default();
            errors.add("current", message);
            refused(StatusCode::FORBIDDEN, errors)
        }
        Err(ServiceError::Limited {
            message,
            retry_after,
        }) => {
            let mut errors = FieldErrors::default();
            errors.add(
                "current",
                format!("{message}; try again in {retry_after} s"),
            );
            refused(StatusCode::TOO_MANY_REQUESTS, errors)
        }
        Err(error) => {
            let (status, errors) = FieldErrors::from_service(error)?;
            refused(status, errors)
        }
    }
}
