//! The worker: reads the event log after the processing cursor, offers each event to the
//! subscriptions the dispatch index names, lets time pass for handlers with deadlines,
//! and commits alert changes, handler state, derived events and the new cursor in one
//! transaction. A restart resumes from the cursor, so no event is processed twice or
//! skipped.
//!
//! **Invariant:** one subscription's failure stays with it. Every call into a handler
//! (build, event, tick, deadline) runs under `catch_unwind` and is timed; a handler that
//! panics, reports a failure, or runs over [`WorkerLimits::budget`] on one input marks only
//! that subscription failing (its outputs for that input are dropped unless the input only
//! ran long), the cursor moves on, and after [`WorkerLimits::max_failures`] failures in a
//! row the subscription is disabled with its reason. A stored subscription that no longer
//! builds is disabled the same way at start, so no user's data can stop the worker or a
//! restart.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tellify_engine::filter::EventContext;
use tellify_engine::handlers::{Handler, Outputs, Registry};
use tellify_engine::DispatchIndex;
use tellify_model::StoredEvent;
use tellify_store::processing::IdSourceRef;
use tellify_store::{
    Announcement, FilterErrorUpdate, HealthUpdate, LeaseFence, OutputToApply, ProcessingCommit,
    Store, StoreError, StoreResult, Subscription, SubscriptionHealth,
};
use tokio::sync::{mpsc, watch, Notify};

use crate::clock::Clock;
use crate::notify::NotifierHandle;
use crate::stream::{AlertNotice, Bus, StreamItem};
use crate::telemetry;

/// The most outputs a processing commit may have and still claim for the notifier: a
/// commit this small is the quiet path, where the claim saves a transaction and a wake-up
/// per notification. A larger one is a burst, whose notifications the notifier gangs and
/// claims in rounds sized to its free senders (claiming in each large commit measured
/// slower in the alert storm, docs/performance.md).
const CLAIM_IN_COMMIT_MAX: usize = 64;

/// How the rest of the server talks to the worker.
#[derive(Clone)]
pub struct WorkerHandle {
    wake: Arc<Notify>,
    changes: mpsc::UnboundedSender<String>,
    progress: watch::Receiver<i64>,
    /// The newest log position ingest has reported.
    head: Arc<std::sync::atomic::AtomicI64>,
    /// The most expensive subscriptions, refreshed about once a second.
    costs: Arc<Mutex<Vec<SubscriptionCost>>>,
}

/// Processing time spent in one subscription's handler since the server started.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SubscriptionCost {
    pub subscription_id: String,
    /// Events and ticks handled.
    pub calls: u64,
    pub total_micros: u64,
    pub max_micros: u64,
}

/// How much a subscription may cost and fail before it is switched off.
#[derive(Clone, Copy, Debug)]
pub struct WorkerLimits {
    /// Failures in a row after which a subscription is disabled.
    pub max_failures: u32,
    /// The longest one handler call (one event or tick) may take before it counts as a
    /// failure.
    pub budget: Duration,
    /// The longest one filter evaluation may take (`engine.filter_budget_ms`); over it the
    /// filter counts as not matching and the subscription as failing.
    pub filter_budget: Duration,
}

impl Default for WorkerLimits {
    fn default() -> Self {
        WorkerLimits {
            max_failures: 5,
            budget: Duration::from_millis(250),
            filter_budget: Duration::from_millis(5),
        }
    }
}

/// How many subscriptions [`WorkerHandle::costliest`] keeps.
const COSTS_KEPT: usize = 100;

impl WorkerHandle {
    /// Ingest stored events up to `seq`.
    pub fn appended(&self, seq: i64) {
        self.head
            .fetch_max(seq, std::sync::atomic::Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// How many stored events are not yet processed (as far as ingest has reported).
    pub fn backlog(&self) -> i64 {
        let head = self.head.load(std::sync::atomic::Ordering::Relaxed);
        (head - self.processed()).max(0)
    }

    /// New events are durable: look for them.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Changes may have been missed: reload every subscription and state before the next
    /// batch.
    pub fn reload_everything(&self) {
        let _ = self.changes.send(RELOAD_EVERYTHING.to_string());
        self.wake.notify_one();
    }

    /// A subscription was created, changed or deleted: reload it before the next batch.
    pub fn subscription_changed(&self, id: &str) {
        let _ = self.changes.send(id.to_string());
        self.wake.notify_one();
    }

    /// The last event position processed.
    pub fn processed(&self) -> i64 {
        *self.progress.borrow()
    }

    /// The subscriptions that took the most processing time, costliest first.
    pub fn costliest(&self) -> Vec<SubscriptionCost> {
        self.costs
            .lock()
            .map(|costs| costs.clone())
            .unwrap_or_default()
    }

    /// Waits until every event up to `seq` is processed (or the worker stopped).
    pub async fn wait_for(&self, seq: i64) {
        let mut progress = self.progress.clone();
        let _ = progress.wait_for(|done| *done >= seq).await;
    }
}

struct Loaded {
    subscription: Subscription,
    handler: Box<dyn Handler>,
}

pub struct Worker {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
    bus: Bus,
    wake: Arc<Notify>,
    changes: mpsc::UnboundedReceiver<String>,
    progress: watch::Sender<i64>,
    subscriptions: HashMap<String, Loaded>,
    index: DispatchIndex<String>,
    deadlines: HashMap<String, Timestamp>,
    cursor: i64,
    batch_size: usize,
    max_depth: u32,
    /// Freshly appended events pushed by the store, if it can; see [`Worker::next_batch`].
    feed: Option<mpsc::Receiver<Vec<Arc<StoredEvent>>>>,
    pending: VecDeque<Arc<StoredEvent>>,
    /// Subscriptions whose handler was rebuilt and whose state must be saved afresh.
    fresh: HashSet<String>,
    /// Plans notifications inside each commit, when notifications are on.
    notifier: Option<NotifierHandle>,
    limits: WorkerLimits,
    /// Failing subscriptions (from the store at load, then as found).
    health: HashMap<String, SubscriptionHealth>,
    /// Health changes found outside a commit (at load), written by the next one.
    health_pending: Vec<HealthUpdate>,
    costs: HashMap<String, SubscriptionCost>,
    shared_costs: Arc<Mutex<Vec<SubscriptionCost>>>,
    costs_published: Instant,
    /// Times every filter evaluation against its budget.
    filter_meter: crate::filter_budget::ThreadCpuMeter,
    /// The processing lease: with several nodes on one store, one processes at a time.
    lease: ProcessingLease,
    /// The store's settings generation as of what is loaded (see
    /// [`Worker::catch_up_settings`]); `None` for a store only one server uses.
    settings_generation: Option<i64>,
    /// The last position stored, as far as this node has heard ([`WorkerHandle::appended`]).
    head: Arc<std::sync::atomic::AtomicI64>,
}

/// What [`WorkerHandle::reload_everything`] sends in place of a subscription id (ids are
/// ULIDs, never this).
const RELOAD_EVERYTHING: &str = "*";

/// The name of the lease under which events are processed.
pub const PROCESSING_LEASE: &str = "processing";
/// How long a taken lease runs unless renewed, how often the holder renews it and how
/// often a node without it asks: the same timing as every job that runs on one node
/// ([`crate::lease`]). Processing keeps its own loop around the lease, as its commits
/// carry the lease's fencing number.
pub use crate::lease::{LEASE_POLL, LEASE_RENEW, LEASE_TTL};

/// This node's view of the processing lease.
struct ProcessingLease {
    /// Who this node is to the store, unique per process start.
    holder: String,
    /// The fencing number while this node holds the lease.
    fence: Option<i64>,
    renew_at: Timestamp,
}

impl ProcessingLease {
    fn new() -> ProcessingLease {
        ProcessingLease {
            holder: format!("{}-{}", std::process::id(), tellify_model::new_id()),
            fence: None,
            renew_at: Timestamp::UNIX_EPOCH,
        }
    }

    /// What a commit carries: nothing for a store that gives every lease (fence 0).
    fn for_commit(&self) -> Option<LeaseFence> {
        match self.fence {
            Some(fence) if fence != 0 => Some(LeaseFence {
                name: PROCESSING_LEASE.to_string(),
                holder: self.holder.clone(),
                fence,
            }),
            _ => None,
        }
    }
}

/// Most fed events held in memory; beyond it the worker reads the log instead.
const MAX_PENDING: usize = 100_000;

impl Worker {
    /// Loads the checkpoint and every enabled subscription.
    pub async fn start(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        bus: Bus,
        batch_size: usize,
        max_depth: u32,
    ) -> StoreResult<(Worker, WorkerHandle)> {
        let snapshot = store.load_processing().await?;
        let (changes_sender, changes) = mpsc::unbounded_channel();
        let (progress, progress_receiver) = watch::channel(snapshot.cursor);
        let wake = Arc::new(Notify::new());
        let mut worker = Worker {
            store: store.clone(),
            registry,
            clock,
            bus,
            wake: wake.clone(),
            changes,
            progress,
            subscriptions: HashMap::new(),
            index: DispatchIndex::default(),
            deadlines: HashMap::new(),
            cursor: snapshot.cursor,
            batch_size: batch_size.max(1),
            max_depth,
            feed: store.follow_appends(),
            pending: VecDeque::new(),
            fresh: HashSet::new(),
            notifier: None,
            limits: WorkerLimits::default(),
            health: HashMap::new(),
            health_pending: Vec::new(),
            costs: HashMap::new(),
            shared_costs: Arc::new(Mutex::new(Vec::new())),
            costs_published: Instant::now(),
            filter_meter: crate::filter_budget::ThreadCpuMeter::new(
                WorkerLimits::default().filter_budget,
            ),
            lease: ProcessingLease::new(),
            settings_generation: None,
            head: Arc::new(std::sync::atomic::AtomicI64::new(0)),
        };
        worker.load(snapshot).await?;
        worker.head.store(
            store.last_seq().await?,
            std::sync::atomic::Ordering::Relaxed,
        );
        let handle = WorkerHandle {
            wake,
            changes: changes_sender,
            progress: progress_receiver,
            head: worker.head.clone(),
            costs: worker.shared_costs.clone(),
        };
        Ok((worker, handle))
    }

    /// Sets how much a subscription may cost and fail.
    pub fn with_limits(mut self, limits: WorkerLimits) -> Worker {
        self.limits = limits;
        self.filter_meter = crate::filter_budget::ThreadCpuMeter::new(limits.filter_budget);
        self
    }

    /// Lets every commit write the outbox rows its alert changes call for.
    pub fn with_notifier(mut self, notifier: NotifierHandle) -> Worker {
        self.notifier = Some(notifier);
        self
    }

    /// Installs every subscription with its state as of `snapshot`.
    async fn load(&mut self, snapshot: tellify_store::ProcessingSnapshot) -> StoreResult<()> {
        self.subscriptions.clear();
        self.index = DispatchIndex::default();
        self.deadlines.clear();
        self.pending.clear();
        self.fresh.clear();
        self.health.clear();
        self.health_pending.clear();
        self.cursor = snapshot.cursor;
        // The next batch compares everything with the store again (and the planner rereads
        // its directory) when several nodes share it: another node may have held it.
        self.settings_generation = None;
        for subscription in self.store.list_subscriptions(None).await? {
            if let Some(health) = &subscription.health {
                self.health.insert(subscription.id.clone(), health.clone());
            }
            let state = snapshot.states.get(&subscription.id);
            self.install(subscription, state);
        }
        Ok(())
    }

    /// After a failed commit the handlers in memory are ahead of the store: throw them
    /// away and start again from the last commit, so no event is counted twice.
    async fn reset(&mut self) -> StoreResult<()> {
        let snapshot = self.store.load_processing().await?;
        self.load(snapshot).await
    }

    fn install(&mut self, subscription: Subscription, state: Option<&serde_json::Value>) {
        let id = subscription.id.clone();
        self.remove(&id);
        if !subscription.enabled {
            return;
        }
        let registry = &self.registry;
        let built = catch_unwind(AssertUnwindSafe(|| {
            let mut handler = registry.build(&subscription.kind, &subscription.params)?;
            if let Some(state) = state {
                if let Err(error) = handler.load_state(state) {
                    tracing::warn!(subscription = %id, %error, "handler state unreadable; starting afresh");
                }
            }
            let hints = handler.dispatch_hints();
            let deadline = handler.next_deadline();
            Ok::<_, Vec<tellify_engine::ParamError>>((handler, hints, deadline))
        }));
        let (handler, hints, deadline) = match built {
            Ok(Ok(built)) => built,
            Ok(Err(errors)) => {
                let errors: Vec<String> = errors
                    .iter()
                    .map(|error| format!("{}: {}", error.path, error.message))
                    .collect();
                tracing::error!(subscription = %id, ?errors, "stored subscription no longer validates; disabled");
                let reason = format!("its parameters are no longer valid: {}", errors.join("; "));
                self.disable_at_load(&id, reason);
                return;
            }
            Err(payload) => {
                let reason = format!(
                    "its handler panicked while starting: {}",
                    panic_text(&*payload)
                );
                tracing::error!(subscription = %id, %reason, "subscription disabled");
                self.disable_at_load(&id, reason);
                return;
            }
        };
        self.index.insert(id.clone(), &hints);
        if let Some(deadline) = deadline {
            self.deadlines.insert(id.clone(), deadline);
        }
        self.subscriptions.insert(
            id,
            Loaded {
                subscription,
                handler,
            },
        );
        metrics::gauge!(telemetry::SUBSCRIPTIONS_ACTIVE).set(self.subscriptions.len() as f64);
    }

    /// Disables a subscription that cannot even start; the next commit records why.
    fn disable_at_load(&mut self, id: &str, reason: String) {
        let now = self.clock.now();
        let health = SubscriptionHealth {
            failures: self.limits.max_failures.max(1),
            last_error: reason,
            since: now,
            last_at: now,
            disabled: true,
        };
        self.health.insert(id.to_string(), health.clone());
        self.health_pending.push(HealthUpdate {
            subscription_id: id.to_string(),
            health: Some(health),
        });
        metrics::counter!(telemetry::SUBSCRIPTION_FAILURES, "outcome" => "disabled").increment(1);
        self.publish_failing_gauge();
    }

    /// Records one failure of a subscription for the commit under way; past the limit the
    /// subscription is disabled and leaves the dispatch index at once.
    fn record_failure(
        &mut self,
        id: &str,
        reason: String,
        now: Timestamp,
        commit: &mut ProcessingCommit,
    ) {
        let health = self
            .health
            .entry(id.to_string())
            .or_insert_with(|| SubscriptionHealth {
                failures: 0,
                last_error: String::new(),
                since: now,
                last_at: now,
                disabled: false,
            });
        health.failures = health.failures.saturating_add(1);
        health.last_error = reason;
        health.last_at = now;
        let disabled = health.failures >= self.limits.max_failures;
        health.disabled = disabled;
        let update = HealthUpdate {
            subscription_id: id.to_string(),
            health: Some(health.clone()),
        };
        commit
            .health
            .retain(|earlier| earlier.subscription_id != id);
        commit.health.push(update);
        let outcome = if disabled { "disabled" } else { "failing" };
        tracing::warn!(subscription = id, outcome, reason = %self.health[id].last_error, "subscription failed");
        metrics::counter!(telemetry::SUBSCRIPTION_FAILURES, "outcome" => outcome).increment(1);
        if disabled {
            self.remove(id);
        }
        self.publish_failing_gauge();
    }

    /// A failing subscription handled an input well: it works again.
    fn record_success(&mut self, id: &str, commit: &mut ProcessingCommit) {
        if self.health.is_empty() || self.health.remove(id).is_none() {
            return;
        }
        commit
            .health
            .retain(|earlier| earlier.subscription_id != id);
        commit.health.push(HealthUpdate {
            subscription_id: id.to_string(),
            health: None,
        });
        self.publish_failing_gauge();
    }

    fn publish_failing_gauge(&self) {
        metrics::gauge!(telemetry::SUBSCRIPTIONS_FAILING).set(self.health.len() as f64);
    }

    /// Adds one handler call's time to its subscription and judges it against the budget:
    /// the reason when the call ran long (its outputs still stand).
    fn account(&mut self, id: &str, elapsed: Duration) -> Option<String> {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // Looked up before inserting, so a known subscription costs no key allocation.
        if !self.costs.contains_key(id) {
            self.costs.insert(
                id.to_string(),
                SubscriptionCost {
                    subscription_id: id.to_string(),
                    ..SubscriptionCost::default()
                },
            );
        }
        let cost = self.costs.get_mut(id)?;
        cost.calls += 1;
        cost.total_micros = cost.total_micros.saturating_add(micros);
        cost.max_micros = cost.max_micros.max(micros);
        (elapsed > self.limits.budget).then(|| {
            format!(
                "one input took {} ms, over the budget of {} ms",
                elapsed.as_millis(),
                self.limits.budget.as_millis()
            )
        })
    }

    /// Shares the costliest subscriptions with [`WorkerHandle::costliest`], at most once
    /// a second.
    fn publish_costs(&mut self) {
        if self.costs_published.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.costs_published = Instant::now();
        let mut costliest: Vec<SubscriptionCost> = self.costs.values().cloned().collect();
        costliest.sort_by_key(|cost| std::cmp::Reverse(cost.total_micros));
        costliest.truncate(COSTS_KEPT);
        if let Ok(mut shared) = self.shared_costs.lock() {
            *shared = costliest;
        }
    }

    fn remove(&mut self, id: &str) {
        let key = id.to_string();
        self.index.remove(&key);
        self.deadlines.remove(id);
        self.subscriptions.remove(id);
    }

    async fn reload(&mut self, id: String) -> StoreResult<()> {
        let subscription = self.store.subscription(&id).await?;
        self.apply_subscription(id, subscription);
        Ok(())
    }

    /// Reloads the subscriptions `ids` names, in one read however many there are (10,000
    /// subscriptions created in a row were 10,000 round trips to PostgreSQL while the next
    /// events waited; reading every subscription instead, for each such batch, left the
    /// allocator holding hundreds of megabytes).
    async fn reload_all_of(&mut self, mut ids: Vec<String>) -> StoreResult<()> {
        ids.sort();
        ids.dedup();
        if let [id] = ids.as_slice() {
            return self.reload(id.clone()).await;
        }
        let mut stored: HashMap<String, Subscription> = self
            .store
            .subscriptions_by_id(&ids)
            .await?
            .into_iter()
            .map(|subscription| (subscription.id.clone(), subscription))
            .collect();
        for id in ids {
            let subscription = stored.remove(&id);
            self.apply_subscription(id, subscription);
        }
        Ok(())
    }

    /// Every subscription in the store, by id: one read.
    async fn stored_subscriptions(&self) -> StoreResult<HashMap<String, Subscription>> {
        Ok(self
            .store
            .list_subscriptions(None)
            .await?
            .into_iter()
            .map(|subscription| (subscription.id.clone(), subscription))
            .collect())
    }

    /// Installs a subscription as it now is in the store (`None`: it is gone).
    fn apply_subscription(&mut self, id: String, subscription: Option<Subscription>) {
        let Some(subscription) = subscription else {
            self.remove(&id);
            if self.health.remove(&id).is_some() {
                self.publish_failing_gauge();
            }
            return;
        };
        // The owner fixed or re-enabled it (which clears its health), or it is still failing.
        match &subscription.health {
            Some(health) => {
                self.health.insert(id.clone(), health.clone());
            }
            None => {
                self.health.remove(&id);
            }
        }
        self.publish_failing_gauge();
        // Keep the running handler (and its state) when only the title, latching or
        // enabled flag changed; new parameters start with fresh state.
        if let Some(loaded) = self.subscriptions.get_mut(&id) {
            let same_logic = loaded.subscription.kind == subscription.kind
                && loaded.subscription.params == subscription.params;
            if same_logic && subscription.enabled {
                loaded.subscription = subscription;
                return;
            }
        }
        let id = subscription.id.clone();
        self.install(subscription, None);
        // Save the fresh state at the next commit, so a restart does not load the state
        // the old parameters left behind.
        if self.subscriptions.contains_key(&id) {
            self.fresh.insert(id);
        }
    }

    /// With several nodes, a change another node took (a subscription, a person, a
    /// policy) reaches this one's memory through an announcement, which may come after an
    /// event appended later. The store's settings generation comes with each batch: when
    /// it moved, every subscription that differs from the loaded one is applied, and the
    /// planner rereads its directory, before the batch is processed.
    /// `known` is the generation read with the batch, when it was.
    async fn catch_up_settings(&mut self, known: Option<Option<i64>>) -> StoreResult<()> {
        let generation = match known {
            Some(generation) => generation,
            None => self.store.settings_generation().await?,
        };
        let Some(generation) = generation else {
            return Ok(());
        };
        if self.settings_generation == Some(generation) {
            return Ok(());
        }
        let stored = self.stored_subscriptions().await?;
        let gone: Vec<String> = self
            .subscriptions
            .keys()
            .filter(|id| !stored.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            self.apply_subscription(id, None);
        }
        for (id, subscription) in stored {
            let unchanged = self.subscriptions.get(&id).is_some_and(|loaded| {
                let current = &loaded.subscription;
                current.kind == subscription.kind
                    && current.params == subscription.params
                    && current.enabled == subscription.enabled
                    && current.title == subscription.title
                    && current.latching == subscription.latching
                    && current.policy == subscription.policy
                    && current.owner_user == subscription.owner_user
                    && current.owner_group == subscription.owner_group
            });
            let not_loaded_and_off = !subscription.enabled && !self.subscriptions.contains_key(&id);
            if !unchanged && !not_loaded_and_off {
                if let Some(notifier) = &self.notifier {
                    notifier
                        .subscription_policy(&id, subscription.policy.as_deref())
                        .await;
                }
                self.apply_subscription(id, Some(subscription));
            }
        }
        if let Some(notifier) = &self.notifier {
            notifier.directory_changed().await?;
        }
        self.settings_generation = Some(generation);
        Ok(())
    }

    /// Runs until `shutdown` flips to true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                self.give_up_lease().await;
                return;
            }
            match self.hold_lease().await {
                Ok(true) => {}
                Ok(false) => {
                    // Another node processes: follow its progress, so this node's backlog
                    // (ingest's back-pressure, /healthz) is the cluster's, not frozen.
                    match self.store.processing_cursor().await {
                        Ok(cursor) => {
                            self.cursor = cursor;
                            let _ = self.progress.send(cursor);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot read how far processing got")
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(LEASE_POLL) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot take or renew the processing lease; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
            let busy = match self.step().await {
                Ok(busy) => busy,
                Err(error) => {
                    if matches!(error, StoreError::Conflict(_)) && self.lease.for_commit().is_some()
                    {
                        tracing::warn!(%error, "processing moved to another node; this one stands by");
                        self.lease.fence = None;
                    } else {
                        tracing::error!(%error, "processing failed; retrying from the last commit shortly");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    if let Err(error) = self.reset().await {
                        tracing::error!(%error, "cannot reload the processing state");
                    }
                    continue;
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Takes or renews the processing lease when it is time to; true while this node
    /// holds it. Taking it over from another node reloads the state that node committed.
    async fn hold_lease(&mut self) -> StoreResult<bool> {
        let now = self.clock.now();
        if self.lease.fence.is_some() && now < self.lease.renew_at {
            return Ok(true);
        }
        let until = now + LEASE_TTL;
        let taken = self
            .store
            .acquire_lease(PROCESSING_LEASE, &self.lease.holder, now, until)
            .await?;
        match taken {
            Some(fence) => {
                let previous = self.lease.fence.replace(fence);
                self.lease.renew_at = now + LEASE_RENEW;
                if previous != Some(fence) && fence != 0 {
                    tracing::info!(fence, "this node now processes events");
                    self.reset().await?;
                }
                Ok(true)
            }
            None => {
                if self.lease.fence.take().is_some() {
                    tracing::warn!("the processing lease passed to another node");
                }
                Ok(false)
            }
        }
    }

    /// Lets another node take over at once (a graceful stop).
    async fn give_up_lease(&mut self) {
        if self.lease.fence.take().is_some() {
            let released = self
                .store
                .release_lease(PROCESSING_LEASE, &self.lease.holder)
                .await;
            if let Err(error) = released {
                tracing::warn!(%error, "cannot give up the processing lease; another node takes over once it expires");
            }
        }
    }

    /// One round: apply subscription changes, process a batch, fire due deadlines.
    /// Returns true when there may be more to do right away.
    pub async fn step(&mut self) -> StoreResult<bool> {
        let mut changed = Vec::new();
        while let Ok(id) = self.changes.try_recv() {
            if id == RELOAD_EVERYTHING {
                // Everything in memory was committed by the last step: rereading it loses
                // nothing.
                self.reset().await?;
                changed.clear();
            } else {
                changed.push(id);
            }
        }
        self.reload_all_of(changed).await?;
        let (events, generation) = self.next_batch().await?;
        self.catch_up_settings(generation).await?;
        let now = self.clock.now();
        let mut commit = ProcessingCommit {
            cursor: self.cursor,
            planner: self.notifier.as_ref().map(NotifierHandle::planner),
            ids: IdSourceRef::new(tellify_model::new_id),
            lease: self.lease.for_commit(),
            ..Default::default()
        };
        commit.health = std::mem::take(&mut self.health_pending);
        let mut dirty: HashSet<String> = std::mem::take(&mut self.fresh);
        for event in &events {
            self.process_event(event, now, &mut commit, &mut dirty);
            commit.cursor = event.seq;
        }
        self.fire_deadlines(now, &mut commit, &mut dirty);
        self.publish_costs();
        if commit.cursor == self.cursor
            && commit.outputs.is_empty()
            && dirty.is_empty()
            && commit.health.is_empty()
            && commit.filter_errors.is_empty()
        {
            return Ok(false);
        }
        for id in &dirty {
            if let Some(loaded) = self.subscriptions.get(id) {
                commit
                    .states
                    .push((id.clone(), loaded.handler.save_state()));
            }
        }
        let derived = commit.derived.clone();
        let cursor = commit.cursor;
        let filter_errors = commit.filter_errors.clone();
        // A commit that may notify claims for the notifier's free senders too, so what is
        // due at once is sent without a claim transaction of its own (`notify::claims`).
        let offer = match &self.notifier {
            Some(notifier)
                if !commit.outputs.is_empty() && commit.outputs.len() <= CLAIM_IN_COMMIT_MAX =>
            {
                notifier.claim_offer(self.clock.now()).await
            }
            _ => None,
        };
        commit.claim = offer.as_ref().map(|offer| offer.request().clone());
        let mut outcome = self.store.commit_processing(commit).await?;
        report_filter_errors(&filter_errors);
        let processed = (cursor - self.cursor).max(0);
        self.cursor = cursor;
        metrics::counter!(telemetry::EVENTS_PROCESSED).increment(processed as u64);
        if let Some(notifier) = &self.notifier {
            match (offer, outcome.claimed.take()) {
                (Some(offer), Some(claimed)) => {
                    notifier.hand_over(offer, claimed);
                    if outcome.due_later {
                        notifier.wake();
                    }
                }
                _ if !outcome.changes.is_empty() => notifier.wake(),
                _ => {}
            }
        }
        for change in outcome.changes {
            for entry in &change.history {
                metrics::counter!(telemetry::ALERT_TRANSITIONS, "action" => entry.action.as_str())
                    .increment(1);
            }
            self.bus.tell_others(Announcement::Alert {
                id: change.alert.id.clone(),
                entries: change.history.len(),
            });
            self.bus.publish(StreamItem::Alert(Arc::new(AlertNotice {
                alert: change.alert,
                history: change.history,
            })));
        }
        let appended_derived = outcome.derived.iter().any(|appended| !appended.duplicate);
        self.bus.tell_events(
            outcome
                .derived
                .iter()
                .filter(|appended| !appended.duplicate)
                .map(|appended| appended.seq),
        );
        for (mut event, appended) in derived.into_iter().zip(outcome.derived) {
            if !appended.duplicate {
                self.head
                    .fetch_max(appended.seq, std::sync::atomic::Ordering::Relaxed);
                event.seq = appended.seq;
                self.bus.publish(StreamItem::Event(Arc::new(event)));
            }
        }
        let _ = self.progress.send(self.cursor);
        // The head as this node heard of it (its own appends, the others' announcements),
        // not asked of the store: on PostgreSQL that was a round trip in every step.
        let head = self.head.load(std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!(telemetry::PROCESSING_LAG).set((head - self.cursor).max(0) as f64);
        // After a batch, look again at once: events committed meanwhile are found before
        // their announcement arrives (measured: waiting for the wake-up instead made the
        // three-node webhook latency worse).
        Ok(!events.is_empty() || appended_derived)
    }

    /// The next events after the cursor, in order: from the feed when it continues the
    /// cursor without a gap, otherwise (a dropped batch, derived events, a restart) from
    /// the log up to where the feed picks up, together with the settings generation
    /// (`Some`) when the store read it with them.
    async fn next_batch(&mut self) -> StoreResult<(Vec<Arc<StoredEvent>>, Option<Option<i64>>)> {
        if let Some(feed) = &mut self.feed {
            while self.pending.len() < MAX_PENDING {
                match feed.try_recv() {
                    Ok(batch) => self.pending.extend(batch),
                    Err(_) => break,
                }
            }
        }
        while self
            .pending
            .front()
            .is_some_and(|event| event.seq <= self.cursor)
        {
            self.pending.pop_front();
        }
        let mut limit = self.batch_size;
        if let Some(first) = self.pending.front() {
            if first.seq == self.cursor + 1 {
                let mut batch = Vec::with_capacity(self.batch_size.min(self.pending.len()));
                let mut expected = self.cursor + 1;
                while batch.len() < self.batch_size {
                    match self.pending.front() {
                        Some(event) if event.seq == expected => {
                            expected += 1;
                            if let Some(event) = self.pending.pop_front() {
                                batch.push(event);
                            }
                        }
                        _ => break,
                    }
                }
                return Ok((batch, None));
            }
            limit = limit.min((first.seq - self.cursor - 1) as usize);
        }
        let (events, generation) = self.store.events_to_process(self.cursor, limit).await?;
        Ok((events.into_iter().map(Arc::new).collect(), Some(generation)))
    }

    fn process_event(
        &mut self,
        event: &StoredEvent,
        now: Timestamp,
        commit: &mut ProcessingCommit,
        dirty: &mut HashSet<String>,
    ) {
        let candidates = self.index.candidates(event);
        if candidates.is_empty() {
            return;
        }
        let meter = self.filter_meter.clone();
        let context = EventContext::new(event).with_meter(&meter);
        for id in candidates {
            let Some(loaded) = self.subscriptions.get_mut(&id) else {
                continue;
            };
            let started = Instant::now();
            let called = catch_unwind(AssertUnwindSafe(|| {
                let mut outputs = Outputs::default();
                loaded.handler.on_event(event, &context, now, &mut outputs);
                (outputs, loaded.handler.next_deadline())
            }));
            let over_budget = context.take_over_budget().map(|over| over.to_string());
            if let Some(failure) = context.take_failure() {
                count_filter_error(commit, &id, &event.id, &failure, now);
            }
            let judged = self.judge(
                &id,
                Input::Event(&event.id),
                called,
                started.elapsed(),
                over_budget,
                now,
                commit,
            );
            let Some((outputs, deadline)) = judged else {
                continue;
            };
            let Some(loaded) = self.subscriptions.get(&id) else {
                // Disabled just now for running over budget too often.
                continue;
            };
            let nothing_happened =
                outputs.alerts.is_empty() && outputs.derived.is_empty() && !outputs.state_changed;
            if nothing_happened {
                continue;
            }
            let origin = (!outputs.alerts.is_empty()).then(|| loaded.subscription.origin());
            match deadline {
                Some(deadline) => self.deadlines.insert(id.clone(), deadline),
                None => self.deadlines.remove(&id),
            };
            self.absorb(&id, origin, outputs, event.depth, now, commit, dirty);
        }
    }

    fn fire_deadlines(
        &mut self,
        now: Timestamp,
        commit: &mut ProcessingCommit,
        dirty: &mut HashSet<String>,
    ) {
        let due: Vec<String> = self
            .deadlines
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(loaded) = self.subscriptions.get_mut(&id) else {
                self.deadlines.remove(&id);
                continue;
            };
            let started = Instant::now();
            let called = catch_unwind(AssertUnwindSafe(|| {
                let mut outputs = Outputs::default();
                loaded.handler.on_tick(now, &mut outputs);
                (outputs, loaded.handler.next_deadline())
            }));
            let judged = self.judge(
                &id,
                Input::Timer,
                called,
                started.elapsed(),
                None,
                now,
                commit,
            );
            let Some((outputs, deadline)) = judged else {
                // Forget the deadline until the next event sets one again, so a broken
                // tick is not retried in a loop.
                self.deadlines.remove(&id);
                continue;
            };
            let Some(loaded) = self.subscriptions.get(&id) else {
                continue;
            };
            let origin = (!outputs.alerts.is_empty()).then(|| loaded.subscription.origin());
            match deadline {
                Some(deadline) => self.deadlines.insert(id.clone(), deadline),
                None => self.deadlines.remove(&id),
            };
            self.absorb(&id, origin, outputs, 0, now, commit, dirty);
        }
    }

    /// Judges one timed handler call on `what` (an event, a timer): a panic, a reported
    /// failure or a filter over budget is a failure whose outputs are dropped (`None`); a
    /// call over the handler budget is a failure whose outputs stand; anything else is a
    /// success, which clears a failing record.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        id: &str,
        what: Input<'_>,
        called: std::thread::Result<(Outputs, Option<Timestamp>)>,
        elapsed: Duration,
        filter_over_budget: Option<String>,
        now: Timestamp,
        commit: &mut ProcessingCommit,
    ) -> Option<(Outputs, Option<Timestamp>)> {
        let slow = self.account(id, elapsed);
        let (mut outputs, deadline) = match called {
            Ok(called) => called,
            Err(payload) => {
                let reason = format!("its handler panicked on {what}: {}", panic_text(&*payload));
                self.record_failure(id, reason, now, commit);
                return None;
            }
        };
        if let Some(reason) = outputs.failure.take().or(filter_over_budget) {
            self.record_failure(id, format!("{what}: {reason}"), now, commit);
            return None;
        }
        match slow {
            Some(reason) => self.record_failure(id, format!("{what}: {reason}"), now, commit),
            None => self.record_success(id, commit),
        }
        Some((outputs, deadline))
    }

    #[allow(clippy::too_many_arguments)]
    fn absorb(
        &self,
        id: &str,
        origin: Option<tellify_engine::alerts::AlertOrigin>,
        outputs: Outputs,
        depth: u32,
        now: Timestamp,
        commit: &mut ProcessingCommit,
        dirty: &mut HashSet<String>,
    ) {
        if outputs.state_changed {
            dirty.insert(id.to_string());
        }
        if let Some(origin) = origin {
            for output in outputs.alerts {
                commit.outputs.push(OutputToApply {
                    origin: origin.clone(),
                    output,
                    at: now,
                });
            }
        }
        for mut input in outputs.derived {
            if depth + 1 > self.max_depth {
                metrics::counter!(telemetry::DERIVED_DROPPED).increment(1);
                tracing::warn!(
                    subscription = id,
                    depth,
                    "derived event dropped: chain too deep"
                );
                continue;
            }
            let source = input.source.get_or_insert_with(Default::default);
            source
                .component
                .get_or_insert_with(|| format!("subscription:{id}"));
            commit.derived.push(StoredEvent::from_input(
                input,
                Some("tellify".to_string()),
                now,
                depth + 1,
            ));
        }
    }
}

/// What a handler was called on, named only when a failure needs the words: the worker
/// calls handlers once per candidate subscription of every event, and formatting the
/// event's id for each call was an allocation per call in the hot path.
#[derive(Clone, Copy)]
enum Input<'a> {
    Event(&'a str),
    Timer,
}

impl std::fmt::Display for Input<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Event(id) => write!(f, "event {id}"),
            Input::Timer => f.write_str("a timer"),
        }
    }
}

/// Counts one filter failure of subscription `id` on an event in the commit under way, one
/// entry per subscription, so the count costs nothing until a filter fails. Filter
/// failures never disable a subscription: the filter is false for that event only, and a
/// producer's odd event must not switch off someone's alerting; the owner sees the count.
fn count_filter_error(
    commit: &mut ProcessingCommit,
    id: &str,
    event_id: &str,
    failure: &tellify_engine::EvaluationFailed,
    now: Timestamp,
) {
    let last_error = format!("event {event_id}: {failure}");
    let counted = commit
        .filter_errors
        .iter_mut()
        .find(|update| update.subscription_id == id);
    match counted {
        Some(update) => {
            update.count = update.count.saturating_add(1);
            update.last_error = last_error;
            update.last_at = now;
        }
        None => commit.filter_errors.push(FilterErrorUpdate {
            subscription_id: id.to_string(),
            count: 1,
            last_error,
            last_at: now,
        }),
    }
}

/// Logs and counts the filter failures of a commit once it is stored (a failed commit is
/// processed again, and would count them twice).
fn report_filter_errors(filter_errors: &[FilterErrorUpdate]) {
    let mut total = 0;
    for update in filter_errors {
        total += update.count;
        tracing::warn!(
            subscription = %update.subscription_id,
            count = update.count,
            last_error = %update.last_error,
            "filter failed on events"
        );
    }
    if total > 0 {
        metrics::counter!(telemetry::FILTER_ERRORS).increment(total);
    }
}

/// The message of a panic, as far as it has one.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        return (*text).to_string();
    }
    if let Some(text) = payload.downcast_ref::<String>() {
        return text.clone();
    }
    "no message".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use tellify_engine::handlers::{HandlerKind, Outputs};
    use tellify_engine::{DispatchHints, EventContext, ParamError};
    use tellify_model::EventInput;
    use tellify_store::sqlite::SqliteStore;

    /// A kind that answers every event with a derived event: a loop, if nothing stops it.
    struct Echo;
    struct EchoHandler;

    impl HandlerKind for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }
        fn title(&self) -> &'static str {
            "Echo"
        }
        fn description(&self) -> &'static str {
            "emits a derived event for every event"
        }
        fn required_fields(&self) -> &'static str {
            "none"
        }
        fn param_schema(&self) -> Value {
            json!({"type": "object"})
        }
        fn build(&self, _params: &Value) -> Result<Box<dyn Handler>, Vec<ParamError>> {
            Ok(Box::new(EchoHandler))
        }
    }

    impl Handler for EchoHandler {
        fn dispatch_hints(&self) -> DispatchHints {
            DispatchHints::default()
        }
        fn on_event(
            &mut self,
            event: &StoredEvent,
            _: &EventContext,
            _: Timestamp,
            out: &mut Outputs,
        ) {
            out.derived.push(EventInput {
                message: Some(format!("echo of depth {}", event.depth)),
                ..EventInput::default()
            });
        }
        fn save_state(&self) -> Value {
            Value::Null
        }
        fn load_state(&mut self, _: &Value) -> Result<(), String> {
            Ok(())
        }
    }

    /// A kind whose handler panics on every event (`{"panic": true}`), takes N ms
    /// (`{"sleep_ms": N}`), or does nothing.
    struct Broken;
    struct BrokenHandler {
        panic: bool,
        sleep_ms: u64,
    }

    impl HandlerKind for Broken {
        fn name(&self) -> &'static str {
            "broken"
        }
        fn title(&self) -> &'static str {
            "Broken"
        }
        fn description(&self) -> &'static str {
            "panics, or runs long"
        }
        fn required_fields(&self) -> &'static str {
            "none"
        }
        fn param_schema(&self) -> Value {
            json!({"type": "object"})
        }
        fn build(&self, params: &Value) -> Result<Box<dyn Handler>, Vec<ParamError>> {
            Ok(Box::new(BrokenHandler {
                panic: params["panic"].as_bool().unwrap_or(false),
                sleep_ms: params["sleep_ms"].as_u64().unwrap_or(0),
            }))
        }
    }

    impl Handler for BrokenHandler {
        fn dispatch_hints(&self) -> DispatchHints {
            DispatchHints::default()
        }
        fn on_event(&mut self, _: &StoredEvent, _: &EventContext, now: Timestamp, _: &mut Outputs) {
            std::thread::sleep(Duration::from_millis(self.sleep_ms));
            if self.panic {
                // What the count kind did with a window of 175307616h.
                let _ = now + jiff::SignedDuration::MAX;
            }
        }
        fn save_state(&self) -> Value {
            Value::Null
        }
        fn load_state(&mut self, _: &Value) -> Result<(), String> {
            Ok(())
        }
    }

    async fn append(store: &Arc<dyn Store>, message: &str) {
        let input = EventInput {
            message: Some(message.into()),
            ..EventInput::default()
        };
        store
            .append_events(vec![StoredEvent::from_input(
                input,
                None,
                Timestamp::UNIX_EPOCH,
                0,
            )])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_panicking_handler_fails_alone_and_is_disabled_after_repeated_failures() {
        let (_directory, store) = store_with_user().await;
        store
            .insert_subscription(subscription("broken", "broken", json!({"panic": true})))
            .await
            .unwrap();
        store
            .insert_subscription(subscription("echo", "echo", json!({})))
            .await
            .unwrap();
        let registry = Arc::new(Registry::with_kinds(vec![Box::new(Echo), Box::new(Broken)]));
        let clock = Arc::new(crate::clock::ManualClock::new(Timestamp::UNIX_EPOCH));
        let limits = WorkerLimits {
            max_failures: 3,
            budget: Duration::from_secs(60),
            filter_budget: Duration::from_secs(60),
        };
        let (worker, _handle) =
            Worker::start(store.clone(), registry, clock, Bus::default(), 100, 1)
                .await
                .unwrap();
        let mut worker = worker.with_limits(limits);

        append(&store, "first").await;
        while worker.step().await.unwrap() {}
        let broken = store.subscription("broken").await.unwrap().unwrap();
        let health = broken.health.expect("marked failing");
        assert_eq!(health.failures, 2, "the event and the echo's derived event");
        assert!(
            health.last_error.contains("panicked"),
            "{}",
            health.last_error
        );
        assert!(broken.enabled, "two failures do not disable");
        let events = store.events_after(0, 100).await.unwrap();
        assert_eq!(
            events.len(),
            2,
            "the echo subscription still processed the event"
        );
        assert_eq!(worker.cursor, events[1].seq, "and the cursor moved past it");

        append(&store, "second").await;
        append(&store, "third").await;
        while worker.step().await.unwrap() {}
        let broken = store.subscription("broken").await.unwrap().unwrap();
        let health = broken.health.expect("still failing");
        assert_eq!(health.failures, 3);
        assert!(health.disabled);
        assert!(!broken.enabled, "disabled at the third failure in a row");
        assert!(!worker
            .index
            .candidates(&events[0])
            .contains(&"broken".to_string()));

        // A restart loads the disabled subscription quietly and never calls it again.
        append(&store, "fourth").await;
        let registry = Arc::new(Registry::with_kinds(vec![Box::new(Echo), Box::new(Broken)]));
        let clock = Arc::new(crate::clock::ManualClock::new(Timestamp::UNIX_EPOCH));
        let (mut worker, _handle) =
            Worker::start(store.clone(), registry, clock, Bus::default(), 100, 1)
                .await
                .unwrap();
        while worker.step().await.unwrap() {}
        let after = store.subscription("broken").await.unwrap().unwrap();
        assert_eq!(after.health.map(|h| h.failures), Some(3));
    }

    #[tokio::test]
    async fn a_handler_over_its_budget_is_marked_failing_and_recovers_when_fast_again() {
        let (_directory, store) = store_with_user().await;
        store
            .insert_subscription(subscription("slow", "broken", json!({"sleep_ms": 30})))
            .await
            .unwrap();
        let registry = Arc::new(Registry::with_kinds(vec![Box::new(Broken)]));
        let clock = Arc::new(crate::clock::ManualClock::new(Timestamp::UNIX_EPOCH));
        let (worker, handle) =
            Worker::start(store.clone(), registry, clock, Bus::default(), 100, 1)
                .await
                .unwrap();
        let mut worker = worker.with_limits(WorkerLimits {
            max_failures: 5,
            budget: Duration::from_millis(5),
            filter_budget: Duration::from_secs(60),
        });
        append(&store, "slow one").await;
        while worker.step().await.unwrap() {}
        let health = store
            .subscription("slow")
            .await
            .unwrap()
            .unwrap()
            .health
            .expect("failing");
        assert!(
            health.last_error.contains("over the budget of 5 ms"),
            "{}",
            health.last_error
        );
        worker.costs_published = Instant::now() - Duration::from_secs(2);
        worker.publish_costs();
        let costs = handle.costliest();
        assert_eq!(costs[0].subscription_id, "slow");
        assert!(costs[0].max_micros >= 30_000, "{costs:?}");

        // Once it handles an event within budget again, the record is cleared.
        let mut fast = store.subscription("slow").await.unwrap().unwrap();
        fast.params = json!({"sleep_ms": 0});
        store.update_subscription(fast).await.unwrap();
        handle.subscription_changed("slow");
        append(&store, "fast one").await;
        while worker.step().await.unwrap() {}
        assert!(store
            .subscription("slow")
            .await
            .unwrap()
            .unwrap()
            .health
            .is_none());
    }

    #[tokio::test]
    async fn a_filter_over_its_run_time_budget_marks_its_subscription_failing() {
        let (_directory, store) = store_with_user().await;
        store
            .insert_subscription(subscription(
                "costly",
                "match",
                json!({"filter": "size(message) > 0 || size(message) == 0"}),
            ))
            .await
            .unwrap();
        let clock = Arc::new(crate::clock::ManualClock::new(Timestamp::UNIX_EPOCH));
        let (worker, _handle) = Worker::start(
            store.clone(),
            Arc::new(Registry::builtin()),
            clock,
            Bus::default(),
            100,
            1,
        )
        .await
        .unwrap();
        // A zero budget: every evaluation runs over it.
        let mut worker = worker.with_limits(WorkerLimits {
            filter_budget: Duration::ZERO,
            ..WorkerLimits::default()
        });
        append(&store, "anything").await;
        while worker.step().await.unwrap() {}
        let health = store
            .subscription("costly")
            .await
            .unwrap()
            .unwrap()
            .health
            .expect("failing");
        assert!(
            health.last_error.contains("budget"),
            "{}",
            health.last_error
        );
        let alerts = store
            .list_alerts(tellify_store::AlertQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(
            alerts.is_empty(),
            "an evaluation over budget does not match"
        );
    }

    /// A fresh on-disk store holding the user `u`.
    async fn store_with_user() -> (tempfile::TempDir, Arc<dyn Store>) {
        let directory = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(directory.path()).unwrap());
        let user = tellify_store::User {
            id: "u".into(),
            name: "u".into(),
            email: None,
            display_name: None,
            timezone: "UTC".into(),
            admin: false,
            created: Timestamp::UNIX_EPOCH,
        };
        store.create_user(user).await.unwrap();
        (directory, store)
    }

    fn subscription(id: &str, kind: &str, params: Value) -> Subscription {
        Subscription {
            id: id.into(),
            kind: kind.into(),
            title: id.into(),
            params,
            owner_user: "u".into(),
            owner_group: None,
            enabled: true,
            latching: false,
            policy: None,
            created: Timestamp::UNIX_EPOCH,
            updated: Timestamp::UNIX_EPOCH,
            health: None,
            filter_errors: None,
        }
    }

    #[tokio::test]
    async fn derived_events_stop_at_the_depth_limit() {
        let (_directory, store) = store_with_user().await;
        let now = Timestamp::UNIX_EPOCH;
        store
            .insert_subscription(subscription("echo", "echo", json!({})))
            .await
            .unwrap();
        let registry = Arc::new(Registry::with_kinds(vec![Box::new(Echo)]));
        let clock = Arc::new(crate::clock::ManualClock::new(now));
        let (mut worker, _handle) =
            Worker::start(store.clone(), registry, clock, Bus::default(), 100, 3)
                .await
                .unwrap();
        let input = EventInput {
            message: Some("start".into()),
            ..EventInput::default()
        };
        store
            .append_events(vec![StoredEvent::from_input(input, None, now, 0)])
            .await
            .unwrap();
        while worker.step().await.unwrap() {}
        let events = store.events_after(0, 100).await.unwrap();
        let depths: Vec<u32> = events.iter().map(|e| e.depth).collect();
        assert_eq!(
            depths,
            vec![0, 1, 2, 3],
            "the chain stops at max_derived_depth"
        );
        assert_eq!(
            worker.cursor, events[3].seq,
            "and every event was processed"
        );
    }

    /// Many changes at once are read in one go (one store read, not one each) and come
    /// out exactly as one by one would: new ones installed, changed ones rebuilt, deleted
    /// ones dropped.
    #[tokio::test]
    async fn many_changed_subscriptions_are_reloaded_at_once_with_the_same_outcome() {
        let (_directory, store) = store_with_user().await;
        let now = Timestamp::UNIX_EPOCH;
        store
            .insert_subscription(subscription("old", "match", json!({"filter": "true"})))
            .await
            .unwrap();
        let clock = Arc::new(crate::clock::ManualClock::new(now));
        let registry = Arc::new(Registry::builtin());
        let (mut worker, handle) =
            Worker::start(store.clone(), registry, clock, Bus::default(), 100, 8)
                .await
                .unwrap();
        assert_eq!(worker.subscriptions.len(), 1);
        let count = 40;
        for n in 0..count {
            let id = format!("new{n}");
            store
                .insert_subscription(subscription(&id, "match", json!({"filter": "true"})))
                .await
                .unwrap();
            handle.subscription_changed(&id);
        }
        store.delete_subscription("old").await.unwrap();
        handle.subscription_changed("old");
        handle.subscription_changed("new0");
        worker.step().await.unwrap();
        assert_eq!(worker.subscriptions.len(), count);
        assert!(!worker.subscriptions.contains_key("old"));
        store
            .append_events(vec![StoredEvent::from_input(
                EventInput::default(),
                None,
                now,
                0,
            )])
            .await
            .unwrap();
        while worker.step().await.unwrap() {}
        let alerts = store
            .list_alerts(tellify_store::AlertQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(alerts.len(), count, "every new subscription fired once");
    }

    #[tokio::test]
    async fn new_parameters_start_from_fresh_saved_state() {
        let (_directory, store) = store_with_user().await;
        let now = Timestamp::UNIX_EPOCH;
        let mut subscription =
            subscription("disk", "threshold", json!({"field": "usage", "warn": 90}));
        store
            .insert_subscription(subscription.clone())
            .await
            .unwrap();
        let clock = Arc::new(crate::clock::ManualClock::new(now));
        let registry = Arc::new(Registry::builtin());
        let (mut worker, handle) =
            Worker::start(store.clone(), registry, clock, Bus::default(), 100, 8)
                .await
                .unwrap();
        let input = EventInput {
            fields: json!({"usage": 92}).as_object().cloned().unwrap(),
            ..EventInput::default()
        };
        store
            .append_events(vec![StoredEvent::from_input(input, None, now, 0)])
            .await
            .unwrap();
        while worker.step().await.unwrap() {}
        let saved = store.load_processing().await.unwrap().states["disk"].clone();
        assert_eq!(saved, json!({"levels": {"": "warning"}}));

        subscription.params = json!({"field": "usage", "warn": 95});
        store.update_subscription(subscription).await.unwrap();
        handle.subscription_changed("disk");
        worker.step().await.unwrap();
        let saved = store.load_processing().await.unwrap().states["disk"].clone();
        assert_eq!(
            saved,
            json!({"levels": {}}),
            "the old parameters' state is not kept"
        );
    }
}
