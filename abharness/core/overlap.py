"""Ranking overlap between two arms' result lists (pure).

- ``jaccard_at_k(a, b, k)`` = |A_k ∩ B_k| / |A_k ∪ B_k| over the top-k sets (1.0 when both are empty).
- Rank-biased overlap (Webber, Moffat & Zobel, "A similarity measure for indefinite rankings", ACM TOIS 28(4),
  2010). With X_d = |S_{:d} ∩ T_{:d}| the overlap of the two prefixes at depth d and A_d = X_d / d the agreement,

      RBO(S, T, p) = (1 - p) * sum_{d >= 1} p^(d-1) * A_d,

  a weighted average of the agreements in which depth d has weight (1-p) p^(d-1); the top d ranks carry
  1 - p^d of the weight (p = 0.9: the top 10 carry 65%). Lists seen only to depth k give bounds:

  * ``rbo_min`` (eq. 11): assumes no further overlap beyond the seen prefix,
      RBO_min = (1-p)/p * ( sum_{d=1}^{k} (X_d - X_k) p^d / d  -  X_k ln(1 - p) ).
  * ``rbo_max``: assumes every unseen item matches as early as possible (``rbo_min`` + residual, eq. 13).
  * ``rbo_ext`` (eq. 32, the point estimate we report): extrapolates the agreement at the last seen depth.
    For S the shorter list (length s) and L the longer (length l), with X_d for d > s counting S ∩ L_{:d},

      RBO_ext = (1-p)/p * ( sum_{d=1}^{l} X_d/d p^d + sum_{d=s+1}^{l} X_s (d - s)/(s d) p^d )
                + ( (X_l - X_s)/l + X_s/s ) p^l.

  Identical lists give 1, disjoint lists 0; rbo_min <= rbo_ext <= rbo_max.

Lists must not repeat an id (a ranking); a repeated id raises ``ConfigError``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from abharness.errors import ConfigError

__all__ = ["jaccard_at_k", "rbo_ext", "rbo_min", "rbo_max", "overlap_at_depths"]


def _check(ranking: Sequence[str], name: str) -> None:
    if len(set(ranking)) != len(ranking):
        raise ConfigError(f"{name} repeats a document id ({list(ranking)!r}); a ranking lists each document once")


def _check_p(p: float) -> None:
    if not (0.0 < p < 1.0):
        raise ConfigError(f"RBO persistence p must lie strictly between 0 and 1, got {p}; 0.9 is customary")


def jaccard_at_k(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """|A_k ∩ B_k| / |A_k ∪ B_k| of the top-k sets; 1.0 when both are empty."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    sa, sb = set(a[:k]), set(b[:k])
    union = sa | sb
    return 1.0 if not union else len(sa & sb) / len(union)


def overlap_at_depths(s: Sequence[str], t: Sequence[str], depth: int) -> list[int]:
    """X_1..X_depth: overlap of the prefixes; past the end of a list its full set takes part."""
    seen_s: set[str] = set()
    seen_t: set[str] = set()
    x = 0
    out = []
    for d in range(depth):
        a = s[d] if d < len(s) else None
        b = t[d] if d < len(t) else None
        if a is not None and b is not None and a == b:
            x += 1
        else:
            if a is not None and a in seen_t:
                x += 1
            if b is not None and b in seen_s:
                x += 1
        if a is not None:
            seen_s.add(a)
        if b is not None:
            seen_t.add(b)
        out.append(x)
    return out


def rbo_ext(s: Sequence[str], t: Sequence[str], p: float = 0.9) -> float:
    """Extrapolated rank-biased overlap RBO_ext (Webber et al. 2010, eq. 32); lists may differ in length."""
    _check_p(p)
    _check(s, "first ranking")
    _check(t, "second ranking")
    if len(s) > len(t):
        s, t = t, s
    sl, ll = len(s), len(t)
    if ll == 0:
        return 1.0
    if sl == 0:
        return 0.0
    x = overlap_at_depths(s, t, ll)
    xs, xl = x[sl - 1], x[ll - 1]
    total = sum(x[d - 1] / d * p**d for d in range(1, ll + 1))
    total += sum(xs * (d - sl) / (sl * d) * p**d for d in range(sl + 1, ll + 1))
    return float((1 - p) / p * total + ((xl - xs) / ll + xs / sl) * p**ll)


def rbo_min(s: Sequence[str], t: Sequence[str], p: float = 0.9) -> float:
    """Lower bound RBO_min at depth k = min(len(s), len(t)) (Webber et al. 2010, eq. 11)."""
    _check_p(p)
    _check(s, "first ranking")
    _check(t, "second ranking")
    k = min(len(s), len(t))
    if k == 0:
        return 0.0
    x = overlap_at_depths(s[:k], t[:k], k)
    xk = x[-1]
    total = sum((x[d - 1] - xk) * p**d / d for d in range(1, k + 1)) - xk * math.log(1 - p)
    return float((1 - p) / p * total)


def rbo_max(s: Sequence[str], t: Sequence[str], p: float = 0.9, tol: float = 1e-15) -> float:
    """Upper bound at depth k = min(len(s), len(t)): RBO_min plus the residual (Webber et al. 2010, eq. 13).

    Beyond depth k each new pair of items is assumed to match items already seen in the other list, so the
    overlap grows by 2 per depth until it reaches d; the tail sum is evaluated until p^d < tol.
    """
    _check_p(p)
    k = min(len(s), len(t))
    if k == 0:
        return 1.0
    x = overlap_at_depths(s[:k], t[:k], k)
    xk = x[-1]
    lo = rbo_min(s, t, p)
    extra = 0.0
    d = k + 1
    while p**d >= tol:
        best = min(d, xk + 2 * (d - k))
        extra += (best - xk) / d * p**d
        d += 1
    return float(min(1.0, lo + (1 - p) / p * extra))
