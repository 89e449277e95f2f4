//! `spool-replay`: the producer library spools events while no server answers, then
//! replays them to the server; the replay's rate is what is measured.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::drain::{wait_for_drain, DrainReport};
use crate::target::Target;
use crate::{run_prefix, Args, Mode};

/// What the `spool-replay` run measured.
pub(crate) struct SpoolReplayReport {
    pub(crate) events: usize,
    pub(crate) batch: usize,
    pub(crate) spool_bytes: u64,
    pub(crate) spool_seconds: f64,
    pub(crate) replay_seconds: f64,
    pub(crate) replayed: u64,
    pub(crate) duplicates: u64,
    pub(crate) drain: DrainReport,
}

impl SpoolReplayReport {
    pub(crate) fn replay_rate(&self) -> f64 {
        if self.replay_seconds > 0.0 {
            self.replayed as f64 / self.replay_seconds
        } else {
            0.0
        }
    }

    pub(crate) fn summary_line(&self) -> String {
        format!(
            "spool-replay events={} batch={} spooled in {:.2} s ({:.0} ev/s, {} bytes) | \
             replayed={} duplicates={} in {:.2} s rate={:.0} ev/s | {}",
            self.events,
            self.batch,
            self.spool_seconds,
            self.events as f64 / self.spool_seconds.max(f64::EPSILON),
            self.spool_bytes,
            self.replayed,
            self.duplicates,
            self.replay_seconds,
            self.replay_rate(),
            self.drain.summary()
        )
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "mode": Mode::SpoolReplay.name(),
            "events": self.events,
            "batch": self.batch,
            "spool_bytes": self.spool_bytes,
            "spool_seconds": self.spool_seconds,
            "replay_seconds": self.replay_seconds,
            "replayed": self.replayed,
            "duplicates": self.duplicates,
            "replay_events_per_second": self.replay_rate(),
            "drain": self.drain.to_json(),
        })
    }
}

/// Spools the events through a client whose server refuses connections (a port nobody
/// listens on), so every one takes the real spool path, then replays them to the server.
pub(crate) async fn run_spool_replay(
    target: &Target,
    args: &Args,
) -> anyhow::Result<SpoolReplayReport> {
    let prefix = run_prefix(Mode::SpoolReplay);
    let dir = std::env::temp_dir().join(format!("tellify-bench-{prefix}"));
    let token = args.token.trim();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .context("cannot find a free port")?
        .port();
    let offline = tellify_client::Client::builder(format!("http://127.0.0.1:{closed_port}"), token)
        .spool(&dir)
        .max_spool_bytes(u64::MAX)
        .build()?;
    let blocks = args.blocks.unwrap_or(args.subscriptions).max(1);
    let started = Instant::now();
    let mut n = 0usize;
    while n < args.spool_events {
        let count = 1000.min(args.spool_events - n);
        let mut events = Vec::with_capacity(count);
        for i in n..n + count {
            let mut event = tellify_client::EventInput {
                event_type: Some("bench".to_string()),
                ..Default::default()
            };
            event.fields.insert("run".to_string(), json!(prefix));
            event.fields.insert("n".to_string(), json!(i));
            event
                .fields
                .insert("block".to_string(), json!(format!("b{}", i % blocks)));
            event.fields.insert("status".to_string(), json!("pass"));
            events.push(event);
        }
        match offline.send_batch(events).await? {
            tellify_client::SendOutcome::Spooled { .. } => {}
            tellify_client::SendOutcome::Sent(_) => bail!("a closed port took events"),
        }
        n += count;
    }
    let spool_seconds = started.elapsed().as_secs_f64();
    let spool_bytes = offline
        .spool_status()
        .await?
        .map(|status| status.pending_bytes)
        .unwrap_or(0);
    // Releases the spool's lock for the replaying client.
    drop(offline);

    let online = tellify_client::Client::builder(&target.base, token)
        .spool(&dir)
        .max_spool_bytes(u64::MAX)
        .replay_batch(args.spool_batch)
        .build()?;
    let started = Instant::now();
    let replayed = online.replay().await;
    let replay_seconds = started.elapsed().as_secs_f64();
    drop(online);
    let _ = std::fs::remove_dir_all(&dir);
    let replayed = replayed?;
    let drain = wait_for_drain(target, Duration::from_secs(args.drain_timeout)).await?;
    Ok(SpoolReplayReport {
        events: args.spool_events,
        batch: args.spool_batch,
        spool_bytes,
        spool_seconds,
        replay_seconds,
        replayed: replayed.replayed,
        duplicates: replayed.duplicates,
        drain,
    })
}
