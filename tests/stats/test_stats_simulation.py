"""Simulation studies of the statistics core (vectorised with numpy; they run the same functions the analysis
runs). Marked slow; sized to finish in well under a minute each on two shared cores.

Model: each experiment has units (users) with 1 + Poisson(4) searches and a personal click propensity
p_i ~ Beta(0.3 c, 0.7 c); every search is clicked with probability p_i. Small c means strong heterogeneity
(intra-unit correlation 1 / (c + 1)), which is what makes per-impression tests anti-conservative.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from abharness.core.stats import Moments, msprt, power_at, ratio_diff, required_units, srm_test, wald_test
from abharness.core.stats.power import ctr_plan

pytestmark = pytest.mark.slow

ALPHA = 0.05
COLS = ("clicked", "impressions")


def simulate(rng, reps, units, *, shift=0.0, c=2.0, mean_imp=5.0, fixed_imp=None):
    """(values (reps, units, 2), treatment mask (reps, units)) for ``reps`` experiments of ``units`` units.

    A planted effect adds ``shift`` to every treated unit's click propensity (a homogeneous additive effect,
    which leaves the per-unit variance, the calculator's input, essentially unchanged).
    """
    n = np.full((reps, units), fixed_imp) if fixed_imp else 1 + rng.poisson(mean_imp - 1, (reps, units))
    treat = rng.random((reps, units)) < 0.5
    p = rng.beta(0.3 * c, 0.7 * c, (reps, units))
    p = np.where(treat, np.clip(p + shift, 0.0, 1.0), p)
    y = rng.binomial(n, p)
    return np.stack([y, n], axis=-1).astype(float), treat


def delta_pvalues(values, treat):
    mc = Moments.from_matrix(COLS, values, weights=~treat)
    mt = Moments.from_matrix(COLS, values, weights=treat)
    d = ratio_diff(mc, mt, *COLS)
    return wald_test(d.diff, d.se, df=d.df, alpha=ALPHA).p_value, d


def binomial_99(reps, alpha=ALPHA):
    return stats.binom.ppf(0.005, reps, alpha) / reps, stats.binom.ppf(0.995, reps, alpha) / reps


def test_aa_delta_method_fpr_within_binomial_interval_and_naive_is_anticonservative():
    rng = np.random.default_rng(20260101)
    reps, units = 1000, 2000
    values, treat = simulate(rng, reps, units)
    p_delta, _ = delta_pvalues(values, treat)
    fpr_delta = float(np.mean(p_delta < ALPHA))
    # naive: every impression treated as an independent Bernoulli trial (two-proportion z test, statsmodels)
    naive = []
    for r in range(reps):
        t = treat[r]
        clicks = [values[r, t, 0].sum(), values[r, ~t, 0].sum()]
        imps = [values[r, t, 1].sum(), values[r, ~t, 1].sum()]
        naive.append(proportions_ztest(clicks, imps)[1])
    fpr_naive = float(np.mean(np.array(naive) < ALPHA))
    lo, hi = binomial_99(reps)
    print(f"A/A FPR over {reps} experiments: delta method {fpr_delta:.3f} (99% band [{lo:.3f}, {hi:.3f}]), "
          f"naive per-impression {fpr_naive:.3f}")
    assert lo <= fpr_delta <= hi
    assert fpr_naive > hi


def test_continuous_peeking_sequential_keeps_fpr_but_naive_repeated_testing_does_not():
    rng = np.random.default_rng(7)
    reps, units, looks = 1000, 4000, 20
    values, treat = simulate(rng, reps, units)
    # cumulative sufficient statistics after every 200 units (units arrive in random order)
    w_t, w_c = treat.astype(float), (~treat).astype(float)
    cross = values[..., :, None] * values[..., None, :]
    idx = np.linspace(units // looks, units, looks).astype(int) - 1

    def cum_moments(w):
        n = np.cumsum(w, axis=1)[:, idx]
        sums = np.cumsum(values * w[..., None], axis=1)[:, idx]
        cr = np.cumsum(cross * w[..., None, None], axis=1)[:, idx]
        return Moments(COLS, n, sums, cr)

    mc, mt = cum_moments(w_c), cum_moments(w_t)
    d = ratio_diff(mc, mt, *COLS)
    p_fixed = wald_test(d.diff, d.se, df=d.df, alpha=ALPHA).p_value  # (reps, looks)
    p_seq = msprt(d.diff, d.se, mc.n + mt.n, alpha=ALPHA, tuning_units=units).p_value
    fpr_naive = float(np.mean((p_fixed < ALPHA).any(axis=1)))
    fpr_seq = float(np.mean((p_seq < ALPHA).any(axis=1)))
    _, hi = binomial_99(reps)
    print(f"peeking at {looks} looks: naive repeated testing FPR {fpr_naive:.3f}, mSPRT FPR {fpr_seq:.3f}")
    assert fpr_seq <= ALPHA
    assert fpr_naive > hi


def test_planted_effect_detected_at_predicted_power():
    rng = np.random.default_rng(11)
    lift = 0.10  # relative to the 0.3 baseline CTR: +0.03 absolute
    # the calculator's inputs come from an independent pilot A/A sample, as in practice
    pilot, pt = simulate(rng, 1, 40_000)
    _, d_pilot = delta_pvalues(pilot, pt)
    sigma2, base = float(d_pilot.sigma2_unit[0]), float(d_pilot.control[0])
    effect = base * lift
    units = int(round(required_units(sigma2, effect, alpha=ALPHA, power=0.8)))
    hits = []
    for _ in range(4):  # 4 x 250 experiments keeps memory small
        values, treat = simulate(rng, 250, units, shift=0.3 * lift)
        p, d = delta_pvalues(values, treat)
        hits.append((p < ALPHA) & (d.diff > 0))
    observed = float(np.mean(np.concatenate(hits)))
    predicted = power_at(sigma2, effect, units / 2, units / 2, ALPHA)
    print(f"planted +{lift:.0%} CTR with {units} units: predicted power {predicted:.3f}, observed {observed:.3f}")
    assert abs(observed - predicted) <= 0.05


def test_ctr_plan_with_design_effect_gives_its_power_and_naive_plan_falls_short():
    # equal cluster sizes (m = 5) where the design effect 1 + (m - 1) ICC is exact; ICC = 1 / (c + 1)
    rng = np.random.default_rng(12)
    c, m, lift = 2.0, 5, 0.10
    plan = ctr_plan(0.3, lift, impressions_per_unit=m, icc=1 / (c + 1), alpha=ALPHA, power=0.8)
    rates = {}
    for name, units in (("planned", int(round(plan.units))), ("naive", int(round(plan.naive_units)))):
        values, treat = simulate(rng, 1000, units, shift=0.3 * lift, c=c, fixed_imp=m)
        p, d = delta_pvalues(values, treat)
        rates[name] = float(np.mean((p < ALPHA) & (d.diff > 0)))
    print(f"CTR plan: design effect {plan.design_effect:.2f}, {plan.units:.0f} units -> power {rates['planned']:.3f}; "
          f"naive plan {plan.naive_units:.0f} units -> power {rates['naive']:.3f}")
    assert abs(rates["planned"] - 0.8) <= 0.05
    assert rates["naive"] < 0.7


def test_srm_flags_a_two_percent_skew_at_50k_units_and_stays_quiet_on_a_fair_split():
    rng = np.random.default_rng(13)
    weights = {"control": 0.5, "treatment": 0.5}
    skewed = rng.binomial(50_000, 0.51, 200)  # units landing in control when the split leaks 2 points
    flags = [srm_test({"control": int(k), "treatment": 50_000 - int(k)}, weights).alarm for k in skewed]
    fair = rng.binomial(50_000, 0.50, 1000)
    false_alarms = [srm_test({"control": int(k), "treatment": 50_000 - int(k)}, weights).alarm for k in fair]
    one = srm_test({"control": 25_500, "treatment": 24_500}, weights)  # the expected counts of a 51/49 split
    print(f"SRM at 50,000 units: 51/49 split flagged in {np.mean(flags):.1%} of draws; fair split false alarms "
          f"{np.mean(false_alarms):.2%}")
    assert one.alarm and one.p_value < 1e-4
    assert np.mean(flags) >= 0.8
    assert np.mean(false_alarms) <= 0.005
