//! Policies are stored typed: what is written is read back as the same parsed `Policy`,
//! one saved under lower floors than today's still reads, and a row that no longer parses
//! at all is skipped rather than failing everyone's listing.

use jiff::SignedDuration;
use serde_json::json;
use tellify_engine::policy::{Policy, PolicyLimits};
use tellify_store::sqlite::SqliteStore;
use tellify_store::{PolicyRecord, Store, User};

fn record(
    user_id: &str,
    name: &str,
    rules: serde_json::Value,
    limits: &PolicyLimits,
) -> PolicyRecord {
    PolicyRecord {
        user_id: user_id.to_string(),
        name: name.to_string(),
        policy: Policy::parse_with(&rules, limits).expect("valid policy"),
        updated: "2026-11-23T09:00:00Z".parse().expect("time"),
    }
}

#[tokio::test]
async fn policies_read_back_typed_and_an_unreadable_one_is_skipped() {
    let directory = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(directory.path()).expect("store");
    store
        .create_user(User {
            id: "u1".to_string(),
            name: "ann".to_string(),
            email: None,
            display_name: None,
            timezone: "UTC".to_string(),
            admin: false,
            created: "2026-11-23T09:00:00Z".parse().expect("time"),
        })
        .await
        .expect("user");
    let pager = record(
        "u1",
        "pager",
        json!({"rules": [{"contact_points": ["phone"], "repeat": "1h", "mode": {"digest": "10m"}}]}),
        &PolicyLimits::default(),
    );
    // Saved while the operator's floor was 10 seconds.
    let low_floors =
        PolicyLimits::with_floors(SignedDuration::from_secs(10), SignedDuration::from_secs(10));
    let eager = record(
        "u1",
        "eager",
        json!({"rules": [{"contact_points": ["phone"], "repeat": "30s"}]}),
        &low_floors,
    );
    let broken = record(
        "u1",
        "broken",
        json!({"rules": [{"contact_points": ["phone"]}]}),
        &PolicyLimits::default(),
    );
    for policy in [&pager, &eager, &broken] {
        assert!(store.put_policy(policy.clone()).await.expect("put"));
    }
    assert_eq!(
        store.policy("u1", "pager").await.expect("read"),
        Some(pager.clone())
    );
    assert_eq!(
        store.policy("u1", "eager").await.expect("read"),
        Some(eager.clone()),
        "a policy below today's floors still reads; the planner raises it"
    );
    drop(store);

    let connection =
        rusqlite::Connection::open(directory.path().join("tellify.db")).expect("database");
    connection
        .execute(
            "UPDATE policies SET rules = '{\"rules\": 5}' WHERE name = 'broken'",
            [],
        )
        .expect("corrupt one row");
    drop(connection);

    let store = SqliteStore::open(directory.path()).expect("store");
    assert_eq!(store.policy("u1", "broken").await.expect("read"), None);
    let names: Vec<String> = store
        .list_policies("u1")
        .await
        .expect("list")
        .into_iter()
        .map(|policy| policy.name)
        .collect();
    assert_eq!(names, vec!["eager".to_string(), "pager".to_string()]);
}
