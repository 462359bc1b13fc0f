//! A lake table's shape: its columns (data columns as they evolved, plus
//! Hudi's meta columns and tidewater's own), their Arrow/Parquet types, the
//! record key and partition path of a row, and how a new source table shape
//! is absorbed.
//!
//! Column order in every base file: the five `_hoodie_*` meta columns, the
//! data columns in the order they first appeared, `_tidewater_position`
//! (Hudi's ordering/precombine field), then the derived partition column
//! (`<column>_<granularity>`, e.g. `created_at_day`) when partitioned.
//!
//! Evolution ([`LakeSchema::absorb`]): an added column is appended (older
//! rows read it as NULL); a dropped column stays, NULL for new rows; a
//! widening (int16→int32→int64, float32→float64, a decimal with more integer
//! digits at the same scale) is absorbed by rewriting every file group with
//! the new type; anything else (a narrowing, a type change, a new key) stops
//! the table with an error naming the column and both types.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use serde_json::{Value as Json, json};

use crate::config::model::Granularity;
use crate::event::datum::{Datum, Row};
use crate::event::schema::{TableSchema, renamed_columns};
use crate::event::time::{civil_from_days, date_text, time_text};
use crate::event::types::ColumnType;
use crate::kafka::avro::schema::avro_name;

pub const COMMIT_TIME: &str = "_hoodie_commit_time";
pub const COMMIT_SEQNO: &str = "_hoodie_commit_seqno";
pub const RECORD_KEY: &str = "_hoodie_record_key";
pub const PARTITION_PATH: &str = "_hoodie_partition_path";
pub const FILE_NAME: &str = "_hoodie_file_name";
pub const META_COLUMNS: [&str; 5] = [
    COMMIT_TIME,
    COMMIT_SEQNO,
    RECORD_KEY,
    PARTITION_PATH,
    FILE_NAME,
];
/// The source position of the row's last change: Hudi's ordering field.
pub const POSITION: &str = "_tidewater_position";
/// Hive's name for the partition of NULL values.
pub const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// A data column of the lake table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LakeColumn {
    /// The column's name at the source.
    pub name: String,
    /// Its name in base files and schemas: a valid Avro name (readers refuse
    /// others), `Order Items` → `Order_Items`.
    pub field: String,
    /// [`ColumnType::name`].
    #[serde(rename = "type")]
    pub ty_name: String,
    pub source_type: String,
    /// Dropped at the source: kept, NULL for new rows.
    #[serde(default)]
    pub dropped: bool,
    /// The column's earlier source names, oldest first: late rows of a
    /// shape from before a rename carry it under one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl LakeColumn {
    pub fn ty(&self) -> Option<ColumnType> {
        ColumnType::from_name(&self.ty_name)
    }

    fn new(name: &str, ty: &ColumnType, source_type: &str) -> LakeColumn {
        LakeColumn {
            name: name.to_string(),
            field: avro_name(name),
            ty_name: ty.name(),
            source_type: source_type.to_string(),
            dropped: false,
            aliases: Vec::new(),
        }
    }
}

/// Date partitioning of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    pub column: String,
    pub granularity: Granularity,
}

impl PartitionSpec {
    /// The derived partition column: `created_at_day`.
    pub fn field(&self) -> String {
        let g = match self.granularity {
            Granularity::Day => "day",
            Granularity::Month => "month",
            Granularity::Year => "year",
        };
        format!("{}_{g}", avro_name(&self.column))
    }

    /// The day (since the epoch) of a date or timestamp datum: every
    /// granularity's partition value is a function of it.
    pub fn day(datum: &Datum) -> Option<i64> {
        match datum {
            Datum::Date(d) => Some(i64::from(*d)),
            Datum::Micros(m) => Some(m.div_euclid(86_400_000_000)),
            _ => None,
        }
    }

    /// The partition value of a date or timestamp datum.
    pub fn value(&self, datum: &Datum) -> Result<String, String> {
        let days = match (datum, Self::day(datum)) {
            (Datum::Null | Datum::Unchanged, _) => return Ok(DEFAULT_PARTITION.into()),
            (_, Some(days)) => days,
            (other, None) => {
                return Err(format!(
                    "partition column `{}` must be a date or timestamp, found {other:?}",
                    self.column
                ));
            }
        };
        let (y, m, _) = civil_from_days(days);
        Ok(match self.granularity {
            Granularity::Day => {
                date_text(i32::try_from(days).unwrap_or(if days < 0 { i32::MIN } else { i32::MAX }))
            }
            Granularity::Month => format!("{y:04}-{m:02}"),
            Granularity::Year => format!("{y:04}"),
        })
    }
}

/// The lake table's column set, as recorded in each commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LakeSchema {
    pub columns: Vec<LakeColumn>,
    /// Record key columns (source names), in key order.
    pub key: Vec<String>,
}

/// What absorbing a new source shape changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evolution {
    pub added: Vec<String>,
    pub dropped: Vec<String>,
    /// Columns whose type was widened: every file group must be rewritten.
    pub widened: Vec<String>,
    /// Renamed columns, `(field in stored files, new field)`: every file
    /// group is rewritten with the values under the new name.
    pub renamed: Vec<(String, String)>,
    /// Fields of dropped columns added back: their stored values are from
    /// before the drop, and the source holds NULL there now; every file
    /// group is rewritten with them NULL.
    pub reset: Vec<String>,
}

impl Evolution {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.dropped.is_empty()
            && self.widened.is_empty()
            && self.renamed.is_empty()
            && self.reset.is_empty()
    }
}

/// Whether values of `from` always fit `to` exactly.
fn widens(from: &ColumnType, to: &ColumnType) -> bool {
    use ColumnType as T;
    match (from, to) {
        (a, b) if a == b => true,
        (
            T::Int {
                bits: a,
                signed: sa,
            },
            T::Int {
                bits: b,
                signed: sb,
            },
        ) => (sa == sb && a <= b) || (!sa && *sb && a < b),
        (
            T::Int {
                bits,
                signed: false,
            },
            T::UInt64,
        ) => *bits <= 32,
        (T::Float32, T::Float64) => true,
        (
            T::Decimal {
                precision: p1,
                scale: s1,
            },
            T::Decimal {
                precision: p2,
                scale: s2,
            },
        ) => s1 == s2 && p2 >= p1,
        (T::Text | T::Json | T::Uuid | T::NumericText, T::Text) => true,
        _ => false,
    }
}

impl LakeSchema {
    /// The lake schema of a table seen for the first time.
    pub fn from_table(table: &TableSchema) -> Result<LakeSchema, String> {
        let schema = LakeSchema {
            columns: table
                .columns
                .iter()
                .map(|c| LakeColumn::new(&c.name, &c.ty, &c.source_type))
                .collect(),
            key: table.key_columns().map(|c| c.name.clone()).collect(),
        };
        schema.check_fields()?;
        Ok(schema)
    }

    /// Two source columns must not share a lake field name.
    fn check_fields(&self) -> Result<(), String> {
        for (i, a) in self.columns.iter().enumerate() {
            if let Some(b) = self.columns.iter().skip(i + 1).find(|b| b.field == a.field) {
                return Err(format!(
                    "columns `{}` and `{}` both become the lake column `{}`; rename one or exclude it",
                    a.name, b.name, a.field
                ));
            }
        }
        Ok(())
    }

    /// The lake field names of the key columns.
    pub fn key_fields(&self) -> Vec<String> {
        self.key
            .iter()
            .map(|k| {
                self.columns
                    .iter()
                    .find(|c| &c.name == k)
                    .map_or_else(|| avro_name(k), |c| c.field.clone())
            })
            .collect()
    }

    /// Absorbs a new source shape, or says why it cannot.
    pub fn absorb(&mut self, table: &TableSchema) -> Result<Evolution, String> {
        let key: Vec<String> = table.key_columns().map(|c| c.name.clone()).collect();
        if key != self.key {
            return Err(format!(
                "the record key changed from ({}) to ({}); a lake table keeps its key: re-snapshot into a new table",
                self.key.join(", "),
                key.join(", ")
            ));
        }
        let mut evolution = Evolution::default();
        let mut next = self.clone();
        for (old, new) in self.renames_in(table) {
            // A dropped column of the new name goes: the renamed one takes
            // its place (its old values stay in the files, unread).
            next.columns.retain(|c| !(c.dropped && c.name == new));
            if let Some(column) = next.columns.iter_mut().find(|c| c.name == old) {
                let field = avro_name(&new);
                evolution
                    .renamed
                    .push((column.field.clone(), field.clone()));
                column
                    .aliases
                    .push(std::mem::replace(&mut column.name, new));
                column.field = field;
            }
        }
        for column in &table.columns {
            match next.columns.iter_mut().find(|c| c.name == column.name) {
                None => {
                    next.columns.push(LakeColumn::new(
                        &column.name,
                        &column.ty,
                        &column.source_type,
                    ));
                    evolution.added.push(column.name.clone());
                }
                Some(existing) => {
                    let old = existing.ty().ok_or_else(|| {
                        format!("column `{}` has an unknown stored type", existing.name)
                    })?;
                    if old != column.ty {
                        if !widens(&old, &column.ty) {
                            return Err(format!(
                                "column `{}` changed from {} ({}) to {} ({}), which the lake table cannot absorb without loss",
                                column.name,
                                existing.source_type,
                                old,
                                column.source_type,
                                column.ty
                            ));
                        }
                        evolution.widened.push(column.name.clone());
                        existing.ty_name = column.ty.name();
                    }
                    existing.source_type = column.source_type.clone();
                    if existing.dropped {
                        existing.dropped = false;
                        evolution.added.push(column.name.clone());
                        evolution.reset.push(existing.field.clone());
                    }
                }
            }
        }
        for existing in next.columns.iter_mut() {
            if !existing.dropped && !table.columns.iter().any(|c| c.name == existing.name) {
                existing.dropped = true;
                evolution.dropped.push(existing.name.clone());
            }
        }
        next.check_fields()?;
        *self = next;
        Ok(evolution)
    }

    /// The renames in `table` ([`renamed_columns`]), as `(old, new)`
    /// source names: between the live columns and the table's (a dropped
    /// column's name counts as new: ADD b, DROP a, RENAME b TO a is how a
    /// column's type is often changed).
    fn renames_in(&self, table: &TableSchema) -> Vec<(String, String)> {
        let live: Vec<(&str, ColumnType)> = self
            .columns
            .iter()
            .filter(|c| !c.dropped)
            .filter_map(|c| Some((c.name.as_str(), c.ty()?)))
            .collect();
        let old: Vec<(&str, &ColumnType)> = live.iter().map(|(n, t)| (*n, t)).collect();
        let new: Vec<(&str, &ColumnType)> = table
            .columns
            .iter()
            .map(|c| (c.name.as_str(), &c.ty))
            .collect();
        renamed_columns(&old, &new)
            .into_iter()
            .filter_map(|(o, n)| Some((old.get(o)?.0.to_string(), new.get(n)?.0.to_string())))
            .collect()
    }

    /// The positions of a source row's columns in this lake schema.
    pub fn mapping(&self, table: &TableSchema) -> Vec<Option<usize>> {
        self.columns
            .iter()
            .map(|lc| self.source_index(lc, table))
            .collect()
    }

    /// Where a row of `shape` holds `column` (one of this schema's).
    ///
    /// Under an earlier name when the shape has one that no other column
    /// has taken since: the shape is from before the rename, and its column
    /// of the current name, if any, was another one (ADD b, DROP a, RENAME
    /// b TO a). Otherwise under its own name, unless the shape is from
    /// before another column was renamed away from it; else any earlier
    /// name.
    pub fn source_index(&self, column: &LakeColumn, shape: &TableSchema) -> Option<usize> {
        let taken = |name: &str| self.columns.iter().any(|c| !c.dropped && c.name == name);
        column
            .aliases
            .iter()
            .rev()
            .filter(|alias| !taken(alias))
            .find_map(|alias| shape.column_index(alias))
            .or_else(|| {
                // Not when the shape is from before another column was
                // renamed away from this name (RENAME a TO b, ADD a): its
                // column of this name is that other column's.
                let earlier = self.columns.iter().any(|other| {
                    other.name != column.name
                        && other.aliases.contains(&column.name)
                        && shape.column_index(&other.name).is_none()
                });
                shape.column_index(&column.name).filter(|_| !earlier)
            })
            .or_else(|| {
                column
                    .aliases
                    .iter()
                    .rev()
                    .find_map(|alias| shape.column_index(alias))
            })
    }
}

/// The Arrow type a column has in base files.
pub fn arrow_type(ty: &ColumnType) -> DataType {
    match ty {
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Int {
            bits: 8,
            signed: true,
        } => DataType::Int8,
        ColumnType::Int {
            bits: 16,
            signed: true,
        } => DataType::Int16,
        ColumnType::Int {
            bits: 32,
            signed: true,
        } => DataType::Int32,
        ColumnType::Int {
            bits: 8 | 16,
            signed: false,
        } => DataType::Int32,
        ColumnType::Int { .. } => DataType::Int64,
        ColumnType::UInt64 => DataType::Decimal128(20, 0),
        ColumnType::Float32 => DataType::Float32,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Decimal { precision, scale } if *precision <= 38 => {
            DataType::Decimal128(*precision as u8, *scale as i8)
        }
        ColumnType::Decimal { .. }
        | ColumnType::NumericText
        | ColumnType::Text
        | ColumnType::Json
        | ColumnType::Uuid
        | ColumnType::Time => DataType::Utf8,
        ColumnType::Bytes => DataType::Binary,
        ColumnType::Date => DataType::Date32,
        ColumnType::DurationMicros => DataType::Int64,
        // Local date-times carry their wall-clock digits in a UTC-adjusted
        // timestamp: hudi-rs cannot read `local-timestamp-micros` schemas,
        // and no value is ever shifted.
        ColumnType::Timestamp | ColumnType::TimestampTz => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        ColumnType::Interval => DataType::Struct(interval_fields()),
        ColumnType::Array { element, dims } => {
            let mut inner = arrow_type(element);
            for _ in 0..*dims {
                inner = DataType::List(Arc::new(Field::new("element", inner, true)));
            }
            inner
        }
    }
}

pub fn interval_fields() -> Fields {
    Fields::from(vec![
        Field::new("months", DataType::Int32, true),
        Field::new("days", DataType::Int32, true),
        Field::new("micros", DataType::Int64, true),
    ])
}

/// Everything about one lake table that does not change between commits.
#[derive(Debug, Clone)]
pub struct TableLayout {
    /// `hoodie.table.name`, also the directory name.
    pub name: String,
    pub database: String,
    pub partition: Option<PartitionSpec>,
}

impl TableLayout {
    /// The Arrow schema of base files for `schema`.
    pub fn arrow_schema(&self, schema: &LakeSchema) -> Result<Schema, String> {
        let mut fields: Vec<Field> = META_COLUMNS
            .iter()
            .map(|name| Field::new(*name, DataType::Utf8, true))
            .collect();
        for c in &schema.columns {
            let ty = c.ty().ok_or_else(|| {
                format!("column `{}` has an unknown type `{}`", c.name, c.ty_name)
            })?;
            if META_COLUMNS.contains(&c.field.as_str())
                || c.field == POSITION
                || self
                    .partition
                    .as_ref()
                    .is_some_and(|p| p.field() == c.field)
            {
                return Err(format!(
                    "column `{}` has a name the lake table reserves; exclude or rename it",
                    c.name
                ));
            }
            fields.push(Field::new(&c.field, arrow_type(&ty), true));
        }
        fields.push(Field::new(POSITION, DataType::Utf8, false));
        if let Some(p) = &self.partition {
            if !schema.columns.iter().any(|c| c.name == p.column) {
                return Err(format!(
                    "partition column `{}` is not a column of the table",
                    p.column
                ));
            }
            fields.push(Field::new(p.field(), DataType::Utf8, false));
        }
        Ok(Schema::new(fields))
    }

    /// The Avro schema of the data columns, as `extraMetadata.schema` and
    /// `hoodie.table.create.schema` carry it (meta columns excluded).
    pub fn avro_schema(&self, schema: &LakeSchema) -> Json {
        let mut fields: Vec<Json> = schema
            .columns
            .iter()
            .filter_map(|c| Some((c, c.ty()?)))
            .map(|(c, ty)| json!({"name": c.field, "type": ["null", avro_type(&ty, &mut 0)], "default": null}))
            .collect();
        fields.push(json!({"name": POSITION, "type": "string"}));
        if let Some(p) = &self.partition {
            fields.push(json!({"name": p.field(), "type": "string"}));
        }
        json!({
            "type": "record",
            "name": format!("{}_record", self.name),
            "namespace": format!("hoodie.{}", self.name),
            "fields": fields,
        })
    }

    /// The relative directory of a partition value (`created_at_day=2024-01-01`),
    /// or `""` for an unpartitioned table.
    pub fn partition_path(&self, value: Option<&str>) -> String {
        match (&self.partition, value) {
            (Some(p), Some(v)) => format!("{}={v}", p.field()),
            _ => String::new(),
        }
    }
}

fn avro_type(ty: &ColumnType, records: &mut usize) -> Json {
    match ty {
        ColumnType::Boolean => json!("boolean"),
        ColumnType::Int { bits: 8 | 16, .. }
        | ColumnType::Int {
            bits: 32,
            signed: true,
        } => json!("int"),
        ColumnType::Int { .. } | ColumnType::DurationMicros => json!("long"),
        ColumnType::UInt64 => {
            json!({"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 0})
        }
        ColumnType::Float32 => json!("float"),
        ColumnType::Float64 => json!("double"),
        ColumnType::Decimal { precision, scale } if *precision <= 38 => {
            json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale})
        }
        ColumnType::Decimal { .. }
        | ColumnType::NumericText
        | ColumnType::Text
        | ColumnType::Json
        | ColumnType::Uuid
        | ColumnType::Time => json!("string"),
        ColumnType::Bytes => json!("bytes"),
        ColumnType::Date => json!({"type": "int", "logicalType": "date"}),
        ColumnType::Timestamp | ColumnType::TimestampTz => {
            json!({"type": "long", "logicalType": "timestamp-micros"})
        }
        ColumnType::Interval => {
            *records += 1;
            json!({
                "type": "record",
                "name": format!("interval{}", records),
                "fields": [
                    {"name": "months", "type": ["null", "int"], "default": null},
                    {"name": "days", "type": ["null", "int"], "default": null},
                    {"name": "micros", "type": ["null", "long"], "default": null}
                ]
            })
        }
        ColumnType::Array { element, dims } => {
            let mut inner = avro_type(element, records);
            for _ in 0..*dims {
                inner = json!({"type": "array", "items": ["null", inner]});
            }
            inner
        }
    }
}

/// The text of one record-key value, as Hudi's key generators print values.
fn key_value_text(datum: &Datum, ty: &ColumnType) -> String {
    match datum {
        Datum::Null | Datum::Unchanged => "__null__".into(),
        Datum::Bool(b) => b.to_string(),
        Datum::Int(i) => i.to_string(),
        Datum::UInt64(u) => u.to_string(),
        Datum::Float32(f) => f.to_string(),
        Datum::Float64(f) => f.to_string(),
        Datum::Decimal(d) => match ty {
            ColumnType::Decimal { scale, .. } => d.to_string_scaled(*scale),
            _ => d.to_string_scaled(0),
        },
        Datum::Text(s) if s.is_empty() => "__empty__".into(),
        Datum::Text(s) => s.clone(),
        Datum::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Datum::Date(d) => date_text(*d),
        Datum::Micros(m) => match ty {
            ColumnType::Time => time_text(*m),
            _ => m.to_string(),
        },
        Datum::Interval {
            months,
            days,
            micros,
        } => format!("{months}m{days}d{micros}us"),
        Datum::Array(items) => format!("{items:?}"),
    }
}

/// `_hoodie_record_key` of a row given as its key values (in key order):
/// the raw value for one key column (SimpleKeyGenerator), `col:value,...`
/// for several (ComplexKeyGenerator).
pub fn record_key(key_columns: &[(&str, &ColumnType)], key: &Row) -> String {
    if let ([(_, ty)], [datum]) = (key_columns, key.0.as_slice()) {
        return key_value_text(datum, ty);
    }
    key_columns
        .iter()
        .zip(&key.0)
        .map(|((name, ty), d)| format!("{name}:{}", key_value_text(d, ty)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The record key of an event's row under `table`'s key columns.
pub fn event_record_key(table: &TableSchema, key: &Row) -> String {
    // One key column: its value alone, with no names to build (every
    // change of a sink goes through here).
    if let ([index], [datum]) = (table.key.as_slice(), key.0.as_slice())
        && let Some(column) = table.columns.get(*index)
    {
        return key_value_text(datum, &column.ty);
    }
    let fields: Vec<(String, &ColumnType)> = table
        .key_columns()
        .map(|c| (avro_name(&c.name), &c.ty))
        .collect();
    let refs: Vec<(&str, &ColumnType)> = fields.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    record_key(&refs, key)
}

/// `_tidewater_position`: sortable text of a source position.
///
/// Each of the two numbers (commit, ordinal) is written as its count of hex
/// digits in one character (`1`–`9`, then `a`–`g` for 10–16) followed by
/// those digits, without leading zeros; a `-` separates them
/// (`Position::new(0x16b3748, 2)` → `716b3748-12`). Byte order is then
/// numeric order: a longer number has a greater count character, and two
/// numbers of the same length compare digit by digit. The text is 5 to 35
/// bytes, typically 10–20, where a fixed-width form takes 33: every base
/// file stores one per row, and every rewrite compresses and decompresses
/// them again.
pub fn position_text(position: crate::event::change::Position) -> String {
    let mut text = String::with_capacity(20);
    let _ = write_position(&mut text, position);
    text
}

/// Writes [`position_text`] to `out`.
pub fn write_position(
    out: &mut impl std::fmt::Write,
    position: crate::event::change::Position,
) -> std::fmt::Result {
    write_counted_hex(out, position.commit)?;
    out.write_char('-')?;
    write_counted_hex(out, position.ordinal)
}

/// Hex digits of `n` (at least one), preceded by their count in one
/// sortable character.
fn write_counted_hex(out: &mut impl std::fmt::Write, n: u64) -> std::fmt::Result {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    let count = char::from_digit(digits, 17).unwrap_or('g');
    write!(out, "{count}{n:x}")
}

/// Parses [`position_text`], and the fixed-width form earlier versions
/// wrote (`{commit:016x}.{ordinal:016x}`, always with a `.`).
pub fn parse_position(text: &str) -> Option<crate::event::change::Position> {
    use crate::event::change::Position;
    // The older form: two 16-digit halves around a dot.
    if text.as_bytes().get(16) == Some(&b'.') {
        let (c, o) = (text.get(..16)?, text.get(17..)?);
        let fixed = |h: &str| (h.len() == 16).then(|| u64::from_str_radix(h, 16).ok())?;
        return Some(Position::new(fixed(c)?, fixed(o)?));
    }
    let (c, o) = text.split_once('-')?;
    Some(Position::new(parse_counted_hex(c)?, parse_counted_hex(o)?))
}

fn parse_counted_hex(text: &str) -> Option<u64> {
    let mut chars = text.chars();
    let count = chars.next()?.to_digit(17)?;
    let digits = chars.as_str();
    let canonical = digits.len() == count as usize
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && (count == 1 || !digits.starts_with('0'));
    canonical
        .then(|| u64::from_str_radix(digits, 16).ok())
        .flatten()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::schema::Column;
    use crate::event::table_id::TableId;

    /// A table `public.t` of database `db`, keyed by its first column.
    pub(crate) fn table(columns: Vec<Column>) -> TableSchema {
        TableSchema {
            id: TableId::new("public", "t"),
            database: "db".into(),
            columns,
            key: vec![0],
        }
    }

    pub(crate) fn int(bits: u8) -> ColumnType {
        ColumnType::Int { bits, signed: true }
    }

    #[test]
    fn evolution_adds_drops_widens_and_refuses() {
        let v1 = table(vec![
            Column::new("id", int(64), false),
            Column::new("n", int(16), true),
            Column::new("s", ColumnType::Text, true),
        ]);
        let mut lake = LakeSchema::from_table(&v1).unwrap();
        let v2 = table(vec![
            Column::new("id", int(64), false),
            Column::new("n", int(32), true),
            Column::new("x", ColumnType::Bytes, true),
        ]);
        let e = lake.absorb(&v2).unwrap();
        assert_eq!(e.added, vec!["x"]);
        assert_eq!(e.dropped, vec!["s"]);
        assert_eq!(e.widened, vec!["n"]);
        let names: Vec<&str> = lake.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["id", "n", "s", "x"], "dropped columns stay");
        let v3 = table(vec![
            Column::new("id", int(64), false),
            Column::new("n", int(8), true),
            Column::new("x", ColumnType::Bytes, true),
        ]);
        let err = lake.absorb(&v3).unwrap_err();
        assert!(err.contains("column `n` changed from int32"), "{err}");
        let mut v4 = v2.clone();
        v4.key = vec![1];
        assert!(lake.absorb(&v4).unwrap_err().contains("record key changed"));
    }

    #[test]
    fn a_rename_keeps_its_column_and_a_column_added_back_starts_empty() {
        let id = || Column::new("id", int(64), false);
        let x = || Column::new("x", int(32), true);
        let text = |name: &str| Column::new(name, ColumnType::Text, true);
        let mut lake = LakeSchema::from_table(&table(vec![id(), text("a"), x()])).unwrap();
        let renamed = table(vec![id(), text("b"), x()]);
        let e = lake.absorb(&renamed).unwrap();
        assert_eq!(e.renamed, vec![("a".to_string(), "b".to_string())]);
        assert!(e.added.is_empty() && e.dropped.is_empty(), "{e:?}");
        let names =
            |l: &LakeSchema| -> Vec<String> { l.columns.iter().map(|c| c.name.clone()).collect() };
        assert_eq!(names(&lake), vec!["id", "b", "x"]);
        // Not renames: the new column elsewhere, or of another type.
        for other in [
            table(vec![id(), x(), text("c")]),
            table(vec![id(), Column::new("c", int(64), true), x()]),
        ] {
            let e = lake.clone().absorb(&other).unwrap();
            assert!(e.renamed.is_empty(), "{e:?}");
            assert!(e.dropped.contains(&"b".to_string()), "{e:?}");
        }
        // A rename seen together with a drop and an add (DDLs with no row
        // change in between reach the lake as one change of shape).
        let e = lake
            .clone()
            .absorb(&table(vec![id(), text("c"), text("d")]))
            .unwrap();
        assert_eq!(e.renamed, vec![("b".to_string(), "c".to_string())]);
        assert_eq!(
            (e.dropped, e.added),
            (vec!["x".to_string()], vec!["d".to_string()])
        );
        // ADD b, DROP a, RENAME b TO a: a rename onto a dropped column.
        let mut swap = LakeSchema::from_table(&table(vec![id(), text("a"), x()])).unwrap();
        swap.absorb(&table(vec![id(), text("a"), x(), text("b")]))
            .unwrap();
        swap.absorb(&table(vec![id(), x(), text("b")])).unwrap();
        let e = swap.absorb(&table(vec![id(), x(), text("a")])).unwrap();
        assert_eq!(e.renamed, vec![("b".to_string(), "a".to_string())]);
        assert!(e.reset.is_empty() && e.added.is_empty(), "{e:?}");
        assert_eq!(
            names(&swap),
            vec!["id", "x", "a"],
            "the dropped `a` gave way"
        );
        assert_eq!(swap.columns[2].aliases, vec!["b"]);
        // Rows of the shapes before the rename: `a` is read from `b`, not
        // from the old `a`.
        let a = &swap.columns[2];
        let before = table(vec![id(), text("a"), x(), text("b")]);
        assert_eq!(swap.source_index(a, &before), Some(3));
        assert_eq!(
            swap.source_index(a, &table(vec![id(), x(), text("b")])),
            Some(2)
        );
        assert_eq!(
            swap.source_index(a, &table(vec![id(), x(), text("a")])),
            Some(2)
        );
        // Renamed a -> b, then a new `a`: each reads its own.
        let mut reuse = lake.clone();
        reuse
            .absorb(&table(vec![id(), text("b"), x(), text("a")]))
            .unwrap();
        let (b_col, new_a) = (&reuse.columns[1], &reuse.columns[3]);
        assert_eq!((b_col.name.as_str(), new_a.name.as_str()), ("b", "a"));
        let now = table(vec![id(), text("b"), x(), text("a")]);
        assert_eq!(
            reuse.mapping(&now),
            vec![Some(0), Some(1), Some(2), Some(3)]
        );
        let old = table(vec![id(), text("a"), x()]);
        assert_eq!(reuse.source_index(b_col, &old), Some(1), "the old name");
        assert_eq!(
            reuse.source_index(new_a, &old),
            None,
            "the old shape's `a` is `b`'s, not the new `a`'s"
        );
        // Dropped, then added back: what files hold of it is stale.
        let e = lake.absorb(&table(vec![id(), x()])).unwrap();
        assert_eq!(e.dropped, vec!["b"]);
        let e = lake.absorb(&renamed).unwrap();
        assert_eq!(
            (e.added, e.reset),
            (vec!["b".to_string()], vec!["b".to_string()])
        );
        assert!(e.renamed.is_empty());
    }

    #[test]
    fn partition_values_and_keys() {
        let day = PartitionSpec {
            column: "created_at".into(),
            granularity: Granularity::Day,
        };
        assert_eq!(day.field(), "created_at_day");
        assert_eq!(
            day.value(&Datum::Micros(1_704_067_200_000_000 + 5))
                .unwrap(),
            "2024-01-01"
        );
        assert_eq!(day.value(&Datum::Micros(-1)).unwrap(), "1969-12-31");
        assert_eq!(day.value(&Datum::Null).unwrap(), DEFAULT_PARTITION);
        let month = PartitionSpec {
            column: "d".into(),
            granularity: Granularity::Month,
        };
        assert_eq!(month.value(&Datum::Date(19_723)).unwrap(), "2024-01");
        assert!(day.value(&Datum::Text("x".into())).is_err());
        let one = [("id", &int(64))];
        assert_eq!(record_key(&one, &Row(vec![Datum::Int(42)])), "42");
        let t = ColumnType::Text;
        let two = [("a", &int(64)), ("b", &t)];
        assert_eq!(
            record_key(&two, &Row(vec![Datum::Int(1), Datum::Text("x".into())])),
            "a:1,b:x"
        );
        let mut t = table(vec![
            Column::new("id", int(64), false),
            Column::new("name x", ColumnType::Text, false),
        ]);
        assert_eq!(event_record_key(&t, &Row(vec![Datum::Int(-5)])), "-5");
        t.key = vec![1, 0];
        assert_eq!(
            event_record_key(&t, &Row(vec![Datum::Text("y".into()), Datum::Int(2)])),
            "name_x:y,id:2"
        );
    }

    #[test]
    fn position_text_round_trips_and_sorts_as_the_positions() {
        use crate::event::change::Position;
        assert_eq!(position_text(Position::new(0x16b3748, 2)), "716b3748-12");
        assert_eq!(position_text(Position::new(0, 0)), "10-10");
        assert_eq!(
            position_text(Position::new(u64::MAX, 1 << 60)),
            "gffffffffffffffff-g1000000000000000"
        );
        let mut numbers = vec![0, 1, 9, 15, 16, 17, 255, 256, 4095, 4096, 1 << 32];
        numbers.extend([(1 << 32) - 1, u64::MAX / 3, u64::MAX - 1, u64::MAX]);
        let mut positions: Vec<Position> = numbers
            .iter()
            .flat_map(|&c| numbers.iter().map(move |&o| Position::new(c, o)))
            .collect();
        for p in &positions {
            assert_eq!(parse_position(&position_text(*p)), Some(*p), "{p:?}");
        }
        // Sorted by text is sorted by position.
        positions.sort_by_key(|p| position_text(*p));
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
        // What earlier versions wrote still reads.
        assert_eq!(
            parse_position("0000000000001234.0000000000000007"),
            Some(Position::new(0x1234, 7))
        );
        for bad in [
            "",
            "-",
            "1-1",
            "10-",
            "12-1x",
            "201-10",
            "10-10-10",
            "h0-10",
            "10.10",
            "11-2a",
            "11-1F",
            "0000000000001234.000000000000007",
        ] {
            assert_eq!(parse_position(bad), None, "{bad}");
        }
    }
}
