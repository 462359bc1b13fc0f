//! Seeded sample data for tests and benchmarks: tables with every column
//! type, and random rows and events for them.
//!
//! Everything is driven by one `u64` seed, printed by the tests that use it,
//! so a failure replays exactly (`TIDEWATER_SEED=<seed> cargo test ...`).

use std::sync::Arc;

use super::change::{ChangeEvent, Op, Position, SnapshotMarker, Source, SourceDetail, Transaction};
use super::datum::{Datum, Row};
use super::decimal::Decimal;
use super::schema::{Column, TableSchema};
use super::table_id::TableId;
use super::types::ColumnType;

/// A small, fast, replayable generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The seed from `TIDEWATER_SEED`, or one derived from the clock.
    pub fn seed_from_env() -> u64 {
        std::env::var("TIDEWATER_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(42)
            })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi as i128 - lo as i128 + 1) as u128;
        (lo as i128 + (u128::from(self.next_u64()) % span) as i128) as i64
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }

    pub fn text(&mut self, max_len: usize) -> String {
        const PIECES: &[&str] = &[
            "a", "b", "Z", "0", " ", "é", "ß", "😀", "\"", "'", "\\", "\u{0}", "\n", "漢", ",",
            "{", "}",
        ];
        let len = self.below(max_len as u64 + 1) as usize;
        (0..len)
            .filter_map(|_| self.pick(PIECES).copied())
            .collect()
    }
}

/// Every column type, for tables that exercise the whole mapping.
pub fn all_types() -> Vec<ColumnType> {
    vec![
        ColumnType::Boolean,
        ColumnType::Int {
            bits: 8,
            signed: true,
        },
        ColumnType::Int {
            bits: 16,
            signed: true,
        },
        ColumnType::Int {
            bits: 32,
            signed: true,
        },
        ColumnType::Int {
            bits: 64,
            signed: true,
        },
        ColumnType::Int {
            bits: 8,
            signed: false,
        },
        ColumnType::Int {
            bits: 16,
            signed: false,
        },
        ColumnType::Int {
            bits: 32,
            signed: false,
        },
        ColumnType::UInt64,
        ColumnType::Float32,
        ColumnType::Float64,
        ColumnType::Decimal {
            precision: 12,
            scale: 2,
        },
        ColumnType::Decimal {
            precision: 65,
            scale: 30,
        },
        ColumnType::Decimal {
            precision: 38,
            scale: 0,
        },
        ColumnType::NumericText,
        ColumnType::Text,
        ColumnType::Json,
        ColumnType::Uuid,
        ColumnType::Bytes,
        ColumnType::Date,
        ColumnType::Time,
        ColumnType::DurationMicros,
        ColumnType::Timestamp,
        ColumnType::TimestampTz,
        ColumnType::Interval,
        ColumnType::Array {
            element: Box::new(ColumnType::Int {
                bits: 32,
                signed: true,
            }),
            dims: 1,
        },
        ColumnType::Array {
            element: Box::new(ColumnType::Text),
            dims: 2,
        },
        ColumnType::Array {
            element: Box::new(ColumnType::Decimal {
                precision: 10,
                scale: 3,
            }),
            dims: 1,
        },
    ]
}

/// A table with an `id bigint` key and one nullable column per type.
pub fn all_types_table(id: TableId) -> TableSchema {
    id_keyed_table(
        id,
        all_types().into_iter().enumerate().map(|(i, ty)| {
            let name = format!("c{i}_{}", ty.name().replace(['(', ')', ',', '[', ']'], "_"));
            Column::new(name, ty, true)
        }),
    )
}

/// A table of database `sample` keyed by `id bigint`, then `columns`.
pub fn id_keyed_table(id: TableId, columns: impl IntoIterator<Item = Column>) -> TableSchema {
    let key = Column::new(
        "id",
        ColumnType::Int {
            bits: 64,
            signed: true,
        },
        false,
    );
    TableSchema {
        id,
        database: "sample".into(),
        columns: std::iter::once(key).chain(columns).collect(),
        key: vec![0],
    }
}

/// A random non-null value of `ty`, covering edge values.
pub fn value(rng: &mut Rng, ty: &ColumnType) -> Datum {
    match ty {
        ColumnType::Boolean => Datum::Bool(rng.chance(50)),
        ColumnType::Int { bits, signed } => {
            let (lo, hi): (i64, i64) = match (bits, signed) {
                (8, true) => (i8::MIN.into(), i8::MAX.into()),
                (16, true) => (i16::MIN.into(), i16::MAX.into()),
                (32, true) => (i32::MIN.into(), i32::MAX.into()),
                (8, false) => (0, u8::MAX.into()),
                (16, false) => (0, u16::MAX.into()),
                (32, false) => (0, u32::MAX.into()),
                _ => (i64::MIN, i64::MAX),
            };
            Datum::Int(match rng.below(4) {
                0 => lo,
                1 => hi,
                _ => rng.range_i64(lo, hi),
            })
        }
        ColumnType::UInt64 => Datum::UInt64(match rng.below(3) {
            0 => u64::MAX,
            1 => 1 << 63,
            _ => rng.next_u64(),
        }),
        ColumnType::Float32 => Datum::Float32(match rng.below(5) {
            0 => f32::INFINITY,
            1 => -0.0,
            _ => (rng.range_i64(-1_000_000, 1_000_000) as f32) / 7.0,
        }),
        ColumnType::Float64 => Datum::Float64(match rng.below(5) {
            0 => f64::NEG_INFINITY,
            1 => f64::MIN_POSITIVE,
            _ => (rng.next_u64() as f64) / 3.0,
        }),
        ColumnType::Decimal { precision, scale } => {
            let digits: String = (0..rng.below(u64::from(*precision)) + 1)
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect();
            let (int, frac) = digits.split_at(digits.len().saturating_sub(usize::from(*scale)));
            let sign = if rng.chance(30) { "-" } else { "" };
            let text = format!("{sign}{}.{frac}", if int.is_empty() { "0" } else { int });
            Datum::Decimal(
                Decimal::parse(&text, *precision, *scale).unwrap_or_else(|_| Decimal::from_i128(0)),
            )
        }
        ColumnType::NumericText => Datum::Text(match rng.below(5) {
            0 => "NaN".to_string(),
            1 => "-Infinity".to_string(),
            2 => "0.000000000000000000000000000000000000000000000001".to_string(),
            _ => format!("{}.{}", rng.next_u64(), rng.next_u64()),
        }),
        ColumnType::Text => Datum::Text(rng.text(40)),
        ColumnType::Json => Datum::Text(format!(
            "{{\"k\": {}, \"s\": \"\\u0000x\"}}",
            rng.below(1000)
        )),
        ColumnType::Uuid => Datum::Text(format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            rng.next_u64() as u32,
            rng.below(0x10000),
            rng.below(0x1000),
            rng.below(0x1000),
            rng.below(1 << 48)
        )),
        ColumnType::Bytes => {
            Datum::Bytes((0..rng.below(64)).map(|_| rng.next_u64() as u8).collect())
        }
        ColumnType::Date => Datum::Date(match rng.below(5) {
            0 => i32::MAX,
            1 => i32::MIN,
            2 => -719_528, // 0000-01-01
            _ => rng.range_i64(-100_000, 3_000_000) as i32,
        }),
        ColumnType::Time => Datum::Micros(rng.range_i64(0, 86_400_000_000)),
        ColumnType::DurationMicros => {
            Datum::Micros(rng.range_i64(-3_020_399_000_000, 3_020_399_000_000))
        }
        ColumnType::Timestamp | ColumnType::TimestampTz => Datum::Micros(match rng.below(5) {
            0 => i64::MAX,
            1 => i64::MIN,
            2 => 253_402_300_800_000_000 + 1, // after 9999-12-31
            _ => rng.range_i64(-62_135_596_800_000_000, 4_102_444_800_000_000),
        }),
        ColumnType::Interval => Datum::Interval {
            months: rng.range_i64(-1200, 1200) as i32,
            days: rng.range_i64(-400, 400) as i32,
            micros: rng.range_i64(-86_400_000_000, 86_400_000_000),
        },
        ColumnType::Array { element, dims } => {
            let inner = if *dims > 1 {
                ColumnType::Array {
                    element: element.clone(),
                    dims: dims - 1,
                }
            } else {
                (**element).clone()
            };
            Datum::Array(
                (0..rng.below(4))
                    .map(|_| {
                        if rng.chance(20) {
                            Datum::Null
                        } else {
                            value(rng, &inner)
                        }
                    })
                    .collect(),
            )
        }
    }
}

/// A random row for `table` (key column never null).
pub fn row(rng: &mut Rng, table: &TableSchema, key: i64) -> Row {
    Row(table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if table.key.contains(&i) {
                if let ColumnType::Int { .. } = c.ty {
                    return Datum::Int(key);
                }
                return value(rng, &c.ty);
            }
            if c.nullable && rng.chance(15) {
                Datum::Null
            } else {
                value(rng, &c.ty)
            }
        })
        .collect())
}

/// A random event of a Postgres-style source for `table`.
pub fn event(rng: &mut Rng, table: &Arc<TableSchema>, position: Position) -> ChangeEvent {
    let key = rng.range_i64(1, 1_000_000);
    let op = *rng
        .pick(&[Op::Create, Op::Update, Op::Delete, Op::Read])
        .unwrap_or(&Op::Create);
    let before = matches!(op, Op::Update | Op::Delete).then(|| row(rng, table, key));
    let mut after = matches!(op, Op::Create | Op::Update | Op::Read).then(|| row(rng, table, key));
    if op == Op::Update
        && rng.chance(30)
        && let Some(a) = after.as_mut()
    {
        // An unchanged TOAST value in a non-key column.
        let i = 1 + rng.below(table.columns.len().saturating_sub(1) as u64) as usize;
        if let Some(d) = a.0.get_mut(i) {
            *d = Datum::Unchanged;
        }
    }
    ChangeEvent {
        table: table.clone(),
        op,
        position,
        before,
        after,
        source: Source {
            name: "sample".into(),
            db: table.database.clone(),
            schema: table.id.schema.clone(),
            table: table.id.name.clone(),
            commit_ts_us: 1_700_000_000_000_000 + rng.below(1_000_000_000) as i64,
            snapshot: if op == Op::Read {
                SnapshotMarker::True
            } else {
                SnapshotMarker::False
            },
            detail: SourceDetail::Postgres {
                lsn: position.commit,
                tx_id: Some(rng.below(1 << 31) as u32),
            },
        },
        transaction: (op != Op::Read).then(|| Transaction {
            id: format!("{}:{}", rng.below(1 << 31), position.commit),
            total_order: position.ordinal + 1,
            data_collection_order: position.ordinal + 1,
        }),
        ts_us: 1_700_000_000_000_000 + rng.below(1_000_000_000) as i64,
    }
}
