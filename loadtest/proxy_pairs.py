"""Paired latency measurement for ``bench_proxy.py`` (a benchmark helper, not a test).

On a shared machine whose background load moves by several points within a minute, timing each path for whole
seconds in turn compares the paths under different loads. Here every *set* takes the same query through each
path once, back to back, in a fresh random order per set (so no path always runs first or after another), at
concurrency 1; a load change then hits every path of a set alike. The p50 ratio of two paths gets a percentile
bootstrap confidence interval over the sets (resampling whole sets keeps the pairing), and so does the median of
the per-set ratios.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["BlockingClient", "measure_sets", "ratio_ci", "run_pairs"]


class BlockingClient:
    """A minimal blocking HTTP/1.1 keep-alive client for ``POST /search`` on loopback (a few tens of microseconds of
    Python per request, so the client's own cost charged to the proxy stays small)."""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.host = host
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the proxy closed the connection")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(marker)
        return head

    def search(self, query: str, unit_id: str) -> int:
        """Send one search and read the whole response; returns the HTTP status."""
        body = json.dumps({"query": query, "unit_id": unit_id}).encode()
        self.sock.sendall((f"POST /search HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                           f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        head = self._read_until(b"\r\n\r\n").split(b"\r\n")
        status = int(head[0].split()[1])
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the proxy closed the connection mid-response")
            self.buf += chunk
        self.buf = self.buf[length:]
        return status

    def close(self) -> None:
        self.sock.close()


def measure_sets(paths: dict[str, Callable[[str, int], None]], queries: Sequence[str], n: int, *, seed: int = 0,
                 warmup: int = 10) -> tuple[dict[str, np.ndarray], list[float]]:
    """``n`` sets: set i runs ``queries[i % len]`` through every path once, in a random order; returns each path's
    latencies in seconds (index i = set i) and the 1-minute load average sampled every 50 sets."""
    names = list(paths)
    rng = np.random.default_rng(seed)
    for i in range(warmup):
        for name in names:
            paths[name](queries[-1 - i % len(queries)], i)
    out = {name: np.empty(n) for name in names}
    loads = [os.getloadavg()[0]]
    for i in range(n):
        q = queries[i % len(queries)]
        for j in rng.permutation(len(names)):
            t0 = time.perf_counter()
            paths[names[j]](q, i)
            out[names[j]][i] = time.perf_counter() - t0
        if (i + 1) % 50 == 0:
            loads.append(os.getloadavg()[0])
    return out, loads


def ratio_ci(num: np.ndarray, den: np.ndarray, *, reps: int = 4000, level: float = 0.95,
             seed: int = 1) -> dict[str, float]:
    """p50(num) / p50(den) over paired sets, and the median of the per-set ratios num_i / den_i, each with a
    percentile bootstrap interval (whole sets resampled)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(reps, len(num)))
    boot = np.median(num[idx], axis=1) / np.median(den[idx], axis=1)
    per = num / den
    boot_per = np.median(per[idx], axis=1)
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return {
        "n": int(len(num)), "p50_num_ms": float(np.median(num) * 1e3), "p50_den_ms": float(np.median(den) * 1e3),
        "p50_ratio": float(np.median(num) / np.median(den)),
        "p50_ratio_lo": float(np.percentile(boot, lo)), "p50_ratio_hi": float(np.percentile(boot, hi)),
        "median_pair_ratio": float(np.median(per)),
        "median_pair_ratio_lo": float(np.percentile(boot_per, lo)),
        "median_pair_ratio_hi": float(np.percentile(boot_per, hi)),
        "median_pair_diff_ms": float(np.median(num - den) * 1e3),
    }


def run_pairs(backend: Any, queries: Sequence[str], bases: dict[str, str], *, k: int, n: int,
              seed: int = 0) -> dict[str, Any]:
    """Concurrency 1, paired: each set takes one query through the bare loop, ``backend.search`` and every proxy in
    ``bases`` (label -> URL), in a random order per set (``proxy_pairs``); p50s and ratios to bare with CIs."""
    encoder, index = getattr(backend, "encoder", None), getattr(backend, "index", None)
    clients = {label: BlockingClient(base) for label, base in bases.items()}

    def proxy(client: BlockingClient) -> Any:
        def call(q: str, i: int) -> None:
            if client.search(q, f"u{i % 5000}") != 200:
                raise SystemExit("a paired proxy request failed")
        return call

    paths: dict[str, Any] = {
        "bare": (lambda q, i: index.search_vectors(encoder.encode([q], batch_size=1), k)) if encoder is not None
        else (lambda q, i: backend.search([q], k)),
        "in-process backend.search": lambda q, i: backend.search([q], k),
        **{label: proxy(c) for label, c in clients.items()},
    }
    lat, loads = measure_sets(paths, queries, n, seed=seed)
    for c in clients.values():
        c.close()
    out: dict[str, Any] = {"n": n, "load": loads, "p50_ms": {k: float(np.median(v) * 1e3) for k, v in lat.items()},
                           "vs_bare": {k: ratio_ci(v, lat["bare"]) for k, v in lat.items() if k != "bare"},
                           "latencies_ms": {k: [round(x * 1e3, 4) for x in v] for k, v in lat.items()}}
    print(f"\npaired at concurrency 1: {n} sets x {len(paths)} paths (same query, random order per set), "
          f"load average {min(loads):.1f}-{max(loads):.1f} during")
    print(f"{'path':<34} {'p50 ms':>8} {'p50 / bare [95% CI]':>24} {'median pair ratio [95% CI]':>28} {'+ms/pair':>9}")
    print(f"{'bare encode+search':<34} {out['p50_ms']['bare']:>8.2f}")
    for k, r in out["vs_bare"].items():
        print(f"{k:<34} {out['p50_ms'][k]:>8.2f} {r['p50_ratio']:>8.3f} [{r['p50_ratio_lo']:.3f}, {r['p50_ratio_hi']:.3f}]"
              f"{r['median_pair_ratio']:>12.3f} [{r['median_pair_ratio_lo']:.3f}, {r['median_pair_ratio_hi']:.3f}]"
              f"{r['median_pair_diff_ms']:>9.2f}")
    return out
