//! Syslog export: events and alert changes as RFC 5424 messages, over TCP (octet-counting
//! framing, RFC 6587 §3.4.1) or UDP (one message per datagram, RFC 5426).
//!
//! Over TCP nothing is skipped: a batch's position is saved only after the batch was
//! written and flushed; while the receiver is unreachable the exporter retries with
//! backoff and does not move on. Before each batch it checks whether the receiver closed
//! the connection (a syslog receiver never writes back, so a readable socket means it
//! is gone): without that check, the first write after the receiver went away would be
//! accepted by the local kernel and lost. Syslog over TCP has no acknowledgements, so a
//! receiver that crashes with messages in its socket buffer still loses those; RELP would
//! be needed to close that window. UDP is best effort by nature: a datagram lost in flight
//! or sent while nobody listens is gone, and the position moves on regardless.
//!
//! Messages are formatted here rather than with the `fasyslog` crate: its formatter
//! stamps every message with the current time, while a message sent after an outage must
//! carry the time of its event; and its senders are blocking sockets without
//! octet-counting framing.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tellify_engine::filter::{EventContext, Filter};
use tellify_model::{Severity, StoredEvent};
use tellify_store::{LoggedAlertChange, Store, StoreError};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

use crate::backoff::{Backoff, Jitter, Streak};
use crate::services::AppState;

/// `[[export.syslog]]`: one syslog receiver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogSettings {
    /// Names this exporter's saved positions; defaults to `syslog:<transport>:<address>`.
    /// Set it before changing the address if the new receiver should continue where the
    /// old one stopped instead of starting afresh.
    pub name: Option<String>,
    /// The receiver, `host:port`; the host is resolved again on every reconnect.
    pub address: String,
    /// `tcp` (no gaps) or `udp` (best effort).
    pub transport: Transport,
    /// What is forwarded: `events` (every stored event, in log order) and `alerts` (every
    /// alert transition, in the order it was recorded).
    pub what: Vec<What>,
    /// A CEL expression over events (as in subscriptions); only matching events are
    /// forwarded. Alert changes are not filtered.
    pub filter: Option<String>,
    /// The APP-NAME of every message.
    pub app_name: String,
    /// The syslog facility: `kern`, `user`, `mail`, `daemon`, `auth`, `syslog`, `lpr`,
    /// `news`, `uucp`, `cron`, `authpriv`, `ftp`, `ntp`, `audit`, `alert`, `clock`,
    /// `local0` … `local7`.
    pub facility: String,
    /// The HOSTNAME of every message; defaults to this machine's host name.
    pub hostname: Option<String>,
    /// Where an exporter without a saved position starts: `end` forwards only what comes
    /// after its first start, `beginning` forwards the whole log and history first.
    pub start_at: StartAt,
    /// Messages read, sent and saved together.
    pub batch_size: usize,
    /// Longest message in bytes; a longer message text is cut (at a character boundary),
    /// since receivers and UDP datagrams have limits.
    pub max_message_bytes: usize,
    /// The wait after the first failed connect or send, in milliseconds; it doubles with
    /// each further failure, with jitter, up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// How long a connect or a batch's write may take before the connection is dropped
    /// and the batch retried, in seconds.
    pub timeout_secs: u64,
}

impl Default for SyslogSettings {
    fn default() -> Self {
        SyslogSettings {
            name: None,
            address: "127.0.0.1:514".to_string(),
            transport: Transport::Tcp,
            what: vec![What::Events, What::Alerts],
            filter: None,
            app_name: "tellify".to_string(),
            facility: "user".to_string(),
            hostname: None,
            start_at: StartAt::End,
            batch_size: 500,
            max_message_bytes: 8192,
            retry_initial_ms: 500,
            retry_max_ms: 30_000,
            timeout_secs: 10,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum What {
    Events,
    Alerts,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    #[default]
    End,
    Beginning,
}

/// The SD-ID enterprise number: 32473 is the one RFC 5612 reserves for documentation and
/// examples, used until tellify has its own.
const ENTERPRISE: &str = "32473";
/// How often the store is looked at when no processing progress wakes the exporter.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// One configured receiver and the two streams it may forward.
pub struct SyslogExporter {
    name: String,
    settings: SyslogSettings,
    filter: Option<Filter>,
    format: Format,
}

impl SyslogExporter {
    /// Checks the settings; every problem comes back, each prefixed with its field.
    pub fn new(settings: &SyslogSettings) -> Result<SyslogExporter, Vec<String>> {
        let mut problems = Vec::new();
        if settings.address.trim().is_empty() {
            problems.push("address: must not be empty".to_string());
        }
        if settings.what.is_empty() {
            problems.push("what: must name `events`, `alerts` or both".to_string());
        }
        let filter = match settings.filter.as_deref() {
            Some(source) => match Filter::compile(source) {
                Ok(filter) => Some(filter),
                Err(error) => {
                    problems.push(format!("filter: {error}"));
                    None
                }
            },
            None => None,
        };
        let facility = match facility_code(&settings.facility) {
            Some(code) => code,
            None => {
                problems.push(format!(
                    "facility: unknown facility `{}`",
                    settings.facility
                ));
                0
            }
        };
        if !is_header_field(&settings.app_name, 48) {
            problems.push(
                "app_name: must be 1 to 48 printable ASCII characters without spaces".to_string(),
            );
        }
        if let Some(hostname) = &settings.hostname {
            if !is_header_field(hostname, 255) {
                problems.push(
                    "hostname: must be 1 to 255 printable ASCII characters without spaces"
                        .to_string(),
                );
            }
        }
        if settings.batch_size == 0 {
            problems.push("batch_size: must be at least 1".to_string());
        }
        if settings.max_message_bytes < 480 {
            problems.push("max_message_bytes: must be at least 480 (RFC 5424 §6.1)".to_string());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let hostname = settings.hostname.clone().unwrap_or_else(local_hostname);
        let name = settings.name.clone().unwrap_or_else(|| {
            format!(
                "syslog:{}:{}",
                settings.transport.as_str(),
                settings.address
            )
        });
        Ok(SyslogExporter {
            name,
            settings: settings.clone(),
            filter,
            format: Format {
                facility,
                hostname,
                app_name: settings.app_name.clone(),
                procid: std::process::id().to_string(),
                max_bytes: settings.max_message_bytes,
            },
        })
    }

    /// The name its positions are saved under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Forwards until `shutdown` flips to true. Failures never end the task: a store or
    /// receiver that is away is retried with backoff, without moving the positions.
    pub async fn run(&self, services: AppState, mut shutdown: watch::Receiver<bool>) {
        let store = services.store.clone();
        let initial = Duration::from_millis(self.settings.retry_initial_ms.max(1));
        let mut state = RunState {
            positions: None,
            connection: None,
            // Jitter (between half and all of the step), so several exporters do not
            // reconnect in lockstep.
            backoff: Streak::new(
                Backoff::new(
                    initial,
                    Duration::from_millis(self.settings.retry_max_ms).max(initial),
                ),
                Jitter::Random,
            ),
        };
        tracing::info!(exporter = %self.name, address = %self.settings.address, "syslog export started");
        loop {
            if *shutdown.borrow() {
                return;
            }
            let seen = services.worker.processed();
            let wait = match self.step(store.as_ref(), &mut state).await {
                Ok(true) => {
                    state.backoff.reset();
                    continue;
                }
                Ok(false) => None,
                Err(failure) => {
                    if let Failure::Send(_) = failure {
                        state.connection = None;
                    }
                    let delay = state.backoff.next_delay();
                    tracing::warn!(
                        exporter = %self.name,
                        retry_in_ms = delay.as_millis() as u64,
                        error = %failure,
                        "syslog export failed"
                    );
                    Some(delay)
                }
            };
            match wait {
                Some(delay) => {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                // Processing progress means new events or alert changes; the poll covers
                // events the worker has not reached yet.
                None => {
                    tokio::select! {
                        _ = services.worker.wait_for(seen + 1) => {}
                        _ = tokio::time::sleep(POLL_EVERY) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    /// Forwards one batch of each stream; true when there was anything to forward.
    async fn step(&self, store: &dyn Store, state: &mut RunState) -> Result<bool, Failure> {
        let positions = match state.positions {
            Some(positions) => positions,
            None => {
                let loaded = self.load_positions(store).await?;
                crate::telemetry::export_position(&self.name, "events", loaded.events);
                crate::telemetry::export_position(&self.name, "alerts", loaded.alerts);
                state.positions = Some(loaded);
                loaded
            }
        };
        let mut progressed = false;
        if self.settings.what.contains(&What::Events) {
            let events = store
                .events_after(positions.events, self.settings.batch_size)
                .await?;
            if let Some(last) = events.last().map(|event| event.seq) {
                let frames: Vec<Vec<u8>> = events
                    .iter()
                    .filter(|event| self.wanted(event))
                    .map(|event| self.format.event(event))
                    .collect();
                self.send(state, &frames).await?;
                store.save_export_position(&self.events_key(), last).await?;
                crate::telemetry::export_position(&self.name, "events", last);
                if let Some(saved) = state.positions.as_mut() {
                    saved.events = last;
                }
                progressed = true;
            }
        }
        if self.settings.what.contains(&What::Alerts) {
            let changes = store
                .alert_changes_after(positions.alerts, self.settings.batch_size)
                .await?;
            if let Some(last) = changes.last().map(|change| change.position) {
                let frames: Vec<Vec<u8>> = changes
                    .iter()
                    .map(|change| self.format.alert_change(change))
                    .collect();
                self.send(state, &frames).await?;
                store.save_export_position(&self.alerts_key(), last).await?;
                crate::telemetry::export_position(&self.name, "alerts", last);
                if let Some(saved) = state.positions.as_mut() {
                    saved.alerts = last;
                }
                progressed = true;
            }
        }
        Ok(progressed)
    }

    fn wanted(&self, event: &StoredEvent) -> bool {
        match &self.filter {
            Some(filter) => filter.matches(&EventContext::new(event)),
            None => true,
        }
    }

    /// The saved positions, or (first start) the starting point, saved at once so a
    /// restart before the first message does not start again from a later end.
    async fn load_positions(&self, store: &dyn Store) -> Result<Positions, Failure> {
        let events = match store.export_position(&self.events_key()).await? {
            Some(position) => position,
            None => {
                let start = match self.settings.start_at {
                    StartAt::End => store.last_seq().await?,
                    StartAt::Beginning => 0,
                };
                store
                    .save_export_position(&self.events_key(), start)
                    .await?;
                start
            }
        };
        let alerts = match store.export_position(&self.alerts_key()).await? {
            Some(position) => position,
            None => {
                let start = match self.settings.start_at {
                    StartAt::End => store.last_alert_change().await?,
                    StartAt::Beginning => 0,
                };
                store
                    .save_export_position(&self.alerts_key(), start)
                    .await?;
                start
            }
        };
        Ok(Positions { events, alerts })
    }

    /// Sends a batch over the current connection, opening one first when there is none
    /// or the receiver closed it. Returns only once the batch is written and flushed.
    async fn send(&self, state: &mut RunState, frames: &[Vec<u8>]) -> Result<(), Failure> {
        if frames.is_empty() {
            return Ok(());
        }
        if state.connection.as_ref().is_some_and(Connection::is_closed) {
            tracing::info!(exporter = %self.name, "syslog receiver closed the connection");
            state.connection = None;
        }
        let timeout = Duration::from_secs(self.settings.timeout_secs.max(1));
        let connection = match &mut state.connection {
            Some(connection) => connection,
            None => {
                let opened = tokio::time::timeout(
                    timeout,
                    Connection::open(self.settings.transport, &self.settings.address),
                )
                .await
                .map_err(|_| Failure::Send(io::Error::from(io::ErrorKind::TimedOut)))?
                .map_err(Failure::Send)?;
                tracing::info!(exporter = %self.name, address = %self.settings.address, "syslog receiver connected");
                state.connection.insert(opened)
            }
        };
        tokio::time::timeout(timeout, connection.send(frames))
            .await
            .map_err(|_| Failure::Send(io::Error::from(io::ErrorKind::TimedOut)))?
            .map_err(Failure::Send)
    }

    fn events_key(&self) -> String {
        format!("{}/events", self.name)
    }

    fn alerts_key(&self) -> String {
        format!("{}/alerts", self.name)
    }
}

#[derive(Clone, Copy, Debug)]
struct Positions {
    events: i64,
    alerts: i64,
}

struct RunState {
    positions: Option<Positions>,
    connection: Option<Connection>,
    backoff: Streak,
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot send: {0}")]
    Send(io::Error),
}

enum Connection {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

impl Connection {
    async fn open(transport: Transport, address: &str) -> io::Result<Connection> {
        match transport {
            Transport::Tcp => {
                let stream = TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                Ok(Connection::Tcp(stream))
            }
            Transport::Udp => {
                let target: SocketAddr = tokio::net::lookup_host(address)
                    .await?
                    .next()
                    .ok_or_else(|| io::Error::other("address resolves to nothing"))?;
                let local: SocketAddr = if target.is_ipv4() {
                    SocketAddr::from(([0, 0, 0, 0], 0))
                } else {
                    SocketAddr::from(([0u16; 8], 0))
                };
                let socket = UdpSocket::bind(local).await?;
                socket.connect(target).await?;
                Ok(Connection::Udp(socket))
            }
        }
    }

    /// Whether the receiver has closed a TCP connection (or sent something, which a
    /// syslog receiver never does). UDP has no connection to lose.
    fn is_closed(&self) -> bool {
        let Connection::Tcp(stream) = self else {
            return false;
        };
        let mut probe = [0u8; 64];
        match stream.try_read(&mut probe) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => false,
            Ok(_) | Err(_) => true,
        }
    }

    async fn send(&mut self, frames: &[Vec<u8>]) -> io::Result<()> {
        match self {
            Connection::Tcp(stream) => {
                let mut buffer = Vec::with_capacity(frames.iter().map(|f| f.len() + 8).sum());
                for frame in frames {
                    buffer.extend_from_slice(frame.len().to_string().as_bytes());
                    buffer.push(b' ');
                    buffer.extend_from_slice(frame);
                }
                stream.write_all(&buffer).await?;
                stream.flush().await
            }
            Connection::Udp(socket) => {
                for frame in frames {
                    socket.send(frame).await?;
                }
                Ok(())
            }
        }
    }
}

/// The parts of the header that are the same for every message of an exporter.
struct Format {
    facility: u8,
    hostname: String,
    app_name: String,
    procid: String,
    max_bytes: usize,
}

impl Format {
    /// `MSGID event`, structured data `event@…` with the event's id, position, type,
    /// severity and source; the message is the event's message.
    fn event(&self, event: &StoredEvent) -> Vec<u8> {
        let mut data = StructuredData::new("event");
        data.param("id", &event.id);
        data.param("seq", &event.seq.to_string());
        if let Some(event_type) = &event.event_type {
            data.param("type", event_type);
        }
        data.param("severity", event.severity.as_str());
        if let Some(host) = &event.source.host {
            data.param("host", host);
        }
        if let Some(component) = &event.source.component {
            data.param("component", component);
        }
        if let Some(producer) = &event.source.producer {
            data.param("producer", producer);
        }
        self.message(
            event.severity,
            event.time,
            "event",
            &data.finish(),
            event.message.as_deref().unwrap_or_default(),
        )
    }

    /// `MSGID alert`, structured data `alert@…` with the alert's id, the transition, its
    /// severity, the subscription and who acted; the message is the one the transition
    /// carried, else the alert's.
    fn alert_change(&self, change: &LoggedAlertChange) -> Vec<u8> {
        let alert = &change.alert;
        let severity = change
            .entry
            .detail
            .get("severity")
            .and_then(|value| serde_json::from_value::<Severity>(value.clone()).ok())
            .unwrap_or(alert.severity);
        let message = change
            .entry
            .detail
            .get("message")
            .and_then(|value| value.as_str())
            .unwrap_or(&alert.message);
        let mut data = StructuredData::new("alert");
        data.param("id", &alert.id);
        data.param("action", change.entry.action.as_str());
        data.param("severity", severity.as_str());
        data.param("subscription", &alert.subscription_id);
        data.param("title", &alert.title);
        data.param("actor", &change.entry.actor);
        data.param("position", &change.position.to_string());
        self.message(severity, change.entry.at, "alert", &data.finish(), message)
    }

    fn message(
        &self,
        severity: Severity,
        time: Timestamp,
        msgid: &str,
        structured_data: &str,
        text: &str,
    ) -> Vec<u8> {
        let priority = u16::from(self.facility) * 8 + u16::from(syslog_severity(severity));
        let mut message = format!(
            "<{priority}>1 {time:.6} {} {} {} {msgid} {structured_data}",
            self.hostname, self.app_name, self.procid
        )
        .into_bytes();
        if text.is_empty() {
            return message;
        }
        message.push(b' ');
        // RFC 5424 §6.4: a message in Unicode starts with a BOM; plain ASCII needs none.
        if !text.is_ascii() {
            message.extend_from_slice("\u{feff}".as_bytes());
        }
        let room = self.max_bytes.saturating_sub(message.len());
        message.extend_from_slice(cut_at_char(text, room).as_bytes());
        message
    }
}

/// Critical is `crit` (2), warning `warning` (4), info `informational` (6).
fn syslog_severity(severity: Severity) -> u8 {
    match severity {
        Severity::Critical => 2,
        Severity::Warning => 4,
        Severity::Info => 6,
    }
}

/// One SD-ELEMENT; PARAM-VALUEs are escaped as RFC 5424 §6.3.3 asks (`"`, `\` and `]`).
struct StructuredData {
    text: String,
}

impl StructuredData {
    fn new(name: &str) -> StructuredData {
        StructuredData {
            text: format!("[{name}@{ENTERPRISE}"),
        }
    }

    fn param(&mut self, name: &str, value: &str) {
        self.text.push(' ');
        self.text.push_str(name);
        self.text.push_str("=\"");
        for character in value.chars() {
            if matches!(character, '"' | '\\' | ']') {
                self.text.push('\\');
            }
            self.text.push(character);
        }
        self.text.push('"');
    }

    fn finish(mut self) -> String {
        self.text.push(']');
        self.text
    }
}

fn cut_at_char(text: &str, bytes: usize) -> &str {
    if text.len() <= bytes {
        return text;
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// HOSTNAME, APP-NAME and the like are 1 to `max` PRINTUSASCII characters (RFC 5424 §6).
fn is_header_field(text: &str, max: usize) -> bool {
    !text.is_empty() && text.len() <= max && text.bytes().all(|b| (33..=126).contains(&b))
}

/// This machine's host name, made fit for the HOSTNAME field, or `-` (NILVALUE).
fn local_hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if name.is_empty() {
        "-".to_string()
    } else {
        name
    }
}

fn facility_code(name: &str) -> Option<u8> {
    let code = match name {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        "ntp" => 12,
        "audit" => 13,
        "alert" => 14,
        "clock" => 15,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    };
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format() -> Format {
        Format {
            facility: 1,
            hostname: "box".to_string(),
            app_name: "tellify".to_string(),
            procid: "42".to_string(),
            max_bytes: 8192,
        }
    }

    #[test]
    fn events_become_rfc5424_messages_with_their_own_time() {
        let input = tellify_model::EventInput {
            message: Some("disk \"full\" ]now".to_string()),
            event_type: Some("disk".to_string()),
            severity: Some(Severity::Critical),
            time: Some("2026-11-23T09:00:00.5Z".parse().unwrap()),
            ..Default::default()
        };
        let mut event = StoredEvent::from_input(
            input,
            Some("p".to_string()),
            "2026-11-23T10:00:00Z".parse().unwrap(),
            0,
        );
        event.id = "E1".to_string();
        event.seq = 7;
        let text = String::from_utf8(format().event(&event)).unwrap();
        assert_eq!(
            text,
            "<10>1 2026-11-23T09:00:00.500000Z box tellify 42 event \
             [event@32473 id=\"E1\" seq=\"7\" type=\"disk\" severity=\"critical\" producer=\"p\"] \
             disk \"full\" ]now"
        );
    }

    #[test]
    fn severities_map_to_crit_warning_and_informational() {
        assert_eq!(syslog_severity(Severity::Critical), 2);
        assert_eq!(syslog_severity(Severity::Warning), 4);
        assert_eq!(syslog_severity(Severity::Info), 6);
        let text = String::from_utf8(format().message(
            Severity::Info,
            Timestamp::UNIX_EPOCH,
            "event",
            "-",
            "",
        ))
        .unwrap();
        assert!(
            text.starts_with("<14>1 1970-01-01T00:00:00.000000Z "),
            "{text}"
        );
        assert!(text.ends_with(" event -"), "{text}");
    }

    #[test]
    fn param_values_are_escaped_and_long_unicode_text_is_cut_whole() {
        let mut data = StructuredData::new("alert");
        data.param("title", r#"a"b\c]d"#);
        assert_eq!(data.finish(), r#"[alert@32473 title="a\"b\\c\]d"]"#);
        let mut small = format();
        small.max_bytes = 70;
        let message = small.message(
            Severity::Info,
            Timestamp::UNIX_EPOCH,
            "event",
            "-",
            "ääääääääää",
        );
        assert!(message.len() <= 70);
        let text = String::from_utf8(message).expect("cut at a character boundary");
        assert!(text.contains("\u{feff}ä"), "{text}");
    }

    #[test]
    fn bad_settings_report_every_problem_with_its_field() {
        let settings = SyslogSettings {
            address: String::new(),
            what: vec![],
            filter: Some("severity ==".to_string()),
            facility: "local9".to_string(),
            app_name: "has space".to_string(),
            ..Default::default()
        };
        let problems = SyslogExporter::new(&settings).err().unwrap();
        let fields: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            fields,
            vec!["address", "what", "filter", "facility", "app_name"]
        );
        let fine = SyslogExporter::new(&SyslogSettings::default())
            .ok()
            .unwrap();
        assert_eq!(fine.name(), "syslog:tcp:127.0.0.1:514");
    }
}
