//! `/metrics` of a fresh server: every metric of `tellify::telemetry::METRICS` is there
//! from the start, with its help text, before anything happened; per-thing metrics have
//! a series for each configured source and exporter; one request shows its route
//! template in the request-duration histogram.

use std::process::Stdio;

use tellify::telemetry::METRICS;

use crate::crash::{start_with, TOKEN};
use crate::support::free_port;

#[tokio::test]
async fn a_fresh_server_shows_every_metric_with_help_and_a_request_its_route() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let port = free_port();
    // A source whose broker is not there (it keeps reconnecting) and a UDP exporter,
    // configured as a container would: through the environment.
    let closed = free_port();
    let source = format!(
        r#"[{{url = "amqp://127.0.0.1:{closed}/%2f", exchange = "", queue = "tellify-test"}}]"#
    );
    let exporter =
        format!(r#"[{{name = "siem", address = "127.0.0.1:{closed}", transport = "udp"}}]"#);
    let environment = [
        ("TELLIFY_LOG", "error"),
        ("TELLIFY_SOURCES__AMQP", source.as_str()),
        ("TELLIFY_EXPORT__SYSLOG", exporter.as_str()),
    ];
    let _server = start_with(&data, port, &environment, Stdio::null()).await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let mut missing = Vec::new();
    for metric in METRICS {
        let help = format!("# HELP {} {}", metric.name, metric.help);
        let series = metrics
            .lines()
            .any(|line| line.starts_with(metric.name) && !line.starts_with('#'));
        if !metrics.contains(&help) || !series {
            missing.push(metric.name);
        }
    }
    assert!(
        missing.is_empty(),
        "missing at start: {missing:?}\n{metrics}"
    );
    assert!(
        metrics.contains(r#"tellify_deliveries_total{channel="webhook",result="sent"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"tellify_source_up{source="amqp:tellify-test"} 0"#),
        "the unreachable broker's source is down: {metrics}"
    );
    assert!(
        metrics.contains(r#"tellify_export_position{exporter="siem",stream="events"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("tellify_outbox_due 0"), "{metrics}");

    let alerts = client
        .get(format!("{base}/api/v1/alerts/01JDOESNOTEXIST00000000000"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("alert");
    assert_eq!(alerts.status(), 404);
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let bucket = metrics.lines().find(|line| {
        line.starts_with("tellify_http_request_duration_seconds_bucket")
            && line.contains(r#"route="/api/v1/alerts/{id}""#)
            && line.contains(r#"method="GET""#)
            && line.contains(r#"status="404""#)
    });
    assert!(
        bucket.is_some(),
        "the route template, not the path: {metrics}"
    );
    assert!(
        !metrics.contains("01JDOESNOTEXIST"),
        "no raw path in a label"
    );
}
