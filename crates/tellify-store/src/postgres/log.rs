//! Events that reach PostgreSQL from an external event log (NATS JetStream, `--log`):
//! each logged batch is appended once, whoever appends it, because its message id (and
//! its position) is recorded in the same transaction (`log_applied`); and how far the log
//! has been checked for batches whose node died before appending them (`log_cursor`).
//!
//! The message id, not the position, is the key: positions start over when the stream is
//! made again, and a batch must never be taken for another one.

use jiff::Timestamp;
use tellify_model::StoredEvent;

use super::{millis, read_json, unavailable, PostgresStore, Sql};
use crate::{Appended, LogCursor, StoreResult};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE log_applied (
    message_id TEXT PRIMARY KEY,
    log_seq BIGINT NOT NULL,
    applied_ms BIGINT NOT NULL,
    results TEXT NOT NULL
);
CREATE INDEX log_applied_seq ON log_applied(log_seq);
CREATE INDEX log_applied_time ON log_applied(applied_ms);
CREATE TABLE log_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch TEXT NOT NULL,
    through BIGINT NOT NULL
);
"#;

pub(super) async fn append_logged(
    store: &PostgresStore,
    log_seq: i64,
    message_id: String,
    events: Vec<StoredEvent>,
) -> StoreResult<(Vec<Appended>, bool)> {
    store
        .write(move |tx| {
            // The row is taken first: a second appender of the same position waits here
            // for the first to commit (or roll back), holding nothing the first needs.
            let taken = tx
                .execute(
                    "INSERT INTO log_applied (message_id, log_seq, applied_ms, results)
                     VALUES ($1, $2, $3, '')
                     ON CONFLICT (message_id) DO NOTHING",
                    &[&message_id, &log_seq, &millis(Timestamp::now())],
                )
                .map_err(unavailable)?;
            if taken == 0 {
                let results: String = tx
                    .query_one(
                        "SELECT results FROM log_applied WHERE message_id = $1",
                        &[&message_id],
                    )
                    .map_err(unavailable)?
                    .get(0);
                return Ok((read_json(&results)?, false));
            }
            let appended = super::events::insert_events(tx, events)?;
            let results = serde_json::to_string(&appended).map_err(unavailable)?;
            tx.execute(
                "UPDATE log_applied SET results = $2 WHERE message_id = $1",
                &[&message_id, &results],
            )
            .map_err(unavailable)?;
            Ok((appended, true))
        })
        .await
}

pub(super) async fn logged(store: &PostgresStore, positions: Vec<i64>) -> StoreResult<Vec<i64>> {
    store
        .read(move |client| {
            let rows = client
                .query(
                    "SELECT log_seq FROM log_applied WHERE log_seq = ANY($1) ORDER BY log_seq",
                    &[&positions],
                )
                .map_err(unavailable)?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
        .await
}

pub(super) async fn log_cursor(store: &PostgresStore) -> StoreResult<Option<LogCursor>> {
    store
        .read(|client| {
            Ok(client
                .query_opt("SELECT epoch, through FROM log_cursor WHERE id = 1", &[])
                .map_err(unavailable)?
                .map(|row| LogCursor {
                    epoch: row.get(0),
                    through: row.get(1),
                }))
        })
        .await
}

pub(super) async fn open_log(
    store: &PostgresStore,
    epoch: &str,
    start: i64,
) -> StoreResult<LogCursor> {
    let epoch = epoch.to_string();
    store
        .write(move |tx| {
            let current = tx
                .query_opt(
                    "SELECT epoch, through FROM log_cursor WHERE id = 1 FOR UPDATE",
                    &[],
                )
                .map_err(unavailable)?
                .map(|row| LogCursor {
                    epoch: row.get(0),
                    through: row.get(1),
                });
            if let Some(cursor) = current.filter(|cursor| cursor.epoch == epoch) {
                return Ok(cursor);
            }
            // A new log: the positions recorded belong to the old one.
            tx.execute("DELETE FROM log_applied", &[])
                .map_err(unavailable)?;
            tx.execute(
                "INSERT INTO log_cursor (id, epoch, through) VALUES (1, $1, $2)
                 ON CONFLICT (id) DO UPDATE SET epoch = EXCLUDED.epoch, through = EXCLUDED.through",
                &[&epoch, &start],
            )
            .map_err(unavailable)?;
            Ok(LogCursor {
                epoch,
                through: start,
            })
        })
        .await
}

pub(super) async fn save_log_cursor(
    store: &PostgresStore,
    cursor: LogCursor,
    forget_before: Timestamp,
) -> StoreResult<()> {
    store
        .write(move |tx| {
            let moved = tx
                .execute(
                    "UPDATE log_cursor SET through = $2 WHERE id = 1 AND epoch = $1 AND through < $2",
                    &[&cursor.epoch, &cursor.through],
                )
                .map_err(unavailable)?;
            if moved > 0 {
                tx.execute(
                    "DELETE FROM log_applied WHERE log_seq <= $1 AND applied_ms < $2",
                    &[&cursor.through, &millis(forget_before)],
                )
                .map_err(unavailable)?;
            }
            Ok(())
        })
        .await
}
