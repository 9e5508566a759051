"""End to end: the proxy serves the simulation's layered file (in-process ASGI app, real SQLite store), simulated users
search with a locale and click, and ``analyze`` reads every experiment back from the store: enrolled units equal
``Design.assign``'s, SRM against each experiment's own weights, the holdout as holdout vs rest, and the interaction
diagnostic equal to the core check on the clicks the users actually sent."""

from __future__ import annotations

import re

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from abharness.analysis import AnalysisOptions, analyze
from abharness.api.app import create_app
from abharness.core.clickmodels import GradeMap, PositionBasedModel
from abharness.core.stats.interaction import interaction_check
from abharness.core.stats.metrics import ONLINE_METRICS
from abharness.core.stats.moments import Moments
from abharness.simulate.layered import LOCALES, sim_config_dict
from abharness.stores import open_store
from abharness.testing.client import serving
from abharness.testing.configs import make_config
from abharness.testing.fakes import DictBackend, InlineWriter, tiny_corpus

pytestmark = pytest.mark.anyio
TOPICS = ["cell", "protein", "virus", "cancer", "gene", "brain", "heart", "immune", "drug", "blood"]
OPTS = AnalysisOptions(primary="clicks_per_query", basis="fixed", bootstrap_samples=0, cuped=False,
                       timeseries_points=0)


async def test_served_layered_traffic_is_analysed_per_experiment(tmp_path) -> None:
    corpus = tiny_corpus(60)
    queries = [f"{a} {b}" for i, a in enumerate(TOPICS) for b in TOPICS[i + 1:i + 3]]
    words = {d: set(re.findall(r"\w+", t)) for d, t in corpus.items()}
    cfg = make_config(**sim_config_dict(holdout_share=0.1), store_url=f"sqlite:///{tmp_path / 'e.db'}")
    design = cfg.design()
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    writer = InlineWriter(store, batch_size=500)
    backends = {n: DictBackend(corpus, name=n) for n in ("baseline", "candidate")}
    app = create_app(cfg, registry=CollectorRegistry(), store=store, backends=backends, writer=writer)
    pbm = PositionBasedModel(GradeMap.preset("informational", 1), eta=1.0)
    rng = np.random.default_rng(7)
    units, searches = 500, 3
    clicks = np.zeros(units)
    locale = rng.choice([c for c, _ in LOCALES], size=units, p=[p for _, p in LOCALES])
    served: dict[str, dict[str, str]] = {}
    try:
        async with serving(app) as client:
            for i in range(units):
                uid, ctx = f"user-{i}", {"locale": str(locale[i])}
                for _ in range(searches):
                    q = queries[int(rng.integers(len(queries)))]
                    r = await client.post("/search", json={"query": q, "unit_id": uid, "context": ctx})
                    assert r.status_code == 200, r.text
                    body = r.json()
                    served[uid] = body["experiments"]
                    grades = np.array([[min(1, len(set(q.split()) & words[h["doc_id"]]) // 2)
                                        for h in body["results"]]])
                    for pos in np.flatnonzero(pbm.sample(grades, rng)[0]):
                        c = await client.post("/click", json={"impression_token": body["impression_token"],
                                                              "doc_id": body["results"][pos]["doc_id"],
                                                              "position": int(pos) + 1})
                        assert c.status_code in (200, 202), c.text
                        clicks[i] += 1
            writer.flush()
        report = {e: analyze(store, e, config=cfg, metrics=["clicks_per_query"], options=OPTS)
                  for e in ("ranker", "k5", "k8", "k12-de", "holdout")}
    finally:
        store.close()
    truth = {f"user-{i}": design.assign(f"user-{i}", {"locale": str(locale[i])}) for i in range(units)}
    for uid, a in truth.items():  # what the proxy answered is what the design says
        assert served[uid] == {e.experiment_id: e.arm for e in a.enrollments} | {
            "holdout": "holdout" if a.holdout else "rest"}
    for eid in ("ranker", "k5", "k8", "k12-de"):
        want: dict[str, int] = {}
        for a in truth.values():
            arm = a.arm_in(eid)
            if arm is not None:
                want[arm] = want.get(arm, 0) + 1
        assert report[eid].units == want, eid
        weights = dict(design.experiment(eid)[1].weights)
        n = sum(want.values())
        assert report[eid].srm.expected == pytest.approx({a: weights[a] * n for a in want})
    held = sum(a.holdout for a in truth.values())
    assert report["holdout"].units == {"holdout": held, "rest": units - held}
    assert report["holdout"].srm.expected == pytest.approx({"holdout": 0.1 * units, "rest": 0.9 * units})
    # the diagnostic from the store equals the core check on the clicks the users sent
    cells: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for i, a in enumerate(truth.values()):
        if a.arm_in("k5") is not None:
            cells.setdefault((a.arm_in("ranker"), a.arm_in("k5")), []).append((clicks[i], float(searches)))
    want_check = interaction_check(
        {k: Moments.from_matrix(("clicks", "impressions"), np.array(v)) for k, v in cells.items()},
        ONLINE_METRICS["clicks_per_query"], a_arms=("baseline", "candidate"), b_arms=("k10", "k5"))
    row = next(r for r in report["k5"].layered.interactions if r.experiment_a == "ranker")
    assert row.check.interaction == pytest.approx(want_check.interaction, rel=1e-9, abs=1e-12)
    assert row.check.se == pytest.approx(want_check.se, rel=1e-9)
    assert {r.experiment_a for r in report["ranker"].layered.interactions} == {"k5", "k8", "k12-de"}
