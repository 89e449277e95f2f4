//! The one place that tells the in-memory copies about a write: the token cache, the
//! notification planner's directory, the worker's loaded subscriptions and the event-type
//! registry. Every function here is called by a service right after its store write
//! returned, and awaits the refresh where the copy must be current before the caller hears
//! back (a policy saved is a policy the next alert is planned with).
//!
//! With several nodes on one store, each change is also announced
//! ([`tellify_store::Store::announce`]), and every other node applies it to its own copies
//! ([`follow`]): a token revoked on one node is refused by all of them.

use tellify_store::{Announcement, StoreResult, Subscription};

use super::Services;

/// Applies a change to this node's in-memory copies.
pub async fn apply(services: &Services, change: &Announcement) -> StoreResult<()> {
    match change {
        Announcement::People => {
            services.auth.invalidate();
            services.notifier.directory_changed().await
        }
        Announcement::TokenRevoked => {
            services.auth.invalidate();
            Ok(())
        }
        Announcement::UserSettings { user_id } => services.notifier.user_changed(user_id).await,
        Announcement::SubscriptionSaved { id, policy } => {
            services.worker.subscription_changed(id);
            services
                .notifier
                .subscription_policy(id, policy.as_deref())
                .await;
            Ok(())
        }
        Announcement::SubscriptionGone { id } => {
            services.worker.subscription_changed(id);
            services.notifier.subscription_policy(id, None).await;
            Ok(())
        }
        Announcement::SubscriptionsReread { ids } => {
            for id in ids {
                services.worker.subscription_changed(id);
            }
            Ok(())
        }
        Announcement::EventType { name } => {
            services
                .event_types
                .refresh(services.store.as_ref(), name)
                .await
        }
        // Live-view changes are shown on this node's live views by `crate::stream::relay`;
        // here they only wake what would otherwise wait for its next poll.
        // New events on another node: the worker looks at once (it would otherwise find
        // them at its next poll); it processes them only if it holds the lease.
        Announcement::Events { last, .. } => {
            services.worker.appended(*last);
            Ok(())
        }
        // An alert changed on the processing node, whose commit already woke its own
        // notifier: this node's notifier finds any work left at its next look (within a
        // second; every 20 ms once it saw something due). Waking every node's notifier here made all of
        // them race for the same rows, the losers claiming nothing for the same round
        // trips: with three nodes on PostgreSQL, the same build in one sitting gave a
        // webhook p99 of 61–77 ms with that wake, 45–47 ms without (docs/performance.md).
        Announcement::Alert { .. } | Announcement::Delivery { .. } => Ok(()),
        Announcement::Everything => {
            services.auth.invalidate();
            services.worker.reload_everything();
            services.event_types.reload(services.store.as_ref()).await?;
            services.notifier.directory_changed().await
        }
    }
}

/// Applies `change` here, then tells the other nodes.
async fn apply_and_announce(services: &Services, change: Announcement) -> StoreResult<()> {
    apply(services, &change).await?;
    announce(services, &change).await;
    Ok(())
}

/// Tells the other nodes; a failure is logged, not returned: the change itself is saved,
/// and the other nodes reread everything when their listener reconnects.
async fn announce(services: &Services, change: &Announcement) {
    if let Err(error) = services.store.announce(&services.node, change).await {
        tracing::warn!(%error, ?change, "cannot tell the other nodes about a change");
    }
}

/// Applies the other nodes' announcements here until `shutdown`. What has arrived when it
/// looks is applied together, through [`coalesce`].
pub async fn follow(
    services: super::AppState,
    mut announcements: tokio::sync::mpsc::Receiver<tellify_store::Announced>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut waiting = Vec::new();
    loop {
        let received = tokio::select! {
            received = announcements.recv_many(&mut waiting, FOLLOW_BATCH) => received,
            _ = shutdown.changed() => return Ok(()),
        };
        if received == 0 {
            return Ok(());
        }
        let changes = std::mem::take(&mut waiting)
            .into_iter()
            .filter(|announced| announced.from != services.node)
            .map(|announced| announced.change);
        for change in coalesce(changes) {
            if let Err(error) = apply(&services, &change).await {
                tracing::warn!(%error, ?change, "cannot apply another node's change");
            }
        }
    }
}

/// How many waiting announcements [`follow`] takes at once.
const FOLLOW_BATCH: usize = 1_024;

/// More distinct users' settings changed than this in one batch: the planner rereads its
/// whole directory once instead of each user's settings.
const USERS_REREAD_ONE_BY_ONE: usize = 16;

/// The changes of one batch of announcements, cheapest to apply and most urgent first.
///
/// Another node's events and alert changes only wake this node's worker and notifier:
/// they come first, so a batch of settings changes (1,000 users set up on other nodes are
/// thousands of announcements, each a few store reads to apply) does not hold up the next
/// events. That order is safe because the processing worker compares the store's settings
/// generation before every batch and applies what changed first (`Worker::catch_up_settings`).
/// Then the cache changes, in the order they came, without repeats: `Everything` stands for
/// all of them; settings of many users become one reread of the planner's directory
/// (`People`, which also drops cached principals). Delivery changes need nothing here
/// (the live views show them through `crate::stream::relay`).
pub fn coalesce(changes: impl IntoIterator<Item = Announcement>) -> Vec<Announcement> {
    let mut wake = Vec::new();
    let mut rest: Vec<Announcement> = Vec::new();
    let mut everything = false;
    let mut users: Vec<String> = Vec::new();
    for change in changes {
        match change {
            // One wake of each kind is enough: the worker reads from its cursor, and the
            // notifier claims whatever is due.
            Announcement::Events { first, last } => {
                let seen = wake.iter_mut().find_map(|earlier| match earlier {
                    Announcement::Events { last, .. } => Some(last),
                    _ => None,
                });
                match seen {
                    Some(seen) => *seen = (*seen).max(last),
                    None => wake.push(Announcement::Events { first, last }),
                }
            }
            Announcement::Alert { .. } => {
                if !wake
                    .iter()
                    .any(|earlier| matches!(earlier, Announcement::Alert { .. }))
                {
                    wake.push(change);
                }
            }
            Announcement::Delivery { .. } => {}
            Announcement::Everything => everything = true,
            Announcement::UserSettings { user_id } => {
                if !users.contains(&user_id) {
                    users.push(user_id);
                }
            }
            // The last of equal changes stays, in its place: a subscription saved, deleted
            // and saved again ends saved.
            other => {
                rest.retain(|earlier| *earlier != other);
                rest.push(other);
            }
        }
    }
    if everything {
        wake.push(Announcement::Everything);
        return wake;
    }
    if !rest.contains(&Announcement::People) {
        if users.len() > USERS_REREAD_ONE_BY_ONE {
            rest.push(Announcement::People);
        } else {
            rest.extend(
                users
                    .into_iter()
                    .map(|user_id| Announcement::UserSettings { user_id }),
            );
        }
    }
    wake.extend(rest);
    wake
}

/// Users, groups or memberships changed: cached principals (with their group ids) are
/// dropped and the planner rereads who belongs where.
pub async fn people_changed(services: &Services) -> StoreResult<()> {
    apply_and_announce(services, Announcement::People).await
}

/// A token went: its cached principal must not outlive it.
pub async fn token_revoked(services: &Services) {
    services.auth.invalidate();
    announce(services, &Announcement::TokenRevoked).await;
}

/// One user's time zone, contact points, policies or silences changed.
pub async fn user_settings_changed(services: &Services, user_id: &str) -> StoreResult<()> {
    let user_id = user_id.to_string();
    apply_and_announce(services, Announcement::UserSettings { user_id }).await
}

/// A subscription was created or changed: the worker reloads it before its next batch,
/// and the planner learns the policy it notifies with.
pub async fn subscription_saved(services: &Services, subscription: &Subscription) {
    let change = Announcement::SubscriptionSaved {
        id: subscription.id.clone(),
        policy: subscription.policy.clone(),
    };
    apply_locally(services, change).await;
}

/// Subscriptions whose owner or membership changed: the worker rereads them (and drops
/// those that went); the planner learns of such changes through [`people_changed`].
pub async fn subscriptions_reread(services: &Services, subscription_ids: &[String]) {
    let change = Announcement::SubscriptionsReread {
        ids: subscription_ids.to_vec(),
    };
    apply_locally(services, change).await;
}

/// A subscription was deleted: the worker drops it, the planner forgets its policy.
pub async fn subscription_gone(services: &Services, subscription_id: &str) {
    let change = Announcement::SubscriptionGone {
        id: subscription_id.to_string(),
    };
    apply_locally(services, change).await;
}

/// Applies a change that cannot fail here (no store read), then announces it.
async fn apply_locally(services: &Services, change: Announcement) {
    if let Err(error) = apply_and_announce(services, change).await {
        tracing::warn!(%error, "cannot apply a change to this node's copies");
    }
}

/// An event type was written or deleted: ingest checks against the new definition before
/// the caller hears back.
pub async fn event_type_changed(services: &Services, name: &str) -> StoreResult<()> {
    let name = name.to_string();
    apply_and_announce(services, Announcement::EventType { name }).await
}

#[cfg(test)]
mod tests {
    use tellify_store::Announcement;

    use super::coalesce;

    fn events(first: i64, last: i64) -> Announcement {
        Announcement::Events { first, last }
    }

    fn user(id: &str) -> Announcement {
        Announcement::UserSettings {
            user_id: id.to_string(),
        }
    }

    fn saved(id: &str) -> Announcement {
        Announcement::SubscriptionSaved {
            id: id.to_string(),
            policy: None,
        }
    }

    fn gone(id: &str) -> Announcement {
        Announcement::SubscriptionGone { id: id.to_string() }
    }

    #[test]
    fn wake_ups_go_before_settings_and_once_each() {
        let alert = |id: &str| Announcement::Alert {
            id: id.to_string(),
            entries: 1,
        };
        let batch = vec![
            user("u1"),
            events(5, 7),
            saved("s1"),
            alert("a1"),
            events(8, 9),
            alert("a2"),
            user("u1"),
        ];
        assert_eq!(
            coalesce(batch),
            [events(5, 9), alert("a1"), saved("s1"), user("u1")]
        );
    }

    #[test]
    fn the_last_of_equal_changes_stays_in_its_place() {
        let batch = vec![
            saved("s1"),
            gone("s1"),
            saved("s1"),
            Announcement::TokenRevoked,
        ];
        assert_eq!(
            coalesce(batch),
            [gone("s1"), saved("s1"), Announcement::TokenRevoked]
        );
    }

    #[test]
    fn many_users_settings_become_one_directory_reread_and_everything_covers_all() {
        let batch: Vec<Announcement> = (0..100).map(|n| user(&format!("u{n}"))).collect();
        assert_eq!(coalesce(batch), [Announcement::People]);
        let batch = vec![
            saved("s1"),
            events(1, 1),
            Announcement::Everything,
            user("u1"),
        ];
        assert_eq!(coalesce(batch), [events(1, 1), Announcement::Everything]);
    }
}
