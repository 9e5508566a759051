"""Benchmark: events per second the background EventWriter sustains into each store, side by side in one run.

    .venv/bin/python loadtest/bench_store.py [--events 100000] [--batch-size 500] [--pg-url postgresql://...]
                                             [--aggregate] [--baseline-src DIR] [--no-bare]

Rows printed:
  sqlite      1 writer process  -> a fresh SQLite file (WAL, synchronous=NORMAL)
  postgresql  1 writer process  -> a fresh PostgreSQL database
  postgresql  2 writer processes (two proxy replicas) -> the same database, at the same time
  bare, bare-pk (the ceiling, no abharness code on the write path): the same events' rows, encoded before the
              clock starts, written by a plain executemany (SQLite) / COPY (PostgreSQL), one transaction per
              10 x batch-size events (the writer's batch when it is behind), no duplicate handling, no rollups;
              "bare" into the schema's impressions/clicks with all their indexes, "bare-pk" with primary keys only

Each writer process pre-builds its events (proxy-like: impressions with 10 ranked results and fingerprints, 30%
followed by a click), then, once every process is ready, submits them all and closes the writer (close() returns
when everything accepted is committed). Throughput = events committed / wall time from the common start to the
last writer's close(). The queue is sized to hold all events, so nothing is dropped and the figure is the
store-bound commit rate, not the producer's speed. Commit latency per batch comes from the writer's
``on_write_seconds`` hook (what the proxy's ``abharness_store_write_seconds`` histogram sees).

PostgreSQL: by default a fresh database on 127.0.0.1:5432 (dropped afterwards); when nothing answers there, a
throw-away cluster with fsync on (so the figures include real commits). ``--aggregate`` also times
``unit_aggregates`` over what was written.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def make_events(n: int, *, seed: str) -> list:
    """``n`` proxy-like events: impressions (10 results, fingerprints, context) and clicks on 30% of them."""
    import random

    from abharness.core.events import Click, Impression, ShownResult

    rng = random.Random(seed)
    events: list = []
    i = 0
    t = 1_700_000_000.0
    fp = {"baseline": {"model": "a" * 16, "index": "b" * 16}}
    while len(events) < n:
        i += 1
        t += 0.001
        arm = "baseline" if rng.random() < 0.5 else "finetuned"
        imp_id = f"{seed}-{i}"
        unit = f"user-{rng.randrange(50_000)}"
        results = tuple(ShownResult(f"doc-{rng.randrange(5000)}", p, 1.0 - p / 20, None) for p in range(1, 11))
        events.append(
            Impression(imp_id, "bench", t, unit, arm, "ab", "a typical query of a few words", 10, results,
                       fingerprints=fp, latency_ms=rng.uniform(5, 40), context={"device": "mobile"})
        )
        if len(events) < n and rng.random() < 0.3:
            pos = rng.randrange(1, 11)
            events.append(Click(imp_id, "bench", unit, arm, t + 2.0, results[pos - 1].doc_id, pos))
    return events


def writer_process(url: str, n: int, batch_size: int, seed: str, ready, go, out, src: str | None = None) -> None:
    """One replica's writer: build events, wait for the common start, submit all, close, report. ``src``: the
    source tree to import abharness from (the baseline), else this checkout."""
    if src:
        sys.path.insert(0, src)
    from abharness.stores import open_store
    from abharness.stores.writer import EventWriter

    events = make_events(n, seed=seed)
    store = open_store(url)
    commits: list[float] = []
    writer = EventWriter(store, max_queue=n + 1, batch_size=batch_size, flush_interval_s=0.05,
                         on_write_seconds=commits.append).start()
    ready.put(os.getpid())
    go.wait()
    t0 = time.perf_counter()
    accepted = sum(writer.submit(e) for e in events)
    lost = writer.close(timeout_s=600)
    t1 = time.perf_counter()
    out.put({"t0": t0, "t1": t1, "accepted": accepted, "lost": lost, "stored": writer.stored,
             "dropped": writer.dropped, "commits": commits, "wall_start": time.time() - (t1 - t0)})
    store.close()


def bare_process(url: str, n: int, batch: int, seed: str, pk_only: bool, out) -> None:
    """The ceiling: the same events' rows, encoded before the clock starts, written by a bare ``executemany``
    (SQLite) or ``COPY`` (PostgreSQL) into ``impressions`` and ``clicks``, one transaction per ``batch`` events,
    no duplicate handling and no rollups. ``pk_only``: into copies of the two tables with their primary keys only
    (no secondary index); else into the migrated tables with every index of the schema."""
    from abharness.core.events import Impression
    from abharness.stores import codec, open_store

    events = make_events(n, seed=seed)
    open_store(url).close()  # the schema (migrations); nothing of abharness below
    chunks = [codec.encode_batch(events[i:i + batch]) for i in range(0, n, batch)]
    assert sum(len(c.impressions) for c in chunks) == sum(isinstance(e, Impression) for e in events)
    imp_table, click_table = ("bare_impressions", "bare_clicks") if pk_only else ("impressions", "clicks")
    imp_cols, click_cols = ", ".join(codec.IMPRESSION_COLUMNS), ", ".join(codec.CLICK_COLUMNS)
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if pk_only:
            conn.execute(f"CREATE TABLE {imp_table} AS SELECT * FROM impressions WHERE 0")
            conn.execute(f"CREATE UNIQUE INDEX {imp_table}_pk ON {imp_table} (impression_id)")
            conn.execute(f"CREATE TABLE {click_table} AS SELECT * FROM clicks WHERE 0")
            conn.execute(f"CREATE UNIQUE INDEX {click_table}_pk ON {click_table} (impression_id, doc_id)")
        ins_imp = f"INSERT INTO {imp_table} ({imp_cols}) VALUES ({', '.join('?' for _ in codec.IMPRESSION_COLUMNS)})"
        ins_click = f"INSERT INTO {click_table} ({click_cols}) VALUES ({', '.join('?' for _ in codec.CLICK_COLUMNS)})"
        t0 = time.perf_counter()
        for c in chunks:
            conn.execute("BEGIN")
            conn.executemany(ins_imp, c.impressions)
            conn.executemany(ins_click, c.clicks)
            conn.execute("COMMIT")
        t1 = time.perf_counter()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url) as conn:
            if pk_only:
                conn.execute(f"CREATE TABLE {imp_table} (LIKE impressions INCLUDING DEFAULTS)")
                conn.execute(f"ALTER TABLE {imp_table} ADD PRIMARY KEY (impression_id)")
                conn.execute(f"CREATE TABLE {click_table} (LIKE clicks INCLUDING DEFAULTS)")
                conn.execute(f"ALTER TABLE {click_table} ADD PRIMARY KEY (impression_id, doc_id)")
                conn.commit()
            t0 = time.perf_counter()
            for c in chunks:
                with conn.transaction(), conn.cursor() as cur:
                    for table, cols, rows in ((imp_table, imp_cols, c.impressions),
                                              (click_table, click_cols, c.clicks)):
                        with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                            for row in rows:
                                copy.write_row(row)
            t1 = time.perf_counter()
    out.put({"t0": t0, "t1": t1, "events": n})


def run_bare(url: str, n: int, batch: int, pk_only: bool) -> dict:
    """``bare_process`` in a process of its own (like the writers)."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=bare_process, args=(url, n, batch, uuid.uuid4().hex[:8], pk_only, out))
    p.start()
    r = out.get(timeout=1200)
    p.join()
    seconds = r["t1"] - r["t0"]
    return {"writers": 1, "events": r["events"], "seconds": seconds, "rate": r["events"] / seconds, "lost": 0,
            "dropped": 0, "batches": -(-n // batch), "commit_ms_p50": float("nan"), "commit_ms_p99": float("nan")}


def run(url: str, writers: int, n: int, batch_size: int, src: str | None = None) -> dict:
    """Run ``writers`` writer processes into ``url`` at once; aggregate their figures."""
    ctx = mp.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=writer_process,
                         args=(url, n, batch_size, uuid.uuid4().hex[:8], ready, go, out, src))
             for _ in range(writers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=600)
    start = time.time()
    go.set()
    results = [out.get(timeout=1200) for _ in procs]
    end = time.time()
    for p in procs:
        p.join()
    commits = sorted(c for r in results for c in r["commits"])
    stored = sum(r["stored"] for r in results)
    return {
        "writers": writers,
        "events": stored,
        "seconds": end - start,
        "rate": stored / (end - start),
        "lost": sum(r["lost"] for r in results),
        "dropped": sum(r["dropped"] for r in results),
        "batches": len(commits),
        "commit_ms_p50": 1000 * statistics.median(commits) if commits else float("nan"),
        # nearest rank (with few batches, p99 is the slowest one)
        "commit_ms_p99": 1000 * commits[max(0, -(-99 * len(commits) // 100) - 1)] if commits else float("nan"),
    }


def time_aggregate(url: str) -> tuple[int, float]:
    from abharness.stores import open_store

    store = open_store(url)
    t0 = time.perf_counter()
    n = sum(1 for _ in store.unit_aggregates("bench"))
    dt = time.perf_counter() - t0
    store.close()
    return n, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000, help="events per writer process")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--pg-url", default=None, help="admin URL of a PostgreSQL server (a fresh database is made)")
    ap.add_argument("--aggregate", action="store_true", help="also time unit_aggregates over the written events")
    ap.add_argument("--baseline-src", default=None,
                    help="source tree of the code to compare with, run in the same invocation (e.g. a git worktree "
                         "of the commit before the rollups); its rows are labelled 'before'")
    ap.add_argument("--no-bare", action="store_true", help="skip the ceiling rows (bare executemany / COPY)")
    ap.add_argument("--db-prefix", default="abh_bench",
                    help="name prefix of the PostgreSQL databases made (and dropped)")
    ap.add_argument("--summary-json", default=None, help="also write the figures there (make bench)")
    args = ap.parse_args()

    from abharness.stores.pgtemp import TempCluster, create_database, drop_database, server_answers

    rows = []
    versions = [("after", None)] + ([("before", args.baseline_src)] if args.baseline_src else [])
    bare_batch = 10 * args.batch_size  # the writer's batches when it is behind (max_batch_size default)
    with tempfile.TemporaryDirectory(prefix="abh_bench_") as tmp:
        for label, src in versions:
            sqlite_url = f"sqlite:///{Path(tmp) / f'events-{label}.db'}"
            rows.append(("sqlite", label, run(sqlite_url, 1, args.events, args.batch_size, src), sqlite_url))
        if not args.no_bare:
            for pk_only, label in ((False, "bare"), (True, "bare-pk")):
                sqlite_url = f"sqlite:///{Path(tmp) / f'events-{label}.db'}"
                rows.append(("sqlite", label, run_bare(sqlite_url, args.events, bare_batch, pk_only), None))

        cluster = None
        admin = args.pg_url or SYSTEM_PG
        if not server_answers(admin):
            if args.pg_url:
                sys.exit(f"no PostgreSQL answers at {args.pg_url}")
            cluster = TempCluster(fsync=True).start()
            admin = cluster.url()
        base = admin.rsplit("/", 1)[0]
        made = []
        try:
            for writers in (1, 2):
                for label, src in versions:
                    name = create_database(admin, prefix=args.db_prefix)
                    made.append(name)
                    url = f"{base}/{name}"
                    rows.append(("postgresql", label, run(url, writers, args.events, args.batch_size, src), url))
            if not args.no_bare:
                for pk_only, label in ((False, "bare"), (True, "bare-pk")):
                    name = create_database(admin, prefix=args.db_prefix)
                    made.append(name)
                    rows.append(("postgresql", label, run_bare(f"{base}/{name}", args.events, bare_batch, pk_only),
                                 None))
            print(f"\nEventWriter throughput ({args.events} events per writer process, batch_size "
                  f"{args.batch_size}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; PostgreSQL at "
                  f"{base.split('@')[-1]}{' (throw-away cluster)' if cluster else ''}"
                  f"{'; before = ' + args.baseline_src if args.baseline_src else ''})")
            print(f"(bare = pre-encoded rows of the same events written by a plain executemany (SQLite) / COPY "
                  f"(PostgreSQL) into impressions + clicks with every index, {bare_batch} events per transaction, "
                  "no duplicate handling, no rollups; bare-pk = the same into tables with primary keys only)")
            print(f"{'store':<11}{'code':<8}{'writers':>8}{'events':>10}{'seconds':>9}{'events/s':>11}"
                  f"{'batches':>9}{'commit p50 ms':>15}{'commit p99 ms':>15}{'dropped':>9}{'lost':>6}")
            for store, label, r, _ in rows:
                print(f"{store:<11}{label:<8}{r['writers']:>8}{r['events']:>10}{r['seconds']:>9.2f}{r['rate']:>11,.0f}"
                      f"{r['batches']:>9}{r['commit_ms_p50']:>15.2f}{r['commit_ms_p99']:>15.2f}"
                      f"{r['dropped']:>9}{r['lost']:>6}")
            if args.summary_json:
                import json

                goal = {"sqlite": ">= 50,000 events/s", "postgresql": ">= 25,000 events/s"}
                Path(args.summary_json).write_text(json.dumps({"table": [
                    {"figure": (f"ceiling: {label} {'executemany' if store == 'sqlite' else 'COPY'} of pre-encoded "
                                f"rows into {store}" if label.startswith("bare")
                                else f"writer into {store}, {r['writers']} process(es), {label}"),
                     "value": f"{r['rate']:,.0f} events/s (load {os.getloadavg()[0]:.1f})",
                     "goal": goal[store] if label == "after"
                     else ("ceiling" if label.startswith("bare") else "baseline")}
                    for store, label, r, _ in rows]}, indent=2))
            if args.aggregate:
                print("\nunit_aggregates over the written events (SQL-side):")
                for store, label, r, url in rows:
                    if url is None:
                        continue
                    n, dt = time_aggregate(url)
                    print(f"  {store:<11} {label:<7} {r['writers']} writer(s): {n} unit rows in {dt:.2f} s")
        finally:
            for name in made:
                drop_database(admin, name)
            if cluster is not None:
                cluster.cleanup()


if __name__ == "__main__":
    main()
