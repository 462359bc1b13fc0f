//! Hudi tables written by tidewater, read back by hudi-rs (PyPI `hudi`), a
//! reader no one here wrote: a seeded mixed workload (inserts, updates,
//! deletes, partition moves, unchanged TOAST values, an added column, stale
//! replays, a truncate), then snapshot, time travel to every retained commit
//! and incremental reads compared row by row with a model of the table.
//! The same workload runs on the local file system and on the S3-API server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test glue"
)]

mod common;

use tidewater::config::model::{LakeConfig, S3Config, Secret};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_workload_on_the_local_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().display());
    common::lake_workload::mixed_workload(
        dir.path().display().to_string(),
        LakeConfig::with_uri(uri),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_workload_on_s3() {
    let prefix = common::unique_name("lake");
    let uri = format!("s3://{}/{prefix}", common::s3_bucket());
    let mut lake = LakeConfig::with_uri(&uri);
    lake.s3 = Some(S3Config {
        endpoint: Some(common::s3_endpoint()),
        region: Some(common::s3_region()),
        access_key_id: Some(common::s3_access_key_id()),
        secret_access_key: Some(Secret::new(common::s3_secret_access_key())),
        ..S3Config::default()
    });
    common::lake_workload::mixed_workload(uri, lake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_is_rolled_back_under_a_rollback_instant() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().display());
    common::lake_workload::failed_commit_is_rolled_back(
        dir.path().display().to_string(),
        LakeConfig::with_uri(uri),
    )
    .await;
}

/// Schema evolution on one table, read back by hudi-rs: a dropped column
/// stays (old rows keep their values, new rows read NULL), a widened column
/// rewrites every file with the values intact, and a narrowing is refused
/// with an error naming the column, leaving the table as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_columns_stay_widened_columns_rewrite_narrowing_is_refused() {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use tidewater::event::datum::Datum;
    use tidewater::event::schema::{Column, TableSchema};
    use tidewater::event::types::ColumnType;
    use tidewater::lake::table::{LakeError, Table};

    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    let lake = LakeConfig::with_uri(format!("file://{uri}"));
    let int = |bits| ColumnType::Int { bits, signed: true };
    let shape = |qty: ColumnType, note: bool| orders_shape(Column::new("qty", qty, true), note);
    const DAY: i64 = 86_400_000_000;
    const START: i64 = 1_704_067_200_000_000;
    let change = |table: &Arc<TableSchema>, commit: u64, id: i64, mut rest: Vec<Datum>| {
        let mut values = vec![Datum::Int(id)];
        values.append(&mut rest);
        row_change(table, commit, id, values)
    };
    let batch = batch_of;
    let store = tidewater::lake::store::open(&lake).unwrap();
    let mut table = Table::open(store.clone(), common::lake_workload::options())
        .await
        .unwrap();

    // v1: qty INT, with a note; rows 1..=6 on three days.
    let v1 = shape(int(32), true);
    let rows: Vec<_> = (1..=6)
        .map(|id| {
            change(
                &v1,
                1,
                id,
                vec![
                    Datum::Int(id * 10),
                    Datum::Micros(START + (id % 3) * DAY),
                    Datum::Text(format!("note {id}")),
                ],
            )
        })
        .collect();
    table.commit(batch(&v1, 1, rows)).await.unwrap();

    // v2: the note is dropped and qty becomes BIGINT; row 3 (day 0) is
    // updated and row 7 inserted on day 0 with a value beyond INT: the
    // groups of days 1 and 2 are untouched by the changes.
    let v2 = shape(int(64), false);
    let big = i64::from(i32::MAX) * 4;
    let outcome = table
        .commit(batch(
            &v2,
            2,
            vec![
                change(&v2, 2, 3, vec![Datum::Int(31), Datum::Micros(START)]),
                change(&v2, 2, 7, vec![Datum::Int(big), Datum::Micros(START)]),
            ],
        ))
        .await
        .unwrap();
    let files_before = table.latest_files().len() as u64;
    // Row 7 joined day 0's small file group (bin-packing), no new group.
    assert_eq!(
        files_before,
        3,
        "one file group per day: {:?}",
        table.latest_files()
    );
    assert_eq!(
        outcome.files_written, files_before,
        "a widened column rewrites every file group"
    );
    let read = |args: &[&str]| -> BTreeMap<i64, serde_json::Value> {
        common::read_hudi(args)
            .into_iter()
            .map(|v| (v["id"].as_i64().unwrap(), v))
            .collect()
    };
    let snapshot = read(&["snapshot", &uri]);
    assert_eq!(snapshot.len(), 7);
    let cell = |id: i64, column: &str| snapshot[&id][column].clone();
    assert_eq!(
        cell(1, "note"),
        serde_json::json!("note 1"),
        "old rows keep a dropped column"
    );
    assert_eq!(cell(2, "note"), serde_json::json!("note 2"));
    assert_eq!(
        cell(3, "note"),
        serde_json::Value::Null,
        "new rows read NULL"
    );
    assert_eq!(cell(7, "note"), serde_json::Value::Null);
    assert_eq!(
        cell(1, "qty"),
        serde_json::json!(10),
        "widened values intact"
    );
    assert_eq!(cell(2, "qty"), serde_json::json!(20));
    assert_eq!(cell(3, "qty"), serde_json::json!(31));
    assert_eq!(cell(7, "qty"), serde_json::json!(big));

    // v3: qty narrows to SMALLINT: refused, nothing written.
    let v3 = shape(int(16), false);
    let instants = table.timeline().instants().len();
    let err = table
        .commit(batch(
            &v3,
            3,
            vec![change(&v3, 3, 8, vec![Datum::Int(1), Datum::Micros(START)])],
        ))
        .await
        .unwrap_err();
    let LakeError::Schema {
        table: name,
        message,
    } = &err
    else {
        panic!("a schema error, not {err}")
    };
    assert_eq!(name, "public_orders");
    assert!(message.contains("`qty`"), "names the column: {message}");
    assert_eq!(
        table.timeline().instants().len(),
        instants,
        "no instant started"
    );
    let reopened = Table::open(store, common::lake_workload::options())
        .await
        .unwrap();
    assert_eq!(reopened.row_count(), 7);
    assert_eq!(read(&["snapshot", &uri]), snapshot, "the table as it was");
}

/// `tidewater ddl` for a table with every lake type, partitioned by day:
/// the Athena and Redshift statements parse (sqlparser), every column type
/// equals what the Parquet footer on disk says (mapped here, independently
/// of the code under test), and every partition on disk is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_matches_the_parquet_files_on_disk() {
    use parquet::basic::{LogicalType, Type as Physical};
    use parquet::schema::types::Type as PqType;
    use sqlparser::ast::Statement;
    use sqlparser::dialect::{DatabricksDialect, GenericDialect};
    use sqlparser::parser::Parser;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use tidewater::config::model::Granularity;
    use tidewater::event::change::Position;
    use tidewater::event::datum::{Datum, Row};
    use tidewater::event::decimal::Decimal;
    use tidewater::event::schema::{Column, TableSchema};
    use tidewater::event::table_id::TableId;
    use tidewater::event::types::ColumnType;
    use tidewater::lake::layout::{PartitionSpec, TableLayout, event_record_key};
    use tidewater::lake::metadata::Checkpoint;
    use tidewater::lake::table::{Change, CommitBatch, Table};

    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().display());
    let int = |bits| ColumnType::Int { bits, signed: true };
    let columns = vec![
        Column::new("id", int(64), false),
        Column::new("flag", ColumnType::Boolean, true),
        Column::new("tiny", int(8), true),
        Column::new("small", int(16), true),
        Column::new("normal", int(32), true),
        Column::new("huge", ColumnType::UInt64, true),
        Column::new("ratio", ColumnType::Float32, true),
        Column::new("score", ColumnType::Float64, true),
        Column::new(
            "amount",
            ColumnType::Decimal {
                precision: 12,
                scale: 2,
            },
            true,
        ),
        Column::new("name", ColumnType::Text, true),
        Column::new("doc", ColumnType::Json, true),
        Column::new("blob", ColumnType::Bytes, true),
        Column::new("born", ColumnType::Date, true),
        Column::new("local_at", ColumnType::Timestamp, true),
        Column::new("created_at", ColumnType::TimestampTz, true),
        Column::new("wait", ColumnType::Interval, true),
        Column::new(
            "tags",
            ColumnType::Array {
                element: Box::new(ColumnType::Text),
                dims: 1,
            },
            true,
        ),
        Column::new(
            "grid",
            ColumnType::Array {
                element: Box::new(int(32)),
                dims: 2,
            },
            true,
        ),
    ];
    let table = Arc::new(TableSchema {
        id: TableId::new("public", "everything"),
        database: "shop".into(),
        columns,
        key: vec![0],
    });
    let day = 86_400_000_000i64;
    let start = 1_704_067_200_000_000i64;
    let changes: Vec<Change> = (1..=3)
        .map(|id: i64| Change {
            key: event_record_key(&table, &Row(vec![Datum::Int(id)])),
            position: Position::new(1, id as u64),
            row: Some(
                Row(vec![
                    Datum::Int(id),
                    Datum::Bool(true),
                    Datum::Int(1),
                    Datum::Int(2),
                    Datum::Int(3),
                    Datum::UInt64(u64::MAX),
                    Datum::Float32(0.5),
                    Datum::Float64(0.25),
                    Datum::Decimal(Decimal::from_i128(12345)),
                    Datum::Text("n".into()),
                    Datum::Text("{}".into()),
                    Datum::Bytes(vec![0, 1]),
                    Datum::Date(19_000),
                    Datum::Micros(start),
                    Datum::Micros(start + id * day),
                    Datum::Interval {
                        months: 1,
                        days: 2,
                        micros: 3,
                    },
                    Datum::Array(vec![Datum::Text("a".into())]),
                    Datum::Array(vec![Datum::Array(vec![Datum::Int(1), Datum::Null])]),
                ])
                .into(),
            ),
            schema: table.clone(),
        })
        .collect();
    let layout = TableLayout {
        name: "public_everything".into(),
        database: "shop".into(),
        partition: Some(PartitionSpec {
            column: "created_at".into(),
            granularity: Granularity::Day,
        }),
    };
    let mut options = common::lake_workload::options();
    options.layout = layout;
    let root = tidewater::lake::store::open(&LakeConfig::with_uri(&uri)).unwrap();
    let store = Arc::new(object_store::prefix::PrefixStore::new(
        root,
        "public_everything",
    ));
    let mut lake_table = Table::open(store, options).await.unwrap();
    lake_table
        .commit(CommitBatch {
            shapes: vec![table.clone()],
            changes: changes.into(),
            truncate: None,
            checkpoint: Checkpoint {
                topic: "t".into(),
                offsets: BTreeMap::from([(0, 1)]),
                ..Default::default()
            },
            position: Some(Position::new(1, u64::MAX)),
        })
        .await
        .unwrap();

    let file = dir.path().join("pipeline.yaml");
    std::fs::write(
        &file,
        format!(
            "name: shop\nsource:\n  type: postgres\n  url: postgres://u@localhost/db\n  tables:\n    - name: public.everything\n      partition_by:\n        column: created_at\n        granularity: day\nkafka:\n  brokers: localhost:9092\nlake:\n  uri: {uri}\n"
        ),
    )
    .unwrap();
    let ddl = |dialect: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidewater"))
            .args(["ddl", "--dialect", dialect])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    // What the Parquet footer says, mapped to Hive types here.
    let parquet_file = walk(dir.path())
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .expect("a base file");
    let reader = parquet::file::reader::SerializedFileReader::new(
        std::fs::File::open(&parquet_file).unwrap(),
    )
    .unwrap();
    use parquet::file::reader::FileReader;
    fn hive(t: &PqType) -> String {
        let info = t.get_basic_info();
        if t.is_group() {
            if matches!(info.logical_type_ref(), Some(LogicalType::List)) {
                // LIST > repeated group > element
                let element = &t.get_fields()[0].get_fields()[0];
                return format!("array<{}>", hive(element));
            }
            let fields: Vec<String> = t
                .get_fields()
                .iter()
                .map(|f| format!("{}:{}", f.name(), hive(f)))
                .collect();
            return format!("struct<{}>", fields.join(","));
        }
        match (t.get_physical_type(), info.logical_type_ref()) {
            (_, Some(LogicalType::Decimal(d))) => format!("decimal({},{})", d.precision, d.scale),
            (_, Some(LogicalType::String)) => "string".into(),
            (_, Some(LogicalType::Date)) => "date".into(),
            (_, Some(LogicalType::Timestamp(_))) => "timestamp".into(),
            (_, Some(LogicalType::Integer(i))) if i.bit_width == 8 => "tinyint".into(),
            (_, Some(LogicalType::Integer(i))) if i.bit_width == 16 => "smallint".into(),
            (Physical::INT32, _) => "int".into(),
            (Physical::INT64, _) => "bigint".into(),
            (Physical::BOOLEAN, _) => "boolean".into(),
            (Physical::FLOAT, _) => "float".into(),
            (Physical::DOUBLE, _) => "double".into(),
            (Physical::BYTE_ARRAY, None) => "binary".into(),
            other => panic!("unexpected Parquet type {other:?}"),
        }
    }
    let on_disk: Vec<(String, String)> = reader
        .metadata()
        .file_metadata()
        .schema()
        .get_fields()
        .iter()
        .filter(|f| f.name() != "created_at_day")
        .map(|f| (f.name().to_string(), hive(f)))
        .collect();
    assert!(on_disk.len() > 20, "{on_disk:?}");
    // Statistics as a commit writes them: none for the JSON column, whose
    // byte order prunes nothing; min/max for the others.
    let row_group = reader.metadata().row_group(0);
    let stats = |name: &str| {
        row_group
            .columns()
            .iter()
            .find(|c| c.column_path().string() == name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .statistics()
            .cloned()
    };
    assert!(stats("doc").is_none(), "the JSON column has statistics");
    for name in ["id", "name", "amount", "created_at", "_hoodie_record_key"] {
        let s = stats(name).unwrap_or_else(|| panic!("{name} has no statistics"));
        assert!(
            s.min_bytes_opt().is_some() && s.max_bytes_opt().is_some(),
            "{name} has no min/max"
        );
    }

    // sqlparser prints `STRUCT<months INT, ...>` for `struct<months:int,...>`.
    let normal = |s: String| s.to_lowercase().replace([' ', '"', '`', ':'], "");
    let athena = ddl("athena");
    // Databricks' dialect is Hive DDL with `struct<name: type>`.
    let statements = Parser::parse_sql(&DatabricksDialect {}, &athena)
        .unwrap_or_else(|e| panic!("{e}:\n{athena}"));
    let mut creates = 0;
    let mut partitions = Vec::new();
    for s in &statements {
        match s {
            Statement::CreateTable(c) => {
                creates += 1;
                assert_eq!(c.name.to_string(), "`shop`.`public_everything`");
                let got: Vec<(String, String)> = c
                    .columns
                    .iter()
                    .map(|col| (col.name.value.clone(), normal(col.data_type.to_string())))
                    .collect();
                let want: Vec<(String, String)> = on_disk
                    .iter()
                    .map(|(n, t)| (n.clone(), normal(t.clone())))
                    .collect();
                assert_eq!(got, want);
                let text = s.to_string();
                assert!(
                    text.contains("org.apache.hudi.hadoop.HoodieParquetInputFormat"),
                    "{text}"
                );
                assert!(text.contains(&format!("{uri}/public_everything")), "{text}");
            }
            Statement::AlterTable(a) => partitions.push(a.to_string()),
            Statement::CreateDatabase { .. } => {}
            other => panic!("unexpected statement {other}"),
        }
    }
    assert_eq!(creates, 1);
    let mut dirs: Vec<String> = std::fs::read_dir(dir.path().join("public_everything"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("created_at_day="))
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 3, "three days");
    assert_eq!(partitions.len(), dirs.len(), "{partitions:?}");
    for (alter, d) in partitions.iter().zip(&dirs) {
        let value = d.trim_start_matches("created_at_day=");
        assert!(alter.contains(&format!("'{value}'")), "{alter}");
    }

    // Redshift: the CREATE parses (sqlparser's Redshift dialect has no
    // nested types: the generic one), its types are the same columns in
    // Redshift's names.
    let redshift = ddl("redshift");
    let create = redshift
        .split(";\n")
        .find(|s| s.trim_start().starts_with("CREATE EXTERNAL TABLE"))
        .unwrap();
    let parsed =
        Parser::parse_sql(&GenericDialect {}, create).unwrap_or_else(|e| panic!("{e}:\n{create}"));
    let Statement::CreateTable(c) = &parsed[0] else {
        panic!("{create}");
    };
    let got: BTreeMap<String, String> = c
        .columns
        .iter()
        .map(|col| (col.name.value.clone(), normal(col.data_type.to_string())))
        .collect();
    let redshift_of = |hive: &str| -> String {
        hive.replace("string", "varchar(65535)")
            .replace("binary", "varbyte(1024000)")
            .replace("tinyint", "smallint")
            .replace("float", "real")
            .replace("double", "doubleprecision")
    };
    for (name, hive) in &on_disk {
        assert_eq!(
            got.get(name),
            Some(&normal(redshift_of(hive))),
            "column {name}"
        );
    }
    assert_eq!(redshift.matches("ADD IF NOT EXISTS PARTITION").count(), 3);

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}

/// A commit that fails midway (here: a base file it must rewrite cannot be
/// read) leaves a pending instant, and maybe data files. The same writer
/// rolls it back before its next commit, not only at a restart: archival
/// would otherwise one day pass the pending instant, and its files would
/// then count as committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_is_rolled_back_before_the_writers_next_commit() {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use tidewater::event::change::Position;
    use tidewater::event::datum::{Datum, Row};
    use tidewater::event::sample::Rng;
    use tidewater::lake::layout::event_record_key;
    use tidewater::lake::metadata::Checkpoint;
    use tidewater::lake::table::{Change, CommitBatch, LakeError};

    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    let mut w =
        common::lake_workload::Workload::open(&LakeConfig::with_uri(format!("file://{uri}")), 11)
            .await;
    w.step(300, false).await;
    w.step(100, false).await;
    let shape = common::lake_workload::shape(false);
    let mut rng = Rng::new(5);
    let mut changes = Vec::new();
    let mut expected = w.model.clone();
    for (ordinal, (key, old)) in w.model.rows.iter().enumerate() {
        let id: i64 = key.parse().unwrap();
        let mut row = common::lake_workload::row(&mut rng, id, 0, w.model.width);
        row.0[3] = old.0[3].clone();
        expected.rows.insert(key.clone(), row.clone());
        changes.push(Change {
            key: event_record_key(&shape, &Row(vec![Datum::Int(id)])),
            position: Position::new(5_000, ordinal as u64),
            row: Some(row.into()),
            schema: shape.clone(),
        });
    }
    let batch = || CommitBatch {
        shapes: vec![Arc::clone(&shape)],
        changes: changes.clone().into(),
        truncate: None,
        checkpoint: Checkpoint {
            topic: "shop.public.orders".into(),
            offsets: BTreeMap::from([(0, 10_000)]),
            ..Default::default()
        },
        position: Some(Position::new(5_000, u64::MAX)),
    };
    let victim = dir.path().join(&w.table.latest_files()[0]);
    let original = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, b"not a parquet file").unwrap();
    let err = w.table.commit(batch()).await.unwrap_err();
    assert!(
        matches!(&err, LakeError::File { path, .. } if victim.ends_with(path)),
        "the error names the unreadable file: {err}"
    );
    let hoodie = |suffix: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join(".hoodie"))
            .unwrap()
            .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().to_string()))
            .filter(|n| n.ends_with(suffix))
            .collect();
        names.sort();
        names
    };
    let failed: Vec<String> = hoodie(".commit.requested")
        .into_iter()
        .map(|n| n.trim_end_matches(".commit.requested").to_string())
        .filter(|t| !hoodie(".commit").contains(&format!("{t}.commit")))
        .collect();
    assert_eq!(failed.len(), 1, "one pending instant: {failed:?}");

    std::fs::write(&victim, original).unwrap();
    w.table.commit(batch()).await.unwrap();
    let pending: Vec<String> = hoodie(".commit.requested")
        .into_iter()
        .filter(|n| !hoodie(".commit").contains(&n.replace(".commit.requested", ".commit")))
        .collect();
    assert!(pending.is_empty(), "pending instants left: {pending:?}");
    let rollbacks = hoodie(".rollback");
    assert_eq!(rollbacks.len(), 1, "{rollbacks:?}");
    let store =
        tidewater::lake::store::open(&LakeConfig::with_uri(format!("file://{uri}"))).unwrap();
    let services = common::lake_workload::table_service_files(store.as_ref()).await;
    let plan = services
        .iter()
        .find(|(n, _)| n.ends_with(".rollback.requested"))
        .map(|(_, plan)| plan)
        .unwrap();
    assert_eq!(
        plan["records"][0]["instantToRollback"]["commitTime"],
        serde_json::json!(failed[0])
    );
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                assert!(
                    !path.to_string_lossy().contains(&failed[0]),
                    "{} of the failed instant survived",
                    path.display()
                );
            }
        }
    }
    assert_eq!(w.lake_rows(&["snapshot", &uri]), expected.expected());
}

/// Base files of an instant the timeline does not know: at open, one newer
/// than the last completed commit may be a live writer's attempt that began
/// after the listing, and stays; once a later commit completes, no attempt
/// older than it can still commit, and it goes. One older than the last
/// completed commit goes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_unknown_instants_go_only_once_no_writer_can_commit_them() {
    use tidewater::lake::table::Table;
    use tidewater::lake::timeline::{next_instant, now_millis};

    let dir = tempfile::tempdir().unwrap();
    let lake = LakeConfig::with_uri(format!("file://{}", dir.path().display()));
    let mut w = common::lake_workload::Workload::open(&lake, 3).await;
    w.step(100, false).await;
    let first = w.history[0].0.clone();
    w.step(100, false).await;
    let last = w.history[1].0.clone();
    let committed = w.table.latest_files()[0].clone();
    let (partition, _) = committed.rsplit_once('/').unwrap();
    let stray = |n: u8, instant: String| {
        format!("{partition}/00000000-0000-0000-0000-00000000000{n}-0_0-0-0_{instant}.parquet")
    };
    let between = next_instant(0, Some(&first));
    assert!(between < last, "{between} between {first} and {last}");
    let before_last = stray(1, between);
    let newer = stray(2, next_instant(now_millis(), Some(&last)));
    let body = std::fs::read(dir.path().join(&committed)).unwrap();
    for name in [&before_last, &newer] {
        std::fs::write(dir.path().join(name), &body).unwrap();
    }
    let exists = |name: &str| dir.path().join(name).exists();
    let store = tidewater::lake::store::open(&lake).unwrap();
    let reopened = Table::open(store, common::lake_workload::options())
        .await
        .unwrap();
    assert!(
        !exists(&before_last),
        "older than the last commit: deleted at open"
    );
    assert!(exists(&newer), "maybe a live writer's: kept at open");
    assert_eq!(reopened.row_count(), w.model.rows.len() as u64);
    w.table = reopened;
    // The next instant is a later millisecond than the stray's.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    w.step(50, false).await;
    assert!(!exists(&newer), "deleted once a later commit completed");
    assert_eq!(
        w.lake_rows(&["snapshot", &dir.path().display().to_string()]),
        w.model.expected()
    );
}

/// A table whose commits only add new file groups never cleans anything;
/// its timeline is archived all the same, and hudi-rs still reads the
/// files of archived commits as committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_only_table_is_archived_and_still_reads_whole() {
    insert_only_workload(None).await;
}

/// A pending instant (a writer that crashed and never came back, its data
/// file written) blocks archival from passing it: its file must never count
/// as committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archival_never_passes_a_pending_instant() {
    insert_only_workload(Some(3)).await;
}

async fn insert_only_workload(pending_after: Option<usize>) {
    use std::collections::BTreeMap;
    use tidewater::event::sample::Rng;
    use tidewater::lake::table::Table;

    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    let lake = LakeConfig::with_uri(format!("file://{uri}"));
    let options = common::lake_workload::options();
    let keep = options.keep_commits;
    let mut table = Table::open(tidewater::lake::store::open(&lake).unwrap(), options)
        .await
        .unwrap();
    let shape = common::lake_workload::shape(false);
    let mut rng = Rng::new(8);
    let mut model = common::lake_workload::Model {
        rows: BTreeMap::new(),
        width: 5,
    };
    // Past archival, and past two prunings of the commit log.
    let commits = (keep + 30).max(2 * tidewater::lake::log::KEEP as usize + 5);
    let mut pending = None;
    for c in 0..commits {
        if pending_after == Some(c) {
            // A crashed writer's instant: requested, inflight and a copy of
            // a committed file under its own instant (duplicate keys, were
            // it ever visible).
            let last = table
                .timeline()
                .completed_commits()
                .last()
                .unwrap()
                .time
                .clone();
            let time = tidewater::lake::timeline::next_instant(
                tidewater::lake::timeline::now_millis(),
                Some(&last),
            );
            let hoodie = dir.path().join(".hoodie");
            std::fs::write(hoodie.join(format!("{time}.commit.requested")), b"").unwrap();
            std::fs::write(hoodie.join(format!("{time}.inflight")), b"").unwrap();
            let file = table.latest_files()[0].clone();
            let (partition, _) = file.rsplit_once('/').unwrap();
            std::fs::copy(
                dir.path().join(&file),
                dir.path().join(format!(
                    "{partition}/00000000-0000-0000-0000-000000000009-0_0-1-0_{time}.parquet"
                )),
            )
            .unwrap();
            pending = Some(time);
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        // Each commit: ten rows of a day of their own, so a new file group.
        let mut changes = Vec::new();
        for n in 0..10 {
            let id = (c * 10 + n) as i64;
            let row = common::lake_workload::row(&mut rng, id, c as i64, 5);
            model.rows.insert(id.to_string(), row.clone());
            changes.push(row_change(&shape, c as u64 + 1, id, row.0));
        }
        table
            .commit(batch_of(&shape, c as u64 + 1, changes))
            .await
            .unwrap();
    }
    let names: Vec<String> = std::fs::read_dir(dir.path().join(".hoodie"))
        .unwrap()
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().to_string()))
        .collect();
    let completed: Vec<&String> = names.iter().filter(|n| n.ends_with(".commit")).collect();
    match &pending {
        None => assert!(
            completed.len() <= keep + 21,
            "{} completed commits left of {commits}: archival did not run",
            completed.len()
        ),
        Some(time) => {
            // Only what came before it was archived; it stays pending.
            let after = completed
                .iter()
                .filter(|n| n.as_str() > time.as_str())
                .count();
            assert_eq!(
                after,
                commits - pending_after.unwrap_or(0),
                "archival passed {time}"
            );
            assert!(names.contains(&format!("{time}.inflight")), "still pending");
        }
    }
    assert!(
        !names.iter().any(|n| n.contains(".clean")),
        "nothing to clean"
    );
    let log: Vec<u64> = std::fs::read_dir(dir.path().join(tidewater::lake::log::LOG_DIR))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().to_string();
            name.strip_suffix(".json")?.parse().ok()
        })
        .collect();
    let keep_log = tidewater::lake::log::KEEP;
    assert!(
        log.len() as u64 <= 2 * keep_log && log.iter().all(|n| *n >= keep_log),
        "the commit log is pruned: {} entries from {:?}",
        log.len(),
        log.iter().min()
    );
    let w = common::lake_workload::Workload::open(&lake, 1).await;
    assert_eq!(w.lake_rows(&["snapshot", &uri]), model.expected());
}

/// A rename at the source (a column gone and one of the same type in its
/// place) keeps the values under the new name; a dropped column added back
/// holds NULL for every row not written since, as the source does; both
/// rewrite every file group. Read back by hudi-rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_column_keeps_its_values_and_a_column_added_back_starts_empty() {
    use serde_json::{Value, json};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use tidewater::event::change::Position;
    use tidewater::event::datum::Datum;
    use tidewater::event::schema::{Column, TableSchema};
    use tidewater::event::types::ColumnType;
    use tidewater::lake::table::{CommitBatch, Table};

    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    let lake = LakeConfig::with_uri(format!("file://{uri}"));
    let shape =
        |label: &str, note: bool| orders_shape(Column::new(label, ColumnType::Text, true), note);
    const DAY: i64 = 86_400_000_000;
    const START: i64 = 1_704_067_200_000_000;
    let change =
        |table: &Arc<TableSchema>, commit: u64, id: i64, label: &str, note: Option<&str>| {
            let mut values = vec![
                Datum::Int(id),
                Datum::Text(label.to_string()),
                Datum::Micros(START + (id % 3) * DAY),
            ];
            if table.columns.len() == 4 {
                values.push(note.map_or(Datum::Null, |n| Datum::Text(n.to_string())));
            }
            row_change(table, commit, id, values)
        };
    let batch = batch_of;
    let store = tidewater::lake::store::open(&lake).unwrap();
    let mut table = Table::open(store, common::lake_workload::options())
        .await
        .unwrap();
    let read = || -> BTreeMap<i64, Value> {
        common::read_hudi(&["snapshot", &uri])
            .into_iter()
            .map(|v| (v["id"].as_i64().unwrap(), v))
            .collect()
    };

    let v1 = shape("label", true);
    let rows = (1..=6)
        .map(|id| change(&v1, 1, id, &format!("l{id}"), Some(&format!("n{id}"))))
        .collect();
    table.commit(batch(&v1, 1, rows)).await.unwrap();
    let groups = table.latest_files().len() as u64;

    // RENAME COLUMN label TO title; row 2 updated, row 7 inserted.
    let v2 = shape("title", true);
    let outcome = table
        .commit(batch(
            &v2,
            2,
            vec![
                change(&v2, 2, 2, "t2", Some("n2")),
                change(&v2, 2, 7, "t7", Some("n7")),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(outcome.files_written, groups, "every file group rewritten");
    let snapshot = read();
    assert_eq!(snapshot.len(), 7);
    for (id, row) in &snapshot {
        let title = if [2, 7].contains(id) {
            format!("t{id}")
        } else {
            format!("l{id}")
        };
        assert_eq!(row["title"], json!(title), "row {id}: {row}");
        assert!(
            row.get("label").is_none(),
            "no column under the old name: {row}"
        );
    }

    // A late row from before the rename (a partition lagging behind): the
    // sink passes no shape to absorb for it, and its value lands under the
    // new name.
    let mut late = change(&v1, 1, 5, "late5", Some("n5"));
    late.position = Position::new(1, 50);
    table
        .commit(CommitBatch {
            shapes: Vec::new(),
            ..batch(&v1, 2, vec![late])
        })
        .await
        .unwrap();
    assert_eq!(read()[&5]["title"], json!("late5"));

    // DROP COLUMN note (row 3 updated), then ADD COLUMN note (row 4).
    let v3 = shape("title", false);
    table
        .commit(batch(&v3, 3, vec![change(&v3, 3, 3, "t3", None)]))
        .await
        .unwrap();
    let v4 = shape("title", true);
    table
        .commit(batch(&v4, 4, vec![change(&v4, 4, 4, "t4", Some("again"))]))
        .await
        .unwrap();
    for (id, row) in read() {
        let note = if id == 4 { json!("again") } else { Value::Null };
        assert_eq!(row["note"], note, "row {id}: {row}");
    }
}

/// A change of the row keyed `id` to `values` (in shape `table`) at source
/// position `(commit, id)`.
fn row_change(
    table: &std::sync::Arc<tidewater::event::schema::TableSchema>,
    commit: u64,
    id: i64,
    values: Vec<tidewater::event::datum::Datum>,
) -> tidewater::lake::table::Change {
    use tidewater::event::datum::{Datum, Row};
    tidewater::lake::table::Change {
        key: tidewater::lake::layout::event_record_key(table, &Row(vec![Datum::Int(id)])),
        position: tidewater::event::change::Position::new(commit, id as u64),
        row: Some(Row(values).into()),
        schema: table.clone(),
    }
}

/// One commit of `changes` in shape `table`, with checkpoint `t,0:<commit>`
/// and source position `(commit, max)`.
fn batch_of(
    table: &std::sync::Arc<tidewater::event::schema::TableSchema>,
    commit: u64,
    changes: Vec<tidewater::lake::table::Change>,
) -> tidewater::lake::table::CommitBatch {
    use tidewater::event::change::Position;
    tidewater::lake::table::CommitBatch {
        shapes: vec![table.clone()],
        changes: changes.into(),
        truncate: None,
        checkpoint: tidewater::lake::metadata::Checkpoint {
            topic: "t".into(),
            offsets: std::collections::BTreeMap::from([(0, commit as i64)]),
            ..Default::default()
        },
        position: Some(Position::new(commit, u64::MAX)),
    }
}

/// `public.orders` as (id, `second`, created_at), with a `note` when asked.
fn orders_shape(
    second: tidewater::event::schema::Column,
    note: bool,
) -> std::sync::Arc<tidewater::event::schema::TableSchema> {
    use tidewater::event::schema::{Column, TableSchema};
    use tidewater::event::types::ColumnType;
    let id = ColumnType::Int {
        bits: 64,
        signed: true,
    };
    let mut columns = vec![
        Column::new("id", id, false),
        second,
        Column::new("created_at", ColumnType::TimestampTz, true),
    ];
    if note {
        columns.push(Column::new("note", ColumnType::Text, true));
    }
    std::sync::Arc::new(TableSchema {
        id: tidewater::event::table_id::TableId::new("public", "orders"),
        database: "shop".into(),
        columns,
        key: vec![0],
    })
}
