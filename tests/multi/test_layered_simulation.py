"""Issue 16, item 6: several experiments at once on the SciFact simulator, analysed from a real SQLite store.

Two overlapping experiments in different layers (``ranker``: candidate backend lifts the click propensity of ranks
1-5; ``k5``: show 5 results instead of 10) with planted effects, a depth layer with three mutually exclusive
experiments, and a 5 % holdout. From the store, every planted effect must lie inside the analysis' 95 % interval
(seed fixed: 0; with six 95 % intervals about one seed in four misses one, as seeds 1 and 2 do at this size, so the
calibration is tested separately: over 80 seeds in memory each interval covers about 95 % and the interaction check
fires about 5 % at p < 0.05); the analysis of the store must reproduce the simulated per-unit numbers exactly; the
depth layer's unit counts must match its bucket ranges; a planted interaction must be flagged and none without one.
``loadtest/sim_layers.py`` prints the same numbers as a table.
"""

from __future__ import annotations

import numpy as np
import pytest

from abharness.simulate.layered import (
    ANALYSED, SimSpec, coverage_in_memory, interaction_in_memory, planted_effects, run, scifact_lists, sim_config,
    simulate_traffic,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lists(shared_data):
    return scifact_lists(shared_data / "scifact")


def test_planted_effects_are_recovered_and_no_interaction_is_flagged(lists, tmp_path) -> None:
    planted, rec = run(lists, SimSpec(units=3500, seed=0), f"sqlite:///{tmp_path / 'a.db'}")
    for eid in ANALYSED:  # the store's rows, read back by the analysis, give exactly the simulated numbers
        assert rec.effects[eid][0] == pytest.approx(rec.memory[eid], rel=1e-9, abs=1e-12), eid
    assert planted["interaction ranker x k5"] == pytest.approx(0.0, abs=1e-12)  # additive by construction
    assert planted["ranker"] > 0.05 and planted["k5"] < -0.1  # effects the test can tell from zero
    for name in (*ANALYSED, "interaction ranker x k5"):
        est, lo, hi = rec.effects[name]
        assert lo <= planted[name] <= hi, (name, planted[name], rec.effects[name])
    for name in ("ranker", "k5"):  # and they are detected
        lo, hi = rec.effects[name][1:]
        assert lo > 0 or hi < 0, name
    assert not rec.interaction_alarm
    # SRM clean for every experiment and the depth layer's counts match [0,5000), [5000,7500), [7500,9500) x de
    assert min(rec.srm_p.values()) > 0.001, rec.srm_p
    assert rec.bucket_check_p > 0.001
    assert rec.units["holdout"] == 3500 and 0.03 < 1 - rec.units["ranker"] / 3500 < 0.08


def test_a_planted_interaction_is_flagged(lists, tmp_path) -> None:
    spec = SimSpec(units=3000, interaction_lift=1.0, seed=2)
    planted, rec = run(lists, spec, f"sqlite:///{tmp_path / 'b.db'}")
    assert planted["interaction ranker x k5"] < -0.2
    assert rec.interaction_alarm and rec.interaction_p < 0.001
    est, lo, hi = rec.effects["interaction ranker x k5"]
    assert lo <= planted["interaction ranker x k5"] <= hi


def test_interaction_false_alarm_rate_and_interval_coverage_are_nominal_over_seeds(lists) -> None:
    """Without a planted interaction the check's p-value is uniform: about 5 % below 0.05; and each experiment's 95 %
    interval holds its planted effect about 95 % of the time (80 seeds, in memory with the same core estimators:
    binomial bands that a miscalibrated check, e.g. one ignoring unit clustering, leaves)."""
    cfg = sim_config()
    planted = planted_effects(lists, SimSpec(units=1500), cfg)
    p, inside = [], []
    for s in range(80):
        traffic = simulate_traffic(lists, SimSpec(units=1500, seed=100 + s), cfg)
        p.append(interaction_in_memory(traffic).p_value)
        inside.append(coverage_in_memory(traffic, planted))
    p = np.array(p)
    assert np.all((p >= 0) & (p <= 1))
    assert (p < 0.05).sum() <= 10  # expected 4; P(X > 10 | p = 0.05) < 0.005
    assert (p < 0.5).sum() >= 28  # expected 40: a check that never fires would fail here
    for eid in ANALYSED:
        assert sum(c[eid] for c in inside) >= 69, eid  # expected 76; P(X < 69 | p = 0.95) < 0.005


def test_planted_effects_follow_the_design() -> None:
    """The closed form against brute force: a toy pool where each quantity is easy to write out."""
    from abharness.simulate.layered import click_probabilities, toy_lists

    lists = toy_lists()
    spec = SimSpec(backend_lift=0.2, interaction_lift=0.5)
    probs = click_probabilities(lists, spec)
    w = lists.pool.weights
    eff = planted_effects(lists, spec, sim_config())
    mu = lambda b, k: float(sum(w[q] * probs[b][q, :k].sum() for q in range(len(w))))  # noqa: E731
    assert eff["k5"] == pytest.approx(0.5 * ((mu("baseline", 5) - mu("baseline", 10))
                                             + (mu("candidate", 5) - mu("candidate", 10))))
    assert eff["interaction ranker x k5"] == pytest.approx(
        (mu("candidate", 5) - mu("candidate", 10)) - (mu("baseline", 5) - mu("baseline", 10)))
