//! Who is asking: bearer tokens, their scopes and expiry, the viewer they act as, and the
//! limit on failed attempts.
//!
//! A token is `tfy_` followed by 64 hex digits (32 random bytes). Only its SHA-256 is
//! stored. Scopes nest: `admin` (only for admin users) includes `user`, which includes
//! `ingest`; an `ingest` token may call only the event ingest routes (see
//! `api::INGEST_ROUTES`). A token may carry an expiry, checked on every request against
//! the injected clock, cache or not.
//!
//! Failed attempts (an unknown, revoked or expired token) are counted per client address
//! ([`FailureLimiter`]): past `auth.max_failures` in `auth.failure_window_secs`, requests
//! from that address get 429 with `Retry-After` and their token is not even looked up, so
//! guessing tokens costs the guesser time, not the server work.
//!
//! **Invariant:** no secret leaves this module: errors and logs name a token by its id,
//! never by its secret or hash.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tellify_store::{Store, StoreError, User, Viewer};

/// How long a resolved token is trusted without asking the store again. Revoking a token
/// or changing a user clears the cache at once, so this only bounds staleness between
/// nodes.
const CACHE_TTL: Duration = Duration::from_secs(30);

/// The shortest bootstrap token accepted, in characters.
pub const BOOTSTRAP_MIN_LENGTH: usize = 24;
/// The fewest different characters a bootstrap token must have.
pub const BOOTSTRAP_MIN_DISTINCT: usize = 10;

/// The shortest and longest token lifetime (`expires`).
pub const MIN_TOKEN_LIFETIME: SignedDuration = SignedDuration::from_secs(60);
pub const MAX_TOKEN_LIFETIME: SignedDuration = SignedDuration::from_secs(5 * 365 * 86_400);

/// Client addresses whose failures are remembered at most; past it, windows that ended
/// are dropped, and if that is not enough, all of them.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// `[auth]`: the limit on failed authentication.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Failed authentications one client address may make in a window (1 to 100000);
    /// further requests from it get 429 with `Retry-After` until the window ends.
    pub max_failures: u32,
    /// The window, in seconds (1 to 86400), starting at the address's first failure.
    pub failure_window_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            max_failures: 20,
            failure_window_secs: 60,
        }
    }
}

impl AuthSettings {
    /// Every setting out of its range, as `auth.<key>: must be ...`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=100_000).contains(&self.max_failures) {
            problems.push(format!(
                "auth.max_failures: must be 1 to 100000 (is {})",
                self.max_failures
            ));
        }
        if !(1..=86_400).contains(&self.failure_window_secs) {
            problems.push(format!(
                "auth.failure_window_secs: must be 1 to 86400 (is {})",
                self.failure_window_secs
            ));
        }
        problems
    }
}

/// Checks a supplied bootstrap token (`TELLIFY_BOOTSTRAP_TOKEN`): it becomes an admin
/// token, so it must be long and varied enough not to be guessed. The message names the
/// rule and what the token has, never the token.
pub fn check_bootstrap_token(secret: &str) -> Result<(), String> {
    let length = secret.chars().count();
    let mut distinct: Vec<char> = secret.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if length >= BOOTSTRAP_MIN_LENGTH && distinct.len() >= BOOTSTRAP_MIN_DISTINCT {
        return Ok(());
    }
    Err(format!(
        "TELLIFY_BOOTSTRAP_TOKEN: must be at least {BOOTSTRAP_MIN_LENGTH} characters with at \
         least {BOOTSTRAP_MIN_DISTINCT} different ones (it has {length} characters, {} \
         different); unset it to have a random admin token made and printed once",
        distinct.len()
    ))
}

/// Parses a token lifetime such as `90d`: 1 minute to 5 years.
pub fn parse_token_lifetime(text: &str) -> Result<SignedDuration, String> {
    let range = "must be a duration from 1m to 1825d (5 years), such as 90d";
    let lifetime = tellify_model::parse_duration(text).map_err(|_| range.to_string())?;
    if lifetime < MIN_TOKEN_LIFETIME || lifetime > MAX_TOKEN_LIFETIME {
        return Err(range.to_string());
    }
    Ok(lifetime)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Ingest,
    User,
    Admin,
}

impl Scope {
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "ingest" => Some(Scope::Ingest),
            "user" => Some(Scope::User),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::User => "user",
            Scope::Admin => "admin",
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user: User,
    pub token_id: String,
    /// The highest scope the token grants (an `admin` scope on a non-admin user counts
    /// as `user`).
    pub scope: Scope,
    pub group_ids: Vec<String>,
    /// When the token stops working, if ever.
    pub expires: Option<Timestamp>,
}

impl Principal {
    pub fn has(&self, needed: Scope) -> bool {
        self.scope >= needed
    }

    pub fn is_admin(&self) -> bool {
        self.scope == Scope::Admin
    }

    pub fn viewer(&self) -> Viewer {
        Viewer {
            user_id: self.user.id.clone(),
            group_ids: self.group_ids.clone(),
        }
    }

    /// Whether the caller may see something owned by this user or group.
    pub fn can_see(&self, owner_user: Option<&str>, owner_group: Option<&str>) -> bool {
        self.is_admin() || self.viewer().can_see(owner_user, owner_group)
    }
}

/// Makes a new token secret and its stored hash.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("tfy_{}", hex(&bytes));
    let hash = hash_token(&secret);
    (secret, hash)
}

pub fn hash_token(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Why a token was not accepted.
#[derive(Debug)]
pub enum AuthFailure {
    /// No such token: never made, revoked, or its user is gone.
    Unknown,
    Expired,
    /// Too many failures from this address; try again after this many seconds.
    Limited {
        retry_after: u32,
    },
    Store(StoreError),
}

impl From<StoreError> for AuthFailure {
    fn from(error: StoreError) -> AuthFailure {
        AuthFailure::Store(error)
    }
}

/// Resolves bearer tokens to principals, with a short-lived cache, and limits failures.
#[derive(Clone)]
pub struct Authenticator {
    cache: Arc<Mutex<HashMap<String, (Principal, Instant)>>>,
    failures: Arc<FailureLimiter>,
}

impl Default for Authenticator {
    fn default() -> Self {
        Authenticator::new(&AuthSettings::default())
    }
}

impl Authenticator {
    pub fn new(settings: &AuthSettings) -> Authenticator {
        Authenticator {
            cache: Arc::default(),
            failures: Arc::new(FailureLimiter::new(settings)),
        }
    }

    /// Resolves `secret` sent from `client` at `now`: refused without a lookup when the
    /// address has failed too often; a failure counts against the address.
    pub async fn authenticate(
        &self,
        store: &dyn Store,
        secret: &str,
        client: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<Principal, AuthFailure> {
        if let Some(address) = client {
            if let Err(retry_after) = self.failures.check(address, now) {
                metrics::counter!(crate::telemetry::AUTH_FAILURES, "outcome" => "limited")
                    .increment(1);
                return Err(AuthFailure::Limited { retry_after });
            }
        }
        let failure = match self.resolve(store, secret).await? {
            Some(principal) if principal.expires.is_some_and(|end| now >= end) => {
                AuthFailure::Expired
            }
            Some(principal) => return Ok(principal),
            None => AuthFailure::Unknown,
        };
        let outcome = match failure {
            AuthFailure::Expired => "expired",
            _ => "unknown",
        };
        metrics::counter!(crate::telemetry::AUTH_FAILURES, "outcome" => outcome).increment(1);
        if let Some(address) = client {
            self.failures.record(address, now);
        }
        Err(failure)
    }

    /// The principal of `secret`, expired or not; `None` for an unknown token.
    pub async fn resolve(
        &self,
        store: &dyn Store,
        secret: &str,
    ) -> Result<Option<Principal>, StoreError> {
        let hash = hash_token(secret);
        if let Ok(cache) = self.cache.lock() {
            if let Some((principal, at)) = cache.get(&hash) {
                if at.elapsed() < CACHE_TTL {
                    return Ok(Some(principal.clone()));
                }
            }
        }
        let Some(token) = store.token_by_hash(&hash).await? else {
            return Ok(None);
        };
        let Some(user) = store.user_by_id(&token.user_id).await? else {
            return Ok(None);
        };
        let mut scope = token
            .scopes
            .iter()
            .filter_map(|s| Scope::parse(s))
            .max()
            .unwrap_or(Scope::Ingest);
        if scope == Scope::Admin && !user.admin {
            scope = Scope::User;
        }
        let group_ids = store.groups_of(&user.id).await?;
        let principal = Principal {
            user,
            token_id: token.id,
            scope,
            group_ids,
            expires: token.expires,
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(hash, (principal.clone(), Instant::now()));
        }
        Ok(Some(principal))
    }

    /// Forgets every cached principal: call after revoking tokens or changing users or
    /// group membership.
    pub fn invalidate(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }
}

/// Failed authentications per key (a client address, or an account name for the
/// dashboard's sign-in) in fixed windows that start at a key's first failure. IPv6
/// addresses count by their /64 network, which one client usually holds whole. The map is
/// bounded: windows that ended are dropped once a window has passed since the last sweep,
/// or when it is full.
pub struct FailureLimiter<K = IpAddr> {
    max_failures: u32,
    window: SignedDuration,
    state: Mutex<Failures<K>>,
}

struct Failures<K> {
    by_key: HashMap<K, FailureWindow>,
    swept: Option<Timestamp>,
}

struct FailureWindow {
    started: Timestamp,
    failures: u32,
}

/// What failures count against: the key as given, or a coarser one.
pub trait LimitKey: std::hash::Hash + Eq + Clone {
    fn limit_key(self) -> Self;
}

impl LimitKey for IpAddr {
    /// IPv4 as is, IPv6 by its /64 (an IPv4-mapped IPv6 address as its IPv4).
    fn limit_key(self) -> IpAddr {
        match self {
            IpAddr::V4(_) => self,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let network = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(network.into())
                }
            },
        }
    }
}

impl LimitKey for String {
    /// Account names count case-blind, so `Ann` and `ann` share one budget.
    fn limit_key(self) -> String {
        self.to_lowercase()
    }
}

impl FailureLimiter<IpAddr> {
    pub fn new(settings: &AuthSettings) -> FailureLimiter<IpAddr> {
        let seconds = i64::try_from(settings.failure_window_secs).unwrap_or(i64::MAX);
        FailureLimiter::with(settings.max_failures, SignedDuration::from_secs(seconds))
    }
}

impl<K: LimitKey> FailureLimiter<K> {
    /// At most `max_failures` (at least 1) per key in each `window`.
    pub fn with(max_failures: u32, window: SignedDuration) -> FailureLimiter<K> {
        FailureLimiter {
            max_failures: max_failures.max(1),
            window,
            state: Mutex::new(Failures {
                by_key: HashMap::new(),
                swept: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Failures<K>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ends(&self, window: &FailureWindow) -> Timestamp {
        window
            .started
            .checked_add(self.window)
            .unwrap_or(Timestamp::MAX)
    }

    /// `Err(seconds)` until the key may try again.
    pub fn check(&self, key: K, now: Timestamp) -> Result<(), u32> {
        let state = self.lock();
        let Some(window) = state.by_key.get(&key.limit_key()) else {
            return Ok(());
        };
        let ends = self.ends(window);
        if window.failures < self.max_failures || now >= ends {
            return Ok(());
        }
        let remaining = ends.duration_since(now);
        let mut seconds = remaining.as_secs();
        if remaining.subsec_nanos() > 0 {
            seconds += 1;
        }
        Err(u32::try_from(seconds.max(1)).unwrap_or(u32::MAX))
    }

    pub fn record(&self, key: K, now: Timestamp) {
        let mut state = self.lock();
        let sweep_due = state
            .swept
            .is_none_or(|swept| now.duration_since(swept) >= self.window);
        if sweep_due || state.by_key.len() >= MAX_TRACKED_ADDRESSES {
            state.by_key.retain(|_, window| now < self.ends(window));
            state.swept = Some(now);
            if state.by_key.len() >= MAX_TRACKED_ADDRESSES {
                tracing::warn!(
                    keys = state.by_key.len(),
                    "too many addresses or accounts with failed authentication; forgetting them"
                );
                state.by_key.clear();
            }
        }
        let key = key.limit_key();
        let fresh = state
            .by_key
            .get(&key)
            .is_none_or(|window| now >= self.ends(window));
        if fresh {
            state.by_key.insert(
                key,
                FailureWindow {
                    started: now,
                    failures: 1,
                },
            );
        } else if let Some(window) = state.by_key.get_mut(&key) {
            window.failures = window.failures.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let (first, hash) = new_token();
        let (second, _) = new_token();
        assert_ne!(first, second);
        assert!(first.starts_with("tfy_") && first.len() == 68);
        assert_eq!(hash, hash_token(&first));
        assert_ne!(hash, first);
    }

    #[test]
    fn a_bootstrap_token_needs_length_and_variety() {
        let error = check_bootstrap_token("x").unwrap_err();
        assert!(error.starts_with("TELLIFY_BOOTSTRAP_TOKEN: must be at least 24 characters"));
        assert!(
            error.contains("it has 1 characters, 1 different"),
            "{error}"
        );
        assert!(check_bootstrap_token(&"a".repeat(40)).is_err());
        assert!(check_bootstrap_token("abcdefghijabcdefghijabcd").is_ok());
        assert!(
            check_bootstrap_token("abcdefghiaabcdefghiaabcd").is_err(),
            "9 different"
        );
        assert!(check_bootstrap_token(&new_token().0).is_ok());
    }

    #[test]
    fn token_lifetimes_are_bounded() {
        assert_eq!(
            parse_token_lifetime("90d").unwrap(),
            SignedDuration::from_hours(90 * 24)
        );
        assert!(parse_token_lifetime("1m").is_ok());
        assert!(parse_token_lifetime("1825d").is_ok());
        for bad in ["59s", "1826d", "70000000h", "soon", "-5m", ""] {
            let error = parse_token_lifetime(bad).unwrap_err();
            assert!(error.contains("1m to 1825d"), "{bad}: {error}");
        }
    }

    #[test]
    fn failures_are_limited_per_address_and_window() {
        let limiter = FailureLimiter::new(&AuthSettings {
            max_failures: 3,
            failure_window_secs: 60,
        });
        let start: Timestamp = "2026-11-23T09:00:00Z".parse().unwrap();
        let at = |seconds: i64| start + SignedDuration::from_secs(seconds);
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for second in 0..3 {
            assert_eq!(limiter.check(one, at(second)), Ok(()));
            limiter.record(one, at(second));
        }
        assert_eq!(limiter.check(one, at(10)), Err(50));
        assert_eq!(limiter.check(other, at(10)), Ok(()), "only that address");
        assert_eq!(limiter.check(one, at(60)), Ok(()), "the window ended");
        limiter.record(one, at(60));
        assert_eq!(limiter.check(one, at(61)), Ok(()), "a new window");
        // One IPv6 client counts by its /64.
        for host in 1..=3 {
            limiter.record(format!("2001:db8::{host}").parse().unwrap(), at(100));
        }
        assert!(limiter
            .check("2001:db8::ffff".parse().unwrap(), at(101))
            .is_err());
        assert!(limiter
            .check("2001:db8:0:1::1".parse().unwrap(), at(101))
            .is_ok());
    }

    #[test]
    fn the_failure_map_sweeps_ended_windows() {
        let limiter = FailureLimiter::new(&AuthSettings::default());
        let start: Timestamp = "2026-11-23T09:00:00Z".parse().unwrap();
        for host in 0..200u8 {
            limiter.record(IpAddr::from([10, 0, 0, host]), start);
        }
        assert_eq!(limiter.lock().by_key.len(), 200);
        limiter.record(
            IpAddr::from([10, 0, 1, 1]),
            start + SignedDuration::from_secs(61),
        );
        assert_eq!(limiter.lock().by_key.len(), 1);
    }

    #[test]
    fn scopes_nest() {
        assert!(Scope::Admin > Scope::User && Scope::User > Scope::Ingest);
        assert_eq!(Scope::parse("user"), Some(Scope::User));
        assert_eq!(Scope::parse("root"), None);
    }
}
