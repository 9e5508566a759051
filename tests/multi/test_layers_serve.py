"""The proxy serving a layered file (abharness.serve.layered), through the real ASGI app: one impression row per
enrolled experiment, clicks credited to each through the signed token, the holdout's rows, targeting (SRM within the
targeted population), k from a layer, and start-up refusals."""

from __future__ import annotations

from collections import Counter

import pytest
from prometheus_client import CollectorRegistry
from scipy.stats import chisquare
from typer.testing import CliRunner

from abharness.api.app import create_app
from abharness.core.assignment import assign
from abharness.core.tokens import ImpressionClaims, sign, verify
from abharness.errors import ConfigError
from abharness.testing.client import serving
from abharness.testing.configs import TEST_TOKEN_SECRET, config_dict, make_config
from abharness.testing.fakes import InlineWriter

pytestmark = pytest.mark.anyio

K_LAYER = {"name": "depth", "salt": "depth-2026", "owns": ["k"], "experiments": [{
    "experiment_id": "k-test", "buckets": [0, 6000],
    "arms": [{"name": "k3", "role": "control", "params": {"k": 3}},
             {"name": "k7", "role": "treatment", "params": {"k": 7}}],
    "weights": {"k3": 0.5, "k7": 0.5}}]}
GERMAN = {"name": "main", "salt": "salt1/layer", "experiments": [{
    "experiment_id": "ft-de", "buckets": [5000, 10000], "targeting": {"locale": ["de-DE", "de-AT"]},
    "arms": [{"name": "c", "role": "control", "params": {"backend": "baseline"}},
             {"name": "t", "role": "treatment", "params": {"backend": "finetuned"}}],
    "weights": {"c": 0.5, "t": 0.5}}]}


def _app(cfg, backends, store):
    return create_app(cfg, registry=CollectorRegistry(), store=store, backends=backends, writer=InlineWriter(store))


async def _search(client, unit, **extra):
    r = await client.post("/search", json={"query": "cell study", "unit_id": unit, **extra})
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_layered_search_writes_one_row_per_enrolled_experiment_and_a_click_credits_each(backends, store):
    cfg = make_config(buckets=[0, 5000], layers=[K_LAYER, GERMAN], holdout={"salt": "h-1", "share": 0.1})
    design = cfg.design()
    app = _app(cfg, backends, store)
    async with serving(app) as client:
        for i in range(120):
            unit, ctx = f"u{i}", {"locale": "de-DE" if i % 2 else "fr-FR"}
            body = await _search(client, unit, context=ctx)
            a = design.assign(unit, ctx)
            base = body["impression_id"]
            want = {e.experiment_id: e.arm for e in a.enrollments} | {"holdout": "holdout" if a.holdout else "rest"}
            assert body["experiments"] == want
            rows = {i.impression_id: i for i in store.impressions.values() if i.context.get("impression") == base}
            ids = {r.experiment_id: r.impression_id for r in rows.values()}
            assert ids == {e: base if e == "exp1" else f"{base}~{e}" for e in want}
            for row in rows.values():
                assert row.arm == want[row.experiment_id]
                assert row.context["locale"] == ctx["locale"]
                assert row.context["layer"] == {"exp1": "main", "ft-de": "main", "k-test": "depth",
                                                "holdout": "holdout"}[row.experiment_id]
                assert row.results == rows[ids["holdout"]].results and row.k == len(row.results)
                assert row.query == "cell study" and row.latency_ms == rows[ids["holdout"]].latency_ms
            assert body["arm"] == a.params["backend"]  # the main layer's arm picked the index
            assert rows[ids["holdout"]].fingerprints == {body["arm"]: {
                "model": f"model-{body['arm']}", "index": backends[body["arm"]].info.index_fingerprint}}
            assert len(body["results"]) == a.params["k"] == rows[ids["holdout"]].k
            if i % 10 == 0:
                doc = body["results"][1]
                r = await client.post("/click", json={"impression_token": body["impression_token"],
                                                      "doc_id": doc["doc_id"], "position": 2})
                assert r.json() == {"status": "accepted", "impression_id": base}
                clicks = {(c.experiment_id, c.arm, c.impression_id) for c in store.clicks.values()
                          if c.impression_id.split("~")[0] == base}
                assert clicks == {(e, arm, ids[e]) for e, arm in want.items()}
                again = await client.post("/click", json={"impression_token": body["impression_token"],
                                                          "doc_id": doc["doc_id"], "position": 2})
                assert again.json()["status"] == "duplicate"
                r = await client.post("/events", json={"events": [{
                    "type": "seen", "impression_token": body["impression_token"], "doc_id": doc["doc_id"],
                    "position": 2}]})
                assert r.json()["accepted"] == 1
                seen = {(f.experiment_id, f.arm, f.impression_id) for f in store.feedback_rows.values()
                        if f.impression_id.split("~")[0] == base}
                assert seen == clicks
    counted = sum(app.state.registry.get_sample_value("abharness_impressions_total", {"arm": a}) or 0
                  for a in ("baseline", "finetuned"))
    assert counted == 120  # one per search, not one per row
    # every experiment was seen; held-out units were in nothing else
    by_exp = Counter(i.experiment_id for i in store.impressions.values())
    assert set(by_exp) == {"exp1", "ft-de", "k-test", "holdout"}
    held = {i.unit_id for i in store.impressions.values() if i.experiment_id == "holdout" and i.arm == "holdout"}
    assert held and not any(i.unit_id in held for i in store.impressions.values() if i.experiment_id != "holdout")


async def test_the_click_token_cannot_be_edited_to_credit_other_experiments(backends, store):
    cfg = make_config(layers=[K_LAYER])
    async with serving(_app(cfg, backends, store)) as client:
        body = await _search(client, "u1")
        claims = verify(body["impression_token"], TEST_TOKEN_SECRET.encode(), now=0.0 + 1)
        assert claims.enrollments and dict(claims.enrollments) == body["experiments"]
        forged = sign(ImpressionClaims(**{**{f: getattr(claims, f) for f in claims.__slots__},
                                          "enrollments": (("k-test", "k7"), ("other", "x"))}), b"not-the-secret")
        r = await client.post("/click", json={"impression_token": forged, "doc_id": body["results"][0]["doc_id"],
                                              "position": 1})
        assert r.status_code == 403 and r.json()["reason"] == "forged"
        assert not store.clicks


async def test_an_old_token_without_enrollments_still_credits_its_one_row(backends, store):
    cfg = make_config()
    async with serving(_app(cfg, backends, store)) as client:
        body = await _search(client, "u1")
        claims = verify(body["impression_token"], TEST_TOKEN_SECRET.encode(), now=1.0)
        assert claims.enrollments == ()
        # A token as signed before enrollments existed: the same payload, so byte-identical.
        assert sign(claims, TEST_TOKEN_SECRET.encode()) == body["impression_token"]
        await client.post("/click", json={"impression_token": body["impression_token"],
                                          "doc_id": body["results"][0]["doc_id"], "position": 1})
    [click] = store.clicks.values()
    assert (click.impression_id, click.experiment_id, click.arm) == (body["impression_id"], "exp1", body["arm"])


async def test_an_unlayered_file_serves_as_before(backends, store):
    cfg = make_config()
    async with serving(_app(cfg, backends, store)) as client:
        for i in range(40):
            body = await _search(client, f"u{i}")
            assert body["arm"] == assign("salt1", f"u{i}", cfg.ordered_weights()) and body["experiments"] is None
            row = store.impressions[body["impression_id"]]
            assert (row.experiment_id, row.arm, row.k) == ("exp1", body["arm"], 5)
            assert "layer" not in row.context and "impression" not in row.context
    assert len(store.impressions) == 40
    assert "config_statuses" not in store.audit[0].payload


async def test_k_from_a_layer_is_served_and_recorded_and_wins_over_the_request(backends, store):
    cfg = make_config(layers=[K_LAYER])
    design = cfg.design()
    async with serving(_app(cfg, backends, store)) as client:
        for i in range(60):
            body = await _search(client, f"u{i}", k=9)
            want = design.assign(f"u{i}").params["k"]  # 3 or 7 in the experiment, the file's k (5) outside
            assert len(body["results"]) == want
            assert {store.impressions[r].k for r in store.impressions if r.split("~")[0] == body["impression_id"]} \
                == {want}
            nxt = await _search(client, f"u{i}", k=9, page_token=body["page_token"])
            assert nxt["offset"] == want and len(nxt["results"]) == want
            by_number = await _search(client, f"u{i}", page=2)  # page n starts at (n - 1) x the layer's k
            assert by_number["offset"] == want and [r["doc_id"] for r in by_number["results"]] == [
                r["doc_id"] for r in nxt["results"]]


async def test_targeting_decides_before_assignment_and_srm_is_within_the_targeted_population(backends, store):
    # ft-de owns half of the main layer and targets two locales: non-matching units write no ft-de row and get the
    # default backend; among the targeted, ft-de's arms split 50/50 (chi-square against the bucket weights).
    cfg = make_config(buckets=[0, 5000], layers=[GERMAN])
    design = cfg.design()
    async with serving(_app(cfg, backends, store)) as client:
        for i in range(600):
            locale = ("de-DE", "de-AT", "fr-FR")[i % 3]
            body = await _search(client, f"t{i}", context={"locale": locale})
            if locale == "fr-FR":
                assert "ft-de" not in (body["experiments"] or {})
            if not body["experiments"]:  # in no experiment: served, not logged, no token
                assert body["impression_token"] is None and body["arm"] == "baseline"
    rows = [i for i in store.impressions.values() if i.experiment_id == "ft-de"]
    assert rows and all(r.context["locale"] in ("de-DE", "de-AT") for r in rows)
    targeted = [f"t{i}" for i in range(600) if i % 3 != 2 and design.assign(f"t{i}", {"locale": "de-DE"}).arm_in(
        "ft-de") is not None]
    assert sorted(r.unit_id for r in rows) == sorted(targeted)
    counts = Counter(r.arm for r in rows)
    assert chisquare([counts["c"], counts["t"]]).pvalue > 0.001  # SRM check passes within the targeted units
    logged_units = {i.unit_id for i in store.impressions.values()}
    assert len(logged_units) < 600  # fr-FR units outside exp1's buckets wrote nothing


def test_two_layers_choosing_the_backend_are_refused_at_start_with_one_line(tmp_path) -> None:
    import yaml

    from abharness.cli.main import build_app

    bad = {**K_LAYER, "owns": ["backend", "k"]}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config_dict(layers=[bad])))
    r = CliRunner().invoke(build_app(), ["serve", "--config", str(path)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "layers 'main' and 'depth' both choose the backend" in " ".join(r.output.split())
    assert r.output.count("\n") == 1, r.output  # one line


@pytest.mark.parametrize(("over", "message"), [
    ({"layers": [{"name": "rr", "salt": "rr", "owns": ["rerank"], "defaults": {"rerank": False}}]},
     "does not act on"),
    ({"mode": "interleave", "holdout": {"salt": "h", "share": 0.1}}, "mode ab only"),
    ({"holdout": {"salt": "h", "share": 0.1, "id": "exp1"}}, "holdout.id 'exp1' is also an experiment id"),
])
def test_what_the_proxy_cannot_serve_is_refused_by_create_app(backends, store, over, message) -> None:
    with pytest.raises(ConfigError, match=message):
        create_app(make_config(**over), store=store, backends=backends)


async def test_override_pause_and_fallback_of_a_layered_file(backends, store):
    from abharness.testing.configs import TEST_ADMIN_TOKEN
    from abharness.testing.fakes import DictBackend, tiny_corpus

    auth = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
    cfg = make_config(buckets=[0, 5000], layers=[K_LAYER, GERMAN])
    design = cfg.design()
    unit = next(f"o{i}" for i in range(1000) if design.assign(f"o{i}", {"locale": "de-DE"}).arm_in("ft-de") == "c")
    async with serving(_app(cfg, backends, store)) as client:
        # a QA override forces the backend and logs the unit in the top-level experiment with that arm
        await client.put(f"/admin/overrides/{unit}", headers=auth, json={"arm": "finetuned"})
        body = await _search(client, unit, context={"locale": "de-DE"})
        assert body["arm"] == "finetuned" and body["experiments"]["exp1"] == "finetuned"
        assert "ft-de" not in body["experiments"]
        assert store.impressions[body["impression_id"]].context["override"] == "finetuned"
        # a ramp of the top-level experiment reaches the layered design
        r = await client.put("/admin/allocation", headers=auth, json={"weights": {"baseline": 0.0, "finetuned": 1.0}})
        assert r.status_code == 200
        for i in range(30):
            got = (await _search(client, f"r{i}"))["experiments"] or {}
            assert got.get("exp1", "finetuned") == "finetuned"
        # paused: control, no row, no token
        n = len(store.impressions)
        await client.post("/admin/pause", headers=auth)
        body = await _search(client, "u1")
        assert body["impression_token"] is None and body["arm"] == "baseline" and len(store.impressions) == n
        await client.post("/admin/resume", headers=auth)
    # a failing treatment falls back to control; the rows keep the unit's arms and say fallback
    failing = {"baseline": backends["baseline"], "finetuned": DictBackend(tiny_corpus(40), name="ft", fail=True)}
    async with serving(_app(cfg, failing, store)) as client:
        unit = next(f"f{i}" for i in range(1000) if design.assign(f"f{i}").params["backend"] == "finetuned")
        body = await _search(client, unit)
        rows = [i for i in store.impressions.values() if i.context.get("impression") == body["impression_id"]]
        assert body["fallback"] is True and rows and all(r.fallback for r in rows)
        assert {r.experiment_id: r.arm for r in rows} == body["experiments"]
        assert all(set(r.fingerprints) == {"baseline"} for r in rows)
