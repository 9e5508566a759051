"""Interaction check between two overlapping experiments (a diagnostic, not a decision).

Does experiment B's effect differ by the arm the unit had in experiment A (another layer)? With cells
``(a, b)`` of units crossed by their arms in A and B, each cell's ratio metric ``R_ab = sum(num) / sum(den)`` and its
delta-method standard error come from ``ratio_estimate``. The interaction (difference in differences) is

    I = (R_{a1,b1} - R_{a1,b0}) - (R_{a0,b1} - R_{a0,b0}),   SE(I) = sqrt(sum over the four cells of SE(R_ab)^2)

(cells hold disjoint units, hence independent), tested with a two-sided z-test. With one impression per unit
(denominator 1) ``I`` and ``SE(I)`` equal the interaction coefficient of the saturated OLS ``y ~ a * b`` and its
HC2 robust standard error (the oracle in the tests). Layers hashed with independent salts make the cells' shares
the product of the two splits, so without interaction each experiment's effect is the same in both arms of the
other. An alarm (``p < threshold``; default 0.001, because every pair of layers is checked and a false alarm
costs a needless investigation) says the two experiments' effects do not add up.
Reference: Kohavi, Tang & Xu, "Trustworthy Online Controlled Experiments" (2020), ch. 4 (interactions);
Tang et al., "Overlapping Experiment Infrastructure", KDD 2010.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

from abharness.core.stats.metrics import OnlineMetricSpec
from abharness.core.stats.moments import Moments
from abharness.core.stats.ratio import ratio_estimate

__all__ = ["InteractionCheck", "interaction_check", "INTERACTION_ALARM_P"]

INTERACTION_ALARM_P = 0.001


@dataclass(frozen=True, slots=True)
class InteractionCheck:
    """B's effect within each arm of A, their difference (the interaction) with SE, interval and p-value."""

    metric: str
    effect_b_in_a_control: float
    effect_b_in_a_treatment: float
    interaction: float
    se: float
    lower: float
    upper: float
    p_value: float
    alarm: bool
    units: Mapping[tuple[str, str], int]
    message: str


def _scalar(x: np.ndarray) -> float:
    return float(np.asarray(x).reshape(()))


def interaction_check(
    cells: Mapping[tuple[str, str], Moments],
    spec: OnlineMetricSpec,
    *,
    a_arms: tuple[str, str],
    b_arms: tuple[str, str],
    alpha: float = 0.05,
    threshold: float = INTERACTION_ALARM_P,
) -> InteractionCheck:
    """The interaction of experiments A and B on ``spec`` from the per-cell unit Moments ``cells[(a_arm, b_arm)]``.

    ``a_arms``/``b_arms`` are ``(control, treatment)``. A cell without units (or with zero variance everywhere)
    gives NaN fields and a message, not an exception.
    """
    a0, a1 = a_arms
    b0, b1 = b_arms
    keys = [(a0, b0), (a0, b1), (a1, b0), (a1, b1)]
    missing = [k for k in keys if k not in cells]
    if missing:
        raise ValueError(f"interaction_check: no Moments for cells {missing}; give one per (A arm, B arm) pair")
    units = {k: int(_scalar(cells[k].n)) for k in keys}
    if min(units.values()) < 2:
        nan = float("nan")
        return InteractionCheck(spec.name, nan, nan, nan, nan, nan, nan, nan, False, units,
                                f"interaction not computed: a cell has fewer than 2 units ({units})")
    est = {k: tuple(_scalar(v) for v in ratio_estimate(cells[k], spec.numerator, spec.denominator)) for k in keys}
    eff0 = est[(a0, b1)][0] - est[(a0, b0)][0]
    eff1 = est[(a1, b1)][0] - est[(a1, b0)][0]
    inter = eff1 - eff0
    se = math.sqrt(sum(est[k][1] ** 2 for k in keys))
    if not se > 0:
        p = float("nan")
    else:
        p = float(2 * stats.norm.sf(abs(inter) / se))
    q = float(stats.norm.ppf(1 - alpha / 2))
    alarm = bool(p < threshold)
    verdict = (f"interaction alarm (p={p:.2g} < {threshold})" if alarm else f"no interaction detected (p={p:.3g})")
    msg = (f"{verdict}: {spec.name} effect of B is {eff0:+.4g} when A is {a0!r} and {eff1:+.4g} when A is {a1!r} "
           f"(difference {inter:+.4g} ± {q * se:.2g})")
    return InteractionCheck(spec.name, eff0, eff1, inter, se, inter - q * se, inter + q * se, p, alarm, units, msg)
