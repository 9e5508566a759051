"""CPU time per event of ``write_batch``, robust to other jobs on the machine (wall time is not).

    .venv/bin/python loadtest/bench_store_cpu.py [--store sqlite|postgresql] [--events 100000] [--batch 5000]
                                                 [--src DIR] [--pg-admin URL]

Writes the events of ``bench_store.make_events`` with ``store.write_batch`` in ``--batch``-event batches (the
writer's batch when it is behind) in this process and prints the wall time, this process's CPU time
(``time.process_time``: user + system, all threads) and, for PostgreSQL, the CPU time of the database's backends
(``/proc/<pid>/stat`` of every backend connected to the fresh database; the server must run on this machine).
``--src``: import abharness from that tree (e.g. a worktree of an older commit) to compare; run the two
interleaved several times, the figures still vary by ~10 %.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def backend_cpu_s(admin: str, dbname: str) -> float:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (dbname,))]
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--src", default=None, help="source tree to import abharness from (default: this checkout)")
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    sys.path.insert(0, args.src or str(ROOT))
    sys.path.insert(0, str(ROOT / "loadtest"))
    from bench_store import make_events

    from abharness.stores import open_store

    events = make_events(args.events, seed="cpu")
    dbname = None
    if args.store == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp(prefix='abh_cpu_')}/events.db"
    else:
        from abharness.stores.pgtemp import create_database

        dbname = create_database(args.pg_admin, prefix="abh_cpu")
        url = f"{args.pg_admin.rsplit('/', 1)[0]}/{dbname}"
    store = open_store(url)
    try:
        store.write_batch(events[:10])  # opens the connection (its backend is then counted from the start)
        server0 = backend_cpu_s(args.pg_admin, dbname) if dbname else 0.0
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(10, args.events, args.batch):
            store.write_batch(events[i:i + args.batch])
        wall, client = time.perf_counter() - t0, time.process_time() - c0
        server = backend_cpu_s(args.pg_admin, dbname) - server0 if dbname else 0.0
    finally:
        store.close()
        if dbname:
            from abharness.stores.pgtemp import drop_database

            drop_database(args.pg_admin, dbname)
    n = args.events - 10
    total = client + server
    print(f"{args.store} ({args.src or 'this checkout'}): {n} events, wall {wall:.2f} s ({n / wall:,.0f} events/s), "
          f"client CPU {client:.2f} s" + (f", backend CPU {server:.2f} s" if dbname else "")
          + f", total CPU {total:.2f} s ({n / total:,.0f} events per CPU-second); load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
