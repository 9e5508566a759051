"""The interaction check (statsmodels oracle) and a simulation of two overlapping experiments assigned by the
layered Design: planted independent effects recovered within their intervals, a planted interaction detected."""

from __future__ import annotations

import numpy as np
import pytest

from abharness.core.assignment import BUCKETS
from abharness.core.layers import Arm, Design, Layer, LayerExperiment
from abharness.core.stats.interaction import interaction_check
from abharness.core.stats.metrics import ONLINE_METRICS
from abharness.core.stats.moments import Moments
from abharness.core.stats.ratio import ratio_diff

CTR = ONLINE_METRICS["ctr"]
COLS = ("clicked_impressions", "impressions")


def _moments(num: np.ndarray, den: np.ndarray) -> Moments:
    return Moments.from_matrix(COLS, np.column_stack([num, den]))


def test_matches_the_ols_interaction_coefficient_with_hc2_errors() -> None:
    """One impression per unit: I and SE(I) equal OLS y ~ a*b's interaction coefficient and its HC2 SE."""
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(7)
    n = 4000
    a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    y = rng.binomial(1, 0.3 + 0.05 * a + 0.03 * b + 0.04 * a * b).astype(float)
    cells = {(ai, bi): _moments(y[(a == ai) & (b == bi)], np.ones(((a == ai) & (b == bi)).sum()))
             for ai in (0, 1) for bi in (0, 1)}
    got = interaction_check(cells, CTR, a_arms=(0, 1), b_arms=(0, 1))
    fit = sm.OLS(y, sm.add_constant(np.column_stack([a, b, a * b]).astype(float))).fit(cov_type="HC2")
    assert got.interaction == pytest.approx(fit.params[3], rel=1e-9)
    assert got.se == pytest.approx(fit.bse[3], rel=1e-9)
    assert got.p_value == pytest.approx(fit.pvalues[3], rel=1e-6)
    assert 0.0 <= got.p_value <= 1.0


def test_a_thin_cell_is_a_message_not_a_crash() -> None:
    one = _moments(np.array([1.0]), np.array([1.0]))
    many = _moments(np.array([1.0, 0.0, 1.0]), np.ones(3))
    got = interaction_check({("c", "c"): one, ("c", "t"): many, ("t", "c"): many, ("t", "t"): many}, CTR,
                            a_arms=("c", "t"), b_arms=("c", "t"))
    assert np.isnan(got.p_value) and not got.alarm and "fewer than 2 units" in got.message


def _simulate(effect_a: float, effect_b: float, interaction: float, *, units: int, seed: int) -> dict:
    """Units assigned by a two-layer Design (backend layer A, k layer B, both on all buckets); each unit has
    1-8 impressions; its click probability is 0.30 + effects of its arms (+ the interaction when in both)."""
    ab = (Arm("c", "control"), Arm("t", "treatment"))
    d = Design([
        Layer("main", "sim-main", frozenset({"backend"}), (LayerExperiment("A", "sim-A", 0, BUCKETS, ab,
                                                                           {"c": 0.5, "t": 0.5}),)),
        Layer("depth", "sim-depth", frozenset({"k"}), (LayerExperiment("B", "sim-B", 0, BUCKETS, ab,
                                                                       {"c": 0.5, "t": 0.5}),)),
    ])
    rng = np.random.default_rng(seed)
    arms = [d.assign(f"unit-{seed}-{i}") for i in range(units)]
    in_a = np.array([x.arm_in("A") == "t" for x in arms])
    in_b = np.array([x.arm_in("B") == "t" for x in arms])
    base = rng.beta(6, 14, units)  # unit-level heterogeneity around 0.30 (clustering)
    p = np.clip(base + effect_a * in_a + effect_b * in_b + interaction * (in_a & in_b), 0, 1)
    imps = rng.integers(1, 9, units).astype(float)
    clicks = rng.binomial(imps.astype(int), p).astype(float)
    m = {(ia, ib): _moments(clicks[(in_a == ia) & (in_b == ib)], imps[(in_a == ia) & (in_b == ib)])
         for ia in (False, True) for ib in (False, True)}
    # Each experiment analysed on its own, with the unchanged per-experiment statistics: the other layer's arms
    # are pooled (they are balanced within each arm because the layers' salts are independent).
    diff_a = ratio_diff(m[(False, False)] + m[(False, True)], m[(True, False)] + m[(True, True)], *COLS)
    diff_b = ratio_diff(m[(False, False)] + m[(True, False)], m[(False, True)] + m[(True, True)], *COLS)
    check = interaction_check({(ia, ib): m[(ia, ib)] for ia in (False, True) for ib in (False, True)}, CTR,
                              a_arms=(False, True), b_arms=(False, True))
    return {"a": diff_a, "b": diff_b, "check": check}


def _ci(diff) -> tuple[float, float, float]:
    d, se = float(diff.diff), float(diff.se)
    return d, d - 1.96 * se, d + 1.96 * se


@pytest.mark.slow
def test_two_overlapping_experiments_recover_their_planted_effects_and_report_no_interaction() -> None:
    res = _simulate(0.02, -0.015, 0.0, units=40_000, seed=11)
    # The pooled estimand of A is its effect averaged over B's arms (= planted, since there is no interaction).
    for name, planted in (("a", 0.02), ("b", -0.015)):
        est, lo, hi = _ci(res[name])
        print(f"experiment {name.upper()}: planted {planted:+.4f}, recovered {est:+.4f} [{lo:+.4f}, {hi:+.4f}]")
        assert lo <= planted <= hi
    print(res["check"].message)
    assert not res["check"].alarm and res["check"].lower <= 0.0 <= res["check"].upper


@pytest.mark.slow
def test_a_planted_interaction_is_detected() -> None:
    res = _simulate(0.02, 0.0, 0.03, units=40_000, seed=12)
    c = res["check"]
    print(c.message)
    assert c.alarm and c.lower <= 0.03 <= c.upper
    assert c.effect_b_in_a_control == pytest.approx(0.0, abs=0.012)
    assert c.effect_b_in_a_treatment == pytest.approx(0.03, abs=0.012)


@pytest.mark.slow
def test_the_check_is_calibrated_without_interaction() -> None:
    """A/A-style: over 40 seeds without interaction, the 95% interval covers 0 in at least 34 (binomial 1e-3)."""
    checks = [_simulate(0.02, 0.01, 0.0, units=4000, seed=100 + s)["check"] for s in range(40)]
    covered = sum(c.lower <= 0.0 <= c.upper for c in checks)
    assert covered >= 34
    assert sum(c.alarm for c in checks) <= 2
