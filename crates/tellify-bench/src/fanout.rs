//! `fanout`: one event that the fan-out subscriptions of the first N bench users all match,
//! so it opens N alerts and N deliveries to N different webhook URLs (`/hook/nb<i>` on the
//! sink), measured from the event's 202 to each webhook's arrival.
//!
//! Every size of `--fanout-sizes` runs `--fanout-rounds` times, each round with a new `n`
//! (so a new alert per user). A round checks that every one of the N users got exactly one
//! webhook carrying that `n`, and that nobody beyond the N got one. Rounds are
//! `--fanout-gap` seconds apart (after the worker drained), so the previous round's
//! outcome commits are done; each round's line goes to stderr as it ends.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use crate::cpu::{CpuReport, CpuSample};
use crate::drain::wait_for_drain;
use crate::notify::{bench_user, fanout_field, wait_for_webhooks};
use crate::report::{milliseconds, Percentiles};
use crate::sink::Sink;
use crate::target::{truncate, Target};
use crate::{run_prefix, Args, Mode};

/// How long a round keeps listening after the last expected webhook, so a duplicate sent
/// right behind it is still counted.
const SETTLE: Duration = Duration::from_millis(500);

/// What one round (one event to `size` users) measured.
pub(crate) struct FanoutRound {
    pub(crate) size: usize,
    pub(crate) round: usize,
    /// Milliseconds from sending the event to its 202.
    pub(crate) accepted_ms: f64,
    /// Milliseconds from the 202 to each user's webhook (the first one a user got).
    pub(crate) arrival_ms: Percentiles,
    pub(crate) first_ms: Option<f64>,
    /// Users among the `size` that got the webhook.
    pub(crate) reached: usize,
    /// Webhooks beyond the first per user, or with a delivery id seen before.
    pub(crate) duplicates: u64,
    /// Webhooks of this round to users beyond `size`, or carrying an alert of another run.
    pub(crate) strays: u64,
    pub(crate) webhooks: u64,
    pub(crate) unreadable: u64,
    pub(crate) cpu: Option<CpuReport>,
}

impl FanoutRound {
    pub(crate) fn exactly_once(&self) -> bool {
        self.reached == self.size && self.duplicates == 0 && self.strays == 0
    }

    pub(crate) fn summary_line(&self) -> String {
        let mut line = format!(
            "fanout   users={} round {}: 202 after {} ms | 202→webhook first={} p50={} p90={} p99={} last={} ms | reached={}/{} webhooks={} duplicates={} strays={} {}",
            self.size,
            self.round,
            milliseconds(Some(self.accepted_ms)),
            milliseconds(self.first_ms),
            milliseconds(self.arrival_ms.p50),
            milliseconds(self.arrival_ms.p90),
            milliseconds(self.arrival_ms.p99),
            milliseconds(self.arrival_ms.max),
            self.reached,
            self.size,
            self.webhooks,
            self.duplicates,
            self.strays,
            if self.exactly_once() {
                "exactly once"
            } else {
                "NOT EXACTLY ONCE"
            },
        );
        if self.unreadable > 0 {
            line.push_str(&format!(" unreadable={}", self.unreadable));
        }
        if let Some(cpu) = &self.cpu {
            line.push_str(&format!(" | {}", cpu.summary()));
        }
        line
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "users": self.size,
            "round": self.round,
            "accepted_ms": self.accepted_ms,
            "arrival_ms": self.arrival_ms.to_json(),
            "first_ms": self.first_ms,
            "reached": self.reached,
            "webhooks": self.webhooks,
            "duplicates": self.duplicates,
            "strays": self.strays,
            "unreadable": self.unreadable,
            "exactly_once": self.exactly_once(),
            "cpu": self.cpu.as_ref().map(CpuReport::to_json),
        })
    }
}

/// Every round of a `fanout` run.
pub(crate) struct FanoutReport {
    pub(crate) rounds: Vec<FanoutRound>,
}

impl FanoutReport {
    /// Per size, the median of the rounds' last arrivals (each round's own line went to
    /// stderr as it ended).
    pub(crate) fn summary_line(&self) -> String {
        let mut lines = Vec::new();
        let mut sizes: Vec<usize> = self.rounds.iter().map(|round| round.size).collect();
        sizes.dedup();
        for size in sizes {
            let rounds: Vec<&FanoutRound> = self
                .rounds
                .iter()
                .filter(|round| round.size == size)
                .collect();
            let last = Percentiles::of(
                rounds
                    .iter()
                    .filter_map(|round| round.arrival_ms.max)
                    .collect(),
            );
            let all_once = rounds.iter().all(|round| round.exactly_once());
            lines.push(format!(
                "fanout   users={size}: 202→last webhook median={} ms over {} rounds (max {} ms), {}",
                milliseconds(last.p50),
                rounds.len(),
                milliseconds(last.max),
                if all_once {
                    "every delivery exactly once"
                } else {
                    "NOT EXACTLY ONCE"
                },
            ));
        }
        lines.join("\n")
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "mode": Mode::Fanout.name(),
            "rounds": self.rounds.iter().map(FanoutRound::to_json).collect::<Vec<_>>(),
        })
    }
}

/// The event that reaches the first `size` users: it carries `fan_<s>: "on"` for every
/// size `s` up to `size` (see [`fanout_field`]) and a new `n`, so each opens a new alert.
fn fanout_event(size: usize, sizes: &[usize], n: &str) -> String {
    let mut fields = serde_json::Map::new();
    for field in sizes
        .iter()
        .filter(|s| **s <= size)
        .filter_map(|s| fanout_field(s - 1, sizes))
    {
        fields.insert(field, json!("on"));
    }
    fields.insert("n".to_string(), json!(n));
    json!({
        "type": "bench_fanout",
        "message": format!("bench fan-out {n}"),
        "fields": fields,
    })
    .to_string()
}

/// `fanout`: for each size, `--fanout-rounds` single events, each waited for until every
/// webhook arrived (or the sink went quiet), then the worker drained.
pub(crate) async fn run_fanout(
    client: &reqwest::Client,
    target: &Target,
    sink: &Sink,
    args: &Args,
) -> anyhow::Result<FanoutReport> {
    let sizes = fanout_sizes(args);
    let mut report = FanoutReport { rounds: Vec::new() };
    for &size in &sizes {
        for round in 1..=args.fanout_rounds.max(1) {
            let prefix = run_prefix(Mode::Fanout);
            let result = fanout_round(client, target, sink, args, &sizes, size, &prefix).await?;
            let result = FanoutRound { round, ..result };
            eprintln!("{}", result.summary_line());
            report.rounds.push(result);
            wait_for_drain(target, Duration::from_secs(args.drain_timeout)).await?;
            tokio::time::sleep(Duration::from_secs_f64(args.fanout_gap.max(0.0))).await;
        }
    }
    Ok(report)
}

/// The sizes asked for, ascending, without zeros or repeats.
pub(crate) fn fanout_sizes(args: &Args) -> Vec<usize> {
    let mut sizes: Vec<usize> = args
        .fanout_sizes
        .iter()
        .copied()
        .filter(|size| *size > 0)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

async fn fanout_round(
    client: &reqwest::Client,
    target: &Target,
    sink: &Sink,
    args: &Args,
    sizes: &[usize],
    size: usize,
    n: &str,
) -> anyhow::Result<FanoutRound> {
    sink.take();
    let cpu_before = CpuSample::take(args.server_pid);
    let sent = Instant::now();
    let response = client
        .post(target.url("/api/v1/events"))
        .header(reqwest::header::AUTHORIZATION, &target.authorization)
        .header(CONTENT_TYPE, "application/json")
        .body(fanout_event(size, sizes, n))
        .send()
        .await
        .context("posting the fan-out event")?;
    let accepted = Instant::now();
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        anyhow::bail!(
            "the fan-out event got HTTP {status}: {}",
            truncate(&text, 200)
        );
    }
    wait_for_webhooks(sink, size as u64, Duration::from_secs(args.notify_timeout)).await;
    tokio::time::sleep(SETTLE).await;
    let cpu = CpuSample::take(args.server_pid).and_then(|after| {
        cpu_before
            .as_ref()
            .map(|before| CpuReport::between(before, &after))
    });
    let unreadable = sink.log.unreadable.load(Ordering::Relaxed);
    let arrivals = sink.take();
    let mut by_user: HashMap<&str, usize> = HashMap::new();
    let mut ids = std::collections::HashSet::new();
    let mut duplicates = 0;
    let mut strays = 0;
    let mut arrival_ms = Vec::with_capacity(size);
    for arrival in &arrivals {
        let ours = arrival
            .alerts
            .iter()
            .any(|alert| alert.as_deref() == Some(n));
        let index = arrival
            .user
            .strip_prefix("nb")
            .and_then(|index| index.parse::<usize>().ok());
        if !ours || arrival.alerts.len() != 1 || index.is_none_or(|index| index >= size) {
            strays += 1;
            continue;
        }
        if !ids.insert(arrival.delivery_id.as_str()) {
            duplicates += 1;
            continue;
        }
        let count = by_user.entry(arrival.user.as_str()).or_default();
        *count += 1;
        if *count > 1 {
            duplicates += 1;
            continue;
        }
        let offset = match arrival.at.checked_duration_since(accepted) {
            Some(after) => after.as_secs_f64() * 1000.0,
            None => -(accepted.duration_since(arrival.at).as_secs_f64() * 1000.0),
        };
        arrival_ms.push(offset);
    }
    let reached = (0..size)
        .filter(|index| by_user.contains_key(bench_user(*index).as_str()))
        .count();
    let first_ms = arrival_ms.iter().copied().reduce(f64::min);
    Ok(FanoutRound {
        size,
        round: 0,
        accepted_ms: accepted.duration_since(sent).as_secs_f64() * 1000.0,
        arrival_ms: Percentiles::of(arrival_ms),
        first_ms,
        reached,
        duplicates,
        strays,
        webhooks: arrivals.len() as u64,
        unreadable,
        cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reaches_exactly_the_users_of_its_size() {
        let sizes = [1000, 10_000];
        let field = |index| fanout_field(index, &sizes);
        let small: Value = serde_json::from_str(&fanout_event(1000, &sizes, "x")).unwrap();
        let large: Value = serde_json::from_str(&fanout_event(10_000, &sizes, "x")).unwrap();
        let reaches = |event: &Value, index: usize| {
            field(index).is_some_and(|field| event["fields"][field.as_str()] == "on")
        };
        assert!(reaches(&small, 0) && reaches(&small, 999));
        assert!(!reaches(&small, 1000) && !reaches(&small, 9999));
        assert!(reaches(&large, 0) && reaches(&large, 1000) && reaches(&large, 9999));
        assert_eq!(field(10_000), None);
        assert_eq!(large["fields"]["n"], "x");
    }
}
