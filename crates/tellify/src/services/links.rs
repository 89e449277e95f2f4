//! Signed action links: the "Acknowledge" and "Shelve" links a notification carries, so a
//! person can act on an alert from their phone without signing in.
//!
//! A link is `{public_url}/act/{token}`. The token carries the alert id, the user it was
//! sent to, the action, its expiry and a random nonce, signed with HMAC-SHA256 under a key
//! kept in the store (`server_secrets`, so every node on one database signs and checks
//! alike). The token is the credential for that one action on that one alert by that one
//! user: following it only shows what it would do ([`inspect`]); the confirming POST
//! performs it ([`redeem`]) once, through the same [`super::alerts::act`] as the JSON API,
//! acting as the link's user, so the alert's history names them.
//!
//! A link stops working when it expires (`[links] ttl`), once it was used (its nonce is
//! recorded in `used_links` before the action runs, insert-if-absent, so two clicks at once
//! act once), when its user was offboarded, and when the alert went or moved out of the
//! user's sight (another owner, a group they left): the user's current rights are checked
//! on every use, exactly as for a request with their token.
//!
//! **Invariant:** a wrong token is "not valid", never more: no answer says which part of
//! it failed, and nothing about the alert is shown before the signature checked out.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use sha2::Sha256;
use tellify_engine::alerts::{Action, Alert};
use tellify_store::{Store, StoreResult, User};

use super::error::{ServiceError, ServiceResult};
use super::Services;
use crate::auth::{Principal, Scope};

/// The name of the links' signing key in the store's server secrets.
pub const SIGNING_KEY_NAME: &str = "action_link_key";

/// What a link does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkAction {
    Ack,
    Shelve,
}

impl LinkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkAction::Ack => "ack",
            LinkAction::Shelve => "shelve",
        }
    }

    fn code(self) -> u8 {
        match self {
            LinkAction::Ack => 0,
            LinkAction::Shelve => 1,
        }
    }

    fn from_code(code: u8) -> Option<LinkAction> {
        match code {
            0 => Some(LinkAction::Ack),
            1 => Some(LinkAction::Shelve),
            _ => None,
        }
    }
}

/// How long a shelve from a link lasts; the same three choices the dashboard offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShelveChoice {
    /// One hour from now (what a link does when no choice is given).
    #[default]
    OneHour,
    /// Until the next 08:00 in the user's time zone after today.
    TomorrowMorning,
    /// Until the alert resolves.
    UntilResolved,
}

impl ShelveChoice {
    /// Reads `1h`, `tomorrow` or `resolves`, the values of the confirming form.
    pub fn parse(text: &str) -> Option<ShelveChoice> {
        match text {
            "1h" => Some(ShelveChoice::OneHour),
            "tomorrow" => Some(ShelveChoice::TomorrowMorning),
            "resolves" => Some(ShelveChoice::UntilResolved),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ShelveChoice::OneHour => "1h",
            ShelveChoice::TomorrowMorning => "tomorrow",
            ShelveChoice::UntilResolved => "resolves",
        }
    }

    /// The shelve action this choice means at `now` for a person in `zone`.
    pub fn action(self, zone: &jiff::tz::TimeZone, now: Timestamp) -> Action {
        let until = match self {
            ShelveChoice::OneHour => Some(tellify_model::later(now, SignedDuration::from_hours(1))),
            ShelveChoice::TomorrowMorning => Some(tomorrow_at_eight(zone, now)),
            ShelveChoice::UntilResolved => None,
        };
        Action::Shelve {
            oneshot: until.is_none(),
            until,
            reason: None,
        }
    }
}

/// The next day's 08:00 in `zone` (on a day whose 08:00 falls in a DST gap, the moment
/// the clocks show after it).
fn tomorrow_at_eight(zone: &jiff::tz::TimeZone, now: Timestamp) -> Timestamp {
    let today = now.to_zoned(zone.clone()).date();
    let morning = today
        .tomorrow()
        .ok()
        .and_then(|date| date.at(8, 0, 0, 0).to_zoned(zone.clone()).ok());
    match morning {
        Some(zoned) => zoned.timestamp(),
        None => tellify_model::later(now, SignedDuration::from_hours(24)),
    }
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkClaim {
    pub alert_id: String,
    pub user_id: String,
    pub action: LinkAction,
    pub expires: Timestamp,
    /// 16 random bytes in hex: what `used_links` records.
    pub nonce: String,
}

/// Why a token was refused, before any store lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenProblem {
    /// Malformed, signed with another key, or altered: deliberately one case.
    NotValid,
    Expired(Timestamp),
}

/// The signing key and the links' lifetime; cheap to clone.
#[derive(Clone)]
pub struct LinkSigner {
    key: Arc<[u8; KEY_BYTES]>,
    ttl: SignedDuration,
}

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 16;
const TAG_BYTES: usize = 32;
const VERSION: u8 = 1;

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        formatter
            .debug_struct("LinkSigner")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LinkSigner {
    pub fn new(key: [u8; KEY_BYTES], ttl: SignedDuration) -> LinkSigner {
        LinkSigner {
            key: Arc::new(key),
            ttl,
        }
    }

    /// The store's signing key (made on the first start and shared by every node on the
    /// database), with the links' lifetime.
    pub async fn load(store: &dyn Store, ttl: SignedDuration) -> StoreResult<LinkSigner> {
        let mut fresh = [0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut fresh);
        let stored = store
            .server_secret(SIGNING_KEY_NAME, fresh.to_vec())
            .await?;
        let key: [u8; KEY_BYTES] = stored.as_slice().try_into().map_err(|_| {
            tellify_store::StoreError::Unavailable(format!(
                "the stored action link key has {} bytes, not {KEY_BYTES}",
                stored.len()
            ))
        })?;
        Ok(LinkSigner::new(key, ttl))
    }

    pub fn ttl(&self) -> SignedDuration {
        self.ttl
    }

    /// A token for `action` on `alert_id` by `user_id`, working until `now + ttl`.
    pub fn mint(
        &self,
        alert_id: &str,
        user_id: &str,
        action: LinkAction,
        now: Timestamp,
    ) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let expires = tellify_model::later(now, self.ttl);
        self.sign(alert_id, user_id, action, expires, nonce)
    }

    fn sign(
        &self,
        alert_id: &str,
        user_id: &str,
        action: LinkAction,
        expires: Timestamp,
        nonce: [u8; NONCE_BYTES],
    ) -> String {
        let mut payload = Vec::with_capacity(64 + alert_id.len() + user_id.len());
        payload.push(VERSION);
        payload.push(action.code());
        payload.extend_from_slice(&expires.as_second().to_be_bytes());
        payload.extend_from_slice(&nonce);
        push_text(&mut payload, alert_id);
        push_text(&mut payload, user_id);
        let tag = self.mac(&payload).finalize().into_bytes();
        payload.extend_from_slice(&tag);
        base64url_encode(&payload)
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_slice())
            .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
        mac.update(payload);
        mac
    }

    /// Checks a token's signature (in constant time) and then its expiry at `now`.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<LinkClaim, TokenProblem> {
        let bytes = base64url_decode(token).ok_or(TokenProblem::NotValid)?;
        if bytes.len() < TAG_BYTES {
            return Err(TokenProblem::NotValid);
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
        self.mac(payload)
            .verify_slice(tag)
            .map_err(|_| TokenProblem::NotValid)?;
        let claim = parse_payload(payload).ok_or(TokenProblem::NotValid)?;
        if claim.expires <= now {
            return Err(TokenProblem::Expired(claim.expires));
        }
        Ok(claim)
    }
}

fn push_text(payload: &mut Vec<u8>, text: &str) {
    // Ids are ULIDs; anything longer than a length byte allows is cut, and then simply
    // names no alert.
    let bytes = &text.as_bytes()[..text.len().min(u8::MAX as usize)];
    payload.push(bytes.len() as u8);
    payload.extend_from_slice(bytes);
}

fn parse_payload(payload: &[u8]) -> Option<LinkClaim> {
    let mut reader = payload;
    let version = take(&mut reader, 1)?[0];
    if version != VERSION {
        return None;
    }
    let action = LinkAction::from_code(take(&mut reader, 1)?[0])?;
    let seconds = i64::from_be_bytes(take(&mut reader, 8)?.try_into().ok()?);
    let expires = Timestamp::from_second(seconds).ok()?;
    let nonce = hex(take(&mut reader, NONCE_BYTES)?);
    let alert_id = take_text(&mut reader)?;
    let user_id = take_text(&mut reader)?;
    if !reader.is_empty() {
        return None;
    }
    Some(LinkClaim {
        alert_id,
        user_id,
        action,
        expires,
        nonce,
    })
}

fn take<'a>(reader: &mut &'a [u8], count: usize) -> Option<&'a [u8]> {
    if reader.len() < count {
        return None;
    }
    let (taken, rest) = reader.split_at(count);
    *reader = rest;
    Some(taken)
}

fn take_text(reader: &mut &[u8]) -> Option<String> {
    let length = take(reader, 1)?[0] as usize;
    let bytes = take(reader, length)?;
    String::from_utf8(bytes.to_vec()).ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url (RFC 4648 §5): safe in a URL path without escaping.
fn base64url_encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for index in 0..=chunk.len() {
            text.push(BASE64URL[((n >> (18 - 6 * index)) & 63) as usize] as char);
        }
    }
    text
}

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 || text.len() > 4096 {
        return None;
    }
    let mut bytes = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for character in text.bytes() {
        let value = BASE64URL.iter().position(|&c| c == character)? as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero, so each token has exactly one spelling.
    if buffer != 0 {
        return None;
    }
    Some(bytes)
}

/// What following a link shows before anything is done.
#[derive(Clone, Debug)]
pub struct LinkView {
    /// The alert as of now.
    pub alert: Alert,
    pub action: LinkAction,
    /// The person the link was sent to, who will be named as having acted.
    pub user: User,
    pub expires: Timestamp,
    /// Already used: a confirming click would be refused.
    pub used: bool,
}

/// A token for `action` on `alert_id` by `user_id`, valid for `[links] ttl` from `now`.
pub fn mint(
    services: &Services,
    alert_id: &str,
    user_id: &str,
    action: LinkAction,
    now: Timestamp,
) -> String {
    services.links.mint(alert_id, user_id, action, now)
}

/// The link's alert, action and user, after checking its signature, its expiry, that its
/// user still exists and may still see the alert. Changes nothing.
pub async fn inspect(services: &Services, token: &str, now: Timestamp) -> ServiceResult<LinkView> {
    let (claim, principal) = check(services, token, now).await?;
    let alert = super::alerts::visible(services, &principal, &claim.alert_id).await?;
    let used = services.store.link_used(&claim.nonce).await?;
    Ok(LinkView {
        alert,
        action: claim.action,
        user: principal.user,
        expires: claim.expires,
        used,
    })
}

/// Performs the link's action once, as its user, through the same path as the JSON API;
/// `choice` says how long a shelve lasts (one hour when not given; ignored for an ack).
/// A second redeem of the same link, also one racing this one, answers "already used"
/// and does nothing. When the action itself is refused (the alert resolved meanwhile)
/// the link stays usable.
pub async fn redeem(
    services: &Services,
    token: &str,
    choice: Option<ShelveChoice>,
    now: Timestamp,
) -> ServiceResult<Alert> {
    let (claim, principal) = check(services, token, now).await?;
    super::alerts::visible(services, &principal, &claim.alert_id).await?;
    let action = match claim.action {
        LinkAction::Ack => Action::Ack {
            note: None,
            expires: None,
        },
        LinkAction::Shelve => {
            let zone = jiff::tz::TimeZone::get(&principal.user.timezone)
                .unwrap_or(jiff::tz::TimeZone::UTC);
            choice.unwrap_or_default().action(&zone, now)
        }
    };
    if !services
        .store
        .use_link(&claim.nonce, claim.expires, now)
        .await?
    {
        return Err(already_used());
    }
    match super::alerts::act(services, &principal, &claim.alert_id, action).await {
        Ok(alert) => Ok(alert),
        Err(error) => {
            if let Err(release) = services.store.release_link(&claim.nonce).await {
                tracing::warn!(error = %release, "cannot release an action link after its action failed");
            }
            Err(error)
        }
    }
}

fn already_used() -> ServiceError {
    ServiceError::Gone("this link was already used".to_string())
}

/// The claim of a good, unexpired token, and its user as a caller with a user token's
/// rights (an admin's link reaches only what is theirs or their groups').
async fn check(
    services: &Services,
    token: &str,
    now: Timestamp,
) -> ServiceResult<(LinkClaim, Principal)> {
    let claim = match services.links.verify(token, now) {
        Ok(claim) => claim,
        Err(TokenProblem::NotValid) => return Err(not_valid()),
        Err(TokenProblem::Expired(at)) => {
            return Err(ServiceError::Gone(format!(
                "this link expired at {}",
                at.strftime("%Y-%m-%d %H:%M UTC")
            )))
        }
    };
    // An offboarded user's links end with them.
    let Some(user) = services.store.user_by_id(&claim.user_id).await? else {
        return Err(not_valid());
    };
    let group_ids = services.store.groups_of(&user.id).await?;
    let principal = Principal {
        user,
        token_id: format!("link-{}", claim.nonce),
        scope: Scope::User,
        group_ids,
        expires: Some(claim.expires),
    };
    Ok((claim, principal))
}

fn not_valid() -> ServiceError {
    ServiceError::NotFound("link")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn signer(key: u8) -> LinkSigner {
        LinkSigner::new([key; KEY_BYTES], SignedDuration::from_hours(72))
    }

    #[test]
    fn a_minted_token_verifies_with_its_claims_and_is_url_safe() {
        let signer = signer(7);
        let token = signer.mint("01ALERT", "01USER", LinkAction::Shelve, at(0));
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let claim = signer.verify(&token, at(10)).unwrap();
        assert_eq!(claim.alert_id, "01ALERT");
        assert_eq!(claim.user_id, "01USER");
        assert_eq!(claim.action, LinkAction::Shelve);
        assert_eq!(claim.expires, at(72 * 3600));
        assert_eq!(claim.nonce.len(), 2 * NONCE_BYTES);
        let again = signer.mint("01ALERT", "01USER", LinkAction::Shelve, at(0));
        assert_ne!(token, again, "every link has its own nonce");
        assert_ne!(signer.verify(&again, at(10)).unwrap().nonce, claim.nonce);
    }

    #[test]
    fn a_tampered_token_is_not_valid_whichever_byte_changed() {
        let signer = signer(7);
        let token = signer.mint("01ALERT", "01USER", LinkAction::Ack, at(0));
        let bytes = base64url_decode(&token).unwrap();
        for index in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[index] ^= 0x01;
            assert_eq!(
                signer.verify(&base64url_encode(&changed), at(1)),
                Err(TokenProblem::NotValid),
                "byte {index}"
            );
        }
        // A claim rewritten to another alert, re-encoded without the key, fails too.
        let forged = LinkSigner::new([8; KEY_BYTES], SignedDuration::from_hours(72)).sign(
            "01OTHER",
            "01USER",
            LinkAction::Ack,
            at(100),
            [0; NONCE_BYTES],
        );
        assert_eq!(signer.verify(&forged, at(1)), Err(TokenProblem::NotValid));
        for garbage in ["", "x", "!!!!", "AAAA", &token[..token.len() - 1]] {
            assert_eq!(
                signer.verify(garbage, at(1)),
                Err(TokenProblem::NotValid),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn a_token_signed_with_another_key_is_not_valid() {
        let token = signer(1).mint("01ALERT", "01USER", LinkAction::Ack, at(0));
        assert_eq!(signer(2).verify(&token, at(1)), Err(TokenProblem::NotValid));
    }

    #[test]
    fn a_token_expires_after_the_ttl() {
        let short = LinkSigner::new([3; KEY_BYTES], SignedDuration::from_mins(5));
        let token = short.mint("01ALERT", "01USER", LinkAction::Ack, at(0));
        assert!(short.verify(&token, at(299)).is_ok());
        assert_eq!(
            short.verify(&token, at(300)),
            Err(TokenProblem::Expired(at(300)))
        );
        // An expired token is checked for its signature first: a forged one with a past
        // expiry says nothing about expiry.
        let forged = signer(9).sign("01ALERT", "01USER", LinkAction::Ack, at(-5), [0; 16]);
        assert_eq!(short.verify(&forged, at(0)), Err(TokenProblem::NotValid));
    }

    #[test]
    fn base64url_round_trips_every_length() {
        for length in 0..40 {
            let bytes: Vec<u8> = (0..length).map(|i| (i * 37 + 11) as u8).collect();
            let text = base64url_encode(&bytes);
            assert_eq!(base64url_decode(&text), Some(bytes), "{text}");
        }
    }

    #[test]
    fn shelve_choices_mean_an_hour_tomorrow_morning_or_until_resolved() {
        let zone = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        // 2026-03-28 22:30 UTC is 23:30 CET; the next morning is after the DST change.
        let now: Timestamp = "2026-03-28T22:30:00Z".parse().unwrap();
        let Action::Shelve { until, oneshot, .. } = ShelveChoice::OneHour.action(&zone, now) else {
            panic!("a shelve")
        };
        assert_eq!(until, Some("2026-03-28T23:30:00Z".parse().unwrap()));
        assert!(!oneshot);
        let Action::Shelve { until, .. } = ShelveChoice::TomorrowMorning.action(&zone, now) else {
            panic!("a shelve")
        };
        assert_eq!(
            until,
            Some("2026-03-29T06:00:00Z".parse().unwrap()),
            "08:00 CEST"
        );
        let Action::Shelve { until, oneshot, .. } = ShelveChoice::UntilResolved.action(&zone, now)
        else {
            panic!("a shelve")
        };
        assert_eq!((until, oneshot), (None, true));
        for choice in [
            ShelveChoice::OneHour,
            ShelveChoice::TomorrowMorning,
            ShelveChoice::UntilResolved,
        ] {
            assert_eq!(ShelveChoice::parse(choice.as_str()), Some(choice));
        }
    }
}
