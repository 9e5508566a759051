"""``ArmWorkers``: the threads that run one arm's blocking ``backend.search`` calls for the event loop.

The proxy's searches are synchronous (an encoder, FAISS, a blocking HTTP client), so each one runs in a worker
thread while the event loop serves other requests. This is the hand-off on the request path, so it is kept to the
minimum: the caller's asyncio future is resolved by the worker through ``loop.call_soon_threadsafe``, and the
timeout is a timer on the loop that fails the future (no cancel scopes, no capacity-limiter checkpoints, no extra
trips through the loop as with ``anyio.to_thread.run_sync`` + ``anyio.fail_after`` + a ``CapacityLimiter``).

Semantics (the same as before):

- at most ``limit`` calls of one arm run at once (default 64, per arm, so a hung treatment cannot take control's
  threads); further calls wait their turn in FIFO order, and that wait counts against their timeout;
- a call that times out is abandoned: the caller gets ``ArmTimeout`` at the deadline; if its search has not
  started yet it never starts, if it is running it finishes in its thread and its result is dropped;
- a call whose caller was cancelled is abandoned the same way;
- the worker runs the call in a copy of the caller's ``contextvars`` context.

Threads are daemons (a hung backend call never blocks the interpreter's exit) and leave after ``idle_s`` without
work; they are started on demand.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ArmWorkers", "ArmTimeout"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class ArmTimeout(TimeoutError):
    """The call did not finish before its deadline (it was abandoned)."""


def _deliver(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # timed out or cancelled meanwhile: the result is dropped
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _expire(fut: asyncio.Future[Any], timeout_s: float) -> None:
    if not fut.done():
        fut.set_exception(ArmTimeout(f"no answer within {timeout_s:g} s"))


_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context, Callable[..., Any], tuple[Any, ...]]


class ArmWorkers:
    """A small on-demand pool of daemon threads for one arm's calls (thread-safe; see the module docstring)."""

    def __init__(self, name: str, limit: int = 64, idle_s: float = 10.0) -> None:
        if limit < 1:
            raise ValueError(f"limit={limit!r}: need at least one thread")
        self.name = name
        self.limit = limit
        self.idle_s = idle_s
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0  # started and not exited
        self._busy = 0  # running a job
        self._pending = 0  # submitted and not yet taken by a worker

    @property
    def threads(self) -> int:
        return self._threads

    async def run(self, timeout_s: float, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread; raises ``ArmTimeout`` after ``timeout_s`` (the call is abandoned)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        timer = loop.call_later(timeout_s, _expire, fut, timeout_s)
        self._submit((loop, fut, contextvars.copy_context(), fn, args))
        try:
            return await fut
        finally:
            timer.cancel()

    def _submit(self, job: _Job) -> None:
        with self._lock:
            self._jobs.put(job)
            self._pending += 1
            # A worker that took a job but has not counted itself busy yet is still counted free here, and its
            # job still pending: the two cancel out, so this compares idle workers with jobs nobody took.
            if self._threads - self._busy < self._pending and self._threads < self.limit:
                self._threads += 1
                start = True
            else:
                start = False
        if start:
            try:
                threading.Thread(target=self._work, name=f"abharness-arm-{self.name}", daemon=True).start()
            except BaseException:
                with self._lock:
                    self._threads -= 1
                raise

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:
                    if self._pending == 0:
                        self._threads -= 1
                        return
                continue
            with self._lock:
                self._pending -= 1
                self._busy += 1
            self._run(job)

    def _run(self, job: _Job) -> None:
        loop, fut, context, fn, args = job
        result: Any = None
        exc: BaseException | None = None
        try:
            if fut.done():  # abandoned while it waited for a thread (timed out or cancelled): never started
                return
            try:
                result = context.run(fn, *args)
            except BaseException as e:  # noqa: BLE001 - handed to the caller, like any result
                exc = e
        finally:
            with self._lock:
                self._busy -= 1
        # Hand the result over last: the event loop's thread wakes up for it while this one goes back to wait.
        try:
            loop.call_soon_threadsafe(_deliver, fut, result, exc)
        except RuntimeError:  # the loop closed meanwhile (shutdown): nobody waits for this result
            log.debug("arm %s: a search finished after its event loop closed; result dropped", self.name)
