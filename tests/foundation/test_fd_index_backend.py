"""FAISS indexes on a SciFact slice, the fingerprint refusal, the local backend (micro-batching, LRU), retrieval."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from abharness.backends.base import SearchBackend
from abharness.backends.local import LocalBackend, open_local_backend
from abharness.backends.retrieval import search
from abharness.core.hits import Hit
from abharness.errors import BackendError, ConfigError, FingerprintMismatch, IndexError_
from abharness.index import build_index, load_index, read_index_manifest


def _recall_at(hits: list[list[Hit]], qids: list[str], qrels, k: int) -> float:
    per_query = []
    for qid, row in zip(qids, hits):
        relevant = {d for d, s in qrels[qid].items() if s > 0}
        per_query.append(len(relevant & {h.doc_id for h in row[:k]}) / len(relevant))
    return float(np.mean(per_query))


@pytest.fixture(scope="module")
def emb_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="module")
def minilm_flat(tmp_path_factory, minilm, scifact_slice, emb_cache: Path) -> Path:
    out = tmp_path_factory.mktemp("idx") / "flat"
    build_index(minilm, scifact_slice, out, progress=False, cache_dir=emb_cache)
    return out


@pytest.mark.model
def test_flat_index_manifest_and_sensible_topk(minilm_flat: Path, minilm, scifact_slice) -> None:
    manifest = read_index_manifest(minilm_flat)
    assert manifest.model_fingerprint == minilm.fingerprint
    assert manifest.corpus_hash == scifact_slice.corpus_hash
    assert (manifest.dim, manifest.kind, manifest.metric) == (384, "flat", "inner_product")
    assert manifest.num_docs == len(scifact_slice.corpus)
    assert len(manifest.index_fingerprint) == 16 and manifest.built_at
    index = load_index(minilm_flat, minilm)
    qids = list(scifact_slice.queries)
    hits = index.search_vectors(minilm.encode([scifact_slice.queries[q] for q in qids]), 10)
    assert all(len(row) == 10 for row in hits)
    assert all(row[i].score >= row[i + 1].score for row in hits for i in range(9))
    assert all(row[0].title == scifact_slice.corpus[row[0].doc_id].title for row in hits)
    # 30 real claims against 200 abstracts: MiniLM puts most cited abstracts in the top 10 (measured ~0.9)
    assert _recall_at(hits, qids, scifact_slice.qrels, 10) >= 0.75
    # a document's own text finds that document first
    doc_id = next(iter(scifact_slice.corpus))
    own = index.search_vectors(minilm.encode([scifact_slice.corpus[doc_id].full_text]), 1)
    assert own[0][0].doc_id == doc_id and own[0][0].score == pytest.approx(1.0, abs=1e-3)


@pytest.mark.model
@pytest.mark.parametrize(("kind", "min_overlap"), [("hnsw", 0.95), ("ivf", 0.8)])
def test_approximate_indexes_agree_with_flat(
    tmp_path, minilm, scifact_slice, minilm_flat, emb_cache, kind, min_overlap
) -> None:
    manifest = build_index(minilm, scifact_slice, tmp_path / kind, kind=kind, progress=False, cache_dir=emb_cache)
    assert manifest.kind == kind and manifest.params
    exact = load_index(minilm_flat, minilm)
    approx = load_index(tmp_path / kind, minilm)
    q = minilm.encode(list(scifact_slice.queries.values()))
    overlap = [
        len({h.doc_id for h in a} & {h.doc_id for h in e}) / 10
        for a, e in zip(approx.search_vectors(q, 10), exact.search_vectors(q, 10))
    ]
    assert np.mean(overlap) >= min_overlap


@pytest.mark.model
def test_fingerprint_mismatch_is_refused(minilm_flat: Path, bow) -> None:
    with pytest.raises(FingerprintMismatch, match=r"built with model 'minilm' \(fingerprint [0-9a-f]{16}\) but model 'bow'"):
        load_index(minilm_flat, bow)
    index = load_index(minilm_flat)  # no encoder: nothing to check (e.g. `index info`)
    with pytest.raises(FingerprintMismatch):
        LocalBackend(index, bow)


def test_index_dir_errors(tmp_path: Path, bow, scifact_slice) -> None:
    with pytest.raises(IndexError_, match="is not an abharness index"):
        load_index(tmp_path, bow)
    out = tmp_path / "bow"
    build_index(bow, scifact_slice, out, progress=False)
    with pytest.raises(ConfigError, match="exists and is not empty"):
        build_index(bow, scifact_slice, out, progress=False)
    build_index(bow, scifact_slice, out, progress=False, overwrite=True)
    with pytest.raises(ConfigError, match="unknown index kind 'lsh'"):
        build_index(bow, scifact_slice, tmp_path / "x", kind="lsh", progress=False)
    (out / "doc_ids.jsonl").write_text("{oops\n", encoding="utf-8")
    with pytest.raises(IndexError_, match=r"doc_ids\.jsonl:1: malformed row"):
        load_index(out, bow)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["corpus_hash"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexError_, match="missing keys corpus_hash"):
        load_index(out, bow)


@pytest.fixture
def bow_backend(tmp_path: Path, bow, scifact_slice):
    build_index(bow, scifact_slice, tmp_path / "bow", progress=False)
    backend = LocalBackend(load_index(tmp_path / "bow", bow), bow, cache_size=3, max_batch=32, max_wait_ms=50)
    yield backend
    backend.close()


def test_backend_matches_direct_search_and_caches(bow_backend: LocalBackend, bow, scifact_slice) -> None:
    assert isinstance(bow_backend, SearchBackend)
    queries = list(scifact_slice.queries.values())[:5]
    direct = bow_backend.index.search_vectors(bow.encode(queries), 5)
    bow.calls.clear()
    assert bow_backend.search(queries, 5) == direct
    assert bow.calls == [5]
    assert bow_backend.search(queries[4:] * 3, 5) == [direct[4]] * 3  # cached: no encode
    assert bow.calls == [5]
    stats = bow_backend.cache_stats()
    assert stats.size == 3 and stats.hits == 3  # LRU bounded at cache_size=3
    assert bow_backend.search(queries[:1], 5) == direct[:1]  # evicted (only the 3 most recent kept) -> encoded again
    assert bow.calls == [5, 1]
    assert bow_backend.info.num_docs == len(scifact_slice.corpus) and bow_backend.info.dim == bow.dim


def test_concurrent_queries_are_micro_batched(tmp_path: Path, bow, scifact_slice) -> None:
    """Eight concurrent single-query searches are encoded in one forward pass: with max_batch=8 the batcher
    closes the batch as soon as the eighth text arrives (the long max_wait only bounds a stuck test)."""
    build_index(bow, scifact_slice, tmp_path / "i", progress=False)
    bow.calls.clear()
    backend = LocalBackend(load_index(tmp_path / "i", bow), bow, max_batch=8, max_wait_ms=20_000)
    words = "cells genes drugs mice tumour virus brain heart".split()
    queries = [f"query number {i} about {w}" for i, w in enumerate(words)]
    results: dict[int, list[Hit]] = {}
    start = threading.Barrier(8)

    def run(i: int) -> None:
        start.wait()
        results[i] = backend.search([queries[i]], 5)[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    backend.close()
    assert bow.calls == [8]
    assert backend.cache_stats().batches == 1
    assert [results[i] for i in range(8)] == backend.index.search_vectors(bow.encode(queries), 5)


def test_bad_arguments(bow_backend: LocalBackend) -> None:
    with pytest.raises(ConfigError, match="k=0"):
        bow_backend.search(["x"], 0)
    with pytest.raises(ConfigError, match="not one string"):
        bow_backend.search("x", 3)
    assert bow_backend.search([], 3) == []


def test_encoder_failure_reaches_every_caller(tmp_path: Path, bow, scifact_slice) -> None:
    build_index(bow, scifact_slice, tmp_path / "i", progress=False)
    backend = LocalBackend(load_index(tmp_path / "i", bow), bow, max_wait_ms=1)

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    bow.encode = broken  # type: ignore[method-assign]
    try:
        with pytest.raises(BackendError, match="query encoding failed: out of memory"):
            backend.search(["anything"], 3)
    finally:
        backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.search(["anything"], 3)


def test_retrieval_search_batches_and_checks_answers(bow_backend: LocalBackend, scifact_slice) -> None:
    queries = list(scifact_slice.queries.values())[:7]
    seen: list[int] = []

    class Recording:
        info = bow_backend.info

        def search(self, qs, k):
            seen.append(len(qs))
            return bow_backend.search(qs, k)

        def close(self) -> None:
            pass

    assert search(Recording(), queries, 4, batch_size=3) == bow_backend.search(queries, 4)
    assert seen == [3, 3, 1]

    class Short(Recording):
        def search(self, qs, k):
            return bow_backend.search(qs, k)[:-1]

    with pytest.raises(BackendError, match="answered 2 result lists for 3 queries"):
        search(Short(), queries[:3], 4)
    with pytest.raises(ConfigError):
        search(Recording(), queries, 0)


@pytest.mark.model
def test_open_local_backend_uses_manifest_model(minilm_flat: Path, scifact_slice) -> None:
    with open_local_backend(minilm_flat) as backend:
        hits = search(backend, list(scifact_slice.queries.values())[:2], 3)
    assert [len(h) for h in hits] == [3, 3]
