"""The README's own commands: every `abharness ...` line parses against the real CLI, the "try it on a laptop"
block runs end to end from a checkout-shaped folder (serve answers /healthz), and `make help` lists every target."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import typer

from abharness.cli.main import build_app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _readme_command_lines(text: str) -> list[str]:
    """Every `abharness ...` command in the README's bash blocks (continuation lines joined, comments dropped)."""
    out: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("abharness "):
                out.append(line)
    return out


def _quick_block() -> list[str]:
    m = re.search(r"<!-- readme-commands:start -->\n```bash\n(.*?)```\n<!-- readme-commands:end -->", README, re.S)
    assert m, "README lost its readme-commands block"
    return [line.strip() for line in m.group(1).splitlines() if line.strip()]


def test_every_readme_command_parses_against_the_cli() -> None:
    lines = _readme_command_lines(README)
    assert len(lines) >= 15, lines
    root = typer.main.get_command(build_app())
    for line in lines:
        args = shlex.split(line)[1:]
        command, ctx_args = root, args
        while hasattr(command, "list_commands"):
            name, ctx_args = ctx_args[0], ctx_args[1:]
            sub = command.get_command(command.context_class(command), name)
            assert sub is not None, f"README: `{line}`: no command {name!r}"
            command = sub
        try:
            command.make_context(command.name, list(ctx_args))  # parses and converts every option, runs nothing
        except Exception as exc:  # click's usage errors
            pytest.fail(f"README: `{line}` does not parse: {exc}")


def test_make_help_lists_every_target() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z_-]*):(?!=)", makefile, flags=re.M))
    phony = set(re.search(r"^\.PHONY:(.*)$", makefile, flags=re.M).group(1).split())
    assert phony == targets, f"targets without .PHONY or .PHONY without a rule: {phony ^ targets}"
    out = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    listed = set(re.findall(r"^\s+make ([a-z][a-z_-]*)\s+\S", out, flags=re.M))
    assert listed == targets, f"make help misses {targets - listed}"


@pytest.fixture
def checkout(tmp_path: Path, shared_data: Path) -> Path:
    """A checkout-shaped folder: repo/examples/experiment.yaml (the real file) and ../shared/data beside it."""
    repo = tmp_path / "repo"
    (repo / "examples").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "experiment.yaml", repo / "examples" / "experiment.yaml")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data)
    return repo


def _run(line: str, cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "abharness.cli.main", *shlex.split(line)[1:]]
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.timeout(2400)  # nine commands, eight model loads in fresh processes: ~4 min quiet, 15+ min at load 20
def test_the_readme_quick_try_runs_from_the_repository_root(checkout: Path, tmp_path: Path) -> None:
    lines = _quick_block()
    names = [shlex.split(line)[1] for line in lines]
    assert names == ["data", "finetune", "index", "index", "evaluate", "serve", "simulate", "analyze", "replay"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ABHARNESS_ALLOW_DOWNLOAD", None)
    before, serve_line, after = lines[:5], lines[5], lines[6:]
    for line in before:
        res = _run(line, checkout, env)
        assert res.returncode == 0, f"`{line}` exited {res.returncode}:\n{res.stderr[-3000:]}"
        if "--limit" in line and " index build " in f" {line} ":
            assert "SLICE" in res.stdout, res.stdout
    assert '"limit": 20' in (checkout / "artifacts" / "eval-quick" / "report.json").read_text()
    assert "SLICE: --limit 20" in (checkout / "artifacts" / "eval-quick" / "report.html").read_text()

    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "abharness.cli.main", *shlex.split(serve_line)[1:], "--port", "0",
         "--port-file", str(port_file)], cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 300
        while not port_file.exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "serve did not bind within 300 s"
            time.sleep(0.2)
        port = int(port_file.read_text())
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            while True:  # the lifespan loads both models before the first answer
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, proc.communicate()[1][-3000:]
                assert time.monotonic() < deadline, "serve did not answer /healthz within 300 s"
                time.sleep(0.5)
        res = _run(after[0].replace("127.0.0.1:8000", f"127.0.0.1:{port}"), checkout, env)
        assert res.returncode == 0, res.stderr[-3000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, serve_err = proc.communicate(timeout=120)
    # uvicorn re-raises the SIGTERM it handled after a graceful shutdown, so the exit is 0 or -SIGTERM
    assert proc.returncode in (0, -signal.SIGTERM), serve_err[-3000:]
    assert "Application shutdown complete" in serve_err
    # The store path in the YAML is relative to the YAML: <repo>/artifacts/events.db, whatever the cwd.
    assert (checkout / "artifacts" / "events.db").is_file()
    res = _run(after[1], checkout, env)
    assert res.returncode in (0, 10, 20), res.stderr[-3000:]
    assert "decision:" in res.stdout
    res = _run(after[2], checkout, env)
    assert res.returncode == 0, res.stderr[-3000:]


def test_config_paths_are_relative_to_the_config_file_from_any_cwd(tmp_path: Path, monkeypatch) -> None:
    """`model:` paths used to resolve from the cwd while `index:` paths resolved from the config folder."""
    import yaml

    from abharness.config import load_config
    from abharness.testing.configs import config_dict

    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    cfg = config_dict(store_url="sqlite:///../run/events.db")
    cfg["arms"][1]["backend"] = {"kind": "local", "index": "../idx/ft", "model": "../models/ft"}
    (conf_dir / "exp.yaml").write_text(yaml.safe_dump(cfg))
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    loaded = load_config(Path("../../conf/exp.yaml"))
    control, treatment = (loaded.arm(a.name).backend for a in loaded.arms)
    assert control.model == "minilm"  # a built-in name is not a path
    assert Path(treatment.model).resolve() == (tmp_path / "models" / "ft").resolve()
    assert Path(treatment.index).resolve() == (tmp_path / "idx" / "ft").resolve()
    assert Path(loaded.store_url[len("sqlite:///"):]).resolve() == (tmp_path / "run" / "events.db").resolve()


def test_serve_names_a_missing_model_before_binding(tmp_path: Path) -> None:
    import yaml

    from abharness.testing.configs import config_dict

    (tmp_path / "idx" / "a").mkdir(parents=True)
    (tmp_path / "idx" / "b").mkdir(parents=True)
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config_dict()))  # arm 2's model 'models/ft' does not exist
    res = _run("abharness serve --config exp.yaml --port 0", tmp_path,
               {**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "arms.1.backend.model" in errors[0] and "models/ft" in errors[0], res.stderr
