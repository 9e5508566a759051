"""Multiple-testing corrections across metrics (thin, documented wrappers over statsmodels)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from statsmodels.stats.multitest import multipletests

__all__ = ["holm", "benjamini_hochberg"]


def _adjust(p_values: Sequence[float], method: str, alpha: float) -> list[float]:
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=alpha, method=method)[1]
    return [float(x) for x in out]


def holm(p_values: Sequence[float], alpha: float = 0.05) -> list[float]:
    """Holm step-down adjusted p-values (controls the family-wise error rate under any dependence).

    Reference: Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 1979.
    nan p-values are left out of the family and stay nan.
    """
    return _adjust(p_values, "holm", alpha)


def benjamini_hochberg(p_values: Sequence[float], alpha: float = 0.05) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (controls the false discovery rate under independence/PRDS).

    Reference: Benjamini & Hochberg, "Controlling the false discovery rate", JRSS B 1995.
    nan p-values are left out of the family and stay nan.
    """
    return _adjust(p_values, "fdr_bh", alpha)
