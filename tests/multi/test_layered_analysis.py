"""``analyze`` per experiment of a layered store: arms from the layered file, the holdout, the interaction diagnostic
(text, JSON, HTML, CLI), and the join it rests on. The data are written in the layered storage convention by
``abharness.simulate.layered`` (a toy query pool here; the SciFact simulation is in
tests/multi/test_layered_simulation.py).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from abharness.analysis import AnalysisOptions, analyze
from abharness.analysis.interaction import interaction_rows, join_arms
from abharness.analysis.layered import HOLDOUT_LABEL, arms_view
from abharness.analysis.loading import UnitTable
from abharness.analysis.render import render_report
from abharness.core.stats.interaction import interaction_check
from abharness.core.stats.metrics import BASE_COLUMNS, ONLINE_METRICS
from abharness.core.stats.moments import Moments
from abharness.errors import AnalysisError, ConfigError
from abharness.simulate.layered import SimSpec, sim_config, sim_config_dict, simulate_traffic, toy_lists, write_traffic
from abharness.stores import open_store
from abharness.testing.configs import make_config

OPTS = AnalysisOptions(primary="clicks_per_query", basis="fixed", bootstrap_samples=0, cuped=False,
                       timeseries_points=0)


@pytest.fixture(scope="module")
def layered_store(tmp_path_factory):
    """A toy layered store with a planted ranker x k5 interaction."""
    db = tmp_path_factory.mktemp("layered") / "events.db"
    cfg = sim_config()
    lists = toy_lists()
    traffic = simulate_traffic(lists, SimSpec(units=1500, backend_lift=0.3, interaction_lift=2.0, seed=3), cfg)
    store = open_store(f"sqlite:///{db}")
    write_traffic(traffic, lists, store)
    store.close()
    return f"sqlite:///{db}", cfg, traffic


def test_arms_view_reads_each_experiment_of_the_layered_file() -> None:
    cfg = sim_config()
    main = arms_view(cfg, "ranker")
    assert (main.layer, main.control, dict(main.weights)) == ("main", "baseline", {"baseline": 0.5, "candidate": 0.5})
    de = arms_view(cfg, "k12-de")
    assert (de.layer, de.control, dict(de.weights), dict(de.targeting)) == (
        "depth", "k10", {"k10": 0.6, "k12": 0.4}, {"locale": ("de",)})
    assert de.params == {"k10": {"k": 10}, "k12": {"k": 12}} and de.treatments == ["k12"]
    hold = arms_view(cfg, "holdout")
    assert hold.holdout and hold.control == "holdout" and dict(hold.weights) == {"holdout": 0.05, "rest": 0.95}
    assert hold.label == HOLDOUT_LABEL
    assert arms_view(make_config(), "exp1") is None  # a single-experiment file: nothing changes
    with pytest.raises(ConfigError, match=r"'nope' is not in the experiment file.*'k5'.*'holdout'"):
        arms_view(cfg, "nope")


def test_each_experiment_is_analysed_with_its_own_arms_and_weights(layered_store) -> None:
    url, cfg, traffic = layered_store
    store = open_store(url)
    try:
        de = analyze(store, "k12-de", config=cfg, metrics=["clicks_per_query"], options=OPTS)
        hold = analyze(store, "holdout", config=cfg, metrics=["clicks_per_query"], options=OPTS)
        k5 = analyze(store, "k5", config=cfg, metrics=["clicks_per_query"], options=OPTS)
    finally:
        store.close()
    # SRM within the targeted population, against the experiment's own 0.6/0.4 split
    enrolled = sum(1 for en in traffic.enrollments if any(e == "k12-de" for _, e, _ in en))
    assert de.control == "k10" and sum(de.units.values()) == enrolled
    assert de.srm.expected == pytest.approx({"k10": 0.6 * enrolled, "k12": 0.4 * enrolled})
    assert all(str(traffic.locale[i]) == "de" for i, en in enumerate(traffic.enrollments)
               if any(e == "k12-de" for _, e, _ in en))
    # the holdout: every unit, shares (share, 1 - share), labelled
    assert hold.control == "holdout" and hold.treatments == ("rest",)
    assert hold.units == {"holdout": int(traffic.holdout.sum()), "rest": int((~traffic.holdout).sum())}
    assert hold.srm.expected == pytest.approx({"holdout": 0.05 * 1500, "rest": 0.95 * 1500})
    assert hold.layered.experiment["label"] == HOLDOUT_LABEL and hold.layered.interactions == ()
    # k5's interaction with the main layer's ranker (planted, large) alarms
    rows = {r.experiment_a: r for r in k5.layered.interactions}
    assert set(rows) == {"ranker"}  # k8 and k12-de share k5's layer: never tested against it
    r = rows["ranker"]
    assert (r.a_control, r.a_treatment, r.b_control, r.b_treatment) == ("baseline", "candidate", "k10", "k5")
    assert r.check.alarm and r.check.interaction < 0 and r.p_holm == pytest.approx(r.check.p_value)
    assert r.overlap_units == sum(k5.units.values())
    assert any("1 interaction test on clicks_per_query" in n for n in k5.layered.notes)


def test_the_diagnostic_is_the_core_check_on_the_joined_cells(layered_store) -> None:
    """Oracle: the same cells built unit by unit with dicts from the simulated truth."""
    url, cfg, traffic = layered_store
    store = open_store(url)
    try:
        rep = analyze(store, "k5", config=cfg, metrics=["clicks_per_query"], options=OPTS)
    finally:
        store.close()
    got = rep.layered.interactions[0].check
    cells: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for i, en in enumerate(traffic.enrollments):
        arms = {e: a for _, e, a in en}
        if "k5" in arms:
            cells.setdefault((arms["ranker"], arms["k5"]), []).append(
                (float(traffic.clicks[i].sum()), float(traffic.queries.shape[1])))
    moments = {k: Moments.from_matrix(("clicks", "impressions"), np.array(v)) for k, v in cells.items()}
    want = interaction_check(moments, ONLINE_METRICS["clicks_per_query"], a_arms=("baseline", "candidate"),
                             b_arms=("k10", "k5"))
    assert got.interaction == pytest.approx(want.interaction, rel=1e-9)
    assert got.se == pytest.approx(want.se, rel=1e-9)
    assert dict(got.units) == dict(want.units)


def test_report_shows_the_diagnostic_in_text_json_and_html(layered_store, tmp_path) -> None:
    from abharness.report.results import render_results_html

    url, cfg, _ = layered_store
    store = open_store(url)
    try:
        rep = analyze(store, "k5", config=cfg, metrics=["clicks_per_query"], options=OPTS)
    finally:
        store.close()
    buf = io.StringIO()
    render_report(rep, Console(file=buf, width=200))
    text = buf.getvalue()
    assert "interaction diagnostic" in text and "ALARM" in text and "layer 'depth'" in text
    data = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    inter = data["layered"]["interactions"][0]
    assert inter["experiment_a"] == "ranker" and inter["check"]["alarm"] is True
    page = render_results_html(rep.to_dict())
    assert 'data-section="layers"' in page and "ranker (main)" in page and "badge alarm" in page


def test_cli_analyses_a_layered_experiment_by_id(layered_store, tmp_path) -> None:
    from abharness.cli.main import build_app

    url, _, _ = layered_store
    path = tmp_path / "layered.yaml"
    path.write_text(yaml.safe_dump({**sim_config_dict(), "insecure_dev": True, "store_url": url}))
    res = CliRunner().invoke(build_app(), ["analyze", "--store", url, "--experiment", "holdout", "--config",
                                           str(path), "--json", "--bootstrap", "0", "--timeseries-points", "0",
                                           "--primary", "clicks_per_query", "--no-cuped"])
    assert res.exit_code in (0, 10, 20), res.output
    data = json.loads(res.stdout)
    assert data["control"] == "holdout" and data["layered"]["experiment"]["label"] == HOLDOUT_LABEL
    res = CliRunner().invoke(build_app(), ["analyze", "--store", url, "--experiment", "nope", "--config", str(path)])
    assert res.exit_code == 2 and "not in the experiment file" in res.output


def test_join_keeps_one_arm_units_and_matches_a_dict_join() -> None:
    rng = np.random.default_rng(0)
    b_ids = np.array([f"u{i}" for i in rng.permutation(500)], dtype=object)
    a_ids = np.array([f"u{i}" for i in range(200, 900)] + ["u250"], dtype=object)  # u250 in two arms of A
    a_arms = np.array(["c" if i % 2 else "t" for i in range(200, 900)] + ["t"], dtype=object)
    idx, arm, dropped = join_arms(b_ids, a_ids, a_arms)
    assert dropped == 1
    want = {u: a for u, a in zip(a_ids[:-1], a_arms[:-1]) if u != "u250"}
    got = {str(b_ids[i]): str(x) for i, x in zip(idx, arm)}
    assert got == {u: want[u] for u in b_ids if u in want}


def test_interaction_rows_skip_pairs_without_overlap_and_adjust_for_several_tests() -> None:
    from abharness.analysis.layered import ArmsView

    rng = np.random.default_rng(1)
    n = 4000
    ids = np.array([f"u{i}" for i in range(n)], dtype=object)
    values = np.zeros((n, len(BASE_COLUMNS)))
    values[:, BASE_COLUMNS.index("impressions")] = 3
    values[:, BASE_COLUMNS.index("clicks")] = rng.poisson(1.0, n)
    b = UnitTable(ids, np.where(rng.random(n) < 0.5, "c", "t").astype(object), np.full(n, None, dtype=object),
                  np.zeros(n), values)
    view_b = ArmsView("B", "lb", "c", {"c": 0.5, "t": 0.5}, {"c": "control", "t": "treatment"})
    view_a = ArmsView("A", "la", "x", {"x": 0.5, "y": 0.5}, {"x": "control", "y": "treatment"})
    view_z = ArmsView("Z", "lz", "x", {"x": 0.5, "y": 0.5}, {"x": "control", "y": "treatment"})
    a = UnitTable(ids, np.where(rng.random(n) < 0.5, "x", "y").astype(object), ids, np.zeros(n), values)
    z = UnitTable(np.array(["other"], dtype=object), np.array(["x"], dtype=object), ids[:1], np.zeros(1),
                  values[:1])
    rows, notes = interaction_rows(b, view_b, [(view_a, a), (view_a, a), (view_z, z)], metric="clicks_per_query")
    assert len(rows) == 2 and any("no unit of 'B' is also in 'Z'" in m for m in notes)
    assert rows[0].p_holm == pytest.approx(min(1.0, 2 * rows[0].check.p_value))  # two equal tests: Holm = 2p


def test_unknown_experiment_of_a_layered_store_is_a_clear_error(layered_store) -> None:
    url, cfg, _ = layered_store
    store = open_store(url)
    try:
        with pytest.raises(ConfigError, match="not in the experiment file"):
            analyze(store, "k9", config=cfg, options=OPTS)
        with pytest.raises(AnalysisError, match="not found"):
            analyze(store, "k9", options=OPTS)
    finally:
        store.close()
