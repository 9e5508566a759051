"""Store methods the trust features use, on SQLite and PostgreSQL: the probe's heartbeat write, has_click (a
click replayed after a restart), fingerprint_spans (redeploy check)."""

from __future__ import annotations

import json

from abharness.core.events import Click, Impression, ShownResult


def _imp(i: int, ts: float, model: str) -> Impression:
    return Impression(f"i{i}", "exp", ts, f"u{i}", "ft", "ab", "q", 3, (ShownResult("d1", 1, 1.0, "ft"),),
                      fingerprints={"ft": {"model": model, "index": "idx"}})


def test_probe_writes_heartbeat_and_has_click_and_fingerprint_spans(store) -> None:
    store.ping()
    store.ping()
    assert len(store.execute("SELECT replica FROM heartbeat")) == 1
    store.write_batch([_imp(1, 10.0, "m1"), _imp(2, 20.0, "m1"), _imp(3, 30.0, "m2"), _imp(4, 40.0, "m2"),
                       Click("i1", "exp", "u1", "ft", 11.0, "d1", 1, "ft")])
    assert store.has_click("i1", "d1") and not store.has_click("i2", "d1")
    spans = store.fingerprint_spans("exp")
    got = sorted((json.loads(f)["ft"]["model"], a, b, n) for f, a, b, n in spans)
    assert got == [("m1", 10.0, 20.0, 2), ("m2", 30.0, 40.0, 2)]
    assert [json.loads(f)["ft"]["model"] for f, *_ in store.fingerprint_spans("exp", since=25.0)] == ["m2"]
