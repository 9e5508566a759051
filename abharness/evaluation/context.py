"""What every check needs while the suite runs: the two encoders, the data directory, a memoised and disk-cached
``embed`` and the one shared ranking path. Adapters only; the maths is in ``checks``/``retrieval``/``geometry``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from abharness.data.types import RetrievalDataset
from abharness.encoders.base import Encoder
from abharness.errors import DataError
from abharness.evaluation.suite import Suite

__all__ = ["Context", "ROLES"]

ROLES = ("baseline", "candidate")


def _texts_key(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for t in texts:
        digest.update(t.encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]


@dataclass
class Context:
    """Mutable state of one evaluation run (not shared across runs)."""

    suite: Suite
    data_dir: Path
    models: dict[str, Encoder]
    cache_dir: Path | None = None
    progress: bool = True
    console: Console = field(default_factory=lambda: Console(stderr=True))
    manifest: Any = None
    memo: dict[Any, Any] = field(default_factory=dict)

    def dataset_dir(self, name: str) -> Path:
        path = self.data_dir / name
        if not path.exists():
            raise DataError(
                f"data set {name!r} not found at {path}; pass --data-root DIR whose sub-folders hold the data sets "
                "named in the suite, or disable that check in the suite file"
            )
        return path

    def embed(self, role: str, texts: Sequence[str], *, key: str, kind: str = "query") -> np.ndarray:
        """Unit-norm embeddings of ``texts`` by the ``role`` model; duplicates are encoded once, results are
        memoised for this run and cached on disk per (model fingerprint, key, texts) by ``encode_cached``."""
        from abharness.encoders.cache import encode_cached

        texts = list(texts)
        memo_key = (role, kind, key, _texts_key(texts))
        if memo_key in self.memo:
            return self.memo[memo_key]
        unique = sorted(set(texts))
        where = {t: i for i, t in enumerate(unique)}
        vectors = encode_cached(
            self.models[role], unique, key=key, cache_dir=self.cache_dir, batch_size=self.suite.batch_size,
            progress=self.progress and len(unique) >= 200, kind=kind,
        )
        out = vectors[[where[t] for t in texts]] if unique else np.zeros((0, self.models[role].dim), np.float32)
        self.memo[memo_key] = out
        return out

    def corpus_embeddings(self, role: str, ds: RetrievalDataset) -> tuple[list[str], np.ndarray]:
        """(doc ids, unit-norm document embeddings) in corpus order, from the same cache entry the index
        builder uses (``encode_cached`` key ``corpus-<hash>``), so a corpus is encoded once per model."""
        from abharness.data.hashing import corpus_hash
        from abharness.encoders.cache import encode_cached

        memo_key = ("corpus", role, ds.name, ds.corpus_hash)
        if memo_key not in self.memo:
            digest = ds.corpus_hash or corpus_hash(ds.corpus)
            doc_ids = list(ds.corpus)
            vectors = encode_cached(
                self.models[role], [ds.corpus[d].full_text for d in doc_ids], key=f"corpus-{digest[:16]}",
                cache_dir=self.cache_dir, batch_size=self.suite.batch_size, progress=self.progress, kind="document",
            )
            self.memo[memo_key] = (doc_ids, vectors)
        return self.memo[memo_key]

    def prepare_corpus(self, ds: RetrievalDataset) -> None:
        """Encode ``ds``'s corpus for every role that will need it (no memoised embeddings, no evaluation index on
        disk) in one go, the two models side by side (``encode_cached_side_by_side``), into the cache entries
        ``corpus_embeddings`` reads; the embeddings are then memoised. Nothing to do when at most one role needs it
        and that role's later ``corpus_embeddings`` call is as fast."""
        from abharness.data.hashing import corpus_hash
        from abharness.encoders.cache import encode_cached_side_by_side

        digest = ds.corpus_hash or corpus_hash(ds.corpus)
        roles = [r for r in self.models if ("corpus", r, ds.name, ds.corpus_hash) not in self.memo
                 and not self._index_path(r, ds).is_dir()]
        if len(roles) < 2:
            return
        doc_ids = list(ds.corpus)
        texts = [ds.corpus[d].full_text for d in doc_ids]
        vectors = encode_cached_side_by_side([(self.models[r], texts, f"corpus-{digest[:16]}") for r in roles],
                                             cache_dir=self.cache_dir, batch_size=self.suite.batch_size,
                                             progress=self.progress, kind="document")
        for role, v in zip(roles, vectors):
            self.memo[("corpus", role, ds.name, ds.corpus_hash)] = (doc_ids, v)

    def _index_path(self, role: str, ds: RetrievalDataset) -> Path:
        from abharness.data.download import cache_root
        from abharness.data.hashing import corpus_hash

        digest = ds.corpus_hash or corpus_hash(ds.corpus)
        root = self.cache_dir if self.cache_dir is not None else cache_root()
        return root / "eval-indexes" / f"{ds.name}-{digest[:16]}-{self.models[role].fingerprint}"

    def index(self, role: str, ds: RetrievalDataset) -> Any:
        """The role model's flat (exact inner product) FAISS index of ``ds``'s corpus, built with the shared
        ``abharness.index.build_index`` under ``<cache>/eval-indexes`` and reused while the model is the same."""
        from abharness.errors import AbharnessError
        from abharness.index import build_index, load_index

        enc = self.models[role]
        path = self._index_path(role, ds)
        if path.is_dir():
            try:
                return load_index(path, enc)
            except AbharnessError:
                pass  # stale or broken: rebuild below
        self.corpus_embeddings(role, ds)  # encodes (with progress) into the cache build_index reads
        build_index(enc, ds, path, kind="flat", batch_size=self.suite.batch_size, progress=self.progress,
                    cache_dir=self.cache_dir, overwrite=True)
        return load_index(path, enc)

    def rank(self, role: str, ds: RetrievalDataset, depth: int) -> dict[str, list[str]]:
        """Top-``depth`` doc ids per query of ``ds`` for the ``role`` model, through the shared FAISS index
        (``FaissIndex.search_vectors``, exact inner product) over cached embeddings. Memoised per run."""
        memo_key = ("run", role, ds.name, ds.split, ds.corpus_hash, depth)
        if memo_key in self.memo:
            return self.memo[memo_key]
        index = self.index(role, ds)
        query_ids = sorted(ds.queries)
        q_emb = self.embed(role, [ds.queries[q] for q in query_ids], key=f"{ds.name}-{ds.split}-queries")
        hits = index.search_vectors(q_emb, depth)
        run = {q: [h.doc_id for h in row] for q, row in zip(query_ids, hits)}
        self.memo[memo_key] = run
        return run

    def step(self, text: str) -> None:
        if self.progress:
            self.console.print(f"[bold cyan]evaluate[/] {text}")
