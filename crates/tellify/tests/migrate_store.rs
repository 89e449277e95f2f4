//! `tellify migrate-store`, run as the real binary the way an operator would: a SQLite
//! data directory moves into a fresh PostgreSQL schema (`TELLIFY_TEST_POSTGRES`, default
//! the machine's server); a second run is refused because the target is no longer
//! empty, and a directory a server holds is refused before anything is read.

use std::process::Output;
use std::time::Duration;

use tellify::data_lock::DataLock;
use tellify_model::{EventInput, StoredEvent};
use tellify_store::postgres::testing::TestDatabase;
use tellify_store::postgres::PostgresStore;
use tellify_store::sqlite::SqliteStore;
use tellify_store::{Store, User};

const BIN: &str = env!("CARGO_BIN_EXE_tellify");
/// Longest one run of the command may take before the test fails instead of hanging.
const RUN_LIMIT: Duration = Duration::from_secs(60);

async fn migrate_store(from: &str, to: &str) -> Output {
    let mut command = tokio::process::Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TELLIFY_") {
            command.env_remove(name);
        }
    }
    command
        .args(["migrate-store", "--from", from, "--to", to])
        .kill_on_drop(true);
    tokio::time::timeout(RUN_LIMIT, command.output())
        .await
        .expect("migrate-store finishes in time")
        .expect("run migrate-store")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn migrate_store_moves_a_data_directory_and_refuses_a_target_that_is_not_empty() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    {
        let sqlite = SqliteStore::open(&data).expect("sqlite store");
        sqlite
            .create_user(User {
                id: tellify_model::new_id(),
                name: "ann".to_string(),
                email: None,
                display_name: None,
                timezone: "UTC".to_string(),
                admin: true,
                created: jiff::Timestamp::now(),
            })
            .await
            .expect("user");
        let events: Vec<StoredEvent> = (0..3)
            .map(|n| {
                let input = EventInput {
                    message: Some(format!("event {n}")),
                    ..Default::default()
                };
                StoredEvent::from_input(input, Some("ci".to_string()), jiff::Timestamp::now(), 0)
            })
            .collect();
        sqlite.append_events(events).await.expect("events");
    }
    let database = TestDatabase::create().await.expect("test database");
    // Trust authentication ignores the password: it is here to be hidden in messages.
    let target =
        database
            .url()
            .replacen("postgres://postgres@", "postgres://postgres:topsecret@", 1);
    let from = format!("sqlite://{}", data.display());

    let moved = migrate_store(&from, &target).await;
    let (stdout, stderr) = (text(&moved.stdout), text(&moved.stderr));
    assert!(moved.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert!(lines.contains(&vec!["TABLE", "ROWS"]), "{stdout}");
    assert!(lines.contains(&vec!["users", "1"]), "{stdout}");
    assert!(lines.contains(&vec!["events", "3"]), "{stdout}");
    assert!(lines.contains(&vec!["alerts", "0"]), "{stdout}");
    assert!(stdout.contains("dropped 0 dashboard sessions"), "{stdout}");
    assert!(stderr.contains("events: 3 of 3"), "progress: {stderr}");
    assert!(
        stderr.contains("done: start tellify with --store"),
        "{stderr}"
    );
    assert!(!stderr.contains("topsecret"), "{stderr}");

    let postgres = PostgresStore::open(&database.url()).await.expect("open");
    assert!(postgres.user_by_name("ann").await.expect("user").is_some());
    assert_eq!(postgres.last_seq().await.expect("last seq"), 3);

    // Again: the target now holds ann and three events.
    let again = migrate_store(data.to_str().expect("utf-8 path"), &target).await;
    let stderr = text(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot migrate into postgres://postgres:***@"),
        "{stderr}"
    );
    assert!(stderr.contains("it holds 1 users and 3 events"), "{stderr}");
    assert!(!stderr.contains("topsecret"), "{stderr}");
    assert!(text(&again.stdout).is_empty());
    assert_eq!(postgres.list_users().await.expect("users").len(), 1);

    // A directory a server holds is not read at all.
    let fresh = TestDatabase::create().await.expect("test database");
    let held = DataLock::acquire(&data, "start").expect("lock");
    let refused = migrate_store(&from, &fresh.url()).await;
    drop(held);
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("cannot migrate the store: a tellify server is running"),
        "{stderr}"
    );
}
