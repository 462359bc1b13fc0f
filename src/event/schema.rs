//! A captured table's shape at one source position: its columns in order,
//! their types and nullability, and which columns form the record key.
//!
//! A new shape (a DDL, a new Postgres Relation message) is a new
//! `TableSchema`; events hold the one current at their position, so a DDL is
//! a barrier: rows before it use the old shape, rows after it the new one.

use super::datum::{Datum, Row};
use super::table_id::TableId;
use super::types::ColumnType;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The name as the database stores it.
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
    /// The type as the database prints it (`numeric(12,2)`), for people and DDL.
    pub source_type: String,
}

impl Column {
    pub fn new(name: impl Into<String>, ty: ColumnType, nullable: bool) -> Column {
        let source_type = ty.name();
        Column {
            name: name.into(),
            ty,
            nullable,
            source_type,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub id: TableId,
    /// Postgres database or MySQL database the table lives in.
    pub database: String,
    pub columns: Vec<Column>,
    /// Indices into `columns` of the record key, in key order. Never empty.
    pub key: Vec<usize>,
}

impl TableSchema {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.key.iter().filter_map(|i| self.columns.get(*i))
    }

    /// The key columns of a full row, in key order.
    pub fn key_of(&self, row: &Row) -> Row {
        Row(self
            .key
            .iter()
            .map(|i| row.get(*i).cloned().unwrap_or(Datum::Null))
            .collect())
    }
}
