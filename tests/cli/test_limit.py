"""`--limit`: index build and evaluate on a slice, recorded so a sliced result is never read as a full one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abharness.cli.main import build_app
from abharness.data.types import Document
from abharness.errors import ConfigError
from abharness.evaluation import load_suite, restrict_suite
from abharness.evaluation.schema import REPORT_SCHEMA
from abharness.index import build_index, read_index_manifest
from abharness.testing.opensearch import HashEncoder


def _docs(n: int) -> dict[str, Document]:
    return {f"d{i}": Document(doc_id=f"d{i}", title="", text=f"document number {i} about cells") for i in range(n)}


def test_index_build_limit_keeps_the_first_documents_and_records_the_slice(tmp_path: Path) -> None:
    full = build_index(HashEncoder(dim=32), _docs(40), tmp_path / "full", progress=False, use_cache=False)
    part = build_index(HashEncoder(dim=32), _docs(40), tmp_path / "part", progress=False, use_cache=False, limit=10)
    assert (full.limit, full.source_num_docs, full.num_docs, full.is_slice) == (None, 40, 40, False)
    assert (part.limit, part.source_num_docs, part.num_docs, part.is_slice) == (10, 40, 10, True)
    assert part.corpus_hash != full.corpus_hash  # the slice is a different corpus, never confused with the full one
    assert read_index_manifest(tmp_path / "part").limit == 10
    ids = [json.loads(line)["doc_id"] for line in (tmp_path / "part" / "doc_ids.jsonl").read_text().splitlines()]
    assert ids == [f"d{i}" for i in range(10)]
    r = CliRunner().invoke(build_app(), ["index", "info", str(tmp_path / "part"), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["limit"] == 10
    with pytest.raises(ConfigError, match="limit=0"):
        build_index(HashEncoder(dim=32), _docs(5), tmp_path / "zero", progress=False, use_cache=False, limit=0)


def test_evaluate_limit_cuts_every_data_set_and_is_part_of_the_report_schema() -> None:
    suite = restrict_suite(load_suite(None), only="retrieval,sts,maps", limit=40)
    assert suite.enabled_checks() == ("retrieval", "sts", "maps")
    assert (suite.retrieval.sample_queries, suite.retrieval.sample_distractors) == (40, 400)
    assert all(s.sample_queries == 40 for s in suite.overfitting.sets)
    assert all(s.max_pairs == 40 for s in suite.sts.sets)
    assert (suite.classification.max_train, suite.clustering.max_items, suite.maps.sample) == (40, 40, 40)
    assert REPORT_SCHEMA["properties"]["limit"]["type"] == ["integer", "null"]
    with pytest.raises(ConfigError, match="--limit 5"):
        restrict_suite(load_suite(None), limit=5)


def test_the_cli_says_slice_when_index_build_has_a_limit(tmp_path: Path) -> None:
    r = CliRunner().invoke(build_app(), ["index", "build", "--help"])
    assert "--limit" in r.output
    r = CliRunner().invoke(build_app(), ["evaluate", "--help"])
    assert "--limit" in r.output and "slice" in r.output


def test_evaluation_report_to_frame_has_a_row_per_metric_and_per_check() -> None:
    from abharness.evaluation import EvaluationReport

    checks = {
        "retrieval": {"verdict": "improved", "headline": "h", "metrics": [
            {"metric": "ndcg@10", "baseline": 0.60, "candidate": 0.65, "delta": 0.05, "p_holm": 0.01},
            {"metric": "recall@10", "baseline": 0.70, "candidate": 0.72, "delta": 0.02, "p_holm": 0.2}]},
        "sts": {"verdict": "no-change", "headline": "h"},
    }
    report = EvaluationReport(baseline={}, candidate={}, suite={}, checks=checks, timings={}, created_at="",
                              data_dir="", limit=30)
    frame = report.to_frame()
    assert list(frame.columns) == ["check", "metric", "baseline", "candidate", "delta", "p_holm", "verdict"]
    rows = frame[frame.metric.notna()]
    assert list(rows.metric) == ["ndcg@10", "recall@10"] and list(rows.delta) == [0.05, 0.02]
    assert set(frame[frame.metric.isna()].check) == {"retrieval", "sts"}
    assert report.to_dict()["limit"] == 30

