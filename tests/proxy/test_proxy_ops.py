"""What an operator sees: offline /docs and /redoc, logs (access, JSON, admin changes, fallbacks), and start-up
errors as one line instead of uvicorn's traceback."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from abharness.api.app import create_app
from abharness.errors import FingerprintMismatch
from abharness.testing.client import serving
from abharness.testing.configs import TEST_ADMIN_TOKEN, config_dict, make_config
from abharness.testing.fakes import DictBackend, InlineWriter, MemoryStore, tiny_corpus

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


def _app(cfg, backends, store):
    return create_app(cfg, registry=CollectorRegistry(), store=store, backends=backends, writer=InlineWriter(store))


@pytest.mark.anyio
async def test_docs_and_redoc_load_every_asset_from_the_app_itself(backends, store) -> None:
    async with serving(_app(make_config(), backends, store)) as client:
        for page in ("/docs", "/redoc"):
            r = await client.get(page)
            assert r.status_code == 200 and "text/html" in r.headers["content-type"], page
            html = r.text
            assert "cdn" not in html.lower() and "fonts.googleapis" not in html, page
            urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
            urls += re.findall(r"""url: ?["']([^"']+)["']""", html)  # the OpenAPI URL inside the script
            assert urls, page
            for url in urls:
                assert url.startswith("/"), f"{page} loads {url} from outside the app"
                asset = await client.get(url)
                assert asset.status_code == 200 and len(asset.content) > 100, url
        spec = (await client.get("/openapi.json")).json()
        assert "/search" in spec["paths"] and not any(p.startswith(("/docs", "/redoc")) for p in spec["paths"])


@pytest.mark.anyio
async def test_every_admin_change_and_the_first_fallback_leave_a_log_line(store, caplog) -> None:
    corpus = tiny_corpus(40)
    backends = {"baseline": DictBackend(corpus, name="baseline"),
                "finetuned": DictBackend(corpus, name="finetuned", fail=True)}
    caplog.set_level(logging.INFO)
    cfg = make_config(weights={"baseline": 0.0, "finetuned": 1.0})
    async with serving(_app(cfg, backends, store)) as client:
        for i in range(5):
            r = await client.post("/search", json={"query": "cell biology", "unit_id": f"u{i}"})
            assert r.status_code == 200 and r.json()["fallback"] is True
        assert (await client.post("/admin/pause", headers=AUTH)).status_code == 200
        assert (await client.put("/admin/overrides/u7", headers=AUTH, json={"arm": "baseline"})).status_code == 200
    fallbacks = [r for r in caplog.records if getattr(r, "event", None) == "fallback"]
    assert len(fallbacks) == 1, "the first fallback is logged, the next ones within 10 s are only counted"
    assert "finetuned" in fallbacks[0].getMessage() and "baseline" in fallbacks[0].getMessage()
    admin = [r for r in caplog.records if getattr(r, "event", None) == "admin_change"]
    assert [r.action for r in admin] == ["pause", "override_set"] and admin[1].actor
    assert "u7" in admin[1].getMessage() and "paused=True" in admin[1].getMessage()


_SERVER = """
import sys
from pathlib import Path
from abharness.api.app import create_app
from abharness.cli.serve import run_uvicorn
from abharness.observability.logs import configure_logging
from abharness.testing.configs import make_config
from abharness.testing.fakes import DictBackend, InlineWriter, MemoryStore, tiny_corpus
corpus = tiny_corpus(40)
backends = {"baseline": DictBackend(corpus, name="baseline"), "finetuned": DictBackend(corpus, name="finetuned", fail=True)}
store = MemoryStore()
configure_logging("info", "json")
app = create_app(make_config(weights={"baseline": 0.0, "finetuned": 1.0}), backends=backends, store=store,
                 writer=InlineWriter(store))
run_uvicorn(app, host="127.0.0.1", port=0, port_file=Path(sys.argv[1]), log_level="info", access_log=True,
            own_logging=True)
"""


def test_json_logs_of_a_real_server_carry_access_admin_and_fallback_lines(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(port_file)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not port_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(100):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            assert client.post("/search", json={"query": "cell", "unit_id": "u1"}).json()["fallback"] is True
            assert client.post("/admin/resume", headers=AUTH).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert records, err
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert {"method": "POST", "path": "/search", "status": 200} in [
        {k: r[k] for k in ("method", "path", "status")} for r in access]
    assert any(r.get("event") == "fallback" and r.get("arm") == "finetuned" for r in records)
    assert any(r.get("event") == "admin_change" and r.get("action") == "resume" and r.get("actor") for r in records)


def test_an_abharness_error_in_the_lifespan_is_raised_by_run_uvicorn_without_a_traceback(tmp_path, capfd) -> None:
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    from abharness.cli.serve import run_uvicorn

    @asynccontextmanager
    async def lifespan(app):
        raise FingerprintMismatch("index idx was built with model abc, not def; rebuild it")
        yield

    with pytest.raises(FingerprintMismatch, match="rebuild it"):
        run_uvicorn(FastAPI(lifespan=lifespan), host="127.0.0.1", port=0, port_file=None, log_level="info")
    err = capfd.readouterr().err
    assert "Traceback" not in err and "startup failed" not in err, err


@pytest.mark.model
def test_serve_with_an_index_built_by_another_model_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    """The README's failure: a fingerprint mismatch found while the proxy starts (inside uvicorn's lifespan)."""
    import yaml

    from abharness.index import build_index
    from abharness.testing.opensearch import HashEncoder

    corpus = {d: t for d, t in tiny_corpus(30).items()}
    from abharness.data.types import Document

    docs = {d: Document(doc_id=d, title="", text=t) for d, t in corpus.items()}
    build_index(HashEncoder(dim=384), docs, tmp_path / "idx", progress=False, use_cache=False)
    cfg = config_dict()
    for arm in cfg["arms"]:
        arm["backend"] = {"kind": "local", "index": "idx", "model": "minilm"}
    cfg["store_url"] = "sqlite:///events.db"
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "abharness.cli.main", "serve", "--config", "exp.yaml", "--port", "0"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and ("hash-encoder-v1" in errors[0] or "fingerprint" in errors[0].lower()), proc.stderr
    assert (tmp_path / "events.db").exists()  # the store path was resolved next to the config
