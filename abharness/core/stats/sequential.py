"""Always-valid inference: the normal-mixture mSPRT, its p-values and confidence sequences.

Results may be looked at after every batch of traffic: with these p-values P(ever p_n <= alpha) <= alpha under
the null, however often one peeks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SequentialOutcome", "mixture_tau2_ratio", "msprt", "running_min"]


@dataclass(frozen=True, eq=False)
class SequentialOutcome:
    """Always-valid p-value and (1 - alpha) confidence-sequence bounds for an effect (arrays)."""

    p_value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def mixture_tau2_ratio(n_units: np.ndarray | float, tuning_units: float, alpha: float) -> np.ndarray:
    """tau^2 / V_n for the mixing prior N(0, tau^2), tuned so the sequence is tightest at ``tuning_units`` units.

    With V_n = sigma^2 c / n the variance of the effect estimate after n units, choosing
    tau^2 = V_{N*} (-2 log alpha + log(1 - 2 log alpha)) minimises the confidence-sequence width at n = N*
    (the tuning Growthbook's gbstats uses for its sequential tests). Scale-free: only n / N* matters.
    """
    c = -2.0 * np.log(alpha) + np.log(1.0 - 2.0 * np.log(alpha))
    return c * np.asarray(n_units, dtype=float) / float(tuning_units)


def msprt(
    effect: np.ndarray | float,
    se: np.ndarray | float,
    n_units: np.ndarray | float,
    *,
    alpha: float = 0.05,
    tuning_units: float = 10_000,
) -> SequentialOutcome:
    """Normal-mixture mSPRT for H0: effect = 0 given an asymptotically normal estimate and its standard error.

    Estimator: with V = se^2 and a N(0, tau^2) mixture over the effect, the likelihood ratio is
    Lambda = sqrt(V / (V + tau^2)) exp(tau^2 effect^2 / (2 V (V + tau^2))); the always-valid p-value at this look
    is min(1, 1/Lambda) and the (1 - alpha) confidence sequence is
    effect +/- sqrt(V (V + tau^2) / tau^2 * (log((V + tau^2) / V) - 2 log alpha)).
    Assumptions: the estimate is a (clustered) mean of independent units, approximately normal with a consistently
    estimated variance (as for the delta-method estimates here); tau is fixed in advance via ``tuning_units``.
    Reference: Johari, Koomen, Pekelis & Walsh, "Peeking at A/B Tests: Why it matters, and what to do about it",
    KDD 2017 (arXiv:1512.04922, 2015), section 4 and the normal-mixture formula.
    """
    e = np.asarray(effect, dtype=float)
    v = np.asarray(se, dtype=float) ** 2
    r = mixture_tau2_ratio(n_units, tuning_units, alpha)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        z2 = e**2 / v
        log_lambda = 0.5 * np.log(1.0 / (1.0 + r)) + r * z2 / (2.0 * (1.0 + r))
        p = np.minimum(1.0, np.exp(-log_lambda))
        half = np.sqrt(v * (1.0 + r) / r * (np.log(1.0 + r) - 2.0 * np.log(alpha)))
    bad = ~(np.isfinite(e) & np.isfinite(v) & (v > 0) & (r > 0))
    p, lower, upper = (np.where(bad, np.nan, a) for a in (p, e - half, e + half))
    return SequentialOutcome(p_value=p, lower=lower, upper=upper)


def running_min(p_values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Always-valid p-value over a sequence of looks: the running minimum of the per-look mSPRT p-values.

    Valid because {exists n: Lambda_n >= 1/alpha} has probability <= alpha (Ville's inequality); nan looks are
    skipped.
    """
    filled = np.where(np.isnan(p_values), 1.0, p_values)
    return np.minimum.accumulate(filled, axis=axis)
