//! The Avro files of Hudi's clean and rollback instants.
//!
//! hudi-rs ignores them, but Java Hudi (Spark, Athena's input format) reads
//! the timeline strictly, so a clean or a rollback is recorded as Java 0.14
//! records it: an Avro object container file (codec null, one record, the
//! writer schema embedded) with `HoodieCleanerPlan` in `.clean.requested` and
//! `.clean.inflight`, `HoodieCleanMetadata` in `.clean`,
//! `HoodieRollbackPlan` in `.rollback.requested`, an empty
//! `.rollback.inflight`, and `HoodieRollbackMetadata` in `.rollback`. The
//! schemas are Java Hudi's, field for field; readers resolve newer versions
//! of them against these.

use serde_json::{Value as Json, json};

use crate::kafka::avro::binary::{write_bool, write_branch, write_bytes, write_long, write_str};
use crate::kafka::avro::decode::{Node, compile};

pub const CLEANER_PLAN_SCHEMA: &str = r#"{"namespace":"org.apache.hudi.avro.model","type":"record","name":"HoodieCleanerPlan","fields":[{"name":"earliestInstantToRetain","type":["null",{"type":"record","name":"HoodieActionInstant","fields":[{"name":"timestamp","type":"string"},{"name":"action","type":"string"},{"name":"state","type":"string"}]}],"default":null},{"name":"lastCompletedCommitTimestamp","type":"string","default":""},{"name":"policy","type":"string"},{"name":"filesToBeDeletedPerPartition","type":["null",{"type":"map","values":{"type":"array","items":{"name":"filePath","type":"string"}}}],"default":null},{"name":"version","type":["int","null"],"default":1},{"name":"filePathsToBeDeletedPerPartition","doc":"This field replaces the field filesToBeDeletedPerPartition","type":["null",{"type":"map","values":{"type":"array","items":{"name":"HoodieCleanFileInfo","type":"record","fields":[{"name":"filePath","type":["null","string"],"default":null},{"name":"isBootstrapBaseFile","type":["null","boolean"],"default":null}]}}}],"default":null},{"name":"partitionsToBeDeleted","doc":"partitions to be deleted","type":["null",{"type":"array","items":"string"}],"default":null}]}"#;

pub const CLEAN_METADATA_SCHEMA: &str = r#"{"namespace":"org.apache.hudi.avro.model","type":"record","name":"HoodieCleanMetadata","fields":[{"name":"startCleanTime","type":"string"},{"name":"timeTakenInMillis","type":"long"},{"name":"totalFilesDeleted","type":"int"},{"name":"earliestCommitToRetain","type":"string"},{"name":"lastCompletedCommitTimestamp","type":"string","default":""},{"name":"partitionMetadata","type":{"type":"map","values":{"type":"record","name":"HoodieCleanPartitionMetadata","fields":[{"name":"partitionPath","type":"string"},{"name":"policy","type":"string"},{"name":"deletePathPatterns","type":{"type":"array","items":"string"}},{"name":"successDeleteFiles","type":{"type":"array","items":"string"}},{"name":"failedDeleteFiles","type":{"type":"array","items":"string"}},{"name":"isPartitionDeleted","type":["null","boolean"],"default":null}]}}},{"name":"version","type":["int","null"],"default":1},{"name":"bootstrapPartitionMetadata","type":["null",{"type":"map","values":"HoodieCleanPartitionMetadata","default":null}],"default":null}]}"#;

pub const ROLLBACK_PLAN_SCHEMA: &str = r#"{"type":"record","name":"HoodieRollbackPlan","namespace":"org.apache.hudi.avro.model","fields":[{"name":"instantToRollback","type":["null",{"type":"record","name":"HoodieInstantInfo","fields":[{"name":"commitTime","type":{"type":"string","avro.java.string":"String"}},{"name":"action","type":{"type":"string","avro.java.string":"String"}}]}],"doc":"Hoodie instant that needs to be rolled back","default":null},{"name":"RollbackRequests","type":["null",{"type":"array","items":{"type":"record","name":"HoodieRollbackRequest","fields":[{"name":"partitionPath","type":{"type":"string","avro.java.string":"String"}},{"name":"fileId","type":["null",{"type":"string","avro.java.string":"String"}],"default":null},{"name":"latestBaseInstant","type":["null",{"type":"string","avro.java.string":"String"}],"default":null},{"name":"filesToBeDeleted","type":{"type":"array","items":{"type":"string","avro.java.string":"String"},"default":[]},"default":[]},{"name":"logBlocksToBeDeleted","type":["null",{"type":"map","values":"long","avro.java.string":"String"}],"default":null}]}}],"default":null},{"name":"version","type":["int","null"],"default":1}]}"#;

pub const ROLLBACK_METADATA_SCHEMA: &str = r#"{"type":"record","name":"HoodieRollbackMetadata","namespace":"org.apache.hudi.avro.model","fields":[{"name":"startRollbackTime","type":{"type":"string","avro.java.string":"String"}},{"name":"timeTakenInMillis","type":"long"},{"name":"totalFilesDeleted","type":"int"},{"name":"commitsRollback","type":{"type":"array","items":{"type":"string","avro.java.string":"String"}}},{"name":"partitionMetadata","type":{"type":"map","values":{"type":"record","name":"HoodieRollbackPartitionMetadata","fields":[{"name":"partitionPath","type":{"type":"string","avro.java.string":"String"}},{"name":"successDeleteFiles","type":{"type":"array","items":{"type":"string","avro.java.string":"String"}}},{"name":"failedDeleteFiles","type":{"type":"array","items":{"type":"string","avro.java.string":"String"}}},{"name":"rollbackLogFiles","type":["null",{"type":"map","values":"long","avro.java.string":"String"}],"default":null},{"name":"logFilesFromFailedCommit","type":["null",{"type":"map","values":"long","avro.java.string":"String"}],"default":null}]},"avro.java.string":"String"}},{"name":"version","type":["int","null"],"default":1},{"name":"instantsRollback","type":{"type":"array","items":{"type":"record","name":"HoodieInstantInfo","fields":[{"name":"commitTime","type":{"type":"string","avro.java.string":"String"}},{"name":"action","type":{"type":"string","avro.java.string":"String"}}]},"default":[]},"default":[]}]}"#;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {what} as Avro: {message}")]
pub struct AvroFileError {
    pub what: &'static str,
    pub message: String,
}

/// Encodes a JSON value by an Avro schema node.
fn encode(out: &mut Vec<u8>, node: &Node, value: &Json) -> Result<(), String> {
    match (node, value) {
        (Node::Null, Json::Null) => Ok(()),
        (Node::Boolean, Json::Bool(b)) => {
            write_bool(out, *b);
            Ok(())
        }
        (Node::Int | Node::Long, Json::Number(n)) => {
            write_long(out, n.as_i64().ok_or("not an integer")?);
            Ok(())
        }
        (Node::String, Json::String(s)) => {
            write_str(out, s);
            Ok(())
        }
        (Node::Bytes, Json::String(s)) => {
            write_bytes(out, s.as_bytes());
            Ok(())
        }
        (Node::Array(item), Json::Array(items)) => {
            if !items.is_empty() {
                write_long(out, items.len() as i64);
                for i in items {
                    encode(out, item, i)?;
                }
            }
            write_long(out, 0);
            Ok(())
        }
        (Node::Map(values), Json::Object(entries)) => {
            if !entries.is_empty() {
                write_long(out, entries.len() as i64);
                for (k, v) in entries {
                    write_str(out, k);
                    encode(out, values, v)?;
                }
            }
            write_long(out, 0);
            Ok(())
        }
        (Node::Record(fields), Json::Object(obj)) => {
            for (name, field) in fields.iter() {
                encode(out, field, obj.get(name).unwrap_or(&Json::Null))
                    .map_err(|e| format!("{name}: {e}"))?;
            }
            Ok(())
        }
        (Node::Union(branches), v) => {
            let fits = |b: &Node| {
                matches!(
                    (b, v),
                    (Node::Null, Json::Null)
                        | (Node::Boolean, Json::Bool(_))
                        | (Node::Int | Node::Long, Json::Number(_))
                        | (Node::String | Node::Bytes, Json::String(_))
                        | (Node::Array(_), Json::Array(_))
                        | (Node::Map(_) | Node::Record(_), Json::Object(_))
                )
            };
            let (index, branch) = branches
                .iter()
                .enumerate()
                .find(|(_, b)| fits(b))
                .ok_or("no union branch fits")?;
            write_branch(out, index as i64);
            encode(out, branch, v)
        }
        (node, v) => Err(format!("{v} does not fit {node:?}")),
    }
}

/// One record in an Avro object container file (codec null).
pub fn container_file(
    what: &'static str,
    schema: &str,
    record: &Json,
) -> Result<Vec<u8>, AvroFileError> {
    let fail = |message: String| AvroFileError { what, message };
    let parsed: Json = serde_json::from_str(schema).map_err(|e| fail(e.to_string()))?;
    let node = compile(&parsed).map_err(|e| fail(e.to_string()))?;
    let mut body = Vec::new();
    encode(&mut body, &node, record).map_err(fail)?;
    let sync: [u8; 16] = *uuid::Uuid::new_v4().as_bytes();
    let mut out = b"Obj\x01".to_vec();
    write_long(&mut out, 2);
    write_str(&mut out, "avro.schema");
    write_bytes(&mut out, schema.as_bytes());
    write_str(&mut out, "avro.codec");
    write_bytes(&mut out, b"null");
    write_long(&mut out, 0);
    out.extend_from_slice(&sync);
    write_long(&mut out, 1);
    write_long(&mut out, body.len() as i64);
    out.extend_from_slice(&body);
    out.extend_from_slice(&sync);
    Ok(out)
}

/// Files deleted from one partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionFiles {
    /// File names.
    pub names: Vec<String>,
    /// Full paths (table URI + relative path).
    pub paths: Vec<String>,
}

/// `.clean.requested` / `.clean.inflight` content.
pub fn cleaner_plan(
    earliest_retained: &str,
    last_completed: &str,
    partitions: &std::collections::BTreeMap<String, PartitionFiles>,
) -> Result<Vec<u8>, AvroFileError> {
    let files: serde_json::Map<String, Json> = partitions
        .iter()
        .map(|(p, f)| {
            let infos: Vec<Json> = f
                .paths
                .iter()
                .map(|path| json!({"filePath": path, "isBootstrapBaseFile": false}))
                .collect();
            (p.clone(), Json::Array(infos))
        })
        .collect();
    container_file(
        "HoodieCleanerPlan",
        CLEANER_PLAN_SCHEMA,
        &json!({
            "earliestInstantToRetain": {"timestamp": earliest_retained, "action": "commit", "state": "COMPLETED"},
            "lastCompletedCommitTimestamp": last_completed,
            "policy": "KEEP_LATEST_COMMITS",
            "filesToBeDeletedPerPartition": {},
            "version": 2,
            "filePathsToBeDeletedPerPartition": files,
            "partitionsToBeDeleted": [],
        }),
    )
}

/// `.clean` content.
pub fn clean_metadata(
    clean_time: &str,
    millis: i64,
    earliest_retained: &str,
    last_completed: &str,
    partitions: &std::collections::BTreeMap<String, PartitionFiles>,
) -> Result<Vec<u8>, AvroFileError> {
    let total: usize = partitions.values().map(|f| f.paths.len()).sum();
    let meta: serde_json::Map<String, Json> = partitions
        .iter()
        .map(|(p, f)| {
            (
                p.clone(),
                json!({
                    "partitionPath": p,
                    "policy": "KEEP_LATEST_COMMITS",
                    "deletePathPatterns": f.names,
                    "successDeleteFiles": f.paths,
                    "failedDeleteFiles": [],
                    "isPartitionDeleted": false,
                }),
            )
        })
        .collect();
    container_file(
        "HoodieCleanMetadata",
        CLEAN_METADATA_SCHEMA,
        &json!({
            "startCleanTime": clean_time,
            "timeTakenInMillis": millis,
            "totalFilesDeleted": total,
            "earliestCommitToRetain": earliest_retained,
            "lastCompletedCommitTimestamp": last_completed,
            "partitionMetadata": meta,
            "version": 2,
            "bootstrapPartitionMetadata": {},
        }),
    )
}

/// `.rollback.requested` content for one failed commit.
pub fn rollback_plan(
    failed: &str,
    partitions: &std::collections::BTreeMap<String, PartitionFiles>,
) -> Result<Vec<u8>, AvroFileError> {
    let requests: Vec<Json> = partitions
        .iter()
        .map(|(p, f)| {
            json!({"partitionPath": p, "fileId": "", "latestBaseInstant": "", "filesToBeDeleted": f.paths, "logBlocksToBeDeleted": {}})
        })
        .collect();
    container_file(
        "HoodieRollbackPlan",
        ROLLBACK_PLAN_SCHEMA,
        &json!({
            "instantToRollback": {"commitTime": failed, "action": "commit"},
            "RollbackRequests": requests,
            "version": 1,
        }),
    )
}

/// `.rollback` content.
pub fn rollback_metadata(
    rollback_time: &str,
    millis: i64,
    failed: &str,
    partitions: &std::collections::BTreeMap<String, PartitionFiles>,
) -> Result<Vec<u8>, AvroFileError> {
    let total: usize = partitions.values().map(|f| f.paths.len()).sum();
    let meta: serde_json::Map<String, Json> = partitions
        .iter()
        .map(|(p, f)| {
            (
                p.clone(),
                json!({"partitionPath": p, "successDeleteFiles": f.paths, "failedDeleteFiles": [], "rollbackLogFiles": {}, "logFilesFromFailedCommit": {}}),
            )
        })
        .collect();
    container_file(
        "HoodieRollbackMetadata",
        ROLLBACK_METADATA_SCHEMA,
        &json!({
            "startRollbackTime": rollback_time,
            "timeTakenInMillis": millis,
            "totalFilesDeleted": total,
            "commitsRollback": [failed],
            "partitionMetadata": meta,
            "version": 1,
            "instantsRollback": [{"commitTime": failed, "action": "commit"}],
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::avro::binary::Reader;

    #[test]
    fn container_files_carry_their_schema_and_one_record() {
        let mut parts = std::collections::BTreeMap::new();
        parts.insert(
            "dt=2024-01-01".to_string(),
            PartitionFiles {
                names: vec!["f_0-0-0_1.parquet".into()],
                paths: vec!["/t/dt=2024-01-01/f_0-0-0_1.parquet".into()],
            },
        );
        for bytes in [
            cleaner_plan("20240101000000000", "20240102000000000", &parts).unwrap(),
            clean_metadata(
                "20240103000000000",
                5,
                "20240101000000000",
                "20240102000000000",
                &parts,
            )
            .unwrap(),
            rollback_plan("20240104000000000", &parts).unwrap(),
            rollback_metadata("20240105000000000", 5, "20240104000000000", &parts).unwrap(),
        ] {
            assert_eq!(&bytes[..4], b"Obj\x01");
            let mut r = Reader::new(&bytes[4..]);
            assert_eq!(r.long().unwrap(), 2, "two metadata entries");
            assert_eq!(r.string().unwrap(), "avro.schema");
            let schema: Json = serde_json::from_slice(r.bytes().unwrap()).unwrap();
            assert!(schema["name"].as_str().unwrap().starts_with("Hoodie"));
        }
    }
}
