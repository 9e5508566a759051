"""Benchmark: the interaction diagnostic's own cost at 1 million units, beside the analysis' per-arm step, in one run.

    .venv/bin/python loadtest/bench_interaction.py [--units 1000000] [--others 2] [--rounds 3]

The diagnostic reads each other experiment A's per-unit rows (the same store read as B's own ``load_units``, measured
by loadtest/bench_analysis.py) and then works in numpy. This measures that numpy part on in-memory tables shaped like
the store's (object arrays of unit ids, as ``load_units`` returns them), B and every A holding ``--units`` units with
half of them overlapping:

  baseline    B's per-arm Moments for the analysis (``moments_for`` over both arms: what analyze does anyway)
  join        ``join_arms`` for one A (string conversion, sort, ``np.intersect1d``)
  diagnostic  ``interaction_rows`` against ``--others`` experiments (joins, cell Moments, tests, Holm)

Medians over ``--rounds``; wall seconds depend on the machine's load (printed). Nothing passes or fails on a time.
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

import numpy as np  # noqa: E402

from abharness.analysis.interaction import interaction_rows, join_arms  # noqa: E402
from abharness.analysis.layered import ArmsView  # noqa: E402
from abharness.analysis.loading import ALL_COLUMNS, UnitTable, moments_for, with_covariates  # noqa: E402
from abharness.core.stats.metrics import BASE_COLUMNS  # noqa: E402


def _table(ids: np.ndarray, arms: tuple[str, str], rng: np.random.Generator) -> UnitTable:
    n = ids.size
    values = np.zeros((n, len(BASE_COLUMNS)))
    values[:, BASE_COLUMNS.index("impressions")] = 1 + rng.poisson(9, n)
    values[:, BASE_COLUMNS.index("clicks")] = rng.binomial(values[:, 0].astype(int), 0.3)
    values[:, BASE_COLUMNS.index("clicked_impressions")] = values[:, BASE_COLUMNS.index("clicks")]
    arm = np.where(rng.random(n) < 0.5, arms[0], arms[1]).astype(object)
    return UnitTable(ids, arm, np.full(n, None, dtype=object), np.zeros(n), values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=1_000_000)
    ap.add_argument("--others", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.units
    b_ids = np.array([f"user-{i:09d}" for i in rng.permutation(n)], dtype=object)
    b = _table(b_ids, ("k10", "k5"), rng)
    view_b = ArmsView("B", "depth", "k10", {"k10": 0.5, "k5": 0.5}, {"k10": "control", "k5": "treatment"})
    others = []
    for j in range(args.others):
        ids = np.array([f"user-{i:09d}" for i in rng.permutation(np.arange(n // 2, n // 2 + n))], dtype=object)
        view = ArmsView(f"A{j}", f"layer{j}", "c", {"c": 0.5, "t": 0.5}, {"c": "control", "t": "treatment"})
        others.append((view, _table(ids, ("c", "t"), rng)))
    times: dict[str, list[float]] = {"baseline": [], "join": [], "diagnostic": []}
    for _ in range(args.rounds):
        t = time.perf_counter()
        matrix = with_covariates(b, None)
        for arm in ("k10", "k5"):
            moments_for(matrix, b.mask(arm), ALL_COLUMNS)
        times["baseline"].append(time.perf_counter() - t)
        t = time.perf_counter()
        idx, _, _ = join_arms(b.unit_ids, others[0][1].unit_ids, others[0][1].arm)
        times["join"].append(time.perf_counter() - t)
        t = time.perf_counter()
        rows, _ = interaction_rows(b, view_b, others, metric="ctr")
        times["diagnostic"].append(time.perf_counter() - t)
    print(f"units per experiment {n:,}; overlap {idx.size:,}; other experiments {args.others}; rounds {args.rounds}; "
          f"load average {os.getloadavg()[0]:.1f}")
    for name, ts in times.items():
        print(f"{name:<11} median {statistics.median(ts):7.2f} s   (min {min(ts):.2f}, max {max(ts):.2f})")
    print(f"interaction p-values: {[round(r.check.p_value, 3) for r in rows]}  (no interaction generated)")


if __name__ == "__main__":
    main()
