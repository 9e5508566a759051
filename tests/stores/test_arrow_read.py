"""Arrow reads of the rollup (``abharness.stores.arrow_read``): ADBC's SQLite driver in a child process and ADBC's
PostgreSQL driver give the same ``UnitDays`` as the reads without them (``ABH_ARROW_READ=0``: ``sqlite3`` and the
CSV COPY), on both stores; a failing child query is a ``StoreError`` naming the cause."""

from __future__ import annotations

import numpy as np
import pytest

from abharness.errors import StoreError
from abharness.stores import arrow_read
from abharness.stores.base import EventStore
from tests.stores.test_rollup import EXP, random_events

_FIELDS = ("impressions", "clicks", "clicked")


def _days(store: EventStore, monkeypatch: pytest.MonkeyPatch, arrow: bool, modes: tuple[str, ...]) -> object:
    monkeypatch.setenv("ABH_ARROW_READ", "1" if arrow else "0")
    return store.unit_days(EXP, modes=modes, row_fields=_FIELDS)  # type: ignore[attr-defined]


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


def test_named_parameters_become_positional() -> None:
    sql, values = arrow_read.positional("SELECT :a, :b, :a, CAST(1 AS TEXT)::c", {"a": 1, "b": "s", "c": 0})
    assert values == [1, "s"]
    assert sql == "SELECT ?1, ?2, ?1, CAST(1 AS TEXT)::c"

