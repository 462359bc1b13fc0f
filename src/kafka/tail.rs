//! `tidewater tail <topic>`: prints a topic's change events as JSON lines,
//! like kcat for tidewater's topics. It reads every partition without a
//! consumer group (so it never moves anybody's offsets).

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::json;

use super::consumer::{Decoded, EventDecoder};
use super::schemas::SchemaStore;
use crate::event::json::{event_json, key_json};

#[derive(Debug, Clone)]
pub struct TailOptions {
    pub topic: String,
    pub from_beginning: bool,
    pub max_messages: Option<u64>,
    /// Stop after this long without a message.
    pub idle_exit: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topic `{0}` does not exist")]
    NoTopic(String),
    #[error("cannot write to stdout: {0}")]
    Stdout(#[from] std::io::Error),
}

/// Prints events until `max_messages` or `idle_exit`; returns how many
/// messages were printed.
pub async fn tail(
    client: &ClientConfig,
    store: SchemaStore,
    opts: &TailOptions,
) -> Result<u64, TailError> {
    let consumer: StreamConsumer = client
        .clone()
        .set("group.id", "tidewater-tail")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&opts.topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(TailError::NoTopic(opts.topic.clone()));
    }
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let offset = if opts.from_beginning {
            Offset::Beginning
        } else {
            Offset::End
        };
        tpl.add_partition_offset(&opts.topic, p, offset)?;
    }
    consumer.assign(&tpl)?;
    let mut decoder = EventDecoder::new(store);
    let mut stream = consumer.stream();
    let mut printed = 0u64;
    let mut stdout = std::io::stdout().lock();
    loop {
        if opts.max_messages.is_some_and(|m| printed >= m) {
            break;
        }
        let next = match opts.idle_exit {
            Some(idle) => match tokio::time::timeout(idle, stream.next()).await {
                Ok(n) => n,
                Err(_) => break,
            },
            None => stream.next().await,
        };
        let Some(message) = next else { break };
        let message = message?;
        let (partition, offset) = (message.partition(), message.offset());
        let line = match decoder
            .decode(
                &opts.topic,
                partition,
                offset,
                message.key(),
                message.payload(),
            )
            .await
        {
            Ok(Decoded::Event(event)) => {
                json!({"partition": partition, "offset": offset, "event": event_json(&event)})
            }
            Ok(Decoded::Tombstone { table, key }) => {
                let key = match (&table, &key) {
                    (Some(t), Some(k)) => key_json(k, t),
                    _ => serde_json::Value::Null,
                };
                json!({"partition": partition, "offset": offset, "tombstone": true, "key": key})
            }
            Err(e) => json!({"partition": partition, "offset": offset, "error": e.to_string()}),
        };
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
        printed += 1;
    }
    Ok(printed)
}
