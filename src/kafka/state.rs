//! Capture state kept in Kafka: the `_tidewater_state` topic (one
//! partition, compacted), one record per source slot or server, keyed
//! `postgres/<slot>` or `mysql/<server>`, whose value is a small JSON
//! document (see each source for its fields).
//!
//! The daemon keeps nothing on local disk (DESIGN §1). What a capture must
//! remember beyond the source's own position (has the initial snapshot
//! finished? what position did we last confirm?) lives here, written with
//! acks=all and awaited before the source is told anything.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value as Json;

/// The topic capture state is kept in.
pub const STATE_TOPIC: &str = "_tidewater_state";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {topic}: {reason}")]
    Read { topic: String, reason: String },
    #[error("cannot write {key} to {STATE_TOPIC}: {reason}")]
    Write { key: String, reason: String },
}

/// Reads and writes state records.
pub struct StateStore {
    client: ClientConfig,
    producer: Option<FutureProducer>,
}

impl StateStore {
    pub fn new(client: &ClientConfig) -> StateStore {
        StateStore {
            client: client.clone(),
            producer: None,
        }
    }

    /// The latest record under `key`, if any (a null value deletes).
    pub async fn read(&self, key: &str) -> Result<Option<Json>, StateError> {
        let client = self.client.clone();
        let entries = tokio::task::spawn_blocking(move || read_topic(&client, STATE_TOPIC))
            .await
            .map_err(|e| StateError::Read {
                topic: STATE_TOPIC.into(),
                reason: e.to_string(),
            })??;
        let mut found = None;
        for (k, v) in entries {
            if k.as_deref() == Some(key.as_bytes()) {
                found = v.and_then(|v| serde_json::from_slice(&v).ok());
            }
        }
        Ok(found)
    }

    /// Writes `value` under `key` and waits for the broker's acknowledgement.
    pub async fn write(&mut self, key: &str, value: &Json) -> Result<(), StateError> {
        let fail = |reason: String| StateError::Write {
            key: key.to_string(),
            reason,
        };
        if self.producer.is_none() {
            super::topic::ensure_topic_with(
                &self.client,
                STATE_TOPIC,
                1,
                -1,
                &[("cleanup.policy", "compact")],
            )
            .await
            .map_err(fail)?;
            let p = acked_producer(&self.client).map_err(|e| fail(e.to_string()))?;
            self.producer = Some(p);
        }
        let Some(producer) = &self.producer else {
            return Err(fail("no producer".into()));
        };
        let payload = value.to_string();
        producer
            .send(
                FutureRecord::to(STATE_TOPIC).key(key).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| fail(e.to_string()))?;
        Ok(())
    }
}

/// An idempotent acks=all producer for small records that are awaited one
/// by one (state, schemas).
pub fn acked_producer(client: &ClientConfig) -> Result<FutureProducer, rdkafka::error::KafkaError> {
    client
        .clone()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
}

/// Every message of partition 0 of `topic`, as (key, value) (blocking).
/// A topic that does not exist reads as empty.
#[allow(clippy::type_complexity, reason = "a plain list of pairs")]
pub fn read_topic(
    client: &ClientConfig,
    topic: &str,
) -> Result<Vec<(Option<Vec<u8>>, Option<Vec<u8>>)>, StateError> {
    let read = |e: rdkafka::error::KafkaError| StateError::Read {
        topic: topic.to_string(),
        reason: e.to_string(),
    };
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", "tidewater-state-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .map_err(read)?;
    let timeout = Duration::from_secs(10);
    let (low, high) = match consumer.fetch_watermarks(topic, 0, timeout) {
        Ok(w) => w,
        Err(rdkafka::error::KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownPartition,
        )) => return Ok(Vec::new()),
        Err(e) => return Err(read(e)),
    };
    let mut out = Vec::new();
    if high <= low {
        return Ok(out);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(low))
        .map_err(read)?;
    consumer.assign(&tpl).map_err(read)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if std::time::Instant::now() > deadline {
            return Err(StateError::Read {
                topic: topic.to_string(),
                reason: format!("timed out reading offsets {low}..{high}"),
            });
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg.map_err(read)?;
        out.push((
            msg.key().map(<[u8]>::to_vec),
            msg.payload().map(<[u8]>::to_vec),
        ));
        if msg.offset() + 1 >= high {
            return Ok(out);
        }
    }
}
