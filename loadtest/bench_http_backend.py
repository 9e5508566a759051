"""What the ``kind: http`` backend adds over calling the same search engine directly.

A loopback stand-in for OpenSearch's ``_search`` (``abharness.testing.opensearch``) runs under uvicorn in a separate
process (so the server's own work does not share the client's GIL). Two paths send the same ``match`` query for the
same k, alternating within each round so both see the same background load:

- direct: ``httpx.Client.post(url, json=body)`` with the body written by hand and ``response.json()`` parsed;
- backend: ``HttpBackend.search([query], k)`` (template rendering, pooled client, status/partial checks, JMESPath
  mapping to ``Hit``).

Prints p50/p90/p99 per path and the p50 difference, with the load average. A benchmark measures; it does not pass
or fail. Run: ``.venv/bin/python loadtest/bench_http_backend.py --requests 2000``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

import httpx

from abharness.backends.http import HttpBackend
from abharness.config import HttpBackendConfig

SERVER = """
import sys, uvicorn
from abharness.testing.fakes import tiny_corpus
from abharness.testing.opensearch import opensearch_app
uvicorn.run(opensearch_app(tiny_corpus(500)), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="requests per path")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/docs/_search"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the stand-in search engine did not start") from None
                time.sleep(0.1)
        queries = ["cell protein", "virus gene", "heart brain study", "immune drug", "blood cancer number 7"]
        backend = HttpBackend.from_config(
            HttpBackendConfig(kind="http", preset="opensearch-match", url=url), timeout_s=5.0)
        direct = httpx.Client(timeout=5.0)
        times: dict[str, list[float]] = {"direct httpx": [], "http backend": []}

        def run_direct(q: str) -> None:
            r = direct.post(url, json={"size": args.k, "query": {"match": {"text": q}}})
            r.raise_for_status()
            r.json()

        def run_backend(q: str) -> None:
            backend.search([q], args.k)

        for _ in range(50):  # warm both pools
            run_direct("warm up")
            run_backend("warm up")
        per_round = max(1, args.requests // args.rounds)
        for rnd in range(args.rounds):
            for i in range(per_round):
                q = queries[i % len(queries)]
                order = (("direct httpx", run_direct), ("http backend", run_backend))
                for name, fn in (order if (i + rnd) % 2 == 0 else order[::-1]):
                    t0 = time.perf_counter()
                    fn(q)
                    times[name].append((time.perf_counter() - t0) * 1000.0)
        backend.close()
        direct.close()
    finally:
        proc.terminate()
        proc.wait(10)

    load = os.getloadavg()
    print(f"stand-in OpenSearch _search (500 docs, match query, k={args.k}) on loopback; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {len(times['direct httpx'])} requests per path")
    print(f"{'path':<14} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, xs in times.items():
        print(f"{name:<14} {_pct(xs, .5):8.3f} {_pct(xs, .9):8.3f} {_pct(xs, .99):8.3f} {statistics.fmean(xs):8.3f}")
    added = _pct(times["http backend"], .5) - _pct(times["direct httpx"], .5)
    paired = statistics.median(b - d for b, d in zip(times["http backend"], times["direct httpx"]))
    print(f"p50 added by the http backend: {added:.3f} ms (median of paired differences {paired:.3f} ms)")


if __name__ == "__main__":
    main()
