//! Who is asking, for the dashboard: the session cookie, the CSRF checks, and the
//! extractors pages take.
//!
//! - [`Viewer`]: a signed-in person; without a session, pages redirect to `/login` (with the
//!   page to come back to) and fragments answer 401.
//! - [`CsrfForm`]: an `application/x-www-form-urlencoded` body of a state-changing request,
//!   accepted only from this site (`Sec-Fetch-Site`, else `Origin` against `Host`) and only
//!   with the session's CSRF token in `_csrf`.
//! - [`same_origin`]: the site check alone, for forms without a session (sign-in, action
//!   links, whose own token is the credential).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;

use super::{WebError, SESSION_COOKIE};
use crate::services::sessions::{self, SignedIn};
use crate::services::AppState;

/// The signed-in person.
#[derive(Clone)]
pub struct Viewer(pub SignedIn);

impl std::ops::Deref for Viewer {
    type Target = SignedIn;
    fn deref(&self) -> &SignedIn {
        &self.0
    }
}

/// The signed-in person, if any.
pub struct MaybeViewer(pub Option<SignedIn>);

/// The session cookie's value, if the request carries one.
pub fn session_secret(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
}

async fn signed_in(parts: &Parts, state: &AppState) -> Result<Option<SignedIn>, WebError> {
    let Some(secret) = session_secret(&parts.headers) else {
        return Ok(None);
    };
    Ok(sessions::resolve(state, secret).await?)
}

impl FromRequestParts<AppState> for MaybeViewer {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        Ok(MaybeViewer(signed_in(parts, state).await?))
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        match signed_in(parts, state).await? {
            Some(signed_in) => Ok(Viewer(signed_in)),
            None => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".to_string());
                Err(WebError::SignIn { next })
            }
        }
    }
}

/// The client's address, for the sign-in limits.
pub fn client_address(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|connect| connect.0.ip())
}

/// Whether a state-changing request comes from a page of this site. Browsers send
/// `Sec-Fetch-Site` (trusted when present); older ones send `Origin`, compared with `Host`.
/// A request with neither (curl, a test client) passes this check, but still needs the
/// session's CSRF token, which only this site's pages carry.
pub fn same_origin(headers: &HeaderMap) -> Result<(), WebError> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => Err(WebError::CrossSite),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(WebError::CrossSite)
    }
}

/// A form body with the session's CSRF token, from this site, by a signed-in person.
pub struct CsrfForm<T> {
    pub viewer: Viewer,
    pub form: T,
}

/// Reads an urlencoded body into `T` (repeated keys into `Vec`s), answering a page that
/// names what is wrong.
pub async fn read_form<T: DeserializeOwned>(
    request: Request,
    state: &AppState,
) -> Result<(Parts, T), WebError> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, state.settings.ingest.max_body_bytes)
        .await
        .map_err(|_| WebError::BadRequest("the form is too large".to_string()))?;
    let form = serde_html_form::from_bytes(&bytes)
        .map_err(|error| WebError::BadRequest(format!("the form could not be read: {error}")))?;
    Ok((parts, form))
}

#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = WebError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, WebError> {
        same_origin(request.headers())?;
        let (mut parts, bytes) = {
            let (parts, body) = request.into_parts();
            let bytes = axum::body::to_bytes(body, state.settings.ingest.max_body_bytes)
                .await
                .map_err(|_| WebError::BadRequest("the form is too large".to_string()))?;
            (parts, bytes)
        };
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let token: CsrfField =
            serde_html_form::from_bytes(&bytes).map_err(|_| WebError::CsrfMismatch)?;
        if !sessions::csrf_matches(&viewer, &token.csrf) {
            return Err(WebError::CsrfMismatch);
        }
        let form = serde_html_form::from_bytes(&bytes).map_err(|error| {
            WebError::BadRequest(format!("the form could not be read: {error}"))
        })?;
        Ok(CsrfForm { viewer, form })
    }
}

/// The `Set-Cookie` value that carries a new session (`Secure` when the public URL is
/// https).
pub fn session_cookie(secret: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("tellify_session=; Path=/"))
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("tellify_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
}
