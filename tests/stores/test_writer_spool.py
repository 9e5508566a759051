"""A failing store is told from a bad event: the first keeps events (then spools them), the second quarantines
one. The spool loads back idempotently; a deleted, replaced or unwritable SQLite file is a failing store."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from abharness.core.events import AuditEntry, Click, Impression, ShownResult
from abharness.errors import StoreError
from abharness.stores import open_store
from abharness.stores.spool import Spool, event_from_json, event_to_json, load_spool
from abharness.stores.writer import EventWriter

from .test_event_writer import FakeStore, imp


def _fast(store, **kw) -> EventWriter:
    return EventWriter(store, batch_size=10, flush_interval_s=0.01, retry_initial_s=0.01, retry_max_s=0.02, **kw)


def test_events_round_trip_through_json_lines() -> None:
    events = [
        Impression("i1", "e", 1.5, "u", "a", "ab", "qé", 3, (ShownResult("d1", 1, 0.5, "a"),),
                   {"a": {"model": "m", "index": "x"}}, 2.0, True, "boom", None, {"device": "mobile"}),
        Click("i1", "e", "u", "a", 2.0, "d1", 1, "a", 300.0),
        AuditEntry(3.0, "e", "ops", "pause", {"why": "test"}),
    ]
    assert [event_from_json(event_to_json(e)) for e in events] == events
    with pytest.raises(ValueError, match="not a spooled event"):
        event_from_json('{"type": "view"}')


def test_store_down_past_the_bound_spills_the_queue_and_loads_back_idempotently(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="abharness.stores.writer")
    store = FakeStore()
    store.down = True
    w = _fast(store, spool_dir=tmp_path / "spool", spool_after_s=0.1).start()
    for i in range(30):
        assert w.submit(imp(i))
    deadline = time.monotonic() + 10
    while w.spooled < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w.spooled == 30 and w.queue_depth == 0 and w.state == "spooling"
    assert w.problem() and "30 events spooled" in w.problem()
    for i in range(30, 35):  # still down: later events are spooled too
        w.submit(imp(i))
    while w.spooled < 35 and time.monotonic() < deadline:
        time.sleep(0.01)
    store.down = False
    w.submit(imp(99))
    assert w.flush(timeout_s=10)
    assert w.state == "healthy" and w.problem() is None
    assert w.close() == 0
    assert (w.accepted, w.stored, w.spooled, w.quarantined, w.lost) == (36, 1, 35, 0, 0)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("is failing" in m for m in messages) == 1  # each state change logged once
    assert sum("healthy again" in m for m in messages) == 1
    assert sum("spooled 35" in m or "spooled 30" in m for m in messages) == 1

    result = load_spool(store, tmp_path / "spool")
    assert (result.events, result.stored, result.duplicates, result.unreadable) == (35, 35, 0, 0)
    assert sorted(store.rows) == sorted([f"imp-{i}" for i in range(35)] + ["imp-99"])
    assert load_spool(store, tmp_path / "spool").events == 0  # loaded files are renamed, not read twice
    for done in (tmp_path / "spool").glob("*.loaded"):  # loading the same file again stores nothing twice
        done.rename(done.with_name(done.name.removesuffix(".loaded")))
    again = load_spool(store, tmp_path / "spool")
    assert (again.events, again.stored, again.duplicates) == (35, 0, 35)


def test_a_torn_last_line_is_skipped_and_counted(tmp_path) -> None:
    spool = Spool(tmp_path)
    path = spool.spill([imp(1), imp(2)])
    with path.open("a") as f:
        f.write('{"type": "impression", "impression_id": "cut')
    store = FakeStore()
    result = load_spool(store, tmp_path)
    assert (result.events, result.stored, result.unreadable) == (2, 2, 1)


def test_close_with_the_store_down_spools_instead_of_losing(tmp_path) -> None:
    store = FakeStore()
    store.down = True
    w = _fast(store, spool_dir=tmp_path, spool_after_s=3600).start()
    for i in range(12):
        w.submit(imp(i))
    assert w.close(timeout_s=5) == 0
    assert (w.spooled, w.lost) == (12, 0)
    assert Spool(tmp_path).pending() == 12


def test_a_bad_event_is_quarantined_and_the_rest_written(tmp_path) -> None:
    store = FakeStore()
    store.poison = {"imp-7"}
    w = _fast(store, spool_dir=tmp_path).start()
    for i in range(25):
        w.submit(imp(i))
    assert w.close() == 0
    assert (w.quarantined, w.spooled, w.stored) == (1, 0, 24)
    [qfile] = Spool(tmp_path).files(quarantine=True)
    assert [event_from_json(line).impression_id for line in qfile.read_text().splitlines()] == ["imp-7"]
    assert w.state == "healthy"  # one bad event is not a failing store


def test_unwritable_spool_keeps_the_events_queued(tmp_path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    store = FakeStore()
    store.down = True
    w = _fast(store, spool_dir=blocker / "spool", spool_after_s=0).start()
    for i in range(5):
        w.submit(imp(i))
    time.sleep(0.3)
    assert w.spooled == 0 and w.queue_depth == 5
    store.down = False
    assert w.flush(timeout_s=10) and w.close() == 0 and w.stored == 5


def _sqlite(tmp_path: Path):
    return open_store(f"sqlite:///{tmp_path / 'db' / 'e.db'}")


def test_sqlite_probe_commits_a_heartbeat(tmp_path) -> None:
    store = _sqlite(tmp_path)
    store.ping()
    store.ping()
    assert len(store.execute("SELECT replica, ts FROM heartbeat")) == 1
    store.close()


@pytest.mark.parametrize("fault", ["delete_file", "remove_directory", "replace_file"])
def test_deleted_or_replaced_sqlite_file_is_a_failing_store(tmp_path, fault) -> None:
    store = _sqlite(tmp_path)
    store.write_batch([imp(1)])
    db = tmp_path / "db" / "e.db"
    if fault == "delete_file":
        for p in db.parent.glob("e.db*"):
            p.unlink()
    elif fault == "remove_directory":
        shutil.rmtree(db.parent)
    else:
        other = open_store(f"sqlite:///{tmp_path / 'other.db'}")
        other.close()
        os.replace(tmp_path / "other.db", db)
    with pytest.raises(StoreError, match="gone|replaced"):
        store.write_batch([imp(2)])
    with pytest.raises(StoreError):
        store.ping()
    if fault == "delete_file":
        assert not db.exists()  # no empty database was created in its place
    store.close()


def test_writer_on_a_deleted_sqlite_file_spools(tmp_path) -> None:
    store = _sqlite(tmp_path)
    w = _fast(store, spool_dir=tmp_path / "spool", spool_after_s=0.05).start()
    w.submit(imp(0))
    assert w.flush(5)
    shutil.rmtree(tmp_path / "db")
    for i in range(1, 21):
        w.submit(imp(i))
    assert w.close(timeout_s=5) == 0
    assert (w.stored, w.spooled, w.lost, w.quarantined) == (1, 20, 0, 0)
    fresh = _sqlite(tmp_path)
    assert load_spool(fresh, tmp_path / "spool").stored == 20
    assert fresh.counts()["impressions"] == 20
    fresh.close()


# The start shared by the child scripts below: a SQLite store at argv[1] holding one impression.
_CHILD_STORE = r"""
import os, subprocess, sys
from abharness.core.events import Impression
from abharness.errors import StoreError
from abharness.stores import open_store
db = sys.argv[1]
s = open_store("sqlite:///" + db)
imp = lambda i: Impression(f"i{i}", "e", float(i), "u", "a", "ab", "q", 3, ())
s.write_batch([imp(0)])
"""

_SHM_FAULT = _CHILD_STORE + r"""
if sys.argv[2] == "truncate":
    open(db + "-shm", "r+b").truncate(0)
else:
    subprocess.run(["chattr", "+i", db + "-shm"], check=True)
for i in range(1, 4):
    try:
        s.write_batch([imp(i)])
        print("wrote")
    except StoreError as exc:
        print("refused:", exc)
    try:
        s.ping()
    except StoreError:
        print("not ready")
if sys.argv[2] == "immutable":
    subprocess.run(["chattr", "-i", db + "-shm"], check=True)
    s.write_batch([imp(9)])
    print("recovered", s.counts()["impressions"])
s.close()
print("alive")
"""


@pytest.mark.parametrize("fault", ["truncate", "immutable"])
def test_an_unwritable_wal_index_is_a_store_error_not_sigbus(tmp_path, fault, repo_root) -> None:
    """Without the guard both faults kill the process with SIGBUS (exit -7) on the next access to the -shm."""
    if fault == "immutable" and (os.geteuid() != 0 or shutil.which("chattr") is None):
        pytest.skip("chattr +i needs root and chattr")
    db = tmp_path / "e.db"
    proc = subprocess.run(
        [sys.executable, "-c", _SHM_FAULT, str(db), fault], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(repo_root)},
    )
    if fault == "immutable" and "Operation not supported" in proc.stderr:
        pytest.skip("the file system has no immutable flag")
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout.count("refused:") == 3 and proc.stdout.count("not ready") == 3
    assert "WAL index" in proc.stdout and "alive" in proc.stdout
    if fault == "immutable":
        assert "recovered 2" in proc.stdout


# Does another process see SQLite's shared lock on the dead-man-switch byte of the -shm (UNIX_SHM_BASE
# (22 + 8) * 4 = 120, plus SQLITE_SHM_NLOCK = 8), held by the process that has the WAL index mapped? F_GETLK
# reports another process's locks only, hence a child. struct flock on Linux: l_type, l_whence, l_start, l_len,
# l_pid.
_DMS_PROBE = r"""
import fcntl, struct, sys
with open(sys.argv[1], "rb") as f:
    got = fcntl.fcntl(f.fileno(), fcntl.F_GETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 128, 1, 0))
l_type, _, _, _, pid = struct.unpack("hhqqi4x", got)
print("unlocked" if l_type == fcntl.F_UNLCK else f"locked by {pid}")
"""


def test_the_file_checks_keep_sqlites_wal_index_lock(tmp_path) -> None:
    """The store checks its file (and -shm) before every transaction. Opening and closing the -shm for that
    dropped every POSIX lock this process held on it, SQLite's dead-man-switch lock among them: the next process
    to open the database then took itself for the first, truncated the -shm and rebuilt it, and this process's
    next commit died of SIGBUS (``abharness ingest`` did, while a test polled its database)."""
    store = _sqlite(tmp_path)
    try:
        store.write_batch([imp(0)])  # the connection maps the -shm (and takes the lock)
        store.write_batch([imp(1)])  # checked the file (and -shm) again before this transaction
        store.counts()
        probe = subprocess.run([sys.executable, "-c", _DMS_PROBE, str(tmp_path / "db" / "e.db-shm")],
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.strip() == f"locked by {os.getpid()}"
    finally:
        store.close()


_READER_DURING_COMMIT = _CHILD_STORE + r"""
s.write_batch([imp(1)])  # the file checks ran with the -shm mapped
reader = ("import sqlite3, sys\n"
          "print(sqlite3.connect(sys.argv[1], timeout=30).execute('SELECT count(*) FROM impressions').fetchone())")
with s._conn() as conn:  # a long write transaction, as a batch with its rollups is
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE pad (x BLOB)")
    r = subprocess.Popen([sys.executable, "-c", reader, db])  # opens the database meanwhile (waits for our lock)
    try:
        r.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        pass
    print("shm", os.stat(db + "-shm").st_size, flush=True)
    for _ in range(2000):  # frames spill to the WAL: the WAL index (-shm mapping) is written
        conn.execute("INSERT INTO pad VALUES (randomblob(3000))")
    conn.execute("COMMIT")
r.wait(timeout=60)
s.write_batch([imp(2)])
print("committed", s.counts()["impressions"])
s.close()
"""


def test_a_reader_opening_during_a_write_does_not_kill_the_writer(tmp_path, repo_root) -> None:
    """The SIGBUS itself, deterministically: a second process opens the database while the store's transaction is
    under way. With the lock dropped it truncated the -shm to 3 bytes and the writer died (exit -7) writing it."""
    proc = subprocess.run(
        [sys.executable, "-c", _READER_DURING_COMMIT, str(tmp_path / "e.db")], capture_output=True, text=True,
        timeout=120, env={**os.environ, "PYTHONPATH": str(repo_root)},
    )
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert "shm 32768" in proc.stdout and "committed 3" in proc.stdout
