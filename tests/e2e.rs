//! The whole daemon end to end: Postgres and MariaDB tables captured,
//! published to the real Kafka-API broker and kept as Hudi tables in a local
//! lake by one `tidewater run` process, under a seeded random workload of
//! 200,000 changes across five tables, with the daemon stopped by SIGTERM at
//! about a third of the workload, a column added to one table of each
//! source at half (later rows set it), and the daemon killed with SIGKILL
//! at about two thirds. Afterwards every lake table, read by hudi-rs, equals its source
//! table row by row on every column, each value computed by the source
//! database itself (and the derived partition column by the database's own
//! date function).
//!
//! The workload: multi-row inserts (some of keys deleted before), full-row
//! updates, partial updates (on Postgres these leave a TOASTed column
//! unchanged, so it arrives as the unchanged placeholder), deletes, key
//! changes, and updates of the partition column that move rows between day
//! partitions; 1–3 statements per transaction, some statements of hundreds
//! of rows. Types: numeric/DECIMAL, timestamptz, timestamp, DATETIME(6),
//! TIMESTAMP(3) written in a +05:00 session, DATE, jsonb and JSON, bytea and
//! BLOB, uuid, ENUM, SET, BIGINT UNSIGNED keys above 2^63, TINYINT UNSIGNED,
//! doubles, utf8mb4 text with quotes and emoji.
//!
//! The second test is RELIABILITY's F8, DDL under load: a Postgres and a
//! MariaDB table take ADD COLUMN, TRUNCATE, DROP COLUMN, RENAME COLUMN (the
//! daemon killed right after it) and type widenings (and on MariaDB an
//! ENUM reorder) between transactions of a seeded workload, while the daemon
//! runs; afterwards each lake table equals its source on every source
//! column and hudi-rs reads the new schema.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value as Json;
use tidewater::event::sample::Rng;

/// Changes the workload makes after the initial snapshot.
const CHANGES: u64 = 200_000;
/// Changes per second (both sources together): the workload lasts about
/// 40 s, so the restarts land while changes flow.
const RATE: u64 = 5_000;
/// Rows in each table before the daemon starts (read by the snapshot).
const SEED_ROWS: i64 = 2_000;
/// 2026-10-01T00:00:00Z in microseconds: timestamps fall in the 40 days after.
const BASE_MICROS: i64 = 1_790_812_800_000_000;
const SPAN_MICROS: i64 = 40 * 86_400_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dialect {
    Postgres,
    MariaDb,
}

/// One table of the workload.
struct Table {
    name: &'static str,
    dialect: Dialect,
    /// Column definitions of `CREATE TABLE`.
    ddl: &'static str,
    key: &'static [&'static str],
    /// The other columns, in the order `values` makes them.
    columns: &'static [&'static str],
    /// The columns a partial update sets.
    partial: &'static [&'static str],
    /// The key columns' literals of row number `id`.
    key_of: fn(i64) -> Vec<String>,
    /// Literals of the other columns.
    values: fn(&mut Rng, i64) -> Vec<String>,
    /// Whether some updates change the key.
    key_changes: bool,
    /// The partition column of the lake table, if partitioned by day.
    partition: Option<&'static str>,
    /// The key-value pairs of a JSON object giving each row in the lake's
    /// plain form (see tests/interop/plain.py), computed by the database.
    oracle: &'static str,
    /// A column added by `ALTER TABLE` in the middle of the workload (name,
    /// type); rows written after it set it.
    late: Option<(&'static str, &'static str)>,
}

fn tables() -> Vec<Table> {
    vec![
        Table {
            name: "accounts",
            dialect: Dialect::Postgres,
            ddl: "id bigint PRIMARY KEY, name text, balance numeric(14,4), opened date, \
                  updated_at timestamptz, profile jsonb, notes text, active boolean",
            key: &["id"],
            columns: &[
                "name",
                "balance",
                "opened",
                "updated_at",
                "profile",
                "notes",
                "active",
            ],
            partial: &["balance", "updated_at", "active"],
            key_of: |id| vec![id.to_string()],
            values: |rng, _| {
                vec![
                    nullable(rng, |rng| quoted(&words(rng, 4))),
                    nullable(rng, |rng| {
                        decimal(rng.range_i64(-10_000_000_000, 10_000_000_000), 4)
                    }),
                    nullable(rng, |rng| {
                        format!("date '1970-01-01' + {}", rng.range_i64(-5_000, 25_000))
                    }),
                    nullable(rng, |rng| pg_instant("timestamptz", micros(rng))),
                    nullable(rng, |rng| quoted(&json_doc(rng))),
                    // Every tenth long enough to be TOASTed out of line.
                    if rng.chance(10) {
                        {
                            let n = 3_000 + rng.below(5_000) as usize;
                            quoted(&letters(rng, n))
                        }
                    } else {
                        nullable(rng, |rng| quoted(&words(rng, 8)))
                    },
                    nullable(rng, |rng| rng.chance(50).to_string()),
                ]
            },
            key_changes: false,
            partition: None,
            oracle: "'id', id, 'name', name, 'balance', balance::text, \
                     'opened', opened - date '1970-01-01', \
                     'updated_at', (extract(epoch FROM updated_at) * 1000000)::bigint, \
                     'profile', profile::text, 'notes', notes, 'active', active",
            late: Some(("late_note", "text")),
        },
        Table {
            name: "events",
            dialect: Dialect::Postgres,
            ddl: "id bigint PRIMARY KEY, kind text, happened_at timestamptz NOT NULL, \
                  amount double precision, payload bytea",
            key: &["id"],
            columns: &["kind", "happened_at", "amount", "payload"],
            // Moves the row to another day partition.
            partial: &["happened_at", "amount"],
            key_of: |id| vec![id.to_string()],
            values: |rng, _| {
                vec![
                    nullable(rng, |rng| {
                        quoted(rng.pick(&["click", "view", "buy", "refund"]).unwrap())
                    }),
                    pg_instant("timestamptz", micros(rng)),
                    nullable(rng, double),
                    nullable(rng, |rng| format!("'\\x{}'::bytea", hex(rng))),
                ]
            },
            key_changes: false,
            partition: Some("happened_at"),
            oracle: "'id', id, 'kind', kind, \
                     'happened_at', (extract(epoch FROM happened_at) * 1000000)::bigint, \
                     'happened_at_day', to_char(happened_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), \
                     'amount', amount, 'payload', encode(payload, 'hex')",
            late: None,
        },
        Table {
            name: "lines",
            dialect: Dialect::Postgres,
            ddl: "order_id bigint, line integer, sku uuid, qty integer, price numeric(10,2), \
                  shipped timestamp, note varchar(60), PRIMARY KEY (order_id, line)",
            key: &["order_id", "line"],
            columns: &["sku", "qty", "price", "shipped", "note"],
            partial: &["qty", "shipped"],
            key_of: |id| vec![(id / 16).to_string(), (id % 16).to_string()],
            values: |rng, _| {
                vec![
                    nullable(rng, |rng| format!("'{}'", uuid(rng))),
                    nullable(rng, |rng| rng.range_i64(-1_000, 100_000).to_string()),
                    nullable(rng, |rng| {
                        decimal(rng.range_i64(-99_999_999, 99_999_999), 2)
                    }),
                    nullable(rng, |rng| pg_instant("timestamp", micros(rng))),
                    nullable(rng, |rng| quoted(&words(rng, 3))),
                ]
            },
            key_changes: true,
            partition: None,
            oracle: "'order_id', order_id, 'line', line, 'sku', sku::text, \
                     'qty', qty, 'price', price::text, \
                     'shipped', (extract(epoch FROM shipped) * 1000000)::bigint, 'note', note",
            late: None,
        },
        Table {
            name: "orders",
            dialect: Dialect::MariaDb,
            ddl: "id BIGINT UNSIGNED PRIMARY KEY, status ENUM('new','paid','shipped','cancelled'), \
                  amount DECIMAL(12,2), created_at DATETIME(6) NOT NULL, note VARCHAR(200), \
                  flags SET('gift','express','fragile')",
            key: &["id"],
            columns: &["status", "amount", "created_at", "note", "flags"],
            partial: &["status", "created_at"],
            // Keys above the largest signed BIGINT.
            key_of: |id| vec![(9_223_372_036_854_775_808u64 + id as u64).to_string()],
            values: |rng, _| {
                vec![
                    nullable(rng, |rng| {
                        quoted(rng.pick(&["new", "paid", "shipped", "cancelled"]).unwrap())
                    }),
                    nullable(rng, |rng| {
                        decimal(rng.range_i64(-9_999_999_999, 9_999_999_999), 2)
                    }),
                    my_instant(micros(rng)),
                    nullable(rng, |rng| quoted(&words(rng, 6))),
                    nullable(rng, |rng| {
                        let flags: Vec<&str> = ["gift", "express", "fragile"]
                            .into_iter()
                            .filter(|_| rng.chance(50))
                            .collect();
                        quoted(&flags.join(","))
                    }),
                ]
            },
            key_changes: false,
            partition: Some("created_at"),
            oracle: "'id', CAST(id AS CHAR), 'status', status, \
                     'amount', CAST(amount AS CHAR), \
                     'created_at', TIMESTAMPDIFF(MICROSECOND, '1970-01-01', created_at), \
                     'created_at_day', DATE_FORMAT(created_at, '%Y-%m-%d'), \
                     'note', note, 'flags', flags",
            late: None,
        },
        Table {
            name: "users",
            dialect: Dialect::MariaDb,
            ddl: "id INT PRIMARY KEY, email VARCHAR(120), born DATE, seen TIMESTAMP(3) NULL, \
                  score DOUBLE, prefs JSON, avatar BLOB, level TINYINT UNSIGNED",
            key: &["id"],
            columns: &["email", "born", "seen", "score", "prefs", "avatar", "level"],
            partial: &["seen", "score"],
            key_of: |id| vec![id.to_string()],
            values: |rng, id| {
                vec![
                    nullable(rng, |_| quoted(&format!("user{id}@example.com"))),
                    nullable(rng, |rng| {
                        format!(
                            "DATE'1970-01-01' + INTERVAL {} DAY",
                            rng.range_i64(-20_000, 20_000)
                        )
                    }),
                    // Milliseconds: the column keeps three digits.
                    nullable(rng, |rng| my_instant(micros(rng) / 1_000 * 1_000)),
                    nullable(rng, double),
                    nullable(rng, |rng| quoted(&json_doc(rng))),
                    nullable(rng, |rng| format!("X'{}'", hex(rng))),
                    nullable(rng, |rng| rng.below(256).to_string()),
                ]
            },
            key_changes: true,
            partition: None,
            oracle: "'id', id, 'email', email, 'born', DATEDIFF(born, '1970-01-01'), \
                     'seen', TIMESTAMPDIFF(MICROSECOND, '1970-01-01', seen), 'score', score, \
                     'prefs', CONCAT('', prefs), 'avatar', LOWER(HEX(avatar)), 'level', level",
            late: Some(("late_note", "VARCHAR(100)")),
        },
    ]
}

// ---- literals -------------------------------------------------------------

fn nullable(rng: &mut Rng, f: impl FnOnce(&mut Rng) -> String) -> String {
    if rng.chance(8) { "NULL".into() } else { f(rng) }
}

/// A SQL string literal (neither server here treats `\` in these words).
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn words(rng: &mut Rng, max: u64) -> String {
    const WORDS: &[&str] = &[
        "tide",
        "water",
        "O'Brien",
        "café",
        "naïve",
        "数据",
        "😀",
        "tab\there",
        "\"quoted\"",
        "zürich",
        "ünïcode",
        "plain",
    ];
    (0..1 + rng.below(max))
        .map(|_| *rng.pick(WORDS).unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

fn letters(rng: &mut Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'a' + rng.below(26) as u8))
        .collect()
}

fn json_doc(rng: &mut Rng) -> String {
    format!(
        r#"{{"tier": {}, "tags": ["{}", "{}"], "ok": {}}}"#,
        rng.below(10),
        letters(rng, 4),
        letters(rng, 3),
        rng.chance(50)
    )
}

/// `units` at `scale` as a decimal literal.
fn decimal(units: i64, scale: u32) -> String {
    let p = 10i64.pow(scale);
    let sign = if units < 0 { "-" } else { "" };
    let a = units.unsigned_abs();
    format!(
        "{sign}{}.{:0w$}",
        a / p as u64,
        a % p as u64,
        w = scale as usize
    )
}

/// A double with a short exact decimal form (eighths), so every printer
/// writes the same number.
fn double(rng: &mut Rng) -> String {
    (rng.range_i64(-80_000_000, 80_000_000) as f64 / 8.0).to_string()
}

fn hex(rng: &mut Rng) -> String {
    (0..rng.below(24))
        .map(|_| format!("{:02x}", rng.below(256)))
        .collect()
}

fn uuid(rng: &mut Rng) -> String {
    let h = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn micros(rng: &mut Rng) -> i64 {
    BASE_MICROS + rng.range_i64(0, SPAN_MICROS)
}

fn pg_instant(ty: &str, micros: i64) -> String {
    format!("{ty} 'epoch' + {micros} * interval '1 microsecond'")
}

fn my_instant(micros: i64) -> String {
    format!("TIMESTAMP'1970-01-01 00:00:00' + INTERVAL {micros} MICROSECOND")
}

// ---- sources --------------------------------------------------------------

enum Conn {
    Pg(tokio_postgres::Client),
    My(mysql_async::Conn),
}

impl Conn {
    async fn open(dialect: Dialect) -> Conn {
        match dialect {
            Dialect::Postgres => {
                let url = common::pg_url();
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap_or_else(|e| panic!("{}", common::unreachable("Postgres", &url, e)));
                tokio::spawn(conn);
                Conn::Pg(client)
            }
            Dialect::MariaDb => {
                let url = common::mysql_url();
                let conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
                    .await
                    .unwrap_or_else(|e| panic!("{}", common::unreachable("MariaDB", &url, e)));
                Conn::My(conn)
            }
        }
    }

    async fn exec(&mut self, sql: &str) {
        match self {
            Conn::Pg(c) => c
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{e:?}: {}", head(sql))),
            Conn::My(c) => c
                .query_drop(sql)
                .await
                .unwrap_or_else(|e| panic!("{e}: {}", head(sql))),
        }
    }

    /// Runs `statements` as one transaction.
    async fn transaction(&mut self, statements: &[String]) {
        match self {
            Conn::Pg(_) => {
                let sql = format!("BEGIN; {}; COMMIT", statements.join("; "));
                self.exec(&sql).await;
            }
            Conn::My(_) => {
                self.exec("BEGIN").await;
                for s in statements {
                    self.exec(s).await;
                }
                self.exec("COMMIT").await;
            }
        }
    }

    /// One JSON text per row.
    async fn json_rows(&mut self, sql: &str) -> Vec<String> {
        match self {
            Conn::Pg(c) => c
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect(),
            Conn::My(c) => c.query(sql).await.unwrap(),
        }
    }
}

/// The connection to `t`'s source.
fn side<'a>(pg: &'a mut Conn, my: &'a mut Conn, t: &Table) -> &'a mut Conn {
    match t.dialect {
        Dialect::Postgres => pg,
        Dialect::MariaDb => my,
    }
}

fn head(sql: &str) -> &str {
    sql.get(..sql.len().min(300)).unwrap_or(sql)
}

fn qualified(schema: &str, t: &Table) -> String {
    match t.dialect {
        Dialect::Postgres => format!("\"{schema}\".{}", t.name),
        Dialect::MariaDb => format!("`{schema}`.{}", t.name),
    }
}

/// Which rows of a table exist, as the writer made them.
#[derive(Default)]
struct Model {
    live: Vec<i64>,
    at: std::collections::HashMap<i64, usize>,
    deleted: Vec<i64>,
    next: i64,
}

impl Model {
    fn add(&mut self, id: i64) {
        self.at.insert(id, self.live.len());
        self.live.push(id);
    }

    fn remove(&mut self, id: i64) {
        let i = self.at.remove(&id).unwrap();
        self.live.swap_remove(i);
        if let Some(moved) = self.live.get(i) {
            self.at.insert(*moved, i);
        }
    }

    /// `n` keys for inserts: one in ten a deleted key again, the rest new.
    fn new_ids(&mut self, rng: &mut Rng, n: usize) -> Vec<i64> {
        (0..n)
            .map(|_| {
                if rng.chance(10) && !self.deleted.is_empty() {
                    let i = rng.below(self.deleted.len() as u64) as usize;
                    self.deleted.swap_remove(i)
                } else {
                    self.next += 1;
                    self.next
                }
            })
            .collect()
    }

    /// Up to `n` distinct live rows.
    fn sample(&self, rng: &mut Rng, n: usize) -> Vec<i64> {
        let mut picked = BTreeSet::new();
        for _ in 0..n * 2 {
            if picked.len() == n || self.live.is_empty() {
                break;
            }
            picked.insert(self.live[rng.below(self.live.len() as u64) as usize]);
        }
        picked.into_iter().collect()
    }
}

/// The statements that insert or upsert rows `ids` with `columns` (all
/// non-key columns when `None`).
fn upsert(
    schema: &str,
    t: &Table,
    rng: &mut Rng,
    ids: &[i64],
    partial: bool,
    late: bool,
) -> String {
    let chosen: Vec<usize> = (0..t.columns.len())
        .filter(|i| !partial || t.partial.contains(&t.columns[*i]))
        .collect();
    let late = t.late.filter(|_| late && !partial).map(|(c, _)| c);
    let columns: Vec<&str> = chosen.iter().map(|i| t.columns[*i]).chain(late).collect();
    let names: Vec<&str> = t
        .key
        .iter()
        .copied()
        .chain(columns.iter().copied())
        .collect();
    let rows: Vec<String> = ids
        .iter()
        .map(|id| {
            let values = (t.values)(rng, *id);
            let late_value = late.map(|_| nullable(rng, |rng| quoted(&words(rng, 3))));
            let literals: Vec<String> = (t.key_of)(*id)
                .into_iter()
                .chain(chosen.iter().map(|i| values[*i].clone()))
                .chain(late_value)
                .collect();
            format!("({})", literals.join(", "))
        })
        .collect();
    upsert_sql(
        t.dialect,
        &qualified(schema, t),
        t.key,
        &names,
        &rows,
        &columns,
    )
}

/// `INSERT INTO q (names) VALUES rows` that sets the `set` columns of a
/// row whose `key` exists already.
fn upsert_sql(
    dialect: Dialect,
    q: &str,
    key: &[&str],
    names: &[&str],
    rows: &[String],
    set: &[&str],
) -> String {
    let set: Vec<String> = set
        .iter()
        .map(|c| match dialect {
            Dialect::Postgres => format!("{c} = EXCLUDED.{c}"),
            Dialect::MariaDb => format!("{c} = VALUES({c})"),
        })
        .collect();
    let conflict = match dialect {
        Dialect::Postgres => format!(" ON CONFLICT ({}) DO UPDATE SET ", key.join(", ")),
        Dialect::MariaDb => " ON DUPLICATE KEY UPDATE ".to_string(),
    };
    format!(
        "INSERT INTO {q} ({}) VALUES {}{conflict}{}",
        names.join(", "),
        rows.join(", "),
        set.join(", ")
    )
}

fn key_match(t: &Table, ids: &[i64]) -> String {
    let tuple = |id: i64| {
        let k = (t.key_of)(id);
        if k.len() == 1 {
            k.join("")
        } else {
            format!("({})", k.join(", "))
        }
    };
    let cols = if t.key.len() == 1 {
        t.key[0].to_string()
    } else {
        format!("({})", t.key.join(", "))
    };
    let list: Vec<String> = ids.iter().map(|id| tuple(*id)).collect();
    format!("{cols} IN ({})", list.join(", "))
}

/// One random statement on `t`, applied to the model: its SQL and how many
/// rows it changes.
fn statement(schema: &str, t: &Table, m: &mut Model, rng: &mut Rng, late: bool) -> (String, u64) {
    let max = if rng.chance(5) { 400 } else { 40 };
    let n = 1 + rng.below(max) as usize;
    let roll = rng.below(100);
    if roll < 30 || m.live.len() < 100 {
        let ids = m.new_ids(rng, n);
        for id in &ids {
            m.add(*id);
        }
        return (upsert(schema, t, rng, &ids, false, late), ids.len() as u64);
    }
    let ids = m.sample(rng, n);
    if roll < 50 {
        (upsert(schema, t, rng, &ids, false, late), ids.len() as u64)
    } else if roll < 75 {
        (upsert(schema, t, rng, &ids, true, late), ids.len() as u64)
    } else if roll < 93 || !t.key_changes {
        for id in &ids {
            m.remove(*id);
            m.deleted.push(*id);
        }
        (
            format!(
                "DELETE FROM {} WHERE {}",
                qualified(schema, t),
                key_match(t, &ids)
            ),
            ids.len() as u64,
        )
    } else {
        // A key change of one row: a delete and a create at one position.
        let old = ids[0];
        m.next += 1;
        let new = m.next;
        m.remove(old);
        m.deleted.push(old);
        m.add(new);
        let set: Vec<String> = t
            .key
            .iter()
            .zip((t.key_of)(new))
            .map(|(c, v)| format!("{c} = {v}"))
            .collect();
        (
            format!(
                "UPDATE {} SET {} WHERE {}",
                qualified(schema, t),
                set.join(", "),
                key_match(t, &[old])
            ),
            1,
        )
    }
}

/// How far the writers are, and whether the late columns exist.
#[derive(Default)]
struct Progress {
    done: AtomicU64,
    altered: AtomicBool,
}

/// Writes transactions on `tables` (all of one source) until `quota`
/// changes are made, at its share of `RATE`, adding each transaction's
/// changes to `progress`; after the `ALTER TABLE`s, rows set the added
/// columns.
async fn write(
    schema: String,
    tables: Arc<Vec<Table>>,
    dialect: Dialect,
    mut models: Vec<Model>,
    mut rng: Rng,
    quota: u64,
    progress: Arc<Progress>,
) {
    let rate = quota * RATE / CHANGES;
    let started = Instant::now();
    let mut conn = Conn::open(dialect).await;
    if dialect == Dialect::MariaDb {
        conn.exec("SET time_zone = '+05:00'").await;
    } else {
        conn.exec("SET TimeZone = 'America/New_York'").await;
    }
    let mine: Vec<usize> = (0..tables.len())
        .filter(|i| tables[*i].dialect == dialect)
        .collect();
    let mut written = 0;
    while written < quota {
        let mut statements = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let k = mine[rng.below(mine.len() as u64) as usize];
            let late = progress.altered.load(Ordering::SeqCst);
            let (sql, n) = statement(&schema, &tables[k], &mut models[k], &mut rng, late);
            statements.push(sql);
            written += n;
            progress.done.fetch_add(n, Ordering::SeqCst);
        }
        conn.transaction(&statements).await;
        let due = Duration::from_secs_f64(written as f64 / rate as f64);
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(ahead).await;
        }
    }
}

// ---- comparison -----------------------------------------------------------

/// Integral floats as integers, so that `5` and `5.0` compare equal.
fn normalize(v: Json) -> Json {
    match v {
        Json::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Json::from(f as i64),
            _ => Json::Number(n),
        },
        Json::Object(o) => Json::Object(o.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        other => other,
    }
}

/// Rows keyed by their key columns' values, each a sorted map.
fn keyed(
    table: &str,
    key: &[&str],
    rows: impl IntoIterator<Item = Json>,
) -> BTreeMap<String, BTreeMap<String, Json>> {
    let mut out = BTreeMap::new();
    for row in rows {
        let Json::Object(o) = normalize(row) else {
            panic!("{table}: a row that is not an object")
        };
        let key = key
            .iter()
            .map(|k| o.get(*k).map(Json::to_string).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("|");
        let row: BTreeMap<String, Json> = o.into_iter().collect();
        assert!(
            out.insert(key.clone(), row).is_none(),
            "{table}: key {key} twice"
        );
    }
    out
}

fn content_hash(rows: &BTreeMap<String, BTreeMap<String, Json>>) -> String {
    let mut h = std::hash::DefaultHasher::new();
    for (k, row) in rows {
        k.hash(&mut h);
        for (c, v) in row {
            c.hash(&mut h);
            v.to_string().hash(&mut h);
        }
    }
    format!("{:016x}", h.finish())
}

async fn source_rows(
    conn: &mut Conn,
    schema: &str,
    t: &Table,
) -> BTreeMap<String, BTreeMap<String, Json>> {
    let mut pairs = t.oracle.to_string();
    if let Some((c, _)) = t.late {
        pairs.push_str(&format!(", '{c}', {c}"));
    }
    let object = match t.dialect {
        Dialect::Postgres => format!("json_build_object({pairs})::text"),
        Dialect::MariaDb => format!("JSON_OBJECT({pairs})"),
    };
    let sql = format!("SELECT {object} FROM {}", qualified(schema, t));
    let rows = conn.json_rows(&sql).await;
    keyed(
        t.name,
        t.key,
        rows.iter().map(|r| serde_json::from_str(r).unwrap()),
    )
}

/// The lake table's rows by hudi-rs, or `None` before its first commit.
fn lake_rows(
    lake: &Path,
    schema: &str,
    t: &Table,
) -> Option<BTreeMap<String, BTreeMap<String, Json>>> {
    lake_rows_at(&lake.join(format!("{schema}_{}", t.name)), t.name, t.key)
}

/// The rows of the lake table in `dir` by hudi-rs, keyed by `key`, or
/// `None` before its first commit.
fn lake_rows_at(
    dir: &Path,
    table: &str,
    key: &[&str],
) -> Option<BTreeMap<String, BTreeMap<String, Json>>> {
    let committed = std::fs::read_dir(dir.join(".hoodie"))
        .ok()?
        .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".commit")));
    if !committed {
        return None;
    }
    let uri = format!("file://{}", dir.display());
    Some(keyed(table, key, common::lake_rows(&uri).into_values()))
}

/// The first rows that differ, for the failure message.
fn differences(
    want: &BTreeMap<String, BTreeMap<String, Json>>,
    got: &BTreeMap<String, BTreeMap<String, Json>>,
) -> String {
    let mut out = Vec::new();
    for k in want.keys().chain(got.keys()).collect::<BTreeSet<_>>() {
        if want.get(k) != got.get(k) {
            out.push(format!(
                "  {k}: source {:?}\n  {k}: lake   {:?}",
                want.get(k),
                got.get(k)
            ));
        }
        if out.len() == 5 {
            break;
        }
    }
    out.join("\n")
}

// ---- the daemon -----------------------------------------------------------

/// The two pipeline files of one daemon, one per source, for `tables`
/// (source, table name, day-partition column) of schema/database `name`,
/// into one local lake at `lake`.
fn pipeline_files(
    dir: &Path,
    name: &str,
    lake: &Path,
    tables: &[(Dialect, &str, Option<&str>)],
) -> [PathBuf; 2] {
    let lake_yaml = format!(
        "kafka:\n  brokers: {}\n  topic_partitions: 2\nlake:\n  uri: file://{}\n  commit_interval_secs: 2\n  target_file_size_mb: 2\n  keep_commits: 4\n",
        common::kafka_brokers(),
        lake.display()
    );
    [
        (Dialect::Postgres, "pg", "postgres", common::pg_url()),
        (Dialect::MariaDb, "my", "mysql", common::mysql_url()),
    ]
    .map(|(dialect, short, kind, url)| {
        let tables_yaml: String = tables
            .iter()
            .filter(|(d, _, _)| *d == dialect)
            .map(|(_, table, partition)| match partition {
                Some(c) => format!(
                    "    - name: {name}.{table}\n      partition_by: {{ column: {c}, granularity: day }}\n"
                ),
                None => format!("    - name: {name}.{table}\n"),
            })
            .collect();
        let file = dir.join(format!("{short}.yaml"));
        std::fs::write(
            &file,
            format!(
                "name: {name}-{short}\nsource:\n  type: {kind}\n  url: {url}\n  heartbeat_interval_secs: 1\n  tables:\n{tables_yaml}{lake_yaml}"
            ),
        )
        .unwrap();
        file
    })
}

fn spawn_daemon(files: &[PathBuf], admin: &str, log: &Path) -> Child {
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    common::spawn_run(
        &["--role", "all", "--standalone", "--admin-addr", admin],
        &files,
        log,
    )
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Waits until the writers made `at` changes; fails when they all ended
/// first or the daemon exited.
async fn wait_progress<T>(
    progress: &Progress,
    at: u64,
    writers: &[tokio::task::JoinHandle<T>],
    daemon: &mut Child,
    log: &Path,
) {
    while progress.done.load(Ordering::SeqCst) < at {
        assert!(
            !writers.iter().all(|w| w.is_finished()),
            "the writers ended early"
        );
        if let Ok(Some(status)) = daemon.try_wait() {
            panic!("the daemon exited ({status})\n{}", log_tail(log));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM, then the exit status within 30 s.
fn terminate(child: &mut Child, log: &Path) -> Duration {
    let started = Instant::now();
    common::send_sigterm(child);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "SIGTERM: exit {status}\n{}",
                log_tail(log)
            );
            return started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("no exit within 30 s of SIGTERM\n{}", log_tail(log));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_running(admin: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_tidewater"))
            .args(["status", "--admin-addr", admin])
            .output()
            .unwrap();
        if out.status.success() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the daemon exited ({status})\n{}", log_tail(log));
        }
        assert!(
            Instant::now() < deadline,
            "not running after 60 s: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            log_tail(log)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The end-to-end tests run one after the other: each loads both cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_mariadb_reach_the_lake_whole_through_a_sigterm_and_a_kill() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let seed = Rng::seed_from_env();
    println!("seed {seed} (TIDEWATER_SEED={seed} replays it)");
    let name = common::unique_name("e2e").to_lowercase();
    let tables = Arc::new(tables());

    // The sources, with rows for the snapshot.
    let mut pg = Conn::open(Dialect::Postgres).await;
    let mut my = Conn::open(Dialect::MariaDb).await;
    // The oracle's TIMESTAMP values in UTC.
    my.exec("SET time_zone = '+00:00'").await;
    pg.exec(&format!("CREATE SCHEMA \"{name}\"")).await;
    my.exec(&format!("CREATE DATABASE `{name}`")).await;
    let mut models: Vec<Model> = Vec::new();
    let mut rng = Rng::new(seed);
    for t in tables.iter() {
        let conn = side(&mut pg, &mut my, t);
        let q = qualified(&name, t);
        conn.exec(&format!("CREATE TABLE {q} ({})", t.ddl)).await;
        let mut m = Model::default();
        for chunk in (1..=SEED_ROWS).collect::<Vec<_>>().chunks(500) {
            conn.exec(&upsert(&name, t, &mut rng, chunk, false, false))
                .await;
            for id in chunk {
                m.add(*id);
            }
        }
        m.next = SEED_ROWS;
        models.push(m);
    }

    // Two pipelines in one daemon, into one local lake.
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let entries: Vec<(Dialect, &str, Option<&str>)> = tables
        .iter()
        .map(|t| (t.dialect, t.name, t.partition))
        .collect();
    let files = pipeline_files(dir.path(), &name, &lake, &entries);
    let admin = common::free_addr();
    let log = dir.path().join("daemon.log");
    // Killed on the way out if the test fails.
    let mut daemon = common::Reaped(spawn_daemon(&files, &admin, &log));
    wait_running(&admin, &mut daemon.0, &log);
    // The daemon started itself again with its allocator's option, in the
    // same process.
    let environ = std::fs::read(format!("/proc/{}/environ", daemon.0.id())).unwrap();
    let (var, value) = tidewater::alloc::ALLOCATOR_ENV;
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|entry| entry == format!("{var}={value}").as_bytes()),
        "the daemon runs without {var}={value}"
    );

    // The workload, Postgres and MariaDB at once (3/5 and 2/5 of it).
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let mut writers = Vec::new();
    let mut split: Vec<Vec<Model>> = vec![Vec::new(), Vec::new()];
    for (t, m) in tables.iter().zip(models) {
        let side = usize::from(t.dialect == Dialect::MariaDb);
        split[side].push(m);
        split[1 - side].push(Model::default());
    }
    for (side, (dialect, quota)) in [
        (Dialect::Postgres, CHANGES * 3 / 5),
        (Dialect::MariaDb, CHANGES * 2 / 5),
    ]
    .into_iter()
    .enumerate()
    {
        writers.push(tokio::spawn(write(
            name.clone(),
            tables.clone(),
            dialect,
            std::mem::take(&mut split[side]),
            Rng::new(seed ^ (0x5eed + side as u64)),
            quota,
            progress.clone(),
        )));
    }
    // SIGTERM at a third, columns added at half, SIGKILL at two thirds; a
    // restart after each stop.
    #[derive(PartialEq)]
    enum Step {
        Sigterm,
        AddColumns,
        Sigkill,
    }
    for (at, step) in [
        (CHANGES / 3, Step::Sigterm),
        (CHANGES / 2, Step::AddColumns),
        (CHANGES * 2 / 3, Step::Sigkill),
    ] {
        wait_progress(&progress, at, &writers, &mut daemon.0, &log).await;
        let now = progress.done.load(Ordering::SeqCst);
        match step {
            Step::Sigterm => {
                let took = tokio::task::block_in_place(|| terminate(&mut daemon.0, &log));
                println!("SIGTERM after {now} changes: exit 0 in {took:.1?}");
            }
            Step::AddColumns => {
                for t in tables.iter() {
                    if let Some((c, ty)) = t.late {
                        side(&mut pg, &mut my, t)
                            .exec(&format!(
                                "ALTER TABLE {} ADD COLUMN {c} {ty}",
                                qualified(&name, t)
                            ))
                            .await;
                    }
                }
                progress.altered.store(true, Ordering::SeqCst);
                println!("ALTER TABLE ... ADD COLUMN after {now} changes");
            }
            Step::Sigkill => {
                daemon.0.kill().unwrap();
                daemon.0.wait().unwrap();
                println!("SIGKILL after {now} changes");
            }
        }
        if step != Step::AddColumns {
            daemon = common::Reaped(spawn_daemon(&files, &admin, &log));
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    let total = progress.done.load(Ordering::SeqCst);
    assert!(total >= CHANGES, "{total} changes written");
    println!("{total} changes written in {:.1?}", started.elapsed());

    // The lake catches up: every table equals its source.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut pending: Vec<usize> = (0..tables.len()).collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for i in pending {
            let t = &tables[i];
            let conn = side(&mut pg, &mut my, t);
            let want = source_rows(conn, &name, t).await;
            let got = tokio::task::block_in_place(|| lake_rows(&lake, &name, t));
            match got {
                Some(got) if got == want => {
                    println!(
                        "{}: {} rows, content hash {} in the source and the lake ({:.1?})",
                        t.name,
                        want.len(),
                        content_hash(&want),
                        started.elapsed()
                    );
                }
                got => {
                    if let Ok(Some(status)) = daemon.0.try_wait() {
                        panic!("the daemon exited ({status})\n{}", log_tail(&log));
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{}: the lake did not catch up in 300 s ({} rows in the source, {:?} in the lake):\n{}",
                        t.name,
                        want.len(),
                        got.as_ref().map(BTreeMap::len),
                        got.map(|g| differences(&want, &g)).unwrap_or_default()
                    );
                    still.push(i);
                }
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    // Every part is running; SIGTERM exits 0 and leaves the lake as it was.
    wait_running(&admin, &mut daemon.0, &log);
    tokio::task::block_in_place(|| terminate(&mut daemon.0, &log));
    for t in tables.iter() {
        let conn = side(&mut pg, &mut my, t);
        let want = source_rows(conn, &name, t).await;
        let got = tokio::task::block_in_place(|| lake_rows(&lake, &name, t)).unwrap();
        assert!(
            got == want,
            "{} after the stop:\n{}",
            t.name,
            differences(&want, &got)
        );
    }
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log_text.contains("O'Brien") && !log_text.contains("example.com"),
        "row values in the log"
    );

    // Nothing left holding WAL or space.
    drop_sources(&mut pg, &mut my, &name).await;
}

// ---- DDL under load (RELIABILITY F8) ----------------------------------------

/// Changes of the DDL test (both sources together) and their rate.
const DDL_CHANGES: u64 = 40_000;
const DDL_RATE: u64 = 2_000;

/// The schema steps of the DDL test, each run on both sources between two
/// transactions while the daemon reads and writes: the table's columns
/// after step `k` are what [`DdlShape`] says.
const DDL_STEPS: [&str; 5] = ["add", "truncate", "drop", "rename", "widen"];

/// The columns of a DDL test table once `step` steps ran.
#[derive(Clone, Copy)]
struct DdlShape {
    dialect: Dialect,
    step: usize,
}

impl DdlShape {
    fn extra(self) -> bool {
        self.step >= 1
    }
    fn old_note(self) -> bool {
        self.step < 3
    }
    fn title(self) -> &'static str {
        if self.step >= 4 { "headline" } else { "title" }
    }
    fn wide(self) -> bool {
        self.step >= 5
    }

    /// The non-key columns rows are written with.
    fn columns(self) -> Vec<&'static str> {
        let mut c = vec!["created", "qty", "price"];
        if self.dialect == Dialect::MariaDb {
            c.push("status");
        }
        c.push(self.title());
        if self.old_note() {
            c.push("old_note");
        }
        c.push("body");
        if self.extra() {
            c.push("extra");
        }
        c
    }

    /// A literal of `column` for a row written now.
    fn value(self, rng: &mut Rng, column: &str) -> String {
        match column {
            "created" => {
                // Twenty day partitions.
                let micros = BASE_MICROS + rng.range_i64(0, 20 * 86_400_000_000);
                match self.dialect {
                    Dialect::Postgres => pg_instant("timestamptz", micros),
                    Dialect::MariaDb => my_instant(micros),
                }
            }
            "qty" if self.wide() => rng
                .range_i64(-5_000_000_000_000, 5_000_000_000_000)
                .to_string(),
            "qty" => rng.range_i64(-100_000, 100_000).to_string(),
            "price" if self.wide() => {
                decimal(rng.range_i64(-99_999_999_999_999, 99_999_999_999_999), 2)
            }
            "price" => decimal(rng.range_i64(-9_999_999_999, 9_999_999_999), 2),
            "status" => {
                let values: &[&str] = if self.wide() {
                    &["shipped", "new", "paid", "cancelled"]
                } else {
                    &["new", "paid", "shipped"]
                };
                quoted(rng.pick(values).unwrap())
            }
            // TOASTed out of line on Postgres when long.
            "body" if rng.chance(8) => {
                let n = 3_000 + rng.below(3_000) as usize;
                quoted(&letters(rng, n))
            }
            _ => nullable(rng, |rng| quoted(&words(rng, 3))),
        }
    }

    /// The statement of step `step` (1-based) on `q`.
    fn ddl(dialect: Dialect, step: usize, q: &str) -> String {
        let pg = dialect == Dialect::Postgres;
        match (DDL_STEPS[step - 1], pg) {
            ("add", true) => format!("ALTER TABLE {q} ADD COLUMN extra text"),
            ("add", false) => format!("ALTER TABLE {q} ADD COLUMN extra VARCHAR(60)"),
            ("truncate", true) => format!("TRUNCATE {q}"),
            ("truncate", false) => format!("TRUNCATE TABLE {q}"),
            ("drop", _) => format!("ALTER TABLE {q} DROP COLUMN old_note"),
            ("rename", _) => format!("ALTER TABLE {q} RENAME COLUMN title TO headline"),
            ("widen", true) => format!(
                "ALTER TABLE {q} ALTER COLUMN qty TYPE bigint, ALTER COLUMN price TYPE numeric(14,2)"
            ),
            // The ENUM's values reordered and one added.
            ("widen", false) => format!(
                "ALTER TABLE {q} MODIFY qty BIGINT, MODIFY price DECIMAL(14,2), \
                 MODIFY status ENUM('shipped','new','paid','cancelled')"
            ),
            (other, _) => panic!("no step {other}"),
        }
    }

    /// The JSON object of a row in the lake's plain form, made by the
    /// database.
    fn oracle(self) -> String {
        let pg = self.dialect == Dialect::Postgres;
        let mut pairs = vec![
            "'id', id".to_string(),
            if pg {
                "'created', (extract(epoch FROM created) * 1000000)::bigint, \
                 'created_day', to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
                    .to_string()
            } else {
                "'created', TIMESTAMPDIFF(MICROSECOND, '1970-01-01', created), \
                 'created_day', DATE_FORMAT(created, '%Y-%m-%d')"
                    .to_string()
            },
            "'qty', qty".to_string(),
            if pg {
                "'price', price::text".to_string()
            } else {
                "'price', CAST(price AS CHAR)".to_string()
            },
        ];
        for c in self.columns() {
            if !["created", "qty", "price"].contains(&c) {
                pairs.push(format!("'{c}', {c}"));
            }
        }
        if pg {
            format!("json_build_object({})::text", pairs.join(", "))
        } else {
            format!("JSON_OBJECT({})", pairs.join(", "))
        }
    }
}

/// One random statement on the DDL test table `q` in its current shape,
/// applied to the model: its SQL and how many rows it changes.
fn ddl_statement(q: &str, shape: DdlShape, m: &mut Model, rng: &mut Rng) -> (String, u64) {
    let max = if rng.chance(5) { 200 } else { 20 };
    let n = 1 + rng.below(max) as usize;
    let roll = rng.below(100);
    let insert = roll < 35 || m.live.len() < 50;
    let ids: Vec<i64> = if insert {
        m.new_ids(rng, n)
    } else {
        // Every tenth row stays as inserted: it carries its values through
        // the later steps (and keeps its dropped column's value).
        m.sample(rng, n)
            .into_iter()
            .filter(|id| id % 10 != 0)
            .collect()
    };
    if ids.is_empty() {
        return (format!("SELECT 1 FROM {q} WHERE false"), 0);
    }
    if !insert && roll >= 85 {
        for id in &ids {
            m.remove(*id);
            m.deleted.push(*id);
        }
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        return (
            format!("DELETE FROM {q} WHERE id IN ({})", list.join(", ")),
            ids.len() as u64,
        );
    }
    if insert {
        for id in &ids {
            m.add(*id);
        }
    }
    // A partial update sets the quantity and moves the row to another day
    // (Postgres sends the long body as unchanged TOAST).
    let columns: Vec<&str> = if !insert && roll >= 60 {
        vec!["created", "qty"]
    } else {
        shape.columns()
    };
    let rows: Vec<String> = ids
        .iter()
        .map(|id| {
            let values: Vec<String> = std::iter::once(id.to_string())
                .chain(columns.iter().map(|c| shape.value(rng, c)))
                .collect();
            format!("({})", values.join(", "))
        })
        .collect();
    let names: Vec<&str> = std::iter::once("id")
        .chain(columns.iter().copied())
        .collect();
    (
        upsert_sql(shape.dialect, q, &["id"], &names, &rows, &columns),
        ids.len() as u64,
    )
}

/// Writes transactions of 1–3 statements on `q` until `quota` changes are
/// made, at its share of `DDL_RATE`; each transaction runs under a read
/// lock of the schema step, so a step never cuts one short.
async fn ddl_writer(
    dialect: Dialect,
    q: String,
    step: Arc<tokio::sync::RwLock<usize>>,
    mut rng: Rng,
    quota: u64,
    progress: Arc<Progress>,
) -> Model {
    let mut conn = Conn::open(dialect).await;
    let mut m = Model::default();
    let mut truncated = false;
    let started = Instant::now();
    let rate = DDL_RATE / 2;
    let mut written = 0;
    while written < quota {
        let guard = step.read().await;
        let shape = DdlShape {
            dialect,
            step: *guard,
        };
        if shape.step >= 2 && !truncated {
            // The table was emptied: every row is gone.
            for id in std::mem::take(&mut m.live) {
                m.deleted.push(id);
            }
            m.at.clear();
            truncated = true;
        }
        let mut statements = Vec::new();
        let mut changed = 0;
        for _ in 0..1 + rng.below(3) {
            let (sql, n) = ddl_statement(&q, shape, &mut m, &mut rng);
            statements.push(sql);
            changed += n;
        }
        conn.transaction(&statements).await;
        drop(guard);
        written += changed;
        progress.done.fetch_add(changed, Ordering::SeqCst);
        let due = Duration::from_secs_f64(written as f64 / rate as f64);
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(ahead).await;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_added_dropped_renamed_and_widened_and_a_truncate_under_load_reach_the_lake() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let seed = Rng::seed_from_env();
    println!("seed {seed} (TIDEWATER_SEED={seed} replays it)");
    let name = common::unique_name("ddl").to_lowercase();
    let mut pg = Conn::open(Dialect::Postgres).await;
    let mut my = Conn::open(Dialect::MariaDb).await;
    my.exec("SET time_zone = '+00:00'").await;
    pg.exec(&format!("CREATE SCHEMA \"{name}\"")).await;
    my.exec(&format!("CREATE DATABASE `{name}`")).await;
    let pg_q = format!("\"{name}\".items_pg");
    let my_q = format!("`{name}`.items_my");
    pg.exec(&format!(
        "CREATE TABLE {pg_q} (id bigint PRIMARY KEY, created timestamptz NOT NULL, qty integer, \
         price numeric(10,2), title text, old_note text, body text); \
         ALTER TABLE {pg_q} ALTER COLUMN body SET STORAGE EXTERNAL"
    ))
    .await;
    my.exec(&format!(
        "CREATE TABLE {my_q} (id BIGINT PRIMARY KEY, created DATETIME(6) NOT NULL, qty INT, \
         price DECIMAL(10,2), status ENUM('new','paid','shipped'), title VARCHAR(100), \
         old_note VARCHAR(100), body MEDIUMTEXT)"
    ))
    .await;

    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let files = pipeline_files(
        dir.path(),
        &name,
        &lake,
        &[
            (Dialect::Postgres, "items_pg", Some("created")),
            (Dialect::MariaDb, "items_my", Some("created")),
        ],
    );
    let admin = common::free_addr();
    let log = dir.path().join("daemon.log");
    let mut daemon = common::Reaped(spawn_daemon(&files, &admin, &log));
    wait_running(&admin, &mut daemon.0, &log);

    let step = Arc::new(tokio::sync::RwLock::new(0usize));
    let progress = Arc::new(Progress::default());
    let writers: Vec<_> = [(Dialect::Postgres, &pg_q), (Dialect::MariaDb, &my_q)]
        .into_iter()
        .enumerate()
        .map(|(i, (dialect, q))| {
            tokio::spawn(ddl_writer(
                dialect,
                q.clone(),
                step.clone(),
                Rng::new(seed ^ (0xdd1 + i as u64)),
                DDL_CHANGES / 2,
                progress.clone(),
            ))
        })
        .collect();
    // Step k at k/7 of the workload, on both sources at once; the daemon
    // killed right after the rename and started again.
    let mut ids_at_drop = (0, 0);
    for k in 1..=DDL_STEPS.len() {
        let at = DDL_CHANGES * k as u64 / (DDL_STEPS.len() as u64 + 2);
        wait_progress(&progress, at, &writers, &mut daemon.0, &log).await;
        let mut guard = step.write().await;
        pg.exec(&DdlShape::ddl(Dialect::Postgres, k, &pg_q)).await;
        my.exec(&DdlShape::ddl(Dialect::MariaDb, k, &my_q)).await;
        *guard = k;
        if DDL_STEPS[k - 1] == "drop" {
            // Before any row is written after the drop.
            ids_at_drop = (max_id(&mut pg, &pg_q).await, max_id(&mut my, &my_q).await);
        }
        drop(guard);
        println!(
            "step {k} ({}) after {} changes",
            DDL_STEPS[k - 1],
            progress.done.load(Ordering::SeqCst)
        );
        if DDL_STEPS[k - 1] == "rename" {
            tokio::time::sleep(Duration::from_millis(300)).await;
            daemon.0.kill().unwrap();
            daemon.0.wait().unwrap();
            println!("SIGKILL after the rename");
            daemon = common::Reaped(spawn_daemon(&files, &admin, &log));
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    println!("{} changes written", progress.done.load(Ordering::SeqCst));

    // The lake catches up: each table equals its source on every source
    // column; the dropped column stays in the lake.
    let last = DDL_STEPS.len();
    let deadline = Instant::now() + Duration::from_secs(240);
    for (dialect, table, q, at_drop) in [
        (Dialect::Postgres, "items_pg", &pg_q, ids_at_drop.0),
        (Dialect::MariaDb, "items_my", &my_q, ids_at_drop.1),
    ] {
        let shape = DdlShape {
            dialect,
            step: last,
        };
        let conn = if dialect == Dialect::Postgres {
            &mut pg
        } else {
            &mut my
        };
        let rows = conn
            .json_rows(&format!("SELECT {} FROM {q}", shape.oracle()))
            .await;
        let want = keyed(
            q,
            &["id"],
            rows.iter().map(|r| serde_json::from_str(r).unwrap()),
        );
        let dir = lake.join(format!("{name}_{table}"));
        let mut kept_old_notes = 0;
        loop {
            let got = tokio::task::block_in_place(|| lake_rows_at(&dir, q, &["id"]));
            let stripped = got.as_ref().map(|rows| {
                rows.iter()
                    .map(|(k, row)| {
                        let mut row = row.clone();
                        row.remove("old_note");
                        (k.clone(), row)
                    })
                    .collect::<BTreeMap<_, _>>()
            });
            if stripped.as_ref() == Some(&want) {
                // Rows written after the drop have no old note; rows
                // untouched since keep theirs.
                for (k, row) in got.iter().flatten() {
                    if !row["old_note"].is_null() {
                        let id: i64 = k.parse().unwrap();
                        assert!(
                            id <= at_drop,
                            "{q}: row {k} written after the drop has an old note"
                        );
                        kept_old_notes += 1;
                    }
                }
                assert!(
                    kept_old_notes > 0,
                    "{q}: no row kept its dropped column's value"
                );
                println!(
                    "{q}: {} rows, content hash {} in the source and the lake; {kept_old_notes} keep their dropped column's value",
                    want.len(),
                    content_hash(&want)
                );
                break;
            }
            if let Ok(Some(status)) = daemon.0.try_wait() {
                panic!("the daemon exited ({status})\n{}", log_tail(&log));
            }
            assert!(
                Instant::now() < deadline,
                "{q}: the lake did not catch up in 240 s ({} rows in the source, {:?} in the lake):\n{}\n{}",
                want.len(),
                stripped.as_ref().map(BTreeMap::len),
                stripped.map(|g| differences(&want, &g)).unwrap_or_default(),
                log_tail(&log)
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        // The schema change is visible to readers.
        let uri = format!("file://{}", dir.display());
        let schema = tokio::task::block_in_place(|| common::read_hudi(&["schema", &uri]));
        let schema = &schema[0];
        for (column, ty) in [
            ("qty", "int64"),
            ("price", "decimal128(14, 2)"),
            ("headline", "string"),
            ("extra", "string"),
            ("old_note", "string"),
        ] {
            assert_eq!(schema[column], ty, "{q}: column {column} in {schema}");
        }
        assert!(
            schema.get("title").is_none(),
            "{q}: the old name is gone: {schema}"
        );
    }
    wait_running(&admin, &mut daemon.0, &log);
    tokio::task::block_in_place(|| terminate(&mut daemon.0, &log));
    drop_sources(&mut pg, &mut my, &name).await;
}

/// Drops the slot, publication, schema and database of the daemon's two
/// pipelines named after `name`: nothing left holding WAL or space.
async fn drop_sources(pg: &mut Conn, my: &mut Conn, name: &str) {
    let slot = format!("tidewater_{name}_pg").replace('-', "_");
    pg.exec(&format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'; \
         DROP PUBLICATION IF EXISTS \"{slot}\"; DROP SCHEMA \"{name}\" CASCADE"
    ))
    .await;
    my.exec(&format!("DROP DATABASE `{name}`")).await;
}

/// The largest key of table `q`.
async fn max_id(conn: &mut Conn, q: &str) -> i64 {
    let text = match conn {
        Conn::Pg(_) => "text",
        Conn::My(_) => "CHAR",
    };
    let rows = conn
        .json_rows(&format!(
            "SELECT CAST(COALESCE(MAX(id), 0) AS {text}) FROM {q}"
        ))
        .await;
    rows[0].parse().unwrap()
}
