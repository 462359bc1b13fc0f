//! Capture from source databases: `postgres` (logical replication) and
//! `mysql` (row binlog). Each source turns its log into change events and
//! acknowledges a position only after Kafka acknowledged everything before it.

pub mod mysql;
pub mod postgres;

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
