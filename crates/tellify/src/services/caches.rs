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
        // An alert changed on the processing node: its notifications may be due, and every
        // node's notifier takes deliveries (measured with three nodes: p99 141 ms with
        // this wake, 766 ms without, the others finding the work at their next poll).
        Announcement::Alert { .. } => {
            services.notifier.wake();
            Ok(())
        }
        Announcement::Delivery { .. } => Ok(()),
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

/// Applies the other nodes' announcements here until `shutdown`.
pub async fn follow(
    services: super::AppState,
    mut announcements: tokio::sync::mpsc::Receiver<tellify_store::Announced>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    loop {
        let announced = tokio::select! {
            announced = announcements.recv() => announced,
            _ = shutdown.changed() => return Ok(()),
        };
        let Some(announced) = announced else {
            return Ok(());
        };
        if announced.from == services.node {
            continue;
        }
        if let Err(error) = apply(&services, &announced.change).await {
            tracing::warn!(%error, change = ?announced.change, "cannot apply another node's change");
        }
    }
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
