//! The PostgreSQL store against the machine's PostgreSQL server (`TELLIFY_TEST_POSTGRES`,
//! default `postgres://postgres@127.0.0.1:5432/test`), each test in a fresh schema.

use tellify_store::postgres::testing::TestDatabase;
use tellify_store::postgres::PostgresStore;
use tellify_store::Store;

/// The conformance suite, one test per behaviour, each in a fresh schema.
mod conformance {
    use super::{PostgresStore, TestDatabase};

    tellify_store::conformance_tests!(|| async {
        let database = TestDatabase::create().await.unwrap();
        let store = PostgresStore::open(&database.url()).await.unwrap();
        (store, database)
    });
}

/// A lease passes from holder to holder only once it has expired (or was given up), and
/// its fencing number grows each time it changes hands.
#[tokio::test]
async fn a_lease_changes_hands_only_when_it_expires_and_its_fence_grows() {
    let database = TestDatabase::create().await.unwrap();
    let first = PostgresStore::open(&database.url()).await.unwrap();
    let second = PostgresStore::open(&database.url()).await.unwrap();
    let at = |seconds: i64| jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap();
    let a = first
        .acquire_lease("processing", "a", at(0), at(6))
        .await
        .unwrap();
    assert_eq!(a, Some(1));
    assert_eq!(
        second
            .acquire_lease("processing", "b", at(5), at(11))
            .await
            .unwrap(),
        None,
        "b must wait while a's lease runs"
    );
    assert_eq!(
        first
            .acquire_lease("processing", "a", at(5), at(11))
            .await
            .unwrap(),
        Some(1),
        "a renews under the same fencing number"
    );
    assert_eq!(
        second
            .acquire_lease("processing", "b", at(11), at(17))
            .await
            .unwrap(),
        Some(2),
        "once a's lease expired, b takes it with a higher fence"
    );
    assert_eq!(
        first
            .acquire_lease("processing", "a", at(12), at(18))
            .await
            .unwrap(),
        None,
        "a, back from a pause, does not get it back while b holds it"
    );
    second.release_lease("processing", "b").await.unwrap();
    assert_eq!(
        first
            .acquire_lease("processing", "a", at(13), at(19))
            .await
            .unwrap(),
        Some(3),
        "a lease given up is taken at once"
    );
    assert_eq!(
        first
            .acquire_lease("other", "b", at(13), at(19))
            .await
            .unwrap(),
        Some(1),
        "each lease is its own"
    );
}

/// A processing commit under a lease that passed to another node writes nothing.
#[tokio::test]
async fn a_commit_under_a_lease_that_moved_on_is_refused_and_writes_nothing() {
    let database = TestDatabase::create().await.unwrap();
    let store = PostgresStore::open(&database.url()).await.unwrap();
    let at = |seconds: i64| jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap();
    let fence = store
        .acquire_lease("processing", "a", at(0), at(6))
        .await
        .unwrap()
        .unwrap();
    let lease = |fence: i64| tellify_store::LeaseFence {
        name: "processing".to_string(),
        holder: "a".to_string(),
        fence,
    };
    store
        .commit_processing(tellify_store::ProcessingCommit {
            cursor: 5,
            lease: Some(lease(fence)),
            ..Default::default()
        })
        .await
        .expect("the holder commits");
    assert_eq!(store.load_processing().await.unwrap().cursor, 5);
    let taken = store
        .acquire_lease("processing", "b", at(7), at(13))
        .await
        .unwrap();
    assert_eq!(taken, Some(fence + 1));
    let refused = store
        .commit_processing(tellify_store::ProcessingCommit {
            cursor: 9,
            lease: Some(lease(fence)),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(refused, Err(tellify_store::StoreError::Conflict(_))),
        "a fenced commit is a conflict: {refused:?}"
    );
    assert_eq!(
        store.load_processing().await.unwrap().cursor,
        5,
        "the fenced commit wrote nothing"
    );
}

#[tokio::test]
async fn nodes_starting_at_once_migrate_once_and_all_open() {
    let database = TestDatabase::create().await.unwrap();
    let url = database.url();
    let starting: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::open(&url).await })
        })
        .collect();
    for node in starting {
        node.await.unwrap().expect("every node opens the store");
    }
    let versions = tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let rows = client
            .query("SELECT version FROM tellify_schema", &[])
            .unwrap();
        rows.iter()
            .map(|row| row.get::<_, i32>(0))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(versions, vec![1], "one schema row, at the latest version");
}

// ---- event log ----

mod event_log {
    use std::collections::BTreeSet;

    use jiff::{SignedDuration, Timestamp};
    use tellify_model::{EventInput, StoredEvent};
    use tellify_store::postgres::testing::TestDatabase;
    use tellify_store::postgres::PostgresStore;
    use tellify_store::{EventType, Store};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_800_000_000 + seconds)
    }

    fn event(event_type: Option<&str>, message: &str, key: Option<&str>) -> StoredEvent {
        let input = EventInput {
            event_type: event_type.map(str::to_string),
            message: Some(message.to_string()),
            idempotency_key: key.map(str::to_string),
            ..Default::default()
        };
        StoredEvent::from_input(input, Some("producer".to_string()), at(0), 0)
    }

    /// `count` stores on one database, each with its own connections, like nodes.
    async fn nodes(database: &TestDatabase, count: usize) -> Vec<PostgresStore> {
        let mut stores = Vec::new();
        for _ in 0..count {
            stores.push(PostgresStore::open(&database.url()).await.unwrap());
        }
        stores
    }

    #[tokio::test]
    async fn concurrent_appends_with_one_idempotency_key_store_one_event() {
        let database = TestDatabase::create().await.unwrap();
        let stores = nodes(&database, 4).await;
        let mut appends = Vec::new();
        for task in 0..16 {
            let store = stores[task % stores.len()].clone();
            appends.push(tokio::spawn(async move {
                store
                    .append_events(vec![event(None, &format!("try {task}"), Some("once"))])
                    .await
                    .unwrap()
                    .remove(0)
            }));
        }
        let mut answers = Vec::new();
        for append in appends {
            answers.push(append.await.unwrap());
        }
        let stored: Vec<_> = answers.iter().filter(|a| !a.duplicate).collect();
        assert_eq!(stored.len(), 1, "exactly one append stores it: {answers:?}");
        assert!(
            answers
                .iter()
                .all(|a| a.id == stored[0].id && a.seq == stored[0].seq),
            "every duplicate answers with the stored event: {answers:?}"
        );
        let log = stores[0].events_after(0, 100).await.unwrap();
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0].id, stored[0].id);
    }

    #[tokio::test]
    async fn a_duplicate_inside_one_batch_answers_with_the_first() {
        let database = TestDatabase::create().await.unwrap();
        let store = PostgresStore::open(&database.url()).await.unwrap();
        let appended = store
            .append_events(vec![
                event(None, "first", Some("k")),
                event(None, "other", None),
                event(None, "retry", Some("k")),
            ])
            .await
            .unwrap();
        assert!(!appended[0].duplicate && !appended[1].duplicate);
        assert!(appended[2].duplicate);
        assert_eq!(appended[2].id, appended[0].id);
        assert_eq!(appended[2].seq, appended[0].seq);
        assert_eq!(store.events_after(0, 100).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_failed_append_stores_none_of_its_events() {
        let database = TestDatabase::create().await.unwrap();
        let store = PostgresStore::open(&database.url()).await.unwrap();
        let taken = event(None, "taken", None);
        store.append_events(vec![taken.clone()]).await.unwrap();
        // The second event reuses a stored id without an idempotency key: a conflict, and
        // the first event of the batch is not kept either.
        let failed = store
            .append_events(vec![event(None, "fresh", None), taken])
            .await;
        assert!(failed.is_err(), "{failed:?}");
        let log = store.events_after(0, 100).await.unwrap();
        let messages: Vec<_> = log.iter().filter_map(|e| e.message.as_deref()).collect();
        assert_eq!(messages, ["taken"]);
    }

    #[tokio::test]
    async fn positions_from_concurrent_appends_are_read_in_order_and_none_is_missed() {
        let database = TestDatabase::create().await.unwrap();
        let stores = nodes(&database, 4).await;
        let reader = stores[0].clone();
        let mut writers = Vec::new();
        for (node, store) in stores.iter().enumerate() {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for batch in 0..15 {
                    let events = (0..3)
                        .map(|n| event(None, &format!("{node}.{batch}.{n}"), None))
                        .collect();
                    for appended in store.append_events(events).await.unwrap() {
                        seqs.push(appended.seq);
                    }
                }
                seqs
            }));
        }
        // A reader resuming after the last position it saw, while the writers run.
        let follow = tokio::spawn(async move {
            let mut seen: Vec<i64> = Vec::new();
            let expected = 4 * 15 * 3;
            while seen.len() < expected {
                let after = seen.last().copied().unwrap_or(0);
                let page = reader.events_after(after, 7).await.unwrap();
                if page.is_empty() {
                    tokio::task::yield_now().await;
                }
                seen.extend(page.iter().map(|event| event.seq));
            }
            seen
        });
        let mut written = BTreeSet::new();
        for writer in writers {
            written.extend(writer.await.unwrap());
        }
        let seen = tokio::time::timeout(std::time::Duration::from_secs(15), follow)
            .await
            .expect("the reader sees every event")
            .unwrap();
        assert!(
            seen.windows(2).all(|pair| pair[0] < pair[1]),
            "strictly increasing: {seen:?}"
        );
        let seen: BTreeSet<i64> = seen.into_iter().collect();
        assert_eq!(seen, written, "the reader missed none and saw nothing else");
        assert_eq!(
            stores[1].last_seq().await.unwrap(),
            *written.last().unwrap()
        );
    }

    #[tokio::test]
    async fn concurrent_identical_events_inside_a_window_store_one_first_occurrence() {
        let database = TestDatabase::create().await.unwrap();
        let stores = nodes(&database, 3).await;
        stores[0]
            .put_event_type(EventType {
                name: "disk".to_string(),
                description: "a disk fills".to_string(),
                category: None,
                default_severity: None,
                schema: None,
                dedup_interval: Some(SignedDuration::from_secs(600)),
                created: at(0),
                updated: at(0),
            })
            .await
            .unwrap();
        let mut appends = Vec::new();
        for task in 0..12 {
            let store = stores[task % stores.len()].clone();
            appends.push(tokio::spawn(async move {
                store
                    .append_events(vec![event(Some("disk"), "disk full", None)])
                    .await
                    .unwrap()
                    .remove(0)
            }));
        }
        let mut answers = Vec::new();
        for append in appends {
            answers.push(append.await.unwrap());
        }
        let firsts: Vec<_> = answers.iter().filter(|a| !a.repeat).collect();
        assert_eq!(firsts.len(), 1, "{answers:?}");
        assert!(answers.iter().all(|a| a.id == firsts[0].id && !a.duplicate));
        let listed = stores[1].event(&firsts[0].id).await.unwrap().unwrap();
        assert_eq!(listed.repeat_count, 11);
        assert_eq!(stores[2].events_after(0, 100).await.unwrap().len(), 12);
    }
}
