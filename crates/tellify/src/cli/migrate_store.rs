//! `tellify migrate-store --from sqlite://DIR --to postgres://…`: moves a stopped
//! installation's SQLite store into an empty PostgreSQL database, for running several
//! nodes. The copy itself is the store crate's ([`tellify_store::migrate`]): one
//! PostgreSQL transaction, all or nothing. Here: the addresses, the data directory's lock
//! (no server may write the SQLite store meanwhile), progress on stderr and the counts
//! on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tellify_store::migrate::{sqlite_to_postgres, MigrateError, Progress};

use super::output::{print, Table};
use crate::config::{redact_address, Settings, StoreLocation};
use crate::data_lock::DataLock;

#[derive(Args, Debug)]
pub struct MigrateStoreArgs {
    /// The SQLite store to copy: `sqlite://DIRECTORY` or a plain directory path (the
    /// stopped server's `--data`).
    #[arg(long, value_name = "SQLITE")]
    from: String,
    /// The PostgreSQL store to fill: `postgres://user:password@host:port/database`. It
    /// must hold no users and no events; its schema is created when missing.
    #[arg(long, value_name = "POSTGRES")]
    to: String,
}

pub async fn run(args: MigrateStoreArgs) -> anyhow::Result<ExitCode> {
    let directory = sqlite_directory(&args.from)?;
    let address = postgres_address(&args.to)?;
    let shown = redact_address(&address);
    if !directory
        .join(tellify_store::sqlite::DATABASE_FILE)
        .is_file()
    {
        anyhow::bail!(
            "--from: no tellify store in {} (expected {})",
            directory.display(),
            directory
                .join(tellify_store::sqlite::DATABASE_FILE)
                .display()
        );
    }
    let _lock = DataLock::acquire(&directory, "migrate the store")?;
    eprintln!("copying {} to {shown} …", directory.display());

    let source = directory.clone();
    let copy = tokio::task::spawn_blocking(move || {
        sqlite_to_postgres(&source, &address, &mut show_progress)
    })
    .await?;
    let report = match copy {
        Ok(report) => report,
        Err(error @ MigrateError::TargetNotEmpty { .. }) => {
            anyhow::bail!("cannot migrate into {shown}: {error}")
        }
        Err(error) => anyhow::bail!(
            "cannot migrate {} to {shown}: {error}; nothing was written",
            directory.display()
        ),
    };

    let mut table = Table::new(&["TABLE", "ROWS"]);
    for (name, rows) in &report.tables {
        table.row(vec![name.to_string(), rows.to_string()]);
    }
    print(&table.render())?;
    print(&format!(
        "processing cursor {}\ndropped {} dashboard sessions (people sign in again)\n",
        report.processing_cursor, report.dropped_sessions
    ))?;
    eprintln!(
        "done: start tellify with --store '{shown}' (or `store` in tellify.toml); {} is left as it was",
        directory.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `sqlite://DIR` or a plain path.
fn sqlite_directory(from: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = from.strip_prefix("sqlite://") {
        if path.is_empty() {
            anyhow::bail!("--from: sqlite:// needs a directory (sqlite://DIRECTORY)");
        }
        return Ok(PathBuf::from(path));
    }
    if from.contains("://") {
        anyhow::bail!(
            "--from: must be sqlite://DIRECTORY or a directory path (is {})",
            redact_address(from)
        );
    }
    Ok(PathBuf::from(from))
}

/// A `postgres://` (or `postgresql://`) address, checked the way `--store` is.
fn postgres_address(to: &str) -> anyhow::Result<String> {
    let settings = Settings {
        store: Some(to.to_string()),
        ..Settings::default()
    };
    match settings.store_location() {
        Ok(StoreLocation::Postgres(address)) => Ok(address),
        Ok(StoreLocation::Sqlite(_)) => anyhow::bail!(
            "--to: must be postgres://user:password@host:port/database (is {})",
            redact_address(to)
        ),
        Err(problem) => anyhow::bail!("--to: {problem}"),
    }
}

/// One stderr line per report of a table with rows: its end, and every
/// [`tellify_store::migrate::PROGRESS_EVERY`] rows of a long one.
fn show_progress(progress: Progress) {
    if progress.copied > 0 {
        eprintln!(
            "  {}: {} of {}",
            progress.table, progress.copied, progress.total
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_a_sqlite_address_or_a_path_and_the_target_postgres() {
        assert_eq!(
            sqlite_directory("sqlite:///var/lib/tellify").unwrap(),
            PathBuf::from("/var/lib/tellify")
        );
        assert_eq!(sqlite_directory("./data").unwrap(), PathBuf::from("./data"));
        let wrong = sqlite_directory("postgres://u:pw@db/x").unwrap_err();
        assert_eq!(
            wrong.to_string(),
            "--from: must be sqlite://DIRECTORY or a directory path (is postgres://u:***@db/x)"
        );
        assert!(postgres_address("postgresql://u@db:5432/x").is_ok());
        let not_postgres = postgres_address("sqlite:///tmp/x").unwrap_err();
        assert!(
            not_postgres
                .to_string()
                .starts_with("--to: must be postgres://"),
            "{not_postgres}"
        );
    }
}
