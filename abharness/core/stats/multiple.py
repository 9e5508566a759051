"""Multiple-testing corrections: the one ``holm`` and ``benjamini_hochberg`` of the package.

Both take a family of p-values and return adjusted p-values in the input order (reject when adjusted <= alpha).

NaN (a test that could not be computed: zero variance, too few units) is a *data condition*, not an error. The
family is the set of hypotheses chosen before looking at the data (the configured metrics), so a NaN p-value still
counts in the family size m, as if its p were 1 (the least significant value any test can return; a valid,
conservative stand-in), and its adjusted value stays NaN. Dropping it instead would shrink m after seeing the data
and make the other adjustments smaller than Holm's guarantee allows. For Holm this is exactly what statsmodels'
``multipletests(method="holm")`` does with NaN input (it sorts NaN last); statsmodels' ``fdr_bh`` turns every
value NaN when one is, so Benjamini-Hochberg here follows the same p = 1 rule. The tests check both against
statsmodels as oracle.

A p-value outside [0, 1] or a non 1-D input is a programming mistake and raises ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from abharness.errors import ConfigError

__all__ = ["holm", "benjamini_hochberg"]


def _family(p_values: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p with NaN replaced by 1, mask of the NaN entries), after checking the input."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ConfigError(f"p-values must be a 1-D sequence, got shape {p.shape}; pass one p-value per hypothesis")
    missing = np.isnan(p)
    bad = ~missing & ((p < 0) | (p > 1))
    if bad.any():
        raise ConfigError(f"p-values must lie in [0, 1] (or be NaN for a test that could not be computed), "
                          f"got {p[bad].tolist()}")
    return np.where(missing, 1.0, p), missing


def holm(p_values: Sequence[float] | np.ndarray) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    Sort p ascending: p_(1) <= ... <= p_(m); adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)). Rejecting
    adjusted p <= alpha controls the family-wise error rate at alpha under any dependence between the tests.
    NaN counts in m and stays NaN (see the module docstring). Reference: Holm, "A simple sequentially rejective
    multiple test procedure", Scand. J. Statist. 6 (1979) 65-70.
    """
    p, missing = _family(p_values)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    adjusted[missing] = np.nan
    return [float(x) for x in adjusted]


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> list[float]:
    """Benjamini-Hochberg step-up adjusted p-values (false discovery rate), in the input order.

    Sort p ascending; adjusted p_(i) = min_{j >= i} min(1, m p_(j) / j). Rejecting adjusted p <= alpha controls
    the FDR at alpha for independent or positively dependent (PRDS) tests. NaN counts in m and stays NaN.
    Reference: Benjamini & Hochberg, "Controlling the false discovery rate", JRSS B 57 (1995) 289-300.
    """
    p, missing = _family(p_values)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, p[order] * m / np.arange(1, m + 1))
    adjusted = np.empty(m)
    adjusted[order] = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted[missing] = np.nan
    return [float(x) for x in adjusted]
