"""Lifecycle of layered experiments through the admin API and the audit log (abharness.api.admin_layers):
draft -> running -> stopped/launched with times in the audit log, fallback to control, a new experiment in free
buckets while others run, and stickiness across a config reload and across two replicas on one SQLite file."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from abharness.api.app import create_app
from abharness.stores import open_store
from abharness.testing.client import serving
from abharness.testing.configs import TEST_ADMIN_TOKEN, make_config
from abharness.testing.fakes import InlineWriter

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
K_LAYER = {"name": "depth", "salt": "depth-2026", "owns": ["k"], "experiments": [{
    "experiment_id": "k-test", "buckets": [0, 4000],
    "arms": [{"name": "k3", "role": "control", "params": {"k": 3}},
             {"name": "k7", "role": "treatment", "params": {"k": 7}}],
    "weights": {"k3": 0.5, "k7": 0.5}}]}
NEW_K = {"experiment_id": "k-new", "buckets": [4000, 7000],
         "arms": [{"name": "k5", "role": "control", "params": {"k": 5}},
                  {"name": "k2", "role": "treatment", "params": {"k": 2}}],
         "weights": {"k5": 0.5, "k2": 0.5}}
UNITS = [f"u{i}" for i in range(150)]


def _app(cfg, backends, store):
    return create_app(cfg, registry=CollectorRegistry(), store=store, backends=backends, writer=InlineWriter(store))


async def _arms(client) -> dict[str, dict[str, str]]:
    out = {}
    for u in UNITS:
        r = await client.post("/search", json={"query": "cell study", "unit_id": u})
        assert r.status_code == 200, r.text
        out[u] = r.json()["experiments"] or {}
    return out


def _in(arms: dict[str, dict[str, str]], eid: str) -> dict[str, str]:
    return {u: e[eid] for u, e in arms.items() if eid in e}


async def test_create_start_stop_launch_with_times_in_the_audit_log(backends, store):
    cfg = make_config(buckets=[0, 5000], layers=[K_LAYER])
    async with serving(_app(cfg, backends, store)) as client:
        before = await _arms(client)
        r = await client.post("/admin/layers/depth/experiments", headers=AUTH, json=NEW_K)
        assert r.status_code == 201, r.text
        depth = next(la for la in r.json()["layers"] if la["name"] == "depth")
        assert depth["free"] == [[7000, 10000]]
        assert {e["experiment_id"]: e["status"] for e in depth["experiments"]} == {"k-test": "running",
                                                                                   "k-new": "draft"}
        assert _in(await _arms(client), "k-new") == {}  # a draft enrols nobody
        r = await client.post("/admin/experiments/k-new/start", headers=AUTH)
        assert r.status_code == 200, r.text
        during = await _arms(client)
        new = _in(during, "k-new")
        assert new and set(new.values()) == {"k5", "k2"}
        assert _in(during, "k-test") == _in(before, "k-test")  # the running experiment moved no unit
        assert _in(during, "exp1") == _in(before, "exp1")
        for u, arm in list(new.items())[:5]:  # k from the new experiment's arm, end to end
            r = (await client.post("/search", json={"query": "cell study", "unit_id": u})).json()
            assert len(r["results"]) == {"k5": 5, "k2": 2}[arm]
        r = await client.post("/admin/experiments/k-new/stop", headers=AUTH)
        assert r.status_code == 200
        after = await _arms(client)
        assert _in(after, "k-new") == {}  # stopped: its units fall back to the defaults and log no row in it
        for u in list(new)[:5]:
            r = (await client.post("/search", json={"query": "cell study", "unit_id": u})).json()
            assert len(r["results"]) == cfg.k
        # a stopped experiment never runs again; a launch ships an arm to everyone outside the holdout
        r = await client.post("/admin/experiments/k-new/start", headers=AUTH)
        assert r.status_code == 409 and "stopped" in r.json()["detail"]
        r = await client.post("/admin/experiments/k-new/launch", headers=AUTH, json={"arm": "k2"})
        assert r.status_code == 200, r.text
        for u in UNITS[:20]:
            r = (await client.post("/search", json={"query": "cell study", "unit_id": u})).json()
            assert len(r["results"]) == (2 if "k-test" not in r["experiments"] else
                                         {"k3": 3, "k7": 7}[r["experiments"]["k-test"]])
        view = (await client.get("/admin/layers", headers=AUTH)).json()
        k_new = next(e for la in view["layers"] for e in la["experiments"] if e["experiment_id"] == "k-new")
        assert k_new["status"] == "launched" and k_new["launched_arm"] == "k2"
        assert k_new["created_at"] <= k_new["started_at"] <= k_new["stopped_at"] <= k_new["launched_at"]
        assert view["skipped"] == []
        audit = (await client.get("/admin/audit", headers=AUTH)).json()
        actions = [(e["action"], e["payload"].get("experiment_id")) for e in audit if e["action"] != "serve_start"]
        assert actions == [("experiment_create", "k-new"), ("experiment_start", "k-new"),
                           ("experiment_stop", "k-new"), ("experiment_launch", "k-new")]
        assert audit[1]["payload"]["spec"]["buckets"] == [4000, 7000] and audit[1]["actor"] == "admin"


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), [
    ("post", "/admin/layers/depth/experiments", {**NEW_K, "buckets": [3000, 5000]}, 409, "not free"),
    ("post", "/admin/layers/nope/experiments", NEW_K, 404, "no layer 'nope'"),
    ("post", "/admin/layers/depth/experiments", {**NEW_K, "experiment_id": "k-test"}, 409, "exists already"),
    ("post", "/admin/layers/depth/experiments", {**NEW_K, "weights": {"k5": 1}}, 422, "weights"),
    ("post", "/admin/layers/depth/experiments", {**NEW_K, "status": "running"}, 422, "starts as a draft"),
    ("post", "/admin/layers/main/experiments", {**NEW_K, "buckets": [5000, 6000]}, 422, "params.backend"),
    ("post", "/admin/experiments/nope/start", None, 404, "no experiment 'nope'"),
    ("post", "/admin/experiments/k-test/start", None, 409, "is running"),
    ("post", "/admin/experiments/k-test/launch", {"arm": "k9"}, 422, "not an arm"),
])
async def test_bad_lifecycle_changes_are_refused_and_not_written(backends, store, method, path, body, status, words):
    cfg = make_config(buckets=[0, 5000], layers=[K_LAYER])
    async with serving(_app(cfg, backends, store)) as client:
        r = await getattr(client, method)(path, headers=AUTH, **({"json": body} if body is not None else {}))
        assert r.status_code == status, r.text
        assert words in r.json()["detail"]
    assert [e.action for e in store.audit] == ["serve_start"]


async def test_lifecycle_needs_a_layered_file(backends, store):
    async with serving(_app(make_config(), backends, store)) as client:
        r = await client.post("/admin/experiments/exp1/stop", headers=AUTH)
        assert r.status_code == 409 and r.json()["error"] == "not_layered"
        assert (await client.post("/admin/experiments/exp1/stop")).status_code == 401


async def test_stopping_the_top_level_experiment_sends_its_units_to_control(backends, store):
    cfg = make_config(layers=[K_LAYER], holdout={"salt": "h", "share": 0.1})
    async with serving(_app(cfg, backends, store)) as client:
        assert set(_in(await _arms(client), "exp1").values()) == {"baseline", "finetuned"}
        assert (await client.post("/admin/experiments/exp1/stop", headers=AUTH)).status_code == 200
        for u in UNITS[:40]:
            r = (await client.post("/search", json={"query": "cell study", "unit_id": u})).json()
            assert r["arm"] == "baseline" and "exp1" not in r["experiments"] and "holdout" in r["experiments"]


async def test_a_unit_keeps_its_arm_across_replicas_and_restarts_on_one_sqlite_file(backends, tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store_a, store_b = open_store(url), open_store(url)
    cfg = make_config(buckets=[0, 5000], layers=[K_LAYER], admin_sync_interval_s=0)
    try:
        app_a, app_b = _app(cfg, backends, store_a), _app(cfg, backends, store_b)
        async with serving(app_a) as a, serving(app_b) as b:
            assert (await a.post("/admin/layers/depth/experiments", headers=AUTH, json=NEW_K)).status_code == 201
            assert (await a.post("/admin/experiments/k-new/start", headers=AUTH)).status_code == 200
            on_a = await _arms(a)
            assert _in(await _arms(b), "k-new") == {}  # B has not read the audit log yet
            assert await app_b.state.service.sync_from_audit() == 2
            on_b = await _arms(b)
            assert on_b == on_a and _in(on_a, "k-new")
            # a change on B reaches A the same way, and the two replicas never disagree
            assert (await b.post("/admin/experiments/k-test/stop", headers=AUTH)).status_code == 200
            assert await app_a.state.service.sync_from_audit() == 1
            on_a, on_b = await _arms(a), await _arms(b)
            assert on_a == on_b and _in(on_a, "k-test") == {}
        # restart with the same file: the admin-made experiment is still running with the same arms
        async with serving(_app(cfg, backends, store_a)) as c:
            assert await _arms(c) == on_a
        # reload with an edited file: a ramp-up of k-new's sibling in free buckets... k-test restarts? No: the
        # file adds a new experiment in free buckets; every unit keeps its arms in the others
        more = {**NEW_K, "experiment_id": "k-more", "buckets": [7000, 10000]}
        edited = make_config(buckets=[0, 5000], admin_sync_interval_s=0,
                             layers=[{**K_LAYER, "experiments": [*K_LAYER["experiments"], more]}])
        async with serving(_app(edited, backends, store_a)) as d:
            reloaded = await _arms(d)
        for eid in ("exp1", "k-new"):
            assert _in(reloaded, eid) == _in(on_a, eid)
        assert _in(reloaded, "k-more") and _in(reloaded, "k-test") == {}  # the admin's stop stands
    finally:
        store_a.close()
        store_b.close()


async def test_two_replicas_taking_the_same_buckets_agree_on_which_experiment_stands(backends, tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store_a, store_b = open_store(url), open_store(url)
    cfg = make_config(buckets=[0, 5000], layers=[K_LAYER], admin_sync_interval_s=0)
    clock = iter(range(1_000_000, 2_000_000))
    try:
        app_a = create_app(cfg, registry=CollectorRegistry(), store=store_a, backends=backends,
                           writer=InlineWriter(store_a), clock=lambda: float(next(clock)))
        app_b = create_app(cfg, registry=CollectorRegistry(), store=store_b, backends=backends,
                           writer=InlineWriter(store_b), clock=lambda: float(next(clock)))
        async with serving(app_a) as a, serving(app_b) as b:
            first = await a.post("/admin/layers/depth/experiments", headers=AUTH, json=NEW_K)
            second = await b.post("/admin/layers/depth/experiments", headers=AUTH,
                                  json={**NEW_K, "experiment_id": "k-clash", "buckets": [5000, 8000]})
            assert first.status_code == second.status_code == 201  # neither replica knew of the other's
            await app_a.state.service.sync_from_audit()
            await app_b.state.service.sync_from_audit()
            views = [(await c.get("/admin/layers", headers=AUTH)).json() for c in (a, b)]
            for view in views:
                depth = next(la for la in view["layers"] if la["name"] == "depth")
                assert [e["experiment_id"] for e in depth["experiments"]] == ["k-test", "k-new"]
                [skipped] = view["skipped"]
                assert skipped["payload"]["experiment_id"] == "k-clash" and "not free" in skipped["reason"]
    finally:
        store_a.close()
        store_b.close()


async def test_an_edited_file_status_wins_over_earlier_admin_changes(backends, tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")

    def config(k_new_status):
        return make_config(buckets=[0, 5000], layers=[{**K_LAYER, "experiments": [
            *K_LAYER["experiments"], {**NEW_K, "status": k_new_status}]}])

    async def statuses(client):
        view = (await client.get("/admin/layers", headers=AUTH)).json()
        assert view["skipped"] == []
        return {e["experiment_id"]: e["status"] for la in view["layers"] for e in la["experiments"]}

    try:
        async with serving(_app(config("draft"), backends, store)) as a:
            for path in ("k-test/stop", "k-new/start", "k-new/stop"):
                assert (await a.post(f"/admin/experiments/{path}", headers=AUTH)).status_code == 200
        async with serving(_app(config("draft"), backends, store)) as b:  # same file: the admin's changes stand
            assert await statuses(b) == {"exp1": "running", "k-test": "stopped", "k-new": "stopped"}
        # the file now says k-new is running (edited since the last start): the file wins for k-new only (replaying
        # the admin's stop onto it would have stopped it again)
        async with serving(_app(config("running"), backends, store)) as c:
            assert await statuses(c) == {"exp1": "running", "k-test": "stopped", "k-new": "running"}
            assert _in(await _arms(c), "k-new")
    finally:
        store.close()


async def test_what_the_proxy_logs_is_analysed_per_experiment_including_one_created_by_the_admin(backends, tmp_path):
    # The contract with the per-experiment analysis (abharness.analysis.layered): rows written by the real proxy.
    from abharness.analysis import AnalysisOptions, analyze

    opts = AnalysisOptions(primary="clicks_per_query", basis="fixed", bootstrap_samples=0, cuped=False,
                           timeseries_points=0)
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    cfg = make_config(buckets=[0, 5000], layers=[K_LAYER], holdout={"salt": "h", "share": 0.1})
    try:
        async with serving(_app(cfg, backends, store)) as client:
            assert (await client.post("/admin/layers/depth/experiments", headers=AUTH, json=NEW_K)).status_code == 201
            assert (await client.post("/admin/experiments/k-new/start", headers=AUTH)).status_code == 200
            enrolled: dict[str, dict[str, str]] = {}
            for i in range(400):
                body = (await client.post("/search", json={"query": "cell study", "unit_id": f"a{i}"})).json()
                enrolled[f"a{i}"] = body["experiments"]
                if i % 3 == 0:
                    doc = body["results"][0]
                    await client.post("/click", json={"impression_token": body["impression_token"],
                                                      "doc_id": doc["doc_id"], "position": 1})
        for eid, control in (("k-test", "k3"), ("k-new", "k5"), ("exp1", "baseline"), ("holdout", "holdout")):
            rep = analyze(store, eid, config=cfg, metrics=["clicks_per_query"], options=opts)
            want: dict[str, int] = {}
            for arms in enrolled.values():
                if eid in arms:
                    want[arms[eid]] = want.get(arms[eid], 0) + 1
            assert rep.control == control and dict(rep.units) == want, eid
    finally:
        store.close()
