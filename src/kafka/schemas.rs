//! Where the schemas of change events live, so that every consumer can decode
//! every event it reads.
//!
//! - With `kafka.schema_registry`: a Confluent-compatible registry, subjects
//!   `<topic>-key` and `<topic>-value`, Confluent wire framing.
//! - Without: the `_tidewater_schemas` topic (one partition, compacted). Each
//!   message's key is the schema fingerprint in hex, its value
//!   `{"subject": "<topic>-value", "schema": "<Avro schema JSON>"}`. A producer
//!   publishes a schema, and waits for the broker to acknowledge it, before
//!   the first event that uses it; so a consumer that meets an unknown
//!   fingerprint finds it by reading that topic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value as Json;

use super::avro::framing::{SchemaRef, fingerprint};
use super::registry::{RegistryClient, RegistryError};
use crate::config::model::KafkaConfig;

/// The topic schemas are published to when no registry is configured.
pub const SCHEMAS_TOPIC: &str = "_tidewater_schemas";

#[derive(Debug, thiserror::Error)]
pub enum SchemaStoreError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot publish schema {fingerprint} to {SCHEMAS_TOPIC}: {reason}")]
    Publish { fingerprint: String, reason: String },
    #[error("cannot read {SCHEMAS_TOPIC}: {0}")]
    Read(String),
    #[error(
        "schema {0} is not in {SCHEMAS_TOPIC}: the message was written by another producer or the topic lost data"
    )]
    NotFound(String),
    #[error("a message carries a registry schema id but no schema_registry is configured")]
    NoRegistry,
    #[error("a message carries a fingerprint but the pipeline uses a schema registry")]
    NotFingerprint,
}

impl SchemaStoreError {
    pub fn is_retryable(&self) -> bool {
        match self {
            SchemaStoreError::Registry(e) => e.is_retryable(),
            SchemaStoreError::Publish { .. } | SchemaStoreError::Read(_) => true,
            _ => false,
        }
    }
}

/// Registers and resolves schemas; cheap to clone.
#[derive(Clone)]
pub enum SchemaStore {
    Registry(RegistryClient),
    Topic(Arc<TopicSchemas>),
}

impl SchemaStore {
    pub fn new(kafka: &KafkaConfig) -> Result<SchemaStore, SchemaStoreError> {
        match &kafka.schema_registry {
            Some(registry) => Ok(SchemaStore::Registry(RegistryClient::new(registry)?)),
            None => Ok(SchemaStore::Topic(Arc::new(TopicSchemas::new(
                super::client::client_config(kafka),
            )))),
        }
    }

    /// Makes `schema` resolvable under the returned reference.
    pub async fn register(
        &self,
        subject: &str,
        schema: &Json,
    ) -> Result<SchemaRef, SchemaStoreError> {
        match self {
            SchemaStore::Registry(r) => Ok(SchemaRef::Registry(r.register(subject, schema).await?)),
            SchemaStore::Topic(t) => t.publish(subject, schema).await,
        }
    }

    pub async fn lookup(&self, reference: SchemaRef) -> Result<Arc<Json>, SchemaStoreError> {
        match (self, reference) {
            (SchemaStore::Registry(r), SchemaRef::Registry(id)) => Ok(r.schema(id).await?),
            (SchemaStore::Topic(t), SchemaRef::Fingerprint(fp)) => t.lookup(fp).await,
            (SchemaStore::Registry(_), SchemaRef::Fingerprint(_)) => {
                Err(SchemaStoreError::NotFingerprint)
            }
            (SchemaStore::Topic(_), SchemaRef::Registry(_)) => Err(SchemaStoreError::NoRegistry),
        }
    }
}

/// The `_tidewater_schemas` topic.
pub struct TopicSchemas {
    client: ClientConfig,
    producer: Mutex<Option<FutureProducer>>,
    known: Mutex<HashMap<u64, Arc<Json>>>,
    published: Mutex<std::collections::HashSet<u64>>,
}

impl TopicSchemas {
    pub fn new(client: ClientConfig) -> TopicSchemas {
        TopicSchemas {
            client,
            producer: Mutex::new(None),
            known: Mutex::new(HashMap::new()),
            published: Mutex::new(Default::default()),
        }
    }

    fn producer(&self) -> Result<FutureProducer, SchemaStoreError> {
        let mut guard = self
            .producer
            .lock()
            .map_err(|_| SchemaStoreError::Read("lock poisoned".into()))?;
        if let Some(p) = guard.as_ref() {
            return Ok(p.clone());
        }
        let p =
            super::state::acked_producer(&self.client).map_err(|e| SchemaStoreError::Publish {
                fingerprint: "-".into(),
                reason: e.to_string(),
            })?;
        *guard = Some(p.clone());
        Ok(p)
    }

    async fn ensure_topic(&self) -> Result<(), String> {
        super::topic::ensure_topic_with(
            &self.client,
            SCHEMAS_TOPIC,
            1,
            -1,
            &[("cleanup.policy", "compact")],
        )
        .await
    }

    async fn publish(&self, subject: &str, schema: &Json) -> Result<SchemaRef, SchemaStoreError> {
        let text = schema.to_string();
        let fp = fingerprint(text.as_bytes());
        let reference = SchemaRef::Fingerprint(fp);
        if self
            .published
            .lock()
            .map(|p| p.contains(&fp))
            .unwrap_or(false)
        {
            return Ok(reference);
        }
        let fail = |reason: String| SchemaStoreError::Publish {
            fingerprint: reference.hex(),
            reason,
        };
        self.ensure_topic().await.map_err(fail)?;
        let value = serde_json::json!({"subject": subject, "schema": text}).to_string();
        let key = reference.hex();
        self.producer()?
            .send(
                FutureRecord::to(SCHEMAS_TOPIC).key(&key).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| fail(e.to_string()))?;
        if let Ok(mut p) = self.published.lock() {
            p.insert(fp);
        }
        if let Ok(mut k) = self.known.lock() {
            k.insert(fp, Arc::new(schema.clone()));
        }
        Ok(reference)
    }

    async fn lookup(&self, fp: u64) -> Result<Arc<Json>, SchemaStoreError> {
        if let Some(s) = self.known.lock().ok().and_then(|k| k.get(&fp).cloned()) {
            return Ok(s);
        }
        let client = self.client.clone();
        let found = tokio::task::spawn_blocking(move || read_all(&client))
            .await
            .map_err(|e| SchemaStoreError::Read(e.to_string()))??;
        let mut known = self
            .known
            .lock()
            .map_err(|_| SchemaStoreError::Read("lock poisoned".into()))?;
        for (fp, schema) in found {
            known.entry(fp).or_insert(schema);
        }
        known
            .get(&fp)
            .cloned()
            .ok_or_else(|| SchemaStoreError::NotFound(SchemaRef::Fingerprint(fp).hex()))
    }
}

/// Reads the whole schemas topic (blocking).
fn read_all(client: &ClientConfig) -> Result<Vec<(u64, Arc<Json>)>, SchemaStoreError> {
    let entries = super::state::read_topic(client, SCHEMAS_TOPIC)
        .map_err(|e| SchemaStoreError::Read(e.to_string()))?;
    Ok(entries
        .iter()
        .filter_map(|(k, v)| parse_entry(k.as_deref(), v.as_deref()))
        .collect())
}

fn parse_entry(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<(u64, Arc<Json>)> {
    let key = std::str::from_utf8(key?).ok()?;
    let bytes: Vec<u8> = (0..key.len())
        .step_by(2)
        .map(|i| {
            key.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()?;
    let fp = u64::from_le_bytes(bytes.try_into().ok()?);
    let value: Json = serde_json::from_slice(value?).ok()?;
    let text = value.get("schema")?.as_str()?;
    // The fingerprint is over the text: refuse an entry whose text does not
    // match its key instead of decoding with a wrong schema.
    if fingerprint(text.as_bytes()) != fp {
        return None;
    }
    Some((fp, Arc::new(serde_json::from_str(text).ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_must_match_their_fingerprint() {
        let text = r#"{"type":"string"}"#;
        let fp = fingerprint(text.as_bytes());
        let key = SchemaRef::Fingerprint(fp).hex();
        let value = serde_json::json!({"subject": "s", "schema": text}).to_string();
        let (got, schema) = parse_entry(Some(key.as_bytes()), Some(value.as_bytes())).unwrap();
        assert_eq!(got, fp);
        assert_eq!(*schema, serde_json::json!({"type": "string"}));
        let forged =
            serde_json::json!({"subject": "s", "schema": r#"{"type":"long"}"#}).to_string();
        assert!(parse_entry(Some(key.as_bytes()), Some(forged.as_bytes())).is_none());
        assert!(parse_entry(Some(b"zz"), Some(value.as_bytes())).is_none());
    }
}
