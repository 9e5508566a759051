"""CLI front doors of replay and simulate: help text and one-line errors with exit code 2."""

from __future__ import annotations

from typer.testing import CliRunner

from abharness.cli.main import build_app


def test_commands_have_help() -> None:
    app = build_app()
    for cmd in ("replay", "simulate"):
        result = CliRunner().invoke(app, [cmd, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, cmd


def test_replay_cli_bad_input_is_one_line(tmp_path) -> None:
    app = build_app()
    r = CliRunner().invoke(app, ["replay", "--store", f"sqlite:///{tmp_path}/none.db", "--experiment", "e",
                                 "--arm", "a=x,minilm", "--arm", "bad"])
    assert r.exit_code == 2 and "NAME=INDEX_DIR,MODEL" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["replay", "--store", "sqlite:///x.db", "--experiment", "e"])
    assert r.exit_code == 2 and "--config" in r.output


def test_simulate_cli_bad_input_is_one_line(tmp_path) -> None:
    app = build_app()
    r = CliRunner().invoke(app, ["simulate", "--target", "ftp://x", "--data", str(tmp_path)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["simulate", "--target", "http://127.0.0.1:9", "--data", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "--data" in r.output
