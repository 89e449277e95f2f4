//! What a claim for the notifier's senders needs, shared by the notifier's own rounds and
//! by the worker's processing commits.
//!
//! A notification due at once used to wait for three things after the processing commit
//! that wrote it: the notifier's wake-up, the rate limits read, and a claim transaction of
//! its own on the store's writer. On a store that can claim inside the processing commit
//! ([`tellify_store::Store::claims_in_processing_commit`], SQLite), the worker asks for a
//! [`ClaimOffer`] before it commits: the free senders (their permits reserved), the rate
//! holds and the lease. The commit claims what is then due in the same transaction, and
//! [`NotifierHandle::hand_over`] gives the claimed deliveries, each with its sender's
//! permit, to the notifier, which starts sending them. The claim is the notifier's usual
//! one (`take_deliveries`: ganging, rate holds, lease), so nothing about what is sent, or
//! when, changes; only the round trip is saved. While a backlog is due the offer is
//! refused: the notifier then claims in large rounds of its own, as before.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use tellify_store::{ClaimRequest, DeliveryHold, DeliveryJob, DeliveryOutcome, FinishedDelivery};
use tokio::sync::{mpsc, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use super::{NotifierHandle, NotifySettings};
use crate::telemetry;

/// Deliveries a processing commit claimed, each with the permit of the sender it takes.
pub(super) type Handed = Vec<(DeliveryJob, OwnedSemaphorePermit)>;

/// The notifier's senders and its rate book, shared through [`NotifierHandle`].
pub(super) struct Senders {
    /// One permit per sender (`notify.concurrency`).
    pub(super) permits: Arc<Semaphore>,
    rates: Mutex<RateBook>,
    rate_window: SignedDuration,
    /// How long a claimed delivery stays leased to this node.
    pub(super) lease: SignedDuration,
    /// Whether the last claim held anyone back (see `Notifier::idle_wait`).
    pub(super) holding: AtomicBool,
    /// Whether the last claim took as many deliveries as there were free senders, so more
    /// may be due (see `refill_at`).
    pub(super) backlog: AtomicBool,
    handed: mpsc::UnboundedSender<Handed>,
}

impl Senders {
    pub(super) fn new(settings: &NotifySettings) -> (Senders, mpsc::UnboundedReceiver<Handed>) {
        let (handed, receiver) = mpsc::unbounded_channel();
        let senders = Senders {
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            rates: Mutex::new(RateBook::new(
                settings.max_per_user,
                settings.max_per_contact_point,
            )),
            rate_window: settings
                .rate_window()
                .unwrap_or(SignedDuration::from_mins(10)),
            lease: SignedDuration::from_secs(settings.lease_secs.max(1) as i64),
            holding: AtomicBool::new(false),
            backlog: AtomicBool::new(false),
            handed,
        };
        (senders, receiver)
    }

    /// The users and contact points at their rate limit at `now`.
    pub(super) fn hold(&self, now: Timestamp) -> DeliveryHold {
        let since = tellify_model::earlier(now, self.rate_window);
        let hold = match self.rates.lock() {
            Ok(mut rates) => rates.hold(since),
            Err(_) => DeliveryHold::default(),
        };
        let holding = !(hold.users.is_empty() && hold.contact_points.is_empty());
        self.holding.store(holding, Ordering::Relaxed);
        metrics::gauge!(telemetry::DELIVERY_HOLDS)
            .set((hold.users.len() + hold.contact_points.len()) as f64);
        hold
    }

    /// Counts each new message (a first attempt) against its user's and contact point's
    /// rate; retries of a message already counted are not new messages.
    pub(super) fn count_new_messages<'a>(
        &self,
        jobs: impl IntoIterator<Item = &'a DeliveryJob>,
        now: Timestamp,
    ) {
        let Ok(mut rates) = self.rates.lock() else {
            return;
        };
        for job in jobs {
            if job.delivery.attempts == 0 {
                rates.record(&job.delivery.user_id, &job.delivery.contact_point_id, now);
            }
        }
    }

    pub(super) fn lease_until(&self, now: Timestamp) -> Timestamp {
        now.checked_add(self.lease).unwrap_or(now)
    }
}

/// A claim a processing commit may make for the notifier: its free senders are reserved
/// and no other claim runs until it is handed over or dropped (dropping it, after a failed
/// commit say, gives everything back).
pub struct ClaimOffer {
    request: ClaimRequest,
    permits: OwnedSemaphorePermit,
    _claiming: OwnedMutexGuard<()>,
}

impl ClaimOffer {
    /// What the commit should claim ([`tellify_store::ProcessingCommit::claim`]).
    pub fn request(&self) -> &ClaimRequest {
        &self.request
    }
}

impl NotifierHandle {
    /// A claim for the next processing commit, when the store claims inside its processing
    /// commits, no backlog is due (the notifier claims a backlog in large rounds itself)
    /// and some sender is free. Waits while the notifier is claiming.
    pub async fn claim_offer(&self, now: Timestamp) -> Option<ClaimOffer> {
        let senders = &self.senders;
        if !self.store.claims_in_processing_commit()
            || senders.backlog.load(Ordering::Relaxed)
            || senders.permits.available_permits() == 0
        {
            return None;
        }
        let claiming = self.take_lock.clone().lock_owned().await;
        let free = senders.permits.available_permits();
        let permits = senders
            .permits
            .clone()
            .try_acquire_many_owned(u32::try_from(free).ok()?)
            .ok()?;
        let request = ClaimRequest {
            now,
            lease_until: senders.lease_until(now),
            limit: free,
            hold: senders.hold(now),
        };
        Some(ClaimOffer {
            request,
            permits,
            _claiming: claiming,
        })
    }

    /// Gives the deliveries a commit claimed for `offer` to the notifier, which sends them
    /// at once; the senders they do not need are free again. When they took every sender
    /// offered, more may be due and the notifier looks.
    pub fn hand_over(&self, offer: ClaimOffer, jobs: Vec<DeliveryJob>) {
        let ClaimOffer {
            request,
            mut permits,
            _claiming,
        } = offer;
        let more = jobs.len() >= request.limit;
        let mut handed: Handed = Vec::with_capacity(jobs.len());
        for job in jobs {
            // A commit claims at most `limit`, one permit each; a job beyond that (which
            // would be a store's bug) stays leased and is due again when its lease ends.
            let Some(permit) = permits.split(1) else {
                tracing::warn!(delivery = %job.delivery.id, "a commit claimed more deliveries than it was offered");
                continue;
            };
            // Registered before the claim lets go of the lock (see `quiesce_user`).
            self.in_flight.add(&job.delivery.user_id);
            handed.push((job, permit));
        }
        if handed.is_empty() {
            // Nothing to send: no message, so the notifier's own looks are not disturbed.
        } else if let Err(refused) = self.senders.handed.send(handed) {
            // The notifier has stopped (a shutdown): give the deliveries back, due again
            // at once, rather than leave them leased until the lease runs out.
            let now = request.now;
            let given_back: Vec<FinishedDelivery> = refused
                .0
                .into_iter()
                .map(|(job, _)| {
                    self.in_flight.remove(&job.delivery.user_id);
                    FinishedDelivery {
                        id: job.delivery.id,
                        outcome: DeliveryOutcome::Retry {
                            error: "not sent: the notifier had stopped".to_string(),
                            next_attempt: now,
                        },
                        subject: job.delivery.subject.unwrap_or_default(),
                        at: now,
                    }
                })
                .collect();
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(error) = store.finish_deliveries(given_back).await {
                    tracing::warn!(%error, "cannot give back deliveries claimed at shutdown; they are due again when their lease ends");
                }
            });
        }
        drop(permits);
        drop(_claiming);
        if more {
            self.wake();
        }
    }
}

/// When recent new messages went out, per user and per contact point, for the rate limits.
/// In memory: a restart forgets it, which at worst lets one window's worth through again.
///
/// Who is at a limit is kept as messages are recorded and forgotten, so a claim's
/// question costs the messages that left the window since the last one, not a walk over
/// every user and contact point that sent anything in the window (as it did).
pub(super) struct RateBook {
    /// Every message still in the window, in the order sent (the notifier's clock only
    /// moves forward; one that stepped back would only make a message count a little
    /// longer).
    sent: VecDeque<(Timestamp, String, String)>,
    users: Counts,
    contact_points: Counts,
}

/// Messages in the window per user (or contact point), and those at the limit.
struct Counts {
    /// 0: no limit.
    max: u32,
    counts: HashMap<String, u32>,
    full: BTreeSet<String>,
}

impl Counts {
    fn new(max: u32) -> Counts {
        Counts {
            max,
            counts: HashMap::new(),
            full: BTreeSet::new(),
        }
    }

    fn add(&mut self, id: &str) {
        let count = match self.counts.get_mut(id) {
            Some(count) => count,
            None => self.counts.entry(id.to_string()).or_default(),
        };
        *count += 1;
        if self.max > 0 && *count >= self.max && !self.full.contains(id) {
            self.full.insert(id.to_string());
        }
    }

    fn remove(&mut self, id: &str) {
        let Some(count) = self.counts.get_mut(id) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count < self.max {
            self.full.remove(id);
        }
        if *count == 0 {
            self.counts.remove(id);
        }
    }
}

impl RateBook {
    pub(super) fn new(max_per_user: u32, max_per_contact_point: u32) -> RateBook {
        RateBook {
            sent: VecDeque::new(),
            users: Counts::new(max_per_user),
            contact_points: Counts::new(max_per_contact_point),
        }
    }

    pub(super) fn record(&mut self, user_id: &str, contact_point_id: &str, at: Timestamp) {
        self.users.add(user_id);
        self.contact_points.add(contact_point_id);
        self.sent
            .push_back((at, user_id.to_string(), contact_point_id.to_string()));
    }

    /// Forgets what went out before `since` and names who is at their limit.
    pub(super) fn hold(&mut self, since: Timestamp) -> DeliveryHold {
        while self.sent.front().is_some_and(|(at, _, _)| *at < since) {
            if let Some((_, user_id, contact_point_id)) = self.sent.pop_front() {
                self.users.remove(&user_id);
                self.contact_points.remove(&contact_point_id);
            }
        }
        DeliveryHold {
            users: self.users.full.iter().cloned().collect(),
            contact_points: self.contact_points.full.iter().cloned().collect(),
        }
    }

    /// Messages still counted (for tests).
    #[cfg(test)]
    fn counted(&self) -> usize {
        self.sent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    #[test]
    fn a_user_or_contact_point_is_held_from_its_limit_until_its_messages_leave_the_window() {
        let mut book = RateBook::new(2, 3);
        book.record("ann", "ann-mail", at(0));
        assert_eq!(book.hold(at(0)), DeliveryHold::default());
        book.record("ann", "ann-hook", at(1));
        book.record("bob", "ann-hook", at(2));
        assert_eq!(book.hold(at(0)).users, ["ann"]);
        assert!(book.hold(at(0)).contact_points.is_empty());
        book.record("bob", "ann-hook", at(3));
        let hold = book.hold(at(0));
        assert_eq!(hold.users, ["ann", "bob"]);
        assert_eq!(hold.contact_points, ["ann-hook"]);
        // The window now starts after ann's first message: she has one left in it.
        let hold = book.hold(at(1));
        assert_eq!(hold.users, ["bob"]);
        assert_eq!(hold.contact_points, ["ann-hook"]);
        // After bob's first, the hook has two of three and bob one of two.
        assert_eq!(book.hold(at(3)), DeliveryHold::default());
        assert_eq!(book.counted(), 1);
        assert_eq!(book.hold(at(4)), DeliveryHold::default());
        assert_eq!(book.counted(), 0);
        assert!(book.users.counts.is_empty() && book.contact_points.counts.is_empty());
    }

    #[test]
    fn without_limits_nobody_is_held_and_old_messages_are_still_forgotten() {
        let mut book = RateBook::new(0, 0);
        for second in 0..100 {
            book.record("ann", "ann-hook", at(second));
        }
        assert_eq!(book.hold(at(0)), DeliveryHold::default());
        assert_eq!(book.hold(at(90)), DeliveryHold::default());
        assert_eq!(book.counted(), 10);
    }
}
