"""Run an ASGI app under a real uvicorn server on a loopback port in a background thread (tests, benchmarks).

One implementation serves the tests, the demo and the load test: ``abharness.simulate.live.serve_in_thread``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from abharness.simulate.live import serve_in_thread

__all__ = ["uvicorn_in_thread"]


@contextmanager
def uvicorn_in_thread(app: object, *, host: str = "127.0.0.1", startup_timeout_s: float = 30.0) -> Iterator[str]:
    """Serve ``app`` on a free port of ``host``; yield its base URL; shut it down (lifespan included) on exit."""
    with serve_in_thread(app, host=host, start_timeout_s=startup_timeout_s) as url:
        yield url
