//! Capture from source databases: `postgres` (logical replication) and
//! `mysql` (row binlog). Each source turns its log into change events and
//! acknowledges a position only after Kafka acknowledged everything before it.

pub mod mysql;
pub mod postgres;
