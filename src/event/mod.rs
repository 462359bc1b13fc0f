//! The change-event model shared by capture and sink.
//!
//! - [`table_id`]: which table (`schema.table`).
//! - [`types`]: column types and the mapping from Postgres and MySQL types.
//! - [`schema`]: a table's shape at one position.
//! - [`datum`]: typed column values and rows.
//! - [`decimal`]: exact decimals of any precision.
//! - [`packed`]: a row packed into one allocation, as the sink holds it.
//! - [`change`]: the change event, its position and source block.

pub mod change;
pub mod datum;
pub mod decimal;
pub mod json;
pub mod packed;
pub mod sample;
pub mod schema;
pub mod table_id;
pub mod time;
pub mod types;
