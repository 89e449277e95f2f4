//! The dashboard: server-rendered pages at `/`, for people, on the same service layer as
//! the JSON API (`crate::services`): a page extracts, calls a service, and renders what it
//! answers with an askama template (`crates/tellify/templates/`, escaped by default).
//!
//! Pages work without JavaScript (links and forms); `static/app.js` only enhances: the live
//! regions (`data-live`, one SSE stream per tab, [`live`]), the keyboard keys, and bulk
//! selection. Every answer carries a strict Content-Security-Policy (scripts and styles
//! only from `/static/`, nothing inline, no framing) and `nosniff`.
//!
//! Adding a page: a handler taking [`Viewer`] (signed-in person) or [`CsrfForm`] (a
//! state-changing form), a template struct with a `layout: Layout` field extending
//! `base.html`, and a route in [`routes`]. Errors are [`WebError`]: a service's
//! "not found" is this site's 404 page whether the thing is missing or someone else's.

mod account;
mod act;
mod admin;
mod alerts;
mod assets;
mod auth;
mod events;
mod fields;
pub mod format;
mod live;
mod notifications;
mod session;
mod subscriptions;

use askama::Template;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

pub use session::{client_address, same_origin, CsrfForm, MaybeViewer, Viewer};

use crate::services::sessions::SignedIn;
use crate::services::{AppState, ServiceError};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tellify_session";

/// The Content-Security-Policy of every dashboard answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; \
frame-ancestors 'none'; base-uri 'none'";

/// The dashboard, ready to merge beside the API (`app.rs`): its routes, its security
/// headers, the panic guard the API has, and the same body limit.
pub fn router(state: AppState) -> Router {
    let limit = state.settings.ingest.max_body_bytes;
    routes()
        .layer(axum::middleware::from_fn(catch_panics))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The dashboard's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(alerts::home))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/alerts/bulk", post(alerts::bulk))
        .route("/alerts/{id}", get(alerts::detail))
        .route("/alerts/{id}/act", post(alerts::act))
        .route("/acks", get(alerts::acks))
        .route("/act/{token}", get(act::confirm).post(act::perform))
        .route("/live", get(live::live))
        .route("/account", get(account::account))
        .route("/account/profile", post(account::save_profile))
        .route("/account/password", post(account::change_password))
        .route("/admin", get(admin::overview))
        .route("/admin/users", get(admin::users).post(admin::create_user))
        .route("/admin/users/{name}", get(admin::user))
        .route("/admin/users/{name}/password", post(admin::reset_password))
        .route("/admin/users/{name}/role", post(admin::change_role))
        .route(
            "/admin/users/{name}/offboard",
            get(admin::offboard_preview).post(admin::offboard),
        )
        .route(
            "/admin/groups",
            get(admin::groups).post(admin::create_group),
        )
        .route("/admin/groups/{name}/members", post(admin::add_member))
        .route(
            "/admin/groups/{name}/members/{user}/remove",
            post(admin::remove_member),
        )
        .route(
            "/admin/event-types",
            get(admin::event_types).post(admin::save_event_type),
        )
        .route("/admin/event-types/new", get(admin::new_event_type))
        .route("/admin/event-types/{name}", get(admin::event_type))
        .route(
            "/admin/event-types/{name}/delete",
            post(admin::delete_event_type),
        )
        .route("/admin/tokens", get(admin::tokens))
        .route("/admin/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/admin/{*rest}", axum::routing::any(admin::unknown))
        .route("/static/{version}/{file}", get(assets::serve))
        // One line per area; each area's module owns its routes.
        .merge(subscriptions::routes())
        .merge(notifications::routes())
        .merge(events::routes())
        .layer(axum::middleware::from_fn(security_headers))
}

/// A page whose handler panicked answers the 500 page; the server lives on.
async fn catch_panics(request: Request, next: Next) -> Response {
    crate::telemetry::guard_panics(request, next, || {
        WebError::Internal("the server failed on this page; it has been logged".into())
            .into_response()
    })
    .await
}

/// Security headers on every dashboard answer; pages are never cached.
/// Also `Server-Timing: app;dur=<ms>`: the server's time to the answer's head, which the
/// dashboard benchmark reads (`docs/performance.md`).
async fn security_headers(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={millis:.2}")) {
        headers.insert("server-timing", value);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// What every page's frame shows: the title, who is signed in, the navigation, the CSRF
/// token for its forms, and the asset version.
pub struct Layout {
    pub title: String,
    /// Which navigation entry is current (`alerts`, `subscriptions`, ...).
    pub section: &'static str,
    pub user: Option<LayoutUser>,
    pub csrf: String,
    pub assets: &'static str,
    /// A one-line message from the last action (`?done=`), shown once.
    pub notice: Option<String>,
}

pub struct LayoutUser {
    pub name: String,
    pub admin: bool,
    pub timezone: String,
}

impl Layout {
    /// The frame of a signed-in page.
    pub fn new(title: impl Into<String>, section: &'static str, viewer: &SignedIn) -> Layout {
        let user = &viewer.principal.user;
        Layout {
            title: title.into(),
            section,
            user: Some(LayoutUser {
                name: user
                    .display_name
                    .clone()
                    .unwrap_or_else(|| user.name.clone()),
                admin: viewer.principal.is_admin(),
                timezone: user.timezone.clone(),
            }),
            csrf: viewer.csrf.clone(),
            assets: assets::version(),
            notice: None,
        }
    }

    /// The frame of a page shown to someone not signed in.
    pub fn anonymous(title: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            section: "",
            user: None,
            csrf: String::new(),
            assets: assets::version(),
            notice: None,
        }
    }

    pub fn with_notice(mut self, notice: Option<String>) -> Layout {
        self.notice = notice;
        self
    }

    /// `aria-current="page"` for the current section's link.
    pub fn current(&self, section: &str) -> &'static str {
        if self.section == section {
            "page"
        } else {
            "false"
        }
    }
}

/// Renders a template into an HTML answer.
pub fn render(template: &impl Template) -> Result<Response, WebError> {
    template
        .render()
        .map(|html| Html(html).into_response())
        .map_err(|error| WebError::Internal(format!("a page failed to render: {error}")))
}

/// Renders a template with a status other than 200.
pub fn render_status(status: StatusCode, template: &impl Template) -> Result<Response, WebError> {
    let mut response = render(template)?;
    *response.status_mut() = status;
    Ok(response)
}

/// After a form: back to `to` (303, so a reload does not post again).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A page-level failure.
#[derive(Debug)]
pub enum WebError {
    /// Not signed in: to the sign-in page, then back to `next`.
    SignIn {
        next: String,
    },
    NotFound,
    /// Gone for good (an action link expired or used), with what to say.
    Gone(String),
    BadRequest(String),
    Forbidden(String),
    /// A form posted from another site.
    CrossSite,
    /// A form without this session's token (an old tab after signing in again).
    CsrfMismatch,
    Conflict(String),
    /// Too many failed attempts, with when to try again.
    Limited {
        message: String,
        retry_after: u32,
    },
    Internal(String),
}

impl From<ServiceError> for WebError {
    fn from(error: ServiceError) -> WebError {
        match error {
            ServiceError::NotFound(_) => WebError::NotFound,
            ServiceError::Forbidden(message) => WebError::Forbidden(message),
            ServiceError::Conflict(message) => WebError::Conflict(message),
            ServiceError::Gone(message) => WebError::Gone(message),
            ServiceError::Limited {
                message,
                retry_after,
            } => WebError::Limited {
                message,
                retry_after,
            },
            ServiceError::Invalid(_) | ServiceError::Unprocessable(_) => {
                WebError::BadRequest(error.to_string())
            }
            ServiceError::Store(tellify_store::StoreError::NotFound) => WebError::NotFound,
            ServiceError::Store(tellify_store::StoreError::Conflict(message)) => {
                WebError::Conflict(message)
            }
            ServiceError::Store(tellify_store::StoreError::Action(action)) => {
                WebError::Conflict(action.to_string())
            }
            other => {
                tracing::error!(error = %other, "a dashboard page failed");
                WebError::Internal("the server failed on this page; it has been logged".into())
            }
        }
    }
}

impl From<tellify_store::StoreError> for WebError {
    fn from(error: tellify_store::StoreError) -> WebError {
        WebError::from(ServiceError::from(error))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    heading: &'static str,
    message: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut retry = None;
        let (status, heading, message) = match self {
            WebError::Limited {
                message,
                retry_after,
            } => {
                retry = Some(retry_after);
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts",
                    format!(
                        "{}; try again in {retry_after} s.",
                        format::capitalise(&message)
                    ),
                )
            }
            WebError::SignIn { next } => {
                let to = format!("/login?next={}", format::url_encode(&next));
                return Redirect::to(&to).into_response();
            }
            WebError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or it is not yours to see.".to_string(),
            ),
            WebError::Gone(message) => (StatusCode::GONE, "No longer valid", message),
            WebError::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, "That did not work", message)
            }
            WebError::Forbidden(message) => (StatusCode::FORBIDDEN, "Not allowed", message),
            WebError::CrossSite => (
                StatusCode::FORBIDDEN,
                "Refused",
                "This form was sent from another site.".to_string(),
            ),
            WebError::CsrfMismatch => (
                StatusCode::FORBIDDEN,
                "Please try again",
                "This form came from an older page. Reload the page and send it again.".to_string(),
            ),
            WebError::Conflict(message) => (StatusCode::CONFLICT, "That did not work", message),
            WebError::Internal(message) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                message,
            ),
        };
        let page = ErrorPage {
            layout: Layout::anonymous(heading),
            heading,
            message,
        };
        let mut response = match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, heading).into_response(),
        };
        if let Some(seconds) = retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

/// The version part of the static files' URLs (a hash of their contents).
pub fn asset_version() -> &'static str {
    assets::version()
}
