//! The in-process bus that feeds `GET /api/v1/stream` and the dashboard's live pages: new
//! events, alert changes and delivery changes, published after they are durable.
//!
//! With several nodes on one store, a change made on one node must show on every node's
//! live views. Whoever publishes a change here also tells the other nodes
//! ([`Bus::tell_events`], [`Bus::tell_others`]): the change goes, as an
//! [`Announcement`] naming ids and positions only, to [`announce`], which sends it through
//! the store (PostgreSQL `NOTIFY`). Every node's [`relay`] reads the others' announcements,
//! fetches what they name from the store (only while someone on this node watches) and
//! publishes it on its own bus, where each stream filters it per caller exactly as a local
//! change. A batch of events is announced as its unbroken runs of positions and fetched
//! with [`Store::events_after`], so a burst of 10,000 events costs each node a few
//! notifications and page reads, not 10,000 of each.
//!
//! Live views are best effort, as they are on one node: after the announcement listener
//! lost its connection ([`Announcement::Everything`]), what other nodes did during the gap
//! is not replayed one by one; instead every live view is told ([`StreamItem::Resync`])
//! and catches up from the store — a dashboard region with a fresh snapshot, an API
//! client by reconnecting with `Last-Event-ID`, which reads the missed events from the log.

use std::sync::Arc;

use tellify_engine::alerts::{Alert, HistoryEntry};
use tellify_model::StoredEvent;
use tellify_store::{Announced, Announcement, Store, StoreResult};
use tokio::sync::{broadcast, mpsc, watch};

#[derive(Clone, Debug)]
pub enum StreamItem {
    Event(Arc<StoredEvent>),
    Alert(Arc<AlertNotice>),
    /// A delivery was created (ganged and claimed for sending) or an attempt's outcome was
    /// committed. Published only while someone listens (the notifier asks
    /// [`Bus::wanted`]), so the notifier pays nothing when no page is open.
    Delivery(Arc<DeliveryNotice>),
    /// This node lost its connection to the other nodes' announcements and is back:
    /// changes they made meanwhile were not relayed. Live views catch up as after a lag —
    /// a dashboard region renders a fresh snapshot, the event tail shows its gap, an API
    /// stream says `resync` so its client reconnects with `Last-Event-ID`.
    Resync,
}

/// Which delivery changed, whose it is and its status now: enough for a live page to know
/// whether to render again; the page reads the delivery itself.
#[derive(Clone, Debug)]
pub struct DeliveryNotice {
    pub id: String,
    pub user_id: String,
    pub status: tellify_store::DeliveryStatus,
}

#[derive(Clone, Debug)]
pub struct AlertNotice {
    pub alert: Alert,
    pub history: Vec<HistoryEntry>,
}

/// Changes waiting to be announced to the other nodes; beyond this many (the store is
/// slow or away) further ones are dropped with a warning, as live views are best effort.
const MAX_UNANNOUNCED: usize = 16_384;

/// Most events one store read fetches while relaying another node's batch.
const RELAY_PAGE: usize = 1_000;

#[derive(Clone)]
pub struct Bus {
    sender: broadcast::Sender<StreamItem>,
    /// Where changes go to be announced to the other nodes ([`announce`]); `None` when no
    /// other node can share the store.
    others: Option<mpsc::Sender<Announcement>>,
}

impl Default for Bus {
    fn default() -> Self {
        let (sender, _) = broadcast::channel(16_384);
        Bus {
            sender,
            others: None,
        }
    }
}

impl Bus {
    /// A bus whose changes are also told to the other nodes on the store: the receiver is
    /// for [`announce`].
    pub fn for_several_nodes() -> (Bus, mpsc::Receiver<Announcement>) {
        let (others, outgoing) = mpsc::channel(MAX_UNANNOUNCED);
        let bus = Bus {
            others: Some(others),
            ..Bus::default()
        };
        (bus, outgoing)
    }

    /// Shows `item` on this node's live views only (see [`Bus::tell_others`]).
    pub fn publish(&self, item: StreamItem) {
        // No subscribers is fine: nobody is watching.
        let _ = self.sender.send(item);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<StreamItem> {
        self.sender.subscribe()
    }

    /// Whether someone on this node watches.
    pub fn has_listeners(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Whether a change is worth describing: someone watches here, or other nodes (whose
    /// watchers this node cannot see) must hear of it.
    pub fn wanted(&self) -> bool {
        self.has_listeners() || self.others.is_some()
    }

    /// Tells the other nodes about a change this node published (best effort).
    pub fn tell_others(&self, change: Announcement) {
        let Some(others) = &self.others else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(change)) = others.try_send(change) {
            tracing::warn!(?change, "too many changes waiting to be told to other nodes; their live views miss this one");
        }
    }

    /// Tells the other nodes about events appended at `positions` (in any order): one
    /// announcement per unbroken run of positions.
    pub fn tell_events(&self, positions: impl IntoIterator<Item = i64>) {
        if self.others.is_none() {
            return;
        }
        for (first, last) in runs(positions) {
            self.tell_others(Announcement::Events { first, last });
        }
    }
}

/// The unbroken runs of `positions`, sorted: `[4, 1, 2, 3, 7]` gives `(1, 4), (7, 7)`.
fn runs(positions: impl IntoIterator<Item = i64>) -> Vec<(i64, i64)> {
    let mut positions: Vec<i64> = positions.into_iter().collect();
    positions.sort_unstable();
    positions.dedup();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for position in positions {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == position => *last = position,
            _ => runs.push((position, position)),
        }
    }
    runs
}

/// Sends this node's changes to the other nodes until `shutdown`. What is waiting when
/// it looks is sent together ([`Store::announce_all`]), adjacent event runs merged into
/// one announcement.
pub async fn announce(
    store: Arc<dyn Store>,
    node: String,
    mut outgoing: mpsc::Receiver<Announcement>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut waiting = Vec::new();
    loop {
        let received = tokio::select! {
            received = outgoing.recv_many(&mut waiting, 1_024) => received,
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        };
        if received == 0 {
            return Ok(());
        }
        let changes = merge_event_runs(std::mem::take(&mut waiting));
        if let Err(error) = store.announce_all(&node, &changes).await {
            tracing::warn!(%error, count = changes.len(), "cannot tell the other nodes about changes");
        }
    }
}

/// `changes` in order, with each event run that continues the one before merged into it.
fn merge_event_runs(changes: Vec<Announcement>) -> Vec<Announcement> {
    let mut merged: Vec<Announcement> = Vec::with_capacity(changes.len());
    for change in changes {
        if let (
            Some(Announcement::Events { last, .. }),
            Announcement::Events {
                first: next_first,
                last: next_last,
            },
        ) = (merged.last_mut(), &change)
        {
            if *last + 1 == *next_first {
                *last = *next_last;
                continue;
            }
        }
        merged.push(change);
    }
    merged
}

/// Shows the other nodes' changes on this node's live views until `shutdown`: reads
/// what each announcement names from the store and publishes it here. Nothing is read
/// while nobody on this node watches.
pub async fn relay(
    store: Arc<dyn Store>,
    bus: Bus,
    node: String,
    mut announcements: mpsc::Receiver<Announced>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    loop {
        let announced = tokio::select! {
            announced = announcements.recv() => announced,
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        };
        let Some(announced) = announced else {
            return Ok(());
        };
        if announced.from == node {
            continue;
        }
        if let Err(error) = show(store.as_ref(), &bus, &announced.change).await {
            tracing::warn!(%error, change = ?announced.change, "cannot show another node's change on the live views");
        }
    }
}

async fn show(store: &dyn Store, bus: &Bus, change: &Announcement) -> StoreResult<()> {
    match change {
        Announcement::Events { first, last } => {
            let mut after = first - 1;
            while after < *last && bus.has_listeners() {
                let limit = usize::try_from(last - after).map_or(RELAY_PAGE, |n| n.min(RELAY_PAGE));
                let events = store.events_after(after, limit).await?;
                if events.is_empty() {
                    break;
                }
                for event in events {
                    if event.seq > *last {
                        return Ok(());
                    }
                    after = event.seq;
                    bus.publish(StreamItem::Event(Arc::new(event)));
                }
            }
        }
        Announcement::Alert { id, entries } => {
            if !bus.has_listeners() {
                return Ok(());
            }
            let Some(alert) = store.alert(id).await? else {
                return Ok(());
            };
            let mut history = store.alert_history(id).await?;
            let keep_from = history.len().saturating_sub(*entries);
            let history = history.split_off(keep_from);
            bus.publish(StreamItem::Alert(Arc::new(AlertNotice { alert, history })));
        }
        Announcement::Delivery {
            id,
            user_id,
            status,
        } => {
            bus.publish(StreamItem::Delivery(Arc::new(DeliveryNotice {
                id: id.clone(),
                user_id: user_id.clone(),
                status: *status,
            })));
        }
        Announcement::Everything => {
            tracing::debug!("other nodes' live changes may have been missed; live views resync");
            bus.publish(StreamItem::Resync);
        }
        // Changes to in-memory copies: `crate::services::caches::follow` applies them.
        Announcement::People
        | Announcement::TokenRevoked
        | Announcement::UserSettings { .. }
        | Announcement::SubscriptionSaved { .. }
        | Announcement::SubscriptionGone { .. }
        | Announcement::SubscriptionsReread { .. }
        | Announcement::EventType { .. } => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_become_unbroken_runs() {
        assert_eq!(runs([4, 1, 2, 3, 7, 7]), vec![(1, 4), (7, 7)]);
        assert!(runs([]).is_empty());
    }

    #[test]
    fn adjacent_event_runs_merge_and_others_keep_their_place() {
        let alert = Announcement::Alert {
            id: "a".to_string(),
            entries: 1,
        };
        let merged = merge_event_runs(vec![
            Announcement::Events { first: 1, last: 5 },
            Announcement::Events { first: 6, last: 9 },
            alert.clone(),
            Announcement::Events {
                first: 10,
                last: 10,
            },
            Announcement::Events {
                first: 12,
                last: 12,
            },
        ]);
        assert_eq!(
            merged,
            vec![
                Announcement::Events { first: 1, last: 9 },
                alert,
                Announcement::Events {
                    first: 10,
                    last: 10
                },
                Announcement::Events {
                    first: 12,
                    last: 12
                },
            ]
        );
    }
}
