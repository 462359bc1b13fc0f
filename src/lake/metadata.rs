//! The JSON of completed and inflight commits (`HoodieCommitMetadata`), as
//! Hudi 0.14 writes it for layout 1, and the keys tidewater stores in
//! `extraMetadata`:
//!
//! - `schema`: the Avro schema of the data columns (what readers use);
//! - `deltastreamer.checkpoint.key`: `topic,partition:offset,...` with the
//!   next offset to read, as Hudi's own streamer writes it;
//! - `tidewater.checkpoint.stamps`: `partition:milliseconds,...`, the
//!   Kafka timestamp of the last message read of each partition (the one
//!   before the checkpoint's offset), by which a restarted sink knows the
//!   topic is still the one the lake read ([`Checkpoint::stamps`]);
//! - `tidewater.source.position`: the highest source position the commit
//!   includes;
//! - `tidewater.schema`: the lake schema ([`LakeSchema`]) with column types
//!   and dropped columns, to resume with the exact shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::layout::LakeSchema;

pub const CHECKPOINT_KEY: &str = "deltastreamer.checkpoint.key";
pub const STAMPS_KEY: &str = "tidewater.checkpoint.stamps";
pub const POSITION_KEY: &str = "tidewater.source.position";
pub const LAKE_SCHEMA_KEY: &str = "tidewater.schema";
pub const SCHEMA_KEY: &str = "schema";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    pub total_scan_time: i64,
    pub total_upsert_time: i64,
    pub total_create_time: i64,
}

/// One written (or planned) base file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteStat {
    pub file_id: String,
    /// Relative to the table base path; `null` in an inflight profile.
    pub path: Option<String>,
    pub cdc_stats: Option<serde_json::Value>,
    /// The instant of the slice this one replaces, or `"null"`.
    pub prev_commit: String,
    pub num_writes: i64,
    pub num_deletes: i64,
    pub num_update_writes: i64,
    pub num_inserts: i64,
    pub total_write_bytes: i64,
    pub total_write_errors: i64,
    pub temp_path: Option<String>,
    pub partition_path: String,
    pub total_log_records: i64,
    pub total_log_files_compacted: i64,
    pub total_log_size_compacted: i64,
    pub total_updated_records_compacted: i64,
    pub total_log_blocks: i64,
    pub total_corrupt_log_block: i64,
    pub total_rollback_blocks: i64,
    pub file_size_in_bytes: i64,
    pub min_event_time: Option<i64>,
    pub max_event_time: Option<i64>,
    pub runtime_stats: Option<RuntimeStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitMetadata {
    pub partition_to_write_stats: BTreeMap<String, Vec<WriteStat>>,
    pub compacted: bool,
    pub extra_metadata: BTreeMap<String, String>,
    pub operation_type: String,
}

impl CommitMetadata {
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let mut checkpoint = self
            .extra_metadata
            .get(CHECKPOINT_KEY)
            .and_then(|s| Checkpoint::parse(s).ok())?;
        // Unreadable stamps only mean nothing to check the topic by.
        if let Some(stamps) = self
            .extra_metadata
            .get(STAMPS_KEY)
            .and_then(|s| Checkpoint::parse_stamps(s).ok())
        {
            checkpoint.stamps = stamps;
        }
        Some(checkpoint)
    }

    pub fn lake_schema(&self) -> Option<LakeSchema> {
        self.extra_metadata
            .get(LAKE_SCHEMA_KEY)
            .and_then(|s| serde_json::from_str(s).ok())
    }

    pub fn stats(&self) -> impl Iterator<Item = &WriteStat> {
        self.partition_to_write_stats.values().flatten()
    }
}

/// Kafka offsets: the next offset to read, per partition of one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub topic: String,
    pub offsets: BTreeMap<i32, i64>,
    /// The timestamp (milliseconds) of the message before each partition's
    /// offset, the last one the lake read, where the message had one. A
    /// topic deleted and created again under the same name starts again
    /// at offset 0 and, once it holds as many messages, looks like the old
    /// one by its offsets alone; its message at that offset is another one.
    pub stamps: BTreeMap<i32, i64>,
}

impl Checkpoint {
    /// `topic,partition:offset,...`
    pub fn to_text(&self) -> String {
        let mut out = self.topic.clone();
        for (p, o) in &self.offsets {
            out.push_str(&format!(",{p}:{o}"));
        }
        out
    }

    /// `partition:milliseconds,...` ([`STAMPS_KEY`]), or `None` when no
    /// partition has a stamp.
    pub fn stamps_text(&self) -> Option<String> {
        let parts: Vec<String> = self
            .stamps
            .iter()
            .map(|(p, t)| format!("{p}:{t}"))
            .collect();
        (!parts.is_empty()).then(|| parts.join(","))
    }

    pub fn parse_stamps(text: &str) -> Result<BTreeMap<i32, i64>, String> {
        partition_pairs(text.split(',').filter(|p| !p.is_empty()), "timestamp")
    }

    pub fn parse(text: &str) -> Result<Checkpoint, String> {
        let mut parts = text.split(',');
        let topic = parts
            .next()
            .filter(|t| !t.is_empty())
            .ok_or("no topic")?
            .to_string();
        Ok(Checkpoint {
            topic,
            offsets: partition_pairs(parts, "offset")?,
            stamps: BTreeMap::new(),
        })
    }
}

/// `partition:number` parts as a map; `what` names the number.
fn partition_pairs<'a>(
    parts: impl Iterator<Item = &'a str>,
    what: &str,
) -> Result<BTreeMap<i32, i64>, String> {
    let mut pairs = BTreeMap::new();
    for part in parts {
        let (p, n) = part
            .split_once(':')
            .ok_or_else(|| format!("`{part}` is not partition:{what}"))?;
        let p = p.parse().map_err(|_| format!("bad partition `{p}`"))?;
        let n = n.parse().map_err(|_| format!("bad {what} `{n}`"))?;
        pairs.insert(p, n);
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_text_is_hudi_streamer_format() {
        let c = Checkpoint::parse("events,0:1234,1:5678").unwrap();
        assert_eq!(c.topic, "events");
        assert_eq!(c.offsets[&1], 5678);
        assert_eq!(c.to_text(), "events,0:1234,1:5678");
        assert!(Checkpoint::parse("events,0-12").is_err());
        assert!(Checkpoint::parse("").is_err());
    }

    #[test]
    fn stamps_round_trip_beside_the_hudi_checkpoint() {
        let mut m = CommitMetadata::default();
        m.extra_metadata
            .insert(CHECKPOINT_KEY.into(), "events,0:12,1:40".into());
        assert!(
            m.checkpoint().unwrap().stamps.is_empty(),
            "a commit without stamps (an older one) has none"
        );
        m.extra_metadata
            .insert(STAMPS_KEY.into(), "0:1764000000123,1:1764000000456".into());
        let c = m.checkpoint().unwrap();
        assert_eq!(c.stamps[&0], 1_764_000_000_123);
        assert_eq!(c.stamps[&1], 1_764_000_000_456);
        assert_eq!(c.stamps_text().unwrap(), "0:1764000000123,1:1764000000456");
        assert_eq!(c.to_text(), "events,0:12,1:40", "Hudi's key is unchanged");
        m.extra_metadata.insert(STAMPS_KEY.into(), "0-5".into());
        let c = m.checkpoint().unwrap();
        assert!(
            c.stamps.is_empty() && c.offsets[&1] == 40,
            "bad stamps are none"
        );
        assert!(Checkpoint::default().stamps_text().is_none());
    }

    #[test]
    fn commit_json_uses_hudi_field_names() {
        let mut m = CommitMetadata {
            operation_type: "UPSERT".into(),
            ..Default::default()
        };
        m.partition_to_write_stats.insert(
            "dt=2024-01-01".into(),
            vec![WriteStat {
                file_id: "f-0".into(),
                prev_commit: "null".into(),
                num_writes: 2,
                ..Default::default()
            }],
        );
        let v: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v["partitionToWriteStats"]["dt=2024-01-01"][0]["fileId"],
            "f-0"
        );
        assert_eq!(
            v["partitionToWriteStats"]["dt=2024-01-01"][0]["prevCommit"],
            "null"
        );
        assert_eq!(v["operationType"], "UPSERT");
        assert_eq!(v["compacted"], false);
        let back: CommitMetadata = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }
}
