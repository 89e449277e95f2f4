//! One error type for the API: it knows its HTTP status and renders as
//! `application/problem+json`. A 500 tells the client nothing internal; the cause is logged.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};
use tellify_engine::alerts::ActionError;
use tellify_engine::ParamError;
use tellify_store::StoreError;

use crate::ingest::{describe_problems, IngestError};
use crate::services::ServiceError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<Value>,
    /// Sent as `Retry-After` (seconds).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "Not Found",
            format!("{what} not found"),
        )
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "Bad Request", detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable Entity",
            detail,
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "Forbidden", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "Conflict", detail)
    }

    pub fn with_errors<T: Serialize>(mut self, errors: &[T]) -> ApiError {
        self.errors = errors
            .iter()
            .filter_map(|error| serde_json::to_value(error).ok())
            .collect();
        self
    }

    /// Parameter failures: 422 with every failure and its path.
    pub fn params(errors: &[ParamError]) -> ApiError {
        let summary: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        ApiError::unprocessable(summary.join("; ")).with_errors(errors)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound => ApiError::not_found("resource"),
            StoreError::Conflict(message) => ApiError::conflict(message),
            StoreError::Action(ActionError::Conflict(message)) => ApiError::conflict(message),
            StoreError::Action(ActionError::Invalid(message)) => ApiError::unprocessable(message),
            StoreError::Unavailable(cause) => {
                tracing::error!(%cause, "storage failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable",
                    "storage is unavailable; try again shortly",
                )
            }
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> ApiError {
        match error {
            IngestError::UnsupportedMediaType(message) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Media Type",
                message,
            ),
            IngestError::TooLarge(message) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large", message)
            }
            IngestError::Malformed(problems) => {
                ApiError::bad_request(describe_problems(&problems)).with_errors(&problems)
            }
            IngestError::Invalid(problems) => {
                ApiError::unprocessable(describe_problems(&problems)).with_errors(&problems)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if !self.errors.is_empty() {
            body["errors"] = Value::Array(self.errors);
        }
        let mut response = (self.status, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"tellify\""),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> ApiError {
        match error {
            ServiceError::NotFound(what) => ApiError::not_found(what),
            ServiceError::Invalid(errors) => ApiError::params(&errors),
            ServiceError::Unprocessable(detail) => ApiError::unprocessable(detail),
            ServiceError::Conflict(detail) => ApiError::conflict(detail),
            ServiceError::Forbidden(detail) => ApiError::forbidden(detail),
            ServiceError::Gone(detail) => ApiError::new(StatusCode::GONE, "Gone", detail),
            ServiceError::Upstream(detail) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "Bad Gateway", detail)
            }
            ServiceError::Limited {
                message,
                retry_after,
            } => {
                let mut error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too Many Requests",
                    format!("{message}; try again in {retry_after} s"),
                );
                error.retry_after = Some(retry_after);
                error
            }
            ServiceError::Internal(detail) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                detail,
            ),
            ServiceError::Store(error) => error.into(),
        }
    }
}
