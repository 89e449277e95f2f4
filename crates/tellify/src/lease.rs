//! Jobs that must run on exactly one node of those sharing a store: the metric poller,
//! each syslog exporter, each NATS core-subject source. Run twice, they would poll twice,
//! send every syslog line twice or store every message twice.
//!
//! [`run_singleton`] takes the job's lease ([`Store::acquire_lease`], named after the job,
//! held by this node), starts the job while it holds it, and renews it every
//! [`LEASE_RENEW`]. When the lease is lost (another node took it after this one could not
//! renew it in time) the job is stopped; when the node stops, the job is stopped and the
//! lease given up, so another node takes over within [`LEASE_POLL`]. A node that dies
//! without a word is replaced once its lease runs out, within [`LEASE_TTL`] +
//! [`LEASE_POLL`]. A store only one server can open gives every lease at once, so there
//! the job simply runs.
//!
//! **Invariant:** a job never runs on this node while the store says another node holds
//! its lease, except for the moment between a renewal failing and the lease running out,
//! when this node cannot know; jobs therefore keep their own at-least-once story (the
//! exporters' saved positions), not a promise of exactly once.

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use crate::services::AppState;

/// How long a taken lease runs unless renewed: how long the other nodes wait before taking
/// over from a node that died.
pub const LEASE_TTL: Duration = Duration::from_secs(6);
/// How often the holder renews (well inside [`LEASE_TTL`]).
pub const LEASE_RENEW: Duration = Duration::from_secs(2);
/// How often a node without the lease asks for it.
pub const LEASE_POLL: Duration = Duration::from_secs(1);

/// Runs `job` on this node whenever it holds the lease `name`, until `shutdown`. `job` is
/// called for each stretch of holding the lease with a signal of its own that flips to
/// true when it must stop; it should return soon after.
pub async fn run_singleton<F, Fut>(
    services: AppState,
    name: String,
    mut shutdown: watch::Receiver<bool>,
    mut job: F,
) where
    F: FnMut(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let holder = services.node.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = services.clock.now();
        let until = now + LEASE_TTL;
        let held_until = match services
            .store
            .acquire_lease(&name, &holder, now, until)
            .await
        {
            Ok(Some(_)) => until,
            Ok(None) => {
                if !pause(&mut shutdown, LEASE_POLL).await {
                    return;
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, job = %name, "cannot ask for the lease of a job that runs on one node; retrying");
                if !pause(&mut shutdown, LEASE_POLL).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(job = %name, "this node now runs the job");
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(job(stopped));
        let ending = hold(
            &services,
            &name,
            &holder,
            held_until,
            &mut shutdown,
            running,
        )
        .await;
        let (running, ending) = ending;
        let _ = stop.send(true);
        if let Err(error) = running.await {
            tracing::error!(%error, job = %name, "a job that runs on one node failed");
        }
        match ending {
            Ending::Shutdown | Ending::JobEnded => {
                if let Err(error) = services.store.release_lease(&name, &holder).await {
                    tracing::warn!(%error, job = %name, "cannot give up a job's lease; another node takes over once it expires");
                }
                if *shutdown.borrow() {
                    return;
                }
                // A job ends on its own only when it failed; run it again after a pause.
                if !pause(&mut shutdown, LEASE_POLL).await {
                    return;
                }
            }
            Ending::Lost => {
                tracing::warn!(job = %name, "the lease of a job passed to another node; stopped it here");
            }
        }
    }
}

/// Why a stretch of holding the lease ended.
enum Ending {
    Shutdown,
    JobEnded,
    Lost,
}

/// Renews the lease while `running` runs, until shutdown, the job's end or the lease's
/// loss; gives the job's handle back (finished or not) with the reason.
async fn hold(
    services: &AppState,
    name: &str,
    holder: &str,
    mut held_until: Timestamp,
    shutdown: &mut watch::Receiver<bool>,
    mut running: tokio::task::JoinHandle<()>,
) -> (tokio::task::JoinHandle<()>, Ending) {
    let mut renew = tokio::time::interval(LEASE_RENEW);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    renew.tick().await;
    loop {
        tokio::select! {
            _ = &mut running => return (running, Ending::JobEnded),
            _ = shutdown.wait_for(|stop| *stop) => return (running, Ending::Shutdown),
            _ = renew.tick() => {}
        }
        let now = services.clock.now();
        let until = now + LEASE_TTL;
        match services.store.acquire_lease(name, holder, now, until).await {
            Ok(Some(_)) => held_until = until,
            Ok(None) => return (running, Ending::Lost),
            Err(error) => {
                // Without an answer this node cannot know; it stops once the lease it
                // had surely ran out, so that another node may run the job.
                if now >= held_until {
                    tracing::warn!(%error, job = %name, "cannot renew a job's lease before it ran out");
                    return (running, Ending::Lost);
                }
                tracing::warn!(%error, job = %name, "cannot renew a job's lease; trying again");
            }
        }
    }
}

/// Waits `delay` unless shutdown comes first; `false` means shutdown.
async fn pause(shutdown: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = shutdown.wait_for(|stop| *stop) => false,
    }
}
