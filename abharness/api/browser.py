"""What a web page needs from the proxy: CORS on the public routes, beacon bodies, the event script, a demo page.

- ``PublicCORSMiddleware``: Starlette's CORS handling for the routes a results page calls (``/search``, ``/click``,
  ``/events``, the script), configured by ``cors`` in the experiment file; other routes (admin, metrics) never
  answer a cross-origin preflight.
- ``BeaconMiddleware``: ``navigator.sendBeacon`` sends a string as ``text/plain``; for ``POST /events`` such a body
  is handed on as JSON, so one validated schema serves both content types.
- ``browser_router``: ``GET /static/abharness.js`` (always) and, with ``demo_page: true``, ``GET /demo`` (an
  example search page using the script) and ``GET /demo/doc/{doc_id}`` (the page a result links to).
"""

from __future__ import annotations

import html
from functools import lru_cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from abharness.config import CorsConfig

__all__ = [
    "PUBLIC_PATHS",
    "BeaconMiddleware",
    "PublicCORSMiddleware",
    "browser_router",
    "demo_page_html",
    "script_text",
]

#: Routes a browser on an allowed origin may call.
PUBLIC_PATHS = frozenset({"/search", "/click", "/events", "/static/abharness.js"})
_PROXY_PLACEHOLDER = "__ABHARNESS_PROXY__"


class PublicCORSMiddleware:
    """CORS (preflight answers and response headers) for ``PUBLIC_PATHS`` only."""

    def __init__(self, app: ASGIApp, cors: CorsConfig) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app, allow_origins=list(cors.allow_origins), allow_credentials=cors.allow_credentials,
            allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["content-type"], max_age=cors.max_age_s,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in PUBLIC_PATHS:
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class BeaconMiddleware:
    """Hand a ``text/plain`` body sent to ``POST /events`` (a beacon) on as ``application/json``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == "/events" and scope.get("method") == "POST":
            headers = scope.get("headers", [])
            if any(k == b"content-type" and v.split(b";")[0].strip().lower() == b"text/plain" for k, v in headers):
                fixed = [(k, b"application/json") if k == b"content-type" else (k, v) for k, v in headers]
                scope = {**scope, "headers": fixed}
        await self.app(scope, receive, send)


@lru_cache(maxsize=4)
def _resource(name: str) -> str:
    return (resources.files("abharness") / "resources" / "browser" / name).read_text(encoding="utf-8")


def script_text() -> str:
    """The event script served at /static/abharness.js."""
    return _resource("abharness.js")


def demo_page_html(proxy_url: str = "") -> str:
    """The example search page; ``proxy_url`` is the proxy's origin ("" when the proxy serves the page itself)."""
    return _resource("demo.html").replace(_PROXY_PLACEHOLDER, html.escape(proxy_url.rstrip("/"), quote=True))


browser_router = APIRouter(include_in_schema=False)


@browser_router.get("/static/abharness.js")
async def abharness_js() -> Response:
    return Response(script_text(), media_type="text/javascript; charset=utf-8",
                    headers={"Cache-Control": "public, max-age=300"})


def _demo_enabled(request: Request) -> bool:
    return bool(getattr(request.app.state.config, "demo_page", False))


_NOT_FOUND = HTMLResponse("<p>not found: set demo_page: true in the experiment file to serve /demo</p>",
                          status_code=404)


@browser_router.get("/demo")
async def demo(request: Request) -> HTMLResponse:
    if not _demo_enabled(request):
        return _NOT_FOUND
    return HTMLResponse(demo_page_html(""))


@browser_router.get("/demo/doc/{doc_id}")
async def demo_doc(doc_id: str, request: Request) -> HTMLResponse:
    if not _demo_enabled(request):
        return _NOT_FOUND
    safe = html.escape(doc_id)
    return HTMLResponse(f"<!doctype html><html><head><meta charset='utf-8'><title>{safe}</title></head><body>"
                        f"<h1 id='doc'>Document {safe}</h1><p>The page a result links to. Use the back button to "
                        "return to the results.</p></body></html>")
