"""``abharness ingest``: move events from a JetStream stream into a store, at least once, idempotently.

A durable *pull* consumer (``--durable NAME``; several ingest processes may share it, JetStream hands each fetched
batch to one of them) fetches up to ``batch`` messages (with ``linger_s`` > 0 it keeps fetching until ``batch``
messages or ``linger_s`` seconds since the first, so a Parquet sink writes fewer, larger files), decodes them
(``abharness.stores.stream``), writes them with the sink's ``write_batch`` (a database: one transaction,
duplicates ignored by key; Parquet: fsync-ed files renamed into place, ``abharness.stores.parquet_sink``) and acks
the messages only after that, waiting for the server to confirm the acks. Hence:

* a crash (SIGKILL) before the commit loses nothing: the unacked messages are redelivered after ``ack_wait_s``;
* a crash between the commit and the acks stores nothing twice: the redelivered events hit the store's keys
  (impression id, (impression id, doc id), ...) and are counted as duplicates (Parquet: they are written again,
  and the reader keeps one row per key, so the analysis counts them once);
* a store failure naks the batch (redelivered after ``retry_s``) and the loop backs off; nothing is acked unstored;
* a message that is not an event is logged and terminated (never redelivered), counted in ``bad``.

``stop()`` (wired to SIGTERM/SIGINT by the CLI) ends the loop after the batch in hand is committed and acked.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from abharness.core.events import Event
from abharness.errors import ConfigError, StoreError
from abharness.stores.nats import connect, ensure_stream, parse_nats_url
from abharness.stores.stream import BatchSink, decode_event

__all__ = ["IngestStats", "NatsIngest"]

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    """What one ingest process did: messages received (``redelivered``: of those, delivered before to some consumer
    of the durable and not acked), events newly stored, duplicates, acked, bad messages, failed store writes."""

    received: int = 0
    redelivered: int = 0
    stored: int = 0
    duplicates: int = 0
    acked: int = 0
    bad: int = 0
    failed_batches: int = 0
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, int | float]:
        return {"received": self.received, "redelivered": self.redelivered, "stored": self.stored, "duplicates": self.duplicates,
                "acked": self.acked, "bad": self.bad, "failed_batches": self.failed_batches,
                "seconds": round(time.monotonic() - self.started, 3)}


class NatsIngest:
    """One ingest worker: ``run()`` blocks until ``stop()`` (or ``max_idle_s`` without a message, when set)."""

    def __init__(self, source_url: str, store: BatchSink, *, durable: str = "abharness-ingest", batch: int = 500,
                 ack_wait_s: float = 30.0, retry_s: float = 1.0, max_idle_s: float | None = None,
                 linger_s: float = 0.0, on_batch: Callable[[IngestStats], None] | None = None) -> None:
        self.target = parse_nats_url(source_url)
        if int(batch) < 1:
            raise ConfigError(f"--batch {batch!r} must be a positive number of messages (e.g. 500)")
        if not durable or not set(durable) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"):
            raise ConfigError(f"--durable {durable!r} must be letters, digits, '_' or '-' (e.g. abharness-ingest)")
        if not ack_wait_s > 0:
            raise ConfigError(f"ack_wait_s={ack_wait_s!r} must be > 0 seconds (e.g. 30)")
        if not 0 <= linger_s <= ack_wait_s / 3:
            raise ConfigError(f"--linger {linger_s!r} must be between 0 and a third of --ack-wait ({ack_wait_s} s), "
                              "or JetStream redelivers what is still being gathered; raise --ack-wait or lower it")
        self.source_url = source_url
        self.store = store
        self.durable = durable
        self.batch = int(batch)
        self.ack_wait_s = float(ack_wait_s)
        self.retry_s = float(retry_s)
        self.max_idle_s = max_idle_s
        self.linger_s = float(linger_s)
        self.on_batch = on_batch
        self.stats = IngestStats()
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask the loop to end after the batch in hand (safe from a signal handler or another thread)."""
        self._stop.set()

    def run(self) -> IngestStats:
        """Consume until stopped; returns the counters. Raises ``StoreError`` when the stream cannot be reached."""
        return asyncio.run(self._run())

    async def _subscribe(self) -> tuple[object, object]:
        from nats.js.api import AckPolicy, ConsumerConfig

        try:
            nc = await asyncio.wait_for(connect(self.target.server, self.target.timeout_s), self.target.timeout_s + 1)
        except Exception as exc:
            raise StoreError(f"stream {self.source_url!r}: cannot connect ({exc or type(exc).__name__}); is "
                             f"nats-server -js running at {self.target.server}?") from exc
        try:
            js = nc.jetstream(timeout=self.target.timeout_s)
            await ensure_stream(js, self.target)
            sub = await js.pull_subscribe(
                self.target.subject, durable=self.durable, stream=self.target.stream,
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait_s,
                                      max_ack_pending=max(1000, 4 * self.batch)),
            )
        except StoreError:
            await nc.close()
            raise
        except Exception as exc:
            await nc.close()
            raise StoreError(f"stream {self.source_url!r}: cannot create the durable consumer {self.durable!r} "
                             f"({exc or type(exc).__name__})") from exc
        return nc, sub

    async def _run(self) -> IngestStats:
        from nats.errors import TimeoutError as NatsTimeout

        nc, sub = await self._subscribe()
        last_message = time.monotonic()
        pending: list = []  # type: ignore[type-arg]  # fetched, not yet written (only while lingering)
        first_at = 0.0
        try:
            while not self._stop.is_set():
                wait = 1.0 if not pending else min(1.0, max(0.05, first_at + self.linger_s - time.monotonic()))
                try:
                    msgs = await sub.fetch(self.batch - len(pending), timeout=wait)  # type: ignore[attr-defined]
                except (TimeoutError, NatsTimeout):
                    msgs = []
                except Exception as exc:  # noqa: BLE001 - server restarting: the client reconnects by itself
                    log.warning("fetching from %s failed (%s); retrying", self.source_url, exc)
                    await asyncio.sleep(self.retry_s)
                    continue
                now = time.monotonic()
                if msgs:
                    if not pending:
                        first_at = now
                    pending.extend(msgs)
                    last_message = now
                if pending and (len(pending) >= self.batch or now - first_at >= self.linger_s):
                    batch, pending = pending, []
                    await self._handle(nc, batch)
                elif not pending and self.max_idle_s is not None and now - last_message >= self.max_idle_s:
                    break
            if pending:  # stopped while lingering: write and ack what is in hand
                await self._handle(nc, pending)
        finally:
            # Every ack was flushed after its batch; close (a drain would wait out the pull request's timeout).
            await nc.close()  # type: ignore[attr-defined]
        return self.stats

    async def _handle(self, nc: object, msgs: list) -> None:  # type: ignore[type-arg]
        self.stats.received += len(msgs)
        events: list[Event] = []
        good = []
        for msg in msgs:
            try:
                if msg.metadata.num_delivered > 1:
                    self.stats.redelivered += 1
            except Exception:  # noqa: BLE001, S110 - no JetStream metadata: not ours to judge, decode decides
                pass
            try:
                events.append(decode_event(msg.data))
                good.append(msg)
            except ValueError as exc:
                log.error("message %s on %s is not an event (%s); terminated, not redelivered",
                          msg.headers.get("Nats-Msg-Id") if msg.headers else "?", msg.subject, exc)
                await msg.term()
                self.stats.bad += 1
        if events:
            try:
                result = await asyncio.to_thread(self.store.write_batch, events)
            except Exception as exc:  # noqa: BLE001 - store down: nothing acked, JetStream redelivers
                self.stats.failed_batches += 1
                log.warning("writing %d events to %s failed (%s); they will be redelivered", len(events),
                            getattr(self.store, "url", self.store), exc)
                for msg in good:
                    await msg.nak(delay=self.retry_s)
                await asyncio.sleep(self.retry_s)
                return
            self.stats.stored += result.stored
            self.stats.duplicates += result.duplicates
        for msg in good:
            await msg.ack()
        await nc.flush(timeout=self.target.timeout_s)  # type: ignore[attr-defined]
        self.stats.acked += len(good)
        if self.on_batch is not None:
            self.on_batch(self.stats)
