//! Change events to Avro binary, straight from typed rows: no generic value
//! tree on the hot path (a generic `Value` encoder costs as much as decoding
//! the WAL). The byte layout is exactly the schemas of [`super::schema`];
//! `tests` check it against an independent decoder (`fastavro`, in the
//! integration suite) and against [`super::decode`].
//!
//! A value that does not fit its column type is an error naming the table,
//! the column and the event's position: never a silent NULL or truncation.

use super::binary::{write_bool, write_branch, write_bytes, write_long, write_str};
use super::schema::Connector;
use crate::event::change::{ChangeEvent, SourceDetail};
use crate::event::datum::{Datum, Row};
use crate::event::schema::TableSchema;
use crate::event::types::ColumnType;

/// The `version` written in source blocks.
pub const VERSION: &str = concat!("tidewater-", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("table {table}, column `{column}` ({ty}) at position {position}: {message}")]
pub struct EncodeError {
    pub table: String,
    pub column: String,
    pub ty: String,
    pub position: String,
    pub message: String,
}

/// Why one value cannot be written.
struct Misfit(String);

fn write_datum(out: &mut Vec<u8>, datum: &Datum, ty: &ColumnType) -> Result<(), Misfit> {
    match (datum, ty) {
        (Datum::Bool(b), ColumnType::Boolean) => write_bool(out, *b),
        (Datum::Int(v), ColumnType::Int { .. }) => {
            if !datum.fits(ty) {
                return Err(Misfit(format!("{v} is out of range")));
            }
            write_long(out, *v);
        }
        (Datum::UInt64(v), ColumnType::UInt64) => {
            write_bytes(out, crate::event::decimal::Decimal::from_u64(*v).as_bytes());
        }
        (Datum::Float32(v), ColumnType::Float32) => out.extend_from_slice(&v.to_le_bytes()),
        (Datum::Float64(v), ColumnType::Float64) => out.extend_from_slice(&v.to_le_bytes()),
        (Datum::Decimal(d), ColumnType::Decimal { .. }) => write_bytes(out, d.as_bytes()),
        (
            Datum::Text(s),
            ColumnType::Text | ColumnType::Json | ColumnType::Uuid | ColumnType::NumericText,
        ) => write_str(out, s),
        (Datum::Bytes(b), ColumnType::Bytes) => write_bytes(out, b),
        (Datum::Date(d), ColumnType::Date) => write_long(out, i64::from(*d)),
        (Datum::Micros(v), ColumnType::Time) => {
            if !datum.fits(ty) {
                return Err(Misfit(format!("{v} µs is not a time of day")));
            }
            write_long(out, *v);
        }
        (
            Datum::Micros(v),
            ColumnType::DurationMicros | ColumnType::Timestamp | ColumnType::TimestampTz,
        ) => write_long(out, *v),
        (
            Datum::Interval {
                months,
                days,
                micros,
            },
            ColumnType::Interval,
        ) => {
            write_long(out, i64::from(*months));
            write_long(out, i64::from(*days));
            write_long(out, *micros);
        }
        (Datum::Array(items), ColumnType::Array { element, dims }) => {
            if !items.is_empty() {
                write_long(out, items.len() as i64);
                let inner = if *dims > 1 {
                    ColumnType::Array {
                        element: element.clone(),
                        dims: dims - 1,
                    }
                } else {
                    (**element).clone()
                };
                for item in items {
                    match item {
                        Datum::Null => write_branch(out, 0),
                        Datum::Array(_) if *dims == 1 => {
                            return Err(Misfit(
                                "the array has more dimensions than the column declares".into(),
                            ));
                        }
                        other => {
                            write_branch(out, 1);
                            write_datum(out, other, &inner)?;
                        }
                    }
                }
            }
            write_long(out, 0);
        }
        (Datum::Null, _) | (Datum::Unchanged, _) => {
            return Err(Misfit("a NULL in a non-null field".into()));
        }
        (other, ty) => {
            return Err(Misfit(format!(
                "a {} value does not belong in a {ty} column",
                kind(other)
            )));
        }
    }
    Ok(())
}

fn kind(d: &Datum) -> &'static str {
    match d {
        Datum::Null => "null",
        Datum::Bool(_) => "boolean",
        Datum::Int(_) => "integer",
        Datum::UInt64(_) => "unsigned integer",
        Datum::Float32(_) | Datum::Float64(_) => "floating-point",
        Datum::Decimal(_) => "decimal",
        Datum::Text(_) => "text",
        Datum::Bytes(_) => "bytes",
        Datum::Date(_) => "date",
        Datum::Micros(_) => "time",
        Datum::Interval { .. } => "interval",
        Datum::Array(_) => "array",
        Datum::Unchanged => "unchanged",
    }
}

fn misfit(
    table: &TableSchema,
    column: usize,
    event: Option<&ChangeEvent>,
    m: Misfit,
) -> EncodeError {
    let col = table.columns.get(column);
    EncodeError {
        table: table.id.to_string(),
        column: col.map(|c| c.name.clone()).unwrap_or_default(),
        ty: col.map(|c| c.source_type.clone()).unwrap_or_default(),
        position: event
            .map(|e| e.position.to_string())
            .unwrap_or_else(|| "-".into()),
        message: m.0,
    }
}

/// The key record of a row's key columns (`key` as from
/// [`TableSchema::key_of`]).
pub fn encode_key(
    out: &mut Vec<u8>,
    table: &TableSchema,
    key: &Row,
    event: Option<&ChangeEvent>,
) -> Result<(), EncodeError> {
    for (k, column_index) in table.key.iter().enumerate() {
        let Some(column) = table.columns.get(*column_index) else {
            continue;
        };
        let datum = key.get(k).unwrap_or(&Datum::Null);
        let result = if column.nullable {
            match datum {
                Datum::Null => {
                    write_branch(out, 0);
                    Ok(())
                }
                d => {
                    write_branch(out, 1);
                    write_datum(out, d, &column.ty)
                }
            }
        } else {
            write_datum(out, datum, &column.ty)
        };
        result.map_err(|m| misfit(table, *column_index, event, m))?;
    }
    Ok(())
}

/// A row as the optional `Value` record; unchanged TOAST values are written
/// as null (and listed in `unchanged_columns`).
fn encode_row(
    out: &mut Vec<u8>,
    table: &TableSchema,
    row: &Row,
    event: &ChangeEvent,
) -> Result<(), EncodeError> {
    if row.len() != table.columns.len() {
        return Err(EncodeError {
            table: table.id.to_string(),
            column: String::new(),
            ty: String::new(),
            position: event.position.to_string(),
            message: format!(
                "the row has {} values for {} columns",
                row.len(),
                table.columns.len()
            ),
        });
    }
    for (i, (datum, column)) in row.0.iter().zip(&table.columns).enumerate() {
        match datum {
            Datum::Null | Datum::Unchanged => write_branch(out, 0),
            d => {
                write_branch(out, 1);
                write_datum(out, d, &column.ty).map_err(|m| misfit(table, i, Some(event), m))?;
            }
        }
    }
    Ok(())
}

fn write_opt_long(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        None => write_branch(out, 0),
        Some(v) => {
            write_branch(out, 1);
            write_long(out, v);
        }
    }
}

fn write_opt_str(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        None => write_branch(out, 0),
        Some(v) => {
            write_branch(out, 1);
            write_str(out, v);
        }
    }
}

fn position_long(event: &ChangeEvent, what: &str, v: u64) -> Result<i64, EncodeError> {
    i64::try_from(v).map_err(|_| EncodeError {
        table: event.table.id.to_string(),
        column: String::new(),
        ty: String::new(),
        position: event.position.to_string(),
        message: format!("the {what} {v} does not fit an Avro long"),
    })
}

/// The value of a change event: the Debezium envelope.
pub fn encode_value(
    out: &mut Vec<u8>,
    event: &ChangeEvent,
    connector: Connector,
) -> Result<(), EncodeError> {
    let table = &event.table;
    for row in [&event.before, &event.after] {
        match row {
            None => write_branch(out, 0),
            Some(r) => {
                write_branch(out, 1);
                encode_row(out, table, r, event)?;
            }
        }
    }
    encode_source(out, event, connector)?;
    match &event.transaction {
        None => write_branch(out, 0),
        Some(t) => {
            write_branch(out, 1);
            write_str(out, &t.id);
            write_long(out, t.total_order as i64);
            write_long(out, t.data_collection_order as i64);
        }
    }
    write_str(out, event.op.code());
    write_opt_long(out, Some(event.ts_us.div_euclid(1000)));
    write_opt_long(out, Some(event.ts_us));
    write_opt_long(out, event.ts_us.checked_mul(1000));
    let unchanged: Vec<&str> = event
        .after
        .iter()
        .flat_map(|row| row.0.iter().zip(&table.columns))
        .filter(|(d, _)| matches!(d, Datum::Unchanged))
        .map(|(_, c)| c.name.as_str())
        .collect();
    if unchanged.is_empty() {
        write_branch(out, 0);
    } else {
        write_branch(out, 1);
        write_long(out, unchanged.len() as i64);
        for name in unchanged {
            write_str(out, name);
        }
        write_long(out, 0);
    }
    Ok(())
}

fn encode_source(
    out: &mut Vec<u8>,
    event: &ChangeEvent,
    connector: Connector,
) -> Result<(), EncodeError> {
    let s = &event.source;
    write_str(out, VERSION);
    write_str(out, connector.name());
    write_str(out, &s.name);
    write_long(out, s.commit_ts_us.div_euclid(1000));
    write_branch(out, 0);
    write_str(out, s.snapshot.as_str());
    write_str(out, &s.db);
    let commit = position_long(event, "commit position", event.position.commit)?;
    match &s.detail {
        SourceDetail::Postgres { lsn, .. } => {
            let lsn = position_long(event, "LSN", *lsn)?;
            write_opt_str(out, Some(&format!("[\"{commit}\",\"{lsn}\"]")));
        }
        SourceDetail::Mysql { .. } => write_opt_str(out, None),
    }
    write_opt_long(out, Some(s.commit_ts_us));
    write_opt_long(out, s.commit_ts_us.checked_mul(1000));
    match (&s.detail, connector) {
        (SourceDetail::Postgres { lsn, tx_id }, Connector::Postgres) => {
            write_str(out, &s.schema);
            write_str(out, &s.table);
            write_opt_long(out, tx_id.map(i64::from));
            write_opt_long(out, Some(position_long(event, "LSN", *lsn)?));
            write_opt_long(out, None);
        }
        (
            SourceDetail::Mysql {
                server_id,
                gtid,
                file,
                pos,
                row,
                thread,
            },
            Connector::Mysql,
        ) => {
            write_opt_str(out, Some(&s.table));
            write_long(out, i64::from(*server_id));
            write_opt_str(out, gtid.as_deref());
            write_str(out, file);
            write_long(out, position_long(event, "binlog position", *pos)?);
            write_long(out, i64::from(*row));
            write_opt_long(out, thread.map(|t| t as i64));
            write_opt_str(out, None);
        }
        _ => {
            return Err(EncodeError {
                table: event.table.id.to_string(),
                column: String::new(),
                ty: String::new(),
                position: event.position.to_string(),
                message: format!(
                    "a source block of another connector than {}",
                    connector.name()
                ),
            });
        }
    }
    write_long(out, commit);
    write_long(
        out,
        position_long(event, "ordinal", event.position.ordinal)?,
    );
    Ok(())
}
