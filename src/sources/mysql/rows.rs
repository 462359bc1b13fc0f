//! Row images of binlog rows events (v1 and v2, the body after the column
//! bitmaps) decoded into [`Datum`]s, column by column as the table map
//! describes them ([`Wire`]).
//!
//! Decoded here rather than by `mysql_common`'s row reader: that one does not
//! sign-extend MEDIUMINT, mis-decodes negative TIME(1)/TIME(2) values with a
//! fraction, gives TIMESTAMP as epoch text and ENUM/SET as numbers, and
//! panics on some malformed input. Every read here is bounds-checked; a short
//! or malformed image is an error, never a panic.

use super::columns::{Charset, ColumnDef, Wire};
use crate::config::model::ZeroDates;
use crate::event::datum::{Datum, Row};
use crate::event::decimal::Decimal;
use crate::event::time::days_from_civil;
use crate::event::types::ColumnType;

/// A value that could not be decoded: the column and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub column: String,
    pub message: String,
}

/// A cursor over an event body.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        match (self.data.get(..n), self.data.get(n..)) {
            (Some(head), Some(rest)) => {
                self.data = rest;
                Ok(head)
            }
            _ => Err(format!(
                "the row image ends early ({n} bytes needed, {} left)",
                self.data.len()
            )),
        }
    }

    fn uint_le(&mut self, n: usize) -> Result<u64, String> {
        Ok(self
            .take(n)?
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn uint_be(&mut self, n: usize) -> Result<u64, String> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// The rest of the data, which `mysql_common` may parse further.
    pub fn rest(&self) -> &'a [u8] {
        self.data
    }

    pub fn skip_to(&mut self, rest: &'a [u8]) {
        self.data = rest;
    }
}

/// What decoding needs besides the bytes.
pub struct Decoding<'a> {
    pub columns: &'a [ColumnDef],
    pub zero_dates: ZeroDates,
    /// Zero dates turned into NULL so far.
    pub zero_count: &'a mut u64,
}

/// One row image: the null bitmap over the columns present in `present`,
/// then their values. Columns not present are NULL (never the case with
/// `binlog_row_image = FULL`).
pub fn read_image(
    reader: &mut Reader<'_>,
    present: &[bool],
    dec: &mut Decoding<'_>,
) -> Result<Vec<Datum>, ValueError> {
    let general = |message: String| ValueError {
        column: String::new(),
        message,
    };
    if present.len() != dec.columns.len() {
        return Err(general(format!(
            "the rows event has {} columns, its table map {}",
            present.len(),
            dec.columns.len()
        )));
    }
    let count = present.iter().filter(|p| **p).count();
    let nulls = reader.take(count.div_ceil(8)).map_err(general)?;
    let mut out = Vec::with_capacity(dec.columns.len());
    let mut image_index = 0usize;
    for (i, column) in dec.columns.iter().enumerate() {
        if !present.get(i).copied().unwrap_or(false) {
            out.push(Datum::Null);
            continue;
        }
        let is_null = nulls
            .get(image_index / 8)
            .is_some_and(|b| b & (1 << (image_index % 8)) != 0);
        image_index += 1;
        if is_null {
            out.push(Datum::Null);
            continue;
        }
        let value = decode_value(reader, column).map_err(|message| ValueError {
            column: column.name.clone(),
            message,
        })?;
        let value = match value {
            Decoded::Value(d) => d,
            Decoded::Zero => {
                zero_date(dec.zero_dates, dec.zero_count).map_err(|message| ValueError {
                    column: column.name.clone(),
                    message,
                })?
            }
        };
        out.push(value);
    }
    Ok(out)
}

/// What a zero date becomes under `zero_dates`: NULL (counted), or the
/// error that stops capture.
pub fn zero_date(mode: ZeroDates, count: &mut u64) -> Result<Datum, String> {
    match mode {
        ZeroDates::Null => {
            *count += 1;
            Ok(Datum::Null)
        }
        ZeroDates::Error => {
            Err("a zero date, and the pipeline says `zero_dates: error`".to_string())
        }
    }
}

/// A decoded value, or a zero date (`0000-00-00`, a zero TIMESTAMP).
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Value(Datum),
    Zero,
}

fn decode_value(r: &mut Reader<'_>, column: &ColumnDef) -> Result<Decoded, String> {
    let datum = match &column.wire {
        Wire::Int { bytes, unsigned } => {
            let n = usize::from(*bytes);
            let raw = r.uint_le(n)?;
            if *unsigned {
                if column.ty == Ok(ColumnType::UInt64) {
                    Datum::UInt64(raw)
                } else {
                    Datum::Int(i64::try_from(raw).map_err(|_| "integer out of range")?)
                }
            } else {
                // Sign-extend from n bytes.
                let shift = 64 - 8 * n as u32;
                Datum::Int(((raw << shift) as i64) >> shift)
            }
        }
        Wire::Float => {
            let b: [u8; 4] = r.take(4)?.try_into().map_err(|_| "float")?;
            Datum::Float32(f32::from_le_bytes(b))
        }
        Wire::Double => {
            let b: [u8; 8] = r.take(8)?.try_into().map_err(|_| "double")?;
            Datum::Float64(f64::from_le_bytes(b))
        }
        Wire::Decimal { precision, scale } => {
            let text = decimal_text(r, *precision, *scale)?;
            Datum::Decimal(
                Decimal::parse(&text, u16::from(*precision), u16::from(*scale))
                    .map_err(|e| e.to_string())?,
            )
        }
        Wire::Date => {
            let v = r.uint_le(3)?;
            let (day, month, year) = (v & 31, (v >> 5) & 15, v >> 9);
            if day == 0 || month == 0 || year == 0 {
                return Ok(Decoded::Zero);
            }
            Datum::Date(
                i32::try_from(days_from_civil(year as i64, month as u32, day as u32))
                    .map_err(|_| "date out of range")?,
            )
        }
        Wire::Time { fsp } => Datum::Micros(time2(r, *fsp)?),
        Wire::DateTime { fsp } => {
            let int = r.uint_be(5)? as i64 - 0x80_0000_0000;
            let frac = fraction(r, *fsp)?;
            let ymd = int >> 17;
            let ym = ymd >> 5;
            let hms = int & 0x1ffff;
            let (year, month, day) = (ym / 13, ym % 13, ymd & 31);
            if year == 0 || month == 0 || day == 0 {
                return Ok(Decoded::Zero);
            }
            let (hour, minute, second) = (hms >> 12, (hms >> 6) & 63, hms & 63);
            let days = days_from_civil(year, month as u32, day as u32);
            Datum::Micros((days * 86_400 + hour * 3600 + minute * 60 + second) * 1_000_000 + frac)
        }
        Wire::Timestamp { fsp } => {
            let seconds = r.uint_be(4)? as i64;
            let frac = fraction(r, *fsp)?;
            if seconds == 0 && frac == 0 {
                return Ok(Decoded::Zero);
            }
            Datum::Micros(seconds * 1_000_000 + frac)
        }
        Wire::Year => {
            let v = r.uint_le(1)?;
            Datum::Int(if v == 0 { 0 } else { 1900 + v as i64 })
        }
        Wire::Bit { bits } => {
            let len = usize::from(bits.div_ceil(8));
            let bytes = r.take(len)?;
            if column.ty == Ok(ColumnType::Boolean) {
                Datum::Bool(bytes.iter().any(|b| *b != 0))
            } else {
                Datum::Bytes(bytes.to_vec())
            }
        }
        Wire::Enum { size, labels } => {
            let index = r.uint_le(usize::from(*size))?;
            if index == 0 {
                // The "error value" MySQL stores for an invalid label.
                Datum::Text(String::new())
            } else {
                let label = labels
                    .get(index as usize - 1)
                    .ok_or_else(|| format!("ENUM index {index} of {} labels", labels.len()))?;
                Datum::Text(label.clone())
            }
        }
        Wire::Set { size, labels } => {
            let bits = r.uint_le(usize::from(*size))?;
            let mut chosen = Vec::new();
            for (i, label) in labels.iter().enumerate() {
                if i < 64 && bits & (1 << i) != 0 {
                    chosen.push(label.as_str());
                }
            }
            let known = if labels.len() >= 64 {
                u64::MAX
            } else {
                (1u64 << labels.len()) - 1
            };
            if bits & !known != 0 {
                return Err(format!(
                    "SET bits {bits:#x} beyond its {} labels",
                    labels.len()
                ));
            }
            Datum::Text(chosen.join(","))
        }
        Wire::String {
            max,
            fixed,
            charset,
        } => {
            let prefix = if *max < 256 { 1 } else { 2 };
            let len = r.uint_le(prefix)? as usize;
            let bytes = r.take(len)?;
            if *charset == Charset::Binary {
                let mut v = bytes.to_vec();
                // BINARY(n) is stored without its trailing zero bytes.
                if *fixed && v.len() < *max as usize {
                    v.resize(*max as usize, 0);
                }
                Datum::Bytes(v)
            } else {
                Datum::Text(text(bytes, *charset)?)
            }
        }
        Wire::Blob { prefix, charset } => {
            let len = r.uint_le(usize::from(*prefix))? as usize;
            let bytes = r.take(len)?;
            if *charset == Charset::Binary {
                Datum::Bytes(bytes.to_vec())
            } else {
                Datum::Text(text(bytes, *charset)?)
            }
        }
        Wire::Geometry { prefix } => {
            let len = r.uint_le(usize::from(*prefix))? as usize;
            Datum::Bytes(r.take(len)?.to_vec())
        }
        Wire::Json { prefix } => {
            let len = r.uint_le(usize::from(*prefix))? as usize;
            let bytes = r.take(len)?;
            Datum::Text(json_text(bytes)?)
        }
    };
    Ok(Decoded::Value(datum))
}

/// The fractional seconds of DATETIME2/TIME2/TIMESTAMP2, in microseconds.
fn fraction(r: &mut Reader<'_>, fsp: u8) -> Result<i64, String> {
    Ok(match fsp {
        0 => 0,
        1 | 2 => r.uint_be(1)? as i64 * 10_000,
        3 | 4 => r.uint_be(2)? as i64 * 100,
        5 | 6 => r.uint_be(3)? as i64,
        _ => return Err(format!("fractional-second precision {fsp}")),
    })
}

/// TIME2: a signed duration in microseconds (beyond 24 h, negative too).
fn time2(r: &mut Reader<'_>, fsp: u8) -> Result<i64, String> {
    const INT_OFS: i64 = 0x80_0000;
    // The packed form is (whole part << 24) + microseconds, signed.
    let packed: i64 = match fsp {
        0 => (r.uint_be(3)? as i64 - INT_OFS) << 24,
        1 | 2 => {
            let mut int = r.uint_be(3)? as i64 - INT_OFS;
            let mut frac = r.uint_be(1)? as i64;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x100;
            }
            (int << 24) + frac * 10_000
        }
        3 | 4 => {
            let mut int = r.uint_be(3)? as i64 - INT_OFS;
            let mut frac = r.uint_be(2)? as i64;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x10000;
            }
            (int << 24) + frac * 100
        }
        5 | 6 => r.uint_be(6)? as i64 - 0x8000_0000_0000,
        _ => return Err(format!("fractional-second precision {fsp}")),
    };
    let negative = packed < 0;
    let abs = packed.abs();
    let whole = abs >> 24;
    let micros = abs & 0xff_ffff;
    let (hour, minute, second) = ((whole >> 12) & 0x3ff, (whole >> 6) & 63, whole & 63);
    let total = (hour * 3600 + minute * 60 + second) * 1_000_000 + micros;
    Ok(if negative { -total } else { total })
}

const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

fn dig2bytes(digits: u8) -> usize {
    DIG2BYTES.get(usize::from(digits)).copied().unwrap_or(4)
}

/// A binary NEWDECIMAL as exact text (`-1234.5600`).
pub fn decimal_text(r: &mut Reader<'_>, precision: u8, scale: u8) -> Result<String, String> {
    if scale > precision || precision > 65 {
        return Err(format!("DECIMAL({precision},{scale})"));
    }
    let intg = precision - scale;
    let (intg0, intg0x) = (intg / 9, intg % 9);
    let (frac0, frac0x) = (scale / 9, scale % 9);
    let size =
        usize::from(intg0) * 4 + dig2bytes(intg0x) + usize::from(frac0) * 4 + dig2bytes(frac0x);
    let mut bytes = r.take(size)?.to_vec();
    let Some(first) = bytes.first_mut() else {
        return Ok("0".into());
    };
    let negative = *first & 0x80 == 0;
    *first ^= 0x80;
    if negative {
        for b in &mut bytes {
            *b = !*b;
        }
    }
    let mut d = Reader::new(&bytes);
    let mut int_digits = String::new();
    let group = |d: &mut Reader<'_>, n: usize, digits: usize| -> Result<String, String> {
        let v = d.uint_be(n)?;
        if v >= 10u64.pow(digits as u32) {
            return Err(format!("a DECIMAL digit group of {v} ({digits} digits)"));
        }
        Ok(format!("{v:0digits$}"))
    };
    if intg0x > 0 {
        int_digits.push_str(&group(&mut d, dig2bytes(intg0x), usize::from(intg0x))?);
    }
    for _ in 0..intg0 {
        int_digits.push_str(&group(&mut d, 4, 9)?);
    }
    let mut frac_digits = String::new();
    for _ in 0..frac0 {
        frac_digits.push_str(&group(&mut d, 4, 9)?);
    }
    if frac0x > 0 {
        frac_digits.push_str(&group(&mut d, dig2bytes(frac0x), usize::from(frac0x))?);
    }
    let int_digits = int_digits.trim_start_matches('0');
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    out.push_str(if int_digits.is_empty() {
        "0"
    } else {
        int_digits
    });
    if !frac_digits.is_empty() {
        out.push('.');
        out.push_str(&frac_digits);
    }
    Ok(out)
}

/// Text of a column in `charset` as UTF-8.
pub fn text(bytes: &[u8], charset: Charset) -> Result<String, String> {
    match charset {
        Charset::Utf8 | Charset::Binary => String::from_utf8(bytes.to_vec())
            .map_err(|e| format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to())),
        Charset::Ascii => {
            if let Some(at) = bytes.iter().position(|b| !b.is_ascii()) {
                return Err(format!("byte {at} is not ASCII"));
            }
            Ok(bytes.iter().map(|b| char::from(*b)).collect())
        }
        Charset::Latin1 => Ok(bytes.iter().map(|b| cp1252(*b)).collect()),
    }
}

/// MySQL's latin1 is Windows-1252; its five unassigned bytes map to the
/// C1 controls, as MySQL converts them.
fn cp1252(b: u8) -> char {
    const HIGH: [u16; 32] = [
        0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
        0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9f => HIGH
            .get(usize::from(b - 0x80))
            .and_then(|c| char::from_u32(u32::from(*c)))
            .unwrap_or(char::from(b)),
        _ => char::from(b),
    }
}

/// MySQL's binary JSON as JSON text.
fn json_text(bytes: &[u8]) -> Result<String, String> {
    use mysql_common::binlog::value::BinlogValue;
    use mysql_common::constants::ColumnType as My;
    use mysql_common::io::ParseBuf;
    use mysql_common::proto::MyDeserialize;
    if bytes.is_empty() {
        // An empty JSON value is JSON null (MySQL writes it for NULL-ish defaults).
        return Ok("null".into());
    }
    // mysql_common parses the length prefix itself: give it a 4-byte one.
    let mut framed = (bytes.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(bytes);
    let mut buf = ParseBuf(&framed);
    let value = BinlogValue::deserialize((My::MYSQL_TYPE_JSON, &[4u8][..], false, false), &mut buf)
        .map_err(|e| format!("unreadable binary JSON: {e}"))?;
    let json = match value {
        BinlogValue::Jsonb(v) => {
            serde_json::Value::try_from(v).map_err(|e| format!("unreadable binary JSON: {e}"))?
        }
        _ => return Err("unreadable binary JSON".into()),
    };
    Ok(json.to_string())
}

/// Builds a [`Row`] of a captured table's schema from a full image:
/// `targets` maps table columns to schema columns (excluded columns are
/// `None`).
pub fn to_row(values: Vec<Datum>, targets: &[Option<usize>], width: usize) -> Row {
    let mut row = vec![Datum::Null; width];
    for (value, target) in values.into_iter().zip(targets) {
        if let Some(slot) = target.and_then(|t| row.get_mut(t)) {
            *slot = value;
        }
    }
    Row(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(wire: Wire, ty: ColumnType) -> ColumnDef {
        ColumnDef {
            name: "c".into(),
            source_type: wire.type_text(),
            wire,
            ty: Ok(ty),
            nullable: true,
        }
    }

    fn one(wire: Wire, ty: ColumnType, bytes: &[u8]) -> Result<Decoded, String> {
        let c = col(wire, ty);
        let mut r = Reader::new(bytes);
        let v = decode_value(&mut r, &c)?;
        assert!(r.is_empty(), "all of {bytes:02x?} consumed");
        Ok(v)
    }

    fn value(wire: Wire, ty: ColumnType, bytes: &[u8]) -> Datum {
        match one(wire, ty, bytes).unwrap() {
            Decoded::Value(d) => d,
            Decoded::Zero => panic!("zero"),
        }
    }

    #[test]
    fn integers_of_every_width_and_sign() {
        let int = |bytes, unsigned| Wire::Int { bytes, unsigned };
        let s = |bits| ColumnType::Int { bits, signed: true };
        let u = |bits| ColumnType::Int {
            bits,
            signed: false,
        };
        assert_eq!(value(int(1, false), s(8), &[0xff]), Datum::Int(-1));
        assert_eq!(value(int(1, true), u(8), &[0xff]), Datum::Int(255));
        assert_eq!(
            value(int(2, false), s(16), &[0x00, 0x80]),
            Datum::Int(-32768)
        );
        // MEDIUMINT -5 and 8388607 (sign extension from 3 bytes).
        assert_eq!(
            value(int(3, false), s(32), &[0xfb, 0xff, 0xff]),
            Datum::Int(-5)
        );
        assert_eq!(
            value(int(3, false), s(32), &[0xff, 0xff, 0x7f]),
            Datum::Int(8_388_607)
        );
        assert_eq!(
            value(int(3, true), u(32), &[0xff, 0xff, 0xff]),
            Datum::Int(16_777_215)
        );
        assert_eq!(
            value(int(4, true), u(32), &[0xff; 4]),
            Datum::Int(4_294_967_295)
        );
        assert_eq!(
            value(int(8, true), ColumnType::UInt64, &[0xff; 8]),
            Datum::UInt64(u64::MAX)
        );
        assert_eq!(value(int(8, false), s(64), &[0xff; 8]), Datum::Int(-1));
    }

    #[test]
    fn decimals_decode_exactly() {
        // DECIMAL(10,4) 1234.5678 (MySQL's own documentation example:
        // 1234567890.1234 as DECIMAL(14,4) is 81 0D FB 38 D2 04 D2).
        let d = |p, s, bytes: &[u8]| decimal_text(&mut Reader::new(bytes), p, s).unwrap();
        assert_eq!(
            d(14, 4, &[0x81, 0x0d, 0xfb, 0x38, 0xd2, 0x04, 0xd2]),
            "1234567890.1234"
        );
        // The same negative: every byte inverted.
        assert_eq!(
            d(14, 4, &[0x7e, 0xf2, 0x04, 0xc7, 0x2d, 0xfb, 0x2d]),
            "-1234567890.1234"
        );
        // DECIMAL(5,2) 0.00 and -0.05.
        assert_eq!(d(5, 2, &[0x80, 0x00, 0x00]), "0.00");
        assert_eq!(d(5, 2, &[0x7f, 0xff, 0xfa]), "-0.05");
        // DECIMAL(65,30) of all nines: 35 integer digits, 30 fractional.
        let mut bytes = Vec::new();
        // 35 = 3*9 + 8 → 4 bytes for 8 digits, then 3 groups of 9.
        bytes.extend(99_999_999u32.to_be_bytes());
        for _ in 0..6 {
            bytes.extend(999_999_999u32.to_be_bytes());
        }
        // 30 = 3*9 + 3 → 3 groups (above), then 2 bytes for 3 digits.
        bytes.extend(999u16.to_be_bytes());
        if let Some(f) = bytes.first_mut() {
            *f |= 0x80;
        }
        assert_eq!(
            d(65, 30, &bytes),
            format!("{}.{}", "9".repeat(35), "9".repeat(30))
        );
        // A digit group over 999999999 is corrupt data, not a number.
        assert!(decimal_text(&mut Reader::new(&[0xff, 0xff, 0xff, 0xff]), 9, 0).is_err());
        assert!(decimal_text(&mut Reader::new(&[0x80]), 5, 2).is_err());
    }

    #[test]
    fn temporal_values() {
        // DATE 2024-02-29: 29 | 2 << 5 | 2024 << 9.
        let v: u32 = 29 | (2 << 5) | (2024 << 9);
        let b = v.to_le_bytes();
        let days = days_from_civil(2024, 2, 29) as i32;
        assert_eq!(
            value(Wire::Date, ColumnType::Date, &b[..3]),
            Datum::Date(days)
        );
        assert_eq!(
            one(Wire::Date, ColumnType::Date, &[0, 0, 0]).unwrap(),
            Decoded::Zero
        );
        // DATETIME(6) 2024-02-29 13:14:15.123456.
        let ymd = ((2024 * 13 + 2) << 5) | 29;
        let hms = (13 << 12) | (14 << 6) | 15;
        let int: u64 = ((ymd << 17) | hms) + 0x80_0000_0000;
        let mut bytes = int.to_be_bytes()[3..].to_vec();
        bytes.extend(&123_456u32.to_be_bytes()[1..]);
        let expect = ((days as i64) * 86_400 + 13 * 3600 + 14 * 60 + 15) * 1_000_000 + 123_456;
        assert_eq!(
            value(Wire::DateTime { fsp: 6 }, ColumnType::Timestamp, &bytes),
            Datum::Micros(expect)
        );
        // TIMESTAMP(3) 1704164645.123 (UTC seconds big-endian + 2 bytes of 1/10000 s).
        let mut ts = 1_704_164_645u32.to_be_bytes().to_vec();
        ts.extend(1230u16.to_be_bytes());
        assert_eq!(
            value(Wire::Timestamp { fsp: 3 }, ColumnType::TimestampTz, &ts),
            Datum::Micros(1_704_164_645_123_000)
        );
        assert_eq!(
            one(Wire::Timestamp { fsp: 0 }, ColumnType::TimestampTz, &[0; 4]).unwrap(),
            Decoded::Zero
        );
    }

    /// TIME2 bytes (precision 0 or 6) built the way the server packs them.
    fn time2_bytes(negative: bool, h: i64, m: i64, s: i64, micros: i64, fsp: u8) -> Vec<u8> {
        let mut packed = (((h << 12) | (m << 6) | s) << 24) + micros;
        if negative {
            packed = -packed;
        }
        match fsp {
            0 => ((packed >> 24) + 0x80_0000).to_be_bytes()[5..].to_vec(),
            _ => (packed + 0x8000_0000_0000).to_be_bytes()[2..].to_vec(),
        }
    }

    #[test]
    fn times_beyond_a_day_and_negative() {
        let t = |b: &[u8], fsp| value(Wire::Time { fsp }, ColumnType::DurationMicros, b);
        let us = |neg: bool, h: i64, m: i64, s: i64, f: i64| {
            let v = (h * 3600 + m * 60 + s) * 1_000_000 + f;
            Datum::Micros(if neg { -v } else { v })
        };
        assert_eq!(
            t(&time2_bytes(false, 838, 59, 59, 0, 0), 0),
            us(false, 838, 59, 59, 0)
        );
        assert_eq!(
            t(&time2_bytes(true, 838, 59, 59, 0, 0), 0),
            us(true, 838, 59, 59, 0)
        );
        assert_eq!(
            t(&time2_bytes(true, 1, 2, 3, 456_789, 6), 6),
            us(true, 1, 2, 3, 456_789)
        );
        assert_eq!(
            t(&time2_bytes(false, 25, 0, 0, 500_000, 6), 6),
            us(false, 25, 0, 0, 500_000)
        );
        // Negative TIME(1) with a fraction: -00:00:01.5 is stored as whole
        // part -2 (0x7ffffe) and fraction 0x100 - 50 = 0xce.
        assert_eq!(t(&[0x7f, 0xff, 0xfe, 0xce], 1), us(true, 0, 0, 1, 500_000));
        // And -00:00:01.25 as TIME(4): whole -2, fraction 0x10000 - 2500.
        let frac = (0x10000 - 2500) as u16;
        let mut b = vec![0x7f, 0xff, 0xfe];
        b.extend(frac.to_be_bytes());
        assert_eq!(t(&b, 4), us(true, 0, 0, 1, 250_000));
    }

    #[test]
    fn enums_sets_bits_years_and_text() {
        let labels = vec!["small".to_string(), "large".into(), "x,y".into()];
        let e = Wire::Enum {
            size: 1,
            labels: labels.clone(),
        };
        assert_eq!(
            value(e.clone(), ColumnType::Text, &[2]),
            Datum::Text("large".into())
        );
        assert_eq!(
            value(e.clone(), ColumnType::Text, &[0]),
            Datum::Text(String::new())
        );
        assert!(one(e, ColumnType::Text, &[4]).is_err());
        let s = Wire::Set {
            size: 1,
            labels: vec!["a".into(), "b".into(), "c".into()],
        };
        assert_eq!(
            value(s.clone(), ColumnType::Text, &[0b101]),
            Datum::Text("a,c".into())
        );
        assert_eq!(
            value(s.clone(), ColumnType::Text, &[0]),
            Datum::Text(String::new())
        );
        assert!(one(s, ColumnType::Text, &[0b1000]).is_err());
        assert_eq!(
            value(Wire::Bit { bits: 1 }, ColumnType::Boolean, &[1]),
            Datum::Bool(true)
        );
        assert_eq!(
            value(Wire::Bit { bits: 12 }, ColumnType::Bytes, &[0x0a, 0xbc]),
            Datum::Bytes(vec![0x0a, 0xbc])
        );
        let year = ColumnType::Int {
            bits: 16,
            signed: true,
        };
        assert_eq!(value(Wire::Year, year.clone(), &[124]), Datum::Int(2024));
        assert_eq!(value(Wire::Year, year, &[0]), Datum::Int(0));
        let latin1 = Wire::String {
            max: 10,
            fixed: false,
            charset: Charset::Latin1,
        };
        assert_eq!(
            value(latin1, ColumnType::Text, &[4, b'c', 0xe9, 0x80, 0x9f]),
            Datum::Text("c\u{e9}\u{20ac}\u{178}".into())
        );
        let utf8 = Wire::String {
            max: 1020,
            fixed: false,
            charset: Charset::Utf8,
        };
        let snow = "☃ é".as_bytes();
        let mut b = (snow.len() as u16).to_le_bytes().to_vec();
        b.extend(snow);
        assert_eq!(
            value(utf8.clone(), ColumnType::Text, &b),
            Datum::Text("☃ é".into())
        );
        assert!(one(utf8, ColumnType::Text, &[1, 0, 0xff]).is_err());
        let binary = Wire::String {
            max: 4,
            fixed: true,
            charset: Charset::Binary,
        };
        assert_eq!(
            value(binary, ColumnType::Bytes, &[2, 1, 2]),
            Datum::Bytes(vec![1, 2, 0, 0])
        );
        let blob = Wire::Blob {
            prefix: 2,
            charset: Charset::Utf8,
        };
        assert_eq!(
            value(blob.clone(), ColumnType::Text, &[2, 0, b'{', b'}']),
            Datum::Text("{}".into())
        );
        // A length past the end is an error, not a panic.
        assert!(one(blob, ColumnType::Text, &[9, 0, b'x']).is_err());
    }

    #[test]
    fn mysql_binary_json_becomes_json_text() {
        // Binary JSON: a type byte, then the value (literal true; a string
        // with a 1-byte variable length; an array of two small integers).
        assert_eq!(json_text(&[0x04, 0x01]).unwrap(), "true");
        assert_eq!(json_text(&[0x0c, 0x02, b'h', b'i']).unwrap(), "\"hi\"");
        // Small array: count u16, size u16, then two inlined int16 entries.
        let array = [
            0x02, 0x02, 0x00, 0x0a, 0x00, 0x05, 0x01, 0x00, 0x05, 0x02, 0x00,
        ];
        assert_eq!(json_text(&array).unwrap(), "[1,2]");
        assert_eq!(json_text(&[]).unwrap(), "null");
        assert!(json_text(&[0x0c, 0x09, b'x']).is_err());
    }

    #[test]
    fn images_apply_the_null_bitmap_and_zero_dates() {
        let columns = vec![
            col(
                Wire::Int {
                    bytes: 4,
                    unsigned: false,
                },
                ColumnType::Int {
                    bits: 32,
                    signed: true,
                },
            ),
            col(Wire::Date, ColumnType::Date),
            col(Wire::Date, ColumnType::Date),
        ];
        // Column 1 NULL; column 2 a zero date.
        let bytes = [0b010, 7, 0, 0, 0, 0, 0, 0];
        let mut zeros = 0;
        let mut dec = Decoding {
            columns: &columns,
            zero_dates: ZeroDates::Null,
            zero_count: &mut zeros,
        };
        let row = read_image(&mut Reader::new(&bytes), &[true; 3], &mut dec).unwrap();
        assert_eq!(row, vec![Datum::Int(7), Datum::Null, Datum::Null]);
        assert_eq!(zeros, 1);
        let mut dec = Decoding {
            columns: &columns,
            zero_dates: ZeroDates::Error,
            zero_count: &mut zeros,
        };
        let err = read_image(&mut Reader::new(&bytes), &[true; 3], &mut dec).unwrap_err();
        assert_eq!(err.column, "c");
        assert!(err.message.contains("zero date"));
        // A truncated image.
        assert!(read_image(&mut Reader::new(&bytes[..3]), &[true; 3], &mut dec).is_err());
    }
}
