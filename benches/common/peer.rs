//! The Kafka peer of the benchmarks: a plain librdkafka producer sending
//! pre-encoded messages with the same settings tidewater uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};

use tidewater::config::model::KafkaConfig;
use tidewater::kafka::client::client_config;
use tidewater::kafka::producer::THROUGHPUT_DEFAULTS;

struct Counting(Arc<AtomicU64>, Arc<AtomicU64>);
impl ClientContext for Counting {}
impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if r.is_ok() {
            self.0.fetch_add(1, Ordering::Relaxed);
        } else {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn create_topic(kafka: &KafkaConfig, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka).create().unwrap();
    admin
        .create_topics(
            &[NewTopic::new(
                topic,
                kafka.topic_partitions as i32,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap();
}

/// Sends pre-encoded messages to a new topic with a plain librdkafka
/// producer (idempotent, acks=all, zstd, tidewater's batching defaults);
/// seconds until all are acknowledged.
pub async fn run_peer(kafka: &KafkaConfig, topic: &str, prepared: &[(Vec<u8>, Vec<u8>)]) -> f64 {
    create_topic(kafka, topic).await;
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut config = client_config(kafka);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "zstd")
        .set("partitioner", "murmur2_random");
    for (k, v) in THROUGHPUT_DEFAULTS {
        config.set(k, v);
    }
    let peer: ThreadedProducer<Counting> = config
        .create_with_context(Counting(ok.clone(), failed.clone()))
        .unwrap();
    let start = Instant::now();
    for (k, v) in prepared {
        let mut record = BaseRecord::to(topic)
            .key(k.as_slice())
            .payload(v.as_slice());
        loop {
            match peer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    let total = prepared.len() as u64;
    while ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "peer deliveries failed");
    start.elapsed().as_secs_f64()
}
