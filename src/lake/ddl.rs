//! `tidewater ddl`: the external-table DDL that lets Athena or Redshift
//! Spectrum query the lake tables of a pipeline.
//!
//! The columns and their types come from the table itself (the schema of
//! its latest completed commit, turned into the Arrow schema of its base
//! files), so the DDL matches the Parquet files on disk, schema evolution
//! included. Types map one to one:
//!
//! | Parquet (Arrow) | Athena (Hive) | Redshift Spectrum |
//! |---|---|---|
//! | UTF8 string | `string` | `varchar(65535)` |
//! | binary | `binary` | `varbyte(1024000)` |
//! | boolean | `boolean` | `boolean` |
//! | int8 / int16 / int32 / int64 | `tinyint` / `smallint` / `int` / `bigint` | `smallint` / `smallint` / `int` / `bigint` |
//! | float / double | `float` / `double` | `real` / `double precision` |
//! | decimal(p,s) | `decimal(p,s)` | `decimal(p,s)` |
//! | date | `date` | `date` |
//! | timestamp (µs, UTC-adjusted) | `timestamp` | `timestamp` |
//! | list | `array<..>` | `array<..>` |
//! | struct (intervals) | `struct<..>` | `struct<..>` |
//!
//! The derived partition column (`<column>_day`, ...) is the table's
//! partition key, not a data column; every partition present gets an
//! `ADD IF NOT EXISTS PARTITION` statement (Athena cannot `MSCK REPAIR` a
//! Hudi table). The input format is Hudi's, so engines read only the latest
//! file slice of each file group.

use arrow_schema::{DataType, Field, Schema};

use super::layout::TableLayout;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Athena,
    Redshift,
}

/// One lake table as the engine should see it.
pub struct TableDdl<'a> {
    /// Athena: the Glue database; Redshift: the external schema.
    pub database: &'a str,
    pub layout: &'a TableLayout,
    /// Base-file schema (meta columns included).
    pub schema: &'a Schema,
    /// The table's directory: `s3://bucket/prefix/<table>`.
    pub location: &'a str,
    /// Partition paths present, `created_at_day=2024-01-01`.
    pub partitions: &'a [String],
}

/// The type of one column for `engine`.
pub fn column_type(engine: Engine, ty: &DataType) -> Result<String, String> {
    let nested = |f: &Field| column_type(engine, f.data_type());
    Ok(match (engine, ty) {
        (Engine::Athena, DataType::Utf8) => "string".into(),
        (Engine::Redshift, DataType::Utf8) => "varchar(65535)".into(),
        (Engine::Athena, DataType::Binary) => "binary".into(),
        (Engine::Redshift, DataType::Binary) => "varbyte(1024000)".into(),
        (_, DataType::Boolean) => "boolean".into(),
        (Engine::Athena, DataType::Int8) => "tinyint".into(),
        (Engine::Redshift, DataType::Int8) | (_, DataType::Int16) => "smallint".into(),
        (_, DataType::Int32) => "int".into(),
        (_, DataType::Int64) => "bigint".into(),
        (Engine::Athena, DataType::Float32) => "float".into(),
        (Engine::Redshift, DataType::Float32) => "real".into(),
        (Engine::Athena, DataType::Float64) => "double".into(),
        (Engine::Redshift, DataType::Float64) => "double precision".into(),
        (_, DataType::Decimal128(p, s)) => format!("decimal({p},{s})"),
        (_, DataType::Date32) => "date".into(),
        (_, DataType::Timestamp(..)) => "timestamp".into(),
        (_, DataType::List(f)) => format!("array<{}>", nested(f)?),
        (_, DataType::Struct(fields)) => {
            let inner: Result<Vec<String>, String> = fields
                .iter()
                .map(|f| Ok(format!("{}:{}", f.name(), nested(f)?)))
                .collect();
            format!("struct<{}>", inner?.join(","))
        }
        (_, other) => return Err(format!("no {engine:?} type for Parquet type {other}")),
    })
}

fn quote(engine: Engine, name: &str) -> String {
    match engine {
        Engine::Athena => format!("`{}`", name.replace('`', "``")),
        Engine::Redshift => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The statements of one table: the CREATE, then one ADD PARTITION per
/// partition present.
pub fn table_statements(engine: Engine, t: &TableDdl<'_>) -> Result<Vec<String>, String> {
    let partition_field = t.layout.partition.as_ref().map(|p| p.field());
    let mut columns = Vec::new();
    for f in t.schema.fields() {
        if Some(f.name()) == partition_field.as_ref() {
            continue;
        }
        let ty = column_type(engine, f.data_type())
            .map_err(|e| format!("table {}, column `{}`: {e}", t.layout.name, f.name()))?;
        columns.push(format!("  {} {ty}", quote(engine, f.name())));
    }
    let name = format!(
        "{}.{}",
        quote(engine, t.database),
        quote(engine, &t.layout.name)
    );
    let partitioned = match &partition_field {
        Some(p) => {
            let ty = match engine {
                Engine::Athena => "string",
                Engine::Redshift => "varchar(64)",
            };
            format!("PARTITIONED BY ({} {ty})\n", quote(engine, p))
        }
        None => String::new(),
    };
    let mut out = vec![format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n{}\n)\n{partitioned}\
         ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'\n\
         STORED AS INPUTFORMAT 'org.apache.hudi.hadoop.HoodieParquetInputFormat'\n\
         OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat'\n\
         LOCATION {}",
        columns.join(",\n"),
        literal(t.location)
    )];
    if let Some(field) = &partition_field {
        for path in t.partitions {
            // Hive-style paths: `<field>=<value>`.
            let value = path.strip_prefix(&format!("{field}=")).ok_or_else(|| {
                format!(
                    "table {}: partition directory `{path}` is not `{field}=<value>`",
                    t.layout.name
                )
            })?;
            out.push(format!(
                "ALTER TABLE {name} ADD IF NOT EXISTS PARTITION ({} = {}) LOCATION {}",
                quote(engine, field),
                literal(value),
                literal(&format!("{}/{path}", t.location))
            ));
        }
    }
    Ok(out)
}

/// The statement that creates the database (Athena) or the external
/// schema on the Glue database (Redshift, with the cluster's default IAM
/// role).
pub fn database_statement(engine: Engine, database: &str) -> String {
    match engine {
        Engine::Athena => format!("CREATE DATABASE IF NOT EXISTS {}", quote(engine, database)),
        Engine::Redshift => format!(
            "CREATE EXTERNAL SCHEMA IF NOT EXISTS {} FROM DATA CATALOG DATABASE {} IAM_ROLE default CREATE EXTERNAL DATABASE IF NOT EXISTS",
            quote(engine, database),
            literal(database)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Granularity;
    use crate::lake::layout::PartitionSpec;
    use std::sync::Arc;

    #[test]
    fn partitions_and_quotes_follow_the_engine() {
        let layout = TableLayout {
            name: "public_orders".into(),
            database: "shop".into(),
            partition: Some(PartitionSpec {
                column: "created_at".into(),
                granularity: Granularity::Day,
            }),
        };
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("it's", DataType::Int8, true),
            Field::new("created_at_day", DataType::Utf8, false),
        ]);
        let partitions = vec!["created_at_day=2024-01-01".to_string()];
        let t = TableDdl {
            database: "shop",
            layout: &layout,
            schema: &schema,
            location: "s3://b/lake/public_orders",
            partitions: &partitions,
        };
        let athena = table_statements(Engine::Athena, &t).unwrap();
        assert!(athena[0].contains("  `it's` tinyint"), "{}", athena[0]);
        assert!(athena[0].contains("PARTITIONED BY (`created_at_day` string)"));
        assert!(!athena[0].contains("`created_at_day` string,"));
        assert_eq!(
            athena[1],
            "ALTER TABLE `shop`.`public_orders` ADD IF NOT EXISTS PARTITION (`created_at_day` = '2024-01-01') LOCATION 's3://b/lake/public_orders/created_at_day=2024-01-01'"
        );
        let redshift = table_statements(Engine::Redshift, &t).unwrap();
        assert!(
            redshift[0].contains("  \"it's\" smallint"),
            "{}",
            redshift[0]
        );
        let bad = vec!["2024-01-01".to_string()];
        let err = table_statements(
            Engine::Athena,
            &TableDdl {
                partitions: &bad,
                ..t
            },
        )
        .unwrap_err();
        assert!(err.contains("2024-01-01"), "{err}");
        let nested = DataType::List(Arc::new(Field::new(
            "element",
            DataType::Struct(vec![Field::new("days", DataType::Int32, true)].into()),
            true,
        )));
        assert_eq!(
            column_type(Engine::Athena, &nested).unwrap(),
            "array<struct<days:int>>"
        );
    }
}
