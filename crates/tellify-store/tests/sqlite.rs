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
