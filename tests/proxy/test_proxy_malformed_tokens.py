"""Any malformed impression token is a counted 403 ``forged`` (never a 500), /events answers per item, and a click
replayed after a restart is counted once."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from abharness.api.app import create_app
from abharness.core.tokens import InvalidToken, verify
from abharness.testing.client import serving
from abharness.testing.configs import make_config
from abharness.testing.fakes import InlineWriter

pytestmark = pytest.mark.anyio

SECRET = b"s" * 32


def _metric(registry, name, labels=None):
    value = registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


@pytest.mark.parametrize(
    "token",
    [
        "été.x",
        "abc.été",
        "eyJ2IjoxfQ." + "é" * 43,
        "eyJ2IjoxfQ." + "A" * 42,
        "eyJ2IjoxfQ." + "A" * 44,
        "eyJ2IjoxfQ." + "A" * 42 + "=",
        "....",
        "a.b.c",
        "\x00." + "A" * 43,
        " " * 10,
        "💥." + "A" * 43,
    ],
)
def test_malformed_tokens_are_forged_not_exceptions(token: str) -> None:
    with pytest.raises(InvalidToken) as err:
        verify(token, SECRET, now=0.0)
    assert err.value.reason == "forged"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_either_valid_or_forged(token: str) -> None:
    with pytest.raises(InvalidToken) as err:
        verify(token, SECRET, now=0.0)
    assert err.value.reason == "forged"


async def test_non_ascii_click_token_is_a_counted_403(backends, store, writer):
    registry = CollectorRegistry()
    app = create_app(make_config(), registry=registry, store=store, backends=backends, writer=writer)
    async with serving(app) as client:
        s = (await client.post("/search", json={"query": "cell", "unit_id": "u1"})).json()
        good = {"impression_token": s["impression_token"], "doc_id": s["results"][0]["doc_id"], "position": 1}
        bad = {"impression_token": "été.x", "doc_id": s["results"][1]["doc_id"], "position": 2}
        r = await client.post("/click", json=bad)
        assert r.status_code == 403 and r.json()["reason"] == "forged", r.text
        r = await client.post("/events", json={"events": [good, bad]})
        assert r.status_code == 200, r.text
        out = r.json()
        assert [x["status"] for x in out["results"]] == ["accepted", "rejected"]
        assert out["results"][1]["reason"] == "forged"
    assert _metric(registry, "abharness_clicks_rejected_total", {"reason": "forged"}) == 2
    assert len(store.clicks) == 1


async def test_an_item_that_raises_does_not_fail_the_batch(backends, store, writer, monkeypatch):
    registry = CollectorRegistry()
    app = create_app(make_config(), registry=registry, store=store, backends=backends, writer=writer)
    async with serving(app) as client:
        s = (await client.post("/search", json={"query": "cell", "unit_id": "u1"})).json()
        events = [
            {"impression_token": s["impression_token"], "doc_id": s["results"][i]["doc_id"], "position": i + 1}
            for i in range(3)
        ]
        service = app.state.service
        real = service.click
        calls = []

        async def flaky(token, doc_id, position, dwell_ms=None):
            calls.append(doc_id)
            if len(calls) == 2:
                raise RuntimeError("bug in one item")
            return await real(token, doc_id, position, dwell_ms)

        monkeypatch.setattr(service, "click", flaky)
        r = await client.post("/events", json={"events": events})
        assert r.status_code == 200, r.text
        out = r.json()
        assert [x["status"] for x in out["results"]] == ["accepted", "rejected", "accepted"]
        assert out["results"][1]["reason"] == "internal" and "error id" in out["results"][1]["detail"]
    assert len(store.clicks) == 2


async def test_a_click_replayed_after_a_restart_is_counted_once(backends, store):
    cfg = make_config()
    first = CollectorRegistry()
    app = create_app(cfg, registry=first, store=store, backends=backends, writer=InlineWriter(store))
    async with serving(app) as client:
        s = (await client.post("/search", json={"query": "cell", "unit_id": "u1"})).json()
        click = {"impression_token": s["impression_token"], "doc_id": s["results"][0]["doc_id"], "position": 1}
        assert (await client.post("/click", json=click)).json()["status"] == "accepted"
    assert _metric(first, "abharness_clicks_total", {"arm": s["arm"]}) == 1
    # The "restarted" proxy: same store and secret, a fresh process-local duplicate cache.
    second = CollectorRegistry()
    app = create_app(cfg, registry=second, store=store, backends=backends, writer=InlineWriter(store),
                     clock=lambda: time.time() + 1.0)
    async with serving(app) as client:
        r = await client.post("/click", json=click)
        assert r.status_code == 200 and r.json()["status"] == "duplicate"
    assert _metric(second, "abharness_clicks_total", {"arm": s["arm"]}) == 0
    assert len(store.clicks) == 1
