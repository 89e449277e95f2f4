//! The PostgreSQL store against the machine's PostgreSQL server (`TELLIFY_TEST_POSTGRES`,
//! default `postgres://postgres@127.0.0.1:5432/test`), each test in a fresh schema.

use tellify_store::postgres::testing::TestDatabase;
use tellify_store::postgres::PostgresStore;

/// The conformance suite, one test per behaviour, each in a fresh schema.
mod conformance {
    use super::{PostgresStore, TestDatabase};

    tellify_store::conformance_tests!(|| async {
        let database = TestDatabase::create().await.unwrap();
        let store = PostgresStore::open(&database.url()).await.unwrap();
        (store, database)
    });
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
