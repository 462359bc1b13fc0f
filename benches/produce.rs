//! Encode and produce throughput of change events, side by side with the
//! broker's own rate from a plain librdkafka producer in the same run.
//!
//!   cargo bench --bench produce            # services from scripts/services.sh
//!   BENCH_EVENTS=500000 cargo bench --bench produce
//!
//! Three figures, one process, one broker:
//! 1. encode only: events → framed Avro key and value bytes (one core);
//! 2. tidewater: `EventProducer` (encode + idempotent acks=all zstd produce,
//!    delivery tracking) until every event is acknowledged;
//! 3. peer: librdkafka's producer sending the same bytes (pre-encoded) with
//!    the same settings, until every message is acknowledged.
//!
//! It prints events/s for each and the ratio of 2 to 3. Not a pass/fail test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "benchmark glue"
)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/peer.rs"]
mod peer;
#[path = "common/proc.rs"]
mod proc;

use std::sync::Arc;
use std::time::Instant;

use peer::run_peer;

use tidewater::config::model::KafkaConfig;
use tidewater::event::change::{
    ChangeEvent, Op, Position, SnapshotMarker, Source, SourceDetail, Transaction,
};
use tidewater::event::datum::{Datum, Row};
use tidewater::event::decimal::Decimal;
use tidewater::event::schema::{Column, TableSchema};
use tidewater::event::table_id::TableId;
use tidewater::event::types::ColumnType;
use tidewater::kafka::avro::schema::Connector;
use tidewater::kafka::client::client_config;
use tidewater::kafka::producer::{EventProducer, EventSerializer, ProducerOptions};
use tidewater::kafka::schemas::SchemaStore;
use tidewater::kafka::topic::table_topic;

fn table() -> Arc<TableSchema> {
    let int = |bits| ColumnType::Int { bits, signed: true };
    Arc::new(TableSchema {
        id: TableId::new("public", "orders"),
        database: "bench".into(),
        columns: vec![
            Column::new("id", int(64), false),
            Column::new("customer_id", int(64), true),
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
            Column::new("qty", int(32), true),
            Column::new("paid", ColumnType::Boolean, true),
            Column::new("updated_at", ColumnType::Timestamp, true),
            Column::new("note", ColumnType::Text, true),
        ],
        key: vec![0],
    })
}

fn event(table: &Arc<TableSchema>, n: u64) -> ChangeEvent {
    let row = Row(vec![
        Datum::Int(n as i64),
        Datum::Int((n % 10_000) as i64),
        Datum::Text(["new", "paid", "shipped"][(n % 3) as usize].into()),
        Datum::Decimal(Decimal::from_i128(i128::from(n % 100_000) * 7)),
        Datum::Micros(1_700_000_000_000_000 + n as i64 * 1_000),
        Datum::Text(format!(
            r#"{{"sku":"SKU-{n:08}","qty":{},"tags":["a","b"]}}"#,
            n % 7
        )),
        Datum::Int((n % 50) as i64),
        Datum::Bool(n.is_multiple_of(2)),
        Datum::Micros(1_700_000_000_000_000 + n as i64 * 2_000),
        Datum::Text("deliver to the back door".into()),
    ]);
    let position = Position::new(1_000_000 + n / 100, n % 100);
    ChangeEvent {
        table: table.clone(),
        op: Op::Create,
        position,
        before: None,
        after: Some(row),
        source: Source {
            name: "bench".into(),
            db: "bench".into(),
            schema: "public".into(),
            table: "orders".into(),
            commit_ts_us: 1_700_000_000_000_000,
            snapshot: SnapshotMarker::False,
            detail: SourceDetail::Postgres {
                lsn: position.commit,
                tx_id: Some(7),
            },
        },
        transaction: Some(Transaction {
            id: "7".into(),
            total_order: n % 100 + 1,
            data_collection_order: n % 100 + 1,
        }),
        ts_us: 1_700_000_000_000_000,
    }
}

/// Encodes and produces `events` events through `EventProducer`; seconds
/// until all are acknowledged.
async fn run_ours(kafka: &KafkaConfig, prefix: &str, table: &Arc<TableSchema>, events: u64) -> f64 {
    let store = SchemaStore::new(kafka).unwrap();
    let serializer = EventSerializer::new(store, Connector::Postgres, prefix);
    let mut producer = EventProducer::new(
        &client_config(kafka),
        serializer,
        ProducerOptions::from_config(kafka),
    )
    .unwrap();
    // Topic creation and schema registration outside the timing.
    producer.send(&event(table, 0)).await.unwrap();
    producer.flush().await.unwrap();
    let start = Instant::now();
    for n in 1..=events {
        producer.send(&event(table, n)).await.unwrap();
        if n % 100 == 99 {
            producer.end_of_transaction(Position::new(1_000_000 + n / 100, u64::MAX));
        }
    }
    producer.flush().await.unwrap();
    assert!(producer.tracker().failure().is_none());
    let _ = table_topic(prefix, &table.id);
    start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // The allocator's options as the daemon runs with them (see
    // `tidewater::alloc`).
    if let Some(reason) = tidewater::alloc::reexec_with_allocator_options() {
        eprintln!("running with the allocator's default options: {reason}");
    }
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench binaries without `--bench`:
        // a benchmark is not a test, so it does nothing there.
        println!("produce benchmark: run it with `cargo bench --bench produce`");
        return;
    }
    let events: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let encode_events: u64 = events.max(1_000_000);
    let brokers =
        std::env::var("TIDEWATER_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut kafka = KafkaConfig::with_brokers(&brokers);
    kafka.topic_partitions = 4;
    let table = table();
    let run = format!("bench{}", std::process::id());

    // 1. Encode only.
    let serializer_store = SchemaStore::new(&kafka).unwrap();
    let mut serializer = EventSerializer::new(serializer_store, Connector::Postgres, &run);
    let entry = serializer.prepare(&table).await.unwrap().clone();
    let batch: Vec<ChangeEvent> = (0..10_000).map(|n| event(&table, n)).collect();
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let mut bytes = 0usize;
    let start = Instant::now();
    for i in 0..encode_events {
        let e = &batch[(i % 10_000) as usize];
        serializer.encode(&entry, e, &mut key, &mut value).unwrap();
        bytes += key.len() + value.len();
    }
    let encode_secs = start.elapsed().as_secs_f64();
    let avg_bytes = bytes as f64 / encode_events as f64;

    // 2 and 3, in the order peer, tidewater, tidewater, peer: the broker
    // slows as its storage grows, so each side gets an early and a late run.
    let prepared: Vec<(Vec<u8>, Vec<u8>)> = (0..events)
        .map(|n| {
            serializer
                .encode(&entry, &event(&table, n), &mut key, &mut value)
                .unwrap();
            (key.clone(), value.clone())
        })
        .collect();
    let mut peer_secs = 0.0;
    let mut ours_secs = 0.0;
    for (round, side) in ["peer", "tidewater", "tidewater", "peer"]
        .iter()
        .enumerate()
    {
        if *side == "peer" {
            peer_secs += run_peer(&kafka, &format!("{run}.peer{round}"), &prepared).await;
        } else {
            ours_secs += run_ours(&kafka, &format!("{run}{round}"), &table, events).await;
        }
    }
    drop(prepared);

    let encode_rate = encode_events as f64 / encode_secs;
    let ours_rate = 2.0 * events as f64 / ours_secs;
    let peer_rate = 2.0 * events as f64 / peer_secs;
    println!(
        "produce benchmark: 10-column row, {avg_bytes:.0} bytes key+value on the wire (before compression)"
    );
    println!("broker {brokers}, 4 partitions, idempotent, acks=all, zstd, linger.ms=20");
    println!("{:<58} {:>10} {:>14}", "stage", "events", "events/s");
    println!(
        "{:<58} {:>10} {:>14.0}",
        "encode only (1 core, framed Avro key+value)", encode_events, encode_rate
    );
    println!(
        "{:<58} {:>10} {:>14.0}",
        "peer: plain librdkafka producer, pre-encoded (2 runs)",
        2 * events,
        peer_rate
    );
    println!(
        "{:<58} {:>10} {:>14.0}",
        "tidewater: encode + produce + tracking (2 runs)",
        2 * events,
        ours_rate
    );
    println!("ratio tidewater / peer: {:.2}", ours_rate / peer_rate);
    println!("peak RSS: {:.0} MB", proc::peak_rss_mb(None));
}
