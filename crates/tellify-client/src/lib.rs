//! The producer library: sends events to a tellify server, and keeps them in a disk
//! spool while the server cannot take them, so a producer never blocks on an outage
//! and never loses an event.
//!
//! ```no_run
//! # async fn example() -> Result<(), tellify_client::Error> {
//! use tellify_client::{Client, EventInput, SendOutcome};
//!
//! let client = Client::builder("http://127.0.0.1:8080", "tfy_...")
//!     .spool("/var/spool/my-producer")
//!     .build()?;
//! let replay = client.spawn_replay()?; // drains the spool whenever the server is back
//! let mut event = EventInput::default();
//! event.event_type = Some("deploy".to_string());
//! event.fields.insert("version".to_string(), "1.2".into());
//! match client.send(event).await? {
//!     SendOutcome::Sent(receipt) => println!("stored as {:?}", receipt.ids),
//!     SendOutcome::Spooled { events, .. } => println!("{events} spooled for later"),
//! }
//! replay.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Delivery is at least once on the wire and exactly once in the store: every event gets
//! an idempotency key before its first attempt, and the server stores a key only once.

mod client;
mod error;
mod replay;
mod spool;
mod sse;
mod transport;

pub use client::{
    read_spool_status, Client, ClientBuilder, SendOutcome, SpoolReason, DEFAULT_MAX_SPOOL_BYTES,
    DEFAULT_REPLAY_BATCH, DEFAULT_REPLAY_BATCH_BYTES,
};
pub use error::{Error, Rejection};
pub use replay::{ReplayReport, ReplayTask};
pub use spool::SpoolStatus;
pub use sse::{SseItem, SseParser};
pub use tellify_model::{EventInput, InputWarning};
pub use transport::{ApiRoot, Receipt, ServerUrlError};
