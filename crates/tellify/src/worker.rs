//! The worker: reads the event log after the processing cursor, offers each event to the
//! subscriptions the dispatch index names, lets time pass for handlers with deadlines,
//! and commits alert changes, handler state, derived events and the new cursor in one
//! transaction. A restart resumes from the cursor, so no event is processed twice or
//! skipped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tellify_engine::filter::EventContext;
use tellify_engine::handlers::{Handler, Outputs, Registry};
use tellify_engine::DispatchIndex;
use tellify_model::StoredEvent;
use tellify_store::{OutputToApply, ProcessingCommit, Store, StoreResult, Subscription};
use tokio::sync::{mpsc, watch, Notify};

use crate::clock::Clock;
use crate::notify::NotifierHandle;
use crate::stream::{AlertNotice, Bus, StreamItem};
use crate::telemetry;

/// How the rest of the server talks to the worker.
#[derive(Clone)]
pub struct WorkerHandle {
    wake: Arc<Notify>,
    changes: mpsc::UnboundedSender<String>,
    progress: watch::Receiver<i64>,
    /// The newest log position ingest has reported.
    head: Arc<std::sync::atomic::AtomicI64>,
}

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

    /// A subscription was created, changed or deleted: reload it before the next batch.
    pub fn subscription_changed(&self, id: &str) {
        let _ = self.changes.send(id.to_string());
        self.wake.notify_one();
    }

    /// The last event position processed.
    pub fn processed(&self) -> i64 {
        *self.progress.borrow()
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
        };
        worker.load(snapshot).await?;
        let head = store.last_seq().await?;
        let handle = WorkerHandle {
            wake,
            changes: changes_sender,
            progress: progress_receiver,
            head: Arc::new(std::sync::atomic::AtomicI64::new(head)),
        };
        Ok((worker, handle))
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
        self.cursor = snapshot.cursor;
        for subscription in self.store.list_subscriptions(None).await? {
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
        let mut handler = match self
            .registry
            .build(&subscription.kind, &subscription.params)
        {
            Ok(handler) => handler,
            Err(errors) => {
                tracing::error!(subscription = %id, ?errors, "stored subscription no longer validates; skipped");
                return;
            }
        };
        if let Some(state) = state {
            if let Err(error) = handler.load_state(state) {
                tracing::warn!(subscription = %id, %error, "handler state unreadable; starting afresh");
            }
        }
        self.index.insert(id.clone(), &handler.dispatch_hints());
        if let Some(deadline) = handler.next_deadline() {
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

    fn remove(&mut self, id: &str) {
        let key = id.to_string();
        self.index.remove(&key);
        self.deadlines.remove(id);
        self.subscriptions.remove(id);
    }

    async fn reload(&mut self, id: String) -> StoreResult<()> {
        let Some(subscription) = self.store.subscription(&id).await? else {
            self.remove(&id);
            return Ok(());
        };
        // Keep the running handler (and its state) when only the title, latching or
        // enabled flag changed; new parameters start with fresh state.
        if let Some(loaded) = self.subscriptions.get_mut(&id) {
            let same_logic = loaded.subscription.kind == subscription.kind
                && loaded.subscription.params == subscription.params;
            if same_logic && subscription.enabled {
                loaded.subscription = subscription;
                return Ok(());
            }
        }
        let id = subscription.id.clone();
        self.install(subscription, None);
        // Save the fresh state at the next commit, so a restart does not load the state
        // the old parameters left behind.
        if self.subscriptions.contains_key(&id) {
            self.fresh.insert(id);
        }
        Ok(())
    }

    /// Runs until `shutdown` flips to true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let busy = match self.step().await {
                Ok(busy) => busy,
                Err(error) => {
                    tracing::error!(%error, "processing failed; retrying from the last commit shortly");
                    tokio::time::sleep(Duration::from_millis(500)).await;
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

    /// One round: apply subscription changes, process a batch, fire due deadlines.
    /// Returns true when there may be more to do right away.
    pub async fn step(&mut self) -> StoreResult<bool> {
        while let Ok(id) = self.changes.try_recv() {
            self.reload(id).await?;
        }
        let events = self.next_batch().await?;
        let now = self.clock.now();
        let mut commit = ProcessingCommit {
            cursor: self.cursor,
            planner: self.notifier.as_ref().map(NotifierHandle::planner),
            ..Default::default()
        };
        let mut dirty: HashSet<String> = std::mem::take(&mut self.fresh);
        for event in &events {
            self.process_event(event, now, &mut commit, &mut dirty);
            commit.cursor = event.seq;
        }
        self.fire_deadlines(now, &mut commit, &mut dirty);
        if commit.cursor == self.cursor && commit.outputs.is_empty() && dirty.is_empty() {
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
        let outcome = self.store.commit_processing(commit).await?;
        let processed = (cursor - self.cursor).max(0);
        self.cursor = cursor;
        metrics::counter!(telemetry::EVENTS_PROCESSED).increment(processed as u64);
        if !outcome.changes.is_empty() {
            if let Some(notifier) = &self.notifier {
                notifier.wake();
            }
        }
        for change in outcome.changes {
            for entry in &change.history {
                metrics::counter!(telemetry::ALERT_TRANSITIONS, "action" => entry.action.clone())
                    .increment(1);
            }
            self.bus.publish(StreamItem::Alert(Arc::new(AlertNotice {
                alert: change.alert,
                history: change.history,
            })));
        }
        for (mut event, appended) in derived.into_iter().zip(outcome.derived) {
            if !appended.duplicate {
                event.seq = appended.seq;
                self.bus.publish(StreamItem::Event(Arc::new(event)));
            }
        }
        let _ = self.progress.send(self.cursor);
        if let Ok(last) = self.store.last_seq().await {
            metrics::gauge!(telemetry::PROCESSING_LAG).set((last - self.cursor) as f64);
        }
        Ok(!events.is_empty())
    }

    /// The next events after the cursor, in order: from the feed when it continues the
    /// cursor without a gap, otherwise (a dropped batch, derived events, a restart) from
    /// the log up to where the feed picks up.
    async fn next_batch(&mut self) -> StoreResult<Vec<Arc<StoredEvent>>> {
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
                return Ok(batch);
            }
            limit = limit.min((first.seq - self.cursor - 1) as usize);
        }
        let events = self.store.events_after(self.cursor, limit).await?;
        Ok(events.into_iter().map(Arc::new).collect())
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
        let context = EventContext::new(event);
        for id in candidates {
            let Some(loaded) = self.subscriptions.get_mut(&id) else {
                continue;
            };
            let mut outputs = Outputs::default();
            loaded.handler.on_event(event, &context, now, &mut outputs);
            let nothing_happened =
                outputs.alerts.is_empty() && outputs.derived.is_empty() && !outputs.state_changed;
            if nothing_happened {
                continue;
            }
            let deadline = loaded.handler.next_deadline();
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
            let mut outputs = Outputs::default();
            loaded.handler.on_tick(now, &mut outputs);
            let origin = (!outputs.alerts.is_empty()).then(|| loaded.subscription.origin());
            match loaded.handler.next_deadline() {
                Some(deadline) => self.deadlines.insert(id.clone(), deadline),
                None => self.deadlines.remove(&id),
            };
            self.absorb(&id, origin, outputs, 0, now, commit, dirty);
        }
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

    /// A fresh on-disk store holding the user `u`.
    async fn store_with_user() -> (tempfile::TempDir, Arc<dyn Store>) {
        let directory = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(directory.path()).unwrap());
        let user = tellify_store::User {
            id: "u".into(),
            name: "u".into(),
            email: None,
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
