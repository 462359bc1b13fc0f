//! Postgres values in their text form → [`Datum`]s.
//!
//! pgoutput (protocol 1) sends every value as the type's text output, and the
//! snapshot reads `COPY ... TO STDOUT` text, so one parser serves both. Every
//! connection sets the session so that the text is unambiguous
//! ([`super::wire::SESSION_SETTINGS`]): `DateStyle=ISO`, `TimeZone=UTC`,
//! `IntervalStyle=iso_8601`, `bytea_output=hex`, `lc_monetary=C`.
//!
//! Nothing is approximated: a value that does not fit its column's type
//! (`NaN` in a `numeric(12,2)`, say) is an error that the caller reports with
//! table, column and position.

use crate::event::datum::Datum;
use crate::event::decimal::Decimal;
use crate::event::time::days_from_civil;
use crate::event::types::ColumnType;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Parses one non-NULL value.
pub fn parse_value(text: &str, ty: &ColumnType) -> Result<Datum, String> {
    let bad = |what: &str| format!("`{}` is not a valid {what}", clip(text));
    Ok(match ty {
        ColumnType::Boolean => match text {
            "t" | "true" => Datum::Bool(true),
            "f" | "false" => Datum::Bool(false),
            _ => return Err(bad("boolean")),
        },
        ColumnType::Int { .. } => Datum::Int(text.parse().map_err(|_| bad("integer"))?),
        ColumnType::UInt64 => Datum::UInt64(text.parse().map_err(|_| bad("unsigned integer"))?),
        ColumnType::Float32 => Datum::Float32(parse_float(text).ok_or_else(|| bad("real"))? as f32),
        ColumnType::Float64 => Datum::Float64(parse_float(text).ok_or_else(|| bad("double"))?),
        ColumnType::Decimal { precision, scale } => {
            let cleaned;
            // money (lc_monetary=C): `$1,234.56`, `-$1,234.56`.
            let digits = if text.contains('$') || text.contains(',') {
                cleaned = text
                    .chars()
                    .filter(|c| c.is_ascii_digit() || *c == '-' || *c == '.')
                    .collect::<String>();
                cleaned.as_str()
            } else {
                text
            };
            if matches!(digits, "NaN" | "Infinity" | "-Infinity") {
                return Err(format!(
                    "`{text}` cannot be held by numeric({precision},{scale}); only unconstrained `numeric` columns carry NaN and Infinity"
                ));
            }
            Datum::Decimal(
                Decimal::parse(digits, *precision, *scale)
                    .map_err(|e| format!("`{}`: {e}", clip(text)))?,
            )
        }
        ColumnType::NumericText => {
            if !is_numeric_text(text) {
                return Err(bad("numeric"));
            }
            Datum::Text(text.to_string())
        }
        ColumnType::Text | ColumnType::Json | ColumnType::Uuid => Datum::Text(text.to_string()),
        ColumnType::Bytes => Datum::Bytes(parse_bytea(text).ok_or_else(|| bad("bytea"))?),
        ColumnType::Date => Datum::Date(parse_date(text).ok_or_else(|| bad("date"))?),
        ColumnType::Time => Datum::Micros(parse_time(text).ok_or_else(|| bad("time"))?),
        ColumnType::DurationMicros => {
            Datum::Micros(parse_time(text).ok_or_else(|| bad("duration"))?)
        }
        ColumnType::Timestamp => {
            Datum::Micros(parse_timestamp(text, false).ok_or_else(|| bad("timestamp"))?)
        }
        ColumnType::TimestampTz => {
            Datum::Micros(parse_timestamp(text, true).ok_or_else(|| bad("timestamptz"))?)
        }
        ColumnType::Interval => {
            let (months, days, micros) = parse_interval(text).ok_or_else(|| bad("interval"))?;
            Datum::Interval {
                months,
                days,
                micros,
            }
        }
        ColumnType::Array { element, dims } => {
            let mut parser = ArrayParser {
                text: text.as_bytes(),
                at: 0,
            };
            // `[1:2]={...}`: arrays with explicit bounds; the bounds go.
            if text.starts_with('[') {
                let eq = text.find('=').ok_or_else(|| bad("array"))?;
                parser.at = eq + 1;
            }
            let value = parser
                .array(element, *dims)
                .map_err(|e| format!("array `{}`: {e}", clip(text)))?;
            if parser.at != parser.text.len() {
                return Err(bad("array"));
            }
            value
        }
    })
}

fn clip(text: &str) -> String {
    if text.len() <= 60 {
        return text.to_string();
    }
    let mut end = 60;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text.get(..end).unwrap_or_default())
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

fn is_numeric_text(text: &str) -> bool {
    if matches!(text, "NaN" | "Infinity" | "-Infinity") {
        return true;
    }
    let body = text.strip_prefix('-').unwrap_or(text);
    let mut dots = 0;
    !body.is_empty()
        && body.chars().all(|c| {
            if c == '.' {
                dots += 1;
                dots == 1
            } else {
                c.is_ascii_digit()
            }
        })
}

fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix("\\x")?;
    let bytes = hex.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| {
            let hi = char::from(*pair.first()?).to_digit(16)?;
            let lo = char::from(*pair.get(1)?).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

/// `YYYY-MM-DD[ BC]`, `infinity`, `-infinity` → days since 1970-01-01.
fn parse_date(text: &str) -> Option<i32> {
    match text {
        "infinity" => return Some(i32::MAX),
        "-infinity" => return Some(i32::MIN),
        _ => {}
    }
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (text, false),
    };
    let days = date_days(body, bc)?;
    i32::try_from(days).ok()
}

fn date_days(body: &str, bc: bool) -> Option<i64> {
    let mut parts = body.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // 1 BC is year 0 of the proleptic calendar.
    let year = if bc { 1 - year } else { year };
    Some(days_from_civil(year, month, day))
}

/// `HH:MM:SS[.ffffff]` → microseconds (hours may exceed 24 for durations).
fn parse_time(text: &str) -> Option<i64> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    let mut parts = body.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s = parts.next()?;
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let secs: i64 = secs.parse().ok()?;
    let micros = fraction_micros(frac)?;
    let v = ((h * 60 + m) * 60 + secs) * 1_000_000 + micros;
    Some(if neg { -v } else { v })
}

fn fraction_micros(frac: &str) -> Option<i64> {
    if frac.len() > 6 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if frac.is_empty() {
        return Some(0);
    }
    let v: i64 = frac.parse().ok()?;
    Some(v * 10i64.pow(6 - frac.len() as u32))
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]][ BC]` → microseconds since
/// the epoch (UTC for `timestamptz`, wall clock for `timestamp`).
fn parse_timestamp(text: &str, zoned: bool) -> Option<i64> {
    match text {
        "infinity" => return Some(i64::MAX),
        "-infinity" => return Some(i64::MIN),
        _ => {}
    }
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (text, false),
    };
    let (date, rest) = body.split_once(' ')?;
    let days = date_days(date, bc)?;
    // The zone offset starts at the first `+` or `-` after the time.
    let (time, offset) = match rest.find(['+', '-']) {
        Some(i) => (rest.get(..i)?, Some(rest.get(i..)?)),
        None => (rest, None),
    };
    let of_day = parse_time(time)?;
    let offset_secs = match (offset, zoned) {
        (Some(o), true) => parse_offset(o)?,
        (None, false) => 0,
        _ => return None,
    };
    days.checked_mul(MICROS_PER_DAY)?
        .checked_add(of_day)?
        .checked_sub(offset_secs * 1_000_000)
}

fn parse_offset(text: &str) -> Option<i64> {
    let (sign, body) = match text.split_at_checked(1)? {
        ("+", b) => (1, b),
        ("-", b) => (-1, b),
        _ => return None,
    };
    let mut secs = 0i64;
    for (i, part) in body.split(':').enumerate() {
        let v: i64 = part.parse().ok()?;
        secs += v * match i {
            0 => 3600,
            1 => 60,
            2 => 1,
            _ => return None,
        };
    }
    Some(sign * secs)
}

/// ISO 8601 interval (`P1Y2M3DT4H5M6.5S`, parts may be negative) →
/// (months, days, microseconds).
fn parse_interval(text: &str) -> Option<(i32, i32, i64)> {
    let body = text.strip_prefix('P')?;
    let (date, time) = match body.split_once('T') {
        Some((d, t)) => (d, t),
        None => (body, ""),
    };
    let mut months = 0i64;
    let mut days = 0i64;
    let mut micros = 0i64;
    for (value, unit) in units(date)? {
        let whole: i64 = value.parse().ok()?;
        match unit {
            'Y' => months += whole * 12,
            'M' => months += whole,
            'W' => days += whole * 7,
            'D' => days += whole,
            _ => return None,
        }
    }
    for (value, unit) in units(time)? {
        match unit {
            'H' => micros += value.parse::<i64>().ok()? * 3_600_000_000,
            'M' => micros += value.parse::<i64>().ok()? * 60_000_000,
            'S' => {
                let (neg, v) = match value.strip_prefix('-') {
                    Some(v) => (true, v),
                    None => (false, value),
                };
                let (s, f) = v.split_once('.').unwrap_or((v, ""));
                let total = s.parse::<i64>().ok()? * 1_000_000 + fraction_micros(f)?;
                micros += if neg { -total } else { total };
            }
            _ => return None,
        }
    }
    Some((
        i32::try_from(months).ok()?,
        i32::try_from(days).ok()?,
        micros,
    ))
}

/// `1Y-2M` → [("1", 'Y'), ("-2", 'M')].
fn units(text: &str) -> Option<Vec<(&str, char)>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c.is_ascii_alphabetic() {
            out.push((text.get(start..i)?, c));
            start = i + 1;
        }
    }
    (start == text.len()).then_some(out)
}

/// Postgres array text: `{1,2,NULL}`, `{{1,2},{3,4}}`, `{"a b","c\"d"}`.
struct ArrayParser<'a> {
    text: &'a [u8],
    at: usize,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected `{}` at byte {}", char::from(c), self.at))
        }
    }

    fn array(&mut self, element: &ColumnType, dims: u8) -> Result<Datum, String> {
        self.expect(b'{')?;
        let mut items = Vec::new();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Datum::Array(items));
        }
        loop {
            if self.peek() == Some(b'{') {
                if dims <= 1 {
                    return Err("more dimensions than the column declares".into());
                }
                items.push(self.array(element, dims - 1)?);
            } else {
                let (raw, quoted) = self.element()?;
                if !quoted && raw.eq_ignore_ascii_case("NULL") {
                    items.push(Datum::Null);
                } else {
                    items.push(parse_value(&raw, element)?);
                }
            }
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Datum::Array(items));
                }
                _ => return Err(format!("expected `,` or `}}` at byte {}", self.at)),
            }
        }
    }

    /// One element's text, unescaped, and whether it was quoted.
    fn element(&mut self) -> Result<(String, bool), String> {
        let mut out = Vec::new();
        if self.peek() == Some(b'"') {
            self.at += 1;
            loop {
                match self.peek() {
                    None => return Err("unterminated quoted element".into()),
                    Some(b'"') => {
                        self.at += 1;
                        break;
                    }
                    Some(b'\\') => {
                        self.at += 1;
                        out.push(self.peek().ok_or("dangling backslash")?);
                        self.at += 1;
                    }
                    Some(c) => {
                        out.push(c);
                        self.at += 1;
                    }
                }
            }
            return String::from_utf8(out)
                .map(|s| (s, true))
                .map_err(|e| e.to_string());
        }
        while let Some(c) = self.peek() {
            if c == b',' || c == b'}' {
                break;
            }
            out.push(c);
            self.at += 1;
        }
        String::from_utf8(out)
            .map(|s| (s.trim().to_string(), false))
            .map_err(|e| e.to_string())
    }
}

/// Undoes `COPY ... TO STDOUT` text escaping of one field; `None` is `\N`.
pub fn copy_field(raw: &[u8]) -> Result<Option<String>, String> {
    if raw == b"\\N" {
        return Ok(None);
    }
    if !raw.contains(&b'\\') {
        return String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|e| e.to_string());
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&c) = raw.get(i) {
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = raw.get(i).copied().ok_or("dangling backslash")?;
        i += 1;
        match e {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 {
                    match raw.get(i).and_then(|d| char::from(*d).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).map(Some).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str, ty: ColumnType) -> Datum {
        parse_value(text, &ty).unwrap()
    }

    #[test]
    fn scalars() {
        assert_eq!(p("t", ColumnType::Boolean), Datum::Bool(true));
        let int = ColumnType::Int {
            bits: 64,
            signed: true,
        };
        assert_eq!(p("-9223372036854775808", int.clone()), Datum::Int(i64::MIN));
        assert!(parse_value("1.5", &int).is_err());
        assert!(matches!(p("NaN", ColumnType::Float64), Datum::Float64(v) if v.is_nan()));
        assert_eq!(
            p("-Infinity", ColumnType::Float32),
            Datum::Float32(f32::NEG_INFINITY)
        );
        assert_eq!(p("NaN", ColumnType::NumericText), Datum::Text("NaN".into()));
        assert!(parse_value("1e5", &ColumnType::NumericText).is_err());
        let dec = ColumnType::Decimal {
            precision: 12,
            scale: 2,
        };
        assert_eq!(
            p("-1234.50", dec.clone()),
            Datum::Decimal(Decimal::from_i128(-123_450))
        );
        let err = parse_value("NaN", &dec).unwrap_err();
        assert!(err.contains("numeric(12,2)"), "{err}");
        let money = ColumnType::Decimal {
            precision: 19,
            scale: 2,
        };
        assert_eq!(
            p("-$1,234.56", money),
            Datum::Decimal(Decimal::from_i128(-123_456))
        );
        assert_eq!(
            p("\\x00ff10", ColumnType::Bytes),
            Datum::Bytes(vec![0, 255, 16])
        );
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(p("1970-01-02", ColumnType::Date), Datum::Date(1));
        assert_eq!(p("infinity", ColumnType::Date), Datum::Date(i32::MAX));
        assert_eq!(
            p("0001-01-01 BC", ColumnType::Date),
            Datum::Date(days_from_civil(0, 1, 1) as i32)
        );
        assert_eq!(
            p("10000-01-01", ColumnType::Date),
            Datum::Date(days_from_civil(10_000, 1, 1) as i32)
        );
        assert_eq!(
            p("24:00:00", ColumnType::Time),
            Datum::Micros(MICROS_PER_DAY)
        );
        assert_eq!(
            p("1970-01-01 00:00:01.5", ColumnType::Timestamp),
            Datum::Micros(1_500_000)
        );
        assert_eq!(
            p("1970-01-01 00:00:00+00", ColumnType::TimestampTz),
            Datum::Micros(0)
        );
        assert_eq!(
            p("1970-01-01 05:30:00+05:30", ColumnType::TimestampTz),
            Datum::Micros(0)
        );
        assert_eq!(
            p("-infinity", ColumnType::TimestampTz),
            Datum::Micros(i64::MIN)
        );
        assert_eq!(
            p("0001-01-01 00:00:00+00 BC", ColumnType::TimestampTz),
            Datum::Micros(days_from_civil(0, 1, 1) * MICROS_PER_DAY)
        );
        assert!(parse_value("1970-01-01 00:00:00", &ColumnType::TimestampTz).is_err());
        assert_eq!(
            p("P1Y2M3DT4H5M6.5S", ColumnType::Interval),
            Datum::Interval {
                months: 14,
                days: 3,
                micros: (4 * 3600 + 5 * 60 + 6) * 1_000_000 + 500_000
            }
        );
        assert_eq!(
            p("P-1Y-2DT-0.25S", ColumnType::Interval),
            Datum::Interval {
                months: -12,
                days: -2,
                micros: -250_000
            }
        );
        assert_eq!(
            p("PT0S", ColumnType::Interval),
            Datum::Interval {
                months: 0,
                days: 0,
                micros: 0
            }
        );
    }

    #[test]
    fn arrays() {
        let ints = ColumnType::Array {
            element: Box::new(ColumnType::Int {
                bits: 32,
                signed: true,
            }),
            dims: 2,
        };
        assert_eq!(
            p("{{1,NULL},{3,4}}", ints.clone()),
            Datum::Array(vec![
                Datum::Array(vec![Datum::Int(1), Datum::Null]),
                Datum::Array(vec![Datum::Int(3), Datum::Int(4)]),
            ])
        );
        assert_eq!(p("{}", ints.clone()), Datum::Array(vec![]));
        assert_eq!(
            p("[0:1]={5,6}", ints),
            Datum::Array(vec![Datum::Int(5), Datum::Int(6)])
        );
        let texts = ColumnType::Array {
            element: Box::new(ColumnType::Text),
            dims: 1,
        };
        assert_eq!(
            p(r#"{"a b","c\"d",NULL,"NULL",x}"#, texts.clone()),
            Datum::Array(vec![
                Datum::Text("a b".into()),
                Datum::Text("c\"d".into()),
                Datum::Null,
                Datum::Text("NULL".into()),
                Datum::Text("x".into()),
            ])
        );
        assert!(parse_value("{1,2", &texts).is_err());
        assert!(parse_value("{{1}}", &texts).is_err());
    }

    #[test]
    fn copy_fields_unescape() {
        assert_eq!(copy_field(b"\\N").unwrap(), None);
        assert_eq!(copy_field(b"a\\tb\\\\c\\n").unwrap().unwrap(), "a\tb\\c\n");
        assert_eq!(copy_field(b"\\101\\x42").unwrap().unwrap(), "AB");
        assert_eq!(copy_field(b"plain").unwrap().unwrap(), "plain");
    }
}
