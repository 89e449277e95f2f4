//! Notifications on PostgreSQL: contact points, policies, silences, the planner's
//! directory, the outbox (ganging, leases, outcomes), offboarding and the audit log.
//!
//! Several nodes run the notifier on one database at once, so the outbox is claimed with
//! row locks rather than by being the only writer (as SQLite is):
//!
//! - **Ganging** reads the due notifications `FOR UPDATE SKIP LOCKED` and assigns them to
//!   new deliveries in the same transaction. A row another node is ganging is locked and
//!   skipped; a row another node ganged and committed meanwhile no longer matches
//!   `delivery_id IS NULL` when PostgreSQL re-checks it under the lock. So a notification
//!   joins exactly one delivery, and no node ever waits for another's ganging. Row locks
//!   were chosen over one advisory lock around ganging because such a lock, held to the
//!   end of the transaction, would queue every node's whole claim (ganging and leasing)
//!   behind the others'. The price: when two nodes gang at the very same moment, one
//!   user's due notifications for one contact point may go out as two messages instead
//!   of one (never as none, never twice).
//! - **Leasing** reads due deliveries (pending, or sending with a lease that ran out)
//!   `ORDER BY next_attempt_ms, seq LIMIT n FOR UPDATE SKIP LOCKED` and sets their lease
//!   in the same transaction: each due delivery goes to exactly one caller.
//! - **Outcomes** change a delivery only while it is `sending`, the same rule as SQLite's
//!   (see [`crate::outbox::outcome_columns`]); an outcome for a delivery that is gone is
//!   ignored.
//! - Deleting a contact point claims its waiting notifications `FOR UPDATE` (it waits for
//!   a node ganging them, then finds them ganged) and fails only deliveries still
//!   `pending`, as SQLite does: one being sent goes on.
//!
//! Which notifications gang together and how a claim becomes jobs is shared with SQLite
//! in [`crate::outbox`].

use std::collections::HashMap;

use jiff::Timestamp;
use postgres::Row;
use tellify_engine::alerts::Alert;
use tellify_engine::policy::{Policy, PolicyLimits};

use super::{
    conflict_or_unavailable, from_millis, millis, parse_time, read_json, read_user, time_text,
    unavailable, PostgresStore, Sql, Tx, USER_COLUMNS,
};
use crate::outbox::{self, DueNotification};
use crate::{
    AlertStanding, AuditRecord, ContactPoint, Delivery, DeliveryAttempt, DeliveryHold, DeliveryJob,
    DeliveryQuery, DeliveryRecord, DeliveryStatus, FinishedDelivery, JobItem, NotifyDirectory,
    OffboardCounts, PolicyRecord, Silence, StoreError, StoreResult, REMOVED_USER,
};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE contact_points (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    address TEXT NOT NULL,
    secret TEXT,
    created TEXT NOT NULL,
    UNIQUE (user_id, name)
);
CREATE TABLE policies (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    rules TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
);
CREATE TABLE silences (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    filter TEXT NOT NULL,
    starts TEXT NOT NULL,
    ends TEXT NOT NULL,
    comment TEXT,
    created TEXT NOT NULL
);
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    contact_point_id TEXT NOT NULL,
    contact_point TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    last_error TEXT,
    receipt TEXT,
    items BIGINT NOT NULL,
    subject TEXT,
    created TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_ms, seq) WHERE status IN ('pending', 'sending');
CREATE INDEX deliveries_user ON deliveries(user_id, id);
CREATE INDEX deliveries_contact_point ON deliveries(contact_point_id);
CREATE TABLE notifications (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    contact_point_id TEXT NOT NULL,
    alert_id TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    owner_group TEXT,
    transition TEXT NOT NULL,
    due_ms BIGINT NOT NULL,
    delivery_id TEXT,
    alert TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX notifications_due ON notifications(due_ms) WHERE delivery_id IS NULL;
CREATE INDEX notifications_delivery ON notifications(delivery_id);
CREATE INDEX notifications_user ON notifications(user_id);
CREATE INDEX notifications_contact_point ON notifications(contact_point_id) WHERE delivery_id IS NULL;
CREATE INDEX notifications_alert ON notifications(alert_id);
CREATE TABLE delivery_attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    ok BOOLEAN NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts(delivery_id);
CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
"#;

/// What leaving a group removes (see [`crate::Store::remove_member`]): the member's
/// subscriptions of the group, with their alerts, and the group's alerts still to be sent
/// to them.
pub(super) fn leave_group(tx: &mut Tx<'_>, group_id: &str, user_id: &str) -> StoreResult<()> {
    tx.execute(
        "DELETE FROM subscriptions WHERE owner_user = $1 AND owner_group = $2",
        &[&user_id, &group_id],
    )
    .map_err(unavailable)?;
    tx.execute(
        "DELETE FROM notifications WHERE user_id = $1 AND owner_group = $2 AND (delivery_id IS NULL
             OR delivery_id IN (SELECT id FROM deliveries WHERE status IN ('pending', 'sending')))",
        &[&user_id, &group_id],
    )
    .map_err(unavailable)?;
    tx.execute(
        "DELETE FROM repeats WHERE user_id = $1
             AND alert_id IN (SELECT id FROM alerts WHERE owner_group = $2)",
        &[&user_id, &group_id],
    )
    .map_err(unavailable)?;
    // Deliveries left with nothing to say are dropped; the rest carry fewer items.
    tx.execute(
        "DELETE FROM deliveries WHERE user_id = $1 AND status IN ('pending', 'sending')
             AND NOT EXISTS (SELECT 1 FROM notifications WHERE delivery_id = deliveries.id)",
        &[&user_id],
    )
    .map_err(unavailable)?;
    tx.execute(
        "UPDATE deliveries
         SET items = (SELECT COUNT(*) FROM notifications WHERE delivery_id = deliveries.id)
         WHERE user_id = $1 AND status IN ('pending', 'sending')",
        &[&user_id],
    )
    .map_err(unavailable)?;
    Ok(())
}

// ---- contact points, policies, silences ----

pub(super) async fn create_contact_point(
    store: &PostgresStore,
    point: ContactPoint,
) -> StoreResult<()> {
    store
        .write(move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO contact_points ({CONTACT_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ),
                &[
                    &point.id,
                    &point.user_id,
                    &point.name,
                    &point.kind,
                    &point.address,
                    &point.secret,
                    &time_text(point.created),
                ],
            )
            .map_err(|error| conflict_or_unavailable(error, "contact point"))?;
            Ok(())
        })
        .await
}

pub(super) async fn list_contact_points(
    store: &PostgresStore,
    user_id: &str,
) -> StoreResult<Vec<ContactPoint>> {
    let user_id = user_id.to_string();
    store
        .read(move |client| contact_points_of(client, Some(&user_id)))
        .await
}

pub(super) async fn contact_point(
    store: &PostgresStore,
    user_id: &str,
    name: &str,
) -> StoreResult<Option<ContactPoint>> {
    let (user_id, name) = (user_id.to_string(), name.to_string());
    store
        .read(move |client| contact_point_named(client, &user_id, &name))
        .await
}

pub(super) async fn delete_contact_point(
    store: &PostgresStore,
    user_id: &str,
    name: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    let (user_id, name) = (user_id.to_string(), name.to_string());
    store
        .write(move |tx| {
            let Some(point) = contact_point_named(tx, &user_id, &name)? else {
                return Ok(false);
            };
            // Nothing more goes to an address the user took away, yet nothing planned for
            // it is dropped without a word: what waited becomes a failed delivery saying why.
            let reason = format!("contact point {name} was deleted before this was sent");
            fail_unsent_for_contact_point(tx, &point, &reason, now)?;
            tx.execute("DELETE FROM contact_points WHERE id = $1", &[&point.id])
                .map_err(unavailable)?;
            Ok(true)
        })
        .await
}

pub(super) async fn put_policy(store: &PostgresStore, policy: PolicyRecord) -> StoreResult<bool> {
    store
        .write(move |tx| {
            // `xmax = 0` only on a freshly inserted row: the upsert says which it did.
            let row = tx
                .query_one(
                    "INSERT INTO policies (user_id, name, rules, updated) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (user_id, name)
                     DO UPDATE SET rules = EXCLUDED.rules, updated = EXCLUDED.updated
                     RETURNING (xmax = 0)",
                    &[
                        &policy.user_id,
                        &policy.name,
                        &policy.policy.to_json().to_string(),
                        &time_text(policy.updated),
                    ],
                )
                .map_err(unavailable)?;
            row.try_get::<_, bool>(0).map_err(unavailable)
        })
        .await
}

pub(super) async fn list_policies(
    store: &PostgresStore,
    user_id: &str,
) -> StoreResult<Vec<PolicyRecord>> {
    let user_id = user_id.to_string();
    store
        .read(move |client| policies_of(client, Some(&user_id)))
        .await
}

pub(super) async fn policy(
    store: &PostgresStore,
    user_id: &str,
    name: &str,
) -> StoreResult<Option<PolicyRecord>> {
    let (user_id, name) = (user_id.to_string(), name.to_string());
    store
        .read(move |client| {
            let row = client
                .query_opt(
                    "SELECT user_id, name, rules, updated FROM policies
                     WHERE user_id = $1 AND name = $2",
                    &[&user_id, &name],
                )
                .map_err(unavailable)?;
            match row {
                Some(row) => read_policy(&row),
                None => Ok(None),
            }
        })
        .await
}

pub(super) async fn delete_policy(
    store: &PostgresStore,
    user_id: &str,
    name: &str,
) -> StoreResult<bool> {
    let (user_id, name) = (user_id.to_string(), name.to_string());
    store
        .write(move |tx| {
            let removed = tx
                .execute(
                    "DELETE FROM policies WHERE user_id = $1 AND name = $2",
                    &[&user_id, &name],
                )
                .map_err(unavailable)?;
            Ok(removed == 1)
        })
        .await
}

pub(super) async fn create_silence(store: &PostgresStore, silence: Silence) -> StoreResult<()> {
    store
        .write(move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO silences ({SILENCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ),
                &[
                    &silence.id,
                    &silence.user_id,
                    &silence.filter,
                    &time_text(silence.starts),
                    &time_text(silence.ends),
                    &silence.comment,
                    &time_text(silence.created),
                ],
            )
            .map_err(|error| conflict_or_unavailable(error, "silence"))?;
            Ok(())
        })
        .await
}

pub(super) async fn list_silences(
    store: &PostgresStore,
    user_id: &str,
) -> StoreResult<Vec<Silence>> {
    let user_id = user_id.to_string();
    store
        .read(move |client| silences_of(client, Some(&user_id)))
        .await
}

pub(super) async fn delete_silence(
    store: &PostgresStore,
    user_id: &str,
    id: &str,
) -> StoreResult<bool> {
    let (user_id, id) = (user_id.to_string(), id.to_string());
    store
        .write(move |tx| {
            let removed = tx
                .execute(
                    "DELETE FROM silences WHERE id = $1 AND user_id = $2",
                    &[&id, &user_id],
                )
                .map_err(unavailable)?;
            Ok(removed == 1)
        })
        .await
}

pub(super) async fn notify_directory(store: &PostgresStore) -> StoreResult<NotifyDirectory> {
    store
        .read(|tx| {
            let mut users = Vec::new();
            for row in tx
                .query(
                    &format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"),
                    &[],
                )
                .map_err(unavailable)?
            {
                users.push(read_user(&row)?);
            }
            let mut members: Vec<(String, Vec<String>)> = Vec::new();
            for row in tx
                .query(
                    "SELECT group_id, user_id FROM group_members ORDER BY group_id, user_id",
                    &[],
                )
                .map_err(unavailable)?
            {
                let group: String = row.try_get(0).map_err(unavailable)?;
                let user: String = row.try_get(1).map_err(unavailable)?;
                match members.last_mut() {
                    Some((last, users)) if *last == group => users.push(user),
                    _ => members.push((group, vec![user])),
                }
            }
            let mut subscription_policies = Vec::new();
            for row in tx
                .query(
                    "SELECT id, policy FROM subscriptions WHERE policy IS NOT NULL ORDER BY id",
                    &[],
                )
                .map_err(unavailable)?
            {
                subscription_policies.push((
                    row.try_get(0).map_err(unavailable)?,
                    row.try_get(1).map_err(unavailable)?,
                ));
            }
            Ok(NotifyDirectory {
                users,
                groups: members,
                contact_points: contact_points_of(tx, None)?,
                policies: policies_of(tx, None)?,
                silences: silences_of(tx, None)?,
                subscription_policies,
            })
        })
        .await
}

// ---- the outbox: gang, lease, finish ----

pub(super) async fn take_deliveries(
    store: &PostgresStore,
    now: Timestamp,
    lease_until: Timestamp,
    limit: usize,
    hold: &DeliveryHold,
) -> StoreResult<Vec<DeliveryJob>> {
    let hold = hold.clone();
    store
        .write(move |tx| {
            let (gangs, carried) = plan_gangs(tx, now, &hold)?;
            if gangs.is_empty() {
                lease(tx, now, lease_until, limit)
            } else {
                gang_and_lease(tx, now, lease_until, limit, gangs, carried)
            }
        })
        .await
}

pub(super) async fn finish_deliveries(
    store: &PostgresStore,
    results: Vec<FinishedDelivery>,
) -> StoreResult<()> {
    if results.is_empty() {
        return Ok(());
    }
    // One statement for every outcome (it was two per delivery), and no transaction around
    // it: a statement is atomic by itself, and BEGIN and COMMIT were two more round trips.
    store
        .read(move |tx| {
            // A delivery given twice takes its first outcome, as when each was written in
            // turn.
            let mut seen = std::collections::HashSet::new();
            let results: Vec<&FinishedDelivery> = results
                .iter()
                .filter(|result| seen.insert(result.id.as_str()))
                .collect();
            let mut columns = OutcomeArrays::default();
            for result in &results {
                columns.push(result, outbox::outcome_columns(result));
            }
            let c = &columns;
            // Only a delivery still being sent takes an outcome; one that is gone, or was
            // sent or failed since, is left as it is, and gets no attempt row.
            tx.execute(
                "WITH outcome AS (
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                          $5::int8[], $6::text[], $7::text[], $8::text[],
                                          $9::bool[], $10::text[])
                         WITH ORDINALITY AS o(id, status, error, receipt, next_ms, sent_at,
                                              subject, at, ok, detail, position)),
                 changed AS (
                     UPDATE deliveries d SET status = o.status, attempts = d.attempts + 1,
                         last_error = COALESCE(o.error, d.last_error), receipt = o.receipt,
                         next_attempt_ms = o.next_ms, sent_at = o.sent_at, subject = o.subject
                     FROM outcome o
                     WHERE d.id = o.id AND d.status = 'sending'
                     RETURNING d.id)
                 INSERT INTO delivery_attempts (delivery_id, at, ok, detail)
                 SELECT o.id, o.at, o.ok, o.detail FROM outcome o JOIN changed c ON c.id = o.id
                 ORDER BY o.position",
                &[
                    &c.ids,
                    &c.statuses,
                    &c.errors,
                    &c.receipts,
                    &c.next_attempts,
                    &c.sent_at,
                    &c.subjects,
                    &c.ats,
                    &c.oks,
                    &c.details,
                ],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
}

/// The outcomes of a round of sends as columns, for one statement over arrays.
#[derive(Default)]
struct OutcomeArrays<'a> {
    ids: Vec<&'a str>,
    statuses: Vec<&'static str>,
    errors: Vec<Option<&'a str>>,
    receipts: Vec<Option<&'a str>>,
    next_attempts: Vec<i64>,
    sent_at: Vec<Option<String>>,
    subjects: Vec<&'a str>,
    ats: Vec<String>,
    oks: Vec<bool>,
    details: Vec<&'a str>,
}

impl<'a> OutcomeArrays<'a> {
    fn push(&mut self, result: &'a FinishedDelivery, outcome: outbox::OutcomeColumns<'a>) {
        self.ids.push(&result.id);
        self.statuses.push(outcome.status);
        self.errors.push(outcome.error);
        self.receipts.push(outcome.receipt);
        self.next_attempts.push(outcome.next_attempt_ms);
        self.sent_at.push(outcome.sent_at.map(time_text));
        self.subjects.push(&result.subject);
        self.ats.push(time_text(result.at));
        self.oks.push(outcome.ok);
        self.details.push(outcome.detail);
    }
}

pub(super) async fn list_deliveries(
    store: &PostgresStore,
    query: DeliveryQuery,
) -> StoreResult<Vec<Delivery>> {
    store
        .read(move |client| {
            let limit = i64::try_from(query.limit.max(1)).unwrap_or(i64::MAX);
            let rows = client
                .query(
                    &format!(
                        "SELECT {DELIVERY_COLUMNS} FROM deliveries
                         WHERE ($1::TEXT IS NULL OR user_id = $1)
                           AND ($2::TEXT IS NULL OR status = $2)
                           AND ($3::TEXT IS NULL OR id < $3)
                           AND ($4::TEXT IS NULL
                                OR id IN (SELECT delivery_id FROM notifications WHERE alert_id = $4))
                         ORDER BY id DESC LIMIT $5"
                    ),
                    &[
                        &query.user_id,
                        &query.status.map(DeliveryStatus::as_str),
                        &query.before_id,
                        &query.alert_id,
                        &limit,
                    ],
                )
                .map_err(unavailable)?;
            rows.iter().map(read_delivery).collect()
        })
        .await
}

pub(super) async fn delivery(
    store: &PostgresStore,
    id: &str,
) -> StoreResult<Option<DeliveryRecord>> {
    let id = id.to_string();
    store
        .read(move |tx| {
            let Some(row) = tx
                .query_opt(
                    &format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1"),
                    &[&id],
                )
                .map_err(unavailable)?
            else {
                return Ok(None);
            };
            let delivery = read_delivery(&row)?;
            let mut attempts = Vec::new();
            for row in tx
                .query(
                    "SELECT at, ok, detail FROM delivery_attempts WHERE delivery_id = $1
                     ORDER BY id",
                    &[&id],
                )
                .map_err(unavailable)?
            {
                attempts.push(DeliveryAttempt {
                    at: parse_time(row.try_get(0).map_err(unavailable)?)?,
                    ok: row.try_get(1).map_err(unavailable)?,
                    detail: row.try_get(2).map_err(unavailable)?,
                });
            }
            let items = items_of(tx, std::slice::from_ref(&id))?
                .remove(&id)
                .unwrap_or_default()
                .into_iter()
                .map(JobItem::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?;
            Ok(Some((delivery, attempts, items)))
        })
        .await
}

pub(super) async fn next_outbox_due(store: &PostgresStore) -> StoreResult<Option<Timestamp>> {
    store
        .read(|client| {
            let row = client
                .query_one(
                    "SELECT MIN(due) FROM (
                         SELECT MIN(due_ms) AS due FROM notifications WHERE delivery_id IS NULL
                         UNION ALL
                         SELECT MIN(next_attempt_ms) FROM deliveries
                         WHERE status IN ('pending', 'sending')
                         UNION ALL
                         SELECT MIN(next_ms) FROM repeats) AS due_times",
                    &[],
                )
                .map_err(unavailable)?;
            let earliest: Option<i64> = row.try_get(0).map_err(unavailable)?;
            Ok(earliest.map(from_millis))
        })
        .await
}

pub(super) async fn outbox_backlog(
    store: &PostgresStore,
    now: Timestamp,
) -> StoreResult<(u64, Option<Timestamp>)> {
    store
        .read(move |client| {
            let row = client
                .query_one(
                    "SELECT COUNT(*), MIN(due) FROM (
                         SELECT due_ms AS due FROM notifications
                         WHERE delivery_id IS NULL AND due_ms <= $1
                         UNION ALL
                         SELECT next_attempt_ms FROM deliveries
                         WHERE status = 'pending' AND next_attempt_ms <= $1) AS due_times",
                    &[&millis(now)],
                )
                .map_err(unavailable)?;
            let count: i64 = row.try_get(0).map_err(unavailable)?;
            let oldest: Option<i64> = row.try_get(1).map_err(unavailable)?;
            Ok((count.max(0) as u64, oldest.map(from_millis)))
        })
        .await
}

// ---- offboarding and the audit log ----

pub(super) async fn offboard_user(
    store: &PostgresStore,
    user_id: &str,
    dry_run: bool,
    actor: &str,
    now: Timestamp,
) -> StoreResult<OffboardCounts> {
    let (user_id, actor) = (user_id.to_string(), actor.to_string());
    store
        .write(move |tx| offboard(tx, &user_id, dry_run, &actor, now))
        .await
}

pub(super) async fn append_audit(store: &PostgresStore, record: AuditRecord) -> StoreResult<()> {
    store.write(move |tx| write_audit(tx, &record)).await
}

pub(super) async fn list_audit(
    store: &PostgresStore,
    limit: usize,
) -> StoreResult<Vec<AuditRecord>> {
    store
        .read(move |client| {
            let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
            let rows = client
                .query(
                    // Newest first by insertion: ULIDs of one millisecond are not ordered.
                    "SELECT id, at, actor, action, subject, detail FROM audit
                     ORDER BY seq DESC LIMIT $1",
                    &[&limit],
                )
                .map_err(unavailable)?;
            rows.iter()
                .map(|row| {
                    Ok(AuditRecord {
                        id: row.try_get(0).map_err(unavailable)?,
                        at: parse_time(row.try_get(1).map_err(unavailable)?)?,
                        actor: row.try_get(2).map_err(unavailable)?,
                        action: row.try_get(3).map_err(unavailable)?,
                        subject: row.try_get(4).map_err(unavailable)?,
                        detail: read_json(row.try_get(5).map_err(unavailable)?)?,
                    })
                })
                .collect()
        })
        .await
}

// ---- rows ----

const CONTACT_COLUMNS: &str = "id, user_id, name, kind, address, secret, created";
/// How many columns [`CONTACT_COLUMNS`] names.
const CONTACT_COLUMN_COUNT: usize = 7;

fn read_contact(row: &Row) -> StoreResult<ContactPoint> {
    read_contact_at(row, 0)
}

/// A contact point from the row's columns `first..` ([`CONTACT_COLUMNS`]).
fn read_contact_at(row: &Row, first: usize) -> StoreResult<ContactPoint> {
    Ok(ContactPoint {
        id: row.try_get(first).map_err(unavailable)?,
        user_id: row.try_get(first + 1).map_err(unavailable)?,
        name: row.try_get(first + 2).map_err(unavailable)?,
        kind: row.try_get(first + 3).map_err(unavailable)?,
        address: row.try_get(first + 4).map_err(unavailable)?,
        secret: row.try_get(first + 5).map_err(unavailable)?,
        created: parse_time(row.try_get(first + 6).map_err(unavailable)?)?,
    })
}

/// Contact points of one user, or of everyone when `None`.
fn contact_points_of(
    client: &mut impl Sql,
    user_id: Option<&str>,
) -> StoreResult<Vec<ContactPoint>> {
    client
        .query(
            &format!(
                "SELECT {CONTACT_COLUMNS} FROM contact_points
                 WHERE $1::TEXT IS NULL OR user_id = $1 ORDER BY user_id, name"
            ),
            &[&user_id],
        )
        .map_err(unavailable)?
        .iter()
        .map(read_contact)
        .collect()
}

fn contact_point_named(
    client: &mut impl Sql,
    user_id: &str,
    name: &str,
) -> StoreResult<Option<ContactPoint>> {
    client
        .query_opt(
            &format!(
                "SELECT {CONTACT_COLUMNS} FROM contact_points WHERE user_id = $1 AND name = $2"
            ),
            &[&user_id, &name],
        )
        .map_err(unavailable)?
        .as_ref()
        .map(read_contact)
        .transpose()
}

/// A policy row, parsed; `None` (logged) for one that no longer parses at all, so one
/// person's unreadable policy never stops the others' notifications.
fn read_policy(row: &Row) -> StoreResult<Option<PolicyRecord>> {
    let user_id: String = row.try_get(0).map_err(unavailable)?;
    let name: String = row.try_get(1).map_err(unavailable)?;
    let rules: serde_json::Value = read_json(row.try_get(2).map_err(unavailable)?)?;
    let updated = parse_time(row.try_get(3).map_err(unavailable)?)?;
    match Policy::parse_stored(&rules, &PolicyLimits::widest()) {
        Ok(policy) => Ok(Some(PolicyRecord {
            user_id,
            name,
            policy,
            updated,
        })),
        Err(errors) => {
            tracing::error!(user_id = %user_id, policy = %name, ?errors, "stored policy no longer validates; skipped");
            Ok(None)
        }
    }
}

/// Policies of one user, or of everyone when `None`.
fn policies_of(client: &mut impl Sql, user_id: Option<&str>) -> StoreResult<Vec<PolicyRecord>> {
    let rows = client
        .query(
            "SELECT user_id, name, rules, updated FROM policies
             WHERE $1::TEXT IS NULL OR user_id = $1 ORDER BY user_id, name",
            &[&user_id],
        )
        .map_err(unavailable)?;
    let mut policies = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(policy) = read_policy(row)? {
            policies.push(policy);
        }
    }
    Ok(policies)
}

const SILENCE_COLUMNS: &str = "id, user_id, filter, starts, ends, comment, created";

fn read_silence(row: &Row) -> StoreResult<Silence> {
    Ok(Silence {
        id: row.try_get(0).map_err(unavailable)?,
        user_id: row.try_get(1).map_err(unavailable)?,
        filter: row.try_get(2).map_err(unavailable)?,
        starts: parse_time(row.try_get(3).map_err(unavailable)?)?,
        ends: parse_time(row.try_get(4).map_err(unavailable)?)?,
        comment: row.try_get(5).map_err(unavailable)?,
        created: parse_time(row.try_get(6).map_err(unavailable)?)?,
    })
}

/// Silences of one user, or of everyone when `None`.
fn silences_of(client: &mut impl Sql, user_id: Option<&str>) -> StoreResult<Vec<Silence>> {
    client
        .query(
            &format!(
                "SELECT {SILENCE_COLUMNS} FROM silences
                 WHERE $1::TEXT IS NULL OR user_id = $1 ORDER BY id"
            ),
            &[&user_id],
        )
        .map_err(unavailable)?
        .iter()
        .map(read_silence)
        .collect()
}

const DELIVERY_COLUMNS: &str = "id, user_id, contact_point_id, contact_point, kind, status, \
     attempts, next_attempt_ms, last_error, receipt, items, subject, created, sent_at";
/// How many columns [`DELIVERY_COLUMNS`] names.
const DELIVERY_COLUMN_COUNT: usize = 14;

fn read_delivery(row: &Row) -> StoreResult<Delivery> {
    let status: &str = row.try_get(5).map_err(unavailable)?;
    let attempts: i64 = row.try_get(6).map_err(unavailable)?;
    let items: i64 = row.try_get(10).map_err(unavailable)?;
    let sent_at: Option<&str> = row.try_get(13).map_err(unavailable)?;
    Ok(Delivery {
        id: row.try_get(0).map_err(unavailable)?,
        user_id: row.try_get(1).map_err(unavailable)?,
        contact_point_id: row.try_get(2).map_err(unavailable)?,
        contact_point: row.try_get(3).map_err(unavailable)?,
        kind: row.try_get(4).map_err(unavailable)?,
        status: DeliveryStatus::parse(status)
            .ok_or_else(|| unavailable(format!("stored delivery status `{status}`")))?,
        attempts: u32::try_from(attempts).map_err(unavailable)?,
        next_attempt: from_millis(row.try_get(7).map_err(unavailable)?),
        last_error: row.try_get(8).map_err(unavailable)?,
        receipt: row.try_get(9).map_err(unavailable)?,
        items: u32::try_from(items).map_err(unavailable)?,
        subject: row.try_get(11).map_err(unavailable)?,
        created: parse_time(row.try_get(12).map_err(unavailable)?)?,
        sent_at: sent_at.map(parse_time).transpose()?,
    })
}

/// The items of every delivery in `ids`, each delivery's in notification order.
fn items_of(client: &mut impl Sql, ids: &[String]) -> StoreResult<HashMap<String, Vec<JobItem>>> {
    let rows = client
        .query(
            "SELECT id, delivery_id, alert_id, transition, alert FROM notifications
             WHERE delivery_id = ANY($1)",
            &[&ids],
        )
        .map_err(unavailable)?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push((
            row.try_get::<_, i64>(0).map_err(unavailable)?,
            row.try_get::<_, String>(1).map_err(unavailable)?,
            JobItem {
                alert_id: row.try_get(2).map_err(unavailable)?,
                transition: row.try_get(3).map_err(unavailable)?,
                alert_json: row.try_get(4).map_err(unavailable)?,
            },
        ));
    }
    Ok(outbox::items_by_delivery(items))
}

// ---- the outbox, inside take_deliveries' transaction ----

/// A planned delivery: the id it will have and its gang of due notifications.
struct PlannedGang {
    delivery_id: String,
    gang: outbox::Gang,
}

/// Plans due notifications into deliveries, one per (user, contact point) among the rows
/// this transaction could lock (see the module documentation); deletes those with nothing
/// left to say. The deliveries are written by [`gang_and_lease`].
fn plan_gangs(
    tx: &mut Tx<'_>,
    now: Timestamp,
    hold: &DeliveryHold,
) -> StoreResult<(Vec<PlannedGang>, HashMap<i64, JobItem>)> {
    let max_gang = i64::try_from(outbox::MAX_GANG).unwrap_or(i64::MAX);
    // The due notifications with the alerts they are about, in one round trip.
    let rows = tx
        .query(
            "SELECT n.id, n.user_id, n.contact_point_id, n.alert_id, n.transition, a.body,
                 n.alert
             FROM notifications n JOIN alerts a ON a.id = n.alert_id
             WHERE n.delivery_id IS NULL AND n.due_ms <= $1
               AND NOT (n.user_id = ANY($2)) AND NOT (n.contact_point_id = ANY($3))
             ORDER BY n.id LIMIT $4
             FOR UPDATE OF n SKIP LOCKED",
            &[&millis(now), &hold.users, &hold.contact_points, &max_gang],
        )
        .map_err(unavailable)?;
    if rows.is_empty() {
        return Ok((Vec::new(), HashMap::new()));
    }
    let mut due = Vec::with_capacity(rows.len());
    let mut alerts: HashMap<String, AlertStanding> = HashMap::new();
    let mut carried = HashMap::with_capacity(rows.len());
    for row in &rows {
        let notification = DueNotification {
            id: row.try_get(0).map_err(unavailable)?,
            user_id: row.try_get(1).map_err(unavailable)?,
            contact_point_id: row.try_get(2).map_err(unavailable)?,
            alert_id: row.try_get(3).map_err(unavailable)?,
            transition: row.try_get(4).map_err(unavailable)?,
        };
        if !alerts.contains_key(&notification.alert_id) {
            let body: &str = row.try_get(5).map_err(unavailable)?;
            let standing = outbox::standing_of(&notification.alert_id, body);
            alerts.insert(notification.alert_id.clone(), standing);
        }
        carried.insert(
            notification.id,
            JobItem {
                alert_id: notification.alert_id.clone(),
                transition: notification.transition.clone(),
                alert_json: row.try_get(6).map_err(unavailable)?,
            },
        );
        due.push(notification);
    }
    let plan = outbox::plan_gangs(due, &alerts, now);
    if !plan.dropped.is_empty() {
        tx.execute(
            "DELETE FROM notifications WHERE id = ANY($1)",
            &[&plan.dropped],
        )
        .map_err(unavailable)?;
    }
    let gangs = plan
        .gangs
        .into_iter()
        .map(|gang| PlannedGang {
            delivery_id: tellify_model::new_id(),
            gang,
        })
        .collect();
    Ok((gangs, carried))
}

/// Writes the planned deliveries and leases what is due, up to `limit`, in one statement
/// (they were two, and a third read the new deliveries' items back): the deliveries
/// already due come first, as before (they are older), then the new ones, each leased at
/// once while the limit allows and left pending otherwise. A contact point deleted after
/// the plan was made leaves a delivery recorded as failed with the reason, never a
/// notification dropped without a word. Deliveries are inserted in the plan's order, which
/// is the order they are sent in.
fn gang_and_lease(
    tx: &mut Tx<'_>,
    now: Timestamp,
    lease_until: Timestamp,
    limit: usize,
    gangs: Vec<PlannedGang>,
    mut carried: HashMap<i64, JobItem>,
) -> StoreResult<Vec<DeliveryJob>> {
    let mut delivery_ids = Vec::with_capacity(gangs.len());
    let mut users = Vec::with_capacity(gangs.len());
    let mut points = Vec::with_capacity(gangs.len());
    let mut items = Vec::with_capacity(gangs.len());
    let mut notification_ids: Vec<i64> = Vec::new();
    let mut notification_deliveries: Vec<&str> = Vec::new();
    for PlannedGang { delivery_id, gang } in &gangs {
        for notification in &gang.notifications {
            notification_ids.push(*notification);
            notification_deliveries.push(delivery_id);
        }
        items.push(i64::try_from(gang.notifications.len()).unwrap_or(i64::MAX));
        users.push(gang.user_id.as_str());
        points.push(gang.contact_point_id.as_str());
        delivery_ids.push(delivery_id.as_str());
    }
    let rows = tx
        .query(
            &gang_and_lease_sql(),
            &[
                &millis(now),
                &i64::try_from(limit).unwrap_or(i64::MAX),
                &millis(lease_until),
                &outbox::DELETED_POINT_ERROR,
                &delivery_ids,
                &users,
                &points,
                &items,
                &outbox::DELETED_POINT_NAME,
                &outbox::DELETED_POINT_KIND,
                &time_text(now),
                &notification_ids,
                &notification_deliveries,
            ],
        )
        .map_err(unavailable)?;
    let mut claimed: Vec<(Delivery, ContactPoint)> = Vec::with_capacity(rows.len());
    let mut older: Vec<String> = Vec::new();
    for row in &rows {
        let delivery = read_delivery(row)?;
        let fresh: bool = row
            .try_get(DELIVERY_COLUMN_COUNT + CONTACT_COLUMN_COUNT)
            .map_err(unavailable)?;
        if !fresh {
            older.push(delivery.id.clone());
        }
        claimed.push((delivery, read_contact_at(row, DELIVERY_COLUMN_COUNT)?));
    }
    // The older deliveries' items are read back; the new ones' are those just planned.
    let mut job_items = if older.is_empty() {
        HashMap::new()
    } else {
        items_of(tx, &older)?
    };
    let leased: std::collections::HashSet<&str> = claimed
        .iter()
        .map(|(delivery, _)| delivery.id.as_str())
        .collect();
    for PlannedGang { delivery_id, gang } in &gangs {
        if !leased.contains(delivery_id.as_str()) {
            continue;
        }
        let mut these = Vec::with_capacity(gang.notifications.len());
        for notification in &gang.notifications {
            if let Some(item) = carried.remove(notification) {
                these.push(item);
            }
        }
        job_items.insert(delivery_id.clone(), these);
    }
    Ok(outbox::jobs(claimed, job_items))
}

/// The statement of [`gang_and_lease`]: `$1` now, `$2` the most to lease, `$3` the lease's
/// end, `$4` the error of a delivery whose contact point is gone; `$5`–`$8` the new
/// deliveries (id, user, contact point, items), `$9`–`$10` the name and kind recorded
/// when the contact point is gone, `$11` now as text; `$12`–`$13` each notification's
/// delivery. Returns the leased deliveries with their contact points and whether each is
/// new, older ones first, each in due order. Each new delivery's contact point is looked up
/// on its own (`LATERAL … LIMIT 1`, one index probe): as a join, a generic plan hashed them
/// all.
pub(super) fn gang_and_lease_sql() -> String {
    format!(
        "WITH {leased},
         room AS (
             SELECT $2 - (SELECT count(*) FROM claimed WHERE status = 'sending') AS spare),
         gang AS (
             SELECT g.*, p.name, p.kind,
                 p.name IS NOT NULL AND g.position <= (SELECT spare FROM room) AS now_sent
             FROM unnest($5::text[], $6::text[], $7::text[], $8::int8[])
                 WITH ORDINALITY AS g(id, user_id, point_id, items, position)
             LEFT JOIN LATERAL (
                 SELECT name, kind FROM contact_points WHERE id = g.point_id LIMIT 1) p ON true),
         fresh AS (
             INSERT INTO deliveries (id, user_id, contact_point_id, contact_point, kind,
                 status, attempts, next_attempt_ms, items, created, last_error)
             SELECT g.id, g.user_id, g.point_id, COALESCE(g.name, $9), COALESCE(g.kind, $10),
                 CASE WHEN g.name IS NULL THEN 'failed'
                      WHEN g.now_sent THEN 'sending' ELSE 'pending' END,
                 0, CASE WHEN g.now_sent THEN $3 ELSE $1 END, g.items, $11,
                 CASE WHEN g.name IS NULL THEN $4 END
             FROM gang g
             ORDER BY g.position
             RETURNING {fresh}, seq),
         linked AS (
             UPDATE notifications n SET delivery_id = m.delivery_id
             FROM unnest($12::int8[], $13::text[]) AS m(notification_id, delivery_id)
             WHERE n.id = m.notification_id)
         SELECT {older}, {older_point}, false AS fresh, c.due_ms AS due_ms, c.seq AS seq
         FROM claimed c JOIN contact_points p ON p.id = c.contact_point_id
         WHERE c.status = 'sending'
         UNION ALL
         SELECT {new}, {new_point}, true, 0, f.seq
         FROM fresh f JOIN contact_points p ON p.id = f.contact_point_id
         WHERE f.status = 'sending'
         ORDER BY fresh, due_ms, seq",
        leased = leased_ctes(),
        fresh = DELIVERY_COLUMNS,
        older = columns_of("c", DELIVERY_COLUMNS),
        older_point = columns_of("p", CONTACT_COLUMNS),
        new = columns_of("f", DELIVERY_COLUMNS),
        new_point = columns_of("p", CONTACT_COLUMNS),
    )
}

/// Leases up to `limit` due deliveries, skipping those another node is claiming right
/// now (see the module documentation).
fn lease(
    tx: &mut Tx<'_>,
    now: Timestamp,
    lease_until: Timestamp,
    limit: usize,
) -> StoreResult<Vec<DeliveryJob>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // One statement (it was three round trips): lock the due deliveries nobody else is
    // claiming, lease each whose contact point exists and fail each whose contact point
    // is gone, and return the leased ones with their contact points, in due order.
    let rows = tx
        .query(
            &lease_sql(),
            &[
                &millis(now),
                &limit,
                &millis(lease_until),
                &outbox::DELETED_POINT_ERROR,
            ],
        )
        .map_err(unavailable)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut claimed: Vec<(Delivery, ContactPoint)> = Vec::with_capacity(rows.len());
    for row in &rows {
        claimed.push((
            read_delivery(row)?,
            read_contact_at(row, DELIVERY_COLUMN_COUNT)?,
        ));
    }
    let ids: Vec<String> = claimed
        .iter()
        .map(|(delivery, _)| delivery.id.clone())
        .collect();
    let items = items_of(tx, &ids)?;
    Ok(outbox::jobs(claimed, items))
}

/// The common table expressions that lease due deliveries (`$1` now, `$2` the most to
/// lease, `$3` the lease's end, `$4` the error of one whose contact point is gone): `due`
/// locks them, skipping those another node is claiming; `checked` looks up each contact
/// point on its own (a scalar subquery, one index probe: as `EXISTS`, PostgreSQL may hash
/// every contact point for each claim); `claimed` leases the live ones, fails the rest and
/// returns them with their due time and order.
fn leased_ctes() -> String {
    format!(
        "due AS (
             SELECT id, contact_point_id, next_attempt_ms AS due_ms, seq
             FROM deliveries
             WHERE status IN ('pending', 'sending') AND next_attempt_ms <= $1
             ORDER BY next_attempt_ms, seq LIMIT $2
             FOR UPDATE SKIP LOCKED),
         checked AS (
             SELECT due.*, COALESCE((SELECT true FROM contact_points p
                                     WHERE p.id = due.contact_point_id), false) AS live
             FROM due),
         claimed AS (
             UPDATE deliveries d SET
                 status = CASE WHEN k.live THEN 'sending' ELSE 'failed' END,
                 next_attempt_ms = CASE WHEN k.live THEN $3 ELSE d.next_attempt_ms END,
                 last_error = CASE WHEN k.live THEN d.last_error ELSE $4 END
             FROM checked k
             WHERE d.id = k.id
             RETURNING {claimed}, k.due_ms, k.seq)",
        claimed = columns_of("d", DELIVERY_COLUMNS),
    )
}

/// The lease statement ([`lease`]), parameters as [`leased_ctes`]: the leased deliveries
/// with their contact points, in due order.
pub(super) fn lease_sql() -> String {
    format!(
        "WITH {leased}
         SELECT {delivery}, {point} FROM claimed c
         JOIN contact_points p ON p.id = c.contact_point_id AND c.status = 'sending'
         ORDER BY c.due_ms, c.seq",
        leased = leased_ctes(),
        delivery = columns_of("c", DELIVERY_COLUMNS),
        point = columns_of("p", CONTACT_COLUMNS),
    )
}

/// `columns` (a comma-separated list) each prefixed with `alias.`.
fn columns_of(alias: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|column| format!("{alias}.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Marks the pending deliveries of `point` failed with `reason`, and gangs its
/// notifications not yet in a delivery into one failed delivery with the same reason. A
/// delivery being sent (leased) goes on: its sender records what really happened, and
/// should that be a retry, the next claim finds the contact point gone and fails it.
fn fail_unsent_for_contact_point(
    tx: &mut Tx<'_>,
    point: &ContactPoint,
    reason: &str,
    now: Timestamp,
) -> StoreResult<()> {
    // Locked, not skipped: a node ganging some of them is waited for, and then they no
    // longer match `delivery_id IS NULL`.
    let mut waiting = Vec::new();
    for row in tx
        .query(
            "SELECT id FROM notifications WHERE contact_point_id = $1 AND delivery_id IS NULL
             ORDER BY id FOR UPDATE",
            &[&point.id],
        )
        .map_err(unavailable)?
    {
        waiting.push(row.try_get::<_, i64>(0).map_err(unavailable)?);
    }
    if !waiting.is_empty() {
        let delivery_id = tellify_model::new_id();
        let items = i64::try_from(waiting.len()).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO deliveries (id, user_id, contact_point_id, contact_point, kind, status,
                 attempts, next_attempt_ms, items, created)
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7, $8)",
            &[
                &delivery_id,
                &point.user_id,
                &point.id,
                &point.name,
                &point.kind,
                &millis(now),
                &items,
                &time_text(now),
            ],
        )
        .map_err(unavailable)?;
        tx.execute(
            "UPDATE notifications SET delivery_id = $1 WHERE id = ANY($2)",
            &[&delivery_id, &waiting],
        )
        .map_err(unavailable)?;
    }
    // A delivery a node is leasing right now is waited for; once leased it is `sending`
    // and no longer matches.
    let failed = tx
        .query(
            "UPDATE deliveries SET status = 'failed', last_error = $2, next_attempt_ms = $3
             WHERE contact_point_id = $1 AND status = 'pending'
             RETURNING id",
            &[&point.id, &reason, &millis(now)],
        )
        .map_err(unavailable)?;
    for row in failed {
        let id: String = row.try_get(0).map_err(unavailable)?;
        tx.execute(
            "INSERT INTO delivery_attempts (delivery_id, at, ok, detail)
             VALUES ($1, $2, FALSE, $3)",
            &[&id, &time_text(now), &reason],
        )
        .map_err(unavailable)?;
    }
    Ok(())
}

// ---- offboarding ----

fn count(tx: &mut Tx<'_>, sql: &str, user_id: &str) -> StoreResult<u64> {
    let row = tx.query_one(sql, &[&user_id]).map_err(unavailable)?;
    let count: i64 = row.try_get(0).map_err(unavailable)?;
    Ok(count.max(0) as u64)
}

fn offboard_counts(tx: &mut Tx<'_>, user_id: &str) -> StoreResult<OffboardCounts> {
    const OWN_ALERTS: &str = "SELECT id FROM alerts WHERE subscription_id IN
         (SELECT id FROM subscriptions WHERE owner_user = $1)";
    Ok(OffboardCounts {
        subscriptions: count(
            tx,
            "SELECT COUNT(*) FROM subscriptions WHERE owner_user = $1",
            user_id,
        )?,
        alerts: count(
            tx,
            &format!("SELECT COUNT(*) FROM ({OWN_ALERTS}) AS own"),
            user_id,
        )?,
        alert_history: count(
            tx,
            &format!("SELECT COUNT(*) FROM alert_history WHERE alert_id IN ({OWN_ALERTS})"),
            user_id,
        )?,
        handler_states: count(
            tx,
            "SELECT COUNT(*) FROM handler_state WHERE subscription_id IN
                 (SELECT id FROM subscriptions WHERE owner_user = $1)",
            user_id,
        )?,
        policies: count(
            tx,
            "SELECT COUNT(*) FROM policies WHERE user_id = $1",
            user_id,
        )?,
        contact_points: count(
            tx,
            "SELECT COUNT(*) FROM contact_points WHERE user_id = $1",
            user_id,
        )?,
        pending_deliveries: count(
            tx,
            "SELECT COUNT(*) FROM deliveries
             WHERE user_id = $1 AND status IN ('pending', 'sending')",
            user_id,
        )?,
        deliveries: count(
            tx,
            "SELECT COUNT(*) FROM deliveries WHERE user_id = $1",
            user_id,
        )?,
        notifications: count(
            tx,
            "SELECT COUNT(*) FROM notifications WHERE user_id = $1",
            user_id,
        )?,
        silences: count(
            tx,
            "SELECT COUNT(*) FROM silences WHERE user_id = $1",
            user_id,
        )?,
        tokens: count(
            tx,
            "SELECT COUNT(*) FROM tokens WHERE user_id = $1",
            user_id,
        )?,
        group_memberships: count(
            tx,
            "SELECT COUNT(*) FROM group_members WHERE user_id = $1",
            user_id,
        )?,
    })
}

fn offboard(
    tx: &mut Tx<'_>,
    user_id: &str,
    dry_run: bool,
    actor: &str,
    now: Timestamp,
) -> StoreResult<OffboardCounts> {
    let name: String = tx
        .query_opt("SELECT name FROM users WHERE id = $1", &[&user_id])
        .map_err(unavailable)?
        .ok_or(StoreError::NotFound)?
        .try_get(0)
        .map_err(unavailable)?;
    let counts = offboard_counts(tx, user_id)?;
    if dry_run {
        return Ok(counts);
    }
    // Notifications, repeats, attempts and history go with their parents (ON DELETE
    // CASCADE); the explicit deletes make the order plain.
    for sql in [
        "DELETE FROM notifications WHERE user_id = $1",
        "DELETE FROM repeats WHERE user_id = $1",
        "DELETE FROM deliveries WHERE user_id = $1",
        "DELETE FROM subscriptions WHERE owner_user = $1",
        "DELETE FROM policies WHERE user_id = $1",
        "DELETE FROM contact_points WHERE user_id = $1",
        "DELETE FROM silences WHERE user_id = $1",
        "DELETE FROM tokens WHERE user_id = $1",
        "DELETE FROM web_sessions WHERE user_id = $1",
        "DELETE FROM group_members WHERE user_id = $1",
    ] {
        tx.execute(sql, &[&user_id]).map_err(unavailable)?;
    }
    // Other people's (group) alerts keep their history, without the person's name.
    tx.execute(
        "UPDATE alert_history SET actor = $3 WHERE actor = $1 OR actor = $2",
        &[&name, &user_id, &REMOVED_USER],
    )
    .map_err(unavailable)?;
    let touched = tx
        .query(
            "SELECT id, body FROM alerts WHERE strpos(body, $1) > 0 OR strpos(body, $2) > 0",
            &[&name, &user_id],
        )
        .map_err(unavailable)?;
    for row in touched {
        let id: String = row.try_get(0).map_err(unavailable)?;
        let mut alert: Alert = read_json(row.try_get(1).map_err(unavailable)?)?;
        let names = |who: &Option<String>| {
            who.as_deref()
                .is_some_and(|who| who == name || who == user_id)
        };
        if names(&alert.acked_by) {
            alert.acked_by = Some(REMOVED_USER.to_string());
        }
        if names(&alert.shelved_by) {
            alert.shelved_by = Some(REMOVED_USER.to_string());
        }
        let body = serde_json::to_string(&alert).map_err(unavailable)?;
        tx.execute("UPDATE alerts SET body = $2 WHERE id = $1", &[&id, &body])
            .map_err(unavailable)?;
    }
    tx.execute("DELETE FROM users WHERE id = $1", &[&user_id])
        .map_err(unavailable)?;
    write_audit(
        tx,
        &AuditRecord {
            id: tellify_model::new_id(),
            at: now,
            actor: actor.to_string(),
            action: "user.offboarded".to_string(),
            subject: format!("user {name}"),
            detail: serde_json::to_value(&counts).map_err(unavailable)?,
        },
    )?;
    Ok(counts)
}

fn write_audit(tx: &mut Tx<'_>, record: &AuditRecord) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO audit (id, at, actor, action, subject, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &record.id,
            &time_text(record.at),
            &record.actor,
            &record.action,
            &record.subject,
            &record.detail.to_string(),
        ],
    )
    .map_err(unavailable)?;
    Ok(())
}
