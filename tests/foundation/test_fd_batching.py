"""The local backend's leader/follower micro-batching: a lone query is encoded at once in the caller's thread;
concurrent queries arriving while one batch encodes form the next batch; every caller gets its own rows."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from abharness.backends.local import LocalBackend
from abharness.errors import BackendError
from abharness.index import build_index, load_index


class _SlowRecorder:
    """Wraps an encoder: records (thread name, batch size) per call and sleeps ``delay_s`` per call."""

    def __init__(self, inner, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.name, self.fingerprint, self.dim = inner.name, inner.fingerprint, inner.dim
        self.calls: list[tuple[str, int]] = []

    def encode(self, texts, **kwargs):
        self.calls.append((threading.current_thread().name, len(texts)))
        time.sleep(self.delay_s)
        return self.inner.encode(texts, **kwargs)


@pytest.fixture
def index_dir(tmp_path: Path, bow, scifact_slice) -> Path:
    build_index(bow, scifact_slice, tmp_path / "i", progress=False)
    return tmp_path / "i"


def test_lone_query_is_encoded_in_the_callers_thread(index_dir: Path, bow) -> None:
    enc = _SlowRecorder(bow, 0.0)
    with LocalBackend(load_index(index_dir, bow), enc, cache_size=0) as backend:
        backend.search(["a query about cells"], 3)
        backend.search(["another about genes"], 3)
    assert enc.calls == [(threading.current_thread().name, 1)] * 2


def test_queries_arriving_during_an_encode_form_the_next_batch(index_dir: Path, bow) -> None:
    enc = _SlowRecorder(bow, 0.2)
    words = "cells genes drugs mice tumour virus brain heart lung liver bone skin".split()
    queries = [f"query {i} about {w}" for i, w in enumerate(words)]
    results: dict[int, list] = {}
    with LocalBackend(load_index(index_dir, bow), enc, cache_size=0, max_batch=8) as backend:
        first = threading.Thread(target=lambda: results.__setitem__(0, backend.search([queries[0]], 5)[0]))
        first.start()
        time.sleep(0.05)  # the first query is being encoded (0.2 s); the other 11 queue up behind it
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, backend.search([queries[i]], 5)[0]))
                   for i in range(1, 12)]
        for t in [*threads]:
            t.start()
        for t in [first, *threads]:
            t.join(30)
        want = backend.index.search_vectors(bow.encode(queries), 5)
    sizes = [n for _, n in enc.calls]
    assert sizes[0] == 1 and sum(sizes) == 12 and max(sizes) <= 8 and len(sizes) <= 4
    assert [results[i] for i in range(12)] == want


def test_waiting_caller_times_out_with_a_clear_error(index_dir: Path, bow) -> None:
    enc = _SlowRecorder(bow, 1.0)
    with LocalBackend(load_index(index_dir, bow), enc, cache_size=0, timeout_s=0.2) as backend:
        leader = threading.Thread(target=lambda: backend.search(["slow leader"], 3))
        leader.start()
        time.sleep(0.05)
        with pytest.raises(BackendError, match="longer than 0.2s"):
            backend.search(["waits behind it"], 3)
        leader.join(10)


class _ConcurrencyRecorder(_SlowRecorder):
    """Also records the most encodes that ran at the same moment; declares ``threads`` like ``OnnxEncoder``."""

    def __init__(self, inner, delay_s: float, threads: int | None) -> None:
        super().__init__(inner, delay_s)
        if threads is not None:
            self.threads = threads
        self._lock = threading.Lock()
        self.running = self.peak = 0

    def encode(self, texts, **kwargs):
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return super().encode(texts, **kwargs)
        finally:
            with self._lock:
                self.running -= 1


def _concurrent_searches(backend: LocalBackend, queries: list[str]) -> dict[int, list]:
    results: dict[int, list] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, backend.search([queries[i]], 5)[0]))
               for i in range(len(queries))]
    for t in threads:
        t.start()
        time.sleep(0.01)
    for t in threads:
        t.join(30)
    return results


@pytest.mark.parametrize("max_parallel", [1, 2, 3])
def test_at_most_max_parallel_batches_encode_at_once(index_dir: Path, bow, max_parallel: int) -> None:
    enc = _ConcurrencyRecorder(bow, 0.15, threads=1)
    queries = [f"query {i} about cells and genes" for i in range(10)]
    with LocalBackend(load_index(index_dir, bow), enc, cache_size=0, max_batch=4,
                      max_parallel=max_parallel) as backend:
        results = _concurrent_searches(backend, queries)
        want = backend.index.search_vectors(bow.encode(queries), 5)
    assert enc.peak == max_parallel  # 10 callers 10 ms apart against 150 ms encodes: every slot gets used
    assert sum(n for _, n in enc.calls) == 10 and max(n for _, n in enc.calls) <= 4
    assert [results[i] for i in range(10)] == want


def test_default_parallel_follows_the_encoders_declared_threads(index_dir: Path, bow, monkeypatch) -> None:
    import os

    from abharness.backends import local

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    index = load_index(index_dir, bow)
    assert LocalBackend(index, _ConcurrencyRecorder(bow, 0, threads=1), cache_size=0).max_parallel == 4
    assert LocalBackend(index, _ConcurrencyRecorder(bow, 0, threads=2), cache_size=0).max_parallel == 2
    assert LocalBackend(index, _ConcurrencyRecorder(bow, 0, threads=8), cache_size=0).max_parallel == 1
    # an encoder that declares no threads (torch uses every CPU for one batch) encodes one batch at a time
    assert LocalBackend(index, _ConcurrencyRecorder(bow, 0, threads=None), cache_size=0).max_parallel == 1
    assert local.default_parallel(bow) == (1 if not isinstance(getattr(bow, "threads", None), int) else 4 // bow.threads)


def test_max_parallel_below_one_is_refused_with_the_value(index_dir: Path, bow) -> None:
    from abharness.errors import ConfigError

    with pytest.raises(ConfigError, match="max_parallel=0"):
        LocalBackend(load_index(index_dir, bow), bow, cache_size=0, max_parallel=0)
