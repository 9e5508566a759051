"""The proxy's published OpenAPI schema, made exact for one experiment config.

FastAPI derives the schema from the pydantic bodies; a few limits come from the config, not the types (``k`` up to
``limits.max_k``, the query up to ``limits.max_query_chars``, ``unit_id`` required unless the proxy issues session
cookies, the arm names of the experiment). They are written into the schema here, so a request the schema calls
valid is one the proxy accepts, and a generated-request run (schemathesis, tests/proxy/test_proxy_openapi.py)
checks the answers against it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from abharness.config import ExperimentConfig

__all__ = ["install_openapi"]


def _patch(schema: dict[str, Any], config: ExperimentConfig) -> None:
    comps = schema.get("components", {}).get("schemas", {})
    search = comps.get("SearchRequest")
    if search is not None:
        props = search["properties"]
        props["query"]["maxLength"] = config.limits.max_query_chars
        props["query"]["pattern"] = r"\S"  # not blank
        for option in props["k"].get("anyOf", [props["k"]]):
            if option.get("type") == "integer":
                option["maximum"] = config.limits.max_k
        if config.session_cookie is None:
            search["required"] = sorted({*search.get("required", []), "unit_id"})
            props["unit_id"] = {k: v for k, v in props["unit_id"].items() if k != "default"}
            props["unit_id"]["type"] = "string"
            props["unit_id"].pop("anyOf", None)
            props["unit_id"].update(minLength=1, maxLength=256)
    arms = [a.name for a in config.arms]
    alloc = comps.get("AllocationRequest")
    if alloc is not None:
        weights = alloc["properties"]["weights"]
        weights["properties"] = {a: {"type": "number", "minimum": 0, "maximum": 1} for a in arms}
        weights["required"] = arms
        weights["additionalProperties"] = False
    override = comps.get("OverrideRequest")
    if override is not None:
        override["properties"]["arm"]["enum"] = arms


def install_openapi(app: FastAPI, config: ExperimentConfig) -> None:
    """Replace ``app.openapi`` with a cached schema carrying ``config``'s limits."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                 description=app.description)
            _patch(schema, config)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
