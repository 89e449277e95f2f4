//! The backend-neutral half of the outbox, shared by the SQLite and PostgreSQL stores:
//! which due notifications go out and how they are ganged (one delivery per user and
//! contact point), how a claim becomes [`DeliveryJob`]s, and which columns an attempt's
//! outcome writes. Each backend keeps only its SQL: reading the due rows, claiming them
//! so that no notification joins two deliveries, and writing what is decided here.

use std::collections::HashMap;

use jiff::Timestamp;
use tellify_engine::render::Transition;

use crate::processing;
use crate::JobItem;
use crate::{
    AlertStanding, ContactPoint, Delivery, DeliveryJob, DeliveryOutcome, FinishedDelivery,
};

/// Most notifications ganged in one call; the rest wait for the next round.
pub(crate) const MAX_GANG: usize = 50_000;

/// Why a delivery planned for a contact point that no longer exists failed.
pub(crate) const DELETED_POINT_ERROR: &str = "the contact point was deleted before this was sent";

/// The name and kind a delivery records when its contact point was gone before ganging.
pub(crate) const DELETED_POINT_NAME: &str = "(deleted)";
pub(crate) const DELETED_POINT_KIND: &str = "deleted";

/// A notification due to be ganged, as read from the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DueNotification {
    pub id: i64,
    pub user_id: String,
    pub contact_point_id: String,
    pub alert_id: String,
    pub transition: String,
}

/// The notifications of one user for one contact point, in outbox order: one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Gang {
    pub user_id: String,
    pub contact_point_id: String,
    pub notifications: Vec<i64>,
}

/// What to do with a batch of due notifications.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GangPlan {
    /// One delivery each, in the order their first notification was due.
    pub gangs: Vec<Gang>,
    /// Notifications with nothing left to say (their alert is gone, cleared,
    /// acknowledged or shelved since): deleted rather than sent.
    pub dropped: Vec<i64>,
}

/// The distinct alerts a batch of due notifications names, for one read of their bodies.
pub(crate) fn alert_ids(due: &[DueNotification]) -> Vec<String> {
    let mut ids: Vec<String> = due
        .iter()
        .map(|notification| notification.alert_id.clone())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Groups due notifications per (user, contact point), dropping those whose alert (from
/// `alerts`, by id; absent when deleted) should no longer make noise at `now`.
pub(crate) fn plan_gangs(
    due: Vec<DueNotification>,
    alerts: &HashMap<String, AlertStanding>,
    now: Timestamp,
) -> GangPlan {
    let mut plan = GangPlan::default();
    let mut gang_index: HashMap<(String, String), usize> = HashMap::new();
    for notification in due {
        let keep = alerts.get(&notification.alert_id).is_some_and(|alert| {
            // The planner stores only known transitions; anything else counts as firing.
            let transition = notification.transition.parse().unwrap_or(Transition::Fired);
            processing::still_notifiable(alert, transition, now)
        });
        if !keep {
            plan.dropped.push(notification.id);
            continue;
        }
        let key = (notification.user_id, notification.contact_point_id);
        let index = match gang_index.get(&key) {
            Some(index) => *index,
            None => {
                plan.gangs.push(Gang {
                    user_id: key.0.clone(),
                    contact_point_id: key.1.clone(),
                    notifications: Vec::new(),
                });
                gang_index.insert(key, plan.gangs.len() - 1);
                plan.gangs.len() - 1
            }
        };
        plan.gangs[index].notifications.push(notification.id);
    }
    plan
}

/// What ganging needs of a stored alert body. A body that does not read is kept
/// notifiable (a warning names it): an alert is never dropped for a fault of its copy, and
/// the one notification fails at its send, where the delivery records why, rather than
/// stopping the gang for everyone.
pub(crate) fn standing_of(alert_id: &str, body: &str) -> AlertStanding {
    serde_json::from_str(body).unwrap_or_else(|error| {
        tracing::warn!(alert = alert_id, %error, "the stored alert is unreadable; notifying anyway");
        AlertStanding::default()
    })
}

/// Items of several deliveries, as `(notification id, delivery id, item)` rows in any
/// order, grouped per delivery in notification order.
pub(crate) fn items_by_delivery<T>(mut rows: Vec<(i64, String, T)>) -> HashMap<String, Vec<T>> {
    rows.sort_unstable_by_key(|(id, _, _)| *id);
    let mut items: HashMap<String, Vec<T>> = HashMap::new();
    for (_, delivery_id, item) in rows {
        items.entry(delivery_id).or_default().push(item);
    }
    items
}

/// Claimed deliveries (already marked as being sent) with their contact points and
/// items, as the sender gets them.
pub(crate) fn jobs(
    claimed: Vec<(Delivery, ContactPoint)>,
    mut items: HashMap<String, Vec<JobItem>>,
) -> Vec<DeliveryJob> {
    claimed
        .into_iter()
        .map(|(delivery, contact_point)| {
            let items = items.remove(&delivery.id).unwrap_or_default();
            DeliveryJob {
                delivery,
                contact_point,
                items,
            }
        })
        .collect()
}

/// What one attempt's outcome writes: the delivery's new columns and the attempt row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OutcomeColumns<'a> {
    pub status: &'static str,
    /// The new last error; `None` keeps the one recorded before.
    pub error: Option<&'a str>,
    pub receipt: Option<&'a str>,
    pub next_attempt_ms: i64,
    pub sent_at: Option<Timestamp>,
    /// Whether the attempt succeeded, and what it said.
    pub ok: bool,
    pub detail: &'a str,
}

/// The columns an outcome writes. Only a delivery still being sent takes an outcome (the
/// backends' `WHERE status = 'sending'`): a late one, for a delivery sent, failed or
/// given back since, changes nothing.
pub(crate) fn outcome_columns(result: &FinishedDelivery) -> OutcomeColumns<'_> {
    let at = result.at.as_millisecond();
    match &result.outcome {
        DeliveryOutcome::Sent { receipt } => OutcomeColumns {
            status: "sent",
            error: None,
            receipt: Some(receipt.as_str()),
            next_attempt_ms: at,
            sent_at: Some(result.at),
            ok: true,
            detail: receipt.as_str(),
        },
        DeliveryOutcome::Retry {
            error,
            next_attempt,
        } => OutcomeColumns {
            status: "pending",
            error: Some(error.as_str()),
            receipt: None,
            next_attempt_ms: next_attempt.as_millisecond(),
            sent_at: None,
            ok: false,
            detail: error.as_str(),
        },
        DeliveryOutcome::Failed { error } => OutcomeColumns {
            status: "failed",
            error: Some(error.as_str()),
            receipt: None,
            next_attempt_ms: at,
            sent_at: None,
            ok: false,
            detail: error.as_str(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(id: i64, user: &str, point: &str, alert: &str) -> DueNotification {
        DueNotification {
            id,
            user_id: user.to_string(),
            contact_point_id: point.to_string(),
            alert_id: alert.to_string(),
            transition: "fired".to_string(),
        }
    }

    #[test]
    fn notifications_of_a_missing_alert_are_dropped_and_none_is_ganged() {
        let plan = plan_gangs(
            vec![due(1, "ann", "hook", "gone"), due(2, "bob", "mail", "gone")],
            &HashMap::new(),
            Timestamp::UNIX_EPOCH,
        );
        assert!(plan.gangs.is_empty());
        assert_eq!(plan.dropped, vec![1, 2]);
    }

    #[test]
    fn an_alert_body_that_does_not_read_keeps_its_notification() {
        let standing = standing_of("a1", "{\"cleared\": ");
        assert_eq!(standing, AlertStanding::default());
        let plan = plan_gangs(
            vec![due(1, "ann", "hook", "a1")],
            &HashMap::from([("a1".to_string(), standing)]),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(plan.gangs.len(), 1, "ganged, not dropped");
        assert!(plan.dropped.is_empty());
        let acked = standing_of(
            "a2",
            r#"{"acked": true, "message": "x", "fields": {"n": 1}}"#,
        );
        assert!(acked.acked, "the other keys of the body are skipped");
    }

    #[test]
    fn alert_ids_are_distinct() {
        let ids = alert_ids(&[
            due(1, "ann", "hook", "b"),
            due(2, "ann", "hook", "a"),
            due(3, "bob", "hook", "b"),
        ]);
        assert_eq!(ids, vec!["a".to_string(), "b".to_string()]);
    }
}
