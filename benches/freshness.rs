//! Freshness, end to end: from a Postgres commit to the row being readable
//! in the Hudi table, at a steady write rate.
//!
//!   cargo bench --bench freshness            # services from scripts/services.sh
//!   BENCH_RATE=5000 BENCH_SECS=60 BENCH_COMMIT_SECS=5 cargo bench --bench freshness
//!
//! A writer commits `BENCH_RATE / 10` inserts every 100 ms into a Postgres
//! table for `BENCH_SECS`, noting when each transaction's COMMIT returned
//! and the largest id in it. The daemon (`tidewater run --role all`, the
//! release binary) captures and sinks to a local-directory lake with
//! `commit_interval_secs = BENCH_COMMIT_SECS`. A watcher polls the table's
//! timeline every 50 ms; for each completed commit it reads the `id` column
//! of the files the commit wrote: from that moment every id up to their
//! largest is readable. A transaction's freshness is the time from its
//! COMMIT to the first lake commit that makes its largest id readable.
//! Prints p50, p99 and the maximum, with the rate achieved and the daemon's
//! CPU. Not a pass/fail test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "benchmark glue"
)]

#[path = "common/proc.rs"]
mod proc;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::Int64Array;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio_postgres::NoTls;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The largest `id` in a base file.
fn max_id(file: &Path) -> i64 {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap()).unwrap();
    let at = builder
        .parquet_schema()
        .columns()
        .iter()
        .position(|c| c.name() == "id")
        .unwrap();
    let mask = ProjectionMask::leaves(builder.parquet_schema(), [at]);
    let reader = builder.with_projection(mask).build().unwrap();
    let mut most = i64::MIN;
    for batch in reader {
        let batch = batch.unwrap();
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        for id in ids.iter().flatten() {
            most = most.max(id);
        }
    }
    most
}

/// New completed commits of the table at `table`: (instant, largest id
/// readable once it completed).
fn new_commits(table: &Path, seen: &mut BTreeSet<String>) -> Vec<(String, i64)> {
    let Ok(entries) = std::fs::read_dir(table.join(".hoodie")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".commit") && n.len() > ".commit".len())
        .filter(|n| !seen.contains(n))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let text = std::fs::read_to_string(table.join(".hoodie").join(&name)).unwrap();
        let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut most = i64::MIN;
        if let Some(parts) = meta["partitionToWriteStats"].as_object() {
            for stats in parts.values() {
                for s in stats.as_array().into_iter().flatten() {
                    if let Some(path) = s["path"].as_str().filter(|p| p.ends_with(".parquet")) {
                        most = most.max(max_id(&table.join(path)));
                    }
                }
            }
        }
        seen.insert(name.clone());
        out.push((name, most));
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("freshness benchmark: run it with `cargo bench --bench freshness`");
        return;
    }
    let rate: u64 = env_or("BENCH_RATE", "5000").parse().unwrap();
    let secs: u64 = env_or("BENCH_SECS", "60").parse().unwrap();
    let interval: u64 = env_or("BENCH_COMMIT_SECS", "5").parse().unwrap();
    let url = env_or(
        "TIDEWATER_PG_URL",
        "postgres://tidewater:tidewater@127.0.0.1:5432/tidewater",
    );
    let brokers = env_or("TIDEWATER_KAFKA_BROKERS", "127.0.0.1:9092");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (pg, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(conn);
        let s = format!("fresh_{}", std::process::id());
        pg.batch_execute(&format!(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.events (id bigint PRIMARY KEY, at timestamptz NOT NULL, note text)"
        ))
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        let file = dir.path().join("fresh.yaml");
        std::fs::write(
            &file,
            format!(
                "name: {s}\nsource:\n  type: postgres\n  url: {url}\n  tls:\n    mode: disable\n  tables:\n    - name: {s}.events\n      partition_by: {{ column: at, granularity: day }}\nkafka:\n  brokers: {brokers}\n  topic_prefix: {s}\n  topic_partitions: 4\nlake:\n  uri: file://{}\n  commit_interval_secs: {interval}\n",
                lake.display()
            ),
        )
        .unwrap();
        let log = dir.path().join("daemon.log");
        let mut daemon = Command::new(env!("CARGO_BIN_EXE_tidewater"))
            .args(["run", "--role", "all", "--standalone", "--admin-addr", "127.0.0.1:0"])
            .arg(&file)
            .env("TIDEWATER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // Streaming once the slot exists and the (empty) snapshot is done.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("streaming")
        {
            assert!(Instant::now() < deadline, "capture did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cpu_before = proc::cpu_seconds(Some(daemon.id()));

        let table = lake.join(format!("{s}_events"));
        // The last id written, once the writer is done (0 before).
        let last_id = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let watcher = {
            let table = table.clone();
            let last_id = last_id.clone();
            tokio::task::spawn_blocking(move || {
                let mut seen = BTreeSet::new();
                let mut visible: Vec<(Instant, i64)> = Vec::new();
                let started = Instant::now();
                loop {
                    for (_, most) in new_commits(&table, &mut seen) {
                        visible.push((Instant::now(), most));
                    }
                    let last = last_id.load(std::sync::atomic::Ordering::SeqCst);
                    if last > 0 && visible.iter().any(|(_, m)| *m >= last) {
                        return visible;
                    }
                    assert!(started.elapsed() < Duration::from_secs(600), "the lake never caught up");
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };

        // The writer: a transaction every 100 ms.
        let per_tx = (rate / 10).max(1);
        let mut committed: Vec<(Instant, i64)> = Vec::new();
        let mut next_id = 0i64;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let started = Instant::now();
        for _ in 0..secs * 10 {
            tick.tick().await;
            let first = next_id + 1;
            next_id += per_tx as i64;
            pg.batch_execute(&format!(
                "INSERT INTO {s}.events SELECT g, clock_timestamp(), 'payload ' || g FROM generate_series({first}, {next_id}) g"
            ))
            .await
            .unwrap();
            committed.push((Instant::now(), next_id));
        }
        let wrote = started.elapsed().as_secs_f64();
        last_id.store(next_id, std::sync::atomic::Ordering::SeqCst);
        let visible = watcher.await.unwrap();
        let cpu = proc::cpu_seconds(Some(daemon.id())) - cpu_before;
        Command::new("kill")
            .args(["-TERM", &daemon.id().to_string()])
            .status()
            .unwrap();
        daemon.wait().unwrap();

        let mut lat: Vec<f64> = committed
            .iter()
            .map(|(at, id)| {
                let seen = visible
                    .iter()
                    .find(|(t, most)| *most >= *id && *t >= *at)
                    .map(|(t, _)| *t)
                    .unwrap();
                seen.duration_since(*at).as_secs_f64()
            })
            .collect();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "freshness: {} rows in {} transactions over {wrote:.1} s ({:.0} rows/s achieved, {rate} asked); lake commit interval {interval} s; {} lake commits",
            next_id,
            committed.len(),
            next_id as f64 / wrote,
            visible.len()
        );
        println!(
            "  source commit -> readable in Hudi: p50 {:.2} s, p99 {:.2} s, max {:.2} s (target p99 <= {} s)",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(0.0),
            interval + 5
        );
        println!("  daemon CPU during the run: {cpu:.1} s ({:.0}% of one core)", 100.0 * cpu / wrote);
        let _ = pg
            .batch_execute(&format!(
                "SELECT pg_drop_replication_slot('tidewater_{s}'); DROP PUBLICATION IF EXISTS tidewater_{s}; DROP SCHEMA {s} CASCADE"
            ))
            .await;
    });
}
