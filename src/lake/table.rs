//! One Hudi copy-on-write table: loading its state, recovering from a crash,
//! and committing upserts.
//!
//! # A commit, as typed states
//!
//! ```text
//!  Planned ──requested + inflight (put-if-absent)──> Inflight
//!  Inflight ──markers, then base files──> FilesWritten
//!  FilesWritten ──claim log entry N+1 (put-if-absent)──> Claimed ──┐
//!        │ lost the claim: delete own files, reload (Conflict)       │
//!  Claimed ──<instant>.commit (put-if-absent)──> Completed <────────┘
//!  Completed ──delete markers, clean, archive──> next commit
//! ```
//!
//! Readers see a commit only once `<instant>.commit` exists, and it is written
//! last, in one PUT. A crash before the claim leaves a pending instant that
//! the next writer rolls back (its files found through its markers and by
//! name); a crash after the claim leaves a won log entry that the next writer
//! publishes. See [`super::log`] for why the claim fences zombies.
//!
//! # Where a key lives
//!
//! A key lives in exactly one file group of the whole table. The writer keeps
//! an in-memory index from a 128-bit hash of each record key to its file group
//! (built at open from the key column of every latest slice, then maintained
//! by each commit). Before a change is applied, the key and its stored
//! position are checked in the file group's own key column, so routing by hash
//! never decides alone. A change whose position is not newer than the stored
//! row's (a replay) is dropped. An update that changes the partition column
//! removes the row from its old file group and inserts it in the new partition.
//!
//! # Inserts and file sizes
//!
//! Inserts go first to file groups of their partition below 80% of the target
//! size (Hudi's small-file handling), then to new file groups sized from the
//! table's average row size.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow_schema::SchemaRef;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::batch::{array_of, datum_at, project, repeated_string};
use super::files::{
    FileError, base_file_name, decode, decode_keys, encode, new_file_id, parse_base_file_name,
};
use super::layout::{
    self, FILE_NAME, LakeSchema, POSITION, TableLayout, parse_position, position_text,
};
use super::log::{self, Claim, LogEntry};
use super::metadata::{
    CHECKPOINT_KEY, Checkpoint, CommitMetadata, LAKE_SCHEMA_KEY, POSITION_KEY, SCHEMA_KEY,
    WriteStat,
};
use super::properties::TableProperties;
use super::timeline::{Action, Instant, State, Timeline, next_instant, now_millis};
use crate::config::model::ParquetCompression;
use crate::event::change::Position;
use crate::event::datum::{Datum, Row};
use crate::event::schema::TableSchema;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("base file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: FileError,
    },
    #[error("table {table}: {message}")]
    Schema { table: String, message: String },
    #[error("table {table}: another writer committed first (log entry {seq}); reload and replay")]
    Conflict { table: String, seq: u64 },
    #[error("table {table}: {message}")]
    Corrupt { table: String, message: String },
}

impl LakeError {
    /// Whether reopening the table and retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LakeError::Store(_) | LakeError::Conflict { .. })
    }
}

/// Table-level settings.
#[derive(Debug, Clone)]
pub struct TableOptions {
    pub layout: TableLayout,
    pub target_file_bytes: u64,
    pub keep_commits: usize,
    pub compression: ParquetCompression,
    /// Identifies this writer in log entries.
    pub writer_id: String,
}

/// Base files above this size are uploaded in parts.
const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Part size of multipart uploads (S3's minimum is 5 MiB).
const MULTIPART_PART: usize = 8 * 1024 * 1024;

/// One committed base file.
#[derive(Debug, Clone)]
struct Slice {
    instant: String,
    file: String,
    bytes: u64,
    rows: u64,
}

#[derive(Debug, Clone)]
struct FileGroup {
    id: String,
    partition: String,
    /// Committed slices, oldest first.
    slices: Vec<Slice>,
}

impl FileGroup {
    fn latest(&self) -> Option<&Slice> {
        self.slices.last()
    }

    fn path_of(&self, slice: &Slice) -> Path {
        if self.partition.is_empty() {
            Path::from(slice.file.as_str())
        } else {
            Path::from(format!("{}/{}", self.partition, slice.file))
        }
    }
}

/// A change ready to be applied: the latest change of one key in a batch.
#[derive(Debug, Clone)]
pub struct Change {
    pub key: String,
    pub position: Position,
    /// The new row (full, in `schema`'s column order), or `None` for a delete.
    pub row: Option<Row>,
    /// The source shape of `row`.
    pub schema: Arc<TableSchema>,
}

/// What one commit applies.
#[derive(Debug, Clone)]
pub struct CommitBatch {
    /// Source shapes seen in the batch, oldest first (for schema evolution).
    pub shapes: Vec<Arc<TableSchema>>,
    pub changes: Vec<Change>,
    /// Rows stored with a position below this are removed (TRUNCATE).
    pub truncate: Option<Position>,
    pub checkpoint: Checkpoint,
    pub position: Option<Position>,
}

/// What a commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    pub instant: String,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Changes dropped because the table already held a newer position.
    pub stale: u64,
    /// Unchanged rows copied into rewritten files.
    pub rows_carried: u64,
    pub files_written: u64,
    pub bytes_written: u64,
}

fn key_hash(key: &str) -> u128 {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    0u8.hash(&mut a);
    key.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    1u8.hash(&mut b);
    key.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// An open table and its writer.
pub struct Table {
    store: Arc<dyn ObjectStore>,
    options: TableOptions,
    timeline: Timeline,
    schema: Option<LakeSchema>,
    groups: Vec<FileGroup>,
    by_id: HashMap<String, usize>,
    index: HashMap<u128, u32>,
    checkpoint: Option<Checkpoint>,
    position: Option<Position>,
    seq: u64,
    properties_written: bool,
    known_partitions: HashSet<String>,
}

async fn put(
    store: &dyn ObjectStore,
    path: &Path,
    body: Vec<u8>,
    create: bool,
) -> Result<(), object_store::Error> {
    let mode = if create {
        PutMode::Create
    } else {
        PutMode::Overwrite
    };
    store
        .put_opts(
            path,
            PutPayload::from(Bytes::from(body)),
            PutOptions {
                mode,
                ..Default::default()
            },
        )
        .await
        .map(|_| ())
}

/// Put-if-absent where an existing object with the same content is success.
///
/// A failed put-if-absent may still have landed: a retry after a lost
/// response gets `AlreadyExists` for our own object, and a reset or timeout
/// after the server stored it surfaces as a generic error. So any failure is
/// checked by reading the object back: our bytes mean done (`Ok(true)`),
/// other bytes mean another writer's object (`Ok(false)`), no object means
/// the error stands.
async fn put_new(
    store: &dyn ObjectStore,
    path: &Path,
    body: Vec<u8>,
) -> Result<bool, object_store::Error> {
    match put(store, path, body.clone(), true).await {
        Ok(()) => Ok(true),
        Err(e) => match store.get(path).await {
            Ok(found) => Ok(found.bytes().await?.as_ref() == body.as_slice()),
            Err(object_store::Error::NotFound { .. }) => Err(e),
            Err(read) => Err(read),
        },
    }
}

async fn delete_if_present(
    store: &dyn ObjectStore,
    path: &Path,
) -> Result<(), object_store::Error> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

impl Table {
    fn name(&self) -> &str {
        &self.options.layout.name
    }

    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    pub fn position(&self) -> Option<Position> {
        self.position
    }

    pub fn schema(&self) -> Option<&LakeSchema> {
        self.schema.as_ref()
    }

    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// Rows in the latest slices.
    pub fn row_count(&self) -> u64 {
        self.groups
            .iter()
            .filter_map(FileGroup::latest)
            .map(|s| s.rows)
            .sum()
    }

    /// Paths (relative to the table) of the latest slice of every file group.
    pub fn latest_files(&self) -> Vec<String> {
        self.groups
            .iter()
            .filter_map(|g| Some(g.path_of(g.latest()?).to_string()))
            .collect()
    }

    pub fn file_group_count(&self) -> usize {
        self.groups
            .iter()
            .filter(|g| g.latest().is_some_and(|s| s.rows > 0))
            .count()
    }

    async fn list_hoodie(store: &dyn ObjectStore) -> Result<Timeline, object_store::Error> {
        let listing = store
            .list_with_delimiter(Some(&Path::from(".hoodie")))
            .await?;
        let names: Vec<String> = listing
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_string))
            .collect();
        Ok(Timeline::from_file_names(names.iter().map(String::as_str)))
    }

    async fn read_commit(
        store: &dyn ObjectStore,
        time: &str,
    ) -> Result<Option<CommitMetadata>, object_store::Error> {
        let path = Path::from(format!(
            ".hoodie/{}",
            Instant::new(time, Action::Commit, State::Completed).file_name()
        ));
        match store.get(&path).await {
            Ok(r) => Ok(serde_json::from_slice(&r.bytes().await?).ok()),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens the table at the store's root: publishes a claimed but
    /// unpublished commit, rolls back failed instants, deletes their files,
    /// and builds the key index.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        options: TableOptions,
    ) -> Result<Table, LakeError> {
        Self::load(store, options, true).await
    }

    /// Reloads after losing a commit race: the winner's commits (published
    /// here if it crashed before publishing) and files, without rolling back
    /// anybody's pending instant (another live writer may own it).
    pub async fn reload(&mut self) -> Result<(), LakeError> {
        *self = Self::load(self.store.clone(), self.options.clone(), false).await?;
        Ok(())
    }

    /// `recover`: also roll back failed instants and delete their files
    /// (at process start: a pending instant then belongs to a dead writer or
    /// to a zombie, which the rollback's log entry fences).
    async fn load(
        store: Arc<dyn ObjectStore>,
        options: TableOptions,
        recover: bool,
    ) -> Result<Table, LakeError> {
        let properties_written = match store.head(&Path::from(".hoodie/hoodie.properties")).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        let mut table = Table {
            store,
            options,
            timeline: Timeline::default(),
            schema: None,
            groups: Vec::new(),
            by_id: HashMap::new(),
            index: HashMap::new(),
            checkpoint: None,
            position: None,
            seq: 0,
            properties_written,
            known_partitions: HashSet::new(),
        };
        table.timeline = Self::list_hoodie(table.store.as_ref()).await?;
        if let Some(entry) = log::latest(table.store.as_ref()).await? {
            table.seq = entry.seq;
            if entry.action == "commit"
                && !table.timeline.is_completed_commit(&entry.instant)
                && let Some(commit) = &entry.commit
            {
                tracing::info!(table = %table.name(), instant = %entry.instant, "publishing a commit claimed before a crash");
                table.publish(&entry.instant, commit).await?;
                table.timeline = Self::list_hoodie(table.store.as_ref()).await?;
            }
        }
        let pending: Vec<Instant> = table.timeline.pending_commits().cloned().collect();
        if recover && !pending.is_empty() {
            table.rollback(&pending).await?;
        }
        table.load_files(recover).await?;
        if let Some(last) = table
            .timeline
            .completed_commits()
            .last()
            .map(|i| i.time.clone())
            && let Some(commit) = Self::read_commit(table.store.as_ref(), &last).await?
        {
            table.checkpoint = commit.checkpoint();
            table.schema = commit.lake_schema();
            table.position = commit
                .extra_metadata
                .get(POSITION_KEY)
                .and_then(|p| parse_position(p));
        }
        table.build_index().await?;
        Ok(table)
    }

    /// Lists base files, keeps committed slices, and (when recovering)
    /// deletes leftovers of failed instants.
    async fn load_files(&mut self, recover: bool) -> Result<(), LakeError> {
        let metas: Vec<object_store::ObjectMeta> = self.store.list(None).try_collect().await?;
        let mut groups: BTreeMap<String, FileGroup> = BTreeMap::new();
        let mut leftovers = Vec::new();
        for meta in metas {
            let location = meta.location.to_string();
            if location.starts_with(".hoodie/") {
                continue;
            }
            let (partition, file) = match location.rsplit_once('/') {
                Some((p, f)) => (p.to_string(), f.to_string()),
                None => (String::new(), location.clone()),
            };
            if file == ".hoodie_partition_metadata" {
                self.known_partitions.insert(partition);
                continue;
            }
            let Some((id, instant)) = parse_base_file_name(&file) else {
                continue;
            };
            if !self.timeline.is_visible(&instant) {
                leftovers.push(meta.location.clone());
                continue;
            }
            let group = groups.entry(id.clone()).or_insert_with(|| FileGroup {
                id: id.clone(),
                partition: partition.clone(),
                slices: Vec::new(),
            });
            group.slices.push(Slice {
                instant,
                file,
                bytes: meta.size,
                rows: 0,
            });
        }
        for path in leftovers.iter().filter(|_| recover) {
            tracing::info!(table = %self.name(), file = %path, "deleting a base file of a failed instant");
            delete_if_present(self.store.as_ref(), path).await?;
        }
        self.groups = groups
            .into_values()
            .map(|mut g| {
                g.slices.sort_by(|a, b| a.instant.cmp(&b.instant));
                g
            })
            .collect();
        self.by_id = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.id.clone(), i))
            .collect();
        Ok(())
    }

    /// Reads the key column of every latest slice into the index.
    async fn build_index(&mut self) -> Result<(), LakeError> {
        let jobs: Vec<(usize, Path)> = self
            .groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| Some((i, g.path_of(g.latest()?))))
            .collect();
        let store = self.store.clone();
        let mut results = futures::stream::iter(jobs)
            .map(|(i, path)| {
                let store = store.clone();
                async move {
                    let bytes = store.get(&path).await?.bytes().await?;
                    let keys = tokio::task::spawn_blocking(move || decode_keys(bytes))
                        .await
                        .map_err(|e| LakeError::Corrupt {
                            table: String::new(),
                            message: e.to_string(),
                        })?
                        .map_err(|source| LakeError::File {
                            path: path.to_string(),
                            source,
                        })?;
                    Ok::<_, LakeError>((i, keys.0))
                }
            })
            .buffer_unordered(4);
        while let Some(result) = results.next().await {
            let (i, keys) = result?;
            if let Some(slice) = self.groups.get_mut(i).and_then(|g| g.slices.last_mut()) {
                slice.rows = keys.len() as u64;
            }
            for k in keys {
                self.index.insert(key_hash(&k), i as u32);
            }
        }
        Ok(())
    }

    async fn claim(
        &mut self,
        action: &str,
        instant: &str,
        commit: Option<CommitMetadata>,
    ) -> Result<(), LakeError> {
        let entry = LogEntry {
            seq: self.seq + 1,
            action: action.to_string(),
            instant: instant.to_string(),
            writer: self.options.writer_id.clone(),
            commit,
        };
        match log::claim(self.store.as_ref(), &entry).await? {
            Claim::Won => {
                self.seq = entry.seq;
                Ok(())
            }
            Claim::Lost(_) => Err(LakeError::Conflict {
                table: self.name().to_string(),
                seq: entry.seq,
            }),
        }
    }

    /// Rolls back failed instants: fence them with a log entry, delete their
    /// files (markers first, then by name), then their instant files.
    async fn rollback(&mut self, pending: &[Instant]) -> Result<(), LakeError> {
        let times: Vec<&str> = pending.iter().map(|i| i.time.as_str()).collect();
        tracing::warn!(table = %self.name(), instants = ?times, "rolling back failed instants");
        self.claim("rollback", &times.join(","), None).await?;
        let metas: Vec<object_store::ObjectMeta> = self.store.list(None).try_collect().await?;
        for meta in &metas {
            let Some(file) = meta.location.filename() else {
                continue;
            };
            if let Some((_, instant)) = parse_base_file_name(file)
                && times.contains(&instant.as_str())
            {
                delete_if_present(self.store.as_ref(), &meta.location).await?;
            }
        }
        for instant in pending {
            let temp = Path::from(format!(".hoodie/.temp/{}", instant.time));
            let markers: Vec<object_store::ObjectMeta> =
                self.store.list(Some(&temp)).try_collect().await?;
            for m in markers {
                delete_if_present(self.store.as_ref(), &m.location).await?;
            }
            for state in [State::Inflight, State::Requested] {
                let name =
                    Instant::new(instant.time.clone(), instant.action.clone(), state).file_name();
                delete_if_present(self.store.as_ref(), &Path::from(format!(".hoodie/{name}")))
                    .await?;
            }
        }
        self.timeline = Self::list_hoodie(self.store.as_ref()).await?;
        Ok(())
    }

    /// Creates a requested or inflight instant file; another writer's file
    /// at the same instant (the same millisecond) is an error to retry.
    async fn create_instant_file(&self, instant: &Instant, body: Vec<u8>) -> Result<(), LakeError> {
        let path = Path::from(format!(".hoodie/{}", instant.file_name()));
        if put_new(self.store.as_ref(), &path, body).await? {
            Ok(())
        } else {
            Err(LakeError::Conflict {
                table: self.name().to_string(),
                seq: self.seq + 1,
            })
        }
    }

    /// Deletes an attempt's own files and instant files after it lost the
    /// commit race.
    async fn discard(
        &self,
        instant: &str,
        files: &[(String, String, String)],
    ) -> Result<(), LakeError> {
        for (partition, file, _) in files {
            let path = if partition.is_empty() {
                Path::from(file.as_str())
            } else {
                Path::from(format!("{partition}/{file}"))
            };
            delete_if_present(self.store.as_ref(), &path).await?;
        }
        let temp = Path::from(format!(".hoodie/.temp/{instant}"));
        let markers: Vec<object_store::ObjectMeta> =
            self.store.list(Some(&temp)).try_collect().await?;
        for m in markers {
            delete_if_present(self.store.as_ref(), &m.location).await?;
        }
        for state in [State::Inflight, State::Requested] {
            let name = Instant::new(instant, Action::Commit, state).file_name();
            delete_if_present(self.store.as_ref(), &Path::from(format!(".hoodie/{name}"))).await?;
        }
        Ok(())
    }

    async fn publish(&self, instant: &str, commit: &CommitMetadata) -> Result<(), LakeError> {
        let body = serde_json::to_vec_pretty(commit).unwrap_or_default();
        let path = Path::from(format!(
            ".hoodie/{}",
            Instant::new(instant, Action::Commit, State::Completed).file_name()
        ));
        if !put_new(self.store.as_ref(), &path, body).await? {
            return Err(LakeError::Corrupt {
                table: self.name().to_string(),
                message: format!(
                    "{instant}.commit exists with other content; a completed instant is never overwritten"
                ),
            });
        }
        let temp = Path::from(format!(".hoodie/.temp/{instant}"));
        let markers: Vec<object_store::ObjectMeta> =
            self.store.list(Some(&temp)).try_collect().await?;
        for m in markers {
            delete_if_present(self.store.as_ref(), &m.location).await?;
        }
        Ok(())
    }

    async fn write_properties(&mut self, schema: &LakeSchema) -> Result<(), LakeError> {
        if self.properties_written {
            return Ok(());
        }
        let props = TableProperties {
            name: self.options.layout.name.clone(),
            database: self.options.layout.database.clone(),
            record_key_fields: schema.key_fields(),
            partition_field: self.options.layout.partition.as_ref().map(|p| p.field()),
            precombine_field: POSITION.to_string(),
            create_schema: Some(self.options.layout.avro_schema(schema).to_string()),
        };
        let path = Path::from(".hoodie/hoodie.properties");
        match put(
            self.store.as_ref(),
            &path,
            props.to_text().into_bytes(),
            true,
        )
        .await
        {
            Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.properties_written = true;
        Ok(())
    }

    async fn ensure_partition_metadata(
        &mut self,
        partition: &str,
        instant: &str,
    ) -> Result<(), LakeError> {
        if self.known_partitions.contains(partition) {
            return Ok(());
        }
        let depth = if partition.is_empty() {
            0
        } else {
            partition.split('/').count()
        };
        let text = format!("#partition metadata\ncommitTime={instant}\npartitionDepth={depth}\n");
        let path = if partition.is_empty() {
            Path::from(".hoodie_partition_metadata")
        } else {
            Path::from(format!("{partition}/.hoodie_partition_metadata"))
        };
        match put(self.store.as_ref(), &path, text.into_bytes(), true).await {
            Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.known_partitions.insert(partition.to_string());
        Ok(())
    }

    /// Applies one batch as one commit.
    pub async fn commit(&mut self, mut batch: CommitBatch) -> Result<CommitOutcome, LakeError> {
        let table = self.name().to_string();
        let schema_err = |message: String| LakeError::Schema {
            table: table.clone(),
            message,
        };
        // 1. Evolve the lake schema over the batch's shapes.
        let mut schema = self.schema.clone();
        let mut rewrite_all = batch.truncate.is_some();
        for shape in &batch.shapes {
            match schema.as_mut() {
                None => schema = Some(LakeSchema::from_table(shape).map_err(schema_err)?),
                Some(s) => {
                    let evolution = s.absorb(shape).map_err(schema_err)?;
                    if !evolution.widened.is_empty() {
                        rewrite_all = true;
                    }
                    if !evolution.is_empty() {
                        tracing::info!(table = %table, added = ?evolution.added, dropped = ?evolution.dropped, widened = ?evolution.widened, "table schema evolves");
                    }
                }
            }
        }
        let Some(schema) = schema else {
            // Nothing was ever written and nothing arrives: nothing to commit.
            return Ok(CommitOutcome::default());
        };
        let arrow_schema: SchemaRef = Arc::new(
            self.options
                .layout
                .arrow_schema(&schema)
                .map_err(schema_err)?,
        );
        self.write_properties(&schema).await?;

        // 2. The instant.
        let instant = next_instant(now_millis(), self.timeline.last_time());
        let requested = Instant::new(instant.clone(), Action::Commit, State::Requested);
        self.create_instant_file(&requested, Vec::new()).await?;

        // 3. Route changes: existing keys to their file groups, new keys to inserts.
        let mut per_group: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut inserts: Vec<usize> = Vec::new();
        for (i, change) in batch.changes.iter().enumerate() {
            match self.index.get(&key_hash(&change.key)) {
                Some(g) => per_group.entry(*g as usize).or_default().push(i),
                None if change.row.is_some() => inserts.push(i),
                None => {}
            }
        }
        let mut affected: Vec<usize> = per_group.keys().copied().collect();
        if rewrite_all {
            affected = (0..self.groups.len())
                .filter(|g| self.groups.get(*g).and_then(FileGroup::latest).is_some())
                .collect();
        }

        // 4. Check stored keys and positions of the affected file groups.
        let mut outcome = CommitOutcome {
            instant: instant.clone(),
            ..Default::default()
        };
        // Per file group: row index → change index, rows to drop.
        let mut plans: HashMap<usize, GroupPlan> = HashMap::new();
        let mut moved_in: Vec<usize> = Vec::new();
        let store = self.store.clone();
        let key_jobs: Vec<(usize, Path)> = affected
            .iter()
            .filter_map(|g| {
                let group = self.groups.get(*g)?;
                Some((*g, group.path_of(group.latest()?)))
            })
            .collect();
        let mut key_reads = futures::stream::iter(key_jobs)
            .map(|(g, path)| {
                let store = store.clone();
                async move {
                    let bytes = store.get(&path).await?.bytes().await?;
                    let keys = tokio::task::spawn_blocking(move || decode_keys(bytes))
                        .await
                        .map_err(|e| LakeError::Corrupt {
                            table: String::new(),
                            message: e.to_string(),
                        })?
                        .map_err(|source| LakeError::File {
                            path: path.to_string(),
                            source,
                        })?;
                    Ok::<_, LakeError>((g, keys))
                }
            })
            .buffer_unordered(4);
        while let Some(result) = key_reads.next().await {
            let (g, (keys, positions)) = result?;
            let group_partition = self
                .groups
                .get(g)
                .map(|x| x.partition.clone())
                .unwrap_or_default();
            let mut plan = GroupPlan::default();
            let rows: HashMap<&str, usize> = keys
                .iter()
                .enumerate()
                .map(|(r, k)| (k.as_str(), r))
                .collect();
            if let Some(truncate) = batch.truncate {
                for (r, p) in positions.iter().enumerate() {
                    if parse_position(p).is_none_or(|p| p < truncate) {
                        plan.drop.insert(r);
                    }
                }
            }
            for ci in per_group.get(&g).cloned().unwrap_or_default() {
                let Some(change) = batch.changes.get(ci) else {
                    continue;
                };
                match rows.get(change.key.as_str()) {
                    None => {
                        // The hash routed a key this group does not hold.
                        if change.row.is_some() {
                            inserts.push(ci);
                        }
                    }
                    Some(r) if plan.drop.contains(r) => {
                        // Truncated: a change newer than the truncate inserts anew.
                        if change.row.is_some() {
                            inserts.push(ci);
                        }
                    }
                    Some(r) => {
                        let stored = positions.get(*r).and_then(|p| parse_position(p));
                        if stored.is_some_and(|s| s >= change.position) {
                            outcome.stale += 1;
                            continue;
                        }
                        match &change.row {
                            None => {
                                plan.drop.insert(*r);
                                outcome.deleted += 1;
                            }
                            Some(row) => {
                                let target = self
                                    .partition_of(&schema, change, row)
                                    .map_err(schema_err)?;
                                if target == group_partition {
                                    plan.replace.insert(*r, ci);
                                    outcome.updated += 1;
                                } else {
                                    plan.drop.insert(*r);
                                    plan.moved_out.insert(*r, ci);
                                    moved_in.push(ci);
                                    outcome.updated += 1;
                                }
                            }
                        }
                    }
                }
            }
            plans.insert(g, plan);
        }
        drop(key_reads);

        // A row that moves partition with an unchanged TOAST value takes
        // that value from its old file group before it is inserted elsewhere.
        let mut fills: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
        for (g, plan) in &plans {
            for (row, ci) in &plan.moved_out {
                let unchanged = batch
                    .changes
                    .get(*ci)
                    .and_then(|c| c.row.as_ref())
                    .is_some_and(|r| r.0.iter().any(|d| matches!(d, Datum::Unchanged)));
                if unchanged {
                    fills.entry(*g).or_default().push((*row, *ci));
                }
            }
        }
        for (g, moves) in fills {
            let Some(group) = self.groups.get(g) else {
                continue;
            };
            let Some(latest) = group.latest() else {
                continue;
            };
            let bytes = self
                .store
                .get(&group.path_of(latest))
                .await?
                .bytes()
                .await?;
            let stored = decode(bytes).map_err(|source| LakeError::File {
                path: latest.file.clone(),
                source,
            })?;
            let stored = project(&stored, &arrow_schema).map_err(|e| schema_err(e.to_string()))?;
            for (row_index, ci) in moves {
                let Some(change) = batch.changes.get_mut(ci) else {
                    continue;
                };
                let shape = change.schema.clone();
                let Some(row) = change.row.as_mut() else {
                    continue;
                };
                for (i, d) in row.0.iter_mut().enumerate() {
                    if !matches!(d, Datum::Unchanged) {
                        continue;
                    }
                    let Some(column) = shape.columns.get(i) else {
                        continue;
                    };
                    let Some(lake) = schema.columns.iter().find(|c| c.name == column.name) else {
                        continue;
                    };
                    let (Some(ty), Ok(col)) = (lake.ty(), arrow_schema.index_of(&lake.field))
                    else {
                        continue;
                    };
                    *d = datum_at(stored.column(col).as_ref(), row_index, &ty)
                        .unwrap_or(Datum::Null);
                }
            }
        }

        // 5. Place inserts (new keys and moved rows) by partition.
        let mut by_partition: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for ci in inserts.iter().chain(moved_in.iter()) {
            let Some(change) = batch.changes.get(*ci) else {
                continue;
            };
            let Some(row) = &change.row else { continue };
            let partition = self
                .partition_of(&schema, change, row)
                .map_err(schema_err)?;
            by_partition.entry(partition).or_default().push(*ci);
        }
        outcome.inserted = inserts.len() as u64;
        let avg_row_bytes = self.average_row_bytes(&batch, &schema, &arrow_schema);
        let target_rows = (self.options.target_file_bytes / avg_row_bytes.max(1)).max(1);
        let small_limit = self.options.target_file_bytes * 8 / 10;
        // New file groups: (partition, change indices).
        let mut new_groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (partition, mut list) in by_partition {
            // Small file groups of the partition take inserts first.
            let smalls: Vec<usize> = self
                .groups
                .iter()
                .enumerate()
                .filter(|(_, g)| g.partition == partition)
                .filter(|(_, g)| g.latest().is_some_and(|s| s.bytes < small_limit))
                .map(|(i, _)| i)
                .collect();
            for g in smalls {
                if list.is_empty() {
                    break;
                }
                let Some(slice) = self.groups.get(g).and_then(FileGroup::latest) else {
                    continue;
                };
                let room = (self.options.target_file_bytes.saturating_sub(slice.bytes)
                    / avg_row_bytes.max(1)) as usize;
                if room == 0 {
                    continue;
                }
                let take = room.min(list.len());
                let rest = list.split_off(take);
                plans.entry(g).or_default().appended.extend(list);
                list = rest;
            }
            while !list.is_empty() {
                let take = (target_rows as usize).min(list.len());
                let rest = list.split_off(take);
                new_groups.push((partition.clone(), list));
                list = rest;
            }
        }

        // 6. Inflight with the workload profile, then markers.
        let mut profile = CommitMetadata {
            operation_type: "UPSERT".into(),
            ..Default::default()
        };
        let mut planned_files: Vec<(String, String, String)> = Vec::new(); // (partition, file, marker type)
        for (g, plan) in &plans {
            let Some(group) = self.groups.get(*g) else {
                continue;
            };
            profile
                .partition_to_write_stats
                .entry(group.partition.clone())
                .or_default()
                .push(WriteStat {
                    file_id: group.id.clone(),
                    prev_commit: group
                        .latest()
                        .map(|s| s.instant.clone())
                        .unwrap_or_else(|| "null".into()),
                    num_update_writes: plan.replace.len() as i64,
                    num_inserts: plan.appended.len() as i64,
                    partition_path: group.partition.clone(),
                    ..Default::default()
                });
            planned_files.push((
                group.partition.clone(),
                base_file_name(&group.id, &instant),
                "MERGE".into(),
            ));
        }
        let new_ids: Vec<String> = new_groups.iter().map(|_| new_file_id()).collect();
        for ((partition, list), id) in new_groups.iter().zip(&new_ids) {
            profile
                .partition_to_write_stats
                .entry(partition.clone())
                .or_default()
                .push(WriteStat {
                    file_id: id.clone(),
                    prev_commit: "null".into(),
                    num_inserts: list.len() as i64,
                    partition_path: partition.clone(),
                    ..Default::default()
                });
            planned_files.push((
                partition.clone(),
                base_file_name(id, &instant),
                "CREATE".into(),
            ));
        }
        let inflight = Instant::new(instant.clone(), Action::Commit, State::Inflight);
        self.create_instant_file(
            &inflight,
            serde_json::to_vec_pretty(&profile).unwrap_or_default(),
        )
        .await?;
        let markers: String = planned_files
            .iter()
            .map(|(p, f, t)| {
                if p.is_empty() {
                    format!("{f}.marker.{t}\n")
                } else {
                    format!("{p}/{f}.marker.{t}\n")
                }
            })
            .collect();
        put(
            self.store.as_ref(),
            &Path::from(format!(".hoodie/.temp/{instant}/MARKERS.type")),
            b"TIMELINE_SERVER_BASED".to_vec(),
            false,
        )
        .await?;
        put(
            self.store.as_ref(),
            &Path::from(format!(".hoodie/.temp/{instant}/MARKERS0")),
            markers.into_bytes(),
            false,
        )
        .await?;
        crate::failpoint::hit("lake.before_data_files");

        // 7. Write base files.
        let mut stats: BTreeMap<String, Vec<WriteStat>> = BTreeMap::new();
        let mut new_slices: Vec<(usize, Slice, Vec<String>, Vec<String>)> = Vec::new(); // (group, slice, keys added, keys removed)
        let mut group_list: Vec<(usize, GroupPlan)> = plans.into_iter().collect();
        group_list.sort_by_key(|(g, _)| *g);
        for (g, plan) in group_list {
            let Some(group) = self.groups.get(g).cloned() else {
                continue;
            };
            let Some(latest) = group.latest().cloned() else {
                continue;
            };
            let file = base_file_name(&group.id, &instant);
            let path = group.path_of(&Slice {
                file: file.clone(),
                ..latest.clone()
            });
            let bytes = self
                .store
                .get(&group.path_of(&latest))
                .await?
                .bytes()
                .await?;
            let stored = decode(bytes).map_err(|source| LakeError::File {
                path: latest.file.clone(),
                source,
            })?;
            let stored = project(&stored, &arrow_schema).map_err(|e| schema_err(e.to_string()))?;
            let (merged, added, removed, carried) = self.merge_group(
                &schema,
                &arrow_schema,
                &stored,
                &plan,
                &batch,
                &instant,
                &file,
                &group.partition,
                g,
            )?;
            outcome.rows_carried += carried;
            self.ensure_partition_metadata(&group.partition, &instant)
                .await?;
            let written = self.write_file(&path, &merged).await?;
            outcome.files_written += 1;
            outcome.bytes_written += written;
            stats
                .entry(group.partition.clone())
                .or_default()
                .push(WriteStat {
                    file_id: group.id.clone(),
                    path: Some(path.to_string()),
                    prev_commit: latest.instant.clone(),
                    num_writes: merged.num_rows() as i64,
                    num_deletes: (plan.drop.len() - plan.moved_out.len()) as i64,
                    num_update_writes: plan.replace.len() as i64,
                    num_inserts: plan.appended.len() as i64,
                    total_write_bytes: written as i64,
                    partition_path: group.partition.clone(),
                    file_size_in_bytes: written as i64,
                    runtime_stats: Some(Default::default()),
                    ..Default::default()
                });
            new_slices.push((
                g,
                Slice {
                    instant: instant.clone(),
                    file,
                    bytes: written,
                    rows: merged.num_rows() as u64,
                },
                added,
                removed,
            ));
            crate::failpoint::hit("lake.between_data_files");
        }
        for ((partition, list), id) in new_groups.iter().zip(&new_ids) {
            let file = base_file_name(id, &instant);
            let path = if partition.is_empty() {
                Path::from(file.as_str())
            } else {
                Path::from(format!("{partition}/{file}"))
            };
            let future_index = self.groups.len();
            let (batch_out, keys) = self.new_rows_batch(
                &schema,
                &arrow_schema,
                list,
                &batch,
                &instant,
                &file,
                partition,
                future_index,
                None,
            )?;
            self.ensure_partition_metadata(partition, &instant).await?;
            let written = self.write_file(&path, &batch_out).await?;
            outcome.files_written += 1;
            outcome.bytes_written += written;
            stats.entry(partition.clone()).or_default().push(WriteStat {
                file_id: id.clone(),
                path: Some(path.to_string()),
                prev_commit: "null".into(),
                num_writes: batch_out.num_rows() as i64,
                num_inserts: batch_out.num_rows() as i64,
                total_write_bytes: written as i64,
                partition_path: partition.clone(),
                file_size_in_bytes: written as i64,
                runtime_stats: Some(Default::default()),
                ..Default::default()
            });
            let group = FileGroup {
                id: id.clone(),
                partition: partition.clone(),
                slices: Vec::new(),
            };
            self.groups.push(group);
            let g = self.groups.len() - 1;
            self.by_id.insert(id.clone(), g);
            new_slices.push((
                g,
                Slice {
                    instant: instant.clone(),
                    file,
                    bytes: written,
                    rows: batch_out.num_rows() as u64,
                },
                keys,
                Vec::new(),
            ));
            crate::failpoint::hit("lake.between_data_files");
        }
        crate::failpoint::hit("lake.after_data_files");

        // 8. The commit metadata, the claim, the publication.
        let mut extra = BTreeMap::new();
        extra.insert(
            SCHEMA_KEY.to_string(),
            self.options.layout.avro_schema(&schema).to_string(),
        );
        extra.insert(CHECKPOINT_KEY.to_string(), batch.checkpoint.to_text());
        extra.insert(
            LAKE_SCHEMA_KEY.to_string(),
            serde_json::to_string(&schema).unwrap_or_default(),
        );
        if let Some(p) = batch.position.or(self.position) {
            extra.insert(POSITION_KEY.to_string(), position_text(p));
        }
        let commit = CommitMetadata {
            partition_to_write_stats: stats,
            compacted: false,
            extra_metadata: extra,
            operation_type: "UPSERT".into(),
        };
        if let Err(e) = self.claim("commit", &instant, Some(commit.clone())).await {
            // Lost to another writer: remove what this attempt wrote. Nobody
            // else references these files, so no fencing entry is needed.
            if matches!(e, LakeError::Conflict { .. }) {
                let _ = self.discard(&instant, &planned_files).await;
            }
            return Err(e);
        }
        crate::failpoint::hit("lake.after_claim");
        self.publish(&instant, &commit).await?;
        crate::failpoint::hit("lake.after_commit");

        // 9. The new state.
        for (g, slice, added, removed) in new_slices {
            for k in removed {
                let h = key_hash(&k);
                if self.index.get(&h) == Some(&(g as u32)) {
                    self.index.remove(&h);
                }
            }
            for k in added {
                self.index.insert(key_hash(&k), g as u32);
            }
            if let Some(group) = self.groups.get_mut(g) {
                group.slices.push(slice);
            }
        }
        self.timeline = Self::list_hoodie(self.store.as_ref()).await?;
        self.schema = Some(schema);
        self.checkpoint = Some(batch.checkpoint);
        if batch.position.is_some() {
            self.position = batch.position;
        }
        self.clean().await?;
        Ok(outcome)
    }

    fn partition_of(
        &self,
        schema: &LakeSchema,
        change: &Change,
        row: &Row,
    ) -> Result<String, String> {
        let Some(spec) = &self.options.layout.partition else {
            return Ok(String::new());
        };
        let _ = schema;
        let index = change
            .schema
            .column_index(&spec.column)
            .ok_or_else(|| format!("partition column `{}` is not in the row", spec.column))?;
        let value = spec.value(row.get(index).unwrap_or(&Datum::Null))?;
        Ok(self.options.layout.partition_path(Some(&value)))
    }

    /// Average stored bytes per row: from the table, or from the batch's
    /// in-memory size for a new table.
    fn average_row_bytes(
        &self,
        batch: &CommitBatch,
        schema: &LakeSchema,
        arrow_schema: &SchemaRef,
    ) -> u64 {
        let (bytes, rows) = self
            .groups
            .iter()
            .filter_map(FileGroup::latest)
            .fold((0u64, 0u64), |(b, r), s| (b + s.bytes, r + s.rows));
        if rows > 1000 {
            return (bytes / rows).max(1);
        }
        let sample: Vec<usize> = (0..batch.changes.len().min(1000))
            .filter(|i| batch.changes.get(*i).is_some_and(|c| c.row.is_some()))
            .collect();
        if sample.is_empty() {
            return 1024;
        }
        match self.new_rows_batch(
            schema,
            arrow_schema,
            &sample,
            batch,
            "00000000000000000",
            "x",
            "",
            0,
            None,
        ) {
            // Parquet with compression takes about a third of Arrow's memory.
            Ok((b, _)) => ((b.get_array_memory_size() / 3) as u64 / sample.len() as u64).max(16),
            Err(_) => 1024,
        }
    }

    async fn write_file(&self, path: &Path, batch: &RecordBatch) -> Result<u64, LakeError> {
        let batch = batch.clone();
        let compression = self.options.compression;
        let path_text = path.to_string();
        let bytes = tokio::task::spawn_blocking(move || encode(&batch, compression))
            .await
            .map_err(|e| LakeError::Corrupt {
                table: String::new(),
                message: e.to_string(),
            })?
            .map_err(|source| LakeError::File {
                path: path_text,
                source,
            })?;
        let len = bytes.len() as u64;
        if bytes.len() > MULTIPART_THRESHOLD {
            // Large files go up in parts (S3 retries a part, not the file).
            let upload = self.store.put_multipart(path).await?;
            let mut writer =
                object_store::WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART);
            writer.put(Bytes::from(bytes));
            writer.finish().await?;
        } else {
            put(self.store.as_ref(), path, bytes, false).await?;
        }
        Ok(len)
    }

    /// Builds the rows of `changes` (by index into the batch) for a file.
    #[allow(clippy::too_many_arguments)]
    fn new_rows_batch(
        &self,
        schema: &LakeSchema,
        arrow_schema: &SchemaRef,
        changes: &[usize],
        batch: &CommitBatch,
        instant: &str,
        file: &str,
        partition: &str,
        group: usize,
        stored: Option<(&RecordBatch, &HashMap<usize, usize>)>,
    ) -> Result<(RecordBatch, Vec<String>), LakeError> {
        let table = self.name().to_string();
        let fail = |message: String| LakeError::Schema {
            table: table.clone(),
            message,
        };
        let rows: Vec<&Change> = changes
            .iter()
            .filter_map(|i| batch.changes.get(*i))
            .collect();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(arrow_schema.fields().len());
        let keys: Vec<String> = rows.iter().map(|c| c.key.clone()).collect();
        columns.push(repeated_string(instant, rows.len()));
        columns.push(Arc::new(StringArray::from_iter_values(
            (0..rows.len()).map(|n| format!("{instant}_{group}_{n}")),
        )));
        columns.push(Arc::new(StringArray::from_iter_values(keys.iter())));
        columns.push(repeated_string(partition, rows.len()));
        columns.push(repeated_string(file, rows.len()));
        for column in &schema.columns {
            let ty = column
                .ty()
                .ok_or_else(|| fail(format!("unknown type of `{}`", column.name)))?;
            let mut values: Vec<Datum> = Vec::with_capacity(rows.len());
            for (change_index, change) in changes.iter().zip(&rows) {
                let source_index = change.schema.column_index(&column.name);
                let mut datum = match (&change.row, source_index) {
                    (Some(row), Some(i)) if !column.dropped => {
                        row.get(i).cloned().unwrap_or(Datum::Null)
                    }
                    _ => Datum::Null,
                };
                if matches!(datum, Datum::Unchanged) {
                    // Keep the stored value of an unchanged TOAST column.
                    datum = stored
                        .and_then(|(batch, rows)| Some((batch, *rows.get(change_index)?)))
                        .and_then(|(batch, row)| {
                            let col = arrow_schema.index_of(&column.field).ok()?;
                            datum_at(batch.column(col).as_ref(), row, &ty)
                        })
                        .unwrap_or(Datum::Null);
                }
                values.push(datum);
            }
            let refs: Vec<&Datum> = values.iter().collect();
            columns.push(array_of(&column.name, &ty, &refs).map_err(|e| fail(e.to_string()))?);
        }
        columns.push(Arc::new(StringArray::from_iter_values(
            rows.iter().map(|c| position_text(c.position)),
        )));
        if self.options.layout.partition.is_some() {
            let value = partition
                .split_once('=')
                .map(|(_, v)| v)
                .unwrap_or(partition);
            columns.push(repeated_string(value, rows.len()));
        }
        let out =
            RecordBatch::try_new(arrow_schema.clone(), columns).map_err(|e| fail(e.to_string()))?;
        Ok((out, keys))
    }

    /// The new content of an existing file group.
    #[allow(clippy::too_many_arguments)]
    fn merge_group(
        &self,
        schema: &LakeSchema,
        arrow_schema: &SchemaRef,
        stored: &RecordBatch,
        plan: &GroupPlan,
        batch: &CommitBatch,
        instant: &str,
        file: &str,
        partition: &str,
        group: usize,
    ) -> Result<(RecordBatch, Vec<String>, Vec<String>, u64), LakeError> {
        let table = self.name().to_string();
        let fail = |message: String| LakeError::Schema {
            table: table.clone(),
            message,
        };
        let keys = stored
            .column_by_name(layout::RECORD_KEY)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
            .ok_or_else(|| fail("a base file without record keys".into()))?;
        let keep: BooleanArray = (0..stored.num_rows())
            .map(|r| Some(!plan.drop.contains(&r) && !plan.replace.contains_key(&r)))
            .collect();
        let carried = arrow_select::filter::filter_record_batch(stored, &keep)
            .map_err(|e| fail(e.to_string()))?;
        let carried_rows = carried.num_rows() as u64;
        // Carried rows keep their commit time and sequence number; only the
        // file name changes.
        let mut carried_columns = carried.columns().to_vec();
        if let Ok(i) = arrow_schema.index_of(FILE_NAME)
            && let Some(c) = carried_columns.get_mut(i)
        {
            *c = repeated_string(file, carried.num_rows());
        }
        let carried = RecordBatch::try_new(arrow_schema.clone(), carried_columns)
            .map_err(|e| fail(e.to_string()))?;
        // Replaced rows (updates) keep unchanged TOAST values from storage.
        let mut replaced: Vec<(usize, usize)> =
            plan.replace.iter().map(|(r, c)| (*r, *c)).collect();
        replaced.sort_unstable();
        let stored_rows: HashMap<usize, usize> = replaced.iter().map(|(r, c)| (*c, *r)).collect();
        let mut changes: Vec<usize> = replaced.iter().map(|(_, c)| *c).collect();
        changes.extend(plan.appended.iter().copied());
        let (fresh, added) = self.new_rows_batch(
            schema,
            arrow_schema,
            &changes,
            batch,
            instant,
            file,
            partition,
            group,
            Some((stored, &stored_rows)),
        )?;
        let merged = arrow_select::concat::concat_batches(arrow_schema, [&carried, &fresh])
            .map_err(|e| fail(e.to_string()))?;
        let removed: Vec<String> = plan
            .drop
            .iter()
            .filter(|r| !plan.replace.contains_key(r))
            .filter(|&r| keys.is_valid(*r))
            .map(|r| keys.value(*r).to_string())
            .collect();
        Ok((merged, added, removed, carried_rows))
    }

    /// The cleaner: keeps the slices the last `keep_commits` commits need,
    /// deletes older ones, and drops instants of commits whose slices are all
    /// gone (archival without an archive: Hudi readers treat base files older
    /// than the active timeline as committed).
    async fn clean(&mut self) -> Result<(), LakeError> {
        let commits: Vec<String> = self
            .timeline
            .completed_commits()
            .map(|i| i.time.clone())
            .collect();
        let keep = self.options.keep_commits.max(1);
        if commits.len() <= keep {
            return Ok(());
        }
        let oldest_kept = commits
            .get(commits.len() - keep)
            .cloned()
            .unwrap_or_default();
        let mut doomed: Vec<Path> = Vec::new();
        for group in &mut self.groups {
            // The newest slice at or before the oldest kept commit still
            // serves time travel to it; everything older goes.
            let serving = group.slices.iter().rposition(|s| s.instant <= oldest_kept);
            if let Some(serving) = serving {
                let old: Vec<Slice> = group.slices.drain(..serving).collect();
                for s in old {
                    let path = if group.partition.is_empty() {
                        Path::from(s.file.as_str())
                    } else {
                        Path::from(format!("{}/{}", group.partition, s.file))
                    };
                    doomed.push(path);
                }
            }
        }
        if doomed.is_empty() {
            return Ok(());
        }
        for path in &doomed {
            delete_if_present(self.store.as_ref(), path).await?;
        }
        // Archive instants well behind the retained window.
        let archive_before = commits.len().saturating_sub(keep + 20);
        if archive_before > 0 {
            let old: Vec<String> = commits.iter().take(archive_before).cloned().collect();
            for time in old {
                for state in [State::Completed, State::Inflight, State::Requested] {
                    let name = Instant::new(time.clone(), Action::Commit, state).file_name();
                    delete_if_present(self.store.as_ref(), &Path::from(format!(".hoodie/{name}")))
                        .await?;
                }
            }
            self.timeline = Self::list_hoodie(self.store.as_ref()).await?;
        }
        Ok(())
    }
}

/// What happens to one existing file group in a commit.
#[derive(Debug, Default)]
struct GroupPlan {
    /// Stored rows removed (deletes, moves out, truncated).
    drop: HashSet<usize>,
    /// Stored row → the change that replaces it in place.
    replace: HashMap<usize, usize>,
    /// Stored row → the change that moves it to another partition.
    moved_out: HashMap<usize, usize>,
    /// Inserts appended to this (small) file group.
    appended: Vec<usize>,
}
