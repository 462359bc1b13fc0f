//! Publishing change events: serialization with registered schemas, topics
//! created on first use, and an idempotent, acks=all producer whose every
//! acknowledgement feeds the [`DeliveryTracker`].
//!
//! Placement: the record key (the serialized key record) is hashed with
//! murmur2 exactly as the Java producer's default partitioner does
//! (librdkafka's `murmur2_random`), so every change of one key lands in one
//! partition and Java and librdkafka producers agree on it. A TRUNCATE is
//! written to every partition of the table's topic, so it is a barrier in each
//! partition's order. A delete is followed by a tombstone (same key, null
//! value) when `kafka.tombstones` is on.
//!
//! Failure: any failed or ambiguous delivery poisons the tracker (see
//! [`super::delivery`]). The owner then drops this producer, creates a new one
//! and replays from the tracker's acknowledged position; nothing is confirmed
//! to the source in between.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, NoCustomPartitioner, Producer, ProducerContext, ThreadedProducer,
};

use super::avro::encode::{EncodeError, encode_key, encode_value};
use super::avro::framing::SchemaRef;
use super::avro::schema::{Connector, SchemaError, key_schema, value_schema};
use super::delivery::DeliveryTracker;
use super::schemas::{SchemaStore, SchemaStoreError};
use super::topic::table_topic;
use crate::config::model::{KafkaCompression, KafkaConfig};
use crate::event::change::{ChangeEvent, Op, Position};
use crate::event::schema::TableSchema;
use crate::event::table_id::TableId;

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot create the Kafka producer: {0}")]
    Create(#[source] KafkaError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    SchemaStore(#[from] SchemaStoreError),
    #[error("cannot create topic `{topic}`: {reason}")]
    Topic { topic: String, reason: String },
    #[error(
        "Kafka delivery failed: {0}; the producer must be rebuilt and the source replayed from the acknowledged position"
    )]
    Delivery(String),
    #[error("cannot enqueue to Kafka: {0}")]
    Enqueue(#[source] KafkaError),
}

impl ProduceError {
    /// Whether rebuilding the producer and replaying may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProduceError::Create(_) | ProduceError::Delivery(_) | ProduceError::Enqueue(_) => true,
            ProduceError::Topic { .. } => true,
            ProduceError::SchemaStore(e) => e.is_retryable(),
            ProduceError::Encode(_) | ProduceError::Schema(_) => false,
        }
    }
}

/// The registered schemas and topic of one table shape.
#[derive(Debug, Clone)]
pub struct TableEntry {
    pub schema: Arc<TableSchema>,
    pub topic: String,
    pub key_ref: SchemaRef,
    pub value_ref: SchemaRef,
}

/// Turns events into framed key and value bytes, registering each table
/// shape's schemas before its first event.
pub struct EventSerializer {
    store: SchemaStore,
    connector: Connector,
    topic_prefix: String,
    tables: HashMap<TableId, TableEntry>,
}

impl EventSerializer {
    pub fn new(store: SchemaStore, connector: Connector, topic_prefix: impl Into<String>) -> Self {
        EventSerializer {
            store,
            connector,
            topic_prefix: topic_prefix.into(),
            tables: HashMap::new(),
        }
    }

    /// The entry for `table`'s current shape, registering it if it is new.
    pub async fn prepare(&mut self, table: &Arc<TableSchema>) -> Result<&TableEntry, ProduceError> {
        let fresh = match self.tables.get(&table.id) {
            Some(e) => !(Arc::ptr_eq(&e.schema, table) || *e.schema == **table),
            None => true,
        };
        if fresh {
            let topic = table_topic(&self.topic_prefix, &table.id);
            let key = key_schema(table, &topic)?;
            let value = value_schema(table, &topic, self.connector)?;
            let key_ref = self.store.register(&format!("{topic}-key"), &key).await?;
            let value_ref = self
                .store
                .register(&format!("{topic}-value"), &value)
                .await?;
            self.tables.insert(
                table.id.clone(),
                TableEntry {
                    schema: table.clone(),
                    topic,
                    key_ref,
                    value_ref,
                },
            );
        }
        self.tables
            .get(&table.id)
            .ok_or_else(|| ProduceError::Topic {
                topic: table.id.to_string(),
                reason: "not registered".into(),
            })
    }

    /// Serializes a prepared event's key (and value, unless `tombstone`).
    pub fn encode(
        &self,
        entry: &TableEntry,
        event: &ChangeEvent,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
    ) -> Result<(), ProduceError> {
        key.clear();
        value.clear();
        if let Some(k) = event.key_row() {
            entry.key_ref.write_header(key);
            encode_key(key, &event.table, &k, Some(event))?;
        }
        entry.value_ref.write_header(value);
        encode_value(value, event, self.connector)?;
        Ok(())
    }
}

/// librdkafka callbacks: acknowledgements and fatal errors to the tracker.
pub struct TrackingContext {
    tracker: Arc<DeliveryTracker>,
}

impl ClientContext for TrackingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::warn!(facility = fac, "librdkafka: {log_message}")
            }
            _ => tracing::debug!(facility = fac, "librdkafka: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // A fatal error (e.g. an idempotence sequence gap) leaves the fate of
        // in-flight messages unknown.
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal)) {
            self.tracker
                .failed(None, format!("fatal producer error: {reason}"));
        }
        tracing::warn!(error = %error, "kafka client error: {reason}");
    }
}

impl ProducerContext for TrackingContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        match result {
            Ok(_) => self.tracker.delivered(seq as u64),
            Err((e, _)) => self.tracker.failed(Some(seq as u64), e.to_string()),
        }
    }
}

/// Settings of the event producer beyond the client basics.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    pub compression: KafkaCompression,
    pub tombstones: bool,
    pub topic_partitions: u32,
    pub topic_replication_factor: Option<u16>,
    /// How long librdkafka retries a message before giving up on it.
    pub delivery_timeout: Duration,
}

impl ProducerOptions {
    pub fn from_config(kafka: &KafkaConfig) -> ProducerOptions {
        ProducerOptions {
            compression: kafka.compression,
            tombstones: kafka.tombstones,
            topic_partitions: kafka.topic_partitions,
            topic_replication_factor: kafka.topic_replication_factor,
            delivery_timeout: Duration::from_secs(120),
        }
    }
}

/// Publishes change events and tracks their acknowledgement.
pub struct EventProducer {
    producer: ThreadedProducer<TrackingContext, NoCustomPartitioner>,
    client: ClientConfig,
    tracker: Arc<DeliveryTracker>,
    serializer: EventSerializer,
    options: ProducerOptions,
    /// Partition count of each topic this producer has seen or created.
    partitions: HashMap<String, i32>,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// librdkafka batching defaults, unless the pipeline tuned them: large
/// batches, and a local queue bounded to about 100k messages or 64 MiB so a
/// capture's memory stays bounded while the broker is the slower side
/// (sending waits for acknowledgements when the queue is full).
pub const THROUGHPUT_DEFAULTS: [(&str, &str); 5] = [
    ("linger.ms", "20"),
    ("batch.num.messages", "50000"),
    ("batch.size", "4000000"),
    ("queue.buffering.max.messages", "100000"),
    ("queue.buffering.max.kbytes", "65536"),
];

impl EventProducer {
    /// `client` carries brokers, security and allow-listed properties
    /// ([`super::client::client_config`]).
    pub fn new(
        client: &ClientConfig,
        serializer: EventSerializer,
        options: ProducerOptions,
    ) -> Result<EventProducer, ProduceError> {
        let tracker = Arc::new(DeliveryTracker::new());
        let compression = match options.compression {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        };
        let mut cc = client.clone();
        cc.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("compression.type", compression)
            .set(
                "message.timeout.ms",
                options.delivery_timeout.as_millis().to_string(),
            );
        for (k, v) in THROUGHPUT_DEFAULTS {
            if cc.get(k).is_none() {
                cc.set(k, v);
            }
        }
        let producer = cc
            .create_with_context(TrackingContext {
                tracker: tracker.clone(),
            })
            .map_err(ProduceError::Create)?;
        Ok(EventProducer {
            producer,
            client: client.clone(),
            tracker,
            serializer,
            options,
            partitions: HashMap::new(),
            key: Vec::with_capacity(256),
            value: Vec::with_capacity(4096),
        })
    }

    pub fn tracker(&self) -> Arc<DeliveryTracker> {
        self.tracker.clone()
    }

    /// Creates `topic` if missing and learns its partition count.
    async fn ensure_topic(&mut self, topic: &str) -> Result<i32, ProduceError> {
        if let Some(n) = self.partitions.get(topic) {
            return Ok(*n);
        }
        let fail = |reason: String| ProduceError::Topic {
            topic: topic.to_string(),
            reason,
        };
        let partitions = i32::try_from(self.options.topic_partitions).unwrap_or(i32::MAX);
        let replication = self.options.topic_replication_factor.map_or(-1, i32::from);
        super::topic::ensure_topic_with(&self.client, topic, partitions, replication, &[])
            .await
            .map_err(fail)?;
        let producer = self.producer.clone();
        let name = topic.to_string();
        let count = tokio::task::spawn_blocking(move || {
            let md = producer
                .client()
                .fetch_metadata(Some(&name), Duration::from_secs(30))
                .map_err(|e| e.to_string())?;
            md.topics()
                .first()
                .map(|t| t.partitions().len() as i32)
                .filter(|n| *n > 0)
                .ok_or_else(|| "the broker reports no partitions".to_string())
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(fail)?;
        self.partitions.insert(topic.to_string(), count);
        Ok(count)
    }

    /// Serializes and enqueues one event (plus its tombstone, or its copies
    /// for a truncate). Returns once librdkafka has the messages; their
    /// acknowledgement shows in the tracker.
    ///
    /// # Cancel safety
    /// Not cancel safe: cancelled between two messages of one event, a part of
    /// the event is tracked and the rest is not. Capture awaits it to
    /// completion.
    pub async fn send(&mut self, event: &ChangeEvent) -> Result<(), ProduceError> {
        if let Some(f) = self.tracker.failure() {
            return Err(ProduceError::Delivery(f));
        }
        let entry = self.serializer.prepare(&event.table).await?.clone();
        let partitions = self.ensure_topic(&entry.topic).await?;
        let mut key = std::mem::take(&mut self.key);
        let mut value = std::mem::take(&mut self.value);
        let result = async {
            self.serializer
                .encode(&entry, event, &mut key, &mut value)?;
            let key_opt = (!key.is_empty()).then_some(key.as_slice());
            if event.op == Op::Truncate {
                for partition in 0..partitions {
                    self.enqueue(
                        &entry.topic,
                        key_opt,
                        Some(&value),
                        Some(partition),
                        event.position,
                    )
                    .await?;
                }
            } else {
                self.enqueue(&entry.topic, key_opt, Some(&value), None, event.position)
                    .await?;
                if event.op == Op::Delete && self.options.tombstones {
                    self.enqueue(&entry.topic, key_opt, None, None, event.position)
                        .await?;
                }
            }
            Ok(())
        }
        .await;
        self.key = key;
        self.value = value;
        result
    }

    async fn enqueue(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partition: Option<i32>,
        position: Position,
    ) -> Result<(), ProduceError> {
        let seq = self.tracker.track(position) as usize;
        let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(topic, seq);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    // Backpressure: wait for acknowledgements to free the queue.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => {
                    self.tracker.failed(Some(seq as u64), e.to_string());
                    return Err(ProduceError::Enqueue(e));
                }
            }
        }
    }

    /// Records the end of a source transaction (see [`DeliveryTracker`]).
    pub fn end_of_transaction(&self, commit: Position) {
        self.tracker.end_of_transaction(commit);
    }

    /// Waits until every message sent so far is acknowledged.
    pub async fn flush(&self) -> Result<(), ProduceError> {
        self.tracker.drained().await.map_err(ProduceError::Delivery)
    }
}
