"""Agreement of a candidate query encoder with the reference (torch) model, and single-query latency.

* cosine: per test query, the cosine of the two query embeddings; summarised by mean, minimum and 1st percentile.
* top-k overlap: per test query, |top-k(reference) ∩ top-k(candidate)| / k, where both rank the *same* document
  embeddings (the reference model's, i.e. what a flat index built by that model holds) by inner product; averaged.
* latency: each test query encoded alone (batch of one, as a proxy request without micro-batching), after a warm-up;
  p50 and p90 in milliseconds; all encoders timed in turns on each query so they share the machine's load.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from abharness.encoders.base import Encoder

__all__ = ["Agreement", "agreement", "topk_rows", "latency_ms"]


@dataclass(frozen=True)
class Agreement:
    """How closely a candidate encoder reproduces the reference on ``n_queries`` queries."""

    n_queries: int
    k: int
    cosine_mean: float
    cosine_min: float
    cosine_p01: float
    topk_overlap: float
    topk_overlap_min: float

    def to_dict(self) -> dict[str, Any]:
        return {key: (round(v, 6) if isinstance(v, float) else v) for key, v in asdict(self).items()}


def topk_rows(queries: np.ndarray, documents: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k best documents per query by inner product (ties broken by row index)."""
    scores = queries @ documents.T
    k = min(k, documents.shape[0])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def agreement(reference: np.ndarray, candidate: np.ndarray, documents: np.ndarray, *, k: int = 10) -> Agreement:
    """Compare query embeddings (n, dim) of the reference and the candidate against ``documents`` (m, dim)."""
    if reference.shape != candidate.shape or reference.ndim != 2 or len(reference) == 0:
        raise ValueError(f"reference {reference.shape} and candidate {candidate.shape} must be the same non-empty (n, dim)")
    ref = reference / np.clip(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12, None)
    cand = candidate / np.clip(np.linalg.norm(candidate, axis=1, keepdims=True), 1e-12, None)
    cos = np.sum(ref * cand, axis=1)
    top_ref, top_cand = topk_rows(reference, documents, k), topk_rows(candidate, documents, k)
    kk = top_ref.shape[1]
    overlap = np.array([len(set(a.tolist()) & set(b.tolist())) / kk for a, b in zip(top_ref, top_cand)])
    return Agreement(
        n_queries=len(reference), k=kk, cosine_mean=float(cos.mean()), cosine_min=float(cos.min()),
        cosine_p01=float(np.percentile(cos, 1)), topk_overlap=float(overlap.mean()), topk_overlap_min=float(overlap.min()),
    )


def latency_ms(encoders: Mapping[str, Encoder], texts: Sequence[str], *, warmup: int = 10) -> dict[str, dict[str, float]]:
    """p50/p90 (milliseconds) of encoding each text alone, per encoder. The encoders take turns on every text
    (round-robin, starting with a different one each time), so on a shared machine they see the same load."""
    names = list(encoders)
    for text in list(texts)[:warmup]:
        for name in names:
            encoders[name].encode([text], batch_size=1)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i, text in enumerate(texts):
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            t0 = time.perf_counter()
            encoders[name].encode([text], batch_size=1)
            times[name].append((time.perf_counter() - t0) * 1000.0)
    return {
        name: {"p50_ms": round(float(np.percentile(t, 50)), 3), "p90_ms": round(float(np.percentile(t, 90)), 3)}
        for name, t in times.items()
    }
