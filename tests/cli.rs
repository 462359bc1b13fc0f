//! The `tidewater` binary as users and schedulers see it: help texts, exit
//! codes, `check` output, and the generated files that must not go stale.
//! These need no service.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test glue"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tidewater(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(args)
        .current_dir(repo())
        .env("TIDEWATER_PG_PASSWORD", "pg-secret-value")
        .env("TIDEWATER_MYSQL_PASSWORD", "mysql-secret-value")
        .env_remove("TIDEWATER_LOG")
        .output()
        .expect("run tidewater")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_example_pipeline_is_valid() {
    let out = tidewater(&["check", "pipelines"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let examples: Vec<PathBuf> = std::fs::read_dir(repo().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    assert!(examples.len() >= 2, "{examples:?}");
    for example in examples {
        let name = Path::new("pipelines").join(example.file_name().unwrap());
        assert!(
            text.contains(&format!("ok {}: pipeline `", name.display())),
            "no summary for {}: {text}",
            name.display()
        );
    }
    assert!(
        !text.contains("secret-value"),
        "a secret was printed: {text}"
    );
}

#[test]
fn invalid_files_exit_2_with_every_problem_located_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "\
name: Bad Name
source:
  type: postgres
  url: postgres://cdc:${env:TIDEWATER_PG_PASSWORD}@db:5432/shop
  password: ${env:TIDEWATER_PG_PASSWORD}
  tables:
    - name: public.orders
    - name: public.orders
kafka:
  brokers: 127.0.0.1:9092
  topic_partitions: many
",
    )
    .unwrap();
    let out = tidewater(&["check", file.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let f = file.display();
    // The schema problem is reported; semantic checks wait for a well-formed file.
    assert!(
        text.contains(&format!(
            "{f}:11:21: error: kafka.topic_partitions: expected an integer, found a string"
        )),
        "{text}"
    );
    assert!(text.contains("1 error and 0 warnings in 1 file"), "{text}");

    // Fix the shape: now the semantic problems show, all at once.
    std::fs::write(
        &file,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace("topic_partitions: many", "topic_partitions: 8"),
    )
    .unwrap();
    let out = tidewater(&["check", file.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!("{f}:1:7: error: name: a pipeline name is")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{f}:4:8: error: source.url: a password is given both in the URL and in `password`"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{f}:8:13: error: source.tables[1].name: table public.orders is listed twice (first at line 7)")),
        "{text}"
    );
    assert!(
        !text.contains("pg-secret-value"),
        "a secret was printed: {text}"
    );
}

#[test]
fn check_json_is_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, "name: p\nsource: {type: mysql, url: 'mysql://h', tables: [{name: d.t}]}\nkafka: {brokers: 'h:1', bogus: 1}\n").unwrap();
    let out = tidewater(&["check", "--format", "json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let d = &v["diagnostics"][0];
    assert_eq!(d["line"], 3);
    assert_eq!(d["column"], 25);
    assert_eq!(d["path"], "kafka.bogus");
    assert_eq!(d["severity"], "error");
}

#[test]
fn help_is_complete() {
    let out = tidewater(&["--help"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0));
    for command in [
        "check", "run", "backfill", "status", "ddl", "tail", "schema",
    ] {
        assert!(
            text.contains(command),
            "--help does not list {command}: {text}"
        );
        let sub = tidewater(&[command, "--help"]);
        assert_eq!(
            sub.status.code(),
            Some(0),
            "{command} --help: {}",
            stderr(&sub)
        );
        assert!(
            stdout(&sub).contains("Usage: tidewater"),
            "{command} --help: {}",
            stdout(&sub)
        );
    }
    let backfill = stdout(&tidewater(&["backfill", "--help"]));
    for option in ["--table", "--where", "--wait"] {
        assert!(backfill.contains(option), "{backfill}");
    }
    assert!(stdout(&tidewater(&["run", "--help"])).contains("--role"));
}

#[test]
fn status_without_a_daemon_exits_1_and_says_where_it_looked() {
    let out = tidewater(&["status", "--admin-addr", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("127.0.0.1:1") && err.contains("tidewater run"),
        "{err}"
    );
    // A non-loopback admin address without a token is refused before
    // anything starts.
    let out = tidewater(&[
        "run",
        "--role",
        "sink",
        "--admin-addr",
        "0.0.0.0:18089",
        "pipelines/shop-postgres.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--admin-token"), "{}", stderr(&out));
}

#[test]
fn commands_not_built_yet_say_so_and_exit_3() {
    let out = tidewater(&[
        "backfill",
        "pipelines/shop-postgres.yaml",
        "--table",
        "public.orders",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("not built"), "{}", stderr(&out));
}

#[test]
fn usage_errors_exit_2() {
    let out = tidewater(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let out = tidewater(&["ddl", "x.yaml", "--dialect", "bigquery"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn checked_in_json_schema_is_current() {
    let generated = stdout(&tidewater(&["schema"]));
    let checked_in = std::fs::read_to_string(repo().join("schemas/pipeline.schema.json")).unwrap();
    assert!(
        generated == checked_in,
        "schemas/pipeline.schema.json is stale: run `cargo run -q -- schema > schemas/pipeline.schema.json`"
    );
}

#[test]
fn readme_pipeline_reference_is_current() {
    let generated = stdout(&tidewater(&["schema", "--markdown"]));
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let begin = tidewater::config::reference::BEGIN_MARKER;
    let end = tidewater::config::reference::END_MARKER;
    let start = readme.find(begin).expect("README has the begin marker") + begin.len();
    let stop = readme.find(end).expect("README has the end marker");
    let embedded = readme[start..stop].trim();
    assert!(
        embedded == generated.trim(),
        "the README's pipeline reference is stale: replace it with `cargo run -q -- schema --markdown`"
    );
}

#[test]
fn readme_type_mapping_is_current() {
    let generated = stdout(&tidewater(&["schema", "--types"]));
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let begin = tidewater::kafka::avro::reference::BEGIN_MARKER;
    let end = tidewater::kafka::avro::reference::END_MARKER;
    let start = readme.find(begin).expect("README has the begin marker") + begin.len();
    let stop = readme.find(end).expect("README has the end marker");
    assert!(
        readme[start..stop].trim() == generated.trim(),
        "the README's type mapping is stale: replace it with `cargo run -q -- schema --types`"
    );
}

/// A sink whose Kafka does not answer is retried with backoff, not given
/// up: `/pipelines` says `retrying` with the error, `/health` is 503, and
/// SIGTERM still exits 0. (No service needed: the broker address is
/// closed on purpose.)
#[test]
fn a_sink_that_cannot_reach_kafka_is_retried_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let closed = common::free_addr();
    let admin = common::free_addr();
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        format!(
            "name: nokafka\nsource:\n  type: postgres\n  url: postgres://u@localhost/db\n  tables:\n    - name: public.t\nkafka:\n  brokers: {closed}\n  properties:\n    socket.timeout.ms: 2000\nlake:\n  uri: file://{}\n",
            dir.path().join("lake").display()
        ),
    )
    .unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args([
            "run",
            "--role",
            "sink",
            "--standalone",
            "--admin-addr",
            &admin,
        ])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(common::Reaped)
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let (code, sink) = loop {
        if let Ok((code, body)) = runtime.block_on(tidewater::admin::get(&admin, "/health", None)) {
            let value: serde_json::Value = serde_json::from_str(&body).unwrap();
            let sink = value["pipelines"][0]["parts"]["sink"].clone();
            if sink["state"] == "retrying" {
                break (code, sink);
            }
        }
        assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon gave up");
        assert!(std::time::Instant::now() < deadline, "never retrying");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(code, 503);
    assert!(sink["error"].as_str().unwrap().contains("kafka"), "{sink}");
    let status = common::sigterm(&mut daemon.0);
    assert!(status.success(), "SIGTERM exits 0 while retrying: {status}");
}
