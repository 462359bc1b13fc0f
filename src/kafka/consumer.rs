//! Reading change events back: decoding any message of a tidewater topic into
//! a [`ChangeEvent`] (or a tombstone), with the schema each message names, and
//! a clear error for a message that does not decode.
//!
//! Decoding plans are cached per (key schema, value schema) pair, so a table
//! whose shape changed mid-topic decodes each message with the shape it was
//! written with.

use std::collections::HashMap;
use std::sync::Arc;

use super::avro::decode::{DecodeError, Plan};
use super::avro::framing::{FramingError, SchemaRef};
use super::schemas::{SchemaStore, SchemaStoreError};
use crate::event::change::ChangeEvent;
use crate::event::datum::Row;
use crate::event::schema::TableSchema;

/// What one Kafka message holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Event(ChangeEvent),
    /// A tombstone after a delete: the key, no value.
    Tombstone {
        table: Option<Arc<TableSchema>>,
        key: Option<Row>,
    },
}

/// Why a message could not be decoded; names topic, partition and offset.
#[derive(Debug, thiserror::Error)]
#[error("message {topic}/{partition}@{offset} does not decode: {reason}")]
pub struct Undecodable {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: UndecodableReason,
}

#[derive(Debug, thiserror::Error)]
pub enum UndecodableReason {
    #[error("{part}: {source}")]
    Framing {
        part: &'static str,
        #[source]
        source: FramingError,
    },
    #[error("its schema cannot be found: {0}")]
    Schema(#[source] SchemaStoreError),
    #[error("{0}")]
    Body(#[source] DecodeError),
    #[error("it has a value but no key")]
    NoKey,
}

impl Undecodable {
    /// A schema lookup that may work on retry (registry or broker down) is
    /// not a bad message.
    pub fn is_retryable(&self) -> bool {
        matches!(&self.reason, UndecodableReason::Schema(e) if e.is_retryable())
    }
}

/// Decodes messages, resolving and caching their schemas.
pub struct EventDecoder {
    store: SchemaStore,
    plans: HashMap<(SchemaRef, SchemaRef), Arc<Plan>>,
    /// Plans by key schema, to name the table of a tombstone.
    by_key: HashMap<SchemaRef, Arc<Plan>>,
    /// Plans by value schema, for keyless truncate events.
    by_value: HashMap<SchemaRef, Arc<Plan>>,
}

impl EventDecoder {
    pub fn new(store: SchemaStore) -> EventDecoder {
        EventDecoder {
            store,
            plans: HashMap::new(),
            by_key: HashMap::new(),
            by_value: HashMap::new(),
        }
    }

    async fn plan(
        &mut self,
        key: SchemaRef,
        value: SchemaRef,
    ) -> Result<Arc<Plan>, UndecodableReason> {
        if let Some(p) = self.plans.get(&(key, value)) {
            return Ok(p.clone());
        }
        let key_schema = self
            .store
            .lookup(key)
            .await
            .map_err(UndecodableReason::Schema)?;
        let value_schema = self
            .store
            .lookup(value)
            .await
            .map_err(UndecodableReason::Schema)?;
        let plan =
            Arc::new(Plan::new(Some(&key_schema), &value_schema).map_err(UndecodableReason::Body)?);
        self.plans.insert((key, value), plan.clone());
        self.by_key.insert(key, plan.clone());
        self.by_value.insert(value, plan.clone());
        Ok(plan)
    }

    /// Decodes one message.
    pub async fn decode(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<Decoded, Undecodable> {
        let wrap = |reason| Undecodable {
            topic: topic.to_string(),
            partition,
            offset,
            reason,
        };
        let key_part = match key {
            Some(k) => Some(SchemaRef::split(k).map_err(|source| {
                wrap(UndecodableReason::Framing {
                    part: "key",
                    source,
                })
            })?),
            None => None,
        };
        let Some(value) = value else {
            // A tombstone: decode the key if its table is known.
            let (table, key) =
                match key_part.and_then(|(r, body)| Some((self.by_key.get(&r)?.clone(), body))) {
                    Some((plan, body)) => (
                        Some(plan.table.clone()),
                        Some(
                            plan.decode_key(body)
                                .map_err(|e| wrap(UndecodableReason::Body(e)))?,
                        ),
                    ),
                    None => (None, None),
                };
            return Ok(Decoded::Tombstone { table, key });
        };
        let (value_ref, value_body) = SchemaRef::split(value).map_err(|source| {
            wrap(UndecodableReason::Framing {
                part: "value",
                source,
            })
        })?;
        let event = match key_part {
            Some((key_ref, _)) => {
                let plan = self.plan(key_ref, value_ref).await.map_err(wrap)?;
                plan.decode_value(value_body)
                    .map_err(|e| wrap(UndecodableReason::Body(e)))?
            }
            // Only a truncate has no key.
            None => {
                let plan = match self.by_value.get(&value_ref) {
                    Some(p) => p.clone(),
                    None => {
                        let value_schema = self
                            .store
                            .lookup(value_ref)
                            .await
                            .map_err(|e| wrap(UndecodableReason::Schema(e)))?;
                        let plan = Arc::new(
                            Plan::new(None, &value_schema)
                                .map_err(|e| wrap(UndecodableReason::Body(e)))?,
                        );
                        self.by_value.insert(value_ref, plan.clone());
                        plan
                    }
                };
                plan.decode_value(value_body)
                    .map_err(|e| wrap(UndecodableReason::Body(e)))?
            }
        };
        if event.op != crate::event::change::Op::Truncate && key.is_none() {
            return Err(wrap(UndecodableReason::NoKey));
        }
        Ok(Decoded::Event(event))
    }
}
