//! The app-wide service bundle every stage shares: the store, the engine registry, the
//! clock, settings, the live stream, the worker and notifier handles, the authenticator,
//! channels, the outbound guard and the event-type cache. It lives outside `api/` so that
//! ingest, sources, pollers and exports need not import the HTTP layer.
//!
//! Below the bundle, the service layer: every change to users, groups, tokens,
//! subscriptions, contact points, policies, silences and event types goes through one of
//! the submodules, which checks who is asking, validates, writes, records the audit entry
//! where one is kept, and refreshes the caches the write affects ([`caches`]) before it
//! returns. The faces (the API today, the dashboard next) only translate requests and
//! [`ServiceError`]s; no face writes these or touches a cache itself.

use std::sync::Arc;

use tellify_engine::Registry;
use tellify_store::Store;

use crate::auth::Authenticator;
use crate::channels::Channels;
use crate::clock::Clock;
use crate::config::Settings;
use crate::notify::NotifierHandle;
use crate::stream::Bus;
use crate::worker::WorkerHandle;

/// Everything a request handler may need.
pub struct Services {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub bus: Bus,
    pub worker: WorkerHandle,
    pub auth: Authenticator,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub notifier: NotifierHandle,
    pub channels: Arc<Channels>,
    /// The guard every call to a user-supplied URL goes through ([`crate::outbound`]).
    pub outbound: crate::outbound::OutboundGuard,
    /// When this server started, for the Alertmanager-compatible `/api/v2/status`.
    pub started: jiff::Timestamp,
    /// Registered event types with their compiled schemas, for the ingest check.
    pub event_types: Arc<crate::event_types::EventTypes>,
    /// Signs and checks the action links in notifications ([`links`]).
    pub links: links::LinkSigner,
    /// Failed dashboard sign-ins per account and per address.
    pub login_limits: sessions::LoginLimits,
    /// Who this node is to the other nodes on the same store (its announcements say so).
    pub node: String,
    /// The external event log (`--log nats://…`), when there is one: every batch is
    /// logged there before it is stored ([`crate::eventlog`]).
    pub log: Option<Arc<crate::eventlog::EventLog>>,
}

pub type AppState = Arc<Services>;

pub mod alerts;
pub mod caches;
pub mod error;
pub mod event_types;
pub mod events;
pub mod explain;
pub mod health;
pub mod import;
pub mod links;
pub mod notify;
pub mod people;
pub mod preview;
pub mod schedule;
pub mod sessions;
pub mod subscriptions;
pub mod validate;

pub use error::{ServiceError, ServiceResult};
