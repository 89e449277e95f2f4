//! Storage behind traits: the event log, the repositories of users, groups, tokens,
//! subscriptions and alerts, and the engine's processing checkpoint.
//!
//! This is the only crate that knows SQL. [`sqlite::SqliteStore`] is the embedded default;
//! a PostgreSQL store and a NATS JetStream event log are meant to be second
//! implementations of the same [`Store`] trait, held to the same [`conformance`] suite.

pub mod conformance;
mod dashboard;
mod event_types;
mod export;
mod keyed;
pub mod migrate;
mod notify;
mod outbox;
pub mod postgres;
pub mod processing;
pub mod sqlite;
mod types;

pub use dashboard::*;
pub use event_types::*;
pub use export::*;
pub use keyed::KeyedEventQuery;
pub use notify::*;
pub use types::*;

use async_trait::async_trait;
use jiff::Timestamp;
use tellify_engine::alerts::{Action, ActionError, Alert, HistoryEntry};
use tellify_model::StoredEvent;

/// What went wrong in the store, by kind, so the API can map it to a status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Action(#[from] ActionError),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether trying again later can help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Freshly appended events in log order (see [`Store::follow_appends`]).
pub type AppendFeed = tokio::sync::mpsc::Receiver<Vec<std::sync::Arc<StoredEvent>>>;

/// Everything tellify keeps. Every method is one atomic operation.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- event log ----

    /// Events as they are appended, in log order, for the one processing reader. Best
    /// effort: batches may be missing (the reader then reads the gap from the log), so a
    /// store may return `None` and let the reader poll [`Store::events_after`].
    fn follow_appends(&self) -> Option<AppendFeed> {
        None
    }

    /// Appends events durably, all or none; returns each event's id and position. An
    /// event whose (producer, idempotency key) is already stored is not stored again: its
    /// existing id comes back with `duplicate: true`. An event of a type with a dedup
    /// interval that is identical (same [`dedup_key`]) to one first received less than the
    /// interval before is a repeat: it gets a position of its own but the first event's id,
    /// with `repeat: true`, and counts towards that event's `repeat_count`.
    async fn append_events(&self, events: Vec<StoredEvent>) -> StoreResult<Vec<Appended>>;
    /// Events with `seq` greater than `after`, oldest first: every occurrence, a repeat
    /// presented as its first event (same id and content) with its own `seq`, `time`,
    /// `received` and idempotency key.
    async fn events_after(&self, after: i64, limit: usize) -> StoreResult<Vec<StoredEvent>>;
    /// The first and last position of the events (every occurrence) whose `time` is in
    /// `[since, until)`, or `None` when there are none: read through the time index, so a
    /// reader can then walk that stretch of the log in order with
    /// [`Store::events_after`].
    async fn event_seq_range(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Option<(i64, i64)>>;
    /// Events newest first, by time range and position; each repeated event once, with
    /// its repeat count.
    async fn query_events(&self, query: EventQuery) -> StoreResult<Vec<ListedEvent>>;
    /// One bounded step of a search (see [`EventSearch`]): at most `limit` events, having
    /// looked at no more than about `max_examined` rows, and where to go on from.
    async fn search_events(&self, search: EventSearch) -> StoreResult<SearchStep>;
    async fn event(&self, id: &str) -> StoreResult<Option<ListedEvent>>;
    /// A numeric field of the events in a time range, per group key and time bucket: the
    /// count, the sum of the values and the mean time, for the `max_series` keys with the
    /// most events, with the number of events whose field is not a number. Each event is
    /// counted once (a repeat as its first occurrence, as search lists it). It looks at no
    /// more than `max_examined` events, the newest first, and says where it stopped.
    async fn chart_events(&self, query: ChartQuery) -> StoreResult<ChartAggregate>;
    /// The newest events of one type matching a key (see [`KeyedEventQuery`]), newest
    /// first, answered from an index rather than by paging through the log.
    async fn keyed_events(&self, query: KeyedEventQuery) -> StoreResult<Vec<StoredEvent>>;
    /// The position of the newest event (0 when empty).
    async fn last_seq(&self) -> StoreResult<i64>;

    // ---- events from an external log (JetStream), several nodes ----

    /// Appends the batch `message_id` found at position `log_seq` of the external event
    /// log, once: its id is recorded in the same transaction, so a second call for it
    /// (the node that published it and the node that recovers it, or a producer's retry)
    /// stores nothing and returns what the first call returned, with `false` (`true`: this
    /// call stored the batch). Otherwise as [`Store::append_events`]. A store that takes
    /// no external log refuses.
    async fn append_logged(
        &self,
        log_seq: i64,
        message_id: &str,
        events: Vec<StoredEvent>,
    ) -> StoreResult<(Vec<Appended>, bool)> {
        let _ = (log_seq, message_id, events);
        Err(StoreError::Unavailable(
            "this store takes no external event log: use a PostgreSQL store with --log".into(),
        ))
    }
    /// How far the external log has been checked, if it ever was.
    async fn log_cursor(&self) -> StoreResult<Option<LogCursor>> {
        Ok(None)
    }
    /// Which of `positions` of the external log are stored.
    async fn logged(&self, positions: Vec<i64>) -> StoreResult<Vec<i64>> {
        let _ = positions;
        Ok(Vec::new())
    }
    /// Where checking the external log `epoch` goes on from. The first time, or when the
    /// log is another one than the last (it was deleted and made again: its positions
    /// start over), the cursor becomes `start` and what was recorded of the old log is
    /// forgotten. One transaction.
    async fn open_log(&self, epoch: &str, start: i64) -> StoreResult<LogCursor> {
        Ok(LogCursor {
            epoch: epoch.to_string(),
            through: start,
        })
    }
    /// Saves how far the log has been checked, and forgets the positions recorded before
    /// `forget_before` at or below it (a retry after that is answered by the idempotency
    /// keys alone). Does nothing when the stored cursor has another epoch or is further.
    async fn save_log_cursor(
        &self,
        cursor: LogCursor,
        forget_before: Timestamp,
    ) -> StoreResult<()> {
        let _ = (cursor, forget_before);
        Ok(())
    }

    // ---- users, groups, tokens ----

    async fn create_user(&self, user: User) -> StoreResult<()>;
    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>>;
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Saves a user's email, display name, time zone and admin flag (found by id) and,
    /// when `group_ids` is given, makes their memberships exactly those groups, leaving
    /// the others as [`Store::remove_member`] does; one transaction. False when there is
    /// no such user.
    async fn update_user(&self, user: User, group_ids: Option<Vec<String>>) -> StoreResult<bool>;
    async fn create_group(&self, group: Group) -> StoreResult<()>;
    async fn group_by_name(&self, name: &str) -> StoreResult<Option<Group>>;
    async fn list_groups(&self) -> StoreResult<Vec<Group>>;
    async fn add_member(&self, group_id: &str, user_id: &str) -> StoreResult<()>;
    /// Removes a membership, the member's subscriptions that belong to the group (with
    /// their alerts), and whatever of the group's alerts was still to be sent to them.
    async fn remove_member(&self, group_id: &str, user_id: &str) -> StoreResult<bool>;
    /// Ids of the groups `user_id` belongs to.
    async fn groups_of(&self, user_id: &str) -> StoreResult<Vec<String>>;
    async fn create_token(&self, token: Token) -> StoreResult<()>;
    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<Token>>;
    async fn token(&self, id: &str) -> StoreResult<Option<Token>>;
    /// Tokens of one user, or of everyone when `None`.
    async fn list_tokens(&self, user_id: Option<&str>) -> StoreResult<Vec<Token>>;
    async fn delete_token(&self, id: &str) -> StoreResult<bool>;

    // ---- passwords and dashboard sessions ----

    /// Sets (`None`: removes) a user's password hash and ends every session of theirs but
    /// `keep_session`, in one transaction. False when there is no such user.
    async fn set_password_hash(
        &self,
        user_id: &str,
        hash: Option<String>,
        keep_session: Option<String>,
    ) -> StoreResult<bool>;
    async fn password_hash(&self, user_id: &str) -> StoreResult<Option<String>>;
    async fn create_web_session(&self, session: WebSession) -> StoreResult<()>;
    /// The session with this hash, unless it expired by `now`.
    async fn web_session(&self, id_hash: &str, now: Timestamp) -> StoreResult<Option<WebSession>>;
    /// Records use: new `seen` and `expires`. False when the session is gone.
    async fn touch_web_session(
        &self,
        id_hash: &str,
        seen: Timestamp,
        expires: Timestamp,
    ) -> StoreResult<bool>;
    async fn delete_web_session(&self, id_hash: &str) -> StoreResult<bool>;
    /// Ends every session of a user (offboarding, a role change, a password reset).
    async fn delete_web_sessions_of(&self, user_id: &str) -> StoreResult<u64>;
    /// Removes sessions expired by `now`; returns how many.
    async fn prune_web_sessions(&self, now: Timestamp) -> StoreResult<u64>;

    // ---- subscriptions ----

    async fn insert_subscription(&self, subscription: Subscription) -> StoreResult<()>;
    /// Writes every field as given, except `filter_errors`, which the processing commits
    /// keep: `None` clears the stored record, `Some` leaves it as it is.
    async fn update_subscription(&self, subscription: Subscription) -> StoreResult<()>;
    /// Deletes a subscription with its alerts, their history and its handler state.
    async fn delete_subscription(&self, id: &str) -> StoreResult<bool>;
    async fn subscription(&self, id: &str) -> StoreResult<Option<Subscription>>;
    /// The subscriptions among `ids` that exist, in no particular order: one read, however
    /// many there are (the worker reloads thousands of new ones this way, without reading
    /// every other subscription with them).
    async fn subscriptions_by_id(&self, ids: &[String]) -> StoreResult<Vec<Subscription>>;
    /// Subscriptions visible to `viewer` (all when `None`).
    async fn list_subscriptions(&self, viewer: Option<&Viewer>) -> StoreResult<Vec<Subscription>>;

    // ---- alerts ----

    async fn alert(&self, id: &str) -> StoreResult<Option<Alert>>;
    async fn list_alerts(&self, query: AlertQuery) -> StoreResult<Vec<Alert>>;
    /// Per subscription `viewer` may see (all when `None`) that has alerts `viewer` may
    /// see: how many fire and when one was last seen firing. An aggregate over an index,
    /// so every alert counts however many there are; subscriptions without alerts are
    /// absent.
    async fn subscription_alerts(
        &self,
        viewer: Option<&Viewer>,
    ) -> StoreResult<Vec<SubscriptionAlerts>>;
    /// Every alert not cleared that `viewer` may see (all when `None`) and that the user
    /// named `actor` acknowledged (still marked acknowledged) or shelved (still marked
    /// shelved), newest first, with no cap: read through indexes of who acknowledged and
    /// who shelved. Whether the acknowledgement or shelve has expired is the caller's to
    /// judge at its own `now`.
    async fn held_alerts(&self, actor: &str, viewer: Option<&Viewer>) -> StoreResult<Vec<Alert>>;
    async fn alert_history(&self, id: &str) -> StoreResult<Vec<HistoryEntry>>;
    /// Applies a person's action atomically and records it.
    async fn act_on_alert(
        &self,
        id: &str,
        action: Action,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<AlertChange>;

    // ---- processing ----

    /// Where processing stopped and every handler's saved state.
    async fn load_processing(&self) -> StoreResult<ProcessingSnapshot>;
    /// A number that changes whenever a subscription, a person, a membership, a contact
    /// point, a policy or a silence changes, in the same transaction; `None` from a store
    /// only one server uses, whose changes reach the processing node's memory before the
    /// write returns. With several nodes, the processing node compares it with each batch:
    /// a change committed before an event was appended is then visible when that event is
    /// processed, whichever node took the change.
    async fn settings_generation(&self) -> StoreResult<Option<i64>> {
        Ok(None)
    }
    /// [`Store::events_after`] and then [`Store::settings_generation`], as the processing
    /// worker asks for them with each batch; a store that pays a round trip per call reads
    /// both at once (the generation then as of the same moment as the events, which is at
    /// least as late as the events need).
    async fn events_to_process(
        &self,
        after: i64,
        limit: usize,
    ) -> StoreResult<(Vec<StoredEvent>, Option<i64>)> {
        let events = self.events_after(after, limit).await?;
        Ok((events, self.settings_generation().await?))
    }
    /// Where processing stopped, without the states: how a node that does not process
    /// follows the one that does.
    async fn processing_cursor(&self) -> StoreResult<i64> {
        Ok(self.load_processing().await?.cursor)
    }
    /// Records the outcome of processing events up to `commit.cursor` in one transaction:
    /// alert changes and their history, handler states, derived events and the cursor.
    /// A backend runs [`processing::commit`] over its transaction.
    async fn commit_processing(&self, commit: ProcessingCommit) -> StoreResult<CommitOutcome>;
    /// Whether [`Store::commit_processing`] claims deliveries for a
    /// [`ProcessingCommit::claim`] (SQLite: the claim is a few statements more on the
    /// writer's open transaction); otherwise the notifier claims in a transaction of its own.
    fn claims_in_processing_commit(&self) -> bool {
        false
    }

    // ---- contact points, policies, silences ----

    /// Fails with a conflict when the user already has a contact point of that name.
    async fn create_contact_point(&self, point: ContactPoint) -> StoreResult<()>;
    async fn list_contact_points(&self, user_id: &str) -> StoreResult<Vec<ContactPoint>>;
    async fn contact_point(&self, user_id: &str, name: &str) -> StoreResult<Option<ContactPoint>>;
    /// Deletes a contact point and whatever was still waiting to be sent to it.
    /// Deletes a contact point; what was still to be sent to it becomes failed deliveries
    /// saying why (none is dropped without a word).
    async fn delete_contact_point(
        &self,
        user_id: &str,
        name: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Creates or replaces a policy; returns true when it was created.
    async fn put_policy(&self, policy: PolicyRecord) -> StoreResult<bool>;
    async fn list_policies(&self, user_id: &str) -> StoreResult<Vec<PolicyRecord>>;
    async fn policy(&self, user_id: &str, name: &str) -> StoreResult<Option<PolicyRecord>>;
    async fn delete_policy(&self, user_id: &str, name: &str) -> StoreResult<bool>;
    async fn create_silence(&self, silence: Silence) -> StoreResult<()>;
    async fn list_silences(&self, user_id: &str) -> StoreResult<Vec<Silence>>;
    async fn delete_silence(&self, user_id: &str, id: &str) -> StoreResult<bool>;
    /// Everything the notification planner needs, at once.
    async fn notify_directory(&self) -> StoreResult<NotifyDirectory>;

    // ---- the outbox ----

    /// Gangs the notifications due by `now` into deliveries (one per user and contact
    /// point; a notification joins exactly one delivery), then leases up to `limit` due
    /// deliveries until `lease_until` and returns them with their items. A delivery whose
    /// lease ran out (its sender died) is due again.
    ///
    /// Notifications for the users and contact points in `hold` (over their rate limit)
    /// are not ganged now: they stay in the outbox and join the next delivery once the hold
    /// lifts, so what was held back goes out summarised in one message, never dropped.
    async fn take_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
        hold: &DeliveryHold,
    ) -> StoreResult<Vec<DeliveryJob>>;
    /// Records the outcomes of attempts, in one durable transaction; a delivery is `sent`
    /// only through this call. Outcomes for deliveries that are gone (their user was
    /// offboarded) are ignored.
    async fn finish_deliveries(&self, results: Vec<FinishedDelivery>) -> StoreResult<()>;
    async fn list_deliveries(&self, query: DeliveryQuery) -> StoreResult<Vec<Delivery>>;
    async fn delivery(&self, id: &str) -> StoreResult<Option<DeliveryRecord>>;
    /// Plans repeated notifications for alerts whose repeat time has come: still firing,
    /// unacknowledged and not shelved; others leave the schedule. Returns how many
    /// notifications were written.
    async fn plan_repeats(
        &self,
        now: Timestamp,
        planner: PlannerRef,
        limit: usize,
    ) -> StoreResult<usize>;
    /// The earliest time a notification, delivery or repeat becomes due.
    async fn next_outbox_due(&self) -> StoreResult<Option<Timestamp>>;
    /// How many notifications and deliveries are due at `now` and not sent yet (held back
    /// by a rate limit included), and the earliest due time among them; for `/metrics`.
    async fn outbox_backlog(&self, now: Timestamp) -> StoreResult<(u64, Option<Timestamp>)>;

    // ---- offboarding ----

    /// Removes a user and everything of theirs (subscriptions, alerts and their history,
    /// handler state, policies, contact points, deliveries, silences, tokens) and writes
    /// an audit record; with `dry_run` only counts.
    async fn offboard_user(
        &self,
        user_id: &str,
        dry_run: bool,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<OffboardCounts>;
    /// Keeps one administrative act (user or token created, role changed, deleted, ...).
    async fn append_audit(&self, record: AuditRecord) -> StoreResult<()>;
    /// The newest audit records first.
    async fn list_audit(&self, limit: usize) -> StoreResult<Vec<AuditRecord>>;

    // ---- event types ----

    /// Creates or replaces a type (keeping its `created`); returns true when it was
    /// created. Changing the dedup interval closes the type's open dedup windows.
    async fn put_event_type(&self, event_type: EventType) -> StoreResult<bool>;
    async fn event_type(&self, name: &str) -> StoreResult<Option<EventType>>;
    async fn list_event_types(&self) -> StoreResult<Vec<EventType>>;
    /// Deletes a type; events already stored keep naming it.
    async fn delete_event_type(&self, name: &str) -> StoreResult<bool>;

    // ---- exporters (syslog) ----

    /// Alert history rows with a position greater than `after`, oldest first, each with its
    /// alert. Positions only grow and are never reused, so a reader that resumes after
    /// the last position it handled misses nothing.
    async fn alert_changes_after(
        &self,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<LoggedAlertChange>>;
    /// The position of the newest alert history row (0 when there is none).
    async fn last_alert_change(&self) -> StoreResult<i64>;
    /// Where the exporter stream `name` stopped, if it ever saved a position.
    async fn export_position(&self, name: &str) -> StoreResult<Option<i64>>;
    /// Saves where the exporter stream `name` stopped, durably before returning.
    async fn save_export_position(&self, name: &str, position: i64) -> StoreResult<()>;

    // ---- signed action links ----

    /// The server-wide secret `name`: `fresh` is stored if there is none yet, and the
    /// stored value is returned, so every node on one database gets the same secret.
    async fn server_secret(&self, name: &str, fresh: Vec<u8>) -> StoreResult<Vec<u8>>;
    /// Marks a link's nonce used, durably, unless it already was: true only for the one
    /// caller that marked it. Rows of links expired before `now` are pruned on the way.
    async fn use_link(&self, nonce: &str, expires: Timestamp, now: Timestamp) -> StoreResult<bool>;
    /// Makes a used nonce usable again (its action could not be performed).
    async fn release_link(&self, nonce: &str) -> StoreResult<()>;
    /// Whether a link's nonce was used (and its row not yet pruned).
    async fn link_used(&self, nonce: &str) -> StoreResult<bool>;

    // ---- several nodes on one store ----

    /// Tells every node following announcements ([`Store::follow_announcements`]) about a
    /// change `from` made. Best effort, after the change committed; a store only one
    /// server can open has nobody to tell.
    async fn announce(&self, from: &str, change: &Announcement) -> StoreResult<()> {
        let _ = (from, change);
        Ok(())
    }

    /// [`Store::announce`] for several changes, in order; a store may send them together.
    async fn announce_all(&self, from: &str, changes: &[Announcement]) -> StoreResult<()> {
        for change in changes {
            self.announce(from, change).await?;
        }
        Ok(())
    }

    /// Every node's announcements (this node's own included), as they come; `None` when
    /// no other node can share the store. After a gap (the connection was lost) an
    /// [`Announcement::Everything`] stands for whatever was missed.
    fn follow_announcements(&self) -> Option<tokio::sync::mpsc::Receiver<Announced>> {
        None
    }

    /// Takes the lease `name` for `holder` until `until`, or renews it when `holder`
    /// already has it. Returns its fencing number, the same while one holder keeps it and
    /// higher whenever it changes hands, or `None` while another holder's lease runs (has
    /// not expired by `now`). A store only one server can open (SQLite, under the data
    /// directory's lock) gives every lease to its caller, with fencing number 0.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Option<i64>> {
        let _ = (name, holder, now, until);
        Ok(Some(0))
    }

    /// Gives the lease up (a graceful stop) so another node can take it at once; nothing
    /// when `holder` does not hold it.
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        let _ = (name, holder);
        Ok(())
    }
}
