"""Query results as Arrow record batches, for the bulk reads of the analysis (``rollup_arrays``).

* SQLite: ADBC's SQLite driver in a child process (``sqlite_arrow_child.py``) that streams Arrow IPC through a
  pipe. Python's ``sqlite3`` makes one object per value (4.8 s of CPU for the 10 M-impression rollup); ADBC
  builds the columns in C. It runs in a process of its own because a second SQLite library in the harness's
  process would release the first one's POSIX locks when it closes the file; the child is one more reader of the
  WAL file, with its own snapshot (one query = one read transaction), and works on the other core while this
  process reduces the batches it has received.
* PostgreSQL: ADBC's PostgreSQL driver (``COPY ... TO STDOUT (FORMAT binary)`` decoded in C++), or, without it,
  psycopg's ``COPY ... (FORMAT csv)`` parsed by Arrow's CSV reader as it streams.

Both ADBC drivers are optional (``available_sqlite`` / ``available_postgres``); ``ABH_ARROW_READ=0`` switches them
off (the callers then read through ``sqlite3`` / the CSV COPY).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from abharness.errors import StoreError
from abharness.stores.queries import to_pyformat

__all__ = ["available_sqlite", "available_postgres", "sqlite_batches", "pg_batches", "pg_batches_parts",
           "pg_csv_batches"]

_CHILD = Path(__file__).with_name("sqlite_arrow_child.py")
_PG_CHILD = Path(__file__).with_name("pg_arrow_child.py")
_BATCH_ROWS = 65_536
_NAMED = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")


def _enabled(module: str) -> bool:
    return os.environ.get("ABH_ARROW_READ", "1") != "0" and importlib.util.find_spec(module) is not None


def available_sqlite() -> bool:
    """Whether SQLite reads can go through ADBC in a child process."""
    return _enabled("adbc_driver_sqlite")


def available_postgres() -> bool:
    """Whether PostgreSQL reads can go through ADBC's PostgreSQL driver."""
    return _enabled("adbc_driver_postgresql")


def positional(sql: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """``:name`` parameters as SQLite's ``?NNN`` (a repeated name keeps its number) and their values in order."""
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"?{names.index(m.group(1)) + 1}"

    out = _NAMED.sub(number, sql)
    return out, [params[n] for n in names]


def sqlite_batches(path: str, sql: str, params: dict[str, Any]) -> Iterator[Any]:
    """The rows of ``sql`` on the SQLite file ``path`` as Arrow record batches, read by a child process.

    Column types come from the values (ADBC infers them from the first batch): callers cast numbers to REAL and
    must not return NULLs. The child is killed if the caller stops early."""
    query, values = positional(sql, params)
    uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
    request = {"uri": uri, "sql": query, "params": values, "batch_rows": _BATCH_ROWS}
    yield from _child_batches(_CHILD, request, f"reading {path!r} through ADBC")


def _child_batches(child: Path, request: dict[str, Any], what: str) -> Iterator[Any]:
    """The Arrow IPC stream the child script ``child`` writes for ``request`` (JSON on its stdin), batch by batch.

    A child that fails (before or while streaming) is a ``StoreError`` with its stderr; the child is killed if the
    caller stops early or fails."""
    import pyarrow as pa

    proc = subprocess.Popen([sys.executable, str(child)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    done = False
    try:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(request).encode())
            proc.stdin.close()
        except BrokenPipeError:  # the child died before reading its request: its stderr says why
            pass
        try:
            reader = pa.ipc.open_stream(proc.stdout)
            yield from reader
        except pa.ArrowInvalid as exc:  # the child failed before (or while) writing the stream
            proc.wait()
            raise StoreError(f"{what} failed: {_stderr(proc) or exc}") from exc
        if proc.wait() != 0:
            raise StoreError(f"{what} failed: {_stderr(proc) or f'exit status {proc.returncode}'}")
        done = True
    finally:
        if not done and proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()


def _stderr(proc: subprocess.Popen[bytes]) -> str:
    return proc.stderr.read().decode(errors="replace").strip()[-2000:] if proc.stderr is not None else ""


def _adbc_update(conn: Any, sql: str) -> None:
    """Run a statement without a result on an ADBC connection."""
    import adbc_driver_manager as adbc

    with adbc.AdbcStatement(conn) as stmt:
        stmt.set_sql_query(sql)
        stmt.execute_update()


@contextlib.contextmanager
def _adbc_rows(conn: Any, sql: str) -> Iterator[Any]:
    """A query's result on an ADBC connection as a pyarrow ``RecordBatchReader`` (closed afterwards)."""
    import adbc_driver_manager as adbc
    import pyarrow as pa

    with adbc.AdbcStatement(conn) as stmt:
        stmt.set_sql_query(sql)
        handle, _ = stmt.execute_query()
        reader = pa.RecordBatchReader._import_from_c(handle.address)
        try:
            yield reader
        finally:
            reader.close()


def pg_batches(store: Any, what: str, sql: str, params: dict[str, Any], names: Sequence[str]) -> Iterator[Any]:
    """A PostgreSQL query's result as Arrow record batches through ADBC's PostgreSQL driver (binary COPY decoded
    in C++) in a child process (``pg_arrow_child.py``) that streams Arrow IPC through a pipe, so the decoding runs
    beside the caller's work on the batches. Parameters are rendered as literals by psycopg (``mogrify``), so the
    driver runs the query as a COPY; the columns are renamed to ``names``."""
    import psycopg

    with store._pool.connection() as pconn:
        query = psycopg.ClientCursor(pconn).mogrify(to_pyformat(sql), params)
    where = f"{what} on {getattr(store, 'safe_url', store.url)}"
    request = {"url": store.url, "setup": ["SET jit = off"], "sql": query}
    for batch in _child_batches(_PG_CHILD, request, where):
        yield batch.rename_columns(list(names))


def pg_batches_parts(store: Any, what: str, parts: Sequence[tuple[str, dict[str, Any]]],
                     names: Sequence[str]) -> Iterator[Any]:
    """The results of several PostgreSQL queries, one after the other, as Arrow record batches: ``parts`` run
    concurrently, each on a connection (and server backend) of its own, all in one snapshot (the first connection
    exports it, REPEATABLE READ, the others import it), so their rows are those one query would have seen.

    The first part streams to the caller; the others are read in threads (ADBC decodes in C++ without the GIL) and
    their batches kept until the caller reaches them. Meant for a key-ordered read split into contiguous key
    ranges: the concatenation is the whole read in order, and the servers' work is spread over several backends
    while the client decodes. Errors of any part are a ``StoreError``."""
    import queue
    import threading

    import adbc_driver_manager as adbc
    import adbc_driver_postgresql
    import psycopg

    if len(parts) == 1:
        yield from pg_batches(store, what, parts[0][0], parts[0][1], names)
        return
    with store._pool.connection() as pconn:
        cursor = psycopg.ClientCursor(pconn)
        queries = [cursor.mogrify(to_pyformat(sql), params) for sql, params in parts]
    where = f"{what} on {getattr(store, 'safe_url', store.url)}"
    cols = list(names)
    stop = threading.Event()
    done = object()

    def read_into(conn: Any, sql: str, out: queue.SimpleQueue[Any]) -> None:
        try:
            with _adbc_rows(conn, sql) as reader:
                for batch in reader:
                    if stop.is_set():
                        break
                    out.put(batch.rename_columns(cols))
            out.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            out.put(exc)

    conns: list[Any] = []
    threads: list[threading.Thread] = []
    try:
        with adbc_driver_postgresql.connect(store.url) as db:
            try:
                for _ in parts:
                    conn = adbc.AdbcConnection(db)
                    conns.append(conn)
                    conn.set_autocommit(False)
                    _adbc_update(conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    _adbc_update(conn, "SET LOCAL jit = off")
                with _adbc_rows(conns[0], "SELECT pg_export_snapshot()") as reader:
                    snapshot = reader.read_all().column(0)[0].as_py()
                for conn in conns[1:]:
                    _adbc_update(conn, f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                outs: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in parts]
                threads = [threading.Thread(target=read_into, args=(conns[i], queries[i], outs[i]), daemon=True,
                                            name=f"abh-pg-read-{i}") for i in range(1, len(parts))]
                for t in threads:
                    t.start()
                with _adbc_rows(conns[0], queries[0]) as reader:
                    for batch in reader:
                        yield batch.rename_columns(cols)
                for out in outs[1:]:
                    while (item := out.get()) is not done:
                        if isinstance(item, BaseException):
                            raise item
                        yield item
            finally:
                stop.set()
                for t in threads:
                    t.join()
                for conn in conns:
                    try:
                        conn.rollback()
                    except Exception:  # noqa: BLE001, S110 - the connection is closed next either way
                        pass
                    conn.close()
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - ADBC's and Arrow's errors alike
        raise StoreError(f"{where} failed: {exc}") from exc


class _CopyReader(io.RawIOBase):
    """A file over the chunks of a ``COPY ... TO STDOUT`` (for Arrow's streaming CSV reader)."""

    def __init__(self, chunks: Iterator[Any]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, out: Any) -> int:
        while not self._buf:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._buf = memoryview(bytes(nxt))
        n = min(len(out), len(self._buf))
        out[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def pg_csv_batches(store: Any, what: str, sql: str, params: dict[str, Any], names: Sequence[str],
                   types: dict[str, Any]) -> Iterator[Any]:
    """A PostgreSQL query's result as Arrow record batches, streamed: ``COPY ... TO STDOUT (FORMAT csv)`` parsed
    by Arrow's CSV reader as the bytes arrive (never the whole result in memory)."""
    from pyarrow import csv

    with store._pool.connection() as conn, conn.transaction():
        try:
            conn.execute("SET LOCAL jit = off")
            conn.execute("SET LOCAL extra_float_digits = 1")  # shortest text that reads back to the same double
            with conn.cursor().copy(f"COPY ({to_pyformat(sql)}) TO STDOUT (FORMAT csv)", params) as copy:
                chunks = iter(copy)
                head = next(chunks, None)
                if head is None:  # no row (Arrow refuses an empty CSV)
                    return
                reader = csv.open_csv(
                    io.BufferedReader(_CopyReader(itertools.chain([head], chunks)), buffer_size=1 << 20),
                    read_options=csv.ReadOptions(column_names=list(names), block_size=4 << 20),
                    convert_options=csv.ConvertOptions(column_types=types, strings_can_be_null=False,
                                                       quoted_strings_can_be_null=False),
                )
                yield from reader
        except Exception as exc:  # noqa: BLE001 - psycopg's and Arrow's errors alike
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{what} on {getattr(store, 'safe_url', store.url)} failed: {exc}") from exc
