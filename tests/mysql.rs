//! MySQL/MariaDB against the real MariaDB and Kafka-API broker started by
//! `scripts/services.sh`: the preflight of `tidewater check --connect`, and
//! capture: snapshot and binlog streaming of every type, checked value by
//! value against what MariaDB itself computes, schema changes and an ENUM
//! reorder mid-stream, TRUNCATE, key changes, `kill -9` of the capture
//! process, and loud stops when the binlog was purged or reset.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::capture::{events_of, materialize, start_capture, wait_confirmed};
use mysql_async::prelude::Queryable;
use serde_json::{Value as Json, json};
use tidewater::config::model::PipelineConfig;
use tidewater::event::change::{Op, SnapshotMarker};
use tidewater::event::table_id::TableId;

async fn mariadb() -> mysql_async::Conn {
    let url = common::mysql_url();
    mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{}", common::unreachable("MariaDB", &url, e)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_names_wrong_settings_privileges_and_keys() {
    let mut db = mariadb().await;
    let name = common::unique_name("pre").to_lowercase();
    let weak = format!("{name}_weak");
    for sql in [
        format!("CREATE DATABASE `{name}`"),
        format!("CREATE TABLE `{name}`.good (id int PRIMARY KEY, v text)"),
        format!("CREATE TABLE `{name}`.nokey (a int, b text)"),
        format!("CREATE VIEW `{name}`.seen AS SELECT id FROM `{name}`.good"),
        format!("CREATE USER '{weak}'@'%' IDENTIFIED BY 'weak-pw'"),
        format!("GRANT SELECT ON `{name}`.* TO '{weak}'@'%'"),
    ] {
        db.query_drop(&sql).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let write = |file: &str, url: &str, tables: &[&str]| {
        let source = format!("  type: mysql\n  url: {url}\n");
        common::write_pipeline(dir.path(), file, &name, &source, &name, tables)
    };
    let url = common::mysql_url();

    // The test server is set up as capture needs it.
    let (code, report) = common::check_connect(&write("ready.yaml", &url, &["good"]));
    let found = common::findings(&report);
    assert_eq!(code, 0, "{report:#}");
    for item in [
        "log_bin = ON",
        "binlog_format = ROW",
        "binlog_row_image = FULL",
        "binlog_row_metadata = FULL",
        "gtid_strict_mode = ON",
    ] {
        assert_eq!(found.get(item), Some(&None), "{item}: {found:#?}");
    }
    assert!(found.keys().any(|k| k.starts_with("privileges of")));

    // A table without a key, a view, a missing table.
    let (code, report) = common::check_connect(&write(
        "keys.yaml",
        &url,
        &["good", "nokey", "seen", "missing"],
    ));
    let found = common::findings(&report);
    assert_eq!(code, 1);
    let table = |t: &str| common::problem_of(&found, &format!("table {name}.{t}"));
    assert!(table("nokey").contains("no primary key"), "{found:#?}");
    assert!(table("seen").contains("VIEW"), "{found:#?}");
    assert!(table("missing").contains("does not exist"));
    assert_eq!(
        found.get(&format!("table {name}.good: exists, keyed")),
        Some(&None)
    );

    // A user with SELECT only: the missing privileges, named with the GRANT.
    let weak_url = common::with_user(&url, &weak, "weak-pw");
    let (code, report) = common::check_connect(&write("weak.yaml", &weak_url, &["good"]));
    let found = common::findings(&report);
    assert_eq!(code, 1);
    let problem = common::problem_of(&found, "privileges");
    for privilege in ["REPLICATION SLAVE", "BINLOG MONITOR", "RELOAD", "GRANT"] {
        assert!(problem.contains(privilege), "{problem}");
    }

    // A setting capture cannot work with: named with its value and the fix
    // (set back at once; nothing else reads this server's binlog now).
    db.query_drop("SET GLOBAL binlog_row_metadata = MINIMAL")
        .await
        .unwrap();
    let (code, report) = common::check_connect(&write("ready.yaml", &url, &["good"]));
    db.query_drop("SET GLOBAL binlog_row_metadata = FULL")
        .await
        .unwrap();
    assert_eq!(code, 1);
    let problem = common::problem_of(&common::findings(&report), "binlog_row_metadata");
    assert!(
        problem.contains("`MINIMAL`") && problem.contains("`FULL`"),
        "{problem}"
    );

    db.query_drop(format!("DROP DATABASE `{name}`"))
        .await
        .unwrap();
    db.query_drop(format!("DROP USER '{weak}'@'%'"))
        .await
        .unwrap();
}

fn pipeline(name: &str, tables: Json) -> PipelineConfig {
    serde_json::from_value(json!({
        "name": name,
        "source": {
            "type": "mysql",
            "url": common::mysql_url(),
            "snapshot": "initial",
            "snapshot_chunk_rows": 2,
            "heartbeat_interval_secs": 1,
            "tables": tables,
        },
        "kafka": {"brokers": common::kafka_brokers(), "topic_prefix": name, "topic_partitions": 3},
    }))
    .unwrap()
}

/// The server's binlog position as capture numbers it (file << 32 | pos).
async fn binlog_position(db: &mut mysql_async::Conn) -> u64 {
    let row: mysql_async::Row = db.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    let file: String = row.get(0).unwrap();
    let pos: u64 = row.get(1).unwrap();
    tidewater::sources::mysql::position_of(&file, pos)
}

/// What MariaDB holds, each value computed by MariaDB in the form
/// `common::plain` gives (days, microseconds, hex, labels), as text:
/// key (as `plain` renders it) → column → value.
async fn oracle(
    db: &mut mysql_async::Conn,
    table: &str,
    columns: &[(&str, &str)],
    key: &str,
) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    db.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let exprs: Vec<String> = columns
        .iter()
        .map(|(name, kind)| {
            let c = format!("`{name}`");
            let e = match *kind {
                "plain" => c,
                "days" => format!("DATEDIFF({c}, '1970-01-01')"),
                "micros" => format!("TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {c})"),
                "time" => format!(
                    "IF({c} < 0, -1, 1) * ((HOUR({c}) * 3600 + MINUTE({c}) * 60 + SECOND({c})) * 1000000 + MICROSECOND({c}))"
                ),
                "number" => format!("{c} + 0"),
                "hex" => format!("LOWER(HEX({c}))"),
                "bits12" => format!("LPAD(LOWER(HEX({c})), 4, '0')"),
                other => panic!("kind {other}"),
            };
            format!("CAST({e} AS CHAR)")
        })
        .collect();
    let sql = format!(
        "SELECT CAST(`{key}` AS CHAR), {} FROM {table}",
        exprs.join(", ")
    );
    let rows: Vec<mysql_async::Row> = db.query(sql).await.unwrap();
    let mut out = BTreeMap::new();
    for row in rows {
        let mut values: Vec<Option<String>> = row
            .unwrap()
            .into_iter()
            .map(|v| match v {
                mysql_async::Value::NULL => None,
                mysql_async::Value::Bytes(b) => Some(String::from_utf8(b).unwrap()),
                other => Some(other.as_sql(true)),
            })
            .collect();
        let k = values.remove(0).unwrap();
        let row = columns
            .iter()
            .map(|(n, _)| n.to_string())
            .zip(values)
            .collect();
        out.insert(k, row);
    }
    out
}

/// A materialized row's values as text, the way MariaDB casts them.
fn as_text(
    rows: BTreeMap<String, BTreeMap<String, Json>>,
) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    rows.into_iter()
        .map(|(k, row)| {
            let k = match serde_json::from_str::<Json>(&k).unwrap() {
                Json::String(s) => s,
                other => other.to_string(),
            };
            let row = row
                .into_iter()
                .map(|(c, v)| {
                    let t = match v {
                        Json::Null => None,
                        Json::String(s) => Some(s),
                        Json::Bool(b) => Some(if b { "1" } else { "0" }.to_string()),
                        other => Some(other.to_string()),
                    };
                    (c, t)
                })
                .collect();
            (k, row)
        })
        .collect()
}

/// FLOAT and DOUBLE columns printed one way (MariaDB writes `1e300`,
/// JSON `1e+300`).
fn floats_as_numbers(
    mut rows: BTreeMap<String, BTreeMap<String, Option<String>>>,
) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    for row in rows.values_mut() {
        for c in ["f", "d"] {
            if let Some(Some(v)) = row.get_mut(c) {
                *v = format!("{:e}", v.parse::<f64>().unwrap());
            }
        }
    }
    rows
}

const TYPES_TABLE: &str = "id INT PRIMARY KEY,
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
    mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
    f FLOAT, d DOUBLE, dec1 DECIMAL(10,2), dec2 DECIMAL(65,30),
    dt DATETIME(6), ts TIMESTAMP(3) NULL DEFAULT NULL, tm TIME(1), tm6 TIME(6), dte DATE, y YEAR,
    b1 BIT(1), b12 BIT(12), e ENUM('small','large','x,y'), st SET('a','b','c'),
    c CHAR(5), vc VARCHAR(100), l1 VARCHAR(20) CHARACTER SET latin1, bn BINARY(4), vb VARBINARY(10),
    tx TEXT, bl BLOB, j JSON";

const TYPES_COLUMNS: &[(&str, &str)] = &[
    ("id", "plain"),
    ("ti", "plain"),
    ("tiu", "plain"),
    ("si", "plain"),
    ("siu", "plain"),
    ("mi", "plain"),
    ("miu", "plain"),
    ("i", "plain"),
    ("iu", "plain"),
    ("bi", "plain"),
    ("biu", "plain"),
    ("f", "plain"),
    ("d", "plain"),
    ("dec1", "plain"),
    ("dec2", "plain"),
    ("dt", "micros"),
    ("ts", "micros"),
    ("tm", "time"),
    ("tm6", "time"),
    ("dte", "days"),
    ("y", "number"),
    ("b1", "number"),
    ("b12", "bits12"),
    ("e", "plain"),
    ("st", "plain"),
    ("c", "plain"),
    ("vc", "plain"),
    ("l1", "plain"),
    ("bn", "hex"),
    ("vb", "hex"),
    ("tx", "plain"),
    ("bl", "hex"),
    ("j", "plain"),
];

/// One row of every type, extremes included (`n` varies it).
fn types_row(n: i64) -> String {
    let big = "9".repeat(35);
    let frac = "9".repeat(30);
    match n % 3 {
        0 => format!(
            "({n}, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, \
             1.5, 1e300, -12345678.91, -{big}.{frac}, '9999-12-31 23:59:59.999999', '2024-01-01 10:00:00.123', '-00:00:01.5', '838:59:59.000000', '2024-02-29', 2155, \
             1, b'101010111100', 'x,y', 'a,c', 'ab', '☃ snow {n}', 'café €', x'0102', x'00ff', REPEAT('long text ', 50), x'deadbeef', '{{\"a\": [1, 2], \"n\": {n}}}')"
        ),
        1 => format!(
            "({n}, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 9223372036854775807, 0, \
             -2.25, -0.5, 0.05, 0.000000000000000000000000000001, '1000-01-01 00:00:00', '1970-01-02 00:00:00', '-12:34:56.7', '-25:00:00.000001', '0000-00-00', 1901, \
             0, b'1', 'small', '', '', '', '', x'', x'', '', x'', '[]')"
        ),
        _ => format!(
            "({n}, NULL, NULL, NULL, NULL, -5, NULL, NULL, NULL, NULL, 9223372036854775808, \
             NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, \
             NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_binlog_of_every_type_match_mariadb_through_ddl_and_truncate() {
    let mut db = mariadb().await;
    let name = common::unique_name("mytypes").to_lowercase();
    // Zero dates are allowed, and the writer's time zone is not UTC: the
    // TIMESTAMP written at 10:00 +05:00 is 05:00 UTC.
    db.query_drop("SET sql_mode = '', time_zone = '+05:00'")
        .await
        .unwrap();
    db.query_drop(format!("CREATE DATABASE `{name}`"))
        .await
        .unwrap();
    let table = format!("`{name}`.t");
    db.query_drop(format!("CREATE TABLE {table} ({TYPES_TABLE})"))
        .await
        .unwrap();
    let snapshot_rows: Vec<String> = (1..=5).map(types_row).collect();
    db.query_drop(format!(
        "INSERT INTO {table} VALUES {}",
        snapshot_rows.join(", ")
    ))
    .await
    .unwrap();

    let cfg = pipeline(&name, json!([{"name": format!("{name}.t")}]));
    let (stats, stop, task) = start_capture(&cfg).await;
    let id = TableId::new(&name, "t");
    let kafka = cfg.kafka.clone();

    // Streaming: a multi-row insert, updates, a key change, a delete.
    db.query_drop("SET sql_mode = '', time_zone = '+05:00'")
        .await
        .unwrap();
    let streamed: Vec<String> = (6..=11).map(types_row).collect();
    db.query_drop(format!(
        "INSERT INTO {table} VALUES {}",
        streamed.join(", ")
    ))
    .await
    .unwrap();
    for sql in [
        format!(
            "UPDATE {table} SET vc = CONCAT(vc, ' updated'), dec1 = dec1 + 1, e = 'large' WHERE id % 2 = 0"
        ),
        format!("UPDATE {table} SET id = 100 WHERE id = 2"),
        format!("DELETE FROM {table} WHERE id = 3"),
        "BEGIN".to_string(),
        format!("UPDATE {table} SET tm6 = '-838:59:59.000000', y = 0 WHERE id = 4"),
        format!("INSERT INTO {table} VALUES {}", types_row(12)),
        "COMMIT".to_string(),
    ] {
        db.query_drop(&sql).await.unwrap();
    }
    let pos = binlog_position(&mut db).await;
    wait_confirmed(&stats, pos).await;
    let before_ddl = events_of(&kafka, &name, &id).await;
    assert_eq!(
        floats_as_numbers(as_text(materialize(&before_ddl))),
        floats_as_numbers(oracle(&mut db, &table, TYPES_COLUMNS, "id").await),
        "before DDL"
    );
    let reads = before_ddl.iter().filter(|e| e.op == Op::Read).count();
    assert_eq!(reads, 5);
    assert!(
        before_ddl
            .iter()
            .filter(|e| e.op == Op::Read)
            .all(|e| e.source.snapshot == SnapshotMarker::True)
    );
    // The key change is a delete and a create.
    assert!(before_ddl.iter().any(|e| e.op == Op::Delete
        && e.before.as_ref().unwrap().0[0] == tidewater::event::datum::Datum::Int(2)));
    // One zero date in the snapshot, one streamed (row 7, row 10), as NULL.
    assert!(stats.zero_dates.load(std::sync::atomic::Ordering::Relaxed) >= 2);

    // Schema changes mid-stream, each followed by changes.
    db.query_drop("SET time_zone = '+05:00'").await.unwrap();
    for sql in [
        format!("ALTER TABLE {table} ADD COLUMN extra VARCHAR(10) DEFAULT 'x'"),
        format!("UPDATE {table} SET extra = 'new' WHERE id = 1"),
        format!("ALTER TABLE {table} DROP COLUMN vb"),
        format!("UPDATE {table} SET vc = 'after drop' WHERE id = 5"),
        format!("ALTER TABLE {table} MODIFY COLUMN i BIGINT"),
        format!("UPDATE {table} SET i = 9000000000 WHERE id = 5"),
        // ENUM reorder: stored indexes change, labels must not.
        format!("ALTER TABLE {table} MODIFY COLUMN e ENUM('x,y','large','small','huge')"),
        format!("UPDATE {table} SET e = 'huge' WHERE id = 1"),
        format!("UPDATE {table} SET vc = 'touched' WHERE e IS NOT NULL"),
    ] {
        db.query_drop(&sql).await.unwrap();
    }
    let columns: Vec<(&str, &str)> = TYPES_COLUMNS
        .iter()
        .copied()
        .filter(|(n, _)| *n != "vb")
        .chain([("extra", "plain")])
        .collect();
    let pos = binlog_position(&mut db).await;
    wait_confirmed(&stats, pos).await;
    let after_ddl = events_of(&kafka, &name, &id).await;
    let mut state = materialize(&after_ddl);
    // Materialized rows keep columns of earlier shapes; MariaDB no longer
    // has `vb`.
    for row in state.values_mut() {
        row.remove("vb");
        row.entry("extra".into()).or_insert(Json::Null);
    }
    let expected = oracle(&mut db, &table, &columns, "id").await;
    let mut got = as_text(state);
    // Rows not updated since the ADD COLUMN have no `extra` in any event;
    // MariaDB filled the default in.
    for (k, row) in got.iter_mut() {
        if row.get("extra") == Some(&None) {
            row.insert("extra".into(), expected[k]["extra"].clone());
        }
    }
    assert_eq!(
        floats_as_numbers(got),
        floats_as_numbers(expected),
        "after DDL"
    );
    let e_of = |e: &tidewater::event::change::ChangeEvent| {
        e.table
            .columns
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };
    let last = after_ddl.last().unwrap();
    assert!(e_of(last).contains(&"extra".to_string()) && !e_of(last).contains(&"vb".to_string()));
    let i_type = &last.table.columns[last.table.column_index("i").unwrap()].ty;
    assert_eq!(i_type.name(), "int64", "{i_type:?}");

    // TRUNCATE, then new rows.
    db.query_drop(format!("TRUNCATE TABLE {table}"))
        .await
        .unwrap();
    db.query_drop(format!(
        "INSERT INTO {table} (id, vc, e) VALUES (1, 'after truncate', 'huge')"
    ))
    .await
    .unwrap();
    let pos = binlog_position(&mut db).await;
    wait_confirmed(&stats, pos).await;
    let all = events_of(&kafka, &name, &id).await;
    assert!(all.iter().any(|e| e.op == Op::Truncate));
    let mut state = materialize(&all);
    for row in state.values_mut() {
        row.remove("vb");
    }
    assert_eq!(
        floats_as_numbers(as_text(state)),
        floats_as_numbers(oracle(&mut db, &table, &columns, "id").await),
        "after truncate"
    );

    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    db.query_drop(format!("DROP DATABASE `{name}`"))
        .await
        .unwrap();
}

/// Ids in a table's topic (from `after` images, first column).
async fn ids_in_topic(name: &str, table: &TableId) -> std::collections::BTreeSet<i64> {
    let kafka = tidewater::config::model::KafkaConfig::with_brokers(common::kafka_brokers());
    events_of(&kafka, name, table)
        .await
        .iter()
        .filter_map(|e| match e.after.as_ref().and_then(|a| a.0.first()) {
            Some(tidewater::event::datum::Datum::Int(id)) => Some(*id),
            _ => None,
        })
        .collect()
}

/// The capture process, killed with SIGKILL at seeded moments while a writer
/// commits small transactions and large ones (so that many kills land
/// inside a transaction being read): afterwards every committed row is in
/// Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_at_twenty_seeded_moments_loses_nothing() {
    use tidewater::event::sample::Rng;
    let seed = Rng::seed_from_env();
    println!("seed {seed} (TIDEWATER_SEED={seed} replays it)");
    let mut rng = Rng::new(seed);
    let mut db = mariadb().await;
    let name = common::unique_name("mykill").to_lowercase();
    for sql in [
        format!("CREATE DATABASE `{name}`"),
        format!("CREATE TABLE `{name}`.ledger (id BIGINT PRIMARY KEY, note VARCHAR(20))"),
        format!("INSERT INTO `{name}`.ledger SELECT seq, 'pre' FROM `{name}`.seq_1_to_5000"),
    ] {
        db.query_drop(&sql).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = common::write_pipeline(
        dir.path(),
        "kill.yaml",
        &name,
        &format!(
            "  type: mysql\n  url: {}\n  snapshot_chunk_rows: 500\n  heartbeat_interval_secs: 1\n",
            common::mysql_url()
        ),
        &name,
        &["ledger"],
    );
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        let name = name.clone();
        let mut rng = Rng::new(seed ^ 0x5eed);
        tokio::spawn(async move {
            let mut db = mariadb().await;
            let mut next = 100_000i64;
            while writing.load(std::sync::atomic::Ordering::SeqCst) {
                let n = if rng.below(10) == 0 {
                    5_000
                } else {
                    1 + rng.below(20) as i64
                };
                db.query_drop(format!(
                    "INSERT INTO `{name}`.ledger SELECT seq, 'live' FROM `{name}`.seq_{next}_to_{}",
                    next + n - 1
                ))
                .await
                .unwrap();
                next += n;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let spawn = || {
        common::spawn_run(
            &["--role", "capture", "--admin-addr", "127.0.0.1:0"],
            &[&file],
            &dir.path().join("capture.log"),
        )
    };
    common::kill_rounds(20, &mut rng, spawn, &dir.path().join("capture.log")).await;
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap();

    // A last run until every row is in Kafka, stopped with SIGTERM.
    let table = TableId::new(&name, "ledger");
    let in_db: Vec<i64> = db
        .query(format!("SELECT id FROM `{name}`.ledger ORDER BY id"))
        .await
        .unwrap();
    assert!(in_db.len() > 5_000, "the writer wrote");
    let mut child = common::Reaped(spawn());
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let ids = ids_in_topic(&name, &table).await;
        let missing: Vec<&i64> = in_db
            .iter()
            .filter(|id| !ids.contains(id))
            .take(10)
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: rows never reached Kafka: {missing:?}; log: {}",
            std::fs::read_to_string(dir.path().join("capture.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let status = common::sigterm(&mut child.0);
    assert!(status.success(), "SIGTERM exits 0: {status}");
    db.query_drop(format!("DROP DATABASE `{name}`"))
        .await
        .unwrap();
}

/// The binlog file capture stopped in is gone from the server when it
/// starts again (purged while it was down): it stops with the cause instead
/// of skipping the changes it can no longer read.
///
/// The shared test server's binlogs are not purged (that would also purge
/// what other pipelines on it, the quickstart's, still need): the recorded
/// position is moved to file number 0, which no server has, so the server
/// is in exactly the state a purge leaves: the file is not in its list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_purged_while_stopped_is_a_loud_stop() {
    let mut db = mariadb().await;
    let name = common::unique_name("mypurge").to_lowercase();
    for sql in [
        format!("CREATE DATABASE `{name}`"),
        format!("CREATE TABLE `{name}`.t (id INT PRIMARY KEY)"),
        format!("INSERT INTO `{name}`.t VALUES (1)"),
    ] {
        db.query_drop(&sql).await.unwrap();
    }
    let cfg = pipeline(&name, json!([{"name": format!("{name}.t")}]));
    let (stats, stop, task) = start_capture(&cfg).await;
    db.query_drop(format!("INSERT INTO `{name}`.t VALUES (2)"))
        .await
        .unwrap();
    let pos = binlog_position(&mut db).await;
    wait_confirmed(&stats, pos).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();

    // While it is down, a change, and the file it stopped in disappears.
    db.query_drop(format!("INSERT INTO `{name}`.t VALUES (3)"))
        .await
        .unwrap();
    let mut state = tidewater::kafka::state::StateStore::new(
        &tidewater::kafka::client::client_config(&cfg.kafka),
    );
    let key = format!("mysql/{name}");
    let mut record = state
        .read(&key)
        .await
        .unwrap()
        .expect("capture recorded its position");
    let file = record["file"].as_str().unwrap().to_string();
    let (base, _) = file.rsplit_once('.').unwrap();
    let gone = format!("{base}.000000");
    record["file"] = json!(gone);
    state.write(&key, &record).await.unwrap();

    let stats = std::sync::Arc::new(tidewater::sources::CaptureStats::default());
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        tidewater::sources::run(&cfg, stats, std::future::pending()),
    )
    .await
    .expect("capture must stop, not retry");
    let err = result.unwrap_err();
    assert!(
        matches!(err, tidewater::sources::CaptureError::Operator(_)),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&gone) && text.contains("purged") && text.contains("Fix:"),
        "{text}"
    );
    db.query_drop(format!("DROP DATABASE `{name}`"))
        .await
        .unwrap();
}

/// One transaction of a million rows: every row arrives, all at the
/// transaction's position with ordinals 0..1M.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_row_transaction_arrives_whole_and_in_order() {
    let mut db = mariadb().await;
    let name = common::unique_name("mybig").to_lowercase();
    for sql in [
        format!("CREATE DATABASE `{name}`"),
        format!("CREATE TABLE `{name}`.big (id INT PRIMARY KEY, v VARCHAR(20), n DECIMAL(12,2))"),
    ] {
        db.query_drop(&sql).await.unwrap();
    }
    let cfg = pipeline(&name, json!([{"name": format!("{name}.big")}]));
    let (stats, stop, task) = start_capture(&cfg).await;
    db.query_drop(format!(
        "INSERT INTO `{name}`.big SELECT seq, CONCAT('row ', seq), seq / 100 FROM `{name}`.seq_1_to_1000000"
    ))
    .await
    .unwrap();
    let pos = binlog_position(&mut db).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    while stats
        .confirmed_lsn
        .load(std::sync::atomic::Ordering::SeqCst)
        < pos
    {
        assert!(Instant::now() < deadline, "not confirmed in 10 minutes");
        assert!(!task.is_finished(), "capture ended");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let kafka = cfg.kafka.clone();
    let events = events_of(&kafka, &name, &TableId::new(&name, "big")).await;
    assert_eq!(events.len(), 1_000_000);
    let commit = events[0].position.commit;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.position.commit, commit);
        assert_eq!(e.position.ordinal, i as u64);
        assert_eq!(e.op, Op::Create);
    }
    // Values: spot checks against what was inserted.
    for e in events.iter().step_by(99_991) {
        let after = &e.after.as_ref().unwrap().0;
        let tidewater::event::datum::Datum::Int(id) = after[0] else {
            panic!("{after:?}")
        };
        assert_eq!(
            after[1],
            tidewater::event::datum::Datum::Text(format!("row {id}"))
        );
        let tidewater::event::datum::Datum::Decimal(n) = &after[2] else {
            panic!("{after:?}")
        };
        assert_eq!(
            n.to_string_scaled(2),
            format!("{}.{:02}", id / 100, id % 100)
        );
    }
    db.query_drop(format!("DROP DATABASE `{name}`"))
        .await
        .unwrap();
}

/// A column in a character set tidewater does not decode (here utf16) does
/// not stop capture when it is excluded: the binlog's row images skip it.
/// Captured, it stops capture with an error naming the column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excluded_column_of_an_unsupported_charset_is_skipped_and_an_included_one_refused() {
    let mut db = mariadb().await;
    let name = common::unique_name("mycs").to_lowercase();
    for sql in [
        format!("CREATE DATABASE `{name}`"),
        format!(
            "CREATE TABLE `{name}`.notes (id INT PRIMARY KEY, label VARCHAR(20), \
             legacy VARCHAR(20) CHARACTER SET utf16, n INT)"
        ),
        format!("INSERT INTO `{name}`.notes VALUES (1, 'a', 'x', 10), (2, 'b', NULL, 20)"),
    ] {
        db.query_drop(&sql).await.unwrap();
    }
    let table = format!("{name}.notes");
    let cfg = pipeline(
        &name,
        json!([{"name": table, "exclude_columns": ["legacy"]}]),
    );
    let (stats, stop, task) = start_capture(&cfg).await;
    for sql in [
        format!("INSERT INTO `{name}`.notes VALUES (3, 'c', 'y', 30)"),
        format!("UPDATE `{name}`.notes SET label = 'bb', legacy = 'z' WHERE id = 2"),
        format!("DELETE FROM `{name}`.notes WHERE id = 1"),
    ] {
        db.query_drop(&sql).await.unwrap();
    }
    wait_confirmed(&stats, binlog_position(&mut db).await).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let events = events_of(&cfg.kafka, &name, &TableId::new(&name, "notes")).await;
    assert_eq!(
        events.len(),
        2 + 3,
        "2 snapshot rows, an insert, an update, a delete"
    );
    for e in &events {
        let names: Vec<&str> = e.table.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "label", "n"]);
    }
    let rows = materialize(&events);
    let want: BTreeMap<String, BTreeMap<String, Json>> = [
        ("2", json!({"id": 2, "label": "bb", "n": 20})),
        ("3", json!({"id": 3, "label": "c", "n": 30})),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), serde_json::from_value(v).unwrap()))
    .collect();
    assert_eq!(rows, want);

    // The same column captured: a stop naming it, at the latest when the
    // binlog brings a row of the table.
    let included = pipeline(&format!("{name}_in"), json!([{"name": table}]));
    let stats = std::sync::Arc::new(tidewater::sources::CaptureStats::default());
    let task = {
        let stats = stats.clone();
        tokio::spawn(async move {
            tidewater::sources::run(&included, stats, std::future::pending()).await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stats
        .snapshot_done
        .load(std::sync::atomic::Ordering::SeqCst)
        && !task.is_finished()
    {
        assert!(Instant::now() < deadline, "neither refused nor started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    db.query_drop(format!(
        "INSERT INTO `{name}`.notes VALUES (4, 'd', 'w', 40)"
    ))
    .await
    .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("stopped within 60 s")
        .unwrap()
        .expect_err("a utf16 column cannot be captured")
        .to_string();
    assert!(err.contains("legacy") && err.contains("utf16"), "{err}");
    db.query_drop(format!("DROP DATABASE `{name}`"))
        .await
        .unwrap();
}

/// A CA of its own, made in `dir`: it signed nothing the test server has.
fn throwaway_ca(dir: &std::path::Path) -> String {
    let (key, crt) = (dir.join("other.key"), dir.join("other.crt"));
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=not the tidewater test CA", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    crt.to_str().unwrap().to_string()
}

/// The cipher of `conn`'s session as the server reports it (empty: plain).
async fn session_cipher(conn: &mut mysql_async::Conn) -> String {
    let row: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .await
        .unwrap();
    row.map(|(_, v)| v).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_hold_on_mysql_connections_and_refusals_name_host_mode_and_cause() {
    use tidewater::sources::mysql::connection::Connections;
    let ca = common::mysql_ca_file();
    assert!(
        std::path::Path::new(&ca).exists(),
        "{ca} missing: `scripts/services.sh up` makes it"
    );
    let dir = tempfile::tempdir().unwrap();
    let other = throwaway_ca(dir.path());
    let by_ip = common::mysql_url();
    let by_name = by_ip.replace("127.0.0.1", "localhost");
    assert_ne!(by_ip, by_name, "the test URL names 127.0.0.1");
    let port = url::Url::parse(&by_ip).unwrap().port().unwrap_or(3306);
    let (at_ip, at_name) = (format!("127.0.0.1:{port}"), format!("localhost:{port}"));
    let source = |url: &str, tls: Json| -> tidewater::config::model::MysqlSource {
        serde_json::from_value(json!({"url": url, "tls": tls, "tables": []})).unwrap()
    };
    // (url, tls, Ok(encrypted) or Err(parts of the message)).
    type Case<'a> = (&'a str, Json, Result<bool, Vec<&'a str>>);
    let cases: Vec<Case> = vec![
        (&by_ip, json!({"mode": "disable"}), Ok(false)),
        (&by_ip, json!({"mode": "prefer"}), Ok(true)),
        (&by_ip, json!({"mode": "require"}), Ok(true)),
        // `require` with a CA file checks the chain, as libpq does.
        (&by_ip, json!({"mode": "require", "ca_file": ca}), Ok(true)),
        // The certificate names "localhost" only: verify-ca does not care.
        (
            &by_ip,
            json!({"mode": "verify-ca", "ca_file": ca}),
            Ok(true),
        ),
        (
            &by_name,
            json!({"mode": "verify-ca", "ca_file": ca}),
            Ok(true),
        ),
        (
            &by_name,
            json!({"mode": "verify-full", "ca_file": ca}),
            Ok(true),
        ),
        (
            &by_ip,
            json!({"mode": "verify-full", "ca_file": ca}),
            Err(vec![
                &at_ip,
                "`source.tls.mode: verify-full`",
                "does not name `127.0.0.1`",
                "host name mismatch",
            ]),
        ),
        (
            &by_ip,
            json!({"mode": "verify-ca", "ca_file": other}),
            Err(vec![
                &at_ip,
                "`source.tls.mode: verify-ca`",
                "certificate is not signed by a CA of",
                &other,
            ]),
        ),
        (
            &by_ip,
            json!({"mode": "require", "ca_file": other}),
            Err(vec![
                "`source.tls.mode: require`",
                "certificate is not signed by a CA",
            ]),
        ),
        // The test CA is not among the system's roots.
        (
            &by_name,
            json!({"mode": "verify-full"}),
            Err(vec![
                &at_name,
                "`source.tls.mode: verify-full`",
                "certificate is not signed by a CA of the system's roots",
            ]),
        ),
    ];
    for (url, tls, want) in cases {
        let what = format!("{url} {tls}");
        let connections = Connections::new(&source(url, tls)).unwrap();
        match want {
            Ok(encrypted) => {
                // Twice: the second connection uses what the first learned
                // (verify-ca by IP: a name the certificate holds).
                for n in 0..2 {
                    let mut conn = connections
                        .connect()
                        .await
                        .unwrap_or_else(|e| panic!("{what} ({n}): {e}"));
                    let cipher = session_cipher(&mut conn).await;
                    assert_eq!(!cipher.is_empty(), encrypted, "{what} ({n}): `{cipher}`");
                    conn.disconnect().await.unwrap();
                }
            }
            Err(parts) => {
                let e = connections
                    .connect()
                    .await
                    .err()
                    .unwrap_or_else(|| panic!("{what}: connected"));
                assert!(!e.is_retryable(), "{what}: {e}");
                let text = e.to_string();
                for part in parts {
                    assert!(text.contains(part), "{what}: {part:?} in {text}");
                }
            }
        }
    }

    // A refused certificate stops capture at once (no reconnect loop).
    let name = common::unique_name("mytlsstop").to_lowercase();
    let mut cfg = pipeline(&name, json!([{"name": format!("{name}.t")}]));
    let tidewater::config::model::SourceConfig::Mysql(src) = &mut cfg.source else {
        unreachable!()
    };
    *src = source(&by_ip, json!({"mode": "verify-full", "ca_file": ca}));
    src.tables = vec![serde_json::from_value(json!({"name": format!("{name}.t")})).unwrap()];
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        tidewater::sources::mysql::run(&cfg, Default::default(), std::future::pending()),
    )
    .await
    .expect("stops instead of retrying")
    .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("host name mismatch"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_and_capture_over_verify_full_as_a_user_allowed_only_tls() {
    let mut db = mariadb().await;
    let name = common::unique_name("mytls").to_lowercase();
    // The server refuses this user any connection without TLS: capture
    // working as it proves every connection (snapshot, queries, binlog
    // dump) was encrypted.
    let user = format!("{name}_u");
    for sql in [
        format!("CREATE DATABASE `{name}`"),
        format!("CREATE TABLE `{name}`.t (id INT PRIMARY KEY, v VARCHAR(20))"),
        format!("INSERT INTO `{name}`.t VALUES (1, 'a'), (2, 'b'), (3, 'c')"),
        format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'tls-pw' REQUIRE SSL"),
        format!("GRANT ALL PRIVILEGES ON *.* TO '{user}'@'%'"),
    ] {
        db.query_drop(&sql).await.unwrap();
    }
    let ca = common::mysql_ca_file();
    let url =
        common::with_user(&common::mysql_url(), &user, "tls-pw").replace("127.0.0.1", "localhost");
    assert!(url.contains("@localhost:"), "{url}");

    // `check --connect` over verify-full reports the session's TLS.
    let dir = tempfile::tempdir().unwrap();
    let write = |file: &str, tls: &str| {
        let source = format!("  type: mysql\n  url: {url}\n  tls:\n{tls}");
        common::write_pipeline(dir.path(), file, &name, &source, &name, &["t"])
    };
    let verify_full = format!("    mode: verify-full\n    ca_file: {ca}\n");
    let (code, report) = common::check_connect(&write("tls.yaml", &verify_full));
    assert_eq!(code, 0, "{report:#}");
    let found = common::findings(&report);
    let tls = found
        .keys()
        .find(|k| k.starts_with("tls = "))
        .unwrap_or_else(|| panic!("no TLS finding: {found:#?}"));
    assert!(
        tls.starts_with("tls = TLSv1.") && tls.ends_with("(mode verify-full)"),
        "{tls}"
    );
    assert_eq!(found[tls], None);
    // The same user without TLS: the server refuses it, so the check above
    // could only pass over TLS.
    let (code, report) = common::check_connect(&write("plain.yaml", "    mode: disable\n"));
    assert_eq!(code, 1, "{report:#}");
    let problem = common::problem_of(&common::findings(&report), "connection");
    assert!(problem.contains("Access denied"), "{problem}");
    // By IP the certificate's name does not match: the check says so.
    let by_ip = url.replace("@localhost:", "@127.0.0.1:");
    let source = format!("  type: mysql\n  url: {by_ip}\n  tls:\n{verify_full}");
    let file = common::write_pipeline(dir.path(), "ip.yaml", &name, &source, &name, &["t"]);
    let (code, report) = common::check_connect(&file);
    assert_eq!(code, 1, "{report:#}");
    let problem = common::problem_of(&common::findings(&report), "connection");
    assert!(problem.contains("host name mismatch"), "{problem}");

    // Capture over verify-full: the snapshot and binlog changes reach Kafka.
    let cfg: PipelineConfig = serde_json::from_value(json!({
        "name": name,
        "source": {
            "type": "mysql",
            "url": url,
            "tls": {"mode": "verify-full", "ca_file": ca},
            "heartbeat_interval_secs": 1,
            "tables": [{"name": format!("{name}.t")}],
        },
        "kafka": {"brokers": common::kafka_brokers(), "topic_prefix": name, "topic_partitions": 3},
    }))
    .unwrap();
    let (stats, stop, task) = start_capture(&cfg).await;
    for sql in [
        format!("INSERT INTO `{name}`.t VALUES (4, 'd')"),
        format!("UPDATE `{name}`.t SET v = 'a2' WHERE id = 1"),
        format!("DELETE FROM `{name}`.t WHERE id = 2"),
    ] {
        db.query_drop(&sql).await.unwrap();
    }
    let pos = binlog_position(&mut db).await;
    wait_confirmed(&stats, pos).await;
    // The binlog dump is this user's connection.
    let commands: Vec<String> = db
        .exec(
            "SELECT COMMAND FROM information_schema.PROCESSLIST WHERE USER = ?",
            (&user,),
        )
        .await
        .unwrap();
    assert!(commands.iter().any(|c| c == "Binlog Dump"), "{commands:?}");
    let events = events_of(&cfg.kafka, &name, &TableId::new(&name, "t")).await;
    let ops: Vec<Op> = events.iter().map(|e| e.op).collect();
    assert_eq!(
        ops,
        [
            Op::Read,
            Op::Read,
            Op::Read,
            Op::Create,
            Op::Update,
            Op::Delete
        ],
        "{events:#?}"
    );
    let rows = materialize(&events);
    let values: BTreeMap<String, Json> = rows
        .into_iter()
        .map(|(k, row)| (k, row["v"].clone()))
        .collect();
    assert_eq!(
        values,
        BTreeMap::from([
            ("1".to_string(), json!("a2")),
            ("3".to_string(), json!("c")),
            ("4".to_string(), json!("d")),
        ])
    );
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    db.query_drop(format!("DROP DATABASE `{name}`"))
        .await
        .unwrap();
    db.query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .unwrap();
}
