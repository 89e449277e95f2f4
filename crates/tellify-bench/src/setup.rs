//! Setup for the ingest modes: the match subscriptions `bench 0` .. `bench N-1`.

use std::time::Instant;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::target::{create_subscription, subscription_titles, Target};

/// Subscriptions created at once during setup.
pub(crate) const CREATE_CONCURRENCY: usize = 16;

pub(crate) struct SetupReport {
    pub(crate) wanted: usize,
    pub(crate) existing: usize,
    pub(crate) created: usize,
    pub(crate) failed: usize,
    pub(crate) first_error: Option<String>,
    pub(crate) seconds: f64,
}

impl SetupReport {
    pub(crate) fn summary_line(&self) -> String {
        let mut line = format!(
            "setup    subscriptions={} existing={} created={} failed={} in {:.1} s",
            self.wanted, self.existing, self.created, self.failed, self.seconds
        );
        if let Some(error) = &self.first_error {
            line.push_str(&format!(" (first error: {error})"));
        }
        line
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "wanted": self.wanted,
            "existing": self.existing,
            "created": self.created,
            "failed": self.failed,
            "first_error": self.first_error,
            "seconds": self.seconds,
        })
    }
}

/// Makes sure `bench 0` .. `bench N-1` exist, creating the missing ones concurrently.
pub(crate) async fn ensure_subscriptions(
    client: &reqwest::Client,
    target: &Target,
    wanted: usize,
) -> anyhow::Result<SetupReport> {
    let started = Instant::now();
    let titles = subscription_titles(client, target).await?;
    let missing: Vec<usize> = (0..wanted)
        .filter(|index| !titles.contains(&format!("bench {index}")))
        .collect();
    let existing = wanted - missing.len();
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(missing)
        .map(|index| {
            let body = json!({
                "kind": "match",
                "title": format!("bench {index}"),
                "params": {"filter": format!("block == \"b{index}\" && status == \"fail\"")},
            });
            create_subscription(client, target, body)
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    let mut report = SetupReport {
        wanted,
        existing,
        created: 0,
        failed: 0,
        first_error: None,
        seconds: 0.0,
    };
    for result in results {
        match result {
            Ok(()) => report.created += 1,
            Err(error) => {
                report.failed += 1;
                report
                    .first_error
                    .get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
