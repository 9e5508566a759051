"""Cluster (unit-level) bootstrap of ratio-metric lifts: a model-free cross-check of the delta method."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["BootstrapResult", "cluster_bootstrap", "poisson1"]


_LEVELS = 1 << 16
# Poisson(1) quantiles at the midpoints of 2^16 equal-probability cells: drawing a uint16 and looking it up is
# ~15x faster than rng.poisson and matches the distribution to within 2^-16 per cell.
_POISSON1 = stats.poisson.ppf((np.arange(_LEVELS) + 0.5) / _LEVELS, 1.0).astype(np.float64)


def poisson1(rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
    """Poisson(1) resampling multiplicities by table look-up (see ``_POISSON1``)."""
    return _POISSON1[rng.integers(0, _LEVELS, size=size, dtype=np.uint16)]


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """Bootstrap standard error and percentile interval of treatment - control for one ratio metric."""

    samples: int
    se: float
    lower: float
    upper: float


def cluster_bootstrap(
    control: np.ndarray,
    treatment: np.ndarray,
    ratios: Sequence[tuple[int, int]],
    *,
    samples: int = 200,
    alpha: float = 0.05,
    rng: np.random.Generator,
    chunk: int = 16,
) -> list[BootstrapResult]:
    """Unit-level bootstrap of R_t - R_c for each (numerator column, denominator column) in ``ratios``.

    ``control``/``treatment`` are (units, columns) matrices of per-unit sums. Units are resampled with
    replacement *as whole clusters* (all impressions of a unit move together), independently per arm, using
    Poisson(1) multiplicities, which approximate multinomial resampling and vectorise as a matrix product.
    Returns the bootstrap standard error and percentile (alpha/2, 1 - alpha/2) interval per ratio.
    Assumptions: units independent; enough units per arm. Reference: Efron & Tibshirani (1993), ch. 6 and 13;
    Chamandy, Muralidharan, Najmi & Naidu, "Estimating Uncertainty for Massive Data Streams" (Google, 2012) for
    the Poisson bootstrap. Cost: O(samples x units x columns).
    """
    if samples < 2:
        raise ValueError(f"samples must be >= 2, got {samples}")
    cols = sorted({i for pair in ratios for i in pair})
    sums = {}
    for name, mat in (("c", control), ("t", treatment)):
        sub = np.asarray(mat, dtype=float)[:, cols]
        out = np.empty((samples, len(cols)))
        for start in range(0, samples, chunk):
            b = min(chunk, samples - start)
            w = poisson1(rng, (b, sub.shape[0]))
            out[start : start + b] = np.einsum("bm,md->bd", w, sub, optimize=False)
        sums[name] = out
    pos = {c: j for j, c in enumerate(cols)}
    results = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for iy, ix in ratios:
            diff = (sums["t"][:, pos[iy]] / sums["t"][:, pos[ix]]) - (sums["c"][:, pos[iy]] / sums["c"][:, pos[ix]])
            diff = diff[np.isfinite(diff)]
            if diff.size < 2:
                results.append(BootstrapResult(samples, float("nan"), float("nan"), float("nan")))
                continue
            lo, hi = np.quantile(diff, [alpha / 2, 1 - alpha / 2])
            results.append(BootstrapResult(samples, float(diff.std(ddof=1)), float(lo), float(hi)))
    return results
