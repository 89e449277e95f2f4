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
    pub sms: String,
    pub payload: serde_json::Value,
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
}

/// One way of reaching a person.
#[async_trait::async_trait]
pub trait Channel: Send + Sync {
    fn kind(&self) -> ContactKind;

    /// Checks an address when a contact point is created (email syntax, E.164 phone
    /// "+4915112345678", http(s) URL), so a typo fails at once instead of at the first alert.
    fn check_address(&self, address: &str) -> Result<(), String>;

    /// Sends one message; `Ok` only after the provider accepted it.
    async fn send(
        &self,
        target: &ContactTarget,
        message: &OutgoingMessage,
    ) -> Result<Receipt, ChannelError>;
}

/// Every channel, built once from settings (the SMTP connection pool and the HTTP client are
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
    pub fn new(
        smtp: &SmtpSettings,
        sms: &SmsSettings,
        http_timeout: Duration,
    ) -> anyhow::Result<Channels> {
        let client = http_client(http_timeout)?;
        Ok(Channels {
            email: EmailChannel::new(smtp).context("invalid [smtp] settings")?,
            sms: SmsChannel::new(sms, client.clone()).context("invalid [sms] settings")?,
            webhook: WebhookChannel::new(client.clone()),
            chat: ChatChannel::new(client.clone()),
            engine: EngineChannel::new(client),
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
}

/// Builds the HTTP client that SMS, webhooks, chat and engines share.
///
/// Redirects are not followed: a redirect would turn the POST into a GET or carry a signed
/// payload to a host the user never registered. reqwest is built without a TLS provider of its
/// own and panics when none is installed, so the project's one provider (ring) is installed
/// here if `main` or a test has not done it yet.
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race against another installer is fine: a provider is then in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tellify/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the http client")
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

/// Most bytes of a provider's answer read for a receipt or an error; a misbehaving endpoint
/// cannot make us buffer more.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Longest provider answer quoted in an error.
const MAX_SNIPPET_CHARS: usize = 200;

/// Reads at most [`MAX_ANSWER_BYTES`] of a response body. A body that fails half-way is
/// returned as far as it came: it only decorates a status that is already known.
pub(crate) async fn read_answer(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ANSWER_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(MAX_ANSWER_BYTES);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A provider's answer made fit for an error message: one line, at most
/// [`MAX_SNIPPET_CHARS`] characters, with every secret in `hide` replaced by `***`.
pub(crate) fn answer_snippet(answer: &str, hide: &[&str]) -> String {
    let mut text = one_line(answer);
    for secret in hide {
        if secret.len() > 1 {
            text = text.replace(secret, "***");
        }
    }
    cut_chars(&text, MAX_SNIPPET_CHARS)
}

/// The error for a non-2xx answer, sorted by [`is_retryable_status`].
pub(crate) fn status_error(
    channel: ContactKind,
    origin: &str,
    status: reqwest::StatusCode,
    snippet: &str,
) -> ChannelError {
    let detail = if snippet.is_empty() {
        format!("{channel} endpoint {origin} answered {status}")
    } else {
        format!("{channel} endpoint {origin} answered {status}: {snippet}")
    };
    if is_retryable_status(status) {
        ChannelError::Retryable(detail)
    } else {
        ChannelError::Permanent(detail)
    }
}

/// The error for a request that got no answer. reqwest's own message names the full URL,
/// which may be a secret, so it is dropped and only the cause chain is kept.
pub(crate) fn request_error(
    channel: ContactKind,
    origin: &str,
    error: reqwest::Error,
) -> ChannelError {
    let error = error.without_url();
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

/// The first `max` characters of `text` (characters, not bytes, so UTF-8 is never split).
pub(crate) fn cut_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
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
    fn snippet_is_one_line_short_and_hides_secrets() {
        let answer = format!("no such hook /services/T0/B0/xyz\n{}", "x".repeat(500));
        let snippet = answer_snippet(&answer, &["/services/T0/B0/xyz"]);
        assert!(!snippet.contains("xyz"));
        assert!(!snippet.contains('\n'));
        assert_eq!(snippet.chars().count(), MAX_SNIPPET_CHARS);
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
