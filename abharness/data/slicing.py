"""Small, consistent slices of a retrieval data set for tests and quick demos."""

from __future__ import annotations

import random

from abharness.data.hashing import corpus_hash
from abharness.data.types import RetrievalDataset
from abharness.errors import ConfigError

__all__ = ["slice_dataset"]


def slice_dataset(ds: RetrievalDataset, n_queries: int, n_distractors: int, seed: int = 0) -> RetrievalDataset:
    """A seeded sub-collection: ``n_queries`` judged queries, every document they judge, plus ``n_distractors``
    other documents drawn at random from the rest of the corpus.

    Consistent by construction: every qrels id of the slice is in its corpus and queries. Deterministic for a given
    (dataset, n_queries, n_distractors, seed). ``corpus_hash`` is recomputed for the slice.
    """
    if n_queries < 1:
        raise ConfigError(f"n_queries={n_queries}: a slice needs at least one query")
    if n_distractors < 0:
        raise ConfigError(f"n_distractors={n_distractors}: must be >= 0")
    rng = random.Random(seed)
    judged = sorted(qid for qid in ds.qrels if qid in ds.queries)
    picked = sorted(rng.sample(judged, min(n_queries, len(judged))))
    relevant = sorted({doc_id for qid in picked for doc_id in ds.qrels[qid]})
    others = sorted(set(ds.corpus) - set(relevant))
    distractors = rng.sample(others, min(n_distractors, len(others)))
    keep = set(relevant) | set(distractors)
    corpus = {doc_id: doc for doc_id, doc in ds.corpus.items() if doc_id in keep}
    return RetrievalDataset(
        name=f"{ds.name}-slice{len(picked)}q{len(corpus)}d",
        path=ds.path,
        split=ds.split,
        corpus=corpus,
        queries={qid: ds.queries[qid] for qid in picked},
        qrels={qid: dict(ds.qrels[qid]) for qid in picked},
        corpus_hash=corpus_hash(corpus),
        meta={**ds.meta, "slice_of": ds.name, "slice_seed": str(seed)},
    )
