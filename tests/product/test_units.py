"""Units the client cannot choose: signed unit ids, proxy-issued signed cookies, and the plain mode kept for trusted
server-to-server callers."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from prometheus_client import CollectorRegistry

from abharness.api.app import create_app
from abharness.core.assignment import assign
from abharness.core.units import cookie_key, issue_cookie, read_cookie, sign_unit, verify_unit
from abharness.errors import ConfigError
from abharness.testing.client import serving
from abharness.testing.configs import TEST_TOKEN_SECRET, make_config

# generous backend timeouts: a loaded CI machine must not turn a slow fake backend into a fallback
SLOW_OK = {"control_s": 20.0, "treatment_s": 20.0}

pytestmark = pytest.mark.anyio
UNIT_SECRET = "unit-secret-shared-with-the-backend"
W = {"baseline": 0.5, "finetuned": 0.5}


def _app(cfg, backends, store, writer):
    return create_app(cfg, registry=CollectorRegistry(), store=store, backends=backends, writer=writer)


def test_signature_is_the_documented_hmac():
    # the one line a product backend runs (docs/proxy.md gives it in Python, JavaScript, Go and a shell)
    expected = hmac.new(UNIT_SECRET.encode(), b"user-42", hashlib.sha256).hexdigest()
    assert sign_unit("user-42", UNIT_SECRET.encode()) == expected
    assert verify_unit("user-42", expected.upper(), UNIT_SECRET.encode())
    assert not verify_unit("user-43", expected, UNIT_SECRET.encode())
    key = cookie_key(b"k" * 32)
    unit, value = issue_cookie(key)
    assert read_cookie(value, key) == unit and read_cookie(unit, key) is None
    assert read_cookie(value[:-1] + ("A" if value[-1] != "A" else "B"), key) is None


def test_signed_mode_needs_a_real_unit_secret():
    with pytest.raises(ConfigError, match="unit_secret") as info:
        make_config(timeouts=SLOW_OK, unit_auth="signed")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="session_cookie"):
        make_config(timeouts=SLOW_OK, unit_auth="cookie")


async def test_plain_mode_trusts_the_caller_so_chosen_ids_pick_arms(backends, store, writer):
    """The hole this closes: in plain mode 20 chosen ids cover both arms (fine for a trusted server caller)."""
    async with serving(_app(make_config(timeouts=SLOW_OK), backends, store, writer)) as client:
        arms = {(await client.post("/search", json={"query": "cell", "unit_id": f"pick{i}"})).json()["arm"]
                for i in range(20)}
    assert arms == {"baseline", "finetuned"}


async def test_signed_mode_refuses_unsigned_and_forged_units(backends, store, writer):
    cfg = make_config(timeouts=SLOW_OK, unit_auth="signed", unit_secret=UNIT_SECRET)
    secret = UNIT_SECRET.encode()
    async with serving(_app(cfg, backends, store, writer)) as client:
        for i in range(20):
            unit = f"pick{i}"
            r = await client.post("/search", json={"query": "cell", "unit_id": unit})
            assert r.status_code == 403 and r.json()["error"] == "unsigned_unit"
            forged = sign_unit(unit, b"a guessed secret of enough length")
            r = await client.post("/search", json={"query": "cell", "unit_id": unit, "unit_sig": forged})
            assert r.status_code == 403 and r.json()["error"] == "forged_unit"
            # someone else's valid signature does not transfer to a chosen id
            r = await client.post("/search", json={"query": "cell", "unit_id": unit,
                                                   "unit_sig": sign_unit("user-1", secret)})
            assert r.status_code == 403
        ok = await client.post("/search", json={"query": "cell", "unit_id": "user-1",
                                                "unit_sig": sign_unit("user-1", secret)})
        assert ok.status_code == 200 and ok.json()["arm"] == assign("salt1", "user-1", W)
    assert [i.unit_id for i in store.impressions.values()] == ["user-1"]


async def test_cookie_mode_reissues_chosen_or_forged_cookies(backends, store, writer):
    cfg = make_config(timeouts=SLOW_OK, unit="session", unit_auth="cookie",
                      session_cookie={"name": "sid", "secure": False})
    async with serving(_app(cfg, backends, store, writer)) as client:
        r = await client.post("/search", json={"query": "cell", "unit_id": "pick1"})
        assert r.status_code == 400 and r.json()["error"] == "unit_id_not_accepted"
        chosen_units = set()
        for i in range(20):
            client.cookies.clear()
            client.cookies.set("sid", f"pick{i}")  # a chosen, unsigned cookie value
            r = await client.post("/search", json={"query": "cell"})
            assert r.status_code == 200
            assert r.json()["unit_id"] != f"pick{i}"
            assert read_cookie(r.cookies.get("sid"), cookie_key(TEST_TOKEN_SECRET.encode())) == r.json()["unit_id"]
            chosen_units.add(r.json()["unit_id"])
        assert len(chosen_units) == 20  # each got a fresh random unit
        # a forged signature on a chosen id is re-issued too; a genuine cookie keeps its unit and arm
        client.cookies.clear()
        client.cookies.set("sid", "pick1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        r1 = await client.post("/search", json={"query": "cell"})
        assert r1.json()["unit_id"] != "pick1"
        r2 = await client.post("/search", json={"query": "gene"})
        assert r2.json()["unit_id"] == r1.json()["unit_id"] and r2.json()["arm"] == r1.json()["arm"]
    assert not any(i.unit_id.startswith("pick") for i in store.impressions.values())
