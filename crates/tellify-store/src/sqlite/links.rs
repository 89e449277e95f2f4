//! What signed action links need from SQLite: server-wide secrets (the links' signing key,
//! shared by every node on the same database) and the nonces of links already used.

use jiff::Timestamp;
use rusqlite::{params, OptionalExtension};

use super::{unavailable, SqliteStore};
use crate::StoreResult;

/// `server_secrets`: one value per name, written once. `used_links`: a link's nonce once it
/// was redeemed, kept until the link would have expired anyway (`expires_ms`, indexed for
/// the prune).
pub(super) const MIGRATION: &str = r#"
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE used_links (
    nonce TEXT PRIMARY KEY,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX used_links_expires ON used_links(expires_ms);
"#;

impl SqliteStore {
    pub(super) async fn write_server_secret(
        &self,
        name: &str,
        fresh: Vec<u8>,
    ) -> StoreResult<Vec<u8>> {
        let name = name.to_string();
        self.write(move |transaction| {
            transaction
                .execute(
                    "INSERT INTO server_secrets (name, value) VALUES (?1, ?2)
                     ON CONFLICT (name) DO NOTHING",
                    params![name, fresh],
                )
                .map_err(unavailable)?;
            transaction
                .query_row(
                    "SELECT value FROM server_secrets WHERE name = ?1",
                    [&name],
                    |row| row.get(0),
                )
                .map_err(unavailable)
        })
        .await
    }

    pub(super) async fn write_used_link(
        &self,
        nonce: &str,
        expires: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let nonce = nonce.to_string();
        self.write(move |transaction| {
            // Rows of links that have expired guard nothing: an expired link is refused
            // before its nonce is looked at.
            transaction
                .execute(
                    "DELETE FROM used_links WHERE expires_ms < ?1",
                    [now.as_millisecond()],
                )
                .map_err(unavailable)?;
            let inserted = transaction
                .execute(
                    "INSERT INTO used_links (nonce, expires_ms) VALUES (?1, ?2)
                     ON CONFLICT (nonce) DO NOTHING",
                    params![nonce, expires.as_millisecond()],
                )
                .map_err(unavailable)?;
            Ok(inserted == 1)
        })
        .await
    }

    pub(super) async fn delete_used_link(&self, nonce: &str) -> StoreResult<()> {
        let nonce = nonce.to_string();
        self.write(move |transaction| {
            transaction
                .execute("DELETE FROM used_links WHERE nonce = ?1", [nonce])
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn read_used_link(&self, nonce: &str) -> StoreResult<bool> {
        let nonce = nonce.to_string();
        self.read(move |connection| {
            let found: Option<i64> = connection
                .query_row(
                    "SELECT 1 FROM used_links WHERE nonce = ?1",
                    [nonce],
                    |row| row.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            Ok(found.is_some())
        })
        .await
    }
}
