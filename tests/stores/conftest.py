"""Fixtures for the event-store tests: the same tests run against SQLite and PostgreSQL.

PostgreSQL: the server on 127.0.0.1:5432 when it answers (one uniquely named database per test session, one
schema per test, all dropped afterwards); otherwise a throw-away cluster from the local PostgreSQL binaries;
otherwise the postgres-marked tests skip and say what is missing (shown by ``pytest -ra``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import pytest
import yaml

from abharness.stores import open_store
from abharness.stores.base import EventStore
from abharness.stores.pgtemp import TempCluster, create_database, drop_database, find_bindir, server_answers

SYSTEM_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of the maintenance database of a PostgreSQL server the tests may create databases on."""
    if server_answers(SYSTEM_SERVER):
        yield SYSTEM_SERVER
        return
    if find_bindir() is None:
        pytest.skip(
            "PostgreSQL not available: nothing answers on 127.0.0.1:5432 and no initdb/pg_ctl found under "
            "/usr/lib/postgresql/*/bin or on PATH (install the postgresql package, or run .ci/run)"
        )
    try:
        cluster = TempCluster().start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"PostgreSQL not available: starting a throw-away cluster failed: {exc}")
    try:
        yield cluster.url()
    finally:
        cluster.cleanup()


@pytest.fixture(scope="session")
def pg_database_url(pg_admin_url: str) -> Iterator[str]:
    """A database created for this test session (dropped at the end)."""
    name = create_database(pg_admin_url, prefix="abh_stores")
    base = pg_admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture()
def pg_url(pg_database_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, so each test starts from an empty database."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{pg_database_url}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(pg_database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """The URL of an empty store of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture()
def store(store_url: str) -> Iterator[EventStore]:
    """A migrated, empty store of each kind."""
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()


# -- real processes (proxy replicas, fake index servers) -----------------------------------------------------

INDEX_SERVER_CODE = """
import sys
from pathlib import Path
from abharness.api.index_server import create_index_server_app
from abharness.cli.serve import run_uvicorn
from abharness.testing.fakes import DictBackend, tiny_corpus
name, port_file = sys.argv[1], Path(sys.argv[2])
app = create_index_server_app(DictBackend(tiny_corpus(200), name=name))
run_uvicorn(app, host="127.0.0.1", port=0, port_file=port_file, log_level="warning")
"""

PROXY_CODE = "from abharness.cli.main import main; main()"


class Processes:
    """Starts child processes, waits for their port files, and kills (by pid) whatever is left at teardown."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.children: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, argv: list[str]) -> tuple[subprocess.Popen, int]:
        port_file = self.tmp_path / f"{name}.port"
        log_path = self.tmp_path / f"{name}.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                self._argv(argv, port_file), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.tmp_path
            )
        self.children.append((name, proc, log_path))
        for _ in range(1200):  # up to ~60 s for imports and start-up on a busy machine
            if port_file.exists():
                return proc, int(port_file.read_text())
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not start (exit {proc.poll()}):\n{log_path.read_text()[-3000:]}")

    @staticmethod
    def _argv(argv: list[str], port_file: Path) -> list[str]:
        return [*argv, "--port-file", str(port_file)] if "serve" in argv else [*argv, str(port_file)]

    def log(self, name: str) -> str:
        for n, _, path in self.children:
            if n == name:
                return path.read_text(errors="replace")
        return ""

    def cleanup(self) -> None:
        for _, proc, _ in self.children:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


@pytest.fixture()
def processes(tmp_path) -> Iterator[Processes]:
    p = Processes(tmp_path)
    try:
        yield p
    finally:
        p.cleanup()


def start_index_server(processes: Processes, name: str) -> str:
    """A fake arm (DictBackend over a toy corpus) behind the real index-server app; returns its base URL."""
    _, port = processes.start(f"index-{name}", [sys.executable, "-c", INDEX_SERVER_CODE, name])
    return f"http://127.0.0.1:{port}"


def write_proxy_config(path: Path, *, store_url: str, arm_urls: dict[str, str], events: dict) -> Path:
    """A proxy config with remote arms, a shared token secret (replicas verify each other's tokens)."""
    from abharness.testing.configs import config_dict

    data = config_dict(
        experiment_id="replicas",
        arms=[
            {"name": "baseline", "role": "control", "backend": {"kind": "remote", "url": arm_urls["baseline"]}},
            {"name": "finetuned", "role": "treatment", "backend": {"kind": "remote", "url": arm_urls["finetuned"]}},
        ],
        store_url=store_url,
        events=events,
        timeouts={"control_s": 5.0, "treatment_s": 5.0, "shadow_s": 5.0},
    )
    path.write_text(yaml.safe_dump(data))
    return path


def start_proxy(processes: Processes, name: str, config: Path) -> str:
    """``abharness serve --config ...`` on a free port; returns its base URL once /readyz answers 200."""
    proc, port = processes.start(
        name, [sys.executable, "-c", PROXY_CODE, "serve", "--config", str(config), "--port", "0",
               "--log-level", "warning"]
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"proxy {name} never became ready:\n{processes.log(name)[-3000:]}")


def metric_value(text: str, name: str) -> float:
    """The value of an unlabelled sample ``name`` in Prometheus text output."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{}"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(f"metric {name} not found in /metrics output")


class ReplicaKit:
    """The helpers above, handed to tests as a fixture (test modules cannot import conftest in importlib mode)."""

    def __init__(self, processes: Processes) -> None:
        self.processes = processes

    def index_server(self, name: str) -> str:
        return start_index_server(self.processes, name)

    def proxy(self, name: str, config: Path) -> str:
        return start_proxy(self.processes, name, config)

    def process(self, name: str) -> subprocess.Popen:
        [proc] = [p for n, p, _ in self.processes.children if n == name]
        return proc

    write_config = staticmethod(write_proxy_config)
    metric = staticmethod(metric_value)


@pytest.fixture()
def kit(processes: Processes) -> ReplicaKit:
    return ReplicaKit(processes)
