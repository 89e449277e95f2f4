//! Several real `tellify serve` processes on one PostgreSQL schema (issue 13): three
//! nodes share a fresh schema, events arrive round-robin (some retried with the same
//! idempotency key on another node), and the cluster is hurt on purpose — `kill -9` of the
//! node holding the processing lease, `kill -9` of a node in the middle of storing a
//! batch, `SIGSTOP` of the holder past its lease, a rolling restart under load, a fourth
//! node joining.
//!
//! After each step the cluster is compared with a single node on SQLite (a fourth process)
//! that is fed the cluster's stored events in the cluster's log order: the alerts (title,
//! group key, state, severity, count, history actions) must be equal, every 202'd event
//! stored exactly once, and every webhook delivery received, a delivery id twice only when
//! it was in flight on a node that was killed or stopped (counted and printed).
//!
//! The same scenario ([`scenario`]) runs twice: on PostgreSQL alone, and with the event
//! log (`--log`, a throwaway JetStream `nats-server`) on every cluster node. With the log
//! the mid-batch kill lands after JetStream acknowledged the batch and before the node's
//! PostgreSQL append committed (checked in `log_applied` while the node is stopped), so
//! the retry through another node is JetStream's duplicate and is answered with the
//! logged copy's ids; a further step leaves a batch in the stream the way a node that
//! died before storing it does, which the recoverer must store once and whose probe must
//! alert within the takeover bound; at the end every batch in the stream is stored once.
//!
//! Every wait has a deadline; each run takes under a minute. The two runs never overlap
//! (nextest's `cluster` test group, `.config/nextest.toml`).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tellify_model::{EventInput, StoredEvent};
use tellify_store::postgres::testing::{server_url, TestDatabase};

use crate::support::nats::{logged_events, publish_batch, stream_state, TestNats};
use crate::support::{all_events, free_port, HttpSink, SmtpSink};

/// The admin token every node is started with; only the first to reach the empty store
/// creates `admin`.
const TOKEN: &str = "tfy_cluster_test_admin_token_7qk";

/// The longest a node may take to answer `/healthz` after it is started.
const START_DEADLINE: Duration = Duration::from_secs(40);
/// The issue's bound on how long alerts may stop after the processing node dies.
const TAKEOVER_BOUND: Duration = Duration::from_secs(10);
/// Events sent in one batch to the processing node just before it is stopped.
const FLOOD: usize = 2000;
/// Events in the batch whose node is killed in the middle of storing it.
const BATCH: usize = 5000;

/// One `tellify serve` process: its port, data directory and log file survive restarts.
struct Node {
    name: String,
    port: u16,
    data: tempfile::TempDir,
    log: PathBuf,
    /// `--store`, or the SQLite store in `data` when `None`.
    store: Option<String>,
    /// `--log`: the NATS server of the event log, if any.
    event_log: Option<String>,
    /// The SMTP server email is sent to, if any.
    smtp_port: Option<u16>,
    child: Option<Child>,
}

impl Node {
    fn new(
        name: &str,
        store: Option<String>,
        event_log: Option<String>,
        smtp_port: Option<u16>,
    ) -> Node {
        let data = tempfile::tempdir().expect("temp dir");
        let log = data.path().join("serve.log");
        Node {
            name: name.to_string(),
            port: free_port(),
            data,
            log,
            store,
            event_log,
            smtp_port,
            child: None,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process (without waiting for it to answer).
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_tellify"));
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data")
            .arg(self.data.path());
        if let Some(store) = &self.store {
            command.args(["--store", store]);
        }
        if let Some(event_log) = &self.event_log {
            command.args(["--log", event_log]);
        }
        if let Some(port) = self.smtp_port {
            command
                .env("TELLIFY_SMTP__HOST", "127.0.0.1")
                .env("TELLIFY_SMTP__PORT", port.to_string())
                .env("TELLIFY_SMTP__SECURITY", "none");
        }
        let child = command
            .env("TELLIFY_BOOTSTRAP_TOKEN", TOKEN)
            .env("TELLIFY_LOG", "info")
            // A delivery whose sender died is sent again after two seconds.
            .env("TELLIFY_NOTIFY__LEASE_SECS", "2")
            // The webhook sinks listen on loopback, which the outbound guard refuses by default.
            .env("TELLIFY_OUTBOUND__ALLOW", r#"["127.0.0.0/8", "::1"]"#)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("tellify serve starts");
        self.child = Some(child);
    }

    async fn wait_healthy(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(response) = client.get(format!("{}/healthz", self.base())).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{} exited at start ({status}): {}",
                        self.name,
                        self.log_text()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer /healthz within {START_DEADLINE:?}: {}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {}", self.name);
    }

    /// Sends `signal` and waits (bounded) until the process has exited.
    async fn stop_with(&mut self, signal: &str) {
        self.signal(signal);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if child.try_wait().expect("wait").is_some() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not exit within 20 s of SIG{signal}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL also ends a stopped process.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The tokens of one installation (the cluster or the reference).
#[derive(Clone)]
struct Tokens {
    ann: String,
    bob: String,
}

impl Tokens {
    fn users(&self) -> [&str; 2] {
        [&self.ann, &self.bob]
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client")
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut request = client.request(method, &url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("{url}: {error}"));
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

async fn get_json(client: &reqwest::Client, base: &str, token: &str, path: &str) -> Value {
    let (status, body) = send(
        client,
        reqwest::Method::GET,
        format!("{base}{path}"),
        token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "GET {base}{path}: {body}");
    body
}

async fn created(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: Value,
) -> Value {
    let (status, answer) = send(
        client,
        reqwest::Method::POST,
        format!("{base}{path}"),
        token,
        Some(&body),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "POST {base}{path} {body}: {answer}"
    );
    answer
}

/// Waits until `token` is accepted by every node in `bases` (a token made on one node
/// reaches the others through the store).
async fn token_works_everywhere(client: &reqwest::Client, bases: &[String], token: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    for base in bases {
        loop {
            let answer = client
                .get(format!("{base}/api/v1/users/me"))
                .bearer_auth(token)
                .send()
                .await;
            if answer.is_ok_and(|response| response.status() == StatusCode::OK) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a token is not accepted by {base}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Users, tokens, a webhook contact point per user, "send at once" policies and one
/// subscription of each kind, each step through a different node of `bases`.
async fn set_up(client: &reqwest::Client, bases: &[String], sink: &HttpSink) -> Tokens {
    let node = |n: usize| bases[n % bases.len()].as_str();
    token_works_everywhere(client, bases, TOKEN).await;
    let mut tokens = Vec::new();
    for (n, name) in ["ann", "bob"].into_iter().enumerate() {
        created(
            client,
            node(n),
            TOKEN,
            "/api/v1/users",
            json!({"name": name, "email": format!("{name}@example.com"), "timezone": "UTC"}),
        )
        .await;
        let token = created(
            client,
            node(n + 1),
            TOKEN,
            "/api/v1/tokens",
            json!({"name": "cluster", "scopes": ["user"], "user": name}),
        )
        .await["token"]
            .as_str()
            .expect("token")
            .to_string();
        token_works_everywhere(client, bases, &token).await;
        created(
            client,
            node(n + 2),
            &token,
            "/api/v1/contact-points",
            json!({"name": "hook", "kind": "webhook", "address": sink.url(&format!("/{name}"))}),
        )
        .await;
        let mut contact_points = vec!["hook"];
        if name == "ann" {
            created(
                client,
                node(n + 1),
                &token,
                "/api/v1/contact-points",
                json!({"name": "mail", "kind": "email", "address": "ann@example.com"}),
            )
            .await;
            contact_points.push("mail");
        }
        let (status, body) = send(
            client,
            reqwest::Method::PUT,
            format!("{}/api/v1/policies/default", node(n)),
            &token,
            Some(&json!({"rules": [{"contact_points": contact_points}]})),
        )
        .await;
        assert!(status.is_success(), "policy: {status} {body}");
        tokens.push(token);
    }
    let tokens = Tokens {
        ann: tokens[0].clone(),
        bob: tokens[1].clone(),
    };
    let subscriptions = [
        (
            &tokens.ann,
            json!({"kind": "match", "title": "fails", "params": {
                "filter": "status == \"fail\"", "group_by": ["block"], "severity": "critical"}}),
        ),
        (
            &tokens.ann,
            json!({"kind": "match", "title": "probes", "params": {
                "filter": "probe == \"yes\"", "group_by": ["marker"]}}),
        ),
        (
            &tokens.bob,
            json!({"kind": "threshold", "title": "disks", "params": {
                "field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]}}),
        ),
        (
            &tokens.bob,
            json!({"kind": "count", "title": "place storm", "params": {
                "filter": "step == \"place\" && status == \"fail\"", "distinct": "block",
                "group_by": ["project"], "limit": 3, "window": "1h"}}),
        ),
    ];
    for (n, (token, body)) in subscriptions.into_iter().enumerate() {
        created(client, node(n), token, "/api/v1/subscriptions", body).await;
    }
    tokens
}

/// The fields of the `n`th generated event: failures per block (match, count), disk
/// usage per file system (threshold up and down), and noise. `n` keeps every event
/// distinct, so the event list never folds repeats together.
fn event_fields(n: usize) -> Value {
    match n % 3 {
        0 => json!({"n": n, "block": format!("b{}", n % 5), "project": format!("p{}", n % 2),
                    "step": "place", "status": "fail"}),
        1 => {
            let usage = [50, 92, 98, 60, 95][(n / 3) % 5];
            json!({"n": n, "fs": format!("/fs{}", n % 4), "usage": usage})
        }
        _ => json!({"n": n, "block": format!("b{}", n % 5), "status": "ok"}),
    }
}

/// Posts one event to `ports[first]`, and on an error or a timeout to the next node with
/// the same idempotency key, until one answers 202 (bounded); returns the event id and
/// the index of the node that took it.
async fn post_anywhere(
    client: &reqwest::Client,
    ports: &[u16],
    first: usize,
    body: &Value,
) -> (String, usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = first;
    loop {
        let index = attempt % ports.len();
        let answer = client
            .post(format!("http://127.0.0.1:{}/api/v1/events", ports[index]))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await;
        if let Ok(response) = answer {
            if response.status() == StatusCode::ACCEPTED {
                let answer: Value = response.json().await.expect("ingest answer");
                let id = answer["ids"][0].as_str().expect("id").to_string();
                return (id, index);
            }
        }
        assert!(Instant::now() < deadline, "no node took {body} within 30 s");
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every event that got a 202, by idempotency key.
type Acknowledged = Arc<Mutex<BTreeMap<String, String>>>;

/// Sends events round-robin over the cluster until stopped; every fourth one is sent
/// again with the same key through another node, which must answer with the same id.
struct Producer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<usize>,
}

impl Producer {
    fn start(
        ports: Arc<Mutex<Vec<u16>>>,
        counter: Arc<AtomicUsize>,
        acknowledged: Acknowledged,
        phase: &'static str,
    ) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let client = client();
            let mut sent = 0;
            while !stopping.load(Ordering::SeqCst) {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let key = format!("{phase}-{n}");
                let body = json!({"idempotency_key": key, "fields": event_fields(n)});
                let ports = ports.lock().expect("ports").clone();
                let (id, node) = post_anywhere(&client, &ports, n, &body).await;
                if n.is_multiple_of(4) {
                    let (again, _) = post_anywhere(&client, &ports, node + 1, &body).await;
                    assert_eq!(again, id, "a retry of {key} on another node got another id");
                }
                acknowledged.lock().expect("acknowledged").insert(key, id);
                sent += 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            sent
        });
        Producer { stop, task }
    }

    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("producer")
    }
}

/// The processing lease's holder right now, as the pid in its holder name
/// (`{pid}-{ulid}`), read from the `leases` table with `psql`.
async fn lease_holder_pid(schema: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let output = Command::new("psql")
            .args([&server_url(), "-At", "-c"])
            .arg(format!(
                "SELECT holder FROM {schema}.leases WHERE name = 'processing' \
                 AND expires_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
            ))
            .output()
            .expect("psql runs");
        let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if let Some(pid) = text.split('-').next().and_then(|pid| pid.parse().ok()) {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "nobody holds the processing lease: {text} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every alert of `tokens`' users as `title group_key state severity count [history]`,
/// sorted: what must be equal on the cluster and the single node.
async fn alert_summary(
    client: &reqwest::Client,
    base: &str,
    tokens: &Tokens,
) -> (Vec<String>, usize) {
    let mut summary = Vec::new();
    let mut history = 0;
    for token in tokens.users() {
        let alerts = get_json(client, base, token, "/api/v1/alerts?state=all&limit=1000").await;
        for alert in alerts["items"].as_array().expect("items") {
            let id = alert["id"].as_str().expect("id");
            let detail = get_json(client, base, token, &format!("/api/v1/alerts/{id}")).await;
            let actions: Vec<&str> = detail["history"]
                .as_array()
                .expect("history")
                .iter()
                .map(|entry| entry["action"].as_str().unwrap_or("?"))
                .collect();
            history += actions.len();
            summary.push(format!(
                "{} {} {} {} count={} {actions:?}",
                detail["title"],
                detail["group_key"],
                detail["state"],
                detail["severity"],
                detail["count"]
            ));
        }
    }
    summary.sort();
    (summary, history)
}

/// What a webhook sink received: the alert items of each delivery id once, sorted
/// (`title group_key transition`), the delivery ids, and the id of every request that
/// repeated one.
fn received(sink: &HttpSink) -> (Vec<String>, HashSet<String>, Vec<String>) {
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    let mut repeats = Vec::new();
    for request in sink.requests() {
        let id = request
            .header("x-tellify-delivery")
            .expect("delivery header");
        if !seen.insert(id.clone()) {
            repeats.push(id);
            continue;
        }
        for alert in request.json()["alerts"].as_array().expect("alerts") {
            items.push(format!(
                "{} {} {} {}",
                request.path, alert["title"], alert["group_key"], alert["transition"]
            ));
        }
    }
    items.sort();
    (items, seen, repeats)
}

/// The delivery ids an SMTP sink received (from `Message-ID: <{delivery id}@tellify>`),
/// and the id of every message that repeated one.
fn mailed(smtp: &SmtpSink) -> (HashSet<String>, Vec<String>) {
    let mut seen = HashSet::new();
    let mut repeats = Vec::new();
    for mail in smtp.mails() {
        let header = mail.header("Message-ID").expect("message id");
        let id = header
            .trim_start_matches('<')
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        if !seen.insert(id.clone()) {
            repeats.push(id);
        }
    }
    (seen, repeats)
}

/// What one round of checks compared.
struct Report {
    alerts: usize,
    history: usize,
    webhook_items: usize,
    mails: usize,
    deliveries: usize,
    /// The delivery id of each request that repeated one, since the sink started.
    repeats: Vec<String>,
}

impl Report {
    fn describe(&self) -> String {
        format!(
            "{} alerts with {} history entries and {} webhook alert items equal; {} deliveries \
             ({} emails) each received",
            self.alerts, self.history, self.webhook_items, self.deliveries, self.mails
        )
    }
}

/// The cluster and the reference node on SQLite, compared after each step.
struct Harness {
    client: reqwest::Client,
    schema: String,
    nodes: Vec<Node>,
    reference: Node,
    cluster_tokens: Tokens,
    reference_tokens: Tokens,
    cluster_sink: HttpSink,
    reference_sink: HttpSink,
    /// Ann's email goes here; the reference's to its own server.
    cluster_smtp: SmtpSink,
    _reference_smtp: SmtpSink,
    acknowledged: Acknowledged,
    counter: Arc<AtomicUsize>,
    /// The highest cluster log position already fed to the reference.
    replayed: i64,
    ports: Arc<Mutex<Vec<u16>>>,
    /// The event log every cluster node writes through (`--log`), when the run has one.
    nats: Option<TestNats>,
}

impl Harness {
    fn live_base(&self) -> String {
        self.nodes
            .iter()
            .find(|node| node.child.is_some())
            .expect("a live node")
            .base()
    }

    fn node_of_pid(&self, pid: u32) -> usize {
        self.nodes
            .iter()
            .position(|node| node.child.as_ref().is_some_and(|child| child.id() == pid))
            .unwrap_or_else(|| panic!("pid {pid} holds the lease but is none of the nodes"))
    }

    /// Posts a probe event through node `through` and waits (bounded by `bound` from
    /// `since`) until its alert exists; returns the time from `since`.
    async fn probe(
        &self,
        through: usize,
        label: &str,
        since: Instant,
        bound: Duration,
    ) -> Duration {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let key = format!("probe-{label}");
        let body =
            json!({"idempotency_key": key, "fields": {"n": n, "probe": "yes", "marker": label}});
        let ports = self.ports.lock().expect("ports").clone();
        let (id, _) = post_anywhere(&self.client, &ports, through, &body).await;
        self.acknowledged
            .lock()
            .expect("acknowledged")
            .insert(key, id);
        self.alert_seen(through, label, since, bound).await
    }

    /// Waits (bounded by `bound` from `since`) until node `through` lists an alert of ann
    /// whose group key holds `label`; returns the time from `since`.
    async fn alert_seen(
        &self,
        through: usize,
        label: &str,
        since: Instant,
        bound: Duration,
    ) -> Duration {
        let base = self.nodes[through].base();
        loop {
            let alerts = get_json(
                &self.client,
                &base,
                &self.cluster_tokens.ann,
                "/api/v1/alerts?state=all&limit=1000",
            )
            .await;
            let found = alerts["items"]
                .as_array()
                .expect("items")
                .iter()
                .any(|alert| alert["group_key"].to_string().contains(label));
            if found {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < bound,
                "no alert for {label} within {bound:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The checks after each step.
    async fn check(&mut self, step: &str) -> Report {
        let base = self.live_base();
        // Every 202'd event is stored exactly once.
        let mut stored = all_events(&self.client, &base, TOKEN, 1000).await;
        stored.sort_by_key(|event| event["seq"].as_i64().expect("seq"));
        let ids: HashSet<&str> = stored
            .iter()
            .map(|e| e["id"].as_str().expect("id"))
            .collect();
        assert_eq!(ids.len(), stored.len(), "{step}: an event id listed twice");
        let keys: HashSet<&str> = stored
            .iter()
            .filter_map(|event| event["idempotency_key"].as_str())
            .collect();
        assert_eq!(
            keys.len(),
            stored.len(),
            "{step}: an idempotency key stored twice"
        );
        for (key, id) in self.acknowledged.lock().expect("acknowledged").iter() {
            assert!(
                ids.contains(id.as_str()),
                "{step}: 202'd event {key} ({id}) is not stored"
            );
        }

        // The reference gets the new events, in the cluster's log order.
        let fresh: Vec<Value> = stored
            .iter()
            .filter(|event| event["seq"].as_i64().expect("seq") > self.replayed)
            .map(|event| {
                json!({"idempotency_key": event["idempotency_key"], "time": event["time"],
                       "severity": event["severity"], "fields": event["fields"]})
            })
            .collect();
        if let Some(last) = stored.last() {
            self.replayed = last["seq"].as_i64().expect("seq");
        }
        if !fresh.is_empty() {
            let (status, body) = send(
                &self.client,
                reqwest::Method::POST,
                format!("{}/api/v1/events", self.reference.base()),
                TOKEN,
                Some(&Value::Array(fresh)),
            )
            .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{step}: replay: {body}");
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let health = get_json(&self.client, &self.reference.base(), TOKEN, "/healthz").await;
            if health["lag"] == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{step}: the reference did not catch up: {health}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (expected, history) =
            alert_summary(&self.client, &self.reference.base(), &self.reference_tokens).await;

        // The cluster's alerts and history equal the single node's.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (actual, _) = alert_summary(&self.client, &base, &self.cluster_tokens).await;
            if actual == expected {
                break;
            }
            if Instant::now() > deadline {
                assert_eq!(
                    actual, expected,
                    "{step}: cluster alerts (left) differ from SQLite's"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        // Every delivery is sent and received; the same alert transitions as on one node.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (expected_items, _, _) = received(&self.reference_sink);
            let (items, ids, mut repeats) = received(&self.cluster_sink);
            let (mails, mail_repeats) = mailed(&self.cluster_smtp);
            repeats.extend(mail_repeats);
            let mut unsent = Vec::new();
            let mut deliveries_seen = 0;
            for token in self.cluster_tokens.users() {
                let deliveries =
                    get_json(&self.client, &base, token, "/api/v1/deliveries?limit=1000").await;
                for delivery in deliveries["items"].as_array().expect("items") {
                    deliveries_seen += 1;
                    let id = delivery["id"].as_str().expect("id");
                    let arrived = if delivery["kind"] == "email" {
                        mails.contains(id)
                    } else {
                        ids.contains(id)
                    };
                    if delivery["status"] != "sent" || !arrived {
                        unsent.push(format!("{id} {}", delivery["status"]));
                    }
                }
            }
            if items == expected_items && unsent.is_empty() {
                return Report {
                    alerts: expected.len(),
                    history,
                    webhook_items: items.len(),
                    mails: mails.len(),
                    deliveries: deliveries_seen,
                    repeats,
                };
            }
            if Instant::now() > deadline {
                assert!(
                    unsent.is_empty(),
                    "{step}: deliveries not sent or not received: {unsent:?}"
                );
                assert_eq!(
                    items, expected_items,
                    "{step}: webhooks (left) differ from SQLite's"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn producer(&self, phase: &'static str) -> Producer {
        Producer::start(
            self.ports.clone(),
            self.counter.clone(),
            self.acknowledged.clone(),
            phase,
        )
    }

    /// A fresh batch of [`BATCH`] events with keys of their own, and its keys in order.
    fn next_batch(&self) -> (Value, Vec<String>) {
        let first = self.counter.fetch_add(BATCH, Ordering::SeqCst);
        let keys: Vec<String> = (first..first + BATCH)
            .map(|n| format!("batch-{n}"))
            .collect();
        let batch = (first..first + BATCH)
            .zip(&keys)
            .map(|(n, key)| json!({"idempotency_key": key, "fields": {"n": n, "noise": "yes"}}))
            .collect();
        (Value::Array(batch), keys)
    }

    /// Without the event log: posts a fresh batch to node `victim` and kills it (`kill -9`)
    /// once a session holds the PostgreSQL append lock (or the batch was answered).
    async fn kill_inside_append(&mut self, victim: usize) -> KilledBatch {
        let (batch, keys) = self.next_batch();
        let first_try = post_in_background(self.nodes[victim].base(), batch.clone());
        let deadline = Instant::now() + Duration::from_secs(20);
        while append_lock_holder(&self.schema).is_none() && !first_try.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the batch never started its append"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.nodes[victim].stop_with("9").await;
        KilledBatch {
            batch,
            keys,
            position: None,
            when: format!("during a {BATCH}-event append"),
            answered: answer_of(first_try).await,
        }
    }

    /// With the event log: posts a fresh batch to node `victim`, stops the node (`SIGSTOP`)
    /// once the stream holds the batch and a session holds the append lock, makes sure its
    /// PostgreSQL append has not committed, and kills it (`kill -9`). When the append was
    /// quicker than the stop, the node is let go on (its batch is answered and counted)
    /// and a new batch is tried.
    async fn kill_once_logged(&mut self, victim: usize) -> KilledBatch {
        let js = self.nats.as_ref().expect("an event log").jetstream().await;
        for attempt in 1..=3 {
            let (batch, keys) = self.next_batch();
            let before = stream_state(&js).await.last_sequence;
            let first_try = post_in_background(self.nodes[victim].base(), batch.clone());
            let deadline = Instant::now() + Duration::from_secs(20);
            while stream_state(&js).await.last_sequence == before && !first_try.is_finished() {
                assert!(Instant::now() < deadline, "the batch was never logged");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            // Logged; the stop aims at the append itself (a stop before it is as good).
            let deadline = Instant::now() + Duration::from_secs(5);
            while append_lock_holder(&self.schema).is_none()
                && !first_try.is_finished()
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            self.nodes[victim].signal("STOP");
            let position = stream_state(&js).await.last_sequence;
            if position == before {
                self.nodes[victim].signal("CONT");
                let answer = first_try.await.expect("batch task");
                panic!("the batch was answered without being logged: {answer:?}");
            }
            assert_eq!(position, before + 1, "something else was logged meanwhile");
            let committed = psql(&format!(
                "SELECT count(*) FROM {}.log_applied WHERE log_seq = {position}",
                self.schema
            ));
            if committed == "0" {
                let mut when = match append_lock_holder(&self.schema) {
                    Some(_) => "inside its PostgreSQL append".to_string(),
                    None => "before its PostgreSQL append took the lock".to_string(),
                };
                if attempt > 1 {
                    when.push_str(&format!(
                        " (try {attempt}: the earlier batches were stored before the stop landed)"
                    ));
                }
                self.nodes[victim].stop_with("9").await;
                return KilledBatch {
                    batch,
                    keys,
                    position: Some(position),
                    when: format!(
                        "after JetStream logged its {BATCH}-event batch (position {position}), \
                         {when}"
                    ),
                    answered: answer_of(first_try).await,
                };
            }
            // Stored before the stop landed: this batch is the victim's, answered whole.
            self.nodes[victim].signal("CONT");
            let (status, answer) = first_try
                .await
                .expect("batch task")
                .expect("the victim answers once resumed");
            assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
            let ids = answer["ids"].as_array().expect("ids");
            assert_eq!(ids.len(), BATCH, "{answer}");
            let mut acknowledged = self.acknowledged.lock().expect("acknowledged");
            for (key, id) in keys.into_iter().zip(ids) {
                acknowledged.insert(key, id.as_str().expect("id").to_string());
            }
        }
        panic!("the node stored its batch before it could be stopped, three times");
    }
}

/// A batch whose node was killed while storing it.
struct KilledBatch {
    batch: Value,
    /// The idempotency key of each event, in order.
    keys: Vec<String>,
    /// Its position in the event log's stream, when the run has one.
    position: Option<u64>,
    /// Where the node was when it died.
    when: String,
    /// What the killed node answered, if anything.
    answered: String,
}

/// Posts `batch` to `base` in a task of its own; the task ends with the answer's status
/// and body, or the error when the connection failed.
fn post_in_background(
    base: String,
    batch: Value,
) -> tokio::task::JoinHandle<Result<(StatusCode, Value), reqwest::Error>> {
    tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(format!("{base}/api/v1/events"))
            .bearer_auth(TOKEN)
            .json(&batch)
            .timeout(Duration::from_secs(60))
            .send()
            .await?;
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    })
}

/// What a killed node answered to [`post_in_background`], in words.
async fn answer_of(
    task: tokio::task::JoinHandle<Result<(StatusCode, Value), reqwest::Error>>,
) -> String {
    match task.await.expect("batch task") {
        Ok((status, _)) => status.to_string(),
        Err(_) => "nothing (the connection was cut)".to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_postgres_lose_nothing_and_send_nothing_twice() {
    scenario(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_postgres_and_jetstream_lose_nothing_and_send_nothing_twice() {
    scenario(Some(TestNats::start("8MB"))).await;
}

/// The whole run: set-up, then each step and the checks after it. With `nats`, every
/// cluster node (not the SQLite reference) logs its batches there (`--log`), and the run
/// has the event log's own steps.
async fn scenario(nats: Option<TestNats>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let database = TestDatabase::create().await.expect("test database");
    let client = client();
    let cluster_sink = HttpSink::start(StatusCode::OK, "ok").await;
    let reference_sink = HttpSink::start(StatusCode::OK, "ok").await;
    let cluster_smtp = SmtpSink::start().await;
    let reference_smtp = SmtpSink::start().await;

    // Three nodes start at once on the empty schema: one migrates and creates admin.
    let event_log = nats.as_ref().map(TestNats::url);
    let mut nodes: Vec<Node> = (0..3)
        .map(|n| {
            Node::new(
                &format!("node{n}"),
                Some(database.url()),
                event_log.clone(),
                Some(cluster_smtp.port),
            )
        })
        .collect();
    let mut reference = Node::new("sqlite", None, None, Some(reference_smtp.port));
    for node in nodes.iter_mut() {
        node.spawn();
    }
    reference.spawn();
    for node in nodes.iter_mut() {
        node.wait_healthy(&client).await;
    }
    reference.wait_healthy(&client).await;
    let bases: Vec<String> = nodes.iter().map(Node::base).collect();
    let cluster_tokens = set_up(&client, &bases, &cluster_sink).await;
    let reference_tokens = set_up(&client, &[reference.base()], &reference_sink).await;
    // Subscriptions made through one node reach the processing node by announcement.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ports = Arc::new(Mutex::new(nodes.iter().map(|node| node.port).collect()));
    let mut harness = Harness {
        client: client.clone(),
        schema: database.schema().to_string(),
        nodes,
        reference,
        cluster_tokens,
        reference_tokens,
        cluster_sink,
        reference_sink,
        cluster_smtp,
        _reference_smtp: reference_smtp,
        acknowledged: Arc::default(),
        counter: Arc::default(),
        replayed: 0,
        ports,
        nats,
    };
    let mut summary = Vec::new();

    // 1. Events round-robin, one at a time; every fifth retried through the next node.
    let ports = harness.ports.lock().expect("ports").clone();
    for _ in 0..90 {
        let n = harness.counter.fetch_add(1, Ordering::SeqCst);
        let key = format!("one-{n}");
        let body = json!({"idempotency_key": key, "fields": event_fields(n)});
        let (id, node) = post_anywhere(&client, &ports, n, &body).await;
        assert_eq!(node, n % 3, "a healthy node refused an event");
        if n.is_multiple_of(5) {
            let retry = client
                .post(format!(
                    "http://127.0.0.1:{}/api/v1/events",
                    ports[(n + 1) % 3]
                ))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .expect("retry");
            assert_eq!(retry.status(), StatusCode::ACCEPTED);
            let answer: Value = retry.json().await.expect("json");
            assert_eq!(
                answer["ids"][0].as_str(),
                Some(id.as_str()),
                "{key}: {answer}"
            );
            assert_eq!(answer["duplicates"], 1, "{key}: {answer}");
        }
        harness
            .acknowledged
            .lock()
            .expect("acknowledged")
            .insert(key, id);
    }
    let report = harness.check("round-robin").await;
    assert!(
        report.repeats.is_empty(),
        "a delivery was sent twice with every node healthy: {:?}",
        report.repeats
    );
    let mut repeats = report.repeats.len();
    summary.push(format!(
        "round-robin: 90 events, 18 retried on another node; {}",
        report.describe()
    ));

    // 2. kill -9 of the processing node under load: alerts resume within the bound. Slow
    // webhook answers keep deliveries in flight, so the killed node likely dies mid-send.
    harness.cluster_sink.set_delay(Duration::from_millis(400));
    let producer = harness.producer("kill");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let holder = harness.node_of_pid(lease_holder_pid(&harness.schema).await);
    let killed_at = Instant::now();
    harness.nodes[holder].stop_with("9").await;
    // The sink records a request as it arrives: these are all the killed node ever sent.
    let (_, mut reached_at_kill, _) = received(&harness.cluster_sink);
    reached_at_kill.extend(mailed(&harness.cluster_smtp).0);
    harness
        .ports
        .lock()
        .expect("ports")
        .retain(|port| *port != harness.nodes[holder].port);
    let through = (holder + 1) % 3;
    let takeover = harness
        .probe(
            through,
            "after-kill",
            killed_at,
            TAKEOVER_BOUND + Duration::from_secs(5),
        )
        .await;
    let sent = producer.finish().await;
    harness.cluster_sink.set_delay(Duration::ZERO);
    assert!(
        takeover <= TAKEOVER_BOUND,
        "alerts resumed {takeover:?} after kill -9 of the processing node"
    );
    harness.nodes[holder].spawn();
    harness.nodes[holder].wait_healthy(&client).await;
    harness
        .ports
        .lock()
        .expect("ports")
        .push(harness.nodes[holder].port);
    let report = harness.check("kill -9").await;
    for id in &report.repeats[repeats..] {
        assert!(
            reached_at_kill.contains(id),
            "delivery {id} was sent twice, but was not in flight when its node was killed"
        );
    }
    summary.push(format!(
        "kill -9 of {} (processing): next alert after {takeover:.1?}, {sent} events under load, \
         same-id resends {}; {}",
        harness.nodes[holder].name,
        report.repeats.len() - repeats,
        report.describe()
    ));
    repeats = report.repeats.len();

    // 2b. kill -9 of another node in the middle of storing a batch: the batch is stored
    // whole or not at all, and its retry on another node with the same keys stores it once.
    // Without the event log the node dies inside its PostgreSQL append; with it, once
    // JetStream has the batch and before the node's append committed, so the retry must
    // be JetStream's duplicate, answered from the logged copy.
    let holder = harness.node_of_pid(lease_holder_pid(&harness.schema).await);
    let victim = (holder + 1) % 3;
    let killed = if harness.nats.is_some() {
        harness.kill_once_logged(victim).await
    } else {
        harness.kill_inside_append(victim).await
    };
    let retry_through = (victim + 1) % 3;
    let (status, answer) = send(
        &client,
        reqwest::Method::POST,
        format!("{}/api/v1/events", harness.nodes[retry_through].base()),
        TOKEN,
        Some(&killed.batch),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "batch retry: {answer}");
    let duplicates = answer["duplicates"].as_u64().expect("duplicates") as usize;
    assert!(
        duplicates == 0 || duplicates == BATCH,
        "the killed batch was stored in part: {duplicates} of {BATCH}"
    );
    let batch_ids: Vec<String> = answer["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_str().expect("id").to_string())
        .collect();
    assert_eq!(batch_ids.len(), BATCH);
    if let (Some(nats), Some(position)) = (&harness.nats, killed.position) {
        let js = nats.jetstream().await;
        let logged: Vec<String> = logged_events(&js, position)
            .await
            .into_iter()
            .map(|event| event.id)
            .collect();
        assert_eq!(
            batch_ids, logged,
            "the retry was not answered with the logged copy's ids"
        );
        assert_eq!(
            stream_state(&js).await.last_sequence,
            position,
            "the retry was logged again"
        );
    }
    for (key, id) in killed.keys.into_iter().zip(batch_ids) {
        harness
            .acknowledged
            .lock()
            .expect("acknowledged")
            .insert(key, id);
    }
    harness.nodes[victim].spawn();
    harness.nodes[victim].wait_healthy(&client).await;
    let report = harness.check("kill -9 mid-batch").await;
    summary.push(format!(
        "kill -9 of {} {}: it answered {}; the retry through {} found {duplicates} already \
         stored; same-id resends {}; {}",
        harness.nodes[victim].name,
        killed.when,
        killed.answered,
        harness.nodes[retry_through].name,
        report.repeats.len() - repeats,
        report.describe()
    ));
    repeats = report.repeats.len();

    // 2c. With the event log: a batch logged by a node that died before storing it, which
    // no producer retries. The recoverer must store it, once, and its probe alert within
    // the takeover bound.
    if let Some(nats) = &harness.nats {
        let js = nats.jetstream().await;
        let me = get_json(&client, &harness.live_base(), TOKEN, "/api/v1/users/me").await;
        let producer = me["user"]["name"]
            .as_str()
            .expect("the admin's name")
            .to_string();
        let received = jiff::Timestamp::now();
        let first = harness.counter.fetch_add(3, Ordering::SeqCst);
        let inputs = [
            json!({"idempotency_key": format!("logged-{first}"), "fields": event_fields(first)}),
            json!({"idempotency_key": format!("logged-{}", first + 1),
                   "fields": event_fields(first + 1)}),
            json!({"idempotency_key": "probe-logged",
                   "fields": {"n": first + 2, "probe": "yes", "marker": "logged"}}),
        ];
        let events: Vec<StoredEvent> = inputs
            .into_iter()
            .map(|input| {
                let input: EventInput = serde_json::from_value(input).expect("input");
                StoredEvent::from_input(input, Some(producer.clone()), received, 0)
            })
            .collect();
        let published_at = Instant::now();
        let position = publish_batch(&js, &events).await;
        for event in &events {
            let key = event.idempotency_key.clone().expect("key");
            harness
                .acknowledged
                .lock()
                .expect("acknowledged")
                .insert(key, event.id.clone());
        }
        let alerted = harness
            .alert_seen(0, "logged", published_at, TAKEOVER_BOUND)
            .await;
        let report = harness.check("a batch logged by a dead node").await;
        let applied = psql(&format!(
            "SELECT count(*) FROM {}.log_applied WHERE log_seq = {position}",
            harness.schema
        ));
        assert_eq!(applied, "1", "position {position} applied {applied} times");
        summary.push(format!(
            "a {}-event batch logged by a node that died before storing it (position \
             {position}): stored once by the recoverer, its probe alerted after \
             {alerted:.1?}; same-id resends {}; {}",
            events.len(),
            report.repeats.len() - repeats,
            report.describe()
        ));
        repeats = report.repeats.len();
    }

    // 3. SIGSTOP of the processing node past its lease, then SIGCONT: it must not commit.
    harness.cluster_sink.set_delay(Duration::from_millis(400));
    let producer = harness.producer("stop");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let holder = harness.node_of_pid(lease_holder_pid(&harness.schema).await);
    // A batch straight to the processing node, stopped the moment it is acknowledged: the
    // node is then likely in the middle of processing it, and commits when it resumes.
    let first = harness.counter.fetch_add(FLOOD, Ordering::SeqCst);
    let flood: Vec<(String, Value)> = (first..first + FLOOD)
        .map(|n| {
            let key = format!("flood-{n}");
            let body = json!({"idempotency_key": key, "fields": {"n": n, "noise": "yes"}});
            (key, body)
        })
        .collect();
    let batch = Value::Array(flood.iter().map(|(_, body)| body.clone()).collect());
    let (status, answer) = send(
        &client,
        reqwest::Method::POST,
        format!("{}/api/v1/events", harness.nodes[holder].base()),
        TOKEN,
        Some(&batch),
    )
    .await;
    let stopped_at = Instant::now();
    harness.nodes[holder].signal("STOP");
    assert_eq!(status, StatusCode::ACCEPTED, "flood: {answer}");
    let flood_ids = answer["ids"].as_array().expect("ids");
    assert_eq!(flood_ids.len(), FLOOD);
    for ((key, _), id) in flood.into_iter().zip(flood_ids) {
        let id = id.as_str().expect("id").to_string();
        harness
            .acknowledged
            .lock()
            .expect("acknowledged")
            .insert(key, id);
    }
    let through = (holder + 1) % 3;
    let takeover = harness
        .probe(
            through,
            "after-stop",
            stopped_at,
            TAKEOVER_BOUND + Duration::from_secs(5),
        )
        .await;
    let new_holder = lease_holder_pid(&harness.schema).await;
    assert_ne!(
        new_holder,
        harness.nodes[holder].pid(),
        "the stopped node still holds the lease"
    );
    let paused = Duration::from_secs(8);
    if let Some(rest) = paused.checked_sub(stopped_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let log_before = harness.nodes[holder].log_text().len();
    harness.nodes[holder].signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    let noticed = loop {
        let log = harness.nodes[holder].log_text();
        let after = log.get(log_before..).unwrap_or_default().to_string();
        if after.contains("processing moved to another node") {
            break "its fenced commit was refused";
        }
        if after.contains("the processing lease passed to another node") {
            break "it found the lease gone before committing";
        }
        assert!(
            Instant::now() < deadline,
            "the resumed node never noticed the takeover: {after}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sent = producer.finish().await;
    harness.cluster_sink.set_delay(Duration::ZERO);
    assert!(
        takeover <= TAKEOVER_BOUND,
        "alerts resumed {takeover:?} after SIGSTOP"
    );
    let report = harness.check("SIGSTOP").await;
    summary.push(format!(
        "SIGSTOP of {} (processing) for {paused:?}: next alert after {takeover:.1?}, {sent} events \
         under load; on SIGCONT {noticed}; same-id resends {}; {}",
        harness.nodes[holder].name,
        report.repeats.len() - repeats,
        report.describe()
    ));
    repeats = report.repeats.len();

    // 4. Rolling restart under load, then a fourth node joins.
    let producer = harness.producer("roll");
    for index in 0..3 {
        let port = harness.nodes[index].port;
        harness.ports.lock().expect("ports").retain(|p| *p != port);
        harness.nodes[index].stop_with("TERM").await;
        harness.nodes[index].spawn();
        harness.nodes[index].wait_healthy(&client).await;
        harness.ports.lock().expect("ports").push(port);
    }
    let mut fourth = Node::new(
        "node3",
        Some(database.url()),
        event_log.clone(),
        Some(harness.cluster_smtp.port),
    );
    fourth.spawn();
    fourth.wait_healthy(&client).await;
    harness.ports.lock().expect("ports").push(fourth.port);
    harness.nodes.push(fourth);
    let probe = harness
        .probe(3, "fourth-node", Instant::now(), TAKEOVER_BOUND)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = producer.finish().await;
    let report = harness.check("rolling restart").await;
    assert_eq!(
        report.repeats.len(),
        repeats,
        "a graceful restart sent a delivery twice: {:?}",
        &report.repeats[repeats..]
    );
    summary.push(format!(
        "rolling restart of three + a fourth node: {sent} events under load, probe through the \
         fourth node alerted after {probe:.1?}, same-id resends {}; {}",
        report.repeats.len() - repeats,
        report.describe()
    ));

    // The event log was used: every batch in the stream was stored, once, under its
    // message id (`log_applied` has a row per batch, none twice).
    if let Some(nats) = &harness.nats {
        let logged = stream_state(&nats.jetstream().await).await;
        assert!(logged.messages > 0, "nothing went through the event log");
        let applied = psql(&format!(
            "SELECT count(*) || ' ' || count(DISTINCT log_seq) || ' ' || \
             coalesce(max(log_seq), 0) FROM {}.log_applied",
            harness.schema
        ));
        assert_eq!(
            applied,
            format!("{0} {0} {1}", logged.messages, logged.last_sequence),
            "stored batches (rows, positions, last) differ from the stream's"
        );
        summary.push(format!(
            "the event log's stream holds {} batches, each stored once",
            logged.messages
        ));
    }
    let total = harness.acknowledged.lock().expect("acknowledged").len();
    summary.push(format!(
        "{total} acknowledged events, each stored once; alerts and webhooks equal to one \
         SQLite node; {:.1?} in all",
        started.elapsed()
    ));
    let run = match harness.nats {
        Some(_) => "PostgreSQL + JetStream",
        None => "PostgreSQL",
    };
    eprintln!("cluster summary ({run}):\n  {}", summary.join("\n  "));
    assert!(
        started.elapsed() < Duration::from_secs(240),
        "the test must stay well under 5 minutes"
    );
}

/// The append lock's second key ([`tellify_store`]'s `LOCK_EVENTS`, 2); its first is the
/// hash of the schema's name, as `pg_locks` shows a two-key advisory lock (`objsubid` 2,
/// `classid` the first key as an unsigned 32-bit number).
const APPEND_LOCK_OBJID: i64 = 2;

/// Runs one query with `psql` and returns its unaligned output.
fn psql(query: &str) -> String {
    let output = Command::new("psql")
        .args([&server_url(), "-At", "-c", query])
        .output()
        .expect("psql runs");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The backend pid holding the append lock, if a session holds it.
fn append_lock_holder(schema: &str) -> Option<i64> {
    psql(&format!(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 \
         AND classid::bigint = (hashtext('{schema}')::bigint + 4294967296) % 4294967296 \
         AND objid::bigint = {APPEND_LOCK_OBJID}"
    ))
    .lines()
    .next()
    .and_then(|pid| pid.parse().ok())
}

/// A node stopped inside an append transaction (holding the append lock) holds up ingest
/// on the other nodes only until PostgreSQL ends its idle transaction, not until it
/// resumes; its own batch is then refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_inside_an_append_holds_up_the_others_only_briefly() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let database = TestDatabase::create().await.expect("test database");
    let client = client();
    let mut nodes: Vec<Node> = (0..2)
        .map(|n| Node::new(&format!("node{n}"), Some(database.url()), None, None))
        .collect();
    for node in nodes.iter_mut() {
        node.spawn();
    }
    for node in nodes.iter_mut() {
        node.wait_healthy(&client).await;
    }
    let bases: Vec<String> = nodes.iter().map(Node::base).collect();
    token_works_everywhere(&client, &bases, TOKEN).await;

    // Catching the node inside its transaction is a matter of timing: a few tries.
    for attempt in 0..3 {
        let batch: Vec<Value> = (0..10_000)
            .map(|n| json!({"idempotency_key": format!("big-{attempt}-{n}"), "fields": {"n": n}}))
            .collect();
        let base = bases[0].clone();
        let big = tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/api/v1/events"))
                .bearer_auth(TOKEN)
                .json(&Value::Array(batch))
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .map(|response| response.status())
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let backend = loop {
            if let Some(pid) = append_lock_holder(database.schema()) {
                break Some(pid);
            }
            if big.is_finished() || Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let Some(backend) = backend else {
            let _ = big.await;
            continue;
        };
        nodes[0].signal("STOP");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let state = psql(&format!(
            "SELECT state FROM pg_stat_activity WHERE pid = {backend}"
        ));
        if state != "idle in transaction" {
            // The append finished before the stop landed.
            nodes[0].signal("CONT");
            let _ = big.await;
            continue;
        }

        let posted_at = Instant::now();
        let answer = reqwest::Client::new()
            .post(format!("{}/api/v1/events", bases[1]))
            .bearer_auth(TOKEN)
            .json(&json!({"idempotency_key": format!("small-{attempt}"), "fields": {"n": 1}}))
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        let waited = posted_at.elapsed();
        nodes[0].signal("CONT");
        let status = answer.map(|response| response.status());
        assert!(
            matches!(status, Ok(StatusCode::ACCEPTED)),
            "ingest on the other node while one is paused in an append: {status:?} after {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(9),
            "ingest on the other node waited {waited:?} for the paused node"
        );
        let big = big.await.expect("big batch task");
        let stored = all_events(&client, &bases[1], TOKEN, 1000).await;
        let kept = stored
            .iter()
            .filter(|event| {
                event["idempotency_key"]
                    .as_str()
                    .is_some_and(|key| key.starts_with(&format!("big-{attempt}-")))
            })
            .count();
        match big {
            Ok(StatusCode::ACCEPTED) => assert_eq!(kept, 10_000, "an acknowledged batch is whole"),
            _ => assert_eq!(
                kept, 0,
                "a refused batch ({big:?}) left {kept} events behind"
            ),
        }
        eprintln!(
            "paused inside an append: the other node's ingest waited {waited:.1?}; the paused \
             node's batch answered {big:?}"
        );
        return;
    }
    panic!("the node never stopped inside an append in three tries");
}
