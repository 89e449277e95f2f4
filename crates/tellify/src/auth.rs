//! Who is asking: bearer tokens, their scopes, and the viewer they act as.
//!
//! A token is `tfy_` followed by 64 hex digits (32 random bytes). Only its SHA-256 is
//! stored. Scopes nest: `admin` (only for admin users) includes `user`, which includes
//! `ingest`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};
use tellify_store::{Store, StoreError, User, Viewer};

/// How long a resolved token is trusted without asking the store again. Revoking a token
/// or changing a user clears the cache at once, so this only bounds staleness between
/// nodes.
const CACHE_TTL: Duration = Duration::from_secs(30);

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

/// Resolves bearer tokens to principals, with a short-lived cache.
#[derive(Clone, Default)]
pub struct Authenticator {
    cache: Arc<Mutex<HashMap<String, (Principal, Instant)>>>,
}

impl Authenticator {
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
    fn scopes_nest() {
        assert!(Scope::Admin > Scope::User && Scope::User > Scope::Ingest);
        assert_eq!(Scope::parse("user"), Some(Scope::User));
        assert_eq!(Scope::parse("root"), None);
    }
}
