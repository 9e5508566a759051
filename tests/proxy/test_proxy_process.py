"""The proxy as a real process: `abharness serve` under uvicorn with the real SQLite store and EventWriter, arms
served by index servers over HTTP (RemoteBackend). N searches + clicks, SIGTERM, exactly N rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from abharness.api.index_server import create_index_server_app
from abharness.backends.remote import RemoteBackend
from abharness.errors import BackendError
from abharness.stores import open_store
from abharness.testing.configs import config_dict
from abharness.testing.fakes import DictBackend, tiny_corpus
from abharness.testing.servers import uvicorn_in_thread

CLI = "import sys; from abharness.cli.main import main; main(sys.argv[1:])"


def _wait_for_port(proc: subprocess.Popen, port_file: Path, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}: {proc.stderr.read()}")
        if port_file.exists():
            return int(port_file.read_text())
        time.sleep(0.05)
    raise AssertionError("server did not report its port")


def _wait_ready(base: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("server never became ready")


def test_sigterm_flushes_every_accepted_event(tmp_path: Path) -> None:
    n = 40
    corpus = tiny_corpus(40)
    db = tmp_path / "events.db"
    with uvicorn_in_thread(create_index_server_app(DictBackend(corpus, name="baseline"))) as url_a, \
            uvicorn_in_thread(create_index_server_app(DictBackend(corpus, name="finetuned"))) as url_b:
        cfg = config_dict(
            arms=[
                {"name": "baseline", "role": "control", "backend": {"kind": "remote", "url": url_a}},
                {"name": "finetuned", "role": "treatment", "backend": {"kind": "remote", "url": url_b}},
            ],
            store_url=f"sqlite:///{db}",
            # Nothing is written before shutdown: a batch never fills and the flush interval is long, so the
            # rows found afterwards were written by the SIGTERM flush.
            events={"batch_size": 100_000, "flush_interval_s": 600},
        )
        cfg_path = tmp_path / "experiment.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        port_file = tmp_path / "port"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI, "serve", "--config", str(cfg_path), "--port", "0",
             "--port-file", str(port_file), "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
        )
        try:
            base = f"http://127.0.0.1:{_wait_for_port(proc, port_file)}"
            _wait_ready(base)
            with httpx.Client(base_url=base, timeout=10) as client:
                arms = set()
                for i in range(n):
                    s = client.post("/search", json={"query": f"cell gene {i}", "unit_id": f"user-{i}"})
                    assert s.status_code == 200, s.text
                    body = s.json()
                    arms.add(body["arm"])
                    click = {"impression_token": body["impression_token"], "doc_id": body["results"][0]["doc_id"],
                             "position": 1}
                    assert client.post("/click", json=click).json()["status"] == "accepted"
                    assert client.post("/click", json=click).json()["status"] == "duplicate"
                metrics = client.get("/metrics").text
            assert arms == {"baseline", "finetuned"}
            assert f"abharness_event_queue_depth {2 * n}.0" in metrics
            before = open_store(f"sqlite:///{db}")
            try:
                assert before.counts("exp1")["impressions"] == 0  # all still queued
            finally:
                before.close()
            proc.send_signal(signal.SIGTERM)
            # uvicorn finishes the graceful shutdown (lifespan included), then re-raises the captured signal.
            assert proc.wait(timeout=60) in (0, -signal.SIGTERM), proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
    store = open_store(f"sqlite:///{db}")
    try:
        counts = store.counts("exp1")
        assert counts["impressions"] == n and counts["clicks"] == n
        imps = [imp for imp, _ in store.iter_impressions("exp1")]
        assert {i.unit_id for i in imps} == {f"user-{i}" for i in range(n)}
        assert all(i.fingerprints and i.latency_ms > 0 for i in imps)
        assert [a.action for a in store.audit_log("exp1")] == ["serve_start"]
    finally:
        store.close()


def test_remote_backend_round_trip_and_errors() -> None:
    local = DictBackend(tiny_corpus(20), name="baseline")
    with uvicorn_in_thread(create_index_server_app(local)) as url:
        remote = RemoteBackend(url, timeout_s=5)
        try:
            assert remote.info == local.info
            assert remote.search(["cell virus", "gene"], 4) == local.search(["cell virus", "gene"], 4)
            remote.ping()
            r = httpx.post(f"{url}/search", json={"queries": [], "k": 3})
            assert r.status_code == 422 and "body.queries" in r.json()["detail"]
        finally:
            remote.close()
    with pytest.raises(BackendError, match="unreachable"):
        RemoteBackend(url, timeout_s=0.5)


def test_remote_backend_timeout_is_a_backend_error() -> None:
    slow = DictBackend(tiny_corpus(10), name="slow")
    with uvicorn_in_thread(create_index_server_app(slow)) as url:
        remote = RemoteBackend(url, timeout_s=0.2)
        try:
            slow.delay_s = 1.0
            with pytest.raises(BackendError, match="timed out"):
                remote.search(["cell"], 3)
        finally:
            remote.close()
