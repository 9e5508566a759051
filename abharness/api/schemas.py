"""HTTP request/response bodies of the proxy (pydantic at the boundary only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SearchRequest",
    "SearchResult",
    "SearchResponse",
    "ClickRequest",
    "ClickResponse",
    "ClickEvent",
    "EventsRequest",
    "EventResult",
    "EventsResponse",
    "AllocationRequest",
    "KillRequest",
    "OverrideRequest",
    "ErrorBody",
]

ContextValue = str | int | float | bool


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Body):
    query: str = Field(min_length=1, description="the user's query text")
    unit_id: str | None = Field(None, min_length=1, max_length=256, description="user or session id")
    k: int | None = Field(None, ge=1, description="results wanted (default: the experiment's k)")
    context: dict[str, ContextValue] | None = Field(
        None, max_length=32, description="segment attributes (device, locale, ...) stored with the impression"
    )


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


class ClickRequest(_Body):
    impression_token: str = Field(min_length=1, max_length=65_536)
    doc_id: str = Field(min_length=1, max_length=512)
    position: int = Field(ge=1, description="1-based position the doc was shown at")
    dwell_ms: float | None = Field(None, ge=0)


class ClickResponse(BaseModel):
    status: Literal["accepted", "duplicate"]
    impression_id: str


class ClickEvent(ClickRequest):
    type: Literal["click"] = "click"


class EventsRequest(_Body):
    events: list[ClickEvent] = Field(min_length=1)


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
    weights: dict[str, float] = Field(description="arm -> weight in [0, 1], summing to 1")
    allow_decrease: bool = Field(False, description="allow lowering a treatment (moves units back to control)")
    actor: str = Field("admin", max_length=128)


class KillRequest(_Body):
    reason: str = Field(min_length=1, max_length=1000)
    actor: str = Field("admin", max_length=128)


class OverrideRequest(_Body):
    arm: str
    actor: str = Field("admin", max_length=128)


class ErrorBody(BaseModel):
    error: str
    detail: str
