"""The embedded event store: one SQLite file in WAL mode, opened through sqlite-utils.

Concurrency: WAL lets readers (analysis, /readyz, replay) run while the background writer commits. Each thread
gets its own connection to the file (SQLite connections must not be shared across threads without a lock);
``:memory:`` databases are private to one connection, so there all threads share one connection under a lock.
``synchronous=NORMAL`` in WAL mode: a committed batch survives a crash of the process; a power loss can undo the
last commits (see docs/storage.md).

The file under the store: the identity (device, inode) of the database file is recorded when the store opens it
and checked before every transaction. A database file that was deleted (or its directory removed) or replaced is
a failing store (``StoreError``), never a silent write into an unlinked file; no new connection is opened on a
path whose file is gone (that would create an empty database). SQLite maps the WAL index (``-shm``) into memory;
a ``-shm`` file shrunk under the process (truncated by another program) would fault with SIGBUS on the next
access, so its size is checked too and the store stops touching its connections when it shrank
(``abharness.stores.sqlite_shm``: by path only, never opening the ``-shm``, which would drop SQLite's locks on it).
``mmap_size=0``: the database file itself is read with ``read()``, never memory-mapped.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from abharness.core.events import (
    AuditEntry,
    Click,
    Event,
    Feedback,
    Impression,
    InterleaveUnitAggregate,
    UnitAggregate,
)
from abharness.errors import StoreError
from abharness.stores import codec, queries, rollup, sqlite_write
from abharness.stores.base import WriteResult
from abharness.stores.schema import LATEST_VERSION, MIGRATIONS_TABLE_DDL, pending
from abharness.stores.sqlite_shm import shm_problem as _shm_problem

__all__ = ["SQLiteStore"]

log = logging.getLogger(__name__)

_BUSY_TIMEOUT_MS = 30_000


class SQLiteStore(rollup.RollupReads):
    """``EventStore`` on a SQLite file (``path``) or ``":memory:"``.

    Call ``migrate()`` before use (``open_store`` does). Writes are atomic per batch and ignore duplicates by key.
    """

    def __init__(self, path: str | Path, *, url: str | None = None) -> None:
        self.path = str(path)
        self.url = url or f"sqlite:///{self.path}"
        self._memory = self.path == ":memory:"
        self._lock = threading.RLock()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._closed = False
        self._identity: tuple[int, int] | None = None
        self._broken: str | None = None
        self._shm_broken = False
        self._generation = 0
        self._abandoned: list[sqlite3.Connection] = []
        self._replica = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        if not self._memory:
            parent = Path(self.path).expanduser().resolve().parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the directory {parent} for the SQLite store {self.path!r}: {exc}; "
                    "choose a writable path in the store URL (sqlite:///path/to/events.db)"
                ) from exc
        self._shared = self._connect() if self._memory else None

    # -- connections ---------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            db = sqlite_utils.Database(conn)
            if not self._memory:
                db.enable_wal()
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA mmap_size=0")
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the SQLite store {self.path!r}: {exc}; check that the path is a writable file"
            ) from exc
        with self._lock:
            self._all.append(conn)
            if self._identity is None and not self._memory:
                st = os.stat(self.path)
                self._identity = (st.st_dev, st.st_ino)
        return conn

    def _check_file(self) -> None:
        """Raise ``StoreError`` when the database file is gone or replaced, or its ``-shm`` shrank (see module doc)."""
        if self._broken is not None:
            if not self._shm_broken or _shm_problem(self.path + "-shm") is not None:
                raise StoreError(self._broken)
            # The WAL index is writable again: new connections map it afresh (the old ones stay abandoned).
            self._broken, self._shm_broken = None, False
            log.warning("the SQLite store %r is writable again; reconnecting", self.path)
        if self._memory or self._identity is None:
            return
        problem = None
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) != self._identity:
                problem = "was replaced by another file"
        except OSError as exc:
            problem = f"is gone ({exc.strerror})"
        shm_shrank = False
        if problem is None:
            problem = _shm_problem(self.path + "-shm")
            shm_shrank = problem is not None
        if problem is None:
            return
        self._broken = (
            f"the SQLite database file {self.path!r} {problem} while the store was open; events are kept "
            "queued/spooled: restore the file (or start the proxy on a new store) and load the spool back"
        )
        self._shm_broken = shm_shrank
        log.error("%s", self._broken)
        with self._lock:
            conns, self._all = self._all, []
            self._generation += 1
        if shm_shrank:
            # Closing would touch the shrunken mapping (SIGBUS): keep these connections referenced for ever.
            for conn in conns:
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))
            self._abandoned.extend(conns)
        else:
            for conn in conns:
                try:
                    conn.close()
                except sqlite3.Error:  # pragma: no cover
                    pass
        raise StoreError(self._broken)

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise StoreError(f"the store {self.url} is closed; open a new one with open_store()")
        if self._shared is not None:
            with self._lock:
                yield self._shared
            return
        self._check_file()
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "generation", 0) != self._generation:
            conn = self._connect()
            self._local.conn = conn
            self._local.generation = self._generation
        yield conn

    def _query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with self._conn() as conn:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite query failed on {self.path!r}: {exc}") from exc

    def _stream(self, sql: str, params: Any, chunk: int = 10_000) -> Iterator[tuple[Any, ...]]:
        if self._memory:  # the shared connection cannot stay locked while the caller iterates
            yield from self._query(sql, params)
            return
        with self._conn() as conn:
            try:
                cur = conn.execute(sql, params)
                while rows := cur.fetchmany(chunk):
                    yield from rows
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite query failed on {self.path!r}: {exc}") from exc

    # -- schema --------------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The version recorded in ``schema_migrations`` (0 for an empty database)."""
        with self._conn() as conn:
            if not sqlite_utils.Database(conn)["schema_migrations"].exists():
                return 0
            row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            return int(row[0] or 0)

    def migrate(self, *, target: int | None = None) -> None:
        """Create or upgrade the schema to ``target`` (default: the latest version). Idempotent."""
        with self._conn() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")  # one migrator at a time, even across processes
                conn.execute(MIGRATIONS_TABLE_DDL["sqlite"])
                current = int(conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0)
                if current > LATEST_VERSION:
                    conn.execute("ROLLBACK")
                    raise StoreError(
                        f"the SQLite store {self.path!r} has schema version {current}, newer than this abharness "
                        f"supports ({LATEST_VERSION}); upgrade abharness or use another store URL"
                    )
                for m in pending(current, target):
                    for statement in m.statements("sqlite"):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                        (m.version, m.description, time.time()),
                    )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"migrating the SQLite store {self.path!r} failed: {exc}") from exc

    def ping(self) -> None:
        """Raise ``StoreError`` unless the database is at the latest schema and takes a write: the probe commits one
        row of the ``heartbeat`` table (a rolled-back ``BEGIN IMMEDIATE`` would never touch the disk)."""
        version = self.schema_version()
        if version != LATEST_VERSION:
            raise StoreError(
                f"the SQLite store {self.path!r} is at schema version {version}, expected {LATEST_VERSION}; "
                "run migrate() (open_store does it)"
            )
        with self._conn() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO heartbeat (replica, ts) VALUES (?, ?) "
                    "ON CONFLICT (replica) DO UPDATE SET ts = excluded.ts",
                    (self._replica, time.time()),
                )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"the SQLite store {self.path!r} cannot take a write: {exc}") from exc

    def has_click(self, impression_id: str, doc_id: str) -> bool:
        """True when the click (impression_id, doc_id) is stored."""
        sql = "SELECT 1 FROM clicks WHERE impression_id = ? AND doc_id = ?"
        return bool(self._query(sql, (impression_id, doc_id)))

    # -- writes --------------------------------------------------------------------------------------------

    def write_batch(self, events: Sequence[Event]) -> WriteResult:
        """Store a batch in one transaction; duplicates (by key) are ignored and counted (``sqlite_write``)."""
        with self._conn() as conn:
            try:
                return sqlite_write.write_batch(conn, events)
            except sqlite3.Error as exc:
                raise StoreError(f"writing {len(events)} events to {self.path!r} failed: {exc}") from exc

    # -- reads ---------------------------------------------------------------------------------------------

    def _rows_as_dicts(self, sql: str, params: Any) -> list[dict[str, Any]]:
        with self._conn() as conn:
            try:
                cur = conn.execute(sql, params)
                names = [d[0] for d in cur.description]
                return [dict(zip(names, row)) for row in cur.fetchall()]
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite query failed on {self.path!r}: {exc}") from exc

    def get_impression(self, impression_id: str) -> Impression | None:
        """One impression by id, or None."""
        rows = self._rows_as_dicts("SELECT * FROM impressions WHERE impression_id = ?", (impression_id,))
        return codec.row_to_impression(rows[0]) if rows else None

    def experiments(self) -> list[str]:
        """Experiment ids with at least one impression."""
        return [r[0] for r in self._query(queries.EXPERIMENTS_SQL)]

    def unit_rows(
        self, experiment_id: str, *, since: float | None = None, until: float | None = None,
        modes: Sequence[str] = ("ab",),
    ) -> Iterator[tuple[Any, ...]]:
        """``unit_aggregates`` from the rollup as plain rows in ``UnitAggregate`` field order (segment None), for
        callers that load a million of them into arrays without building objects."""
        params = rollup.read_params(experiment_id, since=since, until=until, modes=modes)
        sql = rollup.unit_rows_sql("sqlite", n_modes=len(modes))
        return self._stream(sql, params)

    def has_impressions(
        self, experiment_id: str, *, since: float | None = None, until: float | None = None,
        modes: Sequence[str] = ("ab",),
    ) -> bool:
        """True when the experiment has an impression of one of ``modes`` with since <= ts < until."""
        params = rollup.read_params(experiment_id, since=since, until=until, modes=modes)
        return bool(self._query(rollup.exists_sql(n_modes=len(modes), rollup=self.has_rollup()), params))

    def arms(self, experiment_id: str) -> list[str]:
        """Arm names with at least one impression in the experiment."""
        sql = "SELECT DISTINCT arm FROM impressions WHERE experiment_id = ? ORDER BY 1"
        return [r[0] for r in self._query(sql, (experiment_id,))]

    def unit_aggregates(
        self,
        experiment_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        segment: str | None = None,
        modes: Sequence[str] = ("ab",),
        method: str = "rollup",
    ) -> Iterator[UnitAggregate]:
        """Per-(unit, arm[, segment]) sums over impressions with since <= ts < until, computed in SQL.

        ``method="rollup"`` (default) reads ``unit_rollup`` (segments always scan); ``"scan"`` aggregates the
        raw impressions and clicks (the reference the rollup is tested against)."""
        if not modes:
            return iter(())
        if segment is None and rollup.use_rollup(method) and self.has_rollup():
            return queries.rows_to_unit_aggregates(self.unit_rows(experiment_id, since=since, until=until, modes=modes))
        sql = queries.unit_aggregates_sql("sqlite", since=since, until=until, segment=segment, n_modes=len(modes))
        params = queries.window_params(experiment_id, since=since, until=until, segment=segment, modes=modes)
        return queries.rows_to_unit_aggregates(self._stream(sql, params))

    def traffic_counts(
        self, experiment_id: str, *, since: float | None = None, until: float | None = None,
        bucket_s: float = 86_400.0, modes: Sequence[str] = ("ab",),
    ) -> list[tuple[float, str, int, int]]:
        """(bucket start in unix seconds, arm, distinct units, impressions) per UTC-aligned bucket, in SQL."""
        if not modes:
            return []
        if bucket_s == rollup.BUCKET_S and len(modes) == 1 and self.has_rollup():  # one row per unit-day
            sql = rollup.traffic_sql(n_modes=1)
            params = rollup.read_params(experiment_id, since=since, until=until, modes=modes)
            return [(float(b) * bucket_s, a, int(u), int(n)) for b, a, u, n in self._stream(sql, params)]
        sql = queries.traffic_counts_sql("sqlite", since=since, until=until, n_modes=len(modes))
        params = queries.window_params(experiment_id, since=since, until=until, segment=None, modes=modes)
        params["bucket_s"] = float(bucket_s)
        return [(float(b) * bucket_s, a, int(u), int(n)) for b, a, u, n in self._stream(sql, params)]

    def fingerprint_spans(
        self, experiment_id: str, *, since: float | None = None, until: float | None = None,
        modes: Sequence[str] = ("ab", "interleave", "shadow"),
    ) -> list[tuple[str, float, float, int]]:
        """(fingerprints JSON, first ts, last ts, impressions) per distinct fingerprints value, in SQL."""
        if self.has_rollup():
            sql = rollup.fingerprint_spans_sql(n_modes=len(modes))
            params = rollup.read_params(experiment_id, since=since, until=until, modes=modes)
            return [(str(f), float(a), float(b), int(n)) for f, a, b, n in self._stream(sql, params)]
        sql = queries.fingerprint_spans_sql("sqlite", since=since, until=until, n_modes=len(modes))
        params = queries.window_params(experiment_id, since=since, until=until, segment=None, modes=modes)
        return [(str(f), float(a), float(b), int(n)) for f, a, b, n in self._stream(sql, params)]

    def cumulative_moments(
        self, experiment_id: str, *, since: float | None, until: float | None, cuts: Sequence[float],
        fields: Sequence[str], modes: Sequence[str] = ("ab",),
    ) -> dict[str, list[tuple[float, list[float], list[float]]]]:
        """Per arm, per cutoff: (units, sums, upper-triangle cross-products) of ``fields`` over [since, cut)."""
        sql = rollup.cumulative_moments_sql("sqlite", n_modes=len(modes), n_cuts=len(cuts), fields=fields)
        params = rollup.read_params(experiment_id, since=since, until=until, modes=modes, cuts=cuts)
        return rollup.rows_to_moments(self._query(sql, params), n_cuts=len(cuts), n_fields=len(fields))

    def unit_activity(
        self, experiment_id: str, *, since: float | None = None, until: float | None = None,
        fast_click_s: float = 0.0, modes: Sequence[str] = ("ab",),
    ) -> list[tuple[str, str, int, int, int]]:
        """(unit, arm, most searches on one UTC day, clicks, fast clicks) per (unit, arm), in SQL."""
        if not modes:
            return []
        sql = queries.unit_activity_sql("sqlite", since=since, until=until, n_modes=len(modes))
        params = queries.window_params(experiment_id, since=since, until=until, segment=None, modes=modes)
        params["fast_s"] = float(fast_click_s)
        rows = self._stream(sql, params)
        return [(str(u), str(a), int(d), int(c), int(f)) for u, a, d, c, f in rows]

    def interleave_aggregates(
        self, experiment_id: str, *, since: float | None = None, until: float | None = None
    ) -> Iterator[InterleaveUnitAggregate]:
        """Per-unit team-draft wins, ties and no-click counts, computed in SQL."""
        sql = queries.interleave_aggregates_sql(since=since, until=until)
        params = queries.window_params(experiment_id, since=since, until=until, segment=None, modes=["interleave"])
        return queries.rows_to_interleave_aggregates(self._stream(sql, params))

    def iter_impressions(
        self,
        experiment_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        batch_size: int = 1000,
    ) -> Iterator[tuple[Impression, list[Click]]]:
        """Impressions in (ts, impression_id) order with their clicks, fetched in keyset-paginated batches."""

        def fetch_clicks(ids: list[str]) -> list[dict[str, Any]]:
            marks = ", ".join("?" for _ in ids)
            return self._rows_as_dicts(
                f"SELECT * FROM clicks WHERE impression_id IN ({marks}) ORDER BY ts, position", ids
            )

        yield from queries.iter_impression_pages(
            self._rows_as_dicts, fetch_clicks, experiment_id, since=since, until=until, batch_size=batch_size
        )

    def audit_log(self, experiment_id: str) -> list[AuditEntry]:
        """Admin actions for the experiment, oldest first."""
        rows = self._rows_as_dicts("SELECT * FROM audit WHERE experiment_id = ? ORDER BY ts, id", (experiment_id,))
        return [codec.row_to_audit(r) for r in rows]

    def feedback(self, experiment_id: str) -> list[Feedback]:
        """Browser signals (seen, dwell) of the experiment, in time order."""
        rows = self._rows_as_dicts(
            "SELECT * FROM feedback WHERE experiment_id = ? ORDER BY ts, impression_id, kind, doc_id", (experiment_id,)
        )
        return [codec.row_to_feedback(r) for r in rows]

    def counts(self, experiment_id: str | None = None) -> dict[str, int]:
        """Row counts per table, optionally for one experiment."""
        out = {}
        for key, table in (("impressions", "impressions"), ("clicks", "clicks"), ("audit", "audit")):
            if experiment_id is None:
                out[key] = int(self._query(f"SELECT COUNT(*) FROM {table}")[0][0])
            else:
                sql = f"SELECT COUNT(*) FROM {table} WHERE experiment_id = ?"
                out[key] = int(self._query(sql, (experiment_id,))[0][0])
        return out

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        """Run one SQL statement (``:name`` or ``?`` parameters) and return its rows; for tests and operators.

        A write to ``impressions`` or ``clicks`` rebuilds the rollups afterwards (``rollup.rebuild_statements``)."""
        with self._conn() as conn:
            try:
                cur = conn.execute(sql, params)
                rows = cur.fetchall() if cur.description else []
                if rollup.touches_raw_rows(sql) and self.has_rollup():  # keep the derived tables true
                    conn.execute("BEGIN IMMEDIATE")
                    for statement in rollup.rebuild_statements("sqlite"):
                        conn.execute(statement)
                    conn.execute("COMMIT")
                return rows
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"SQLite statement failed on {self.path!r}: {exc}") from exc

    def close(self) -> None:
        """Close every connection this store opened (idempotent)."""
        with self._lock:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing a broken connection
                pass

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"
