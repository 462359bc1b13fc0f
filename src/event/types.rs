//! Column types: the source-independent types every captured column maps to,
//! and the mapping from Postgres and MySQL/MariaDB type names.
//!
//! The mapping is lossless by default (DESIGN §2): exact decimals, unsigned
//! 64-bit values, microsecond times, time zones explicit. A type with no
//! lossless mapping is an error that names the column and the type; it is
//! never approximated. The README's type table is generated from
//! [`type_table`], which runs the real mapping functions over examples.

use std::fmt;

/// What a column holds, independent of the source database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    Boolean,
    /// Signed integers of 8, 16, 32 or 64 bits, and unsigned ones of up to 32
    /// bits (they fit a signed 64-bit value).
    Int {
        bits: u8,
        signed: bool,
    },
    /// `BIGINT UNSIGNED`: 0..=2^64-1, carried as a decimal(20,0).
    UInt64,
    Float32,
    Float64,
    /// An exact decimal with a declared precision and scale.
    Decimal {
        precision: u16,
        scale: u16,
    },
    /// Postgres `numeric` without precision: any scale, plus `NaN`,
    /// `Infinity` and `-Infinity`. Carried as its exact decimal text.
    NumericText,
    /// Character data; also enum labels, `SET`s (`a,b`), `timetz`
    /// (`HH:MM:SS.ffffff+hh:mm`) and types carried as text (inet, xml, ...).
    Text,
    /// JSON as text (json, jsonb, MySQL JSON).
    Json,
    /// A UUID in its canonical lower-case text form.
    Uuid,
    Bytes,
    /// Days since 1970-01-01; Postgres `±infinity` is `i32::MAX`/`i32::MIN`,
    /// the server's own encoding.
    Date,
    /// Microseconds since midnight, `0..=86_400_000_000` (Postgres allows
    /// `24:00:00`).
    Time,
    /// A signed duration in microseconds: MySQL `TIME`, which spans
    /// `-838:59:59` to `838:59:59`.
    DurationMicros,
    /// A local date-time without zone (Postgres `timestamp`, MySQL
    /// `DATETIME`): microseconds since 1970-01-01T00:00:00 of the wall clock.
    Timestamp,
    /// An instant (Postgres `timestamptz`, MySQL `TIMESTAMP`): microseconds
    /// since the Unix epoch, UTC. `±infinity` is `i64::MAX`/`i64::MIN`.
    TimestampTz,
    /// Postgres `interval`, kept as its three exact parts.
    Interval,
    /// An array; elements may be NULL. `dims` nested levels (Postgres
    /// `int[][]` has 2).
    Array {
        element: Box<ColumnType>,
        dims: u8,
    },
}

impl ColumnType {
    /// A short name used in schemas and messages.
    pub fn name(&self) -> String {
        match self {
            ColumnType::Boolean => "boolean".into(),
            ColumnType::Int { bits, signed: true } => format!("int{bits}"),
            ColumnType::Int {
                bits,
                signed: false,
            } => format!("uint{bits}"),
            ColumnType::UInt64 => "uint64".into(),
            ColumnType::Float32 => "float32".into(),
            ColumnType::Float64 => "float64".into(),
            ColumnType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            ColumnType::NumericText => "numeric".into(),
            ColumnType::Text => "text".into(),
            ColumnType::Json => "json".into(),
            ColumnType::Uuid => "uuid".into(),
            ColumnType::Bytes => "bytes".into(),
            ColumnType::Date => "date".into(),
            ColumnType::Time => "time".into(),
            ColumnType::DurationMicros => "duration".into(),
            ColumnType::Timestamp => "timestamp".into(),
            ColumnType::TimestampTz => "timestamptz".into(),
            ColumnType::Interval => "interval".into(),
            ColumnType::Array { element, dims } => {
                format!("{}{}", element.name(), "[]".repeat(usize::from(*dims)))
            }
        }
    }

    /// Parses [`ColumnType::name`] back (used when a table schema is rebuilt
    /// from the Avro schema a sink reads).
    pub fn from_name(name: &str) -> Option<ColumnType> {
        if let Some(inner) = name.strip_suffix("[]") {
            let mut element = inner;
            let mut dims = 1u8;
            while let Some(e) = element.strip_suffix("[]") {
                element = e;
                dims = dims.checked_add(1)?;
            }
            return Some(ColumnType::Array {
                element: Box::new(ColumnType::from_name(element)?),
                dims,
            });
        }
        if let Some(args) = name
            .strip_prefix("decimal(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let (p, s) = args.split_once(',')?;
            return Some(ColumnType::Decimal {
                precision: p.trim().parse().ok()?,
                scale: s.trim().parse().ok()?,
            });
        }
        if let Some(bits) = name.strip_prefix("uint").and_then(|b| b.parse().ok()) {
            return match bits {
                64 => Some(ColumnType::UInt64),
                8 | 16 | 32 => Some(ColumnType::Int {
                    bits,
                    signed: false,
                }),
                _ => None,
            };
        }
        if let Some(bits) = name.strip_prefix("int").and_then(|b| b.parse().ok()) {
            return matches!(bits, 8 | 16 | 32 | 64)
                .then_some(ColumnType::Int { bits, signed: true });
        }
        Some(match name {
            "boolean" => ColumnType::Boolean,
            "float32" => ColumnType::Float32,
            "float64" => ColumnType::Float64,
            "numeric" => ColumnType::NumericText,
            "text" => ColumnType::Text,
            "json" => ColumnType::Json,
            "uuid" => ColumnType::Uuid,
            "bytes" => ColumnType::Bytes,
            "date" => ColumnType::Date,
            "time" => ColumnType::Time,
            "duration" => ColumnType::DurationMicros,
            "timestamp" => ColumnType::Timestamp,
            "timestamptz" => ColumnType::TimestampTz,
            "interval" => ColumnType::Interval,
            _ => return None,
        })
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A source type that tidewater cannot carry without loss.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("type `{source_type}` is not supported{hint}")]
pub struct UnsupportedType {
    pub source_type: String,
    pub hint: String,
}

fn unsupported(source_type: &str, hint: &str) -> UnsupportedType {
    UnsupportedType {
        source_type: source_type.to_string(),
        hint: if hint.is_empty() {
            String::new()
        } else {
            format!(": {hint}")
        },
    }
}

/// Splits `name(args)` into the lower-cased name and the argument list.
fn split_args(text: &str) -> (String, Vec<String>) {
    match text.split_once('(') {
        Some((name, rest)) => {
            let args = rest
                .rsplit_once(')')
                .map(|(inside, _)| inside)
                .unwrap_or(rest);
            (
                name.trim().to_ascii_lowercase(),
                args.split(',').map(|a| a.trim().to_string()).collect(),
            )
        }
        None => (text.trim().to_ascii_lowercase(), Vec::new()),
    }
}

fn decimal(
    source_type: &str,
    args: &[String],
    max_precision: u16,
) -> Result<ColumnType, UnsupportedType> {
    let bad = || unsupported(source_type, "precision and scale must be integers");
    let precision: u16 = match args.first() {
        Some(p) => p.parse().map_err(|_| bad())?,
        None => max_precision,
    };
    let scale: u16 = match args.get(1) {
        Some(s) => s.parse().map_err(|_| bad())?,
        None => 0,
    };
    if precision == 0 || precision > max_precision || scale > precision {
        return Err(unsupported(
            source_type,
            "scale must lie between 0 and the precision",
        ));
    }
    Ok(ColumnType::Decimal { precision, scale })
}

/// Maps a Postgres type as `format_type()` prints it (`numeric(12,2)`,
/// `timestamp with time zone`, `integer[]`). `dims` is the column's declared
/// array dimensions (`pg_attribute.attndims`; 0 when not an array or unknown).
/// Domains must be resolved to their base type before, and enums passed as
/// `enum`.
pub fn map_postgres(format_type: &str, dims: u8) -> Result<ColumnType, UnsupportedType> {
    let text = format_type.trim();
    if let Some(element) = text.strip_suffix("[]") {
        let mut element = element;
        let mut seen = 1u8;
        while let Some(e) = element.strip_suffix("[]") {
            element = e;
            seen = seen.saturating_add(1);
        }
        let element = map_postgres(element, 0)?;
        if matches!(element, ColumnType::Array { .. }) {
            return Err(unsupported(format_type, "arrays of arrays"));
        }
        return Ok(ColumnType::Array {
            element: Box::new(element),
            dims: dims.max(seen).max(1),
        });
    }
    let lower = text.to_ascii_lowercase();
    // Times carry a precision inside the name: `timestamp(3) with time zone`,
    // `time(6) without time zone`, `interval day to second(3)`.
    let (name, args) = if lower.starts_with("time") {
        (strip_precision(&lower), Vec::new())
    } else if lower.starts_with("interval") {
        ("interval".to_string(), Vec::new())
    } else {
        split_args(&lower)
    };
    let name = name.as_str();
    Ok(match name {
        "boolean" | "bool" => ColumnType::Boolean,
        "smallint" | "int2" => ColumnType::Int {
            bits: 16,
            signed: true,
        },
        "integer" | "int" | "int4" => ColumnType::Int {
            bits: 32,
            signed: true,
        },
        "bigint" | "int8" => ColumnType::Int {
            bits: 64,
            signed: true,
        },
        "oid" | "xid" => ColumnType::Int {
            bits: 32,
            signed: false,
        },
        "real" | "float4" => ColumnType::Float32,
        "double precision" | "float8" => ColumnType::Float64,
        "numeric" | "decimal" if args.is_empty() => ColumnType::NumericText,
        "numeric" | "decimal" => decimal(text, &args, 1000)?,
        // money: 64-bit count of cents (with lc_monetary's two fraction digits).
        "money" => ColumnType::Decimal {
            precision: 19,
            scale: 2,
        },
        "text" | "character varying" | "varchar" | "character" | "char" | "bpchar" | "name"
        | "citext" | "enum" | "inet" | "cidr" | "macaddr" | "macaddr8" | "xml" | "tsvector"
        | "tsquery" | "bit" | "bit varying" | "varbit" | "point" | "line" | "lseg" | "box"
        | "path" | "polygon" | "circle" | "pg_lsn" | "ltree" | "hstore" => ColumnType::Text,
        "time with time zone" | "timetz" => ColumnType::Text,
        "json" | "jsonb" => ColumnType::Json,
        "uuid" => ColumnType::Uuid,
        "bytea" => ColumnType::Bytes,
        "date" => ColumnType::Date,
        "time without time zone" | "time" => ColumnType::Time,
        "timestamp without time zone" | "timestamp" => ColumnType::Timestamp,
        "timestamp with time zone" | "timestamptz" => ColumnType::TimestampTz,
        "interval" => ColumnType::Interval,
        _ => {
            return Err(unsupported(
                format_type,
                "exclude the column (`exclude_columns`) or cast it in a view",
            ));
        }
    })
}

/// `timestamp(3) with time zone` → `timestamp with time zone`.
fn strip_precision(text: &str) -> String {
    match (text.find('('), text.find(')')) {
        (Some(open), Some(close)) if open < close => {
            let mut out = String::with_capacity(text.len());
            out.push_str(text.get(..open).unwrap_or_default());
            out.push_str(text.get(close + 1..).unwrap_or_default());
            out.split_whitespace().collect::<Vec<_>>().join(" ")
        }
        _ => text.to_string(),
    }
}

/// Maps a MySQL/MariaDB column type as `information_schema.COLUMNS.COLUMN_TYPE`
/// prints it (`decimal(65,30)`, `bigint(20) unsigned`, `enum('a','b')`,
/// `datetime(6)`).
pub fn map_mysql(column_type: &str) -> Result<ColumnType, UnsupportedType> {
    let text = column_type.trim();
    let lower = text.to_ascii_lowercase();
    let unsigned = lower.contains(" unsigned");
    let base = lower
        .replace(" unsigned", "")
        .replace(" zerofill", "")
        .replace(" signed", "");
    let (name, args) = split_args(&base);
    let int = |bits: u8| ColumnType::Int {
        bits,
        signed: !unsigned,
    };
    Ok(match name.as_str() {
        "tinyint" | "bool" | "boolean" => int(8),
        "smallint" => int(16),
        "mediumint" | "int" | "integer" => {
            if unsigned {
                ColumnType::Int {
                    bits: 32,
                    signed: false,
                }
            } else {
                int(32)
            }
        }
        "bigint" if unsigned => ColumnType::UInt64,
        "bigint" => int(64),
        "float" => ColumnType::Float32,
        "double" | "double precision" | "real" => ColumnType::Float64,
        "decimal" | "numeric" | "dec" | "fixed" => {
            let mut args = args;
            if args.is_empty() {
                args = vec!["10".into(), "0".into()];
            }
            decimal(text, &args, 65)?
        }
        "bit" => {
            let width: u32 = args.first().and_then(|w| w.parse().ok()).unwrap_or(1);
            if width == 1 {
                ColumnType::Boolean
            } else {
                ColumnType::Bytes
            }
        }
        "year" => ColumnType::Int {
            bits: 16,
            signed: true,
        },
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" => {
            ColumnType::Text
        }
        "json" => ColumnType::Json,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry"
        | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => ColumnType::Bytes,
        "uuid" => ColumnType::Uuid,
        "inet4" | "inet6" => ColumnType::Text,
        "date" => ColumnType::Date,
        "time" => ColumnType::DurationMicros,
        "datetime" => ColumnType::Timestamp,
        "timestamp" => ColumnType::TimestampTz,
        _ => {
            return Err(unsupported(
                column_type,
                "exclude the column (`exclude_columns`)",
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_types() {
        let int = |bits| ColumnType::Int { bits, signed: true };
        assert_eq!(map_postgres("smallint", 0).unwrap(), int(16));
        assert_eq!(map_postgres("bigint", 0).unwrap(), int(64));
        assert_eq!(
            map_postgres("numeric(12,2)", 0).unwrap(),
            ColumnType::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(map_postgres("numeric", 0).unwrap(), ColumnType::NumericText);
        assert_eq!(
            map_postgres("numeric(5)", 0).unwrap(),
            ColumnType::Decimal {
                precision: 5,
                scale: 0
            }
        );
        assert_eq!(
            map_postgres("timestamp(3) with time zone", 0).unwrap(),
            ColumnType::TimestampTz
        );
        assert_eq!(
            map_postgres("timestamp without time zone", 0).unwrap(),
            ColumnType::Timestamp
        );
        assert_eq!(
            map_postgres("time(6) without time zone", 0).unwrap(),
            ColumnType::Time
        );
        assert_eq!(
            map_postgres("time with time zone", 0).unwrap(),
            ColumnType::Text
        );
        assert_eq!(
            map_postgres("character varying(20)", 0).unwrap(),
            ColumnType::Text
        );
        assert_eq!(map_postgres("jsonb", 0).unwrap(), ColumnType::Json);
        assert_eq!(
            map_postgres("integer[]", 2).unwrap(),
            ColumnType::Array {
                element: Box::new(int(32)),
                dims: 2
            }
        );
        assert_eq!(
            map_postgres("text[]", 0).unwrap(),
            ColumnType::Array {
                element: Box::new(ColumnType::Text),
                dims: 1
            }
        );
        let err = map_postgres("tsrange", 0).unwrap_err();
        assert_eq!(err.source_type, "tsrange");
        assert!(err.to_string().contains("exclude_columns"), "{err}");
        assert!(map_postgres("numeric(2,5)", 0).is_err());
    }

    #[test]
    fn mysql_types() {
        assert_eq!(
            map_mysql("bigint(20) unsigned").unwrap(),
            ColumnType::UInt64
        );
        assert_eq!(
            map_mysql("bigint(20)").unwrap(),
            ColumnType::Int {
                bits: 64,
                signed: true
            }
        );
        assert_eq!(
            map_mysql("int(10) unsigned").unwrap(),
            ColumnType::Int {
                bits: 32,
                signed: false
            }
        );
        assert_eq!(
            map_mysql("tinyint(1)").unwrap(),
            ColumnType::Int {
                bits: 8,
                signed: true
            }
        );
        assert_eq!(
            map_mysql("decimal(65,30)").unwrap(),
            ColumnType::Decimal {
                precision: 65,
                scale: 30
            }
        );
        assert_eq!(map_mysql("datetime(6)").unwrap(), ColumnType::Timestamp);
        assert_eq!(map_mysql("timestamp(3)").unwrap(), ColumnType::TimestampTz);
        assert_eq!(map_mysql("time(6)").unwrap(), ColumnType::DurationMicros);
        assert_eq!(map_mysql("enum('a','b,c')").unwrap(), ColumnType::Text);
        assert_eq!(map_mysql("bit(1)").unwrap(), ColumnType::Boolean);
        assert_eq!(map_mysql("bit(12)").unwrap(), ColumnType::Bytes);
        assert_eq!(
            map_mysql("year").unwrap(),
            ColumnType::Int {
                bits: 16,
                signed: true
            }
        );
        assert!(map_mysql("vector(3)").is_err());
    }

    #[test]
    fn names_round_trip() {
        let types = [
            ColumnType::Boolean,
            ColumnType::Int {
                bits: 8,
                signed: true,
            },
            ColumnType::Int {
                bits: 32,
                signed: false,
            },
            ColumnType::UInt64,
            ColumnType::Decimal {
                precision: 65,
                scale: 30,
            },
            ColumnType::NumericText,
            ColumnType::TimestampTz,
            ColumnType::DurationMicros,
            ColumnType::Array {
                element: Box::new(ColumnType::Text),
                dims: 3,
            },
        ];
        for t in types {
            assert_eq!(ColumnType::from_name(&t.name()), Some(t.clone()), "{t}");
        }
    }
}
