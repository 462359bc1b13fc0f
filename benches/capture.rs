//! Postgres capture throughput, side by side with Postgres's own tools in
//! the same run.
//!
//!   cargo bench --bench capture            # services from scripts/services.sh
//!   BENCH_UPDATES=100000 BENCH_SNAPSHOT_ROWS=1000000 cargo bench --bench capture
//!   BENCH_INSERTS=2000000 BENCH_UPDATES=1000000 BENCH_SNAPSHOT_ROWS=10000000 cargo bench --bench capture  # doubled
//!
//! Streaming ("stream mix" without the deletes): two slots are created, then
//! 1M inserts in one transaction and 500k updates in transactions of 100 are
//! written to a 6-column `orders` table. Then the same WAL range is read by
//! 1. peer: `pg_recvlogical` with pgoutput (proto 1) to `/dev/null`, up to
//!    the end LSN of the workload;
//! 2. tidewater: the daemon (`tidewater run --role capture`, the release
//!    binary), from its slot into Kafka, until the slot's
//!    `confirmed_flush_lsn` (moved only for what Kafka acknowledged) reaches
//!    the same end LSN;
//! 3. peer again (a third slot), to show the drift between runs.
//!
//! Snapshot: a 5M-row table read by `COPY … TO STDOUT (FORMAT binary)` to
//! `/dev/null` (peer), and by the daemon's initial snapshot into Kafka, timed
//! from start to its "snapshot done" log line.
//!
//! Each side is its own process: peak RSS (VmHWM) and CPU seconds of the
//! daemon are read from /proc just before it is stopped. Not a pass/fail
//! test; it prints the figures and the ratios.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "benchmark glue"
)]

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/orders.rs"]
mod orders;
#[path = "common/peer.rs"]
mod peer;
#[path = "common/proc.rs"]
mod proc;

use std::path::Path;
use std::process::{Command, Stdio};

use daemon::{brokers, env_or};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use tidewater::config::model::KafkaConfig;
use tidewater::event::change::{
    ChangeEvent, Op, Position, SnapshotMarker, Source, SourceDetail, Transaction,
};
use tidewater::event::datum::{Datum, Row};
use tidewater::event::decimal::Decimal;
use tidewater::event::table_id::TableId;
use tidewater::kafka::avro::schema::Connector;
use tidewater::kafka::producer::EventSerializer;
use tidewater::kafka::schemas::SchemaStore;

fn pg_url() -> String {
    env_or(
        "TIDEWATER_PG_URL",
        "postgres://tidewater:tidewater@127.0.0.1:5432/tidewater",
    )
}

async fn connect() -> Client {
    let (client, conn) = tokio_postgres::connect(&pg_url(), NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("postgres does not answer ({e}); run `scripts/services.sh up` first")
        });
    tokio::spawn(conn);
    client
}

fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

async fn current_lsn(pg: &Client) -> (String, u64) {
    let text: String = pg
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let lsn = parse_lsn(&text);
    (text, lsn)
}

fn pipeline(
    dir: &Path,
    name: &str,
    table: &str,
    snapshot: &str,
    publication: &str,
) -> std::path::PathBuf {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &file,
        format!(
            "name: {name}\nsource:\n  type: postgres\n  url: {}\n  tls:\n    mode: disable\n  snapshot: {snapshot}\n{publication}  snapshot_chunk_rows: 100000\n  tables:\n    - name: {table}\nkafka:\n  brokers: {}\n  topic_prefix: {name}\n  topic_partitions: 4\n{}",
            pg_url(),
            brokers(),
            // BENCH_KAFKA_PROPERTIES="k: v, k: v": librdkafka tuning to try.
            std::env::var("BENCH_KAFKA_PROPERTIES")
                .map(|p| format!("  properties: {{{p}}}\n"))
                .unwrap_or_default()
        ),
    )
    .unwrap();
    file
}

/// `pg_recvlogical` from `slot` to `/dev/null` up to `end`: seconds.
fn recvlogical(slot: &str, publication: &str, end: &str) -> f64 {
    let started = Instant::now();
    let status = Command::new("pg_recvlogical")
        .args(["-d", &pg_url(), "--slot", slot, "--start", "--no-loop"])
        .args(["-o", "proto_version=1", "-o"])
        .arg(format!("publication_names={publication}"))
        .args(["-f", "/dev/null", "-E", end])
        .status()
        .expect("pg_recvlogical (PostgreSQL client tools) is needed");
    assert!(status.success(), "pg_recvlogical failed: {status}");
    started.elapsed().as_secs_f64()
}

/// The workload's events as tidewater encodes them (the `orders` shape,
/// `after` only as pgoutput sends with REPLICA IDENTITY DEFAULT).
async fn encoded_events(
    kafka: &KafkaConfig,
    prefix: &str,
    inserts: u64,
    updates: u64,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let table = orders::orders(TableId::new(prefix, "orders"), "tidewater");
    let mut serializer = EventSerializer::new(
        SchemaStore::new(kafka).unwrap(),
        Connector::Postgres,
        prefix,
    );
    let entry = serializer.prepare(&table).await.unwrap().clone();
    let (mut key, mut value) = (Vec::new(), Vec::new());
    (0..inserts + updates)
        .map(|i| {
            let n = if i < inserts { i + 1 } else { i - inserts + 1 };
            let op = if i < inserts { Op::Create } else { Op::Update };
            let row = Row(vec![
                Datum::Int(n as i64),
                Datum::Int((n % 10_000) as i64),
                Datum::Text(if i < inserts { "new" } else { "paid" }.into()),
                Datum::Decimal(Decimal::from_i128(i128::from(n % 100_000))),
                Datum::Micros(1_767_225_600_000_000 + n as i64 * 1_000_000),
                Datum::Text(format!(r#"{{"qty": {}, "sku": {}}}"#, n % 7, n % 977)),
            ]);
            let lsn = 0x8000_0000 + i / 100 * 4096;
            let event = ChangeEvent {
                table: table.clone(),
                op,
                position: Position::new(lsn, i % 100),
                before: None,
                after: Some(row),
                source: Source {
                    name: prefix.into(),
                    db: "tidewater".into(),
                    schema: prefix.into(),
                    table: "orders".into(),
                    commit_ts_us: 1_767_225_600_000_000 + i as i64,
                    snapshot: SnapshotMarker::False,
                    detail: SourceDetail::Postgres {
                        lsn,
                        tx_id: Some(1000 + (i / 100) as u32),
                    },
                },
                transaction: Some(Transaction {
                    id: format!("{}:{lsn}", 1000 + i / 100),
                    total_order: i % 100 + 1,
                    data_collection_order: i % 100 + 1,
                }),
                ts_us: 1_767_225_600_000_000 + i as i64,
            };
            serializer
                .encode(&entry, &event, &mut key, &mut value)
                .unwrap();
            (key.clone(), value.clone())
        })
        .collect()
}

async fn streaming(pg: &Client, dir: &Path, s: &str, inserts: u64, updates: u64) {
    let publication = format!("{s}_pub");
    pg.batch_execute(&format!(
        "CREATE TABLE {s}.orders (id bigserial PRIMARY KEY, customer_id bigint, status text, \
         amount numeric(12,2), created_at timestamptz, payload jsonb);
         CREATE PUBLICATION {publication} FOR TABLE {s}.orders;"
    ))
    .await
    .unwrap();
    let ours = format!("{s}_stream");
    for slot in [
        format!("{s}_peer1"),
        format!("{s}_peer2"),
        format!("tidewater_{ours}"),
    ] {
        pg.execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .unwrap();
    }
    let started = Instant::now();
    pg.batch_execute(&format!(
        "INSERT INTO {s}.orders (customer_id, status, amount, created_at, payload) \
         SELECT g % 10000, 'new', (g % 100000) / 100.0, timestamptz '2026-01-01' + g * interval '1 second', \
         jsonb_build_object('sku', g % 977, 'qty', g % 7) FROM generate_series(1, {inserts}) g"
    ))
    .await
    .unwrap();
    let batches = updates / 100;
    pg.batch_execute(&format!(
        "DO $$ BEGIN FOR i IN 0..{} LOOP \
           UPDATE {s}.orders SET status = 'paid', amount = amount + 1 WHERE id > i * 100 AND id <= (i + 1) * 100; \
           COMMIT; END LOOP; END $$",
        batches.saturating_sub(1)
    ))
    .await
    .unwrap();
    let (end_text, end) = current_lsn(pg).await;
    let events = inserts + batches * 100;
    println!(
        "workload written in {:.1} s: {events} row changes, WAL end {end_text}",
        started.elapsed().as_secs_f64()
    );

    let peer1 = recvlogical(&format!("{s}_peer1"), &publication, &end_text);
    println!(
        "  peer pg_recvlogical (1st)  {peer1:7.2} s  {:>9.0} events/s",
        events as f64 / peer1
    );

    // The publication must exist before the slot's start: pgoutput reads it
    // from the catalog as of each change.
    let config = pipeline(
        dir,
        &ours,
        &format!("{s}.orders"),
        "never",
        &format!("  publication: {publication}\n"),
    );
    let log = dir.join("stream.log");
    let started = Instant::now();
    let mut child = daemon::capture(&config, &log, "127.0.0.1:0");
    // BENCH_PERF=<file>: a CPU profile of the daemon while it streams.
    let mut perf = std::env::var("BENCH_PERF").ok().map(|out| {
        Command::new("perf")
            .args(["record", "-F", "499", "-g", "-o", &out, "-p"])
            .arg(child.id().to_string())
            .args(["--", "sleep", "15"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    });
    let (ours_secs, rss, cpu) = loop {
        let lsn: Option<String> = pg
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&format!("tidewater_{ours}")],
            )
            .await
            .unwrap()
            .get(0);
        if lsn.as_deref().map(parse_lsn).is_some_and(|l| l >= end) {
            let secs = started.elapsed().as_secs_f64();
            let (rss, cpu) = (
                proc::peak_rss_mb(Some(child.id())),
                proc::cpu_seconds(Some(child.id())),
            );
            break (secs, rss, cpu);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the daemon exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    daemon::stop(&mut child);
    if let Some(perf) = perf.as_mut() {
        perf.wait().unwrap();
    }
    println!(
        "  tidewater into Kafka       {ours_secs:7.2} s  {:>9.0} events/s  peak RSS {rss:.0} MB  CPU {cpu:.1} s ({:.0} events per CPU second)",
        events as f64 / ours_secs,
        events as f64 / cpu.max(0.01)
    );

    let peer2 = recvlogical(&format!("{s}_peer2"), &publication, &end_text);
    println!(
        "  peer pg_recvlogical (2nd)  {peer2:7.2} s  {:>9.0} events/s",
        events as f64 / peer2
    );

    // The broker's own ceiling: the same number of messages, encoded as
    // tidewater encodes these rows, from a plain librdkafka producer.
    let mut kafka = KafkaConfig::with_brokers(brokers());
    kafka.topic_partitions = 4;
    let prepared = encoded_events(&kafka, &format!("{s}_ceiling"), inserts, batches * 100).await;
    let bytes: usize = prepared.iter().map(|(k, v)| k.len() + v.len()).sum();
    let ceiling = peer::run_peer(&kafka, &format!("{s}_ceiling.orders"), &prepared).await;
    drop(prepared);
    println!(
        "  broker ceiling (librdkafka) {ceiling:6.2} s  {:>9.0} events/s  ({:.0} bytes key+value per message)",
        events as f64 / ceiling,
        bytes as f64 / events as f64
    );
    let peer = (peer1 + peer2) / 2.0;
    println!(
        "streaming ratio (tidewater / mean of the pg_recvlogical runs, events/s): {:.2}x; tidewater / broker ceiling: {:.2}x",
        peer / ours_secs,
        ceiling / ours_secs
    );
    for slot in [format!("{s}_peer1"), format!("{s}_peer2")] {
        pg.execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .unwrap();
    }
}

async fn snapshot(pg: &Client, dir: &Path, s: &str, rows: u64) {
    let started = Instant::now();
    pg.batch_execute(&format!(
        "CREATE TABLE {s}.snap (id bigint PRIMARY KEY, customer_id bigint, status text, \
         amount numeric(12,2), created_at timestamptz, payload jsonb);
         INSERT INTO {s}.snap SELECT g, g % 10000, 'new', (g % 100000) / 100.0, \
         timestamptz '2026-01-01' + g * interval '1 second', jsonb_build_object('sku', g % 977, 'qty', g % 7) \
         FROM generate_series(1, {rows}) g;"
    ))
    .await
    .unwrap();
    pg.batch_execute(&format!("VACUUM ANALYZE {s}.snap"))
        .await
        .unwrap();
    println!(
        "snapshot table of {rows} rows written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let copy = || {
        let started = Instant::now();
        let status = Command::new("psql")
            .arg(pg_url())
            .args(["-X", "-q", "-c"])
            .arg(format!("COPY {s}.snap TO STDOUT (FORMAT binary)"))
            .stdout(Stdio::null())
            .status()
            .expect("psql is needed");
        assert!(status.success());
        started.elapsed().as_secs_f64()
    };
    let peer1 = copy();
    println!(
        "  peer COPY binary (1st)     {peer1:7.2} s  {:>9.0} rows/s",
        rows as f64 / peer1
    );
    let name = format!("{s}_snap");
    let config = pipeline(dir, &name, &format!("{s}.snap"), "initial", "");
    let log = dir.join("snapshot.log");
    let started = Instant::now();
    let mut child = daemon::capture(&config, &log, "127.0.0.1:0");
    let (secs, rss, cpu) = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("snapshot done") {
            let secs = started.elapsed().as_secs_f64();
            let (rss, cpu) = (
                proc::peak_rss_mb(Some(child.id())),
                proc::cpu_seconds(Some(child.id())),
            );
            break (secs, rss, cpu);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the daemon exited ({status}): {text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    daemon::stop(&mut child);
    println!(
        "  tidewater into Kafka       {secs:7.2} s  {:>9.0} rows/s  peak RSS {rss:.0} MB  CPU {cpu:.1} s ({:.0} rows per CPU second)",
        rows as f64 / secs,
        rows as f64 / cpu.max(0.01)
    );
    let peer2 = copy();
    println!(
        "  peer COPY binary (2nd)     {peer2:7.2} s  {:>9.0} rows/s",
        rows as f64 / peer2
    );
    println!(
        "snapshot ratio (tidewater / mean of the peer runs, rows/s): {:.2}x",
        (peer1 + peer2) / 2.0 / secs
    );
    pg.execute(
        "SELECT pg_drop_replication_slot($1)",
        &[&format!("tidewater_{name}")],
    )
    .await
    .unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("capture benchmark: run it with `cargo bench --bench capture`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pg = connect().await;
        let s = format!("capbench_{}", std::process::id());
        pg.batch_execute(&format!("CREATE SCHEMA {s}"))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let inserts: u64 = env_or("BENCH_INSERTS", "1000000").parse().unwrap();
        let updates: u64 = env_or("BENCH_UPDATES", "500000").parse().unwrap();
        let rows: u64 = env_or("BENCH_SNAPSHOT_ROWS", "5000000").parse().unwrap();
        if std::env::var("BENCH_ONLY").as_deref() != Ok("snapshot") {
            streaming(&pg, dir.path(), &s, inserts, updates).await;
        }
        if std::env::var("BENCH_ONLY").as_deref() != Ok("streaming") {
            snapshot(&pg, dir.path(), &s, rows).await;
        }
        let slots = pg
            .query(
                "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE $1",
                &[&format!("%{s}%")],
            )
            .await
            .unwrap();
        for slot in slots {
            let name: String = slot.get(0);
            let _ = pg
                .execute("SELECT pg_drop_replication_slot($1)", &[&name])
                .await;
        }
        pg.batch_execute(&format!(
            "DROP SCHEMA {s} CASCADE; DROP PUBLICATION IF EXISTS {s}_pub; \
             DROP PUBLICATION IF EXISTS tidewater_{s}_stream; DROP PUBLICATION IF EXISTS tidewater_{s}_snap"
        ))
        .await
        .unwrap();
    });
}
