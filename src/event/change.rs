//! A row change and where it came from: [`ChangeEvent`], its [`Position`],
//! the Debezium `source` block and the transaction block.
//!
//! Invariant: positions are unique per event and totally ordered per source,
//! in commit order. Postgres: (commit LSN, ordinal in the transaction);
//! MySQL: (binlog file number and position of the transaction, ordinal). The
//! LSN alone is not unique: a multi-row insert shares one. Snapshot rows take
//! the snapshot's position and a running ordinal, so they sort before every
//! change streamed after the snapshot point.

use std::fmt;
use std::sync::Arc;

use super::datum::Row;
use super::schema::TableSchema;

/// `c`, `u`, `d`, `r` (snapshot read), `t` (truncate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Update,
    Delete,
    Read,
    Truncate,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }

    pub fn from_code(code: &str) -> Option<Op> {
        Some(match code {
            "c" => Op::Create,
            "u" => Op::Update,
            "d" => Op::Delete,
            "r" => Op::Read,
            "t" => Op::Truncate,
            _ => return None,
        })
    }
}

/// The ordering position of an event within its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// Postgres: the commit LSN. MySQL: `(binlog file number << 32) | position`
    /// of the transaction's GTID/BEGIN event.
    pub commit: u64,
    /// 0-based index of the event within its transaction (or snapshot).
    pub ordinal: u64,
}

impl Position {
    pub const ZERO: Position = Position {
        commit: 0,
        ordinal: 0,
    };

    pub fn new(commit: u64, ordinal: u64) -> Position {
        Position { commit, ordinal }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:X}/{:X}#{}",
            self.commit >> 32,
            self.commit & 0xffff_ffff,
            self.ordinal
        )
    }
}

/// Debezium's `snapshot` field of the source block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMarker {
    /// A streamed change.
    False,
    /// A row of an initial snapshot.
    True,
    /// The last row of an initial snapshot.
    Last,
    /// A row of a backfill (re-snapshot while streaming).
    Incremental,
}

impl SnapshotMarker {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotMarker::False => "false",
            SnapshotMarker::True => "true",
            SnapshotMarker::Last => "last",
            SnapshotMarker::Incremental => "incremental",
        }
    }

    pub fn parse(text: &str) -> Option<SnapshotMarker> {
        Some(match text {
            "false" => SnapshotMarker::False,
            "true" => SnapshotMarker::True,
            "last" => SnapshotMarker::Last,
            "incremental" => SnapshotMarker::Incremental,
            _ => return None,
        })
    }
}

/// The connector-specific part of the source block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceDetail {
    Postgres {
        /// LSN of the change itself (Debezium `lsn`).
        lsn: u64,
        tx_id: Option<u32>,
    },
    Mysql {
        server_id: u32,
        gtid: Option<String>,
        /// Binlog file name and position of the event.
        file: String,
        pos: u64,
        /// Row index within the binlog event.
        row: u32,
        thread: Option<u64>,
    },
}

/// Debezium's `source` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Logical server name: the pipeline's topic prefix.
    pub name: String,
    pub db: String,
    /// Postgres schema; for MySQL the database again.
    pub schema: String,
    pub table: String,
    /// Commit time at the source, microseconds since the epoch.
    pub commit_ts_us: i64,
    pub snapshot: SnapshotMarker,
    pub detail: SourceDetail,
}

impl Source {
    pub fn connector(&self) -> &'static str {
        match self.detail {
            SourceDetail::Postgres { .. } => "postgresql",
            SourceDetail::Mysql { .. } => "mysql",
        }
    }
}

/// Debezium's `transaction` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub id: String,
    /// 1-based order of the event among all events of the transaction.
    pub total_order: u64,
    /// 1-based order among the transaction's events of this table.
    pub data_collection_order: u64,
}

/// One row change.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// The table's shape at this position.
    pub table: Arc<TableSchema>,
    pub op: Op,
    pub position: Position,
    /// The row before an update or delete (key columns only unless the table
    /// logs full rows).
    pub before: Option<Row>,
    /// The row after an insert, update or read.
    pub after: Option<Row>,
    pub source: Source,
    pub transaction: Option<Transaction>,
    /// When tidewater processed the event, microseconds since the epoch.
    pub ts_us: i64,
}

impl ChangeEvent {
    /// The key columns of the row (from `after`, or `before` for deletes).
    pub fn key_row(&self) -> Option<Row> {
        let row = self.after.as_ref().or(self.before.as_ref())?;
        Some(self.table.key_of(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_commit_then_ordinal() {
        let a = Position::new(100, 5);
        let b = Position::new(100, 6);
        let c = Position::new(101, 0);
        assert!(a < b && b < c);
        assert_eq!(Position::new(0x1_0000_0010, 3).to_string(), "1/10#3");
    }

    #[test]
    fn op_codes_round_trip() {
        for op in [Op::Create, Op::Update, Op::Delete, Op::Read, Op::Truncate] {
            assert_eq!(Op::from_code(op.code()), Some(op));
        }
        assert_eq!(Op::from_code("x"), None);
    }
}
