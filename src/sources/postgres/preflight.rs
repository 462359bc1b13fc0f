//! Preflight of a Postgres source (`tidewater check --connect`): everything
//! capture needs from the server, each problem named with the value found,
//! the value expected and the fix, before the first start.
//!
//! Checked: the connection and authentication, `wal_level`, a free
//! replication slot and WAL sender, the REPLICATION privilege, each captured
//! table (exists, SELECT granted, a key: primary key, `key:` or REPLICA
//! IDENTITY FULL, the same rule capture applies), the publication (lists
//! every table, or can be created) and the slot (plugin, database, WAL not
//! lost). Nothing is created or changed.

use tokio_postgres::Client;

use super::catalog::{build_shape, lookup_table, publish_problem};
use super::wire::{ConnectParams, quote_ident};
use super::{CaptureError, connect_params, connect_sql, default_name};
use crate::config::model::PostgresSource;
use crate::event::table_id::{Dialect, TableId};
pub use crate::sources::Finding;

/// `None` when `wal_level` is `logical`, otherwise the problem and its fix.
pub async fn wal_level_problem(sql: &Client) -> Result<Option<String>, CaptureError> {
    let level: String = sql.query_one("SHOW wal_level", &[]).await?.try_get(0)?;
    Ok((level != "logical").then(|| {
        format!(
            "wal_level is `{level}`, logical replication needs `logical`. Fix: ALTER SYSTEM SET wal_level = logical; then restart Postgres"
        )
    }))
}

/// Runs every check against the live server of `source` (pipeline `name`).
pub async fn check(name: &str, source: &PostgresSource) -> Vec<Finding> {
    let params = match connect_params(source) {
        Ok(p) => p,
        Err(e) => return vec![Finding::problem("connection", e.to_string())],
    };
    let sql = match connect_sql(&params).await {
        Ok(c) => c,
        Err(e) => {
            return vec![Finding::problem(
                "connection",
                format!(
                    "cannot connect to {}:{} database `{}` as `{}`: {e}",
                    params.host, params.port, params.database, params.user
                ),
            )];
        }
    };
    let mut out = vec![Finding::ok(format!(
        "connection to {}:{} database `{}` as `{}`",
        params.host, params.port, params.database, params.user
    ))];
    match checks(name, source, &params, &sql, &mut out).await {
        Ok(()) => {}
        Err(e) => out.push(Finding::problem("catalog queries", e.to_string())),
    }
    out
}

async fn checks(
    name: &str,
    source: &PostgresSource,
    params: &ConnectParams,
    sql: &Client,
    out: &mut Vec<Finding>,
) -> Result<(), CaptureError> {
    out.push(match wal_level_problem(sql).await? {
        None => Finding::ok("wal_level = logical"),
        Some(p) => Finding::problem("wal_level", p),
    });

    let slot = source.slot.clone().unwrap_or_else(|| default_name(name));
    let publication = source
        .publication
        .clone()
        .unwrap_or_else(|| default_name(name));
    let row = sql
        .query_one(
            "SELECT current_setting('max_replication_slots')::int, \
                    (SELECT count(*)::int FROM pg_replication_slots), \
                    current_setting('max_wal_senders')::int, \
                    (SELECT count(*)::int FROM pg_stat_replication), \
                    r.rolreplication OR r.rolsuper, r.rolsuper \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await?;
    let (max_slots, slots): (i32, i32) = (row.try_get(0)?, row.try_get(1)?);
    let (max_senders, senders): (i32, i32) = (row.try_get(2)?, row.try_get(3)?);
    let (replication, superuser): (bool, bool) = (row.try_get(4)?, row.try_get(5)?);

    let existing = sql
        .query_opt(
            "SELECT plugin::text, database::text, wal_status FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    match &existing {
        Some(r) => {
            let plugin: Option<String> = r.try_get(0)?;
            let database: Option<String> = r.try_get(1)?;
            let wal_status: Option<String> = r.try_get(2)?;
            let item = format!("replication slot `{slot}`");
            out.push(if plugin.as_deref() != Some("pgoutput") {
                Finding::problem(
                    item,
                    format!(
                        "uses plugin `{}`, tidewater needs `pgoutput`. Fix: set another `slot:` name",
                        plugin.unwrap_or_default()
                    ),
                )
            } else if database.as_deref() != Some(params.database.as_str()) {
                Finding::problem(
                    item,
                    format!(
                        "belongs to database `{}`, not `{}`. Fix: set another `slot:` name",
                        database.unwrap_or_default(),
                        params.database
                    ),
                )
            } else if wal_status.as_deref() == Some("lost") {
                Finding::problem(
                    item,
                    "its WAL was removed (wal_status = lost). Fix: set a new `slot:` name and take a new snapshot",
                )
            } else {
                Finding::ok(format!("{item} exists (pgoutput, WAL kept)"))
            });
        }
        None => out.push(if slots < max_slots {
            Finding::ok(format!(
                "replication slot `{slot}` will be created ({slots} of max_replication_slots = {max_slots} in use)"
            ))
        } else {
            Finding::problem(
                "max_replication_slots",
                format!(
                    "all {max_slots} replication slots are in use and `{slot}` must be created. Fix: drop an unused slot, or raise max_replication_slots (restart needed)"
                ),
            )
        }),
    }
    // Capture holds one WAL sender, two while a snapshot is retaken.
    out.push(if senders + 2 <= max_senders {
        Finding::ok(format!(
            "max_wal_senders = {max_senders} ({senders} in use)"
        ))
    } else {
        Finding::problem(
            "max_wal_senders",
            format!(
                "max_wal_senders is {max_senders} with {senders} in use; capture needs 1 (2 while a snapshot is retaken). Fix: raise max_wal_senders (restart needed)"
            ),
        )
    });
    out.push(if replication {
        Finding::ok(format!("role `{}` has REPLICATION", params.user))
    } else {
        Finding::problem(
            "REPLICATION privilege",
            format!(
                "role `{}` lacks the REPLICATION attribute. Fix: ALTER ROLE {} REPLICATION",
                params.user,
                quote_ident(&params.user)
            ),
        )
    });

    let publication_row = sql
        .query_opt(
            "SELECT puballtables FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await?;
    // What is published under its own name (FOR ALL TABLES included; a
    // partitioned table only with publish_via_partition_root).
    let listed: Option<Vec<TableId>> = match &publication_row {
        Some(_) => Some(
            sql.query(
                "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
                &[&publication],
            )
            .await?
            .iter()
            .filter_map(|r| Some(TableId::new(r.try_get::<_, String>(0).ok()?, r.try_get::<_, String>(1).ok()?)))
            .collect(),
        ),
        None => None,
    };
    if publication_row.is_none() {
        let can_create: bool = sql
            .query_one(
                "SELECT has_database_privilege(current_database(), 'CREATE')",
                &[],
            )
            .await?
            .try_get(0)?;
        out.push(if can_create || superuser {
            Finding::ok(format!("publication `{publication}` will be created"))
        } else {
            Finding::problem(
                format!("publication `{publication}`"),
                format!(
                    "does not exist and role `{}` may not create it (needs CREATE on the database and ownership of the tables). Fix: CREATE PUBLICATION {} FOR TABLE ... as the tables' owner",
                    params.user,
                    quote_ident(&publication)
                ),
            )
        });
    }

    for t in &source.tables {
        let id = match TableId::parse(&t.name, Dialect::Postgres) {
            Ok(id) => id,
            Err(e) => {
                out.push(Finding::problem(
                    format!("table `{}`", t.name),
                    e.to_string(),
                ));
                continue;
            }
        };
        let item = format!("table {id}");
        let table = match lookup_table(sql, &id).await {
            Ok(t) => t,
            Err(e) => {
                out.push(Finding::problem(item, e.to_string()));
                continue;
            }
        };
        let row = sql
            .query_one(
                "SELECT has_table_privilege($1::oid, 'SELECT'), \
                        pg_has_role(c.relowner, 'USAGE') \
                 FROM pg_class c WHERE c.oid = $1::oid",
                &[&table.oid],
            )
            .await?;
        let (select, owner): (bool, bool) = (row.try_get(0)?, row.try_get(1)?);
        if !select {
            out.push(Finding::problem(
                item,
                format!(
                    "role `{}` may not read it (the snapshot needs SELECT). Fix: GRANT SELECT ON {}.{} TO {}",
                    params.user,
                    quote_ident(&id.schema),
                    quote_ident(&id.name),
                    quote_ident(&params.user)
                ),
            ));
            continue;
        }
        if let Err(e) = build_shape(
            &id,
            &params.database,
            &table.columns,
            &table.primary_key,
            table.replica_identity,
            t,
        ) {
            out.push(Finding::problem(item, e.to_string()));
            continue;
        }
        if let Some(problem) = publish_problem(&id, &table) {
            out.push(Finding::problem(item, problem));
            continue;
        }
        // No publication yet: it will be created, which needs ownership.
        let in_publication = match &listed {
            None => owner || superuser,
            Some(list) => list.contains(&id),
        };
        if !in_publication {
            let problem = if publication_row.is_none() {
                format!(
                    "role `{}` does not own it, so it cannot create publication `{publication}` for it. Fix: CREATE PUBLICATION {} FOR TABLE ... as the owner",
                    params.user,
                    quote_ident(&publication)
                )
            } else {
                format!(
                    "publication `{publication}` does not list it (a partitioned table is listed only with publish_via_partition_root = true). Fix: ALTER PUBLICATION {} ADD TABLE {}.{}",
                    quote_ident(&publication),
                    quote_ident(&id.schema),
                    quote_ident(&id.name)
                )
            };
            out.push(Finding::problem(item, problem));
            continue;
        }
        let identity = match table.replica_identity {
            'f' => "REPLICA IDENTITY FULL",
            'i' => "REPLICA IDENTITY USING INDEX",
            _ => "REPLICA IDENTITY DEFAULT",
        };
        out.push(Finding::ok(format!("{item}: readable, keyed, {identity}")));
    }
    Ok(())
}
