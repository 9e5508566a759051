"""A private nats-server (JetStream, own port, own store dir) and an ``abharness ingest`` subprocess, for the
stream tests. Never the machine's shared server on 4222."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

NATS_SERVER = Path("/usr/sbin/nats-server")
REPO = Path(__file__).resolve().parents[2]  # the checkout holding this abharness (run ingest from it)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """``nats-server -a 127.0.0.1 -p PORT -js -sd DIR``; ``kill``/``start`` keep the port and the store dir."""

    def __init__(self, store_dir: Path) -> None:
        if not NATS_SERVER.exists():
            pytest.skip(f"{NATS_SERVER} is absent: the JetStream tests need a real nats-server")
        self.port = free_port()
        self.store_dir = store_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, stream: str, subject: str, **params: str) -> str:
        extra = "".join(f"&{k}={v}" for k, v in params.items())
        return f"nats://127.0.0.1:{self.port}/{stream}?subject={subject}{extra}"

    def start(self) -> None:
        log = open(self.store_dir.parent / f"nats-{self.port}.log", "ab")
        self.proc = subprocess.Popen([str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(self.port), "-js",
                                      "-sd", str(self.store_dir)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not listen on 127.0.0.1:{self.port} within 10 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


def start_ingest(source: str, to: str, *, durable: str = "it", batch: int = 100, ack_wait: float = 2.0,
                 log: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "abharness.cli.main", "ingest", "--from", source, "--to", to, "--durable", durable,
         "--batch", str(batch), "--ack-wait", str(ack_wait), "--json"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=open(log, "a"), text=True,
    )


def stop_ingest(proc: subprocess.Popen[str]) -> dict[str, float]:
    """SIGTERM, wait, and return the counters it printed (it must exit 0)."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def impressions(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=5) as con:
        try:
            return int(con.execute("SELECT count(*) FROM impressions").fetchone()[0])
        except sqlite3.OperationalError:  # schema not created yet
            return 0
