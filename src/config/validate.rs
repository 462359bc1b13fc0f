//! Checks that need meaning, not just shape: names, URLs, duplicates, and
//! options that contradict each other. They run on the deserialized model after
//! the schema check passed, and locate each problem through the YAML tree.
//!
//! Nothing here does I/O except checking that referenced local files (CA
//! certificates) exist; checks against live systems belong to `check --connect`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::diagnostic::{Diagnostic, Segment, YamlPath};
use super::model::{
    KafkaConfig, KafkaProtocol, LakeConfig, PipelineConfig, SourceConfig, TableConfig,
    UndecodablePolicy,
};
use super::yaml::{Mark, Node, Value};
use crate::event::table_id::{Dialect, TableId};
use crate::kafka::client::{parse_brokers, refuse_property};
use crate::kafka::topic::{invalid_topic, table_topic};

/// The tree, the file, and the collected diagnostics of one pipeline file.
pub struct Checker<'a> {
    pub file: &'a Path,
    pub root: &'a Node,
    /// Values that came from `${..}` references (secret-bearing).
    pub resolved: &'a [YamlPath],
    pub out: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    fn mark(&self, path: &YamlPath) -> Mark {
        locate(self.root, path).unwrap_or(self.root.mark)
    }

    fn error(&mut self, path: YamlPath, message: impl Into<String>) {
        let mark = self.mark(&path);
        self.out
            .push(Diagnostic::error(self.file, mark, path, message));
    }

    fn warning(&mut self, path: YamlPath, message: impl Into<String>) {
        let mark = self.mark(&path);
        self.out
            .push(Diagnostic::warning(self.file, mark, path, message));
    }

    /// Runs every check on one pipeline.
    pub fn check(&mut self, cfg: &PipelineConfig) {
        let root = YamlPath::root();
        if let Some(problem) = invalid_pipeline_name(&cfg.name) {
            self.error(root.key("name"), problem);
        }
        self.check_source(cfg);
        self.check_kafka(cfg, &cfg.kafka);
        match &cfg.lake {
            Some(lake) => self.check_lake(lake),
            None => {
                for (i, t) in cfg.source.tables().iter().enumerate() {
                    if t.partition_by.is_some() {
                        self.warning(
                            root.key("source")
                                .key("tables")
                                .index(i)
                                .key("partition_by"),
                            "partition_by has no effect: the pipeline has no `lake`",
                        );
                    }
                }
            }
        }
    }

    fn check_source(&mut self, cfg: &PipelineConfig) {
        let source = YamlPath::root().key("source");
        let (dialect, schemes): (Dialect, &[&str]) = match &cfg.source {
            SourceConfig::Postgres(_) => (Dialect::Postgres, &["postgres", "postgresql"]),
            SourceConfig::Mysql(_) => (Dialect::Mysql, &["mysql", "mariadb"]),
        };
        self.check_source_url(&source, cfg, schemes);
        if let Some(tls) = cfg.source.tls()
            && let Some(ca) = &tls.ca_file
        {
            self.check_readable_file(source.key("tls").key("ca_file"), ca);
        }
        if let Err(problem) = crate::sources::tls::Policy::from_config(cfg.source.tls()) {
            self.error(source.key("tls").key("mode"), problem);
        }
        match &cfg.source {
            SourceConfig::Postgres(pg) => {
                if let Some(slot) = &pg.slot
                    && let Some(problem) = invalid_slot_name(slot)
                {
                    self.error(source.key("slot"), problem);
                }
                if let Some(publication) = &pg.publication
                    && (publication.is_empty() || publication.len() > 63)
                {
                    self.error(
                        source.key("publication"),
                        "a publication name is 1 to 63 bytes long",
                    );
                }
                if let Some(table) = &pg.heartbeat_table
                    && let Err(problem) = TableId::parse(table, Dialect::Postgres)
                {
                    self.error(source.key("heartbeat_table"), problem);
                }
            }
            SourceConfig::Mysql(my) => {
                if my.server_id == Some(0) {
                    self.error(
                        source.key("server_id"),
                        "server_id 0 is reserved; use 1 or more",
                    );
                }
            }
        }
        self.check_tables(&source, cfg, dialect);
    }

    fn check_source_url(&mut self, source: &YamlPath, cfg: &PipelineConfig, schemes: &[&str]) {
        let path = source.key("url");
        let url = match url::Url::parse(cfg.source.url()) {
            Ok(url) => url,
            // The URL itself is not shown: it may hold a password.
            Err(e) => {
                return self.error(
                    path,
                    format!(
                        "not a valid URL ({e}); expected {}://user@host:port/database",
                        schemes.first().copied().unwrap_or_default()
                    ),
                );
            }
        };
        if !schemes.contains(&url.scheme()) {
            return self.error(
                path,
                format!(
                    "scheme `{}` does not match `type: {}`; expected {}",
                    url.scheme(),
                    cfg.source.kind(),
                    schemes.join(" or ")
                ),
            );
        }
        if url.host_str().is_none_or(str::is_empty) {
            self.error(path.clone(), "the URL names no host");
        }
        if url.password().is_some() {
            if cfg.source.password().is_some() {
                self.error(
                    path.clone(),
                    "a password is given both in the URL and in `password`; keep only `password`",
                );
            } else if !self.resolved.contains(&path) {
                self.warning(
                    path.clone(),
                    "the URL holds a literal password; move it to `password: ${env:NAME}`",
                );
            }
        }
    }

    fn check_tables(&mut self, source: &YamlPath, cfg: &PipelineConfig, dialect: Dialect) {
        let tables_path = source.key("tables");
        let tables = cfg.source.tables();
        if tables.is_empty() {
            self.error(tables_path.clone(), "list at least one table to capture");
        }
        let prefix = cfg.kafka.topic_prefix.as_deref().unwrap_or(&cfg.name);
        let mut seen: HashMap<TableId, usize> = HashMap::new();
        let mut topics: HashMap<String, usize> = HashMap::new();
        for (i, table) in tables.iter().enumerate() {
            let path = tables_path.index(i);
            self.check_columns(&path, table);
            let id = match TableId::parse(&table.name, dialect) {
                Ok(id) => id,
                Err(problem) => {
                    self.error(path.key("name"), problem);
                    continue;
                }
            };
            let topic = table_topic(prefix, &id);
            if let Some(first) = seen.get(&id) {
                let line = self.mark(&tables_path.index(*first).key("name")).line;
                self.error(
                    path.key("name"),
                    format!("table {id} is listed twice (first at line {line})"),
                );
                continue;
            }
            seen.insert(id.clone(), i);
            if let Some(problem) = invalid_topic(&topic) {
                self.error(path.key("name"), format!("its topic `{topic}`: {problem}"));
            } else if let Some(first) = topics.get(&topic) {
                let line = self.mark(&tables_path.index(*first).key("name")).line;
                self.error(
                    path.key("name"),
                    format!(
                        "table {id} would share the topic `{topic}` with the table at line {line}; rename one or quote its parts differently"
                    ),
                );
            } else {
                topics.insert(topic, i);
            }
        }
    }

    fn check_columns(&mut self, path: &YamlPath, table: &TableConfig) {
        let mut excluded: BTreeMap<&str, usize> = BTreeMap::new();
        for (j, col) in table.exclude_columns.iter().enumerate() {
            let p = path.key("exclude_columns").index(j);
            if col.is_empty() {
                self.error(p, "a column name cannot be empty");
            } else if let Some(first) = excluded.insert(col, j) {
                self.error(
                    p,
                    format!("column `{col}` is named twice (also item {first})"),
                );
            }
        }
        if let Some(key) = &table.key {
            if key.is_empty() {
                self.error(
                    path.key("key"),
                    "an empty key; list the key columns or leave `key` out to use the primary key",
                );
            }
            let mut named: BTreeMap<&str, usize> = BTreeMap::new();
            for (j, col) in key.iter().enumerate() {
                let p = path.key("key").index(j);
                if col.is_empty() {
                    self.error(p, "a column name cannot be empty");
                } else if let Some(first) = named.insert(col, j) {
                    self.error(
                        p,
                        format!("column `{col}` is named twice (also item {first})"),
                    );
                } else if excluded.contains_key(col.as_str()) {
                    self.error(p, format!("key column `{col}` is also in exclude_columns"));
                }
            }
        }
        if let Some(partition) = &table.partition_by {
            let p = path.key("partition_by").key("column");
            if partition.column.is_empty() {
                self.error(p, "a column name cannot be empty");
            } else if excluded.contains_key(partition.column.as_str()) {
                self.error(
                    p,
                    format!(
                        "partition column `{}` is also in exclude_columns",
                        partition.column
                    ),
                );
            }
        }
    }

    fn check_kafka(&mut self, cfg: &PipelineConfig, kafka: &KafkaConfig) {
        let path = YamlPath::root().key("kafka");
        if let Err(problem) = parse_brokers(&kafka.brokers) {
            self.error(path.key("brokers"), problem);
        }
        if let Some(prefix) = &kafka.topic_prefix
            && let Some(problem) = invalid_topic(prefix)
        {
            self.error(path.key("topic_prefix"), problem);
        }
        if let Some(group) = &kafka.consumer_group
            && group.trim().is_empty()
        {
            self.error(
                path.key("consumer_group"),
                "a consumer group cannot be empty",
            );
        }
        for name in kafka.properties.keys() {
            if let Some(problem) = refuse_property(name) {
                self.error(path.key("properties").key(name), problem);
            }
        }
        if let Some(registry) = &kafka.schema_registry {
            let p = path.key("schema_registry");
            self.check_http_url(p.key("url"), &registry.url);
            if registry.password.is_some() && registry.username.is_none() {
                self.error(p.key("password"), "a password needs a `username`");
            }
        }
        if let Some(sec) = &kafka.security {
            let p = path.key("security");
            let sasl = matches!(
                sec.protocol,
                KafkaProtocol::SaslPlaintext | KafkaProtocol::SaslSsl
            );
            if sasl {
                if sec.sasl_mechanism.is_none() {
                    self.error(
                        p.key("sasl_mechanism"),
                        "required by a sasl_* protocol: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                    );
                }
                if sec.username.is_none() {
                    self.error(p.key("username"), "required by a sasl_* protocol");
                }
                if sec.password.is_none() {
                    self.error(p.key("password"), "required by a sasl_* protocol");
                }
            } else {
                for (key, set) in [
                    ("sasl_mechanism", sec.sasl_mechanism.is_some()),
                    ("username", sec.username.is_some()),
                    ("password", sec.password.is_some()),
                ] {
                    if set {
                        self.error(
                            p.key(key),
                            "only used with protocol sasl_plaintext or sasl_ssl",
                        );
                    }
                }
            }
            if let Some(ca) = &sec.ca_file {
                self.check_readable_file(p.key("ca_file"), ca);
            }
        }
        if let Some(lake) = &cfg.lake
            && let Some(topic) = &lake.dead_letter_topic
            && let Some(problem) = invalid_topic(topic)
        {
            self.error(
                YamlPath::root().key("lake").key("dead_letter_topic"),
                problem,
            );
        }
    }

    fn check_lake(&mut self, lake: &LakeConfig) {
        let path = YamlPath::root().key("lake");
        match url::Url::parse(&lake.uri) {
            Err(e) => self.error(
                path.key("uri"),
                format!("not a valid URI ({e}); expected file:///dir or s3://bucket/prefix"),
            ),
            Ok(uri) => match uri.scheme() {
                "file" => {
                    if uri
                        .host_str()
                        .is_some_and(|h| !h.is_empty() && h != "localhost")
                    {
                        self.error(
                            path.key("uri"),
                            "a file URI names a local path: file:///absolute/dir (three slashes)",
                        );
                    }
                    if lake.s3.is_some() {
                        self.error(path.key("s3"), "s3 options need an s3:// uri");
                    }
                }
                "s3" => {
                    if uri.host_str().is_none_or(str::is_empty) {
                        self.error(
                            path.key("uri"),
                            "an s3 URI names a bucket: s3://bucket/prefix",
                        );
                    }
                }
                other => self.error(
                    path.key("uri"),
                    format!("scheme `{other}` is not supported; use file:// or s3://"),
                ),
            },
        }
        if let Some(s3) = &lake.s3 {
            if let Some(endpoint) = &s3.endpoint {
                self.check_http_url(path.key("s3").key("endpoint"), endpoint);
            }
            if s3.secret_access_key.is_some() != s3.access_key_id.is_some() {
                self.error(
                    path.key("s3"),
                    "access_key_id and secret_access_key go together",
                );
            }
        }
        if let Some(database) = &lake.database
            && (database.is_empty()
                || !database
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        {
            self.error(
                path.key("database"),
                "a Glue/Hive database name uses lower-case letters, digits and `_`",
            );
        }
        if lake.dead_letter_topic.is_some() && lake.on_undecodable != UndecodablePolicy::DeadLetter
        {
            self.warning(
                path.key("dead_letter_topic"),
                "unused: `on_undecodable` is not `dead_letter`",
            );
        }
    }

    fn check_http_url(&mut self, path: YamlPath, text: &str) {
        match url::Url::parse(text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            Ok(u) => self.error(
                path,
                format!(
                    "expected an http:// or https:// URL, found scheme `{}`",
                    u.scheme()
                ),
            ),
            Err(e) => self.error(path, format!("not a valid URL ({e})")),
        }
    }

    fn check_readable_file(&mut self, path: YamlPath, file: &str) {
        if let Err(e) = std::fs::metadata(file) {
            self.error(path, format!("cannot read {file}: {e}"));
        }
    }
}

/// Checks across the pipelines of one run: names, slots and server ids must
/// not collide.
pub fn check_across(pipelines: &[(&Path, &Node, &PipelineConfig)]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut names: HashMap<&str, &Path> = HashMap::new();
    let mut slots: HashMap<(String, String), &Path> = HashMap::new();
    let mut server_ids: HashMap<(String, u32), &Path> = HashMap::new();
    for (file, root, cfg) in pipelines {
        let at = |path: YamlPath| {
            let mark = locate(root, &path).unwrap_or(root.mark);
            (mark, path)
        };
        if let Some(first) = names.insert(&cfg.name, file) {
            let (mark, path) = at(YamlPath::root().key("name"));
            out.push(Diagnostic::error(
                file,
                mark,
                path,
                format!(
                    "pipeline name `{}` is also used by {}",
                    cfg.name,
                    first.display()
                ),
            ));
        }
        let server = server_key(cfg.source.url());
        match &cfg.source {
            SourceConfig::Postgres(pg) => {
                let slot = pg.slot.clone().unwrap_or_else(|| default_slot(&cfg.name));
                if let Some(first) = slots.insert((server, slot.clone()), file) {
                    let (mark, path) = at(YamlPath::root().key("source").key("slot"));
                    out.push(Diagnostic::error(
                        file,
                        mark,
                        path,
                        format!(
                            "slot `{slot}` on the same server is also used by {}",
                            first.display()
                        ),
                    ));
                }
            }
            SourceConfig::Mysql(my) => {
                let id = my.server_id.unwrap_or_else(|| default_server_id(&cfg.name));
                if let Some(first) = server_ids.insert((server, id), file) {
                    let (mark, path) = at(YamlPath::root().key("source").key("server_id"));
                    out.push(Diagnostic::error(
                        file,
                        mark,
                        path,
                        format!(
                            "server_id {id} on the same server is also used by {}",
                            first.display()
                        ),
                    ));
                }
            }
        }
    }
    out
}

/// `host:port/database` of a source URL, to tell servers apart.
fn server_key(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}{}",
            u.host_str().unwrap_or_default(),
            u.port().unwrap_or_default(),
            u.path()
        ),
        Err(_) => url.to_string(),
    }
}

/// The slot and publication name a pipeline uses by default.
pub fn default_slot(pipeline: &str) -> String {
    format!("tidewater_{}", pipeline.replace('-', "_"))
}

/// The replica server id a MySQL pipeline registers with by default: a stable
/// hash of the name in 1_000_000..=2_000_000_000, away from the small ids
/// DBAs hand out by hand.
pub fn default_server_id(pipeline: &str) -> u32 {
    // FNV-1a: stable across releases and platforms, unlike `DefaultHasher`.
    let mut hash: u32 = 0x811c_9dc5;
    for b in pipeline.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    1_000_000 + hash % 1_999_000_001
}

fn invalid_pipeline_name(name: &str) -> Option<String> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    (!ok).then(|| {
        "a pipeline name is 1-63 characters: lower-case letters, digits, `_` and `-`, starting with a letter".to_string()
    })
}

fn invalid_slot_name(slot: &str) -> Option<String> {
    let ok = (1..=63).contains(&slot.len())
        && slot
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    (!ok).then(|| {
        "a replication slot name is 1-63 characters: lower-case letters, digits and `_`".to_string()
    })
}

/// The mark of the value at `path` (of the key, for a missing value).
pub fn locate(root: &Node, path: &YamlPath) -> Option<Mark> {
    let mut node = root;
    let mut last_key_mark = None;
    for segment in path.segments() {
        match (segment, &node.value) {
            (Segment::Key(k), Value::Map(entries)) => {
                let entry = entries.iter().find(|e| &e.key == k);
                match entry {
                    Some(e) => {
                        last_key_mark = Some(e.key_mark);
                        node = &e.value;
                    }
                    // A key that is absent: point at the mapping that lacks it.
                    None => return Some(node.mark),
                }
            }
            (Segment::Index(i), Value::Seq(items)) => match items.get(*i) {
                Some(item) => node = item,
                None => return Some(node.mark),
            },
            _ => return last_key_mark.or(Some(node.mark)),
        }
    }
    Some(node.mark)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_server_ids_are_stable_and_in_range() {
        let id = default_server_id("shop");
        assert_eq!(id, default_server_id("shop"));
        assert_ne!(id, default_server_id("shop2"));
        for name in [
            "a",
            "shop",
            "a-very-long-pipeline-name-with-many-characters",
        ] {
            let id = default_server_id(name);
            assert!((1_000_000..=2_000_000_000).contains(&id), "{name}: {id}");
        }
    }

    #[test]
    fn names() {
        assert!(invalid_pipeline_name("shop-eu_2").is_none());
        assert!(invalid_pipeline_name("Shop").is_some());
        assert!(invalid_pipeline_name("2shop").is_some());
        assert!(invalid_pipeline_name("").is_some());
        assert!(invalid_slot_name("tidewater_shop").is_none());
        assert!(invalid_slot_name("tidewater-shop").is_some());
        assert_eq!(default_slot("shop-eu"), "tidewater_shop_eu");
    }
}
