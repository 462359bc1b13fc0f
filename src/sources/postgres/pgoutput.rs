//! The `pgoutput` logical decoding messages (protocol version 1), as the
//! walsender sends them inside `XLogData`. Layout: the Postgres manual,
//! "Logical Replication Message Formats".
//!
//! Values stay text here ([`Value`]); [`super::text`] turns them into typed
//! data once the relation's column types are known.

use bytes::{Buf, Bytes};

/// One column value of a tuple.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// An unchanged TOAST value that the walsender did not send.
    Unchanged,
    Text(Bytes),
}

/// One column of a `Relation` message.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationColumn {
    /// Part of the replica identity.
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub oid: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Begin {
        /// LSN of the commit record.
        final_lsn: u64,
        /// Microseconds since 2000-01-01.
        commit_ts: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: u64,
        /// The LSN just past the commit record: what a standby confirms.
        end_lsn: u64,
        commit_ts: i64,
    },
    Origin,
    Relation(Relation),
    Type,
    Insert {
        relation: u32,
        new: Vec<Value>,
    },
    Update {
        relation: u32,
        /// `K` (key columns only) or `O` (the whole old row, with REPLICA
        /// IDENTITY FULL); absent when the key did not change and identity is
        /// the default.
        old: Option<Vec<Value>>,
        new: Vec<Value>,
    },
    Delete {
        relation: u32,
        old: Vec<Value>,
    },
    Truncate {
        relations: Vec<u32>,
    },
    /// A logical message (`pg_logical_emit_message`).
    Message {
        prefix: String,
    },
}

fn short(what: &str) -> String {
    format!("pgoutput: message `{what}` is cut short")
}

struct Reader {
    buf: Bytes,
    what: &'static str,
}

impl Reader {
    fn need(&self, n: usize) -> Result<(), String> {
        if self.buf.len() < n {
            Err(short(self.what))
        } else {
            Ok(())
        }
    }
    fn u8(&mut self) -> Result<u8, String> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }
    fn i16(&mut self) -> Result<i16, String> {
        self.need(2)?;
        Ok(self.buf.get_i16())
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.need(4)?;
        Ok(self.buf.get_i32())
    }
    fn u64(&mut self) -> Result<u64, String> {
        self.need(8)?;
        Ok(self.buf.get_u64())
    }
    fn i64(&mut self) -> Result<i64, String> {
        self.need(8)?;
        Ok(self.buf.get_i64())
    }
    fn cstr(&mut self) -> Result<String, String> {
        let end = self
            .buf
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| short(self.what))?;
        let s = self.buf.split_to(end);
        self.buf.advance(1);
        String::from_utf8(s.to_vec()).map_err(|e| format!("pgoutput: {e}"))
    }
    fn tuple(&mut self) -> Result<Vec<Value>, String> {
        let n = self.i16()?;
        let mut out = Vec::with_capacity(n.max(0) as usize);
        for _ in 0..n {
            match self.u8()? {
                b'n' => out.push(Value::Null),
                b'u' => out.push(Value::Unchanged),
                b't' | b'b' => {
                    let len = self.i32()?;
                    let len = usize::try_from(len).map_err(|_| short(self.what))?;
                    self.need(len)?;
                    out.push(Value::Text(self.buf.split_to(len)));
                }
                other => {
                    return Err(format!(
                        "pgoutput: unknown tuple value kind `{}`",
                        char::from(other)
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// Decodes one pgoutput message.
pub fn decode(data: Bytes) -> Result<Message, String> {
    let mut r = Reader {
        buf: data,
        what: "?",
    };
    let tag = r.u8()?;
    Ok(match tag {
        b'B' => {
            r.what = "Begin";
            Message::Begin {
                final_lsn: r.u64()?,
                commit_ts: r.i64()?,
                xid: r.u32()?,
            }
        }
        b'C' => {
            r.what = "Commit";
            let _flags = r.u8()?;
            Message::Commit {
                commit_lsn: r.u64()?,
                end_lsn: r.u64()?,
                commit_ts: r.i64()?,
            }
        }
        b'O' => Message::Origin,
        b'Y' => Message::Type,
        b'R' => {
            r.what = "Relation";
            let oid = r.u32()?;
            let namespace = r.cstr()?;
            let name = r.cstr()?;
            let replica_identity = r.u8()?;
            let n = r.i16()?;
            let mut columns = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                let flags = r.u8()?;
                columns.push(RelationColumn {
                    key: flags & 1 == 1,
                    name: r.cstr()?,
                    type_oid: r.u32()?,
                    type_modifier: r.i32()?,
                });
            }
            Message::Relation(Relation {
                oid,
                namespace: if namespace.is_empty() {
                    "pg_catalog".into()
                } else {
                    namespace
                },
                name,
                replica_identity,
                columns,
            })
        }
        b'I' => {
            r.what = "Insert";
            let relation = r.u32()?;
            if r.u8()? != b'N' {
                return Err("pgoutput: Insert without a new tuple".into());
            }
            Message::Insert {
                relation,
                new: r.tuple()?,
            }
        }
        b'U' => {
            r.what = "Update";
            let relation = r.u32()?;
            let mut kind = r.u8()?;
            let mut old = None;
            if kind == b'K' || kind == b'O' {
                old = Some(r.tuple()?);
                kind = r.u8()?;
            }
            if kind != b'N' {
                return Err("pgoutput: Update without a new tuple".into());
            }
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            r.what = "Delete";
            let relation = r.u32()?;
            let kind = r.u8()?;
            if kind != b'K' && kind != b'O' {
                return Err("pgoutput: Delete without an old tuple".into());
            }
            Message::Delete {
                relation,
                old: r.tuple()?,
            }
        }
        b'T' => {
            r.what = "Truncate";
            let n = r.u32()?;
            let _options = r.u8()?;
            let mut relations = Vec::with_capacity(n.min(1 << 16) as usize);
            for _ in 0..n {
                relations.push(r.u32()?);
            }
            Message::Truncate { relations }
        }
        b'M' => {
            r.what = "Message";
            let _flags = r.u8()?;
            let _lsn = r.u64()?;
            Message::Message { prefix: r.cstr()? }
        }
        other => {
            return Err(format!(
                "pgoutput: unknown message `{}` (is the slot's plugin pgoutput, protocol 1?)",
                char::from(other)
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    #[test]
    fn messages_decode() {
        let mut b = BytesMut::new();
        b.put_u8(b'B');
        b.put_u64(0x10);
        b.put_i64(5);
        b.put_u32(7);
        assert_eq!(
            decode(b.split().freeze()).unwrap(),
            Message::Begin {
                final_lsn: 0x10,
                commit_ts: 5,
                xid: 7
            }
        );
        b.put_u8(b'R');
        b.put_u32(42);
        b.put_slice(b"public\0Order Items\0");
        b.put_u8(b'f');
        b.put_i16(1);
        b.put_u8(1);
        b.put_slice(b"id\0");
        b.put_u32(20);
        b.put_i32(-1);
        let Message::Relation(rel) = decode(b.split().freeze()).unwrap() else {
            panic!("not a relation");
        };
        assert_eq!(rel.name, "Order Items");
        assert_eq!(rel.replica_identity, b'f');
        assert!(rel.columns.first().unwrap().key);
        b.put_u8(b'U');
        b.put_u32(42);
        b.put_u8(b'O');
        b.put_i16(2);
        b.put_u8(b't');
        b.put_i32(1);
        b.put_u8(b'1');
        b.put_u8(b'n');
        b.put_u8(b'N');
        b.put_i16(2);
        b.put_u8(b't');
        b.put_i32(1);
        b.put_u8(b'2');
        b.put_u8(b'u');
        assert_eq!(
            decode(b.split().freeze()).unwrap(),
            Message::Update {
                relation: 42,
                old: Some(vec![Value::Text(Bytes::from_static(b"1")), Value::Null]),
                new: vec![Value::Text(Bytes::from_static(b"2")), Value::Unchanged],
            }
        );
    }

    #[test]
    fn truncated_messages_are_errors() {
        let mut b = BytesMut::new();
        b.put_u8(b'I');
        b.put_u32(42);
        b.put_u8(b'N');
        b.put_i16(1);
        b.put_u8(b't');
        b.put_i32(10);
        b.put_slice(b"abc");
        let err = decode(b.freeze()).unwrap_err();
        assert!(err.contains("Insert"), "{err}");
        assert!(decode(Bytes::from_static(b"Z")).is_err());
    }
}
