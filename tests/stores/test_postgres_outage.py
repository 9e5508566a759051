"""A PostgreSQL restart under the writer: events are kept (up to the bound) and written once the server is back.

Uses its own throw-away cluster (never the shared server on 5432), stopped with ``pg_ctl stop -m fast``.
"""

from __future__ import annotations

import time

import pytest

from abharness.core.events import Impression
from abharness.errors import StoreError
from abharness.stores import open_store
from abharness.stores.pgtemp import TempCluster, create_database, find_bindir
from abharness.stores.writer import EventWriter

pytestmark = pytest.mark.postgres


@pytest.fixture()
def cluster():
    if find_bindir() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin or on PATH: "
                    "the restart test needs a throw-away server it may stop")
    c = TempCluster().start()
    try:
        yield c
    finally:
        c.cleanup()


def imp(i: int) -> Impression:
    return Impression(f"imp-{i}", "exp", float(i), f"u{i % 9}", "baseline", "ab", "q", 3, ())


def test_writer_keeps_events_through_a_restart_and_drops_beyond_the_bound(cluster: TempCluster) -> None:
    db = create_database(cluster.url(), prefix="abh_outage")
    store = open_store(cluster.url(db))
    writer = EventWriter(
        store, max_queue=300, batch_size=50, flush_interval_s=0.02, retry_initial_s=0.05, retry_max_s=0.5
    ).start()
    try:
        accepted = {f"imp-{i}" for i in range(100) if writer.submit(imp(i))}
        assert writer.flush(timeout_s=60)

        cluster.stop("fast")
        with pytest.raises(StoreError):
            store.ping()
        failed_before = writer.failed_batches
        outcomes = {f"imp-{i}": writer.submit(imp(i)) for i in range(100, 500)}
        accepted |= {k for k, ok in outcomes.items() if ok}
        assert sum(outcomes.values()) == 300 and writer.dropped == 100  # the bound, then counted drops
        # Wait (without timing anything) until the writer has actually failed against the stopped server.
        for _ in range(1200):
            if writer.failed_batches > failed_before:
                break
            time.sleep(0.05)
        assert writer.failed_batches > failed_before, "the writer never tried the stopped server"
        assert writer.queue_depth == 300  # nothing lost while down

        cluster.start()
        assert writer.flush(timeout_s=120), f"queue not drained after restart: {writer.stats()}"
        store.ping()
        rows = store.execute("SELECT impression_id FROM impressions")
        stored = [r[0] for r in rows]
        assert len(stored) == len(set(stored)) == 400
        assert set(stored) == accepted
        assert writer.stats()["lost"] == 0 and writer.failed_events == 0
    finally:
        writer.close(timeout_s=10)
        store.close()
