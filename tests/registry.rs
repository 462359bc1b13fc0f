//! The Schema Registry client and the Confluent wire framing.
//!
//! No Confluent-compatible registry can be installed on these machines
//! (Confluent's is a JVM service, Karapace is not on the package index), so
//! this test runs the client against a small in-process HTTP server that
//! answers the documented REST calls the client makes (`POST
//! /subjects/{subject}/versions`, `GET /schemas/ids/{id}`) with the
//! documented status codes, including 409 for an incompatible schema. It
//! checks the client's side of the contract, not a registry implementation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test glue"
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use tidewater::config::model::{KafkaConfig, SchemaRegistryConfig, Secret};
use tidewater::event::change::Position;
use tidewater::event::sample::{self, Rng};
use tidewater::event::table_id::TableId;
use tidewater::kafka::avro::framing::SchemaRef;
use tidewater::kafka::avro::schema::Connector;
use tidewater::kafka::consumer::{Decoded, EventDecoder};
use tidewater::kafka::producer::{EventSerializer, ProduceError};
use tidewater::kafka::registry::RegistryError;
use tidewater::kafka::schemas::{SchemaStore, SchemaStoreError};

#[derive(Default)]
struct Registry {
    schemas: Vec<String>,
    subjects: HashMap<String, Vec<usize>>,
    auth_seen: Vec<String>,
}

fn fields_of(schema: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(schema).unwrap();
    let row = v["fields"][0]["type"][1]["fields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    row.iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

/// Answers one request; returns (status, body).
fn answer(
    reg: &Mutex<Registry>,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let mut reg = reg.lock().unwrap();
    if let Some(auth) = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
    {
        reg.auth_seen.push(auth.to_string());
    }
    if method == "POST"
        && let Some(subject) = path
            .strip_prefix("/subjects/")
            .and_then(|p| p.strip_suffix("/versions"))
    {
        let req: serde_json::Value = serde_json::from_str(body).unwrap();
        let schema = req["schema"].as_str().unwrap().to_string();
        // Compatibility: a value schema may not drop a row field.
        if subject.ends_with("-value")
            && let Some(last) = reg.subjects.get(subject).and_then(|v| v.last())
        {
            let old = fields_of(&reg.schemas[*last]);
            let new = fields_of(&schema);
            if let Some(dropped) = old.iter().find(|f| !new.contains(f)) {
                return (
                    409,
                    format!(
                        r#"{{"error_code":409,"message":"Schema being registered is incompatible with an earlier schema for subject \"{subject}\": field {dropped} removed"}}"#
                    ),
                );
            }
        }
        let id = match reg.schemas.iter().position(|s| *s == schema) {
            Some(i) => i,
            None => {
                reg.schemas.push(schema);
                reg.schemas.len() - 1
            }
        };
        reg.subjects
            .entry(subject.to_string())
            .or_default()
            .push(id);
        return (200, format!(r#"{{"id":{}}}"#, id + 1));
    }
    if method == "GET"
        && let Some(id) = path
            .strip_prefix("/schemas/ids/")
            .and_then(|i| i.parse::<usize>().ok())
    {
        return match reg.schemas.get(id.wrapping_sub(1)) {
            Some(s) => (200, serde_json::json!({ "schema": s }).to_string()),
            None => (
                404,
                r#"{"error_code":40403,"message":"Schema not found"}"#.to_string(),
            ),
        };
    }
    (
        404,
        r#"{"error_code":404,"message":"not found"}"#.to_string(),
    )
}

async fn serve() -> (String, Arc<Mutex<Registry>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let reg = Arc::new(Mutex::new(Registry::default()));
    let state = reg.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let state = state.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(head_end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let head = &text[..head_end];
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() < head_end + 4 + length {
                        continue;
                    }
                    let body = text[head_end + 4..head_end + 4 + length].to_string();
                    let mut parts = head.lines().next().unwrap().split(' ');
                    let (method, path) = (parts.next().unwrap(), parts.next().unwrap());
                    let (status, reply) = answer(&state, method, path, head, &body);
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{reply}",
                        reply.len()
                    );
                    sock.write_all(response.as_bytes()).await.unwrap();
                    buf.drain(..head_end + 4 + length);
                }
            });
        }
    });
    (url, reg)
}

#[tokio::test]
async fn events_use_registry_ids_and_decode_back() {
    let (url, reg) = serve().await;
    let mut kafka = KafkaConfig::with_brokers("127.0.0.1:1");
    kafka.schema_registry = Some(SchemaRegistryConfig {
        url,
        username: Some("svc".into()),
        password: Some(Secret::new("pw")),
    });
    let store = SchemaStore::new(&kafka).unwrap();
    let mut serializer = EventSerializer::new(store, Connector::Postgres, "shop");
    let table = Arc::new(sample::all_types_table(TableId::new("public", "orders")));
    let mut rng = Rng::new(5);
    let event = sample::event(&mut rng, &table, Position::new(9, 0));
    let entry = serializer.prepare(&table).await.unwrap().clone();
    assert_eq!(entry.key_ref, SchemaRef::Registry(1));
    assert_eq!(entry.value_ref, SchemaRef::Registry(2));
    let (mut key, mut value) = (Vec::new(), Vec::new());
    serializer
        .encode(&entry, &event, &mut key, &mut value)
        .unwrap();
    assert_eq!(
        &value[..5],
        &[0, 0, 0, 0, 2],
        "Confluent framing: magic 0, id 2"
    );
    assert_eq!(&key[..5], &[0, 0, 0, 0, 1]);
    {
        let reg = reg.lock().unwrap();
        assert_eq!(reg.subjects.keys().len(), 2);
        assert!(reg.subjects.contains_key("shop.public.orders-key"));
        assert!(reg.subjects.contains_key("shop.public.orders-value"));
        assert!(
            reg.auth_seen.iter().all(|a| a.contains("Basic c3ZjOnB3")),
            "basic auth svc:pw"
        );
    }

    // A decoder with its own client resolves ids through the registry.
    let mut decoder = EventDecoder::new(SchemaStore::new(&kafka).unwrap());
    match decoder
        .decode("shop.public.orders", 0, 1, Some(&key), Some(&value))
        .await
        .unwrap()
    {
        Decoded::Event(e) => assert_eq!(e, event),
        other => panic!("{other:?}"),
    }
    // An unknown id is a clear, non-retryable error.
    let mut bogus = value.clone();
    bogus[4] = 99;
    let err = decoder
        .decode("t", 0, 2, Some(&key), Some(&bogus))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("schema id 99 is unknown"), "{err}");
}

#[tokio::test]
async fn an_incompatible_schema_is_refused_with_the_registry_reason() {
    let (url, _reg) = serve().await;
    let mut kafka = KafkaConfig::with_brokers("127.0.0.1:1");
    kafka.schema_registry = Some(SchemaRegistryConfig {
        url,
        username: None,
        password: None,
    });
    let mut serializer = EventSerializer::new(
        SchemaStore::new(&kafka).unwrap(),
        Connector::Postgres,
        "shop",
    );
    let table = Arc::new(sample::all_types_table(TableId::new("public", "orders")));
    serializer.prepare(&table).await.unwrap();
    let mut narrower = (*table).clone();
    narrower.columns.truncate(3);
    let err = serializer.prepare(&Arc::new(narrower)).await.unwrap_err();
    match &err {
        ProduceError::SchemaStore(SchemaStoreError::Registry(RegistryError::Incompatible {
            subject,
            message,
        })) => {
            assert_eq!(subject, "shop.public.orders-value");
            assert!(message.contains("removed"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("the table stops here"), "{err}");
}
