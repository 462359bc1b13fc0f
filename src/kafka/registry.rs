//! A client for Confluent-compatible Schema Registries (Confluent, Karapace,
//! Apicurio's ccompat API, Redpanda): register `<topic>-key` and
//! `<topic>-value` subjects, fetch schemas by id, cache both directions.
//!
//! A registry refusing a schema as incompatible (HTTP 409) is an error that
//! names the subject and carries the registry's own explanation: a schema
//! change the subject's compatibility rule forbids must stop the table, not be
//! retried forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value as Json;

use crate::config::model::SchemaRegistryConfig;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry at {url}: cannot connect: {source}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "schema registry refused the new schema of subject `{subject}` as incompatible with its compatibility rule ({message}); the table stops here: align the subject's compatibility level or the table change"
    )]
    Incompatible { subject: String, message: String },
    #[error("schema registry refused the schema of subject `{subject}` as invalid: {message}")]
    Invalid { subject: String, message: String },
    #[error("schema registry: schema id {0} is unknown")]
    UnknownId(u32),
    #[error("schema registry answered {status} to {what}: {message}")]
    Status {
        status: u16,
        what: String,
        message: String,
    },
    #[error("schema registry answered {what} with something that is not the expected JSON")]
    Body { what: String },
}

impl RegistryError {
    /// Whether retrying may help (the registry was unreachable or overloaded).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Connect { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

#[derive(Default)]
struct Cache {
    ids: HashMap<(String, String), u32>,
    schemas: HashMap<u32, Arc<Json>>,
}

/// A registry client; cheap to clone.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
    cache: Arc<Mutex<Cache>>,
}

impl RegistryClient {
    pub fn new(cfg: &SchemaRegistryConfig) -> Result<RegistryClient, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| RegistryError::Connect {
                url: cfg.url.clone(),
                source,
            })?;
        Ok(RegistryClient {
            http,
            base: cfg.url.trim_end_matches('/').to_string(),
            auth: cfg.username.clone().map(|u| {
                (
                    u,
                    cfg.password
                        .as_ref()
                        .map(|p| p.expose().to_string())
                        .unwrap_or_default(),
                )
            }),
            cache: Arc::new(Mutex::new(Cache::default())),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(
                "Accept",
                "application/vnd.schemaregistry.v1+json, application/json",
            );
        if let Some((user, password)) = &self.auth {
            rb = rb.basic_auth(user, Some(password));
        }
        rb
    }

    /// Registers `schema` under `subject` (idempotent on the registry side)
    /// and returns its id.
    pub async fn register(&self, subject: &str, schema: &Json) -> Result<u32, RegistryError> {
        let text = schema.to_string();
        let cache_key = (subject.to_string(), text.clone());
        if let Ok(cache) = self.cache.lock()
            && let Some(id) = cache.ids.get(&cache_key)
        {
            return Ok(*id);
        }
        let what = format!("registering subject `{subject}`");
        let body = serde_json::json!({ "schema": text, "schemaType": "AVRO" });
        let response = self
            .request(
                reqwest::Method::POST,
                &format!("/subjects/{}/versions", urlencode(subject)),
            )
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|source| RegistryError::Connect {
                url: self.base.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        let reply: Json = response
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Json::Null);
        let message = reply
            .get("message")
            .and_then(Json::as_str)
            .unwrap_or("no message")
            .to_string();
        match status {
            200 => {
                let id = reply
                    .get("id")
                    .and_then(Json::as_u64)
                    .and_then(|i| u32::try_from(i).ok())
                    .ok_or(RegistryError::Body { what })?;
                if let Ok(mut cache) = self.cache.lock() {
                    cache.ids.insert(cache_key, id);
                    cache.schemas.insert(id, Arc::new(schema.clone()));
                }
                Ok(id)
            }
            409 => Err(RegistryError::Incompatible {
                subject: subject.to_string(),
                message,
            }),
            422 => Err(RegistryError::Invalid {
                subject: subject.to_string(),
                message,
            }),
            _ => Err(RegistryError::Status {
                status,
                what,
                message,
            }),
        }
    }

    /// The schema with `id`, from the cache or the registry.
    pub async fn schema(&self, id: u32) -> Result<Arc<Json>, RegistryError> {
        if let Ok(cache) = self.cache.lock()
            && let Some(s) = cache.schemas.get(&id)
        {
            return Ok(s.clone());
        }
        let what = format!("fetching schema id {id}");
        let response = self
            .request(reqwest::Method::GET, &format!("/schemas/ids/{id}"))
            .send()
            .await
            .map_err(|source| RegistryError::Connect {
                url: self.base.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        let reply: Json = response
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Json::Null);
        match status {
            200 => {
                let text = reply
                    .get("schema")
                    .and_then(Json::as_str)
                    .ok_or_else(|| RegistryError::Body { what: what.clone() })?;
                let schema: Json =
                    serde_json::from_str(text).map_err(|_| RegistryError::Body { what })?;
                let schema = Arc::new(schema);
                if let Ok(mut cache) = self.cache.lock() {
                    cache.schemas.insert(id, schema.clone());
                }
                Ok(schema)
            }
            404 => Err(RegistryError::UnknownId(id)),
            _ => Err(RegistryError::Status {
                status,
                what,
                message: reply
                    .get("message")
                    .and_then(Json::as_str)
                    .unwrap_or("no message")
                    .to_string(),
            }),
        }
    }
}

/// Percent-encodes a subject for a URL path.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_encoded_for_paths() {
        assert_eq!(
            urlencode("shop.public.orders-value"),
            "shop.public.orders-value"
        );
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
    }
}
