"""The proxy under faults, as a real uvicorn process (``abharness serve``) with a real store: for each fault, count
searches answered, events accepted, stored, spooled, quarantined and dropped, and assert
accepted = stored + spooled + quarantined + counted drops (SIGKILL: what is missing was accepted within the
documented flush window). The arms are index servers whose fake backend the test can make fail or slow.

Run: ``.venv/bin/python -m pytest tests/faults -q`` (prints the fault table at the end).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.responses import JSONResponse

from abharness.api.index_server import create_index_server_app
from abharness.core.assignment import assign
from abharness.testing.fakes import DictBackend, tiny_corpus
from abharness.testing.servers import uvicorn_in_thread

from .harness import LoadDriver, Proxy, account, load_spool, lost_at_close, row, spool_contents, stored_ids

pytestmark = pytest.mark.slow

class Switch:
    """An index server that can be 'not there' (503 on every request) until ``down`` is cleared."""

    def __init__(self, app, down: bool = False) -> None:
        self.app, self.down = app, down

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.down:
            await JSONResponse({"error": "down"}, status_code=503)(scope, receive, send)
            return
        await self.app(scope, receive, send)


@contextmanager
def arms(treatment_down: bool = False) -> Iterator[tuple[dict[str, str], dict[str, DictBackend], Switch]]:
    corpus = tiny_corpus(40)
    backends = {"baseline": DictBackend(corpus, name="baseline"), "finetuned": DictBackend(corpus, name="finetuned")}
    switch = Switch(create_index_server_app(backends["finetuned"]), down=treatment_down)
    with uvicorn_in_thread(create_index_server_app(backends["baseline"])) as a, uvicorn_in_thread(switch) as b:
        yield {"baseline": a, "finetuned": b}, backends, switch


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _finish(fault: str, proxy: Proxy, load, fault_table, *, store_url: str | None = None, sig=signal.SIGTERM,
            note: str = "", load_back: bool = True):
    """Scrape the drop counters, stop the proxy, account for every accepted event, load the spool back."""
    m = proxy.metrics()
    rc = proxy.signal(sig)
    if sig == signal.SIGTERM:
        assert rc in (0, -signal.SIGTERM), proxy.log()[-2000:]
    dropped = int(m.get("abharness_events_dropped_total", 0)) + lost_at_close(proxy.log())
    spooled = spool_contents(proxy.spool_dir)
    quarantined = spool_contents(proxy.spool_dir, quarantine=True)
    url = store_url or proxy.store_url
    outcome, missing = account(fault, load, stored=stored_ids(url), spooled=spooled, quarantined=quarantined,
                               dropped=dropped, note=note)
    if load_back and (spooled[0] or spooled[1]):
        load_spool(url, proxy.spool_dir)
        after = stored_ids(url)
        assert set(load.impressions) - after[0] <= missing and set(load.clicks) - after[1] <= missing, \
            "spooled events did not load back"
    fault_table.append(row(outcome))
    print("\n" + row(outcome))
    assert "Bus error" not in proxy.log() and "Traceback" not in proxy.log(), proxy.log()[-3000:]
    return outcome, missing


def _proxy(tmp_path: Path, urls, **kw) -> Proxy:
    kw.setdefault("store_url", f"sqlite:///{tmp_path / 'db' / 'events.db'}")
    return Proxy(tmp_path, arm_urls=urls, spool_dir=tmp_path / "spool", **kw)


def test_sigterm_under_load(tmp_path, fault_table):
    with arms() as (urls, _, _):
        proxy = _proxy(tmp_path, urls).start()
        try:
            driver = LoadDriver(proxy.base).start()
            time.sleep(3)
            m = proxy.metrics()
            rc = proxy.signal(signal.SIGTERM)  # while the clients are still sending
            load = driver.stop()
        finally:
            proxy.kill_if_running()
        assert rc in (0, -signal.SIGTERM)
        dropped = int(m.get("abharness_events_dropped_total", 0)) + lost_at_close(proxy.log())
        outcome, missing = account("SIGTERM under load", load, stored=stored_ids(proxy.store_url),
                                   spooled=spool_contents(proxy.spool_dir),
                                   quarantined=spool_contents(proxy.spool_dir, quarantine=True), dropped=dropped)
        fault_table.append(row(outcome))
        print("\n" + row(outcome))
    assert load.answered > 20 and outcome.lost == 0 and not missing


def test_sigkill_loses_at_most_the_flush_window(tmp_path, fault_table):
    flush_s = 1.0  # a long flush interval, so the kill finds events in the queue
    with arms() as (urls, _, _):
        proxy = _proxy(tmp_path, urls, events={"flush_interval_s": flush_s}).start()
        try:
            driver = LoadDriver(proxy.base).start()
            time.sleep(3)
            killed_at = time.monotonic()
            proxy.signal(signal.SIGKILL)
            load = driver.stop()
        finally:
            proxy.kill_if_running()
        outcome, missing = account("SIGKILL under load", load, stored=stored_ids(proxy.store_url),
                                   spooled=spool_contents(proxy.spool_dir),
                                   quarantined=spool_contents(proxy.spool_dir, quarantine=True), dropped=0)
        times = [load.impressions.get(m) if isinstance(m, str) else load.clicks.get(m) for m in missing]
        oldest = max((killed_at - t for t in times), default=0.0)
        outcome.note = f"missing events were accepted at most {oldest:.2f} s before the kill"
        fault_table.append(row(outcome))
        print("\n" + row(outcome))
    assert load.answered > 20
    # What a SIGKILL loses: the queue, i.e. events accepted within the flush interval plus the batch being
    # committed (the commit itself can take a few hundred ms on a loaded machine).
    assert oldest <= flush_s + 1.5, oldest


def _chattr(flag: str, paths: list[Path]) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


def test_database_unwritable_while_serving(tmp_path, fault_table):
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("making the database immutable needs root and chattr")
    with arms() as (urls, _, _):
        proxy = _proxy(tmp_path, urls).start()
        db = tmp_path / "db" / "events.db"
        files = [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]
        try:
            driver = LoadDriver(proxy.base).start()
            time.sleep(1.5)
            _chattr("+i", files)
            try:
                _wait(lambda: proxy.ready()[0] == 503, 20, "/readyz to report the store")
                _wait(lambda: proxy.metrics().get("abharness_events_spooled_total", 0) > 0, 30, "a spill")
                status, body = proxy.ready()
                assert str(tmp_path) not in str(body)
                time.sleep(1.0)
            finally:
                _chattr("-i", files)
            _wait(lambda: proxy.ready()[0] == 200, 30, "the store to recover")
            time.sleep(1.0)
            load = driver.stop()
            outcome, missing = _finish("database unwritable (chattr +i)", proxy, load, fault_table,
                                       note="then writable again; spool loaded back")
        finally:
            proxy.kill_if_running()
    assert outcome.spooled > 0 and outcome.lost == 0 and outcome.answered > 20


def test_database_directory_removed_while_serving(tmp_path, fault_table):
    with arms() as (urls, _, _):
        proxy = _proxy(tmp_path, urls).start()
        try:
            driver = LoadDriver(proxy.base).start()
            time.sleep(1.5)
            before = proxy.metrics()["abharness_events_written_total"]
            shutil.rmtree(tmp_path / "db")
            _wait(lambda: proxy.ready()[0] == 503, 20, "/readyz to report the store")
            _wait(lambda: proxy.metrics().get("abharness_events_spooled_total", 0) > 0, 30, "a spill")
            time.sleep(1.0)
            load = driver.stop()
            m = proxy.metrics()
            rc = proxy.signal(signal.SIGTERM)
        finally:
            proxy.kill_if_running()
        assert rc in (0, -signal.SIGTERM)
        # The rows written before the removal went with the directory; they are counted from the writer.
        written = int(m["abharness_events_written_total"])  # the serve_start audit entry is not written by the writer
        spooled = spool_contents(proxy.spool_dir)
        n_spooled = len(spooled[0]) + len(spooled[1])
        dropped = int(m.get("abharness_events_dropped_total", 0)) + lost_at_close(proxy.log())
        lost = load.accepted - written - n_spooled - dropped
        fault_table.append(
            f"{'database directory removed':<34}{load.answered:>9}{load.failed:>8}{load.accepted:>9}{written:>8}"
            f"{n_spooled:>8}{0:>9}{dropped:>8}{max(0, lost):>6}  stored = written before the removal "
            f"({int(before)} at removal), gone with the directory; spool loads into a new file"
        )
        out = load_spool(f"sqlite:///{tmp_path / 'db' / 'events.db'}", proxy.spool_dir)
        assert f"{n_spooled} newly stored" in out
    assert "Bus error" not in proxy.log() and n_spooled > 0 and lost == 0


def test_disk_full_while_serving(tmp_path, fault_table):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    # 32 MB, not less: after space is freed the spool is loaded back into the same file system, and on a quiet
    # machine the load driver produces several MB of events (with the per-unit rollups) before the disk fills.
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with arms() as (urls, _, _):
            proxy = _proxy(tmp_path, urls, store_url=f"sqlite:///{mnt / 'events.db'}").start()
            try:
                driver = LoadDriver(proxy.base).start()
                time.sleep(1.0)
                filler = mnt / "filler"
                with filler.open("wb") as f:  # fill the file system
                    try:
                        while True:
                            f.write(b"\0" * 65536)
                            f.flush()
                    except OSError:
                        pass
                _wait(lambda: proxy.metrics().get("abharness_events_spooled_total", 0) > 0, 40, "a spill")
                assert proxy.ready()[0] == 503
                filler.unlink()  # space again
                _wait(lambda: proxy.ready()[0] == 200, 30, "the store to recover")
                time.sleep(1.0)
                load = driver.stop()
                outcome, missing = _finish("disk full (32 MB tmpfs)", proxy, load, fault_table,
                                           note="then space freed; spool loaded back")
            finally:
                proxy.kill_if_running()
    finally:
        subprocess.run(["umount", "-l", str(mnt)])
    assert outcome.spooled > 0 and outcome.lost == 0


@pytest.mark.postgres
def test_postgresql_stopped_and_restarted(tmp_path, fault_table):
    from abharness.stores.pgtemp import TempCluster, create_database, find_bindir

    if find_bindir() is None:
        pytest.skip("PostgreSQL binaries not found: the restart needs a throw-away cluster it may stop")
    with TempCluster() as cluster:  # never the machine's shared server
        url = cluster.url(create_database(cluster.url(), prefix="abh_fault"))
        with arms() as (urls, _, _):
            proxy = _proxy(tmp_path, urls, store_url=url).start()
            try:
                driver = LoadDriver(proxy.base).start()
                time.sleep(1.5)
                cluster.stop("fast")
                _wait(lambda: proxy.metrics().get("abharness_events_spooled_total", 0) > 0, 40, "a spill")
                cluster.start()
                _wait(lambda: proxy.ready()[0] == 200, 60, "the store to recover")
                time.sleep(1.0)
                load = driver.stop()
                outcome, missing = _finish("PostgreSQL stopped and restarted", proxy, load, fault_table,
                                           note="spool loaded back after the restart")
            finally:
                proxy.kill_if_running()
    assert outcome.spooled > 0 and outcome.lost == 0 and load.failed == 0


def test_treatment_down_at_start(tmp_path, fault_table):
    with arms(treatment_down=True) as (urls, _, switch):
        proxy = _proxy(tmp_path, urls).start()
        try:
            status, body = proxy.ready()
            assert status == 200 and "arm:finetuned" in body["degraded"]
            driver = LoadDriver(proxy.base).start()
            time.sleep(1.5)
            switch.down = False
            _wait(lambda: "arm:finetuned" not in proxy.ready()[1]["degraded"], 40, "the reconnect")
            time.sleep(1.0)
            load = driver.stop()
            m = proxy.metrics()
            outcome, missing = _finish("treatment down at start", proxy, load, fault_table,
                                       note="control served; the arm reconnected in the background")
        finally:
            proxy.kill_if_running()
    assert load.failed == 0 and outcome.lost == 0 and m["abharness_events_written_total"] > 0


def test_treatment_failing_then_slow(tmp_path, fault_table):
    with arms() as (urls, backends, _):
        proxy = _proxy(tmp_path, urls).start()
        try:
            driver = LoadDriver(proxy.base).start()
            time.sleep(1.0)
            backends["finetuned"].fail = True
            time.sleep(1.5)
            backends["finetuned"].fail = False
            backends["finetuned"].delay_s = 1.0  # beyond timeouts.treatment_s = 0.3
            time.sleep(2.0)
            load = driver.stop()
            backends["finetuned"].delay_s = 0.0
            fallbacks = sum(v for k, v in _labelled(proxy, "abharness_fallbacks_total").items())
            outcome, missing = _finish("treatment failing, then slow", proxy, load, fault_table,
                                       note=f"{fallbacks:.0f} searches fell back to control")
        finally:
            proxy.kill_if_running()
    assert load.failed == 0 and fallbacks > 0 and outcome.lost == 0


def test_control_failing(tmp_path, fault_table):
    with arms() as (urls, backends, _):
        proxy = _proxy(tmp_path, urls).start()
        try:
            driver = LoadDriver(proxy.base).start()
            time.sleep(1.0)
            backends["baseline"].fail = True
            time.sleep(1.5)
            unit = next(f"c{i}" for i in range(1000)
                        if assign("salt1", f"c{i}", {"baseline": 0.5, "finetuned": 0.5}) == "baseline")
            r = httpx.post(f"{proxy.base}/search", json={"query": "cell", "unit_id": unit}, timeout=10)
            assert r.status_code == 503 and r.json()["error"] == "control_unavailable" and r.json()["error_id"]
            assert "127.0.0.1" not in r.text  # the index server's address stays in the log
            backends["baseline"].fail = False
            time.sleep(1.0)
            load = driver.stop()
            outcome, missing = _finish("control failing", proxy, load, fault_table,
                                       note="searches for control units answered 503 while it failed")
        finally:
            proxy.kill_if_running()
    assert load.failed > 0 and load.answered > 0 and outcome.lost == 0


def _labelled(proxy: Proxy, name: str) -> dict[str, float]:
    import re

    text = httpx.get(f"{proxy.base}/metrics", timeout=10).text
    return {m.group(1): float(m.group(2)) for m in re.finditer(rf"^{name}\{{(.*)\}} ([0-9.eE+-]+)$", text, re.M)}
