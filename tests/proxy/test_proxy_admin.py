"""Admin API: bearer auth, ramp, pause, kill switch, overrides, audit log and restore after restart."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from abharness.api.app import create_app
from abharness.core.assignment import assign
from abharness.core.events import AuditEntry
from abharness.errors import ConfigError
from abharness.serve.state import restore_state
from abharness.testing.client import serving
from abharness.testing.configs import TEST_ADMIN_TOKEN, make_config
from abharness.testing.fakes import InlineWriter

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


def _app(cfg, backends, store, writer=None):
    registry = CollectorRegistry()
    return create_app(cfg, registry=registry, store=store, backends=backends,
                      writer=writer or InlineWriter(store)), registry


async def test_admin_needs_the_bearer_token(backends, store):
    app, _ = _app(make_config(), backends, store)
    async with serving(app) as client:
        r = await client.get("/admin/experiment")
        assert r.status_code == 401 and "Bearer" in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
        r = await client.get("/admin/experiment", headers={"Authorization": "Bearer wrong-token"})
        assert r.status_code == 403
        r = await client.get("/admin/experiment", headers=AUTH)
        assert r.status_code == 200 and r.json()["weights"] == {"baseline": 0.5, "finetuned": 0.5}


ALICE = "alice-has-her-own-admin-token"
ALICE_AUTH = {"Authorization": f"Bearer {ALICE}"}


async def test_ramp_moves_units_only_to_treatment_and_is_audited(backends, store):
    cfg = make_config(weights={"baseline": 0.99, "finetuned": 0.01}, admin_tokens={"alice": ALICE})
    app, registry = _app(cfg, backends, store)
    units = [f"u{i}" for i in range(300)]
    async with serving(app) as client:
        async def arms():
            out = {}
            for u in units:
                out[u] = (await client.post("/search", json={"query": "cell", "unit_id": u})).json()["arm"]
            return out

        before = await arms()
        for w in (0.10, 0.50):
            r = await client.put("/admin/allocation", headers=ALICE_AUTH,
                                 json={"weights": {"baseline": 1 - w, "finetuned": w}})
            assert r.status_code == 200, r.text
            after = await arms()
            assert all(after[u] == "finetuned" for u in units if before[u] == "finetuned")
            assert sum(a == "finetuned" for a in after.values()) > sum(a == "finetuned" for a in before.values())
            before = after
        assert registry.get_sample_value("abharness_allocation_weight", {"arm": "finetuned"}) == 0.5
        r = await client.put("/admin/allocation", headers=AUTH, json={"weights": {"baseline": 0.9, "finetuned": 0.1}})
        assert r.status_code == 409 and "allow_decrease" in r.json()["detail"]
        r = await client.put("/admin/allocation", headers=AUTH, json={"weights": {"baseline": 0.6, "finetuned": 0.6}})
        assert r.status_code == 422 and "sum to" in r.json()["detail"]
        r = await client.put("/admin/allocation", headers=AUTH, json={"weights": {"baseline": 1.0}})
        assert r.status_code == 422 and "finetuned" in r.json()["detail"]
        audit = (await client.get("/admin/audit", headers=AUTH)).json()
    actions = [(a["action"], a["actor"]) for a in audit]
    assert actions == [("serve_start", "abharness serve"), ("allocation", "alice"), ("allocation", "alice")]
    assert store.audit[-1].payload == {"weights": {"baseline": 0.5, "finetuned": 0.5}}


async def test_pause_and_kill_route_everything_to_control_without_logging(backends, store):
    cfg = make_config(weights={"baseline": 0.0, "finetuned": 1.0})
    app, registry = _app(cfg, backends, store)
    async with serving(app) as client:
        assert (await client.post("/search", json={"query": "cell", "unit_id": "u1"})).json()["arm"] == "finetuned"
        assert (await client.post("/admin/pause", headers=AUTH)).json()["paused"] is True
        r = (await client.post("/search", json={"query": "cell", "unit_id": "u1"})).json()
        assert r["arm"] == "baseline" and r["impression_token"] is None
        assert registry.get_sample_value("abharness_experiment_paused") == 1
        await client.post("/admin/resume", headers=AUTH)
        assert (await client.post("/search", json={"query": "cell", "unit_id": "u1"})).json()["arm"] == "finetuned"
        calls = backends["finetuned"].calls
        r = await client.post("/admin/kill", headers=AUTH, json={"reason": "bad results"})
        assert r.json()["killed"] is True and r.json()["kill_reason"] == "bad results"
        r = (await client.post("/search", json={"query": "cell", "unit_id": "u1"})).json()
        assert r["arm"] == "baseline" and backends["finetuned"].calls == calls
        assert (await client.post("/admin/resume", headers=AUTH)).json()["killed"] is True  # resume does not unkill
        await client.delete("/admin/kill", headers=AUTH)
        assert (await client.post("/search", json={"query": "cell", "unit_id": "u1"})).json()["arm"] == "finetuned"
    assert len(store.impressions) == 3  # the paused and killed searches are not exposures
    assert [a.action for a in store.audit] == ["serve_start", "pause", "resume", "kill", "resume", "unkill"]


async def test_overrides_force_an_arm_and_are_marked(backends, store):
    cfg = make_config(weights={"baseline": 1.0, "finetuned": 0.0})
    app, _ = _app(cfg, backends, store)
    async with serving(app) as client:
        r = await client.put("/admin/overrides/qa-1", headers=AUTH, json={"arm": "finetuned"})
        assert r.status_code == 200 and r.json()["overrides"] == {"qa-1": "finetuned"}
        assert (await client.put("/admin/overrides/qa-1", headers=AUTH, json={"arm": "nope"})).status_code == 422
        s = (await client.post("/search", json={"query": "cell", "unit_id": "qa-1"})).json()
        assert s["arm"] == "finetuned"
        assert store.impressions[s["impression_id"]].context["override"] == "finetuned"
        assert (await client.delete("/admin/overrides/qa-1", headers=AUTH)).status_code == 200
        assert (await client.delete("/admin/overrides/qa-1", headers=AUTH)).status_code == 404
        assert (await client.post("/search", json={"query": "cell", "unit_id": "qa-1"})).json()["arm"] == "baseline"


async def test_admin_state_survives_a_restart(backends, store):
    cfg = make_config(weights={"baseline": 0.9, "finetuned": 0.1})
    app, _ = _app(cfg, backends, store)
    async with serving(app) as client:
        await client.put("/admin/allocation", headers=AUTH, json={"weights": {"baseline": 0.5, "finetuned": 0.5}})
        await client.put("/admin/overrides/qa", headers=AUTH, json={"arm": "finetuned"})
        await client.post("/admin/pause", headers=AUTH)
    app2, _ = _app(cfg, backends, store)  # same config file, new process
    async with serving(app2) as client:
        state = (await client.get("/admin/experiment", headers=AUTH)).json()
    assert state["weights"] == {"baseline": 0.5, "finetuned": 0.5}
    assert state["paused"] is True and state["overrides"] == {"qa": "finetuned"}


def _entry(action, **payload):
    return AuditEntry(ts=1.0, experiment_id="exp1", actor="t", action=action, payload=payload)


def test_restore_state_config_change_wins_and_ramp_down_is_refused():
    cfg10 = make_config(weights={"baseline": 0.9, "finetuned": 0.1})
    start = _entry("serve_start", config_weights={"baseline": 0.9, "finetuned": 0.1},
                   effective_weights={"baseline": 0.9, "finetuned": 0.1})
    ramp = _entry("allocation", weights={"baseline": 0.5, "finetuned": 0.5})
    state, entry = restore_state(cfg10, [start, ramp], now=5.0)
    assert state.weights == {"baseline": 0.5, "finetuned": 0.5}
    assert entry.action == "serve_start" and entry.ts == 5.0
    assert entry.payload["effective_weights"] == {"baseline": 0.5, "finetuned": 0.5}
    # The file was edited to 80% treatment since the last start: the newer intent (the file) wins.
    cfg80 = make_config(weights={"baseline": 0.2, "finetuned": 0.8})
    state, _ = restore_state(cfg80, [start, ramp], now=5.0)
    assert state.weights == {"baseline": 0.2, "finetuned": 0.8}
    # The file was edited down to 5%: units would move back to control, refused unless allowed.
    cfg5 = make_config(weights={"baseline": 0.95, "finetuned": 0.05})
    with pytest.raises(ConfigError, match="allow_ramp_down"):
        restore_state(cfg5, [start, ramp], now=5.0)
    state, _ = restore_state(make_config(weights={"baseline": 0.95, "finetuned": 0.05}, allow_ramp_down=True),
                             [start, ramp], now=5.0)
    assert state.weights["finetuned"] == 0.05


def test_restored_allocation_gives_the_same_assignment():
    cfg = make_config(weights={"baseline": 0.7, "finetuned": 0.3})
    state, _ = restore_state(cfg, [], now=0.0)
    for i in range(200):
        assert state.alloc.arm_for_bucket(0) == "finetuned"
        assert assign("salt1", f"u{i}", state.alloc) == assign("salt1", f"u{i}", cfg.ordered_weights())


async def test_admin_changes_on_one_replica_reach_another_through_the_audit_log(backends, store):
    # Two replicas share one store: pause, ramp and an override made on A apply on B at its next audit-log read.
    cfg = make_config(weights={"baseline": 0.9, "finetuned": 0.1})
    app_a, _ = _app(cfg, backends, store)
    app_b, registry_b = _app(cfg, backends, store)
    async with serving(app_a) as a, serving(app_b) as b:
        service_b = app_b.state.service
        assert await service_b.sync_from_audit() == 0  # A's serve_start is not an admin change
        await a.put("/admin/allocation", headers=AUTH, json={"weights": {"baseline": 0.5, "finetuned": 0.5}})
        await a.put("/admin/overrides/qa", headers=AUTH, json={"arm": "finetuned"})
        await a.post("/admin/pause", headers=AUTH)
        before = (await b.get("/admin/experiment", headers=AUTH)).json()
        assert before["paused"] is False and before["weights"]["finetuned"] == 0.1
        assert await service_b.sync_from_audit() == 3
        after = (await b.get("/admin/experiment", headers=AUTH)).json()
        assert after["paused"] is True and after["weights"] == {"baseline": 0.5, "finetuned": 0.5}
        assert after["overrides"] == {"qa": "finetuned"}
        assert registry_b.get_sample_value("abharness_experiment_paused") == 1
        r = (await b.post("/search", json={"query": "cell", "unit_id": "u1"})).json()
        assert r["arm"] == "baseline" and r["impression_token"] is None
        await b.post("/admin/resume", headers=AUTH)  # and back the other way; nothing is applied twice
        assert await service_b.sync_from_audit() == 0
        assert await app_a.state.service.sync_from_audit() == 1
        assert (await a.get("/admin/experiment", headers=AUTH)).json()["paused"] is False
