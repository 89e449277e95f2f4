//! Notify: turns the durable outbox into messages.
//!
//! The worker writes notifications in the same transaction as the alert changes that
//! cause them (see [`planner`]). The [`Notifier`] then, in a loop: plans repeats that are
//! due, gangs due notifications into one delivery per user and contact point and leases
//! them (one store transaction, so nothing joins two deliveries), renders and sends each
//! delivery on its channel with bounded concurrency, and records every attempt. On SQLite
//! the worker's processing commit makes that claim itself, in its own transaction, and
//! hands the claimed deliveries over ([`claims`]): a notification due at once waits for
//! no second transaction. A
//! delivery is marked sent only after the channel confirmed it; failures retry with
//! exponential backoff and jitter up to `notify.max_attempts`.
//!
//! The one window for a duplicate is a crash after the channel confirmed and before the
//! outcome was committed: the lease then runs out and the delivery is sent again. Results
//! are committed as soon as they arrive (in small batches), and webhooks carry an
//! `Idempotency-Key` and emails a `Message-ID` derived from the delivery id, so a receiver
//! can recognise the repeat.

mod claims;
mod payload;
pub mod planner;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::SignedDuration;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tellify_engine::policy::PolicyLimits;
use tellify_engine::render::{
    render_parts, ActionLinks, Parts, Reader, RenderItem, Rendered, Transition,
};
use tellify_engine::Registry;
use tellify_store::{
    DeliveryJob, DeliveryOutcome, DeliveryStatus, FinishedDelivery, PlannerRef, Store, StoreResult,
};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit};

use crate::backoff::Backoff;
use crate::channels::{ChannelError, Channels, ContactKind, ContactTarget};
use crate::clock::Clock;
use crate::stream::{Bus, DeliveryNotice, StreamItem};
use crate::telemetry;

pub use claims::ClaimOffer;
pub use planner::Planner;

/// `[notify]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// Attempts before a delivery is marked failed.
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles with each failure.
    pub backoff_initial_ms: u64,
    /// The longest wait between attempts.
    pub backoff_max_secs: u64,
    /// Deliveries being sent at once.
    pub concurrency: usize,
    /// How long a claimed delivery stays claimed; a sender that dies lets it go after this.
    pub lease_secs: u64,
    /// Timeout of one HTTP attempt (SMS, webhook, chat).
    pub http_timeout_secs: u64,
    /// The shortest `repeat` a policy may ask for (`90s`, `5m`); at least one second.
    pub min_repeat: String,
    /// The shortest `digest` period a policy may ask for.
    pub min_digest: String,
    /// The window of the delivery rate limits (`10m`).
    pub rate_window: String,
    /// New messages one contact point may get per `rate_window` (0: no limit). Beyond it
    /// notifications wait in the outbox and go out together, summarised in one message,
    /// once the window allows: held back, never dropped.
    pub max_per_contact_point: u32,
    /// New messages one user may get per `rate_window`, over all their contact points.
    pub max_per_user: u32,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            max_attempts: 10,
            backoff_initial_ms: 1000,
            backoff_max_secs: 600,
            concurrency: 64,
            lease_secs: 120,
            http_timeout_secs: 10,
            min_repeat: "1m".to_string(),
            min_digest: "1m".to_string(),
            rate_window: "10m".to_string(),
            max_per_contact_point: 30,
            max_per_user: 100,
        }
    }
}

impl NotifySettings {
    /// The policy floors these settings ask for; a bad value names its key.
    pub fn policy_limits(&self) -> anyhow::Result<PolicyLimits> {
        let min_repeat = tellify_model::parse_duration(&self.min_repeat)
            .map_err(|error| anyhow::anyhow!("notify.min_repeat: {error}"))?;
        let min_digest = tellify_model::parse_duration(&self.min_digest)
            .map_err(|error| anyhow::anyhow!("notify.min_digest: {error}"))?;
        Ok(PolicyLimits::with_floors(min_repeat, min_digest))
    }

    /// The window of the delivery rate limits; a bad value names its key.
    pub fn rate_window(&self) -> anyhow::Result<SignedDuration> {
        tellify_model::parse_duration(&self.rate_window)
            .map_err(|error| anyhow::anyhow!("notify.rate_window: {error}"))
    }

    /// The wait before attempt `failures + 1`, with jitter: between half and all of
    /// `initial * 2^(failures-1)`, capped at the maximum.
    pub fn backoff(&self, failures: u32, jitter: f64) -> SignedDuration {
        let wait = Backoff::new(
            Duration::from_millis(self.backoff_initial_ms),
            Duration::from_secs(self.backoff_max_secs),
        )
        .delay(failures, jitter);
        SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX)
    }
}

/// Counts sends in flight per user, so offboarding can wait for them to end.
#[derive(Default)]
struct InFlight {
    by_user: Mutex<HashMap<String, usize>>,
    changed: Notify,
}

impl InFlight {
    fn add(&self, user_id: &str) {
        if let Ok(mut map) = self.by_user.lock() {
            *map.entry(user_id.to_string()).or_default() += 1;
        }
    }

    fn remove(&self, user_id: &str) {
        if let Ok(mut map) = self.by_user.lock() {
            if let Some(count) = map.get_mut(user_id) {
                *count -= 1;
                if *count == 0 {
                    map.remove(user_id);
                }
            }
        }
        self.changed.notify_waiters();
    }

    fn busy(&self, user_id: &str) -> bool {
        self.by_user
            .lock()
            .map(|map| map.contains_key(user_id))
            .unwrap_or(false)
    }
}

/// How the rest of the server talks to the notifier.
#[derive(Clone)]
pub struct NotifierHandle {
    wake: Arc<Notify>,
    planner: Arc<Planner>,
    store: Arc<dyn Store>,
    in_flight: Arc<InFlight>,
    take_lock: Arc<tokio::sync::Mutex<()>>,
    senders: Arc<claims::Senders>,
}

impl NotifierHandle {
    /// Something may be due: look now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The planner itself, for the explain service to ask for its decisions.
    pub fn planner_decisions(&self) -> &Planner {
        &self.planner
    }

    /// The planner the worker hands to its commits.
    pub fn planner(&self) -> PlannerRef {
        PlannerRef(self.planner.clone())
    }

    /// Groups or memberships changed (or a user went): the planner rereads everything
    /// before this returns.
    pub async fn directory_changed(&self) -> StoreResult<()> {
        self.planner.reload(self.store.as_ref()).await
    }

    /// One user's time zone, policies, contact points or silences changed: the planner
    /// rereads them before this returns.
    pub async fn user_changed(&self, user_id: &str) -> StoreResult<()> {
        self.planner.reload_user(self.store.as_ref(), user_id).await
    }

    /// A subscription was saved with `policy` (`None`: the owner's `default`).
    pub async fn subscription_policy(&self, subscription_id: &str, policy: Option<&str>) {
        self.planner
            .set_subscription_policy(subscription_id, policy)
            .await;
    }

    /// Waits until nothing is being sent to `user_id`. Call after their outbox rows are
    /// gone: no new send can start, and one that was claimed before is waited for.
    pub async fn quiesce_user(&self, user_id: &str) {
        // A claim in progress registers its sends before it lets go of this lock.
        drop(self.take_lock.lock().await);
        loop {
            let changed = self.in_flight.changed.notified();
            if !self.in_flight.busy(user_id) {
                return;
            }
            changed.await;
        }
    }
}

/// How often a notifier plans due repeats (see [`Notifier::repeats_due`]).
const REPEATS_EVERY: SignedDuration = SignedDuration::from_secs(1);

pub struct Notifier {
    store: Arc<dyn Store>,
    channels: Arc<Channels>,
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
    settings: NotifySettings,
    link: Option<String>,
    /// Signs the Acknowledge / Shelve links of each alert, when `public_url` is set.
    action_links: Option<crate::services::links::LinkSigner>,
    handle: NotifierHandle,
    /// What processing commits claimed for this notifier ([`NotifierHandle::hand_over`]);
    /// taken by [`Notifier::run`].
    handed: Mutex<Option<mpsc::UnboundedReceiver<claims::Handed>>>,
    /// Claim rounds in a row that took nothing (see [`Notifier::idle_wait`]).
    empty_rounds: std::sync::atomic::AtomicU32,
    /// When repeats were last planned (the notifier's clock; see [`REPEATS_EVERY`]).
    repeats_planned: Mutex<Option<jiff::Timestamp>>,
    /// How long sends in flight at shutdown may take before their deliveries are given back.
    shutdown_grace: Duration,
    /// Turns true when that time is up: every send still in flight gives its delivery back.
    cut_off: watch::Sender<bool>,
    /// Where delivery changes are told to live pages ([`StreamItem::Delivery`]).
    bus: Option<Bus>,
}

impl Notifier {
    pub async fn start(
        store: Arc<dyn Store>,
        channels: Arc<Channels>,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        settings: NotifySettings,
        link: Option<String>,
    ) -> StoreResult<(Notifier, NotifierHandle)> {
        // `app::start` refuses settings whose floors do not parse, so the default here is
        // only for callers that skipped that check (tests building a notifier directly).
        let limits = settings.policy_limits().unwrap_or_default();
        let planner = Arc::new(Planner::new(limits));
        planner.reload(store.as_ref()).await?;
        let (senders, handed) = claims::Senders::new(&settings);
        let handle = NotifierHandle {
            wake: Arc::new(Notify::new()),
            planner,
            store: store.clone(),
            in_flight: Arc::new(InFlight::default()),
            take_lock: Arc::new(tokio::sync::Mutex::new(())),
            senders: Arc::new(senders),
        };
        let notifier = Notifier {
            store,
            channels,
            registry,
            clock,
            settings,
            link,
            action_links: None,
            handle: handle.clone(),
            handed: Mutex::new(Some(handed)),
            empty_rounds: std::sync::atomic::AtomicU32::new(0),
            repeats_planned: Mutex::new(None),
            shutdown_grace: Duration::from_secs(10),
            cut_off: watch::channel(false).0,
            bus: None,
        };
        Ok((notifier, handle))
    }

    /// Puts signed action links to each firing alert in every message (once `link`, the
    /// public URL, is set; without it there is nowhere for a link to point).
    pub fn with_action_links(mut self, signer: crate::services::links::LinkSigner) -> Notifier {
        self.action_links = Some(signer);
        self
    }

    /// How long sends in flight at shutdown may take (default 10 s); after it their
    /// deliveries are given back, due again, and the outcomes committed before `run` ends.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Notifier {
        self.shutdown_grace = grace;
        self
    }

    /// Tells `bus` of every delivery created or finished, while it has listeners.
    pub fn with_bus(mut self, bus: Bus) -> Notifier {
        self.bus = Some(bus);
        self
    }

    /// Runs until `shutdown` flips to true; sends in flight then finish, or give their
    /// delivery back once the shutdown grace is over, and every outcome is committed.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let notifier = Arc::new(self);
        let (results, finished) = mpsc::channel::<Finished>(4096);
        let finisher = tokio::spawn(finish_loop(
            notifier.store.clone(),
            finished,
            notifier.handle.wake.clone(),
            notifier.bus.clone(),
        ));
        let mut handed = match notifier.handed.lock().ok().and_then(|mut h| h.take()) {
            Some(handed) => handed,
            // Run twice: nothing is ever handed to this one.
            None => mpsc::unbounded_channel().1,
        };
        let mut backlog_shown: Option<std::time::Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            while let Ok(jobs) = handed.try_recv() {
                notifier.start_handed(jobs, &results);
            }
            notifier.show_backlog(&mut backlog_shown).await;
            let busy = match notifier.round(&results).await {
                Ok(busy) => busy,
                Err(error) => {
                    tracing::error!(%error, "notify round failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if busy {
                continue;
            }
            let wait = notifier.idle_wait().await;
            tokio::select! {
                Some(jobs) = handed.recv() => notifier.start_handed(jobs, &results),
                _ = notifier.handle.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        // Claimed by a commit after the last look: sent like the rest (or given back).
        handed.close();
        while let Ok(jobs) = handed.try_recv() {
            notifier.start_handed(jobs, &results);
        }
        drop(results);
        let mut finisher = finisher;
        if tokio::time::timeout(notifier.shutdown_grace, &mut finisher)
            .await
            .is_err()
        {
            tracing::warn!(
                grace_ms = notifier.shutdown_grace.as_millis() as u64,
                "sends still in flight at shutdown; giving their deliveries back"
            );
            let _ = notifier.cut_off.send(true);
            let _ = finisher.await;
        }
    }

    /// Shows the outbox backlog on `/metrics`, at most once a second.
    async fn show_backlog(&self, shown: &mut Option<std::time::Instant>) {
        if shown.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return;
        }
        *shown = Some(std::time::Instant::now());
        let now = self.clock.now();
        match self.store.outbox_backlog(now).await {
            Ok((due, oldest)) => {
                let waited = oldest
                    .and_then(|oldest| (now - oldest).total(jiff::Unit::Second).ok())
                    .unwrap_or(0.0);
                telemetry::outbox_backlog(due, waited);
            }
            Err(error) => tracing::debug!(%error, "cannot read the outbox backlog"),
        }
    }

    /// How long to sleep when nothing is due: until the next due time, but at most a
    /// second, so an injected clock that jumps ahead is noticed.
    async fn idle_wait(&self) -> Duration {
        let now = self.clock.now();
        match self.store.next_outbox_due().await {
            Ok(Some(due)) if due > now => {
                let millis = (due - now).total(jiff::Unit::Millisecond).unwrap_or(1000.0);
                Duration::from_millis((millis.max(5.0) as u64).min(1000))
            }
            // What is due may be held back by a rate limit: look again in a second rather
            // than claiming in a tight loop (new work wakes the notifier anyway).
            Ok(Some(_))
                if self
                    .handle
                    .senders
                    .holding
                    .load(std::sync::atomic::Ordering::Relaxed) =>
            {
                Duration::from_secs(1)
            }
            Ok(Some(_)) => {
                due_elsewhere_wait(self.empty_rounds.load(std::sync::atomic::Ordering::Relaxed))
            }
            _ => Duration::from_secs(1),
        }
    }

    /// Plans due repeats, claims what is due and starts sending it. Returns true when
    /// there may be more to claim right away.
    async fn round(self: &Arc<Self>, results: &mpsc::Sender<Finished>) -> StoreResult<bool> {
        let senders = self.handle.senders.clone();
        if senders.permits.available_permits() == 0 {
            // Every sender is busy; a finishing one wakes us.
            return Ok(false);
        }
        let concurrency = self.settings.concurrency.max(1);
        let now = self.clock.now();
        if self.repeats_due(now) {
            self.store
                .plan_repeats(now, self.handle.planner(), 1000)
                .await?;
        }
        let claim = self.handle.take_lock.lock().await;
        // Counted under the lock: a processing commit may have claimed senders meanwhile.
        let free = senders.permits.available_permits();
        if free == 0
            || (senders.backlog.load(std::sync::atomic::Ordering::Relaxed)
                && free < refill_at(concurrency))
        {
            // More is due than the senders could take: claim again once half of them are
            // free, in one transaction, rather than one small claim per finished send.
            return Ok(false);
        }
        let hold = senders.hold(now);
        let jobs = self
            .store
            .take_deliveries(now, senders.lease_until(now), free, &hold)
            .await?;
        let taken = jobs.len();
        let backlog = taken > 0 && taken == free;
        senders
            .backlog
            .store(backlog, std::sync::atomic::Ordering::Relaxed);
        let mut started = Vec::with_capacity(taken);
        for job in jobs {
            let Ok(permit) = senders.permits.clone().acquire_owned().await else {
                break;
            };
            self.handle.in_flight.add(&job.delivery.user_id);
            started.push((job, permit));
        }
        drop(claim);
        self.start_sending(started, now, results);
        Ok(backlog)
    }

    /// Starts sending what a processing commit claimed ([`NotifierHandle::hand_over`]).
    fn start_handed(self: &Arc<Self>, jobs: claims::Handed, results: &mpsc::Sender<Finished>) {
        self.start_sending(jobs, self.clock.now(), results);
    }

    /// Sends each claimed delivery on its own task, holding its sender's permit; the
    /// deliveries are already counted in flight for their users.
    fn start_sending(
        self: &Arc<Self>,
        jobs: Vec<(DeliveryJob, OwnedSemaphorePermit)>,
        now: jiff::Timestamp,
        results: &mpsc::Sender<Finished>,
    ) {
        if jobs.is_empty() {
            self.empty_rounds
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        self.empty_rounds
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let senders = &self.handle.senders;
        senders.count_new_messages(jobs.iter().map(|(job, _)| job), now);
        if let Some(bus) = self.bus.as_ref().filter(|bus| bus.wanted()) {
            for (job, _) in &jobs {
                publish_delivery(
                    bus,
                    &job.delivery.id,
                    &job.delivery.user_id,
                    DeliveryStatus::Sending,
                );
            }
        }
        let concurrency = self.settings.concurrency.max(1);
        for (job, permit) in jobs {
            let notifier = self.clone();
            let results = results.clone();
            tokio::spawn(async move {
                let user_id = job.delivery.user_id.clone();
                let finished = notifier.send_until_cut_off(job).await;
                notifier.handle.in_flight.remove(&user_id);
                drop(permit);
                // With more due than was claimed, the next claim need not wait for this
                // outcome's commit (the claimed rows are leased, so none is taken twice).
                let senders = &notifier.handle.senders;
                if senders.backlog.load(std::sync::atomic::Ordering::Relaxed)
                    && senders.permits.available_permits() >= refill_at(concurrency)
                {
                    notifier.handle.wake.notify_one();
                }
                let _ = results.send((user_id, finished)).await;
            });
        }
    }

    /// Whether to plan due repeats in this round: at most once per [`REPEATS_EVERY`] of
    /// the clock. Repeats come minutes apart, and planning them is a transaction of its
    /// own (three round trips on PostgreSQL) that every claim round paid before.
    fn repeats_due(&self, now: jiff::Timestamp) -> bool {
        let Ok(mut planned) = self.repeats_planned.lock() else {
            return true;
        };
        if planned.is_some_and(|at| now >= at && now < at + REPEATS_EVERY) {
            return false;
        }
        *planned = Some(now);
        true
    }

    /// Sends `job` unless the shutdown grace runs out first; the delivery is then given
    /// back, due again at once, for the next start. (The receiver may have seen it: the
    /// resend carries the same idempotency key.)
    async fn send_until_cut_off(&self, job: DeliveryJob) -> FinishedDelivery {
        let mut cut_off = self.cut_off.subscribe();
        let id = job.delivery.id.clone();
        let mut job = job;
        let items = match self.items(&mut job) {
            Ok(items) => items,
            Err(error) => return self.unreadable(&job, error),
        };
        let rendered = self.render(&job, &items);
        let subject = rendered.subject.clone();
        tokio::select! {
            finished = self.send(job, &items, rendered) => finished,
            _ = cut_off.wait_for(|cut| *cut) => {
                let now = self.clock.now();
                metrics::counter!(telemetry::DELIVERIES_GIVEN_BACK).increment(1);
                FinishedDelivery {
                    id,
                    outcome: DeliveryOutcome::Retry {
                        error: "interrupted by shutdown; sent again after the restart".to_string(),
                        next_attempt: now,
                    },
                    subject,
                    at: now,
                }
            }
        }
    }

    /// The alerts of a delivery with their transitions and, for those still firing, the
    /// action links of the person it goes to. The alerts move out of `job` (a storm's
    /// delivery carries thousands; they were copied) and are parsed here, on the send's
    /// own task rather than on the store's writer. An alert whose stored copy does not
    /// read is an error that names it.
    fn items(&self, job: &mut DeliveryJob) -> Result<Vec<RenderItem>, String> {
        let now = self.clock.now();
        let taken = std::mem::take(&mut job.items);
        taken
            .into_iter()
            .map(|item| {
                let transition = item.transition.parse().unwrap_or(Transition::Fired);
                let alert = item.alert()?;
                Ok(RenderItem {
                    actions: self.action_links_for(job, &alert, transition, now),
                    alert,
                    transition,
                })
            })
            .collect()
    }

    /// The outcome of a delivery that cannot be rendered because an alert it carries does
    /// not read: failed for good (a retry reads the same bytes), with the reason on the
    /// delivery, while every other delivery goes on.
    fn unreadable(&self, job: &DeliveryJob, error: String) -> FinishedDelivery {
        tracing::warn!(delivery = %job.delivery.id, %error, "delivery cannot be rendered");
        metrics::counter!(telemetry::DELIVERIES, "channel" => job.contact_point.kind.clone(), "result" => "failed")
            .increment(1);
        FinishedDelivery {
            id: job.delivery.id.clone(),
            outcome: DeliveryOutcome::Failed { error },
            subject: "(not rendered)".to_string(),
            at: self.clock.now(),
        }
    }

    fn action_links_for(
        &self,
        job: &DeliveryJob,
        alert: &tellify_engine::alerts::Alert,
        transition: Transition,
        now: jiff::Timestamp,
    ) -> Option<ActionLinks> {
        use crate::services::links::LinkAction;
        let (Some(base), Some(signer)) = (self.link.as_deref(), self.action_links.as_ref()) else {
            return None;
        };
        let firing = alert.state == tellify_engine::alerts::AlertState::Firing;
        if !firing || matches!(transition, Transition::Resolved | Transition::Test) {
            return None;
        }
        let user_id = &job.delivery.user_id;
        let url = |action| {
            let token = signer.mint(&alert.id, user_id, action, now);
            format!("{}/act/{token}", base.trim_end_matches('/'))
        };
        Some(ActionLinks {
            ack: url(LinkAction::Ack),
            shelve: url(LinkAction::Shelve),
        })
    }

    /// Renders a delivery for the person it goes to: every time in it in their zone, and
    /// only the parts its channel carries.
    fn render(&self, job: &DeliveryJob, items: &[RenderItem]) -> Rendered {
        let reader = Reader::new(
            self.handle.planner.zone_of(&job.delivery.user_id),
            self.clock.now(),
        );
        let parts = match job.contact_point.kind.parse::<ContactKind>() {
            Ok(kind) => parts_for(kind),
            Err(_) => Parts::ALL,
        };
        render_parts(&self.registry, items, self.link.as_deref(), &reader, parts)
    }

    /// Sends one rendered delivery, and says how it went.
    async fn send(
        &self,
        job: DeliveryJob,
        items: &[RenderItem],
        rendered: Rendered,
    ) -> FinishedDelivery {
        let kind: Option<ContactKind> = job.contact_point.kind.parse().ok();
        let outcome = match kind {
            None => DeliveryOutcome::Failed {
                error: format!("unknown contact point kind `{}`", job.contact_point.kind),
            },
            Some(kind) => 'sent: {
                let message = match payload::outgoing(&job, items, &rendered, self.link.as_deref())
                {
                    Ok(message) => message,
                    Err(error) => {
                        break 'sent DeliveryOutcome::Failed {
                            error: format!("cannot encode the webhook payload: {error}"),
                        }
                    }
                };
                let target = ContactTarget {
                    kind,
                    name: job.contact_point.name.clone(),
                    address: job.contact_point.address.clone(),
                    secret: job.contact_point.secret.clone(),
                };
                let started = std::time::Instant::now();
                let result = self.channels.get(kind).send(&target, &message).await;
                metrics::histogram!(telemetry::DELIVERY_SECONDS, "channel" => kind.as_str())
                    .record(started.elapsed().as_secs_f64());
                self.outcome(&job, kind, result)
            }
        };
        FinishedDelivery {
            id: job.delivery.id.clone(),
            outcome,
            subject: rendered.subject,
            at: self.clock.now(),
        }
    }

    fn outcome(
        &self,
        job: &DeliveryJob,
        kind: ContactKind,
        result: Result<crate::channels::Receipt, ChannelError>,
    ) -> DeliveryOutcome {
        let attempt = job.delivery.attempts + 1;
        match result {
            Ok(receipt) => {
                metrics::counter!(telemetry::DELIVERIES, "channel" => kind.as_str(), "result" => "sent")
                    .increment(1);
                DeliveryOutcome::Sent {
                    receipt: receipt.detail,
                }
            }
            Err(error) if error.is_retryable() && attempt < self.settings.max_attempts => {
                let wait = self.settings.backoff(attempt, rand::rng().random::<f64>());
                let now = self.clock.now();
                tracing::warn!(delivery = %job.delivery.id, attempt, channel = kind.as_str(), %error, "delivery failed; will retry");
                metrics::counter!(telemetry::DELIVERIES, "channel" => kind.as_str(), "result" => "retry")
                    .increment(1);
                DeliveryOutcome::Retry {
                    error: error.to_string(),
                    next_attempt: now.checked_add(wait).unwrap_or(now),
                }
            }
            Err(error) => {
                tracing::warn!(delivery = %job.delivery.id, attempt, channel = kind.as_str(), %error, "delivery failed for good");
                metrics::counter!(telemetry::DELIVERIES, "channel" => kind.as_str(), "result" => "failed")
                    .increment(1);
                DeliveryOutcome::Failed {
                    error: error.to_string(),
                }
            }
        }
    }
}

/// The parts of a rendered message a channel sends ([`OutgoingMessage`]): webhooks and
/// engines carry the subject, the text and the JSON payload, so their HTML, chat and SMS
/// forms are not written.
fn parts_for(kind: ContactKind) -> Parts {
    match kind {
        ContactKind::Email => Parts {
            html: true,
            ..Parts::TEXT
        },
        ContactKind::Sms => Parts {
            sms: true,
            ..Parts::TEXT
        },
        ContactKind::Chat => Parts {
            chat: true,
            ..Parts::TEXT
        },
        ContactKind::Webhook | ContactKind::Engine => Parts::TEXT,
    }
}

/// How long to wait before looking again when something is due that the last
/// `empty_rounds` claims did not get: 20 ms, doubling with each claim that took nothing, up
/// to a second. What is due now and not claimed here is being sent by another node (its
/// rows were locked or leased): on several nodes, the ones that are not processing found
/// the processing node's work due at every look and polled for it every 20 ms, for
/// nothing. A node that falls behind leaves work due that the others then take, which
/// brings their wait back to 20 ms.
fn due_elsewhere_wait(empty_rounds: u32) -> Duration {
    Duration::from_millis(20u64 << empty_rounds.min(6)).min(Duration::from_secs(1))
}

/// How many free senders a claim waits for while a backlog is due: half of them, so a
/// fan-out of thousands of deliveries is claimed in a few dozen transactions, and the
/// other half keeps sending meanwhile.
fn refill_at(concurrency: usize) -> usize {
    concurrency.div_ceil(2)
}

/// Commits attempt outcomes as they arrive, several per transaction. A failed commit is
/// retried with the same outcomes; if the process dies first, the leases run out and the
/// deliveries are sent again (the documented duplicate window).
async fn finish_loop(
    store: Arc<dyn Store>,
    mut finished: mpsc::Receiver<Finished>,
    wake: Arc<Notify>,
    bus: Option<Bus>,
) {
    let mut batch: Vec<Finished> = Vec::new();
    loop {
        if batch.is_empty() && finished.recv_many(&mut batch, 512).await == 0 {
            return;
        }
        while batch.len() < 512 {
            match finished.try_recv() {
                Ok(result) => batch.push(result),
                Err(_) => break,
            }
        }
        let outcomes = batch.iter().map(|(_, outcome)| outcome.clone()).collect();
        // Only a retry makes something due that the notifier does not know of (it plans
        // its next look from what is due when it goes idle); a sent or failed delivery
        // frees a sender, and a sender that frees itself while more is due wakes the
        // notifier already. Waking it for every outcome cost an empty claim round each.
        let retries = batch
            .iter()
            .any(|(_, finished)| matches!(finished.outcome, DeliveryOutcome::Retry { .. }));
        match store.finish_deliveries(outcomes).await {
            Ok(()) => {
                if let Some(bus) = bus.as_ref().filter(|bus| bus.wanted()) {
                    for (user_id, finished) in &batch {
                        let status = match finished.outcome {
                            DeliveryOutcome::Sent { .. } => DeliveryStatus::Sent,
                            DeliveryOutcome::Retry { .. } => DeliveryStatus::Pending,
                            DeliveryOutcome::Failed { .. } => DeliveryStatus::Failed,
                        };
                        publish_delivery(bus, &finished.id, user_id, status);
                    }
                }
                batch.clear();
                if retries {
                    wake.notify_one();
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot record delivery outcomes; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// An attempt's outcome with the user it belongs to (for the live pages).
type Finished = (String, FinishedDelivery);

fn publish_delivery(bus: &Bus, id: &str, user_id: &str, status: DeliveryStatus) {
    bus.tell_others(tellify_store::Announcement::Delivery {
        id: id.to_string(),
        user_id: user_id.to_string(),
        status,
    });
    bus.publish(StreamItem::Delivery(Arc::new(DeliveryNotice {
        id: id.to_string(),
        user_id: user_id.to_string(),
        status,
    })));
}

/// Sends a test message to a contact point at once, outside the outbox, and returns the
/// provider's answer.
pub async fn send_test(
    channels: &Channels,
    point: &tellify_store::ContactPoint,
    link: Option<&str>,
) -> Result<String, ChannelError> {
    let kind: ContactKind = point
        .kind
        .parse()
        .map_err(|error: String| ChannelError::Permanent(error))?;
    let rendered = tellify_engine::render::render_test(link);
    let delivery_id = format!("test-{}", tellify_model::new_id());
    let message = payload::test_message(&delivery_id, &point.name, &rendered).map_err(|error| {
        ChannelError::Permanent(format!("cannot encode the webhook payload: {error}"))
    })?;
    let target = ContactTarget {
        kind,
        name: point.name.clone(),
        address: point.address.clone(),
        secret: point.secret.clone(),
    };
    let receipt = channels.get(kind).send(&target, &message).await?;
    Ok(receipt.detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notifier_that_finds_nothing_to_take_looks_less_often_up_to_a_second() {
        let waits: Vec<u64> = (0..9)
            .map(|empty| super::due_elsewhere_wait(empty).as_millis() as u64)
            .collect();
        assert_eq!(waits, [20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(super::due_elsewhere_wait(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_the_cap() {
        let settings = NotifySettings {
            backoff_initial_ms: 1000,
            backoff_max_secs: 60,
            ..NotifySettings::default()
        };
        assert_eq!(settings.backoff(1, 1.0), SignedDuration::from_secs(1));
        assert_eq!(settings.backoff(2, 1.0), SignedDuration::from_secs(2));
        assert_eq!(settings.backoff(4, 1.0), SignedDuration::from_secs(8));
        assert_eq!(settings.backoff(4, 0.0), SignedDuration::from_secs(4));
        assert_eq!(settings.backoff(20, 1.0), SignedDuration::from_secs(60));
        let jittered = settings.backoff(3, 0.5);
        assert!(jittered > SignedDuration::from_secs(2) && jittered < SignedDuration::from_secs(4));
    }
}
