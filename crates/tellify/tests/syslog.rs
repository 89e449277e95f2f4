//! Syslog export end to end: a real tellify forwards to a syslog receiver run by the
//! test, which goes away and comes back, and tellify itself restarts on its data dir.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tellify::app::RunningApp;
use tellify::clock::ManualClock;
use tellify::config::Settings;
use tellify::export::syslog::{SyslogSettings, Transport, What};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

struct App {
    app: RunningApp,
    base: String,
    token: String,
    client: reqwest::Client,
}

async fn start_app(data: &Path, token: &str, syslog: SyslogSettings) -> App {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().expect("address"),
        data: data.to_path_buf(),
        ..Settings::default()
    };
    // Local test servers listen on loopback, which the outbound guard refuses by default.
    settings.outbound.allow = vec!["127.0.0.0/8".to_string(), "::1".to_string()];
    settings.export.syslog = vec![syslog];
    let clock = Arc::new(ManualClock::new(
        "2026-11-23T09:00:00Z".parse().expect("time"),
    ));
    let app = tellify::app::start(settings, clock, Some(token.to_string()))
        .await
        .expect("app starts");
    App {
        base: format!("http://{}", app.address),
        app,
        token: token.to_string(),
        client: reqwest::Client::new(),
    }
}

impl App {
    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// Sends one event per message, in one batch; returns their ids.
    async fn send(&self, messages: &[(&str, &str)]) -> Vec<String> {
        let events: Vec<Value> = messages
            .iter()
            .map(|(message, severity)| {
                json!({"type": "disk", "message": message, "severity": severity, "fields": {"fs": "/data"}})
            })
            .collect();
        let body = self.post("/api/v1/events", json!(events)).await;
        body["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|id| id.as_str().expect("id").to_string())
            .collect()
    }
}

fn tcp_settings(port: u16) -> SyslogSettings {
    SyslogSettings {
        address: format!("127.0.0.1:{port}"),
        transport: Transport::Tcp,
        what: vec![What::Events],
        retry_initial_ms: 20,
        retry_max_ms: 100,
        ..SyslogSettings::default()
    }
}

/// A syslog receiver over TCP with octet-counting framing; every frame it reads goes to
/// the test. Stopping it closes the listener and every accepted connection.
struct Receiver {
    frames: mpsc::UnboundedReceiver<String>,
    task: JoinHandle<()>,
    port: u16,
}

impl Receiver {
    async fn start(port: u16) -> Receiver {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .expect("bind");
        let listener: TcpListener = socket.listen(16).expect("listen");
        let port = listener.local_addr().expect("address").port();
        let (sender, frames) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(read_frames(stream, sender.clone()));
            }
        });
        Receiver { frames, task, port }
    }

    async fn next(&mut self) -> Frame {
        let text = tokio::time::timeout(WAIT, self.frames.recv())
            .await
            .expect("a syslog frame arrives")
            .expect("receiver running");
        Frame::parse(&text)
    }

    /// Aborting the accept task drops the listener and the connection tasks with it.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn read_frames(mut stream: tokio::net::TcpStream, sender: mpsc::UnboundedSender<String>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(space) = buffer.iter().position(|b| *b == b' ') {
            let length: usize = std::str::from_utf8(&buffer[..space])
                .expect("ascii length")
                .parse()
                .expect("octet count");
            if buffer.len() < space + 1 + length {
                break;
            }
            let frame = buffer[space + 1..space + 1 + length].to_vec();
            buffer.drain(..space + 1 + length);
            let _ = sender.send(String::from_utf8(frame).expect("utf-8 frame"));
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}

/// An RFC 5424 message taken apart.
#[derive(Debug)]
struct Frame {
    priority: u16,
    version: String,
    app_name: String,
    msgid: String,
    sd_id: String,
    params: Vec<(String, String)>,
    message: String,
}

impl Frame {
    fn parse(text: &str) -> Frame {
        let rest = text.strip_prefix('<').expect("PRI");
        let (priority, rest) = rest.split_once('>').expect("PRI end");
        let mut header = rest.splitn(7, ' ');
        let version = header.next().expect("VERSION").to_string();
        let timestamp = header.next().expect("TIMESTAMP");
        assert!(
            timestamp.parse::<jiff::Timestamp>().is_ok(),
            "timestamp {timestamp}"
        );
        let _hostname = header.next().expect("HOSTNAME");
        let app_name = header.next().expect("APP-NAME").to_string();
        let _procid = header.next().expect("PROCID");
        let msgid = header.next().expect("MSGID").to_string();
        let rest = header.next().expect("SD");
        let rest = rest.strip_prefix('[').expect("one SD-ELEMENT");
        let (sd_id, mut rest) = rest.split_once(' ').expect("SD-ID");
        let mut params = Vec::new();
        while !rest.starts_with(']') {
            let (name, after) = rest.split_once("=\"").expect("PARAM-NAME");
            let mut value = String::new();
            let mut characters = after.char_indices();
            let end = loop {
                let (index, character) = characters.next().expect("PARAM-VALUE end");
                match character {
                    '\\' => value.push(characters.next().expect("escaped").1),
                    '"' => break index,
                    other => value.push(other),
                }
            };
            params.push((name.to_string(), value));
            rest = after[end + 1..].trim_start_matches(' ');
        }
        let message = rest[1..].strip_prefix(' ').unwrap_or_default().to_string();
        Frame {
            priority: priority.parse().expect("priority"),
            version,
            app_name,
            msgid,
            sd_id: sd_id.to_string(),
            params,
            message,
        }
    }

    fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("no {name} in {self:?}"))
    }
}

async fn messages(receiver: &mut Receiver, count: usize) -> Vec<String> {
    let mut found = Vec::new();
    for _ in 0..count {
        found.push(receiver.next().await.message);
    }
    found
}

#[tokio::test]
async fn tcp_export_survives_receiver_outages_and_restarts_without_gaps() {
    let data = tempfile::tempdir().expect("temp dir");
    let token = format!("tfy_admin_{}", tellify_model::new_id());
    let mut receiver = Receiver::start(0).await;
    let port = receiver.port;
    let app = start_app(data.path(), &token, tcp_settings(port)).await;

    let ids = app
        .send(&[("one", "critical"), ("two", "warning"), ("three", "info")])
        .await;
    let mut frames = Vec::new();
    for _ in 0..3 {
        frames.push(receiver.next().await);
    }
    let expected = [
        ("one", "critical", 10),
        ("two", "warning", 12),
        ("three", "info", 14),
    ];
    let mut last_seq = 0;
    for ((frame, id), (message, severity, priority)) in frames.iter().zip(&ids).zip(expected) {
        assert_eq!(frame.priority, priority, "facility user (1) * 8 + severity");
        assert_eq!(frame.version, "1");
        assert_eq!(frame.app_name, "tellify");
        assert_eq!(frame.msgid, "event");
        assert_eq!(frame.sd_id, "event@32473");
        assert_eq!(frame.param("id"), id);
        assert_eq!(frame.param("type"), "disk");
        assert_eq!(frame.param("severity"), severity);
        assert_eq!(frame.message, message);
        let seq: i64 = frame.param("seq").parse().expect("seq");
        assert!(seq > last_seq, "in log order");
        last_seq = seq;
    }

    // The receiver goes away; what is sent meanwhile arrives once it is back.
    receiver.stop().await;
    app.send(&[("four", "info"), ("five", "info")]).await;
    app.send(&[("six", "warning")]).await;
    let mut receiver = Receiver::start(port).await;
    assert_eq!(
        messages(&mut receiver, 3).await,
        vec!["four", "five", "six"],
        "nothing skipped, nothing sent twice"
    );

    // Down again, and tellify restarts before it comes back: the saved position, not
    // the start or the end of the log, is where the new process goes on.
    receiver.stop().await;
    app.send(&[("seven", "info"), ("eight", "critical")]).await;
    app.app.stop().await.expect("clean stop");
    let mut receiver = Receiver::start(port).await;
    let app = start_app(data.path(), &token, tcp_settings(port)).await;
    assert_eq!(messages(&mut receiver, 2).await, vec!["seven", "eight"]);
    app.send(&[("nine", "info")]).await;
    assert_eq!(messages(&mut receiver, 1).await, vec!["nine"]);
    app.app.stop().await.expect("clean stop");
    receiver.stop().await;
}

#[tokio::test]
async fn alert_changes_and_filtered_events_are_exported() {
    let data = tempfile::tempdir().expect("temp dir");
    let token = format!("tfy_admin_{}", tellify_model::new_id());
    let mut receiver = Receiver::start(0).await;
    let settings = SyslogSettings {
        what: vec![What::Alerts, What::Events],
        filter: Some("severity == \"critical\"".to_string()),
        facility: "local0".to_string(),
        ..tcp_settings(receiver.port)
    };
    let app = start_app(data.path(), &token, settings).await;
    let subscription = app
        .post(
            "/api/v1/subscriptions",
            json!({"kind": "match", "title": "disk trouble", "params": {"filter": "fs == \"/data\""}}),
        )
        .await;
    let subscription_id = subscription["id"].as_str().expect("id").to_string();
    let ids = app
        .send(&[("quiet", "info"), ("disk on fire", "critical")])
        .await;

    let mut event = None;
    let mut alert = None;
    while event.is_none() || alert.is_none() {
        let frame = receiver.next().await;
        match frame.msgid.as_str() {
            "event" => {
                assert!(event.is_none(), "only the critical event passes the filter");
                event = Some(frame);
            }
            "alert" => {
                if frame.param("action") == "fired" {
                    alert = Some(frame);
                }
            }
            other => panic!("unexpected msgid {other}"),
        }
    }
    let event = event.expect("event frame");
    assert_eq!(event.param("id"), ids[1]);
    assert_eq!(event.priority, 16 * 8 + 2, "local0, crit");
    let alert = alert.expect("alert frame");
    assert_eq!(alert.sd_id, "alert@32473");
    assert_eq!(alert.param("subscription"), subscription_id);
    assert_eq!(alert.param("actor"), "tellify");
    let alert_id = alert.param("id").to_string();

    app.post(
        &format!("/api/v1/alerts/{alert_id}/ack"),
        json!({"note": "on it"}),
    )
    .await;
    loop {
        let frame = receiver.next().await;
        if frame.msgid == "alert" && frame.param("action") == "acked" {
            assert_eq!(frame.param("id"), alert_id);
            assert_eq!(frame.param("actor"), "admin");
            break;
        }
    }
    app.app.stop().await.expect("clean stop");
    receiver.stop().await;
}

#[tokio::test]
async fn udp_export_sends_one_datagram_per_message() {
    let data = tempfile::tempdir().expect("temp dir");
    let token = format!("tfy_admin_{}", tellify_model::new_id());
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let settings = SyslogSettings {
        address: socket.local_addr().expect("address").to_string(),
        transport: Transport::Udp,
        what: vec![What::Events],
        app_name: "tellify-udp".to_string(),
        ..SyslogSettings::default()
    };
    let app = start_app(data.path(), &token, settings).await;
    let ids = app.send(&[("over udp", "warning")]).await;
    let mut datagram = vec![0u8; 65536];
    let length = tokio::time::timeout(WAIT, socket.recv(&mut datagram))
        .await
        .expect("a datagram arrives")
        .expect("recv");
    let frame = Frame::parse(std::str::from_utf8(&datagram[..length]).expect("utf-8"));
    assert_eq!(frame.priority, 12);
    assert_eq!(frame.app_name, "tellify-udp");
    assert_eq!(frame.param("id"), ids[0]);
    assert_eq!(frame.message, "over udp");
    app.app.stop().await.expect("clean stop");
}
