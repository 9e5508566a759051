"""The event store Protocol. SQLite (embedded default) and PostgreSQL implement it; the proxy, analysis and
replay only ever hold an ``EventStore``.

Writes come in batches from the background writer (``abharness.stores.writer``). Reads for statistics are
*aggregates computed in the database*; raw impressions are only iterated (in batches) for replay.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

from abharness.core.events import (
    AuditEntry,
    Click,
    Event,
    Feedback,
    Impression,
    InterleaveUnitAggregate,
    UnitAggregate,
)

__all__ = ["EventStore", "WriteResult"]


class WriteResult:
    """How many of a batch were newly stored and how many were duplicates (ignored)."""

    __slots__ = ("stored", "duplicates")

    def __init__(self, stored: int, duplicates: int) -> None:
        self.stored = stored
        self.duplicates = duplicates

    def __repr__(self) -> str:
        return f"WriteResult(stored={self.stored}, duplicates={self.duplicates})"


@runtime_checkable
class EventStore(Protocol):
    """Where exposures, impressions, clicks and admin actions go.

    Implementations must be safe to call from one writer thread and several reader threads, make
    ``write_batch`` atomic (all of the batch or none), and ignore duplicates by key (impression_id for
    impressions; (impression_id, doc_id) for clicks; (impression_id, kind, doc_id) for feedback, where a "dwell"
    also fills the matching click's ``dwell_ms`` when it has none) so retries after a failure store each event once.
    """

    url: str

    def migrate(self) -> None:
        """Create or upgrade the schema to the current version (idempotent)."""

    def ping(self) -> None:
        """Raise ``StoreError`` when the store is not reachable/writable (used by /readyz)."""

    def write_batch(self, events: Sequence[Event]) -> WriteResult:
        """Store a batch of events atomically; duplicates are ignored and counted."""

    def get_impression(self, impression_id: str) -> Impression | None:
        """One impression by id, or None."""

    def experiments(self) -> list[str]:
        """Experiment ids that have at least one impression."""

    def arms(self, experiment_id: str) -> list[str]:
        """Arm names with at least one impression in the experiment."""

    def unit_aggregates(
        self,
        experiment_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        segment: str | None = None,
        modes: Sequence[str] = ("ab",),
    ) -> Iterator[UnitAggregate]:
        """Per-(unit, arm) sums for impressions with since <= ts < until, computed in SQL.

        ``segment`` names a key of the impression ``context``; when given, rows are per (unit, arm, segment value).
        """

    def interleave_aggregates(
        self, experiment_id: str, *, since: float | None = None, until: float | None = None
    ) -> Iterator[InterleaveUnitAggregate]:
        """Per-unit interleaving win/tie/no-click counts, computed in SQL."""

    def traffic_counts(
        self,
        experiment_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        bucket_s: float = 86_400.0,
        modes: Sequence[str] = ("ab",),
    ) -> list[tuple[float, str, int, int]]:
        """(bucket start, arm, distinct units, impressions) per time bucket of ``bucket_s`` seconds aligned to
        the unix epoch (UTC days by default), ordered by bucket then arm, computed in SQL."""

    def unit_activity(
        self,
        experiment_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        fast_click_s: float = 0.0,
        modes: Sequence[str] = ("ab",),
    ) -> list[tuple[str, str, int, int, int]]:
        """(unit, arm, most searches on one UTC day, clicks, clicks within ``fast_click_s`` of their impression) per
        (unit, arm), computed in SQL: the evidence the bot rules of the analysis read."""

    def iter_impressions(
        self,
        experiment_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        batch_size: int = 1000,
    ) -> Iterator[tuple[Impression, list[Click]]]:
        """Impressions in time order with their clicks, fetched in batches (for replay)."""

    def audit_log(self, experiment_id: str) -> list[AuditEntry]:
        """Admin actions for the experiment, oldest first."""

    def feedback(self, experiment_id: str) -> list[Feedback]:
        """Browser signals (seen results, dwell times) of the experiment, oldest first."""

    def counts(self, experiment_id: str | None = None) -> dict[str, int]:
        """Row counts: {"impressions": n, "clicks": n, "audit": n}."""

    def close(self) -> None:
        """Release connections."""
