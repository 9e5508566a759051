"""The analyze use case, against a fake store (canned per-unit rows) and against the real SQLite store."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from abharness.analysis import AnalysisOptions, PrePeriod, analyze
from abharness.analysis.usecase import iso_time
from abharness.core.events import InterleaveUnitAggregate, UnitAggregate
from abharness.errors import AnalysisError, ConfigError

FAST = AnalysisOptions(bootstrap_samples=0, timeseries_points=0)
def _fake(sim, rows, exp="exp", pre=None, interleave=None):
    store = sim.FakeStore({(exp, "ab"): rows})
    if pre:
        store.rows[(exp, "shadow")] = pre
    if interleave:
        store.interleave[exp] = interleave
    return store


def test_unknown_experiment_empty_window_and_single_arm_raise_clear_errors(sim):
    rng = np.random.default_rng(0)
    store = _fake(sim, sim.unit_rows(rng, 200))
    with pytest.raises(AnalysisError, match=r"experiment 'nope' not found.*\['exp'\]"):
        analyze(store, "nope", options=FAST)
    with pytest.raises(AnalysisError, match="no A/B or interleaved impressions in the window"):
        analyze(store, "exp", since=5e9, options=FAST)
    single = _fake(sim, sim.unit_rows(rng, 50, arms=("control",), shares=(1.0,)))
    with pytest.raises(AnalysisError, match="only one arm"):
        analyze(single, "exp", options=FAST)
    with pytest.raises(ConfigError, match="unknown metric 'ndcg'"):
        analyze(store, "exp", metrics=["ndcg"], options=FAST)
    with pytest.raises(ConfigError, match="since=.* >= until"):
        analyze(store, "exp", since=10.0, until=5.0, options=FAST)
    odd = _fake(sim, sim.unit_rows(rng, 50, arms=("a", "b")))
    with pytest.raises(AnalysisError, match="pass --control"):
        analyze(odd, "exp", options=FAST)


def test_zero_variance_comes_back_as_diagnostic(sim):
    rows = [UnitAggregate(f"u{i}", "control" if i % 2 else "treatment", 2, 1, 0.5, 1, 1.0, 1, 200.0, 20000.0,
                          0, 0, 1000.0 + i) for i in range(40)]
    report = analyze(_fake(sim, rows), "exp", options=FAST)
    assert math.isnan(report.metrics["ctr"].p_value)
    assert any("zero variance" in d for d in report.diagnostics)
    assert report.decision == "keep-running"
    json.dumps(report.to_dict(), allow_nan=False)


def test_clear_win_ships_and_swapped_roles_roll_back(sim):
    rng = np.random.default_rng(1)
    rows = sim.unit_rows(rng, 6000, lift={"treatment": 0.25})
    opts = AnalysisOptions(bootstrap_samples=50, timeseries_points=0, weights={"control": 0.5, "treatment": 0.5})
    report = analyze(_fake(sim, rows), "exp", options=opts)
    assert report.srm is not None and not report.srm.alarm
    assert report.metrics["ctr"].relative_lift > 0.1
    assert report.decision == "ship", report.reasons
    assert report.exit_code == 0
    assert report.metrics["ctr"].bootstrap_se == pytest.approx(report.metrics["ctr"].lift_se, rel=0.3)
    flipped = analyze(_fake(sim, rows), "exp", options=AnalysisOptions(control="treatment", bootstrap_samples=0,
                                                                 timeseries_points=0))
    assert flipped.decision == "rollback" and flipped.exit_code == 20


def test_srm_alarm_blocks_ship(sim):
    rng = np.random.default_rng(2)
    rows = sim.unit_rows(rng, 6000, shares=(0.4, 0.6), lift={"treatment": 0.25})
    report = analyze(_fake(sim, rows), "exp", options=AnalysisOptions(weights={"control": 0.5, "treatment": 0.5},
                                                                bootstrap_samples=0, timeseries_points=0))
    assert report.srm.alarm
    assert report.metrics["ctr"].seq_improved  # the effect is there ...
    assert report.decision == "keep-running"  # ... but a broken split blocks ship
    assert "SRM alarm" in report.reasons[0]


def test_guardrail_breach_rolls_back_even_when_primary_improves(sim):
    rng = np.random.default_rng(3)
    rows = sim.unit_rows(rng, 6000, lift={"treatment": 0.25}, latency_factor={"treatment": 1.5})
    report = analyze(_fake(sim, rows), "exp", options=FAST)
    g = report.guardrails["latency_ms"]
    assert g.non_inferiority.harm == pytest.approx(0.5, abs=0.05)
    assert report.decision == "rollback"
    assert any("latency_ms" in r for r in report.reasons)


def test_error_rate_guardrail_is_non_inferiority_with_margin(sim):
    rng = np.random.default_rng(4)
    rows = sim.unit_rows(rng, 4000, error_rate={"control": 0.01, "treatment": 0.011})
    report = analyze(_fake(sim, rows), "exp", options=FAST)
    ni = report.guardrails["error_rate"].non_inferiority
    assert ni.margin == 0.005 and ni.p_value < 0.05 and ni.upper < 0.005


def test_cuped_uses_pre_period_and_reports_variance_reduction(sim):
    rng = np.random.default_rng(5)
    rows = sim.unit_rows(rng, 3000)
    # pre-period: the same units' behaviour before the start, strongly correlated with their current clicks;
    # a third of the units are new (no history)
    pre = [UnitAggregate(r.unit_id, "control", r.impressions, r.clicks, r.sum_reciprocal_rank, r.successes, 0.0,
                         max(0, r.clicked_impressions + int(rng.integers(-1, 2))), 0.0, 0.0, 0, 0, 1.0)
           for r in rows if int(r.unit_id[1:]) % 3]
    pre = [dataclass_replace_clicked(p) for p in pre]
    report = analyze(_fake(sim, rows, pre=pre), "exp", options=FAST)
    ctr = report.metrics["ctr"]
    assert report.cuped.applied and report.cuped.units_without_history == 1000
    assert ctr.cuped and ctr.variance_reduction > 0.2
    off = analyze(_fake(sim, rows, pre=pre), "exp", options=AnalysisOptions(cuped=False, bootstrap_samples=0,
                                                                      timeseries_points=0))
    assert ctr.lift_se < off.metrics["ctr"].lift_se
    none = analyze(_fake(sim, rows), "exp", options=FAST)
    assert not none.cuped.applied and "no unit has pre-period data" in none.cuped.note


def dataclass_replace_clicked(p: UnitAggregate) -> UnitAggregate:
    import dataclasses

    return dataclasses.replace(p, clicked_impressions=min(p.clicked_impressions, p.impressions))


def test_interleaving_only_experiment_decides_on_preference(sim):
    rng = np.random.default_rng(6)
    inter = []
    for i in range(800):
        n = int(rng.integers(1, 6))
        wins_t = int(rng.binomial(n, 0.35))
        wins_c = int(rng.binomial(n - wins_t, 0.3))
        inter.append(InterleaveUnitAggregate(f"u{i}", n, {"baseline": wins_c, "finetuned": wins_t}, 0,
                                             n - wins_t - wins_c))
    store = sim.FakeStore({}, {"exp": inter})
    report = analyze(store, "exp", options=FAST)
    r = report.interleaving
    assert r.control == "baseline" and r.treatment == "finetuned"
    assert r.preference > 0 and r.sign_test_p is None
    assert report.decision == "ship"
    json.dumps(report.to_dict(), allow_nan=False)


def test_real_sqlite_store_end_to_end_with_segments_timeseries_and_cuped(sim, sqlite_store):
    rng = np.random.default_rng(7)
    sim.write_events(sqlite_store, rng, 300, ctr={"control": 0.25, "treatment": 0.45}, t0=2_000_000.0)
    sim.write_events(sqlite_store, np.random.default_rng(8), 300, arms=("control",), mode="shadow", t0=1_000_000.0)
    report = analyze(sqlite_store, "exp", segment="device",
                     options=AnalysisOptions(bootstrap_samples=50, timeseries_points=4))
    assert set(report.units) == {"control", "treatment"}
    assert report.metrics["ctr"].lift > 0
    assert report.cuped.applied and report.cuped.units_with_history == 300
    assert {s.value for s in report.segments} == {"mobile", "desktop"}
    assert sum(s.units["control"] for s in report.segments) == report.units["control"]
    units = [p.units for p in report.timeseries]
    assert units == sorted(units) and units[-1] == sum(report.units.values())
    avp = [p.always_valid_p for p in report.timeseries]
    assert all(b <= a for a, b in zip(avp, avp[1:]))  # running minimum
    assert report.timeseries[-1].lift == pytest.approx(
        analyze(sqlite_store, "exp", options=AnalysisOptions(cuped=False, bootstrap_samples=0,
                                                             timeseries_points=0)).metrics["ctr"].lift)
    # metrics against a direct count over the raw tables
    rows = sqlite_store.execute("SELECT arm, COUNT(*) FROM impressions WHERE mode = 'ab' GROUP BY arm")
    assert {a: n for a, n in rows} == report.impressions
    clicked = dict(sqlite_store.execute(
        "SELECT i.arm, COUNT(DISTINCT c.impression_id) FROM clicks c JOIN impressions i USING (impression_id) "
        "WHERE i.mode = 'ab' GROUP BY i.arm"))
    assert report.metrics["ctr"].control.value == pytest.approx(clicked["control"] / report.impressions["control"])
    json.dumps(report.to_dict(), allow_nan=False)
    # window: only the first half of the day
    half = analyze(sqlite_store, "exp", since=2_000_000.0, until=2_000_000.0 + 43_200, options=FAST)
    assert sum(half.impressions.values()) < sum(report.impressions.values())


def test_options_are_validated():
    with pytest.raises(ConfigError, match="alpha=1.5"):
        AnalysisOptions(alpha=1.5).validated()
    with pytest.raises(ConfigError, match="margin for 'ctr'"):
        AnalysisOptions(margins={"ctr": 0.1}).validated()
    with pytest.raises(ConfigError, match="primary metric 'x'"):
        AnalysisOptions(primary="x").validated()
    assert PrePeriod().modes == ("shadow",)


def test_power_summary_for_ctr_and_mrr_with_design_effect_and_days(sim):
    rng = np.random.default_rng(9)
    rows = sim.unit_rows(rng, 3000, concentration=2.0)  # strongly heterogeneous users
    report = analyze(_fake(sim, rows), "exp", options=AnalysisOptions(bootstrap_samples=0, timeseries_points=0,
                                                                     target_relative_mde=0.05))
    by_metric = {p.metric: p for p in report.power}
    assert set(by_metric) == {"ctr", "mrr"}
    ctr = by_metric["ctr"]
    assert ctr.design_effect > 1.5  # repeated users inflate the per-impression variance
    assert ctr.required_units > ctr.current_units and ctr.days_still_needed > 0
    assert ctr.units_per_day == pytest.approx(3000 / 7, rel=0.05)  # units arrive over 7 days in unit_rows
    assert 0 < ctr.power_now < 0.8 and ctr.mde_relative > 0.05


def test_experiment_config_supplies_control_and_weights(sim):
    from types import SimpleNamespace

    cfg = SimpleNamespace(control="control", weights={"control": 0.2, "treatment": 0.8},
                          ordered_weights=lambda: {"control": 0.2, "treatment": 0.8})
    opts = AnalysisOptions().with_config(cfg)
    assert opts.control == "control" and opts.weights == {"control": 0.2, "treatment": 0.8}
    rows = sim.unit_rows(np.random.default_rng(10), 4000)  # a 50/50 split against a configured 20/80
    report = analyze(_fake(sim, rows), "exp", config=cfg, options=FAST)
    assert report.srm.alarm and report.decision in ("keep-running", "rollback")
    explicit = AnalysisOptions(weights={"control": 1, "treatment": 1}).with_config(cfg)
    assert explicit.weights == {"control": 1, "treatment": 1}  # explicit options win over the config


def _audit(ts, action, **payload):
    from abharness.core.events import AuditEntry

    return AuditEntry(ts=ts, experiment_id="exp", actor="t", action=action, payload=payload)


def test_srm_uses_the_allocation_recorded_after_an_admin_ramp(sim):
    # Config says 90/10; an admin ramped to 50/50 before the window; traffic is a fair 50/50.
    rng = np.random.default_rng(5)
    rows = sim.unit_rows(rng, 6000, shares=(0.5, 0.5))
    store = _fake(sim, rows)
    t0 = min(r.first_ts for r in rows)
    cfg = AnalysisOptions(weights={"control": 0.9, "treatment": 0.1}, bootstrap_samples=0, timeseries_points=0)
    assert analyze(store, "exp", options=cfg).srm.alarm  # against the stale configured split: a false alarm
    store.audit = [_audit(t0 - 100, "serve_start", effective_weights={"control": 0.9, "treatment": 0.1}),
                   _audit(t0 - 50, "allocation", weights={"control": 0.5, "treatment": 0.5})]
    report = analyze(store, "exp", since=t0 - 10, options=cfg)
    assert not report.srm.alarm
    assert any("recorded in the audit log" in d for d in report.diagnostics)


def test_an_allocation_change_inside_the_window_is_named_with_the_fix(sim):
    rng = np.random.default_rng(6)
    rows = sim.unit_rows(rng, 3000, shares=(0.5, 0.5))
    store = _fake(sim, rows)
    t0 = min(r.first_ts for r in rows)
    store.audit = [_audit(t0 - 100, "serve_start", effective_weights={"control": 0.9, "treatment": 0.1}),
                   _audit(t0 + 3600, "allocation", weights={"control": 0.5, "treatment": 0.5})]
    report = analyze(store, "exp", options=AnalysisOptions(weights={"control": 0.5, "treatment": 0.5},
                                                           bootstrap_samples=0, timeseries_points=0))
    msgs = [d for d in report.diagnostics if "allocation changed inside the window" in d]
    assert len(msgs) == 1 and f"--since {iso_time(t0 + 3600)}" in msgs[0]


def test_a_ramp_before_the_first_impression_is_not_a_change_inside_the_window(sim):
    rng = np.random.default_rng(7)
    rows = sim.unit_rows(rng, 3000, shares=(0.5, 0.5))
    store = _fake(sim, rows)
    t0 = min(r.first_ts for r in rows)
    store.audit = [_audit(t0 - 100, "serve_start", effective_weights={"control": 0.9, "treatment": 0.1}),
                   _audit(t0 - 50, "allocation", weights={"control": 0.5, "treatment": 0.5})]
    report = analyze(store, "exp", options=AnalysisOptions(weights={"control": 0.9, "treatment": 0.1},
                                                           bootstrap_samples=0, timeseries_points=0))
    assert not report.srm.alarm
    assert not any("changed inside the window" in d for d in report.diagnostics)
