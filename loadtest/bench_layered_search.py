"""Benchmark: /search through the proxy app for a layered file against a single-experiment file, in one run.

    .venv/bin/python loadtest/bench_layered_search.py [--requests 3000] [--rounds 5]

Every app is the real ``create_app`` driven in-process over ``httpx.ASGITransport`` (no sockets), with the same
in-memory ``DictBackend`` arms (so the backend costs next to nothing and the proxy's own work shows). Files:

  single        the single-experiment file (one row per search)
  layered       10 running experiments in 2 layers (main: the top-level on [0, 2000) and 4 more backend
                experiments, one targeted on locale; depth: 5 k experiments) and a 5 % global holdout
                (3 rows per search for most units: main, depth, holdout)

each with two writers: ``null`` (accepts and discards: the request path alone) and ``sqlite`` (the real
``EventWriter`` into an SQLite file in a temporary directory, flushed between chunks so each scenario pays for
its own rows; on 2 shared CPUs its thread competes with the requests, which is what the extra rows cost).

Requests alternate between the scenarios in rounds so a change in machine load hits all alike; each request is
timed on its own (p50/p90/p99 in ms). The load average is printed. Nothing passes or fails on a time. The served
``k`` is 10 in both files (the depth arms set 10 or 11).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from abharness.api.app import create_app  # noqa: E402
from abharness.testing.client import serving  # noqa: E402
from abharness.testing.configs import make_config  # noqa: E402
from abharness.testing.fakes import DictBackend, tiny_corpus  # noqa: E402


def _two(eid: str, lo: int, hi: int, param: str, control, treat, targeting=None) -> dict:
    exp = {"experiment_id": eid, "buckets": [lo, hi],
           "arms": [{"name": "c", "role": "control", "params": {param: control}},
                    {"name": "t", "role": "treatment", "params": {param: treat}}],
           "weights": {"c": 0.5, "t": 0.5}}
    if targeting:
        exp["targeting"] = targeting
    return exp


def layered_config(store_url: str):
    main = {"name": "main", "salt": "salt1/layer", "experiments": [
        _two(f"model{i}", 2000 * i, 2000 * (i + 1), "backend", "baseline", "finetuned",
             {"locale": ["de-DE", "de-AT"]} if i == 2 else None) for i in range(1, 5)]}
    depth = {"name": "depth", "salt": "depth", "owns": ["k"], "experiments": [
        _two(f"k{i}", 2000 * i, 2000 * (i + 1), "k", 10, 11) for i in range(5)]}
    return make_config(k=10, buckets=[0, 2000], layers=[main, depth], holdout={"salt": "hold", "share": 0.05},
                       store_url=store_url, admin_sync_interval_s=0)


class NullWriter:
    """The writer surface, accepting and discarding (counts what it was given)."""

    queue_depth = dropped = 0

    def __init__(self) -> None:
        self.written = 0

    def start(self) -> NullWriter:
        return self

    def submit(self, event: object) -> bool:
        self.written += 1
        return True

    def flush(self, timeout_s: float = 0.0) -> bool:
        return True

    def close(self, timeout_s: float = 0.0) -> int:
        return 0


async def run(requests: int, rounds: int, tmp: Path) -> tuple[dict[str, list[float]], dict[str, int]]:
    corpus = tiny_corpus(200)
    apps = {}
    for writer in ("null", "sqlite"):
        single = make_config(k=10, store_url=f"sqlite:///{tmp / f'single-{writer}.db'}", admin_sync_interval_s=0)
        layered = layered_config(f"sqlite:///{tmp / f'layered-{writer}.db'}")
        for name, cfg in (("single", single), ("layered", layered)):
            apps[f"{name}/{writer}"] = create_app(
                cfg, registry=CollectorRegistry(), writer=NullWriter() if writer == "null" else None,
                backends={"baseline": DictBackend(corpus, name="baseline"),
                          "finetuned": DictBackend(corpus, name="finetuned")})
    samples: dict[str, list[float]] = {name: [] for name in apps}
    rows: dict[str, int] = {}
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, httpx.AsyncClient] = {
            name: await stack.enter_async_context(serving(app)) for name, app in apps.items()}
        for name, c in clients.items():  # warm up
            for i in range(50):
                await c.post("/search", json={"query": "cell gene", "unit_id": f"warm{i}"})
        per_round = max(1, requests // rounds)
        for r in range(rounds):
            for name, c in clients.items():
                for i in range(r * per_round, (r + 1) * per_round):
                    body = {"query": "cell gene study", "unit_id": f"user-{i}",
                            "context": {"locale": ("de-DE", "fr-FR")[i % 2]}}
                    t0 = time.perf_counter()
                    resp = await c.post("/search", json=body)
                    samples[name].append((time.perf_counter() - t0) * 1e3)
                    if resp.status_code != 200:
                        raise SystemExit(f"{name}: /search answered {resp.status_code}: {resp.text}")
                writer = apps[name].state.service.writer
                await asyncio.to_thread(writer.flush, 60.0)  # untimed: this scenario's rows are written now
        for name, app in apps.items():
            rows[name] = app.state.service.writer.written
    return samples, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000, help="per scenario")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        samples, rows = asyncio.run(run(args.requests, args.rounds, Path(tmp)))
    load = os.getloadavg()
    print(f"/search in-process (ASGI), {args.requests} requests per scenario in {args.rounds} rounds, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs")
    print(f"{'scenario':<16}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'rows':>8}")
    for name, xs in samples.items():
        q = statistics.quantiles(xs, n=100)
        print(f"{name:<16}{q[49]:>9.3f}{q[89]:>9.3f}{q[98]:>9.3f}{statistics.fmean(xs):>9.3f}{rows.get(name, 0):>8}")
    p50 = {name: statistics.median(xs) for name, xs in samples.items()}
    for writer in ("null", "sqlite"):
        print(f"p50 ratio layered / single, {writer} writer: {p50[f'layered/{writer}'] / p50[f'single/{writer}']:.2f}x")


if __name__ == "__main__":
    main()
