"""Properties of salted bucketing and allocation (abharness.core.assignment)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from abharness.core.assignment import BUCKETS, allocation, arms_with_decreasing_share, assign, bucket

unit_ids = st.text(min_size=1, max_size=40)
salts = st.text(min_size=1, max_size=20)


@given(salts, unit_ids)
def test_bucket_is_deterministic_and_in_range(salt, unit):
    b = bucket(salt, unit)
    assert 0 <= b < BUCKETS
    assert b == bucket(salt, unit)


def test_bucket_is_pinned_across_processes_and_versions():
    # Pinned to the documented formula: a change would silently reshuffle every running experiment.
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"exp-salt\x1falice").digest()[:8], "big") % BUCKETS
    assert bucket("exp-salt", "alice") == expected


def test_bucket_is_uniform_chi_square():
    counts = [0] * 100
    for i in range(50_000):
        counts[bucket("uniformity", f"user-{i}") // 100] += 1
    chi2, p = stats.chisquare(counts)
    assert p > 1e-4, (chi2, p)


def test_salts_give_independent_splits():
    w = {"control": 0.5, "treatment": 0.5}
    a = [assign("salt-a", f"u{i}", w) for i in range(20_000)]
    b = [assign("salt-b", f"u{i}", w) for i in range(20_000)]
    both = sum(x == "treatment" and y == "treatment" for x, y in zip(a, b))
    # Independent 50/50 splits: P(both treatment) = 1/4; binomial 5-sigma band.
    n = 20_000
    assert abs(both - n / 4) < 5 * math.sqrt(n * 0.25 * 0.75)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=9_000), st.integers(min_value=0, max_value=2**31))
def test_weights_are_honoured_within_binomial_tolerance(t_buckets, seed):
    w_t = t_buckets / BUCKETS
    weights = {"control": 1 - w_t, "treatment": w_t}
    n = 4_000
    hits = sum(assign(f"salt{seed}", f"unit-{i}", weights) == "treatment" for i in range(n))
    # Two-sided exact binomial test at alpha = 1e-6: fails only if the split is biased.
    p = stats.binomtest(hits, n, w_t).pvalue
    assert p > 1e-6, (hits, n, w_t, p)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=BUCKETS), min_size=2, max_size=5),
    st.lists(unit_ids, min_size=1, max_size=50),
)
def test_ramp_only_moves_control_to_treatment(ramp, units):
    ramp = sorted(ramp)  # 1% -> 10% -> 50% style: non-decreasing treatment share
    steps = [{"control": 1 - r / BUCKETS, "treatment": r / BUCKETS} for r in ramp]
    for before, after in zip(steps, steps[1:]):
        for u in units:
            if assign("ramp", u, before) == "treatment":
                assert assign("ramp", u, after) == "treatment"


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=0, max_value=3333),
    st.integers(min_value=0, max_value=3333),
    st.integers(min_value=0, max_value=1000),
    st.integers(min_value=0, max_value=1000),
    st.lists(unit_ids, min_size=1, max_size=40),
)
def test_ramp_with_two_treatments_never_moves_between_treatments(a1, b1, da, db, units):
    before = {"c": 1 - (a1 + b1) / BUCKETS, "t1": a1 / BUCKETS, "t2": b1 / BUCKETS}
    a2, b2 = min(a1 + da, 5000), min(b1 + db, 5000)
    after = {"c": 1 - (a2 + b2) / BUCKETS, "t1": a2 / BUCKETS, "t2": b2 / BUCKETS}
    for u in units:
        x, y = assign("two", u, before), assign("two", u, after)
        assert x == "c" or x == y


def test_overrides_win():
    w = {"control": 1.0, "treatment": 0.0}
    assert assign("s", "qa-user", w, overrides={"qa-user": "treatment"}) == "treatment"
    assert assign("s", "someone", w, overrides={"qa-user": "treatment"}) == "control"


def test_allocation_rejects_bad_weights_naming_the_arm():
    with pytest.raises(ValueError, match="sum to"):
        allocation({"c": 0.5, "t": 0.6})
    with pytest.raises(ValueError, match="'c' is 1.5"):
        allocation({"c": 1.5, "t": -0.5})
    with pytest.raises(ValueError, match="at most 0.5"):
        allocation({"c": 0.3, "t1": 0.6, "t2": 0.1})


def test_share_matches_weights_and_ramp_down_is_detected():
    a = allocation({"c": 0.9, "t": 0.1})
    assert a.share("t") == pytest.approx(0.1) and a.share("c") == pytest.approx(0.9)
    assert arms_with_decreasing_share({"c": 0.9, "t": 0.1}, {"c": 0.5, "t": 0.5}, "c") == []
    assert arms_with_decreasing_share({"c": 0.5, "t": 0.5}, {"c": 0.9, "t": 0.1}, "c") == ["t"]
