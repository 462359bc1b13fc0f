//! tidewater's commit log: the fencing behind "exactly one commit wins".
//!
//! Hudi's timeline alone cannot stop two writers (a zombie after a rebalance
//! and its successor) from both committing on top of the same table state:
//! their instants differ, so both completed instants would be written. Like
//! Delta's `_delta_log/N.json`, tidewater numbers the actions that change a
//! table and records action N by creating
//! `.hoodie/.aux/tidewater/log/<N>.json` with put-if-absent. A writer claims
//! the number after the last one it has read; of two writers that read the
//! same state, exactly one creates the entry and the other gets
//! `AlreadyExists`, deletes what it wrote, and reloads. Only after winning
//! its entry does a writer publish `<instant>.commit`, so a completed
//! instant always corresponds to a won entry; an entry won but not yet
//! published (a crash in between) is published by the next writer, since the
//! entry holds the whole commit metadata.
//!
//! A writer that finds failed instants to roll back first claims an entry
//! for the rollback: a zombie still holding those instants can then no longer
//! win an entry for them.
//!
//! The log is pruned: entries more than [`KEEP`] behind the newest are
//! deleted (only the newest is ever read). A zombie that read the log long
//! ago may then create an entry whose number was pruned, so pruning first
//! records its bound in a marker, `pruned-<N>`, and a claim counts as won
//! only if no marker above its number exists right after it. (A higher
//! entry proves nothing: another writer may already have built on ours.)

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::metadata::CommitMetadata;

pub const LOG_DIR: &str = ".hoodie/.aux/tidewater/log";
/// Entries kept behind the newest one when the log is pruned.
pub const KEEP: u64 = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub seq: u64,
    /// `commit`, `rollback` or `clean`.
    pub action: String,
    /// The instant the action created (commit, clean) or removed (rollback:
    /// comma-separated).
    pub instant: String,
    /// Identifies the writer process that claimed the entry.
    pub writer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitMetadata>,
}

pub fn entry_path(seq: u64) -> Path {
    Path::from(format!("{LOG_DIR}/{seq:020}.json"))
}

const PRUNED: &str = "pruned-";

/// The sequence numbers present, and the prune markers' bounds, in no
/// particular order.
async fn listing(store: &dyn ObjectStore) -> Result<(Vec<u64>, Vec<u64>), object_store::Error> {
    use futures::TryStreamExt;
    let prefix = Path::from(LOG_DIR);
    let metas: Vec<object_store::ObjectMeta> = store.list(Some(&prefix)).try_collect().await?;
    let (mut numbers, mut pruned) = (Vec::new(), Vec::new());
    for name in metas.iter().filter_map(|m| m.location.filename()) {
        if let Some(n) = name.strip_suffix(".json").and_then(|n| n.parse().ok()) {
            numbers.push(n);
        } else if let Some(n) = name.strip_prefix(PRUNED).and_then(|n| n.parse().ok()) {
            pruned.push(n);
        }
    }
    Ok((numbers, pruned))
}

/// The highest sequence number present and its entry.
pub async fn latest(store: &dyn ObjectStore) -> Result<Option<LogEntry>, object_store::Error> {
    let Some(seq) = listing(store).await?.0.into_iter().max() else {
        return Ok(None);
    };
    let bytes = store.get(&entry_path(seq)).await?.bytes().await?;
    Ok(serde_json::from_slice(&bytes).ok())
}

/// What claiming an entry came to.
#[derive(Debug, PartialEq)]
pub enum Claim {
    Won,
    /// Another writer holds this number.
    Lost(Option<LogEntry>),
}

/// Claims `entry.seq`. A retried put whose first attempt already stored
/// the entry (the response was lost) also counts as won: the stored entry is
/// read back and compared.
pub async fn claim(
    store: &dyn ObjectStore,
    entry: &LogEntry,
) -> Result<Claim, object_store::Error> {
    let body = serde_json::to_vec_pretty(entry).unwrap_or_default();
    let path = entry_path(entry.seq);
    let options = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store
        .put_opts(&path, PutPayload::from(Bytes::from(body)), options)
        .await
    {
        Ok(_) => {}
        // `AlreadyExists` after a retry, or a reset or timeout after the
        // server stored the entry: read it back to know whose it is.
        Err(e) => match store.get(&path).await {
            Ok(found) => {
                let stored: Option<LogEntry> = serde_json::from_slice(&found.bytes().await?).ok();
                if stored.as_ref() != Some(entry) {
                    return Ok(Claim::Lost(stored));
                }
            }
            Err(object_store::Error::NotFound { .. }) => return Err(e),
            Err(read) => return Err(read),
        },
    };
    // A number under a prune marker was pruned, not free.
    if listing(store)
        .await?
        .1
        .into_iter()
        .any(|bound| entry.seq < bound)
    {
        return Ok(Claim::Lost(None));
    }
    Ok(Claim::Won)
}

/// Deletes the entries numbered below `below` (after recording the bound),
/// and the markers of earlier prunes; returns how many entries went.
pub async fn prune(store: &dyn ObjectStore, below: u64) -> Result<usize, object_store::Error> {
    let marker = |bound: u64| Path::from(format!("{LOG_DIR}/{PRUNED}{bound:020}"));
    store
        .put(&marker(below), PutPayload::from_static(b""))
        .await?;
    let gone = |e: object_store::Error| match e {
        object_store::Error::NotFound { .. } => Ok(()),
        e => Err(e),
    };
    let (numbers, markers) = listing(store).await?;
    let mut deleted = 0;
    for seq in numbers.into_iter().filter(|n| *n < below) {
        store.delete(&entry_path(seq)).await.or_else(gone)?;
        deleted += 1;
    }
    for bound in markers.into_iter().filter(|b| *b < below) {
        store.delete(&marker(bound)).await.or_else(gone)?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn entry(seq: u64, writer: &str) -> LogEntry {
        LogEntry {
            seq,
            action: "commit".into(),
            instant: format!("2026010100000000{seq}"),
            writer: writer.into(),
            commit: None,
        }
    }

    #[tokio::test]
    async fn a_pruned_number_is_not_free_to_claim() {
        let store = InMemory::new();
        for seq in 1..=10 {
            assert_eq!(claim(&store, &entry(seq, "a")).await.unwrap(), Claim::Won);
        }
        // The same number again: won by its writer (a retried put), lost by
        // anyone else.
        assert_eq!(claim(&store, &entry(10, "a")).await.unwrap(), Claim::Won);
        assert!(matches!(
            claim(&store, &entry(10, "b")).await.unwrap(),
            Claim::Lost(Some(e)) if e.writer == "a"
        ));
        assert_eq!(prune(&store, 4).await.unwrap(), 3);
        assert_eq!(prune(&store, 8).await.unwrap(), 4);
        let (numbers, markers) = listing(&store).await.unwrap();
        assert_eq!((numbers.len(), markers), (3, vec![8]), "one marker left");
        // A zombie that last read entry 2 claims 3, which was pruned.
        assert_eq!(
            claim(&store, &entry(3, "zombie")).await.unwrap(),
            Claim::Lost(None)
        );
        assert_eq!(latest(&store).await.unwrap().unwrap().seq, 10);
        // A writer whose entry another writer built on before it looked
        // again still won: a higher entry is not a pruned one.
        assert_eq!(claim(&store, &entry(11, "b")).await.unwrap(), Claim::Won);
        assert_eq!(claim(&store, &entry(12, "c")).await.unwrap(), Claim::Won);
        assert_eq!(claim(&store, &entry(11, "b")).await.unwrap(), Claim::Won);
    }
}
