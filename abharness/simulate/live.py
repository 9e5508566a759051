"""A real uvicorn server for an ASGI app on a loopback port, in a background thread (demo, load test).

``with serve_in_thread(app) as url:`` binds 127.0.0.1 on a free port, runs the app's lifespan under uvicorn, yields
the base URL once the server accepts connections, and on exit asks uvicorn to shut down (which runs the lifespan
shutdown: the proxy flushes every accepted event) and joins the thread.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from abharness.errors import BackendError

__all__ = ["serve_in_thread"]


@contextmanager
def serve_in_thread(app: Any, *, host: str = "127.0.0.1", start_timeout_s: float = 60.0,
                    log_level: str = "warning") -> Iterator[str]:
    """Serve ``app`` with uvicorn on ``host`` (loopback by default) and a free port; yield ``http://host:port``."""
    import uvicorn

    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on accepted sockets whose proto is TCP (else every
    # keep-alive response waits ~40 ms for a delayed ACK); same binding as ``abharness serve``.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level=log_level, lifespan="on", access_log=False, timeout_graceful_shutdown=30)
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if errors or not thread.is_alive():
            sock.close()
            raise BackendError(f"the server on {host}:{port} failed to start: {errors[0] if errors else 'exited'}")
        if time.monotonic() > deadline:
            server.should_exit = True
            thread.join(10)
            sock.close()
            raise BackendError(f"the server on {host}:{port} did not start within {start_timeout_s:.0f} s")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()
