//! Glue shared by the integration tests: where the real services are, and
//! names that keep parallel tests out of each other's way.
//!
//! Services are found through environment variables (`scripts/services.sh env`
//! prints them) with the harness's defaults. A test that cannot reach its
//! service fails with a message saying how to start it; nothing is skipped.

#![allow(dead_code, reason = "each test binary uses part of the glue")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test glue"
)]

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value as Json, json};
use std::time::{SystemTime, UNIX_EPOCH};
use tidewater::event::datum::Datum;
use tidewater::event::types::ColumnType;

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

pub fn pg_url() -> String {
    var(
        "TIDEWATER_PG_URL",
        "postgres://tidewater:tidewater@127.0.0.1:5432/tidewater",
    )
}

/// The CA that signed the test Postgres server's certificate (for
/// "localhost" only).
pub fn pg_ca_file() -> String {
    var(
        "TIDEWATER_PG_CA_FILE",
        "/var/lib/tidewater-services/postgres/tls/ca.crt",
    )
}

/// The CA that signed the test MariaDB server's certificate (for
/// "localhost" only; the same test CA as Postgres's).
pub fn mysql_ca_file() -> String {
    var(
        "TIDEWATER_MYSQL_CA_FILE",
        "/var/lib/tidewater-services/mariadb/tls/ca.crt",
    )
}

pub fn mysql_url() -> String {
    var(
        "TIDEWATER_MYSQL_URL",
        "mysql://tidewater:tidewater@127.0.0.1:3306",
    )
}

pub fn kafka_brokers() -> String {
    var("TIDEWATER_KAFKA_BROKERS", "127.0.0.1:9092")
}

pub fn s3_endpoint() -> String {
    var("TIDEWATER_S3_ENDPOINT", "http://127.0.0.1:9000")
}

pub fn s3_bucket() -> String {
    var("TIDEWATER_S3_BUCKET", "tidewater")
}

pub fn s3_region() -> String {
    var("TIDEWATER_S3_REGION", "us-east-1")
}

pub fn s3_access_key_id() -> String {
    var("TIDEWATER_S3_ACCESS_KEY_ID", "tidewater")
}

pub fn s3_secret_access_key() -> String {
    var("TIDEWATER_S3_SECRET_ACCESS_KEY", "tidewater-secret")
}

/// The message for a service that does not answer.
pub fn unreachable(service: &str, address: &str, error: impl std::fmt::Display) -> String {
    format!(
        "{service} at {address} does not answer ({error}); start the test services with `scripts/services.sh up` and `eval \"$(scripts/services.sh env)\"`"
    )
}

/// A name unique to this test process and call, lower-case, usable as a
/// schema, database, topic or object prefix.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos:x}_{n}", std::process::id())
}

/// One message read back from a topic.
#[derive(Debug, Clone)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Reads every message of every partition of `topic` present now (up to the
/// high watermarks), without a consumer group.
pub fn read_topic(brokers: &str, topic: &str) -> Vec<Read> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    use std::time::{Duration, Instant};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "tidewater-test-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{}", unreachable("Kafka broker", brokers, e)));
    let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = std::collections::HashMap::new();
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *p, Duration::from_secs(10))
            .unwrap();
        if high > low {
            tpl.add_partition_offset(topic, *p, Offset::Offset(low))
                .unwrap();
            remaining.insert(*p, high);
        }
    }
    let mut out = Vec::new();
    if remaining.is_empty() {
        return out;
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !remaining.is_empty() {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        out.push(Read {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
        });
        if remaining
            .get(&m.partition())
            .is_some_and(|high| m.offset() + 1 >= *high)
        {
            remaining.remove(&m.partition());
        }
    }
    out
}

/// Kafka's Java `Utils.murmur2`, as the default partitioner uses it.
pub fn java_murmur2(data: &[u8]) -> i32 {
    let m: i32 = 0x5bd1_e995;
    let mut h: i32 = 0x9747_b28c_u32 as i32 ^ data.len() as i32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(m);
        k ^= ((k as u32) >> 24) as i32;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= i32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= i32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= i32::from(tail[0]);
        h = h.wrapping_mul(m);
    }
    h ^= ((h as u32) >> 13) as i32;
    h = h.wrapping_mul(m);
    h ^= ((h as u32) >> 15) as i32;
    h
}

/// The partition Java's default partitioner picks for a key.
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    (java_murmur2(key) & 0x7fff_ffff) % partitions
}

pub mod capture;
pub mod lake_workload;
pub mod s3_faults;

/// Runs `tests/interop/read_hudi.py` (hudi-rs, or pyarrow for `files`) with
/// `args` and returns the rows it printed.
pub fn read_hudi(args: &[&str]) -> Vec<Json> {
    let python = std::env::var("TIDEWATER_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/read_hudi.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "read_hudi.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The latest snapshot of the lake table at `uri` read by hudi-rs: record
/// key → row without the meta columns (`_hoodie_*`, `_tidewater_position`).
/// A key found twice fails.
pub fn lake_rows(uri: &str) -> std::collections::BTreeMap<String, Json> {
    let mut rows = std::collections::BTreeMap::new();
    for row in read_hudi(&["snapshot", uri]) {
        let key = row["_hoodie_record_key"].as_str().unwrap().to_string();
        let mut obj = row.as_object().unwrap().clone();
        obj.retain(|k, _| !k.starts_with("_hoodie_") && k != "_tidewater_position");
        assert!(
            rows.insert(key.clone(), Json::Object(obj)).is_none(),
            "key {key} twice in the lake table {uri}"
        );
    }
    rows
}

/// A value in the form the Python reader prints (see read_events.py).
pub fn plain(d: &Datum, ty: &ColumnType) -> Json {
    match (d, ty) {
        (Datum::Null | Datum::Unchanged, _) => Json::Null,
        (Datum::Bool(b), _) => json!(b),
        (Datum::Int(i), _) => json!(i),
        (Datum::UInt64(u), _) => json!(u.to_string()),
        (Datum::Float32(f), _) => float(f64::from(*f)),
        (Datum::Float64(f), _) => float(*f),
        (Datum::Decimal(v), ColumnType::Decimal { scale, .. }) => json!(v.to_string_scaled(*scale)),
        (Datum::Text(s), _) => json!(s),
        (Datum::Bytes(b), _) => json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        (Datum::Date(x), _) => json!(x),
        (Datum::Micros(m), _) => json!(m),
        (
            Datum::Interval {
                months,
                days,
                micros,
            },
            _,
        ) => json!({"months": months, "days": days, "micros": micros}),
        (Datum::Array(items), ColumnType::Array { element, dims }) => {
            let inner = if *dims > 1 {
                ColumnType::Array {
                    element: element.clone(),
                    dims: dims - 1,
                }
            } else {
                (**element).clone()
            };
            Json::Array(items.iter().map(|i| plain(i, &inner)).collect())
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn float(f: f64) -> Json {
    if f.is_nan() {
        json!("NaN")
    } else if f.is_infinite() {
        json!(if f > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        json!(f)
    }
}

/// Every change event of `topic` present now, each with the message it was
/// read from (tombstones left out), decoded with a fresh schema store so
/// that schemas are found the way any consumer finds them.
pub async fn topic_events(
    kafka: &tidewater::config::model::KafkaConfig,
    topic: &str,
) -> Vec<(Read, tidewater::event::change::ChangeEvent)> {
    use tidewater::kafka::consumer::{Decoded, EventDecoder};
    use tidewater::kafka::schemas::SchemaStore;
    let mut decoder = EventDecoder::new(SchemaStore::new(kafka).unwrap());
    let mut out = Vec::new();
    for r in read_topic(&kafka.brokers, topic) {
        let decoded = decoder
            .decode(
                topic,
                r.partition,
                r.offset,
                r.key.as_deref(),
                r.value.as_deref(),
            )
            .await
            .unwrap();
        if let Decoded::Event(e) = decoded {
            out.push((r, e));
        }
    }
    out
}

/// Runs `tidewater check --connect --format json` on one pipeline file.
pub fn check_connect(file: &std::path::Path) -> (i32, Json) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(["check", "--connect", "--format", "json"])
        .arg(file)
        .output()
        .unwrap();
    let report: Json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), report)
}

/// `item → problem` (None when fine) of the first pipeline's preflight.
pub fn findings(report: &Json) -> std::collections::BTreeMap<String, Option<String>> {
    report["preflight"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["item"].as_str().unwrap().to_string(),
                f["problem"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// The problem found for `item`.
pub fn problem_of(
    found: &std::collections::BTreeMap<String, Option<String>>,
    item: &str,
) -> String {
    found
        .get(item)
        .cloned()
        .flatten()
        .unwrap_or_else(|| panic!("no problem for {item}: {found:#?}"))
}

/// A child process killed when dropped: a failed assertion must not leave
/// a daemon running (holding a replication slot, a port, WAL).
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the test build of `tidewater run` with `args` and then the
/// pipeline `files`, at log level `info`, its log appended to `log`.
pub fn spawn_run(
    args: &[&str],
    files: &[&std::path::Path],
    log: &std::path::Path,
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .arg("run")
        .args(args)
        .args(files)
        .env("TIDEWATER_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .unwrap()
}

/// How many daemons logging to `log` got their admin endpoint listening.
pub fn listening_count(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("admin endpoint listening")
        .count()
}

/// Waits until the daemon `child`, started when `log` held `before`
/// listening lines, logs its own: it catches SIGTERM from then on (before,
/// the signal's default action kills it).
pub fn wait_listening(log: &std::path::Path, before: usize, child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while listening_count(log) <= before {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon exited before it listened"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon's admin endpoint never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sends SIGTERM (a graceful stop: flush, commit, exit).
pub fn send_sigterm(child: &std::process::Child) {
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
}

/// Sends SIGTERM and waits for the exit.
pub fn sigterm(child: &mut std::process::Child) -> std::process::ExitStatus {
    send_sigterm(child);
    child.wait().unwrap()
}

/// `rounds` runs started by `spawn`, each killed with SIGKILL after a
/// seeded 200–1500 ms. A run that exits by itself fails the test, with
/// its `log`.
pub async fn kill_rounds(
    rounds: usize,
    rng: &mut tidewater::event::sample::Rng,
    spawn: impl Fn() -> std::process::Child,
    log: &std::path::Path,
) {
    for round in 0..rounds {
        let mut child = Reaped(spawn());
        let wait = 200 + rng.below(1_300);
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "round {round}: exited early ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
    }
}

/// A loopback address whose port nothing listens on now.
pub fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// Writes `dir/file`: pipeline `name` whose `source:` has the indented
/// `source` lines (type, url, ...) and reads `schema.<table>` for each of
/// `tables`, into the test broker.
pub fn write_pipeline(
    dir: &std::path::Path,
    file: &str,
    name: &str,
    source: &str,
    schema: &str,
    tables: &[&str],
) -> std::path::PathBuf {
    let path = dir.join(file);
    let tables: String = tables
        .iter()
        .map(|t| format!("    - name: {schema}.{t}\n"))
        .collect();
    std::fs::write(
        &path,
        format!(
            "name: {name}\nsource:\n{source}  tables:\n{tables}kafka:\n  brokers: {}\n",
            kafka_brokers()
        ),
    )
    .unwrap();
    path
}

/// `url` with another user and password.
pub fn with_user(url: &str, user: &str, password: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_username(user).unwrap();
    u.set_password(Some(password)).unwrap();
    u.to_string()
}
