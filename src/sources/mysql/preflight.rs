//! Preflight of a MySQL/MariaDB source (`tidewater check --connect`):
//! the server settings and privileges binlog capture needs, each wrong one
//! named with the value found, the value expected and the fix. Nothing is
//! changed on the server.
//!
//! Expected settings: `log_bin = ON`, `binlog_format = ROW`,
//! `binlog_row_image = FULL`, `binlog_row_metadata = FULL` (column names,
//! signedness and ENUM/SET labels travel with every table map, so row
//! events decode by the shape they were written with), GTIDs (MariaDB
//! `gtid_strict_mode = ON`; MySQL `gtid_mode = ON` with
//! `enforce_gtid_consistency = ON`). Privileges: REPLICATION SLAVE,
//! REPLICATION CLIENT (MariaDB 10.5+: BINLOG MONITOR), SELECT, and RELOAD or
//! LOCK TABLES for the snapshot. Each table: it exists and has a primary key
//! or a `key:`. The connection is made as capture makes it (TLS as
//! `source.tls` says); the TLS protocol and cipher the server sees are
//! reported.

use mysql_async::prelude::Queryable;

use super::connection::{Connections, tls_in_use};
use crate::config::model::{MysqlSource, TlsMode};
use crate::event::table_id::{Dialect, TableId};
use crate::sources::Finding;

/// Runs every check against the live server of `source`.
pub async fn check(source: &MysqlSource) -> Vec<Finding> {
    let connections = match Connections::new(source) {
        Ok(c) => c,
        Err(e) => return vec![Finding::problem("connection", e.to_string())],
    };
    let where_ = format!(
        "{}:{} as `{}`",
        connections.host(),
        connections.port(),
        connections.user()
    );
    let mut conn =
        match tokio::time::timeout(std::time::Duration::from_secs(10), connections.connect()).await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return vec![Finding::problem(
                    "connection",
                    format!("cannot connect to {where_}: {e}"),
                )];
            }
            Err(_) => {
                return vec![Finding::problem(
                    "connection",
                    format!("cannot connect to {where_}: no answer in 10 s"),
                )];
            }
        };
    let mut out = vec![Finding::ok(format!("connection to {where_}"))];
    let mode = connections.mode().name();
    match tls_in_use(&mut conn).await {
        Ok(Some((version, cipher))) => {
            out.push(Finding::ok(format!(
                "tls = {version} {cipher} (mode {mode})"
            )));
        }
        Ok(None) => out.push(Finding::ok(format!(
            "tls = none (mode {mode}{})",
            if connections.mode() == TlsMode::Disable {
                ""
            } else {
                ": the server offers no TLS"
            }
        ))),
        Err(e) => out.push(Finding::problem("tls", e.to_string())),
    }
    if let Err(e) = checks(source, &mut conn, &mut out).await {
        out.push(Finding::problem("server queries", e.to_string()));
    }
    let _ = conn.disconnect().await;
    out
}

/// `Some(value)` of a server variable, `None` when the server has none.
async fn variable(
    conn: &mut mysql_async::Conn,
    name: &str,
) -> Result<Option<String>, mysql_async::Error> {
    let row: Option<(String, String)> = conn
        .exec_first("SHOW GLOBAL VARIABLES WHERE Variable_name = ?", (name,))
        .await?;
    Ok(row.map(|(_, v)| v))
}

/// A setting that must have one value.
async fn expect(
    conn: &mut mysql_async::Conn,
    out: &mut Vec<Finding>,
    name: &str,
    want: &str,
    fix: &str,
) -> Result<(), mysql_async::Error> {
    out.push(match variable(conn, name).await? {
        Some(v) if v.eq_ignore_ascii_case(want) => Finding::ok(format!("{name} = {v}")),
        Some(v) => Finding::problem(
            name,
            format!("{name} is `{v}`, binlog capture needs `{want}`. Fix: {fix}"),
        ),
        None => Finding::problem(
            name,
            format!("the server has no `{name}` (too old for tidewater: MariaDB 10.5+ or MySQL 8.0+). Fix: upgrade the server"),
        ),
    });
    Ok(())
}

async fn checks(
    source: &MysqlSource,
    conn: &mut mysql_async::Conn,
    out: &mut Vec<Finding>,
) -> Result<(), mysql_async::Error> {
    let version = variable(conn, "version").await?.unwrap_or_default();
    let mariadb = version.to_ascii_lowercase().contains("mariadb");
    let config = |setting: &str| {
        format!("set `{setting}` in the server's configuration ([mysqld]) and restart it")
    };
    expect(conn, out, "log_bin", "ON", &config("log_bin = <path>")).await?;
    expect(
        conn,
        out,
        "binlog_format",
        "ROW",
        &config("binlog_format = ROW"),
    )
    .await?;
    expect(
        conn,
        out,
        "binlog_row_image",
        "FULL",
        &config("binlog_row_image = FULL"),
    )
    .await?;
    expect(
        conn,
        out,
        "binlog_row_metadata",
        "FULL",
        "SET GLOBAL binlog_row_metadata = FULL, and set it in the configuration ([mysqld])",
    )
    .await?;
    if mariadb {
        expect(
            conn,
            out,
            "gtid_strict_mode",
            "ON",
            &config("gtid_strict_mode = ON"),
        )
        .await?;
    } else {
        expect(conn, out, "gtid_mode", "ON", &config("gtid_mode = ON")).await?;
        expect(
            conn,
            out,
            "enforce_gtid_consistency",
            "ON",
            &config("enforce_gtid_consistency = ON"),
        )
        .await?;
    }

    let grants: Vec<String> = conn.query("SHOW GRANTS FOR CURRENT_USER()").await?;
    let global: Vec<String> = grants
        .iter()
        .map(|g| g.to_ascii_uppercase())
        .filter(|g| g.contains(" ON *.* "))
        .collect();
    let has = |privilege: &str| {
        global
            .iter()
            .any(|g| g.contains("ALL PRIVILEGES") || g.contains(privilege))
    };
    let user: String = conn
        .query_first("SELECT CURRENT_USER()")
        .await?
        .unwrap_or_default();
    let mut missing = Vec::new();
    if !has("REPLICATION SLAVE") && !has("REPLICATION REPLICA") {
        missing.push("REPLICATION SLAVE");
    }
    if !has("REPLICATION CLIENT") && !has("BINLOG MONITOR") {
        missing.push(if mariadb {
            "BINLOG MONITOR"
        } else {
            "REPLICATION CLIENT"
        });
    }
    if !has("RELOAD") && !has("LOCK TABLES") {
        missing.push("RELOAD");
    }
    out.push(if missing.is_empty() {
        Finding::ok(format!("privileges of {user}"))
    } else {
        Finding::problem(
            "privileges",
            format!(
                "{user} lacks {}. Fix: GRANT {} ON *.* TO {user}",
                missing.join(", "),
                missing.join(", ")
            ),
        )
    });

    for t in &source.tables {
        let id = match TableId::parse(&t.name, Dialect::Mysql) {
            Ok(id) => id,
            Err(e) => {
                out.push(Finding::problem(format!("table `{}`", t.name), e));
                continue;
            }
        };
        let item = format!("table {id}");
        let exists: Option<String> = conn
            .exec_first(
                "SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&id.schema, &id.name),
            )
            .await?;
        match exists.as_deref() {
            None => {
                out.push(Finding::problem(
                    item,
                    "does not exist (or the user cannot see it: GRANT SELECT on it)",
                ));
                continue;
            }
            Some("BASE TABLE") => {}
            Some(other) => {
                out.push(Finding::problem(
                    item,
                    format!("is a `{other}`; only tables can be captured"),
                ));
                continue;
            }
        }
        let primary: Option<i64> = conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY'",
                (&id.schema, &id.name),
            )
            .await?;
        if primary.unwrap_or(0) == 0 && t.key.is_none() {
            out.push(Finding::problem(
                item,
                "has no primary key: set `key: [..]` for it in the pipeline (columns that identify a row), or add a primary key",
            ));
            continue;
        }
        out.push(Finding::ok(format!("{item}: exists, keyed")));
    }
    Ok(())
}
