"""The bounded background writer: batching, backpressure (drop/reject), retries, poison events, close()."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from abharness.core.events import AuditEntry, Event, Impression
from abharness.errors import ConfigError, StoreError
from abharness.stores import open_store
from abharness.stores.base import WriteResult
from abharness.stores.writer import EventWriter


def imp(i: int) -> Impression:
    return Impression(
        impression_id=f"imp-{i}",
        experiment_id="exp",
        ts=float(i),
        unit_id=f"u{i % 7}",
        arm="baseline",
        mode="ab",
        query="q",
        k=3,
        results=(),
    )


class FakeStore:
    """In-memory store with switches: a gate that holds writes, a number of failures to raise, poison ids."""

    url = "fake://"

    def __init__(self) -> None:
        self.rows: dict[str, Event] = {}
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_next = 0
        self.down = False
        self.poison: set[str] = set()
        self.lock = threading.Lock()

    def ping(self) -> None:
        if self.down:
            raise StoreError("fake store is down")

    def write_batch(self, events: Sequence[Event]) -> WriteResult:
        self.entered.set()
        self.gate.wait()
        with self.lock:
            if self.down:
                raise StoreError("fake store is down")
            if self.fail_next:
                self.fail_next -= 1
                raise StoreError("transient failure")
            if any(getattr(e, "impression_id", None) in self.poison for e in events):
                raise StoreError("refused")
            self.batches.append(len(events))
            stored = 0
            for e in events:
                key = e.impression_id  # type: ignore[union-attr]
                if key not in self.rows:
                    self.rows[key] = e
                    stored += 1
            return WriteResult(stored, len(events) - stored)


@pytest.mark.parametrize("max_batch_size", [None, 50, 120])
def test_close_flushes_every_accepted_event_in_bounded_batches(max_batch_size: int | None) -> None:
    store = FakeStore()
    seen: list[float] = []
    w = EventWriter(store, batch_size=50, flush_interval_s=0.01, on_write_seconds=seen.append,
                    max_batch_size=max_batch_size)
    assert all(w.submit(imp(i)) for i in range(1_234))  # a backlog before the thread starts: the writer is behind
    w.start()
    assert w.close() == 0
    assert len(store.rows) == 1_234
    bound = 500 if max_batch_size is None else max_batch_size  # default: 10 x batch_size
    assert max(store.batches) == min(bound, 1_234) and sum(store.batches) == 1_234
    assert (w.accepted, w.written, w.stored, w.dropped, w.queue_depth) == (1_234, 1_234, 1_234, 0, 0)
    assert len(seen) == len(store.batches) and all(s >= 0 for s in seen)


def test_catch_up_batches_take_at_most_a_tenth_of_a_small_queue() -> None:
    """In-flight events hold their queue slots until the commit: a small queue keeps batches small."""
    store = FakeStore()
    w = EventWriter(store, max_queue=300, batch_size=10, flush_interval_s=0.01)  # max_batch_size default 100
    assert all(w.submit(imp(i)) for i in range(300))
    w.start()
    assert w.close() == 0
    assert max(store.batches) == 30 and sum(store.batches) == 300


def test_full_queue_drops_and_counts_without_blocking() -> None:
    store = FakeStore()
    store.gate.clear()  # the store hangs: the writer thread is stuck inside write_batch
    w = EventWriter(store, max_queue=10, batch_size=4, flush_interval_s=0.01).start()
    results = [w.submit(imp(i)) for i in range(15)]  # would hang here (test timeout) if submit blocked
    assert results == [True] * 10 + [False] * 5
    assert (w.dropped, w.rejected, w.queue_depth) == (5, 0, 10)
    store.gate.set()
    assert w.close() == 0
    assert sorted(store.rows) == sorted(f"imp-{i}" for i in range(10))


def test_reject_policy_counts_rejections() -> None:
    store = FakeStore()
    store.gate.clear()
    w = EventWriter(store, max_queue=3, batch_size=10, flush_interval_s=0.01, on_full="reject").start()
    assert [w.submit(imp(i)) for i in range(5)] == [True, True, True, False, False]
    assert (w.dropped, w.rejected) == (2, 2)
    store.gate.set()
    w.close()
    assert len(store.rows) == 3


def test_failing_store_keeps_events_queued_and_retries() -> None:
    store = FakeStore()
    store.fail_next = 4
    w = EventWriter(store, batch_size=100, flush_interval_s=0.01, retry_initial_s=0.01, retry_max_s=0.02).start()
    for i in range(250):
        w.submit(imp(i))
    assert w.flush(timeout_s=30)
    assert w.failed_batches == 4
    assert len(store.rows) == 250 and w.stored == 250 and w.failed_events == 0
    w.close()


def test_outage_longer_than_the_queue_drops_beyond_the_bound_then_recovers() -> None:
    store = FakeStore()
    store.down = True
    w = EventWriter(store, max_queue=20, batch_size=5, flush_interval_s=0.01, retry_initial_s=0.01, retry_max_s=0.02)
    w.start()
    accepted = sum(w.submit(imp(i)) for i in range(30))
    assert accepted == 20 and w.dropped == 10
    store.entered.clear()
    assert store.entered.wait(10)  # the writer keeps trying while the store is down
    store.down = False
    assert w.flush(timeout_s=30)
    assert w.close() == 0
    assert len(store.rows) == 20 and w.failed_batches >= 1


def test_a_poison_event_is_isolated_and_counted() -> None:
    store = FakeStore()
    store.poison = {"imp-7"}
    w = EventWriter(store, batch_size=10, flush_interval_s=0.01, retry_initial_s=0.01, retry_max_s=0.01).start()
    for i in range(25):
        w.submit(imp(i))
    assert w.close() == 0
    assert w.failed_events == 1
    assert sorted(store.rows) == sorted(f"imp-{i}" for i in range(25) if i != 7)


def test_close_gives_up_after_its_timeout_and_reports_losses() -> None:
    store = FakeStore()
    store.down = True
    w = EventWriter(store, batch_size=5, flush_interval_s=0.01, retry_initial_s=0.01, retry_max_s=0.05).start()
    for i in range(12):
        w.submit(imp(i))
    assert w.close(timeout_s=0.3) == 12
    assert w.lost == 12 and w.queue_depth == 0
    assert w.submit(imp(99)) is False and w.dropped == 1  # closed writers accept nothing


def test_a_raising_metrics_hook_does_not_stop_the_log() -> None:
    store = FakeStore()

    def hook(_: float) -> None:
        raise RuntimeError("metrics backend broken")

    w = EventWriter(store, batch_size=3, flush_interval_s=0.01, on_write_seconds=hook).start()
    for i in range(10):
        w.submit(imp(i))
    w.close()
    assert len(store.rows) == 10


def test_close_without_start_still_flushes() -> None:
    store = FakeStore()
    w = EventWriter(store)
    w.submit(imp(1))
    assert w.close() == 0 and len(store.rows) == 1


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"max_queue": 0}, "max_queue"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 10, "max_batch_size": 5}, "max_batch_size"),
        ({"flush_interval_s": 0}, "flush_interval_s"),
        ({"on_full": "block"}, "on_full"),
        ({"retry_initial_s": 5, "retry_max_s": 1}, "retry_initial_s"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        EventWriter(FakeStore(), **kwargs)


def test_submit_refuses_non_events() -> None:
    w = EventWriter(FakeStore())
    with pytest.raises(TypeError, match="dict"):
        w.submit({"impression_id": "x"})  # type: ignore[arg-type]
    w.close()


def test_writer_into_sqlite_while_reading_from_other_threads(tmp_path) -> None:
    """WAL: readers in other threads see committed batches while the writer thread keeps committing."""
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    w = EventWriter(store, batch_size=20, flush_interval_s=0.01).start()
    counts: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            counts.append(store.counts()["impressions"])

    t = threading.Thread(target=reader)
    t.start()
    for i in range(500):
        w.submit(imp(i))
    w.submit(AuditEntry(ts=1.0, experiment_id="exp", actor="a", action="pause"))
    assert w.close() == 0
    stop.set()
    t.join()
    assert store.counts() == {"impressions": 500, "clicks": 0, "audit": 1}
    assert counts == sorted(counts)  # committed batches only ever add rows
    store.close()
