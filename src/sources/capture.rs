//! What every capture shares: its error type (which errors are worth a
//! reconnect) and its live figures ([`CaptureStats`]), read by the progress
//! log, the admin endpoint and the tests.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::event::change::Position;
use crate::event::table_id::TableId;
use crate::kafka::producer::ProduceError;
use crate::kafka::state::StateError;
use crate::sources::postgres::wire::WireError;
use crate::sources::tls;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{0}")]
    Config(String),
    /// Needs an operator: the message says what happened and what to do.
    #[error("{0}")]
    Operator(String),
    #[error("postgres: {0}")]
    Wire(#[from] WireError),
    #[error("postgres: {}", with_cause(.0))]
    Sql(#[from] tokio_postgres::Error),
    #[error("kafka: {0}")]
    Produce(#[from] ProduceError),
    #[error("kafka: {0}")]
    State(#[from] StateError),
    #[error("table {table}, column `{column}`, at {position}: {message}")]
    Value {
        table: TableId,
        column: String,
        position: Position,
        message: String,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("mysql: {0}")]
    Mysql(#[from] mysql_async::Error),
}

impl CaptureError {
    /// Worth a reconnect: the connection or Kafka went away. Everything not
    /// acknowledged is read again from the slot.
    pub fn is_retryable(&self) -> bool {
        match self {
            CaptureError::Wire(e) => match e {
                WireError::Connect { .. } | WireError::Io(_) | WireError::Closed => true,
                WireError::Server { code, .. } => code.starts_with("08") || code.starts_with("57P"),
                WireError::Auth(_) | WireError::Tls(_) | WireError::Protocol(_) => false,
            },
            CaptureError::Sql(e) => {
                let io =
                    std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>());
                // A refused certificate is not worth a retry.
                if io.is_some_and(tls::is_tls_refusal) {
                    return false;
                }
                e.is_closed()
                    || e.code()
                        .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57P"))
                    || io.is_some()
            }
            CaptureError::Produce(e) => e.is_retryable() || matches!(e, ProduceError::Delivery(_)),
            CaptureError::State(_) => true,
            CaptureError::Mysql(e) => match e {
                mysql_async::Error::Io(_) => true,
                mysql_async::Error::Driver(d) => matches!(
                    d,
                    mysql_async::DriverError::ConnectionClosed
                        | mysql_async::DriverError::PoolDisconnected
                ),
                // Server shutdown, connection killed, too many connections, lock wait timeout, deadlock.
                mysql_async::Error::Server(s) => {
                    matches!(s.code, 1040 | 1053 | 1205 | 1213 | 1927 | 2006 | 2013)
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// A tokio-postgres error with its cause (a TLS or I/O error hides there).
fn with_cause(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) if !e.to_string().contains(&cause.to_string()) => format!("{e}: {cause}"),
        _ => e.to_string(),
    }
}

/// Live figures of one capture, read by tests, the progress log line and
/// the admin endpoint.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Change events produced by streaming.
    pub events: AtomicU64,
    /// Bytes of pgoutput data received from the slot.
    pub bytes: AtomicU64,
    pub snapshot_rows: AtomicU64,
    /// The last LSN sent to the slot as confirmed.
    pub confirmed_lsn: AtomicU64,
    /// The server's WAL position: `pg_current_wal_lsn()` every 5 s, or
    /// what the walsender reported if that is further.
    pub wal_end: AtomicU64,
    /// Microseconds since the commit of the oldest transaction Kafka has
    /// not fully acknowledged; 0 when all is acknowledged.
    pub lag_micros: AtomicU64,
    pub snapshot_done: std::sync::atomic::AtomicBool,
    /// MySQL zero dates (`0000-00-00`) captured as NULL.
    pub zero_dates: AtomicU64,
    /// Per table: rows read and the planner's estimate, while and after
    /// the snapshot runs.
    pub snapshot_tables: std::sync::Mutex<Vec<SnapshotProgress>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotProgress {
    pub table: TableId,
    pub rows: u64,
    /// `pg_class.reltuples` when the snapshot started (-1: never analyzed).
    pub estimate: i64,
    pub done: bool,
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// How often the `capture progress` log line is written.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// When the `capture progress` log line is due, and the event rate since
/// the last one.
pub struct ProgressReport {
    last: std::time::Instant,
    events: u64,
}

impl ProgressReport {
    pub fn new(stats: &CaptureStats) -> ProgressReport {
        ProgressReport {
            last: std::time::Instant::now(),
            events: stats.events.load(Ordering::Relaxed),
        }
    }

    /// Every [`REPORT_EVERY`]: the events streamed so far and the events
    /// per second since the last report.
    pub fn due(&mut self, stats: &CaptureStats) -> Option<(u64, f64)> {
        let elapsed = self.last.elapsed();
        if elapsed < REPORT_EVERY {
            return None;
        }
        let events = stats.events.load(Ordering::Relaxed);
        let rate = (events.saturating_sub(self.events) as f64 / elapsed.as_secs_f64()).round();
        self.events = events;
        self.last = std::time::Instant::now();
        Some((events, rate))
    }
}

impl CaptureStats {
    /// Sets the lag in seconds from the commit time (microseconds since the
    /// epoch) of the oldest transaction Kafka has not fully acknowledged;
    /// `None` when all is acknowledged.
    pub fn set_oldest_unacknowledged(&self, commit_ts_us: Option<i64>) {
        self.lag_micros.store(
            commit_ts_us.map_or(0, |ts| now_micros().saturating_sub(ts).max(0) as u64),
            Ordering::Relaxed,
        );
    }

    /// [`CaptureStats::lag_micros`] in seconds.
    pub fn lag_secs(&self) -> f64 {
        self.lag_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Bytes of WAL the slot holds back: the server's WAL position minus
    /// the confirmed LSN (`pg_current_wal_lsn() - confirmed_flush_lsn`).
    pub fn lag_bytes(&self) -> u64 {
        self.wal_end
            .load(Ordering::Relaxed)
            .saturating_sub(self.confirmed_lsn.load(Ordering::Relaxed))
    }

    pub fn snapshot_progress(&self, table: &TableId, f: impl FnOnce(&mut SnapshotProgress)) {
        let mut tables = match self.snapshot_tables.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(p) = tables.iter_mut().find(|p| &p.table == table) {
            f(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_comes_from_the_oldest_unacknowledged_commit() {
        let stats = CaptureStats::default();
        stats.set_oldest_unacknowledged(Some(now_micros() - 2_000_000));
        let lag = stats.lag_secs();
        assert!((2.0..3.0).contains(&lag), "{lag}");
        stats.set_oldest_unacknowledged(None);
        assert_eq!(stats.lag_secs(), 0.0);
        // A commit time ahead of this clock is no lag, not a wrap-around.
        stats.set_oldest_unacknowledged(Some(now_micros() + 5_000_000));
        assert_eq!(stats.lag_secs(), 0.0);
    }

    #[test]
    fn a_progress_report_is_due_only_after_its_interval() {
        let stats = CaptureStats::default();
        let mut report = ProgressReport::new(&stats);
        stats.events.store(600, Ordering::Relaxed);
        assert_eq!(report.due(&stats), None);
        report.last -= REPORT_EVERY;
        let (events, rate) = report.due(&stats).unwrap_or_default();
        assert_eq!(events, 600);
        assert!((19.0..=20.0).contains(&rate), "{rate}");
        assert_eq!(report.due(&stats), None, "the next one is 30 s later");
    }
}
