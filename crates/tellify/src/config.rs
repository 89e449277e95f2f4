//! Settings: defaults, then `tellify.toml` (or `--config FILE`), then
//! `TELLIFY_SECTION__KEY` environment variables, then command-line flags. Unknown keys
//! are rejected so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use tellify_model::Limits;

use crate::channels::{SmsSettings, SmtpSettings};
use crate::notify::NotifySettings;
use crate::outbound::OutboundSettings;
use crate::pollers::PollerSettings;
use crate::sources::SourcesSettings;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Directory holding the SQLite database.
    pub data: PathBuf,
    /// Public base URL of the dashboard and API, used in links.
    pub public_url: Option<String>,
    pub ingest: IngestSettings,
    pub limits: Limits,
    pub engine: EngineSettings,
    /// Bounds on event search (`[search]`).
    pub search: crate::api::SearchSettings,
    pub notify: NotifySettings,
    pub smtp: SmtpSettings,
    pub sms: SmsSettings,
    /// Brokers events are consumed from (`[[sources.amqp]]`, `[[sources.nats]]`); none by default.
    pub sources: SourcesSettings,
    /// How `metric` subscriptions poll their backends (`[pollers]`).
    pub pollers: PollerSettings,
    /// The Alerta-compatible API (`[alerta]`: `prefix`, default `/alerta/api`).
    pub alerta: crate::api::alerta::AlertaSettings,
    /// Where events and alert changes are forwarded (`[[export.syslog]]`); nowhere by default.
    pub export: crate::export::ExportSettings,
    /// What calls to user-supplied URLs may reach besides public addresses
    /// (`[outbound] allow = ["10.1.0.0/16", "prometheus.internal"]`); nothing by default.
    pub outbound: OutboundSettings,
    /// Connection limits and timeouts of the HTTP server (`[http]`).
    pub http: crate::server::HttpSettings,
    /// The failed-authentication limit (`[auth]`).
    pub auth: crate::auth::AuthSettings,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Largest request body accepted on `POST /api/v1/events`, in bytes.
    pub max_body_bytes: usize,
    /// Most events in one request.
    pub max_batch_events: usize,
    /// Most stored events the worker may be behind before ingest answers 503 with
    /// `Retry-After` (0 = never): alerts then stay timely and producers know to back off.
    pub max_backlog_events: usize,
    /// Accept only events whose `type` is registered (`/api/v1/event-types`), so a typo
    /// in a producer's type is refused instead of silently matching nothing.
    pub strict_types: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// How many derived events may chain (an event derived from a derived event...).
    pub max_derived_depth: u32,
    /// Events processed per transaction.
    pub batch_size: usize,
    /// Failures in a row (errors, panics, inputs over `handler_budget_ms`) after which a
    /// subscription is disabled with its reason.
    pub max_subscription_failures: u32,
    /// The longest one subscription may take over one event or timer, in milliseconds,
    /// before that counts as a failure.
    pub handler_budget_ms: u64,
    /// Longest one filter evaluation may take, in milliseconds; a subscription whose
    /// filter takes longer is marked failing (see `filter_budget`).
    pub filter_budget_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data: PathBuf::from("tellify-data"),
            public_url: None,
            ingest: IngestSettings::default(),
            limits: Limits::default(),
            engine: EngineSettings::default(),
            search: Default::default(),
            notify: NotifySettings::default(),
            smtp: SmtpSettings::default(),
            sms: SmsSettings::default(),
            sources: SourcesSettings::default(),
            pollers: PollerSettings::default(),
            alerta: crate::api::alerta::AlertaSettings::default(),
            export: crate::export::ExportSettings::default(),
            outbound: OutboundSettings::default(),
            http: crate::server::HttpSettings::default(),
            auth: crate::auth::AuthSettings::default(),
        }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            max_body_bytes: 8 * 1024 * 1024,
            max_batch_events: 10_000,
            max_backlog_events: 2_000_000,
            strict_types: false,
        }
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_derived_depth: 8,
            batch_size: 2000,
            max_subscription_failures: 5,
            handler_budget_ms: 250,
            filter_budget_ms: 5,
        }
    }
}

impl Settings {
    /// Loads settings from `file` (or `tellify.toml` if it exists) and the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    anyhow::bail!("config file {} does not exist", path.display());
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("tellify.toml")),
        }
        let environment = Env::prefixed("TELLIFY_").split("__").ignore(&[
            "server",
            "token",
            "bootstrap_token",
            "log",
        ]);
        figment = figment.merge(environment);
        let settings: Settings = figment
            .extract()
            .map_err(|error| anyhow::anyhow!("invalid configuration: {error}"))?;
        // The filter cost bound assumes no event carries a longer list.
        let ceiling = tellify_model::MAX_LIST_ITEMS_CEILING;
        if settings.limits.max_list_items > ceiling {
            anyhow::bail!("invalid configuration: limits.max_list_items must be at most {ceiling}");
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn file_and_environment_override_defaults_and_unknown_keys_fail() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "tellify.toml",
                "listen = \"127.0.0.1:9999\"\n[ingest]\nmax_batch_events = 5\n",
            )?;
            jail.set_env("TELLIFY_LIMITS__MAX_FIELDS", "7");
            jail.set_env("TELLIFY_SMTP__HOST", "mail.example.com");
            jail.set_env("TELLIFY_SMTP__SECURITY", "tls");
            jail.set_env("TELLIFY_SMS__ACCOUNT", "AC123");
            jail.set_env("TELLIFY_HTTP__MAX_CONNECTIONS", "100");
            jail.set_env("TELLIFY_AUTH__MAX_FAILURES", "5");
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.listen.port(), 9999);
            assert_eq!(settings.ingest.max_batch_events, 5);
            assert_eq!(settings.limits.max_fields, 7);
            assert_eq!(settings.smtp.host.as_deref(), Some("mail.example.com"));
            assert_eq!(settings.smtp.security, crate::channels::SmtpSecurity::Tls);
            assert_eq!(settings.sms.account.as_deref(), Some("AC123"));
            assert_eq!(settings.http.max_connections, 100);
            assert_eq!(settings.http.idle_timeout_secs, 60);
            assert_eq!(settings.auth.max_failures, 5);
            jail.create_file("bad.toml", "[ingest]\nmax_batch = 5\n")?;
            let error = Settings::load(Some(Path::new("bad.toml")))
                .unwrap_err()
                .to_string();
            assert!(error.contains("max_batch"), "{error}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn the_outbound_allow_list_comes_from_the_file_or_the_environment() {
        figment::Jail::expect_with(|jail| {
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert!(settings.outbound.allow.is_empty());
            jail.create_file(
                "tellify.toml",
                "[outbound]\nallow = [\"10.1.0.0/16\", \"prometheus.internal\"]\n",
            )?;
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                settings.outbound.allow,
                vec!["10.1.0.0/16".to_string(), "prometheus.internal".to_string()]
            );
            jail.set_env("TELLIFY_OUTBOUND__ALLOW", r#"["127.0.0.0/8", "::1"]"#);
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                settings.outbound.allow,
                vec!["127.0.0.0/8".to_string(), "::1".to_string()]
            );
            crate::outbound::OutboundGuard::new(&settings.outbound).map_err(|e| e.to_string())?;
            jail.create_file("bad.toml", "[outbound]\nallowed = []\n")?;
            let error = Settings::load(Some(Path::new("bad.toml")))
                .unwrap_err()
                .to_string();
            assert!(error.contains("allowed"), "{error}");
            Ok(())
        });
    }
}
