//! Rewriting a stored slice page by page: the column chunks of a base file
//! whose pages are PLAIN are filtered and extended as bytes, without
//! decoding their values into Arrow and encoding them again. A new file's
//! columns without a dictionary are written by the same pages
//! ([`plan_new`], [`NewFile`]).
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
//!   flat; stored without a dictionary, its PLAIN values are copied; stored
//!   with one ([`Route::Dictionary`]), its kept rows' indices are decoded
//!   and encoded again into a dictionary of the stored values still in use
//!   and the new rows' values ([`dictionary_column`]: the Arrow writer
//!   would intern and compare every value). Other columns (floats,
//!   booleans, lists, wide decimals, a chunk whose dictionary fell back to
//!   PLAIN) are decoded and encoded by the Arrow writer as before;
//! - pages other than PLAIN (or dictionary-index) version 1 data pages, and
//!   a rebuilt dictionary past the writer's 1 MiB limit, make the whole file
//!   go through Arrow ([`SpliceError::Unsupported`], raised before the file
//!   is written): nothing is half-written.
//!
//! Spliced chunks carry what the Arrow writer writes: exact min/max (the same
//! orders: signed integers, unsigned bytes, with the legacy min/max fields
//! for signed columns), null counts, an offset index, pages of at most
//! [`PAGE_BYTES`] and [`PAGE_ROWS`]. Statistics of byte strings longer than
//! the writer's truncation length are left out rather than truncated.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowPrimitiveType, Date32Type, Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Schema, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, compute_leaves};
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
    /// Stored with a dictionary: the indices of the kept rows are carried,
    /// the dictionary rebuilt ([`dictionary_column`]).
    Dictionary(Kind),
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

/// The Parquet schema the Arrow writer makes of `arrow`, when it has one
/// leaf per field, in order (no nested fields).
fn leaves(arrow: &Schema) -> Option<parquet::schema::types::SchemaDescriptor> {
    let out = parquet::arrow::ArrowSchemaConverter::new()
        .convert(arrow)
        .ok()?;
    let flat = out.num_columns() == arrow.fields().len()
        && (arrow.fields().iter().enumerate())
            .all(|(i, field)| out.column(i).path().parts().first() == Some(field.name()));
    flat.then_some(out)
}

/// The route of each column when `stored` can be spliced into a file of
/// `arrow`'s columns compressed with `codec`; `None` when it cannot (see the
/// module doc).
pub fn plan(stored: &ParquetMetaData, arrow: &Schema, codec: Compression) -> Option<Vec<Route>> {
    let out = leaves(arrow)?;
    let schema = stored.file_metadata().schema_descr();
    if schema.root_schema() != out.root_schema()
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
        let chunks = || groups.iter().map(|g| g.column(i));
        let dictionary = chunks().any(|c| c.dictionary_page_offset().is_some());
        // A chunk whose dictionary outgrew its limit holds PLAIN pages after
        // the dictionary ones: it goes through Arrow.
        let fell_back = chunks().any(|c| {
            c.dictionary_page_offset().is_none()
                || (c.page_encoding_stats_mask()).is_some_and(|m| m.is_set(Encoding::PLAIN))
        });
        routes.push(match kind(&descr, field.data_type()) {
            Some(k) if !dictionary => Route::Splice(k),
            Some(k) if !fell_back => Route::Dictionary(k),
            _ => Route::Arrow,
        });
    }
    Some(routes)
}

/// A page codec.
enum Codec {
    None,
    /// The reference encoder and its output buffer, reused from page to
    /// page (a fresh buffer of the largest output is zeroed for every
    /// page), and the encoder of pages of long byte strings
    /// ([`super::snappy`], holding its own buffer).
    Snappy(snap::raw::Encoder, super::snappy::Encoder, Vec<u8>),
    Zstd(zstd::bulk::Compressor<'static>),
}

/// The average length from which a page's byte strings are compressed
/// with [`super::snappy`]: shorter ones compressed faster and smaller with
/// the reference encoder (the benchmark's record keys, 9 bytes with their
/// length: 1.4 times as fast, 11% smaller; its sequence numbers, 29 bytes:
/// 1.25 times as fast, 2% smaller; see `docs/MEASUREMENTS.md`).
const LONG_VALUES: usize = 32;

impl Codec {
    fn of(codec: Compression) -> Result<Codec, SpliceError> {
        match codec {
            Compression::UNCOMPRESSED => Ok(Codec::None),
            Compression::SNAPPY => Ok(Codec::Snappy(
                snap::raw::Encoder::new(),
                super::snappy::Encoder::new(),
                Vec::new(),
            )),
            Compression::ZSTD(level) => zstd::bulk::Compressor::new(level.compression_level())
                .map(Codec::Zstd)
                .map_err(|e| SpliceError::Codec(e.to_string())),
            other => Err(unsupported(format!("codec {other}"))),
        }
    }

    /// Compresses one page; `long` when it holds byte strings of
    /// [`LONG_VALUES`] bytes or more on average.
    fn compress(&mut self, data: &[u8], long: bool) -> Result<Bytes, SpliceError> {
        match self {
            Codec::None => Ok(Bytes::copy_from_slice(data)),
            Codec::Snappy(_, text, _) if long => text
                .compress(data)
                .map(Bytes::copy_from_slice)
                .map_err(|e| SpliceError::Codec(e.to_string())),
            Codec::Snappy(encoder, _, out) => {
                let most = snap::raw::max_compress_len(data.len());
                if out.len() < most {
                    out.resize(most, 0);
                }
                let n = encoder
                    .compress(data, out)
                    .map_err(|e| SpliceError::Codec(e.to_string()))?;
                Ok(Bytes::copy_from_slice(out.get(..n).unwrap_or_default()))
            }
            Codec::Zstd(compressor) => compressor
                .compress(data)
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

/// Reads `n` values of `width` bits (the RLE / bit-packed hybrid encoding
/// of dictionary indices) into `out`.
fn read_hybrid(data: &[u8], n: usize, width: u8, out: &mut Vec<u32>) -> Result<(), SpliceError> {
    out.clear();
    out.reserve(n);
    let cut = || unsupported("dictionary indices cut short");
    if width > 32 {
        return Err(unsupported(format!("dictionary indices of {width} bits")));
    }
    let bytes = usize::from(width).div_ceil(8);
    let mask = if width == 32 {
        u64::from(u32::MAX)
    } else {
        (1u64 << width) - 1
    };
    let mut pos = 0usize;
    while out.len() < n {
        let mut reader = Reader::at(data, pos);
        let header = reader
            .varint()
            .map_err(|e| unsupported(format!("an index run header: {e}")))?;
        pos = reader.position();
        let count = usize::try_from(header >> 1).unwrap_or(usize::MAX);
        if header & 1 == 1 {
            // `count` groups of eight values, `width` bytes each.
            let len = count.checked_mul(usize::from(width)).ok_or_else(cut)?;
            let end = pos
                .checked_add(len)
                .filter(|e| *e <= data.len())
                .ok_or_else(cut)?;
            let packed = data.get(pos..end).ok_or_else(cut)?;
            let (mut acc, mut bits) = (0u64, 0u32);
            let mut bytes_in = packed.iter();
            for _ in 0..count.saturating_mul(8) {
                if out.len() == n {
                    break;
                }
                while bits < u32::from(width) {
                    acc |= u64::from(*bytes_in.next().ok_or_else(cut)?) << bits;
                    bits += 8;
                }
                out.push((acc & mask) as u32);
                acc = acc.checked_shr(u32::from(width)).unwrap_or(0);
                bits -= u32::from(width);
            }
            pos = end;
        } else {
            let value = data.get(pos..pos + bytes).ok_or_else(cut)?;
            let value = value
                .iter()
                .rev()
                .fold(0u32, |v, b| (v << 8) | u32::from(*b));
            pos += bytes;
            out.extend(std::iter::repeat_n(value, count.min(n - out.len())));
        }
    }
    Ok(())
}

/// Encodes `values` of `width` bits: runs of eight or more equal values as
/// RLE runs, the rest bit-packed in groups of eight (only the last group is
/// padded).
fn write_hybrid(values: &[u32], width: u8, out: &mut Vec<u8>) {
    let bytes = usize::from(width).div_ceil(8);
    let run_at = |i: usize| {
        let rest = values.get(i..).unwrap_or_default();
        rest.first()
            .map_or(0, |v| rest.iter().take_while(|x| *x == v).count())
    };
    let mut i = 0usize;
    let mut packed = Vec::new();
    while i < values.len() {
        let run = run_at(i);
        if run >= 8 {
            write_varint(out, (run as u64) << 1);
            let value = values.get(i).copied().unwrap_or(0).to_le_bytes();
            out.extend_from_slice(value.get(..bytes).unwrap_or_default());
            i += run;
            continue;
        }
        packed.clear();
        let mut groups = 0u64;
        loop {
            let (mut acc, mut bits) = (0u64, 0u32);
            for k in 0..8 {
                acc |= u64::from(values.get(i + k).copied().unwrap_or(0)) << bits;
                bits += u32::from(width);
                while bits >= 8 {
                    packed.push(acc as u8);
                    acc >>= 8;
                    bits -= 8;
                }
            }
            groups += 1;
            i += 8;
            if i >= values.len() || run_at(i) >= 8 {
                break;
            }
        }
        write_varint(out, (groups << 1) | 1);
        out.extend_from_slice(&packed);
    }
}

/// Bits that dictionary indices below `entries` take (the Arrow writer's
/// width: none for a dictionary of one value).
fn index_width(entries: usize) -> u8 {
    (usize::BITS - entries.saturating_sub(1).leading_zeros()) as u8
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
    /// Dictionary mode: the indices' width, the page's indices, and where
    /// the dictionary page and the first data page were written.
    dictionary: Option<Dictionary>,
    first_page: Option<u64>,
}

struct Dictionary {
    width: u8,
    indices: Vec<u32>,
    offset: u64,
}

impl<'w> Chunk<'w> {
    fn new(
        kind: Kind,
        descr: &ColumnDescriptor,
        stats: bool,
        codec: Compression,
        sink: &'w mut TrackedWrite<Vec<u8>>,
    ) -> Result<Self, SpliceError> {
        // A page of fixed-width values is full at its rows: a new file
        // holds a page being filled for every column at once.
        let values = match kind {
            Kind::I32 => PAGE_ROWS * 4,
            Kind::I64 => PAGE_ROWS * 8,
            Kind::Bytes => PAGE_BYTES + PAGE_BYTES / 8,
        };
        let mut buffer = Vec::with_capacity(LEVELS_ROOM + values);
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
            dictionary: None,
            first_page: None,
        })
    }

    /// Writes the dictionary page of `entries` (each the PLAIN bytes of one
    /// value) and turns the chunk to writing indices into it.
    fn write_dictionary(&mut self, entries: &[&[u8]]) -> Result<(), SpliceError> {
        let mut plain = Vec::new();
        for entry in entries {
            write_plain(self.kind, entry, &mut plain)?;
            if self.stats {
                self.bounds.see(self.kind, entry);
            }
        }
        let uncompressed = plain.len();
        let page = Page::DictionaryPage {
            buf: self.codec.compress(&plain, false)?,
            num_values: u32::try_from(entries.len())
                .map_err(|_| unsupported("a dictionary of 2^32 values"))?,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        };
        let spec = self
            .pages
            .write_page(CompressedPage::new(page, uncompressed))?;
        self.compressed += spec.compressed_size as u64;
        self.uncompressed += spec.uncompressed_size as u64;
        self.dictionary = Some(Dictionary {
            width: index_width(entries.len()),
            indices: Vec::with_capacity(PAGE_ROWS),
            offset: spec.offset,
        });
        Ok(())
    }

    /// Appends `rows` rows of the same dictionary index (`None`: NULL), a
    /// page at a time.
    fn push_indices(&mut self, index: Option<u32>, mut rows: usize) -> Result<(), SpliceError> {
        while rows > 0 {
            let n = rows.min(PAGE_ROWS.saturating_sub(self.levels.len()).max(1));
            let dictionary = (self.dictionary.as_mut())
                .ok_or_else(|| unsupported("an index before its dictionary"))?;
            if let Some(i) = index {
                dictionary.indices.extend(std::iter::repeat_n(i, n));
            }
            self.end_rows(index.is_some(), n)?;
            rows -= n;
        }
        Ok(())
    }

    /// Records that a row was appended, `defined` or NULL, and writes the
    /// page out when it is full.
    fn end_row(&mut self, defined: bool) -> Result<(), SpliceError> {
        self.end_rows(defined, 1)
    }

    /// Records that `n` rows were appended, all `defined` or all NULL (no
    /// more than the page being filled has room for), and writes the page
    /// out when it is full.
    fn end_rows(&mut self, defined: bool, n: usize) -> Result<(), SpliceError> {
        if !defined {
            if !self.nullable {
                return Err(unsupported("a NULL in a required column"));
            }
            self.nulls += n as u64;
        }
        self.levels.extend(std::iter::repeat_n(defined, n));
        if self.full() {
            self.flush()?;
        }
        Ok(())
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
        if let Some(dictionary) = &mut self.dictionary {
            self.buffer.push(dictionary.width);
            write_hybrid(&dictionary.indices, dictionary.width, &mut self.buffer);
            dictionary.indices.clear();
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
        let long = self.kind == Kind::Bytes
            && self.dictionary.is_none()
            && self.buffer.len() - LEVELS_ROOM >= LONG_VALUES * rows;
        let compressed = self.codec.compress(data, long)?;
        let page = Page::DataPage {
            buf: compressed,
            num_values: u32::try_from(rows).map_err(|_| unsupported("a page of 2^32 rows"))?,
            encoding: if self.dictionary.is_some() {
                Encoding::RLE_DICTIONARY
            } else {
                Encoding::PLAIN
            },
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = self
            .pages
            .write_page(CompressedPage::new(page, uncompressed))?;
        self.first_page.get_or_insert(spec.offset);
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
        if let Some(v) = value {
            if self.stats {
                self.bounds.see(self.kind, v);
            }
            write_plain(self.kind, v, &mut self.buffer)?;
        }
        self.end_row(value.is_some())
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
        each_value(self.kind, array, &mut |v| self.push(v))
    }

    fn finish(mut self, descr: ColumnDescPtr, codec: Compression) -> Result<Closed, SpliceError> {
        self.flush()?;
        let offset = |o: u64| i64::try_from(o).unwrap_or(i64::MAX);
        let encodings = match self.dictionary {
            Some(_) => vec![Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY],
            None => vec![Encoding::PLAIN, Encoding::RLE],
        };
        let mut metadata = ColumnChunkMetaData::builder(descr)
            .set_compression(codec)
            .set_encodings(encodings)
            .set_num_values(i64::try_from(self.rows).unwrap_or(i64::MAX))
            .set_total_compressed_size(i64::try_from(self.compressed).unwrap_or(i64::MAX))
            .set_total_uncompressed_size(i64::try_from(self.uncompressed).unwrap_or(i64::MAX))
            .set_dictionary_page_offset(self.dictionary.as_ref().map(|d| offset(d.offset)))
            .set_data_page_offset(offset(self.first_page.unwrap_or(0)));
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

/// Appends one value of `kind` PLAIN-encoded: byte arrays after their
/// length.
fn write_plain(kind: Kind, value: &[u8], out: &mut Vec<u8>) -> Result<(), SpliceError> {
    if kind == Kind::Bytes {
        let len =
            u32::try_from(value.len()).map_err(|_| unsupported("a value of 4 GiB or more"))?;
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(value);
    Ok(())
}

/// What [`each_value`] hands each value to.
type ValueSink<'f> = dyn FnMut(Option<&[u8]>) -> Result<(), SpliceError> + 'f;

/// Calls `f` with each row of an Arrow array of a column of `kind`: its
/// PLAIN bytes, `None` for NULL.
fn each_value(kind: Kind, array: &dyn Array, f: &mut ValueSink<'_>) -> Result<(), SpliceError> {
    let wrong = || unsupported(format!("a fresh {} column", array.data_type()));
    let rows = 0..array.len();
    /// Each value of a primitive array as its `N` PLAIN bytes.
    fn primitive<T: ArrowPrimitiveType, const N: usize>(
        array: &dyn Array,
        plain: impl Fn(T::Native) -> [u8; N],
        f: &mut ValueSink<'_>,
    ) -> Result<(), SpliceError> {
        let a = array.as_primitive::<T>();
        for r in 0..a.len() {
            let v = a.is_valid(r).then(|| plain(a.value(r)));
            f(v.as_ref().map(|b| b.as_slice()))?;
        }
        Ok(())
    }
    match (kind, array.data_type()) {
        (Kind::I32, DataType::Int32) => primitive::<Int32Type, 4>(array, i32::to_le_bytes, f),
        (Kind::I32, DataType::Date32) => primitive::<Date32Type, 4>(array, i32::to_le_bytes, f),
        // As the Arrow writer stores decimals: the unscaled value cut to the
        // physical width (the precision fits in it).
        (Kind::I32, DataType::Decimal128(..)) => {
            primitive::<Decimal128Type, 4>(array, |v| (v as i32).to_le_bytes(), f)
        }
        (Kind::I64, DataType::Int64) => primitive::<Int64Type, 8>(array, i64::to_le_bytes, f),
        (Kind::I64, DataType::Timestamp(TimeUnit::Microsecond, _)) => {
            primitive::<TimestampMicrosecondType, 8>(array, i64::to_le_bytes, f)
        }
        (Kind::I64, DataType::Decimal128(..)) => {
            primitive::<Decimal128Type, 8>(array, |v| (v as i64).to_le_bytes(), f)
        }
        (Kind::Bytes, DataType::Utf8 | DataType::Utf8View) => {
            let s = Strings::of(array).ok_or_else(wrong)?;
            rows.into_iter()
                .try_for_each(|r| f(s.is_valid(r).then(|| s.value(r).as_bytes())))
        }
        (Kind::Bytes, DataType::Binary) => {
            let a = array.as_binary::<i32>();
            rows.into_iter()
                .try_for_each(|r| f(a.is_valid(r).then(|| a.value(r))))
        }
        (Kind::Bytes, DataType::BinaryView) => {
            let a = array.as_binary_view();
            rows.into_iter()
                .try_for_each(|r| f(a.is_valid(r).then(|| a.value(r))))
        }
        _ => Err(wrong()),
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

impl Column<'_> {
    /// Room for the written chunk: the stored chunk's compressed bytes
    /// scaled to the rows written, with an eighth to spare. A chunk that
    /// outgrows its buffer is copied into one twice its size, on fresh
    /// pages the kernel must zero. The sizes a footer states are bounded
    /// by the file and by the new rows' own size, so a corrupt footer
    /// cannot ask for more.
    fn capacity(&self) -> usize {
        let stored = usize::try_from(self.chunk.compressed_size())
            .unwrap_or(0)
            .min(self.stored.len());
        let fresh_rows: usize = self.fresh.iter().map(|a| a.len()).sum();
        let fresh_bytes: usize = self.fresh.iter().map(|a| a.get_array_memory_size()).sum();
        let rows = self.rows.max(1);
        let scaled = (stored.saturating_mul(rows + fresh_rows) / rows).min(stored + fresh_bytes);
        scaled + scaled / 8 + 4096
    }
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
    let mut sink = TrackedWrite::new(Vec::with_capacity(input.capacity()));
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
            let values = page_values(&buf, n, chunk.nullable, def_level_encoding, &mut defined)?;
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
    into_chunk(sink, closed)
}

/// A written chunk's bytes and what its row group needs to take it in.
fn into_chunk(
    sink: TrackedWrite<Vec<u8>>,
    closed: Closed,
) -> Result<(Bytes, ColumnCloseResult), SpliceError> {
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

/// The values of a data page of `n` rows after its definition levels
/// (read into `defined`: one flag per row).
fn page_values<'p>(
    buf: &'p [u8],
    n: usize,
    nullable: bool,
    def_level_encoding: Encoding,
    defined: &mut Vec<bool>,
) -> Result<&'p [u8], SpliceError> {
    if !nullable {
        defined.clear();
        defined.resize(n, true);
        return Ok(buf);
    }
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
    read_levels(levels, n, defined)?;
    Ok(buf.get(4 + len..).unwrap_or_default())
}

/// The PLAIN values of a dictionary page of `n` values of `kind`.
fn dictionary_entries(buf: &[u8], n: usize, kind: Kind) -> Result<Vec<&[u8]>, SpliceError> {
    let cut = || unsupported("a dictionary page cut short");
    let mut entries = Vec::with_capacity(n);
    let mut pos = 0usize;
    for _ in 0..n {
        let (start, len) = match kind {
            Kind::I32 => (pos, 4),
            Kind::I64 => (pos, 8),
            Kind::Bytes => {
                let len = buf.get(pos..pos + 4).ok_or_else(cut)?;
                (
                    pos + 4,
                    u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize,
                )
            }
        };
        let end = start.checked_add(len).ok_or_else(cut)?;
        entries.push(buf.get(start..end).ok_or_else(cut)?);
        pos = end;
    }
    Ok(entries)
}

/// Writes one dictionary-encoded column chunk: the kept rows of the stored
/// chunk, then the fresh rows, as indices into a dictionary of the stored
/// values the kept rows use (in the stored order) followed by the fresh
/// rows' values not among them. The indices of the stored pages are
/// decoded and encoded again at the new dictionary's width; no value is
/// compared but the fresh ones. `constant`: the value of every kept row,
/// whatever was stored (a file's own name). A dictionary that outgrows the
/// Arrow writer's limit makes the file go through Arrow.
pub fn dictionary_column(
    input: Column<'_>,
    kind: Kind,
    descr: ColumnDescPtr,
    stats: bool,
    codec: Compression,
    constant: Option<&[u8]>,
) -> Result<(Bytes, ColumnCloseResult), SpliceError> {
    if input.keep.len() != input.rows {
        return Err(unsupported(
            "a keep mask of another length than the row group",
        ));
    }
    let nullable = descr.max_def_level() > 0;
    let mut reader = SerializedPageReader::new(
        Arc::new(input.stored.clone()),
        input.chunk,
        input.rows,
        None,
    )?;
    // The stored dictionary page, and the kept rows' indices into it.
    let mut dictionary: Option<(Bytes, usize)> = None;
    let mut kept: Vec<Option<u32>> = Vec::new();
    let (mut defined, mut indices) = (Vec::new(), Vec::new());
    let mut row = 0usize;
    while let Some(page) = reader.get_next_page()? {
        match page {
            Page::DictionaryPage {
                buf,
                num_values,
                encoding,
                ..
            } => {
                if dictionary.is_some()
                    || !matches!(encoding, Encoding::PLAIN | Encoding::PLAIN_DICTIONARY)
                {
                    return Err(unsupported(format!("a dictionary page encoded {encoding}")));
                }
                dictionary = Some((buf, num_values as usize));
            }
            Page::DataPage {
                buf,
                num_values,
                encoding,
                def_level_encoding,
                ..
            } => {
                if !matches!(
                    encoding,
                    Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY
                ) {
                    return Err(unsupported(format!(
                        "a dictionary chunk's page encoded {encoding}"
                    )));
                }
                let entries = dictionary.as_ref().map_or(0, |(_, n)| *n);
                let n = num_values as usize;
                let values = page_values(&buf, n, nullable, def_level_encoding, &mut defined)?;
                let count = defined.iter().filter(|d| **d).count();
                if count > 0 {
                    let (width, runs) = values
                        .split_first()
                        .ok_or_else(|| unsupported("a page without its index width"))?;
                    read_hybrid(runs, count, *width, &mut indices)?;
                } else {
                    indices.clear();
                }
                if indices.iter().any(|i| *i as usize >= entries) {
                    return Err(unsupported("an index past its dictionary"));
                }
                let keep = input
                    .keep
                    .get(row..row + n)
                    .ok_or_else(|| unsupported("pages holding more rows than their row group"))?;
                let mut next = indices.iter();
                for (valid, k) in defined.iter().zip(keep) {
                    let index = if *valid { next.next().copied() } else { None };
                    if *k {
                        kept.push(index);
                    }
                }
                row += n;
            }
            other => return Err(unsupported(format!("a {:?} page", other.page_type()))),
        }
    }
    if row != input.rows {
        return Err(unsupported("pages holding fewer rows than their row group"));
    }
    let (page, count) = dictionary.unwrap_or_default();
    let stored: Vec<&[u8]> = match constant {
        Some(value) => {
            for index in kept.iter_mut().flatten() {
                *index = 0;
            }
            vec![value]
        }
        None => dictionary_entries(&page, count, kind)?,
    };
    // The new dictionary: the stored values in use, then the fresh ones.
    let mut remap = vec![u32::MAX; stored.len()];
    for index in kept.iter().flatten() {
        if let Some(slot) = remap.get_mut(*index as usize) {
            *slot = 0;
        }
    }
    let mut entries: Vec<Vec<u8>> = Vec::new();
    for (slot, value) in remap.iter_mut().zip(&stored) {
        if *slot == 0 {
            *slot = entries.len() as u32;
            entries.push(value.to_vec());
        }
    }
    let mut known: std::collections::HashMap<Vec<u8>, u32, foldhash::fast::RandomState> =
        (entries.iter().enumerate())
            .map(|(i, e)| (e.clone(), i as u32))
            .collect();
    let mut fresh: Vec<Option<u32>> = Vec::new();
    for array in &input.fresh {
        each_value(kind, *array, &mut |value| {
            fresh.push(value.map(|v| match known.get(v) {
                Some(i) => *i,
                None => {
                    let i = entries.len() as u32;
                    entries.push(v.to_vec());
                    known.insert(v.to_vec(), i);
                    i
                }
            }));
            Ok(())
        })?;
    }
    let plain: usize = entries
        .iter()
        .map(|e| e.len() + if kind == Kind::Bytes { 4 } else { 0 })
        .sum();
    if plain > parquet::file::properties::DEFAULT_DICTIONARY_PAGE_SIZE_LIMIT {
        return Err(unsupported("a dictionary past the writer's limit"));
    }
    let mut sink = TrackedWrite::new(Vec::with_capacity(input.capacity() + plain));
    let closed = {
        let mut chunk = Chunk::new(kind, &descr, stats, codec, &mut sink)?;
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        chunk.write_dictionary(&refs)?;
        // Rows of the same index go in one step: a column of one value
        // (the partition path, the file name) is one run per page.
        for index in &mut kept {
            *index = index.and_then(|i| remap.get(i as usize).copied());
        }
        kept.extend(fresh);
        for run in kept.chunk_by(|a, b| a == b) {
            chunk.push_indices(run.first().copied().flatten(), run.len())?;
        }
        chunk.finish(descr, codec)?
    };
    into_chunk(sink, closed)
}

/// The route of each column of a new file of `arrow`'s columns: PLAIN
/// pages written here ([`Route::Splice`]) for the flat columns of a kind
/// spliced that get no dictionary (`dictionary`: whether the file's writer
/// properties give the column one), the Arrow writer for the others.
/// `None` when a field has several leaves (the file goes through Arrow).
pub fn plan_new(
    arrow: &Schema,
    dictionary: impl Fn(&ColumnDescriptor) -> bool,
) -> Option<Vec<Route>> {
    let out = leaves(arrow)?;
    let routes = (arrow.fields().iter().enumerate()).map(|(i, field)| {
        let descr = out.column(i);
        match kind(&descr, field.data_type()) {
            Some(k) if !dictionary(&descr) => Route::Splice(k),
            _ => Route::Arrow,
        }
    });
    Some(routes.collect())
}

/// One column of a row group of new rows ([`NewFile::row_group`]), for the
/// row group to take in.
pub enum NewColumn {
    /// Written here: its bytes and what the row group needs
    /// ([`parquet::file::writer::SerializedRowGroupWriter::append_column`]).
    Pages(Bytes, ColumnCloseResult),
    Arrow(ArrowColumnChunk),
}

/// The columns of a new file, as [`NewFile::row_group`] writes them.
pub struct NewFile<'a> {
    /// One per column ([`plan_new`]).
    pub routes: &'a [Route],
    pub fields: &'a arrow_schema::Fields,
    pub descriptors: &'a [ColumnDescPtr],
    /// Whether each column has chunk statistics.
    pub stats: &'a [bool],
    pub codec: Compression,
}

/// A column of a row group being written, then written.
enum Open<'w> {
    Pages(Chunk<'w>),
    Arrow(ArrowColumnWriter),
}

enum Done {
    Pages(Closed),
    Arrow(ArrowColumnChunk),
}

impl NewFile<'_> {
    /// Writes one row group of new rows as `next` gives their batches: the
    /// columns routed [`Route::Splice`] as PLAIN pages here, as a rewrite
    /// writes its new rows, the others by their Arrow column writers
    /// (`writers`, one per column). `room`: bytes to set aside per column.
    /// Returns the columns in order.
    pub fn row_group(
        &self,
        writers: Vec<ArrowColumnWriter>,
        room: &[usize],
        next: &mut dyn FnMut() -> Option<arrow_array::RecordBatch>,
    ) -> Result<Vec<NewColumn>, SpliceError> {
        let n = self.routes.len();
        let lengths = [
            self.fields.len(),
            self.descriptors.len(),
            self.stats.len(),
            writers.len(),
            room.len(),
        ];
        if lengths != [n; 5] {
            return Err(unsupported("a row group of new rows without every column"));
        }
        let mut sinks: Vec<TrackedWrite<Vec<u8>>> = (room.iter())
            .zip(self.routes)
            .map(|(room, route)| match route {
                Route::Splice(_) => TrackedWrite::new(Vec::with_capacity(*room)),
                _ => TrackedWrite::new(Vec::new()),
            })
            .collect();
        let mut open = Vec::with_capacity(n);
        for ((route, (descr, stats)), (sink, writer)) in (self.routes.iter())
            .zip(self.descriptors.iter().zip(self.stats))
            .zip(sinks.iter_mut().zip(writers))
        {
            open.push(match route {
                Route::Splice(kind) => {
                    Open::Pages(Chunk::new(*kind, descr, *stats, self.codec, sink)?)
                }
                _ => Open::Arrow(writer),
            });
        }
        while let Some(batch) = next() {
            if batch.num_columns() != n {
                return Err(unsupported("a batch of new rows without every column"));
            }
            for ((column, field), array) in (open.iter_mut())
                .zip(self.fields.iter())
                .zip(batch.columns())
            {
                match column {
                    Open::Pages(chunk) => chunk.fresh(array.as_ref())?,
                    Open::Arrow(writer) => write_leaves(writer, field, array)?,
                }
            }
        }
        let mut done = Vec::with_capacity(n);
        for (column, descr) in open.into_iter().zip(self.descriptors) {
            done.push(match column {
                Open::Pages(chunk) => Done::Pages(chunk.finish(descr.clone(), self.codec)?),
                Open::Arrow(writer) => Done::Arrow(writer.close()?),
            });
        }
        // The chunks' borrows of their sinks ended with them.
        (done.into_iter().zip(sinks))
            .map(|(column, sink)| match column {
                Done::Pages(closed) => {
                    into_chunk(sink, closed).map(|(b, c)| NewColumn::Pages(b, c))
                }
                Done::Arrow(chunk) => Ok(NewColumn::Arrow(chunk)),
            })
            .collect()
    }
}

/// Writes an array of `field` to its Arrow column writer.
pub fn write_leaves(
    writer: &mut ArrowColumnWriter,
    field: &arrow_schema::FieldRef,
    array: &ArrayRef,
) -> Result<(), ParquetError> {
    for leaf in compute_leaves(field, array)? {
        writer.write(&leaf)?;
    }
    Ok(())
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
    fn indices_round_trip_at_every_width() {
        let mut seed = 3u64;
        for width in [0u8, 1, 2, 3, 5, 8, 9, 13, 17, 24, 31, 32] {
            let top = if width == 32 {
                u64::from(u32::MAX)
            } else {
                (1u64 << width) - 1
            };
            let mut values: Vec<u32> = (0..5_000)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    ((seed >> 20) & top) as u32
                })
                .collect();
            // Runs long enough to be RLE runs, among packed groups.
            values.extend(std::iter::repeat_n(top as u32, 37));
            values.extend([0, 1 & top as u32, 0]);
            let mut encoded = Vec::new();
            write_hybrid(&values, width, &mut encoded);
            let mut decoded = Vec::new();
            read_hybrid(&encoded, values.len(), width, &mut decoded).unwrap();
            assert_eq!(decoded, values, "width {width}");
            assert_eq!(index_width(usize::try_from(top).unwrap() + 1), width);
            let cut = encoded.get(..encoded.len() / 2).unwrap();
            assert!(
                read_hybrid(cut, values.len(), width, &mut decoded).is_err() || width == 0,
                "width {width} cut short"
            );
        }
        assert_eq!(index_width(1), 0, "one value takes no bits");
        assert_eq!(index_width(2), 1);
        assert_eq!(index_width(5), 3);
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
