//! A throwaway schema on a real PostgreSQL server, for tests: each [`TestDatabase`] is a
//! fresh schema in the database named by `TELLIFY_TEST_POSTGRES` (default
//! [`DEFAULT_TEST_URL`], the machine's own server), dropped again when it goes out of
//! scope. A schema left behind by a test run that was killed is dropped by a later run
//! once it is an hour old.

use postgres::{Client, NoTls};

use super::unavailable;
use crate::StoreResult;

/// Where tests find PostgreSQL when `TELLIFY_TEST_POSTGRES` is not set.
pub const DEFAULT_TEST_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

const PREFIX: &str = "tellify_test_";

/// A schema of its own on the test server; see the module documentation.
pub struct TestDatabase {
    base: String,
    schema: String,
}

/// The test server's address.
pub fn server_url() -> String {
    std::env::var("TELLIFY_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_TEST_URL.to_string())
}

impl TestDatabase {
    /// Creates a fresh, empty schema (blocks; see [`TestDatabase::create`]).
    pub fn create_blocking() -> StoreResult<TestDatabase> {
        let base = server_url();
        let schema = format!("{PREFIX}{}", ulid::Ulid::new().to_string().to_lowercase());
        let mut client = Client::connect(&base, NoTls).map_err(|error| {
            unavailable(format!(
                "cannot reach the test PostgreSQL at {base} (set TELLIFY_TEST_POSTGRES): {error}"
            ))
        })?;
        drop_stale(&mut client);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .map_err(unavailable)?;
        Ok(TestDatabase { base, schema })
    }

    /// Creates a fresh, empty schema from async code.
    pub async fn create() -> StoreResult<TestDatabase> {
        tokio::task::spawn_blocking(TestDatabase::create_blocking)
            .await
            .map_err(unavailable)?
    }

    /// The address of this schema: the server's, with the schema as the search path.
    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.base, self.schema
        )
    }

    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // The synchronous client runs its own runtime, which cannot start inside a tokio
        // runtime's thread: drop from a plain thread.
        let base = self.base.clone();
        let schema = self.schema.clone();
        let dropped = std::thread::spawn(move || {
            if let Ok(mut client) = Client::connect(&base, NoTls) {
                let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        });
        let _ = dropped.join();
    }
}

/// Drops test schemas older than an hour (their ULID says when they were made).
fn drop_stale(client: &mut Client) {
    let Ok(rows) = client.query(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tellify\\_test\\_%'",
        &[],
    ) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for row in rows {
        let name: String = row.get(0);
        let Ok(id) = ulid::Ulid::from_string(&name[PREFIX.len()..].to_uppercase()) else {
            continue;
        };
        let old = now
            .duration_since(id.datetime())
            .is_ok_and(|age| age > std::time::Duration::from_secs(3600));
        if old {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
        }
    }
}
