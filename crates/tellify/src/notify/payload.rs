//! The message a delivery becomes ([`OutgoingMessage`]), with the JSON body that webhooks
//! send and engines read.
//!
//! The body is serialized once, straight from the delivery's alerts, through the borrowing
//! structs below. It used to be built as a `serde_json::Value` tree first and serialized
//! from that: for a storm's 4,000-alert webhook the tree was several megabytes more, held
//! while the delivery was sent, on top of the body itself. The field order is the wire
//! format receivers see (the same as before), so keep it.

use serde::Serialize;
use tellify_engine::alerts::AlertState;
use tellify_engine::render::{ActionLinks, RenderItem, Rendered, Transition};
use tellify_model::{Fields, Severity};
use tellify_store::DeliveryJob;

use crate::channels::OutgoingMessage;

/// A webhook's body: the delivery and every alert it carries.
#[derive(Serialize)]
struct Body<'a> {
    delivery_id: &'a str,
    contact_point: &'a str,
    subject: &'a str,
    text: &'a str,
    count: usize,
    alerts: Vec<BodyAlert<'a>>,
    /// Only a test message says so.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    test: bool,
}

/// One alert of a webhook's body.
#[derive(Serialize)]
struct BodyAlert<'a> {
    id: &'a str,
    transition: Transition,
    subscription_id: &'a str,
    title: &'a str,
    kind: &'a str,
    group_key: &'a str,
    state: AlertState,
    severity: Severity,
    previous_severity: Option<Severity>,
    message: &'a str,
    count: u64,
    first_seen: jiff::Timestamp,
    last_seen: jiff::Timestamp,
    fields: &'a Fields,
    /// The alert in the API, when the server knows its public address.
    url: Option<String>,
    /// The reader's signed action links, for an alert still firing.
    actions: Option<&'a ActionLinks>,
}

/// The message for a delivery: the rendered forms, and the JSON body with every alert
/// (`items` are the delivery's, in its order, with their action links). `link` is the
/// server's public address.
pub(super) fn outgoing(
    job: &DeliveryJob,
    items: &[RenderItem],
    rendered: &Rendered,
    link: Option<&str>,
) -> Result<OutgoingMessage, serde_json::Error> {
    let alerts = items.iter().map(|item| body_alert(item, link)).collect();
    message(
        &job.delivery.id,
        &job.contact_point.name,
        rendered,
        alerts,
        false,
    )
}

fn body_alert<'a>(item: &'a RenderItem, link: Option<&str>) -> BodyAlert<'a> {
    let alert = &item.alert;
    BodyAlert {
        id: &alert.id,
        transition: item.transition,
        subscription_id: &alert.subscription_id,
        title: &alert.title,
        kind: &alert.kind,
        group_key: &alert.group_key,
        state: alert.state,
        severity: alert.severity,
        previous_severity: alert.previous_severity,
        message: &alert.message,
        count: alert.count,
        first_seen: alert.first_seen,
        last_seen: alert.last_seen,
        fields: &alert.fields,
        url: link.map(|base| format!("{}/api/v1/alerts/{}", base.trim_end_matches('/'), alert.id)),
        actions: item.actions.as_ref(),
    }
}

/// A test message to a contact point: no alerts, and `"test": true` in the body.
pub(super) fn test_message(
    delivery_id: &str,
    contact_point: &str,
    rendered: &Rendered,
) -> Result<OutgoingMessage, serde_json::Error> {
    message(delivery_id, contact_point, rendered, Vec::new(), true)
}

fn message(
    delivery_id: &str,
    contact_point: &str,
    rendered: &Rendered,
    alerts: Vec<BodyAlert<'_>>,
    test: bool,
) -> Result<OutgoingMessage, serde_json::Error> {
    let body = Body {
        delivery_id,
        contact_point,
        subject: &rendered.subject,
        text: &rendered.text,
        count: alerts.len(),
        alerts,
        test,
    };
    let payload = serde_json::to_vec(&body)?;
    Ok(OutgoingMessage {
        delivery_id: delivery_id.to_string(),
        subject: rendered.subject.clone(),
        text: rendered.text.clone(),
        html: rendered.html.clone(),
        chat: rendered.chat.clone(),
        sms: rendered.sms.clone(),
        payload: payload.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tellify_engine::alerts::{apply_output, AlertOrigin};
    use tellify_engine::handlers::AlertOutput;

    fn rendered() -> Rendered {
        Rendered {
            subject: "disk full on db-1".to_string(),
            text: "disk full on db-1\n".to_string(),
            html: "<p>disk</p>".to_string(),
            chat: "chat".to_string(),
            sms: "sms".to_string(),
        }
    }

    fn fired(title: &str, group_key: &str, actions: Option<ActionLinks>) -> RenderItem {
        let origin = AlertOrigin {
            subscription_id: "s1".into(),
            owner_user: Some("u1".into()),
            owner_group: None,
            kind: "match".into(),
            title: title.into(),
            latching: false,
        };
        let mut fields = Fields::new();
        fields.insert("host".into(), json!("db-1"));
        fields.insert("usage".into(), json!(97.5));
        let output = AlertOutput::Fire {
            group_key: group_key.into(),
            severity: Severity::Critical,
            message: "disk is full".into(),
            fields,
            event_id: Some("e1".into()),
        };
        let at = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let (alert, _) = apply_output(None, &output, &origin, at, &|| "a1".to_string()).unwrap();
        RenderItem {
            alert,
            transition: Transition::Fired,
            actions,
        }
    }

    /// The body is byte for byte what receivers got before it was serialized straight
    /// from the alerts: the same keys in the same order, the same values.
    #[test]
    fn the_body_keeps_the_wire_format_receivers_know() {
        let links = ActionLinks {
            ack: "https://t.example/act/ack-token".into(),
            shelve: "https://t.example/act/shelve-token".into(),
        };
        let items = [
            fired("disk", "db-1", Some(links)),
            fired("load", "db-2", None),
        ];
        let alerts: Vec<BodyAlert> = items
            .iter()
            .map(|item| body_alert(item, Some("https://t.example/")))
            .collect();
        let message = message("d1", "ops hook", &rendered(), alerts, false).unwrap();
        let alert = |item: &RenderItem, actions: serde_json::Value| {
            let alert = &item.alert;
            json!({
                "id": alert.id,
                "transition": "fired",
                "subscription_id": "s1",
                "title": alert.title,
                "kind": "match",
                "group_key": alert.group_key,
                "state": "firing",
                "severity": "critical",
                "previous_severity": null,
                "message": "disk is full",
                "count": 1,
                "first_seen": "2023-11-14T22:13:20Z",
                "last_seen": "2023-11-14T22:13:20Z",
                "fields": {"host": "db-1", "usage": 97.5},
                "url": format!("https://t.example/api/v1/alerts/{}", alert.id),
                "actions": actions,
            })
        };
        let expected = json!({
            "delivery_id": "d1",
            "contact_point": "ops hook",
            "subject": "disk full on db-1",
            "text": "disk full on db-1\n",
            "count": 2,
            "alerts": [
                alert(&items[0], json!({"ack": "https://t.example/act/ack-token", "shelve": "https://t.example/act/shelve-token"})),
                alert(&items[1], serde_json::Value::Null),
            ],
        });
        assert_eq!(
            std::str::from_utf8(&message.payload).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
        assert_eq!(message.delivery_id, "d1");
        assert_eq!(message.html, "<p>disk</p>");
    }

    #[test]
    fn a_test_message_says_so_and_carries_no_alerts() {
        let message = test_message("test-1", "ops hook", &rendered()).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(
            body,
            json!({
                "delivery_id": "test-1",
                "contact_point": "ops hook",
                "subject": "disk full on db-1",
                "text": "disk full on db-1\n",
                "count": 0,
                "alerts": [],
                "test": true,
            })
        );
    }
}
