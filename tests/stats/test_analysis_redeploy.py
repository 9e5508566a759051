"""No verdict across a redeploy: when an arm's model or index changes inside the window, the analysis names the
change and its time, refuses a verdict, and gives the --since that analyses one deployment."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np

from abharness.analysis.deployments import deployment_changes
from abharness.analysis.options import AnalysisOptions
from abharness.analysis.usecase import analyze

T0, SPAN = 1_000_000.0, 86_400.0
CHANGE = T0 + SPAN / 2 + 0.37


def _fingerprint(store, arm: str, model: str, where: str, params: tuple) -> None:
    fps = json.dumps({arm: {"model": model, "index": f"index-{arm}"}})
    store.execute(f"UPDATE impressions SET fingerprints = ? WHERE arm = ? AND {where}", (fps, arm, *params))


def _store(sim, sqlite_store, *, redeploy: bool):
    rng = np.random.default_rng(11)
    sim.write_events(sqlite_store, rng, 4000, ctr={"control": 0.2, "treatment": 0.45}, t0=T0, span_s=SPAN)
    _fingerprint(sqlite_store, "control", "model-prod", "1 = 1", ())
    _fingerprint(sqlite_store, "treatment", "model-ft-v1", "1 = 1", ())
    if redeploy:  # the treatment's model is replaced in the middle of the experiment
        _fingerprint(sqlite_store, "treatment", "model-ft-v2", "ts >= ?", (CHANGE,))
    return sqlite_store


OPTS = AnalysisOptions(weights={"control": 0.5, "treatment": 0.5}, bootstrap_samples=0, timeseries_points=0)


def test_a_model_change_of_the_treatment_mid_experiment_blocks_the_verdict(sim, sqlite_store):
    store = _store(sim, sqlite_store, redeploy=True)
    [change] = deployment_changes(store, "exp", since=None, until=None)
    first_new = store.execute("SELECT MIN(ts) FROM impressions WHERE ts >= ? AND arm = 'treatment'", (CHANGE,))[0][0]
    last_old = store.execute("SELECT MAX(ts) FROM impressions WHERE ts < ? AND arm = 'treatment'", (CHANGE,))[0][0]
    assert change.arm == "treatment" and change.before[0] == "model-ft-v1" and change.after[0] == "model-ft-v2"
    assert change.at == first_new and change.last_before == last_old

    report = analyze(store, "exp", options=OPTS)
    assert report.decision == "keep-running"
    assert "changed inside the window" in report.reasons[0] and "model-ft-v1" in report.reasons[0]
    assert "would be ship" in report.reasons[1]  # the mixed data would have shipped
    since = math.floor(first_new)
    assert since > last_old and f"--since {since}" in report.reasons[0]
    assert datetime.fromtimestamp(first_new, UTC).isoformat(timespec="seconds") in report.reasons[0]

    after = analyze(store, "exp", since=float(since), options=OPTS)  # one deployment: a verdict again
    assert after.decision == "ship" and not any("changed inside" in d for d in after.diagnostics)
    before = analyze(store, "exp", until=float(since), options=OPTS)
    assert not any("changed inside" in d for d in before.diagnostics)


def test_an_unchanged_deployment_gives_its_verdict(sim, sqlite_store):
    store = _store(sim, sqlite_store, redeploy=False)
    assert deployment_changes(store, "exp", since=None, until=None) == []
    assert analyze(store, "exp", options=OPTS).decision == "ship"
