//! Rows to Arrow and back: building the record batches of base files from
//! typed rows, reading single values out of stored batches (to keep an
//! unchanged TOAST value), and projecting an older file's batch onto the
//! current table schema (added columns as NULL, widened types cast).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int8Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array,
    Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray, StringViewArray, StructArray, TimestampMicrosecondArray, new_null_array,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::layout::{Evolution, arrow_type, interval_fields};
use crate::event::datum::Datum;
use crate::event::decimal::Decimal;
use crate::event::time::time_text;
use crate::event::types::ColumnType;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column `{column}`: {message}")]
pub struct BatchError {
    pub column: String,
    pub message: String,
}

fn err(column: &str, message: impl Into<String>) -> BatchError {
    BatchError {
        column: column.to_string(),
        message: message.into(),
    }
}

/// Whether a column of type `ty` holds text ([`text_array`]).
pub fn is_text(ty: &ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::NumericText | ColumnType::Text | ColumnType::Json | ColumnType::Uuid
    )
}

/// A text column's array from borrowed text: each value is its text, or the
/// value that stands there instead (NULL, unchanged, or a mismatch).
pub fn text_array(
    column: &str,
    ty: &ColumnType,
    values: &[Result<&str, Datum>],
) -> Result<ArrayRef, BatchError> {
    let bytes = values
        .iter()
        .map(|v| v.as_ref().map_or(0, |s| s.len()))
        .sum();
    let mut b = StringBuilder::with_capacity(values.len(), bytes);
    for v in values {
        match v {
            Ok(s) => b.append_value(s),
            Err(Datum::Null | Datum::Unchanged) => b.append_null(),
            Err(other) => return Err(err(column, format!("a {other:?} value in a {ty} column"))),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// The Arrow array of one column's values.
pub fn array_of(column: &str, ty: &ColumnType, values: &[&Datum]) -> Result<ArrayRef, BatchError> {
    let null = |d: &Datum| matches!(d, Datum::Null | Datum::Unchanged);
    let mismatch = |d: &Datum| err(column, format!("a {d:?} value in a {ty} column"));
    macro_rules! build {
        ($builder:expr, $pat:pat => $val:expr) => {{
            let mut b = $builder;
            for d in values {
                match d {
                    d if null(d) => b.append_null(),
                    $pat => b.append_value($val),
                    other => return Err(mismatch(other)),
                }
            }
            Ok(Arc::new(b.finish()) as ArrayRef)
        }};
    }
    match ty {
        ColumnType::Boolean => {
            build!(BooleanBuilder::with_capacity(values.len()), Datum::Bool(v) => *v)
        }
        ColumnType::Int {
            bits: 8,
            signed: true,
        } => {
            build!(Int8Builder::with_capacity(values.len()), Datum::Int(v) => i8::try_from(*v).map_err(|_| err(column, format!("{v} overflows int8")))?)
        }
        ColumnType::Int {
            bits: 16,
            signed: true,
        } => {
            build!(Int16Builder::with_capacity(values.len()), Datum::Int(v) => i16::try_from(*v).map_err(|_| err(column, format!("{v} overflows int16")))?)
        }
        ColumnType::Int {
            bits: 32,
            signed: true,
        }
        | ColumnType::Int {
            bits: 8 | 16,
            signed: false,
        } => {
            build!(Int32Builder::with_capacity(values.len()), Datum::Int(v) => i32::try_from(*v).map_err(|_| err(column, format!("{v} overflows int32")))?)
        }
        ColumnType::Int { .. } | ColumnType::DurationMicros => {
            build!(Int64Builder::with_capacity(values.len()), Datum::Int(v) | Datum::Micros(v) => *v)
        }
        ColumnType::UInt64 => build!(
            Decimal128Builder::with_capacity(values.len()).with_precision_and_scale(20, 0).map_err(|e| err(column, e.to_string()))?,
            Datum::UInt64(v) => i128::from(*v)
        ),
        ColumnType::Float32 => {
            build!(Float32Builder::with_capacity(values.len()), Datum::Float32(v) => *v)
        }
        ColumnType::Float64 => {
            build!(Float64Builder::with_capacity(values.len()), Datum::Float64(v) => *v)
        }
        ColumnType::Decimal { precision, scale } if *precision <= 38 => build!(
            Decimal128Builder::with_capacity(values.len())
                .with_precision_and_scale(*precision as u8, *scale as i8)
                .map_err(|e| err(column, e.to_string()))?,
            Datum::Decimal(d) => d.to_i128().ok_or_else(|| err(column, "a decimal beyond 38 digits"))?
        ),
        ColumnType::Decimal { scale, .. } => {
            build!(StringBuilder::with_capacity(values.len(), values.len() * 16), Datum::Decimal(d) => d.to_string_scaled(*scale))
        }
        ColumnType::NumericText | ColumnType::Text | ColumnType::Json | ColumnType::Uuid => {
            let texts: Vec<Result<&str, Datum>> = values
                .iter()
                .map(|d| match d {
                    Datum::Text(s) => Ok(s.as_str()),
                    other => Err((*other).clone()),
                })
                .collect();
            text_array(column, ty, &texts)
        }
        ColumnType::Time => {
            build!(StringBuilder::with_capacity(values.len(), values.len() * 15), Datum::Micros(m) => time_text(*m))
        }
        ColumnType::Bytes => {
            build!(BinaryBuilder::with_capacity(values.len(), values.len() * 16), Datum::Bytes(b) => b)
        }
        ColumnType::Date => {
            build!(Date32Builder::with_capacity(values.len()), Datum::Date(d) => *d)
        }
        ColumnType::Timestamp | ColumnType::TimestampTz => {
            let mut b =
                TimestampMicrosecondBuilder::with_capacity(values.len()).with_timezone("UTC");
            for d in values {
                match d {
                    d if null(d) => b.append_null(),
                    Datum::Micros(m) => b.append_value(*m),
                    other => return Err(mismatch(other)),
                }
            }
            Ok(Arc::new(b.finish()))
        }
        ColumnType::Interval => {
            let mut months = Int32Builder::with_capacity(values.len());
            let mut days = Int32Builder::with_capacity(values.len());
            let mut micros = Int64Builder::with_capacity(values.len());
            let mut valid = Vec::with_capacity(values.len());
            for d in values {
                match d {
                    d if null(d) => {
                        months.append_null();
                        days.append_null();
                        micros.append_null();
                        valid.push(false);
                    }
                    Datum::Interval {
                        months: m,
                        days: dd,
                        micros: us,
                    } => {
                        months.append_value(*m);
                        days.append_value(*dd);
                        micros.append_value(*us);
                        valid.push(true);
                    }
                    other => return Err(mismatch(other)),
                }
            }
            let children: Vec<ArrayRef> = vec![
                Arc::new(months.finish()),
                Arc::new(days.finish()),
                Arc::new(micros.finish()),
            ];
            let s =
                StructArray::try_new(interval_fields(), children, Some(NullBuffer::from(valid)))
                    .map_err(|e| err(column, e.to_string()))?;
            Ok(Arc::new(s))
        }
        ColumnType::Array { element, dims } => {
            let inner = if *dims > 1 {
                ColumnType::Array {
                    element: element.clone(),
                    dims: dims - 1,
                }
            } else {
                (**element).clone()
            };
            let mut offsets = Vec::with_capacity(values.len() + 1);
            offsets.push(0i32);
            let mut items: Vec<&Datum> = Vec::new();
            let mut valid = Vec::with_capacity(values.len());
            for d in values {
                match d {
                    d if null(d) => valid.push(false),
                    Datum::Array(xs) => {
                        items.extend(xs.iter());
                        valid.push(true);
                    }
                    other => return Err(mismatch(other)),
                }
                offsets.push(
                    i32::try_from(items.len())
                        .map_err(|_| err(column, "more than 2^31 array elements in a batch"))?,
                );
            }
            let child = array_of(column, &inner, &items)?;
            let field = Arc::new(Field::new("element", arrow_type(&inner), true));
            let list = ListArray::try_new(
                field,
                OffsetBuffer::new(offsets.into()),
                child,
                Some(NullBuffer::from(valid)),
            )
            .map_err(|e| err(column, e.to_string()))?;
            Ok(Arc::new(list))
        }
    }
}

/// A string column with one value repeated.
pub fn repeated_string(value: &str, len: usize) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
        value, len,
    )))
}

/// A string view column with one value repeated: one copy of the value,
/// sixteen bytes a row.
pub fn repeated_view(value: &str, len: usize) -> ArrayRef {
    let mut builder = arrow_array::builder::StringViewBuilder::with_capacity(len);
    if len > 0 {
        let block = builder.append_block(arrow_buffer::Buffer::from(value.as_bytes()));
        let length = u32::try_from(value.len()).unwrap_or(u32::MAX);
        for _ in 0..len {
            // Cannot fail: the block holds exactly this valid UTF-8 value.
            if builder.try_append_view(block, 0, length).is_err() {
                builder.append_value(value);
            }
        }
    }
    Arc::new(builder.finish())
}

/// `schema` with its top-level strings and binaries as views: what stored
/// files are read as for a rewrite, so carried values are never copied.
pub fn view_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let ty = match f.data_type() {
                DataType::Utf8 => DataType::Utf8View,
                DataType::Binary => DataType::BinaryView,
                other => other.clone(),
            };
            f.as_ref().clone().with_data_type(ty)
        })
        .collect();
    Arc::new(Schema::new(fields).with_metadata(schema.metadata().clone()))
}

/// Read access to a string column stored either way (offsets or views).
#[derive(Clone, Copy)]
pub enum Strings<'a> {
    Offsets(&'a StringArray),
    Views(&'a StringViewArray),
}

impl<'a> Strings<'a> {
    pub fn of(array: &'a dyn Array) -> Option<Self> {
        let any = array.as_any();
        any.downcast_ref::<StringArray>()
            .map(Strings::Offsets)
            .or_else(|| any.downcast_ref::<StringViewArray>().map(Strings::Views))
    }

    pub fn len(&self) -> usize {
        match self {
            Strings::Offsets(a) => a.len(),
            Strings::Views(a) => a.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn null_count(&self) -> usize {
        match self {
            Strings::Offsets(a) => a.null_count(),
            Strings::Views(a) => a.null_count(),
        }
    }

    pub fn is_valid(&self, index: usize) -> bool {
        match self {
            Strings::Offsets(a) => a.is_valid(index),
            Strings::Views(a) => a.is_valid(index),
        }
    }

    /// The value at `index` (`""` for a null; the caller checks validity).
    pub fn value(&self, index: usize) -> &'a str {
        if index >= self.len() {
            return "";
        }
        match self {
            Strings::Offsets(a) => a.value(index),
            Strings::Views(a) => a.value(index),
        }
    }

    /// The value at `index` as an inline view ([`inline_view`]) when it
    /// has at most 12 bytes (a view array's own view, no string read).
    pub fn inline(&self, index: usize) -> Option<u128> {
        match self {
            Strings::Offsets(a) => (index < a.len())
                .then(|| a.value(index))
                .and_then(inline_view),
            // A valid view array holds zeros after a short string's bytes.
            Strings::Views(a) => a.views().get(index).copied().filter(|v| *v as u32 <= 12),
        }
    }

    /// The non-null values, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let this = *self;
        (0..this.len())
            .filter(move |i| this.is_valid(*i))
            .map(move |i| this.value(i))
    }
}

/// A string of at most 12 bytes as an Arrow string view holds it inline:
/// its length (4 bytes, little-endian), then its bytes, zeros after them.
/// Two such strings are equal when their views are.
pub fn inline_view(s: &str) -> Option<u128> {
    let len = u32::try_from(s.len()).ok().filter(|n| *n <= 12)?;
    let mut view = [0u8; 16];
    let (head, tail) = view.split_at_mut(4);
    head.copy_from_slice(&len.to_le_bytes());
    tail.get_mut(..s.len())?.copy_from_slice(s.as_bytes());
    Some(u128::from_le_bytes(view))
}

/// The bytes at `index` of a binary column stored either way.
fn bytes_at(array: &dyn Array, index: usize) -> Option<&[u8]> {
    let any = array.as_any();
    match any.downcast_ref::<BinaryArray>() {
        Some(a) => Some(a.value(index)),
        None => Some(
            any.downcast_ref::<arrow_array::BinaryViewArray>()?
                .value(index),
        ),
    }
}

/// Reads one value back (an unchanged TOAST value to keep, or a lake row in
/// tests). `None` when the array's type does not match `ty`.
pub fn datum_at(array: &dyn Array, index: usize, ty: &ColumnType) -> Option<Datum> {
    if index >= array.len() {
        return None;
    }
    if array.is_null(index) {
        return Some(Datum::Null);
    }
    let any = array.as_any();
    Some(match ty {
        ColumnType::Boolean => Datum::Bool(any.downcast_ref::<BooleanArray>()?.value(index)),
        ColumnType::Int {
            bits: 8,
            signed: true,
        } => Datum::Int(any.downcast_ref::<Int8Array>()?.value(index).into()),
        ColumnType::Int {
            bits: 16,
            signed: true,
        } => Datum::Int(any.downcast_ref::<Int16Array>()?.value(index).into()),
        ColumnType::Int {
            bits: 32,
            signed: true,
        }
        | ColumnType::Int {
            bits: 8 | 16,
            signed: false,
        } => Datum::Int(any.downcast_ref::<Int32Array>()?.value(index).into()),
        ColumnType::Int { .. } => Datum::Int(any.downcast_ref::<Int64Array>()?.value(index)),
        ColumnType::DurationMicros => Datum::Micros(any.downcast_ref::<Int64Array>()?.value(index)),
        ColumnType::UInt64 => {
            Datum::UInt64(u64::try_from(any.downcast_ref::<Decimal128Array>()?.value(index)).ok()?)
        }
        ColumnType::Float32 => Datum::Float32(any.downcast_ref::<Float32Array>()?.value(index)),
        ColumnType::Float64 => Datum::Float64(any.downcast_ref::<Float64Array>()?.value(index)),
        ColumnType::Decimal { precision, scale } if *precision <= 38 => {
            let _ = scale;
            Datum::Decimal(Decimal::from_i128(
                any.downcast_ref::<Decimal128Array>()?.value(index),
            ))
        }
        ColumnType::Decimal { precision, scale } => {
            let text = Strings::of(array)?.value(index);
            Datum::Decimal(Decimal::parse(text, *precision, *scale).ok()?)
        }
        ColumnType::NumericText | ColumnType::Text | ColumnType::Json | ColumnType::Uuid => {
            Datum::Text(Strings::of(array)?.value(index).to_string())
        }
        ColumnType::Time => Datum::Micros(parse_time(Strings::of(array)?.value(index))?),
        ColumnType::Bytes => Datum::Bytes(bytes_at(array, index)?.to_vec()),
        ColumnType::Date => Datum::Date(any.downcast_ref::<Date32Array>()?.value(index)),
        ColumnType::Timestamp | ColumnType::TimestampTz => Datum::Micros(
            any.downcast_ref::<TimestampMicrosecondArray>()?
                .value(index),
        ),
        ColumnType::Interval => {
            let s = any.downcast_ref::<StructArray>()?;
            let months = s
                .column(0)
                .as_any()
                .downcast_ref::<Int32Array>()?
                .value(index);
            let days = s
                .column(1)
                .as_any()
                .downcast_ref::<Int32Array>()?
                .value(index);
            let micros = s
                .column(2)
                .as_any()
                .downcast_ref::<Int64Array>()?
                .value(index);
            Datum::Interval {
                months,
                days,
                micros,
            }
        }
        ColumnType::Array { element, dims } => {
            let inner = if *dims > 1 {
                ColumnType::Array {
                    element: element.clone(),
                    dims: dims - 1,
                }
            } else {
                (**element).clone()
            };
            let list = any.downcast_ref::<ListArray>()?;
            let values = list.value(index);
            let items: Option<Vec<Datum>> = (0..values.len())
                .map(|i| datum_at(values.as_ref(), i, &inner))
                .collect();
            Datum::Array(items?)
        }
    })
}

/// Parses `HH:MM:SS.ffffff` back to microseconds of the day.
fn parse_time(text: &str) -> Option<i64> {
    let (hms, frac) = text.split_once('.').unwrap_or((text, "0"));
    let mut parts = hms.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s: i64 = parts.next()?.parse().ok()?;
    let f: i64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    Some(((h * 60 + m) * 60 + s) * 1_000_000 + f)
}

/// Projects a stored batch onto `schema`: columns matched by name, missing
/// ones NULL, types that changed cast (only widenings reach here).
pub fn project(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, BatchError> {
    project_restated(batch, schema, &Restate::default())
}

/// What a commit's schema changes mean for the stored slices it rewrites.
#[derive(Debug, Clone, Default)]
pub struct Restate {
    /// A column was widened.
    pub widened: bool,
    /// New field → the field stored files hold it under (renames).
    pub renamed: HashMap<String, String>,
    /// Fields whose stored values are read as NULL (dropped columns added
    /// back: the source holds NULL there now).
    pub reset: HashSet<String>,
}

impl Restate {
    /// Whether every file group must be rewritten in this commit.
    pub fn rewrites_all(&self) -> bool {
        self.widened || !self.renamed.is_empty() || !self.reset.is_empty()
    }

    /// Adds one absorbed shape's changes (in order: a rename of a column
    /// renamed earlier in the commit still reads the stored field).
    pub fn absorb(&mut self, evolution: &Evolution) {
        self.widened |= !evolution.widened.is_empty();
        for (old, new) in &evolution.renamed {
            let stored = self.renamed.remove(old).unwrap_or_else(|| old.clone());
            if self.reset.remove(old) {
                self.reset.insert(new.clone());
            }
            self.renamed.insert(new.clone(), stored);
        }
        self.reset.extend(evolution.reset.iter().cloned());
    }
}

/// [`project`] with renamed fields read under their stored name and reset
/// fields read as NULL.
pub fn project_restated(
    batch: &RecordBatch,
    schema: &SchemaRef,
    restate: &Restate,
) -> Result<RecordBatch, BatchError> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name();
        let stored = match restate.renamed.get(name) {
            _ if restate.reset.contains(name) => None,
            Some(old) => batch.column_by_name(old),
            None => batch.column_by_name(name),
        };
        let column = match stored {
            None => new_null_array(field.data_type(), batch.num_rows()),
            Some(c) if c.data_type() == field.data_type() => c.clone(),
            Some(c) => arrow_cast::cast(c, field.data_type())
                .map_err(|e| err(field.name(), format!("cannot widen: {e}")))?,
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| err("(batch)", e.to_string()))
}

/// Whether a data type's physical layout matches what [`array_of`] builds.
pub fn same_type(a: &DataType, b: &DataType) -> bool {
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::sample::{self, Rng};

    #[test]
    fn every_type_round_trips_through_arrow() {
        let mut rng = Rng::new(99);
        for ty in sample::all_types() {
            let values: Vec<Datum> = (0..50)
                .map(|i| {
                    if i % 7 == 0 {
                        Datum::Null
                    } else {
                        sample::value(&mut rng, &ty)
                    }
                })
                .collect();
            let refs: Vec<&Datum> = values.iter().collect();
            let array = array_of("c", &ty, &refs).unwrap_or_else(|e| panic!("{ty}: {e}"));
            assert_eq!(array.data_type(), &arrow_type(&ty), "{ty}");
            for (i, v) in values.iter().enumerate() {
                let back =
                    datum_at(array.as_ref(), i, &ty).unwrap_or_else(|| panic!("{ty} row {i}"));
                let expected = match (v, &ty) {
                    // Arrow has no unsigned 64-bit decimal; the value is exact.
                    (Datum::Float32(f), _) if f.is_nan() => continue,
                    _ => v.clone(),
                };
                assert_eq!(back, expected, "{ty} row {i}");
            }
        }
    }

    #[test]
    fn short_keys_have_the_same_inline_view_stored_either_way() {
        let values: Vec<String> = (0..=14)
            .map(|n| "k".repeat(n))
            .chain(["7".into(), "70".into(), "é".into()])
            .collect();
        let offsets = StringArray::from_iter_values(&values);
        let views = StringViewArray::from_iter_values(&values);
        let (offsets, views) = (Strings::Offsets(&offsets), Strings::Views(&views));
        let mut seen = HashSet::new();
        for (i, v) in values.iter().enumerate() {
            let want = inline_view(v);
            assert_eq!(want.is_some(), v.len() <= 12, "{v:?}");
            assert_eq!(offsets.inline(i), want, "{v:?}");
            assert_eq!(views.inline(i), want, "{v:?}");
            if let Some(view) = want {
                assert!(seen.insert(view), "{v:?} shares a view");
            }
        }
        assert_eq!(views.inline(values.len()), None);
        // Arrow holds the bytes after a short string's own at zero.
        let padded = inline_view("ab").unwrap() | (0xA5u128 << 120);
        assert!(StringViewArray::try_new(vec![padded].into(), vec![], None).is_err());
    }

    #[test]
    fn overflow_is_an_error_naming_the_column() {
        let e = array_of(
            "small",
            &ColumnType::Int {
                bits: 8,
                signed: true,
            },
            &[&Datum::Int(300)],
        )
        .unwrap_err();
        assert_eq!(e.column, "small");
        assert!(e.message.contains("overflows int8"));
    }
}
