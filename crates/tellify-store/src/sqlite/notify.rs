//! The notification side of the SQLite store: contact points, policies, silences, the
//! outbox (notifications → deliveries → attempts), repeats, offboarding and the audit log.
//!
//! Everything here runs inside a transaction handed in by the store: on the writer thread
//! for writes, on a pooled read connection for reads.

use std::collections::HashMap;

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use tellify_engine::alerts::Alert;
use tellify_engine::policy::{Policy, PolicyLimits};

use super::{
    conflict_or_unavailable, parse_time, read_json, read_user, time_text, unavailable, USER_COLUMNS,
};
use crate::outbox::{self, DueNotification, Gang};
use crate::{
    AlertStanding, AuditRecord, ContactPoint, Delivery, DeliveryAttempt, DeliveryHold,
    DeliveryItem, DeliveryJob, DeliveryQuery, DeliveryRecord, DeliveryStatus, FinishedDelivery,
    JobItem, NotifyDirectory, OffboardCounts, PolicyRecord, Silence, StoreError, StoreResult,
};

pub(super) const MIGRATION: &str = r#"
ALTER TABLE subscriptions ADD COLUMN policy TEXT;
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
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    contact_point_id TEXT NOT NULL,
    contact_point TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    last_error TEXT,
    receipt TEXT,
    items INTEGER NOT NULL,
    subject TEXT,
    created TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_ms) WHERE status IN ('pending', 'sending');
CREATE INDEX deliveries_user ON deliveries(user_id, id);
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    contact_point_id TEXT NOT NULL,
    alert_id TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    owner_group TEXT,
    transition TEXT NOT NULL,
    due_ms INTEGER NOT NULL,
    delivery_id TEXT,
    alert TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX notifications_due ON notifications(due_ms) WHERE delivery_id IS NULL;
CREATE INDEX notifications_delivery ON notifications(delivery_id);
CREATE INDEX notifications_user ON notifications(user_id);
CREATE INDEX notifications_alert ON notifications(alert_id);
CREATE TABLE delivery_attempts (
    id INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    ok INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts(delivery_id);
CREATE TABLE repeats (
    alert_id TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    next_ms INTEGER NOT NULL,
    every_ms INTEGER NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (alert_id, user_id)
);
CREATE INDEX repeats_due ON repeats(next_ms);
CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
"#;

/// What a user removed from tellify leaves behind where others' records named them.
pub use crate::REMOVED_USER;

fn millis(time: Timestamp) -> i64 {
    time.as_millisecond()
}

fn from_millis(ms: i64) -> rusqlite::Result<Timestamp> {
    Timestamp::from_millisecond(ms).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Integer,
            Box::new(error),
        )
    })
}

// ---- contact points, policies, silences ----

const CONTACT_COLUMNS: &str = "id, user_id, name, kind, address, secret, created";

fn read_contact(row: &rusqlite::Row) -> rusqlite::Result<ContactPoint> {
    Ok(ContactPoint {
        id: row.get(0)?,
        user_id: row.get(1)?,
        name: row.get(2)?,
        kind: row.get(3)?,
        address: row.get(4)?,
        secret: row.get(5)?,
        created: parse_time(row.get(6)?)?,
    })
}

pub(super) fn create_contact_point(tx: &Connection, point: &ContactPoint) -> StoreResult<()> {
    tx.execute(
        &format!(
            "INSERT INTO contact_points ({CONTACT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ),
        params![
            point.id,
            point.user_id,
            point.name,
            point.kind,
            point.address,
            point.secret,
            time_text(point.created)
        ],
    )
    .map_err(|error| conflict_or_unavailable(error, "contact point"))?;
    Ok(())
}

pub(super) fn list_contact_points(
    connection: &Connection,
    user_id: Option<&str>,
) -> StoreResult<Vec<ContactPoint>> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {CONTACT_COLUMNS} FROM contact_points WHERE ?1 IS NULL OR user_id = ?1
             ORDER BY user_id, name"
        ))
        .map_err(unavailable)?;
    let rows = statement
        .query_map([user_id], read_contact)
        .map_err(unavailable)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
}

pub(super) fn contact_point(
    connection: &Connection,
    user_id: &str,
    name: &str,
) -> StoreResult<Option<ContactPoint>> {
    connection
        .prepare_cached(&format!(
            "SELECT {CONTACT_COLUMNS} FROM contact_points WHERE user_id = ?1 AND name = ?2"
        ))
        .map_err(unavailable)?
        .query_row(params![user_id, name], read_contact)
        .optional()
        .map_err(unavailable)
}

pub(super) fn delete_contact_point(
    tx: &Connection,
    user_id: &str,
    name: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    let Some(point) = contact_point(tx, user_id, name)? else {
        return Ok(false);
    };
    // Nothing more goes to an address the user took away, yet nothing planned for it is
    // dropped without a word: what waited becomes a failed delivery saying why.
    let reason = format!("contact point {name} was deleted before this was sent");
    fail_unsent_for_contact_point(tx, &point, &reason, now)?;
    tx.execute("DELETE FROM contact_points WHERE id = ?1", [&point.id])
        .map_err(unavailable)?;
    Ok(true)
}

/// Marks the pending deliveries of `point` failed with `reason`, and gangs its
/// notifications not yet in a delivery into one failed delivery with the same reason. A
/// delivery being sent (leased) goes on: its sender records what really happened, and
/// should that be a retry, the next claim finds the contact point gone and fails it.
fn fail_unsent_for_contact_point(
    tx: &Connection,
    point: &ContactPoint,
    reason: &str,
    now: Timestamp,
) -> StoreResult<()> {
    let waiting: Vec<i64> = {
        let mut statement = tx
            .prepare_cached(
                "SELECT id FROM notifications WHERE contact_point_id = ?1 AND delivery_id IS NULL
                 ORDER BY id",
            )
            .map_err(unavailable)?;
        let rows = statement
            .query_map([&point.id], |row| row.get(0))
            .map_err(unavailable)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)?
    };
    if !waiting.is_empty() {
        let delivery_id = tellify_model::new_id();
        tx.execute(
            "INSERT INTO deliveries (id, user_id, contact_point_id, contact_point, kind, status,
                 attempts, next_attempt_ms, items, created)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?7, ?8)",
            params![
                delivery_id,
                point.user_id,
                point.id,
                point.name,
                point.kind,
                millis(now),
                waiting.len() as i64,
                time_text(now)
            ],
        )
        .map_err(unavailable)?;
        let mut assign = tx
            .prepare_cached("UPDATE notifications SET delivery_id = ?1 WHERE id = ?2")
            .map_err(unavailable)?;
        for id in waiting {
            assign
                .execute(params![delivery_id, id])
                .map_err(unavailable)?;
        }
    }
    let unsent: Vec<String> = {
        let mut statement = tx
            .prepare_cached(
                "SELECT id FROM deliveries WHERE contact_point_id = ?1 AND status = 'pending'",
            )
            .map_err(unavailable)?;
        let rows = statement
            .query_map([&point.id], |row| row.get(0))
            .map_err(unavailable)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)?
    };
    for id in unsent {
        tx.execute(
            "UPDATE deliveries SET status = 'failed', last_error = ?2, next_attempt_ms = ?3
             WHERE id = ?1",
            params![id, reason, millis(now)],
        )
        .map_err(unavailable)?;
        tx.execute(
            "INSERT INTO delivery_attempts (delivery_id, at, ok, detail) VALUES (?1, ?2, 0, ?3)",
            params![id, time_text(now), reason],
        )
        .map_err(unavailable)?;
    }
    Ok(())
}

/// A policy row, parsed; `None` (logged) for one that no longer parses at all, so one
/// person's unreadable policy never stops the others' notifications.
fn read_policy(row: &rusqlite::Row) -> rusqlite::Result<Option<PolicyRecord>> {
    let user_id: String = row.get(0)?;
    let name: String = row.get(1)?;
    let rules: serde_json::Value = read_json(row.get(2)?)?;
    let updated = parse_time(row.get(3)?)?;
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

pub(super) fn put_policy(tx: &Connection, policy: &PolicyRecord) -> StoreResult<bool> {
    let existed = tx
        .prepare_cached("SELECT 1 FROM policies WHERE user_id = ?1 AND name = ?2")
        .map_err(unavailable)?
        .exists(params![policy.user_id, policy.name])
        .map_err(unavailable)?;
    tx.execute(
        "INSERT INTO policies (user_id, name, rules, updated) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id, name) DO UPDATE SET rules = excluded.rules, updated = excluded.updated",
        params![
            policy.user_id,
            policy.name,
            policy.policy.to_json().to_string(),
            time_text(policy.updated)
        ],
    )
    .map_err(unavailable)?;
    Ok(!existed)
}

pub(super) fn list_policies(
    connection: &Connection,
    user_id: Option<&str>,
) -> StoreResult<Vec<PolicyRecord>> {
    let mut statement = connection
        .prepare_cached(
            "SELECT user_id, name, rules, updated FROM policies WHERE ?1 IS NULL OR user_id = ?1
             ORDER BY user_id, name",
        )
        .map_err(unavailable)?;
    let rows = statement
        .query_map([user_id], read_policy)
        .map_err(unavailable)?;
    let rows = rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)?;
    Ok(rows.into_iter().flatten().collect())
}

pub(super) fn policy(
    connection: &Connection,
    user_id: &str,
    name: &str,
) -> StoreResult<Option<PolicyRecord>> {
    connection
        .prepare_cached(
            "SELECT user_id, name, rules, updated FROM policies WHERE user_id = ?1 AND name = ?2",
        )
        .map_err(unavailable)?
        .query_row(params![user_id, name], read_policy)
        .optional()
        .map(Option::flatten)
        .map_err(unavailable)
}

pub(super) fn delete_policy(tx: &Connection, user_id: &str, name: &str) -> StoreResult<bool> {
    let removed = tx
        .execute(
            "DELETE FROM policies WHERE user_id = ?1 AND name = ?2",
            params![user_id, name],
        )
        .map_err(unavailable)?;
    Ok(removed == 1)
}

const SILENCE_COLUMNS: &str = "id, user_id, filter, starts, ends, comment, created";

fn read_silence(row: &rusqlite::Row) -> rusqlite::Result<Silence> {
    Ok(Silence {
        id: row.get(0)?,
        user_id: row.get(1)?,
        filter: row.get(2)?,
        starts: parse_time(row.get(3)?)?,
        ends: parse_time(row.get(4)?)?,
        comment: row.get(5)?,
        created: parse_time(row.get(6)?)?,
    })
}

pub(super) fn create_silence(tx: &Connection, silence: &Silence) -> StoreResult<()> {
    tx.execute(
        &format!("INSERT INTO silences ({SILENCE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![
            silence.id,
            silence.user_id,
            silence.filter,
            time_text(silence.starts),
            time_text(silence.ends),
            silence.comment,
            time_text(silence.created)
        ],
    )
    .map_err(|error| conflict_or_unavailable(error, "silence"))?;
    Ok(())
}

pub(super) fn list_silences(
    connection: &Connection,
    user_id: Option<&str>,
) -> StoreResult<Vec<Silence>> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {SILENCE_COLUMNS} FROM silences WHERE ?1 IS NULL OR user_id = ?1 ORDER BY id"
        ))
        .map_err(unavailable)?;
    let rows = statement
        .query_map([user_id], read_silence)
        .map_err(unavailable)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
}

pub(super) fn delete_silence(tx: &Connection, user_id: &str, id: &str) -> StoreResult<bool> {
    let removed = tx
        .execute(
            "DELETE FROM silences WHERE id = ?1 AND user_id = ?2",
            params![id, user_id],
        )
        .map_err(unavailable)?;
    Ok(removed == 1)
}

pub(super) fn notify_directory(connection: &Connection) -> StoreResult<NotifyDirectory> {
    let mut users = Vec::new();
    {
        let mut statement = connection
            .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))
            .map_err(unavailable)?;
        for row in statement.query_map([], read_user).map_err(unavailable)? {
            users.push(row.map_err(unavailable)?);
        }
    }
    let mut members: HashMap<String, Vec<String>> = HashMap::new();
    {
        let mut statement = connection
            .prepare_cached(
                "SELECT group_id, user_id FROM group_members ORDER BY group_id, user_id",
            )
            .map_err(unavailable)?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(unavailable)?;
        for row in rows {
            let (group, user) = row.map_err(unavailable)?;
            members.entry(group).or_default().push(user);
        }
    }
    let mut subscription_policies = Vec::new();
    {
        let mut statement = connection
            .prepare_cached("SELECT id, policy FROM subscriptions WHERE policy IS NOT NULL")
            .map_err(unavailable)?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(unavailable)?;
        for row in rows {
            subscription_policies.push(row.map_err(unavailable)?);
        }
    }
    let mut groups: Vec<(String, Vec<String>)> = members.into_iter().collect();
    groups.sort();
    Ok(NotifyDirectory {
        users,
        groups,
        contact_points: list_contact_points(connection, None)?,
        policies: list_policies(connection, None)?,
        silences: list_silences(connection, None)?,
        subscription_policies,
    })
}

/// What ganging needs of the alert `id` (see [`AlertStanding`]), if it still exists.
fn alert_standing(connection: &Connection, id: &str) -> StoreResult<Option<AlertStanding>> {
    connection
        .prepare_cached("SELECT body FROM alerts WHERE id = ?1")
        .map_err(unavailable)?
        .query_row([id], |row| {
            row.get_ref(0)?
                .as_str()
                .map(|body| outbox::standing_of(id, body))
                .map_err(rusqlite::Error::from)
        })
        .optional()
        .map_err(unavailable)
}

// ---- the outbox: gang, lease, finish ----

/// Turns due notifications into deliveries: one per (user, contact point) and due round.
/// Runs in one transaction on the single writer, so a notification joins one delivery
/// only, and a digest bucket becomes one message.
fn gang(tx: &Connection, now: Timestamp, hold: &DeliveryHold) -> StoreResult<()> {
    let held_users = serde_json::json!(hold.users).to_string();
    let held_points = serde_json::json!(hold.contact_points).to_string();
    type Due = (i64, String, String, String, String);
    let due: Vec<Due> = {
        let mut statement = tx
            // The limit is written into the SQL as a literal, as every limit here: a bound
            // `LIMIT ?` makes SQLite re-prepare the statement on every execution, which
            // cost more than the query itself.
            .prepare_cached(&format!(
                "SELECT id, user_id, contact_point_id, alert_id, transition FROM notifications
                 WHERE delivery_id IS NULL AND due_ms <= ?1
                   AND user_id NOT IN (SELECT value FROM json_each(?2))
                   AND contact_point_id NOT IN (SELECT value FROM json_each(?3))
                 ORDER BY id LIMIT {}",
                outbox::MAX_GANG
            ))
            .map_err(unavailable)?;
        let rows = statement
            .query_map(params![millis(now), held_users, held_points], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })
            .map_err(unavailable)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)?
    };
    if due.is_empty() {
        return Ok(());
    }
    let due: Vec<DueNotification> = due
        .into_iter()
        .map(
            |(id, user_id, contact_point_id, alert_id, transition)| DueNotification {
                id,
                user_id,
                contact_point_id,
                alert_id,
                transition,
            },
        )
        .collect();
    let mut alerts: HashMap<String, AlertStanding> = HashMap::new();
    for alert_id in outbox::alert_ids(&due) {
        if let Some(alert) = alert_standing(tx, &alert_id)? {
            alerts.insert(alert_id, alert);
        }
    }
    let plan = outbox::plan_gangs(due, &alerts, now);
    for id in plan.dropped {
        tx.prepare_cached("DELETE FROM notifications WHERE id = ?1")
            .map_err(unavailable)?
            .execute([id])
            .map_err(unavailable)?;
    }
    for gang in plan.gangs {
        let Gang {
            user_id,
            contact_point_id,
            notifications: ids,
        } = gang;
        let point: Option<(String, String)> = tx
            .prepare_cached("SELECT name, kind FROM contact_points WHERE id = ?1")
            .map_err(unavailable)?
            .query_row([&contact_point_id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()
            .map_err(unavailable)?;
        // Planned from a view of the contact points older than their deletion: recorded as
        // failed with the reason, never dropped without a word.
        let (name, kind, status, error) = match point {
            Some((name, kind)) => (name, kind, "pending", None),
            None => (
                outbox::DELETED_POINT_NAME.to_string(),
                outbox::DELETED_POINT_KIND.to_string(),
                "failed",
                Some(outbox::DELETED_POINT_ERROR),
            ),
        };
        let delivery_id = tellify_model::new_id();
        tx.prepare_cached(
            "INSERT INTO deliveries (id, user_id, contact_point_id, contact_point, kind, status,
                 attempts, next_attempt_ms, items, created, last_error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8, ?9, ?10)",
        )
        .map_err(unavailable)?
        .execute(params![
            delivery_id,
            user_id,
            contact_point_id,
            name,
            kind,
            status,
            millis(now),
            ids.len() as i64,
            time_text(now),
            error
        ])
        .map_err(unavailable)?;
        let mut assign = tx
            .prepare_cached("UPDATE notifications SET delivery_id = ?1 WHERE id = ?2")
            .map_err(unavailable)?;
        for id in ids {
            assign
                .execute(params![delivery_id, id])
                .map_err(unavailable)?;
        }
    }
    Ok(())
}

const DELIVERY_COLUMNS: &str = "id, user_id, contact_point_id, contact_point, kind, status, \
     attempts, next_attempt_ms, last_error, receipt, items, subject, created, sent_at";

fn read_delivery(row: &rusqlite::Row) -> rusqlite::Result<Delivery> {
    let status: String = row.get(5)?;
    let sent_at: Option<String> = row.get(13)?;
    Ok(Delivery {
        id: row.get(0)?,
        user_id: row.get(1)?,
        contact_point_id: row.get(2)?,
        contact_point: row.get(3)?,
        kind: row.get(4)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Failed),
        attempts: row.get(6)?,
        next_attempt: from_millis(row.get(7)?)?,
        last_error: row.get(8)?,
        receipt: row.get(9)?,
        items: row.get(10)?,
        subject: row.get(11)?,
        created: parse_time(row.get(12)?)?,
        sent_at: sent_at.map(parse_time).transpose()?,
    })
}

fn delivery_items(connection: &Connection, delivery_id: &str) -> StoreResult<Vec<DeliveryItem>> {
    let mut statement = connection
        .prepare_cached(
            "SELECT id, alert_id, transition, alert FROM notifications WHERE delivery_id = ?1",
        )
        .map_err(unavailable)?;
    let rows = statement
        .query_map([delivery_id], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                DeliveryItem {
                    alert_id: row.get(1)?,
                    transition: row.get(2)?,
                    alert: read_json(row.get(3)?)?,
                },
            ))
        })
        .map_err(unavailable)?;
    let mut items = rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)?;
    // Sorted here, not by the query: `ORDER BY` made SQLite re-prepare it on every call.
    items.sort_unstable_by_key(|(id, _)| *id);
    Ok(items.into_iter().map(|(_, item)| item).collect())
}

/// The items of every delivery in `ids`, each delivery's in notification order: one query
/// for a whole claim.
fn items_of(connection: &Connection, ids: &[&str]) -> StoreResult<HashMap<String, Vec<JobItem>>> {
    let list = serde_json::to_string(ids).map_err(unavailable)?;
    let mut statement = connection
        .prepare_cached(
            "SELECT id, delivery_id, alert_id, transition, alert FROM notifications
             WHERE delivery_id IN (SELECT value FROM json_each(?1))",
        )
        .map_err(unavailable)?;
    let rows = statement
        .query_map([list], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                JobItem {
                    alert_id: row.get(2)?,
                    transition: row.get(3)?,
                    alert_json: row.get(4)?,
                },
            ))
        })
        .map_err(unavailable)?;
    let rows = rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)?;
    Ok(outbox::items_by_delivery(rows))
}

pub(super) fn take_deliveries(
    tx: &Connection,
    now: Timestamp,
    lease_until: Timestamp,
    limit: usize,
    hold: &DeliveryHold,
) -> StoreResult<Vec<DeliveryJob>> {
    gang(tx, now, hold)?;
    let due: Vec<Delivery> = {
        // In the index's order (`next_attempt_ms`, then rowid, which is creation order),
        // so SQLite sorts nothing and stops after `limit` rows; no bound `LIMIT` (see
        // the gang query).
        let mut statement = tx
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries
                 WHERE status IN ('pending', 'sending') AND next_attempt_ms <= ?1
                 ORDER BY next_attempt_ms, rowid"
            ))
            .map_err(unavailable)?;
        let rows = statement
            .query_map(params![millis(now)], read_delivery)
            .map_err(unavailable)?;
        rows.take(limit)
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?
    };
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let mut points: HashMap<String, Option<ContactPoint>> = HashMap::new();
    let mut claimed: Vec<(Delivery, ContactPoint)> = Vec::with_capacity(due.len());
    for mut delivery in due {
        if !points.contains_key(&delivery.contact_point_id) {
            let point = tx
                .prepare_cached(&format!(
                    "SELECT {CONTACT_COLUMNS} FROM contact_points WHERE id = ?1"
                ))
                .map_err(unavailable)?
                .query_row([&delivery.contact_point_id], read_contact)
                .optional()
                .map_err(unavailable)?;
            points.insert(delivery.contact_point_id.clone(), point);
        }
        let Some(contact_point) = points.get(&delivery.contact_point_id).cloned().flatten() else {
            tx.prepare_cached(
                "UPDATE deliveries SET status = 'failed', last_error = ?2 WHERE id = ?1",
            )
            .map_err(unavailable)?
            .execute(params![delivery.id, outbox::DELETED_POINT_ERROR])
            .map_err(unavailable)?;
            continue;
        };
        delivery.status = DeliveryStatus::Sending;
        delivery.next_attempt = lease_until;
        claimed.push((delivery, contact_point));
    }
    // One lease and one read of the items for the whole claim, not one each per delivery.
    let ids: Vec<&str> = claimed
        .iter()
        .map(|(delivery, _)| delivery.id.as_str())
        .collect();
    let list = serde_json::to_string(&ids).map_err(unavailable)?;
    tx.prepare_cached(
        "UPDATE deliveries SET status = 'sending', next_attempt_ms = ?2
         WHERE id IN (SELECT value FROM json_each(?1))",
    )
    .map_err(unavailable)?
    .execute(params![list, millis(lease_until)])
    .map_err(unavailable)?;
    let items = items_of(tx, &ids)?;
    Ok(outbox::jobs(claimed, items))
}

pub(super) fn finish_deliveries(tx: &Connection, results: &[FinishedDelivery]) -> StoreResult<()> {
    for result in results {
        let outcome = outbox::outcome_columns(result);
        let changed = tx
            .prepare_cached(
                "UPDATE deliveries SET status = ?2, attempts = attempts + 1,
                     last_error = COALESCE(?3, last_error), receipt = ?4, next_attempt_ms = ?5,
                     sent_at = ?6, subject = ?7
                 WHERE id = ?1 AND status = 'sending'",
            )
            .map_err(unavailable)?
            .execute(params![
                result.id,
                outcome.status,
                outcome.error,
                outcome.receipt,
                outcome.next_attempt_ms,
                outcome.sent_at.map(time_text),
                result.subject
            ])
            .map_err(unavailable)?;
        if changed == 0 {
            continue;
        }
        tx.prepare_cached(
            "INSERT INTO delivery_attempts (delivery_id, at, ok, detail) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(unavailable)?
        .execute(params![
            result.id,
            time_text(result.at),
            outcome.ok,
            outcome.detail
        ])
        .map_err(unavailable)?;
    }
    Ok(())
}

pub(super) fn list_deliveries(
    connection: &Connection,
    query: &DeliveryQuery,
) -> StoreResult<Vec<Delivery>> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries
             WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR id < ?3)
               AND (?4 IS NULL OR id IN (SELECT delivery_id FROM notifications WHERE alert_id = ?4))
             ORDER BY id DESC LIMIT ?5"
        ))
        .map_err(unavailable)?;
    let rows = statement
        .query_map(
            params![
                query.user_id,
                query.status.map(DeliveryStatus::as_str),
                query.before_id,
                query.alert_id,
                query.limit.max(1) as i64
            ],
            read_delivery,
        )
        .map_err(unavailable)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
}

pub(super) fn delivery(connection: &Connection, id: &str) -> StoreResult<Option<DeliveryRecord>> {
    let found = connection
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1"
        ))
        .map_err(unavailable)?
        .query_row([id], read_delivery)
        .optional()
        .map_err(unavailable)?;
    let Some(delivery) = found else {
        return Ok(None);
    };
    let mut statement = connection
        .prepare_cached(
            "SELECT at, ok, detail FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY id",
        )
        .map_err(unavailable)?;
    let attempts = statement
        .query_map([id], |row| {
            Ok(DeliveryAttempt {
                at: parse_time(row.get(0)?)?,
                ok: row.get(1)?,
                detail: row.get(2)?,
            })
        })
        .map_err(unavailable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)?;
    let items = delivery_items(connection, id)?;
    Ok(Some((delivery, attempts, items)))
}

pub(super) fn next_outbox_due(connection: &Connection) -> StoreResult<Option<Timestamp>> {
    // Asked each time the notifier goes idle (after every event at a trickle): a cached
    // statement, as planning this union on each call cost ~2% of the server's CPU at 200
    // events/s.
    let earliest: Option<i64> = connection
        .prepare_cached(
            "SELECT MIN(due) FROM (
                 SELECT MIN(due_ms) AS due FROM notifications WHERE delivery_id IS NULL
                 UNION ALL
                 SELECT MIN(next_attempt_ms) FROM deliveries WHERE status IN ('pending', 'sending')
                 UNION ALL
                 SELECT MIN(next_ms) FROM repeats)",
        )
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .map_err(unavailable)?;
    earliest.map(from_millis).transpose().map_err(unavailable)
}

pub(super) fn outbox_backlog(
    connection: &Connection,
    now: Timestamp,
) -> StoreResult<(u64, Option<Timestamp>)> {
    let (count, oldest): (i64, Option<i64>) = connection
        .prepare_cached(
            "SELECT COUNT(*), MIN(due) FROM (
                 SELECT due_ms AS due FROM notifications
                 WHERE delivery_id IS NULL AND due_ms <= ?1
                 UNION ALL
                 SELECT next_attempt_ms FROM deliveries
                 WHERE status = 'pending' AND next_attempt_ms <= ?1)",
        )
        .and_then(|mut statement| {
            statement.query_row([millis(now)], |row| Ok((row.get(0)?, row.get(1)?)))
        })
        .map_err(unavailable)?;
    let oldest = oldest.map(from_millis).transpose().map_err(unavailable)?;
    Ok((count.max(0) as u64, oldest))
}

// ---- offboarding ----

fn count(tx: &Connection, sql: &str, user_id: &str) -> StoreResult<u64> {
    tx.query_row(sql, [user_id], |row| row.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
        .map_err(unavailable)
}

pub(super) fn offboard_counts(tx: &Connection, user_id: &str) -> StoreResult<OffboardCounts> {
    const OWN_ALERTS: &str =
        "SELECT id FROM alerts WHERE subscription_id IN (SELECT id FROM subscriptions WHERE owner_user = ?1)";
    Ok(OffboardCounts {
        subscriptions: count(tx, "SELECT COUNT(*) FROM subscriptions WHERE owner_user = ?1", user_id)?,
        alerts: count(
            tx,
            &format!("SELECT COUNT(*) FROM ({OWN_ALERTS})"),
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
                 (SELECT id FROM subscriptions WHERE owner_user = ?1)",
            user_id,
        )?,
        policies: count(tx, "SELECT COUNT(*) FROM policies WHERE user_id = ?1", user_id)?,
        contact_points: count(tx, "SELECT COUNT(*) FROM contact_points WHERE user_id = ?1", user_id)?,
        pending_deliveries: count(
            tx,
            "SELECT COUNT(*) FROM deliveries WHERE user_id = ?1 AND status IN ('pending', 'sending')",
            user_id,
        )?,
        deliveries: count(tx, "SELECT COUNT(*) FROM deliveries WHERE user_id = ?1", user_id)?,
        notifications: count(tx, "SELECT COUNT(*) FROM notifications WHERE user_id = ?1", user_id)?,
        silences: count(tx, "SELECT COUNT(*) FROM silences WHERE user_id = ?1", user_id)?,
        tokens: count(tx, "SELECT COUNT(*) FROM tokens WHERE user_id = ?1", user_id)?,
        group_memberships: count(tx, "SELECT COUNT(*) FROM group_members WHERE user_id = ?1", user_id)?,
    })
}

pub(super) fn offboard_user(
    tx: &Connection,
    user_id: &str,
    dry_run: bool,
    actor: &str,
    now: Timestamp,
) -> StoreResult<OffboardCounts> {
    let name: String = tx
        .query_row("SELECT name FROM users WHERE id = ?1", [user_id], |row| {
            row.get(0)
        })
        .optional()
        .map_err(unavailable)?
        .ok_or(StoreError::NotFound)?;
    let counts = offboard_counts(tx, user_id)?;
    if dry_run {
        return Ok(counts);
    }
    // Notifications, repeats, attempts and history go with their parents (ON DELETE
    // CASCADE); the explicit deletes make the order plain. The tables that grow with
    // traffic go a chunk per statement (`delete_in_chunks`).
    for table in ["notifications", "repeats", "deliveries"] {
        super::delete_in_chunks(tx, table, "user_id = ?1", [user_id])?;
    }
    super::delete_subscriptions(tx, "owner_user = ?1", [user_id])?;
    for sql in [
        "DELETE FROM policies WHERE user_id = ?1",
        "DELETE FROM contact_points WHERE user_id = ?1",
        "DELETE FROM silences WHERE user_id = ?1",
        "DELETE FROM tokens WHERE user_id = ?1",
        "DELETE FROM web_sessions WHERE user_id = ?1",
        "DELETE FROM group_members WHERE user_id = ?1",
    ] {
        tx.execute(sql, [user_id]).map_err(unavailable)?;
    }
    // Other people's (group) alerts keep their history, without the person's name.
    tx.execute(
        "UPDATE alert_history SET actor = ?3 WHERE actor = ?1 OR actor = ?2",
        params![name, user_id, REMOVED_USER],
    )
    .map_err(unavailable)?;
    let touched: Vec<(String, String)> = {
        let mut statement = tx
            .prepare("SELECT id, body FROM alerts WHERE instr(body, ?1) > 0 OR instr(body, ?2) > 0")
            .map_err(unavailable)?;
        let rows = statement
            .query_map(params![name, user_id], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(unavailable)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)?
    };
    for (id, body) in touched {
        let mut alert: Alert = serde_json::from_str(&body).map_err(unavailable)?;
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
        tx.execute(
            "UPDATE alerts SET body = ?2 WHERE id = ?1",
            params![id, body],
        )
        .map_err(unavailable)?;
    }
    tx.execute("DELETE FROM users WHERE id = ?1", [user_id])
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

/// After a member leaves a group: their subscriptions of that group go (with their
/// alerts), and nothing more of the group's alerts is sent to them.
pub(super) fn leave_group(tx: &Connection, group_id: &str, user_id: &str) -> StoreResult<()> {
    super::delete_subscriptions(
        tx,
        "owner_user = ?1 AND owner_group = ?2",
        params![user_id, group_id],
    )?;
    tx.execute(
        "DELETE FROM notifications WHERE user_id = ?1 AND owner_group = ?2 AND (delivery_id IS NULL
             OR delivery_id IN (SELECT id FROM deliveries WHERE status IN ('pending', 'sending')))",
        params![user_id, group_id],
    )
    .map_err(unavailable)?;
    tx.execute(
        "DELETE FROM repeats WHERE user_id = ?1
             AND alert_id IN (SELECT id FROM alerts WHERE owner_group = ?2)",
        params![user_id, group_id],
    )
    .map_err(unavailable)?;
    // Deliveries left with nothing to say are dropped; the rest carry fewer items.
    tx.execute(
        "DELETE FROM deliveries WHERE user_id = ?1 AND status IN ('pending', 'sending')
             AND NOT EXISTS (SELECT 1 FROM notifications WHERE delivery_id = deliveries.id)",
        [user_id],
    )
    .map_err(unavailable)?;
    tx.execute(
        "UPDATE deliveries SET items = (SELECT COUNT(*) FROM notifications WHERE delivery_id = deliveries.id)
         WHERE user_id = ?1 AND status IN ('pending', 'sending')",
        [user_id],
    )
    .map_err(unavailable)?;
    Ok(())
}

pub(super) fn write_audit(tx: &Connection, record: &AuditRecord) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO audit (id, at, actor, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            record.id,
            time_text(record.at),
            record.actor,
            record.action,
            record.subject,
            record.detail.to_string()
        ],
    )
    .map_err(unavailable)?;
    Ok(())
}

pub(super) fn list_audit(connection: &Connection, limit: usize) -> StoreResult<Vec<AuditRecord>> {
    let mut statement = connection
        .prepare_cached(
            // Newest first by insertion (rowid): ULIDs of one millisecond are not ordered.
            "SELECT id, at, actor, action, subject, detail FROM audit ORDER BY rowid DESC LIMIT ?1",
        )
        .map_err(unavailable)?;
    let rows = statement
        .query_map([limit.max(1) as i64], |row| {
            Ok(AuditRecord {
                id: row.get(0)?,
                at: parse_time(row.get(1)?)?,
                actor: row.get(2)?,
                action: row.get(3)?,
                subject: row.get(4)?,
                detail: read_json(row.get(5)?)?,
            })
        })
        .map_err(unavailable)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
}
