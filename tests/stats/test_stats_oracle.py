"""Statistics core against oracles: statsmodels/scipy and hand-worked numbers (source given per test)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from abharness.core.interleaving import interleaving_test
from abharness.core.stats import (
    ONLINE_METRICS,
    Moments,
    benjamini_hochberg,
    cluster_bootstrap,
    compare_metric,
    ctr_plan,
    holm,
    mde,
    msprt,
    one_sample_mde,
    one_sample_required_units,
    power_at,
    ratio_diff,
    ratio_estimate,
    required_units,
    srm_test,
    wald_test,
)
from abharness.core.stats.compare import non_inferiority, zero_event_non_inferiority
from abharness.core.stats.metrics import OnlineMetricSpec


def _arm(rng, n, shift=0.0):
    x = rng.integers(1, 8, n).astype(float)
    y = rng.binomial(x.astype(int), np.clip(rng.beta(2, 5, n) + shift, 0, 1)).astype(float)
    return y, x


def test_moments_match_numpy_covariance():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(50, 3))
    m = Moments.from_matrix(("a", "b", "c"), data)
    np.testing.assert_allclose(m.cov(), np.cov(data, rowvar=False))
    np.testing.assert_allclose(m.mean(), data.mean(axis=0))


def test_mean_metric_delta_test_equals_statsmodels_welch_t_and_z():
    # With a denominator of 1 per unit, the delta method is exactly Welch's unequal-variance test on unit means.
    rng = np.random.default_rng(1)
    yc, yt = rng.gamma(2.0, 1.0, 300), rng.gamma(2.2, 1.0, 250)
    mc = Moments.from_columns({"y": yc, "one": np.ones_like(yc)})
    mt = Moments.from_columns({"y": yt, "one": np.ones_like(yt)})
    d = ratio_diff(mc, mt, "y", "one")
    cm = CompareMeans(DescrStatsW(yt), DescrStatsW(yc))
    t_sm, p_sm, df_sm = cm.ttest_ind(usevar="unequal")
    lo_sm, hi_sm = cm.tconfint_diff(alpha=0.05, usevar="unequal")
    out = wald_test(d.diff, d.se, df=d.df, kind="welch")
    assert float(out.statistic) == pytest.approx(t_sm, rel=1e-10)
    assert float(out.p_value) == pytest.approx(p_sm, rel=1e-9)
    assert float(d.df) == pytest.approx(df_sm, rel=1e-10)
    assert (float(out.lower), float(out.upper)) == pytest.approx((lo_sm, hi_sm), rel=1e-9)
    z_sm, pz_sm = cm.ztest_ind(usevar="unequal")
    zl, zh = cm.zconfint_diff(alpha=0.05, usevar="unequal")
    z = wald_test(d.diff, d.se, kind="z")
    assert float(z.statistic) == pytest.approx(z_sm, rel=1e-10)
    assert float(z.p_value) == pytest.approx(pz_sm, rel=1e-9)
    assert (float(z.lower), float(z.upper)) == pytest.approx((zl, zh), rel=1e-9)


def test_ratio_delta_variance_hand_worked():
    # Units (y, x) = (1, 2), (0, 1), (3, 4): R = 4/7, ybar = 4/3, xbar = 7/3.
    # Linearised l_i = (y_i - R x_i) / xbar = (-1/7, -4/7, 5/7) * 3/7; Var(R) = var(l, ddof=1) / 3.
    y, x = np.array([1.0, 0.0, 3.0]), np.array([2.0, 1.0, 4.0])
    r, se = ratio_estimate(Moments.from_columns({"y": y, "x": x}), "y", "x")
    lin = np.array([-1 / 7, -4 / 7, 5 / 7]) * 3 / 7
    assert float(r) == pytest.approx(4 / 7)
    assert float(se) ** 2 == pytest.approx(lin.var(ddof=1) / 3, rel=1e-12)
    # (l = -0.06122, -0.24490, 0.30612; squares sum 0.157434, /2 = 0.078717, /3 = 0.026239)
    assert float(se) ** 2 == pytest.approx(0.026239, rel=1e-4)


def test_relative_lift_variance_matches_numeric_delta_method():
    rng = np.random.default_rng(2)
    (yc, xc), (yt, xt) = _arm(rng, 400), _arm(rng, 420, 0.05)
    mc, mt = Moments.from_columns({"y": yc, "x": xc}), Moments.from_columns({"y": yt, "x": xt})
    d = ratio_diff(mc, mt, "y", "x")
    rc, sc = ratio_estimate(mc, "y", "x")
    rt, st = ratio_estimate(mt, "y", "x")
    # gradient of f(rc, rt) = rt / rc - 1 by central differences
    h = 1e-6
    g_c = ((rt / (rc + h) - 1) - (rt / (rc - h) - 1)) / (2 * h)
    g_t = (((rt + h) / rc - 1) - ((rt - h) / rc - 1)) / (2 * h)
    assert float(d.rel_se) == pytest.approx(math.sqrt(g_c**2 * sc**2 + g_t**2 * st**2), rel=1e-6)
    assert float(d.rel) == pytest.approx(float(rt / rc - 1))


def test_cluster_bootstrap_agrees_with_delta_method():
    rng = np.random.default_rng(3)
    (yc, xc), (yt, xt) = _arm(rng, 3000), _arm(rng, 3000)
    mc, mt = Moments.from_columns({"y": yc, "x": xc}), Moments.from_columns({"y": yt, "x": xt})
    d = ratio_diff(mc, mt, "y", "x")
    [b] = cluster_bootstrap(np.column_stack([yc, xc]), np.column_stack([yt, xt]), [(0, 1)], samples=400,
                            rng=np.random.default_rng(4))
    assert b.se == pytest.approx(float(d.se), rel=0.15)
    assert b.lower < float(d.diff) < b.upper


def test_cuped_equals_ancova_with_equal_arms_and_reduces_variance():
    # Mean metric, one covariate, equal n: CUPED with the pooled beta equals the OLS coefficient of the treatment
    # dummy in y ~ 1 + treat + w (ANCOVA), Deng et al. 2013 section 3.3.
    rng = np.random.default_rng(5)
    n = 500
    w = rng.normal(size=2 * n)
    treat = np.r_[np.zeros(n), np.ones(n)]
    y = 1.0 + 0.2 * treat + 0.9 * w + rng.normal(scale=0.5, size=2 * n)
    one = np.ones(n)
    mc = Moments.from_columns({"y": y[:n], "one": one, "w": w[:n]})
    mt = Moments.from_columns({"y": y[n:], "one": one, "w": w[n:]})
    d = ratio_diff(mc, mt, "y", "one", covariates=("w",))
    ols = sm.OLS(y, sm.add_constant(np.column_stack([treat, w]))).fit()
    assert float(d.diff) == pytest.approx(ols.params[1], rel=1e-9)
    corr2 = np.corrcoef(y[:n], w[:n])[0, 1] ** 2
    assert float(d.var_reduction) == pytest.approx(corr2, abs=0.05)
    assert float(d.se) == pytest.approx(ols.bse[1], rel=0.05)


def test_cuped_handles_units_without_history_via_indicator():
    rng = np.random.default_rng(6)
    n = 2000
    has = rng.random(2 * n) < 0.6
    pre = np.where(has, rng.gamma(2, 1, 2 * n), 0.0)
    y = np.where(has, pre, rng.gamma(2, 1, 2 * n)) + rng.normal(scale=0.3, size=2 * n)
    one = np.ones(n)
    cols = lambda s: {"y": y[s], "one": one, "pre": pre[s], "has": has[s].astype(float)}  # noqa: E731
    mc, mt = Moments.from_columns(cols(slice(0, n))), Moments.from_columns(cols(slice(n, 2 * n)))
    plain = ratio_diff(mc, mt, "y", "one")
    adj = ratio_diff(mc, mt, "y", "one", covariates=("pre", "has"))
    assert float(adj.se) < float(plain.se)
    assert 0.3 < float(adj.var_reduction) < 1.0


def test_srm_against_scipy_and_hand_worked():
    # 5,100 vs 4,900 at 50/50: chi2 = 2 * 100^2 / 5000 = 4.0, p = 0.0455 (chi2, 1 df)
    r = srm_test({"a": 5100, "b": 4900}, {"a": 0.5, "b": 0.5})
    assert r.statistic == pytest.approx(4.0)
    assert r.p_value == pytest.approx(stats.chi2.sf(4.0, 1))
    assert r.p_value == pytest.approx(0.0455, abs=1e-4)
    assert not r.alarm
    r2 = srm_test({"a": 700, "b": 300, "c": 1000}, {"a": 1, "b": 1, "c": 2})
    ref = stats.chisquare([700, 300, 1000], [500, 500, 1000])
    assert r2.p_value == pytest.approx(ref.pvalue) and r2.alarm


def test_holm_and_bh_hand_worked():
    # Holm: sorted 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.06, 0.04*1) = 0.06; BH: 0.01*3/1, 0.03*3/2, 0.04*3/3
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert benjamini_hochberg([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.04, 0.04])
    out = holm([0.01, float("nan")])  # NaN counts in the family (m = 2) and stays NaN: see core/stats/multiple.py
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1])


def test_msprt_p_value_and_confidence_sequence_are_dual():
    # At effect = half-width of the confidence sequence, Lambda = 1/alpha exactly (Johari et al. 2017, eq. for
    # the normal mixture), so the always-valid p-value equals alpha.
    se, n, alpha = 0.01, 5_000, 0.05
    cs = msprt(0.0, se, n, alpha=alpha, tuning_units=10_000)
    half = float(cs.upper)
    assert float(msprt(half, se, n, alpha=alpha, tuning_units=10_000).p_value) == pytest.approx(alpha, rel=1e-9)
    # hand formula: tau2/V = c * n / N*, c = -2 log a + log(1 - 2 log a)
    r = (-2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))) * n / 10_000
    lam = math.sqrt(1 / (1 + r)) * math.exp(r * 4.0 / (2 * (1 + r)))  # z = 2
    assert float(msprt(2 * se, se, n, alpha=alpha).p_value) == pytest.approx(1 / lam, rel=1e-12)
    # the always-valid interval is wider than the fixed one
    assert half > stats.norm.ppf(0.975) * se


def test_power_functions_match_closed_form():
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    sigma2, eff = 0.25, 0.01
    n_total = required_units(sigma2, eff)
    assert n_total == pytest.approx(2 * 2 * sigma2 * z**2 / eff**2, rel=1e-3)
    assert power_at(sigma2, eff, n_total / 2, n_total / 2) == pytest.approx(0.8, abs=1e-6)
    assert mde(sigma2, n_total / 2, n_total / 2) == pytest.approx(eff, rel=1e-4)  # root-finder tolerance
    assert one_sample_required_units(1.0, 0.1) == pytest.approx((z / 0.1) ** 2, rel=1e-3)
    assert one_sample_mde(1.0, (z / 0.1) ** 2) == pytest.approx(0.1, rel=1e-3)


def test_ctr_plan_design_effect():
    # m = 5 impressions per unit, ICC 0.2: design effect 1 + 4 * 0.2 = 1.8 (Kish 1965)
    plan = ctr_plan(0.3, 0.02, impressions_per_unit=5, icc=0.2)
    assert plan.design_effect == pytest.approx(1.8)
    assert plan.units / plan.naive_units == pytest.approx(1.8, rel=1e-9)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    naive_impressions = 2 * 2 * 0.3 * 0.7 * z**2 / (0.006**2)  # classic two-proportion size, both arms
    assert plan.naive_units * 5 == pytest.approx(naive_impressions, rel=1e-3)


def test_interleaving_against_scipy_and_hand_worked():
    wt = np.array([2, 0, 1, 3, 0, 1])
    wc = np.array([0, 1, 1, 0, 2, 0])
    ties = np.array([1, 0, 0, 1, 0, 0])
    imp = np.array([4, 2, 3, 5, 3, 1])
    r = interleaving_test(wt, wc, ties, imp)
    pref = (wt - wc) / imp
    ref = stats.ttest_1samp(pref, 0.0)
    assert r.preference == pytest.approx(pref.mean())
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    # Delta_AB = (7 + 2/2) / (7 + 4 + 2) - 1/2 = 8/13 - 1/2
    assert r.delta_ab == pytest.approx(8 / 13 - 0.5)
    assert r.ties == 2 and r.no_click == 18 - 7 - 4 - 2
    assert r.sign_test_p is None  # units repeat
    single = interleaving_test(np.array([1, 1, 0, 1]), np.array([0, 0, 1, 0]), np.zeros(4), np.ones(4))
    assert single.sign_test_p == pytest.approx(stats.binomtest(3, 4, 0.5).pvalue)


def test_non_inferiority_matches_statsmodels_one_sided_welch():
    rng = np.random.default_rng(7)
    lat_c, lat_t = rng.gamma(4, 25, 400), rng.gamma(4, 26, 380)
    mc = Moments.from_columns({"y": lat_c, "one": np.ones_like(lat_c)})
    mt = Moments.from_columns({"y": lat_t, "one": np.ones_like(lat_t)})
    d = ratio_diff(mc, mt, "y", "one")
    ni = non_inferiority(float(d.diff), float(d.se), float(d.df), 5.0, "absolute", alpha=0.05, kind="welch",
                         n_units=780, tuning_units=10_000)
    _, p_sm, _ = CompareMeans(DescrStatsW(lat_t), DescrStatsW(lat_c)).ttest_ind(
        alternative="smaller", usevar="unequal", value=5.0)
    assert ni.p_value == pytest.approx(p_sm, rel=1e-9)


def test_zero_event_guardrail_rule_of_three():
    ni = zero_event_non_inferiority(1000, 0.005, 0.05)
    assert ni.upper == pytest.approx(1 - 0.05 ** (1 / 1000))
    assert ni.upper == pytest.approx(3 / 1000, rel=0.01)  # "rule of three"
    assert ni.p_value == pytest.approx(0.995**1000)


def test_compare_metric_zero_variance_is_a_diagnostic_not_a_crash():
    ones = np.ones(10)
    m = Moments.from_columns({c: ones for c in ("clicked_impressions", "impressions")})
    c = compare_metric(m, m, ONLINE_METRICS["ctr"], control_name="a", treatment_name="b")
    assert math.isnan(c.p_value)
    assert any("zero variance" in d for d in c.diagnostics)
    empty = Moments.from_matrix(("clicked_impressions", "impressions"), np.zeros((0, 2)))
    c2 = compare_metric(empty, m, ONLINE_METRICS["ctr"], control_name="a", treatment_name="b")
    assert math.isnan(c2.p_value) and c2.diagnostics
    spec = OnlineMetricSpec("x", "x", "clicked_impressions", "impressions", True)
    assert compare_metric(m, m, spec, control_name="a", treatment_name="b").lift == 0.0


def test_poisson_table_draws_match_poisson_one():
    from abharness.core.stats.bootstrap import poisson1

    draws = poisson1(np.random.default_rng(0), (200_000,))
    observed = np.bincount(draws.astype(int), minlength=8)[:8] / draws.size
    np.testing.assert_allclose(observed, stats.poisson.pmf(np.arange(8), 1.0), atol=0.003)
    assert draws.mean() == pytest.approx(1.0, abs=0.01) and draws.var() == pytest.approx(1.0, abs=0.02)
