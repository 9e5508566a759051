"""A real browser (Debian's Chromium, headless, via Playwright) on the proxy's demo page: type queries, click
results, go to the result page and come back, and check the store holds exactly those clicks, their dwell times,
and the results that were scrolled into view. Once same-origin (/demo), once from another origin (CORS + cookie)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from prometheus_client import CollectorRegistry

from abharness.api.app import create_app
from abharness.api.browser import demo_page_html
from abharness.simulate.live import serve_in_thread
from abharness.stores import open_store
from abharness.testing.configs import make_config
from abharness.testing.fakes import DictBackend, tiny_corpus

from .browser import chromium_page

# generous backend timeouts: a loaded CI machine must not turn a slow fake backend into a fallback
SLOW_OK = {"control_s": 20.0, "treatment_s": 20.0}

pytestmark = pytest.mark.slow

VISIBLE_JS = """() => Array.from(document.querySelectorAll('li.result')).map(li => {
  const r = li.getBoundingClientRect();
  const visible = Math.max(0, Math.min(r.bottom, window.innerHeight) - Math.max(r.top, 0));
  return [parseInt(li.dataset.abhPosition), visible / r.height];
})"""


def _proxy(db: Path, **cfg):
    corpus = tiny_corpus(60)
    backends = {"baseline": DictBackend(corpus, name="baseline"), "finetuned": DictBackend(corpus, name="finetuned")}
    config = make_config(timeouts=SLOW_OK, unit="session", session_cookie={"name": "abh_sid", "secure": False},
                         k=8, demo_page=True,
                         store_url=f"sqlite:///{db}", events={"flush_interval_s": 0.05}, **cfg)
    return create_app(config, registry=CollectorRegistry(), backends=backends)


def _search(page, query: str) -> list[tuple[int, float]]:
    page.fill("#q", query)
    page.press("#q", "Enter")
    page.wait_for_function("q => document.querySelectorAll('li.result').length > 0 && "
                           "document.getElementById('status').textContent.startsWith('page')", arg=query)
    page.wait_for_timeout(400)  # let IntersectionObserver report
    return page.evaluate(VISIBLE_JS)


def _click_and_return(page, position: int, away_s: float) -> tuple[str, float, float]:
    """Click the result at ``position``, stay ``away_s`` on the result page, come back; (doc, lower, upper) in ms."""
    li = page.locator(f"li.result[data-abh-position='{position}']")
    doc = li.get_attribute("data-abh-doc")
    t0 = time.monotonic()
    li.locator("a").click()
    page.wait_for_selector("#doc")
    t_doc = time.monotonic()  # the click happened before this
    time.sleep(away_s)
    t_back = time.monotonic()
    page.go_back()
    page.wait_for_selector("li.result")
    page.wait_for_timeout(300)
    t1 = time.monotonic()
    return doc, (t_back - t_doc) * 1000.0 - 20.0, (t1 - t0) * 1000.0 + 20.0


def _run_session(page, url: str) -> dict:
    visible = {}
    visible["cell protein"] = _search(page, "cell protein")
    clicked = [("cell protein", 2, *_click_and_return(page, 2, 1.2))]
    visible["virus gene study"] = _search(page, "virus gene study")
    clicked.append(("virus gene study", 1, *_click_and_return(page, 1, 0.6)))
    # page 2 of the same query: positions continue (9..16), a click there is logged at its absolute position
    page.click("#next")
    page.wait_for_function("() => document.querySelectorAll('li.result').length === 16")
    clicked.append(("virus gene study", 11, *_click_and_return(page, 11, 0.4)))
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_timeout(400)
    page.goto("about:blank")  # pagehide flushes whatever is queued
    return {"visible": visible, "clicked": clicked}


def _check_store(db: Path, session: dict) -> dict:
    store = open_store(f"sqlite:///{db}")
    try:
        clicks = store.execute("SELECT c.doc_id, c.position, c.dwell_ms, i.query, i.unit_id FROM clicks c "
                               "JOIN impressions i USING (impression_id) ORDER BY c.ts")
        feedback = store.feedback("exp1")
        imps = store.execute("SELECT impression_id, query, unit_id FROM impressions ORDER BY ts")
    finally:
        store.close()
    pos11 = [i for i, q, _ in imps if q == "virus gene study"]
    assert len(pos11) >= 3  # page 1, page 2, and the page shown again on coming back
    # exactly the clicks made, at the positions clicked, each with a dwell within the measured bounds
    assert [(c[3], c[1], c[0]) for c in clicks] == [(q, pos, doc) for q, pos, doc, _, _ in session["clicked"]]
    for (doc, pos, dwell, query, _), (_, _, _, lower, upper) in zip(clicks, session["clicked"]):
        assert dwell is not None and lower <= dwell <= upper, (query, dwell, lower, upper)
    dwells = [f for f in feedback if f.kind == "dwell"]
    assert [(f.doc_id, f.value) for f in dwells] == [(c[0], c[2]) for c in clicks]
    # one browser = one proxy-issued session: every impression has the same unit
    assert len({u for _, _, u in imps}) == 1
    # results seen: those at least 60 % in view right after the first search were reported, none under 40 %
    first = next(i for i, q, _ in imps if q == "cell protein")
    seen_first = {f.position for f in feedback if f.kind == "seen" and f.impression_id == first}
    ratios = dict(session["visible"]["cell protein"])
    assert {p for p, r in ratios.items() if r >= 0.6} <= seen_first
    assert not {p for p, r in ratios.items() if r < 0.4} & seen_first
    return {"clicks": clicks, "seen": sum(f.kind == "seen" for f in feedback), "impressions": len(imps)}


def test_browser_demo_page_same_origin(tmp_path):
    db = tmp_path / "events.db"
    with serve_in_thread(_proxy(db)) as url, chromium_page(height=420) as page:
        js_errors: list[str] = []
        page.on("pageerror", lambda e: js_errors.append(str(e)))
        page.goto(url + "/demo")
        session = _run_session(page, url)
        assert not js_errors, js_errors
    out = _check_store(db, session)
    assert out["impressions"] >= 2 and out["seen"] >= 2
    print("same-origin browser run:", out)


def test_browser_page_on_another_origin_uses_cors_and_the_session_cookie(tmp_path):
    db = tmp_path / "events.db"
    holder: dict[str, str] = {}
    site = FastAPI()

    @site.get("/search-page")
    async def search_page() -> HTMLResponse:
        return HTMLResponse(demo_page_html(holder["proxy"]))

    with serve_in_thread(site) as site_url:
        proxy = _proxy(db, cors={"allow_origins": [site_url]})  # the page's origin must be known first
        with serve_in_thread(proxy) as proxy_url, chromium_page(height=420) as page:
            holder["proxy"] = proxy_url
            failed: list[str] = []
            page.on("requestfailed", lambda r: failed.append(f"{r.method} {r.url} {r.failure}"))
            page.goto(site_url + "/search-page")
            session = _run_session(page, site_url)
            assert not [f for f in failed if "/search" in f], failed
    out = _check_store(db, session)
    print("cross-origin browser run:", out)
