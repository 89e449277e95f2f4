//! Chat through Slack- or Mattermost-style incoming webhooks.
//!
//! Both take `{"text": ...}` with `*bold*` markup. The webhook URL is the only credential such
//! a hook has, so errors name only its `scheme://host` and scrub its path from any answer
//! they quote.

use super::{answer_snippet, check_http_url, endpoint_origin, one_line, read_answer};
use super::{request_error, status_error, Channel, ChannelError, ContactKind, ContactTarget};
use super::{OutgoingMessage, Receipt};

/// Longest provider answer kept in a receipt (Slack answers "ok").
const MAX_RECEIPT_ANSWER_CHARS: usize = 100;

/// Posts to chat webhooks through the shared HTTP client.
pub struct ChatChannel {
    client: reqwest::Client,
}

impl ChatChannel {
    pub fn new(client: reqwest::Client) -> ChatChannel {
        ChatChannel { client }
    }
}

/// The JSON body posted: the subject in bold, then the text.
pub fn chat_payload(message: &OutgoingMessage) -> serde_json::Value {
    serde_json::json!({ "text": format!("*{}*\n{}", message.subject, message.text) })
}

#[async_trait::async_trait]
impl Channel for ChatChannel {
    fn kind(&self) -> ContactKind {
        ContactKind::Chat
    }

    fn check_address(&self, address: &str) -> Result<(), String> {
        check_http_url(address)
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
            .json(&chat_payload(message))
            .send()
            .await
            .map_err(|error| request_error(ContactKind::Chat, &origin, error))?;
        let status = response.status();
        let answer = read_answer(response).await;
        let snippet = answer_snippet(&answer, &hide);
        if !status.is_success() {
            return Err(status_error(ContactKind::Chat, &origin, status, &snippet));
        }
        let answer = one_line(&snippet);
        let detail = if answer.is_empty() {
            status.to_string()
        } else {
            format!(
                "{status} {}",
                super::cut_chars(&answer, MAX_RECEIPT_ANSWER_CHARS)
            )
        };
        Ok(Receipt { detail })
    }
}
