"""Benchmark: analysis time over ingested Parquet (the ``parquet://`` store, DuckDB) at two or more sizes, to check
how it grows and extrapolate to a month of traffic.

    .venv/bin/python loadtest/bench_parquet_analysis.py [--events 1000000,3000000] [--file-events 20000]

For each size: a scaled-down month (``write``: impressions with 10 ranked results, 30% of them clicked, spread
over 30 UTC days) in the files ``abharness ingest --to parquet:///DIR --batch 20000`` writes, then, in a fresh
``parquet://`` store each time:

* ``unit_aggregates`` (the per-unit sums every metric is built from; the scan over all impressions and clicks),
  through the one-row-per-key views (what an ingested directory is read with) and, as the baseline in the same
  run, with those views switched off (``dedupe=False``: the cost of exactly-once on read);
* the whole ``analyze`` report (metrics, SRM, guardrails, power, time series, 200 bootstrap samples) through the
  views.

Prints seconds and impressions/s per row with the load average before and after, Parquet bytes per event, and
the ratio of the two sizes (linear growth gives time ratio = size ratio).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "loadtest"))


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def write(root: Path, n: int, per_file: int, days: int = 30) -> tuple[int, int, float]:
    """Write ``n`` events (77% impressions, each clicked with probability 0.3) spread evenly over ``days`` UTC
    days, as ``ParquetSink`` lays them out (``ingest-*.parquet`` files of ``per_file`` rows per table, experiment
    and date), generated column-wise with numpy (the sink's own speed is ``bench_stream.py``'s figure).
    Realistic sizes: 10 results from a 1 M-document corpus with 4-digit scores, 200,000 distinct queries, one
    unit per 20 impressions. Returns impressions, clicks, seconds."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from abharness.stores.parquet_export import SCHEMAS, partition_name

    rng = np.random.default_rng(n)
    n_imps = int(round(n / 1.3))
    n_clicks = n - n_imps
    t0 = time.perf_counter()
    ts = 1_700_006_400.0 + np.sort(rng.uniform(0, days * 86_400.0, n_imps))  # 2023-11-15 00:00 UTC onward
    units = rng.integers(0, max(1, n_imps // 20), n_imps)
    arms = np.where(rng.random(n_imps) < 0.5, "baseline", "finetuned")
    docs = rng.integers(0, 1_000_000, (n_imps, 10))
    scores = np.round(rng.uniform(0.2, 0.9, (n_imps, 10)), 4)
    queries = rng.integers(0, 200_000, n_imps)
    clicked = np.sort(rng.choice(n_imps, n_clicks, replace=False))
    pos = rng.integers(1, 11, n_clicks)
    fp = '{"baseline":{"model":"aaaaaaaaaaaaaaaa","index":"bbbbbbbbbbbbbbbb"},"finetuned":{"model":"cccc","index":"dddd"}}'
    day_of = ((ts - 1_700_006_400.0) // 86_400).astype(int)
    folders: dict[tuple[str, int], Path] = {}
    written = [0]

    def put(table: str, day: int, columns: dict) -> None:  # type: ignore[type-arg]
        key = (table, day)
        if key not in folders:
            date = time.strftime("%Y-%m-%d", time.gmtime(1_700_006_400 + day * 86_400))
            folders[key] = root / table / partition_name("bench") / f"date={date}"
            folders[key].mkdir(parents=True, exist_ok=True)
        schema = SCHEMAS[table]
        data = pa.table({c: pa.array(columns[c], type=schema.field(c).type) for c in schema.names}, schema=schema)
        written[0] += 1
        pq.write_table(data, folders[key] / f"ingest-{time.time_ns():020d}-bench-{written[0]:06d}.parquet",
                       compression="zstd")

    for lo in range(0, n_imps, per_file):
        hi = min(n_imps, lo + per_file)
        idx = np.arange(lo, hi)
        for day in np.unique(day_of[lo:hi]):
            sel = idx[day_of[lo:hi] == day]
            results = ["[" + ",".join(f'{{"doc_id":"d{d}","position":{p + 1},"score":{sc},"team":null}}'
                                      for p, (d, sc) in enumerate(zip(docs[i], scores[i]))) + "]" for i in sel]
            m = len(sel)
            put("impressions", int(day), {
                "impression_id": [f"i{i}" for i in sel], "experiment_id": ["bench"] * m, "ts": ts[sel],
                "unit_id": [f"user-{u}" for u in units[sel]], "arm": arms[sel], "mode": ["ab"] * m,
                "query": [f"query number {q} about a topic" for q in queries[sel]], "k": [10] * m,
                "results": results, "fingerprints": [fp] * m, "latency_ms": rng.uniform(5, 40, m),
                "fallback": [0] * m, "error": [None] * m, "shadow_results": [None] * m,
                "context": ['{"device":"mobile"}'] * m, "has_error": [0] * m})
    for lo in range(0, n_clicks, per_file):
        sel = clicked[lo:lo + per_file]
        p = pos[lo:lo + per_file]
        cts = ts[sel] + rng.uniform(0.5, 30, len(sel))
        cday = ((cts - 1_700_006_400.0) // 86_400).astype(int)
        for day in np.unique(cday):
            k = cday == day
            s, pp = sel[k], p[k]
            m = len(s)
            put("clicks", int(day), {
                "impression_id": [f"i{i}" for i in s], "doc_id": [f"d{docs[i, q - 1]}" for i, q in zip(s, pp)],
                "experiment_id": ["bench"] * m, "unit_id": [f"user-{u}" for u in units[s]], "arm": arms[s],
                "ts": cts[k], "position": pp, "team": [None] * m, "dwell_ms": [None] * m})
    return n_imps, n_clicks, time.perf_counter() - t0


def timed(fn) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", default="1000000,3000000", help="sizes (events: impressions + clicks)")
    ap.add_argument("--file-events", type=int, default=20_000)
    ap.add_argument("--keep", default=None, help="keep the largest directory here (else a temp dir, removed)")
    args = ap.parse_args()

    from abharness.analysis import AnalysisOptions, analyze
    from abharness.stores.parquet import ParquetStore

    print(f"Parquet analysis benchmark on {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    rows = []
    for n in [int(x) for x in args.events.split(",")]:
        tmp = Path(tempfile.mkdtemp(prefix="abh_scale_pq_"))
        try:
            before = load()
            imps, clicks, wsec = write(tmp / "pq", n, args.file_events)
            nbytes = sum(p.stat().st_size for p in (tmp / "pq").rglob("*.parquet"))
            nfiles = len(list((tmp / "pq").rglob("*.parquet")))
            print(f"\n{n:,} events ({imps:,} impressions, {clicks:,} clicks) generated and written in {wsec:.1f} s "
                  f"(load {before} -> {load()}); {nfiles} files, "
                  f"{nbytes / 1e6:.1f} MB, {nbytes / n:.0f} bytes/event")
            result = {"events": n, "impressions": imps, "bytes": nbytes}
            for label, dedupe in (("unit_aggregates, no dedupe (baseline)", False),
                                  ("unit_aggregates, one row per key", None)):
                store = ParquetStore(tmp / "pq", dedupe=dedupe)
                before = load()
                sec, units = timed(lambda: sum(1 for _ in store.unit_aggregates("bench")))
                store.close()
                print(f"  {label:<42}{sec:>8.2f} s {imps / sec:>12,.0f} impressions/s  {units} unit rows  "
                      f"load {before} -> {load()}")
                result[label] = sec
            store = ParquetStore(tmp / "pq")
            before = load()
            opts = AnalysisOptions(control="baseline", bootstrap_samples=200)
            sec, rep = timed(lambda: analyze(store, "bench", options=opts))
            store.close()
            print(f"  {'whole analyze report, one row per key':<42}{sec:>8.2f} s {imps / sec:>12,.0f} impressions/s  "
                  f"load {before} -> {load()}")
            result["analyze"] = sec
            rows.append(result)
            if args.keep and n == max(int(x) for x in args.events.split(",")):
                shutil.copytree(tmp / "pq", args.keep, dirs_exist_ok=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        size = b["impressions"] / a["impressions"]
        print(f"\ngrowth from {a['events']:,} to {b['events']:,} events: impressions x{size:.2f}; time x"
              + ", x".join(f"{b[k] / a[k]:.2f} ({k})" for k in a if k not in ("events", "impressions", "bytes")))
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
