"""Event values that flow from the proxy to the event store and back into analysis and replay.

Pure data: no I/O, no clock. Times are unix seconds (float, UTC). Positions are 1-based.

Words (see STYLE): an *exposure* is one routed search; it produces exactly one *impression* (the ranked list
shown), so the two share one record here, ``Impression``. A *click* refers to an impression by id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Mode",
    "ShownResult",
    "Impression",
    "Click",
    "Feedback",
    "FEEDBACK_KINDS",
    "AuditEntry",
    "Event",
    "UnitAggregate",
    "InterleaveUnitAggregate",
]

Mode = Literal["ab", "interleave", "shadow"]


@dataclass(frozen=True, slots=True)
class ShownResult:
    """One result in a shown list. ``team`` is the arm name that contributed it (interleaving), else the arm."""

    doc_id: str
    position: int
    score: float
    team: str | None = None


@dataclass(frozen=True, slots=True)
class Impression:
    """One exposure: a unit's query, routed to an arm (or interleaved), and the list that was shown.

    ``arm`` is the arm that served the list. In ``interleave`` mode it is the literal ``"interleaved"`` and each
    result carries its ``team``. In ``shadow`` mode the control arm serves and ``shadow_results`` holds the
    treatment's ranking (never shown). ``fingerprints`` maps arm name to {"model": ..., "index": ...} for every
    arm whose ranking was computed. ``context`` holds client-supplied segment attributes (device, locale, ...).
    """

    impression_id: str
    experiment_id: str
    ts: float
    unit_id: str
    arm: str
    mode: Mode
    query: str
    k: int
    results: tuple[ShownResult, ...]
    fingerprints: dict[str, dict[str, str]] = field(default_factory=dict)
    latency_ms: float = 0.0
    fallback: bool = False
    error: str | None = None
    shadow_results: tuple[ShownResult, ...] | None = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Click:
    """A click on a shown result. (impression_id, doc_id) is unique: duplicates are stored once."""

    impression_id: str
    experiment_id: str
    unit_id: str
    arm: str
    ts: float
    doc_id: str
    position: int
    team: str | None = None
    dwell_ms: float | None = None


#: Kinds of ``Feedback``: "seen" = the result was scrolled into view (an impression actually seen), "dwell" = the
#: time spent on a clicked result before the user came back (``value`` in ms).
FEEDBACK_KINDS: tuple[str, ...] = ("seen", "dwell")


@dataclass(frozen=True, slots=True)
class Feedback:
    """A browser-side signal about one shown result other than the click itself (see ``FEEDBACK_KINDS``).

    (impression_id, kind, doc_id) is unique: a signal sent twice (a beacon retried) is stored once. A "dwell"
    also fills ``dwell_ms`` of the matching click when the store holds it without one.
    """

    impression_id: str
    experiment_id: str
    unit_id: str
    arm: str
    ts: float
    kind: str
    doc_id: str
    position: int
    value: float | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """An admin action (allocation change, pause, kill switch, override), kept in the store."""

    ts: float
    experiment_id: str
    actor: str
    action: str
    payload: dict[str, Any] = field(default_factory=dict)


Event = Impression | Click | AuditEntry | Feedback


@dataclass(frozen=True, slots=True)
class UnitAggregate:
    """Per-(unit, arm[, segment]) sufficient statistics, computed in the store with SQL.

    For each impression of the unit in the window: ``clicks`` counts its clicks; its reciprocal rank is
    1/position of its first click when that position <= k, else 0; it is a *success* when it has a click
    in the top k; ``time_to_first_click`` is (first click ts - impression ts) for impressions with a click.
    Guardrail sums: latency, errors, fallbacks.
    """

    unit_id: str
    arm: str
    impressions: int
    clicks: int
    sum_reciprocal_rank: float
    successes: int
    sum_time_to_first_click: float
    clicked_impressions: int
    sum_latency_ms: float
    sum_latency_ms_sq: float
    errors: int
    fallbacks: int
    first_ts: float
    segment: str | None = None


@dataclass(frozen=True, slots=True)
class InterleaveUnitAggregate:
    """Per-unit interleaving outcome counts over ``interleave``-mode impressions.

    Per impression, clicks are credited to the team of the clicked result; the impression is a *win* for
    the team with more clicks, a *tie* when both teams have the same positive number of clicks, and
    *no_click* when there are none (Chapelle, Joachims, Radlinski & Yue 2012). ``wins`` maps arm name to count.
    """

    unit_id: str
    impressions: int
    wins: dict[str, int]
    ties: int
    no_click: int
