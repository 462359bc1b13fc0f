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
    use tidewater::event::change::Position;
    use tidewater::event::datum::{Datum, Row};
    use tidewater::event::schema::{Column, TableSchema};
    use tidewater::event::table_id::TableId;
    use tidewater::event::types::ColumnType;
    use tidewater::lake::layout::event_record_key;
    use tidewater::lake::metadata::Checkpoint;
    use tidewater::lake::table::{Change, CommitBatch, LakeError, Table};

    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    let lake = LakeConfig::with_uri(format!("file://{uri}"));
    let int = |bits| ColumnType::Int { bits, signed: true };
    let shape = |qty: ColumnType, note: bool| {
        let mut columns = vec![
            Column::new("id", int(64), false),
            Column::new("qty", qty, true),
            Column::new("created_at", ColumnType::TimestampTz, true),
        ];
        if note {
            columns.push(Column::new("note", ColumnType::Text, true));
        }
        Arc::new(TableSchema {
            id: TableId::new("public", "orders"),
            database: "shop".into(),
            columns,
            key: vec![0],
        })
    };
    const DAY: i64 = 86_400_000_000;
    const START: i64 = 1_704_067_200_000_000;
    let change = |table: &Arc<TableSchema>, commit: u64, id: i64, mut rest: Vec<Datum>| {
        let mut values = vec![Datum::Int(id)];
        values.append(&mut rest);
        Change {
            key: event_record_key(table, &Row(vec![Datum::Int(id)])),
            position: Position::new(commit, id as u64),
            row: Some(Row(values)),
            schema: table.clone(),
        }
    };
    let batch = |table: &Arc<TableSchema>, commit: u64, changes: Vec<Change>| CommitBatch {
        shapes: vec![table.clone()],
        changes,
        truncate: None,
        checkpoint: Checkpoint {
            topic: "t".into(),
            offsets: BTreeMap::from([(0, commit as i64)]),
        },
        position: Some(Position::new(commit, u64::MAX)),
    };
    let store = tidewater::lake::store::open(&lake).unwrap();
    let mut table = Table::open(store.clone(), common::lake_workload::options())
        .await
        .unwrap();

    // v1: qty INT, with a note; rows 1..=6 on three days.
    let v1 = shape(int(32), true);
    let rows: Vec<Change> = (1..=6)
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
        let python = std::env::var("TIDEWATER_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/read_hudi.py");
        let out = std::process::Command::new(&python)
            .arg(script)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["id"].as_i64().unwrap(), v)
            })
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
