//! Capture run in the test process, and the events it published read back
//! and applied: shared by the Postgres and MySQL capture tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tidewater::config::model::{KafkaConfig, PipelineConfig};
use tidewater::event::change::{ChangeEvent, Op};
use tidewater::event::datum::Datum;
use tidewater::event::table_id::TableId;
use tidewater::kafka::topic::table_topic;
use tidewater::sources::CaptureStats;

/// Starts capture of `cfg` in this process and waits for its snapshot:
/// its figures, the stop switch and the task.
pub async fn start_capture(
    cfg: &PipelineConfig,
) -> (
    Arc<CaptureStats>,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), tidewater::sources::CaptureError>>,
) {
    let stats = Arc::new(CaptureStats::default());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let task = {
        let cfg = cfg.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            tidewater::sources::run(&cfg, stats, async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stats.snapshot_done.load(Ordering::SeqCst) {
        assert!(!task.is_finished(), "capture ended: {:?}", task.await);
        assert!(Instant::now() < deadline, "snapshot did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (stats, stop_tx, task)
}

/// Stops a capture started by [`start_capture`] and checks that it ends
/// cleanly within 60 s.
pub async fn stop_capture(
    stop_tx: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), tidewater::sources::CaptureError>>,
) {
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("capture stops on request")
        .unwrap()
        .unwrap();
}

/// Waits until the capture has confirmed `lsn` (all before it is in Kafka).
pub async fn wait_confirmed(stats: &CaptureStats, lsn: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats.confirmed_lsn.load(Ordering::SeqCst) < lsn {
        assert!(
            Instant::now() < deadline,
            "capture did not confirm {lsn:X} (at {:X})",
            stats.confirmed_lsn.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every event of a table's topic, in position order.
pub async fn events_of(kafka: &KafkaConfig, prefix: &str, table: &TableId) -> Vec<ChangeEvent> {
    let topic = table_topic(prefix, table);
    let mut out: Vec<ChangeEvent> = super::topic_events(kafka, &topic)
        .await
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    out.sort_by_key(|e| e.position);
    out
}

/// Applies events by position: key (as JSON) → column name → plain value.
pub fn materialize(events: &[ChangeEvent]) -> BTreeMap<String, BTreeMap<String, Json>> {
    let mut rows: BTreeMap<String, BTreeMap<String, Json>> = BTreeMap::new();
    for e in events {
        if e.op == Op::Truncate {
            rows.clear();
            continue;
        }
        let key_row = e.key_row().unwrap();
        let key = e
            .table
            .key_columns()
            .zip(&key_row.0)
            .map(|(c, d)| super::plain(d, &c.ty).to_string())
            .collect::<Vec<_>>()
            .join("|");
        match (&e.op, &e.after) {
            (Op::Delete, _) | (_, None) => {
                rows.remove(&key);
            }
            (_, Some(after)) => {
                let previous = rows.remove(&key).unwrap_or_default();
                let mut row = BTreeMap::new();
                for (c, d) in e.table.columns.iter().zip(&after.0) {
                    let v = match d {
                        Datum::Unchanged => previous
                            .get(&c.name)
                            .cloned()
                            .unwrap_or_else(|| panic!("unchanged {} without a value", c.name)),
                        d => super::plain(d, &c.ty),
                    };
                    row.insert(c.name.clone(), v);
                }
                rows.insert(key, row);
            }
        }
    }
    rows
}
