"""How the event writer handles an outage: the state changes it logs once, the spill of its queue to the spool,
the quarantine of a bad event, and the readiness text. A mixin of ``EventWriter`` (abharness.stores.writer), kept
apart so the batching loop stays short; it uses the writer's queue, lock, counters and spool."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Literal

from abharness.core.events import Event

if TYPE_CHECKING:
    from abharness.stores.spool import Spool

__all__ = ["OutageHandling", "WriterState"]

log = logging.getLogger("abharness.stores.writer")

WriterState = Literal["healthy", "failing", "spooling"]


class OutageHandling:
    """State machine healthy -> failing -> spooling -> healthy, each change logged once (see the writer's doc)."""

    store: object
    spool: Spool | None
    spool_after_s: float
    spool_at_fraction: float
    max_queue: int
    _queue: deque[Event]
    _cond: threading.Condition
    _closing: bool
    _state: WriterState
    _failing_since: float | None
    _last_error: str
    _spool_error_logged: bool
    _spooled: int
    _quarantined: int

    def public_problem(self) -> str | None:
        """``problem`` without the store's error text (no paths or addresses), for a public /readyz."""
        if self._state == "healthy":
            return None
        since = self._failing_since
        for_s = f" for {time.monotonic() - since:.0f} s" if since is not None else ""
        return f"event store failing{for_s}; {len(self._queue)} events queued, {self._spooled} spooled"

    def problem(self) -> str | None:
        """Why the log is not healthy (for /readyz), or None."""
        if self._state == "healthy":
            return None
        since = self._failing_since
        for_s = f" for {time.monotonic() - since:.0f} s" if since is not None else ""
        spool = f"; {self._spooled} events spooled" if self._spooled else ""
        return f"event store failing{for_s} ({self._last_error}); {len(self._queue)} events queued{spool}"

    def _url(self) -> str:
        return str(getattr(self.store, "url", self.store))

    def _failing(self) -> None:
        if self._state == "healthy":
            self._state = "failing"
            self._failing_since = time.monotonic()
            log.error(
                "event store %s is failing (%s): keeping %d events queued and retrying with backoff%s",
                self._url(), self._last_error, len(self._queue),
                f"; spilling to {self.spool.directory} after {self.spool_after_s:g} s" if self.spool else "",
            )

    def _healthy(self) -> None:
        if self._state != "healthy":
            since = self._failing_since
            down_s = time.monotonic() - since if since is not None else 0.0
            self._state = "healthy"
            self._failing_since = None
            log.warning(
                "event store %s is healthy again after %.1f s%s", self._url(), down_s,
                f"; {self._spooled} events were spooled to {self.spool.directory}: load them with "
                f"`abharness spool load --store URL --spool-dir {self.spool.directory}`"
                if self._spooled and self.spool is not None else "",
            )

    def _should_spill(self) -> bool:
        if self._closing:
            return True
        if len(self._queue) >= self.spool_at_fraction * self.max_queue:
            return True
        since = self._failing_since
        return since is not None and time.monotonic() - since >= self.spool_after_s

    def _spill(self, why: str) -> None:
        """Append the whole queue to the spool (fsynced) and forget it; on a spool failure keep it queued."""
        assert self.spool is not None
        with self._cond:
            events = list(self._queue)
        if not events:
            return
        try:
            path = self.spool.spill(events)
        except OSError as exc:
            if not self._spool_error_logged:
                self._spool_error_logged = True
                log.error("cannot write the spool in %s (%s): %d events stay queued", self.spool.directory, exc,
                          len(events))
            return
        self._spool_error_logged = False
        with self._cond:
            for _ in range(min(len(events), len(self._queue))):
                self._queue.popleft()
            self._spooled += len(events)
            self._cond.notify_all()
        if self._state != "spooling":
            log.error("%s: spooled %d accepted events to %s (further spills are logged at INFO)", why,
                      len(events), path)
            self._state = "spooling"
        else:
            log.info("spooled %d more events to %s", len(events), path)

    def _quarantine(self, event: Event, exc: Exception) -> None:
        where = "not written (no spool directory configured)"
        if self.spool is not None:
            try:
                where = f"quarantined in {self.spool.quarantine([event])}"
            except OSError as err:
                where = f"could not be quarantined ({err})"
        log.error("the store refuses %s %r on its own: %s; %s", type(event).__name__, event, exc, where)
        with self._cond:
            if self._queue:
                self._queue.popleft()
            self._quarantined += 1
            self._cond.notify_all()
