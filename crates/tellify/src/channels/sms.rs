//! SMS through a Twilio-compatible REST API.
//!
//! `POST {url}/2010-04-01/Accounts/{account}/Messages.json` with the form fields `To`, `From`
//! and `Body` and the account and token as basic auth. The body is made one line of at most
//! 160 characters: one GSM-7 segment, so a notification is never split or billed twice.
//!
//! The provider is the operator's, not a user's, so it is called without the outbound guard.
//! A refusal names the provider's numeric error `code` (Twilio's 21211: invalid number) and
//! nothing else of its answer, and every error is masked with the token and the basic-auth
//! pair, since providers and proxies have been seen echoing the `Authorization` header.

use super::MAX_ANSWER_BYTES;
use super::{check_http_url, endpoint_origin, one_line, request_error, status_error, Channel};
use super::{ChannelError, ContactKind, ContactTarget, OutgoingMessage, Receipt, SmsSettings};
use crate::outbound::OutboundClient;

/// Longest SMS body sent, in characters.
pub const MAX_SMS_CHARS: usize = 160;

/// Sends SMS through the configured provider.
pub struct SmsChannel {
    client: OutboundClient,
    base: reqwest::Url,
    account: Option<String>,
    token: Option<String>,
    from: Option<String>,
}

impl SmsChannel {
    /// Takes an HTTP client for the provider; fails only on a malformed `url`.
    pub fn new(settings: &SmsSettings, client: OutboundClient) -> anyhow::Result<SmsChannel> {
        check_http_url(&settings.url).map_err(|problem| anyhow::anyhow!("url {problem}"))?;
        let base = reqwest::Url::parse(&settings.url)?;
        Ok(SmsChannel {
            client,
            base,
            account: settings.account.clone(),
            token: settings.token.clone(),
            from: settings.from.clone(),
        })
    }

    /// The account, token and sender, or which of them are missing.
    fn credentials(&self) -> Result<(&str, &str, &str), ChannelError> {
        let account = self.account.as_deref().filter(|value| !value.is_empty());
        let token = self.token.as_deref().filter(|value| !value.is_empty());
        let from = self.from.as_deref().filter(|value| !value.is_empty());
        if let (Some(account), Some(token), Some(from)) = (account, token, from) {
            return Ok((account, token, from));
        }
        let mut missing = Vec::new();
        for (name, value) in [("account", account), ("token", token), ("from", from)] {
            if value.is_none() {
                missing.push(name);
            }
        }
        Err(ChannelError::NotConfigured(format!(
            "sms is not configured: set [sms] {}",
            missing.join(", ")
        )))
    }
}

#[async_trait::async_trait]
impl Channel for SmsChannel {
    fn kind(&self) -> ContactKind {
        ContactKind::Sms
    }

    fn check_address(&self, address: &str) -> Result<(), String> {
        check_phone_number(address)
    }

    fn not_configured(&self) -> Option<String> {
        match self.credentials() {
            Ok(_) => None,
            Err(error) => Some(error.to_string()),
        }
    }

    async fn send(
        &self,
        target: &ContactTarget,
        message: &OutgoingMessage,
    ) -> Result<Receipt, ChannelError> {
        let (account, token, from) = self.credentials()?;
        let pair = crate::secrets::basic_credentials(account, token);
        self.post(target, message, account, token, from)
            .await
            .map_err(|error| error.masked(&[token, &pair]))
    }
}

impl SmsChannel {
    async fn post(
        &self,
        target: &ContactTarget,
        message: &OutgoingMessage,
        account: &str,
        token: &str,
        from: &str,
    ) -> Result<Receipt, ChannelError> {
        let origin = endpoint_origin(&self.base);
        let mut endpoint = self.base.clone();
        // Segments are percent-encoded, so an odd account id cannot change the path.
        endpoint
            .path_segments_mut()
            .map_err(|()| ChannelError::NotConfigured("[sms] url cannot take a path".to_string()))?
            .pop_if_empty()
            .extend(["2010-04-01", "Accounts", account, "Messages.json"]);
        let body = sms_body(&message.sms);
        let form = [
            ("To", target.address.as_str()),
            ("From", from),
            ("Body", body.as_str()),
        ];
        let response = self
            .client
            .post(endpoint)
            .map_err(|denied| super::denied_error(ContactKind::Sms, &origin, &denied))?
            .basic_auth(account, Some(token))
            .form(&form)
            .send()
            .await
            .map_err(|error| request_error(ContactKind::Sms, &origin, error))?;
        let status = response.status();
        // The answer only decorates a status that is already known; one too large or broken
        // off is read as empty.
        let answer = crate::outbound::read_capped(response, MAX_ANSWER_BYTES)
            .await
            .unwrap_or_default();
        let answer = serde_json::from_slice::<serde_json::Value>(&answer).ok();
        if !status.is_success() {
            let error = status_error(ContactKind::Sms, &origin, status);
            let code = answer
                .as_ref()
                .and_then(|answer| answer.get("code")?.as_u64());
            return Err(match (code, error) {
                (Some(code), ChannelError::Retryable(text)) => {
                    ChannelError::Retryable(format!("{text} (provider error code {code})"))
                }
                (Some(code), ChannelError::Permanent(text)) => {
                    ChannelError::Permanent(format!("{text} (provider error code {code})"))
                }
                (_, error) => error,
            });
        }
        let sid = answer
            .as_ref()
            .and_then(|answer| answer.get("sid")?.as_str())
            .filter(|sid| sid.len() <= 64 && sid.bytes().all(|byte| byte.is_ascii_alphanumeric()));
        let detail = match sid {
            Some(sid) => format!("{status} sid={sid}"),
            None => status.to_string(),
        };
        Ok(Receipt { detail })
    }
}

/// The text actually sent: one line, cut to [`MAX_SMS_CHARS`] characters.
pub fn sms_body(text: &str) -> String {
    let line = one_line(text);
    if line.chars().count() <= MAX_SMS_CHARS {
        return line;
    }
    // Three ASCII dots, not "…": a single non-GSM-7 character would shrink the segment to
    // 70 characters.
    let mut cut: String = line.chars().take(MAX_SMS_CHARS - 3).collect();
    cut.push_str("...");
    cut
}

/// Accepts an E.164 number: `+`, a country code that does not start with 0, and at most 15
/// digits in all.
pub fn check_phone_number(address: &str) -> Result<(), String> {
    let problem = || "must be a phone number in E.164 form like +4915112345678".to_string();
    let Some(digits) = address.strip_prefix('+') else {
        return Err(problem());
    };
    if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(problem());
    }
    if digits.starts_with('0') {
        return Err(problem());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_multiline_text_becomes_one_short_line() {
        let body = sms_body(&format!("disk full\non db-1\n{}", "é".repeat(300)));
        assert!(!body.contains('\n'));
        assert_eq!(body.chars().count(), MAX_SMS_CHARS);
        assert!(body.starts_with("disk full on db-1 "));
        assert!(body.ends_with("..."));
    }

    #[test]
    fn short_text_is_kept() {
        assert_eq!(sms_body("  cpu  high "), "cpu high");
    }
}
