//! Avro binary back into change events, driven by the writer schema.
//!
//! The writer's key and value schemas are compiled once into a [`Plan`]: the
//! row record's fields are tied to the rebuilt table's columns, and the
//! envelope's fields are matched by name, so fields a newer writer added are
//! skipped rather than misread. Every read is bounds-checked; a message that
//! does not match its schema is an error, never a panic or a partial event.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value as Json;

use super::binary::{ReadError, Reader};
use super::schema::{Connector, SchemaError, table_from_schemas};
use crate::event::change::{
    ChangeEvent, Op, Position, SnapshotMarker, Source, SourceDetail, Transaction,
};
use crate::event::datum::{Datum, Row};
use crate::event::decimal::Decimal;
use crate::event::schema::TableSchema;
use crate::event::types::ColumnType;

/// The shape of an Avro type, enough to read or skip it.
#[derive(Debug, Clone)]
pub enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    Enum(Vec<String>),
    Array(Box<Node>),
    Map(Box<Node>),
    Union(Vec<Node>),
    Record(Arc<Vec<(String, Node)>>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("bad schema: {0}")]
    Schema(String),
    #[error(transparent)]
    NotOurs(#[from] SchemaError),
    #[error("{0}")]
    Read(#[from] ReadError),
    #[error("column `{column}`: {message}")]
    Column { column: String, message: String },
}

/// Compiles a schema JSON into a [`Node`], resolving named types.
pub fn compile(schema: &Json) -> Result<Node, DecodeError> {
    let mut names: HashMap<String, Node> = HashMap::new();
    compile_in(schema, "", &mut names)
}

fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

fn compile_in(
    schema: &Json,
    namespace: &str,
    names: &mut HashMap<String, Node>,
) -> Result<Node, DecodeError> {
    let bad = |m: &str| DecodeError::Schema(m.to_string());
    match schema {
        Json::String(name) => primitive(name).map_or_else(
            || {
                names
                    .get(&full_name(name, namespace))
                    .or_else(|| names.get(name))
                    .cloned()
                    .ok_or_else(|| bad(&format!("unknown type `{name}`")))
            },
            Ok,
        ),
        Json::Array(branches) => Ok(Node::Union(
            branches
                .iter()
                .map(|b| compile_in(b, namespace, names))
                .collect::<Result<_, _>>()?,
        )),
        Json::Object(obj) => {
            let ty = obj
                .get("type")
                .ok_or_else(|| bad("a type without `type`"))?;
            let Some(ty_name) = ty.as_str() else {
                return compile_in(ty, namespace, names);
            };
            match ty_name {
                "record" | "error" => {
                    let name = obj
                        .get("name")
                        .and_then(Json::as_str)
                        .ok_or_else(|| bad("a record without a name"))?;
                    let ns = obj
                        .get("namespace")
                        .and_then(Json::as_str)
                        .unwrap_or(namespace);
                    let full = full_name(name, ns);
                    let inner_ns = full
                        .rsplit_once('.')
                        .map(|(n, _)| n.to_string())
                        .unwrap_or_default();
                    let mut fields = Vec::new();
                    for f in obj
                        .get("fields")
                        .and_then(Json::as_array)
                        .ok_or_else(|| bad("a record without fields"))?
                    {
                        let fname = f
                            .get("name")
                            .and_then(Json::as_str)
                            .ok_or_else(|| bad("a field without a name"))?;
                        let fty = f.get("type").ok_or_else(|| bad("a field without a type"))?;
                        fields.push((fname.to_string(), compile_in(fty, &inner_ns, names)?));
                    }
                    let node = Node::Record(Arc::new(fields));
                    names.insert(full, node.clone());
                    Ok(node)
                }
                "enum" => {
                    let symbols = obj
                        .get("symbols")
                        .and_then(Json::as_array)
                        .map(|s| {
                            s.iter()
                                .filter_map(Json::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    let node = Node::Enum(symbols);
                    if let Some(name) = obj.get("name").and_then(Json::as_str) {
                        let ns = obj
                            .get("namespace")
                            .and_then(Json::as_str)
                            .unwrap_or(namespace);
                        names.insert(full_name(name, ns), node.clone());
                    }
                    Ok(node)
                }
                "fixed" => {
                    let size = obj
                        .get("size")
                        .and_then(Json::as_u64)
                        .ok_or_else(|| bad("fixed without size"))?;
                    let node =
                        Node::Fixed(usize::try_from(size).map_err(|_| bad("fixed too large"))?);
                    if let Some(name) = obj.get("name").and_then(Json::as_str) {
                        let ns = obj
                            .get("namespace")
                            .and_then(Json::as_str)
                            .unwrap_or(namespace);
                        names.insert(full_name(name, ns), node.clone());
                    }
                    Ok(node)
                }
                "array" => Ok(Node::Array(Box::new(compile_in(
                    obj.get("items").ok_or_else(|| bad("array without items"))?,
                    namespace,
                    names,
                )?))),
                "map" => Ok(Node::Map(Box::new(compile_in(
                    obj.get("values").ok_or_else(|| bad("map without values"))?,
                    namespace,
                    names,
                )?))),
                other => primitive(other).ok_or_else(|| bad(&format!("unknown type `{other}`"))),
            }
        }
        _ => Err(bad("a type is neither a name, a union nor an object")),
    }
}

fn primitive(name: &str) -> Option<Node> {
    Some(match name {
        "null" => Node::Null,
        "boolean" => Node::Boolean,
        "int" => Node::Int,
        "long" => Node::Long,
        "float" => Node::Float,
        "double" => Node::Double,
        "bytes" => Node::Bytes,
        "string" => Node::String,
        _ => return None,
    })
}

/// Reads and discards a value of `node`.
pub fn skip(r: &mut Reader<'_>, node: &Node) -> Result<(), ReadError> {
    match node {
        Node::Null => {}
        Node::Boolean => {
            r.byte()?;
        }
        Node::Int | Node::Long | Node::Enum(_) => {
            r.long()?;
        }
        Node::Float => {
            r.fixed(4)?;
        }
        Node::Double => {
            r.fixed(8)?;
        }
        Node::Bytes | Node::String => {
            r.bytes()?;
        }
        Node::Fixed(n) => {
            r.fixed(*n)?;
        }
        Node::Array(item) => loop {
            let n = r.block_count()?;
            if n == 0 {
                break;
            }
            for _ in 0..n {
                skip(r, item)?;
            }
        },
        Node::Map(value) => loop {
            let n = r.block_count()?;
            if n == 0 {
                break;
            }
            for _ in 0..n {
                r.bytes()?;
                skip(r, value)?;
            }
        },
        Node::Union(branches) => {
            let branch = union_branch(r, branches)?;
            skip(r, branch)?;
        }
        Node::Record(fields) => {
            for (_, f) in fields.iter() {
                skip(r, f)?;
            }
        }
    }
    Ok(())
}

fn union_branch<'n>(r: &mut Reader<'_>, branches: &'n [Node]) -> Result<&'n Node, ReadError> {
    let at = r.position();
    let index = r.long()?;
    usize::try_from(index)
        .ok()
        .and_then(|i| branches.get(i))
        .ok_or(ReadError::Branch { branch: index, at })
}

/// Everything needed to decode the messages of one (key schema, value
/// schema) pair.
#[derive(Debug)]
pub struct Plan {
    pub table: Arc<TableSchema>,
    pub connector: Connector,
    key: Option<Node>,
    envelope: Vec<(String, Node)>,
    row: Vec<Node>,
}

impl Plan {
    /// A plan for messages written with `value_schema`, and their keys
    /// written with `key_schema` (a truncate has no key).
    pub fn new(key_schema: Option<&Json>, value_schema: &Json) -> Result<Plan, DecodeError> {
        let (table, connector) = table_from_schemas(value_schema)?;
        let key = key_schema.map(compile).transpose()?;
        let Node::Record(envelope) = compile(value_schema)? else {
            return Err(DecodeError::Schema(
                "the value schema is not a record".into(),
            ));
        };
        let row = envelope
            .iter()
            .find(|(n, _)| n == "before")
            .and_then(|(_, node)| match node {
                Node::Union(b) => b.get(1).cloned(),
                _ => None,
            });
        let Some(Node::Record(row_fields)) = row else {
            return Err(DecodeError::Schema(
                "`before` is not an optional record".into(),
            ));
        };
        if row_fields.len() != table.columns.len() {
            return Err(DecodeError::Schema("row fields and columns differ".into()));
        }
        Ok(Plan {
            table: Arc::new(table),
            connector,
            key,
            envelope: envelope.as_ref().clone(),
            row: row_fields.iter().map(|(_, n)| n.clone()).collect(),
        })
    }

    /// Decodes a key body into the key columns' values.
    pub fn decode_key(&self, body: &[u8]) -> Result<Row, DecodeError> {
        let mut r = Reader::new(body);
        let Some(Node::Record(fields)) = &self.key else {
            return Err(DecodeError::Schema("no key schema, or not a record".into()));
        };
        if fields.len() != self.table.key.len() {
            return Err(DecodeError::Schema(
                "key fields and key columns differ".into(),
            ));
        }
        let mut values = Vec::with_capacity(fields.len());
        for ((_, node), column_index) in fields.iter().zip(&self.table.key) {
            let column = self
                .table
                .columns
                .get(*column_index)
                .ok_or_else(|| DecodeError::Schema("key column out of range".into()))?;
            values.push(read_value(&mut r, node, &column.ty, &column.name)?);
        }
        if !r.is_empty() {
            return Err(DecodeError::Read(ReadError::Invalid(
                "bytes left after the key".into(),
            )));
        }
        Ok(Row(values))
    }

    /// Decodes an envelope body into a change event.
    pub fn decode_value(&self, body: &[u8]) -> Result<ChangeEvent, DecodeError> {
        let mut r = Reader::new(body);
        let mut before = None;
        let mut after = None;
        let mut source = None;
        let mut transaction = None;
        let mut op = None;
        let mut ts_us = None;
        let mut unchanged: Vec<String> = Vec::new();
        for (name, node) in &self.envelope {
            match name.as_str() {
                "before" | "after" => {
                    let Node::Union(branches) = node else {
                        return Err(DecodeError::Schema(format!("`{name}` is not a union")));
                    };
                    let row = match union_branch(&mut r, branches)? {
                        Node::Null => None,
                        _ => Some(self.read_row(&mut r)?),
                    };
                    if name == "before" {
                        before = row;
                    } else {
                        after = row;
                    }
                }
                "source" => source = Some(self.read_source(&mut r, node)?),
                "transaction" => {
                    let Node::Union(branches) = node else {
                        return Err(DecodeError::Schema("`transaction` is not a union".into()));
                    };
                    if let Node::Record(_) = union_branch(&mut r, branches)? {
                        let id = r.string()?.to_string();
                        let total_order = r.long()? as u64;
                        let data_collection_order = r.long()? as u64;
                        transaction = Some(Transaction {
                            id,
                            total_order,
                            data_collection_order,
                        });
                    }
                }
                "op" => {
                    let code = r.string()?;
                    op = Some(Op::from_code(code).ok_or_else(|| {
                        DecodeError::Read(ReadError::Invalid(format!("unknown op `{code}`")))
                    })?);
                }
                "ts_us" => ts_us = read_optional_long(&mut r, node)?,
                "unchanged_columns" => {
                    if let Node::Union(branches) = node {
                        if let Node::Array(_) = union_branch(&mut r, branches)? {
                            loop {
                                let n = r.block_count()?;
                                if n == 0 {
                                    break;
                                }
                                for _ in 0..n {
                                    unchanged.push(r.string()?.to_string());
                                }
                            }
                        }
                    } else {
                        skip(&mut r, node)?;
                    }
                }
                _ => skip(&mut r, node)?,
            }
        }
        let (source, position) =
            source.ok_or_else(|| DecodeError::Schema("no source block".into()))?;
        if !unchanged.is_empty()
            && let Some(row) = after.as_mut()
        {
            for name in &unchanged {
                if let Some(i) = self.table.column_index(name)
                    && let Some(d) = row.0.get_mut(i)
                {
                    *d = Datum::Unchanged;
                }
            }
        }
        if !r.is_empty() {
            return Err(DecodeError::Read(ReadError::Invalid(format!(
                "{} bytes left after the envelope",
                body.len() - r.position()
            ))));
        }
        Ok(ChangeEvent {
            table: self.table.clone(),
            op: op.ok_or_else(|| DecodeError::Schema("no op".into()))?,
            position,
            before,
            after,
            source,
            transaction,
            ts_us: ts_us.unwrap_or(0),
        })
    }

    fn read_row(&self, r: &mut Reader<'_>) -> Result<Row, DecodeError> {
        let mut values = Vec::with_capacity(self.row.len());
        for (node, column) in self.row.iter().zip(&self.table.columns) {
            values.push(read_value(r, node, &column.ty, &column.name)?);
        }
        Ok(Row(values))
    }

    fn read_source(
        &self,
        r: &mut Reader<'_>,
        node: &Node,
    ) -> Result<(Source, Position), DecodeError> {
        let Node::Record(fields) = node else {
            return Err(DecodeError::Schema("`source` is not a record".into()));
        };
        let mut text: HashMap<&str, String> = HashMap::new();
        let mut long: HashMap<&str, i64> = HashMap::new();
        for (name, f) in fields.iter() {
            match f {
                Node::String => {
                    text.insert(name, r.string()?.to_string());
                }
                Node::Long | Node::Int => {
                    long.insert(name, r.long()?);
                }
                Node::Union(branches) => match union_branch(r, branches)? {
                    Node::String => {
                        text.insert(name, r.string()?.to_string());
                    }
                    Node::Long | Node::Int => {
                        long.insert(name, r.long()?);
                    }
                    other => skip(r, other)?,
                },
                other => skip(r, other)?,
            }
        }
        let get_text = |k: &str| text.get(k).cloned().unwrap_or_default();
        let get_long = |k: &str| long.get(k).copied();
        let commit_ts_us =
            get_long("ts_us").unwrap_or_else(|| get_long("ts_ms").unwrap_or(0) * 1000);
        let detail = match self.connector {
            Connector::Postgres => SourceDetail::Postgres {
                lsn: get_long("lsn").unwrap_or(0) as u64,
                tx_id: get_long("txId").and_then(|v| u32::try_from(v).ok()),
            },
            Connector::Mysql => SourceDetail::Mysql {
                server_id: get_long("server_id")
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0),
                gtid: text.get("gtid").cloned(),
                file: get_text("file"),
                pos: get_long("pos").unwrap_or(0) as u64,
                row: get_long("row")
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0),
                thread: get_long("thread").map(|v| v as u64),
            },
        };
        let db = get_text("db");
        let schema = match self.connector {
            Connector::Postgres => get_text("schema"),
            Connector::Mysql => db.clone(),
        };
        let position = Position::new(
            get_long("commit_position")
                .ok_or_else(|| DecodeError::Schema("no commit_position".into()))?
                as u64,
            get_long("event_ordinal")
                .ok_or_else(|| DecodeError::Schema("no event_ordinal".into()))? as u64,
        );
        let source = Source {
            name: get_text("name"),
            db,
            schema,
            table: get_text("table"),
            commit_ts_us,
            snapshot: SnapshotMarker::parse(&get_text("snapshot")).unwrap_or(SnapshotMarker::False),
            detail,
        };
        Ok((source, position))
    }
}

fn read_optional_long(r: &mut Reader<'_>, node: &Node) -> Result<Option<i64>, DecodeError> {
    match node {
        Node::Long | Node::Int => Ok(Some(r.long()?)),
        Node::Union(branches) => match union_branch(r, branches)? {
            Node::Long | Node::Int => Ok(Some(r.long()?)),
            other => {
                skip(r, other)?;
                Ok(None)
            }
        },
        other => {
            skip(r, other)?;
            Ok(None)
        }
    }
}

/// Reads one field (optional or not) as a value of `ty`.
fn read_value(
    r: &mut Reader<'_>,
    node: &Node,
    ty: &ColumnType,
    column: &str,
) -> Result<Datum, DecodeError> {
    let bad = |message: String| DecodeError::Column {
        column: column.to_string(),
        message,
    };
    let node = match node {
        Node::Union(branches) => union_branch(r, branches)?,
        other => other,
    };
    Ok(match (node, ty) {
        (Node::Null, _) => Datum::Null,
        (Node::Boolean, ColumnType::Boolean) => Datum::Bool(r.boolean()?),
        (Node::Int | Node::Long, ColumnType::Int { .. }) => {
            let d = Datum::Int(r.long()?);
            if !d.fits(ty) {
                return Err(bad(format!("{d:?} is out of range for {ty}")));
            }
            d
        }
        (Node::Bytes, ColumnType::UInt64) => {
            let dec = Decimal::from_twos_complement(r.bytes()?);
            let v = dec
                .to_i128()
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| bad("an unsigned 64-bit value out of range".into()))?;
            Datum::UInt64(v)
        }
        (Node::Float, ColumnType::Float32) => Datum::Float32(r.float()?),
        (Node::Double, ColumnType::Float64) => Datum::Float64(r.double()?),
        (Node::Bytes, ColumnType::Decimal { .. }) => {
            Datum::Decimal(Decimal::from_twos_complement(r.bytes()?))
        }
        (
            Node::String,
            ColumnType::Text | ColumnType::Json | ColumnType::Uuid | ColumnType::NumericText,
        ) => Datum::Text(r.string()?.to_string()),
        (Node::Bytes, ColumnType::Bytes) => Datum::Bytes(r.bytes()?.to_vec()),
        (Node::Int, ColumnType::Date) => Datum::Date(r.int()?),
        (
            Node::Long,
            ColumnType::Time
            | ColumnType::DurationMicros
            | ColumnType::Timestamp
            | ColumnType::TimestampTz,
        ) => Datum::Micros(r.long()?),
        (Node::Record(_), ColumnType::Interval) => Datum::Interval {
            months: r.int()?,
            days: r.int()?,
            micros: r.long()?,
        },
        (Node::Array(item), ColumnType::Array { element, dims }) => {
            let inner = if *dims > 1 {
                ColumnType::Array {
                    element: element.clone(),
                    dims: dims - 1,
                }
            } else {
                (**element).clone()
            };
            let mut items = Vec::new();
            loop {
                let n = r.block_count()?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    items.push(read_value(r, item, &inner, column)?);
                }
            }
            Datum::Array(items)
        }
        (node, ty) => return Err(bad(format!("Avro {node:?} does not hold a {ty}"))),
    })
}
