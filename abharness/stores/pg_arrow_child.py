"""Child process of ``abharness.stores.arrow_read.pg_batches``: one PostgreSQL query through ADBC's PostgreSQL
driver (binary COPY decoded in C++), its rows written to stdout as an Arrow IPC stream.

Run by path (``python .../pg_arrow_child.py``), importing nothing of ``abharness``: the decoding (libpq hands a
COPY over one row at a time, 1.7 M rows for the 10 M-impression rollup) then runs on another core than the
analysis, which reduces the batches as they arrive, as the SQLite read does. Request on stdin (JSON): ``url``
(a libpq URI), ``setup`` (statements run first), ``sql`` (the query, parameters already rendered as literals).
Errors go to stderr, exit 1.
"""

from __future__ import annotations

import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # run by path its directory is sys.path[0], unless PYTHONSAFEPATH is set
    sys.path.insert(0, _HERE)
from arrow_child_io import run_child, stream_query  # noqa: E402 - beside this script, run by path


def main() -> int:
    req = json.loads(sys.stdin.read())
    import adbc_driver_manager as adbc  # the low-level API: the DB-API module imports pandas (1 s)
    import adbc_driver_postgresql
    import pyarrow as pa

    with adbc_driver_postgresql.connect(req["url"]) as db, adbc.AdbcConnection(db) as conn:
        for sql in req.get("setup", ()):
            with adbc.AdbcStatement(conn) as stmt:
                stmt.set_sql_query(sql)
                stmt.execute_update()
        with adbc.AdbcStatement(conn) as stmt:
            stmt.set_sql_query(req["sql"])
            stream_query(pa, stmt)
    return 0


if __name__ == "__main__":
    run_child(main)
