"""CORS on the public routes, beacon (text/plain) bodies on /events, seen/dwell feedback, the script and demo page."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from abharness.api.app import create_app
from abharness.errors import ConfigError
from abharness.stores import open_store
from abharness.testing.client import serving
from abharness.testing.configs import make_config

# generous backend timeouts: a loaded CI machine must not turn a slow fake backend into a fallback
SLOW_OK = {"control_s": 20.0, "treatment_s": 20.0}

pytestmark = pytest.mark.anyio
ORIGIN = "https://shop.example.com"


def _app(cfg, backends, store, writer):
    return create_app(cfg, registry=CollectorRegistry(), store=store, backends=backends, writer=writer)


def test_wildcard_origin_with_credentials_is_refused_in_one_line():
    with pytest.raises(ConfigError) as info:
        make_config(timeouts=SLOW_OK, cors={"allow_origins": ["*"], "allow_credentials": True})
    msg = str(info.value)
    assert "\n" not in msg and "allow_origins" in msg and "allow_credentials: false" in msg
    make_config(timeouts=SLOW_OK, cors={"allow_origins": ["*"], "allow_credentials": False})  # allowed
    with pytest.raises(ConfigError, match="not an origin"):
        make_config(timeouts=SLOW_OK, cors={"allow_origins": ["https://shop.example.com/path"]})


async def test_preflight_and_cors_headers_only_on_public_routes(backends, store, writer):
    cfg = make_config(timeouts=SLOW_OK, cors={"allow_origins": [ORIGIN]})
    async with serving(_app(cfg, backends, store, writer)) as client:
        pre = await client.options("/search", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == ORIGIN
        assert pre.headers["access-control-allow-credentials"] == "true"
        assert "POST" in pre.headers["access-control-allow-methods"]
        # a disallowed origin gets no allow-origin header
        bad = await client.options("/search", headers={"Origin": "https://evil.example",
                                                       "Access-Control-Request-Method": "POST"})
        assert bad.status_code == 400 and "access-control-allow-origin" not in bad.headers
        r = await client.post("/search", json={"query": "cell", "unit_id": "u1"}, headers={"Origin": ORIGIN})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
        # admin routes never answer a cross-origin preflight
        admin = await client.options("/admin/allocation", headers={"Origin": ORIGIN,
                                                                   "Access-Control-Request-Method": "PUT"})
        assert admin.status_code == 405 and "access-control-allow-origin" not in admin.headers


async def test_no_cors_configured_keeps_preflight_closed(backends, store, writer):
    async with serving(_app(make_config(timeouts=SLOW_OK), backends, store, writer)) as client:
        r = await client.options("/search", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        assert r.status_code == 405 and "access-control-allow-origin" not in r.headers


async def test_beacon_text_plain_body_click_seen_and_dwell_are_stored(backends):
    store = open_store("sqlite:///:memory:")
    cfg = make_config(timeouts=SLOW_OK, cors={"allow_origins": [ORIGIN]})
    app = create_app(cfg, registry=CollectorRegistry(), store=store, backends=backends)
    async with serving(app) as client:
        s = (await client.post("/search", json={"query": "cell protein", "unit_id": "u1"})).json()
        token, res = s["impression_token"], s["results"]
        batch = {"events": [
            {"type": "seen", "impression_token": token, "doc_id": res[0]["doc_id"], "position": 1},
            {"type": "seen", "impression_token": token, "doc_id": res[1]["doc_id"], "position": 2},
            {"type": "click", "impression_token": token, "doc_id": res[1]["doc_id"], "position": 2},
        ]}
        r = await client.post("/events", content=json.dumps(batch),
                              headers={"content-type": "text/plain;charset=UTF-8", "Origin": ORIGIN})
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 3
        dwell = {"events": [{"type": "dwell", "impression_token": token, "doc_id": res[1]["doc_id"],
                             "position": 2, "dwell_ms": 4321.0}]}
        r = await client.post("/events", content=json.dumps(dwell), headers={"content-type": "text/plain"})
        assert r.json()["accepted"] == 1
        # a dwell without a time, a forged token, and a non-JSON beacon are refused with reasons
        r = await client.post("/events", content=json.dumps({"events": [{**dwell["events"][0], "dwell_ms": None}]}),
                              headers={"content-type": "text/plain"})
        assert r.status_code == 422 and "dwell_ms" in r.json()["detail"]
        r = await client.post("/events", json={"events": [{"type": "seen", "impression_token": token + "x",
                                                           "doc_id": res[0]["doc_id"], "position": 1}]})
        assert r.json()["results"][0]["reason"] == "forged"
        r = await client.post("/events", content="not json", headers={"content-type": "text/plain"})
        assert r.status_code == 422
    clicks = store.execute("SELECT doc_id, position, dwell_ms FROM clicks")
    assert clicks == [(res[1]["doc_id"], 2, 4321.0)]
    fb = {(f.kind, f.position, f.value) for f in store.feedback("exp1")}
    assert fb == {("seen", 1, None), ("seen", 2, None), ("dwell", 2, 4321.0)}
    store.close()


async def test_events_openapi_documents_both_content_types(backends, store, writer):
    async with serving(_app(make_config(timeouts=SLOW_OK), backends, store, writer)) as client:
        spec = (await client.get("/openapi.json")).json()
    body = spec["paths"]["/events"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "text/plain"}
    assert body["text/plain"]["schema"] == body["application/json"]["schema"]
    assert "EventsRequest" in spec["components"]["schemas"]


async def test_script_always_served_demo_only_when_enabled(backends, store, writer):
    async with serving(_app(make_config(timeouts=SLOW_OK), backends, store, writer)) as client:
        js = await client.get("/static/abharness.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert "sendBeacon" in js.text and "IntersectionObserver" in js.text and "pagehide" in js.text
        assert (await client.get("/demo")).status_code == 404
    cfg = make_config(timeouts=SLOW_OK, demo_page=True)
    async with serving(_app(cfg, backends, store, writer)) as client:
        page = await client.get("/demo")
        assert page.status_code == 200 and 'src="/static/abharness.js"' in page.text


async def test_search_records_the_user_agent_for_the_crawler_rule(backends, store, writer):
    async with serving(_app(make_config(timeouts=SLOW_OK), backends, store, writer)) as client:
        r = await client.post("/search", json={"query": "cell", "unit_id": "u1"},
                              headers={"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1)"})
        own = await client.post("/search", json={"query": "cell", "unit_id": "u2",
                                                 "context": {"user_agent": "the user's browser"}})
    assert store.impressions[r.json()["impression_id"]].context["user_agent"].startswith("Mozilla/5.0 (compatible")
    assert store.impressions[own.json()["impression_id"]].context["user_agent"] == "the user's browser"
