//! Reading change events back: decoding any message of a tidewater topic into
//! a [`ChangeEvent`] (or a tombstone), with the schema each message names, and
//! a clear error for a message that does not decode.
//!
//! Decoding plans are cached per (key schema, value schema) pair, so a table
//! whose shape changed mid-topic decodes each message with the shape it was
//! written with.

use std::collections::HashMap;
use std::sync::Arc;

use super::avro::decode::{DecodeError, Plan};
use super::avro::framing::{FramingError, SchemaRef};
use super::schemas::{SchemaStore, SchemaStoreError};
use crate::event::change::ChangeEvent;
use crate::event::datum::Row;
use crate::event::schema::TableSchema;

/// What one Kafka message holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Event(ChangeEvent),
    /// A tombstone after a delete: the key, no value.
    Tombstone {
        table: Option<Arc<TableSchema>>,
        key: Option<Row>,
    },
}

/// Why a message could not be decoded; names topic, partition and offset.
#[derive(Debug, thiserror::Error)]
#[error("message {topic}/{partition}@{offset} does not decode: {reason}")]
pub struct Undecodable {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: UndecodableReason,
}

#[derive(Debug, thiserror::Error)]
pub enum UndecodableReason {
    #[error("{part}: {source}")]
    Framing {
        part: &'static str,
        #[source]
        source: FramingError,
    },
    #[error("its schema cannot be found: {0}")]
    Schema(#[source] SchemaStoreError),
    #[error("{0}")]
    Body(#[source] DecodeError),
    #[error("it has a value but no key")]
    NoKey,
}

impl Undecodable {
    /// A schema lookup that may work on retry (registry or broker down) is
    /// not a bad message.
    pub fn is_retryable(&self) -> bool {
        matches!(&self.reason, UndecodableReason::Schema(e) if e.is_retryable())
    }
}

/// Decodes messages, resolving and caching their schemas.
pub struct EventDecoder {
    store: SchemaStore,
    plans: HashMap<(SchemaRef, SchemaRef), Arc<Plan>>,
    /// Plans by key schema, to name the table of a tombstone.
    by_key: HashMap<SchemaRef, Arc<Plan>>,
    /// Plans by value schema, for keyless truncate events.
    by_value: HashMap<SchemaRef, Arc<Plan>>,
}

impl EventDecoder {
    pub fn new(store: SchemaStore) -> EventDecoder {
        EventDecoder {
            store,
            plans: HashMap::new(),
            by_key: HashMap::new(),
            by_value: HashMap::new(),
        }
    }

    async fn plan(
        &mut self,
        key: SchemaRef,
        value: SchemaRef,
    ) -> Result<Arc<Plan>, UndecodableReason> {
        if let Some(p) = self.plans.get(&(key, value)) {
            return Ok(p.clone());
        }
        let key_schema = self
            .store
            .lookup(key)
            .await
            .map_err(UndecodableReason::Schema)?;
        let value_schema = self
            .store
            .lookup(value)
            .await
            .map_err(UndecodableReason::Schema)?;
        let plan =
            Arc::new(Plan::new(Some(&key_schema), &value_schema).map_err(UndecodableReason::Body)?);
        self.plans.insert((key, value), plan.clone());
        self.by_key.insert(key, plan.clone());
        self.by_value.insert(value, plan.clone());
        Ok(plan)
    }

    /// Decodes one message.
    pub async fn decode(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<Decoded, Undecodable> {
        let wrap = |reason| Undecodable {
            topic: topic.to_string(),
            partition,
            offset,
            reason,
        };
        let key_part = match key {
            Some(k) => Some(SchemaRef::split(k).map_err(|source| {
                wrap(UndecodableReason::Framing {
                    part: "key",
                    source,
                })
            })?),
            None => None,
        };
        let Some(value) = value else {
            // A tombstone: decode the key if its table is known.
            let (table, key) =
                match key_part.and_then(|(r, body)| Some((self.by_key.get(&r)?.clone(), body))) {
                    Some((plan, body)) => (
                        Some(plan.table.clone()),
                        Some(
                            plan.decode_key(body)
                                .map_err(|e| wrap(UndecodableReason::Body(e)))?,
                        ),
                    ),
                    None => (None, None),
                };
            return Ok(Decoded::Tombstone { table, key });
        };
        let (value_ref, value_body) = SchemaRef::split(value).map_err(|source| {
            wrap(UndecodableReason::Framing {
                part: "value",
                source,
            })
        })?;
        let event = match key_part {
            Some((key_ref, _)) => {
                let plan = self.plan(key_ref, value_ref).await.map_err(wrap)?;
                plan.decode_value(value_body)
                    .map_err(|e| wrap(UndecodableReason::Body(e)))?
            }
            // Only a truncate has no key.
            None => {
                let plan = match self.by_value.get(&value_ref) {
                    Some(p) => p.clone(),
                    None => {
                        let value_schema = self
                            .store
                            .lookup(value_ref)
                            .await
                            .map_err(|e| wrap(UndecodableReason::Schema(e)))?;
                        let plan = Arc::new(
                            Plan::new(None, &value_schema)
                                .map_err(|e| wrap(UndecodableReason::Body(e)))?,
                        );
                        self.by_value.insert(value_ref, plan.clone());
                        plan
                    }
                };
                plan.decode_value(value_body)
                    .map_err(|e| wrap(UndecodableReason::Body(e)))?
            }
        };
        if event.op != crate::event::change::Op::Truncate && key.is_none() {
            return Err(wrap(UndecodableReason::NoKey));
        }
        Ok(Decoded::Event(event))
    }
}

pub use sink::{DeadLetters, Membership, Polled, RawMessage, SinkConsumer};

/// The consumer sink workers use: a consumer group whose partitions start
/// where the caller says (the lake table's last commit), not where the group's
/// committed offsets point.
mod sink {
    use futures::future::BoxFuture;
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
    use rdkafka::error::KafkaError;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};

    use super::{Decoded, EventDecoder, Undecodable};

    /// What [`SinkConsumer::next`] returns.
    #[derive(Debug)]
    pub enum Polled {
        /// The group gave this worker these partitions. They deliver nothing
        /// until [`SinkConsumer::start_at`] positions each one.
        Assigned(Vec<(String, i32)>),
        /// These partitions were taken away (after a rebalance).
        Revoked(Vec<(String, i32)>),
        /// A positioned partition skipped from `from` to a later offset, and
        /// the broker's earliest offset is `earliest`, past `from`: messages
        /// were deleted (retention) before they were read. The partition
        /// delivers nothing more.
        Gap {
            topic: String,
            partition: i32,
            from: i64,
            earliest: i64,
        },
        /// The message a partition was checked by ([`SinkConsumer::check_first`])
        /// is not the one the caller knew at that offset: its timestamp is
        /// `found` (none: the message has none), not `recorded`. The topic
        /// was deleted and created again since. The partition delivers
        /// nothing more.
        Replaced {
            topic: String,
            partition: i32,
            offset: i64,
            recorded: i64,
            found: Option<i64>,
        },
        /// A partition that delivered messages up to `from` (exclusive)
        /// delivered offset `to` below it: the client's position was reset
        /// to the partition's start because the topic was deleted and
        /// created again (or lost its messages) while it was read. The
        /// partition delivers nothing more.
        Rewound {
            topic: String,
            partition: i32,
            from: i64,
            to: i64,
        },
        /// A message of a positioned partition.
        Message {
            topic: String,
            partition: i32,
            offset: i64,
            /// The message's timestamp in milliseconds, if it has one.
            timestamp: Option<i64>,
            decoded: Result<Decoded, Undecodable>,
            /// The raw bytes, kept only for messages that did not decode.
            raw: Option<RawMessage>,
        },
    }

    /// A message's key and value as they were on the topic.
    #[derive(Debug, Clone)]
    pub struct RawMessage {
        pub key: Option<Vec<u8>>,
        pub value: Option<Vec<u8>>,
    }

    #[derive(Default)]
    struct Shared {
        events: Mutex<VecDeque<Polled>>,
    }

    /// Pauses partitions as soon as they are assigned and reports the change.
    pub struct GroupContext {
        shared: Arc<Shared>,
    }

    fn list(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
        tpl.elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect()
    }

    impl ClientContext for GroupContext {}

    impl ConsumerContext for GroupContext {
        fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
            let event = match rebalance {
                Rebalance::Assign(tpl) => {
                    if let Err(e) = consumer.pause(tpl) {
                        tracing::warn!(error = %e, "cannot pause newly assigned partitions");
                    }
                    Polled::Assigned(list(tpl))
                }
                Rebalance::Revoke(tpl) => Polled::Revoked(list(tpl)),
                Rebalance::Error(e) => {
                    tracing::warn!(error = %e, "rebalance error");
                    return;
                }
            };
            if let Ok(mut events) = self.shared.events.lock() {
                events.push_back(event);
            }
        }
    }

    pub struct SinkConsumer {
        consumer: StreamConsumer<GroupContext>,
        shared: Arc<Shared>,
        decoder: Arc<tokio::sync::Mutex<EventDecoder>>,
        /// Started partitions and the next offset each may deliver: a
        /// message below it is dropped before the partition's first
        /// delivery (fetched before the seek) and means the position went
        /// back after it ([`Polled::Rewound`]).
        positioned: HashMap<(String, i32), i64>,
        /// Positioned partitions that delivered a message since their start.
        delivered: std::collections::HashSet<(String, i32)>,
        /// Partitions to check before they deliver: the offset of a message
        /// the caller knows and its timestamp ([`Self::check_first`]).
        checks: HashMap<(String, i32), (i64, i64)>,
        /// Standalone: the partitions started so far, with their offsets.
        standalone: Option<TopicPartitionList>,
        /// The decoding of a received message (it may wait for a schema),
        /// with its topic and partition: kept across cancellations of
        /// [`Self::next`], which resumes it.
        decoding: Option<(String, i32, BoxFuture<'static, Polled>)>,
    }

    /// Whether a message at `offset` of a partition whose next offset is
    /// `next` is delivered (and moves `next` past it). Not started (`None`):
    /// fetched before `start`, it will be read again. Below `next`: fetched
    /// before the seek took effect, or already delivered.
    fn admit(next: Option<&mut i64>, offset: i64) -> bool {
        match next {
            Some(next) if offset >= *next => {
                *next = offset + 1;
                true
            }
            _ => false,
        }
    }

    /// What the message at `offset` (with `timestamp`) of a partition
    /// checked by its message at `at` (with `recorded`) says.
    #[derive(Debug, PartialEq, Eq)]
    enum Check {
        /// Before the checked message (fetched before the seek): dropped.
        Early,
        /// The checked message, as recorded.
        Same,
        /// Past it: the checked message is gone, or this one came early.
        Later,
        /// Another message at the checked offset.
        Replaced,
    }

    fn checked(at: i64, recorded: i64, offset: i64, timestamp: Option<i64>) -> Check {
        match offset.cmp(&at) {
            std::cmp::Ordering::Less => Check::Early,
            std::cmp::Ordering::Greater => Check::Later,
            std::cmp::Ordering::Equal if timestamp == Some(recorded) => Check::Same,
            std::cmp::Ordering::Equal => Check::Replaced,
        }
    }

    #[cfg(test)]
    #[test]
    fn a_checked_partition_is_replaced_only_by_another_message_at_the_offset() {
        assert_eq!(checked(9, 1000, 9, Some(1000)), Check::Same);
        assert_eq!(checked(9, 1000, 9, Some(1001)), Check::Replaced);
        assert_eq!(checked(9, 1000, 9, None), Check::Replaced);
        assert_eq!(checked(9, 1000, 8, Some(5)), Check::Early);
        assert_eq!(checked(9, 1000, 10, Some(5)), Check::Later);
    }

    /// Whether a message at `offset`, below `next`, of a partition that
    /// has `delivered` since its start means its position went back. Before
    /// the first delivery it was fetched before the seek; after it,
    /// librdkafka's seek barrier drops such messages, and only a reset of
    /// the position to the partition's start (the offset out of range: the
    /// topic was created again or lost messages) brings one.
    fn rewound(delivered: bool, next: i64, offset: i64) -> bool {
        delivered && offset < next
    }

    #[cfg(test)]
    #[test]
    fn a_partition_rewinds_only_below_what_it_delivered() {
        assert!(!rewound(false, 10, 3), "fetched before the seek");
        assert!(!rewound(true, 10, 10) && !rewound(true, 10, 12));
        assert!(rewound(true, 10, 0), "reset to the start of a new topic");
        assert!(rewound(true, 10, 9));
    }

    /// Whether a message at `offset` skips offsets after `next` (the next
    /// one expected; `i64::MIN`: read from the beginning, anything goes).
    fn skipped(next: i64, offset: i64) -> bool {
        next != i64::MIN && offset > next
    }

    #[cfg(test)]
    #[test]
    fn a_skip_is_only_past_a_known_next_offset() {
        assert!(!skipped(i64::MIN, 40), "from the beginning");
        assert!(
            !skipped(5, 5) && !skipped(5, 3),
            "in order, or fetched before the seek"
        );
        assert!(skipped(5, 6));
    }

    #[cfg(test)]
    #[test]
    fn only_offsets_from_the_start_on_are_delivered_once() {
        assert!(!admit(None, 5));
        let mut next = 2;
        assert!(!admit(Some(&mut next), 0), "fetched before the seek");
        assert!(admit(Some(&mut next), 2));
        assert!(!admit(Some(&mut next), 2), "delivered twice");
        assert!(admit(Some(&mut next), 7), "offsets may skip");
        assert_eq!(next, 8);
        let mut any = i64::MIN;
        assert!(admit(Some(&mut any), 0));
    }

    /// How a sink worker gets its partitions.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Membership {
        /// A consumer group member (workers share the partitions);
        /// `instance` enables static membership.
        Group {
            group: String,
            instance: Option<String>,
        },
        /// Every partition, no group: one worker per pipeline.
        Standalone,
    }

    impl SinkConsumer {
        /// Joins the consumer group (or, standalone, takes every partition of
        /// `topics` itself). Offsets are never committed automatically.
        pub fn new(
            client: &ClientConfig,
            membership: &Membership,
            topics: &[&str],
            decoder: EventDecoder,
        ) -> Result<Self, KafkaError> {
            let shared = Arc::new(Shared::default());
            let mut cc = client.clone();
            cc.set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                // Partitions are always positioned explicitly; a jump
                // librdkafka makes when retention overtakes a slow reader
                // shows as skipped offsets, checked in `next`.
                .set("auto.offset.reset", "earliest")
                .set("enable.partition.eof", "false");
            match membership {
                Membership::Group { group, instance } => {
                    cc.set("group.id", group);
                    if let Some(instance) = instance {
                        // Static membership: a restarted worker gets its
                        // partitions back without a rebalance.
                        cc.set("group.instance.id", instance);
                    }
                }
                Membership::Standalone => {
                    cc.set(
                        "group.id",
                        format!("tidewater-standalone-{}", uuid::Uuid::new_v4()),
                    );
                }
            }
            let consumer: StreamConsumer<GroupContext> = cc.create_with_context(GroupContext {
                shared: shared.clone(),
            })?;
            let standalone = matches!(membership, Membership::Standalone);
            if standalone {
                let mut all = Vec::new();
                for topic in topics {
                    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
                    for t in md.topics() {
                        all.extend(
                            t.partitions()
                                .iter()
                                .map(|p| (t.name().to_string(), p.id())),
                        );
                    }
                }
                if let Ok(mut events) = shared.events.lock() {
                    events.push_back(Polled::Assigned(all));
                }
            } else {
                consumer.subscribe(topics)?;
            }
            Ok(SinkConsumer {
                consumer,
                shared,
                decoder: Arc::new(tokio::sync::Mutex::new(decoder)),
                positioned: HashMap::new(),
                delivered: std::collections::HashSet::new(),
                checks: HashMap::new(),
                standalone: standalone.then(TopicPartitionList::new),
                decoding: None,
            })
        }

        /// Before the next [`Self::start`] of a partition: its message at
        /// `offset` (the one before its start, read again) must have the
        /// timestamp `stamp`, or the partition reports [`Polled::Replaced`]
        /// instead of delivering. When that message is gone (retention),
        /// nothing is checked.
        pub fn check_first(&mut self, topic: &str, partition: i32, offset: i64, stamp: i64) {
            self.checks
                .insert((topic.to_string(), partition), (offset, stamp));
        }

        /// Where a partition is read from: its start, or the message it is
        /// checked by.
        fn read_from(&self, topic: &str, partition: i32, start: Offset) -> Offset {
            match self.checks.get(&(topic.to_string(), partition)) {
                Some((at, _)) => Offset::Offset(*at),
                None => start,
            }
        }

        /// Positions assigned partitions, each at its offset (the next
        /// offset to read), and lets them deliver. Standalone, the whole
        /// assignment is made in one call (librdkafka must not see several
        /// overlapping assignments in a row).
        pub fn start(&mut self, starts: &[(String, i32, Offset)]) -> Result<(), KafkaError> {
            if self.standalone.is_some() {
                let froms: Vec<Offset> = starts
                    .iter()
                    .map(|(t, p, o)| self.read_from(t, *p, *o))
                    .collect();
                if let Some(assigned) = self.standalone.as_mut() {
                    for ((topic, partition, _), from) in starts.iter().zip(froms) {
                        assigned.add_partition_offset(topic, *partition, from)?;
                    }
                    self.consumer.assign(assigned)?;
                }
            } else {
                for (topic, partition, offset) in starts {
                    let from = self.read_from(topic, *partition, *offset);
                    self.consumer
                        .seek(topic, *partition, from, Duration::from_secs(10))?;
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(topic, *partition);
                    self.consumer.resume(&tpl)?;
                }
            }
            for (topic, partition, offset) in starts {
                let next = match offset {
                    Offset::Offset(n) => *n,
                    _ => i64::MIN,
                };
                self.positioned.insert((topic.clone(), *partition), next);
                self.delivered.remove(&(topic.clone(), *partition));
            }
            Ok(())
        }

        /// The next assignment change or decoded message.
        ///
        /// # Cancel safety
        /// Cancel safe: a message received but not yet returned (decoding
        /// may wait for its schema) is kept with its decoding, which the next
        /// call resumes; a caller that selects on this and a timer loses
        /// nothing and always makes progress.
        pub async fn next(&mut self) -> Result<Polled, KafkaError> {
            loop {
                if let Some(event) = self
                    .shared
                    .events
                    .lock()
                    .ok()
                    .and_then(|mut e| e.pop_front())
                {
                    if let Polled::Revoked(parts) = &event {
                        for p in parts {
                            self.positioned.remove(p);
                            self.delivered.remove(p);
                            self.checks.remove(p);
                        }
                        let orphaned = self.decoding.as_ref().is_some_and(|(t, p, _)| {
                            !self.positioned.contains_key(&(t.clone(), *p))
                        });
                        if orphaned {
                            // Its partition went elsewhere; the new owner reads it.
                            self.decoding = None;
                        }
                    }
                    return Ok(event);
                }
                if self.decoding.is_none() {
                    let message = match tokio::time::timeout(
                        Duration::from_millis(200),
                        self.consumer.recv(),
                    )
                    .await
                    {
                        Err(_) => continue,
                        Ok(result) => result?,
                    };
                    let (topic, partition, offset) = (
                        message.topic().to_string(),
                        message.partition(),
                        message.offset(),
                    );
                    let key = (topic.clone(), partition);
                    let timestamp = message.timestamp().to_millis();
                    if let Some(&(at, recorded)) = self.checks.get(&key)
                        && self.positioned.contains_key(&key)
                    {
                        match checked(at, recorded, offset, timestamp) {
                            Check::Early => continue,
                            Check::Same => {
                                // Read already: not delivered again.
                                self.checks.remove(&key);
                                continue;
                            }
                            Check::Later => {
                                // Past the checked message: it is gone
                                // (retention), or this one was fetched
                                // before the seek and comes again after it.
                                let low = self
                                    .consumer
                                    .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                                    .map(|(low, _)| low)?;
                                if low <= at {
                                    continue;
                                }
                                self.checks.remove(&key);
                            }
                            Check::Replaced => {
                                self.checks.remove(&key);
                                self.delivered.remove(&key);
                                self.positioned.insert(key, i64::MAX);
                                return Ok(Polled::Replaced {
                                    topic,
                                    partition,
                                    offset,
                                    recorded,
                                    found: timestamp,
                                });
                            }
                        }
                    }
                    if let Some(next) = self.positioned.get(&key).copied()
                        && skipped(next, offset)
                    {
                        // Offsets may skip (compaction, control records);
                        // when the broker no longer has the skipped ones,
                        // they were deleted unread.
                        let low = self
                            .consumer
                            .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                            .map(|(low, _)| low)?;
                        if low > next {
                            self.delivered.remove(&key);
                            self.positioned.insert(key, i64::MAX);
                            return Ok(Polled::Gap {
                                topic,
                                partition,
                                from: next,
                                earliest: low,
                            });
                        }
                    }
                    if let Some(next) = self.positioned.get(&key).copied()
                        && rewound(self.delivered.contains(&key), next, offset)
                    {
                        self.delivered.remove(&key);
                        self.positioned.insert(key, i64::MAX);
                        return Ok(Polled::Rewound {
                            topic,
                            partition,
                            from: next,
                            to: offset,
                        });
                    }
                    if !admit(self.positioned.get_mut(&key), offset) {
                        continue;
                    }
                    self.delivered.insert(key);
                    let (key, value) = (
                        message.key().map(<[u8]>::to_vec),
                        message.payload().map(<[u8]>::to_vec),
                    );
                    drop(message);
                    let decoder = self.decoder.clone();
                    let tp = (topic.clone(), partition);
                    let decoding = async move {
                        let decoded = decoder
                            .lock()
                            .await
                            .decode(&topic, partition, offset, key.as_deref(), value.as_deref())
                            .await;
                        let raw = decoded.is_err().then_some(RawMessage { key, value });
                        Polled::Message {
                            topic,
                            partition,
                            offset,
                            timestamp,
                            decoded,
                            raw,
                        }
                    };
                    self.decoding = Some((tp.0, tp.1, Box::pin(decoding)));
                }
                if let Some((_, _, decoding)) = self.decoding.as_mut() {
                    let polled = decoding.await;
                    self.decoding = None;
                    return Ok(polled);
                }
            }
        }

        /// The partitions this worker reads now.
        pub fn owned(&self) -> Vec<(String, i32)> {
            self.positioned.keys().cloned().collect()
        }

        /// Records the group's offsets (advisory: the lake commit is what a
        /// restart trusts).
        pub fn commit_offsets(&self, offsets: &[(String, i32, i64)]) -> Result<(), KafkaError> {
            let mut tpl = TopicPartitionList::new();
            for (topic, partition, next) in offsets {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
            }
            self.consumer
                .commit(&tpl, rdkafka::consumer::CommitMode::Async)
        }
    }

    /// Writes undecodable messages to a dead-letter topic, as they were, with
    /// headers saying where they came from and why.
    pub struct DeadLetters {
        producer: FutureProducer,
        topic: String,
    }

    impl DeadLetters {
        pub fn new(client: &ClientConfig, topic: impl Into<String>) -> Result<Self, KafkaError> {
            let producer = client
                .clone()
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .create()?;
            Ok(DeadLetters {
                producer,
                topic: topic.into(),
            })
        }

        pub fn topic(&self) -> &str {
            &self.topic
        }

        /// Copies the message and waits until Kafka acknowledged it, so the
        /// caller may then count its offset as processed.
        pub async fn send(
            &self,
            error: &Undecodable,
            key: Option<&[u8]>,
            value: Option<&[u8]>,
        ) -> Result<(), KafkaError> {
            let partition = error.partition.to_string();
            let offset = error.offset.to_string();
            let reason = error.reason.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "tidewater.source.topic",
                    value: Some(error.topic.as_str()),
                })
                .insert(Header {
                    key: "tidewater.source.partition",
                    value: Some(partition.as_str()),
                })
                .insert(Header {
                    key: "tidewater.source.offset",
                    value: Some(offset.as_str()),
                })
                .insert(Header {
                    key: "tidewater.error",
                    value: Some(reason.as_str()),
                });
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(headers);
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(v) = value {
                record = record.payload(v);
            }
            self.producer
                .send(record, Duration::from_secs(30))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }
    }
}
