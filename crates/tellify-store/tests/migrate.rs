//! `migrate::sqlite_to_postgres`: a SQLite store with one of everything, moved into a
//! fresh PostgreSQL schema (`TELLIFY_TEST_POSTGRES`, default the machine's server), reads
//! the same through the `Store` API afterwards, and new writes continue above the copied
//! positions.

use std::path::Path;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use tellify_engine::alerts::{Action, Alert};
use tellify_engine::handlers::AlertOutput;
use tellify_model::{EventInput, Fields, Severity, StoredEvent};
use tellify_store::migrate::{sqlite_to_postgres, MigrateError, MigrationReport, Progress};
use tellify_store::postgres::testing::TestDatabase;
use tellify_store::postgres::PostgresStore;
use tellify_store::sqlite::SqliteStore;
use tellify_store::{
    AlertQuery, AuditRecord, ClearedFilter, ContactPoint, DeliveryHold, DeliveryOutcome,
    DeliveryQuery, EventQuery, EventType, FilterErrorUpdate, FinishedDelivery, Group,
    KeyedEventQuery, NewNotification, NotificationPlanner, OutputToApply, Plan, PlannerRef,
    PolicyRecord, ProcessingCommit, RepeatSchedule, Silence, Store, Subscription, Token, User,
    WebSession,
};

fn at(seconds: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_800_000_000 + seconds)
}

fn user(name: &str, admin: bool) -> User {
    User {
        id: tellify_model::new_id(),
        name: name.to_string(),
        email: Some(format!("{name}@example.com")),
        display_name: Some(name.to_uppercase()),
        timezone: "Europe/Berlin".to_string(),
        admin,
        created: at(0),
    }
}

fn event(
    event_type: Option<&str>,
    producer: &str,
    fields: serde_json::Value,
    key: Option<&str>,
    seconds: i64,
) -> StoredEvent {
    let fields: Fields = serde_json::from_value(fields).unwrap();
    let input = EventInput {
        event_type: event_type.map(str::to_string),
        message: Some(format!("{} happened", event_type.unwrap_or("plain"))),
        idempotency_key: key.map(str::to_string),
        fields,
        ..Default::default()
    };
    StoredEvent::from_input(input, Some(producer.to_string()), at(seconds), 0)
}

/// Sends every transition to one contact point at once and repeats firing alerts every
/// minute.
struct OnePointPlanner {
    user_id: String,
    contact_point_id: String,
}

impl NotificationPlanner for OnePointPlanner {
    fn plan(
        &self,
        alert: &Alert,
        transition: tellify_engine::render::Transition,
        occurrence: i64,
        now: Timestamp,
    ) -> Plan {
        let mut plan = Plan::default();
        plan.notifications.push(NewNotification {
            user_id: self.user_id.clone(),
            contact_point_id: self.contact_point_id.clone(),
            alert_id: alert.id.clone(),
            transition: transition.to_string(),
            idempotency_key: format!("{}:{transition}:{occurrence}", alert.id),
            due_at: now,
            alert: alert.clone(),
        });
        if transition != tellify_engine::render::Transition::Resolved {
            plan.repeats.push(RepeatSchedule {
                alert_id: alert.id.clone(),
                user_id: self.user_id.clone(),
                next_at: now + SignedDuration::from_secs(60),
                every_ms: 60_000,
            });
        }
        plan
    }
}

fn fire(subscription: &Subscription, key: &str, seconds: i64) -> OutputToApply {
    OutputToApply {
        origin: subscription.origin(),
        output: AlertOutput::Fire {
            group_key: key.to_string(),
            severity: Severity::Warning,
            message: format!("{key} failed"),
            fields: Fields::new(),
            event_id: None,
        },
        at: at(seconds),
    }
}

/// What the filled store holds, for the comparisons.
struct Filled {
    ann: User,
    bob: User,
    subscription: Subscription,
    planner: PlannerRef,
    keyed: KeyedEventQuery,
    nonce: String,
}

/// Fills `store` with one of everything through the `Store` API.
async fn fill(store: &dyn Store) -> Filled {
    let ann = user("ann", true);
    let bob = user("bob", false);
    store.create_user(ann.clone()).await.unwrap();
    store.create_user(bob.clone()).await.unwrap();
    store
        .set_password_hash(&ann.id, Some("$argon2id$v=19$fake".to_string()), None)
        .await
        .unwrap();
    let ops = Group {
        id: tellify_model::new_id(),
        name: "ops".to_string(),
        members: Vec::new(),
        created: at(0),
    };
    store.create_group(ops.clone()).await.unwrap();
    store.add_member(&ops.id, &ann.id).await.unwrap();
    store.add_member(&ops.id, &bob.id).await.unwrap();
    for (name, hash, expires) in [
        ("laptop", "hash-1", None),
        ("ci", "hash-2", Some(at(86_400))),
    ] {
        store
            .create_token(Token {
                id: tellify_model::new_id(),
                user_id: ann.id.clone(),
                name: name.to_string(),
                scopes: vec!["user".to_string(), "send".to_string()],
                hash: hash.to_string(),
                created: at(1),
                expires,
            })
            .await
            .unwrap();
    }
    store
        .create_web_session(WebSession {
            id_hash: "session-hash".to_string(),
            user_id: ann.id.clone(),
            csrf: "csrf".to_string(),
            created: at(1),
            seen: at(1),
            expires: at(1_000_000),
        })
        .await
        .unwrap();

    let point = ContactPoint {
        id: tellify_model::new_id(),
        user_id: ann.id.clone(),
        name: "hook".to_string(),
        kind: "webhook".to_string(),
        address: "http://127.0.0.1:9/hook".to_string(),
        secret: Some("s3cret".to_string()),
        created: at(2),
    };
    store.create_contact_point(point.clone()).await.unwrap();
    store
        .put_policy(PolicyRecord {
            user_id: ann.id.clone(),
            name: "default".to_string(),
            policy: tellify_engine::policy::Policy::parse(
                &json!({"rules": [{"contact_points": ["hook"]}]}),
            )
            .unwrap(),
            updated: at(2),
        })
        .await
        .unwrap();
    store
        .create_silence(Silence {
            id: tellify_model::new_id(),
            user_id: ann.id.clone(),
            filter: "alert.severity == 'info'".to_string(),
            starts: at(0),
            ends: at(7200),
            comment: Some("quiet".to_string()),
            created: at(2),
        })
        .await
        .unwrap();
    let subscription = Subscription {
        id: tellify_model::new_id(),
        kind: "match".to_string(),
        title: "builds".to_string(),
        params: json!({"filter": "true"}),
        owner_user: ann.id.clone(),
        owner_group: Some(ops.id.clone()),
        enabled: true,
        latching: true,
        policy: Some("default".to_string()),
        created: at(3),
        updated: at(3),
        health: None,
        filter_errors: None,
    };
    store
        .insert_subscription(subscription.clone())
        .await
        .unwrap();
    store
        .insert_subscription(Subscription {
            id: tellify_model::new_id(),
            title: "bob's".to_string(),
            owner_user: bob.id.clone(),
            owner_group: None,
            enabled: false,
            latching: false,
            policy: None,
            ..subscription.clone()
        })
        .await
        .unwrap();

    store
        .put_event_type(EventType {
            name: "disk".to_string(),
            description: "a filesystem filled up".to_string(),
            category: Some("storage".to_string()),
            default_severity: Some(Severity::Warning),
            schema: Some(json!({"type": "object", "required": ["fs"]})),
            dedup_interval: Some(SignedDuration::from_secs(600)),
            created: at(4),
            updated: at(4),
        })
        .await
        .unwrap();
    let alerta = json!({"resource": "web01", "event": "HttpError", "correlate": ["HttpOK"]});
    let appended = store
        .append_events(vec![
            event(None, "ci", json!({"n": 1}), Some("build-1"), 10),
            event(Some("disk"), "host1", json!({"fs": "/"}), None, 11),
            // Identical inside the window: a repeat of the one before.
            event(
                Some("disk"),
                "host1",
                json!({"fs": "/"}),
                Some("disk-2"),
                12,
            ),
            event(Some("alerta"), "kann", alerta, None, 13),
        ])
        .await
        .unwrap();
    assert!(appended[2].repeat, "the second disk event is a repeat");

    let planner = PlannerRef(Arc::new(OnePointPlanner {
        user_id: ann.id.clone(),
        contact_point_id: point.id.clone(),
    }));
    store
        .commit_processing(ProcessingCommit {
            cursor: appended[3].seq,
            states: vec![(subscription.id.clone(), json!({"seen": 4}))],
            outputs: vec![fire(&subscription, "a", 100), fire(&subscription, "b", 100)],
            derived: vec![event(Some("derived"), "tellify", json!({}), None, 100)],
            filter_errors: vec![FilterErrorUpdate {
                subscription_id: subscription.id.clone(),
                count: 2,
                last_error: "no such field `x`".to_string(),
                last_at: at(100),
            }],
            planner: Some(planner.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let alert_a = store
        .list_alerts(AlertQuery {
            subscription_id: Some(subscription.id.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .find(|alert| alert.group_key == "a")
        .unwrap();
    store
        .act_on_alert(
            &alert_a.id,
            Action::Ack {
                note: Some("on it".to_string()),
                expires: None,
            },
            "ann",
            at(110),
        )
        .await
        .unwrap();
    let jobs = store
        .take_deliveries(at(120), at(200), 10, &DeliveryHold::default())
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "both alerts gang into one delivery");
    store
        .finish_deliveries(vec![FinishedDelivery {
            id: jobs[0].delivery.id.clone(),
            outcome: DeliveryOutcome::Sent {
                receipt: "200 OK".to_string(),
            },
            subject: "2 alerts".to_string(),
            at: at(121),
        }])
        .await
        .unwrap();

    for (index, action) in ["user.created", "token.created"].into_iter().enumerate() {
        store
            .append_audit(AuditRecord {
                id: tellify_model::new_id(),
                at: at(130 + index as i64),
                actor: "admin".to_string(),
                action: action.to_string(),
                subject: "user ann".to_string(),
                detail: json!({"index": index}),
            })
            .await
            .unwrap();
    }
    let last_change = store.last_alert_change().await.unwrap();
    store
        .save_export_position("syslog", last_change)
        .await
        .unwrap();
    store
        .server_secret("links", vec![1, 2, 3, 0, 255])
        .await
        .unwrap();
    let nonce = "nonce-1".to_string();
    assert!(store.use_link(&nonce, at(100_000), at(140)).await.unwrap());

    let keyed = KeyedEventQuery {
        event_type: "alerta".to_string(),
        producer: Some("kann".to_string()),
        since: at(0),
        equal: vec![("resource".to_string(), "web01".to_string())],
        names: Some((
            vec!["event".to_string(), "correlate".to_string()],
            "HttpOK".to_string(),
        )),
        newest_per: None,
        limit: 10,
    };
    Filled {
        ann,
        bob,
        subscription,
        planner,
        keyed,
        nonce,
    }
}

async fn migrate(
    directory: &Path,
    url: &str,
) -> (Result<MigrationReport, MigrateError>, Vec<Progress>) {
    let directory = directory.to_path_buf();
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let mut heard = Vec::new();
        let result = sqlite_to_postgres(&directory, &url, &mut |progress| heard.push(progress));
        (result, heard)
    })
    .await
    .unwrap()
}

fn copied(report: &MigrationReport, table: &str) -> u64 {
    report
        .tables
        .iter()
        .find(|(name, _)| *name == table)
        .map(|(_, rows)| *rows)
        .unwrap_or_else(|| panic!("no count for `{table}` in {report:?}"))
}

/// Asserts both stores answer `$call` alike.
macro_rules! same {
    ($sqlite:expr, $postgres:expr, $($call:tt)+) => {{
        let before = $sqlite.$($call)+.await.unwrap();
        let after = $postgres.$($call)+.await.unwrap();
        assert_eq!(after, before, "{}", stringify!($($call)+));
        after
    }};
}

#[tokio::test]
async fn every_read_gives_the_same_answer_after_the_move_and_new_writes_continue_above() {
    let directory = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(directory.path()).unwrap();
    let filled = fill(&sqlite).await;
    let database = TestDatabase::create().await.unwrap();

    let (report, heard) = migrate(directory.path(), &database.url()).await;
    let report = report.unwrap();
    let postgres = PostgresStore::open(&database.url()).await.unwrap();

    assert_eq!(copied(&report, "users"), 2);
    assert_eq!(
        copied(&report, "events"),
        5,
        "every occurrence, the repeat included"
    );
    assert!(
        copied(&report, "alert_history") >= 3,
        "two firings and an ack"
    );
    assert_eq!(copied(&report, "deliveries"), 1);
    assert_eq!(copied(&report, "audit"), 2);
    assert_eq!(report.dropped_sessions, 1);
    assert!(
        heard
            .iter()
            .any(|p| p.table == "events" && p.copied == 5 && p.total == 5),
        "progress reaches the end of the log: {heard:?}"
    );

    // People, groups, tokens; sessions stay behind.
    same!(sqlite, postgres, list_users());
    same!(sqlite, postgres, user_by_name("bob"));
    same!(sqlite, postgres, password_hash(&filled.ann.id));
    same!(sqlite, postgres, list_groups());
    same!(sqlite, postgres, groups_of(&filled.bob.id));
    same!(sqlite, postgres, list_tokens(None));
    assert!(same!(sqlite, postgres, token_by_hash("hash-2")).is_some());
    assert!(postgres
        .web_session("session-hash", at(2))
        .await
        .unwrap()
        .is_none());

    // Subscriptions with their filter errors, policy and owner group.
    same!(sqlite, postgres, list_subscriptions(None));
    let subscription = same!(sqlite, postgres, subscription(&filled.subscription.id)).unwrap();
    assert!(subscription.filter_errors.is_some());

    // Alerts and their history, at the same positions.
    let all_alerts = AlertQuery {
        cleared: ClearedFilter::Include,
        limit: 100,
        ..Default::default()
    };
    let alerts = same!(sqlite, postgres, list_alerts(all_alerts.clone()));
    assert_eq!(alerts.len(), 2);
    for alert in &alerts {
        same!(sqlite, postgres, alert(&alert.id));
        same!(sqlite, postgres, alert_history(&alert.id));
    }
    same!(sqlite, postgres, alert_changes_after(0, 100));
    let last_change = same!(sqlite, postgres, last_alert_change());
    same!(sqlite, postgres, subscription_alerts(None));
    same!(sqlite, postgres, held_alerts("ann", None));

    // The log: every occurrence at its seq, listings, keyed lookups.
    let events = same!(sqlite, postgres, events_after(0, 1000));
    assert_eq!(events.len(), 5);
    let last_seq = same!(sqlite, postgres, last_seq());
    same!(
        sqlite,
        postgres,
        query_events(EventQuery {
            limit: 100,
            ..Default::default()
        })
    );
    assert_eq!(
        same!(sqlite, postgres, keyed_events(filled.keyed.clone())).len(),
        1
    );
    same!(sqlite, postgres, event_seq_range(at(0), at(1000)));
    same!(sqlite, postgres, list_event_types());

    // Processing, the outbox, audit, positions, secrets, links.
    let processing = same!(sqlite, postgres, load_processing());
    assert_eq!(processing.cursor, report.processing_cursor);
    assert_eq!(processing.states.len(), 1);
    let everything = DeliveryQuery {
        limit: 100,
        ..Default::default()
    };
    let deliveries = same!(sqlite, postgres, list_deliveries(everything.clone()));
    same!(sqlite, postgres, delivery(&deliveries[0].id));
    same!(sqlite, postgres, notify_directory());
    same!(sqlite, postgres, list_contact_points(&filled.ann.id));
    same!(sqlite, postgres, list_policies(&filled.ann.id));
    same!(sqlite, postgres, list_silences(&filled.ann.id));
    same!(sqlite, postgres, list_audit(100));
    same!(sqlite, postgres, export_position("syslog"));
    same!(sqlite, postgres, next_outbox_due());
    assert_eq!(
        postgres.server_secret("links", vec![9]).await.unwrap(),
        vec![1, 2, 3, 0, 255],
        "the copied secret stays, a fresh one is not taken"
    );
    assert!(postgres.link_used(&filled.nonce).await.unwrap());

    // New writes continue above every copied position.
    let appended = postgres
        .append_events(vec![event(None, "ci", json!({}), Some("build-2"), 500)])
        .await
        .unwrap();
    assert_eq!(appended[0].seq, last_seq + 1);
    let duplicate = postgres
        .append_events(vec![event(None, "ci", json!({}), Some("build-1"), 501)])
        .await
        .unwrap();
    assert!(duplicate[0].duplicate, "idempotency keys came along");
    let repeat = postgres
        .append_events(vec![event(
            Some("disk"),
            "host1",
            json!({"fs": "/"}),
            None,
            502,
        )])
        .await
        .unwrap();
    assert!(repeat[0].repeat, "the dedup window came along");
    let alert_b = alerts.iter().find(|alert| alert.group_key == "b").unwrap();
    postgres
        .act_on_alert(
            &alert_b.id,
            Action::Ack {
                note: None,
                expires: None,
            },
            "bob",
            at(600),
        )
        .await
        .unwrap();
    let changes = postgres.alert_changes_after(last_change, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert!(changes[0].position > last_change);
    postgres
        .commit_processing(ProcessingCommit {
            cursor: appended[0].seq,
            outputs: vec![fire(&filled.subscription, "c", 600)],
            planner: Some(filled.planner.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let jobs = postgres
        .take_deliveries(at(601), at(700), 10, &DeliveryHold::default())
        .await
        .unwrap();
    assert_eq!(
        jobs.len(),
        1,
        "a new notification gangs into a new delivery"
    );
    postgres
        .append_audit(AuditRecord {
            id: tellify_model::new_id(),
            at: at(700),
            actor: "admin".to_string(),
            action: "user.updated".to_string(),
            subject: "user bob".to_string(),
            detail: json!({}),
        })
        .await
        .unwrap();
    let audit = postgres.list_audit(10).await.unwrap();
    assert_eq!(audit.len(), 3);
    assert_eq!(audit[0].action, "user.updated", "the newest first");
}

#[tokio::test]
async fn a_target_that_holds_users_or_events_is_refused_and_left_unchanged() {
    let directory = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(directory.path()).unwrap();
    fill(&sqlite).await;
    let database = TestDatabase::create().await.unwrap();
    let postgres = PostgresStore::open(&database.url()).await.unwrap();
    let zed = user("zed", true);
    postgres.create_user(zed.clone()).await.unwrap();
    postgres
        .append_events(vec![event(None, "zed", json!({}), None, 1)])
        .await
        .unwrap();

    let (result, _) = migrate(directory.path(), &database.url()).await;
    let error = result.unwrap_err();
    assert!(
        matches!(
            error,
            MigrateError::TargetNotEmpty {
                users: 1,
                events: 1
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("1 users and 1 events"),
        "{error}"
    );
    assert_eq!(postgres.list_users().await.unwrap(), vec![zed]);
    assert_eq!(postgres.events_after(0, 100).await.unwrap().len(), 1);
    assert_eq!(postgres.list_event_types().await.unwrap(), Vec::new());
    assert!(postgres.list_audit(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_directory_without_a_store_is_refused_by_name() {
    let directory = tempfile::tempdir().unwrap();
    let database = TestDatabase::create().await.unwrap();
    let (result, heard) = migrate(directory.path(), &database.url()).await;
    let error = result.unwrap_err();
    assert!(matches!(error, MigrateError::NoSource(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .contains(&directory.path().display().to_string()),
        "{error}"
    );
    assert!(heard.is_empty());
}

/// A row that cannot go into PostgreSQL stops the copy with its table, row and column,
/// and nothing of what was already copied (people, events) stays behind.
#[tokio::test]
async fn a_bad_row_is_named_and_nothing_is_left_half_copied() {
    let directory = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(directory.path()).unwrap();
    fill(&sqlite).await;
    let raw = rusqlite::Connection::open(directory.path().join("tellify.db")).unwrap();
    raw.execute("UPDATE alerts SET body = '{}' WHERE group_key = 'b'", [])
        .unwrap();
    drop(raw);
    let raw = rusqlite::Connection::open(directory.path().join("tellify.db")).unwrap();
    let broken: String = raw
        .query_row("SELECT id FROM alerts WHERE group_key = 'b'", [], |row| {
            row.get(0)
        })
        .unwrap();
    drop(raw);
    let database = TestDatabase::create().await.unwrap();

    let (result, heard) = migrate(directory.path(), &database.url()).await;
    let error = result.unwrap_err();
    assert!(
        matches!(
            error,
            MigrateError::BadValue {
                table: "alerts",
                column: "last_seen_ms",
                ..
            }
        ),
        "{error:?}"
    );
    let named = format!(
        "table `alerts`, row id `{broken}`, column `last_seen_ms`: \
         alert body without a readable `last_seen`"
    );
    assert!(error.to_string().starts_with(&named), "{error}");
    assert!(
        heard.iter().any(|p| p.table == "events" && p.copied == 5),
        "the events were copied before the bad row: {heard:?}"
    );
    let postgres = PostgresStore::open(&database.url()).await.unwrap();
    assert!(postgres.list_users().await.unwrap().is_empty());
    assert_eq!(postgres.last_seq().await.unwrap(), 0);
    assert_eq!(postgres.load_processing().await.unwrap().cursor, 0);
}
