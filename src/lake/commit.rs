//! The CPU side of a commit: merging a batch of changes into one file group's
//! stored rows, and building the rows of new file groups. Everything here is
//! pure (no I/O) so the writer can run several file groups at once on the
//! [`super::cpu`] pool.
//!
//! A merge reads the stored slice once. For each change routed to the group
//! it finds the stored row by exact key, then:
//!
//! - the stored position is not older than the change's: the change is a
//!   replay, dropped (and counted as stale);
//! - a delete drops the row;
//! - an update in the same partition replaces the row (unchanged TOAST
//!   values taken from the stored row), with the new commit time;
//! - an update into another partition drops the row here and hands the
//!   change back, filled from the stored row, to be inserted there;
//! - a key the group does not hold (the index routes by hash) is handed back
//!   as an insert.
//!
//! Untouched rows are carried over with their commit time and sequence
//! number (incremental readers rely on them); only `_hoodie_file_name`
//! changes. Inserts assigned to the group (small-file bin-packing) are
//! appended.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow_schema::SchemaRef;

use super::batch::{
    Strings, array_of, datum_at, inline_view, is_text, repeated_string, repeated_view, text_array,
};
use super::layout::{
    FILE_NAME, LakeSchema, POSITION, PartitionSpec, RECORD_KEY, TableLayout, parse_position,
    write_position,
};
use super::table::Change;
use crate::event::change::Position;
use crate::event::datum::Datum;
use crate::event::packed::{Malformed, PackedRow};
use crate::event::schema::TableSchema;

/// What every file job of one commit shares.
pub struct WriteContext {
    pub instant: String,
    /// The attempt's write token (in every base file name it writes).
    pub token: String,
    pub schema: LakeSchema,
    pub arrow_schema: SchemaRef,
    pub layout: TableLayout,
    pub changes: Arc<Vec<Change>>,
    pub truncate: Option<Position>,
    pub encoding: super::files::Encoding,
    /// How stored slices read into this commit's schema.
    pub restate: super::batch::Restate,
}

/// Counts of one file job.
#[derive(Debug, Default, Clone, Copy)]
pub struct MergeCounts {
    pub updated: u64,
    pub deleted: u64,
    pub stale: u64,
    pub carried: u64,
    pub replaced: u64,
    pub appended: u64,
    /// 1 when the file was rewritten page by page ([`super::splice`]).
    pub spliced: u64,
}

/// What merging one file group produced.
pub struct Merged {
    /// Per stored row, whether it survives (empty for a new group).
    pub keep: Vec<bool>,
    /// What survives of the stored slice (strings as views), with its
    /// `_hoodie_file_name` set to the new file's ([`carry`]); `None` until
    /// the caller sets it, and for a new group.
    pub carried: Option<RecordBatch>,
    /// The rows written after the carried ones, in order: replaced rows, then
    /// appended inserts. Built in chunks as the file is encoded.
    pub fresh: Vec<Fresh>,
    /// How many of the first fresh rows are replaced rows, whose keys the
    /// stored slice's bloom filter holds already.
    pub replaced: usize,
    /// Copies of changes whose unchanged TOAST values were filled from the
    /// stored row ([`Fresh::Filled`]).
    pub filled: Vec<Change>,
    /// Keys new in this group, as indices into the commit's changes.
    pub added: Vec<usize>,
    /// Keys no longer in this group.
    pub removed: Vec<String>,
    /// Changes to insert elsewhere: moves (filled from storage) and keys the
    /// group did not hold.
    pub elsewhere: Vec<Change>,
    pub counts: MergeCounts,
}

/// One fresh row of a file: a change of the commit, or a filled copy.
#[derive(Debug, Clone, Copy)]
pub enum Fresh {
    Change(usize),
    Filled(usize),
}

impl Merged {
    /// The merge of a new file group: nothing carried, `rows` (indices into
    /// the commit's changes) appended.
    pub fn new_group(rows: &[usize]) -> Merged {
        Merged {
            keep: Vec::new(),
            carried: None,
            fresh: rows.iter().copied().map(Fresh::Change).collect(),
            replaced: 0,
            filled: Vec::new(),
            added: rows.to_vec(),
            removed: Vec::new(),
            elsewhere: Vec::new(),
            counts: MergeCounts {
                appended: rows.len() as u64,
                ..Default::default()
            },
        }
    }

    pub fn num_rows(&self) -> usize {
        self.counts.carried as usize + self.fresh.len()
    }

    /// The fresh rows' changes, in order.
    pub fn fresh_changes<'a>(&'a self, ctx: &'a WriteContext) -> Vec<&'a Change> {
        self.fresh
            .iter()
            .filter_map(|f| match f {
                Fresh::Change(i) => ctx.changes.get(*i),
                Fresh::Filled(i) => self.filled.get(*i),
            })
            .collect()
    }

    /// Encodes the file: the carried rows, then the fresh ones, built in
    /// chunks of about [`CHUNK_BYTES`] so that a large file group never has
    /// all its new rows in Arrow memory at once (a million inserts make four
    /// new files of 250k rows, encoded two or three at a time). `filter` is
    /// the stored slice's bloom filter. `task` as in [`build_rows`].
    pub fn encode(
        &self,
        ctx: &WriteContext,
        filter: Option<super::bloom::DynamicBloom>,
        file: &str,
        partition: &str,
        task: usize,
    ) -> Result<bytes::Bytes, EncodeError> {
        let keys: Vec<&str> = (self.fresh_changes(ctx).into_iter())
            .map(|c| c.key.as_str())
            .collect();
        super::files::encode_rows(
            &ctx.arrow_schema,
            self.carried.as_ref(),
            filter,
            &keys,
            self.replaced,
            self.fresh_rows(ctx, file, partition, task),
            &ctx.encoding,
        )
    }

    /// The fresh rows, built in chunks of about [`CHUNK_BYTES`]. `task` as
    /// in [`build_rows`].
    pub fn fresh_rows<'a>(
        &'a self,
        ctx: &'a WriteContext,
        file: &'a str,
        partition: &'a str,
        task: usize,
    ) -> impl Iterator<Item = Result<RecordBatch, EncodeError>> + 'a {
        let fresh = self.fresh_changes(ctx);
        let mut done = 0usize;
        let mut per_row = 0usize;
        std::iter::from_fn(move || {
            let rest = fresh.get(done..).filter(|r| !r.is_empty())?;
            // Each chunk's rows size the next; the first is a fixed count.
            let rows = match per_row {
                0 => FIRST_CHUNK_ROWS,
                n => (CHUNK_BYTES / n).clamp(MIN_CHUNK_ROWS, MAX_CHUNK_ROWS),
            };
            let chunk = rest.get(..rows.min(rest.len()))?;
            let batch = build_rows(ctx, chunk, file, partition, task, done);
            if let Ok(b) = &batch {
                per_row = (b.get_array_memory_size() / chunk.len()).max(1);
            }
            done += chunk.len();
            Some(batch.map_err(EncodeError::Rows))
        })
    }
}

/// Arrow memory of one chunk of a file's fresh rows.
const CHUNK_BYTES: usize = 16 << 20;
const FIRST_CHUNK_ROWS: usize = 4096;
const MIN_CHUNK_ROWS: usize = 1024;
const MAX_CHUNK_ROWS: usize = 65_536;

/// Why a file could not be encoded: its rows (a schema problem), or the
/// Parquet writer.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("{0}")]
    Rows(String),
    #[error(transparent)]
    File(#[from] super::files::FileError),
}

/// The error of a change whose packed row cannot be read (only a bug makes
/// one), naming its key.
fn unreadable(key: &str, e: Malformed) -> String {
    format!("the row of key `{key}`: {e}")
}

/// A row's partition value under its table's partitioning.
struct PartitionValue<'a> {
    spec: &'a PartitionSpec,
    datum: Datum,
    /// When the value is a date or a timestamp: its day
    /// ([`PartitionSpec::day`]), of which the path is a function.
    day: Option<i64>,
}

/// Partition paths of rows (`""` when unpartitioned), remembering the
/// last one it formatted: the rows of a file job are nearly all of one
/// partition, and formatting a date for each of a million rows took a
/// tenth of a second.
pub struct Partitioner<'a> {
    layout: &'a TableLayout,
    /// The partition column's index in the last source shape seen.
    column: Option<(Arc<TableSchema>, usize)>,
    /// The day number and the path of the last dated row.
    last: Option<(i64, String)>,
    other: String,
}

impl<'a> Partitioner<'a> {
    pub fn new(layout: &'a TableLayout) -> Self {
        Partitioner {
            layout,
            column: None,
            last: None,
            other: String::new(),
        }
    }

    /// The row's partition value (`None` when the table is not
    /// partitioned).
    fn value(
        &mut self,
        change: &Change,
        row: &PackedRow,
    ) -> Result<Option<PartitionValue<'a>>, String> {
        let layout: &'a TableLayout = self.layout;
        let Some(spec) = &layout.partition else {
            return Ok(None);
        };
        let index = match &self.column {
            Some((shape, index)) if Arc::ptr_eq(shape, &change.schema) => *index,
            _ => {
                let index = change.schema.column_index(&spec.column).ok_or_else(|| {
                    format!("partition column `{}` is not in the row", spec.column)
                })?;
                self.column = Some((change.schema.clone(), index));
                index
            }
        };
        let datum = row
            .get(index)
            .map_err(|e| unreadable(&change.key, e))?
            .unwrap_or(Datum::Null);
        Ok(Some(PartitionValue {
            spec,
            day: PartitionSpec::day(&datum),
            datum,
        }))
    }

    pub fn path(&mut self, change: &Change, row: &PackedRow) -> Result<&str, String> {
        let value = self.value(change, row)?;
        self.path_of(value)
    }

    /// The path of a value [`Partitioner::value`] gave.
    fn path_of(&mut self, value: Option<PartitionValue<'_>>) -> Result<&str, String> {
        let Some(PartitionValue { spec, datum, day }) = value else {
            return Ok("");
        };
        let path = || -> Result<String, String> {
            Ok(self.layout.partition_path(Some(&spec.value(&datum)?)))
        };
        match day {
            Some(day) => {
                if self.last.as_ref().is_none_or(|(d, _)| *d != day) {
                    let formatted = path()?;
                    self.last = Some((day, formatted));
                }
                Ok(self.last.as_ref().map_or("", |(_, p)| p.as_str()))
            }
            None => {
                self.other = path()?;
                Ok(&self.other)
            }
        }
    }
}

/// The changes with a row (`(index, change)`), grouped by the partition
/// path of their row, each list in the order of the changes. Dated rows are
/// grouped by day number first and a path formatted once per day: inserts
/// arrive in no order of day, and formatting a path for each row of a
/// million-change batch kept one core busy for a tenth of a second while
/// the other waited.
pub fn by_partition<'c>(
    layout: &TableLayout,
    changes: impl Iterator<Item = (usize, &'c Change)>,
) -> Result<BTreeMap<String, Vec<usize>>, String> {
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut partitioner = Partitioner::new(layout);
    // Each day's changes and its value, of which the path is formatted once.
    let mut days: HashMap<i64, (Vec<usize>, PartitionValue<'_>), foldhash::fast::RandomState> =
        HashMap::default();
    // Appends `list` to the path's list; whether one was there already.
    fn append(
        out: &mut BTreeMap<String, Vec<usize>>,
        path: &str,
        list: impl IntoIterator<Item = usize>,
    ) -> bool {
        match out.get_mut(path) {
            Some(existing) => {
                existing.extend(list);
                true
            }
            None => {
                out.insert(path.to_string(), list.into_iter().collect());
                false
            }
        }
    }
    for (i, change) in changes {
        let Some(row) = &change.row else { continue };
        match partitioner.value(change, row)? {
            Some(value @ PartitionValue { day: Some(day), .. }) => {
                days.entry(day).or_insert((Vec::new(), value)).0.push(i)
            }
            other => {
                let path = partitioner.path_of(other)?;
                append(&mut out, path, [i]);
            }
        }
    }
    let mut merged = false;
    for (list, value) in days.into_values() {
        let path = partitioner.path_of(Some(value))?;
        merged |= append(&mut out, path, list);
    }
    if merged {
        for list in out.values_mut() {
            list.sort_unstable();
        }
    }
    Ok(out)
}

/// Replaces the unchanged TOAST values of `change`'s row with the stored
/// values of row `stored_row` of `stored`.
fn fill_unchanged(
    ctx: &WriteContext,
    change: &mut Change,
    stored: &RecordBatch,
    stored_row: usize,
) -> Result<(), String> {
    let Some(packed) = change.row.as_mut().filter(|r| r.has_unchanged()) else {
        return Ok(());
    };
    let mut row = packed.unpack().map_err(|e| unreadable(&change.key, e))?;
    let shape = &change.schema;
    let mapping = ctx.schema.mapping(shape);
    for (i, d) in row.0.iter_mut().enumerate() {
        if !matches!(d, Datum::Unchanged) {
            continue;
        }
        let value = mapping
            .iter()
            .position(|m| *m == Some(i))
            .and_then(|j| ctx.schema.columns.get(j))
            .and_then(|lc| {
                let col = ctx.arrow_schema.index_of(&lc.field).ok()?;
                datum_at(stored.column(col).as_ref(), stored_row, &lc.ty()?)
            });
        *d = value.unwrap_or(Datum::Null);
    }
    *packed = PackedRow::pack(&row);
    Ok(())
}

/// A string column of `len` values, each written by `value` straight into
/// the column's buffer (no string per row).
fn formatted(
    len: usize,
    mut value: impl FnMut(usize, &mut StringBuilder) -> std::fmt::Result,
) -> ArrayRef {
    let mut builder = StringBuilder::with_capacity(len, len * 32);
    for n in 0..len {
        // Writing into a builder cannot fail; a value cut short is still a
        // row, so the column keeps its length.
        let _ = value(n, &mut builder);
        builder.append_value("");
    }
    Arc::new(builder.finish())
}

/// Builds the batch of new or replaced rows for one file. `task` is the
/// file job's number in the commit: the middle of `_hoodie_commit_seqno`
/// (`<instant>_<task>_<row>`), where Hudi writes its task's partition id.
/// Small numbers keep the column short; unique per job, so every seqno of
/// the commit is unique. `first` is the number of the first of `rows` among
/// the file's fresh rows (they are built in chunks).
pub fn build_rows(
    ctx: &WriteContext,
    rows: &[&Change],
    file: &str,
    partition: &str,
    task: usize,
    first: usize,
) -> Result<RecordBatch, String> {
    let instant = &ctx.instant;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(ctx.arrow_schema.fields().len());
    columns.push(repeated_string(instant, rows.len()));
    columns.push(formatted(rows.len(), |n, out| {
        write!(out, "{instant}_{task}_{}", first + n)
    }));
    columns.push(std::sync::Arc::new(StringArray::from_iter_values(
        rows.iter().map(|c| c.key.as_str()),
    )));
    columns.push(repeated_string(partition, rows.len()));
    columns.push(repeated_string(file, rows.len()));
    // Where each row's values start, found once per row: each column's
    // value is then read in one step. Row `r`'s are `starts[first_of[r]..
    // first_of[r + 1]]`.
    let mut starts: Vec<u32> = Vec::new();
    let mut first_of: Vec<usize> = Vec::with_capacity(rows.len() + 1);
    for change in rows {
        first_of.push(starts.len());
        if let Some(row) = &change.row {
            row.starts(&mut starts)
                .map_err(|e| unreadable(&change.key, e))?;
        }
    }
    first_of.push(starts.len());
    for column in &ctx.schema.columns {
        let ty = column
            .ty()
            .ok_or_else(|| format!("unknown type of `{}`", column.name))?;
        // Source shapes repeat: resolve the column's index once per shape.
        let mut index_cache: Vec<(*const TableSchema, Option<usize>)> = Vec::new();
        // Each row's packed row and where this column's value starts in it.
        let mut at: Vec<Option<(&PackedRow, u32)>> = Vec::with_capacity(rows.len());
        for (r, change) in rows.iter().enumerate() {
            let shape: *const TableSchema = Arc::as_ptr(&change.schema);
            let index = match index_cache.iter().find(|(p, _)| *p == shape) {
                Some((_, i)) => *i,
                None => {
                    let i = ctx.schema.source_index(column, &change.schema);
                    index_cache.push((shape, i));
                    i
                }
            };
            let start = match (index, first_of.get(r), first_of.get(r + 1)) {
                (Some(i), Some(&from), Some(&to)) if !column.dropped && from + i < to => {
                    starts.get(from + i).copied()
                }
                _ => None,
            };
            at.push(change.row.as_ref().zip(start));
        }
        let malformed =
            |r: usize, e: Malformed| unreadable(rows.get(r).map_or("", |c| c.key.as_str()), e);
        // Text is read in place: no string of its own for each value.
        let array = if is_text(&ty) {
            let texts = (at.iter().enumerate())
                .map(|(r, a)| match a {
                    Some((row, start)) => row.text_at(*start).map_err(|e| malformed(r, e)),
                    None => Ok(Err(Datum::Null)),
                })
                .collect::<Result<Vec<_>, String>>()?;
            text_array(&column.name, &ty, &texts)
        } else {
            let values = (at.iter().enumerate())
                .map(|(r, a)| match a {
                    Some((row, start)) => row.value_at(*start).map_err(|e| malformed(r, e)),
                    None => Ok(Datum::Null),
                })
                .collect::<Result<Vec<Datum>, String>>()?;
            let values: Vec<&Datum> = values.iter().collect();
            array_of(&column.name, &ty, &values)
        };
        columns.push(array.map_err(|e| e.to_string())?);
    }
    columns.push(formatted(rows.len(), |n, out| match rows.get(n) {
        Some(c) => write_position(out, c.position),
        None => Ok(()),
    }));
    if ctx.layout.partition.is_some() {
        let value = partition
            .split_once('=')
            .map(|(_, v)| v)
            .unwrap_or(partition);
        columns.push(repeated_string(value, rows.len()));
    }
    RecordBatch::try_new(ctx.arrow_schema.clone(), columns).map_err(|e| e.to_string())
}

/// The rows of `stored` that `keep` flags, with `_hoodie_file_name` (if
/// `stored` has it) set to `file`.
pub fn carry(stored: &RecordBatch, keep: &[bool], file: &str) -> Result<RecordBatch, String> {
    let keep = BooleanArray::from(keep.to_vec());
    let carried =
        arrow_select::filter::filter_record_batch(stored, &keep).map_err(|e| e.to_string())?;
    let mut columns = carried.columns().to_vec();
    if let Ok(i) = stored.schema().index_of(FILE_NAME)
        && let Some(c) = columns.get_mut(i)
    {
        *c = repeated_view(file, carried.num_rows());
    }
    RecordBatch::try_new(stored.schema(), columns).map_err(|e| e.to_string())
}

/// Merges the changes routed to one file group (`routed`, indices into
/// `ctx.changes`) and the inserts assigned to it (`appended`) into its stored
/// rows (already projected onto the current schema, strings as views, which
/// the carried batch keeps). The new rows are listed, not built:
/// [`Merged::encode`] builds them in chunks, with plain strings.
pub fn merge_group(
    ctx: &WriteContext,
    stored: &RecordBatch,
    whole: &mut dyn FnMut() -> Result<RecordBatch, String>,
    routed: &[usize],
    appended: &[usize],
    partition: &str,
) -> Result<Merged, String> {
    let string_column = |name: &str| -> Result<Strings<'_>, String> {
        stored
            .column_by_name(name)
            .and_then(|c| Strings::of(c.as_ref()))
            .ok_or_else(|| format!("a base file without {name}"))
    };
    let keys = string_column(RECORD_KEY)?;
    let positions = string_column(POSITION)?;
    // Every column of the stored rows, read only to fill a change from its
    // stored row.
    let mut all: Option<RecordBatch> = None;
    let mut all_columns = || -> Result<RecordBatch, String> {
        if let Some(b) = &all {
            return Ok(b.clone());
        }
        let b = whole()?;
        if b.num_rows() != stored.num_rows() {
            return Err(format!(
                "a stored slice read as {} rows, then as {}",
                stored.num_rows(),
                b.num_rows()
            ));
        }
        all = Some(b.clone());
        Ok(b)
    };
    let mut counts = MergeCounts::default();
    // Rows removed from the file (deleted, moved, truncated), by row number.
    let mut drop: Vec<bool> = vec![false; stored.num_rows()];
    if let Some(truncate) = ctx.truncate {
        for (r, dropped) in drop.iter_mut().enumerate() {
            let p = positions
                .is_valid(r)
                .then(|| parse_position(positions.value(r)))
                .flatten();
            if p.is_none_or(|p| p < truncate) {
                *dropped = true;
            }
        }
    }
    let is_dropped = |drop: &[bool], r: usize| drop.get(r).copied().unwrap_or(false);
    // The stored row of each key wanted, found in one pass over the stored
    // keys: short keys (most) by their inline string view, without reading
    // the stored string, longer ones by the string.
    // Each routed change's view is made once, here, and used again below.
    let views: Vec<Option<u128>> = (routed.iter())
        .map(|ci| ctx.changes.get(*ci).and_then(|c| inline_view(&c.key)))
        .collect();
    let mut short: HashMap<u128, Option<usize>, foldhash::fast::RandomState> = HashMap::default();
    let mut long: HashMap<&str, Option<usize>, foldhash::fast::RandomState> = HashMap::default();
    for (ci, view) in routed.iter().zip(&views) {
        match (view, ctx.changes.get(*ci)) {
            (Some(view), _) => short.insert(*view, None),
            (None, Some(change)) => long.insert(change.key.as_str(), None),
            (None, None) => None,
        };
    }
    for r in 0..keys.len() {
        if keys.is_valid(r) {
            let slot = match keys.inline(r) {
                Some(view) => short.get_mut(&view),
                None if long.is_empty() => None,
                None => long.get_mut(keys.value(r)),
            };
            if let Some(slot) = slot {
                *slot = Some(r);
            }
        }
    }
    let row_of = |view: &Option<u128>, key: &str| {
        match view {
            Some(view) => short.get(view),
            None => long.get(key),
        }
        .copied()
        .flatten()
    };
    let mut replace: Vec<(usize, usize)> = Vec::new();
    let mut elsewhere: Vec<Change> = Vec::new();
    let mut partitioner = Partitioner::new(&ctx.layout);
    for (ci, view) in routed.iter().zip(&views) {
        let Some(change) = ctx.changes.get(*ci) else {
            continue;
        };
        let Some(r) = row_of(view, &change.key) else {
            if change.row.is_some() {
                elsewhere.push(change.clone());
            }
            continue;
        };
        if is_dropped(&drop, r) {
            // Truncated here; a change newer than the truncate inserts anew.
            if change.row.is_some() {
                elsewhere.push(change.clone());
            }
            continue;
        }
        let stored_position = positions
            .is_valid(r)
            .then(|| parse_position(positions.value(r)))
            .flatten();
        if stored_position.is_some_and(|s| s >= change.position) {
            counts.stale += 1;
            continue;
        }
        match &change.row {
            None => {
                if let Some(d) = drop.get_mut(r) {
                    *d = true;
                }
                counts.deleted += 1;
            }
            Some(row) => {
                let same = partitioner.path(change, row)? == partition;
                counts.updated += 1;
                if same {
                    replace.push((r, *ci));
                } else {
                    if let Some(d) = drop.get_mut(r) {
                        *d = true;
                    }
                    let mut moved = change.clone();
                    if moved.row.as_ref().is_some_and(PackedRow::has_unchanged) {
                        fill_unchanged(ctx, &mut moved, &all_columns()?, r)?;
                    }
                    elsewhere.push(moved);
                }
            }
        }
    }
    let removed: Vec<String> = drop
        .iter()
        .enumerate()
        .filter(|(r, dropped)| **dropped && keys.is_valid(*r))
        .map(|(r, _)| keys.value(r).to_string())
        .collect();
    let mut keep = drop.iter().map(|d| !d).collect::<Vec<bool>>();
    for (r, _) in &replace {
        if let Some(k) = keep.get_mut(*r) {
            *k = false;
        }
    }
    counts.carried = keep.iter().filter(|k| **k).count() as u64;
    // Replaced rows with unchanged TOAST values get filled copies.
    replace.sort_unstable();
    let mut filled: Vec<Change> = Vec::new();
    for (r, ci) in &replace {
        if let Some(change) = ctx.changes.get(*ci)
            && change.row.as_ref().is_some_and(PackedRow::has_unchanged)
        {
            let mut copy = change.clone();
            fill_unchanged(ctx, &mut copy, &all_columns()?, *r)?;
            filled.push(copy);
        }
    }
    let mut fresh: Vec<Fresh> = Vec::with_capacity(replace.len() + appended.len());
    let mut next_filled = 0..filled.len();
    for (_, ci) in &replace {
        let Some(change) = ctx.changes.get(*ci) else {
            continue;
        };
        if change.row.as_ref().is_some_and(PackedRow::has_unchanged) {
            if let Some(f) = next_filled.next() {
                fresh.push(Fresh::Filled(f));
            }
        } else {
            fresh.push(Fresh::Change(*ci));
        }
    }
    let replaced = fresh.len();
    fresh.extend(appended.iter().copied().map(Fresh::Change));
    counts.replaced = replace.len() as u64;
    counts.appended = appended.len() as u64;
    Ok(Merged {
        keep,
        carried: None,
        fresh,
        replaced,
        filled,
        // A replaced row's key is already indexed to this group: only the
        // appended keys are new here.
        added: appended.to_vec(),
        removed,
        elsewhere,
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Granularity;
    use crate::event::datum::Row;
    use crate::event::schema::Column;
    use crate::event::types::ColumnType;
    use crate::lake::layout::PartitionSpec;
    use crate::lake::layout::tests::{int, table};

    fn change(schema: &Arc<TableSchema>, at: Datum) -> Change {
        Change {
            key: "1".into(),
            position: Position::new(1, 0),
            row: Some(Row(vec![Datum::Int(1), at]).into()),
            schema: schema.clone(),
        }
    }

    /// A table partitioned by its column `at`.
    fn layout(granularity: Granularity) -> TableLayout {
        TableLayout {
            name: "t".into(),
            database: "db".into(),
            partition: Some(PartitionSpec {
                column: "at".into(),
                granularity,
            }),
        }
    }

    #[test]
    fn the_partitioner_gives_each_row_its_own_day_however_rows_alternate() {
        let schema = Arc::new(table(vec![
            Column::new("id", int(64), false),
            Column::new("at", ColumnType::TimestampTz, true),
        ]));
        const DAY: i64 = 86_400_000_000;
        // 2024-01-01 is day 19723; the last microsecond of a day, the
        // first of the next, a day before the epoch, NULL, and back.
        let cases = [
            (Datum::Micros(19_723 * DAY), "at_day=2024-01-01"),
            (Datum::Micros(19_724 * DAY - 1), "at_day=2024-01-01"),
            (Datum::Micros(19_724 * DAY), "at_day=2024-01-02"),
            (Datum::Micros(-1), "at_day=1969-12-31"),
            (Datum::Null, "at_day=__HIVE_DEFAULT_PARTITION__"),
            (Datum::Micros(19_723 * DAY + 5), "at_day=2024-01-01"),
            (Datum::Date(19_724), "at_day=2024-01-02"),
        ];
        let day = layout(Granularity::Day);
        let mut p = Partitioner::new(&day);
        for (at, want) in &cases {
            let c = change(&schema, at.clone());
            let row = c.row.clone().unwrap();
            assert_eq!(p.path(&c, &row).unwrap(), *want, "{at:?}");
        }
        let month = layout(Granularity::Month);
        let mut p = Partitioner::new(&month);
        let c = change(&schema, Datum::Micros(19_723 * DAY));
        let row = c.row.clone().unwrap();
        assert_eq!(p.path(&c, &row).unwrap(), "at_month=2024-01");
        let bad = change(&schema, Datum::Text("x".into()));
        let row = bad.row.clone().unwrap();
        let err = p.path(&bad, &row).unwrap_err();
        assert!(err.contains("partition column `at`"), "{err}");
        let flat = TableLayout {
            partition: None,
            ..layout(Granularity::Day)
        };
        assert_eq!(Partitioner::new(&flat).path(&c, &row).unwrap(), "");
    }

    #[test]
    fn changes_are_grouped_by_partition_in_their_own_order() {
        let schema = Arc::new(table(vec![
            Column::new("id", int(64), false),
            Column::new("at", ColumnType::TimestampTz, true),
        ]));
        // The same column in another position: a second source shape.
        let moved = Arc::new(table(vec![
            Column::new("at", ColumnType::TimestampTz, true),
            Column::new("id", int(64), false),
        ]));
        const DAY: i64 = 86_400_000_000;
        let jan = |d: i64| Datum::Micros((19_723 + d) * DAY + 7);
        let mut changes = vec![
            change(&schema, jan(40)),
            change(&schema, jan(0)),
            change(&schema, Datum::Null),
            change(&schema, jan(3)),
            change(&schema, jan(40)),
            change(&schema, Datum::Date(19_723)),
            change(&schema, jan(0)),
            change(&schema, Datum::Null),
        ];
        changes.push(Change {
            row: Some(Row(vec![jan(3), Datum::Int(1)]).into()),
            schema: moved,
            ..change(&schema, Datum::Null)
        });
        changes.push(Change {
            row: None,
            ..change(&schema, jan(0))
        });
        let group = |granularity| {
            by_partition(&layout(granularity), changes.iter().enumerate())
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>()
        };
        let null = |field: &str| format!("{field}=__HIVE_DEFAULT_PARTITION__");
        assert_eq!(
            group(Granularity::Day),
            vec![
                ("at_day=2024-01-01".to_string(), vec![1, 5, 6]),
                ("at_day=2024-01-04".to_string(), vec![3, 8]),
                ("at_day=2024-02-10".to_string(), vec![0, 4]),
                (null("at_day"), vec![2, 7]),
            ]
        );
        // Several days in one path: still in the changes' order.
        assert_eq!(
            group(Granularity::Month),
            vec![
                ("at_month=2024-01".to_string(), vec![1, 3, 5, 6, 8]),
                ("at_month=2024-02".to_string(), vec![0, 4]),
                (null("at_month"), vec![2, 7]),
            ]
        );
        let flat = TableLayout {
            partition: None,
            ..layout(Granularity::Day)
        };
        let all = by_partition(&flat, changes.iter().enumerate()).unwrap();
        assert_eq!(all.get(""), Some(&(0..9).collect::<Vec<_>>()));
        changes.push(change(&schema, Datum::Text("x".into())));
        let err = by_partition(&layout(Granularity::Day), changes.iter().enumerate()).unwrap_err();
        assert!(err.contains("partition column `at`"), "{err}");
    }
}
