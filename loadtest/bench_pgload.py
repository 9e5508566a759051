"""Copy the benchmark's SQLite event store into a PostgreSQL database (used by ``bench_analysis.py --pg``).

    .venv/bin/python loadtest/bench_pgload.py SQLITE_FILE POSTGRES_URL

The target is created at the schema version before the rollup (``rollup.SCHEMA_VERSION - 1``), the raw
impressions and clicks are streamed over with ``COPY`` (secondary indexes dropped during the load and re-created
from their stored definitions afterwards, then ``ANALYZE``), and finally ``migrate()`` brings it to the latest
schema, which backfills ``impression_facts`` and ``unit_rollup`` the way an existing production store would be
upgraded. Prints the time of each step.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def copy_store(sqlite_path: Path, url: str) -> dict[str, float]:
    """Load ``sqlite_path``'s impressions and clicks into ``url``; returns seconds per step."""
    import psycopg
    from rich.progress import Progress

    from abharness.stores import codec, open_store, rollup

    timings: dict[str, float] = {}
    store = open_store(url, migrate=False)
    store.migrate(target=rollup.SCHEMA_VERSION - 1)
    store.close()
    src = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    with psycopg.connect(url, autocommit=True) as conn:
        indexes = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('impressions', 'clicks')"
                               " AND indexname NOT LIKE '%%_pkey'").fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        t = time.perf_counter()
        with Progress() as progress:
            for table, columns in (("impressions", codec.IMPRESSION_COLUMNS), ("clicks", codec.CLICK_COLUMNS)):
                total = src.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                task = progress.add_task(f"COPY {table}", total=total)
                cur = src.execute(f"SELECT {', '.join(columns)} FROM {table}")
                with conn.cursor() as pg, pg.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    while rows := cur.fetchmany(50_000):
                        for row in rows:
                            copy.write_row(row)
                        progress.advance(task, len(rows))
        timings["copy"] = time.perf_counter() - t
        t = time.perf_counter()
        for _, ddl in indexes:
            conn.execute(ddl)
        conn.execute("ANALYZE impressions")
        conn.execute("ANALYZE clicks")
        timings["indexes"] = time.perf_counter() - t
    t = time.perf_counter()
    store = open_store(url)  # schema 5: backfills impression_facts and unit_rollup
    store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE impression_facts")
        conn.execute("VACUUM ANALYZE unit_rollup")
    timings["migrate (backfill)"] = time.perf_counter() - t
    return timings


if __name__ == "__main__":
    for step, secs in copy_store(Path(sys.argv[1]), sys.argv[2]).items():
        print(f"{step}: {secs:.1f} s")
