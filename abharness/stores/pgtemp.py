"""Throw-away PostgreSQL clusters and databases for tests and benchmarks (never for production).

``find_postgres()`` returns a URL prefix for a server to use: the one on 127.0.0.1:5432 when it answers, else a
fresh cluster started with the local PostgreSQL binaries (``initdb``/``pg_ctl``) in a temporary directory on a
free port, else None with the reason. ``TempCluster`` can also be used on its own, e.g. by a test that must stop
and restart its server without touching a shared one. ``initdb`` refuses to run as root, so as root the cluster is
created and run as the ``postgres`` system user (``runuser``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

__all__ = ["TempCluster", "find_bindir", "server_answers", "create_database", "drop_database", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest version under /usr/lib/postgresql, else PATH)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def server_answers(url: str, timeout_s: int = 2) -> bool:
    """True when a connection to ``url`` succeeds."""
    try:
        with psycopg.connect(url, connect_timeout=timeout_s):
            return True
    except psycopg.Error:
        return False


def create_database(admin_url: str, prefix: str = "abh_test") -> str:
    """Create a uniquely named database through ``admin_url`` (a URL to an existing database); returns its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(admin_url: str, name: str) -> None:
    """Drop a database made by ``create_database`` (terminating leftover sessions first)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@dataclass
class _RunAs:
    user: str | None

    def argv(self, args: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *args] if self.user else args


class TempCluster:
    """A private PostgreSQL cluster in a temporary directory, listening on 127.0.0.1:<free port>."""

    def __init__(self, bindir: Path | None = None, *, port: int | None = None, fsync: bool = False) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise FileNotFoundError("no PostgreSQL binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin or PATH")
        self.bindir = found
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="abh_pg_"))
        self.datadir = self.root / "data"
        self.logfile = self.root / "server.log"
        self._run_as = _RunAs("postgres" if os.geteuid() == 0 else None)
        if self._run_as.user:
            pw = pwd.getpwnam(self._run_as.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._initialised = False
        self.fsync = fsync

    def url(self, dbname: str = "postgres") -> str:
        """libpq URL of a database in this cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = self._run_as.argv([str(self.bindir / args[0]), *args[1:]])
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> TempCluster:
        """initdb (first time) and start the server; waits until it accepts connections."""
        if not self._initialised:
            self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
            self._initialised = True
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=60"
        if not self.fsync:  # a throw-away test server need not survive a power cut
            opts += " -c fsync=off"
        self._run("pg_ctl", "-D", str(self.datadir), "-o", opts, "-l", str(self.logfile), "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m fast`` by default); the data directory stays."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def cleanup(self) -> None:
        """Stop the server and delete its directory."""
        if self.datadir.exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> TempCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
