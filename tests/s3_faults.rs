//! RELIABILITY F6 groundwork: what `object_store`'s S3 client does when the
//! S3-API server answers 5xx on a put, a list or a multipart completion, or
//! when the answer to a request the server already carried out is lost (the
//! connection closed or reset, or held past the client's timeout).
//!
//! The store is built as the lake builds it (`tidewater::lake::store::open`)
//! but pointed at a fault-injecting proxy (`common::s3_faults`) in front of the
//! real server. What the tests pin down, with object_store 0.13's defaults
//! (10 retries, 100 ms first backoff doubling with jitter up to 15 s, 3 min
//! retry budget, 30 s request timeout, 5 s connect timeout):
//!
//! - 5xx (and 429/408) answers are retried for every request: put, list,
//!   multipart completion. A fault that persists surfaces after `max_retries`
//!   as `Error::Generic` carrying the status.
//! - A connection closed without an answer (FIN) counts as "request not sent"
//!   and is retried for every method, even a put-if-absent. The retry of a
//!   `PutMode::Create` that the server already stored then gets 412 and the
//!   caller sees `Error::AlreadyExists` for an object IT wrote.
//! - A connection reset (RST) or a timeout is retried only for requests
//!   object_store deems idempotent (GET/HEAD, overwrite PUT, parts,
//!   completion); a put-if-absent fails with `Error::Generic` although the
//!   object may be stored.
//!
//! So after a put-if-absent the lake writer must treat both `AlreadyExists`
//! and any other error as "maybe ours": read the object back and compare.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test glue"
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};

use common::s3_faults::{Fault, FaultKind, S3Proxy};
use tidewater::config::model::{LakeConfig, S3Config, Secret};

/// The lake's store (`s3://<bucket>/<prefix>`) with its endpoint at `endpoint`.
fn lake_store(endpoint: &str, prefix: &str) -> Arc<dyn ObjectStore> {
    let mut lake = LakeConfig::with_uri(format!("s3://{}/{prefix}", common::s3_bucket()));
    lake.s3 = Some(S3Config {
        endpoint: Some(endpoint.to_string()),
        region: Some(common::s3_region()),
        access_key_id: Some(common::s3_access_key_id()),
        secret_access_key: Some(Secret::new(common::s3_secret_access_key())),
        ..S3Config::default()
    });
    tidewater::lake::store::open(&lake).unwrap()
}

/// The same store as `lake_store` (a mirror of `lake::store::open` for S3)
/// with explicit client and retry settings, which `LakeConfig` does not
/// expose. `with_client_options` replaces every client option, so it comes
/// before `with_allow_http`.
fn tuned_store(
    endpoint: &str,
    prefix: &str,
    client: ClientOptions,
    retry: RetryConfig,
) -> Arc<dyn ObjectStore> {
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(common::s3_bucket())
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_client_options(client)
        .with_retry(retry)
        .with_endpoint(endpoint)
        .with_allow_http(endpoint.starts_with("http://"))
        .with_region(common::s3_region())
        .with_access_key_id(common::s3_access_key_id())
        .with_secret_access_key(common::s3_secret_access_key())
        .build()
        .unwrap();
    Arc::new(PrefixStore::new(store, prefix))
}

/// Retry settings that fail fast: 2 retries, 10 ms backoff.
fn quick_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
    }
}

/// A proxy in front of the real server, the lake store behind it, and the
/// lake store talking to the server directly (to check what is stored).
async fn setup(test: &str) -> (S3Proxy, Arc<dyn ObjectStore>, Arc<dyn ObjectStore>, String) {
    let prefix = common::unique_name(test);
    let proxy = S3Proxy::start(&common::s3_endpoint()).await;
    let store = lake_store(&proxy.endpoint, &prefix);
    let direct = lake_store(&common::s3_endpoint(), &prefix);
    (proxy, store, direct, prefix)
}

/// An error with its sources, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn create() -> PutOptions {
    PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    }
}

async fn read(store: &Arc<dyn ObjectStore>, path: &ObjectPath) -> Vec<u8> {
    store
        .get(path)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{}",
                common::unreachable("S3-API server", "TIDEWATER_S3_ENDPOINT", e)
            )
        })
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

async fn list(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

/// The statuses the server answered to the requests with this method whose
/// target contains `part` (`None`: not forwarded or unanswered).
fn upstream_statuses(proxy: &S3Proxy, method: &str, part: &str) -> Vec<Option<u16>> {
    proxy
        .requests_matching(method, part)
        .iter()
        .map(|e| e.upstream_status)
        .collect()
}

#[tokio::test]
async fn put_503_is_retried_and_the_object_stored_once() {
    let (proxy, store, direct, _) = setup("f6put503").await;
    let path = ObjectPath::from("data/part-0.parquet");
    proxy.inject(
        Fault::new(FaultKind::Status(503))
            .method("PUT")
            .path_contains("part-0.parquet"),
    );

    let started = Instant::now();
    store
        .put(&path, PutPayload::from_static(b"rows"))
        .await
        .unwrap();

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(proxy.injected(), 1);
    let puts = proxy.requests_matching("PUT", "part-0.parquet");
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert_eq!(puts[0].fault, Some(FaultKind::Status(503)));
    assert_eq!(
        upstream_statuses(&proxy, "PUT", "part-0.parquet"),
        [None, Some(200)]
    );
    assert_eq!(list(&direct).await, ["data/part-0.parquet"]);
    assert_eq!(read(&direct, &path).await, b"rows");
}

#[tokio::test]
async fn put_if_absent_503_is_retried_too() {
    let (proxy, store, direct, _) = setup("f6create503").await;
    let path = ObjectPath::from(".hoodie/1.commit");
    proxy.inject(
        Fault::new(FaultKind::Status(503))
            .method("PUT")
            .path_contains("1.commit")
            .times(2),
    );

    store
        .put_opts(&path, PutPayload::from_static(b"commit"), create())
        .await
        .unwrap();

    assert_eq!(proxy.injected(), 2);
    assert_eq!(
        upstream_statuses(&proxy, "PUT", "1.commit"),
        [None, None, Some(200)]
    );
    assert_eq!(read(&direct, &path).await, b"commit");
}

#[tokio::test]
async fn list_500_is_retried() {
    let (proxy, store, _, _) = setup("f6list500").await;
    for name in ["a", "b"] {
        store
            .put(&ObjectPath::from(name), PutPayload::from_static(b"x"))
            .await
            .unwrap();
    }
    proxy.inject(
        Fault::new(FaultKind::Status(500))
            .method("GET")
            .query_contains("list-type=2"),
    );

    assert_eq!(list(&store).await, ["a", "b"]);

    assert_eq!(proxy.injected(), 1);
    assert_eq!(
        upstream_statuses(&proxy, "GET", "list-type=2"),
        [None, Some(200)]
    );
}

#[tokio::test]
async fn list_500_that_persists_surfaces_after_max_retries() {
    let prefix = common::unique_name("f6list500x");
    let proxy = S3Proxy::start(&common::s3_endpoint()).await;
    let store = tuned_store(
        &proxy.endpoint,
        &prefix,
        ClientOptions::new(),
        quick_retry(),
    );
    proxy.inject(
        Fault::new(FaultKind::Status(500))
            .method("GET")
            .query_contains("list-type=2")
            .times(100),
    );

    let error = store
        .list(None)
        .try_collect::<Vec<_>>()
        .await
        .expect_err("a list that keeps failing");

    // 1 attempt + max_retries (2), then the 500 comes back as a generic error.
    assert_eq!(proxy.injected(), 3);
    assert!(
        matches!(error, object_store::Error::Generic { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("500"), "{message}");
    assert!(message.contains("after 2 retries"), "{message}");
}

/// The case the lake writer must handle. The server stores the commit file,
/// its answer is lost (connection closed), object_store retries the
/// put-if-absent because a connection closed before any answer counts as "not
/// sent", the retry meets the object the first attempt stored and gets 412,
/// and the caller is told `AlreadyExists` although nobody else wrote it.
/// Reading the object back and comparing it with what was written tells the
/// two cases apart.
#[tokio::test]
async fn put_if_absent_whose_answer_is_lost_reports_already_exists() {
    let (proxy, store, direct, _) = setup("f6createdrop").await;
    let path = ObjectPath::from(".hoodie/20260101000000000.commit");
    proxy.inject(
        Fault::new(FaultKind::StoreThenDrop)
            .method("PUT")
            .path_contains(".commit"),
    );

    let ours = b"commit written by this writer";
    let started = Instant::now();
    let error = store
        .put_opts(&path, PutPayload::from_static(ours), create())
        .await
        .expect_err("the retry meets the stored object");

    // Default settings: the retry follows after the first backoff (100 ms).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(error, object_store::Error::AlreadyExists { .. }),
        "{error:?}"
    );
    assert_eq!(proxy.injected(), 1);
    assert_eq!(
        upstream_statuses(&proxy, "PUT", ".commit"),
        [Some(200), Some(412)]
    );
    // The writer's recovery: the stored content is ours, so the commit stands.
    assert_eq!(read(&store, &path).await, ours);
    assert_eq!(read(&direct, &path).await, ours);

    // A genuine conflict looks the same to the caller but reads back different.
    let theirs = b"commit written by another writer";
    let error = store
        .put_opts(&path, PutPayload::from_static(theirs), create())
        .await
        .expect_err("the object exists");
    assert!(matches!(error, object_store::Error::AlreadyExists { .. }));
    assert_ne!(read(&store, &path).await, theirs);
}

/// A reset instead of a clean close: object_store does not retry a
/// put-if-absent on a reset (not idempotent) and reports a generic error,
/// although the object is stored.
#[tokio::test]
async fn put_if_absent_reset_after_store_fails_with_the_object_stored() {
    let (proxy, store, direct, _) = setup("f6createreset").await;
    let path = ObjectPath::from(".hoodie/2.commit");
    proxy.inject(
        Fault::new(FaultKind::StoreThenReset)
            .method("PUT")
            .path_contains("2.commit"),
    );

    let error = store
        .put_opts(&path, PutPayload::from_static(b"mine"), create())
        .await
        .expect_err("a reset put-if-absent is not retried");

    assert!(
        matches!(error, object_store::Error::Generic { .. }),
        "{error:?}"
    );
    assert!(chain(&error).contains("reset by peer"), "{}", chain(&error));
    assert_eq!(upstream_statuses(&proxy, "PUT", "2.commit"), [Some(200)]);
    assert_eq!(read(&direct, &path).await, b"mine");
}

/// An overwrite PUT is idempotent to object_store: a reset is retried and the
/// put succeeds (the object is written twice with the same content).
#[tokio::test]
async fn overwrite_put_reset_after_store_is_retried() {
    let (proxy, store, direct, _) = setup("f6putreset").await;
    let path = ObjectPath::from("data/part-1.parquet");
    proxy.inject(
        Fault::new(FaultKind::StoreThenReset)
            .method("PUT")
            .path_contains("part-1"),
    );

    store
        .put(&path, PutPayload::from_static(b"rows"))
        .await
        .unwrap();

    assert_eq!(proxy.injected(), 1);
    assert_eq!(
        upstream_statuses(&proxy, "PUT", "part-1"),
        [Some(200), Some(200)]
    );
    assert_eq!(read(&direct, &path).await, b"rows");
}

/// 6 MiB in two parts (5 MiB + 1 MiB), then completion.
async fn upload_multipart(
    store: &Arc<dyn ObjectStore>,
    path: &ObjectPath,
) -> object_store::Result<Vec<u8>> {
    let data: Vec<u8> = (0..6 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let mut upload = store.put_multipart(path).await?;
    let (first, second) = data.split_at(5 * 1024 * 1024);
    upload.put_part(PutPayload::from(first.to_vec())).await?;
    upload.put_part(PutPayload::from(second.to_vec())).await?;
    upload.complete().await?;
    Ok(data)
}

#[tokio::test]
async fn multipart_complete_503_is_retried() {
    let (proxy, store, direct, _) = setup("f6mp503").await;
    let path = ObjectPath::from("data/big.parquet");
    proxy.inject(
        Fault::new(FaultKind::Status(503))
            .method("POST")
            .query_contains("uploadId="),
    );

    let data = upload_multipart(&store, &path).await.unwrap();

    assert_eq!(proxy.injected(), 1);
    assert_eq!(
        upstream_statuses(&proxy, "POST", "uploadId="),
        [None, Some(200)]
    );
    assert_eq!(read(&direct, &path).await, data);
}

/// The completion is carried out but its answer lost: object_store retries
/// the completion (it is idempotent to object_store) on an upload the server
/// has already completed, and SeaweedFS answers that retry with 200 again, so
/// the upload succeeds. (AWS S3 also answers a repeated completion with 200
/// for a while; a server that answered `NoSuchUpload` would surface here as
/// `Error::NotFound` with the object stored.)
#[tokio::test]
async fn multipart_complete_whose_answer_is_lost_is_retried() {
    let (proxy, store, direct, _) = setup("f6mpdrop").await;
    let path = ObjectPath::from("data/big.parquet");
    proxy.inject(
        Fault::new(FaultKind::StoreThenDrop)
            .method("POST")
            .query_contains("uploadId="),
    );

    let data = upload_multipart(&store, &path).await.unwrap();

    assert_eq!(proxy.injected(), 1);
    assert_eq!(
        upstream_statuses(&proxy, "POST", "uploadId="),
        [Some(200), Some(200)]
    );
    assert_eq!(read(&direct, &path).await, data);
}

/// The answer held past the client's request timeout (default 30 s; 2 s
/// here). The overwrite PUT is retried after the timeout and succeeds; the
/// put-if-absent is not retried and fails although the server stored it.
#[tokio::test]
async fn timeout_after_store_with_a_short_request_timeout() {
    let prefix = common::unique_name("f6timeout");
    let proxy = S3Proxy::start(&common::s3_endpoint()).await;
    let client = ClientOptions::new().with_timeout(Duration::from_secs(2));
    let store = tuned_store(&proxy.endpoint, &prefix, client, RetryConfig::default());
    let direct = lake_store(&common::s3_endpoint(), &prefix);
    let hang = FaultKind::Delay(Duration::from_secs(600));

    let path = ObjectPath::from("data/part-2.parquet");
    proxy.inject(Fault::new(hang).method("PUT").path_contains("part-2"));
    let started = Instant::now();
    store
        .put(&path, PutPayload::from_static(b"rows"))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );
    assert_eq!(
        upstream_statuses(&proxy, "PUT", "part-2"),
        [Some(200), Some(200)]
    );

    let path = ObjectPath::from(".hoodie/3.commit");
    proxy.inject(Fault::new(hang).method("PUT").path_contains("3.commit"));
    let started = Instant::now();
    let error = store
        .put_opts(&path, PutPayload::from_static(b"mine"), create())
        .await
        .expect_err("a timed-out put-if-absent is not retried");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );
    assert!(
        matches!(error, object_store::Error::Generic { .. }),
        "{error:?}"
    );
    assert!(chain(&error).contains("timed out"), "{}", chain(&error));
    assert_eq!(upstream_statuses(&proxy, "PUT", "3.commit"), [Some(200)]);
    assert_eq!(read(&direct, &path).await, b"mine");
    assert_eq!(proxy.injected(), 2);
}

/// The proxy itself: a chunked request body and two requests on one
/// keep-alive connection.
#[tokio::test]
async fn proxy_relays_chunked_bodies_on_a_kept_alive_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = S3Proxy::start(&common::s3_endpoint()).await;
    let address = proxy.endpoint.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&address).await.unwrap();
    let bucket = common::s3_bucket();
    let key = common::unique_name("f6chunked");
    let requests = format!(
        "PUT /{bucket}/{key} HTTP/1.1\r\nHost: {address}\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n\
         GET /{bucket}/{key} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(requests.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();

    // Unsigned, so the server refuses both; what matters is that both answers
    // come back on the one connection.
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "{answer}");
    let log = proxy.requests();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        (log[0].method.as_str(), log[0].path()),
        ("PUT", format!("/{bucket}/{key}").as_str())
    );
    assert_eq!(log[1].method, "GET");
    assert!(log.iter().all(|e| e.upstream_status.is_some()), "{log:?}");
    assert_eq!(proxy.injected(), 0);
}
