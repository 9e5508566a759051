"""``create_app(config)``: the proxy's FastAPI app. Everything (store, writer, backends, state, service) is built
in the lifespan and put on ``app.state``; nothing is created at import time, so every test gets a fresh app with
its own Prometheus registry.

Shutdown order (SIGTERM under uvicorn): stop accepting requests (uvicorn), wait for in-flight shadow rankings,
close the writer (flushes every accepted event), close the backends and the store this app opened. Injected
adapters (``store=``, ``backends=``, ``writer=``) belong to the caller and are not closed here.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from abharness.api.admin import admin_router
from abharness.api.admin_layers import lifecycle_router
from abharness.api.openapi import install_openapi
from abharness.api.browser import BeaconMiddleware, PublicCORSMiddleware, browser_router
from abharness.api.docs import install_offline_docs
from abharness.api.fast import FastSearchMiddleware
from abharness.api.routes import RequestError, router
from abharness.backends.base import SearchBackend
from abharness.backends.factory import UnavailableBackend, build_backends, open_arm_backend
from abharness.config import ExperimentConfig
from abharness.config_layers import refuse_unserved
from abharness.core.tokens import InvalidToken
from abharness.errors import AbharnessError, BackendError, ConfigError, StoreError, TokenError
from abharness.observability.metrics import ProxyMetrics, WriterStats
from abharness.serve.service import ControlUnavailable, ProxyService, QueueFull
from abharness.serve.state import restore_state
from abharness.stores.base import EventStore

__all__ = ["create_app", "install_error_handlers", "BodyLimitMiddleware"]

log = logging.getLogger(__name__)


async def _admin_sync_loop(service: ProxyService, interval_s: float) -> None:
    """Re-read the shared audit log every ``interval_s`` so admin changes made on another replica apply here too.

    A store error is logged and retried at the next tick; routing never waits on this loop.
    """
    while True:
        await asyncio.sleep(interval_s)
        try:
            applied = await service.sync_from_audit()
            if applied:
                log.info("applied %d admin change(s) made on another replica", applied)
        except Exception as exc:  # noqa: BLE001 - the loop must survive a store outage
            log.warning("admin sync: cannot read the audit log (%s); retrying in %.1f s", exc, interval_s)


WARM_UP_QUERY = "warm up"


async def warm_up(config: ExperimentConfig, backends: Mapping[str, SearchBackend]) -> None:
    """Run one search on every open backend before the app reports ready, so the first real searches do not pay
    for lazy loading (encoder kernels, micro-batch thread, connection pool) and time out into a fallback.

    A backend that fails its warm-up is logged (it opened, so it is failing rather than absent: /readyz and the
    searches report it as usual).
    """
    for name, backend in backends.items():
        if isinstance(backend, UnavailableBackend):
            continue
        t0 = time.perf_counter()
        try:
            await anyio.to_thread.run_sync(backend.search, [WARM_UP_QUERY], config.k)
        except Exception as exc:  # noqa: BLE001 - a failing (not absent) arm: reported by /readyz and the searches
            log.warning("arm %r failed its warm-up search (%s)", name, exc)
            continue
        log.info("arm %r warmed up in %.2f s", name, time.perf_counter() - t0)


async def _reconnect_loop(service: ProxyService, config: ExperimentConfig, arm: str) -> None:
    """Open an arm that was unavailable at start, retrying with backoff (1 s doubling to 30 s), then swap it in."""
    delay = 1.0
    while True:
        await asyncio.sleep(delay)
        try:
            backend = await anyio.to_thread.run_sync(open_arm_backend, config, arm)
        except Exception as exc:  # noqa: BLE001 - retried; the arm stays unavailable meanwhile
            log.debug("arm %r still unavailable: %s", arm, exc)
            delay = min(30.0, delay * 2)
            continue
        await warm_up(config, {arm: backend})
        service.replace_backend(arm, backend)
        log.warning("treatment arm %r is available again; routing to it", arm)
        return


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 naming the limit (checks Content-Length and the stream)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: int | str) -> JSONResponse:
        return JSONResponse(
            {"error": "body_too_large",
             "detail": f"request body is {size} bytes; the limit is limits.max_body_bytes={self.max_bytes}"},
            status_code=413,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
        if length is not None:
            if length > self.max_bytes:
                await self._too_large(length)(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server enforces the declared length
            return
        # No Content-Length (chunked): read the body up to the limit, then replay it to the app.
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await self._too_large(f"more than {self.max_bytes}")(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def writer_stats(w: Any) -> WriterStats:
    """Read a writer's counters (the ``EventWriter`` surface; fakes may lack the newer ones)."""
    return WriterStats(
        w.queue_depth, w.dropped, w.written, failed_batches=getattr(w, "failed_batches", 0),
        spooled=getattr(w, "spooled", 0), quarantined=getattr(w, "quarantined", 0), lost=getattr(w, "lost", 0),
        store_up=0 if getattr(w, "state", "healthy") != "healthy" else 1,
    )


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


def _log_with_id(request: Request, exc: BaseException) -> str:
    """Log ``exc`` (which may name internal URLs and upstream replies) under a fresh id the client can quote."""
    error_id = uuid.uuid4().hex[:12]
    log.warning("%s %s failed (error id %s): %s", request.method, request.url.path, error_id, exc)
    return error_id


def install_error_handlers(app: FastAPI) -> None:
    """Turn validation and domain errors into 4xx/503 JSON bodies naming the field or the limit (never a 500 for
    bad input). Body: {"error": code, "detail": message, ...}."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(e.get("loc", ())), "message": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return JSONResponse({"error": "invalid_request", "detail": detail, "errors": errors}, status_code=422)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status, headers=headers)

    @app.exception_handler(InvalidToken)
    async def _token(request: Request, exc: InvalidToken) -> JSONResponse:
        status = 403 if exc.reason in ("forged", "expired") else 422
        return JSONResponse({"error": "invalid_click", "reason": exc.reason, "detail": str(exc)}, status_code=status)

    @app.exception_handler(ControlUnavailable)
    async def _control(request: Request, exc: ControlUnavailable) -> JSONResponse:
        error_id = _log_with_id(request, exc)
        return JSONResponse(
            {"error": "control_unavailable", "error_id": error_id,
             "detail": f"the control arm {exc.arm!r} could not serve this search; retry later (error id {error_id})"},
            status_code=503, headers={"Retry-After": "1"},
        )

    @app.exception_handler(QueueFull)
    async def _queue_full(request: Request, exc: QueueFull) -> JSONResponse:
        return JSONResponse({"error": "event_queue_full", "detail": str(exc)}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(AbharnessError)
    async def _domain(request: Request, exc: AbharnessError) -> JSONResponse:
        if isinstance(exc, (BackendError, StoreError)):  # internal addresses and replies: log them, not answer
            error_id = _log_with_id(request, exc)
            return JSONResponse(
                {"error": "unavailable", "error_id": error_id,
                 "detail": f"a dependency of the proxy failed; retry later (error id {error_id})"},
                status_code=503, headers={"Retry-After": "1"},
            )
        if isinstance(exc, TokenError):
            return JSONResponse({"error": "invalid_click", "detail": str(exc)}, status_code=403)
        return JSONResponse({"error": "bad_request", "detail": str(exc)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": "http_error", "detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:  # a bug, not bad input
        error_id = uuid.uuid4().hex[:12]
        log.error("unhandled error on %s %s (error id %s)", request.method, request.url.path, error_id,
                  exc_info=exc)
        return JSONResponse(
            {"error": "internal", "error_id": error_id, "detail": f"internal error; quote error id {error_id}"},
            status_code=500,
        )


def create_app(
    config: ExperimentConfig,
    *,
    registry: CollectorRegistry | None = None,
    store: EventStore | None = None,
    backends: Mapping[str, SearchBackend] | None = None,
    writer: Any | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """Build the proxy app for ``config``. Adapters may be injected (tests, benchmarks); otherwise the lifespan
    opens ``config.store_url``, starts an ``EventWriter`` and opens each arm's backend."""
    if not isinstance(config, ExperimentConfig):
        raise ConfigError(f"create_app needs an ExperimentConfig (see abharness.config.load_config), got {type(config)}")
    refuse_unserved(config)
    registry = registry if registry is not None else CollectorRegistry()
    metrics = ProxyMetrics(registry)
    if config.token_secret is not None and config.token_secret.get_secret_value():
        secret = config.token_secret.get_secret_value().encode("utf-8")
    else:  # only reachable with insecure_dev (the config refuses it otherwise): valid in this process only
        secret = secrets.token_bytes(32)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = store is None
        own_backends = backends is None
        own_writer = writer is None
        the_store: EventStore | None = store
        the_backends: Mapping[str, SearchBackend] = backends or {}
        the_writer = writer
        sync_task: asyncio.Task[None] | None = None
        reconnect_tasks: list[asyncio.Task[None]] = []
        try:
            if the_store is None:
                from abharness.stores import open_store

                the_store = await anyio.to_thread.run_sync(open_store, config.store_url)
            if not the_backends:
                the_backends = await anyio.to_thread.run_sync(
                    lambda: build_backends(config, tolerate_treatments=True)
                )
            await warm_up(config, the_backends)
            audit = await anyio.to_thread.run_sync(the_store.audit_log, config.experiment_id)
            state, start_entry = restore_state(config, audit, now=clock())
            await anyio.to_thread.run_sync(the_store.write_batch, [start_entry])
            if the_writer is None and config.events.enabled:
                from abharness.stores.writer import EventWriter

                ev = config.events
                the_writer = EventWriter(
                    the_store, max_queue=ev.max_queue, batch_size=ev.batch_size,
                    flush_interval_s=ev.flush_interval_s, on_full=ev.on_full, on_write_seconds=metrics.observe_write,
                    spool_dir=ev.spool_dir, spool_after_s=ev.spool_after_s,
                )
            if the_writer is not None:
                the_writer.start()
                w = the_writer
                metrics.attach_writer(lambda: writer_stats(w))
            app.state.service = ProxyService(
                config, the_backends, state=state, metrics=metrics, writer=the_writer if config.events.enabled
                else None, store=the_store, secret=secret, clock=clock,
            )
            app.state.service.mark_audit_applied([*audit, start_entry])
            if own_backends:
                for name, backend in the_backends.items():
                    if isinstance(backend, UnavailableBackend):
                        reconnect_tasks.append(asyncio.get_running_loop().create_task(
                            _reconnect_loop(app.state.service, config, name)
                        ))
            if config.admin_sync_interval_s > 0:
                sync_task = asyncio.get_running_loop().create_task(
                    _admin_sync_loop(app.state.service, config.admin_sync_interval_s)
                )
            yield
        finally:
            if sync_task is not None:
                sync_task.cancel()
            for task in reconnect_tasks:
                task.cancel()
            service: ProxyService | None = getattr(app.state, "service", None)
            app.state.service = None
            if service is not None:
                await service.drain(config.events.shutdown_timeout_s)
            if the_writer is not None and own_writer:
                lost = await anyio.to_thread.run_sync(the_writer.close, config.events.shutdown_timeout_s)
                if lost:
                    log.error("%d accepted events could not be written before shutdown", lost)
            if own_backends:
                for b in the_backends.values():
                    b.close()
                if service is not None:  # backends opened by the reconnect loop after the start
                    for name, b in service.backends.items():
                        if b is not the_backends.get(name):
                            b.close()
            if own_store and the_store is not None:
                the_store.close()

    app = FastAPI(
        title="abharness proxy",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are served offline by install_offline_docs below
        redoc_url=None,
    )
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.config = config
    app.state.service = None
    app.state.admin_actors = {token.encode("utf-8"): name for token, name in config.admin_actors().items()}
    app.include_router(router)
    app.include_router(admin_router)
    app.include_router(lifecycle_router)
    app.include_router(browser_router)
    install_error_handlers(app)
    install_offline_docs(app)
    install_openapi(app, config)
    app.add_middleware(FastSearchMiddleware)  # innermost: after CORS and the body limit, before the router
    app.add_middleware(BeaconMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.limits.max_body_bytes)
    if config.cors is not None:  # outermost: a preflight is answered before any other check
        app.add_middleware(PublicCORSMiddleware, cors=config.cors)
    return app
