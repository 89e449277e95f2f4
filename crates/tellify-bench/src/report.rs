//! What an ingest or latency run reports: one summary line and a JSON object, with
//! nearest-rank percentiles of its samples.

use serde_json::{json, Value};

use crate::cpu::CpuReport;
use crate::drain::DrainReport;
use crate::Mode;

/// What one run measured.
pub(crate) struct RunReport {
    pub(crate) mode: Mode,
    pub(crate) subscriptions: usize,
    pub(crate) load_seconds: f64,
    /// Events the server acknowledged (2xx).
    pub(crate) events: u64,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// Milliseconds from sending a request to its 2xx answer.
    pub(crate) request_ms: Percentiles,
    pub(crate) latency: Option<LatencyResult>,
    pub(crate) drain: DrainReport,
    pub(crate) cpu: Option<CpuReport>,
}

pub(crate) struct LatencyResult {
    pub(crate) target_rate: u32,
    pub(crate) sent: u64,
    pub(crate) seen: u64,
    /// Milliseconds from sending the event to receiving its alert on the stream.
    pub(crate) end_to_end_ms: Percentiles,
    pub(crate) lagged_notices: u64,
}

impl RunReport {
    pub(crate) fn events_per_second(&self) -> f64 {
        if self.load_seconds > 0.0 {
            self.events as f64 / self.load_seconds
        } else {
            0.0
        }
    }

    pub(crate) fn summary_line(&self) -> String {
        let mut line = format!(
            "{:<8} subs={} {:.1}s",
            self.mode.name(),
            self.subscriptions,
            self.load_seconds
        );
        match &self.latency {
            Some(latency) => line.push_str(&format!(
                " sent={} ({:.1}/s of {}/s) seen={} e2e p50={} p99={} max={} ms | post p50={} p99={} ms",
                latency.sent,
                self.events_per_second(),
                latency.target_rate,
                latency.seen,
                milliseconds(latency.end_to_end_ms.p50),
                milliseconds(latency.end_to_end_ms.p99),
                milliseconds(latency.end_to_end_ms.max),
                milliseconds(self.request_ms.p50),
                milliseconds(self.request_ms.p99),
            )),
            None => line.push_str(&format!(
                " events={} rate={:.0} ev/s requests={} (p50={} p99={} ms)",
                self.events,
                self.events_per_second(),
                self.requests,
                milliseconds(self.request_ms.p50),
                milliseconds(self.request_ms.p99),
            )),
        }
        line.push_str(&format!(" errors={}", self.errors));
        line.push_str(&format!(" | {}", self.drain.summary()));
        if let Some(cpu) = &self.cpu {
            line.push_str(&format!(" | {}", cpu.summary()));
        }
        if let Some(error) = &self.first_error {
            line.push_str(&format!(" | first error: {error}"));
        }
        line
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut value = json!({
            "mode": self.mode.name(),
            "subscriptions": self.subscriptions,
            "load_seconds": self.load_seconds,
            "events": self.events,
            "events_per_second": self.events_per_second(),
            "requests": self.requests,
            "errors": self.errors,
            "first_error": self.first_error,
            "request_ms": self.request_ms.to_json(),
            "drain": self.drain.to_json(),
            "cpu": self.cpu.as_ref().map(CpuReport::to_json),
        });
        if let (Some(latency), Some(object)) = (&self.latency, value.as_object_mut()) {
            object.insert(
                "latency".to_string(),
                json!({
                    "target_rate": latency.target_rate,
                    "sent": latency.sent,
                    "seen": latency.seen,
                    "end_to_end_ms": latency.end_to_end_ms.to_json(),
                    "lagged_notices": latency.lagged_notices,
                }),
            );
        }
        value
    }
}

pub(crate) fn milliseconds(value: Option<f64>) -> String {
    match value {
        Some(value) if value >= 100.0 => format!("{value:.0}"),
        Some(value) => format!("{value:.1}"),
        None => "-".to_string(),
    }
}

/// Nearest-rank percentiles of a set of samples, computed by sorting.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Percentiles {
    pub(crate) count: usize,
    pub(crate) p50: Option<f64>,
    pub(crate) p90: Option<f64>,
    pub(crate) p99: Option<f64>,
    pub(crate) max: Option<f64>,
}

impl Percentiles {
    pub(crate) fn of(mut samples: Vec<f64>) -> Percentiles {
        samples.sort_by(f64::total_cmp);
        Percentiles {
            count: samples.len(),
            p50: nearest_rank(&samples, 50.0),
            p90: nearest_rank(&samples, 90.0),
            p99: nearest_rank(&samples, 99.0),
            max: samples.last().copied(),
        }
    }

    pub(crate) fn to_json(self) -> Value {
        json!({"count": self.count, "p50": self.p50, "p90": self.p90, "p99": self.p99, "max": self.max})
    }
}

/// The smallest sample with at least `percent`% of the samples at or below it.
pub(crate) fn nearest_rank(sorted: &[f64], percent: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let percentiles = Percentiles::of(samples);
        assert_eq!(percentiles.p50, Some(50.0));
        assert_eq!(percentiles.p99, Some(99.0));
        assert_eq!(percentiles.max, Some(100.0));
        assert_eq!(Percentiles::of(vec![7.0]).p99, Some(7.0));
        assert_eq!(Percentiles::of(Vec::new()).p50, None);
    }
}
