//! A row packed into one allocation: how a change's row waits in the sink's
//! buffer and travels through a commit.
//!
//! A [`Row`] is a vector of [`Datum`]s, each as large as its largest variant,
//! and every text or byte value behind it has an allocation of its own. A
//! 200-byte row of five columns takes about 400 bytes that way. Packed, it
//! takes its bytes plus one tag per value and one allocation: a commit of a
//! million such changes holds about 160 MB less.
//!
//! The layout: a flags byte (whether a value is [`Datum::Unchanged`]), the
//! number of values, then each value as a tag byte and its payload, in the
//! Avro binary primitives of [`crate::kafka::avro::binary`]: integers as
//! zig-zag varints, floats as their little-endian bits, text, bytes and
//! decimals (minimal two's complement) as a length and the bytes, arrays as
//! a count and their items. Only [`PackedRow::pack`] writes one, so reading
//! one fails only on a bug; it is still checked, never trusted.

use super::datum::{Datum, Row};
use super::decimal::Decimal;
use crate::kafka::avro::binary::{self, ReadError, long_len, write_bytes, write_long};

const HAS_UNCHANGED: u8 = 1;

const NULL: u8 = 0;
const UNCHANGED: u8 = 1;
const FALSE: u8 = 2;
const TRUE: u8 = 3;
const INT: u8 = 4;
const UINT64: u8 = 5;
const FLOAT32: u8 = 6;
const FLOAT64: u8 = 7;
const DECIMAL: u8 = 8;
const TEXT: u8 = 9;
const BYTES: u8 = 10;
const DATE: u8 = 11;
const MICROS: u8 = 12;
const INTERVAL: u8 = 13;
const ARRAY: u8 = 14;

/// Arrays nest no deeper than this (Postgres allows 6 dimensions): a
/// malformed row cannot make the reader recurse without end.
const MAX_DEPTH: usize = 16;

/// A row packed into one allocation (see the module doc). Two packed rows
/// are equal when their bytes are.
#[derive(Clone, PartialEq, Eq)]
pub struct PackedRow(Box<[u8]>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a packed row is malformed at byte {at} of {len}")]
pub struct Malformed {
    pub at: usize,
    pub len: usize,
}

impl PackedRow {
    /// Packs `row` into an allocation of exactly its packed size.
    pub fn pack(row: &Row) -> PackedRow {
        let size = 1 + long_len(row.0.len() as i64) + row.0.iter().map(packed_size).sum::<usize>();
        let mut out = Vec::with_capacity(size);
        let unchanged = row.0.iter().any(|d| matches!(d, Datum::Unchanged));
        out.push(if unchanged { HAS_UNCHANGED } else { 0 });
        write_long(&mut out, row.0.len() as i64);
        for d in &row.0 {
            put(&mut out, d);
        }
        PackedRow(out.into_boxed_slice())
    }

    /// The row, every value decoded.
    pub fn unpack(&self) -> Result<Row, Malformed> {
        let (mut reader, count) = self.values()?;
        let mut values = Vec::with_capacity(count);
        for _ in 0..count {
            values.push(reader.datum()?);
        }
        reader.end()?;
        Ok(Row(values))
    }

    /// Whether a value is [`Datum::Unchanged`] (read from the flags).
    pub fn has_unchanged(&self) -> bool {
        self.0.first().is_some_and(|f| f & HAS_UNCHANGED != 0)
    }

    /// Its bytes on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }

    /// The value of column `index`, or `None` past the last one.
    pub fn get(&self, index: usize) -> Result<Option<Datum>, Malformed> {
        let (mut reader, count) = self.values()?;
        if index >= count {
            return Ok(None);
        }
        for _ in 0..index {
            reader.skip()?;
        }
        reader.datum().map(Some)
    }

    /// Appends where each value starts (for [`PackedRow::value_at`]): a
    /// caller reading many columns of a row finds each in one step.
    pub fn starts(&self, out: &mut Vec<u32>) -> Result<(), Malformed> {
        let (mut reader, count) = self.values()?;
        for _ in 0..count {
            let at = reader.inner.position();
            out.push(u32::try_from(at).map_err(|_| reader.malformed())?);
            reader.skip()?;
        }
        reader.end()
    }

    /// The value that starts at `start` (one of [`PackedRow::starts`]).
    pub fn value_at(&self, start: u32) -> Result<Datum, Malformed> {
        self.reader(start as usize).datum()
    }

    /// The value that starts at `start` when it is text, borrowed from the
    /// packed bytes; `Err` holds any other value, decoded.
    pub fn text_at(&self, start: u32) -> Result<Result<&str, Datum>, Malformed> {
        let start = start as usize;
        if self.0.get(start) != Some(&TEXT) {
            return self.reader(start).datum().map(Err);
        }
        let mut reader = self.reader(start + 1);
        reader.read(|r| r.string()).map(Ok)
    }

    fn reader(&self, at: usize) -> Reader<'_> {
        Reader {
            inner: binary::Reader::at(&self.0, at),
            len: self.0.len(),
            depth: 0,
        }
    }

    /// A reader at the first value, and the number of values.
    fn values(&self) -> Result<(Reader<'_>, usize), Malformed> {
        let mut reader = self.reader(1);
        if self.0.is_empty() {
            return Err(reader.malformed());
        }
        let count = reader.count()?;
        Ok((reader, count))
    }
}

impl From<&Row> for PackedRow {
    fn from(row: &Row) -> Self {
        PackedRow::pack(row)
    }
}

impl From<Row> for PackedRow {
    fn from(row: Row) -> Self {
        PackedRow::pack(&row)
    }
}

impl std::fmt::Debug for PackedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.unpack() {
            Ok(row) => f.debug_tuple("PackedRow").field(&row.0).finish(),
            Err(e) => write!(f, "PackedRow({e})"),
        }
    }
}

/// The packed size of one value: its tag and its payload.
fn packed_size(d: &Datum) -> usize {
    let bytes = |n: usize| long_len(n as i64) + n;
    1 + match d {
        Datum::Null | Datum::Unchanged | Datum::Bool(_) => 0,
        Datum::Int(v) | Datum::Micros(v) => long_len(*v),
        Datum::Date(v) => long_len(i64::from(*v)),
        Datum::UInt64(v) => long_len(*v as i64),
        Datum::Float32(_) => 4,
        Datum::Float64(_) => 8,
        Datum::Decimal(v) => bytes(v.as_bytes().len()),
        Datum::Text(s) => bytes(s.len()),
        Datum::Bytes(b) => bytes(b.len()),
        Datum::Interval {
            months,
            days,
            micros,
        } => long_len(i64::from(*months)) + long_len(i64::from(*days)) + long_len(*micros),
        Datum::Array(items) => {
            long_len(items.len() as i64) + items.iter().map(packed_size).sum::<usize>()
        }
    }
}

fn put(out: &mut Vec<u8>, d: &Datum) {
    match d {
        Datum::Null => out.push(NULL),
        Datum::Unchanged => out.push(UNCHANGED),
        Datum::Bool(false) => out.push(FALSE),
        Datum::Bool(true) => out.push(TRUE),
        Datum::Int(v) => {
            out.push(INT);
            write_long(out, *v);
        }
        Datum::UInt64(v) => {
            out.push(UINT64);
            // Its bits as an i64: every u64 comes back.
            write_long(out, *v as i64);
        }
        Datum::Float32(v) => {
            out.push(FLOAT32);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Datum::Float64(v) => {
            out.push(FLOAT64);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Datum::Decimal(v) => {
            out.push(DECIMAL);
            write_bytes(out, v.as_bytes());
        }
        Datum::Text(s) => {
            out.push(TEXT);
            write_bytes(out, s.as_bytes());
        }
        Datum::Bytes(b) => {
            out.push(BYTES);
            write_bytes(out, b);
        }
        Datum::Date(v) => {
            out.push(DATE);
            write_long(out, i64::from(*v));
        }
        Datum::Micros(v) => {
            out.push(MICROS);
            write_long(out, *v);
        }
        Datum::Interval {
            months,
            days,
            micros,
        } => {
            out.push(INTERVAL);
            write_long(out, i64::from(*months));
            write_long(out, i64::from(*days));
            write_long(out, *micros);
        }
        Datum::Array(items) => {
            out.push(ARRAY);
            write_long(out, items.len() as i64);
            for item in items {
                put(out, item);
            }
        }
    }
}

/// The Avro reader, with its errors as [`Malformed`] and a depth for arrays.
struct Reader<'a> {
    inner: binary::Reader<'a>,
    len: usize,
    /// Arrays entered.
    depth: usize,
}

impl<'a> Reader<'a> {
    fn malformed(&self) -> Malformed {
        Malformed {
            at: self.inner.position(),
            len: self.len,
        }
    }

    /// One read of the inner reader; its error says where it stopped.
    fn read<T>(
        &mut self,
        f: impl FnOnce(&mut binary::Reader<'a>) -> Result<T, ReadError>,
    ) -> Result<T, Malformed> {
        let len = self.len;
        let inner = &mut self.inner;
        f(inner).map_err(|_| Malformed {
            at: inner.position(),
            len,
        })
    }

    /// Every byte read: anything after the last value is malformed.
    fn end(&self) -> Result<(), Malformed> {
        if self.inner.position() == self.len {
            Ok(())
        } else {
            Err(self.malformed())
        }
    }

    /// A count of values or items, each of which takes a byte at least.
    fn count(&mut self) -> Result<usize, Malformed> {
        let count = self.read(|r| r.long())?;
        usize::try_from(count)
            .ok()
            .filter(|n| *n <= self.len)
            .ok_or_else(|| self.malformed())
    }

    /// Enters an array: its number of items.
    fn array(&mut self) -> Result<usize, Malformed> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.malformed());
        }
        self.count()
    }

    fn datum(&mut self) -> Result<Datum, Malformed> {
        let at = self.inner.position();
        Ok(match self.read(|r| r.byte())? {
            NULL => Datum::Null,
            UNCHANGED => Datum::Unchanged,
            FALSE => Datum::Bool(false),
            TRUE => Datum::Bool(true),
            INT => Datum::Int(self.read(|r| r.long())?),
            UINT64 => Datum::UInt64(self.read(|r| r.long())? as u64),
            FLOAT32 => Datum::Float32(self.read(|r| r.float())?),
            FLOAT64 => Datum::Float64(self.read(|r| r.double())?),
            DECIMAL => Datum::Decimal(Decimal::from_twos_complement(self.read(|r| r.bytes())?)),
            TEXT => Datum::Text(self.read(|r| r.string())?.to_owned()),
            BYTES => Datum::Bytes(self.read(|r| r.bytes())?.to_vec()),
            DATE => Datum::Date(self.read(|r| r.int())?),
            MICROS => Datum::Micros(self.read(|r| r.long())?),
            INTERVAL => Datum::Interval {
                months: self.read(|r| r.int())?,
                days: self.read(|r| r.int())?,
                micros: self.read(|r| r.long())?,
            },
            ARRAY => {
                let count = self.array()?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.datum()?);
                }
                self.depth -= 1;
                Datum::Array(items)
            }
            _ => return Err(Malformed { at, len: self.len }),
        })
    }

    /// Steps over one value without building it.
    fn skip(&mut self) -> Result<(), Malformed> {
        match self.read(|r| r.byte())? {
            NULL | UNCHANGED | FALSE | TRUE => {}
            INT | UINT64 | DATE | MICROS => {
                self.read(|r| r.long())?;
            }
            FLOAT32 => {
                self.read(|r| r.fixed(4))?;
            }
            FLOAT64 => {
                self.read(|r| r.fixed(8))?;
            }
            DECIMAL | TEXT | BYTES => {
                self.read(|r| r.bytes())?;
            }
            INTERVAL => {
                for _ in 0..3 {
                    self.read(|r| r.long())?;
                }
            }
            ARRAY => {
                for _ in 0..self.array()? {
                    self.skip()?;
                }
                self.depth -= 1;
            }
            _ => return Err(self.malformed()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Row {
        Row(vec![
            Datum::Null,
            Datum::Unchanged,
            Datum::Bool(false),
            Datum::Bool(true),
            Datum::Int(0),
            Datum::Int(-1),
            Datum::Int(i64::MIN),
            Datum::Int(i64::MAX),
            Datum::UInt64(0),
            Datum::UInt64(u64::MAX),
            Datum::Float32(-0.5),
            Datum::Float32(f32::NAN),
            Datum::Float64(f64::NAN),
            Datum::Float64(-0.0),
            Datum::Decimal(Decimal::from_i128(-12_345_678_901_234_567_890)),
            Datum::Decimal(Decimal::from_twos_complement(&[0x7f; 40])),
            Datum::Decimal(Decimal::from_i128(0)),
            Datum::Decimal(Decimal::from_i128(-1)),
            Datum::Text(String::new()),
            Datum::Text("naïve ☃ ".repeat(40)),
            Datum::Bytes(vec![0, 255, 128]),
            Datum::Date(-719_162),
            Datum::Date(i32::MIN),
            Datum::Date(i32::MAX),
            Datum::Micros(i64::MIN),
            Datum::Interval {
                months: -14,
                days: i32::MAX,
                micros: -1,
            },
            Datum::Interval {
                months: i32::MIN,
                days: 0,
                micros: i64::MAX,
            },
            Datum::Array(vec![
                Datum::Array(vec![Datum::Int(1), Datum::Null]),
                Datum::Array(vec![Datum::Text("x".into())]),
            ]),
            Datum::Array(vec![]),
        ])
    }

    /// Equal as rows, floats by their bits (NaN and -0.0 included).
    fn same(a: &Row, b: &Row) -> bool {
        a.0.len() == b.0.len()
            && a.0.iter().zip(&b.0).all(|(x, y)| match (x, y) {
                (Datum::Float64(x), Datum::Float64(y)) => x.to_bits() == y.to_bits(),
                (Datum::Float32(x), Datum::Float32(y)) => x.to_bits() == y.to_bits(),
                _ => x == y,
            })
    }

    #[test]
    fn every_kind_of_value_comes_back_as_it_went_in_one_exact_allocation() {
        let row = every_kind();
        let packed = PackedRow::pack(&row);
        let back = packed.unpack().unwrap();
        assert!(same(&row, &back), "{row:?}\n{back:?}");
        assert!(packed.has_unchanged());
        // The size computed up front is the size written, value by value.
        for d in &row.0 {
            let mut written = Vec::new();
            put(&mut written, d);
            assert_eq!(packed_size(d), written.len(), "{d:?}");
        }
        assert!(!PackedRow::pack(&Row(vec![Datum::Int(1)])).has_unchanged());
    }

    #[test]
    fn each_value_is_found_by_index_and_by_its_start() {
        let row = every_kind();
        let packed = PackedRow::from(&row);
        let mut starts = Vec::new();
        packed.starts(&mut starts).unwrap();
        assert_eq!(starts.len(), row.len());
        for (i, d) in row.0.iter().enumerate() {
            let by_index = packed.get(i).unwrap().unwrap();
            let by_start = packed.value_at(starts[i]).unwrap();
            assert!(same(&Row(vec![d.clone()]), &Row(vec![by_index])), "{i}");
            assert!(same(&Row(vec![d.clone()]), &Row(vec![by_start])), "{i}");
        }
        assert_eq!(packed.get(row.len()).unwrap(), None);
        // Text is borrowed in place; anything else comes decoded.
        for (i, d) in row.0.iter().enumerate() {
            match (d, packed.text_at(starts[i]).unwrap()) {
                (Datum::Text(want), Ok(got)) => assert_eq!(got, want),
                (Datum::Text(_), Err(other)) => panic!("{i}: text read as {other:?}"),
                (_, Ok(got)) => panic!("{i}: {d:?} read as text {got:?}"),
                (_, Err(_)) => {}
            }
        }
        let empty = PackedRow::pack(&Row::default());
        assert_eq!(empty.unpack().unwrap(), Row::default());
    }

    #[test]
    fn malformed_bytes_are_an_error_that_says_where() {
        let packed = PackedRow::pack(&Row(vec![Datum::Text("abc".into()), Datum::Int(300)]));
        // Cut short anywhere past the header: never a panic, always an error.
        for cut in 0..packed.0.len() {
            let short = PackedRow(packed.0[..cut].to_vec().into_boxed_slice());
            assert!(short.unpack().is_err(), "cut at {cut}");
        }
        let mut bad = packed.0.to_vec();
        bad[2] = 99; // the first value's tag
        let err = PackedRow(bad.into_boxed_slice()).unpack().unwrap_err();
        assert_eq!(err, Malformed { at: 2, len: 10 });
        assert_eq!(err.to_string(), "a packed row is malformed at byte 2 of 10");
        // Invalid UTF-8 in a text value.
        let mut bad = packed.0.to_vec();
        bad[4] = 0xff;
        assert!(PackedRow(bad.into_boxed_slice()).unpack().is_err());
        // A count beyond the bytes.
        let huge = PackedRow(vec![0, 0xfe, 0xff, 0x03].into_boxed_slice());
        assert!(huge.unpack().is_err());
        // Bytes after the last value.
        let mut long = packed.0.to_vec();
        long.push(NULL);
        let long = PackedRow(long.into_boxed_slice());
        assert!(long.unpack().is_err());
        assert!(long.starts(&mut Vec::new()).is_err());
        // A varint past 64 bits (one value: a count of 1 is 2, zig-zagged).
        let mut wide = vec![0, 2, INT];
        wide.extend([0xff; 9]);
        wide.push(0x02);
        assert!(PackedRow(wide.clone().into_boxed_slice()).unpack().is_err());
        // ... where the widest that fits is read.
        *wide.last_mut().unwrap() = 0x01;
        let widest = PackedRow(wide.into_boxed_slice()).unpack().unwrap();
        assert_eq!(widest, Row(vec![Datum::Int(i64::MIN)]));
        // Arrays nested without end: an error, not a stack overflow.
        let mut deep = vec![0, 2];
        for _ in 0..100_000 {
            deep.extend([ARRAY, 2]);
        }
        deep.push(NULL);
        let deep = PackedRow(deep.into_boxed_slice());
        assert!(deep.unpack().is_err());
        assert!(deep.starts(&mut Vec::new()).is_err());
        // As deep as allowed is fine.
        let mut nested = Datum::Null;
        for _ in 0..MAX_DEPTH {
            nested = Datum::Array(vec![nested]);
        }
        let row = Row(vec![nested]);
        assert_eq!(PackedRow::pack(&row).unpack().unwrap(), row);
    }
}
