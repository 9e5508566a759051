"""Locust users that behave like ``abharness simulate``'s users (used by loadtest/run_load.py, or on its own).

    locust -f loadtest/locustfile.py --headless -u 20 -r 10 -t 30s --host http://127.0.0.1:8000

Each Locust user is one simulated person (a stable unit id): it draws a query from the test split with Zipf
popularity (re-issuing one of its own earlier queries with probability ``ABH_REPEAT_PROB``), POSTs /search, lets the
click model (``ABH_CLICK_MODEL``: pbm | cascade | dbn, preset ``ABH_PRESET``) decide the clicks from the qrels
grades of the shown list, and POSTs each click to /click with the impression's real token and a dwell time.

Environment: ``ABH_DATA`` (a BEIR directory with queries.jsonl and qrels/; default ../shared/data/scifact),
``ABH_SPLIT`` (test), ``ABH_K`` (10), ``ABH_SEED`` (0), ``ABH_THINK_S`` (pause between searches, default 0).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
from locust import HttpUser, constant, events, task

from abharness.cli.simulate import load_pool
from abharness.core.clickmodels import DwellModel, make_click_model

REPO = Path(__file__).resolve().parents[1]
_STATE: dict = {}
_IDS = itertools.count()


@events.init.add_listener
def _load(environment, **_kw) -> None:  # noqa: ANN001 - locust's hook signature
    data = Path(os.environ.get("ABH_DATA", REPO.parent / "shared" / "data" / "scifact"))
    pool = load_pool(data, split=os.environ.get("ABH_SPLIT", "test"), seed=int(os.environ.get("ABH_SEED", "0")))
    _STATE["pool"] = pool
    _STATE["model"] = make_click_model(os.environ.get("ABH_CLICK_MODEL", "dbn"),
                                       preset=os.environ.get("ABH_PRESET", "navigational"), max_grade=pool.max_grade)
    _STATE["dwell"] = DwellModel()
    _STATE["k"] = int(os.environ.get("ABH_K", "10"))
    _STATE["repeat"] = float(os.environ.get("ABH_REPEAT_PROB", "0.3"))


class SearchUser(HttpUser):
    """One simulated person: search, then click what the click model clicks."""

    wait_time = constant(float(os.environ.get("ABH_THINK_S", "0")))

    def on_start(self) -> None:
        n = next(_IDS)
        self.unit_id = f"load-user-{n}"
        self.rng = np.random.default_rng([int(os.environ.get("ABH_SEED", "0")), n])
        self.history: list[int] = []

    @task
    def search_and_click(self) -> None:
        pool, model, k = _STATE["pool"], _STATE["model"], _STATE["k"]
        if self.history and self.rng.random() < _STATE["repeat"]:
            qi = self.history[int(self.rng.integers(0, len(self.history)))]
        else:
            qi = int(self.rng.choice(len(pool), p=pool.weights))
        self.history.append(qi)
        body = {"query": pool.texts[qi], "unit_id": self.unit_id, "k": k}
        with self.client.post("/search", json=body, name="/search", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}: {resp.text[:200]}")
                return
            payload = resp.json()
        shown = payload["results"]
        grades = pool.grades(pool.query_ids[qi], [r["doc_id"] for r in shown], k)
        clicks = model.sample(grades[None, :], self.rng)[0]
        dwell = _STATE["dwell"].sample(grades, self.rng)
        for i in np.flatnonzero(clicks):
            r = shown[int(i)]
            click = {"impression_token": payload["impression_token"], "doc_id": r["doc_id"],
                     "position": int(r["position"]), "dwell_ms": float(round(dwell[i], 1))}
            with self.client.post("/click", json=click, name="/click", catch_response=True) as cresp:
                if cresp.status_code not in (200, 201, 202):
                    cresp.failure(f"status {cresp.status_code}: {cresp.text[:200]}")
