"""A write-only event store that publishes the proxy's events to NATS JetStream (``nats://HOST:PORT/STREAM``).

``open_store("nats://127.0.0.1:4222/ABHARNESS?subject=abharness.events")`` gives an ``EventStore`` whose
``write_batch`` publishes each event as one message (``abharness.stores.stream``: JSON body, stable event id) and
waits for JetStream's publish acknowledgement of every one. Any publish without an ack (server down, timeout,
stream refusing) raises ``StoreError``: the batch failed, and the ``EventWriter`` keeps, retries, spools or
quarantines it exactly as for a database. Each message carries the ``Nats-Msg-Id`` header (the event id), so a
batch re-published after an ambiguous failure is dropped by the stream's duplicate window (acked with
``duplicate``, counted as a duplicate) and, past that window, by the consumer's idempotent store writes.

The batch is not atomic on the stream (some messages may be stored before a failure); a retry re-publishes the
whole batch and the message ids make that harmless.

``migrate()`` connects and creates the stream (subjects = the one subject, file storage) when it does not exist.
``ping()`` asks the server for the stream's info (a round trip to JetStream). Reads are refused, except
``audit_log`` which returns an empty list: a proxy on the stream does not restore admin state from an audit log at
start (see docs/storage.md); analysis reads the store ``abharness ingest`` fills.

nats-py is asyncio; the writer thread is not. The store runs one private event loop in a daemon thread and every
call waits on it with a bounded timeout.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from abharness.core.events import AuditEntry, Click, Event, Feedback, Impression, InterleaveUnitAggregate, UnitAggregate
from abharness.errors import ConfigError, StoreError
from abharness.stores.base import WriteResult
from abharness.stores.stream import encode_event, event_id

__all__ = ["EventLoopThread", "NatsStore", "NatsTarget", "parse_nats_url"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_NAME_OK = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass(frozen=True)
class NatsTarget:
    """Where a ``nats://`` URL points: the server, the JetStream stream and the subject events go to."""

    server: str
    stream: str
    subject: str
    timeout_s: float = 5.0


def parse_nats_url(url: str) -> NatsTarget:
    """Parse ``nats://HOST:PORT/STREAM?subject=SUBJECT[&timeout_s=S]`` (subject defaults to ``abharness.events``)."""
    parts = urlsplit(url)
    example = "nats://127.0.0.1:4222/ABHARNESS?subject=abharness.events"
    if parts.scheme != "nats" or not parts.hostname:
        raise ConfigError(f"stream URL {url!r} names no server; write {example}")
    stream = parts.path.strip("/")
    if not stream or not set(stream) <= _NAME_OK:
        raise ConfigError(f"stream URL {url!r}: stream name {stream!r} must be letters, digits, '_' or '-'; "
                          f"write {example}")
    query = parse_qs(parts.query)
    unknown = set(query) - {"subject", "timeout_s"}
    if unknown:
        raise ConfigError(f"stream URL {url!r}: unknown parameter(s) {', '.join(sorted(unknown))}; valid: subject, "
                          "timeout_s")
    subject = query.get("subject", ["abharness.events"])[-1]
    if not subject or any(c in subject for c in " *>\t"):
        raise ConfigError(f"stream URL {url!r}: subject {subject!r} must be a literal subject such as "
                          "abharness.events (no spaces or wildcards)")
    try:
        timeout_s = float(query.get("timeout_s", ["5"])[-1])
    except ValueError:
        timeout_s = -1.0
    if not timeout_s > 0:
        raise ConfigError(f"stream URL {url!r}: timeout_s must be a positive number of seconds (e.g. 5)")
    port = parts.port or 4222
    return NatsTarget(server=f"nats://{parts.hostname}:{port}", stream=stream, subject=subject, timeout_s=timeout_s)


class EventLoopThread:
    """One private asyncio loop in a daemon thread; ``run(coro, timeout)`` waits for a result from any thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout=timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        async def cancel_all() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        if self.loop.is_running():
            try:
                self.run(cancel_all(), 5.0)
            except Exception:  # noqa: BLE001, S110 - a loop that cannot even cancel is stopped below all the same
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5.0)
        if not self.loop.is_running():
            self.loop.close()


async def connect(server: str, timeout_s: float) -> Any:
    """A nats-py connection that reconnects by itself forever (an outage is the writer's business, not ours)."""
    import nats

    async def on_error(exc: Exception) -> None:  # the caller turns a failed call into StoreError; no tracebacks
        log.debug("nats connection to %s: %s", server, exc)

    return await nats.connect(
        servers=[server], connect_timeout=timeout_s, allow_reconnect=True, max_reconnect_attempts=-1,
        reconnect_time_wait=0.25, name="abharness", error_cb=on_error,
    )


async def ensure_stream(js: Any, target: NatsTarget) -> None:
    """Create the stream when it does not exist; refuse one that does not take ``target.subject``."""
    from nats.js.errors import NotFoundError

    try:
        info = await js.stream_info(target.stream)
    except NotFoundError:
        await js.add_stream(name=target.stream, subjects=[target.subject])
        return
    subjects = info.config.subjects or []
    if target.subject not in subjects and not any(s.endswith(">") or "*" in s for s in subjects):
        raise StoreError(f"JetStream stream {target.stream!r} takes subjects {subjects}, not {target.subject!r}; "
                         "use ?subject= with one of them or another stream name")


class NatsStore:
    """``EventStore`` that publishes to JetStream with acks; see the module docstring for the guarantees."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.target = parse_nats_url(url)
        self._io = EventLoopThread("abharness-nats-store")
        self._nc: Any = None
        self._js: Any = None
        self._connecting = asyncio.Lock()  # the writer thread and request threads may call at once

    # -- plumbing -------------------------------------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T], what: str, timeout_s: float | None = None) -> T:
        try:
            return self._io.run(coro, timeout_s or self.target.timeout_s + 1.0)
        except StoreError:
            raise
        except Exception as exc:  # nats errors, timeouts, connection refused
            text = str(exc) or type(exc).__name__
            raise StoreError(f"store {self.url!r}: {what} failed ({text}); is nats-server -js running at "
                             f"{self.target.server}?") from exc

    async def _connected(self) -> Any:
        async with self._connecting:
            if self._nc is None:
                nc = await connect(self.target.server, self.target.timeout_s)
                self._js = nc.jetstream(timeout=self.target.timeout_s)
                self._nc = nc
        return self._js

    async def _migrate(self) -> None:
        await ensure_stream(await self._connected(), self.target)

    async def _ping(self) -> None:
        js = await self._connected()
        await js.stream_info(self.target.stream)

    async def _publish(self, events: Sequence[Event]) -> WriteResult:
        js = await self._connected()
        acks = await asyncio.gather(*(
            js.publish(self.target.subject, encode_event(e), timeout=self.target.timeout_s,
                       stream=self.target.stream, headers={"Nats-Msg-Id": event_id(e)})
            for e in events
        ), return_exceptions=True)
        errors = [a for a in acks if isinstance(a, BaseException)]
        if errors:
            raise StoreError(f"store {self.url!r}: {len(errors)} of {len(events)} publishes were not acknowledged "
                             f"({type(errors[0]).__name__}: {errors[0] or 'timeout'})")
        duplicates = sum(1 for a in acks if getattr(a, "duplicate", False))
        return WriteResult(stored=len(events) - duplicates, duplicates=duplicates)

    # -- EventStore: writes ---------------------------------------------------------------------------------
    def migrate(self) -> None:
        self._call(self._migrate(), "creating the JetStream stream")

    def ping(self) -> None:
        self._call(self._ping(), "asking JetStream for the stream")

    def write_batch(self, events: Sequence[Event]) -> WriteResult:
        if not events:
            return WriteResult(0, 0)
        return self._call(self._publish(events), f"publishing {len(events)} events",
                          timeout_s=self.target.timeout_s * 2 + 1.0)

    def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            try:
                self._io.run(nc.close(), 5.0)
            except Exception:  # noqa: BLE001, S110 - closing a connection to a dead server: nothing left to release
                pass
        self._io.stop()

    # -- EventStore: reads (the stream is not queryable; read the store `abharness ingest` fills) ---------
    def _no_reads(self, what: str) -> StoreError:
        return StoreError(f"store {self.url!r} is a write-only event stream; {what} needs the store that "
                          "`abharness ingest --from URL --to STORE` fills (sqlite:///... or postgresql://...)")

    def audit_log(self, experiment_id: str) -> list[AuditEntry]:
        return []

    def get_impression(self, impression_id: str) -> Impression | None:
        raise self._no_reads("get_impression")

    def experiments(self) -> list[str]:
        raise self._no_reads("listing experiments")

    def arms(self, experiment_id: str) -> list[str]:
        raise self._no_reads("listing arms")

    def unit_aggregates(self, experiment_id: str, **kwargs: Any) -> Iterator[UnitAggregate]:
        raise self._no_reads("analysis")

    def interleave_aggregates(self, experiment_id: str, **kwargs: Any) -> Iterator[InterleaveUnitAggregate]:
        raise self._no_reads("analysis")

    def traffic_counts(self, experiment_id: str, **kwargs: Any) -> list[tuple[float, str, int, int]]:
        raise self._no_reads("traffic counts")

    def unit_activity(self, experiment_id: str, **kwargs: Any) -> list[tuple[str, str, int, int, int]]:
        raise self._no_reads("unit activity")

    def iter_impressions(self, experiment_id: str, **kwargs: Any) -> Iterator[tuple[Impression, list[Click]]]:
        raise self._no_reads("replay")

    def feedback(self, experiment_id: str) -> list[Feedback]:
        raise self._no_reads("feedback")

    def counts(self, experiment_id: str | None = None) -> dict[str, int]:
        raise self._no_reads("counts")
