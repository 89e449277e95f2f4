//! The HTTP JSON metrics engine as a contact point: alerts go back to the engine that
//! defined them, so its own UI and on-call tooling show what tellify decided.
//!
//! The address is the engine's base URL. For each alert of a delivery, in order: a fired,
//! escalated or repeated alert is `POST {url}/notify {"alertName", "message"}`, a resolved
//! one `POST {url}/resolve {"alertName"}`. `alertName` is the alert's subscription title,
//! which is the engine's definition name for subscriptions made by
//! `POST /api/v1/subscriptions/import`. A delivery succeeds only when every call answered
//! 2xx; it stops at the first failure, so a retry repeats as few calls as possible, and each
//! call carries `Idempotency-Key: {delivery id}.{index}` so an engine can drop the repeats.

use serde_json::{json, Value};

use super::webhook::IDEMPOTENCY_HEADER;
use super::{denied_error, endpoint_origin, request_error, Receipt};
use super::{status_error, Channel, ChannelError, ContactKind, ContactTarget, OutgoingMessage};
use crate::outbound::OutboundClient;

/// The `alertName` of a test message: notified and resolved at once, so a test leaves no
/// open alert behind in the engine.
pub const TEST_ALERT_NAME: &str = "tellify test";

/// Calls an engine's `/notify` and `/resolve` through the shared guarded HTTP client.
pub struct EngineChannel {
    client: OutboundClient,
}

impl EngineChannel {
    pub fn new(client: OutboundClient) -> EngineChannel {
        EngineChannel { client }
    }
}

/// One call to the engine: which endpoint and the JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineCall {
    /// `notify` or `resolve`.
    pub endpoint: &'static str,
    pub body: Value,
}

/// The calls a message turns into, in the order the alerts appear in it. A test message
/// (no alerts, `"test": true`) is a notify and a resolve of [`TEST_ALERT_NAME`]; an alert
/// without a title cannot be named to the engine and is refused rather than skipped, since
/// skipping it would mark it delivered.
pub fn engine_calls(message: &OutgoingMessage) -> Result<Vec<EngineCall>, ChannelError> {
    let payload: Value = serde_json::from_slice(&message.payload).map_err(|error| {
        ChannelError::Permanent(format!("the delivery's payload is not JSON: {error}"))
    })?;
    let alerts = payload
        .get("alerts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if alerts.is_empty() && payload.get("test").and_then(Value::as_bool) == Some(true) {
        return Ok(vec![
            notify(TEST_ALERT_NAME, &message.subject),
            resolve(TEST_ALERT_NAME),
        ]);
    }
    let mut calls = Vec::with_capacity(alerts.len());
    for (index, alert) in alerts.iter().enumerate() {
        let title = alert
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if title.trim().is_empty() {
            return Err(ChannelError::Permanent(format!(
                "alert {} of the delivery has no title to name it to the engine",
                index + 1
            )));
        }
        let transition = alert
            .get("transition")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match transition {
            "resolved" => calls.push(resolve(title)),
            "fired" | "escalated" | "repeat" | "test" => {
                let text = alert
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                calls.push(notify(title, text));
            }
            other => {
                return Err(ChannelError::Permanent(format!(
                    "alert {} of the delivery has an unknown transition `{other}`",
                    index + 1
                )))
            }
        }
    }
    Ok(calls)
}

fn notify(name: &str, message: &str) -> EngineCall {
    EngineCall {
        endpoint: "notify",
        body: json!({"alertName": name, "message": message}),
    }
}

fn resolve(name: &str) -> EngineCall {
    EngineCall {
        endpoint: "resolve",
        body: json!({"alertName": name}),
    }
}

#[async_trait::async_trait]
impl Channel for EngineChannel {
    fn kind(&self) -> ContactKind {
        ContactKind::Engine
    }

    fn check_address(&self, address: &str) -> Result<(), String> {
        self.client.check_url_text(address)?;
        if address.contains(['?', '#']) {
            return Err("must be a base url without query or fragment".to_string());
        }
        Ok(())
    }

    async fn send(
        &self,
        target: &ContactTarget,
        message: &OutgoingMessage,
    ) -> Result<Receipt, ChannelError> {
        let base = reqwest::Url::parse(target.address.trim_end_matches('/'))
            .map_err(|_| ChannelError::Permanent("engine url is not a valid url".to_string()))?;
        let origin = endpoint_origin(&base);
        let base_path = base.path().trim_end_matches('/').to_string();
        let calls = engine_calls(message)?;
        let total = calls.len();
        for (index, call) in calls.iter().enumerate() {
            let mut url = base.clone();
            url.set_path(&format!("{base_path}/{}", call.endpoint));
            let place = format!("{} {} of {total}", call.endpoint, index + 1);
            let response = self
                .client
                .post(url)
                .map_err(|denied| {
                    with_place(denied_error(ContactKind::Engine, &origin, &denied), &place)
                })?
                .header(
                    IDEMPOTENCY_HEADER,
                    format!("{}.{index}", message.delivery_id),
                )
                .json(&call.body)
                .send()
                .await
                .map_err(|error| {
                    let error = request_error(ContactKind::Engine, &origin, error);
                    with_place(error.masked(&[base_path.as_str()]), &place)
                })?;
            let status = response.status();
            if status.is_success() {
                continue;
            }
            let error = status_error(ContactKind::Engine, &origin, status);
            return Err(with_place(error, &place));
        }
        let noun = if total == 1 { "call" } else { "calls" };
        Ok(Receipt {
            detail: format!("{total} engine {noun} answered 2xx"),
        })
    }
}

/// Says which call of the delivery failed (`notify 2 of 3`), keeping the error's kind.
fn with_place(error: ChannelError, place: &str) -> ChannelError {
    match error {
        ChannelError::Retryable(detail) => ChannelError::Retryable(format!("{place}: {detail}")),
        ChannelError::Permanent(detail) => ChannelError::Permanent(format!("{place}: {detail}")),
        ChannelError::NotConfigured(detail) => {
            ChannelError::NotConfigured(format!("{place}: {detail}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: Value) -> OutgoingMessage {
        OutgoingMessage {
            delivery_id: "d1".to_string(),
            subject: "tellify test".to_string(),
            text: String::new(),
            html: String::new(),
            chat: String::new(),
            sms: String::new(),
            payload: serde_json::to_vec(&payload).unwrap().into(),
        }
    }

    #[test]
    fn firing_transitions_notify_and_resolved_resolves_in_order() {
        let calls = engine_calls(&message(json!({"alerts": [
            {"transition": "fired", "title": "load", "message": "load is high", "state": "firing"},
            {"transition": "escalated", "title": "disk", "message": "disk is full", "state": "firing"},
            {"transition": "repeat", "title": "load", "message": "load is high", "state": "firing"},
            {"transition": "resolved", "title": "disk", "message": "disk is full", "state": "resolved"},
        ]})))
        .unwrap();
        let shown: Vec<(&str, Value)> = calls
            .iter()
            .map(|call| (call.endpoint, call.body.clone()))
            .collect();
        assert_eq!(
            shown,
            vec![
                (
                    "notify",
                    json!({"alertName": "load", "message": "load is high"})
                ),
                (
                    "notify",
                    json!({"alertName": "disk", "message": "disk is full"})
                ),
                (
                    "notify",
                    json!({"alertName": "load", "message": "load is high"})
                ),
                ("resolve", json!({"alertName": "disk"})),
            ]
        );
    }

    #[test]
    fn a_test_message_notifies_and_resolves_the_test_alert() {
        let calls = engine_calls(&message(json!({"alerts": [], "test": true}))).unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].endpoint, "notify");
        assert_eq!(calls[0].body["alertName"], TEST_ALERT_NAME);
        assert_eq!(calls[1], resolve(TEST_ALERT_NAME));
    }

    #[test]
    fn an_alert_without_title_or_with_an_odd_transition_is_refused_for_good() {
        let untitled = engine_calls(&message(json!({"alerts": [
            {"transition": "fired", "title": " ", "message": "x"}
        ]})))
        .unwrap_err();
        assert!(!untitled.is_retryable());
        assert!(untitled.to_string().contains("no title"), "{untitled}");
        let odd = engine_calls(&message(json!({"alerts": [
            {"transition": "later", "title": "load", "message": "x"}
        ]})))
        .unwrap_err();
        assert!(
            odd.to_string().contains("unknown transition `later`"),
            "{odd}"
        );
    }

    #[test]
    fn the_address_is_a_base_url() {
        let guard = crate::outbound::OutboundGuard::default();
        let client = guard.client(std::time::Duration::from_secs(1)).unwrap();
        let channel = EngineChannel::new(client);
        assert!(channel.check_address("http://engine:8000").is_ok());
        assert!(channel.check_address("http://127.0.0.1:8000").is_err());
        assert!(channel.check_address("https://engine/base/").is_ok());
        assert!(channel.check_address("ftp://engine").is_err());
        assert!(channel.check_address("http://engine/?token=x").is_err());
    }
}
