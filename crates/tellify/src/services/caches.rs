//! The one place that tells the in-memory copies about a write: the token cache, the
//! notification planner's directory, the worker's loaded subscriptions and the event-type
//! registry. Every function here is called by a service right after its store write
//! returned, and awaits the refresh where the copy must be current before the caller hears
//! back (a policy saved is a policy the next alert is planned with).

use tellify_store::{StoreResult, Subscription};

use super::Services;

/// Users, groups or memberships changed: cached principals (with their group ids) are
/// dropped and the planner rereads who belongs where.
pub async fn people_changed(services: &Services) -> StoreResult<()> {
    services.auth.invalidate();
    services.notifier.directory_changed().await
}

/// A token went: its cached principal must not outlive it.
pub fn token_revoked(services: &Services) {
    services.auth.invalidate();
}

/// One user's time zone, contact points, policies or silences changed.
pub async fn user_settings_changed(services: &Services, user_id: &str) -> StoreResult<()> {
    services.notifier.user_changed(user_id).await
}

/// A subscription was created or changed: the worker reloads it before its next batch,
/// and the planner learns the policy it notifies with.
pub fn subscription_saved(services: &Services, subscription: &Subscription) {
    services.worker.subscription_changed(&subscription.id);
    services
        .notifier
        .subscription_policy(&subscription.id, subscription.policy.as_deref());
}

/// Subscriptions whose owner or membership changed: the worker rereads them (and drops
/// those that went); the planner learns of such changes through [`people_changed`].
pub fn subscriptions_reread(services: &Services, subscription_ids: &[String]) {
    for id in subscription_ids {
        services.worker.subscription_changed(id);
    }
}

/// A subscription was deleted: the worker drops it, the planner forgets its policy.
pub fn subscription_gone(services: &Services, subscription_id: &str) {
    services.worker.subscription_changed(subscription_id);
    services.notifier.subscription_policy(subscription_id, None);
}

/// An event type was written or deleted: ingest checks against the new definition before
/// the caller hears back.
pub async fn event_type_changed(services: &Services, name: &str) -> StoreResult<()> {
    services
        .event_types
        .refresh(services.store.as_ref(), name)
        .await
}
