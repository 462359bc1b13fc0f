#!/usr/bin/env python3
"""Lake-upsert peers for tidewater's "lake mix" benchmark (see shared/BENCHMARKS.md).

Generates the orders table and a change batch deterministically from a seed, and
applies the batch with the peers a user would pick instead of tidewater:

  generate  --dir D --rows N --changes M --partitions P --seed S
  run       --dir D --peer delta|duckdb [--variant ...] [--no-verify]
  expect    --dir D                      expected {rows, fingerprint} after the batch
  verify    --dir D --files F...         fingerprint of a result given as parquet files

Data layout written by `generate` (all parquet, snappy):

  D/base/part-PPPPP-YYYY-MM-DD.parquet   one file per partition (day), rows sorted by id,
                                         ids of a day are one contiguous range
  D/changes/part-CCCCC.parquet           the batch in `position` order: concatenating the
                                         files in name order gives positions 1..M
  D/meta.json                            sizes, counts, seed, byte sizes

Columns of base: id int64, customer_id int64, status string, amount decimal(12,2),
created_at timestamp[us, tz=UTC], payload string (JSON text), created_at_day string.
Changes have the same columns plus op string ('u', 'c', 'd') and position int64.
Each id appears at most once in a batch; deletes carry id, created_at and
created_at_day only (other data columns null).

Each `run` prints one JSON object on stdout; progress goes to stderr. The timed
part runs in a fresh child process (this same script) so its peak RSS
(ru_maxrss) is not inflated by loading or generation, started --settle seconds
(BENCH_SETTLE_SECONDS, default 30) after the step before it, as every side of
benches/lake.rs is, so that the memory the steps before freed is back with the
host (see `settle` in benches/lake.rs). That process applies the batch twice:
to the table as loaded (the figures at the top of the JSON), then to a copy of it
(under "second": a process that already holds its memory). Both results are
checked.

Needs pyarrow, numpy, duckdb, deltalake (the tidewater venv).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DATA_COLS = ["id", "customer_id", "status", "amount", "created_at", "payload", "created_at_day"]
STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled", "refunded"]
CHANNELS = ["web", "app", "store", "phone"]
DAY_US = 86_400 * 1_000_000
EPOCH_DAY0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
DAY0_US = int(EPOCH_DAY0.timestamp()) * 1_000_000
CHANGE_ROWS_PER_FILE = 250_000
FINGERPRINT_SQL = (
    "count(*)::BIGINT AS rows, "
    "sum(hash(id, customer_id, status, amount, created_at, payload, created_at_day))::HUGEINT::VARCHAR "
    "AS fingerprint"
)

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("customer_id", pa.int64()),
        ("status", pa.string()),
        ("amount", pa.decimal128(12, 2)),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("payload", pa.string()),
        ("created_at_day", pa.string()),
    ]
)
CHANGE_SCHEMA = SCHEMA.append(pa.field("op", pa.string())).append(pa.field("position", pa.int64()))

T_START = time.monotonic()


def log(msg: str) -> None:
    print(f"[lake_peers +{time.monotonic() - T_START:7.1f}s] {msg}", file=sys.stderr, flush=True)


def settle(seconds: float) -> None:
    """Waits before a timed child so that it starts, as every side of the benchmark does, with the
    memory the steps before it freed given back to the host (see `settle` in benches/lake.rs)."""
    if seconds > 0:
        log(f"settling for {seconds:g} s (BENCH_SETTLE_SECONDS)")
        time.sleep(seconds)


def peak_rss_mb() -> float:
    # Linux: ru_maxrss is in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def dir_bytes(path: Path) -> tuple[int, int]:
    total = files = 0
    for root, _dirs, names in os.walk(path):
        for n in names:
            total += os.path.getsize(os.path.join(root, n))
            files += 1
    return total, files


# ----------------------------------------------------------------- generation

_HEX2 = np.array([b"%02x" % i for i in range(256)], dtype="S2")


def _hex(rng: np.random.Generator, n: int, nbytes: int) -> pa.Array:
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    chars = np.ascontiguousarray(_HEX2[raw]).view(f"S{2 * nbytes}").reshape(n)
    return pa.array(chars).cast(pa.string())


def _decimal_from_cents(cents: np.ndarray) -> pa.Array:
    # decimal128 is 16-byte little-endian two's complement; cents are >= 0 here.
    words = np.zeros((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    return pa.Array.from_buffers(pa.decimal128(12, 2), len(cents), [None, pa.py_buffer(words.tobytes())])


def _istr(values: np.ndarray, width: int = 0) -> pa.Array:
    s = pc.cast(pa.array(values, pa.int64()), pa.string())
    return pc.utf8_lpad(s, width, padding="0") if width else s


def make_rows(
    rng: np.random.Generator,
    ids: np.ndarray,
    customer_id: np.ndarray,
    created_us: np.ndarray,
    part_idx: np.ndarray,
    days: pa.Array,
    version: int,
) -> pa.Table:
    """Rows of the orders shape with fresh random status/amount/payload (~200 B a row)."""
    n = len(ids)
    status = pc.take(pa.array(STATUSES), pa.array(rng.integers(0, len(STATUSES), n)))
    cents = rng.integers(100, 5_000_000, n)
    sku = rng.integers(0, 1_000_000, n)
    qty = rng.integers(1, 10, n)
    wh = rng.integers(0, 32, n)
    channel = pc.take(pa.array(CHANNELS), pa.array(rng.integers(0, len(CHANNELS), n)))
    tag_a = rng.integers(0, 50, n)
    tag_b = rng.integers(0, 50, n)
    payload = pc.binary_join_element_wise(
        '{"sku":"SKU-', _istr(sku, 6),
        '","qty":', _istr(qty),
        ',"unit_cents":', _istr(cents // qty),
        ',"warehouse":"wh-', _istr(wh, 2),
        '","channel":"', channel,
        '","note":"', _hex(rng, n, 16),
        '","tags":["t', _istr(tag_a), '","t', _istr(tag_b),
        '"],"v":', str(version), "}",
        "",
    )
    return pa.Table.from_arrays(
        [
            pa.array(ids, pa.int64()),
            pa.array(customer_id, pa.int64()),
            status,
            _decimal_from_cents(cents),
            pa.array(created_us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            payload,
            pc.take(days, pa.array(part_idx)),
        ],
        schema=SCHEMA,
    )


def cmd_generate(a: argparse.Namespace) -> None:
    N, M, P, seed = a.rows, a.changes, a.partitions, a.seed
    n_upd = int(round(M * 0.6))
    n_ins = int(round(M * 0.3))
    n_del = M - n_upd - n_ins
    if n_upd + n_del > N:
        sys.exit("generate: more updates+deletes than rows")
    if N < P:
        sys.exit("generate: fewer rows than partitions")
    D = Path(a.dir)
    for sub in ("base", "changes"):
        shutil.rmtree(D / sub, ignore_errors=True)
        (D / sub).mkdir(parents=True)
    t0 = time.monotonic()
    ss = np.random.SeedSequence(seed)
    s_global, s_changes, *s_parts = ss.spawn(2 + P)
    rng = np.random.default_rng(s_global)
    day_names = [(EPOCH_DAY0.date() + dt.timedelta(days=p)).isoformat() for p in range(P)]
    days = pa.array(day_names)

    sizes = np.full(P, N // P, dtype=np.int64)
    sizes[: N % P] += 1
    starts = np.concatenate([[1], 1 + np.cumsum(sizes)])  # ids of day p: starts[p] .. starts[p+1]-1
    customer_id = rng.integers(1, 1_000_001, N)  # index id-1
    created = np.empty(N, dtype=np.int64)
    for p in range(P):
        lo, hi = starts[p] - 1, starts[p + 1] - 1
        created[lo:hi] = DAY0_US + p * DAY_US + np.sort(rng.integers(0, DAY_US, hi - lo))

    base_files = []
    for p in range(P):
        prng = np.random.default_rng(s_parts[p])
        lo, hi = starts[p] - 1, starts[p + 1] - 1
        t = make_rows(
            prng,
            np.arange(lo + 1, hi + 1, dtype=np.int64),
            customer_id[lo:hi],
            created[lo:hi],
            np.full(hi - lo, p, dtype=np.int64),
            days,
            1,
        )
        name = f"part-{p:05d}-{day_names[p]}.parquet"
        pq.write_table(t, D / "base" / name, compression="snappy", row_group_size=128 * 1024)
        base_files.append(name)
        if p % 10 == 0 or p == P - 1:
            log(f"generate: base partition {p + 1}/{P} ({hi - lo} rows)")

    crng = np.random.default_rng(s_changes)
    chosen = crng.choice(N, size=n_upd + n_del, replace=False).astype(np.int64) + 1
    upd_ids, del_ids = chosen[:n_upd], chosen[n_upd:]

    def part_of(ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(starts, ids, side="right") - 1

    upd = make_rows(
        crng, upd_ids, customer_id[upd_ids - 1], created[upd_ids - 1], part_of(upd_ids), days, 2
    )
    ins_ids = np.arange(N + 1, N + 1 + n_ins, dtype=np.int64)
    ins_part = crng.integers(0, P, n_ins)
    ins_created = DAY0_US + ins_part * DAY_US + crng.integers(0, DAY_US, n_ins)
    ins = make_rows(crng, ins_ids, crng.integers(1, 1_000_001, n_ins), ins_created, ins_part, days, 1)
    dl = pa.Table.from_arrays(
        [
            pa.array(del_ids, pa.int64()),
            pa.nulls(n_del, pa.int64()),
            pa.nulls(n_del, pa.string()),
            pa.nulls(n_del, pa.decimal128(12, 2)),
            pa.array(created[del_ids - 1], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            pa.nulls(n_del, pa.string()),
            pc.take(days, pa.array(part_of(del_ids))),
        ],
        schema=SCHEMA,
    )
    del customer_id, created
    ops = []
    for t, op in ((upd, "u"), (ins, "c"), (dl, "d")):
        ops.append(t.append_column("op", pa.repeat(pa.scalar(op, pa.string()), t.num_rows)))
    ch = pa.concat_tables(ops)
    ch = ch.take(pa.array(crng.permutation(M)))
    ch = ch.append_column("position", pa.array(np.arange(1, M + 1, dtype=np.int64)))
    assert ch.schema.equals(CHANGE_SCHEMA), ch.schema
    change_files = []
    for i, off in enumerate(range(0, M, CHANGE_ROWS_PER_FILE)):
        name = f"part-{i:05d}.parquet"
        pq.write_table(
            ch.slice(off, CHANGE_ROWS_PER_FILE), D / "changes" / name,
            compression="snappy", row_group_size=128 * 1024,
        )
        change_files.append(name)
    base_bytes, _ = dir_bytes(D / "base")
    change_bytes, _ = dir_bytes(D / "changes")
    affected = sorted(set(pc.unique(ch["created_at_day"]).to_pylist()))
    meta = {
        "generator": "benches/lake_peers.py v1",
        "rows": N,
        "changes": M,
        "partitions": P,
        "seed": seed,
        "ops": {"u": n_upd, "c": n_ins, "d": n_del},
        "expected_result_rows": N + n_ins - n_del,
        "base_bytes": base_bytes,
        "change_bytes": change_bytes,
        "change_bytes_note": "sum of the sizes of changes/*.parquet (snappy); change_arrow_bytes is the in-memory Arrow size",
        "change_arrow_bytes": ch.nbytes,
        "base_files": base_files,
        "change_files": change_files,
        "partition_column": "created_at_day",
        "partition_days": [day_names[0], day_names[-1]],
        "affected_partitions": len(affected),
        "id_ranges": {"base": [1, N], "inserts": [N + 1, N + n_ins]},
        "generate_seconds": round(time.monotonic() - t0, 3),
        "generate_peak_rss_mb": round(peak_rss_mb(), 1),
    }
    (D / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    log(
        f"generate: {N} rows in {P} files ({base_bytes / 1e6:.1f} MB), {M} changes "
        f"({change_bytes / 1e6:.1f} MB) in {meta['generate_seconds']} s, peak RSS {meta['generate_peak_rss_mb']} MB"
    )
    print(json.dumps(meta))


# ------------------------------------------------------------- verification


def _duckdb():
    import duckdb

    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    return con


def _sql_list(files) -> str:
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"


def expected(D: Path) -> dict:
    """Expected row count and fingerprint after applying the batch, cached in D/expected.json."""
    cache = D / "expected.json"
    meta = json.loads((D / "meta.json").read_text())
    if cache.exists():
        e = json.loads(cache.read_text())
        if e.get("meta_seed") == meta["seed"] and e.get("meta_change_bytes") == meta["change_bytes"]:
            return e
    con = _duckdb()
    r = con.execute(
        f"""
        WITH ch AS (SELECT * FROM read_parquet('{D}/changes/*.parquet')),
             b AS (SELECT * FROM read_parquet('{D}/base/*.parquet'))
        SELECT {FINGERPRINT_SQL} FROM (
            SELECT b.* FROM b WHERE NOT EXISTS (SELECT 1 FROM ch WHERE ch.id = b.id)
            UNION ALL
            SELECT {', '.join(DATA_COLS)} FROM ch WHERE op IN ('u', 'c'))
        """
    ).fetchone()
    e = {
        "rows": r[0],
        "fingerprint": r[1],
        "fingerprint_sql": FINGERPRINT_SQL,
        "meta_seed": meta["seed"],
        "meta_change_bytes": meta["change_bytes"],
    }
    cache.write_text(json.dumps(e, indent=2) + "\n")
    return e


def fingerprint_files(files: list[str]) -> dict:
    """Fingerprint of a table given as parquet files; created_at_day may come from a hive path."""
    con = _duckdb()
    lst = _sql_list(files)
    cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({lst}, hive_partitioning=false)").fetchall()}
    hive = "created_at_day" not in cols
    r = con.execute(
        f"SELECT {FINGERPRINT_SQL} FROM read_parquet({lst}, hive_partitioning={str(hive).lower()}, "
        f"hive_types_autocast=false, union_by_name=true)"
    ).fetchone()
    return {"rows": r[0], "fingerprint": r[1]}


def cmd_expect(a: argparse.Namespace) -> None:
    print(json.dumps(expected(Path(a.dir))))


def cmd_verify(a: argparse.Namespace) -> None:
    files = list(a.files or [])
    if a.files_from:
        files += [l.strip() for l in Path(a.files_from).read_text().splitlines() if l.strip()]
    got = fingerprint_files(files)
    e = expected(Path(a.dir))
    ok = got["rows"] == e["rows"] and got["fingerprint"] == e["fingerprint"]
    print(json.dumps({**got, "expected_rows": e["rows"], "expected_fingerprint": e["fingerprint"], "ok": ok}))
    sys.exit(0 if ok else 1)


# ---------------------------------------------------------------- children


def child_json(args: list[str]) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"child {args[0]} failed with exit code {p.returncode}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _writer_props():
    from deltalake import WriterProperties

    return WriterProperties(compression="SNAPPY")


def cmd_child_delta_load(a: argparse.Namespace) -> None:
    import pyarrow.dataset as ds
    from deltalake import write_deltalake

    D, table = Path(a.dir), Path(a.table)
    shutil.rmtree(table, ignore_errors=True)
    rss0 = peak_rss_mb()
    t0 = time.monotonic()
    reader = ds.dataset(str(D / "base"), format="parquet", schema=SCHEMA).scanner(batch_size=128 * 1024).to_reader()
    write_deltalake(
        str(table), reader, partition_by=["created_at_day"], mode="overwrite",
        writer_properties=_writer_props(),
    )
    secs = time.monotonic() - t0
    print(json.dumps({"seconds": secs, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss0}))


MERGE_VARIANTS = {
    # name: (join predicate, add literal IN-list of the batch's partitions, streamed_exec)
    "id": ("t.id = s.id", False, True),
    "part": ("t.created_at_day = s.created_at_day AND t.id = s.id", False, True),
    "literal": ("t.created_at_day = s.created_at_day AND t.id = s.id", True, True),
    "literal-nostream": ("t.created_at_day = s.created_at_day AND t.id = s.id", True, False),
    "part-nostream": ("t.created_at_day = s.created_at_day AND t.id = s.id", False, False),
}
DEFAULT_VARIANT = "literal"


def cmd_child_delta_merge(a: argparse.Namespace) -> None:
    first = delta_merge_once(a, Path(a.table))
    if a.table2:
        first["second"] = delta_merge_once(a, Path(a.table2))
    print(json.dumps(first, default=str))


def delta_merge_once(a: argparse.Namespace, table: Path) -> dict:
    from deltalake import DeltaTable

    D = Path(a.dir)
    pred, literal, streamed = MERGE_VARIANTS[a.variant]
    dt_ = DeltaTable(str(table))  # opening the table's log is not timed
    rss0 = peak_rss_mb()
    cpu0 = cpu_seconds()
    t0 = time.monotonic()
    src = pq.read_table(D / "changes", schema=CHANGE_SCHEMA)
    if literal:
        parts = sorted(pc.unique(src["created_at_day"]).to_pylist())
        pred = f"t.created_at_day IN ({', '.join(repr(p) for p in parts)}) AND {pred}"
    data = DATA_COLS
    set_all = {c: f"s.{c}" for c in data}
    m = (
        dt_.merge(
            src, predicate=pred, source_alias="s", target_alias="t",
            writer_properties=_writer_props(), streamed_exec=streamed,
        )
        .when_matched_update(updates={c: f"s.{c}" for c in data if c != "id"}, predicate="s.op = 'u'")
        .when_matched_delete(predicate="s.op = 'd'")
        .when_not_matched_insert(updates=set_all, predicate="s.op = 'c'")
    )
    metrics = m.execute()
    secs = time.monotonic() - t0
    return {
        "seconds": secs,
        "cpu_seconds": cpu_seconds() - cpu0,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": rss0,
        "metrics": metrics,
        "predicate_len": len(pred),
        "predicate_head": pred[:200],
    }


def cmd_child_duckdb(a: argparse.Namespace) -> None:
    con = _duckdb()
    if a.threads:
        con.execute(f"SET threads = {int(a.threads)}")
    first = duckdb_once(con, Path(a.dir), Path(a.out))
    if a.out2:
        first["second"] = duckdb_once(con, Path(a.dir), Path(a.out2))
    print(json.dumps(first))


def duckdb_once(con, D: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    rss0 = peak_rss_mb()
    cpu0 = cpu_seconds()
    t0 = time.monotonic()
    # Affected partitions = those named by any change; base rows of those partitions
    # minus changed ids, plus the after-images of updates and inserts.
    r = con.execute(
        f"""
        COPY (
            WITH ch AS (SELECT * FROM read_parquet('{D}/changes/*.parquet')),
                 parts AS (SELECT DISTINCT created_at_day FROM ch),
                 b AS (SELECT * FROM read_parquet('{D}/base/*.parquet')
                       WHERE created_at_day IN (SELECT created_at_day FROM parts))
            SELECT b.* FROM b WHERE NOT EXISTS (SELECT 1 FROM ch WHERE ch.id = b.id)
            UNION ALL
            SELECT {', '.join(DATA_COLS)} FROM ch WHERE op IN ('u', 'c')
        ) TO '{out}' (FORMAT parquet, PARTITION_BY (created_at_day), COMPRESSION snappy)
        """
    ).fetchone()
    secs = time.monotonic() - t0
    parts = con.execute(
        f"SELECT count(DISTINCT created_at_day) FROM read_parquet('{D}/changes/*.parquet')"
    ).fetchone()[0]
    return {
        "seconds": secs,
        "cpu_seconds": cpu_seconds() - cpu0,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": rss0,
        "rows_written": r[0],
        "affected_partitions": parts,
    }


# ---------------------------------------------------------------------- run


def delta_commit_stats(table: Path, version: int) -> dict:
    adds = removes = add_bytes = add_rows = 0
    with open(table / "_delta_log" / f"{version:020d}.json") as f:
        for line in f:
            act = json.loads(line)
            if "add" in act:
                adds += 1
                add_bytes += int(act["add"]["size"])
                st = act["add"].get("stats")
                if st:
                    add_rows += json.loads(st).get("numRecords", 0)
            elif "remove" in act:
                removes += 1
    return {"files_added": adds, "files_removed": removes, "bytes_added": add_bytes, "rows_added": add_rows}


def second_result(timed: dict, result_rows: int, files: list[str], work: Path) -> dict:
    """A peer's second batch: its times, and its result to check (`cmd_run`), then remove."""
    return {
        "seconds": round(timed["seconds"], 3),
        "cpu_seconds": round(timed["cpu_seconds"], 2),
        "result_rows": result_rows,
        "_result_files": files,
        "_work": work,
    }


def run_delta(a: argparse.Namespace, D: Path, meta: dict) -> dict:
    from deltalake import DeltaTable

    table = Path(a.work or D / "delta")
    log(f"delta: loading base into {table} (not timed, child process)")
    load = child_json(["_delta_load", "--dir", str(D), "--table", str(table)])
    v0 = DeltaTable(str(table)).version()
    base_stats = delta_commit_stats(table, v0)
    log(
        f"delta: loaded in {load['seconds']:.1f} s ({base_stats['files_added']} files, "
        f"{base_stats['bytes_added'] / 1e6:.1f} MB); merging {meta['changes']} changes, variant {a.variant}"
    )
    table2 = table.with_name(table.name + "-second")
    shutil.rmtree(table2, ignore_errors=True)
    subprocess.run(["cp", "-a", str(table), str(table2)], check=True)
    os.sync()  # the load's writes on disk before the timed merge, as for tidewater
    settle(a.settle)
    mr = child_json(
        ["_delta_merge", "--dir", str(D), "--table", str(table), "--table2", str(table2), "--variant", a.variant]
    )
    dtab2 = DeltaTable(str(table2))
    second = second_result(mr["second"], dtab2.to_pyarrow_dataset().count_rows(), dtab2.file_uris(), table2)
    dtab = DeltaTable(str(table))
    v1 = dtab.version()
    st = delta_commit_stats(table, v1)
    mt = mr["metrics"]
    rows_rewritten = int(mt.get("num_target_rows_copied", 0)) + int(mt.get("num_target_rows_updated", 0)) + int(
        mt.get("num_target_rows_inserted", 0)
    )
    result_rows = dtab.to_pyarrow_dataset().count_rows()
    log(f"delta: merged in {mr['seconds']:.2f} s -> version {v1}, {st['files_added']} files added, {result_rows} rows")
    pred, literal, streamed = MERGE_VARIANTS[a.variant]
    notes = [
        f"variant={a.variant}: predicate "
        + ("t.created_at_day IN (<the batch's partitions as literals>) AND " if literal else "")
        + f"{pred}; streamed_exec={streamed}",
        "timed: reading changes/*.parquet into Arrow + merge + commit, in a fresh process; "
        "second: the same into a copy of the table as loaded, right after, in the same process",
        f"merge removed {st['files_removed']} files; delta data files omit the partition column (it is in the path)",
        f"base as delta: {base_stats['files_added']} files, {base_stats['bytes_added']} bytes; "
        f"load peak RSS {load['peak_rss_mb']:.0f} MB",
        "rows_rewritten = num_target_rows_copied + updated + inserted",
    ]
    return {
        "peer": "delta",
        "seconds": round(mr["seconds"], 3),
        "load_seconds": round(load["seconds"], 3),
        "peak_rss_mb": round(mr["peak_rss_mb"], 1),
        "cpu_seconds": round(mr["cpu_seconds"], 2),
        "rss_before_timed_mb": round(mr["rss_before_mb"], 1),
        "bytes_written": st["bytes_added"],
        "rows_rewritten": rows_rewritten,
        "files_written": st["files_added"],
        "files_removed": st["files_removed"],
        "result_rows": result_rows,
        "merge_metrics": mt,
        "variant": a.variant,
        "second": second,
        "_result_files": dtab.file_uris(),
        "notes": "; ".join(notes),
    }


def run_duckdb(a: argparse.Namespace, D: Path, meta: dict) -> dict:
    out = Path(a.work or D / "duckdb_out")
    log(f"duckdb: rewriting the affected partitions into {out} (child process)")
    out2 = out.with_name(out.name + "-second")
    args = ["_duckdb", "--dir", str(D), "--out", str(out), "--out2", str(out2)]
    if a.threads:
        args += ["--threads", str(a.threads)]
    os.sync()
    settle(a.settle)
    r = child_json(args)
    second = second_result(
        r["second"], r["second"]["rows_written"], sorted(str(p) for p in out2.rglob("*.parquet")), out2
    )
    nbytes, nfiles = dir_bytes(out)
    files = sorted(str(p) for p in out.rglob("*.parquet"))
    log(f"duckdb: rewrote in {r['seconds']:.2f} s, {nfiles} files, {nbytes / 1e6:.1f} MB")
    return {
        "peer": "duckdb",
        "seconds": round(r["seconds"], 3),
        "load_seconds": None,
        "peak_rss_mb": round(r["peak_rss_mb"], 1),
        "cpu_seconds": round(r["cpu_seconds"], 2),
        "rss_before_timed_mb": round(r["rss_before_mb"], 1),
        "bytes_written": nbytes,
        "rows_rewritten": r["rows_written"],
        "files_written": nfiles,
        "result_rows": r["rows_written"],
        "second": second,
        "_result_files": files,
        "notes": (
            f"lower bound: one COPY ... PARTITION_BY (created_at_day) writing the new content of the "
            f"{r['affected_partitions']} partitions named by the batch (base rows minus changed ids, plus "
            "update/insert after-images) to a new directory; no table format, no commit; "
            "timed: reading base + changes + writing, in a fresh process; second: the same into another "
            "directory, right after, in the same process; files omit the partition column"
        ),
    }


def cmd_run(a: argparse.Namespace) -> None:
    D = Path(a.dir)
    meta = json.loads((D / "meta.json").read_text())
    res = run_delta(a, D, meta) if a.peer == "delta" else run_duckdb(a, D, meta)
    second = res["second"]
    exp_rows = meta["expected_result_rows"]
    checks = []
    ok = True
    for name, result in (("first", res), ("second", second)):
        files = result.pop("_result_files")
        rows_ok = result["result_rows"] == exp_rows
        checks.append(f"{name}: result_rows {'==' if rows_ok else '!='} expected {exp_rows}")
        ok = ok and rows_ok
        if a.verify:
            log(f"verifying the {name} result's fingerprint against DuckDB's recomputation (not timed)")
            e = expected(D)
            got = fingerprint_files(files)
            fp_ok = got["rows"] == e["rows"] and got["fingerprint"] == e["fingerprint"]
            ok = ok and fp_ok
            checks.append(f"{name}: content fingerprint " + ("matches" if fp_ok else f"MISMATCH {got} vs {e}"))
    shutil.rmtree(second.pop("_work"), ignore_errors=True)  # only timed; the first result stays
    res["change_bytes"] = meta["change_bytes"]
    res["write_amplification"] = round(res["bytes_written"] / meta["change_bytes"], 2)
    res["rows_rewritten_per_change"] = round(res["rows_rewritten"] / meta["changes"], 3)
    res["verified"] = ok
    res["notes"] += "; checks: " + ", ".join(checks)
    res["workload"] = {k: meta[k] for k in ("rows", "changes", "partitions", "seed", "ops")}
    order = ["peer", "seconds", "load_seconds", "peak_rss_mb", "bytes_written", "change_bytes",
             "write_amplification", "rows_rewritten", "rows_rewritten_per_change", "files_written",
             "result_rows", "notes"]
    out = {k: res[k] for k in order}
    out.update({k: v for k, v in res.items() if k not in out})
    print(json.dumps(out))
    if not ok:
        log("VERIFICATION FAILED")
        sys.exit(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write base/, changes/ and meta.json")
    g.add_argument("--dir", required=True)
    g.add_argument("--rows", type=int, default=10_000_000)
    g.add_argument("--changes", type=int, default=1_000_000)
    g.add_argument("--partitions", type=int, default=90)
    g.add_argument("--seed", type=int, default=42)
    r = sub.add_parser("run", help="apply the batch with one peer and print one JSON object")
    r.add_argument("--dir", required=True)
    r.add_argument("--peer", required=True, choices=["delta", "duckdb"])
    r.add_argument("--variant", default=DEFAULT_VARIANT, choices=sorted(MERGE_VARIANTS),
                   help=f"delta merge variant (default {DEFAULT_VARIANT})")
    r.add_argument("--work", help="where the peer writes (default D/delta or D/duckdb_out); wiped first")
    r.add_argument("--threads", type=int, help="duckdb threads (default: all cores)")
    r.add_argument("--settle", type=float, default=float(os.environ.get("BENCH_SETTLE_SECONDS", "30")),
                   help="seconds to wait before the timed child (default: BENCH_SETTLE_SECONDS or 30)")
    r.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the content fingerprint check (row count is still checked)")
    e = sub.add_parser("expect", help="print the expected rows and fingerprint after the batch")
    e.add_argument("--dir", required=True)
    v = sub.add_parser("verify", help="check a result (parquet files) against the expected fingerprint")
    v.add_argument("--dir", required=True)
    v.add_argument("--files", nargs="*")
    v.add_argument("--files-from", help="a file listing parquet paths, one a line")
    c1 = sub.add_parser("_delta_load")
    c1.add_argument("--dir", required=True)
    c1.add_argument("--table", required=True)
    c2 = sub.add_parser("_delta_merge")
    c2.add_argument("--dir", required=True)
    c2.add_argument("--table", required=True)
    c2.add_argument("--table2", help="a copy of the table as loaded: merged into right after, in this process")
    c2.add_argument("--variant", required=True)
    c3 = sub.add_parser("_duckdb")
    c3.add_argument("--dir", required=True)
    c3.add_argument("--out", required=True)
    c3.add_argument("--out2", help="written right after --out, in this process")
    c3.add_argument("--threads", type=int)
    a = ap.parse_args()
    {
        "generate": cmd_generate,
        "run": cmd_run,
        "expect": cmd_expect,
        "verify": cmd_verify,
        "_delta_load": cmd_child_delta_load,
        "_delta_merge": cmd_child_delta_merge,
        "_duckdb": cmd_child_duckdb,
    }[a.cmd](a)


if __name__ == "__main__":
    main()
