use tellify_store::sqlite::SqliteStore;
use tellify_store::Store;

/// The conformance suite, one test per behaviour, each on a fresh database on disk.
mod conformance {
    use super::SqliteStore;

    tellify_store::conformance_tests!(|| async {
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(directory.path()).unwrap();
        (store, directory)
    });
}

#[tokio::test]
async fn appended_events_survive_reopening() {
    let directory = tempfile::tempdir().unwrap();
    let id = {
        let store = SqliteStore::open(directory.path()).unwrap();
        let input = tellify_model::EventInput {
            message: Some("kept".to_string()),
            ..Default::default()
        };
        let event = tellify_model::StoredEvent::from_input(input, None, jiff::Timestamp::now(), 0);
        store.append_events(vec![event]).await.unwrap()[0]
            .id
            .clone()
    };
    let store = SqliteStore::open(directory.path()).unwrap();
    assert_eq!(
        store.event(&id).await.unwrap().unwrap().message.as_deref(),
        Some("kept")
    );
}

#[tokio::test]
async fn the_feed_delivers_appends_in_log_order_without_duplicates() {
    let directory = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(directory.path()).unwrap();
    let mut feed = store.follow_appends().expect("sqlite feeds appends");
    let event = |message: &str, key: Option<&str>| {
        let input = tellify_model::EventInput {
            message: Some(message.to_string()),
            idempotency_key: key.map(str::to_string),
            ..Default::default()
        };
        tellify_model::StoredEvent::from_input(input, Some("p".into()), jiff::Timestamp::now(), 0)
    };
    let first = store
        .append_events(vec![event("a", Some("k")), event("b", None)])
        .await
        .unwrap();
    store
        .append_events(vec![event("a again", Some("k")), event("c", None)])
        .await
        .unwrap();
    let mut fed = Vec::new();
    while fed.len() < 3 {
        let batch = tokio::time::timeout(std::time::Duration::from_secs(5), feed.recv())
            .await
            .unwrap()
            .unwrap();
        fed.extend(batch);
    }
    let messages: Vec<&str> = fed.iter().filter_map(|e| e.message.as_deref()).collect();
    assert_eq!(
        messages,
        vec!["a", "b", "c"],
        "the duplicate is not fed again"
    );
    assert_eq!(fed[0].seq, first[0].seq);
    assert!(fed.windows(2).all(|pair| pair[1].seq == pair[0].seq + 1));
}

#[tokio::test]
async fn a_repeat_is_fed_exactly_as_the_log_presents_it_after_a_restart() {
    let directory = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(directory.path()).unwrap();
    let start = jiff::Timestamp::now();
    store
        .put_event_type(tellify_store::EventType {
            name: "disk".to_string(),
            description: String::new(),
            category: None,
            default_severity: None,
            schema: None,
            dedup_interval: Some(jiff::SignedDuration::from_mins(10)),
            created: start,
            updated: start,
        })
        .await
        .unwrap();
    let mut feed = store.follow_appends().expect("sqlite feeds appends");
    let event = |seconds: i64| {
        let input = tellify_model::EventInput {
            event_type: Some("disk".to_string()),
            message: Some("full".to_string()),
            ..Default::default()
        };
        let at = start + jiff::SignedDuration::from_secs(seconds);
        tellify_model::StoredEvent::from_input(input, Some("p".into()), at, 0)
    };
    let appended = store
        .append_events(vec![event(0), event(1), event(2)])
        .await
        .unwrap();
    assert!(!appended[0].repeat && appended[1].repeat && appended[2].repeat);
    let fed = tokio::time::timeout(std::time::Duration::from_secs(5), feed.recv())
        .await
        .unwrap()
        .unwrap();
    drop(store);
    // What a restarted worker reads from the log is what the feed handed over.
    let reopened = SqliteStore::open(directory.path()).unwrap();
    let logged = reopened.events_after(0, 10).await.unwrap();
    let fed: Vec<tellify_model::StoredEvent> = fed.iter().map(|e| (**e).clone()).collect();
    assert_eq!(fed, logged);
    assert_eq!(logged.len(), 3);
    assert!(logged.iter().all(|e| e.id == appended[0].id));
    let listed = reopened
        .query_events(tellify_store::EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].repeat_count, 2);
}

#[tokio::test]
async fn a_version_4_database_gains_health_and_token_expiry_and_keeps_its_tokens() {
    let directory = tempfile::tempdir().unwrap();
    let user = tellify_store::User {
        id: "u1".to_string(),
        name: "ann".to_string(),
        email: None,
        display_name: None,
        timezone: "UTC".to_string(),
        admin: false,
        created: "2026-11-23T09:00:00Z".parse().unwrap(),
    };
    let token = tellify_store::Token {
        id: "t1".to_string(),
        user_id: "u1".to_string(),
        name: "old".to_string(),
        scopes: vec!["user".to_string()],
        hash: "abc".to_string(),
        created: "2026-11-23T09:00:00Z".parse().unwrap(),
        expires: None,
    };
    {
        let store = SqliteStore::open(directory.path()).unwrap();
        store.create_user(user).await.unwrap();
        store.create_token(token.clone()).await.unwrap();
    }
    // Back to the schema before migrations 5 to 9, as an older tellify left it.
    let connection = rusqlite::Connection::open(directory.path().join("tellify.db")).unwrap();
    connection
        .execute_batch(
            "ALTER TABLE tokens DROP COLUMN expires; ALTER TABLE subscriptions DROP COLUMN health;
             DROP INDEX events_type; DROP TABLE event_keys;
             ALTER TABLE subscriptions DROP COLUMN filter_errors;
             ALTER TABLE users DROP COLUMN display_name;
             ALTER TABLE users DROP COLUMN password_hash; DROP TABLE web_sessions;
             DROP TABLE server_secrets; DROP TABLE used_links;
             DROP INDEX alerts_subscription_state; DROP INDEX alerts_acked_by;
             DROP INDEX alerts_shelved_by;
             PRAGMA user_version = 4;",
        )
        .unwrap();
    drop(connection);

    let store = SqliteStore::open(directory.path()).unwrap();
    assert_eq!(store.token_by_hash("abc").await.unwrap(), Some(token));
    let connection = rusqlite::Connection::open(directory.path().join("tellify.db")).unwrap();
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 13);
}

#[tokio::test]
async fn a_version_7_database_finds_its_alerta_events_by_producer_after_the_upgrade() {
    use tellify_model::{EventInput, Fields, StoredEvent};
    let directory = tempfile::tempdir().unwrap();
    let at = |seconds: i64| jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap();
    let alert = |producer: &str, resource: &str, seconds: i64| {
        let mut fields = Fields::new();
        fields.insert("resource".into(), serde_json::json!(resource));
        let input = EventInput {
            event_type: Some("alerta".to_string()),
            message: Some(format!("{producer} {resource}")),
            fields,
            ..Default::default()
        };
        StoredEvent::from_input(input, Some(producer.to_string()), at(seconds), 0)
    };
    {
        let store = SqliteStore::open(directory.path()).unwrap();
        store
            .append_events(vec![
                alert("ann", "web01", 1),
                alert("bob", "web01", 2),
                alert("ann", "web02", 3),
            ])
            .await
            .unwrap();
    }
    // As a tellify before migration 8 left it: no keys recorded (nor display names).
    let connection = rusqlite::Connection::open(directory.path().join("tellify.db")).unwrap();
    connection
        .execute_batch(
            "DROP TABLE event_keys; ALTER TABLE subscriptions DROP COLUMN filter_errors;
             ALTER TABLE users DROP COLUMN display_name;
             ALTER TABLE users DROP COLUMN password_hash; DROP TABLE web_sessions;
             DROP TABLE server_secrets; DROP TABLE used_links;
             DROP INDEX alerts_subscription_state; DROP INDEX alerts_acked_by;
             DROP INDEX alerts_shelved_by;
             PRAGMA user_version = 7;",
        )
        .unwrap();
    drop(connection);

    let store = SqliteStore::open(directory.path()).unwrap();
    store
        .append_events(vec![alert("ann", "web01", 4)])
        .await
        .unwrap();
    let found = store
        .keyed_events(tellify_store::KeyedEventQuery {
            event_type: "alerta".to_string(),
            producer: Some("ann".to_string()),
            since: at(0),
            equal: vec![("resource".to_string(), "web01".to_string())],
            names: None,
            newest_per: None,
            limit: 10,
        })
        .await
        .unwrap();
    let messages: Vec<_> = found
        .into_iter()
        .filter_map(|event| event.message)
        .collect();
    assert_eq!(
        messages,
        vec!["ann web01", "ann web01"],
        "the upgrade records the stored event's key, the append the new one's"
    );
    let connection = rusqlite::Connection::open(directory.path().join("tellify.db")).unwrap();
    let keys: i64 = connection
        .query_row("SELECT count(*) FROM event_keys", [], |row| row.get(0))
        .unwrap();
    assert_eq!(keys, 4, "one key per alerta event with a producer");
}

/// The checkpoint sequence number in the WAL file's header: SQLite raises it each time the
/// WAL starts over from the beginning of the file.
fn wal_generation(directory: &std::path::Path) -> Option<u32> {
    let wal = std::fs::read(directory.join("tellify.db-wal")).ok()?;
    let field = wal.get(12..16)?;
    Some(u32::from_be_bytes(field.try_into().ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_starts_over_while_producers_never_pause() {
    let directory = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(directory.path()).unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Eight producers that never pause: the writer always has the next group commit queued,
    // so a checkpoint on another connection never finds every frame copied back.
    let producers: Vec<_> = (0..8)
        .map(|producer| {
            let store = store.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut appended = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let batch = (0..20)
                        .map(|n| {
                            let input = tellify_model::EventInput {
                                message: Some(format!(
                                    "{producer}-{appended}-{n} {}",
                                    "x".repeat(400)
                                )),
                                ..Default::default()
                            };
                            tellify_model::StoredEvent::from_input(
                                input,
                                None,
                                jiff::Timestamp::now(),
                                0,
                            )
                        })
                        .collect();
                    appended += store.append_events(batch).await.unwrap().len();
                }
                appended
            })
        })
        .collect();
    let mut first = None;
    let mut starts = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while starts < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let Some(generation) = wal_generation(directory.path()) else {
            continue;
        };
        match first {
            None => first = Some(generation),
            Some(seen) if generation != seen => {
                starts += 1;
                first = Some(generation);
            }
            Some(_) => {}
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut appended = 0;
    for producer in producers {
        appended += producer.await.unwrap();
    }
    assert_eq!(
        starts, 2,
        "the WAL started over {starts} times in 30 s of steady appends ({appended} events)"
    );
    // Starting over lost nothing: every acknowledged event is still there.
    let stored: i64 = rusqlite::Connection::open(directory.path().join("tellify.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .unwrap();
    assert_eq!(stored as usize, appended);
}
