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

// ---- alerts and processing ----

mod alerts {
    use jiff::{SignedDuration, Timestamp};
    use serde_json::json;
    use tellify_engine::alerts::{Action, ENGINE_ACTOR};
    use tellify_engine::handlers::AlertOutput;
    use tellify_model::{Fields, Severity};
    use tellify_store::postgres::testing::TestDatabase;
    use tellify_store::postgres::PostgresStore;
    use tellify_store::{OutputToApply, ProcessingCommit, Store, Subscription, User};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_800_000_000 + seconds)
    }

    /// Two nodes on one fresh database, with `bob` and his subscription.
    async fn two_nodes() -> (PostgresStore, PostgresStore, Subscription, TestDatabase) {
        let database = TestDatabase::create().await.unwrap();
        let first = PostgresStore::open(&database.url()).await.unwrap();
        let second = PostgresStore::open(&database.url()).await.unwrap();
        let bob = User {
            id: tellify_model::new_id(),
            name: "bob".to_string(),
            email: None,
            display_name: None,
            timezone: "UTC".to_string(),
            admin: false,
            created: at(0),
        };
        first.create_user(bob.clone()).await.unwrap();
        let subscription = Subscription {
            id: tellify_model::new_id(),
            kind: "match".to_string(),
            title: "builds".to_string(),
            params: json!({"filter": "true"}),
            owner_user: bob.id.clone(),
            owner_group: None,
            enabled: true,
            latching: false,
            policy: None,
            created: at(0),
            updated: at(0),
            health: None,
            filter_errors: None,
        };
        first
            .insert_subscription(subscription.clone())
            .await
            .unwrap();
        (first, second, subscription, database)
    }

    fn fire(
        subscription: &Subscription,
        key: &str,
        seconds: i64,
        severity: Severity,
    ) -> ProcessingCommit {
        ProcessingCommit {
            cursor: seconds,
            outputs: vec![OutputToApply {
                origin: subscription.origin(),
                output: AlertOutput::Fire {
                    group_key: key.to_string(),
                    severity,
                    message: "m".to_string(),
                    fields: Fields::new(),
                    event_id: None,
                },
                at: at(seconds),
            }],
            ..Default::default()
        }
    }

    /// A person shelving and unshelving an alert on one node while processing commits on
    /// another keep raising and lowering its severity: both kinds of change are kept, in
    /// the history and in the alert.
    #[tokio::test]
    async fn a_persons_actions_and_processing_commits_on_one_alert_lose_nothing() {
        const ROUNDS: i64 = 20;
        let (engine, person, subscription, _database) = two_nodes().await;
        let first = engine
            .commit_processing(fire(&subscription, "g", 1, Severity::Warning))
            .await
            .unwrap();
        let alert_id = first.changes[0].alert.id.clone();

        let processing = tokio::spawn({
            let subscription = subscription.clone();
            async move {
                for round in 1..=ROUNDS {
                    let severity = if round % 2 == 1 {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    };
                    engine
                        .commit_processing(fire(&subscription, "g", 1 + round, severity))
                        .await
                        .unwrap();
                }
                engine
            }
        });
        let acting = tokio::spawn({
            let alert_id = alert_id.clone();
            async move {
                for round in 1..=ROUNDS {
                    let action = if round % 2 == 1 {
                        Action::Shelve {
                            until: None,
                            oneshot: true,
                            reason: Some(format!("round {round}")),
                        }
                    } else {
                        Action::Unshelve
                    };
                    person
                        .act_on_alert(&alert_id, action, "bob", at(1 + round))
                        .await
                        .unwrap();
                }
                person
            }
        });
        let engine = processing.await.unwrap();
        acting.await.unwrap();

        let history = engine.alert_history(&alert_id).await.unwrap();
        let by_engine = history.iter().filter(|e| e.actor == ENGINE_ACTOR).count();
        let by_bob = history.iter().filter(|e| e.actor == "bob").count();
        assert_eq!(
            by_engine as i64,
            1 + ROUNDS,
            "fired, then every severity change"
        );
        assert_eq!(by_bob as i64, ROUNDS, "every shelve and unshelve");
        let alert = engine.alert(&alert_id).await.unwrap().unwrap();
        assert_eq!(alert.count as i64, 1 + ROUNDS, "every firing counted");
        assert_eq!(
            alert.severity,
            Severity::Warning,
            "the last commit's severity"
        );
        assert!(!alert.shelved_oneshot, "the last action unshelved it");
        assert_eq!(alert.shelved_by, None);

        let changes = engine.alert_changes_after(0, 1000).await.unwrap();
        assert_eq!(changes.len(), history.len());
        assert!(changes.windows(2).all(|w| w[0].position < w[1].position));
    }

    /// A reader that resumes after the last position it saw, while two nodes record
    /// changes on their own alerts, sees every change: no position becomes visible after
    /// a higher one.
    #[tokio::test]
    async fn alert_change_positions_become_visible_in_order_across_nodes() {
        const ALERTS: i64 = 6;
        const ROUNDS: i64 = 10;
        let (first, second, subscription, _database) = two_nodes().await;
        let mut ids = Vec::new();
        for key in 0..ALERTS {
            let outcome = first
                .commit_processing(fire(
                    &subscription,
                    &format!("k{key}"),
                    1,
                    Severity::Warning,
                ))
                .await
                .unwrap();
            ids.push(outcome.changes[0].alert.id.clone());
        }
        let writers: Vec<_> = [first.clone(), second.clone()]
            .into_iter()
            .enumerate()
            .map(|(node, store)| {
                let mine: Vec<String> = ids.iter().skip(node).step_by(2).cloned().collect();
                tokio::spawn(async move {
                    for round in 1..=ROUNDS {
                        for id in &mine {
                            let action = if round % 2 == 1 {
                                Action::Shelve {
                                    until: None,
                                    oneshot: true,
                                    reason: None,
                                }
                            } else {
                                Action::Unshelve
                            };
                            store
                                .act_on_alert(id, action, "bob", at(round))
                                .await
                                .unwrap();
                        }
                    }
                })
            })
            .collect();
        let reader = tokio::spawn(async move {
            let mut last = 0;
            let mut seen = 0;
            let expected = ALERTS * (1 + ROUNDS);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while seen < expected && std::time::Instant::now() < deadline {
                for change in second.alert_changes_after(last, 7).await.unwrap() {
                    assert!(change.position > last);
                    last = change.position;
                    seen += 1;
                }
                tokio::task::yield_now().await;
            }
            seen
        });
        for writer in writers {
            writer.await.unwrap();
        }
        assert_eq!(
            reader.await.unwrap(),
            ALERTS * (1 + ROUNDS),
            "no change skipped"
        );
        assert_eq!(
            first.last_alert_change().await.unwrap(),
            first
                .alert_changes_after(0, 1000)
                .await
                .unwrap()
                .last()
                .unwrap()
                .position
        );
    }
}
