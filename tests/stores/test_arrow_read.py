"""Arrow reads of the rollup (``abharness.stores.arrow_read``): ADBC's SQLite driver in a child process and ADBC's
PostgreSQL driver give the same ``UnitDays`` as the reads without them (``ABH_ARROW_READ=0``: ``sqlite3`` and the
CSV COPY), on both stores; a failing child query is a ``StoreError`` naming the cause."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import psycopg
import pytest

from abharness.errors import StoreError
from abharness.stores import arrow_read, open_store, rollup, rollup_arrays
from abharness.stores.base import EventStore
from abharness.stores.queries import to_pyformat
from tests.stores.test_rollup import DAY, EXP, T0, random_events

_FIELDS = ("impressions", "clicks", "clicked")


def _days(store: EventStore, monkeypatch: pytest.MonkeyPatch, arrow: bool, modes: tuple[str, ...]) -> object:
    monkeypatch.setenv("ABH_ARROW_READ", "1" if arrow else "0")
    return store.unit_days(EXP, modes=modes, row_fields=_FIELDS)  # type: ignore[attr-defined]


@contextmanager
def _pg_store(pg_url: str, *, seed: int, n_imps: int, adbc: bool = True) -> Iterator[EventStore]:
    """A PostgreSQL store holding ``random_events(seed)``, closed afterwards; skips without ADBC's driver if
    ``adbc``."""
    if adbc and not arrow_read.available_postgres():
        pytest.skip("adbc-driver-postgresql is not installed")
    store = open_store(pg_url)
    try:
        for batch in random_events(seed, n_imps=n_imps):
            store.write_batch(batch)
        yield store
    finally:
        store.close()


@pytest.mark.parametrize("modes", [("ab",), ("ab", "shadow")])
def test_the_arrow_read_equals_the_plain_one(store: EventStore, monkeypatch: pytest.MonkeyPatch,
                                             modes: tuple[str, ...]) -> None:
    sqlite = isinstance(getattr(store, "path", None), str)
    if not (arrow_read.available_sqlite() if sqlite else arrow_read.available_postgres()):
        pytest.skip("the ADBC driver of this store is not installed")
    for batch in random_events(5, n_imps=500):
        store.write_batch(batch)
    calls: list[str] = []
    spied = arrow_read.sqlite_batches if sqlite else arrow_read.pg_batches
    monkeypatch.setattr(arrow_read, spied.__name__, lambda *a, **k: calls.append("x") or spied(*a, **k))
    fast = _days(store, monkeypatch, True, modes)
    assert calls, "the Arrow read was not used"
    plain = _days(store, monkeypatch, False, modes)
    assert len(calls) == 1
    assert fast.rows == plain.rows > 0  # type: ignore[attr-defined]
    for name in ("unit_ids", "arms", "mode"):
        assert getattr(fast, name).tolist() == getattr(plain, name).tolist(), name
    for name in ("totals", "first_seen", "group", "bucket", "first_ts", "last_ts", "sums"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(plain, name), err_msg=name)


def test_a_failing_child_query_is_a_store_error(tmp_path) -> None:
    if not arrow_read.available_sqlite():
        pytest.skip("adbc-driver-sqlite is not installed")
    path = tmp_path / "x.db"
    import sqlite3

    sqlite3.connect(path).close()
    with pytest.raises(StoreError, match="no such table"):
        list(arrow_read.sqlite_batches(str(path), "SELECT a FROM missing WHERE a = :v", {"v": 1.0}))


@pytest.mark.postgres
def test_a_failing_postgres_child_query_is_a_store_error(pg_url: str) -> None:
    """The PostgreSQL read runs in a child process: a query the server refuses, or a child that dies before it
    streams, is a ``StoreError`` naming the cause (not a hang, not an Arrow error)."""
    with _pg_store(pg_url, seed=3, n_imps=10) as store:
        with pytest.raises(StoreError, match="abh_missing_table"):
            list(arrow_read.pg_batches(store, "reading", "SELECT a FROM abh_missing_table WHERE a = :v", {"v": 1.0},
                                       ["a"]))
        with pytest.raises(StoreError, match="no-such-child"):
            list(arrow_read._child_batches(arrow_read._PG_CHILD.with_name("no-such-child.py"), {}, "reading"))


@pytest.mark.postgres
def test_the_postgres_child_stream_stops_when_the_caller_does(pg_url: str) -> None:
    """A caller that stops after the first batch (an error on its side) ends the child, and a full read of an
    empty result is no batch at all."""
    import subprocess

    with _pg_store(pg_url, seed=3, n_imps=10) as store:
        started: list[subprocess.Popen[bytes]] = []
        real = subprocess.Popen

        def spy(*a: object, **k: object) -> subprocess.Popen[bytes]:
            started.append(real(*a, **k))  # type: ignore[arg-type]
            return started[-1]

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(arrow_read.subprocess, "Popen", spy)
            stream = arrow_read.pg_batches(store, "reading", "SELECT g FROM generate_series(1, 300000) AS g", {},
                                           ["g"])
            first = next(stream)
            assert first.num_rows > 0 and first.schema.names == ["g"]
            stream.close()
            assert started and started[0].poll() is not None  # ended, not left running
        empty = arrow_read.pg_batches(store, "reading", "SELECT 1 AS g WHERE false", {}, ["g"])
        assert sum(b.num_rows for b in empty) == 0


def test_named_parameters_become_positional() -> None:
    sql, values = arrow_read.positional("SELECT :a, :b, :a, CAST(1 AS TEXT)::c", {"a": 1, "b": "s", "c": 0})
    assert values == [1, "s"]
    assert sql == "SELECT ?1, ?2, ?1, CAST(1 AS TEXT)::c"



def _same_days(a: object, b: object) -> None:
    assert a.rows == b.rows  # type: ignore[attr-defined]
    for name in ("unit_ids", "arms", "mode"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    for name in ("totals", "first_seen", "group", "bucket", "first_ts", "last_ts", "sums"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.postgres
@pytest.mark.parametrize("window", [(None, None), (T0 + 1.3 * DAY, T0 + 3.1 * DAY)])
def test_the_postgres_read_split_into_unit_ranges_equals_one_read(pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                                                   window: tuple[float | None, float | None]) -> None:
    """Reading contiguous unit ranges on several connections and concatenating them gives the one query's rows in
    its order, wherever the split points fall: on a unit with several rows (all of them go to the upper range),
    between two units, before the first unit and after the last (empty ranges), twice at one unit (an empty range
    in the middle)."""
    with _pg_store(pg_url, seed=7, n_imps=600) as store:
        since, until = window
        one = rollup_arrays.read_unit_days(store, EXP, since=since, until=until, modes=("ab",), pg_splits=[])
        units = one.unit_ids.tolist()
        assert len(units) > 20 and one.rows > len(set(units)), "units with several unit-day rows are needed"
        counts = {u: int(n) for u, n in zip(*np.unique(one.unit_ids[one.group].astype(str), return_counts=True))}
        many = next(u for u in units[len(units) // 3:] if counts[u] > 2)  # a unit whose rows a split could cut
        parts_seen: list[int] = []
        real = arrow_read.pg_batches_parts
        monkeypatch.setattr(arrow_read, "pg_batches_parts",
                            lambda s, w, parts, names: parts_seen.append(len(parts)) or real(s, w, parts, names))
        for splits in ([many], [units[0]], [units[-1]], ["", "u0"], ["u1", "u1", "u3"], ["u9~"], ["zzz"],
                       sorted({units[5], units[len(units) // 2], many, units[-2]})):
            split = rollup_arrays.read_unit_days(store, EXP, since=since, until=until, modes=("ab",),
                                                 pg_splits=splits)
            _same_days(split, one)
            assert parts_seen[-1] == len(splits) + 1
        monkeypatch.setenv("ABH_ARROW_READ", "0")  # and the CSV COPY (one query) agrees with them
        _same_days(rollup_arrays.read_unit_days(store, EXP, since=since, until=until, modes=("ab",)), one)


@pytest.mark.postgres
def test_the_postgres_split_points_come_from_a_sample_in_unit_order(pg_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With the size thresholds lowered and ``ABH_PG_READERS=2``, ``read_unit_days`` samples the table for split
    points (ascending unit ids of this experiment) and reads in that many ranges; with 1 reader or above the row
    threshold it reads in one."""
    with _pg_store(pg_url, seed=8, n_imps=600) as store:
        one = rollup_arrays.read_unit_days(store, EXP, since=None, until=None, modes=("ab",), pg_splits=[])
        monkeypatch.setattr(rollup_arrays, "_MIN_SPLIT_PAGES", 1)
        monkeypatch.setattr(rollup_arrays, "_MIN_SPLIT_ROWS", 1)
        params = rollup.read_params(EXP, since=None, until=None, modes=("ab",))
        points = rollup_arrays.pg_split_points(store, params, n_modes=1, parts=3)
        assert 1 <= len(points) <= 2 and set(points) <= set(one.unit_ids.tolist())
        order = [u for (u,) in store._fetch("order", "SELECT unnest(CAST(%(p)s AS TEXT[])) ORDER BY 1",
                                          {"p": points})]
        assert order == points
        parts_seen: list[int] = []
        real = arrow_read.pg_batches_parts
        monkeypatch.setattr(arrow_read, "pg_batches_parts",
                            lambda s, w, parts, names: parts_seen.append(len(parts)) or real(s, w, parts, names))
        monkeypatch.setenv("ABH_PG_READERS", "2")
        _same_days(rollup_arrays.read_unit_days(store, EXP, since=None, until=None, modes=("ab",)), one)
        assert parts_seen == [2]
        monkeypatch.setenv("ABH_PG_READERS", "1")  # one query
        _same_days(rollup_arrays.read_unit_days(store, EXP, since=None, until=None, modes=("ab",)), one)
        assert parts_seen[-1] == 1
        monkeypatch.delenv("ABH_PG_READERS")
        monkeypatch.setattr(rollup_arrays, "_MIN_SPLIT_ROWS", 10 ** 9)
        assert rollup_arrays.pg_split_points(store, params, n_modes=1, parts=2) == []


@pytest.mark.postgres
def test_the_covering_index_has_the_primary_keys_order_and_every_column(pg_url: str) -> None:
    """Schema 6's index on PostgreSQL: the key of ``unit_rollup``'s primary key in its order (so the (unit, arm)
    read keeps the same order and plan shape) and every other column INCLUDEd (so the read, windowed or not, can be
    an index-only scan: no heap fetch per row); the planner takes it for the read once the table is vacuumed."""
    with _pg_store(pg_url, seed=9, n_imps=300, adbc=False) as store:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            def columns(index: str) -> tuple[list[str], list[str]]:
                row = conn.execute(
                    "SELECT i.indnkeyatts, array_agg(a.attname ORDER BY k.n) FROM pg_index i "
                    "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
                    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                    "WHERE i.indexrelid = CAST(%s AS regclass) GROUP BY i.indnkeyatts", (index,)).fetchone()
                return list(row[1][:row[0]]), list(row[1][row[0]:])

            key, included = columns(rollup.READ_INDEX_NAME)
            pk_key, _ = columns("unit_rollup_pkey")
            table = [r[0] for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = CAST('unit_rollup' AS regclass) AND attnum > 0 "
                "AND NOT attisdropped")]
            assert key == pk_key
            assert sorted(key + included) == sorted(table)
            # a tiny table's heap costs the planner nothing: spread its rows over a page each, as a big one's are
            conn.execute("ALTER TABLE unit_rollup SET (fillfactor = 10)")
            conn.execute("VACUUM FULL unit_rollup")
            conn.execute("VACUUM ANALYZE unit_rollup")
            for windowed in (False, True):
                params = rollup.read_params(EXP, since=T0 + DAY if windowed else None, until=None, modes=("ab",))
                sql = to_pyformat(rollup_arrays.unit_day_sql("postgresql", n_modes=1, windowed=windowed))
                conn.execute("SET enable_seqscan = off")
                conn.execute("SET enable_bitmapscan = off")
                plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", params))
                assert plan.startswith(f"Index Only Scan using {rollup.READ_INDEX_NAME} on unit_rollup r"), plan
                assert "Heap Fetches: 0" in plan, plan
