//! MySQL/MariaDB capture: a consistent snapshot with its exact binlog
//! position, then the row binlog from that position, each change published
//! once Kafka acknowledged everything before it.
//!
//! # The position contract
//!
//! A streamed change's position is (`file number << 32 | position` of its
//! transaction's first event — the GTID event, or `BEGIN` — in the binlog,
//! ordinal in the transaction). The binlog is written in commit order, so
//! positions grow with commits. A snapshot row's position is (the snapshot's
//! binlog position − 1, row ordinal): every transaction in the snapshot ends
//! at or before that position and every streamed one starts at or after it.
//! `RESET MASTER` restarts file numbers, so it is refused (below) rather than
//! allowed to break the order.
//!
//! # State (the `_tidewater_state` topic, key `mysql/<pipeline>`)
//!
//! `{"flavor", "server_id", "server_uuid", "snapshot_done", "file", "pos",
//! "gtid"}`: the binlog file and position just past the last transaction
//! whose every event Kafka acknowledged (the delivery low-watermark), and
//! the GTID position at that point. Written with acks=all, at most once a
//! second while streaming and when stopping. A restart resumes at `file`
//! and `pos`: an interrupted transaction is read again from its start, so
//! nothing is lost and the events sent twice carry the same positions (the
//! sink keeps one). Before resuming, capture checks that the server is the
//! one recorded (`server_uuid`, or `server_id` on MariaDB), that `file` is
//! still among the server's binary logs (not purged), and that the recorded
//! GTIDs are contained in the server's (not reset); otherwise it stops with
//! the cause and the fix (G6). An interrupted snapshot is taken again from
//! the start at a new position (rows read twice are duplicates with a newer
//! position).
//!
//! # Shapes
//!
//! Rows decode by the table map that precedes them, written with
//! `binlog_row_metadata = FULL` ([`columns`]), so the schema history is the
//! binlog itself and survives restarts without being stored.
//!
//! # Connections
//!
//! One connection reads the snapshot inside `START TRANSACTION WITH
//! CONSISTENT SNAPSHOT` (MariaDB gives its binlog position without a lock,
//! `binlog_snapshot_file`/`_position`; MySQL holds `FLUSH TABLES WITH READ
//! LOCK` only while the transaction starts and the position is read). One
//! connection is the binlog dump, registered with `source.server_id` (which
//! must be unique among the server's replicas: a second dump with the same
//! id replaces the first). One connection queries the server's binlog list
//! for the lag figures. All come from one [`connection::Connections`]: TLS as
//! `source.tls` says, with the same modes as for Postgres.

pub mod columns;
pub mod connection;
pub mod ddl;
pub mod gtid;
pub mod preflight;
pub mod rows;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn, Value as MyValue};
use mysql_common::binlog::events::{EventData, RowsEventData};
use serde_json::json;

use self::columns::{ColumnDef, MappedTable, canonical_type, from_table_map};
use self::connection::Connections;
use self::ddl::Statement;
use self::gtid::{Gtids, MariadbGtid};
use self::rows::{Decoding, Reader, read_image, to_row};
use crate::config::model::{
    MysqlSource, PipelineConfig, SnapshotMode, SourceConfig, TableConfig, TruncateMode, ZeroDates,
};
use crate::config::validate::default_server_id;
use crate::event::change::{
    ChangeEvent, Op, Position, SnapshotMarker, Source, SourceDetail, Transaction,
};
use crate::event::datum::{Datum, Row};
use crate::event::decimal::Decimal;
use crate::event::table_id::{Dialect, TableId};
use crate::event::time::days_from_civil;
use crate::event::types::{ColumnType, map_mysql};
use crate::kafka::avro::schema::Connector;
use crate::kafka::client::client_config;
use crate::kafka::producer::{EventProducer, EventSerializer, ProduceError, ProducerOptions};
use crate::kafka::schemas::SchemaStore;
use crate::kafka::state::StateStore;
use crate::sources::capture::{ProgressReport, SnapshotProgress, now_micros};
use crate::sources::{CaptureError, CaptureStats, Shape, SourceColumn, table_shape};

/// How often the acknowledged position is written to the state topic.
const RECORD_EVERY: Duration = Duration::from_secs(1);
/// How often the server's binlog list is read for the lag in bytes.
const LAG_QUERY_EVERY: Duration = Duration::from_secs(5);
/// Snapshot rows go to the producer in batches of this many.
const SNAPSHOT_BATCH: usize = 1024;

/// Runs capture for `cfg` until `stop` resolves or an error needs an
/// operator. Connection losses and Kafka failures reconnect with backoff and
/// resume from the recorded position.
pub async fn run(
    cfg: &PipelineConfig,
    stats: Arc<CaptureStats>,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), CaptureError> {
    let SourceConfig::Mysql(source) = &cfg.source else {
        return Err(CaptureError::Config("not a mysql pipeline".into()));
    };
    Connections::new(source)?;
    crate::sources::with_reconnects(&cfg.name, "the recorded binlog position", stop, |stop| {
        let (cfg, source, stats) = (cfg.clone(), source.clone(), stats.clone());
        Box::pin(async move {
            let mut session = Session::open(&cfg, &source, stats).await?;
            session.run(stop).await
        })
    })
    .await
}

/// The number of a binlog file name (`mariadb-bin.000012` → 12).
pub fn file_number(name: &str) -> Option<u32> {
    name.rsplit_once('.')?.1.parse().ok()
}

/// A rotate event's file name. The fake rotate that opens the stream comes
/// before the format description event, so the client has not stripped its
/// checksum yet: with checksums on, its last 4 bytes are the CRC (which may
/// well look like digits), not part of the name.
fn rotate_file_name(raw: &[u8], checksum_attached: bool) -> String {
    let name = if checksum_attached {
        raw.get(..raw.len().saturating_sub(4)).unwrap_or_default()
    } else {
        raw
    };
    String::from_utf8_lossy(name).into_owned()
}

pub fn position_of(file: &str, pos: u64) -> u64 {
    (u64::from(file_number(file).unwrap_or(0)) << 32) | (pos & 0xffff_ffff)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Mariadb,
    Mysql,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::Mariadb => "mariadb",
            Flavor::Mysql => "mysql",
        }
    }
}

/// What the server says about itself.
struct ServerInfo {
    flavor: Flavor,
    server_id: u32,
    /// MySQL only.
    uuid: Option<String>,
    gtids: Gtids,
}

/// A binlog position with the GTIDs up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BinlogPos {
    file: String,
    pos: u64,
    gtids: Gtids,
}

/// A table map of a captured table, decoded.
struct Mapped {
    /// The event body it was built from (table maps repeat every transaction).
    raw: Vec<u8>,
    columns: Vec<ColumnDef>,
    shape: Shape,
}

/// A transaction being streamed.
struct Tx {
    /// Its position (first event).
    commit: u64,
    gtid: Option<String>,
    /// Ended by XID or COMMIT (MariaDB non-standalone GTID, or BEGIN seen);
    /// otherwise by the statement after it.
    explicit: bool,
    ts_us: i64,
    ordinal: u64,
    per_table: HashMap<TableId, u64>,
}

impl Tx {
    fn new(commit: u64, gtid: Option<String>, explicit: bool, ts_us: i64) -> Tx {
        Tx {
            commit,
            gtid,
            explicit,
            ts_us,
            ordinal: 0,
            per_table: HashMap::new(),
        }
    }
}

/// A streamed transaction not yet recorded.
struct Committed {
    commit: u64,
    end: BinlogPos,
    ts_us: i64,
}

struct Session {
    name: String,
    source: MysqlSource,
    connections: Connections,
    sql: Conn,
    producer: EventProducer,
    state: StateStore,
    state_key: String,
    server_id: u32,
    tables: HashMap<TableId, TableConfig>,
    stats: Arc<CaptureStats>,
    info: ServerInfo,
}

/// A query connection.
async fn connect(connections: &Connections) -> Result<Conn, CaptureError> {
    let mut conn = connections.connect().await?;
    // TIMESTAMP values as UTC, text as UTF-8, whatever the server defaults.
    conn.query_drop("SET time_zone = '+00:00', NAMES utf8mb4")
        .await?;
    Ok(conn)
}

async fn server_info(conn: &mut Conn) -> Result<ServerInfo, CaptureError> {
    let version: Option<String> = conn.query_first("SELECT @@version").await?;
    let flavor = if version
        .unwrap_or_default()
        .to_ascii_lowercase()
        .contains("mariadb")
    {
        Flavor::Mariadb
    } else {
        Flavor::Mysql
    };
    let server_id: Option<u32> = conn.query_first("SELECT @@server_id").await?;
    let (uuid, gtid_text): (Option<String>, Option<String>) = match flavor {
        Flavor::Mariadb => (
            None,
            conn.query_first("SELECT @@global.gtid_binlog_pos").await?,
        ),
        Flavor::Mysql => (
            conn.query_first("SELECT @@server_uuid").await?,
            conn.query_first("SELECT @@global.gtid_executed").await?,
        ),
    };
    let gtids = Gtids::parse(&gtid_text.unwrap_or_default())
        .map_err(|e| CaptureError::Protocol(format!("the server's GTID position: {e}")))?;
    Ok(ServerInfo {
        flavor,
        server_id: server_id.unwrap_or(0),
        uuid,
        gtids,
    })
}

/// `SHOW BINARY LOGS`: (file, size) in order.
async fn binary_logs(conn: &mut Conn) -> Result<Vec<(String, u64)>, CaptureError> {
    let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let name: String = r.get(0)?;
            let size: u64 = r.get(1)?;
            Some((name, size))
        })
        .collect())
}

/// Bytes of binlog after `file`:`pos`.
fn bytes_behind(logs: &[(String, u64)], file: &str, pos: u64) -> u64 {
    let mut behind = 0u64;
    let mut seen = false;
    for (name, size) in logs {
        if name == file {
            seen = true;
            behind += size.saturating_sub(pos);
        } else if seen {
            behind += size;
        }
    }
    behind
}

impl Session {
    async fn open(
        cfg: &PipelineConfig,
        source: &MysqlSource,
        stats: Arc<CaptureStats>,
    ) -> Result<Session, CaptureError> {
        let connections = Connections::new(source)?;
        let mut sql = connect(&connections).await?;
        let info = server_info(&mut sql).await?;
        // For the operator only: a failed status query is not a reason to stop.
        match connection::tls_in_use(&mut sql).await {
            Ok(Some((version, cipher))) => {
                tracing::info!(pipeline = %cfg.name, host = %connections.host(), tls = %version, cipher = %cipher, "mysql: connected over TLS");
            }
            Ok(None) => {
                tracing::info!(pipeline = %cfg.name, host = %connections.host(), tls_mode = connections.mode().name(), "mysql: connected without TLS");
            }
            Err(e) => tracing::debug!(error = %e, "mysql: TLS status not read"),
        }
        let prefix = cfg.kafka.topic_prefix.clone().unwrap_or(cfg.name.clone());
        let store = SchemaStore::new(&cfg.kafka)
            .map_err(|e| CaptureError::Config(format!("kafka.schema_registry: {e}")))?;
        let producer = EventProducer::new(
            &client_config(&cfg.kafka),
            EventSerializer::new(store, Connector::Mysql, prefix),
            ProducerOptions::from_config(&cfg.kafka),
        )?;
        let mut tables = HashMap::new();
        for t in &source.tables {
            let id = TableId::parse(&t.name, Dialect::Mysql)
                .map_err(|e| CaptureError::Config(format!("table `{}`: {e}", t.name)))?;
            tables.insert(id, t.clone());
        }
        Ok(Session {
            name: cfg.name.clone(),
            source: source.clone(),
            connections,
            sql,
            producer,
            state: StateStore::new(&client_config(&cfg.kafka)),
            state_key: format!("mysql/{}", cfg.name),
            server_id: source
                .server_id
                .unwrap_or_else(|| default_server_id(&cfg.name)),
            tables,
            stats,
            info,
        })
    }

    async fn run(
        &mut self,
        stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<(), CaptureError> {
        self.preflight().await?;
        let state = self.state.read(&self.state_key).await?;
        let get = |k: &str| state.as_ref().and_then(|s| s.get(k)).cloned();
        let done = get("snapshot_done")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let start = if done {
            let file = get("file")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let pos = get("pos").and_then(|v| v.as_u64()).unwrap_or(4);
            let gtids = Gtids::parse(
                get("gtid")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
                    .as_str(),
            )
            .map_err(|e| CaptureError::Protocol(format!("recorded GTID position: {e}")))?;
            let recorded = BinlogPos { file, pos, gtids };
            self.check_resume(
                &recorded,
                get("server_id").and_then(|v| v.as_u64()),
                get("server_uuid").and_then(|v| v.as_str().map(str::to_string)),
            )
            .await?;
            recorded
        } else {
            let at = match self.source.snapshot {
                SnapshotMode::Initial => self.snapshot().await?,
                SnapshotMode::Never => self.current_position().await?,
            };
            self.record(&at).await?;
            at
        };
        self.stats.snapshot_done.store(true, Ordering::SeqCst);
        self.stats
            .confirmed_lsn
            .store(position_of(&start.file, start.pos), Ordering::SeqCst);
        tracing::info!(file = %start.file, pos = start.pos, gtid = %start.gtids, server_id = self.server_id, "streaming the binlog");
        self.stream(start, stop).await
    }

    /// What capture cannot run without; `check --connect` says more.
    async fn preflight(&mut self) -> Result<(), CaptureError> {
        let mut problems = Vec::new();
        for (name, want) in [
            ("log_bin", "ON"),
            ("binlog_format", "ROW"),
            ("binlog_row_image", "FULL"),
            ("binlog_row_metadata", "FULL"),
        ] {
            let row: Option<(String, String)> = self
                .sql
                .exec_first("SHOW GLOBAL VARIABLES WHERE Variable_name = ?", (name,))
                .await?;
            match row {
                Some((_, v)) if v.eq_ignore_ascii_case(want) => {}
                Some((_, v)) => problems.push(format!("{name} is `{v}`, needs `{want}`")),
                None => problems.push(format!(
                    "the server has no `{name}` (MariaDB 10.5+ or MySQL 8.0+ needed)"
                )),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(CaptureError::Operator(format!(
                "the server is not ready for binlog capture: {}. Fix: set them in the server's configuration (`tidewater check --connect` lists every problem)",
                problems.join("; ")
            )))
        }
    }

    /// Refuses to resume when the recorded position no longer means what it
    /// meant (G6).
    async fn check_resume(
        &mut self,
        at: &BinlogPos,
        server_id: Option<u64>,
        server_uuid: Option<String>,
    ) -> Result<(), CaptureError> {
        let fix = "Fix: take a new snapshot by giving the pipeline a new name (or deleting its record from the `_tidewater_state` topic); rows deleted in between stay in the lake until the table is re-snapshotted";
        match (&self.info.uuid, &server_uuid) {
            (Some(now), Some(was)) if now != was => {
                return Err(CaptureError::Operator(format!(
                    "the source server changed: its server_uuid was {was} and is now {now}, so binlog position {}:{} means nothing here. {fix}",
                    at.file, at.pos
                )));
            }
            _ => {}
        }
        if let Some(was) = server_id
            && self.info.uuid.is_none()
            && was != u64::from(self.info.server_id)
        {
            return Err(CaptureError::Operator(format!(
                "the source server changed: its server_id was {was} and is now {}, so binlog position {}:{} means nothing here. {fix}",
                self.info.server_id, at.file, at.pos
            )));
        }
        let logs = binary_logs(&mut self.sql).await?;
        if !logs.iter().any(|(name, _)| name == &at.file) {
            return Err(CaptureError::Operator(format!(
                "binlog file {} (position {}) is gone from the server, purged while tidewater was behind or stopped (the oldest is {}): changes after it cannot be read. Fix: keep binlogs longer (binlog_expire_logs_seconds / expire_logs_days) and {}",
                at.file,
                at.pos,
                logs.first().map_or("none", |(n, _)| n.as_str()),
                fix.trim_start_matches("Fix: ")
            )));
        }
        if !at.gtids.contained_in(&self.info.gtids) {
            return Err(CaptureError::Operator(format!(
                "the server's GTID position `{}` does not contain the recorded `{}`: the binlog was reset (RESET MASTER) or this is another server. {fix}",
                self.info.gtids, at.gtids
            )));
        }
        Ok(())
    }

    async fn current_position(&mut self) -> Result<BinlogPos, CaptureError> {
        let (file, pos) = master_status(&mut self.sql).await?;
        let info = server_info(&mut self.sql).await?;
        Ok(BinlogPos {
            file,
            pos,
            gtids: info.gtids,
        })
    }

    async fn record(&mut self, at: &BinlogPos) -> Result<(), CaptureError> {
        self.state
            .write(
                &self.state_key,
                &json!({
                    "flavor": self.info.flavor.name(),
                    "server_id": self.info.server_id,
                    "server_uuid": self.info.uuid,
                    "snapshot_done": true,
                    "file": at.file,
                    "pos": at.pos,
                    "gtid": at.gtids.to_string(),
                }),
            )
            .await?;
        Ok(())
    }

    /// Reads every table in one consistent-snapshot transaction, in
    /// primary-key chunks, as `op = r` events; returns the binlog position
    /// the snapshot is at.
    async fn snapshot(&mut self) -> Result<BinlogPos, CaptureError> {
        let started = Instant::now();
        let mut conn = connect(&self.connections).await?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await?;
        let at = match self.info.flavor {
            Flavor::Mariadb => {
                conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    .await?;
                let status: Vec<(String, String)> =
                    conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await?;
                let value = |name: &str| {
                    status
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                };
                let (Some(file), Some(pos)) = (
                    value("binlog_snapshot_file"),
                    value("binlog_snapshot_position").and_then(|p| p.parse::<u64>().ok()),
                ) else {
                    return Err(CaptureError::Protocol(
                        "MariaDB did not report binlog_snapshot_file/position".into(),
                    ));
                };
                let gtid: Option<String> = conn
                    .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file.clone(), pos))
                    .await?;
                BinlogPos {
                    file,
                    pos,
                    gtids: Gtids::parse(&gtid.unwrap_or_default())
                        .map_err(|e| CaptureError::Protocol(format!("BINLOG_GTID_POS: {e}")))?,
                }
            }
            Flavor::Mysql => {
                // The shortest lock MySQL allows: held while the snapshot
                // starts and the position is read.
                conn.query_drop("FLUSH TABLES WITH READ LOCK").await?;
                let result = async {
                    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                        .await?;
                    let (file, pos) = master_status(&mut conn).await?;
                    let gtid: Option<String> =
                        conn.query_first("SELECT @@global.gtid_executed").await?;
                    Ok::<_, CaptureError>(BinlogPos {
                        file,
                        pos,
                        gtids: Gtids::parse(&gtid.unwrap_or_default())
                            .map_err(|e| CaptureError::Protocol(format!("gtid_executed: {e}")))?,
                    })
                }
                .await;
                conn.query_drop("UNLOCK TABLES").await?;
                result?
            }
        };
        tracing::info!(file = %at.file, pos = at.pos, gtid = %at.gtids, "snapshot started");
        let commit = position_of(&at.file, at.pos).saturating_sub(1);
        let mut ids: Vec<TableId> = self.tables.keys().cloned().collect();
        ids.sort();
        let mut progress = Vec::new();
        for id in &ids {
            let estimate: Option<Option<i64>> = conn
                .exec_first(
                    "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                    (id.schema.clone(), id.name.clone()),
                )
                .await?;
            progress.push(SnapshotProgress {
                table: id.clone(),
                rows: 0,
                estimate: estimate.flatten().unwrap_or(-1),
                done: false,
            });
        }
        *self
            .stats
            .snapshot_tables
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = progress;
        let mut ordinal = 0u64;
        for id in &ids {
            let Some(cfg) = self.tables.get(id).cloned() else {
                continue;
            };
            self.snapshot_table(&mut conn, id, &cfg, &at, commit, &mut ordinal)
                .await?;
        }
        conn.query_drop("COMMIT").await?;
        let _ = conn.disconnect().await;
        self.producer.flush().await?;
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            rows = ordinal,
            "snapshot done"
        );
        Ok(at)
    }

    async fn snapshot_table(
        &mut self,
        conn: &mut Conn,
        id: &TableId,
        cfg: &TableConfig,
        at: &BinlogPos,
        commit: u64,
        ordinal: &mut u64,
    ) -> Result<(), CaptureError> {
        let (shape, key_columns) = catalog_shape(conn, id, cfg).await?;
        let schema = shape.schema.clone();
        let select: Vec<String> = schema.columns.iter().map(|c| quote(&c.name)).collect();
        let order: Vec<String> = key_columns.iter().map(|c| quote(c)).collect();
        let key_at: Vec<usize> = key_columns
            .iter()
            .filter_map(|k| schema.column_index(k))
            .collect();
        let chunk = self.source.snapshot_chunk_rows.max(1);
        let from = format!("{}.{}", quote(&id.schema), quote(&id.name));
        let first = format!(
            "SELECT {} FROM {from} ORDER BY {} LIMIT {chunk}",
            select.join(", "),
            order.join(", ")
        );
        let next = format!(
            "SELECT {} FROM {from} WHERE ({}) > ({}) ORDER BY {} LIMIT {chunk}",
            select.join(", "),
            order.join(", "),
            vec!["?"; order.len()].join(", "),
            order.join(", ")
        );
        let now_us = now_micros();
        let gtid = at.gtids.to_string();
        let mut last: Option<Vec<MyValue>> = None;
        let mut rows_read = 0u64;
        loop {
            let rows: Vec<mysql_async::Row> = match &last {
                None => conn.exec(first.as_str(), ()).await?,
                Some(key) => conn.exec(next.as_str(), key.clone()).await?,
            };
            let got = rows.len();
            let mut batch = Vec::with_capacity(SNAPSHOT_BATCH);
            for row in rows {
                let values = row.unwrap();
                last = Some(
                    key_at
                        .iter()
                        .map(|i| values.get(*i).cloned().unwrap_or(MyValue::NULL))
                        .collect(),
                );
                let position = Position::new(commit, *ordinal);
                let mut data = Vec::with_capacity(values.len());
                let mut zeros = 0u64;
                for (value, column) in values.into_iter().zip(&schema.columns) {
                    let datum =
                        snapshot_datum(value, &column.ty, self.source.zero_dates, &mut zeros)
                            .map_err(|message| CaptureError::Value {
                                table: id.clone(),
                                column: column.name.clone(),
                                position,
                                message,
                            })?;
                    data.push(datum);
                }
                if zeros > 0 {
                    self.stats.zero_dates.fetch_add(zeros, Ordering::Relaxed);
                }
                *ordinal += 1;
                batch.push(ChangeEvent {
                    table: schema.clone(),
                    op: Op::Read,
                    position,
                    before: None,
                    after: Some(Row(data)),
                    source: self.source_block(
                        id,
                        now_us,
                        SnapshotMarker::True,
                        self.info.server_id,
                        &gtid,
                        &at.file,
                        at.pos,
                        0,
                    ),
                    transaction: None,
                    ts_us: now_us,
                });
                if batch.len() >= SNAPSHOT_BATCH {
                    for e in batch.drain(..) {
                        self.producer.send(&e).await?;
                    }
                }
            }
            for e in batch.drain(..) {
                self.producer.send(&e).await?;
            }
            rows_read += got as u64;
            self.stats
                .snapshot_rows
                .fetch_add(got as u64, Ordering::Relaxed);
            self.stats.snapshot_progress(id, |p| p.rows = rows_read);
            if got < chunk as usize {
                break;
            }
        }
        self.stats.snapshot_progress(id, |p| p.done = true);
        tracing::info!(table = %id, rows = rows_read, "table snapshotted");
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn source_block(
        &self,
        table: &TableId,
        commit_ts_us: i64,
        snapshot: SnapshotMarker,
        server_id: u32,
        gtid: &str,
        file: &str,
        pos: u64,
        row: u32,
    ) -> Source {
        Source {
            name: self.name.clone(),
            db: table.schema.clone(),
            schema: table.schema.clone(),
            table: table.name.clone(),
            commit_ts_us,
            snapshot,
            detail: SourceDetail::Mysql {
                server_id,
                gtid: (!gtid.is_empty()).then(|| gtid.to_string()),
                file: file.to_string(),
                pos,
                row,
                thread: None,
            },
        }
    }

    async fn stream(
        &mut self,
        start: BinlogPos,
        stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<(), CaptureError> {
        let mut dump = self.connections.connect().await?;
        if self.info.flavor == Flavor::Mariadb {
            // GTID events instead of BEGIN placeholders.
            dump.query_drop("SET @mariadb_slave_capability = 4").await?;
        }
        if self.source.heartbeat_interval_secs > 0 {
            dump.query_drop(format!(
                "SET @master_heartbeat_period = {}",
                u64::from(self.source.heartbeat_interval_secs) * 1_000_000_000
            ))
            .await?;
        }
        let request = BinlogStreamRequest::new(self.server_id)
            .with_filename(start.file.as_bytes())
            .with_pos(start.pos);
        let mut binlog = match dump.get_binlog_stream(request).await {
            Ok(b) => b,
            Err(mysql_async::Error::Server(e)) if e.code == 1236 => {
                return Err(CaptureError::Operator(format!(
                    "the server cannot send the binlog from {}:{}: {}. Fix: if it was purged, take a new snapshot (new pipeline name)",
                    start.file, start.pos, e.message
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let checksum: Option<String> = self
            .sql
            .query_first("SELECT @@global.binlog_checksum")
            .await?;
        let checksums = !checksum.is_some_and(|c| c.eq_ignore_ascii_case("NONE"));
        let mut format_seen = false;
        let tracker = self.producer.tracker();
        let mut file = start.file.clone();
        let mut gtids = start.gtids.clone();
        let mut recorded = start;
        let mut maps: HashMap<u64, Option<Mapped>> = HashMap::new();
        let mut shapes_by_name: HashMap<TableId, Shape> = HashMap::new();
        let mut tx: Option<Tx> = None;
        let mut commits: VecDeque<Committed> = VecDeque::new();
        let mut tick = tokio::time::interval(RECORD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = false;
        let mut progress = ProgressReport::new(&self.stats);
        let mut last_lag_query = Instant::now() - LAG_QUERY_EVERY;
        let mut zero_count = 0u64;
        loop {
            let event = tokio::select! {
                biased;
                _ = stop.as_mut(), if !stopping => {
                    stopping = true;
                    None
                }
                _ = tick.tick() => None,
                e = binlog.next() => match e {
                    Some(e) => Some(e.map_err(|e| match e {
                        mysql_async::Error::Server(s) if s.code == 1236 => CaptureError::Operator(format!(
                            "the server stopped the binlog stream: {}. Fix: if binlogs were purged or reset, take a new snapshot (new pipeline name)",
                            s.message
                        )),
                        e => e.into(),
                    })?),
                    None => return Err(CaptureError::Mysql(mysql_async::Error::Driver(
                        mysql_async::DriverError::ConnectionClosed,
                    ))),
                },
            };
            if let Some(event) = event {
                let header = event.header();
                self.stats
                    .bytes
                    .fetch_add(u64::from(header.event_size()), Ordering::Relaxed);
                let end = u64::from(header.log_pos());
                let begin = end.saturating_sub(u64::from(header.event_size()));
                let raw_type = header.event_type_raw();
                let ts_us = i64::from(header.timestamp()) * 1_000_000;
                match raw_type {
                    // MariaDB GTID: a transaction starts.
                    162 => {
                        let g = MariadbGtid::parse(event.data()).map_err(CaptureError::Protocol)?;
                        gtids.add_mariadb(g.domain, header.server_id(), g.seq);
                        tx = Some(Tx::new(
                            position_of(&file, begin),
                            Some(format!("{}-{}-{}", g.domain, header.server_id(), g.seq)),
                            !g.standalone(),
                            ts_us,
                        ));
                        continue;
                    }
                    // Annotate rows, binlog checkpoint, GTID list: nothing to do.
                    160 | 161 | 163 => continue,
                    164..=255 => {
                        return Err(CaptureError::Operator(format!(
                            "binlog event type {raw_type} at {file}:{begin} is not supported (compressed binlog events are written when log_bin_compress = ON). Fix: SET GLOBAL log_bin_compress = OFF"
                        )));
                    }
                    _ => {}
                }
                let data = event.read_data().map_err(|e| {
                    CaptureError::Protocol(format!(
                        "unreadable binlog event at {file}:{begin}: {e}"
                    ))
                })?;
                let Some(data) = data else {
                    continue;
                };
                match data {
                    EventData::RotateEvent(r) => {
                        file = rotate_file_name(r.name_raw(), checksums && !format_seen);
                    }
                    EventData::FormatDescriptionEvent(_) => format_seen = true,
                    EventData::GtidEvent(g) => {
                        let uuid = uuid::Uuid::from_bytes(g.sid()).to_string();
                        gtids.add_mysql(&uuid, g.gno());
                        tx = Some(Tx::new(
                            position_of(&file, begin),
                            Some(format!("{uuid}:{}", g.gno())),
                            false,
                            ts_us,
                        ));
                    }
                    EventData::AnonymousGtidEvent(_) => {
                        tx = Some(Tx::new(position_of(&file, begin), None, false, ts_us));
                    }
                    EventData::QueryEvent(q) => {
                        let statement = ddl::classify(&q.query(), &q.schema());
                        match statement {
                            Statement::Begin => match tx.as_mut() {
                                Some(t) => t.explicit = true,
                                None => {
                                    tx =
                                        Some(Tx::new(position_of(&file, begin), None, true, ts_us));
                                }
                            },
                            Statement::Commit => {
                                self.end_tx(&mut tx, &mut commits, &file, end, &gtids);
                            }
                            other => {
                                if tx.is_none() {
                                    tx = Some(Tx::new(
                                        position_of(&file, begin),
                                        None,
                                        false,
                                        ts_us,
                                    ));
                                }
                                self.statement(other, &mut tx, &shapes_by_name, &file, begin)
                                    .await?;
                                if tx.as_ref().is_some_and(|t| !t.explicit) {
                                    self.end_tx(&mut tx, &mut commits, &file, end, &gtids);
                                }
                            }
                        }
                    }
                    EventData::XidEvent(_) => {
                        self.end_tx(&mut tx, &mut commits, &file, end, &gtids);
                    }
                    EventData::TableMapEvent(tme) => {
                        let id = TableId::new(tme.database_name(), tme.table_name());
                        let table_id = tme.table_id();
                        let same =
                            matches!(maps.get(&table_id), Some(Some(m)) if m.raw == event.data());
                        if !same {
                            let mapped = match self.tables.get(&id) {
                                Some(cfg) => {
                                    let mapped = from_table_map(&tme).map_err(|e| {
                                        CaptureError::Operator(format!(
                                            "table {id} at {file}:{begin}: {e}"
                                        ))
                                    })?;
                                    let shape = binlog_shape(&id, &mapped, cfg)?;
                                    shapes_by_name.insert(id.clone(), shape.clone());
                                    Some(Mapped {
                                        raw: event.data().to_vec(),
                                        columns: mapped.columns,
                                        shape,
                                    })
                                }
                                None => None,
                            };
                            maps.insert(table_id, mapped);
                        }
                    }
                    EventData::RowsEvent(re) => {
                        let Some(Some(mapped)) = maps.get(&re.table_id()) else {
                            continue;
                        };
                        let events = self.row_events(
                            &re,
                            mapped,
                            &mut tx,
                            header.server_id(),
                            &file,
                            begin,
                            &mut zero_count,
                        )?;
                        for e in events {
                            self.producer.send(&e).await?;
                        }
                        if zero_count > 0 {
                            self.stats
                                .zero_dates
                                .fetch_add(zero_count, Ordering::Relaxed);
                            zero_count = 0;
                        }
                    }
                    EventData::HeartbeatEvent => {}
                    _ => {}
                }
                continue;
            }
            if let Some(f) = tracker.failure() {
                return Err(CaptureError::Produce(ProduceError::Delivery(f)));
            }
            if stopping {
                self.producer.flush().await?;
            }
            // Record what Kafka has all of.
            let acked = tracker.acknowledged_commit();
            let mut target: Option<BinlogPos> = None;
            while let Some(front) = commits.front() {
                if acked.is_some_and(|a| a.commit >= front.commit) {
                    if let Some(c) = commits.pop_front() {
                        target = Some(c.end);
                    }
                } else {
                    break;
                }
            }
            if let Some(t) = target
                && t != recorded
            {
                self.record(&t).await?;
                self.stats
                    .confirmed_lsn
                    .store(position_of(&t.file, t.pos), Ordering::SeqCst);
                recorded = t;
            }
            if last_lag_query.elapsed() >= LAG_QUERY_EVERY {
                last_lag_query = Instant::now();
                if let Ok(Ok(logs)) =
                    tokio::time::timeout(Duration::from_secs(2), binary_logs(&mut self.sql)).await
                {
                    let behind = bytes_behind(&logs, &recorded.file, recorded.pos);
                    let confirmed = self.stats.confirmed_lsn.load(Ordering::Relaxed);
                    self.stats
                        .wal_end
                        .store(confirmed.saturating_add(behind), Ordering::Relaxed);
                }
            }
            let oldest = commits
                .front()
                .map(|c| c.ts_us)
                .or(tx.as_ref().map(|t| t.ts_us));
            self.stats.set_oldest_unacknowledged(oldest);
            if let Some((events, events_per_sec)) = progress.due(&self.stats) {
                tracing::info!(
                    pipeline = %self.name,
                    events,
                    events_per_sec,
                    lag_bytes = self.stats.lag_bytes(),
                    lag_secs = self.stats.lag_secs(),
                    file = %recorded.file,
                    pos = recorded.pos,
                    gtid = %recorded.gtids,
                    "capture progress"
                );
            }
            if stopping {
                // An open transaction is read again, whole, on the next start.
                let _ = binlog.close().await;
                return Ok(());
            }
        }
    }

    fn end_tx(
        &self,
        tx: &mut Option<Tx>,
        commits: &mut VecDeque<Committed>,
        file: &str,
        end: u64,
        gtids: &Gtids,
    ) {
        if let Some(t) = tx.take() {
            self.producer
                .end_of_transaction(Position::new(t.commit, u64::MAX));
            commits.push_back(Committed {
                commit: t.commit,
                end: BinlogPos {
                    file: file.to_string(),
                    pos: end,
                    gtids: gtids.clone(),
                },
                ts_us: t.ts_us,
            });
        }
    }

    /// A statement other than BEGIN/COMMIT: TRUNCATE of a captured table
    /// becomes a truncate event; DDL on captured tables is logged (the next
    /// table map carries the new shape).
    async fn statement(
        &mut self,
        statement: Statement,
        tx: &mut Option<Tx>,
        shapes: &HashMap<TableId, Shape>,
        file: &str,
        begin: u64,
    ) -> Result<(), CaptureError> {
        match statement {
            Statement::Truncate(id) => {
                let Some(cfg) = self.tables.get(&id).cloned() else {
                    return Ok(());
                };
                if self.source.truncate == TruncateMode::Stop {
                    return Err(CaptureError::Operator(format!(
                        "table {id} was truncated and the pipeline says `truncate: stop`. Fix: re-snapshot the table, or set `truncate: propagate`"
                    )));
                }
                let schema = match shapes.get(&id) {
                    Some(s) => s.schema.clone(),
                    // No row of it streamed yet: its shape now (a truncate
                    // carries no values).
                    None => catalog_shape(&mut self.sql, &id, &cfg).await?.0.schema,
                };
                let Some(t) = tx.as_mut() else {
                    return Ok(());
                };
                let event = stream_event(
                    self,
                    t,
                    schema,
                    Op::Truncate,
                    None,
                    None,
                    self.info.server_id,
                    file,
                    begin,
                    0,
                );
                self.producer.send(&event).await?;
            }
            Statement::Ddl { verb, tables } => {
                for id in tables.iter().filter(|t| self.tables.contains_key(t)) {
                    tracing::info!(table = %id, verb = %verb, at = %format!("{file}:{begin}"), "DDL on a captured table; rows after it decode with the new shape");
                }
            }
            Statement::Begin | Statement::Commit | Statement::Other => {}
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn row_events(
        &self,
        re: &RowsEventData<'_>,
        mapped: &Mapped,
        tx: &mut Option<Tx>,
        server_id: u32,
        file: &str,
        begin: u64,
        zero_count: &mut u64,
    ) -> Result<Vec<ChangeEvent>, CaptureError> {
        let schema = mapped.shape.schema.clone();
        let table = schema.id.clone();
        let count = mapped.columns.len().max(re.num_columns() as usize);
        let (before_bits, after_bits) = match re {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => (
                None,
                re.columns_after_image()
                    .map(|b| b.iter().by_vals().take(count).collect::<Vec<bool>>()),
            ),
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => (
                re.columns_before_image()
                    .map(|b| b.iter().by_vals().take(count).collect::<Vec<bool>>()),
                None,
            ),
            RowsEventData::UpdateRowsEventV1(_) | RowsEventData::UpdateRowsEvent(_) => (
                re.columns_before_image()
                    .map(|b| b.iter().by_vals().take(count).collect::<Vec<bool>>()),
                re.columns_after_image()
                    .map(|b| b.iter().by_vals().take(count).collect::<Vec<bool>>()),
            ),
            RowsEventData::PartialUpdateRowsEvent(_) => {
                return Err(CaptureError::Operator(format!(
                    "table {table}: a partial JSON update at {file}:{begin} (binlog_row_value_options = PARTIAL_JSON) carries no full row. Fix: SET GLOBAL binlog_row_value_options = ''"
                )));
            }
        };
        let width = schema.columns.len();
        let mut reader = Reader::new(re.rows_data());
        let mut out = Vec::new();
        let mut row_no = 0u32;
        let fail = |e: rows::ValueError, position: Position| CaptureError::Value {
            table: table.clone(),
            column: e.column,
            position,
            message: e.message,
        };
        while !reader.is_empty() {
            let Some(t) = tx.as_mut() else {
                return Err(CaptureError::Protocol(format!(
                    "a rows event outside a transaction at {file}:{begin}"
                )));
            };
            let position = Position::new(t.commit, t.ordinal);
            let mut dec = Decoding {
                columns: &mapped.columns,
                zero_dates: self.source.zero_dates,
                zero_count,
            };
            let before = match &before_bits {
                Some(b) => Some(to_row(
                    read_image(&mut reader, b, &mut dec).map_err(|e| fail(e, position))?,
                    &mapped.shape.targets,
                    width,
                )),
                None => None,
            };
            let after = match &after_bits {
                Some(b) => Some(to_row(
                    read_image(&mut reader, b, &mut dec).map_err(|e| fail(e, position))?,
                    &mapped.shape.targets,
                    width,
                )),
                None => None,
            };
            let changes = match (before, after) {
                (None, Some(a)) => vec![(Op::Create, None, Some(a))],
                (Some(b), Some(a)) => {
                    // A key change is a delete of the old key and a create
                    // of the new one, as Debezium does.
                    if schema.key_of(&b) != schema.key_of(&a) {
                        vec![(Op::Delete, Some(b), None), (Op::Create, None, Some(a))]
                    } else {
                        vec![(Op::Update, Some(b), Some(a))]
                    }
                }
                (Some(b), None) => vec![(Op::Delete, Some(b), None)],
                (None, None) => Vec::new(),
            };
            for (op, before, after) in changes {
                out.push(stream_event(
                    self,
                    t,
                    schema.clone(),
                    op,
                    before,
                    after,
                    server_id,
                    file,
                    begin,
                    row_no,
                ));
            }
            row_no += 1;
        }
        Ok(out)
    }
}

#[allow(clippy::too_many_arguments)]
fn stream_event(
    session: &Session,
    t: &mut Tx,
    schema: Arc<crate::event::schema::TableSchema>,
    op: Op,
    before: Option<Row>,
    after: Option<Row>,
    server_id: u32,
    file: &str,
    pos: u64,
    row: u32,
) -> ChangeEvent {
    let position = Position::new(t.commit, t.ordinal);
    t.ordinal += 1;
    let per_table = t.per_table.entry(schema.id.clone()).or_default();
    *per_table += 1;
    session.stats.events.fetch_add(1, Ordering::Relaxed);
    let id = t
        .gtid
        .clone()
        .unwrap_or_else(|| format!("{}:{}", file, pos));
    ChangeEvent {
        source: session.source_block(
            &schema.id,
            t.ts_us,
            SnapshotMarker::False,
            server_id,
            t.gtid.as_deref().unwrap_or_default(),
            file,
            pos,
            row,
        ),
        table: schema,
        op,
        position,
        before,
        after,
        transaction: Some(Transaction {
            id,
            total_order: t.ordinal,
            data_collection_order: *per_table,
        }),
        ts_us: now_micros(),
    }
}

/// `SHOW MASTER STATUS` (or MySQL 8.4's `SHOW BINARY LOG STATUS`): the
/// current file and position.
async fn master_status(conn: &mut Conn) -> Result<(String, u64), CaptureError> {
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(r) => r,
        Err(mysql_async::Error::Server(_)) => conn.query_first("SHOW BINARY LOG STATUS").await?,
        Err(e) => return Err(e.into()),
    };
    let row = row.ok_or_else(|| {
        CaptureError::Operator(
            "the server reports no binlog position (SHOW MASTER STATUS is empty): log_bin is off. Fix: enable the binary log".into(),
        )
    })?;
    let file: Option<String> = row.get(0);
    let pos: Option<u64> = row.get(1);
    match (file, pos) {
        (Some(f), Some(p)) => Ok((f, p)),
        _ => Err(CaptureError::Protocol(
            "unreadable SHOW MASTER STATUS".into(),
        )),
    }
}

/// The shape of a table from the catalog, and its key column names in key
/// order.
async fn catalog_shape(
    conn: &mut Conn,
    id: &TableId,
    cfg: &TableConfig,
) -> Result<(Shape, Vec<String>), CaptureError> {
    let rows: Vec<(String, String, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (id.schema.clone(), id.name.clone()),
        )
        .await?;
    if rows.is_empty() {
        return Err(CaptureError::Config(format!(
            "table {id} does not exist (or the user cannot see it)"
        )));
    }
    let pk: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (id.schema.clone(), id.name.clone()),
        )
        .await?;
    let key = key_names(id, cfg, &pk)?;
    let columns = rows.into_iter().map(|(name, column_type, nullable)| {
        let source_type = canonical_type(&column_type);
        SourceColumn {
            ty: map_mysql(&source_type).map_err(|e| e.to_string()),
            not_null: nullable.eq_ignore_ascii_case("NO"),
            name,
            source_type,
        }
    });
    let shape = table_shape(id, &id.schema, columns, &key, cfg).map_err(CaptureError::Config)?;
    Ok((shape, key))
}

fn key_names(id: &TableId, cfg: &TableConfig, pk: &[String]) -> Result<Vec<String>, CaptureError> {
    match (&cfg.key, pk.is_empty()) {
        (Some(k), _) => Ok(k.clone()),
        (None, false) => Ok(pk.to_vec()),
        (None, true) => Err(CaptureError::Config(format!(
            "table {id} has no primary key: set `key: [..]` for it in the pipeline (columns that identify a row)"
        ))),
    }
}

/// The shape of a captured table from its table map.
fn binlog_shape(
    id: &TableId,
    mapped: &MappedTable,
    cfg: &TableConfig,
) -> Result<Shape, CaptureError> {
    let pk: Vec<String> = mapped
        .primary_key
        .iter()
        .filter_map(|i| mapped.columns.get(*i).map(|c| c.name.clone()))
        .collect();
    let key = key_names(id, cfg, &pk)?;
    let columns = mapped.columns.iter().map(|c| SourceColumn {
        name: c.name.clone(),
        ty: c.ty.clone(),
        not_null: !c.nullable,
        source_type: c.source_type.clone(),
    });
    table_shape(id, &id.schema, columns, &key, cfg).map_err(CaptureError::Config)
}

/// A snapshot value (binary protocol) as a datum of `ty`; a zero date as
/// `zero_dates` says ([`rows::zero_date`]).
fn snapshot_datum(
    value: MyValue,
    ty: &ColumnType,
    zero: ZeroDates,
    zero_count: &mut u64,
) -> Result<Datum, String> {
    let text = |b: Vec<u8>| {
        String::from_utf8(b)
            .map_err(|e| format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()))
    };
    let datum = match (value, ty) {
        (MyValue::NULL, _) => Datum::Null,
        (MyValue::Int(v), ColumnType::UInt64) => {
            Datum::UInt64(u64::try_from(v).map_err(|_| format!("{v} for an unsigned column"))?)
        }
        (MyValue::UInt(v), ColumnType::UInt64) => Datum::UInt64(v),
        (MyValue::Int(v), ColumnType::Int { .. }) => Datum::Int(v),
        (MyValue::UInt(v), ColumnType::Int { .. }) => {
            Datum::Int(i64::try_from(v).map_err(|_| format!("{v} out of range"))?)
        }
        (MyValue::Int(v), ColumnType::Boolean) => Datum::Bool(v != 0),
        (MyValue::Bytes(b), ColumnType::Boolean) => Datum::Bool(b.iter().any(|x| *x != 0)),
        (MyValue::Float(v), ColumnType::Float32) => Datum::Float32(v),
        (MyValue::Double(v), ColumnType::Float64) => Datum::Float64(v),
        (MyValue::Double(v), ColumnType::Float32) => Datum::Float32(v as f32),
        (MyValue::Bytes(b), ColumnType::Decimal { precision, scale }) => Datum::Decimal(
            Decimal::parse(&text(b)?, *precision, *scale).map_err(|e| e.to_string())?,
        ),
        (MyValue::Bytes(b), ColumnType::Text | ColumnType::Uuid | ColumnType::NumericText) => {
            Datum::Text(text(b)?)
        }
        (MyValue::Bytes(b), ColumnType::Json) => {
            // MySQL prints JSON with spaces; the binlog's binary JSON is
            // printed compact: one form for both.
            let t = text(b)?;
            match serde_json::from_str::<serde_json::Value>(&t) {
                Ok(v) => Datum::Text(v.to_string()),
                Err(_) => Datum::Text(t),
            }
        }
        (MyValue::Bytes(b), ColumnType::Bytes) => Datum::Bytes(b),
        (MyValue::Bytes(b), ColumnType::Int { .. }) => {
            // YEAR and BIT come as text or bytes from some servers.
            let t = text(b)?;
            Datum::Int(
                t.trim()
                    .parse()
                    .map_err(|_| format!("`{t}` is not an integer"))?,
            )
        }
        (MyValue::Date(y, m, d, ..), ColumnType::Date) => {
            if y == 0 || m == 0 || d == 0 {
                return rows::zero_date(zero, zero_count);
            }
            Datum::Date(
                i32::try_from(days_from_civil(i64::from(y), u32::from(m), u32::from(d)))
                    .map_err(|_| "date out of range")?,
            )
        }
        (MyValue::Date(y, m, d, h, mi, s, us), ColumnType::Timestamp | ColumnType::TimestampTz) => {
            if y == 0 || m == 0 || d == 0 {
                return rows::zero_date(zero, zero_count);
            }
            let days = days_from_civil(i64::from(y), u32::from(m), u32::from(d));
            Datum::Micros(
                (days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s))
                    * 1_000_000
                    + i64::from(us),
            )
        }
        (MyValue::Time(neg, days, h, mi, s, us), ColumnType::DurationMicros) => {
            let v =
                ((i64::from(days) * 24 + i64::from(h)) * 3600 + i64::from(mi) * 60 + i64::from(s))
                    * 1_000_000
                    + i64::from(us);
            Datum::Micros(if neg { -v } else { v })
        }
        (v, ty) => return Err(format!("a {v:?} value for a `{ty}` column")),
    };
    Ok(datum)
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_positions() {
        assert_eq!(file_number("mariadb-bin.000012"), Some(12));
        assert_eq!(file_number("nodot"), None);
        assert_eq!(
            rotate_file_name(b"mariadb-bin.000010\x8a\x1b\x00\xff", true),
            "mariadb-bin.000010"
        );
        // A CRC whose first bytes are ASCII digits (seen: `52`).
        assert_eq!(
            rotate_file_name(b"mariadb-bin.00001952\x8a\x1b", true),
            "mariadb-bin.000019"
        );
        assert_eq!(rotate_file_name(b"binlog.000003", false), "binlog.000003");
        assert_eq!(rotate_file_name(b"ab", true), "");
        assert!(position_of("b.000002", 4) > position_of("b.000001", 900_000_000));
        assert_eq!(position_of("b.000001", 100), (1 << 32) | 100);
    }

    #[test]
    fn lag_counts_the_rest_of_the_file_and_later_files() {
        let logs = vec![
            ("b.000001".to_string(), 1000),
            ("b.000002".to_string(), 500),
            ("b.000003".to_string(), 200),
        ];
        assert_eq!(bytes_behind(&logs, "b.000002", 100), 400 + 200);
        assert_eq!(bytes_behind(&logs, "b.000003", 200), 0);
        assert_eq!(bytes_behind(&logs, "b.000009", 4), 0);
    }

    #[test]
    fn snapshot_values_map_to_their_types() {
        let int = ColumnType::Int {
            bits: 32,
            signed: true,
        };
        let mut zeros = 0;
        assert_eq!(
            snapshot_datum(MyValue::Int(-5), &int, ZeroDates::Null, &mut zeros).unwrap(),
            Datum::Int(-5)
        );
        assert_eq!(
            snapshot_datum(
                MyValue::UInt(u64::MAX),
                &ColumnType::UInt64,
                ZeroDates::Null,
                &mut zeros
            )
            .unwrap(),
            Datum::UInt64(u64::MAX)
        );
        assert_eq!(
            snapshot_datum(
                MyValue::Time(true, 1, 2, 3, 4, 5),
                &ColumnType::DurationMicros,
                ZeroDates::Null,
                &mut zeros
            )
            .unwrap(),
            Datum::Micros(-((26 * 3600 + 3 * 60 + 4) * 1_000_000 + 5))
        );
        assert_eq!(
            snapshot_datum(
                MyValue::Date(0, 0, 0, 0, 0, 0, 0),
                &ColumnType::Date,
                ZeroDates::Null,
                &mut zeros
            )
            .unwrap(),
            Datum::Null
        );
        assert_eq!(zeros, 1, "the zero date is counted");
        assert!(
            snapshot_datum(
                MyValue::Date(0, 0, 0, 0, 0, 0, 0),
                &ColumnType::Date,
                ZeroDates::Error,
                &mut zeros
            )
            .is_err()
        );
        assert_eq!(
            snapshot_datum(
                MyValue::Bytes(br#"{"a": [1, 2]}"#.to_vec()),
                &ColumnType::Json,
                ZeroDates::Null,
                &mut zeros
            )
            .unwrap(),
            Datum::Text(r#"{"a":[1,2]}"#.into())
        );
        assert!(snapshot_datum(MyValue::Float(1.0), &int, ZeroDates::Null, &mut zeros).is_err());
    }
}
