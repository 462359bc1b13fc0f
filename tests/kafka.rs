//! The change-event contract against the real broker: events of every type
//! through the producer and back through the decoder, key placement as Java
//! producers place keys, truncate barriers in every partition, tombstones,
//! and a consumer no one here wrote (Python confluent-kafka + fastavro).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test glue"
)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value as Json, json};

use tidewater::config::model::KafkaConfig;
use tidewater::event::change::{ChangeEvent, Op, Position};
use tidewater::event::datum::Datum;
use tidewater::event::sample::{self, Rng};
use tidewater::event::schema::TableSchema;
use tidewater::event::table_id::TableId;
use tidewater::event::types::ColumnType;
use tidewater::kafka::avro::framing::SchemaRef;
use tidewater::kafka::avro::schema::{Connector, avro_name};
use tidewater::kafka::client::client_config;
use tidewater::kafka::consumer::{Decoded, EventDecoder};
use tidewater::kafka::producer::{EventProducer, EventSerializer, ProducerOptions};
use tidewater::kafka::schemas::SchemaStore;
use tidewater::kafka::topic::table_topic;

const PARTITIONS: u32 = 8;

fn kafka() -> KafkaConfig {
    let mut k = KafkaConfig::with_brokers(common::kafka_brokers());
    k.topic_partitions = PARTITIONS;
    k
}

fn producer(kafka: &KafkaConfig, prefix: &str) -> EventProducer {
    let store = SchemaStore::new(kafka).unwrap();
    let serializer = EventSerializer::new(store, Connector::Postgres, prefix);
    EventProducer::new(
        &client_config(kafka),
        serializer,
        ProducerOptions::from_config(kafka),
    )
    .unwrap()
}

/// Produces `txns` transactions of `per_txn` random events; returns them.
async fn produce(
    producer: &mut EventProducer,
    table: &Arc<TableSchema>,
    rng: &mut Rng,
    txns: u64,
    per_txn: u64,
    fix: impl Fn(&mut ChangeEvent),
) -> Vec<ChangeEvent> {
    let mut events = Vec::new();
    for t in 0..txns {
        for o in 0..per_txn {
            let mut e = sample::event(rng, table, Position::new(1_000 + t, o));
            fix(&mut e);
            producer.send(&e).await.unwrap();
            events.push(e);
        }
        producer.end_of_transaction(Position::new(1_000 + t, u64::MAX));
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_every_type_round_trip_through_the_broker() {
    let kafka = kafka();
    let prefix = common::unique_name("evt");
    let seed = Rng::seed_from_env();
    println!("seed {seed} (replay with TIDEWATER_SEED={seed})");
    let mut rng = Rng::new(seed);
    let table = Arc::new(sample::all_types_table(TableId::new("public", "all_types")));
    let mut producer = producer(&kafka, &prefix);
    let events = produce(&mut producer, &table, &mut rng, 300, 10, |_| {}).await;
    producer.flush().await.unwrap();
    let tracker = producer.tracker();
    assert_eq!(
        tracker.acknowledged_commit(),
        Some(Position::new(1_299, u64::MAX))
    );
    assert_eq!(tracker.in_flight(), 0);

    let topic = table_topic(&prefix, &table.id);
    let reads = common::read_topic(&kafka.brokers, &topic);
    // A fresh store: schemas must be found through the schemas topic.
    let mut decoder = EventDecoder::new(SchemaStore::new(&kafka).unwrap());
    let mut decoded: BTreeMap<Position, ChangeEvent> = BTreeMap::new();
    let mut tombstones = 0;
    let mut key_partition: HashMap<Vec<u8>, i32> = HashMap::new();
    let mut last_in_partition: HashMap<i32, (i64, Position)> = HashMap::new();
    for r in &reads {
        let key = r.key.clone().expect("every message has a key");
        let expected = common::java_partition(&key, PARTITIONS as i32);
        assert_eq!(
            r.partition, expected,
            "key placed where Java's partitioner places it"
        );
        if let Some(p) = key_partition.insert(key.clone(), r.partition) {
            assert_eq!(p, r.partition, "one key, one partition");
        }
        match decoder
            .decode(
                &topic,
                r.partition,
                r.offset,
                r.key.as_deref(),
                r.value.as_deref(),
            )
            .await
            .unwrap()
        {
            Decoded::Event(e) => {
                // Sent in position order: each partition holds them in it.
                if let Some((offset, before)) =
                    last_in_partition.insert(r.partition, (r.offset, e.position))
                {
                    assert!(
                        before < e.position,
                        "partition {}: {before} at offset {offset} before {} at offset {}",
                        r.partition,
                        e.position,
                        r.offset
                    );
                }
                assert!(decoded.insert(e.position, e).is_none(), "an event twice");
            }
            Decoded::Tombstone { table: t, key: k } => {
                assert_eq!(t.as_deref(), Some(&*table));
                assert!(k.is_some());
                tombstones += 1;
            }
        }
    }
    assert_eq!(decoded.len(), events.len(), "seed {seed}");
    for e in &events {
        assert_eq!(
            decoded.get(&e.position),
            Some(e),
            "seed {seed}: event at {}",
            e.position
        );
    }
    let deletes = events.iter().filter(|e| e.op == Op::Delete).count();
    assert_eq!(tombstones, deletes, "a tombstone after every delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncate_is_a_barrier_in_every_partition() {
    let kafka = kafka();
    let prefix = common::unique_name("trunc");
    let mut rng = Rng::new(11);
    let table = Arc::new(sample::all_types_table(TableId::new("public", "t")));
    let mut producer = producer(&kafka, &prefix);
    let mut truncate = sample::event(&mut rng, &table, Position::new(50, 0));
    truncate.op = Op::Truncate;
    truncate.before = None;
    truncate.after = None;
    producer.send(&truncate).await.unwrap();
    producer.end_of_transaction(Position::new(50, u64::MAX));
    producer.flush().await.unwrap();
    let topic = table_topic(&prefix, &table.id);
    let reads = common::read_topic(&kafka.brokers, &topic);
    let mut partitions: Vec<i32> = reads.iter().map(|r| r.partition).collect();
    partitions.sort_unstable();
    assert_eq!(partitions, (0..PARTITIONS as i32).collect::<Vec<_>>());
    let mut decoder = EventDecoder::new(SchemaStore::new(&kafka).unwrap());
    for r in &reads {
        assert!(r.key.is_none());
        match decoder
            .decode(&topic, r.partition, r.offset, None, r.value.as_deref())
            .await
            .unwrap()
        {
            Decoded::Event(e) => {
                assert_eq!(e.op, Op::Truncate);
                assert_eq!(e.position, Position::new(50, 0));
                assert_eq!(*e.table, *table);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_message_is_a_clear_error() {
    let kafka = kafka();
    let mut decoder = EventDecoder::new(SchemaStore::new(&kafka).unwrap());
    let err = decoder
        .decode("t", 3, 42, Some(b"k"), Some(br#"{"json": true}"#))
        .await
        .unwrap_err();
    assert_eq!(err.partition, 3);
    let text = err.to_string();
    assert!(
        text.starts_with("message t/3@42 does not decode: key:"),
        "{text}"
    );
    // A well-framed message whose fingerprint nobody published.
    let mut value = Vec::new();
    SchemaRef::Fingerprint(0xdead_beef).write_header(&mut value);
    let mut key = Vec::new();
    SchemaRef::Fingerprint(0xbeef_dead).write_header(&mut key);
    let err = decoder
        .decode("t", 0, 7, Some(&key), Some(&value))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is not in _tidewater_schemas"),
        "{err}"
    );
    assert!(!err.is_retryable());
}

/// Keeps values inside what Python's datetime and date can hold.
fn python_safe(d: &mut Datum, ty: &ColumnType) {
    match (d, ty) {
        (Datum::Date(days), _) if !(-719_162..=2_932_896).contains(days) => *days = 0,
        (Datum::Micros(m), ColumnType::Timestamp | ColumnType::TimestampTz)
            if !(-62_135_596_800_000_000..=253_402_300_799_999_999).contains(m) =>
        {
            *m = 0
        }
        (Datum::Micros(m), ColumnType::Time) if *m >= 86_400_000_000 => *m = 0,
        (Datum::Array(items), ColumnType::Array { element, dims }) => {
            let inner = if *dims > 1 {
                ColumnType::Array {
                    element: element.clone(),
                    dims: dims - 1,
                }
            } else {
                (**element).clone()
            };
            for i in items {
                python_safe(i, &inner);
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_confluent_kafka_and_fastavro_read_our_events() {
    let kafka = kafka();
    let prefix = common::unique_name("interop");
    let seed = Rng::seed_from_env();
    println!("seed {seed} (replay with TIDEWATER_SEED={seed})");
    let mut rng = Rng::new(seed);
    let table = Arc::new(sample::all_types_table(TableId::new("public", "all_types")));
    let mut producer = producer(&kafka, &prefix);
    let table_for_fix = table.clone();
    let events = produce(&mut producer, &table, &mut rng, 40, 5, move |e| {
        for row in [&mut e.before, &mut e.after].into_iter().flatten() {
            for (d, c) in row.0.iter_mut().zip(&table_for_fix.columns) {
                python_safe(d, &c.ty);
            }
        }
    })
    .await;
    producer.flush().await.unwrap();

    let topic = table_topic(&prefix, &table.id);
    let python = std::env::var("TIDEWATER_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/read_events.py");
    let out = std::process::Command::new(&python)
        .args([script, &kafka.brokers, &topic])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {python} (set TIDEWATER_PYTHON; scripts/services.sh env prints it): {e}"
            )
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Json> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    let by_position: HashMap<(u64, u64), &ChangeEvent> = events
        .iter()
        .map(|e| ((e.position.commit, e.position.ordinal), e))
        .collect();
    let mut seen = 0;
    for line in &lines {
        let value = &line["value"];
        if value.is_null() {
            continue; // a tombstone
        }
        let source = &value["source"];
        let pos = (
            source["commit_position"].as_u64().unwrap(),
            source["event_ordinal"].as_u64().unwrap(),
        );
        let e = by_position[&pos];
        seen += 1;
        assert_eq!(value["op"], json!(e.op.code()));
        assert_eq!(source["connector"], json!("postgresql"));
        assert_eq!(source["table"], json!("all_types"));
        assert_eq!(source["snapshot"], json!(e.source.snapshot.as_str()));
        assert_eq!(source["ts_us"], json!(e.source.commit_ts_us));
        for (name, row) in [("before", &e.before), ("after", &e.after)] {
            match row {
                None => assert!(value[name].is_null(), "{name} at {pos:?}"),
                Some(row) => {
                    for (d, c) in row.0.iter().zip(&table.columns) {
                        assert_eq!(
                            value[name][avro_name(&c.name)],
                            common::plain(d, &c.ty),
                            "seed {seed}: {name}.{} at {pos:?}",
                            c.name
                        );
                    }
                }
            }
        }
        let unchanged: Vec<String> = e
            .after
            .iter()
            .flat_map(|r| r.0.iter().zip(&table.columns))
            .filter(|(d, _)| matches!(d, Datum::Unchanged))
            .map(|(_, c)| c.name.clone())
            .collect();
        if unchanged.is_empty() {
            assert!(value["unchanged_columns"].is_null());
        } else {
            assert_eq!(value["unchanged_columns"], json!(unchanged));
        }
        let key = e.key_row().unwrap();
        assert_eq!(
            line["key"]["id"],
            common::plain(
                &key.0[0],
                &ColumnType::Int {
                    bits: 64,
                    signed: true
                }
            )
        );
    }
    assert_eq!(seen, events.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_events_as_json_lines() {
    let kafka = kafka();
    let prefix = common::unique_name("tail");
    let mut rng = Rng::new(21);
    let table = Arc::new(sample::all_types_table(TableId::new("public", "tailed")));
    let mut producer = producer(&kafka, &prefix);
    let events = produce(&mut producer, &table, &mut rng, 3, 4, |_| {}).await;
    producer.flush().await.unwrap();
    let topic = table_topic(&prefix, &table.id);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args([
            "tail",
            &topic,
            "--brokers",
            &kafka.brokers,
            "--from-beginning",
            "--idle-exit-secs",
            "5",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Json> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let deletes = events.iter().filter(|e| e.op == Op::Delete).count();
    assert_eq!(
        lines.len(),
        events.len() + deletes,
        "events plus tombstones"
    );
    for e in &events {
        let line = lines
            .iter()
            .find(|l| l["event"]["position"] == json!(e.position.to_string()))
            .unwrap_or_else(|| panic!("no line for {}", e.position));
        assert_eq!(line["event"], tidewater::event::json::event_json(e));
    }
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["tombstone"] == json!(true))
            .count(),
        deletes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_decodes_with_the_schema_it_was_written_with() {
    let kafka = kafka();
    let prefix = common::unique_name("evolve");
    let mut rng = Rng::new(31);
    let v1 = Arc::new(sample::all_types_table(TableId::new("public", "t")));
    let mut v2 = (*v1).clone();
    v2.columns.push(tidewater::event::schema::Column::new(
        "added",
        ColumnType::Text,
        true,
    ));
    let v2 = Arc::new(v2);
    let mut producer = producer(&kafka, &prefix);
    let mut first = produce(&mut producer, &v1, &mut rng, 2, 3, |_| {}).await;
    let mut later = Vec::new();
    for o in 0..3 {
        let mut e = sample::event(&mut rng, &v2, Position::new(2_000, o));
        e.op = Op::Create;
        e.before = None;
        e.after = Some(sample::row(&mut rng, &v2, 1 + o as i64));
        producer.send(&e).await.unwrap();
        later.push(e);
    }
    producer.flush().await.unwrap();
    first.append(&mut later);
    let topic = table_topic(&prefix, &v1.id);
    let mut widths = BTreeMap::new();
    for (_, e) in common::topic_events(&kafka, &topic).await {
        let expected = first.iter().find(|x| x.position == e.position).unwrap();
        assert_eq!(&e, expected);
        widths.insert(e.position, e.table.columns.len());
    }
    assert_eq!(widths.len(), first.len());
    assert!(widths.iter().all(|(p, w)| *w
        == if p.commit == 2_000 {
            v1.columns.len() + 1
        } else {
            v1.columns.len()
        }));
}

/// The sink selects on `next()` and a commit timer: a `next()` cancelled
/// while it decodes (waiting for a schema) must not lose the message it
/// received. Each round uses a fresh decoder, so the first messages always
/// wait for their schemas, and a timer of a few milliseconds cancels often.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_consumer_cancelled_mid_message_loses_nothing() {
    use rdkafka::Offset;
    use tidewater::kafka::consumer::{Membership, Polled, SinkConsumer};
    let kafka = kafka();
    let prefix = common::unique_name("cancel");
    let seed = Rng::seed_from_env();
    println!("seed {seed} (replay with TIDEWATER_SEED={seed})");
    let mut rng = Rng::new(seed);
    let table = Arc::new(sample::all_types_table(TableId::new("public", "c")));
    let mut producer = producer(&kafka, &prefix);
    produce(&mut producer, &table, &mut rng, 4, 10, |e| {
        if e.op == Op::Delete {
            e.op = Op::Update;
            e.after = e.before.clone();
        }
    })
    .await;
    producer.flush().await.unwrap();
    let topic = table_topic(&prefix, &table.id);
    let mut expected: Vec<(i32, i64)> = common::read_topic(&kafka.brokers, &topic)
        .iter()
        .map(|r| (r.partition, r.offset))
        .collect();
    expected.sort_unstable();
    let mut cancelled = 0;
    for round in 0..6 {
        let decoder = EventDecoder::new(SchemaStore::new(&kafka).unwrap());
        let mut consumer = SinkConsumer::new(
            &client_config(&kafka),
            &Membership::Standalone,
            &[topic.as_str()],
            decoder,
        )
        .unwrap();
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while got.len() < expected.len() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: only {got:?} of {expected:?}"
            );
            // Mostly short timers (cancel inside a schema lookup), some long
            // ones (let a lookup finish, cancel later).
            let timer = if rng.chance(80) {
                std::time::Duration::from_micros(200 + rng.below(20_000))
            } else {
                std::time::Duration::from_millis(20 + rng.below(400))
            };
            tokio::select! {
                _ = tokio::time::sleep(timer) => cancelled += 1,
                polled = consumer.next() => match polled.unwrap() {
                    Polled::Assigned(parts) => {
                        let starts: Vec<(String, i32, Offset)> = parts
                            .into_iter()
                            .map(|(t, p)| (t, p, Offset::Beginning))
                            .collect();
                        consumer.start(&starts).unwrap();
                    }
                    Polled::Revoked(_) => {}
                    Polled::Gap { .. } | Polled::Replaced { .. } | Polled::Rewound { .. } => {
                panic!("no messages are deleted or replaced here")
            }
                    Polled::Message { partition, offset, decoded, .. } => {
                        decoded.unwrap();
                        got.push((partition, offset));
                    }
                },
            }
        }
        got.sort_unstable();
        assert_eq!(got, expected, "round {round}: every message once");
    }
    assert!(cancelled > 0, "the timer never cancelled next()");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_consumer_starts_each_partition_where_it_is_told() {
    use rdkafka::Offset;
    use tidewater::kafka::consumer::{Polled, SinkConsumer};
    let kafka = kafka();
    let prefix = common::unique_name("group");
    let mut rng = Rng::new(41);
    let table = Arc::new(sample::all_types_table(TableId::new("public", "g")));
    let mut producer = producer(&kafka, &prefix);
    let events = produce(&mut producer, &table, &mut rng, 20, 10, |e| {
        if e.op == Op::Delete {
            e.op = Op::Update;
            e.after = e.before.clone();
        }
    })
    .await;
    producer.flush().await.unwrap();
    let topic = table_topic(&prefix, &table.id);
    let all = common::read_topic(&kafka.brokers, &topic);
    // The "checkpoint": start every partition at its third message.
    const START: i64 = 2;
    let mut expected: Vec<(i32, i64)> = all
        .iter()
        .filter(|r| r.offset >= START)
        .map(|r| (r.partition, r.offset))
        .collect();
    expected.sort_unstable();

    let decoder = EventDecoder::new(SchemaStore::new(&kafka).unwrap());
    let membership = tidewater::kafka::consumer::Membership::Group {
        group: format!("{prefix}-sink"),
        instance: None,
    };
    let mut consumer = SinkConsumer::new(
        &client_config(&kafka),
        &membership,
        &[topic.as_str()],
        decoder,
    )
    .unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while got.len() < expected.len() {
        let polled = tokio::time::timeout_at(deadline, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {} messages", got.len(), expected.len()))
            .unwrap();
        match polled {
            Polled::Assigned(parts) => {
                let starts: Vec<(String, i32, Offset)> = parts
                    .into_iter()
                    .map(|(t, p)| (t, p, Offset::Offset(START)))
                    .collect();
                consumer.start(&starts).unwrap();
            }
            Polled::Revoked(_) => {}
            Polled::Gap { .. } | Polled::Replaced { .. } | Polled::Rewound { .. } => {
                panic!("no messages are deleted or replaced here")
            }
            Polled::Message {
                partition,
                offset,
                decoded,
                ..
            } => {
                assert!(
                    offset >= START,
                    "partition {partition} delivered offset {offset} before its start"
                );
                let Decoded::Event(e) = decoded.unwrap() else {
                    panic!("no tombstones here")
                };
                assert!(events.contains(&e));
                got.push((partition, offset));
            }
        }
    }
    got.sort_unstable();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_can_go_to_a_dead_letter_topic() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::message::Headers;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use tidewater::kafka::consumer::DeadLetters;
    let kafka = kafka();
    let topic = common::unique_name("foreign");
    let dlq = format!("{topic}.dead_letter");
    let admin: AdminClient<DefaultClientContext> = client_config(&kafka).create().unwrap();
    admin
        .create_topics(
            &[
                NewTopic::new(&topic, 1, TopicReplication::Fixed(1)),
                NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
            ],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let plain: FutureProducer = client_config(&kafka).create().unwrap();
    plain
        .send(
            FutureRecord::to(&topic)
                .key("k")
                .payload(r#"{"not":"avro"}"#),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    let r = &common::read_topic(&kafka.brokers, &topic)[0];
    let mut decoder = EventDecoder::new(SchemaStore::new(&kafka).unwrap());
    let err = decoder
        .decode(
            &topic,
            r.partition,
            r.offset,
            r.key.as_deref(),
            r.value.as_deref(),
        )
        .await
        .unwrap_err();
    let letters = DeadLetters::new(&client_config(&kafka), &dlq).unwrap();
    letters
        .send(&err, r.key.as_deref(), r.value.as_deref())
        .await
        .unwrap();

    // Read the dead letter back with its headers.
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = client_config(&kafka)
        .set("group.id", "dlq-check")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&dlq, 0, rdkafka::Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let m = loop {
        if let Some(m) = c.poll(std::time::Duration::from_secs(1)) {
            break m.unwrap();
        }
    };
    assert_eq!(m.payload(), r.value.as_deref());
    assert_eq!(m.key(), Some(&b"k"[..]));
    let headers = m.headers().unwrap();
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).to_string())
    };
    assert_eq!(header("tidewater.source.topic"), Some(topic.clone()));
    assert_eq!(
        header("tidewater.source.offset"),
        Some(r.offset.to_string())
    );
    assert!(
        header("tidewater.error")
            .unwrap()
            .contains("unknown first byte")
    );
}
