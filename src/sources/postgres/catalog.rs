//! Table shapes from the Postgres catalog: column types (domains resolved to
//! their base type, enums as labels), nullability, the key.
//!
//! The same construction serves the snapshot (columns as the catalog has
//! them) and the stream (columns as a `Relation` message lists them, with
//! their type OIDs), so both produce identical schemas for an unchanged
//! table.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::CaptureError;
use super::wire::quote_ident;
use crate::config::model::TableConfig;
use crate::event::table_id::TableId;
use crate::event::types::map_postgres;
use crate::sources::{SourceColumn, table_shape};

/// How a column's type is named for [`map_postgres`]: enums as `enum`,
/// domains as their base type, arrays of those with `[]`.
const TYPE_NAME: &str = "CASE \
    WHEN t.typtype = 'e' THEN 'enum' \
    WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) \
    WHEN e.typtype = 'e' THEN 'enum[]' \
    WHEN e.typtype = 'd' THEN format_type(e.typbasetype, e.typtypmod) || '[]' \
    ELSE format_type(t.oid, $2) END";

/// A captured table as the catalog describes it now.
#[derive(Debug, Clone)]
pub struct CatalogTable {
    pub oid: u32,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: char,
    pub columns: Vec<CatalogColumn>,
    pub primary_key: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CatalogColumn {
    pub name: String,
    /// As [`map_postgres`] takes it.
    pub type_name: String,
    pub dims: u8,
    pub not_null: bool,
}

pub use crate::sources::Shape;

/// Why Postgres would refuse the updates and deletes of `table` once it
/// is published (no replica identity), or `None`.
pub fn publish_problem(id: &TableId, table: &CatalogTable) -> Option<String> {
    let fix = format!(
        "Fix: ALTER TABLE {}.{} REPLICA IDENTITY FULL (or add a primary key, or REPLICA IDENTITY USING INDEX on a unique index)",
        quote_ident(&id.schema),
        quote_ident(&id.name)
    );
    match table.replica_identity {
        'n' => Some(format!(
            "table {id} has REPLICA IDENTITY NOTHING: once published, Postgres refuses its updates and deletes. {fix}"
        )),
        'd' if table.primary_key.is_empty() => Some(format!(
            "table {id} has no primary key and REPLICA IDENTITY DEFAULT: once published, Postgres refuses its updates and deletes (a `key:` in the pipeline does not change that). {fix}"
        )),
        _ => None,
    }
}

pub async fn lookup_table(client: &Client, id: &TableId) -> Result<CatalogTable, CaptureError> {
    let row = client
        .query_opt(
            "SELECT c.oid, c.relreplident::text, c.relkind::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&id.schema, &id.name],
        )
        .await?;
    let Some(row) = row else {
        return Err(CaptureError::Config(format!(
            "table {id} does not exist (or the user cannot see it)"
        )));
    };
    let oid: u32 = row.try_get(0)?;
    let identity: String = row.try_get(1)?;
    let kind: String = row.try_get(2)?;
    if !matches!(kind.as_str(), "r" | "p") {
        return Err(CaptureError::Config(format!(
            "{id} is not a table (relkind `{kind}`); only tables can be captured"
        )));
    }
    let rows = client
        .query(
            &format!(
                "SELECT a.attname::text, {} AS type_name, a.attndims, a.attnotnull \
                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                 LEFT JOIN pg_type e ON t.typcategory = 'A' AND e.oid = t.typelem \
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                TYPE_NAME.replace("$2", "a.atttypmod")
            ),
            &[&oid],
        )
        .await?;
    let mut columns = Vec::with_capacity(rows.len());
    for r in rows {
        let dims: i32 = r.try_get(2)?;
        columns.push(CatalogColumn {
            name: r.try_get(0)?,
            type_name: r.try_get(1)?,
            dims: u8::try_from(dims).unwrap_or(u8::MAX),
            not_null: r.try_get(3)?,
        });
    }
    let primary_key = client
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1 AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&oid],
        )
        .await?
        .into_iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CatalogTable {
        oid,
        replica_identity: identity.chars().next().unwrap_or('d'),
        columns,
        primary_key,
    })
}

/// The type name of a (type OID, modifier) pair from a `Relation` message.
pub async fn type_name(
    client: &Client,
    cache: &mut HashMap<(u32, i32), String>,
    oid: u32,
    modifier: i32,
) -> Result<String, CaptureError> {
    if let Some(t) = cache.get(&(oid, modifier)) {
        return Ok(t.clone());
    }
    let row = client
        .query_opt(
            &format!(
                "SELECT {TYPE_NAME} FROM pg_type t \
                 LEFT JOIN pg_type e ON t.typcategory = 'A' AND e.oid = t.typelem \
                 WHERE t.oid = $1"
            ),
            &[&oid, &modifier],
        )
        .await?;
    let name: String = match row {
        Some(r) => r.try_get(0)?,
        None => {
            return Err(CaptureError::Config(format!(
                "type OID {oid} is not in pg_type"
            )));
        }
    };
    cache.insert((oid, modifier), name.clone());
    Ok(name)
}

/// Builds the schema of a table from its source columns (in source order),
/// applying the pipeline's `exclude_columns` and `key`.
pub fn build_shape(
    id: &TableId,
    database: &str,
    columns: &[CatalogColumn],
    primary_key: &[String],
    replica_identity: char,
    cfg: &TableConfig,
) -> Result<Shape, CaptureError> {
    let key_names: Vec<String> = match (&cfg.key, primary_key.is_empty()) {
        (Some(k), _) => k.clone(),
        (None, false) => primary_key.to_vec(),
        (None, true) if replica_identity == 'f' => Vec::new(),
        (None, true) => {
            return Err(CaptureError::Config(format!(
                "table {id} has no primary key: set `key: [..]` for it in the pipeline, \
                 or `ALTER TABLE {id} REPLICA IDENTITY FULL` (then every column is the key)"
            )));
        }
    };
    let columns = columns.iter().map(|c| SourceColumn {
        name: c.name.clone(),
        ty: map_postgres(&c.type_name, c.dims).map_err(|e| e.to_string()),
        not_null: c.not_null,
        source_type: c.type_name.clone(),
    });
    table_shape(id, database, columns, &key_names, cfg).map_err(CaptureError::Config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, not_null: bool) -> CatalogColumn {
        CatalogColumn {
            name: name.into(),
            type_name: ty.into(),
            dims: 0,
            not_null,
        }
    }

    fn cfg(key: Option<Vec<&str>>, exclude: &[&str]) -> TableConfig {
        serde_json::from_value(serde_json::json!({
            "name": "public.t",
            "key": key,
            "exclude_columns": exclude,
        }))
        .unwrap()
    }

    #[test]
    fn shapes_follow_key_exclusions_and_identity() {
        let id = TableId::new("public", "t");
        let cols = [
            col("id", "bigint", true),
            col("card", "text", false),
            col("amount", "numeric(12,2)", false),
        ];
        let s = build_shape(&id, "db", &cols, &["id".into()], 'd', &cfg(None, &["card"])).unwrap();
        assert_eq!(s.targets, vec![Some(0), None, Some(1)]);
        assert_eq!(s.schema.key, vec![0]);
        assert!(!s.schema.columns.first().unwrap().nullable);
        let err = build_shape(&id, "db", &cols, &[], 'd', &cfg(None, &[])).unwrap_err();
        assert!(err.to_string().contains("no primary key"), "{err}");
        let s = build_shape(&id, "db", &cols, &[], 'f', &cfg(None, &[])).unwrap();
        assert_eq!(s.schema.key, vec![0, 1, 2]);
        let s = build_shape(&id, "db", &cols, &[], 'd', &cfg(Some(vec!["amount"]), &[])).unwrap();
        assert_eq!(s.schema.key, vec![2]);
        let err = build_shape(
            &id,
            "db",
            &cols,
            &[],
            'd',
            &cfg(Some(vec!["card"]), &["card"]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`card`"), "{err}");
        let bad = [col("r", "tsrange", false)];
        let err = build_shape(&id, "db", &bad, &[], 'f', &cfg(None, &[])).unwrap_err();
        assert!(err.to_string().contains("column `r`"), "{err}");
    }
}
