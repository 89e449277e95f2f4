//! Chat through Slack- or Mattermost-style incoming webhooks.
//!
//! Both take `{"text": ...}` with `*bold*` markup. The webhook URL is the only credential such
//! a hook has, so errors name only its `scheme://host` and never quote an answer.

use super::{denied_error, endpoint_origin, request_error, status_error, Channel, ChannelError};
use super::{ContactKind, ContactTarget, OutgoingMessage, Receipt};
use crate::outbound::OutboundClient;

/// Posts to chat webhooks through the shared guarded HTTP client.
pub struct ChatChannel {
    client: OutboundClient,
}

impl ChatChannel {
    pub fn new(client: OutboundClient) -> ChatChannel {
        ChatChannel { client }
    }
}

/// The JSON body posted: the subject in bold, then the text with its action links.
pub fn chat_payload(message: &OutgoingMessage) -> serde_json::Value {
    serde_json::json!({ "text": format!("*{}*\n{}", message.subject, message.chat) })
}

#[async_trait::async_trait]
impl Channel for ChatChannel {
    fn kind(&self) -> ContactKind {
        ContactKind::Chat
    }

    fn check_address(&self, address: &str) -> Result<(), String> {
        self.client.check_url_text(address)
    }

    async fn send(
        &self,
        target: &ContactTarget,
        message: &OutgoingMessage,
    ) -> Result<Receipt, ChannelError> {
        let url = reqwest::Url::parse(&target.address).map_err(|_| {
            ChannelError::Permanent("chat webhook url is not a valid url".to_string())
        })?;
        let origin = endpoint_origin(&url);
        let hide = [url.path(), url.query().unwrap_or_default()];
        let response = self
            .client
            .post(url.clone())
            .map_err(|denied| denied_error(ContactKind::Chat, &origin, &denied))?
            .json(&chat_payload(message))
            .send()
            .await
            .map_err(|error| request_error(ContactKind::Chat, &origin, error).masked(&hide))?;
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(ContactKind::Chat, &origin, status));
        }
        // The answer ("ok" from Slack) is not shown: the URL is the user's choice, and so
        // is what answers it.
        Ok(Receipt {
            detail: status.to_string(),
        })
    }
}
