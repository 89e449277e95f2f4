//! The PostgreSQL store, for several tellify nodes on one database.
//!
//! Every node talks to the same database through a small pool of connections; each store
//! call runs on a blocking thread with one pooled connection (the synchronous `postgres`
//! client, so the backend-neutral [`crate::processing`] runs over a PostgreSQL
//! transaction exactly as it does over SQLite's). Writes are one transaction each.
//!
//! Two orders must hold across nodes, because readers resume after the last position they
//! saw: event positions (`events.seq`) and alert-change positions (`alert_history.id`)
//! must become visible in the order they were given out. A transaction that inserts
//! events first takes the advisory lock [`LOCK_EVENTS`]; one that inserts history takes
//! [`LOCK_HISTORY`]; one that needs both takes them in that order. Each is held until the
//! commit, so no position commits after a higher one.
//!
//! Schema changes run under a session advisory lock ([`LOCK_MIGRATE`]): when several
//! nodes start at once, one migrates and the others wait, then find nothing left to do.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use postgres::error::SqlState;
use postgres::{Client, NoTls, Row};
use tellify_engine::alerts::{Action, Alert, HistoryEntry};
use tellify_model::StoredEvent;

mod alerts;
mod events;
mod log;
mod notify;
#[cfg(test)]
mod plans;
mod session;
pub mod testing;

pub(crate) use session::{Session, Sql, Tx};

pub use postgres::Config;

use crate::{
    AlertChange, AlertQuery, Announced, Announcement, Appended, AuditRecord, ChartAggregate,
    ChartQuery, CommitOutcome, ContactPoint, Delivery, DeliveryHold, DeliveryJob, DeliveryQuery,
    DeliveryRecord, EventQuery, EventSearch, EventType, FinishedDelivery, Group, KeyedEventQuery,
    ListedEvent, LoggedAlertChange, NotifyDirectory, OffboardCounts, PlannerRef, PolicyRecord,
    ProcessingCommit, ProcessingSnapshot, SearchStep, Silence, Store, StoreError, StoreResult,
    Subscription, SubscriptionAlerts, Token, User, Viewer, WebSession,
};

/// Advisory lock held while the schema is brought up to date.
pub(crate) const LOCK_MIGRATE: i32 = 1;
/// The first half of every advisory lock's key: the schema's, so installations (and
/// test schemas) that share a database never wait for each other's locks.
const SCHEMA_KEY: &str = "hashtext(coalesce(current_schema(), ''))";
/// Advisory transaction lock taken before inserting into `events`.
pub(crate) const LOCK_EVENTS: i32 = 2;
/// Advisory transaction lock taken before inserting into `alert_history`.
pub(crate) const LOCK_HISTORY: i32 = 3;

/// Most connections one node keeps to the database.
const POOL_SIZE: u32 = 8;

/// How long a store call waits for a free connection before it fails as unavailable.
const POOL_WAIT: Duration = Duration::from_secs(10);

type Pool = r2d2::Pool<session::Manager>;

/// How long PostgreSQL lets one of this node's sessions sit inside an open transaction
/// between statements before it ends the session. A node that stops mid-transaction
/// (SIGSTOP, a frozen VM, a long pause) would otherwise keep its locks — the append lock
/// [`LOCK_EVENTS`] among them — and stop ingest on every node until it resumes; with this,
/// the others wait at most this long, and the paused node's transaction fails and is
/// retried. Every transaction here runs its statements back to back, far inside it.
const IDLE_IN_TRANSACTION: &str = "5s";

/// The core tables: people, groups, tokens, sessions, subscriptions, handler state, the
/// processing cursor, server secrets and used links.
const CORE_SCHEMA: &str = r#"
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    email TEXT,
    timezone TEXT NOT NULL,
    admin BOOLEAN NOT NULL,
    created TEXT NOT NULL,
    display_name TEXT,
    password_hash TEXT
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
CREATE INDEX group_members_user ON group_members(user_id);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    expires TEXT
);
CREATE INDEX tokens_user ON tokens(user_id);
CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    seen_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions(user_id);
CREATE INDEX web_sessions_expires ON web_sessions(expires_ms);
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    params TEXT NOT NULL,
    owner_user TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    owner_group TEXT REFERENCES groups(id) ON DELETE CASCADE,
    enabled BOOLEAN NOT NULL,
    latching BOOLEAN NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    policy TEXT,
    health TEXT,
    filter_errors TEXT
);
CREATE INDEX subscriptions_owner ON subscriptions(owner_user);
CREATE INDEX subscriptions_group ON subscriptions(owner_group);
CREATE TABLE handler_state (
    subscription_id TEXT PRIMARY KEY REFERENCES subscriptions(id) ON DELETE CASCADE,
    state TEXT NOT NULL
);
CREATE TABLE processing (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cursor BIGINT NOT NULL
);
INSERT INTO processing (id, cursor) VALUES (1, 0);
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE TABLE used_links (
    nonce TEXT PRIMARY KEY,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX used_links_expires ON used_links(expires_ms);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    fence BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
"#;

/// A counter every change to what the processing node keeps in memory bumps, in the
/// changing transaction (triggers, so no write path can forget it): subscriptions (not
/// their health or filter error records, which processing itself writes), people and
/// memberships, contact points, policies and silences. The processing node reads it with
/// each batch ([`Store::settings_generation`]) and rereads what changed, so an event
/// appended after a change committed is processed with the change, whichever node took
/// either.
const SETTINGS_GENERATION_SCHEMA: &str = r#"
CREATE TABLE settings_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO settings_generation (id, generation) VALUES (1, 0);
CREATE FUNCTION tellify_settings_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE settings_generation SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER subscriptions_changed
    AFTER INSERT OR DELETE OR UPDATE OF kind, title, params, owner_user, owner_group,
        enabled, latching, policy
    ON subscriptions FOR EACH STATEMENT EXECUTE FUNCTION tellify_settings_changed();
CREATE TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION tellify_settings_changed();
CREATE TRIGGER group_members_changed AFTER INSERT OR UPDATE OR DELETE ON group_members
    FOR EACH STATEMENT EXECUTE FUNCTION tellify_settings_changed();
CREATE TRIGGER contact_points_changed AFTER INSERT OR UPDATE OR DELETE ON contact_points
    FOR EACH STATEMENT EXECUTE FUNCTION tellify_settings_changed();
CREATE TRIGGER policies_changed AFTER INSERT OR UPDATE OR DELETE ON policies
    FOR EACH STATEMENT EXECUTE FUNCTION tellify_settings_changed();
CREATE TRIGGER silences_changed AFTER INSERT OR UPDATE OR DELETE ON silences
    FOR EACH STATEMENT EXECUTE FUNCTION tellify_settings_changed();
"#;

/// The schema versions, in order; each runs once, in a transaction of its own. Version 1
/// is every module's tables (core, events, alerts, notifications), in that order for the
/// foreign keys, and the settings generation's triggers on them. Version 2 is what an
/// external event log needs ([`log`]).
fn migrations() -> Vec<String> {
    vec![
        [
            CORE_SCHEMA,
            events::SCHEMA,
            alerts::SCHEMA,
            notify::SCHEMA,
            SETTINGS_GENERATION_SCHEMA,
        ]
        .concat(),
        log::SCHEMA.to_string(),
        events::append_function(),
    ]
}

/// The schema version this build migrates to.
pub fn schema_version() -> usize {
    migrations().len()
}

/// The PostgreSQL implementation of [`Store`].
#[derive(Clone)]
pub struct PostgresStore {
    pool: Arc<PoolHolder>,
    /// Where the database is, for the announcement listener's own connection.
    config: postgres::Config,
    /// The channel this schema's announcements travel on ([`announcement_channel`]).
    channel: Arc<str>,
    /// Statements the pool's sessions ran ([`PostgresStore::statements_run`]).
    statements_run: Arc<std::sync::atomic::AtomicU64>,
}

/// The pool, closed on a plain thread when the last store handle goes: closing a
/// synchronous client blocks on its own runtime, which panics on a tokio runtime's thread.
struct PoolHolder(Option<Pool>);

impl Drop for PoolHolder {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            let closing = std::thread::Builder::new()
                .name("tellify-postgres-close".to_string())
                .spawn(move || drop(pool));
            if let Err(error) = closing {
                tracing::warn!(%error, "cannot close the PostgreSQL connections");
            }
        }
    }
}

pub(crate) fn unavailable(error: impl Cause) -> StoreError {
    StoreError::Unavailable(error.describe())
}

/// Something that made a store call fail, in words for the operator: a database error
/// with PostgreSQL's own message and code (its `Display` says only "db error").
pub(crate) trait Cause {
    fn describe(&self) -> String;
}

impl Cause for postgres::Error {
    fn describe(&self) -> String {
        match self.as_db_error() {
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => match std::error::Error::source(self) {
                Some(source) => format!("{self}: {source}"),
                None => self.to_string(),
            },
        }
    }
}

macro_rules! displayed_cause {
    ($($type:ty),*) => {
        $(impl Cause for $type {
            fn describe(&self) -> String {
                self.to_string()
            }
        })*
    };
}

displayed_cause!(
    String,
    &str,
    r2d2::Error,
    tokio::task::JoinError,
    serde_json::Error,
    jiff::Error,
    std::num::TryFromIntError
);

/// A unique violation as a conflict naming `what`; anything else as unavailable.
pub(crate) fn conflict_or_unavailable(error: postgres::Error, what: &str) -> StoreError {
    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        StoreError::Conflict(format!("{what} already exists"))
    } else {
        unavailable(error)
    }
}

/// A time as the store keeps it in text columns (RFC 3339, as SQLite does).
pub(crate) fn time_text(time: Timestamp) -> String {
    time.to_string()
}

pub(crate) fn parse_time(text: &str) -> StoreResult<Timestamp> {
    text.parse()
        .map_err(|error: jiff::Error| unavailable(format!("stored time `{text}`: {error}")))
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|error| unavailable(format!("stored JSON: {error}")))
}

/// Milliseconds since the epoch, for the `_ms` columns.
pub(crate) fn millis(time: Timestamp) -> i64 {
    time.as_millisecond()
}

pub(crate) fn from_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Takes an advisory lock until the end of the transaction (see the module documentation).
pub(crate) fn lock(tx: &mut Tx<'_>, key: i32) -> StoreResult<()> {
    tx.execute(
        &format!("SELECT pg_advisory_xact_lock({SCHEMA_KEY}, $1)"),
        &[&key],
    )
    .map_err(unavailable)?;
    Ok(())
}

/// Fails with a conflict, before anything is written, when `lease` is no longer held as
/// it was taken: another node took it over (a higher fencing number) while this one was
/// paused or cut off. Locks the lease's row until the commit, so a takeover waits for
/// this transaction and the next holder sees what it wrote. Then takes the advisory lock
/// `then_lock`, if any ([`lock`]), in the same round trip: the lease's row first, as
/// when they were two statements.
pub(crate) fn check_fence(
    tx: &mut Tx<'_>,
    lease: Option<&crate::LeaseFence>,
    then_lock: Option<i32>,
) -> StoreResult<()> {
    let Some(lease) = lease else {
        return match then_lock {
            Some(key) => lock(tx, key),
            None => Ok(()),
        };
    };
    let row = match then_lock {
        // MATERIALIZED: the row is locked before the outer query takes the advisory lock.
        Some(key) => tx.query_opt(
            &format!(
                "WITH held AS MATERIALIZED (
                     SELECT holder, fence FROM leases WHERE name = $1 FOR UPDATE)
                 SELECT holder, fence, pg_advisory_xact_lock({SCHEMA_KEY}, $2)::text FROM held"
            ),
            &[&lease.name, &key],
        ),
        None => tx.query_opt(
            "SELECT holder, fence FROM leases WHERE name = $1 FOR UPDATE",
            &[&lease.name],
        ),
    }
    .map_err(unavailable)?;
    let current = row.map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)));
    if current.as_ref() != Some(&(lease.holder.clone(), lease.fence)) {
        return Err(StoreError::Conflict(format!(
            "the `{}` lease passed to another node (fencing number {} is stale)",
            lease.name, lease.fence
        )));
    }
    Ok(())
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`,
    /// or libpq's `key=value` form) and brings the schema up to date. Blocks: call it from
    /// a blocking thread, or use [`PostgresStore::open`].
    pub fn connect(url: &str) -> StoreResult<PostgresStore> {
        let config: postgres::Config = url
            .parse()
            .map_err(|error| unavailable(format!("invalid PostgreSQL address: {error}")))?;
        let mut migrator = config.connect(NoTls).map_err(|error| {
            unavailable(format!(
                "cannot connect to PostgreSQL: {}",
                error.describe()
            ))
        })?;
        migrate(&mut migrator)?;
        let schema: Option<String> = migrator
            .query_one("SELECT current_schema()", &[])
            .map_err(unavailable)?
            .get(0);
        let channel = announcement_channel(schema.as_deref().unwrap_or("public"));
        drop(migrator);
        let manager = session::Manager::new(
            config.clone(),
            // Sessions keep their prepared statements (session.rs); a custom plan for each
            // execution keeps the plans that PostgreSQL picks for the values at hand, as
            // when every call prepared its statement afresh (a generic plan cannot drop
            // the `$1 IS NULL OR …` arms of the list queries).
            format!(
                "SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}';
                 SET plan_cache_mode = force_custom_plan"
            ),
        );
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(POOL_WAIT)
            // Sessions are checked only after sitting idle (session.rs), not on every
            // checkout: that check was one more round trip per store call.
            .test_on_check_out(false);
        let statements_run = manager.statements_run();
        let pool = pool
            .build(manager)
            .map_err(|error| unavailable(format!("cannot connect to PostgreSQL: {error}")))?;
        Ok(PostgresStore {
            pool: Arc::new(PoolHolder(Some(pool))),
            config,
            channel: channel.into(),
            statements_run,
        })
    }

    /// [`PostgresStore::connect`] on a blocking thread.
    pub async fn open(url: &str) -> StoreResult<PostgresStore> {
        let url = url.to_string();
        tokio::task::spawn_blocking(move || PostgresStore::connect(&url))
            .await
            .map_err(unavailable)?
    }

    /// How many statements this store's sessions have run so far, each one round trip
    /// (transaction control not counted): for tests and diagnostics.
    pub fn statements_run(&self) -> u64 {
        self.statements_run
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The SQL of the statements one pooled session has prepared and keeps (the session a
    /// call made just before this one used): for tests and diagnostics.
    pub async fn prepared_statements(&self) -> StoreResult<Vec<String>> {
        self.read(|session| {
            let rows = session
                .query(
                    "SELECT statement FROM pg_prepared_statements ORDER BY statement",
                    &[],
                )
                .map_err(unavailable)?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
        .await
    }

    /// Runs `job` with a pooled connection on a blocking thread.
    pub(crate) async fn read<T, F>(&self, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Session) -> StoreResult<T> + Send + 'static,
    {
        let holder = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let pool = holder
                .0
                .as_ref()
                .ok_or_else(|| unavailable("the store is closed"))?;
            // A session found dropped goes back broken (the pool closes it and opens
            // another); after as many tries as the pool has sessions, the next one is used
            // as it is, so a database that is down fails the call rather than loops.
            let mut session = pool.get().map_err(unavailable)?;
            for _ in 0..POOL_SIZE {
                if session.usable() {
                    break;
                }
                drop(session);
                session = pool.get().map_err(unavailable)?;
            }
            let outcome = job(&mut session);
            session.touch();
            outcome
        })
        .await
        .map_err(unavailable)?
    }

    /// Runs `job` in a transaction that has committed when this returns Ok; an error
    /// rolls it back.
    pub(crate) async fn write<T, F>(&self, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.read(move |session| {
            let mut transaction = session.transaction().map_err(unavailable)?;
            let value = job(&mut transaction)?;
            transaction.commit().map_err(unavailable)?;
            Ok(value)
        })
        .await
    }
}

/// Brings the schema up to date under [`LOCK_MIGRATE`].
pub(crate) fn migrate(client: &mut Client) -> StoreResult<()> {
    client
        .execute(
            &format!("SELECT pg_advisory_lock({SCHEMA_KEY}, $1)"),
            &[&LOCK_MIGRATE],
        )
        .map_err(|error| unavailable(format!("cannot prepare the schema: {}", error.describe())))?;
    let outcome = (|| -> StoreResult<()> {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS tellify_schema (
                     id INTEGER PRIMARY KEY CHECK (id = 1),
                     version INTEGER NOT NULL
                 )",
            )
            .map_err(|error| {
                unavailable(format!("cannot prepare the schema: {}", error.describe()))
            })?;
        let version: i32 = client
            .query_opt("SELECT version FROM tellify_schema WHERE id = 1", &[])
            .map_err(unavailable)?
            .map(|row| row.get(0))
            .unwrap_or(0);
        let migrations = migrations();
        if version as usize > migrations.len() {
            return Err(unavailable(format!(
                "the database's schema is version {version}, newer than this tellify knows ({}); upgrade tellify",
                migrations.len()
            )));
        }
        for (index, sql) in migrations.iter().enumerate().skip(version as usize) {
            let mut transaction = client.transaction().map_err(unavailable)?;
            transaction.batch_execute(sql).map_err(|error| {
                unavailable(format!(
                    "schema version {}: {}",
                    index + 1,
                    error.describe()
                ))
            })?;
            transaction
                .execute(
                    "INSERT INTO tellify_schema (id, version) VALUES (1, $1)
                     ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
                    &[&(index as i32 + 1)],
                )
                .map_err(unavailable)?;
            transaction.commit().map_err(unavailable)?;
        }
        Ok(())
    })();
    let unlocked = client.execute(
        &format!("SELECT pg_advisory_unlock({SCHEMA_KEY}, $1)"),
        &[&LOCK_MIGRATE],
    );
    outcome?;
    unlocked.map_err(unavailable)?;
    Ok(())
}

const USER_COLUMNS: &str = "id, name, email, timezone, admin, created, display_name";

fn read_user(row: &Row) -> StoreResult<User> {
    Ok(User {
        id: row.get(0),
        name: row.get(1),
        email: row.get(2),
        timezone: row.get(3),
        admin: row.get(4),
        created: parse_time(row.get(5))?,
        display_name: row.get(6),
    })
}

const TOKEN_COLUMNS: &str = "id, user_id, name, scopes, hash, created, expires";

fn read_token(row: &Row) -> StoreResult<Token> {
    Ok(Token {
        id: row.get(0),
        user_id: row.get(1),
        name: row.get(2),
        scopes: read_json(row.get(3))?,
        hash: row.get(4),
        created: parse_time(row.get(5))?,
        expires: row.get::<_, Option<&str>>(6).map(parse_time).transpose()?,
    })
}

pub(crate) const SUBSCRIPTION_COLUMNS: &str =
    "id, kind, title, params, owner_user, owner_group, enabled, latching, created, updated, policy, health, filter_errors";

fn health_text(health: Option<&crate::SubscriptionHealth>) -> Option<String> {
    health.map(|health| serde_json::json!(health).to_string())
}

pub(crate) fn read_subscription(row: &Row) -> StoreResult<Subscription> {
    Ok(Subscription {
        id: row.get(0),
        kind: row.get(1),
        title: row.get(2),
        params: read_json(row.get(3))?,
        owner_user: row.get(4),
        owner_group: row.get(5),
        enabled: row.get(6),
        latching: row.get(7),
        created: parse_time(row.get(8))?,
        updated: parse_time(row.get(9))?,
        policy: row.get(10),
        // Unreadable health is dropped rather than failing every read of subscriptions.
        health: row
            .get::<_, Option<&str>>(11)
            .and_then(|text| serde_json::from_str(text).ok()),
        filter_errors: row
            .get::<_, Option<&str>>(12)
            .and_then(|text| serde_json::from_str(text).ok()),
    })
}

fn read_group(client: &mut Session, row: &Row) -> StoreResult<Group> {
    let id: String = row.get(0);
    let members = client
        .query(
            "SELECT users.name FROM group_members JOIN users ON users.id = group_members.user_id
             WHERE group_members.group_id = $1 ORDER BY users.name",
            &[&id],
        )
        .map_err(unavailable)?
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect();
    Ok(Group {
        id,
        name: row.get(1),
        members,
        created: parse_time(row.get(2))?,
    })
}

const SESSION_COLUMNS: &str = "id_hash, user_id, csrf, created_ms, seen_ms, expires_ms";

fn read_session(row: &Row) -> WebSession {
    WebSession {
        id_hash: row.get(0),
        user_id: row.get(1),
        csrf: row.get(2),
        created: from_millis(row.get(3)),
        seen: from_millis(row.get(4)),
        expires: from_millis(row.get(5)),
    }
}

fn delete_sessions_of(tx: &mut Tx<'_>, user_id: &str, keep: Option<&str>) -> StoreResult<u64> {
    tx.execute(
        "DELETE FROM web_sessions WHERE user_id = $1 AND id_hash IS DISTINCT FROM $2",
        &[&user_id, &keep],
    )
    .map_err(unavailable)
}

/// The channel announcements travel on (`LISTEN`/`NOTIFY`) in the schema `public`.
const ANNOUNCEMENTS: &str = "tellify_changes";

/// The channel of the nodes using `schema`. Channels are database-wide, so each schema
/// gets its own: nodes of another tellify in the same database, under another schema,
/// must not take its log positions and ids for theirs. A name too long for PostgreSQL (63
/// bytes) is replaced by a stable hash of it (FNV-1a, the same in every build).
pub fn announcement_channel(schema: &str) -> String {
    if schema == "public" {
        return ANNOUNCEMENTS.to_string();
    }
    let channel = format!("{ANNOUNCEMENTS}.{schema}");
    if channel.len() <= 63 {
        return channel;
    }
    let hash = schema
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{ANNOUNCEMENTS}.{hash:016x}")
}

/// The largest payload `NOTIFY` takes is 8000 bytes; a longer announcement is sent as
/// [`Announcement::Everything`].
const MAX_ANNOUNCEMENT: usize = 7900;

/// What one `NOTIFY` carries: one change (`{"from": …, "kind": …}`), or several
/// (`{"from": …, "changes": [...]}`, see [`announcement_payloads`]). Nodes of an older build
/// send only the first form.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Payload {
    Many {
        from: String,
        changes: Vec<serde_json::Value>,
    },
    One(Announced),
}

/// The `NOTIFY` payloads for `changes` from `from`, in order, each below
/// [`MAX_ANNOUNCEMENT`]: a lone change goes in the one-change form, a run of them in the
/// several-change form, and a change too large for any payload becomes
/// [`Announcement::Everything`].
fn announcement_payloads(from: &str, changes: &[Announcement]) -> StoreResult<Vec<String>> {
    let head = format!(
        "{{\"from\":{},\"changes\":[",
        serde_json::to_string(from).map_err(unavailable)?
    );
    // Each payload's changes, as JSON, and the change when there is only one.
    let mut groups: Vec<(Vec<String>, Announcement)> = Vec::new();
    let mut length = 0;
    for change in changes {
        let mut change = change.clone();
        let mut json = serde_json::to_string(&change).map_err(unavailable)?;
        if head.len() + json.len() + 2 > MAX_ANNOUNCEMENT {
            change = Announcement::Everything;
            json = serde_json::to_string(&change).map_err(unavailable)?;
        }
        match groups.last_mut() {
            Some((group, _)) if length + json.len() < MAX_ANNOUNCEMENT => {
                length += json.len() + 1;
                group.push(json);
            }
            _ => {
                length = head.len() + 2 + json.len();
                groups.push((vec![json], change));
            }
        }
    }
    groups
        .into_iter()
        .map(|(group, first)| {
            if group.len() == 1 {
                serde_json::to_string(&Announced {
                    from: from.to_string(),
                    change: first,
                })
                .map_err(unavailable)
            } else {
                Ok(format!("{head}{}]}}", group.join(",")))
            }
        })
        .collect()
}

/// The changes one `NOTIFY` payload carries; an unreadable one stands for
/// [`Announcement::Everything`].
fn read_payload(payload: &str) -> Vec<Announced> {
    let everything = || {
        vec![Announced {
            from: String::new(),
            change: Announcement::Everything,
        }]
    };
    match serde_json::from_str::<Payload>(payload) {
        Ok(Payload::One(announced)) => vec![announced],
        Ok(Payload::Many { from, changes }) => {
            let mut announced = Vec::with_capacity(changes.len());
            for change in changes {
                match serde_json::from_value::<Announcement>(change) {
                    Ok(change) => announced.push(Announced {
                        from: from.clone(),
                        change,
                    }),
                    Err(error) => {
                        tracing::warn!(%error, "an announcement this node cannot read; rereading everything");
                        return everything();
                    }
                }
            }
            announced
        }
        Err(error) => {
            tracing::warn!(%error, "an announcement this node cannot read; rereading everything");
            everything()
        }
    }
}

/// How long the listener waits for a notification before it checks whether anyone still
/// follows, and how long it waits before connecting again after losing the connection.
const LISTEN_TICK: Duration = Duration::from_secs(1);

/// Forwards every announcement on `channel` to `sender` from a connection of its own,
/// until nobody follows. After a lost connection it connects again and sends
/// [`Announcement::Everything`] for what it may have missed.
fn listen(config: postgres::Config, channel: &str, sender: tokio::sync::mpsc::Sender<Announced>) {
    use postgres::fallible_iterator::FallibleIterator;
    let mut connected_before = false;
    while !sender.is_closed() {
        let mut client = match config.connect(NoTls) {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, "cannot connect to follow other nodes' changes; retrying");
                std::thread::sleep(LISTEN_TICK);
                continue;
            }
        };
        let quoted = channel.replace('"', "\"\"");
        if let Err(error) = client.batch_execute(&format!("LISTEN \"{quoted}\"")) {
            tracing::warn!(%error, "cannot follow other nodes' changes; retrying");
            std::thread::sleep(LISTEN_TICK);
            continue;
        }
        if connected_before {
            let missed = Announced {
                from: String::new(),
                change: Announcement::Everything,
            };
            if sender.blocking_send(missed).is_err() {
                return;
            }
        }
        connected_before = true;
        loop {
            let next = client.notifications().timeout_iter(LISTEN_TICK).next();
            match next {
                Ok(Some(notification)) => {
                    for announced in read_payload(notification.payload()) {
                        if sender.blocking_send(announced).is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => {
                    if sender.is_closed() {
                        return;
                    }
                    if client.is_closed() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "lost the connection that follows other nodes' changes");
                    break;
                }
            }
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    // ---- event log (events.rs) ----

    async fn append_events(&self, events: Vec<StoredEvent>) -> StoreResult<Vec<Appended>> {
        events::append_events(self, events).await
    }

    async fn events_after(&self, after: i64, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        events::events_after(self, after, limit).await
    }

    async fn events_to_process(
        &self,
        after: i64,
        limit: usize,
    ) -> StoreResult<(Vec<StoredEvent>, Option<i64>)> {
        events::events_to_process(self, after, limit).await
    }

    async fn event_seq_range(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Option<(i64, i64)>> {
        events::event_seq_range(self, since, until).await
    }

    async fn query_events(&self, query: EventQuery) -> StoreResult<Vec<ListedEvent>> {
        events::query_events(self, query).await
    }

    async fn search_events(&self, search: EventSearch) -> StoreResult<SearchStep> {
        events::search_events(self, search).await
    }

    async fn event(&self, id: &str) -> StoreResult<Option<ListedEvent>> {
        events::event(self, id).await
    }

    async fn chart_events(&self, query: ChartQuery) -> StoreResult<ChartAggregate> {
        events::chart_events(self, query).await
    }

    async fn keyed_events(&self, query: KeyedEventQuery) -> StoreResult<Vec<StoredEvent>> {
        events::keyed_events(self, query).await
    }

    async fn last_seq(&self) -> StoreResult<i64> {
        events::last_seq(self).await
    }

    // ---- users, groups, tokens ----

    async fn create_user(&self, user: User) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                &format!("INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                &[
                    &user.id,
                    &user.name,
                    &user.email,
                    &user.timezone,
                    &user.admin,
                    &time_text(user.created),
                    &user.display_name,
                ],
            )
            .map_err(|e| conflict_or_unavailable(e, &format!("user `{}`", user.name)))?;
            Ok(())
        })
        .await
    }

    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>> {
        let name = name.to_string();
        self.read(move |client| {
            client
                .query_opt(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"),
                    &[&name],
                )
                .map_err(unavailable)?
                .map(|row| read_user(&row))
                .transpose()
        })
        .await
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        let id = id.to_string();
        self.read(move |client| {
            client
                .query_opt(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
                    &[&id],
                )
                .map_err(unavailable)?
                .map(|row| read_user(&row))
                .transpose()
        })
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.read(|client| {
            client
                .query(
                    &format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"),
                    &[],
                )
                .map_err(unavailable)?
                .iter()
                .map(read_user)
                .collect()
        })
        .await
    }

    async fn update_user(&self, user: User, group_ids: Option<Vec<String>>) -> StoreResult<bool> {
        self.write(move |tx| {
            let updated = tx
                .execute(
                    "UPDATE users SET email = $2, display_name = $3, timezone = $4, admin = $5
                     WHERE id = $1",
                    &[
                        &user.id,
                        &user.email,
                        &user.display_name,
                        &user.timezone,
                        &user.admin,
                    ],
                )
                .map_err(unavailable)?;
            if updated == 0 {
                return Ok(false);
            }
            let Some(wanted) = group_ids else {
                return Ok(true);
            };
            let current: Vec<String> = tx
                .query(
                    "SELECT group_id FROM group_members WHERE user_id = $1",
                    &[&user.id],
                )
                .map_err(unavailable)?
                .iter()
                .map(|row| row.get(0))
                .collect();
            for group_id in current.iter().filter(|id| !wanted.contains(id)) {
                tx.execute(
                    "DELETE FROM group_members WHERE group_id = $1 AND user_id = $2",
                    &[group_id, &user.id],
                )
                .map_err(unavailable)?;
                notify::leave_group(tx, group_id, &user.id)?;
            }
            for group_id in wanted.iter().filter(|id| !current.contains(id)) {
                tx.execute(
                    "INSERT INTO group_members (group_id, user_id) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                    &[group_id, &user.id],
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
                "INSERT INTO groups (id, name, created) VALUES ($1, $2, $3)",
                &[&group.id, &group.name, &time_text(group.created)],
            )
            .map_err(|e| conflict_or_unavailable(e, &format!("group `{}`", group.name)))?;
            Ok(())
        })
        .await
    }

    async fn group_by_name(&self, name: &str) -> StoreResult<Option<Group>> {
        let name = name.to_string();
        self.read(move |client| {
            let row = client
                .query_opt(
                    "SELECT id, name, created FROM groups WHERE name = $1",
                    &[&name],
                )
                .map_err(unavailable)?;
            row.map(|row| read_group(client, &row)).transpose()
        })
        .await
    }

    async fn list_groups(&self) -> StoreResult<Vec<Group>> {
        self.read(|client| {
            let rows = client
                .query("SELECT id, name, created FROM groups ORDER BY name", &[])
                .map_err(unavailable)?;
            rows.iter().map(|row| read_group(client, row)).collect()
        })
        .await
    }

    async fn add_member(&self, group_id: &str, user_id: &str) -> StoreResult<()> {
        let (group_id, user_id) = (group_id.to_string(), user_id.to_string());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&group_id, &user_id],
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
                    "DELETE FROM group_members WHERE group_id = $1 AND user_id = $2",
                    &[&group_id, &user_id],
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
        self.read(move |client| {
            Ok(client
                .query(
                    "SELECT group_id FROM group_members WHERE user_id = $1",
                    &[&user_id],
                )
                .map_err(unavailable)?
                .iter()
                .map(|row| row.get(0))
                .collect())
        })
        .await
    }

    async fn create_token(&self, token: Token) -> StoreResult<()> {
        self.write(move |tx| {
            let scopes = serde_json::to_string(&token.scopes).map_err(unavailable)?;
            tx.execute(
                &format!(
                    "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ),
                &[
                    &token.id,
                    &token.user_id,
                    &token.name,
                    &scopes,
                    &token.hash,
                    &time_text(token.created),
                    &token.expires.map(time_text),
                ],
            )
            .map_err(|e| conflict_or_unavailable(e, "token"))?;
            Ok(())
        })
        .await
    }

    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<Token>> {
        let hash = hash.to_string();
        self.read(move |client| {
            client
                .query_opt(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"),
                    &[&hash],
                )
                .map_err(unavailable)?
                .map(|row| read_token(&row))
                .transpose()
        })
        .await
    }

    async fn token(&self, id: &str) -> StoreResult<Option<Token>> {
        let id = id.to_string();
        self.read(move |client| {
            client
                .query_opt(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"),
                    &[&id],
                )
                .map_err(unavailable)?
                .map(|row| read_token(&row))
                .transpose()
        })
        .await
    }

    async fn list_tokens(&self, user_id: Option<&str>) -> StoreResult<Vec<Token>> {
        let user_id = user_id.map(str::to_string);
        self.read(move |client| {
            client
                .query(
                    &format!(
                        "SELECT {TOKEN_COLUMNS} FROM tokens
                         WHERE $1::TEXT IS NULL OR user_id = $1 ORDER BY id"
                    ),
                    &[&user_id],
                )
                .map_err(unavailable)?
                .iter()
                .map(read_token)
                .collect()
        })
        .await
    }

    async fn delete_token(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |tx| {
            let removed = tx
                .execute("DELETE FROM tokens WHERE id = $1", &[&id])
                .map_err(unavailable)?;
            Ok(removed == 1)
        })
        .await
    }

    // ---- passwords and dashboard sessions ----

    async fn set_password_hash(
        &self,
        user_id: &str,
        hash: Option<String>,
        keep_session: Option<String>,
    ) -> StoreResult<bool> {
        let user_id = user_id.to_string();
        self.write(move |tx| {
            let changed = tx
                .execute(
                    "UPDATE users SET password_hash = $2 WHERE id = $1",
                    &[&user_id, &hash],
                )
                .map_err(unavailable)?;
            if changed == 0 {
                return Ok(false);
            }
            delete_sessions_of(tx, &user_id, keep_session.as_deref())?;
            Ok(true)
        })
        .await
    }

    async fn password_hash(&self, user_id: &str) -> StoreResult<Option<String>> {
        let user_id = user_id.to_string();
        self.read(move |client| {
            Ok(client
                .query_opt("SELECT password_hash FROM users WHERE id = $1", &[&user_id])
                .map_err(unavailable)?
                .and_then(|row| row.get::<_, Option<String>>(0)))
        })
        .await
    }

    async fn create_web_session(&self, session: WebSession) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO web_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
                ),
                &[
                    &session.id_hash,
                    &session.user_id,
                    &session.csrf,
                    &millis(session.created),
                    &millis(session.seen),
                    &millis(session.expires),
                ],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn web_session(&self, id_hash: &str, now: Timestamp) -> StoreResult<Option<WebSession>> {
        let id_hash = id_hash.to_string();
        self.read(move |client| {
            Ok(client
                .query_opt(
                    &format!(
                        "SELECT {SESSION_COLUMNS} FROM web_sessions
                         WHERE id_hash = $1 AND expires_ms > $2"
                    ),
                    &[&id_hash, &millis(now)],
                )
                .map_err(unavailable)?
                .map(|row| read_session(&row)))
        })
        .await
    }

    async fn touch_web_session(
        &self,
        id_hash: &str,
        seen: Timestamp,
        expires: Timestamp,
    ) -> StoreResult<bool> {
        let id_hash = id_hash.to_string();
        self.write(move |tx| {
            let changed = tx
                .execute(
                    "UPDATE web_sessions SET seen_ms = $2, expires_ms = $3 WHERE id_hash = $1",
                    &[&id_hash, &millis(seen), &millis(expires)],
                )
                .map_err(unavailable)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn delete_web_session(&self, id_hash: &str) -> StoreResult<bool> {
        let id_hash = id_hash.to_string();
        self.write(move |tx| {
            let removed = tx
                .execute("DELETE FROM web_sessions WHERE id_hash = $1", &[&id_hash])
                .map_err(unavailable)?;
            Ok(removed == 1)
        })
        .await
    }

    async fn delete_web_sessions_of(&self, user_id: &str) -> StoreResult<u64> {
        let user_id = user_id.to_string();
        self.write(move |tx| delete_sessions_of(tx, &user_id, None))
            .await
    }

    async fn prune_web_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM web_sessions WHERE expires_ms <= $1",
                &[&millis(now)],
            )
            .map_err(unavailable)
        })
        .await
    }

    // ---- subscriptions ----

    async fn insert_subscription(&self, subscription: Subscription) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                &format!("INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"),
                &[
                    &subscription.id,
                    &subscription.kind,
                    &subscription.title,
                    &subscription.params.to_string(),
                    &subscription.owner_user,
                    &subscription.owner_group,
                    &subscription.enabled,
                    &subscription.latching,
                    &time_text(subscription.created),
                    &time_text(subscription.updated),
                    &subscription.policy,
                    &health_text(subscription.health.as_ref()),
                    &subscription
                        .filter_errors
                        .as_ref()
                        .map(|errors| serde_json::json!(errors).to_string()),
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
                    "UPDATE subscriptions SET kind = $2, title = $3, params = $4, enabled = $5,
                         latching = $6, updated = $7, policy = $8, health = $9,
                         filter_errors = CASE WHEN $10 THEN filter_errors END WHERE id = $1",
                    &[
                        &subscription.id,
                        &subscription.kind,
                        &subscription.title,
                        &subscription.params.to_string(),
                        &subscription.enabled,
                        &subscription.latching,
                        &time_text(subscription.updated),
                        &subscription.policy,
                        &health_text(subscription.health.as_ref()),
                        &subscription.filter_errors.is_some(),
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
        self.write(move |tx| {
            let removed = tx
                .execute("DELETE FROM subscriptions WHERE id = $1", &[&id])
                .map_err(unavailable)?;
            Ok(removed == 1)
        })
        .await
    }

    async fn subscription(&self, id: &str) -> StoreResult<Option<Subscription>> {
        let id = id.to_string();
        self.read(move |client| {
            client
                .query_opt(
                    &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1"),
                    &[&id],
                )
                .map_err(unavailable)?
                .map(|row| read_subscription(&row))
                .transpose()
        })
        .await
    }

    async fn subscriptions_by_id(&self, ids: &[String]) -> StoreResult<Vec<Subscription>> {
        let ids = ids.to_vec();
        self.read(move |client| {
            client
                .query(
                    &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ANY($1)"),
                    &[&ids],
                )
                .map_err(unavailable)?
                .iter()
                .map(read_subscription)
                .collect()
        })
        .await
    }

    async fn list_subscriptions(&self, viewer: Option<&Viewer>) -> StoreResult<Vec<Subscription>> {
        let viewer = viewer.cloned();
        self.read(move |client| {
            let rows = client
                .query(
                    &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY id"),
                    &[],
                )
                .map_err(unavailable)?;
            let mut visible = Vec::new();
            for row in &rows {
                let subscription = read_subscription(row)?;
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

    // ---- alerts and processing (alerts.rs) ----

    async fn alert(&self, id: &str) -> StoreResult<Option<Alert>> {
        alerts::alert(self, id).await
    }

    async fn list_alerts(&self, query: AlertQuery) -> StoreResult<Vec<Alert>> {
        alerts::list_alerts(self, query).await
    }

    async fn subscription_alerts(
        &self,
        viewer: Option<&Viewer>,
    ) -> StoreResult<Vec<SubscriptionAlerts>> {
        alerts::subscription_alerts(self, viewer).await
    }

    async fn held_alerts(&self, actor: &str, viewer: Option<&Viewer>) -> StoreResult<Vec<Alert>> {
        alerts::held_alerts(self, actor, viewer).await
    }

    async fn alert_history(&self, id: &str) -> StoreResult<Vec<HistoryEntry>> {
        alerts::alert_history(self, id).await
    }

    async fn act_on_alert(
        &self,
        id: &str,
        action: Action,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<AlertChange> {
        alerts::act_on_alert(self, id, action, actor, now).await
    }

    async fn load_processing(&self) -> StoreResult<ProcessingSnapshot> {
        alerts::load_processing(self).await
    }

    async fn settings_generation(&self) -> StoreResult<Option<i64>> {
        self.read(|client| {
            Ok(Some(
                client
                    .query_one(
                        "SELECT generation FROM settings_generation WHERE id = 1",
                        &[],
                    )
                    .map_err(unavailable)?
                    .get(0),
            ))
        })
        .await
    }

    async fn processing_cursor(&self) -> StoreResult<i64> {
        self.read(|client| {
            Ok(client
                .query_one("SELECT cursor FROM processing WHERE id = 1", &[])
                .map_err(unavailable)?
                .get(0))
        })
        .await
    }

    async fn commit_processing(&self, commit: ProcessingCommit) -> StoreResult<CommitOutcome> {
        alerts::commit_processing(self, commit).await
    }

    // ---- contact points, policies, silences, the outbox (notify.rs) ----

    async fn create_contact_point(&self, point: ContactPoint) -> StoreResult<()> {
        notify::create_contact_point(self, point).await
    }

    async fn list_contact_points(&self, user_id: &str) -> StoreResult<Vec<ContactPoint>> {
        notify::list_contact_points(self, user_id).await
    }

    async fn contact_point(&self, user_id: &str, name: &str) -> StoreResult<Option<ContactPoint>> {
        notify::contact_point(self, user_id, name).await
    }

    async fn delete_contact_point(
        &self,
        user_id: &str,
        name: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        notify::delete_contact_point(self, user_id, name, now).await
    }

    async fn put_policy(&self, policy: PolicyRecord) -> StoreResult<bool> {
        notify::put_policy(self, policy).await
    }

    async fn list_policies(&self, user_id: &str) -> StoreResult<Vec<PolicyRecord>> {
        notify::list_policies(self, user_id).await
    }

    async fn policy(&self, user_id: &str, name: &str) -> StoreResult<Option<PolicyRecord>> {
        notify::policy(self, user_id, name).await
    }

    async fn delete_policy(&self, user_id: &str, name: &str) -> StoreResult<bool> {
        notify::delete_policy(self, user_id, name).await
    }

    async fn create_silence(&self, silence: Silence) -> StoreResult<()> {
        notify::create_silence(self, silence).await
    }

    async fn list_silences(&self, user_id: &str) -> StoreResult<Vec<Silence>> {
        notify::list_silences(self, user_id).await
    }

    async fn delete_silence(&self, user_id: &str, id: &str) -> StoreResult<bool> {
        notify::delete_silence(self, user_id, id).await
    }

    async fn notify_directory(&self) -> StoreResult<NotifyDirectory> {
        notify::notify_directory(self).await
    }

    async fn take_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
        hold: &DeliveryHold,
    ) -> StoreResult<Vec<DeliveryJob>> {
        notify::take_deliveries(self, now, lease_until, limit, hold).await
    }

    async fn finish_deliveries(&self, results: Vec<FinishedDelivery>) -> StoreResult<()> {
        notify::finish_deliveries(self, results).await
    }

    async fn list_deliveries(&self, query: DeliveryQuery) -> StoreResult<Vec<Delivery>> {
        notify::list_deliveries(self, query).await
    }

    async fn delivery(&self, id: &str) -> StoreResult<Option<DeliveryRecord>> {
        notify::delivery(self, id).await
    }

    async fn plan_repeats(
        &self,
        now: Timestamp,
        planner: PlannerRef,
        limit: usize,
    ) -> StoreResult<usize> {
        alerts::plan_repeats(self, now, planner, limit).await
    }

    async fn next_outbox_due(&self) -> StoreResult<Option<Timestamp>> {
        notify::next_outbox_due(self).await
    }

    async fn outbox_backlog(&self, now: Timestamp) -> StoreResult<(u64, Option<Timestamp>)> {
        notify::outbox_backlog(self, now).await
    }

    async fn offboard_user(
        &self,
        user_id: &str,
        dry_run: bool,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<OffboardCounts> {
        notify::offboard_user(self, user_id, dry_run, actor, now).await
    }

    async fn append_audit(&self, record: AuditRecord) -> StoreResult<()> {
        notify::append_audit(self, record).await
    }

    async fn list_audit(&self, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        notify::list_audit(self, limit).await
    }

    // ---- event types (events.rs) ----

    async fn put_event_type(&self, event_type: EventType) -> StoreResult<bool> {
        events::put_event_type(self, event_type).await
    }

    async fn event_type(&self, name: &str) -> StoreResult<Option<EventType>> {
        events::event_type(self, name).await
    }

    async fn list_event_types(&self) -> StoreResult<Vec<EventType>> {
        events::list_event_types(self).await
    }

    async fn delete_event_type(&self, name: &str) -> StoreResult<bool> {
        events::delete_event_type(self, name).await
    }

    // ---- exporters (alerts.rs) ----

    async fn alert_changes_after(
        &self,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<LoggedAlertChange>> {
        alerts::alert_changes_after(self, after, limit).await
    }

    async fn last_alert_change(&self) -> StoreResult<i64> {
        alerts::last_alert_change(self).await
    }

    async fn export_position(&self, name: &str) -> StoreResult<Option<i64>> {
        let name = name.to_string();
        self.read(move |client| {
            Ok(client
                .query_opt(
                    "SELECT position FROM export_positions WHERE name = $1",
                    &[&name],
                )
                .map_err(unavailable)?
                .map(|row| row.get(0)))
        })
        .await
    }

    async fn save_export_position(&self, name: &str, position: i64) -> StoreResult<()> {
        let name = name.to_string();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO export_positions (name, position, updated) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position,
                     updated = EXCLUDED.updated",
                &[&name, &position, &time_text(Timestamp::now())],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    // ---- signed action links ----

    async fn server_secret(&self, name: &str, fresh: Vec<u8>) -> StoreResult<Vec<u8>> {
        let name = name.to_string();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO server_secrets (name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &fresh],
            )
            .map_err(unavailable)?;
            Ok(tx
                .query_one("SELECT value FROM server_secrets WHERE name = $1", &[&name])
                .map_err(unavailable)?
                .get(0))
        })
        .await
    }

    async fn use_link(&self, nonce: &str, expires: Timestamp, now: Timestamp) -> StoreResult<bool> {
        let nonce = nonce.to_string();
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM used_links WHERE expires_ms < $1",
                &[&millis(now)],
            )
            .map_err(unavailable)?;
            let inserted = tx
                .execute(
                    "INSERT INTO used_links (nonce, expires_ms) VALUES ($1, $2)
                     ON CONFLICT (nonce) DO NOTHING",
                    &[&nonce, &millis(expires)],
                )
                .map_err(unavailable)?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn release_link(&self, nonce: &str) -> StoreResult<()> {
        let nonce = nonce.to_string();
        self.write(move |tx| {
            tx.execute("DELETE FROM used_links WHERE nonce = $1", &[&nonce])
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn announce(&self, from: &str, change: &Announcement) -> StoreResult<()> {
        self.announce_all(from, std::slice::from_ref(change)).await
    }

    /// Packs as many changes into one `NOTIFY` as its payload takes: one round trip, and
    /// one wake-up of each listening node, for all the changes a node had waiting.
    async fn announce_all(&self, from: &str, changes: &[Announcement]) -> StoreResult<()> {
        let payloads = announcement_payloads(from, changes)?;
        if payloads.is_empty() {
            return Ok(());
        }
        let channel = self.channel.clone();
        self.read(move |client| {
            for payload in &payloads {
                client
                    .execute("SELECT pg_notify($1, $2)", &[&&*channel, payload])
                    .map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }

    fn follow_announcements(&self) -> Option<tokio::sync::mpsc::Receiver<Announced>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(1024);
        let (config, channel) = (self.config.clone(), self.channel.clone());
        let started = std::thread::Builder::new()
            .name("tellify-postgres-listen".to_string())
            .spawn(move || listen(config, &channel, sender));
        match started {
            Ok(_) => Some(receiver),
            Err(error) => {
                tracing::warn!(%error, "cannot start following other nodes' changes");
                None
            }
        }
    }

    async fn append_logged(
        &self,
        log_seq: i64,
        message_id: &str,
        events: Vec<StoredEvent>,
    ) -> StoreResult<(Vec<Appended>, bool)> {
        log::append_logged(self, log_seq, message_id.to_string(), events).await
    }

    async fn log_cursor(&self) -> StoreResult<Option<crate::LogCursor>> {
        log::log_cursor(self).await
    }

    async fn logged(&self, positions: Vec<i64>) -> StoreResult<Vec<i64>> {
        log::logged(self, positions).await
    }

    async fn open_log(&self, epoch: &str, start: i64) -> StoreResult<crate::LogCursor> {
        log::open_log(self, epoch, start).await
    }

    async fn save_log_cursor(
        &self,
        cursor: crate::LogCursor,
        forget_before: Timestamp,
    ) -> StoreResult<()> {
        log::save_log_cursor(self, cursor, forget_before).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Option<i64>> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.write(move |tx| {
            let row = tx
                .query_opt(
                    "INSERT INTO leases (name, holder, fence, expires_ms) VALUES ($1, $2, 1, $4)
                     ON CONFLICT (name) DO UPDATE SET
                         fence = CASE WHEN leases.holder = EXCLUDED.holder
                                      THEN leases.fence ELSE leases.fence + 1 END,
                         holder = EXCLUDED.holder,
                         expires_ms = EXCLUDED.expires_ms
                     WHERE leases.holder = EXCLUDED.holder OR leases.expires_ms <= $3
                     RETURNING fence",
                    &[&name, &holder, &millis(now), &millis(until)],
                )
                .map_err(unavailable)?;
            Ok(row.map(|row| row.get(0)))
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.write(move |tx| {
            tx.execute(
                "UPDATE leases SET expires_ms = 0 WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn link_used(&self, nonce: &str) -> StoreResult<bool> {
        let nonce = nonce.to_string();
        self.read(move |client| {
            Ok(client
                .query_opt("SELECT 1 FROM used_links WHERE nonce = $1", &[&nonce])
                .map_err(unavailable)?
                .is_some())
        })
        .await
    }
}

#[cfg(test)]
mod announcement_payload_tests {
    use super::{announcement_payloads, read_payload, MAX_ANNOUNCEMENT};
    use crate::{Announced, Announcement};

    fn events(first: i64) -> Announcement {
        Announcement::Events {
            first,
            last: first + 1,
        }
    }

    #[test]
    fn waiting_changes_travel_together_and_arrive_in_order() {
        let changes: Vec<Announcement> = (0..500).map(|n| events(n * 10)).collect();
        let payloads = announcement_payloads("node-a", &changes).unwrap();
        assert!(payloads.len() > 1, "500 changes do not fit one payload");
        assert!(
            payloads.len() < 50,
            "{} payloads for 500 changes",
            payloads.len()
        );
        assert!(payloads
            .iter()
            .all(|payload| payload.len() <= MAX_ANNOUNCEMENT));
        let read: Vec<Announced> = payloads.iter().flat_map(|p| read_payload(p)).collect();
        let expected: Vec<Announced> = changes
            .into_iter()
            .map(|change| Announced {
                from: "node-a".to_string(),
                change,
            })
            .collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn a_lone_change_keeps_the_form_older_nodes_read() {
        let payloads = announcement_payloads("node-a", &[events(7)]).unwrap();
        assert_eq!(payloads.len(), 1);
        let old_form: Announced = serde_json::from_str(&payloads[0]).unwrap();
        assert_eq!(old_form.change, events(7));
        assert!(announcement_payloads("node-a", &[]).unwrap().is_empty());
    }

    #[test]
    fn a_change_too_large_for_a_payload_becomes_everything_and_garbage_too() {
        let huge = Announcement::SubscriptionsReread {
            ids: (0..2_000).map(|n| format!("subscription-{n}")).collect(),
        };
        let payloads = announcement_payloads("node-a", &[events(1), huge, events(5)]).unwrap();
        let read: Vec<Announcement> = payloads
            .iter()
            .flat_map(|p| read_payload(p))
            .map(|announced| announced.change)
            .collect();
        assert_eq!(read, [events(1), Announcement::Everything, events(5)]);
        let garbage = read_payload(r#"{"from":"x","changes":[{"kind":"no such"}]}"#);
        assert_eq!(garbage.len(), 1);
        assert_eq!(garbage[0].change, Announcement::Everything);
    }
}

#[cfg(test)]
mod announcement_channel_tests {
    use super::announcement_channel;

    #[test]
    fn each_schema_has_a_channel_of_its_own_within_postgres_limit() {
        assert_eq!(announcement_channel("public"), "tellify_changes");
        assert_eq!(announcement_channel("ops"), "tellify_changes.ops");
        let long = "s".repeat(60);
        let hashed = announcement_channel(&long);
        assert!(hashed.len() <= 63, "{hashed}");
        assert_eq!(hashed, announcement_channel(&long), "stable");
        assert_ne!(hashed, announcement_channel(&"t".repeat(60)));
    }
}
