//! Wiring of pipelines: the sink worker that keeps lake tables in step with
//! Kafka ([`sink`]). Capture tasks, backfills and the daemon's supervision
//! join it with the capture and daemon work.

pub mod sink;
