//! Every kind of pipeline-file problem `tidewater check` reports, each checked
//! for its message, YAML path and line:column.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::secrets::Lookup;
use super::*;

struct TestLookup(HashMap<&'static str, &'static str>);

impl Lookup for TestLookup {
    fn env(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|s| s.to_string())
    }
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

fn lookup() -> TestLookup {
    TestLookup(HashMap::from([("SHOP_PG_PASSWORD", "hunter2-secret")]))
}

/// Writes `files` into a fresh directory and loads them all.
fn load_files(files: &[(&str, &str)]) -> (tempfile::TempDir, LoadReport) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let report = load_with(&[dir.path().to_path_buf()], &lookup());
    (dir, report)
}

fn load_text(text: &str) -> LoadReport {
    load_files(&[("p.yaml", text)]).1
}

/// (severity, "line:col", path, message) of every diagnostic.
fn found(report: &LoadReport) -> Vec<(Severity, String, String, String)> {
    report
        .diagnostics
        .iter()
        .map(|d| {
            (
                d.severity,
                d.mark.to_string(),
                d.path.to_string(),
                d.message.clone(),
            )
        })
        .collect()
}

#[track_caller]
fn assert_has(report: &LoadReport, at: &str, path: &str, fragment: &str) {
    let all = found(report);
    assert!(
        all.iter()
            .any(|(_, mark, p, m)| mark == at && p == path && m.contains(fragment)),
        "expected a diagnostic at {at} `{path}` containing {fragment:?}; got {all:#?}"
    );
}

const VALID: &str = "\
name: shop
source:
  type: postgres
  url: postgres://cdc@127.0.0.1:5432/shop
  password: ${env:SHOP_PG_PASSWORD}
  slot: tidewater_shop
  tables:
    - name: public.orders
      partition_by: { column: created_at, granularity: day }
      exclude_columns: [card_number]
    - name: public.customers
kafka:
  brokers: 127.0.0.1:9092
  topic_prefix: shop
lake:
  uri: file:///var/lib/tidewater/lake
  commit_interval_secs: 30
  target_file_size_mb: 128
  keep_commits: 10
";

#[test]
fn the_issue_example_is_valid_and_resolves_its_secret() {
    let report = load_text(VALID);
    assert!(report.diagnostics.is_empty(), "{:#?}", report.diagnostics);
    let cfg = &report.pipelines[0].config;
    assert_eq!(cfg.name, "shop");
    assert_eq!(cfg.source.password().unwrap().expose(), "hunter2-secret");
    assert_eq!(cfg.source.tables().len(), 2);
    let lake = cfg.lake.as_ref().unwrap();
    assert_eq!(lake.max_changes_per_commit, 1_000_000, "default applied");
    assert_eq!(format!("{:?}", cfg.source.password()), "Some(<redacted>)");
}

#[test]
fn syntax_error() {
    let report = load_text("name: shop\nsource:\n  type: postgres\n   url: x\n");
    assert_eq!(report.diagnostics.len(), 1, "{:#?}", report.diagnostics);
    let d = &report.diagnostics[0];
    assert!(d.message.starts_with("YAML syntax error:"), "{}", d.message);
    assert_eq!(d.mark.line, 4, "{d}");
    assert!(report.pipelines.is_empty());
}

#[test]
fn unknown_keys_with_suggestions() {
    let text = VALID.replace("  tables:\n", "  tabels:\n").replace(
        "  keep_commits: 10\n",
        "  keep_commits: 10\n  retention: 3\n",
    );
    let report = load_text(&text);
    assert_has(
        &report,
        "7:3",
        "source.tabels",
        "unknown key; did you mean `tables`?",
    );
    assert_has(
        &report,
        "20:3",
        "lake.retention",
        "unknown key; expected one of: uri, s3,",
    );
    assert_has(
        &report,
        "3:3",
        "source.tables",
        "required key `tables` is missing",
    );
}

#[test]
fn wrong_types() {
    let text = VALID
        .replace("commit_interval_secs: 30", "commit_interval_secs: soon")
        .replace("topic_prefix: shop", "topic_prefix: [shop]")
        .replace("keep_commits: 10", "keep_commits: 1.5");
    let report = load_text(&text);
    assert_has(
        &report,
        "17:25",
        "lake.commit_interval_secs",
        "expected an integer, found a string",
    );
    assert_has(
        &report,
        "14:17",
        "kafka.topic_prefix",
        "expected a string, found a list",
    );
    assert_has(
        &report,
        "19:17",
        "lake.keep_commits",
        "expected an integer, found the number 1.5",
    );
    assert_eq!(report.diagnostics.len(), 3, "{:#?}", report.diagnostics);
}

#[test]
fn missing_required_fields() {
    let report = load_text("name: shop\nsource:\n  type: mysql\n  tables: []\n");
    assert_has(
        &report,
        "1:1",
        "kafka",
        "required key `kafka` is missing from the pipeline",
    );
    assert_has(
        &report,
        "3:3",
        "source.url",
        "required key `url` is missing from `source`",
    );
    assert_eq!(report.diagnostics.len(), 2, "{:#?}", report.diagnostics);
}

#[test]
fn verify_ca_without_a_ca_file() {
    let text = VALID.replace(
        "  slot: tidewater_shop\n",
        "  slot: tidewater_shop\n  tls:\n    mode: verify-ca\n",
    );
    let report = load_text(&text);
    assert_has(
        &report,
        "8:11",
        "source.tls.mode",
        "`verify-ca` needs `ca_file`",
    );
    assert_eq!(report.diagnostics.len(), 1, "{:#?}", report.diagnostics);
}

#[test]
fn bad_urls() {
    let text = VALID
        .replace(
            "postgres://cdc@127.0.0.1:5432/shop",
            "mysql://cdc@127.0.0.1/shop",
        )
        .replace("file:///var/lib/tidewater/lake", "hdfs://nn/lake")
        .replace("127.0.0.1:9092", "127.0.0.1");
    let report = load_text(&text);
    assert_has(
        &report,
        "4:8",
        "source.url",
        "scheme `mysql` does not match `type: postgres`",
    );
    assert_has(
        &report,
        "16:8",
        "lake.uri",
        "scheme `hdfs` is not supported",
    );
    assert_has(
        &report,
        "13:12",
        "kafka.brokers",
        "broker `127.0.0.1` has no port",
    );
    let report = load_text(&VALID.replace("postgres://cdc@127.0.0.1:5432/shop", "not a url"));
    assert_has(&report, "4:8", "source.url", "not a valid URL");
}

#[test]
fn literal_password_in_url_is_a_warning_not_printed() {
    let text = VALID
        .replace("cdc@127.0.0.1", "cdc:plaintext-pw@127.0.0.1")
        .replace("  password: ${env:SHOP_PG_PASSWORD}\n", "");
    let report = load_text(&text);
    assert!(!report.has_errors(), "{:#?}", report.diagnostics);
    assert_has(&report, "4:8", "source.url", "literal password");
    let printed = crate::cli::check_text(&report);
    assert!(!printed.contains("plaintext-pw"), "{printed}");
}

#[test]
fn unresolved_references() {
    let text = VALID
        .replace("${env:SHOP_PG_PASSWORD}", "${env:NOT_SET_ANYWHERE}")
        .replace(
            "brokers: 127.0.0.1:9092",
            "brokers: ${file:/nonexistent/brokers}",
        );
    let report = load_text(&text);
    assert_has(
        &report,
        "5:13",
        "source.password",
        "`${env:NOT_SET_ANYWHERE}`: environment variable NOT_SET_ANYWHERE is not set",
    );
    assert_has(
        &report,
        "13:12",
        "kafka.brokers",
        "`${file:/nonexistent/brokers}`: cannot read",
    );
}

#[test]
fn file_references_are_relative_to_the_pipeline_file() {
    let text = VALID.replace("${env:SHOP_PG_PASSWORD}", "${file:pg.secret}");
    let (_dir, report) = load_files(&[("p.yaml", &text), ("pg.secret", "from-a-file\n")]);
    assert!(report.diagnostics.is_empty(), "{:#?}", report.diagnostics);
    let cfg = &report.pipelines[0].config;
    assert_eq!(cfg.source.password().unwrap().expose(), "from-a-file");
}

#[test]
fn duplicate_tables() {
    let text = VALID.replace(
        "    - name: public.customers\n",
        "    - name: public.ORDERS\n",
    );
    let report = load_text(&text);
    assert_has(
        &report,
        "11:13",
        "source.tables[1].name",
        "table public.orders is listed twice (first at line 8)",
    );
}

#[test]
fn tables_that_would_share_a_topic() {
    let text = VALID.replace(
        "    - name: public.customers\n",
        "    - name: public.\"orders\"\n    - name: public.\"order s\"\n    - name: public.\"order_s\"\n",
    );
    let report = load_text(&text);
    // `public."orders"` is the same table as `public.orders`.
    assert_has(&report, "11:13", "source.tables[1].name", "listed twice");
    assert_has(
        &report,
        "13:13",
        "source.tables[3].name",
        "would share the topic `shop.public.order_s`",
    );
}

#[test]
fn invalid_table_names() {
    let text = VALID
        .replace("name: public.orders\n", "name: orders\n")
        .replace("name: public.customers", "name: public.\"customers");
    let report = load_text(&text);
    assert_has(
        &report,
        "8:13",
        "source.tables[0].name",
        "`schema.table` (two parts), this has 1",
    );
    assert_has(
        &report,
        "11:13",
        "source.tables[1].name",
        "quote is not closed",
    );
}

#[test]
fn partition_column_named_twice() {
    // The same key twice in one mapping ...
    let text = VALID.replace(
        "      exclude_columns: [card_number]\n",
        "      partition_by: { column: updated_at }\n      exclude_columns: [card_number]\n",
    );
    let report = load_text(&text);
    assert_has(
        &report,
        "10:7",
        "(document)",
        "key `partition_by` appears twice in this mapping (first at line 9)",
    );
    // ... and the partition column also excluded.
    let text = VALID.replace(
        "exclude_columns: [card_number]",
        "exclude_columns: [card_number, created_at]",
    );
    let report = load_text(&text);
    assert_has(
        &report,
        "9:31",
        "source.tables[0].partition_by.column",
        "partition column `created_at` is also in exclude_columns",
    );
}

#[test]
fn key_columns() {
    let text = VALID.replace(
        "    - name: public.customers\n",
        "    - name: public.customers\n      key: [id, id, card]\n      exclude_columns: [card]\n",
    );
    let report = load_text(&text);
    assert_has(
        &report,
        "12:17",
        "source.tables[1].key[1]",
        "column `id` is named twice",
    );
    assert_has(
        &report,
        "12:21",
        "source.tables[1].key[2]",
        "key column `card` is also in exclude_columns",
    );
}

#[test]
fn refused_kafka_properties() {
    let text = VALID.replace(
        "  topic_prefix: shop\n",
        "  topic_prefix: shop\n  properties:\n    plugin.library.paths: /tmp/evil.so\n    acks: 1\n    linger.ms: 5\n",
    );
    let report = load_text(&text);
    assert_has(
        &report,
        "16:27",
        "kafka.properties[\"plugin.library.paths\"]",
        "load code",
    );
    assert_has(
        &report,
        "17:11",
        "kafka.properties.acks",
        "set by tidewater",
    );
    assert_eq!(report.diagnostics.len(), 2, "{:#?}", report.diagnostics);
}

#[test]
fn sasl_needs_its_credentials() {
    let text = VALID.replace(
        "  topic_prefix: shop\n",
        "  topic_prefix: shop\n  security:\n    protocol: sasl_ssl\n",
    );
    let report = load_text(&text);
    assert_has(
        &report,
        "16:5",
        "kafka.security.sasl_mechanism",
        "required by a sasl_* protocol",
    );
    assert_has(
        &report,
        "16:5",
        "kafka.security.username",
        "required by a sasl_* protocol",
    );
}

#[test]
fn empty_and_multi_document_files() {
    let report = load_text("");
    assert_has(&report, "1:1", "(document)", "the file is empty");
    let report = load_text(&format!("{VALID}---\n{VALID}"));
    assert_has(&report, "20:1", "(document)", "2 YAML documents");
}

#[test]
fn every_file_is_checked_and_names_must_be_unique() {
    let (dir, report) = load_files(&[
        ("a.yaml", VALID),
        (
            "b.yaml",
            &VALID.replace("slot: tidewater_shop", "slot: other_slot"),
        ),
        ("c.yml", "name: broken\nsource: 5\n"),
        ("notes.txt", "not a pipeline"),
    ]);
    let files: Vec<PathBuf> = report.diagnostics.iter().map(|d| d.file.clone()).collect();
    assert!(
        files.contains(&dir.path().join("b.yaml")),
        "{:#?}",
        report.diagnostics
    );
    assert!(
        files.contains(&dir.path().join("c.yml")),
        "{:#?}",
        report.diagnostics
    );
    assert!(!files.contains(&dir.path().join("notes.txt")));
    assert_has(
        &report,
        "1:7",
        "name",
        "pipeline name `shop` is also used by",
    );
    assert_eq!(report.pipelines.len(), 1, "only a.yaml is valid");
}

#[test]
fn two_pipelines_on_one_slot() {
    let (_dir, report) = load_files(&[
        ("a.yaml", VALID),
        ("b.yaml", &VALID.replace("name: shop", "name: shop2")),
    ]);
    assert_has(
        &report,
        "6:9",
        "source.slot",
        "slot `tidewater_shop` on the same server is also used by",
    );
}

#[test]
fn directory_without_pipelines() {
    let dir = tempfile::tempdir().unwrap();
    let report = load_with(&[dir.path().to_path_buf()], &lookup());
    assert!(report.has_errors());
    assert!(report.diagnostics[0].message.contains("no .yaml or .yml"));
}
