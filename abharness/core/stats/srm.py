"""Sample-ratio mismatch (SRM): are units split across arms as configured?"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["SRMResult", "srm_test", "SRM_ALARM_P"]

#: conventional alarm threshold (Fabijan et al., KDD 2019): an SRM p-value below it means the split is broken.
SRM_ALARM_P = 0.001


@dataclass(frozen=True, slots=True)
class SRMResult:
    """Chi-square goodness-of-fit of the observed unit counts per arm against the expected allocation."""

    observed: dict[str, int]
    expected: dict[str, float]
    statistic: float
    p_value: float
    alarm: bool
    threshold: float
    message: str


def srm_test(
    observed: Mapping[str, int], weights: Mapping[str, float], *, threshold: float = SRM_ALARM_P
) -> SRMResult:
    """Pearson chi-square test of unit counts against allocation ``weights`` (normalised to sum 1).

    Estimator: X^2 = sum (O_a - E_a)^2 / E_a with E_a = N w_a, df = arms - 1 (scipy.stats.chisquare).
    Assumptions: units are assigned independently with the configured probabilities; counts are of *units*
    (the randomisation key), not impressions, whose counts are clustered. Alarm when p < ``threshold``.
    Reference: Fabijan, Gupchup, Gupta et al., "Diagnosing Sample Ratio Mismatch in Online Controlled
    Experiments", KDD 2019.
    """
    arms = list(weights)
    missing = [a for a in observed if a not in weights]
    if missing:
        raise ValueError(f"arms {missing} have units but no allocation weight; weights given for {arms}")
    w = np.array([float(weights[a]) for a in arms])
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"allocation weights must be non-negative and sum > 0, got {dict(weights)}")
    w = w / w.sum()
    obs = np.array([int(observed.get(a, 0)) for a in arms], dtype=float)
    total = obs.sum()
    expected = {a: float(total * wi) for a, wi in zip(arms, w)}
    if total == 0 or len(arms) < 2:
        return SRMResult({a: int(o) for a, o in zip(arms, obs)}, expected, float("nan"), float("nan"), False,
                         threshold, "SRM not computed: need units in at least two configured arms")
    zero_w = w == 0
    if (obs[zero_w] > 0).any():
        return SRMResult({a: int(o) for a, o in zip(arms, obs)}, expected, float("inf"), 0.0, True, threshold,
                         "SRM alarm: units were logged in an arm with allocation weight 0")
    keep = ~zero_w
    res = stats.chisquare(obs[keep], f_exp=total * w[keep])
    p = float(res.pvalue)
    alarm = p < threshold
    shares = ", ".join(f"{a} {o / total:.2%} (expected {wi:.2%})" for a, o, wi in zip(arms, obs, w))
    msg = (f"SRM alarm (p={p:.2g} < {threshold}): {shares}; the split is broken, results are not trustworthy"
           if alarm else f"no SRM (p={p:.3g}): {shares}")
    return SRMResult({a: int(o) for a, o in zip(arms, obs)}, expected, float(res.statistic), p, alarm, threshold, msg)
