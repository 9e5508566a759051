"""Benchmark: the cost of assigning one unit, 10 experiments in 3 layers against one experiment, in one run.

    .venv/bin/python loadtest/bench_assignment.py [--calls 200000] [--rounds 5]

Rows printed (each a per-call latency distribution over ``--calls`` distinct unit ids, p50/p90/p99 in µs):
  assign()      the single-experiment proxy's call today (``core.assignment.assign`` with a precomputed Allocation)
  1 experiment  ``Design.assign`` for a file without ``layers:`` (layer main, one experiment on all buckets)
  10 in 3       ``Design.assign`` for 10 running experiments in 3 layers (main: 4 on bucket ranges; depth: 3;
                rerank: 3, one of them targeted on locale), with a global 5% holdout, and a request context

Each call is timed on its own with ``time.perf_counter_ns`` (so the timer's own cost, printed as ``timer``, is in
every row); the scenarios are interleaved round by round so a change in machine load hits them alike. Nothing
passes or fails on a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from abharness.core.assignment import BUCKETS, allocation, assign  # noqa: E402
from abharness.core.layers import Arm, Condition, Design, Holdout, Layer, LayerExperiment  # noqa: E402


def _exp(eid: str, lo: int, hi: int, param: str, control, treat, targeting=()) -> LayerExperiment:
    arms = (Arm("c", "control", {param: control}), Arm("t", "treatment", {param: treat}))
    return LayerExperiment(eid, f"salt-{eid}", lo, hi, arms, {"c": 0.5, "t": 0.5}, targeting=targeting)


def one_experiment() -> Design:
    arms = (Arm("baseline", "control", {"backend": "baseline"}), Arm("finetuned", "treatment", {"backend": "finetuned"}))
    exp = LayerExperiment("exp1", "salt1", 0, BUCKETS, arms, {"baseline": 0.5, "finetuned": 0.5})
    return Design([Layer("main", "salt1/layer", frozenset({"backend"}), (exp,))], defaults={"backend": "baseline",
                                                                                          "k": 10})


def ten_in_three() -> Design:
    main = Layer("main", "L-main", frozenset({"backend"}), tuple(
        _exp(f"model{i}", i * 2500, (i + 1) * 2500, "backend", "baseline", f"ft{i}") for i in range(4)))
    depth = Layer("depth", "L-depth", frozenset({"k"}), tuple(
        _exp(f"k{i}", i * 3000, (i + 1) * 3000, "k", 10, 20 + i) for i in range(3)))
    locale = (Condition.member("locale", ["de-DE", "de-AT", "de-CH"]),)
    rerank = Layer("rerank", "L-rerank", frozenset({"rerank"}), (
        _exp("rr0", 0, 3000, "rerank", False, True), _exp("rr1", 3000, 6000, "rerank", False, True, locale),
        _exp("rr2", 6000, 9000, "rerank", False, True)))
    return Design([main, depth, rerank], holdout=Holdout("hold-2026", 0.05),
                  defaults={"backend": "baseline", "k": 10, "rerank": False})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    units = [f"user-{i}" for i in range(args.calls)]
    ctx = {"locale": "de-AT", "device": "mobile"}
    alloc = allocation({"baseline": 0.5, "finetuned": 0.5})
    d1, d10 = one_experiment(), ten_in_three()
    assert sum(len(la.experiments) for la in d10.layers) == 10 and len(d10.layers) == 3
    pc = time.perf_counter_ns
    calls = {
        "timer": lambda u: None,
        "assign()": lambda u: assign("salt1", u, alloc),
        "1 experiment": lambda u: d1.assign(u, ctx),
        "10 in 3 layers": lambda u: d10.assign(u, ctx),
    }
    samples: dict[str, list[int]] = {name: [] for name in calls}
    per_round = max(1, args.calls // args.rounds)
    for r in range(args.rounds):
        chunk = units[r * per_round:(r + 1) * per_round]
        for name, fn in calls.items():
            out = samples[name]
            for u in chunk:
                t0 = pc()
                fn(u)
                out.append(pc() - t0)
    load = os.getloadavg()
    print(f"assignment cost per call, {per_round * args.rounds} distinct units x {len(calls)} scenarios, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs")
    print(f"{'scenario':<16}{'p50 µs':>9}{'p90 µs':>9}{'p99 µs':>9}{'mean µs':>9}")
    for name, xs in samples.items():
        q = statistics.quantiles(xs, n=100)
        print(f"{name:<16}{q[49] / 1e3:>9.2f}{q[89] / 1e3:>9.2f}{q[98] / 1e3:>9.2f}{statistics.fmean(xs) / 1e3:>9.2f}")
    p50 = {name: statistics.median(xs) for name, xs in samples.items()}
    print(f"p50 ratio 10-in-3 / 1 experiment: {p50['10 in 3 layers'] / p50['1 experiment']:.2f}x")


if __name__ == "__main__":
    main()
