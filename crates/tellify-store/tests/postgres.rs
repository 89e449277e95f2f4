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
    let latest = tellify_store::postgres::schema_version() as i32;
    assert_eq!(
        latest, 3,
        "version 2 adds the event log's tables, version 3 the append function"
    );
    assert_eq!(
        versions,
        vec![latest],
        "one schema row, at the latest version"
    );
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

    /// One logged batch appended by several nodes at once (its publisher, the recoverer, a
    /// retry): stored once, and every caller gets the first one's answer.
    #[tokio::test]
    async fn a_logged_batch_appended_by_several_nodes_at_once_is_stored_once() {
        let database = TestDatabase::create().await.unwrap();
        let stores = nodes(&database, 4).await;
        let mut appends = Vec::new();
        for task in 0..12 {
            let store = stores[task % stores.len()].clone();
            // Each caller holds its own copy with its own ids, as a retry would.
            let batch = vec![
                event(None, &format!("a {task}"), None),
                event(None, &format!("b {task}"), None),
            ];
            appends.push(tokio::spawn(async move {
                store.append_logged(7, "batch-x", batch).await.unwrap()
            }));
        }
        let mut answers = Vec::new();
        for append in appends {
            answers.push(append.await.unwrap());
        }
        let firsts: Vec<_> = answers.iter().filter(|(_, first)| *first).collect();
        assert_eq!(firsts.len(), 1, "exactly one call stores the batch");
        assert!(
            answers.iter().all(|(appended, _)| appended == &firsts[0].0),
            "every caller gets the first answer: {answers:?}"
        );
        let log = stores[0].events_after(0, 100).await.unwrap();
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(stores[1].logged(vec![6, 7, 8]).await.unwrap(), vec![7]);
        // Another batch at another position is stored too.
        let (other, first) = stores[2]
            .append_logged(8, "batch-y", vec![event(None, "c", None)])
            .await
            .unwrap();
        assert!(first);
        assert_eq!(other.len(), 1);
    }

    /// The cursor of the external log: kept while the log is the same, reset (and the
    /// recorded batches forgotten) when the log was made again; saved only forward.
    #[tokio::test]
    async fn the_log_cursor_moves_forward_and_starts_over_with_a_new_log() {
        let database = TestDatabase::create().await.unwrap();
        let store = PostgresStore::open(&database.url()).await.unwrap();
        assert_eq!(store.log_cursor().await.unwrap(), None);
        let cursor = store.open_log("epoch-1", 40).await.unwrap();
        assert_eq!((cursor.epoch.as_str(), cursor.through), ("epoch-1", 40));
        store
            .append_logged(41, "m41", vec![event(None, "x", None)])
            .await
            .unwrap();
        let far_past = jiff::Timestamp::from_second(1_000_000_000).unwrap();
        let save = |through| tellify_store::LogCursor {
            epoch: "epoch-1".to_string(),
            through,
        };
        store.save_log_cursor(save(41), far_past).await.unwrap();
        store.save_log_cursor(save(30), far_past).await.unwrap();
        assert_eq!(
            store.log_cursor().await.unwrap(),
            Some(save(41)),
            "never back"
        );
        // The same log again: the cursor stays where it was.
        assert_eq!(store.open_log("epoch-1", 99).await.unwrap(), save(41));
        // Recorded batches older than `forget_before` at or below the cursor are forgotten.
        assert_eq!(store.logged(vec![41]).await.unwrap(), vec![41]);
        let future = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
        store.save_log_cursor(save(42), future).await.unwrap();
        assert_eq!(store.logged(vec![41]).await.unwrap(), Vec::<i64>::new());
        // A log made again: positions start over, nothing recorded is kept.
        store
            .append_logged(43, "m43", vec![event(None, "y", None)])
            .await
            .unwrap();
        let fresh = store.open_log("epoch-2", 0).await.unwrap();
        assert_eq!((fresh.epoch.as_str(), fresh.through), ("epoch-2", 0));
        assert_eq!(store.logged(vec![43]).await.unwrap(), Vec::<i64>::new());
        // A save for the old log changes nothing.
        store.save_log_cursor(save(50), far_past).await.unwrap();
        assert_eq!(store.log_cursor().await.unwrap().unwrap().epoch, "epoch-2");
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

// ---- notifications ----

mod notifications {
    use std::collections::HashSet;
    use std::sync::Arc;

    use jiff::{SignedDuration, Timestamp};
    use serde_json::json;
    use tellify_engine::alerts::Alert;
    use tellify_engine::handlers::AlertOutput;
    use tellify_engine::render::Transition;
    use tellify_model::{Fields, Severity};
    use tellify_store::postgres::testing::TestDatabase;
    use tellify_store::postgres::PostgresStore;
    use tellify_store::{
        ContactPoint, DeliveryHold, DeliveryJob, NewNotification, NotificationPlanner,
        OutputToApply, Plan, PlannerRef, ProcessingCommit, Store, Subscription, User,
    };

    const USERS: usize = 4;
    const POINTS_PER_USER: usize = 2;
    const NOTIFICATIONS: usize = 240;
    /// Due times are spread over this many seconds; the nodes walk through them.
    const ROUNDS: i64 = 12;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_800_000_000 + seconds)
    }

    /// Sends alert `n{index}` to the `index`-th (user, contact point), due when it fires.
    struct SpreadPlanner {
        targets: Vec<(String, String)>,
    }

    impl NotificationPlanner for SpreadPlanner {
        fn plan(
            &self,
            alert: &Alert,
            transition: Transition,
            occurrence: i64,
            now: Timestamp,
        ) -> Plan {
            let mut plan = Plan::default();
            let Some(index) = alert
                .group_key
                .strip_prefix('n')
                .and_then(|index| index.parse::<usize>().ok())
            else {
                return plan;
            };
            let (user_id, contact_point_id) = &self.targets[index % self.targets.len()];
            plan.notifications.push(NewNotification {
                user_id: user_id.clone(),
                contact_point_id: contact_point_id.clone(),
                alert_id: alert.id.clone(),
                transition: transition.to_string(),
                idempotency_key: format!("{}:{transition}:{occurrence}", alert.id),
                due_at: now,
                alert: alert.clone(),
            });
            plan
        }
    }

    /// Users with contact points and a subscription each, then `NOTIFICATIONS` alerts
    /// firing through processing commits at seconds 0 to `ROUNDS - 1`, each planned to
    /// one contact point of its owner. Returns every alert's group key.
    async fn fill_outbox(store: &PostgresStore) -> Vec<String> {
        let mut targets = Vec::new();
        let mut subscriptions = Vec::new();
        for index in 0..USERS {
            let user = User {
                id: tellify_model::new_id(),
                name: format!("node-user-{index}"),
                email: None,
                display_name: None,
                timezone: "UTC".to_string(),
                admin: false,
                created: at(0),
            };
            store.create_user(user.clone()).await.unwrap();
            let subscription = Subscription {
                id: tellify_model::new_id(),
                kind: "match".to_string(),
                title: format!("builds of {index}"),
                params: json!({"filter": "true"}),
                owner_user: user.id.clone(),
                owner_group: None,
                enabled: true,
                latching: false,
                policy: None,
                created: at(0),
                updated: at(0),
                health: None,
                filter_errors: None,
            };
            store
                .insert_subscription(subscription.clone())
                .await
                .unwrap();
            for point in 0..POINTS_PER_USER {
                let point = ContactPoint {
                    id: tellify_model::new_id(),
                    user_id: user.id.clone(),
                    name: format!("hook-{point}"),
                    kind: "webhook".to_string(),
                    address: "http://127.0.0.1:9/hook".to_string(),
                    secret: None,
                    created: at(0),
                };
                store.create_contact_point(point.clone()).await.unwrap();
                targets.push((user.id.clone(), point.id));
                subscriptions.push(subscription.clone());
            }
        }
        let planner = PlannerRef(Arc::new(SpreadPlanner { targets }));
        let mut keys = Vec::new();
        for round in 0..ROUNDS {
            let mut outputs = Vec::new();
            for index in (0..NOTIFICATIONS).filter(|index| *index as i64 % ROUNDS == round) {
                let key = format!("n{index}");
                outputs.push(OutputToApply {
                    origin: subscriptions[index % subscriptions.len()].origin(),
                    output: AlertOutput::Fire {
                        group_key: key.clone(),
                        severity: Severity::Warning,
                        message: format!("{key} failed"),
                        fields: Fields::new(),
                        event_id: None,
                    },
                    at: at(round),
                });
                keys.push(key);
            }
            store
                .commit_processing(ProcessingCommit {
                    cursor: round + 1,
                    outputs,
                    planner: Some(planner.clone()),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        keys
    }

    /// One node's notifier: walks the rounds, and in each takes small batches until
    /// nothing is due for it; leases run far past the test, so nothing is due twice.
    async fn run_node(store: PostgresStore) -> Vec<DeliveryJob> {
        let mut taken = Vec::new();
        for round in 0..ROUNDS {
            loop {
                let jobs = store
                    .take_deliveries(at(round), at(3600), 3, &DeliveryHold::default())
                    .await
                    .unwrap();
                if jobs.is_empty() {
                    break;
                }
                taken.extend(jobs);
                tokio::task::yield_now().await;
            }
        }
        taken
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_taking_deliveries_at_once_gang_each_notification_once_and_lease_each_delivery_once(
    ) {
        let database = TestDatabase::create().await.unwrap();
        let url = database.url();
        let node_a = PostgresStore::open(&url).await.unwrap();
        let node_b = PostgresStore::open(&url).await.unwrap();
        let keys = fill_outbox(&node_a).await;

        let (taken_a, taken_b) = tokio::join!(
            tokio::spawn(run_node(node_a.clone())),
            tokio::spawn(run_node(node_b.clone()))
        );
        let (taken_a, taken_b) = (taken_a.unwrap(), taken_b.unwrap());
        assert!(
            !taken_a.is_empty() && !taken_b.is_empty(),
            "both nodes took work: {} and {} deliveries",
            taken_a.len(),
            taken_b.len()
        );

        // Every delivery was leased by exactly one node.
        let ids_a: HashSet<&str> = taken_a.iter().map(|job| job.delivery.id.as_str()).collect();
        let ids_b: HashSet<&str> = taken_b.iter().map(|job| job.delivery.id.as_str()).collect();
        assert_eq!(ids_a.len(), taken_a.len(), "node a leased a delivery twice");
        assert_eq!(ids_b.len(), taken_b.len(), "node b leased a delivery twice");
        assert!(
            ids_a.is_disjoint(&ids_b),
            "a delivery leased by both nodes: {:?}",
            ids_a.intersection(&ids_b).collect::<Vec<_>>()
        );

        // Every notification is in exactly one delivery, and that delivery was leased.
        let mut carried: Vec<String> = Vec::new();
        for job in taken_a.iter().chain(&taken_b) {
            assert_eq!(job.items.len() as u32, job.delivery.items);
            for item in &job.items {
                let alert = item.alert().expect("the carried alert reads");
                assert_eq!(
                    alert.owner_user.as_deref(),
                    Some(job.delivery.user_id.as_str())
                );
                carried.push(alert.group_key);
            }
        }
        let distinct: HashSet<&str> = carried.iter().map(String::as_str).collect();
        assert_eq!(
            distinct.len(),
            carried.len(),
            "a notification in two deliveries"
        );
        let expected: HashSet<&str> = keys.iter().map(String::as_str).collect();
        assert_eq!(distinct, expected, "every notification was delivered");

        // Nothing is left behind: no notification waits, no delivery is pending.
        let leased: HashSet<String> = ids_a.union(&ids_b).map(|id| id.to_string()).collect();
        let (waiting, deliveries) = tokio::task::spawn_blocking(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let waiting: i64 = client
                .query_one(
                    "SELECT COUNT(*) FROM notifications WHERE delivery_id IS NULL",
                    &[],
                )
                .unwrap()
                .get(0);
            let deliveries: Vec<(String, String)> = client
                .query("SELECT id, status FROM deliveries", &[])
                .unwrap()
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect();
            (waiting, deliveries)
        })
        .await
        .unwrap();
        assert_eq!(waiting, 0);
        for (id, status) in &deliveries {
            assert!(leased.contains(id), "delivery {id} ({status}) never leased");
            assert_eq!(status, "sending");
        }
        assert_eq!(deliveries.len(), leased.len());
        drop((node_a, node_b));
    }

    #[tokio::test]
    async fn a_lease_held_by_one_node_is_skipped_by_another_until_it_runs_out() {
        let database = TestDatabase::create().await.unwrap();
        let url = database.url();
        let node_a = PostgresStore::open(&url).await.unwrap();
        let node_b = PostgresStore::open(&url).await.unwrap();
        let keys = fill_outbox(&node_a).await;
        let last = at(ROUNDS);
        let lease = at(ROUNDS + 60);
        let everything = node_a
            .take_deliveries(last, lease, usize::MAX, &DeliveryHold::default())
            .await
            .unwrap();
        let items: usize = everything.iter().map(|job| job.items.len()).sum();
        assert_eq!(items, keys.len());
        assert_eq!(
            everything.len(),
            USERS * POINTS_PER_USER,
            "one delivery per contact point"
        );
        assert!(node_b
            .take_deliveries(last, lease, usize::MAX, &DeliveryHold::default())
            .await
            .unwrap()
            .is_empty());
        let again = node_b
            .take_deliveries(
                lease,
                at(ROUNDS + 120),
                usize::MAX,
                &DeliveryHold::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            again.len(),
            everything.len(),
            "an expired lease is due again"
        );
    }
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

/// Pooled sessions keep their prepared statements and are not checked on every use
/// (`postgres/session.rs`); a session the server ended is still found and replaced.
mod sessions {
    use std::time::Duration;

    use jiff::Timestamp;
    use tellify_model::{EventInput, StoredEvent};
    use tellify_store::postgres::testing::{server_url, TestDatabase};
    use tellify_store::postgres::PostgresStore;
    use tellify_store::Store;

    fn event(message: &str) -> StoredEvent {
        let input = EventInput {
            message: Some(message.to_string()),
            ..Default::default()
        };
        StoredEvent::from_input(input, None, Timestamp::now(), 0)
    }

    /// Ends every session of the store named `application` on the server; returns how
    /// many there were.
    async fn end_sessions(application: String) -> i64 {
        tokio::task::spawn_blocking(move || {
            let mut client = postgres::Client::connect(&server_url(), postgres::NoTls).unwrap();
            client
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE application_name = $1",
                    &[&application],
                )
                .unwrap()
                .get(0)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_processing_commit_runs_as_many_statements_for_forty_alerts_as_for_one() {
        let database = TestDatabase::create().await.unwrap();
        let store = PostgresStore::open(&database.url()).await.unwrap();
        let (one, forty) = tellify_store::conformance::cost_of_one_commit_and_of_a_larger_one(
            &store,
            &|| store.statements_run(),
            40,
        )
        .await;
        assert_eq!(
            one, forty,
            "each table is written once per commit, whatever the number of alerts"
        );
        assert!(one <= 12, "{one} statements for a commit of one alert");
    }

    /// The statements a store's sessions have prepared, seen from one of them.
    async fn prepared_here(store: &PostgresStore) -> Vec<String> {
        store.prepared_statements().await.unwrap()
    }

    #[tokio::test]
    async fn a_session_keeps_the_statements_it_prepared() {
        let database = TestDatabase::create().await.unwrap();
        let store = PostgresStore::open(&database.url()).await.unwrap();
        // One call at a time, so every call gets the same pooled session.
        for n in 0..3 {
            store
                .append_events(vec![event(&format!("e{n}"))])
                .await
                .unwrap();
        }
        let prepared = prepared_here(&store).await;
        let appends = prepared
            .iter()
            .filter(|sql| sql.contains("tellify_append_first"))
            .count();
        assert_eq!(
            appends, 1,
            "the append is prepared once and kept: {prepared:#?}"
        );
        let mut distinct = prepared.clone();
        distinct.dedup();
        assert_eq!(distinct, prepared, "no statement is prepared twice");
        assert_eq!(store.events_after(0, 10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn sessions_the_server_ended_are_found_and_replaced() {
        let database = TestDatabase::create().await.unwrap();
        let application = format!("tellify_sessions_{}", ulid::Ulid::new());
        let url = format!("{}&application_name={application}", database.url());
        let store = PostgresStore::open(&url).await.unwrap();
        store.append_events(vec![event("before")]).await.unwrap();
        assert!(end_sessions(application.clone()).await >= 1);
        // Past the idle spell after which a session is checked before use
        // (CHECK_AFTER_IDLE, 5 s): the dead one is found and replaced, no call fails.
        tokio::time::sleep(Duration::from_secs(6)).await;
        store.append_events(vec![event("after")]).await.unwrap();
        let stored: Vec<String> = store
            .events_after(0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|event| event.message.unwrap_or_default())
            .collect();
        assert_eq!(stored, ["before", "after"]);
        // Ended while in use: the call that finds out fails, and every other session of
        // the pool is checked before its next use, so no second call fails.
        assert!(end_sessions(application).await >= 1);
        let mut failed = 0;
        for n in 0..3 {
            if store
                .append_events(vec![event(&format!("again {n}"))])
                .await
                .is_err()
            {
                failed += 1;
            }
        }
        assert!(
            failed <= 1,
            "{failed} calls failed after the sessions ended"
        );
        assert_eq!(store.events_after(0, 10).await.unwrap().len(), 5 - failed);
    }
}
