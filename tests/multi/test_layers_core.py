"""The pure layered design (abharness.core.layers): properties with Hypothesis, rules, and a small simulation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from abharness.core.assignment import BUCKETS, assign, bucket
from abharness.core.layers import Arm, Condition, Design, Holdout, Layer, LayerExperiment
from abharness.core.stats.srm import srm_test

UNITS = st.text(min_size=1, max_size=20)
AB = (Arm("a", "control"), Arm("b", "treatment"))


def _exp(eid: str, lo: int, hi: int, *, arms=AB, weights=None, **kw) -> LayerExperiment:
    return LayerExperiment(eid, f"salt-{eid}", lo, hi, arms, weights or {"a": 0.5, "b": 0.5}, **kw)


def _three_layer_design() -> Design:
    ranking = Layer("ranking", "L-rank", frozenset({"backend"}), (
        _exp("model", 0, 5000, arms=(Arm("a", "control", {"backend": "base"}), Arm("b", "treatment", {"backend": "ft"}))),
        _exp("model2", 5000, 8000, arms=(Arm("a", "control", {"backend": "base"}), Arm("b", "treatment", {"backend": "ft2"}))),
    ))
    depth = Layer("depth", "L-k", frozenset({"k"}), (
        _exp("k20", 0, 10_000, arms=(Arm("a", "control", {"k": 10}), Arm("b", "treatment", {"k": 20}))),
    ))
    rerank = Layer("rerank", "L-rr", frozenset({"rerank"}), (
        _exp("rr", 2000, 7000, arms=(Arm("a", "control", {"rerank": False}), Arm("b", "treatment", {"rerank": True}))),
    ))
    return Design([ranking, depth, rerank], defaults={"backend": "base", "k": 10, "rerank": False})


@given(UNITS)
def test_assignment_is_deterministic_and_at_most_one_experiment_per_layer(unit: str) -> None:
    d1, d2 = _three_layer_design(), _three_layer_design()
    a = d1.assign(unit)
    assert a == d2.assign(unit) == d1.assign(unit)
    layers = [e.layer for e in a.enrollments]
    assert len(layers) == len(set(layers))


@given(UNITS)
def test_exclusivity_the_unit_is_in_the_experiment_owning_its_layer_bucket(unit: str) -> None:
    d = _three_layer_design()
    b = bucket("L-rank", unit)
    got = d.assign(unit).arm_in("model"), d.assign(unit).arm_in("model2")
    if b < 5000:
        assert got[0] is not None and got[1] is None
    elif b < 8000:
        assert got[0] is None and got[1] is not None
    else:
        assert got == (None, None)


@given(UNITS)
def test_params_come_from_the_arms_and_defaults_elsewhere(unit: str) -> None:
    a = _three_layer_design().assign(unit)
    assert set(a.params) == {"backend", "k", "rerank"}
    want = {"backend": "base", "k": 10, "rerank": False}
    for e in a.enrollments:
        if e.arm == "b":
            want.update({"model": {"backend": "ft"}, "model2": {"backend": "ft2"}, "k20": {"k": 20},
                         "rr": {"rerank": True}}[e.experiment_id])
    assert dict(a.params) == want


@given(UNITS, st.text(min_size=1, max_size=8))
def test_full_range_experiment_assigns_exactly_like_the_single_experiment_proxy(unit: str, salt: str) -> None:
    weights = {"a": 0.7, "b": 0.3}
    d = Design([Layer("main", "layer-salt", frozenset({"backend"}), (
        LayerExperiment("e", salt, 0, BUCKETS, AB, weights),))])
    assert d.assign(unit).arm_in("e") == assign(salt, unit, weights)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, BUCKETS - 1), st.integers(0, 10_000))
def test_bucket_range_shares(split: int, seed: int) -> None:
    """Units split between two adjacent experiments in proportion to their bucket ranges (binomial test)."""
    d = Design([Layer("l", f"s{seed}", frozenset({"k"}), (_exp("x", 0, split), _exp("y", split, BUCKETS)))])
    n = 2000
    in_x = sum(d.assign(f"u{seed}-{i}").arm_in("x") is not None for i in range(n))
    assert stats.binomtest(in_x, n, split / BUCKETS).pvalue > 1e-4


def test_layers_are_independent() -> None:
    """Membership in layer 1's treatment is independent of layer 2's arm (chi-square on the 2x2 table)."""
    d = Design([
        Layer("one", "salt-one", frozenset({"backend"}), (_exp("e1", 0, BUCKETS),)),
        Layer("two", "salt-two", frozenset({"k"}), (_exp("e2", 0, BUCKETS),)),
    ])
    table = np.zeros((2, 2))
    for i in range(20_000):
        a = d.assign(f"user-{i}")
        table[a.arm_in("e1") == "b", a.arm_in("e2") == "b"] += 1
    assert stats.chi2_contingency(table).pvalue > 1e-3
    assert abs(table[1, 1] / table.sum() - 0.25) < 0.02


def test_targeting_is_decided_before_assignment_and_srm_is_clean_within_it() -> None:
    exp = _exp("loc", 0, BUCKETS, targeting=(Condition.member("locale", ["de-DE", "de-AT"]),
                                             Condition.equals("device", "mobile")))
    d = Design([Layer("l", "s", frozenset({"k"}), (exp,))])
    assert d.assign("u1", {"locale": "fr-FR", "device": "mobile"}).enrollments == ()
    assert d.assign("u1", {"locale": "de-DE"}).enrollments == ()  # missing key never matches
    counts = {"a": 0, "b": 0}
    for i in range(6000):
        ctx = {"locale": ["de-DE", "de-AT", "en-US"][i % 3], "device": ["mobile", "desktop"][i % 2]}
        a = d.assign(f"u{i}", ctx)
        if ctx["locale"] != "en-US" and ctx["device"] == "mobile":
            counts[a.arm_in("loc")] += 1
        else:
            assert a.enrollments == ()
    assert sum(counts.values()) == 2000
    assert not srm_test(counts, {"a": 0.5, "b": 0.5}).alarm


def test_holdout_sees_only_defaults_and_has_its_share() -> None:
    d = _three_layer_design()
    held = Design(d.layers, holdout=Holdout("hold-2026", 0.1), defaults=d.defaults)
    n, in_hold = 20_000, 0
    for i in range(n):
        a = held.assign(f"u{i}")
        if a.holdout:
            in_hold += 1
            assert a.enrollments == () and dict(a.params) == d.defaults
        else:
            assert a == d.assign(f"u{i}")  # outside the holdout nothing moves
    assert stats.binomtest(in_hold, n, 0.1).pvalue > 1e-3


def test_stopped_and_draft_experiments_enrol_nobody_and_others_keep_their_units() -> None:
    base = [_exp("x", 0, 3000), _exp("y", 3000, 6000)]
    before = Design([Layer("l", "s", frozenset({"k"}), tuple(base))])
    after = Design([Layer("l", "s", frozenset({"k"}), (
        _exp("x", 0, 3000, status="stopped"), base[1], _exp("z", 6000, 9000), _exp("w", 9000, BUCKETS, status="draft"),
    ))])
    for i in range(3000):
        u = f"u{i}"
        assert after.assign(u).arm_in("x") is None and after.assign(u).arm_in("w") is None
        assert after.assign(u).arm_in("y") == before.assign(u).arm_in("y")  # a new experiment moves nobody
    assert after.layers[0].free_ranges() == [] and before.layers[0].free_ranges() == [(6000, BUCKETS)]


@pytest.mark.parametrize(("layers", "message"), [
    ([Layer("a", "s1", frozenset({"backend"})), Layer("b", "s2", frozenset({"backend", "k"}))],
     "both choose the backend"),
    ([Layer("a", "s1", frozenset({"k"})), Layer("b", "s2", frozenset({"k"}))], "both set 'k'"),
    ([Layer("a", "s1", frozenset({"k"})), Layer("a", "s2", frozenset({"rerank"}))], "declared twice"),
    ([Layer("a", "s1", frozenset({"k"}), (_exp("x", 0, 10),)), Layer("b", "s2", frozenset({"r"}), (_exp("x", 0, 10),))],
     "more than once"),
])
def test_design_rules(layers, message) -> None:
    with pytest.raises(ValueError, match=message):
        Design(layers)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Layer("l", "s", frozenset({"k"}), (_exp("x", 0, 5000), _exp("y", 4000, 6000))), "share buckets"),
    (lambda: Layer("l", "s", frozenset({"k"}), (_exp("x", 0, 10, arms=(Arm("a", "control", {"backend": "f"}),
                                                                      Arm("b", "treatment"))),)),
     "does not own"),
    (lambda: Layer("l", "s", frozenset()), "owns no parameter"),
    (lambda: _exp("x", 10, 5), "bucket range"),
    (lambda: _exp("x", 0, 5, weights={"a": 1.0}), "must name each arm"),
    (lambda: Holdout("h", 1.0), "holdout share"),
    (lambda: Condition.member("locale", []), "no values"),
])
def test_layer_rules(build, message) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_three_mutually_exclusive_experiments_match_their_bucket_ranges_srm_clean() -> None:
    """Simulation: one layer, three experiments on 20/30/50% of buckets; unit counts follow the ranges (no SRM),
    and within each experiment the arms follow their weights (no SRM)."""
    exps = (_exp("e1", 0, 2000), _exp("e2", 2000, 5000, weights={"a": 0.8, "b": 0.2}), _exp("e3", 5000, BUCKETS))
    d = Design([Layer("ranking", "sim-layer", frozenset({"backend"}), exps)])
    per_exp = {"e1": 0, "e2": 0, "e3": 0}
    per_arm = {e: {"a": 0, "b": 0} for e in per_exp}
    for i in range(30_000):
        (en,) = d.assign(f"sim-unit-{i}").enrollments
        per_exp[en.experiment_id] += 1
        per_arm[en.experiment_id][en.arm] += 1
    assert not srm_test(per_exp, {"e1": 0.2, "e2": 0.3, "e3": 0.5}).alarm
    for e in exps:
        assert not srm_test(per_arm[e.experiment_id], dict(e.weights)).alarm


def test_evolve_applies_lifecycle_changes_and_keeps_every_rule() -> None:
    from abharness.core.layers import evolve, row_impression_id

    K_ARMS = (Arm("a", "control", {"k": 10}), Arm("b", "treatment", {"k": 20}))
    d = Design([Layer("depth", "L-d", frozenset({"k"}), (_exp("a", 0, 4000, arms=K_ARMS),))], defaults={"k": 10})
    d2 = evolve(d, added=[("depth", _exp("b", 4000, 6000, arms=K_ARMS, status="draft"))])
    assert [e.experiment_id for e in d2.layers[0].experiments] == ["a", "b"] and d2.layers[0].free_ranges() == [
        (6000, BUCKETS)]
    units = [f"u{i}" for i in range(2000)]
    assert all(d2.assign(u).arm_in("b") is None for u in units)  # a draft enrols nobody
    d3 = evolve(d2, status={"b": ("running", None), "a": ("stopped", None)})
    assert any(d3.assign(u).arm_in("b") for u in units) and all(d3.assign(u).arm_in("a") is None for u in units)
    assert [d3.assign(u).arm_in("b") for u in units] == [evolve(d2, status={"b": ("running", None)}).assign(
        u).arm_in("b") for u in units]  # stopping "a" moved nobody in "b"
    with pytest.raises(ValueError, match="share buckets"):
        evolve(d, added=[("depth", _exp("c", 3000, 5000, arms=K_ARMS))])
    with pytest.raises(ValueError, match="no layer"):
        evolve(d, added=[("nope", _exp("c", 3000, 5000, arms=K_ARMS))])
    with pytest.raises(ValueError, match="no experiment"):
        evolve(d, status={"zz": ("stopped", None)})
    assert row_impression_id("abc", "exp1", "exp1") == "abc" and row_impression_id("abc", "k", "exp1") == "abc~k"
