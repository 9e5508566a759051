"""Interleaving statistics and decision from per-unit win/loss/tie counts (credited by ``credit``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from abharness.core.stats.decision import Decision
from abharness.core.stats.moments import Moments
from abharness.core.stats.ratio import ratio_estimate, wald_test
from abharness.core.stats.sequential import msprt

__all__ = ["InterleavingResult", "decide_interleaving", "interleaving_test"]


@dataclass(frozen=True, slots=True)
class InterleavingResult:
    """Interleaving outcome of ``treatment`` against ``control``.

    ``preference``: mean over units of (treatment wins - control wins) / impressions, with a t-test over units.
    ``delta_ab``: Chapelle et al.'s (wins_t + ties/2) / (wins_t + wins_c + ties) - 1/2, positive when the
    treatment wins more, with a unit-clustered (delta-method) interval. ``sign_test_p`` is the exact binomial
    test on impression wins, reported only when no unit contributes more than one impression.
    """

    control: str
    treatment: str
    units: int
    impressions: int
    wins_treatment: int
    wins_control: int
    ties: int
    no_click: int
    preference: float
    preference_se: float
    preference_lower: float
    preference_upper: float
    p_value: float
    delta_ab: float
    delta_ab_lower: float
    delta_ab_upper: float
    delta_ab_p_value: float
    sign_test_p: float | None
    sigma2_unit: float
    always_valid_p: float
    seq_lower: float
    seq_upper: float
    diagnostics: tuple[str, ...]


def interleaving_test(
    wins_treatment: np.ndarray,
    wins_control: np.ndarray,
    ties: np.ndarray,
    impressions: np.ndarray,
    *,
    control: str = "control",
    treatment: str = "treatment",
    alpha: float = 0.05,
    tuning_units: float = 10_000,
) -> InterleavingResult:
    """Per-unit preference t-test, Delta_AB with a unit-clustered interval, and (when valid) the sign test.

    Estimators: for unit i, pref_i = (w_t,i - w_c,i) / impressions_i (ties and no-click impressions count in the
    denominator, so they pull the preference towards 0); mean(pref) is tested against 0 with a one-sample t test
    over units (units independent; impressions of one unit may be correlated, which is why the unit is the
    observation). Delta_AB = (W_t + T/2) / (W_t + W_c + T) - 1/2 over all impressions with a click (Chapelle,
    Joachims, Radlinski & Yue, "Large-scale validation and analysis of interleaved search evaluation", ACM TOIS
    2012, section 4), its standard error by the delta method clustered by unit (Deng et al. 2018). The sign
    (binomial) test on W_t vs W_c treats impressions as independent, so it is only given when every unit has
    exactly one impression. ``always_valid_p``/``seq_*`` are the mSPRT p-value and confidence sequence of the
    mean preference (see :func:`abharness.core.stats.sequential.msprt`).
    """
    wt, wc, ti, imp = (np.asarray(a, dtype=float) for a in (wins_treatment, wins_control, ties, impressions))
    diags: list[str] = []
    units = int(imp.size)
    keep = imp > 0
    if (~keep).any():
        diags.append(f"{int((~keep).sum())} units without interleaved impressions ignored")
    wt, wc, ti, imp = wt[keep], wc[keep], ti[keep], imp[keep]
    pref = (wt - wc) / imp
    m = Moments.from_columns({"pref": pref, "num": wt + ti / 2.0, "den": wt + wc + ti})
    n = float(m.n)
    mean = float(m.mean()[0]) if n > 0 else float("nan")
    var = max(float(m.cov()[0, 0]), 0.0) if n > 1 else float("nan")  # rounding can dip below 0
    se = float(np.sqrt(var / n)) if n > 1 else float("nan")
    t = wald_test(mean, se, df=n - 1, alpha=alpha, kind="welch")
    seq = msprt(mean, se, n, alpha=alpha, tuning_units=tuning_units)
    if n < 2:
        diags.append("fewer than 2 units with interleaved impressions: no test")
    elif var == 0:
        diags.append("zero variance of per-unit preference: every unit has the same preference; no test")
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio, ratio_se = ratio_estimate(m, "num", "den")
    dab = float(ratio) - 0.5
    d = wald_test(dab, float(ratio_se), alpha=alpha, kind="z")
    if float(m.sums[2]) == 0:
        diags.append("no clicked interleaved impressions: Delta_AB undefined")
    w_t, w_c = int(wt.sum()), int(wc.sum())
    sign_p: float | None = None
    if imp.size and imp.max() <= 1:
        sign_p = float(stats.binomtest(w_t, w_t + w_c, 0.5).pvalue) if w_t + w_c > 0 else None
    else:
        diags.append("units repeat: sign test on impressions omitted (it would treat correlated impressions as "
                     "independent); use the per-unit preference t-test")
    return InterleavingResult(
        control=control, treatment=treatment, units=units, impressions=int(imp.sum()),
        wins_treatment=w_t, wins_control=w_c, ties=int(ti.sum()),
        no_click=int(imp.sum() - wt.sum() - wc.sum() - ti.sum()),
        preference=mean, preference_se=se, preference_lower=float(t.lower), preference_upper=float(t.upper),
        p_value=float(t.p_value), delta_ab=dab, delta_ab_lower=float(d.lower), delta_ab_upper=float(d.upper),
        delta_ab_p_value=float(d.p_value), sign_test_p=sign_p, sigma2_unit=var,
        always_valid_p=float(seq.p_value), seq_lower=float(seq.lower), seq_upper=float(seq.upper), diagnostics=tuple(diags),
    )


def decide_interleaving(result: InterleavingResult, basis: Literal["sequential", "fixed"] = "sequential") -> Decision:
    """Decision for an interleaving-only experiment from the per-unit preference of treatment over control:
    ship when its interval (always-valid or fixed, per ``basis``) lies above 0, rollback when below, else
    keep-running. Interleaving measures preference only: latency/error guardrails need an A/B phase.
    """
    lo, hi = ((result.seq_lower, result.seq_upper) if basis == "sequential"
              else (result.preference_lower, result.preference_upper))
    desc = f"interleaving preference {result.preference:+.4f} ({result.treatment} vs {result.control})"
    if lo > 0:
        return Decision("ship", (f"{desc}: interval excludes 0 in favour of {result.treatment}",
                                 "interleaving has no guardrails: confirm latency/errors in an A/B phase"))
    if hi < 0:
        return Decision("rollback", (f"{desc}: interval excludes 0 in favour of {result.control}",))
    return Decision("keep-running", (f"{desc}: not yet significant (always-valid p={result.always_valid_p:.3g})",))
