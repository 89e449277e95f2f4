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
        let mut carried: Vec<&str> = Vec::new();
        for job in taken_a.iter().chain(&taken_b) {
            assert_eq!(job.items.len() as u32, job.delivery.items);
            for item in &job.items {
                assert_eq!(
                    item.alert.owner_user.as_deref(),
                    Some(job.delivery.user_id.as_str())
                );
                carried.push(item.alert.group_key.as_str());
            }
        }
        let distinct: HashSet<&str> = carried.iter().copied().collect();
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
