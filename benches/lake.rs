//! Lake upsert ("lake mix", BENCHMARKS.md): apply a batch of 1M changes (60%
//! updates spread over 90 daily partitions, 30% inserts, 10% deletes) to a
//! 10M-row table, side by side with `deltalake` (delta-rs) `merge` of the same
//! changes into the same data, and DuckDB rewriting the affected partitions
//! (the lower bound on work), all in one run on the same files. It also
//! measures the floor of a copy-on-write rewrite through the Arrow Parquet
//! writer (the one delta-rs uses): decoding and encoding every base file
//! again with nothing merged. tidewater's apply splices most columns page by
//! page instead (`lake::splice`), so it can go below that floor.
//!
//!   cargo bench --bench lake
//!   BENCH_ROWS=1000000 BENCH_CHANGES=100000 cargo bench --bench lake   # smaller
//!   BENCH_REPEATS=1 cargo bench --bench lake                            # one round
//!   BENCH_SETTLE_SECONDS=0 cargo bench --bench lake                     # no waiting
//!
//! Data comes from `benches/lake_peers.py generate` (deterministic, seed 42)
//! under `BENCH_DIR` (default /tmp/lakebench). Each timed part runs in a fresh
//! child process so its peak RSS is its own, after a `sync` (every side's,
//! the peers' too), so that the kernel's write-back of the previous step's
//! files does not fall in its clock, and after `BENCH_SETTLE_SECONDS`
//! (default 30) of waiting, so that every side starts on memory in the same
//! state ([`settle`]). In that process each side applies the batch twice:
//! to the table as loaded (the headline figures: a fresh process), then to
//! a second copy of it (a process that already holds the memory, as a
//! running sink or a long-lived merge job does). The three sides run
//! `BENCH_REPEATS` times (default 3) in turn, tidewater's on fresh copies
//! of the table as loaded each time; the figures are the medians, and each
//! round's own ratio is printed too. Every result of every side is checked
//! against the same fingerprint in every round. Not a pass/fail test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "benchmark glue"
)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/orders.rs"]
mod orders;
#[path = "common/proc.rs"]
mod proc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use arrow_array::{Array, RecordBatch, StringArray};
use serde_json::{Value as Json, json};

use tidewater::config::model::{Granularity, LakeConfig, ParquetCompression};
use tidewater::event::change::Position;
use tidewater::event::datum::{Datum, Row};
use tidewater::event::schema::TableSchema;
use tidewater::event::table_id::TableId;
use tidewater::event::types::ColumnType;
use tidewater::lake::batch::datum_at;
use tidewater::lake::layout::{PartitionSpec, TableLayout, event_record_key};
use tidewater::lake::metadata::Checkpoint;
use tidewater::lake::table::{Change, CommitBatch, Table, TableOptions};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Waits `seconds` before a timed side starts, so that every side starts
/// from the same state of the machine's memory. On this VM the guest
/// reports free memory back to the host (virtio-balloon free page
/// reporting) a few seconds after it is freed, and memory first touched
/// after that is faulted in by the host too: 2.3 s a GB against 0.08 s a
/// GB for memory freed a moment before (measured with numpy, touching 1 GB
/// after freeing 4 GB and sleeping 0 to 16 s). Without the wait a side that
/// follows a step that freed gigabytes (delta-rs's merge follows its load)
/// runs on memory the host still backs, and one that follows a copy
/// (tidewater's apply) does not.
fn settle(seconds: f64) {
    if seconds > 0.0 {
        eprintln!("settling for {seconds} s (BENCH_SETTLE_SECONDS)");
        std::thread::sleep(std::time::Duration::from_secs_f64(seconds));
    }
}

fn python() -> String {
    env_or("TIDEWATER_PYTHON", "/root/.cache/tidewater/venv/bin/python")
}

/// `benches/lake_peers.py <what> --dir <data>`, to take more arguments.
fn peers(what: &str, data: &Path) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/lake_peers.py");
    let mut command = Command::new(python());
    command
        .arg(script)
        .args([what, "--dir", data.to_str().unwrap()]);
    command
}

fn options() -> TableOptions {
    TableOptions {
        layout: TableLayout {
            name: "orders".into(),
            database: "bench".into(),
            partition: Some(PartitionSpec {
                column: "created_at".into(),
                granularity: Granularity::Day,
            }),
        },
        target_file_bytes: 128 * 1024 * 1024,
        keep_commits: 10,
        compression: ParquetCompression::Snappy,
        writer_id: "bench".into(),
    }
}

fn lake_config(dir: &Path) -> LakeConfig {
    LakeConfig::with_uri(format!("file://{}", dir.display()))
}

async fn open(dir: &Path) -> Table {
    let lake = lake_config(dir);
    Table::open(tidewater::lake::store::open(&lake).unwrap(), options())
        .await
        .unwrap()
}

/// Rows of parquet files as changes (`op` column: c/u/d; base files: all c).
fn read_changes(files: &[PathBuf], table: &Arc<TableSchema>, base: bool) -> Vec<Change> {
    let mut out = Vec::new();
    for (f, file) in files.iter().enumerate() {
        each_change(file, f, table, base, |_, c| out.push(c));
    }
    out
}

/// Calls `put` with the row number and change of each row of one file.
/// The file is decoded a batch of rows at a time, as a sink decodes its
/// messages: a whole file of 250k rows decoded at once would take about
/// 90 MB of fresh memory per thread.
fn each_change(
    file: &Path,
    f: usize,
    table: &Arc<TableSchema>,
    base: bool,
    mut put: impl FnMut(usize, Change),
) {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(file).unwrap(),
    )
    .unwrap()
    .with_batch_size(8192)
    .build()
    .unwrap();
    let mut first = 0;
    for batch in reader {
        let batch: RecordBatch = batch.unwrap();
        each_row(&batch, first, f, table, base, &mut put);
        first += batch.num_rows();
    }
}

/// The rows of one batch of a file, `first` the number of its first row.
fn each_row(
    batch: &RecordBatch,
    first: usize,
    f: usize,
    table: &Arc<TableSchema>,
    base: bool,
    put: &mut impl FnMut(usize, Change),
) {
    let column = |name: &str| batch.column_by_name(name).unwrap().clone();
    let cols: Vec<_> = table.columns.iter().map(|c| column(&c.name)).collect();
    let ops = (!base).then(|| column("op"));
    let positions = (!base).then(|| column("position"));
    for r in 0..batch.num_rows() {
        let op = ops.as_ref().map_or("c", |o| {
            o.as_any().downcast_ref::<StringArray>().unwrap().value(r)
        });
        let values: Vec<Datum> = table
            .columns
            .iter()
            .zip(&cols)
            .map(|(c, a)| datum_at(a.as_ref(), r, &c.ty).unwrap())
            .collect();
        let row = Row(values);
        let key = event_record_key(table, &Row(vec![row.0[0].clone()]));
        let n = first + r;
        let position = match &positions {
            Some(p) => Position::new(
                2,
                datum_at(
                    p.as_ref(),
                    r,
                    &ColumnType::Int {
                        bits: 64,
                        signed: true,
                    },
                )
                .map_or(0, |d| match d {
                    Datum::Int(i) => i as u64,
                    _ => 0,
                }),
            ),
            None => Position::new(1, ((f as u64) << 32) | n as u64),
        };
        put(
            n,
            Change {
                key,
                position,
                row: (op != "d").then(|| row.into()),
                schema: table.clone(),
            },
        );
    }
}

/// The change files read on every core into one vector, each file's
/// changes at their place in it (row counts from the footers): the
/// changes are never moved from one vector to another.
fn read_change_files(files: &[PathBuf], table: &Arc<TableSchema>) -> Vec<Change> {
    let rows: Vec<usize> = files
        .iter()
        .map(|f| {
            let file = std::fs::File::open(f).unwrap();
            let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
            parquet::file::reader::FileReader::metadata(&reader)
                .file_metadata()
                .num_rows() as usize
        })
        .collect();
    let mut slots: Vec<Option<Change>> = Vec::new();
    slots.resize_with(rows.iter().sum(), || None);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_thread = files.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let mut rest: &mut [Option<Change>] = &mut slots;
        let mut first = 0;
        for part in files.chunks(per_thread) {
            let n: usize = rows[first..first + part.len()].iter().sum();
            let (mine, others) = rest.split_at_mut(n);
            rest = others;
            let counts = &rows[first..first + part.len()];
            let start = first;
            first += part.len();
            scope.spawn(move || {
                let mut at = 0;
                for (i, (file, count)) in part.iter().zip(counts).enumerate() {
                    let out = &mut mine[at..at + count];
                    each_change(file, start + i, table, false, |r, c| out[r] = Some(c));
                    at += count;
                }
            });
        }
    });
    // Same size as `Change`: collected in place.
    slots.into_iter().map(|c| c.unwrap()).collect()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

/// Child: load base/ into a fresh table, ten partitions per commit.
async fn child_load(data: &Path, out: &Path) {
    let _ = std::fs::remove_dir_all(out);
    let start = Instant::now();
    let table_schema = orders::orders(TableId::new("public", "orders"), "bench");
    let mut table = open(out).await;
    let files = files_in(&data.join("base"));
    for (i, chunk) in files.chunks(10).enumerate() {
        let changes = read_changes(chunk, &table_schema, true);
        table
            .commit(CommitBatch {
                shapes: vec![table_schema.clone()],
                changes: changes.into(),
                truncate: None,
                checkpoint: Checkpoint {
                    topic: "load".into(),
                    offsets: BTreeMap::from([(0, i as i64)]),
                    ..Default::default()
                },
                position: None,
            })
            .await
            .unwrap();
    }
    println!(
        "{}",
        json!({"seconds": start.elapsed().as_secs_f64(), "rows": table.row_count(), "files": table.file_group_count(), "peak_rss_mb": proc::peak_rss_mb(None)})
    );
}

/// Child: the floor of a rewrite. Every base file of the table (as loaded,
/// before the apply) is read, decoded and encoded again with the same
/// writer and settings as a commit, on as many threads as its file jobs
/// get, with no change merged in and nothing written. A copy-on-write
/// apply that rewrites every file group through the Arrow writer cannot
/// take less than this.
fn child_floor(out: &Path) {
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let dir = entry.unwrap().path();
        if dir.is_dir() && !dir.ends_with(".hoodie") {
            files.extend(files_in(&dir));
        }
    }
    let first = bytes::Bytes::from(std::fs::read(&files[0]).unwrap());
    let schema = tidewater::lake::files::decode(first).unwrap().schema();
    let views = tidewater::lake::batch::view_schema(&schema);
    // As a commit encodes this table's files.
    let table = orders::orders(TableId::new("public", "orders"), "bench");
    let encoding = tidewater::lake::files::Encoding::of(
        options().compression,
        &tidewater::lake::layout::LakeSchema::from_table(&table).unwrap(),
    );
    let cpu0 = proc::cpu_seconds(None);
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let written = AtomicUsize::new(0);
    // As many threads as a commit's file jobs get.
    std::thread::scope(|scope| {
        for _ in 0..tidewater::lake::cpu::threads() {
            scope.spawn(|| {
                while let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let bytes = bytes::Bytes::from(std::fs::read(file).unwrap());
                    let (batch, bloom) = tidewater::lake::files::decode_base_file(bytes).unwrap();
                    let batch = batch.with_schema(views.clone()).unwrap();
                    let encoded =
                        tidewater::lake::files::encode(&schema, &[batch], &encoding, bloom)
                            .unwrap();
                    written.fetch_add(encoded.len(), Ordering::Relaxed);
                }
            });
        }
    });
    println!(
        "{}",
        json!({
            "seconds": start.elapsed().as_secs_f64(),
            "cpu_seconds": proc::cpu_seconds(None) - cpu0,
            "files": files.len(),
            "bytes": written.into_inner(),
            "peak_rss_mb": proc::peak_rss_mb(None),
        })
    );
}

/// Child: apply changes/ in one commit to the table in `out` (the timed
/// part); with `second`, then the same changes to that copy of the table
/// in the same process, as a running sink applies its next batch: with the
/// memory the process already holds (the daemon keeps what it freed, see
/// `tidewater::alloc`). The second result is under `"second"`.
async fn child_apply(data: &Path, out: &Path, second: Option<&Path>) {
    let mut first = apply_once(data, out, true).await;
    if let Some(second) = second {
        first["second"] = apply_once(data, second, false).await;
    }
    println!("{first}");
}

/// Opens the table in `out` and, with `start`, reserves the sink's buffer
/// memory as a sink's start does (neither timed), then reads changes/ and
/// applies them in one commit (timed).
async fn apply_once(data: &Path, out: &Path, start: bool) -> Json {
    let table_schema = orders::orders(TableId::new("public", "orders"), "bench");
    let opening = Instant::now();
    let read_before = proc::read_chars(None);
    let mut table = open(out).await;
    let open_seconds = opening.elapsed().as_secs_f64();
    let open_read_mb = proc::read_chars(None).saturating_sub(read_before) as f64 / 1e6;
    let index_at_open = table.index_size();
    let reserving = Instant::now();
    let reserved = start
        .then(|| tidewater::pipeline::sink::reserve_buffer(&lake_config(out)))
        .flatten()
        .is_some();
    let reserve_seconds = reserving.elapsed().as_secs_f64();
    eprintln!(
        "apply: table open, RSS {:.0} MB (peak {:.0} MB)",
        proc::rss_mb(None),
        proc::peak_rss_mb(None)
    );
    let cpu0 = proc::cpu_seconds(None);
    let clock = Instant::now();
    // The changes arrive decoded in a running sink; here they are read
    // from parquet, one thread per core.
    let changes = read_change_files(&files_in(&data.join("changes")), &table_schema);
    let read_seconds = clock.elapsed().as_secs_f64();
    eprintln!(
        "apply: changes read, RSS {:.0} MB (peak {:.0} MB)",
        proc::rss_mb(None),
        proc::peak_rss_mb(None)
    );
    let n = changes.len() as u64;
    let outcome = table
        .commit(CommitBatch {
            shapes: vec![table_schema.clone()],
            changes: changes.into(),
            truncate: None,
            checkpoint: Checkpoint {
                topic: "apply".into(),
                offsets: BTreeMap::from([(0, 1)]),
                ..Default::default()
            },
            position: None,
        })
        .await
        .unwrap();
    let seconds = clock.elapsed().as_secs_f64();
    json!({
        "seconds": seconds,
        "reserved": reserved,
        "reserve_seconds": reserve_seconds,
        "read_changes_seconds": read_seconds,
        "open_seconds": open_seconds,
        "open_read_mb": open_read_mb,
        "index_keys": index_at_open.0,
        "index_mb": index_at_open.1 as f64 / 1e6,
        "cpu_seconds": proc::cpu_seconds(None) - cpu0,
        "peak_rss_mb": proc::peak_rss_mb(None),
        "bytes_written": outcome.bytes_written,
        "files_written": outcome.files_written,
        "rows_carried": outcome.rows_carried,
        "files_spliced": outcome.files_spliced,
        "inserted": outcome.inserted, "updated": outcome.updated, "deleted": outcome.deleted,
        "changes": n,
        "result_rows": table.row_count(),
        "latest_files": table.latest_files(),
    })
}

fn run_json(cmd: &mut Command) -> Json {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.lines().last().unwrap_or("{}")).unwrap()
}

/// One peer's result in a round.
type Side = fn(&Round) -> &Json;

/// One round of the benchmark: each side's result, and whether tidewater's
/// table matched the expected content.
struct Round {
    ours: Json,
    ours_ok: bool,
    duck: Json,
    delta: Json,
}

fn main() {
    // The allocator's options as the daemon runs with them (see
    // `tidewater::alloc`); the children inherit them.
    if let Some(reason) = tidewater::alloc::reexec_with_allocator_options() {
        eprintln!("running with the allocator's default options: {reason}");
    }
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench" || a == "--child") {
        // `cargo test --all-targets` runs bench binaries without `--bench`:
        // a benchmark is not a test, so it does nothing there.
        println!("lake benchmark: run it with `cargo bench --bench lake`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let (what, data, out) = (
            &args[i + 1],
            PathBuf::from(&args[i + 2]),
            PathBuf::from(&args[i + 3]),
        );
        match what.as_str() {
            "load" => runtime.block_on(child_load(&data, &out)),
            "apply" => {
                let second = args.get(i + 4).map(PathBuf::from);
                runtime.block_on(child_apply(&data, &out, second.as_deref()))
            }
            "floor" => child_floor(&out),
            other => panic!("unknown child {other}"),
        }
        return;
    }
    let data = PathBuf::from(env_or("BENCH_DIR", "/tmp/lakebench"));
    let rows = env_or("BENCH_ROWS", "10000000");
    let changes = env_or("BENCH_CHANGES", "1000000");
    let meta: Option<Json> = std::fs::read(data.join("meta.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let fresh = meta.as_ref().is_some_and(|m| {
        m["rows"].as_u64().map(|v| v.to_string()) == Some(rows.clone())
            && m["changes"].as_u64().map(|v| v.to_string()) == Some(changes.clone())
    });
    if !fresh {
        eprintln!(
            "generating {rows} rows and {changes} changes in {}",
            data.display()
        );
        let status = peers("generate", &data)
            .args([
                "--rows",
                &rows,
                "--changes",
                &changes,
                "--partitions",
                "90",
                "--seed",
                "42",
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let meta: Json =
        serde_json::from_slice(&std::fs::read(data.join("meta.json")).unwrap()).unwrap();
    let change_bytes = meta["change_bytes"].as_f64().unwrap();
    let n_changes = meta["changes"].as_f64().unwrap();
    let me = std::env::current_exe().unwrap();
    let hudi = data.join("hudi");

    let hudi2 = data.join("hudi-second");
    let settle_seconds: f64 = env_or("BENCH_SETTLE_SECONDS", "30").parse().unwrap();
    let child = |what: &str, timed: bool| {
        // Each timed side starts with the previous step's writes on disk,
        // not flushed by the kernel under its clock, and with the memory
        // the previous steps freed given back to the host (the peers do
        // the same).
        assert!(Command::new("sync").status().unwrap().success());
        if timed {
            settle(settle_seconds);
        }
        let mut command = Command::new(&me);
        command.args([
            "--child",
            what,
            data.to_str().unwrap(),
            hudi.to_str().unwrap(),
        ]);
        if what == "apply" {
            command.arg(&hudi2);
        }
        run_json(&mut command)
    };
    eprintln!("loading the base table into a Hudi table (not timed)");
    let load = child("load", false);
    eprintln!("the floor: decoding and encoding every base file again, no merge");
    let floor = child("floor", true);
    // Each side runs `BENCH_REPEATS` times, the three sides in turn, each
    // time on the same table as loaded: single runs on this machine swing
    // by a fifth, so the figures are the medians.
    let repeats: usize = env_or("BENCH_REPEATS", "3")
        .parse::<usize>()
        .unwrap()
        .max(1);
    let pristine = data.join("hudi-as-loaded");
    let copy = |from: &Path, to: &Path| {
        let _ = std::fs::remove_dir_all(to);
        let status = Command::new("cp").arg("-a").arg(from).arg(to).status();
        assert!(status.unwrap().success());
    };
    if repeats > 1 {
        copy(&hudi, &pristine);
    }
    let mut rounds: Vec<Round> = Vec::new();
    for round in 0..repeats {
        if round > 0 {
            copy(&pristine, &hudi);
        }
        copy(&hudi, &hudi2);
        eprintln!(
            "round {} of {repeats}: tidewater applying the changes (twice in one process)",
            round + 1
        );
        let ours = child("apply", true);
        let verify = |result: &Json, table: &Path| {
            let list = data.join("hudi-latest-files.txt");
            let files: Vec<String> = result["latest_files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| table.join(f.as_str().unwrap()).display().to_string())
                .collect();
            std::fs::write(&list, files.join("\n")).unwrap();
            let verified = peers("verify", &data)
                .args(["--files-from", list.to_str().unwrap()])
                .output()
                .unwrap();
            verified.status.success()
        };
        let ours_ok = verify(&ours, &hudi) && verify(&ours["second"], &hudi2);
        eprintln!("round {} of {repeats}: peers duckdb, delta-rs", round + 1);
        let peer = |name: &str| run_json(peers("run", &data).args(["--peer", name]));
        let duck = peer("duckdb");
        let delta = peer("delta");
        rounds.push(Round {
            ours,
            ours_ok,
            duck,
            delta,
        });
    }
    let _ = std::fs::remove_dir_all(&pristine);
    let _ = std::fs::remove_dir_all(&hudi2);
    let median = |f: &dyn Fn(&Round) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let most = |f: &dyn Fn(&Round) -> f64| rounds.iter().map(f).fold(0.0, f64::max);
    let secs = |j: &Json| j["seconds"].as_f64().unwrap();
    let ours_secs = median(&|r| secs(&r.ours));
    let delta_secs = median(&|r| secs(&r.delta));
    let duck_secs = median(&|r| secs(&r.duck));
    let ours = &rounds[0].ours;
    let ours_ok = rounds.iter().all(|r| r.ours_ok);
    let ours_rewritten = ours["rows_carried"].as_f64().unwrap()
        + ours["inserted"].as_f64().unwrap()
        + ours["updated"].as_f64().unwrap();
    println!(
        "lake upsert benchmark: {} rows, {} changes (60% updates over 90 daily partitions, 30% inserts, 10% deletes); change data {:.1} MB",
        meta["rows"],
        meta["changes"],
        change_bytes / 1e6
    );
    println!(
        "{:<34} {:>9} {:>12} {:>12} {:>10} {:>12} {:>8} {:>9}",
        "side",
        "seconds",
        "peak RSS MB",
        "written MB",
        "write amp",
        "rows/change",
        "files",
        "correct"
    );
    let row =
        |name: &str, secs: f64, rss: f64, written: f64, rewritten: f64, files: f64, ok: bool| {
            println!(
                "{:<34} {:>9.2} {:>12.0} {:>12.1} {:>10.2} {:>12.1} {:>8.0} {:>9}",
                name,
                secs,
                rss,
                written / 1e6,
                written / change_bytes,
                rewritten / n_changes,
                files,
                ok
            );
        };
    row(
        "tidewater (Hudi CoW, one commit)",
        ours_secs,
        most(&|r| r.ours["peak_rss_mb"].as_f64().unwrap()),
        ours["bytes_written"].as_f64().unwrap(),
        ours_rewritten,
        ours["files_written"].as_f64().unwrap(),
        ours_ok,
    );
    let sides: [(&str, f64, Side); 2] = [
        ("delta-rs merge (deltalake)", delta_secs, |r| &r.delta),
        ("DuckDB partition rewrite (bound)", duck_secs, |r| &r.duck),
    ];
    for (name, seconds, side) in sides {
        let peer = side(&rounds[0]);
        row(
            name,
            seconds,
            most(&|r| side(r)["peak_rss_mb"].as_f64().unwrap()),
            peer["bytes_written"].as_f64().unwrap(),
            peer["rows_rewritten"].as_f64().unwrap(),
            peer["files_written"].as_f64().unwrap(),
            rounds
                .iter()
                .all(|r| side(r)["verified"].as_bool().unwrap_or(false)),
        );
    }
    println!(
        "seconds and peak RSS: the median and the largest of {repeats} rounds (each side once a round, in turn, in a fresh process started {settle_seconds} s after the step before it)"
    );
    for (i, r) in rounds.iter().enumerate() {
        let (o, ok, du, de) = (&r.ours, r.ours_ok, &r.duck, &r.delta);
        println!(
            "  round {}: tidewater {:.2} s ({:.1} CPU s, correct: {ok}), delta-rs {:.2} s ({:.1} CPU s), DuckDB {:.2} s: {:.2}x delta-rs",
            i + 1,
            secs(o),
            o["cpu_seconds"].as_f64().unwrap(),
            secs(de),
            de["cpu_seconds"].as_f64().unwrap(),
            secs(du),
            secs(de) / secs(o)
        );
    }
    println!(
        "speed-up over delta-rs merge (medians): {:.2}x; over the DuckDB bound: {:.2}x; median of the rounds' own ratios: {:.2}x",
        delta_secs / ours_secs,
        duck_secs / ours_secs,
        median(&|r| secs(&r.delta) / secs(&r.ours))
    );
    // A sink touches its buffer memory when it starts (untimed above, like
    // opening the table); counted in, the first batch is this.
    let reserve_secs = median(&|r| r.ours["reserve_seconds"].as_f64().unwrap());
    let with_reserve = median(&|r| secs(&r.ours) + r.ours["reserve_seconds"].as_f64().unwrap());
    println!(
        "tidewater's start, untimed: the buffer memory {} in {:.2} s (median); the first batch with that counted in: {:.2} s, {:.2}x delta-rs",
        if rounds
            .iter()
            .all(|r| r.ours["reserved"].as_bool() == Some(true))
        {
            "reserved"
        } else {
            "NOT reserved (MIMALLOC_PURGE_DELAY is not -1)"
        },
        reserve_secs,
        with_reserve,
        delta_secs / with_reserve
    );
    let again = |j: &Json| j["second"]["seconds"].as_f64().unwrap();
    let rounds_again: Vec<String> = rounds
        .iter()
        .map(|r| format!("{:.2}x", again(&r.delta) / again(&r.ours)))
        .collect();
    println!(
        "second batch in the same process (each side applies the same changes to a second copy of the table as loaded, right after the first, with the memory its process already holds), medians: tidewater {:.2} s ({:.1} CPU s), delta-rs {:.2} s ({:.1} CPU s), DuckDB {:.2} s: {:.2}x delta-rs (rounds {})",
        median(&|r| again(&r.ours)),
        median(&|r| r.ours["second"]["cpu_seconds"].as_f64().unwrap()),
        median(&|r| again(&r.delta)),
        median(&|r| r.delta["second"]["cpu_seconds"].as_f64().unwrap()),
        median(&|r| again(&r.duck)),
        median(&|r| again(&r.delta)) / median(&|r| again(&r.ours)),
        rounds_again.join(", ")
    );
    println!(
        "Arrow floor (decode + encode every base file again through the Arrow writer, no merge, {} files): {:.2} s, {:.1} CPU seconds; tidewater's apply is {:.2}x that floor",
        floor["files"],
        floor["seconds"].as_f64().unwrap(),
        floor["cpu_seconds"].as_f64().unwrap(),
        ours_secs / floor["seconds"].as_f64().unwrap()
    );
    // An apply that merged for free would still read the changes and
    // rewrite every file: the most a copy-on-write apply through the Arrow
    // writer could gain over delta-rs in this run (splicing is not bound
    // by it).
    let read_secs = median(&|r| r.ours["read_changes_seconds"].as_f64().unwrap());
    let ceiling_seconds = floor["seconds"].as_f64().unwrap() + read_secs;
    println!(
        "Arrow ceiling: delta-rs merge / (Arrow floor + reading the change files, {:.2} s) = {:.2}x; files spliced page by page: {} of {}",
        ceiling_seconds,
        delta_secs / ceiling_seconds,
        ours["files_spliced"],
        ours["files_written"]
    );
    println!(
        "tidewater (medians): {:.2} s reading the change files, {:.1} CPU seconds; opening the table (untimed: its key index of {} keys, {:.0} MB, read from {:.0} MB of the files in round 1) {:.2} s (median); base load (untimed) {:.1} s, peak RSS {:.0} MB",
        read_secs,
        median(&|r| r.ours["cpu_seconds"].as_f64().unwrap()),
        ours["index_keys"],
        ours["index_mb"].as_f64().unwrap(),
        ours["open_read_mb"].as_f64().unwrap(),
        median(&|r| r.ours["open_seconds"].as_f64().unwrap()),
        load["seconds"].as_f64().unwrap(),
        load["peak_rss_mb"].as_f64().unwrap()
    );
}
