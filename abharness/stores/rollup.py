"""Per-unit sums kept up to date as events are written, so analysis never rescans every impression.

Three tables (schema version 5), maintained by ``write_batch`` in the batch's own transaction:

``impression_facts``
    one narrow row per impression: the columns the statistics read (unit, arm, mode, ts, k, latency, error,
    fallback) plus its *click summary*: click count, first click time, the first click's position (ties in time:
    the higher-ranked one) and the best position. Clicks count only when they carry the impression's experiment,
    as in the scan SQL of ``abharness.stores.queries``. The summary is recomputed from the stored ``clicks`` for
    every impression a batch touches (a new impression, or a new click on it), so late, out-of-order and duplicate
    clicks, and clicks committed before their impression (several replicas), all end up as a full rescan would
    count them.
``unit_rollup``
    per (experiment, mode, unit, arm, UTC day) the sums of ``UnitAggregate`` plus the first and last impression
    time of that day. A batch *adds* to each (unit, day) it touched: a new impression's whole contribution, and
    for an impression whose click summary changed, the new contribution minus the old one (integer sums stay
    exact; float sums are added in another order than a recomputation, equal to it to 1e-9).
``fingerprint_rollup``
    per (experiment, mode, fingerprints, UTC day): first and last impression time and the number of impressions
    that carried those model/index fingerprints (what ``fingerprint_spans`` reports), increased by the impressions
    a batch newly stored.

Only ``write_batch`` maintains them; the plan of each batch is computed in Python (``abharness.stores.rollup_write``,
applied by ``sqlite_write`` / ``postgres_write``). An ad-hoc write to ``impressions`` or ``clicks`` through the stores'
``execute`` (tests, operators) rebuilds all three from the raw rows afterwards (``rebuild_statements``: a full
recomputation, minutes on tens of millions of rows); writes made outside abharness leave them stale.

Reads (both dialects):

* per-unit sums for a window ``since <= ts < until``: the unit's rollup rows that lie inside the window as they
  are; a row that straddles ``since`` or ``until`` (its day holds impressions on both sides) is replaced by the
  sum of its impressions inside the window, read from ``impression_facts`` (a seek on its covering index).
* cumulative looks (the time series): the same rule with every cutoff as one more edge; the per-unit values of
  all looks are computed in one pass over the rollup and reduced to per-arm moments (n, sums, cross-products)
  in SQL, so no per-unit row of the looks leaves the database.

Sums are computed in a different order than a full scan, so floating-point totals can differ in the last bits
(integer counts are exact); the test suite holds them to 1e-9 of the scan.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "BUCKET_S",
    "SCHEMA_VERSION",
    "migration_statements",
    "unit_rows_sql",
    "cumulative_moments_sql",
    "FIELD_SQL",
    "fingerprint_statement",
    "fingerprint_rows",
    "fingerprint_spans_sql",
    "touches_raw_rows",
    "rebuild_statements",
]

#: width of a rollup bucket in seconds (a UTC day).
BUCKET_S = 86_400.0
#: the schema version that creates the two tables (``abharness.stores.schema.MIGRATIONS``); a store opened
#: without migrating (``analyze`` reads only) below it aggregates by scanning.
SCHEMA_VERSION = 5

_FACT_COLUMNS = (
    "impression_id", "experiment_id", "mode", "unit_id", "arm", "ts", "k", "latency_ms", "fallback", "has_error",
    "n_clicks", "first_click_ts", "first_click_position", "min_click_position",
)
_SUMS = ("impressions", "clicks", "sum_rr", "successes", "sum_ttfc", "clicked", "sum_latency", "sum_latency_sq",
         "errors", "fallbacks")


def _real(dialect: str) -> str:
    return "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"


def _bucket(expr: str) -> str:
    return f"CAST(floor({expr} / {BUCKET_S}) AS BIGINT)"


def _fact_contrib(dialect: str) -> dict[str, str]:
    """Per-impression contribution to each rollup sum (alias ``f`` = impression_facts)."""
    real = _real(dialect)
    return {
        "impressions": "1",
        "clicks": "f.n_clicks",
        "sum_rr": f"(CASE WHEN f.first_click_position <= f.k THEN 1.0 / CAST(f.first_click_position AS {real}) "
                  "ELSE 0.0 END)",
        "successes": "(CASE WHEN f.min_click_position <= f.k THEN 1 ELSE 0 END)",
        "sum_ttfc": f"COALESCE(f.first_click_ts - f.ts, CAST(0 AS {real}))",
        "clicked": "(CASE WHEN f.n_clicks > 0 THEN 1 ELSE 0 END)",
        "sum_latency": "f.latency_ms",
        "sum_latency_sq": "(f.latency_ms * f.latency_ms)",
        "errors": "f.has_error",
        "fallbacks": "f.fallback",
    }


#: BASE_COLUMNS of the statistics -> (rollup expression over alias r, per-impression expression key or SQL).
FIELD_SQL: dict[str, tuple[str, str]] = {
    "impressions": ("r.impressions", "impressions"),
    "clicks": ("r.clicks", "clicks"),
    "clicked_impressions": ("r.clicked", "clicked"),
    "abandoned": ("(r.impressions - r.clicked)", "(CASE WHEN f.n_clicks > 0 THEN 0 ELSE 1 END)"),
    "successes": ("r.successes", "successes"),
    "sum_reciprocal_rank": ("r.sum_rr", "sum_rr"),
    "sum_time_to_first_click": ("r.sum_ttfc", "sum_ttfc"),
    "sum_latency_ms": ("r.sum_latency", "sum_latency"),
    "errors": ("r.errors", "errors"),
    "fallbacks": ("r.fallbacks", "fallbacks"),
}


def _click_summary(dialect: str, alias: str) -> tuple[str, str, str, str]:
    """Correlated subqueries giving (n_clicks, first_click_ts, first_click_position, min_click_position)."""
    where = f"c.experiment_id = {alias}.experiment_id AND c.impression_id = {alias}.impression_id"
    return (
        f"(SELECT COUNT(*) FROM clicks c WHERE {where})",
        f"(SELECT MIN(c.ts) FROM clicks c WHERE {where})",
        f"(SELECT c.position FROM clicks c WHERE {where} ORDER BY c.ts, c.position LIMIT 1)",
        f"(SELECT MIN(c.position) FROM clicks c WHERE {where})",
    )


def _ddl(dialect: str) -> tuple[str, ...]:
    real = _real(dialect)
    facts = f"""CREATE TABLE impression_facts (
        impression_id TEXT PRIMARY KEY,
        experiment_id TEXT NOT NULL,
        mode TEXT NOT NULL,
        unit_id TEXT NOT NULL,
        arm TEXT NOT NULL,
        ts {real} NOT NULL,
        k INTEGER NOT NULL,
        latency_ms {real} NOT NULL,
        fallback INTEGER NOT NULL,
        has_error INTEGER NOT NULL,
        n_clicks INTEGER NOT NULL DEFAULT 0,
        first_click_ts {real},
        first_click_position INTEGER,
        min_click_position INTEGER
    ){' WITHOUT ROWID' if dialect == 'sqlite' else ''}"""
    rollup = f"""CREATE TABLE unit_rollup (
        experiment_id TEXT NOT NULL,
        mode TEXT NOT NULL,
        unit_id TEXT NOT NULL,
        arm TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        impressions BIGINT NOT NULL,
        clicks BIGINT NOT NULL,
        sum_rr {real} NOT NULL,
        successes BIGINT NOT NULL,
        sum_ttfc {real} NOT NULL,
        clicked BIGINT NOT NULL,
        sum_latency {real} NOT NULL,
        sum_latency_sq {real} NOT NULL,
        errors BIGINT NOT NULL,
        fallbacks BIGINT NOT NULL,
        first_ts {real} NOT NULL,
        last_ts {real} NOT NULL,
        PRIMARY KEY (experiment_id, mode, unit_id, arm, bucket)
    ){' WITHOUT ROWID' if dialect == 'sqlite' else ''}"""
    return facts, rollup


def _facts_index(dialect: str) -> str:
    if dialect == "sqlite":
        return ("CREATE INDEX impression_facts_unit ON impression_facts (experiment_id, unit_id, arm, mode, ts, k, "
                "latency_ms, fallback, has_error, n_clicks, first_click_ts, first_click_position, min_click_position)")
    return ("CREATE INDEX impression_facts_unit ON impression_facts (experiment_id, unit_id, arm, mode, ts) "
            "INCLUDE (k, latency_ms, fallback, has_error, n_clicks, first_click_ts, first_click_position, "
            "min_click_position)")


def _rollup_select(dialect: str) -> str:
    """SELECT of every rollup row from impression_facts (the backfill)."""
    contrib = _fact_contrib(dialect)
    sums = ", ".join(f"SUM({contrib[s]})" for s in _SUMS)
    return (f"SELECT f.experiment_id, f.mode, f.unit_id, f.arm, {_bucket('f.ts')}, {sums}, MIN(f.ts), MAX(f.ts) "
            f"FROM impression_facts f WHERE true GROUP BY f.experiment_id, f.mode, f.unit_id, f.arm, {_bucket('f.ts')}")


_ROLLUP_INSERT = ("INSERT INTO unit_rollup (experiment_id, mode, unit_id, arm, bucket, " + ", ".join(_SUMS)
                  + ", first_ts, last_ts) ")


def _fingerprint_ddl(dialect: str) -> str:
    real = _real(dialect)
    return f"""CREATE TABLE fingerprint_rollup (
        experiment_id TEXT NOT NULL,
        mode TEXT NOT NULL,
        fingerprints TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        first_ts {real} NOT NULL,
        last_ts {real} NOT NULL,
        impressions BIGINT NOT NULL,
        PRIMARY KEY (experiment_id, mode, fingerprints, bucket)
    ){' WITHOUT ROWID' if dialect == 'sqlite' else ''}"""


_FP_COLUMNS = "experiment_id, mode, fingerprints, bucket, first_ts, last_ts, impressions"


def _fingerprint_upsert(dialect: str) -> str:
    least, greatest = ("min", "max") if dialect == "sqlite" else ("LEAST", "GREATEST")
    return (" ON CONFLICT (experiment_id, mode, fingerprints, bucket) DO UPDATE SET "
            f"first_ts = {least}(fingerprint_rollup.first_ts, excluded.first_ts), "
            f"last_ts = {greatest}(fingerprint_rollup.last_ts, excluded.last_ts), "
            "impressions = fingerprint_rollup.impressions + excluded.impressions")


def _fingerprint_select(where: str) -> str:
    return (f"SELECT experiment_id, mode, CAST(fingerprints AS TEXT), {_bucket('ts')}, MIN(ts), MAX(ts), COUNT(*) "
            f"FROM impressions WHERE {where} GROUP BY experiment_id, mode, CAST(fingerprints AS TEXT), {_bucket('ts')}")


def fingerprint_statement(dialect: str) -> str:
    """Adds a batch's *newly stored* impressions to ``fingerprint_rollup`` (min/max/count per experiment, mode,
    fingerprints and day): ``executemany`` of the rows ``fingerprint_rows`` groups (``?`` marks for SQLite,
    ``%s`` for PostgreSQL, whose fingerprints text must be the jsonb's own rendering)."""
    mark = "?" if dialect == "sqlite" else "%s"
    return (f"INSERT INTO fingerprint_rollup ({_FP_COLUMNS}) VALUES ({', '.join(mark for _ in range(7))})"
            + _fingerprint_upsert(dialect))


def fingerprint_rows(imps: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """``fingerprint_rollup`` increments of newly stored impression rows (``codec.impression_row`` tuples)."""
    acc: dict[tuple[Any, ...], list[Any]] = {}
    for r in imps:
        key = (r[1], r[5], r[9], math.floor(r[2] / BUCKET_S))
        a = acc.get(key)
        if a is None:
            acc[key] = [r[2], r[2], 1]
        else:
            a[0], a[1], a[2] = min(a[0], r[2]), max(a[1], r[2]), a[2] + 1
    return [(*k, *v) for k, v in acc.items()]


def fingerprint_spans_sql(*, n_modes: int) -> str:
    """(fingerprints text, first ts, last ts, impressions) per distinct fingerprints value with impressions in
    ``[:lo, :hi)``, from ``fingerprint_rollup``; a day straddling a window edge is read from the impressions."""
    inside = "(r.first_ts >= :lo AND r.last_ts < :hi)"
    match = ("i.experiment_id = r.experiment_id AND i.ts >= r.first_ts AND i.ts <= r.last_ts AND i.ts >= :lo "
             "AND i.ts < :hi AND i.mode = r.mode AND CAST(i.fingerprints AS TEXT) = r.fingerprints")
    return (
        "SELECT fp, MIN(a), MAX(b), SUM(n) FROM ("
        f"SELECT r.fingerprints AS fp, CASE WHEN {inside} THEN r.first_ts ELSE "
        f"(SELECT MIN(i.ts) FROM impressions i WHERE {match}) END AS a, "
        f"CASE WHEN {inside} THEN r.last_ts ELSE (SELECT MAX(i.ts) FROM impressions i WHERE {match}) END AS b, "
        f"CASE WHEN {inside} THEN r.impressions ELSE (SELECT COUNT(*) FROM impressions i WHERE {match}) END AS n "
        f"FROM fingerprint_rollup r WHERE r.experiment_id = :experiment_id AND {_modes(n_modes)} "
        "AND r.last_ts >= :lo AND r.first_ts < :hi) AS t GROUP BY fp HAVING SUM(n) > 0 ORDER BY 2"
    )


_RAW_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b.*\b(impressions|clicks)\b", re.IGNORECASE | re.DOTALL)


def touches_raw_rows(sql: str) -> bool:
    """Whether an ad-hoc statement writes ``impressions`` or ``clicks`` behind ``write_batch``'s back."""
    return bool(_RAW_WRITE.match(sql))


#: schema version 6 (PostgreSQL only): ``unit_rollup``'s key with every other column INCLUDEd, so the analysis's
#: read in (unit, arm) order is an index-only scan over leaf pages in key order instead of one heap fetch per row
#: (the heap is in write order; 9.2 s against 0.8 s of server time for 1.69 M rows, docs/analysis.md). Index-only
#: needs the visibility map (autovacuum); pages written since the last vacuum are fetched from the heap as before.
READ_INDEX_NAME = "unit_rollup_read"


def read_index_statements(dialect: str) -> tuple[str, ...]:
    """Schema version 6: the covering index of ``unit_rollup`` on PostgreSQL; nothing on SQLite (its WITHOUT
    ROWID table is the key-ordered B-tree already)."""
    if dialect == "sqlite":
        return ()
    rest = ", ".join((*_SUMS, "first_ts", "last_ts"))
    return (f"CREATE INDEX IF NOT EXISTS {READ_INDEX_NAME} ON unit_rollup (experiment_id, mode, unit_id, arm, bucket) "
            f"INCLUDE ({rest})",)


def rebuild_statements(dialect: str) -> tuple[str, ...]:
    """Recompute every derived table from the raw rows (after ad-hoc writes through ``execute``)."""
    backfill = migration_statements(dialect)
    return ("DELETE FROM impression_facts", "DELETE FROM unit_rollup", "DELETE FROM fingerprint_rollup",
            backfill[1], backfill[4], backfill[6])


def migration_statements(dialect: str) -> tuple[str, ...]:
    """Schema version 5: create the tables and backfill them from the stored impressions and clicks."""
    facts, rollup = _ddl(dialect)
    n, first_ts, first_pos, min_pos = _click_summary(dialect, "i")
    cols = ", ".join(_FACT_COLUMNS)
    backfill_facts = (
        f"INSERT INTO impression_facts ({cols}) SELECT i.impression_id, i.experiment_id, i.mode, i.unit_id, i.arm, "
        f"i.ts, i.k, i.latency_ms, i.fallback, i.has_error, {n}, {first_ts}, {first_pos}, {min_pos} "
        "FROM impressions i"
    )
    return (
        facts,
        backfill_facts,
        _facts_index(dialect),
        rollup,
        _ROLLUP_INSERT + _rollup_select(dialect),
        _fingerprint_ddl(dialect),
        f"INSERT INTO fingerprint_rollup ({_FP_COLUMNS}) " + _fingerprint_select("true"),
    )


# -- reads ---------------------------------------------------------------------------------------------------

_MATCH = ("f.experiment_id = r.experiment_id AND f.unit_id = r.unit_id AND f.arm = r.arm AND f.mode = r.mode "
          "AND f.ts >= r.first_ts AND f.ts <= r.last_ts AND f.ts >= :lo AND f.ts < :hi")


def _modes(n_modes: int) -> str:
    if n_modes == 1:
        return "r.mode = :mode0"
    return f"r.mode IN ({', '.join(f':mode{i}' for i in range(n_modes))})"


def unit_rows_sql(dialect: str, *, n_modes: int) -> str:
    """Per-(unit, arm) rows in the column order of ``UnitAggregate`` (segment NULL) for ``:lo <= ts < :hi``.

    Rows inside the window are read as they are; a straddling row is replaced by its impressions inside the
    window (correlated subqueries, evaluated only for those rows)."""
    contrib = _fact_contrib(dialect)
    inside = "(r.first_ts >= :lo AND r.last_ts < :hi)"
    parts = []
    for s in _SUMS:
        agg = "COUNT(*)" if s == "impressions" else f"SUM({contrib[s]})"
        total = (f"COALESCE(SUM(CASE WHEN {inside} THEN r.{s} ELSE "
                 f"(SELECT {agg} FROM impression_facts f WHERE {_MATCH}) END), 0)")
        # PostgreSQL sums integers as numeric (Decimal objects in Python, 4x a float); a double holds these
        # counts exactly (< 2**53), so convert in the server.
        parts.append(total if dialect == "sqlite" else f"CAST({total} AS DOUBLE PRECISION)")
    first = f"MIN(CASE WHEN {inside} THEN r.first_ts ELSE (SELECT MIN(f.ts) FROM impression_facts f WHERE {_MATCH}) END)"
    imp = parts[0]
    return (
        f"SELECT r.unit_id, r.arm, CAST(NULL AS TEXT), {', '.join(parts)}, {first} "
        f"FROM unit_rollup r WHERE r.experiment_id = :experiment_id AND {_modes(n_modes)} "
        "AND r.last_ts >= :lo AND r.first_ts < :hi "
        f"GROUP BY r.unit_id, r.arm HAVING {imp} > 0 ORDER BY r.unit_id, r.arm"
    )


def cumulative_moments_sql(dialect: str, *, n_modes: int, n_cuts: int, fields: Sequence[str]) -> str:
    """Per arm and cutoff ``:cut{j}``: units with an impression in ``[lo, min(hi, cut))``, and the sums and
    cross-products of their per-unit ``fields`` (BASE_COLUMNS names) over that window.

    Columns: arm, then per cutoff ``n, sum(field_a)..., sum(field_a * field_b) for a <= b``."""
    contrib = _fact_contrib(dialect)
    real = _real(dialect)
    inner = []
    for j in range(n_cuts):
        whole = f"(r.first_ts >= :lo AND r.last_ts < :hi AND r.last_ts < :cut{j})"
        for name in fields:
            roll, fact = FIELD_SQL[name]
            fact_sql = contrib.get(fact, fact)
            inner.append(
                f"COALESCE(SUM(CASE WHEN {whole} THEN CAST({roll} AS {real}) WHEN r.first_ts < :cut{j} THEN "
                f"(SELECT SUM(CAST({fact_sql} AS {real})) FROM impression_facts f WHERE {_MATCH} "
                f"AND f.ts < :cut{j}) ELSE 0 END), 0) AS v{j}_{name}"
            )
    outer = []
    for j in range(n_cuts):
        outer.append(f"SUM(CASE WHEN v{j}_impressions > 0 THEN 1 ELSE 0 END)")
        outer.extend(f"SUM(v{j}_{a})" for a in fields)
        outer.extend(f"SUM(v{j}_{a} * v{j}_{b})" for ia, a in enumerate(fields) for b in fields[ia:])
    return (
        f"WITH per_unit AS (SELECT r.arm AS arm, {', '.join(inner)} FROM unit_rollup r "
        f"WHERE r.experiment_id = :experiment_id AND {_modes(n_modes)} AND r.last_ts >= :lo AND r.first_ts < :hi "
        f"GROUP BY r.unit_id, r.arm) SELECT arm, {', '.join(outer)} FROM per_unit GROUP BY arm ORDER BY arm"
    )


def read_params(experiment_id: str, *, since: float | None, until: float | None, modes: Sequence[str],
                cuts: Sequence[float] = ()) -> dict[str, Any]:
    """Parameters for the read SQL built here (an open window edge is +-infinity)."""
    params: dict[str, Any] = {
        "experiment_id": experiment_id,
        "lo": float("-inf") if since is None else float(since),
        "hi": float("inf") if until is None else float(until),
    }
    for i, mode in enumerate(modes):
        params[f"mode{i}"] = mode
    for j, cut in enumerate(cuts):
        params[f"cut{j}"] = float(cut)
    return params


def traffic_sql(*, n_modes: int) -> str:
    """(day bucket, arm, distinct units, impressions) with an impression in ``[:lo, :hi)``, from the rollup: each
    row is one unit's day, so distinct units are rows (one mode only); straddling rows count their facts."""
    inside = "(r.first_ts >= :lo AND r.last_ts < :hi)"
    return (
        "SELECT b, arm, SUM(CASE WHEN n > 0 THEN 1 ELSE 0 END), SUM(n) FROM ("
        f"SELECT r.bucket AS b, r.arm AS arm, CASE WHEN {inside} THEN r.impressions ELSE "
        f"(SELECT COUNT(*) FROM impression_facts f WHERE {_MATCH}) END AS n FROM unit_rollup r "
        f"WHERE r.experiment_id = :experiment_id AND {_modes(n_modes)} AND r.last_ts >= :lo AND r.first_ts < :hi"
        ") AS t GROUP BY b, arm HAVING SUM(n) > 0 ORDER BY b, arm"
    )


def use_rollup(method: str) -> bool:
    """True for ``"rollup"``, False for ``"scan"``; anything else is a programming mistake."""
    if method not in ("rollup", "scan"):
        raise ValueError(f"method={method!r}: use 'rollup' (default) or 'scan' (full rescan of the raw rows)")
    return method == "rollup"


def exists_sql(*, n_modes: int, rollup: bool = True) -> str:
    """One row when an impression of the modes lies in ``[:lo, :hi)`` (the rollup narrows, the facts decide;
    without the rollup, a probe of the impressions)."""
    if not rollup:
        return (f"SELECT 1 FROM impressions r WHERE r.experiment_id = :experiment_id AND {_modes(n_modes)} "
                "AND r.ts >= :lo AND r.ts < :hi LIMIT 1")
    return (
        f"SELECT 1 FROM unit_rollup r WHERE r.experiment_id = :experiment_id AND {_modes(n_modes)} "
        "AND r.last_ts >= :lo AND r.first_ts < :hi "
        f"AND EXISTS (SELECT 1 FROM impression_facts f WHERE {_MATCH}) LIMIT 1"
    )


def rows_to_moments(rows: Sequence[Sequence[Any]], *, n_cuts: int, n_fields: int,
                    ) -> dict[str, list[tuple[float, list[float], list[float]]]]:
    """Split the rows of ``cumulative_moments_sql`` into per-arm, per-cutoff (n, sums, upper-triangle cross)."""
    width = 1 + n_fields + n_fields * (n_fields + 1) // 2
    out: dict[str, list[tuple[float, list[float], list[float]]]] = {}
    for row in rows:
        vals = [float(v) for v in row[1:]]
        looks = []
        for j in range(n_cuts):
            chunk = vals[j * width:(j + 1) * width]
            looks.append((chunk[0], chunk[1:1 + n_fields], chunk[1 + n_fields:]))
        out[row[0]] = looks
    return out


class RollupReads:
    """Shared by the SQL stores: whether reads may use the rollup tables (``has_rollup``).

    ``rollup_enabled`` (default True) can be set False to make every read scan the raw rows, as before schema 5;
    the schema check runs once and is remembered. Subclasses provide ``schema_version()``.
    """

    rollup_enabled: bool = True
    _rollup_seen: bool = False

    def schema_version(self) -> int:  # pragma: no cover - provided by the store
        raise NotImplementedError

    def has_rollup(self) -> bool:
        """Whether the schema has ``unit_rollup`` (version >= 5; a store opened without migrating may not) and
        ``rollup_enabled`` is left True."""
        if not self.rollup_enabled:
            return False
        if not self._rollup_seen:
            self._rollup_seen = self.schema_version() >= SCHEMA_VERSION
        return self._rollup_seen

    def unit_days(self, experiment_id: str, *, since: float | None = None, until: float | None = None,
                  modes: Sequence[str] = ("ab",), row_fields: Sequence[str] | None = None) -> Any:
        """The window's rollup rows as numpy columns (``rollup_arrays.UnitDays``; ``row_fields``: the per-row sums
        to keep, default all): one read from which the analysis computes the per-unit table, the time-series looks
        and the traffic per day."""
        from abharness.stores import rollup_arrays

        return rollup_arrays.read_unit_days(self, experiment_id, since=since, until=until, modes=tuple(modes),
                                            row_fields=tuple(row_fields or rollup_arrays.DAY_SUMS))

    def partial_sums(self, experiment_id: str, *, since: float | None, until: float | None, days: Any, rows: Any,
                     cut_index: Any, cuts: Sequence[float], fields: Sequence[str], readers: int | None = None) -> Any:
        """Sums of ``fields`` over the impressions of the unit-days ``days[rows]`` before their cutoff
        (``rollup_arrays.read_partial_sums``; ``readers``: concurrent connections, default 2)."""
        from abharness.stores import rollup_arrays

        return rollup_arrays.read_partial_sums(self, experiment_id, since=since, until=until, days=days, rows=rows,
                                               cut_index=cut_index, cuts=cuts, fields=fields, readers=readers)
