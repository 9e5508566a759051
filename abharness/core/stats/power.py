"""Power, sample size, minimum detectable effect (MDE) and "days still needed".

All of them reduce a metric to sigma^2, the per-unit variance of its linearised value (delta method), so the
same two-sample normal power function (statsmodels ``NormalIndPower``) serves CTR, MRR and interleaving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from statsmodels.stats.power import NormalIndPower

__all__ = [
    "power_at",
    "required_units",
    "mde",
    "CtrPlan",
    "ctr_plan",
    "ctr_unit_variance",
    "one_sample_required_units",
    "one_sample_mde",
    "days_still_needed",
]


def _valid(sigma2: float) -> bool:
    return math.isfinite(sigma2) and sigma2 > 0


def power_at(sigma2: float, effect: float, n_control: float, n_treatment: float, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample z test to detect an absolute ``effect`` with these unit counts.

    sigma2 is the per-unit variance of the linearised metric (assumed equal in both arms). Computed with
    statsmodels ``NormalIndPower.power`` (effect size effect / sigma, ratio n_t / n_c).
    """
    if not (_valid(sigma2) and n_control > 0 and n_treatment > 0):
        return float("nan")
    es = abs(effect) / math.sqrt(sigma2)
    return float(NormalIndPower().power(effect_size=es, nobs1=n_control, alpha=alpha, ratio=n_treatment / n_control))


def required_units(
    sigma2: float, effect: float, *, alpha: float = 0.05, power: float = 0.8, treatment_share: float = 0.5
) -> float:
    """Total units (both arms) for a two-sided test at ``alpha`` to reach ``power`` for an absolute ``effect``.

    Solves statsmodels ``NormalIndPower.solve_power`` for the control units n_c with ratio w_t / w_c and returns
    n_c (1 + ratio). Assumptions: normal approximation, equal per-unit variance sigma2 in both arms.
    """
    if not (_valid(sigma2) and effect != 0 and 0 < treatment_share < 1):
        return float("nan")
    ratio = treatment_share / (1 - treatment_share)
    n_c = NormalIndPower().solve_power(
        effect_size=abs(effect) / math.sqrt(sigma2), nobs1=None, alpha=alpha, power=power, ratio=ratio
    )
    return float(n_c) * (1 + ratio)


def mde(sigma2: float, n_control: float, n_treatment: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest absolute effect detectable with ``power`` at ``alpha`` with these unit counts (two-sided)."""
    if not (_valid(sigma2) and n_control > 1 and n_treatment > 1):
        return float("nan")
    es = NormalIndPower().solve_power(
        effect_size=None, nobs1=n_control, alpha=alpha, power=power, ratio=n_treatment / n_control
    )
    return float(es) * math.sqrt(sigma2)


def ctr_unit_variance(ctr: float, impressions_per_unit: float, icc: float) -> float:
    """Per-unit variance of the linearised CTR for planning before any data: p(1-p) (1 + (m-1) rho) / m.

    With m impressions per unit and intra-unit correlation rho, a unit's CTR has variance p(1-p)/m times the
    design effect 1 + (m - 1) rho (Kish 1965; Donner & Klar 2000 for cluster-randomised trials). Exact for
    equal cluster sizes; with unequal sizes prefer the variance measured on data (``RatioDiff.sigma2_unit``).
    """
    return ctr * (1 - ctr) * (1 + (impressions_per_unit - 1) * icc) / impressions_per_unit


@dataclass(frozen=True, slots=True)
class CtrPlan:
    """Sample size for a CTR experiment, with and without accounting for repeated units."""

    design_effect: float
    units: float
    impressions: float
    naive_units: float
    mde_absolute: float


def ctr_plan(
    baseline_ctr: float,
    relative_mde: float,
    *,
    impressions_per_unit: float,
    icc: float,
    alpha: float = 0.05,
    power: float = 0.8,
    treatment_share: float = 0.5,
) -> CtrPlan:
    """Units and impressions needed to detect a relative CTR change ``relative_mde`` (e.g. 0.02 for +2 %).

    ``naive_units`` is what one would plan if impressions were independent (design effect 1): repeated units
    with icc > 0 need ``design_effect`` times more impressions.
    """
    if not (0 < baseline_ctr < 1):
        raise ValueError(f"baseline_ctr must be in (0, 1), got {baseline_ctr}")
    if impressions_per_unit < 1 or not (0 <= icc <= 1):
        raise ValueError(f"need impressions_per_unit >= 1 and 0 <= icc <= 1, got {impressions_per_unit}, {icc}")
    effect = baseline_ctr * relative_mde
    deff = 1 + (impressions_per_unit - 1) * icc
    units = required_units(ctr_unit_variance(baseline_ctr, impressions_per_unit, icc), effect, alpha=alpha,
                           power=power, treatment_share=treatment_share)
    naive = required_units(ctr_unit_variance(baseline_ctr, impressions_per_unit, 0.0), effect, alpha=alpha,
                           power=power, treatment_share=treatment_share)
    return CtrPlan(deff, units, units * impressions_per_unit, naive, effect)


def one_sample_required_units(sigma2: float, effect: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Units for a one-sample two-sided z test of mean 0 (interleaving preference): ((z_a/2 + z_b) sigma / effect)^2.

    Uses ``NormalIndPower`` with a vanishing second group's variance: n = solve_power(...) / 2 is the exact
    one-sample size because the two-sample variance 2 sigma^2 / n halves.
    """
    if not (_valid(sigma2) and effect != 0):
        return float("nan")
    es = abs(effect) / math.sqrt(sigma2)
    n_two = NormalIndPower().solve_power(effect_size=es, nobs1=None, alpha=alpha, power=power, ratio=1.0)
    return float(n_two) / 2.0


def one_sample_mde(sigma2: float, n: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest mean preference detectable with ``n`` units (one-sample, two-sided)."""
    if not (_valid(sigma2) and n > 1):
        return float("nan")
    es = NormalIndPower().solve_power(effect_size=None, nobs1=2 * n, alpha=alpha, power=power, ratio=1.0)
    return float(es) * math.sqrt(sigma2)


def days_still_needed(required_total: float, current_units: float, units_per_day: float) -> float:
    """Days of further traffic until ``required_total`` units, at the observed rate of *new* units per day.

    Assumes new units keep arriving at the observed rate and sigma^2 stays as measured (with returning users
    it tends to fall per unit as units accumulate impressions, so this is conservative). 0 when already enough;
    inf when no new units arrive.
    """
    if not math.isfinite(required_total):
        return float("nan")
    remaining = max(0.0, required_total - current_units)
    if remaining == 0:
        return 0.0
    if units_per_day <= 0 or not math.isfinite(units_per_day):
        return float("inf")
    return remaining / units_per_day
