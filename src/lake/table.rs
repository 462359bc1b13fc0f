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
use std::sync::Arc;

use arrow_schema::SchemaRef;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::actions::{self, AvroFileError, PartitionFiles};
use super::batch::{Restate, project_restated, view_schema};
use super::commit::{
    EncodeError, MergeCounts, Merged, WriteContext, build_rows, by_partition, carry, merge_group,
};
use super::files::{
    FileError, Ranges, Spliced, base_file_name, decode_base_file, decode_columns, decode_key_slots,
    footer_guess, footer_metadata, footer_size, key_chunks, new_file_id, parse_base_file_name,
    stored_metadata, write_token,
};
use super::index::{KeyIndex, Slot};
use super::layout::{LakeSchema, POSITION, RECORD_KEY, TableLayout, parse_position, position_text};
use super::log::{self, Claim, LogEntry};
use super::metadata::{
    CHECKPOINT_KEY, Checkpoint, CommitMetadata, LAKE_SCHEMA_KEY, POSITION_KEY, SCHEMA_KEY,
    STAMPS_KEY, WriteStat,
};
use super::properties::TableProperties;
use super::splice::{self, SpliceError};
use super::timeline::{Action, Instant, State, Timeline, next_instant, now_millis};
use crate::config::model::ParquetCompression;
use crate::event::change::Position;
use crate::event::packed::PackedRow;
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
    /// Packed: a commit holds every change of its batch at once.
    pub row: Option<PackedRow>,
    /// The source shape of `row`.
    pub schema: Arc<TableSchema>,
}

/// What one commit applies.
#[derive(Debug, Clone)]
pub struct CommitBatch {
    /// Source shapes seen in the batch, oldest first (for schema evolution).
    pub shapes: Vec<Arc<TableSchema>>,
    /// Shared, so that a caller keeps them for a retry without a copy.
    pub changes: Arc<Vec<Change>>,
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
    /// Files rewritten page by page ([`super::splice`]), not through Arrow.
    pub files_spliced: u64,
    pub files_written: u64,
    pub bytes_written: u64,
}

/// An open table and its writer.
pub struct Table {
    store: Arc<dyn ObjectStore>,
    options: TableOptions,
    timeline: Timeline,
    schema: Option<LakeSchema>,
    groups: Vec<FileGroup>,
    by_id: HashMap<String, usize>,
    index: KeyIndex,
    checkpoint: Option<Checkpoint>,
    position: Option<Position>,
    seq: u64,
    properties_written: bool,
    known_partitions: HashSet<String>,
    /// Instants this writer started and did not complete (a store error
    /// midway): rolled back before its next commit, not left for a restart
    /// (archival must never pass them while their files remain).
    failed: Vec<String>,
    /// Base files of instants absent from the timeline when the table was
    /// opened, newer than its last completed commit: a live writer's
    /// attempt, or a crash's leftovers. Deleted once a later commit
    /// completes (no attempt older than a completed commit can still win).
    strays: Vec<(String, Path)>,
    /// Loaded from the store (see [`Table::unopened`]).
    opened: bool,
}

async fn put(
    store: &dyn ObjectStore,
    path: &Path,
    body: impl Into<Bytes>,
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
            PutPayload::from(body.into()),
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

    /// What a query engine needs to register the table, read without
    /// changing anything: the schema of the latest completed commit and the
    /// partitions (`.hoodie_partition_metadata` present). `None` while the
    /// table has no completed commit.
    pub async fn describe(
        store: &dyn ObjectStore,
    ) -> Result<Option<(LakeSchema, Vec<String>)>, LakeError> {
        let timeline = Self::list_hoodie(store).await?;
        let Some(last) = timeline.completed_commits().last().map(|i| i.time.clone()) else {
            return Ok(None);
        };
        let Some(schema) = Self::read_commit(store, &last)
            .await?
            .and_then(|c| c.lake_schema())
        else {
            return Ok(None);
        };
        let metas: Vec<object_store::ObjectMeta> = store.list(None).try_collect().await?;
        let mut partitions: Vec<String> = metas
            .iter()
            .filter_map(|m| {
                m.location
                    .as_ref()
                    .strip_suffix("/.hoodie_partition_metadata")
                    .map(str::to_string)
            })
            .collect();
        partitions.sort();
        Ok(Some((schema, partitions)))
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
        // Strays are not carried: another writer moved on, and what they
        // were may have completed and been archived since.
        let mut fresh = Self::load(self.store.clone(), self.options.clone(), false).await?;
        fresh.failed = std::mem::take(&mut self.failed);
        *self = fresh;
        Ok(())
    }

    /// Rolls back this writer's own failed attempts, if any are still
    /// pending (one that lost the commit race discarded itself).
    async fn roll_back_failed(&mut self) -> Result<(), LakeError> {
        if self.failed.is_empty() {
            return Ok(());
        }
        self.timeline = Self::list_hoodie(self.store.as_ref()).await?;
        let pending: Vec<Instant> = self
            .timeline
            .pending_commits()
            .filter(|i| self.failed.contains(&i.time))
            .cloned()
            .collect();
        if !pending.is_empty() {
            self.rollback(&pending).await?;
        }
        self.failed.clear();
        Ok(())
    }

    /// Deletes the strays no attempt can still commit: older than the last
    /// completed commit, and not (or no longer) pending.
    async fn sweep_strays(&mut self) -> Result<(), LakeError> {
        let Some(last) = self
            .timeline
            .completed_commits()
            .last()
            .map(|i| i.time.clone())
        else {
            return Ok(());
        };
        let mut kept = Vec::new();
        for (instant, path) in std::mem::take(&mut self.strays) {
            // Completed since (or completed and archived): not a stray.
            if self.timeline.is_visible(&instant) {
                continue;
            }
            let pending = self.timeline.pending_commits().any(|i| i.time == instant);
            if instant < last && !pending {
                tracing::info!(table = %self.name(), file = %path, "deleting a base file of a failed instant");
                delete_if_present(self.store.as_ref(), &path).await?;
            } else {
                kept.push((instant, path));
            }
        }
        self.strays = kept;
        Ok(())
    }

    /// Reloads if another writer completed a commit since this one read the
    /// table (one listing of `.hoodie/` when nothing changed).
    pub async fn refresh(&mut self) -> Result<(), LakeError> {
        let listed = Self::list_hoodie(self.store.as_ref()).await?;
        let last = |t: &Timeline| t.completed_commits().last().map(|i| i.time.clone());
        if last(&listed) != last(&self.timeline) {
            self.reload().await?;
        }
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
        let mut table = Table::unopened(store, options);
        table.properties_written = properties_written;
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
        if recover {
            table.drop_pending_table_services().await?;
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
        table.opened = true;
        Ok(table)
    }

    /// A table that could not be opened (a damaged file, say): it holds
    /// nothing and refuses commits; it keeps a stopped table's place.
    pub fn unopened(store: Arc<dyn ObjectStore>, options: TableOptions) -> Table {
        Table {
            store,
            options,
            timeline: Timeline::default(),
            schema: None,
            groups: Vec::new(),
            by_id: HashMap::new(),
            index: KeyIndex::default(),
            checkpoint: None,
            position: None,
            seq: 0,
            properties_written: false,
            known_partitions: HashSet::new(),
            failed: Vec::new(),
            strays: Vec::new(),
            opened: false,
        }
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
                leftovers.push((instant, meta.location.clone()));
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
        if recover {
            // Pending instants were rolled back: what is left belongs to no
            // instant of the listing, and may be a live writer's attempt
            // that started after it. Only one older than a completed commit
            // cannot commit any more.
            self.strays = leftovers;
            self.sweep_strays().await?;
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

    /// Reads the key column of every latest slice into the index (only
    /// that column and the footer of each file, see [`read_key_slots`]).
    async fn build_index(&mut self) -> Result<(), LakeError> {
        let jobs: Vec<(usize, Path, u64)> = self
            .groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                let slice = g.latest()?;
                Some((i, g.path_of(slice), slice.bytes))
            })
            .collect();
        let store = self.store.clone();
        // A file's reads hold a footer and a key column, a few MB at most:
        // many files are read at once, as S3 answers each in its own time.
        let mut results =
            futures::stream::iter(jobs)
                .map(|(i, path, size)| {
                    let store = store.clone();
                    let guess = footer_guess(size);
                    async move {
                        Ok::<_, LakeError>((i, read_key_slots(store, path, size, guess).await?))
                    }
                })
                .buffer_unordered(8);
        while let Some(result) = results.next().await {
            let (i, slots) = result?;
            if let Some(slice) = self.groups.get_mut(i).and_then(|g| g.slices.last_mut()) {
                slice.rows = slots.len() as u64;
            }
            if self.index.is_empty() {
                // Avoid growing the tables ten times over: size them from
                // the first file, in its proportion of integer keys.
                let ints = slots.iter().filter(|s| matches!(s, Slot::Int(_))).count();
                let files = self.groups.len() + 1;
                self.index.reserve(
                    ints.saturating_mul(files),
                    (slots.len() - ints).saturating_mul(files),
                );
            }
            for slot in slots {
                self.index.insert_slot(slot, i as u32);
            }
        }
        if !self.index.is_empty() {
            tracing::info!(
                table = %self.name(),
                keys = self.index.len(),
                index_mb = self.index.heap_bytes() as f64 / 1e6,
                "key index built"
            );
        }
        Ok(())
    }

    /// Its key index's keys and the bytes they take.
    pub fn index_size(&self) -> (usize, usize) {
        (self.index.len(), self.index.heap_bytes())
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

    /// Rolls back failed instants: fence them with a log entry, then one
    /// rollback instant per failed commit, as Hudi records it: the plan in
    /// `.rollback.requested`, an empty `.rollback.inflight`, the failed
    /// commit's base files and markers deleted, its instant files deleted,
    /// and the result in `.rollback`. A crash midway leaves a pending
    /// rollback, which the next recovery deletes and redoes.
    async fn rollback(&mut self, pending: &[Instant]) -> Result<(), LakeError> {
        let times: Vec<&str> = pending.iter().map(|i| i.time.as_str()).collect();
        tracing::warn!(table = %self.name(), instants = ?times, "rolling back failed instants");
        self.claim("rollback", &times.join(","), None).await?;
        let metas: Vec<object_store::ObjectMeta> = self.store.list(None).try_collect().await?;
        for instant in pending {
            let started = now_millis();
            let time = next_instant(started, self.timeline.last_time());
            let mut files: BTreeMap<String, PartitionFiles> = BTreeMap::new();
            let mut doomed: Vec<&Path> = Vec::new();
            for meta in &metas {
                let Some(file) = meta.location.filename() else {
                    continue;
                };
                if let Some((_, written_by)) = parse_base_file_name(file)
                    && written_by == instant.time
                {
                    let location = meta.location.to_string();
                    let partition = location
                        .rsplit_once('/')
                        .map(|(p, _)| p.to_string())
                        .unwrap_or_default();
                    let entry = files.entry(partition).or_default();
                    entry.names.push(file.to_string());
                    entry.paths.push(location);
                    doomed.push(&meta.location);
                }
            }
            let plan = actions::rollback_plan(&instant.time, &files).map_err(|e| self.avro(e))?;
            self.create_instant_file(
                &Instant::new(&time, Action::Rollback, State::Requested),
                plan,
            )
            .await?;
            self.create_instant_file(
                &Instant::new(&time, Action::Rollback, State::Inflight),
                Vec::new(),
            )
            .await?;
            for path in doomed {
                delete_if_present(self.store.as_ref(), path).await?;
            }
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
            let metadata =
                actions::rollback_metadata(&time, now_millis() - started, &instant.time, &files)
                    .map_err(|e| self.avro(e))?;
            self.create_instant_file(
                &Instant::new(&time, Action::Rollback, State::Completed),
                metadata,
            )
            .await?;
            self.timeline = Self::list_hoodie(self.store.as_ref()).await?;
        }
        Ok(())
    }

    /// Deletes the instant files of cleans and rollbacks a crash left
    /// pending; the cleaner and the rollback redo their work from the
    /// table's state.
    async fn drop_pending_table_services(&mut self) -> Result<(), LakeError> {
        let pending: Vec<Instant> = self.timeline.pending_table_services().cloned().collect();
        if pending.is_empty() {
            return Ok(());
        }
        for instant in &pending {
            tracing::info!(table = %self.name(), instant = %instant, "dropping a clean or rollback left pending by a crash");
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

    fn avro(&self, e: AvroFileError) -> LakeError {
        LakeError::Corrupt {
            table: self.name().to_string(),
            message: e.to_string(),
        }
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
    async fn discard(&self, instant: &str, files: &[Path]) -> Result<(), LakeError> {
        for path in files {
            delete_if_present(self.store.as_ref(), path).await?;
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

    /// The lake schema after absorbing `shapes` in order, its Arrow schema,
    /// and what it means for stored slices (a widened, renamed or re-added
    /// column: every file is then rewritten); `None`
    /// for a table without schema and no shapes. An error names the change
    /// the table cannot absorb.
    fn evolve(
        &self,
        shapes: &[&TableSchema],
    ) -> Result<Option<(LakeSchema, SchemaRef, Restate)>, String> {
        let mut schema = self.schema.clone();
        let mut restate = Restate::default();
        for shape in shapes {
            match schema.as_mut() {
                None => schema = Some(LakeSchema::from_table(shape)?),
                Some(s) => restate.absorb(&s.absorb(shape)?),
            }
        }
        let Some(schema) = schema else {
            return Ok(None);
        };
        let arrow_schema: SchemaRef = Arc::new(self.options.layout.arrow_schema(&schema)?);
        Ok(Some((schema, arrow_schema, restate)))
    }

    /// Whether a commit of changes in `shapes` would absorb them: `Err`
    /// names the change the table cannot absorb (a changed key, a narrowed
    /// or incompatible column), before anything is written.
    pub fn check_shapes(&self, shapes: &[&TableSchema]) -> Result<(), String> {
        self.evolve(shapes).map(|_| ())
    }

    /// Applies one batch as one commit.
    pub async fn commit(&mut self, batch: CommitBatch) -> Result<CommitOutcome, LakeError> {
        let table = self.name().to_string();
        if !self.opened {
            return Err(LakeError::Corrupt {
                table,
                message: "the table could not be opened; nothing is committed to it".into(),
            });
        }
        let schema_err = |message: String| LakeError::Schema {
            table: table.clone(),
            message,
        };
        // 1. Evolve the lake schema over the batch's shapes.
        let shapes: Vec<&TableSchema> = batch.shapes.iter().map(|s| s.as_ref()).collect();
        let Some((schema, arrow_schema, restate)) = self.evolve(&shapes).map_err(schema_err)?
        else {
            return Ok(CommitOutcome::default());
        };
        let rewrite_all = batch.truncate.is_some() || restate.rewrites_all();
        if let Some(old) = self.schema.as_ref().filter(|old| **old != schema) {
            let columns = |s: &LakeSchema| -> Vec<String> {
                s.columns
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {}{}",
                            c.name,
                            c.ty_name,
                            if c.dropped { " (dropped)" } else { "" }
                        )
                    })
                    .collect()
            };
            tracing::info!(table = %table, from = ?columns(old), to = ?columns(&schema), widened = restate.widened, renamed = ?restate.renamed, reset = ?restate.reset, "table schema evolves");
        }
        self.write_properties(&schema).await?;

        // 2. The instant.
        self.roll_back_failed().await?;
        let instant = next_instant(now_millis(), self.timeline.last_time());
        self.create_instant_file(
            &Instant::new(instant.clone(), Action::Commit, State::Requested),
            Vec::new(),
        )
        .await?;
        self.failed.push(instant.clone());

        // 3. Route changes: existing keys to their file groups, new keys to inserts.
        let changes = batch.changes;
        let mut per_group: Vec<Vec<usize>> = vec![Vec::new(); self.groups.len()];
        let mut inserts: Vec<usize> = Vec::new();
        for (i, (change, group)) in changes.iter().zip(self.locate(&changes)).enumerate() {
            match group {
                // The index names only groups of the table.
                Some(g) => {
                    if let Some(list) = per_group.get_mut(g as usize) {
                        list.push(i);
                    }
                }
                None if change.row.is_some() => inserts.push(i),
                None => {}
            }
        }
        let mut routed: BTreeMap<usize, Vec<usize>> = per_group
            .into_iter()
            .enumerate()
            .filter(|(_, list)| !list.is_empty())
            .collect();
        if rewrite_all {
            for (g, group) in self.groups.iter().enumerate() {
                if group.latest().is_some() {
                    routed.entry(g).or_default();
                }
            }
        }
        let token = write_token();
        let encoding = super::files::Encoding::of(self.options.compression, &schema);
        let ctx = Arc::new(WriteContext {
            instant: instant.clone(),
            token: token.clone(),
            schema: schema.clone(),
            arrow_schema: arrow_schema.clone(),
            layout: self.options.layout.clone(),
            changes: changes.clone(),
            truncate: batch.truncate,
            encoding: encoding.clone(),
            restate,
        });

        // 4. New keys by partition: small file groups first, then new groups.
        let avg_row_bytes = self.average_row_bytes(&ctx, &inserts);
        let mut appended: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut new_groups: Vec<(String, Vec<usize>)> = Vec::new();
        let inserts_by_partition = by_partition(
            &self.options.layout,
            inserts
                .iter()
                .filter_map(|ci| Some((*ci, changes.get(*ci)?))),
        )
        .map_err(schema_err)?;
        for (partition, list) in inserts_by_partition {
            self.place_inserts(
                &partition,
                list,
                avg_row_bytes,
                &mut appended,
                &mut new_groups,
            );
        }

        // 5. The inflight profile and the markers of the first wave.
        let mut jobs: Vec<FileJob> = Vec::new();
        let group_ids: Vec<usize> = routed
            .keys()
            .chain(appended.keys())
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for g in group_ids {
            let Some(group) = self.groups.get(g) else {
                continue;
            };
            let Some(latest) = group.latest() else {
                continue;
            };
            jobs.push(FileJob::Existing {
                group: g,
                file_id: group.id.clone(),
                partition: group.partition.clone(),
                prev: latest.clone(),
                source: group.path_of(latest),
                routed: routed.remove(&g).unwrap_or_default(),
                appended: appended.remove(&g).unwrap_or_default(),
            });
        }
        for (partition, list) in new_groups {
            jobs.push(FileJob::New {
                file_id: new_file_id(),
                partition,
                rows: list,
            });
        }
        let mut profile = CommitMetadata {
            operation_type: "UPSERT".into(),
            ..Default::default()
        };
        for job in &jobs {
            profile
                .partition_to_write_stats
                .entry(job.partition().to_string())
                .or_default()
                .push(job.profile());
        }
        self.create_instant_file(
            &Instant::new(instant.clone(), Action::Commit, State::Inflight),
            serde_json::to_vec_pretty(&profile).unwrap_or_default(),
        )
        .await?;
        put(
            self.store.as_ref(),
            &Path::from(format!(".hoodie/.temp/{instant}/MARKERS.type")),
            b"TIMELINE_SERVER_BASED".to_vec(),
            false,
        )
        .await?;
        self.write_markers(&instant, &token, 0, &jobs).await?;
        crate::failpoint::hit("lake.before_data_files");

        // 6. The first wave: rewritten and new file groups.
        let mut written: Vec<Written> = Vec::new();
        let mut elsewhere: Vec<Change> = Vec::new();
        for partition in jobs
            .iter()
            .map(|j| j.partition().to_string())
            .collect::<HashSet<_>>()
        {
            self.ensure_partition_metadata(&partition, &instant).await?;
        }
        let mut outcome = CommitOutcome {
            instant: instant.clone(),
            inserted: inserts.len() as u64,
            ..Default::default()
        };
        let first_wave = jobs.len();
        let first = self.run_jobs(&ctx, jobs, 0).await?;
        for w in first {
            elsewhere.extend(w.elsewhere.iter().cloned());
            written.push(w);
        }
        // 7. The second wave: moved rows and keys a group did not hold, into
        // new file groups of their partitions.
        if !elsewhere.is_empty() {
            let extra = Arc::new(elsewhere);
            let moved_by_partition =
                by_partition(&self.options.layout, extra.iter().enumerate()).map_err(schema_err)?;
            let ctx2 = Arc::new(WriteContext {
                instant: instant.clone(),
                token: token.clone(),
                schema: schema.clone(),
                arrow_schema: arrow_schema.clone(),
                layout: self.options.layout.clone(),
                changes: extra.clone(),
                truncate: None,
                encoding,
                restate: Restate::default(),
            });
            let target_rows =
                (self.options.target_file_bytes / avg_row_bytes.max(1)).max(1) as usize;
            let mut second = Vec::new();
            for (partition, list) in moved_by_partition {
                for chunk in list.chunks(target_rows) {
                    second.push(FileJob::New {
                        file_id: new_file_id(),
                        partition: partition.clone(),
                        rows: chunk.to_vec(),
                    });
                }
                self.ensure_partition_metadata(&partition, &instant).await?;
            }
            self.write_markers(&instant, &token, 1, &second).await?;
            written.extend(self.run_jobs(&ctx2, second, first_wave).await?);
        }
        crate::failpoint::hit("lake.after_data_files");

        // 8. The commit metadata, the claim, the publication.
        let mut stats: BTreeMap<String, Vec<WriteStat>> = BTreeMap::new();
        for w in &written {
            outcome.files_written += 1;
            outcome.bytes_written += w.bytes;
            outcome.updated += w.counts.updated;
            outcome.deleted += w.counts.deleted;
            outcome.stale += w.counts.stale;
            outcome.rows_carried += w.counts.carried;
            outcome.files_spliced += w.counts.spliced;
            stats
                .entry(w.partition.clone())
                .or_default()
                .push(w.stat.clone());
        }
        let mut extra_metadata = BTreeMap::new();
        extra_metadata.insert(
            SCHEMA_KEY.to_string(),
            self.options.layout.avro_schema(&schema).to_string(),
        );
        extra_metadata.insert(CHECKPOINT_KEY.to_string(), batch.checkpoint.to_text());
        if let Some(stamps) = batch.checkpoint.stamps_text() {
            extra_metadata.insert(STAMPS_KEY.to_string(), stamps);
        }
        extra_metadata.insert(
            LAKE_SCHEMA_KEY.to_string(),
            serde_json::to_string(&schema).unwrap_or_default(),
        );
        // The source position reached never goes back (a batch of late
        // events from a lagging partition ends below it).
        let reached = batch.position.max(self.position);
        if let Some(p) = reached {
            extra_metadata.insert(POSITION_KEY.to_string(), position_text(p));
        }
        let commit = CommitMetadata {
            partition_to_write_stats: stats,
            compacted: false,
            extra_metadata,
            operation_type: "UPSERT".into(),
        };
        if let Err(e) = self.claim("commit", &instant, Some(commit.clone())).await {
            // Lost to another writer: remove what this attempt wrote. Nobody
            // else references these files, so no fencing entry is needed.
            if matches!(e, LakeError::Conflict { .. }) {
                let files: Vec<Path> = written.iter().map(|w| w.path.clone()).collect();
                let _ = self.discard(&instant, &files).await;
            }
            return Err(e);
        }
        crate::failpoint::hit("lake.after_claim");
        self.publish(&instant, &commit).await?;
        crate::failpoint::hit("lake.after_commit");

        // 9. The new state.
        let mut moves = Vec::with_capacity(written.len());
        for w in written {
            let g = match w.group {
                Some(g) => g,
                None => {
                    self.groups.push(FileGroup {
                        id: w.file_id.clone(),
                        partition: w.partition.clone(),
                        slices: Vec::new(),
                    });
                    self.by_id.insert(w.file_id.clone(), self.groups.len() - 1);
                    self.groups.len() - 1
                }
            };
            if let Some(group) = self.groups.get_mut(g) {
                group.slices.push(w.slice);
            }
            moves.push((g as u32, w.removed, w.added, w.changes));
        }
        let removed: Vec<(&str, u32)> = (moves.iter())
            .flat_map(|(g, removed, ..)| removed.iter().map(|k| (k.as_str(), *g)))
            .collect();
        let added: Vec<(&str, u32)> = (moves.iter())
            .flat_map(|(g, _, added, changes)| {
                (added.iter().filter_map(|i| changes.get(*i))).map(|c| (c.key.as_str(), *g))
            })
            .collect();
        self.index.update(&removed, &added);
        drop((removed, added));
        self.timeline = Self::list_hoodie(self.store.as_ref()).await?;
        self.failed.retain(|t| *t != instant);
        self.schema = Some(schema);
        self.checkpoint = Some(batch.checkpoint);
        self.position = reached;
        self.sweep_strays().await?;
        self.clean().await?;
        // Freeing a batch of a million changes takes a while: not on the
        // async thread. Every file job's result holds the batch too, so they
        // go along: the last reference decides which thread frees it.
        tokio::task::spawn_blocking(move || drop((changes, ctx, moves)));
        Ok(outcome)
    }

    /// The file group of each change's key, if the table holds it. A large
    /// batch is looked up on every core: each lookup is a cache miss in an
    /// index of millions of keys.
    fn locate(&self, changes: &[Change]) -> Vec<Option<u32>> {
        const PER_THREAD: usize = 100_000;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(changes.len() / PER_THREAD)
            .max(1);
        let index = &self.index;
        let lookup = |part: &[Change]| -> Vec<Option<u32>> {
            part.iter().map(|c| index.get(&c.key)).collect()
        };
        if threads == 1 {
            return lookup(changes);
        }
        let chunk = changes.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = changes
                .chunks(chunk)
                .map(|part| scope.spawn(move || lookup(part)))
                .collect();
            let mut out = Vec::with_capacity(changes.len());
            for part in parts {
                // A lookup cannot panic; were it to, the commit fails whole.
                match part.join() {
                    Ok(found) => out.extend(found),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            out
        })
    }

    /// Inserts of one partition: small file groups of the partition (not
    /// otherwise rewritten beyond what they take) fill up to the target size
    /// first, the rest goes to new file groups.
    fn place_inserts(
        &self,
        partition: &str,
        mut list: Vec<usize>,
        avg_row_bytes: u64,
        appended: &mut BTreeMap<usize, Vec<usize>>,
        new_groups: &mut Vec<(String, Vec<usize>)>,
    ) {
        let target = self.options.target_file_bytes;
        let small_limit = target * 8 / 10;
        let target_rows = (target / avg_row_bytes.max(1)).max(1) as usize;
        for (g, group) in self.groups.iter().enumerate() {
            if list.is_empty() {
                break;
            }
            if group.partition != partition {
                continue;
            }
            let Some(slice) = group.latest() else {
                continue;
            };
            if slice.bytes >= small_limit {
                continue;
            }
            let room = (target.saturating_sub(slice.bytes) / avg_row_bytes.max(1)) as usize;
            if room == 0 {
                continue;
            }
            let rest = list.split_off(room.min(list.len()));
            appended.entry(g).or_default().extend(list);
            list = rest;
        }
        while !list.is_empty() {
            let rest = list.split_off(target_rows.min(list.len()));
            new_groups.push((partition.to_string(), list));
            list = rest;
        }
    }

    /// Lists the files of a wave in `.hoodie/.temp/<instant>/MARKERS<n>`
    /// before any of them is written.
    async fn write_markers(
        &self,
        instant: &str,
        token: &str,
        n: usize,
        jobs: &[FileJob],
    ) -> Result<(), LakeError> {
        let text: String = jobs
            .iter()
            .map(|j| {
                let kind = if matches!(j, FileJob::New { .. }) {
                    "CREATE"
                } else {
                    "MERGE"
                };
                let file = base_file_name(j.file_id(), token, instant);
                if j.partition().is_empty() {
                    format!("{file}.marker.{kind}\n")
                } else {
                    format!("{}/{file}.marker.{kind}\n", j.partition())
                }
            })
            .collect();
        put(
            self.store.as_ref(),
            &Path::from(format!(".hoodie/.temp/{instant}/MARKERS{n}")),
            text.into_bytes(),
            false,
        )
        .await?;
        Ok(())
    }

    /// Runs file jobs: decode, merge and encode on the [`super::cpu`] pool,
    /// reads and writes on the runtime. One job more than the pool has
    /// threads is under way, so a job's read or write overlaps the others'
    /// CPU work (measured: the first wave of the lake benchmark took 4.9 s
    /// instead of 5.3 s with only as many jobs as threads).
    ///
    /// Jobs are numbered from `first_task` on: a job's number is its task
    /// in `_hoodie_commit_seqno`, unique in the commit across both waves.
    async fn run_jobs(
        &self,
        ctx: &Arc<WriteContext>,
        jobs: Vec<FileJob>,
        first_task: usize,
    ) -> Result<Vec<Written>, LakeError> {
        let store = self.store.clone();
        let table = self.name().to_string();
        let mut results = futures::stream::iter((first_task..).zip(jobs))
            .map(|(n, job)| {
                let (store, ctx, table) = (store.clone(), ctx.clone(), table.clone());
                async move { run_job(store, ctx, job, n, &table).await }
            })
            .buffer_unordered(super::cpu::threads() + 1);
        let mut out = Vec::new();
        while let Some(result) = results.next().await {
            out.push(result?);
            crate::failpoint::hit("lake.between_data_files");
        }
        Ok(out)
    }

    /// Average stored bytes per row: from the table, or estimated from the
    /// inserts' in-memory size for a new table.
    fn average_row_bytes(&self, ctx: &WriteContext, inserts: &[usize]) -> u64 {
        let (bytes, rows) = self
            .groups
            .iter()
            .filter_map(FileGroup::latest)
            .fold((0u64, 0u64), |(b, r), s| (b + s.bytes, r + s.rows));
        if rows > 1000 {
            return (bytes / rows).max(1);
        }
        let sample: Vec<&Change> = inserts
            .iter()
            .take(1000)
            .filter_map(|i| ctx.changes.get(*i))
            .collect();
        if sample.is_empty() {
            return 1024;
        }
        match build_rows(ctx, &sample, "x", "", 0, 0) {
            // Parquet with compression takes about a third of Arrow's memory.
            Ok(b) => ((b.get_array_memory_size() / 3) as u64 / sample.len() as u64).max(16),
            Err(_) => 1024,
        }
    }

    /// The cleaner: keeps the slices the last `keep_commits` commits need,
    /// deletes older ones under a clean instant (plan in `.clean.requested`
    /// and `.clean.inflight`, result in `.clean`), and drops instants of
    /// commits whose slices are all gone (archival without an archive: Hudi
    /// readers treat base files older than the active timeline as
    /// committed).
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
        let last_completed = commits.last().cloned().unwrap_or_default();
        let mut doomed: Vec<Path> = Vec::new();
        let mut files: BTreeMap<String, PartitionFiles> = BTreeMap::new();
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
                    let entry = files.entry(group.partition.clone()).or_default();
                    entry.paths.push(path.to_string());
                    entry.names.push(s.file);
                    doomed.push(path);
                }
            }
        }
        if !doomed.is_empty() {
            let started = now_millis();
            let time = next_instant(started, self.timeline.last_time());
            let plan = actions::cleaner_plan(&oldest_kept, &last_completed, &files)
                .map_err(|e| self.avro(e))?;
            self.create_instant_file(
                &Instant::new(&time, Action::Clean, State::Requested),
                plan.clone(),
            )
            .await?;
            self.create_instant_file(&Instant::new(&time, Action::Clean, State::Inflight), plan)
                .await?;
            for path in &doomed {
                delete_if_present(self.store.as_ref(), path).await?;
            }
            let metadata = actions::clean_metadata(
                &time,
                now_millis() - started,
                &oldest_kept,
                &last_completed,
                &files,
            )
            .map_err(|e| self.avro(e))?;
            self.create_instant_file(
                &Instant::new(&time, Action::Clean, State::Completed),
                metadata,
            )
            .await?;
        }
        // Archive instants well behind the retained window: commits whose
        // slices are gone, and the cleans and rollbacks before them.
        let archive_before = commits.len().saturating_sub(keep + 20);
        // Never past a pending commit (as Hudi's archiver): once the active
        // timeline started after it, readers would count its files as
        // committed. Recovery at the next open rolls it back.
        let oldest_pending = self
            .timeline
            .pending_commits()
            .map(|i| i.time.clone())
            .min();
        let boundary = commits
            .get(archive_before)
            .filter(|_| archive_before > 0)
            .map(|b| match &oldest_pending {
                Some(p) if p < b => p.clone(),
                _ => b.clone(),
            });
        if let Some(boundary) = boundary {
            let old: Vec<Instant> = self
                .timeline
                .instants()
                .iter()
                .filter(|i| {
                    // Never a pending commit: its files would then count as
                    // archived, that is committed.
                    i.time < boundary
                        && i.state == State::Completed
                        && matches!(i.action, Action::Commit | Action::Clean | Action::Rollback)
                })
                .cloned()
                .collect();
            for instant in old {
                // Completed state last: a crash midway leaves a completed
                // instant or nothing, never a pending one (which recovery
                // would roll back, deleting live base files).
                for state in [State::Requested, State::Inflight, State::Completed] {
                    let name = Instant::new(instant.time.clone(), instant.action.clone(), state)
                        .file_name();
                    delete_if_present(self.store.as_ref(), &Path::from(format!(".hoodie/{name}")))
                        .await?;
                }
            }
        }
        self.timeline = Self::list_hoodie(self.store.as_ref()).await?;
        // Every KEEP entries, the log entries that far behind go.
        if self.seq.is_multiple_of(log::KEEP) && self.seq > log::KEEP {
            log::prune(self.store.as_ref(), self.seq - log::KEEP).await?;
        }
        Ok(())
    }
}

/// One base file to write in a commit.
#[derive(Debug, Clone)]
enum FileJob {
    /// A new slice of an existing file group.
    Existing {
        group: usize,
        file_id: String,
        partition: String,
        prev: Slice,
        source: Path,
        routed: Vec<usize>,
        appended: Vec<usize>,
    },
    /// The first slice of a new file group.
    New {
        file_id: String,
        partition: String,
        rows: Vec<usize>,
    },
}

impl FileJob {
    fn partition(&self) -> &str {
        match self {
            FileJob::Existing { partition, .. } | FileJob::New { partition, .. } => partition,
        }
    }

    fn file_id(&self) -> &str {
        match self {
            FileJob::Existing { file_id, .. } | FileJob::New { file_id, .. } => file_id,
        }
    }

    /// The entry of the inflight workload profile.
    fn profile(&self) -> WriteStat {
        match self {
            FileJob::Existing {
                file_id,
                partition,
                prev,
                routed,
                appended,
                ..
            } => WriteStat {
                file_id: file_id.clone(),
                prev_commit: prev.instant.clone(),
                num_update_writes: routed.len() as i64,
                num_inserts: appended.len() as i64,
                partition_path: partition.clone(),
                ..Default::default()
            },
            FileJob::New {
                file_id,
                partition,
                rows,
            } => WriteStat {
                file_id: file_id.clone(),
                prev_commit: "null".into(),
                num_inserts: rows.len() as i64,
                partition_path: partition.clone(),
                ..Default::default()
            },
        }
    }
}

/// A base file written by a commit.
struct Written {
    group: Option<usize>,
    file_id: String,
    partition: String,
    path: Path,
    slice: Slice,
    bytes: u64,
    stat: WriteStat,
    /// Keys new in the group: indices into `changes`, the changes of the
    /// wave that wrote it.
    added: Vec<usize>,
    changes: Arc<Vec<Change>>,
    removed: Vec<String>,
    elsewhere: Vec<Change>,
    counts: MergeCounts,
}

/// One existing file group to rewrite.
struct Rewrite<'a> {
    /// Changes routed to the group and inserts assigned to it.
    routed: &'a [usize],
    appended: &'a [usize],
    partition: &'a str,
    /// The stored slice's path and the new file's name.
    stored: &'a str,
    file: &'a str,
    /// The job's number in the commit (see `build_rows`).
    task: usize,
}

/// Fresh rows (their packed size) above which a rewrite goes through Arrow,
/// which builds them a chunk of about 16 MiB at a time: splicing holds them
/// all, so it takes no more than such a chunk (in the benchmark a file's
/// new rows pack into about 2 MB).
const SPLICE_FRESH_BYTES: usize = 16 << 20;

/// Merges the changes of one file group into its stored slice (`bytes`) and
/// encodes the new slice: page by page when the slice allows it
/// ([`super::splice`]: only the record keys, positions and the columns
/// routed through Arrow are decoded), else through Arrow as a whole.
fn rewrite(
    ctx: &WriteContext,
    bytes: Bytes,
    job: &Rewrite<'_>,
) -> Result<(Merged, Bytes), LakeError> {
    let schema_err = |message: String| LakeError::Schema {
        table: String::new(),
        message,
    };
    let read_err = |source: FileError| LakeError::File {
        path: job.stored.to_string(),
        source,
    };
    let write_err = |e: EncodeError| match e {
        EncodeError::Rows(message) => schema_err(message),
        EncodeError::File(source) => LakeError::File {
            path: job.file.to_string(),
            source,
        },
    };
    let metadata = stored_metadata(&bytes).map_err(read_err)?;
    let routes = if ctx.restate.rewrites_all() {
        None
    } else {
        splice::plan(
            metadata.metadata(),
            &ctx.arrow_schema,
            super::files::codec(&ctx.encoding),
        )
    };
    let whole = |bytes: &Bytes| {
        decode_base_file(bytes.clone())
            .map_err(read_err)
            .and_then(|(batch, filter)| {
                // Stored slices are read with strings as views (see `files`).
                let schema = view_schema(&ctx.arrow_schema);
                let batch = project_restated(&batch, &schema, &ctx.restate)
                    .map_err(|e| schema_err(e.to_string()))?;
                Ok((batch, filter))
            })
    };
    // The whole slice, once decoded.
    let mut decoded = None;
    let mut merged = match &routes {
        Some(routes) => {
            let wanted: Vec<usize> = (ctx.arrow_schema.fields().iter().zip(routes))
                .enumerate()
                .filter(|(_, (f, r))| {
                    **r == splice::Route::Arrow || f.name() == RECORD_KEY || f.name() == POSITION
                })
                .map(|(i, _)| i)
                .collect();
            let (part, filter) =
                decode_columns(bytes.clone(), metadata.clone(), &wanted).map_err(read_err)?;
            let mut all = || whole(&bytes).map(|(b, _)| b).map_err(|e| e.to_string());
            let merged = merge_group(
                ctx,
                &part,
                &mut all,
                job.routed,
                job.appended,
                job.partition,
            )
            .map_err(schema_err)?;
            let fresh_changes = merged.fresh_changes(ctx);
            let fresh_bytes: usize = (fresh_changes.iter())
                .map(|c| c.row.as_ref().map_or(0, PackedRow::heap_bytes))
                .sum();
            if merged.num_rows() > 0 && fresh_bytes <= SPLICE_FRESH_BYTES {
                let carried = carry(&part, &merged.keep, job.file).map_err(schema_err)?;
                let fresh: Vec<arrow_array::RecordBatch> = merged
                    .fresh_rows(ctx, job.file, job.partition, job.task)
                    .collect::<Result<_, _>>()
                    .map_err(write_err)?;
                let keys: Vec<&str> = fresh_changes.iter().map(|c| c.key.as_str()).collect();
                let spliced = super::files::encode_spliced(
                    &ctx.arrow_schema,
                    Spliced {
                        bytes: &bytes,
                        metadata: metadata.metadata(),
                        routes,
                        keep: &merged.keep,
                        carried: &carried,
                        file: job.file,
                    },
                    filter,
                    &keys,
                    merged.replaced,
                    &fresh,
                    &ctx.encoding,
                );
                match spliced {
                    Ok(encoded) => {
                        let mut merged = merged;
                        merged.counts.spliced = 1;
                        return Ok((merged, encoded));
                    }
                    Err(SpliceError::Unsupported(why)) => {
                        tracing::debug!(file = job.stored, %why, "rewritten through Arrow");
                    }
                    Err(e) => return Err(write_err(EncodeError::File(e.into()))),
                }
            }
            merged
        }
        None => {
            let (batch, filter) = whole(&bytes)?;
            let mut all = || Ok(batch.clone());
            let merged = merge_group(
                ctx,
                &batch,
                &mut all,
                job.routed,
                job.appended,
                job.partition,
            )
            .map_err(schema_err)?;
            decoded = Some((batch, filter));
            merged
        }
    };
    let (batch, filter) = match decoded {
        Some(d) => d,
        None => whole(&bytes)?,
    };
    merged.carried = Some(carry(&batch, &merged.keep, job.file).map_err(schema_err)?);
    let encoded = merged
        .encode(ctx, filter, job.file, job.partition, job.task)
        .map_err(write_err)?;
    Ok((merged, encoded))
}

async fn run_job(
    store: Arc<dyn ObjectStore>,
    ctx: Arc<WriteContext>,
    job: FileJob,
    n: usize,
    table: &str,
) -> Result<Written, LakeError> {
    let corrupt = |message: String| LakeError::Corrupt {
        table: table.to_string(),
        message,
    };
    let schema_err = |message: String| LakeError::Schema {
        table: table.to_string(),
        message,
    };
    let file = base_file_name(job.file_id(), &ctx.token, &ctx.instant);
    let path = if job.partition().is_empty() {
        Path::from(file.as_str())
    } else {
        Path::from(format!("{}/{file}", job.partition()))
    };
    let stored = match &job {
        FileJob::Existing { source, .. } => Some(store.get(source).await?.bytes().await?),
        FileJob::New { .. } => None,
    };
    let worker_ctx = ctx.clone();
    let worker_job = job.clone();
    let worker_file = file.clone();
    let (merged, encoded, rows) =
        super::cpu::run(move || -> Result<(Merged, Bytes, usize), LakeError> {
            let schema_err = |message: String| LakeError::Schema {
                table: String::new(),
                message,
            };
            let encode_err = |e: EncodeError| match e {
                EncodeError::Rows(message) => schema_err(message),
                EncodeError::File(source) => LakeError::File {
                    path: worker_file.clone(),
                    source,
                },
            };
            let (mut merged, encoded) = match (&worker_job, stored) {
                (
                    FileJob::Existing {
                        routed,
                        appended,
                        partition,
                        prev,
                        ..
                    },
                    Some(bytes),
                ) => rewrite(
                    &worker_ctx,
                    bytes,
                    &Rewrite {
                        routed,
                        appended,
                        partition,
                        stored: &prev.file,
                        file: &worker_file,
                        task: n,
                    },
                )?,
                (FileJob::New { rows, .. }, _) => {
                    let merged = Merged::new_group(rows);
                    let encoded = merged
                        .encode(&worker_ctx, None, &worker_file, worker_job.partition(), n)
                        .map_err(encode_err)?;
                    (merged, encoded)
                }
                (FileJob::Existing { .. }, None) => {
                    return Err(LakeError::Corrupt {
                        table: String::new(),
                        message: "no stored slice".into(),
                    });
                }
            };
            // The rows are freed here, on the thread that decoded them.
            let rows = merged.num_rows();
            merged.carried = None;
            merged.filled.clear();
            Ok((merged, encoded, rows))
        })
        .await
        .map_err(|e| corrupt(e.to_string()))?
        .map_err(|e| match e {
            LakeError::Schema { message, .. } => schema_err(message),
            other => other,
        })?;
    let bytes = encoded.len() as u64;
    write_bytes(store.as_ref(), &path, encoded).await?;
    let rows = rows as u64;
    let (group, prev_commit, num_deletes, num_updates) = match &job {
        FileJob::Existing { group, prev, .. } => (
            Some(*group),
            prev.instant.clone(),
            merged.counts.deleted as i64,
            merged.counts.replaced as i64,
        ),
        FileJob::New { .. } => (None, "null".to_string(), 0, 0),
    };
    let stat = WriteStat {
        file_id: job.file_id().to_string(),
        path: Some(path.to_string()),
        prev_commit,
        num_writes: rows as i64,
        num_deletes,
        num_update_writes: num_updates,
        num_inserts: merged.counts.appended as i64,
        total_write_bytes: bytes as i64,
        partition_path: job.partition().to_string(),
        file_size_in_bytes: bytes as i64,
        runtime_stats: Some(Default::default()),
        ..Default::default()
    };
    Ok(Written {
        group,
        file_id: job.file_id().to_string(),
        partition: job.partition().to_string(),
        path,
        slice: Slice {
            instant: ctx.instant.clone(),
            file,
            bytes,
            rows,
        },
        bytes,
        stat,
        added: merged.added,
        changes: ctx.changes.clone(),
        removed: merged.removed,
        elsewhere: merged.elsewhere,
        counts: merged.counts,
    })
}

/// The index slots of the record keys of the stored file `path` of `size`
/// bytes (from the listing), reading only its footer and its key column's
/// chunks by range: its last `guess` bytes ([`footer_guess`]), the rest of
/// a larger footer, then the chunks. A file no larger than `guess` is read
/// whole. For the benchmark's base files that is about a seventh of each
/// file (155.5 of 1,114 MB): opening a table on S3 downloads that much
/// of it, not all of it. Every
/// range asked for is bounded and inside the object (a suffix or open
/// range is not answered alike by every S3-API server).
async fn read_key_slots(
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    guess: u64,
) -> Result<Vec<Slot>, LakeError> {
    let file_err = |source: FileError| LakeError::File {
        path: path.to_string(),
        source,
    };
    let on_pool = |e: super::cpu::PoolError| LakeError::Corrupt {
        table: String::new(),
        message: format!("reading the keys of {path}: {e}"),
    };
    if size <= guess {
        let bytes = store.get(&path).await?.bytes().await?;
        return super::cpu::run(move || {
            let metadata = stored_metadata(&bytes)?;
            decode_key_slots(bytes, metadata)
        })
        .await
        .map_err(on_pool)?
        .map_err(file_err);
    }
    let first = size - guess;
    let mut tail = store.get_range(&path, first..size).await?;
    let footer = footer_size(&tail).map_err(file_err)?;
    // The file starts with `PAR1`: a footer can be no larger than the rest.
    let footer_start = size
        .checked_sub(footer)
        .filter(|start| *start >= 4)
        .ok_or_else(|| {
            file_err(FileError::Layout(format!(
                "its footer says it is {footer} bytes, in a file of {size}"
            )))
        })?;
    if footer_start < first {
        let rest = store.get_range(&path, footer_start..first).await?;
        let mut whole = bytes::BytesMut::with_capacity(rest.len() + tail.len());
        whole.extend_from_slice(&rest);
        whole.extend_from_slice(&tail);
        tail = whole.freeze();
    }
    let (metadata, chunks) = super::cpu::run(move || {
        let metadata = footer_metadata(size, tail)?;
        let chunks = key_chunks(metadata.metadata(), footer_start)?;
        Ok::<_, FileError>((metadata, chunks))
    })
    .await
    .map_err(on_pool)?
    .map_err(file_err)?;
    let parts = store.get_ranges(&path, &chunks).await?;
    let ranges = Ranges::new(size, chunks.iter().map(|c| c.start).zip(parts).collect());
    super::cpu::run(move || decode_key_slots(ranges, metadata))
        .await
        .map_err(on_pool)?
        .map_err(file_err)
}

/// Writes a base file: large ones in parts (S3 retries a part, not the file).
async fn write_bytes(store: &dyn ObjectStore, path: &Path, bytes: Bytes) -> Result<(), LakeError> {
    if bytes.len() > MULTIPART_THRESHOLD {
        let upload = store.put_multipart(path).await?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART);
        writer.put(bytes);
        writer.finish().await?;
    } else {
        put(store, path, bytes, false).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use object_store::memory::InMemory;

    /// A file of 25,000 rows in row groups of 4,000 (the last one short):
    /// record keys repeating enough to be dictionary-encoded, a NULL one,
    /// then a wide column; with its keys.
    fn grouped_file() -> (Bytes, Vec<Option<String>>) {
        let keys: Vec<Option<String>> = (0..25_000)
            .map(|r| (r != 7).then(|| format!("k{}", r % 300)))
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new(RECORD_KEY, DataType::Utf8, true),
            Field::new("payload", DataType::Utf8, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(keys.clone())),
            Arc::new(StringArray::from_iter_values(
                (0..25_000).map(|r| format!("{r:0>120}")),
            )),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(4_000))
            .build();
        let mut out = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        (Bytes::from(out), keys)
    }

    /// Opening a table reads a file's key column by range: with a guess
    /// too small for the footer (its rest read next), as large as the
    /// footer, and larger than the file (read whole), the keys are the
    /// file's, from every row group, and only the footer and the key
    /// chunks are read (`Ranges` fails on any other byte).
    #[tokio::test]
    async fn keys_are_read_from_the_footer_and_the_key_chunks_by_range() {
        let (bytes, keys) = grouped_file();
        let size = bytes.len() as u64;
        let metadata = stored_metadata(&bytes).unwrap();
        assert_eq!(metadata.metadata().num_row_groups(), 7);
        let key_column = metadata.metadata().row_group(0).column(0);
        assert!(
            key_column.dictionary_page_offset().is_some(),
            "the key column has a dictionary page"
        );
        let footer = footer_size(&bytes).unwrap();
        let chunks = key_chunks(metadata.metadata(), size - footer).unwrap();
        assert_eq!(chunks.len(), 7);
        let chunk_bytes: u64 = chunks.iter().map(|c| c.end - c.start).sum();
        assert!(
            (chunk_bytes + footer) * 4 < size,
            "the wide column is not read"
        );
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("p/f.parquet");
        store.put(&path, bytes.clone().into()).await.unwrap();
        let expected = super::super::files::slots_of_keys(&keys);
        for guess in [64, footer, size + 1] {
            let slots = read_key_slots(store.clone(), path.clone(), size, guess)
                .await
                .unwrap();
            assert_eq!(slots, expected, "guess {guess}");
        }
    }

    /// A footer that claims more bytes than the file has, or a key chunk
    /// that runs into the footer, is an error naming the file.
    #[tokio::test]
    async fn a_footer_or_chunk_out_of_the_file_is_refused() {
        let (bytes, _) = grouped_file();
        let size = bytes.len() as u64;
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut lying = bytes.to_vec();
        let at = lying.len() - 8;
        lying
            .get_mut(at..at + 4)
            .unwrap()
            .copy_from_slice(&(size as u32).to_le_bytes());
        let path = Path::from("p/lying.parquet");
        store.put(&path, Bytes::from(lying).into()).await.unwrap();
        let err = read_key_slots(store.clone(), path, size, 64)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p/lying.parquet") && err.contains("its footer says it is"),
            "{err}"
        );
        let metadata = stored_metadata(&bytes).unwrap();
        let footer = footer_size(&bytes).unwrap();
        let chunks = key_chunks(metadata.metadata(), size - footer).unwrap();
        let last = chunks.last().unwrap();
        let err = key_chunks(metadata.metadata(), last.end - 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("row group 6") && err.contains("ends past the footer"),
            "{err}"
        );
    }
}
