"""``abharness ingest``: fill a SQLite or PostgreSQL store, or a Parquet directory, from a NATS JetStream stream
(at least once; idempotent results)."""

from __future__ import annotations

import json
import signal
import sys
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["register"]


def ingest_command(
    source: Annotated[str, typer.Option("--from", help="Stream URL, e.g. nats://127.0.0.1:4222/ABHARNESS?subject="
                                                       "abharness.events (the proxy's store_url).")],
    to: Annotated[str, typer.Option("--to", help="Store to fill: sqlite:///events.db, postgresql://... or "
                                                 "parquet:///DIR (files in the layout of `abharness export`).")],
    durable: Annotated[str, typer.Option(help="Durable consumer name; ingest processes sharing it share the work "
                                              "and resume where it stopped.")] = "abharness-ingest",
    batch: Annotated[int, typer.Option(help="Messages per fetch = events per store transaction.")] = 500,
    ack_wait: Annotated[float, typer.Option(help="Seconds before JetStream redelivers a message fetched and not "
                                                 "acked (a crashed ingest); set when the consumer is created.")] = 30.0,
    max_idle: Annotated[float | None, typer.Option(help="Stop after this many seconds without a message "
                                                           "(default: run until SIGTERM/SIGINT).")] = None,
    linger: Annotated[float | None, typer.Option(help="Keep fetching until --batch messages or this many seconds "
                                                        "since the first, then write them as one batch (default: 0 "
                                                        "for databases, 5 for Parquet: fewer, larger files).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the final counters as JSON.")] = False,
) -> None:
    """Consume the stream with a durable pull consumer and write each batch into the store, acking only after the
    store committed it (Parquet: after the files are fsync-ed and renamed). SIGTERM or Ctrl-C stops after the batch
    in hand is written and acked. Redelivered events are ignored by the store's keys (Parquet: written again and
    read once, the reader keeps one row per key), so analysis counts each event once."""
    from abharness.errors import ConfigError
    from abharness.library import open_store
    from abharness.stores.nats_ingest import IngestStats, NatsIngest
    from abharness.stores.stream import BatchSink

    if not source.startswith("nats://"):
        raise ConfigError(f"--from {source!r} is not a stream URL; write nats://HOST:PORT/STREAM?subject=SUBJECT")
    if to.startswith("nats://"):
        raise ConfigError(f"--to {to!r} cannot be written by ingest; use sqlite:///events.db, postgresql://... or "
                          "parquet:///DIR")
    store: BatchSink
    if to.startswith("parquet:///"):
        from abharness.stores.parquet_sink import ParquetSink

        path = to[len("parquet:///"):]
        if not path:
            raise ConfigError(f"--to {to!r} names no directory; write parquet:///warehouse (relative) or "
                              "parquet:////abs/warehouse (absolute)")
        sink = ParquetSink(path, url=to)
        sink.migrate()
        store = sink
        linger_s = 5.0 if linger is None else linger
    else:
        store = open_store(to, create=True)
        linger_s = 0.0 if linger is None else linger
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    last = [0.0]

    def progress(stats: IngestStats) -> None:
        import time

        now = time.monotonic()
        if not json_out and now - last[0] >= 2.0:
            last[0] = now
            err.print(f"ingest: {stats.acked} acked, {stats.stored} stored, {stats.duplicates} duplicates, "
                      f"{stats.bad} bad")

    try:
        worker = NatsIngest(source, store, durable=durable, batch=batch, ack_wait_s=ack_wait, max_idle_s=max_idle,
                            linger_s=linger_s, on_batch=progress)
        previous = {s: signal.signal(s, lambda *_: worker.stop()) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            stats = worker.run()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    finally:
        store.close()
    if json_out:
        typer.echo(json.dumps(stats.as_dict()))
    else:
        d = stats.as_dict()
        Console(soft_wrap=True).print(f"ingest stopped: {d['acked']} acked, {d['stored']} stored, "
                                      f"{d['duplicates']} duplicates, {d['bad']} bad in {d['seconds']} s")
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_command)
