"""One metric, treatment vs control: fixed-horizon and always-valid results as frozen scalar values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from abharness.core.stats.metrics import OnlineMetricSpec
from abharness.core.stats.moments import Moments
from abharness.core.stats.ratio import TestKind, ratio_diff, ratio_estimate, wald_test
from abharness.core.stats.sequential import msprt

__all__ = ["ArmEstimate", "MetricComparison", "NonInferiority", "arm_estimate", "compare_metric", "non_inferiority",
           "zero_event_non_inferiority"]


def _f(x: np.ndarray | float) -> float:
    return float(np.asarray(x).reshape(()))


@dataclass(frozen=True, slots=True)
class ArmEstimate:
    """A ratio metric for one arm: value, delta-method standard error and normal (1 - alpha) interval."""

    arm: str
    units: int
    denominator: float
    value: float
    se: float
    lower: float
    upper: float


def arm_estimate(m: Moments, spec: OnlineMetricSpec, arm: str, alpha: float = 0.05) -> ArmEstimate:
    """Ratio-of-sums estimate for one arm with its unit-clustered (delta-method) normal interval."""
    value, se = (_f(v) for v in ratio_estimate(m, spec.numerator, spec.denominator))
    q = float(stats.norm.ppf(1 - alpha / 2))
    return ArmEstimate(arm, int(_f(m.n)), _f(m.sums[m.index(spec.denominator)]), value, se, value - q * se,
                       value + q * se)


@dataclass(frozen=True, slots=True)
class NonInferiority:
    """Guardrail: is the treatment's harm below the margin?

    ``harm`` is the change in the bad direction (absolute, or relative when ``margin_kind == "relative"``);
    ``p_value`` tests H0: harm >= margin one-sided; ``upper`` is the one-sided (1 - alpha) upper bound of harm;
    ``seq_lower``/``seq_upper`` bound harm with the always-valid confidence sequence.
    """

    margin: float
    margin_kind: str
    harm: float
    upper: float
    p_value: float
    seq_lower: float
    seq_upper: float


@dataclass(frozen=True, slots=True)
class MetricComparison:
    """Treatment vs control for one ratio metric.

    ``lift`` (absolute) and ``relative_lift`` come with (1 - alpha) intervals; ``p_value`` is the fixed-horizon
    two-sided p; ``always_valid_p`` and ``seq_lower``/``seq_upper`` (absolute lift) are the mSPRT p-value and
    confidence sequence; ``variance_reduction`` is CUPED's (0 when not applied). ``p_holm``/``p_bh`` are filled
    in across metrics by the caller. ``diagnostics`` explain any nan.
    """

    metric: str
    label: str
    higher_is_better: bool
    control: ArmEstimate
    treatment: ArmEstimate
    lift: float
    lift_se: float
    lift_lower: float
    lift_upper: float
    relative_lift: float
    relative_lower: float
    relative_upper: float
    statistic: float
    df: float
    p_value: float
    always_valid_p: float
    seq_lower: float
    seq_upper: float
    test: str
    cuped: bool
    variance_reduction: float
    sigma2_unit: float
    non_inferiority: NonInferiority | None = None
    p_holm: float | None = None
    p_bh: float | None = None
    bootstrap_se: float | None = None
    bootstrap_lower: float | None = None
    bootstrap_upper: float | None = None
    diagnostics: tuple[str, ...] = ()

    @property
    def improved(self) -> bool:
        """Fixed-horizon interval excludes 0 in the good direction."""
        return self.lift_lower > 0 if self.higher_is_better else self.lift_upper < 0

    @property
    def harmed(self) -> bool:
        """Fixed-horizon interval excludes 0 in the bad direction."""
        return self.lift_upper < 0 if self.higher_is_better else self.lift_lower > 0

    @property
    def seq_improved(self) -> bool:
        """Always-valid confidence sequence excludes 0 in the good direction."""
        return self.seq_lower > 0 if self.higher_is_better else self.seq_upper < 0

    @property
    def seq_harmed(self) -> bool:
        """Always-valid confidence sequence excludes 0 in the bad direction."""
        return self.seq_upper < 0 if self.higher_is_better else self.seq_lower > 0


def non_inferiority(
    harm: float, se: float, df: float, margin: float, margin_kind: str, *, alpha: float, kind: TestKind,
    n_units: float, tuning_units: float,
) -> NonInferiority:
    """One-sided non-inferiority test of H0: harm >= margin against H1: harm < margin.

    Estimator: t = (harm - margin) / se, p = F(t) with F the t (Welch df) or normal cdf; the guardrail passes at
    level alpha when p < alpha, i.e. when the one-sided upper bound harm + q_{1-alpha} se is below the margin.
    Reference: Wellek, "Testing Statistical Hypotheses of Equivalence and Noninferiority" (2010), ch. 2.
    """
    dist = stats.t(df) if kind == "welch" and math.isfinite(df) and df > 0 else stats.norm
    ok = math.isfinite(se) and se > 0 and math.isfinite(harm)
    p = float(dist.cdf((harm - margin) / se)) if ok else float("nan")
    upper = harm + float(dist.ppf(1 - alpha)) * se if ok else float("nan")
    seq = msprt(harm, se, n_units, alpha=alpha, tuning_units=tuning_units)
    return NonInferiority(margin, margin_kind, harm, upper, p, _f(seq.lower), _f(seq.upper))


def zero_event_non_inferiority(n_treatment: float, margin: float, alpha: float) -> NonInferiority:
    """Non-inferiority of a rate when neither arm had a single event (errors, fallbacks): exact binomial.

    With 0 events in n treatment impressions the exact one-sided (1 - alpha) upper bound of the treatment rate is
    1 - alpha^(1/n) (about 3/n at alpha = 0.05, the "rule of three"; Hanley & Lippman-Hand, JAMA 1983), and the
    exact p-value of H0: rate >= margin is (1 - margin)^n. Control's rate is bounded below by 0, so harm <= this
    bound. The bound is also always-valid: seeing no event by n implies none at every earlier look.
    """
    upper = 1.0 - alpha ** (1.0 / n_treatment)
    p = (1.0 - margin) ** n_treatment if margin < 1 else 0.0
    return NonInferiority(margin, "absolute", 0.0, upper, p, 0.0, upper)


def compare_metric(
    control: Moments,
    treatment: Moments,
    spec: OnlineMetricSpec,
    *,
    control_name: str,
    treatment_name: str,
    covariates: Sequence[str] = (),
    alpha: float = 0.05,
    test: TestKind = "welch",
    tuning_units: float = 10_000,
) -> MetricComparison:
    """Delta-method comparison of ``spec`` (CUPED-adjusted when ``covariates``), plus mSPRT and, for guardrails,
    the non-inferiority test. See :func:`abharness.core.stats.ratio.ratio_diff` for estimators and references.
    """
    diags: list[str] = []
    d = ratio_diff(control, treatment, spec.numerator, spec.denominator, covariates)
    if covariates and not (_f(d.se) > 0):
        diags.append("CUPED left out: the adjusted variance degenerated; showing the unadjusted analysis")
        d, covariates = ratio_diff(control, treatment, spec.numerator, spec.denominator), ()
    t = wald_test(d.diff, d.se, df=d.df, alpha=alpha, kind=test)
    rel = wald_test(d.rel, d.rel_se, df=d.df, alpha=alpha, kind=test)
    n_total = _f(control.n) + _f(treatment.n)
    seq = msprt(d.diff, d.se, n_total, alpha=alpha, tuning_units=tuning_units)
    c_est = arm_estimate(control, spec, control_name, alpha)
    t_est = arm_estimate(treatment, spec, treatment_name, alpha)
    zero_events = spec.guardrail and all(float(m.sums[m.index(spec.numerator)]) == 0 for m in (control, treatment))
    for est in (c_est, t_est):
        if zero_events:
            continue
        if est.units < 2:
            diags.append(f"arm {est.arm!r} has {est.units} unit(s) in the window: need at least 2 for a variance")
        elif est.denominator == 0:
            diags.append(f"arm {est.arm!r} has no {spec.denominator.replace('_', ' ')}: {spec.name} undefined")
        elif est.se == 0:
            diags.append(f"zero variance of {spec.name} in arm {est.arm!r}: every unit has the same value")
    if zero_events:
        diags.append(f"no {spec.numerator} in either arm: guardrail uses the exact zero-event bound")
    elif not diags and not math.isfinite(_f(t.p_value)):
        diags.append(f"{spec.name}: test not computable (zero or undefined variance of the difference)")
    ni = None
    if zero_events and spec.margin_kind == "absolute" and t_est.denominator > 0:
        ni = zero_event_non_inferiority(t_est.denominator, spec.margin, alpha)
    elif spec.guardrail:
        sign = -1.0 if spec.higher_is_better else 1.0
        if spec.margin_kind == "relative":
            harm, se = sign * _f(d.rel), _f(d.rel_se)
        else:
            harm, se = sign * _f(d.diff), _f(d.se)
        ni = non_inferiority(harm, se, _f(d.df), spec.margin, spec.margin_kind, alpha=alpha, kind=test,
                             n_units=n_total, tuning_units=tuning_units)
    return MetricComparison(
        metric=spec.name, label=spec.label, higher_is_better=spec.higher_is_better, control=c_est, treatment=t_est,
        lift=_f(d.diff), lift_se=_f(d.se), lift_lower=_f(t.lower), lift_upper=_f(t.upper),
        relative_lift=_f(d.rel), relative_lower=_f(rel.lower), relative_upper=_f(rel.upper),
        statistic=_f(t.statistic), df=_f(d.df), p_value=_f(t.p_value), always_valid_p=_f(seq.p_value),
        seq_lower=_f(seq.lower), seq_upper=_f(seq.upper), test=test, cuped=bool(covariates),
        variance_reduction=_f(d.var_reduction), sigma2_unit=_f(d.sigma2_unit), non_inferiority=ni,
        diagnostics=tuple(diags),
    )
