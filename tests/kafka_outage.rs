//! G1 against a real broker outage: 100k events across 8 partitions, the
//! broker stopped halfway. The delivery low-watermark must never pass an
//! event Kafka does not hold, the failure must freeze it, and a rebuilt
//! producer replaying from the acknowledged position must deliver everything.
//!
//! This stops the shared broker, so it is the only test in its binary (cargo
//! runs test binaries one after another).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test glue"
)]

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tidewater::config::model::KafkaConfig;
use tidewater::event::change::{ChangeEvent, Op, Position, SnapshotMarker, Source, SourceDetail};
use tidewater::event::datum::{Datum, Row};
use tidewater::event::schema::{Column, TableSchema};
use tidewater::event::table_id::TableId;
use tidewater::event::types::ColumnType;
use tidewater::kafka::avro::schema::Connector;
use tidewater::kafka::client::client_config;
use tidewater::kafka::producer::{EventProducer, EventSerializer, ProducerOptions};
use tidewater::kafka::schemas::SchemaStore;
use tidewater::kafka::topic::table_topic;

const EVENTS: u64 = 100_000;
const PER_TXN: u64 = 100;

fn services(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh");
    let status = Command::new(script).args(args).status().unwrap();
    assert!(status.success(), "scripts/services.sh {args:?} failed");
}

fn event(table: &Arc<TableSchema>, n: u64) -> ChangeEvent {
    let position = Position::new(10_000 + n / PER_TXN, n % PER_TXN);
    ChangeEvent {
        table: table.clone(),
        op: Op::Create,
        position,
        before: None,
        after: Some(Row(vec![
            Datum::Int(n as i64),
            Datum::Text(format!("row {n}")),
        ])),
        source: Source {
            name: "outage".into(),
            db: "db".into(),
            schema: "public".into(),
            table: "t".into(),
            commit_ts_us: 0,
            snapshot: SnapshotMarker::False,
            detail: SourceDetail::Postgres {
                lsn: position.commit,
                tx_id: None,
            },
        },
        transaction: None,
        ts_us: 0,
    }
}

fn new_producer(kafka: &KafkaConfig, prefix: &str) -> EventProducer {
    let serializer = EventSerializer::new(
        SchemaStore::new(kafka).unwrap(),
        Connector::Postgres,
        prefix,
    );
    let mut options = ProducerOptions::from_config(kafka);
    options.delivery_timeout = Duration::from_secs(8);
    EventProducer::new(&client_config(kafka), serializer, options).unwrap()
}

/// Sends events `from..to`; stops at the first refusal (a producer whose
/// tracker saw a failure refuses further events) and returns it.
async fn send_range(
    producer: &mut EventProducer,
    table: &Arc<TableSchema>,
    from: u64,
    to: u64,
) -> Result<(), tidewater::kafka::producer::ProduceError> {
    for n in from..to {
        producer.send(&event(table, n)).await?;
        if n % PER_TXN == PER_TXN - 1 {
            producer.end_of_transaction(Position::new(10_000 + n / PER_TXN, u64::MAX));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watermark_never_passes_an_unacknowledged_event_and_replay_delivers_all() {
    let mut kafka = KafkaConfig::with_brokers(common::kafka_brokers());
    kafka.topic_partitions = 8;
    let prefix = common::unique_name("outage");
    let table = Arc::new(TableSchema {
        id: TableId::new("public", "t"),
        database: "db".into(),
        columns: vec![
            Column::new(
                "id",
                ColumnType::Int {
                    bits: 64,
                    signed: true,
                },
                false,
            ),
            Column::new("v", ColumnType::Text, true),
        ],
        key: vec![0],
    });
    let topic = table_topic(&prefix, &table.id);

    let mut producer = new_producer(&kafka, &prefix);
    let tracker = producer.tracker();
    // Sample the watermark all along, as a source would read it.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (tracker, sampling) = (tracker.clone(), sampling.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                samples.push(tracker.acknowledged_commit());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            samples
        })
    };

    send_range(&mut producer, &table, 0, EVENTS / 2)
        .await
        .unwrap();
    // Let some of it reach the broker, then take the broker away mid-stream.
    tokio::time::sleep(Duration::from_millis(300)).await;
    services(&["stop", "kafka"]);
    let stopped_at = Instant::now();
    // Refused once a delivery failed: expected, the producer is spent.
    if let Err(e) = send_range(&mut producer, &table, EVENTS / 2, EVENTS).await {
        println!("sending stopped: {e}");
    }
    while tracker.failure().is_none() {
        assert!(
            stopped_at.elapsed() < Duration::from_secs(120),
            "no delivery failure reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let frozen_commit = tracker.acknowledged_commit();
    let frozen = tracker.acknowledged();
    println!(
        "failure: {:?}; watermark frozen at {frozen:?}, commit {frozen_commit:?}",
        tracker.failure()
    );
    // Nothing moves once failed, whatever arrives late.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(tracker.acknowledged_commit(), frozen_commit);
    assert!(
        producer.send(&event(&table, 0)).await.is_err(),
        "a failed producer refuses new events"
    );
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    drop(producer);

    services(&["start", "kafka"]);

    // Every event at or below every watermark ever observed is in Kafka.
    let delivered_positions = || async {
        common::topic_events(&kafka, &topic)
            .await
            .into_iter()
            .map(|(_, e)| e.position)
            .collect::<HashSet<_>>()
    };
    let delivered = delivered_positions().await;
    let max_sample = samples.iter().flatten().max().copied();
    assert!(
        max_sample <= frozen_commit,
        "a sample after the freeze: {max_sample:?} > {frozen_commit:?}"
    );
    if let Some(commit) = frozen_commit {
        let acknowledged_events = (0..EVENTS)
            .map(|n| event(&table, n).position)
            .filter(|p| p.commit <= commit.commit);
        for p in acknowledged_events {
            assert!(
                delivered.contains(&p),
                "event {p} is below the watermark but not in Kafka"
            );
        }
    }
    assert!(
        frozen.is_none_or(|f| f < Position::new(10_000 + EVENTS / PER_TXN, 0)),
        "the watermark reached the end although the broker was down"
    );

    // Rebuild and replay everything after the acknowledged commit.
    let mut producer = new_producer(&kafka, &prefix);
    let from = match frozen_commit {
        Some(c) => (c.commit - 10_000 + 1) * PER_TXN,
        None => 0,
    };
    println!("replaying events {from}..{EVENTS}");
    send_range(&mut producer, &table, from, EVENTS)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(300), producer.flush())
        .await
        .expect("replay flushed in time")
        .unwrap();
    assert_eq!(
        producer.tracker().acknowledged_commit(),
        Some(Position::new(10_000 + EVENTS / PER_TXN - 1, u64::MAX))
    );
    let delivered = delivered_positions().await;
    let missing: Vec<u64> = (0..EVENTS)
        .filter(|n| !delivered.contains(&event(&table, *n).position))
        .collect();
    assert!(
        missing.is_empty(),
        "{} events lost, first {:?}",
        missing.len(),
        missing.first()
    );
}
