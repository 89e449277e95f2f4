//! A form's errors, each next to its field: what a service's `Invalid` answer becomes on a
//! page that shows the form again with what was typed.

use axum::http::StatusCode;

use super::WebError;
use crate::services::ServiceError;

/// Each failed field's message, by the field's name in the form.
#[derive(Debug, Default)]
pub struct FieldErrors {
    errors: Vec<(String, String)>,
    /// A problem that belongs to no field (shown above the form).
    pub form: Option<String>,
}

impl FieldErrors {
    /// The message for `field`, if it failed (several joined).
    pub fn of(&self, field: &str) -> Option<String> {
        let messages: Vec<&str> = self
            .errors
            .iter()
            .filter(|(path, _)| path == field || path.starts_with(&format!("{field}.")))
            .map(|(_, message)| message.as_str())
            .collect();
        (!messages.is_empty()).then(|| messages.join("; "))
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push((field.into(), message.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty() && self.form.is_none()
    }

    /// `aria-invalid` for a field.
    pub fn invalid(&self, field: &str) -> &'static str {
        if self.of(field).is_some() {
            "true"
        } else {
            "false"
        }
    }

    /// A service's answer to a form: field errors and the status to show them with, or
    /// the failure as a page of its own (not found, a storage failure).
    pub fn from_service(error: ServiceError) -> Result<(StatusCode, FieldErrors), WebError> {
        let mut errors = FieldErrors::default();
        let status = match error {
            ServiceError::Invalid(found) => {
                for error in found {
                    errors.add(error.path, error.message);
                }
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ServiceError::Unprocessable(message) => {
                errors.form = Some(message);
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ServiceError::Conflict(message) => {
                errors.form = Some(message);
                StatusCode::CONFLICT
            }
            ServiceError::Forbidden(message) => {
                errors.form = Some(message);
                StatusCode::FORBIDDEN
            }
            other => return Err(WebError::from(other)),
        };
        Ok((status, errors))
    }
}
