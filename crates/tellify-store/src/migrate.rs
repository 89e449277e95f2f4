//! Moving an installation from SQLite to PostgreSQL (`tellify migrate-store`).
//!
//! [`sqlite_to_postgres`] reads every table of a SQLite store (brought up to the current
//! schema first) in one read transaction, so it sees one consistent snapshot, and writes
//! them into an empty PostgreSQL store in ONE PostgreSQL transaction: a failure anywhere
//! (a bad row, a lost connection, a refusal) leaves the target as it was. Rows go in with
//! binary `COPY`, streamed row by row, so a log of millions of events never sits in memory.
//!
//! Every position keeps its value: event `seq`, alert history ids (which exporters and
//! notifications name), notification and attempt ids. The columns only PostgreSQL has are
//! filled from what SQLite knows: `alerts.last_seen_ms` from the alert body, and the
//! insertion orders `deliveries.seq` and `audit.seq` from SQLite's `rowid` (the order
//! SQLite lists them in). Afterwards every identity sequence is set above the copied
//! values, so new rows get higher positions than every copied one.
//!
//! **Invariant:** dashboard sessions are not copied (`web_sessions`): people sign in again
//! after the move. Leases are not copied either: SQLite has none.

use std::path::{Path, PathBuf};

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Transaction};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::postgres::Cause;

/// Why a migration did not happen; nothing was written to the target in any case.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The source directory holds no SQLite store.
    #[error("no tellify store in {}: expected {}", .0.display(), .0.join(crate::sqlite::DATABASE_FILE).display())]
    NoSource(PathBuf),
    /// The target already holds data; a migration only fills an empty store.
    #[error("the PostgreSQL store is not empty: it holds {users} users and {events} events; migrate into a new, empty database")]
    TargetNotEmpty { users: i64, events: i64 },
    /// Reading the SQLite store failed.
    #[error("reading the SQLite store: {0}")]
    Sqlite(String),
    /// Talking to PostgreSQL failed.
    #[error("writing the PostgreSQL store: {0}")]
    Postgres(String),
    /// A stored value cannot go into its PostgreSQL column. `row` names the row by its
    /// first column (`id abc`, `seq 42`).
    #[error("table `{table}`, row {row}, column `{column}`: {problem}")]
    BadValue {
        table: &'static str,
        column: &'static str,
        row: String,
        problem: String,
    },
}

/// How far the copy of one table is, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub table: &'static str,
    pub copied: u64,
    pub total: u64,
}

/// What a migration copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Rows copied per table, in copy order.
    pub tables: Vec<(&'static str, u64)>,
    /// Where the processing reader stands (copied into `processing`).
    pub processing_cursor: i64,
    /// Dashboard sessions left behind (their people sign in again).
    pub dropped_sessions: u64,
}

/// Rows between two progress reports of a long table.
pub const PROGRESS_EVERY: u64 = 50_000;

/// Copies the SQLite store in `sqlite_directory` into the empty PostgreSQL store at
/// `postgres_url` (see the module documentation), creating its schema when needed.
/// `progress` hears about each table as it goes. Blocks: call it from a blocking thread.
/// The caller keeps servers off the SQLite directory (its data lock) meanwhile.
pub fn sqlite_to_postgres(
    sqlite_directory: &Path,
    postgres_url: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<MigrationReport, MigrateError> {
    let database = sqlite_directory.join(crate::sqlite::DATABASE_FILE);
    if !database.is_file() {
        return Err(MigrateError::NoSource(sqlite_directory.to_path_buf()));
    }
    let mut source = open_source(&database)?;

    let config: postgres::Config = postgres_url
        .parse()
        .map_err(|error| MigrateError::Postgres(format!("invalid PostgreSQL address: {error}")))?;
    let mut target = config
        .connect(NoTls)
        .map_err(|error| MigrateError::Postgres(format!("cannot connect: {}", error.describe())))?;
    crate::postgres::migrate(&mut target)
        .map_err(|error| MigrateError::Postgres(error.to_string()))?;

    // One read transaction: a consistent snapshot of the source.
    let snapshot = source.transaction().map_err(sqlite_error)?;
    let report = copy_all(&snapshot, &mut target, progress)?;
    drop(snapshot);
    Ok(report)
}

fn open_source(database: &Path) -> Result<Connection, MigrateError> {
    let mut connection = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_error)?;
    connection
        .busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite_error)?;
    // An installation of an older tellify is brought to the schema this copy knows.
    crate::sqlite::migrate(&mut connection)
        .map_err(|error| MigrateError::Sqlite(error.to_string()))?;
    Ok(connection)
}

fn copy_all(
    source: &Connection,
    target: &mut Client,
    progress: &mut dyn FnMut(Progress),
) -> Result<MigrationReport, MigrateError> {
    let mut transaction = target.transaction().map_err(postgres_error)?;
    // Writers (a server already pointed at the target) wait until the copy has committed.
    transaction
        .batch_execute("LOCK TABLE users, events IN EXCLUSIVE MODE")
        .map_err(postgres_error)?;
    let users: i64 = count(&mut transaction, "users")?;
    let events: i64 = count(&mut transaction, "events")?;
    if users > 0 || events > 0 {
        return Err(MigrateError::TargetNotEmpty { users, events });
    }

    let mut report = MigrationReport::default();
    for table in TABLES {
        let copied = copy_table(source, &mut transaction, table, progress)?;
        report.tables.push((table.name, copied));
    }

    let cursor: i64 = source
        .query_row("SELECT cursor FROM processing WHERE id = 1", [], |row| {
            row.get(0)
        })
        .map_err(sqlite_error)?;
    transaction
        .execute("UPDATE processing SET cursor = $1 WHERE id = 1", &[&cursor])
        .map_err(postgres_error)?;
    report.processing_cursor = cursor;

    let sessions: i64 = source
        .query_row("SELECT count(*) FROM web_sessions", [], |row| row.get(0))
        .map_err(sqlite_error)?;
    report.dropped_sessions = sessions as u64;

    // SQLite never hands out a history id again once given (AUTOINCREMENT), even when
    // its row is gone: neither may PostgreSQL, or an exporter would skip the new row.
    let history_floor: i64 = source
        .query_row(
            "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'alert_history'",
            [],
            |row| row.get(0),
        )
        .map_err(sqlite_error)?;
    for (table, column, floor) in [
        ("events", "seq", cursor),
        ("alert_history", "id", history_floor),
        ("deliveries", "seq", 0),
        ("notifications", "id", 0),
        ("delivery_attempts", "id", 0),
        ("audit", "seq", 0),
    ] {
        continue_sequence(&mut transaction, table, column, floor)?;
    }

    transaction.commit().map_err(postgres_error)?;
    Ok(report)
}

fn count(transaction: &mut Transaction<'_>, table: &str) -> Result<i64, MigrateError> {
    let row = transaction
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .map_err(postgres_error)?;
    Ok(row.get(0))
}

/// Sets the identity sequence of `table.column` so its next value is above every copied
/// one and above `floor`.
fn continue_sequence(
    transaction: &mut Transaction<'_>,
    table: &str,
    column: &str,
    floor: i64,
) -> Result<(), MigrateError> {
    let sql = format!(
        "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), greatest(m, 1), m > 0)
         FROM (SELECT greatest(coalesce(max({column}), 0), $1::BIGINT) AS m FROM {table}) AS highest"
    );
    transaction.query_one(&sql, &[&floor]).map_err(|error| {
        MigrateError::Postgres(format!("{table}.{column} sequence: {}", error.describe()))
    })?;
    Ok(())
}

/// How a SQLite value becomes a PostgreSQL one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    /// SQLite's 0/1.
    Bool,
    Bytes,
    /// The alert body's `last_seen`, in milliseconds.
    LastSeenMs,
}

impl Kind {
    fn postgres_type(self) -> Type {
        match self {
            Kind::Text => Type::TEXT,
            Kind::Int | Kind::LastSeenMs => Type::INT8,
            Kind::Bool => Type::BOOL,
            Kind::Bytes => Type::BYTEA,
        }
    }
}

/// One PostgreSQL column and the SQLite expression it is filled from.
struct Column {
    name: &'static str,
    source: &'static str,
    kind: Kind,
}

const fn column(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        source: name,
        kind,
    }
}

struct Table {
    name: &'static str,
    columns: &'static [Column],
    /// The copy order: positions ascending, so the target's indexes fill in order.
    order: &'static str,
}

use Kind::{Bool, Bytes, Int, Text};

/// Every table that is copied, parents before children (the foreign keys are checked as
/// rows arrive).
const TABLES: &[Table] = &[
    Table {
        name: "users",
        columns: &[
            column("id", Text),
            column("name", Text),
            column("email", Text),
            column("timezone", Text),
            column("admin", Bool),
            column("created", Text),
            column("display_name", Text),
            column("password_hash", Text),
        ],
        order: "id",
    },
    Table {
        name: "groups",
        columns: &[
            column("id", Text),
            column("name", Text),
            column("created", Text),
        ],
        order: "id",
    },
    Table {
        name: "group_members",
        columns: &[column("group_id", Text), column("user_id", Text)],
        order: "group_id, user_id",
    },
    Table {
        name: "tokens",
        columns: &[
            column("id", Text),
            column("user_id", Text),
            column("name", Text),
            column("scopes", Text),
            column("hash", Text),
            column("created", Text),
            column("expires", Text),
        ],
        order: "id",
    },
    Table {
        name: "subscriptions",
        columns: &[
            column("id", Text),
            column("kind", Text),
            column("title", Text),
            column("params", Text),
            column("owner_user", Text),
            column("owner_group", Text),
            column("enabled", Bool),
            column("latching", Bool),
            column("created", Text),
            column("updated", Text),
            column("policy", Text),
            column("health", Text),
            column("filter_errors", Text),
        ],
        order: "id",
    },
    Table {
        name: "handler_state",
        columns: &[column("subscription_id", Text), column("state", Text)],
        order: "subscription_id",
    },
    Table {
        name: "server_secrets",
        columns: &[column("name", Text), column("value", Bytes)],
        order: "name",
    },
    Table {
        name: "used_links",
        columns: &[column("nonce", Text), column("expires_ms", Int)],
        order: "nonce",
    },
    Table {
        name: "event_types",
        columns: &[
            column("name", Text),
            column("description", Text),
            column("category", Text),
            column("default_severity", Text),
            column("schema", Text),
            column("dedup_ms", Int),
            column("created", Text),
            column("updated", Text),
        ],
        order: "name",
    },
    Table {
        name: "events",
        columns: &[
            column("seq", Int),
            column("id", Text),
            column("time_ms", Int),
            column("producer", Text),
            column("idempotency_key", Text),
            column("body", Text),
            column("repeat_of", Int),
            column("repeat_count", Int),
        ],
        order: "seq",
    },
    Table {
        name: "dedup_windows",
        columns: &[
            column("dedup_key", Bytes),
            column("event_type", Text),
            column("seq", Int),
            column("until_ms", Int),
        ],
        order: "dedup_key",
    },
    Table {
        name: "event_keys",
        columns: &[
            column("event_type", Text),
            column("producer", Text),
            column("time_ms", Int),
            column("seq", Int),
        ],
        order: "event_type, producer, time_ms, seq",
    },
    Table {
        name: "alerts",
        columns: &[
            column("id", Text),
            column("subscription_id", Text),
            column("group_key", Text),
            column("state", Text),
            column("severity", Text),
            column("cleared", Bool),
            column("owner_user", Text),
            column("owner_group", Text),
            Column {
                name: "last_seen_ms",
                source: "body",
                kind: Kind::LastSeenMs,
            },
            column("body", Text),
        ],
        order: "id",
    },
    Table {
        name: "alert_history",
        columns: &[
            column("id", Int),
            column("alert_id", Text),
            column("at", Text),
            column("actor", Text),
            column("action", Text),
            column("detail", Text),
        ],
        order: "id",
    },
    Table {
        name: "export_positions",
        columns: &[
            column("name", Text),
            column("position", Int),
            column("updated", Text),
        ],
        order: "name",
    },
    Table {
        name: "repeats",
        columns: &[
            column("alert_id", Text),
            column("user_id", Text),
            column("next_ms", Int),
            column("every_ms", Int),
            column("count", Int),
        ],
        order: "alert_id, user_id",
    },
    Table {
        name: "contact_points",
        columns: &[
            column("id", Text),
            column("user_id", Text),
            column("name", Text),
            column("kind", Text),
            column("address", Text),
            column("secret", Text),
            column("created", Text),
        ],
        order: "id",
    },
    Table {
        name: "policies",
        columns: &[
            column("user_id", Text),
            column("name", Text),
            column("rules", Text),
            column("updated", Text),
        ],
        order: "user_id, name",
    },
    Table {
        name: "silences",
        columns: &[
            column("id", Text),
            column("user_id", Text),
            column("filter", Text),
            column("starts", Text),
            column("ends", Text),
            column("comment", Text),
            column("created", Text),
        ],
        order: "id",
    },
    Table {
        name: "deliveries",
        columns: &[
            column("id", Text),
            Column {
                name: "seq",
                source: "rowid",
                kind: Int,
            },
            column("user_id", Text),
            column("contact_point_id", Text),
            column("contact_point", Text),
            column("kind", Text),
            column("status", Text),
            column("attempts", Int),
            column("next_attempt_ms", Int),
            column("last_error", Text),
            column("receipt", Text),
            column("items", Int),
            column("subject", Text),
            column("created", Text),
            column("sent_at", Text),
        ],
        order: "rowid",
    },
    Table {
        name: "notifications",
        columns: &[
            column("id", Int),
            column("idempotency_key", Text),
            column("user_id", Text),
            column("contact_point_id", Text),
            column("alert_id", Text),
            column("owner_group", Text),
            column("transition", Text),
            column("due_ms", Int),
            column("delivery_id", Text),
            column("alert", Text),
            column("created", Text),
        ],
        order: "id",
    },
    Table {
        name: "delivery_attempts",
        columns: &[
            column("id", Int),
            column("delivery_id", Text),
            column("at", Text),
            column("ok", Bool),
            column("detail", Text),
        ],
        order: "id",
    },
    Table {
        name: "audit",
        columns: &[
            column("id", Text),
            Column {
                name: "seq",
                source: "rowid",
                kind: Int,
            },
            column("at", Text),
            column("actor", Text),
            column("action", Text),
            column("subject", Text),
            column("detail", Text),
        ],
        order: "rowid",
    },
];

/// Streams one table from SQLite into PostgreSQL with binary `COPY`; returns the rows.
fn copy_table(
    source: &Connection,
    transaction: &mut Transaction<'_>,
    table: &Table,
    progress: &mut dyn FnMut(Progress),
) -> Result<u64, MigrateError> {
    let total: i64 = source
        .query_row(&format!("SELECT count(*) FROM {}", table.name), [], |row| {
            row.get(0)
        })
        .map_err(sqlite_error)?;
    let total = total as u64;
    progress(Progress {
        table: table.name,
        copied: 0,
        total,
    });

    let sources: Vec<&str> = table.columns.iter().map(|column| column.source).collect();
    let select = format!(
        "SELECT {} FROM {} ORDER BY {}",
        sources.join(", "),
        table.name,
        table.order
    );
    let names: Vec<&str> = table.columns.iter().map(|column| column.name).collect();
    let types: Vec<Type> = table
        .columns
        .iter()
        .map(|column| column.kind.postgres_type())
        .collect();
    let copy = format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        table.name,
        names.join(", ")
    );
    let in_postgres = |error: postgres::Error| {
        MigrateError::Postgres(format!("copying `{}`: {}", table.name, error.describe()))
    };

    let mut statement = source.prepare(&select).map_err(sqlite_error)?;
    let mut rows = statement.query([]).map_err(sqlite_error)?;
    let writer = transaction.copy_in(&copy).map_err(in_postgres)?;
    let mut writer = BinaryCopyInWriter::new(writer, &types);
    let mut copied: u64 = 0;
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        copied += 1;
        let mut values: Vec<Value> = Vec::with_capacity(table.columns.len());
        for (index, column) in table.columns.iter().enumerate() {
            let raw = row.get_ref(index).map_err(sqlite_error)?;
            let value = convert(raw, column.kind).map_err(|problem| MigrateError::BadValue {
                table: table.name,
                column: column.name,
                row: row_name(table, row),
                problem,
            })?;
            values.push(value);
        }
        let parameters: Vec<&(dyn ToSql + Sync)> = values.iter().map(Value::as_sql).collect();
        writer.write(&parameters).map_err(in_postgres)?;
        if copied.is_multiple_of(PROGRESS_EVERY) {
            progress(Progress {
                table: table.name,
                copied,
                total,
            });
        }
    }
    writer.finish().map_err(in_postgres)?;
    if !copied.is_multiple_of(PROGRESS_EVERY) {
        progress(Progress {
            table: table.name,
            copied,
            total,
        });
    }
    Ok(copied)
}

/// A row by its first column, for an error message: `id 01J…`, `seq 42`.
fn row_name(table: &Table, row: &rusqlite::Row<'_>) -> String {
    let key = table.columns[0].name;
    match row.get_ref(0) {
        Ok(ValueRef::Text(text)) => format!("{key} `{}`", String::from_utf8_lossy(text)),
        Ok(ValueRef::Integer(number)) => format!("{key} {number}"),
        Ok(ValueRef::Blob(bytes)) => {
            let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
            format!("{key} x'{hex}'")
        }
        Ok(other) => format!("{key} ({})", other.data_type()),
        Err(error) => format!("{key} unreadable ({error})"),
    }
}

/// One value on its way into a `COPY` row.
enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

impl Value {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Value::Text(value) => value,
            Value::Int(value) => value,
            Value::Bool(value) => value,
            Value::Bytes(value) => value,
        }
    }
}

fn convert(raw: ValueRef<'_>, kind: Kind) -> Result<Value, String> {
    let found = |raw: ValueRef<'_>| format!("expected {kind:?}, found {}", raw.data_type());
    let value = match (kind, raw) {
        (Kind::Text, ValueRef::Null) => Value::Text(None),
        (Kind::Text, ValueRef::Text(bytes)) => Value::Text(Some(
            String::from_utf8(bytes.to_vec()).map_err(|error| format!("not UTF-8: {error}"))?,
        )),
        (Kind::Int, ValueRef::Null) => Value::Int(None),
        (Kind::Int, ValueRef::Integer(number)) => Value::Int(Some(number)),
        (Kind::Bool, ValueRef::Null) => Value::Bool(None),
        (Kind::Bool, ValueRef::Integer(number)) => Value::Bool(Some(number != 0)),
        (Kind::Bytes, ValueRef::Null) => Value::Bytes(None),
        (Kind::Bytes, ValueRef::Blob(bytes) | ValueRef::Text(bytes)) => {
            Value::Bytes(Some(bytes.to_vec()))
        }
        (Kind::LastSeenMs, ValueRef::Text(body)) => Value::Int(Some(last_seen_ms(body)?)),
        (_, other) => return Err(found(other)),
    };
    Ok(value)
}

/// The alert body's `last_seen` in milliseconds, as the PostgreSQL store writes it.
fn last_seen_ms(body: &[u8]) -> Result<i64, String> {
    #[derive(serde::Deserialize)]
    struct LastSeen {
        last_seen: jiff::Timestamp,
    }
    let parsed: LastSeen = serde_json::from_slice(body)
        .map_err(|error| format!("alert body without a readable `last_seen`: {error}"))?;
    Ok(parsed.last_seen.as_millisecond())
}

fn sqlite_error(error: rusqlite::Error) -> MigrateError {
    MigrateError::Sqlite(error.to_string())
}

fn postgres_error(error: postgres::Error) -> MigrateError {
    MigrateError::Postgres(error.describe())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_by_kind_and_mismatches_say_what_was_found() {
        assert!(matches!(
            convert(ValueRef::Integer(1), Kind::Bool),
            Ok(Value::Bool(Some(true)))
        ));
        assert!(matches!(
            convert(ValueRef::Integer(0), Kind::Bool),
            Ok(Value::Bool(Some(false)))
        ));
        assert!(matches!(
            convert(ValueRef::Null, Kind::Text),
            Ok(Value::Text(None))
        ));
        let problem = match convert(ValueRef::Text(b"x"), Kind::Int) {
            Err(problem) => problem,
            Ok(_) => panic!("text must not pass as an integer"),
        };
        assert_eq!(problem, "expected Int, found Text");
        assert!(matches!(
            convert(
                ValueRef::Text(br#"{"last_seen":"2026-01-02T03:04:05.678Z"}"#),
                Kind::LastSeenMs
            ),
            Ok(Value::Int(Some(1_767_323_045_678)))
        ));
    }

    /// The copy list names every table of both schemas except the ones left out on
    /// purpose, so a table added later is not silently left behind.
    #[test]
    fn every_sqlite_table_is_copied_or_deliberately_left_out() {
        let mut connection = Connection::open_in_memory().unwrap();
        crate::sqlite::migrate(&mut connection).unwrap();
        let mut statement = connection
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table'
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .unwrap();
        let tables: Vec<String> = statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let left_out = ["processing", "web_sessions"];
        for table in tables {
            let copied = TABLES.iter().any(|known| known.name == table);
            assert!(
                copied || left_out.contains(&table.as_str()),
                "SQLite table `{table}` is not copied"
            );
        }
    }
}
