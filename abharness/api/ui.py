"""``create_ui_app(store)``: the live, read-only results pages of every experiment in a store (``abharness ui``).

    GET /                          the experiments in the store, with their last decision
    GET /experiments/{id}          the results page (same template as ``analyze --html``) + allocation + audit log
    GET /experiments/{id}.json     the AnalysisReport the page shows, as ``analyze --json`` prints it
    GET /plotly.min.js             plotly from the installed package (no CDN)
    GET /healthz                   liveness

Only GET routes exist (any other method gets 405): nothing here writes to the store. Pages reload themselves every ``refresh_s`` seconds; an
analysis is reused for ``refresh_s`` seconds per experiment, so many open tabs cost one analysis per period. The
store is injected and owned by the caller (the CLI opens and closes it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response

from abharness.core.events import AuditEntry
from abharness.errors import AbharnessError
from abharness.stores.base import EventStore

__all__ = ["create_ui_app", "current_allocation"]


def current_allocation(entries: Sequence[AuditEntry]) -> dict[str, Any] | None:
    """The allocation the proxy applies now, folded from the audit log (oldest first): the weights of the last
    ``serve_start`` (effective weights) or ``allocation`` entry, and whether traffic is paused or killed."""
    out: dict[str, Any] | None = None
    paused = killed = False
    for e in entries:
        weights = (e.payload.get("effective_weights") if e.action == "serve_start" else
                   e.payload.get("weights") if e.action == "allocation" else None)
        if isinstance(weights, dict) and weights:
            total = sum(float(v) for v in weights.values()) or 1.0
            out = {"weights": {k: float(v) / total for k, v in weights.items()}, "action": e.action, "ts": e.ts}
        paused = {"pause": True, "resume": False}.get(e.action, paused)
        killed = {"kill": True, "unkill": False}.get(e.action, killed)
    if out is not None:
        out.update(paused=paused, killed=killed)
    return out


def _audit_rows(entries: Sequence[AuditEntry], limit: int = 200) -> list[list[str]]:
    from abharness.report.templating import fmt_datetime

    rows = []
    for e in list(entries)[::-1][:limit]:
        detail = ", ".join(f"{k}={v}" for k, v in e.payload.items())
        rows.append([fmt_datetime(e.ts), e.actor, e.action, detail])
    return rows


def create_ui_app(
    store: EventStore,
    *,
    analyze: Callable[[EventStore, str], Any] | None = None,
    refresh_s: float = 30.0,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The read-only UI over ``store``. ``analyze(store, experiment_id)`` returns an ``AnalysisReport`` (default:
    :func:`abharness.analysis.analyze` with default options)."""
    from abharness.report.results import results_context
    from abharness.report.templating import plotly_js, render

    if analyze is None:
        from abharness.analysis import analyze as default_analyze

        def analyze(st: EventStore, experiment_id: str) -> Any:
            return default_analyze(st, experiment_id)

    run = analyze
    cache: dict[str, tuple[float, dict[str, Any] | None, str | None]] = {}
    contexts: dict[str, tuple[float, dict[str, Any]]] = {}  # the page's figures and tables, per analysis
    locks: dict[str, threading.Lock] = {}
    guard = threading.Lock()
    app = FastAPI(title="abharness results", docs_url=None, redoc_url=None, openapi_url=None)

    def report_for(experiment_id: str) -> tuple[float, dict[str, Any] | None, str | None]:
        """(computed at, report dict or None, error message or None), recomputed at most every refresh_s."""
        with guard:
            lock = locks.setdefault(experiment_id, threading.Lock())
        with lock:
            hit = cache.get(experiment_id)
            now = clock()
            if hit is not None and now - hit[0] < refresh_s:
                return hit
            try:
                value = (now, run(store, experiment_id).to_dict(), None)
            except AbharnessError as exc:
                value = (now, None, str(exc))
            cache[experiment_id] = value
            return value

    def page(title: str, message: str, status: int) -> HTMLResponse:
        html = render("ui_message.html.j2", title=title, message=message, refresh_s=refresh_s,
                      plotly_src="/plotly.min.js", nav=[], store=store.url)
        return HTMLResponse(html, status_code=status)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/plotly.min.js", include_in_schema=False)
    async def plotly() -> Response:
        return Response(plotly_js(), media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        experiments = await anyio.to_thread.run_sync(store.experiments)
        rows = []
        for exp in experiments:
            counts = await anyio.to_thread.run_sync(lambda e=exp: store.counts(e))
            hit = cache.get(exp)
            decision = (hit[1] or {}).get("decision") if hit else None
            rows.append({"id": exp, "impressions": counts.get("impressions", 0), "clicks": counts.get("clicks", 0),
                         "decision": decision, "error": hit[2] if hit else None})
        html = render("ui_index.html.j2", title="abharness: experiments", subtitle=f"store {store.url}",
                      experiments=rows, refresh_s=refresh_s, plotly_src="/plotly.min.js", generated_at=clock())
        return HTMLResponse(html)

    async def _known(experiment_id: str) -> bool:
        return experiment_id in await anyio.to_thread.run_sync(store.experiments)

    @app.get("/experiments/{experiment_id}.json")
    async def experiment_json(experiment_id: str) -> JSONResponse:
        if not await _known(experiment_id):
            return JSONResponse({"error": f"no experiment {experiment_id!r} in {store.url}"}, status_code=404)
        _, report, error = await anyio.to_thread.run_sync(report_for, experiment_id)
        if report is None:
            return JSONResponse({"error": error}, status_code=409)
        return JSONResponse(report)

    @app.get("/experiments/{experiment_id}", response_class=HTMLResponse)
    async def experiment_page(experiment_id: str) -> HTMLResponse:
        if not await _known(experiment_id):
            return page("unknown experiment", f"no experiment {experiment_id!r} with impressions in {store.url}; "
                        "see the list of experiments at /", 404)
        at, report, error = await anyio.to_thread.run_sync(report_for, experiment_id)
        if report is None:
            return page(f"experiment {experiment_id}", f"cannot analyse yet: {error}", 200)
        entries = await anyio.to_thread.run_sync(store.audit_log, experiment_id)
        live = {"store": store.url, "index": "/", "allocation": current_allocation(entries),
                "audit": _audit_rows(entries)}

        def html() -> str:
            built = contexts.get(experiment_id)
            if built is None or built[0] != at:  # figures are drawn once per analysis, not once per request
                built = (at, results_context(report, generated_at=at, live=live))
                contexts[experiment_id] = built
            return render("results.html.j2", **{**built[1], "live": live}, plotly_src="/plotly.min.js",
                          refresh_s=refresh_s)

        return HTMLResponse(await anyio.to_thread.run_sync(html))

    return app
