//! Types of the exporters' reads: alert changes in the order they were recorded, so a
//! reader that remembers the last position it handled (see [`crate::Store::export_position`])
//! can resume without a gap.

use tellify_engine::alerts::{Alert, HistoryEntry};

/// One recorded alert transition with its position in the alert history.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedAlertChange {
    /// The history row's id: it only grows and is never reused, also after rows were
    /// deleted, so it can serve as a resume position.
    pub position: i64,
    pub entry: HistoryEntry,
    /// The alert as it is now (a later change may have moved it on since this entry);
    /// the entry's `detail` tells what this transition carried.
    pub alert: Alert,
}
