//! A MySQL/MariaDB column as capture sees it: how the binlog stores its
//! value ([`Wire`]), the event type it becomes, nullability, and its type
//! as the server prints it.
//!
//! # Where a table's shape comes from
//!
//! With `binlog_row_metadata = FULL` (checked before capture starts) every
//! table map event carries the table's shape *as of that binlog position*:
//! column names, types with their metadata (DECIMAL precision and scale,
//! fractional seconds, lengths), signedness, character sets, ENUM and SET
//! labels, nullability and the primary key. Row events are decoded with
//! the table map that precedes them, so the shape history is the binlog
//! itself: a row written before an `ALTER TABLE` decodes with the old shape
//! and a row after it with the new one, whatever the catalog says now, and
//! a restart needs no stored history, since resuming at a position replays
//! the table maps from there. DDL statements are still read from the stream
//! for `TRUNCATE` (see [`super::ddl`]). The snapshot reads shapes from
//! `information_schema` inside its consistent-snapshot transaction; both
//! paths produce the same types and the same canonical type text
//! ([`canonical_type`]), so a table's schema does not change at the hand-over.

use mysql_common::binlog::events::{OptionalMetaExtractor, TableMapEvent};
use mysql_common::collations::{Collation, CollationId};
use mysql_common::constants::ColumnType as My;

use crate::event::types::{ColumnType, map_mysql};

/// The character set of a text column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// utf8mb4 and utf8mb3.
    Utf8,
    /// MySQL's latin1, which is Windows-1252.
    Latin1,
    Ascii,
    /// `binary`: the column holds bytes.
    Binary,
}

impl Charset {
    /// The character set of a collation id, or an error naming it.
    pub fn of_collation(id: u16) -> Result<Charset, String> {
        if id == 63 {
            return Ok(Charset::Binary);
        }
        let collation = Collation::from(CollationId::from(id));
        Charset::named(collation.charset())
            .ok_or_else(|| format!("collation id {id} (`{}`)", collation.collation()))
    }

    /// From a character set name as `information_schema` prints it.
    pub fn named(name: &str) -> Option<Charset> {
        Some(match name.to_ascii_lowercase().as_str() {
            "utf8mb4" | "utf8mb3" | "utf8" => Charset::Utf8,
            "latin1" => Charset::Latin1,
            "ascii" => Charset::Ascii,
            "binary" => Charset::Binary,
            _ => return None,
        })
    }

    /// Bytes per character at most (what a length in bytes is divided by).
    fn max_len(self) -> u32 {
        match self {
            Charset::Utf8 => 4,
            _ => 1,
        }
    }
}

/// How the binlog stores a column's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// 1, 2, 3, 4 or 8 bytes, little-endian.
    Int {
        bytes: u8,
        unsigned: bool,
    },
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Date,
    Time {
        fsp: u8,
    },
    DateTime {
        fsp: u8,
    },
    Timestamp {
        fsp: u8,
    },
    Year,
    Bit {
        bits: u16,
    },
    Enum {
        size: u8,
        labels: Vec<String>,
    },
    Set {
        size: u8,
        labels: Vec<String>,
    },
    /// CHAR / BINARY (`fixed`) or VARCHAR / VARBINARY, `max` bytes long.
    String {
        max: u32,
        fixed: bool,
        charset: Charset,
    },
    /// BLOB / TEXT (and MariaDB's JSON, a LONGTEXT): `prefix` length bytes.
    Blob {
        prefix: u8,
        charset: Charset,
    },
    /// MySQL's binary JSON.
    Json {
        prefix: u8,
    },
    Geometry {
        prefix: u8,
    },
}

/// One column of a table at one binlog position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    pub name: String,
    pub wire: Wire,
    /// The mapped type, or why it is not supported: only an error when the
    /// column is captured (an excluded column is decoded by its wire format
    /// and dropped).
    pub ty: Result<ColumnType, String>,
    pub nullable: bool,
    /// [`canonical_type`] of the column.
    pub source_type: String,
}

/// A table map's columns and primary key (column indices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedTable {
    pub columns: Vec<ColumnDef>,
    pub primary_key: Vec<usize>,
}

/// The type text `information_schema.COLUMNS.COLUMN_TYPE` prints, without
/// the parts that the binlog does not carry and that do not change values:
/// integer display widths, `zerofill`, FLOAT/DOUBLE precision.
pub fn canonical_type(column_type: &str) -> String {
    let lower = column_type
        .trim()
        .to_ascii_lowercase()
        .replace(" zerofill", "");
    let name_end = lower.find(['(', ' ']).unwrap_or(lower.len());
    let name = lower.get(..name_end).unwrap_or_default();
    let strip = matches!(
        name,
        "tinyint"
            | "smallint"
            | "mediumint"
            | "int"
            | "integer"
            | "bigint"
            | "year"
            | "float"
            | "double"
    );
    if !strip {
        return lower;
    }
    let rest = lower.get(name_end..).unwrap_or_default();
    let rest = match (rest.strip_prefix('('), rest.find(')')) {
        (Some(_), Some(close)) => rest.get(close + 1..).unwrap_or_default(),
        _ => rest,
    };
    let name = if name == "integer" { "int" } else { name };
    format!("{name}{rest}")
}

fn quote_labels(labels: &[String]) -> String {
    labels
        .iter()
        .map(|l| format!("'{}'", l.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(",")
}

impl Wire {
    /// The canonical type text of a column stored this way.
    pub fn type_text(&self) -> String {
        let signed = |unsigned: bool| if unsigned { " unsigned" } else { "" };
        let fsp = |name: &str, fsp: u8| {
            if fsp == 0 {
                name.to_string()
            } else {
                format!("{name}({fsp})")
            }
        };
        match self {
            Wire::Int { bytes, unsigned } => {
                let name = match bytes {
                    1 => "tinyint",
                    2 => "smallint",
                    3 => "mediumint",
                    4 => "int",
                    _ => "bigint",
                };
                format!("{name}{}", signed(*unsigned))
            }
            Wire::Float => "float".into(),
            Wire::Double => "double".into(),
            Wire::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            Wire::Date => "date".into(),
            Wire::Time { fsp: f } => fsp("time", *f),
            Wire::DateTime { fsp: f } => fsp("datetime", *f),
            Wire::Timestamp { fsp: f } => fsp("timestamp", *f),
            Wire::Year => "year".into(),
            Wire::Bit { bits } => format!("bit({bits})"),
            Wire::Enum { labels, .. } => format!("enum({})", quote_labels(labels)),
            Wire::Set { labels, .. } => format!("set({})", quote_labels(labels)),
            Wire::String {
                max,
                fixed,
                charset,
            } => {
                let name = match (fixed, charset) {
                    (true, Charset::Binary) => "binary",
                    (false, Charset::Binary) => "varbinary",
                    (true, _) => "char",
                    (false, _) => "varchar",
                };
                format!("{name}({})", max / charset.max_len())
            }
            Wire::Blob { prefix, charset } => {
                let size = match prefix {
                    1 => "tiny",
                    2 => "",
                    3 => "medium",
                    _ => "long",
                };
                let kind = if *charset == Charset::Binary {
                    "blob"
                } else {
                    "text"
                };
                format!("{size}{kind}")
            }
            Wire::Json { .. } => "json".into(),
            Wire::Geometry { .. } => "geometry".into(),
        }
    }
}

/// The columns of a table map event written with `binlog_row_metadata =
/// FULL`, or what is missing or not supported (naming the column).
pub fn from_table_map(tme: &TableMapEvent<'_>) -> Result<MappedTable, String> {
    let count = usize::try_from(tme.columns_count()).unwrap_or(usize::MAX);
    let meta = OptionalMetaExtractor::new(tme.iter_optional_meta())
        .map_err(|e| format!("unreadable table map metadata: {e}"))?;
    let names: Vec<String> = meta
        .iter_column_name()
        .map(|n| n.map(|n| n.name().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("unreadable column names: {e}"))?;
    if names.len() != count {
        return Err("the table map has no column names: the server writes \
             binlog_row_metadata = MINIMAL or NO_LOG. Fix: SET GLOBAL binlog_row_metadata = FULL \
             (and in the server's configuration), then restart tidewater"
            .into());
    }
    let mut signedness = meta.iter_signedness();
    let mut charsets = meta.iter_charset();
    let mut enum_charsets = meta.iter_enum_and_set_charset();
    let mut enum_labels = Vec::new();
    let mut set_labels = Vec::new();
    for field in tme.iter_optional_meta() {
        use mysql_common::binlog::events::OptionalMetadataField as F;
        match field.map_err(|e| format!("unreadable table map metadata: {e}"))? {
            F::EnumStrValue(v) => {
                for labels in v.iter_values() {
                    let labels = labels.map_err(|e| format!("unreadable ENUM labels: {e}"))?;
                    enum_labels.push(
                        labels
                            .values()
                            .iter()
                            .map(|l| l.value().into_owned())
                            .collect::<Vec<_>>(),
                    );
                }
            }
            F::SetStrValue(v) => {
                for labels in v.iter_values() {
                    let labels = labels.map_err(|e| format!("unreadable SET labels: {e}"))?;
                    set_labels.push(
                        labels
                            .values()
                            .iter()
                            .map(|l| l.value().into_owned())
                            .collect::<Vec<_>>(),
                    );
                }
            }
            _ => {}
        }
    }
    let mut enum_labels = enum_labels.into_iter();
    let mut set_labels = set_labels.into_iter();
    let nulls = tme.null_bitmask();
    let mut columns = Vec::with_capacity(count);
    for (i, name) in names.into_iter().enumerate() {
        let fail = |what: String| format!("column `{name}`: {what}");
        let raw = tme
            .get_raw_column_type(i)
            .map_err(|e| fail(format!("unknown column type: {e}")))?
            .ok_or_else(|| fail("no column type".into()))?;
        let real = tme
            .get_column_type(i)
            .map_err(|e| fail(format!("unknown column type: {e}")))?
            .ok_or_else(|| fail("no column type".into()))?;
        let md = tme.get_column_metadata(i).unwrap_or_default();
        let byte = |n: usize| md.get(n).copied().unwrap_or(0);
        let mut unsigned = false;
        if real.is_numeric_type() {
            unsigned = signedness.next().unwrap_or(false);
        }
        // A character set tidewater cannot decode is an error only for a
        // captured column: an excluded one is read as bytes and dropped.
        let mut unsupported_charset = None;
        let mut text_charset = || -> Result<Charset, String> {
            let id = charsets
                .next()
                .transpose()
                .map_err(|e| fail(format!("unreadable character set: {e}")))?
                .ok_or_else(|| fail("no character set in the table map".into()))?;
            Ok(Charset::of_collation(id).unwrap_or_else(|c| {
                unsupported_charset = Some(format!(
                    "the character set of {c} is not supported (utf8mb4, utf8mb3, latin1, ascii and binary are): \
                     exclude the column (`exclude_columns`) or convert it"
                ));
                Charset::Binary
            }))
        };
        let wire = match real {
            My::MYSQL_TYPE_TINY => Wire::Int { bytes: 1, unsigned },
            My::MYSQL_TYPE_SHORT => Wire::Int { bytes: 2, unsigned },
            My::MYSQL_TYPE_INT24 => Wire::Int { bytes: 3, unsigned },
            My::MYSQL_TYPE_LONG => Wire::Int { bytes: 4, unsigned },
            My::MYSQL_TYPE_LONGLONG => Wire::Int { bytes: 8, unsigned },
            My::MYSQL_TYPE_FLOAT => Wire::Float,
            My::MYSQL_TYPE_DOUBLE => Wire::Double,
            My::MYSQL_TYPE_NEWDECIMAL => Wire::Decimal {
                precision: byte(0),
                scale: byte(1),
            },
            My::MYSQL_TYPE_DATE | My::MYSQL_TYPE_NEWDATE => Wire::Date,
            My::MYSQL_TYPE_TIME2 => Wire::Time { fsp: byte(0) },
            My::MYSQL_TYPE_DATETIME2 => Wire::DateTime { fsp: byte(0) },
            My::MYSQL_TYPE_TIMESTAMP2 => Wire::Timestamp { fsp: byte(0) },
            My::MYSQL_TYPE_YEAR => Wire::Year,
            My::MYSQL_TYPE_BIT => Wire::Bit {
                bits: u16::from(byte(1)) * 8 + u16::from(byte(0)),
            },
            My::MYSQL_TYPE_ENUM | My::MYSQL_TYPE_SET => {
                let _ = enum_charsets.next();
                // STRING metadata: real type, then the pack length.
                let size = if raw == My::MYSQL_TYPE_STRING {
                    byte(1)
                } else {
                    byte(0)
                };
                if real == My::MYSQL_TYPE_ENUM {
                    Wire::Enum {
                        size,
                        labels: enum_labels
                            .next()
                            .ok_or_else(|| fail("no ENUM labels in the table map".into()))?,
                    }
                } else {
                    Wire::Set {
                        size,
                        labels: set_labels
                            .next()
                            .ok_or_else(|| fail("no SET labels in the table map".into()))?,
                    }
                }
            }
            My::MYSQL_TYPE_STRING => {
                let (b0, b1) = (u32::from(byte(0)), u32::from(byte(1)));
                let max = if b0 & 0x30 != 0x30 {
                    b1 | (((b0 & 0x30) ^ 0x30) << 4)
                } else {
                    b1
                };
                Wire::String {
                    max,
                    fixed: true,
                    charset: text_charset()?,
                }
            }
            My::MYSQL_TYPE_VARCHAR | My::MYSQL_TYPE_VAR_STRING => Wire::String {
                max: u32::from(u16::from_le_bytes([byte(0), byte(1)])),
                fixed: false,
                charset: text_charset()?,
            },
            My::MYSQL_TYPE_BLOB
            | My::MYSQL_TYPE_TINY_BLOB
            | My::MYSQL_TYPE_MEDIUM_BLOB
            | My::MYSQL_TYPE_LONG_BLOB => Wire::Blob {
                prefix: byte(0),
                charset: text_charset()?,
            },
            My::MYSQL_TYPE_JSON => Wire::Json { prefix: byte(0) },
            My::MYSQL_TYPE_GEOMETRY => Wire::Geometry { prefix: byte(0) },
            My::MYSQL_TYPE_TIMESTAMP | My::MYSQL_TYPE_DATETIME | My::MYSQL_TYPE_TIME => {
                return Err(fail(format!(
                    "{real:?} is the pre-5.6 temporal format. Fix: rebuild the table (ALTER TABLE .. FORCE) with mysql56_temporal_format on"
                )));
            }
            other => return Err(fail(format!("type {other:?} is not supported"))),
        };
        let source_type = wire.type_text();
        let ty = match unsupported_charset {
            Some(problem) => Err(problem),
            None => map_mysql(&source_type).map_err(|e| e.to_string()),
        };
        columns.push(ColumnDef {
            nullable: nulls.get(i).as_deref().copied().unwrap_or(true),
            name,
            wire,
            ty,
            source_type,
        });
    }
    let primary_key = meta
        .iter_primary_key()
        .map(|k| k.map(|k| usize::try_from(k).unwrap_or(usize::MAX)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("unreadable primary key: {e}"))?;
    Ok(MappedTable {
        columns,
        primary_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_types_drop_display_widths_only() {
        assert_eq!(canonical_type("int(11)"), "int");
        assert_eq!(canonical_type("bigint(20) unsigned"), "bigint unsigned");
        assert_eq!(canonical_type("INT(10) UNSIGNED ZEROFILL"), "int unsigned");
        assert_eq!(canonical_type("tinyint(1)"), "tinyint");
        assert_eq!(canonical_type("year(4)"), "year");
        assert_eq!(canonical_type("float(7,2)"), "float");
        assert_eq!(canonical_type("decimal(65,30)"), "decimal(65,30)");
        assert_eq!(canonical_type("varchar(255)"), "varchar(255)");
        assert_eq!(canonical_type("enum('a','b')"), "enum('a','b')");
        assert_eq!(canonical_type("datetime(6)"), "datetime(6)");
    }

    #[test]
    fn wire_type_text_matches_the_catalog_form() {
        let cases = [
            (
                Wire::Int {
                    bytes: 8,
                    unsigned: true,
                },
                "bigint unsigned",
            ),
            (
                Wire::Decimal {
                    precision: 65,
                    scale: 30,
                },
                "decimal(65,30)",
            ),
            (Wire::Time { fsp: 0 }, "time"),
            (Wire::DateTime { fsp: 6 }, "datetime(6)"),
            (
                Wire::Enum {
                    size: 1,
                    labels: vec!["a".into(), "it's".into()],
                },
                "enum('a','it''s')",
            ),
            (
                Wire::String {
                    max: 1020,
                    fixed: false,
                    charset: Charset::Utf8,
                },
                "varchar(255)",
            ),
            (
                Wire::String {
                    max: 16,
                    fixed: true,
                    charset: Charset::Binary,
                },
                "binary(16)",
            ),
            (
                Wire::Blob {
                    prefix: 4,
                    charset: Charset::Utf8,
                },
                "longtext",
            ),
            (
                Wire::Blob {
                    prefix: 2,
                    charset: Charset::Binary,
                },
                "blob",
            ),
        ];
        for (wire, text) in cases {
            assert_eq!(wire.type_text(), text);
            assert_eq!(canonical_type(text), text, "{text} is already canonical");
            assert!(map_mysql(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn collations_map_to_charsets() {
        assert_eq!(Charset::of_collation(45).unwrap(), Charset::Utf8);
        assert_eq!(Charset::of_collation(46).unwrap(), Charset::Utf8);
        assert_eq!(Charset::of_collation(33).unwrap(), Charset::Utf8);
        assert_eq!(Charset::of_collation(8).unwrap(), Charset::Latin1);
        assert_eq!(Charset::of_collation(63).unwrap(), Charset::Binary);
        assert_eq!(Charset::of_collation(11).unwrap(), Charset::Ascii);
        let err = Charset::of_collation(1).unwrap_err();
        assert!(err.contains("collation id 1"), "{err}");
    }
}
