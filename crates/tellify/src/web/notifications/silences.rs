//! Silences: create one (a filter over the alert, until when, a comment) and delete one.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::FieldErrors;
use crate::services::{notify, AppState, ServiceError};
use crate::web::{render, render_status, see_other, CsrfForm, Layout, Viewer, WebError};

#[derive(Deserialize, Default)]
pub struct SilenceForm {
    #[serde(default)]
    filter: String,
    #[serde(default)]
    ends: String,
    #[serde(default)]
    comment: String,
}

#[derive(Template)]
#[template(path = "notifications_silence_new.html")]
struct NewPage {
    layout: Layout,
    form: SilenceForm,
    errors: FieldErrors,
}

pub async fn new_page(viewer: Viewer) -> Result<Response, WebError> {
    render(&NewPage {
        layout: Layout::new("New silence", "notifications", &viewer),
        form: SilenceForm {
            ends: "2h".to_string(),
            ..SilenceForm::default()
        },
        errors: FieldErrors::default(),
    })
}

pub async fn create(
    State(state): State<AppState>,
    CsrfForm { viewer, form }: CsrfForm<SilenceForm>,
) -> Result<Response, WebError> {
    let comment = form.comment.trim();
    let request = notify::NewSilence {
        filter: form.filter.trim().to_string(),
        starts: None,
        ends: form.ends.trim().to_string(),
        comment: (!comment.is_empty()).then(|| comment.to_string()),
    };
    match notify::create_silence(&state, &viewer.principal, None, request).await {
        Ok(_) => Ok(see_other("/notifications?done=silence-created")),
        Err(ServiceError::Invalid(errors)) => {
            let errors = FieldErrors::sort(&errors, |path| {
                ["filter", "ends"].contains(&path).then(|| path.to_string())
            });
            let page = NewPage {
                layout: Layout::new("New silence", "notifications", &viewer),
                form,
                errors,
            };
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, .. }: CsrfForm<super::contact_points::NoFields>,
) -> Result<Response, WebError> {
    notify::delete_silence(&state, &viewer.principal, None, &id).await?;
    Ok(see_other("/notifications?done=silence-deleted"))
}
