"""Small, honest fakes of the adapter Protocols for tests and demos (no FAISS, no model, no database).

- ``DictBackend``: a ``SearchBackend`` over an in-memory {doc_id: text} corpus; ranks by word overlap with the
  query, ties broken by a per-backend salt so two arms give different (but deterministic) rankings. Can be told to
  fail or to be slow, for fallback and timeout tests.
- ``MemoryStore``: an ``EventStore`` in memory with the same duplicate rules as the real stores
  (impression_id; (impression_id, doc_id) for clicks). SQL-side aggregates are not implemented (use SQLiteStore).
- ``InlineWriter``: the ``EventWriter`` surface (start/submit/close, queue_depth/dropped/written) writing batches
  synchronously; ``max_queue`` bounds what it holds so drop/reject paths can be tested.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Literal

from abharness.backends.base import BackendInfo
from abharness.core.events import (
    AuditEntry,
    Click,
    Event,
    Feedback,
    Impression,
    InterleaveUnitAggregate,
    UnitAggregate,
)
from abharness.core.hits import Hit
from abharness.errors import BackendError, StoreError
from abharness.stores.base import WriteResult

__all__ = ["DictBackend", "MemoryStore", "InlineWriter", "tiny_corpus"]

_WORD = re.compile(r"\w+")


def tiny_corpus(n: int = 50) -> dict[str, str]:
    """A deterministic toy corpus of ``n`` short documents ("d0".."dN")."""
    topics = ["cell", "protein", "virus", "cancer", "gene", "brain", "heart", "immune", "drug", "blood"]
    return {f"d{i}": f"{topics[i % 10]} {topics[(i * 3) % 10]} study number {i}" for i in range(n)}


class DictBackend:
    """A deterministic in-memory ``SearchBackend`` (see module docstring)."""

    def __init__(
        self,
        docs: Mapping[str, str],
        *,
        name: str = "fake",
        fail: bool = False,
        delay_s: float = 0.0,
    ) -> None:
        self.docs = dict(docs)
        self.name = name
        self.fail = fail
        self.delay_s = delay_s
        self.calls = 0
        self.closed = False
        self._lock = threading.Lock()
        digest = hashlib.sha256(("\n".join(sorted(self.docs)) + name).encode()).hexdigest()[:12]
        self.info = BackendInfo(
            model_fingerprint=f"model-{name}", index_fingerprint=f"index-{digest}", num_docs=len(self.docs), dim=8
        )
        self._words = {d: set(_WORD.findall(t.lower())) for d, t in self.docs.items()}
        self._salt = {d: int(hashlib.sha256(f"{name}:{d}".encode()).hexdigest()[:8], 16) for d in self.docs}

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        with self._lock:
            self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise BackendError(f"fake backend {self.name!r} configured to fail")
        out = []
        for q in queries:
            qw = set(_WORD.findall(q.lower()))
            scored = sorted(
                self.docs, key=lambda d: (-len(qw & self._words[d]), self._salt[d])
            )[:k]
            out.append([Hit(d, float(len(qw & self._words[d])), title=f"title of {d}") for d in scored])
        return out

    def close(self) -> None:
        self.closed = True


class MemoryStore:
    """An in-memory ``EventStore`` (thread-safe). ``fail_writes=True`` makes writes and pings raise StoreError."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.impressions: dict[str, Impression] = {}
        self.clicks: dict[tuple[str, str], Click] = {}
        self.audit: list[AuditEntry] = []
        self.feedback_rows: dict[tuple[str, str, str], Feedback] = {}
        self.fail_writes = False
        self.closed = False
        self._lock = threading.Lock()

    def migrate(self) -> None:
        return None

    def ping(self) -> None:
        if self.fail_writes:
            raise StoreError(f"{self.url}: store configured to fail")

    def write_batch(self, events: Sequence[Event]) -> WriteResult:
        if self.fail_writes:
            raise StoreError(f"{self.url}: store configured to fail")
        stored = dupes = 0
        with self._lock:
            for ev in events:
                if isinstance(ev, Impression):
                    if ev.impression_id in self.impressions:
                        dupes += 1
                        continue
                    self.impressions[ev.impression_id] = ev
                elif isinstance(ev, Click):
                    key = (ev.impression_id, ev.doc_id)
                    if key in self.clicks:
                        dupes += 1
                        continue
                    self.clicks[key] = ev
                elif isinstance(ev, AuditEntry):
                    self.audit.append(ev)
                elif isinstance(ev, Feedback):
                    fkey = (ev.impression_id, ev.kind, ev.doc_id)
                    if fkey in self.feedback_rows:
                        dupes += 1
                        continue
                    self.feedback_rows[fkey] = ev
                    click = self.clicks.get((ev.impression_id, ev.doc_id))
                    if ev.kind == "dwell" and click is not None and click.dwell_ms is None:
                        self.clicks[(ev.impression_id, ev.doc_id)] = replace(click, dwell_ms=ev.value)
                else:
                    raise StoreError(f"unknown event type {type(ev).__name__}")
                stored += 1
        return WriteResult(stored, dupes)

    def get_impression(self, impression_id: str) -> Impression | None:
        return self.impressions.get(impression_id)

    def has_click(self, impression_id: str, doc_id: str) -> bool:
        return (impression_id, doc_id) in self.clicks

    def experiments(self) -> list[str]:
        return sorted({i.experiment_id for i in self.impressions.values()})

    def arms(self, experiment_id: str) -> list[str]:
        return sorted({i.arm for i in self.impressions.values() if i.experiment_id == experiment_id})

    def unit_aggregates(self, experiment_id: str, **kwargs: object) -> Iterator[UnitAggregate]:
        raise NotImplementedError("MemoryStore has no SQL aggregates; use abharness.stores.open_store('sqlite:///:memory:')")

    def interleave_aggregates(self, experiment_id: str, **kwargs: object) -> Iterator[InterleaveUnitAggregate]:
        raise NotImplementedError("MemoryStore has no SQL aggregates; use abharness.stores.open_store('sqlite:///:memory:')")

    def unit_activity(self, experiment_id: str, **kwargs: object) -> list[tuple[str, str, int, int, int]]:
        raise NotImplementedError("MemoryStore has no SQL aggregates; use abharness.stores.open_store('sqlite:///:memory:')")

    def traffic_counts(self, experiment_id: str, **kwargs: object) -> list[tuple[float, str, int, int]]:
        raise NotImplementedError("MemoryStore has no SQL aggregates; use abharness.stores.open_store('sqlite:///:memory:')")

    def iter_impressions(
        self, experiment_id: str, *, since: float | None = None, until: float | None = None, batch_size: int = 1000
    ) -> Iterator[tuple[Impression, list[Click]]]:
        with self._lock:
            imps = sorted(
                (i for i in self.impressions.values() if i.experiment_id == experiment_id), key=lambda i: i.ts
            )
            clicks = list(self.clicks.values())
        for imp in imps:
            if (since is not None and imp.ts < since) or (until is not None and imp.ts >= until):
                continue
            yield imp, [c for c in clicks if c.impression_id == imp.impression_id]

    def audit_log(self, experiment_id: str) -> list[AuditEntry]:
        with self._lock:
            return sorted((a for a in self.audit if a.experiment_id == experiment_id), key=lambda a: a.ts)

    def feedback(self, experiment_id: str) -> list[Feedback]:
        with self._lock:
            return sorted((f for f in self.feedback_rows.values() if f.experiment_id == experiment_id),
                          key=lambda f: f.ts)

    def counts(self, experiment_id: str | None = None) -> dict[str, int]:
        with self._lock:
            def keep(e: Impression | Click | AuditEntry) -> bool:
                return experiment_id is None or e.experiment_id == experiment_id

            return {
                "impressions": sum(map(keep, self.impressions.values())),
                "clicks": sum(map(keep, self.clicks.values())),
                "audit": sum(map(keep, self.audit)),
            }

    def close(self) -> None:
        self.closed = True


class InlineWriter:
    """The ``EventWriter`` surface without a thread: buffers up to ``max_queue`` events, writes on ``flush``/``close``
    or when ``batch_size`` are buffered. Never raises from ``submit``."""

    def __init__(
        self,
        store: MemoryStore,
        *,
        max_queue: int = 100_000,
        batch_size: int = 1,
        on_full: Literal["drop", "reject"] = "drop",
    ) -> None:
        self.store = store
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.on_full = on_full
        self.buffer: list[Event] = []
        self.dropped = 0
        self.written = 0
        self.failed_batches = 0
        self.started = False
        self.closed = False
        self._lock = threading.Lock()

    @property
    def queue_depth(self) -> int:
        return len(self.buffer)

    def start(self) -> None:
        self.started = True

    def submit(self, event: Event) -> bool:
        with self._lock:
            if self.closed or len(self.buffer) >= self.max_queue:
                self.dropped += 1
                return False
            self.buffer.append(event)
            full = len(self.buffer) >= self.batch_size
        if full:
            self.flush()
        return True

    def flush(self) -> None:
        with self._lock:
            batch, self.buffer = self.buffer, []
        if not batch:
            return
        try:
            self.store.write_batch(batch)
        except StoreError:
            self.failed_batches += 1
            with self._lock:
                self.buffer = batch + self.buffer
            return
        self.written += len(batch)

    def close(self, timeout_s: float = 30.0) -> None:
        self.flush()
        self.closed = True
