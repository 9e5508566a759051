"""``create_index_server_app(backend)``: serve one arm's index over HTTP for ``RemoteBackend``.

The backend is injected (already loaded) or opened in the lifespan by ``opener``; nothing at import time. Search
calls run in worker threads so a local backend's micro-batcher sees concurrent queries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from abharness.backends.base import SearchBackend

__all__ = ["create_index_server_app", "IndexSearchRequest"]


class IndexSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[str] = Field(min_length=1, max_length=256)
    k: int = Field(10, ge=1, le=1000)


def create_index_server_app(
    backend: SearchBackend | None = None,
    *,
    opener: Callable[[], SearchBackend] | None = None,
    max_query_chars: int = 1000,
) -> FastAPI:
    """An app serving ``backend`` (or the one ``opener`` returns at start-up, closed at shutdown)."""
    if (backend is None) == (opener is None):
        raise ValueError("pass exactly one of backend= or opener=")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = None
        if backend is None and opener is not None:
            opened = await anyio.to_thread.run_sync(opener)
        app.state.backend = backend or opened
        try:
            yield
        finally:
            app.state.backend = None
            if opened is not None:
                opened.close()

    app = FastAPI(title="abharness index server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.backend = None
    from abharness.api.app import install_error_handlers
    from abharness.api.docs import install_offline_docs

    install_error_handlers(app)
    install_offline_docs(app)

    def _backend(request: Request) -> SearchBackend | None:
        return getattr(request.app.state, "backend", None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        if _backend(request) is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/info")
    async def info(request: Request) -> Any:
        b = _backend(request)
        if b is None:
            return JSONResponse({"error": "not_ready", "detail": "index still loading"}, status_code=503)
        i = b.info
        return {"model_fingerprint": i.model_fingerprint, "index_fingerprint": i.index_fingerprint,
                "num_docs": i.num_docs, "dim": i.dim}

    @app.post("/search")
    async def search(body: IndexSearchRequest, request: Request) -> Any:
        b = _backend(request)
        if b is None:
            return JSONResponse({"error": "not_ready", "detail": "index still loading"}, status_code=503)
        too_long = [i for i, q in enumerate(body.queries) if len(q) > max_query_chars]
        if too_long:
            return JSONResponse(
                {"error": "query_too_long",
                 "detail": f"queries.{too_long[0]} exceeds the limit of {max_query_chars} characters"},
                status_code=422,
            )
        hits = await anyio.to_thread.run_sync(b.search, body.queries, body.k)
        return {"results": [[{"doc_id": h.doc_id, "score": h.score, "title": h.title} for h in row] for row in hits]}

    return app
