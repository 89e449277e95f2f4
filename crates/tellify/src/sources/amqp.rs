//! RabbitMQ (AMQP 0-9-1) as an event source: a durable queue bound to a topic exchange.
//!
//! Several tellify instances naming the same queue compete for its messages (RabbitMQ
//! hands each message to one consumer), which is how the load is shared. A message is
//! acknowledged after its events are committed; one that cannot be parsed is published
//! (with a publisher confirm) to the dead-letter queue with the reason in
//! `x-tellify-error`, then acknowledged; while the store is unavailable it is requeued.

use std::fmt;

use anyhow::Context;
use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};

use super::{
    header_safe, redact, scrub, Format, Outcome, Source, SourceContext, ERROR_HEADER, SOURCE_HEADER,
};

/// `[[sources.amqp]]`: one queue to consume.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// Broker address with credentials and vhost, such as
    /// `amqp://tellify:secret@rabbit:5672/%2f` (`%2f` is the default vhost `/`).
    #[serde(default = "default_url")]
    pub url: String,
    /// Topic exchange the queue is bound to; declared (durable) when missing. Empty: the
    /// queue is consumed as it is, without a binding.
    pub exchange: String,
    /// Binding key of the queue on the exchange, such as `alerts.#`.
    #[serde(default = "default_binding_key")]
    pub binding_key: String,
    /// Durable queue to consume; declared when missing. Every instance naming it shares it.
    pub queue: String,
    /// Durable queue for messages that cannot be stored; `<queue>.dead-letter` if unset.
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
    /// Messages handed to this instance before it acknowledged earlier ones.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// How message bodies are read: `json`, `ndjson` or `kv` (`key:value` lines).
    #[serde(default)]
    pub format: Format,
}

fn default_url() -> String {
    "amqp://127.0.0.1:5672/%2f".to_string()
}

fn default_binding_key() -> String {
    "#".to_string()
}

fn default_prefetch() -> u16 {
    32
}

impl fmt::Debug for AmqpSettings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AmqpSettings")
            .field("url", &redact(&self.url))
            .field("exchange", &self.exchange)
            .field("binding_key", &self.binding_key)
            .field("queue", &self.queue)
            .field("dead_letter_queue", &self.dead_letter_queue)
            .field("prefetch", &self.prefetch)
            .field("format", &self.format)
            .finish()
    }
}

/// A running AMQP consumer; built from checked settings.
pub struct AmqpSource {
    name: String,
    url: String,
    exchange: ShortString,
    binding_key: ShortString,
    queue: ShortString,
    dead_letter_queue: ShortString,
    prefetch: u16,
}

impl AmqpSource {
    /// Checks the names (AMQP allows at most 255 bytes) so a mistake stops the start.
    pub fn new(settings: AmqpSettings) -> anyhow::Result<AmqpSource> {
        if settings.queue.trim().is_empty() {
            anyhow::bail!("sources.amqp: `queue` must not be empty");
        }
        // The AMQP client is built without a TLS certificate store (it would add a PKCS#12
        // stack to the build); say so now rather than fail on every reconnect.
        if settings.url.starts_with("amqps:") {
            anyhow::bail!(
                "sources.amqp `{}`: `amqps://` is not supported by this build; use `amqp://` \
                 through a TLS-terminating proxy or on a private network",
                settings.queue
            );
        }
        let dead_letter_queue = settings
            .dead_letter_queue
            .clone()
            .unwrap_or_else(|| format!("{}.dead-letter", settings.queue));
        if dead_letter_queue == settings.queue {
            anyhow::bail!(
                "sources.amqp `{}`: `dead_letter_queue` must differ from `queue`",
                settings.queue
            );
        }
        let name = |field: &str, value: &str| {
            ShortString::try_new(value).map_err(|_| {
                anyhow::anyhow!(
                    "sources.amqp `{}`: `{field}` is longer than 255 bytes",
                    settings.queue
                )
            })
        };
        Ok(AmqpSource {
            name: format!("amqp:{}", settings.queue),
            exchange: name("exchange", &settings.exchange)?,
            binding_key: name("binding_key", &settings.binding_key)?,
            queue: name("queue", &settings.queue)?,
            dead_letter_queue: name("dead_letter_queue", &dead_letter_queue)?,
            prefetch: settings.prefetch.max(1),
            url: settings.url,
        })
    }

    /// Declares the exchange, the queue with its binding and the dead-letter queue; all
    /// durable, so messages survive a broker restart.
    async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        if !self.exchange.as_str().is_empty() {
            // `amq.*` exchanges are the broker's own: they may only be checked, not declared.
            let passive = self.exchange.as_str().starts_with("amq.");
            channel
                .exchange_declare(
                    self.exchange.clone(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        passive,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
        }
        for queue in [&self.queue, &self.dead_letter_queue] {
            channel
                .queue_declare(
                    queue.clone(),
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
        }
        if !self.exchange.as_str().is_empty() {
            channel
                .queue_bind(
                    self.queue.clone(),
                    self.exchange.clone(),
                    self.binding_key.clone(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    async fn consume(
        &self,
        connection: &Connection,
        context: &mut SourceContext,
    ) -> anyhow::Result<()> {
        let channel = connection
            .create_channel()
            .await
            .context("cannot open a channel")?;
        // Confirms make the dead-letter publish durable before the original is acknowledged.
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("cannot enable publisher confirms")?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .context("cannot set the prefetch")?;
        self.declare(&channel)
            .await
            .context("cannot declare the exchange and queues")?;
        let mut consumer = channel
            .basic_consume(
                self.queue.clone(),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("cannot consume the queue")?;
        context.consuming();
        loop {
            let next = tokio::select! {
                next = consumer.next() => next,
                _ = context.stopped() => None,
            };
            if context.stopping() {
                // Unacknowledged messages go back to the queue when the channel closes.
                let _ = channel
                    .close(200, ShortString::from("tellify stopping"))
                    .await;
                return Ok(());
            }
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => return Err(error).context("consumer failed"),
                None => anyhow::bail!("the broker ended the consumer"),
            };
            if !self.settle(&channel, delivery, context).await? {
                let _ = channel
                    .close(200, ShortString::from("tellify stopping"))
                    .await;
                return Ok(());
            }
        }
    }

    /// Stores one message and settles it; `Ok(false)` means shutdown came meanwhile.
    async fn settle(
        &self,
        channel: &Channel,
        delivery: Delivery,
        context: &mut SourceContext,
    ) -> anyhow::Result<bool> {
        let key = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_string());
        let outcome = context.ingest.handle(&delivery.data, key.as_deref()).await;
        match &outcome {
            Outcome::Stored { .. } => {
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .context("cannot acknowledge a stored message")?;
            }
            Outcome::Rejected(reason) => {
                if let Err(error) = self.dead_letter(channel, &delivery, reason).await {
                    let _ = delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        })
                        .await;
                    return Err(error);
                }
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .context("cannot acknowledge a dead-lettered message")?;
            }
            Outcome::Unavailable(_) => {
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await
                    .context("cannot requeue a message")?;
            }
        }
        Ok(context.settled(&outcome).await)
    }

    /// Publishes the original body and properties to the dead-letter queue with the
    /// reason, and waits for the broker's confirm.
    async fn dead_letter(
        &self,
        channel: &Channel,
        delivery: &Delivery,
        reason: &str,
    ) -> anyhow::Result<()> {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        let mut text = |key: &str, value: &str| {
            headers.insert(
                ShortString::from(key),
                AMQPValue::LongString(LongString::from(header_safe(value))),
            );
        };
        text(ERROR_HEADER, reason);
        text(SOURCE_HEADER, &self.name);
        text("x-tellify-original-exchange", delivery.exchange.as_str());
        text(
            "x-tellify-original-routing-key",
            delivery.routing_key.as_str(),
        );
        let properties = delivery
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2);
        let confirmation = channel
            .basic_publish(
                ShortString::from(""),
                self.dead_letter_queue.clone(),
                // Mandatory: a missing dead-letter queue returns the message instead of
                // dropping it, and the original stays unacknowledged.
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &delivery.data,
                properties,
            )
            .await
            .context("cannot publish to the dead-letter queue")?
            .await
            .context("no confirm from the dead-letter queue")?;
        if !confirmation.is_ack() || confirmation.take_message().is_some() {
            anyhow::bail!(
                "dead-letter queue `{}` did not take the message",
                self.dead_letter_queue
            );
        }
        Ok(())
    }
}

#[async_trait]
impl Source for AmqpSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&mut self, context: &mut SourceContext) -> anyhow::Result<()> {
        tracing::debug!(source = %self.name, url = %redact(&self.url), "connecting");
        let connection = Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot connect to {}: {}",
                    redact(&self.url),
                    scrub(&error.to_string(), &self.url)
                )
            })?;
        let result = self.consume(&connection, context).await;
        let _ = connection
            .close(200, ShortString::from("tellify stopping"))
            .await;
        result.map_err(|error| anyhow::anyhow!(scrub(&format!("{error:#}"), &self.url)))
    }
}
