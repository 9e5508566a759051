"""Leakage: did the candidate see the test queries (or their relevant documents) while it was fine-tuned?

Pure: the caller supplies the test split, what the fine-tuning manifest recorded, and (for near duplicates)
embeddings of the test and training queries. Matches are

* **exact**: the sha256 of the normalised test query text (``abharness.data.hashing.text_sha256``: NFKC,
  case-folded, whitespace collapsed) is among the manifest's ``query_texts_sha256``;
* **near**: the cosine between the test query and some training query is >= the threshold (embeddings from the
  *baseline* model, an independent judge the fine-tuning did not move);
* **documents**: a test query's relevant documents appear among the manifest's training documents. This is
  reported, not failed on: collections often share documents between splits legitimately.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from abharness.data.hashing import text_sha256

__all__ = ["LeakCase", "LeakageResult", "find_leaks", "manifest_field"]


@dataclass(frozen=True, slots=True)
class LeakCase:
    query_id: str
    query: str
    kind: str  # "exact" | "near"
    train_query_id: str | None = None
    train_query: str | None = None
    cosine: float | None = None


@dataclass(frozen=True)
class LeakageResult:
    n_test_queries: int
    exact: tuple[LeakCase, ...]
    near: tuple[LeakCase, ...]
    leaked_query_ids: tuple[str, ...]
    doc_overlap_queries: tuple[str, ...]
    doc_overlap_docs: int
    threshold_cosine: float
    max_leaked_fraction: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def leaked_fraction(self) -> float:
        return len(self.leaked_query_ids) / self.n_test_queries if self.n_test_queries else 0.0

    @property
    def failed(self) -> bool:
        return self.leaked_fraction > self.max_leaked_fraction


def manifest_field(manifest: Any, name: str, default: Any = None) -> Any:
    """A manifest value whether the manifest is a dataclass/object or a plain mapping."""
    if manifest is None:
        return default
    if isinstance(manifest, Mapping):
        return manifest.get(name, default)
    return getattr(manifest, name, default)


def find_leaks(
    test_queries: Mapping[str, str],
    test_qrels: Mapping[str, Mapping[str, int]],
    *,
    train_text_hashes: Iterable[str],
    train_doc_ids: Iterable[str] = (),
    train_queries: Sequence[tuple[str, str]] = (),
    test_embeddings: np.ndarray | None = None,
    train_embeddings: np.ndarray | None = None,
    near_duplicate_cosine: float = 0.95,
    max_leaked_fraction: float = 0.0,
) -> LeakageResult:
    """Find test queries that were (nearly) trained on, and test relevant documents seen in training.

    ``test_embeddings`` rows follow ``test_queries`` order; ``train_embeddings`` rows follow ``train_queries``
    ((id, text) pairs). Without embeddings only exact matches are searched (noted in ``notes``).
    """
    hashes = set(train_text_hashes)
    qids = list(test_queries)
    exact = tuple(
        LeakCase(q, test_queries[q], "exact") for q in qids if text_sha256(test_queries[q]) in hashes
    )
    exact_ids = {c.query_id for c in exact}
    notes: list[str] = []
    near: list[LeakCase] = []
    if test_embeddings is not None and train_embeddings is not None and len(train_queries) and len(qids):
        t = test_embeddings / np.linalg.norm(test_embeddings, axis=1, keepdims=True)
        r = train_embeddings / np.linalg.norm(train_embeddings, axis=1, keepdims=True)
        best_j = np.empty(len(qids), dtype=np.int64)
        best_cos = np.empty(len(qids))
        for start in range(0, len(qids), 1024):
            sims = t[start : start + 1024] @ r.T
            best_j[start : start + 1024] = sims.argmax(axis=1)
            best_cos[start : start + 1024] = sims.max(axis=1)
        for i, q in enumerate(qids):
            if q not in exact_ids and best_cos[i] >= near_duplicate_cosine:
                tid, ttext = train_queries[int(best_j[i])]
                near.append(LeakCase(q, test_queries[q], "near", tid, ttext, float(best_cos[i])))
        near.sort(key=lambda c: -(c.cosine or 0.0))
    else:
        notes.append("near-duplicate search skipped: training query texts or embeddings unavailable")
    docs = set(train_doc_ids)
    overlap_queries = [q for q in qids if any(d in docs for d, g in test_qrels.get(q, {}).items() if g > 0)]
    overlap_docs = {d for q in qids for d, g in test_qrels.get(q, {}).items() if g > 0 and d in docs}
    leaked = tuple(sorted(exact_ids | {c.query_id for c in near}))
    return LeakageResult(
        n_test_queries=len(qids),
        exact=exact,
        near=tuple(near),
        leaked_query_ids=leaked,
        doc_overlap_queries=tuple(overlap_queries),
        doc_overlap_docs=len(overlap_docs),
        threshold_cosine=near_duplicate_cosine,
        max_leaked_fraction=max_leaked_fraction,
        notes=tuple(notes),
    )
