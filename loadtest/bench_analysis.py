"""Benchmark: `abharness analyze` over 10 million impressions from 1 million units in the SQLite store.

    .venv/bin/python loadtest/bench_analysis.py [--db artifacts/bench/analysis_10m.db] [--impressions 10000000]
        [--units 1000000] [--rebuild] [--bootstrap 200] [--timeseries-points 8]

Build (skipped when --db already holds the experiment with the requested size, unless --rebuild): the schema is
created by the store itself (``open_store(...).migrate()``); rows are then bulk-loaded with ``executemany`` in
the store's own column layout (``abharness.stores.codec``), secondary indexes dropped during the load and
re-created from their stored DDL afterwards (standard bulk-load practice; the resulting file is what the store
would have written). Units have 1 + Poisson(m - 1) searches (fixed up to the exact total), a Beta click
propensity (repeated users, ICC > 0), and the treatment a +2 % relative CTR lift.

Timed phases, each from a cold Python object state (the OS page cache is warm after the first):
  1. SQL aggregation only: iterate ``store.unit_aggregates`` (GROUP BY in SQLite) -> rows per (unit, arm)
  2. analyze(): aggregation + SRM + delta-method tests for 6 metrics and 3 guardrails + cluster bootstrap
     (--bootstrap resamples) + power, no time series
  3. analyze() with the cumulative time series (--timeseries-points looks; each look re-aggregates a prefix)
Throughput is impressions analysed per second of wall time.
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXPERIMENT = "bench-analysis"
T0 = 1_767_225_600.0  # 2026-01-01
SPAN_S = 14 * 86_400.0


def build(path: Path, n_imps: int, n_units: int, seed: int = 0) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from abharness.stores import open_store
    from abharness.stores.codec import CLICK_COLUMNS, IMPRESSION_COLUMNS

    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    store = open_store(f"sqlite:///{path}")  # the store creates and migrates its own schema
    store.close()
    rng = np.random.default_rng(seed)
    per_unit = 1 + rng.poisson(n_imps / n_units - 1, n_units)
    diff = int(per_unit.sum()) - n_imps  # fix up to the exact total, keeping >= 1 per unit
    while diff != 0:
        idx = rng.integers(0, n_units, abs(diff))
        if diff > 0:
            idx = idx[per_unit[idx] > 1]
            np.subtract.at(per_unit, idx, 1)
        else:
            np.add.at(per_unit, idx, 1)
        diff = int(per_unit.sum()) - n_imps
    treat = rng.random(n_units) < 0.5
    propensity = rng.beta(0.3 * 3, 0.7 * 3, n_units) * np.where(treat, 1.02, 1.0)
    first_ts = T0 + rng.uniform(0, SPAN_S * 0.8, n_units)

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-524288")
    indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
                           "AND tbl_name IN ('impressions', 'clicks')").fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    imp_sql = f"INSERT INTO impressions ({', '.join(IMPRESSION_COLUMNS)}) VALUES ({', '.join('?' * len(IMPRESSION_COLUMNS))})"
    clk_sql = f"INSERT INTO clicks ({', '.join(CLICK_COLUMNS)}) VALUES ({', '.join('?' * len(CLICK_COLUMNS))})"
    chunk = 20_000
    clicks_total = 0
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn()) as progress:
        task = progress.add_task("loading impressions", total=n_imps)
        for start in range(0, n_units, chunk):
            stop = min(n_units, start + chunk)
            counts = per_unit[start:stop]
            unit_idx = np.repeat(np.arange(start, stop), counts)
            j = np.concatenate([np.arange(c) for c in counts])
            ts = first_ts[unit_idx] + j * rng.exponential(3_600.0, unit_idx.size)
            lat = rng.gamma(4.0, 20.0, unit_idx.size)
            clicked = rng.random(unit_idx.size) < propensity[unit_idx]
            pos = np.minimum(10, rng.geometric(0.35, unit_idx.size))
            ttfc = rng.gamma(2.0, 4.0, unit_idx.size)
            imp_rows, clk_rows = [], []
            for u, jj, t, la, c, p, tf in zip(unit_idx.tolist(), j.tolist(), ts.tolist(), lat.tolist(),
                                              clicked.tolist(), pos.tolist(), ttfc.tolist()):
                iid = f"{u:07d}-{jj:03d}"
                uid = f"user{u:07d}"
                arm = "finetuned" if treat[u] else "baseline"
                imp_rows.append((iid, EXPERIMENT, t, uid, arm, "ab", "q", 10, "[]", "{}", la, 0, None, None, "{}", 0))
                if c:
                    clk_rows.append((iid, f"doc{p}", EXPERIMENT, uid, arm, t + tf, p, None, None))
            conn.execute("BEGIN")
            conn.executemany(imp_sql, imp_rows)
            conn.executemany(clk_sql, clk_rows)
            conn.execute("COMMIT")
            clicks_total += len(clk_rows)
            progress.advance(task, len(imp_rows))
        task2 = progress.add_task("re-creating indexes", total=len(indexes))
        for _, sql in indexes:
            conn.execute(sql)
            progress.advance(task2)
    conn.close()
    print(f"built {path}: {n_imps:,} impressions, {clicks_total:,} clicks, {n_units:,} units")


def existing_size(path: Path) -> int:
    if not path.is_file():
        return -1
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM impressions WHERE experiment_id = ?", (EXPERIMENT,)).fetchone()[0])
    except sqlite3.Error:
        return -1
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=Path, default=ROOT / "artifacts" / "bench" / "analysis_10m.db")
    ap.add_argument("--impressions", type=int, default=10_000_000)
    ap.add_argument("--units", type=int, default=1_000_000)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--timeseries-points", type=int, default=8)
    args = ap.parse_args()

    from abharness.analysis import AnalysisOptions, analyze
    from abharness.stores import open_store

    args.db.parent.mkdir(parents=True, exist_ok=True)
    if args.rebuild or existing_size(args.db) != args.impressions:
        t = time.perf_counter()
        build(args.db, args.impressions, args.units)
        print(f"build time {time.perf_counter() - t:.1f} s")
    else:
        print(f"reusing {args.db} ({args.impressions:,} impressions)")
    store = open_store(f"sqlite:///{args.db}")
    n = args.impressions
    results = []

    t = time.perf_counter()
    rows = sum(1 for _ in store.unit_aggregates(EXPERIMENT))
    dt = time.perf_counter() - t
    results.append(("SQL aggregation (unit_aggregates)", dt, f"{rows:,} (unit, arm) rows"))
    print(f"phase 1 done in {dt:.1f} s")

    opts = AnalysisOptions(bootstrap_samples=args.bootstrap, timeseries_points=0, control="baseline",
                           weights={"baseline": 0.5, "finetuned": 0.5}, tuning_units=args.units)
    t = time.perf_counter()
    report = analyze(store, EXPERIMENT, options=opts)
    dt = time.perf_counter() - t
    results.append((f"analyze (aggregation + stats, bootstrap {args.bootstrap})", dt, f"decision {report.decision}"))
    print(f"phase 2 done in {dt:.1f} s")

    if args.timeseries_points:
        opts_ts = AnalysisOptions(bootstrap_samples=args.bootstrap, timeseries_points=args.timeseries_points,
                                  control="baseline", weights={"baseline": 0.5, "finetuned": 0.5},
                                  tuning_units=args.units)
        t = time.perf_counter()
        report_ts = analyze(store, EXPERIMENT, options=opts_ts)
        dt = time.perf_counter() - t
        results.append((f"analyze + time series ({len(report_ts.timeseries)} looks)", dt,
                        f"decision {report_ts.decision}"))
    store.close()

    print()
    print(f"{'phase':<58} {'seconds':>9} {'impressions/s':>15}  note")
    for name, secs, note in results:
        print(f"{name:<58} {secs:>9.1f} {n / secs:>15,.0f}  {note}")
    ctr = report.metrics["ctr"]
    print(f"\nCTR baseline {ctr.control.value:.4f} finetuned {ctr.treatment.value:.4f} lift {ctr.relative_lift:+.2%} "
          f"[{ctr.relative_lower:+.2%}, {ctr.relative_upper:+.2%}] p={ctr.p_value:.3g} "
          f"always-valid p={ctr.always_valid_p:.3g}; SRM p={report.srm.p_value:.3g}; units {report.units}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
