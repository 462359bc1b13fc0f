//! The `tidewater` command line: commands, their options, and exit codes.
//!
//! Exit codes are part of the contract with schedulers (Airflow's
//! `BashOperator` looks only at them):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the command ran and failed (a service unreachable, a pipeline stopped) |
//! | 2 | invalid input: a pipeline file or a command-line argument |
//! | 3 | the command is not built in this version |

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::admin::PartState;
use crate::config::model::{PipelineConfig, SourceConfig};
use crate::config::{self, Diagnostic, LoadReport, LoadedPipeline, Severity};
use crate::pipeline::{BACKOFF, Failure, supervise};
use crate::sources::Finding;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_INVALID: u8 = 2;
pub const EXIT_NOT_BUILT: u8 = 3;

/// Change-data-capture from Postgres and MySQL/MariaDB into Kafka
/// (Debezium-compatible Avro) and Apache Hudi tables on S3 or a local
/// directory.
#[derive(Debug, Parser)]
#[command(name = "tidewater", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TIDEWATER_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `tidewater=debug,rdkafka=warn`.
    #[arg(long, global = true, default_value = "info", env = "TIDEWATER_LOG")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Capture and sink in one process.
    All,
    /// Source → Kafka only.
    Capture,
    /// Kafka → lake only (workers in one consumer group share the tables).
    Sink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dialect {
    Athena,
    Redshift,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate pipeline files offline and report every problem with file,
    /// YAML path and line:column. Exit 0 when all are valid, 2 otherwise.
    Check {
        /// Pipeline files, or directories whose *.yaml/*.yml files are checked.
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
        /// Also run preflight checks against the live source, Kafka and lake
        /// (wal_level, replica identity, binlog settings, privileges).
        #[arg(long)]
        connect: bool,
        /// `text` for people, `json` for tools.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Run the daemon: capture and/or sink for every pipeline given. SIGTERM or
    /// SIGINT flushes, commits and exits 0; a second signal exits at once.
    Run {
        /// Pipeline files or directories.
        #[arg(value_name = "FILE|DIR", default_value = "pipelines")]
        paths: Vec<PathBuf>,
        /// Which half of the pipeline this process runs.
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
        /// Address of the admin HTTP endpoint (health, metrics, status).
        #[arg(long, default_value = "127.0.0.1:8089", env = "TIDEWATER_ADMIN_ADDR")]
        admin_addr: String,
        /// Bearer token required by the admin endpoint; mandatory when it
        /// listens on a non-loopback address.
        #[arg(long, env = "TIDEWATER_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// Sink: read every partition without a consumer group (one sink
        /// process per pipeline; a restart resumes at once).
        #[arg(long)]
        standalone: bool,
        /// Sink: a stable name of this worker in the consumer group (static
        /// membership: a restarted worker gets its partitions back without a
        /// rebalance). Default: the host name.
        #[arg(long, env = "TIDEWATER_WORKER_ID")]
        worker_id: Option<String>,
    },
    /// Re-snapshot a table (or the rows matching --where) while streaming
    /// continues. With --wait, exit 0 once the backfill is committed to the lake.
    Backfill {
        /// The pipeline file.
        #[arg(value_name = "FILE")]
        pipeline: PathBuf,
        /// The table to re-snapshot, as written in the pipeline file.
        #[arg(long)]
        table: String,
        /// A predicate on the table's columns selecting the rows to re-read.
        #[arg(long = "where", value_name = "PREDICATE")]
        predicate: Option<String>,
        /// Wait until the backfill is committed to the lake; progress on stderr.
        #[arg(long)]
        wait: bool,
        /// Admin endpoint of the running daemon.
        #[arg(long, default_value = "127.0.0.1:8089", env = "TIDEWATER_ADMIN_ADDR")]
        admin_addr: String,
    },
    /// Per pipeline: state, source lag (bytes and seconds), Kafka lag and the
    /// last commit per table, from the running daemon's admin endpoint.
    Status {
        /// Admin endpoint of the running daemon.
        #[arg(long, default_value = "127.0.0.1:8089", env = "TIDEWATER_ADMIN_ADDR")]
        admin_addr: String,
        /// Bearer token, when the daemon requires one.
        #[arg(long, env = "TIDEWATER_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print CREATE EXTERNAL TABLE statements (and ADD PARTITION statements)
    /// for the pipeline's lake tables.
    Ddl {
        /// The pipeline file.
        #[arg(value_name = "FILE")]
        pipeline: PathBuf,
        /// The query engine.
        #[arg(long, value_enum)]
        dialect: Dialect,
    },
    /// Print a topic's change events as JSON lines (key, op, position,
    /// before/after), like kcat for tidewater's topics. Reads every partition
    /// without a consumer group.
    Tail {
        /// The topic, e.g. `shop.public.orders`.
        topic: String,
        /// Take brokers, security and schema registry from this pipeline file.
        #[arg(long, value_name = "FILE", conflicts_with = "brokers")]
        pipeline: Option<PathBuf>,
        /// Brokers (plaintext, schemas from `_tidewater_schemas`), when no
        /// pipeline file is given.
        #[arg(
            long,
            default_value = "127.0.0.1:9092",
            env = "TIDEWATER_KAFKA_BROKERS"
        )]
        brokers: String,
        /// Start at the oldest message instead of waiting for new ones.
        #[arg(long)]
        from_beginning: bool,
        /// Stop after this many messages.
        #[arg(long, value_name = "N")]
        max_messages: Option<u64>,
        /// Stop after this many seconds without a message.
        #[arg(long, value_name = "SECS")]
        idle_exit_secs: Option<u64>,
    },
    /// Print the JSON Schema of pipeline files (for editors), or with
    /// --markdown the reference table and with --types the type mapping the
    /// README embeds.
    Schema {
        /// The pipeline reference as a Markdown table.
        #[arg(long)]
        markdown: bool,
        /// The type-mapping tables (source types, Avro types) as Markdown.
        #[arg(long, conflicts_with = "markdown")]
        types: bool,
    },
}

/// Runs a parsed command and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Check {
            paths,
            connect,
            format,
        } => check(&paths, connect, format),
        Command::Schema { markdown, types } => {
            let text = if markdown {
                config::reference::markdown_reference()
            } else if types {
                crate::kafka::avro::reference::type_table_markdown()
            } else {
                config::schema::pipeline_schema_text()
            };
            print_stdout(&text);
            EXIT_OK
        }
        Command::Tail {
            topic,
            pipeline,
            brokers,
            from_beginning,
            max_messages,
            idle_exit_secs,
        } => tail(
            pipeline.as_deref(),
            &brokers,
            crate::kafka::tail::TailOptions {
                topic,
                from_beginning,
                max_messages,
                idle_exit: idle_exit_secs.map(std::time::Duration::from_secs),
            },
        ),
        Command::Run {
            paths,
            role,
            standalone,
            worker_id,
            admin_addr,
            admin_token,
        } => {
            let placement = if standalone {
                crate::pipeline::sink::SinkPlacement::Standalone
            } else {
                crate::pipeline::sink::SinkPlacement::Group {
                    worker_id: worker_id.or_else(host_name),
                }
            };
            run_daemon(&paths, role, placement, &admin_addr, admin_token)
        }
        Command::Backfill { .. } => not_built("backfill", "backfills"),
        Command::Status {
            admin_addr,
            admin_token,
            json,
        } => status(&admin_addr, admin_token.as_deref(), json),
        Command::Ddl { pipeline, dialect } => ddl(&pipeline, dialect),
    };
    ExitCode::from(code)
}

fn tail(
    pipeline: Option<&std::path::Path>,
    brokers: &str,
    opts: crate::kafka::tail::TailOptions,
) -> u8 {
    let kafka = match pipeline {
        Some(file) => {
            let report = config::load(&[file.to_path_buf()]);
            if report.has_errors() {
                print_stdout(&check_text(&report));
                return EXIT_INVALID;
            }
            match report.pipelines.into_iter().next() {
                Some(p) => p.config.kafka,
                None => return EXIT_INVALID,
            }
        }
        None => crate::config::model::KafkaConfig::with_brokers(brokers),
    };
    let Some(runtime) = runtime("tail") else {
        return EXIT_FAILED;
    };
    let client = crate::kafka::client::client_config(&kafka);
    let result = runtime.block_on(async {
        let store = crate::kafka::schemas::SchemaStore::new(&kafka).map_err(|e| e.to_string())?;
        crate::kafka::tail::tail(&client, store, &opts)
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(_) => EXIT_OK,
        Err(e) => {
            eprintln!("tidewater tail: {e}");
            EXIT_FAILED
        }
    }
}

/// `tidewater run`. The sink role is built; capture joins it with the
/// capture work.
fn run_daemon(
    paths: &[PathBuf],
    role: Role,
    placement: crate::pipeline::sink::SinkPlacement,
    admin_addr: &str,
    admin_token: Option<String>,
) -> u8 {
    let report = config::load(paths);
    if report.has_errors() {
        print_stdout(&check_text(&report));
        return EXIT_INVALID;
    }
    let admin = match crate::admin::admin_addr(admin_addr, admin_token.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tidewater run: {e}");
            return EXIT_INVALID;
        }
    };
    let pipelines: Vec<PipelineConfig> = report.pipelines.into_iter().map(|p| p.config).collect();
    let capture = role != Role::Sink;
    let sink = role != Role::Capture;
    if role == Role::Sink && pipelines.iter().all(|c| c.lake.is_none()) {
        eprintln!("tidewater run --role sink: no pipeline has a `lake` section");
        return EXIT_INVALID;
    }
    let Some(runtime) = runtime("run") else {
        return EXIT_FAILED;
    };
    runtime.block_on(async move {
        // Caught from here on, before the admin endpoint answers: whoever
        // waits for it and then sends SIGTERM gets a graceful stop.
        let mut signals = Signals::catch();
        let listener = match tokio::net::TcpListener::bind(admin).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "tidewater run: cannot listen on --admin-addr {admin} ({e}); choose another address (port 0 picks a free one)"
                );
                return EXIT_FAILED;
            }
        };
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "admin endpoint listening (/health, /metrics, /pipelines)");
        }
        let registry = std::sync::Arc::new(crate::admin::Registry::default());
        tokio::spawn(crate::admin::serve(listener, registry.clone(), admin_token));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signals.next().await;
            tracing::info!("stopping: flushing and committing (a second signal exits at once)");
            let _ = stop_tx.send(true);
            signals.next().await;
            tracing::warn!("second signal: exiting without flushing");
            std::process::exit(130);
        });
        let mut tasks = tokio::task::JoinSet::new();
        for cfg in pipelines {
            let cfg = std::sync::Arc::new(cfg);
            if capture {
                let stop = stop_rx.clone();
                let cfg = cfg.clone();
                let registry = registry.clone();
                tasks.spawn(async move {
                    let stats =
                        std::sync::Arc::new(crate::sources::CaptureStats::default());
                    registry.capture(&cfg.name, stats.clone());
                    // Capture reconnects by itself; what it returns needs
                    // an operator.
                    let result = supervise(&registry, &cfg.name, "capture", BACKOFF, stop.clone(), || {
                        let mut stop = stop.clone();
                        let (cfg, stats) = (cfg.clone(), stats.clone());
                        async move {
                            crate::sources::run(&cfg, stats, async move {
                                let _ = stop.wait_for(|s| *s).await;
                            })
                            .await
                            .map_err(|e| Failure {
                                message: e.to_string(),
                                retryable: false,
                            })
                        }
                    })
                    .await;
                    (cfg.name.clone(), "capture", result)
                });
            }
            if sink && cfg.lake.is_some() {
                let stop = stop_rx.clone();
                let placement = placement.clone();
                let registry = registry.clone();
                tasks.spawn(async move {
                    registry.set_state(&cfg.name, "sink", PartState::Starting);
                    // A sink that fails on Kafka or the object store starts
                    // again from the checkpoint in the lake: nothing is
                    // lost or applied twice.
                    let result = supervise(&registry, &cfg.name, "sink", BACKOFF, stop.clone(), || {
                        let mut stop = stop.clone();
                        let (cfg, placement, registry) =
                            (cfg.clone(), placement.clone(), registry.clone());
                        async move {
                            let run = async {
                                let mut worker =
                                    crate::pipeline::sink::SinkWorker::start(&cfg, &placement)
                                        .await?;
                                registry.sink(&cfg.name, worker.stats.clone());
                                worker
                                    .run(async move {
                                        let _ = stop.wait_for(|s| *s).await;
                                    })
                                    .await
                            };
                            run.await.map_err(|e| Failure {
                                retryable: e.is_retryable(),
                                message: e.to_string(),
                            })
                        }
                    })
                    .await;
                    (cfg.name.clone(), "sink", result)
                });
            }
        }
        let mut code = EXIT_OK;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((name, part, Ok(()))) => tracing::info!(pipeline = %name, part, "stopped"),
                Ok((name, part, Err(e))) => {
                    tracing::error!(pipeline = %name, part, error = %e, "failed");
                    eprintln!("tidewater run: pipeline {name} ({part}): {e}");
                    code = EXIT_FAILED;
                }
                Err(e) => {
                    eprintln!("tidewater run: a task panicked: {e}");
                    code = EXIT_FAILED;
                }
            }
        }
        code
    })
}

/// `tidewater ddl`: the statements on stdout, `;`-terminated.
fn ddl(pipeline: &std::path::Path, dialect: Dialect) -> u8 {
    let report = config::load(&[pipeline.to_path_buf()]);
    if report.has_errors() {
        print_stdout(&check_text(&report));
        return EXIT_INVALID;
    }
    let Some(cfg) = report.pipelines.first().map(|p| &p.config) else {
        eprintln!("tidewater ddl: {} holds no pipeline", pipeline.display());
        return EXIT_INVALID;
    };
    let engine = match dialect {
        Dialect::Athena => crate::lake::ddl::Engine::Athena,
        Dialect::Redshift => crate::lake::ddl::Engine::Redshift,
    };
    let Some(runtime) = runtime("ddl") else {
        return EXIT_FAILED;
    };
    match runtime.block_on(crate::pipeline::sink::pipeline_ddl(cfg, engine)) {
        Ok(statements) => {
            let mut text = statements.join(";\n\n");
            text.push_str(";\n");
            print_stdout(&text);
            EXIT_OK
        }
        Err(e) => {
            eprintln!("tidewater ddl: {e}");
            EXIT_FAILED
        }
    }
}

/// `tidewater status`: the daemon's status as a table or JSON; exit 0 when
/// every part of every pipeline runs, 1 otherwise or when no daemon answers.
fn status(addr: &str, token: Option<&str>, json: bool) -> u8 {
    let Some(runtime) = runtime("status") else {
        return EXIT_FAILED;
    };
    let (code, body) = match runtime.block_on(crate::admin::get(addr, "/pipelines", token)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tidewater status: {e}");
            return EXIT_FAILED;
        }
    };
    if code != 200 {
        eprintln!(
            "tidewater status: the admin endpoint at {addr} answered {code}: {}",
            body.trim()
        );
        return EXIT_FAILED;
    }
    let value: serde_json::Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("tidewater status: the admin endpoint at {addr} sent no JSON ({e})");
            return EXIT_FAILED;
        }
    };
    if json {
        print_stdout(&body);
    } else {
        print_stdout(&crate::admin::status_table(&value));
    }
    if value.get("healthy").and_then(serde_json::Value::as_bool) == Some(true) {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// The async runtime of a command; `None` (said on stderr) when the
/// system refuses one.
fn runtime(command: &str) -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("tidewater {command}: cannot start the runtime: {e}");
            None
        }
    }
}

/// The host name, for a default worker id.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// SIGTERM and SIGINT, caught from [`Signals::catch`] on.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers (inside the runtime). A signal that cannot be
    /// caught keeps its default action.
    fn catch() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    /// Resolves on the next SIGTERM or SIGINT.
    async fn next(&mut self) {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = recv(&mut self.term) => {}
            () = recv(&mut self.int) => {}
        }
    }
}

fn not_built(command: &str, what: &str) -> u8 {
    eprintln!(
        "tidewater {command}: not built in this version ({what} is still to come); nothing was done"
    );
    EXIT_NOT_BUILT
}

fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`tidewater check … | head`) is not an error worth a panic.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn check(paths: &[PathBuf], connect: bool, format: OutputFormat) -> u8 {
    let report = config::load(paths);
    if !connect || report.has_errors() {
        let text = match format {
            OutputFormat::Text => check_text(&report),
            OutputFormat::Json => check_json(&report),
        };
        print_stdout(&text);
        return if report.has_errors() {
            EXIT_INVALID
        } else {
            EXIT_OK
        };
    }
    let Some(runtime) = runtime("check") else {
        return EXIT_FAILED;
    };
    let preflights: Vec<(&LoadedPipeline, Vec<Finding>)> = runtime.block_on(async {
        let mut out = Vec::new();
        for p in &report.pipelines {
            out.push((p, preflight(&p.config).await));
        }
        out
    });
    let failed = preflights
        .iter()
        .any(|(_, f)| f.iter().any(|f| f.problem.is_some()));
    let text = match format {
        OutputFormat::Text => {
            let mut text = check_text(&report);
            for (p, findings) in &preflights {
                for f in findings {
                    match &f.problem {
                        None => text.push_str(&format!("  ok    {}: {}\n", p.config.name, f.item)),
                        Some(problem) => text.push_str(&format!(
                            "  error {}: {}: {problem}\n",
                            p.config.name, f.item
                        )),
                    }
                }
            }
            text.push_str(if failed {
                "preflight: problems found\n"
            } else {
                "preflight: ready\n"
            });
            text
        }
        OutputFormat::Json => {
            let mut value = check_json_value(&report);
            let list: Vec<serde_json::Value> = preflights
                .iter()
                .map(|(p, findings)| {
                    serde_json::json!({
                        "name": p.config.name,
                        "file": p.file.display().to_string(),
                        "findings": findings.iter().map(|f| serde_json::json!({
                            "item": f.item,
                            "ok": f.problem.is_none(),
                            "problem": f.problem,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            if let Some(object) = value.as_object_mut() {
                object.insert("preflight".into(), serde_json::Value::Array(list));
                object.insert("valid".into(), serde_json::Value::Bool(!failed));
            }
            let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
            text.push('\n');
            text
        }
    };
    print_stdout(&text);
    if failed { EXIT_FAILED } else { EXIT_OK }
}

/// Live checks of one pipeline: its source and its Kafka brokers.
async fn preflight(cfg: &PipelineConfig) -> Vec<Finding> {
    let mut findings = match &cfg.source {
        SourceConfig::Postgres(source) => {
            crate::sources::postgres::preflight::check(&cfg.name, source).await
        }
        SourceConfig::Mysql(source) => crate::sources::mysql::preflight::check(source).await,
    };
    let client = crate::kafka::client::client_config(&cfg.kafka);
    let brokers = cfg.kafka.brokers.clone();
    let kafka = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::Consumer;
        let consumer: rdkafka::consumer::BaseConsumer = client.create()?;
        let metadata = consumer.fetch_metadata(None, std::time::Duration::from_secs(10))?;
        Ok::<usize, rdkafka::error::KafkaError>(metadata.brokers().len())
    })
    .await;
    findings.push(match kafka {
        Ok(Ok(n)) => Finding::ok(format!("kafka at {brokers}: {n} broker(s) answer")),
        Ok(Err(e)) => Finding::problem(format!("kafka at {brokers}"), format!("no answer: {e}")),
        Err(e) => Finding::problem(format!("kafka at {brokers}"), e.to_string()),
    });
    findings
}

/// One line per diagnostic, then one summary line per valid pipeline and a
/// total. Never prints a configured value that could be a secret.
pub fn check_text(report: &LoadReport) -> String {
    let mut out = String::new();
    let mut diagnostics: Vec<&Diagnostic> = report.diagnostics.iter().collect();
    diagnostics.sort_by(|a, b| (&a.file, a.mark).cmp(&(&b.file, b.mark)));
    for d in &diagnostics {
        out.push_str(&format!("{d}\n"));
    }
    for p in &report.pipelines {
        out.push_str(&format!(
            "ok {}: {}\n",
            p.file.display(),
            summary(&p.config)
        ));
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    if errors > 0 {
        let mut files: Vec<&PathBuf> = diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| &d.file)
            .collect();
        files.dedup();
        out.push_str(&format!(
            "{errors} error{} and {warnings} warning{} in {} file{}\n",
            plural(errors),
            plural(warnings),
            files.len(),
            plural(files.len())
        ));
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The one-line description of a valid pipeline.
pub fn summary(cfg: &PipelineConfig) -> String {
    let tables = cfg.source.tables().len();
    let prefix = cfg.kafka.topic_prefix.as_deref().unwrap_or(&cfg.name);
    let source = match &cfg.source {
        SourceConfig::Postgres(_) => "postgres",
        SourceConfig::Mysql(_) => "mysql",
    };
    let lake = match &cfg.lake {
        Some(lake) => format!(
            "lake {} (commit every {}s)",
            lake.uri, lake.commit_interval_secs
        ),
        None => "no lake (Kafka only)".to_string(),
    };
    format!(
        "pipeline `{}`: {source}, {tables} table{} -> kafka topics {prefix}.* -> {lake}",
        cfg.name,
        plural(tables)
    )
}

/// The same report as JSON: `{"pipelines": [...], "diagnostics": [...]}`.
pub fn check_json(report: &LoadReport) -> String {
    let mut text = serde_json::to_string_pretty(&check_json_value(report)).unwrap_or_default();
    text.push('\n');
    text
}

fn check_json_value(report: &LoadReport) -> serde_json::Value {
    let diagnostics: Vec<serde_json::Value> = report
        .diagnostics
        .iter()
        .map(|d| {
            serde_json::json!({
                "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
                "file": d.file.display().to_string(),
                "line": d.mark.line,
                "column": d.mark.column,
                "path": d.path.to_string(),
                "message": d.message,
            })
        })
        .collect();
    let pipelines: Vec<serde_json::Value> = report
        .pipelines
        .iter()
        .map(|p| {
            serde_json::json!({
                "file": p.file.display().to_string(),
                "name": p.config.name,
                "summary": summary(&p.config),
            })
        })
        .collect();
    serde_json::json!({
        "valid": !report.has_errors(),
        "pipelines": pipelines,
        "diagnostics": diagnostics,
    })
}
