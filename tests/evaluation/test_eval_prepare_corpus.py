"""``Context.prepare_corpus``: both models' corpus embeddings are encoded side by side, once, before ranking."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from abharness.data import load_beir
from abharness.encoders import SentenceTransformerEncoder
from abharness.evaluation import load_suite
from abharness.evaluation.context import Context


class _TorchStandIn:
    """Stands in for a SentenceTransformer model: hashing vectors, records the thread of each batch."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.threads: list[str] = []
        self.texts = 0

    def get_embedding_dimension(self) -> int:
        return self.inner.dim

    def __len__(self) -> int:
        return 0

    def encode(self, batch: list[str], **kw: object) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        self.texts += len(batch)
        return self.inner.encode(batch)


def test_prepare_corpus_encodes_both_roles_side_by_side_then_ranking_encodes_no_document(
    mini_data: Path, hash_encoder, eval_cache: Path
) -> None:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        stand_ins = {r: _TorchStandIn(hash_encoder(r, seed=i)) for i, r in enumerate(("baseline", "candidate"))}
        models = {r: SentenceTransformerEncoder(m, name=r, fingerprint=m.inner.fingerprint)
                  for r, m in stand_ins.items()}
        ctx = Context(suite=load_suite(None), data_dir=mini_data, models=models, progress=False)
        ds = load_beir(mini_data / "cranfield", "test", empty_docs="keep")
        ctx.prepare_corpus(ds)
        for m in stand_ins.values():
            assert m.texts == len(ds.corpus)
            assert len(set(m.threads)) == 1 and m.threads[0].startswith("encode-side-by-side")
        assert stand_ins["baseline"].threads[0] != stand_ins["candidate"].threads[0]
        for m in stand_ins.values():
            m.texts = 0
        ctx.prepare_corpus(ds)  # memoised: nothing to do
        runs = {r: ctx.rank(r, ds, 10) for r in models}
        assert all(m.texts == len(ds.queries) for m in stand_ins.values())  # queries only, no document again
        for role in models:
            ids, vectors = ctx.corpus_embeddings(role, ds)
            assert ids == list(ds.corpus)
            np.testing.assert_allclose(vectors, stand_ins[role].inner.encode([ds.corpus[d].full_text for d in ids]),
                                       atol=1e-6)
            assert len(runs[role]) == len(ds.queries)
        # a fresh run over the same cache: the evaluation indexes exist, so nothing is encoded for them
        fresh = Context(suite=load_suite(None), data_dir=mini_data, models=models, progress=False)
        for m in stand_ins.values():
            m.texts = 0
        fresh.prepare_corpus(ds)
        assert all(m.texts == 0 for m in stand_ins.values())
    finally:
        torch.set_num_threads(before)
