"""Public routes of the proxy: /search, /click, /events, /healthz, /readyz, /metrics. Parse, call the use case,
render; errors become 4xx/503 through the handlers installed in ``abharness.api.app``."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from abharness.api.schemas import (
    ClickEvent,
    ClickRequest,
    ClickResponse,
    EventResult,
    EventsRequest,
    EventsResponse,
    HealthBody,
    ReadyBody,
    SearchRequest,
    SearchResponse,
    SearchResult,
    error_responses,
)
from abharness.core.paging import InvalidPageToken, PageState, verify_page
from abharness.core.tokens import InvalidToken
from abharness.core.units import cookie_key, issue_cookie, read_cookie, verify_unit
from abharness.serve.service import ProxyService, QueueFull

__all__ = ["router", "get_service", "run_search", "RequestError"]

log = logging.getLogger(__name__)

router = APIRouter()


class RequestError(Exception):
    """A request that is well-formed JSON but breaks a limit or a rule; becomes a 4xx naming the field."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


async def get_service(request: Request) -> ProxyService:
    # async on purpose: FastAPI runs a plain `def` dependency in the thread pool, one thread hop per request
    service: ProxyService | None = getattr(request.app.state, "service", None)
    if service is None:
        raise RequestError(503, "not_ready", "the proxy is still starting (indexes loading); retry shortly")
    return service


Service = Annotated[ProxyService, Depends(get_service)]


def _resolve_unit(body: SearchRequest, request: Request, response: Response, service: ProxyService) -> str:
    """The unit of this search, by ``unit_auth`` (see ``abharness.core.units`` and docs/proxy.md, *Units*)."""
    cfg = service.config
    if cfg.unit_auth == "signed":
        if not body.unit_id or not body.unit_sig:
            raise RequestError(403, "unsigned_unit",
                               "unit_auth is signed: send unit_id with unit_sig = hex(HMAC-SHA256(unit_secret, "
                               "unit_id)) computed by your backend (docs/proxy.md, Units)")
        secret = cfg.unit_secret.get_secret_value().encode("utf-8") if cfg.unit_secret else b""
        if not verify_unit(body.unit_id, body.unit_sig, secret):
            raise RequestError(403, "forged_unit",
                               "unit_sig does not match unit_id: sign the unit id with the shared unit_secret")
        return body.unit_id
    if body.unit_id and cfg.unit_auth == "plain":
        return body.unit_id
    cookie = cfg.session_cookie
    if body.unit_id:  # unit_auth: cookie
        raise RequestError(400, "unit_id_not_accepted",
                           "unit_auth is cookie: the proxy issues the unit as a signed session cookie; do not send "
                           "unit_id (send the cookie back instead)")
    if cookie is None:
        raise RequestError(
            400,
            "missing_unit_id",
            f"unit_id is required: send the {cfg.unit} id as \"unit_id\" in the body "
            "(or configure session_cookie to let the proxy issue session ids)",
        )
    key = cookie_key(service.secret)
    existing = read_cookie(request.cookies.get(cookie.name), key)
    if existing is not None:
        return existing
    unit, value = issue_cookie(key)  # none, unsigned or forged: a new unit, never the chosen one
    response.set_cookie(
        cookie.name, value, max_age=cookie.max_age_s, secure=cookie.secure, httponly=True, samesite="lax"
    )
    return unit


def _page_of(body: SearchRequest, unit_id: str, service: ProxyService,
             context: dict[str, Any]) -> tuple[int, PageState | None]:
    """The absolute offset asked for and, with a page token, the verified state of the list it continues."""
    cfg = service.config
    k = body.k or cfg.k
    if body.page and service.layered is not None and service.layered.layer_owns_k:
        k = service.layered.route(unit_id, context).k or k  # a layer decides k: page n starts at (n - 1) x that k
    offset = body.offset if body.offset is not None else ((body.page - 1) * k if body.page else None)
    page = None
    if body.page_token is not None:
        try:
            page = verify_page(body.page_token, service.secret, now=service.now(), experiment_id=cfg.experiment_id,
                               unit_id=unit_id, query=body.query)
        except InvalidPageToken as exc:
            raise RequestError(403, "invalid_page_token", str(exc)) from None
        if offset is None:
            offset = page.offset
        elif offset != page.offset or (body.k is not None and body.k != page.k):
            raise RequestError(422, "page_mismatch",
                               f"offset {offset} (k {k}) does not continue the page_token's list, which goes on at "
                               f"offset {page.offset} with k {page.k}; send the page_token alone or its offset")
    offset = offset or 0
    if offset > cfg.limits.max_offset:
        raise RequestError(422, "offset_too_large",
                           f"offset is {offset}; the limit is limits.max_offset={cfg.limits.max_offset}")
    if offset and page is None and cfg.mode == "interleave":
        raise RequestError(422, "page_token_required",
                           "in interleave mode a later page continues the first page's interleaved list: send the "
                           "page_token of the previous page's response with this request")
    return offset, page


@router.post("/search", response_model=SearchResponse, responses=error_responses(400, 403, 413, 422, 503))
async def search(body: SearchRequest, request: Request, response: Response, service: Service) -> SearchResponse:
    """Route one search (ab / interleave / shadow) and return the shown list with a signed impression token."""
    return await run_search(body, request, response, service)


async def run_search(body: SearchRequest, request: Request, response: Response,
                     service: ProxyService) -> SearchResponse:
    """The work of ``POST /search`` once the body is validated (shared by the route and ``abharness.api.fast``);
    sets the session cookie on ``response`` when it issues one."""
    limits = service.config.limits
    if len(body.query) > limits.max_query_chars:
        raise RequestError(
            422,
            "query_too_long",
            f"query is {len(body.query)} characters; the limit is limits.max_query_chars={limits.max_query_chars}",
        )
    if not body.query.strip():
        raise RequestError(422, "empty_query", "query is blank; send the user's query text")
    if body.k is not None and body.k > limits.max_k:
        raise RequestError(422, "k_too_large", f"k is {body.k}; the limit is limits.max_k={limits.max_k}")
    unit_id = _resolve_unit(body, request, response, service)
    context = dict(body.context or {})
    agent = request.headers.get("user-agent")
    if agent and "user_agent" not in context:  # for the crawler rule of the analysis (a caller may pass the user's)
        context["user_agent"] = agent[:256]
    offset, page = _page_of(body, unit_id, service, context)
    out = await service.search(body.query, unit_id, body.k, context, offset=offset, page=page)
    titles = out.titles
    return SearchResponse(
        impression_id=out.impression_id,
        impression_token=out.impression_token,
        arm=out.arm,
        mode=out.mode,
        fallback=out.fallback,
        unit_id=unit_id,
        results=[
            SearchResult(doc_id=r.doc_id, score=r.score, title=titles.get(r.doc_id, ""), position=r.position,
                         team=r.team)
            for r in out.results
        ],
        offset=out.offset,
        has_more=out.has_more,
        page_token=out.page_token,
        experiments=dict(out.enrollments) if service.layered is not None else None,
    )


@router.post("/click", response_model=ClickResponse, responses=error_responses(400, 403, 413, 422, 503))
async def click(body: ClickRequest, service: Service) -> ClickResponse:
    """Record a click on a shown result; the token must verify and the doc must have been shown at ``position``."""
    out = await service.click(body.impression_token, body.doc_id, body.position, body.dwell_ms)
    return ClickResponse(status="duplicate" if out.duplicate else "accepted", impression_id=out.impression_id)


# navigator.sendBeacon sends a string body as text/plain (a CORS-safelisted type: no preflight); BeaconMiddleware
# hands it to this route as JSON, so both content types are documented with the same schema.
_EVENTS_BODY = {"requestBody": {"content": {"text/plain": {"schema": {"$ref": "#/components/schemas/EventsRequest"}}}}}


@router.post("/events", response_model=EventsResponse, openapi_extra=_EVENTS_BODY,
             responses=error_responses(400, 413, 422, 503))
async def events(body: EventsRequest, service: Service) -> EventsResponse:
    """A batch of browser events: clicks, results seen, dwell times. Accepts ``application/json`` and the
    ``text/plain`` body of ``navigator.sendBeacon``. Each is validated on its own; the response lists every
    outcome."""
    limit = service.config.limits.max_events_per_batch
    if len(body.events) > limit:
        raise RequestError(
            413, "too_many_events",
            f"events has {len(body.events)} items; the limit is limits.max_events_per_batch={limit}",
        )
    results: list[EventResult] = []
    for i, ev in enumerate(body.events):
        try:
            if isinstance(ev, ClickEvent):
                out = await service.click(ev.impression_token, ev.doc_id, ev.position, ev.dwell_ms)
            else:
                out = service.feedback(ev.impression_token, ev.type, ev.doc_id, ev.position, ev.dwell_ms)
        except InvalidToken as exc:
            results.append(EventResult(index=i, status="rejected", reason=exc.reason, detail=str(exc)))
            continue
        except QueueFull as exc:
            results.append(EventResult(index=i, status="rejected", reason="queue_full", detail=str(exc)))
            continue
        except Exception:  # one item must never fail the batch (the others may be stored already)
            error_id = uuid.uuid4().hex[:12]
            log.exception("event %d of an /events batch failed (error id %s)", i, error_id)
            results.append(EventResult(index=i, status="rejected", reason="internal",
                                       detail=f"internal error; quote error id {error_id} to the operator"))
            continue
        results.append(EventResult(index=i, status="duplicate" if out.duplicate else "accepted"))
    return EventsResponse(
        accepted=sum(r.status == "accepted" for r in results),
        duplicates=sum(r.status == "duplicate" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        results=results,
    )


@router.get("/healthz", response_model=HealthBody)
async def healthz() -> dict[str, str]:
    """The process is alive (no dependency checks)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyBody, responses={503: {"model": ReadyBody, "description": "Not ready"}})
async def readyz(request: Request) -> JSONResponse:
    """Ready when indexes are loaded and the store answers; 503 with the problems otherwise."""
    service: ProxyService | None = getattr(request.app.state, "service", None)
    if service is None:
        return JSONResponse({"status": "starting", "problems": {"service": "indexes loading"}}, status_code=503)
    problems, degraded = await service.readiness()
    if problems:
        return JSONResponse({"status": "not_ready", "problems": problems, "degraded": degraded}, status_code=503)
    return JSONResponse({"status": "ready", "arms": list(service.backends), "degraded": degraded})


@router.get(
    "/metrics", response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                     "description": "Prometheus text exposition format 0.0.4"}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of the app's own registry."""
    data = await anyio.to_thread.run_sync(generate_latest, request.app.state.registry)
    return Response(content=data, media_type=CONTENT_TYPE_LATEST)
