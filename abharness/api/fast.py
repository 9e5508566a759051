"""``FastSearchMiddleware``: ``POST /search`` without FastAPI's per-request machinery, for the common request.

``/search`` is the proxy's hot path: every request pays for routing over all routes, dependency solving, the
endpoint wrappers and the response re-validation before the search itself. This middleware, the innermost one
(inside the CORS and body-limit middlewares), answers a ``POST /search`` whose body is a JSON object that validates
as ``SearchRequest`` itself, with the same code as the route (``abharness.api.routes.run_search``) and the same
response: the same JSON bytes (the pydantic serializer FastAPI uses for a ``response_model``), the same headers
(content-length, content-type, a session cookie when one is issued). Errors raised by the search go to the app's
own exception handlers, so they get the same 4xx/503 bodies; an exception no handler takes propagates to the
server-error handler (a 500) as before.

Everything else is handed to the FastAPI app unchanged, with the body it already read replayed: other paths and
methods, a ``root_path``, a content type other than ``application/json``, an empty body, a body that is not valid
JSON or does not validate (FastAPI then answers with its usual validation error), and requests while the service
is starting. The route stays the reference (and the OpenAPI schema); the tests check the two answer alike.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from abharness.api.routes import run_search
from abharness.api.schemas import SearchRequest

__all__ = ["FastSearchMiddleware"]

_JSON = b"application/json"
_CONTENT_TYPE = (b"content-type", _JSON)


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == _JSON
    return False


class FastSearchMiddleware:
    """Serve valid ``POST /search`` requests directly; hand every other request to ``app`` (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != "/search"
            or scope["method"] != "POST"
            or scope.get("root_path")
            or not _is_json(scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # a disconnect before the whole body: let the app see it
                await self.app(scope, _replay(chunks, message, receive), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        root = scope.get("app")
        service = getattr(getattr(root, "state", None), "service", None)
        body: SearchRequest | None = None
        if raw and service is not None:
            try:
                data = json.loads(raw)
                if isinstance(data, dict):
                    body = SearchRequest.model_validate(data)
            except Exception:  # noqa: BLE001 - invalid JSON or body: FastAPI answers with its usual error
                body = None
        if body is None:
            await self.app(scope, _replay([raw], None, receive), send)
            return
        request = Request(scope, receive)
        sub = Response()  # collects a session cookie, as FastAPI's sub-response does
        try:
            result = await run_search(body, request, sub, service)
        except Exception as exc:  # noqa: BLE001 - the app's handlers decide; unhandled ones propagate (a 500)
            handler = _handler_for(root, exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
            await response(scope, receive, send)
            return
        content = result.__pydantic_serializer__.to_json(result, by_alias=True)
        headers = [(b"content-length", str(len(content)).encode("latin-1")), _CONTENT_TYPE]
        headers.extend(h for h in sub.raw_headers if h[0] == b"set-cookie")
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def _replay(chunks: list[bytes], last: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read (as one message), then ``last``, then the real stream."""
    pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
    if last is not None:
        pending = [last] if not chunks else [{"type": "http.request", "body": b"".join(chunks), "more_body": True},
                                             last]

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def _handler_for(app: Any, exc: Exception) -> Any:
    """The app's exception handler for ``exc`` (by class, most specific first), as Starlette's
    ``ExceptionMiddleware`` looks it up; None when only the server-error handler (``Exception``) would take it."""
    handlers = getattr(app, "exception_handlers", {})
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None
