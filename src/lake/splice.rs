//! Rewriting a stored slice page by page: the column chunks of a base file
//! whose pages are PLAIN are filtered and extended as bytes, without
//! decoding their values into Arrow and encoding them again.
//!
//! A copy-on-write commit rewrites every file group it touches. Decoding a
//! stored file and encoding it again with the Arrow writer (the floor of
//! `cargo bench --bench lake`) spent about half of its time outside the
//! codec: building Arrow arrays, checking UTF-8, copying values into the
//! writer's buffers one by one, comparing them for statistics nobody reads.
//! A PLAIN page is a run of values (a length and bytes for strings, fixed
//! widths for integers) after its definition levels, so the rows a commit
//! keeps are copied in runs straight from the decompressed page, the new
//! rows are appended in the same encoding, and the page is compressed again.
//!
//! What is spliced and what goes through Arrow ([`plan`]):
//! - a file is spliced only when its Parquet schema is exactly the one the
//!   commit writes (no schema change in between), its codec is the table's
//!   (snappy, zstd or none) and every column is a flat column (structs go
//!   through Arrow);
//! - a column is spliced when it is a 32- or 64-bit integer (integers,
//!   dates, timestamps, decimals of up to 18 digits) or a string or binary,
//!   flat, and stored without a dictionary; other columns (dictionary
//!   encoded ones, whose pages are small, floats, booleans, lists, wide
//!   decimals) are decoded and encoded by the Arrow writer as before;
//! - pages other than PLAIN version 1 data pages make the whole file go
//!   through Arrow ([`SpliceError::Unsupported`]): nothing is half-written.
//!
//! Spliced chunks carry what the Arrow writer writes: exact min/max (the same
//! orders: signed integers, unsigned bytes, with the legacy min/max fields
//! for signed columns), null counts, an offset index, pages of at most
//! [`PAGE_BYTES`] and [`PAGE_ROWS`]. Statistics of byte strings longer than
//! the writer's truncation length are left out rather than truncated.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Schema, TimeUnit};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, Type as Physical};
use parquet::column::page::{CompressedPage, Page, PageReader, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder, ParquetMetaData};
use parquet::file::properties::DEFAULT_STATISTICS_TRUNCATE_LENGTH;
use parquet::file::serialized_reader::SerializedPageReader;
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, ColumnDescriptor};
use std::sync::Arc;

use super::batch::Strings;
use crate::kafka::avro::binary::{Reader, write_varint};

/// Largest values section of a page written here (the Arrow writer's
/// default page size).
pub const PAGE_BYTES: usize = 1024 * 1024;
/// Most rows in a page written here (the Arrow writer's default).
pub const PAGE_ROWS: usize = 20_000;

/// Room kept before a page's values for its encoded levels: at bit width 1
/// the hybrid encoding never takes more than two bytes per eight levels
/// (one header and one byte per run or group), plus the 4-byte length.
const LEVELS_ROOM: usize = PAGE_ROWS / 4 + 32;

#[derive(Debug, thiserror::Error)]
pub enum SpliceError {
    /// The stored file holds something splicing does not handle; the file
    /// is written through Arrow instead.
    #[error("not spliced: {0}")]
    Unsupported(String),
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("compressing a page: {0}")]
    Codec(String),
}

fn unsupported(what: impl Into<String>) -> SpliceError {
    SpliceError::Unsupported(what.into())
}

/// How the values of a spliced column lie in a PLAIN page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    I32,
    I64,
    Bytes,
}

/// How one column of a spliced file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Splice(Kind),
    Arrow,
}

/// The kind of a column that can be spliced, from its Parquet descriptor
/// and the Arrow type the writer gives it.
fn kind(descr: &ColumnDescriptor, ty: &DataType) -> Option<Kind> {
    if descr.max_rep_level() != 0 || descr.max_def_level() > 1 || descr.path().parts().len() != 1 {
        return None;
    }
    let kind = match (descr.physical_type(), ty) {
        (Physical::INT32, DataType::Int32 | DataType::Date32) => Kind::I32,
        (Physical::INT32, DataType::Decimal128(p, _)) if *p <= 9 => Kind::I32,
        (Physical::INT64, DataType::Int64 | DataType::Timestamp(TimeUnit::Microsecond, _)) => {
            Kind::I64
        }
        (Physical::INT64, DataType::Decimal128(p, _)) if *p <= 18 => Kind::I64,
        (
            Physical::BYTE_ARRAY,
            DataType::Utf8 | DataType::Utf8View | DataType::Binary | DataType::BinaryView,
        ) => Kind::Bytes,
        _ => return None,
    };
    // The orders the statistics here use.
    let signed = descr.sort_order().is_signed();
    (signed == (kind != Kind::Bytes)).then_some(kind)
}

/// Whether two codecs are the same algorithm (a stored zstd level is not
/// recorded in the file).
fn same_codec(a: Compression, b: Compression) -> bool {
    std::mem::discriminant(&a) == std::mem::discriminant(&b)
}

/// The route of each column when `stored` can be spliced into a file of
/// `arrow`'s columns compressed with `codec`; `None` when it cannot (see the
/// module doc).
pub fn plan(stored: &ParquetMetaData, arrow: &Schema, codec: Compression) -> Option<Vec<Route>> {
    // The Parquet schema the Arrow writer makes of `arrow`.
    let out = parquet::arrow::ArrowSchemaConverter::new()
        .convert(arrow)
        .ok()?;
    let schema = stored.file_metadata().schema_descr();
    if schema.root_schema() != out.root_schema()
        || out.num_columns() != arrow.fields().len()
        || stored.num_row_groups() == 0
        || !matches!(
            codec,
            Compression::UNCOMPRESSED | Compression::SNAPPY | Compression::ZSTD(_)
        )
    {
        return None;
    }
    let groups = stored.row_groups();
    if groups
        .iter()
        .flat_map(|g| g.columns())
        .any(|c| !same_codec(c.compression(), codec))
    {
        return None;
    }
    let mut routes = Vec::with_capacity(out.num_columns());
    for (i, field) in arrow.fields().iter().enumerate() {
        let descr = out.column(i);
        // One leaf per field, in order.
        if descr.path().parts().first() != Some(field.name()) {
            return None;
        }
        let dictionary = groups
            .iter()
            .any(|g| g.column(i).dictionary_page_offset().is_some());
        routes.push(match kind(&descr, field.data_type()) {
            Some(k) if !dictionary => Route::Splice(k),
            _ => Route::Arrow,
        });
    }
    Some(routes)
}

/// A page codec.
enum Codec {
    None,
    /// The encoder and its output buffer, reused from page to page (a
    /// fresh buffer of the largest output is zeroed for every page).
    Snappy(snap::raw::Encoder, Vec<u8>),
    Zstd(i32),
}

impl Codec {
    fn of(codec: Compression) -> Result<Codec, SpliceError> {
        match codec {
            Compression::UNCOMPRESSED => Ok(Codec::None),
            Compression::SNAPPY => Ok(Codec::Snappy(snap::raw::Encoder::new(), Vec::new())),
            Compression::ZSTD(level) => Ok(Codec::Zstd(level.compression_level())),
            other => Err(unsupported(format!("codec {other}"))),
        }
    }

    fn compress(&mut self, data: &[u8]) -> Result<Bytes, SpliceError> {
        match self {
            Codec::None => Ok(Bytes::copy_from_slice(data)),
            Codec::Snappy(encoder, out) => {
                let most = snap::raw::max_compress_len(data.len());
                if out.len() < most {
                    out.resize(most, 0);
                }
                let n = encoder
                    .compress(data, out)
                    .map_err(|e| SpliceError::Codec(e.to_string()))?;
                Ok(Bytes::copy_from_slice(out.get(..n).unwrap_or_default()))
            }
            Codec::Zstd(level) => zstd::bulk::compress(data, *level)
                .map(Bytes::from)
                .map_err(|e| SpliceError::Codec(e.to_string())),
        }
    }
}

/// Reads `n` definition levels of bit width 1 (the RLE / bit-packed hybrid
/// encoding): `true` where the value is defined.
fn read_levels(data: &[u8], n: usize, out: &mut Vec<bool>) -> Result<(), SpliceError> {
    out.clear();
    out.reserve(n);
    let mut pos = 0usize;
    while out.len() < n {
        let mut reader = Reader::at(data, pos);
        let header = reader
            .varint()
            .map_err(|e| unsupported(format!("a level run header: {e}")))?;
        pos = reader.position();
        let left = n - out.len();
        let count = usize::try_from(header >> 1).unwrap_or(usize::MAX);
        if header & 1 == 1 {
            // `count` groups of eight levels, one byte each at width 1.
            let end = pos
                .checked_add(count)
                .filter(|e| *e <= data.len())
                .ok_or_else(|| unsupported("definition levels cut short"))?;
            for byte in data.get(pos..end).unwrap_or_default() {
                for bit in 0..8 {
                    if out.len() == n {
                        break;
                    }
                    out.push((byte >> bit) & 1 == 1);
                }
            }
            pos = end;
        } else {
            let value = *data
                .get(pos)
                .ok_or_else(|| unsupported("definition levels cut short"))?;
            pos += 1;
            out.extend(std::iter::repeat_n(value & 1 == 1, count.min(left)));
        }
    }
    Ok(())
}

/// How many levels from `i` on equal the one at `i`.
fn run_at(levels: &[bool], i: usize) -> usize {
    let rest = levels.get(i..).unwrap_or_default();
    rest.first()
        .map_or(0, |v| rest.iter().take_while(|l| *l == v).count())
}

/// Encodes definition levels of bit width 1: runs of eight or more as RLE
/// runs, the rest bit-packed in groups of eight (only the last group is
/// padded).
fn write_levels(levels: &[bool], out: &mut Vec<u8>) {
    let mut i = 0usize;
    while i < levels.len() {
        let run = run_at(levels, i);
        if run >= 8 {
            write_varint(out, (run as u64) << 1);
            out.push(u8::from(levels.get(i).copied().unwrap_or(false)));
            i += run;
            continue;
        }
        let mut packed = Vec::new();
        loop {
            let mut byte = 0u8;
            for bit in 0..8 {
                if levels.get(i + bit).copied().unwrap_or(false) {
                    byte |= 1 << bit;
                }
            }
            packed.push(byte);
            i += 8;
            if i >= levels.len() || run_at(levels, i) >= 8 {
                break;
            }
        }
        write_varint(out, ((packed.len() as u64) << 1) | 1);
        out.extend_from_slice(&packed);
    }
}

/// Min/max of the values written, in the column's order.
#[derive(Default)]
enum Bounds {
    #[default]
    Empty,
    I32(i32, i32),
    I64(i64, i64),
    Bytes(Vec<u8>, Vec<u8>),
}

impl Bounds {
    fn see(&mut self, kind: Kind, value: &[u8]) {
        match kind {
            Kind::I32 => {
                let v = i32::from_le_bytes(value.try_into().unwrap_or_default());
                *self = match *self {
                    Bounds::I32(lo, hi) => Bounds::I32(lo.min(v), hi.max(v)),
                    _ => Bounds::I32(v, v),
                };
            }
            Kind::I64 => {
                let v = i64::from_le_bytes(value.try_into().unwrap_or_default());
                *self = match *self {
                    Bounds::I64(lo, hi) => Bounds::I64(lo.min(v), hi.max(v)),
                    _ => Bounds::I64(v, v),
                };
            }
            Kind::Bytes => match self {
                Bounds::Bytes(lo, hi) => {
                    if value < lo.as_slice() {
                        lo.clear();
                        lo.extend_from_slice(value);
                    } else if value > hi.as_slice() {
                        hi.clear();
                        hi.extend_from_slice(value);
                    }
                }
                _ => *self = Bounds::Bytes(value.to_vec(), value.to_vec()),
            },
        }
    }

    fn statistics(self, kind: Kind, nulls: u64) -> Statistics {
        let nulls = Some(nulls);
        match (kind, self) {
            (Kind::I32, Bounds::I32(lo, hi)) => Statistics::Int32(
                ValueStatistics::new(Some(lo), Some(hi), None, nulls, false)
                    .with_backwards_compatible_min_max(true),
            ),
            (Kind::I64, Bounds::I64(lo, hi)) => Statistics::Int64(
                ValueStatistics::new(Some(lo), Some(hi), None, nulls, false)
                    .with_backwards_compatible_min_max(true),
            ),
            (Kind::Bytes, Bounds::Bytes(lo, hi)) => {
                let limit = DEFAULT_STATISTICS_TRUNCATE_LENGTH.unwrap_or(usize::MAX);
                let (lo, hi) = if lo.len() > limit || hi.len() > limit {
                    (None, None)
                } else {
                    (Some(ByteArray::from(lo)), Some(ByteArray::from(hi)))
                };
                Statistics::ByteArray(ValueStatistics::new(lo, hi, None, nulls, false))
            }
            (Kind::I32, _) => Statistics::int32(None, None, None, nulls, false),
            (Kind::I64, _) => Statistics::int64(None, None, None, nulls, false),
            (Kind::Bytes, _) => Statistics::byte_array(None, None, None, nulls, false),
        }
    }
}

/// One column chunk being written: the page being filled, then the pages
/// written.
struct Chunk<'w> {
    kind: Kind,
    /// Whether the column has definition levels (it is nullable).
    nullable: bool,
    stats: bool,
    codec: Codec,
    pages: SerializedPageWriter<'w, Vec<u8>>,
    offsets: OffsetIndexBuilder,
    /// The page being filled: room for its levels, then its values.
    buffer: Vec<u8>,
    levels: Vec<bool>,
    rows: u64,
    nulls: u64,
    compressed: u64,
    uncompressed: u64,
    bounds: Bounds,
}

impl<'w> Chunk<'w> {
    fn new(
        kind: Kind,
        descr: &ColumnDescriptor,
        stats: bool,
        codec: Compression,
        sink: &'w mut TrackedWrite<Vec<u8>>,
    ) -> Result<Self, SpliceError> {
        let mut buffer = Vec::with_capacity(LEVELS_ROOM + PAGE_BYTES + PAGE_BYTES / 8);
        buffer.resize(LEVELS_ROOM, 0);
        Ok(Chunk {
            kind,
            nullable: descr.max_def_level() > 0,
            stats,
            codec: Codec::of(codec)?,
            pages: SerializedPageWriter::new(sink),
            offsets: OffsetIndexBuilder::new(),
            buffer,
            levels: Vec::with_capacity(PAGE_ROWS),
            rows: 0,
            nulls: 0,
            compressed: 0,
            uncompressed: 0,
            bounds: Bounds::Empty,
        })
    }

    fn full(&self) -> bool {
        self.levels.len() >= PAGE_ROWS || self.buffer.len() - LEVELS_ROOM >= PAGE_BYTES
    }

    /// Compresses and writes the page being filled.
    fn flush(&mut self) -> Result<(), SpliceError> {
        let rows = self.levels.len();
        if rows == 0 {
            return Ok(());
        }
        let start = if self.nullable {
            let mut encoded = Vec::with_capacity(rows / 8 + 16);
            write_levels(&self.levels, &mut encoded);
            let length = u32::try_from(encoded.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes();
            let start = LEVELS_ROOM
                .checked_sub(encoded.len() + length.len())
                .ok_or_else(|| unsupported("definition levels larger than their room"))?;
            let room = self
                .buffer
                .get_mut(start..LEVELS_ROOM)
                .ok_or_else(|| unsupported("a page buffer without room for its levels"))?;
            let (head, tail) = room.split_at_mut(length.len());
            head.copy_from_slice(&length);
            tail.copy_from_slice(&encoded);
            start
        } else {
            LEVELS_ROOM
        };
        let data = self.buffer.get(start..).unwrap_or_default();
        let uncompressed = data.len();
        let compressed = self.codec.compress(data)?;
        let page = Page::DataPage {
            buf: compressed,
            num_values: u32::try_from(rows).map_err(|_| unsupported("a page of 2^32 rows"))?,
            encoding: Encoding::PLAIN,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = self
            .pages
            .write_page(CompressedPage::new(page, uncompressed))?;
        self.offsets.append_row_count(rows as i64);
        self.offsets.append_offset_and_size(
            i64::try_from(spec.offset).unwrap_or(i64::MAX),
            i32::try_from(spec.compressed_size).unwrap_or(i32::MAX),
        );
        self.compressed += spec.compressed_size as u64;
        self.uncompressed += spec.uncompressed_size as u64;
        self.rows += rows as u64;
        self.buffer.truncate(LEVELS_ROOM);
        self.levels.clear();
        Ok(())
    }

    /// Appends one row's value (`None`: NULL).
    fn push(&mut self, value: Option<&[u8]>) -> Result<(), SpliceError> {
        match value {
            Some(v) => {
                if self.stats {
                    self.bounds.see(self.kind, v);
                }
                if self.kind == Kind::Bytes {
                    let len = u32::try_from(v.len())
                        .map_err(|_| unsupported("a value of 4 GiB or more"))?;
                    self.buffer.extend_from_slice(&len.to_le_bytes());
                }
                self.buffer.extend_from_slice(v);
                self.levels.push(true);
            }
            None => {
                if !self.nullable {
                    return Err(unsupported("a NULL in a required column"));
                }
                self.nulls += 1;
                self.levels.push(false);
            }
        }
        if self.full() {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends the kept rows of one stored page: `defined` per row, the
    /// PLAIN `values` of the defined rows, `keep` per row. Kept values are
    /// copied in runs.
    fn carry(&mut self, defined: &[bool], values: &[u8], keep: &[bool]) -> Result<(), SpliceError> {
        let cut = || unsupported("a page's values cut short");
        let mut pos = 0usize;
        // Kept values not copied yet: `values[run..pos]`.
        let mut run = 0usize;
        for (valid, kept) in defined.iter().zip(keep) {
            if *valid {
                let len = match self.kind {
                    Kind::I32 => 4,
                    Kind::I64 => 8,
                    Kind::Bytes => {
                        let n = values.get(pos..pos + 4).ok_or_else(cut)?;
                        4 + u32::from_le_bytes(n.try_into().unwrap_or_default()) as usize
                    }
                };
                let end = pos.checked_add(len).filter(|e| *e <= values.len());
                let end = end.ok_or_else(cut)?;
                if *kept {
                    if self.stats {
                        let skip = if self.kind == Kind::Bytes { 4 } else { 0 };
                        let v = values.get(pos + skip..end).ok_or_else(cut)?;
                        self.bounds.see(self.kind, v);
                    }
                } else {
                    self.buffer
                        .extend_from_slice(values.get(run..pos).ok_or_else(cut)?);
                    run = end;
                }
                pos = end;
            }
            if *kept {
                self.levels.push(*valid);
                if !*valid {
                    self.nulls += 1;
                }
                if self.levels.len() >= PAGE_ROWS
                    || self.buffer.len() - LEVELS_ROOM + (pos - run) >= PAGE_BYTES
                {
                    self.buffer
                        .extend_from_slice(values.get(run..pos).ok_or_else(cut)?);
                    run = pos;
                    self.flush()?;
                }
            }
        }
        if pos != values.len() {
            return Err(unsupported("bytes after a page's last value"));
        }
        self.buffer
            .extend_from_slice(values.get(run..pos).ok_or_else(cut)?);
        if self.full() {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends the rows of one Arrow array of the column.
    fn fresh(&mut self, array: &dyn Array) -> Result<(), SpliceError> {
        let wrong = || unsupported(format!("a fresh {} column", array.data_type()));
        let rows = 0..array.len();
        match (self.kind, array.data_type()) {
            (Kind::I32, DataType::Int32) => {
                let a = array.as_primitive::<Int32Type>();
                self.fixed(rows.map(|r| a.is_valid(r).then(|| a.value(r).to_le_bytes())))
            }
            (Kind::I32, DataType::Date32) => {
                let a = array.as_primitive::<Date32Type>();
                self.fixed(rows.map(|r| a.is_valid(r).then(|| a.value(r).to_le_bytes())))
            }
            (Kind::I32, DataType::Decimal128(..)) => {
                // As the Arrow writer stores them: the unscaled value cut
                // to the physical width (the precision fits in it).
                let a = array.as_primitive::<Decimal128Type>();
                self.fixed(rows.map(|r| a.is_valid(r).then(|| (a.value(r) as i32).to_le_bytes())))
            }
            (Kind::I64, DataType::Int64) => {
                let a = array.as_primitive::<Int64Type>();
                self.fixed(rows.map(|r| a.is_valid(r).then(|| a.value(r).to_le_bytes())))
            }
            (Kind::I64, DataType::Timestamp(TimeUnit::Microsecond, _)) => {
                let a = array.as_primitive::<TimestampMicrosecondType>();
                self.fixed(rows.map(|r| a.is_valid(r).then(|| a.value(r).to_le_bytes())))
            }
            (Kind::I64, DataType::Decimal128(..)) => {
                let a = array.as_primitive::<Decimal128Type>();
                self.fixed(rows.map(|r| a.is_valid(r).then(|| (a.value(r) as i64).to_le_bytes())))
            }
            (Kind::Bytes, DataType::Utf8 | DataType::Utf8View) => {
                let s = Strings::of(array).ok_or_else(wrong)?;
                for r in rows {
                    self.push(s.is_valid(r).then(|| s.value(r).as_bytes()))?;
                }
                Ok(())
            }
            (Kind::Bytes, DataType::Binary) => {
                let a = array.as_binary::<i32>();
                for r in rows {
                    self.push(a.is_valid(r).then(|| a.value(r)))?;
                }
                Ok(())
            }
            (Kind::Bytes, DataType::BinaryView) => {
                let a = array.as_binary_view();
                for r in rows {
                    self.push(a.is_valid(r).then(|| a.value(r)))?;
                }
                Ok(())
            }
            _ => Err(wrong()),
        }
    }

    fn fixed<const N: usize>(
        &mut self,
        values: impl Iterator<Item = Option<[u8; N]>>,
    ) -> Result<(), SpliceError> {
        for v in values {
            self.push(v.as_ref().map(|b| b.as_slice()))?;
        }
        Ok(())
    }

    fn finish(mut self, descr: ColumnDescPtr, codec: Compression) -> Result<Closed, SpliceError> {
        self.flush()?;
        let mut metadata = ColumnChunkMetaData::builder(descr)
            .set_compression(codec)
            .set_encodings(vec![Encoding::PLAIN, Encoding::RLE])
            .set_num_values(i64::try_from(self.rows).unwrap_or(i64::MAX))
            .set_total_compressed_size(i64::try_from(self.compressed).unwrap_or(i64::MAX))
            .set_total_uncompressed_size(i64::try_from(self.uncompressed).unwrap_or(i64::MAX))
            .set_data_page_offset(0);
        if self.stats {
            metadata = metadata.set_statistics(self.bounds.statistics(self.kind, self.nulls));
        }
        Ok(Closed {
            rows: self.rows,
            bytes: self.compressed,
            metadata: metadata.build()?,
            offsets: self.offsets,
        })
    }
}

struct Closed {
    rows: u64,
    bytes: u64,
    metadata: ColumnChunkMetaData,
    offsets: OffsetIndexBuilder,
}

/// One column chunk to splice: the stored chunk of a row group, which of
/// its rows to keep, and the new rows to append after them.
pub struct Column<'a> {
    pub stored: &'a Bytes,
    pub chunk: &'a ColumnChunkMetaData,
    /// Rows of the stored row group.
    pub rows: usize,
    /// One flag per row of the stored row group.
    pub keep: &'a [bool],
    /// The column's arrays of the new rows, in order.
    pub fresh: Vec<&'a dyn Array>,
}

/// Writes one column chunk: the kept rows of the stored chunk, then the
/// fresh rows; returns the chunk's bytes and what its row group needs to
/// take it in ([`parquet::file::writer::SerializedRowGroupWriter::append_column`]).
pub fn column(
    input: Column<'_>,
    kind: Kind,
    descr: ColumnDescPtr,
    stats: bool,
    codec: Compression,
) -> Result<(Bytes, ColumnCloseResult), SpliceError> {
    if input.keep.len() != input.rows {
        return Err(unsupported(
            "a keep mask of another length than the row group",
        ));
    }
    let mut sink = TrackedWrite::new(Vec::with_capacity(
        usize::try_from(input.chunk.compressed_size()).unwrap_or(0) + 4096,
    ));
    let closed = {
        let mut chunk = Chunk::new(kind, &descr, stats, codec, &mut sink)?;
        let mut reader = SerializedPageReader::new(
            Arc::new(input.stored.clone()),
            input.chunk,
            input.rows,
            None,
        )?;
        let mut defined = Vec::new();
        let mut row = 0usize;
        while let Some(page) = reader.get_next_page()? {
            let Page::DataPage {
                buf,
                num_values,
                encoding,
                def_level_encoding,
                ..
            } = page
            else {
                return Err(unsupported(format!("a {:?} page", page.page_type())));
            };
            if encoding != Encoding::PLAIN {
                return Err(unsupported(format!("a page encoded {encoding}")));
            }
            let n = num_values as usize;
            let values = if chunk.nullable {
                if def_level_encoding != Encoding::RLE {
                    return Err(unsupported(format!("levels encoded {def_level_encoding}")));
                }
                let len = buf
                    .get(..4)
                    .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
                    .ok_or_else(|| unsupported("a page without its levels"))?;
                let levels = buf
                    .get(4..4 + len)
                    .ok_or_else(|| unsupported("definition levels cut short"))?;
                read_levels(levels, n, &mut defined)?;
                buf.get(4 + len..).unwrap_or_default()
            } else {
                defined.clear();
                defined.resize(n, true);
                &buf[..]
            };
            let keep = input
                .keep
                .get(row..row + n)
                .ok_or_else(|| unsupported("pages holding more rows than their row group"))?;
            chunk.carry(&defined, values, keep)?;
            row += n;
        }
        if row != input.rows {
            return Err(unsupported("pages holding fewer rows than their row group"));
        }
        for array in &input.fresh {
            chunk.fresh(*array)?;
        }
        chunk.finish(descr, codec)?
    };
    let bytes = Bytes::from(sink.into_inner()?);
    let close = ColumnCloseResult {
        bytes_written: closed.bytes,
        rows_written: closed.rows,
        metadata: closed.metadata,
        bloom_filter: None,
        column_index: None,
        offset_index: Some(closed.offsets.build()),
    };
    Ok((bytes, close))
}

/// The fresh rows' arrays of column `i`, for [`Column::fresh`].
pub fn fresh_columns(batches: &[arrow_array::RecordBatch], i: usize) -> Vec<&dyn Array> {
    batches
        .iter()
        .filter_map(|b| b.columns().get(i))
        .map(|a: &ArrayRef| a.as_ref())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(levels: &[bool]) {
        let mut encoded = Vec::new();
        write_levels(levels, &mut encoded);
        let mut decoded = Vec::new();
        read_levels(&encoded, levels.len(), &mut decoded).unwrap();
        assert_eq!(decoded, levels, "encoded as {encoded:?}");
        assert!(
            encoded.len() <= levels.len() / 4 + 8,
            "{} bytes for {} levels",
            encoded.len(),
            levels.len()
        );
    }

    #[test]
    fn levels_round_trip_through_runs_and_packed_groups() {
        round_trip(&[]);
        round_trip(&[true]);
        round_trip(&[false; 7]);
        round_trip(&vec![true; 20_000]);
        let mut mixed = vec![true; 13];
        mixed.extend([false, true, false, false, true]);
        mixed.extend(vec![false; 9]);
        mixed.extend([true, false, true]);
        round_trip(&mixed);
        // The worst case for size: runs that alternate every few levels.
        let alternating: Vec<bool> = (0..PAGE_ROWS).map(|i| (i / 3) % 2 == 0).collect();
        round_trip(&alternating);
        let mut seed = 7u64;
        let random: Vec<bool> = (0..10_000)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                !(seed >> 33).is_multiple_of(5)
            })
            .collect();
        round_trip(&random);
    }

    #[test]
    fn levels_cut_short_are_an_error() {
        let mut encoded = Vec::new();
        write_levels(
            &[true, false, true, false, true, false, true, false, true],
            &mut encoded,
        );
        let mut out = Vec::new();
        assert!(read_levels(&encoded, 9, &mut out).is_ok());
        let cut = encoded.get(..encoded.len() - 1).unwrap();
        assert!(matches!(
            read_levels(cut, 9, &mut out),
            Err(SpliceError::Unsupported(_))
        ));
        assert!(read_levels(&[], 1, &mut out).is_err());
    }
}
