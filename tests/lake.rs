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
