//! Column values as they travel from a source decoder to the Avro encoder and
//! from the Avro decoder to the lake: typed, owned, no generic `Value` tree.
//!
//! Each [`Datum`] variant is valid for a fixed set of [`ColumnType`]s
//! ([`Datum::fits`]); encoders rely on that, decoders produce only matching
//! pairs. [`Datum::Unchanged`] marks a Postgres TOAST value the source did not
//! send (the sink keeps the stored value); it is never a placeholder string.

use super::decimal::Decimal;
use super::types::ColumnType;

#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Null,
    Bool(bool),
    /// Every integer type but `UInt64`.
    Int(i64),
    UInt64(u64),
    Float32(f32),
    Float64(f64),
    /// Unscaled; the scale is the column type's.
    Decimal(Decimal),
    /// Text, JSON, UUIDs, numeric text, enum labels.
    Text(String),
    Bytes(Vec<u8>),
    /// Days since the epoch.
    Date(i32),
    /// Microseconds: of the day (`Time`), of duration (`DurationMicros`), or
    /// since the epoch (`Timestamp`, `TimestampTz`).
    Micros(i64),
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
    Array(Vec<Datum>),
    /// A TOAST value the source did not send with this change.
    Unchanged,
}

impl Datum {
    /// Whether this value may stand in a column of type `ty`.
    pub fn fits(&self, ty: &ColumnType) -> bool {
        match (self, ty) {
            (Datum::Null | Datum::Unchanged, _) => true,
            (Datum::Bool(_), ColumnType::Boolean) => true,
            (Datum::Int(v), ColumnType::Int { bits, signed }) => {
                let (min, max): (i64, i64) = match (bits, signed) {
                    (8, true) => (i8::MIN.into(), i8::MAX.into()),
                    (16, true) => (i16::MIN.into(), i16::MAX.into()),
                    (32, true) => (i32::MIN.into(), i32::MAX.into()),
                    (64, true) => (i64::MIN, i64::MAX),
                    (8, false) => (0, u8::MAX.into()),
                    (16, false) => (0, u16::MAX.into()),
                    (32, false) => (0, u32::MAX.into()),
                    _ => return false,
                };
                (min..=max).contains(v)
            }
            (Datum::UInt64(_), ColumnType::UInt64) => true,
            (Datum::Float32(_), ColumnType::Float32) => true,
            (Datum::Float64(_), ColumnType::Float64) => true,
            (Datum::Decimal(d), ColumnType::Decimal { precision, .. }) => {
                let digits = d.to_string_scaled(0);
                let digits = digits.trim_start_matches('-').trim_start_matches('0');
                digits.len() <= usize::from(*precision)
            }
            (
                Datum::Text(_),
                ColumnType::Text | ColumnType::Json | ColumnType::Uuid | ColumnType::NumericText,
            ) => true,
            (Datum::Bytes(_), ColumnType::Bytes) => true,
            (Datum::Date(_), ColumnType::Date) => true,
            (Datum::Micros(v), ColumnType::Time) => (0..=86_400_000_000).contains(v),
            (
                Datum::Micros(_),
                ColumnType::DurationMicros | ColumnType::Timestamp | ColumnType::TimestampTz,
            ) => true,
            (Datum::Interval { .. }, ColumnType::Interval) => true,
            (Datum::Array(items), ColumnType::Array { element, dims }) => items.iter().all(|i| {
                if *dims > 1 {
                    matches!(i, Datum::Null)
                        || i.fits(&ColumnType::Array {
                            element: element.clone(),
                            dims: dims - 1,
                        })
                } else {
                    !matches!(i, Datum::Array(_) | Datum::Unchanged) && i.fits(element)
                }
            }),
            _ => false,
        }
    }
}

/// One row: a value per column of its table schema, in column order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row(pub Vec<Datum>);

impl Row {
    pub fn get(&self, column: usize) -> Option<&Datum> {
        self.0.get(column)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fit_only_their_types() {
        let i16t = ColumnType::Int {
            bits: 16,
            signed: true,
        };
        assert!(Datum::Int(32767).fits(&i16t));
        assert!(!Datum::Int(32768).fits(&i16t));
        assert!(!Datum::Int(-1).fits(&ColumnType::Int {
            bits: 32,
            signed: false
        }));
        assert!(Datum::Null.fits(&i16t));
        assert!(!Datum::Text("x".into()).fits(&i16t));
        let dec = ColumnType::Decimal {
            precision: 4,
            scale: 2,
        };
        assert!(Datum::Decimal(Decimal::parse("99.99", 4, 2).unwrap()).fits(&dec));
        assert!(!Datum::Decimal(Decimal::parse("999.99", 5, 2).unwrap()).fits(&dec));
        assert!(Datum::Micros(86_400_000_000).fits(&ColumnType::Time));
        assert!(!Datum::Micros(86_400_000_001).fits(&ColumnType::Time));
        let arr2 = ColumnType::Array {
            element: Box::new(ColumnType::Text),
            dims: 2,
        };
        let nested = Datum::Array(vec![
            Datum::Array(vec![Datum::Text("a".into()), Datum::Null]),
            Datum::Null,
        ]);
        assert!(nested.fits(&arr2));
        let arr1 = ColumnType::Array {
            element: Box::new(ColumnType::Text),
            dims: 1,
        };
        assert!(!nested.fits(&arr1));
    }
}
