"""Sufficient statistics over randomisation units: count, column sums and the cross-product matrix.

Every test in :mod:`abharness.core.stats` that works on unit-level sums (delta method, CUPED, power) only needs
``n``, ``sum x_j`` and ``sum x_j x_l`` per arm. Those add up across shards or time slices of *disjoint* units, so
they can be computed anywhere (SQL, numpy, a map-reduce) and merged with ``+`` (Growthbook's gbstats takes the same
approach). Arrays may carry leading batch dimensions (e.g. 1,000 simulated experiments at once): ``n`` has shape
``B``, ``sums`` ``B + (d,)`` and ``cross`` ``B + (d, d)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Moments"]


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # einsum without BLAS: a multi-threaded BLAS on a busy machine was 10-30x slower and erratic for this shape
    return np.einsum("...ui,...uj->...ij", a, b, optimize=False)


@dataclass(frozen=True, eq=False)
class Moments:
    """n, column sums and cross-products of per-unit values for named columns (one row per unit)."""

    columns: tuple[str, ...]
    n: np.ndarray
    sums: np.ndarray
    cross: np.ndarray

    @classmethod
    def from_matrix(cls, columns: Sequence[str], values: np.ndarray, weights: np.ndarray | None = None) -> Moments:
        """Moments of ``values`` with shape ``batch + (units, d)``; column ``j`` is named ``columns[j]``.

        ``weights`` (shape ``batch + (units,)``) are frequency weights: 0/1 selects units (e.g. one arm of a
        simulated experiment), k counts a unit k times (a bootstrap resample).
        """
        x = np.asarray(values, dtype=float)
        if x.ndim < 2 or x.shape[-1] != len(columns):
            raise ValueError(f"values must have shape (..., units, {len(columns)}), got {x.shape}")
        if weights is None:
            n = np.full(x.shape[:-2], x.shape[-2], dtype=float)
            return cls(tuple(columns), n, x.sum(axis=-2), _cross(x, x))
        w = np.asarray(weights, dtype=float)
        if w.shape != x.shape[:-1]:
            raise ValueError(f"weights must have shape {x.shape[:-1]}, got {w.shape}")
        wx = x * w[..., None]
        return cls(tuple(columns), w.sum(axis=-1), wx.sum(axis=-2), _cross(wx, x))

    @classmethod
    def from_columns(cls, data: dict[str, np.ndarray]) -> Moments:
        """Moments of equally long 1-D arrays keyed by column name."""
        names = tuple(data)
        return cls.from_matrix(names, np.column_stack([np.asarray(data[c], dtype=float) for c in names]))

    @classmethod
    def empty(cls, columns: Sequence[str]) -> Moments:
        """Moments of zero units (the identity of ``+``)."""
        d = len(columns)
        return cls(tuple(columns), np.zeros(()), np.zeros(d), np.zeros((d, d)))

    def __add__(self, other: Moments) -> Moments:
        """Moments of the union of two *disjoint* sets of units."""
        if other.columns != self.columns:
            raise ValueError(f"cannot merge moments over {self.columns} with moments over {other.columns}")
        return Moments(self.columns, self.n + other.n, self.sums + other.sums, self.cross + other.cross)

    def index(self, name: str) -> int:
        """Position of column ``name``."""
        try:
            return self.columns.index(name)
        except ValueError:
            raise KeyError(f"column {name!r} not in moments; available: {', '.join(self.columns)}") from None

    def select(self, names: Sequence[str]) -> Moments:
        """Moments restricted (and reordered) to ``names``."""
        idx = [self.index(c) for c in names]
        return Moments(tuple(names), self.n, self.sums[..., idx], self.cross[..., idx, :][..., :, idx])

    def mean(self) -> np.ndarray:
        """Column means, shape ``batch + (d,)`` (nan when n = 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.sums / self.n[..., None]

    def cov(self) -> np.ndarray:
        """Sample covariance matrix of the columns across units (ddof = 1), shape ``batch + (d, d)``."""
        n = self.n[..., None, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            outer = self.sums[..., :, None] * self.sums[..., None, :] / n
            return (self.cross - outer) / (n - 1.0)
