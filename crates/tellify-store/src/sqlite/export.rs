//! Exporters' reads and positions: alert history in id order and one saved position per
//! exporter stream, so syslog export (and later exporters) resume after an outage or a
//! restart exactly where they stopped.

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use tellify_engine::alerts::HistoryEntry;

use super::{parse_time, read_json, time_text, unavailable, SqliteStore};
use crate::{LoggedAlertChange, StoreResult};

/// Positions per exporter stream, and `alert_history` rebuilt with `AUTOINCREMENT`.
///
/// Without `AUTOINCREMENT` SQLite gives a new row `max(id) + 1`, so after the newest rows
/// were deleted (a subscription removed, a user offboarded) an id an exporter has already
/// passed would be handed out again and its row never exported. The rebuild keeps every
/// id, so notifications that name their history row stay valid.
pub(super) const MIGRATION: &str = r#"
CREATE TABLE export_positions (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE alert_history_rebuilt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
INSERT INTO alert_history_rebuilt (id, alert_id, at, actor, action, detail)
    SELECT id, alert_id, at, actor, action, detail FROM alert_history;
DROP TABLE alert_history;
ALTER TABLE alert_history_rebuilt RENAME TO alert_history;
CREATE INDEX alert_history_alert ON alert_history(alert_id);
"#;

impl SqliteStore {
    pub(super) async fn read_alert_changes_after(
        &self,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<LoggedAlertChange>> {
        self.read(move |connection| alert_changes_after(connection, after, limit))
            .await
    }

    pub(super) async fn read_last_alert_change(&self) -> StoreResult<i64> {
        self.read(|connection| {
            connection
                .query_row(
                    "SELECT COALESCE(MAX(id), 0) FROM alert_history",
                    [],
                    |row| row.get(0),
                )
                .map_err(unavailable)
        })
        .await
    }

    pub(super) async fn read_export_position(&self, name: &str) -> StoreResult<Option<i64>> {
        let name = name.to_string();
        self.read(move |connection| {
            connection
                .query_row(
                    "SELECT position FROM export_positions WHERE name = ?1",
                    [name],
                    |row| row.get(0),
                )
                .optional()
                .map_err(unavailable)
        })
        .await
    }

    /// Durable on return (`synchronous = FULL`): a position is what decides whether a
    /// message is sent again after a crash.
    pub(super) async fn write_export_position(&self, name: &str, position: i64) -> StoreResult<()> {
        let name = name.to_string();
        let updated = time_text(Timestamp::now());
        self.write(move |transaction| {
            transaction
                .prepare_cached(
                    "INSERT INTO export_positions (name, position, updated) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET position = excluded.position,
                         updated = excluded.updated",
                )
                .map_err(unavailable)?
                .execute(params![name, position, updated])
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

fn alert_changes_after(
    connection: &Connection,
    after: i64,
    limit: usize,
) -> StoreResult<Vec<LoggedAlertChange>> {
    let mut statement = connection
        .prepare_cached(
            "SELECT h.id, h.at, h.actor, h.action, h.detail, a.body FROM alert_history h
             JOIN alerts a ON a.id = h.alert_id
             WHERE h.id > ?1 ORDER BY h.id LIMIT ?2",
        )
        .map_err(unavailable)?;
    let rows = statement
        .query_map(params![after, limit as i64], |row| {
            Ok(LoggedAlertChange {
                position: row.get(0)?,
                entry: HistoryEntry {
                    at: parse_time(row.get(1)?)?,
                    actor: row.get(2)?,
                    action: super::read_transition(row.get(3)?)?,
                    detail: read_json(row.get(4)?)?,
                },
                alert: read_json(row.get(5)?)?,
            })
        })
        .map_err(unavailable)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
}
