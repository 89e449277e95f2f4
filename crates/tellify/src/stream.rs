//! The in-process bus that feeds `GET /api/v1/stream`: new events and alert changes,
//! published after they are durable.

use std::sync::Arc;

use tellify_engine::alerts::{Alert, HistoryEntry};
use tellify_model::StoredEvent;
use tokio::sync::broadcast;

#[derive(Clone, Debug)]
pub enum StreamItem {
    Event(Arc<StoredEvent>),
    Alert(Arc<AlertNotice>),
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
