//! Logs and metrics. Metric names are listed here so `/metrics` is documented in one place.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const EVENTS_INGESTED: &str = "tellify_events_ingested_total";
pub const EVENTS_DUPLICATE: &str = "tellify_events_duplicate_total";
pub const INGEST_REJECTED: &str = "tellify_ingest_rejected_total";
pub const EVENTS_PROCESSED: &str = "tellify_events_processed_total";
pub const DERIVED_DROPPED: &str = "tellify_derived_events_dropped_total";
pub const ALERT_TRANSITIONS: &str = "tellify_alert_transitions_total";
pub const PROCESSING_LAG: &str = "tellify_processing_lag_events";
pub const SUBSCRIPTIONS_ACTIVE: &str = "tellify_subscriptions_active";
/// Handler failures (errors, panics, runs over budget) by outcome (`failing`, `disabled`).
pub const SUBSCRIPTION_FAILURES: &str = "tellify_subscription_failures_total";
/// Subscriptions currently marked failing (disabled ones included).
pub const SUBSCRIPTIONS_FAILING: &str = "tellify_subscriptions_failing";
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

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide metrics recorder once and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // A second install (another app in the same test process) is harmless.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Logs to stderr, filtered by `TELLIFY_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TELLIFY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
