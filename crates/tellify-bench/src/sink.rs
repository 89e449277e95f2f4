//! The webhook sink of the notify modes: an HTTP server inside this process that answers
//! `POST /hook/{user}` with 200 at once and records when each request arrived.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use axum::body::Bytes;
use serde_json::Value;

/// The largest webhook body the sink takes.
const SINK_BODY_LIMIT: usize = 1 << 30;

/// One webhook as the sink received it.
pub(crate) struct Arrival {
    pub(crate) at: Instant,
    /// The `{user}` of the path it was posted to: which contact point it reached.
    pub(crate) user: String,
    pub(crate) delivery_id: String,
    /// `alerts[].fields.n` of every alert the delivery carried (`None` without one).
    pub(crate) alerts: Vec<Option<String>>,
}

/// What the sink has received since the last [`Sink::take`].
#[derive(Default)]
pub(crate) struct SinkLog {
    pub(crate) arrivals: Mutex<Vec<Arrival>>,
    /// Alerts carried by the arrivals since the last take.
    pub(crate) alerts: AtomicU64,
    /// Requests whose body was not a webhook payload.
    pub(crate) unreadable: AtomicU64,
}

/// A webhook receiver inside this process: `POST /hook/{user}` answers 200 at once and
/// records when the request arrived.
pub(crate) struct Sink {
    pub(crate) base: String,
    pub(crate) log: Arc<SinkLog>,
}

#[derive(serde::Deserialize)]
pub(crate) struct HookPayload {
    pub(crate) delivery_id: String,
    #[serde(default)]
    pub(crate) alerts: Vec<HookAlert>,
}

#[derive(serde::Deserialize)]
pub(crate) struct HookAlert {
    #[serde(default)]
    pub(crate) fields: serde_json::Map<String, Value>,
}

impl Sink {
    pub(crate) async fn start() -> anyhow::Result<Sink> {
        use axum::serve::ListenerExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the webhook sink")?;
        let address = listener.local_addr()?;
        let log = Arc::new(SinkLog::default());
        // A storm gangs thousands of alerts into one webhook, megabytes of JSON: axum's
        // default 2 MB body limit would answer 413 and the server would retry for minutes.
        let router = axum::Router::new()
            .route("/hook/{user}", axum::routing::post(sink_hook))
            .layer(axum::extract::DefaultBodyLimit::max(SINK_BODY_LIMIT))
            .with_state(log.clone());
        // The 200 must leave at once, as the server's own answers do.
        let listener = listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                eprintln!("error: the webhook sink stopped: {error}");
            }
        });
        Ok(Sink {
            base: format!("http://{address}"),
            log,
        })
    }

    /// Everything received since the last take; the alert counter starts again at 0.
    pub(crate) fn take(&self) -> Vec<Arrival> {
        let taken = match self.log.arrivals.lock() {
            Ok(mut arrivals) => {
                self.log.alerts.store(0, Ordering::Relaxed);
                std::mem::take(&mut *arrivals)
            }
            Err(_) => Vec::new(),
        };
        self.log.unreadable.store(0, Ordering::Relaxed);
        taken
    }

    pub(crate) fn alerts(&self) -> u64 {
        self.log.alerts.load(Ordering::Relaxed)
    }

    pub(crate) fn last_arrival(&self) -> Option<Instant> {
        self.log
            .arrivals
            .lock()
            .ok()
            .and_then(|arrivals| arrivals.last().map(|arrival| arrival.at))
    }
}

pub(crate) async fn sink_hook(
    axum::extract::State(log): axum::extract::State<Arc<SinkLog>>,
    axum::extract::Path(user): axum::extract::Path<String>,
    body: Bytes,
) -> axum::http::StatusCode {
    let at = Instant::now();
    let Ok(payload) = serde_json::from_slice::<HookPayload>(&body) else {
        log.unreadable.fetch_add(1, Ordering::Relaxed);
        return axum::http::StatusCode::OK;
    };
    let alerts: Vec<Option<String>> = payload
        .alerts
        .iter()
        .map(|alert| {
            alert
                .fields
                .get("n")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    if let Ok(mut arrivals) = log.arrivals.lock() {
        log.alerts.fetch_add(alerts.len() as u64, Ordering::Relaxed);
        arrivals.push(Arrival {
            at,
            user,
            delivery_id: payload.delivery_id,
            alerts,
        });
    }
    axum::http::StatusCode::OK
}
