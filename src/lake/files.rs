//! Base files: names, Parquet encoding with the footers Hudi readers use, and
//! reading slices back (whole, or only the key and position columns).
//!
//! Names are `<fileId>_<writeToken>_<instant>.parquet` with a `fileId` of
//! `<uuid>-0` (no `_`: Hudi splits names on it). Footers carry
//! `hoodie_min_record_key` / `hoodie_max_record_key`, so Java's BLOOM index
//! range pruning works. Every column has chunk statistics but these:
//! - `_hoodie_commit_seqno` and `_tidewater_position`, unique per row and
//!   never a query's predicate (incremental reads filter on
//!   `_hoodie_commit_time`). Their min/max cost two string comparisons per
//!   row on every rewrite: without them decoding and encoding a base file
//!   again took 5% less time (12 files, best of 8, alternating in one
//!   process).
//! - JSON columns ([`Encoding::unordered`]): the byte order of JSON
//!   documents prunes no query a reader can write (`json_extract(..) = x`,
//!   `LIKE`), and comparing documents that share their first keys is long:
//!   the `orders` payload's min/max took 4% of the CPU time of rewriting
//!   the benchmark's table (the floor of `cargo bench --bench lake`: 10.2
//!   against 9.8 CPU seconds, means of six runs each, alternating).
//!
//! A rewrite whose stored slice allows it is spliced page by page
//! ([`encode_spliced`], [`super::splice`]): only the columns routed through
//! Arrow are decoded. Otherwise it reads the stored slice with strings and
//! binaries as views into the decompressed pages ([`decode_base_file`]):
//! carried values are never copied, and the encoder takes views as they
//! are. A new file writes its columns without a dictionary with the page
//! writer splicing uses ([`encode_rows`] with no carried rows), so that its
//! pages are those a rewrite writes (long byte strings compressed by
//! [`super::snappy`]), and its next rewrite decodes them faster: one apply
//! of `cargo bench --bench lake` took 6.8-7.0 CPU seconds on a table loaded
//! so, 7.1-7.2 on one loaded through the Arrow writer. A column gets a
//! dictionary only when a sample of its values repeats: for mostly unique
//! values (ids, timestamps, JSON payloads) building one only to abandon it
//! costs a third of the encoding time and makes the file larger.

use super::batch::{Strings, view_schema};
use super::bloom::DynamicBloom;
use super::index::Slot;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::layout::{COMMIT_SEQNO, POSITION, RECORD_KEY};
use super::local::{BLOCK, to_block};
use super::splice::{NewColumn, Route, SpliceError};
use crate::config::model::ParquetCompression;

/// How a table's base files are encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoding {
    pub compression: ParquetCompression,
    /// Columns (lake field names) written without statistics: JSON
    /// documents, see the module doc.
    pub unordered: Vec<String>,
}

impl Encoding {
    /// How the base files of a table of `schema` are encoded.
    pub fn of(compression: ParquetCompression, schema: &super::layout::LakeSchema) -> Encoding {
        let json = Some(crate::event::types::ColumnType::Json);
        Encoding {
            compression,
            unordered: (schema.columns.iter())
                .filter(|c| c.ty() == json)
                .map(|c| c.field.clone())
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("{0}")]
    Layout(String),
    #[error(transparent)]
    Splice(#[from] SpliceError),
}

/// A new file-group id.
pub fn new_file_id() -> String {
    format!("{}-0", uuid::Uuid::new_v4())
}

/// The base file name of a slice. `token` is Hudi's write token
/// (`<task>-<stage>-<attempt>`, see [`write_token`]).
pub fn base_file_name(file_id: &str, token: &str, instant: &str) -> String {
    format!("{file_id}_{token}_{instant}.parquet")
}

/// A write token of its own for each commit attempt: two writers that
/// happen to pick the same instant (the same millisecond on top of the same
/// table state) never write the same path, so the loser's clean-up cannot
/// delete the winner's files.
pub fn write_token() -> String {
    format!("0-{}-0", uuid::Uuid::new_v4().as_u128() % 1_000_000_000)
}

/// `(fileId, instant)` of a base file name.
pub fn parse_base_file_name(name: &str) -> Option<(String, String)> {
    let stem = name.strip_suffix(".parquet")?;
    let mut parts = stem.split('_');
    let file_id = parts.next()?;
    let _token = parts.next()?;
    let instant = parts.next()?;
    if parts.next().is_some()
        || file_id.is_empty()
        || instant.is_empty()
        || !instant.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((file_id.to_string(), instant.to_string()))
}

/// Rows of a row group (about 25 MB of Arrow memory for 100-byte rows).
pub const MAX_ROW_GROUP_ROWS: usize = 250_000;

/// Values sampled per column to decide on a dictionary.
const DICTIONARY_SAMPLE: usize = 2048;

/// Whether the first values of a column are mostly distinct (more than half
/// of a sample), so a dictionary would not pay; `None` for a type the
/// sample does not read (the writer's default applies).
fn mostly_unique(array: &dyn Array) -> Option<bool> {
    let data = array.to_data();
    let mut seen: std::collections::HashSet<&[u8], foldhash::fast::RandomState> =
        std::collections::HashSet::with_capacity_and_hasher(DICTIONARY_SAMPLE, Default::default());
    let mut sampled = 0usize;
    let rows = (0..array.len())
        .filter(|r| array.is_valid(*r))
        .take(DICTIONARY_SAMPLE);
    let any = array.as_any();
    match array.data_type() {
        DataType::Utf8 | DataType::Utf8View => {
            let strings = Strings::of(array)?;
            for r in rows {
                seen.insert(strings.value(r).as_bytes());
                sampled += 1;
            }
        }
        DataType::Binary => {
            let a = any.downcast_ref::<arrow_array::BinaryArray>()?;
            for r in rows {
                seen.insert(a.value(r));
                sampled += 1;
            }
        }
        DataType::BinaryView => {
            let a = any.downcast_ref::<arrow_array::BinaryViewArray>()?;
            for r in rows {
                seen.insert(a.value(r));
                sampled += 1;
            }
        }
        ty => {
            let width = ty.primitive_width()?;
            let values = data.buffers().first()?.as_slice();
            for r in rows {
                let start = (data.offset() + r) * width;
                seen.insert(values.get(start..start + width)?);
                sampled += 1;
            }
        }
    }
    Some(sampled >= 64 && seen.len() * 2 > sampled)
}

fn properties(
    encoding: &Encoding,
    footer: Vec<(&'static str, String)>,
    no_dictionary: Vec<String>,
) -> WriterProperties {
    let codec = codec(encoding);
    let mut kv = vec![KeyValue::new(
        "writer.model.name".to_string(),
        "tidewater".to_string(),
    )];
    kv.extend(
        footer
            .into_iter()
            .map(|(k, v)| KeyValue::new(k.to_string(), v)),
    );
    let column = |name: &str| ColumnPath::from(vec![name.to_string()]);
    let mut builder = WriterProperties::builder();
    for name in no_dictionary {
        builder = builder.set_column_dictionary_enabled(column(&name), false);
    }
    for name in &encoding.unordered {
        builder = builder.set_column_statistics_enabled(column(name), EnabledStatistics::None);
    }
    builder
        .set_compression(codec)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        // Values unique per row: a dictionary only costs time.
        .set_column_dictionary_enabled(column(COMMIT_SEQNO), false)
        .set_column_dictionary_enabled(column(RECORD_KEY), false)
        .set_column_dictionary_enabled(column(POSITION), false)
        // Never a predicate: see the module doc.
        .set_column_statistics_enabled(column(COMMIT_SEQNO), EnabledStatistics::None)
        .set_column_statistics_enabled(column(POSITION), EnabledStatistics::None)
        .set_created_by(concat!("tidewater ", env!("CARGO_PKG_VERSION")).to_string())
        .set_key_value_metadata(Some(kv))
        .build()
}

/// Encodes one base file from whole batches, with the record keys' bloom
/// filter and key range in its footer: [`encode_rows`] with the first batch
/// as the carried rows and the others as fresh ones.
pub fn encode(
    schema: &arrow_schema::SchemaRef,
    batches: &[RecordBatch],
    encoding: &Encoding,
    carried: Option<DynamicBloom>,
) -> Result<Bytes, FileError> {
    let mut keys = Vec::with_capacity(batches.len());
    for batch in batches {
        keys.push(record_keys(batch)?);
    }
    let fresh_keys: Vec<&str> = keys.iter().skip(1).flat_map(|k| k.iter()).collect();
    encode_rows(
        schema,
        batches.first(),
        carried,
        &fresh_keys,
        0,
        batches.iter().skip(1).cloned().map(Ok::<_, FileError>),
        encoding,
    )
}

fn record_keys(batch: &RecordBatch) -> Result<Strings<'_>, FileError> {
    batch
        .column_by_name(RECORD_KEY)
        .and_then(|c| Strings::of(c.as_ref()))
        .ok_or_else(|| FileError::Layout("no record key column".into()))
}

/// Encodes one base file: the `carried` rows (what survives of the stored
/// slice, whose bloom filter is `filter`), then the `fresh` batches, built
/// by the caller one after the other, so that only one of them is in
/// memory at a time beside the encoded file. `fresh_keys` are the fresh
/// rows' record keys, in order: the footer's bloom filter and key range are
/// made before the first row is written. The previous version's `filter`
/// is extended with the fresh keys when [`DynamicBloom::can_extend`]
/// allows, instead of hashing every key again; the first `known` fresh
/// keys (rows of the stored slice written anew, as updates are) are in it
/// already and are not added twice.
pub fn encode_rows<E: From<FileError>>(
    schema: &arrow_schema::SchemaRef,
    carried: Option<&RecordBatch>,
    filter: Option<DynamicBloom>,
    fresh_keys: &[&str],
    known: usize,
    mut fresh: impl Iterator<Item = Result<RecordBatch, E>>,
    encoding: &Encoding,
) -> Result<Bytes, E> {
    // The dictionaries are decided on a sample of the first rows: the
    // carried ones of a rewrite, else the first fresh batch.
    let mut first_fresh = None;
    let sampled = match carried.filter(|b| b.num_rows() > 0) {
        Some(batch) => Some(batch),
        None => {
            first_fresh = fresh.next().transpose()?;
            first_fresh.as_ref()
        }
    };
    let properties = prepare(
        schema, carried, filter, fresh_keys, known, sampled, encoding,
    )?;
    if carried.is_none_or(|b| b.num_rows() == 0)
        && let Some(routes) =
            super::splice::plan_new(schema, |descr| properties.dictionary_enabled(descr.path()))
    {
        return encode_new(
            schema,
            properties,
            &routes,
            fresh_keys.len(),
            first_fresh,
            fresh,
        );
    }
    // The fresh rows are taken to be as large as the rows sampled.
    let carried_size = carried.map_or(0, RecordBatch::get_array_memory_size);
    let fresh_size = sampled.map_or(0, |b| {
        room(
            b.get_array_memory_size(),
            b.num_rows(),
            fresh_keys.len(),
            FILE_ROOM,
        )
    });
    let mut out = Aligned::with_capacity((carried_size / 3 + fresh_size).min(FILE_ROOM) + 1024);
    let mut writer = ArrowWriter::try_new(&mut out, schema.clone(), Some(properties))
        .map_err(FileError::from)?;
    if let Some(batch) = carried {
        writer.write(batch).map_err(FileError::from)?;
    }
    for batch in first_fresh.into_iter().map(Ok).chain(fresh) {
        writer.write(&batch?).map_err(FileError::from)?;
    }
    writer.close().map_err(FileError::from)?;
    Ok(out.into_bytes())
}

/// The most room set aside for a file, and for one column of one of a new
/// file's row groups, before they are written.
const FILE_ROOM: usize = 256 << 20;
const COLUMN_ROOM: usize = 32 << 20;

/// Room for `rows` rows once encoded, from `memory`, the Arrow memory of
/// `sampled` rows like them: a third of it per row (Parquet with
/// compression), at most `cap`, since a sliced batch states the memory of
/// the arrays it was cut from. What outgrows its room grows.
fn room(memory: usize, sampled: usize, rows: usize, cap: usize) -> usize {
    (memory / sampled.max(1))
        .saturating_mul(rows)
        .min(cap.saturating_mul(3))
        / 3
}

/// A file written a column chunk at a time: its writer, the column writers
/// of its row groups for the columns Arrow writes, its leaves, whether each
/// has chunk statistics, and its codec.
struct PageFile<W: std::io::Write + Send> {
    file: parquet::file::writer::SerializedFileWriter<W>,
    factory: parquet::arrow::arrow_writer::ArrowRowGroupWriterFactory,
    descriptors: Vec<parquet::schema::types::ColumnDescPtr>,
    stats: Vec<bool>,
    codec: Compression,
}

impl<W: std::io::Write + Send> PageFile<W> {
    fn open(
        out: W,
        schema: &arrow_schema::SchemaRef,
        properties: WriterProperties,
    ) -> Result<Self, parquet::errors::ParquetError> {
        let codec = properties.compression(&ColumnPath::from(Vec::<String>::new()));
        let writer = ArrowWriter::try_new(out, schema.clone(), Some(properties))?;
        let (file, factory) = writer.into_serialized_writer()?;
        let descriptors = file.schema_descr().columns().to_vec();
        let written = file.properties();
        let stats = (descriptors.iter())
            .map(|d| written.statistics_enabled(d.path()) != EnabledStatistics::None)
            .collect();
        Ok(PageFile {
            file,
            factory,
            descriptors,
            stats,
            codec,
        })
    }

    /// Writes the footer.
    fn close(self) -> Result<(), parquet::errors::ParquetError> {
        self.file.close().map(drop)
    }
}

/// Encodes a new file (no stored rows) of `rows` rows from the batches
/// `first`, then `fresh`, as they come, in row groups of at most
/// [`MAX_ROW_GROUP_ROWS`]: the columns `routes` sends to
/// [`Route::Splice`] as PLAIN pages, as a rewrite writes its new rows (so
/// that text pages get the same encoder, [`super::snappy`]), the others
/// through the Arrow writer's column writers.
fn encode_new<E: From<FileError>>(
    schema: &arrow_schema::SchemaRef,
    properties: WriterProperties,
    routes: &[Route],
    rows: usize,
    first: Option<RecordBatch>,
    mut fresh: impl Iterator<Item = Result<RecordBatch, E>>,
) -> Result<Bytes, E> {
    let spliced = |e: SpliceError| E::from(FileError::from(e));
    let parquet = |e: parquet::errors::ParquetError| E::from(FileError::from(e));
    // Room for the file and for each column of a row group, from the first
    // batch.
    let sampled = first.as_ref().map_or(0, RecordBatch::num_rows);
    let memory: Vec<usize> = (first.iter())
        .flat_map(|b| b.columns().iter().map(|c| c.get_array_memory_size()))
        .collect();
    let mut out =
        Aligned::with_capacity(room(memory.iter().sum(), sampled, rows, FILE_ROOM) + 1024);
    let mut page = PageFile::open(&mut out, schema, properties).map_err(parquet)?;
    let new_file = super::splice::NewFile {
        routes,
        fields: schema.fields(),
        descriptors: &page.descriptors,
        stats: &page.stats,
        codec: page.codec,
    };
    let mut pending = first;
    let mut left = rows;
    let mut index = 0usize;
    loop {
        if pending.is_none() {
            pending = fresh.next().transpose()?;
        }
        let Some(batch) = pending.as_ref() else {
            break;
        };
        if batch.num_rows() == 0 {
            pending = None;
            continue;
        }
        let group = left.max(batch.num_rows()).min(MAX_ROW_GROUP_ROWS);
        let rooms: Vec<usize> = (0..routes.len())
            .map(|i| {
                let memory = memory.get(i).copied().unwrap_or(0);
                room(memory, sampled, group, COLUMN_ROOM) + 4096
            })
            .collect();
        let writers = page.factory.create_column_writers(index).map_err(parquet)?;
        index += 1;
        let mut failed = None;
        let mut taken = 0usize;
        let mut next = || -> Option<RecordBatch> {
            let batch = match pending.take() {
                Some(b) => b,
                None => match fresh.next()? {
                    Ok(b) => b,
                    Err(e) => {
                        failed = Some(e);
                        return None;
                    }
                },
            };
            let space = MAX_ROW_GROUP_ROWS - taken;
            if space == 0 {
                pending = Some(batch);
                return None;
            }
            if batch.num_rows() > space {
                pending = Some(batch.slice(space, batch.num_rows() - space));
                taken += space;
                return Some(batch.slice(0, space));
            }
            taken += batch.num_rows();
            Some(batch)
        };
        let columns = new_file
            .row_group(writers, &rooms, &mut next)
            .map_err(spliced)?;
        if let Some(e) = failed {
            return Err(e);
        }
        left = left.saturating_sub(taken);
        let mut row_group = page.file.next_row_group().map_err(parquet)?;
        for column in columns {
            match column {
                NewColumn::Pages(bytes, close) => row_group.append_column(&bytes, close),
                NewColumn::Arrow(chunk) => chunk.append_to_row_group(&mut row_group),
            }
            .map_err(parquet)?;
        }
        row_group.close().map_err(parquet)?;
    }
    page.close().map_err(parquet)?;
    Ok(out.into_bytes())
}

/// The writer properties of one base file: its footer (the bloom filter and
/// key range of the `carried` rows' keys, then `fresh_keys`; see
/// [`encode_rows`] for `filter` and `known`) and the columns that get no
/// dictionary, decided on the `sampled` rows (columns by name: a batch may
/// hold only some of them).
fn prepare(
    schema: &arrow_schema::SchemaRef,
    carried: Option<&RecordBatch>,
    filter: Option<DynamicBloom>,
    fresh_keys: &[&str],
    known: usize,
    sampled: Option<&RecordBatch>,
    encoding: &Encoding,
) -> Result<WriterProperties, FileError> {
    let carried_keys = carried.map(record_keys).transpose()?;
    let carried_count = carried_keys
        .as_ref()
        .map_or(0, |k| k.len() - k.null_count());
    let count = carried_count + fresh_keys.len();
    let adds = fresh_keys.get(known..).unwrap_or_default();
    let filter = filter
        .filter(|f| f.can_extend(count, adds.len()))
        .map(|f| (f, adds.to_vec()));
    let footer = super::bloom::footer(
        count,
        carried_keys
            .iter()
            .flat_map(|k| k.iter())
            .chain(fresh_keys.iter().copied()),
        filter,
    );
    let no_dictionary: Vec<String> = sampled
        .map(|batch| {
            schema
                .fields()
                .iter()
                .filter(|f| {
                    batch
                        .column_by_name(f.name())
                        .is_some_and(|c| mostly_unique(c.as_ref()) == Some(true))
                })
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    Ok(properties(encoding, footer, no_dictionary))
}

/// A stored slice rewritten page by page ([`super::splice`]).
pub struct Spliced<'a> {
    pub bytes: &'a Bytes,
    pub metadata: &'a ParquetMetaData,
    /// How each column is written ([`super::splice::plan`]).
    pub routes: &'a [Route],
    /// One flag per stored row: whether it is carried over.
    pub keep: &'a [bool],
    /// The carried rows of the columns decoded from the stored slice (at
    /// least the record key and every column routed through Arrow), with
    /// `_hoodie_file_name` set to the new file's.
    pub carried: &'a RecordBatch,
    /// The new file's name: every carried row's `_hoodie_file_name`.
    pub file: &'a str,
}

/// Encodes one base file from a stored slice spliced page by page: each
/// stored row group keeps its rows that `keep` flags, and the `fresh`
/// batches are appended to the last one. Columns routed through Arrow are
/// encoded from the carried batch and the fresh rows. The footer is made as
/// [`encode_rows`] makes it. [`SpliceError::Unsupported`] when the stored
/// slice cannot be spliced after all: nothing is written then, and the
/// caller encodes the file through Arrow.
pub fn encode_spliced(
    schema: &arrow_schema::SchemaRef,
    stored: Spliced<'_>,
    filter: Option<DynamicBloom>,
    fresh_keys: &[&str],
    known: usize,
    fresh: &[RecordBatch],
    encoding: &Encoding,
) -> Result<Bytes, SpliceError> {
    let groups = stored.metadata.row_groups();
    let sizes: Vec<usize> = groups
        .iter()
        .map(|g| usize::try_from(g.num_rows()).unwrap_or(0))
        .collect();
    if sizes.iter().sum::<usize>() != stored.keep.len() {
        return Err(SpliceError::Unsupported(
            "a keep mask of another length than the slice".into(),
        ));
    }
    let fresh_rows: usize = fresh.iter().map(RecordBatch::num_rows).sum();
    let last_start = stored.keep.len() - sizes.last().copied().unwrap_or(0);
    let last_kept = (stored.keep.get(last_start..).unwrap_or_default().iter())
        .filter(|k| **k)
        .count();
    if last_kept + fresh_rows > MAX_ROW_GROUP_ROWS {
        return Err(SpliceError::Unsupported(
            "new rows overflowing the last row group".into(),
        ));
    }
    let sampled = Some(stored.carried)
        .filter(|b| b.num_rows() > 0)
        .or(fresh.first());
    let properties = prepare(
        schema,
        Some(stored.carried),
        filter,
        fresh_keys,
        known,
        sampled,
        encoding,
    )
    // Only a slice without record keys fails here; the Arrow path names it.
    .map_err(|e| SpliceError::Unsupported(e.to_string()))?;
    let fresh_size: usize = fresh.iter().map(RecordBatch::get_array_memory_size).sum();
    let mut out = Aligned::with_capacity(stored.bytes.len() + fresh_size / 2 + 1024);
    let mut page = PageFile::open(&mut out, schema, properties)?;
    let mut row = 0usize;
    let mut carried_row = 0usize;
    let mut index = 0usize;
    for (g, (group, size)) in groups.iter().zip(&sizes).enumerate() {
        let keep = stored.keep.get(row..row + size).unwrap_or_default();
        row += size;
        let kept = keep.iter().filter(|k| **k).count();
        let last = g + 1 == groups.len();
        let fresh_here: &[RecordBatch] = if last { fresh } else { &[] };
        if kept == 0 && fresh_here.iter().all(|b| b.num_rows() == 0) {
            continue;
        }
        let carried = stored.carried.slice(carried_row, kept);
        carried_row += kept;
        let mut writers = page.factory.create_column_writers(index)?.into_iter();
        index += 1;
        let mut row_group = page.file.next_row_group()?;
        for (i, (route, field)) in stored.routes.iter().zip(schema.fields()).enumerate() {
            let arrow_writer = writers.next();
            match route {
                Route::Splice(kind) | Route::Dictionary(kind) => {
                    let (Some(chunk), Some(descr), Some(&stats)) = (
                        group.columns().get(i),
                        page.descriptors.get(i),
                        page.stats.get(i),
                    ) else {
                        return Err(SpliceError::Unsupported("a column missing".into()));
                    };
                    let input = super::splice::Column {
                        stored: stored.bytes,
                        chunk,
                        rows: *size,
                        keep,
                        fresh: super::splice::fresh_columns(fresh_here, i),
                    };
                    let (bytes, close) = if matches!(route, Route::Dictionary(_)) {
                        let constant = (field.name() == super::layout::FILE_NAME)
                            .then_some(stored.file.as_bytes());
                        super::splice::dictionary_column(
                            input,
                            *kind,
                            descr.clone(),
                            stats,
                            page.codec,
                            constant,
                        )?
                    } else {
                        super::splice::column(input, *kind, descr.clone(), stats, page.codec)?
                    };
                    row_group.append_column(&bytes, close)?;
                }
                Route::Arrow => {
                    let (Some(mut w), Some(column)) =
                        (arrow_writer, carried.column_by_name(field.name()))
                    else {
                        return Err(SpliceError::Unsupported(format!(
                            "no carried values of `{}`",
                            field.name()
                        )));
                    };
                    let fresh_arrays = fresh_here.iter().filter_map(|b| b.columns().get(i));
                    for array in std::iter::once(column).chain(fresh_arrays) {
                        super::splice::write_leaves(&mut w, field, array)?;
                    }
                    w.close()?.append_to_row_group(&mut row_group)?;
                }
            }
        }
        row_group.close()?;
    }
    page.close()?;
    Ok(out.into_bytes())
}

/// An encoded file that starts on a block boundary: a local store writing
/// with `O_DIRECT` takes it in place, with no copy into an aligned buffer
/// (`local`). Bytes before the boundary are padding; when the file
/// outgrows the buffer, it moves to a larger one, on a boundary again.
struct Aligned {
    buffer: Vec<u8>,
    pad: usize,
}

impl Aligned {
    fn with_capacity(capacity: usize) -> Aligned {
        let mut buffer: Vec<u8> = Vec::with_capacity(capacity + BLOCK);
        let pad = to_block(buffer.as_ptr());
        buffer.resize(pad, 0);
        Aligned { buffer, pad }
    }

    fn into_bytes(self) -> Bytes {
        Bytes::from(self.buffer).slice(self.pad..)
    }
}

impl std::io::Write for Aligned {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buffer.len() + bytes.len() > self.buffer.capacity() {
            let held = self.buffer.get(self.pad..).unwrap_or_default();
            let mut larger = Aligned::with_capacity(2 * (held.len() + bytes.len()));
            larger.buffer.extend_from_slice(held);
            *self = larger;
        }
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes a whole base file into one batch (strings as strings).
pub fn decode(bytes: Bytes) -> Result<RecordBatch, FileError> {
    decode_with(ParquetRecordBatchReaderBuilder::try_new(bytes)?).map(|(batch, _)| batch)
}

/// Decodes a whole base file into one batch, strings and binaries as views
/// into the decompressed pages, with the bloom filter of its footer (if it
/// has a readable one).
pub fn decode_base_file(bytes: Bytes) -> Result<(RecordBatch, Option<DynamicBloom>), FileError> {
    let views = stored_metadata(&bytes)?;
    decode_with(ParquetRecordBatchReaderBuilder::new_with_metadata(
        bytes, views,
    ))
}

/// The footer of a base file, read with strings and binaries as views.
pub fn stored_metadata<R: parquet::file::reader::ChunkReader>(
    bytes: &R,
) -> Result<ArrowReaderMetadata, FileError> {
    let plain = ArrowReaderMetadata::load(bytes, ArrowReaderOptions::new())?;
    Ok(ArrowReaderMetadata::try_new(
        plain.metadata().clone(),
        ArrowReaderOptions::new().with_schema(view_schema(plain.schema())),
    )?)
}

/// Decodes the columns `wanted` (by leaf number) of a base file whose footer
/// is `metadata` ([`stored_metadata`]) into one batch, with the bloom
/// filter of its footer.
pub fn decode_columns(
    bytes: Bytes,
    metadata: ArrowReaderMetadata,
    wanted: &[usize],
) -> Result<(RecordBatch, Option<DynamicBloom>), FileError> {
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, metadata);
    let mask = ProjectionMask::leaves(builder.parquet_schema(), wanted.iter().copied());
    decode_with(builder.with_projection(mask))
}

/// The Parquet codec of an encoding.
pub fn codec(encoding: &Encoding) -> Compression {
    match encoding.compression {
        ParquetCompression::None => Compression::UNCOMPRESSED,
        ParquetCompression::Snappy => Compression::SNAPPY,
        ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
        ParquetCompression::Gzip => Compression::GZIP(GzipLevel::default()),
    }
}

fn decode_with(
    builder: ParquetRecordBatchReaderBuilder<Bytes>,
) -> Result<(RecordBatch, Option<DynamicBloom>), FileError> {
    let kv = builder.metadata().file_metadata().key_value_metadata();
    let value = |key: &str| {
        kv.and_then(|kv| kv.iter().find(|e| e.key == key))
            .and_then(|e| e.value.as_deref())
    };
    let filter = (value(super::bloom::FOOTER_TYPE) == Some("DYNAMIC_V0"))
        .then(|| value(super::bloom::FOOTER_FILTER))
        .flatten()
        .and_then(DynamicBloom::from_base64);
    // One batch for the whole file: no concatenation afterwards.
    let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let builder = builder.with_batch_size(rows.max(1));
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build()?.collect::<Result<_, _>>()?;
    let batch = match <[RecordBatch; 1]>::try_from(batches) {
        Ok([batch]) => batch,
        Err(batches) => arrow_select::concat::concat_batches(&schema, &batches)?,
    };
    Ok((batch, filter))
}

/// How many bytes at the end of a stored file of `size` bytes are read
/// first to find its footer: a tenth of it, from 64 KiB to 16 MiB. A base
/// file's footer is mostly its bloom filter, about eight bytes a row
/// against a hundred or more of the row's own (866 KB of the benchmark's
/// 12.4 MB files), so one read finds most footers whole; a larger footer
/// costs one read more.
pub fn footer_guess(size: u64) -> u64 {
    (size / 10).clamp(64 << 10, 16 << 20)
}

/// The size of the footer (the metadata and its 8-byte trailer) of a
/// Parquet file whose last bytes are `tail`.
pub fn footer_size(tail: &[u8]) -> Result<u64, FileError> {
    let trailer: &[u8; 8] = tail.last_chunk().ok_or_else(|| {
        FileError::Layout(format!(
            "{} bytes are too few for a Parquet footer",
            tail.len()
        ))
    })?;
    let footer = parquet::file::metadata::FooterTail::try_new(trailer).map_err(|_| {
        FileError::Layout("the file does not end in a Parquet footer (`PAR1`)".into())
    })?;
    Ok(footer.metadata_length() as u64 + 8)
}

/// Some byte ranges of a stored file, read by range: what decoding some of
/// its columns needs (its footer and those columns' chunks) without the
/// rest of the file. A read of bytes that were not fetched fails, naming
/// them: nothing is made up.
pub struct Ranges {
    size: u64,
    /// Each range's first byte and its bytes, by first byte.
    parts: Vec<(u64, Bytes)>,
}

impl Ranges {
    /// The ranges `parts` (first byte, bytes) of a file of `size` bytes.
    pub fn new(size: u64, mut parts: Vec<(u64, Bytes)>) -> Ranges {
        parts.sort_by_key(|(start, _)| *start);
        Ranges { size, parts }
    }

    /// The bytes from `start` on, `length` of them or to the end of the
    /// range that holds `start`; `None` unless one range holds them all.
    fn slice(&self, start: u64, length: Option<usize>) -> Option<Bytes> {
        if length == Some(0) {
            return Some(Bytes::new());
        }
        let i = self.parts.partition_point(|(first, _)| *first <= start);
        let (first, bytes) = self.parts.get(i.checked_sub(1)?)?;
        let from = usize::try_from(start - first).ok()?;
        let to = match length {
            Some(n) => from.checked_add(n)?,
            // A reader from `start` on: at least one byte there.
            None if from < bytes.len() => bytes.len(),
            None => return None,
        };
        (from <= to && to <= bytes.len()).then(|| bytes.slice(from..to))
    }

    fn missing(&self, start: u64, length: Option<usize>) -> parquet::errors::ParquetError {
        let end = length.map_or("its range's end".to_string(), |n| {
            start.saturating_add(n as u64).to_string()
        });
        parquet::errors::ParquetError::General(format!(
            "bytes {start}..{end} of a {}-byte file were not read",
            self.size
        ))
    }
}

impl parquet::file::reader::Length for Ranges {
    fn len(&self) -> u64 {
        self.size
    }
}

impl parquet::file::reader::ChunkReader for Ranges {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        self.slice(start, None)
            .map(Buf::reader)
            .ok_or_else(|| self.missing(start, None))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, Some(length))
            .ok_or_else(|| self.missing(start, Some(length)))
    }
}

/// The footer of a base file of `size` bytes, from its last bytes `tail`
/// (at least [`footer_size`] of them), read as [`stored_metadata`] reads it.
pub fn footer_metadata(size: u64, tail: Bytes) -> Result<ArrowReaderMetadata, FileError> {
    let first = size.checked_sub(tail.len() as u64).ok_or_else(|| {
        FileError::Layout(format!(
            "{} bytes read from the end of a {size}-byte file",
            tail.len()
        ))
    })?;
    stored_metadata(&Ranges::new(size, vec![(first, tail)]))
}

/// Where a base file keeps its record keys: the byte range of that
/// column's chunk in each row group (from its dictionary page, if any),
/// each checked to lie before `footer_start`, where the footer begins. A
/// chunk of no bytes is left out.
pub fn key_chunks(
    metadata: &ParquetMetaData,
    footer_start: u64,
) -> Result<Vec<std::ops::Range<u64>>, FileError> {
    let leaf = key_leaf(metadata)?;
    let mut chunks = Vec::new();
    for (n, group) in metadata.row_groups().iter().enumerate() {
        let bad =
            |what: &str| FileError::Layout(format!("row group {n}: its {RECORD_KEY} chunk {what}"));
        let column = group.columns().get(leaf).ok_or_else(|| bad("is missing"))?;
        let start = column
            .dictionary_page_offset()
            .unwrap_or_else(|| column.data_page_offset());
        let start = u64::try_from(start).map_err(|_| bad("starts before the file"))?;
        let length =
            u64::try_from(column.compressed_size()).map_err(|_| bad("has a negative size"))?;
        let end = start
            .checked_add(length)
            .filter(|end| *end <= footer_start)
            .ok_or_else(|| bad(&format!("ends past the footer at byte {footer_start}")))?;
        if end > start {
            chunks.push(start..end);
        }
    }
    Ok(chunks)
}

/// The leaf number of the record key column (a top-level column).
fn key_leaf(metadata: &ParquetMetaData) -> Result<usize, FileError> {
    metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().parts() == [RECORD_KEY])
        .ok_or_else(|| FileError::Layout(format!("no {RECORD_KEY} column")))
}

/// The slots [`decode_key_slots`] reads from a key column holding `keys`.
#[cfg(test)]
pub(crate) fn slots_of_keys(keys: &[Option<String>]) -> Vec<Slot> {
    keys.iter()
        .map(|k| Slot::of(k.as_deref().unwrap_or("")))
        .collect()
}

/// The index slots of a base file's record keys, in row order (a NULL key
/// reads as the empty key, as everywhere else). Only that column is
/// decoded: `file` needs to hold no more than its chunks (see
/// [`key_chunks`]), its footer being `metadata` ([`stored_metadata`]).
pub fn decode_key_slots<R: parquet::file::reader::ChunkReader + 'static>(
    file: R,
    metadata: ArrowReaderMetadata,
) -> Result<Vec<Slot>, FileError> {
    let leaf = key_leaf(metadata.metadata())?;
    let builder =
        ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata).with_batch_size(65_536);
    let mask = ProjectionMask::leaves(builder.parquet_schema(), [leaf]);
    let reader = builder.with_projection(mask).build()?;
    let mut slots = Vec::new();
    for batch in reader {
        let batch = batch?;
        let keys = batch
            .column_by_name(RECORD_KEY)
            .ok_or_else(|| FileError::Layout(format!("no {RECORD_KEY} column")))?;
        let keys = Strings::of(keys.as_ref())
            .ok_or_else(|| FileError::Layout("record keys are not strings".into()))?;
        slots.extend(
            (0..keys.len()).map(|r| Slot::of(if keys.is_valid(r) { keys.value(r) } else { "" })),
        );
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::datum::Datum;
    use crate::event::sample::{self, Rng};
    use crate::lake::batch::{array_of, datum_at, project};
    use arrow_array::{ArrayRef, StringArray};
    use arrow_schema::{Field, Schema};
    use std::sync::Arc;

    /// A file with every column type, the record key first, and its values.
    fn every_type_file(rows: usize) -> (RecordBatch, Vec<Vec<Datum>>) {
        let mut rng = Rng::new(7);
        let types = sample::all_types();
        let mut fields = vec![Field::new(RECORD_KEY, DataType::Utf8, true)];
        let keys: Vec<String> = (0..rows).map(|r| format!("key-{r:06}")).collect();
        let mut columns: Vec<arrow_array::ArrayRef> =
            vec![std::sync::Arc::new(StringArray::from_iter_values(&keys))];
        let mut values = Vec::new();
        for (i, ty) in types.iter().enumerate() {
            let column: Vec<Datum> = (0..rows)
                .map(|r| {
                    if r % 11 == 0 {
                        Datum::Null
                    } else {
                        sample::value(&mut rng, ty)
                    }
                })
                .collect();
            let refs: Vec<&Datum> = column.iter().collect();
            let array = array_of("c", ty, &refs).unwrap();
            fields.push(Field::new(format!("c{i}"), array.data_type().clone(), true));
            columns.push(array);
            values.push(column);
        }
        let schema = std::sync::Arc::new(Schema::new(fields));
        (RecordBatch::try_new(schema, columns).unwrap(), values)
    }

    /// A column chunk's min, max and null count.
    type ChunkStatistics = (Option<Vec<u8>>, Option<Vec<u8>>, Option<u64>);

    /// The statistics of every column chunk, per row group.
    fn chunk_statistics(bytes: &Bytes) -> Vec<Vec<ChunkStatistics>> {
        let metadata = stored_metadata(bytes).unwrap();
        (metadata.metadata().row_groups().iter())
            .map(|g| {
                (g.columns().iter())
                    .map(|c| match c.statistics() {
                        Some(s) => (
                            s.min_bytes_opt().map(<[u8]>::to_vec),
                            s.max_bytes_opt().map(<[u8]>::to_vec),
                            s.null_count_opt(),
                        ),
                        None => (None, None, None),
                    })
                    .collect()
            })
            .collect()
    }

    /// The columns of `batch` but structs (several leaves per field: such
    /// files are not spliced).
    fn flat(batch: &RecordBatch) -> RecordBatch {
        let keep: Vec<usize> = (batch.schema().fields().iter().enumerate())
            .filter(|(_, f)| !matches!(f.data_type(), DataType::Struct(_)))
            .map(|(i, _)| i)
            .collect();
        batch.project(&keep).unwrap()
    }

    /// `stored` (of `stored_rows`) spliced as a commit splices it, the
    /// columns `wanted` decoded: the rows `keep` flags, then the `fresh`
    /// rows (and their keys); and the same rows filtered through Arrow.
    fn splice_rows(
        stored: &Bytes,
        stored_rows: &RecordBatch,
        routes: &[Route],
        keep: &[bool],
        wanted: &[usize],
        (fresh, fresh_keys): (&RecordBatch, &[&str]),
        encoding: &Encoding,
    ) -> (Bytes, RecordBatch) {
        let metadata = stored_metadata(stored).unwrap();
        let (part, filter) = decode_columns(stored.clone(), metadata.clone(), wanted).unwrap();
        let carried = crate::lake::commit::carry(&part, keep, "f.parquet").unwrap();
        let spliced = encode_spliced(
            &stored_rows.schema(),
            Spliced {
                bytes: stored,
                metadata: metadata.metadata(),
                routes,
                keep,
                carried: &carried,
                file: "f.parquet",
            },
            filter,
            fresh_keys,
            0,
            std::slice::from_ref(fresh),
            encoding,
        )
        .unwrap();
        let kept = arrow_select::filter::filter_record_batch(
            stored_rows,
            &arrow_array::BooleanArray::from(keep.to_vec()),
        )
        .unwrap();
        let expected =
            arrow_select::concat::concat_batches(&stored_rows.schema(), &[kept, fresh.clone()])
                .unwrap();
        (spliced, expected)
    }

    #[test]
    fn a_spliced_file_holds_the_kept_rows_then_the_fresh_ones() {
        use crate::lake::splice::{Route, plan};
        let all = flat(&every_type_file(33_000).0);
        let schema = all.schema();
        let stored_rows = all.slice(0, 30_000);
        let fresh = all.slice(30_000, 3_000);
        let fresh_keys: Vec<String> = (30_000..33_000).map(|r| format!("key-{r:06}")).collect();
        let fresh_keys: Vec<&str> = fresh_keys.iter().map(String::as_str).collect();
        for encoding in every_codec() {
            let compression = encoding.compression;
            // One row group as a commit writes it, and three of 10,000 rows
            // (the middle one emptied below).
            let mut groups = ArrowWriter::try_new(
                Vec::new(),
                schema.clone(),
                Some(
                    WriterProperties::builder()
                        .set_compression(codec(&encoding))
                        .set_dictionary_enabled(false)
                        .set_max_row_group_row_count(Some(10_000))
                        .build(),
                ),
            )
            .unwrap();
            groups.write(&stored_rows).unwrap();
            let three = Bytes::from(groups.into_inner().unwrap());
            let one = encode(&schema, std::slice::from_ref(&stored_rows), &encoding, None).unwrap();
            for (stored, empty_middle) in [(one, false), (three, true)] {
                let metadata = stored_metadata(&stored).unwrap();
                let routes = plan(metadata.metadata(), &schema, codec(&encoding)).unwrap();
                assert!(
                    routes
                        .iter()
                        .filter(|r| matches!(r, Route::Splice(_) | Route::Dictionary(_)))
                        .count()
                        >= 8
                );
                assert!(
                    routes.contains(&Route::Arrow),
                    "booleans and floats: {routes:?}"
                );
                // Runs of every length dropped, and the middle row group
                // of the second file dropped whole.
                let keep: Vec<bool> = (0..30_000)
                    .map(|r| {
                        r >= 100
                            && r % 7 != 3
                            && r % 13 != 0
                            && !(empty_middle && (10_000..20_000).contains(&r))
                    })
                    .collect();
                let wanted: Vec<usize> = (routes.iter().enumerate())
                    .filter(|(i, r)| *i == 0 || **r == Route::Arrow)
                    .map(|(i, _)| i)
                    .collect();
                let (spliced, expected) = splice_rows(
                    &stored,
                    &stored_rows,
                    &routes,
                    &keep,
                    &wanted,
                    (&fresh, &fresh_keys),
                    &encoding,
                );
                let through_arrow =
                    encode(&schema, std::slice::from_ref(&expected), &encoding, None).unwrap();
                assert_eq!(
                    decode(spliced.clone()).unwrap(),
                    expected,
                    "{compression:?}"
                );
                let groups = stored_metadata(&spliced).unwrap();
                let groups = groups.metadata().row_groups();
                assert_eq!(groups.len(), if empty_middle { 2 } else { 1 });
                let pages = (groups.last().unwrap().columns().iter())
                    .map(|c| c.compressed_size())
                    .sum::<i64>();
                assert!(pages > 0);
                // Statistics as the Arrow writer makes them, for one row
                // group (the single-group file).
                if !empty_middle {
                    let ours = chunk_statistics(&spliced);
                    let theirs = chunk_statistics(&through_arrow);
                    assert!(
                        routes.iter().any(|r| matches!(r, Route::Dictionary(_))),
                        "the repeating columns of a commit's file have dictionaries: {routes:?}"
                    );
                    for (i, route) in routes.iter().enumerate() {
                        if matches!(route, Route::Splice(_) | Route::Dictionary(_)) {
                            assert_eq!(
                                ours[0][i], theirs[0][i],
                                "statistics of column {i} ({compression:?})"
                            );
                        }
                    }
                }
                // The footer's key range covers the kept and fresh keys.
                let kv = stored_metadata(&spliced).unwrap();
                let kv = kv.metadata().file_metadata().key_value_metadata().unwrap();
                let max = kv
                    .iter()
                    .find(|e| e.key == "hoodie_max_record_key")
                    .and_then(|e| e.value.clone());
                assert_eq!(max.as_deref(), Some("key-032999"));
            }
        }
    }

    /// The encodings of every codec a table can have.
    fn every_codec() -> [Encoding; 3] {
        [
            ParquetCompression::Snappy,
            ParquetCompression::Zstd,
            ParquetCompression::None,
        ]
        .map(|compression| Encoding {
            compression,
            unordered: vec![],
        })
    }

    /// A batch of the record keys `keys`, then `columns` (name, values,
    /// nullable).
    fn keyed_batch(keys: &[String], columns: Vec<(&str, ArrayRef, bool)>) -> RecordBatch {
        let mut fields = vec![Field::new(RECORD_KEY, DataType::Utf8, true)];
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(keys))];
        for (name, array, nullable) in columns {
            fields.push(Field::new(name, array.data_type().clone(), nullable));
            arrays.push(array);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
    }

    /// A new file's rows, written as a commit writes a new file group (no
    /// stored rows, the batches as they come).
    fn encode_new_rows(batches: &[RecordBatch], encoding: &Encoding) -> Bytes {
        let keys: Vec<String> = (batches.iter())
            .flat_map(|b| {
                record_keys(b)
                    .unwrap()
                    .iter()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        encode_rows::<FileError>(
            &batches[0].schema(),
            None,
            None,
            &keys,
            0,
            batches.iter().cloned().map(Ok),
            encoding,
        )
        .unwrap()
    }

    #[test]
    fn a_new_file_writes_its_plain_columns_page_by_page() {
        use crate::lake::splice::{Route, plan_new};
        let all = flat(&every_type_file(12_000).0);
        let schema = all.schema();
        // Batches of uneven sizes, as a commit builds them.
        let batches = vec![
            all.slice(0, 4_096),
            all.slice(4_096, 1),
            all.slice(4_097, 7_903),
        ];
        for encoding in every_codec() {
            let compression = encoding.compression;
            let new = encode_new_rows(&batches, &encoding);
            let through_arrow =
                encode(&schema, std::slice::from_ref(&all), &encoding, None).unwrap();
            assert_eq!(decode(new.clone()).unwrap(), all, "{compression:?}");
            // Statistics as the Arrow writer makes them, column by column.
            assert_eq!(
                chunk_statistics(&new),
                chunk_statistics(&through_arrow),
                "{compression:?}"
            );
            let kv = stored_metadata(&new).unwrap();
            let kv = kv.metadata().file_metadata().key_value_metadata().unwrap();
            let max = kv.iter().find(|e| e.key == "hoodie_max_record_key");
            assert_eq!(max.and_then(|e| e.value.as_deref()), Some("key-011999"));
        }
        // The unique columns are written here, the repeating ones by Arrow;
        // with snappy, the long text columns by tidewater's encoder, so
        // their chunks differ in size from the Arrow writer's.
        let encoding = Encoding::default();
        let properties = prepare(&schema, None, None, &[], 0, Some(&all), &encoding).unwrap();
        let routes = plan_new(&schema, |d| properties.dictionary_enabled(d.path())).unwrap();
        assert!(
            routes.iter().any(|r| matches!(r, Route::Splice(_))),
            "{routes:?}"
        );
        assert!(routes.contains(&Route::Arrow), "{routes:?}");
        let sizes = |bytes: &Bytes| -> Vec<i64> {
            let m = stored_metadata(bytes).unwrap();
            let group = m.metadata().row_group(0);
            group
                .columns()
                .iter()
                .map(|c| c.compressed_size())
                .collect()
        };
        let new = sizes(&encode_new_rows(&batches, &encoding));
        let arrow = sizes(&encode(&schema, std::slice::from_ref(&all), &encoding, None).unwrap());
        let differ = (new.iter().zip(&arrow).zip(&routes))
            .filter(|((a, b), r)| a != b && matches!(r, Route::Splice(_)))
            .count();
        assert!(differ > 0, "{new:?} against {arrow:?}");
    }

    #[test]
    fn a_new_file_of_many_rows_splits_its_row_groups_and_structs_go_through_arrow() {
        let rows = MAX_ROW_GROUP_ROWS + 10_000;
        let keys: Vec<String> = (0..rows).map(|r| format!("{r}")).collect();
        let text: Vec<String> = (0..rows)
            .map(|r| {
                format!(
                    "{{\"n\":{r},\"note\":\"{:016x}\"}}",
                    (r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                )
            })
            .collect();
        let all = keyed_batch(
            &keys,
            vec![
                (
                    "n",
                    Arc::new(arrow_array::Int64Array::from_iter_values(0..rows as i64)),
                    true,
                ),
                ("doc", Arc::new(StringArray::from_iter_values(&text)), true),
            ],
        );
        // A batch straddles the row groups' boundary; the first is one row
        // cut from the whole (it states the whole's memory: the room set
        // aside for the file is capped, not that times the rows).
        let batches = vec![
            all.slice(0, 1),
            all.slice(1, 99_999),
            all.slice(100_000, rows - 100_000),
        ];
        let new = encode_new_rows(&batches, &Encoding::default());
        assert_eq!(decode(new.clone()).unwrap(), all);
        let m = stored_metadata(&new).unwrap();
        let groups: Vec<i64> = m
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(groups, vec![MAX_ROW_GROUP_ROWS as i64, 10_000]);
        // A file with structs (several leaves to a field) is written whole by
        // the Arrow writer, and reads back the same.
        let (every, _) = every_type_file(3_000);
        let new = encode_new_rows(
            &[every.slice(0, 1_000), every.slice(1_000, 2_000)],
            &Encoding::default(),
        );
        assert_eq!(decode(new).unwrap(), every);
    }

    #[test]
    fn dictionary_columns_of_long_runs_splice_across_pages() {
        use crate::lake::splice::{PAGE_ROWS, Route, plan};
        // A constant column (as a partition path is), and one of a few
        // values in runs longer than a page, with runs of NULLs between.
        let rows = 2 * PAGE_ROWS + 7_000;
        let keys: Vec<String> = (0..rows).map(|r| format!("key-{r:06}")).collect();
        let runs: Vec<Option<&str>> = (0..rows)
            .map(|r| match (r / 9_000) % 3 {
                0 => Some("a"),
                1 => None,
                _ => Some("b"),
            })
            .collect();
        let all = keyed_batch(
            &keys,
            vec![
                (
                    "constant",
                    Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                        "day=2024-01-01",
                        rows,
                    ))),
                    false,
                ),
                ("runs", Arc::new(StringArray::from(runs)), true),
            ],
        );
        let schema = all.schema();
        let stored_len = rows - 3_000;
        let (stored_rows, fresh) = (all.slice(0, stored_len), all.slice(stored_len, 3_000));
        let fresh_keys: Vec<&str> = keys.iter().skip(stored_len).map(String::as_str).collect();
        let encoding = Encoding::default();
        let stored = encode(&schema, std::slice::from_ref(&stored_rows), &encoding, None).unwrap();
        let metadata = stored_metadata(&stored).unwrap();
        let routes = plan(metadata.metadata(), &schema, codec(&encoding)).unwrap();
        assert_eq!(
            routes.get(1..),
            Some(&[Route::Dictionary(crate::lake::splice::Kind::Bytes); 2][..])
        );
        let keep: Vec<bool> = (0..stored_len).map(|r| r % 5 != 2).collect();
        let (spliced, expected) = splice_rows(
            &stored,
            &stored_rows,
            &routes,
            &keep,
            &[0],
            (&fresh, &fresh_keys),
            &encoding,
        );
        assert_eq!(decode(spliced.clone()).unwrap(), expected);
        // Pages of at most PAGE_ROWS rows, as many as the rows need.
        use parquet::file::reader::FileReader;
        let reader =
            parquet::file::serialized_reader::SerializedFileReader::new(spliced.clone()).unwrap();
        let group = reader.get_row_group(0).unwrap();
        for column in [1, 2] {
            let mut pages = group.get_column_page_reader(column).unwrap();
            let mut rows_in_pages = Vec::new();
            while let Some(page) = pages.get_next_page().unwrap() {
                if let parquet::column::page::Page::DataPage { num_values, .. } = page {
                    rows_in_pages.push(num_values as usize);
                }
            }
            assert_eq!(rows_in_pages.len(), expected.num_rows().div_ceil(PAGE_ROWS));
            assert!(rows_in_pages.iter().all(|n| *n <= PAGE_ROWS));
            assert_eq!(rows_in_pages.iter().sum::<usize>(), expected.num_rows());
        }
        let nulls = chunk_statistics(&spliced)[0][2].2;
        assert_eq!(nulls, Some(expected.column(2).null_count() as u64));
    }

    #[test]
    fn a_file_of_another_schema_or_codec_is_not_spliced() {
        use crate::lake::splice::plan;
        // The footer of `batch` written as a commit writes it.
        let stored = |batch: &RecordBatch| {
            let bytes = encode(
                &batch.schema(),
                std::slice::from_ref(batch),
                &Encoding::default(),
                None,
            )
            .unwrap();
            stored_metadata(&bytes).unwrap()
        };
        let (with_structs, _) = every_type_file(100);
        let metadata = stored(&with_structs);
        let schema = with_structs.schema();
        assert!(plan(metadata.metadata(), &schema, Compression::SNAPPY).is_none());
        let all = flat(&with_structs);
        let metadata = stored(&all);
        let schema = all.schema();
        assert!(plan(metadata.metadata(), &schema, Compression::SNAPPY).is_some());
        let zstd = Compression::ZSTD(ZstdLevel::default());
        assert!(plan(metadata.metadata(), &schema, zstd).is_none());
        let fewer = Schema::new(schema.fields().iter().skip(1).cloned().collect::<Vec<_>>());
        assert!(plan(metadata.metadata(), &fewer, Compression::SNAPPY).is_none());
    }

    #[test]
    fn an_encoded_file_starts_on_a_block_boundary() {
        // What lets a local store write it with `O_DIRECT` in place.
        for rows in [2_000, 20_000] {
            let (batch, _) = every_type_file(rows);
            let bytes = encode(
                &batch.schema(),
                std::slice::from_ref(&batch),
                &Encoding::default(),
                None,
            )
            .unwrap();
            assert_eq!(bytes.as_ptr().addr() % BLOCK, 0, "{rows} rows");
            assert_eq!(bytes.get(..4), Some(&b"PAR1"[..]), "{rows} rows");
            assert_eq!(decode(bytes).unwrap().num_rows(), rows);
        }
        // Outgrowing its first buffer many times, it stays on a boundary.
        let mut out = Aligned::with_capacity(10);
        let written: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for piece in written.chunks(7_777) {
            std::io::Write::write_all(&mut out, piece).unwrap();
        }
        let bytes = out.into_bytes();
        assert_eq!(bytes.as_ptr().addr() % BLOCK, 0);
        assert_eq!(bytes, written);
    }

    #[test]
    fn a_rewrite_reads_views_and_writes_them_back_unchanged() {
        let (batch, values) = every_type_file(300);
        let schema = batch.schema();
        let bytes = encode(
            &schema,
            std::slice::from_ref(&batch),
            &Encoding::default(),
            None,
        )
        .unwrap();
        let (views, filter) = decode_base_file(bytes.clone()).unwrap();
        assert!(filter.is_some(), "the footer's bloom filter is read back");
        assert_eq!(views.num_rows(), 300);
        let mut view_columns = 0;
        for (f, column) in schema.fields().iter().zip(views.columns()) {
            match f.data_type() {
                DataType::Utf8 => assert_eq!(column.data_type(), &DataType::Utf8View),
                DataType::Binary => assert_eq!(column.data_type(), &DataType::BinaryView),
                other => assert_eq!(column.data_type(), other),
            }
            view_columns += usize::from(matches!(
                column.data_type(),
                DataType::Utf8View | DataType::BinaryView
            ));
        }
        assert!(view_columns >= 3, "strings, text and bytes are views");
        // Every stored value reads back through the views.
        for (i, ty) in sample::all_types().iter().enumerate() {
            let column = views.column(i + 1);
            for (r, expected) in values[i].iter().enumerate() {
                if matches!(expected, Datum::Float32(f) if f.is_nan())
                    || matches!(expected, Datum::Float64(f) if f.is_nan())
                {
                    continue;
                }
                assert_eq!(
                    datum_at(column.as_ref(), r, ty).as_ref(),
                    Some(expected),
                    "{ty} row {r}"
                );
            }
        }
        // Written back from views, the file holds what the first one held,
        // under the plain schema.
        let again = encode(
            &schema,
            std::slice::from_ref(&views),
            &Encoding::default(),
            None,
        )
        .unwrap();
        assert_eq!(decode(again).unwrap(), decode(bytes).unwrap());
        assert_eq!(
            decode(
                encode(
                    &schema,
                    std::slice::from_ref(&batch),
                    &Encoding {
                        compression: ParquetCompression::None,
                        ..Encoding::default()
                    },
                    None
                )
                .unwrap()
            )
            .unwrap(),
            batch
        );
    }

    #[test]
    fn a_decimal_widened_past_38_digits_projects_onto_a_view_as_text() {
        let ty = crate::event::types::ColumnType::Decimal {
            precision: 10,
            scale: 2,
        };
        let wide = crate::event::types::ColumnType::Decimal {
            precision: 50,
            scale: 2,
        };
        let values = [
            Datum::Decimal(crate::event::decimal::Decimal::parse("-12345.67", 10, 2).unwrap()),
            Datum::Null,
            Datum::Decimal(crate::event::decimal::Decimal::parse("0.05", 10, 2).unwrap()),
        ];
        let refs: Vec<&Datum> = values.iter().collect();
        let stored = array_of("d", &ty, &refs).unwrap();
        let batch = RecordBatch::try_new(
            std::sync::Arc::new(Schema::new(vec![Field::new(
                "d",
                stored.data_type().clone(),
                true,
            )])),
            vec![stored],
        )
        .unwrap();
        let target = array_of("d", &wide, &refs).unwrap();
        let schema = std::sync::Arc::new(Schema::new(vec![Field::new(
            "d",
            target.data_type().clone(),
            true,
        )]));
        let projected = project(&batch, &view_schema(&schema)).unwrap();
        assert_eq!(projected.column(0).data_type(), &DataType::Utf8View);
        for (r, v) in values.iter().enumerate() {
            assert_eq!(
                datum_at(projected.column(0).as_ref(), r, &wide),
                datum_at(target.as_ref(), r, &wide),
                "row {r}: {v:?}"
            );
        }
    }

    #[test]
    fn every_column_has_statistics_but_the_seqno_the_position_and_json() {
        let (batch, _) = every_type_file(200);
        let json = sample::all_types()
            .iter()
            .position(|t| *t == crate::event::types::ColumnType::Json)
            .map(|i| format!("c{i}"))
            .unwrap();
        let text = |f: &dyn Fn(usize) -> String| -> arrow_array::ArrayRef {
            std::sync::Arc::new(StringArray::from_iter_values((0..200).map(f)))
        };
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut columns = batch.columns().to_vec();
        for (name, column) in [
            (COMMIT_SEQNO, text(&|r| format!("20261122000000000_0_{r}"))),
            (POSITION, text(&|r| format!("11-3{r:03x}"))),
            (
                super::super::layout::COMMIT_TIME,
                text(&|_| "20261122000000000".into()),
            ),
        ] {
            fields.push(Field::new(name, DataType::Utf8, false));
            columns.push(column);
        }
        let schema = std::sync::Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let encoding = Encoding {
            unordered: vec![json.clone()],
            ..Encoding::default()
        };
        let bytes = encode(&schema, &[batch], &encoding, None).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        let row_group = reader.metadata().row_group(0);
        let mut seen = Vec::new();
        for column in row_group.columns() {
            let name = column.column_path().string();
            let stats = column.statistics();
            if name == COMMIT_SEQNO || name == POSITION || name == json {
                assert!(stats.is_none(), "{name} has statistics");
            } else {
                let stats = stats.unwrap_or_else(|| panic!("{name} has no statistics"));
                assert!(stats.null_count_opt().is_some(), "{name}: no null count");
                assert!(
                    stats.min_bytes_opt().is_some() && stats.max_bytes_opt().is_some(),
                    "{name}: no min/max"
                );
            }
            seen.push(name);
        }
        // Nested columns have several leaves: at least one per field.
        assert!(seen.len() >= schema.fields().len());
        for name in [
            COMMIT_SEQNO,
            POSITION,
            super::super::layout::COMMIT_TIME,
            RECORD_KEY,
            &json,
        ] {
            assert!(seen.iter().any(|s| s == name), "{name} not written");
        }
    }

    #[test]
    fn a_rewrite_adds_only_keys_new_to_the_file_to_its_carried_filter() {
        let schema = std::sync::Arc::new(Schema::new(vec![Field::new(
            RECORD_KEY,
            DataType::Utf8,
            true,
        )]));
        let batch_of = |keys: &[String]| {
            RecordBatch::try_new(
                schema.clone(),
                vec![std::sync::Arc::new(StringArray::from_iter_values(keys))],
            )
            .unwrap()
        };
        let stored: Vec<String> = (0..500).map(|k| k.to_string()).collect();
        let first = encode(&schema, &[batch_of(&stored)], &Encoding::default(), None).unwrap();
        let (views, filter) = decode_base_file(first).unwrap();
        let filter = filter.unwrap();
        assert_eq!(filter.count(), 500);
        // Rows 0..100 are rewritten (updates), 400..500 deleted, and 50
        // keys are new: the carried rows are 100..400.
        let carried = views.slice(100, 300);
        let mut fresh: Vec<String> = stored.get(..100).unwrap().to_vec();
        fresh.extend((5000..5050).map(|k| k.to_string()));
        let fresh_keys: Vec<&str> = fresh.iter().map(String::as_str).collect();
        let second = encode_rows::<FileError>(
            &schema,
            Some(&carried),
            Some(filter),
            &fresh_keys,
            100,
            std::iter::once(Ok(batch_of(&fresh))),
            &Encoding::default(),
        )
        .unwrap();
        let (rows, filter) = decode_base_file(second).unwrap();
        assert_eq!(rows.num_rows(), 450);
        let filter = filter.expect("the carried filter is written");
        assert_eq!(filter.count(), 550, "only the 50 new keys were added");
        for key in stored.iter().take(400).chain(fresh.iter()) {
            assert!(filter.might_contain(key.as_bytes()), "{key} missing");
        }
    }

    /// A file of 70,000 rows: record keys of every kind (a NULL one too)
    /// and a wide text column after them, with the keys.
    fn keyed_file() -> (Bytes, Vec<Option<String>>) {
        let keys: Vec<Option<String>> = (0..70_000)
            .map(|r| match r % 3 {
                _ if r == 5 => None,
                0 => Some(r.to_string()),
                1 => Some(format!("a:{r},b:x")),
                _ => Some(format!("0{r}")),
            })
            .collect();
        let schema = std::sync::Arc::new(Schema::new(vec![
            Field::new(RECORD_KEY, DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new("payload", DataType::Utf8, false),
        ]));
        let mut rng = Rng::new(11);
        let payloads: Vec<String> = (0..70_000)
            .map(|_| {
                (0..100)
                    .map(|_| char::from(b'a' + rng.below(26) as u8))
                    .collect()
            })
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                std::sync::Arc::new(StringArray::from(keys.clone())),
                std::sync::Arc::new(arrow_array::Int64Array::from_iter_values(0..70_000)),
                std::sync::Arc::new(StringArray::from(payloads)),
            ],
        )
        .unwrap();
        let bytes = encode(&schema, &[batch], &Encoding::default(), None).unwrap();
        (bytes, keys)
    }

    #[test]
    fn key_slots_are_read_from_the_key_column_alone_in_row_order() {
        let (bytes, keys) = keyed_file();
        let slots = decode_key_slots(bytes.clone(), stored_metadata(&bytes).unwrap()).unwrap();
        let expected = slots_of_keys(&keys);
        assert_eq!(slots.len(), 70_000, "more than one batch of 65,536 rows");
        assert_eq!(slots, expected);
        assert_eq!(slots[3], Slot::Int(3));
        assert!(matches!(slots[4], Slot::Hash(_)));
    }

    /// How a table is opened: the footer from the file's end, then the key
    /// column's chunks, and nothing else of the file.
    #[test]
    fn key_slots_are_read_from_the_footer_and_the_key_chunks_alone() {
        let (bytes, keys) = keyed_file();
        let size = bytes.len() as u64;
        let footer = footer_size(&bytes).unwrap();
        let tail = bytes.slice(bytes.len() - footer as usize..);
        let metadata = footer_metadata(size, tail.clone()).unwrap();
        let chunks = key_chunks(metadata.metadata(), size - footer).unwrap();
        let mut parts = vec![(size - footer, tail)];
        for c in &chunks {
            parts.push((c.start, bytes.slice(c.start as usize..c.end as usize)));
        }
        let read: u64 = parts.iter().map(|(_, b)| b.len() as u64).sum();
        assert!(
            read * 5 < size,
            "{read} of {size} bytes read: the wide column is not"
        );
        let slots = decode_key_slots(Ranges::new(size, parts), metadata.clone()).unwrap();
        let expected = slots_of_keys(&keys);
        assert_eq!(slots, expected);

        // Without the key chunks, the read fails and names the bytes.
        let footer_only = Ranges::new(
            size,
            vec![(size - footer, bytes.slice(bytes.len() - footer as usize..))],
        );
        let err = decode_key_slots(footer_only, metadata)
            .unwrap_err()
            .to_string();
        let first = chunks.first().unwrap().start;
        assert!(
            err.contains(&format!("bytes {first}..")) && err.contains("were not read"),
            "{err}"
        );
    }

    #[test]
    fn a_footer_is_found_or_refused_by_its_trailer() {
        let (bytes, _) = keyed_file();
        let footer = footer_size(&bytes).unwrap();
        assert!(footer > 8 && footer < bytes.len() as u64);
        // Its last eight bytes say it all.
        assert_eq!(footer_size(&bytes[bytes.len() - 8..]).unwrap(), footer);
        let short = footer_size(b"PAR1").unwrap_err().to_string();
        assert!(short.contains("4 bytes are too few"), "{short}");
        let not_parquet = footer_size(b"\x10\0\0\0NOPE").unwrap_err().to_string();
        assert!(
            not_parquet.contains("does not end in a Parquet footer"),
            "{not_parquet}"
        );
        // A tail longer than the file it is said to end.
        let tail = bytes.slice(bytes.len() - footer as usize..);
        let err = footer_metadata(footer - 1, tail).unwrap_err().to_string();
        assert!(err.contains("read from the end of a"), "{err}");
    }

    #[test]
    fn dictionaries_only_for_repeating_columns() {
        let unique: arrow_array::ArrayRef =
            std::sync::Arc::new(arrow_array::Int64Array::from_iter_values(0..5000));
        let repeating: arrow_array::ArrayRef = std::sync::Arc::new(
            arrow_array::Int64Array::from_iter_values((0..5000).map(|i| i % 6)),
        );
        let text: arrow_array::ArrayRef = std::sync::Arc::new(StringArray::from_iter_values(
            (0..5000).map(|i| format!("{{\"n\": {i}}}")),
        ));
        let status: arrow_array::ArrayRef = std::sync::Arc::new(StringArray::from_iter_values(
            (0..5000).map(|i| ["paid", "shipped"][i % 2]),
        ));
        assert_eq!(mostly_unique(unique.as_ref()), Some(true));
        assert_eq!(mostly_unique(repeating.as_ref()), Some(false));
        assert_eq!(mostly_unique(text.as_ref()), Some(true));
        assert_eq!(mostly_unique(status.as_ref()), Some(false));
        let few: arrow_array::ArrayRef =
            std::sync::Arc::new(arrow_array::Int64Array::from_iter_values(0..10));
        assert_eq!(mostly_unique(few.as_ref()), Some(false), "too few to judge");
        let keys = StringArray::from_iter_values((0..5000).map(|i| i.to_string()));
        let schema = std::sync::Arc::new(Schema::new(vec![
            Field::new(RECORD_KEY, DataType::Utf8, true),
            Field::new("unique", DataType::Int64, true),
            Field::new("repeating", DataType::Int64, true),
            Field::new("payload", DataType::Utf8, true),
            Field::new("status", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![std::sync::Arc::new(keys), unique, repeating, text, status],
        )
        .unwrap();
        let bytes = encode(&schema, &[batch], &Encoding::default(), None).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        let row_group = reader.metadata().row_group(0);
        let dictionary = |name: &str| {
            row_group
                .columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap()
                .dictionary_page_offset()
                .is_some()
        };
        assert!(!dictionary("unique"));
        assert!(dictionary("repeating"));
        assert!(!dictionary("payload"));
        assert!(dictionary("status"));
    }

    #[test]
    fn base_file_names_round_trip() {
        let id = new_file_id();
        assert!(!id.contains('_'));
        let name = base_file_name(&id, &write_token(), "20240101000000000");
        assert_eq!(
            parse_base_file_name(&name),
            Some((id.clone(), "20240101000000000".to_string()))
        );
        // Hudi's token shape (three numbers), and one per attempt: two
        // attempts at one instant name the same file group's slice apart.
        let token = write_token();
        let parts: Vec<&str> = token.split('-').collect();
        assert!(
            parts.len() == 3 && parts.iter().all(|p| p.parse::<u64>().is_ok()),
            "{token}"
        );
        assert_ne!(
            base_file_name(&id, &write_token(), "1"),
            base_file_name(&id, &write_token(), "1")
        );
        assert_eq!(
            parse_base_file_name(
                "a22e8257-e249-45e9-ba46-115bc85adcba-0_1-140-199_20240418173213674.parquet"
            ),
            Some((
                "a22e8257-e249-45e9-ba46-115bc85adcba-0".into(),
                "20240418173213674".into()
            ))
        );
        assert_eq!(parse_base_file_name(".hoodie_partition_metadata"), None);
        assert_eq!(parse_base_file_name("x.parquet"), None);
    }
}
