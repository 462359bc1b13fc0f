//! The four real services the project's harness starts, each exercised once:
//! Postgres (configured for logical replication), MariaDB (row binlog with
//! GTIDs), the Kafka-API broker (topic, idempotent produce, group consume) and
//! the S3-API server (conditional PUT, which lake commits depend on).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test glue"
)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

use tidewater::config::model::{LakeConfig, S3Config, Secret};

#[tokio::test]
async fn postgres_is_configured_for_logical_replication() {
    let url = common::pg_url();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{}", common::unreachable("Postgres", "TIDEWATER_PG_URL", e)));
    tokio::spawn(connection);

    let wal_level: String = client
        .query_one("SHOW wal_level", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(wal_level, "logical");
    let slots: String = client
        .query_one("SHOW max_replication_slots", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        slots.parse::<u32>().unwrap() >= 16,
        "max_replication_slots = {slots}"
    );
    let can_replicate: bool = client
        .query_one(
            "SELECT rolreplication FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(can_replicate, "the test role needs REPLICATION");

    let schema = common::unique_name("svc");
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id bigint PRIMARY KEY, v text);
             INSERT INTO {schema}.t VALUES (1, 'one'), (2, 'two');"
        ))
        .await
        .unwrap();
    let rows = client
        .query(&format!("SELECT id, v FROM {schema}.t ORDER BY id"), &[])
        .await
        .unwrap();
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, "one".to_string()), (2, "two".to_string())]);
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn mariadb_writes_a_full_row_binlog_with_gtids() {
    let url = common::mysql_url();
    let opts = mysql_async::Opts::from_url(&url).unwrap();
    let mut conn = mysql_async::Conn::new(opts).await.unwrap_or_else(|e| {
        panic!(
            "{}",
            common::unreachable("MariaDB", "TIDEWATER_MYSQL_URL", e)
        )
    });

    let settings: Vec<(String, String)> = conn
        .query("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@gtid_strict_mode")
        .await
        .map(|rows: Vec<(String, String, String, String)>| {
            let (log_bin, format, image, strict) = rows.into_iter().next().unwrap();
            vec![
                ("log_bin".into(), log_bin),
                ("binlog_format".into(), format),
                ("binlog_row_image".into(), image),
                ("gtid_strict_mode".into(), strict),
            ]
        })
        .unwrap();
    assert_eq!(
        settings,
        vec![
            ("log_bin".to_string(), "1".to_string()),
            ("binlog_format".to_string(), "ROW".to_string()),
            ("binlog_row_image".to_string(), "FULL".to_string()),
            ("gtid_strict_mode".to_string(), "1".to_string()),
        ]
    );

    let db = common::unique_name("svc");
    conn.query_drop(format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (id BIGINT UNSIGNED PRIMARY KEY, v VARCHAR(10));
         INSERT INTO {db}.t VALUES (18446744073709551615, 'max'), (1, 'one');"
    ))
    .await
    .unwrap();
    let got: Vec<(u64, String)> = conn
        .query(format!("SELECT id, v FROM {db}.t ORDER BY id"))
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![(1, "one".to_string()), (u64::MAX, "max".to_string())]
    );
    // The insert went through the binlog under a GTID.
    let gtid: String = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    assert!(!gtid.is_empty(), "no GTID recorded");
    conn.query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn kafka_broker_round_trips_through_an_idempotent_producer_and_a_group() {
    let brokers = common::kafka_brokers();
    let topic = common::unique_name("svc");
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap_or_else(|e| panic!("{}", common::unreachable("Kafka broker", &brokers, e)));
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "zstd")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let n = 300;
    let mut deliveries = Vec::new();
    for i in 0..n {
        let key = format!("k{}", i % 10);
        let value = format!("v{i}");
        let record = FutureRecord::to(&topic).key(&key).payload(&value);
        deliveries.push(producer.send_result(record).unwrap());
    }
    for d in deliveries {
        d.await
            .unwrap()
            .unwrap_or_else(|(e, _)| panic!("delivery failed: {e}"));
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{topic}-group"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut seen = std::collections::BTreeMap::<String, Vec<u32>>::new();
    let mut stream = consumer.stream();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut count = 0;
    while count < n {
        let msg = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {count} of {n} messages consumed in 60 s"))
            .unwrap()
            .unwrap();
        let key = String::from_utf8(msg.key().unwrap().to_vec()).unwrap();
        let value = std::str::from_utf8(msg.payload().unwrap()).unwrap();
        seen.entry(key)
            .or_default()
            .push(value[1..].parse().unwrap());
        consumer.commit_message(&msg, CommitMode::Sync).unwrap();
        count += 1;
    }
    // Every message arrived once, and per key (one partition) in produce order.
    assert_eq!(seen.len(), 10);
    for (key, values) in &seen {
        let k: u32 = key[1..].parse().unwrap();
        let expected: Vec<u32> = (0..n).filter(|i| i % 10 == k).collect();
        assert_eq!(values, &expected, "key {key}");
    }
    // No topic deletion: tansu 0.6.0 deletes every topic of the cluster on
    // DeleteTopics, which would wipe the topics of tests running beside this
    // one. Unique names keep tests apart instead.
}

#[tokio::test]
async fn s3_server_honours_conditional_put() {
    let prefix = common::unique_name("svc");
    let mut lake = LakeConfig::with_uri(format!("s3://{}/{prefix}", common::s3_bucket()));
    lake.s3 = Some(S3Config {
        endpoint: Some(common::s3_endpoint()),
        region: Some(common::s3_region()),
        access_key_id: Some(common::s3_access_key_id()),
        secret_access_key: Some(Secret::new(common::s3_secret_access_key())),
        ..S3Config::default()
    });
    let store = tidewater::lake::store::open(&lake).unwrap();
    let path = ObjectPath::from(".hoodie/20260101000000000.commit");
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(&path, PutPayload::from_static(b"first"), create.clone())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{}",
                common::unreachable("S3 server", &common::s3_endpoint(), e)
            )
        });
    let second = store
        .put_opts(&path, PutPayload::from_static(b"second"), create)
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "a second put-if-absent must lose, got {second:?}"
    );
    let body: Bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(
        &body[..],
        b"first",
        "the first writer's object must survive"
    );

    // The object sits under the lake prefix in the bucket.
    let listed: Vec<_> = store
        .list(None)
        .map(|m| m.unwrap().location.to_string())
        .collect()
        .await;
    assert_eq!(listed, vec![".hoodie/20260101000000000.commit".to_string()]);
    store.delete(&path).await.unwrap();
}
