"""Jaccard@k and rank-biased overlap (Webber et al. 2010)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from abharness.core.overlap import jaccard_at_k, rbo_ext, rbo_max, rbo_min
from abharness.errors import ConfigError


def test_jaccard_hand_worked() -> None:
    assert jaccard_at_k(["a", "b", "c"], ["b", "c", "d"], 3) == pytest.approx(2 / 4)
    assert jaccard_at_k(["a", "b", "c"], ["b", "c", "d"], 1) == 0.0
    assert jaccard_at_k([], [], 5) == 1.0


def test_rbo_hand_worked() -> None:
    # X = (0, 2, 3, 3), p = 0.5: (1-p)/p * (0 + 2/2*.25 + 3/3*.125 + 3/4*.0625) + 3/4*.0625 = 0.46875
    assert rbo_ext(list("abcd"), list("bace"), p=0.5) == pytest.approx(0.46875)


def test_rbo_extremes_and_prefix() -> None:
    assert rbo_ext(list("abcdef"), list("abcdef")) == pytest.approx(1.0)
    assert rbo_ext(list("abc"), list("xyz")) == 0.0
    # a list that is a prefix of the other extrapolates to full agreement (eq. 32)
    assert rbo_ext(list("abc"), list("abcdefg")) == pytest.approx(1.0)


rankings = st.lists(st.sampled_from([str(i) for i in range(15)]), min_size=1, max_size=10, unique=True)


@given(rankings, rankings, st.sampled_from([0.5, 0.8, 0.9, 0.98]))
def test_rbo_properties(a: list[str], b: list[str], p: float) -> None:
    ext = rbo_ext(a, b, p)
    assert 0.0 <= ext <= 1.0 + 1e-12
    assert ext == pytest.approx(rbo_ext(b, a, p))
    k = min(len(a), len(b))
    lo, hi = rbo_min(a[:k], b[:k], p), rbo_max(a[:k], b[:k], p)
    assert lo - 1e-9 <= rbo_ext(a[:k], b[:k], p) <= hi + 1e-9


def test_top_weighted_swap_at_top_costs_more_than_at_bottom() -> None:
    base = list("abcdefghij")
    top = list("bacdefghij")
    bottom = list("abcdefghji")
    assert rbo_ext(base, top) < rbo_ext(base, bottom) < 1.0


@pytest.mark.parametrize("call", [lambda: rbo_ext(["a", "a"], ["b"]), lambda: rbo_ext(["a"], ["b"], p=1.0),
                                  lambda: jaccard_at_k(["a"], ["b"], 0)])
def test_bad_input(call) -> None:
    with pytest.raises(ConfigError):
        call()


def test_rbo_matches_an_independent_implementation() -> None:
    # Oracle: the `rbo` package 0.1.3 (changyaochen/rbo), RankingSimilarity(a, b).rbo(p=0.9, ext=True),
    # computed once for these equal-length lists (that package disagrees with eq. 32 for uneven lengths).
    assert rbo_ext(list("abcdefghij"), list("cbaxdyfgzj"), p=0.9) == pytest.approx(0.6462534952285715, abs=1e-12)
