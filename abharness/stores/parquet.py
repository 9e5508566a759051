"""A read-only event store over a directory of Parquet files (``abharness export``), queried with DuckDB.

``open_store("parquet:///path/to/dir")`` (or ``parquet:////abs/dir``) gives an ``EventStore`` whose reads run
the same aggregation SQL as the PostgreSQL store (``abharness.stores.queries``, PostgreSQL dialect: DuckDB takes
its ``->>``, ordered ``array_agg`` and row comparisons as they are) over views of the Parquet files. ``analyze``
and ``replay`` therefore work on a Parquet directory unchanged, and give the numbers the database stores give.
DuckDB's Parquet reader and JSON functions are built into the Python wheel: nothing is downloaded.

The store keeps no per-unit rollup, so the analysis aggregates the raw rows (the ``scan`` path) every time.
Writing is refused here: the files are produced by ``export`` or by ``abharness ingest --to parquet:///DIR``
(``abharness.stores.parquet_sink``).

One row per key, whatever the files hold: at-least-once ingest can write a redelivered event into a second file,
so each table is read through a view that keeps, per key (``parquet_sink.KEYS``: impression id; (impression id,
doc id); (impression id, kind, doc id); audit entry key) the first row stored -- the first row of the file
whose name sorts first (ingest names its files by write time) -- as a database keeps the first row stored. A
directory holding only ``export`` files (``part-NNNNN.parquet``, one experiment's rows written once from a keyed store) has no
copies, and is read without that step.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from abharness.core.events import AuditEntry, Click, Event, Feedback, Impression, InterleaveUnitAggregate, \
    UnitAggregate
from abharness.errors import StoreError
from abharness.stores import codec, queries
from abharness.stores.base import WriteResult
from abharness.stores.parquet_export import SCHEMAS, TABLES, files
from abharness.stores.parquet_sink import KEYS

__all__ = ["ParquetStore"]

_PARAM = re.compile(r"(?<![:$]):([a-z_][a-z0-9_]*)")
_DUCK_TYPES = {"string": "VARCHAR", "double": "DOUBLE", "int64": "BIGINT"}
_EXPORT_FILE = re.compile(r"part-\d{5}\.parquet")


def needs_dedupe(paths: Sequence[Path]) -> bool:
    """True unless every file is an ``export`` part file (those never hold two rows with one key)."""
    return not all(_EXPORT_FILE.fullmatch(p.name) for p in paths)


def _to_duckdb(sql: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``:name`` parameters as DuckDB's ``$name``, keeping only the parameters the statement uses."""
    used = set(_PARAM.findall(sql))
    return _PARAM.sub(r"$\1", sql), {k: v for k, v in params.items() if k in used}


class ParquetStore:
    """``EventStore`` reads over ``DIR/{impressions,clicks,feedback,audit}/experiment=*/date=*/*.parquet``."""

    def __init__(self, root: str | Path, *, url: str | None = None, dedupe: bool | None = None) -> None:
        import duckdb

        self.root = Path(root)
        self.url = url or f"parquet:///{root}"
        if not self.root.is_dir():
            raise StoreError(f"store {self.url!r}: no directory {str(self.root)!r}; write one with "
                             "`abharness export --store SOURCE --experiment ID --out DIR`")
        if not files(self.root, "impressions"):
            raise StoreError(f"store {self.url!r}: no Parquet files under {str(self.root / 'impressions')!r}; "
                             "write them with `abharness export --store SOURCE --experiment ID --out DIR`")
        self._lock = threading.Lock()
        # dedupe=False reads every row as it is (benchmarks: the cost of the one-row-per-key views)
        self.dedupe = {t: needs_dedupe(files(self.root, t)) if dedupe is None else dedupe for t in TABLES}
        self._con = duckdb.connect(":memory:")
        for table in TABLES:
            self._con.execute(f"CREATE VIEW {table} AS {self._source(table)}")

    def _source(self, table: str) -> str:
        schema = SCHEMAS[table]
        cols = ", ".join(f"CAST({f.name} AS {_DUCK_TYPES[str(f.type)]}) AS {f.name}" for f in schema)
        if not files(self.root, table):
            return self._empty(table)
        pattern = str(self.root / table / "experiment=*" / "date=*" / "*.parquet").replace("'", "''")
        if not self.dedupe.get(table, True):
            return f"SELECT {cols} FROM read_parquet('{pattern}', hive_partitioning = false, union_by_name = true)"
        keys = ", ".join(KEYS[table])
        return (f"SELECT {cols} FROM read_parquet('{pattern}', hive_partitioning = false, union_by_name = true, "
                f"filename = true, file_row_number = true) QUALIFY row_number() OVER (PARTITION BY {keys} "
                "ORDER BY parse_filename(filename), file_row_number) = 1")

    @staticmethod
    def _empty(table: str) -> str:
        cols = ", ".join(f"CAST(NULL AS {_DUCK_TYPES[str(f.type)]}) AS {f.name}" for f in SCHEMAS[table])
        return f"SELECT {cols} WHERE false"

    # -- plumbing -------------------------------------------------------------------------------------------
    def _query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        text, args = _to_duckdb(sql, params or {})
        try:
            with self._lock:
                return self._con.execute(text, args).fetchall()
        except Exception as exc:  # duckdb.Error and IO errors from a vanished file
            raise StoreError(f"store {self.url!r}: query failed: {exc}") from exc

    def _rows_as_dicts(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        text, args = _to_duckdb(sql, params)
        try:
            with self._lock:
                cur = self._con.execute(text, args)
                names = [d[0] for d in cur.description]
                return [dict(zip(names, r)) for r in cur.fetchall()]
        except Exception as exc:
            raise StoreError(f"store {self.url!r}: query failed: {exc}") from exc

    # -- EventStore -----------------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Nothing to migrate: the files carry their schema."""

    def ping(self) -> None:
        """Raise ``StoreError`` when the directory is gone."""
        if not self.root.is_dir():
            raise StoreError(f"store {self.url!r}: directory {str(self.root)!r} is gone")

    def write_batch(self, events: Sequence[Event]) -> WriteResult:
        """Refused: a Parquet directory is written by ``abharness export``."""
        raise StoreError(f"store {self.url!r} is read-only (Parquet export); point the proxy at sqlite:/// or "
                         "postgresql:// and export from there with `abharness export`")

    def get_impression(self, impression_id: str) -> Impression | None:
        """One impression by id, or None."""
        rows = self._rows_as_dicts("SELECT * FROM impressions WHERE impression_id = :id", {"id": impression_id})
        return codec.row_to_impression(rows[0]) if rows else None

    def experiments(self) -> list[str]:
        """Experiment ids with at least one impression."""
        return [r[0] for r in self._query("SELECT DISTINCT experiment_id FROM impressions ORDER BY 1")]

    def arms(self, experiment_id: str) -> list[str]:
        """Arm names with at least one impression in the experiment."""
        sql = "SELECT DISTINCT arm FROM impressions WHERE experiment_id = :e ORDER BY 1"
        return [r[0] for r in self._query(sql, {"e": experiment_id})]

    def has_impressions(self, experiment_id: str, *, since: float | None = None, until: float | None = None,
                        modes: Sequence[str] = ("ab",)) -> bool:
        """True when the experiment has an impression of one of ``modes`` with since <= ts < until."""
        if not modes:
            return False
        params = queries.window_params(experiment_id, since=since, until=until, segment=None, modes=modes)
        marks = ", ".join(f":mode{i}" for i in range(len(modes)))
        sql = (f"SELECT 1 FROM impressions WHERE experiment_id = :experiment_id AND mode IN ({marks})"
               + (" AND ts >= :since" if since is not None else "") + (" AND ts < :until" if until is not None else "")
               + " LIMIT 1")
        return bool(self._query(sql, params))

    def unit_aggregates(self, experiment_id: str, *, since: float | None = None, until: float | None = None,
                        segment: str | None = None, modes: Sequence[str] = ("ab",),
                        method: str = "scan") -> Iterator[UnitAggregate]:
        """Per-(unit, arm[, segment]) sums, by the stores' own aggregation SQL (always a scan: no rollup)."""
        if not modes:
            return iter(())
        sql = queries.unit_aggregates_sql("postgresql", since=since, until=until, segment=segment,
                                          n_modes=len(modes))
        params = queries.window_params(experiment_id, since=since, until=until, segment=segment, modes=modes)
        return queries.rows_to_unit_aggregates(self._query(sql, params))

    def traffic_counts(self, experiment_id: str, *, since: float | None = None, until: float | None = None,
                       bucket_s: float = 86_400.0, modes: Sequence[str] = ("ab",)) -> list[tuple[float, str, int, int]]:
        """(bucket start, arm, distinct units, impressions) per UTC-aligned bucket of ``bucket_s`` seconds."""
        if not modes:
            return []
        sql = queries.traffic_counts_sql("postgresql", since=since, until=until, n_modes=len(modes))
        params = queries.window_params(experiment_id, since=since, until=until, segment=None, modes=modes)
        params["bucket_s"] = float(bucket_s)
        return [(float(b) * bucket_s, str(a), int(u), int(n)) for b, a, u, n in self._query(sql, params)]

    def fingerprint_spans(self, experiment_id: str, *, since: float | None = None, until: float | None = None,
                          modes: Sequence[str] = ("ab", "interleave", "shadow")) -> list[tuple[str, float, float, int]]:
        """(fingerprints JSON, first ts, last ts, impressions) per distinct deployment combination in the window."""
        if not modes:
            return []
        sql = queries.fingerprint_spans_sql("postgresql", since=since, until=until, n_modes=len(modes))
        params = queries.window_params(experiment_id, since=since, until=until, segment=None, modes=modes)
        return [(str(f), float(a), float(b), int(n)) for f, a, b, n in self._query(sql, params)]

    def unit_activity(self, experiment_id: str, *, since: float | None = None, until: float | None = None,
                      fast_click_s: float = 0.0, modes: Sequence[str] = ("ab",)) -> list[tuple[str, str, int, int, int]]:
        """(unit, arm, most searches on one UTC day, clicks, fast clicks) per (unit, arm)."""
        if not modes:
            return []
        sql = queries.unit_activity_sql("postgresql", since=since, until=until, n_modes=len(modes))
        params = queries.window_params(experiment_id, since=since, until=until, segment=None, modes=modes)
        params["fast_s"] = float(fast_click_s)
        return [(str(u), str(a), int(d), int(c), int(f)) for u, a, d, c, f in self._query(sql, params)]

    def interleave_aggregates(self, experiment_id: str, *, since: float | None = None,
                              until: float | None = None) -> Iterator[InterleaveUnitAggregate]:
        """Per-unit team-draft wins, ties and no-click counts."""
        sql = queries.interleave_aggregates_sql(since=since, until=until)
        params = queries.window_params(experiment_id, since=since, until=until, segment=None, modes=["interleave"])
        return queries.rows_to_interleave_aggregates(self._query(sql, params))

    def iter_impressions(self, experiment_id: str, *, since: float | None = None, until: float | None = None,
                         batch_size: int = 1000) -> Iterator[tuple[Impression, list[Click]]]:
        """Impressions in (ts, impression_id) order with their clicks, keyset-paginated (for replay)."""

        # Ingested files keep a click as it arrived; a database fills its dwell_ms from the dwell signal that comes
        # later (``feedback``), so the reader does the same here.
        dwell = ("SELECT c.* REPLACE (COALESCE(c.dwell_ms, d.value) AS dwell_ms) FROM clicks c LEFT JOIN "
                 "(SELECT impression_id, doc_id, value FROM feedback WHERE kind = 'dwell' AND value IS NOT NULL) d "
                 "ON d.impression_id = c.impression_id AND d.doc_id = c.doc_id")
        source = f"({dwell}) c" if self.dedupe["clicks"] else "clicks c"

        def fetch_clicks(ids: list[str]) -> list[dict[str, Any]]:
            sql = f"SELECT * FROM {source} WHERE list_contains(:ids, impression_id) ORDER BY ts, position"
            return self._rows_as_dicts(sql, {"ids": ids})

        yield from queries.iter_impression_pages(self._rows_as_dicts, fetch_clicks, experiment_id, since=since,
                                                 until=until, batch_size=batch_size)

    def audit_log(self, experiment_id: str) -> list[AuditEntry]:
        """Admin actions for the experiment, oldest first."""
        rows = self._rows_as_dicts("SELECT * FROM audit WHERE experiment_id = :e ORDER BY ts, entry_key",
                                   {"e": experiment_id})
        return [codec.row_to_audit(r) for r in rows]

    def feedback(self, experiment_id: str) -> list[Feedback]:
        """Browser signals of the experiment, in time order."""
        rows = self._rows_as_dicts("SELECT * FROM feedback WHERE experiment_id = :e "
                                   "ORDER BY ts, impression_id, kind, doc_id", {"e": experiment_id})
        return [codec.row_to_feedback(r) for r in rows]

    def counts(self, experiment_id: str | None = None) -> dict[str, int]:
        """Row counts per table, optionally for one experiment."""
        where = "" if experiment_id is None else " WHERE experiment_id = :e"
        params = {} if experiment_id is None else {"e": experiment_id}
        return {t: int(self._query(f"SELECT COUNT(*) FROM {t}{where}", params)[0][0])
                for t in ("impressions", "clicks", "audit")}

    def close(self) -> None:
        """Release the DuckDB connection."""
        with self._lock:
            self._con.close()

    def __repr__(self) -> str:
        return f"ParquetStore({str(self.root)!r})"
