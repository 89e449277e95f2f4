use tellify_store::sqlite::SqliteStore;
use tellify_store::Store;

#[tokio::test]
async fn sqlite_passes_the_conformance_suite() {
    let directory = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(directory.path()).unwrap();
    tellify_store::conformance::run_all(&store).await;
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
