"""The analysis from one read of the per-unit-per-day rollup (``EventStore.unit_days``), in numpy.

A store that keeps ``unit_rollup`` hands over the window's unit-day rows as columns, once. From them:

* the per-unit table (``table_from_days``): the rows of each (unit, arm) summed, as ``unit_rows_sql`` sums them;
* the cumulative looks of the time series (``look_moments``): at a cutoff, a unit-day whose last impression is
  before it counts whole, one whose first impression is at or after it not at all, and one the cutoff cuts
  through is completed from ``impression_facts`` (``EventStore.partial_sums``, a seek per such unit-day, all of
  them in one query); per-arm moments are then sums over units;
* the traffic per UTC day (``traffic_from_days``): one row per unit-day, so units are rows.

Numbers equal the SQL aggregation (and the full scan) to float rounding: the tests hold them to 1e-9.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from abharness.core.stats.metrics import BASE_COLUMNS, ONLINE_METRICS
from abharness.core.stats.moments import Moments
from abharness.stores.rollup_arrays import DAY_SUMS

__all__ = ["supports_days", "row_fields_for", "table_from_days", "look_moments", "prefetch_partials",
           "PrefetchedPartials", "traffic_from_days", "new_units_per_bucket"]

# BASE_COLUMNS -> the unit-day sum it is (abandoned = impressions - clicked).
_DAY_OF = {"impressions": "impressions", "clicks": "clicks", "clicked_impressions": "clicked",
           "successes": "successes", "sum_reciprocal_rank": "sum_rr", "sum_time_to_first_click": "sum_ttfc",
           "sum_latency_ms": "sum_latency", "errors": "errors", "fallbacks": "fallbacks"}


def supports_days(store: Any) -> bool:
    """Whether the store can hand over its rollup rows as columns (and has the rollup)."""
    check = getattr(store, "has_rollup", None)
    return callable(getattr(store, "unit_days", None)) and callable(check) and bool(check())


def _day_column(days: Any, name: str) -> np.ndarray:
    if name == "abandoned":
        return days.column("impressions") - days.column("clicked")
    return days.column(_DAY_OF[name])


def row_fields_for(metric: str) -> tuple[str, ...]:
    """The per-row sums of ``UnitDays`` the looks of ``metric`` and the traffic per day read."""
    spec = ONLINE_METRICS[metric]
    names = [n for f in ("impressions", spec.numerator, spec.denominator)
             for n in (("impressions", "clicked") if f == "abandoned" else (_DAY_OF[f],))]
    return tuple(dict.fromkeys(names))


def table_from_days(days: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(unit_ids, arms, first_ts, values over BASE_COLUMNS) of the (unit, arm) groups of ``days``."""
    if days.unit_ids.size == 0:
        empty = np.empty(0, dtype=object)
        return empty, empty, np.empty(0), np.empty((0, len(BASE_COLUMNS)))
    t = {name: days.totals[:, i] for i, name in enumerate(DAY_SUMS)}
    imp, clicked = t["impressions"], t["clicked"]
    values = np.column_stack([imp, t["clicks"], clicked, imp - clicked, t["successes"], t["sum_rr"], t["sum_ttfc"],
                              t["sum_latency"], t["errors"], t["fallbacks"]])
    return days.unit_ids, days.arms, days.first_seen, values


def look_moments(
    store: Any, experiment_id: str, *, since: float | None, until: float | None, days: Any,
    unit_arm: np.ndarray, unit_values: np.ndarray, cuts: Sequence[float | None], arms: Sequence[str],
    fields: Sequence[str], keep: np.ndarray | None = None, prefetched: PrefetchedPartials | None = None,
) -> list[dict[str, Moments]]:
    """Per cutoff, per arm: the moments of ``fields`` over the units' sums in ``[since, min(until, cut))``.

    ``days.group`` maps each unit-day row to its unit (row of ``unit_values``, the whole-window sums over
    BASE_COLUMNS, used as they are for a cutoff of None or one after every row). ``keep``: a mask of the units that
    count (the units the exclusion rules left). A unit counts in ``n`` when it has an impression before the cutoff.
    ``prefetched``: the cut-through sums already being read (``prefetch_partials`` with the same days, cuts and
    fields; otherwise they are read here)."""
    n_units = unit_values.shape[0]
    group = days.group
    need = tuple(dict.fromkeys(("impressions", *fields)))
    pick = [need.index(f) for f in fields]
    masks = {}
    for arm in arms:
        masks[arm] = unit_arm == arm
        if keep is not None:
            masks[arm] &= keep
    finite = _finite_cuts(days, cuts)
    partial = rows_all = j_all = None
    if finite:
        if prefetched is not None and prefetched.cuts == tuple(cuts) and prefetched.fields == need \
                and prefetched.days is days:
            rows_all, j_all, partial = prefetched.result()
        else:
            rows_all, j_all, partial = _partials(store, experiment_id, since, until, days, cuts, need)
    cols = {name: _day_column(days, name) for name in need} if finite else {}
    whole_cols = [BASE_COLUMNS.index(name) for name in need]
    # A row counts whole at a cutoff after its last impression: walking the finite cutoffs in ascending order,
    # each row is added once, at the first cutoff it counts whole for (a running sum, not a pass per cutoff).
    order = sorted(finite, key=lambda jc: jc[1])
    whole_from = np.searchsorted(np.array([c for _, c in order]), days.last_ts, side="right") if finite else None
    running = np.zeros((n_units, len(need))) if finite else None

    def per_arm(vals: np.ndarray) -> dict[str, Moments]:
        looks = {}
        for arm in arms:
            x = vals[masks[arm]]
            m = Moments.from_matrix(tuple(fields), x[:, pick])
            looks[arm] = Moments(m.columns, np.asarray(float(np.count_nonzero(x[:, 0] > 0))), m.sums, m.cross)
        return looks

    out: list[dict[str, Moments] | None] = [None] * len(cuts)
    for p, (j, _c) in enumerate(order):
        new = np.flatnonzero(whole_from == p)
        g = group[new]
        for k, name in enumerate(need):
            running[:, k] += np.bincount(g, weights=cols[name][new], minlength=n_units)
        mine = np.flatnonzero(j_all == j)
        g = group[rows_all[mine]]
        vals = running.copy()
        for k in range(len(need)):
            vals[:, k] += np.bincount(g, weights=partial[mine, k], minlength=n_units)
        out[j] = per_arm(vals)
        del vals
    for j in range(len(cuts)):
        if out[j] is None:  # no cutoff, or one after every row: the whole-window sums
            out[j] = per_arm(unit_values[:, whole_cols])
    return [looks for looks in out if looks is not None]


def _finite_cuts(days: Any, cuts: Sequence[float | None]) -> list[tuple[int, float]]:
    """(index, cutoff) of the cutoffs that can cut through a unit-day (not None, not after every row)."""
    last = float(days.last_ts.max()) if days.rows else -np.inf
    return [(j, float(c)) for j, c in enumerate(cuts) if c is not None and c <= last]


def _partials(store: Any, experiment_id: str, since: float | None, until: float | None, days: Any,
              cuts: Sequence[float | None], need: tuple[str, ...],
              readers: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cut index, sums of ``need``): the unit-days each finite cutoff cuts through, completed from the
    store (``EventStore.partial_sums``)."""
    pair_rows, pair_j = [], []
    for j, c in _finite_cuts(days, cuts):
        rows = np.flatnonzero((days.first_ts < c) & (days.last_ts >= c))  # cut through
        pair_rows.append(rows)
        pair_j.append(np.full(rows.size, j, dtype=np.int64))
    rows_all, j_all = np.concatenate(pair_rows), np.concatenate(pair_j)
    partial = store.partial_sums(experiment_id, since=since, until=until, days=days, rows=rows_all, cut_index=j_all,
                                 cuts=[c if c is not None else np.inf for c in cuts], fields=need,
                                 **({"readers": readers} if readers else {}))
    return rows_all, j_all, partial


class PrefetchedPartials:
    """The cut-through sums of ``look_moments`` read in a background thread while the analysis goes on (the
    store's readers wait for SQLite / PostgreSQL without the GIL): started by ``prefetch_partials``."""

    def __init__(self, store: Any, experiment_id: str, since: float | None, until: float | None, days: Any,
                 cuts: Sequence[float | None], metric: str) -> None:
        spec = ONLINE_METRICS[metric]
        self.days, self.cuts = days, tuple(cuts)
        self.fields = tuple(dict.fromkeys(("impressions", spec.numerator, spec.denominator)))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="abh-prefetch")
        # SQLite: one reader (the analysis keeps the other core busy meanwhile, and a second page cache
        # would push the peak RSS up while the bootstrap runs); PostgreSQL: the seeks run in the server, two
        # backends at once
        self._future = self._pool.submit(_partials, store, experiment_id, since, until, days, cuts, self.fields,
                                         1 if isinstance(getattr(store, "path", None), str) else None)
        self._pool.shutdown(wait=False)

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._future.result()

    def discard(self) -> None:
        """Not needed after all: wait for the reads to end (the store may be closed next); errors are dropped."""
        self._future.exception()


def prefetch_partials(store: Any, experiment_id: str, *, since: float | None, until: float | None, days: Any,
                      cuts: Sequence[float | None], metric: str) -> PrefetchedPartials | None:
    """Start reading the unit-days the looks of ``metric`` at ``cuts`` cut through, if any (None otherwise)."""
    if not _finite_cuts(days, cuts):
        return None
    return PrefetchedPartials(store, experiment_id, since, until, days, cuts, metric)


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values.astype(str), return_inverse=True)`` for an array of a few distinct strings (arms): a
    dict lookup per value instead of a million-string sort."""
    items = values.tolist()
    distinct = sorted(set(items))
    lookup = {v: i for i, v in enumerate(distinct)}
    codes = np.fromiter(map(lookup.__getitem__, items), dtype=np.int64, count=len(items))
    return np.array(distinct, dtype=str), codes


def traffic_from_days(days: Any, bucket_s: float) -> list[tuple[float, str, int, int]]:
    """(bucket start, arm, units, impressions) per UTC day and arm: a unit-day row is one unit (one mode)."""
    if days.rows == 0:
        return []
    arms, group_code = _codes(days.arms)
    first_day = int(days.bucket.min())
    key = (days.bucket - first_day) * len(arms) + group_code[days.group]
    units = np.bincount(key)
    imps = np.bincount(key, weights=days.column("impressions"))
    keys = np.flatnonzero(units)
    return [(float(first_day + k // len(arms)) * bucket_s, str(arms[k % len(arms)]), int(units[k]), int(imps[k]))
            for k in keys.tolist()]


def new_units_per_bucket(first_ts: np.ndarray, arm: np.ndarray, bucket_s: float) -> dict[tuple[float, str], int]:
    """Units first seen per (bucket start, arm), from the units' first impressions."""
    if first_ts.size == 0:
        return {}
    bucket = np.floor(first_ts / bucket_s)
    first = float(bucket.min())
    arms, code = _codes(arm)
    counts = np.bincount((bucket - first).astype(np.int64) * len(arms) + code)
    return {((first + k // len(arms)) * bucket_s, str(arms[k % len(arms)])): int(counts[k])
            for k in np.flatnonzero(counts).tolist()}
