//! Settings: defaults, then `tellify.toml` (or `--config FILE`), then
//! `TELLIFY_SECTION__KEY` environment variables, then command-line flags. Unknown keys
//! are rejected so a typo never silently falls back to a default.
//!
//! An environment value is text: it is read as a number or a boolean only where the
//! setting is one, so `TELLIFY_SMS__FROM=+15550000000` or `TELLIFY_SMTP__PASSWORD=007`
//! stay the strings they are. A value written as a TOML array or table (`["10.0.0.0/8"]`)
//! is parsed as one, for the list settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
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
    /// Where state is kept instead of SQLite in `data`: a PostgreSQL address
    /// (`postgres://user:password@host:5432/database`), shared by every node that names it.
    pub store: Option<String>,
    /// Where events are logged before they are acknowledged, when several nodes share a
    /// PostgreSQL `store`: a NATS server with JetStream (`nats://host:4222`, or several
    /// comma-separated). Unset: the store is the log. Set by `--log`, `log = "…"` in
    /// `tellify.toml` or `TELLIFY_EVENT_LOG` (`TELLIFY_LOG` is the log filter).
    pub log: Option<String>,
    /// The JetStream stream of the event log (`[jetstream]`), when `log` is set.
    pub jetstream: crate::eventlog::JetStreamSettings,
    /// Public base URL of the dashboard and API, used in links.
    pub public_url: Option<String>,
    pub ingest: IngestSettings,
    pub limits: Limits,
    pub engine: EngineSettings,
    /// Bounds on event search (`[search]`).
    pub search: SearchSettings,
    pub notify: NotifySettings,
    pub smtp: SmtpSettings,
    pub sms: SmsSettings,
    /// Brokers events are consumed from (`[[sources.amqp]]`, `[[sources.nats]]`); none by default.
    pub sources: SourcesSettings,
    /// How `metric` subscriptions poll their backends (`[pollers]`).
    pub pollers: PollerSettings,
    /// The Alerta-compatible API (`[alerta]`: `prefix`, default `/alerta/api`).
    pub alerta: AlertaSettings,
    /// Where events and alert changes are forwarded (`[[export.syslog]]`); nowhere by default.
    pub export: crate::export::ExportSettings,
    /// What calls to user-supplied URLs may reach besides public addresses
    /// (`[outbound] allow = ["10.1.0.0/16", "prometheus.internal"]`); nothing by default.
    pub outbound: OutboundSettings,
    /// Connection limits and timeouts of the HTTP server (`[http]`).
    pub http: crate::server::HttpSettings,
    /// The failed-authentication limit (`[auth]`).
    pub auth: crate::auth::AuthSettings,
    /// Signed action links in notifications (`[links]`); sent only when `public_url` is set.
    pub links: LinksSettings,
    /// Seconds a stop (SIGTERM, SIGINT) may take, 1 to 600: requests in flight finish,
    /// sends in flight finish or give their delivery back, the worker commits, then the
    /// process exits 0. What is still running after it is cut off.
    pub shutdown_grace_secs: u64,
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

/// Where the store is (see [`Settings::store_location`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// SQLite in this directory.
    Sqlite(PathBuf),
    /// PostgreSQL at this address.
    Postgres(String),
}

/// An address with its password (`user:password@`) replaced by `***`, to be printed.
pub fn redact_address(address: &str) -> String {
    let Some((scheme, rest)) = address.split_once("://") else {
        return address.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((credentials, host)) = authority.rsplit_once('@') else {
        return address.to_string();
    };
    let user = credentials.split(':').next().unwrap_or_default();
    let hidden = if credentials.contains(':') {
        format!("{user}:***")
    } else {
        user.to_string()
    };
    // A password in the query (`?password=…`) is hidden too.
    let path = match path.find("password=") {
        Some(start) => {
            let value_start = start + "password=".len();
            let value_end = path[value_start..]
                .find('&')
                .map_or(path.len(), |end| value_start + end);
            format!("{}***{}", &path[..value_start], &path[value_end..])
        }
        None => path.to_string(),
    };
    format!("{scheme}://{hidden}@{host}{path}")
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data: PathBuf::from("tellify-data"),
            store: None,
            log: None,
            jetstream: Default::default(),
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
            alerta: AlertaSettings::default(),
            export: crate::export::ExportSettings::default(),
            outbound: OutboundSettings::default(),
            http: crate::server::HttpSettings::default(),
            auth: crate::auth::AuthSettings::default(),
            links: LinksSettings::default(),
            shutdown_grace_secs: 10,
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

/// The range of `shutdown_grace_secs`.
pub const SHUTDOWN_GRACE_SECS: std::ops::RangeInclusive<u64> = 1..=600;

/// Environment variables that configure something else than [`Settings`]: the CLI's
/// server, token and time zone, the first admin's token and password, the log filter.
const NOT_SETTINGS: [&str; 6] = [
    "server",
    "token",
    "bootstrap_token",
    "bootstrap_password",
    "log",
    "tz",
];

impl Settings {
    /// Loads settings from `file` (or `tellify.toml` if it exists) and the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    anyhow::bail!(
                        "config file {} does not exist: check the --config path",
                        path.display()
                    );
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("tellify.toml")),
        }
        figment = figment.merge(EnvironmentText::new());
        // Lossy: an environment value (always text) becomes a number or a boolean where
        // the setting is one; a string setting keeps the text as written.
        let settings: Settings = figment
            .extract_lossy()
            .map_err(|error| anyhow::anyhow!(describe_config_error(error)))?;
        let problems = settings.problems();
        if !problems.is_empty() {
            anyhow::bail!("invalid configuration: {}", problems.join("; "));
        }
        Ok(settings)
    }

    /// Every top-level setting out of its range, as `key: must be ... (is ...)`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // The filter cost bound assumes no event carries a longer list.
        let ceiling = tellify_model::MAX_LIST_ITEMS_CEILING;
        if self.limits.max_list_items > ceiling {
            problems.push(format!(
                "limits.max_list_items: must be at most {ceiling} (is {})",
                self.limits.max_list_items
            ));
        }
        if let Err(error) = self.store_location() {
            problems.push(format!("store: {error}"));
        }
        if let Some(address) = &self.log {
            if let Err(error) = crate::eventlog::check_address(address) {
                problems.push(format!("log: {error}"));
            } else if !matches!(self.store_location(), Ok(StoreLocation::Postgres(_))) {
                problems.push(
                    "log: an external event log needs a PostgreSQL store (set `store` to postgres://…); \
                     on SQLite the store is the log"
                        .to_string(),
                );
            }
        }
        if !SHUTDOWN_GRACE_SECS.contains(&self.shutdown_grace_secs) {
            problems.push(format!(
                "shutdown_grace_secs: must be {} to {} (is {})",
                SHUTDOWN_GRACE_SECS.start(),
                SHUTDOWN_GRACE_SECS.end(),
                self.shutdown_grace_secs
            ));
        }
        problems
    }

    /// Where the store is: SQLite in `data`, or the PostgreSQL database `store` names.
    pub fn store_location(&self) -> Result<StoreLocation, String> {
        let Some(address) = self.store.as_deref() else {
            return Ok(StoreLocation::Sqlite(self.data.clone()));
        };
        let scheme = address.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("postgres" | "postgresql") => {
                address
                    .parse::<tellify_store::postgres::Config>()
                    .map_err(|error| {
                        format!(
                            "not a PostgreSQL address ({error}): {}",
                            redact_address(address)
                        )
                    })?;
                Ok(StoreLocation::Postgres(address.to_string()))
            }
            Some("sqlite") => Ok(StoreLocation::Sqlite(PathBuf::from(
                &address["sqlite://".len()..],
            ))),
            _ => Err(format!(
                "must be postgres://user:password@host:port/database or sqlite://DIRECTORY (is {})",
                redact_address(address)
            )),
        }
    }

    /// How long a stop may take (`shutdown_grace_secs`).
    pub fn shutdown_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.shutdown_grace_secs)
    }
}

impl Settings {
    /// Every problem of loaded settings beyond their types, each naming its key: ranges,
    /// durations, the outbound allow list, channel, source and exporter settings. `serve`
    /// refuses to start on any; `tellify config check` lists them all.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = self.problems();
        problems.extend(self.jetstream.problems());
        problems.extend(self.http.problems());
        problems.extend(self.auth.problems());
        if let Err(error) = self.notify.policy_limits() {
            problems.push(format!("{error:#}"));
        }
        if let Err(error) = self.notify.rate_window() {
            problems.push(format!("{error:#}"));
        }
        if let Err(error) = self.links.ttl() {
            problems.push(format!("{error:#}"));
        }
        if let Err(error) = crate::outbound::OutboundGuard::new(&self.outbound) {
            problems.push(format!("outbound: {error:#}"));
        }
        if let Err(error) = crate::channels::EmailChannel::new(&self.smtp) {
            problems.push(format!("smtp: {error:#}"));
        }
        for (index, source) in self.sources.amqp.iter().enumerate() {
            if let Err(error) = crate::sources::amqp::AmqpSource::new(source.clone()) {
                problems.push(format!("sources.amqp[{index}]: {error:#}"));
            }
        }
        for (index, source) in self.sources.nats.iter().enumerate() {
            if let Err(error) = crate::sources::nats::NatsSource::new(source.clone()) {
                problems.push(format!("sources.nats[{index}]: {error:#}"));
            }
        }
        if let Err(found) = crate::export::exporters(&self.export) {
            problems.extend(found);
        }
        problems
    }
}

/// The configuration file settings are read from: the one given, else `tellify.toml` when
/// it exists in the working directory, else none.
pub fn config_file(given: Option<&Path>) -> Option<PathBuf> {
    match given {
        Some(path) => Some(path.to_path_buf()),
        None => Some(PathBuf::from("tellify.toml")).filter(|path| path.exists()),
    }
}

/// Checks a configuration offline, as `serve` would load it (the file, or `tellify.toml`
/// when present, then the `TELLIFY_` variables), and returns every problem, each with its
/// key and where it came from, not only the first: a key whose value is wrong is set
/// aside and the rest is read again.
pub fn check(file: Option<&Path>) -> Result<Settings, Vec<String>> {
    let path = match file {
        Some(path) if !path.exists() => {
            return Err(vec![format!(
                "config file {} does not exist",
                path.display()
            )])
        }
        given => config_file(given),
    };
    let mut from_file = match &path {
        Some(path) => {
            let toml = Toml::file(path);
            match toml.data() {
                Ok(mut data) => data.remove(&Profile::Default).unwrap_or_default(),
                Err(error) => return Err(vec![format!("{}: {error}", path.display())]),
            }
        }
        None => Dict::new(),
    };
    let mut from_environment = EnvironmentText::new()
        .data()
        .ok()
        .and_then(|mut data| data.remove(&Profile::Default))
        .unwrap_or_default();
    let file_name = path
        .as_ref()
        .map(|path| path.display().to_string())
        .unwrap_or_default();
    let mut problems = Vec::new();
    // Each round either loads or sets aside at least one key, so this ends.
    for _ in 0..256 {
        let figment = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Layer::new(&file_name, from_file.clone()))
            .merge(Layer::new(ENVIRONMENT, from_environment.clone()));
        match figment.extract_lossy::<Settings>() {
            Ok(settings) => {
                problems.extend(settings.validate());
                return if problems.is_empty() {
                    Ok(settings)
                } else {
                    Err(problems)
                };
            }
            Err(error) => {
                let mut progress = false;
                for problem in error {
                    let key = problem.path.clone();
                    let from_env = problem
                        .metadata
                        .as_ref()
                        .is_some_and(|metadata| metadata.name == ENVIRONMENT);
                    problems.push(describe_problem(&problem));
                    let layer = if from_env {
                        &mut from_environment
                    } else {
                        &mut from_file
                    };
                    progress |= set_aside(layer, &key);
                }
                if !progress {
                    return Err(problems);
                }
            }
        }
    }
    Err(problems)
}

/// Removes `path` from `dict`, or its nearest ancestor that exists (a missing required
/// key is set aside with the table that lacks it); false when nothing could go.
fn set_aside(dict: &mut Dict, path: &[String]) -> bool {
    for length in (1..=path.len()).rev() {
        if remove_at(dict, &path[..length]) {
            return true;
        }
    }
    false
}

fn remove_at(dict: &mut Dict, path: &[String]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    if rest.is_empty() {
        return dict.remove(first).is_some();
    }
    match dict.get_mut(first) {
        Some(value) => remove_in_value(value, rest),
        None => false,
    }
}

fn remove_in_value(value: &mut Value, path: &[String]) -> bool {
    match value {
        Value::Dict(_, inner) => remove_at(inner, path),
        Value::Array(_, items) => {
            let Some((first, rest)) = path.split_first() else {
                return false;
            };
            let Ok(index) = first.parse::<usize>() else {
                return false;
            };
            if index >= items.len() {
                return false;
            }
            if rest.is_empty() {
                items.remove(index);
                true
            } else {
                remove_in_value(&mut items[index], rest)
            }
        }
        _ => false,
    }
}

/// A provider of one already-read layer (the file or the environment), named as `load`
/// names it, so a problem says where it came from.
struct Layer {
    name: String,
    dict: Dict,
}

impl Layer {
    fn new(name: &str, dict: Dict) -> Layer {
        Layer {
            name: name.to_string(),
            dict,
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Every problem of a configuration that did not load: which key, where it came from,
/// what is wrong, and what to do.
fn describe_config_error(error: figment::Error) -> String {
    let lines: Vec<String> = error
        .into_iter()
        .map(|problem| describe_problem(&problem))
        .collect();
    format!(
        "invalid configuration: {}; fix or remove it (every setting is listed under \"Configuration\" in the README)",
        lines.join("; ")
    )
}

/// One problem: which key, where it came from, what is wrong.
fn describe_problem(problem: &figment::Error) -> String {
    let key = problem.path.join(".");
    let source = match &problem.metadata {
        Some(metadata) if metadata.name == ENVIRONMENT => {
            format!("environment variable {}", environment_name(&problem.path))
        }
        Some(metadata) => match &metadata.source {
            Some(source) => source.to_string(),
            None => metadata.name.to_string(),
        },
        None => "the configuration".to_string(),
    };
    let what = problem.kind.to_string();
    if key.is_empty() {
        format!("{what} (in {source})")
    } else {
        format!("`{key}` (in {source}): {what}")
    }
}

const ENVIRONMENT: &str = "TELLIFY_ environment variables";

/// The environment variable that sets `path` (`sms.from` → `TELLIFY_SMS__FROM`); a list
/// entry (`sources.amqp.0.queue`) is set by the list's variable (`TELLIFY_SOURCES__AMQP`).
fn environment_name(path: &[String]) -> String {
    let keys: Vec<String> = path
        .iter()
        .take_while(|key| key.parse::<usize>().is_err())
        .map(|key| key.to_ascii_uppercase())
        .collect();
    if keys == ["LOG"] {
        // `TELLIFY_LOG` is the log filter (see `EnvironmentText`).
        return "TELLIFY_EVENT_LOG".to_string();
    }
    format!("TELLIFY_{}", keys.join("__"))
}

/// `TELLIFY_SECTION__KEY` variables as text, or as an array or table when written as one.
/// figment's own `Env` parses every value (`+15550000000` becomes a number), which a
/// string setting then refuses.
struct EnvironmentText {
    variables: Env,
}

impl EnvironmentText {
    fn new() -> EnvironmentText {
        EnvironmentText {
            variables: Env::prefixed("TELLIFY_")
                .split("__")
                .ignore(&NOT_SETTINGS)
                // `TELLIFY_LOG` is the log filter; the event log's address has its own name.
                .map(|key| {
                    if key == "event_log" {
                        "log".into()
                    } else {
                        key.into()
                    }
                }),
        }
    }
}

impl Provider for EnvironmentText {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENVIRONMENT)
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        let mut settings = Dict::new();
        for (key, text) in self.variables.iter() {
            let value = match text.parse::<Value>() {
                Ok(parsed @ (Value::Array(..) | Value::Dict(..))) => parsed,
                _ => Value::from(text),
            };
            let path: Vec<&str> = key.as_str().split('.').collect();
            insert_at(&mut settings, &path, value);
        }
        Ok(Profile::Default.collect(settings))
    }
}

/// Puts `value` at `path` in `dict`, making the tables on the way.
fn insert_at(dict: &mut Dict, path: &[&str], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        dict.insert(first.to_string(), value);
        return;
    }
    let entry = dict
        .entry(first.to_string())
        .or_insert_with(|| Value::from(Dict::new()));
    if !matches!(entry, Value::Dict(..)) {
        *entry = Value::from(Dict::new());
    }
    if let Value::Dict(_, inner) = entry {
        insert_at(inner, rest, value);
    }
}

/// How far one `GET /api/v1/events` may go (`[search]`): past either bound it answers
/// with what it found and a cursor, so a search never holds the server for long.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSettings {
    /// Longest one request may search, in milliseconds.
    pub time_budget_ms: u64,
    /// Most stored events one request may look at.
    pub max_rows_examined: usize,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            time_budget_ms: 1000,
            max_rows_examined: 20_000,
        }
    }
}

/// `[links]`: the signed "Acknowledge" / "Shelve" links notifications carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinksSettings {
    /// How long a link works after its message was sent (`72h`), 5m to 30d.
    pub ttl: String,
}

impl Default for LinksSettings {
    fn default() -> Self {
        LinksSettings {
            ttl: "72h".to_string(),
        }
    }
}

/// The range of `links.ttl`: long enough to read the message, short enough that an old
/// message lying in a mailbox stops being a key.
pub const LINK_TTL: tellify_model::DurationRange = tellify_model::DurationRange::new(
    jiff::SignedDuration::from_mins(5),
    jiff::SignedDuration::from_hours(30 * 24),
);

impl LinksSettings {
    /// How long a link works; a bad value names its key.
    pub fn ttl(&self) -> anyhow::Result<jiff::SignedDuration> {
        LINK_TTL
            .parse(&self.ttl)
            .map_err(|error| anyhow::anyhow!("links.ttl: {error}"))
    }
}

/// `[alerta]`: the Alerta-compatible API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertaSettings {
    /// The path the API is served under; the `alerta` CLI's `endpoint` is the server's
    /// URL followed by it (`http://tellify:8080/alerta/api`).
    pub prefix: AlertaPrefix,
}

impl Default for AlertaSettings {
    fn default() -> Self {
        AlertaSettings {
            prefix: AlertaPrefix("/alerta/api".to_string()),
        }
    }
}

/// A path prefix the router can nest under: starts with `/`, is not `/` alone, has no
/// trailing `/` and no `{` or `*` (which the router would read as parameters). Checked
/// when the settings load, so a bad value stops the start instead of panicking later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AlertaPrefix(String);

impl AlertaPrefix {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AlertaPrefix {
    type Error = String;

    fn try_from(text: String) -> Result<AlertaPrefix, String> {
        let trimmed = text.trim_end_matches('/');
        if !trimmed.starts_with('/') {
            return Err(format!("alerta.prefix `{text}` must start with `/`"));
        }
        if trimmed.contains(['{', '}', '*']) {
            return Err(format!(
                "alerta.prefix `{text}` must not contain `{{`, `}}` or `*`"
            ));
        }
        Ok(AlertaPrefix(trimmed.to_string()))
    }
}

impl From<AlertaPrefix> for String {
    fn from(prefix: AlertaPrefix) -> String {
        prefix.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_printed_store_address_never_shows_the_password() {
        assert_eq!(
            redact_address("postgres://tellify:s3cret@db.example.com:5432/tellify"),
            "postgres://tellify:***@db.example.com:5432/tellify"
        );
        assert_eq!(
            redact_address("postgres://tellify@db:5432/t?password=s3cret&sslmode=disable"),
            "postgres://tellify@db:5432/t?password=***&sslmode=disable"
        );
        assert_eq!(
            redact_address("postgres://db:5432/t"),
            "postgres://db:5432/t",
            "nothing to hide"
        );
        // A password with an `@` in it: the last `@` ends the credentials.
        assert!(!redact_address("postgres://u:p@ss@db/t").contains("p@ss"));
    }

    #[test]
    fn the_store_setting_names_postgres_or_a_sqlite_directory_and_nothing_else() {
        let with = |store: Option<&str>| Settings {
            store: store.map(str::to_string),
            ..Settings::default()
        };
        assert_eq!(
            with(None).store_location(),
            Ok(StoreLocation::Sqlite(PathBuf::from("tellify-data")))
        );
        assert_eq!(
            with(Some("sqlite:///var/lib/tellify")).store_location(),
            Ok(StoreLocation::Sqlite(PathBuf::from("/var/lib/tellify")))
        );
        assert_eq!(
            with(Some("postgresql://u@db/t")).store_location(),
            Ok(StoreLocation::Postgres("postgresql://u@db/t".to_string()))
        );
        let error = with(Some("mysql://u:hunter2@db/t"))
            .store_location()
            .unwrap_err();
        assert!(error.contains("must be postgres://"), "{error}");
        assert!(
            !error.contains("hunter2"),
            "the password stays hidden: {error}"
        );
        let problems = with(Some("postgres://u:hunter2@db:notaport/t")).validate();
        let problem = problems
            .iter()
            .find(|problem| problem.starts_with("store:"))
            .expect("a bad address is a problem of `store`");
        assert!(!problem.contains("hunter2"), "{problem}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn the_event_log_is_set_by_tellify_event_log_and_needs_a_postgres_store() {
        figment::Jail::expect_with(|jail| {
            // `TELLIFY_LOG` is the log filter, never the event log.
            jail.set_env("TELLIFY_LOG", "nats://127.0.0.1:4222");
            let settings = Settings::load(None).map_err(|error| error.to_string())?;
            assert_eq!(settings.log, None);
            jail.set_env("TELLIFY_EVENT_LOG", "nats://127.0.0.1:4222");
            jail.set_env("TELLIFY_JETSTREAM__REPLICAS", "3");
            let error = Settings::load(None)
                .expect_err("a log on SQLite")
                .to_string();
            assert!(
                error.contains("log: an external event log needs a PostgreSQL store"),
                "{error}"
            );
            jail.set_env("TELLIFY_STORE", "postgres://tellify@db/tellify");
            let settings = Settings::load(None).map_err(|error| error.to_string())?;
            assert_eq!(settings.log.as_deref(), Some("nats://127.0.0.1:4222"));
            assert_eq!(settings.jetstream.replicas, 3);
            jail.set_env("TELLIFY_EVENT_LOG", "redis://u:hunter2@cache:6379");
            let error = Settings::load(None).expect_err("not NATS").to_string();
            assert!(error.contains("log: must be nats://host:port"), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
            assert_eq!(environment_name(&["log".to_string()]), "TELLIFY_EVENT_LOG");
            Ok(())
        });
    }

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

    /// Every leaf key of the default settings whose value is text or absent, as a path.
    fn text_or_absent_keys(value: &Value, path: &mut Vec<String>, keys: &mut Vec<Vec<String>>) {
        match value {
            Value::Dict(_, dict) => {
                for (key, inner) in dict {
                    path.push(key.clone());
                    text_or_absent_keys(inner, path, keys);
                    path.pop();
                }
            }
            Value::String(..) | Value::Empty(..) => keys.push(path.clone()),
            _ => {}
        }
    }

    /// The value at `path` of `settings` as figment sees it.
    fn value_at(settings: &Settings, path: &[String]) -> Option<Value> {
        let value = Value::serialize(settings).ok()?;
        value.find(&path.join("."))
    }

    /// The string settings, found from the defaults so a new one is covered without
    /// listing it: every text or absent leaf that takes an arbitrary word from the
    /// environment as that word (enums, addresses and numbers that default to absent
    /// do not).
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn string_settings(jail: &mut figment::Jail) -> figment::error::Result<Vec<Vec<String>>> {
        let defaults = Value::serialize(Settings::default()).expect("defaults serialize");
        let mut candidates = Vec::new();
        text_or_absent_keys(&defaults, &mut Vec::new(), &mut candidates);
        let mut strings = Vec::new();
        for path in candidates {
            let variable = environment_name(&path);
            jail.set_env(&variable, "some-words");
            if let Ok(settings) = Settings::load(None) {
                if value_at(&settings, &path) == Some(Value::from("some-words")) {
                    strings.push(path);
                }
            }
            std::env::remove_var(&variable);
        }
        Ok(strings)
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn every_string_setting_takes_numeric_looking_environment_values_as_text() {
        figment::Jail::expect_with(|jail| {
            let strings = string_settings(jail)?;
            let names: Vec<String> = strings.iter().map(|path| path.join(".")).collect();
            for expected in [
                "sms.from",
                "smtp.password",
                "public_url",
                "data",
                "notify.min_repeat",
            ] {
                assert!(
                    names.iter().any(|name| name == expected),
                    "{expected} in {names:?}"
                );
            }
            for path in &strings {
                let variable = environment_name(path);
                for text in ["+15550000000", "007", "42", "true", "1.5", "-3"] {
                    jail.set_env(&variable, text);
                    let settings = Settings::load(None)
                        .map_err(|error| format!("{variable}={text}: {error}"))?;
                    assert_eq!(
                        value_at(&settings, path),
                        Some(Value::from(text)),
                        "{variable}={text}"
                    );
                }
                std::env::remove_var(&variable);
            }
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn numeric_and_list_settings_still_parse_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TELLIFY_NOTIFY__MAX_ATTEMPTS", "007");
            jail.set_env("TELLIFY_INGEST__STRICT_TYPES", "true");
            jail.set_env("TELLIFY_SHUTDOWN_GRACE_SECS", "3");
            jail.set_env("TELLIFY_LISTEN", "[::1]:8081");
            jail.set_env("TELLIFY_OUTBOUND__ALLOW", r#"["10.0.0.0/8"]"#);
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.notify.max_attempts, 7);
            assert!(settings.ingest.strict_types);
            assert_eq!(settings.shutdown_grace(), std::time::Duration::from_secs(3));
            assert_eq!(settings.listen, "[::1]:8081".parse().expect("address"));
            assert_eq!(settings.outbound.allow, vec!["10.0.0.0/8".to_string()]);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn a_bad_value_names_the_key_its_variable_and_what_is_expected() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TELLIFY_NOTIFY__MAX_ATTEMPTS", "many");
            let error = Settings::load(None).unwrap_err().to_string();
            assert!(error.contains("`notify.max_attempts`"), "{error}");
            assert!(error.contains("TELLIFY_NOTIFY__MAX_ATTEMPTS"), "{error}");
            assert!(error.contains("expected"), "{error}");
            assert!(error.contains("fix or remove it"), "{error}");
            std::env::remove_var("TELLIFY_NOTIFY__MAX_ATTEMPTS");
            jail.set_env("TELLIFY_SHUTDOWN_GRACE_SECS", "0");
            let error = Settings::load(None).unwrap_err().to_string();
            assert!(
                error.contains("shutdown_grace_secs: must be 1 to 600 (is 0)"),
                "{error}"
            );
            std::env::remove_var("TELLIFY_SHUTDOWN_GRACE_SECS");
            jail.create_file("tellify.toml", "[smtp]\nport = \"twenty-five\"\n")?;
            let error = Settings::load(None).unwrap_err().to_string();
            assert!(error.contains("`smtp.port`"), "{error}");
            assert!(error.contains("tellify.toml"), "{error}");
            Ok(())
        });
    }
}
#[cfg(test)]
mod example {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../tellify.example.toml");

    /// The lines of `section` (`""` for the top level; a commented header counts), so a
    /// key is looked for where the file puts it.
    fn section_lines(section: &str) -> Vec<&'static str> {
        let mut current = String::new();
        let mut lines = Vec::new();
        for line in EXAMPLE.lines() {
            let bare = line.trim_start_matches('#').trim();
            if bare.starts_with('[') && bare.ends_with(']') {
                current = bare.trim_matches(|c| c == '[' || c == ']').to_string();
                continue;
            }
            if current == section {
                lines.push(line);
            }
        }
        lines
    }

    fn assert_every_key_shown(section: &str, defaults: &serde_json::Value) {
        let lines = section_lines(section);
        for (key, value) in defaults.as_object().expect("a table") {
            if value.is_object() {
                assert_every_key_shown(key, value);
                continue;
            }
            let shown = lines.iter().any(|line| {
                let bare = line.trim_start_matches('#').trim_start();
                bare.strip_prefix(key.as_str())
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            });
            let table_list = format!("[[{section}.{key}]]");
            let shown = shown || (value == &serde_json::json!([]) && EXAMPLE.contains(&table_list));
            assert!(shown, "tellify.example.toml lacks `{key}` in [{section}]");
        }
    }

    #[test]
    fn the_example_shows_every_setting_and_its_active_lines_are_the_defaults() {
        let figment =
            Figment::from(Serialized::defaults(Settings::default())).merge(Toml::string(EXAMPLE));
        let settings: Settings = figment.extract().expect("the example loads");
        assert_eq!(settings, Settings::default());
        let defaults = serde_json::to_value(Settings::default()).unwrap();
        assert_every_key_shown("", &defaults);
        let syslog =
            serde_json::to_value(crate::export::syslog::SyslogSettings::default()).unwrap();
        assert_every_key_shown("export.syslog", &syslog);
    }
}
