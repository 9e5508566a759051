"""Embedding geometry: alignment, uniformity and anisotropy. Pure numpy.

Reference: Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and Uniformity on
the Hypersphere", ICML 2020. Both quantities are defined on L2-normalised embeddings; lower is better for each.
"""

from __future__ import annotations

import numpy as np

from abharness.errors import ConfigError

__all__ = ["alignment", "uniformity", "anisotropy", "normalize_rows"]


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def alignment(x: np.ndarray, y: np.ndarray, *, alpha: float = 2.0) -> float:
    """L_align = E_{(x, y) ~ positive pairs} ||f(x) - f(y)||_2^alpha (Wang & Isola 2020, eq. 4; alpha = 2).

    ``x[i]`` and ``y[i]`` are the embeddings of the i-th positive pair; rows are L2-normalised here.
    Range [0, 2**alpha]; 0 means positives coincide.
    """
    a, b = normalize_rows(x), normalize_rows(y)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] == 0:
        raise ConfigError(f"alignment needs two (n, d) arrays of positive pairs with n >= 1, got {a.shape}, {b.shape}")
    return float(np.mean(np.linalg.norm(a - b, axis=1) ** alpha))


def uniformity(x: np.ndarray, *, t: float = 2.0, max_points: int = 4000, seed: int = 0) -> float:
    """L_uniform = log E_{x, y ~ data, x != y} exp(-t ||f(x) - f(y)||_2^2) (Wang & Isola 2020, eq. 5; t = 2).

    Computed over all distinct pairs of the rows (a seeded sample of ``max_points`` rows when there are more),
    with a log-sum-exp for stability. Range [-4t, 0] on the sphere; more negative = more uniform.
    """
    a = normalize_rows(x)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ConfigError(f"uniformity needs at least 2 embeddings, got shape {a.shape}")
    if a.shape[0] > max_points:
        a = a[np.random.default_rng(seed).choice(a.shape[0], max_points, replace=False)]
    sq = np.clip(2.0 - 2.0 * (a @ a.T), 0.0, 4.0)  # ||u - v||^2 for unit vectors
    iu = np.triu_indices(a.shape[0], k=1)
    z = -t * sq[iu]
    m = z.max()
    return float(m + np.log(np.mean(np.exp(z - m))))


def anisotropy(x: np.ndarray, *, n_pairs: int = 5000, seed: int = 0) -> float:
    """Mean cosine similarity of random distinct pairs of rows (Ethayarajh 2019): near 0 = isotropic,
    near 1 = all embeddings crowd into a narrow cone. Pairs are drawn with a seeded generator."""
    a = normalize_rows(x)
    n = a.shape[0]
    if n < 2:
        raise ConfigError(f"anisotropy needs at least 2 embeddings, got {n}")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=n_pairs)
    j = rng.integers(0, n - 1, size=n_pairs)
    j = j + (j >= i)  # distinct partner, uniform over the others
    return float(np.mean(np.sum(a[i] * a[j], axis=1)))
