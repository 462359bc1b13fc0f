//! Capture from source databases: `postgres` (logical replication) and
//! `mysql` (row binlog). Each source turns its log into change events and
//! acknowledges a position only after Kafka acknowledged everything before it.

pub mod capture;
pub mod mysql;
pub mod postgres;
pub mod tls;

pub use capture::{CaptureError, CaptureStats};

use std::sync::Arc;

use crate::config::model::TableConfig;
use crate::event::schema::{Column, TableSchema};
use crate::event::table_id::TableId;
use crate::event::types::ColumnType;

/// Runs the capture of `cfg`'s source until `stop` resolves or an error
/// needs an operator (each source reconnects by itself otherwise).
pub async fn run(
    cfg: &crate::config::model::PipelineConfig,
    stats: Arc<CaptureStats>,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), CaptureError> {
    match &cfg.source {
        crate::config::model::SourceConfig::Postgres(_) => postgres::run(cfg, stats, stop).await,
        crate::config::model::SourceConfig::Mysql(_) => mysql::run(cfg, stats, stop).await,
    }
}

/// The future of one connection's worth of capture, borrowing the stop
/// signal.
pub type Attempt<'a> = futures::future::BoxFuture<'a, Result<(), CaptureError>>;

/// Runs `attempt` (one connection's worth of capture) until it ends well or
/// with an error that needs an operator. A retryable error (connection or
/// Kafka lost) is logged and tried again after a backoff (0.5 s doubling to
/// 30 s), from the position the source recorded (`resume_from` names it).
pub async fn with_reconnects<S: std::future::Future<Output = ()> + Send>(
    pipeline: &str,
    resume_from: &str,
    stop: S,
    mut attempt: impl for<'a> FnMut(&'a mut std::pin::Pin<&mut S>) -> Attempt<'a>,
) -> Result<(), CaptureError> {
    let mut stop = std::pin::pin!(stop);
    let mut backoff = std::time::Duration::from_millis(500);
    loop {
        match attempt(&mut stop).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() => {
                tracing::warn!(pipeline = %pipeline, error = %e, retry_in = ?backoff, "capture interrupted; resuming from {resume_from}");
                tokio::select! {
                    _ = stop.as_mut() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
            }
            Err(e) => return Err(e),
        }
    }
}

/// One checked item: what, and `None` when fine or the problem with its fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub item: String,
    pub problem: Option<String>,
}

impl Finding {
    pub fn ok(item: impl Into<String>) -> Finding {
        Finding {
            item: item.into(),
            problem: None,
        }
    }

    pub fn problem(item: impl Into<String>, problem: impl Into<String>) -> Finding {
        Finding {
            item: item.into(),
            problem: Some(problem.into()),
        }
    }
}

/// A table shape and where each source column goes in it.
#[derive(Debug, Clone)]
pub struct Shape {
    pub schema: Arc<TableSchema>,
    /// Source column index → schema column index (`None`: excluded).
    pub targets: Vec<Option<usize>>,
}

/// A source column before the pipeline's table settings apply.
pub struct SourceColumn {
    pub name: String,
    /// The mapped type, or why the type is not supported.
    pub ty: Result<ColumnType, String>,
    pub not_null: bool,
    /// The type as the database prints it.
    pub source_type: String,
}

/// The captured shape of a table: excluded columns dropped (their type
/// need not be supported), key columns (`key_names`, or every column when
/// empty) not nullable.
pub fn table_shape(
    id: &TableId,
    database: &str,
    columns: impl IntoIterator<Item = SourceColumn>,
    key_names: &[String],
    cfg: &TableConfig,
) -> Result<Shape, String> {
    let mut schema_columns = Vec::new();
    let mut targets = Vec::new();
    for c in columns {
        if cfg.exclude_columns.iter().any(|x| x == &c.name) {
            targets.push(None);
            continue;
        }
        let ty =
            c.ty.map_err(|e| format!("table {id}, column `{}`: {e}", c.name))?;
        let is_key = key_names.contains(&c.name) || key_names.is_empty();
        targets.push(Some(schema_columns.len()));
        schema_columns.push(Column {
            nullable: !(c.not_null || is_key && !key_names.is_empty()),
            name: c.name,
            ty,
            source_type: c.source_type,
        });
    }
    let key = if key_names.is_empty() {
        (0..schema_columns.len()).collect()
    } else {
        let mut key = Vec::with_capacity(key_names.len());
        for k in key_names {
            let i = schema_columns
                .iter()
                .position(|c| &c.name == k)
                .ok_or_else(|| format!("table {id}: key column `{k}` is not a captured column"))?;
            key.push(i);
        }
        key
    };
    Ok(Shape {
        schema: Arc::new(TableSchema {
            id: id.clone(),
            database: database.to_string(),
            columns: schema_columns,
            key,
        }),
        targets,
    })
}
