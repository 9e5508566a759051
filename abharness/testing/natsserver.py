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
        log = open(self.store_dir.parent / f"nats-{self.port}.log", "ab")  # noqa: SIM115 - the server's, kept open
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
                 max_idle: float | None = None, linger: float | None = None, log: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    idle = ["--max-idle", str(max_idle)] if max_idle is not None else []
    idle += ["--linger", str(linger)] if linger is not None else []
    return subprocess.Popen(
        [sys.executable, "-m", "abharness.cli.main", "ingest", "--from", source, "--to", to, "--durable", durable,
         "--batch", str(batch), "--ack-wait", str(ack_wait), "--json", *idle],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=open(log, "a"), text=True,
    )


def stop_ingest(proc: subprocess.Popen[str], *, signal_it: bool = True) -> dict[str, float]:
    """SIGTERM (unless ``signal_it`` is False: it stops by itself after --max-idle), wait, and return the counters
    it printed (it must exit 0)."""
    if signal_it:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def wait_for_progress(measure, done, stall_s: float, what: str, poll_s: float = 0.1,  # type: ignore[no-untyped-def]
                      detail=None) -> None:
    """Poll ``measure()`` until ``done(value)``; fail only when the value has not changed for ``stall_s`` seconds.

    For work done by a child process: on a loaded machine a starved child is slow, not stuck, and a bound on the
    total time fails it anyway; a bound on the time without progress fails only a stall. ``detail()`` (optional)
    is called on failure and its text added to the message (e.g. the consumer's state)."""
    last = measure()
    since = time.monotonic()
    while not done(last):
        time.sleep(poll_s)
        value = measure()
        if value != last:
            last, since = value, time.monotonic()
        elif time.monotonic() - since >= stall_s:
            extra = f"; {detail()}" if detail is not None else ""
            raise AssertionError(f"no progress for {stall_s} s waiting for {what}: stuck at {last!r}{extra}")


def impressions(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=5) as con:
        try:
            return int(con.execute("SELECT count(*) FROM impressions").fetchone()[0])
        except sqlite3.OperationalError:  # schema not created yet
            return 0


def waiting_pulls(url: str, durable: str) -> int:
    """Pull requests waiting on the durable consumer of ``url``'s stream (0 while it does not exist yet): how a
    test knows that N ingest processes are up and fetching."""
    state = consumer_state(url, durable)
    return 0 if state is None else state["num_waiting"]


def consumer_state(url: str, durable: str) -> dict[str, int] | None:
    """The stream's message count and the durable consumer's counters (None while the consumer does not exist:
    the ingest process has not subscribed yet). Callable from a coroutine too (it runs in a thread of its own)."""
    import asyncio
    import concurrent.futures

    import nats
    from nats.js.errors import NotFoundError

    from abharness.stores.nats import parse_nats_url

    target = parse_nats_url(url)

    async def ask() -> dict[str, int] | None:
        nc = await nats.connect(servers=[target.server], connect_timeout=2, allow_reconnect=False)
        try:
            js = nc.jetstream()
            info = await js.consumer_info(target.stream, durable)
            stream = await js.stream_info(target.stream)
        except NotFoundError:
            return None
        finally:
            await nc.close()
        return {"stream_messages": int(stream.state.messages), "num_pending": int(info.num_pending or 0),
                "num_ack_pending": int(info.num_ack_pending or 0), "num_redelivered": int(info.num_redelivered or 0),
                "num_waiting": int(info.num_waiting or 0),
                "delivered": int(info.delivered.stream_seq if info.delivered else 0),
                "ack_floor": int(info.ack_floor.stream_seq if info.ack_floor else 0)}

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # no asyncio.run inside a running loop (async tests)
        return pool.submit(asyncio.run, ask()).result()
