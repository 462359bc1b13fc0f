//! Round trips of random events of every type through the Avro encoding, and
//! the failures a hostile or damaged message must produce.

use std::sync::Arc;

use super::decode::Plan;
use super::encode::{encode_key, encode_value};
use super::schema::{Connector, key_schema, value_schema};
use crate::event::change::{ChangeEvent, Position, SourceDetail};
use crate::event::datum::Datum;
use crate::event::sample::{self, Rng};
use crate::event::table_id::TableId;

fn plan_for(table: &crate::event::schema::TableSchema, connector: Connector) -> Plan {
    let topic = "sample.public.all_types";
    let key = key_schema(table, topic).unwrap();
    let value = value_schema(table, topic, connector).unwrap();
    Plan::new(Some(&key), &value).unwrap()
}

#[test]
fn random_events_of_every_type_round_trip() {
    let seed = Rng::seed_from_env();
    println!("seed {seed} (replay with TIDEWATER_SEED={seed})");
    let mut rng = Rng::new(seed);
    let table = Arc::new(sample::all_types_table(TableId::new("public", "all_types")));
    let plan = plan_for(&table, Connector::Postgres);
    assert_eq!(*plan.table, *table);
    let mut buf = Vec::new();
    for i in 0..2000u64 {
        let event = sample::event(&mut rng, &table, Position::new(1000 + i / 3, i % 3));
        buf.clear();
        encode_value(&mut buf, &event, Connector::Postgres).unwrap();
        let decoded = plan
            .decode_value(&buf)
            .unwrap_or_else(|e| panic!("seed {seed} event {i}: {e}"));
        let mut expected = event.clone();
        expected.table = plan.table.clone();
        assert_eq!(decoded, expected, "seed {seed} event {i}");

        let key = event.key_row().unwrap();
        buf.clear();
        encode_key(&mut buf, &table, &key, Some(&event)).unwrap();
        assert_eq!(plan.decode_key(&buf).unwrap(), key, "seed {seed} key {i}");
    }
}

#[test]
fn mysql_source_block_round_trips() {
    let mut rng = Rng::new(7);
    let table = Arc::new(sample::all_types_table(TableId::new("shop", "t")));
    let plan = plan_for(&table, Connector::Mysql);
    let mut event: ChangeEvent =
        sample::event(&mut rng, &table, Position::new((3 << 32) | 4711, 2));
    event.source.schema = event.source.db.clone();
    event.source.detail = SourceDetail::Mysql {
        server_id: 1,
        gtid: Some("0-1-42".into()),
        file: "mysql-bin.000003".into(),
        pos: 4711,
        row: 2,
        thread: Some(9),
    };
    let mut buf = Vec::new();
    encode_value(&mut buf, &event, Connector::Mysql).unwrap();
    let decoded = plan.decode_value(&buf).unwrap();
    assert_eq!(decoded.source, event.source);
    assert_eq!(decoded.position, event.position);
}

#[test]
fn a_value_that_does_not_fit_names_table_column_and_position() {
    let table = Arc::new(sample::all_types_table(TableId::new("public", "t")));
    let mut rng = Rng::new(1);
    let mut event = sample::event(&mut rng, &table, Position::new(77, 1));
    event.op = crate::event::change::Op::Create;
    let mut row = sample::row(&mut rng, &table, 5);
    // c1 is int8: 300 does not fit.
    row.0[2] = Datum::Int(300);
    event.after = Some(row);
    let err = encode_value(&mut Vec::new(), &event, Connector::Postgres).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("table public.t"), "{text}");
    assert!(text.contains("column `c1_int8`"), "{text}");
    assert!(text.contains("0/4D#1"), "{text}");
    assert!(text.contains("300 is out of range"), "{text}");
}

#[test]
fn truncated_and_corrupt_bodies_are_errors() {
    let table = Arc::new(sample::all_types_table(TableId::new("public", "t")));
    let plan = plan_for(&table, Connector::Postgres);
    let mut rng = Rng::new(3);
    let mut buf = Vec::new();
    let event = sample::event(&mut rng, &table, Position::new(5, 0));
    encode_value(&mut buf, &event, Connector::Postgres).unwrap();
    for cut in [0, 1, buf.len() / 2, buf.len() - 1] {
        assert!(plan.decode_value(&buf[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = buf.clone();
    longer.push(0);
    assert!(plan.decode_value(&longer).is_err(), "trailing bytes");
    // Random garbage never panics.
    for _ in 0..2000 {
        let junk: Vec<u8> = (0..rng.below(200)).map(|_| rng.next_u64() as u8).collect();
        let _ = plan.decode_value(&junk);
        let _ = plan.decode_key(&junk);
    }
}

/// The example table of the golden files: the README's `orders`.
fn golden_table() -> crate::event::schema::TableSchema {
    use crate::event::schema::{Column, TableSchema};
    use crate::event::types::ColumnType;
    TableSchema {
        id: TableId::new("public", "orders"),
        database: "shop".into(),
        columns: vec![
            Column::new(
                "id",
                ColumnType::Int {
                    bits: 64,
                    signed: true,
                },
                false,
            ),
            Column::new(
                "customer_id",
                ColumnType::Int {
                    bits: 64,
                    signed: true,
                },
                true,
            ),
            Column::new("status", ColumnType::Text, true),
            Column::new(
                "amount",
                ColumnType::Decimal {
                    precision: 12,
                    scale: 2,
                },
                true,
            ),
            Column::new("created_at", ColumnType::TimestampTz, true),
            Column::new("payload", ColumnType::Json, true),
        ],
        key: vec![0],
    }
}

/// Checked-in schemas in `schemas/avro/` are what the code generates. Run
/// with `TIDEWATER_BLESS=1` to rewrite them after an intended change.
#[test]
fn golden_avro_schemas_are_current() {
    use super::schema::source_schema;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/avro");
    let table = golden_table();
    let topic = "shop.public.orders";
    let files = [
        ("source.postgresql.avsc", source_schema(Connector::Postgres)),
        ("source.mysql.avsc", source_schema(Connector::Mysql)),
        (
            "example.shop.public.orders.key.avsc",
            key_schema(&table, topic).unwrap(),
        ),
        (
            "example.shop.public.orders.value.avsc",
            value_schema(&table, topic, Connector::Postgres).unwrap(),
        ),
    ];
    let bless = std::env::var("TIDEWATER_BLESS").is_ok();
    for (name, schema) in files {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = dir.join(name);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == text,
            "schemas/avro/{name} is stale: rerun with TIDEWATER_BLESS=1 and review the diff"
        );
    }
}
