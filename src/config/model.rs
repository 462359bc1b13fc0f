//! The pipeline file model: one YAML file declares one pipeline.
//!
//! These types are the single source of truth for the file format: the JSON
//! Schema in `schemas/pipeline.schema.json` and the reference table in the
//! README are generated from them (and tests fail when either is stale), and
//! the structural checks of `tidewater check` run against that same schema.
//! Doc comments here are user documentation: they become the schema's
//! descriptions.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A pipeline: one source database, its Kafka topics, and (optionally) the lake
/// tables the sink keeps in sync with them.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "tidewater pipeline")]
pub struct PipelineConfig {
    /// Pipeline name: 1-63 characters, lower-case letters, digits, `_` and `-`,
    /// starting with a letter. Unique across the pipelines a daemon runs; the
    /// default slot, publication, topic prefix and consumer group derive from it.
    pub name: String,
    /// The database to capture.
    pub source: SourceConfig,
    /// The Kafka cluster the change events are published to.
    pub kafka: KafkaConfig,
    /// The lake the sink writes Hudi tables to. Without it the pipeline only
    /// publishes to Kafka (for other consumers of the topics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lake: Option<LakeConfig>,
}

/// The source database, selected by `type`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceConfig {
    /// PostgreSQL through logical replication (`pgoutput`).
    Postgres(PostgresSource),
    /// MySQL or MariaDB through the row-based binary log.
    Mysql(MysqlSource),
}

impl SourceConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Postgres(_) => "postgres",
            SourceConfig::Mysql(_) => "mysql",
        }
    }

    pub fn url(&self) -> &str {
        match self {
            SourceConfig::Postgres(s) => &s.url,
            SourceConfig::Mysql(s) => &s.url,
        }
    }

    pub fn password(&self) -> Option<&Secret> {
        match self {
            SourceConfig::Postgres(s) => s.password.as_ref(),
            SourceConfig::Mysql(s) => s.password.as_ref(),
        }
    }

    pub fn tls(&self) -> Option<&TlsConfig> {
        match self {
            SourceConfig::Postgres(s) => s.tls.as_ref(),
            SourceConfig::Mysql(s) => s.tls.as_ref(),
        }
    }

    pub fn tables(&self) -> &[TableConfig] {
        match self {
            SourceConfig::Postgres(s) => &s.tables,
            SourceConfig::Mysql(s) => &s.tables,
        }
    }
}

/// A PostgreSQL source (10 or newer, `wal_level = logical`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSource {
    /// Connection URL: `postgres://user@host:5432/database` or
    /// `mysql://user@host:3306`. Keep the password out of it: use `password`.
    pub url: String,
    /// Password of the replication user, usually `${env:NAME}` or `${file:/path}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// TLS to the database. Default: `mode: prefer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Logical replication slot (`pgoutput`); created if missing, otherwise
    /// checked. Default: `tidewater_<name>` with `-` replaced by `_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// Publication listing the captured tables; created if missing, otherwise
    /// checked. Default: `tidewater_<name>` with `-` replaced by `_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publication: Option<String>,
    /// `initial` reads every table once before streaming; `never` streams only.
    #[serde(default)]
    pub snapshot: SnapshotMode,
    /// Rows read per snapshot query (tables are read in primary-key chunks so
    /// memory stays bounded).
    #[serde(default = "default_snapshot_chunk_rows")]
    #[schemars(range(min = 1))]
    pub snapshot_chunk_rows: u32,
    /// Tables snapshotted at the same time.
    #[serde(default = "default_snapshot_parallelism")]
    #[schemars(range(min = 1, max = 64))]
    pub snapshot_parallelism: u32,
    /// How often an idle source position is moved forward (Postgres: so the
    /// slot does not hold WAL back; MySQL: binlog heartbeats); `0` disables.
    #[serde(default = "default_heartbeat_interval_secs")]
    pub heartbeat_interval_secs: u32,
    /// A table (`schema.table`) that heartbeats update, for databases whose
    /// captured tables can be idle while others write WAL. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_table: Option<String>,
    /// What a `TRUNCATE` of a captured table does.
    #[serde(default)]
    pub truncate: TruncateMode,
    /// The captured tables.
    pub tables: Vec<TableConfig>,
}

/// A MySQL (5.7, 8.x) or MariaDB (10.5+) source with `binlog_format = ROW`,
/// `binlog_row_image = FULL` and GTIDs.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MysqlSource {
    /// Connection URL: `postgres://user@host:5432/database` or
    /// `mysql://user@host:3306`. Keep the password out of it: use `password`.
    pub url: String,
    /// Password of the replication user, usually `${env:NAME}` or `${file:/path}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// TLS to the database. Default: `mode: prefer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Server id tidewater registers with as a replica; must differ from every
    /// other replica of the source. Default: derived from the pipeline name
    /// (a value from 1000000 upwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub server_id: Option<u32>,
    /// `initial` reads every table once before streaming; `never` streams only.
    #[serde(default)]
    pub snapshot: SnapshotMode,
    /// Rows read per snapshot query (tables are read in primary-key chunks so
    /// memory stays bounded).
    #[serde(default = "default_snapshot_chunk_rows")]
    #[schemars(range(min = 1))]
    pub snapshot_chunk_rows: u32,
    /// Tables snapshotted at the same time.
    #[serde(default = "default_snapshot_parallelism")]
    #[schemars(range(min = 1, max = 64))]
    pub snapshot_parallelism: u32,
    /// How often an idle source position is moved forward (Postgres: so the
    /// slot does not hold WAL back; MySQL: binlog heartbeats); `0` disables.
    #[serde(default = "default_heartbeat_interval_secs")]
    pub heartbeat_interval_secs: u32,
    /// What a `TRUNCATE` of a captured table does.
    #[serde(default)]
    pub truncate: TruncateMode,
    /// What a zero date (`0000-00-00`) becomes.
    #[serde(default)]
    pub zero_dates: ZeroDates,
    /// The captured tables.
    pub tables: Vec<TableConfig>,
}

/// TLS settings for a database connection.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// `disable`, `prefer` (TLS when the server offers it), `require` (TLS;
    /// the certificate is checked only when `ca_file` is given), `verify-ca`
    /// (TLS, and the certificate chain must lead to `ca_file`) or
    /// `verify-full` (also the host name of the URL must be in the
    /// certificate; `ca_file` or the system's roots).
    #[serde(default)]
    pub mode: TlsMode,
    /// PEM file with the CA certificates to trust (for `verify-ca` and
    /// `verify-full`). Default: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    /// As written in YAML.
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    #[default]
    Initial,
    Never,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TruncateMode {
    /// Publish a truncate event; the sink empties the lake table at that position.
    #[default]
    Propagate,
    /// Stop the pipeline with an error naming the table.
    Stop,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ZeroDates {
    /// NULL (counted in the `zero_dates` metric).
    #[default]
    Null,
    /// Stop with an error naming table, column and position.
    Error,
}

/// One captured table.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// `schema.table` (Postgres) or `database.table` (MySQL). Unquoted names
    /// follow the database's rules (Postgres folds them to lower case); quote a
    /// part with `"` to keep case, dots or spaces: `public."Order Items"`.
    pub name: String,
    /// Columns of the record key. Default: the primary key. Required for a
    /// table without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<String>>,
    /// Date partitioning of the lake table. Default: unpartitioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_by: Option<PartitionBy>,
    /// Columns never captured (not in events, not in the lake).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_columns: Vec<String>,
}

/// Hive-style date partitions, `<column>=YYYY-MM-DD` (or `YYYY-MM`, `YYYY`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionBy {
    /// A date or timestamp column of the table.
    pub column: String,
    /// One partition per day, month or year.
    #[serde(default)]
    pub granularity: Granularity,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    #[default]
    Day,
    Month,
    Year,
}

/// The Kafka cluster.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers: `host:port`, several separated by commas.
    pub brokers: String,
    /// Topics are named `<topic_prefix>.<schema>.<table>`. Default: the
    /// pipeline name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_prefix: Option<String>,
    /// Partitions of the topics tidewater creates (existing topics are kept).
    #[serde(default = "default_topic_partitions")]
    #[schemars(range(min = 1, max = 10000))]
    pub topic_partitions: u32,
    /// Replication factor of the topics tidewater creates. Default: the
    /// broker's `default.replication.factor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32))]
    pub topic_replication_factor: Option<u16>,
    /// Compression of produced batches.
    #[serde(default)]
    pub compression: KafkaCompression,
    /// Follow each delete event with a tombstone (null value) so that
    /// log-compacted topics forget the key.
    #[serde(default = "default_true")]
    pub tombstones: bool,
    /// A Confluent-compatible Schema Registry. Without one, events carry their
    /// schema fingerprint and the schemas are published to a Kafka topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistryConfig>,
    /// TLS and SASL to the brokers. Default: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<KafkaSecurity>,
    /// Extra librdkafka tuning properties. Only an allow-list is accepted
    /// (batching, timeouts, buffer sizes, client id); properties that load code,
    /// run commands or weaken delivery (`plugin.library.paths`,
    /// `sasl.kerberos.kinit.cmd`, `acks`, `enable.idempotence`, ...) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, PropertyValue>,
    /// Consumer group of the sink workers. Default: `tidewater.<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
}

impl KafkaConfig {
    /// Plaintext brokers with every other option at its default.
    pub fn with_brokers(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            topic_prefix: None,
            topic_partitions: default_topic_partitions(),
            topic_replication_factor: None,
            compression: KafkaCompression::default(),
            tombstones: true,
            schema_registry: None,
            security: None,
            properties: BTreeMap::new(),
            consumer_group: None,
        }
    }
}

/// A scalar librdkafka property value.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum PropertyValue {
    Text(String),
    Integer(i64),
    Boolean(bool),
}

impl fmt::Display for PropertyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyValue::Text(s) => f.write_str(s),
            PropertyValue::Integer(i) => write!(f, "{i}"),
            PropertyValue::Boolean(b) => write!(f, "{b}"),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KafkaCompression {
    None,
    Gzip,
    Snappy,
    Lz4,
    #[default]
    Zstd,
}

/// A Confluent-compatible Schema Registry.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// `http://host:8081` or `https://...`.
    pub url: String,
    /// Basic-auth user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Basic-auth password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
}

/// How tidewater authenticates to and encrypts traffic with the brokers.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSecurity {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub protocol: KafkaProtocol,
    /// For the `sasl_*` protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// SASL password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// PEM file with the CA certificates to trust. Default: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Check that the broker certificate names the broker host.
    #[serde(default = "default_true")]
    pub verify_hostname: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KafkaProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// The lake: Hudi copy-on-write tables, one directory per captured table.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// `file:///absolute/dir` or `s3://bucket/prefix`. In a local directory,
    /// base files of 1 MiB or more are written past the page cache
    /// (`O_DIRECT`) where the file system allows it, through a staging file
    /// renamed into place.
    pub uri: String,
    /// Options for `s3://` URIs. Credentials default to the usual AWS
    /// environment variables and instance metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
    /// Hive/Glue database the tables are registered in (also recorded in
    /// `hoodie.properties`). Default: the pipeline name with `-` replaced by `_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Changes are buffered per table and committed at least this often.
    #[serde(default = "default_commit_interval_secs")]
    #[schemars(range(min = 1, max = 86400))]
    pub commit_interval_secs: u32,
    /// A table commits early once this many changes are buffered.
    #[serde(default = "default_max_changes_per_commit")]
    #[schemars(range(min = 1))]
    pub max_changes_per_commit: u32,
    /// Memory the sink may use for buffered changes (each counted with its
    /// row, key and bookkeeping), across all tables of the pipeline; reaching
    /// it commits early. The sink touches it once at start (at most half
    /// the memory available), so it stays resident from then on.
    #[serde(default = "default_buffer_mb")]
    #[schemars(range(min = 16))]
    pub buffer_mb: u32,
    /// Base files grow up to about this size; inserts first fill files below
    /// 80% of it (small-file bin-packing).
    #[serde(default = "default_target_file_size_mb")]
    #[schemars(range(min = 1, max = 4096))]
    pub target_file_size_mb: u32,
    /// The cleaner keeps the file versions the last `keep_commits` commits need
    /// (time travel and incremental reads reach that far back).
    #[serde(default = "default_keep_commits")]
    #[schemars(range(min = 1, max = 1000))]
    pub keep_commits: u32,
    /// Parquet compression codec of base files.
    #[serde(default)]
    pub parquet_compression: ParquetCompression,
    /// What the sink does with a Kafka message it cannot decode (a foreign
    /// producer on the topic).
    #[serde(default)]
    pub on_undecodable: UndecodablePolicy,
    /// Topic for undecodable messages when `on_undecodable: dead_letter`.
    /// Default: `<topic_prefix>.dead_letter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
}

impl LakeConfig {
    /// `buffer_mb` in bytes: the sink's buffers across all its tables.
    pub fn buffer_bytes(&self) -> usize {
        (self.buffer_mb as usize) << 20
    }

    /// A lake at `uri` with every other option at its default.
    pub fn with_uri(uri: impl Into<String>) -> Self {
        LakeConfig {
            uri: uri.into(),
            s3: None,
            database: None,
            commit_interval_secs: default_commit_interval_secs(),
            max_changes_per_commit: default_max_changes_per_commit(),
            buffer_mb: default_buffer_mb(),
            target_file_size_mb: default_target_file_size_mb(),
            keep_commits: default_keep_commits(),
            parquet_compression: ParquetCompression::default(),
            on_undecodable: UndecodablePolicy::default(),
            dead_letter_topic: None,
        }
    }
}

/// S3 and S3-compatible object stores.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:9000`.
    /// Default: AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region. Default: `AWS_REGION`, else `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Access key id. Default: `AWS_ACCESS_KEY_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// Secret access key. Default: `AWS_SECRET_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
    /// Session token for temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Secret>,
    /// Virtual-hosted-style requests (`bucket.host`) instead of path style.
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// Time limit of one request (a part upload, a put, a list). Requests
    /// that fail or time out are retried with backoff.
    #[serde(default = "default_request_timeout_secs")]
    #[schemars(range(min = 1, max = 3600))]
    pub request_timeout_secs: u32,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            virtual_hosted_style: false,
            request_timeout_secs: default_request_timeout_secs(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParquetCompression {
    None,
    #[default]
    Snappy,
    Zstd,
    Gzip,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UndecodablePolicy {
    /// Stop that table with an error naming topic, partition and offset.
    #[default]
    Stop,
    /// Copy the message to the dead-letter topic and go on.
    DeadLetter,
}

/// A string that must never be printed: passwords, secret keys.
///
/// `Debug` and `Display` print `<redacted>`, so a secret cannot leak through a
/// log line or an error message that formats the config.
#[derive(Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

fn default_true() -> bool {
    true
}
fn default_snapshot_chunk_rows() -> u32 {
    50_000
}
fn default_snapshot_parallelism() -> u32 {
    2
}
fn default_heartbeat_interval_secs() -> u32 {
    10
}
fn default_topic_partitions() -> u32 {
    4
}
fn default_commit_interval_secs() -> u32 {
    30
}
fn default_max_changes_per_commit() -> u32 {
    1_000_000
}
fn default_buffer_mb() -> u32 {
    448
}
fn default_target_file_size_mb() -> u32 {
    128
}
fn default_request_timeout_secs() -> u32 {
    60
}
fn default_keep_commits() -> u32 {
    10
}
