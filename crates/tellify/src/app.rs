//! Wiring: opens the store, bootstraps the first admin, starts every task (the HTTP
//! server, the worker, the notifier, the metric poller, the broker sources and the
//! exporters) and supervises them.
//!
//! **Invariant:** no task stops unnoticed. The [`Supervisor`] logs every task that ends,
//! with why; a vital one ending before a stop was asked for stops the whole process with
//! an error (exit code 1), so systemd, Docker or Kubernetes restart it instead of leaving
//! a half-dead server. Only the exporters are not vital: each resumes from its saved
//! position at the next start, and alerting goes on without them. A stop (SIGTERM,
//! SIGINT) tells every task at once; each finishes what it has in hand within
//! `shutdown_grace_secs`, and what is still running after it is cut off.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tellify_engine::Registry;
use tellify_store::postgres::PostgresStore;
use tellify_store::sqlite::SqliteStore;
use tellify_store::{Store, Token, User};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

use crate::api;
use crate::auth::{check_bootstrap_token, hash_token, new_token, Authenticator};
use crate::channels::Channels;
use crate::clock::Clock;
use crate::config::{Settings, StoreLocation};
use crate::notify::Notifier;
use crate::services::{people, AppState, Services};
use crate::stream::Bus;
use crate::telemetry;
use crate::worker::Worker;

/// A running server.
pub struct RunningApp {
    pub address: SocketAddr,
    pub state: AppState,
    /// The admin token made on first start, when it was generated (not supplied).
    pub bootstrap_token: Option<String>,
    /// The admin's dashboard password set on first start, when it was generated (not
    /// supplied by `TELLIFY_BOOTSTRAP_PASSWORD`).
    pub bootstrap_password: Option<String>,
    /// Polls the metric backends of `metric` subscriptions; tests wake it after moving time.
    pub poller: crate::pollers::PollerHandle,
    supervisor: Supervisor,
    /// The data directory's lock, held while the server runs (none for a test's store).
    data_lock: Option<crate::data_lock::DataLock>,
}

impl RunningApp {
    /// Asks every task to stop and waits for them (at most the shutdown grace); an error
    /// names each task that failed or panicked.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.supervisor.stop().await
    }

    /// Supervises every task until `stop_requested` completes (then stops them all and
    /// returns `Ok`) or a vital task ends on its own (then stops the rest and returns an
    /// error naming it and why).
    pub async fn run_until(self, stop_requested: impl Future<Output = ()>) -> anyhow::Result<()> {
        self.supervisor.run_until(stop_requested).await
    }

    /// Flipping it to true stops every task, as a stop signal does.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.supervisor.shutdown.clone()
    }
}

/// What became of a task.
#[derive(Debug)]
enum Ending {
    Returned,
    Failed(String),
    Panicked(String),
    Cut,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Returned => write!(f, "returned"),
            Ending::Failed(error) => write!(f, "failed: {error}"),
            Ending::Panicked(message) => write!(f, "panicked: {message}"),
            Ending::Cut => write!(f, "cut off"),
        }
    }
}

/// What a task's own result says about its end: `()` or `Ok` is a plain return.
pub trait TaskResult: Send + 'static {
    fn failure(self) -> Option<String>;
}

impl TaskResult for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<E: std::fmt::Display + Send + 'static> TaskResult for Result<(), E> {
    fn failure(self) -> Option<String> {
        self.err().map(|error| error.to_string())
    }
}

struct Watched {
    name: String,
    vital: bool,
    abort: AbortHandle,
    running: bool,
}

/// Watches the long-running tasks of a server: every one has its name and whether the
/// server can live without it; all share one shutdown signal.
pub struct Supervisor {
    shutdown: watch::Sender<bool>,
    grace: Duration,
    tasks: Vec<Watched>,
    endings: JoinSet<(usize, Ending)>,
}

impl Supervisor {
    pub fn new(shutdown: watch::Sender<bool>, grace: Duration) -> Supervisor {
        Supervisor {
            shutdown,
            grace,
            tasks: Vec::new(),
            endings: JoinSet::new(),
        }
    }

    /// Watches `task`; a `vital` one ending unasked stops the process.
    pub fn watch<T: TaskResult>(
        &mut self,
        name: impl Into<String>,
        vital: bool,
        task: JoinHandle<T>,
    ) {
        let index = self.tasks.len();
        self.tasks.push(Watched {
            name: name.into(),
            vital,
            abort: task.abort_handle(),
            running: true,
        });
        self.endings.spawn(async move {
            let ending = match task.await {
                Ok(result) => match result.failure() {
                    None => Ending::Returned,
                    Some(error) => Ending::Failed(error),
                },
                Err(error) if error.is_cancelled() => Ending::Cut,
                Err(error) => Ending::Panicked(panic_message(error)),
            };
            (index, ending)
        });
    }

    /// See [`RunningApp::run_until`].
    pub async fn run_until(
        mut self,
        stop_requested: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(stop_requested);
        let mut failure: Option<String> = None;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let cut_at = deadline.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                () = &mut stop_requested, if deadline.is_none() => {
                    tracing::info!(
                        grace_secs = self.grace.as_secs(),
                        "stopping: finishing requests, sends and processing in flight"
                    );
                    deadline = Some(self.begin_stop());
                }
                ended = self.endings.join_next() => {
                    let Some(ended) = ended else { break };
                    let (index, ending) = match ended {
                        Ok(ended) => ended,
                        Err(error) => {
                            tracing::error!(%error, "a task watcher failed");
                            continue;
                        }
                    };
                    let task = &mut self.tasks[index];
                    task.running = false;
                    let stopping = deadline.is_some();
                    match (&ending, stopping, task.vital) {
                        (Ending::Returned, true, _) => {
                            tracing::debug!(task = %task.name, "stopped");
                        }
                        (_, true, _) => {
                            tracing::warn!(task = %task.name, ending = %ending, "stopped badly during shutdown");
                            failure.get_or_insert_with(|| format!("the {} {ending} while stopping", task.name));
                        }
                        (_, false, true) => {
                            tracing::error!(task = %task.name, ending = %ending, "a vital task stopped; shutting down");
                            failure = Some(format!(
                                "the {} stopped unexpectedly ({ending}); tellify shut down rather than run without it; \
                                 see the log above for the cause, then restart (systemd, Docker and Kubernetes do that on a non-zero exit)",
                                task.name
                            ));
                            deadline = Some(self.begin_stop());
                        }
                        (_, false, false) => {
                            tracing::error!(
                                task = %task.name,
                                ending = %ending,
                                "a task stopped; the server goes on without it until the next start"
                            );
                        }
                    }
                }
                () = tokio::time::sleep_until(cut_at), if deadline.is_some() => {
                    let late: Vec<&str> = self
                        .tasks
                        .iter()
                        .filter(|task| task.running)
                        .map(|task| task.name.as_str())
                        .collect();
                    tracing::warn!(
                        tasks = %late.join(", "),
                        grace_secs = self.grace.as_secs(),
                        "still running after the shutdown grace; cut off"
                    );
                    for task in &self.tasks {
                        task.abort.abort();
                    }
                    self.endings.shutdown().await;
                    break;
                }
            }
        }
        match failure {
            Some(failure) => Err(anyhow::anyhow!(failure)),
            None => {
                tracing::info!("stopped");
                Ok(())
            }
        }
    }

    /// Asks every task to stop and waits (at most the grace) for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.run_until(std::future::ready(())).await
    }

    fn begin_stop(&self) -> tokio::time::Instant {
        let _ = self.shutdown.send(true);
        tokio::time::Instant::now() + self.grace
    }
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => match payload.downcast::<String>() {
            Ok(message) => *message,
            Err(payload) => match payload.downcast::<&'static str>() {
                Ok(message) => message.to_string(),
                Err(_) => "(no message)".to_string(),
            },
        },
        Err(error) => error.to_string(),
    }
}

/// What the first start gives the `admin` user it creates: a token and a dashboard
/// password, each supplied (`TELLIFY_BOOTSTRAP_TOKEN`, `TELLIFY_BOOTSTRAP_PASSWORD`) or,
/// when absent, generated and returned so `serve` can print it once. Ignored once users
/// exist. An `Option<String>` is the token alone.
#[derive(Debug, Default, Clone)]
pub struct Bootstrap {
    pub token: Option<String>,
    pub password: Option<String>,
}

impl From<Option<String>> for Bootstrap {
    fn from(token: Option<String>) -> Bootstrap {
        Bootstrap {
            token,
            password: None,
        }
    }
}

/// Checks the settings, binds the listen address and checks the data directory, then
/// opens the store and starts everything. Nothing is created (store, admin user) before
/// those checks pass, so a failed first start leaves no store whose bootstrap token was
/// never shown.
pub async fn start(
    settings: Settings,
    clock: Arc<dyn Clock>,
    bootstrap: impl Into<Bootstrap>,
) -> anyhow::Result<RunningApp> {
    let bootstrap = bootstrap.into();
    check_settings(&settings)?;
    let listener = bind(settings.listen).await?;
    let location = settings
        .store_location()
        .map_err(|problem| anyhow::anyhow!("store: {problem}"))?;
    let (store, data_lock): (Arc<dyn Store>, _) = match location {
        StoreLocation::Sqlite(directory) => {
            check_data_directory(&directory)?;
            let data_lock = crate::data_lock::DataLock::acquire(&directory, "start")?;
            let store = SqliteStore::open(&directory).with_context(|| {
                format!(
                    "cannot open the store in {}; check that it is a tellify data directory this user can write, or choose another with --data or TELLIFY_DATA",
                    directory.display()
                )
            })?;
            (Arc::new(store), Some(data_lock))
        }
        StoreLocation::Postgres(address) => {
            let store = PostgresStore::open(&address).await.with_context(|| {
                format!(
                    "cannot open the PostgreSQL store at {}; check that the server runs, the database exists and this user may create tables in it",
                    crate::config::redact_address(&address)
                )
            })?;
            (Arc::new(store), None)
        }
    };
    let mut app = start_on(listener, settings, store, clock, bootstrap).await?;
    app.data_lock = data_lock;
    Ok(app)
}

/// Starts everything on `store` (tests bring their own).
pub async fn start_with_store(
    settings: Settings,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    bootstrap: impl Into<Bootstrap>,
) -> anyhow::Result<RunningApp> {
    let bootstrap = bootstrap.into();
    check_settings(&settings)?;
    let listener = bind(settings.listen).await?;
    start_on(listener, settings, store, clock, bootstrap).await
}

/// Every setting out of its range, at once.
fn check_settings(settings: &Settings) -> anyhow::Result<()> {
    let problems = settings.validate();
    if !problems.is_empty() {
        anyhow::bail!(
            "invalid configuration: {}; fix it in tellify.toml or the TELLIFY_ environment variables (`tellify config check` lists every problem)",
            problems.join("; ")
        );
    }
    Ok(())
}

/// Binds the listen address, saying what to do when it is taken or not ours to take.
async fn bind(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => Ok(listener),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "address {address} is in use — another tellify? stop it, or listen elsewhere with --listen or TELLIFY_LISTEN"
        ),
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => anyhow::bail!(
            "no permission to listen on {address} ({error}); ports below 1024 need privileges: choose a port above 1023 with --listen or TELLIFY_LISTEN"
        ),
        Err(error) if error.kind() == std::io::ErrorKind::AddrNotAvailable => anyhow::bail!(
            "cannot listen on {address}: no interface of this machine has that address; use one of its addresses or 0.0.0.0 with --listen or TELLIFY_LISTEN"
        ),
        Err(error) => Err(anyhow::Error::new(error).context(format!(
            "cannot listen on {address}; choose another address with --listen or TELLIFY_LISTEN"
        ))),
    }
}

/// Makes sure the data directory exists and this process can write in it, before the
/// store creates anything there.
fn check_data_directory(path: &std::path::Path) -> anyhow::Result<()> {
    const FIX: &str = "give the user running tellify write permission there (chown/chmod), or choose another directory with --data or TELLIFY_DATA";
    if path.exists() && !path.is_dir() {
        anyhow::bail!(
            "the data directory {} is not a directory; {FIX}",
            path.display()
        );
    }
    if let Err(error) = std::fs::create_dir_all(path) {
        anyhow::bail!(
            "cannot create the data directory {} ({}); {FIX}",
            path.display(),
            describe_io(&error)
        );
    }
    let probe = path.join(".tellify-write-check");
    let written = std::fs::write(&probe, b"");
    let _ = std::fs::remove_file(&probe);
    if let Err(error) = written {
        anyhow::bail!(
            "cannot write in the data directory {} ({}); {FIX}",
            path.display(),
            describe_io(&error)
        );
    }
    let database = path.join("tellify.db");
    if database.exists() {
        if let Err(error) = std::fs::OpenOptions::new().write(true).open(&database) {
            anyhow::bail!(
                "cannot write the store {} ({}); {FIX}",
                database.display(),
                describe_io(&error)
            );
        }
    }
    Ok(())
}

fn describe_io(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "permission denied: it needs write permission".to_string()
        }
        std::io::ErrorKind::ReadOnlyFilesystem => "read-only file system".to_string(),
        _ => error.to_string(),
    }
}

async fn start_on(
    listener: tokio::net::TcpListener,
    settings: Settings,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    bootstrap: Bootstrap,
) -> anyhow::Result<RunningApp> {
    let registry = Arc::new(Registry::builtin());
    // Other nodes on the same store: their changes show on this node's live views, and
    // this node's on theirs (see `crate::stream`).
    let (bus, live) = match store.follow_announcements() {
        Some(incoming) => {
            let (bus, outgoing) = Bus::for_several_nodes();
            (bus, Some((incoming, outgoing)))
        }
        None => (Bus::default(), None),
    };
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
    // `validate` refused a bad ttl before the store was opened; the default is for callers
    // that skipped it.
    let link_ttl = settings
        .links
        .ttl()
        .unwrap_or(jiff::SignedDuration::from_hours(72));
    let links = crate::services::links::LinkSigner::load(store.as_ref(), link_ttl)
        .await
        .context("cannot load the action link key")?;
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
    let notifier = notifier.with_action_links(links.clone());
    let worker = worker
        .with_notifier(notifier_handle.clone())
        .with_limits(limits);
    let file_limit = crate::server::raise_open_file_limit();
    let address = listener.local_addr()?;
    let started = clock.now();
    let event_types = Arc::new(
        crate::event_types::EventTypes::load(store.as_ref())
            .await
            .context("cannot load the event types")?,
    );
    let log = match &settings.log {
        Some(address) => Some(Arc::new(
            crate::eventlog::EventLog::connect(address, &settings.jetstream, store.as_ref())
                .await
                .context("cannot open the event log (--log)")?,
        )),
        None => None,
    };
    let auth = Authenticator::new(&settings.auth);
    // Installs the recorder (first app of the process) and shows every metric at zero.
    let metrics = telemetry::metrics_handle();
    telemetry::register_all();
    let state: AppState = Arc::new(Services {
        store,
        registry,
        clock,
        settings,
        bus,
        worker: worker_handle,
        auth,
        metrics,
        notifier: notifier_handle,
        channels,
        outbound,
        started,
        event_types,
        links,
        login_limits: Default::default(),
        node: format!("{}-{}", std::process::id(), tellify_model::new_id()),
        log,
    });
    let (shutdown, shutdown_receiver) = watch::channel(false);
    let grace = state.settings.shutdown_grace();
    let mut supervisor = Supervisor::new(shutdown.clone(), grace);
    if let Some(announcements) = state.store.follow_announcements() {
        supervisor.watch(
            "other nodes' changes",
            true,
            tokio::spawn(crate::services::caches::follow(
                state.clone(),
                announcements,
                shutdown_receiver.clone(),
            )),
        );
    }
    if let Some((incoming, outgoing)) = live {
        supervisor.watch(
            "live changes to other nodes",
            false,
            tokio::spawn(crate::stream::announce(
                state.store.clone(),
                state.node.clone(),
                outgoing,
                shutdown_receiver.clone(),
            )),
        );
        supervisor.watch(
            "other nodes' live changes",
            false,
            tokio::spawn(crate::stream::relay(
                state.store.clone(),
                state.bus.clone(),
                state.node.clone(),
                incoming,
                shutdown_receiver.clone(),
            )),
        );
    }
    if let Some(log) = state.log.clone() {
        // Batches JetStream acknowledged whose node died before storing them.
        let services = state.clone();
        supervisor.watch(
            "event log recoverer",
            true,
            tokio::spawn(crate::lease::run_singleton(
                state.clone(),
                crate::eventlog::RECOVERY_LEASE.to_string(),
                shutdown_receiver.clone(),
                move |stop| crate::eventlog::recover(services.clone(), log.clone(), stop),
            )),
        );
    }
    supervisor.watch(
        "worker",
        true,
        tokio::spawn(worker.run(shutdown_receiver.clone())),
    );
    // Sends and requests in flight get three quarters of the grace; the rest is for
    // committing the outcomes, so nothing is cut off in the middle of a commit.
    let drain = grace.mul_f64(0.75);
    let notifier = notifier
        .with_shutdown_grace(drain)
        .with_bus(state.bus.clone());
    supervisor.watch(
        "notifier",
        true,
        tokio::spawn(notifier.run(shutdown_receiver.clone())),
    );
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
    for (index, source) in sources.into_iter().enumerate() {
        // A source reconnects on its own; its task ends only at shutdown or on a bug.
        supervisor.watch(format!("broker source #{}", index + 1), true, source);
    }
    let (poller_task, poller) =
        match crate::pollers::start(state.clone(), shutdown_receiver.clone()) {
            Ok(started) => started,
            Err(error) => {
                let _ = shutdown.send(true);
                return Err(error.context("cannot start the metric poller"));
            }
        };
    supervisor.watch("metric poller", true, poller_task);
    let exporters = match crate::export::start(state.clone(), shutdown_receiver.clone()) {
        Ok(exporters) => exporters,
        Err(error) => {
            let _ = shutdown.send(true);
            return Err(error.context("cannot start the exporters"));
        }
    };
    for (index, exporter) in exporters.into_iter().enumerate() {
        supervisor.watch(format!("syslog exporter #{}", index + 1), false, exporter);
    }
    // Last, once everything that can refuse to start has started: a start that fails
    // before creates no admin whose token nobody saw.
    let (bootstrap_token, bootstrap_password) =
        match bootstrap_admin(state.store.as_ref(), state.clock.as_ref(), bootstrap).await {
            Ok(made) => made,
            Err(error) => {
                let _ = shutdown.send(true);
                return Err(error);
            }
        };
    // The JSON API and the dashboard (`/`, for people) on one listener.
    let router = api::router(state.clone()).merge(crate::web::router(state.clone()));
    let http_settings = state.settings.http.clone();
    let server = tokio::spawn(async move {
        crate::server::serve(
            listener,
            router,
            &http_settings,
            file_limit,
            drain,
            shutdown_receiver,
        )
        .await
    });
    supervisor.watch("http server", true, server);
    tracing::info!(%address, "tellify is listening");
    Ok(RunningApp {
        address,
        state,
        bootstrap_token,
        bootstrap_password,
        poller,
        supervisor,
        data_lock: None,
    })
}

/// On first start (no users), creates `admin` with a token and a dashboard password: the
/// supplied ones, or new ones that are returned (token, password) so they can be shown
/// once.
async fn bootstrap_admin(
    store: &dyn Store,
    clock: &dyn Clock,
    supplied: Bootstrap,
) -> anyhow::Result<(Option<String>, Option<String>)> {
    if !store.list_users().await?.is_empty() {
        if supplied.token.is_some() {
            tracing::warn!("TELLIFY_BOOTSTRAP_TOKEN is ignored: users already exist");
        }
        if supplied.password.is_some() {
            tracing::warn!("TELLIFY_BOOTSTRAP_PASSWORD is ignored: users already exist");
        }
        return Ok((None, None));
    }
    let now = clock.now();
    let admin = User {
        id: tellify_model::new_id(),
        name: "admin".to_string(),
        email: None,
        display_name: None,
        timezone: "UTC".to_string(),
        admin: true,
        created: now,
    };
    let supplied_token = supplied.token.filter(|secret| !secret.trim().is_empty());
    if let Some(secret) = &supplied_token {
        // Checked before anything is written, so a corrected value works on the next start.
        check_bootstrap_token(secret.trim()).map_err(|message| anyhow::anyhow!(message))?;
    }
    let supplied_password = supplied
        .password
        .filter(|password| !password.trim().is_empty());
    if let Some(password) = &supplied_password {
        crate::services::sessions::check_password(password, "TELLIFY_BOOTSTRAP_PASSWORD").map_err(
            |error| {
                anyhow::anyhow!(
                    "{error}; unset it to have a random admin password made and printed once"
                )
            },
        )?;
    }
    let (password, password_generated) = match supplied_password {
        Some(password) => (password, false),
        None => (people::new_password(), true),
    };
    let password_hash = people::hash_off_thread(password.clone())
        .await
        .map_err(|error| anyhow::anyhow!("cannot hash the admin password: {error}"))?;
    match store.create_user(admin.clone()).await {
        Ok(()) => {}
        // Another node on the same store made `admin` first (several nodes starting at
        // once on a new database): it prints the secrets, this one starts without.
        Err(tellify_store::StoreError::Conflict(_)) => {
            tracing::info!("another node created `admin` first");
            return Ok((None, None));
        }
        Err(error) => return Err(error.into()),
    }
    let (secret, hash, generated) = match supplied_token {
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
            user_id: admin.id.clone(),
            name: "bootstrap".to_string(),
            scopes: vec!["admin".to_string()],
            hash,
            created: now,
            expires: None,
        })
        .await?;
    store
        .set_password_hash(&admin.id, Some(password_hash), None)
        .await?;
    store
        .append_audit(tellify_store::AuditRecord {
            id: tellify_model::new_id(),
            at: now,
            actor: "tellify serve (first start)".to_string(),
            action: "user.created".to_string(),
            subject: "user admin".to_string(),
            detail: serde_json::json!({
                "admin": true,
                "token": "bootstrap",
                "token_from": if generated { "generated and printed once" } else { "TELLIFY_BOOTSTRAP_TOKEN" },
                "password_from": if password_generated { "generated and printed once" } else { "TELLIFY_BOOTSTRAP_PASSWORD" },
            }),
        })
        .await?;
    Ok((
        generated.then_some(secret),
        password_generated.then_some(password),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that runs until shutdown, like every long-running task of the server.
    fn until_shutdown(mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
    }

    #[tokio::test]
    async fn a_vital_task_that_fails_stops_everything_and_is_named() {
        let (shutdown, receiver) = watch::channel(false);
        let mut supervisor = Supervisor::new(shutdown, Duration::from_secs(5));
        let other = until_shutdown(receiver.clone());
        let other_abort = other.abort_handle();
        supervisor.watch("worker", true, other);
        supervisor.watch(
            "http server",
            true,
            tokio::spawn(async { Err::<(), _>(std::io::Error::other("socket closed")) }),
        );
        let error = supervisor
            .run_until(std::future::pending())
            .await
            .expect_err("a vital stop is an error");
        let message = error.to_string();
        assert!(
            message.contains("the http server stopped unexpectedly"),
            "{message}"
        );
        assert!(message.contains("failed: socket closed"), "{message}");
        assert!(*receiver.borrow(), "the others were told to stop");
        assert!(other_abort.is_finished(), "and were waited for");
    }

    fn lose_the_outbox() {
        panic!("lost the outbox")
    }

    #[tokio::test]
    async fn a_vital_task_that_panics_is_named_with_its_message() {
        let (shutdown, _receiver) = watch::channel(false);
        let mut supervisor = Supervisor::new(shutdown, Duration::from_secs(5));
        supervisor.watch("notifier", true, tokio::spawn(async { lose_the_outbox() }));
        let message = supervisor
            .run_until(std::future::pending())
            .await
            .expect_err("a panic is an error")
            .to_string();
        assert!(
            message.contains("the notifier stopped unexpectedly (panicked: lost the outbox)"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_task_that_is_not_vital_may_stop_and_the_rest_goes_on() {
        let (shutdown, receiver) = watch::channel(false);
        let mut supervisor = Supervisor::new(shutdown, Duration::from_secs(5));
        supervisor.watch("worker", true, until_shutdown(receiver.clone()));
        supervisor.watch("syslog exporter #1", false, tokio::spawn(async {}));
        let (stop, stop_requested) = tokio::sync::oneshot::channel::<()>();
        let supervised = tokio::spawn(supervisor.run_until(async {
            let _ = stop_requested.await;
        }));
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!*receiver.borrow(), "the exporter's stop stopped nothing");
        assert!(!supervised.is_finished());
        stop.send(()).expect("supervisor listens");
        supervised
            .await
            .expect("supervisor runs")
            .expect("a requested stop is a clean stop");
        assert!(*receiver.borrow());
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_still_running_after_the_grace_is_cut_off_and_the_stop_is_clean() {
        let (shutdown, _receiver) = watch::channel(false);
        let mut supervisor = Supervisor::new(shutdown, Duration::from_secs(3));
        let stuck = tokio::spawn(std::future::pending::<()>());
        let stuck_abort = stuck.abort_handle();
        supervisor.watch("metric poller", true, stuck);
        let started = tokio::time::Instant::now();
        supervisor.stop().await.expect("cut off, not failed");
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        tokio::task::yield_now().await;
        assert!(stuck_abort.is_finished());
    }
}
