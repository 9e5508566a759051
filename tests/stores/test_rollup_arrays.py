"""The analysis from one read of the unit-day rollup (``EventStore.unit_days``, ``abharness.analysis.daily``)
against the scan path, on both stores, with one and with two concurrent readers of the cut-through unit-days.

Random events over several UTC days (``test_rollup.random_events``: late, out-of-order and re-delivered clicks),
so time-series cutoffs cut through unit-days and window edges straddle them. Per-unit tables, the looks' moments,
the traffic per day and a whole report must equal the scan to 1e-9; the BLAS bootstrap must equal the core one.
"""

from __future__ import annotations

import numpy as np
import pytest

from abharness.analysis import AnalysisOptions, analyze
from abharness.analysis.daily import look_moments, row_fields_for, table_from_days, traffic_from_days
from abharness.analysis.loading import load_units
from abharness.analysis.resample import cluster_bootstrap_blas
from abharness.core.stats.bootstrap import cluster_bootstrap
from abharness.core.stats.metrics import BASE_COLUMNS
from abharness.core.stats.moments import Moments
from abharness.stores import rollup_arrays
from abharness.stores.base import EventStore
from tests.stores.test_rollup import DAY, EXP, T0, close_enough, random_events, windows


@pytest.fixture(params=[1, 2])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """One reader of the cut-through unit-days, or two concurrent ones even for a few pairs."""
    monkeypatch.setattr(rollup_arrays, "_WORKERS", request.param)
    monkeypatch.setattr(rollup_arrays, "_MIN_PART", 1)
    return int(request.param)


def _filled(store: EventStore, seed: int) -> EventStore:
    for batch in random_events(seed, n_imps=700):
        store.write_batch(batch)
    return store


def test_unit_days_give_the_scan_table_looks_and_traffic(store: EventStore, reader: int) -> None:
    _filled(store, 11)
    checked_cut_through = 0
    for since, until in windows():
        for modes in (("ab",), ("ab", "shadow")):
            scan = load_units(store, EXP, since=since, until=until, modes=modes, aggregation="scan")
            fast = load_units(store, EXP, since=since, until=until, modes=modes, row_fields=row_fields_for("mrr"))
            assert fast.days is not None
            close_enough(fast.unit_ids.tolist(), scan.unit_ids.tolist())
            close_enough(fast.arm.tolist(), scan.arm.tolist())
            close_enough(fast.first_ts.tolist(), scan.first_ts.tolist())
            close_enough(fast.values.tolist(), scan.values.tolist(), f"window {since, until} modes {modes}")
        if since is not None and since > T0 + 5 * DAY:
            continue
        table = load_units(store, EXP, since=since, until=until, row_fields=row_fields_for("mrr"))
        lo = T0 if since is None else since
        hi = T0 + 4 * DAY if until is None else until
        cuts = [lo + (hi - lo) * q for q in (0.1, 0.35, 0.5, 0.77)] + [until]
        days = table.days
        checked_cut_through += sum(int(np.count_nonzero((days.first_ts < c) & (days.last_ts >= c)))
                                   for c in cuts[:-1])
        fields = ("impressions", "sum_reciprocal_rank")
        got = look_moments(store, EXP, since=since, until=until, days=days, unit_arm=table.arm,
                           unit_values=table.values, cuts=cuts, arms=("baseline", "finetuned"), fields=fields)
        for j, cut in enumerate(cuts):
            t = load_units(store, EXP, since=since, until=cut, aggregation="scan")
            for arm in ("baseline", "finetuned"):
                want = Moments.from_matrix(BASE_COLUMNS, t.values[t.mask(arm)]).select(fields)
                assert float(got[j][arm].n) == float(want.n), (since, until, j, arm)
                close_enough(got[j][arm].sums.tolist(), want.sums.tolist(), f"sums look {j} {arm}")
                close_enough(got[j][arm].cross.tolist(), want.cross.tolist(), f"cross look {j} {arm}")
        want_traffic = store.traffic_counts(EXP, since=since, until=until)
        close_enough(traffic_from_days(days, DAY), want_traffic, f"traffic {since, until}")
    assert checked_cut_through > 20  # the looks did complete cut-through unit-days from the facts


def test_table_from_days_of_an_empty_window(store: EventStore) -> None:
    _filled(store, 12)
    days = store.unit_days(EXP, since=T0 + 30 * DAY)  # type: ignore[attr-defined]
    ids, arms, first, values = table_from_days(days)
    assert days.rows == 0 and ids.size == 0 and values.shape == (0, len(BASE_COLUMNS))


@pytest.mark.parametrize("window", [(None, None), (T0 + 0.6 * DAY, T0 + 3.1 * DAY)])
def test_report_from_unit_days_equals_the_scan(store: EventStore, reader: int, window) -> None:
    _filled(store, 13)
    since, until = window
    base = dict(control="baseline", bootstrap_samples=40, timeseries_points=7, tuning_units=100)
    fast = analyze(store, EXP, since=since, until=until, options=AnalysisOptions(**base))
    slow = analyze(store, EXP, since=since, until=until, options=AnalysisOptions(aggregation="scan", **base))
    assert len(fast.timeseries) >= 3
    close_enough(fast.to_dict(), slow.to_dict())


def test_the_blas_bootstrap_equals_the_core_one() -> None:
    rng = np.random.default_rng(5)
    m = 3_000
    xc = np.column_stack([rng.poisson(9, m), rng.poisson(3, m), rng.poisson(2, m), rng.random(m) * 3,
                          rng.gamma(2.0, 4.0, m)]).astype(float)
    xt = xc[rng.permutation(m)] * np.array([1.0, 1.0, 1.0, 1.1, 1.0])
    pairs = [(1, 0), (2, 0), (3, 0), (4, 2)]
    want = cluster_bootstrap(xc, xt, pairs, samples=70, rng=np.random.default_rng(3))
    got = cluster_bootstrap_blas(xc, xt, pairs, samples=70, rng=np.random.default_rng(3))
    for a, b in zip(got, want):
        close_enough([a.se, a.lower, a.upper], [b.se, b.lower, b.upper])
    other = cluster_bootstrap_blas(xc, xt, pairs, samples=70, rng=np.random.default_rng(4))
    assert other[0].se != got[0].se  # another seed, other resamples: the comparison above can fail


def test_cut_through_days_at_the_edges_of_a_day_equal_the_scan(store: EventStore) -> None:
    """Impressions within a second of a UTC day's edges (one ulp below midnight belongs to the day before or not,
    as floor(ts / 86400) says) and cutoffs between them: the cut-through sums (read with the day's range as
    columns, the bucket computed only near the edges) equal the scan's."""
    from abharness.core.events import Impression, ShownResult

    d = np.floor(T0 / DAY) + 2
    start, end = d * DAY, (d + 1) * DAY
    times = [start - 1.5, float(np.nextafter(start, -np.inf)), start, start + 0.3, start + 0.9, start + 4_000.0,
             end - 0.4, float(np.nextafter(end, -np.inf)), end, end + 0.2]
    imps = [Impression(f"e{i}-{u}", EXP, t, f"edge{u}", arm, "ab", "q", 3,
                       tuple(ShownResult(f"d{p}", p, 1.0 / p) for p in range(1, 4)))
            for u, arm in enumerate(("baseline", "finetuned", "baseline")) for i, t in enumerate(times[u:])]
    store.write_batch(imps)
    table = load_units(store, EXP, since=None, until=None, row_fields=row_fields_for("ctr"))
    cuts = [start + 0.1, start + 0.5, start + 2.0, end - 0.5, end - 0.1, float(np.nextafter(end, -np.inf)), None]
    days = table.days
    assert sum(int(np.count_nonzero((days.first_ts < c) & (days.last_ts >= c))) for c in cuts[:-1]) >= 12
    fields = ("impressions",)
    got = look_moments(store, EXP, since=None, until=None, days=days, unit_arm=table.arm, unit_values=table.values,
                       cuts=cuts, arms=("baseline", "finetuned"), fields=fields)
    for j, cut in enumerate(cuts):
        t = load_units(store, EXP, since=None, until=cut, aggregation="scan")
        for arm in ("baseline", "finetuned"):
            want = Moments.from_matrix(BASE_COLUMNS, t.values[t.mask(arm)]).select(fields)
            assert float(got[j][arm].n) == float(want.n), (j, arm)
            close_enough(got[j][arm].sums.tolist(), want.sums.tolist(), f"sums look {j} {arm}")
