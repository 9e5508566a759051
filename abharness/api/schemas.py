"""HTTP request/response bodies of the proxy (pydantic at the boundary only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "SearchRequest",
    "SearchResult",
    "SearchResponse",
    "ClickRequest",
    "ClickResponse",
    "ClickEvent",
    "FeedbackEvent",
    "EventsRequest",
    "EventResult",
    "EventsResponse",
    "AllocationRequest",
    "KillRequest",
    "OverrideRequest",
    "ErrorBody",
    "FieldError",
    "ReadyBody",
    "HealthBody",
    "error_responses",
]

ContextValue = str | int | float | bool


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Body):
    query: str = Field(min_length=1, description="the user's query text")
    unit_id: str | None = Field(None, min_length=1, max_length=256, description="user or session id")
    unit_sig: str | None = Field(None, max_length=128, description="unit_auth: signed: "
                                 "hex(HMAC-SHA256(unit_secret, unit_id)), computed by the product's backend")
    k: int | None = Field(None, ge=1, strict=True, description="results wanted (default: the experiment's k)")
    context: dict[str, ContextValue] | None = Field(
        None, max_length=32, description="segment attributes (device, locale, ...) stored with the impression"
    )
    offset: int | None = Field(None, ge=0, strict=True, description="results to skip (a later page); 0 = the first page")
    page: int | None = Field(None, ge=1, strict=True, description="1-based page number (offset = (page - 1) x k)")
    page_token: str | None = Field(
        None, min_length=1, max_length=65_536,
        description="the previous page's page_token: continues the same list from the same arm (required after "
        "page 1 in interleave mode)",
    )

    @model_validator(mode="after")
    def _one_offset(self) -> SearchRequest:
        if self.offset is not None and self.page is not None:
            raise ValueError("give offset or page, not both")
        return self


class SearchResult(BaseModel):
    doc_id: str
    score: float
    title: str
    position: int
    team: str | None


class SearchResponse(BaseModel):
    impression_id: str
    impression_token: str | None = Field(description="null while paused/killed: the search is not an exposure")
    arm: str
    mode: str
    fallback: bool
    unit_id: str
    results: list[SearchResult]
    offset: int = Field(0, description="absolute offset of this page; positions are absolute (offset + 1, ...)")
    has_more: bool = Field(False, description="a next page may have results")
    page_token: str | None = Field(None, description="send it with the next page's request")
    experiments: dict[str, str] | None = Field(
        None, description="a layered experiment file only: experiment id -> the unit's arm, for every experiment this "
        "search was logged in (including the holdout's pseudo-experiment)")


class ClickRequest(_Body):
    impression_token: str = Field(min_length=1, max_length=65_536)
    doc_id: str = Field(min_length=1, max_length=512)
    position: int = Field(ge=1, strict=True, description="1-based position the doc was shown at")
    dwell_ms: float | None = Field(None, ge=0, strict=True, allow_inf_nan=False)


class ClickResponse(BaseModel):
    status: Literal["accepted", "duplicate"]
    impression_id: str


class ClickEvent(ClickRequest):
    type: Literal["click"] = "click"


class FeedbackEvent(_Body):
    """A browser signal about a shown result: ``seen`` (scrolled into view) or ``dwell`` (``dwell_ms`` spent on a
    clicked result before the user came back)."""

    type: Literal["seen", "dwell"]
    impression_token: str = Field(min_length=1, max_length=65_536)
    doc_id: str = Field(min_length=1, max_length=512)
    position: int = Field(ge=1, strict=True, description="1-based position the doc was shown at")
    dwell_ms: float | None = Field(None, ge=0, strict=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _dwell_has_time(self) -> FeedbackEvent:
        if self.type == "dwell" and self.dwell_ms is None:
            raise ValueError("a dwell event needs dwell_ms (milliseconds spent on the clicked result)")
        return self


class EventsRequest(_Body):
    """A batch of browser events. Sent as ``application/json`` or as ``text/plain`` (what ``navigator.sendBeacon``
    sends for a string body); both carry the same JSON."""

    events: list[ClickEvent | FeedbackEvent] = Field(min_length=1)


class EventResult(BaseModel):
    index: int
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None
    detail: str | None = None


class EventsResponse(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]


class AllocationRequest(_Body):
    weights: dict[str, float] = Field(description="arm -> weight in [0, 1], summing to 1", strict=True)
    allow_decrease: bool = Field(False, description="allow lowering a treatment (moves units back to control)")


class KillRequest(_Body):
    reason: str = Field(min_length=1, max_length=1000)


class OverrideRequest(_Body):
    arm: str


class FieldError(BaseModel):
    field: str = Field(description="dotted location, e.g. body.k")
    message: str
    type: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: a stable ``error`` code and a ``detail`` sentence naming the value and the fix."""

    error: str = Field(description="stable code, e.g. invalid_request, invalid_click, control_unavailable")
    detail: str
    reason: str | None = Field(None, description="invalid_click: forged, expired, mismatch or unknown_doc")
    error_id: str | None = Field(None, description="quote it to the operator: the server log has the details")
    errors: list[FieldError] | None = Field(None, description="invalid_request: one entry per invalid field")


class ReadyBody(BaseModel):
    """/readyz: 200 when ready (possibly with degraded treatment arms served by control), 503 otherwise."""

    status: Literal["ready", "not_ready", "starting"]
    arms: list[str] | None = None
    problems: dict[str, str] | None = None
    degraded: dict[str, str] | None = None


class HealthBody(BaseModel):
    status: Literal["ok"]


_DESCRIPTIONS = {
    400: "Bad request (a required value is missing)",
    401: "Missing bearer token",
    403: "Forbidden (bad token or signature)",
    404: "Not found",
    409: "Conflict with the current state (e.g. a ramp down without allow_decrease)",
    413: "Request body or batch too large",
    415: "Unsupported content type",
    422: "Invalid request (fields named in errors/detail)",
    503: "Not ready, the control arm failed, or the event queue is full (Retry-After)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` entries for ``statuses``, all with the ``ErrorBody`` model."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in statuses}
