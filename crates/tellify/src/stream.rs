//! The in-process bus that feeds `GET /api/v1/stream` and the dashboard's live pages: new
//! events, alert changes and delivery changes, published after they are durable.

use std::sync::Arc;

use tellify_engine::alerts::{Alert, HistoryEntry};
use tellify_model::StoredEvent;
use tokio::sync::broadcast;

#[derive(Clone, Debug)]
pub enum StreamItem {
    Event(Arc<StoredEvent>),
    Alert(Arc<AlertNotice>),
    /// A delivery was created (ganged and claimed for sending) or an attempt's outcome was
    /// committed. Published only while someone listens (the notifier asks
    /// [`Bus::has_listeners`]), so the notifier pays nothing when no page is open.
    Delivery(Arc<DeliveryNotice>),
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

#[derive(Clone)]
pub struct Bus {
    sender: broadcast::Sender<StreamItem>,
}

impl Default for Bus {
    fn default() -> Self {
        let (sender, _) = broadcast::channel(16_384);
        Bus { sender }
    }
}

impl Bus {
    pub fn publish(&self, item: StreamItem) {
        // No subscribers is fine: nobody is watching.
        let _ = self.sender.send(item);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<StreamItem> {
        self.sender.subscribe()
    }

    pub fn has_listeners(&self) -> bool {
        self.sender.receiver_count() > 0
    }
}
