//! SQLite's side of the processing commit: [`ProcessingTx`] as plain SQL over the
//! writer's transaction. What to write is decided in [`crate::processing`]; nothing here
//! decides. Statements are cached (`prepare_cached`): the commit calls them once per row.
//!
//! The commit runs on the store's single writer thread, which every append and every
//! delivery claim also waits for, so in an alert storm (every event its own alert and
//! notification) this file is the server's hot path. Two things keep it short: an outbox
//! row is a single-row `INSERT .. VALUES` (an `INSERT .. SELECT` may write several rows,
//! so SQLite gave each one a statement journal, copying every page it touched), with the
//! contact point's existence asked once per transaction instead; and the alert body
//! serialized for the `alerts` row is reused for the outbox rows of the same alert. The
//! commit's batch methods (`save_alerts`, `append_histories`, ...) keep their defaults
//! here, one cached statement per row: in-process SQLite has no round trip to save.

use std::collections::HashMap;

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use tellify_engine::alerts::{Alert, HistoryEntry};
use tellify_model::StoredEvent;

use super::{health_text, insert_events, read_json, time_text, unavailable, EncodedEvents};
use crate::processing::{DueRepeat, ProcessingTx};
use crate::{
    Appended, ClaimRequest, DeliveryJob, FilterErrorUpdate, NewNotification, RepeatSchedule,
    StoreResult, SubscriptionHealth,
};

/// The writer's open transaction, seen as a [`ProcessingTx`].
pub(super) struct SqliteProcessing<'a> {
    connection: &'a Connection,
    /// Whether (contact point id, user id) exists, as asked in this transaction; nothing
    /// else writes while it is open, so the answer holds until it ends.
    contact_points: HashMap<(String, String), bool>,
    /// Whether a user exists, likewise.
    users: HashMap<String, bool>,
    /// The alerts saved in this transaction with their JSON bodies, by id: the outbox rows
    /// planned for the same alert carry the same body, and serializing it again cost as
    /// much as the rest of the row.
    bodies: HashMap<String, (Alert, String)>,
}

impl<'a> SqliteProcessing<'a> {
    pub(super) fn new(connection: &'a Connection) -> SqliteProcessing<'a> {
        SqliteProcessing {
            connection,
            contact_points: HashMap::new(),
            users: HashMap::new(),
            bodies: HashMap::new(),
        }
    }

    fn contact_point_exists(&mut self, contact_point_id: &str, user_id: &str) -> StoreResult<bool> {
        let key = (contact_point_id.to_string(), user_id.to_string());
        if let Some(found) = self.contact_points.get(&key) {
            return Ok(*found);
        }
        let found = self
            .connection
            .prepare_cached("SELECT 1 FROM contact_points WHERE id = ?1 AND user_id = ?2")
            .map_err(unavailable)?
            .exists(params![contact_point_id, user_id])
            .map_err(unavailable)?;
        self.contact_points.insert(key, found);
        Ok(found)
    }

    fn user_exists(&mut self, user_id: &str) -> StoreResult<bool> {
        if let Some(found) = self.users.get(user_id) {
            return Ok(*found);
        }
        let found = self
            .connection
            .prepare_cached("SELECT 1 FROM users WHERE id = ?1")
            .map_err(unavailable)?
            .exists([user_id])
            .map_err(unavailable)?;
        self.users.insert(user_id.to_string(), found);
        Ok(found)
    }

    /// The JSON of `alert`: the body saved in this transaction when it is the same alert.
    fn alert_json(&self, alert: &Alert) -> StoreResult<String> {
        match self.bodies.get(&alert.id) {
            Some((saved, body)) if saved == alert => Ok(body.clone()),
            _ => serde_json::to_string(alert).map_err(unavailable),
        }
    }
}

fn millis(time: Timestamp) -> i64 {
    time.as_millisecond()
}

impl ProcessingTx for SqliteProcessing<'_> {
    fn subscription_exists(&mut self, subscription_id: &str) -> StoreResult<bool> {
        self.connection
            .prepare_cached("SELECT 1 FROM subscriptions WHERE id = ?1")
            .map_err(unavailable)?
            .exists([subscription_id])
            .map_err(unavailable)
    }

    fn alert_by_key(
        &mut self,
        subscription_id: &str,
        group_key: &str,
    ) -> StoreResult<Option<Alert>> {
        self.connection
            .prepare_cached("SELECT body FROM alerts WHERE subscription_id = ?1 AND group_key = ?2")
            .map_err(unavailable)?
            .query_row(params![subscription_id, group_key], |row| {
                read_json(row.get(0)?)
            })
            .optional()
            .map_err(unavailable)
    }

    fn alert_by_id(&mut self, alert_id: &str) -> StoreResult<Option<Alert>> {
        self.connection
            .prepare_cached("SELECT body FROM alerts WHERE id = ?1")
            .map_err(unavailable)?
            .query_row([alert_id], |row| read_json(row.get(0)?))
            .optional()
            .map_err(unavailable)
    }

    fn save_alert(&mut self, alert: &Alert) -> StoreResult<()> {
        let body = serde_json::to_string(alert).map_err(unavailable)?;
        self.connection
            .prepare_cached(
                "INSERT INTO alerts (id, subscription_id, group_key, state, severity, cleared,
                                     owner_user, owner_group, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state,
                     severity = excluded.severity, cleared = excluded.cleared, body = excluded.body",
            )
            .map_err(unavailable)?
            .execute(params![
                alert.id,
                alert.subscription_id,
                alert.group_key,
                alert.state.as_str(),
                alert.severity.as_str(),
                alert.cleared,
                alert.owner_user,
                alert.owner_group,
                body
            ])
            .map_err(unavailable)?;
        self.bodies.insert(alert.id.clone(), (alert.clone(), body));
        Ok(())
    }

    fn append_history(&mut self, alert_id: &str, entry: &HistoryEntry) -> StoreResult<i64> {
        self.connection
            .prepare_cached(
                "INSERT INTO alert_history (alert_id, at, actor, action, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(unavailable)?
            .execute(params![
                alert_id,
                time_text(entry.at),
                entry.actor,
                entry.action.as_str(),
                entry.detail.to_string()
            ])
            .map_err(unavailable)?;
        Ok(self.connection.last_insert_rowid())
    }

    fn write_notifications(
        &mut self,
        notifications: &[NewNotification],
        now: Timestamp,
    ) -> StoreResult<usize> {
        if notifications.is_empty() {
            return Ok(0);
        }
        let created = time_text(now);
        let mut written = 0;
        for notification in notifications {
            if !self.contact_point_exists(&notification.contact_point_id, &notification.user_id)? {
                continue;
            }
            let alert = self.alert_json(&notification.alert)?;
            written += self
                .connection
                .prepare_cached(
                    "INSERT INTO notifications (idempotency_key, user_id, contact_point_id,
                         alert_id, owner_group, transition, due_ms, alert, created)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (idempotency_key) DO NOTHING",
                )
                .map_err(unavailable)?
                .execute(params![
                    notification.idempotency_key,
                    notification.user_id,
                    notification.contact_point_id,
                    notification.alert_id,
                    notification.alert.owner_group,
                    notification.transition,
                    millis(notification.due_at),
                    alert,
                    created
                ])
                .map_err(unavailable)?;
        }
        Ok(written)
    }

    fn schedule_repeats(&mut self, schedules: &[RepeatSchedule]) -> StoreResult<()> {
        if schedules.is_empty() {
            return Ok(());
        }
        for schedule in schedules {
            if !self.user_exists(&schedule.user_id)? {
                continue;
            }
            self.connection
                .prepare_cached(
                    "INSERT INTO repeats (alert_id, user_id, next_ms, every_ms)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (alert_id, user_id) DO UPDATE SET next_ms = excluded.next_ms,
                         every_ms = excluded.every_ms",
                )
                .map_err(unavailable)?
                .execute(params![
                    schedule.alert_id,
                    schedule.user_id,
                    millis(schedule.next_at),
                    schedule.every_ms
                ])
                .map_err(unavailable)?;
        }
        Ok(())
    }

    fn stop_repeats(&mut self, alert_id: &str) -> StoreResult<()> {
        self.connection
            .prepare_cached("DELETE FROM repeats WHERE alert_id = ?1")
            .map_err(unavailable)?
            .execute([alert_id])
            .map_err(unavailable)?;
        Ok(())
    }

    fn due_repeats(&mut self, now: Timestamp, limit: usize) -> StoreResult<Vec<DueRepeat>> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT alert_id, user_id, every_ms, count FROM repeats WHERE next_ms <= ?1
                 ORDER BY next_ms LIMIT ?2",
            )
            .map_err(unavailable)?;
        let rows = statement
            .query_map(params![millis(now), limit as i64], |row| {
                Ok(DueRepeat {
                    alert_id: row.get(0)?,
                    user_id: row.get(1)?,
                    every_ms: row.get(2)?,
                    count: row.get(3)?,
                })
            })
            .map_err(unavailable)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
    }

    fn drop_repeat(&mut self, alert_id: &str, user_id: &str) -> StoreResult<()> {
        self.connection
            .prepare_cached("DELETE FROM repeats WHERE alert_id = ?1 AND user_id = ?2")
            .map_err(unavailable)?
            .execute(params![alert_id, user_id])
            .map_err(unavailable)?;
        Ok(())
    }

    fn advance_repeat(
        &mut self,
        alert_id: &str,
        user_id: &str,
        next_at: Timestamp,
    ) -> StoreResult<()> {
        self.connection
            .prepare_cached(
                "UPDATE repeats SET next_ms = ?3, count = count + 1
                 WHERE alert_id = ?1 AND user_id = ?2",
            )
            .map_err(unavailable)?
            .execute(params![alert_id, user_id, millis(next_at)])
            .map_err(unavailable)?;
        Ok(())
    }

    fn save_handler_state(
        &mut self,
        subscription_id: &str,
        state: &serde_json::Value,
    ) -> StoreResult<()> {
        self.connection
            .prepare_cached(
                "INSERT INTO handler_state (subscription_id, state) VALUES (?1, ?2)
                 ON CONFLICT (subscription_id) DO UPDATE SET state = excluded.state",
            )
            .map_err(unavailable)?
            .execute(params![subscription_id, state.to_string()])
            .map_err(unavailable)?;
        Ok(())
    }

    fn save_health(
        &mut self,
        subscription_id: &str,
        health: Option<&SubscriptionHealth>,
        disable: bool,
    ) -> StoreResult<()> {
        self.connection
            .prepare_cached(
                "UPDATE subscriptions SET health = ?2,
                     enabled = CASE WHEN ?3 THEN 0 ELSE enabled END WHERE id = ?1",
            )
            .map_err(unavailable)?
            .execute(params![subscription_id, health_text(health), disable])
            .map_err(unavailable)?;
        Ok(())
    }

    fn add_filter_errors(&mut self, update: &FilterErrorUpdate) -> StoreResult<()> {
        let added = i64::try_from(update.count).unwrap_or(i64::MAX);
        self.connection
            .prepare_cached(
                "UPDATE subscriptions SET filter_errors = json_object(
                     'count', coalesce(json_extract(filter_errors, '$.count'), 0) + ?2,
                     'last_error', ?3, 'last_at', ?4) WHERE id = ?1",
            )
            .map_err(unavailable)?
            .execute(params![
                update.subscription_id,
                added,
                update.last_error,
                update.last_at.to_string()
            ])
            .map_err(unavailable)?;
        Ok(())
    }

    fn append_derived(&mut self, events: Vec<StoredEvent>) -> StoreResult<Vec<Appended>> {
        insert_events(self.connection, &EncodedEvents::encode(events)?)
    }

    fn save_cursor(&mut self, cursor: i64) -> StoreResult<()> {
        self.connection
            .prepare_cached("UPDATE processing SET cursor = ?1 WHERE id = 1")
            .map_err(unavailable)?
            .execute([cursor])
            .map_err(unavailable)?;
        Ok(())
    }

    /// The claim runs on the writer like every write: in the processing commit it costs no
    /// second transaction (no second hop to this thread, no second WAL commit).
    fn claim_deliveries(
        &mut self,
        request: &ClaimRequest,
    ) -> StoreResult<Option<Vec<DeliveryJob>>> {
        super::notify::take_deliveries(
            self.connection,
            request.now,
            request.lease_until,
            request.limit,
            &request.hold,
        )
        .map(Some)
    }
}
