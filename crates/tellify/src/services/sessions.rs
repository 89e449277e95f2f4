//! Dashboard sign-in: passwords (argon2id) and server-side sessions.
//!
//! A session is a random 32-byte secret in an `HttpOnly`, `SameSite=Lax` cookie; the store
//! keeps only its SHA-256, the user, a per-session CSRF token, and its expiry: idle for
//! [`IDLE`] or older than [`MAX_AGE`] ends it. Signing in always makes a new session (the
//! id rotates; a cookie planted before sign-in opens nothing), signing out deletes it
//! server-side, and changing or resetting a password ends the user's other sessions.
//!
//! Failed sign-ins are limited per account and per client address, so neither guessing
//! one account's password from many addresses nor many accounts from one address works.
//! The answer to a failure never says whether the account exists.
//!
//! **Invariant:** no password, hash or session secret is logged or returned in an error.

use std::net::IpAddr;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use tellify_store::{User, WebSession};

use super::error::{ServiceError, ServiceResult};
use super::Services;
use crate::auth::{hash_token, FailureLimiter, Principal, Scope};

/// A session unused this long ends.
pub const IDLE: SignedDuration = SignedDuration::from_hours(12);
/// A session ends this long after sign-in, used or not.
pub const MAX_AGE: SignedDuration = SignedDuration::from_hours(7 * 24);
/// Shortest and longest password, in characters.
pub const MIN_PASSWORD: usize = 10;
pub const MAX_PASSWORD: usize = 1024;
/// Failed sign-ins per account, and per client address, in [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES_PER_ACCOUNT: u32 = 10;
pub const LOGIN_FAILURES_PER_ADDRESS: u32 = 30;
pub const LOGIN_WINDOW: SignedDuration = SignedDuration::from_mins(15);
/// Action links (`/act/{token}`) that were not valid, per client address, in
/// [`LOGIN_WINDOW`]: a link is unguessable, so a client that keeps sending bad ones is
/// probing.
pub const BAD_LINKS_PER_ADDRESS: u32 = 30;

/// The limits on failed password checks, kept for the life of the server: sign-ins, and
/// the current password given to change one's own (a stolen session must not become a
/// way around the sign-in limit), counted per account and per address; and action links
/// that were not valid, per address.
pub struct LoginLimits {
    accounts: FailureLimiter<String>,
    addresses: FailureLimiter<IpAddr>,
    bad_links: FailureLimiter<IpAddr>,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            accounts: FailureLimiter::with(LOGIN_FAILURES_PER_ACCOUNT, LOGIN_WINDOW),
            addresses: FailureLimiter::with(LOGIN_FAILURES_PER_ADDRESS, LOGIN_WINDOW),
            bad_links: FailureLimiter::with(BAD_LINKS_PER_ADDRESS, LOGIN_WINDOW),
        }
    }
}

impl LoginLimits {
    /// `Err(seconds)` while `account` has failed too often.
    pub fn check_account(&self, account: &str, now: Timestamp) -> Result<(), u32> {
        self.accounts.check(account.trim().to_string(), now)
    }

    /// Counts a wrong password given for `account`.
    pub fn record_account(&self, account: &str, now: Timestamp) {
        self.accounts.record(account.trim().to_string(), now);
    }

    /// `Err(seconds)` while `address` has sent too many links that were not valid.
    pub fn check_links(&self, address: Option<IpAddr>, now: Timestamp) -> Result<(), u32> {
        match address {
            Some(address) => self.bad_links.check(address, now),
            None => Ok(()),
        }
    }

    /// Counts a link from `address` that was not valid.
    pub fn record_bad_link(&self, address: Option<IpAddr>, now: Timestamp) {
        if let Some(address) = address {
            self.bad_links.record(address, now);
        }
    }
}

/// Why a sign-in failed, in words a sign-in page may show.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Wrong name or password (which one is not said).
    #[error("that name and password do not match an account")]
    Mismatch,
    #[error("too many failed sign-ins; try again in {retry_after} s")]
    Limited { retry_after: u32 },
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// A session just made: `secret` goes into the cookie and nowhere else.
pub struct NewSession {
    pub secret: String,
    pub csrf: String,
    pub user: User,
    pub expires: Timestamp,
}

/// A signed-in request's session.
#[derive(Clone)]
pub struct SignedIn {
    pub principal: Principal,
    pub csrf: String,
    pub id_hash: String,
}

/// The argon2id hash of a password (PHC string, random salt).
pub fn hash_password(password: &str) -> ServiceResult<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)
        .map_err(|_| ServiceError::Internal("could not make a password salt".into()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| ServiceError::Internal("could not hash the password".into()))
}

/// Whether `password` matches a stored hash; a hash that does not parse matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Checks a new password's length; `path` names the field in the error.
pub fn check_password(password: &str, path: &str) -> ServiceResult<()> {
    let length = password.chars().count();
    if length < MIN_PASSWORD {
        return Err(ServiceError::field(
            path,
            format!("must be at least {MIN_PASSWORD} characters"),
        ));
    }
    if length > MAX_PASSWORD {
        return Err(ServiceError::field(
            path,
            format!("must be at most {MAX_PASSWORD} characters"),
        ));
    }
    Ok(())
}

/// A hash to verify against when the account does not exist, so that a failure takes
/// as long whether or not the name is known.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("no account has this password").unwrap_or_default())
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Signs `name` in with `password` from `address`: a new session, or why not. Runs the
/// password check on a blocking thread (argon2 takes tens of milliseconds on purpose).
pub async fn sign_in(
    services: &Services,
    name: &str,
    password: &str,
    address: Option<IpAddr>,
) -> Result<NewSession, SignInError> {
    let now = services.clock.now();
    let limits = &services.login_limits;
    let account = name.trim().to_string();
    let limited = limits
        .accounts
        .check(account.clone(), now)
        .err()
        .or_else(|| address.and_then(|a| limits.addresses.check(a, now).err()));
    if let Some(retry_after) = limited {
        return Err(SignInError::Limited { retry_after });
    }
    let user = services
        .store
        .user_by_name(&account)
        .await
        .map_err(ServiceError::from)?;
    let hash = match &user {
        Some(user) => services
            .store
            .password_hash(&user.id)
            .await
            .map_err(ServiceError::from)?,
        None => None,
    };
    let matched = {
        let password = password.to_string();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| decoy_hash().to_string());
        tokio::task::spawn_blocking(move || verify_password(&password, &hash) && known)
            .await
            .unwrap_or(false)
    };
    let Some(user) = user.filter(|_| matched) else {
        limits.accounts.record(account, now);
        if let Some(address) = address {
            limits.addresses.record(address, now);
        }
        return Err(SignInError::Mismatch);
    };
    let secret = new_secret();
    let csrf = new_secret();
    let expires = now.saturating_add(IDLE).unwrap_or(now);
    services
        .store
        .create_web_session(WebSession {
            id_hash: hash_token(&secret),
            user_id: user.id.clone(),
            csrf: csrf.clone(),
            created: now,
            seen: now,
            expires,
        })
        .await
        .map_err(ServiceError::from)?;
    tracing::info!(user = %user.name, "signed in to the dashboard");
    Ok(NewSession {
        secret,
        csrf,
        user,
        expires,
    })
}

/// The session a cookie's secret opens, if any: the caller as a [`Principal`] (an admin
/// user's session has the admin scope), with the session's CSRF token. Extends the idle
/// expiry at most once a minute, within [`MAX_AGE`].
pub async fn resolve(services: &Services, secret: &str) -> ServiceResult<Option<SignedIn>> {
    if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let now = services.clock.now();
    let id_hash = hash_token(secret);
    let Some(session) = services.store.web_session(&id_hash, now).await? else {
        return Ok(None);
    };
    let Some(user) = services.store.user_by_id(&session.user_id).await? else {
        return Ok(None);
    };
    if now.duration_since(session.seen) >= SignedDuration::from_mins(1) {
        let idle_end = now.saturating_add(IDLE).unwrap_or(now);
        let age_end = session.created.saturating_add(MAX_AGE).unwrap_or(now);
        services
            .store
            .touch_web_session(&id_hash, now, idle_end.min(age_end))
            .await?;
    }
    let group_ids = services.store.groups_of(&user.id).await?;
    let scope = if user.admin {
        Scope::Admin
    } else {
        Scope::User
    };
    Ok(Some(SignedIn {
        principal: Principal {
            user,
            token_id: "dashboard session".to_string(),
            scope,
            group_ids,
            expires: Some(session.expires),
        },
        csrf: session.csrf,
        id_hash,
    }))
}

/// Ends a session server-side.
pub async fn sign_out(services: &Services, signed_in: &SignedIn) -> ServiceResult<()> {
    services
        .store
        .delete_web_session(&signed_in.id_hash)
        .await?;
    Ok(())
}

/// Whether `given` is the session's CSRF token, compared in constant time.
pub fn csrf_matches(signed_in: &SignedIn, given: &str) -> bool {
    let expected = signed_in.csrf.as_bytes();
    let given = given.as_bytes();
    if expected.len() != given.len() {
        return false;
    }
    expected
        .iter()
        .zip(given)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("correct horse battery", "not a hash"));
        let again = hash_password("correct horse battery").unwrap();
        assert_ne!(hash, again, "each hash has its own salt");
    }

    #[test]
    fn passwords_have_a_length_range_named_in_the_error() {
        let short = check_password("short", "password").unwrap_err().to_string();
        assert!(short.contains("password: must be at least 10"), "{short}");
        assert!(check_password("long enough now", "password").is_ok());
        let long = "x".repeat(MAX_PASSWORD + 1);
        assert!(check_password(&long, "password").is_err());
    }
}
