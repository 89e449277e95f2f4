//! Exporters: tellify's own events and alert changes, forwarded to other systems as they
//! happen. Today that is syslog (`[[export.syslog]]`, see [`syslog`]).
//!
//! An exporter never keeps its progress in memory only. Each stream it forwards (the
//! event log, the alert history) has a saved position in the store
//! ([`tellify_store::Store::export_position`]); the exporter reads what comes after it,
//! sends it, and only then saves the new position. After an outage of the receiver or a
//! restart of tellify it therefore resumes where the receiver stopped hearing from it.
//! A crash between sending and saving sends the last batch once more, so receivers see
//! each message at least once, and carry ids to recognise the repeat.
//!
//! With several nodes on one store, each exporter runs on one node at a time, under the
//! lease `export:<name>` ([`crate::lease`]); the node that takes over resumes from the
//! saved positions.

pub mod syslog;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::services::AppState;

/// `[export]`: where tellify forwards its events and alert changes. Nothing by default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportSettings {
    /// `[[export.syslog]]`: RFC 5424 syslog receivers, over TCP or UDP.
    pub syslog: Vec<syslog::SyslogSettings>,
}

/// Checks every exporter's settings (all problems at once, each with its path) and starts
/// one task per exporter; each runs until `shutdown` flips to true.
pub fn start(
    services: AppState,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let exporters = exporters(&services.settings.export)
        .map_err(|problems| anyhow::anyhow!("invalid export settings: {}", problems.join("; ")))?;
    Ok(exporters
        .into_iter()
        .map(|exporter| {
            crate::telemetry::export_registered(exporter.name());
            // One node exports each stream (see `crate::lease`); whoever takes over
            // resumes from the saved positions.
            let exporter = std::sync::Arc::new(exporter);
            let job_services = services.clone();
            tokio::spawn(crate::lease::run_singleton(
                services.clone(),
                format!("export:{}", exporter.name()),
                shutdown.clone(),
                move |stop| {
                    let (exporter, services) = (exporter.clone(), job_services.clone());
                    async move { exporter.run(services, stop).await }
                },
            ))
        })
        .collect())
}

/// The exporters `settings` describe, or every problem with its path
/// (`export.syslog[0].address: ...`); used by the start and by `tellify config check`.
pub fn exporters(settings: &ExportSettings) -> Result<Vec<syslog::SyslogExporter>, Vec<String>> {
    let mut problems = Vec::new();
    let mut exporters = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (index, settings) in settings.syslog.iter().enumerate() {
        let path = format!("export.syslog[{index}]");
        match syslog::SyslogExporter::new(settings) {
            Ok(exporter) => {
                if !names.insert(exporter.name().to_string()) {
                    problems.push(format!(
                        "{path}.name: `{}` is used by another exporter (their saved positions would clash)",
                        exporter.name()
                    ));
                }
                exporters.push(exporter);
            }
            Err(found) => {
                problems.extend(found.into_iter().map(|problem| format!("{path}.{problem}")))
            }
        }
    }
    if problems.is_empty() {
        Ok(exporters)
    } else {
        Err(problems)
    }
}
