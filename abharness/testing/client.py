"""Drive an ASGI app in-process: run its lifespan, hand back an ``httpx.AsyncClient`` over ``ASGITransport``.

``ASGITransport`` does not run lifespan events itself; ``serving`` enters the app's lifespan so the adapters
are built (and flushed/closed on exit) exactly as under uvicorn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

__all__ = ["serving"]


@asynccontextmanager
async def serving(app: FastAPI, *, base_url: str = "http://proxy.test") -> AsyncIterator[httpx.AsyncClient]:
    """Start ``app``'s lifespan and yield a client bound to it; shut the lifespan down on exit."""
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client:
            yield client
