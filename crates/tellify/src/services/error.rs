//! What a service call can answer besides success, sorted by what the caller should do
//! next. The faces translate it: `api/error.rs` maps each kind to an HTTP status and
//! problem+json; the dashboard will render the same kinds as pages.

use tellify_engine::ParamError;
use tellify_store::StoreError;

use crate::auth::{Principal, Scope};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The thing does not exist, or the caller may not see it (the two look the same, so
    /// nobody learns what others have).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Input failed validation: every failure with its path.
    #[error("{}", summary(.0))]
    Invalid(Vec<ParamError>),
    /// Input the caller must change that has no single field to blame.
    #[error("{0}")]
    Unprocessable(String),
    /// The request clashes with the current state (a name taken, yourself offboarded).
    #[error("{0}")]
    Conflict(String),
    /// The thing existed but can no longer be used (an expired or used action link).
    #[error("{0}")]
    Gone(String),
    /// The caller is known but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed attempts: try again after `retry_after` seconds.
    #[error("{message}; try again in {retry_after} s")]
    Limited { message: String, retry_after: u32 },
    /// A system the caller named (an engine to import from) failed; the text is
    /// tellify's, never what answered.
    #[error("{0}")]
    Upstream(String),
    /// tellify itself failed in a way the caller cannot fix; the text is safe to show.
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    /// One field's failure.
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> ServiceError {
        ServiceError::Invalid(vec![ParamError::new(path, message)])
    }

    /// `Ok` when nothing failed, else every failure at once.
    pub fn check(errors: Vec<ParamError>) -> ServiceResult<()> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Invalid(errors))
        }
    }
}

fn summary(errors: &[ParamError]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|error| format!("{}: {}", error.path, error.message))
        .collect();
    parts.join("; ")
}

/// The caller's token must grant `scope`.
pub fn require(principal: &Principal, scope: Scope) -> ServiceResult<()> {
    if principal.has(scope) {
        return Ok(());
    }
    Err(ServiceError::Forbidden(format!(
        "this token has the `{}` scope; this needs `{}`",
        principal.scope.as_str(),
        scope.as_str()
    )))
}
