"""The shared event store for several proxy replicas: PostgreSQL through psycopg 3 and a psycopg_pool pool.

* Writes: each batch is COPYed into session-local staging tables, then moved with
  ``INSERT ... SELECT ... ORDER BY key ON CONFLICT DO NOTHING`` in the same transaction, so a batch is atomic,
  duplicates (a retried batch, a click sent twice, two replicas) are stored once and counted, and rows are taken
  in key order so two replicas' transactions do not deadlock on each other (``abharness.stores.postgres_write``).
* Reads: per-unit sums with the same SQL as SQLite (``abharness.stores.queries``), streamed through a server-side
  cursor so millions of aggregate rows never sit in memory at once.
* Outages: the pool checks a connection before handing it out and drops broken ones; operations that fail with a
  connection error are retried a few times with bounded backoff and then raise ``StoreError`` (the writer keeps
  the events queued and retries later). ``reconnect_timeout`` is short on purpose: a pool that gave up grows
  again on the next request, so reconnecting after a restart takes seconds, not the pool's default minutes.
* Migrations run under a transaction-scoped advisory lock, so replicas starting together migrate once.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

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
from abharness.stores import codec, postgres_write, queries, rollup
from abharness.stores.base import WriteResult
from abharness.stores.schema import LATEST_VERSION, MIGRATIONS_TABLE_DDL, pending

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_MIGRATION_LOCK_KEY = 7_316_420_518  # pg_advisory_xact_lock key shared by every abharness process
_RETRYABLE = (psycopg.OperationalError, PoolTimeout)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        params = pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable PostgreSQL URL>"
    host = params.get("host", "localhost")
    port = params.get("port", "5432")
    user = params.get("user", "")
    db = params.get("dbname", "")
    return f"postgresql://{user + '@' if user else ''}{host}:{port}/{db}"


class PostgresStore(rollup.RollupReads):
    """``EventStore`` on PostgreSQL. ``url`` is a libpq URL or conninfo string (``postgresql://user@host/db``)."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        connect_timeout_s: float = 5.0,
        pool_timeout_s: float = 3.0,
        retries: int = 1,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 2.0,
    ) -> None:
        self.url = url
        self.safe_url = redact(url)
        self._replica = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        try:
            pg_conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise StoreError(
                f"cannot parse the PostgreSQL store URL {self.safe_url}: {exc}; "
                "write it as postgresql://user[:password]@host:port/dbname"
            ) from exc
        self.retries = int(retries)
        self.retry_initial_s = float(retry_initial_s)
        self.retry_max_s = float(retry_max_s)
        self._writer = postgres_write.StagedWriter()
        self._pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"connect_timeout": max(1, int(connect_timeout_s)), "application_name": "abharness"},
            open=False,
            timeout=pool_timeout_s,
            reconnect_timeout=max(connect_timeout_s, 5.0),
            check=ConnectionPool.check_connection,
            name="abharness-events",
        )
        self._pool.open(wait=False)

    # -- plumbing ------------------------------------------------------------------------------------------

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        delay = self.retry_initial_s
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except _RETRYABLE as exc:
                if attempt == self.retries:
                    raise StoreError(
                        f"{what} on {self.safe_url} failed after {attempt + 1} attempts: {exc}; "
                        "check that PostgreSQL is running and reachable at that address"
                    ) from exc
                log.info("%s on %s failed (%s); retrying in %.2fs", what, self.safe_url, exc, delay)
                time.sleep(delay)
                delay = min(self.retry_max_s, delay * 2)
            except PoolClosed as exc:
                raise StoreError(f"the store {self.safe_url} is closed; open a new one with open_store()") from exc
            except psycopg.Error as exc:
                raise StoreError(f"{what} on {self.safe_url} failed: {exc}") from exc
        raise StoreError(f"{what} on {self.safe_url} failed")  # pragma: no cover - loop always returns/raises

    def _fetch(self, what: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            with self._pool.connection() as conn:
                cur = conn.execute(sql, params)
                return cur.fetchall() if cur.description else []

        return self._retry(what, run)

    def _fetch_dicts(self, what: str, sql: str, params: Any = None) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            with self._pool.connection() as conn:
                cur = conn.execute(sql, params)
                names = [d.name for d in cur.description or ()]
                return [dict(zip(names, row)) for row in cur.fetchall()]

        return self._retry(what, run)

    def _stream(self, what: str, sql: str, params: Any, chunk: int = 10_000) -> Iterator[tuple[Any, ...]]:
        """Rows from a server-side cursor; retried only before the first row arrives."""
        for attempt in range(self.retries + 1):
            started = False
            try:
                with self._pool.connection() as conn, conn.cursor(name="abharness_stream") as cur:
                    # JIT compilation costs seconds on these one-off analytic queries and buys nothing measurable.
                    conn.execute("SET LOCAL jit = off")
                    cur.itersize = chunk
                    cur.execute(sql, params)
                    for row in cur:
                        started = True
                        yield row
                return
            except _RETRYABLE as exc:
                if started or attempt == self.retries:
                    raise StoreError(f"{what} on {self.safe_url} failed: {exc}") from exc
                time.sleep(min(self.retry_max_s, self.retry_initial_s * 2**attempt))
            except PoolClosed as exc:
                raise StoreError(f"the store {self.safe_url} is closed; open a new one with open_store()") from exc
            except psycopg.Error as exc:
                raise StoreError(f"{what} on {self.safe_url} failed: {exc}") from exc

    # -- schema --------------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The version recorded in ``schema_migrations`` (0 for an empty database)."""
        rows = self._fetch("reading the schema version", "SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not rows[0][0]:
            return 0
        return int(self._fetch("reading the schema version", "SELECT MAX(version) FROM schema_migrations")[0][0] or 0)

    def migrate(self, *, target: int | None = None) -> None:
        """Create or upgrade the schema to ``target`` (default: latest), once even with concurrent replicas."""

        def run() -> None:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
                conn.execute(MIGRATIONS_TABLE_DDL["postgresql"])
                current = int(conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0)
                if current > LATEST_VERSION:
                    raise StoreError(
                        f"the PostgreSQL store {self.safe_url} has schema version {current}, newer than this "
                        f"abharness supports ({LATEST_VERSION}); upgrade abharness or use another database"
                    )
                for m in pending(current, target):
                    for statement in m.statements("postgresql"):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, description, applied_at) VALUES (%s, %s, %s)",
                        (m.version, m.description, time.time()),
                    )

        self._retry("migrating the schema", run)

    def ping(self) -> None:
        """Raise ``StoreError`` unless the server answers, accepts writes and has the latest schema.

        One attempt with a short wait (it backs /readyz, which must answer quickly during an outage)."""
        try:
            with self._pool.connection(timeout=2.0) as conn:
                row = conn.execute(
                    "SELECT pg_is_in_recovery(), CASE WHEN to_regclass('schema_migrations') IS NULL THEN 0 END"
                ).fetchone()
                in_recovery, version = row if row else (False, 0)
                if version is None:
                    version = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
        except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
            raise StoreError(f"the PostgreSQL store {self.safe_url} is not reachable: {exc}") from exc
        if in_recovery:
            raise StoreError(f"the PostgreSQL server behind {self.safe_url} is a read-only standby; point at the primary")
        if int(version or 0) != LATEST_VERSION:
            raise StoreError(
                f"the PostgreSQL store {self.safe_url} is at schema version {version or 0}, expected "
                f"{LATEST_VERSION}; run migrate() (open_store does it)"
            )
        try:  # prove the store takes a write: commit one heartbeat row (readiness must mean "can log")
            with self._pool.connection(timeout=2.0) as conn:
                conn.execute(
                    "INSERT INTO heartbeat (replica, ts) VALUES (%s, %s) "
                    "ON CONFLICT (replica) DO UPDATE SET ts = excluded.ts",
                    (self._replica, time.time()),
                )
        except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
            raise StoreError(f"the PostgreSQL store {self.safe_url} cannot take a write: {exc}") from exc

    def has_click(self, impression_id: str, doc_id: str) -> bool:
        """True when the click (impression_id, doc_id) is stored."""
        rows = self._fetch_dicts(
            "checking a click", "SELECT 1 AS one FROM clicks WHERE impression_id = %s AND doc_id = %s",
            (impression_id, doc_id),
        )
        return bool(rows)

    # -- writes --------------------------------------------------------------------------------------------

    def write_batch(self, events: Sequence[Event]) -> WriteResult:
        """Store a batch in one transaction; duplicates (by key) are ignored and counted (``postgres_write``)."""
        rows = codec.encode_batch(events)

        def run() -> int:
            with self._pool.connection() as conn:
                return self._writer.write(conn, rows)

        stored = self._retry(f"writing {len(events)} events", run)
        return WriteResult(stored=stored, duplicates=len(events) - stored)

    # -- reads ---------------------------------------------------------------------------------------------

    def get_impression(self, impression_id: str) -> Impression | None:
        """One impression by id, or None."""
        rows = self._fetch_dicts(
            "reading an impression", "SELECT * FROM impressions WHERE impression_id = %s", (impression_id,)
        )
        return codec.row_to_impression(rows[0]) if rows else None

    def experiments(self) -> list[str]:
        """Experiment ids with at least one impression."""
        return [r[0] for r in self._fetch("listing experiments", queries.EXPERIMENTS_SQL)]

    def unit_rows(
        self, experiment_id: str, *, since: float | None = None, until: float | None = None,
        modes: Sequence[str] = ("ab",),
    ) -> Iterator[tuple[Any, ...]]:
        """``unit_aggregates`` from the rollup as plain rows in ``UnitAggregate`` field order (segment None), for
        callers that load a million of them into arrays without building objects."""
        params = rollup.read_params(experiment_id, since=since, until=until, modes=modes)
        sql = queries.to_pyformat(rollup.unit_rows_sql("postgresql", n_modes=len(modes)))
        return self._stream("aggregating units", sql, params)

    def has_impressions(
        self, experiment_id: str, *, since: float | None = None, until: float | None = None,
        modes: Sequence[str] = ("ab",),
    ) -> bool:
        """True when the experiment has an impression of one of ``modes`` with since <= ts < until."""
        params = rollup.read_params(experiment_id, since=since, until=until, modes=modes)
        sql = queries.to_pyformat(rollup.exists_sql(n_modes=len(modes), rollup=self.has_rollup()))
        return bool(self._fetch("probing for impressions", sql, params))

    def arms(self, experiment_id: str) -> list[str]:
        """Arm names with at least one impression in the experiment."""
        sql = "SELECT DISTINCT arm FROM impressions WHERE experiment_id = %s ORDER BY 1"
        return [r[0] for r in self._fetch("listing arms", sql, (experiment_id,))]

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
        sql = queries.unit_aggregates_sql(
            "postgresql", since=since, until=until, segment=segment, n_modes=len(modes)
        )
        params = queries.window_params(experiment_id, since=since, until=until, segment=segment, modes=modes)
        params.pop("segment_path", None)
        rows = self._stream("aggregating units", queries.to_pyformat(sql), params)
        return queries.rows_to_unit_aggregates(rows)

    def traffic_counts(
        self, experiment_id: str, *, since: float | None = None, until: float | None = None,
        bucket_s: float = 86_400.0, modes: Sequence[str] = ("ab",),
    ) -> list[tuple[float, str, int, int]]:
        """(bucket start in unix seconds, arm, distinct units, impressions) per UTC-aligned bucket, in SQL."""
        if not modes:
            return []
        if bucket_s == rollup.BUCKET_S and len(modes) == 1 and self.has_rollup():  # one row per unit-day
            sql = queries.to_pyformat(rollup.traffic_sql(n_modes=1))
            params = rollup.read_params(experiment_id, since=since, until=until, modes=modes)
            return [(float(b) * bucket_s, a, int(u), int(n)) for b, a, u, n in self._stream("counting traffic per bucket", sql, params)]
        sql = queries.to_pyformat(queries.traffic_counts_sql("postgresql", since=since, until=until,
                                                             n_modes=len(modes)))
        params = queries.window_params(experiment_id, since=since, until=until, segment=None, modes=modes)
        params["bucket_s"] = float(bucket_s)
        rows = self._stream("counting traffic per bucket", sql, params)
        return [(float(b) * bucket_s, a, int(u), int(n)) for b, a, u, n in rows]

    def fingerprint_spans(
        self, experiment_id: str, *, since: float | None = None, until: float | None = None,
        modes: Sequence[str] = ("ab", "interleave", "shadow"),
    ) -> list[tuple[str, float, float, int]]:
        """(fingerprints JSON, first ts, last ts, impressions) per distinct fingerprints value, in SQL."""
        if self.has_rollup():
            sql = queries.to_pyformat(rollup.fingerprint_spans_sql(n_modes=len(modes)))
            params = rollup.read_params(experiment_id, since=since, until=until, modes=modes)
            rows = self._stream("reading the fingerprints per deployment", sql, params)
            return [(str(f), float(a), float(b), int(n)) for f, a, b, n in rows]
        sql = queries.to_pyformat(queries.fingerprint_spans_sql("postgresql", since=since, until=until,
                                                                n_modes=len(modes)))
        params = queries.window_params(experiment_id, since=since, until=until, segment=None, modes=modes)
        rows = self._stream("reading the fingerprints per deployment", sql, params)
        return [(str(f), float(a), float(b), int(n)) for f, a, b, n in rows]
    def cumulative_moments(
        self, experiment_id: str, *, since: float | None, until: float | None, cuts: Sequence[float],
        fields: Sequence[str], modes: Sequence[str] = ("ab",),
    ) -> dict[str, list[tuple[float, list[float], list[float]]]]:
        """Per arm, per cutoff: (units, sums, upper-triangle cross-products) of ``fields`` over [since, cut)."""
        sql = rollup.cumulative_moments_sql("postgresql", n_modes=len(modes), n_cuts=len(cuts), fields=fields)
        params = rollup.read_params(experiment_id, since=since, until=until, modes=modes, cuts=cuts)
        rows = list(self._stream("aggregating looks", queries.to_pyformat(sql), params))
        return rollup.rows_to_moments(rows, n_cuts=len(cuts), n_fields=len(fields))

    def unit_activity(
        self, experiment_id: str, *, since: float | None = None, until: float | None = None,
        fast_click_s: float = 0.0, modes: Sequence[str] = ("ab",),
    ) -> list[tuple[str, str, int, int, int]]:
        """(unit, arm, most searches on one UTC day, clicks, fast clicks) per (unit, arm), in SQL."""
        if not modes:
            return []
        sql = queries.to_pyformat(queries.unit_activity_sql("postgresql", since=since, until=until,
                                                             n_modes=len(modes)))
        params = queries.window_params(experiment_id, since=since, until=until, segment=None, modes=modes)
        params["fast_s"] = float(fast_click_s)
        rows = self._stream("reading unit activity", sql, params)
        return [(str(u), str(a), int(d), int(c), int(f)) for u, a, d, c, f in rows]

    def interleave_aggregates(
        self, experiment_id: str, *, since: float | None = None, until: float | None = None
    ) -> Iterator[InterleaveUnitAggregate]:
        """Per-unit team-draft wins, ties and no-click counts, computed in SQL."""
        sql = queries.to_pyformat(queries.interleave_aggregates_sql(since=since, until=until))
        params = queries.window_params(experiment_id, since=since, until=until, segment=None, modes=["interleave"])
        return queries.rows_to_interleave_aggregates(self._stream("aggregating interleaving", sql, params))

    def iter_impressions(
        self,
        experiment_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        batch_size: int = 1000,
    ) -> Iterator[tuple[Impression, list[Click]]]:
        """Impressions in (ts, impression_id) order with their clicks, fetched in keyset-paginated batches."""

        def fetch(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
            return self._fetch_dicts("reading impressions", queries.to_pyformat(sql), params)

        def fetch_clicks(ids: list[str]) -> list[dict[str, Any]]:
            return self._fetch_dicts(
                "reading clicks", "SELECT * FROM clicks WHERE impression_id = ANY(%s) ORDER BY ts, position", (ids,)
            )

        yield from queries.iter_impression_pages(
            fetch, fetch_clicks, experiment_id, since=since, until=until, batch_size=batch_size
        )

    def audit_log(self, experiment_id: str) -> list[AuditEntry]:
        """Admin actions for the experiment, oldest first."""
        rows = self._fetch_dicts(
            "reading the audit log", "SELECT * FROM audit WHERE experiment_id = %s ORDER BY ts, id", (experiment_id,)
        )
        return [codec.row_to_audit(r) for r in rows]

    def feedback(self, experiment_id: str) -> list[Feedback]:
        """Browser signals (seen, dwell) of the experiment, in time order."""
        rows = self._fetch_dicts(
            "reading feedback",
            "SELECT * FROM feedback WHERE experiment_id = %s ORDER BY ts, impression_id, kind, doc_id",
            (experiment_id,),
        )
        return [codec.row_to_feedback(r) for r in rows]

    def counts(self, experiment_id: str | None = None) -> dict[str, int]:
        """Row counts per table, optionally for one experiment."""
        out = {}
        for table in ("impressions", "clicks", "audit"):
            if experiment_id is None:
                out[table] = int(self._fetch("counting rows", f"SELECT COUNT(*) FROM {table}")[0][0])
            else:
                sql = f"SELECT COUNT(*) FROM {table} WHERE experiment_id = %s"
                out[table] = int(self._fetch("counting rows", sql, (experiment_id,))[0][0])
        return out

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one SQL statement (``%s``/``%(name)s`` parameters) in its own transaction; for tests and operators.

        A write to ``impressions`` or ``clicks`` rebuilds the rollups afterwards (``rollup.rebuild_statements``)."""
        rows = self._fetch("running a statement", sql, params)
        if rollup.touches_raw_rows(sql) and self.has_rollup():

            def rebuild() -> None:
                with self._pool.connection() as conn, conn.transaction():
                    for statement in rollup.rebuild_statements("postgresql"):
                        conn.execute(statement)

            self._retry("rebuilding the rollups", rebuild)
        return rows

    def close(self) -> None:
        """Close the pool (idempotent)."""
        self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self.safe_url!r})"
