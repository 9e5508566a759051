"""Simulation: several experiments at once on the SciFact simulator, planted effects against recovered ones.

    .venv/bin/python loadtest/sim_layers.py [--units 20000] [--seed 0] [--calibration-seeds 200] [--data DIR]

Two scenarios, each simulated into a new SQLite store (layered storage convention) and analysed from it with
``abharness.analysis.analyze`` (fixed-horizon 95 % intervals on clicks per query; see abharness/simulate/layered.py
for the design and the closed-form planted effects):

  A  no interaction: ranker (candidate lifts click propensity of ranks 1-5 by --backend-lift) and k5 add up;
  B  planted interaction: the candidate also lifts ranks 6+ by --interaction-lift, so k5 costs more under it.

Printed per scenario: planted vs recovered effect with its 95 % interval for ranker, k5, k8, k12-de, the holdout
(rest vs holdout) and the ranker x k5 interaction; the interaction diagnostic's p-value and alarm; SRM p-values;
the depth layer's unit counts against its bucket ranges. Then the false-alarm rate of the interaction check over
--calibration-seeds seeds without interaction, and the coverage of each experiment's 95 % interval (in memory,
the same core estimators on the simulated per-unit sums). Accuracy, not speed: nothing is timed
except the wall time of each scenario, printed with the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from abharness.simulate.layered import (  # noqa: E402
    SimSpec, coverage_in_memory, effects_table, interaction_in_memory, planted_effects, run, scifact_lists, sim_config,
    simulate_traffic,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend-lift", type=float, default=0.15)
    ap.add_argument("--interaction-lift", type=float, default=0.5)
    ap.add_argument("--calibration-seeds", type=int, default=200)
    ap.add_argument("--calibration-units", type=int, default=3000)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    args = ap.parse_args()
    lists = scifact_lists(args.data)
    print(f"SciFact test queries: {len(lists.pool)}; TF-IDF top-12 lists; PBM informational clicks; "
          f"{args.units} units x 4 searches; load average {os.getloadavg()[0]:.1f}")
    for name, lift in (("A (no interaction planted)", 0.0), ("B (interaction planted)", args.interaction_lift)):
        spec = SimSpec(units=args.units, backend_lift=args.backend_lift, interaction_lift=lift, seed=args.seed)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            planted, rec = run(lists, spec, f"sqlite:///{tmp}/events.db")
        print(f"\nscenario {name}: backend_lift {spec.backend_lift}, interaction_lift {lift}, seed {spec.seed}")
        print("\n".join(effects_table(planted, rec.effects)))
        print(f"interaction diagnostic (k5 against ranker): p = {rec.interaction_p:.3g}, "
              f"alarm (p < 0.001) {'YES' if rec.interaction_alarm else 'no'}")
        print("SRM p: " + ", ".join(f"{k} {v:.3f}" for k, v in rec.srm_p.items()))
        n = rec.units["ranker"]
        print(f"depth layer units: k5 {rec.units['k5']} (expected {0.5 * n:.0f}), k8 {rec.units['k8']} "
              f"(expected {0.25 * n:.0f}), k12-de {rec.units['k12-de']} (20 % of de units); bucket check p = "
              f"{rec.bucket_check_p:.3f}")
        print(f"wall {time.perf_counter() - t0:.1f} s, load average {os.getloadavg()[0]:.1f}")
    cfg = sim_config()
    spec = SimSpec(units=args.calibration_units, backend_lift=args.backend_lift)
    planted = planted_effects(lists, spec, cfg)
    p, inside = [], []
    for s in range(args.calibration_seeds):
        traffic = simulate_traffic(lists, SimSpec(units=args.calibration_units, backend_lift=args.backend_lift,
                                                  seed=10_000 + s), cfg)
        p.append(interaction_in_memory(traffic).p_value)
        inside.append(coverage_in_memory(traffic, planted))
    p = np.array(p)
    print(f"\nin memory (same core estimators, no store), {args.calibration_seeds} seeds x {args.calibration_units} "
          "units, no interaction planted:")
    print(f"interaction check: p < 0.05 in {np.mean(p < 0.05):.3f} (nominal 0.05), p < 0.001 (alarm) in "
          f"{np.mean(p < 0.001):.3f} (nominal 0.001)")
    print("coverage of the 95 % intervals: " + ", ".join(
        f"{k} {np.mean([c[k] for c in inside]):.3f}" for k in inside[0]) + " (nominal 0.95)")

if __name__ == "__main__":
    main()
