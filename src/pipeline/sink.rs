//! The sink worker: Kafka change events → the pipeline's lake tables.
//!
//! # The exactly-once contract
//!
//! Each table's commit records, in `deltastreamer.checkpoint.key`, the next
//! Kafka offset of every partition of its topic. When the group assigns a
//! partition, the worker starts it at that offset (consumer-group offsets
//! are only advisory), so after any crash it re-reads exactly the messages
//! the last completed commit did not cover. Offsets alone cannot tell a
//! topic deleted and created again (it starts over at 0) once it has grown
//! past the checkpoint: the commit also records the timestamp of the last
//! message read of each partition (`tidewater.checkpoint.stamps`), and the
//! worker reads that message again first. Another timestamp there stops the
//! table ([`replaced`]), as does a checkpoint the partition cannot serve
//! ([`gap`]). Replays never duplicate: a key
//! lives in one place and a change is applied only if its source position
//! is newer than the stored row's.
//!
//! Per table the worker buffers changes, keeping the latest change of each
//! key by source position (never by arrival; an unchanged TOAST value takes
//! the value of the key's previous change in the buffer), and commits when
//! the oldest buffered change is `commit_interval_secs` old, when
//! `max_changes_per_commit` changes wait, or when the table's share of
//! `buffer_mb` is used.
//!
//! Two workers may hold partitions of one table (the group splits topics by
//! partition). Their commits are fenced by the table's commit log: the one
//! that loses reloads the table and applies its batch again on top, merging
//! its offsets into the winner's checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant as Clock};

use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use rdkafka::Offset;

use crate::config::model::{LakeConfig, PipelineConfig, SourceConfig, UndecodablePolicy};
use crate::event::change::{ChangeEvent, Op, Position};
use crate::event::datum::{Datum, Row};
use crate::event::packed::PackedRow;
use crate::event::schema::{TableSchema, renamed_columns};
use crate::event::table_id::{Dialect, TableId};
use crate::event::types::ColumnType;
use crate::kafka::client::client_config;
use crate::kafka::consumer::{
    DeadLetters, Decoded, EventDecoder, Membership, Polled, SinkConsumer,
};
use crate::kafka::schemas::SchemaStore;
use crate::kafka::topic::table_topic;
use crate::lake::layout::{PartitionSpec, TableLayout, event_record_key};
use crate::lake::metadata::Checkpoint;
use crate::lake::table::{Change, CommitBatch, LakeError, Table, TableOptions};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("pipeline `{0}` has no `lake` section")]
    NoLake(String),
    #[error("table {table}: {message}")]
    Config { table: String, message: String },
    #[error("kafka topic {topic}: {message}")]
    Topic { topic: String, message: String },
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("lake: {0}")]
    Lake(#[from] LakeError),
    #[error("lake store: {0}")]
    Store(#[from] crate::lake::store::StoreError),
    #[error("schema store: {0}")]
    Schemas(#[from] crate::kafka::schemas::SchemaStoreError),
}

impl SinkError {
    /// Worth another try: Kafka, the object store or the schema store did
    /// not answer. A configuration or schema problem needs an operator.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Kafka(_) | SinkError::Topic { .. } | SinkError::Schemas(_) => true,
            SinkError::Lake(e) => e.is_retryable(),
            SinkError::NoLake(_) | SinkError::Config { .. } | SinkError::Store(_) => false,
        }
    }
}

/// How often the sink measures its Kafka lag.
const LAG_EVERY: Duration = Duration::from_secs(10);

/// The lake table of every captured table of `cfg`: its name, database and
/// partitioning.
pub fn table_layouts(
    cfg: &PipelineConfig,
    lake: &LakeConfig,
) -> Result<Vec<(TableId, TableLayout)>, SinkError> {
    let dialect = match cfg.source {
        SourceConfig::Postgres(_) => Dialect::Postgres,
        SourceConfig::Mysql(_) => Dialect::Mysql,
    };
    let database = lake
        .database
        .clone()
        .unwrap_or_else(|| cfg.name.replace('-', "_"));
    cfg.source
        .tables()
        .iter()
        .map(|t| {
            let id = TableId::parse(&t.name, dialect).map_err(|message| SinkError::Config {
                table: t.name.clone(),
                message,
            })?;
            let layout = TableLayout {
                name: lake_table_name(&id),
                database: database.clone(),
                partition: t.partition_by.as_ref().map(|p| PartitionSpec {
                    column: p.column.clone(),
                    granularity: p.granularity,
                }),
            };
            Ok((id, layout))
        })
        .collect()
}

/// `tidewater ddl`: the statements that register every lake table of
/// `cfg` in `engine`, read from the tables as they are (nothing is
/// changed). A table without a completed commit yet is named in the error.
pub async fn pipeline_ddl(
    cfg: &PipelineConfig,
    engine: crate::lake::ddl::Engine,
) -> Result<Vec<String>, SinkError> {
    let lake = cfg
        .lake
        .clone()
        .ok_or_else(|| SinkError::NoLake(cfg.name.clone()))?;
    let root = crate::lake::store::open(&lake)?;
    let layouts = table_layouts(cfg, &lake)?;
    let database = layouts
        .first()
        .map(|(_, l)| l.database.clone())
        .unwrap_or_default();
    let mut out = vec![crate::lake::ddl::database_statement(engine, &database)];
    for (id, layout) in layouts {
        let store = PrefixStore::new(root.clone(), layout.name.as_str());
        let fail = |message: String| SinkError::Config {
            table: id.to_string(),
            message,
        };
        let (schema, partitions) = Table::describe(&store).await?.ok_or_else(|| {
            fail(format!(
                "lake table `{}` has no completed commit yet: run the sink first",
                layout.name
            ))
        })?;
        let arrow = layout.arrow_schema(&schema).map_err(fail)?;
        let location = format!("{}/{}", lake.uri.trim_end_matches('/'), layout.name);
        out.extend(
            crate::lake::ddl::table_statements(
                engine,
                &crate::lake::ddl::TableDdl {
                    database: &database,
                    layout: &layout,
                    schema: &arrow,
                    location: &location,
                    partitions: &partitions,
                },
            )
            .map_err(fail)?,
        );
    }
    Ok(out)
}

/// The directory and `hoodie.table.name` of a captured table: lower-case
/// `<schema>_<table>`, other characters as `_`.
pub fn lake_table_name(id: &TableId) -> String {
    format!("{}_{}", id.schema, id.name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Changes waiting for one table's next commit.
#[derive(Default)]
struct Pending {
    /// The latest change of each key, with where it came from: one entry
    /// per key, in the order keys first arrived.
    changes: Vec<Buffered>,
    /// Each key's entry in `changes`, found by the key's hash (the key is
    /// stored once, in its change).
    slots: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// Each distinct source shape buffered, with the latest position it
    /// was seen at (see [`shapes_to_absorb`]).
    shapes: Vec<(Arc<TableSchema>, Position)>,
    truncate: Option<Position>,
    max_position: Option<Position>,
    /// Next offset to read, per partition, covering everything buffered.
    offsets: BTreeMap<i32, i64>,
    /// The timestamp of the message before each of `offsets` (none: that
    /// message had none).
    stamps: BTreeMap<i32, Option<i64>>,
    /// What the buffered changes take in memory ([`buffered_bytes`]).
    bytes: usize,
    since: Option<Clock>,
    messages: u64,
}

/// A buffered change and where it came from: (partition, offset).
struct Buffered {
    change: Change,
    origin: (i32, i64),
}

/// An allocation of `n` bytes as the allocator hands it out: rounded up to
/// its size class, with the allocator's own bookkeeping.
fn allocation(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        n.next_multiple_of(16) + 16
    }
}

/// What one buffered change takes in memory: its entry in the buffer
/// (counted half again for the buffer's growth by doubling), its index
/// slot, its key and its packed row. A million changes of 200-byte
/// `orders` rows count 0.40 GB, within the default budget of 448 MiB (see
/// the test `the_default_budget_holds_a_million_changes_of_200_byte_rows`).
fn buffered_bytes(change: &Change) -> usize {
    let entry = std::mem::size_of::<Buffered>() * 3 / 2 + 2 * std::mem::size_of::<u32>();
    let row = change
        .row
        .as_ref()
        .map_or(0, |r| allocation(r.heap_bytes()));
    entry + allocation(change.key.capacity()) + row
}

impl Pending {
    fn hash(&self, key: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, key)
    }

    /// Where the change of a key (of hash `hash`) is in `changes`.
    fn find(&self, hash: u64, key: &str) -> Option<usize> {
        let changes = &self.changes;
        let slot = self.slots.find(hash, |&i| {
            changes.get(i as usize).is_some_and(|b| b.change.key == key)
        })?;
        Some(*slot as usize)
    }

    /// The buffered change of a key.
    #[cfg(test)]
    fn get(&self, key: &str) -> Option<&Change> {
        let at = self.find(self.hash(key), key)?;
        self.changes.get(at).map(|b| &b.change)
    }

    /// Takes the event: its row is packed into the change (one allocation;
    /// see [`PackedRow`]).
    fn add(&mut self, event: ChangeEvent, key: String, origin: (i32, i64)) {
        if self.since.is_none() {
            self.since = Some(Clock::now());
        }
        self.max_position = self.max_position.max(Some(event.position));
        saw_shape(&mut self.shapes, &event.table, event.position);
        if self.truncate.is_some_and(|t| event.position < t) {
            return;
        }
        let mut row = match event.op {
            Op::Delete => None,
            _ => event.after,
        };
        let hash = self.hash(&key);
        let at = self.find(hash, &key);
        if let Some(previous) = at.and_then(|i| self.changes.get(i)).map(|b| &b.change) {
            if previous.position >= event.position {
                return;
            }
            // An unchanged TOAST value: the previous change of the key has
            // it, under the same name or, across a rename, the old one.
            if let (Some(new), Some(old)) = (row.as_mut(), previous.row.as_ref()) {
                let mut renames: Option<Vec<(usize, usize)>> = None;
                for (i, d) in new.0.iter_mut().enumerate() {
                    if !matches!(d, Datum::Unchanged) {
                        continue;
                    }
                    let by_name = event
                        .table
                        .columns
                        .get(i)
                        .and_then(|c| previous.schema.column_index(&c.name));
                    let j = by_name.or_else(|| {
                        renames
                            .get_or_insert_with(|| renames_between(&previous.schema, &event.table))
                            .iter()
                            .find(|(_, n)| *n == i)
                            .map(|(o, _)| *o)
                    });
                    match j.map(|j| old.get(j)) {
                        Some(Ok(Some(v))) => *d = v,
                        Some(Ok(None)) | None => {}
                        // Only a bug could make a packed row unreadable:
                        // the value stays unchanged, to be filled from the
                        // lake's stored row as if nothing were buffered,
                        // and the bug is reported.
                        Some(Err(e)) => {
                            tracing::error!(key = %key, error = %e, "a buffered row cannot be read")
                        }
                    }
                }
            }
        }
        let change = Change {
            key,
            position: event.position,
            row: row.as_ref().map(PackedRow::pack),
            schema: event.table.clone(),
        };
        self.put(hash, at, Buffered { change, origin });
    }

    /// Buffers a key's change (of hash `hash`) in place of the one at `at`,
    /// buffered before it, or as a new entry, and counts its bytes.
    fn put(&mut self, hash: u64, at: Option<usize>, new: Buffered) {
        let bytes = buffered_bytes(&new.change);
        if let Some(old) = at.and_then(|i| self.changes.get_mut(i)) {
            self.bytes = (self.bytes + bytes).saturating_sub(buffered_bytes(&old.change));
            *old = new;
            return;
        }
        let Ok(index) = u32::try_from(self.changes.len()) else {
            // Unreachable: a commit is due long before (at
            // `max_changes_per_commit`, a u32).
            return;
        };
        self.bytes += bytes;
        self.changes.push(new);
        let Self {
            changes,
            slots,
            hasher,
            ..
        } = self;
        slots.insert_unique(hash, index, |&i| {
            changes.get(i as usize).map_or(0, |b| {
                std::hash::BuildHasher::hash_one(&*hasher, &b.change.key)
            })
        });
    }

    fn truncate_at(&mut self, event: &ChangeEvent) {
        if self.since.is_none() {
            self.since = Some(Clock::now());
        }
        self.max_position = self.max_position.max(Some(event.position));
        if self.truncate.is_some_and(|t| t >= event.position) {
            return;
        }
        self.truncate = Some(event.position);
        let kept: Vec<Buffered> = std::mem::take(&mut self.changes)
            .into_iter()
            .filter(|b| b.change.position > event.position)
            .collect();
        self.slots.clear();
        self.bytes = 0;
        for b in kept {
            // Keys are unique in what was buffered.
            self.put(self.hash(&b.change.key), None, b);
        }
    }

    fn is_empty(&self) -> bool {
        self.messages == 0
    }
}

/// One lake table served by this worker.
struct TableSink {
    id: TableId,
    topic: String,
    table: Table,
    pending: Pending,
    /// Set when the table stopped (schema it cannot absorb, undecodable
    /// message with `on_undecodable: stop`): its messages are skipped and
    /// nothing more is committed for it.
    stopped: Option<String>,
}

impl TableSink {
    /// Whether the lake table can absorb a change of this shape at this
    /// position after what is buffered. Checked only when the shape is not
    /// the latest one buffered: most events need no check.
    fn check_shape(&self, shape: &Arc<TableSchema>, position: Position) -> Result<(), String> {
        let latest = self.pending.shapes.iter().max_by_key(|(_, p)| *p);
        if latest.is_some_and(|(s, p)| *p <= position && same_shape(s, shape)) {
            return Ok(());
        }
        let mut shapes = self.pending.shapes.clone();
        saw_shape(&mut shapes, shape, position);
        let absorbed = self.shapes_to_absorb(&shapes);
        let refs: Vec<&TableSchema> = absorbed.iter().map(|s| s.as_ref()).collect();
        self.table.check_shapes(&refs)
    }

    /// The buffered shapes the table absorbs in its next commit.
    fn shapes_to_absorb(&self, shapes: &[(Arc<TableSchema>, Position)]) -> Vec<Arc<TableSchema>> {
        let reached = self
            .table
            .schema()
            .is_some()
            .then(|| self.table.position())
            .flatten();
        shapes_to_absorb(shapes, reached)
    }
}

/// Why reading a partition from `start` (the lake's checkpoint; `None`:
/// the lake has read none of it) cannot keep the table equal to its source,
/// given the partition's low and high watermarks: the messages in between
/// are gone (retention, deletion), or the partition ends before what the
/// lake already read (the topic was recreated or lost messages).
fn gap(topic: &str, partition: i32, start: Option<i64>, low: i64, high: i64) -> Option<String> {
    const FIX: &str = "the lake table can no longer be made equal to its source from Kafka: \
        re-snapshot the source into a new table";
    match start {
        Some(n) if n < low => Some(format!(
            "{topic}/{partition}: the lake's checkpoint is offset {n}, but the broker's earliest \
             offset is {low}: messages {n}..{} are gone (retention or deletion) and never \
             reached the lake; {FIX}",
            low - 1
        )),
        Some(n) if n > high => Some(format!(
            "{topic}/{partition}: the lake's checkpoint is offset {n}, past the partition's end \
             at {high}: the topic was recreated or lost messages the lake already holds; {FIX}"
        )),
        None if low > 0 => Some(format!(
            "{topic}/{partition}: the lake has read none of this partition, and its messages \
             0..{} are gone (retention or deletion); {FIX}",
            low - 1
        )),
        _ => None,
    }
}

/// Why a partition whose message at `offset` the lake read with the
/// timestamp `recorded` cannot be read on: that offset now holds another
/// message (timestamp `found`).
fn replaced(topic: &str, partition: i32, offset: i64, recorded: i64, found: Option<i64>) -> String {
    let found = found.map_or_else(|| "none".to_string(), |t| t.to_string());
    format!(
        "{topic}/{partition}: the message at offset {offset} is not the one the lake read there \
         (timestamp {found} ms, the lake's checkpoint recorded {recorded} ms): the topic was \
         deleted and created again since, and its offsets no longer say what the lake holds; \
         re-snapshot the source into a new table"
    )
}

/// The checkpoint a commit records: the lake's (`lake`, the last completed
/// commit's, maybe another worker's) moved on to what this worker buffered
/// (`offsets`, next offset per partition, with the `stamps` of the messages
/// before them). A partition takes the further offset, and the stamp that
/// goes with it.
fn advance(
    lake: Checkpoint,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
    stamps: &BTreeMap<i32, Option<i64>>,
) -> Checkpoint {
    let mut next = Checkpoint {
        topic: topic.to_string(),
        ..lake
    };
    for (p, o) in offsets {
        if next.offsets.get(p).is_some_and(|l| l > o) {
            continue;
        }
        next.offsets.insert(*p, *o);
        match stamps.get(p).copied().flatten() {
            Some(t) => next.stamps.insert(*p, t),
            None => next.stamps.remove(p),
        };
    }
    next
}

/// The changes whose Kafka offset the lake's checkpoint (`lake`: next
/// offset per partition) does not cover yet (`origins`: each change's
/// partition and offset). All of them, unless another worker committed
/// part of them: the batch itself then, not a copy.
fn not_yet_in_lake(
    changes: &Arc<Vec<Change>>,
    origins: &[(i32, i64)],
    lake: &BTreeMap<i32, i64>,
) -> Arc<Vec<Change>> {
    let fresh = |(p, offset): &(i32, i64)| lake.get(p).is_none_or(|next| offset >= next);
    if origins.iter().all(fresh) {
        return changes.clone();
    }
    Arc::new(
        changes
            .iter()
            .zip(origins)
            .filter(|(_, origin)| fresh(origin))
            .map(|(c, _)| c.clone())
            .collect(),
    )
}

/// The renames from shape `old` to shape `new` ([`renamed_columns`]).
fn renames_between(old: &TableSchema, new: &TableSchema) -> Vec<(usize, usize)> {
    fn columns(s: &TableSchema) -> Vec<(&str, &ColumnType)> {
        s.columns.iter().map(|c| (c.name.as_str(), &c.ty)).collect()
    }
    renamed_columns(&columns(old), &columns(new))
}

fn same_shape(a: &Arc<TableSchema>, b: &Arc<TableSchema>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

/// Records that `shape` was seen at `position`, keeping the latest
/// position of each distinct shape.
fn saw_shape(
    shapes: &mut Vec<(Arc<TableSchema>, Position)>,
    shape: &Arc<TableSchema>,
    position: Position,
) {
    match shapes.iter_mut().rev().find(|(s, _)| same_shape(s, shape)) {
        Some((_, seen)) => *seen = (*seen).max(position),
        None => shapes.push((shape.clone(), position)),
    }
}

/// The shapes a commit absorbs into the lake schema, in source order.
///
/// Events reach the sink in source order within a Kafka partition only: at
/// a schema change, one partition may deliver rows of the new shape while
/// another still delivers rows of the old one, and replays after a crash
/// deliver old shapes again. The lake schema must follow the source, so:
/// - shapes are absorbed in the order of the latest position each was seen
///   at (the last one is the source's current shape, which decides which
///   columns are dropped);
/// - a shape seen only at or before `reached` (the position the table
///   already holds) is history: the table has absorbed a later shape, and
///   that shape's rows are written in the current lake schema (columns the
///   shape lacks are NULL). It neither drops nor narrows a column.
fn shapes_to_absorb(
    shapes: &[(Arc<TableSchema>, Position)],
    reached: Option<Position>,
) -> Vec<Arc<TableSchema>> {
    let mut live: Vec<&(Arc<TableSchema>, Position)> = shapes
        .iter()
        .filter(|(_, p)| reached.is_none_or(|r| *p > r))
        .collect();
    live.sort_by_key(|(_, p)| *p);
    live.into_iter().map(|(s, _)| s.clone()).collect()
}

/// How a sink worker takes its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkPlacement {
    /// In the pipeline's consumer group; `worker_id` makes the membership
    /// static, so a restarted worker gets its partitions back at once.
    Group { worker_id: Option<String> },
    /// Every partition of every table, without a group.
    Standalone,
}

/// Counters of a worker's life, shared with the admin endpoint.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub commits: AtomicU64,
    /// Microseconds spent in commits, all tables.
    pub commit_micros: AtomicU64,
    /// Rows inserted, updated and deleted by commits.
    pub rows_written: AtomicU64,
    pub messages: AtomicU64,
    pub dead_letters: AtomicU64,
    pub conflicts: AtomicU64,
    /// Messages in the partitions this worker owns that are not in the
    /// lake yet: high watermark minus the offset the lake's checkpoint
    /// resumes from, summed (measured every 10 s).
    pub kafka_lag: AtomicU64,
    /// Memory touched at start for the buffers ([`reserve_buffer`]); 0
    /// when nothing was touched.
    pub reserved_bytes: AtomicU64,
    /// Per table: the instant of its last commit, or why it stopped.
    pub tables: std::sync::Mutex<std::collections::BTreeMap<String, TableStatus>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStatus {
    pub last_instant: Option<String>,
    pub stopped: Option<String>,
}

impl SinkStats {
    pub(crate) fn table(&self, name: &str, f: impl FnOnce(&mut TableStatus)) {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        f(tables.entry(name.to_string()).or_default());
    }
}

/// Touches the memory `buffer_mb` allows once, so that the first commit
/// does not fault it in (see [`crate::alloc`]): a sink's start does it, and
/// the lake benchmark, which applies its batch without a sink, calls this
/// as a sink's start would. `None` when nothing was touched.
pub fn reserve_buffer(lake: &LakeConfig) -> Option<crate::alloc::Reserved> {
    crate::alloc::reserve(lake.buffer_bytes())
}

pub struct SinkWorker {
    name: String,
    lake: LakeConfig,
    consumer: SinkConsumer,
    tables: HashMap<String, TableSink>,
    dead_letters: Option<DeadLetters>,
    policy: UndecodablePolicy,
    pub stats: Arc<SinkStats>,
    /// A plain client for the brokers' high watermarks (lag).
    watermarks: Arc<rdkafka::consumer::BaseConsumer>,
    /// A commit moved a checkpoint since the lag was last measured.
    lag_stale: bool,
    /// When the lag was last measured.
    lag_measured: Option<Clock>,
}

impl SinkWorker {
    /// Opens every lake table of the pipeline, creates missing topics, and
    /// joins the consumer group (or takes every partition, standalone).
    pub async fn start(
        cfg: &PipelineConfig,
        placement: &SinkPlacement,
    ) -> Result<SinkWorker, SinkError> {
        let lake = cfg
            .lake
            .clone()
            .ok_or_else(|| SinkError::NoLake(cfg.name.clone()))?;
        let root = crate::lake::store::open(&lake)?;
        let prefix = cfg
            .kafka
            .topic_prefix
            .clone()
            .unwrap_or_else(|| cfg.name.clone());
        let writer_id = format!("{}-{}", cfg.name, uuid::Uuid::new_v4());
        let mut tables = HashMap::new();
        let mut unopened: Vec<(String, String)> = Vec::new();
        for (id, layout) in table_layouts(cfg, &lake)? {
            let name = layout.name.clone();
            let options = TableOptions {
                layout,
                target_file_bytes: u64::from(lake.target_file_size_mb) * 1024 * 1024,
                keep_commits: lake.keep_commits as usize,
                compression: lake.parquet_compression,
                writer_id: writer_id.clone(),
            };
            let store: Arc<dyn ObjectStore> =
                Arc::new(PrefixStore::new(root.clone(), name.as_str()));
            let topic = table_topic(&prefix, &id);
            // A table that cannot be read stops alone; the others go on.
            let table = match Table::open(store.clone(), options.clone()).await {
                Ok(table) => table,
                Err(e) if !e.is_retryable() => {
                    unopened.push((topic.clone(), e.to_string()));
                    Table::unopened(store, options)
                }
                Err(e) => return Err(e.into()),
            };
            tables.insert(
                topic.clone(),
                TableSink {
                    id,
                    topic,
                    table,
                    pending: Pending::default(),
                    stopped: None,
                },
            );
        }
        // Done before the consumer starts fetching: buffered changes then
        // take the memory reserved, never memory beside it.
        let budget = lake.clone();
        let reserved = match tokio::task::spawn_blocking(move || reserve_buffer(&budget)).await {
            Ok(reserved) => reserved,
            Err(e) => {
                tracing::warn!(error = %e, "the sink's memory could not be reserved");
                None
            }
        };
        let client = client_config(&cfg.kafka);
        let group = cfg
            .kafka
            .consumer_group
            .clone()
            .unwrap_or_else(|| format!("tidewater.{}", cfg.name));
        let topics: Vec<&str> = tables.keys().map(String::as_str).collect();
        // The sink may start before capture: create the topics it reads.
        let partitions = i32::try_from(cfg.kafka.topic_partitions).unwrap_or(1);
        for topic in &topics {
            crate::kafka::topic::ensure_topic(&client, topic, partitions)
                .await
                .map_err(|message| SinkError::Topic {
                    topic: (*topic).to_string(),
                    message,
                })?;
        }
        let membership = match placement {
            SinkPlacement::Standalone => Membership::Standalone,
            SinkPlacement::Group { worker_id } => Membership::Group {
                group: group.clone(),
                instance: worker_id.as_ref().map(|w| format!("{group}.{w}")),
            },
        };
        let decoder = EventDecoder::new(SchemaStore::new(&cfg.kafka)?);
        let consumer = SinkConsumer::new(&client, &membership, &topics, decoder)?;
        let dead_letters = match lake.on_undecodable {
            UndecodablePolicy::DeadLetter => {
                let topic = lake
                    .dead_letter_topic
                    .clone()
                    .unwrap_or_else(|| format!("{prefix}.dead_letter"));
                crate::kafka::topic::ensure_topic(&client, &topic, 1)
                    .await
                    .map_err(|message| SinkError::Topic {
                        topic: topic.clone(),
                        message,
                    })?;
                Some(DeadLetters::new(&client, topic)?)
            }
            UndecodablePolicy::Stop => None,
        };
        let mut worker = SinkWorker {
            name: cfg.name.clone(),
            policy: lake.on_undecodable,
            lake,
            consumer,
            tables,
            dead_letters,
            stats: Arc::default(),
            watermarks: Arc::new(client.create()?),
            lag_stale: false,
            lag_measured: None,
        };
        for (topic, reason) in unopened {
            worker.stop_table(&topic, &reason);
        }
        if let Some(r) = reserved {
            tracing::info!(
                pipeline = %cfg.name,
                mib = r.bytes >> 20,
                seconds = r.took.as_secs_f64(),
                "sink memory reserved for its buffers"
            );
            let bytes = u64::try_from(r.bytes).unwrap_or(u64::MAX);
            worker.stats.reserved_bytes.store(bytes, Ordering::Relaxed);
        }
        Ok(worker)
    }

    /// Runs until `shutdown` resolves, then commits what is buffered.
    pub async fn run(
        &mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), SinkError> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut lag_tick = tokio::time::interval(LAG_EVERY);
        lag_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    self.commit_due(false).await?;
                    // After a commit, not up to LAG_EVERY later: a lake
                    // that has caught up shows no lag.
                    let recent = self.lag_measured.is_some_and(|t| t.elapsed() < Duration::from_secs(1));
                    if self.lag_stale && !recent {
                        self.measure_lag().await;
                    }
                }
                _ = lag_tick.tick() => self.measure_lag().await,
                polled = self.consumer.next() => self.handle(polled?).await?,
            }
        }
        tracing::info!(pipeline = %self.name, "sink stopping: committing buffered changes");
        self.commit_due(true).await
    }

    async fn handle(&mut self, polled: Polled) -> Result<(), SinkError> {
        match polled {
            Polled::Assigned(parts) => {
                // Another worker may have committed these partitions since
                // this one read the tables: start from the lake as it is.
                let topics: std::collections::BTreeSet<&String> =
                    parts.iter().map(|(t, _)| t).collect();
                for topic in topics {
                    let Some(sink) = self.tables.get_mut(topic.as_str()) else {
                        continue;
                    };
                    if sink.stopped.is_some() {
                        continue;
                    }
                    if let Err(e) = sink.table.refresh().await {
                        self.table_failed(topic, e)?;
                    }
                }
                let marks = Self::watermarks(self.watermarks.clone(), parts.clone()).await;
                let mut starts: Vec<(String, i32, Offset)> = Vec::new();
                for ((topic, partition), mark) in parts.into_iter().zip(marks) {
                    let (low, high) = mark?;
                    let checkpoint = self
                        .tables
                        .get(&topic)
                        .and_then(|t| t.table.checkpoint())
                        .filter(|c| c.topic == topic);
                    let start = checkpoint.and_then(|c| c.offsets.get(&partition).copied());
                    let stamp = checkpoint.and_then(|c| c.stamps.get(&partition).copied());
                    let stopped = self.tables.get(&topic).is_none_or(|t| t.stopped.is_some());
                    if !stopped && let Some(reason) = gap(&topic, partition, start, low, high) {
                        self.stop_table(&topic, &reason);
                    }
                    if self.tables.get(&topic).is_none_or(|t| t.stopped.is_some()) {
                        // A stopped table's partitions are not read.
                        continue;
                    }
                    // The message the lake read last is read again, to
                    // check the topic is still the one the lake read.
                    if let (Some(n), Some(stamp)) = (start, stamp)
                        && n > low
                    {
                        self.consumer.check_first(&topic, partition, n - 1, stamp);
                    }
                    // From 0, not "the beginning": a partition read from
                    // a known offset notices when retention skips it.
                    let offset = Offset::Offset(start.unwrap_or(0));
                    tracing::info!(pipeline = %self.name, topic = %topic, partition, ?offset, low, high, "partition assigned");
                    starts.push((topic, partition, offset));
                }
                self.consumer.start(&starts)?;
            }
            Polled::Gap {
                topic,
                partition,
                from,
                earliest,
            } => {
                let stopped = self.tables.get(&topic).is_none_or(|t| t.stopped.is_some());
                if !stopped {
                    let reason = gap(&topic, partition, Some(from), earliest, i64::MAX)
                        .unwrap_or_else(|| {
                            format!("{topic}/{partition}: offsets skipped from {from}")
                        });
                    // What came before the gap is whole: commit it first.
                    self.commit_table(&topic).await?;
                    self.stop_table(&topic, &reason);
                }
            }
            Polled::Revoked(parts) => {
                tracing::info!(pipeline = %self.name, ?parts, "partitions revoked; committing what they buffered");
                let topics: Vec<String> = parts.into_iter().map(|(t, _)| t).collect();
                for topic in topics {
                    self.commit_table(&topic).await?;
                }
            }
            Polled::Replaced {
                topic,
                partition,
                offset,
                recorded,
                found,
            } => {
                let stopped = self.tables.get(&topic).is_none_or(|t| t.stopped.is_some());
                if !stopped {
                    // Nothing buffered is committed: the topic is not the
                    // one the lake read.
                    let reason = replaced(&topic, partition, offset, recorded, found);
                    self.stop_table(&topic, &reason);
                }
            }
            Polled::Rewound {
                topic,
                partition,
                from,
                to,
            } => {
                let stopped = self.tables.get(&topic).is_none_or(|t| t.stopped.is_some());
                if !stopped {
                    let reason = format!(
                        "{topic}/{partition}: offsets went back from {from} to {to} while the \
                         partition was read: the topic was deleted and created again (or lost \
                         its messages); re-snapshot the source into a new table"
                    );
                    self.stop_table(&topic, &reason);
                }
            }
            Polled::Message {
                topic,
                partition,
                offset,
                timestamp,
                decoded,
                raw,
            } => {
                self.stats.messages.fetch_add(1, Ordering::Relaxed);
                let budget = self.table_budget();
                let max = self.lake.max_changes_per_commit as usize;
                let Some(sink) = self.tables.get_mut(&topic) else {
                    return Ok(());
                };
                if sink.stopped.is_some() {
                    return Ok(());
                }
                match decoded {
                    Ok(Decoded::Event(event)) => {
                        // A truncate carries no row: its shape (on MySQL,
                        // the catalog's when no table map preceded it) is
                        // not the table's at that position, and is not
                        // absorbed.
                        let checked = if event.op == Op::Truncate {
                            Ok(())
                        } else {
                            sink.check_shape(&event.table, event.position)
                        };
                        if let Err(reason) = checked {
                            // Commit what came before the change, then stop
                            // at it: a restart stops here again.
                            self.commit_table(&topic).await?;
                            self.stop_table(&topic, &format!("a schema change at {topic}/{partition}@{offset} the lake table cannot absorb: {reason}"));
                            return Ok(());
                        }
                        if event.op == Op::Truncate {
                            sink.pending.truncate_at(&event);
                        } else if let Some(key) = event.key_row() {
                            let key = event_record_key(&event.table, &key);
                            sink.pending.add(event, key, (partition, offset));
                        }
                    }
                    Ok(Decoded::Tombstone { .. }) => {}
                    Err(e) if e.is_retryable() => {
                        return Err(SinkError::Schemas(match e.reason {
                            crate::kafka::consumer::UndecodableReason::Schema(s) => s,
                            _ => crate::kafka::schemas::SchemaStoreError::Read(e.to_string()),
                        }));
                    }
                    Err(e) => match (&self.policy, &self.dead_letters) {
                        (UndecodablePolicy::DeadLetter, Some(letters)) => {
                            let (key, value) = raw.map(|r| (r.key, r.value)).unwrap_or_default();
                            letters.send(&e, key.as_deref(), value.as_deref()).await?;
                            self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(pipeline = %self.name, topic = %topic, partition, offset, dead_letter_topic = %letters.topic(), "undecodable message sent to the dead-letter topic");
                        }
                        _ => {
                            self.stop_table(
                                &topic,
                                &format!(
                                    "undecodable message at {topic}/{partition}@{offset}: {e}"
                                ),
                            );
                            return Ok(());
                        }
                    },
                }
                sink.pending.messages += 1;
                // Tombstones and dead letters carry no change, but their
                // offsets are committed on the interval all the same.
                sink.pending.since.get_or_insert_with(Clock::now);
                sink.pending.offsets.insert(partition, offset + 1);
                sink.pending.stamps.insert(partition, timestamp);
                if sink.pending.changes.len() >= max || sink.pending.bytes >= budget {
                    self.commit_table(&topic).await?;
                }
            }
        }
        Ok(())
    }

    /// Each table's share of `buffer_mb`.
    fn table_budget(&self) -> usize {
        self.lake.buffer_bytes() / self.tables.len().max(1)
    }

    async fn commit_due(&mut self, all: bool) -> Result<(), SinkError> {
        let interval = Duration::from_secs(u64::from(self.lake.commit_interval_secs));
        let due: Vec<String> = self
            .tables
            .iter()
            .filter(|(_, t)| t.stopped.is_none() && !t.pending.is_empty())
            .filter(|(_, t)| all || t.pending.since.is_some_and(|s| s.elapsed() >= interval))
            .map(|(topic, _)| topic.clone())
            .collect();
        for topic in due {
            self.commit_table(&topic).await?;
        }
        Ok(())
    }

    /// Commits one table's buffer; on a lost race, reloads and retries.
    async fn commit_table(&mut self, topic: &str) -> Result<(), SinkError> {
        let Some(sink) = self.tables.get_mut(topic) else {
            return Ok(());
        };
        if sink.pending.is_empty() || sink.stopped.is_some() {
            return Ok(());
        }
        let mut pending = std::mem::take(&mut sink.pending);
        let mut buffered = std::mem::take(&mut pending.changes);
        // Each key's entry is not needed any more: its memory goes to the
        // commit's file jobs.
        pending.slots = hashbrown::HashTable::new();
        // In place (a stable sort would take a copy of half the buffer).
        // One change per key: the order of two at one position, if there
        // ever were two, would not matter.
        buffered.sort_unstable_by_key(|b| b.change.position);
        let origins: Vec<(i32, i64)> = buffered.iter().map(|b| b.origin).collect();
        // In place: the changes take the buffer's memory.
        let changes: Arc<Vec<Change>> = Arc::new(buffered.into_iter().map(|b| b.change).collect());
        for attempt in 0..5 {
            let lake = sink
                .table
                .checkpoint()
                .filter(|c| c.topic == sink.topic)
                .cloned()
                .unwrap_or_default();
            // After a lost race, the winner may have committed part of what
            // is buffered here: those changes are in the lake already, and
            // applying them again could bring back a row it deleted since.
            let fresh = not_yet_in_lake(&changes, &origins, &lake.offsets);
            let checkpoint = advance(lake, &sink.topic, &pending.offsets, &pending.stamps);
            let offsets = checkpoint.offsets.clone();
            let batch = CommitBatch {
                shapes: sink.shapes_to_absorb(&pending.shapes),
                changes: fresh,
                truncate: pending.truncate,
                checkpoint,
                position: pending.max_position,
            };
            let started = Clock::now();
            match sink.table.commit(batch).await {
                Ok(outcome) => {
                    tracing::info!(
                        pipeline = %self.name, table = %sink.id, instant = %outcome.instant,
                        inserted = outcome.inserted, updated = outcome.updated, deleted = outcome.deleted,
                        stale = outcome.stale, files = outcome.files_written, bytes = outcome.bytes_written,
                        "committed"
                    );
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    self.lag_stale = true;
                    self.stats
                        .commit_micros
                        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    self.stats.rows_written.fetch_add(
                        outcome.inserted + outcome.updated + outcome.deleted,
                        Ordering::Relaxed,
                    );
                    self.stats.table(&sink.id.to_string(), |t| {
                        t.last_instant = Some(outcome.instant.clone())
                    });
                    let advisory: Vec<(String, i32, i64)> = offsets
                        .iter()
                        .map(|(p, o)| (sink.topic.clone(), *p, *o))
                        .collect();
                    if let Err(e) = self.consumer.commit_offsets(&advisory) {
                        tracing::debug!(error = %e, "advisory offset commit failed");
                    }
                    // Freeing a million changes takes a while: not on the
                    // runtime's thread.
                    tokio::task::spawn_blocking(move || drop(changes));
                    return Ok(());
                }
                // Nothing of the batch is committed; a restart reads it
                // again and stops here again.
                Err(e) if !e.is_retryable() => return self.table_failed(topic, e),
                Err(e) if e.is_retryable() && attempt < 4 => {
                    self.stats.conflicts.fetch_add(
                        u64::from(matches!(e, LakeError::Conflict { .. })),
                        Ordering::Relaxed,
                    );
                    tracing::warn!(pipeline = %self.name, table = %sink.id, error = %e, attempt, "commit failed; reloading the table and retrying");
                    tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
                    if let Err(e) = sink.table.reload().await {
                        return self.table_failed(topic, e);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The brokers' low and high watermarks of `parts`, in order.
    async fn watermarks(
        client: Arc<rdkafka::consumer::BaseConsumer>,
        parts: Vec<(String, i32)>,
    ) -> Vec<Result<(i64, i64), rdkafka::error::KafkaError>> {
        let n = parts.len();
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::Consumer;
            parts
                .iter()
                .map(|(topic, p)| client.fetch_watermarks(topic, *p, Duration::from_secs(5)))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|_| {
            (0..n)
                .map(|_| Err(rdkafka::error::KafkaError::Canceled))
                .collect()
        })
    }

    /// Sets [`SinkStats::kafka_lag`] from the brokers' high watermarks of
    /// the owned partitions and the lake's checkpoints. A broker that does
    /// not answer leaves the figure as it was.
    async fn measure_lag(&mut self) {
        self.lag_stale = false;
        self.lag_measured = Some(Clock::now());
        let owned = self.consumer.owned();
        if owned.is_empty() {
            return;
        }
        let marks = Self::watermarks(self.watermarks.clone(), owned.clone()).await;
        let mut lag = 0u64;
        for ((topic, partition), mark) in owned.into_iter().zip(marks) {
            let Ok((_, high)) = mark else {
                return;
            };
            let committed = self
                .tables
                .get(&topic)
                .and_then(|t| t.table.checkpoint())
                .and_then(|c| c.offsets.get(&partition).copied())
                .unwrap_or(0);
            lag += u64::try_from(high.saturating_sub(committed)).unwrap_or(0);
        }
        self.stats.kafka_lag.store(lag, Ordering::Relaxed);
    }

    /// A lake error of one table: one that needs an operator (a schema it
    /// cannot absorb, a file or instant it cannot read) stops that table
    /// alone; one worth retrying fails the worker, which starts again.
    fn table_failed(&mut self, topic: &str, e: LakeError) -> Result<(), SinkError> {
        if e.is_retryable() {
            return Err(e.into());
        }
        let reason = match e {
            LakeError::Schema { message, .. } => message,
            other => other.to_string(),
        };
        self.stop_table(topic, &reason);
        Ok(())
    }

    /// Stops one table (the rest of the pipeline goes on): its messages
    /// are skipped from here and its checkpoint stays before them.
    fn stop_table(&mut self, topic: &str, reason: &str) {
        if let Some(sink) = self.tables.get_mut(topic) {
            tracing::error!(
                pipeline = %self.name, table = %sink.id, topic = %topic,
                "table stopped, the rest of the pipeline goes on: {reason}; fix the cause (or re-snapshot into a new table) and restart"
            );
            sink.pending = Pending::default();
            sink.stopped = Some(reason.to_string());
            self.stats.table(&sink.id.to_string(), |t| {
                t.stopped = Some(reason.to_string())
            });
        }
    }

    /// The lake table of a topic (for tests and status).
    pub fn table(&self, topic: &str) -> Option<&Table> {
        self.tables.get(topic).map(|t| &t.table)
    }

    /// Why a table stopped, if it did.
    pub fn stopped(&self, topic: &str) -> Option<&str> {
        self.tables.get(topic).and_then(|t| t.stopped.as_deref())
    }
}

/// A row's key as a row of key values (for callers that build changes).
pub fn key_of(table: &TableSchema, row: &Row) -> Row {
    table.key_of(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::schema::Column;
    use crate::event::types::ColumnType;

    fn shape(extra: &[&str]) -> Arc<TableSchema> {
        Arc::new(crate::event::sample::id_keyed_table(
            TableId::new("public", "t"),
            extra
                .iter()
                .map(|name| Column::new(*name, ColumnType::Text, true)),
        ))
    }

    fn names(shapes: &[Arc<TableSchema>]) -> Vec<usize> {
        shapes.iter().map(|s| s.columns.len()).collect()
    }

    #[test]
    fn shapes_follow_source_positions_not_arrival() {
        let (old, new) = (shape(&["a"]), shape(&["a", "b"]));
        let at = |n| Position::new(n, 0);
        // Partition 0 delivers the new shape first, partition 1 its last
        // rows of the old shape after it.
        let mut seen = Vec::new();
        saw_shape(&mut seen, &new, at(20));
        saw_shape(&mut seen, &old, at(5));
        saw_shape(&mut seen, &new, at(21));
        saw_shape(&mut seen, &old, at(7));
        assert_eq!(seen.len(), 2, "one entry per distinct shape");
        assert_eq!(names(&shapes_to_absorb(&seen, None)), vec![2, 3]);
        // An equal shape in another allocation is the same shape.
        saw_shape(&mut seen, &shape(&["a", "b"]), at(30));
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].1, at(30));
        // The table already holds position 10: the old shape is history.
        assert_eq!(names(&shapes_to_absorb(&seen, Some(at(10)))), vec![3]);
        // A column dropped and added back: the latest shape comes last.
        let mut seen = Vec::new();
        saw_shape(&mut seen, &old, at(1));
        saw_shape(&mut seen, &new, at(2));
        saw_shape(&mut seen, &old, at(3));
        assert_eq!(names(&shapes_to_absorb(&seen, None)), vec![3, 2]);
        // Everything at or before the table's position: nothing to absorb.
        assert!(shapes_to_absorb(&seen, Some(at(3))).is_empty());
    }

    #[test]
    fn a_checkpoint_moves_each_partition_on_with_the_stamp_of_its_offset() {
        let lake = Checkpoint {
            topic: "t".into(),
            offsets: BTreeMap::from([(0, 10), (1, 50), (2, 7)]),
            stamps: BTreeMap::from([(0, 100), (1, 500), (2, 70)]),
        };
        // Partition 0 moved on; 1 is behind another worker's commit; 2 moved
        // on to a message without a timestamp; 3 is read for the first time.
        let offsets = BTreeMap::from([(0, 12), (1, 40), (2, 9), (3, 1)]);
        let stamps = BTreeMap::from([(0, Some(120)), (1, Some(400)), (2, None), (3, Some(5))]);
        let next = advance(lake, "t", &offsets, &stamps);
        assert_eq!(
            next.offsets,
            BTreeMap::from([(0, 12), (1, 50), (2, 9), (3, 1)])
        );
        assert_eq!(
            next.stamps,
            BTreeMap::from([(0, 120), (1, 500), (3, 5)]),
            "each stamp is the one of the message before its partition's offset"
        );
        let fresh = advance(Checkpoint::default(), "t", &offsets, &stamps);
        assert_eq!(fresh.topic, "t");
        assert_eq!(fresh.offsets, offsets);
    }

    #[test]
    fn a_replaced_topic_is_named_with_both_timestamps_and_the_fix() {
        let text = replaced("t", 2, 49, 1_000, Some(2_000));
        assert!(
            text.starts_with("t/2: the message at offset 49")
                && text.contains("timestamp 2000 ms, the lake's checkpoint recorded 1000 ms")
                && text.contains("re-snapshot"),
            "{text}"
        );
        assert!(replaced("t", 0, 0, 1, None).contains("timestamp none"));
    }

    #[test]
    fn a_partition_that_cannot_be_read_whole_from_the_checkpoint_is_a_gap() {
        // Nothing lost: from the checkpoint, from the start, caught up, empty.
        for (start, low, high) in [
            (Some(5), 0, 9),
            (Some(5), 5, 9),
            (Some(9), 3, 9),
            (None, 0, 0),
            (None, 0, 4),
        ] {
            assert_eq!(
                gap("t", 1, start, low, high),
                None,
                "{start:?} {low} {high}"
            );
        }
        let retention = gap("t", 1, Some(5), 8, 20).unwrap();
        assert!(
            retention.contains("t/1") && retention.contains("messages 5..7 are gone"),
            "{retention}"
        );
        let recreated = gap("t", 2, Some(50), 0, 10).unwrap();
        assert!(
            recreated.contains("t/2")
                && recreated.contains("offset 50, past the partition's end at 10"),
            "{recreated}"
        );
        let never_read = gap("t", 0, None, 3, 10).unwrap();
        assert!(
            never_read.contains("0..2 are gone") && never_read.contains("re-snapshot"),
            "{never_read}"
        );
    }

    #[test]
    fn an_unchanged_value_after_a_rename_comes_from_the_buffered_change() {
        let mut rng = crate::event::sample::Rng::new(7);
        let mut update = |table: &Arc<TableSchema>, at: u64, after: Vec<Datum>| {
            let mut e = crate::event::sample::event(&mut rng, table, Position::new(at, 0));
            e.op = Op::Update;
            e.after = Some(Row(after));
            e
        };
        let text = |s: &str| Datum::Text(s.into());
        let (before, after) = (shape(&["a", "big"]), shape(&["a", "large"]));
        let mut pending = Pending::default();
        pending.add(
            update(&before, 10, vec![Datum::Int(1), text("x"), text("v1")]),
            "1".into(),
            (0, 0),
        );
        // RENAME big TO large; the next update leaves it unchanged.
        pending.add(
            update(&after, 11, vec![Datum::Int(1), text("y"), Datum::Unchanged]),
            "1".into(),
            (0, 1),
        );
        let row = pending
            .get("1")
            .unwrap()
            .row
            .as_ref()
            .unwrap()
            .unpack()
            .unwrap();
        assert_eq!(row.0, vec![Datum::Int(1), text("y"), text("v1")]);
    }

    /// Item 7 of the lake sink: with the default options, a million changes
    /// of 200-byte rows make one commit. The buffer's budget must not cut
    /// it first; `max_changes_per_commit` does.
    #[test]
    fn the_default_budget_holds_a_million_changes_of_200_byte_rows() {
        let lake = LakeConfig::with_uri("file:///lake");
        assert_eq!(lake.max_changes_per_commit, 1_000_000);
        let table = shape(&["status", "amount", "created_at", "note"]);
        // The largest key and row of `tests/sink.rs`' million orders: id 8
        // bytes, status 7, amount 3, created_at 8, note 174.
        let id = 999_999i64;
        let note = format!("{{\"sku\":\"SKU-{id:06}\",\"qty\":3,\"note\":\"{id:0>136x}\"}}");
        assert_eq!(note.len(), 174);
        let row = Row(vec![
            Datum::Int(id),
            Datum::Text("shipped".into()),
            Datum::Decimal(crate::event::decimal::Decimal::from_i128(9_999_999)),
            Datum::Micros(1_704_067_200_000_000 + 3 * 86_400_000_000 + id),
            Datum::Text(note),
        ]);
        let change = Change {
            key: id.to_string(),
            position: Position::new(100, 1),
            row: Some(PackedRow::pack(&row)),
            schema: table,
        };
        let million = 1_000_000 * buffered_bytes(&change);
        let budget = lake.buffer_bytes();
        println!(
            "a million such changes count {million} bytes of {budget}; a row packs into {}",
            change.row.as_ref().map_or(0, PackedRow::heap_bytes)
        );
        assert!(
            million < budget,
            "{million} bytes over a budget of {budget}"
        );
    }

    #[test]
    fn changes_a_winner_committed_are_not_applied_again() {
        let table = shape(&["a"]);
        let change = |key: &str| Change {
            key: key.into(),
            position: Position::new(1, 0),
            row: None,
            schema: table.clone(),
        };
        let changes = Arc::new(vec![change("k1"), change("k2"), change("k3"), change("k4")]);
        let origins = [(0, 10), (0, 25), (1, 5), (2, 0)];
        // The winner committed partition 0 up to offset 20 (next 20) and
        // nothing of partitions 1 and 2.
        let lake = BTreeMap::from([(0, 20), (1, 5)]);
        let keys: Vec<String> = not_yet_in_lake(&changes, &origins, &lake)
            .iter()
            .map(|c| c.key.clone())
            .collect();
        assert_eq!(keys, vec!["k2", "k3", "k4"]);
        // Nothing committed by another worker: the batch itself, no copy.
        let none = BTreeMap::from([(0, 10), (1, 5), (2, 0)]);
        assert!(Arc::ptr_eq(
            &not_yet_in_lake(&changes, &origins, &none),
            &changes
        ));
    }

    #[test]
    fn the_buffer_keeps_one_change_per_key_and_counts_what_it_holds() {
        let table = shape(&["a"]);
        let mut rng = crate::event::sample::Rng::new(3);
        let mut event = |at: u64, id: i64, a: Option<&str>| {
            let mut e = crate::event::sample::event(&mut rng, &table, Position::new(at, 0));
            e.op = if a.is_some() { Op::Update } else { Op::Delete };
            e.after = a.map(|a| Row(vec![Datum::Int(id), Datum::Text(a.repeat(100))]));
            e
        };
        let counted =
            |p: &Pending| -> usize { p.changes.iter().map(|b| buffered_bytes(&b.change)).sum() };
        let mut pending = Pending::default();
        for id in 0..1000 {
            pending.add(event(10, id, Some("x")), id.to_string(), (0, id));
        }
        assert_eq!(pending.changes.len(), 1000);
        assert_eq!(pending.bytes, counted(&pending));
        let one = buffered_bytes(&pending.get("7").unwrap().clone());
        let packed = pending.get("7").unwrap().row.as_ref().unwrap().heap_bytes();
        assert!(packed > 100, "{packed}");
        assert!(
            one >= std::mem::size_of::<Buffered>() + packed + "7".len(),
            "{one}"
        );
        // Newer changes of the same keys replace the buffered ones (a
        // delete frees its row); an older one is dropped.
        for id in 0..500 {
            pending.add(event(11, id, None), id.to_string(), (1, id));
        }
        pending.add(event(9, 900, Some("old")), "900".into(), (1, 900));
        assert_eq!(pending.changes.len(), 1000);
        assert_eq!(pending.bytes, counted(&pending));
        assert!(pending.get("7").unwrap().row.is_none());
        assert_eq!(
            pending
                .get("900")
                .unwrap()
                .row
                .as_ref()
                .unwrap()
                .get(1)
                .unwrap()
                .unwrap(),
            Datum::Text("x".repeat(100))
        );
        assert!(pending.get("1000").is_none());
        // A truncate keeps what is newer than it.
        let mut truncate = event(10, 0, None);
        truncate.position = Position::new(10, 5);
        pending.truncate_at(&truncate);
        assert_eq!(pending.changes.len(), 500);
        assert_eq!(pending.bytes, counted(&pending));
        assert!(pending.get("7").unwrap().row.is_none());
        assert!(pending.get("900").is_none());
        pending.add(event(12, 900, Some("y")), "900".into(), (1, 901));
        assert_eq!(pending.changes.len(), 501);
        assert_eq!(pending.get("900").unwrap().position, Position::new(12, 0));
    }
}
