"""With the real packaged MiniLM (session fixture) on small slices: the CLI runs, writes a valid report, and the
same model as baseline and candidate gives zero change."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from abharness.cli.main import build_app
from abharness.evaluation import REPORT_SCHEMA, evaluate, load_suite

pytestmark = pytest.mark.model


def test_minilm_against_itself(minilm, mini_data: Path, eval_cache: Path, tmp_path: Path, small: dict) -> None:
    SMALL = small
    suite = load_suite(None, overrides={**SMALL, "overfitting": {"enabled": False}, "maps": {"enabled": False},
                                        "classification": {"enabled": False}, "clustering": {"enabled": False}})
    report = evaluate(minilm, minilm, suite, tmp_path / "out", data_dir=mini_data, progress=False)
    r = report.checks["retrieval"]
    assert r["verdict"] == "no-change" and all(m["delta"] == 0 for m in r["metrics"])
    ndcg = next(m for m in r["metrics"] if m["metric"] == "ndcg@10")
    assert 0.3 < ndcg["baseline"] <= 1.0  # MiniLM on a 24-query SciFact slice ranks far above chance
    sts = report.checks["sts"]["sets"]["stsbenchmark/test"]
    assert sts["baseline"]["spearman"] > 0.6  # all-MiniLM-L6-v2 is a strong STS-B model
    payload = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    jsonschema.validate(payload, REPORT_SCHEMA)
    assert any(Path(eval_cache).rglob("*.npy"))  # embeddings went to the (test) cache


def test_cli_runs_with_builtin_model(mini_data: Path, eval_cache: Path, tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("n_resamples: 300\nsts:\n  sets:\n    - {dataset: sick, loader: sick, max_pairs: 100}\n",
                     encoding="utf-8")
    result = CliRunner().invoke(build_app(), [
        "evaluate", "--baseline", "minilm", "--candidate", "minilm", "--data-root", str(mini_data), "--suite", str(suite),
        "--only", "sts,probes", "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    for check in ("sts", "probes", "retrieval"):
        assert check in result.output
    assert (tmp_path / "out" / "report.html").is_file()
