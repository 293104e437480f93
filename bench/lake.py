"""Benchmark the lake against plain Parquet, side by side in one run.

    .venv/bin/python bench/lake.py [--rows 100000] [--scan-rows 1000000] [--repeat 3]

1. Merge: `LakeResource.write("distill/completions", rows, mode="merge", lineage=...)` of `--rows`
   completion-shaped rows, (a) into an empty table (first write) and (b) into a table that already
   holds a different `--rows` rows (a realistic incremental merge), each against
   `pyarrow.parquet.write_table` of the same rows. Target: merge / parquet <= 3x.
2. Scan: a DuckDB GROUP BY over a `--scan-rows`-row table through the lake view (`lake.connect()`,
   query `bench.scan`) against the same query over the same rows as one Parquet file
   (`read_parquet(...)` on a plain DuckDB connection). Only the query is timed; `connect()` is timed
   separately. Target: view / parquet <= 2x.

The machine may be shared and noisy: the contenders are interleaved in every repetition (their order
alternating), each timing is the median over `--repeat` repetitions, and ratios are ratios of medians.
CPU-time ratios are printed too, as a steadier second opinion when other processes share the CPUs.
Everything lives in a temporary directory (under $TMPDIR) that is removed at the end.
Exits 1 if a ratio misses its target.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nexa_resources.lake import LakeResource, Lineage, with_lineage  # noqa: E402

MERGE_TARGET = 3.0
SCAN_TARGET = 2.0
COMPLETIONS = "distill/completions"
SCAN_TABLE = "bench/scan"

TEACHERS = np.array(
    ["gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022", "llama-3.1-405b-instruct", "qwen2.5-72b-instruct"]
)
FINISH_REASONS = np.array(["stop", "length", "content_filter"])
FINISH_P = [0.90, 0.08, 0.02]
TEMPLATES = np.array(["v1", "v2", "v3"])
SYLLABLES = "ka lo mi ne ru sa te vo an el is on ur th re in er ed ing ous al ly pro con the and for".split()


# ---------------------------------------------------------------------------- data


def _corpus(rng: np.random.Generator, size: int = 8 << 20) -> np.ndarray:
    """`size` bytes of word-like ASCII text (Zipf-ish vocabulary), so Parquet compresses it like prose."""
    vocab_rng = np.random.default_rng(7)
    vocab = [
        "".join(vocab_rng.choice(SYLLABLES, size=vocab_rng.integers(1, 4)))
        for _ in range(3000)
    ]
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    words = rng.choice(len(vocab), size=size // 5, p=weights / weights.sum())
    punct = rng.choice(np.array([" ", " ", " ", " ", " ", " ", " ", ", ", ". ", ".\n"]), size=words.size)
    text = "".join(np.char.add(np.array(vocab)[words], punct).tolist()).encode()
    return np.frombuffer(text, dtype=np.uint8)[:size]


def _text(rng: np.random.Generator, corpus: np.ndarray, n: int, mean: int, spread: int) -> pa.Array:
    """n distinct strings of about `mean` chars: consecutive slices of the tiled corpus."""
    lengths = np.clip(rng.normal(mean, spread, n), mean // 4, mean * 3).astype(np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    start = int(rng.integers(0, corpus.size))
    data = np.resize(np.roll(corpus, -start), total)  # tiles the corpus; a row is never repeated
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _hex_ids(rng: np.random.Generator, n: int, chars: int) -> pa.Array:
    """n random lowercase-hex strings of `chars` chars (sha256-hexdigest-prefix shaped)."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    data = digits[rng.integers(0, 16, size=n * chars, dtype=np.uint8)]
    offsets = np.arange(0, (n + 1) * chars, chars, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def completions(n: int, seed: int, corpus: np.ndarray) -> pl.DataFrame:
    """n rows shaped like distill/completions, generated without Python loops over rows."""
    rng = np.random.default_rng(seed)
    prompt_pool = _hex_ids(rng, max(n // 2, 1), 24)
    system_prompts = _text(rng, corpus, 5, 300, 80)
    user = _text(rng, corpus, n, 200, 60)
    completion = _text(rng, corpus, n, 800, 250)
    completion_len = pc.binary_length(completion).to_numpy()
    attempts = rng.choice(np.array([1, 2, 3]), size=n, p=[0.93, 0.05, 0.02])
    prompt_tokens = (pc.binary_length(user).to_numpy() // 4 + 60).astype(np.int64)
    completion_tokens = (completion_len // 4).astype(np.int64)
    table = pa.table(
        {
            "request_id": _hex_ids(rng, n, 24),
            "prompt_id": prompt_pool.take(rng.integers(0, len(prompt_pool), n)),
            "teacher_model": pa.array(TEACHERS[rng.integers(0, len(TEACHERS), n)], pa.large_string()),
            "template_version": pa.array(TEMPLATES[rng.integers(0, len(TEMPLATES), n)], pa.large_string()),
            "system_prompt": system_prompts.take(rng.integers(0, len(system_prompts), n)),
            "user_prompt": user,
            "completion": completion,
            "finish_reason": pa.array(rng.choice(FINISH_REASONS, size=n, p=FINISH_P), pa.large_string()),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "latency_ms": np.round(rng.lognormal(7.5, 0.6, n) + completion_tokens * 8.0, 1),
            "cost_usd": np.round(prompt_tokens * 2.5e-6 + completion_tokens * 1.0e-5, 8),
            "attempts": attempts.astype(np.int64),
            "error": pa.nulls(n, pa.large_string()),
        }
    )
    return pl.from_arrow(table)


# -------------------------------------------------------------------------- timing


CPU: dict[str, list[float]] = {}  # process CPU seconds (all threads) per contender: steadier under other load


def timed(fn: Callable[[], object], name: str | None = None) -> tuple[float, object]:
    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - start
    if name:
        CPU.setdefault(name, []).append(time.process_time() - cpu)
    return wall, out


def med(values: list[float]) -> float:
    return statistics.median(values)


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms" if seconds < 1 else f"{seconds:7.2f} s "


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


# --------------------------------------------------------------------------- merge


def bench_merge(tmp: Path, rows: int, repeat: int, corpus: np.ndarray) -> dict[str, list[float]]:
    lineage = Lineage(run_id="bench-run", round=0)
    base = completions(rows, seed=1, corpus=corpus)
    new = completions(rows, seed=2, corpus=corpus)
    assert base["request_id"].n_unique() == rows and new["request_id"].n_unique() == rows
    assert not set(base["request_id"].head(1000)) & set(new["request_id"])
    # The Parquet contender writes exactly the Arrow table lake.write builds (lineage columns included).
    base_arrow = with_lineage(base, lineage).to_arrow()
    new_arrow = with_lineage(new, lineage).to_arrow()
    print(f"  {rows:,} rows x {base.width} columns (+3 lineage), {mib(base_arrow.nbytes)} in Arrow per batch")

    t: dict[str, list[float]] = {k: [] for k in ("first", "pq_first", "incr", "pq_incr")}
    for rep in range(repeat):
        lake = LakeResource(root=str(tmp / f"merge-lake-{rep}"))
        pq_first, pq_incr = tmp / f"first-{rep}.parquet", tmp / f"incr-{rep}.parquet"
        pairs = [
            (("first", lambda: lake.write(COMPLETIONS, base, mode="merge", lineage=lineage)),
             ("pq_first", lambda: pq.write_table(base_arrow, pq_first))),
            (("incr", lambda: lake.write(COMPLETIONS, new, mode="merge", lineage=lineage)),
             ("pq_incr", lambda: pq.write_table(new_arrow, pq_incr))),
        ]
        for lake_step, pq_step in pairs:
            for name, fn in (lake_step, pq_step) if rep % 2 == 0 else (pq_step, lake_step):
                seconds, result = timed(fn, f"merge.{name}")
                t[name].append(seconds)
                if name == "incr":
                    assert result.inserted == rows and result.updated == 0 and result.version == 1, result
        if rep == 0:
            files = list((tmp / f"merge-lake-{rep}" / COMPLETIONS).glob("*.parquet"))
            print(
                f"  after merge: {len(files)} data files, {mib(du(tmp / f'merge-lake-{rep}'))} in the Delta table; "
                f"one Parquet file of {rows:,} rows: {mib(du(pq_incr))}"
            )
        shutil.rmtree(tmp / f"merge-lake-{rep}")
        pq_first.unlink()
        pq_incr.unlink()
    return t


# ---------------------------------------------------------------------------- scan

QUERY = """
SELECT teacher_model, finish_reason, count(*) AS n, avg(latency_ms) AS avg_latency_ms,
       sum(completion_tokens) AS completion_tokens
FROM {source}
GROUP BY ALL
ORDER BY ALL
"""


def bench_scan(tmp: Path, rows: int, repeat: int, corpus: np.ndarray) -> dict[str, list[float]]:
    lineage = Lineage(run_id="bench-run", round=0)
    df = completions(rows, seed=3, corpus=corpus)
    lake = LakeResource(root=str(tmp / "scan-lake"))
    setup: dict[str, float] = {}
    setup["lake_write"], _ = timed(lambda: lake.write(SCAN_TABLE, df, mode="overwrite", lineage=lineage))
    arrow = with_lineage(df, lineage).to_arrow()
    del df
    parquet = tmp / "scan.parquet"
    setup["pq_write"], _ = timed(lambda: pq.write_table(arrow, parquet))
    del arrow
    delta_files = list((tmp / "scan-lake" / SCAN_TABLE).glob("*.parquet"))
    delta_row_groups = sum(pq.ParquetFile(f).num_row_groups for f in delta_files)
    print(
        f"  {rows:,} rows: Delta table {len(delta_files)} file(s), {delta_row_groups} row groups, "
        f"{mib(du(tmp / 'scan-lake'))}; Parquet file {pq.ParquetFile(parquet).num_row_groups} row groups, "
        f"{mib(du(parquet))}"
    )
    print(
        f"  setup (not in the ratios): lake.write overwrite {fmt_s(setup['lake_write']).strip()}, "
        f"parquet write {fmt_s(setup['pq_write']).strip()}"
    )

    connects: list[float] = []
    for _ in range(repeat):
        seconds, con = timed(lake.connect)
        connects.append(seconds)
        con.close()
    view_con = lake.connect()
    pq_con = duckdb.connect(":memory:")
    view_sql = QUERY.format(source="bench.scan")
    pq_sql = QUERY.format(source=f"read_parquet('{parquet}')")
    # Warm both (page cache, DuckDB metadata), and check they agree.
    view_result = view_con.sql(view_sql).fetchall()
    pq_result = pq_con.sql(pq_sql).fetchall()
    assert [r[:2] + (r[2],) + (r[4],) for r in view_result] == [r[:2] + (r[2],) + (r[4],) for r in pq_result]
    assert sum(r[2] for r in view_result) == rows

    t: dict[str, list[float]] = {"view": [], "parquet": [], "connect": connects}
    contenders = [
        ("view", lambda: view_con.sql(view_sql).fetchall()),
        ("parquet", lambda: pq_con.sql(pq_sql).fetchall()),
    ]
    for rep in range(repeat):
        for name, fn in contenders if rep % 2 == 0 else contenders[::-1]:
            seconds, _ = timed(fn, f"scan.{name}")
            t[name].append(seconds)
    view_con.close()
    pq_con.close()
    return t


# ---------------------------------------------------------------------------- main


def verdict(ratio: float, target: float) -> str:
    return "PASS" if ratio <= target else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows per merge batch (default 100000)")
    parser.add_argument("--scan-rows", type=int, default=1_000_000, help="rows in the scanned table (default 1000000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; timings are medians (default 3)")
    args = parser.parse_args(argv)
    if args.rows < 2 or args.scan_rows < 2 or args.repeat < 1:
        parser.error("--rows and --scan-rows must be >= 2 and --repeat >= 1")

    print(
        f"nexa lake benchmark: rows={args.rows:,} scan-rows={args.scan_rows:,} repeat={args.repeat} "
        f"(medians; contenders interleaved) on {os.cpu_count()} CPUs"
    )
    import deltalake

    print(
        f"  deltalake {deltalake.__version__}, duckdb {duckdb.__version__}, polars {pl.__version__}, "
        f"pyarrow {pa.__version__}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="nexa-bench-lake-"))
    try:
        seconds, corpus = timed(lambda: _corpus(np.random.default_rng(0)))
        print(f"  text corpus {mib(corpus.size)} in {fmt_s(seconds).strip()}")
        print("merge:")
        m = bench_merge(tmp, args.rows, args.repeat, corpus)
        print("scan:")
        s = bench_scan(tmp, args.scan_rows, args.repeat, corpus)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    first, pq_first = med(m["first"]), med(m["pq_first"])
    incr, pq_incr = med(m["incr"]), med(m["pq_incr"])
    view, pqs, connect = med(s["view"]), med(s["parquet"]), med(s["connect"])
    r_first, r_incr, r_scan = first / pq_first, incr / pq_incr, view / pqs
    n = f"{args.rows // 1000}k" if args.rows % 1000 == 0 else f"{args.rows:,}"
    k = f"{args.scan_rows / 1e6:g}M" if args.scan_rows % 100_000 == 0 else f"{args.scan_rows:,}"

    print()
    print("results (median of", args.repeat, "interleaved runs):")
    rows = [
        (f"merge {n} rows into {n}-row table", incr, "parquet write", pq_incr, r_incr, MERGE_TARGET),
        (f"merge {n} rows into empty table", first, "parquet write", pq_first, r_first, MERGE_TARGET),
        (f"GROUP BY over {k} rows, lake view", view, "read_parquet", pqs, r_scan, SCAN_TARGET),
    ]
    for label, a, other, b, ratio, target in rows:
        print(
            f"  {label:<36} {fmt_s(a)}   {other:<13} {fmt_s(b)}   ratio {ratio:4.1f}x  "
            f"(target <= {target:g}x)  {verdict(ratio, target)}"
        )
    print(f"  {'lake.connect() (not in the ratio)':<36} {fmt_s(connect)}")
    print()
    print("CPU time (process, all threads; less sensitive to other load on the machine), medians:")
    for label, a, b, target in (
        (f"merge into {n}-row table / parquet", "merge.incr", "merge.pq_incr", MERGE_TARGET),
        ("merge into empty table / parquet", "merge.first", "merge.pq_first", MERGE_TARGET),
        ("GROUP BY lake view / read_parquet", "scan.view", "scan.parquet", SCAN_TARGET),
    ):
        ca, cb = med(CPU[a]), med(CPU[b])
        print(f"  {label:<36} {fmt_s(ca)} / {fmt_s(cb)}   ratio {ca / cb:4.1f}x  (target <= {target:g}x)")
    print()
    print("raw timings (s):")
    for name, values in {**{f"merge.{k}": v for k, v in m.items()}, **{f"scan.{k}": v for k, v in s.items()}}.items():
        print(f"  {name:<14} " + "  ".join(f"{v:.3f}" for v in values))
    return 0 if max(r_incr, r_first) <= MERGE_TARGET and r_scan <= SCAN_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
