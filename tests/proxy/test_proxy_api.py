"""HTTP contract of the proxy through httpx.ASGITransport (lifespan run by abharness.testing.client.serving)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from abharness.api.app import create_app
from abharness.core.assignment import assign
from abharness.core.events import Click, Impression
from abharness.testing.client import serving
from abharness.testing.configs import make_config
from abharness.testing.fakes import DictBackend, InlineWriter

pytestmark = pytest.mark.anyio


def _app(cfg, backends, store, writer, **kw):
    registry = CollectorRegistry()
    app = create_app(cfg, registry=registry, store=store, backends=backends, writer=writer, **kw)
    return app, registry


def _metric(registry, name, labels=None):
    value = registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


async def test_ab_search_serves_the_assigned_arm_and_logs_the_impression(backends, store, writer):
    cfg = make_config()
    app, registry = _app(cfg, backends, store, writer)
    async with serving(app) as client:
        arms = set()
        for i in range(20):
            r = await client.post("/search", json={"query": "cell protein", "unit_id": f"u{i}"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["mode"] == "ab"
            assert body["arm"] == assign("salt1", f"u{i}", {"baseline": 0.5, "finetuned": 0.5})
            assert len(body["results"]) == 5
            assert [x["position"] for x in body["results"]] == [1, 2, 3, 4, 5]
            assert all(x["team"] == body["arm"] and x["title"].startswith("title of") for x in body["results"])
            assert body["impression_token"]
            arms.add(body["arm"])
            imp = store.impressions[body["impression_id"]]
            assert isinstance(imp, Impression)
            assert imp.arm == body["arm"] and imp.unit_id == f"u{i}" and imp.query == "cell protein"
            assert [r.doc_id for r in imp.results] == [x["doc_id"] for x in body["results"]]
            assert imp.fingerprints[body["arm"]]["model"] == f"model-{body['arm']}"
            assert imp.latency_ms > 0 and imp.fallback is False
        assert arms == {"baseline", "finetuned"}
        # The same unit keeps its arm.
        again = await client.post("/search", json={"query": "virus", "unit_id": "u3"})
        first = store.impressions
        assert again.json()["arm"] == assign("salt1", "u3", {"baseline": 0.5, "finetuned": 0.5})
        assert len(first) == 21
    assert _metric(registry, "abharness_impressions_total", {"arm": "baseline"}) + _metric(
        registry, "abharness_impressions_total", {"arm": "finetuned"}
    ) == 21


async def test_interleave_tags_every_result_with_its_team(backends, store, writer):
    cfg = make_config(mode="interleave")
    app, _ = _app(cfg, backends, store, writer)
    async with serving(app) as client:
        r = await client.post("/search", json={"query": "heart brain gene", "unit_id": "u1", "k": 6})
        body = r.json()
        assert r.status_code == 200 and body["arm"] == "interleaved" and body["mode"] == "interleave"
        teams = [x["team"] for x in body["results"]]
        assert set(teams) == {"baseline", "finetuned"} and abs(teams.count("baseline") - teams.count("finetuned")) <= 1
        ranking = {name: [h.doc_id for h in b.search(["heart brain gene"], 6)[0]] for name, b in backends.items()}
        for x in body["results"]:
            assert x["doc_id"] in ranking[x["team"]]
        imp = store.impressions[body["impression_id"]]
        assert imp.arm == "interleaved" and set(imp.fingerprints) == {"baseline", "finetuned"}
        assert [r.team for r in imp.results] == teams


async def test_shadow_serves_control_and_logs_the_treatment_ranking(backends, store, writer):
    cfg = make_config(mode="shadow")
    app, _ = _app(cfg, backends, store, writer)
    async with serving(app) as client:
        r = await client.post("/search", json={"query": "drug blood", "unit_id": "u1"})
        body = r.json()
        assert body["arm"] == "baseline" and all(x["team"] == "baseline" for x in body["results"])
    # After shutdown (which drains in-flight shadows) the impression carries the treatment's ranking.
    imp = store.impressions[body["impression_id"]]
    expected = [h.doc_id for h in backends["finetuned"].search(["drug blood"], 5)[0]]
    assert imp.shadow_results is not None and [s.doc_id for s in imp.shadow_results] == expected
    assert set(imp.fingerprints) == {"baseline", "finetuned"}
    assert [x["doc_id"] for x in body["results"]] == [r.doc_id for r in imp.results]


async def test_click_accepted_once_and_counted(backends, store, writer):
    app, registry = _app(make_config(), backends, store, writer)
    async with serving(app) as client:
        s = (await client.post("/search", json={"query": "cell", "unit_id": "u1"})).json()
        doc = s["results"][1]["doc_id"]
        click = {"impression_token": s["impression_token"], "doc_id": doc, "position": 2, "dwell_ms": 1200}
        r1 = await client.post("/click", json=click)
        r2 = await client.post("/click", json=click)
        assert r1.status_code == 200 and r1.json()["status"] == "accepted"
        assert r2.status_code == 200 and r2.json()["status"] == "duplicate"
    assert len(store.clicks) == 1
    c = store.clicks[(s["impression_id"], doc)]
    assert isinstance(c, Click) and c.arm == s["arm"] and c.unit_id == "u1" and c.position == 2 and c.dwell_ms == 1200
    assert _metric(registry, "abharness_clicks_total", {"arm": s["arm"]}) == 1


async def test_duplicate_clicks_across_processes_are_stored_once(backends, store):
    # Two app instances (two processes) share a secret and a store: the store dedupes by (impression, doc).
    cfg = make_config()
    app1, _ = _app(cfg, backends, store, InlineWriter(store))
    app2, _ = _app(cfg, backends, store, InlineWriter(store))
    async with serving(app1) as c1, serving(app2) as c2:
        s = (await c1.post("/search", json={"query": "cell", "unit_id": "u1"})).json()
        click = {"impression_token": s["impression_token"], "doc_id": s["results"][0]["doc_id"], "position": 1}
        assert (await c1.post("/click", json=click)).status_code == 200
        assert (await c2.post("/click", json=click)).status_code == 200
    assert len(store.clicks) == 1


async def test_forged_expired_and_mismatched_clicks_are_rejected_and_counted(backends, store, writer):
    now = [1_000_000.0]
    cfg = make_config(token_ttl_s=60)
    app, registry = _app(cfg, backends, store, writer, clock=lambda: now[0])
    async with serving(app) as client:
        s = (await client.post("/search", json={"query": "cell", "unit_id": "u1"})).json()
        tok, doc = s["impression_token"], s["results"][0]["doc_id"]
        body, mac = tok.split(".")
        cases = [
            ({"impression_token": body + "." + mac[::-1], "doc_id": doc, "position": 1}, 403, "forged"),
            ({"impression_token": "not-a-token", "doc_id": doc, "position": 1}, 403, "forged"),
            ({"impression_token": tok, "doc_id": "not-shown", "position": 1}, 422, "unknown_doc"),
            ({"impression_token": tok, "doc_id": doc, "position": 3}, 422, "mismatch"),
        ]
        for click, status, reason in cases:
            r = await client.post("/click", json=click)
            assert r.status_code == status, r.text
            assert r.json()["reason"] == reason and r.json()["detail"]
        # A token from another experiment (same secret) is a mismatch.
        other = make_config(experiment_id="exp2")
        app2, _ = _app(other, backends, store, InlineWriter(store))
        async with serving(app2) as client2:
            s2 = (await client2.post("/search", json={"query": "cell", "unit_id": "u1"})).json()
        r = await client.post(
            "/click", json={"impression_token": s2["impression_token"], "doc_id": s2["results"][0]["doc_id"],
                            "position": 1},
        )
        assert r.status_code == 422 and r.json()["reason"] == "mismatch"
        now[0] += 61
        r = await client.post("/click", json={"impression_token": tok, "doc_id": doc, "position": 1})
        assert r.status_code == 403 and r.json()["reason"] == "expired"
    assert not store.clicks
    assert _metric(registry, "abharness_clicks_rejected_total", {"reason": "forged"}) == 2
    assert _metric(registry, "abharness_clicks_rejected_total", {"reason": "unknown_doc"}) == 1
    assert _metric(registry, "abharness_clicks_rejected_total", {"reason": "mismatch"}) == 2
    assert _metric(registry, "abharness_clicks_rejected_total", {"reason": "expired"}) == 1


async def test_events_batch_reports_each_item(backends, store, writer):
    app, _ = _app(make_config(), backends, store, writer)
    async with serving(app) as client:
        s = (await client.post("/search", json={"query": "cell", "unit_id": "u1"})).json()
        tok = s["impression_token"]
        events = [
            {"type": "click", "impression_token": tok, "doc_id": s["results"][0]["doc_id"], "position": 1},
            {"type": "click", "impression_token": tok, "doc_id": s["results"][0]["doc_id"], "position": 1},
            {"type": "click", "impression_token": tok + "x", "doc_id": s["results"][1]["doc_id"], "position": 2},
            {"type": "click", "impression_token": tok, "doc_id": s["results"][2]["doc_id"], "position": 3},
        ]
        r = await client.post("/events", json={"events": events})
        assert r.status_code == 200, r.text
        out = r.json()
        assert (out["accepted"], out["duplicates"], out["rejected"]) == (2, 1, 1)
        assert [x["status"] for x in out["results"]] == ["accepted", "duplicate", "rejected", "accepted"]
        assert out["results"][2]["reason"] == "forged"
        r = await client.post("/events", json={"events": [{"type": "view", "impression_token": tok}]})
        assert r.status_code == 422 and "events.0" in r.json()["detail"]
    assert len(store.clicks) == 2


@pytest.mark.parametrize(
    "payload, status, needle",
    [
        ({"query": "x" * 1001, "unit_id": "u"}, 422, "limits.max_query_chars=1000"),
        ({"query": "cell", "unit_id": "u", "k": 101}, 422, "limits.max_k=100"),
        ({"query": "cell", "unit_id": "u", "k": 0}, 422, "body.k"),
        ({"query": "cell"}, 400, "unit_id is required"),
        ({"unit_id": "u"}, 422, "body.query"),
        ({"query": "   ", "unit_id": "u"}, 422, "blank"),
        ({"query": 5, "unit_id": "u"}, 422, "body.query"),
        ({"query": "cell", "unit_id": "u", "extra": 1}, 422, "body.extra"),
        ({"query": "cell", "unit_id": "u", "context": {"device": [1]}}, 422, "body.context"),
    ],
)
async def test_bad_search_input_is_a_4xx_naming_the_field(backends, store, writer, payload, status, needle):
    app, _ = _app(make_config(), backends, store, writer)
    async with serving(app) as client:
        r = await client.post("/search", json=payload)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


async def test_malformed_json_and_oversized_bodies(backends, store, writer):
    app, _ = _app(make_config(limits={"max_body_bytes": 1024}), backends, store, writer)
    async with serving(app) as client:
        r = await client.post("/search", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"] == "invalid_request"
        r = await client.post("/search", json={"query": "x" * 2000, "unit_id": "u"})
        assert r.status_code == 413 and "limits.max_body_bytes=1024" in r.json()["detail"]

        async def chunks():  # no Content-Length: the stream is counted
            for _ in range(5):
                yield b"x" * 400

        r = await client.post("/search", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        r = await client.post("/click", json={"impression_token": "t", "doc_id": "d", "position": "first"})
        assert r.status_code == 422 and "body.position" in r.json()["detail"]
        r = await client.get("/nope")
        assert r.status_code == 404
    assert not store.impressions


async def test_session_cookie_is_issued_and_reused(backends, store, writer):
    cfg = make_config(unit="session", session_cookie={"name": "sid", "secure": False})
    app, _ = _app(cfg, backends, store, writer)
    async with serving(app) as client:
        r1 = await client.post("/search", json={"query": "cell"})
        assert r1.status_code == 200
        sid = r1.cookies.get("sid")
        assert sid and r1.json()["unit_id"] == sid.rsplit(".", 1)[0]  # "<unit>.<signature>"
        r2 = await client.post("/search", json={"query": "gene"})
        assert r2.json()["unit_id"] == r1.json()["unit_id"] and r2.json()["arm"] == r1.json()["arm"]


async def test_failing_treatment_falls_back_to_control(corpus, store, writer):
    backends = {"baseline": DictBackend(corpus, name="baseline"),
                "finetuned": DictBackend(corpus, name="finetuned", fail=True)}
    cfg = make_config(weights={"baseline": 0.0, "finetuned": 1.0}, arms=[
        {"name": "baseline", "role": "control", "backend": {"kind": "local", "index": "a", "model": "minilm"}},
        {"name": "finetuned", "role": "treatment", "backend": {"kind": "local", "index": "b", "model": "minilm"}},
    ])
    app, registry = _app(cfg, backends, store, writer)
    async with serving(app) as client:
        r = await client.post("/search", json={"query": "cell", "unit_id": "u1"})
        body = r.json()
        assert r.status_code == 200 and body["fallback"] is True and body["arm"] == "finetuned"
        control = [h.doc_id for h in backends["baseline"].search(["cell"], 5)[0]]
        assert [x["doc_id"] for x in body["results"]] == control
        assert all(x["team"] == "baseline" for x in body["results"])
        # Clicks on a fallback impression still count (intent-to-treat: the unit's arm is finetuned).
        c = await client.post("/click", json={"impression_token": body["impression_token"], "doc_id": control[0],
                                              "position": 1})
        assert c.status_code == 200
    imp = store.impressions[body["impression_id"]]
    assert imp.fallback is True and imp.arm == "finetuned" and "fake backend" in (imp.error or "")
    assert set(imp.fingerprints) == {"baseline"}
    assert _metric(registry, "abharness_fallbacks_total", {"arm": "finetuned"}) == 1
    assert _metric(registry, "abharness_search_errors_total", {"arm": "finetuned"}) == 1
    assert _metric(registry, "abharness_search_requests_total",
                   {"arm": "finetuned", "mode": "ab", "status": "fallback"}) == 1
    assert _metric(registry, "abharness_backend_up", {"arm": "finetuned"}) == 0


async def test_slow_treatment_times_out_into_fallback_and_interleave_fallback(corpus, store, writer):
    backends = {"baseline": DictBackend(corpus, name="baseline"),
                "finetuned": DictBackend(corpus, name="finetuned", delay_s=2.0)}
    cfg = make_config(mode="interleave", timeouts={"treatment_s": 0.05})
    app, registry = _app(cfg, backends, store, writer)
    async with serving(app) as client:
        r = await client.post("/search", json={"query": "cell", "unit_id": "u1"})
    body = r.json()
    assert r.status_code == 200 and body["fallback"] is True
    assert all(x["team"] == "baseline" for x in body["results"])
    imp = store.impressions[body["impression_id"]]
    assert imp.fallback and "did not answer within 0.05 s" in imp.error
    assert _metric(registry, "abharness_fallbacks_total", {"arm": "finetuned"}) == 1


async def test_control_failure_is_a_503_with_a_clear_body(corpus, store, writer):
    backends = {"baseline": DictBackend(corpus, name="baseline", fail=True),
                "finetuned": DictBackend(corpus, name="finetuned")}
    for mode in ("ab", "interleave", "shadow"):
        app, registry = _app(make_config(mode=mode, weights={"baseline": 1.0, "finetuned": 0.0}), backends, store, writer)
        async with serving(app) as client:
            r = await client.post("/search", json={"query": "cell", "unit_id": "u1"})
        assert r.status_code == 503, (mode, r.text)
        assert r.json()["error"] == "control_unavailable" and "baseline" in r.json()["detail"]
        assert _metric(registry, "abharness_search_requests_total",
                       {"arm": "baseline", "mode": mode, "status": "error"}) == 1
    assert not store.impressions


async def test_health_ready_and_metrics(backends, store, writer):
    app, _ = _app(make_config(), backends, store, writer)
    async with serving(app) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        r = await client.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready"
        await client.post("/search", json={"query": "cell", "unit_id": "u1"})
        text = (await client.get("/metrics")).text
        for name in (
            "abharness_search_requests_total", "abharness_search_latency_seconds_bucket",
            "abharness_impressions_total", "abharness_event_queue_depth", "abharness_events_dropped_total",
            "abharness_events_written_total", "abharness_store_write_seconds", "abharness_allocation_weight",
            "abharness_experiment_paused", "abharness_backend_up",
        ):
            assert name in text, name
        store.fail_writes = True
        r = await client.get("/readyz")
        assert r.status_code == 503 and "store" in r.json()["problems"]
        store.fail_writes = False


async def test_full_queue_drops_events_but_keeps_serving(backends, store):
    writer = InlineWriter(store, max_queue=1, batch_size=100)
    app, registry = _app(make_config(), backends, store, writer)
    async with serving(app) as client:
        for i in range(3):
            assert (await client.post("/search", json={"query": "cell", "unit_id": f"u{i}"})).status_code == 200
        assert _metric(registry, "abharness_events_dropped_total") == 2
        assert _metric(registry, "abharness_event_queue_depth") == 1


async def test_full_queue_rejects_when_configured(backends, store):
    writer = InlineWriter(store, max_queue=1, batch_size=100)
    app, _ = _app(make_config(events={"on_full": "reject"}), backends, store, writer)
    async with serving(app) as client:
        assert (await client.post("/search", json={"query": "cell", "unit_id": "u1"})).status_code == 200
        r = await client.post("/search", json={"query": "cell", "unit_id": "u2"})
        assert r.status_code == 503 and r.json()["error"] == "event_queue_full"


async def test_apps_are_independent_no_import_time_globals(backends, store):
    # Two apps with their own default registries coexist (no "Duplicated timeseries"), and nothing is built
    # before the lifespan runs.
    a = create_app(make_config(), store=store, backends=backends, writer=InlineWriter(store))
    b = create_app(make_config(), store=store, backends=backends, writer=InlineWriter(store))
    assert a.state.registry is not b.state.registry
    assert a.state.service is None
    async with serving(a) as ca, serving(b) as cb:
        assert (await ca.get("/readyz")).status_code == 200 and (await cb.get("/readyz")).status_code == 200
        await ca.post("/search", json={"query": "cell", "unit_id": "u1"})
        assert a.state.registry.get_sample_value(
            "abharness_search_requests_total", {"arm": "baseline", "mode": "ab", "status": "ok"}
        ) or a.state.registry.get_sample_value(
            "abharness_search_requests_total", {"arm": "finetuned", "mode": "ab", "status": "ok"}
        )
        assert b.state.registry.get_sample_value(
            "abharness_search_requests_total", {"arm": "baseline", "mode": "ab", "status": "ok"}
        ) is None
    assert a.state.service is None  # torn down by the lifespan


async def test_three_arm_ab_honours_weights(corpus, store, writer):
    arms = [
        {"name": "baseline", "role": "control", "backend": {"kind": "local", "index": "a", "model": "m"}},
        {"name": "ft1", "role": "treatment", "backend": {"kind": "local", "index": "b", "model": "m"}},
        {"name": "ft2", "role": "treatment", "backend": {"kind": "local", "index": "c", "model": "m"}},
    ]
    cfg = make_config(arms=arms, weights={"baseline": 0.5, "ft1": 0.25, "ft2": 0.25})
    backends = {a["name"]: DictBackend(corpus, name=a["name"]) for a in arms}
    app, _ = _app(cfg, backends, store, writer)
    seen = {"baseline": 0, "ft1": 0, "ft2": 0}
    async with serving(app) as client:
        for i in range(400):
            body = (await client.post("/search", json={"query": "cell", "unit_id": f"u{i}"})).json()
            seen[body["arm"]] += 1
            assert body["arm"] == assign("salt1", f"u{i}", cfg.ordered_weights())
    # Binomial 5-sigma bands around 200/100/100 of 400.
    assert abs(seen["baseline"] - 200) < 5 * 10 and abs(seen["ft1"] - 100) < 5 * 8.7 and abs(seen["ft2"] - 100) < 5 * 8.7
