"""The rollups kept by ``write_batch`` (Python plan, additive upserts) equal a fresh backfill of the raw rows.

Random batches on both stores: impressions re-delivered (also with other content: the first stored wins), late
clicks, clicks before their impressions (in earlier batches), clicks re-delivered with another timestamp, a click
filed under another experiment, ties in click time, positions beyond k. After every few batches the three derived
tables are read, then rebuilt from the raw rows by the migration's backfill (``rollup.rebuild_statements``, run by
an ad-hoc no-op write through ``execute``) and read again: integer columns must be equal, float sums equal to
1e-9 (they are added in another order). On PostgreSQL also two replicas (two stores) writing at the same time.
"""

from __future__ import annotations

import math
import random
import threading
from typing import Any

import pytest

from abharness.core.events import Click, Impression, ShownResult
from abharness.stores import open_store, rollup_write
from abharness.stores.base import EventStore

EXP = "exp-w"
T0 = 1_700_000_000.0
DAY = 86_400.0
_TABLES = {
    "impression_facts": "SELECT * FROM impression_facts ORDER BY impression_id",
    "unit_rollup": "SELECT * FROM unit_rollup ORDER BY experiment_id, mode, unit_id, arm, bucket",
    "fingerprint_rollup": "SELECT * FROM fingerprint_rollup ORDER BY experiment_id, mode, fingerprints, bucket",
}


def random_batches(seed: int, n_imps: int = 300) -> list[list[Any]]:
    rng = random.Random(seed)
    imps: list[Impression] = []
    clicks: list[Click] = []
    for i in range(n_imps):
        k = rng.choice([3, 5, 10])
        mode = rng.choice(["ab", "ab", "shadow", "interleave"])
        imp = Impression(
            f"w{seed}-{i}", EXP, T0 + rng.uniform(0, 3 * DAY), f"u{rng.randrange(25)}",
            "interleaved" if mode == "interleave" else rng.choice(["baseline", "finetuned"]), mode, "q", k,
            tuple(ShownResult(f"d{p}", p, 1.0 / p) for p in range(1, k + 1)),
            latency_ms=rng.uniform(1, 90), fallback=rng.random() < 0.1,
            fingerprints=rng.choice([{}, {"baseline": {"model": "m1", "index": "x"}}]),
            error="boom" if rng.random() < 0.05 else None,
        )
        imps.append(imp)
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            pos = rng.randrange(1, k + 3)
            ts = imp.ts + rng.choice([1.0, 1.0, rng.uniform(0.1, 30), rng.uniform(DAY / 2, 2 * DAY)])
            clicks.append(Click(imp.impression_id, EXP, imp.unit_id, imp.arm, ts, f"d{pos}", pos))
    redelivered = [Impression(i.impression_id, EXP, i.ts + 7.0, "u-other", i.arm, i.mode, "q", i.k, i.results,
                              latency_ms=1.0) for i in rng.sample(imps, n_imps // 10)]
    repeated = rng.sample(imps, n_imps // 10)
    dupes = [Click(c.impression_id, c.experiment_id, c.unit_id, c.arm, c.ts - 5.0, c.doc_id, c.position)
             for c in rng.sample(clicks, len(clicks) // 5)]
    stray = [Click(imps[0].impression_id, "other-exp", imps[0].unit_id, imps[0].arm, imps[0].ts + 1, "dx", 1)]
    events: list[Any] = imps + clicks + redelivered + repeated + dupes + stray
    rng.shuffle(events)
    batches, i = [], 0
    while i < len(events):
        n = rng.randrange(1, 150)
        batches.append(events[i:i + n])
        i += n
    return batches


def snapshot(store: EventStore) -> dict[str, list[tuple[Any, ...]]]:
    return {name: [tuple(r) for r in store.execute(sql)] for name, sql in _TABLES.items()}  # type: ignore[attr-defined]


def rebuilt(store: EventStore) -> dict[str, list[tuple[Any, ...]]]:
    store.execute("UPDATE impressions SET k = k WHERE 1 = 0")  # type: ignore[attr-defined]  # -> full rebuild
    return snapshot(store)


def assert_equal_tables(kept: dict[str, list[tuple[Any, ...]]], fresh: dict[str, list[tuple[Any, ...]]]) -> None:
    for name in _TABLES:
        assert len(kept[name]) == len(fresh[name]), name
        for a, b in zip(kept[name], fresh[name]):
            assert len(a) == len(b), name
            for x, y in zip(a, b):
                if isinstance(x, float) or isinstance(y, float):
                    assert x is not None and y is not None and math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9), (
                        name, a, b)
                else:
                    assert x == y, (name, a, b)


def test_summary_ties_in_time_go_to_the_higher_ranked_click() -> None:
    assert rollup_write.summarize([]) == (0, None, None, None)
    assert rollup_write.summarize([(5.0, 4), (5.0, 2), (6.0, 1)]) == (3, 5.0, 2, 1)


@pytest.mark.parametrize("seed", [1, 2])
def test_rollups_kept_by_write_batch_equal_a_fresh_backfill(store: EventStore, seed: int) -> None:
    batches = random_batches(seed)
    for i, batch in enumerate(batches):
        store.write_batch(batch)
        if i in (len(batches) // 3, len(batches) - 1):
            kept = snapshot(store)
            assert kept["impression_facts"] and kept["unit_rollup"] and kept["fingerprint_rollup"]
            assert_equal_tables(kept, rebuilt(store))
    # re-delivering everything (a spool loaded twice) changes nothing
    before = snapshot(store)
    for batch in batches:
        assert store.write_batch(batch).stored == 0
    assert snapshot(store) == before


@pytest.mark.postgres
def test_two_replicas_writing_at_once_keep_the_rollups_exact(pg_url: str) -> None:
    """Each replica gets half of every batch (a click often on another replica than its impression)."""
    batches = random_batches(7, n_imps=400)
    stores = [open_store(pg_url), open_store(pg_url)]
    errors: list[BaseException] = []

    def replica(i: int) -> None:
        try:
            for batch in batches:
                stores[i].write_batch(batch[i::2])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=replica, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors
        assert_equal_tables(snapshot(stores[0]), rebuilt(stores[0]))
    finally:
        for s in stores:
            s.close()


@pytest.mark.postgres
def test_a_duplicate_committed_by_another_replica_during_the_copy_falls_back_to_on_conflict(pg_url: str) -> None:
    """The direct COPY probes the keys first; a replica's *uncommitted* copy of the same impression is invisible
    to the probe, so the COPY waits for it and fails on the primary key when it commits. The batch must then be
    stored through the staged ON CONFLICT path: the duplicate ignored, the rest stored, the rollups exact."""
    import psycopg

    from abharness.stores import codec, postgres_write

    def imp(i: int) -> Impression:
        return Impression(f"race-{i}", EXP, T0 + i, f"u{i}", "baseline", "ab", "q", 3,
                          tuple(ShownResult(f"d{p}", p, 1.0 / p) for p in range(1, 4)),
                          fingerprints={"baseline": {"model": "m1", "index": "x"}})

    shared, other = imp(1), imp(2)
    clicks = [Click(e.impression_id, EXP, e.unit_id, e.arm, e.ts + 1, "d2", 2) for e in (shared, other)]
    store = open_store(pg_url)
    holder = psycopg.connect(pg_url)
    result: list[Any] = []
    try:
        writer = postgres_write.StagedWriter()
        writer._ensure_staging(holder)
        holder.execute("SELECT 1")  # an open transaction: the write below stays uncommitted until commit()
        writer.write(holder, codec.encode_batch([shared, clicks[0]]))
        thread = threading.Thread(target=lambda: result.append(store.write_batch([shared, other, *clicks])))
        thread.start()
        with psycopg.connect(pg_url, autocommit=True) as watch:
            for _ in range(200):  # until the store's COPY waits for the holder's uncommitted key
                waiting = watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                        "AND datname = current_database()").fetchone()
                if waiting and waiting[0]:
                    break
                threading.Event().wait(0.05)
            else:
                pytest.fail("the store's write never waited for the uncommitted duplicate")
        holder.commit()
        thread.join(timeout=60)
        assert result and result[0].stored == 2 and result[0].duplicates == 2
        assert_equal_tables(snapshot(store), rebuilt(store))
        assert [r[0] for r in snapshot(store)["impression_facts"]] == ["race-1", "race-2"]
    finally:
        holder.close()
        store.close()
