//! The "orders" row of BENCHMARKS.md: `id bigint` (key), `customer_id
//! bigint`, `status text`, `amount numeric(12,2)`, `created_at
//! timestamptz`, `payload jsonb`.

use std::sync::Arc;

use tidewater::event::schema::{Column, TableSchema};
use tidewater::event::table_id::TableId;
use tidewater::event::types::ColumnType;

pub fn orders(id: TableId, database: &str) -> Arc<TableSchema> {
    let bigint = ColumnType::Int {
        bits: 64,
        signed: true,
    };
    Arc::new(TableSchema {
        id,
        database: database.into(),
        columns: vec![
            Column::new("id", bigint.clone(), false),
            Column::new("customer_id", bigint, true),
            Column::new("status", ColumnType::Text, true),
            Column::new(
                "amount",
                ColumnType::Decimal {
                    precision: 12,
                    scale: 2,
                },
                true,
            ),
            Column::new("created_at", ColumnType::TimestampTz, true),
            Column::new("payload", ColumnType::Json, true),
        ],
        key: vec![0],
    })
}
