"""proxy -> NATS JetStream -> ``abharness ingest`` -> SQLite, against a real nats-server started here on a free
loopback port with its own store directory (skipped, saying why, when /usr/sbin/nats-server is absent)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from abharness.api.app import create_app
from abharness.config import parse_config
from abharness.core.events import Impression
from abharness.errors import ConfigError, StoreError
from abharness.stores import open_store
from abharness.stores.nats import parse_nats_url
from abharness.stores.spool import load_spool
from abharness.stores.stream import decode_event, encode_event, event_id
from abharness.stores.writer import EventWriter
from abharness.testing.client import serving
from abharness.testing.configs import config_dict
from abharness.testing.natsserver import (
    NatsServer,
    consumer_state,
    impressions,
    start_ingest,
    stop_ingest,
    wait_for_progress,
    wait_until,
)


@pytest.fixture
def nats_server(tmp_path: Path):
    server = NatsServer(tmp_path / "js")
    server.start()
    yield server
    server.kill()


def _imp(i: int) -> Impression:
    return Impression(impression_id=f"imp-{i:06d}", experiment_id="exp1", ts=1.7e9 + i, unit_id=f"u{i % 97}",
                      arm="baseline", mode="ab", query=f"q{i}", k=1, results=(), latency_ms=1.0)


def test_stream_urls_are_checked_and_messages_round_trip() -> None:
    t = parse_nats_url("nats://127.0.0.1:4333/AB_1?subject=ab.events&timeout_s=0.5")
    assert (t.server, t.stream, t.subject, t.timeout_s) == ("nats://127.0.0.1:4333", "AB_1", "ab.events", 0.5)
    for bad in ("nats:///S", "nats://h:1/", "nats://h:1/a.b", "nats://h:1/S?subject=a.*", "nats://h:1/S?x=1",
                "nats://h:1/S?timeout_s=0"):
        with pytest.raises(ConfigError, match="nats://"):
            parse_nats_url(bad)
    e = _imp(3)
    assert decode_event(encode_event(e)) == e and event_id(e) == "imp:imp-000003"
    with pytest.raises(ValueError, match="not a"):
        decode_event(b"\xff")


def test_an_unreachable_stream_is_a_one_line_store_error(tmp_path: Path) -> None:
    from abharness.testing.natsserver import free_port

    with pytest.raises(StoreError, match="is nats-server -js running"):
        open_store(f"nats://127.0.0.1:{free_port()}/S?subject=s.e&timeout_s=0.5")


@pytest.mark.slow
@pytest.mark.anyio
async def test_proxy_to_jetstream_to_ingest_to_sqlite_counts_equal(nats_server: NatsServer, tmp_path: Path,
                                                                    backends, capsys) -> None:
    url = nats_server.url("E2E", "e2e.events")
    cfg = parse_config(config_dict(store_url=url, events={"spool_dir": str(tmp_path / "spool")}))
    n_search, n_click = 200, 120
    app = create_app(cfg, backends=backends)
    async with serving(app) as client:
        hits = []
        for i in range(n_search):
            r = await client.post("/search", json={"query": f"doc {i % 30}", "unit_id": f"u{i % 37}"})
            assert r.status_code == 200, r.text
            hits.append(r.json())
        for h in hits[:n_click]:
            r = await client.post("/click", json={"impression_token": h["impression_token"],
                                                  "doc_id": h["results"][0]["doc_id"], "position": 1})
            assert r.status_code == 200, r.text
        writer = app.state.service.writer
        assert writer.flush(20)
        published = writer.stats()
    # The proxy's side first: every accepted event acked by JetStream (flush also returns once a queue was spooled).
    assert published["accepted"] == n_search + n_click and published["written"] == n_search + n_click
    db = tmp_path / "events.db"
    proc = start_ingest(url, f"sqlite:///{db}", batch=64, log=tmp_path / "ingest.log")

    def rows() -> tuple[int, int, int]:
        import sqlite3

        if impressions(db) == 0:
            return (0, 0, 0)
        with sqlite3.connect(db, timeout=5) as con:
            return tuple(int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[return-value]
                         for t in ("impressions", "clicks", "audit"))

    # Bounds on progress, not on the total time: starved of CPU the ingest child is slow, not stuck (niced on a loaded
    # machine it was still importing 28 s after its spawn, then stored 64 events a second), and one 25 s bound from
    # its spawn failed it while it worked. A stall (no new row for 25 s) still fails, saying whether the child died
    # (exit -7: the SIGBUS of the SQLite lock bug, test_the_file_checks_keep_sqlites_wal_index_lock) and how far the
    # consumer got.
    wait_until(lambda: consumer_state(url, "it") is not None, 120, "the ingest process to create its consumer",
               poll_s=0.2)
    wait_for_progress(rows, lambda r: r == (n_search, n_click, 1), 25, "the ingest to store every event",
                      detail=lambda: f"ingest exit code {proc.poll()}, consumer {consumer_state(url, 'it')}")
    stats = stop_ingest(proc)
    store = open_store(f"sqlite:///{db}")
    try:
        counts = store.counts("exp1")
    finally:
        store.close()
    with capsys.disabled():
        print(f"\nstream e2e: proxy accepted {published['accepted']} (+1 audit), published {published['written']}, "
              f"ingest acked {stats['acked']}, stored {counts}")
    assert counts == {"impressions": n_search, "clicks": n_click, "audit": 1}
    assert stats["acked"] == stats["stored"] + stats["duplicates"] == n_search + n_click + 1


@pytest.mark.slow
def test_ingest_killed_and_restarted_mid_stream_loses_nothing_and_stores_nothing_twice(
        nats_server: NatsServer, tmp_path: Path, capsys) -> None:
    url = nats_server.url("KILL", "kill.events")
    total = 6000
    pub = open_store(url)
    try:
        for start in range(0, total, 500):
            result = pub.write_batch([_imp(i) for i in range(start, start + 500)])
            assert (result.stored, result.duplicates) == (500, 0)
    finally:
        pub.close()
    db = tmp_path / "events.db"
    first = start_ingest(url, f"sqlite:///{db}", batch=20, ack_wait=1.0, log=tmp_path / "ingest.log")
    wait_until(lambda: impressions(db) >= 300, 20, "the first ingest to store some impressions", poll_s=0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    at_kill = impressions(db)
    assert at_kill < total, "the ingest finished before it was killed: the test proves nothing"
    second = start_ingest(url, f"sqlite:///{db}", batch=20, ack_wait=1.0, log=tmp_path / "ingest.log")
    wait_until(lambda: impressions(db) >= total, 25, "the restarted ingest to store every impression")
    stats = stop_ingest(second)
    import sqlite3

    with sqlite3.connect(db) as con:
        rows, distinct = con.execute("SELECT count(*), count(DISTINCT impression_id) FROM impressions").fetchone()
        ids = {r[0] for r in con.execute("SELECT impression_id FROM impressions")}
    with capsys.disabled():
        print(f"\nstream kill: published {total}, stored {at_kill} before SIGKILL, restarted ingest acked "
              f"{stats['acked']} ({stats['stored']} new, {stats['duplicates']} duplicates, {stats['redelivered']} "
              f"redelivered from the killed one); "
              f"store holds {rows} rows, {distinct} distinct")
    assert rows == distinct == total
    assert ids == {f"imp-{i:06d}" for i in range(total)}
    assert stats["stored"] == total - at_kill


@pytest.mark.slow
@pytest.mark.anyio
async def test_jetstream_restarted_under_load_queues_spools_and_accounts_for_every_event(
        nats_server: NatsServer, tmp_path: Path, backends, capsys) -> None:
    url = nats_server.url("OUT", "out.events", timeout_s="0.5")
    cfg = parse_config(config_dict(store_url=url))
    store = open_store(url)
    writer = EventWriter(store, batch_size=50, flush_interval_s=0.05, retry_max_s=0.2,
                         spool_dir=tmp_path / "spool", spool_after_s=1.0)
    ids: list[str] = []
    states: set[str] = set()
    try:
        async with serving(create_app(cfg, backends=backends, store=store, writer=writer)) as client:
            async def searches(n: int) -> None:
                for i in range(n):
                    r = await client.post("/search", json={"query": f"doc {i % 30}", "unit_id": f"u{len(ids)}"})
                    assert r.status_code == 200, r.text
                    ids.append(r.json()["impression_id"])
                    states.add(writer.state)
                    await asyncio.sleep(0.005)

            await searches(150)
            nats_server.kill()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 4.0:  # outage well past spool_after_s (+ ack timeouts), under load
                await searches(20)
            nats_server.start()
            await searches(150)
            await asyncio.to_thread(wait_until, lambda: writer.state == "healthy" and writer.queue_depth == 0, 20,
                                    "the writer to drain after JetStream came back", 0.05)
        lost = writer.close(10)
        s = writer.stats()
    finally:
        store.close()
    db = tmp_path / "events.db"
    proc = start_ingest(url, f"sqlite:///{db}", batch=100, max_idle=1.5, log=tmp_path / "ingest.log")
    stats = await asyncio.to_thread(stop_ingest, proc, signal_it=False)  # drains the stream, then stops by itself
    sink = open_store(f"sqlite:///{db}")
    try:
        from_stream = sink.counts("exp1")["impressions"]
        loaded = load_spool(sink, tmp_path / "spool")
        final = sink.counts("exp1")["impressions"]
    finally:
        sink.close()
    with capsys.disabled():
        print(f"\nstream outage: {len(ids)} searches; writer {s}; states seen {sorted(states)}; ingest acked "
              f"{stats['acked']}; store had {from_stream} impressions from the stream, {final} after spool load "
              f"({loaded})")
    assert lost == 0 and s["quarantined"] == 0 and s["queue_depth"] == 0
    assert s["accepted"] == len(ids) and s["dropped"] == 0
    assert s["accepted"] == s["stored"] + s["duplicates"] + s["spooled"] + s["dropped"]
    assert s["spooled"] > 0 and s["failed_batches"] > 0 and "spooling" in states
    assert final == len(ids)


@pytest.mark.slow
def test_two_ingest_processes_share_one_durable_consumer(nats_server: NatsServer, store_url: str, tmp_path: Path,
                                                         capsys) -> None:
    from abharness.testing.natsserver import waiting_pulls

    url = nats_server.url("SHARE", "share.events")
    total = 4000
    sink = open_store(store_url)  # create the schema once, before two processes race to migrate it
    procs = [start_ingest(url, store_url, durable="shared", batch=25, log=tmp_path / f"ingest{i}.log")
             for i in range(2)]
    # Both processes fetching before anything is published (on a loaded machine one could otherwise do it all).
    wait_until(lambda: waiting_pulls(url, "shared") >= 2, 25, "both ingest processes to fetch", poll_s=0.2)
    pub = open_store(url)
    try:
        for start in range(0, total, 500):
            pub.write_batch([_imp(i) for i in range(start, start + 500)])
    finally:
        pub.close()

    def stored() -> int:
        return sink.counts("exp1")["impressions"]

    try:
        wait_until(lambda: stored() >= total, 25, "two ingests to store every impression", poll_s=0.1)
        time.sleep(0.3)
        stats = [stop_ingest(p) for p in procs]
        final = sink.counts("exp1")["impressions"]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        sink.close()
    with capsys.disabled():
        print(f"\nstream shared durable ({store_url.split(':')[0]}): published {total}; ingest A acked "
              f"{stats[0]['acked']}, ingest B acked {stats[1]['acked']}; store holds {final}")
    assert final == total
    assert stats[0]["stored"] + stats[1]["stored"] == total
    assert stats[0]["acked"] > 0 and stats[1]["acked"] > 0, "one process did all the work: nothing was shared"


def test_ingest_refuses_bad_urls_with_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from abharness.cli.main import build_app
    from abharness.testing.natsserver import free_port

    db = f"sqlite:///{tmp_path / 'e.db'}"
    cases = [
        (["--from", "sqlite:///x.db", "--to", db], "is not a stream URL"),
        (["--from", "nats://127.0.0.1:1/S", "--to", "nats://127.0.0.1:1/T"], "cannot be written by ingest"),
        (["--from", "nats://127.0.0.1:1/S", "--to", db, "--batch", "0"], "--batch 0 must be a positive"),
        (["--from", f"nats://127.0.0.1:{free_port()}/S?timeout_s=0.5", "--to", db], "is nats-server -js running"),
    ]
    for args, message in cases:
        r = CliRunner().invoke(build_app(), ["ingest", *args])
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output, (args, r.output)


def test_ingest_keeps_unacked_what_a_failing_store_refused_and_stores_it_later(nats_server: NatsServer) -> None:
    from abharness.stores.nats_ingest import NatsIngest

    url = nats_server.url("FAIL", "fail.events")
    pub = open_store(url)
    try:
        pub.write_batch([_imp(i) for i in range(300)])
    finally:
        pub.close()

    class Flaky:
        """The SQLite store, refusing its first three batches as a store outage would."""

        def __init__(self) -> None:
            self.inner = open_store("sqlite:///:memory:")
            self.url = "flaky://"
            self.refused = 0

        def write_batch(self, events):  # type: ignore[no-untyped-def]
            if self.refused < 3:
                self.refused += 1
                raise StoreError("store down (test)")
            return self.inner.write_batch(events)

    sink = Flaky()
    worker = NatsIngest(url, sink, durable="flaky", batch=50, retry_s=0.1, max_idle_s=1.5)  # type: ignore[arg-type]
    stats = worker.run()
    try:
        assert sink.inner.counts("exp1")["impressions"] == 300
    finally:
        sink.inner.close()
    assert stats.failed_batches == 3 and stats.stored == 300 and stats.acked == 300
    assert stats.redelivered >= 50  # the refused batches came back (nakked, never acked)
