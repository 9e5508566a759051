"""A short headless Locust run against a local proxy (real uvicorn, loopback) completes with zero errors."""

from __future__ import annotations

import importlib.util
import json

import pytest


@pytest.mark.slow
def test_short_locust_run_has_zero_errors(repo_root, shared_data, tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("run_load", repo_root / "loadtest" / "run_load.py")
    run_load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_load)  # type: ignore[union-attr]
    run_load.main(["--backend", "fake", "--users", "3", "--spawn-rate", "3", "--seconds", "4", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "load.json").read_text())
    assert result["errors"] == 0
    search = result["endpoints"]["/search"]
    assert search["requests"] > 0 and search["failures"] == 0
    assert result["endpoints"]["/click"]["failures"] == 0
    # every search the proxy answered was logged (SIGTERM flushes the writer)
    assert result["stored"]["impressions"] >= search["requests"]
