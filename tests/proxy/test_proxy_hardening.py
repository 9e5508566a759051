"""Smaller trust items: named admin tokens give the audit actor, invalid weights are 422 before the ramp rule,
weak secrets are refused, ``k: true`` is refused, public error bodies carry no internal URL, /readyz no path."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from abharness.api.app import create_app
from abharness.errors import ConfigError
from abharness.testing.client import serving
from abharness.testing.configs import TEST_ADMIN_TOKEN, TEST_TOKEN_SECRET, make_config
from abharness.testing.fakes import DictBackend, InlineWriter, MemoryStore, tiny_corpus

pytestmark = pytest.mark.anyio

BOB = "bob-uses-a-token-of-his-own-42"


def _app(cfg, backends, store):
    return create_app(cfg, registry=CollectorRegistry(), store=store, backends=backends, writer=InlineWriter(store))


async def test_the_audit_actor_is_the_name_of_the_token(backends, store):
    cfg = make_config(admin_tokens={"bob": BOB})
    async with serving(_app(cfg, backends, store)) as client:
        r = await client.post("/admin/pause", headers={"Authorization": f"Bearer {BOB}"})
        assert r.status_code == 200
        r = await client.post("/admin/resume", headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"})
        assert r.status_code == 200
        r = await client.post("/admin/kill", headers={"Authorization": f"Bearer {BOB}"},
                              json={"reason": "x", "actor": "mallory"})
        assert r.status_code == 422  # the actor can no longer be typed in
    assert [(a.action, a.actor) for a in store.audit[1:]] == [("pause", "bob"), ("resume", "admin")]


async def test_invalid_weights_are_422_even_when_they_would_lower_a_treatment(backends, store):
    cfg = make_config(weights={"baseline": 0.5, "finetuned": 0.5})
    auth = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
    async with serving(_app(cfg, backends, store)) as client:
        for weights in ({"baseline": 0.5, "finetuned": 0.4}, {"baseline": 1.2, "finetuned": -0.2},
                        {"baseline": 0.6, "finetuned": 0.6}):
            r = await client.put("/admin/allocation", headers=auth, json={"weights": weights})
            assert r.status_code == 422 and r.json()["error"] == "invalid_weights", (weights, r.text)
        r = await client.put("/admin/allocation", headers=auth, json={"weights": {"baseline": 0.6, "finetuned": 0.4}})
        assert r.status_code == 409 and r.json()["error"] == "ramp_down"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"token_secret": " " * 40}, "token_secret"),
        ({"token_secret": "a" * 40}, "token_secret"),
        ({"token_secret": TEST_ADMIN_TOKEN}, "equal to an admin token"),
        ({"admin_token": "x" * 40}, "admin_token"),
        ({"admin_token": " " * 40}, "admin_token"),
        ({"admin_tokens": {"bob": "b" * 30}}, "admin_tokens"),
        ({"admin_tokens": {"bob": TEST_TOKEN_SECRET}}, "equal to an admin token"),
        ({"admin_tokens": {"bob": BOB, "eve": BOB}}, "share one token"),
        ({"admin_tokens": {"bad name!": BOB}}, "admin_tokens"),
    ],
)
def test_weak_or_shared_secrets_are_refused(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment) as err:
        make_config(**overrides)
    assert BOB not in str(err.value) and TEST_TOKEN_SECRET not in str(err.value)


def test_named_tokens_alone_are_enough():
    cfg = make_config(admin_token="", admin_tokens={"bob": BOB})
    assert cfg.admin_actors() == {BOB: "bob"}


@pytest.mark.parametrize(
    "path, body",
    [
        ("/search", {"query": "cell", "unit_id": "u1", "k": True}),
        ("/search", {"query": "cell", "unit_id": "u1", "k": 2.0}),
        ("/search", {"query": "cell", "unit_id": "u1", "k": "3"}),
        ("/click", {"impression_token": "x.y", "doc_id": "d1", "position": True}),
        ("/click", {"impression_token": "x.y", "doc_id": "d1", "position": 1, "dwell_ms": True}),
    ],
)
async def test_booleans_and_strings_are_not_numbers(backends, store, path, body):
    async with serving(_app(make_config(), backends, store)) as client:
        r = await client.post(path, json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "invalid_request"


async def test_public_errors_carry_no_internal_address_or_path(tmp_path):
    corpus = tiny_corpus(10)

    class Leaky(DictBackend):
        def search(self, queries, k):
            from abharness.errors import BackendError

            raise BackendError("index server http://10.0.0.5:8100/search answered 500: secret stack")

    backends = {"baseline": Leaky(corpus, name="baseline"), "finetuned": DictBackend(corpus, name="finetuned")}
    store = MemoryStore(url=f"sqlite:///{tmp_path}/events.db")
    cfg = make_config(weights={"baseline": 1.0, "finetuned": 0.0})
    async with serving(_app(cfg, backends, store)) as client:
        r = await client.post("/search", json={"query": "cell", "unit_id": "u1"})
        assert r.status_code == 503
        body = r.json()
        assert "10.0.0.5" not in r.text and "secret" not in r.text
        assert body["error"] == "control_unavailable" and body["error_id"] in body["detail"]
        store.fail_writes = True
        r = await client.get("/readyz")
        assert r.status_code == 503 and str(tmp_path) not in r.text and "store" in r.json()["problems"]
