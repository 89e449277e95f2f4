//! Dashboard sign-in: password hashes (on `users`) and server-side sessions, found by the
//! SHA-256 of the cookie's secret so that a copy of the database opens no session.

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::unavailable;
use crate::types::WebSession;
use crate::StoreResult;

/// user_version 11: passwords and dashboard sessions.
pub(super) const MIGRATION: &str = r#"
ALTER TABLE users ADD COLUMN password_hash TEXT;
CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    seen_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions(user_id);
CREATE INDEX web_sessions_expires ON web_sessions(expires_ms);
"#;

const COLUMNS: &str = "id_hash, user_id, csrf, created_ms, seen_ms, expires_ms";

fn millis(time: Timestamp) -> i64 {
    time.as_millisecond()
}

fn time(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn read(row: &Row<'_>) -> rusqlite::Result<WebSession> {
    Ok(WebSession {
        id_hash: row.get(0)?,
        user_id: row.get(1)?,
        csrf: row.get(2)?,
        created: time(row.get(3)?),
        seen: time(row.get(4)?),
        expires: time(row.get(5)?),
    })
}

pub(super) fn create(tx: &Connection, session: &WebSession) -> StoreResult<()> {
    tx.execute(
        &format!("INSERT INTO web_sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            session.id_hash,
            session.user_id,
            session.csrf,
            millis(session.created),
            millis(session.seen),
            millis(session.expires)
        ],
    )
    .map_err(unavailable)?;
    Ok(())
}

/// The session, if it exists and has not expired at `now`.
pub(super) fn find(
    connection: &Connection,
    id_hash: &str,
    now: Timestamp,
) -> StoreResult<Option<WebSession>> {
    connection
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM web_sessions WHERE id_hash = ?1 AND expires_ms > ?2"
        ))
        .map_err(unavailable)?
        .query_row(params![id_hash, millis(now)], read)
        .optional()
        .map_err(unavailable)
}

pub(super) fn touch(
    tx: &Connection,
    id_hash: &str,
    seen: Timestamp,
    expires: Timestamp,
) -> StoreResult<bool> {
    let changed = tx
        .execute(
            "UPDATE web_sessions SET seen_ms = ?2, expires_ms = ?3 WHERE id_hash = ?1",
            params![id_hash, millis(seen), millis(expires)],
        )
        .map_err(unavailable)?;
    Ok(changed == 1)
}

pub(super) fn delete(tx: &Connection, id_hash: &str) -> StoreResult<bool> {
    let removed = tx
        .execute("DELETE FROM web_sessions WHERE id_hash = ?1", [id_hash])
        .map_err(unavailable)?;
    Ok(removed == 1)
}

/// Ends every session of a user but `keep` (the caller's own, when they change their own
/// password).
pub(super) fn delete_of_user(
    tx: &Connection,
    user_id: &str,
    keep: Option<&str>,
) -> StoreResult<u64> {
    let removed = tx
        .execute(
            "DELETE FROM web_sessions WHERE user_id = ?1 AND id_hash IS NOT ?2",
            params![user_id, keep],
        )
        .map_err(unavailable)?;
    Ok(removed as u64)
}

pub(super) fn prune(tx: &Connection, now: Timestamp) -> StoreResult<u64> {
    let removed = tx
        .execute(
            "DELETE FROM web_sessions WHERE expires_ms <= ?1",
            [millis(now)],
        )
        .map_err(unavailable)?;
    Ok(removed as u64)
}

/// Sets (or with `None`, removes) a user's password hash and ends their other sessions, in
/// one transaction. False when there is no such user.
pub(super) fn set_password(
    tx: &Connection,
    user_id: &str,
    hash: Option<&str>,
    keep_session: Option<&str>,
) -> StoreResult<bool> {
    let changed = tx
        .execute(
            "UPDATE users SET password_hash = ?2 WHERE id = ?1",
            params![user_id, hash],
        )
        .map_err(unavailable)?;
    if changed == 0 {
        return Ok(false);
    }
    delete_of_user(tx, user_id, keep_session)?;
    Ok(true)
}

pub(super) fn password(connection: &Connection, user_id: &str) -> StoreResult<Option<String>> {
    connection
        .query_row(
            "SELECT password_hash FROM users WHERE id = ?1",
            [user_id],
            |row| row.get::<_, Option<String>>(0),
        )
        .optional()
        .map(Option::flatten)
        .map_err(unavailable)
}
