"""Paired significance over queries (or items) for offline before/after comparisons. Pure: arrays in, values out.

* ``paired_randomization_test``: Fisher's sign-flip randomization test on per-query differences (Smucker, Allan &
  Carterette, CIKM 2007, recommend it for IR evaluation), exact when 2**n is small, else Monte Carlo with the
  (1 + b) / (1 + R) correction of Phipson & Smyth (2010), which never reports p = 0.
* ``paired_bootstrap_ci``: percentile bootstrap interval of the mean paired difference (Efron & Tibshirani 1993).
* ``bootstrap_ci``: percentile bootstrap interval of any statistic of resampled rows (used for correlations).

Multiple-testing adjustment across metrics is ``abharness.core.stats.multiple.holm`` (the package's one Holm).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from abharness.errors import ConfigError

__all__ = [
    "PairedComparison",
    "paired_randomization_test",
    "paired_bootstrap_ci",
    "bootstrap_ci",
    "compare_paired",
]

_EXACT_MAX_N = 16  # 2**16 sign patterns: cheap to enumerate exactly


def _as_pair(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ConfigError(
            f"paired samples must be 1-D arrays of the same length, got shapes {x.shape} and {y.shape}; "
            "pass one value per query for each system, in the same query order"
        )
    return x, y


def paired_randomization_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> float:
    """Two-sided p-value of H0 "the per-query scores of a and b are exchangeable" (mean difference = 0).

    Estimator: the test statistic is the mean of d = b - a. Under H0 each d_i is equally likely to have
    either sign, so the null distribution is that of mean(s * d) over random signs s in {-1, +1}^n.
    p = P(|mean(s * d)| >= |mean(d)|). For n <= 16 all 2**n sign patterns are enumerated (exact p);
    otherwise ``n_resamples`` random patterns are drawn and p = (1 + hits) / (1 + n_resamples).
    Assumptions: queries are independent draws; pairs are aligned. With n = 0 or all d = 0, p = 1.
    Reference: Fisher (1935); Smucker, Allan & Carterette (CIKM 2007); Phipson & Smyth (2010).
    """
    x, y = _as_pair(a, b)
    d = y - x
    n = d.size
    if n == 0 or not np.any(d):
        return 1.0
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, observed)  # ties with the observed value count as "as extreme"
    if n <= _EXACT_MAX_N:
        patterns = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1
        stats = np.abs(patterns @ d) / n
        return float(np.mean(stats >= observed - tol))
    if n_resamples < 1:
        raise ConfigError(f"n_resamples={n_resamples} must be >= 1; 10000 is a good default")
    rng = np.random.default_rng(seed)
    hits = 0
    chunk = max(1, min(n_resamples, 2_000_000 // max(n, 1)))
    done = 0
    while done < n_resamples:
        m = min(chunk, n_resamples - done)
        signs = rng.integers(0, 2, size=(m, n), dtype=np.int8) * 2 - 1
        hits += int(np.sum(np.abs(signs @ d) / n >= observed - tol))
        done += m
    return float((1 + hits) / (1 + n_resamples))


def bootstrap_ci(
    n: int,
    statistic: Callable[[np.ndarray], float],
    *,
    n_resamples: int = 2_000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of ``statistic(indices)`` over rows 0..n-1 resampled with
    replacement. Assumes independent rows. Reference: Efron & Tibshirani (1993), ch. 13.
    Resamples where the statistic is undefined (NaN, e.g. a constant column) are skipped."""
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha={alpha} must lie in (0, 1); 0.05 gives a 95% interval")
    if n < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(n_resamples)], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def paired_bootstrap_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 10_000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of mean(b - a), resampling queries with replacement.
    Reference: Efron & Tibshirani (1993); Sakai (SIGIR 2006) for its use in IR evaluation."""
    x, y = _as_pair(a, b)
    d = y - x
    if d.size < 2:
        return (float("nan"), float("nan"))
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha={alpha} must lie in (0, 1); 0.05 gives a 95% interval")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // d.size)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, d.size, size=(stop - start, d.size))
        means[start:stop] = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


@dataclass(frozen=True, slots=True)
class PairedComparison:
    """Baseline vs candidate on one metric over the same n queries (delta = candidate - baseline)."""

    metric: str
    n: int
    baseline: float
    candidate: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    wins: int
    ties: int
    losses: int
    p_holm: float = float("nan")


def compare_paired(
    metric: str,
    baseline: Sequence[float] | np.ndarray,
    candidate: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 10_000,
    alpha: float = 0.05,
    seed: int = 0,
    tie_tol: float = 1e-9,
) -> PairedComparison:
    """Means, paired bootstrap CI of the difference, randomization p-value and win/tie/loss counts per query."""
    x, y = _as_pair(baseline, candidate)
    d = y - x
    lo, hi = paired_bootstrap_ci(x, y, n_resamples=n_resamples, alpha=alpha, seed=seed)
    return PairedComparison(
        metric=metric,
        n=int(d.size),
        baseline=float(x.mean()) if d.size else 0.0,
        candidate=float(y.mean()) if d.size else 0.0,
        delta=float(d.mean()) if d.size else 0.0,
        ci_low=lo,
        ci_high=hi,
        p_value=paired_randomization_test(x, y, n_resamples=n_resamples, seed=seed),
        wins=int(np.sum(d > tie_tol)),
        ties=int(np.sum(np.abs(d) <= tie_tol)),
        losses=int(np.sum(d < -tie_tol)),
    )
