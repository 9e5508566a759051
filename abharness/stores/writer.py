"""The bounded background event writer: the search path hands events over and never waits for the database.

``submit`` appends to an in-memory queue under a lock held for O(1) work and returns at once. One daemon thread
takes up to ``batch_size`` events (waiting at most ``flush_interval_s`` for a batch to fill) and commits them
with ``store.write_batch``. Because stores ignore duplicates by key, a batch retried after an ambiguous failure
(commit succeeded, connection lost before the answer) is stored once.

A failing store and a bad event are told apart by the store's probe (``store.ping()``, which commits a small
heartbeat write): a batch that fails while the probe fails means the *store* is failing; a batch that keeps
failing while the probe succeeds holds a *bad event*.

Batches: normally up to ``batch_size`` events; when the queue holds more than that (the writer is behind), up to
``max_batch_size`` (default 10 x ``batch_size``, and at most a tenth of ``max_queue``: a batch's events keep their
queue slots until it commits) are committed together, which costs less per event.

* Failing store: the events stay queued and the batch is retried with exponential backoff (``retry_initial_s``
  doubling to ``retry_max_s``); ``state`` is ``"failing"`` (the proxy reports not ready). When the store stays down
  longer than ``spool_after_s``, or the queue reaches ``spool_at_fraction`` of ``max_queue``, or the writer is
  closing, the whole queue is spilled to the spool (``abharness.stores.spool``: fsynced JSON lines in a directory
  of its own) and counted in ``spooled``; ``abharness spool load`` writes it back once the store is healthy.
* Bad event: after ``_FAILURES_BEFORE_ISOLATING`` failures the batch is written one event at a time; an event
  refused three times on its own while the probe succeeds is quarantined (appended to a quarantine file in the
  spool directory, or only logged when there is no spool) and counted in ``quarantined``.

Each change of state (healthy -> failing -> spooling -> healthy) is logged once, at WARNING or ERROR (the outage
handling lives in ``abharness.stores.writer_outage``).

When the queue is full, ``submit`` returns False and counts the event in ``dropped``; with ``on_full="reject"``
it also counts it in ``rejected`` so the caller can refuse the request instead of silently dropping.
``close()`` flushes everything accepted (bounded by its timeout); when the store is down at close, the queue is
spilled to the spool, and only what cannot be spooled either is counted in ``lost``.

Accounting: every accepted event ends in exactly one of ``written`` (= ``stored`` + ``duplicates``), ``spooled``,
``quarantined``, ``lost``, or is still queued (``queue_depth``).

What a SIGKILL loses: the queue. With a healthy store that is at most about ``flush_interval_s`` of events plus
the batch being committed; during a store outage, what arrived since the last spill (at most ``spool_after_s``
of events, bounded by ``spool_at_fraction * max_queue``).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from abharness.core.events import AuditEntry, Click, Event, Feedback, Impression
from abharness.errors import ConfigError
from abharness.stores.base import EventStore
from abharness.stores.spool import Spool
from abharness.stores.writer_outage import OutageHandling, WriterState

__all__ = ["EventWriter", "WriterState"]

log = logging.getLogger(__name__)

_EVENT_TYPES = (Impression, Click, AuditEntry, Feedback)
_FAILURES_BEFORE_ISOLATING = 3


class EventWriter(OutageHandling):
    """Batches events into ``store`` from a background thread; see the module docstring for guarantees."""

    def __init__(
        self,
        store: EventStore,
        *,
        max_queue: int = 100_000,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        on_full: Literal["drop", "reject"] = "drop",
        on_write_seconds: Callable[[float], None] | None = None,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 2.0,
        spool_dir: str | Path | None = None,
        spool_after_s: float = 10.0,
        spool_at_fraction: float = 0.5,
        max_batch_size: int | None = None,
    ) -> None:
        if int(max_queue) < 1:
            raise ConfigError(f"max_queue={max_queue!r} must be a positive number of events (e.g. 100000)")
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be a positive number of events (e.g. 500)")
        max_batch = 10 * int(batch_size) if max_batch_size is None else int(max_batch_size)
        if max_batch < int(batch_size):
            raise ConfigError(
                f"max_batch_size={max_batch_size!r} must be >= batch_size={batch_size!r} (default: 10 x batch_size)"
            )
        if not flush_interval_s > 0:
            raise ConfigError(f"flush_interval_s={flush_interval_s!r} must be > 0 seconds (e.g. 0.2)")
        if on_full not in ("drop", "reject"):
            raise ConfigError(f"on_full={on_full!r} is not valid; use 'drop' or 'reject'")
        if not 0 < retry_initial_s <= retry_max_s:
            raise ConfigError(
                f"retry_initial_s={retry_initial_s!r} and retry_max_s={retry_max_s!r} must satisfy "
                "0 < retry_initial_s <= retry_max_s"
            )
        if not spool_after_s >= 0:
            raise ConfigError(f"spool_after_s={spool_after_s!r} must be >= 0 seconds (e.g. 10)")
        if not 0 < spool_at_fraction <= 1:
            raise ConfigError(f"spool_at_fraction={spool_at_fraction!r} must be in (0, 1] (e.g. 0.5)")
        self.store = store
        self.spool = Spool(spool_dir) if spool_dir is not None else None
        self.spool_after_s = float(spool_after_s)
        self.spool_at_fraction = float(spool_at_fraction)
        self.max_queue = int(max_queue)
        self.batch_size = int(batch_size)
        self.max_batch_size = max_batch
        # A batch keeps its events' queue slots until it commits: a catch-up batch that is a large share of a small
        # queue would hold the queue full for its whole (longer) commit and new events would be dropped meanwhile.
        self._catch_up_batch = max(self.batch_size, min(max_batch, self.max_queue // 10))
        self.flush_interval_s = float(flush_interval_s)
        self.on_full = on_full
        self.on_write_seconds = on_write_seconds
        self.retry_initial_s = float(retry_initial_s)
        self.retry_max_s = float(retry_max_s)

        self._queue: deque[Event] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._closing = False
        self._deadline: float | None = None
        self._accepted = 0
        self._dropped = 0
        self._rejected = 0
        self._stored = 0
        self._duplicates = 0
        self._failed_batches = 0
        self._quarantined = 0
        self._spooled = 0
        self._lost = 0
        self._state: WriterState = "healthy"
        self._failing_since: float | None = None
        self._last_error = ""
        self._spool_error_logged = False

    # -- counters (read without the lock: single int reads are atomic in CPython) -------------------------

    @property
    def queue_depth(self) -> int:
        """Events accepted and not yet committed (including the batch in flight)."""
        return len(self._queue)

    @property
    def accepted(self) -> int:
        """Events ``submit`` accepted."""
        return self._accepted

    @property
    def dropped(self) -> int:
        """Events refused because the queue was full or the writer closed (both ``on_full`` policies)."""
        return self._dropped

    @property
    def rejected(self) -> int:
        """The subset of ``dropped`` refused under ``on_full="reject"``."""
        return self._rejected

    @property
    def written(self) -> int:
        """Events the store has taken: newly stored plus duplicates it ignored."""
        return self._stored + self._duplicates

    @property
    def stored(self) -> int:
        """Events newly stored."""
        return self._stored

    @property
    def duplicates(self) -> int:
        """Events the store already had (ignored by key)."""
        return self._duplicates

    @property
    def failed_batches(self) -> int:
        """Write attempts that raised (each is retried)."""
        return self._failed_batches

    @property
    def quarantined(self) -> int:
        """Events the store refused on their own while its probe write succeeded (bad events), set aside."""
        return self._quarantined

    @property
    def failed_events(self) -> int:
        """Alias of ``quarantined`` (older name)."""
        return self._quarantined

    @property
    def spooled(self) -> int:
        """Accepted events spilled to the spool because the store was down (load them back with the CLI)."""
        return self._spooled

    @property
    def state(self) -> WriterState:
        """``healthy``, ``failing`` (store down, events queued) or ``spooling`` (store down, queue spilled)."""
        return self._state

    @property
    def lost(self) -> int:
        """Accepted events still queued when ``close`` gave up (store unreachable past the timeout)."""
        return self._lost

    def stats(self) -> dict[str, int]:
        """All counters in one dict (for logs and reports)."""
        return {
            "accepted": self._accepted,
            "queue_depth": len(self._queue),
            "written": self.written,
            "stored": self._stored,
            "duplicates": self._duplicates,
            "dropped": self._dropped,
            "rejected": self._rejected,
            "failed_batches": self._failed_batches,
            "quarantined": self._quarantined,
            "spooled": self._spooled,
            "lost": self._lost,
        }

    # -- producer side ------------------------------------------------------------------------------------

    def start(self) -> EventWriter:
        """Start the background thread (idempotent); returns self."""
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="abharness-event-writer", daemon=True)
                self._thread.start()
        return self

    def submit(self, event: Event) -> bool:
        """Queue ``event``; True when accepted, False when the queue is full or the writer is closed. Never blocks
        on I/O."""
        if not isinstance(event, _EVENT_TYPES):
            raise TypeError(f"EventWriter.submit got {type(event).__name__}; expected Impression, Click, Feedback or AuditEntry")
        with self._cond:
            if self._closing or len(self._queue) >= self.max_queue:
                self._dropped += 1
                if self.on_full == "reject":
                    self._rejected += 1
                return False
            self._queue.append(event)
            self._accepted += 1
            if len(self._queue) >= self.batch_size:
                self._cond.notify_all()
        return True

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every event accepted so far is committed; False if ``timeout_s`` passed first."""
        self.start()
        with self._cond:
            self._cond.notify_all()
            return self._cond.wait_for(lambda: not self._queue, timeout=timeout_s)

    def close(self, timeout_s: float = 30.0) -> int:
        """Flush everything accepted, then stop. Returns the number of events lost (0 unless the store stayed
        unreachable for ``timeout_s``)."""
        self.start()
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + max(0.0, float(timeout_s))
            self._cond.notify_all()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=max(0.0, float(timeout_s)) + 5.0)
        if self._queue and self.spool is not None:
            self._spill("closing with the store unreachable")
        with self._cond:
            if self._queue:
                self._lost += len(self._queue)
                log.error(
                    "event writer closed with %d events not written to %s (store unreachable for %.1fs)",
                    len(self._queue),
                    getattr(self.store, "url", self.store),
                    timeout_s,
                )
                self._queue.clear()
            return self._lost

    # -- consumer side ------------------------------------------------------------------------------------

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _run(self) -> None:
        backoff = self.retry_initial_s
        consecutive_failures = 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: len(self._queue) >= self.batch_size or self._closing, self.flush_interval_s)
                if not self._queue:
                    if self._closing:
                        return
                    continue
                if self._past_deadline():
                    return
                # Behind (a backlog beyond one batch): take up to max_batch_size at once. Per-commit costs (the
                # commit's flush, index pages rewritten, round trips) then spread over more events, so the writer
                # catches up instead of falling further behind; a batch is still one transaction.
                batch = list(itertools.islice(self._queue, 0, self._catch_up_batch))
            if self._write(batch):
                backoff = self.retry_initial_s
                consecutive_failures = 0
                self._healthy()
                continue
            consecutive_failures += 1
            if self._store_reachable():
                if consecutive_failures >= _FAILURES_BEFORE_ISOLATING:
                    self._write_one_by_one(batch)
                    consecutive_failures = 0
                    continue
            else:
                self._failing()
                if self.spool is not None and self._should_spill():
                    self._spill("the store stayed unreachable")
                    continue
            with self._cond:
                # Sleep, but wake up for close(); never past the close deadline.
                wait = backoff
                if self._deadline is not None:
                    wait = min(wait, max(0.0, self._deadline - time.monotonic()))
                if not self._past_deadline():
                    self._cond.wait(wait)
            backoff = min(self.retry_max_s, backoff * 2)

    def _write(self, batch: list[Event]) -> bool:
        t0 = time.perf_counter()
        try:
            result = self.store.write_batch(batch)
        except Exception as exc:  # any store failure: keep the events, retry later
            self._failed_batches += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            log.debug("writing %d events to the store failed (will retry): %s", len(batch), exc)
            return False
        self._observe(time.perf_counter() - t0)
        self._commit(len(batch), result.stored, result.duplicates)
        return True

    def _commit(self, n: int, stored: int, duplicates: int) -> None:
        with self._cond:
            for _ in range(min(n, len(self._queue))):
                self._queue.popleft()
            self._stored += stored
            self._duplicates += duplicates
            self._cond.notify_all()

    def _observe(self, seconds: float) -> None:
        if self.on_write_seconds is None:
            return
        try:
            self.on_write_seconds(seconds)
        except Exception:  # a broken metrics hook must not stop the log
            log.exception("on_write_seconds hook raised; ignoring")

    def _store_reachable(self) -> bool:
        try:
            self.store.ping()
        except Exception as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            return False
        return True

    def _write_one_by_one(self, batch: Sequence[Event]) -> None:
        """Isolate events the store refuses while its probe write succeeds; quarantine those, keep the rest.

        An event is set aside only after ``_FAILURES_BEFORE_ISOLATING`` attempts of its own, each followed by a
        successful probe: a transient failure must not cost a good event.
        """
        for event in batch:
            delay = self.retry_initial_s
            for attempt in range(_FAILURES_BEFORE_ISOLATING):
                t0 = time.perf_counter()
                try:
                    result = self.store.write_batch([event])
                except Exception as exc:
                    self._failed_batches += 1
                    if not self._store_reachable():
                        return  # the store went away: keep the rest queued for the normal retry path
                    if attempt + 1 < _FAILURES_BEFORE_ISOLATING:
                        time.sleep(delay)
                        delay = min(self.retry_max_s, delay * 2)
                        continue
                    self._quarantine(event, exc)
                    break
                self._observe(time.perf_counter() - t0)
                self._commit(1, result.stored, result.duplicates)
                break
