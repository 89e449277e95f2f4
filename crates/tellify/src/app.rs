//! Wiring: opens the store, bootstraps the first admin, starts the worker and the HTTP
//! server, and stops them together.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tellify_engine::Registry;
use tellify_store::sqlite::SqliteStore;
use tellify_store::{Store, Token, User};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api;
use crate::auth::{check_bootstrap_token, hash_token, new_token, Authenticator};
use crate::channels::Channels;
use crate::clock::Clock;
use crate::config::Settings;
use crate::notify::Notifier;
use crate::services::{AppState, Services};
use crate::stream::Bus;
use crate::telemetry;
use crate::worker::Worker;

/// A running server.
pub struct RunningApp {
    pub address: SocketAddr,
    pub state: AppState,
    /// The admin token made on first start, when it was generated (not supplied).
    pub bootstrap_token: Option<String>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    worker: JoinHandle<()>,
    notifier: JoinHandle<()>,
    /// One task per configured broker source (`sources`).
    sources: Vec<JoinHandle<()>>,
    /// Polls the metric backends of `metric` subscriptions; tests wake it after moving time.
    pub poller: crate::pollers::PollerHandle,
    poller_task: JoinHandle<()>,
    /// One task per configured exporter (`export`).
    exporters: Vec<JoinHandle<()>>,
}

impl RunningApp {
    /// Stops accepting requests, lets the worker finish its batch, and waits for both.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.server.await.context("server task panicked")??;
        self.worker.await.context("worker task panicked")?;
        self.notifier.await.context("notifier task panicked")?;
        for source in self.sources {
            source.await.context("source task panicked")?;
        }
        self.poller_task.await.context("poller task panicked")?;
        for exporter in self.exporters {
            exporter.await.context("exporter task panicked")?;
        }
        Ok(())
    }

    /// Waits until either task ends on its own, and says which.
    pub async fn wait(self) -> anyhow::Result<()> {
        let RunningApp {
            server,
            worker,
            notifier,
            shutdown,
            ..
        } = self;
        tokio::select! {
            result = server => {
                let _ = shutdown.send(true);
                result.context("server task panicked")?.context("http server stopped")?;
                anyhow::bail!("http server stopped")
            }
            result = worker => {
                let _ = shutdown.send(true);
                result.context("worker task panicked")?;
                Ok(())
            }
            result = notifier => {
                let _ = shutdown.send(true);
                result.context("notifier task panicked")?;
                anyhow::bail!("notifier stopped")
            }
        }
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Opens the store in `settings.data` and starts everything.
pub async fn start(
    settings: Settings,
    clock: Arc<dyn Clock>,
    bootstrap: Option<String>,
) -> anyhow::Result<RunningApp> {
    let store = SqliteStore::open(&settings.data)
        .with_context(|| format!("cannot open the store in {}", settings.data.display()))?;
    start_with_store(settings, Arc::new(store), clock, bootstrap).await
}

pub async fn start_with_store(
    settings: Settings,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    bootstrap: Option<String>,
) -> anyhow::Result<RunningApp> {
    settings
        .notify
        .policy_limits()
        .context("invalid [notify] settings")?;
    settings
        .notify
        .rate_window()
        .context("invalid [notify] settings")?;
    let mut problems = settings.http.problems();
    problems.extend(settings.auth.problems());
    if !problems.is_empty() {
        anyhow::bail!("invalid configuration: {}", problems.join("; "));
    }
    let bootstrap_token = bootstrap_admin(store.as_ref(), clock.as_ref(), bootstrap).await?;
    let registry = Arc::new(Registry::builtin());
    let bus = Bus::default();
    let (worker, worker_handle) = Worker::start(
        store.clone(),
        registry.clone(),
        clock.clone(),
        bus.clone(),
        settings.engine.batch_size,
        settings.engine.max_derived_depth,
    )
    .await
    .context("cannot start the worker")?;
    let http_timeout = std::time::Duration::from_secs(settings.notify.http_timeout_secs.max(1));
    let outbound = crate::outbound::OutboundGuard::new(&settings.outbound)
        .context("invalid [outbound] settings")?;
    let channels = Arc::new(
        Channels::new(&settings.smtp, &settings.sms, http_timeout, &outbound)
            .context("cannot set up the notification channels")?,
    );
    let (notifier, notifier_handle) = Notifier::start(
        store.clone(),
        channels.clone(),
        registry.clone(),
        clock.clone(),
        settings.notify.clone(),
        settings.public_url.clone(),
    )
    .await
    .context("cannot start the notifier")?;
    let engine = &settings.engine;
    let limits = crate::worker::WorkerLimits {
        max_failures: engine.max_subscription_failures.max(1),
        budget: std::time::Duration::from_millis(engine.handler_budget_ms.max(1)),
        filter_budget: std::time::Duration::from_millis(engine.filter_budget_ms.max(1)),
    };
    let worker = worker
        .with_notifier(notifier_handle.clone())
        .with_limits(limits);
    let file_limit = crate::server::raise_open_file_limit();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let address = listener.local_addr()?;
    let started = clock.now();
    let event_types = Arc::new(
        crate::event_types::EventTypes::load(store.as_ref())
            .await
            .context("cannot load the event types")?,
    );
    let auth = Authenticator::new(&settings.auth);
    let state: AppState = Arc::new(Services {
        store,
        registry,
        clock,
        settings,
        bus,
        worker: worker_handle,
        auth,
        metrics: telemetry::metrics_handle(),
        notifier: notifier_handle,
        channels,
        outbound,
        started,
        event_types,
    });
    let (shutdown, shutdown_receiver) = watch::channel(false);
    let worker = tokio::spawn(worker.run(shutdown_receiver.clone()));
    let notifier = tokio::spawn(notifier.run(shutdown_receiver.clone()));
    let sources = match crate::sources::start(
        &state.settings.sources,
        state.clone(),
        shutdown_receiver.clone(),
    ) {
        Ok(sources) => sources,
        Err(error) => {
            let _ = shutdown.send(true);
            return Err(error.context("cannot start the sources"));
        }
    };
    let (poller_task, poller) =
        match crate::pollers::start(state.clone(), shutdown_receiver.clone()) {
            Ok(started) => started,
            Err(error) => {
                let _ = shutdown.send(true);
                return Err(error.context("cannot start the metric poller"));
            }
        };
    let exporters = match crate::export::start(state.clone(), shutdown_receiver.clone()) {
        Ok(exporters) => exporters,
        Err(error) => {
            let _ = shutdown.send(true);
            return Err(error.context("cannot start the exporters"));
        }
    };
    let router = api::router(state.clone());
    let http_settings = state.settings.http.clone();
    let server = tokio::spawn(async move {
        crate::server::serve(
            listener,
            router,
            &http_settings,
            file_limit,
            shutdown_receiver,
        )
        .await
    });
    tracing::info!(%address, "tellify is listening");
    Ok(RunningApp {
        address,
        state,
        bootstrap_token,
        shutdown,
        server,
        worker,
        notifier,
        sources,
        poller,
        poller_task,
        exporters,
    })
}

/// On first start (no users), creates `admin` with a token: the supplied one, or a new
/// one that is returned so it can be shown once.
async fn bootstrap_admin(
    store: &dyn Store,
    clock: &dyn Clock,
    supplied: Option<String>,
) -> anyhow::Result<Option<String>> {
    if !store.list_users().await?.is_empty() {
        if supplied.is_some() {
            tracing::warn!("TELLIFY_BOOTSTRAP_TOKEN is ignored: users already exist");
        }
        return Ok(None);
    }
    let now = clock.now();
    let admin = User {
        id: tellify_model::new_id(),
        name: "admin".to_string(),
        email: None,
        timezone: "UTC".to_string(),
        admin: true,
        created: now,
    };
    let supplied = supplied.filter(|secret| !secret.trim().is_empty());
    if let Some(secret) = &supplied {
        // Checked before anything is written, so a corrected value works on the next start.
        check_bootstrap_token(secret.trim()).map_err(|message| anyhow::anyhow!(message))?;
    }
    store.create_user(admin.clone()).await?;
    let (secret, hash, generated) = match supplied {
        Some(secret) => {
            let hash = hash_token(secret.trim());
            (secret.trim().to_string(), hash, false)
        }
        None => {
            let (secret, hash) = new_token();
            (secret, hash, true)
        }
    };
    store
        .create_token(Token {
            id: tellify_model::new_id(),
            user_id: admin.id,
            name: "bootstrap".to_string(),
            scopes: vec!["admin".to_string()],
            hash,
            created: now,
            expires: None,
        })
        .await?;
    Ok(generated.then_some(secret))
}
