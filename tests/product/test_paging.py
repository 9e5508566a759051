"""Result pages: /search with offset/page/page_token answers the next slice from the same arm; in interleave mode
the pages continue one interleaved list (no repeats, no misses); positions are absolute in the log and the token."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry

from abharness.api.app import create_app
from abharness.core.assignment import assign
from abharness.core.interleaving import team_draft
from abharness.core.paging import interleaved_page
from abharness.testing.client import serving
from abharness.testing.configs import make_config
from abharness.testing.fakes import DictBackend

# generous backend timeouts: a loaded CI machine must not turn a slow fake backend into a fallback
SLOW_OK = {"control_s": 20.0, "treatment_s": 20.0}

pytestmark = pytest.mark.anyio
QUERY = "cell protein virus"


class Reranking(DictBackend):
    """A backend whose ranking depends on the depth asked for (like approximate search): beyond the top 3 the
    order is shuffled by k, so a deeper ranking's prefix is not the shallower one."""

    def search(self, queries, k):
        out = []
        for hits in super().search(queries, k):
            head, tail = hits[:3], hits[3:]
            random.Random(k).shuffle(tail)
            out.append([*head, *tail])
        return out


def _app(cfg, backends, store, writer):
    return create_app(cfg, registry=CollectorRegistry(), store=store, backends=backends, writer=writer)


async def _pages(client, unit: str, n: int, k: int, *, by: str = "token") -> list[dict]:
    pages, token = [], None
    for p in range(1, n + 1):
        body: dict = {"query": QUERY, "unit_id": unit, "k": k}
        if p > 1 and by == "token":
            body = {"query": QUERY, "unit_id": unit, "page_token": token}
        elif p > 1 and by == "page":
            body["page"] = p
        r = await client.post("/search", json=body)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        token = r.json()["page_token"]
    return pages


@pytest.mark.parametrize("by", ["token", "page"])
async def test_ab_pages_are_consecutive_slices_of_the_same_arm(backends, store, writer, by):
    cfg = make_config(timeouts=SLOW_OK, k=5)
    async with serving(_app(cfg, backends, store, writer)) as client:
        for unit in ("u1", "u2", "u3", "u4"):
            pages = await _pages(client, unit, 4, 5, by=by)
            arm = assign("salt1", unit, {"baseline": 0.5, "finetuned": 0.5})
            assert {p["arm"] for p in pages} == {arm}
            shown = [r["doc_id"] for p in pages for r in p["results"]]
            full = [h.doc_id for h in backends[arm].search([QUERY], 20)[0]]
            assert shown == full  # no repeat, no miss
            assert [r["position"] for p in pages for r in p["results"]] == list(range(1, 21))
            assert [p["offset"] for p in pages] == [0, 5, 10, 15]
            # a click on page 3 is accepted at its absolute position, refused at the in-page one
            third = pages[2]
            ok = await client.post("/click", json={"impression_token": third["impression_token"],
                                                   "doc_id": third["results"][1]["doc_id"], "position": 12})
            assert ok.status_code == 200
            bad = await client.post("/click", json={"impression_token": third["impression_token"],
                                                    "doc_id": third["results"][0]["doc_id"], "position": 1})
            assert bad.status_code == 422
    imps = [i for i in store.impressions.values() if i.unit_id == "u1"]
    assert sorted((i.k, i.results[0].position) for i in imps) == [(5, 1), (10, 6), (15, 11), (20, 16)]
    later = [i for i in imps if i.results[0].position > 1]
    assert all(i.context["page_offset"] == i.results[0].position - 1 for i in later)
    clicks = [c for c in store.clicks.values() if c.unit_id == "u1"]
    assert [c.position for c in clicks] == [12]


async def test_a_page_token_keeps_the_arm_after_a_ramp(backends, store, writer):
    cfg = make_config(timeouts=SLOW_OK, k=5, weights={"baseline": 0.9, "finetuned": 0.1})
    async with serving(_app(cfg, backends, store, writer)) as client:
        unit = next(u for u in (f"u{i}" for i in range(200))
                    if assign("salt1", u, {"baseline": 0.9, "finetuned": 0.1}) == "baseline"
                    and assign("salt1", u, {"baseline": 0.1, "finetuned": 0.9}) == "finetuned")
        first = (await client.post("/search", json={"query": QUERY, "unit_id": unit})).json()
        r = await client.put("/admin/allocation", json={"weights": {"baseline": 0.1, "finetuned": 0.9}},
                             headers={"Authorization": "Bearer a-very-long-admin-token-for-tests"})
        assert r.status_code == 200, r.text
        second = (await client.post("/search", json={"query": QUERY, "unit_id": unit,
                                                     "page_token": first["page_token"]})).json()
        assert first["arm"] == second["arm"] == "baseline"
        # the token is bound to its query and unit
        r = await client.post("/search", json={"query": "other", "unit_id": unit, "page_token": first["page_token"]})
        assert r.status_code == 403 and r.json()["error"] == "invalid_page_token"
        r = await client.post("/search", json={"query": QUERY, "unit_id": "zz", "page_token": first["page_token"]})
        assert r.status_code == 403
        r = await client.post("/search", json={"query": QUERY, "unit_id": unit, "offset": 7,
                                               "page_token": first["page_token"]})
        assert r.status_code == 422 and r.json()["error"] == "page_mismatch"
        r = await client.post("/search", json={"query": QUERY, "unit_id": unit, "offset": 5000})
        assert r.status_code == 422 and "max_offset" in r.json()["detail"]


@pytest.mark.parametrize("rerank", [False, True])
async def test_interleaved_pages_continue_one_list(corpus, store, writer, rerank):
    cls = Reranking if rerank else DictBackend
    backends = {"baseline": cls(corpus, name="baseline"), "finetuned": cls(corpus, name="finetuned")}
    cfg = make_config(timeouts=SLOW_OK, mode="interleave", k=6)
    async with serving(_app(cfg, backends, store, writer)) as client:
        r = await client.post("/search", json={"query": QUERY, "unit_id": "u1", "page": 2})
        assert r.status_code == 422 and r.json()["error"] == "page_token_required"
        for unit in ("u1", "u2", "u3"):
            pages = await _pages(client, unit, 5, 6)
            pairs = [(x["doc_id"], x["team"]) for p in pages for x in p["results"]]
            docs = [d for d, _ in pairs]
            assert len(docs) == len(set(docs)) == 30  # never a document twice
            assert [x["position"] for p in pages for x in p["results"]] == list(range(1, 31))
            teams = [t for _, t in pairs]
            assert abs(teams.count("baseline") - teams.count("finetuned")) <= 1
            first_id = pages[0]["impression_id"]
            if not rerank:
                # exactly the interleaved list of depth 30 from the first page's seed: nothing missed
                rankings = {n: [h.doc_id for h in b.search([QUERY], 30)[0]] for n, b in backends.items()}
                assert pairs == team_draft(rankings, 30, random.Random(first_id))
            else:
                # the deeper rankings re-ordered: each page is a team-draft continuation of what was shown
                for i, p in enumerate(pages[1:], start=1):
                    depth = 6 * (i + 1)
                    rankings = {n: [h.doc_id for h in b.search([QUERY], depth)[0]] for n, b in backends.items()}
                    got = [(x["doc_id"], x["team"]) for x in p["results"]]
                    assert got == interleaved_page(rankings, 6 * i, 6, first_id, pairs[:6 * i])
            imps = sorted((i for i in store.impressions.values() if i.unit_id == unit), key=lambda i: i.k)
            assert [i.k for i in imps] == [6, 12, 18, 24, 30]
            assert all(i.context.get("first_impression_id", i.impression_id) == first_id for i in imps)
            # a click on page 4 is credited to the team that showed it, at its absolute position
            p4 = pages[3]["results"][2]
            r = await client.post("/click", json={"impression_token": pages[3]["impression_token"],
                                                  "doc_id": p4["doc_id"], "position": p4["position"]})
            assert r.status_code == 200 and p4["position"] == 21
            click = store.clicks[(pages[3]["impression_id"], p4["doc_id"])]
            assert click.team == p4["team"] and click.position == 21


async def test_interleave_fallback_on_page_one_continues_control(corpus, store, writer):
    backends = {"baseline": DictBackend(corpus, name="baseline"),
                "finetuned": DictBackend(corpus, name="finetuned", fail=True)}
    cfg = make_config(timeouts=SLOW_OK, mode="interleave", k=5)
    async with serving(_app(cfg, backends, store, writer)) as client:
        pages = await _pages(client, "u1", 3, 5)
    assert all(p["fallback"] for p in pages)
    docs = [x["doc_id"] for p in pages for x in p["results"]]
    assert docs == [h.doc_id for h in backends["baseline"].search([QUERY], 15)[0]]


def test_team_draft_prior_never_repeats_and_balances():
    rng = random.Random(3)
    rankings = {"a": [f"d{i}" for i in range(40)], "b": [f"d{(i * 7) % 40}" for i in range(40)]}
    prior = team_draft(rankings, 9, random.Random(1))
    more = team_draft(rankings, 9, rng, prior=prior)
    assert not {d for d, _ in prior} & {d for d, _ in more}
    teams = [t for _, t in prior + more]
    assert abs(teams.count("a") - teams.count("b")) <= 1
