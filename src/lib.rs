//! tidewater: change-data-capture from Postgres and MySQL/MariaDB to Kafka
//! (Debezium-compatible Avro events) and Apache Hudi copy-on-write tables.
//!
//! ```text
//! sources::{postgres,mysql} ──events──> kafka ──> lake (Hudi tables)
//!            ^ config: pipeline YAML, validated by `tidewater check`
//! ```
//!
//! The binary is a thin wrapper over [`cli`]; everything else is library code
//! so that integration tests drive the same paths the daemon runs.

pub mod admin;
pub mod alloc;
pub mod cli;
pub mod config;
pub mod event;
pub mod failpoint;
pub mod kafka;
pub mod lake;
pub mod pipeline;
pub mod sources;
