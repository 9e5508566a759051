"""Replay and the CLI over an exported Parquet directory (DuckDB): the same report as over the SQLite store."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from abharness.cli.main import build_app
from abharness.replay import replay
from abharness.stores import open_store


def test_replay_over_parquet_equals_replay_over_sqlite(logged_ab, toy, make_backends, tmp_path) -> None:
    cfg, _, _, url = logged_ab
    corpus, _, _ = toy
    out = tmp_path / "pq"
    r = CliRunner().invoke(build_app(), ["export", "--store", url, "--experiment", cfg.experiment_id,
                                         "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    written = json.loads(r.output)["rows"]
    db, pq = open_store(url), open_store(f"parquet:///{out}")
    try:
        assert written["impressions"] == db.counts(cfg.experiment_id)["impressions"] > 100
        assert pq.counts(cfg.experiment_id) == db.counts(cfg.experiment_id)
        kw = dict(control="baseline", treatment="finetuned", seed=3)
        want = replay(db, cfg.experiment_id, make_backends(corpus), **kw).to_dict()
        got = replay(pq, cfg.experiment_id, make_backends(corpus), **kw).to_dict()
    finally:
        db.close()
        pq.close()
    assert got["replayed_online"] and got == want


def test_analyze_cli_reads_a_parquet_directory(logged_ab, tmp_path) -> None:
    cfg, _, _, url = logged_ab
    out = tmp_path / "pq"
    app = build_app()
    assert CliRunner().invoke(app, ["export", "--store", url, "--experiment", cfg.experiment_id,
                                    "--out", str(out)]).exit_code == 0
    runs = [CliRunner().invoke(app, ["analyze", "--store", s, "--experiment", cfg.experiment_id, "--json",
                                     "--bootstrap", "20"]) for s in (url, f"parquet:///{out}")]
    assert [r.exit_code for r in runs][0] == runs[1].exit_code and "Traceback" not in runs[1].output
    want, got = (json.loads(r.stdout) for r in runs)
    assert got["metrics"] == want["metrics"]


def test_export_and_parquet_errors_are_one_line(logged_ab, tmp_path) -> None:
    _, _, _, url = logged_ab
    app = build_app()
    r = CliRunner().invoke(app, ["export", "--store", url, "--experiment", "nope", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "known:" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["analyze", "--store", f"parquet:///{tmp_path / 'missing'}", "--experiment", "e"])
    assert r.exit_code == 2 and "abharness export" in r.output and "Traceback" not in r.output
