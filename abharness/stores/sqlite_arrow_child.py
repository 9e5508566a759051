"""Child process of ``abharness.stores.arrow_read.sqlite_batches``: one SQLite query through ADBC's SQLite driver,
its rows written to stdout as an Arrow IPC stream.

Run by path (``python .../sqlite_arrow_child.py``), never imported by the harness: this process must load no other
SQLite library than ADBC's, so it imports nothing of ``abharness`` (whose stores load Python's ``sqlite3``). Two
SQLite libraries in one process break each other's POSIX locks on the same file; in a process of its own, ADBC's
SQLite is just one more reader of the WAL file. Request on stdin (JSON): ``uri`` (a read-only ``file:`` URI),
``sql`` (``?NNN`` parameters), ``params`` (their values in order), ``batch_rows``. Errors go to stderr, exit 1.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # run by path its directory is sys.path[0], unless PYTHONSAFEPATH is set
    sys.path.insert(0, _HERE)
from arrow_child_io import run_child, stream_query  # noqa: E402 - beside this script, run by path


def _one(pa: Any, value: Any) -> Any:
    """A one-value Arrow array, built from buffers (``pa.array``'s first call costs 0.3 s of lazy set-up)."""
    if isinstance(value, str):
        data = value.encode()
        return pa.StringArray.from_buffers(1, pa.py_buffer(struct.pack("<ii", 0, len(data))), pa.py_buffer(data))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"unsupported parameter {value!r}")
    if isinstance(value, int):
        return pa.Array.from_buffers(pa.int64(), 1, [None, pa.py_buffer(struct.pack("<q", value))])
    return pa.Array.from_buffers(pa.float64(), 1, [None, pa.py_buffer(struct.pack("<d", value))])


def main() -> int:
    req = json.loads(sys.stdin.read())
    import adbc_driver_manager as adbc  # the low-level API: the DB-API module imports pandas (1 s)
    import adbc_driver_sqlite
    import pyarrow as pa

    params = pa.RecordBatch.from_arrays([_one(pa, v) for v in req["params"]],
                                        names=[f"p{i}" for i in range(len(req["params"]))])
    with adbc_driver_sqlite.connect(req["uri"]) as db, adbc.AdbcConnection(db) as conn, \
            adbc.AdbcStatement(conn) as stmt:
        stmt.set_options(**{"adbc.sqlite.query.batch_rows": str(int(req["batch_rows"]))})
        stmt.set_sql_query(req["sql"])
        if req["params"]:
            stmt.bind(params)
        stream_query(pa, stmt)
    return 0


if __name__ == "__main__":
    run_child(main)
