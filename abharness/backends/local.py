"""In-process backend: an encoder plus a FAISS index in the same process.

Concurrent ``search`` calls (one per proxy request thread) are encoded together in micro-batches, without a
batching thread: the first caller that finds no encode in progress becomes the *leader*, takes every query
text waiting (up to ``max_batch``), encodes them in one forward pass in its own thread and hands each caller its
rows; callers that arrive meanwhile wait and form the next batch, led by one of them. A lone request is thus
encoded at once in the caller's thread (no hand-off, no added wait), and under load batches grow by themselves
while the previous one runs. Up to ``max_parallel`` batches encode at once (default: the CPUs divided by the
threads the encoder says it uses, e.g. 2 one-thread ONNX Runtime batches on 2 CPUs; 1 for an encoder that does not
say, such as torch, which uses every CPU for one batch), so a one-thread encoder can keep every core busy.
``max_wait_ms`` > 0 additionally lets a leader wait that long for a batch to fill.
An LRU cache keeps query embeddings of repeated queries. Callers that bring a batch of at least ``max_batch``
texts (the replay and the demo, through ``abharness.backends.retrieval.search``) are encoded directly in their own
thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from abharness.backends.base import BackendInfo
from abharness.core.hits import Hit
from abharness.encoders.base import Encoder
from abharness.errors import AbharnessError, BackendError, ConfigError
from abharness.index.faiss_index import FaissIndex, check_query_encoder

__all__ = ["LocalBackend", "open_local_backend", "CacheStats", "default_parallel"]


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    size: int
    batches: int
    batched_texts: int


@dataclass(slots=True, eq=False)
class _Request:
    texts: list[str]
    future: Future[np.ndarray]



def default_parallel(encoder: Encoder) -> int:
    """Batches one encoder may run at once: the CPUs this process may use divided by the intra-op threads the
    encoder declares (its ``threads`` attribute, as ``OnnxEncoder`` has); 1 when it declares none."""
    threads = getattr(encoder, "threads", None)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // threads)


class LocalBackend:
    """``SearchBackend`` over a ``FaissIndex`` and an ``Encoder`` (thread-safe)."""

    def __init__(
        self,
        index: FaissIndex,
        encoder: Encoder,
        *,
        cache_size: int = 10_000,
        max_batch: int = 32,
        max_wait_ms: float = 0.0,
        timeout_s: float = 60.0,
        max_parallel: int | None = None,
    ) -> None:
        check_query_encoder(index.manifest, encoder, where="the index served by this arm")
        if cache_size < 0 or max_batch < 1 or max_wait_ms < 0 or (max_parallel is not None and max_parallel < 1):
            raise ConfigError(
                f"cache_size={cache_size}, max_batch={max_batch}, max_wait_ms={max_wait_ms}, "
                f"max_parallel={max_parallel}: need cache_size >= 0, max_batch >= 1, max_wait_ms >= 0, "
                "max_parallel >= 1 (or unset: automatic)"
            )
        self.index = index
        self.encoder = encoder
        self.cache_size = cache_size
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.timeout_s = timeout_s
        self.max_parallel = max_parallel if max_parallel is not None else default_parallel(encoder)
        self.info = BackendInfo(
            model_fingerprint=encoder.fingerprint,
            index_fingerprint=index.manifest.index_fingerprint,
            num_docs=index.manifest.num_docs,
            dim=index.manifest.dim,
        )
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._pending: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._leaders = 0  # batches being encoded now (at most max_parallel)
        self._closed = False
        self._hits = self._misses = self._batches = self._batched_texts = 0

    # ------------------------------------------------------------------ cache
    def _cache_get(self, text: str) -> np.ndarray | None:
        with self._cache_lock:
            vector = self._cache.get(text)
            if vector is not None:
                self._cache.move_to_end(text)
                self._hits += 1
            else:
                self._misses += 1
            return vector

    def _cache_put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        if self.cache_size == 0:
            return
        with self._cache_lock:
            for text, vector in zip(texts, vectors):
                row = vector.copy()
                row.setflags(write=False)
                self._cache[text] = row
                self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def cache_stats(self) -> CacheStats:
        """Counters of the query-embedding cache and the micro-batcher."""
        with self._cache_lock:
            return CacheStats(self._hits, self._misses, len(self._cache), self._batches, self._batched_texts)

    # ------------------------------------------------------------------ batching
    def _take_pending(self) -> list[_Request]:
        """Pop waiting requests, oldest first, up to ``max_batch`` texts (at least one request). Holds ``_cond``."""
        batch: list[_Request] = []
        count = 0
        while self._pending and (not batch or count + len(self._pending[0].texts) <= self.max_batch):
            request = self._pending.popleft()
            batch.append(request)
            count += len(request.texts)
        return batch

    def _embed_batched(self, texts: list[str]) -> np.ndarray:
        request = _Request(texts, Future())
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()
        while True:
            with self._cond:
                while self._leaders >= self.max_parallel and not request.future.done():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        if request in self._pending:
                            self._pending.remove(request)
                        raise BackendError(
                            f"query encoding took longer than {self.timeout_s}s; the machine is overloaded"
                        )
                    self._cond.wait(remaining)
                if request.future.done():
                    return request.future.result()
                self._leaders += 1
                if self.max_wait_s > 0:
                    wait_until = time.monotonic() + self.max_wait_s
                    while sum(len(r.texts) for r in self._pending) < self.max_batch and not self._closed:
                        remaining = wait_until - time.monotonic()
                        if remaining <= 0:
                            break
                        self._cond.wait(remaining)
                batch = self._take_pending()
            try:
                self._encode_batch(batch)
            finally:
                with self._cond:
                    self._leaders -= 1
                    self._cond.notify_all()

    def _encode_batch(self, batch: list[_Request]) -> None:
        unique = list(dict.fromkeys(t for request in batch for t in request.texts))
        try:
            vectors = self._encode(unique)
        except Exception as exc:  # noqa: BLE001 - hand any failure to every waiting caller
            error = exc if isinstance(exc, AbharnessError) else BackendError(f"query encoding failed: {exc}")
            for request in batch:
                request.future.set_exception(error)
            return
        row = {text: i for i, text in enumerate(unique)}
        with self._cache_lock:
            self._batches += 1
            self._batched_texts += len(unique)
        for request in batch:
            request.future.set_result(vectors[[row[t] for t in request.texts]])

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self.encoder.encode(texts, batch_size=max(len(texts), 1), kind="query"), dtype=np.float32)
        if vectors.shape != (len(texts), self.info.dim):
            raise BackendError(f"encoder returned shape {vectors.shape}; expected ({len(texts)}, {self.info.dim})")
        self._cache_put(texts, vectors)
        return vectors

    def embed(self, queries: Sequence[str]) -> np.ndarray:
        """Query embeddings (n, dim), from the cache where possible, micro-batched with concurrent callers."""
        queries = list(queries)
        if self._closed:
            raise BackendError("the local backend is closed; open a new one")
        out = np.zeros((len(queries), self.info.dim), dtype=np.float32)
        missing: list[int] = []
        for i, text in enumerate(queries):
            vector = self._cache_get(text)
            if vector is None:
                missing.append(i)
            else:
                out[i] = vector
        if not missing:
            return out
        texts = list(dict.fromkeys(queries[i] for i in missing))
        if len(texts) >= self.max_batch:
            vectors = self._encode(texts)
        else:
            vectors = self._embed_batched(texts)
        row = {text: i for i, text in enumerate(texts)}
        for i in missing:
            out[i] = vectors[row[queries[i]]]
        return out

    # ------------------------------------------------------------------ SearchBackend
    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-k hits per query, best first. Raises ``BackendError`` (or ``ConfigError`` for a bad k)."""
        if isinstance(queries, str):
            raise ConfigError("queries must be a sequence of strings, not one string; wrap it in a list")
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k={k!r}; expected a positive integer")
        if not queries:
            return []
        vectors = self.embed(queries)
        try:
            return self.index.search_vectors(vectors, k)
        except AbharnessError:
            raise
        except Exception as exc:  # noqa: BLE001 - FAISS raises RuntimeError
            raise BackendError(f"FAISS search failed: {exc}") from exc

    def close(self) -> None:
        """Refuse new searches (requests already waiting are still served). Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_local_backend(index_dir: str | Path, model_spec: str | None = None, **kwargs: object) -> LocalBackend:
    """Load the encoder (``model_spec``, or the model recorded in the index manifest) and the index, checked
    against each other, and wrap them in a ``LocalBackend`` (keyword arguments are passed on)."""
    from abharness.encoders.st import load_encoder
    from abharness.index.faiss_index import load_index
    from abharness.index.manifest import read_index_manifest

    spec = model_spec or read_index_manifest(index_dir).model_name
    encoder = load_encoder(spec)
    return LocalBackend(load_index(index_dir, encoder), encoder, **kwargs)  # type: ignore[arg-type]
