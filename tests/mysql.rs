//! MySQL/MariaDB against the real MariaDB started by `scripts/services.sh`:
//! the preflight of `tidewater check --connect` (capture itself is still to
//! come).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

mod common;

use mysql_async::prelude::Queryable;

async fn mariadb() -> mysql_async::Conn {
    let url = common::mysql_url();
    mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{}", common::unreachable("MariaDB", &url, e)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_names_wrong_settings_privileges_and_keys() {
    let mut db = mariadb().await;
    let name = common::unique_name("pre").to_lowercase();
    let weak = format!("{name}_weak");
    for sql in [
        format!("CREATE DATABASE `{name}`"),
        format!("CREATE TABLE `{name}`.good (id int PRIMARY KEY, v text)"),
        format!("CREATE TABLE `{name}`.nokey (a int, b text)"),
        format!("CREATE VIEW `{name}`.seen AS SELECT id FROM `{name}`.good"),
        format!("CREATE USER '{weak}'@'%' IDENTIFIED BY 'weak-pw'"),
        format!("GRANT SELECT ON `{name}`.* TO '{weak}'@'%'"),
    ] {
        db.query_drop(&sql).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let write = |file: &str, url: &str, tables: &[&str]| {
        let source = format!("  type: mysql\n  url: {url}\n");
        common::write_pipeline(dir.path(), file, &name, &source, &name, tables)
    };
    let url = common::mysql_url();

    // The test server is set up as capture needs it.
    let (code, report) = common::check_connect(&write("ready.yaml", &url, &["good"]));
    let found = common::findings(&report);
    assert_eq!(code, 0, "{report:#}");
    for item in [
        "log_bin = ON",
        "binlog_format = ROW",
        "binlog_row_image = FULL",
        "binlog_row_metadata = FULL",
        "gtid_strict_mode = ON",
    ] {
        assert_eq!(found.get(item), Some(&None), "{item}: {found:#?}");
    }
    assert!(found.keys().any(|k| k.starts_with("privileges of")));

    // A table without a key, a view, a missing table.
    let (code, report) = common::check_connect(&write(
        "keys.yaml",
        &url,
        &["good", "nokey", "seen", "missing"],
    ));
    let found = common::findings(&report);
    assert_eq!(code, 1);
    let table = |t: &str| common::problem_of(&found, &format!("table {name}.{t}"));
    assert!(table("nokey").contains("no primary key"), "{found:#?}");
    assert!(table("seen").contains("VIEW"), "{found:#?}");
    assert!(table("missing").contains("does not exist"));
    assert_eq!(
        found.get(&format!("table {name}.good: exists, keyed")),
        Some(&None)
    );

    // A user with SELECT only: the missing privileges, named with the GRANT.
    let weak_url = common::with_user(&url, &weak, "weak-pw");
    let (code, report) = common::check_connect(&write("weak.yaml", &weak_url, &["good"]));
    let found = common::findings(&report);
    assert_eq!(code, 1);
    let problem = common::problem_of(&found, "privileges");
    for privilege in ["REPLICATION SLAVE", "BINLOG MONITOR", "RELOAD", "GRANT"] {
        assert!(problem.contains(privilege), "{problem}");
    }

    // A setting capture cannot work with: named with its value and the fix
    // (set back at once; nothing else reads this server's binlog now).
    db.query_drop("SET GLOBAL binlog_row_metadata = MINIMAL")
        .await
        .unwrap();
    let (code, report) = common::check_connect(&write("ready.yaml", &url, &["good"]));
    db.query_drop("SET GLOBAL binlog_row_metadata = FULL")
        .await
        .unwrap();
    assert_eq!(code, 1);
    let problem = common::problem_of(&common::findings(&report), "binlog_row_metadata");
    assert!(
        problem.contains("`MINIMAL`") && problem.contains("`FULL`"),
        "{problem}"
    );

    db.query_drop(format!("DROP DATABASE `{name}`"))
        .await
        .unwrap();
    db.query_drop(format!("DROP USER '{weak}'@'%'"))
        .await
        .unwrap();
}
