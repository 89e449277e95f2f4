//! Real receivers for notification tests: a small tokio SMTP server and an HTTP
//! sink standing in for SMS providers, webhooks and chat. Shared by the test binaries
//! with `#[path = "../support/mod.rs"] mod support;`.
#![allow(dead_code)]

pub mod nats;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The `{public}act/TOKEN` links of a message, in order; quoted-printable soft breaks and
/// `=3D` are undone first.
pub fn act_tokens(data: &str, public: &str) -> Vec<String> {
    let joined = data
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let marker = format!("{public}act/");
    let mut links = Vec::new();
    let mut rest = joined.as_str();
    while let Some(start) = rest.find(&marker) {
        rest = &rest[start + marker.len()..];
        let token: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        links.push(token);
    }
    links
}

/// A free TCP port on 127.0.0.1 (nothing listens on it when this returns).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[derive(Clone, Debug, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent: headers and the MIME body.
    pub data: String,
}

impl Mail {
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.data
            .lines()
            .take_while(|line| !line.is_empty())
            .find(|line| line.to_ascii_lowercase().starts_with(&prefix))
            .map(|line| line[prefix.len()..].trim().to_string())
    }
}

/// How the SMTP sink answers `RCPT TO`, to provoke each class of failure.
#[derive(Clone, Copy)]
pub enum RcptReply {
    Accept,
    Transient,
    Permanent,
}

/// A real SMTP server on 127.0.0.1 (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), recording
/// every message it accepts. It speaks the protocol over TCP, so lettre's whole client runs.
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        SmtpSink::start_with(RcptReply::Accept).await
    }

    pub async fn start_with(rcpt: RcptReply) -> SmtpSink {
        SmtpSink::listen(0, rcpt).await
    }

    /// Starts on `port`, for "the server comes back" tests.
    pub async fn start_on(port: u16) -> SmtpSink {
        SmtpSink::listen(port, RcptReply::Accept).await
    }

    async fn listen(port: u16, rcpt: RcptReply) -> SmtpSink {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind smtp");
        let port = listener.local_addr().expect("addr").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let recorded = mails.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let _ = smtp_session(stream, rcpt, recorded).await;
                });
            }
        });
        SmtpSink { port, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().expect("lock").clone()
    }
}

/// The bare address of a `MAIL FROM:<a@b> PARAMS` / `RCPT TO:<a@b>` argument.
fn smtp_address(argument: &str) -> String {
    let argument = argument.trim_start();
    match argument.strip_prefix('<') {
        Some(rest) => rest.split('>').next().unwrap_or_default().to_string(),
        None => argument
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

/// The text after the first `:` of an SMTP command line (`MAIL FROM:...`).
fn smtp_argument(command: &str) -> &str {
    command
        .split_once(':')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
}

async fn smtp_session(
    stream: tokio::net::TcpStream,
    rcpt: RcptReply,
    mails: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    writer.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut current = Mail::default();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink.test\r\n250 8BITMIME\r\n",
            "HELO" => b"250 sink.test\r\n",
            "MAIL" => {
                current = Mail {
                    from: smtp_address(smtp_argument(&command)),
                    ..Mail::default()
                };
                b"250 2.1.0 Ok\r\n"
            }
            "RCPT" => match rcpt {
                RcptReply::Accept => {
                    current.to.push(smtp_address(smtp_argument(&command)));
                    b"250 2.1.5 Ok\r\n"
                }
                RcptReply::Transient => b"451 4.3.0 try again later\r\n",
                RcptReply::Permanent => b"550 5.1.1 no such user\r\n",
            },
            "DATA" => {
                writer.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    // Undo dot-stuffing (RFC 5321 4.5.2).
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                current.data = data;
                mails
                    .lock()
                    .expect("lock")
                    .push(std::mem::take(&mut current));
                b"250 2.0.0 Ok: queued as SINK42\r\n"
            }
            "RSET" => {
                current = Mail::default();
                b"250 2.0.0 Ok\r\n"
            }
            "NOOP" => b"250 2.0.0 Ok\r\n",
            "QUIT" => {
                writer.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 command not recognized\r\n",
        };
        writer.write_all(reply).await?;
    }
}

#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

/// An HTTP server that records every request and answers `status`, except that the
/// first `fail_first` requests get a 500.
pub struct HttpSink {
    pub address: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    failures_left: Arc<AtomicUsize>,
    /// While set, requests are taken in but never answered (a receiver that hangs).
    hanging: Arc<AtomicBool>,
    /// Every request that reached the sink, answered or not.
    arrivals: Arc<AtomicUsize>,
    /// How long each recorded request waits before it is answered, in milliseconds.
    delay_ms: Arc<AtomicUsize>,
}

impl HttpSink {
    pub async fn start(status: StatusCode, answer: &'static str) -> HttpSink {
        HttpSink::start_failing(status, answer, 0).await
    }

    pub async fn start_failing(
        status: StatusCode,
        answer: &'static str,
        fail_first: usize,
    ) -> HttpSink {
        HttpSink::serve(status, answer.to_string(), fail_first, false).await
    }

    /// Answers every request with `status` and `answer`, where `{path}` becomes the
    /// request path (to test that errors scrub it).
    pub async fn start_templated(status: StatusCode, answer: impl Into<String>) -> HttpSink {
        HttpSink::serve(status, answer.into(), 0, true).await
    }

    async fn serve(
        status: StatusCode,
        answer: String,
        fail_first: usize,
        echo_path: bool,
    ) -> HttpSink {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let failures_left = Arc::new(AtomicUsize::new(fail_first));
        let hanging = Arc::new(AtomicBool::new(false));
        let arrivals = Arc::new(AtomicUsize::new(0));
        let delay_ms = Arc::new(AtomicUsize::new(0));
        let delay = delay_ms.clone();
        let recorded = requests.clone();
        let failures = failures_left.clone();
        let (hang, arrived) = (hanging.clone(), arrivals.clone());
        let handler = move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let recorded = recorded.clone();
            let failures = failures.clone();
            let answer = answer.clone();
            let (hang, arrived) = (hang.clone(), arrived.clone());
            let delay = delay.clone();
            async move {
                arrived.fetch_add(1, Ordering::SeqCst);
                if hang.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                let failing = failures
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if failing {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "try later".to_string());
                }
                let answer = if echo_path {
                    answer.replace("{path}", uri.path())
                } else {
                    answer
                };
                recorded.lock().expect("lock").push(Request {
                    path: uri.path().to_string(),
                    query: uri.query().map(str::to_string),
                    headers,
                    body,
                });
                let delay = delay.load(Ordering::SeqCst) as u64;
                if delay > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                }
                (status, answer)
            }
        };
        let router = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind http");
        let address = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        HttpSink {
            address,
            requests,
            failures_left,
            hanging,
            arrivals,
            delay_ms,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }

    pub fn fail_next(&self, count: usize) {
        self.failures_left.store(count, Ordering::SeqCst);
    }

    pub fn set_hanging(&self, hanging: bool) {
        self.hanging.store(hanging, Ordering::SeqCst);
    }

    /// Answers every request `delay` after recording it, so a sender can die while its
    /// request is in flight yet recorded.
    pub fn set_delay(&self, delay: std::time::Duration) {
        let millis = usize::try_from(delay.as_millis()).unwrap_or(usize::MAX);
        self.delay_ms.store(millis, Ordering::SeqCst);
    }

    pub fn arrivals(&self) -> usize {
        self.arrivals.load(Ordering::SeqCst)
    }
}

/// Every stored event of a running server, newest first, page by page through
/// `GET /api/v1/events` (`limit` per page) as `token` sees them.
pub async fn all_events(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    limit: usize,
) -> Vec<serde_json::Value> {
    let mut stored = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/events?limit={limit}");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page: serde_json::Value = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("events")
            .json()
            .await
            .expect("events json");
        stored.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return stored,
        }
    }
}

/// Waits (up to 20 s) until the newest delivery `token` sees is `sent`, and returns it;
/// `what` names the wait in the failure.
pub async fn first_delivery_sent(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    what: &str,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let page: serde_json::Value = client
            .get(format!("{base}/api/v1/deliveries"))
            .bearer_auth(token)
            .send()
            .await
            .expect("deliveries")
            .json()
            .await
            .expect("json");
        let first = page["items"][0].clone();
        if first["status"] == "sent" {
            return first;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
