"""Parts of the analysis that re-query the store: the cumulative time series and the segment breakdown."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from abharness.analysis.daily import PrefetchedPartials, look_moments, new_units_per_bucket, traffic_from_days
from abharness.analysis.loading import UnitTable, has_rollup, load_units
from abharness.analysis.report import SegmentBreakdown, TimePoint, TrafficBucket
from abharness.core.stats.compare import compare_metric
from abharness.core.stats.metrics import BASE_COLUMNS, ONLINE_METRICS
from abharness.core.stats.moments import Moments
from abharness.core.stats.ratio import TestKind
from abharness.core.stats.sequential import running_min
from abharness.stores.base import EventStore

__all__ = ["cumulative_timeseries", "segment_breakdown", "traffic_buckets", "MAX_SEGMENTS", "DAY_S", "HOUR_S"]

MAX_SEGMENTS = 50
DAY_S = 86_400.0
HOUR_S = 3_600.0


def cumulative_timeseries(
    store: EventStore, experiment_id: str, *, since: float | None, until: float | None, first_ts: np.ndarray,
    control: str, treatment: str, metric: str, points: int, alpha: float, test: TestKind, tuning_units: float,
    progress: Callable[[str], None] | None = None, keep_units: np.ndarray | None = None,
    table: UnitTable | None = None, aggregation: str = "rollup", prefetched: PrefetchedPartials | None = None,
) -> tuple[TimePoint, ...]:
    """Cumulative lift of ``metric`` at ``points`` looks, spaced by unit arrival (quantiles of units' first
    impression), the last look being the whole window. The always-valid p-value is the running minimum over
    looks (valid at every look; see ``running_min``). ``keep_units``: only these unit ids count (the units left
    by the exclusion rules; winsorization is not re-applied per look).

    ``table``: the units of the whole window before any exclusion. When it was summed from the store's unit-day
    rows (``table.days``), every look comes from those rows in numpy (``daily.look_moments``; the unit-days a
    cutoff cuts through are completed in one query). Otherwise, with a store that keeps per-unit rollups
    (``cumulative_moments``) and no ``keep_units``, the looks' moments come from one SQL pass, the last one being
    ``table``; otherwise (or with ``aggregation="scan"``) each look re-aggregates [since, cutoff) in the store.
    ``prefetched``: the cut-through unit-days already being read (``daily.prefetch_partials``), used when its
    cutoffs are these (dropped otherwise).
    """
    if points <= 0 or first_ts.size == 0:
        if prefetched is not None:
            prefetched.discard()
        return ()
    cutoffs = look_cutoffs(first_ts, points, until)
    spec = ONLINE_METRICS[metric]
    fields = tuple(dict.fromkeys(("impressions", spec.numerator, spec.denominator)))
    if aggregation == "rollup" and table is not None and table.days is not None:
        # every look from the unit-day rows already read for ``table`` (the units before any exclusion)
        if progress is not None:
            progress(f"time series: {len(cutoffs)} looks from the unit-day rows")
        keep = np.isin(table.unit_ids, keep_units) if keep_units is not None else None
        per_look = look_moments(store, experiment_id, since=since, until=until, days=table.days, unit_arm=table.arm,
                                unit_values=table.values, cuts=cutoffs, arms=(control, treatment), fields=fields,
                                keep=keep, prefetched=prefetched)
        looks = {j: (m[control], m[treatment]) for j, m in enumerate(per_look)}
        return _points(looks, cutoffs, first_ts, spec, control, treatment, alpha, test, tuning_units)
    if prefetched is not None:
        prefetched.discard()
    fast = aggregation == "rollup" and keep_units is None and has_rollup(store)
    looks: dict[int, tuple[Moments, Moments]] = {}
    if fast:
        if progress is not None:
            progress(f"time series: {len(cutoffs)} looks from the per-unit rollup")
        # the last look is the whole window: ``table`` when the caller has it (and it holds every unit)
        cuts = [c if c is not None else math.inf for c in (cutoffs[:-1] if table is not None else cutoffs)]
        looks = _rollup_looks(store, experiment_id, since=since, until=until, cuts=cuts, control=control,
                              treatment=treatment, fields=fields)
    for j, cut in enumerate(cutoffs):
        if j not in looks:
            if progress is not None and not fast:
                progress(f"time series look {j + 1}/{len(cutoffs)}")
            t = table if fast and table is not None else load_units(store, experiment_id, since=since, until=cut,
                                                                     modes=("ab",), aggregation=aggregation)
            kept = np.isin(t.unit_ids, keep_units) if keep_units is not None else np.ones(t.rows, dtype=bool)
            looks[j] = tuple(Moments.from_matrix(BASE_COLUMNS, t.values[t.mask(a) & kept])  # type: ignore[assignment]
                             for a in (control, treatment))
    return _points(looks, cutoffs, first_ts, spec, control, treatment, alpha, test, tuning_units)


def look_cutoffs(first_ts: np.ndarray, points: int, until: float | None) -> list[float | None]:
    """The time series' cutoffs: ``points - 1`` quantiles of the units' first impression (just after each), then
    ``until`` (None: the whole window)."""
    qs = np.quantile(first_ts, np.arange(1, points) / points) if points > 1 else np.array([])
    cutoffs = sorted({float(np.nextafter(q, np.inf)) for q in qs})
    return [c for c in cutoffs if until is None or c < until] + [until]


def _points(looks: dict[int, tuple[Moments, Moments]], cutoffs: Sequence[float | None], first_ts: np.ndarray,
            spec: Any, control: str, treatment: str, alpha: float, test: TestKind,
            tuning_units: float) -> tuple[TimePoint, ...]:
    """The time points of the looks (at least two units per arm), the always-valid p-value a running minimum."""
    out: list[TimePoint] = []
    for j, cut in enumerate(cutoffs):
        mc, mt = looks[j]
        if float(mc.n) < 2 or float(mt.n) < 2:
            continue
        c = compare_metric(mc, mt, spec, control_name=control, treatment_name=treatment, alpha=alpha, test=test,
                           tuning_units=tuning_units)
        end = cut if cut is not None else float(first_ts.max())
        out.append(TimePoint(end, int(mc.n + mt.n), c.lift, c.relative_lift, c.lift_lower, c.lift_upper,
                             c.seq_lower, c.seq_upper, c.p_value, c.always_valid_p))
    if not out:
        return ()
    mins = running_min(np.array([p.always_valid_p for p in out]))
    return tuple(
        TimePoint(p.until, p.units, p.lift, p.relative_lift, p.lower, p.upper, p.seq_lower, p.seq_upper, p.p_value,
                  float(m))
        for p, m in zip(out, mins)
    )


def _rollup_looks(
    store: EventStore, experiment_id: str, *, since: float | None, until: float | None, cuts: Sequence[float],
    control: str, treatment: str, fields: tuple[str, ...],
) -> dict[int, tuple[Moments, Moments]]:
    """Moments of ``fields`` per arm at each cutoff, aggregated in the store (``cumulative_moments``)."""
    if not cuts:
        return {}
    per_arm = store.cumulative_moments(  # type: ignore[attr-defined]
        experiment_id, since=since, until=until, cuts=list(cuts), fields=fields, modes=("ab",))
    d = len(fields)
    upper = np.triu_indices(d)

    def moments(arm: str, j: int) -> Moments:
        looks = per_arm.get(arm)
        if looks is None:
            return Moments(fields, np.asarray(0.0), np.zeros(d), np.zeros((d, d)))
        n, sums, tri = looks[j]
        cross = np.zeros((d, d))
        cross[upper] = tri
        cross = cross + np.triu(cross, 1).T
        return Moments(fields, np.asarray(float(n)), np.asarray(sums, dtype=float), cross)

    return {j: (moments(control, j), moments(treatment, j)) for j in range(len(cuts))}


def segment_breakdown(
    store: EventStore, experiment_id: str, *, since: float | None, until: float | None, key: str, control: str,
    treatments: Sequence[str], metrics: Sequence[str], alpha: float, test: TestKind, tuning_units: float,
    diagnostics: list[str],
) -> tuple[SegmentBreakdown, ...]:
    """Outcome metrics per value of the context attribute ``key`` (first treatment vs control; no CUPED).

    A unit seen with several values of ``key`` contributes to each of them; comparisons within a segment are
    still clustered by unit. Segments are descriptive: no decision is taken on them (many looks, small n).
    """
    table = load_units(store, experiment_id, since=since, until=until, segment=key, modes=("ab",))
    values = sorted(set(table.segment.tolist()), key=lambda v: (v is None, str(v)))
    if not values or values == [None]:
        diagnostics.append(f"segment {key!r}: no impression in the window carries this context attribute")
    if len(values) > MAX_SEGMENTS:
        diagnostics.append(f"segment {key!r} has {len(values)} values; showing the first {MAX_SEGMENTS}")
        values = values[:MAX_SEGMENTS]
    out = []
    treatment = treatments[0]
    for value in values:
        in_seg = table.segment == value
        mc = Moments.from_matrix(BASE_COLUMNS, table.values[in_seg & (table.arm == control)])
        mt = Moments.from_matrix(BASE_COLUMNS, table.values[in_seg & (table.arm == treatment)])
        comps = {
            name: compare_metric(mc, mt, ONLINE_METRICS[name], control_name=control, treatment_name=treatment,
                                 alpha=alpha, test=test, tuning_units=tuning_units)
            for name in metrics
        }
        out.append(SegmentBreakdown(key, value, {control: int(mc.n), treatment: int(mt.n)}, comps))
    return tuple(out)


def traffic_buckets(
    store: EventStore, experiment_id: str, *, since: float | None, until: float | None, first_ts: np.ndarray,
    arm: np.ndarray, days: Any = None,
) -> tuple[tuple[TrafficBucket, ...], float]:
    """Units and impressions per arm per UTC day (per hour when the units arrived within two days), with the
    units first seen in each bucket from the per-unit first impressions. ``days``: the window's unit-day rows
    (``EventStore.unit_days``, mode "ab"), which give the daily counts without asking the store again. Stores
    without ``traffic_counts`` give ``()``. Returns (buckets, bucket length in seconds)."""
    counts = getattr(store, "traffic_counts", None)
    if counts is None or first_ts.size == 0:
        return (), DAY_S
    span = float(first_ts.max() - first_ts.min())
    bucket_s = DAY_S if span >= 2 * DAY_S else HOUR_S
    if days is not None and bucket_s == DAY_S:
        rows = traffic_from_days(days, bucket_s)
    else:
        rows = counts(experiment_id, since=since, until=until, bucket_s=bucket_s, modes=("ab",))
    new = new_units_per_bucket(first_ts, arm, bucket_s)
    return tuple(TrafficBucket(float(b), str(a), int(u), new.get((float(b), str(a)), 0), int(n))
                 for b, a, u, n in rows), bucket_s
