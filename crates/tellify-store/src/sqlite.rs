//! The embedded store: one SQLite file in WAL mode.
//!
//! One writer thread owns the only write connection, so there is never a "database is
//! locked". Appends that arrive together are written in one transaction and one fsync
//! (group commit), each in its own savepoint so one failing batch does not fail the
//! others. Reads go to a small pool of read-only connections on blocking threads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tellify_engine::alerts::{Action, Alert, HistoryEntry};
use tellify_model::StoredEvent;
use tokio::sync::{mpsc, oneshot};

mod dashboard;
mod event_types;
mod export;
mod keyed;
mod links;
mod notify;
mod processing;
mod search;
mod sessions;

use self::processing::SqliteProcessing;

pub use notify::REMOVED_USER;

use crate::{
    AlertChange, AlertQuery, Appended, AuditRecord, ChartAggregate, ChartQuery, ClearedFilter,
    CommitOutcome, ContactPoint, Delivery, DeliveryHold, DeliveryJob, DeliveryQuery,
    DeliveryRecord, EventQuery, EventSearch, EventType, FinishedDelivery, Group, KeyedEventQuery,
    ListedEvent, NotifyDirectory, OffboardCounts, PlannerRef, PolicyRecord, ProcessingCommit,
    ProcessingSnapshot, SearchStep, Silence, Store, StoreError, StoreResult, Subscription,
    SubscriptionAlerts, Token, User, Viewer, WebSession,
};

/// Most append requests folded into one transaction.
const MAX_GROUP_REQUESTS: usize = 256;

/// The writer connection's page cache, in KiB (see [`SqliteStore::open`]).
const WRITER_CACHE_KIB: u32 = 16 * 1024;

/// The store's file inside its data directory.
pub const DATABASE_FILE: &str = "tellify.db";

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    time_ms INTEGER NOT NULL,
    producer TEXT,
    idempotency_key TEXT,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX events_idempotency ON events(producer, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_time ON events(time_ms);
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    email TEXT,
    timezone TEXT NOT NULL,
    admin INTEGER NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    params TEXT NOT NULL,
    owner_user TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    owner_group TEXT REFERENCES groups(id) ON DELETE CASCADE,
    enabled INTEGER NOT NULL,
    latching INTEGER NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE INDEX subscriptions_owner ON subscriptions(owner_user);
CREATE TABLE handler_state (
    subscription_id TEXT PRIMARY KEY REFERENCES subscriptions(id) ON DELETE CASCADE,
    state TEXT NOT NULL
);
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    group_key TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    cleared INTEGER NOT NULL,
    owner_user TEXT,
    owner_group TEXT,
    body TEXT NOT NULL,
    UNIQUE (subscription_id, group_key)
);
CREATE TABLE alert_history (
    id INTEGER PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX alert_history_alert ON alert_history(alert_id);
CREATE INDEX alerts_owner ON alerts(owner_user);
CREATE TABLE processing (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cursor INTEGER NOT NULL
);
INSERT INTO processing (id, cursor) VALUES (1, 0);
"#,
    notify::MIGRATION,
    event_types::MIGRATION,
    export::MIGRATION,
    // user_version 5: a subscription's health (failing, disabled for failing).
    "ALTER TABLE subscriptions ADD COLUMN health TEXT;",
    // user_version 6: optional token expiry.
    "ALTER TABLE tokens ADD COLUMN expires TEXT;",
    // user_version 7: the type index of event search.
    search::MIGRATION,
    // user_version 8: keyed lookups of the compatibility APIs.
    keyed::MIGRATION,
    // user_version 9: how often a subscription's filter failed on events.
    "ALTER TABLE subscriptions ADD COLUMN filter_errors TEXT;",
    // user_version 10: how a person likes to be called.
    "ALTER TABLE users ADD COLUMN display_name TEXT;",
    // user_version 11: dashboard passwords and sessions.
    sessions::MIGRATION,
    // user_version 12: the action links' signing key and used links.
    links::MIGRATION,
    // user_version 13: the dashboard's alert summaries (subscription state, acks, shelves).
    dashboard::MIGRATION,
];

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Prepared statements the writer connection keeps (see [`SqliteStore::open`]).
const WRITER_STATEMENT_CACHE: usize = 256;

/// How hard a transaction's commit waits for the disk.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// fsync on commit (`synchronous = FULL`): what producers and people are told is saved.
    Full,
    /// No fsync of its own (`synchronous = NORMAL`): survives a crash of the process, and the
    /// next full commit makes it durable too. Only for state that can be recomputed from the
    /// durable event log: the worker's processing results.
    Recomputable,
}

/// Events with their JSON bodies and dedup keys, encoded on the caller's thread so the
/// single writer thread only runs SQL.
struct EncodedEvents {
    events: Vec<StoredEvent>,
    bodies: Vec<String>,
    /// One per event; `None` for an event without a type.
    dedup_keys: Vec<Option<[u8; 32]>>,
}

impl EncodedEvents {
    fn encode(events: Vec<StoredEvent>) -> StoreResult<EncodedEvents> {
        let bodies = events
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        let dedup_keys = events.iter().map(crate::dedup_key).collect();
        Ok(EncodedEvents {
            events,
            bodies,
            dedup_keys,
        })
    }
}

enum Command {
    Append(EncodedEvents, oneshot::Sender<StoreResult<Vec<Appended>>>),
    Run(Job, Durability),
}

/// Switches the writer connection's `synchronous` mode when it differs.
fn set_durability(connection: &Connection, current: &mut Durability, wanted: Durability) {
    if *current == wanted {
        return;
    }
    let pragma = match wanted {
        Durability::Full => "PRAGMA synchronous = FULL",
        Durability::Recomputable => "PRAGMA synchronous = NORMAL",
    };
    match connection.execute_batch(pragma) {
        Ok(()) => *current = wanted,
        Err(error) => tracing::warn!(%error, "cannot change synchronous mode"),
    }
}

/// Events in log order, straight from the writer thread after each commit, so the worker
/// need not read back what was just written. Bounded: when the reader falls behind, batches
/// are dropped and the reader notices the gap and reads the store instead.
type FeedSender = mpsc::Sender<Vec<Arc<StoredEvent>>>;

#[derive(Clone, Default)]
struct Feed {
    sender: Arc<Mutex<Option<FeedSender>>>,
}

impl Feed {
    fn is_open(&self) -> bool {
        self.sender.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    fn send(&self, events: Vec<Arc<StoredEvent>>) {
        if events.is_empty() {
            return;
        }
        if let Ok(mut sender) = self.sender.lock() {
            let closed = match sender.as_ref() {
                Some(open) => matches!(
                    open.try_send(events),
                    Err(mpsc::error::TrySendError::Closed(_))
                ),
                None => false,
            };
            if closed {
                *sender = None;
            }
        }
    }
}

/// The SQLite implementation of [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    writer: mpsc::UnboundedSender<Command>,
    feed: Feed,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
}

/// Most rows one statement of [`delete_in_chunks`] deletes.
const DELETE_CHUNK: usize = 500;

/// Deletes the rows of `table` that `filter` (an SQL condition on `params`) selects, at
/// most [`DELETE_CHUNK`] per statement, inside the caller's transaction: as atomic as one
/// statement. SQLite keeps a statement journal of every page a statement changes, in
/// memory here (`temp_store = MEMORY`), until the statement ends: one `DELETE` of a
/// subscription whose cascade took its 100,000 alerts with their history and
/// notifications held 180 MB. Returns how many rows went.
fn delete_in_chunks<P: rusqlite::Params + Clone>(
    tx: &Connection,
    table: &str,
    filter: &str,
    params: P,
) -> StoreResult<usize> {
    let mut statement = tx
        .prepare_cached(&format!(
            "DELETE FROM {table} WHERE rowid IN
                 (SELECT rowid FROM {table} WHERE {filter} LIMIT {DELETE_CHUNK})"
        ))
        .map_err(unavailable)?;
    let mut deleted = 0;
    loop {
        let now = statement.execute(params.clone()).map_err(unavailable)?;
        deleted += now;
        if now < DELETE_CHUNK {
            return Ok(deleted);
        }
    }
}

/// Deletes the subscriptions `filter` selects with everything of theirs, their alerts a
/// chunk at a time first ([`delete_in_chunks`]); the rest (handler state, the alerts'
/// history, notifications and links) goes by cascade. Returns how many subscriptions went.
fn delete_subscriptions<P: rusqlite::Params + Clone>(
    tx: &Connection,
    filter: &str,
    params: P,
) -> StoreResult<usize> {
    delete_in_chunks(
        tx,
        "alerts",
        &format!("subscription_id IN (SELECT id FROM subscriptions WHERE {filter})"),
        params.clone(),
    )?;
    tx.execute(&format!("DELETE FROM subscriptions WHERE {filter}"), params)
        .map_err(unavailable)
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn conflict_or_unavailable(error: rusqlite::Error, what: &str) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(code, _)
            if code.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(format!("{what} already exists"))
        }
        _ => unavailable(error),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `tellify.db` in `directory` and brings the schema up
    /// to date.
    pub fn open(directory: &Path) -> StoreResult<SqliteStore> {
        std::fs::create_dir_all(directory).map_err(|error| {
            unavailable(format!(
                "cannot create data directory {}: {error}",
                directory.display()
            ))
        })?;
        let path = directory.join(DATABASE_FILE);
        let mut writer = Connection::open(&path).map_err(unavailable)?;
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 5000;
                 PRAGMA wal_autocheckpoint = 0;
                 PRAGMA journal_size_limit = 67108864;",
            )
            .map_err(unavailable)?;
        // The writer's page cache: SQLite's default of 2 MB is less than one processing
        // commit of an alert storm dirties (2,000 alerts, their history and outbox rows),
        // and a full cache spills pages to the WAL in the middle of the transaction and
        // reads them back. Savepoint journals (one per append request of a group commit)
        // stay in memory rather than in temporary files.
        writer
            .execute_batch(&format!(
                "PRAGMA cache_size = -{WRITER_CACHE_KIB}; PRAGMA temp_store = MEMORY;"
            ))
            .map_err(unavailable)?;
        migrate(&mut writer)?;
        // Every statement the writer runs is cached; rusqlite's default of 16 is fewer than
        // one alert-to-webhook pass uses, so statements were evicted and prepared again.
        writer.set_prepared_statement_cache_capacity(WRITER_STATEMENT_CACHE);
        let (sender, mut receiver) = mpsc::unbounded_channel::<Command>();
        let feed = Feed::default();
        let writer_feed = feed.clone();
        let finish_wal = Arc::new(AtomicBool::new(false));
        let writer_finish_wal = finish_wal.clone();
        std::thread::Builder::new()
            .name("tellify-sqlite-writer".to_string())
            .spawn(move || {
                let mut durability = Durability::Full;
                let mut pending: Option<Command> = None;
                loop {
                    let command = match pending.take() {
                        Some(command) => command,
                        None => match receiver.blocking_recv() {
                            Some(command) => command,
                            None => return,
                        },
                    };
                    match command {
                        Command::Run(job, wanted) => {
                            set_durability(&writer, &mut durability, wanted);
                            job(&mut writer)
                        }
                        Command::Append(events, reply) => {
                            set_durability(&writer, &mut durability, Durability::Full);
                            let mut group = vec![(events, reply)];
                            while group.len() < MAX_GROUP_REQUESTS {
                                match receiver.try_recv() {
                                    Ok(Command::Append(events, reply)) => {
                                        group.push((events, reply))
                                    }
                                    Ok(other) => {
                                        pending = Some(other);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            append_group(&mut writer, group, &writer_feed);
                        }
                    }
                    if writer_finish_wal.swap(false, Ordering::AcqRel) {
                        finish_checkpoint(&writer);
                    }
                }
            })
            .map_err(unavailable)?;
        start_checkpointer(&path, Arc::downgrade(&feed.sender), finish_wal)?;
        Ok(SqliteStore {
            writer: sender,
            feed,
            readers: Arc::new(Mutex::new(Vec::new())),
            path,
        })
    }

    /// Runs `job` on the writer thread in a transaction that is durable on return.
    async fn write<T, F>(&self, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> StoreResult<T> + Send + 'static,
    {
        self.write_with(Durability::Full, job).await
    }

    async fn write_with<T, F>(&self, durability: Durability, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let run: Job = Box::new(move |connection: &mut Connection| {
            let result = (|| {
                let transaction = begin(connection)?;
                let value = job(&transaction)?;
                transaction.commit().map_err(unavailable)?;
                Ok(value)
            })();
            let _ = reply.send(result);
        });
        self.writer
            .send(Command::Run(run, durability))
            .map_err(|_| unavailable("writer thread stopped"))?;
        answer
            .await
            .map_err(|_| unavailable("writer thread stopped"))?
    }

    /// Runs `job` on a pooled read connection on a blocking thread.
    async fn read<T, F>(&self, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let taken = readers.lock().map_err(unavailable)?.pop();
            let connection = match taken {
                Some(connection) => connection,
                None => {
                    let connection = Connection::open(&path).map_err(unavailable)?;
                    connection
                        .execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")
                        .map_err(unavailable)?;
                    connection
                }
            };
            let result = job(&connection);
            if let Ok(mut pool) = readers.lock() {
                if pool.len() < 8 {
                    pool.push(connection);
                }
            }
            result
        })
        .await
        .map_err(unavailable)?
    }
}

/// Copies the WAL back into the database on a thread of its own. Left to the writer (SQLite's
/// auto-checkpoint), a checkpoint of a large database stalls the commit that triggers it
/// for hundreds of milliseconds; a passive checkpoint here never blocks the writer. The
/// thread ends when the store is dropped (`alive` can no longer be upgraded).
///
/// SQLite starts the WAL over (writes its frames from the beginning of the file again) only
/// at a write transaction that finds every frame copied back, and under steady writes a
/// checkpoint on another connection never gets there: the writer commits again while it
/// copies. So once a passive checkpoint here took at most [`WAL_FINISH_AFTER`], it asks the
/// writer to copy what came in meanwhile itself, between two transactions
/// ([`finish_checkpoint`]), and the writer's next commit starts the WAL over. A WAL that
/// grows costs every commit: the file system allocates blocks for each new page, and an
/// fsync of a file that grew also writes its inode (measured here: fdatasync p50
/// 0.41–0.55 ms appending, 0.22–0.33 ms overwriting; docs/performance.md).
///
/// If the writer cannot finish (a reader still needs old frames), the WAL keeps growing, and
/// past [`WAL_RESTART_BYTES`] a RESTART checkpoint briefly holds the writer back to copy the
/// last frames and start the WAL afresh.
const WAL_RESTART_BYTES: u64 = 512 * 1024 * 1024;

/// The longest checkpoint round after which the writer copies the rest itself. The rest is
/// what the writer committed during that round, and copying it takes far less time than
/// the round did (at most 1 ms measured; docs/performance.md).
const WAL_FINISH_AFTER: std::time::Duration = std::time::Duration::from_millis(20);

/// Most checkpoint rounds in a row (see [`start_checkpointer`]).
const WAL_CATCH_UP_ROUNDS: usize = 8;

/// The writer's share of a checkpoint (see [`start_checkpointer`]): copies what the last
/// checkpoint left. Nothing else writes meanwhile, so unless a reader still needs old
/// frames every frame is copied, and the next write transaction starts the WAL over.
fn finish_checkpoint(connection: &Connection) {
    if let Err(error) = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(%error, "wal checkpoint on the writer failed");
    }
}

fn start_checkpointer<T: Send + Sync + 'static>(
    path: &Path,
    alive: std::sync::Weak<T>,
    finish_wal: Arc<AtomicBool>,
) -> StoreResult<()> {
    let connection = Connection::open(path).map_err(unavailable)?;
    connection
        .execute_batch("PRAGMA busy_timeout = 5000;")
        .map_err(unavailable)?;
    let mut wal_path = path.as_os_str().to_owned();
    wal_path.push("-wal");
    std::thread::Builder::new()
        .name("tellify-sqlite-checkpoint".to_string())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            if alive.upgrade().is_none() {
                return;
            }
            // A round copies what was committed before it began; the writer commits more
            // meanwhile. So rounds follow each other straight away until one is short: then
            // little came in during it, and the writer copies that rest itself.
            for _ in 0..WAL_CATCH_UP_ROUNDS {
                let wal_bytes = std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0);
                let pragma = if wal_bytes > WAL_RESTART_BYTES {
                    "PRAGMA wal_checkpoint(RESTART)"
                } else {
                    "PRAGMA wal_checkpoint(PASSIVE)"
                };
                let started = std::time::Instant::now();
                // The pragma answers (busy, frames in the WAL, frames copied back).
                let frames = connection.query_row(pragma, [], |row| {
                    Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
                });
                let (in_wal, copied) = match frames {
                    Ok(frames) => frames,
                    Err(error) => {
                        tracing::warn!(%error, "wal checkpoint failed");
                        break;
                    }
                };
                if in_wal <= 0 || copied < in_wal {
                    // Nothing written, or a reader still needs old frames: next time.
                    break;
                }
                if started.elapsed() <= WAL_FINISH_AFTER {
                    finish_wal.store(true, Ordering::Release);
                    break;
                }
            }
        })
        .map_err(unavailable)?;
    Ok(())
}

/// Brings a SQLite database to the current schema (also used by [`crate::migrate`]).
pub(crate) fn migrate(connection: &mut Connection) -> StoreResult<()> {
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(unavailable)?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let transaction = connection.transaction().map_err(unavailable)?;
        transaction.execute_batch(sql).map_err(unavailable)?;
        transaction
            .execute_batch(&format!("PRAGMA user_version = {}", index + 1))
            .map_err(unavailable)?;
        transaction.commit().map_err(unavailable)?;
    }
    Ok(())
}

/// Starts a write transaction holding the write lock from its first statement. A deferred
/// transaction whose first statement reads (a dedup lookup, an alert load) upgrades to a
/// write later, and if the WAL moved meanwhile (a checkpoint) SQLite answers "database is
/// locked" at once, without waiting on the busy timeout.
fn begin(connection: &mut Connection) -> StoreResult<Transaction<'_>> {
    connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(unavailable)
}

type AppendRequest = (EncodedEvents, oneshot::Sender<StoreResult<Vec<Appended>>>);

/// Writes several append requests in one transaction, each in a savepoint.
fn append_group(connection: &mut Connection, group: Vec<AppendRequest>, feed: &Feed) {
    let mut results: Vec<StoreResult<Vec<Appended>>> = Vec::with_capacity(group.len());
    let outcome = (|| -> StoreResult<()> {
        let mut transaction = begin(connection)?;
        for (encoded, _) in &group {
            let mut savepoint = transaction.savepoint().map_err(unavailable)?;
            match insert_events(&savepoint, encoded) {
                Ok(appended) => {
                    savepoint.commit().map_err(unavailable)?;
                    results.push(Ok(appended));
                }
                Err(error) => {
                    savepoint.rollback().map_err(unavailable)?;
                    results.push(Err(error));
                }
            }
        }
        transaction.set_drop_behavior(rusqlite::DropBehavior::Rollback);
        transaction.commit().map_err(unavailable)
    })();
    match outcome {
        Ok(()) => {
            let mut fed: Vec<Arc<StoredEvent>> = Vec::new();
            let want_feed = feed.is_open();
            for ((encoded, reply), result) in group.into_iter().zip(results) {
                if want_feed {
                    if let Ok(appended) = &result {
                        for (mut event, stored) in encoded.events.into_iter().zip(appended) {
                            if !stored.duplicate {
                                // A repeat reaches the worker as its first occurrence.
                                event.seq = stored.seq;
                                event.id.clone_from(&stored.id);
                                fed.push(Arc::new(event));
                            }
                        }
                    }
                }
                let _ = reply.send(result);
            }
            feed.send(fed);
        }
        Err(error) => {
            let message = error.to_string();
            for (_, reply) in group {
                let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
            }
        }
    }
}

/// Inserts events in order. An event of a type with a dedup interval whose key has an open
/// window (see `sqlite/event_types.rs`) becomes a repeat row of the window's first
/// occurrence; an already stored (producer, idempotency key) is a duplicate, and that
/// check wins over dedup because the repeat row carries the key too.
fn insert_events(connection: &Connection, encoded: &EncodedEvents) -> StoreResult<Vec<Appended>> {
    let events = &encoded.events;
    let mut insert = connection
        .prepare_cached(
            "INSERT INTO events (id, time_ms, producer, idempotency_key, body)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )
        .map_err(unavailable)?;
    let mut appended = Vec::with_capacity(events.len());
    for ((event, body), key) in events.iter().zip(&encoded.bodies).zip(&encoded.dedup_keys) {
        let dedup = match (key, event.event_type.as_deref()) {
            (Some(key), Some(name)) => {
                event_types::dedup_interval_ms(connection, name)?.map(|ms| (key, name, ms))
            }
            _ => None,
        };
        let sighted_ms = event.received.as_millisecond();
        if let Some((key, _, _)) = dedup {
            if let Some((original_seq, original_id)) =
                event_types::open_window(connection, key, sighted_ms)?
            {
                if let Some(seq) = event_types::insert_repeat(connection, event, original_seq)? {
                    appended.push(Appended {
                        id: original_id,
                        seq,
                        duplicate: false,
                        repeat: true,
                    });
                    continue;
                }
                appended.push(existing_event(connection, event)?);
                continue;
            }
        }
        let changed = insert
            .execute(params![
                event.id,
                event.time.as_millisecond(),
                event.source.producer,
                event.idempotency_key,
                body
            ])
            .map_err(unavailable)?;
        if changed == 1 {
            let seq = connection.last_insert_rowid();
            keyed::record_key(connection, event, seq)?;
            if let Some((key, name, interval_ms)) = dedup {
                let until_ms = sighted_ms.saturating_add(interval_ms);
                event_types::start_window(connection, key, name, seq, until_ms)?;
            }
            appended.push(Appended {
                id: event.id.clone(),
                seq,
                duplicate: false,
                repeat: false,
            });
            continue;
        }
        appended.push(existing_event(connection, event)?);
    }
    Ok(appended)
}

/// The stored event an event that was not inserted duplicates, by (producer, idempotency
/// key); a duplicate of a repeat answers with the first occurrence's id.
fn existing_event(connection: &Connection, event: &StoredEvent) -> StoreResult<Appended> {
    let existing: Option<(String, i64, bool)> = connection
        .prepare_cached(
            "SELECT COALESCE(o.id, e.id), e.seq, e.repeat_of IS NOT NULL FROM events e
             LEFT JOIN events o ON o.seq = e.repeat_of
             WHERE e.producer IS ?1 AND e.idempotency_key = ?2",
        )
        .map_err(unavailable)?
        .query_row(
            params![event.source.producer, event.idempotency_key],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()
        .map_err(unavailable)?;
    let Some((id, seq, repeat)) = existing else {
        return Err(StoreError::Conflict(format!(
            "event id {} already exists",
            event.id
        )));
    };
    Ok(Appended {
        id,
        seq,
        duplicate: true,
        repeat,
    })
}

fn read_event(row: &rusqlite::Row) -> rusqlite::Result<StoredEvent> {
    let seq: i64 = row.get(0)?;
    let body: String = row.get(1)?;
    let mut event: StoredEvent = serde_json::from_str(&body).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(error))
    })?;
    event.seq = seq;
    Ok(event)
}

/// An event row as the log presents it: a repeat (`repeat_of` set) is rebuilt from its
/// first occurrence. Columns: seq, body, first occurrence's body (or NULL).
fn read_logged_event(row: &rusqlite::Row) -> rusqlite::Result<StoredEvent> {
    let original: Option<String> = row.get(2)?;
    let Some(original) = original else {
        return read_event(row);
    };
    let seq: i64 = row.get(0)?;
    let occurrence: String = row.get(1)?;
    let first: StoredEvent = read_json(original)?;
    crate::event_types::rebuild_repeat(first, seq, &occurrence).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(error))
    })
}

/// A first occurrence with its repeat count. Columns: seq, body, repeat_count.
fn read_listed_event(row: &rusqlite::Row) -> rusqlite::Result<ListedEvent> {
    Ok(ListedEvent {
        event: read_event(row)?,
        repeat_count: row.get(2)?,
    })
}

fn time_text(time: Timestamp) -> String {
    time.to_string()
}

fn parse_time(text: String) -> rusqlite::Result<Timestamp> {
    text.parse().map_err(|error: jiff::Error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error))
    })
}

/// A history action as stored: the name of a [`tellify_engine::alerts::Transition`].
fn read_transition(text: String) -> rusqlite::Result<tellify_engine::alerts::Transition> {
    text.parse()
        .map_err(|error: tellify_engine::alerts::UnknownTransition| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                Box::new(error),
            )
        })
}

fn read_json<T: serde::de::DeserializeOwned>(text: String) -> rusqlite::Result<T> {
    serde_json::from_str(&text).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error))
    })
}

const USER_COLUMNS: &str = "id, name, email, timezone, admin, created, display_name";

fn read_user(row: &rusqlite::Row) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        name: row.get(1)?,
        email: row.get(2)?,
        timezone: row.get(3)?,
        admin: row.get(4)?,
        created: parse_time(row.get(5)?)?,
        display_name: row.get(6)?,
    })
}

const TOKEN_COLUMNS: &str = "id, user_id, name, scopes, hash, created, expires";

fn read_token(row: &rusqlite::Row) -> rusqlite::Result<Token> {
    Ok(Token {
        id: row.get(0)?,
        user_id: row.get(1)?,
        name: row.get(2)?,
        scopes: read_json(row.get(3)?)?,
        hash: row.get(4)?,
        created: parse_time(row.get(5)?)?,
        expires: row
            .get::<_, Option<String>>(6)?
            .map(parse_time)
            .transpose()?,
    })
}

const SUBSCRIPTION_COLUMNS: &str =
    "id, kind, title, params, owner_user, owner_group, enabled, latching, created, updated, policy, health, filter_errors";

fn health_text(health: Option<&crate::SubscriptionHealth>) -> Option<String> {
    health.map(|health| serde_json::json!(health).to_string())
}

fn read_subscription(row: &rusqlite::Row) -> rusqlite::Result<Subscription> {
    Ok(Subscription {
        id: row.get(0)?,
        kind: row.get(1)?,
        title: row.get(2)?,
        params: read_json(row.get(3)?)?,
        owner_user: row.get(4)?,
        owner_group: row.get(5)?,
        enabled: row.get(6)?,
        latching: row.get(7)?,
        created: parse_time(row.get(8)?)?,
        updated: parse_time(row.get(9)?)?,
        policy: row.get(10)?,
        // Unreadable health is dropped rather than failing every read of subscriptions.
        health: row
            .get::<_, Option<String>>(11)?
            .and_then(|text| serde_json::from_str(&text).ok()),
        filter_errors: row
            .get::<_, Option<String>>(12)?
            .and_then(|text| serde_json::from_str(&text).ok()),
    })
}

fn read_group(
    connection: &Connection,
    id: String,
    name: String,
    created: String,
) -> StoreResult<Group> {
    let mut statement = connection
        .prepare_cached(
            "SELECT users.name FROM group_members JOIN users ON users.id = group_members.user_id
             WHERE group_members.group_id = ?1 ORDER BY users.name",
        )
        .map_err(unavailable)?;
    let members = statement
        .query_map([&id], |row| row.get::<_, String>(0))
        .map_err(unavailable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)?;
    Ok(Group {
        id,
        name,
        members,
        created: parse_time(created).map_err(unavailable)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn follow_appends(&self) -> Option<crate::AppendFeed> {
        let (sender, receiver) = mpsc::channel(1024);
        let mut slot = self.feed.sender.lock().ok()?;
        *slot = Some(sender);
        Some(receiver)
    }

    async fn append_events(&self, events: Vec<StoredEvent>) -> StoreResult<Vec<Appended>> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Command::Append(EncodedEvents::encode(events)?, reply))
            .map_err(|_| unavailable("writer thread stopped"))?;
        answer
            .await
            .map_err(|_| unavailable("writer thread stopped"))?
    }

    async fn events_after(&self, after: i64, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        self.read(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT e.seq, e.body, o.body FROM events e
                     LEFT JOIN events o ON o.seq = e.repeat_of
                     WHERE e.seq > ?1 ORDER BY e.seq LIMIT ?2",
                )
                .map_err(unavailable)?;
            let rows = statement
                .query_map(params![after, limit as i64], read_logged_event)
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }

    async fn event_seq_range(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Option<(i64, i64)>> {
        self.read(move |connection| {
            connection
                .prepare_cached(
                    "SELECT MIN(seq), MAX(seq) FROM events WHERE time_ms >= ?1 AND time_ms < ?2",
                )
                .map_err(unavailable)?
                .query_row(
                    params![since.as_millisecond(), until.as_millisecond()],
                    |row| {
                        let first: Option<i64> = row.get(0)?;
                        let last: Option<i64> = row.get(1)?;
                        Ok(first.zip(last))
                    },
                )
                .map_err(unavailable)
        })
        .await
    }

    async fn query_events(&self, query: EventQuery) -> StoreResult<Vec<ListedEvent>> {
        self.read(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT seq, body, repeat_count FROM events
                     WHERE seq < ?1 AND time_ms >= ?2 AND time_ms < ?3 AND repeat_of IS NULL
                     ORDER BY seq DESC LIMIT ?4",
                )
                .map_err(unavailable)?;
            let before = query.before_seq.unwrap_or(i64::MAX);
            let since = query.since.map_or(i64::MIN, |t| t.as_millisecond());
            let until = query.until.map_or(i64::MAX, |t| t.as_millisecond());
            let rows = statement
                .query_map(
                    params![before, since, until, query.limit as i64],
                    read_listed_event,
                )
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }

    async fn search_events(&self, search: EventSearch) -> StoreResult<SearchStep> {
        self.read(move |connection| search::search(connection, &search))
            .await
    }

    async fn chart_events(&self, query: ChartQuery) -> StoreResult<ChartAggregate> {
        self.read(move |connection| dashboard::chart(connection, &query))
            .await
    }

    async fn keyed_events(&self, query: KeyedEventQuery) -> StoreResult<Vec<StoredEvent>> {
        self.read(move |connection| keyed::keyed_events(connection, &query))
            .await
    }

    async fn event(&self, id: &str) -> StoreResult<Option<ListedEvent>> {
        let id = id.to_string();
        self.read(move |connection| {
            connection
                .query_row(
                    "SELECT seq, body, repeat_count FROM events WHERE id = ?1 AND repeat_of IS NULL",
                    [id],
                    read_listed_event,
                )
                .optional()
                .map_err(unavailable)
        })
        .await
    }

    async fn last_seq(&self) -> StoreResult<i64> {
        self.read(|connection| {
            connection
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
                    row.get(0)
                })
                .map_err(unavailable)
        })
        .await
    }

    async fn create_user(&self, user: User) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                &format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    user.id,
                    user.name,
                    user.email,
                    user.timezone,
                    user.admin,
                    time_text(user.created),
                    user.display_name
                ],
            )
            .map_err(|e| conflict_or_unavailable(e, &format!("user `{}`", user.name)))?;
            Ok(())
        })
        .await
    }

    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>> {
        let name = name.to_string();
        self.read(move |connection| {
            connection
                .query_row(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
                    [name],
                    read_user,
                )
                .optional()
                .map_err(unavailable)
        })
        .await
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        let id = id.to_string();
        self.read(move |connection| {
            connection
                .query_row(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                    [id],
                    read_user,
                )
                .optional()
                .map_err(unavailable)
        })
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.read(|connection| {
            let mut statement = connection
                .prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
                .map_err(unavailable)?;
            let rows = statement.query_map([], read_user).map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }

    async fn update_user(&self, user: User, group_ids: Option<Vec<String>>) -> StoreResult<bool> {
        self.write(move |tx| {
            let updated = tx
                .execute(
                    "UPDATE users SET email = ?2, display_name = ?3, timezone = ?4, admin = ?5
                     WHERE id = ?1",
                    params![
                        user.id,
                        user.email,
                        user.display_name,
                        user.timezone,
                        user.admin
                    ],
                )
                .map_err(unavailable)?;
            if updated == 0 {
                return Ok(false);
            }
            let Some(wanted) = group_ids else {
                return Ok(true);
            };
            let current: Vec<String> = {
                let mut statement = tx
                    .prepare_cached("SELECT group_id FROM group_members WHERE user_id = ?1")
                    .map_err(unavailable)?;
                let rows = statement
                    .query_map([&user.id], |row| row.get::<_, String>(0))
                    .map_err(unavailable)?;
                rows.collect::<Result<_, _>>().map_err(unavailable)?
            };
            for group_id in current.iter().filter(|id| !wanted.contains(id)) {
                tx.execute(
                    "DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2",
                    params![group_id, user.id],
                )
                .map_err(unavailable)?;
                notify::leave_group(tx, group_id, &user.id)?;
            }
            for group_id in wanted.iter().filter(|id| !current.contains(id)) {
                tx.execute(
                    "INSERT INTO group_members (group_id, user_id) VALUES (?1, ?2)
                     ON CONFLICT DO NOTHING",
                    params![group_id, user.id],
                )
                .map_err(unavailable)?;
            }
            Ok(true)
        })
        .await
    }

    async fn create_group(&self, group: Group) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO groups (id, name, created) VALUES (?1, ?2, ?3)",
                params![group.id, group.name, time_text(group.created)],
            )
            .map_err(|e| conflict_or_unavailable(e, &format!("group `{}`", group.name)))?;
            Ok(())
        })
        .await
    }

    async fn group_by_name(&self, name: &str) -> StoreResult<Option<Group>> {
        let name = name.to_string();
        self.read(move |connection| {
            let row: Option<(String, String, String)> = connection
                .query_row(
                    "SELECT id, name, created FROM groups WHERE name = ?1",
                    [name],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(unavailable)?;
            row.map(|(id, name, created)| read_group(connection, id, name, created))
                .transpose()
        })
        .await
    }

    async fn list_groups(&self) -> StoreResult<Vec<Group>> {
        self.read(|connection| {
            let mut statement = connection
                .prepare("SELECT id, name, created FROM groups ORDER BY name")
                .map_err(unavailable)?;
            let rows: Vec<(String, String, String)> = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .map_err(unavailable)?
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            rows.into_iter()
                .map(|(id, name, created)| read_group(connection, id, name, created))
                .collect()
        })
        .await
    }

    async fn add_member(&self, group_id: &str, user_id: &str) -> StoreResult<()> {
        let (group_id, user_id) = (group_id.to_string(), user_id.to_string());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO group_members (group_id, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![group_id, user_id],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> StoreResult<bool> {
        let (group_id, user_id) = (group_id.to_string(), user_id.to_string());
        self.write(move |tx| {
            let removed = tx
                .execute(
                    "DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2",
                    params![group_id, user_id],
                )
                .map_err(unavailable)?;
            if removed == 1 {
                notify::leave_group(tx, &group_id, &user_id)?;
            }
            Ok(removed == 1)
        })
        .await
    }

    async fn groups_of(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let user_id = user_id.to_string();
        self.read(move |connection| {
            let mut statement = connection
                .prepare_cached("SELECT group_id FROM group_members WHERE user_id = ?1")
                .map_err(unavailable)?;
            let rows = statement
                .query_map([user_id], |row| row.get::<_, String>(0))
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }

    async fn create_token(&self, token: Token) -> StoreResult<()> {
        self.write(move |tx| {
            let scopes = serde_json::to_string(&token.scopes).map_err(unavailable)?;
            tx.execute(
                &format!(
                    "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    token.id,
                    token.user_id,
                    token.name,
                    scopes,
                    token.hash,
                    time_text(token.created),
                    token.expires.map(time_text)
                ],
            )
            .map_err(|e| conflict_or_unavailable(e, "token"))?;
            Ok(())
        })
        .await
    }

    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<Token>> {
        let hash = hash.to_string();
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1"
                ))
                .map_err(unavailable)?
                .query_row([hash], read_token)
                .optional()
                .map_err(unavailable)
        })
        .await
    }

    async fn token(&self, id: &str) -> StoreResult<Option<Token>> {
        let id = id.to_string();
        self.read(move |connection| {
            connection
                .query_row(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
                    [id],
                    read_token,
                )
                .optional()
                .map_err(unavailable)
        })
        .await
    }

    async fn list_tokens(&self, user_id: Option<&str>) -> StoreResult<Vec<Token>> {
        let user_id = user_id.map(str::to_string);
        self.read(move |connection| {
            let mut statement = connection
                .prepare(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE ?1 IS NULL OR user_id = ?1 ORDER BY id"
                ))
                .map_err(unavailable)?;
            let rows = statement.query_map([user_id], read_token).map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }

    async fn delete_token(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |tx| {
            let removed = tx
                .execute("DELETE FROM tokens WHERE id = ?1", [id])
                .map_err(unavailable)?;
            Ok(removed == 1)
        })
        .await
    }

    async fn set_password_hash(
        &self,
        user_id: &str,
        hash: Option<String>,
        keep_session: Option<String>,
    ) -> StoreResult<bool> {
        let user_id = user_id.to_string();
        self.write(move |tx| {
            sessions::set_password(tx, &user_id, hash.as_deref(), keep_session.as_deref())
        })
        .await
    }

    async fn password_hash(&self, user_id: &str) -> StoreResult<Option<String>> {
        let user_id = user_id.to_string();
        self.read(move |connection| sessions::password(connection, &user_id))
            .await
    }

    async fn create_web_session(&self, session: WebSession) -> StoreResult<()> {
        self.write(move |tx| sessions::create(tx, &session)).await
    }

    async fn web_session(&self, id_hash: &str, now: Timestamp) -> StoreResult<Option<WebSession>> {
        let id_hash = id_hash.to_string();
        self.read(move |connection| sessions::find(connection, &id_hash, now))
            .await
    }

    async fn touch_web_session(
        &self,
        id_hash: &str,
        seen: Timestamp,
        expires: Timestamp,
    ) -> StoreResult<bool> {
        let id_hash = id_hash.to_string();
        self.write(move |tx| sessions::touch(tx, &id_hash, seen, expires))
            .await
    }

    async fn delete_web_session(&self, id_hash: &str) -> StoreResult<bool> {
        let id_hash = id_hash.to_string();
        self.write(move |tx| sessions::delete(tx, &id_hash)).await
    }

    async fn delete_web_sessions_of(&self, user_id: &str) -> StoreResult<u64> {
        let user_id = user_id.to_string();
        self.write(move |tx| sessions::delete_of_user(tx, &user_id, None))
            .await
    }

    async fn prune_web_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        self.write(move |tx| sessions::prune(tx, now)).await
    }

    async fn insert_subscription(&self, subscription: Subscription) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                &format!("INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
                params![
                    subscription.id,
                    subscription.kind,
                    subscription.title,
                    subscription.params.to_string(),
                    subscription.owner_user,
                    subscription.owner_group,
                    subscription.enabled,
                    subscription.latching,
                    time_text(subscription.created),
                    time_text(subscription.updated),
                    subscription.policy,
                    health_text(subscription.health.as_ref()),
                    subscription
                        .filter_errors
                        .as_ref()
                        .map(|errors| serde_json::json!(errors).to_string())
                ],
            )
            .map_err(|e| conflict_or_unavailable(e, "subscription"))?;
            Ok(())
        })
        .await
    }

    async fn update_subscription(&self, subscription: Subscription) -> StoreResult<()> {
        self.write(move |tx| {
            let changed = tx
                .execute(
                    "UPDATE subscriptions SET kind = ?2, title = ?3, params = ?4, enabled = ?5,
                         latching = ?6, updated = ?7, policy = ?8, health = ?9,
                         filter_errors = CASE WHEN ?10 THEN filter_errors END WHERE id = ?1",
                    params![
                        subscription.id,
                        subscription.kind,
                        subscription.title,
                        subscription.params.to_string(),
                        subscription.enabled,
                        subscription.latching,
                        time_text(subscription.updated),
                        subscription.policy,
                        health_text(subscription.health.as_ref()),
                        subscription.filter_errors.is_some()
                    ],
                )
                .map_err(unavailable)?;
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn delete_subscription(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |tx| Ok(delete_subscriptions(tx, "id = ?1", [&id])? == 1))
            .await
    }

    async fn subscription(&self, id: &str) -> StoreResult<Option<Subscription>> {
        let id = id.to_string();
        self.read(move |connection| {
            connection
                .query_row(
                    &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?1"),
                    [id],
                    read_subscription,
                )
                .optional()
                .map_err(unavailable)
        })
        .await
    }

    async fn subscriptions_by_id(&self, ids: &[String]) -> StoreResult<Vec<Subscription>> {
        let ids = serde_json::to_string(ids).map_err(unavailable)?;
        self.read(move |connection| {
            let mut statement = connection
                .prepare(&format!(
                    "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions
                      WHERE id IN (SELECT value FROM json_each(?1))"
                ))
                .map_err(unavailable)?;
            let rows = statement
                .query_map([ids], read_subscription)
                .map_err(unavailable)?;
            rows.collect::<Result<_, _>>().map_err(unavailable)
        })
        .await
    }

    async fn list_subscriptions(&self, viewer: Option<&Viewer>) -> StoreResult<Vec<Subscription>> {
        let viewer = viewer.cloned();
        self.read(move |connection| {
            let mut statement = connection
                .prepare(&format!(
                    "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY id"
                ))
                .map_err(unavailable)?;
            let rows = statement
                .query_map([], read_subscription)
                .map_err(unavailable)?;
            let mut visible = Vec::new();
            for row in rows {
                let subscription = row.map_err(unavailable)?;
                if viewer
                    .as_ref()
                    .is_none_or(|v| v.can_see_subscription(&subscription))
                {
                    visible.push(subscription);
                }
            }
            Ok(visible)
        })
        .await
    }

    async fn alert(&self, id: &str) -> StoreResult<Option<Alert>> {
        let id = id.to_string();
        self.read(move |connection| {
            connection
                .query_row("SELECT body FROM alerts WHERE id = ?1", [id], |row| {
                    read_json(row.get(0)?)
                })
                .optional()
                .map_err(unavailable)
        })
        .await
    }

    async fn list_alerts(&self, query: AlertQuery) -> StoreResult<Vec<Alert>> {
        self.read(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT owner_user, owner_group, body FROM alerts
                     WHERE id < ?1 AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR subscription_id = ?3)
                       AND (?4 IS NULL OR severity = ?4) AND (?5 = 2 OR cleared = ?5)
                       AND (?6 IS NULL OR (owner_group IS NULL AND owner_user = ?6)
                            OR owner_group IN (SELECT group_id FROM group_members WHERE user_id = ?6))
                     ORDER BY id DESC",
                )
                .map_err(unavailable)?;
            let before = query.before_id.clone().unwrap_or_else(|| "~".to_string());
            let mut rows = statement
                .query(params![
                    before,
                    query.state.map(|s| s.as_str()),
                    query.subscription_id,
                    query.severity.map(|s| s.as_str()),
                    match query.cleared {
                        ClearedFilter::Exclude => 0,
                        ClearedFilter::Only => 1,
                        ClearedFilter::Include => 2,
                    },
                    query.viewer.as_ref().map(|viewer| viewer.user_id.as_str())
                ])
                .map_err(unavailable)?;
            let mut alerts = Vec::new();
            while let Some(row) = rows.next().map_err(unavailable)? {
                let owner_user: Option<String> = row.get(0).map_err(unavailable)?;
                let owner_group: Option<String> = row.get(1).map_err(unavailable)?;
                let allowed = query.viewer.as_ref().is_none_or(|viewer| {
                    viewer.can_see(owner_user.as_deref(), owner_group.as_deref())
                });
                if !allowed {
                    continue;
                }
                alerts.push(read_json(row.get(2).map_err(unavailable)?).map_err(unavailable)?);
                if alerts.len() >= query.limit {
                    break;
                }
            }
            Ok(alerts)
        })
        .await
    }

    async fn subscription_alerts(
        &self,
        viewer: Option<&Viewer>,
    ) -> StoreResult<Vec<SubscriptionAlerts>> {
        let viewer = viewer.cloned();
        self.read(move |connection| dashboard::subscription_alerts(connection, viewer.as_ref()))
            .await
    }

    async fn held_alerts(&self, actor: &str, viewer: Option<&Viewer>) -> StoreResult<Vec<Alert>> {
        let actor = actor.to_string();
        let viewer = viewer.cloned();
        self.read(move |connection| dashboard::held_alerts(connection, &actor, viewer.as_ref()))
            .await
    }

    async fn alert_history(&self, id: &str) -> StoreResult<Vec<HistoryEntry>> {
        let id = id.to_string();
        self.read(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT at, actor, action, detail FROM alert_history WHERE alert_id = ?1 ORDER BY id",
                )
                .map_err(unavailable)?;
            let rows = statement
                .query_map([id], |row| {
                    Ok(HistoryEntry {
                        at: parse_time(row.get(0)?)?,
                        actor: row.get(1)?,
                        action: read_transition(row.get(2)?)?,
                        detail: read_json(row.get(3)?)?,
                    })
                })
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }

    async fn act_on_alert(
        &self,
        id: &str,
        action: Action,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<AlertChange> {
        let (id, actor) = (id.to_string(), actor.to_string());
        self.write(move |tx| {
            crate::processing::act_on_alert(
                &mut SqliteProcessing::new(tx),
                &id,
                &action,
                &actor,
                now,
            )
        })
        .await
    }

    async fn load_processing(&self) -> StoreResult<ProcessingSnapshot> {
        self.read(|connection| {
            let cursor: i64 = connection
                .query_row("SELECT cursor FROM processing WHERE id = 1", [], |row| {
                    row.get(0)
                })
                .map_err(unavailable)?;
            let mut statement = connection
                .prepare("SELECT subscription_id, state FROM handler_state")
                .map_err(unavailable)?;
            let rows = statement
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, read_json(row.get(1)?)?))
                })
                .map_err(unavailable)?;
            let states: HashMap<String, serde_json::Value> =
                rows.collect::<Result<_, _>>().map_err(unavailable)?;
            Ok(ProcessingSnapshot { cursor, states })
        })
        .await
    }

    fn claims_in_processing_commit(&self) -> bool {
        true
    }

    async fn commit_processing(&self, commit: ProcessingCommit) -> StoreResult<CommitOutcome> {
        // Processing results are recomputable from the durable log: after an OS crash the
        // worker redoes them from the last durable cursor, atomically with the alerts.
        self.write_with(Durability::Recomputable, move |tx| {
            crate::processing::commit(&mut SqliteProcessing::new(tx), commit)
        })
        .await
    }

    async fn create_contact_point(&self, point: ContactPoint) -> StoreResult<()> {
        self.write(move |tx| notify::create_contact_point(tx, &point))
            .await
    }

    async fn list_contact_points(&self, user_id: &str) -> StoreResult<Vec<ContactPoint>> {
        let user_id = user_id.to_string();
        self.read(move |connection| notify::list_contact_points(connection, Some(&user_id)))
            .await
    }

    async fn contact_point(&self, user_id: &str, name: &str) -> StoreResult<Option<ContactPoint>> {
        let (user_id, name) = (user_id.to_string(), name.to_string());
        self.read(move |connection| notify::contact_point(connection, &user_id, &name))
            .await
    }

    async fn delete_contact_point(
        &self,
        user_id: &str,
        name: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (user_id, name) = (user_id.to_string(), name.to_string());
        self.write(move |tx| notify::delete_contact_point(tx, &user_id, &name, now))
            .await
    }

    async fn put_policy(&self, policy: PolicyRecord) -> StoreResult<bool> {
        self.write(move |tx| notify::put_policy(tx, &policy)).await
    }

    async fn list_policies(&self, user_id: &str) -> StoreResult<Vec<PolicyRecord>> {
        let user_id = user_id.to_string();
        self.read(move |connection| notify::list_policies(connection, Some(&user_id)))
            .await
    }

    async fn policy(&self, user_id: &str, name: &str) -> StoreResult<Option<PolicyRecord>> {
        let (user_id, name) = (user_id.to_string(), name.to_string());
        self.read(move |connection| notify::policy(connection, &user_id, &name))
            .await
    }

    async fn delete_policy(&self, user_id: &str, name: &str) -> StoreResult<bool> {
        let (user_id, name) = (user_id.to_string(), name.to_string());
        self.write(move |tx| notify::delete_policy(tx, &user_id, &name))
            .await
    }

    async fn create_silence(&self, silence: Silence) -> StoreResult<()> {
        self.write(move |tx| notify::create_silence(tx, &silence))
            .await
    }

    async fn list_silences(&self, user_id: &str) -> StoreResult<Vec<Silence>> {
        let user_id = user_id.to_string();
        self.read(move |connection| notify::list_silences(connection, Some(&user_id)))
            .await
    }

    async fn delete_silence(&self, user_id: &str, id: &str) -> StoreResult<bool> {
        let (user_id, id) = (user_id.to_string(), id.to_string());
        self.write(move |tx| notify::delete_silence(tx, &user_id, &id))
            .await
    }

    async fn notify_directory(&self) -> StoreResult<NotifyDirectory> {
        self.read(notify::notify_directory).await
    }

    async fn take_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
        hold: &DeliveryHold,
    ) -> StoreResult<Vec<DeliveryJob>> {
        let hold = hold.clone();
        // No fsync of its own: the claim only guards against a second sender in this
        // process. After an OS crash that loses it, the deliveries are simply due again,
        // and the outcome commit (which does fsync) makes the claim durable with it.
        self.write_with(Durability::Recomputable, move |tx| {
            notify::take_deliveries(tx, now, lease_until, limit, &hold)
        })
        .await
    }

    async fn finish_deliveries(&self, results: Vec<FinishedDelivery>) -> StoreResult<()> {
        if results.is_empty() {
            return Ok(());
        }
        self.write(move |tx| notify::finish_deliveries(tx, &results))
            .await
    }

    async fn list_deliveries(&self, query: DeliveryQuery) -> StoreResult<Vec<Delivery>> {
        self.read(move |connection| notify::list_deliveries(connection, &query))
            .await
    }

    async fn delivery(&self, id: &str) -> StoreResult<Option<DeliveryRecord>> {
        let id = id.to_string();
        self.read(move |connection| notify::delivery(connection, &id))
            .await
    }

    async fn plan_repeats(
        &self,
        now: Timestamp,
        planner: PlannerRef,
        limit: usize,
    ) -> StoreResult<usize> {
        // Like processing commits, repeats can be planned again from the durable alerts.
        self.write_with(Durability::Recomputable, move |tx| {
            crate::processing::plan_repeats(&mut SqliteProcessing::new(tx), now, &planner, limit)
        })
        .await
    }

    async fn next_outbox_due(&self) -> StoreResult<Option<Timestamp>> {
        self.read(notify::next_outbox_due).await
    }

    async fn outbox_backlog(&self, now: Timestamp) -> StoreResult<(u64, Option<Timestamp>)> {
        self.read(move |connection| notify::outbox_backlog(connection, now))
            .await
    }

    async fn offboard_user(
        &self,
        user_id: &str,
        dry_run: bool,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<OffboardCounts> {
        let (user_id, actor) = (user_id.to_string(), actor.to_string());
        self.write(move |tx| notify::offboard_user(tx, &user_id, dry_run, &actor, now))
            .await
    }

    async fn append_audit(&self, record: AuditRecord) -> StoreResult<()> {
        self.write(move |tx| notify::write_audit(tx, &record)).await
    }

    async fn list_audit(&self, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        self.read(move |connection| notify::list_audit(connection, limit))
            .await
    }

    async fn put_event_type(&self, event_type: EventType) -> StoreResult<bool> {
        self.write(move |tx| event_types::put_event_type(tx, &event_type))
            .await
    }

    async fn event_type(&self, name: &str) -> StoreResult<Option<EventType>> {
        let name = name.to_string();
        self.read(move |connection| event_types::event_type(connection, &name))
            .await
    }

    async fn list_event_types(&self) -> StoreResult<Vec<EventType>> {
        self.read(event_types::list_event_types).await
    }

    async fn delete_event_type(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_string();
        self.write(move |tx| event_types::delete_event_type(tx, &name))
            .await
    }

    async fn alert_changes_after(
        &self,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<crate::LoggedAlertChange>> {
        self.read_alert_changes_after(after, limit).await
    }

    async fn last_alert_change(&self) -> StoreResult<i64> {
        self.read_last_alert_change().await
    }

    async fn export_position(&self, name: &str) -> StoreResult<Option<i64>> {
        self.read_export_position(name).await
    }

    async fn save_export_position(&self, name: &str, position: i64) -> StoreResult<()> {
        self.write_export_position(name, position).await
    }

    async fn server_secret(&self, name: &str, fresh: Vec<u8>) -> StoreResult<Vec<u8>> {
        self.write_server_secret(name, fresh).await
    }

    async fn use_link(&self, nonce: &str, expires: Timestamp, now: Timestamp) -> StoreResult<bool> {
        self.write_used_link(nonce, expires, now).await
    }

    async fn release_link(&self, nonce: &str) -> StoreResult<()> {
        self.delete_used_link(nonce).await
    }

    async fn link_used(&self, nonce: &str) -> StoreResult<bool> {
        self.read_used_link(nonce).await
    }
}

/// For the tests that check which index a query uses: a freshly migrated in-memory
/// database and the `EXPLAIN QUERY PLAN` of a statement.
#[cfg(test)]
mod query_plans {
    use rusqlite::types::Value as SqlValue;
    use rusqlite::{params_from_iter, Connection};

    /// The plan's detail lines, joined by newlines; every parameter is bound to 1.
    pub(super) fn plan(connection: &Connection, sql: &str, parameters: usize) -> String {
        let values: Vec<SqlValue> = (0..parameters).map(|_| SqlValue::Integer(1)).collect();
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let rows = statement
            .query_map(params_from_iter(values.iter()), |row| {
                row.get::<_, String>(3)
            })
            .unwrap();
        rows.collect::<Result<Vec<_>, _>>().unwrap().join("\n")
    }

    /// An in-memory database with every migration applied.
    pub(super) fn migrated() -> Connection {
        let mut connection = Connection::open_in_memory().unwrap();
        super::migrate(&mut connection).unwrap();
        connection
    }
}
