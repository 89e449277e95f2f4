//! Channels: the last hop of a notification, from a rendered message to a provider.
//!
//! Each channel is one file behind the [`Channel`] trait, so the worker sends without knowing
//! which provider it talks to and learns only one thing back: a receipt to show the user, or
//! an error that says whether another attempt can help. The message is rendered once
//! ([`OutgoingMessage`]) and each channel picks the part it can carry.
//!
//! Invariant: no error or log line carries a password, a token, a webhook secret or the path
//! of a webhook URL. Slack-style webhook URLs are secrets in themselves, so HTTP channels name
//! only `scheme://host` of the endpoint.
//!
//! Invariant: no error carries any of a provider's answer beyond its status (and, for the
//! operator's SMS provider, its numeric error code). A contact point's URL is a user's
//! choice, so its answer may be an internal page; webhooks, chat and engines go through the
//! [`crate::outbound`] guard, and every error text is passed through
//! [`crate::secrets::mask`] with the channel's secrets.

pub mod chat;
pub mod email;
pub mod engine;
pub mod sms;
pub mod webhook;

pub use chat::ChatChannel;
pub use email::EmailChannel;
pub use engine::EngineChannel;
pub use sms::SmsChannel;
pub use webhook::WebhookChannel;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::outbound::{Denied, OutboundClient, OutboundGuard};

/// The kinds of contact point a user can register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContactKind {
    Email,
    Sms,
    Webhook,
    Chat,
    /// An HTTP JSON metrics engine's `/notify` and `/resolve`.
    Engine,
}

impl ContactKind {
    /// Every kind, in the order the API documents them.
    pub const ALL: [ContactKind; 5] = [
        ContactKind::Email,
        ContactKind::Sms,
        ContactKind::Webhook,
        ContactKind::Chat,
        ContactKind::Engine,
    ];

    /// The name used in configuration, the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactKind::Email => "email",
            ContactKind::Sms => "sms",
            ContactKind::Webhook => "webhook",
            ContactKind::Chat => "chat",
            ContactKind::Engine => "engine",
        }
    }
}

impl fmt::Display for ContactKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for ContactKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        for kind in ContactKind::ALL {
            if kind.as_str() == text {
                return Ok(kind);
            }
        }
        let allowed: Vec<&str> = ContactKind::ALL.iter().map(|kind| kind.as_str()).collect();
        Err(format!(
            "unknown contact kind {text:?}, expected one of: {}",
            allowed.join(", ")
        ))
    }
}

/// What to send: rendered once, each channel picks its part.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingMessage {
    /// Stable across retries of one delivery, so receivers can recognise a duplicate.
    pub delivery_id: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The text with action links in chat markup (`<url|label>`).
    pub chat: String,
    pub sms: String,
    /// The JSON body webhooks send as it is and engines read: the delivery and its alerts,
    /// serialized once.
    pub payload: bytes::Bytes,
}

/// Where to send it (a user's contact point).
#[derive(Clone, PartialEq, Eq)]
pub struct ContactTarget {
    pub kind: ContactKind,
    pub name: String,
    pub address: String,
    /// The webhook signing secret; never printed.
    pub secret: Option<String>,
}

impl fmt::Debug for ContactTarget {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ContactTarget")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("address", &self.address)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The provider's answer on success, shown to the user ("250 2.0.0 Ok: queued as ...",
/// "201 Created sid=SM...").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub detail: String,
}

/// Why a send failed, sorted by what the caller should do next.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The provider may accept the same message later (network trouble, 4xx SMTP, 429, 5xx).
    #[error("{0}")]
    Retryable(String),
    /// The provider refused this message for good (5xx SMTP, most 4xx HTTP).
    #[error("{0}")]
    Permanent(String),
    /// The channel lacks settings; retrying cannot help until an operator adds them.
    #[error("{0}")]
    NotConfigured(String),
}

impl ChannelError {
    /// Whether sending the same message again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ChannelError::Retryable(_))
    }

    /// The same error with every form of every secret in its text masked
    /// ([`crate::secrets::mask`]).
    pub fn masked(self, secrets: &[&str]) -> ChannelError {
        match self {
            ChannelError::Retryable(text) => {
                ChannelError::Retryable(crate::secrets::mask(&text, secrets))
            }
            ChannelError::Permanent(text) => {
                ChannelError::Permanent(crate::secrets::mask(&text, secrets))
            }
            ChannelError::NotConfigured(text) => {
                ChannelError::NotConfigured(crate::secrets::mask(&text, secrets))
            }
        }
    }
}

/// One way of reaching a person.
#[async_trait::async_trait]
pub trait Channel: Send + Sync {
    fn kind(&self) -> ContactKind;

    /// Checks an address when a contact point is created (email syntax, E.164 phone
    /// "+4915112345678", http(s) URL), so a typo fails at once instead of at the first alert.
    fn check_address(&self, address: &str) -> Result<(), String>;
    /// Why this channel cannot send on this server (its settings are missing), or `None`
    /// when it can; shown to whoever creates or lists a contact point of its kind.
    fn not_configured(&self) -> Option<String> {
        None
    }

    /// Sends one message; `Ok` only after the provider accepted it.
    async fn send(
        &self,
        target: &ContactTarget,
        message: &OutgoingMessage,
    ) -> Result<Receipt, ChannelError>;
}

/// Every channel, built once from settings (the SMTP connection pool and the HTTP clients are
/// shared).
pub struct Channels {
    email: EmailChannel,
    sms: SmsChannel,
    webhook: WebhookChannel,
    chat: ChatChannel,
    engine: EngineChannel,
}

impl Channels {
    /// Builds every channel. A channel whose settings are missing still exists and answers
    /// [`ChannelError::NotConfigured`], so the rest of the service runs without it.
    ///
    /// Webhooks, chat and engines call URLs users chose, so they share the `guard`'s client;
    /// the SMS provider is the operator's choice and is called without it.
    pub fn new(
        smtp: &SmtpSettings,
        sms: &SmsSettings,
        http_timeout: Duration,
        guard: &OutboundGuard,
    ) -> anyhow::Result<Channels> {
        let guarded = guard.client(http_timeout)?;
        let operator = OutboundClient::unguarded(http_timeout)?;
        Ok(Channels {
            email: EmailChannel::new(smtp).context("invalid [smtp] settings")?,
            sms: SmsChannel::new(sms, operator).context("invalid [sms] settings")?,
            webhook: WebhookChannel::new(guarded.clone()),
            chat: ChatChannel::new(guarded.clone()),
            engine: EngineChannel::new(guarded),
        })
    }

    pub fn get(&self, kind: ContactKind) -> &dyn Channel {
        match kind {
            ContactKind::Email => &self.email,
            ContactKind::Sms => &self.sms,
            ContactKind::Webhook => &self.webhook,
            ContactKind::Chat => &self.chat,
            ContactKind::Engine => &self.engine,
        }
    }

    pub fn check_address(&self, kind: ContactKind, address: &str) -> Result<(), String> {
        self.get(kind).check_address(address)
    }

    /// The warning a contact point of `kind` carries while its channel is not configured.
    pub fn warning(&self, kind: ContactKind) -> Option<String> {
        self.get(kind)
            .not_configured()
            .map(|why| format!("{why}; nothing is sent to this contact point until an admin does"))
    }

    /// Which channels can send, for the start-up summary.
    pub fn configured(&self) -> Vec<&'static str> {
        ContactKind::ALL
            .into_iter()
            .filter(|kind| self.get(*kind).not_configured().is_none())
            .map(ContactKind::as_str)
            .collect()
    }
}

/// `[smtp]` settings.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
    /// SMTP server host name; without it email is not configured and sends fail as such.
    pub host: Option<String>,
    /// Server port: 25 or 587 for `starttls`, 465 for `tls`.
    pub port: u16,
    /// How the connection is protected: `none`, `starttls` (required, not opportunistic) or
    /// `tls` (implicit TLS from the first byte).
    pub security: SmtpSecurity,
    /// Login name; credentials are sent only when it is set.
    pub username: Option<String>,
    /// Login password, required when `username` is set.
    pub password: Option<String>,
    /// Sender address, as `addr@host` or `Name <addr@host>`.
    pub from: String,
    /// Longest time one send may take, from connect to the server's final answer.
    pub timeout_secs: u64,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            host: None,
            port: 25,
            security: SmtpSecurity::Starttls,
            username: None,
            password: None,
            from: "tellify@localhost".to_string(),
            timeout_secs: 30,
        }
    }
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("from", &self.from)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// How an SMTP connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    None,
    Starttls,
    Tls,
}

/// `[sms]` settings, Twilio-compatible.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsSettings {
    /// Base URL of the Twilio-compatible API.
    pub url: String,
    /// Account SID, used in the request path and as the basic-auth user.
    pub account: Option<String>,
    /// Auth token, the basic-auth password.
    pub token: Option<String>,
    /// Sender phone number in E.164 form.
    pub from: Option<String>,
}

impl Default for SmsSettings {
    fn default() -> Self {
        SmsSettings {
            url: "https://api.twilio.com".to_string(),
            account: None,
            token: None,
            from: None,
        }
    }
}

impl fmt::Debug for SmsSettings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SmsSettings")
            .field("url", &self.url)
            .field("account", &self.account)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("from", &self.from)
            .finish()
    }
}

/// Checks that `address` is an absolute http or https URL with a host. The address is not
/// echoed: for chat it is a secret.
pub(crate) fn check_http_url(address: &str) -> Result<(), String> {
    let Ok(url) = reqwest::Url::parse(address) else {
        return Err("must be an http or https url".to_string());
    };
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("must be an http or https url".to_string());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("url must name a host".to_string());
    }
    Ok(())
}

/// `scheme://host[:port]` of an endpoint: enough to tell which provider failed, without the
/// path or query that may carry a token.
pub(crate) fn endpoint_origin(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("unknown-host");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// Whether an HTTP status means "try again later": request timeout, rate limiting and server
/// errors. Every other non-2xx means the provider refused this request as it is.
pub(crate) fn is_retryable_status(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// Most bytes of a provider's answer read (only the SMS provider's is read, for its message
/// id and error code); a misbehaving endpoint cannot make us buffer more.
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The error for a non-2xx answer, sorted by [`is_retryable_status`]. The answer's body is
/// not quoted: the endpoint may be an internal page the user should not read through us.
pub(crate) fn status_error(
    channel: ContactKind,
    origin: &str,
    status: reqwest::StatusCode,
) -> ChannelError {
    let detail = format!("{channel} endpoint {origin} answered {status}");
    if is_retryable_status(status) {
        ChannelError::Retryable(detail)
    } else {
        ChannelError::Permanent(detail)
    }
}

/// The error for a request the outbound guard refused: for good, since the address will
/// not become allowed by waiting.
pub(crate) fn denied_error(channel: ContactKind, origin: &str, denied: &Denied) -> ChannelError {
    ChannelError::Permanent(format!("{channel} request to {origin} refused: {denied}"))
}

/// The error for a request that got no answer. reqwest's own message names the full URL,
/// which may be a secret, so it is dropped and only the cause chain is kept.
pub(crate) fn request_error(
    channel: ContactKind,
    origin: &str,
    error: reqwest::Error,
) -> ChannelError {
    let error = error.without_url();
    if let Some(denied) = crate::outbound::denied_by_guard(&error) {
        return denied_error(channel, origin, &denied);
    }
    if error.is_builder() {
        return ChannelError::Permanent(format!(
            "{channel} request to {origin} is invalid: {}",
            error_chain(&error)
        ));
    }
    if error.is_timeout() {
        return ChannelError::Retryable(format!("{channel} request to {origin} timed out"));
    }
    ChannelError::Retryable(format!(
        "{channel} request to {origin} failed: {}",
        error_chain(&error)
    ))
}

/// An error and its sources as one `a: b: c` line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Some libraries repeat their source in their own message; print each once.
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// Collapses every run of whitespace, newlines included, into one space.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_round_trips_through_its_name() {
        for kind in ContactKind::ALL {
            assert_eq!(kind.as_str().parse::<ContactKind>(), Ok(kind));
        }
    }

    #[test]
    fn statuses_sort_into_retryable_and_permanent() {
        assert!(is_retryable_status(reqwest::StatusCode::REQUEST_TIMEOUT));
        assert!(is_retryable_status(reqwest::StatusCode::TOO_MANY_REQUESTS));
        assert!(is_retryable_status(reqwest::StatusCode::BAD_GATEWAY));
        assert!(!is_retryable_status(reqwest::StatusCode::BAD_REQUEST));
        assert!(!is_retryable_status(reqwest::StatusCode::NOT_FOUND));
    }

    #[test]
    fn settings_debug_hides_password_and_token() {
        let smtp = SmtpSettings {
            password: Some("hunter2".to_string()),
            ..SmtpSettings::default()
        };
        let sms = SmsSettings {
            token: Some("tok-secret".to_string()),
            ..SmsSettings::default()
        };
        assert!(!format!("{smtp:?}").contains("hunter2"));
        assert!(!format!("{sms:?}").contains("tok-secret"));
        assert!(format!("{sms:?}").contains("***"));
    }
}
