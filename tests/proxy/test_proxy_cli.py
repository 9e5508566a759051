"""`abharness serve` / `abharness index-server`: help text, and bad input as a one-line error with exit code 2."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from abharness.cli.main import build_app
from abharness.testing.configs import config_dict


def test_commands_have_help():
    runner = CliRunner()
    for cmd in ("serve", "index-server"):
        r = runner.invoke(build_app(), [cmd, "--help"])
        assert r.exit_code == 0 and "Usage" in r.output
    r = CliRunner().invoke(build_app(), ["serve", "--help"])
    assert "--insecure-dev" in r.output and "--config" in r.output


def test_serve_refuses_a_bad_config_naming_the_field(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config_dict(weights={"baseline": 0.7, "finetuned": 0.7})))
    r = CliRunner().invoke(build_app(), ["serve", "--config", str(path)])
    assert r.exit_code == 2
    assert "weights: weights sum to 1.4" in " ".join(r.output.split())
    assert "Traceback" not in r.output


def test_serve_refuses_default_admin_token_unless_insecure_dev(tmp_path, monkeypatch):
    monkeypatch.delenv("ABHARNESS_ADMIN_TOKEN", raising=False)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config_dict(admin_token="changeme")))
    r = CliRunner().invoke(build_app(), ["serve", "--config", str(path)])
    assert r.exit_code == 2 and "admin_token" in r.output and "--insecure-dev" in " ".join(r.output.split())


def test_index_server_refuses_a_missing_index(tmp_path):
    r = CliRunner().invoke(build_app(), ["index-server", "--index", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "is not an abharness index" in r.output and "Traceback" not in r.output


def test_serve_refuses_a_missing_local_index(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config_dict()))
    r = CliRunner().invoke(build_app(), ["serve", "--config", str(path)])
    assert r.exit_code == 2 and "arms.0.backend.index: index directory" in r.output
