"""The CLI as a thin skin: every command has help, errors become one line and exit 2 in exactly one place,
--version, shell completion, --json on the reporting commands, and cheap checks before any model loads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

import abharness
from abharness.cli.main import EXIT_USAGE_ERROR, build_app

ROOT = Path(__file__).resolve().parents[2]


def _walk(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if hasattr(command, "list_commands"):
        ctx = command.context_class(command)
        for name in command.list_commands(ctx):
            yield from _walk(command.get_command(ctx, name), (*path, name))


def _all_commands() -> list[tuple[tuple[str, ...], click.Command]]:
    return list(_walk(typer.main.get_command(build_app())))


def test_every_command_and_subcommand_has_help_text_and_every_option_too() -> None:
    commands = _all_commands()
    names = {" ".join(p) for p, _ in commands}
    assert {"evaluate", "serve", "analyze", "replay", "simulate", "demo", "finetune", "index build", "index info",
            "data check", "data fetch", "index-server"} <= names
    runner = CliRunner()
    for path, command in commands:
        assert (command.help or "").strip(), f"`abharness {' '.join(path)}` has no help text"
        for param in command.params:
            if param.param_type_name == "option" and not getattr(param, "hidden", False):
                assert (param.help or "").strip(), f"`abharness {' '.join(path)}` option {param.opts} has no help"
        result = runner.invoke(build_app(), [*path, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, (path, result.output)


def test_version() -> None:
    result = CliRunner().invoke(build_app(), ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"abharness {abharness.__version__}"


def test_shell_completion_is_offered_and_generates_a_script() -> None:
    result = CliRunner().invoke(build_app(), ["--help"])
    assert "--install-completion" in result.output and "--show-completion" in result.output
    proc = subprocess.run(
        [sys.executable, "-m", "abharness.cli.main", "--show-completion", "bash"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/tmp"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "complete" in proc.stdout and "_ABHARNESS_COMPLETE" in proc.stdout.upper()


def test_exit_usage_error_is_defined_once_and_only_main_prints_errors() -> None:
    cli = ROOT / "abharness" / "cli"
    defined = [p.name for p in cli.glob("*.py") if re.search(r"^EXIT_USAGE_ERROR\s*=", p.read_text(), re.M)]
    assert defined == ["main.py"]
    printing = [p.name for p in cli.glob("*.py") if p.name != "main.py" and "error:[/]" in p.read_text()]
    assert printing == []


def test_an_abharness_error_is_one_line_on_stderr_with_exit_2_through_the_console_script(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "abharness.cli.main", "data", "check", "--data", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == EXIT_USAGE_ERROR
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nope" in lines[0], proc.stderr


@pytest.fixture
def no_model_loads(monkeypatch: pytest.MonkeyPatch):
    """Fail the test if anything tries to load a model."""
    import abharness.encoders as enc
    import abharness.encoders.st as st

    def boom(*_a, **_k):
        raise AssertionError("a model was loaded before the cheap checks")

    monkeypatch.setattr(st, "load_encoder", boom)
    monkeypatch.setattr(enc, "load_encoder", boom)


def test_index_build_refuses_an_existing_out_before_loading_the_model(tmp_path: Path, no_model_loads) -> None:
    out = tmp_path / "idx"
    out.mkdir()
    (out / "something").write_text("x")
    r = CliRunner().invoke(build_app(), ["index", "build", "--model", "minilm", "--data", str(tmp_path),
                                         "--out", str(out)])
    assert r.exit_code == 2 and "exists and is not empty" in r.output and "--overwrite" in r.output, r.output


def test_index_build_refuses_a_mistyped_model_before_reading_data(tmp_path: Path, no_model_loads) -> None:
    r = CliRunner().invoke(build_app(), ["index", "build", "--model", "minilmm", "--data", str(tmp_path),
                                         "--out", str(tmp_path / "new")])
    assert r.exit_code == 2 and "--model 'minilmm'" in r.output and "ABHARNESS_ALLOW_DOWNLOAD" in r.output


def test_evaluate_refuses_a_missing_candidate_before_loading_any_model(tmp_path: Path, no_model_loads) -> None:
    r = CliRunner().invoke(build_app(), ["evaluate", "--baseline", "minilm", "--candidate", str(tmp_path / "gone"),
                                         "--data-root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--candidate" in r.output and "gone" in r.output, r.output


def test_finetune_refuses_an_existing_out_before_loading_the_model(tmp_path: Path, no_model_loads) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "x").write_text("x")
    r = CliRunner().invoke(build_app(), ["finetune", "--data", str(tmp_path), "--out", str(out)])
    assert r.exit_code == 2 and "exists and is not empty" in r.output


def test_data_check_json(tmp_path: Path) -> None:
    data = tmp_path / "tiny"
    (data / "qrels").mkdir(parents=True)
    (data / "corpus.jsonl").write_text('{"_id": "d1", "title": "t", "text": "hello"}\n'
                                       '{"_id": "d2", "title": "", "text": "world"}\n')
    (data / "queries.jsonl").write_text('{"_id": "q1", "text": "hello?"}\n')
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    r = CliRunner().invoke(build_app(), ["data", "check", "--data", str(data), "--json"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["ok"] is True and payload["splits"] == [
        {"split": "test", "documents": 2, "queries": 1, "judgements": 1, "empty_docs": 0}]


def test_every_reporting_command_has_json() -> None:
    """Every command that reports has --json; the exceptions are the servers and `data fetch`, whose stdout is
    already one folder per line for scripts."""
    not_reporting = {"serve", "index-server", "ui", "data fetch"}
    leaves = [(" ".join(p), c) for p, c in _all_commands() if p and not hasattr(c, "list_commands")]
    assert len(leaves) >= 15
    for name, command in leaves:
        if name in not_reporting:
            continue
        assert any("--json" in p.opts for p in command.params if p.param_type_name == "option"), name


def test_data_means_one_data_set_and_data_root_the_folder_holding_them(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "scifact").mkdir(parents=True)
    (root / "scifact" / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    r = CliRunner().invoke(build_app(), ["simulate", "--target", "http://127.0.0.1:9", "--data", str(root)])
    assert r.exit_code == 2 and "one data set's folder" in r.output and str(root / "scifact") in r.output, r.output
    data_options = {}
    for path, command in _all_commands():
        for p in command.params:
            if p.param_type_name == "option" and ("--data" in p.opts or "--data-root" in p.opts):
                data_options.setdefault(p.opts[0], []).append(" ".join(path))
    assert set(data_options["--data-root"]) == {"evaluate", "demo"}
    assert "evaluate" not in data_options["--data"] and "demo" not in data_options["--data"]
