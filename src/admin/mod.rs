//! The admin HTTP endpoint of `tidewater run`: `GET /health`, `GET /metrics`
//! (Prometheus text), `GET /pipelines` (JSON status, what `tidewater
//! status` prints).
//!
//! A small HTTP/1.1 server on the daemon's runtime (GET only, one request
//! per connection, 16 KiB of request head at most): three read-only
//! endpoints do not justify a web framework in the binary. It listens on
//! loopback by default; a non-loopback address is refused unless a bearer
//! token is set, and when a token is set every request must carry it.
//!
//! Metric labels are bounded: pipeline names, parts (`capture`, `sink`) and
//! the tables of the pipeline files, never values from the data.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::pipeline::sink::SinkStats;
use crate::sources::CaptureStats;

/// What a part of a pipeline is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartState {
    Starting,
    Running,
    /// Failed, waiting to run again.
    Retrying(String),
    Stopped,
    Failed(String),
}

impl PartState {
    fn name(&self) -> &'static str {
        match self {
            PartState::Starting => "starting",
            PartState::Running => "running",
            PartState::Retrying(_) => "retrying",
            PartState::Stopped => "stopped",
            PartState::Failed(_) => "failed",
        }
    }
}

struct Part {
    pipeline: String,
    part: &'static str,
    state: PartState,
    capture: Option<Arc<CaptureStats>>,
    sink: Option<Arc<SinkStats>>,
}

/// Every part of every pipeline the daemon runs, with its figures.
#[derive(Default)]
pub struct Registry {
    parts: std::sync::Mutex<Vec<Part>>,
}

impl Registry {
    fn with<R>(&self, f: impl FnOnce(&mut Vec<Part>) -> R) -> R {
        let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut parts)
    }

    fn entry<'a>(parts: &'a mut Vec<Part>, pipeline: &str, part: &'static str) -> &'a mut Part {
        let at = match parts
            .iter()
            .position(|p| p.pipeline == pipeline && p.part == part)
        {
            Some(i) => i,
            None => {
                parts.push(Part {
                    pipeline: pipeline.to_string(),
                    part,
                    state: PartState::Starting,
                    capture: None,
                    sink: None,
                });
                parts.len() - 1
            }
        };
        match parts.get_mut(at) {
            Some(p) => p,
            // `at` is an index into `parts`, just found or pushed.
            None => unreachable_part(),
        }
    }

    pub fn capture(&self, pipeline: &str, stats: Arc<CaptureStats>) {
        self.with(|parts| Self::entry(parts, pipeline, "capture").capture = Some(stats));
    }

    pub fn sink(&self, pipeline: &str, stats: Arc<SinkStats>) {
        self.with(|parts| Self::entry(parts, pipeline, "sink").sink = Some(stats));
    }

    pub fn set_state(&self, pipeline: &str, part: &'static str, state: PartState) {
        self.with(|parts| Self::entry(parts, pipeline, part).state = state);
    }

    /// Every part is running (and there is at least one), and no sink has
    /// stopped a table (that table needs an operator, although the rest of
    /// its pipeline goes on).
    pub fn healthy(&self) -> bool {
        self.with(|parts| {
            !parts.is_empty()
                && parts.iter().all(|p| {
                    p.state == PartState::Running
                        && p.sink.as_ref().is_none_or(|s| {
                            let tables = s.tables.lock().unwrap_or_else(|e| e.into_inner());
                            tables.values().all(|t| t.stopped.is_none())
                        })
                })
        })
    }

    /// `{"healthy", "pipelines": [{"name", "parts": {...}}]}`.
    pub fn status(&self) -> Json {
        let healthy = self.healthy();
        self.with(|parts| {
            let mut pipelines: BTreeMap<&str, serde_json::Map<String, Json>> = BTreeMap::new();
            for p in parts.iter() {
                let mut v = serde_json::Map::new();
                let mut set = |k: &str, value: Json| {
                    v.insert(k.to_string(), value);
                };
                set("state", json!(p.state.name()));
                if let PartState::Failed(e) | PartState::Retrying(e) = &p.state {
                    set("error", json!(e));
                }
                if let Some(c) = &p.capture {
                    set("events", json!(c.events.load(Ordering::Relaxed)));
                    set("snapshot_rows", json!(c.snapshot_rows.load(Ordering::Relaxed)));
                    set("snapshot_done", json!(c.snapshot_done.load(Ordering::Relaxed)));
                    set("lag_bytes", json!(c.lag_bytes()));
                    set(
                        "lag_seconds",
                        json!(c.lag_micros.load(Ordering::Relaxed) as f64 / 1e6),
                    );
                    let tables = c.snapshot_tables.lock().unwrap_or_else(|p| p.into_inner());
                    set(
                        "snapshot_tables",
                        tables
                            .iter()
                            .map(|t| {
                                json!({"table": t.table.to_string(), "rows": t.rows, "estimate": t.estimate, "done": t.done})
                            })
                            .collect(),
                    );
                }
                if let Some(s) = &p.sink {
                    set("commits", json!(s.commits.load(Ordering::Relaxed)));
                    set("messages", json!(s.messages.load(Ordering::Relaxed)));
                    set("rows_written", json!(s.rows_written.load(Ordering::Relaxed)));
                    set("kafka_lag", json!(s.kafka_lag.load(Ordering::Relaxed)));
                    let tables = s.tables.lock().unwrap_or_else(|p| p.into_inner());
                    set(
                        "tables",
                        tables
                            .iter()
                            .map(|(name, t)| {
                                json!({"table": name, "last_instant": t.last_instant, "stopped": t.stopped})
                            })
                            .collect(),
                    );
                }
                pipelines
                    .entry(p.pipeline.as_str())
                    .or_default()
                    .insert(p.part.to_string(), Json::Object(v));
            }
            json!({
                "healthy": healthy,
                "pipelines": pipelines
                    .into_iter()
                    .map(|(name, parts)| json!({"name": name, "parts": parts}))
                    .collect::<Vec<_>>(),
            })
        })
    }

    /// The Prometheus text exposition of every figure.
    pub fn metrics(&self) -> String {
        let mut m = Metrics::default();
        self.with(|parts| {
            for p in parts.iter() {
                let labels = [("pipeline", p.pipeline.as_str()), ("part", p.part)];
                m.add(
                    "tidewater_up",
                    "gauge",
                    "1 while the part runs, 0 otherwise",
                    &labels,
                    f64::from(u8::from(p.state == PartState::Running)),
                );
                let pl = [("pipeline", p.pipeline.as_str())];
                if let Some(c) = &p.capture {
                    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
                    m.add("tidewater_capture_events_total", "counter", "Change events streamed from the source", &pl, load(&c.events));
                    m.add("tidewater_capture_bytes_total", "counter", "Bytes of replication data received from the source", &pl, load(&c.bytes));
                    m.add("tidewater_capture_snapshot_rows_total", "counter", "Rows read by snapshots", &pl, load(&c.snapshot_rows));
                    m.add("tidewater_capture_zero_dates_total", "counter", "MySQL zero dates captured as NULL (`zero_dates: null`)", &pl, load(&c.zero_dates));
                    m.add("tidewater_capture_confirmed_position", "gauge", "Source position before which Kafka acknowledged every change (Postgres: the LSN; MySQL/MariaDB: binlog file number * 2^32 + offset)", &pl, load(&c.confirmed_lsn));
                    m.add("tidewater_capture_lag_bytes", "gauge", "WAL the source holds for tidewater: server position minus confirmed position", &pl, c.lag_bytes() as f64);
                    m.add("tidewater_capture_lag_seconds", "gauge", "Age of the oldest source transaction Kafka has not fully acknowledged", &pl, load(&c.lag_micros) / 1e6);
                    let tables = c.snapshot_tables.lock().unwrap_or_else(|p| p.into_inner());
                    for t in tables.iter() {
                        let name = t.table.to_string();
                        let tl = [("pipeline", p.pipeline.as_str()), ("table", name.as_str())];
                        m.add("tidewater_capture_snapshot_table_rows", "gauge", "Rows of the table read by the snapshot", &tl, t.rows as f64);
                        m.add("tidewater_capture_snapshot_table_estimated_rows", "gauge", "The planner's row estimate of the table when its snapshot started", &tl, t.estimate as f64);
                    }
                }
                if let Some(s) = &p.sink {
                    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
                    m.add("tidewater_sink_commits_total", "counter", "Lake commits", &pl, load(&s.commits));
                    m.add("tidewater_sink_commit_seconds_total", "counter", "Time spent in lake commits", &pl, load(&s.commit_micros) / 1e6);
                    m.add("tidewater_sink_rows_written_total", "counter", "Rows inserted, updated or deleted in the lake", &pl, load(&s.rows_written));
                    m.add("tidewater_sink_messages_total", "counter", "Kafka messages read by the sink", &pl, load(&s.messages));
                    m.add("tidewater_sink_dead_letters_total", "counter", "Messages sent to the dead-letter topic", &pl, load(&s.dead_letters));
                    m.add("tidewater_sink_conflicts_total", "counter", "Commits retried after losing a race", &pl, load(&s.conflicts));
                    m.add("tidewater_sink_kafka_lag_messages", "gauge", "Messages of the owned partitions not in the lake yet (high watermark minus the lake checkpoint)", &pl, load(&s.kafka_lag));
                    m.add("tidewater_sink_reserved_bytes", "gauge", "Memory the sink touched at start for its buffers (`buffer_mb`, at most half the memory available); 0 when freed memory is returned to the system", &pl, load(&s.reserved_bytes));
                    let tables = s.tables.lock().unwrap_or_else(|p| p.into_inner());
                    for (name, t) in tables.iter() {
                        let tl = [("pipeline", p.pipeline.as_str()), ("table", name.as_str())];
                        m.add("tidewater_sink_table_stopped", "gauge", "1 when the sink stopped the table (see the log)", &tl, f64::from(u8::from(t.stopped.is_some())));
                    }
                }
            }
        });
        m.render()
    }
}

#[allow(clippy::panic, reason = "an index just checked; cannot happen")]
fn unreachable_part() -> ! {
    panic!("admin registry: a part index out of range")
}

/// Metric families in the order first seen, each with its samples.
#[derive(Default)]
struct Metrics {
    families: Vec<(String, &'static str, &'static str, Vec<String>)>,
}

impl Metrics {
    fn add(
        &mut self,
        name: &str,
        kind: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        let sample = format!("{name}{{{}}} {value}", labels.join(","));
        match self.families.iter_mut().find(|f| f.0 == name) {
            Some(f) => f.3.push(sample),
            None => self
                .families
                .push((name.to_string(), kind, help, vec![sample])),
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (name, kind, help, samples) in &self.families {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for s in samples {
                out.push_str(s);
                out.push('\n');
            }
        }
        out
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Checks `--admin-addr` against the token rule: loopback, or a token.
pub fn admin_addr(addr: &str, token: Option<&str>) -> Result<SocketAddr, String> {
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|e| format!("--admin-addr `{addr}`: not an IP address and port ({e})"))?;
    if !parsed.ip().is_loopback() && token.is_none_or(str::is_empty) {
        return Err(format!(
            "--admin-addr `{addr}` is not a loopback address: set --admin-token (or TIDEWATER_ADMIN_TOKEN) so the endpoint is not open to anyone who can reach it"
        ));
    }
    Ok(parsed)
}

/// Serves requests until the runtime ends.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, token: Option<String>) {
    let token = Arc::new(token);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let registry = registry.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                answer(stream, &registry, token.as_deref()),
            )
            .await;
        });
    }
}

async fn answer(
    mut stream: TcpStream,
    registry: &Registry,
    token: Option<&str>,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
        if head.len() > 16 * 1024 {
            return respond(&mut stream, 431, "text/plain", "request head too large\n").await;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (
        first.next().unwrap_or_default(),
        first.next().unwrap_or_default(),
    );
    if let Some(token) = token {
        let given = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| {
                v.trim()
                    .strip_prefix("Bearer ")
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        if !same(given.as_bytes(), token.as_bytes()) {
            return respond(
                &mut stream,
                401,
                "text/plain",
                "a bearer token is required\n",
            )
            .await;
        }
    }
    if method != "GET" {
        return respond(&mut stream, 405, "text/plain", "only GET\n").await;
    }
    let path = target.split('?').next().unwrap_or_default();
    match path {
        "/health" => {
            let status = registry.status();
            let healthy = status.get("healthy").and_then(Json::as_bool) == Some(true);
            let body = format!("{status}\n");
            respond(
                &mut stream,
                if healthy { 200 } else { 503 },
                "application/json",
                &body,
            )
            .await
        }
        "/metrics" => {
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4",
                &registry.metrics(),
            )
            .await
        }
        "/pipelines" => {
            let body = format!("{}\n", registry.status());
            respond(&mut stream, 200, "application/json", &body).await
        }
        _ => {
            respond(
                &mut stream,
                404,
                "text/plain",
                "not found: /health, /metrics, /pipelines\n",
            )
            .await
        }
    }
}

/// Equality that takes the same time wherever the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn respond(stream: &mut TcpStream, code: u16, kind: &str, body: &str) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// `GET path` from the admin endpoint at `addr`: (status code, body).
pub async fn get(addr: &str, path: &str, token: Option<&str>) -> Result<(u16, String), String> {
    let url = format!("http://{addr}{path}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client.get(&url);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("no tidewater admin endpoint answers at {addr} ({e}); is `tidewater run` running with this --admin-addr?"))?;
    let code = response.status().as_u16();
    let body = response.text().await.map_err(|e| e.to_string())?;
    Ok((code, body))
}

/// `tidewater status` as a table.
pub fn status_table(status: &Json) -> String {
    let mut out = format!(
        "{:<24} {:<8} {:<9} {:>12} {:>12} {:>10} {:>9} {:>12} {:>10}\n",
        "PIPELINE",
        "PART",
        "STATE",
        "EVENTS",
        "LAG BYTES",
        "LAG S",
        "COMMITS",
        "ROWS WRITTEN",
        "KAFKA LAG"
    );
    let empty = Vec::new();
    let str_of = |v: &Json, k: &str| {
        v.get(k)
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string()
    };
    for p in status
        .get("pipelines")
        .and_then(Json::as_array)
        .unwrap_or(&empty)
    {
        let name = str_of(p, "name");
        if let Some(parts) = p.get("parts").and_then(Json::as_object) {
            for (part, v) in parts {
                let num = |k: &str| {
                    v.get(k)
                        .map(|x| x.to_string())
                        .unwrap_or_else(|| "-".into())
                };
                out.push_str(&format!(
                    "{:<24} {:<8} {:<9} {:>12} {:>12} {:>10} {:>9} {:>12} {:>10}\n",
                    name,
                    part,
                    str_of(v, "state"),
                    num("events"),
                    num("lag_bytes"),
                    v.get("lag_seconds")
                        .and_then(Json::as_f64)
                        .map_or("-".into(), |s| format!("{s:.1}")),
                    num("commits"),
                    num("rows_written"),
                    num("kafka_lag"),
                ));
                if let Some(e) = v.get("error").and_then(Json::as_str) {
                    out.push_str(&format!("  error: {e}\n"));
                }
                for t in v.get("tables").and_then(Json::as_array).unwrap_or(&empty) {
                    if let Some(reason) = t.get("stopped").and_then(Json::as_str) {
                        out.push_str(&format!(
                            "  table {} stopped: {reason}\n",
                            str_of(t, "table")
                        ));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_a_token() {
        assert!(admin_addr("127.0.0.1:8089", None).is_ok());
        assert!(admin_addr("[::1]:8089", None).is_ok());
        let err = admin_addr("0.0.0.0:8089", None).unwrap_err();
        assert!(err.contains("--admin-token"), "{err}");
        assert!(admin_addr("0.0.0.0:8089", Some("")).is_err());
        assert!(admin_addr("0.0.0.0:8089", Some("s3cret")).is_ok());
        assert!(admin_addr("localhost:8089", None).is_err());
    }

    #[test]
    fn health_needs_every_part_running() {
        let r = Registry::default();
        assert!(!r.healthy(), "nothing runs yet");
        r.set_state("a", "capture", PartState::Running);
        r.set_state("a", "sink", PartState::Starting);
        assert!(!r.healthy());
        r.set_state("a", "sink", PartState::Running);
        assert!(r.healthy());
        // A table the sink stopped: the part runs, the table needs an operator.
        let stats = Arc::new(SinkStats::default());
        r.sink("a", stats.clone());
        stats.table("public.t", |t| t.last_instant = Some("1".into()));
        assert!(r.healthy());
        stats.table("public.t", |t| t.stopped = Some("narrowed".into()));
        assert!(!r.healthy(), "a stopped table is unhealthy");
        stats.table("public.t", |t| t.stopped = None);
        r.set_state("b", "capture", PartState::Failed("slot lost".into()));
        assert!(!r.healthy());
        let status = r.status();
        assert_eq!(
            status["pipelines"][1]["parts"]["capture"]["error"],
            "slot lost"
        );
    }

    #[test]
    fn metrics_are_prometheus_text_with_escaped_labels() {
        let r = Registry::default();
        let stats = Arc::new(CaptureStats::default());
        stats.events.store(42, Ordering::Relaxed);
        r.capture("shop \"eu\"", stats);
        r.set_state("shop \"eu\"", "capture", PartState::Running);
        let text = r.metrics();
        assert!(
            text.contains("# TYPE tidewater_capture_events_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("tidewater_capture_events_total{pipeline=\"shop \\\"eu\\\"\"} 42\n"),
            "{text}"
        );
        assert!(text.contains("tidewater_up{pipeline=\"shop \\\"eu\\\"\",part=\"capture\"} 1\n"));
    }
}
