//! After each run: how far behind the worker was when the load stopped, and how long it
//! took to catch up (`/healthz` lag 0), since an ingest rate the worker cannot keep up
//! with is not a rate the server sustains.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::target::{plain_client, Target};

/// How often `/healthz` is asked while waiting for the worker to catch up.
pub(crate) const DRAIN_POLL: Duration = Duration::from_millis(20);

/// How far behind the worker was when the load stopped, and how long it took to catch up.
pub(crate) struct DrainReport {
    pub(crate) lag_at_end: i64,
    /// The lag 1 s after the load stopped (0 if it drained sooner).
    pub(crate) lag_after_one_second: i64,
    /// Seconds until the lag was 0; `None` if it did not reach 0 within the timeout.
    pub(crate) drained_after: Option<f64>,
    pub(crate) events_in_log: i64,
}

impl DrainReport {
    pub(crate) fn summary(&self) -> String {
        let drained = match self.drained_after {
            Some(seconds) => format!("drained in {seconds:.2} s"),
            None => "NOT drained".to_string(),
        };
        format!(
            "lag at end={} after 1 s={} {drained}",
            self.lag_at_end, self.lag_after_one_second
        )
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "lag_at_end": self.lag_at_end,
            "lag_after_one_second": self.lag_after_one_second,
            "drained_after_seconds": self.drained_after,
            "events_in_log": self.events_in_log,
        })
    }
}

pub(crate) async fn wait_for_drain(
    target: &Target,
    timeout: Duration,
) -> anyhow::Result<DrainReport> {
    let client = plain_client()?;
    let started = Instant::now();
    let first = target.health(&client).await?;
    let mut report = DrainReport {
        lag_at_end: first.lag,
        lag_after_one_second: first.lag,
        drained_after: None,
        events_in_log: first.events,
    };
    let mut health = first;
    let mut one_second_recorded = false;
    loop {
        let elapsed = started.elapsed();
        if !one_second_recorded && elapsed >= Duration::from_secs(1) {
            report.lag_after_one_second = health.lag;
            one_second_recorded = true;
        }
        if health.lag == 0 {
            report.drained_after = Some(elapsed.as_secs_f64());
            if !one_second_recorded {
                report.lag_after_one_second = 0;
            }
            report.events_in_log = health.events;
            return Ok(report);
        }
        if elapsed >= timeout {
            report.events_in_log = health.events;
            return Ok(report);
        }
        tokio::time::sleep(DRAIN_POLL).await;
        health = target.health(&client).await?;
    }
}
