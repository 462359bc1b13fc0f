//! Glue shared by the integration tests: where the real services are, and
//! names that keep parallel tests out of each other's way.
//!
//! Services are found through environment variables (`scripts/services.sh env`
//! prints them) with the harness's defaults. A test that cannot reach its
//! service fails with a message saying how to start it; nothing is skipped.

#![allow(dead_code, reason = "each test binary uses part of the glue")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

pub fn pg_url() -> String {
    var(
        "TIDEWATER_PG_URL",
        "postgres://tidewater:tidewater@127.0.0.1:5432/tidewater",
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
