//! Generic webhooks: the message's JSON payload, POSTed to the user's URL.
//!
//! Receivers get `X-Tellify-Delivery` and `Idempotency-Key` (both the delivery id, stable
//! across retries, so a duplicate can be dropped) and `X-Tellify-Timestamp`. When the contact
//! point has a secret, `X-Tellify-Signature: sha256=<hex>` is the HMAC-SHA256 of
//! `"{timestamp}.{body}"` over the exact bytes sent; signing the timestamp too lets a receiver
//! reject an old request replayed later. [`sign`] computes the same value for verification.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{denied_error, endpoint_origin, request_error, Receipt};
use super::{status_error, Channel, ChannelError, ContactKind, ContactTarget, OutgoingMessage};
use crate::outbound::OutboundClient;

/// Header carrying the delivery id.
pub const DELIVERY_HEADER: &str = "X-Tellify-Delivery";
/// Header carrying the delivery id under the name generic HTTP tooling knows.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Header carrying the signing time in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Tellify-Timestamp";
/// Header carrying [`sign`]'s value when the contact point has a secret.
pub const SIGNATURE_HEADER: &str = "X-Tellify-Signature";

/// The `X-Tellify-Signature` value for `body` sent at `timestamp` (Unix seconds):
/// `sha256=` and the lowercase hex HMAC-SHA256 of `"{timestamp}.{body}"` keyed with `secret`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails; the fallback keeps it panic-free.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut value = String::with_capacity(7 + digest.len() * 2);
    value.push_str("sha256=");
    for byte in digest {
        value.push(char::from(HEX[usize::from(byte >> 4)]));
        value.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    value
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Sends webhooks through the shared guarded HTTP client.
pub struct WebhookChannel {
    client: OutboundClient,
}

impl WebhookChannel {
    pub fn new(client: OutboundClient) -> WebhookChannel {
        WebhookChannel { client }
    }

    /// [`Channel::send`] with the signing time passed in, so tests can pin it.
    pub async fn send_at(
        &self,
        target: &ContactTarget,
        message: &OutgoingMessage,
        now: jiff::Timestamp,
    ) -> Result<Receipt, ChannelError> {
        let url = reqwest::Url::parse(&target.address)
            .map_err(|_| ChannelError::Permanent("webhook url is not a valid url".to_string()))?;
        let secret = target.secret.as_deref().unwrap_or_default();
        let hide = [url.path(), url.query().unwrap_or_default(), secret];
        self.post(target, message, now, url.clone())
            .await
            .map_err(|error| error.masked(&hide))
    }

    async fn post(
        &self,
        target: &ContactTarget,
        message: &OutgoingMessage,
        now: jiff::Timestamp,
        url: reqwest::Url,
    ) -> Result<Receipt, ChannelError> {
        let origin = endpoint_origin(&url);
        let body = message.payload.clone();
        let timestamp = now.as_second();
        let mut request = self
            .client
            .post(url)
            .map_err(|denied| denied_error(ContactKind::Webhook, &origin, &denied))?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, &message.delivery_id)
            .header(IDEMPOTENCY_HEADER, &message.delivery_id)
            .header(TIMESTAMP_HEADER, timestamp.to_string());
        if let Some(secret) = &target.secret {
            request = request.header(SIGNATURE_HEADER, sign(secret, timestamp, &body));
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|error| request_error(ContactKind::Webhook, &origin, error))?;
        let status = response.status();
        if status.is_success() {
            return Ok(Receipt {
                detail: status.to_string(),
            });
        }
        Err(status_error(ContactKind::Webhook, &origin, status))
    }
}

#[async_trait::async_trait]
impl Channel for WebhookChannel {
    fn kind(&self) -> ContactKind {
        ContactKind::Webhook
    }

    fn check_address(&self, address: &str) -> Result<(), String> {
        self.client.check_url_text(address)
    }

    async fn send(
        &self,
        target: &ContactTarget,
        message: &OutgoingMessage,
    ) -> Result<Receipt, ChannelError> {
        self.send_at(target, message, jiff::Timestamp::now()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_value() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            sign("key", 1_700_000_000, br#"{"a":1}"#),
            "sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
    }
}
