//! Contact points: add one (kind and the address that kind needs), "send me a test" with
//! the provider's answer, and delete (a contact point that policies use shows their names
//! and offers to take it out of them).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::FieldErrors;
use crate::services::{notify, AppState, ServiceError};
use crate::web::{render, render_status, see_other, CsrfForm, Layout, Viewer, WebError};

/// The kinds a person may add, with what each needs in its address.
pub const KINDS: [(&str, &str); 4] = [
    ("email", "an email address, such as ann@example.com"),
    (
        "sms",
        "a phone number with its country code, such as +4915112345678",
    ),
    ("webhook", "an https URL that receives signed JSON"),
    ("chat", "a Slack or Mattermost incoming webhook URL"),
];

#[derive(Deserialize, Default)]
pub struct ContactForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub secret: String,
}

#[derive(Template)]
#[template(path = "notifications_contact_new.html")]
struct NewPage {
    layout: Layout,
    form: ContactForm,
    errors: FieldErrors,
    kinds: Vec<(&'static str, &'static str)>,
    /// Set once created: the webhook secret generated for it, shown this once.
    created_secret: Option<(String, String)>,
}

fn new_page_of(viewer: &Viewer, form: ContactForm, errors: FieldErrors) -> NewPage {
    NewPage {
        layout: Layout::new("Add a contact point", "notifications", viewer),
        form,
        errors,
        kinds: KINDS.to_vec(),
        created_secret: None,
    }
}

pub async fn new_page(viewer: Viewer) -> Result<Response, WebError> {
    let form = ContactForm {
        kind: "email".to_string(),
        ..ContactForm::default()
    };
    render(&new_page_of(&viewer, form, FieldErrors::default()))
}

pub async fn create(
    State(state): State<AppState>,
    CsrfForm { viewer, form }: CsrfForm<ContactForm>,
) -> Result<Response, WebError> {
    let secret = form.secret.trim();
    let request = notify::NewContactPoint {
        name: form.name.trim().to_string(),
        kind: form.kind.clone(),
        address: form.address.clone(),
        secret: (!secret.is_empty()).then(|| secret.to_string()),
    };
    let created = notify::create_contact_point(&state, &viewer.principal, None, request).await;
    match created {
        Ok(created) if created.generated_secret => {
            let mut page = new_page_of(&viewer, ContactForm::default(), FieldErrors::default());
            page.layout.title = "Contact point added".to_string();
            page.created_secret = Some((
                created.point.name.clone(),
                created.point.secret.clone().unwrap_or_default(),
            ));
            render(&page)
        }
        Ok(_) => Ok(see_other("/notifications")),
        Err(ServiceError::Invalid(errors)) => {
            let errors = FieldErrors::sort(&errors, |path| {
                ["name", "kind", "address", "secret"]
                    .contains(&path)
                    .then(|| path.to_string())
            });
            let page = new_page_of(&viewer, form, errors);
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(ServiceError::Conflict(message)) => {
            let mut errors = FieldErrors::default();
            errors.by_field.insert("name".to_string(), message);
            let page = new_page_of(&viewer, form, errors);
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(Template)]
#[template(path = "notifications_contact_test.html")]
struct TestPage {
    layout: Layout,
    outcome: notify::TestOutcome,
    kind: String,
    address: String,
}

/// "Send me a test": sends at once and shows what the provider answered.
pub async fn test(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CsrfForm { viewer, .. }: CsrfForm<NoFields>,
) -> Result<Response, WebError> {
    let point = notify::contact_point(&state, &viewer.principal, None, &name).await?;
    let outcome = notify::test_contact_point(&state, &viewer.principal, None, &name).await?;
    let status = if outcome.ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    let page = TestPage {
        layout: Layout::new(format!("Test of {name}"), "notifications", &viewer),
        outcome,
        kind: point.kind,
        address: point.address,
    };
    render_status(status, &page)
}

#[derive(Template)]
#[template(path = "notifications_contact_delete.html")]
struct DeletePage {
    layout: Layout,
    name: String,
    kind: String,
    address: String,
    /// The refusal that names the policies using it; the page then offers force.
    conflict: Option<String>,
}

pub async fn confirm_delete(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    let point = notify::contact_point(&state, &viewer.principal, None, &name).await?;
    render(&DeletePage {
        layout: Layout::new(format!("Delete {name}?"), "notifications", &viewer),
        name: point.name,
        kind: point.kind,
        address: point.address,
        conflict: None,
    })
}

#[derive(Deserialize, Default)]
pub struct DeleteForm {
    #[serde(default)]
    force: String,
}

pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CsrfForm { viewer, form }: CsrfForm<DeleteForm>,
) -> Result<Response, WebError> {
    let force = form.force == "true";
    let principal = &viewer.principal;
    match notify::delete_contact_point(&state, principal, None, &name, force).await {
        Ok(()) => Ok(see_other("/notifications?done=contact-point-deleted")),
        Err(ServiceError::Conflict(message)) => {
            let point = notify::contact_point(&state, principal, None, &name).await?;
            let page = DeletePage {
                layout: Layout::new(format!("Delete {name}?"), "notifications", &viewer),
                name: point.name,
                kind: point.kind,
                address: point.address,
                conflict: Some(message),
            };
            render_status(StatusCode::CONFLICT, &page)
        }
        Err(other) => Err(other.into()),
    }
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize)]
pub struct NoFields {}
