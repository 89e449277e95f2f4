//! Brokers as event sources, against the RabbitMQ (127.0.0.1:5672) and NATS with JetStream
//! (127.0.0.1:4222) the machine runs (`scripts/test` starts them when they are missing).
//! Every test uses its own exchange, queues, subjects and streams.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{json, Value};
use tellify::app::RunningApp;
use tellify::clock::ManualClock;
use tellify::config::Settings;
use tellify::sources::amqp::AmqpSettings;
use tellify::sources::nats::NatsSettings;
use tellify::sources::Format;
use tellify_store::EventQuery;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const NATS_URL: &str = "nats://127.0.0.1:4222";

struct TestApp {
    app: RunningApp,
    _data: tempfile::TempDir,
}

/// Starts tellify in-process with a fresh data directory and the given sources.
async fn spawn(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().expect("address"),
        data: data.path().to_path_buf(),
        ..Settings::default()
    };
    // Local test servers listen on loopback, which the outbound guard refuses by default.
    settings.outbound.allow = vec!["127.0.0.0/8".to_string(), "::1".to_string()];
    adjust(&mut settings);
    let clock = Arc::new(ManualClock::new(
        "2026-11-23T09:00:00Z".parse().expect("time"),
    ));
    let admin = format!("tfy_admin_{}", tellify_model::new_id());
    let app = tellify::app::start(settings, clock, Some(admin))
        .await
        .expect("app starts");
    TestApp { app, _data: data }
}

/// A stored event as JSON, oldest first, so tests compare plain values.
async fn stored(app: &TestApp) -> Vec<Value> {
    let mut events: Vec<Value> = app
        .app
        .state
        .store
        .query_events(EventQuery {
            limit: 1000,
            ..EventQuery::default()
        })
        .await
        .expect("query events")
        .iter()
        .map(|event| serde_json::to_value(&**event).expect("event as json"))
        .collect();
    events.reverse();
    events
}

async fn wait_for_events(app: &TestApp, count: usize) -> Vec<Value> {
    eventually(&format!("{count} stored events"), || async {
        let events = stored(app).await;
        (events.len() >= count).then_some(events)
    })
    .await
}

/// Polls `check` every 20 ms until it returns `Some`, for up to ten seconds.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "tellify-test-{prefix}-{}",
        tellify_model::new_id().to_lowercase()
    )
}

// ---- AMQP ----

struct Rabbit {
    connection: Connection,
    channel: Channel,
}

impl Rabbit {
    async fn connect() -> Rabbit {
        let connection = Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .expect("RabbitMQ answers on 127.0.0.1:5672");
        let channel = connection.create_channel().await.expect("channel");
        Rabbit {
            connection,
            channel,
        }
    }

    /// The same durable topology tellify declares, so messages can wait before it starts.
    async fn declare(&self, exchange: &str, queue: &str, binding_key: &str) {
        self.channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("exchange");
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue");
        self.channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                binding_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("binding");
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &str,
        message_id: Option<&str>,
    ) {
        let mut properties = BasicProperties::default().with_delivery_mode(2);
        if let Some(id) = message_id {
            properties = properties.with_message_id(id.into());
        }
        self.channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("publish confirm");
    }

    /// Ready messages in `queue` (unacknowledged ones are not counted).
    async fn ready(&self, queue: &str) -> u32 {
        let channel = self.connection.create_channel().await.expect("channel");
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue exists")
            .message_count()
    }

    /// Takes every message from `queue`.
    async fn drain(&self, queue: &str) -> Vec<(String, FieldTable)> {
        let mut messages = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            let body = String::from_utf8(message.delivery.data.clone()).expect("utf-8 body");
            let headers = message
                .delivery
                .properties
                .headers()
                .clone()
                .unwrap_or_default();
            messages.push((body, headers));
        }
        messages
    }

    async fn delete(&self, exchange: &str, queues: &[&str]) {
        for queue in queues {
            let _ = self
                .channel
                .queue_delete((*queue).into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = self
            .channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await;
    }
}

fn header(headers: &FieldTable, name: &str) -> String {
    match headers.inner().get(name) {
        Some(AMQPValue::LongString(text)) => String::from_utf8_lossy(text.as_bytes()).to_string(),
        other => panic!("header {name} is {other:?}"),
    }
}

fn amqp_source(exchange: &str, queue: &str, binding_key: &str, format: Format) -> AmqpSettings {
    AmqpSettings {
        url: AMQP_URL.to_string(),
        exchange: exchange.to_string(),
        binding_key: binding_key.to_string(),
        queue: queue.to_string(),
        dead_letter_queue: None,
        prefetch: 8,
        format,
    }
}

#[tokio::test]
async fn amqp_messages_become_events_and_are_acknowledged_after_storing() {
    let rabbit = Rabbit::connect().await;
    let exchange = unique("exchange");
    let json_queue = unique("json");
    let kv_queue = unique("kv");
    rabbit.declare(&exchange, &json_queue, "alerts.#").await;
    rabbit.declare(&exchange, &kv_queue, "text.*").await;
    // Published before tellify runs: the durable queue keeps them.
    rabbit
        .publish(
            &exchange,
            "alerts.disk",
            r#"{"type": "disk", "severity": "warning", "message": "disk 91% full", "fields": {"host": "db1", "used": 91}}"#,
            Some("msg-1"),
        )
        .await;
    rabbit
        .publish(&exchange, "other.thing", r#"{"type": "ignored"}"#, None)
        .await;
    rabbit
        .publish(
            &exchange,
            "text.web",
            "type:http host:web1 status:502 upstream down",
            None,
        )
        .await;

    let app = spawn(|settings| {
        settings.sources.amqp = vec![
            amqp_source(&exchange, &json_queue, "alerts.#", Format::Json),
            amqp_source(&exchange, &kv_queue, "text.*", Format::Kv),
        ];
    })
    .await;
    let events = wait_for_events(&app, 2).await;
    let json_event = events
        .iter()
        .find(|event| event["type"] == "disk")
        .expect("json event");
    assert_eq!(json_event["severity"], "warning");
    assert_eq!(json_event["message"], "disk 91% full");
    assert_eq!(json_event["fields"], json!({"host": "db1", "used": 91}));
    assert_eq!(
        json_event["source"]["producer"],
        format!("amqp:{json_queue}")
    );
    assert_eq!(json_event["idempotency_key"], "msg-1");
    let kv_event = events
        .iter()
        .find(|event| event["type"] == "http")
        .expect("key:value event");
    assert_eq!(kv_event["source"]["host"], "web1");
    assert_eq!(kv_event["fields"]["status"], 502);
    assert_eq!(kv_event["message"], "upstream down");
    assert_eq!(kv_event["source"]["producer"], format!("amqp:{kv_queue}"));

    // A redelivered message (same message id) is stored once. The sentinel behind it on
    // the same queue tells when it has been handled.
    rabbit
        .publish(
            &exchange,
            "alerts.disk",
            r#"{"type": "disk", "message": "again"}"#,
            Some("msg-1"),
        )
        .await;
    rabbit
        .publish(
            &exchange,
            "alerts.sentinel",
            r#"{"type": "sentinel"}"#,
            None,
        )
        .await;
    let events = wait_for_events(&app, 3).await;
    let types: Vec<&str> = events
        .iter()
        .filter_map(|event| event["type"].as_str())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "disk").count(),
        1,
        "{types:?}"
    );
    assert!(types.contains(&"sentinel"));
    assert!(!types.contains(&"ignored"), "the binding key filters");

    // Once tellify has stopped, unacknowledged messages would be back in the queue.
    app.app.stop().await.expect("stops");
    assert_eq!(rabbit.ready(&json_queue).await, 0);
    assert_eq!(rabbit.ready(&kv_queue).await, 0);
    let dead_letters = format!("{json_queue}.dead-letter");
    assert_eq!(rabbit.ready(&dead_letters).await, 0);
    rabbit
        .delete(
            &exchange,
            &[
                &json_queue,
                &kv_queue,
                &dead_letters,
                &format!("{kv_queue}.dead-letter"),
            ],
        )
        .await;
}

/// The number in the `/metrics` line that starts with `series` (0 while never counted).
fn metric(app: &TestApp, series: &str) -> u64 {
    app.app
        .state
        .metrics
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse::<f64>().expect("a number") as u64)
        .unwrap_or(0)
}

#[tokio::test]
async fn amqp_messages_wait_with_the_broker_while_processing_is_behind() {
    let rabbit = Rabbit::connect().await;
    let exchange = unique("exchange");
    let queue = unique("backlog");
    rabbit.declare(&exchange, &queue, "alerts.#").await;
    let app = spawn(|settings| {
        settings.ingest.max_backlog_events = 100;
        settings.sources.amqp = vec![amqp_source(&exchange, &queue, "alerts.#", Format::Json)];
    })
    .await;
    // Pretend ingest stored far more than the worker has processed.
    app.app.state.worker.appended(10_000);
    let producer = format!("amqp:{queue}");
    let retries =
        format!("tellify_source_messages_total{{source=\"{producer}\",outcome=\"retry\"}}");
    let rejected_before = metric(&app, "tellify_ingest_rejected_total");
    rabbit
        .publish(
            &exchange,
            "alerts.disk",
            r#"{"type": "disk"}"#,
            Some("late-1"),
        )
        .await;

    // The one ingest path refuses it as retryable: left for redelivery, counted as a
    // rejected batch, neither stored nor dead-lettered.
    eventually("the message handed back to the broker", || async {
        (metric(&app, &retries) >= 1).then_some(())
    })
    .await;
    assert!(metric(&app, "tellify_ingest_rejected_total") > rejected_before);
    assert!(
        stored(&app).await.is_empty(),
        "nothing stored during the backlog"
    );
    app.app.stop().await.expect("stops");
    assert_eq!(
        rabbit.ready(&queue).await,
        1,
        "the message waits in its queue"
    );
    let dead_letters = format!("{queue}.dead-letter");
    assert_eq!(rabbit.ready(&dead_letters).await, 0, "not dead-lettered");
    rabbit.delete(&exchange, &[&queue, &dead_letters]).await;
}

#[tokio::test]
async fn amqp_broken_messages_go_to_the_dead_letter_queue_with_the_reason() {
    let rabbit = Rabbit::connect().await;
    let exchange = unique("exchange");
    let queue = unique("queue");
    let dead_letters = unique("dead");
    rabbit.declare(&exchange, &queue, "#").await;
    rabbit
        .publish(&exchange, "a", "{not json", Some("broken-1"))
        .await;
    rabbit
        .publish(
            &exchange,
            "b",
            r#"{"type": "x", "severity": "fatal"}"#,
            None,
        )
        .await;
    rabbit
        .publish(&exchange, "c", r#"{"type": "fine"}"#, None)
        .await;
    let app = spawn(|settings| {
        let mut source = amqp_source(&exchange, &queue, "#", Format::Json);
        source.dead_letter_queue = Some(dead_letters.clone());
        settings.sources.amqp = vec![source];
    })
    .await;
    let events = wait_for_events(&app, 1).await;
    app.app.stop().await.expect("stops");

    assert_eq!(
        events.len(),
        1,
        "only the valid message is stored: {events:?}"
    );
    assert_eq!(events[0]["type"], "fine");
    assert_eq!(
        rabbit.ready(&queue).await,
        0,
        "every message was acknowledged"
    );
    let dead = rabbit.drain(&dead_letters).await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    let (body, headers) = &dead[0];
    assert_eq!(body, "{not json");
    assert!(
        header(headers, "x-tellify-error").contains("invalid JSON"),
        "{headers:?}"
    );
    assert_eq!(header(headers, "x-tellify-source"), format!("amqp:{queue}"));
    assert_eq!(header(headers, "x-tellify-original-routing-key"), "a");
    let (body, headers) = &dead[1];
    assert_eq!(body, r#"{"type": "x", "severity": "fatal"}"#);
    let reason = header(headers, "x-tellify-error");
    assert!(reason.starts_with("`severity`:"), "{reason}");
    rabbit.delete(&exchange, &[&queue, &dead_letters]).await;
}

#[tokio::test]
async fn amqp_instances_on_one_queue_share_its_messages() {
    let rabbit = Rabbit::connect().await;
    let exchange = unique("exchange");
    let queue = unique("shared");
    rabbit.declare(&exchange, &queue, "#").await;
    let source = amqp_source(&exchange, &queue, "#", Format::Json);
    let first = spawn(|settings| settings.sources.amqp = vec![source.clone()]).await;
    let second = spawn(|settings| settings.sources.amqp = vec![source.clone()]).await;
    // Both consumers must be attached before publishing, or one could take everything.
    eventually("two consumers", || async {
        let channel = rabbit.connection.create_channel().await.expect("channel");
        let queue = channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue");
        (queue.consumer_count() == 2).then_some(())
    })
    .await;
    for index in 0..40 {
        rabbit
            .publish(
                &exchange,
                "k",
                &json!({"type": "n", "fields": {"i": index}}).to_string(),
                None,
            )
            .await;
    }
    let (from_first, from_second) = eventually("all 40 stored", || async {
        let (a, b) = (stored(&first).await.len(), stored(&second).await.len());
        (a + b == 40).then_some((a, b))
    })
    .await;
    assert!(
        from_first > 0 && from_second > 0,
        "{from_first} / {from_second}"
    );
    first.app.stop().await.expect("stops");
    second.app.stop().await.expect("stops");
    assert_eq!(rabbit.ready(&queue).await, 0);
    rabbit
        .delete(&exchange, &[&queue, &format!("{queue}.dead-letter")])
        .await;
}

/// A TCP proxy in front of RabbitMQ whose connections the test can cut, to play a broker
/// that goes away and comes back. Also counts the connections it accepted.
async fn cuttable_proxy(target: &'static str) -> (u16, watch::Sender<u32>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (cut, cuts) = watch::channel(0u32);
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut cuts = cuts.clone();
            cuts.mark_unchanged();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cuts.changed() => {
                        let _ = inbound.shutdown().await;
                    }
                }
            });
        }
    });
    (port, cut, accepted)
}

#[tokio::test]
async fn amqp_source_reconnects_when_the_broker_goes_away() {
    let rabbit = Rabbit::connect().await;
    let exchange = unique("exchange");
    let queue = unique("reconnect");
    rabbit.declare(&exchange, &queue, "#").await;
    let (port, cut, accepted) = cuttable_proxy("127.0.0.1:5672").await;
    let mut source = amqp_source(&exchange, &queue, "#", Format::Json);
    source.url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let app = spawn(|settings| settings.sources.amqp = vec![source]).await;
    // Message ids make a redelivery harmless: the cut may come between storing "before"
    // and its acknowledgement reaching the broker.
    rabbit
        .publish(&exchange, "k", r#"{"type": "before"}"#, Some("before"))
        .await;
    wait_for_events(&app, 1).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    cut.send_modify(|count| *count += 1);
    // A second connection through the proxy means the source noticed and reconnected.
    eventually("a reconnect", || async {
        (accepted.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    rabbit
        .publish(&exchange, "k", r#"{"type": "after"}"#, Some("after"))
        .await;
    let events = eventually("the message sent after the cut", || async {
        let events = stored(&app).await;
        events
            .iter()
            .any(|event| event["type"] == "after")
            .then_some(events)
    })
    .await;
    let types: Vec<&str> = events
        .iter()
        .filter_map(|event| event["type"].as_str())
        .collect();
    assert_eq!(types, vec!["before", "after"]);
    app.app.stop().await.expect("stops");
    assert_eq!(rabbit.ready(&queue).await, 0);
    rabbit
        .delete(&exchange, &[&queue, &format!("{queue}.dead-letter")])
        .await;
}

// ---- NATS ----

async fn nats() -> async_nats::Client {
    async_nats::connect(NATS_URL)
        .await
        .expect("NATS answers on 127.0.0.1:4222")
}

fn nats_source(subject: &str, dead_letter_subject: &str, format: Format) -> NatsSettings {
    NatsSettings {
        url: NATS_URL.to_string(),
        subject: subject.to_string(),
        stream: None,
        durable: "tellify".to_string(),
        queue_group: "tellify".to_string(),
        dead_letter_subject: dead_letter_subject.to_string(),
        prefetch: 8,
        format,
    }
}

/// Sends a request, retrying while nobody listens yet (the source is still subscribing).
async fn request(
    client: &async_nats::Client,
    subject: &str,
    headers: async_nats::HeaderMap,
    body: &str,
) -> Value {
    eventually("an answer from tellify", || async {
        let answer = client
            .request_with_headers(
                subject.to_string(),
                headers.clone(),
                body.to_string().into(),
            )
            .await
            .ok()?;
        Some(serde_json::from_slice(&answer.payload).expect("json answer"))
    })
    .await
}

#[tokio::test]
async fn nats_core_subject_stores_events_answers_requests_and_dead_letters() {
    let client = nats().await;
    let subject = format!("{}.events", unique("core"));
    let dead_subject = format!("{}.dead", unique("core"));
    let mut dead = client
        .subscribe(dead_subject.clone())
        .await
        .expect("subscribe dead letters");
    let app = spawn(|settings| {
        settings.sources.nats = vec![nats_source(&subject, &dead_subject, Format::Kv)];
    })
    .await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "core-1");
    let answer = request(
        &client,
        &subject,
        headers.clone(),
        "type:backup job:nightly ok",
    )
    .await;
    assert_eq!(answer, json!({"accepted": 1, "duplicates": 0}));
    // The same message id again is a redelivery: not stored twice.
    let answer = request(&client, &subject, headers, "type:backup job:nightly ok").await;
    assert_eq!(answer, json!({"accepted": 0, "duplicates": 1}));
    let answer = request(
        &client,
        &subject,
        async_nats::HeaderMap::new(),
        "msg:\"unterminated",
    )
    .await;
    assert!(
        answer["error"].as_str().expect("error").contains("column"),
        "{answer}"
    );

    let events = stored(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "backup");
    assert_eq!(events[0]["fields"]["job"], "nightly");
    assert_eq!(events[0]["idempotency_key"], "core-1");
    assert_eq!(events[0]["source"]["producer"], format!("nats:{subject}"));
    let letter = tokio::time::timeout(Duration::from_secs(5), dead.next())
        .await
        .expect("a dead letter in time")
        .expect("a dead letter");
    assert_eq!(&letter.payload[..], b"msg:\"unterminated");
    let headers = letter.headers.expect("headers");
    let reason = headers.get("x-tellify-error").expect("reason header");
    assert!(reason.as_str().starts_with("line 1: column"), "{reason}");
    assert_eq!(
        headers
            .get("x-tellify-source")
            .map(|v| v.as_str().to_string()),
        Some(format!("nats:{subject}"))
    );
    app.app.stop().await.expect("stops");
}

#[tokio::test]
async fn nats_jetstream_durable_consumer_acks_after_storing_and_dead_letters() {
    let client = nats().await;
    let context = jetstream::new(client.clone());
    let base = unique("js").replace('-', "_");
    let stream_name = base.to_uppercase();
    let subject = format!("{base}.events");
    let dead_stream = format!("{stream_name}_DEAD");
    let dead_subject = format!("{base}.dead");
    for (name, subject) in [(&stream_name, &subject), (&dead_stream, &dead_subject)] {
        context
            .create_stream(jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![subject.clone()],
                ..Default::default()
            })
            .await
            .expect("create stream");
    }
    // Published before tellify runs: the stream keeps them for the durable consumer.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "js-1");
    context
        .publish_with_headers(
            subject.clone(),
            headers,
            r#"{"type": "deploy", "fields": {"version": "1.2.3"}}"#.into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
    context
        .publish(subject.clone(), r#"{"type": "broken""#.into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let third = context
        .publish(
            subject.clone(),
            "{\"type\": \"deploy-done\"}\n{\"type\": \"smoke\"}".into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");

    let app = spawn(|settings| {
        let mut source = nats_source(&subject, &dead_subject, Format::Ndjson);
        source.stream = Some(stream_name.clone());
        source.durable = "tellify-test".to_string();
        settings.sources.nats = vec![source];
    })
    .await;
    let events = wait_for_events(&app, 3).await;
    assert_eq!(events[0]["type"], "deploy");
    assert_eq!(events[0]["fields"]["version"], "1.2.3");
    assert_eq!(events[0]["idempotency_key"], "js-1");
    assert_eq!(events[0]["source"]["producer"], format!("nats:{subject}"));
    // Without a message id the stream position keys the events of the message.
    let key = events[1]["idempotency_key"].as_str().expect("key");
    assert!(
        key.starts_with(&format!("{stream_name}:{}:", third.sequence)) && key.ends_with("#0"),
        "{key}"
    );
    assert_eq!(events[2]["type"], "smoke");

    let stream = context.get_stream(&stream_name).await.expect("stream");
    eventually("every message acknowledged", || async {
        let info = stream
            .consumer_info("tellify-test")
            .await
            .expect("durable consumer");
        (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
    })
    .await;
    let dead = context
        .get_stream(&dead_stream)
        .await
        .expect("dead-letter stream")
        .get_raw_message(1)
        .await
        .expect("one dead letter");
    assert_eq!(&dead.payload[..], br#"{"type": "broken""#);
    let reason = dead
        .headers
        .get("x-tellify-error")
        .expect("reason header")
        .as_str()
        .to_string();
    assert!(reason.starts_with("line 1: invalid JSON"), "{reason}");
    assert_eq!(
        stored(&app).await.len(),
        3,
        "the broken message is not stored"
    );
    app.app.stop().await.expect("stops");
    let _ = context.delete_stream(&stream_name).await;
    let _ = context.delete_stream(&dead_stream).await;
}
