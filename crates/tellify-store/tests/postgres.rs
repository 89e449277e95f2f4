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
