"""Hypothesis properties of the statistics core."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from abharness.core.interleaving import interleaving_test
from abharness.core.stats import ONLINE_METRICS, Moments, compare_metric, msprt, ratio_diff, srm_test, wald_test

COLS = ("clicked_impressions", "impressions")


def unit_matrix(min_units: int = 0, max_units: int = 30):
    """Per-unit (clicked, impressions) with 0 <= clicked <= impressions."""
    return st.integers(min_units, max_units).flatmap(
        lambda n: st.tuples(
            arrays(np.int64, n, elements=st.integers(1, 20)), arrays(np.int64, n, elements=st.integers(0, 20))
        ).map(lambda t: np.column_stack([np.minimum(t[1], t[0]), t[0]]).astype(float).reshape(n, 2))
    )


@settings(max_examples=60, deadline=None)
@given(unit_matrix(), unit_matrix(), unit_matrix())
def test_merging_moments_is_associative_and_matches_concatenation(a, b, c):
    ma, mb, mc = (Moments.from_matrix(COLS, x) for x in (a, b, c))
    left, right = (ma + mb) + mc, ma + (mb + mc)
    whole = Moments.from_matrix(COLS, np.vstack([a, b, c]))
    for m in (left, right):
        np.testing.assert_allclose(m.n, whole.n)
        np.testing.assert_allclose(m.sums, whole.sums)
        np.testing.assert_allclose(m.cross, whole.cross)


@settings(max_examples=60, deadline=None)
@given(unit_matrix(3), unit_matrix(3))
def test_swapping_arms_flips_the_sign_of_the_lift(a, b):
    ma, mb = Moments.from_matrix(COLS, a), Moments.from_matrix(COLS, b)
    ab = compare_metric(ma, mb, ONLINE_METRICS["ctr"], control_name="a", treatment_name="b")
    ba = compare_metric(mb, ma, ONLINE_METRICS["ctr"], control_name="b", treatment_name="a")
    if math.isfinite(ab.lift):
        assert math.isclose(ab.lift, -ba.lift, abs_tol=1e-12)
        assert math.isclose(ab.lift_lower, -ba.lift_upper, rel_tol=1e-9, abs_tol=1e-12) or math.isnan(ab.lift_lower)
    if math.isfinite(ab.p_value):
        assert math.isclose(ab.p_value, ba.p_value, rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(ab.always_valid_p, ba.always_valid_p, rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=80, deadline=None)
@given(unit_matrix(), unit_matrix(), st.sampled_from(["welch", "z"]))
def test_p_values_lie_in_unit_interval_or_are_nan(a, b, kind):
    ma, mb = Moments.from_matrix(COLS, a), Moments.from_matrix(COLS, b)
    d = ratio_diff(ma, mb, *COLS)
    t = wald_test(d.diff, d.se, df=d.df, kind=kind)
    s = msprt(d.diff, d.se, ma.n + mb.n)
    for p in (float(t.p_value), float(s.p_value)):
        assert math.isnan(p) or 0.0 <= p <= 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=2, max_size=4))
def test_srm_p_value_in_unit_interval(counts):
    r = srm_test({f"a{i}": c for i, c in enumerate(counts)}, {f"a{i}": 1.0 for i in range(len(counts))})
    assert math.isnan(r.p_value) or 0.0 <= r.p_value <= 1.0


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(*(arrays(np.int64, n, elements=st.integers(0, 3))
                                                        for _ in range(3)))))
def test_interleaving_swap_flips_preference_and_p_in_unit_interval(counts):
    wt, wc, ties = counts
    imp = wt + wc + ties + 1
    r1 = interleaving_test(wt, wc, ties, imp)
    r2 = interleaving_test(wc, wt, ties, imp)
    assert math.isclose(r1.preference, -r2.preference, abs_tol=1e-12)
    for p in (r1.p_value, r1.delta_ab_p_value, r1.always_valid_p):
        assert math.isnan(p) or 0.0 <= p <= 1.0
