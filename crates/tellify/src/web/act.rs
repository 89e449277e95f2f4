//! The pages behind a notification's action links (`/act/{token}`, see
//! [`crate::services::links`]): GET shows the alert, what the link does and for whom, and
//! a button; only the POST that button sends acts. Mail scanners and link previews
//! follow links, so a GET never changes anything.
//!
//! No session is needed: the token is the credential for its one action, so a phone that
//! never signed in can use it. A browser that is signed in sees the usual navigation
//! around the page, and is told when the link acts for someone else. The POST is still
//! refused when a browser says it came from another site. An expired or used link answers 410, a link that is not valid 404, each
//! with a page saying so in words and nothing more.

use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;
use std::net::IpAddr;
use tellify_engine::alerts::Alert;

use super::alerts::Row;
use super::client_address;
use super::format::{capitalise, url_encode, Clock};
use super::session::{read_form, same_origin};
use super::{render, render_status, Layout, MaybeViewer, WebError};
use crate::services::links::{self, LinkAction, LinkView, ShelveChoice};
use crate::services::sessions::SignedIn;
use crate::services::{AppState, ServiceError};

#[derive(Template)]
#[template(path = "act.html")]
pub struct ActPage {
    layout: Layout,
    alert: Row,
    /// `ack` or `shelve`.
    action: &'static str,
    /// Who the link acts for (their display name and handle).
    user: String,
    /// When the link stops working, in the user's zone.
    expires: String,
    /// What was done, once the button was pressed.
    done: Option<String>,
    /// The form's target.
    post_to: String,
    /// Whom the browser is signed in as, when it is signed in.
    signed_in_as: Option<SignedInAs>,
}

/// The browser's own session, next to the person the link acts for.
pub struct SignedInAs {
    /// The signed-in person's handle.
    name: String,
    /// Whether that is the person the link acts for (who can open the alert).
    is_link_user: bool,
}

#[derive(Template)]
#[template(path = "error.html")]
struct LinkProblemPage {
    layout: Layout,
    heading: &'static str,
    message: String,
}

/// The confirming page.
pub async fn confirm(
    State(state): State<AppState>,
    MaybeViewer(viewer): MaybeViewer,
    Path(token): Path<String>,
    request: Request,
) -> Result<Response, WebError> {
    let now = state.clock.now();
    let address = client_address(request.extensions());
    let view = match inspect_limited(&state, &token, address, now).await {
        Ok(view) => view,
        Err(error) => return Ok(problem(error, viewer.as_ref())),
    };
    if view.used {
        return Ok(problem(
            ServiceError::Gone("this link was already used".to_string()),
            viewer.as_ref(),
        ));
    }
    let page = page(&state, &token, &view.alert, &view, None, viewer.as_ref());
    render(&page)
}

/// The confirming form: for a shelve, how long.
#[derive(Deserialize)]
pub struct ActForm {
    /// `1h`, `tomorrow` or `resolves`; empty for an ack.
    #[serde(default)]
    shelve: String,
}

/// The click: performs the link's action once and shows the outcome.
pub async fn perform(
    State(state): State<AppState>,
    MaybeViewer(viewer): MaybeViewer,
    Path(token): Path<String>,
    request: Request,
) -> Result<Response, WebError> {
    same_origin(request.headers())?;
    let address = client_address(request.extensions());
    let (_, form): (_, ActForm) = read_form(request, &state).await?;
    let choice = match form.shelve.as_str() {
        "" => None,
        given => Some(ShelveChoice::parse(given).ok_or_else(|| {
            WebError::BadRequest(format!(
                "shelve: `{given}` is not one of 1h, tomorrow, resolves"
            ))
        })?),
    };
    let now = state.clock.now();
    // Read before acting, for the page: who it is for and how it reads in their zone.
    let view = match inspect_limited(&state, &token, address, now).await {
        Ok(view) => view,
        Err(error) => return Ok(problem(error, viewer.as_ref())),
    };
    let alert = match links::redeem(&state, &token, choice, now).await {
        Ok(alert) => alert,
        Err(error) => return Ok(problem(error, viewer.as_ref())),
    };
    let clock = Clock::new(&view.user.timezone, state.clock.now());
    let row = Row::new(&alert, &clock);
    let done = match view.action {
        LinkAction::Ack => "Acknowledged.".to_string(),
        LinkAction::Shelve => match &row.shelve {
            Some(shelve) => format!("Done: {shelve}."),
            None => "Shelved.".to_string(),
        },
    };
    let page = page(&state, &token, &alert, &view, Some(done), viewer.as_ref());
    render(&page)
}

/// [`links::inspect`], refused while the client's address has sent too many links that
/// were not valid, and counting each such link against it.
async fn inspect_limited(
    state: &AppState,
    token: &str,
    address: Option<IpAddr>,
    now: Timestamp,
) -> Result<LinkView, ServiceError> {
    if let Err(retry_after) = state.login_limits.check_links(address, now) {
        return Err(ServiceError::Limited {
            message: "too many links that are not valid from this address".to_string(),
            retry_after,
        });
    }
    let inspected = links::inspect(state, token, now).await;
    if let Err(ServiceError::NotFound(_)) = &inspected {
        state.login_limits.record_bad_link(address, now);
    }
    inspected
}

fn page(
    state: &AppState,
    token: &str,
    alert: &Alert,
    view: &LinkView,
    done: Option<String>,
    viewer: Option<&SignedIn>,
) -> ActPage {
    let clock = Clock::new(&view.user.timezone, state.clock.now());
    let user = match &view.user.display_name {
        Some(display) => format!("{display} ({})", view.user.name),
        None => view.user.name.clone(),
    };
    let title = match view.action {
        LinkAction::Ack => "Acknowledge this alert",
        LinkAction::Shelve => "Shelve this alert",
    };
    ActPage {
        layout: layout(title, viewer),
        alert: Row::new(alert, &clock),
        action: view.action.as_str(),
        user,
        expires: clock.at(view.expires),
        done,
        post_to: format!("/act/{}", url_encode(token)),
        signed_in_as: viewer.map(|viewer| SignedInAs {
            name: viewer.principal.user.name.clone(),
            is_link_user: viewer.principal.user.id == view.user.id,
        }),
    }
}

/// The usual frame with navigation when the browser is signed in, else the bare one.
fn layout(title: &str, viewer: Option<&SignedIn>) -> Layout {
    match viewer {
        Some(viewer) => Layout::new(title, "alerts", viewer),
        None => Layout::anonymous(title),
    }
}

/// A link that cannot be used, in words: 410 when it expired or was used, 404 when it
/// is not valid (or its alert or person is gone); any other failure is the usual page.
fn problem(error: ServiceError, viewer: Option<&SignedIn>) -> Response {
    let (status, heading, message) = match error {
        ServiceError::Gone(message) => (StatusCode::GONE, "This link no longer works", {
            format!(
                "{}. Open tellify to act on the alert.",
                capitalise(&message)
            )
        }),
        ServiceError::NotFound(_) => (
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "Check that the whole link was opened; links work only as they were sent. \
             The alert may also be gone, or no longer yours."
                .to_string(),
        ),
        other => return WebError::from(other).into_response(),
    };
    let page = LinkProblemPage {
        layout: layout(heading, viewer),
        heading,
        message,
    };
    match render_status(status, &page) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}
