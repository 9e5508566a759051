"""Benchmark: the cost of the readiness probe (``store.ping()``) that proves the store can take a write, beside
the old probe that never wrote, in one run.

    .venv/bin/python loadtest/bench_probe.py [--n 500] [--pg-url postgresql://...]

Rows printed, per store:
  write probe    ``ping()`` as /readyz runs it: schema check + one committed heartbeat row (INSERT ... ON CONFLICT
                 DO UPDATE in its own transaction)
  no-write probe the previous check, for comparison: SQLite ``BEGIN IMMEDIATE; ROLLBACK`` (takes the write lock
                 but never writes), PostgreSQL ``SELECT`` of the schema version

Each probe runs ``--n`` times after 20 warm-up calls, sequentially, against a fresh store; p50/p90/p99 in ms.
SQLite is a file in a temporary directory (WAL, synchronous=NORMAL); PostgreSQL a fresh database on
127.0.0.1:5432 when it answers, else a throw-away cluster (fsync on), else the row is skipped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from abharness.stores import open_store  # noqa: E402


def _time(fn: Callable[[], object], n: int) -> list[float]:
    for _ in range(20):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _row(name: str, probe: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=100)
    return f"{name:<12}{probe:<16}{len(ms):>6}{statistics.median(ms):>10.3f}{q[89]:>10.3f}{q[98]:>10.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--pg-url", default=None, help="admin URL of a PostgreSQL server (default: find one)")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'store':<12}{'probe':<16}{'n':>6}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/events.db")

        def old_sqlite() -> None:
            with store._conn() as conn:  # the probe before the heartbeat: locks, never writes
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")

        print(_row("sqlite", "write probe", _time(store.ping, args.n)))
        print(_row("sqlite", "no-write probe", _time(old_sqlite, args.n)))
        store.close()
    from abharness.stores.pgtemp import TempCluster, create_database, drop_database, find_bindir, server_answers

    admin, cluster = args.pg_url, None
    if admin is None:
        if server_answers("postgresql://postgres@127.0.0.1:5432/postgres"):
            admin = "postgresql://postgres@127.0.0.1:5432/postgres"
        elif find_bindir() is not None:
            cluster = TempCluster(fsync=True).start()
            admin = cluster.url()
    if admin is None:
        print("postgresql  skipped: no server answers on 127.0.0.1:5432 and no local binaries")
        return
    name = create_database(admin, prefix="abh_probe")
    try:
        store = open_store(admin.rsplit("/", 1)[0] + f"/{name}")
        print(_row("postgresql", "write probe", _time(store.ping, args.n)))
        print(_row("postgresql", "no-write probe", _time(lambda: store.execute("SELECT MAX(version) FROM "
                                                                              "schema_migrations"), args.n)))
        store.close()
    finally:
        drop_database(admin, name)
        if cluster is not None:
            cluster.cleanup()


if __name__ == "__main__":
    main()
