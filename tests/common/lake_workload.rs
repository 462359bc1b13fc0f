//! A seeded mixed workload on one lake table and a model of what the table
//! must hold, shared by the lake tests (plain, and with S3 faults injected).

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value as Json, json};

use tidewater::config::model::{Granularity, LakeConfig, ParquetCompression};
use tidewater::event::change::Position;
use tidewater::event::datum::{Datum, Row};
use tidewater::event::decimal::Decimal;
use tidewater::event::sample::Rng;
use tidewater::event::schema::{Column, TableSchema};
use tidewater::event::table_id::TableId;
use tidewater::event::types::ColumnType;
use tidewater::lake::bloom::DynamicBloom;
use tidewater::lake::layout::{PartitionSpec, TableLayout, event_record_key};
use tidewater::lake::metadata::Checkpoint;
use tidewater::lake::table::{Change, CommitBatch, Table, TableOptions};

use super::s3_faults::{Fault, FaultKind, S3Proxy};

const DAY: i64 = 86_400_000_000;
const START: i64 = 1_704_067_200_000_000; // 2024-01-01T00:00:00Z

pub fn shape(with_extra: bool) -> Arc<TableSchema> {
    let mut columns = vec![
        Column::new(
            "id",
            ColumnType::Int {
                bits: 64,
                signed: true,
            },
            false,
        ),
        Column::new("status", ColumnType::Text, true),
        Column::new(
            "amount",
            ColumnType::Decimal {
                precision: 12,
                scale: 2,
            },
            true,
        ),
        Column::new("created_at", ColumnType::TimestampTz, true),
        Column::new("note", ColumnType::Text, true),
    ];
    if with_extra {
        columns.push(Column::new(
            "extra",
            ColumnType::Int {
                bits: 32,
                signed: true,
            },
            true,
        ));
    }
    Arc::new(TableSchema {
        id: TableId::new("public", "orders"),
        database: "shop".into(),
        columns,
        key: vec![0],
    })
}

/// The expected table: key → (row in the latest shape, position).
#[derive(Clone)]
pub struct Model {
    pub rows: BTreeMap<String, Row>,
    pub width: usize,
}

impl Model {
    /// The row as the lake shows it: extra columns NULL when absent.
    pub fn expected(&self) -> BTreeMap<String, Json> {
        let table = shape(self.width > 5);
        self.rows
            .iter()
            .map(|(k, row)| {
                let mut obj = serde_json::Map::new();
                for (i, c) in table.columns.iter().enumerate() {
                    let d = row.get(i).cloned().unwrap_or(Datum::Null);
                    obj.insert(c.name.clone(), super::plain(&d, &c.ty));
                }
                let day = match row.get(3) {
                    Some(Datum::Micros(m)) => {
                        tidewater::event::time::date_text((m.div_euclid(DAY)) as i32)
                    }
                    _ => "__HIVE_DEFAULT_PARTITION__".into(),
                };
                obj.insert("created_at_day".into(), json!(day));
                (k.clone(), Json::Object(obj))
            })
            .collect()
    }
}

pub struct Workload {
    pub rng: Rng,
    pub commit: u64,
    pub next_id: i64,
    pub table: Table,
    pub model: Model,
    /// (instant, expected snapshot) per commit.
    pub history: Vec<(String, BTreeMap<String, Json>)>,
    pub offset: i64,
    /// Files rewritten page by page, per commit.
    pub spliced: Vec<u64>,
}

pub fn row(rng: &mut Rng, id: i64, day: i64, width: usize) -> Row {
    let mut values = vec![
        Datum::Int(id),
        Datum::Text(format!("status-{}", rng.below(5))),
        Datum::Decimal(Decimal::from_i128(
            i128::from(rng.below(1_000_000)) - 500_000,
        )),
        Datum::Micros(START + day * DAY + rng.below(DAY as u64) as i64),
        Datum::Text("x".repeat(rng.below(3000) as usize)),
    ];
    if width > 5 {
        values.push(if rng.chance(50) {
            Datum::Int(rng.below(1000) as i64)
        } else {
            Datum::Null
        });
    }
    Row(values)
}

impl Workload {
    pub async fn open(lake: &LakeConfig, seed: u64) -> Workload {
        let store = tidewater::lake::store::open(lake).unwrap();
        let table = Table::open(store, options()).await.unwrap();
        Workload {
            rng: Rng::new(seed),
            commit: 0,
            next_id: 1,
            table,
            model: Model {
                rows: BTreeMap::new(),
                width: 5,
            },
            history: Vec::new(),
            offset: 0,
            spliced: Vec::new(),
        }
    }

    fn change(
        &mut self,
        table: &Arc<TableSchema>,
        ordinal: u64,
        row: Option<Row>,
        key: i64,
    ) -> Change {
        let key_row = Row(vec![Datum::Int(key)]);
        Change {
            key: event_record_key(table, &key_row),
            position: Position::new(1_000 + self.commit, ordinal),
            row: row.map(Into::into),
            schema: table.clone(),
        }
    }

    /// One commit of `n` random changes (and optional stale replays).
    pub async fn step(&mut self, n: usize, truncate: bool) {
        self.commit += 1;
        let width = self.model.width;
        let table = shape(width > 5);
        let mut changes = Vec::new();
        let mut ordinal = 0;
        let truncate_at = truncate.then(|| Position::new(1_000 + self.commit, 0));
        if truncate {
            self.model.rows.clear();
            ordinal = 1;
        }
        let existing: Vec<String> = self.model.rows.keys().cloned().collect();
        let mut touched = std::collections::HashSet::new();
        for _ in 0..n {
            let roll = self.rng.below(100);
            let pick = (!existing.is_empty())
                .then(|| existing[self.rng.below(existing.len() as u64) as usize].clone());
            match (roll, pick) {
                (0..=39, _) | (_, None) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let day = self.rng.below(5) as i64;
                    let r = row(&mut self.rng, id, day, width);
                    self.model.rows.insert(id.to_string(), r.clone());
                    let c = self.change(&table, ordinal, Some(r), id);
                    changes.push(c);
                }
                (_, Some(key)) if touched.contains(&key) => continue,
                (40..=69, Some(key)) => {
                    // Update in place, sometimes with an unchanged TOAST note.
                    let id: i64 = key.parse().unwrap();
                    let old = self.model.rows[&key].clone();
                    let mut r = row(&mut self.rng, id, 0, width);
                    r.0[3] = old.0[3].clone();
                    let mut sent = r.clone();
                    if self.rng.chance(40) {
                        sent.0[4] = Datum::Unchanged;
                        r.0[4] = old.0[4].clone();
                    }
                    self.model.rows.insert(key.clone(), r);
                    touched.insert(key);
                    let c = self.change(&table, ordinal, Some(sent), id);
                    changes.push(c);
                }
                (70..=84, Some(key)) => {
                    // Move to another day (partition).
                    let id: i64 = key.parse().unwrap();
                    let day = 5 + self.rng.below(3) as i64;
                    let r = row(&mut self.rng, id, day, width);
                    self.model.rows.insert(key.clone(), r.clone());
                    touched.insert(key);
                    let c = self.change(&table, ordinal, Some(r), id);
                    changes.push(c);
                }
                (_, Some(key)) => {
                    let id: i64 = key.parse().unwrap();
                    self.model.rows.remove(&key);
                    touched.insert(key);
                    let c = self.change(&table, ordinal, None, id);
                    changes.push(c);
                }
            }
            ordinal += 1;
        }
        // Stale replays of older positions must change nothing.
        if self.commit > 2 {
            for key in existing.iter().take(5) {
                if touched.contains(key) {
                    continue;
                }
                let id: i64 = key.parse().unwrap();
                let replay = row(&mut self.rng, id, 0, width);
                let mut c = self.change(&table, 0, Some(replay), id);
                c.position = Position::new(1, 0);
                changes.push(c);
            }
        }
        self.offset += changes.len() as i64;
        let checkpoint = Checkpoint {
            topic: "shop.public.orders".into(),
            offsets: BTreeMap::from([(0, self.offset)]),
            ..Default::default()
        };
        let outcome = self
            .table
            .commit(CommitBatch {
                shapes: vec![table.clone()],
                changes: changes.into(),
                truncate: truncate_at,
                checkpoint: checkpoint.clone(),
                position: Some(Position::new(1_000 + self.commit, u64::MAX)),
            })
            .await
            .unwrap();
        assert_eq!(self.table.checkpoint(), Some(&checkpoint));
        self.spliced.push(outcome.files_spliced);
        self.history
            .push((outcome.instant.clone(), self.model.expected()));
    }

    /// The latest file slices read with pyarrow alone (no Hudi logic) must
    /// hold what the Hudi snapshot holds, and each file's footer must carry
    /// its true key range and a bloom filter.
    pub fn check_latest_files(&self, uri: &str, snapshot: &BTreeMap<String, Json>) {
        let files = self.table.latest_files();
        let mut args = vec!["files", uri];
        args.extend(files.iter().map(String::as_str));
        let mut rows = Vec::new();
        let mut footers = 0;
        let mut filters: BTreeMap<String, DynamicBloom> = BTreeMap::new();
        for line in self.read(&args) {
            if line.get("__footer").is_none() {
                rows.push(line);
                continue;
            }
            if let Some(text) = line["__footer"]["org.apache.hudi.bloomfilter"].as_str() {
                let file = line["__file"].as_str().unwrap();
                let name = file.rsplit('/').next().unwrap().to_string();
                let filter = DynamicBloom::from_base64(text)
                    .unwrap_or_else(|| panic!("{file}: the footer's filter does not parse"));
                filters.insert(name, filter);
            }
            let (file, footer) = (&line["__file"], &line["__footer"]);
            if line["__min"].is_null() {
                continue;
            }
            footers += 1;
            assert_eq!(footer["hoodie_min_record_key"], line["__min"], "{file}");
            assert_eq!(footer["hoodie_max_record_key"], line["__max"], "{file}");
            assert_eq!(
                footer["hoodie_bloom_filter_type_code"],
                json!("DYNAMIC_V0"),
                "{file}"
            );
            assert!(
                footer["org.apache.hudi.bloomfilter"]
                    .as_str()
                    .is_some_and(|b| b.len() > 100),
                "{file}: no bloom filter in {footer}"
            );
        }
        assert!(footers > 0, "no non-empty latest file");
        // Every key is in its file's filter (filters carried from a file's
        // previous version included).
        for row in &rows {
            let file = row["_hoodie_file_name"].as_str().unwrap();
            let key = row["_hoodie_record_key"].as_str().unwrap();
            assert!(
                filters[file].might_contain(key.as_bytes()),
                "key {key} missing from the bloom filter of {file}"
            );
        }
        // Sequence numbers as Hudi writes them, `<instant>_<task>_<row>`:
        // the row's own commit time first, then small numbers, and no two
        // rows alike.
        let mut seqnos = std::collections::BTreeSet::new();
        for row in &rows {
            let seqno = row["_hoodie_commit_seqno"].as_str().unwrap();
            let time = row["_hoodie_commit_time"].as_str().unwrap();
            let rest = seqno
                .strip_prefix(time)
                .and_then(|r| r.strip_prefix('_'))
                .unwrap_or_else(|| panic!("seqno {seqno} does not start with {time}_"));
            let (task, n) = rest
                .split_once('_')
                .unwrap_or_else(|| panic!("seqno {seqno}: no task and row number"));
            assert!(
                task.parse::<u32>().is_ok() && n.parse::<u32>().is_ok(),
                "seqno {seqno}: task and row number must be small numbers"
            );
            assert!(seqnos.insert(seqno.to_string()), "seqno {seqno} twice");
        }
        let mut latest = self.model_rows(rows);
        // Files written before a column was added lack it: readers fill NULL.
        for (k, row) in latest.iter_mut() {
            let (Some(row), Some(Json::Object(want))) = (row.as_object_mut(), snapshot.get(k))
            else {
                continue;
            };
            for column in want.keys() {
                row.entry(column.clone()).or_insert(Json::Null);
            }
        }
        assert_eq!(
            latest.len(),
            snapshot.len(),
            "pyarrow on the latest slices: row count"
        );
        for (k, v) in snapshot {
            assert_eq!(
                latest.get(k),
                Some(v),
                "pyarrow on the latest slices: row {k}"
            );
        }
    }

    pub fn read(&self, args: &[&str]) -> Vec<Json> {
        super::read_hudi(args)
    }

    /// Rows as the model shows them, keyed by record key, meta columns off.
    pub fn lake_rows(&self, args: &[&str]) -> BTreeMap<String, Json> {
        self.model_rows(self.read(args))
    }

    fn model_rows(&self, rows: Vec<Json>) -> BTreeMap<String, Json> {
        let mut out = BTreeMap::new();
        for row in rows {
            let key = row["_hoodie_record_key"].as_str().unwrap().to_string();
            let mut obj = row.as_object().unwrap().clone();
            obj.retain(|k, _| !k.starts_with("_hoodie_") && k != "_tidewater_position");
            if self.model.width == 5 {
                obj.remove("extra");
            }
            assert!(
                out.insert(key.clone(), Json::Object(obj)).is_none(),
                "key {key} twice in the table"
            );
        }
        out
    }
}

pub fn options() -> TableOptions {
    TableOptions {
        layout: TableLayout {
            name: "public_orders".into(),
            database: "shop".into(),
            partition: Some(PartitionSpec {
                column: "created_at".into(),
                granularity: Granularity::Day,
            }),
        },
        target_file_bytes: 256 * 1024,
        keep_commits: 4,
        compression: ParquetCompression::Zstd,
        writer_id: "test".into(),
    }
}

/// The clean and rollback instant files under `.hoodie/` (names sorted),
/// each decoded by fastavro: `{"schema": name, "records": [...]}`; an empty
/// file (a rollback's inflight state) decodes to `null`.
pub async fn table_service_files(store: &dyn ObjectStore) -> Vec<(String, Json)> {
    use futures::TryStreamExt;
    let listing: Vec<object_store::ObjectMeta> = store
        .list(Some(&object_store::path::Path::from(".hoodie")))
        .try_collect()
        .await
        .unwrap();
    let mut names: Vec<String> = listing
        .iter()
        .filter(|m| m.location.parts().count() == 2)
        .filter_map(|m| m.location.filename().map(str::to_string))
        .filter(|n| n.contains(".clean") || n.contains(".rollback"))
        .collect();
    names.sort();
    let dir = tempfile::tempdir().unwrap();
    let mut decoded = Vec::new();
    for name in names {
        let bytes = store
            .get(&object_store::path::Path::from(format!(".hoodie/{name}")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        if bytes.is_empty() {
            decoded.push((name, Json::Null));
            continue;
        }
        let path = dir.path().join(&name);
        std::fs::write(&path, &bytes).unwrap();
        let python = std::env::var("TIDEWATER_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/read_avro.py");
        let out = std::process::Command::new(&python)
            .arg(script)
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        assert!(
            out.status.success(),
            "read_avro.py {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        decoded.push((name, serde_json::from_slice(&out.stdout).unwrap()));
    }
    decoded
}

/// Every clean instant is complete (plan in requested and inflight, result
/// in the completed file), its plan names exactly the files it deleted, and
/// those files are gone. Returns how many cleans there were.
pub async fn check_cleans(store: &dyn ObjectStore) -> usize {
    let files = table_service_files(store).await;
    let by_name: BTreeMap<&str, &Json> = files.iter().map(|(n, j)| (n.as_str(), j)).collect();
    let mut cleans = 0;
    for (name, file) in &files {
        let Some(time) = name.strip_suffix(".clean") else {
            continue;
        };
        cleans += 1;
        let record = &file["records"][0];
        assert!(
            file["schema"]
                .as_str()
                .unwrap()
                .ends_with("HoodieCleanMetadata"),
            "{name}: {file}"
        );
        let mut deleted: Vec<String> = Vec::new();
        for partition in record["partitionMetadata"].as_object().unwrap().values() {
            for f in partition["successDeleteFiles"].as_array().unwrap() {
                deleted.push(f.as_str().unwrap().to_string());
            }
        }
        deleted.sort();
        assert!(!deleted.is_empty(), "{name} deleted nothing");
        assert_eq!(record["totalFilesDeleted"], json!(deleted.len()), "{name}");
        for state in ["requested", "inflight"] {
            let plan_name = format!("{time}.clean.{state}");
            let plan = by_name
                .get(plan_name.as_str())
                .unwrap_or_else(|| panic!("{plan_name} missing"));
            let mut planned: Vec<String> = Vec::new();
            let per_partition = plan["records"][0]["filePathsToBeDeletedPerPartition"]
                .as_object()
                .unwrap();
            for infos in per_partition.values() {
                for info in infos.as_array().unwrap() {
                    planned.push(info["filePath"].as_str().unwrap().to_string());
                }
            }
            planned.sort();
            assert_eq!(planned, deleted, "{plan_name} against {name}");
        }
        for path in &deleted {
            let head = store
                .head(&object_store::path::Path::from(path.as_str()))
                .await;
            assert!(
                matches!(head, Err(object_store::Error::NotFound { .. })),
                "{path}, deleted by {name}, is still there"
            );
        }
    }
    cleans
}

/// Queues a random S3 fault on the proxy (when there is one) before a commit.
fn maybe_fault(rng: &mut Rng, proxy: Option<&S3Proxy>) {
    let Some(proxy) = proxy else { return };
    let fault = match rng.below(7) {
        0 => Fault::new(FaultKind::Status(503))
            .method("PUT")
            .path_contains(".parquet")
            .times(2),
        1 => Fault::new(FaultKind::Status(500))
            .method("PUT")
            .path_contains(".inflight"),
        2 => Fault::new(FaultKind::StoreThenDrop)
            .method("PUT")
            .path_contains(".commit"),
        3 => Fault::new(FaultKind::StoreThenReset)
            .method("PUT")
            .path_contains("/log/"),
        4 => Fault::new(FaultKind::Status(503))
            .method("GET")
            .query_contains("list-type=2"),
        5 => Fault::new(FaultKind::StoreThenReset)
            .method("PUT")
            .path_contains(".parquet"),
        _ => Fault::new(FaultKind::Status(503))
            .method("GET")
            .path_contains(".parquet"),
    };
    proxy.inject(fault);
}

pub async fn mixed_workload(uri: String, lake: LakeConfig) {
    mixed_workload_with_faults(uri, lake, None).await;
}

/// The workload, with a random S3 fault before every commit when `proxy` is
/// the writer's endpoint (readers use the server directly).
pub async fn mixed_workload_with_faults(uri: String, lake: LakeConfig, proxy: Option<&S3Proxy>) {
    let seed = Rng::seed_from_env();
    println!("seed {seed} (replay with TIDEWATER_SEED={seed}); table {uri}");
    let mut faults = Rng::new(seed ^ 0xfa17);
    let mut w = Workload::open(&lake, seed).await;
    maybe_fault(&mut faults, proxy);
    w.step(1500, false).await;
    for _ in 0..3 {
        maybe_fault(&mut faults, proxy);
        w.step(400, false).await;
    }
    // An added column.
    w.model.width = 6;
    for row in w.model.rows.values_mut() {
        row.0.push(Datum::Null);
    }
    for entry in w.history.iter_mut() {
        for v in entry.1.values_mut() {
            v.as_object_mut()
                .unwrap()
                .insert("extra".into(), Json::Null);
        }
    }
    maybe_fault(&mut faults, proxy);
    w.step(400, false).await;
    maybe_fault(&mut faults, proxy);
    w.step(300, false).await;

    // Rewrites went page by page (`lake::splice`), but the one that added
    // the column: every file it wrote has the new schema, and the next
    // commit splices them again.
    let spliced = &w.spliced;
    assert_eq!(spliced.len(), 6, "{spliced:?}");
    assert_eq!(spliced.get(4), Some(&0), "the added column: {spliced:?}");
    assert!(
        spliced.get(1..4).unwrap().iter().all(|n| *n > 0) && spliced.get(5) > Some(&0),
        "seed {seed}: files spliced per commit {spliced:?}"
    );

    // Snapshot equals the model, row by row.
    let snapshot = w.lake_rows(&["snapshot", &uri]);
    let expected = w.model.expected();
    assert_eq!(snapshot.len(), expected.len(), "seed {seed}: row count");
    for (k, v) in &expected {
        assert_eq!(snapshot.get(k), Some(v), "seed {seed}: row {k}");
    }
    w.check_latest_files(&uri, &snapshot);
    // Time travel to every retained commit.
    let retained = w.history.len() - 4;
    for (instant, state) in w.history.iter().skip(retained) {
        let rows = w.lake_rows(&["as_of", &uri, instant]);
        assert_eq!(&rows, state, "seed {seed}: as of {instant}");
    }
    // Incremental: rows written after the second-to-last commit.
    let (before, _) = &w.history[w.history.len() - 2];
    let (last, _) = &w.history[w.history.len() - 1];
    let incremental = w.read(&["incremental", &uri, before, last]);
    assert!(!incremental.is_empty());
    for row in &incremental {
        assert_eq!(
            row["_hoodie_commit_time"],
            json!(last),
            "only rows of the last commit"
        );
        let key = row["_hoodie_record_key"].as_str().unwrap();
        assert!(expected.contains_key(key));
    }
    // A truncate empties the table; later changes survive.
    maybe_fault(&mut faults, proxy);
    w.step(50, true).await;
    let snapshot = w.lake_rows(&["snapshot", &uri]);
    let expected = w.model.expected();
    assert_eq!(snapshot, expected, "seed {seed}: after truncate");
    // Reopening finds the same state, checkpoint and key index.
    let store = tidewater::lake::store::open(&lake).unwrap();
    let reopened = Table::open(store, options()).await.unwrap();
    assert_eq!(reopened.checkpoint(), w.table.checkpoint());
    assert_eq!(reopened.row_count(), expected.len() as u64);
    // Cleans are recorded as Hudi records them, readable by fastavro.
    let store = tidewater::lake::store::open(&lake).unwrap();
    let cleans = check_cleans(store.as_ref()).await;
    assert!(
        cleans > 0,
        "seed {seed}: 9 commits keeping 4 clean at least once"
    );
}

/// A commit that crashed after writing a base file (requested and inflight
/// instants, a marker, the file) and a clean that crashed after planning:
/// opening the table rolls the commit back under a rollback instant that
/// fastavro reads, drops the pending clean, and readers see the committed
/// rows only.
pub async fn failed_commit_is_rolled_back(uri: String, lake: LakeConfig) {
    use object_store::path::Path;
    use tidewater::lake::timeline::{next_instant, now_millis};
    let mut w = Workload::open(&lake, 7).await;
    w.step(200, false).await;
    w.step(100, false).await;
    let store = tidewater::lake::store::open(&lake).unwrap();
    let last = w.history.last().unwrap().0.clone();
    let failed = next_instant(now_millis(), Some(&last));
    let stale_clean = next_instant(now_millis(), Some(&failed));
    let committed = w.table.latest_files()[0].clone();
    let (stem, _) = committed.rsplit_once('_').unwrap();
    let orphan = format!("{stem}_{failed}.parquet");
    let bytes = store
        .get(&Path::from(committed.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let put = |path: String, body: Vec<u8>| {
        let store = store.clone();
        async move {
            store.put(&Path::from(path), body.into()).await.unwrap();
        }
    };
    put(orphan.clone(), bytes.to_vec()).await;
    put(format!(".hoodie/{failed}.commit.requested"), Vec::new()).await;
    put(format!(".hoodie/{failed}.inflight"), Vec::new()).await;
    put(
        format!(".hoodie/.temp/{failed}/MARKERS0"),
        format!("{orphan}.marker.CREATE\n").into_bytes(),
    )
    .await;
    put(
        format!(".hoodie/{stale_clean}.clean.requested"),
        b"planned, then crashed".to_vec(),
    )
    .await;

    let reopened = Table::open(store.clone(), options()).await.unwrap();
    assert_eq!(reopened.row_count(), w.model.rows.len() as u64);
    for gone in [
        orphan.clone(),
        format!(".hoodie/{failed}.commit.requested"),
        format!(".hoodie/{failed}.inflight"),
        format!(".hoodie/.temp/{failed}/MARKERS0"),
        format!(".hoodie/{stale_clean}.clean.requested"),
    ] {
        assert!(
            matches!(
                store.head(&Path::from(gone.as_str())).await,
                Err(object_store::Error::NotFound { .. })
            ),
            "{gone} survived recovery"
        );
    }
    let files = table_service_files(store.as_ref()).await;
    let rollbacks: Vec<&(String, Json)> = files
        .iter()
        .filter(|(n, _)| n.contains(".rollback"))
        .collect();
    let names: Vec<&str> = rollbacks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 3, "one rollback in three states: {names:?}");
    let time = names[0].split('.').next().unwrap();
    assert!(time > failed.as_str(), "rollback {time} after {failed}");
    assert_eq!(
        names,
        [
            format!("{time}.rollback"),
            format!("{time}.rollback.inflight"),
            format!("{time}.rollback.requested"),
        ]
    );
    let (_, completed) = rollbacks[0];
    let (_, inflight) = rollbacks[1];
    let (_, plan) = rollbacks[2];
    assert_eq!(*inflight, Json::Null, "an empty inflight rollback");
    assert!(
        plan["schema"]
            .as_str()
            .unwrap()
            .ends_with("HoodieRollbackPlan"),
        "{plan}"
    );
    let plan = &plan["records"][0];
    assert_eq!(plan["instantToRollback"]["commitTime"], json!(failed));
    let planned: Vec<&Json> = plan["RollbackRequests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["filesToBeDeleted"].as_array().unwrap())
        .collect();
    assert_eq!(planned, [&json!(orphan)]);
    assert!(
        completed["schema"]
            .as_str()
            .unwrap()
            .ends_with("HoodieRollbackMetadata"),
        "{completed}"
    );
    let record = &completed["records"][0];
    assert_eq!(record["commitsRollback"], json!([failed]));
    assert_eq!(record["totalFilesDeleted"], json!(1));
    let deleted: Vec<&Json> = record["partitionMetadata"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p["successDeleteFiles"].as_array().unwrap())
        .collect();
    assert_eq!(deleted, [&json!(orphan)]);

    let snapshot = w.lake_rows(&["snapshot", &uri]);
    assert_eq!(snapshot, w.model.expected());
    // The next commit goes on after the rollback.
    w.table = reopened;
    w.step(50, false).await;
    assert_eq!(w.lake_rows(&["snapshot", &uri]), w.model.expected());
}
