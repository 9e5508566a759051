"""``POST /search`` through ``FastSearchMiddleware`` answers like the FastAPI route, and ``ArmWorkers`` keeps the
hand-off's semantics (limit, timeout, abandon, errors).

The route is reached with a ``+json`` content type, which the middleware hands to FastAPI unchanged, so the same
request can be answered both ways and compared.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from abharness.api.app import create_app
from abharness.api.routes import RequestError, get_service
from abharness.serve.workers import ArmTimeout, ArmWorkers
from abharness.testing.client import serving
from abharness.testing.configs import make_config
from abharness.testing.fakes import DictBackend

pytestmark = pytest.mark.anyio

FAST = {"content-type": "application/json"}
ROUTE = {"content-type": "application/vnd.test+json"}  # handed to FastAPI as is, which parses it as JSON
VARYING = ("impression_id", "impression_token", "page_token")


def _app(cfg, backends, store, writer):
    return create_app(cfg, registry=CollectorRegistry(), store=store, backends=backends, writer=writer)


def _same_answer(a, b, seeded=False):
    assert a.status_code == b.status_code, (a.text, b.text)
    assert [k for k, _ in a.headers.multi_items()] == [k for k, _ in b.headers.multi_items()]
    assert a.headers["content-type"] == b.headers["content-type"]
    ja, jb = a.json(), b.json()
    assert list(ja) == list(jb)
    if a.status_code == 200:
        for key in VARYING:
            assert (ja[key] is None) == (jb[key] is None)
            ja[key] = jb[key] = None
        if seeded:  # interleaving draws teams from a seed per impression: compare the shape of the lists
            ra, rb = ja.pop("results"), jb.pop("results")
            assert [(list(x), x["position"]) for x in ra] == [(list(x), x["position"]) for x in rb]
        assert ja == jb
    else:
        assert ja == jb


@pytest.mark.parametrize("mode", ["ab", "interleave", "shadow"])
async def test_fast_path_answers_like_the_route(backends, store, writer, mode):
    app = _app(make_config(mode=mode), backends, store, writer)
    async with serving(app) as client:
        for i, body in enumerate([
            {"query": "cell protein", "unit_id": "u1"},
            {"query": "virus", "unit_id": "u2", "k": 3, "context": {"device": "mobile", "n": 2, "x": 1.5, "b": True}},
            {"query": "gene", "unit_id": "u3", "page": 2},
            {"query": "gene", "unit_id": "u4", "offset": 0},
        ]):
            fast = await client.post("/search", content=json.dumps(body), headers=FAST)
            route = await client.post("/search", content=json.dumps(body), headers=ROUTE)
            if mode == "interleave" and body.get("page"):
                assert fast.status_code == 422  # a later page needs the page token in interleave mode
            _same_answer(fast, route, seeded=mode == "interleave")
            assert fast.content.count(b'"doc_id"') == len(fast.json().get("results", []))
        await app.state.service.drain(5)  # shadow mode logs after the response
        before = len(store.impressions)
        r = await client.post("/search", content=json.dumps({"query": "cell", "unit_id": "u9"}), headers=FAST)
        await app.state.service.drain(5)
        assert r.status_code == 200 and len(store.impressions) == before + 1  # logged like any search
        # A continuation through the fast path with the page token of the route's answer (and the reverse).
        first = (await client.post("/search", json={"query": "cell", "unit_id": "u5", "k": 2})).json()
        nxt = await client.post("/search", headers=ROUTE, content=json.dumps(
            {"query": "cell", "unit_id": "u5", "page_token": first["page_token"]}))
        assert nxt.status_code == 200 and nxt.json()["offset"] == 2


async def test_fast_path_errors_are_the_routes(backends, store, writer):
    app = _app(make_config(limits={"max_k": 5}), backends, store, writer)
    async with serving(app) as client:
        for raw in [
            b'{"query": "cell"}',  # no unit: RequestError 400 raised by the shared code
            b'{"query": "cell", "unit_id": "u1", "k": 50}',  # over max_k: 422
            b'{"query": "   ", "unit_id": "u1"}',  # blank query
            b'{"query": "cell", "unit_id": "u1", "k": "3"}',  # strict int: FastAPI's validation error
            b'{"query": "cell", "unit_id": "u1", "offset": 1, "page": 2}',  # model validator
            b'{"query": "cell", "unit_id": "u1", "extra": 1}',  # extra field
            b'{"query": "cell", "unit_id": "u1", "page_token": "nope"}',  # forged page token: 403
            b'{"query": "cell", ',  # invalid JSON
            b'["cell"]',  # not an object
            b"",  # no body
        ]:
            fast = await client.post("/search", content=raw, headers=FAST)
            route = await client.post("/search", content=raw, headers=ROUTE)
            assert 400 <= fast.status_code < 500, (raw, fast.status_code, fast.text)
            _same_answer(fast, route)
            assert "error" in fast.json() and fast.json()["detail"]


async def test_fast_path_control_failure_and_fallback(corpus, store, writer):
    backends = {"baseline": DictBackend(corpus, name="baseline", fail=True), "finetuned": DictBackend(corpus)}
    app = _app(make_config(weights={"baseline": 1.0, "finetuned": 0.0}), backends, store, writer)
    async with serving(app) as client:
        r = await client.post("/search", json={"query": "cell", "unit_id": "u1"})
    assert r.status_code == 503 and r.json()["error"] == "control_unavailable"
    assert r.headers["retry-after"] == "1"
    backends = {"baseline": DictBackend(corpus, name="baseline"),
                "finetuned": DictBackend(corpus, name="finetuned", delay_s=1.0)}
    app = _app(make_config(weights={"baseline": 0.0, "finetuned": 1.0}, timeouts={"treatment_s": 0.05}), backends,
               store, writer)
    async with serving(app) as client:
        t0 = time.perf_counter()
        r = await client.post("/search", json={"query": "cell", "unit_id": "u1"})
        assert time.perf_counter() - t0 < 0.9  # the timeout fired; the slow search was abandoned
    assert r.status_code == 200 and r.json()["fallback"] is True
    assert "did not answer within 0.05 s" in store.impressions[r.json()["impression_id"]].error


async def test_fast_path_issues_and_reads_the_session_cookie(backends, store, writer):
    app = _app(make_config(unit="session", session_cookie={"name": "sid", "secure": False}), backends, store, writer)
    async with serving(app) as client:
        fast = await client.post("/search", json={"query": "cell"})
        assert fast.status_code == 200 and "sid=" in fast.headers["set-cookie"]
        client.cookies.clear()
        route = await client.post("/search", content=b'{"query": "cell"}', headers=ROUTE)
        # a new random unit each time (so arm and results may differ): the same headers and fields
        assert [k for k, _ in fast.headers.multi_items()] == [k for k, _ in route.headers.multi_items()]
        assert list(fast.json()) == list(route.json())
        assert fast.headers["set-cookie"].split("=", 1)[1].split(";", 1)[1] == \
            route.headers["set-cookie"].split("=", 1)[1].split(";", 1)[1]  # the same cookie attributes
        client.cookies.clear()
        again = await client.post("/search", json={"query": "cell"}, cookies={"sid": fast.cookies["sid"]})
        assert again.json()["unit_id"] == fast.json()["unit_id"] and "set-cookie" not in again.headers


async def test_fast_path_keeps_the_body_limit(backends, store, writer):
    app = _app(make_config(limits={"max_body_bytes": 300}), backends, store, writer)
    async with serving(app) as client:
        r = await client.post("/search", json={"query": "x" * 500, "unit_id": "u1"})
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"


# ------------------------------------------------------------------------------------------------ ArmWorkers
async def test_workers_return_results_and_raise_errors():
    w = ArmWorkers("t")
    assert await w.run(5, lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        await w.run(5, lambda: 1 / 0)
    assert await asyncio.gather(*(w.run(5, time.sleep, 0.05) for _ in range(8))) == [None] * 8
    assert 1 <= w.threads <= 8


async def test_workers_time_out_abandon_and_never_start_a_queued_call():
    w = ArmWorkers("t", limit=1)
    release = threading.Event()
    started: list[str] = []

    def call(name: str) -> str:
        started.append(name)
        release.wait(5)
        return name

    t0 = time.perf_counter()
    with pytest.raises(ArmTimeout):
        await w.run(0.05, call, "first")
    with pytest.raises(ArmTimeout):  # waits for the only thread, which the first call still holds
        await w.run(0.05, call, "queued")
    assert time.perf_counter() - t0 < 2
    release.set()
    assert await w.run(5, lambda: "after") == "after"
    assert started == ["first"]  # the queued call timed out before a thread took it: never run
    assert w.threads == 1


async def test_workers_limit_concurrency():
    w = ArmWorkers("t", limit=3)
    lock = threading.Lock()
    running = [0, 0]  # now, max

    def call() -> None:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.03)
        with lock:
            running[0] -= 1

    await asyncio.gather(*(w.run(10, call) for _ in range(12)))
    assert running[1] == 3 and w.threads == 3


async def test_workers_cancelled_caller_drops_the_result():
    w = ArmWorkers("t")
    done = threading.Event()

    def slow() -> int:
        time.sleep(0.1)
        done.set()
        return 1

    task = asyncio.ensure_future(w.run(5, slow))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.wait(2)
    await asyncio.sleep(0.05)  # the late result is delivered to a cancelled future: ignored, nothing raised
    assert await w.run(5, lambda: 2) == 2


async def test_a_valid_json_search_never_reaches_the_route(backends, store, writer):
    app = _app(make_config(), backends, store, writer)

    async def route_reached() -> None:
        raise RequestError(409, "route_reached", "the FastAPI route answered")

    app.dependency_overrides[get_service] = route_reached  # only the FastAPI route resolves this dependency
    async with serving(app) as client:
        assert (await client.post("/search", json={"query": "cell", "unit_id": "u1"})).status_code == 200
        assert (await client.post("/search", json={"query": "cell"})).status_code == 400  # a handler's answer
        r = await client.post("/search", content=b'{"query": "cell", "unit_id": "u1"}', headers=ROUTE)
        assert r.status_code == 409 and r.json()["error"] == "route_reached"  # handed on to the route
