use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tellify_engine::alerts::{Alert, AlertOrigin, AlertState, HistoryEntry};
use tellify_engine::handlers::AlertOutput;
use tellify_model::{Severity, StoredEvent};

use crate::ListedEvent;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    pub id: String,
    pub seq: i64,
    pub duplicate: bool,
    /// Stored as a repeat of the event `id` (inside that event's dedup window): the
    /// occurrence has its own `seq` in the log, but search lists only the first.
    #[serde(default)]
    pub repeat: bool,
}

/// A page of events, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Only events with a smaller `seq` (the cursor).
    pub before_seq: Option<i64>,
    pub limit: usize,
}

/// One bounded step of an event search, newest first. What SQL can answer is pushed
/// down: the type through an index, the time range, and `field == literal` predicates as
/// a pre-filter on the stored body. The caller still applies its full filter to what
/// comes back: the pre-filter never drops an event the filter would accept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventSearch {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Only events with a smaller `seq` (the cursor).
    pub before_seq: Option<i64>,
    /// Only events of this type.
    pub event_type: Option<String>,
    /// Only events whose field `name` (a top-level field) equals the value.
    pub field_equals: Vec<(String, tellify_engine::IndexValue)>,
    /// Most events returned.
    pub limit: usize,
    /// Most rows the store may look at in this step: bounds how long it holds a read
    /// connection, however selective the search.
    pub max_examined: usize,
}

/// What one step of a search found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchStep {
    /// Events that passed the pushed-down predicates, newest first.
    pub events: Vec<ListedEvent>,
    /// Rows looked at (an upper bound).
    pub examined: usize,
    /// The cursor to search on from (events with a smaller `seq`), or `None` when the
    /// search reached the start of the log.
    pub resume_before: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    /// How the person likes to be called (`Ann Smith`); the name is the handle.
    #[serde(default)]
    pub display_name: Option<String>,
    pub timezone: String,
    pub admin: bool,
    pub created: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub name: String,
    /// Member user names.
    pub members: Vec<String>,
    pub created: Timestamp,
}

/// A signed-in dashboard session. The cookie holds a secret; the store keeps only its
/// SHA-256 (`id_hash`), so a copy of the database opens no session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSession {
    pub id_hash: String,
    pub user_id: String,
    /// The token every state-changing form of this session must carry.
    pub csrf: String,
    pub created: Timestamp,
    pub seen: Timestamp,
    pub expires: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// SHA-256 of the secret, hex; the secret itself is never stored.
    #[serde(skip_serializing)]
    pub hash: String,
    pub created: Timestamp,
    /// When the token stops working; `None` never. Checked on every request.
    #[serde(default)]
    pub expires: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub params: serde_json::Value,
    /// The user who owns it (or created it for a group).
    pub owner_user: String,
    /// The group that owns it, if any: every member sees and manages it.
    pub owner_group: Option<String>,
    pub enabled: bool,
    pub latching: bool,
    /// The owner's policy that notifies about its alerts (`default` when `None`).
    #[serde(default)]
    pub policy: Option<String>,
    pub created: Timestamp,
    pub updated: Timestamp,
    /// Set while the subscription is failing (its handler erred, panicked or ran over its
    /// budget on an event), and kept with `disabled` when it failed too often in a row.
    #[serde(default)]
    pub health: Option<SubscriptionHealth>,
    /// How often its filter failed on real events (a type error, not a missing field),
    /// kept by the worker's processing commits. Writing a subscription with `None` clears
    /// the record; with `Some` it leaves the stored one as it is, so an owner's change
    /// never loses counts the worker committed meanwhile.
    #[serde(default)]
    pub filter_errors: Option<FilterErrors>,
}

/// A subscription's filter failed on events: how often, and the last time why; shown to
/// its owner. Unlike [`SubscriptionHealth`] it never disables the subscription: the filter
/// is false for that event, and the others still match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterErrors {
    /// Events the filter failed on since it was written (new parameters start again).
    pub count: u64,
    /// The last failure, naming types and operators, never the text of an event.
    pub last_error: String,
    pub last_at: Timestamp,
}

/// Filter failures found by one processing commit for one subscription, added to its
/// [`FilterErrors`] in the same transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterErrorUpdate {
    pub subscription_id: String,
    /// Failures to add.
    pub count: u64,
    pub last_error: String,
    pub last_at: Timestamp,
}

/// Why a subscription is failing; shown to its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionHealth {
    /// Failures in a row; a success clears the record.
    pub failures: u32,
    /// The last failure, in tellify's words (never the text of an event).
    pub last_error: String,
    /// The first failure of this run.
    pub since: Timestamp,
    pub last_at: Timestamp,
    /// The worker disabled the subscription after too many failures in a row.
    #[serde(default)]
    pub disabled: bool,
}

/// A change to a subscription's health, committed with the processing that found it.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthUpdate {
    pub subscription_id: String,
    /// `None`: it works again. With `disabled`, the subscription is switched off too.
    pub health: Option<SubscriptionHealth>,
}

impl Subscription {
    pub fn origin(&self) -> AlertOrigin {
        AlertOrigin {
            subscription_id: self.id.clone(),
            owner_user: Some(self.owner_user.clone()),
            owner_group: self.owner_group.clone(),
            kind: self.kind.clone(),
            title: self.title.clone(),
            latching: self.latching,
        }
    }
}

/// Who is looking: a user and the groups they belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewer {
    pub user_id: String,
    pub group_ids: Vec<String>,
}

impl Viewer {
    pub fn can_see(&self, owner_user: Option<&str>, owner_group: Option<&str>) -> bool {
        match owner_group {
            Some(group) => self.group_ids.iter().any(|g| g == group),
            None => owner_user == Some(self.user_id.as_str()),
        }
    }

    /// Whether the viewer may see `subscription` (its owner's or its group's).
    pub fn can_see_subscription(&self, subscription: &Subscription) -> bool {
        self.can_see(
            Some(&subscription.owner_user),
            subscription.owner_group.as_deref(),
        )
    }
}

/// Whether alerts a person cleared (dismissed) are listed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClearedFilter {
    #[default]
    Exclude,
    Include,
    Only,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertQuery {
    /// Only alerts this viewer may see (all when `None`).
    pub viewer: Option<Viewer>,
    pub state: Option<AlertState>,
    pub subscription_id: Option<String>,
    pub severity: Option<Severity>,
    pub cleared: ClearedFilter,
    /// Only alerts with an id smaller than this (the cursor).
    pub before_id: Option<String>,
    pub limit: usize,
}

/// An alert after a change, with the history entries the change recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertChange {
    pub alert: Alert,
    pub history: Vec<HistoryEntry>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessingSnapshot {
    pub cursor: i64,
    pub states: std::collections::HashMap<String, serde_json::Value>,
}

/// One handler output to apply, with the subscription it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputToApply {
    pub origin: AlertOrigin,
    pub output: AlertOutput,
    pub at: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessingCommit {
    /// The last event position processed.
    pub cursor: i64,
    pub states: Vec<(String, serde_json::Value)>,
    pub outputs: Vec<OutputToApply>,
    pub derived: Vec<StoredEvent>,
    /// Who hears about the alert changes; without one, nothing is notified.
    pub planner: Option<crate::PlannerRef>,
    /// Subscriptions that started failing, failed again, or recovered.
    pub health: Vec<HealthUpdate>,
    /// Subscriptions whose filter failed on events of this commit, one entry each.
    pub filter_errors: Vec<FilterErrorUpdate>,
    /// Where the ids of new alerts come from.
    pub ids: IdSourceRef,
    /// The lease this commit is made under, when several nodes share the store: the
    /// commit fails with a conflict, writing nothing, if the lease has passed to another
    /// holder since (see [`crate::Store::acquire_lease`]).
    pub lease: Option<LeaseFence>,
    /// What the notifier's free senders would take: when the commit writes notifications,
    /// a backend that can claims what is then due in the same transaction
    /// ([`CommitOutcome::claimed`]), so a notification due at once needs no claim
    /// transaction of its own before it is sent.
    pub claim: Option<ClaimRequest>,
}

/// A claim made inside a processing commit, as [`crate::Store::take_deliveries`] makes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimRequest {
    pub now: Timestamp,
    pub lease_until: Timestamp,
    /// At most this many deliveries (the notifier's free senders).
    pub limit: usize,
    pub hold: crate::DeliveryHold,
}

/// A lease as its holder last took it: who, and the fencing number it got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseFence {
    pub name: String,
    pub holder: String,
    pub fence: i64,
}

/// A source of new ids that can sit in a [`ProcessingCommit`]: the worker passes
/// `tellify_model::new_id`, a test a counter.
#[derive(Clone)]
pub struct IdSourceRef(pub std::sync::Arc<dyn Fn() -> String + Send + Sync>);

impl IdSourceRef {
    pub fn new(source: impl Fn() -> String + Send + Sync + 'static) -> IdSourceRef {
        IdSourceRef(std::sync::Arc::new(source))
    }

    pub fn next_id(&self) -> String {
        (self.0)()
    }
}

impl Default for IdSourceRef {
    /// ULIDs (`tellify_model::new_id`), what the running service uses; the worker still
    /// passes its source explicitly, tests pass a counter.
    fn default() -> IdSourceRef {
        IdSourceRef::new(tellify_model::new_id)
    }
}

impl std::fmt::Debug for IdSourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdSourceRef")
    }
}

impl PartialEq for IdSourceRef {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommitOutcome {
    pub changes: Vec<AlertChange>,
    pub derived: Vec<Appended>,
    /// The deliveries the commit claimed for [`ProcessingCommit::claim`], leased to the
    /// caller; `None` when it claimed nothing in the commit (no request, no notification
    /// written, or a backend that claims only in its own transaction).
    pub claimed: Option<Vec<crate::DeliveryJob>>,
    /// With `claimed`: whether the commit wrote notifications due after the claim's time
    /// (a delay, a digest), which the notifier must plan to look for.
    pub due_later: bool,
}

/// A change one node made that every other node on the same store must apply to what it
/// keeps in memory (cached principals, the planner's directory, the worker's loaded
/// subscriptions, the event type registry) or show on its live views (new events, alert
/// and delivery changes); see [`crate::Store::announce`]. An announcement names what
/// changed (ids, positions), never its content: the receiver reads that from the store,
/// and a notification stays far below PostgreSQL's 8000-byte limit.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Announcement {
    /// Users, groups or memberships changed.
    People,
    /// A token was revoked or replaced.
    TokenRevoked,
    /// One user's time zone, contact points, policies or silences changed.
    UserSettings { user_id: String },
    /// A subscription was created or changed.
    SubscriptionSaved { id: String, policy: Option<String> },
    /// A subscription was deleted.
    SubscriptionGone { id: String },
    /// Subscriptions whose owner or membership changed.
    SubscriptionsReread { ids: Vec<String> },
    /// An event type was written or deleted.
    EventType { name: String },
    /// Announcements may have been missed (the listener reconnected): reread everything.
    Everything,
    /// Events were appended at the log positions `first..=last`, all of them by the
    /// announcing node (a batch announces its unbroken runs of positions, not each event).
    Events { first: i64, last: i64 },
    /// An alert changed; the change is its newest `entries` history entries.
    Alert { id: String, entries: usize },
    /// A delivery was created or an attempt's outcome committed; `status` is its status now.
    Delivery {
        id: String,
        user_id: String,
        status: crate::DeliveryStatus,
    },
}

/// An [`Announcement`] with the node that made it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Announced {
    pub from: String,
    #[serde(flatten)]
    pub change: Announcement,
}

/// How far the event log has been checked by the node that makes sure every logged batch
/// reached the store (see [`crate::Store::open_log`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCursor {
    /// Which log this is: the log's own identity (for JetStream, the stream's creation
    /// time), so positions of a log that was deleted and made again are not taken for
    /// positions of the old one.
    pub epoch: String,
    /// Every position up to this one is in the store.
    pub through: i64,
}
