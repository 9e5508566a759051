"""Training examples for contrastive fine-tuning: qrels pairs, mined hard negatives, duplicate-free batches."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from abharness.data.types import RetrievalDataset
from abharness.encoders.base import Encoder
from abharness.encoders.cache import encode_cached
from abharness.errors import ConfigError, DataError

__all__ = ["Example", "training_pairs", "mine_hard_negatives", "duplicate_free_batches"]


@dataclass(frozen=True, slots=True)
class Example:
    query_id: str
    doc_id: str
    negative_ids: tuple[str, ...] = ()


def training_pairs(ds: RetrievalDataset, *, max_pairs: int | None = None, seed: int = 0) -> list[Example]:
    """One (query, relevant document) example per qrels row with score > 0, sorted by ids.

    With ``max_pairs`` a seeded random subset is kept (for quick runs and tests)."""
    examples = [
        Example(qid, did)
        for qid in sorted(ds.qrels)
        for did, score in sorted(ds.qrels[qid].items())
        if score > 0 and qid in ds.queries
    ]
    if not examples:
        raise DataError(f"{ds.path}: split {ds.split!r} has no relevant (score > 0) judgements to train on")
    if max_pairs is not None:
        if max_pairs < 2:
            raise ConfigError(f"max_pairs={max_pairs}; contrastive training needs at least 2 pairs")
        if max_pairs < len(examples):
            examples = sorted(random.Random(seed).sample(examples, max_pairs), key=lambda e: (e.query_id, e.doc_id))
    return examples


def mine_hard_negatives(
    encoder: Encoder,
    ds: RetrievalDataset,
    examples: Sequence[Example],
    *,
    per_pair: int = 1,
    rank_range: tuple[int, int] = (3, 30),
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
) -> list[Example]:
    """Attach ``per_pair`` hard negatives to each example: documents the *base* model ranks between
    ``rank_range[0]`` and ``rank_range[1]`` (0-based, exclusive end) for the query that are not judged relevant.

    Skipping the very top ranks lowers the chance of picking an unjudged relevant document as a negative (a known
    hazard of mining on sparsely judged sets such as SciFact). Corpus embeddings are cached per model and corpus.
    """
    low, high = rank_range
    if per_pair < 1 or not 0 <= low < high:
        raise ConfigError(f"per_pair={per_pair}, rank_range={rank_range}: need per_pair >= 1 and 0 <= start < end")
    doc_ids = list(ds.corpus)
    doc_vectors = encode_cached(
        encoder, [ds.corpus[d].full_text for d in doc_ids], key=f"corpus-{ds.corpus_hash[:16]}",
        batch_size=batch_size, progress=progress, kind="document",
    )
    query_ids = sorted({e.query_id for e in examples})
    query_vectors = encoder.encode([ds.queries[q] for q in query_ids], batch_size=batch_size, kind="query")
    top = np.argsort(-(query_vectors @ doc_vectors.T), axis=1)[:, : min(high, len(doc_ids))]
    candidates: dict[str, list[str]] = {}
    for row, qid in enumerate(query_ids):
        relevant = set(ds.qrels[qid])
        candidates[qid] = [doc_ids[j] for j in top[row][low:] if doc_ids[j] not in relevant]
    rng = random.Random(seed)
    mined = []
    for example in examples:
        pool = candidates[example.query_id]
        if len(pool) < per_pair:
            raise DataError(
                f"query {example.query_id!r}: only {len(pool)} negative candidates in ranks {low}-{high}; widen rank_range"
            )
        mined.append(Example(example.query_id, example.doc_id, tuple(rng.sample(pool, per_pair))))
    return mined


def duplicate_free_batches(examples: Sequence[Example], batch_size: int, rng: random.Random) -> list[list[Example]]:
    """Shuffle and cut into batches in which no query and no document appears twice.

    With in-batch negatives a repeated document (or a second positive of the same query) would be scored as a
    negative of itself; this is the greedy scheme of sentence-transformers' NoDuplicatesBatchSampler. Batches with
    fewer than two examples are dropped (they carry no in-batch negative).
    """
    if batch_size < 2:
        raise ConfigError(f"batch_size={batch_size}; in-batch negatives need batch_size >= 2")
    pending = list(examples)
    rng.shuffle(pending)
    batches: list[list[Example]] = []
    while pending:
        batch: list[Example] = []
        seen: set[str] = set()
        rest: list[Example] = []
        for example in pending:
            keys = {"q:" + example.query_id, "d:" + example.doc_id, *("d:" + n for n in example.negative_ids)}
            if len(batch) < batch_size and not keys & seen:
                batch.append(example)
                seen |= keys
            else:
                rest.append(example)
        batches.append(batch)
        pending = rest
    return [b for b in batches if len(b) >= 2]
