//! Alerts: list the caller's, read one with its history, and act on one (ack, shelve,
//! unshelve, clear). The JSON API, the dashboard and the action links in notifications all
//! act through [`act`], so an action is written, published to live views and attributed the
//! same way whichever face it came from.

use std::sync::Arc;

use jiff::Timestamp;
use tellify_engine::alerts::{Action, Alert, AlertState, HistoryEntry};
use tellify_model::Severity;
use tellify_store::{AlertQuery, ClearedFilter, SubscriptionAlerts};

use super::error::{require, ServiceError, ServiceResult};
use super::Services;
use crate::auth::{Principal, Scope};
use crate::stream::{AlertNotice, StreamItem};

/// Which alerts a list holds, by lifecycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StateFilter {
    /// Firing and resolved, not cleared (the default view).
    #[default]
    Open,
    Firing,
    Resolved,
    Cleared,
    All,
}

impl StateFilter {
    /// Reads `firing`, `resolved`, `cleared` or `all`; empty is [`StateFilter::Open`].
    pub fn parse(text: &str) -> Result<StateFilter, String> {
        match text {
            "" => Ok(StateFilter::Open),
            "firing" => Ok(StateFilter::Firing),
            "resolved" => Ok(StateFilter::Resolved),
            "cleared" => Ok(StateFilter::Cleared),
            "all" => Ok(StateFilter::All),
            other => Err(format!(
                "`{other}` is not one of firing, resolved, cleared, all"
            )),
        }
    }

    fn query(self) -> (Option<AlertState>, ClearedFilter) {
        match self {
            StateFilter::Open => (None, ClearedFilter::Exclude),
            StateFilter::Firing => (Some(AlertState::Firing), ClearedFilter::Exclude),
            StateFilter::Resolved => (Some(AlertState::Resolved), ClearedFilter::Exclude),
            StateFilter::Cleared => (None, ClearedFilter::Only),
            StateFilter::All => (None, ClearedFilter::Include),
        }
    }
}

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct AlertFilter {
    pub state: StateFilter,
    pub subscription: Option<String>,
    pub severity: Option<Severity>,
    /// Alerts older than this id (the previous page's last).
    pub before: Option<String>,
    pub limit: usize,
}

/// One page of alerts, newest first, as of `now`.
pub struct AlertPage {
    pub items: Vec<Alert>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

/// The alerts the caller may see (all of them for an admin), newest first.
pub async fn list(
    services: &Services,
    principal: &Principal,
    filter: AlertFilter,
) -> ServiceResult<AlertPage> {
    require(principal, Scope::User)?;
    let (state, cleared) = filter.state.query();
    let limit = filter.limit.max(1);
    let viewer = (!principal.is_admin()).then(|| principal.viewer());
    let mut alerts = services
        .store
        .list_alerts(AlertQuery {
            viewer,
            state,
            subscription_id: filter.subscription,
            severity: filter.severity,
            cleared,
            before_id: filter.before,
            // One more than asked tells whether another page follows.
            limit: limit + 1,
        })
        .await?;
    let more = alerts.len() > limit;
    alerts.truncate(limit);
    let next = if more {
        alerts.last().map(|a| a.id.clone())
    } else {
        None
    };
    let now = services.clock.now();
    let items = alerts.into_iter().map(|alert| alert.at(now)).collect();
    Ok(AlertPage { items, next })
}

/// Per subscription with alerts the caller may see: how many fire and when one last
/// fired, counted by the store over every alert (not a page of them).
pub async fn subscription_states(
    services: &Services,
    principal: &Principal,
) -> ServiceResult<Vec<SubscriptionAlerts>> {
    require(principal, Scope::User)?;
    let viewer = (!principal.is_admin()).then(|| principal.viewer());
    Ok(services.store.subscription_alerts(viewer.as_ref()).await?)
}

/// The alerts the caller may see that they acknowledged or shelved, with the
/// acknowledgement or shelve still in force now, newest first: all of them, however many
/// other alerts there are. Each as of now.
pub async fn held(services: &Services, principal: &Principal) -> ServiceResult<Vec<Alert>> {
    require(principal, Scope::User)?;
    let viewer = (!principal.is_admin()).then(|| principal.viewer());
    let name = principal.user.name.as_str();
    let now = services.clock.now();
    let alerts = services.store.held_alerts(name, viewer.as_ref()).await?;
    Ok(alerts
        .into_iter()
        .map(|alert| alert.at(now))
        .filter(|alert| {
            let acked = alert.is_acked(now) && alert.acked_by.as_deref() == Some(name);
            let shelved = alert.is_shelved(now) && alert.shelved_by.as_deref() == Some(name);
            acked || shelved
        })
        .collect())
}

/// An alert the caller may see, as of now; anything else is "not found".
pub async fn visible(services: &Services, principal: &Principal, id: &str) -> ServiceResult<Alert> {
    require(principal, Scope::User)?;
    match services.store.alert(id).await? {
        Some(alert)
            if principal.can_see(alert.owner_user.as_deref(), alert.owner_group.as_deref()) =>
        {
            Ok(alert.at(services.clock.now()))
        }
        _ => Err(ServiceError::NotFound("alert")),
    }
}

/// An alert the caller may see with its history, oldest entry first.
pub async fn with_history(
    services: &Services,
    principal: &Principal,
    id: &str,
) -> ServiceResult<(Alert, Vec<HistoryEntry>)> {
    let alert = visible(services, principal, id).await?;
    let history = services.store.alert_history(id).await?;
    Ok((alert, history))
}

/// Performs `action` on an alert the caller may see, as the caller, in one store
/// transaction, and tells live views. Returns the alert as of now.
pub async fn act(
    services: &Services,
    principal: &Principal,
    id: &str,
    action: Action,
) -> ServiceResult<Alert> {
    visible(services, principal, id).await?;
    let now: Timestamp = services.clock.now();
    let change = services
        .store
        .act_on_alert(id, action, &principal.user.name, now)
        .await?;
    services
        .bus
        .tell_others(tellify_store::Announcement::Alert {
            id: change.alert.id.clone(),
            entries: change.history.len(),
        });
    services
        .bus
        .publish(StreamItem::Alert(Arc::new(AlertNotice {
            alert: change.alert.clone(),
            history: change.history,
        })));
    Ok(change.alert.at(now))
}
