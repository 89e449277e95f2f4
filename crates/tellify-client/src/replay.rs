//! Replaying the spool: in order, one batch at a time, the offset moved only after the
//! server acknowledged a batch. After a crash at most that one batch goes again, and the
//! server answers its events as duplicates by idempotency key.

use std::time::Duration;

use rand::Rng;

use crate::client::{blocking, lock, Client};
use crate::error::Error;
use crate::spool::ReplayBatch;

/// First pause after a failed replay; doubles per failure up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What one replay delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Events the server acknowledged (duplicates included).
    pub replayed: u64,
    /// Of those, events it already had: sent before a crash, but not yet marked replayed.
    pub duplicates: u64,
    /// Events the server refused; kept in the spool's `rejected.ndjson`.
    pub rejected: u64,
}

/// The background replay started by [`Client::spawn_replay`]; stop it with
/// [`ReplayTask::shutdown`]. Dropping it without that leaves the task running until the
/// runtime ends.
pub struct ReplayTask {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl ReplayTask {
    /// Stops the task and waits for it; a batch in flight is abandoned unacknowledged
    /// (it goes again next time and the server drops the duplicates).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

impl Client {
    /// Sends everything in the spool, oldest first, and returns once it is empty. Stops
    /// at the first batch the server cannot take ([`Error::Unavailable`], or a refusal of
    /// the whole request such as 401), leaving it pending. Events the server refuses one
    /// by one (400, 413, 422) are moved to `rejected.ndjson` so they cannot block the rest.
    pub async fn replay(&self) -> Result<ReplayReport, Error> {
        self.replay_with(|_| {}).await
    }

    /// [`Client::replay`], calling `progress` after each acknowledged batch.
    pub async fn replay_with(
        &self,
        mut progress: impl FnMut(&ReplayReport),
    ) -> Result<ReplayReport, Error> {
        let Some(spool) = self.inner.spool.clone() else {
            return Ok(ReplayReport::default());
        };
        let _one_at_a_time = self.inner.replaying.lock().await;
        let mut report = ReplayReport::default();
        let (events, bytes) = (self.inner.replay_batch, self.inner.replay_batch_bytes);
        loop {
            let reader = spool.clone();
            let batch = blocking(move || {
                let spool = lock(&reader);
                spool.next_batch(spool.offset(), events, bytes)
            })
            .await?;
            let Some(batch) = batch else {
                return Ok(report);
            };
            match self.inner.transport.post(batch.body.clone()).await {
                Ok(receipt) => {
                    report.replayed += batch.events as u64;
                    report.duplicates += receipt.duplicates;
                    self.acknowledge(batch).await?;
                }
                Err(Error::Rejected(rejection)) if is_about_events(rejection.status) => {
                    self.replay_one_by_one(batch, &mut report).await?;
                }
                Err(error) => return Err(error),
            }
            progress(&report);
        }
    }

    /// Starts replaying in the background: whenever events are spooled, and with
    /// exponential backoff (or the server's `Retry-After`) while the server is away.
    /// Needs a tokio runtime and a spool.
    pub fn spawn_replay(&self) -> Result<ReplayTask, Error> {
        if self.inner.spool.is_none() {
            return Err(Error::Config(
                "a background replay needs a spool (ClientBuilder::spool)".to_string(),
            ));
        }
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let client = self.clone();
        let handle = tokio::spawn(async move {
            let mut backoff = INITIAL_BACKOFF;
            // Events may be left over from an earlier run: look once before waiting.
            let mut wait_for_wake = false;
            loop {
                if wait_for_wake {
                    tokio::select! {
                        () = client.inner.wake.notified() => {}
                        _ = stopped.changed() => return,
                    }
                }
                let outcome = tokio::select! {
                    outcome = client.replay() => outcome,
                    _ = stopped.changed() => return,
                };
                let delay = match outcome {
                    Ok(report) => {
                        if report.replayed > 0 {
                            tracing::info!(
                                replayed = report.replayed,
                                duplicates = report.duplicates,
                                rejected = report.rejected,
                                "spool replayed"
                            );
                        }
                        backoff = INITIAL_BACKOFF;
                        wait_for_wake = true;
                        continue;
                    }
                    Err(Error::Unavailable {
                        reason,
                        retry_after,
                    }) => {
                        let delay = retry_after.unwrap_or(backoff);
                        tracing::debug!(reason = %reason, retry_in_ms = delay.as_millis() as u64, "spool replay waits for the server");
                        delay
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "spool replay failed");
                        backoff
                    }
                };
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait_for_wake = false;
                tokio::select! {
                    () = tokio::time::sleep(with_jitter(delay)) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        Ok(ReplayTask { stop, handle })
    }

    async fn acknowledge(&self, batch: ReplayBatch) -> Result<(), Error> {
        let Some(spool) = self.inner.spool.clone() else {
            return Ok(());
        };
        blocking(move || lock(&spool).acknowledge(&batch)).await
    }

    /// The server refused a batch for its content: send its events one at a time, so
    /// only the ones it refuses are set aside and the order of the rest is kept.
    async fn replay_one_by_one(
        &self,
        batch: ReplayBatch,
        report: &mut ReplayReport,
    ) -> Result<(), Error> {
        let mut end = batch.end - batch.body.len() as u64;
        for line in batch.body.split_inclusive(|byte| *byte == b'\n') {
            end += line.len() as u64;
            let single = ReplayBatch {
                body: line.to_vec(),
                events: 1,
                segment: batch.segment,
                end,
            };
            match self.inner.transport.post(single.body.clone()).await {
                Ok(receipt) => {
                    report.replayed += 1;
                    report.duplicates += receipt.duplicates;
                }
                Err(Error::Rejected(rejection)) if is_about_events(rejection.status) => {
                    tracing::warn!(error = %rejection, "the server refused a spooled event; kept in rejected.ndjson");
                    report.rejected += 1;
                    if let Some(spool) = self.inner.spool.clone() {
                        let record = single.body.clone();
                        let reason = rejection.to_string();
                        blocking(move || lock(&spool).reject(&record, &reason)).await?;
                    }
                }
                Err(error) => return Err(error),
            }
            self.acknowledge(single).await?;
        }
        Ok(())
    }
}

/// Refusals about what was sent (rather than who sent it or where): bad request, body
/// too large, unsupported media type, invalid events.
fn is_about_events(status: u16) -> bool {
    matches!(status, 400 | 413 | 415 | 422)
}

/// Up to a quarter more, so producers that lost the same server do not return in step.
fn with_jitter(delay: Duration) -> Duration {
    let quarter = delay.as_millis() as u64 / 4;
    let extra = rand::rng().random_range(0..=quarter);
    delay + Duration::from_millis(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        for _ in 0..100 {
            let delay = with_jitter(Duration::from_millis(1000));
            assert!(delay >= Duration::from_millis(1000) && delay <= Duration::from_millis(1250));
        }
    }

    #[test]
    fn refusals_about_content_are_set_aside_but_auth_failures_stop_the_replay() {
        assert!(is_about_events(422));
        assert!(is_about_events(413));
        assert!(!is_about_events(401));
        assert!(!is_about_events(403));
    }
}
