//! NATS as an event source: a core subscription, or a JetStream durable pull consumer when
//! `stream` is set.
//!
//! JetStream gives the same guarantees as AMQP: a message is acknowledged (and the ack
//! confirmed by the server) after its events are committed; one that cannot be parsed is
//! published to the dead-letter subject, and acknowledged once a stream has stored that
//! copy; while the store is unavailable it is nak'd with a delay. Instances sharing one
//! durable consumer compete for its messages.
//!
//! Core NATS has no acknowledgements: tellify stores a message before it answers a
//! request (`reply`), retries in memory while the store is unavailable, and loses what it
//! holds when it stops or crashes. Instances in one queue group compete for messages.

use std::fmt;
use std::time::Duration;

use anyhow::Context;
use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, consumer, AckKind};
use async_trait::async_trait;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    header_safe, redact, scrub, Format, Outcome, Source, SourceContext, ERROR_HEADER, SOURCE_HEADER,
};

/// `[[sources.nats]]`: one subject to consume.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// Server address, with credentials if needed: `nats://user:secret@nats:4222`.
    #[serde(default = "default_url")]
    pub url: String,
    /// Subject to consume; wildcards (`alerts.>`) are allowed.
    pub subject: String,
    /// JetStream stream holding `subject`; created (capturing `subject`) when missing.
    /// Unset: a core NATS subscription, without acknowledgements.
    #[serde(default)]
    pub stream: Option<String>,
    /// Name of the durable JetStream consumer; instances sharing it compete.
    #[serde(default = "default_durable")]
    pub durable: String,
    /// Core NATS queue group; instances in one group compete. Empty: every instance
    /// receives every message.
    #[serde(default = "default_queue_group")]
    pub queue_group: String,
    /// Subject messages that cannot be stored are published to. With `stream` set, a
    /// stream must capture it: the message is acknowledged only after that stream stored
    /// the copy.
    pub dead_letter_subject: String,
    /// JetStream messages fetched ahead of the one being stored.
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
    /// How message bodies are read: `json`, `ndjson` or `kv` (`key:value` lines).
    #[serde(default)]
    pub format: Format,
}

fn default_url() -> String {
    "nats://127.0.0.1:4222".to_string()
}

fn default_durable() -> String {
    "tellify".to_string()
}

fn default_queue_group() -> String {
    "tellify".to_string()
}

fn default_prefetch() -> usize {
    32
}

impl fmt::Debug for NatsSettings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("NatsSettings")
            .field("url", &redact(&self.url))
            .field("subject", &self.subject)
            .field("stream", &self.stream)
            .field("durable", &self.durable)
            .field("queue_group", &self.queue_group)
            .field("dead_letter_subject", &self.dead_letter_subject)
            .field("prefetch", &self.prefetch)
            .field("format", &self.format)
            .finish()
    }
}

/// A running NATS consumer; built from checked settings.
#[derive(Clone)]
pub struct NatsSource {
    name: String,
    settings: NatsSettings,
}

impl NatsSource {
    pub fn new(settings: NatsSettings) -> anyhow::Result<NatsSource> {
        let subject = settings.subject.trim();
        if subject.is_empty() || subject.contains(char::is_whitespace) {
            anyhow::bail!("sources.nats: `subject` must be a subject without spaces");
        }
        let dead_letter = settings.dead_letter_subject.trim();
        if dead_letter.is_empty()
            || dead_letter.contains(char::is_whitespace)
            || dead_letter.contains(['*', '>'])
        {
            anyhow::bail!(
                "sources.nats `{subject}`: `dead_letter_subject` must be a subject without \
                 spaces or wildcards"
            );
        }
        if settings.stream.is_some() && settings.durable.trim().is_empty() {
            anyhow::bail!("sources.nats `{subject}`: `durable` must not be empty");
        }
        Ok(NatsSource {
            name: format!("nats:{subject}"),
            settings,
        })
    }

    /// Whether every subscriber hears every message (a core subscription outside any
    /// queue group): with several nodes on one store it must then run on one of them only
    /// ([`crate::lease::run_singleton`]). A queue group and a JetStream durable consumer
    /// are shared queues, handing each message to one member: every node may consume.
    pub fn hears_everything(&self) -> bool {
        self.settings.stream.is_none() && self.settings.queue_group.is_empty()
    }

    /// The headers of a dead-lettered copy: the original ones plus the reason.
    fn dead_letter_headers(&self, original: Option<&HeaderMap>, reason: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(original) = original {
            for (name, values) in original.iter() {
                // A copied message id would make JetStream drop the copy as a duplicate.
                if AsRef::<str>::as_ref(name)
                    .eq_ignore_ascii_case(AsRef::<str>::as_ref(&NATS_MESSAGE_ID))
                {
                    continue;
                }
                for value in values {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        headers.insert(ERROR_HEADER, header_safe(reason).as_str());
        headers.insert(SOURCE_HEADER, self.name.as_str());
        headers
    }

    async fn run_core(
        &self,
        client: &async_nats::Client,
        context: &mut SourceContext,
    ) -> anyhow::Result<()> {
        let subject = self.settings.subject.clone();
        let mut subscriber = if self.settings.queue_group.is_empty() {
            client.subscribe(subject).await
        } else {
            client
                .queue_subscribe(subject, self.settings.queue_group.clone())
                .await
        }
        .context("cannot subscribe")?;
        context.consuming();
        loop {
            let next = tokio::select! {
                next = subscriber.next() => next,
                _ = context.stopped() => None,
            };
            if context.stopping() {
                return Ok(());
            }
            let Some(message) = next else {
                anyhow::bail!("the subscription ended");
            };
            let key = message_id(message.headers.as_ref());
            // No broker keeps the message for us: retry here until it is stored.
            let outcome = loop {
                let outcome = context
                    .ingest
                    .handle(&message.payload, key.as_deref())
                    .await;
                if let Outcome::Unavailable(_) = outcome {
                    if !context.settled(&outcome).await {
                        return Ok(());
                    }
                    continue;
                }
                break outcome;
            };
            let answer = match &outcome {
                Outcome::Stored {
                    accepted,
                    duplicates,
                } => json!({"accepted": accepted, "duplicates": duplicates}),
                Outcome::Rejected(reason) => {
                    let headers = self.dead_letter_headers(message.headers.as_ref(), reason);
                    client
                        .publish_with_headers(
                            self.settings.dead_letter_subject.clone(),
                            headers,
                            message.payload.clone(),
                        )
                        .await
                        .context("cannot publish to the dead-letter subject")?;
                    client
                        .flush()
                        .await
                        .context("cannot flush the dead-letter message")?;
                    json!({"error": reason})
                }
                Outcome::Unavailable(reason) => json!({"error": reason}),
            };
            if let Some(reply) = message.reply.clone() {
                client
                    .publish(reply, answer.to_string().into())
                    .await
                    .context("cannot answer the request")?;
            }
            context.settled(&outcome).await;
        }
    }

    async fn run_jetstream(
        &self,
        client: async_nats::Client,
        stream_name: &str,
        context: &mut SourceContext,
    ) -> anyhow::Result<()> {
        let jetstream = jetstream::new(client);
        let stream = jetstream
            .get_or_create_stream(jetstream::stream::Config {
                name: stream_name.to_string(),
                subjects: vec![self.settings.subject.clone()],
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot find or create stream `{stream_name}`"))?;
        let durable = self.settings.durable.clone();
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &durable,
                consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: self.settings.subject.clone(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("cannot find or create consumer `{durable}`"))?;
        // Heartbeats (on by default) end a stalled pull, which then reconnects.
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(self.settings.prefetch.max(1))
            .messages()
            .await
            .context("cannot pull messages")?;
        context.consuming();
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                _ = context.stopped() => None,
            };
            if context.stopping() {
                // Unacknowledged messages are delivered again after `ack_wait`.
                return Ok(());
            }
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => return Err(error).context("pulling messages failed"),
                None => anyhow::bail!("the consumer ended"),
            };
            let key = match message_id(message.headers.as_ref()) {
                Some(id) => Some(id),
                // The stream position is the message's identity; its publish time tells
                // it apart from a message with that number in an earlier, deleted stream.
                None => message.info().ok().map(|info| {
                    format!(
                        "{}:{}:{}",
                        info.stream, info.stream_sequence, info.published
                    )
                }),
            };
            let outcome = context
                .ingest
                .handle(&message.payload, key.as_deref())
                .await;
            match &outcome {
                Outcome::Stored { .. } => message.double_ack().await.map_err(|error| {
                    anyhow::anyhow!("cannot acknowledge a stored message: {error}")
                })?,
                Outcome::Rejected(reason) => {
                    let headers = self.dead_letter_headers(message.headers.as_ref(), reason);
                    let stored = async {
                        jetstream
                            .publish_with_headers(
                                self.settings.dead_letter_subject.clone(),
                                headers,
                                message.payload.clone(),
                            )
                            .await?
                            .await
                    }
                    .await;
                    if let Err(error) = stored {
                        let _ = message
                            .ack_with(AckKind::Nak(Some(context.redelivery_delay())))
                            .await;
                        anyhow::bail!(
                            "dead-letter subject `{}` is not stored by any stream: {error}",
                            self.settings.dead_letter_subject
                        );
                    }
                    message.double_ack().await.map_err(|error| {
                        anyhow::anyhow!("cannot acknowledge a dead-lettered message: {error}")
                    })?;
                }
                Outcome::Unavailable(_) => {
                    let delay = context.redelivery_delay();
                    message
                        .ack_with(AckKind::Nak(Some(delay)))
                        .await
                        .map_err(|error| anyhow::anyhow!("cannot nak a message: {error}"))?;
                }
            }
            if !context.settled(&outcome).await {
                return Ok(());
            }
        }
    }
}

#[async_trait]
impl Source for NatsSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&mut self, context: &mut SourceContext) -> anyhow::Result<()> {
        let url = &self.settings.url;
        tracing::debug!(source = %self.name, url = %redact(url), "connecting");
        let client = async_nats::ConnectOptions::new()
            .name("tellify")
            .connect(url.as_str())
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot connect to {}: {}",
                    redact(url),
                    scrub(&error.to_string(), url)
                )
            })?;
        let result = match self.settings.stream.clone() {
            Some(stream) => self.run_jetstream(client.clone(), &stream, context).await,
            None => self.run_core(&client, context).await,
        };
        let _ = client.drain().await;
        result.map_err(|error| anyhow::anyhow!(scrub(&format!("{error:#}"), url)))
    }
}

/// The publisher's `Nats-Msg-Id`, which JetStream also uses to drop duplicates.
fn message_id(headers: Option<&HeaderMap>) -> Option<String> {
    headers
        .and_then(|headers| headers.get(NATS_MESSAGE_ID))
        .map(|value| value.as_str().to_string())
}
