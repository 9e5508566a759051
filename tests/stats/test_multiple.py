"""The one Holm and Benjamini-Hochberg, against statsmodels' ``multipletests`` as oracle, NaN semantics included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from abharness.core.stats.multiple import benjamini_hochberg, holm
from abharness.errors import ConfigError


@pytest.mark.parametrize(("ours", "method"), [(holm, "holm"), (benjamini_hochberg, "fdr_bh")])
def test_matches_statsmodels_on_random_families(ours, method) -> None:
    rng = np.random.default_rng(6)
    for _ in range(200):
        p = rng.random(rng.integers(1, 12)) ** 2
        if rng.random() < 0.3:
            p[rng.integers(0, p.size)] = p[0]  # ties
        np.testing.assert_allclose(ours(p), multipletests(p, method=method)[1], atol=1e-12)


def test_holm_nan_counts_in_the_family_as_statsmodels_does() -> None:
    rng = np.random.default_rng(7)
    for _ in range(100):
        p = rng.random(rng.integers(2, 10))
        p[rng.random(p.size) < 0.3] = np.nan
        ours = np.array(holm(p))
        oracle = multipletests(p, method="holm")[1]  # statsmodels sorts NaN last: m includes it
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(p))
        np.testing.assert_allclose(ours, oracle, atol=1e-12)  # NaN positions compare equal


def test_bh_nan_counts_in_the_family_as_p_equal_one() -> None:
    # statsmodels' fdr_bh returns all-NaN once one input is NaN, so the oracle is the family with NaN -> 1.
    rng = np.random.default_rng(8)
    for _ in range(100):
        p = rng.random(rng.integers(2, 10))
        p[rng.random(p.size) < 0.3] = np.nan
        ours = np.array(benjamini_hochberg(p))
        oracle = multipletests(np.where(np.isnan(p), 1.0, p), method="fdr_bh")[1]
        keep = ~np.isnan(p)
        assert np.isnan(ours[~keep]).all()
        np.testing.assert_allclose(ours[keep], oracle[keep], atol=1e-12)


def test_hand_worked_nan_case() -> None:
    # m = 3 with one untestable metric: 0.01 * 3 = 0.03, max(0.03, 0.03 * 2) = 0.06 (Holm); BH 0.01*3/1, 0.03*3/2.
    assert holm([0.01, float("nan"), 0.03])[::2] == pytest.approx([0.03, 0.06])
    assert benjamini_hochberg([0.01, float("nan"), 0.03])[::2] == pytest.approx([0.03, 0.045])
    assert all(math.isnan(x) for x in holm([float("nan")] * 2))


def test_empty_family_and_bad_input() -> None:
    assert holm([]) == [] and benjamini_hochberg([]) == []
    for bad in ([0.1, 1.5], [-0.01]):
        with pytest.raises(ConfigError, match=r"\[0, 1\]"):
            holm(bad)
        with pytest.raises(ConfigError, match=r"\[0, 1\]"):
            benjamini_hochberg(bad)
    with pytest.raises(ConfigError, match="1-D"):
        holm([[0.1, 0.2]])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 1), st.just(float("nan"))), max_size=12))
def test_holm_is_monotone_dominates_raw_and_bounds_bh(p: list) -> None:
    adj, bh = np.array(holm(p)), np.array(benjamini_hochberg(p))
    raw = np.asarray(p, dtype=float)
    ok = ~np.isnan(raw)
    assert np.array_equal(np.isnan(adj), ~ok) and np.array_equal(np.isnan(bh), ~ok)
    assert np.all(adj[ok] >= raw[ok] - 1e-15) and np.all(adj[ok] <= 1.0)
    assert np.all(bh[ok] <= adj[ok] + 1e-12)  # BH never adjusts more than Holm
    order = np.argsort(raw[ok], kind="stable")
    assert np.all(np.diff(adj[ok][order]) >= -1e-15)
