"""Benchmark: size and render time of the results page for a demo-sized experiment (12,000 searches).

    .venv/bin/python loadtest/bench_results_page.py [--searches 12000] [--users-searches 10] [--out artifacts/bench/results-page]
        [--rebuild] [--no-browser]

The experiment is made the way ``make demo`` makes its A/B (stage 6): simulated users (the demo's DBN click model,
10 searches each, 3 sessions) run through the real proxy app (in-process ASGI) into a SQLite log, 50/50 A/B. The
arms are deterministic in-memory backends instead of the demo's FAISS indexes (the page depends on the report's
shape, not on the retrieval), so the run takes seconds and needs no model. The log is reused unless --rebuild.

Printed side by side, each timed in this process:
  analyze()                  the analysis the page shows (default options: 200-resample bootstrap, 8 looks)
  JSON (baseline)            ``json.dumps(report.to_dict())``: what ``analyze --json`` prints
  terminal tables (baseline) ``render_report`` into a rich console (what ``analyze`` prints)
  HTML page                  ``write_results_html`` (figures + Jinja2 template + file write)
  live UI                    ``GET /experiments/demo-ab`` on ``create_ui_app`` (first: analysis + page; then cached)
  Chromium                   headless Chromium: load the page from disk until every plotly figure drew its SVG
and the sizes of the JSON, the HTML page and plotly.min.js beside it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXPERIMENT = "demo-ab"


def build(db: Path, searches: int, per_user: int, seed: int = 0) -> None:
    from prometheus_client import CollectorRegistry

    from abharness.api.app import create_app
    from abharness.core.clickmodels import make_click_model
    from abharness.simulate import QueryPool, plan_traffic, run_simulation
    from abharness.testing.configs import make_config
    from abharness.testing.fakes import DictBackend, tiny_corpus

    corpus = tiny_corpus(400)
    topics = ["cell", "protein", "virus", "cancer", "gene", "brain", "heart", "immune", "drug", "blood"]
    queries, qrels = {}, {}
    for i, a in enumerate(topics):
        for b in topics[i + 1:]:
            q = f"q-{a}-{b}"
            queries[q] = f"{a} {b}"
            qrels[q] = {d: len({a, b} & set(t.split())) for d, t in corpus.items() if {a, b} & set(t.split())}
    pool = QueryPool.from_mappings(queries, qrels, zipf_s=1.0, seed=seed)
    users = -(-searches // per_user)
    plans = plan_traffic(pool, users=users, queries_per_user=per_user, sessions_per_user=3, seed=seed)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    cfg = make_config(store_url=f"sqlite:///{db}", mode="ab", k=10, experiment_id=EXPERIMENT)
    backends = {n: DictBackend(corpus, name=n) for n in ("baseline", "finetuned")}
    app = create_app(cfg, registry=CollectorRegistry(), backends=backends)
    result = run_simulation(app, plans, pool, make_click_model("dbn", preset="informational", max_grade=2), k=10,
                            concurrency=8, seed=seed, progress=True)
    print(f"built {db}: {result.searches:,} searches, {result.clicks_accepted:,} clicks, "
          f"{result.wall_seconds:.1f} s")


def _ui_timings(db: Path) -> tuple[float, float]:
    """GET /experiments/demo-ab on the live UI app (in-process ASGI): first request, then a cached one."""
    import anyio
    import httpx

    from abharness.api.ui import create_ui_app
    from abharness.stores import open_store

    store = open_store(f"sqlite:///{db}")
    app = create_ui_app(store, refresh_s=3_600)

    async def run() -> tuple[float, float]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ui") as c:
            out = []
            for _ in range(2):
                t = time.perf_counter()
                r = await c.get(f"/experiments/{EXPERIMENT}")
                r.raise_for_status()
                out.append(time.perf_counter() - t)
            return out[0], out[1]

    try:
        return anyio.run(run)
    finally:
        store.close()


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--searches", type=int, default=12_000)
    ap.add_argument("--users-searches", type=int, default=10, help="searches per simulated user (the demo's 10)")
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench" / "results-page")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()

    from rich.console import Console

    from abharness.analysis import analyze
    from abharness.analysis.render import render_report
    from abharness.report.results import write_results_html
    from abharness.stores import open_store

    args.out.mkdir(parents=True, exist_ok=True)
    db = args.out / f"events-{args.searches}.db"
    if args.rebuild or not db.is_file():
        build(db, args.searches, args.users_searches)
    store = open_store(f"sqlite:///{db}")
    try:
        counts = store.counts(EXPERIMENT)
        report, t_analyze = timed(lambda: analyze(store, EXPERIMENT))
    finally:
        store.close()
    payload = report.to_dict()
    js, t_json = timed(lambda: json.dumps(payload, indent=2, allow_nan=False))
    _, t_term = timed(lambda: render_report(report, Console(file=io.StringIO(), width=120)))
    page_dir = args.out / "page"
    (page_dir / "plotly.min.js").unlink(missing_ok=True)
    page, t_html_first = timed(lambda: write_results_html(payload, page_dir, generated_at=time.time()))
    _, t_html = timed(lambda: write_results_html(payload, page_dir, generated_at=time.time()))
    html_size, js_size = page.stat().st_size, (page_dir / "plotly.min.js").stat().st_size
    t_ui_cold, t_ui_warm = _ui_timings(db)
    t_browser = None
    if not args.no_browser:
        from abharness.testing.browser import browser, check_page, find_chromium

        exe = find_chromium()
        if exe is None:
            print("no chromium: browser timing skipped")
        else:
            with browser(exe) as b:
                check_page(b, page.as_uri(), args.out / "warmup.png")  # first launch of the renderer
                t = time.perf_counter()
                check = check_page(b, page.as_uri(), args.out / "results-page.png")
                t_browser = time.perf_counter() - t
                assert not check.problems, check.problems
                print(f"chromium drew {check.figures_with_svg}/{check.figures} figures; screenshot {check.screenshot}")
    print(f"\nexperiment {EXPERIMENT}: {counts['impressions']:,} impressions (searches), {counts['clicks']:,} clicks, "
          f"{sum(report.units.values()):,} units; decision {report.decision}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'step':<44}{'seconds':>10}{'bytes':>14}")
    print(f"{'analyze() (default options)':<44}{t_analyze:>10.2f}{'':>14}")
    print(f"{'JSON report (baseline: analyze --json)':<44}{t_json:>10.3f}{len(js.encode()):>14,}")
    print(f"{'terminal tables (baseline: analyze)':<44}{t_term:>10.3f}{'':>14}")
    print(f"{'HTML page, first write (+ plotly.min.js)':<44}{t_html_first:>10.3f}{html_size + js_size:>14,}")
    print(f"{'HTML page, rewrite (index.html only)':<44}{t_html:>10.3f}{html_size:>14,}")
    print(f"{'  plotly.min.js beside it':<44}{'':>10}{js_size:>14,}")
    print(f"{'live UI page, first request (analysis + page)':<44}{t_ui_cold:>10.2f}{'':>14}")
    print(f"{'live UI page, within --refresh (cached)':<44}{t_ui_warm:>10.3f}{'':>14}")
    if t_browser is not None:
        print(f"{'Chromium: load from disk until all drawn':<44}{t_browser:>10.2f}{'':>14}")
    print(f"page: {page}")


if __name__ == "__main__":
    main()
