"""The analysis's bootstrap (``analysis.resample``) draws exactly the core bootstrap's weights and gives its results.

``_uint16_draws`` replaces ``rng.integers(0, 2**16, dtype=np.uint16)``: the same numbers and the generator left in
the same state, whatever the sequence of call sizes (odd sizes leave half of a 32-bit output cached in PCG64).
The bootstrap is checked against ``core.stats.bootstrap.cluster_bootstrap`` (einsum over all units at once) on
arms larger than one block of units, odd sizes, and a bit generator other than PCG64 (the plain draws).
"""

from __future__ import annotations

import numpy as np
import pytest

from abharness.analysis import resample
from abharness.analysis.resample import _uint16_draws, cluster_bootstrap_blas
from abharness.core.stats.bootstrap import _POISSON1, cluster_bootstrap


@pytest.mark.parametrize("seed", [0, 1, 7, 2**40 + 3])
def test_the_draws_are_rng_integers_and_leave_the_same_state(seed: int) -> None:
    assert resample._raw_draws_match()  # else the fast path would not be the one tested here
    want, got = np.random.default_rng(seed), np.random.default_rng(seed)
    for count in (1, 2, 3, 5, 0, 8, 7, 100_001, 16, 99_999, 4, 3, 0, 1, 1, 1, 2, 6):
        a = want.integers(0, 1 << 16, size=count, dtype=np.uint16)
        b = _uint16_draws(got, count)
        assert b.dtype == np.uint16 and np.array_equal(a, b), count
        # other draws in between see the same generator (the cached 32-bit half included)
        assert want.integers(0, 9) == got.integers(0, 9)
    assert want.random() == got.random()
    assert want.bit_generator.state["state"] == got.bit_generator.state["state"]


def test_the_draws_of_another_bit_generator_are_rng_integers() -> None:
    want, got = np.random.Generator(np.random.Philox(3)), np.random.Generator(np.random.Philox(3))
    for count in (5, 4, 1001):
        assert np.array_equal(want.integers(0, 1 << 16, size=count, dtype=np.uint16), _uint16_draws(got, count))


def test_a_mismatching_numpy_falls_back_to_rng_integers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resample, "_raw_draws_match", lambda: False)
    monkeypatch.setattr(resample, "_raw_uint16", lambda *a: pytest.fail("the raw draws were used"))
    want, got = np.random.default_rng(9), np.random.default_rng(9)
    assert np.array_equal(want.integers(0, 1 << 16, size=11, dtype=np.uint16), _uint16_draws(got, 11))


def test_the_table_lookup_is_the_core_ones() -> None:
    draws = np.random.default_rng(2).integers(0, 1 << 16, size=(3, 70_001), dtype=np.uint16)
    draws[0, :4] = [0, 65_535, 24_108, 24_109]  # the table's ends and a step
    got = resample._poisson1_u8(draws)
    assert got.shape == draws.shape and np.array_equal(got, _POISSON1[draws])


def _arms(m_c: int, m_t: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)

    def arm(m: int, lift: float) -> np.ndarray:
        imp = 1 + rng.poisson(8, m)
        clicked = rng.binomial(imp, 0.3 * lift)
        return np.column_stack([imp, clicked, rng.poisson(2, m), rng.random(m) * clicked,
                                rng.gamma(2.0, 4.0, m) * clicked]).astype(float)

    return arm(m_c, 1.0), arm(m_t, 1.05)


@pytest.mark.parametrize(("m_c", "m_t", "samples", "chunk"), [
    (3_001, 2_999, 70, 16),  # odd sizes: the generator carries half an output from one chunk to the next
    (2 * resample._BLOCK + 17, resample._BLOCK - 1, 37, 16),  # several blocks of units, a partial last chunk
    (1_000, 1_001, 20, 3),
])
def test_the_blas_bootstrap_equals_the_core_one(m_c: int, m_t: int, samples: int, chunk: int) -> None:
    xc, xt = _arms(m_c, m_t)
    pairs = [(1, 0), (2, 0), (3, 0), (4, 1)]
    want = cluster_bootstrap(xc, xt, pairs, samples=samples, rng=np.random.default_rng(3), chunk=chunk)
    got = cluster_bootstrap_blas(xc, xt, pairs, samples=samples, rng=np.random.default_rng(3), chunk=chunk)
    for a, b in zip(got, want):
        assert [a.se, a.lower, a.upper] == pytest.approx([b.se, b.lower, b.upper], rel=1e-9, abs=1e-12)
    other = cluster_bootstrap_blas(xc, xt, pairs, samples=samples, rng=np.random.default_rng(4), chunk=chunk)
    assert other[0].se != got[0].se  # another seed, other resamples: the comparison above can fail


def test_the_blas_bootstrap_with_another_bit_generator_equals_the_core_one() -> None:
    xc, xt = _arms(1_501, 1_499)
    pairs = [(1, 0), (4, 1)]
    want = cluster_bootstrap(xc, xt, pairs, samples=30, rng=np.random.Generator(np.random.Philox(8)))
    got = cluster_bootstrap_blas(xc, xt, pairs, samples=30, rng=np.random.Generator(np.random.Philox(8)))
    for a, b in zip(got, want):
        assert [a.se, a.lower, a.upper] == pytest.approx([b.se, b.lower, b.upper], rel=1e-9, abs=1e-12)


def test_a_ratio_with_a_zero_denominator_everywhere_gives_nan() -> None:
    xc, xt = _arms(50, 60)
    xc[:, 1] = xt[:, 1] = 0.0
    got = cluster_bootstrap_blas(xc, xt, [(4, 1), (1, 0)], samples=10, rng=np.random.default_rng(1))
    assert np.isnan(got[0].se) and np.isnan(got[0].lower) and got[1].se == 0.0
    with pytest.raises(ValueError, match="samples"):
        cluster_bootstrap_blas(xc, xt, [(1, 0)], samples=1, rng=np.random.default_rng(1))
