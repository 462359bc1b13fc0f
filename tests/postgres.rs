//! Postgres capture against the real Postgres and Kafka-API broker started by
//! `scripts/services.sh`: snapshot and streaming of every mapped type, checked
//! value by value against what Postgres itself computes, TOAST handling with
//! both replica identities, schema changes mid-stream, truncate, key changes,
//! quoted identifiers, and `kill -9` of the capture process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::capture::{events_of, materialize, start_capture, stop_capture, wait_confirmed};
use serde_json::{Value as Json, json};
use tidewater::config::model::{KafkaConfig, PipelineConfig};
use tidewater::event::change::{ChangeEvent, Op};
use tidewater::event::datum::Datum;
use tidewater::event::table_id::TableId;
use tidewater::kafka::topic::table_topic;
use tidewater::sources::postgres;
use tidewater::sources::postgres::wire::parse_lsn;
use tokio_postgres::{Client, NoTls};

/// Held by the tests that load the broker most (the million-row
/// transaction) or time it (the kill test's sampler): one at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn pg() -> Client {
    connect_pg().await
}

async fn connect_pg() -> Client {
    let url = common::pg_url();
    let (client, conn) = tokio_postgres::connect(&url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("{}", common::unreachable("Postgres", &url, e)));
    tokio::spawn(conn);
    client
}

fn pipeline(name: &str, tables: Json) -> PipelineConfig {
    serde_json::from_value(json!({
        "name": name,
        "source": {
            "type": "postgres",
            "url": common::pg_url(),
            "snapshot": "initial",
            "snapshot_chunk_rows": 3,
            "heartbeat_interval_secs": 1,
            "tables": tables,
        },
        "kafka": {"brokers": common::kafka_brokers(), "topic_prefix": name, "topic_partitions": 3},
    }))
    .unwrap()
}

/// The slot's `confirmed_flush_lsn`, if the slot exists and has one.
async fn slot_confirmed(pg: &Client, slot: &str) -> Option<u64> {
    pg.query_opt(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
        &[&slot],
    )
    .await
    .unwrap()
    .and_then(|r| r.get::<_, Option<String>>(0))
    .as_deref()
    .and_then(parse_lsn)
}

/// Past every record inserted so far (with `synchronous_commit = off` the
/// write position can still be inside the last transaction).
async fn current_lsn(pg: &Client) -> u64 {
    let lsn: String = pg
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    parse_lsn(&lsn).unwrap()
}

/// What Postgres holds, each value computed by Postgres in the form
/// `common::plain` gives (days, microseconds, hex, JSON arrays, ...).
async fn oracle(
    pg: &Client,
    table: &str,
    columns: &[(&str, &str)],
    key: &[&str],
) -> BTreeMap<String, BTreeMap<String, Json>> {
    let exprs: Vec<String> = columns
        .iter()
        .map(|(name, kind)| {
            let c = format!("\"{}\"", name.replace('"', "\"\""));
            let e = match *kind {
                "plain" => format!("to_jsonb({c})"),
                "text" => format!("to_jsonb({c}::text)"),
                "float" => format!(
                    "CASE WHEN {c}::float8 = 'NaN' THEN '\"NaN\"'::jsonb WHEN {c}::float8 = 'Infinity' THEN '\"Infinity\"' WHEN {c}::float8 = '-Infinity' THEN '\"-Infinity\"' ELSE to_jsonb({c}::float8) END"
                ),
                "money" => format!("to_jsonb(({c}::numeric)::text)"),
                "hex" => format!("to_jsonb(encode({c}, 'hex'))"),
                "date" => format!(
                    "CASE WHEN {c} = 'infinity' THEN to_jsonb(2147483647) WHEN {c} = '-infinity' THEN to_jsonb(-2147483648) ELSE to_jsonb({c} - date '1970-01-01') END"
                ),
                "micros" => format!(
                    "CASE WHEN isfinite({c}) THEN to_jsonb((extract(epoch from {c}) * 1000000)::bigint) WHEN {c} > now() THEN to_jsonb(9223372036854775807) ELSE to_jsonb(-9223372036854775808) END"
                ),
                "time" => format!("to_jsonb((extract(epoch from {c}) * 1000000)::bigint)"),
                "interval" => format!(
                    "jsonb_build_object('months', (extract(year from {c}) * 12 + extract(month from {c}))::int, 'days', extract(day from {c})::int, 'micros', ((extract(hour from {c}) * 3600 + extract(minute from {c}) * 60) * 1000000 + extract(microseconds from {c}))::bigint)"
                ),
                "array" => format!("array_to_json({c})::jsonb"),
                other => panic!("kind {other}"),
            };
            format!("(CASE WHEN {c} IS NULL THEN 'null'::jsonb ELSE {e} END)::text")
        })
        .collect();
    let sql = format!("SELECT {} FROM {table}", exprs.join(", "));
    let mut out = BTreeMap::new();
    for row in pg.query(&sql, &[]).await.unwrap() {
        let mut values = BTreeMap::new();
        for (i, (name, _)) in columns.iter().enumerate() {
            let v: Json = serde_json::from_str(row.get::<_, &str>(i)).unwrap();
            values.insert(name.to_string(), v);
        }
        let k = key
            .iter()
            .map(|k| values[*k].to_string())
            .collect::<Vec<_>>()
            .join("|");
        out.insert(k, values);
    }
    out
}

fn assert_same(
    what: &str,
    got: &BTreeMap<String, BTreeMap<String, Json>>,
    want: &BTreeMap<String, BTreeMap<String, Json>>,
) {
    let got_keys: Vec<&String> = got.keys().collect();
    let want_keys: Vec<&String> = want.keys().collect();
    assert_eq!(got_keys, want_keys, "{what}: keys");
    for (k, want_row) in want {
        let got_row = &got[k];
        for (col, v) in want_row {
            // A row not changed since a column was added reads it as NULL,
            // as it does in the lake.
            let g = got_row.get(col).unwrap_or(&Json::Null);
            assert!(same(g, v), "{what}: key {k}, column `{col}`: {g} != {v}");
        }
    }
}

/// JSON equality where `1` and `1.0` are the same number.
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) if x.is_f64() || y.is_f64() => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        _ => a == b,
    }
}

async fn cleanup(pg: &Client, name: &str, schema: &str) {
    let slot = postgres::default_name(name);
    let _ = pg
        .batch_execute(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'; \
             DROP PUBLICATION IF EXISTS \"{slot}\"; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        ))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_stream_equal_postgres_value_by_value() {
    let pg = pg().await;
    let name = common::unique_name("cap").to_lowercase();
    let s = name.clone();
    pg.batch_execute(&format!(
        r#"
        CREATE SCHEMA "{s}";
        CREATE TYPE "{s}".mood AS ENUM ('sad', 'ok', 'happy');
        CREATE DOMAIN "{s}".posint AS integer CHECK (VALUE > 0);
        CREATE TABLE "{s}".types (
            id bigint PRIMARY KEY, b boolean, i2 smallint, i4 integer, f4 real, f8 double precision,
            n numeric(12,2), nu numeric, m money, t text, vc varchar(20), ch char(3), js json, jb jsonb,
            u uuid, by bytea, d date, tm time, ts timestamp, tz timestamptz, iv interval,
            ai integer[][], at text[], e "{s}".mood, dom "{s}".posint, ttz timetz, big text
        );
        ALTER TABLE "{s}".types ALTER COLUMN big SET STORAGE EXTERNAL;
        CREATE TABLE "{s}"."Order Items.x" ("Line ID" integer PRIMARY KEY, "Qty" integer);
        CREATE TABLE "{s}".full_ident (id integer PRIMARY KEY, big text, note text);
        ALTER TABLE "{s}".full_ident REPLICA IDENTITY FULL;
        ALTER TABLE "{s}".full_ident ALTER COLUMN big SET STORAGE EXTERNAL;
        CREATE TABLE "{s}".nokey (a integer, b text);
        ALTER TABLE "{s}".nokey REPLICA IDENTITY FULL;
        CREATE TABLE "{s}".parted (id integer, day date, v text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
        CREATE TABLE "{s}".parted_2024 PARTITION OF "{s}".parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE TABLE "{s}".parted_2025 PARTITION OF "{s}".parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        INSERT INTO "{s}".parted VALUES (1, '2024-03-01', 'a'), (2, '2025-03-01', 'b');
        INSERT INTO "{s}".types VALUES
          (1, true, -32768, 2147483647, 0.5, 1.25, -1234.50, 'NaN', -12.34, 'héllo', 'v', 'ab', '{{"a":"\u0000"}}', '{{"b": [1, 2]}}',
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x00ff10', '2024-02-29', '24:00:00', '2024-01-01 12:34:56.123456',
           '2024-01-01 12:34:56.5+02', '1 year 2 mons 3 days 04:05:06.5', '{{{{1,NULL}},{{3,4}}}}', '{{"a b","c\"d",NULL}}', 'happy', 7, '12:00:00+05:30',
           repeat('x', 5000)),
          (2, false, 0, 0, 'NaN', '-Infinity', 0, 'Infinity', 0, '', NULL, NULL, NULL, NULL,
           NULL, NULL, 'infinity', '00:00:00', '-infinity', 'infinity', '-1 days -00:00:00.25', '{{}}', '{{}}', 'sad', 1, NULL, 'small'),
          (3, NULL, NULL, NULL, NULL, NULL, NULL, '-1.000000000000000000000000000001', NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, '10000-01-01', NULL, '0044-03-15 12:00:00 BC', '12000-06-01 00:00:00+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          (4, true, 1, 1, 1, 1, 1, 1, 1, 'x', 'y', 'z', '1', '2', NULL, '\x', '0001-01-01 BC', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        INSERT INTO "{s}"."Order Items.x" SELECT g, g * 10 FROM generate_series(1, 10) g;
        INSERT INTO "{s}".full_ident VALUES (1, repeat('y', 6000), 'n1'), (2, 'short', 'n2');
        INSERT INTO "{s}".nokey VALUES (1, 'one'), (2, 'two');
        CREATE TABLE "{s}".rekeyed (id integer PRIMARY KEY, v text);
        "#
    ))
    .await
    .unwrap();
    let tables = json!([
        {"name": format!("\"{s}\".rekeyed")},
        {"name": format!("\"{s}\".types")},
        {"name": format!("\"{s}\".\"Order Items.x\"")},
        {"name": format!("\"{s}\".full_ident")},
        {"name": format!("\"{s}\".nokey")},
        {"name": format!("\"{s}\".parted")},
    ]);
    let cfg = pipeline(&name, tables);
    let (stats, stop_tx, task) = start_capture(&cfg).await;
    assert_eq!(
        stats.snapshot_rows.load(Ordering::SeqCst),
        4 + 10 + 2 + 2 + 2
    );

    // Streaming: every kind of change, a schema change in the middle.
    pg.batch_execute(&format!(
        r#"
        INSERT INTO "{s}".types (id, t, big, ai) VALUES (10, 'ten', repeat('z', 7000), '{{{{5,6}},{{7,NULL}}}}'), (11, 'eleven', NULL, NULL);
        UPDATE "{s}".types SET t = 'toast kept' WHERE id = 1;
        UPDATE "{s}".full_ident SET note = 'n1b' WHERE id = 1;
        UPDATE "{s}".types SET id = 1002 WHERE id = 2;
        DELETE FROM "{s}".types WHERE id = 4;
        BEGIN;
        INSERT INTO "{s}"."Order Items.x" SELECT g, g FROM generate_series(11, 2000) g;
        UPDATE "{s}"."Order Items.x" SET "Qty" = -1 WHERE "Line ID" % 7 = 0;
        COMMIT;
        ALTER TABLE "{s}".types ADD COLUMN extra text;
        INSERT INTO "{s}".types (id, t, extra) VALUES (12, 'twelve', 'new column');
        ALTER TABLE "{s}".types DROP COLUMN vc;
        UPDATE "{s}".types SET extra = 'set later' WHERE id = 3;
        TRUNCATE "{s}".nokey;
        INSERT INTO "{s}".nokey VALUES (3, 'three'), (4, 'four');
        UPDATE "{s}".nokey SET b = 'THREE' WHERE a = 3;
        INSERT INTO "{s}".parted VALUES (3, '2025-06-01', 'c');
        UPDATE "{s}".parted SET v = 'a2' WHERE id = 1;
        UPDATE "{s}".parted SET day = '2025-04-01' WHERE id = 2 AND day = '2025-03-01';
        UPDATE "{s}".parted SET day = '2025-01-02', v = 'moved' WHERE id = 1;
        DELETE FROM "{s}".parted WHERE id = 3;
        "#
    ))
    .await
    .unwrap();
    let end = current_lsn(&pg).await;
    wait_confirmed(&stats, end).await;
    let slot_lsn = slot_confirmed(&pg, &postgres::default_name(&name)).await;
    assert!(slot_lsn.unwrap() >= end, "the slot moved");
    // The figures the progress line and the admin endpoint report.
    let progress = stats.snapshot_tables.lock().unwrap().clone();
    let rows: BTreeMap<String, (u64, bool)> = progress
        .iter()
        .map(|p| (p.table.name.clone(), (p.rows, p.done)))
        .collect();
    assert_eq!(
        rows,
        BTreeMap::from([
            ("Order Items.x".to_string(), (10, true)),
            ("full_ident".to_string(), (2, true)),
            ("nokey".to_string(), (2, true)),
            ("parted".to_string(), (2, true)),
            ("rekeyed".to_string(), (0, true)),
            ("types".to_string(), (4, true)),
        ])
    );
    assert!(
        stats.bytes.load(Ordering::SeqCst) > 2000 * 8,
        "pgoutput bytes counted"
    );
    assert!(stats.events.load(Ordering::SeqCst) >= 2000);
    // Idle and all acknowledged: no lag in seconds; the WAL position the
    // lag in bytes is taken from is the server's (other tests write WAL
    // too, so the bytes need not reach 0).
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.lag_micros.load(Ordering::SeqCst) > 0 || stats.wal_end.load(Ordering::SeqCst) < end
    {
        assert!(
            Instant::now() < deadline,
            "lag stays at {} us; WAL position {:X} (workload end {end:X})",
            stats.lag_micros.load(Ordering::SeqCst),
            stats.wal_end.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_capture(stop_tx, task).await;

    // While the capture is down, a key column is renamed between two rows:
    // the first row's Relation message, replayed, names the old key, which
    // the catalog no longer has.
    pg.batch_execute(&format!(
        r#"
        INSERT INTO "{s}".rekeyed VALUES (1, 'before');
        ALTER TABLE "{s}".rekeyed RENAME COLUMN id TO rid;
        INSERT INTO "{s}".rekeyed VALUES (2, 'after');
        "#
    ))
    .await
    .unwrap();
    let end = current_lsn(&pg).await;
    let (stats, stop_tx, task) = start_capture(&cfg).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.confirmed_lsn.load(Ordering::SeqCst) < end {
        if task.is_finished() {
            panic!("the capture ended: {:?}", task.await);
        }
        assert!(Instant::now() < deadline, "capture did not confirm {end:X}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_capture(stop_tx, task).await;

    let kafka = cfg.kafka.clone();
    let rekeyed = events_of(&kafka, &name, &TableId::new(&s, "rekeyed")).await;
    let keys: Vec<Vec<&str>> = rekeyed
        .iter()
        .map(|e| e.table.key_columns().map(|c| c.name.as_str()).collect())
        .collect();
    assert_eq!(
        keys,
        vec![vec!["id"], vec!["rid"]],
        "each row with its time's key"
    );
    // types: every value as Postgres computes it.
    let types_id = TableId::new(&s, "types");
    let events = events_of(&kafka, &name, &types_id).await;
    assert_eq!(
        events.iter().filter(|e| e.op == Op::Read).count(),
        4,
        "one snapshot event per row"
    );
    // The DEFAULT-identity TOAST update carried `big` as unchanged, never a
    // placeholder or NULL.
    let toast_update = events
        .iter()
        .find(|e| e.op == Op::Update && e.after.as_ref().unwrap().0[0] == Datum::Int(1))
        .expect("the update of row 1");
    let big_at = toast_update.table.column_index("big").unwrap();
    assert_eq!(
        toast_update.after.as_ref().unwrap().0[big_at],
        Datum::Unchanged
    );
    // The key change is a delete of the old key and a create of the new.
    assert!(
        events
            .iter()
            .any(|e| e.op == Op::Delete && e.before.as_ref().unwrap().0[0] == Datum::Int(2))
    );
    // The shape changed exactly at the DDL: `extra` appears on row 12 first,
    // `vc` is gone after the drop.
    let twelve = events
        .iter()
        .find(|e| e.after.as_ref().is_some_and(|a| a.0[0] == Datum::Int(12)))
        .unwrap();
    assert!(twelve.table.column_index("extra").is_some());
    assert!(twelve.table.column_index("vc").is_some());
    let last = events.last().unwrap();
    assert!(last.table.column_index("vc").is_none());
    let types_cols = [
        ("id", "plain"),
        ("b", "plain"),
        ("i2", "plain"),
        ("i4", "plain"),
        ("f4", "float"),
        ("f8", "float"),
        ("n", "text"),
        ("nu", "text"),
        ("m", "money"),
        ("t", "text"),
        ("ch", "plain"),
        ("js", "text"),
        ("jb", "text"),
        ("u", "text"),
        ("by", "hex"),
        ("d", "date"),
        ("tm", "time"),
        ("ts", "micros"),
        ("tz", "micros"),
        ("iv", "interval"),
        ("ai", "array"),
        ("at", "array"),
        ("e", "text"),
        ("dom", "plain"),
        ("ttz", "text"),
        ("big", "text"),
        ("extra", "text"),
    ];
    let want = oracle(&pg, &format!("\"{s}\".types"), &types_cols, &["id"]).await;
    assert_eq!(want.len(), 6);
    assert_same("types", &materialize(&events), &want);

    let items = TableId::new(&s, "Order Items.x");
    let events = events_of(&kafka, &name, &items).await;
    let want = oracle(
        &pg,
        &format!("\"{s}\".\"Order Items.x\""),
        &[("Line ID", "plain"), ("Qty", "plain")],
        &["Line ID"],
    )
    .await;
    assert_eq!(want.len(), 2000);
    assert_same("Order Items.x", &materialize(&events), &want);

    let full = TableId::new(&s, "full_ident");
    let events = events_of(&kafka, &name, &full).await;
    let update = events.iter().find(|e| e.op == Op::Update).unwrap();
    assert_eq!(
        update.after.as_ref().unwrap().0[1],
        Datum::Text("y".repeat(6000)),
        "REPLICA IDENTITY FULL fills the unchanged TOAST value"
    );
    let want = oracle(
        &pg,
        &format!("\"{s}\".full_ident"),
        &[("id", "plain"), ("big", "text"), ("note", "text")],
        &["id"],
    )
    .await;
    assert_same("full_ident", &materialize(&events), &want);

    let nokey = TableId::new(&s, "nokey");
    let events = events_of(&kafka, &name, &nokey).await;
    assert!(events.iter().any(|e| e.op == Op::Truncate));
    // Keyed by every column: the update is a delete of (3, 'three') and a
    // create of (3, 'THREE').
    assert!(events.iter().any(|e| e.op == Op::Delete));
    let want = oracle(
        &pg,
        &format!("\"{s}\".nokey"),
        &[("a", "plain"), ("b", "text")],
        &["a", "b"],
    )
    .await;
    assert_eq!(want.len(), 2);
    assert_same("nokey", &materialize(&events), &want);

    // A partitioned table: its partitions' changes arrive as its own,
    // including the update that moves a row to another partition.
    let parted = TableId::new(&s, "parted");
    let events = events_of(&kafka, &name, &parted).await;
    assert!(events.iter().all(|e| e.table.id == parted));
    assert_eq!(events.iter().filter(|e| e.op == Op::Read).count(), 2);
    let want = oracle(
        &pg,
        &format!("\"{s}\".parted"),
        &[("id", "plain"), ("day", "date"), ("v", "text")],
        &["id", "day"],
    )
    .await;
    assert_eq!(want.len(), 2);
    assert_same("parted", &materialize(&events), &want);

    cleanup(&pg, &name, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_row_transaction_arrives_whole_at_one_commit_position() {
    const ROWS: i64 = 1_000_000;
    let _alone = HEAVY.lock().await;
    let pg = pg().await;
    let name = common::unique_name("big").to_lowercase();
    let s = name.clone();
    pg.batch_execute(&format!(
        r#"CREATE SCHEMA "{s}";
           CREATE TABLE "{s}".big (id bigint PRIMARY KEY, amount numeric(12,2), note text, at timestamptz);"#
    ))
    .await
    .unwrap();
    let cfg = pipeline(&name, json!([{"name": format!("{s}.big")}]));
    let (stats, stop_tx, task) = start_capture(&cfg).await;
    // One transaction of a million rows, and after it a multi-row insert.
    pg.batch_execute(&format!(
        r#"INSERT INTO "{s}".big SELECT g, (g % 100000) / 100.0, 'row ' || g,
             timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'
           FROM generate_series(1, {ROWS}) g"#
    ))
    .await
    .unwrap();
    pg.batch_execute(&format!(
        r#"INSERT INTO "{s}".big VALUES (-1, 1.5, 'a', now()), (-2, NULL, 'b', NULL), (-3, 3, NULL, 'infinity')"#
    ))
    .await
    .unwrap();
    let end = current_lsn(&pg).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut most_bytes, mut most_micros) = (0, 0);
    while stats.confirmed_lsn.load(Ordering::SeqCst) < end {
        assert!(!task.is_finished(), "capture ended: {:?}", task.await);
        assert!(
            Instant::now() < deadline,
            "the transaction was not confirmed"
        );
        most_bytes = most_bytes.max(stats.lag_bytes());
        most_micros = most_micros.max(stats.lag_micros.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // While Kafka caught up, the lag was reported: the transaction's WAL
    // (over 100 MB; at least 10 MB of it seen) and the time since its commit.
    assert!(most_bytes > 10 << 20, "lag bytes peaked at {most_bytes}");
    assert!(most_micros > 500_000, "lag peaked at {most_micros} us");
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();

    let events = events_of(&cfg.kafka, &name, &TableId::new(&s, "big")).await;
    // At least once: a reconnect may repeat a transaction, whole.
    let mut seen = std::collections::HashSet::new();
    let events: Vec<ChangeEvent> = events
        .into_iter()
        .filter(|e| seen.insert((e.position.commit, e.position.ordinal)))
        .collect();
    assert_eq!(events.len() as i64, ROWS + 3);
    assert!(events.iter().all(|e| e.op == Op::Create));
    let (big, small) = events.split_at(ROWS as usize);
    for (events, len) in [(big, ROWS), (small, 3)] {
        let commit = events[0].position.commit;
        assert!(
            events.iter().all(|e| e.position.commit == commit),
            "one transaction, one commit position"
        );
        let ordinals: Vec<u64> = events.iter().map(|e| e.position.ordinal).collect();
        assert_eq!(ordinals, (0..len as u64).collect::<Vec<_>>());
        let tx = events[0].transaction.as_ref().unwrap();
        assert!(
            events
                .iter()
                .all(|e| e.transaction.as_ref().unwrap().id == tx.id)
        );
    }
    assert!(small[0].position.commit > big[0].position.commit);
    let want = oracle(
        &pg,
        &format!("\"{s}\".big"),
        &[
            ("id", "plain"),
            ("amount", "text"),
            ("note", "text"),
            ("at", "micros"),
        ],
        &["id"],
    )
    .await;
    assert_same("big", &materialize(&events), &want);
    cleanup(&pg, &name, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_a_key_is_refused_and_a_lost_slot_stops_loudly() {
    let pg = pg().await;
    let name = common::unique_name("cap").to_lowercase();
    let s = name.clone();
    pg.batch_execute(&format!(
        r#"CREATE SCHEMA "{s}"; CREATE TABLE "{s}".bare (a integer, b text);
           CREATE TABLE "{s}".ok (id integer PRIMARY KEY);"#
    ))
    .await
    .unwrap();
    let cfg = pipeline(&name, json!([{"name": format!("{s}.bare")}]));
    let err = postgres::run(&cfg, Arc::default(), std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no primary key") && err.contains("bare"),
        "{err}"
    );
    // A `key:` does not help: once published, Postgres itself would refuse
    // the table's updates and deletes. Refused before publishing it.
    let cfg = pipeline(&name, json!([{"name": format!("{s}.bare"), "key": ["a"]}]));
    let err = postgres::run(&cfg, Arc::default(), std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("REPLICA IDENTITY DEFAULT") && err.contains("REPLICA IDENTITY FULL"),
        "{err}"
    );
    let published: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_publication WHERE pubname = $1",
            &[&postgres::default_name(&name)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(published, 0, "nothing was published");
    cleanup(&pg, &name, &s).await;

    // A slot dropped behind the daemon's back after the snapshot finished.
    pg.batch_execute(&format!(
        r#"CREATE SCHEMA "{s}"; CREATE TABLE "{s}".ok (id integer PRIMARY KEY);"#
    ))
    .await
    .unwrap();
    let cfg = pipeline(&name, json!([{"name": format!("{s}.ok")}]));
    let (_stats, stop_tx, task) = start_capture(&cfg).await;
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
    let slot = postgres::default_name(&name);
    pg.batch_execute(&format!("SELECT pg_drop_replication_slot('{slot}')"))
        .await
        .unwrap();
    let err = postgres::run(&cfg, Arc::default(), std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&slot) && err.contains("no longer exists"),
        "{err}"
    );
    // Recreated behind our back: the new slot is ahead of what we confirmed.
    pg.batch_execute(&format!("INSERT INTO \"{s}\".ok VALUES (1)"))
        .await
        .unwrap();
    pg.batch_execute(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
    ))
    .await
    .unwrap();
    let err = postgres::run(&cfg, Arc::default(), std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("recreated or advanced"), "{err}");
    cleanup(&pg, &name, &s).await;
}

/// The capture process, killed with SIGKILL at seeded moments while a writer
/// commits small and large transactions: afterwards every committed row is
/// in Kafka, and no sample of the slot's `confirmed_flush_lsn` ever passed an
/// event Kafka did not hold at that moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_at_twenty_seeded_moments_loses_nothing() {
    let _alone = HEAVY.lock().await;
    use tidewater::event::change::SourceDetail;
    use tidewater::event::sample::Rng;
    let seed = Rng::seed_from_env();
    println!("seed {seed} (TIDEWATER_SEED={seed} replays it)");
    let mut rng = Rng::new(seed);
    let pg = pg().await;
    let name = common::unique_name("kill").to_lowercase();
    let s = name.clone();
    pg.batch_execute(&format!(
        r#"CREATE SCHEMA "{s}";
           CREATE TABLE "{s}".ledger (id bigint PRIMARY KEY, note text);
           INSERT INTO "{s}".ledger SELECT g, 'pre' FROM generate_series(1, 5000) g;"#
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{name}.yaml"));
    std::fs::write(
        &file,
        format!(
            "name: {name}\nsource:\n  type: postgres\n  url: {}\n  snapshot_chunk_rows: 500\n  heartbeat_interval_secs: 1\n  tables:\n    - name: {s}.ledger\nkafka:\n  brokers: {}\n  topic_prefix: {name}\n  topic_partitions: 3\n",
            common::pg_url(),
            common::kafka_brokers()
        ),
    )
    .unwrap();
    let topic = table_topic(&name, &TableId::new(&s, "ledger"));
    let slot = postgres::default_name(&name);

    // The writer: small transactions, and now and then a large one.
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        let s = s.clone();
        let mut rng = Rng::new(seed ^ 0x5eed);
        tokio::spawn(async move {
            let pg = connect_pg().await;
            let mut next = 100_000i64;
            while writing.load(Ordering::SeqCst) {
                let n = if rng.below(15) == 0 {
                    3_000
                } else {
                    1 + rng.below(20) as i64
                };
                pg.batch_execute(&format!(
                    "INSERT INTO \"{s}\".ledger SELECT g, 'live' FROM generate_series({next}, {}) g",
                    next + n - 1
                ))
                .await
                .unwrap();
                next += n;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // The sampler: (confirmed_flush_lsn, then the topic's high watermarks).
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(u64, Vec<i64>)>::new()));
    let sampler = {
        let writing = writing.clone();
        let samples = samples.clone();
        let slot = slot.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            let pg = connect_pg().await;
            while writing.load(Ordering::SeqCst) {
                if let Some(lsn) = slot_confirmed(&pg, &slot).await {
                    let topic = topic.clone();
                    let highs = tokio::task::spawn_blocking(move || high_watermarks(&topic))
                        .await
                        .unwrap();
                    if let Some(highs) = highs {
                        samples.lock().unwrap().push((lsn, highs));
                    }
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
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
    // On a loaded machine a sample (two round trips) can take a second:
    // one more capture runs, and is killed too, once the check below has
    // enough samples to mean something.
    let mut extra = common::Reaped(spawn());
    let enough = Instant::now() + Duration::from_secs(60);
    while samples.lock().unwrap().len() <= 20 && Instant::now() < enough {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(Some(status)) = extra.0.try_wait() {
            panic!("the last capture exited early ({status})");
        }
    }
    drop(extra);
    writing.store(false, Ordering::SeqCst);
    writer.await.unwrap();
    sampler.await.unwrap();

    // A last run to the end, stopped with SIGTERM.
    let log = dir.path().join("capture.log");
    let before = common::listening_count(&log);
    let mut child = common::Reaped(spawn());
    common::wait_listening(&log, before, &mut child.0);
    let end = current_lsn(&pg).await;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if slot_confirmed(&pg, &slot).await.is_some_and(|l| l >= end) {
            break;
        }
        assert!(Instant::now() < deadline, "the last run did not catch up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = common::sigterm(&mut child.0);
    assert!(status.success(), "SIGTERM exits 0: {status}");

    // Every committed row reached Kafka.
    let kafka = KafkaConfig::with_brokers(common::kafka_brokers());
    let events = common::topic_events(&kafka, &topic).await;
    let mut first_offset: BTreeMap<(u64, u64), (i32, i64)> = BTreeMap::new();
    let mut ids = std::collections::BTreeSet::new();
    for (r, e) in &events {
        if let Some(Datum::Int(id)) = e.after.as_ref().and_then(|a| a.0.first()) {
            ids.insert(*id);
        }
        assert!(
            matches!(e.source.detail, SourceDetail::Postgres { .. }),
            "not a postgres event"
        );
        // Snapshot rows sit just below the consistent point, where the
        // slot starts by itself; what keeps them is the state topic
        // (an unfinished snapshot is taken again), not the slot.
        if e.op == Op::Read {
            continue;
        }
        let entry = first_offset
            .entry((e.position.commit, e.position.ordinal))
            .or_insert((r.partition, r.offset));
        if r.offset < entry.1 {
            *entry = (r.partition, r.offset);
        }
    }
    let in_pg: Vec<i64> = pg
        .query(&format!("SELECT id FROM \"{s}\".ledger ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<&i64> = in_pg
        .iter()
        .filter(|id| !ids.contains(id))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: rows never reached Kafka: {missing:?}"
    );
    assert!(in_pg.len() > 5_000, "the writer wrote");
    println!(
        "{} rows, {} messages, {} samples",
        in_pg.len(),
        events.len(),
        samples.lock().unwrap().len()
    );

    // No confirmed position ever passed an event Kafka did not hold.
    let samples = samples.lock().unwrap().clone();
    assert!(
        samples.len() > 20,
        "sampled while running; capture log:\n{}",
        std::fs::read_to_string(dir.path().join("capture.log")).unwrap_or_default()
    );
    for (confirmed, highs) in samples.iter() {
        for ((commit, _), (partition, offset)) in first_offset.range(..(*confirmed, 0)) {
            let high = highs.get(*partition as usize).copied().unwrap_or(0);
            assert!(
                *offset < high,
                "seed {seed}: the slot confirmed {confirmed:X} while the event of commit {commit:X} was not in Kafka (partition {partition} offset {offset}, high watermark {high})"
            );
        }
    }
    cleanup(&pg, &name, &s).await;
}

/// High watermark of each partition of `topic`, in partition order.
fn high_watermarks(topic: &str) -> Option<Vec<i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", common::kafka_brokers())
        .set("group.id", "tidewater-test-watermarks")
        .create()
        .ok()?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let n = md.topics().first()?.partitions().len();
    if n == 0 {
        return None;
    }
    (0..n as i32)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .ok()
                .map(|(_, h)| h)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_names_each_missing_privilege_and_key_and_changes_nothing() {
    let pg = pg().await;
    let name = common::unique_name("pre").to_lowercase();
    let s = name.clone();
    let weak = format!("{name}_weak");
    pg.batch_execute(&format!(
        r#"CREATE SCHEMA "{s}";
           CREATE TABLE "{s}".good (id integer PRIMARY KEY, v text);
           CREATE TABLE "{s}".nokey (a integer, b text);
           CREATE TABLE "{s}".nothing (id integer PRIMARY KEY);
           ALTER TABLE "{s}".nothing REPLICA IDENTITY NOTHING;
           CREATE ROLE "{weak}" LOGIN PASSWORD 'weak-pw';
           GRANT USAGE ON SCHEMA "{s}" TO "{weak}";"#
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |file: &str, url: &str, tables: &[&str]| {
        let source = format!("  type: postgres\n  url: {url}\n  tls:\n    mode: disable\n");
        common::write_pipeline(dir.path(), file, &name, &source, &s, tables)
    };
    let weak_url = common::with_user(&common::pg_url(), &weak, "weak-pw");

    // Ready: exit 0, every item fine, the server and Kafka named.
    let (code, report) = common::check_connect(&write("ready.yaml", &common::pg_url(), &["good"]));
    let found = common::findings(&report);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["valid"], json!(true));
    assert!(found.values().all(Option::is_none), "{found:#?}");
    assert!(found.keys().any(|k| k.starts_with("wal_level")));
    assert!(found.keys().any(|k| k.starts_with("kafka at")));
    assert!(found.keys().any(|k| k.contains(&format!("{s}.good"))));

    // A keyless table and one with REPLICA IDENTITY NOTHING.
    let (code, report) = common::check_connect(&write(
        "keys.yaml",
        &common::pg_url(),
        &["good", "nokey", "nothing", "missing"],
    ));
    let found = common::findings(&report);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["valid"], json!(false));
    let problem = |table: &str| {
        found
            .get(&format!("table {s}.{table}"))
            .unwrap_or_else(|| panic!("no finding for {table}: {found:#?}"))
            .clone()
    };
    assert!(problem("nokey").unwrap().contains("key"), "{found:#?}");
    assert!(
        problem("nothing")
            .unwrap()
            .contains("REPLICA IDENTITY NOTHING")
    );
    assert!(problem("missing").unwrap().contains("does not exist"));

    // A role without REPLICATION and without SELECT on the table.
    let (code, report) = common::check_connect(&write("weak.yaml", &weak_url, &["good"]));
    let found = common::findings(&report);
    assert_eq!(code, 1, "{report:#}");
    assert!(
        found["REPLICATION privilege"]
            .as_deref()
            .unwrap()
            .contains(&format!("ALTER ROLE \"{weak}\" REPLICATION")),
        "{found:#?}"
    );
    assert!(common::problem_of(&found, &format!("table {s}.good")).contains("GRANT SELECT"));

    // A wrong password: the connection is the finding.
    let bad_url = weak_url.replace("weak-pw", "wrong");
    let (code, report) = common::check_connect(&write("badpw.yaml", &bad_url, &["good"]));
    assert_eq!(code, 1);
    assert!(common::findings(&report)["connection"].is_some());

    // Nothing was created.
    let slot = postgres::default_name(&name);
    let slots = pg
        .query(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 UNION ALL SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&slot],
        )
        .await
        .unwrap();
    assert!(
        slots.is_empty(),
        "check --connect created a slot or publication"
    );
    pg.batch_execute(&format!(
        r#"DROP SCHEMA "{s}" CASCADE; DROP ROLE "{weak}";"#
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_hold_on_the_replication_and_the_sql_connections() {
    use tidewater::sources::postgres::wire::ReplicationConnection;
    let ca = common::pg_ca_file();
    assert!(
        std::path::Path::new(&ca).exists(),
        "{ca} missing: `scripts/services.sh up` makes it"
    );
    let by_ip = common::pg_url();
    let by_name = by_ip.replace("127.0.0.1", "localhost");
    assert_ne!(by_ip, by_name, "the test URL names 127.0.0.1");
    let source = |url: &str, tls: Json| -> tidewater::config::model::PostgresSource {
        serde_json::from_value(json!({"url": url, "tls": tls, "tables": [{"name": "public.x"}]}))
            .unwrap()
    };
    // (url, tls, Ok(encrypted) or Err(part of the message)) for both
    // connections.
    let cases: Vec<(&str, Json, Result<bool, &str>)> = vec![
        (&by_ip, json!({"mode": "disable"}), Ok(false)),
        (&by_ip, json!({"mode": "prefer"}), Ok(true)),
        (&by_ip, json!({"mode": "require"}), Ok(true)),
        (
            &by_ip,
            json!({"mode": "verify-ca", "ca_file": ca}),
            Ok(true),
        ),
        (
            &by_name,
            json!({"mode": "verify-full", "ca_file": ca}),
            Ok(true),
        ),
        // The certificate names "localhost", not 127.0.0.1.
        (
            &by_ip,
            json!({"mode": "verify-full", "ca_file": ca}),
            Err("certificate"),
        ),
        // The test CA is not among the system's roots.
        (&by_name, json!({"mode": "verify-full"}), Err("certificate")),
        // `require` with a CA file checks the chain, as libpq does.
        (&by_ip, json!({"mode": "require", "ca_file": ca}), Ok(true)),
        (
            &by_ip,
            json!({"mode": "require", "ca_file": "/etc/ssl/certs/ca-certificates.crt"}),
            Err("certificate"),
        ),
    ];
    for (url, tls, want) in cases {
        let what = format!("{url} {tls}");
        let params = postgres::connect_params(&source(url, tls)).unwrap();
        let sql = postgres::connect_sql(&params).await;
        let repl = ReplicationConnection::connect(&params).await;
        match want {
            Ok(encrypted) => {
                let sql = sql.unwrap_or_else(|e| panic!("{what}: sql: {e}"));
                let ssl: bool = sql
                    .query_one(
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(ssl, encrypted, "{what}: sql connection");
                let mut repl = repl.unwrap_or_else(|e| panic!("{what}: replication: {e}"));
                let rows = repl
                    .simple_query("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                    .await
                    .unwrap();
                assert_eq!(
                    rows[0][0].as_deref(),
                    Some(if encrypted { "true" } else { "false" }),
                    "{what}: replication connection"
                );
            }
            Err(part) => {
                let sql = sql.err().unwrap_or_else(|| panic!("{what}: sql connected"));
                // The message a user sees names the certificate problem.
                let sql = sql.to_string();
                assert!(sql.to_lowercase().contains(part), "{what}: sql: {sql}");
                let repl = repl
                    .err()
                    .unwrap_or_else(|| panic!("{what}: replication connected"));
                assert!(
                    repl.to_string().to_lowercase().contains(part),
                    "{what}: replication: {repl}"
                );
            }
        }
    }
    // A CA file that is not there is refused before connecting.
    let err = postgres::connect_params(&source(
        &by_name,
        json!({"mode": "verify-full", "ca_file": "/nonexistent/ca.pem"}),
    ))
    .err()
    .unwrap();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    // verify-ca against the system's roots would trust any public name.
    let err = postgres::connect_params(&source(&by_ip, json!({"mode": "verify-ca"})))
        .err()
        .unwrap();
    assert!(err.to_string().contains("needs `ca_file`"), "{err}");
    // An sslmode in the URL would be silently ignored: refused.
    let err = postgres::connect_params(&source(
        &format!("{by_name}?sslmode=verify-full"),
        json!({"mode": "prefer"}),
    ))
    .err()
    .unwrap();
    assert!(err.to_string().contains("sslmode"), "{err}");
    // A refused certificate stops capture at once (no reconnect loop).
    let name = common::unique_name("tls").to_lowercase();
    let mut cfg = pipeline(&name, json!([{"name": "public.x"}]));
    let tidewater::config::model::SourceConfig::Postgres(src) = &mut cfg.source else {
        unreachable!()
    };
    *src = source(&by_ip, json!({"mode": "verify-full", "ca_file": ca}));
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        postgres::run(&cfg, Arc::default(), std::future::pending()),
    )
    .await
    .expect("stops instead of retrying")
    .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_reports_health_metrics_and_status() {
    use tidewater::admin::get;
    let pg = pg().await;
    let name = common::unique_name("adm").to_lowercase();
    let s = name.clone();
    pg.batch_execute(&format!(
        r#"CREATE SCHEMA "{s}"; CREATE TABLE "{s}".t (id integer PRIMARY KEY, v text);
           INSERT INTO "{s}".t SELECT g, 'x' FROM generate_series(1, 50) g;"#
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |pipeline: &str, table: &str| {
        let file = dir.path().join(format!("{pipeline}.yaml"));
        std::fs::write(
            &file,
            format!(
                "name: {pipeline}\nsource:\n  type: postgres\n  url: {}\n  tables:\n    - name: {s}.{table}\nkafka:\n  brokers: {}\n  topic_prefix: {pipeline}\n",
                common::pg_url(),
                common::kafka_brokers()
            ),
        )
        .unwrap();
        file
    };
    let good = write(&name, "t");
    let addr = common::free_addr();
    let token = "t0ken-for-the-test";
    let spawn = |files: &[&std::path::Path]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tidewater"))
            .args(["run", "--role", "capture", "--admin-addr", &addr])
            .args(files)
            .env("TIDEWATER_ADMIN_TOKEN", token)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut daemon = common::Reaped(spawn(&[&good]));
    // Healthy once capture runs, streaming after its snapshot; the token
    // is required.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, body)) = get(&addr, "/health", Some(token)).await {
            let value: Json = serde_json::from_str(&body).unwrap();
            if value["pipelines"][0]["parts"]["capture"]["snapshot_done"] == json!(true) {
                break;
            }
        }
        assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon exited");
        assert!(Instant::now() < deadline, "never healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = get(&addr, "/metrics", None).await.unwrap();
    assert_eq!(code, 401, "no token, no metrics");
    let (code, _) = get(&addr, "/metrics", Some("wrong")).await.unwrap();
    assert_eq!(code, 401);

    // The snapshot's 50 rows and 20 streamed changes show in the metrics.
    pg.batch_execute(&format!(
        r#"INSERT INTO "{s}".t SELECT g, 'y' FROM generate_series(51, 70) g"#
    ))
    .await
    .unwrap();
    let sample = |text: &str, metric: &str| -> Option<f64> {
        let prefix = format!("{metric}{{pipeline=\"{name}\"");
        text.lines()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let (code, text) = get(&addr, "/metrics", Some(token)).await.unwrap();
        assert_eq!(code, 200);
        if sample(&text, "tidewater_capture_events_total") == Some(20.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "events never counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(text.contains("# TYPE tidewater_capture_events_total counter"));
    assert_eq!(
        sample(&text, "tidewater_capture_snapshot_rows_total"),
        Some(50.0)
    );
    assert_eq!(sample(&text, "tidewater_up"), Some(1.0));
    assert!(
        text.contains(&format!(
            "tidewater_capture_snapshot_table_rows{{pipeline=\"{name}\",table=\"{s}.t\"}} 50"
        )),
        "{text}"
    );
    assert!(sample(&text, "tidewater_capture_lag_bytes").is_some());
    assert!(
        sample(&text, "tidewater_capture_confirmed_position").is_some_and(|p| p > 0.0),
        "{text}"
    );

    // `tidewater status`, as a table and as JSON.
    let status = |json: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tidewater"));
        cmd.args(["status", "--admin-addr", &addr, "--admin-token", token]);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let out = status(false);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let line = table
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains("capture") && line.contains("running") && line.contains(" 20 "),
        "{line}"
    );
    let out = status(true);
    let value: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        value["pipelines"][0]["parts"]["capture"]["events"],
        json!(20)
    );
    let stop = |daemon: &mut common::Reaped| common::sigterm(&mut daemon.0);
    assert!(stop(&mut daemon).success(), "SIGTERM exits 0");

    // With a pipeline that fails (its table is missing) beside the good
    // one: the good one keeps running, health says 503 and names the error.
    let bad_name = format!("{name}_bad");
    let bad = write(&bad_name, "missing");
    let mut daemon = common::Reaped(spawn(&[&good, &bad]));
    let deadline = Instant::now() + Duration::from_secs(60);
    let value: Json = loop {
        if let Ok((code, body)) = get(&addr, "/health", Some(token)).await {
            let value: Json = serde_json::from_str(&body).unwrap();
            let failed = value["pipelines"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["parts"]["capture"]["state"] == "failed");
            if failed {
                assert_eq!(code, 503, "{value:#}");
                break value;
            }
        }
        assert!(Instant::now() < deadline, "the bad pipeline never failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let parts = |n: &str| {
        value["pipelines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .unwrap()["parts"]["capture"]
            .clone()
    };
    assert!(
        parts(&bad_name)["error"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    assert_eq!(parts(&name)["state"], "running");
    let out = status(false);
    assert_eq!(out.status.code(), Some(1), "status says unhealthy");
    assert!(String::from_utf8_lossy(&out.stdout).contains("error: "));
    stop(&mut daemon);
    cleanup(&pg, &name, &s).await;
    cleanup(&pg, &bad_name, &s).await;
}
