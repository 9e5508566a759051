"""Ratio metrics compared between two arms with unit-clustered variances (delta method), optionally CUPED-adjusted.

Vectorised: every function accepts :class:`Moments` with leading batch dimensions and returns arrays of that
shape, so simulation studies run the very code the analysis runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from statsmodels.stats.contrast import ContrastResults

from abharness.core.stats.moments import Moments

__all__ = ["RatioDiff", "TestOutcome", "ratio_estimate", "ratio_diff", "wald_test", "TestKind"]

TestKind = Literal["welch", "z"]


@dataclass(frozen=True, eq=False)
class RatioDiff:
    """Per-arm ratio estimates and their difference (arrays of the batch shape).

    ``control``/``treatment`` are the (CUPED-adjusted when covariates were given) arm ratios with delta-method
    standard errors; ``diff`` = treatment - control, ``rel`` = treatment / control - 1; ``df`` the
    Welch-Satterthwaite degrees of freedom; ``var_reduction`` = 1 - Var(adjusted diff) / Var(unadjusted diff)
    (0 without covariates); ``sigma2_unit`` the pooled per-unit variance of the linearised metric (for power).
    """

    control: np.ndarray
    control_se: np.ndarray
    treatment: np.ndarray
    treatment_se: np.ndarray
    diff: np.ndarray
    se: np.ndarray
    df: np.ndarray
    rel: np.ndarray
    rel_se: np.ndarray
    var_reduction: np.ndarray
    sigma2_unit: np.ndarray
    n_control: np.ndarray
    n_treatment: np.ndarray


@dataclass(frozen=True, eq=False)
class TestOutcome:
    """Test statistic, two-sided p-value and (1 - alpha) confidence bounds for an effect (arrays)."""

    statistic: np.ndarray
    p_value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def ratio_estimate(m: Moments, numerator: str, denominator: str) -> tuple[np.ndarray, np.ndarray]:
    """Ratio of sums R = sum(y) / sum(x) over units and its delta-method standard error.

    Estimator: Var(R) ~= (1/n) * g' S g with g = (1/xbar, -R/xbar) and S the sample covariance of the per-unit
    (y, x); units are independent but impressions inside a unit need not be.
    Reference: Deng, Knoblich & Lu, "Applying the Delta Method in Metric Analytics", KDD 2018, section 3.
    """
    r, v, _ = _arm_linearised(m, m.index(numerator), m.index(denominator))
    with np.errstate(invalid="ignore", divide="ignore"):
        return r, np.sqrt(np.maximum(v, 0.0) / m.n)


def _arm_linearised(m: Moments, iy: int, ix: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(R, per-unit variance of the linearised ratio, gradient g) for one arm."""
    mu = m.mean()
    cov = m.cov()
    with np.errstate(invalid="ignore", divide="ignore"):
        my, mx = mu[..., iy], mu[..., ix]
        r = my / mx
        g = np.stack([1.0 / mx, -r / mx], axis=-1)
        s = cov[..., [iy, ix], :][..., :, [iy, ix]]
        var_unit = np.einsum("...i,...ij,...j->...", g, s, g)
    return r, var_unit, g


def ratio_diff(
    control: Moments,
    treatment: Moments,
    numerator: str,
    denominator: str,
    covariates: Sequence[str] = (),
) -> RatioDiff:
    """Difference and relative lift of a ratio metric between arms, clustered by unit (delta method).

    Without ``covariates`` this is the delta-method estimator of Deng, Knoblich & Lu (KDD 2018): each arm's
    ratio of sums R_a has Var(R_a) = g_a' S_a g_a / n_a, the arms are independent, so Var(R_t - R_c) is the sum.
    The relative lift R_t / R_c - 1 gets its variance by the delta method again (section 3.3 of the paper):
    Var_t / R_c^2 + R_t^2 Var_c / R_c^4.

    With ``covariates`` (per-unit pre-experiment values, e.g. the same metric's numerator and denominator before
    the start plus a has-history indicator) each arm's ratio is CUPED-adjusted: theta_a = R_a - beta'(wbar_a -
    wbar_pooled) with beta = (S_ww,c + S_ww,t)^-1 (Cov_c(w, l) + Cov_t(w, l)) where l is the linearised ratio
    (Deng, Xu, Kohavi & Walker, WSDM 2013, sections 3.3 and 3.5 for ratio metrics). The covariates must not be
    affected by the treatment. beta is treated as known (its estimation error is O(1/n)).
    Assumptions: units independent and randomised; enough units for the CLT (hundreds per arm).
    """
    iy, ix = control.index(numerator), control.index(denominator)
    rc, vc_unit, gc = _arm_linearised(control, iy, ix)
    rt, vt_unit, gt = _arm_linearised(treatment, iy, ix)
    nc, nt = control.n, treatment.n
    with np.errstate(invalid="ignore", divide="ignore"):
        vc, vt = vc_unit / nc, vt_unit / nt
        var_unadj = vc + vt
        theta_c, theta_t = rc, rt
        if covariates:
            iw = [control.index(c) for c in covariates]
            cov_c, cov_t = control.cov(), treatment.cov()
            s_ww = cov_c[..., iw, :][..., :, iw] + cov_t[..., iw, :][..., :, iw]
            c_c = np.einsum("...wi,...i->...w", cov_c[..., iw, :][..., :, [iy, ix]], gc)
            c_t = np.einsum("...wi,...i->...w", cov_t[..., iw, :][..., :, [iy, ix]], gt)
            beta = np.einsum(
                "...ij,...j->...i", np.linalg.pinv(np.nan_to_num(s_ww)), np.nan_to_num(c_c + c_t)
            )
            mu_pool = (control.sums[..., iw] + treatment.sums[..., iw]) / (nc + nt)[..., None]
            theta_c = rc - np.einsum("...w,...w->...", beta, control.mean()[..., iw] - mu_pool)
            theta_t = rt - np.einsum("...w,...w->...", beta, treatment.mean()[..., iw] - mu_pool)
            quad_c = np.einsum("...i,...ij,...j->...", beta, cov_c[..., iw, :][..., :, iw], beta)
            quad_t = np.einsum("...i,...ij,...j->...", beta, cov_t[..., iw, :][..., :, iw], beta)
            vc = (vc_unit - 2 * np.einsum("...w,...w->...", beta, c_c) + quad_c) / nc
            vt = (vt_unit - 2 * np.einsum("...w,...w->...", beta, c_t) + quad_t) / nt
            vc, vt = np.maximum(vc, 0.0), np.maximum(vt, 0.0)
        var = vc + vt
        df = var**2 / (vt**2 / (nt - 1) + vc**2 / (nc - 1))
        rel = theta_t / theta_c - 1.0
        rel_var = vt / theta_c**2 + theta_t**2 * vc / theta_c**4
        reduction = 1.0 - var / var_unadj if covariates else np.zeros_like(var)
        sigma2 = ((nc - 1) * vc * nc + (nt - 1) * vt * nt) / (nc + nt - 2)
        # float rounding can leave a zero variance a hair below 0
        se_c, se_t, se, rel_se = (np.sqrt(np.maximum(v, 0.0)) for v in (vc, vt, var, rel_var))
    return RatioDiff(
        control=theta_c,
        control_se=se_c,
        treatment=theta_t,
        treatment_se=se_t,
        diff=theta_t - theta_c,
        se=se,
        df=df,
        rel=rel,
        rel_se=rel_se,
        var_reduction=reduction,
        sigma2_unit=sigma2,
        n_control=np.asarray(nc, dtype=float),
        n_treatment=np.asarray(nt, dtype=float),
    )


def wald_test(
    effect: np.ndarray | float,
    se: np.ndarray | float,
    *,
    df: np.ndarray | float | None = None,
    alpha: float = 0.05,
    kind: TestKind = "welch",
) -> TestOutcome:
    """Two-sided Wald test of effect = 0 and its (1 - alpha) confidence interval.

    ``kind="welch"``: t distribution with the given (Welch-Satterthwaite) ``df``; ``kind="z"``: standard normal.
    Computed through statsmodels' public ``statsmodels.stats.contrast.ContrastResults`` (the container its model
    ``t_test`` returns), so p-values and intervals are statsmodels'. Entries with a zero, missing or non-finite
    standard error come back as nan (a zero-variance diagnostic is the caller's job).
    """
    eff = np.asarray(effect, dtype=float)
    s = np.broadcast_to(np.asarray(se, dtype=float), eff.shape)
    d = np.broadcast_to(np.asarray(np.nan if df is None else df, dtype=float), eff.shape)
    ok = np.isfinite(eff) & np.isfinite(s) & (s > 0)
    if kind == "welch":
        ok &= np.isfinite(d) & (d > 0)
    out = {k: np.full(eff.shape, np.nan) for k in ("statistic", "p_value", "lower", "upper")}
    if ok.any():
        e1, s1 = eff[ok], s[ok]
        if kind == "welch":
            res = ContrastResults(t=e1 / s1, sd=s1, effect=e1, df_denom=d[ok])
        elif kind == "z":
            res = ContrastResults(statistic=e1 / s1, distribution="norm", sd=s1, effect=e1)
        else:
            raise ValueError(f"test kind {kind!r} unknown: use 'welch' or 'z'")
        ci = res.conf_int(alpha=alpha)
        out["statistic"][ok] = np.asarray(res.statistic, dtype=float).reshape(-1)
        out["p_value"][ok] = np.clip(np.asarray(res.pvalue, dtype=float).reshape(-1), 0.0, 1.0)
        out["lower"][ok] = ci[:, 0]
        out["upper"][ok] = ci[:, 1]
    return TestOutcome(**out)
