//! One behavioural suite every [`Store`] implementation must pass, one test per
//! behaviour. A backend runs all of it with one line in its tests:
//!
//! ```ignore
//! tellify_store::conformance_tests!(|| async { (MyStore::open(...), guard) });
//! ```
//!
//! The closure makes a fresh, empty store for each test: the store itself, or a
//! `(store, guard)` pair whose guard (a temporary directory, a database to drop) lives as
//! long as the test and is dropped after the store. Each check is also a public function taking `&dyn Store`, for a
//! backend that wants to run one on its own.

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use tellify_engine::alerts::{Action, AlertOrigin, AlertState};
use tellify_engine::handlers::AlertOutput;
use tellify_model::{EventInput, Fields, Severity, StoredEvent};

use crate::{
    AlertQuery, Appended, AuditRecord, ChartQuery, ContactPoint, DeliveryHold, DeliveryOutcome,
    DeliveryQuery, DeliveryStatus, EventQuery, EventSearch, EventType, FilterErrorUpdate,
    FilterErrors, FinishedDelivery, Group, NewNotification, NotificationPlanner, OutputToApply,
    Plan, PlannerRef, PolicyRecord, ProcessingCommit, RepeatSchedule, Store, StoreError,
    Subscription, Token, User, Viewer,
};

/// What a test's store factory returns: a store, or a store with a guard that must outlive
/// it (`(store, guard)`: a tuple drops its fields in order, the store first).
pub trait Fixture {
    fn store(&self) -> &dyn Store;
}

impl<S: Store> Fixture for S {
    fn store(&self) -> &dyn Store {
        self
    }
}

impl<S: Store, G> Fixture for (S, G) {
    fn store(&self) -> &dyn Store {
        &self.0
    }
}

/// One `#[tokio::test]` per behaviour of the suite, each against a fresh store from
/// `$make_store` (a closure returning a future of a [`Fixture`]).
#[macro_export]
macro_rules! conformance_tests {
    ($make_store:expr) => {
        $crate::conformance_tests!(@each $make_store;
            events_round_trip_in_order_and_an_idempotency_key_is_stored_once,
            users_are_unique_by_name_and_found_by_name_and_id,
            group_membership_is_idempotent_and_removable,
            a_user_update_saves_the_fields_and_makes_memberships_exactly_those_given,
            tokens_round_trip_with_their_expiry_and_can_be_deleted,
            subscriptions_are_visible_to_their_owner_only,
            subscriptions_are_read_by_id_those_that_exist_and_no_others,
            a_processing_commit_saves_alerts_handler_states_derived_events_and_the_cursor,
            alerts_are_listed_for_those_who_may_see_them,
            a_persons_action_is_applied_and_recorded_after_the_engines_transitions,
            deleting_a_subscription_removes_its_alerts_and_their_history,
            a_subscription_with_thousands_of_alerts_goes_with_all_of_them_and_nothing_else,
            outputs_for_a_deleted_subscription_are_dropped,
            contact_points_are_unique_per_user_and_reach_the_notify_directory,
            held_notifications_wait_and_the_rest_gang_into_one_delivery_per_contact_point,
            outbox_rows_only_for_the_users_own_contact_points_each_with_its_alert,
            a_retried_delivery_is_due_at_its_next_attempt_and_a_late_outcome_changes_nothing,
            a_delivery_whose_lease_ran_out_is_due_again,
            a_claim_leases_older_deliveries_first_and_no_more_than_its_limit,
            a_processing_commit_claims_what_it_makes_due_when_the_store_can,
            what_waited_for_a_deleted_contact_point_is_failed_with_the_reason,
            repeats_are_planned_when_due_and_stop_once_acknowledged,
            one_commit_that_moves_alerts_several_times_keeps_each_transition_and_its_outbox_row,
            offboarding_counts_in_a_dry_run_then_removes_everything_and_audits,
            audit_records_are_kept_and_listed_newest_first,
            the_event_type_registry_creates_replaces_and_lists,
            identical_events_inside_the_dedup_window_are_repeats_of_the_first,
            the_dedup_window_is_fixed_from_the_first_sighting,
            deleting_an_event_type_ends_its_deduplication,
            export_positions_are_saved_per_stream,
            alert_changes_come_back_in_recorded_order_and_page,
            an_alert_change_position_is_never_reused_after_its_rows_were_deleted,
            a_search_pushes_type_and_field_predicates_down,
            a_search_resumes_in_bounded_steps_and_misses_nothing,
            a_time_range_search_finds_the_range_whatever_the_step_size,
            the_positions_of_a_time_range_bound_its_events_in_log_order,
            keyed_lookups_find_the_newest_event_of_a_key,
            filter_errors_add_up_in_processing_commits_and_an_update_keeps_or_clears_them,
            a_server_secret_is_written_once_and_shared,
            a_link_nonce_is_used_once_until_released_or_pruned,
            a_chart_buckets_a_numeric_field_per_key_and_counts_what_is_not_a_number,
            a_chart_keeps_the_keys_with_the_most_events_and_filters_by_type,
            a_chart_looks_at_no_more_than_its_budget_and_says_where_it_stopped,
            subscription_alerts_count_every_firing_alert_and_the_last_fire,
            held_alerts_are_the_actors_acks_and_shelves_the_viewer_may_see,
        );
    };
    (@each $make_store:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test]
            async fn $name() {
                let fixture = ($make_store)().await;
                $crate::conformance::$name($crate::conformance::Fixture::store(&fixture)).await;
            }
        )*
    };
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_800_000_000 + seconds)
}

fn event(message: &str, key: Option<&str>, seconds: i64) -> StoredEvent {
    let input = EventInput {
        message: Some(message.to_string()),
        idempotency_key: key.map(str::to_string),
        ..Default::default()
    };
    StoredEvent::from_input(input, Some("producer".to_string()), at(seconds), 0)
}

pub async fn events_round_trip_in_order_and_an_idempotency_key_is_stored_once(store: &dyn Store) {
    let first = store
        .append_events(vec![event("a", Some("k1"), 0), event("b", None, 1)])
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    assert!(first[0].seq < first[1].seq);
    let again = store
        .append_events(vec![event("a again", Some("k1"), 2), event("c", None, 3)])
        .await
        .unwrap();
    assert!(
        again[0].duplicate,
        "same idempotency key must not be stored twice"
    );
    assert_eq!(again[0].id, first[0].id);
    assert!(!again[1].duplicate);
    let all = store.events_after(0, 100).await.unwrap();
    let messages: Vec<&str> = all.iter().filter_map(|e| e.message.as_deref()).collect();
    assert_eq!(messages, vec!["a", "b", "c"]);
    assert_eq!(store.last_seq().await.unwrap(), all[2].seq);
    let page = store
        .query_events(EventQuery {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page[0].message.as_deref(), Some("c"));
    let older = store
        .query_events(EventQuery {
            before_seq: Some(page[1].seq),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    let ranged = store
        .query_events(EventQuery {
            since: Some(at(1)),
            until: Some(at(3)),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ranged.len(), 1);
    assert_eq!(
        store
            .event(&all[1].id)
            .await
            .unwrap()
            .unwrap()
            .message
            .as_deref(),
        Some("b")
    );
}

fn user(name: &str) -> User {
    User {
        id: tellify_model::new_id(),
        name: name.to_string(),
        email: Some(format!("{name}@example.com")),
        display_name: None,
        timezone: "Europe/Berlin".to_string(),
        admin: false,
        created: at(0),
    }
}

pub async fn users_are_unique_by_name_and_found_by_name_and_id(store: &dyn Store) {
    let ann = user("ann");
    store.create_user(ann.clone()).await.unwrap();
    let duplicate = store.create_user(user("ann")).await.unwrap_err();
    assert!(
        matches!(duplicate, StoreError::Conflict(_)),
        "{duplicate:?}"
    );
    assert_eq!(store.user_by_name("ann").await.unwrap(), Some(ann.clone()));
    assert_eq!(store.user_by_id(&ann.id).await.unwrap(), Some(ann.clone()));
}

pub async fn group_membership_is_idempotent_and_removable(store: &dyn Store) {
    let ann = user("ann");
    store.create_user(ann.clone()).await.unwrap();
    let group = Group {
        id: tellify_model::new_id(),
        name: "vr0".to_string(),
        members: vec![],
        created: at(0),
    };
    store.create_group(group.clone()).await.unwrap();
    store.add_member(&group.id, &ann.id).await.unwrap();
    store.add_member(&group.id, &ann.id).await.unwrap();
    assert_eq!(
        store.group_by_name("vr0").await.unwrap().unwrap().members,
        vec!["ann"]
    );
    assert_eq!(
        store.groups_of(&ann.id).await.unwrap(),
        vec![group.id.clone()]
    );
    assert!(store.remove_member(&group.id, &ann.id).await.unwrap());
    assert!(!store.remove_member(&group.id, &ann.id).await.unwrap());
}

pub async fn a_user_update_saves_the_fields_and_makes_memberships_exactly_those_given(
    store: &dyn Store,
) {
    let ann = user("ann");
    store.create_user(ann.clone()).await.unwrap();
    let mut groups = Vec::new();
    for name in ["ops", "db", "web"] {
        let group = Group {
            id: tellify_model::new_id(),
            name: name.to_string(),
            members: vec![],
            created: at(0),
        };
        store.create_group(group.clone()).await.unwrap();
        groups.push(group.id);
    }
    store.add_member(&groups[0], &ann.id).await.unwrap();
    store.add_member(&groups[1], &ann.id).await.unwrap();
    let changed = User {
        email: None,
        display_name: Some("Ann Smith".to_string()),
        timezone: "America/New_York".to_string(),
        admin: true,
        ..ann.clone()
    };
    // Without groups the memberships stay as they are.
    assert!(store.update_user(changed.clone(), None).await.unwrap());
    assert_eq!(
        store.user_by_id(&ann.id).await.unwrap(),
        Some(changed.clone())
    );
    let mut member_of = store.groups_of(&ann.id).await.unwrap();
    member_of.sort();
    let mut expected = vec![groups[0].clone(), groups[1].clone()];
    expected.sort();
    assert_eq!(member_of, expected);
    // With groups: out of `ops`, still in `db`, into `web`.
    let wanted = vec![groups[1].clone(), groups[2].clone()];
    assert!(store
        .update_user(changed.clone(), Some(wanted.clone()))
        .await
        .unwrap());
    let mut member_of = store.groups_of(&ann.id).await.unwrap();
    member_of.sort();
    let mut expected = wanted;
    expected.sort();
    assert_eq!(member_of, expected);
    assert!(store
        .group_by_name("ops")
        .await
        .unwrap()
        .unwrap()
        .members
        .is_empty());
    // An empty list leaves every group.
    assert!(store.update_user(changed, Some(Vec::new())).await.unwrap());
    assert!(store.groups_of(&ann.id).await.unwrap().is_empty());
    assert!(!store.update_user(user("nobody"), None).await.unwrap());
    assert_eq!(store.user_by_name("nobody").await.unwrap(), None);
}

pub async fn tokens_round_trip_with_their_expiry_and_can_be_deleted(store: &dyn Store) {
    let ann = user("ann");
    store.create_user(ann.clone()).await.unwrap();
    let token = Token {
        id: tellify_model::new_id(),
        user_id: ann.id.clone(),
        name: "laptop".to_string(),
        scopes: vec!["user".to_string()],
        hash: "abc".to_string(),
        created: at(0),
        expires: None,
    };
    store.create_token(token.clone()).await.unwrap();
    assert_eq!(
        store.token_by_hash("abc").await.unwrap(),
        Some(token.clone())
    );
    let expiring = Token {
        id: tellify_model::new_id(),
        hash: "def".to_string(),
        expires: Some(at(3600)),
        ..token.clone()
    };
    store.create_token(expiring.clone()).await.unwrap();
    assert_eq!(
        store.token(&expiring.id).await.unwrap(),
        Some(expiring.clone()),
        "an expiry survives the round trip"
    );
    assert!(store.delete_token(&expiring.id).await.unwrap());
    assert_eq!(store.list_tokens(Some(&ann.id)).await.unwrap().len(), 1);
    assert!(store.delete_token(&token.id).await.unwrap());
    assert_eq!(store.token_by_hash("abc").await.unwrap(), None);
}

fn subscription_of(owner: &User, title: &str, policy: Option<&str>) -> Subscription {
    Subscription {
        id: tellify_model::new_id(),
        kind: "match".to_string(),
        title: title.to_string(),
        params: json!({"filter": "true"}),
        owner_user: owner.id.clone(),
        owner_group: None,
        enabled: true,
        latching: false,
        policy: policy.map(str::to_string),
        created: at(0),
        updated: at(0),
        health: None,
        filter_errors: None,
    }
}

fn fire_output(origin: &AlertOrigin, key: &str, seconds: i64, severity: Severity) -> OutputToApply {
    OutputToApply {
        origin: origin.clone(),
        output: AlertOutput::Fire {
            group_key: key.to_string(),
            severity,
            message: "m".to_string(),
            fields: Fields::new(),
            event_id: None,
        },
        at: at(seconds),
    }
}

fn viewer(user_id: &str) -> Viewer {
    Viewer {
        user_id: user_id.to_string(),
        group_ids: vec![],
    }
}

/// `bob` with one subscription.
async fn bob_subscribed(store: &dyn Store) -> (User, Subscription) {
    let bob = user("bob");
    store.create_user(bob.clone()).await.unwrap();
    let subscription = subscription_of(&bob, "fails", None);
    store
        .insert_subscription(subscription.clone())
        .await
        .unwrap();
    (bob, subscription)
}

/// `bob`'s subscription with one alert, fired at warning and raised to critical.
async fn bob_alerted(store: &dyn Store) -> (User, Subscription, crate::CommitOutcome) {
    let (bob, subscription) = bob_subscribed(store).await;
    let origin = subscription.origin();
    let outcome = store
        .commit_processing(ProcessingCommit {
            cursor: 3,
            states: vec![(subscription.id.clone(), json!({"n": 1}))],
            outputs: vec![
                fire_output(&origin, "g", 1, Severity::Warning),
                fire_output(&origin, "g", 2, Severity::Critical),
            ],
            derived: vec![event("derived", None, 5)],
            ..Default::default()
        })
        .await
        .unwrap();
    (bob, subscription, outcome)
}

pub async fn filter_errors_add_up_in_processing_commits_and_an_update_keeps_or_clears_them(
    store: &dyn Store,
) {
    let (_, subscription) = bob_subscribed(store).await;
    let failed = |cursor: i64, count: u64, last_error: &str, seconds: i64| ProcessingCommit {
        cursor,
        filter_errors: vec![FilterErrorUpdate {
            subscription_id: subscription.id.clone(),
            count,
            last_error: last_error.to_string(),
            last_at: at(seconds),
        }],
        ..Default::default()
    };
    let stored = || {
        let id = subscription.id.clone();
        async move { store.subscription(&id).await.unwrap().expect("still there") }
    };
    assert_eq!(stored().await.filter_errors, None);
    store
        .commit_processing(failed(1, 2, "first", 1))
        .await
        .unwrap();
    store
        .commit_processing(failed(2, 3, "second", 2))
        .await
        .unwrap();
    let expected = FilterErrors {
        count: 5,
        last_error: "second".to_string(),
        last_at: at(2),
    };
    assert_eq!(stored().await.filter_errors, Some(expected.clone()));
    let listed = store.list_subscriptions(None).await.unwrap();
    assert_eq!(listed[0].filter_errors, Some(expected.clone()));

    // An owner's change read before a commit does not write the old count back...
    let mut read_earlier = stored().await;
    store
        .commit_processing(failed(3, 1, "third", 3))
        .await
        .unwrap();
    read_earlier.title = "renamed".to_string();
    store.update_subscription(read_earlier).await.unwrap();
    let kept = stored().await;
    assert_eq!(kept.title, "renamed");
    assert_eq!(kept.filter_errors.map(|errors| errors.count), Some(6));
    // ...and `None` clears the record (new parameters start again).
    let mut cleared = stored().await;
    cleared.filter_errors = None;
    store.update_subscription(cleared).await.unwrap();
    assert_eq!(stored().await.filter_errors, None);
}

pub async fn subscriptions_are_visible_to_their_owner_only(store: &dyn Store) {
    let (bob, _) = bob_subscribed(store).await;
    assert_eq!(
        store
            .list_subscriptions(Some(&viewer(&bob.id)))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .list_subscriptions(Some(&viewer("someone-else")))
        .await
        .unwrap()
        .is_empty());
}

pub async fn subscriptions_are_read_by_id_those_that_exist_and_no_others(store: &dyn Store) {
    let (bob, first) = bob_subscribed(store).await;
    let mut others = Vec::new();
    for n in 0..3 {
        let subscription = subscription_of(&bob, &format!("other {n}"), Some("evening"));
        store
            .insert_subscription(subscription.clone())
            .await
            .unwrap();
        others.push(subscription);
    }
    let asked = vec![
        others[2].id.clone(),
        "no-such-subscription".to_string(),
        first.id.clone(),
    ];
    let mut found = store.subscriptions_by_id(&asked).await.unwrap();
    found.sort_by(|a, b| a.title.cmp(&b.title));
    let titles: Vec<&str> = found.iter().map(|s| s.title.as_str()).collect();
    assert_eq!(
        titles,
        ["fails", "other 2"],
        "the two that exist, nothing else"
    );
    assert_eq!(found[1], others[2], "read back whole");
    assert!(store.subscriptions_by_id(&[]).await.unwrap().is_empty());
}

pub async fn a_processing_commit_saves_alerts_handler_states_derived_events_and_the_cursor(
    store: &dyn Store,
) {
    let (_, subscription, outcome) = bob_alerted(store).await;
    assert_eq!(outcome.changes.len(), 2);
    assert_eq!(outcome.derived.len(), 1);
    let alert = outcome.changes[1].alert.clone();
    assert_eq!((alert.count, alert.severity), (2, Severity::Critical));
    let snapshot = store.load_processing().await.unwrap();
    assert_eq!(snapshot.cursor, 3);
    assert_eq!(snapshot.states[&subscription.id], json!({"n": 1}));
    let derived: &Appended = &outcome.derived[0];
    assert_eq!(
        store
            .event(&derived.id)
            .await
            .unwrap()
            .unwrap()
            .message
            .as_deref(),
        Some("derived"),
        "a derived event is in the log"
    );
}

pub async fn alerts_are_listed_for_those_who_may_see_them(store: &dyn Store) {
    let (bob, _, _) = bob_alerted(store).await;
    let visible = store
        .list_alerts(AlertQuery {
            viewer: Some(viewer(&bob.id)),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(visible.len(), 1);
    let hidden = store
        .list_alerts(AlertQuery {
            viewer: Some(viewer("someone-else")),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(hidden.is_empty());
}

pub async fn a_persons_action_is_applied_and_recorded_after_the_engines_transitions(
    store: &dyn Store,
) {
    let (_, _, outcome) = bob_alerted(store).await;
    let alert = outcome.changes[1].alert.clone();
    let change = store
        .act_on_alert(
            &alert.id,
            Action::Ack {
                note: None,
                expires: None,
            },
            "bob",
            at(3),
        )
        .await
        .unwrap();
    assert!(change.alert.acked);
    let conflict = store
        .act_on_alert(&alert.id, Action::Unshelve, "bob", at(3))
        .await
        .unwrap_err();
    assert!(matches!(conflict, StoreError::Action(_)));
    let history = store.alert_history(&alert.id).await.unwrap();
    let actions: Vec<&str> = history.iter().map(|h| h.action.as_str()).collect();
    assert_eq!(actions, vec!["fired", "severity_raised", "acked"]);
    let resolved = store
        .list_alerts(AlertQuery {
            state: Some(AlertState::Resolved),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(resolved.is_empty());
    assert!(matches!(
        store
            .act_on_alert("nope", Action::Clear, "bob", at(4))
            .await,
        Err(StoreError::NotFound)
    ));
}

pub async fn deleting_a_subscription_removes_its_alerts_and_their_history(store: &dyn Store) {
    let (_, subscription, outcome) = bob_alerted(store).await;
    let alert = outcome.changes[1].alert.clone();
    assert!(store.delete_subscription(&subscription.id).await.unwrap());
    assert_eq!(store.alert(&alert.id).await.unwrap(), None);
    assert!(store.alert_history(&alert.id).await.unwrap().is_empty());
}

/// SQLite deletes a subscription's alerts a chunk per statement (500): more than two
/// chunks' worth go, every one with its history, and another subscription's stay.
pub async fn a_subscription_with_thousands_of_alerts_goes_with_all_of_them_and_nothing_else(
    store: &dyn Store,
) {
    let (bob, kept, kept_outcome) = bob_alerted(store).await;
    let kept_alert = kept_outcome.changes[1].alert.clone();
    let doomed = subscription_of(&bob, "storm", None);
    store.insert_subscription(doomed.clone()).await.unwrap();
    let origin = doomed.origin();
    let outcome = store
        .commit_processing(ProcessingCommit {
            cursor: 10,
            outputs: (0..1_201)
                .map(|n| fire_output(&origin, &format!("host-{n}"), 10, Severity::Warning))
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome.changes.len(), 1_201);
    let last = outcome.changes[1_200].alert.clone();
    assert_eq!(store.alert_history(&last.id).await.unwrap().len(), 1);
    assert!(store.delete_subscription(&doomed.id).await.unwrap());
    let left = store
        .list_alerts(AlertQuery {
            limit: 5_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = left.iter().map(|alert| alert.id.as_str()).collect();
    assert_eq!(
        ids,
        [kept_alert.id.as_str()],
        "only the other subscription's alert"
    );
    assert!(store.alert_history(&last.id).await.unwrap().is_empty());
    assert_eq!(
        store.alert_history(&kept_alert.id).await.unwrap().len(),
        2,
        "the kept alert's history stays"
    );
    assert!(store.subscription(&kept.id).await.unwrap().is_some());
    assert!(!store.delete_subscription(&doomed.id).await.unwrap());
}

pub async fn outputs_for_a_deleted_subscription_are_dropped(store: &dyn Store) {
    let (_, subscription, _) = bob_alerted(store).await;
    assert!(store.delete_subscription(&subscription.id).await.unwrap());
    // Outputs for a deleted subscription are dropped, not stored as orphans.
    let outcome = store
        .commit_processing(ProcessingCommit {
            cursor: 4,
            outputs: vec![fire_output(
                &subscription.origin(),
                "g",
                9,
                Severity::Warning,
            )],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(outcome.changes.is_empty());
    assert!(store.load_processing().await.unwrap().states.is_empty());
    assert_eq!(store.load_processing().await.unwrap().cursor, 4);
}
/// Sends every transition of every alert to one contact point at once, and repeats
/// firing alerts every minute.
struct OnePointPlanner {
    user_id: String,
    contact_point_id: String,
}

impl NotificationPlanner for OnePointPlanner {
    fn plan(
        &self,
        alert: &tellify_engine::alerts::Alert,
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

/// `ann-outbox` with a webhook contact point, a default policy, a subscription and the
/// one-point planner.
struct Outbox {
    ann: User,
    point: ContactPoint,
    subscription: Subscription,
    planner: PlannerRef,
}

impl Outbox {
    async fn open(store: &dyn Store) -> Outbox {
        let ann = user("ann-outbox");
        store.create_user(ann.clone()).await.unwrap();
        let point = ContactPoint {
            id: tellify_model::new_id(),
            user_id: ann.id.clone(),
            name: "hook".to_string(),
            kind: "webhook".to_string(),
            address: "http://127.0.0.1:9/hook".to_string(),
            secret: Some("s3cret".to_string()),
            created: at(0),
        };
        store.create_contact_point(point.clone()).await.unwrap();
        assert!(store
            .put_policy(PolicyRecord {
                user_id: ann.id.clone(),
                name: "default".to_string(),
                policy: tellify_engine::policy::Policy::parse(
                    &json!({"rules": [{"contact_points": ["hook"]}]}),
                )
                .unwrap(),
                updated: at(0),
            })
            .await
            .unwrap());
        let subscription = subscription_of(&ann, "builds", Some("default"));
        store
            .insert_subscription(subscription.clone())
            .await
            .unwrap();
        let planner = PlannerRef(std::sync::Arc::new(OnePointPlanner {
            user_id: ann.id.clone(),
            contact_point_id: point.id.clone(),
        }));
        Outbox {
            ann,
            point,
            subscription,
            planner,
        }
    }

    fn fire(&self, key: &str, seconds: i64) -> OutputToApply {
        OutputToApply {
            origin: self.subscription.origin(),
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

    /// Commits the firing of the alerts `keys` at `seconds`, planned.
    async fn commit_fired(&self, store: &dyn Store, cursor: i64, keys: &[&str], seconds: i64) {
        store
            .commit_processing(ProcessingCommit {
                cursor,
                outputs: keys.iter().map(|key| self.fire(key, seconds)).collect(),
                planner: Some(self.planner.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    /// Alerts `a` and `b` fire at 100 in one commit; their delivery is taken at 100 and
    /// sent. Returns the delivery's id.
    async fn deliver_a_and_b(&self, store: &dyn Store) -> String {
        self.commit_fired(store, 10, &["a", "b"], 100).await;
        let jobs = store
            .take_deliveries(at(100), at(200), 10, &DeliveryHold::default())
            .await
            .unwrap();
        let id = jobs[0].delivery.id.clone();
        store
            .finish_deliveries(vec![FinishedDelivery {
                id: id.clone(),
                outcome: DeliveryOutcome::Sent {
                    receipt: "200 OK".to_string(),
                },
                subject: "2 alerts".to_string(),
                at: at(131),
            }])
            .await
            .unwrap();
        id
    }
}

pub async fn contact_points_are_unique_per_user_and_reach_the_notify_directory(store: &dyn Store) {
    let outbox = Outbox::open(store).await;
    assert!(matches!(
        store.create_contact_point(outbox.point.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    let directory = store.notify_directory().await.unwrap();
    assert!(directory
        .contact_points
        .iter()
        .any(|p| p.id == outbox.point.id));
    assert!(directory
        .subscription_policies
        .contains(&(outbox.subscription.id.clone(), "default".to_string())));
}

pub async fn held_notifications_wait_and_the_rest_gang_into_one_delivery_per_contact_point(
    store: &dyn Store,
) {
    let outbox = Outbox::open(store).await;
    // Two alerts fire in one commit: one delivery carries both.
    outbox.commit_fired(store, 10, &["a", "b"], 100).await;
    assert_eq!(store.next_outbox_due().await.unwrap(), Some(at(100)));
    assert_eq!(store.outbox_backlog(at(99)).await.unwrap(), (0, None));
    let (due, oldest) = store.outbox_backlog(at(150)).await.unwrap();
    assert!(due >= 2, "both fired alerts are due");
    assert_eq!(oldest, Some(at(100)));
    let lease = at(200);
    // Over their rate limit, a contact point's (or a user's) notifications wait in the outbox.
    for hold in [
        DeliveryHold {
            contact_points: vec![outbox.point.id.clone()],
            ..Default::default()
        },
        DeliveryHold {
            users: vec![outbox.ann.id.clone()],
            ..Default::default()
        },
    ] {
        let held = store
            .take_deliveries(at(100), lease, 10, &hold)
            .await
            .unwrap();
        assert!(held.is_empty(), "held back, not ganged: {hold:?}");
    }
    let jobs = store
        .take_deliveries(at(100), lease, 10, &DeliveryHold::default())
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "one delivery per user and contact point");
    assert_eq!(jobs[0].items.len(), 2);
    assert_eq!(jobs[0].contact_point.secret.as_deref(), Some("s3cret"));
    assert!(
        store
            .take_deliveries(at(101), lease, 10, &DeliveryHold::default())
            .await
            .unwrap()
            .is_empty(),
        "a leased delivery is not handed out twice"
    );
}

/// Plans each change for the owner's real contact point, a contact point that does not
/// exist, and the real one under another user's id: only the first is stored.
struct StrayPointsPlanner {
    user_id: String,
    contact_point_id: String,
}

impl NotificationPlanner for StrayPointsPlanner {
    fn plan(
        &self,
        alert: &tellify_engine::alerts::Alert,
        transition: tellify_engine::render::Transition,
        occurrence: i64,
        now: Timestamp,
    ) -> Plan {
        let mut plan = Plan::default();
        for (user_id, contact_point_id) in [
            (self.user_id.clone(), self.contact_point_id.clone()),
            (self.user_id.clone(), "no-such-point".to_string()),
            ("someone-else".to_string(), self.contact_point_id.clone()),
        ] {
            plan.notifications.push(NewNotification {
                idempotency_key: format!(
                    "{user_id}:{}:{transition}:{occurrence}:{contact_point_id}",
                    alert.id
                ),
                user_id,
                contact_point_id,
                alert_id: alert.id.clone(),
                transition: transition.to_string(),
                due_at: now,
                alert: alert.clone(),
            });
        }
        plan
    }
}

/// A commit of several alerts stores an outbox row only where the contact point belongs
/// to the user (asked once per transaction by SQLite), and each row carries its own alert
/// as it was saved, not the one saved before it.
pub async fn outbox_rows_only_for_the_users_own_contact_points_each_with_its_alert(
    store: &dyn Store,
) {
    let outbox = Outbox::open(store).await;
    let planner = PlannerRef(std::sync::Arc::new(StrayPointsPlanner {
        user_id: outbox.ann.id.clone(),
        contact_point_id: outbox.point.id.clone(),
    }));
    let outcome = store
        .commit_processing(ProcessingCommit {
            cursor: 10,
            outputs: ["a", "b", "c"]
                .iter()
                .map(|key| outbox.fire(key, 100))
                .collect(),
            planner: Some(planner),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome.changes.len(), 3);
    assert_eq!(store.outbox_backlog(at(100)).await.unwrap().0, 3);
    let jobs = store
        .take_deliveries(at(100), at(200), 10, &DeliveryHold::default())
        .await
        .unwrap();
    assert_eq!(
        jobs.len(),
        1,
        "only the owner's own contact point gets a delivery"
    );
    assert_eq!(jobs[0].contact_point.id, outbox.point.id);
    let mut carried: Vec<tellify_engine::alerts::Alert> = jobs[0]
        .items
        .iter()
        .map(|item| item.alert().unwrap())
        .collect();
    carried.sort_by(|a, b| a.group_key.cmp(&b.group_key));
    let saved: Vec<tellify_engine::alerts::Alert> = outcome
        .changes
        .iter()
        .map(|change| change.alert.clone())
        .collect();
    assert_eq!(carried, saved, "each outbox row carries its own alert");
}

pub async fn a_retried_delivery_is_due_at_its_next_attempt_and_a_late_outcome_changes_nothing(
    store: &dyn Store,
) {
    let outbox = Outbox::open(store).await;
    outbox.commit_fired(store, 10, &["a", "b"], 100).await;
    let lease = at(200);
    let jobs = store
        .take_deliveries(at(100), lease, 10, &DeliveryHold::default())
        .await
        .unwrap();
    let id = jobs[0].delivery.id.clone();
    store
        .finish_deliveries(vec![FinishedDelivery {
            id: id.clone(),
            outcome: DeliveryOutcome::Retry {
                error: "503 from hook".to_string(),
                next_attempt: at(130),
            },
            subject: "2 alerts".to_string(),
            at: at(101),
        }])
        .await
        .unwrap();
    assert!(store
        .take_deliveries(at(120), lease, 10, &DeliveryHold::default())
        .await
        .unwrap()
        .is_empty());
    let again = store
        .take_deliveries(at(130), lease, 10, &DeliveryHold::default())
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.attempts, 1);
    store
        .finish_deliveries(vec![FinishedDelivery {
            id: id.clone(),
            outcome: DeliveryOutcome::Sent {
                receipt: "200 OK".to_string(),
            },
            subject: "2 alerts".to_string(),
            at: at(131),
        }])
        .await
        .unwrap();
    // A late outcome for a delivery no longer leased changes nothing.
    store
        .finish_deliveries(vec![FinishedDelivery {
            id: id.clone(),
            outcome: DeliveryOutcome::Failed {
                error: "late".to_string(),
            },
            subject: "x".to_string(),
            at: at(132),
        }])
        .await
        .unwrap();
    let (delivery, attempts, items) = store.delivery(&id).await.unwrap().unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Sent);
    assert_eq!(delivery.attempts, 2);
    assert_eq!(delivery.receipt.as_deref(), Some("200 OK"));
    assert_eq!(delivery.subject.as_deref(), Some("2 alerts"));
    assert_eq!(attempts.len(), 2);
    assert!(!attempts[0].ok && attempts[1].ok);
    assert_eq!(items.len(), 2);
}

pub async fn what_waited_for_a_deleted_contact_point_is_failed_with_the_reason(store: &dyn Store) {
    let outbox = Outbox::open(store).await;
    // One delivery is being sent (leased), and later one notification waits to be ganged.
    outbox.commit_fired(store, 10, &["a", "b"], 100).await;
    let leased = store
        .take_deliveries(at(100), at(200), 10, &DeliveryHold::default())
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    outbox.commit_fired(store, 11, &["c"], 150).await;
    assert!(store
        .delete_contact_point(&outbox.ann.id, "hook", at(160))
        .await
        .unwrap());
    let query = || DeliveryQuery {
        user_id: Some(outbox.ann.id.clone()),
        status: None,
        alert_id: None,
        before_id: None,
        limit: 10,
    };
    let deliveries = store.list_deliveries(query()).await.unwrap();
    let waited: Vec<_> = deliveries
        .iter()
        .filter(|delivery| delivery.id != leased[0].delivery.id)
        .collect();
    assert_eq!(waited.len(), 1, "nothing dropped: {deliveries:?}");
    assert_eq!(waited[0].items, 1);
    assert_eq!(waited[0].status, DeliveryStatus::Failed);
    assert_eq!(
        waited[0].last_error.as_deref(),
        Some("contact point hook was deleted before this was sent")
    );
    assert_eq!(waited[0].contact_point, "hook");
    // Nothing of it is handed to a sender afterwards.
    assert!(store
        .take_deliveries(at(170), at(600), 10, &DeliveryHold::default())
        .await
        .unwrap()
        .is_empty());
    // The send in flight records what really happened.
    store
        .finish_deliveries(vec![FinishedDelivery {
            id: leased[0].delivery.id.clone(),
            outcome: DeliveryOutcome::Sent {
                receipt: "200 OK".to_string(),
            },
            subject: "2 alerts".to_string(),
            at: at(170),
        }])
        .await
        .unwrap();
    let (delivery, _, items) = store
        .delivery(&leased[0].delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Sent);
    assert_eq!(items.len(), 2);
}

/// Records delivery `id` as sent at `seconds`.
async fn finish_sent(store: &dyn Store, id: &str, seconds: i64) {
    store
        .finish_deliveries(vec![FinishedDelivery {
            id: id.to_string(),
            outcome: DeliveryOutcome::Sent {
                receipt: "200 OK".to_string(),
            },
            subject: "sent".to_string(),
            at: at(seconds),
        }])
        .await
        .unwrap();
}

pub async fn a_processing_commit_claims_what_it_makes_due_when_the_store_can(store: &dyn Store) {
    let outbox = Outbox::open(store).await;
    let none = DeliveryHold::default();
    let claim = |seconds: i64, limit: usize| crate::ClaimRequest {
        now: at(seconds),
        lease_until: at(seconds + 60),
        limit,
        hold: DeliveryHold::default(),
    };
    let commit =
        |cursor: i64, keys: &[&str], seconds: i64, request: crate::ClaimRequest| ProcessingCommit {
            cursor,
            outputs: keys.iter().map(|key| outbox.fire(key, seconds)).collect(),
            planner: Some(outbox.planner.clone()),
            claim: Some(request),
            ..Default::default()
        };
    let keys = |job: &crate::DeliveryJob| -> Vec<String> {
        job.items
            .iter()
            .map(|item| item.alert().unwrap().group_key)
            .collect()
    };
    let outcome = store
        .commit_processing(commit(10, &["a", "b"], 100, claim(100, 5)))
        .await
        .unwrap();
    if !store.claims_in_processing_commit() {
        // The notifier claims in a transaction of its own, as before.
        assert_eq!(outcome.claimed, None);
        let taken = store
            .take_deliveries(at(100), at(160), 5, &none)
            .await
            .unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(keys(&taken[0]), ["a", "b"]);
        return;
    }
    let claimed = outcome.claimed.expect("the commit claimed");
    assert!(!outcome.due_later);
    assert_eq!(claimed.len(), 1, "both alerts ganged into one delivery");
    assert_eq!(keys(&claimed[0]), ["a", "b"]);
    assert_eq!(claimed[0].delivery.status, DeliveryStatus::Sending);
    assert_eq!(claimed[0].delivery.attempts, 0);
    assert_eq!(claimed[0].contact_point.id, outbox.point.id);
    // Leased: no other claim takes it until the lease ends.
    assert!(store
        .take_deliveries(at(159), at(200), 5, &none)
        .await
        .unwrap()
        .is_empty());
    let again = store
        .take_deliveries(at(161), at(220), 5, &none)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.id, claimed[0].delivery.id);
    finish_sent(store, &again[0].delivery.id, 162).await;
    // A notification due after the claim's time is written, not claimed, and said so.
    let outcome = store
        .commit_processing(commit(11, &["c"], 300, claim(250, 5)))
        .await
        .unwrap();
    assert_eq!(outcome.claimed, Some(Vec::new()));
    assert!(outcome.due_later);
    let later = store
        .take_deliveries(at(300), at(360), 5, &none)
        .await
        .unwrap();
    assert_eq!(later.iter().map(keys).collect::<Vec<_>>(), [["c"]]);
    finish_sent(store, &later[0].delivery.id, 301).await;
    // No claim without a notification written, and none for a limit of 0.
    let quiet = store
        .commit_processing(ProcessingCommit {
            cursor: 12,
            claim: Some(claim(400, 5)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(quiet.claimed, None);
    let full = store
        .commit_processing(commit(13, &["d"], 500, claim(500, 0)))
        .await
        .unwrap();
    assert_eq!(full.claimed, None);
    let left = store
        .take_deliveries(at(500), at(560), 5, &none)
        .await
        .unwrap();
    assert_eq!(left.iter().map(keys).collect::<Vec<_>>(), [["d"]]);
}

pub async fn a_claim_leases_older_deliveries_first_and_no_more_than_its_limit(store: &dyn Store) {
    let outbox = Outbox::open(store).await;
    let none = DeliveryHold::default();
    outbox.commit_fired(store, 10, &["a"], 100).await;
    let first = store
        .take_deliveries(at(100), at(110), 1, &none)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let older = first[0].delivery.id.clone();
    store
        .finish_deliveries(vec![FinishedDelivery {
            id: older.clone(),
            outcome: DeliveryOutcome::Retry {
                error: "503 from hook".to_string(),
                next_attempt: at(130),
            },
            subject: "a".to_string(),
            at: at(101),
        }])
        .await
        .unwrap();
    // `b` fires while `a`'s delivery waits for its retry: at 130 both are due, the older
    // delivery and a new one for `b`, and a claim of one takes the older.
    outbox.commit_fired(store, 11, &["b"], 120).await;
    let keys = |job: &crate::DeliveryJob| -> Vec<String> {
        job.items
            .iter()
            .map(|item| item.alert().unwrap().group_key)
            .collect()
    };
    let retried = store
        .take_deliveries(at(130), at(200), 1, &none)
        .await
        .unwrap();
    assert_eq!(retried.len(), 1, "no more than the limit");
    assert_eq!(retried[0].delivery.id, older, "the older delivery first");
    assert_eq!(retried[0].delivery.attempts, 1);
    assert_eq!(keys(&retried[0]), ["a"]);
    let new = store
        .take_deliveries(at(130), at(200), 1, &none)
        .await
        .unwrap();
    assert_eq!(new.len(), 1, "the new delivery waited for the next claim");
    assert_ne!(new[0].delivery.id, older);
    assert_eq!(new[0].delivery.attempts, 0);
    assert_eq!(keys(&new[0]), ["b"]);
    assert!(store
        .take_deliveries(at(130), at(200), 1, &none)
        .await
        .unwrap()
        .is_empty());
    // A claim with room for everything takes the new delivery with its items at once.
    outbox.commit_fired(store, 12, &["c", "d"], 140).await;
    let both = store
        .take_deliveries(at(140), at(200), 10, &none)
        .await
        .unwrap();
    assert_eq!(both.len(), 1);
    assert_eq!(keys(&both[0]), ["c", "d"]);
    assert_eq!(both[0].contact_point.id, outbox.point.id);
}

pub async fn a_delivery_whose_lease_ran_out_is_due_again(store: &dyn Store) {
    let outbox = Outbox::open(store).await;
    // A sender that dies lets its lease run out; the delivery is then due again.
    outbox.commit_fired(store, 11, &["c"], 300).await;
    let leased = store
        .take_deliveries(at(300), at(400), 10, &DeliveryHold::default())
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    assert!(store
        .take_deliveries(at(399), at(500), 10, &DeliveryHold::default())
        .await
        .unwrap()
        .is_empty());
    let expired = store
        .take_deliveries(at(400), at(500), 10, &DeliveryHold::default())
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].delivery.id, leased[0].delivery.id);
}

pub async fn repeats_are_planned_when_due_and_stop_once_acknowledged(store: &dyn Store) {
    let outbox = Outbox::open(store).await;
    outbox.commit_fired(store, 10, &["a", "b"], 100).await;
    outbox.commit_fired(store, 11, &["c"], 300).await;
    // Repeats: due a minute after firing; an acknowledged alert stops repeating.
    let written = store
        .plan_repeats(at(161), outbox.planner.clone(), 100)
        .await
        .unwrap();
    assert_eq!(written, 2, "alerts a and b repeat");
    let alerts = store
        .list_alerts(AlertQuery {
            subscription_id: Some(outbox.subscription.id.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    for alert in &alerts {
        store
            .act_on_alert(
                &alert.id,
                Action::Ack {
                    note: None,
                    expires: None,
                },
                "ann-outbox",
                at(170),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .plan_repeats(at(1000), outbox.planner.clone(), 100)
            .await
            .unwrap(),
        0
    );
}

/// One commit in which alerts move more than once (a backend may write each table once per
/// commit): every transition is returned and recorded in order, each has its outbox row
/// with the alert as that transition left it, the alert is stored as the last one left it,
/// and only the alerts still firing at the end repeat.
pub async fn one_commit_that_moves_alerts_several_times_keeps_each_transition_and_its_outbox_row(
    store: &dyn Store,
) {
    let outbox = Outbox::open(store).await;
    let escalate = |key: &str| {
        let mut output = outbox.fire(key, 100);
        if let AlertOutput::Fire { severity, .. } = &mut output.output {
            *severity = Severity::Critical;
        }
        output
    };
    let resolve = |key: &str| OutputToApply {
        origin: outbox.subscription.origin(),
        output: AlertOutput::Resolve {
            group_key: key.to_string(),
            message: None,
        },
        at: at(100),
    };
    let outcome = store
        .commit_processing(ProcessingCommit {
            cursor: 10,
            outputs: vec![
                outbox.fire("a", 100),
                outbox.fire("b", 100),
                escalate("a"),
                resolve("b"),
                outbox.fire("c", 100),
            ],
            planner: Some(outbox.planner.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let moves: Vec<(&str, Severity, AlertState)> = outcome
        .changes
        .iter()
        .map(|change| {
            (
                change.alert.group_key.as_str(),
                change.alert.severity,
                change.alert.state,
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("a", Severity::Warning, AlertState::Firing),
            ("b", Severity::Warning, AlertState::Firing),
            ("a", Severity::Critical, AlertState::Firing),
            ("b", Severity::Warning, AlertState::Resolved),
            ("c", Severity::Warning, AlertState::Firing),
        ]
    );
    let a = &outcome.changes[0].alert.id;
    let b = &outcome.changes[1].alert.id;
    assert_eq!(
        &outcome.changes[2].alert.id, a,
        "the second output moves the same alert"
    );
    assert_eq!(&outcome.changes[3].alert.id, b);
    let stored_a = store.alert(a).await.unwrap().unwrap();
    assert_eq!(
        (stored_a.severity, stored_a.state),
        (Severity::Critical, AlertState::Firing)
    );
    let stored_b = store.alert(b).await.unwrap().unwrap();
    assert_eq!(stored_b.state, AlertState::Resolved);
    let actions = |history: Vec<tellify_engine::alerts::HistoryEntry>| {
        history
            .into_iter()
            .map(|entry| entry.action)
            .collect::<Vec<_>>()
    };
    use tellify_engine::alerts::Transition;
    assert_eq!(
        actions(store.alert_history(a).await.unwrap()),
        [Transition::Fired, Transition::SeverityRaised]
    );
    assert_eq!(
        actions(store.alert_history(b).await.unwrap()),
        [Transition::Fired, Transition::Resolved]
    );
    // One outbox row per notifying transition, each carrying its own moment of the alert.
    assert_eq!(store.outbox_backlog(at(100)).await.unwrap().0, 5);
    let jobs = store
        .take_deliveries(at(100), at(200), 10, &DeliveryHold::default())
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "one contact point, one delivery");
    let mut carried: Vec<(String, String, Severity, AlertState)> = jobs[0]
        .items
        .iter()
        .map(|item| {
            let alert = item.alert().unwrap();
            (
                alert.group_key,
                item.transition.clone(),
                alert.severity,
                alert.state,
            )
        })
        .collect();
    carried.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
    let expected = |key: &str, transition: &str, severity, state| {
        (key.to_string(), transition.to_string(), severity, state)
    };
    assert_eq!(
        carried,
        [
            expected("a", "escalated", Severity::Critical, AlertState::Firing),
            expected("a", "fired", Severity::Warning, AlertState::Firing),
            expected("b", "fired", Severity::Warning, AlertState::Firing),
            expected("b", "resolved", Severity::Warning, AlertState::Resolved),
            expected("c", "fired", Severity::Warning, AlertState::Firing),
        ]
    );
    // b resolved after it fired: its repeat stopped; a and c repeat a minute on.
    assert_eq!(
        store
            .plan_repeats(at(161), outbox.planner.clone(), 100)
            .await
            .unwrap(),
        2
    );
}

/// For a backend that counts what it sends to its database (`counter`): commits one new
/// alert with its outbox row and repeat, then `alerts` new ones in one commit, and
/// returns what `counter` moved by for each. A backend that writes each table once per
/// commit costs the same for both.
pub async fn cost_of_one_commit_and_of_a_larger_one(
    store: &dyn Store,
    counter: &(dyn Fn() -> u64 + Sync),
    alerts: usize,
) -> (u64, u64) {
    let outbox = Outbox::open(store).await;
    // A first commit, so neither measured one pays for anything done once.
    outbox.commit_fired(store, 1, &["first"], 100).await;
    let before = counter();
    outbox.commit_fired(store, 2, &["one"], 100).await;
    let one = counter() - before;
    let keys: Vec<String> = (0..alerts).map(|n| format!("many-{n}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let before = counter();
    outbox.commit_fired(store, 3, &keys, 100).await;
    let larger = counter() - before;
    assert_eq!(
        store.outbox_backlog(at(100)).await.unwrap().0,
        2 + alerts as u64,
        "every alert has its outbox row"
    );
    (one, larger)
}

pub async fn offboarding_counts_in_a_dry_run_then_removes_everything_and_audits(store: &dyn Store) {
    let outbox = Outbox::open(store).await;
    let ann = outbox.ann.clone();
    let id = outbox.deliver_a_and_b(store).await;
    outbox.commit_fired(store, 11, &["c"], 300).await;
    store
        .take_deliveries(at(300), at(400), 10, &DeliveryHold::default())
        .await
        .unwrap();
    let pending = store
        .list_deliveries(DeliveryQuery {
            user_id: Some(ann.id.clone()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 2);

    // Offboarding: a dry run counts, the real one removes and audits.
    let counts = store
        .offboard_user(&ann.id, true, "admin", at(2000))
        .await
        .unwrap();
    assert_eq!(counts.subscriptions, 1);
    assert_eq!(counts.alerts, 3);
    assert_eq!(counts.contact_points, 1);
    assert_eq!(counts.policies, 1);
    assert_eq!(counts.deliveries, 2);
    assert!(store.user_by_id(&ann.id).await.unwrap().is_some());
    let removed = store
        .offboard_user(&ann.id, false, "admin", at(2000))
        .await
        .unwrap();
    assert_eq!(removed, counts);
    assert!(store.user_by_id(&ann.id).await.unwrap().is_none());
    assert!(store.delivery(&id).await.unwrap().is_none());
    assert!(store
        .take_deliveries(at(5000), at(6000), 10, &DeliveryHold::default())
        .await
        .unwrap()
        .is_empty());
    assert!(store.list_contact_points(&ann.id).await.unwrap().is_empty());
    let audit = store.list_audit(10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].subject, "user ann-outbox");
    assert_eq!(audit[0].detail["subscriptions"], 1);
    assert!(matches!(
        store.offboard_user(&ann.id, false, "admin", at(2001)).await,
        Err(StoreError::NotFound)
    ));
}

fn typed_event(event_type: &str, fs: &str, key: Option<&str>, seconds: i64) -> StoredEvent {
    let mut fields = Fields::new();
    fields.insert("fs".to_string(), json!(fs));
    let input = EventInput {
        event_type: Some(event_type.to_string()),
        message: Some("disk full".to_string()),
        idempotency_key: key.map(str::to_string),
        fields,
        ..Default::default()
    };
    StoredEvent::from_input(input, Some("producer".to_string()), at(seconds), 0)
}

fn disk_type(interval_secs: Option<i64>) -> EventType {
    EventType {
        name: "disk".to_string(),
        description: "a filesystem filled up".to_string(),
        category: Some("storage".to_string()),
        default_severity: Some(Severity::Warning),
        schema: Some(json!({"type": "object", "required": ["fs"]})),
        dedup_interval: interval_secs.map(SignedDuration::from_secs),
        created: at(0),
        updated: at(0),
    }
}

pub async fn the_event_type_registry_creates_replaces_and_lists(store: &dyn Store) {
    // The registry: create, replace (keeping `created`), read, list.
    assert!(store.put_event_type(disk_type(Some(10))).await.unwrap());
    let mut replaced = disk_type(Some(10));
    replaced.description = "a filesystem is nearly full".to_string();
    replaced.created = at(5);
    replaced.updated = at(5);
    assert!(!store.put_event_type(replaced).await.unwrap());
    let stored = store.event_type("disk").await.unwrap().unwrap();
    assert_eq!(stored.description, "a filesystem is nearly full");
    assert_eq!(stored.created, at(0), "replacing keeps the creation time");
    assert_eq!(stored.updated, at(5));
    assert_eq!(
        stored.schema,
        Some(json!({"type": "object", "required": ["fs"]}))
    );
    assert_eq!(stored.dedup_interval, Some(SignedDuration::from_secs(10)));
    assert_eq!(stored.default_severity, Some(Severity::Warning));
    let mut plain = disk_type(None);
    plain.name = "login".to_string();
    store.put_event_type(plain).await.unwrap();
    let names: Vec<String> = store
        .list_event_types()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["disk", "login"]);
    assert_eq!(store.event_type("nope").await.unwrap(), None);
}

/// `disk` with a 10 s dedup window and `login` without one; `/a` seen at 100, 103 and
/// (with key `k`) 109. Returns the three appends.
async fn disk_seen_three_times(store: &dyn Store) -> (Vec<Appended>, Vec<Appended>) {
    store.put_event_type(disk_type(Some(10))).await.unwrap();
    let mut plain = disk_type(None);
    plain.name = "login".to_string();
    store.put_event_type(plain).await.unwrap();
    let first = store
        .append_events(vec![
            typed_event("disk", "/a", None, 100),
            typed_event("disk", "/a", None, 103),
        ])
        .await
        .unwrap();
    let third = store
        .append_events(vec![typed_event("disk", "/a", Some("k"), 109)])
        .await
        .unwrap();
    (first, third)
}

pub async fn identical_events_inside_the_dedup_window_are_repeats_of_the_first(store: &dyn Store) {
    // Three identical events inside the window, in one batch and the next: one stored event,
    // three log positions.
    let before = store.last_seq().await.unwrap();
    let (first, third) = disk_seen_three_times(store).await;
    assert!(!first[0].repeat && !first[0].duplicate);
    assert!(first[1].repeat && !first[1].duplicate);
    assert_eq!(
        first[1].id, first[0].id,
        "a repeat answers with the first id"
    );
    assert!(first[1].seq > first[0].seq);
    assert!(third[0].repeat);
    assert_eq!(third[0].id, first[0].id);

    // Idempotency wins over dedup: a retry of the repeat is a duplicate, not a fourth sighting.
    let retry = store
        .append_events(vec![typed_event("disk", "/a", Some("k"), 109)])
        .await
        .unwrap();
    assert!(retry[0].duplicate);
    assert_eq!(retry[0].seq, third[0].seq);
    assert_eq!(retry[0].id, first[0].id);

    // Other fields, or a type without an interval, are not repeats.
    let other = store
        .append_events(vec![
            typed_event("disk", "/b", None, 104),
            typed_event("login", "/a", None, 104),
            typed_event("login", "/a", None, 105),
        ])
        .await
        .unwrap();
    assert!(other.iter().all(|a| !a.repeat && !a.duplicate));

    // The log holds every occurrence, a repeat as its first event with its own seq and time.
    let log = store.events_after(before, 100).await.unwrap();
    let occurrences: Vec<&StoredEvent> = log.iter().filter(|e| e.id == first[0].id).collect();
    assert_eq!(occurrences.len(), 3, "{log:?}");
    let seqs: Vec<i64> = occurrences.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![first[0].seq, first[1].seq, third[0].seq]);
    let times: Vec<Timestamp> = occurrences.iter().map(|e| e.time).collect();
    assert_eq!(times, vec![at(100), at(103), at(109)]);
    assert_eq!(occurrences[2].idempotency_key.as_deref(), Some("k"));
    assert!(occurrences
        .iter()
        .all(|e| e.fields["fs"] == json!("/a") && e.message.as_deref() == Some("disk full")));
    assert_eq!(log.len(), 6);
    assert!(log.windows(2).all(|pair| pair[0].seq < pair[1].seq));

    // Search lists the first occurrence once, with its repeat count.
    let listed = store
        .query_events(EventQuery {
            since: Some(at(100)),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let disk_a: Vec<_> = listed.iter().filter(|e| e.id == first[0].id).collect();
    assert_eq!(disk_a.len(), 1);
    assert_eq!(disk_a[0].repeat_count, 2);
    assert_eq!(listed.len(), 4);
    assert_eq!(
        store
            .event(&first[0].id)
            .await
            .unwrap()
            .unwrap()
            .repeat_count,
        2
    );
}

pub async fn the_dedup_window_is_fixed_from_the_first_sighting(store: &dyn Store) {
    let (first, _) = disk_seen_three_times(store).await;
    // The window is fixed from the first sighting (100 + 10s), not from the last repeat
    // (109): at 110 a new event is stored and opens a window of its own.
    let later = store
        .append_events(vec![
            typed_event("disk", "/a", None, 110),
            typed_event("disk", "/a", None, 119),
        ])
        .await
        .unwrap();
    assert!(!later[0].repeat);
    assert_ne!(later[0].id, first[0].id);
    assert!(later[1].repeat);
    assert_eq!(later[1].id, later[0].id);
}

pub async fn deleting_an_event_type_ends_its_deduplication(store: &dyn Store) {
    store.put_event_type(disk_type(Some(10))).await.unwrap();
    let later = store
        .append_events(vec![
            typed_event("disk", "/a", None, 110),
            typed_event("disk", "/a", None, 119),
        ])
        .await
        .unwrap();
    assert!(later[1].repeat);
    // Deleting the type ends deduplication for it.
    assert!(store.delete_event_type("disk").await.unwrap());
    assert!(!store.delete_event_type("disk").await.unwrap());
    let after_delete = store
        .append_events(vec![typed_event("disk", "/a", None, 120)])
        .await
        .unwrap();
    assert!(!after_delete[0].repeat);
    assert_ne!(after_delete[0].id, later[0].id);
    assert_eq!(store.event_type("disk").await.unwrap(), None);
}

pub async fn export_positions_are_saved_per_stream(store: &dyn Store) {
    assert_eq!(
        store.export_position("syslog:a/events").await.unwrap(),
        None
    );
    store
        .save_export_position("syslog:a/events", 5)
        .await
        .unwrap();
    store
        .save_export_position("syslog:a/events", 7)
        .await
        .unwrap();
    store
        .save_export_position("syslog:a/alerts", 2)
        .await
        .unwrap();
    assert_eq!(
        store.export_position("syslog:a/events").await.unwrap(),
        Some(7)
    );
    assert_eq!(
        store.export_position("syslog:a/alerts").await.unwrap(),
        Some(2)
    );
}

fn export_fire(subscription: &Subscription, severity: Severity, message: &str) -> OutputToApply {
    OutputToApply {
        origin: subscription.origin(),
        output: AlertOutput::Fire {
            group_key: "g".to_string(),
            severity,
            message: message.to_string(),
            fields: Fields::new(),
            event_id: None,
        },
        at: at(100),
    }
}

/// An `exported` subscription whose alert fired warm, then hot. Returns the position
/// before, the subscription and the processing cursor.
async fn exported_changes(store: &dyn Store) -> (i64, User, Subscription, i64) {
    let owner = user("exporter-owner");
    store.create_user(owner.clone()).await.unwrap();
    let start = store.last_alert_change().await.unwrap();
    let first = subscription_of(&owner, "exported", None);
    store.insert_subscription(first.clone()).await.unwrap();
    let cursor = store.load_processing().await.unwrap().cursor;
    store
        .commit_processing(ProcessingCommit {
            cursor,
            outputs: vec![
                export_fire(&first, Severity::Warning, "warm"),
                export_fire(&first, Severity::Critical, "hot"),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    (start, owner, first, cursor)
}

/// Exporters resume after the last position they handled: alert changes come back in
/// the order they were recorded.
pub async fn alert_changes_come_back_in_recorded_order_and_page(store: &dyn Store) {
    let (start, _, first, _) = exported_changes(store).await;
    let changes = store.alert_changes_after(start, 100).await.unwrap();
    let actions: Vec<&str> = changes.iter().map(|c| c.entry.action.as_str()).collect();
    assert_eq!(actions, vec!["fired", "severity_raised"]);
    assert!(changes[0].position > start && changes[0].position < changes[1].position);
    assert_eq!(changes[0].alert.subscription_id, first.id);
    assert_eq!(
        changes[0].alert.severity,
        Severity::Critical,
        "the alert as it is now"
    );
    assert_eq!(changes[0].entry.detail["message"], json!("warm"));
    assert_eq!(
        store.last_alert_change().await.unwrap(),
        changes[1].position
    );
    let paged = store
        .alert_changes_after(changes[0].position, 1)
        .await
        .unwrap();
    assert_eq!(paged.len(), 1);
    assert_eq!(paged[0].position, changes[1].position);
}

/// A position is never handed out twice, also after the newest history rows were deleted
/// with their subscription.
pub async fn an_alert_change_position_is_never_reused_after_its_rows_were_deleted(
    store: &dyn Store,
) {
    let (start, owner, first, cursor) = exported_changes(store).await;
    let changes = store.alert_changes_after(start, 100).await.unwrap();
    // The newest rows go away with their subscription; the next change must still come
    // after every position an exporter may already have passed.
    let passed = changes[1].position;
    assert!(store.delete_subscription(&first.id).await.unwrap());
    assert!(store
        .alert_changes_after(start, 100)
        .await
        .unwrap()
        .is_empty());
    let second = subscription_of(&owner, "after the delete", None);
    store.insert_subscription(second.clone()).await.unwrap();
    store
        .commit_processing(ProcessingCommit {
            cursor,
            outputs: vec![export_fire(&second, Severity::Info, "again")],
            ..Default::default()
        })
        .await
        .unwrap();
    let after_delete = store.alert_changes_after(passed, 100).await.unwrap();
    assert_eq!(
        after_delete.len(),
        1,
        "a reused position would hide the change"
    );
    assert!(after_delete[0].position > passed);
    assert_eq!(after_delete[0].alert.subscription_id, second.id);
}
/// Thirty events at 50,000 s + n: types `search.even` / `search.odd`, fields `n`,
/// `shard` (`s{n % 3}`) and `ok` (`n % 4 == 0`).
async fn thirty_search_events(store: &dyn Store) {
    let events: Vec<StoredEvent> = (0..30)
        .map(|n: i64| {
            let input = EventInput {
                event_type: Some(
                    if n % 2 == 0 {
                        "search.even"
                    } else {
                        "search.odd"
                    }
                    .to_string(),
                ),
                fields: json!({"n": n, "shard": format!("s{}", n % 3), "ok": n % 4 == 0})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                ..Default::default()
            };
            StoredEvent::from_input(input, Some("p".to_string()), at(50_000 + n), 0)
        })
        .collect();
    store.append_events(events).await.unwrap();
}

fn numbers(step: &crate::SearchStep) -> Vec<i64> {
    step.events
        .iter()
        .map(|e| e.fields["n"].as_i64().unwrap())
        .collect()
}

fn even_search() -> EventSearch {
    EventSearch {
        event_type: Some("search.even".to_string()),
        limit: 100,
        max_examined: 1000,
        ..Default::default()
    }
}

pub async fn a_search_pushes_type_and_field_predicates_down(store: &dyn Store) {
    use tellify_engine::IndexValue;
    thirty_search_events(store).await;
    let search = even_search();
    let even = store.search_events(search.clone()).await.unwrap();
    assert_eq!(
        numbers(&even),
        (0..30).rev().filter(|n| n % 2 == 0).collect::<Vec<_>>()
    );
    assert_eq!(even.examined, 15, "only events of the type are looked at");
    assert_eq!(even.resume_before, None);
    let sharded = store
        .search_events(EventSearch {
            field_equals: vec![
                ("shard".to_string(), IndexValue::Str("s0".to_string())),
                ("ok".to_string(), IndexValue::Bool(true)),
            ],
            ..search.clone()
        })
        .await
        .unwrap();
    assert_eq!(numbers(&sharded), vec![24, 12, 0]);
    let exact = store
        .search_events(EventSearch {
            field_equals: vec![("n".to_string(), IndexValue::Int(4))],
            ..search.clone()
        })
        .await
        .unwrap();
    assert_eq!(numbers(&exact), vec![4]);
}

pub async fn a_search_resumes_in_bounded_steps_and_misses_nothing(store: &dyn Store) {
    thirty_search_events(store).await;
    let search = even_search();
    // Four rows a step: the search goes on from each step's cursor and misses nothing.
    let mut found = Vec::new();
    let mut before = None;
    let mut steps = 0;
    loop {
        let step = store
            .search_events(EventSearch {
                before_seq: before,
                max_examined: 4,
                ..search.clone()
            })
            .await
            .unwrap();
        assert!(step.examined <= 4, "{}", step.examined);
        found.extend(numbers(&step));
        steps += 1;
        match step.resume_before {
            Some(resume) => before = Some(resume),
            None => break,
        }
    }
    assert_eq!(
        found,
        (0..30).rev().filter(|n| n % 2 == 0).collect::<Vec<_>>()
    );
    assert!(steps >= 4, "{steps}");
    // A full page resumes after its last event.
    let page = store
        .search_events(EventSearch {
            limit: 2,
            ..search.clone()
        })
        .await
        .unwrap();
    assert_eq!(numbers(&page), vec![28, 26]);
    assert_eq!(page.resume_before, Some(page.events[1].seq));
}

pub async fn a_time_range_search_finds_the_range_whatever_the_step_size(store: &dyn Store) {
    thirty_search_events(store).await;
    // A time range, with room to take it whole and with a step too small for it.
    for max_examined in [1000, 3] {
        let mut found = Vec::new();
        let mut before = None;
        loop {
            let step = store
                .search_events(EventSearch {
                    since: Some(at(50_010)),
                    until: Some(at(50_020)),
                    before_seq: before,
                    limit: 100,
                    max_examined,
                    ..Default::default()
                })
                .await
                .unwrap();
            found.extend(numbers(&step));
            match step.resume_before {
                Some(resume) => before = Some(resume),
                None => break,
            }
        }
        assert_eq!(found, (10..20).rev().collect::<Vec<_>>(), "{max_examined}");
    }
}

/// [`Store::event_seq_range`]: the first and last position of a time range, so a reader
/// can walk it in log order with `events_after`; `None` for a range without events.
pub async fn the_positions_of_a_time_range_bound_its_events_in_log_order(store: &dyn Store) {
    thirty_search_events(store).await;
    let (first, last) = store
        .event_seq_range(at(50_010), at(50_020))
        .await
        .unwrap()
        .expect("a range with events");
    assert_eq!(last - first, 9, "ten events, the end excluded");
    let events = store.events_after(first - 1, 100).await.unwrap();
    let walked: Vec<i64> = events
        .iter()
        .take_while(|event| event.seq <= last)
        .map(|event| event.fields["n"].as_i64().unwrap())
        .collect();
    assert_eq!(walked, (10..20).collect::<Vec<_>>());
    assert_eq!(
        store.event_seq_range(at(60_000), at(60_010)).await.unwrap(),
        None
    );
}

/// [`Store::keyed_events`]: the newest events of one type, producer and field values,
/// one of which names a text in a field or a list; and the newest event of each value at a
/// path. Self-contained: its producers are its own, so other data in the store is no
/// matter.
pub async fn keyed_lookups_find_the_newest_event_of_a_key(store: &dyn Store) {
    use crate::KeyedEventQuery;
    // Any type, and `alerta`, which a backend may serve from a structure of its own.
    for event_type in ["keyed.alert", "alerta"] {
        let alert =
            |producer: &str, resource: &str, name: &str, correlate: &[&str], seconds: i64| {
                let mut fields = Fields::new();
                fields.insert("resource".into(), json!(resource));
                fields.insert("event".into(), json!(name));
                fields.insert("correlate".into(), json!(correlate));
                fields.insert("peer".into(), json!({"fingerprint": resource}));
                let input = EventInput {
                    event_type: Some(event_type.to_string()),
                    message: Some(format!("{producer} {resource} {name} {seconds}")),
                    fields,
                    ..Default::default()
                };
                StoredEvent::from_input(input, Some(producer.to_string()), at(seconds), 0)
            };
        store
            .append_events(vec![
                alert("kann", "web01", "HttpError", &["HttpError", "HttpOK"], 10),
                alert("kbob", "web01", "HttpError", &[], 11),
                alert("kann", "web02", "HttpError", &[], 12),
                alert("kann", "web01", "DiskFull", &[], 13),
                alert("kann", "web01", "HttpError", &["HttpError", "HttpOK"], 14),
            ])
            .await
            .unwrap();
        let query = |name: &str, since: i64| KeyedEventQuery {
            event_type: event_type.to_string(),
            producer: Some("kann".to_string()),
            since: at(since),
            equal: vec![("resource".to_string(), "web01".to_string())],
            names: Some((
                vec!["event".to_string(), "correlate".to_string()],
                name.to_string(),
            )),
            newest_per: None,
            limit: 10,
        };
        let messages = |events: Vec<StoredEvent>| -> Vec<String> {
            events
                .into_iter()
                .filter_map(|event| event.message)
                .collect()
        };
        assert_eq!(
            messages(store.keyed_events(query("HttpError", 0)).await.unwrap()),
            vec!["kann web01 HttpError 14", "kann web01 HttpError 10"],
            "newest first; another producer's and another resource's events are not the key's"
        );
        assert_eq!(
            messages(store.keyed_events(query("HttpOK", 0)).await.unwrap()),
            vec!["kann web01 HttpError 14", "kann web01 HttpError 10"],
            "a text named in a list field matches"
        );
        assert_eq!(
            messages(store.keyed_events(query("HttpError", 11)).await.unwrap()),
            vec!["kann web01 HttpError 14"],
            "older events than `since` are left out"
        );
        assert!(store
            .keyed_events(query("NodeDown", 0))
            .await
            .unwrap()
            .is_empty());
        let newest = store
            .keyed_events(KeyedEventQuery {
                event_type: event_type.to_string(),
                producer: None,
                since: at(0),
                equal: Vec::new(),
                names: None,
                newest_per: Some("peer.fingerprint".to_string()),
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(
            messages(newest),
            vec!["kann web01 HttpError 14", "kann web02 HttpError 12"],
            "one, the newest, per value at the path, newest first, of every producer"
        );
    }
}

pub async fn audit_records_are_kept_and_listed_newest_first(store: &dyn Store) {
    let at = Timestamp::from_second(1_800_000_000).unwrap();
    // Likely within one millisecond, where ULIDs are not ordered: the order is the writes'.
    let actions = [
        "user.created",
        "token.created",
        "user.updated",
        "user.role_changed",
    ];
    for (index, action) in actions.into_iter().enumerate() {
        store
            .append_audit(AuditRecord {
                id: tellify_model::new_id(),
                at: at + SignedDuration::from_secs(index as i64),
                actor: "admin".to_string(),
                action: action.to_string(),
                subject: "user ann".to_string(),
                detail: json!({"index": index}),
            })
            .await
            .unwrap();
    }
    let audit = store.list_audit(10).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|record| record.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.role_changed",
            "user.updated",
            "token.created",
            "user.created"
        ]
    );
    assert_eq!(audit[0].detail["index"], 3);
    assert_eq!(store.list_audit(1).await.unwrap().len(), 1);
}

pub async fn a_server_secret_is_written_once_and_shared(store: &dyn Store) {
    let first = store.server_secret("links", vec![1, 2, 3]).await.unwrap();
    assert_eq!(first, vec![1, 2, 3]);
    let second = store.server_secret("links", vec![9, 9, 9]).await.unwrap();
    assert_eq!(
        second,
        vec![1, 2, 3],
        "a second node gets the stored secret"
    );
    let other = store.server_secret("other", vec![7]).await.unwrap();
    assert_eq!(other, vec![7], "secrets are kept by name");
}

pub async fn a_link_nonce_is_used_once_until_released_or_pruned(store: &dyn Store) {
    assert!(!store.link_used("n1").await.unwrap());
    assert!(store.use_link("n1", at(100), at(0)).await.unwrap());
    assert!(
        !store.use_link("n1", at(100), at(1)).await.unwrap(),
        "a second use of one nonce is refused"
    );
    assert!(store.link_used("n1").await.unwrap());
    store.release_link("n1").await.unwrap();
    assert!(!store.link_used("n1").await.unwrap());
    assert!(store.use_link("n1", at(100), at(2)).await.unwrap());
    // Another use after the first link expired prunes its row.
    assert!(store.use_link("n2", at(500), at(101)).await.unwrap());
    assert!(
        !store.link_used("n1").await.unwrap(),
        "expired rows are pruned"
    );
    assert!(store.link_used("n2").await.unwrap());
}

// ---- the dashboard's summaries ----

/// An event at minute `minute` after `at(0)` with these fields (and a host).
fn chart_event(minute: i64, event_type: Option<&str>, fields: serde_json::Value) -> StoredEvent {
    let input = EventInput {
        event_type: event_type.map(str::to_string),
        time: Some(at(minute * 60)),
        source: Some(tellify_model::Source {
            host: Some(format!("h{}", minute % 2)),
            component: None,
        }),
        fields: fields.as_object().cloned().unwrap_or_default(),
        ..Default::default()
    };
    StoredEvent::from_input(input, None, at(minute * 60), 0)
}

/// The hour after `at(0)` in `buckets` buckets, looking at up to 1,000 events.
fn chart_query(field: &str, group: &str, buckets: usize) -> ChartQuery {
    ChartQuery {
        since: at(0),
        until: at(3600),
        field: field.to_string(),
        group: group.to_string(),
        event_type: None,
        buckets,
        max_series: 20,
        max_examined: 1000,
    }
}

pub async fn a_chart_buckets_a_numeric_field_per_key_and_counts_what_is_not_a_number(
    store: &dyn Store,
) {
    // usage 0, 10, .. 50 at minutes 0, 5, .. 25, alternating between two filesystems.
    let mut events: Vec<StoredEvent> = (0..6)
        .map(|i| {
            chart_event(
                i * 5,
                None,
                json!({"usage": i * 10, "fs": if i % 2 == 0 { "/" } else { "/home" }}),
            )
        })
        .collect();
    events.push(chart_event(7, None, json!({"usage": "full", "fs": "/"})));
    events.push(chart_event(8, None, json!({"usage": null})));
    events.push(chart_event(9, None, json!({"other": 1})));
    // Outside the range on both sides.
    events.push(chart_event(-1, None, json!({"usage": 1000, "fs": "/"})));
    events.push(chart_event(60, None, json!({"usage": 1000, "fs": "/"})));
    store.append_events(events).await.unwrap();

    let chart = store
        .chart_events(chart_query("usage", "fs", 4))
        .await
        .unwrap();
    assert_eq!(chart.numeric, 6);
    assert_eq!(chart.not_numeric, 2, "a string and a null");
    assert_eq!(chart.examined, 9, "the events in the range");
    assert_eq!(chart.cut_at, None);
    assert_eq!(chart.series_cut, 0);
    let keys: Vec<&str> = chart.series.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, ["/", "/home"]);
    // "/": minutes 0, 10, 20 with 0, 20, 40; buckets of 15 minutes: 0-14 and 15-29.
    let root = &chart.series[0];
    assert_eq!(root.events, 3);
    let buckets: Vec<(usize, u64, f64)> = root
        .buckets
        .iter()
        .map(|b| (b.bucket, b.count, b.sum))
        .collect();
    assert_eq!(buckets, [(0, 2, 20.0), (1, 1, 40.0)]);
    assert_eq!(
        root.buckets[0].mean_time,
        at(5 * 60),
        "mean of minutes 0 and 10"
    );
    assert_eq!(root.buckets[1].mean_time, at(20 * 60));

    // No group: one line `all`; a group field no event has falls back to the source.
    let one = store
        .chart_events(chart_query("usage", "", 1))
        .await
        .unwrap();
    assert_eq!(one.series.len(), 1);
    assert_eq!(one.series[0].key, "all");
    assert_eq!(one.series[0].buckets[0].count, 6);
    assert_eq!(one.series[0].buckets[0].sum, 150.0);
    let by_host = store
        .chart_events(chart_query("usage", "host", 1))
        .await
        .unwrap();
    let keys: Vec<(&str, u64)> = by_host
        .series
        .iter()
        .map(|s| (s.key.as_str(), s.events))
        .collect();
    assert_eq!(keys, [("h0", 3), ("h1", 3)]);
    let nowhere = store
        .chart_events(chart_query("usage", "nowhere", 1))
        .await
        .unwrap();
    assert_eq!(nowhere.series[0].key, "(none)");
    // A number as the group key is its JSON text.
    let by_usage = store
        .chart_events(chart_query("usage", "usage", 1))
        .await
        .unwrap();
    assert_eq!(by_usage.series[1].key, "10");
}

pub async fn a_chart_keeps_the_keys_with_the_most_events_and_filters_by_type(store: &dyn Store) {
    // Key k has k + 1 events of type `disk`; one more event of another type for key 0.
    let mut events = Vec::new();
    for key in 0..5 {
        for minute in 0..(key + 1) {
            events.push(chart_event(
                minute,
                Some("disk"),
                json!({"v": minute * 2, "k": key}),
            ));
        }
    }
    events.push(chart_event(1, Some("cpu"), json!({"v": 7, "k": 0})));
    store.append_events(events).await.unwrap();

    let mut query = chart_query("v", "k", 2);
    query.max_series = 3;
    let chart = store.chart_events(query.clone()).await.unwrap();
    assert_eq!(chart.series_cut, 2);
    let keys: Vec<&str> = chart.series.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, ["2", "3", "4"], "the keys with the most events");
    assert_eq!(chart.numeric, 16, "every numeric event counts, kept or cut");
    let four = &chart.series[2];
    assert_eq!(four.buckets.len(), 1);
    assert_eq!(four.buckets[0].count, 5);
    assert_eq!(four.buckets[0].sum, 20.0, "0 + 2 + 4 + 6 + 8");

    query.max_series = 20;
    query.event_type = Some("cpu".to_string());
    let cpu = store.chart_events(query).await.unwrap();
    assert_eq!(cpu.numeric, 1);
    assert_eq!(cpu.series[0].key, "0");
    assert_eq!(cpu.series[0].buckets[0].sum, 7.0);
}

pub async fn a_chart_looks_at_no_more_than_its_budget_and_says_where_it_stopped(store: &dyn Store) {
    let events: Vec<StoredEvent> = (0..30)
        .map(|minute| chart_event(minute, None, json!({"v": 1})))
        .collect();
    store.append_events(events).await.unwrap();
    let mut query = chart_query("v", "", 1);
    query.max_examined = 10;
    let chart = store.chart_events(query).await.unwrap();
    assert_eq!(chart.examined, 10);
    assert_eq!(chart.numeric, 10, "the newest ten");
    assert_eq!(chart.cut_at, Some(at(20 * 60)));
}

/// `count` alerts of one subscription of `owner`, keys `k0`.., fired one second apart
/// from `at(first)` plus a quarter second (times with a fraction).
async fn fired_alerts(
    store: &dyn Store,
    subscription: &Subscription,
    count: usize,
    first: i64,
) -> Vec<tellify_engine::alerts::Alert> {
    let origin = subscription.origin();
    let outputs = (0..count)
        .map(|index| {
            let mut output = fire_output(
                &origin,
                &format!("k{index}"),
                first + index as i64,
                Severity::Warning,
            );
            output.at += SignedDuration::from_millis(250);
            output
        })
        .collect();
    let outcome = store
        .commit_processing(ProcessingCommit {
            cursor: 1,
            outputs,
            ..Default::default()
        })
        .await
        .unwrap();
    outcome
        .changes
        .into_iter()
        .map(|change| change.alert)
        .collect()
}

pub async fn subscription_alerts_count_every_firing_alert_and_the_last_fire(store: &dyn Store) {
    let (bob, subscription) = bob_subscribed(store).await;
    let quiet = subscription_of(&bob, "quiet", None);
    store.insert_subscription(quiet.clone()).await.unwrap();
    let carol = user("carol");
    store.create_user(carol.clone()).await.unwrap();
    let carols = subscription_of(&carol, "carol's", None);
    store.insert_subscription(carols.clone()).await.unwrap();
    let alerts = fired_alerts(store, &subscription, 5, 10).await;
    fired_alerts(store, &carols, 2, 100).await;
    // One resolves, one is cleared: three still fire.
    store
        .commit_processing(ProcessingCommit {
            cursor: 2,
            outputs: vec![OutputToApply {
                origin: subscription.origin(),
                output: AlertOutput::Resolve {
                    group_key: "k0".to_string(),
                    message: None,
                },
                at: at(20),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .act_on_alert(&alerts[1].id, Action::Clear, "bob", at(21))
        .await
        .unwrap();

    let bobs = store
        .subscription_alerts(Some(&viewer(&bob.id)))
        .await
        .unwrap();
    assert_eq!(bobs.len(), 1, "the quiet one has no alerts: {bobs:?}");
    assert_eq!(bobs[0].subscription_id, subscription.id);
    assert_eq!(bobs[0].firing, 3);
    assert_eq!(
        bobs[0].last_fired,
        Some(at(14) + SignedDuration::from_millis(250)),
        "the newest last_seen, to the millisecond"
    );
    let everyone = store.subscription_alerts(None).await.unwrap();
    assert_eq!(everyone.len(), 2);
    assert!(store
        .subscription_alerts(Some(&viewer("someone-else")))
        .await
        .unwrap()
        .is_empty());
}

pub async fn held_alerts_are_the_actors_acks_and_shelves_the_viewer_may_see(store: &dyn Store) {
    let (bob, subscription) = bob_subscribed(store).await;
    let alerts = fired_alerts(store, &subscription, 6, 10).await;
    let act = |index: usize, action: Action, actor: &'static str| {
        let id = alerts[index].id.clone();
        async move {
            store
                .act_on_alert(&id, action, actor, at(30))
                .await
                .unwrap()
        }
    };
    let ack = || Action::Ack {
        note: None,
        expires: Some(at(4000)),
    };
    let shelve = || Action::Shelve {
        until: None,
        oneshot: true,
        reason: None,
    };
    act(0, ack(), "bob").await; // the oldest, held
    act(1, shelve(), "bob").await; // held
    act(2, ack(), "carol").await; // someone else's
    act(3, ack(), "bob").await;
    act(3, Action::Clear, "bob").await; // cleared: gone from the view
    act(4, shelve(), "bob").await;
    act(4, Action::Unshelve, "bob").await; // no longer shelved
    act(5, ack(), "bob").await;
    act(5, shelve(), "bob").await; // acked and shelved: listed once

    let held = store
        .held_alerts("bob", Some(&viewer(&bob.id)))
        .await
        .unwrap();
    let ids: Vec<&str> = held.iter().map(|alert| alert.id.as_str()).collect();
    // Ids sort by creation time (alerts made in one millisecond in any order).
    let mut expected: Vec<&str> = [0, 1, 5].iter().map(|i| alerts[*i].id.as_str()).collect();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, expected, "newest first");
    assert_eq!(store.held_alerts("bob", None).await.unwrap().len(), 3);
    assert_eq!(store.held_alerts("carol", None).await.unwrap().len(), 1);
    assert!(store
        .held_alerts("bob", Some(&viewer("someone-else")))
        .await
        .unwrap()
        .is_empty());
}
