"""Launched experiments and the global holdout: the holdout keeps the defaults, everyone else gets what was
launched, and holdout vs the rest recovers the combined effect of the launches (simulation)."""

from __future__ import annotations

import numpy as np
import pytest

from abharness.core.assignment import BUCKETS
from abharness.core.layers import Arm, Design, Holdout, Layer, LayerExperiment
from abharness.core.stats.moments import Moments
from abharness.core.stats.ratio import ratio_diff

COLS = ("clicked_impressions", "impressions")


def _exp(eid, lo, hi, param, control, treat, **kw) -> LayerExperiment:
    arms = (Arm("c", "control", {param: control}), Arm("t", "treatment", {param: treat}))
    return LayerExperiment(eid, f"salt-{eid}", lo, hi, arms, {"c": 0.5, "t": 0.5}, **kw)


def _design(holdout_share: float = 0.1) -> Design:
    main = Layer("main", "h-main", frozenset({"backend"}), (
        _exp("model-v2", 0, 5000, "backend", "base", "ft", status="launched", launched_arm="t"),
        _exp("model-v3", 0, 5000, "backend", "ft", "ft3"),  # control = what was launched; reuses the freed buckets
    ))
    depth = Layer("depth", "h-depth", frozenset({"k"}), (
        _exp("k20", 0, BUCKETS, "k", 10, 20, status="launched", launched_arm="t"),))
    return Design([main, depth], holdout=Holdout("hold-2026", holdout_share), defaults={"backend": "base", "k": 10})


def test_launched_arms_replace_the_defaults_outside_the_holdout_only() -> None:
    d = _design()
    assert d.launched == {"backend": "ft", "k": 20}
    for i in range(3000):
        a = d.assign(f"u{i}")
        if a.holdout:
            assert dict(a.params) == {"backend": "base", "k": 10} and a.enrollments == ()
        else:
            assert a.params["k"] == 20
            assert a.params["backend"] == ("ft3" if a.arm_in("model-v3") == "t" else "ft")
            assert a.arm_in("model-v2") is None and a.arm_in("k20") is None  # launched: nobody enrolled


@pytest.mark.parametrize(("build", "message"), [
    (lambda: _exp("x", 0, 10, "k", 1, 2, status="launched"), "launched_arm"),
    (lambda: _exp("x", 0, 10, "k", 1, 2, launched_arm="t"), "launched_arm"),
    (lambda: _exp("x", 0, 10, "k", 1, 2, status="launched", launched_arm="nope"), "launched_arm"),
    (lambda: Design([Layer("l", "s", frozenset({"k"}), (
        _exp("x", 0, 10, "k", 1, 2, status="launched", launched_arm="t"),
        _exp("y", 0, 10, "k", 1, 3, status="launched", launched_arm="t")))]), "both ship"),
])
def test_launch_rules(build, message) -> None:
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.slow
def test_holdout_against_the_rest_recovers_the_combined_effect_of_the_launches() -> None:
    """Planted: the launched backend adds +0.015 to the click probability, the launched k +0.010 (combined
    +0.025); the running model-v3 has no effect. A 10% holdout against everyone else recovers +0.025."""
    d = _design(0.1)
    rng = np.random.default_rng(5)
    units = 60_000
    assigned = [d.assign(f"user-{i}") for i in range(units)]
    held = np.array([a.holdout for a in assigned])
    lift = np.array([0.015 * (a.params["backend"] in ("ft", "ft3")) + 0.010 * (a.params["k"] == 20)
                     for a in assigned])
    p = np.clip(rng.beta(6, 14, units) + lift, 0, 1)
    imps = rng.integers(1, 9, units).astype(float)
    clicks = rng.binomial(imps.astype(int), p).astype(float)
    m = {h: Moments.from_matrix(COLS, np.column_stack([clicks[held == h], imps[held == h]])) for h in (True, False)}
    res = ratio_diff(m[True], m[False], *COLS)
    est, se = float(res.diff), float(res.se)
    print(f"holdout: {held.mean():.2%} of units; combined effect planted +0.0250, recovered {est:+.4f} "
          f"[{est - 1.96 * se:+.4f}, {est + 1.96 * se:+.4f}]")
    assert est - 1.96 * se <= 0.025 <= est + 1.96 * se
    assert est - 1.96 * se > 0
