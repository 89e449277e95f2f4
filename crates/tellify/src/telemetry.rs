//! Logs and metrics. Every metric is listed here, in [`METRICS`], with its help text, so
//! `/metrics` is documented in one place and complete from the start: [`register_all`]
//! describes each one and sets it to zero when the server starts, so a dashboard or an
//! alert rule sees `0`, not "no data", on a fresh server.
//!
//! Code elsewhere records through the small functions at the end of this file (one call
//! per place), so the names and labels of a metric stay in one file.

use std::sync::OnceLock;
use std::time::Instant;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const EVENTS_INGESTED: &str = "tellify_events_ingested_total";
pub const EVENTS_DUPLICATE: &str = "tellify_events_duplicate_total";
pub const INGEST_REJECTED: &str = "tellify_ingest_rejected_total";
pub const EVENT_LOG_RECOVERED: &str = "tellify_event_log_recovered_total";
pub const EVENTS_PROCESSED: &str = "tellify_events_processed_total";
pub const DERIVED_DROPPED: &str = "tellify_derived_events_dropped_total";
pub const ALERT_TRANSITIONS: &str = "tellify_alert_transitions_total";
pub const PROCESSING_LAG: &str = "tellify_processing_lag_events";
pub const SUBSCRIPTIONS_ACTIVE: &str = "tellify_subscriptions_active";
/// Handler failures (errors, panics, runs over budget) by outcome (`failing`, `disabled`).
pub const SUBSCRIPTION_FAILURES: &str = "tellify_subscription_failures_total";
/// Subscriptions currently marked failing (disabled ones included).
pub const SUBSCRIPTIONS_FAILING: &str = "tellify_subscriptions_failing";
/// Evaluations of subscription filters that failed on an event (not a missing field).
pub const FILTER_ERRORS: &str = "tellify_filter_errors_total";
/// Users and contact points whose new messages are held back by a rate limit.
pub const DELIVERY_HOLDS: &str = "tellify_delivery_holds";
/// Requests whose handler panicked (answered 500).
pub const HTTP_PANICS: &str = "tellify_http_panics_total";
/// Delivery attempts by channel and result (`sent`, `retry`, `failed`).
pub const DELIVERIES: &str = "tellify_deliveries_total";
/// Deliveries in flight at shutdown given back (due again) when the grace ran out.
pub const DELIVERIES_GIVEN_BACK: &str = "tellify_deliveries_given_back_total";
/// Broker messages by source and outcome (`stored`, `dead_lettered`, `retry`).
pub const SOURCE_MESSAGES: &str = "tellify_source_messages_total";
/// Time one delivery attempt took, by channel.
pub const DELIVERY_SECONDS: &str = "tellify_delivery_seconds";
/// HTTP connections open now.
pub const HTTP_CONNECTIONS_OPEN: &str = "tellify_http_connections_open";
/// Connections answered 503 because `http.max_connections` were open.
pub const HTTP_CONNECTIONS_REFUSED: &str = "tellify_http_connections_refused_total";
/// Connections and requests cut by a timeout, by `reason` (`idle`, `header`, `body`).
pub const HTTP_CONNECTIONS_TIMED_OUT: &str = "tellify_http_timeouts_total";
/// Failed authentications by `outcome` (`unknown`, `expired`, `limited`).
pub const AUTH_FAILURES: &str = "tellify_auth_failures_total";
/// Time from a request's arrival to its response head, by `route` (the matched route
/// template, such as `/api/v1/alerts/{id}`), `method` and `status`.
pub const HTTP_REQUEST_SECONDS: &str = "tellify_http_request_duration_seconds";
/// Notifications and deliveries due now and not sent yet.
pub const OUTBOX_DUE: &str = "tellify_outbox_due";
/// How long the oldest of them has been due, in seconds (0 when none is).
pub const OUTBOX_OLDEST_DUE_SECONDS: &str = "tellify_outbox_oldest_due_seconds";
/// 1 while a broker source is connected and consuming, 0 while it (re)connects, by `source`.
pub const SOURCE_UP: &str = "tellify_source_up";
/// Metric polls by `outcome` (`ok`, `failed`: the failure was appended as an event).
pub const POLLS: &str = "tellify_polls_total";
/// Poll keys (backend, url, query) whose latest poll failed.
pub const POLLS_FAILING: &str = "tellify_polls_failing";
/// The last position a syslog exporter saved, by `exporter` and `stream` (`events`:
/// the event log's sequence number; `alerts`: the alert history's position).
pub const EXPORT_POSITION: &str = "tellify_export_position";

/// How a metric is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric of `/metrics`: its name, kind, help text, and the label sets it starts
/// with at zero (none: one series without labels; per-thing metrics such as
/// [`SOURCE_UP`] start with one series per configured thing instead).
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub zero: &'static [&'static [(&'static str, &'static str)]],
}

const NO_LABELS: &[&[(&str, &str)]] = &[&[]];

const fn metric(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    zero: &'static [&'static [(&'static str, &'static str)]],
) -> Metric {
    Metric {
        name,
        kind,
        help,
        zero,
    }
}

const DELIVERY_RESULTS: &[&[(&str, &str)]] = &[
    &[("channel", "email"), ("result", "sent")],
    &[("channel", "email"), ("result", "retry")],
    &[("channel", "email"), ("result", "failed")],
    &[("channel", "sms"), ("result", "sent")],
    &[("channel", "sms"), ("result", "retry")],
    &[("channel", "sms"), ("result", "failed")],
    &[("channel", "webhook"), ("result", "sent")],
    &[("channel", "webhook"), ("result", "retry")],
    &[("channel", "webhook"), ("result", "failed")],
    &[("channel", "chat"), ("result", "sent")],
    &[("channel", "chat"), ("result", "retry")],
    &[("channel", "chat"), ("result", "failed")],
    &[("channel", "engine"), ("result", "sent")],
    &[("channel", "engine"), ("result", "retry")],
    &[("channel", "engine"), ("result", "failed")],
];

/// Every metric tellify exports.
pub const METRICS: &[Metric] = &[
    metric(EVENTS_INGESTED, Kind::Counter, "Events stored, from every way in (HTTP, Alertmanager, Alerta, brokers, pollers).", NO_LABELS),
    metric(EVENTS_DUPLICATE, Kind::Counter, "Events dropped as duplicates of an earlier idempotency key.", NO_LABELS),
    metric(INGEST_REJECTED, Kind::Counter, "Ingest requests or messages refused as invalid.", NO_LABELS),
    metric(EVENT_LOG_RECOVERED, Kind::Counter, "Events JetStream acknowledged that their node did not store (it died first), stored by the event log's recoverer.", NO_LABELS),
    metric(EVENTS_PROCESSED, Kind::Counter, "Events the worker processed (committed past its cursor).", NO_LABELS),
    metric(DERIVED_DROPPED, Kind::Counter, "Derived events dropped at engine.max_derived_depth.", NO_LABELS),
    metric(ALERT_TRANSITIONS, Kind::Counter, "Alert history entries written, by action.", NO_LABELS),
    metric(PROCESSING_LAG, Kind::Gauge, "Stored events the worker has not processed yet (events behind the log head).", NO_LABELS),
    metric(SUBSCRIPTIONS_ACTIVE, Kind::Gauge, "Enabled subscriptions the worker runs.", NO_LABELS),
    metric(SUBSCRIPTION_FAILURES, Kind::Counter, "Handler failures (errors, panics, over budget), by outcome (failing, disabled).", &[&[("outcome", "failing")], &[("outcome", "disabled")]]),
    metric(SUBSCRIPTIONS_FAILING, Kind::Gauge, "Subscriptions currently marked failing, disabled ones included.", NO_LABELS),
    metric(FILTER_ERRORS, Kind::Counter, "Subscription filter evaluations that failed on an event (a type error, not a missing field); the filter counted as false.", NO_LABELS),
    metric(DELIVERY_HOLDS, Kind::Gauge, "Users and contact points whose new messages a rate limit holds back now.", NO_LABELS),
    metric(HTTP_PANICS, Kind::Counter, "Requests whose handler panicked (answered 500).", NO_LABELS),
    metric(DELIVERIES, Kind::Counter, "Delivery attempts, by channel and result (sent, retry, failed).", DELIVERY_RESULTS),
    metric(DELIVERIES_GIVEN_BACK, Kind::Counter, "Sends cut off at shutdown whose deliveries were given back, due again.", NO_LABELS),
    metric(SOURCE_MESSAGES, Kind::Counter, "Broker messages, by source and outcome (stored, dead_lettered, retry).", NO_LABELS),
    metric(DELIVERY_SECONDS, Kind::Histogram, "Time one delivery attempt took, by channel, in seconds.", NO_LABELS),
    metric(HTTP_CONNECTIONS_OPEN, Kind::Gauge, "HTTP connections open now.", NO_LABELS),
    metric(HTTP_CONNECTIONS_REFUSED, Kind::Counter, "Connections answered 503 because http.max_connections were open.", NO_LABELS),
    metric(HTTP_CONNECTIONS_TIMED_OUT, Kind::Counter, "Connections and requests cut by a timeout, by reason (idle, header, body).", &[&[("reason", "idle")], &[("reason", "header")], &[("reason", "body")]]),
    metric(AUTH_FAILURES, Kind::Counter, "Failed authentications, by outcome (unknown, expired, limited).", &[&[("outcome", "unknown")], &[("outcome", "expired")], &[("outcome", "limited")]]),
    metric(HTTP_REQUEST_SECONDS, Kind::Histogram, "Time from a request's arrival to its response head, by route template, method and status, in seconds.", NO_LABELS),
    metric(OUTBOX_DUE, Kind::Gauge, "Notifications and deliveries due now and not sent yet.", NO_LABELS),
    metric(OUTBOX_OLDEST_DUE_SECONDS, Kind::Gauge, "How long the oldest due notification or delivery has waited, in seconds.", NO_LABELS),
    metric(SOURCE_UP, Kind::Gauge, "1 while a broker source is connected and consuming, 0 while it reconnects, by source.", &[]),
    metric(POLLS, Kind::Counter, "Metric polls, by outcome (ok, failed).", &[&[("outcome", "ok")], &[("outcome", "failed")]]),
    metric(POLLS_FAILING, Kind::Gauge, "Poll keys (backend, url, query) whose latest poll failed.", NO_LABELS),
    metric(EXPORT_POSITION, Kind::Gauge, "The last position a syslog exporter saved, by exporter and stream (events, alerts).", &[]),
];

/// Bucket bounds of the latency histograms, in seconds: 1 ms to 30 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide metrics recorder once and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = match PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(HTTP_REQUEST_SECONDS.to_string()),
                    &LATENCY_BUCKETS,
                )
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(DELIVERY_SECONDS.to_string()),
                        &LATENCY_BUCKETS,
                    )
                }) {
                Ok(builder) => builder,
                // Only empty buckets are refused; without them histograms show as summaries.
                Err(_) => PrometheusBuilder::new(),
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // A second install (another app in the same test process) is harmless.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Logs to stderr, filtered by `TELLIFY_LOG` (default `info`); in colour only on a
/// terminal and without `NO_COLOR`, so a log file or journal holds no escape codes.
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TELLIFY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .try_init();
}

/// Describes every metric of [`METRICS`] and registers its starting series at zero.
/// Gauges that another app in the same process already moved are left as they are.
pub fn register_all() {
    for metric in METRICS {
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(metric.name, metric.help),
            Kind::Gauge => metrics::describe_gauge!(metric.name, metric.help),
            Kind::Histogram => metrics::describe_histogram!(metric.name, metric.help),
        }
        for labels in metric.zero {
            let labels: Vec<metrics::Label> = labels
                .iter()
                .map(|(key, value)| metrics::Label::new(*key, *value))
                .collect();
            match metric.kind {
                Kind::Counter => metrics::counter!(metric.name, labels).increment(0),
                Kind::Gauge => metrics::gauge!(metric.name, labels).increment(0.0),
                // Registered without a sample: the histogram shows with zero counts.
                Kind::Histogram => drop(metrics::histogram!(metric.name, labels)),
            }
        }
    }
}

/// The HTTP methods kept as label values; anything else is `other`, so a client cannot
/// grow the label set.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A route layer (`Router::route_layer`) timing each request of a matched route, labelled
/// with the route template, never the raw path (whose ids would make a series each).
pub async fn time_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(
        HTTP_REQUEST_SECONDS,
        "route" => route,
        "method" => method,
        "status" => response.status().as_u16().to_string()
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// How much of the outbox is due now, and how long its oldest item has waited.
pub fn outbox_backlog(due: u64, oldest_due_seconds: f64) {
    metrics::gauge!(OUTBOX_DUE).set(due as f64);
    metrics::gauge!(OUTBOX_OLDEST_DUE_SECONDS).set(oldest_due_seconds.max(0.0));
}

/// Whether broker source `source` is connected and consuming.
pub fn source_up(source: &str, up: bool) {
    metrics::gauge!(SOURCE_UP, "source" => source.to_string()).set(if up { 1.0 } else { 0.0 });
}

/// One poll ended; `failing` is how many poll keys failed their latest poll.
pub fn poll_finished(ok: bool, failing: usize) {
    let outcome = if ok { "ok" } else { "failed" };
    metrics::counter!(POLLS, "outcome" => outcome).increment(1);
    metrics::gauge!(POLLS_FAILING).set(failing as f64);
}

/// Shows syslog exporter `exporter` on `/metrics` before its positions are loaded.
pub fn export_registered(exporter: &str) {
    for stream in ["events", "alerts"] {
        metrics::gauge!(EXPORT_POSITION, "exporter" => exporter.to_string(), "stream" => stream)
            .increment(0.0);
    }
}

/// Syslog exporter `exporter` saved `position` of `stream` (`events` or `alerts`).
pub fn export_position(exporter: &str, stream: &'static str, position: i64) {
    metrics::gauge!(EXPORT_POSITION, "exporter" => exporter.to_string(), "stream" => stream)
        .set(position as f64);
}

/// Runs a request, and if its handler panics, logs and counts the panic
/// (`tellify_http_panics_total`) and answers `answer()` instead: the server lives on and
/// nothing of the panic reaches the client. The API answers problem+json, the dashboard a
/// page.
pub async fn guard_panics(
    request: axum::extract::Request,
    next: axum::middleware::Next,
    answer: impl FnOnce() -> axum::response::Response,
) -> axum::response::Response {
    use futures_util::FutureExt;
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%method, %path, panic = %message, "request handler panicked");
            metrics::counter!(HTTP_PANICS).increment(1);
            answer()
        }
    }
}
