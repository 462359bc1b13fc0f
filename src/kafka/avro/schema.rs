//! The Avro schemas of change events: the key record, the value record, and
//! the Debezium-compatible envelope around them, generated from a
//! [`TableSchema`]; and the way back, a `TableSchema` rebuilt from the schemas
//! a sink reads.
//!
//! Naming follows Debezium: the envelope is `<namespace>.Envelope`, the rows
//! `<namespace>.Value` and the key `<namespace>.Key`, where the namespace is
//! the topic name made into a valid Avro namespace (`shop-pg.public.orders` →
//! `shop_pg.public.orders`). Column names that are not valid Avro names are
//! adjusted (`Order Items` → `Order_Items`) and the original kept in the
//! field's `tidewater.column` property.
//!
//! Evolution: every value field is an optional union with a `null` default,
//! so a schema with an added column can read old events and the other way
//! round (Avro's backward and forward compatibility). Each field also carries
//! `tidewater.type` (the [`ColumnType`]), `tidewater.nullable` and
//! `tidewater.source_type`, which is what lets a sink rebuild the table
//! schema from the writer schema alone.

use serde_json::{Value as Json, json};

use crate::event::schema::{Column, TableSchema};
use crate::event::table_id::TableId;
use crate::event::types::ColumnType;

/// Which source block an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connector {
    Postgres,
    Mysql,
}

impl Connector {
    pub fn name(self) -> &'static str {
        match self {
            Connector::Postgres => "postgresql",
            Connector::Mysql => "mysql",
        }
    }

    pub fn from_name(name: &str) -> Option<Connector> {
        match name {
            "postgresql" => Some(Connector::Postgres),
            "mysql" => Some(Connector::Mysql),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "table {table}: columns `{first}` and `{second}` both become the Avro field `{field}`; rename one"
    )]
    FieldClash {
        table: String,
        first: String,
        second: String,
        field: String,
    },
    #[error("the schema is not a tidewater change-event schema: {0}")]
    NotOurs(String),
}

/// Makes a valid Avro name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn avro_name(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A valid Avro namespace from a topic name.
pub fn avro_namespace(topic: &str) -> String {
    topic
        .split('.')
        .filter(|p| !p.is_empty())
        .map(avro_name)
        .collect::<Vec<_>>()
        .join(".")
}

/// The Avro type of a column's values, without the `null` branch.
pub fn column_avro_type(ty: &ColumnType, interval_defined: &mut bool) -> Json {
    match ty {
        ColumnType::Boolean => json!("boolean"),
        ColumnType::Int { bits: 8 | 16, .. }
        | ColumnType::Int {
            bits: 32,
            signed: true,
        } => {
            json!("int")
        }
        ColumnType::Int { .. } => json!("long"),
        ColumnType::UInt64 => decimal_type(20, 0),
        ColumnType::Float32 => json!("float"),
        ColumnType::Float64 => json!("double"),
        ColumnType::Decimal { precision, scale } => decimal_type(*precision, *scale),
        ColumnType::NumericText | ColumnType::Text => json!("string"),
        ColumnType::Json => json!({"type": "string", "connect.name": "io.debezium.data.Json"}),
        ColumnType::Uuid => json!({"type": "string", "logicalType": "uuid"}),
        ColumnType::Bytes => json!("bytes"),
        ColumnType::Date => json!({"type": "int", "logicalType": "date"}),
        ColumnType::Time => json!({"type": "long", "logicalType": "time-micros"}),
        ColumnType::DurationMicros => {
            json!({"type": "long", "connect.name": "io.debezium.time.MicroTime"})
        }
        ColumnType::Timestamp => json!({"type": "long", "logicalType": "local-timestamp-micros"}),
        ColumnType::TimestampTz => json!({"type": "long", "logicalType": "timestamp-micros"}),
        ColumnType::Interval => {
            if *interval_defined {
                json!("tidewater.Interval")
            } else {
                *interval_defined = true;
                json!({
                    "type": "record",
                    "name": "Interval",
                    "namespace": "tidewater",
                    "fields": [
                        {"name": "months", "type": "int"},
                        {"name": "days", "type": "int"},
                        {"name": "micros", "type": "long"}
                    ]
                })
            }
        }
        ColumnType::Array { element, dims } => {
            let mut inner = column_avro_type(element, interval_defined);
            for _ in 0..*dims {
                inner = json!({"type": "array", "items": ["null", inner]});
            }
            inner
        }
    }
}

fn decimal_type(precision: u16, scale: u16) -> Json {
    json!({
        "type": "bytes",
        "logicalType": "decimal",
        "precision": precision,
        "scale": scale,
        "connect.name": "org.apache.kafka.connect.data.Decimal",
        "connect.parameters": {"scale": scale.to_string(), "connect.decimal.precision": precision.to_string()}
    })
}

/// Avro field names of the columns, checked for clashes.
fn field_names(table: &TableSchema) -> Result<Vec<String>, SchemaError> {
    let mut names: Vec<String> = Vec::with_capacity(table.columns.len());
    for column in &table.columns {
        let field = avro_name(&column.name);
        if let Some(i) = names.iter().position(|n| *n == field) {
            return Err(SchemaError::FieldClash {
                table: table.id.to_string(),
                first: table
                    .columns
                    .get(i)
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
                second: column.name.clone(),
                field,
            });
        }
        names.push(field);
    }
    Ok(names)
}

fn field(column: &Column, name: &str, ty: Json, optional: bool) -> Json {
    let mut f = if optional {
        json!({"name": name, "type": ["null", ty], "default": null})
    } else {
        json!({"name": name, "type": ty})
    };
    if let Some(obj) = f.as_object_mut() {
        if name != column.name {
            obj.insert("tidewater.column".into(), json!(column.name));
        }
        obj.insert("tidewater.type".into(), json!(column.ty.name()));
        obj.insert("tidewater.nullable".into(), json!(column.nullable));
        obj.insert("tidewater.source_type".into(), json!(column.source_type));
    }
    f
}

/// The key schema: the key columns, non-null unless the column is nullable.
pub fn key_schema(table: &TableSchema, topic: &str) -> Result<Json, SchemaError> {
    let names = field_names(table)?;
    let mut interval = false;
    let fields: Vec<Json> = table
        .key
        .iter()
        .filter_map(|i| Some((table.columns.get(*i)?, names.get(*i)?)))
        .map(|(column, name)| {
            let ty = column_avro_type(&column.ty, &mut interval);
            field(column, name, ty, column.nullable)
        })
        .collect();
    let ns = avro_namespace(topic);
    Ok(json!({
        "type": "record",
        "name": "Key",
        "namespace": ns,
        "fields": fields,
        "connect.name": format!("{ns}.Key"),
    }))
}

/// The value schema: the Debezium envelope with the table's row record.
pub fn value_schema(
    table: &TableSchema,
    topic: &str,
    connector: Connector,
) -> Result<Json, SchemaError> {
    let names = field_names(table)?;
    let mut interval = false;
    let fields: Vec<Json> = table
        .columns
        .iter()
        .zip(&names)
        .map(|(column, name)| {
            let ty = column_avro_type(&column.ty, &mut interval);
            field(column, name, ty, true)
        })
        .collect();
    let ns = avro_namespace(topic);
    let row = json!({
        "type": "record",
        "name": "Value",
        "fields": fields,
        "connect.name": format!("{ns}.Value"),
        "tidewater.db": table.database,
        "tidewater.schema": table.id.schema,
        "tidewater.table": table.id.name,
        "tidewater.key": table.key_columns().map(|c| c.name.clone()).collect::<Vec<_>>(),
    });
    let optional_long = json!(["null", "long"]);
    Ok(json!({
        "type": "record",
        "name": "Envelope",
        "namespace": ns,
        "fields": [
            {"name": "before", "type": ["null", row], "default": null},
            {"name": "after", "type": ["null", "Value"], "default": null},
            {"name": "source", "type": source_schema(connector)},
            {"name": "transaction", "type": ["null", transaction_schema()], "default": null},
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": optional_long, "default": null},
            {"name": "ts_us", "type": optional_long, "default": null},
            {"name": "ts_ns", "type": optional_long, "default": null},
            {"name": "unchanged_columns", "type": ["null", {"type": "array", "items": "string"}], "default": null,
             "doc": "Columns whose new value the source did not send (unchanged TOAST values): their `after` value is null and the stored value stands."}
        ],
        "connect.name": format!("{ns}.Envelope"),
        "connect.version": 2,
    }))
}

fn snapshot_field() -> Json {
    json!({
        "name": "snapshot",
        "type": [{
            "type": "string",
            "connect.version": 1,
            "connect.parameters": {"allowed": "true,last,false,incremental"},
            "connect.default": "false",
            "connect.name": "io.debezium.data.Enum"
        }, "null"],
        "default": "false"
    })
}

/// The connector's source block, Debezium's fields first, then the position.
pub fn source_schema(connector: Connector) -> Json {
    let optional =
        |name: &str, ty: &str| json!({"name": name, "type": ["null", ty], "default": null});
    let required = |name: &str, ty: &str| json!({"name": name, "type": ty});
    let mut fields = vec![
        required("version", "string"),
        required("connector", "string"),
        required("name", "string"),
        required("ts_ms", "long"),
        snapshot_field(),
        required("db", "string"),
        optional("sequence", "string"),
        optional("ts_us", "long"),
        optional("ts_ns", "long"),
    ];
    match connector {
        Connector::Postgres => fields.extend([
            required("schema", "string"),
            required("table", "string"),
            optional("txId", "long"),
            optional("lsn", "long"),
            optional("xmin", "long"),
        ]),
        Connector::Mysql => fields.extend([
            optional("table", "string"),
            required("server_id", "long"),
            optional("gtid", "string"),
            required("file", "string"),
            required("pos", "long"),
            required("row", "int"),
            optional("thread", "long"),
            optional("query", "string"),
        ]),
    }
    fields.extend([
        json!({"name": "commit_position", "type": "long",
               "doc": "Ordering position part 1: Postgres commit LSN; MySQL (binlog file number << 32) | position of the transaction."}),
        json!({"name": "event_ordinal", "type": "long",
               "doc": "Ordering position part 2: index of the event within its transaction or snapshot."}),
    ]);
    let namespace = match connector {
        Connector::Postgres => "io.debezium.connector.postgresql",
        Connector::Mysql => "io.debezium.connector.mysql",
    };
    json!({
        "type": "record",
        "name": "Source",
        "namespace": namespace,
        "fields": fields,
        "connect.name": format!("{namespace}.Source"),
    })
}

fn transaction_schema() -> Json {
    json!({
        "type": "record",
        "name": "block",
        "namespace": "event",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "total_order", "type": "long"},
            {"name": "data_collection_order", "type": "long"}
        ],
        "connect.name": "event.block",
        "connect.version": 1,
    })
}

/// Rebuilds the table schema from a value (envelope) schema written by
/// tidewater, and tells which connector's source block the envelope holds.
pub fn table_from_schemas(value: &Json) -> Result<(TableSchema, Connector), SchemaError> {
    let not_ours = |what: &str| SchemaError::NotOurs(what.to_string());
    let fields = value
        .get("fields")
        .and_then(Json::as_array)
        .ok_or_else(|| not_ours("the value schema is not a record"))?;
    let field_type = |name: &str| {
        fields
            .iter()
            .find(|f| f.get("name").and_then(Json::as_str) == Some(name))
            .and_then(|f| f.get("type"))
    };
    let row = field_type("before")
        .and_then(Json::as_array)
        .and_then(|u| u.get(1))
        .ok_or_else(|| not_ours("no `before` row record"))?;
    let connector = field_type("source")
        .and_then(|s| s.get("namespace"))
        .and_then(Json::as_str)
        .and_then(|ns| ns.rsplit('.').next())
        .and_then(Connector::from_name)
        .ok_or_else(|| not_ours("no known `source` block"))?;
    let text = |key: &str| {
        row.get(key)
            .and_then(Json::as_str)
            .map(str::to_string)
            .ok_or_else(|| not_ours(&format!("the row record has no `{key}`")))
    };
    let id = TableId::new(text("tidewater.schema")?, text("tidewater.table")?);
    let database = text("tidewater.db")?;
    let mut columns = Vec::new();
    for f in row
        .get("fields")
        .and_then(Json::as_array)
        .ok_or_else(|| not_ours("the row record has no fields"))?
    {
        columns.push(column_from_field(f)?);
    }
    let mut key = Vec::new();
    for name in row
        .get("tidewater.key")
        .and_then(Json::as_array)
        .ok_or_else(|| not_ours("the row record has no `tidewater.key`"))?
    {
        let name = name.as_str().unwrap_or_default();
        let index = columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| not_ours(&format!("key column `{name}` is not a column")))?;
        key.push(index);
    }
    if key.is_empty() {
        return Err(not_ours("the table has no key columns"));
    }
    Ok((
        TableSchema {
            id,
            database,
            columns,
            key,
        },
        connector,
    ))
}

fn column_from_field(f: &Json) -> Result<Column, SchemaError> {
    let not_ours = |what: String| SchemaError::NotOurs(what);
    let avro = f
        .get("name")
        .and_then(Json::as_str)
        .ok_or_else(|| not_ours("a row field has no name".into()))?
        .to_string();
    let name = f
        .get("tidewater.column")
        .and_then(Json::as_str)
        .unwrap_or(&avro)
        .to_string();
    let ty_name = f
        .get("tidewater.type")
        .and_then(Json::as_str)
        .ok_or_else(|| not_ours(format!("field `{avro}` has no tidewater.type")))?;
    let ty = ColumnType::from_name(ty_name)
        .ok_or_else(|| not_ours(format!("field `{avro}` has an unknown type `{ty_name}`")))?;
    let nullable = f
        .get("tidewater.nullable")
        .and_then(Json::as_bool)
        .unwrap_or(true);
    let source_type = f
        .get("tidewater.source_type")
        .and_then(Json::as_str)
        .unwrap_or(ty_name)
        .to_string();
    Ok(Column {
        name,
        ty,
        nullable,
        source_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn orders() -> TableSchema {
        TableSchema {
            id: TableId::new("public", "Order Items"),
            database: "shop".into(),
            columns: vec![
                Column::new(
                    "id",
                    ColumnType::Int {
                        bits: 64,
                        signed: true,
                    },
                    false,
                ),
                Column::new(
                    "amount",
                    ColumnType::Decimal {
                        precision: 12,
                        scale: 2,
                    },
                    true,
                ),
                Column::new("created at", ColumnType::TimestampTz, true),
                Column::new("span", ColumnType::Interval, true),
                Column::new(
                    "spans",
                    ColumnType::Array {
                        element: Box::new(ColumnType::Interval),
                        dims: 1,
                    },
                    true,
                ),
            ],
            key: vec![0],
        }
    }

    #[test]
    fn names_are_made_valid_avro() {
        assert_eq!(
            avro_namespace("shop-pg.public.Order Items"),
            "shop_pg.public.Order_Items"
        );
        assert_eq!(avro_name("1st"), "_1st");
        assert_eq!(avro_name("zürich"), "z_rich");
    }

    #[test]
    fn table_schema_survives_the_round_trip_through_avro() {
        let table = orders();
        let topic = "shop-pg.public.Order_Items";
        let key = key_schema(&table, topic).unwrap();
        let value = value_schema(&table, topic, Connector::Postgres).unwrap();
        assert_eq!(key["fields"][0]["name"], "id");
        let (back, connector) = table_from_schemas(&value).unwrap();
        assert_eq!(back, table);
        assert_eq!(connector, Connector::Postgres);
        // The interval record is defined once and referenced after.
        let text = value.to_string();
        assert_eq!(text.matches("\"name\":\"Interval\"").count(), 1, "{text}");
        assert!(text.contains("\"tidewater.Interval\""), "{text}");
    }

    #[test]
    fn clashing_field_names_are_an_error() {
        let mut table = orders();
        table
            .columns
            .push(Column::new("created_at", ColumnType::Text, true));
        let err = value_schema(&table, "t", Connector::Mysql).unwrap_err();
        assert!(
            err.to_string().contains("`created at` and `created_at`"),
            "{err}"
        );
    }
}
