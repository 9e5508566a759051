"""The per-unit rollup (schema 3) against the full rescan of the raw rows, on both stores.

Random events spread over several UTC days (so rollup rows straddle window edges and time-series cutoffs),
written in shuffled batches with late clicks, out-of-order clicks, re-delivered clicks carrying another
timestamp, clicks committed before their impression, and a click filed under another experiment. Every read of
the rollup path must equal the scan path to 1e-9; so must a whole ``analyze`` report (time series included).
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from abharness.analysis import AnalysisOptions, analyze
from abharness.analysis.exclusions import ExclusionRules
from abharness.core.events import Click, Impression, ShownResult
from abharness.core.stats.metrics import BASE_COLUMNS
from abharness.core.stats.moments import Moments
from abharness.stores import codec, open_store, rollup
from abharness.stores.schema import MIGRATIONS
from abharness.stores.base import EventStore

EXP = "exp-r"
T0 = 1_700_000_000.0
DAY = 86_400.0


def random_events(seed: int, n_imps: int = 600) -> list[list[Any]]:
    """Batches of events in a random delivery order (see the module docstring)."""
    rng = random.Random(seed)
    imps, clicks = [], []
    for i in range(n_imps):
        k = rng.choice([3, 5, 10])
        mode = rng.choice(["ab", "ab", "ab", "shadow", "interleave"])
        teams = [rng.choice(["baseline", "finetuned"]) for _ in range(k)] if mode == "interleave" else [None] * k
        imp = Impression(
            f"i{seed}-{i}", EXP, T0 + rng.uniform(0, 4 * DAY), f"u{rng.randrange(40)}",
            "interleaved" if mode == "interleave" else rng.choice(["baseline", "finetuned"]), mode, "q", k,
            tuple(ShownResult(f"d{p}", p, 1.0 / p, teams[p - 1]) for p in range(1, k + 1)),
            latency_ms=rng.uniform(1, 90), fallback=rng.random() < 0.1,
            fingerprints=rng.choice([{}, {"baseline": {"model": "m1", "index": "x"}},
                                     {"baseline": {"model": "m2", "index": "x"}, "finetuned": {"model": "f"}}]),
            error="boom" if rng.random() < 0.05 else None,
        )
        imps.append(imp)
        for _ in range(rng.choice([0, 0, 1, 1, 2, 4])):
            pos = rng.randrange(1, k + 3)
            late = rng.random() < 0.2
            ts = imp.ts + (rng.uniform(DAY / 2, 2 * DAY) if late else rng.choice([0.5, 1.0, rng.uniform(0.1, 30)]))
            clicks.append(Click(imp.impression_id, EXP, imp.unit_id, imp.arm, ts, f"d{pos}", pos,
                                team=teams[pos - 1] if pos <= k else None))
    dupes = [Click(c.impression_id, c.experiment_id, c.unit_id, c.arm, c.ts - 5.0, c.doc_id, c.position, c.team)
             for c in rng.sample(clicks, len(clicks) // 5)]
    stray = [Click(imps[0].impression_id, "other-exp", imps[0].unit_id, imps[0].arm, imps[0].ts + 1, "dx", 1)]
    events: list[Any] = imps + clicks + dupes + stray
    rng.shuffle(events)  # clicks before their impressions, late clicks in later batches
    batches, i = [], 0
    while i < len(events):
        n = rng.randrange(1, 120)
        batches.append(events[i:i + n])
        i += n
    return batches


def windows() -> list[tuple[float | None, float | None]]:
    return [(None, None), (T0 + 1.3 * DAY, None), (None, T0 + 2.7 * DAY), (T0 + 0.6 * DAY, T0 + 3.1 * DAY),
            (T0 + 1.0 * DAY, T0 + 2.0 * DAY), (T0 + 9 * DAY, None)]


def close_enough(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for key in a:
            close_enough(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            close_enough(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), path
        else:
            assert a == pytest.approx(b, rel=1e-9, abs=1e-9), path
    else:
        assert a == b, path


def as_tuples(rows) -> list[tuple]:
    return [(r.unit_id, r.arm, r.segment, r.impressions, r.clicks, r.sum_reciprocal_rank, r.successes,
             r.sum_time_to_first_click, r.clicked_impressions, r.sum_latency_ms, r.sum_latency_ms_sq, r.errors,
             r.fallbacks, r.first_ts) for r in rows]


def check_rollup_equals_scan(store: EventStore) -> None:
    for since, until in windows():
        for modes in (("ab",), ("ab", "shadow"), ("interleave",)):
            fast = as_tuples(store.unit_aggregates(EXP, since=since, until=until, modes=modes))
            slow = as_tuples(store.unit_aggregates(EXP, since=since, until=until, modes=modes, method="scan"))
            close_enough(fast, slow, f"window {since, until} modes {modes}")
            assert store.has_impressions(EXP, since=since, until=until, modes=modes) == bool(slow)
        if since is not None and since > T0 + 5 * DAY:
            continue
        lo = T0 if since is None else since
        hi = T0 + 4 * DAY if until is None else until
        cuts = [lo + (hi - lo) * q for q in (0.1, 0.35, 0.5, 0.77)]
        fields = ("impressions", "clicked_impressions", "sum_reciprocal_rank", "abandoned")
        got = store.cumulative_moments(EXP, since=since, until=until, cuts=cuts, fields=fields)
        for j, cut in enumerate(cuts):
            rows = list(store.unit_aggregates(EXP, since=since, until=cut, method="scan"))
            for arm in ("baseline", "finetuned"):
                mine = [r for r in rows if r.arm == arm]
                want = Moments.from_matrix(BASE_COLUMNS, np.array(
                    [[r.impressions, r.clicks, r.clicked_impressions, r.impressions - r.clicked_impressions,
                      r.successes, r.sum_reciprocal_rank, r.sum_time_to_first_click, r.sum_latency_ms, r.errors,
                      r.fallbacks] for r in mine], dtype=float).reshape(len(mine), len(BASE_COLUMNS))).select(fields)
                n, sums, tri = got[arm][j] if arm in got else (0.0, [0.0] * 4, [0.0] * 10)
                assert n == want.n
                close_enough(list(map(float, sums)), [float(x) for x in want.sums], f"sums {arm} look {j}")
                close_enough(list(map(float, tri)), [float(x) for x in want.cross[np.triu_indices(4)]],
                             f"cross {arm} look {j}")


def test_the_rollup_migration_is_the_version_the_stores_check() -> None:
    assert MIGRATIONS[rollup.SCHEMA_VERSION - 1].description.startswith("impression_facts and unit_rollup")


@pytest.mark.parametrize("seed", [1, 2])
def test_rollup_reads_equal_the_full_scan(store: EventStore, seed: int) -> None:
    for batch in random_events(seed):
        store.write_batch(batch)
    check_rollup_equals_scan(store)


def test_migration_backfills_rows_written_before_the_rollup(store_url: str) -> None:
    old = open_store(store_url, migrate=False)
    try:
        old.migrate(target=rollup.SCHEMA_VERSION - 1)
        imp_sql = (f"INSERT INTO impressions ({', '.join(codec.IMPRESSION_COLUMNS)}) "
                   f"VALUES ({', '.join(':' + c for c in codec.IMPRESSION_COLUMNS)}) ON CONFLICT DO NOTHING")
        clk_sql = (f"INSERT INTO clicks ({', '.join(codec.CLICK_COLUMNS)}) "
                   f"VALUES ({', '.join(':' + c for c in codec.CLICK_COLUMNS)}) ON CONFLICT DO NOTHING")
        postgres = not store_url.startswith("sqlite")
        for batch in random_events(3, n_imps=300):
            for e in batch:
                if isinstance(e, Impression):
                    sql, row = imp_sql, dict(zip(codec.IMPRESSION_COLUMNS, codec.impression_row(e)))
                else:
                    sql, row = clk_sql, dict(zip(codec.CLICK_COLUMNS, codec.click_row(e)))
                if postgres:
                    from abharness.stores.queries import to_pyformat
                    sql = to_pyformat(sql)
                old.execute(sql, row)
        # before the upgrade (analyze opens without migrating) the default path falls back to scanning
        assert not old.has_rollup()
        assert as_tuples(old.unit_aggregates(EXP)) == as_tuples(old.unit_aggregates(EXP, method="scan"))
        assert old.has_impressions(EXP, modes=("interleave",))
    finally:
        old.close()
    upgraded = open_store(store_url)
    try:
        check_rollup_equals_scan(upgraded)
        for batch in random_events(4, n_imps=100):  # and the writer keeps it right afterwards
            upgraded.write_batch(batch)
        check_rollup_equals_scan(upgraded)
    finally:
        upgraded.close()


@pytest.mark.parametrize("window,bots", [((None, None), False), ((T0 + 0.6 * DAY, T0 + 3.1 * DAY), False),
                                         ((None, None), True)])
def test_analyze_with_the_rollup_equals_the_scan(store: EventStore, window, bots: bool) -> None:
    rng = random.Random(7)
    for batch in random_events(5, n_imps=900):
        store.write_batch(batch)
    # a pre-period of shadow impressions for CUPED
    store.write_batch([Impression(f"pre-{i}", EXP, T0 - 3 * DAY + i, f"u{rng.randrange(40)}", "baseline", "shadow",
                                  "q", 5, (), latency_ms=10.0) for i in range(80)])
    since, until = window
    base: dict[str, Any] = dict(control="baseline", bootstrap_samples=50, timeseries_points=6, tuning_units=100)
    if bots:  # units taken out of the comparison; the time series still reads every unit
        base["exclusions"] = ExclusionRules(max_searches_per_day=6)
    if since is not None:
        base["pre_period"] = __import__("abharness.analysis", fromlist=["PrePeriod"]).PrePeriod(until=since)
    fast = analyze(store, EXP, since=since, until=until, options=AnalysisOptions(**base))
    slow = analyze(store, EXP, since=since, until=until, options=AnalysisOptions(aggregation="scan", **base))
    assert len(fast.timeseries) >= 3
    close_enough(fast.to_dict(), slow.to_dict())


def test_traffic_and_deployments_from_the_rollup_equal_the_scan(store: EventStore) -> None:
    batches = random_events(9)
    for batch in batches + batches[:5]:  # re-delivered batches must not count twice
        store.write_batch(batch)
    for since, until in windows():
        fast = (store.traffic_counts(EXP, since=since, until=until),
                store.fingerprint_spans(EXP, since=since, until=until))
        orig, store.has_rollup = store.has_rollup, lambda: False  # type: ignore[method-assign]
        try:
            slow = (store.traffic_counts(EXP, since=since, until=until),
                    store.fingerprint_spans(EXP, since=since, until=until))
        finally:
            store.has_rollup = orig  # type: ignore[method-assign]
        assert fast == slow and (slow[0] or since == T0 + 9 * DAY)
        assert len(slow[1]) == (0 if since == T0 + 9 * DAY else 3)
