"""Traffic plans (Zipf popularity, returning users) and the interleaving-vs-A/B sensitivity study."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from abharness.core.clickmodels import make_click_model
from abharness.errors import ConfigError, DataError
from abharness.simulate.population import QueryPool, plan_traffic
from abharness.simulate.sensitivity import delta_method_z, prepare_arm_lists, sensitivity_study


def toy_pool(n_queries: int = 100, seed: int = 0) -> tuple[QueryPool, dict, dict]:
    """Queries with one relevant doc at rank 1..8 in control; treatment moves it up one rank in half the queries."""
    rng = np.random.default_rng(seed)
    queries, qrels, ctl, trt = {}, {}, {}, {}
    for i in range(n_queries):
        q = f"q{i}"
        queries[q] = f"query text {i}"
        qrels[q] = {f"rel{i}": 1}
        others = [f"n{i}-{j}" for j in range(12)]
        c, t = list(others[:9]), list(others[:9])
        r = int(rng.integers(0, 8))
        c.insert(r, f"rel{i}")
        t.insert(max(0, r - 1) if rng.random() < 0.5 else r, f"rel{i}")
        ctl[q], trt[q] = c[:10], t[:10]
    return QueryPool.from_mappings(queries, qrels, zipf_s=1.0, seed=seed), ctl, trt


def test_zipf_popularity_and_pool_order_are_seeded() -> None:
    pool, _, _ = toy_pool()
    again, _, _ = toy_pool()
    assert pool.query_ids == again.query_ids
    assert pool.weights[0] / pool.weights[9] == pytest.approx(10.0)
    assert pool.weights.sum() == pytest.approx(1.0)


def test_plan_draws_follow_zipf_and_users_repeat_queries() -> None:
    pool, _, _ = toy_pool()
    plans = plan_traffic(pool, users=400, queries_per_user=20, repeat_prob=0.0, seed=1)
    counts = Counter(s.query_index for p in plans for s in p.searches)
    total = sum(counts.values())
    # the most popular query's share matches its Zipf weight (binomial 4.5 sigma)
    p0 = pool.weights[0]
    assert abs(counts[0] / total - p0) < 4.5 * np.sqrt(p0 * (1 - p0) / total)
    repeating = plan_traffic(pool, users=400, queries_per_user=20, repeat_prob=0.6, seed=1)
    distinct = np.mean([len({s.query_index for s in p.searches}) for p in plans])
    distinct_rep = np.mean([len({s.query_index for s in p.searches}) for p in repeating])
    assert distinct_rep < distinct - 3


def test_plan_is_deterministic_and_units_follow_the_unit_kind() -> None:
    pool, _, _ = toy_pool()
    a = plan_traffic(pool, users=5, queries_per_user=6, sessions_per_user=3, seed=4, unit="session")
    b = plan_traffic(pool, users=5, queries_per_user=6, sessions_per_user=3, seed=4, unit="session")
    assert a == b
    assert all(s.unit_id == f"user-{s.user}-s{s.session}" for p in a for s in p.searches)
    users = plan_traffic(pool, users=5, queries_per_user=6, seed=4)
    assert {s.unit_id for p in users for s in p.searches} == {f"user-{i}" for i in range(5)}


@pytest.mark.parametrize("kwargs", [{"users": 0, "queries_per_user": 1}, {"users": 1, "queries_per_user": 1,
                                    "repeat_prob": 2.0}, {"users": 1, "queries_per_user": 1, "unit": "device"}])
def test_bad_plans_raise(kwargs) -> None:
    pool, _, _ = toy_pool(10)
    with pytest.raises(ConfigError):
        plan_traffic(pool, **kwargs)


def test_pool_without_qrels_is_a_data_error() -> None:
    with pytest.raises(DataError):
        QueryPool.from_mappings({"q": "text"}, {})


def test_delta_method_matches_statsmodels_free_hand_computation() -> None:
    # With one impression per unit the delta-method variance of the ratio is the plain variance of the mean.
    rng = np.random.default_rng(0)
    xc, xt = rng.binomial(1, 0.3, 500).astype(float), rng.binomial(1, 0.35, 500).astype(float)
    ones = np.ones(500)
    diff, se, _ = delta_method_z(xc, ones, xt, ones)
    assert diff == pytest.approx(xt.mean() - xc.mean())
    assert se == pytest.approx(np.sqrt(xc.var(ddof=1) / 500 + xt.var(ddof=1) / 500))


@pytest.mark.slow
def test_interleaving_needs_fewer_impressions_than_ab_and_the_size_has_the_power() -> None:
    pool, ctl, trt = toy_pool(150, seed=3)
    lists = prepare_arm_lists(pool, ctl, trt, k=10)
    result = sensitivity_study(pool, lists, make_click_model("pbm", preset="navigational"), pilot_units=10_000,
                               replicates=200, seed=5)
    il, ab = result.interleaving, result.primary_ab
    assert il.simulated and ab.simulated
    assert il.effect > 0 and ab.effect > 0
    assert result.ratio > 2.0
    # the empirical power curve brackets 80% around the reported size
    for method in (il, ab):
        below = [p for n, p in method.curve if n < method.impressions_needed]
        above = [p for n, p in method.curve if n >= method.impressions_needed]
        assert above and max(above) >= 0.8 - 0.06
        assert not below or min(below) < 0.8 + 0.06


def test_identical_arms_have_no_interleaving_preference() -> None:
    pool, ctl, _ = toy_pool(80, seed=2)
    lists = prepare_arm_lists(pool, ctl, ctl, k=10)
    result = sensitivity_study(pool, lists, make_click_model("pbm"), pilot_units=20_000, replicates=0, seed=1)
    assert abs(result.interleaving.effect) < 4 * result.interleaving.se_pilot
    assert result.interleaving.predicted_impressions > 10_000


def test_enumerated_team_drafts_are_balanced() -> None:
    pool, ctl, trt = toy_pool(5, seed=1)
    lists = prepare_arm_lists(pool, ctl, trt, k=10)
    assert lists.interleaved.shape == (5, 32, 10)
    # every rank is contributed by the treatment in exactly half of the toss sequences (identical-length lists)
    np.testing.assert_allclose(lists.interleaved_team_is_treatment[:, :, 0].mean(axis=1), 0.5)


def test_ctr_can_fall_when_the_ranking_improves_under_dbn() -> None:
    # Informational DBN users stop when satisfied: a better ranking ends sessions earlier, with fewer clicks.
    # The study must report that honestly (negative CTR effect) while interleaving still prefers the better arm.
    pool, ctl, trt = toy_pool(150, seed=3)
    lists = prepare_arm_lists(pool, ctl, trt, k=10)
    result = sensitivity_study(pool, lists, make_click_model("dbn", preset="informational"), pilot_units=20_000,
                               replicates=0, seed=5)
    assert result.primary_ab.effect < 0 < result.interleaving.effect
