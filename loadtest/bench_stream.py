"""Benchmark: what one JetStream stream takes from publishers (publish with acks), and what one ``abharness
ingest`` worker takes from it into SQLite, PostgreSQL and Parquet, side by side in one run.

    .venv/bin/python loadtest/bench_stream.py [--server nats://127.0.0.1:4222] [--events 60000]
                                              [--batches 100,500,2000] [--concurrency 1,4] [--ingest-events 60000]
                                              [--sinks sqlite,postgresql,parquet] [--pg-url postgresql://...]

Events are the ones ``bench_store.py`` writes (proxy-like: impressions with 10 ranked results, fingerprints and
context, 30% followed by a click), so the figures compare with its writer figures.

Publish rows: ``P`` publisher processes (each its own ``NatsStore``, as ``P`` proxy replicas) publish ``--events``
in total through ``NatsStore.write_batch`` in batches of ``B`` (what the proxy's ``EventWriter`` does: every
message of the batch in flight at once, the call returns when JetStream has acked each). Rate = events acked /
wall time from the common start to the last publisher's end. Baseline in the same run: core NATS publish of the
same bodies without JetStream acks (``nc.publish`` + ``flush``: the transport's ceiling on this machine).

Ingest rows: a stream holding ``--ingest-events`` events; one ``NatsIngest`` worker per sink, each with its own
durable consumer, run one after the other; rate = events acked / time from its first fetch to its last ack
(the idle wait at the end is not counted). SQLite and PostgreSQL take ``--db-batch`` per transaction (the
ingest default, 500); Parquet takes ``--parquet-batch`` per file write (linger 5 s).

Every stream is named ``ABH_SCALE_<pid>_<n>`` (subjects ``abh_scale.<pid>.<n>``) and deleted at the end; the
PostgreSQL database is a fresh one, dropped at the end. Prints the load average before and after each row.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "loadtest"))

SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
_STREAMS: list[str] = []


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def stream_url(server: str, n: int, timeout_s: float = 10.0) -> str:
    name = f"ABH_SCALE_{os.getpid()}_{n}"
    _STREAMS.append(name)
    return f"{server}/{name}?subject=abh_scale.{os.getpid()}.{n}&timeout_s={timeout_s}"


def delete_streams(server: str) -> None:
    import nats

    async def go() -> None:
        nc = await nats.connect(servers=[server], connect_timeout=5)
        js = nc.jetstream()
        for name in _STREAMS:
            try:
                await js.delete_stream(name)
            except Exception as exc:  # noqa: BLE001 - never created (a failed run) or already gone
                print(f"  (stream {name}: {type(exc).__name__})", file=sys.stderr)
        await nc.close()

    asyncio.run(go())


def stream_bytes(url: str) -> tuple[int, int]:
    """(messages, bytes) the stream stores."""
    import nats

    from abharness.stores.nats import parse_nats_url

    t = parse_nats_url(url)

    async def go() -> tuple[int, int]:
        nc = await nats.connect(servers=[t.server], connect_timeout=5)
        info = await nc.jetstream().stream_info(t.stream)
        await nc.close()
        return int(info.state.messages), int(info.state.bytes)

    return asyncio.run(go())


def publisher(url: str, n: int, batch: int, seed: str, ready, go, out) -> None:  # type: ignore[no-untyped-def]
    from bench_store import make_events

    from abharness.stores import open_store

    events = make_events(n, seed=seed)
    store = open_store(url)  # connects and creates the stream (migrate)
    ready.put(os.getpid())
    go.wait()
    t0 = time.time()
    stored = dups = 0
    for i in range(0, len(events), batch):
        r = store.write_batch(events[i:i + batch])
        stored, dups = stored + r.stored, dups + r.duplicates
    out.put({"t1": time.time(), "t0": t0, "stored": stored, "duplicates": dups})
    store.close()


def run_publish(url: str, total: int, batch: int, procs: int) -> dict:
    ctx = mp.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    ps = [ctx.Process(target=publisher, args=(url, total // procs, batch, uuid.uuid4().hex[:8], ready, go, out))
          for _ in range(procs)]
    for p in ps:
        p.start()
    for _ in ps:
        ready.get(timeout=600)
    start = time.time()
    go.set()
    res = [out.get(timeout=1800) for _ in ps]
    end = max(r["t1"] for r in res)
    for p in ps:
        p.join()
    stored = sum(r["stored"] for r in res)
    return {"events": stored, "seconds": end - start, "rate": stored / (end - start),
            "duplicates": sum(r["duplicates"] for r in res)}


def run_core_publish(server: str, total: int) -> dict:
    """Baseline: core NATS publish (no JetStream, no acks) of the same bodies, then one flush."""
    import nats
    from bench_store import make_events

    from abharness.stores.stream import encode_event

    bodies = [encode_event(e) for e in make_events(total, seed="core")]

    async def go() -> float:
        nc = await nats.connect(servers=[server], connect_timeout=5)
        t0 = time.perf_counter()
        for b in bodies:
            await nc.publish(f"abh_scale.core.{os.getpid()}", b)
        await nc.flush(timeout=60)
        dt = time.perf_counter() - t0
        await nc.close()
        return dt

    dt = asyncio.run(go())
    return {"events": total, "seconds": dt, "rate": total / dt, "bytes": sum(len(b) for b in bodies) / total}


def run_ingest(url: str, sink_url: str, batch: int, linger: float) -> dict:
    from abharness.stores.nats_ingest import NatsIngest

    if sink_url.startswith("parquet:///"):
        from abharness.stores.parquet_sink import ParquetSink

        sink = ParquetSink(sink_url[len("parquet:///"):], url=sink_url)
        sink.migrate()
    else:
        from abharness.stores import open_store

        sink = open_store(sink_url)
    times: list[float] = []
    worker = NatsIngest(url, sink, durable=f"bench-{uuid.uuid4().hex[:6]}", batch=batch, linger_s=linger,
                        ack_wait_s=max(30.0, 4 * linger), max_idle_s=8.0,
                        on_batch=lambda s: times.append(time.perf_counter()))
    t0 = time.perf_counter()
    stats = worker.run()
    sink.close()
    end = times[-1] if times else time.perf_counter()
    return {"events": stats.acked, "stored": stats.stored, "seconds": end - t0, "rate": stats.acked / (end - t0),
            "batches": len(times)}


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", default="nats://127.0.0.1:4222")
    ap.add_argument("--events", type=int, default=60_000, help="events per publish row (all publishers together)")
    ap.add_argument("--batches", default="100,500,2000")
    ap.add_argument("--concurrency", default="1,4")
    ap.add_argument("--ingest-events", type=int, default=60_000)
    ap.add_argument("--sinks", default="sqlite,postgresql,parquet")
    ap.add_argument("--db-batch", type=int, default=500)
    ap.add_argument("--parquet-batch", type=int, default=20_000)
    ap.add_argument("--pg-url", default=None, help="admin URL of a PostgreSQL server (a fresh database is made)")
    ap.add_argument("--skip-publish", action="store_true")
    args = ap.parse_args()

    n = 0
    tmp = Path(tempfile.mkdtemp(prefix="abh_scale_"))
    made_db: tuple[str, str] | None = None
    try:
        print(f"stream benchmark on {os.cpu_count()} CPUs, server {args.server}, load average {os.getloadavg()}")
        if not args.skip_publish:
            print(f"\n{'publish':<44}{'events':>9}{'seconds':>9}{'events/s':>11}  load before -> after")
            before = load()
            core = run_core_publish(args.server, args.events)
            print(f"{'core NATS, no acks (baseline), 1 conn':<44}{core['events']:>9}{core['seconds']:>9.2f}"
                  f"{core['rate']:>11,.0f}  {before} -> {load()}   ({core['bytes']:.0f} bytes/event body)")
            for procs in [int(x) for x in args.concurrency.split(",")]:
                for batch in [int(x) for x in args.batches.split(",")]:
                    n += 1
                    url = stream_url(args.server, n)
                    before = load()
                    r = run_publish(url, args.events, batch, procs)
                    msgs, nbytes = stream_bytes(url)
                    label = f"JetStream + acks, {procs} publisher(s), batch {batch}"
                    print(f"{label:<44}{r['events']:>9}{r['seconds']:>9.2f}{r['rate']:>11,.0f}  {before} -> {load()}"
                          f"   (stream: {msgs} msgs, {nbytes / max(msgs, 1):.0f} bytes/msg)")
                    delete_streams(args.server)
                    _STREAMS.clear()
        # ingest: one stream filled once, one durable per sink
        n += 1
        url = stream_url(args.server, n)
        before = load()
        fill = run_publish(url, args.ingest_events, 500, 2)
        print(f"\ningest source: {fill['events']} events published ({fill['rate']:,.0f}/s, load {before} -> {load()})")
        print(f"{'ingest, 1 worker, into':<44}{'events':>9}{'seconds':>9}{'events/s':>11}  load before -> after")
        for sink in args.sinks.split(","):
            if sink == "sqlite":
                target, batch, linger = f"sqlite:///{tmp / 'events.db'}", args.db_batch, 0.0
            elif sink == "postgresql":
                from abharness.stores.pgtemp import create_database, server_answers

                admin = args.pg_url or SYSTEM_PG
                if not server_answers(admin):
                    print(f"{'postgresql':<44} skipped: no server at {admin.split('@')[-1]}")
                    continue
                name = create_database(admin, prefix="abh_scale")
                made_db = (admin, name)
                target, batch, linger = f"{admin.rsplit('/', 1)[0]}/{name}", args.db_batch, 0.0
            elif sink == "parquet":
                target, batch, linger = f"parquet:///{tmp / 'pq'}", args.parquet_batch, 5.0
            else:
                sys.exit(f"--sinks: unknown sink {sink!r}; valid: sqlite, postgresql, parquet")
            before = load()
            r = run_ingest(url, target, batch, linger)
            extra = ""
            if sink == "sqlite":
                extra = f"   ({size_of(tmp) / r['stored']:.0f} bytes/event on disk incl. rollups)"
            elif sink == "parquet":
                extra = f"   ({size_of(tmp / 'pq') / r['stored']:.0f} bytes/event in Parquet, {r['batches']} writes)"
            label = f"{sink} (batch {batch}{', linger %g s' % linger if linger else ''})"
            print(f"{label:<44}{r['events']:>9}{r['seconds']:>9.2f}{r['rate']:>11,.0f}  {before} -> {load()}{extra}")
    finally:
        delete_streams(args.server)
        if made_db is not None:
            from abharness.stores.pgtemp import drop_database

            drop_database(*made_db)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nload average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
