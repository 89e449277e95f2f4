//! Sign in and sign out.

use askama::Template;
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::format::safe_next;
use super::session::{cleared_cookie, read_form, session_cookie};
use super::{
    render, render_status, same_origin, see_other, CsrfForm, Layout, MaybeViewer, WebError,
};
use crate::services::sessions::{self, SignInError};
use crate::services::AppState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
    name: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login_page(
    MaybeViewer(viewer): MaybeViewer,
    Query(query): Query<NextQuery>,
) -> Result<Response, WebError> {
    let next = safe_next(query.next.as_deref());
    if viewer.is_some() {
        return Ok(see_other(&next));
    }
    render(&LoginPage {
        layout: Layout::anonymous("Sign in"),
        next,
        name: String::new(),
        error: None,
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub async fn login(State(state): State<AppState>, request: Request) -> Result<Response, WebError> {
    same_origin(request.headers())?;
    let (mut parts, form): (_, LoginForm) = read_form(request, &state).await?;
    let address = super::client_address(&parts.extensions);
    let next = safe_next(form.next.as_deref());
    let failed = |status: StatusCode, message: String| {
        render_status(
            status,
            &LoginPage {
                layout: Layout::anonymous("Sign in"),
                next: next.clone(),
                name: form.name.clone(),
                error: Some(message),
            },
        )
    };
    match sessions::sign_in(&state, &form.name, &form.password, address).await {
        Ok(session) => {
            // A session the browser already had ends: sign-in always gets a new id.
            if let Ok(MaybeViewer(Some(old))) =
                MaybeViewer::from_request_parts(&mut parts, &state).await
            {
                sessions::sign_out(&state, &old).await?;
            }
            let secure = state
                .settings
                .public_url
                .as_deref()
                .is_some_and(|url| url.starts_with("https://"));
            let mut response = see_other(&next);
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&session.secret, secure));
            Ok(response)
        }
        Err(SignInError::Mismatch) => {
            failed(StatusCode::UNAUTHORIZED, SignInError::Mismatch.to_string())
        }
        Err(limited @ SignInError::Limited { .. }) => {
            failed(StatusCode::TOO_MANY_REQUESTS, limited.to_string())
        }
        Err(SignInError::Service(error)) => Err(error.into()),
    }
}

#[derive(Deserialize)]
pub struct Nothing {}

pub async fn logout(
    State(state): State<AppState>,
    CsrfForm { viewer, .. }: CsrfForm<Nothing>,
) -> Result<Response, WebError> {
    sessions::sign_out(&state, &viewer).await?;
    let mut response = see_other("/login");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cleared_cookie());
    Ok(response.into_response())
}
