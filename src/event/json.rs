//! Change events as JSON, for `tidewater tail` and for tests that compare
//! with what other tools read. Exact values stay exact: decimals and
//! unsigned 64-bit values as decimal text or JSON integers, bytes as `\x`
//! hex, times as ISO texts, `NaN`/`Infinity` floats as strings.

use serde_json::{Map, Value as Json, json};

use super::change::{ChangeEvent, SourceDetail};
use super::datum::{Datum, Row};
use super::schema::TableSchema;
use super::time::{date_text, time_text, timestamp_text};
use super::types::ColumnType;

/// One value of a column of type `ty`.
pub fn datum_json(datum: &Datum, ty: &ColumnType) -> Json {
    match (datum, ty) {
        (Datum::Null, _) => Json::Null,
        (Datum::Unchanged, _) => json!({"unchanged_toast": true}),
        (Datum::Bool(b), _) => json!(b),
        (Datum::Int(i), _) => json!(i),
        (Datum::UInt64(u), _) => json!(u),
        (Datum::Float32(f), _) => float_json(f64::from(*f)),
        (Datum::Float64(f), _) => float_json(*f),
        (Datum::Decimal(d), ColumnType::Decimal { scale, .. }) => json!(d.to_string_scaled(*scale)),
        (Datum::Decimal(d), _) => json!(d.to_string_scaled(0)),
        (Datum::Text(s), _) => json!(s),
        (Datum::Bytes(b), _) => {
            let mut s = String::with_capacity(2 + b.len() * 2);
            s.push_str("\\x");
            for byte in b {
                s.push_str(&format!("{byte:02x}"));
            }
            json!(s)
        }
        (Datum::Date(d), _) => json!(date_text(*d)),
        (Datum::Micros(m), ColumnType::Time | ColumnType::DurationMicros) => json!(time_text(*m)),
        (Datum::Micros(m), ColumnType::TimestampTz) => {
            let t = timestamp_text(*m);
            if t.ends_with("infinity") {
                json!(t)
            } else {
                json!(format!("{t}Z"))
            }
        }
        (Datum::Micros(m), _) => json!(timestamp_text(*m)),
        (
            Datum::Interval {
                months,
                days,
                micros,
            },
            _,
        ) => {
            json!({"months": months, "days": days, "micros": micros})
        }
        (Datum::Array(items), ColumnType::Array { element, dims }) => {
            let inner = if *dims > 1 {
                ColumnType::Array {
                    element: element.clone(),
                    dims: dims - 1,
                }
            } else {
                (**element).clone()
            };
            Json::Array(items.iter().map(|i| datum_json(i, &inner)).collect())
        }
        (Datum::Array(items), other) => {
            Json::Array(items.iter().map(|i| datum_json(i, other)).collect())
        }
    }
}

fn float_json(f: f64) -> Json {
    if f.is_finite() {
        json!(f)
    } else if f.is_nan() {
        json!("NaN")
    } else if f > 0.0 {
        json!("Infinity")
    } else {
        json!("-Infinity")
    }
}

/// A full row as an object keyed by column name.
pub fn row_json(row: &Row, table: &TableSchema) -> Json {
    let mut map = Map::new();
    for (datum, column) in row.0.iter().zip(&table.columns) {
        map.insert(column.name.clone(), datum_json(datum, &column.ty));
    }
    Json::Object(map)
}

/// A key row (key columns only) as an object.
pub fn key_json(key: &Row, table: &TableSchema) -> Json {
    let mut map = Map::new();
    for (datum, column) in key.0.iter().zip(table.key_columns()) {
        map.insert(column.name.clone(), datum_json(datum, &column.ty));
    }
    Json::Object(map)
}

/// The event as printed by `tidewater tail`.
pub fn event_json(event: &ChangeEvent) -> Json {
    let table = &event.table;
    let mut source = json!({
        "connector": event.source.connector(),
        "db": event.source.db,
        "schema": event.source.schema,
        "table": event.source.table,
        "snapshot": event.source.snapshot.as_str(),
        "commit_ts": timestamp_text(event.source.commit_ts_us) + "Z",
    });
    if let Some(obj) = source.as_object_mut() {
        match &event.source.detail {
            SourceDetail::Postgres { lsn, tx_id } => {
                obj.insert("lsn".into(), json!(lsn));
                obj.insert("tx_id".into(), json!(tx_id));
            }
            SourceDetail::Mysql {
                server_id,
                gtid,
                file,
                pos,
                row,
                ..
            } => {
                obj.insert("server_id".into(), json!(server_id));
                obj.insert("gtid".into(), json!(gtid));
                obj.insert("file".into(), json!(file));
                obj.insert("pos".into(), json!(pos));
                obj.insert("row".into(), json!(row));
            }
        }
    }
    json!({
        "table": table.id.to_string(),
        "op": event.op.code(),
        "position": event.position.to_string(),
        "key": event.key_row().map(|k| key_json(&k, table)),
        "before": event.before.as_ref().map(|r| row_json(r, table)),
        "after": event.after.as_ref().map(|r| row_json(r, table)),
        "source": source,
    })
}
