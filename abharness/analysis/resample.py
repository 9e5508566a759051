"""The cluster bootstrap of ``core.stats.bootstrap.cluster_bootstrap`` for a million units: same draws, BLAS.

The resampling weights are exactly the core function's (``poisson1``, per arm, in chunks of ``chunk``
resamples), so for a given seed the resamples are the same units. Two things are cheaper:

* the draws: ``rng.integers(0, 2**16, dtype=np.uint16)`` over the full 16-bit range takes each 32-bit output of the
  generator and hands out its low then its high half, and PCG64 hands out its 64-bit outputs as two 32-bit halves,
  low first (the high one kept for the next call); ``_uint16_draws`` gives the same numbers from one
  ``random_raw`` call (whole 64-bit outputs, viewed as 16-bit) and leaves the generator in the same state: 2x less
  CPU. It is checked against ``rng.integers`` once per process (``_raw_draws_match``) and not used otherwise, nor
  for any other bit generator;
* the weighted sums: a matrix product on one BLAS thread instead of ``einsum``'s loop, taken over blocks of
  ``_BLOCK`` units so the weights widened to float64 stay in the CPU's cache (about 1.7x less time than one
  product over all units; several BLAS threads on a shared machine were slower and erratic).

Integer columns sum exactly either way; float columns differ from ``einsum`` by rounding only (1e-15 relative):
``tests/stats`` and ``tests/stores/test_rollup_arrays.py`` check the two agree.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from abharness.core.stats.bootstrap import _LEVELS, _POISSON1, BootstrapResult

__all__ = ["cluster_bootstrap_blas"]

# The same Poisson(1) table as ``poisson1`` as bytes (its values are 0..8): a one-byte gather, then one widening,
# costs half the float64 gather.
_POISSON1_U8 = _POISSON1.astype(np.uint8)
assert np.array_equal(_POISSON1_U8, _POISSON1)
_BLOCK = 8_192  # units per product: chunk x _BLOCK float64 weights (1 MiB at 16 resamples) stay in the cache


def _poisson1_u8(draws: np.ndarray) -> np.ndarray:
    """``_POISSON1_U8[draws]`` by Arrow's ``take`` (16-bit indices used as they are: 3x less CPU than numpy's
    fancy indexing, which first widens every index to 64 bits)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    flat = np.ascontiguousarray(draws).reshape(-1)
    got = pc.take(_table_u8(), pa.array(flat)).to_numpy(zero_copy_only=True)
    return got.reshape(draws.shape)


@functools.cache
def _table_u8() -> object:
    import pyarrow as pa

    return pa.array(_POISSON1_U8)


def _uint16_draws(rng: np.random.Generator, count: int) -> np.ndarray:
    """``rng.integers(0, _LEVELS, size=count, dtype=np.uint16)``: the same numbers, the generator left in the same
    state; through ``random_raw`` for PCG64 when this numpy draws as the module's docstring says."""
    if type(rng.bit_generator) is np.random.PCG64 and _raw_draws_match():
        return _raw_uint16(rng.bit_generator, count)
    return rng.integers(0, _LEVELS, size=count, dtype=np.uint16)


def _raw_uint16(bits: np.random.PCG64, count: int) -> np.ndarray:
    """``count`` 16-bit draws as ``Generator.integers`` makes them, from ``bits.random_raw``."""
    state = bits.state
    cached = bool(state["has_uint32"]) and count > 0  # the high half of an earlier 64-bit output, not handed out
    need32 = (count + 1) // 2 - cached  # 32-bit outputs still needed
    raw = bits.random_raw((need32 + 1) // 2)
    halves = raw.view(np.uint32)
    if cached:
        out = np.empty(2 * (need32 + 1), dtype=np.uint16)
        out32 = out.view(np.uint32)
        out32[0] = state["uinteger"]
        out32[1:] = halves[:need32]
        out = out[:count]
    else:
        out = raw.view(np.uint16)[:count]
    if need32 % 2 or cached:
        state = bits.state
        # an odd number of halves taken from the new outputs: the last one's high half is kept for later
        state["has_uint32"], state["uinteger"] = (1, int(halves[need32])) if need32 % 2 else (0, 0)
        bits.state = state
    return out


@functools.cache
def _raw_draws_match() -> bool:
    """Whether ``_raw_uint16`` gives ``Generator.integers``'s numbers and leaves the same state with this numpy
    (checked once per process, on call sizes that leave a half behind and take it back)."""
    want, got = np.random.Generator(np.random.PCG64(12345)), np.random.PCG64(12345)
    try:
        for count in (3, 5, 1, 4, 0, 6, 7, 2, 9, 3):
            if not np.array_equal(want.integers(0, _LEVELS, size=count, dtype=np.uint16), _raw_uint16(got, count)):
                return False
        return bool(want.random() == np.random.Generator(got).random())
    except Exception:  # noqa: BLE001 - any surprise: keep rng.integers
        return False


def cluster_bootstrap_blas(
    control: np.ndarray, treatment: np.ndarray, ratios: Sequence[tuple[int, int]], *, samples: int = 200,
    alpha: float = 0.05, rng: np.random.Generator, chunk: int = 16,
) -> list[BootstrapResult]:
    """``cluster_bootstrap`` (same arguments, same random draws, same results to rounding)."""
    if samples < 2:
        raise ValueError(f"samples must be >= 2, got {samples}")
    cols = sorted({i for pair in ratios for i in pair})
    sums = {}
    wide = np.empty((chunk, _BLOCK))
    with threadpool_limits(limits=1, user_api="blas"):
        for name, mat in (("c", control), ("t", treatment)):
            sub_t = np.ascontiguousarray(np.asarray(mat, dtype=float)[:, cols].T)  # (columns, units)
            units = sub_t.shape[1]
            out = np.empty((samples, len(cols)))
            for start in range(0, samples, chunk):
                b = min(chunk, samples - start)
                # exactly the draws of ``poisson1(rng, (b, units))``
                draws = _uint16_draws(rng, b * units).reshape(b, units)
                w = _poisson1_u8(draws)
                del draws
                acc = np.zeros((len(cols), b))
                for lo in range(0, units, _BLOCK):
                    hi = min(units, lo + _BLOCK)
                    block = wide[:b, :hi - lo]
                    np.copyto(block, w[:, lo:hi])
                    acc += sub_t[:, lo:hi] @ block.T
                out[start:start + b] = acc.T
                del w
            sums[name] = out
    pos = {c: j for j, c in enumerate(cols)}
    results = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for iy, ix in ratios:
            diff = (sums["t"][:, pos[iy]] / sums["t"][:, pos[ix]]) - (sums["c"][:, pos[iy]] / sums["c"][:, pos[ix]])
            diff = diff[np.isfinite(diff)]
            if diff.size < 2:
                results.append(BootstrapResult(samples, float("nan"), float("nan"), float("nan")))
                continue
            lo, hi = np.quantile(diff, [alpha / 2, 1 - alpha / 2])
            results.append(BootstrapResult(samples, float(diff.std(ddof=1)), float(lo), float(hi)))
    return results
