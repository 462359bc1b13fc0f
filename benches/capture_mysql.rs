//! MySQL/MariaDB capture throughput, side by side with the peers in the
//! same run.
//!
//!   cargo bench --bench capture_mysql      # services from scripts/services.sh
//!   BENCH_INSERTS=200000 BENCH_UPDATES=100000 cargo bench --bench capture_mysql
//!
//! Workload: 1M inserts in one transaction and 500k updates in transactions
//! of 100, on a 6-column `orders` table (bigint key, bigint, varchar,
//! DECIMAL(12,2), DATETIME(6), JSON). The same binlog range is then read by
//! 1. peer: `mariadb-binlog --read-from-remote-server --base64-output=decode-rows
//!    --verbose` (every row decoded to text) to `/dev/null`;
//! 2. tidewater: the daemon (`tidewater run --role capture`, the bench
//!    build), from the position it recorded before the workload, into Kafka,
//!    until its confirmed position (`tidewater_capture_confirmed_position`,
//!    moved only for what Kafka acknowledged) reaches the end of the
//!    workload;
//! 3. peer: python-mysql-replication (PyPI `mysql-replication`), decoding
//!    every row of the same events (benches/mysql_replication_peer.py);
//! 4. `mariadb-binlog` again, to show the drift between runs.
//!
//! The daemon's peak RSS (VmHWM) and CPU seconds are read from /proc just
//! before it is stopped. Not a pass/fail test; it prints the figures and
//! the ratios.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "benchmark glue"
)]

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/proc.rs"]
mod proc;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon::{brokers, env_or};
use mysql_async::prelude::Queryable;

fn mysql_url() -> String {
    env_or(
        "TIDEWATER_MYSQL_URL",
        "mysql://tidewater:tidewater@127.0.0.1:3306",
    )
}

/// Host, port, user and password of the URL, for the peers.
fn url_parts() -> (String, String, String, String) {
    let url = url::Url::parse(&mysql_url()).unwrap();
    (
        url.host_str().unwrap_or("127.0.0.1").to_string(),
        url.port().unwrap_or(3306).to_string(),
        url.username().to_string(),
        url.password().unwrap_or("").to_string(),
    )
}

/// `SHOW MASTER STATUS`: file and offset.
async fn master_status(conn: &mut mysql_async::Conn) -> (String, u64) {
    let row: (String, u64) = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| (r.get(0).unwrap(), r.get(1).unwrap()))
        .expect("log_bin is on in the benchmark server");
    row
}

/// A binlog position as tidewater's metric shows it: file number × 2^32 +
/// offset.
fn position_of(file: &str, pos: u64) -> u64 {
    let number: u64 = file.rsplit('.').next().unwrap().parse().unwrap();
    (number << 32) | pos
}

/// The binlog files from `first` to `last`, in order.
async fn files_between(conn: &mut mysql_async::Conn, first: &str, last: &str) -> Vec<String> {
    let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.unwrap();
    rows.into_iter()
        .map(|r| r.get::<String, _>(0).unwrap())
        .filter(|f| f.as_str() >= first && f.as_str() <= last)
        .collect()
}

/// `mariadb-binlog` decoding rows from `start` to `end` into /dev/null:
/// seconds.
fn mariadb_binlog(files: &[String], start: u64, end: u64) -> f64 {
    let (host, port, user, password) = url_parts();
    let program = env_or("TIDEWATER_MARIADB_BINLOG", "mariadb-binlog");
    let started = Instant::now();
    let status = Command::new(&program)
        .args([
            "--read-from-remote-server",
            "--host",
            &host,
            "--port",
            &port,
        ])
        .args(["--user", &user])
        .arg(format!("--password={password}"))
        .arg(format!("--start-position={start}"))
        .arg(format!("--stop-position={end}"))
        .args(["--base64-output=decode-rows", "--verbose"])
        .args(files)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{program} (MariaDB client tools) is needed: {e}"));
    assert!(status.success(), "{program} failed: {status}");
    started.elapsed().as_secs_f64()
}

/// python-mysql-replication from `file:pos` to the end: seconds, rows.
fn python_peer(schema: &str, file: &str, pos: u64) -> (f64, u64) {
    let (host, port, user, password) = url_parts();
    let python = env_or("TIDEWATER_PYTHON", "/root/.cache/tidewater/venv/bin/python");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/mysql_replication_peer.py"
    );
    let started = Instant::now();
    let out = Command::new(&python)
        .arg(script)
        .args([&host, &port, &user, &password, "7301", schema, file])
        .arg(pos.to_string())
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    assert!(
        out.status.success(),
        "python-mysql-replication failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secs = started.elapsed().as_secs_f64();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (secs, v["rows"].as_u64().unwrap())
}

fn pipeline(dir: &Path, name: &str, db: &str) -> std::path::PathBuf {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &file,
        format!(
            "name: {name}\nsource:\n  type: mysql\n  url: {}\n  tls:\n    mode: disable\n  server_id: 7300\n  snapshot: never\n  tables:\n    - name: {db}.orders\nkafka:\n  brokers: {}\n  topic_prefix: {name}\n  topic_partitions: 4\n",
            mysql_url(),
            brokers(),
        ),
    )
    .unwrap();
    file
}

/// A sample of a metric from the admin endpoint's Prometheus text.
fn metric(admin: &str, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(admin).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("MySQL capture benchmark: run it with `cargo bench --bench capture_mysql`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let inserts: u64 = env_or("BENCH_INSERTS", "1000000").parse().unwrap();
    let updates: u64 = env_or("BENCH_UPDATES", "500000").parse().unwrap();
    let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&mysql_url()).unwrap())
        .await
        .unwrap_or_else(|e| {
            panic!("MariaDB does not answer ({e}); run `scripts/services.sh up` first")
        });
    let db = format!("capbench_{}", std::process::id());
    conn.query_drop(format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.orders (id BIGINT PRIMARY KEY AUTO_INCREMENT, \
         customer_id BIGINT, status VARCHAR(16), amount DECIMAL(12,2), created_at DATETIME(6), payload JSON)"
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{db}_stream");
    let config = pipeline(dir.path(), &name, &db);
    let admin = free_addr();
    let log = dir.path().join("stream.log");

    // A first run records the position tidewater streams from: the current
    // end of the binlog, before the workload.
    let mut child = daemon::capture(&config, &log, &admin);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("streaming the binlog")
    {
        assert!(
            Instant::now() < deadline,
            "the daemon did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon::stop(&mut child);

    let (start_file, start_pos) = master_status(&mut conn).await;
    let started = Instant::now();
    conn.query_drop(format!(
        "INSERT INTO {db}.orders (customer_id, status, amount, created_at, payload) \
         SELECT seq % 10000, 'new', (seq % 100000) / 100, TIMESTAMP'2026-01-01 00:00:00' + INTERVAL seq SECOND, \
         JSON_OBJECT('sku', seq % 977, 'qty', seq % 7) FROM {db}.seq_1_to_{inserts}"
    ))
    .await
    .unwrap();
    let batches = updates / 100;
    for i in 0..batches {
        conn.query_drop(format!(
            "UPDATE {db}.orders SET status = 'paid', amount = amount + 1 WHERE id > {} AND id <= {}",
            i * 100,
            (i + 1) * 100
        ))
        .await
        .unwrap();
    }
    let (end_file, end_pos) = master_status(&mut conn).await;
    let events = inserts + batches * 100;
    println!(
        "workload written in {:.1} s: {events} row changes, binlog {start_file}:{start_pos} .. {end_file}:{end_pos}",
        started.elapsed().as_secs_f64()
    );
    let files = files_between(&mut conn, &start_file, &end_file).await;

    let peer1 = mariadb_binlog(&files, start_pos, end_pos);
    println!(
        "  peer mariadb-binlog -v (1st)      {peer1:7.2} s  {:>9.0} events/s",
        events as f64 / peer1
    );

    let end = position_of(&end_file, end_pos);
    let started = Instant::now();
    let mut child = daemon::capture(&config, &log, &admin);
    let (ours, rss, cpu) = loop {
        if metric(&admin, "tidewater_capture_confirmed_position").is_some_and(|p| p >= end as f64) {
            let secs = started.elapsed().as_secs_f64();
            break (
                secs,
                proc::peak_rss_mb(Some(child.id())),
                proc::cpu_seconds(Some(child.id())),
            );
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the daemon exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let captured = metric(&admin, "tidewater_capture_events_total").unwrap_or(0.0);
    daemon::stop(&mut child);
    println!(
        "  tidewater into Kafka              {ours:7.2} s  {:>9.0} events/s  peak RSS {rss:.0} MB  CPU {cpu:.1} s ({:.0} events per CPU second; {captured:.0} events captured)",
        events as f64 / ours,
        events as f64 / cpu.max(0.01)
    );

    let (py, rows) = python_peer(&db, &start_file, start_pos);
    println!(
        "  peer python-mysql-replication     {py:7.2} s  {:>9.0} events/s  ({rows} rows decoded)",
        events as f64 / py
    );

    let peer2 = mariadb_binlog(&files, start_pos, end_pos);
    println!(
        "  peer mariadb-binlog -v (2nd)      {peer2:7.2} s  {:>9.0} events/s",
        events as f64 / peer2
    );
    let binlog = (peer1 + peer2) / 2.0;
    println!(
        "streaming ratios (events/s): tidewater / mariadb-binlog (mean of the two runs) {:.2}x; tidewater / python-mysql-replication {:.2}x; peak RSS {rss:.0} MB (target < 256)",
        binlog / ours,
        py / ours
    );
    conn.query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}
