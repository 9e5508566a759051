"""Paired tests: oracles (scipy, statsmodels), exact small cases and a simulated false-positive rate."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from abharness.core.significance import bootstrap_ci, compare_paired, paired_bootstrap_ci, paired_randomization_test
from abharness.errors import ConfigError


def test_exact_randomization_matches_scipy_permutation_test() -> None:
    rng = np.random.default_rng(1)
    a = rng.random(10)
    b = a + rng.normal(0.1, 0.2, 10)
    ours = paired_randomization_test(a, b)
    oracle = stats.permutation_test(
        (a, b), lambda x, y: np.mean(y - x), permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
    ).pvalue
    assert ours == pytest.approx(oracle, abs=1e-12)


def test_hand_worked_exact_p() -> None:
    # d = (1, 1, 1): only the all-plus and all-minus sign patterns reach |mean| = 1 -> p = 2/8.
    assert paired_randomization_test([0, 0, 0], [1, 1, 1]) == pytest.approx(0.25)
    assert paired_randomization_test([0.3, 0.2], [0.3, 0.2]) == 1.0


def test_monte_carlo_close_to_scipy_for_larger_n() -> None:
    rng = np.random.default_rng(2)
    a = rng.random(80)
    b = a + rng.normal(0.03, 0.15, 80)
    ours = paired_randomization_test(a, b, n_resamples=20_000, seed=3)
    oracle = stats.permutation_test(
        (a, b), lambda x, y, axis=-1: np.mean(y - x, axis=axis), permutation_type="samples", n_resamples=20_000,
        vectorized=True, rng=4,
    ).pvalue
    assert abs(ours - oracle) < 0.02
    # and close to the paired t-test for this well-behaved sample
    assert abs(ours - stats.ttest_rel(b, a).pvalue) < 0.03


def test_false_positive_rate_under_null_is_near_alpha() -> None:
    rng = np.random.default_rng(5)
    rejections = 0
    sims = 400
    for i in range(sims):
        a = rng.random(40)
        b = a + rng.normal(0, 0.1, 40)  # symmetric differences: H0 true
        rejections += paired_randomization_test(a, b, n_resamples=500, seed=i) <= 0.05
    rate = rejections / sims
    assert 0.02 <= rate <= 0.085  # binomial(400, 0.05) sd ~ 0.011


def test_paired_bootstrap_ci_covers_true_mean() -> None:
    rng = np.random.default_rng(8)
    covered = 0
    sims = 200
    for i in range(sims):
        d = rng.normal(0.2, 1.0, 60)
        lo, hi = paired_bootstrap_ci(np.zeros(60), d, n_resamples=1000, seed=i)
        covered += lo <= 0.2 <= hi
    assert 0.88 <= covered / sims <= 0.99


def test_bootstrap_ci_of_correlation_brackets_estimate() -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    rho = stats.spearmanr(x, y).statistic
    lo, hi = bootstrap_ci(200, lambda idx: stats.spearmanr(x[idx], y[idx]).statistic, n_resamples=300)
    assert lo < rho < hi
    assert hi - lo < 0.3


def test_compare_paired_counts_and_shape_errors() -> None:
    c = compare_paired("ndcg@10", [0.1, 0.5, 0.3, 0.2], [0.2, 0.5, 0.1, 0.4], n_resamples=200)
    assert (c.wins, c.ties, c.losses) == (2, 1, 1)
    assert c.delta == pytest.approx(0.025)
    assert 0 <= c.p_value <= 1
    with pytest.raises(ConfigError, match="same length"):
        compare_paired("x", [1.0, 2.0], [1.0])
