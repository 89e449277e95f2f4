//! How the server is doing, for admins: the figures the admin dashboard's health section
//! shows, read from the same sources as `/metrics` and the notifier — the store (events
//! not processed yet, the outbox, failed deliveries) and the process's Prometheus
//! counters (events ingested and delivery attempts since the start). Nothing here is
//! estimated or made up: a figure that has no source is absent.

use std::collections::BTreeMap;

use jiff::Timestamp;
use tellify_store::{DeliveryQuery, DeliveryStatus};

use super::error::{require, ServiceResult};
use super::Services;
use crate::auth::{Principal, Scope};
use crate::telemetry;

/// Most failed deliveries read to count them by channel.
pub const FAILED_DELIVERIES_READ: usize = 1000;

/// The health figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// When this server started.
    pub started: Option<Timestamp>,
    /// Events ingested since the start (`tellify_events_ingested_total`).
    pub ingested_since_start: u64,
    /// Their average rate per minute since the start.
    pub ingest_per_minute: f64,
    /// The newest stored event's position and the worker's: the difference is the
    /// processing lag, in events.
    pub last_stored: i64,
    pub last_processed: i64,
    pub lag_events: i64,
    /// Notifications and deliveries due and not sent, and since when the oldest is due.
    pub outbox_due: u64,
    pub outbox_oldest_due: Option<Timestamp>,
    /// By channel kind (`email`, `webhook`, ...).
    pub channels: Vec<ChannelHealth>,
    /// True when more failed deliveries are stored than were counted.
    pub failed_counted_partly: bool,
}

/// One channel's delivery outcomes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelHealth {
    pub channel: String,
    /// Stored deliveries that gave up (of the newest [`FAILED_DELIVERIES_READ`]).
    pub failed_deliveries: u64,
    /// Delivery attempts since the start, by result (`tellify_deliveries_total`).
    pub attempts_sent: u64,
    pub attempts_retried: u64,
    pub attempts_failed: u64,
}

/// The health figures (admins only).
pub async fn health(services: &Services, principal: &Principal) -> ServiceResult<Health> {
    require(principal, Scope::Admin)?;
    let now = services.clock.now();
    let counters = Counters::parse(&services.metrics.render());
    let ingested = counters.sum(telemetry::EVENTS_INGESTED, &[]);
    let minutes = (now.duration_since(services.started).as_secs_f64() / 60.0).max(1.0 / 60.0);
    let last_stored = services.store.last_seq().await?;
    let last_processed = services.worker.processed();
    let (outbox_due, outbox_oldest_due) = services.store.outbox_backlog(now).await?;
    let failed = services
        .store
        .list_deliveries(DeliveryQuery {
            user_id: None,
            status: Some(DeliveryStatus::Failed),
            alert_id: None,
            before_id: None,
            limit: FAILED_DELIVERIES_READ,
        })
        .await?;
    let mut channels: BTreeMap<String, ChannelHealth> = BTreeMap::new();
    for delivery in &failed {
        channels
            .entry(delivery.kind.clone())
            .or_default()
            .failed_deliveries += 1;
    }
    for (labels, value) in counters.series(telemetry::DELIVERIES) {
        let Some(channel) = labels.get("channel") else {
            continue;
        };
        let entry = channels.entry(channel.clone()).or_default();
        match labels.get("result").map(String::as_str) {
            Some("sent") => entry.attempts_sent += value,
            Some("retry") => entry.attempts_retried += value,
            Some("failed") => entry.attempts_failed += value,
            _ => {}
        }
    }
    Ok(Health {
        started: Some(services.started),
        ingested_since_start: ingested,
        ingest_per_minute: ingested as f64 / minutes,
        last_stored,
        last_processed,
        lag_events: (last_stored - last_processed).max(0),
        outbox_due,
        outbox_oldest_due,
        channels: channels
            .into_iter()
            .map(|(channel, mut health)| {
                health.channel = channel;
                health
            })
            .collect(),
        failed_counted_partly: failed.len() >= FAILED_DELIVERIES_READ,
    })
}

/// Counter values from the Prometheus text `/metrics` serves.
struct Counters {
    samples: Vec<(String, BTreeMap<String, String>, u64)>,
}

impl Counters {
    fn parse(text: &str) -> Counters {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            samples.push((name.to_string(), labels, value.max(0.0) as u64));
        }
        Counters { samples }
    }

    fn series(&self, name: &str) -> Vec<(BTreeMap<String, String>, u64)> {
        self.samples
            .iter()
            .filter(|(sample, _, _)| sample == name)
            .map(|(_, labels, value)| (labels.clone(), *value))
            .collect()
    }

    /// The sum over every series of `name` whose labels include `with`.
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> u64 {
        self.series(name)
            .into_iter()
            .filter(|(labels, _)| {
                with.iter()
                    .all(|(key, value)| labels.get(*key).map(String::as_str) == Some(*value))
            })
            .map(|(_, value)| value)
            .sum()
    }
}

/// `a="x",b="y"` (label values never hold `",` in tellify's metrics).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split("\",")
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), value.trim_matches('"').to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_the_prometheus_text() {
        let text = "# HELP tellify_deliveries_total x\n\
            # TYPE tellify_deliveries_total counter\n\
            tellify_deliveries_total{channel=\"email\",result=\"sent\"} 3\n\
            tellify_deliveries_total{channel=\"email\",result=\"failed\"} 2\n\
            tellify_deliveries_total{channel=\"webhook\",result=\"failed\"} 1\n\
            tellify_events_ingested_total 42\n";
        let counters = Counters::parse(text);
        assert_eq!(counters.sum("tellify_events_ingested_total", &[]), 42);
        assert_eq!(
            counters.sum("tellify_deliveries_total", &[("result", "failed")]),
            3
        );
        assert_eq!(
            counters.sum(
                "tellify_deliveries_total",
                &[("channel", "email"), ("result", "sent")]
            ),
            3
        );
        assert_eq!(counters.series("tellify_deliveries_total").len(), 3);
    }
}
