//! RELIABILITY F6 on the lake writer: the mixed workload against the S3-API
//! server through a proxy that injects a fault before every commit (5xx on
//! puts, gets and lists, a lost or reset answer after the server stored a
//! data file, a commit file or a commit-log claim), and a large base file
//! uploaded in parts with a 503 on the multipart completion. The table read
//! back by hudi-rs must still equal the model, with no duplicate key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test glue"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::s3_faults::{Fault, FaultKind, S3Proxy};
use tidewater::config::model::{LakeConfig, S3Config, Secret};
use tidewater::event::change::Position;
use tidewater::event::datum::{Datum, Row};
use tidewater::event::sample::Rng;
use tidewater::lake::layout::event_record_key;
use tidewater::lake::metadata::Checkpoint;
use tidewater::lake::table::{Change, CommitBatch, Table};

fn lake_through(proxy: &S3Proxy, prefix: &str) -> (String, LakeConfig) {
    let uri = format!("s3://{}/{prefix}", common::s3_bucket());
    let mut lake = LakeConfig::with_uri(&uri);
    lake.s3 = Some(S3Config {
        endpoint: Some(proxy.endpoint.clone()),
        region: Some(common::s3_region()),
        access_key_id: Some(common::s3_access_key_id()),
        secret_access_key: Some(Secret::new(common::s3_secret_access_key())),
        request_timeout_secs: 2,
        ..S3Config::default()
    });
    (uri, lake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mixed_workload_survives_injected_s3_faults() {
    let proxy = S3Proxy::start(&common::s3_endpoint()).await;
    let (uri, lake) = lake_through(&proxy, &common::unique_name("faults"));
    common::lake_workload::mixed_workload_with_faults(uri, lake, Some(&proxy)).await;
    assert!(
        proxy.injected() >= 5,
        "only {} faults fired",
        proxy.injected()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_times_out_after_it_was_stored_still_counts_once() {
    let proxy = S3Proxy::start(&common::s3_endpoint()).await;
    let (uri, lake) = lake_through(&proxy, &common::unique_name("timeout"));
    let mut w = common::lake_workload::Workload::open(&lake, 5).await;
    w.step(200, false).await;
    // The completed instant and the commit-log claim: stored, then silence
    // past the 2 s request timeout.
    proxy.inject(
        Fault::new(FaultKind::Delay(std::time::Duration::from_secs(4)))
            .method("PUT")
            .path_contains("/log/"),
    );
    proxy.inject(
        Fault::new(FaultKind::Delay(std::time::Duration::from_secs(4)))
            .method("PUT")
            .path_contains(".commit"),
    );
    w.step(200, false).await;
    assert_eq!(proxy.injected(), 2);
    let rows = w.lake_rows(&["snapshot", &uri]);
    assert_eq!(rows, w.model.expected());
    let commits = w.read(&["commits", &uri]);
    assert_eq!(
        commits.len(),
        2,
        "exactly two completed commits: {commits:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_goes_up_in_parts_despite_a_503_on_completion() {
    let proxy = S3Proxy::start(&common::s3_endpoint()).await;
    let (uri, lake) = lake_through(&proxy, &common::unique_name("multipart"));
    let store = tidewater::lake::store::open(&lake).unwrap();
    let mut options = common::lake_workload::options();
    options.target_file_bytes = 256 * 1024 * 1024;
    let mut table = Table::open(store, options).await.unwrap();
    let shape = common::lake_workload::shape(false);
    let mut rng = Rng::new(77);
    // About 20 MiB of incompressible notes in one partition: one file.
    let mut changes = Vec::new();
    let mut expected = BTreeMap::new();
    for id in 0..7_000i64 {
        let mut row: Row = common::lake_workload::row(&mut rng, id, 0, 5);
        let note: String = (0..3000)
            .map(|_| char::from(b'!' + rng.below(90) as u8))
            .collect();
        row.0[4] = Datum::Text(note);
        let key = event_record_key(&shape, &Row(vec![Datum::Int(id)]));
        expected.insert(key.clone(), row.clone());
        changes.push(Change {
            key,
            position: Position::new(5, id as u64),
            row: Some(row.into()),
            schema: shape.clone(),
        });
    }
    proxy.inject(
        Fault::new(FaultKind::Status(503))
            .method("POST")
            .query_contains("uploadId="),
    );
    table
        .commit(CommitBatch {
            shapes: vec![Arc::clone(&shape)],
            changes: changes.into(),
            truncate: None,
            checkpoint: Checkpoint {
                topic: "t".into(),
                offsets: BTreeMap::from([(0, 7_000)]),
                ..Default::default()
            },
            position: None,
        })
        .await
        .unwrap();
    assert_eq!(proxy.injected(), 1, "the completion fault fired");
    assert!(
        !proxy.requests_matching("PUT", "partNumber=").is_empty(),
        "the file went up in parts"
    );
    // hudi-rs reads it back whole.
    let rows = common::read_hudi(&["snapshot", &uri]).len();
    assert_eq!(rows, expected.len());
}
