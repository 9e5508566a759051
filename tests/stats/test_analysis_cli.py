"""``abharness analyze`` through the real CLI app and a real SQLite store: exit codes gate a rollout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from abharness.cli.main import build_app


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def store_url(tmp_path, sim):
    from abharness.stores import open_store

    path = tmp_path / "events.db"
    store = open_store(f"sqlite:///{path}")
    sim.write_events(store, np.random.default_rng(1), 400, experiment="win", ctr={"control": 0.15, "treatment": 0.6})
    sim.write_events(store, np.random.default_rng(2), 400, experiment="flat", ctr={"control": 0.3, "treatment": 0.3})
    sim.write_events(store, np.random.default_rng(3), 30, experiment="solo", arms=("control",))
    store.close()
    return f"sqlite:///{path}"


def run(runner, *args):
    return runner.invoke(build_app(), ["analyze", *args])


def test_help_lists_options_and_exit_codes(runner):
    res = run(runner, "--help")
    assert res.exit_code == 0
    for word in ("--store", "--experiment", "--since", "--until", "--metric", "--segment", "--json", "ship"):
        assert word in res.output


def test_ship_exit_0_with_json(runner, store_url):
    res = run(runner, "--store", store_url, "--experiment", "win", "--json", "--tuning-units", "1000",
              "--weights", "control=0.5,treatment=0.5", "--bootstrap", "0", "--timeseries-points", "3",
              "--margin", "error_rate=0.02")  # ~600 impressions with no error bound the rate by ~0.5 %
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["decision"] == "ship" and data["exit_code"] == 0
    assert data["srm"]["alarm"] is False
    assert data["metrics"]["ctr"]["lift"] > 0 and len(data["timeseries"]) >= 2


def test_rollback_exit_20_when_control_is_the_better_arm(runner, store_url):
    res = run(runner, "--store", store_url, "--experiment", "win", "--control", "treatment", "--bootstrap", "0",
              "--tuning-units", "1000", "--timeseries-points", "0")
    assert res.exit_code == 20, res.output
    assert "decision: rollback" in res.stdout


def test_keep_running_exit_10_with_tables_and_segment(runner, store_url):
    res = run(runner, "--store", store_url, "--experiment", "flat", "--segment", "device", "--metric", "ctr,mrr",
              "--bootstrap", "20", "--timeseries-points", "2")
    assert res.exit_code == 10, res.output
    for text in ("SRM", "guardrails", "power so far", "segment device=mobile", "decision: keep-running"):
        assert text in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--experiment", "nope"], "experiment 'nope' not found"),
        (["--experiment", "solo"], "only one arm"),
        (["--experiment", "win", "--since", "5000000000"], "no A/B or interleaved impressions"),
        (["--experiment", "win", "--metric", "ndcg"], "unknown metric 'ndcg'"),
        (["--experiment", "win", "--since", "yesterday"], "not a time"),
        (["--experiment", "win", "--weights", "control:0.5"], "expected NAME=NUMBER"),
        (["--experiment", "win", "--basis", "bayes"], "basis='bayes'"),
    ],
)
def test_bad_input_exit_2_with_one_line_message(runner, store_url, args, message):
    res = run(runner, "--store", store_url, *args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert "Traceback" not in res.output


def test_missing_sqlite_file_is_a_clear_error(runner, tmp_path):
    res = run(runner, "--store", f"sqlite:///{tmp_path / 'absent.db'}", "--experiment", "x")
    assert res.exit_code == 2 and "no SQLite file" in res.stderr
    assert not (tmp_path / "absent.db").exists()
