"""Benchmark: `abharness analyze` over 10 million impressions from 1 million units, before and after the rollups,
on SQLite and (with --pg-url) PostgreSQL, side by side in one run.

    .venv/bin/python loadtest/bench_analysis.py [--db artifacts/bench/analysis_10m.db] [--impressions 10000000]
        [--units 1000000] [--rebuild] [--bootstrap 200] [--timeseries-points 8] [--skip-before] [--before-code DIR]
        [--pg-url postgresql://postgres@127.0.0.1:5432/abh_bench_analysis_10m]

Build (skipped when --db already holds the experiment with the requested size, unless --rebuild): the schema is
created by the store itself at the version before the rollups; rows are bulk-loaded with ``executemany`` in the
store's own column layout (``abharness.stores.codec``), secondary indexes dropped during the load and re-created
afterwards; then ``migrate()`` upgrades the file to the latest schema, which backfills the rollup tables (timed:
the cost of upgrading an existing store). Units have 1 + Poisson(m - 1) searches (fixed up to the exact total), a
Beta click propensity (repeated users, ICC > 0), and the treatment a +2 % relative CTR lift. ``--pg-url`` names a
database that ``loadtest/bench_pgload.py`` fills from the SQLite file (done here when it is empty).

Each timed phase runs in its own process (so its peak RSS is its own), with the default output of ``analyze``:
SRM, 6 metrics and 3 guardrails, CUPED probe, 200-resample cluster bootstrap, power, the 8-look time series,
traffic per day and the deployment check.
  scan:   ``aggregation="scan"`` with the store's rollups switched off (``store.rollup_enabled = False``): every
          read rescans the raw impressions and clicks (skipped with --skip-before; it takes minutes)
  before: with ``--before-code DIR``, the default path of the abharness tree in DIR (e.g. ``git worktree add DIR
          <commit>``): the code a change is measured against, on the same store
  after:  the default path of this tree, on the store migrated to this tree's latest schema first (timed, printed)
Every phase must give the same report as "after": 251 numbers (each metric's and guardrail's estimates, intervals,
p-values and bootstrap; every look of the time series; SRM, power, traffic) compared to 1e-9, plus the decision.
Wall time depends on the machine's load (printed); CPU seconds of the analysing process are printed beside it, and
those of its child processes (the SQLite rollup reader) with their peak RSS (PostgreSQL's own work runs in its
server processes and is in neither figure).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if "--run-phase" not in sys.argv:
    sys.path.insert(0, str(ROOT))

EXPERIMENT = "bench-analysis"
T0 = 1_767_225_600.0  # 2026-01-01
SPAN_S = 14 * 86_400.0


def build(path: Path, n_imps: int, n_units: int, seed: int = 0) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from abharness.stores import open_store
    from abharness.stores.codec import CLICK_COLUMNS, IMPRESSION_COLUMNS

    from abharness.stores import rollup

    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    store = open_store(f"sqlite:///{path}", migrate=False)  # the store creates its own schema, before the rollups
    store.migrate(target=rollup.SCHEMA_VERSION - 1)
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
    t = time.perf_counter()
    open_store(f"sqlite:///{path}").close()  # upgrade: backfills impression_facts and the rollups
    print(f"migrate (backfill of the rollups): {time.perf_counter() - t:.1f} s")


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


def _numbers(report) -> list[float]:
    """Every number the comparison checks: per metric and guardrail the estimate, its interval, p-values and the
    bootstrap's; per look of the time series its units, lift, intervals and p-values; SRM and power."""
    out: list[float] = [report.srm.p_value]
    for c in (*report.metrics.values(), *report.guardrails.values()):
        out += [c.control.value, c.treatment.value, c.lift, c.relative_lift, c.lift_lower, c.lift_upper, c.p_value,
                c.always_valid_p, c.seq_lower, c.seq_upper]
        out += [x for x in (c.bootstrap_se, c.bootstrap_lower, c.bootstrap_upper) if x is not None]
    for pt in report.timeseries:
        out += [pt.units, pt.lift, pt.lower, pt.upper, pt.seq_lower, pt.seq_upper, pt.p_value, pt.always_valid_p]
    for pw in report.power:
        out += [pw.sigma2_unit, pw.required_units, pw.mde_absolute]
    out += [t.units for t in report.traffic] + [t.impressions for t in report.traffic]
    return [float(x) for x in out]


def phase(url: str, scan: bool, bootstrap: int, points: int, units: int) -> dict:
    """One analysis (run in a fresh process): wall and CPU seconds, peak RSS, and the numbers to compare."""
    from abharness.analysis import AnalysisOptions, analyze
    from abharness.stores import open_store

    store = open_store(url, migrate=False)
    if scan:
        store.rollup_enabled = False
    opts = AnalysisOptions(bootstrap_samples=bootstrap, timeseries_points=points, control="baseline",
                           weights={"baseline": 0.5, "finetuned": 0.5}, tuning_units=units,
                           aggregation="scan" if scan else "rollup")
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    t, c = time.perf_counter(), time.process_time()
    report = analyze(store, EXPERIMENT, options=opts)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    store.close()
    after_kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_children = (after_kids.ru_utime + after_kids.ru_stime) - (kids.ru_utime + kids.ru_stime)
    ctr = report.metrics["ctr"]
    return {"wall": wall, "cpu": cpu, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "cpu_children": cpu_children, "rss_children_mib": after_kids.ru_maxrss / 1024,
            "decision": report.decision, "lift": ctr.relative_lift, "p": ctr.p_value, "units": report.units,
            "looks": [p.lift for p in report.timeseries], "numbers": _numbers(report), "load": os.getloadavg()[0],
            "summary": f"CTR {ctr.control.value:.4f} -> {ctr.treatment.value:.4f} ({ctr.relative_lift:+.2%}, "
                       f"p={ctr.p_value:.3g}, always-valid p={ctr.always_valid_p:.3g}); SRM p={report.srm.p_value:.3g}"}


def run_phase(url: str, mode: str, args: argparse.Namespace) -> dict:
    """``mode``: "after" (this tree, rollups), "scan" (this tree, raw rows) or "before" (the tree at
    ``--before-code``, rollups): a fresh interpreter with that tree first on the path."""
    code = args.before_code if mode == "before" else ROOT
    env = {**os.environ, "PYTHONPATH": str(code)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-phase", url, "--code", str(code),
           "--bootstrap", str(args.bootstrap), "--timeseries-points", str(args.timeseries_points),
           "--units", str(args.units)] + (["--scan"] if mode == "scan" else [])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        raise SystemExit(f"the {mode} phase on {url} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def migrate_latest(name: str, url: str) -> None:
    """Bring the store to this tree's latest schema before its "after" phase (the "before" and "scan" phases, run
    first, see it as it was: e.g. without the PostgreSQL covering index of schema 6). Timed when it does work."""
    from abharness.stores import open_store
    from abharness.stores.schema import LATEST_VERSION

    store = open_store(url, migrate=False)
    current = store.schema_version()
    store.close()
    if current < LATEST_VERSION:
        t = time.perf_counter()
        open_store(url).close()
        print(f"{name}: migrate {current} -> {LATEST_VERSION}: {time.perf_counter() - t:.1f} s", flush=True)


def same(a: dict, b: dict) -> bool:
    close = lambda x, y: (x != x and y != y) or abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y))  # noqa: E731
    return (a["decision"] == b["decision"] and a["units"] == b["units"] and len(a["numbers"]) == len(b["numbers"])
            and all(close(x, y) for x, y in zip(a["numbers"], b["numbers"])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=Path, default=None,
                    help="SQLite file (default artifacts/bench/analysis_10m.db, or analysis_<N>.db for other sizes)")
    ap.add_argument("--impressions", type=int, default=10_000_000)
    ap.add_argument("--units", type=int, default=1_000_000)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--timeseries-points", type=int, default=8)
    ap.add_argument("--skip-before", action="store_true", help="no scan phase (the full rescan takes minutes)")
    ap.add_argument("--before-code", type=Path, default=None,
                    help="also run the rollup path of the abharness tree in this directory (e.g. a git worktree of "
                         "an earlier commit) on the same store, as the 'before' the numbers are compared with")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--pg-url", default=None, help="a PostgreSQL database to run the same phases on")
    ap.add_argument("--summary-json", type=Path, default=None, help="also write the figures there (make bench)")
    ap.add_argument("--run-phase", default=None, help=argparse.SUPPRESS)  # internal: one phase, JSON on stdout
    ap.add_argument("--code", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--scan", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_phase:
        sys.path.insert(0, str(args.code))
        for mod in [m for m in sys.modules if m == "abharness" or m.startswith("abharness.")]:
            del sys.modules[mod]
        print(json.dumps(phase(args.run_phase, args.scan, args.bootstrap, args.timeseries_points, args.units)))
        return
    if args.db is None:
        name = "analysis_10m.db" if args.impressions == 10_000_000 else f"analysis_{args.impressions}.db"
        args.db = ROOT / "artifacts" / "bench" / name

    args.db.parent.mkdir(parents=True, exist_ok=True)
    if args.rebuild or existing_size(args.db) != args.impressions:
        t = time.perf_counter()
        build(args.db, args.impressions, args.units)
        print(f"build time {time.perf_counter() - t:.1f} s")
    else:
        print(f"reusing {args.db} ({args.impressions:,} impressions)")
    stores = [] if args.skip_sqlite else [("SQLite", f"sqlite:///{args.db}")]
    if args.pg_url:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        dbname = conninfo_to_dict(args.pg_url).get("dbname")
        if dbname:  # made on first use (through the server's maintenance database)
            with psycopg.connect(make_conninfo(args.pg_url, dbname="postgres"), autocommit=True) as conn:
                if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is None:
                    conn.execute(f'CREATE DATABASE "{dbname}"')
        with psycopg.connect(args.pg_url) as conn:
            loaded = conn.execute("SELECT to_regclass('impressions') IS NOT NULL").fetchone()[0]
        if not loaded:
            from bench_pgload import copy_store

            for step, secs in copy_store(args.db, args.pg_url).items():
                print(f"PostgreSQL {step}: {secs:.1f} s")
        stores.append(("PostgreSQL", args.pg_url))
    modes = ([] if args.skip_before else ["scan"]) + (["before"] if args.before_code else []) + ["after"]
    labels = {"scan": "scan", "before": "before", "after": "after"}
    rows = []
    for name, url in stores:
        results = {}
        for mode in modes:
            if mode == "after":
                migrate_latest(name, url)
            results[mode] = run_phase(url, mode, args)
            r = results[mode]
            print(f"{name} {mode}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU (+{r.get('cpu_children', 0):.1f} s in "
                  f"child processes), {r['rss_mib']:.0f} MiB (child {r.get('rss_children_mib', 0):.0f} MiB) "
                  f"(load {r['load']:.1f})", flush=True)
        rows.append((name, results))

    n = args.impressions
    print(f"\nanalyze, default output ({args.bootstrap}-resample bootstrap, {args.timeseries_points}-look time series), "
          f"{n:,} impressions, {args.units:,} units; {os.cpu_count()} CPUs. scan: every read rescans the raw rows; "
          f"before: the rollup path of {args.before_code or '-'}; after: this tree")
    print(f"{'store':<11}{'path':<8}{'wall s':>9}{'CPU s':>8}{'child CPU s':>13}{'peak RSS MiB':>14}{'child RSS':>11}"
          f"{'load avg':>10}{'impressions/s':>15}  same numbers as after (1e-9)")
    for name, results in rows:
        after = results["after"]
        for mode, r in results.items():
            ok = "" if mode == "after" else ("yes" if same(r, after) else "NO")
            print(f"{name:<11}{labels[mode]:<8}{r['wall']:>9.1f}{r['cpu']:>8.1f}{r.get('cpu_children', 0):>13.1f}"
                  f"{r['rss_mib']:>14.0f}{r.get('rss_children_mib', 0):>11.0f}{r['load']:>10.1f}"
                  f"{n / r['wall']:>15,.0f}  {ok}")
        for mode, r in results.items():
            if mode != "after":
                tot = lambda x: x["cpu"] + x.get("cpu_children", 0.0)  # noqa: E731
                print(f"{'':<11}{mode} -> after: {r['wall'] / after['wall']:.1f}x wall, {tot(r) / tot(after):.1f}x "
                      "CPU (of the analysing process and its children)")
        print(f"{'':<11}{after['summary']}; {len(after['numbers'])} numbers compared")
    if args.summary_json:
        table = []
        for name, results in rows:
            for mode, r in results.items():
                table.append({"figure": f"analyze {n:,} impressions, {name}, {labels[mode]}",
                              "value": f"{r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU "
                                       f"(+{r.get('cpu_children', 0):.1f} s child), {r['rss_mib']:.0f} MiB "
                                       f"(load {r['load']:.1f})",
                              "goal": "<= 10 s, <= 1 GiB" if mode == "after" else "baseline"})
        args.summary_json.write_text(json.dumps({"table": table}, indent=2))


if __name__ == "__main__":
    main()
