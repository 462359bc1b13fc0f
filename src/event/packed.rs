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
//! number of values (LEB128), then each value as a tag byte and its payload.
//! Integers are zigzag LEB128, floats their little-endian bits, text, bytes
//! and decimals (minimal two's complement) a LEB128 length and the bytes,
//! arrays a LEB128 count and their items. Only [`PackedRow::pack`] writes
//! one, so reading one fails only on a bug; it is still checked, never
//! trusted.

use super::datum::{Datum, Row};
use super::decimal::Decimal;

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
        let size =
            1 + varint_len(row.0.len() as u64) + row.0.iter().map(packed_size).sum::<usize>();
        let mut out = Vec::with_capacity(size);
        let unchanged = row.0.iter().any(|d| matches!(d, Datum::Unchanged));
        out.push(if unchanged { HAS_UNCHANGED } else { 0 });
        put_varint(&mut out, row.0.len() as u64);
        for d in &row.0 {
            put(&mut out, d);
        }
        PackedRow(out.into_boxed_slice())
    }

    /// The row, every value decoded.
    pub fn unpack(&self) -> Result<Row, Malformed> {
        let mut reader = self.values()?;
        let mut values = Vec::with_capacity(reader.left);
        for _ in 0..reader.left {
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
        let mut reader = self.values()?;
        if index >= reader.left {
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
        let mut reader = self.values()?;
        for _ in 0..reader.left {
            out.push(u32::try_from(reader.at).map_err(|_| reader.malformed())?);
            reader.skip()?;
        }
        reader.end()
    }

    /// The value that starts at `start` (one of [`PackedRow::starts`]).
    pub fn value_at(&self, start: u32) -> Result<Datum, Malformed> {
        Reader {
            bytes: &self.0,
            at: start as usize,
            left: 1,
            depth: 0,
        }
        .datum()
    }

    /// The value that starts at `start` when it is text, borrowed from the
    /// packed bytes; `Err` holds any other value, decoded.
    pub fn text_at(&self, start: u32) -> Result<Result<&str, Datum>, Malformed> {
        let mut reader = Reader {
            bytes: &self.0,
            at: start as usize,
            left: 1,
            depth: 0,
        };
        if self.0.get(reader.at) != Some(&TEXT) {
            return reader.datum().map(Err);
        }
        reader.at += 1;
        reader.text().map(Ok)
    }

    /// A reader at the first value, `left` holding the number of values.
    fn values(&self) -> Result<Reader<'_>, Malformed> {
        let mut reader = Reader {
            bytes: &self.0,
            at: 1,
            left: 0,
            depth: 0,
        };
        if self.0.is_empty() {
            return Err(reader.malformed());
        }
        let count = reader.varint()?;
        // Each value takes a byte at least: a larger count is malformed.
        reader.left = usize::try_from(count)
            .ok()
            .filter(|n| *n <= self.0.len())
            .ok_or_else(|| reader.malformed())?;
        Ok(reader)
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

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The packed size of one value: its tag and its payload.
fn packed_size(d: &Datum) -> usize {
    let bytes = |n: usize| varint_len(n as u64) + n;
    1 + match d {
        Datum::Null | Datum::Unchanged | Datum::Bool(_) => 0,
        Datum::Int(v) | Datum::Micros(v) => varint_len(zigzag(*v)),
        Datum::Date(v) => varint_len(zigzag(i64::from(*v))),
        Datum::UInt64(v) => varint_len(*v),
        Datum::Float32(_) => 4,
        Datum::Float64(_) => 8,
        Datum::Decimal(v) => bytes(v.as_bytes().len()),
        Datum::Text(s) => bytes(s.len()),
        Datum::Bytes(b) => bytes(b.len()),
        Datum::Interval {
            months,
            days,
            micros,
        } => {
            varint_len(zigzag(i64::from(*months)))
                + varint_len(zigzag(i64::from(*days)))
                + varint_len(zigzag(*micros))
        }
        Datum::Array(items) => {
            varint_len(items.len() as u64) + items.iter().map(packed_size).sum::<usize>()
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
            put_varint(out, zigzag(*v));
        }
        Datum::UInt64(v) => {
            out.push(UINT64);
            put_varint(out, *v);
        }
        Datum::Float32(v) => {
            out.push(FLOAT32);
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        Datum::Float64(v) => {
            out.push(FLOAT64);
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        Datum::Decimal(v) => {
            out.push(DECIMAL);
            put_bytes(out, v.as_bytes());
        }
        Datum::Text(s) => {
            out.push(TEXT);
            put_bytes(out, s.as_bytes());
        }
        Datum::Bytes(b) => {
            out.push(BYTES);
            put_bytes(out, b);
        }
        Datum::Date(v) => {
            out.push(DATE);
            put_varint(out, zigzag(i64::from(*v)));
        }
        Datum::Micros(v) => {
            out.push(MICROS);
            put_varint(out, zigzag(*v));
        }
        Datum::Interval {
            months,
            days,
            micros,
        } => {
            out.push(INTERVAL);
            put_varint(out, zigzag(i64::from(*months)));
            put_varint(out, zigzag(i64::from(*days)));
            put_varint(out, zigzag(*micros));
        }
        Datum::Array(items) => {
            out.push(ARRAY);
            put_varint(out, items.len() as u64);
            for item in items {
                put(out, item);
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The number of values of the row.
    left: usize,
    /// Arrays entered.
    depth: usize,
}

impl<'a> Reader<'a> {
    fn malformed(&self) -> Malformed {
        Malformed {
            at: self.at,
            len: self.bytes.len(),
        }
    }

    /// Every byte read: anything after the last value is malformed.
    fn end(&self) -> Result<(), Malformed> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(self.malformed())
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.at.checked_add(n).ok_or_else(|| self.malformed())?;
        let taken = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| self.malformed())?;
        self.at = end;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, Malformed> {
        let b = *self.bytes.get(self.at).ok_or_else(|| self.malformed())?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            // The tenth byte holds the 64th bit alone.
            if shift == 63 && b > 1 {
                return Err(self.malformed());
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.malformed())
    }

    fn signed(&mut self) -> Result<i64, Malformed> {
        self.varint().map(unzigzag)
    }

    fn int32(&mut self) -> Result<i32, Malformed> {
        let v = self.signed()?;
        i32::try_from(v).map_err(|_| self.malformed())
    }

    fn sized(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| self.malformed())?;
        self.take(n)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let at = self.at;
        self.take(N)?.try_into().map_err(|_| Malformed {
            at,
            len: self.bytes.len(),
        })
    }

    /// A text value's length and bytes, checked to be UTF-8.
    fn text(&mut self) -> Result<&'a str, Malformed> {
        let at = self.at;
        std::str::from_utf8(self.sized()?).map_err(|_| Malformed {
            at,
            len: self.bytes.len(),
        })
    }

    /// Enters an array: its number of items.
    fn array(&mut self) -> Result<usize, Malformed> {
        let count = self.varint()?;
        self.depth += 1;
        usize::try_from(count)
            .ok()
            // Each item takes a byte at least.
            .filter(|n| *n <= self.bytes.len() && self.depth <= MAX_DEPTH)
            .ok_or_else(|| self.malformed())
    }

    fn datum(&mut self) -> Result<Datum, Malformed> {
        let at = self.at;
        Ok(match self.byte()? {
            NULL => Datum::Null,
            UNCHANGED => Datum::Unchanged,
            FALSE => Datum::Bool(false),
            TRUE => Datum::Bool(true),
            INT => Datum::Int(self.signed()?),
            UINT64 => Datum::UInt64(self.varint()?),
            FLOAT32 => Datum::Float32(f32::from_bits(u32::from_le_bytes(self.fixed()?))),
            FLOAT64 => Datum::Float64(f64::from_bits(u64::from_le_bytes(self.fixed()?))),
            DECIMAL => Datum::Decimal(Decimal::from_twos_complement(self.sized()?)),
            TEXT => Datum::Text(self.text()?.to_owned()),
            BYTES => Datum::Bytes(self.sized()?.to_vec()),
            DATE => Datum::Date(self.int32()?),
            MICROS => Datum::Micros(self.signed()?),
            INTERVAL => Datum::Interval {
                months: self.int32()?,
                days: self.int32()?,
                micros: self.signed()?,
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
            _ => {
                return Err(Malformed {
                    at,
                    len: self.bytes.len(),
                });
            }
        })
    }

    /// Steps over one value without building it.
    fn skip(&mut self) -> Result<(), Malformed> {
        match self.byte()? {
            NULL | UNCHANGED | FALSE | TRUE => {}
            INT | UINT64 | DATE | MICROS => {
                self.varint()?;
            }
            FLOAT32 => {
                self.take(4)?;
            }
            FLOAT64 => {
                self.take(8)?;
            }
            DECIMAL | TEXT | BYTES => {
                self.sized()?;
            }
            INTERVAL => {
                self.varint()?;
                self.varint()?;
                self.varint()?;
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
    fn varints_are_as_long_as_they_are_written() {
        for v in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut r = Reader {
                bytes: &out,
                at: 0,
                left: 1,
                depth: 0,
            };
            assert_eq!(r.varint().unwrap(), v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
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
        let huge = PackedRow(vec![0, 0xff, 0xff, 0x03].into_boxed_slice());
        assert!(huge.unpack().is_err());
        // Bytes after the last value.
        let mut long = packed.0.to_vec();
        long.push(NULL);
        let long = PackedRow(long.into_boxed_slice());
        assert!(long.unpack().is_err());
        assert!(long.starts(&mut Vec::new()).is_err());
        // A varint past 64 bits.
        let mut wide = vec![0, 1, INT];
        wide.extend([0xff; 9]);
        wide.push(0x02);
        assert!(PackedRow(wide.into_boxed_slice()).unpack().is_err());
        // Arrays nested without end: an error, not a stack overflow.
        let mut deep = vec![0, 1];
        for _ in 0..100_000 {
            deep.extend([ARRAY, 1]);
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
