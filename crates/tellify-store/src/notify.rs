//! Types of the notification side of the store: contact points, policies, silences, the
//! durable outbox (notifications waiting to be ganged, deliveries being sent), repeats and
//! the audit log.

use jiff::Timestamp;

/// What a user removed from tellify leaves behind where others' records named them.
pub const REMOVED_USER: &str = "removed-user";

/// Users and contact points whose new messages wait (they reached their rate limit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryHold {
    pub users: Vec<String>,
    pub contact_points: Vec<String>,
}
use serde::{Deserialize, Serialize};
use tellify_engine::alerts::Alert;
use tellify_engine::render::Transition;

/// One way to reach a user: an email address, a phone, a webhook or a chat webhook.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactPoint {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// `email`, `sms`, `webhook` or `chat`.
    pub kind: String,
    pub address: String,
    /// The webhook signing secret; never serialized into API answers.
    #[serde(skip_serializing, default)]
    pub secret: Option<String>,
    pub created: Timestamp,
}

impl std::fmt::Debug for ContactPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactPoint")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// A user's named policy, parsed once: when it is written (against the operator's limits
/// of the day) and when it is read back (with [`PolicyLimits::widest`], so a floor raised
/// since never refuses it; the planner raises it to today's floors). Stored as the
/// policy's public JSON shape.
///
/// [`PolicyLimits::widest`]: tellify_engine::policy::PolicyLimits::widest
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyRecord {
    pub user_id: String,
    pub name: String,
    pub policy: tellify_engine::policy::Policy,
    pub updated: Timestamp,
}

/// A user's silence: alerts matching `filter` do not notify between `starts` and `ends`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub user_id: String,
    /// A CEL expression over the alert (see the README).
    pub filter: String,
    pub starts: Timestamp,
    pub ends: Timestamp,
    pub comment: Option<String>,
    pub created: Timestamp,
}

/// Everything the notification planner needs to know about people, loaded at once so it
/// can answer from memory inside the processing transaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NotifyDirectory {
    pub users: Vec<crate::User>,
    /// (group id, member user ids)
    pub groups: Vec<(String, Vec<String>)>,
    pub contact_points: Vec<ContactPoint>,
    pub policies: Vec<PolicyRecord>,
    pub silences: Vec<Silence>,
    /// (subscription id, policy name) for subscriptions that name a policy.
    pub subscription_policies: Vec<(String, String)>,
}

/// One alert transition for one contact point, waiting to be ganged into a delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewNotification {
    pub user_id: String,
    pub contact_point_id: String,
    pub alert_id: String,
    /// `fired`, `escalated`, `resolved` or `repeat`.
    pub transition: String,
    /// Unique per (user, alert, transition, contact point): a second copy is not stored.
    pub idempotency_key: String,
    pub due_at: Timestamp,
    /// The alert as it was at the transition, for rendering.
    pub alert: Alert,
}

/// When an alert should be considered again for a repeated notification to a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepeatSchedule {
    pub alert_id: String,
    pub user_id: String,
    pub next_at: Timestamp,
    /// The interval used when nothing else is known (the policy is re-read each time).
    pub every_ms: i64,
}

/// What the planner decides for one alert change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub notifications: Vec<NewNotification>,
    pub repeats: Vec<RepeatSchedule>,
}

/// Decides who hears about an alert change, where and when. Called by the store inside
/// the transaction that records the change, so the outbox rows and the alert change are
/// committed together. Must not do IO.
pub trait NotificationPlanner: Send + Sync {
    /// `transition` is fired, escalated, resolved or repeat; `occurrence` makes the
    /// idempotency key unique per transition (a history position, or a repeat number).
    fn plan(&self, alert: &Alert, transition: Transition, occurrence: i64, now: Timestamp) -> Plan;
}

/// A planner handle that can sit in a [`crate::ProcessingCommit`].
#[derive(Clone)]
pub struct PlannerRef(pub std::sync::Arc<dyn NotificationPlanner>);

impl std::fmt::Debug for PlannerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlannerRef")
    }
}

impl PartialEq for PlannerRef {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// Claimed by a sender; if the lease runs out (a crash) it is tried again.
    Sending,
    Sent,
    /// Gave up: a permanent error or too many attempts.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        match text {
            "pending" => Some(DeliveryStatus::Pending),
            "sending" => Some(DeliveryStatus::Sending),
            "sent" => Some(DeliveryStatus::Sent),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One message to one contact point, ganging one or more notifications.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub user_id: String,
    pub contact_point_id: String,
    pub contact_point: String,
    pub kind: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt: Timestamp,
    pub last_error: Option<String>,
    /// The provider's answer to the successful attempt.
    pub receipt: Option<String>,
    /// How many alert transitions it carries.
    pub items: u32,
    pub subject: Option<String>,
    pub created: Timestamp,
    pub sent_at: Option<Timestamp>,
}

/// One try to send a delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub at: Timestamp,
    pub ok: bool,
    pub detail: String,
}

/// One alert transition inside a delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryItem {
    pub alert_id: String,
    pub transition: String,
    pub alert: Alert,
}

/// A delivery with its attempts and the alert transitions it carries.
pub type DeliveryRecord = (Delivery, Vec<DeliveryAttempt>, Vec<DeliveryItem>);

/// A delivery claimed for sending, with what it carries and where it goes.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryJob {
    pub delivery: Delivery,
    pub contact_point: ContactPoint,
    pub items: Vec<JobItem>,
}

/// One alert transition of a claimed delivery, its alert still the stored JSON: the claim
/// runs on the store's one writer, so the sender parses it ([`JobItem::alert`]) on its own
/// task, and an unreadable one fails that delivery only, not the claim.
#[derive(Clone, Debug, PartialEq)]
pub struct JobItem {
    pub alert_id: String,
    pub transition: String,
    /// The alert as the notification stored it (JSON of [`Alert`]).
    pub alert_json: String,
}

impl JobItem {
    /// The alert it carries; the error names the alert and what is wrong with its JSON.
    pub fn alert(&self) -> Result<Alert, String> {
        serde_json::from_str(&self.alert_json).map_err(|error| {
            format!(
                "the stored copy of alert {} is unreadable: {error}",
                self.alert_id
            )
        })
    }

    /// The item with its alert parsed.
    pub fn parse(self) -> Result<DeliveryItem, String> {
        let alert = self.alert()?;
        Ok(DeliveryItem {
            alert_id: self.alert_id,
            transition: self.transition,
            alert,
        })
    }
}

pub use tellify_engine::alerts::AlertStanding;

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum DeliveryOutcome {
    Sent {
        receipt: String,
    },
    Retry {
        error: String,
        next_attempt: Timestamp,
    },
    Failed {
        error: String,
    },
}

/// One attempt's outcome, for [`crate::Store::finish_deliveries`].
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedDelivery {
    pub id: String,
    pub outcome: DeliveryOutcome,
    /// The rendered subject, kept for the delivery list.
    pub subject: String,
    pub at: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryQuery {
    /// Only this user's deliveries (all when `None`).
    pub user_id: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub alert_id: Option<String>,
    /// Only deliveries with an id smaller than this (the cursor).
    pub before_id: Option<String>,
    pub limit: usize,
}

/// What offboarding a user removes (or would remove, in a dry run), by table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffboardCounts {
    pub subscriptions: u64,
    pub alerts: u64,
    pub alert_history: u64,
    pub handler_states: u64,
    pub policies: u64,
    pub contact_points: u64,
    pub pending_deliveries: u64,
    pub deliveries: u64,
    pub notifications: u64,
    pub silences: u64,
    pub tokens: u64,
    pub group_memberships: u64,
}

/// One administrative act, kept for the record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: String,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    /// What was acted on, in words (`user ann`).
    pub subject: String,
    pub detail: serde_json::Value,
}
