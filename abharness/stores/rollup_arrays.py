"""Bulk reads of the rollup into numpy columns, for the analysis of millions of units (both SQL stores).

``abharness.stores.rollup`` keeps ``unit_rollup`` (per unit, arm, mode and UTC day) and ``impression_facts`` up to
date as events are written. The analysis reads the unit-day rows of a window once (``read_unit_days``): the
per-unit table, the cumulative looks of the time series and the traffic per day are all computed from that one
read in numpy. A look's cutoff falls inside some unit-days; only those are completed from ``impression_facts``
(``read_partial_sums``: one index seek per cut-through unit-day).

Rows travel as columns, never as per-row Python objects where it can be helped: through ADBC when its drivers are
installed (``arrow_read``: SQLite in a child process, PostgreSQL by binary COPY); otherwise PostgreSQL sends them with
``COPY ... TO STDOUT (FORMAT csv)`` (its float8 output is the shortest text that reads back to the same double,
and Arrow's CSV reader parses it exactly); SQLite's rows are transposed chunk by chunk into arrays.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from abharness.errors import StoreError
from abharness.stores import arrow_read, rollup
from abharness.stores.queries import to_pyformat


__all__ = ["DAY_SUMS", "UnitDays", "unit_day_sql", "partial_sums_sql", "read_unit_days", "read_partial_sums"]

#: the per-row sums ``unit_day_sql`` returns, in this order (``sum_latency_sq`` is not read by the analysis).
DAY_SUMS: tuple[str, ...] = ("impressions", "clicks", "sum_rr", "successes", "sum_ttfc", "clicked", "sum_latency",
                             "errors", "fallbacks")
_KEYS = ("unit_id", "arm", "mode")
_NUMBERS = ("bucket", *DAY_SUMS, "first_ts", "last_ts")
_CHUNK = 50_000
_WORKERS = 2  # concurrent readers of the cut-through unit-days (the project's machines have 2 cores)
_MIN_PART = 5_000  # pairs per reader at least (below, one reader)
_PG_READERS = 1  # PostgreSQL: connections reading contiguous unit ranges of the rollup concurrently (1 by
#                  default: with schema 6's covering index the read is bound by the client; ABH_PG_READERS=2 helps
#                  a little when the index-only scan falls back to the heap, docs/analysis.md)
_MIN_SPLIT_ROWS = 200_000  # ... when the window holds about this many rollup rows or more
_MIN_SPLIT_PAGES = 4_096  # ... and unit_rollup has this many pages (32 MiB) or more (else no sampling either)
_SAMPLE_PAGES = 256  # pages sampled for the split points
_CACHE_KIB = 16_384  # page cache of the analysis's own SQLite connections (the default 2 MiB thrashes on seeks;
#                      the seeks are sorted: 16 MiB cost the same CPU as 64 MiB at 10 M impressions)


@dataclass(frozen=True, eq=False)
class UnitDays:
    """The rollup rows of a window, ordered by (unit_id, arm), reduced to what the analysis reads.

    Per (unit, arm) group: ``unit_ids``, ``arms`` (object arrays), ``totals`` (groups x ``DAY_SUMS``: the group's
    rows summed in row order, as SQL's SUM) and ``first_seen`` (its first impression in the window). Per row:
    ``group``, ``mode``, ``bucket`` (UTC day number), the first / last impression time of the row inside the window
    and ``sums`` (rows x ``row_fields``, a subset of ``DAY_SUMS``). A row straddling a window edge holds only its
    impressions inside the window; rows (and groups) without any impression in the window are left out."""

    unit_ids: np.ndarray
    arms: np.ndarray
    totals: np.ndarray
    first_seen: np.ndarray
    group: np.ndarray
    mode: np.ndarray
    bucket: np.ndarray
    first_ts: np.ndarray
    last_ts: np.ndarray
    sums: np.ndarray
    row_fields: tuple[str, ...] = DAY_SUMS

    @property
    def rows(self) -> int:
        return int(self.bucket.size)

    def column(self, name: str) -> np.ndarray:
        """A per-row sum (one of ``row_fields``)."""
        return self.sums[:, self.row_fields.index(name)]


def _from_batches(batches: Iterator[Any], row_fields: tuple[str, ...]) -> UnitDays:
    """``UnitDays`` of Arrow record batches with the columns of ``unit_day_sql``, reduced batch by batch: group
    totals summed as the rows arrive, per row only ``row_fields`` kept (peak memory). Strings are compared in
    Arrow; one Python object per group's unit id only, arm and mode as a few shared values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keep_cols = [DAY_SUMS.index(f) for f in row_fields]
    parts: dict[str, list[Any]] = {k: [] for k in ("change", "ids", "arms", "modes", "bucket", "first", "last",
                                                   "sums", "totals", "seen")}
    prev: Any = None  # (unit, arm) of the previous batch's last row
    for batch in batches:
        if batch.num_rows and pc.any(pc.less_equal(batch.column(4), 0)).as_py():
            batch = batch.filter(pc.greater(batch.column(4), 0))  # a straddling row with no impression inside
        n = batch.num_rows
        if n == 0:
            continue
        unit, arm = batch.column(0), batch.column(1)
        change = np.empty(n, dtype=bool)
        change[0] = prev is None or prev != (unit[0].as_py(), arm[0].as_py())
        if n > 1:
            same = pc.and_(pc.equal(unit.slice(1), unit.slice(0, n - 1)), pc.equal(arm.slice(1), arm.slice(0, n - 1)))
            change[1:] = ~same.to_numpy(zero_copy_only=False)
        prev = (unit[n - 1].as_py(), arm[n - 1].as_py())
        starts = np.flatnonzero(change)
        sums = np.column_stack([batch.column(4 + i).to_numpy() for i in range(len(DAY_SUMS))])
        first = batch.column(4 + len(DAY_SUMS)).to_numpy().astype(float, copy=True)
        segments = np.r_[0, starts] if not change[0] else starts
        totals, seen = np.add.reduceat(sums, segments, axis=0), np.minimum.reduceat(first, segments)
        if not change[0]:  # the batch opens with the rest of the previous batches' last group
            last = next(i for i in range(len(parts["totals"]) - 1, -1, -1) if len(parts["totals"][i]))
            parts["totals"][last][-1] += totals[0]
            parts["seen"][last][-1] = min(parts["seen"][last][-1], seen[0])
            totals, seen = totals[1:], seen[1:]
        parts["totals"].append(totals)
        parts["seen"].append(seen)
        parts["ids"].append(unit.take(pa.array(starts)).to_numpy(zero_copy_only=False))
        parts["arms"].append(arm.take(pa.array(starts)).dictionary_encode())
        parts["modes"].append(batch.column(2).dictionary_encode())
        parts["change"].append(change)
        parts["bucket"].append(batch.column(3).to_numpy().astype(np.int64))
        parts["first"].append(first)
        parts["last"].append(batch.column(5 + len(DAY_SUMS)).to_numpy().astype(float, copy=True))
        parts["sums"].append(np.ascontiguousarray(sums[:, keep_cols]))  # a copy: no view keeps a batch alive
        del batch, unit, arm, sums
    if not parts["change"]:
        return _empty_days(row_fields)
    group = np.cumsum(_concat(parts["change"]), dtype=np.int64) - 1
    return UnitDays(_concat(parts["ids"]).astype(object, copy=False), _shared(parts["arms"]),
                    _concat(parts["totals"]), _concat(parts["seen"]), group, _shared(parts["modes"]),
                    _concat(parts["bucket"]), _concat(parts["first"]), _concat(parts["last"]), _concat(parts["sums"]),
                    row_fields)


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate and empty ``parts``."""
    out = np.concatenate(parts)
    parts.clear()
    return out


def _shared(parts: list[Any]) -> np.ndarray:
    """Dictionary-encoded Arrow string arrays as one object array sharing one str per distinct value."""
    values: dict[str, int] = {}
    codes = []
    for part in parts:
        local = part.dictionary.to_pylist()
        remap = np.array([values.setdefault(v, len(values)) for v in local], dtype=np.int64)
        codes.append(remap[part.indices.to_numpy(zero_copy_only=False).astype(np.int64)] if local else
                     np.empty(0, np.int64))
    table = np.array(list(values), dtype=object)
    return table[np.concatenate(codes)] if codes else np.empty(0, dtype=object)


def _empty_days(row_fields: tuple[str, ...]) -> UnitDays:
    empty, none = np.empty(0, dtype=object), np.empty(0)
    return UnitDays(empty, empty, np.empty((0, len(DAY_SUMS))), none, np.empty(0, np.int64), empty,
                    np.empty(0, np.int64), none, none, np.empty((0, len(row_fields))), row_fields)


def unit_day_sql(dialect: str, *, n_modes: int, windowed: bool = True, from_unit: bool = False,
                 to_unit: bool = False) -> str:
    """Every rollup row (unit, arm, mode, UTC day) with an impression in ``[:lo, :hi)``, ordered by unit and arm:
    unit_id, arm, mode, bucket, ``DAY_SUMS``, first and last impression time in the window (numbers as REAL).

    As ``rollup.unit_rows_sql`` but one row per unit-day instead of per unit: rows inside the window as they are, a
    row straddling ``:lo`` or ``:hi`` replaced by its impressions inside the window (it may then hold none).
    ``windowed=False`` (no ``since`` nor ``until``): every row is inside, read as it is. ``from_unit`` /
    ``to_unit``: only the units ``>= :unit_from`` / ``< :unit_to`` (a contiguous range of the ORDER BY)."""
    contrib = rollup._fact_contrib(dialect)
    real = rollup._real(dialect)
    inside = "(r.first_ts >= :lo AND r.last_ts < :hi)"
    cols = []
    for s in (*DAY_SUMS, "first_ts", "last_ts"):
        if s in ("first_ts", "last_ts"):
            agg = "MIN(f.ts)" if s == "first_ts" else "MAX(f.ts)"
        else:
            agg = "COUNT(*)" if s == "impressions" else f"COALESCE(SUM({contrib[s]}), 0)"
        value = (f"CASE WHEN {inside} THEN r.{s} ELSE (SELECT {agg} FROM impression_facts f WHERE {rollup._MATCH}) "
                 "END") if windowed else f"r.{s}"
        cols.append(f"CAST({value} AS {real})")
    return (f"SELECT r.unit_id, r.arm, r.mode, CAST(r.bucket AS {real}), {', '.join(cols)} FROM unit_rollup r "
            f"WHERE r.experiment_id = :experiment_id AND {rollup._modes(n_modes)} "
            "AND r.last_ts >= :lo AND r.first_ts < :hi "
            + ("AND r.unit_id >= :unit_from " if from_unit else "") + ("AND r.unit_id < :unit_to " if to_unit else "")
            + "ORDER BY r.unit_id, r.arm")


def pg_readers() -> int:
    """Connections the PostgreSQL rollup read uses: ``ABH_PG_READERS`` (1 = one query), default ``_PG_READERS``."""
    value = os.environ.get("ABH_PG_READERS", "")
    try:
        return max(1, int(value)) if value.strip() else _PG_READERS
    except ValueError:
        raise StoreError(f"ABH_PG_READERS must be a whole number, not {value!r}") from None


def pg_split_sql(*, n_modes: int) -> str:
    """PostgreSQL: the rows of the window's range in a sample of ``:pct`` percent of ``unit_rollup``'s pages
    (``TABLESAMPLE SYSTEM``, repeatable) and their units' quantiles at ``:fractions`` in the ORDER BY's order (the
    column's collation): split points of the unit range into parts of about equal size."""
    return ("SELECT COUNT(*), percentile_disc(CAST(:fractions AS DOUBLE PRECISION[])) WITHIN GROUP "
            "(ORDER BY r.unit_id) FROM unit_rollup r TABLESAMPLE SYSTEM (:pct) REPEATABLE (0) "
            f"WHERE r.experiment_id = :experiment_id AND {rollup._modes(n_modes)} "
            "AND r.last_ts >= :lo AND r.first_ts < :hi")


def pg_split_points(store: Any, params: dict[str, Any], *, n_modes: int, parts: int) -> list[str]:
    """Unit ids splitting the rollup read into up to ``parts`` contiguous ranges of about equal size, estimated
    from a sample of about ``_SAMPLE_PAGES`` pages; none (one read) when the table is small or the window's rows
    are estimated below ``_MIN_SPLIT_ROWS``. Any split points give the same rows: they only balance the parts."""
    if parts < 2:
        return []
    pages = store._fetch("sizing the rollup", "SELECT pg_relation_size(CAST('unit_rollup' AS regclass)) "
                         "/ current_setting('block_size')::int")[0][0]
    if not pages or pages < _MIN_SPLIT_PAGES:
        return []
    pct = min(100.0, 100.0 * _SAMPLE_PAGES / pages)
    q = {**params, "pct": pct, "fractions": [i / parts for i in range(1, parts)]}
    count, points = store._fetch("sampling the rollup's units", to_pyformat(pg_split_sql(n_modes=n_modes)), q)[0]
    if count * 100.0 / pct < _MIN_SPLIT_ROWS or not points:
        return []
    return sorted({p for p in points if p is not None})  # sorted only to drop repeats: the SQL gives them in order


def _window_value(dialect: str, name: str, windowed: bool) -> str:
    """A rollup row's ``name`` (a DAY_SUMS name, first_ts or last_ts) inside ``[:lo, :hi)``."""
    if not windowed:
        return f"r.{name}"
    contrib = rollup._fact_contrib(dialect)
    if name in ("first_ts", "last_ts"):
        agg = "MIN(f.ts)" if name == "first_ts" else "MAX(f.ts)"
    else:
        agg = "COUNT(*)" if name == "impressions" else f"COALESCE(SUM({contrib[name]}), 0)"
    return (f"(CASE WHEN (r.first_ts >= :lo AND r.last_ts < :hi) THEN r.{name} ELSE (SELECT {agg} "
            f"FROM impression_facts f WHERE {rollup._MATCH}) END)")


def sqlite_group_sql(*, n_modes: int) -> str:
    """SQLite, first of two reads in one snapshot: per (unit, arm) the number of its rollup rows in the window's
    range, ordered by unit and arm (the strings, once per unit)."""
    return ("SELECT r.unit_id, r.arm, COUNT(*) FROM unit_rollup r WHERE r.experiment_id = :experiment_id "
            f"AND {rollup._modes(n_modes)} AND r.last_ts >= :lo AND r.first_ts < :hi GROUP BY r.unit_id, r.arm "
            "ORDER BY r.unit_id, r.arm")


def sqlite_row_sql(*, n_modes: int, windowed: bool) -> str:
    """SQLite, second read: the same rows in the same (unit, arm) order, numbers only: mode index, day, first and
    last impression time inside the window (NULL when none) and ``DAY_SUMS`` inside the window."""
    mode = "0" if n_modes == 1 else ("CASE r.mode " + " ".join(f"WHEN :mode{i} THEN {i}" for i in range(n_modes))
                                     + " END")
    cols = ", ".join(_window_value("sqlite", c, windowed) for c in ("first_ts", "last_ts", *DAY_SUMS))
    return (f"SELECT {mode}, r.bucket, {cols} FROM unit_rollup r WHERE r.experiment_id = :experiment_id "
            f"AND {rollup._modes(n_modes)} AND r.last_ts >= :lo AND r.first_ts < :hi ORDER BY r.unit_id, r.arm")


def partial_sums_sql(dialect: str, *, n_cuts: int, fields: Sequence[str]) -> str:
    """Sums of ``fields`` (``rollup.FIELD_SQL`` names) over the impressions of one unit-day before a cutoff, for a
    list of (unit, arm, mode, day, cutoff index) pairs: the unit-days a time-series look cuts through.

    Columns: the pair's position, then one sum per field; pairs without such an impression give no row.
    Impressions counted: ``f.ts`` in that UTC day, in ``[:lo, :hi)`` and before ``:cut{j}``. SQLite takes the pairs
    from a temporary table (``cut_days_sqlite``), PostgreSQL as five JSON arrays (``:units``,
    ``:arms``, ``:modes``, ``:days``, ``:js``). Cutoffs are bound as numbers, never passed through text."""
    contrib = rollup._fact_contrib(dialect)
    real = rollup._real(dialect)
    sums = ", ".join(f"SUM(CAST({contrib.get(rollup.FIELD_SQL[n][1], rollup.FIELD_SQL[n][1])} AS {real}))"
                     for n in fields)
    def cut(j: str) -> str:
        return f"CASE {j} " + " ".join(f"WHEN {i} THEN :cut{i}" for i in range(n_cuts)) + " END"

    match = ("f.experiment_id = :experiment_id AND f.unit_id = p.u AND f.arm = p.a AND f.mode = p.m "
             f"AND f.ts >= CAST(p.d AS {real}) * {rollup.BUCKET_S} - 1.0 AND f.ts < p.cut "
             f"AND {rollup._bucket('f.ts')} = p.d AND f.ts >= :lo AND f.ts < :hi")
    if dialect == "sqlite":  # the pairs are loaded into a temporary table first (``cut_days_sqlite``)
        # the day's range as columns of the pair; the bucket (floor of a division) is computed only for an
        # impression within a second of the day's edges (inside them it is the pair's day: same rows)
        match = ("f.experiment_id = :experiment_id AND f.unit_id = p.u AND f.arm = p.a AND f.mode = p.m "
                 "AND f.ts >= p.lo AND f.ts < p.cut "
                 f"AND ((f.ts >= p.inner_lo AND f.ts < p.inner_hi) OR {rollup._bucket('f.ts')} = p.d) "
                 "AND f.ts >= :lo AND f.ts < :hi")
        return f"SELECT p.k, {sums} FROM abh_cut_days p JOIN impression_facts f ON {match} GROUP BY p.k"
    # PostgreSQL: one aggregate per pair (LATERAL), so no sort of every matching impression by pair. The five
    # lists arrive as JSON arrays (one text parameter each: psycopg's array adaptation costs seconds of client
    # CPU for a few hundred thousand strings)
    lists = ", ".join(f"json_array_elements_text(CAST(:{n} AS json))" for n in ("units", "arms", "modes", "days", "js"))
    return (
        f"SELECT p.k, s.* FROM (SELECT k - 1 AS k, u, a, m, CAST(d AS BIGINT) AS d, {cut('CAST(j AS INTEGER)')} "
        f"AS cut FROM ROWS FROM ({lists}) WITH ORDINALITY AS q(u, a, m, d, j, k)) AS p, "
        f"LATERAL (SELECT {sums} FROM impression_facts f WHERE {match}) AS s"
    )


def cut_days_sqlite() -> tuple[str, str, str]:
    """SQLite: create, fill and drop the temporary table of the pairs that ``partial_sums_sql`` reads. Its rowid is
    the pair's position, so the join runs in that order and the GROUP BY needs no sort. The fill takes one row per
    pair (``cut_days_rows``) through ``executemany``: less CPU than unpacking a JSON array in SQL (0.6 s against
    1.6 s for 287,656 pairs)."""
    return (
        "CREATE TEMP TABLE abh_cut_days (k INTEGER PRIMARY KEY, u TEXT, a TEXT, m TEXT, d INTEGER, cut REAL, "
        "lo REAL, inner_lo REAL, inner_hi REAL)",
        "INSERT INTO abh_cut_days VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "DROP TABLE IF EXISTS temp.abh_cut_days",
    )


def cut_days_rows(units: Sequence[str], arms: Sequence[str], modes: Sequence[str], days: np.ndarray,
                  cuts: np.ndarray) -> Iterator[tuple[Any, ...]]:
    """The rows of ``abh_cut_days``: position, unit, arm, mode, day, cutoff, then the day's start less a second
    (SQL's ``CAST(d AS REAL) * BUCKET_S - 1.0``, the same double), and its start and end a second inside."""
    start = days.astype(float) * rollup.BUCKET_S
    return zip(itertools.count(), units, arms, modes, days.tolist(), cuts.tolist(), (start - 1.0).tolist(),
               (start + 1.0).tolist(), (start + (rollup.BUCKET_S - 1.0)).tolist())


def _is_sqlite(store: Any) -> bool:
    return isinstance(getattr(store, "path", None), str) and callable(getattr(store, "_conn", None))


def _check_open(store: Any) -> None:
    """The store's own checks before the file is opened directly: closed, or its file gone or replaced."""
    if getattr(store, "_closed", False):
        raise StoreError(f"the store {store.url} is closed; open a new one with open_store()")
    check = getattr(store, "_check_file", None)
    if callable(check):
        check()


@contextmanager
def _sqlite_conn(store: Any) -> Iterator[sqlite3.Connection]:
    """A private read connection to the store's file (its own page cache and temporary tables), or the store's
    shared connection for ``:memory:``."""
    if store.path == ":memory:":
        with store._conn() as conn:
            yield conn
        return
    _check_open(store)
    try:
        conn = sqlite3.connect(store.path, timeout=30.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the SQLite store {store.path!r} for reading: {exc}") from exc
    try:
        conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        yield conn
    finally:
        conn.close()


def pg_unit_parts(params: dict[str, Any], splits: Sequence[str], *, n_modes: int,
                  windowed: bool) -> list[tuple[str, dict[str, Any]]]:
    """``unit_day_sql`` split at the unit ids ``splits`` (ascending in the column's collation) into contiguous
    ranges: (sql, params) per range, in order; their rows one after the other are the whole read's, in order."""
    bounds = [None, *splits, None]
    return [(unit_day_sql("postgresql", n_modes=n_modes, windowed=windowed, from_unit=lo is not None,
                          to_unit=hi is not None),
             {**params, **({"unit_from": lo} if lo is not None else {}), **({"unit_to": hi} if hi is not None else {})})
            for lo, hi in zip(bounds[:-1], bounds[1:])]


def read_unit_days(store: Any, experiment_id: str, *, since: float | None, until: float | None,
                   modes: Sequence[str], row_fields: Sequence[str] = DAY_SUMS,
                   pg_splits: Sequence[str] | None = None) -> UnitDays:
    """The unit-day rows of ``unit_day_sql`` as ``UnitDays`` keeping ``row_fields`` per row.

    PostgreSQL with ADBC: read in contiguous unit ranges on ``pg_readers()`` connections at once (split points from
    ``pg_split_points``, or ``pg_splits`` when given: the tests), concatenated in order."""
    row_fields = tuple(row_fields)
    params = rollup.read_params(experiment_id, since=since, until=until, modes=modes)
    windowed = since is not None or until is not None
    if not _is_sqlite(store):
        import pyarrow as pa

        names = (*_KEYS, *_NUMBERS)
        types = {**{k: pa.string() for k in _KEYS}, **{n: pa.float64() for n in _NUMBERS}}
        if arrow_read.available_postgres():
            splits = pg_split_points(store, params, n_modes=len(modes), parts=pg_readers()) if pg_splits is None \
                else list(pg_splits)
            return _from_batches(arrow_read.pg_batches_parts(store, "reading the rollup",
                                                             pg_unit_parts(params, splits, n_modes=len(modes),
                                                                           windowed=windowed), names), row_fields)
        sql = unit_day_sql("postgresql", n_modes=len(modes), windowed=windowed)
        return _from_batches(arrow_read.pg_csv_batches(store, "reading the rollup", sql, params, names, types),
                             row_fields)
    if not windowed and store.path != ":memory:" and arrow_read.available_sqlite():
        # numbers are never NULL without a window (ADBC types the columns from the values)
        _check_open(store)
        sql = unit_day_sql("sqlite", n_modes=len(modes), windowed=False)
        return _from_batches(arrow_read.sqlite_batches(store.path, sql, params), row_fields)
    return _sqlite_unit_days(store, params, modes=tuple(modes), windowed=windowed, row_fields=row_fields)


def _sqlite_unit_days(store: Any, params: dict[str, Any], *, modes: tuple[str, ...], windowed: bool,
                      row_fields: tuple[str, ...]) -> UnitDays:
    """Two reads in one snapshot (a read transaction): the (unit, arm) groups with their row counts (strings once
    per unit), then the rows as numbers only, summed into the groups chunk by chunk (peak memory)."""
    width = 4 + len(DAY_SUMS)  # mode, day, first, last, DAY_SUMS
    keep_cols = [4 + DAY_SUMS.index(f) for f in row_fields]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("ids", "arms", "counts", "mode", "bucket", "first", "last",
                                                         "sums")}
    with _sqlite_conn(store) as conn:
        try:
            conn.execute("BEGIN")
            try:
                cur = conn.execute(sqlite_group_sql(n_modes=len(modes)), params)
                while chunk := cur.fetchmany(_CHUNK):
                    ids, arms, counts = zip(*chunk)
                    parts["ids"].append(np.array(ids, dtype=object))
                    parts["arms"].append(np.array(arms, dtype=object))
                    parts["counts"].append(np.array(counts, dtype=np.int64))
                if not parts["ids"]:
                    return _empty_days(row_fields)
                unit_ids, arm_ids = _concat(parts["ids"]), _concat(parts["arms"])
                group = np.repeat(np.arange(unit_ids.size, dtype=np.int64), _concat(parts["counts"]))
                totals = np.zeros((unit_ids.size, len(DAY_SUMS)))
                seen = np.full(unit_ids.size, np.nan)
                start = 0
                cur = conn.execute(sqlite_row_sql(n_modes=len(modes), windowed=windowed), params)
                while chunk := cur.fetchmany(_CHUNK):
                    n = len(chunk)
                    r = np.fromiter(itertools.chain.from_iterable(chunk), dtype=float, count=n * width).reshape(n, width) \
                        if not windowed else np.array(chunk, dtype=float).reshape(n, width)  # NULL -> nan
                    del chunk
                    g = group[start:start + n]
                    seg = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
                    totals[g[seg]] += np.add.reduceat(np.nan_to_num(r[:, 4:]), seg, axis=0)
                    seen[g[seg]] = np.fmin(seen[g[seg]], np.fmin.reduceat(r[:, 2], seg))
                    parts["mode"].append(r[:, 0].astype(np.int8))
                    parts["bucket"].append(r[:, 1].astype(np.int64))
                    parts["first"].append(r[:, 2].copy())
                    parts["last"].append(r[:, 3].copy())
                    parts["sums"].append(np.ascontiguousarray(r[:, keep_cols]))
                    start += n
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite query failed on {store.path!r}: {exc}") from exc
    if start != group.size:  # cannot happen inside one read transaction
        raise StoreError(f"the rollup of {store.path!r} changed between two reads of one snapshot")
    mode, bucket, first, last = (_concat(parts[k]) for k in ("mode", "bucket", "first", "last"))
    sums = _concat(parts["sums"])
    rows_in = np.nan_to_num(sums[:, row_fields.index("impressions")]) > 0 if "impressions" in row_fields \
        else ~np.isnan(first)
    groups_in = totals[:, 0] > 0
    if not groups_in.all() or not rows_in.all():  # a window edge left a row (or a unit) without impressions
        new_index = np.cumsum(groups_in) - 1
        group, mode, bucket, first, last, sums = (new_index[group[rows_in]], mode[rows_in], bucket[rows_in],
                                                  first[rows_in], last[rows_in], sums[rows_in])
        unit_ids, arm_ids, totals, seen = unit_ids[groups_in], arm_ids[groups_in], totals[groups_in], seen[groups_in]
    shared = {a: a for a in arm_ids.tolist()}
    return UnitDays(unit_ids, np.array([shared[a] for a in arm_ids.tolist()], dtype=object), totals, seen, group,
                    np.array(list(modes), dtype=object)[mode], bucket, first, last, sums, row_fields)


def read_partial_sums(store: Any, experiment_id: str, *, since: float | None, until: float | None,
                      days: UnitDays, rows: np.ndarray, cut_index: np.ndarray, cuts: Sequence[float],
                      fields: Sequence[str], readers: int | None = None) -> np.ndarray:
    """Sums of ``fields`` over the impressions of unit-day ``rows[i]`` (indexes into ``days``) before
    ``cuts[cut_index[i]]`` (and inside the window): an array (len(rows), len(fields)), 0 where there is none.

    The pairs are sorted in index order (consecutive seeks read neighbouring pages) and split into ``readers``
    (default ``_WORKERS``) parts read concurrently on their own connections (SQLite and psycopg wait without the
    GIL). Each SQLite reader has a 16 MiB page cache."""
    out = np.zeros((rows.size, len(fields)))
    if rows.size == 0:
        return out
    order = np.argsort(rows, kind="stable")
    rows, cut_index = rows[order], cut_index[order]
    parts = np.array_split(np.arange(rows.size), min(readers or _WORKERS, max(1, rows.size // _MIN_PART)))
    args = [(store, experiment_id, since, until, days, rows[p], cut_index[p], cuts, fields) for p in parts]
    if len(parts) == 1:
        results = [_partial_part(*args[0])]
    else:
        with ThreadPoolExecutor(max_workers=len(parts), thread_name_prefix="abh-partials") as pool:
            results = list(pool.map(lambda a: _partial_part(*a), args))
    sorted_out = np.concatenate(results)
    out[order] = sorted_out
    return out


def _partial_part(store: Any, experiment_id: str, since: float | None, until: float | None, days: UnitDays,
                  rows: np.ndarray, cut_index: np.ndarray, cuts: Sequence[float],
                  fields: Sequence[str]) -> np.ndarray:
    out = np.zeros((rows.size, len(fields)))
    params = rollup.read_params(experiment_id, since=since, until=until, modes=(), cuts=cuts)
    g = days.group[rows]
    units, arms, modes = days.unit_ids[g].tolist(), days.arms[g].tolist(), days.mode[rows].tolist()
    if _is_sqlite(store):
        create, fill, drop = cut_days_sqlite()
        sql = partial_sums_sql("sqlite", n_cuts=len(cuts), fields=fields)
        pair_rows = cut_days_rows(units, arms, modes, days.bucket[rows], np.asarray(cuts, dtype=float)[cut_index])
        with _sqlite_conn(store) as conn:
            try:
                conn.execute(drop)
                conn.execute(create)
                conn.executemany(fill, pair_rows)
                got_rows = conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite query failed on {store.path!r}: {exc}") from exc
            finally:
                conn.execute(drop)
    else:
        params.update({name: orjson.dumps(values).decode() for name, values in
                       (("units", units), ("arms", arms), ("modes", modes), ("days", days.bucket[rows].tolist()),
                        ("js", cut_index.tolist()))})
        sql = to_pyformat(partial_sums_sql("postgresql", n_cuts=len(cuts), fields=fields))
        got_rows = store._fetch("reading the unit-days the looks cut through", sql, params)
    if got_rows:
        got = np.array(got_rows, dtype=float).reshape(len(got_rows), 1 + len(fields))
        got = got[~np.isnan(got[:, 1:]).any(axis=1)]  # PostgreSQL: a pair without impressions sums to NULL
        out[got[:, 0].astype(np.int64)] = got[:, 1:]
    return out
