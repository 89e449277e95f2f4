//! `am-ingest`: Prometheus-style alerts posted to the Alertmanager API
//! (`POST /api/v2/alerts`) through the throughput loop, fed to one `alertmanager`
//! subscription.

use axum::body::Bytes;
use rand::Rng;
use serde_json::{json, Value};

use crate::report::RunReport;
use crate::target::{create_subscription, subscription_titles, Target};
use crate::throughput::run_throughput;
use crate::{Args, Mode};

/// Title of the `alertmanager` subscription the `am-ingest` run feeds.
pub(crate) const AM_TITLE: &str = "bench alertmanager";

/// `am-ingest`: makes sure the `alertmanager` subscription exists, then posts alerts.
pub(crate) async fn run_am_ingest(
    client: &reqwest::Client,
    target: &Target,
    args: &Args,
) -> anyhow::Result<RunReport> {
    if !subscription_titles(client, target)
        .await?
        .contains(AM_TITLE)
    {
        let body = json!({"kind": "alertmanager", "title": AM_TITLE, "params": {}});
        create_subscription(client, target, body).await?;
    }
    run_throughput(target, Mode::AmIngest, args).await
}

/// One `POST /api/v2/alerts` body as Prometheus sends it: `size` firing alerts drawn from
/// 10,000 label sets (10 alert names on 1,000 instances), `endsAt` ten minutes ahead.
pub(crate) fn alertmanager_batch(size: usize) -> Bytes {
    let mut random = rand::rng();
    let now = jiff::Timestamp::now();
    let ends = now + jiff::SignedDuration::from_mins(10);
    let alerts: Vec<Value> = (0..size)
        .map(|_| {
            let name = random.random_range(0..10);
            let instance = random.random_range(0..1000);
            let critical = random.random_bool(0.01);
            json!({
                "labels": {
                    "alertname": format!("BenchAlert{name}"),
                    "instance": format!("host{instance}:9100"),
                    "job": "node",
                    "severity": if critical { "critical" } else { "warning" },
                },
                "annotations": {"summary": format!("bench alert {name} on host{instance}")},
                "startsAt": now.to_string(),
                "endsAt": ends.to_string(),
                "generatorURL": "http://prometheus.bench:9090/graph?g0.expr=up",
            })
        })
        .collect();
    Bytes::from(Value::Array(alerts).to_string())
}
