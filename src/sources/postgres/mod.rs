//! Postgres capture: publication, logical replication slot (`pgoutput`),
//! consistent snapshot, streaming, and acknowledgement of exactly what Kafka
//! holds.
//!
//! # The position contract
//!
//! A streamed change's position is (LSN of its transaction's commit record,
//! ordinal in the transaction). A snapshot row's position is
//! (`consistent_point - 1`, row ordinal): every transaction visible in the
//! snapshot committed at an LSN below the consistent point and every
//! transaction the slot streams commits at or after it, and WAL records are
//! 8-byte aligned, so `consistent_point - 1` sorts strictly between the two.
//! A sink that applies changes by position therefore never lets a snapshot
//! row overwrite a newer streamed change, nor the reverse.
//!
//! # Acknowledgement
//!
//! The slot's `confirmed_flush_lsn` is moved (standby status update) to the
//! end LSN of the last transaction whose every event Kafka acknowledged
//! (the producer's delivery low-watermark), never further. When nothing is
//! pending, to the walsender's reported WAL end, so an idle slot does not
//! hold WAL back; heartbeats (`pg_logical_emit_message`, or an update of
//! `heartbeat_table`) make sure there is WAL to report.
//!
//! # State (the `_tidewater_state` topic, key `postgres/<slot>`)
//!
//! `{"slot", "database", "snapshot_done", "confirmed_lsn"}`, written with
//! acks=all **before** the slot is told anything. So:
//! - `snapshot_done` false or absent and a slot that exists: the snapshot
//!   was interrupted (or the DBA made the slot). It is taken again from a
//!   temporary slot's exported snapshot while the pipeline's slot keeps the
//!   WAL from its own consistent point: nothing is lost, rows read twice
//!   are duplicates with a newer position.
//! - `snapshot_done` and no slot: the slot was dropped or lost: stop (G6).
//! - a slot whose `confirmed_flush_lsn` is past `confirmed_lsn`: someone
//!   else moved or recreated it: stop (G6), since events in between may
//!   never have reached Kafka.
//!
//! # Connections
//!
//! The replication connection is [`wire`] (tokio-postgres has no
//! replication protocol); catalog queries and snapshot reads go through
//! tokio-postgres with the same session settings. Both use [`tls`] (rustls)
//! as `source.tls` says.

pub mod catalog;
pub mod pgoutput;
pub mod preflight;
pub mod text;
pub mod tls;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use tokio_postgres::Client;

use self::catalog::{CatalogColumn, Shape, build_shape, lookup_table, type_name};
use self::pgoutput::{Message, Relation, Value};
use self::text::{copy_field, parse_value};
use self::wire::{
    ConnectParams, CopyMessage, PG_EPOCH_OFFSET_MICROS, ReplicationConnection, lsn_text, parse_lsn,
    quote_ident, quote_literal,
};
use crate::config::model::{
    PipelineConfig, PostgresSource, SnapshotMode, SourceConfig, TableConfig, TruncateMode,
};
use crate::event::change::{
    ChangeEvent, Op, Position, SnapshotMarker, Source, SourceDetail, Transaction,
};
use crate::event::datum::{Datum, Row};
use crate::event::table_id::{Dialect, TableId};
use crate::kafka::avro::schema::Connector;
use crate::kafka::client::client_config;
use crate::kafka::producer::{EventProducer, EventSerializer, ProduceError, ProducerOptions};
use crate::kafka::schemas::SchemaStore;
use crate::kafka::state::StateStore;
pub use crate::sources::capture::{CaptureError, CaptureStats, SnapshotProgress};
use crate::sources::capture::{ProgressReport, now_micros};

/// Default slot and publication name: `tidewater_<name>`, `-` as `_`.
pub fn default_name(pipeline: &str) -> String {
    format!("tidewater_{}", pipeline.replace('-', "_"))
}

/// Runs capture for `cfg` until `stop` resolves or an error needs an
/// operator. Connection losses and Kafka failures reconnect with backoff and
/// resume from the slot.
pub async fn run(
    cfg: &PipelineConfig,
    stats: Arc<CaptureStats>,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), CaptureError> {
    let SourceConfig::Postgres(source) = &cfg.source else {
        return Err(CaptureError::Config("not a postgres pipeline".into()));
    };
    // Bad URL or CA file: refused before anything starts.
    connect_params(source)?;
    crate::sources::with_reconnects(&cfg.name, "the slot", stop, |stop| {
        let (cfg, source, stats) = (cfg.clone(), source.clone(), stats.clone());
        Box::pin(async move {
            let mut session = Session::open(&cfg, &source, stats).await?;
            session.run(stop).await
        })
    })
    .await
}

/// One connection's worth of capture.
struct Session {
    name: String,
    source: PostgresSource,
    params: ConnectParams,
    sql: Client,
    producer: EventProducer,
    state: StateStore,
    state_key: String,
    slot: String,
    publication: String,
    tables: HashMap<TableId, TableConfig>,
    stats: Arc<CaptureStats>,
}

/// A transaction being streamed.
struct Tx {
    final_lsn: u64,
    commit_ts: i64,
    xid: u32,
    ordinal: u64,
    per_table: HashMap<u32, u64>,
}

impl Session {
    async fn open(
        cfg: &PipelineConfig,
        source: &PostgresSource,
        stats: Arc<CaptureStats>,
    ) -> Result<Session, CaptureError> {
        let params = connect_params(source)?;
        let sql = connect_sql(&params).await?;
        let prefix = cfg.kafka.topic_prefix.clone().unwrap_or(cfg.name.clone());
        let store = SchemaStore::new(&cfg.kafka)
            .map_err(|e| CaptureError::Config(format!("kafka.schema_registry: {e}")))?;
        let producer = EventProducer::new(
            &client_config(&cfg.kafka),
            EventSerializer::new(store, Connector::Postgres, prefix),
            ProducerOptions::from_config(&cfg.kafka),
        )?;
        let slot = source
            .slot
            .clone()
            .unwrap_or_else(|| default_name(&cfg.name));
        let publication = source
            .publication
            .clone()
            .unwrap_or_else(|| default_name(&cfg.name));
        let mut tables = HashMap::new();
        for t in &source.tables {
            let id = TableId::parse(&t.name, Dialect::Postgres)
                .map_err(|e| CaptureError::Config(format!("table `{}`: {e}", t.name)))?;
            tables.insert(id, t.clone());
        }
        Ok(Session {
            name: cfg.name.clone(),
            source: source.clone(),
            state: StateStore::new(&client_config(&cfg.kafka)),
            state_key: format!("postgres/{slot}"),
            params,
            sql,
            producer,
            slot,
            publication,
            tables,
            stats,
        })
    }

    async fn run(
        &mut self,
        stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<(), CaptureError> {
        self.preflight().await?;
        self.ensure_publication().await?;
        let state = self.state.read(&self.state_key).await?;
        let done = state
            .as_ref()
            .and_then(|s| s.get("snapshot_done"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let recorded = state
            .as_ref()
            .and_then(|s| s.get("confirmed_lsn"))
            .and_then(|v| v.as_str())
            .and_then(parse_lsn);
        let slot = self.slot_info().await?;
        let mut repl = ReplicationConnection::connect(&self.params).await?;
        let mut confirmed = match (slot, done) {
            (Some(info), true) => {
                if info.wal_status.as_deref() == Some("lost") {
                    return Err(self.slot_lost("its WAL was removed (wal_status = lost)"));
                }
                if let Some(rec) = recorded
                    && info.confirmed > rec
                {
                    return Err(CaptureError::Operator(format!(
                        "replication slot `{}` is at {} but tidewater only ever confirmed {}: the slot was recreated or advanced by someone else, and changes in between may never have reached Kafka. Fix: drop the slot and take a new snapshot by giving the pipeline a new `slot:` name (the lake keeps its rows; rows deleted in the gap must be removed by hand or by a table re-snapshot)",
                        self.slot,
                        lsn_text(info.confirmed),
                        lsn_text(rec)
                    )));
                }
                info.confirmed
            }
            (None, true) => {
                return Err(self.slot_lost("it no longer exists"));
            }
            (Some(info), false) => {
                if info.wal_status.as_deref() == Some("lost") {
                    return Err(self.slot_lost("its WAL was removed (wal_status = lost)"));
                }
                // The snapshot did not finish (or the slot was made by the
                // DBA): take it from a temporary slot; this slot holds the WAL.
                if self.source.snapshot == SnapshotMode::Initial {
                    let mut tmp = ReplicationConnection::connect(&self.params).await?;
                    let tmp_name = format!("tidewater_tmp_{}", std::process::id());
                    let created = create_slot(&mut tmp, &tmp_name, true).await?;
                    self.snapshot(&created.snapshot, created.consistent_point)
                        .await?;
                    drop(tmp);
                }
                self.record(info.confirmed, true).await?;
                info.confirmed
            }
            (None, false) => {
                let created = create_slot(&mut repl, &self.slot, false).await?;
                tracing::info!(slot = %self.slot, consistent_point = %lsn_text(created.consistent_point), "replication slot created");
                if self.source.snapshot == SnapshotMode::Initial {
                    self.snapshot(&created.snapshot, created.consistent_point)
                        .await?;
                }
                self.record(created.consistent_point, true).await?;
                created.consistent_point
            }
        };
        self.stats.snapshot_done.store(true, Ordering::SeqCst);
        self.stats.confirmed_lsn.store(confirmed, Ordering::SeqCst);
        let publication = quote_ident(&self.publication);
        repl.start_replication(
            &self.slot,
            0,
            &[
                ("proto_version", "1"),
                ("publication_names", publication.as_str()),
            ],
        )
        .await?;
        tracing::info!(slot = %self.slot, from = %lsn_text(confirmed), "streaming");
        self.stream(&mut repl, &mut confirmed, stop).await
    }

    fn slot_lost(&self, why: &str) -> CaptureError {
        CaptureError::Operator(format!(
            "replication slot `{}` is unusable: {why}. Changes since the last confirmed position may be missing. Fix: take a new snapshot by giving the pipeline a new `slot:` name (rows deleted in the gap stay in the lake until the table is re-snapshotted)",
            self.slot
        ))
    }

    async fn preflight(&self) -> Result<(), CaptureError> {
        match preflight::wal_level_problem(&self.sql).await? {
            Some(problem) => Err(CaptureError::Operator(problem)),
            None => Ok(()),
        }
    }

    async fn ensure_publication(&self) -> Result<(), CaptureError> {
        let exists = self
            .sql
            .query_opt(
                "SELECT puballtables FROM pg_publication WHERE pubname = $1",
                &[&self.publication],
            )
            .await?;
        let mut ids: Vec<&TableId> = self.tables.keys().collect();
        ids.sort();
        // Once published, Postgres refuses the updates and deletes of a
        // table without a replica identity: check before publishing.
        for id in &ids {
            let table = lookup_table(&self.sql, id).await?;
            if let Some(problem) = catalog::publish_problem(id, &table) {
                return Err(CaptureError::Config(problem));
            }
        }
        match exists {
            None => {
                let list: Vec<String> = ids
                    .iter()
                    .map(|id| format!("{}.{}", quote_ident(&id.schema), quote_ident(&id.name)))
                    .collect();
                // Changes of a partitioned table's partitions are published
                // as changes of the table itself, the one that is captured
                // (the option exists from Postgres 13 on).
                let version: String = self
                    .sql
                    .query_one("SHOW server_version_num", &[])
                    .await?
                    .try_get(0)?;
                let via_root = if version.parse::<u32>().unwrap_or(0) >= 130_000 {
                    " WITH (publish_via_partition_root = true)"
                } else {
                    ""
                };
                self.sql
                    .batch_execute(&format!(
                        "CREATE PUBLICATION {} FOR TABLE {}{via_root}",
                        quote_ident(&self.publication),
                        list.join(", ")
                    ))
                    .await?;
                tracing::info!(publication = %self.publication, "publication created");
            }
            Some(_) => {
                // pg_publication_tables lists what is published under its
                // own name, for FOR ALL TABLES publications too (partitions
                // instead of their table without publish_via_partition_root).
                let listed = self
                    .sql
                    .query(
                        "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
                        &[&self.publication],
                    )
                    .await?;
                let listed: Vec<TableId> = listed
                    .iter()
                    .filter_map(|r| {
                        Some(TableId::new(
                            r.try_get::<_, String>(0).ok()?,
                            r.try_get::<_, String>(1).ok()?,
                        ))
                    })
                    .collect();
                for id in ids {
                    if !listed.contains(id) {
                        return Err(CaptureError::Operator(format!(
                            "publication `{}` does not list table {id} (a partitioned table is listed only when the publication has publish_via_partition_root = true). Fix: ALTER PUBLICATION {} ADD TABLE {}.{}; for a partitioned table also ALTER PUBLICATION {} SET (publish_via_partition_root = true)",
                            self.publication,
                            quote_ident(&self.publication),
                            quote_ident(&id.schema),
                            quote_ident(&id.name),
                            quote_ident(&self.publication),
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    async fn slot_info(&self) -> Result<Option<SlotInfo>, CaptureError> {
        let row = self
            .sql
            .query_opt(
                "SELECT plugin::text, database::text, confirmed_flush_lsn::text, wal_status \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let plugin: Option<String> = row.try_get(0)?;
        let database: Option<String> = row.try_get(1)?;
        if plugin.as_deref() != Some("pgoutput") {
            return Err(CaptureError::Operator(format!(
                "replication slot `{}` uses plugin `{}`, tidewater needs `pgoutput`. Fix: choose another `slot:` name",
                self.slot,
                plugin.unwrap_or_default()
            )));
        }
        if database.as_deref() != Some(self.params.database.as_str()) {
            return Err(CaptureError::Operator(format!(
                "replication slot `{}` belongs to database `{}`, not `{}`. Fix: choose another `slot:` name",
                self.slot,
                database.unwrap_or_default(),
                self.params.database
            )));
        }
        let confirmed: Option<String> = row.try_get(2)?;
        Ok(Some(SlotInfo {
            confirmed: confirmed.as_deref().and_then(parse_lsn).unwrap_or(0),
            wal_status: row.try_get(3)?,
        }))
    }

    /// Records progress in the state topic (before the slot hears of it).
    async fn record(&mut self, confirmed: u64, done: bool) -> Result<(), CaptureError> {
        self.state
            .write(
                &self.state_key,
                &json!({
                    "slot": self.slot,
                    "database": self.params.database,
                    "snapshot_done": done,
                    "confirmed_lsn": lsn_text(confirmed),
                }),
            )
            .await?;
        Ok(())
    }

    /// Reads every table inside `snapshot`, in key order and chunks, as
    /// `op = r` events at `consistent_point - 1`: `snapshot_parallelism`
    /// readers, each on its own connection inside the same exported
    /// snapshot, take tables from one queue and hand rows to this task,
    /// which produces them.
    async fn snapshot(
        &mut self,
        snapshot: &str,
        consistent_point: u64,
    ) -> Result<(), CaptureError> {
        let started = Instant::now();
        let mut ids: Vec<TableId> = self.tables.keys().cloned().collect();
        ids.sort();
        let mut progress = Vec::with_capacity(ids.len());
        for id in &ids {
            let estimate: i64 = self
                .sql
                .query_opt(
                    "SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relname = $2",
                    &[&id.schema, &id.name],
                )
                .await?
                .map(|r| r.try_get(0))
                .transpose()?
                .unwrap_or(-1);
            progress.push(SnapshotProgress {
                table: id.clone(),
                rows: 0,
                estimate,
                done: false,
            });
        }
        *self
            .stats
            .snapshot_tables
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = progress;
        let queue: VecDeque<(usize, TableId, TableConfig)> = ids
            .iter()
            .enumerate()
            .filter_map(|(no, id)| Some((no, id.clone(), self.tables.get(id)?.clone())))
            .collect();
        let readers = (self.source.snapshot_parallelism.max(1) as usize)
            .min(queue.len())
            .max(1);
        let reader = Arc::new(SnapshotReader {
            params: self.params.clone(),
            snapshot: snapshot.to_string(),
            commit: consistent_point.saturating_sub(1),
            chunk: u64::from(self.source.snapshot_chunk_rows.max(1)),
            now_us: now_micros(),
            name: self.name.clone(),
            stats: self.stats.clone(),
            queue: std::sync::Mutex::new(queue),
        });
        // A few batches per reader in flight: rows waiting as events weigh more
        // than the encoded messages the producer queue holds.
        let (sender, mut batches) = tokio::sync::mpsc::channel(2 * readers);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..readers {
            let reader = reader.clone();
            let sender = sender.clone();
            tasks.spawn(async move {
                if let Err(e) = reader.run(&sender).await {
                    let _ = sender.send(Err(e)).await;
                }
            });
        }
        drop(sender);
        // Ends when every reader is done (all senders dropped); the first
        // error stops the snapshot (the readers end with the JoinSet).
        while let Some(batch) = batches.recv().await {
            for event in batch? {
                self.producer.send(&event).await?;
            }
        }
        // A reader that panicked dropped its sender without an error.
        while let Some(joined) = tasks.join_next().await {
            joined.map_err(|e| CaptureError::Protocol(format!("snapshot reader failed: {e}")))?;
        }
        self.producer.flush().await?;
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            readers,
            "snapshot done"
        );
        Ok(())
    }

    async fn stream(
        &mut self,
        repl: &mut ReplicationConnection,
        confirmed: &mut u64,
        stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<(), CaptureError> {
        let tracker = self.producer.tracker();
        let mut relations: HashMap<u32, Option<(Relation, Shape)>> = HashMap::new();
        let mut types: HashMap<(u32, i32), String> = HashMap::new();
        let mut tx: Option<Tx> = None;
        // Streamed transactions not yet confirmed.
        let mut commits: VecDeque<Committed> = VecDeque::new();
        let mut wal_end: u64 = 0;
        let mut status = tokio::time::interval(Duration::from_secs(1));
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let heartbeat_every =
            Duration::from_secs(u64::from(self.source.heartbeat_interval_secs.max(1)));
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = false;
        let mut progress = ProgressReport::new(&self.stats);
        let mut last_wal_query = Instant::now() - WAL_QUERY_EVERY;
        loop {
            let message = tokio::select! {
                biased;
                _ = stop.as_mut(), if !stopping => {
                    stopping = true;
                    None
                }
                _ = status.tick() => None,
                _ = heartbeat.tick(), if self.source.heartbeat_interval_secs > 0 => {
                    if let Err(e) = self.heartbeat().await {
                        tracing::warn!(error = %e, "heartbeat failed; an idle slot may hold WAL back");
                    }
                    None
                }
                m = repl.next_copy() => Some(m?),
            };
            match message {
                Some(CopyMessage::XLogData { data, end, .. }) => {
                    wal_end = wal_end.max(end);
                    self.stats.wal_end.fetch_max(end, Ordering::Relaxed);
                    self.stats
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    let msg = pgoutput::decode(data).map_err(CaptureError::Protocol)?;
                    self.handle(msg, &mut tx, &mut commits, &mut relations, &mut types)
                        .await?;
                    continue;
                }
                Some(CopyMessage::Keepalive {
                    wal_end: end,
                    reply,
                }) => {
                    wal_end = wal_end.max(end);
                    self.stats.wal_end.fetch_max(end, Ordering::Relaxed);
                    if !reply {
                        continue;
                    }
                }
                None => {}
            }
            if let Some(f) = tracker.failure() {
                return Err(CaptureError::Produce(ProduceError::Delivery(f)));
            }
            // What may be confirmed: transactions Kafka has all of.
            let mut target =
                acknowledged_end(&mut commits, tracker.acknowledged_commit(), *confirmed);
            if commits.is_empty() && tx.is_none() && tracker.in_flight() == 0 {
                target = target.max(wal_end);
            }
            self.confirm(repl, confirmed, target).await?;
            if last_wal_query.elapsed() >= WAL_QUERY_EVERY {
                last_wal_query = Instant::now();
                self.query_wal_end().await;
            }
            let oldest = commits.front().map(|c| c.commit_ts_us).or(tx
                .as_ref()
                .map(|t| t.commit_ts.saturating_add(PG_EPOCH_OFFSET_MICROS)));
            self.stats.set_oldest_unacknowledged(oldest);
            if let Some((events, events_per_sec)) = progress.due(&self.stats) {
                tracing::info!(
                    slot = %self.slot,
                    events,
                    events_per_sec,
                    lag_bytes = self.stats.lag_bytes(),
                    lag_secs = self.stats.lag_secs(),
                    confirmed = %lsn_text(*confirmed),
                    "capture progress"
                );
            }
            if stopping {
                // Wait for the acknowledgements of what was sent, confirm
                // the transactions that are complete, and go. An open
                // transaction is sent again, whole, on the next start.
                self.producer.flush().await?;
                let target =
                    acknowledged_end(&mut commits, tracker.acknowledged_commit(), *confirmed);
                self.confirm(repl, confirmed, target).await?;
                return Ok(());
            }
        }
    }

    /// Records `target` in the state topic if it moved, then tells the slot.
    async fn confirm(
        &mut self,
        repl: &mut ReplicationConnection,
        confirmed: &mut u64,
        target: u64,
    ) -> Result<(), CaptureError> {
        if target > *confirmed {
            self.record(target, true).await?;
            *confirmed = target;
            self.stats.confirmed_lsn.store(target, Ordering::SeqCst);
        }
        repl.send_status(*confirmed, false).await?;
        Ok(())
    }

    /// The server's current WAL position, for the lag in bytes. A failure
    /// only leaves the figure older.
    async fn query_wal_end(&self) {
        let query = self.sql.query_one("SELECT pg_current_wal_lsn()::text", &[]);
        match tokio::time::timeout(Duration::from_secs(2), query).await {
            Ok(Ok(row)) => {
                if let Some(lsn) = row
                    .try_get::<_, String>(0)
                    .ok()
                    .as_deref()
                    .and_then(parse_lsn)
                {
                    self.stats.wal_end.fetch_max(lsn, Ordering::Relaxed);
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "pg_current_wal_lsn failed"),
            Err(_) => tracing::debug!("pg_current_wal_lsn timed out"),
        }
    }

    async fn heartbeat(&self) -> Result<(), CaptureError> {
        match &self.source.heartbeat_table {
            Some(t) => {
                let id = TableId::parse(t, Dialect::Postgres)
                    .map_err(|e| CaptureError::Config(format!("heartbeat_table: {e}")))?;
                self.sql
                    .batch_execute(&format!(
                        "INSERT INTO {}.{} (id, ts) VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET ts = now()",
                        quote_ident(&id.schema),
                        quote_ident(&id.name)
                    ))
                    .await?;
            }
            None => {
                self.sql
                    .batch_execute(
                        "SELECT pg_logical_emit_message(false, 'tidewater_heartbeat', '')",
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn handle(
        &mut self,
        msg: Message,
        tx: &mut Option<Tx>,
        commits: &mut VecDeque<Committed>,
        relations: &mut HashMap<u32, Option<(Relation, Shape)>>,
        types: &mut HashMap<(u32, i32), String>,
    ) -> Result<(), CaptureError> {
        match msg {
            Message::Begin {
                final_lsn,
                commit_ts,
                xid,
            } => {
                *tx = Some(Tx {
                    final_lsn,
                    commit_ts,
                    xid,
                    ordinal: 0,
                    per_table: HashMap::new(),
                });
            }
            Message::Commit { end_lsn, .. } => {
                if let Some(t) = tx.take() {
                    self.producer
                        .end_of_transaction(Position::new(t.final_lsn, u64::MAX));
                    commits.push_back(Committed {
                        commit: t.final_lsn,
                        end: end_lsn,
                        commit_ts_us: t.commit_ts.saturating_add(PG_EPOCH_OFFSET_MICROS),
                    });
                }
            }
            Message::Relation(rel) => {
                let id = TableId::new(rel.namespace.clone(), rel.name.clone());
                let entry = match self.tables.get(&id) {
                    Some(c) => {
                        let shape = self.relation_shape(&rel, &c.clone(), types).await?;
                        Some((rel.clone(), shape))
                    }
                    None => None,
                };
                relations.insert(rel.oid, entry);
            }
            Message::Insert { relation, new } => {
                self.row_change(relations, tx, relation, None, Some(new), true)
                    .await?;
            }
            Message::Update { relation, old, new } => {
                self.row_change(relations, tx, relation, old, Some(new), false)
                    .await?;
            }
            Message::Delete { relation, old } => {
                self.row_change(relations, tx, relation, Some(old), None, false)
                    .await?;
            }
            Message::Truncate { relations: oids } => {
                for oid in oids {
                    let Some(Some((_, shape))) = relations.get(&oid) else {
                        continue;
                    };
                    let schema = shape.schema.clone();
                    if self.source.truncate == TruncateMode::Stop {
                        return Err(CaptureError::Operator(format!(
                            "table {} was truncated and the pipeline says `truncate: stop`. Fix: re-snapshot the table, or set `truncate: propagate`",
                            schema.id
                        )));
                    }
                    let event = self.stream_event(tx, oid, schema, Op::Truncate, None, None)?;
                    self.producer.send(&event).await?;
                }
            }
            Message::Origin | Message::Type | Message::Message { .. } => {}
        }
        Ok(())
    }

    async fn relation_shape(
        &self,
        rel: &Relation,
        cfg: &TableConfig,
        types: &mut HashMap<(u32, i32), String>,
    ) -> Result<Shape, CaptureError> {
        let id = TableId::new(rel.namespace.clone(), rel.name.clone());
        // Nullability, key and dimensions from the catalog as it is now;
        // names and types from the message (they are the stream's truth).
        let table = lookup_table(&self.sql, &id).await.ok();
        let mut columns = Vec::with_capacity(rel.columns.len());
        for c in &rel.columns {
            let now = table
                .as_ref()
                .and_then(|t| t.columns.iter().find(|x| x.name == c.name));
            columns.push(CatalogColumn {
                name: c.name.clone(),
                type_name: type_name(&self.sql, types, c.type_oid, c.type_modifier).await?,
                dims: now.map_or(0, |n| n.dims),
                not_null: now.is_some_and(|n| n.not_null),
            });
        }
        let identity = char::from(rel.replica_identity);
        let mut pk = table
            .as_ref()
            .map(|t| t.primary_key.clone())
            .unwrap_or_default();
        // A Relation from before a key column was renamed or dropped (a
        // replay after a restart): with the default replica identity the
        // message's key flags are that time's primary key.
        if identity == 'd' && pk.iter().any(|k| !rel.columns.iter().any(|c| c.name == *k)) {
            pk = rel
                .columns
                .iter()
                .filter(|c| c.key)
                .map(|c| c.name.clone())
                .collect();
        }
        build_shape(&id, &self.params.database, &columns, &pk, identity, cfg)
    }

    async fn row_change(
        &mut self,
        relations: &HashMap<u32, Option<(Relation, Shape)>>,
        tx: &mut Option<Tx>,
        oid: u32,
        old: Option<Vec<Value>>,
        new: Option<Vec<Value>>,
        is_insert: bool,
    ) -> Result<(), CaptureError> {
        let Some(entry) = relations.get(&oid) else {
            return Err(CaptureError::Protocol(format!(
                "pgoutput: a change of relation {oid} came before its Relation message"
            )));
        };
        let Some((_, shape)) = entry else {
            return Ok(());
        };
        let position = Position::new(
            tx.as_ref().map_or(0, |t| t.final_lsn),
            tx.as_ref().map_or(0, |t| t.ordinal),
        );
        let before = match &old {
            Some(values) => Some(tuple_row(values, shape, None, position)?),
            None => None,
        };
        let after = match &new {
            Some(values) => Some(tuple_row(values, shape, old.as_deref(), position)?),
            None => None,
        };
        let schema = shape.schema.clone();
        let is_update = new.is_some() && !is_insert;
        let events = match (before, after) {
            (None, Some(a)) if !is_update => vec![(Op::Create, None, Some(a))],
            (b, Some(a)) => {
                // An update; one that changes the key is a delete of the old
                // key and a create of the new one, as Debezium does.
                match b {
                    Some(b)
                        if schema.key_of(&b) != schema.key_of(&a)
                            && !key_has_unknown(&b, &schema) =>
                    {
                        vec![(Op::Delete, Some(b), None), (Op::Create, None, Some(a))]
                    }
                    b => vec![(Op::Update, b, Some(a))],
                }
            }
            (Some(b), None) => vec![(Op::Delete, Some(b), None)],
            (None, None) => Vec::new(),
        };
        for (op, before, after) in events {
            let event = self.stream_event(tx, oid, schema.clone(), op, before, after)?;
            self.producer.send(&event).await?;
        }
        Ok(())
    }

    fn stream_event(
        &self,
        tx: &mut Option<Tx>,
        oid: u32,
        schema: Arc<crate::event::schema::TableSchema>,
        op: Op,
        before: Option<Row>,
        after: Option<Row>,
    ) -> Result<ChangeEvent, CaptureError> {
        let Some(t) = tx.as_mut() else {
            return Err(CaptureError::Protocol(
                "pgoutput: a change outside a transaction".into(),
            ));
        };
        let position = Position::new(t.final_lsn, t.ordinal);
        t.ordinal += 1;
        let per_table = t.per_table.entry(oid).or_default();
        *per_table += 1;
        let commit_ts_us = t.commit_ts.saturating_add(PG_EPOCH_OFFSET_MICROS);
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        Ok(ChangeEvent {
            source: source_block(
                &self.name,
                &self.params.database,
                &schema.id,
                commit_ts_us,
                SnapshotMarker::False,
                t.final_lsn,
                Some(t.xid),
            ),
            table: schema,
            op,
            position,
            before,
            after,
            transaction: Some(Transaction {
                id: format!("{}:{}", t.xid, t.final_lsn),
                total_order: t.ordinal,
                data_collection_order: *per_table,
            }),
            ts_us: now_micros(),
        })
    }
}

fn source_block(
    name: &str,
    database: &str,
    table: &TableId,
    commit_ts_us: i64,
    snapshot: SnapshotMarker,
    lsn: u64,
    xid: Option<u32>,
) -> Source {
    Source {
        name: name.to_string(),
        db: database.to_string(),
        schema: table.schema.clone(),
        table: table.name.clone(),
        commit_ts_us,
        snapshot,
        detail: SourceDetail::Postgres { lsn, tx_id: xid },
    }
}

/// Snapshot rows go to the producing task in batches of this many.
const SNAPSHOT_BATCH: usize = 1024;

type SnapshotBatches = tokio::sync::mpsc::Sender<Result<Vec<ChangeEvent>, CaptureError>>;

/// What the snapshot readers share: where to connect, the exported
/// snapshot, and the queue of tables still to read.
struct SnapshotReader {
    params: ConnectParams,
    snapshot: String,
    /// Position of every snapshot row: `consistent_point - 1`.
    commit: u64,
    chunk: u64,
    now_us: i64,
    name: String,
    stats: Arc<CaptureStats>,
    queue: std::sync::Mutex<VecDeque<(usize, TableId, TableConfig)>>,
}

impl SnapshotReader {
    /// One reader: its own connection in the snapshot, tables from the queue
    /// until it is empty. Returns early (Ok) when the producing side stopped.
    async fn run(&self, out: &SnapshotBatches) -> Result<(), CaptureError> {
        let reader = connect_sql(&self.params).await?;
        reader
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                quote_literal(&self.snapshot)
            ))
            .await?;
        loop {
            let next = self
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            let Some((table_no, id, cfg)) = next else {
                break;
            };
            if !self.table(&reader, table_no, &id, &cfg, out).await? {
                return Ok(());
            }
        }
        reader.batch_execute("COMMIT").await?;
        Ok(())
    }

    /// Reads one table; false when the producing side is gone.
    async fn table(
        &self,
        reader: &Client,
        table_no: usize,
        id: &TableId,
        cfg: &TableConfig,
        out: &SnapshotBatches,
    ) -> Result<bool, CaptureError> {
        let commit = self.commit;
        let table = lookup_table(reader, id).await?;
        let shape = build_shape(
            id,
            &self.params.database,
            &table.columns,
            &table.primary_key,
            table.replica_identity,
            cfg,
        )?;
        let schema = shape.schema.clone();
        let select: Vec<String> = schema
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        let key_cols: Vec<String> = schema
            .key
            .iter()
            .filter_map(|i| schema.columns.get(*i))
            .map(|c| quote_ident(&c.name))
            .collect();
        let key_types: Vec<String> = schema
            .key
            .iter()
            .filter_map(|i| schema.columns.get(*i))
            .map(|c| c.source_type.clone())
            .collect();
        // Tables keyed by every column (REPLICA IDENTITY FULL, no key) are
        // read in one go: json and other columns have no order.
        let chunked = cfg.key.is_some() || !table.primary_key.is_empty();
        let first = (table_no as u64) << 40;
        let mut ordinal = first;
        let mut last_key: Option<Vec<String>> = None;
        let mut last_line = Vec::<u8>::new();
        let mut batch = Vec::with_capacity(SNAPSHOT_BATCH);
        loop {
            let mut sql = format!(
                "COPY (SELECT {} FROM {}.{}",
                select.join(", "),
                quote_ident(&id.schema),
                quote_ident(&id.name)
            );
            if chunked {
                if let Some(last) = &last_key {
                    let values: Vec<String> = last
                        .iter()
                        .zip(&key_types)
                        .map(|(v, t)| format!("{}::{t}", quote_literal(v)))
                        .collect();
                    sql.push_str(&format!(
                        " WHERE ({}) > ({})",
                        key_cols.join(", "),
                        values.join(", ")
                    ));
                }
                sql.push_str(&format!(
                    " ORDER BY {} LIMIT {}",
                    key_cols.join(", "),
                    self.chunk
                ));
            }
            sql.push_str(") TO STDOUT");
            let stream = reader.copy_out(sql.as_str()).await?;
            futures::pin_mut!(stream);
            let mut rows = 0u64;
            let mut pending = Vec::<u8>::new();
            while let Some(part) = stream.next().await {
                let part: Bytes = part?;
                pending.extend_from_slice(&part);
                let mut start = 0;
                while let Some(nl) = pending
                    .get(start..)
                    .and_then(|p| p.iter().position(|b| *b == b'\n'))
                {
                    let line = pending.get(start..start + nl).unwrap_or_default();
                    let position = Position::new(commit, ordinal);
                    let row = copy_row(line, &schema, position)?;
                    if chunked {
                        last_line.clear();
                        last_line.extend_from_slice(line);
                    }
                    batch.push(ChangeEvent {
                        table: schema.clone(),
                        op: Op::Read,
                        position,
                        before: None,
                        after: Some(row),
                        source: source_block(
                            &self.name,
                            &self.params.database,
                            id,
                            self.now_us,
                            SnapshotMarker::True,
                            commit,
                            None,
                        ),
                        transaction: None,
                        ts_us: self.now_us,
                    });
                    if batch.len() >= SNAPSHOT_BATCH {
                        let full =
                            std::mem::replace(&mut batch, Vec::with_capacity(SNAPSHOT_BATCH));
                        if out.send(Ok(full)).await.is_err() {
                            return Ok(false);
                        }
                    }
                    ordinal += 1;
                    rows += 1;
                    start += nl + 1;
                }
                pending.drain(..start);
            }
            if chunked && rows > 0 {
                // The next chunk starts after the last key read.
                let fields: Vec<&[u8]> = last_line.split(|b| *b == b'\t').collect();
                let mut key = Vec::with_capacity(schema.key.len());
                for i in &schema.key {
                    let raw = fields.get(*i).copied().unwrap_or_default();
                    let text = copy_field(raw)
                        .map_err(|e| value_error(&schema, *i, Position::new(commit, ordinal), e))?;
                    key.push(text.unwrap_or_default());
                }
                last_key = Some(key);
            }
            self.stats.snapshot_rows.fetch_add(rows, Ordering::Relaxed);
            self.stats.snapshot_progress(id, |p| p.rows += rows);
            if !chunked || rows < self.chunk {
                break;
            }
        }
        if !batch.is_empty() && out.send(Ok(batch)).await.is_err() {
            return Ok(false);
        }
        self.stats.snapshot_progress(id, |p| p.done = true);
        tracing::info!(table = %id, rows = ordinal - first, "snapshot of table done");
        Ok(true)
    }
}

/// How often the server's WAL position is asked for (lag in bytes).
const WAL_QUERY_EVERY: Duration = Duration::from_secs(5);

/// A streamed transaction, committed at the source, not yet confirmed.
#[derive(Debug, Clone, Copy)]
struct Committed {
    /// LSN of its commit record (its events' position).
    commit: u64,
    /// LSN just past it: what the slot may be confirmed to.
    end: u64,
    commit_ts_us: i64,
}

/// Pops the streamed transactions Kafka has all of and returns the end LSN
/// of the last one (or `confirmed` when none is complete).
fn acknowledged_end(
    commits: &mut VecDeque<Committed>,
    acked: Option<Position>,
    confirmed: u64,
) -> u64 {
    let mut target = confirmed;
    while let Some(&Committed { commit, end, .. }) = commits.front() {
        if acked.is_some_and(|a| a.commit >= commit) {
            target = target.max(end);
            commits.pop_front();
        } else {
            break;
        }
    }
    target
}

/// An old tuple sent as `K` carries NULL for every non-key column, but the
/// key itself is always there; an `Unchanged` key cannot be compared.
fn key_has_unknown(row: &Row, schema: &crate::event::schema::TableSchema) -> bool {
    schema
        .key
        .iter()
        .any(|i| matches!(row.get(*i), Some(Datum::Unchanged)))
}

struct SlotInfo {
    confirmed: u64,
    wal_status: Option<String>,
}

struct CreatedSlot {
    consistent_point: u64,
    snapshot: String,
}

async fn create_slot(
    repl: &mut ReplicationConnection,
    name: &str,
    temporary: bool,
) -> Result<CreatedSlot, CaptureError> {
    let rows = repl
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT {} {}LOGICAL pgoutput EXPORT_SNAPSHOT",
            quote_ident(name),
            if temporary { "TEMPORARY " } else { "" }
        ))
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| CaptureError::Protocol("CREATE_REPLICATION_SLOT returned no row".into()))?;
    let consistent_point = row
        .get(1)
        .cloned()
        .flatten()
        .as_deref()
        .and_then(parse_lsn)
        .ok_or_else(|| {
            CaptureError::Protocol("CREATE_REPLICATION_SLOT: no consistent point".into())
        })?;
    let snapshot = row.get(2).cloned().flatten().ok_or_else(|| {
        CaptureError::Protocol("CREATE_REPLICATION_SLOT: no snapshot name".into())
    })?;
    Ok(CreatedSlot {
        consistent_point,
        snapshot,
    })
}

/// Where, as whom and how (TLS) to connect, from the pipeline's source.
pub fn connect_params(source: &PostgresSource) -> Result<ConnectParams, CaptureError> {
    if let Ok(url) = url::Url::parse(&source.url)
        && let Some((name, _)) = url.query_pairs().next()
    {
        return Err(CaptureError::Config(format!(
            "source.url: parameter `{name}` in the URL is not read; use `source.tls` for TLS and `password` for the password"
        )));
    }
    let mut params =
        ConnectParams::parse(&source.url, source.password.as_ref().map(|p| p.expose()))
            .map_err(|e| CaptureError::Config(format!("source.url: {e}")))?;
    params.tls =
        tls::TlsSettings::from_config(source.tls.as_ref()).map_err(CaptureError::Config)?;
    Ok(params)
}

pub async fn connect_sql(params: &ConnectParams) -> Result<Client, CaptureError> {
    let (client, connection) = params
        .sql_config()
        .connect(tls::MakeRustls(params.tls.clone()))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

fn value_error(
    schema: &crate::event::schema::TableSchema,
    column: usize,
    position: Position,
    message: String,
) -> CaptureError {
    CaptureError::Value {
        table: schema.id.clone(),
        column: schema
            .columns
            .get(column)
            .map(|c| c.name.clone())
            .unwrap_or_default(),
        position,
        message,
    }
}

/// A pgoutput tuple as a row of the shape. An unchanged TOAST value takes
/// the old tuple's value when the old tuple has it (REPLICA IDENTITY FULL);
/// otherwise it stays [`Datum::Unchanged`] and the sink keeps the stored
/// value.
fn tuple_row(
    values: &[Value],
    shape: &Shape,
    old: Option<&[Value]>,
    position: Position,
) -> Result<Row, CaptureError> {
    let schema = &shape.schema;
    let mut row = vec![Datum::Null; schema.columns.len()];
    for (i, value) in values.iter().enumerate() {
        let Some(Some(target)) = shape.targets.get(i) else {
            continue;
        };
        let Some(column) = schema.columns.get(*target) else {
            continue;
        };
        let value = match (value, old.and_then(|o| o.get(i))) {
            (Value::Unchanged, Some(v @ Value::Text(_))) => v,
            (v, _) => v,
        };
        let datum = match value {
            Value::Null => Datum::Null,
            Value::Unchanged => Datum::Unchanged,
            Value::Text(bytes) => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| value_error(schema, *target, position, e.to_string()))?;
                parse_value(text, &column.ty)
                    .map_err(|e| value_error(schema, *target, position, e))?
            }
        };
        if let Some(slot) = row.get_mut(*target) {
            *slot = datum;
        }
    }
    Ok(Row(row))
}

/// One `COPY` text line as a row.
fn copy_row(
    line: &[u8],
    schema: &crate::event::schema::TableSchema,
    position: Position,
) -> Result<Row, CaptureError> {
    let mut row = Vec::with_capacity(schema.columns.len());
    for (i, raw) in line.split(|b| *b == b'\t').enumerate() {
        let column = schema.columns.get(i).ok_or_else(|| {
            CaptureError::Protocol(format!("COPY of {} returned too many fields", schema.id))
        })?;
        let text = copy_field(raw).map_err(|e| value_error(schema, i, position, e))?;
        let datum = match &text {
            None => Datum::Null,
            Some(t) => {
                parse_value(t, &column.ty).map_err(|e| value_error(schema, i, position, e))?
            }
        };
        row.push(datum);
    }
    if row.len() != schema.columns.len() {
        return Err(CaptureError::Protocol(format!(
            "COPY of {} returned {} fields for {} columns",
            schema.id,
            row.len(),
            schema.columns.len()
        )));
    }
    Ok(Row(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fully_acknowledged_transactions_are_confirmed() {
        let mut commits: VecDeque<Committed> = [(100, 120), (200, 230), (300, 310)]
            .into_iter()
            .map(|(commit, end)| Committed {
                commit,
                end,
                commit_ts_us: 0,
            })
            .collect();
        assert_eq!(acknowledged_end(&mut commits, None, 50), 50);
        assert_eq!(commits.len(), 3);
        // Kafka has everything of the first two transactions.
        let acked = Some(Position::new(200, u64::MAX));
        assert_eq!(acknowledged_end(&mut commits, acked, 50), 230);
        assert_eq!(commits.len(), 1);
        // Never backwards.
        assert_eq!(acknowledged_end(&mut commits, acked, 999), 999);
    }
}
