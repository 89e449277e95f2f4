//! Email over SMTP through one pooled lettre transport.
//!
//! The message is one multipart/alternative with a text and an HTML part, and carries
//! `Message-ID: <{delivery_id}@tellify>` so a retried delivery that reached the mailbox twice
//! can be recognised as one.

use std::time::Duration;

use lettre::message::header::MessageId;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::response::Response;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{error_chain, Channel, ChannelError, ContactKind, ContactTarget, OutgoingMessage};
use super::{Receipt, SmtpSecurity, SmtpSettings};

/// Why email cannot be sent without `[smtp] host`.
const NOT_CONFIGURED: &str =
    "email is not configured on this server: set [smtp] host (TELLIFY_SMTP__HOST)";

/// Sends email through the configured SMTP server.
pub struct EmailChannel {
    /// `None` when `[smtp] host` is unset: sends then fail as not configured.
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    /// `host:port`, for error messages.
    server: String,
    /// Bounds a whole send, because lettre's own timeout covers only the connect.
    deadline: Duration,
    /// The password, and the forms SMTP AUTH sends it in (PLAIN's `\0user\0password`), kept
    /// only to mask them in any error text a server might echo them in.
    secrets: Vec<String>,
}

impl EmailChannel {
    /// Builds the transport from settings; no connection is opened until the first send.
    pub fn new(settings: &SmtpSettings) -> anyhow::Result<EmailChannel> {
        let from: Mailbox = settings.from.parse().map_err(|error| {
            anyhow::anyhow!("from {:?} is not an email address: {error}", settings.from)
        })?;
        let deadline = Duration::from_secs(settings.timeout_secs.max(1));
        let Some(host) = settings.host.as_deref() else {
            return Ok(EmailChannel {
                transport: None,
                from,
                server: String::new(),
                deadline,
                secrets: Vec::new(),
            });
        };
        if host.trim().is_empty() {
            anyhow::bail!("host must not be empty (leave it out to turn email off)");
        }
        let builder = match settings.security {
            SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|error| anyhow::anyhow!("cannot set up starttls for {host}: {error}"))?,
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|error| anyhow::anyhow!("cannot set up tls for {host}: {error}"))?,
        };
        let mut builder = builder.port(settings.port).timeout(Some(deadline));
        let mut secrets = Vec::new();
        if let Some(username) = &settings.username {
            let Some(password) = &settings.password else {
                anyhow::bail!("password is required when username is set");
            };
            builder = builder.credentials(Credentials::new(username.clone(), password.clone()));
            secrets.push(format!("\0{username}\0{password}"));
            secrets.push(crate::secrets::basic_credentials(username, password));
        }
        if let Some(password) = &settings.password {
            secrets.push(password.clone());
        }
        Ok(EmailChannel {
            transport: Some(builder.build()),
            from,
            server: format!("{host}:{}", settings.port),
            deadline,
            secrets,
        })
    }

    fn build_message(
        &self,
        target: &ContactTarget,
        message: &OutgoingMessage,
    ) -> Result<Message, ChannelError> {
        let to: Mailbox = target.address.parse().map_err(|_| {
            ChannelError::Permanent("recipient is not a valid email address".to_string())
        })?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.clone())
            .header(MessageId::from(format!(
                "<{}@tellify>",
                message.delivery_id
            )))
            .multipart(MultiPart::alternative_plain_html(
                message.text.clone(),
                message.html.clone(),
            ))
            .map_err(|error| ChannelError::Permanent(format!("cannot build the email: {error}")))
    }

    /// Sends once, and once more if the first failure was the connection itself: a pooled
    /// connection the server closed while idle fails on first use (lettre#743), and a fresh
    /// one usually works. SMTP replies are final for this attempt and not repeated here.
    async fn send_with_one_reconnect(
        &self,
        transport: &AsyncSmtpTransport<Tokio1Executor>,
        email: &Message,
    ) -> Result<Response, lettre::transport::smtp::Error> {
        match transport.send(email.clone()).await {
            Ok(response) => Ok(response),
            Err(error) if error.is_permanent() || error.is_transient() => Err(error),
            Err(_) => transport.send(email.clone()).await,
        }
    }

    /// Turns a lettre error into a channel error whose text never holds the password.
    fn classify(&self, error: &lettre::transport::smtp::Error) -> ChannelError {
        let answered = error.is_permanent() || error.is_transient();
        let what = if answered {
            "rejected the message"
        } else {
            "failed"
        };
        let text = format!("smtp server {} {what}: {}", self.server, error_chain(error));
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        let text = crate::secrets::mask(&text, &secrets);
        if error.is_permanent() {
            ChannelError::Permanent(text)
        } else {
            ChannelError::Retryable(text)
        }
    }
}

#[async_trait::async_trait]
impl Channel for EmailChannel {
    fn kind(&self) -> ContactKind {
        ContactKind::Email
    }

    fn check_address(&self, address: &str) -> Result<(), String> {
        address
            .parse::<lettre::Address>()
            .map(|_| ())
            .map_err(|_| "must be an email address like name@example.com".to_string())
    }

    fn not_configured(&self) -> Option<String> {
        self.transport.is_none().then(|| NOT_CONFIGURED.to_string())
    }

    async fn send(
        &self,
        target: &ContactTarget,
        message: &OutgoingMessage,
    ) -> Result<Receipt, ChannelError> {
        let Some(transport) = &self.transport else {
            return Err(ChannelError::NotConfigured(NOT_CONFIGURED.to_string()));
        };
        let email = self.build_message(target, message)?;
        let sent = tokio::time::timeout(
            self.deadline,
            self.send_with_one_reconnect(transport, &email),
        )
        .await;
        let response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return Err(self.classify(&error)),
            Err(_) => {
                return Err(ChannelError::Retryable(format!(
                    "smtp server {} did not answer within {}s",
                    self.server,
                    self.deadline.as_secs()
                )))
            }
        };
        Ok(Receipt {
            detail: describe_response(&response),
        })
    }
}

/// "250 2.0.0 Ok: queued as ABC": the code and every line of the server's final answer.
fn describe_response(response: &Response) -> String {
    let lines: Vec<&str> = response.message().collect();
    if lines.is_empty() {
        return response.code().to_string();
    }
    format!("{} {}", response.code(), lines.join(" "))
}
