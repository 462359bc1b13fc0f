//! Everything that talks to Kafka: client settings (brokers, TLS/SASL, the
//! property allow-list) and topic naming. The Avro encoding, the producer with
//! delivery tracking and the sink consumer join it with the change-event work.

pub mod avro;
pub mod client;
pub mod consumer;
pub mod delivery;
pub mod producer;
pub mod registry;
pub mod schemas;
pub mod state;
pub mod tail;
pub mod topic;
