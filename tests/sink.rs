//! The sink worker as a process (`tidewater run --role sink`) between the
//! real broker and a lake table, checked by reading the table with hudi-rs:
//! exactly-once across restarts, `kill -9` at seeded moments (and at exact
//! steps through failpoints), two workers on one table, undecodable messages,
//! and a graceful stop on SIGTERM.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test glue"
)]

mod common;
#[path = "../benches/common/proc.rs"]
mod proc;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use tidewater::config::model::KafkaConfig;
use tidewater::event::change::{ChangeEvent, Op, Position, SnapshotMarker, Source, SourceDetail};
use tidewater::event::datum::{Datum, Row};
use tidewater::event::decimal::Decimal;
use tidewater::event::sample::Rng;
use tidewater::event::schema::{Column, TableSchema};
use tidewater::event::table_id::TableId;
use tidewater::event::types::ColumnType;
use tidewater::kafka::avro::schema::Connector;
use tidewater::kafka::client::client_config;
use tidewater::kafka::producer::{EventProducer, EventSerializer, ProducerOptions};
use tidewater::kafka::schemas::SchemaStore;
use tidewater::kafka::topic::table_topic;
use tidewater::lake::metadata::Checkpoint;

const DAY: i64 = 86_400_000_000;
const START: i64 = 1_704_067_200_000_000;

fn orders() -> Arc<TableSchema> {
    Arc::new(TableSchema {
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
            Column::new("note", ColumnType::Text, true),
        ],
        key: vec![0],
    })
}

fn change_event(
    table: &Arc<TableSchema>,
    op: Op,
    position: Position,
    before: Option<Row>,
    after: Option<Row>,
) -> ChangeEvent {
    ChangeEvent {
        table: table.clone(),
        op,
        position,
        before,
        after,
        source: Source {
            name: "sink-test".into(),
            db: "shop".into(),
            schema: table.id.schema.clone(),
            table: table.id.name.clone(),
            commit_ts_us: START,
            snapshot: SnapshotMarker::False,
            detail: SourceDetail::Postgres {
                lsn: position.commit,
                tx_id: None,
            },
        },
        transaction: None,
        ts_us: START,
    }
}

/// Events and the table they must produce.
struct Workload {
    rng: Rng,
    table: Arc<TableSchema>,
    rows: BTreeMap<i64, Row>,
    next_id: i64,
    txn: u64,
}

impl Workload {
    fn new(seed: u64) -> Workload {
        Workload {
            rng: Rng::new(seed),
            table: orders(),
            rows: BTreeMap::new(),
            next_id: 1,
            txn: 0,
        }
    }

    fn row(&mut self, id: i64, day: i64) -> Row {
        Row(vec![
            Datum::Int(id),
            Datum::Text(format!("s{}", self.rng.below(4))),
            Datum::Decimal(Decimal::from_i128(i128::from(self.rng.below(100_000)))),
            Datum::Micros(START + day * DAY + self.rng.below(DAY as u64) as i64),
            Datum::Text("n".repeat(self.rng.below(2500) as usize)),
        ])
    }

    fn event(&self, op: Op, ordinal: u64, before: Option<Row>, after: Option<Row>) -> ChangeEvent {
        change_event(
            &self.table,
            op,
            Position::new(10_000 + self.txn, ordinal),
            before,
            after,
        )
    }

    /// One transaction of `n` changes, applied to the model.
    fn transaction(&mut self, n: usize) -> Vec<ChangeEvent> {
        self.txn += 1;
        let mut out = Vec::new();
        let ids: Vec<i64> = self.rows.keys().copied().collect();
        let mut touched = std::collections::HashSet::new();
        for ordinal in 0..n as u64 {
            let roll = self.rng.below(100);
            let pick = (!ids.is_empty()).then(|| ids[self.rng.below(ids.len() as u64) as usize]);
            match (roll, pick) {
                (0..=44, _) | (_, None) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let day = self.rng.below(4) as i64;
                    let r = self.row(id, day);
                    self.rows.insert(id, r.clone());
                    out.push(self.event(Op::Create, ordinal, None, Some(r)));
                }
                (_, Some(id)) if touched.contains(&id) => {}
                (45..=84, Some(id)) => {
                    let old = self.rows[&id].clone();
                    // A move to another day now and then; else same day.
                    let day = if self.rng.chance(20) {
                        4 + self.rng.below(2) as i64
                    } else {
                        (match old.0[3] {
                            Datum::Micros(m) => m - START,
                            _ => 0,
                        })
                        .div_euclid(DAY)
                    };
                    let mut r = self.row(id, day);
                    let mut sent = r.clone();
                    if self.rng.chance(30) {
                        r.0[4] = old.0[4].clone();
                        sent.0[4] = Datum::Unchanged;
                    }
                    self.rows.insert(id, r);
                    touched.insert(id);
                    out.push(self.event(
                        Op::Update,
                        ordinal,
                        Some(Row(vec![
                            Datum::Int(id),
                            Datum::Null,
                            Datum::Null,
                            Datum::Null,
                            Datum::Null,
                        ])),
                        Some(sent),
                    ));
                }
                (_, Some(id)) => {
                    self.rows.remove(&id);
                    touched.insert(id);
                    out.push(self.event(
                        Op::Delete,
                        ordinal,
                        Some(Row(vec![
                            Datum::Int(id),
                            Datum::Null,
                            Datum::Null,
                            Datum::Null,
                            Datum::Null,
                        ])),
                        None,
                    ));
                }
            }
        }
        out
    }

    /// The expected lake rows, keyed by record key.
    fn expected(&self) -> BTreeMap<String, Json> {
        self.rows
            .iter()
            .map(|(id, row)| {
                let mut obj = serde_json::Map::new();
                for (d, c) in row.0.iter().zip(&self.table.columns) {
                    obj.insert(c.name.clone(), common::plain(d, &c.ty));
                }
                let day = match &row.0[3] {
                    Datum::Micros(m) => tidewater::event::time::date_text(m.div_euclid(DAY) as i32),
                    _ => unreachable!(),
                };
                obj.insert("created_at_day".into(), json!(day));
                (id.to_string(), Json::Object(obj))
            })
            .collect()
    }
}

struct Setup {
    dir: tempfile::TempDir,
    pipeline: PathBuf,
    prefix: String,
    kafka: KafkaConfig,
    /// The admin endpoint of the sinks this setup spawns (one at a time).
    admin: String,
}

impl Setup {
    fn new(name: &str, extra_lake: &str) -> Setup {
        Setup::with_tables(name, "", extra_lake)
    }

    /// A pipeline with `public.orders` and the `extra_tables` YAML entries.
    fn with_tables(name: &str, extra_tables: &str, extra_lake: &str) -> Setup {
        Setup::with_lake(
            name,
            extra_tables,
            &format!(
                "  commit_interval_secs: 1
  max_changes_per_commit: 700
  target_file_size_mb: 1
  keep_commits: 5
{extra_lake}"
            ),
        )
    }

    /// `lake` is the lake section but its `uri`.
    fn with_lake(name: &str, extra_tables: &str, lake: &str) -> Setup {
        let mut dir = tempfile::tempdir().unwrap();
        // For a post-mortem: TIDEWATER_KEEP_TEST_DIRS=1 keeps lakes and logs.
        if std::env::var_os("TIDEWATER_KEEP_TEST_DIRS").is_some() {
            dir.disable_cleanup(true);
            println!("test directory {}", dir.path().display());
        }
        let prefix = common::unique_name(name).replace('_', "-");
        let mut kafka = KafkaConfig::with_brokers(common::kafka_brokers());
        kafka.topic_partitions = 4;
        kafka.topic_prefix = Some(prefix.clone());
        let pipeline = dir.path().join("pipeline.yaml");
        std::fs::write(
            &pipeline,
            format!(
                "name: sinktest
source:
  type: postgres
  url: postgres://cdc@127.0.0.1:5432/shop
  tables:
    - name: public.orders
      partition_by: {{ column: created_at, granularity: day }}
{extra_tables}
kafka:
  brokers: {brokers}
  topic_prefix: {prefix}
  consumer_group: {prefix}-sink
lake:
  uri: file://{uri}
{lake}",
                brokers = kafka.brokers,
                uri = dir.path().join("lake").display(),
            ),
        )
        .unwrap();
        let admin = common::free_addr();
        Setup {
            dir,
            pipeline,
            prefix,
            kafka,
            admin,
        }
    }

    /// The value of `metric` for this pipeline from the running sink's
    /// `/metrics`, if it answers.
    async fn metric(&self, metric: &str) -> Option<f64> {
        let (_, text) = tidewater::admin::get(&self.admin, "/metrics", None)
            .await
            .ok()?;
        text.lines()
            .find(|l| l.starts_with(&format!("{metric}{{")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    fn table_uri(&self) -> String {
        self.uri_of("public_orders")
    }

    fn uri_of(&self, lake_table: &str) -> String {
        self.dir
            .path()
            .join("lake")
            .join(lake_table)
            .display()
            .to_string()
    }

    fn topic(&self) -> String {
        table_topic(&self.prefix, &TableId::new("public", "orders"))
    }

    fn producer(&self) -> EventProducer {
        let serializer = EventSerializer::new(
            SchemaStore::new(&self.kafka).unwrap(),
            Connector::Postgres,
            &self.prefix,
        );
        EventProducer::new(
            &client_config(&self.kafka),
            serializer,
            ProducerOptions::from_config(&self.kafka),
        )
        .unwrap()
    }

    fn spawn(&self, failpoint: Option<&str>) -> Child {
        self.spawn_logged(failpoint, None)
    }

    /// Starts a standalone sink; its log goes to `log` when given.
    fn spawn_logged(&self, failpoint: Option<&str>, log: Option<&Path>) -> Child {
        self.spawn_with(failpoint, log, &[])
    }

    /// Starts a standalone sink with `env` set too.
    fn spawn_with(
        &self,
        failpoint: Option<&str>,
        log: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidewater"));
        cmd.args([
            "run",
            "--role",
            "sink",
            "--standalone",
            "--admin-addr",
            &self.admin,
        ])
        .arg(&self.pipeline);
        cmd.env("TIDEWATER_LOG", "warn,tidewater=info");
        cmd.env_remove("TIDEWATER_FAILPOINTS");
        if let Some(f) = failpoint {
            cmd.env("TIDEWATER_FAILPOINTS", f);
        }
        cmd.envs(env.iter().copied());
        match log {
            Some(path) => cmd
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(path).unwrap()),
            None => cmd.stdout(Stdio::null()).stderr(Stdio::piped()),
        };
        let mut child = cmd.spawn().unwrap();
        // The daemon catches SIGTERM before its admin endpoint listens: from
        // then on a stop is graceful (before, SIGTERM's default action kills it).
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&self.admin).is_err()
            && child.try_wait().unwrap().is_none()
        {
            assert!(
                Instant::now() < deadline,
                "the sink's admin endpoint {} never listened",
                self.admin
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// The metadata of the table's completed commits, oldest first,
    /// straight from the timeline files.
    fn commits_of(&self, lake_table: &str) -> Vec<Json> {
        let hoodie = Path::new(&self.uri_of(lake_table)).join(".hoodie");
        let Ok(entries) = std::fs::read_dir(&hoodie) else {
            return Vec::new();
        };
        let mut commits: Vec<PathBuf> = entries
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "commit"))
            .collect();
        commits.sort();
        commits
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// The latest completed commit's checkpoint.
    fn checkpoint_of(&self, lake_table: &str) -> BTreeMap<i32, i64> {
        let Some(last) = self.commits_of(lake_table).pop() else {
            return BTreeMap::new();
        };
        let text = last["extraMetadata"]["deltastreamer.checkpoint.key"]
            .as_str()
            .unwrap_or("");
        partition_pairs(text.split_once(',').map_or("", |(_, rest)| rest))
    }

    /// The latest completed commit's stamps: the timestamp of the last
    /// message read of each partition.
    fn stamps_of(&self, lake_table: &str) -> BTreeMap<i32, i64> {
        let Some(last) = self.commits_of(lake_table).pop() else {
            return BTreeMap::new();
        };
        partition_pairs(
            last["extraMetadata"]["tidewater.checkpoint.stamps"]
                .as_str()
                .unwrap_or(""),
        )
    }

    /// The timestamp Kafka gives the message at `offset` of a partition.
    fn timestamp_at(&self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::{Message, Offset, TopicPartitionList};
        let c: BaseConsumer = client_config(&self.kafka)
            .set("group.id", "stamps")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .unwrap();
        c.assign(&tpl).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                Instant::now() < deadline,
                "no message at {topic}/{partition}@{offset}"
            );
            if let Some(m) = c.poll(Duration::from_millis(500)) {
                let m = m.unwrap();
                if m.offset() == offset {
                    return m.timestamp().to_millis();
                }
            }
        }
    }

    /// Opens a lake table of the pipeline as another writer would.
    async fn open_table(&self, name: &str) -> tidewater::lake::table::Table {
        use tidewater::config::model::LakeConfig;
        use tidewater::lake::table::{Table, TableOptions};
        let report = tidewater::config::load(std::slice::from_ref(&self.pipeline));
        let cfg = &report.pipelines[0].config;
        let lake = cfg.lake.clone().unwrap();
        let (id, layout) = tidewater::pipeline::sink::table_layouts(cfg, &lake)
            .unwrap()
            .into_iter()
            .find(|(id, _)| id.name == name)
            .unwrap();
        let lake_table = tidewater::pipeline::sink::lake_table_name(&id);
        let store = tidewater::lake::store::open(&LakeConfig::with_uri(format!(
            "file://{}",
            self.uri_of(&lake_table)
        )))
        .unwrap();
        let options = TableOptions {
            layout,
            target_file_bytes: 1 << 20,
            keep_commits: 5,
            compression: lake.parquet_compression,
            writer_id: "earlier".into(),
        };
        Table::open(store, options).await.unwrap()
    }

    fn high_watermarks_of(&self, topic: &str) -> BTreeMap<i32, i64> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = client_config(&self.kafka)
            .set("group.id", "wm")
            .create()
            .unwrap();
        (0..4)
            .map(|p| {
                (
                    p,
                    c.fetch_watermarks(topic, p, Duration::from_secs(10))
                        .unwrap()
                        .1,
                )
            })
            .collect()
    }

    /// Waits until the lake's checkpoint covers every produced message.
    fn wait_caught_up(&self, timeout: Duration) {
        self.wait_table_caught_up("public_orders", &self.topic(), timeout);
    }

    fn wait_table_caught_up(&self, lake_table: &str, topic: &str, timeout: Duration) {
        let target = self.high_watermarks_of(topic);
        let deadline = Instant::now() + timeout;
        loop {
            let cp = self.checkpoint_of(lake_table);
            if target
                .iter()
                .all(|(p, hw)| *hw == 0 || cp.get(p).is_some_and(|o| o >= hw))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the lake did not catch up: checkpoint {cp:?}, target {target:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn lake_rows(&self) -> BTreeMap<String, Json> {
        self.lake_rows_of("public_orders")
    }

    fn lake_rows_of(&self, lake_table: &str) -> BTreeMap<String, Json> {
        common::lake_rows(&self.uri_of(lake_table))
    }

    /// Every base file on disk belongs to a completed commit; no instant is
    /// left pending.
    fn assert_no_leftovers(&self) {
        let root = PathBuf::from(self.table_uri());
        let hoodie: Vec<String> = std::fs::read_dir(root.join(".hoodie"))
            .unwrap()
            .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().to_string()))
            .collect();
        let completed: Vec<&str> = hoodie
            .iter()
            .filter_map(|n| n.strip_suffix(".commit"))
            .collect();
        // A requested or inflight instant counts as pending unless the same
        // time and action completed (`<t>.inflight` is a commit's).
        let pending: Vec<&String> = hoodie
            .iter()
            .filter(|n| n.ends_with(".inflight") || n.ends_with(".requested"))
            .filter(|n| {
                let stem = n
                    .trim_end_matches(".inflight")
                    .trim_end_matches(".requested");
                let done = if stem.contains('.') {
                    stem.to_string()
                } else {
                    format!("{stem}.commit")
                };
                !hoodie.contains(&done)
            })
            .collect();
        assert!(pending.is_empty(), "pending instants left: {pending:?}");
        let first = completed.iter().min().copied().unwrap_or("");
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if !path.ends_with(".hoodie") {
                        stack.push(path);
                    }
                    continue;
                }
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                if let Some(stem) = name.strip_suffix(".parquet") {
                    let instant = stem.rsplit('_').next().unwrap();
                    assert!(
                        completed.contains(&instant) || instant < first,
                        "{name} belongs to no completed commit"
                    );
                }
            }
        }
    }
}

/// Compares the lake with the model, naming the first differing keys (the
/// maps are too large to print whole).
fn assert_same_rows(
    lake: &BTreeMap<String, Json>,
    expected: &BTreeMap<String, Json>,
    context: &str,
) {
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !lake.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<&String> = lake
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(5)
        .collect();
    let differ: Vec<(&String, &Json, &Json)> = expected
        .iter()
        .filter_map(|(k, v)| Some((k, v, lake.get(k)?)))
        .filter(|(_, a, b)| a != b)
        .take(2)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "{context}: lake has {} rows, expected {}; missing {missing:?}, extra {extra:?}, differing (expected, lake) {differ:?}",
        lake.len(),
        expected.len()
    );
}

fn stop_gracefully(mut child: Child) -> Duration {
    let started = Instant::now();
    common::send_sigterm(&child);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            if let Some(mut stderr) = child.stderr.take() {
                stderr.read_to_string(&mut err).unwrap();
            }
            assert!(
                status.success(),
                "the sink exited with {status} on SIGTERM: {err}"
            );
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no exit within 60 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_keeps_the_lake_equal_to_the_events_and_stops_cleanly() {
    let seed = Rng::seed_from_env();
    println!("seed {seed} (replay with TIDEWATER_SEED={seed})");
    let setup = Setup::new("sink", "");
    let mut w = Workload::new(seed);
    let mut producer = setup.producer();
    for _ in 0..40 {
        let n = 60;
        for e in w.transaction(n) {
            producer.send(&e).await.unwrap();
        }
    }
    producer.flush().await.unwrap();
    let sink = setup.spawn(None);
    // The backlog shows as Kafka lag (measured when the sink starts, after
    // each commit and every 10 s), and the lag is gone as soon as the lake
    // has caught up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut most = 0.0f64;
    while most == 0.0 && Instant::now() < deadline {
        most = most.max(
            setup
                .metric("tidewater_sink_kafka_lag_messages")
                .await
                .unwrap_or(0.0),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // At most the 2400 events and a tombstone after each delete.
    assert!(most > 0.0 && most <= 4800.0, "lag seen: {most}");
    setup.wait_caught_up(Duration::from_secs(120));
    let deadline = Instant::now() + Duration::from_secs(3);
    while setup.metric("tidewater_sink_kafka_lag_messages").await != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "the lag did not go back to 0 within 3 s of the last commit"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // More changes while it runs.
    for _ in 0..10 {
        for e in w.transaction(40) {
            producer.send(&e).await.unwrap();
        }
    }
    producer.flush().await.unwrap();
    setup.wait_caught_up(Duration::from_secs(120));
    let took = stop_gracefully(sink);
    assert!(took < Duration::from_secs(30), "SIGTERM exit took {took:?}");
    // Stopped the moment its admin endpoint listens (a supervisor's
    // readiness check), the sink still stops gracefully.
    for _ in 0..10 {
        stop_gracefully(setup.spawn(None));
    }
    let lake = setup.lake_rows();
    let expected = w.expected();
    assert_same_rows(&lake, &expected, &format!("seed {seed}"));
    setup.assert_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_at_twenty_seeded_moments_loses_and_duplicates_nothing() {
    let seed = Rng::seed_from_env();
    println!("seed {seed} (replay with TIDEWATER_SEED={seed})");
    let setup = Setup::new("crash", "");
    let mut w = Workload::new(seed);
    let mut faults = Rng::new(seed ^ 0x5eed);
    let mut producer = setup.producer();
    let failpoints = [
        "lake.before_data_files",
        "lake.between_data_files",
        "lake.after_data_files",
        "lake.after_claim",
        "lake.after_commit",
    ];
    for round in 0..20 {
        for _ in 0..4 {
            for e in w.transaction(50) {
                producer.send(&e).await.unwrap();
            }
        }
        producer.flush().await.unwrap();
        let failpoint = (round % 2 == 1).then(|| {
            let name = failpoints[faults.below(failpoints.len() as u64) as usize];
            format!("{name}=abort@{}", 1 + faults.below(2))
        });
        let log = setup.dir.path().join(format!("round-{round}.log"));
        let mut child = setup.spawn_logged(failpoint.as_deref(), Some(&log));
        let wait = Duration::from_millis(300 + faults.below(2500));
        let started = Instant::now();
        let mut exited = None;
        while started.elapsed() < wait {
            if let Some(status) = child.try_wait().unwrap() {
                exited = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        match exited {
            Some(status) => {
                assert!(
                    failpoint.is_some() && text.contains("failpoint"),
                    "round {round}: the sink exited on its own ({status}) without a failpoint: {text}"
                );
                println!("round {round}: {failpoint:?}, aborted by the failpoint");
            }
            None => {
                println!("round {round}: {failpoint:?}, kill -9");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let sink = setup.spawn(None);
    setup.wait_caught_up(Duration::from_secs(180));
    stop_gracefully(sink);
    let lake = setup.lake_rows();
    let expected = w.expected();
    assert_same_rows(&lake, &expected, &format!("seed {seed}"));
    setup.assert_no_leftovers();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_table_never_both_commit_the_same_data() {
    let seed = Rng::seed_from_env();
    println!("seed {seed} (replay with TIDEWATER_SEED={seed})");
    let setup = Setup::new("zombie", "");
    // One worker in the pipeline's consumer group, and a zombie that
    // believes it owns every partition (standalone): both write the table.
    let mut w = Workload::new(seed);
    let mut producer = setup.producer();
    let a = setup.spawn(None);
    let b = Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args([
            "run",
            "--role",
            "sink",
            "--worker-id",
            "a",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg(&setup.pipeline)
        .env("TIDEWATER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..30 {
        for e in w.transaction(50) {
            producer.send(&e).await.unwrap();
        }
        producer.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    setup.wait_caught_up(Duration::from_secs(180));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_gracefully(a);
    stop_gracefully(b);
    // Every commit in the log is distinct and every completed instant was won.
    let log_dir = PathBuf::from(setup.table_uri()).join(".hoodie/.aux/tidewater/log");
    let mut instants: HashMap<String, u32> = HashMap::new();
    for entry in std::fs::read_dir(&log_dir).unwrap() {
        let v: Json =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        if v["action"] == "commit" {
            *instants
                .entry(v["instant"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert!(
        instants.values().all(|n| *n == 1),
        "an instant claimed twice: {instants:?}"
    );
    let lake = setup.lake_rows();
    let expected = w.expected();
    assert_same_rows(&lake, &expected, &format!("seed {seed}"));
    setup.assert_no_leftovers();
}

fn customers(key: &[&str]) -> Arc<TableSchema> {
    let columns = vec![
        Column::new(
            "id",
            ColumnType::Int {
                bits: 64,
                signed: true,
            },
            false,
        ),
        Column::new("email", ColumnType::Text, false),
    ];
    let key = key
        .iter()
        .map(|k| columns.iter().position(|c| c.name == *k).unwrap())
        .collect();
    Arc::new(TableSchema {
        id: TableId::new("public", "customers"),
        database: "shop".into(),
        columns,
        key,
    })
}

fn customer(table: &Arc<TableSchema>, id: i64) -> ChangeEvent {
    let row = Row(vec![
        Datum::Int(id),
        Datum::Text(format!("c{id}@example.com")),
    ]);
    change_event(
        table,
        Op::Create,
        Position::new(50_000 + id as u64, 0),
        None,
        Some(row),
    )
}

/// Sends raw bytes that are no Debezium event (a foreign producer).
async fn send_foreign(kafka: &KafkaConfig, topic: &str, value: &[u8]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = client_config(kafka).create().unwrap();
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(topic)
                .partition(0)
                .key(b"foreign".as_slice())
                .payload(value),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

fn wait_for_log(log: &Path, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in the sink's log within {timeout:?}: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const CUSTOMERS_TABLE: &str = "    - name: public.customers";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_the_lake_cannot_absorb_stops_alone_and_foreign_messages_go_to_the_dead_letter_topic()
 {
    let seed = Rng::seed_from_env();
    println!("seed {seed} (replay with TIDEWATER_SEED={seed})");
    let setup = Setup::with_tables("stops", CUSTOMERS_TABLE, "  on_undecodable: dead_letter");
    let customers_topic = table_topic(&setup.prefix, &TableId::new("public", "customers"));
    let dead_letter_topic = format!("{}.dead_letter", setup.prefix);
    let mut w = Workload::new(seed);
    let mut producer = setup.producer();
    let v1 = customers(&["id"]);
    for _ in 0..10 {
        for e in w.transaction(40) {
            producer.send(&e).await.unwrap();
        }
    }
    for id in 1..=50 {
        producer.send(&customer(&v1, id)).await.unwrap();
    }
    producer.flush().await.unwrap();
    send_foreign(&setup.kafka, &setup.topic(), b"{\"not\": \"avro\"}").await;
    let log = setup.dir.path().join("sink.log");
    let mut sink = setup.spawn_logged(None, Some(&log));
    setup.wait_caught_up(Duration::from_secs(120));
    setup.wait_table_caught_up(
        "public_customers",
        &customers_topic,
        Duration::from_secs(60),
    );

    // The record key changes at the source: every later customers event has
    // the new key, which the lake table cannot take.
    let v2 = customers(&["id", "email"]);
    for id in 51..=60 {
        producer.send(&customer(&v2, id)).await.unwrap();
    }
    producer.flush().await.unwrap();
    let text = wait_for_log(&log, "table stopped", Duration::from_secs(60));
    assert!(
        text.contains("public.customers") && text.contains("record key changed"),
        "the error names the table and the change: {text}"
    );
    // Orders go on.
    for _ in 0..10 {
        for e in w.transaction(40) {
            producer.send(&e).await.unwrap();
        }
    }
    producer.flush().await.unwrap();
    setup.wait_caught_up(Duration::from_secs(120));
    assert!(
        sink.try_wait().unwrap().is_none(),
        "the sink keeps running with one table stopped"
    );
    stop_gracefully(sink);

    assert_same_rows(
        &setup.lake_rows(),
        &w.expected(),
        &format!("seed {seed}: orders"),
    );
    let lake_customers: Vec<String> = setup.lake_rows_of("public_customers").into_keys().collect();
    let mut expected: Vec<String> = (1..=50).map(|id: i64| id.to_string()).collect();
    expected.sort();
    assert_eq!(lake_customers, expected, "customers stop before the change");
    // The checkpoint stays before the change: a restart stops there again.
    let checkpointed: i64 = setup.checkpoint_of("public_customers").values().sum();
    let produced: i64 = setup.high_watermarks_of(&customers_topic).values().sum();
    assert_eq!((checkpointed, produced), (50, 60));
    // The foreign message went to the dead-letter topic, as sent, with
    // where it came from.
    let letters = common::read_topic(&setup.kafka.brokers, &dead_letter_topic);
    assert_eq!(letters.len(), 1, "one dead letter");
    assert_eq!(
        letters[0].value.as_deref(),
        Some(b"{\"not\": \"avro\"}".as_slice())
    );
    assert_eq!(letters[0].key.as_deref(), Some(b"foreign".as_slice()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_message_stops_its_table_by_default_and_the_rest_goes_on() {
    let seed = Rng::seed_from_env();
    println!("seed {seed} (replay with TIDEWATER_SEED={seed})");
    let setup = Setup::with_tables("foreign", CUSTOMERS_TABLE, "");
    let customers_topic = table_topic(&setup.prefix, &TableId::new("public", "customers"));
    let mut w = Workload::new(seed);
    let mut producer = setup.producer();
    let v1 = customers(&["id"]);
    for id in 1..=20 {
        producer.send(&customer(&v1, id)).await.unwrap();
    }
    producer.flush().await.unwrap();
    let log = setup.dir.path().join("sink.log");
    let sink = setup.spawn_logged(None, Some(&log));
    setup.wait_table_caught_up(
        "public_customers",
        &customers_topic,
        Duration::from_secs(60),
    );
    let before: BTreeMap<i32, i64> = setup.checkpoint_of("public_customers");
    send_foreign(&setup.kafka, &customers_topic, b"garbage").await;
    let text = wait_for_log(&log, "table stopped", Duration::from_secs(60));
    assert!(
        text.contains("public.customers") && text.contains("undecodable"),
        "the error names the table and the cause: {text}"
    );
    for id in 21..=30 {
        producer.send(&customer(&v1, id)).await.unwrap();
    }
    for _ in 0..10 {
        for e in w.transaction(40) {
            producer.send(&e).await.unwrap();
        }
    }
    producer.flush().await.unwrap();
    setup.wait_caught_up(Duration::from_secs(120));
    stop_gracefully(sink);
    assert_same_rows(
        &setup.lake_rows(),
        &w.expected(),
        &format!("seed {seed}: orders"),
    );
    assert_eq!(
        setup.lake_rows_of("public_customers").len(),
        20,
        "nothing after the foreign message"
    );
    assert_eq!(
        setup.checkpoint_of("public_customers"),
        before,
        "the checkpoint stays before the foreign message"
    );
}

/// `public.customers` with a score, and in its second shape the score
/// widened to a bigint and a phone added.
fn scored(second: bool) -> Arc<TableSchema> {
    let mut table = (*customers(&["id"])).clone();
    table.columns.push(Column::new(
        "score",
        ColumnType::Int {
            bits: if second { 64 } else { 32 },
            signed: true,
        },
        true,
    ));
    if second {
        table
            .columns
            .push(Column::new("phone", ColumnType::Text, true));
    }
    Arc::new(table)
}

/// Customers `ids` in shape `table`, customer `id` at position
/// `base + id`.
async fn send_scored(
    producer: &mut EventProducer,
    table: &Arc<TableSchema>,
    ids: std::ops::RangeInclusive<i64>,
    base: u64,
) {
    for id in ids {
        producer
            .send(&scored_customer(table, id, base + id as u64))
            .await
            .unwrap();
    }
}

fn scored_customer(table: &Arc<TableSchema>, id: i64, commit: u64) -> ChangeEvent {
    let mut values = vec![
        Datum::Int(id),
        Datum::Text(format!("c{id}@example.com")),
        Datum::Int(id * 10),
    ];
    if table.columns.len() == 4 {
        values.push(Datum::Text(format!("p{id}")));
    }
    change_event(
        table,
        Op::Create,
        Position::new(commit, 0),
        None,
        Some(Row(values)),
    )
}

/// The lake rows of customers `ids` in the scored shape; `phone` says
/// which were written with the phone column set.
fn scored_rows(
    ids: std::ops::RangeInclusive<i64>,
    phone: impl Fn(i64) -> bool,
) -> BTreeMap<String, Json> {
    ids.map(|id| {
        let phone = phone(id).then(|| format!("p{id}"));
        (
            id.to_string(),
            json!({"id": id, "email": format!("c{id}@example.com"), "score": id * 10, "phone": phone}),
        )
    })
    .collect()
}

/// Stops the sink and checks that its log (at `log`) stopped no table.
fn stop_with_no_table_stopped(sink: Child, log: &Path) {
    stop_gracefully(sink);
    let text = std::fs::read_to_string(log).unwrap();
    assert!(!text.contains("table stopped"), "no table stops: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_change_follows_source_positions_not_the_order_partitions_deliver_in() {
    let setup = Setup::with_tables("shapes", CUSTOMERS_TABLE, "");
    let topic = table_topic(&setup.prefix, &TableId::new("public", "customers"));
    let (v1, v2) = (scored(false), scored(true));
    let mut producer = setup.producer();
    // The rows written after the change are produced first, the ones
    // before it last: each of the four partitions delivers the new shape
    // before the old one, as when one partition lags behind the others.
    send_scored(&mut producer, &v2, 21..=40, 60_000).await;
    send_scored(&mut producer, &v1, 1..=20, 50_000).await;
    producer.flush().await.unwrap();
    let log = setup.dir.path().join("sink.log");
    let sink = setup.spawn_logged(None, Some(&log));
    setup.wait_table_caught_up("public_customers", &topic, Duration::from_secs(60));
    // More rows from before the change, once the new shape is committed:
    // a replay, or a partition far behind.
    send_scored(&mut producer, &v1, 41..=45, 55_000).await;
    producer.flush().await.unwrap();
    setup.wait_table_caught_up("public_customers", &topic, Duration::from_secs(60));
    stop_with_no_table_stopped(sink, &log);
    assert_same_rows(
        &setup.lake_rows_of("public_customers"),
        &scored_rows(1..=45, |id| (21..=40).contains(&id)),
        "rows of both shapes, in the latest shape",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncate_empties_the_table_whatever_shape_it_carries() {
    let setup = Setup::with_tables("trunc", CUSTOMERS_TABLE, "");
    let topic = table_topic(&setup.prefix, &TableId::new("public", "customers"));
    let (v1, v2) = (scored(false), scored(true));
    let mut producer = setup.producer();
    send_scored(&mut producer, &v2, 1..=10, 1_000).await;
    // A truncate carries no row; its shape need not be the table's at its
    // position (a MySQL truncate read after a restart, before any table
    // map, carries the catalog's shape): here one the lake cannot absorb.
    producer
        .send(&change_event(
            &v1,
            Op::Truncate,
            Position::new(2_000, 0),
            None,
            None,
        ))
        .await
        .unwrap();
    send_scored(&mut producer, &v2, 11..=15, 3_000).await;
    producer.flush().await.unwrap();
    let log = setup.dir.path().join("sink.log");
    let sink = setup.spawn_logged(None, Some(&log));
    setup.wait_table_caught_up("public_customers", &topic, Duration::from_secs(60));
    stop_with_no_table_stopped(sink, &log);
    assert_same_rows(
        &setup.lake_rows_of("public_customers"),
        &scored_rows(11..=15, |_| true),
        "the rows after the truncate",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_past_the_end_of_its_partition_stops_the_table_loudly() {
    let CustomersBesideOrders {
        setup,
        customers_topic,
        v1,
        w,
        ..
    } = customers_beside_orders("gap", 1..=8, 7).await;

    // The customers table was written by an earlier run that read far more
    // of its topic than the topic now holds (the topic was recreated).
    let mut table = setup.open_table("customers").await;
    commit_customer_one(
        &mut table,
        &v1,
        Checkpoint {
            topic: customers_topic.clone(),
            offsets: (0..4).map(|p| (p, 1000)).collect(),
            ..Default::default()
        },
    )
    .await;

    let log = setup.dir.path().join("sink.log");
    let sink = setup.spawn_logged(None, Some(&log));
    let text = wait_for_log(&log, "table stopped", Duration::from_secs(60));
    assert!(
        text.contains("public.customers")
            && text.contains("offset 1000, past the partition's end")
            && text.contains("re-snapshot"),
        "the error names the table, the offsets and the fix: {text}"
    );
    // The other table goes on.
    setup.wait_caught_up(Duration::from_secs(60));
    stop_gracefully(sink);
    assert_same_rows(&setup.lake_rows(), &w.expected(), "orders");
    let customers: Vec<String> = setup.lake_rows_of("public_customers").into_keys().collect();
    assert_eq!(
        customers,
        vec!["1".to_string()],
        "nothing read past the gap"
    );
}

/// `partition:number,...` as a map.
fn partition_pairs(text: &str) -> BTreeMap<i32, i64> {
    text.split(',')
        .filter_map(|p| {
            let (a, b) = p.split_once(':')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

/// A pipeline with the customers table beside orders, with customers
/// `ids` (first shape) and one orders transaction of 40 changes sent.
struct CustomersBesideOrders {
    setup: Setup,
    customers_topic: String,
    v1: Arc<TableSchema>,
    producer: EventProducer,
    w: Workload,
}

async fn customers_beside_orders(
    name: &str,
    ids: std::ops::RangeInclusive<i64>,
    seed: u64,
) -> CustomersBesideOrders {
    let setup = Setup::with_tables(name, CUSTOMERS_TABLE, "");
    let customers_topic = table_topic(&setup.prefix, &TableId::new("public", "customers"));
    let v1 = customers(&["id"]);
    let mut producer = setup.producer();
    for id in ids {
        producer.send(&customer(&v1, id)).await.unwrap();
    }
    let mut w = Workload::new(seed);
    for e in w.transaction(40) {
        producer.send(&e).await.unwrap();
    }
    producer.flush().await.unwrap();
    CustomersBesideOrders {
        setup,
        customers_topic,
        v1,
        producer,
        w,
    }
}

/// Commits customer 1 into `table` as another writer, with `checkpoint`.
async fn commit_customer_one(
    table: &mut tidewater::lake::table::Table,
    v1: &Arc<TableSchema>,
    checkpoint: Checkpoint,
) {
    use tidewater::lake::layout::event_record_key;
    use tidewater::lake::table::{Change, CommitBatch};
    let event = customer(v1, 1);
    let row = event.after.clone().unwrap();
    table
        .commit(CommitBatch {
            shapes: vec![v1.clone()],
            changes: vec![Change {
                key: event_record_key(v1, &Row(vec![Datum::Int(1)])),
                position: event.position,
                row: Some(row.into()),
                schema: v1.clone(),
            }]
            .into(),
            truncate: None,
            checkpoint,
            position: Some(event.position),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_again_and_grown_past_the_checkpoint_stops_the_table_loudly() {
    let CustomersBesideOrders {
        setup,
        customers_topic,
        v1,
        mut producer,
        mut w,
    } = customers_beside_orders("recreated", 1..=20, 11).await;

    // A first run reads everything: each partition's stamp is Kafka's
    // timestamp of the last message the lake read of it.
    let log = setup.dir.path().join("first.log");
    let sink = setup.spawn_logged(None, Some(&log));
    setup.wait_table_caught_up(
        "public_customers",
        &customers_topic,
        Duration::from_secs(60),
    );
    setup.wait_caught_up(Duration::from_secs(60));
    stop_with_no_table_stopped(sink, &log);
    let offsets = setup.checkpoint_of("public_customers");
    let stamps = setup.stamps_of("public_customers");
    let read: Vec<i32> = offsets
        .iter()
        .filter(|(_, o)| **o > 0)
        .map(|(p, _)| *p)
        .collect();
    assert!(
        read.len() > 1,
        "customers spread over partitions: {offsets:?}"
    );
    assert_eq!(
        stamps.keys().copied().collect::<Vec<_>>(),
        read,
        "{stamps:?}"
    );
    for p in &read {
        assert_eq!(
            Some(stamps[p]),
            setup.timestamp_at(&customers_topic, *p, offsets[p] - 1),
            "partition {p}: the stamp is the timestamp of the message before the offset"
        );
    }

    // A restart checks each partition by that message and reads on.
    for id in 21..=30 {
        producer.send(&customer(&v1, id)).await.unwrap();
    }
    producer.flush().await.unwrap();
    let log = setup.dir.path().join("second.log");
    let sink = setup.spawn_logged(None, Some(&log));
    setup.wait_table_caught_up(
        "public_customers",
        &customers_topic,
        Duration::from_secs(60),
    );
    stop_with_no_table_stopped(sink, &log);
    let ids = |rows: BTreeMap<String, Json>| -> Vec<i64> {
        let mut ids: Vec<i64> = rows.keys().map(|k| k.parse().unwrap()).collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(
        ids(setup.lake_rows_of("public_customers")),
        (1..=30).collect::<Vec<_>>()
    );

    // Another writer's commit says the lake read other messages at these
    // offsets: as after the topic was deleted, created again and filled
    // past the checkpoint. The offsets alone look fine.
    let offsets = setup.checkpoint_of("public_customers");
    let mut table = setup.open_table("customers").await;
    commit_customer_one(
        &mut table,
        &v1,
        Checkpoint {
            topic: customers_topic.clone(),
            offsets: offsets.clone(),
            stamps: setup
                .stamps_of("public_customers")
                .into_iter()
                .map(|(p, t)| (p, t - 1))
                .collect(),
        },
    )
    .await;
    for id in 31..=35 {
        producer.send(&customer(&v1, id)).await.unwrap();
    }
    for e in w.transaction(20) {
        producer.send(&e).await.unwrap();
    }
    producer.flush().await.unwrap();
    let log = setup.dir.path().join("third.log");
    let sink = setup.spawn_logged(None, Some(&log));
    let text = wait_for_log(&log, "table stopped", Duration::from_secs(60));
    assert!(
        text.contains("public.customers")
            && text.contains("is not the one the lake read there")
            && text.contains("deleted and created again")
            && text.contains("re-snapshot"),
        "the error names the table, the cause and the fix: {text}"
    );
    // The other table goes on; the stopped one reads nothing more.
    setup.wait_caught_up(Duration::from_secs(60));
    stop_gracefully(sink);
    assert_same_rows(&setup.lake_rows(), &w.expected(), "orders");
    assert_eq!(
        ids(setup.lake_rows_of("public_customers")),
        (1..=30).collect::<Vec<_>>()
    );
    assert_eq!(
        setup.checkpoint_of("public_customers"),
        offsets,
        "nothing committed after the stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_file_that_cannot_be_read_stops_its_table_alone() {
    let CustomersBesideOrders {
        setup,
        customers_topic,
        v1,
        mut producer,
        mut w,
    } = customers_beside_orders("unreadable", 1..=20, 9).await;
    let log = setup.dir.path().join("sink.log");
    let sink = setup.spawn_logged(None, Some(&log));
    setup.wait_table_caught_up(
        "public_customers",
        &customers_topic,
        Duration::from_secs(60),
    );
    // Damage the customers' only base file, then update a customer.
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::from(setup.uri_of("public_customers"))];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.ends_with(".hoodie") {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                files.push(path);
            }
        }
    }
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::write(&files[0], b"not a parquet file").unwrap();
    let mut update = customer(&v1, 7);
    update.op = Op::Update;
    update.position = Position::new(90_000, 0);
    producer.send(&update).await.unwrap();
    for e in w.transaction(40) {
        producer.send(&e).await.unwrap();
    }
    producer.flush().await.unwrap();
    let text = wait_for_log(&log, "table stopped", Duration::from_secs(60));
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        text.contains("public.customers") && text.contains(&name),
        "the error names the table and the file: {text}"
    );
    // The sink runs on, but is not healthy: the table needs an operator.
    let (code, body) = tidewater::admin::get(&setup.admin, "/health", None)
        .await
        .unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("\"stopped\":\"") && body.contains(&name),
        "{body}"
    );
    setup.wait_caught_up(Duration::from_secs(60));
    stop_gracefully(sink);
    // Restarted, the table cannot even be opened: it stops alone again.
    let log = setup.dir.path().join("sink2.log");
    let sink = setup.spawn_logged(None, Some(&log));
    let text = wait_for_log(&log, "table stopped", Duration::from_secs(60));
    assert!(
        text.contains("public.customers") && text.contains(&name),
        "{text}"
    );
    for e in w.transaction(40) {
        producer.send(&e).await.unwrap();
    }
    producer.flush().await.unwrap();
    setup.wait_caught_up(Duration::from_secs(60));
    stop_gracefully(sink);
    assert_same_rows(&setup.lake_rows(), &w.expected(), "orders go on");
}

/// A started sink touches its buffer budget once (the first commit then
/// runs on memory already faulted in): the memory stays resident, held by
/// the allocator. With freed memory returned to the system, nothing is
/// touched and the idle sink stays far below that size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_sink_holds_its_buffer_memory_touched() {
    const MIB: u64 = 1 << 20;
    let setup = Setup::with_lake("reserve", "", "  buffer_mb: 512\n");
    let resident = |sink: &Child| (proc::rss_mb(Some(sink.id())) * MIB as f64) as u64;
    let reserved_once = |expected: u64| {
        let setup = &setup;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let now = setup.metric("tidewater_sink_reserved_bytes").await;
                if now == Some(expected as f64) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "reserved: {now:?}, expected {expected}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    let sink = setup.spawn_with(None, None, &[("MIMALLOC_PURGE_DELAY", "1000")]);
    reserved_once(0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = resident(&sink);
    println!("resident without the reserve: {idle} bytes");
    stop_gracefully(sink);

    let sink = setup.spawn(None);
    reserved_once(512 * MIB).await;
    // Freed to the allocator, which keeps it: resident a while later too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reserved = resident(&sink);
    println!("resident after reserving 512 MiB: {reserved} bytes");
    stop_gracefully(sink);
    assert!(
        idle < 256 * MIB,
        "an idle sink without the reserve holds {idle} bytes"
    );
    assert!(
        reserved.saturating_sub(idle) >= 512 * MIB * 9 / 10,
        "resident {reserved} bytes after reserving 512 MiB, {idle} without"
    );
}

/// Item 7 of the lake sink: with the default buffers, a backlog of a million
/// changes of 200-byte rows makes one commit, and the sink stays within
/// 1 GiB while it makes it. The commit interval is an hour, so that only the
/// buffer's own limits cut commits: `max_changes_per_commit` (1M) does,
/// within the budget of `buffer_mb`. The peak resident memory is read once
/// the sink counts that commit as done (its key index updated too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_a_million_200_byte_changes_commits_within_one_gib() {
    const N: i64 = 1_000_000;
    let setup = Setup::with_lake("million", "", "  commit_interval_secs: 3600\n");
    let table = orders();
    let mut producer = setup.producer();
    let mut row_bytes = 0usize;
    for id in 1..=N {
        // id 8 + status 7 + amount 3 + created_at 8 + note 174 bytes.
        let note = format!(
            "{{\"sku\":\"SKU-{:06}\",\"qty\":3,\"note\":\"{id:0>136x}\"}}",
            id % 1_000_000
        );
        row_bytes += 8 + 7 + 3 + 8 + note.len();
        let row = Row(vec![
            Datum::Int(id),
            Datum::Text("shipped".into()),
            Datum::Decimal(Decimal::from_i128(i128::from(id % 100_000) * 100 + 99)),
            Datum::Micros(START + (id % 4) * DAY + id),
            Datum::Text(note),
        ]);
        let event = change_event(
            &table,
            Op::Create,
            Position::new(100, id as u64),
            None,
            Some(row),
        );
        producer.send(&event).await.unwrap();
    }
    producer.flush().await.unwrap();
    let mean = row_bytes as f64 / N as f64;
    assert!((190.0..=210.0).contains(&mean), "rows of {mean} bytes");
    let sink = setup.spawn(None);
    // The inserts of each completed commit, oldest first.
    let commits = || -> Vec<u64> {
        setup
            .commits_of("public_orders")
            .iter()
            .map(|c| {
                c["partitionToWriteStats"]
                    .as_object()
                    .unwrap()
                    .values()
                    .flat_map(|stats| stats.as_array().unwrap())
                    .map(|s| s["numInserts"].as_u64().unwrap())
                    .sum()
            })
            .collect()
    };
    // Counted once the commit is complete in the sink too: its files, its
    // publication and the key index updated with the new keys.
    let deadline = Instant::now() + Duration::from_secs(900);
    while setup
        .metric("tidewater_sink_commits_total")
        .await
        .is_none_or(|n| n < 1.0)
    {
        assert!(Instant::now() < deadline, "no commit within 900 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let peak = proc::peak_rss_mb(Some(sink.id()));
    assert!(peak > 0.0, "no peak RSS read for the sink");
    stop_gracefully(sink);
    let inserts = commits();
    println!("peak RSS of the sink: {peak:.0} MiB; inserts per commit: {inserts:?}");
    // What is committed is exactly what the checkpoint covers (one
    // message per insert); the rest waits in Kafka for the next start.
    let covered: i64 = setup.checkpoint_of("public_orders").values().sum();
    assert_eq!(inserts.iter().sum::<u64>(), covered as u64);
    assert_eq!(
        inserts.first(),
        Some(&(N as u64)),
        "the first commit holds the whole backlog: {inserts:?}"
    );
    assert!(
        peak < 1024.0,
        "the sink's peak RSS was {peak:.0} MiB, above 1 GiB"
    );
}
