"""A treatment that is down at start does not take search down: the proxy starts, serves control, reports the arm
in /readyz and /metrics, and reconnects it in the background. Control down at start is an error. Every backend is
warmed up before the app reports ready, so the first search does not fall back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
import yaml
from prometheus_client import CollectorRegistry
from starlette.responses import JSONResponse

from abharness.api.app import create_app
from abharness.api.index_server import create_index_server_app
from abharness.core.assignment import assign
from abharness.errors import BackendError
from abharness.testing.client import serving
from abharness.testing.configs import config_dict, make_config
from abharness.testing.fakes import DictBackend, InlineWriter, MemoryStore, tiny_corpus
from abharness.testing.servers import uvicorn_in_thread

pytestmark = pytest.mark.anyio


class Switch:
    """Wraps an ASGI app: while ``down`` every HTTP request answers 503 (an index server that is not there)."""

    def __init__(self, app) -> None:
        self.app, self.down = app, True

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.down:
            await JSONResponse({"error": "down"}, status_code=503)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _metric(registry, name, labels=None):
    value = registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


def _unit_for(arm: str) -> str:
    return next(f"u{i}" for i in range(1000) if assign("salt1", f"u{i}", {"baseline": 0.5, "finetuned": 0.5}) == arm)


async def test_treatment_down_at_start_serves_control_and_reconnects():
    corpus = tiny_corpus(40)
    treatment = Switch(create_index_server_app(DictBackend(corpus, name="finetuned")))
    store = MemoryStore()
    with uvicorn_in_thread(create_index_server_app(DictBackend(corpus, name="baseline"))) as url_a, \
            uvicorn_in_thread(treatment) as url_b:
        cfg = make_config(arms=[
            {"name": "baseline", "role": "control", "backend": {"kind": "remote", "url": url_a}},
            {"name": "finetuned", "role": "treatment", "backend": {"kind": "remote", "url": url_b}},
        ])
        registry = CollectorRegistry()
        app = create_app(cfg, registry=registry, store=store, writer=InlineWriter(store))
        async with serving(app) as client:
            r = await client.get("/readyz")
            assert r.status_code == 200, r.text
            assert "arm:finetuned" in r.json()["degraded"]
            assert _metric(registry, "abharness_arm_available", {"arm": "finetuned"}) == 0
            assert _metric(registry, "abharness_arm_available", {"arm": "baseline"}) == 1
            unit = _unit_for("finetuned")
            s = (await client.post("/search", json={"query": "cell", "unit_id": unit})).json()
            assert s["fallback"] is True and s["results"]
            treatment.down = False
            deadline = time.monotonic() + 30
            while _metric(registry, "abharness_arm_available", {"arm": "finetuned"}) == 0:
                assert time.monotonic() < deadline, "the arm was never reconnected"
                await asyncio.sleep(0.1)
            s = (await client.post("/search", json={"query": "cell", "unit_id": unit})).json()
            assert s["fallback"] is False and s["arm"] == "finetuned"
            r = await client.get("/readyz")
            assert r.status_code == 200 and r.json()["degraded"] == {}
    fallbacks = [i for i in store.impressions.values() if i.fallback]
    assert len(fallbacks) == 1 and fallbacks[0].fingerprints.keys() == {"baseline"}


async def test_control_down_at_start_is_an_error():
    corpus = tiny_corpus(10)
    down = Switch(create_index_server_app(DictBackend(corpus, name="baseline")))
    with uvicorn_in_thread(down) as url_a, \
            uvicorn_in_thread(create_index_server_app(DictBackend(corpus, name="finetuned"))) as url_b:
        cfg = make_config(arms=[
            {"name": "baseline", "role": "control", "backend": {"kind": "remote", "url": url_a}},
            {"name": "finetuned", "role": "treatment", "backend": {"kind": "remote", "url": url_b}},
        ])
        store = MemoryStore()
        app = create_app(cfg, registry=CollectorRegistry(), store=store, writer=InlineWriter(store))
        with pytest.raises(BackendError, match="answered 503"):
            async with serving(app):
                pass


def test_cli_control_down_at_start_is_one_line(tmp_path):
    cfg = config_dict(
        arms=[
            {"name": "baseline", "role": "control", "backend": {"kind": "remote", "url": "http://127.0.0.1:9"}},
            {"name": "finetuned", "role": "treatment", "backend": {"kind": "remote", "url": "http://127.0.0.1:9"}},
        ],
        store_url=f"sqlite:///{tmp_path / 'e.db'}",
    )
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from abharness.cli.main import main; main(sys.argv[1:])", "serve",
         "--config", str(path), "--port", "0"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "300"}, cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unreachable" in lines[0] and "Traceback" not in proc.stderr, proc.stderr


class SlowFirstCall(DictBackend):
    """Lazy loading: the first search takes ``first_s`` (an encoder loading its weights), later ones are fast."""

    def __init__(self, *args, first_s: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.first_s, self.warm = first_s, False

    def search(self, queries, k):
        if not self.warm:
            time.sleep(self.first_s)
            self.warm = True
        return super().search(queries, k)


async def test_backends_are_warmed_up_before_ready_so_the_first_search_does_not_fall_back():
    corpus = tiny_corpus(20)
    backends = {
        "baseline": SlowFirstCall(corpus, name="baseline", first_s=0.3),
        "finetuned": SlowFirstCall(corpus, name="finetuned", first_s=0.8),
    }
    cfg = make_config(timeouts={"control_s": 2.0, "treatment_s": 0.5})
    store = MemoryStore()
    app = create_app(cfg, registry=CollectorRegistry(), store=store, backends=backends, writer=InlineWriter(store))
    async with serving(app) as client:
        assert all(b.warm for b in backends.values())
        s = (await client.post("/search", json={"query": "cell", "unit_id": _unit_for("finetuned")})).json()
        assert s["arm"] == "finetuned" and s["fallback"] is False
