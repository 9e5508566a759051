"""Per-unit aggregates from the store (aggregated in SQL) into numpy matrices: one row per (unit, arm)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from abharness.core.events import InterleaveUnitAggregate, UnitAggregate
from abharness.core.stats.metrics import BASE_COLUMNS
from abharness.core.stats.moments import Moments
from abharness.stores.base import EventStore

__all__ = ["UnitTable", "load_units", "load_pre_period", "InterleaveTable", "load_interleave", "PRE_COLUMNS",
           "ALL_COLUMNS"]

PRE_COLUMNS: tuple[str, ...] = tuple(f"pre_{c}" for c in BASE_COLUMNS) + ("has_history",)
ALL_COLUMNS: tuple[str, ...] = BASE_COLUMNS + PRE_COLUMNS


def _row(r: UnitAggregate) -> tuple[float, ...]:
    return (
        r.impressions, r.clicks, r.clicked_impressions, r.impressions - r.clicked_impressions, r.successes,
        r.sum_reciprocal_rank, r.sum_time_to_first_click, r.sum_latency_ms, r.errors, r.fallbacks,
    )


@dataclass(frozen=True, eq=False)
class UnitTable:
    """Rows of per-unit sums: ``values`` has columns ``BASE_COLUMNS``; ``arm``/``segment`` label each row."""

    unit_ids: np.ndarray
    arm: np.ndarray
    segment: np.ndarray
    first_ts: np.ndarray
    values: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.unit_ids.size)

    def arms(self) -> list[str]:
        return sorted(set(self.arm.tolist()))

    def mask(self, arm: str, segment: str | None = None) -> np.ndarray:
        m = self.arm == arm
        if segment is not None:
            m &= self.segment == segment
        return m

    def units_per_arm(self) -> dict[str, int]:
        names, counts = np.unique(self.arm, return_counts=True)
        return {str(a): int(c) for a, c in zip(names, counts)}


def from_aggregates(rows: Iterable[UnitAggregate]) -> UnitTable:
    """Build a :class:`UnitTable` from store rows (one pass; values go straight into a float matrix)."""
    ids: list[str] = []
    arms: list[str] = []
    segs: list[str | None] = []
    first: list[float] = []
    vals: list[tuple[float, ...]] = []
    for r in rows:
        ids.append(r.unit_id)
        arms.append(r.arm)
        segs.append(r.segment)
        first.append(r.first_ts)
        vals.append(_row(r))
    values = np.array(vals, dtype=float).reshape(len(vals), len(BASE_COLUMNS))
    return UnitTable(np.array(ids, dtype=object), np.array(arms, dtype=object),
                     np.array(segs, dtype=object), np.array(first, dtype=float), values)


def load_units(
    store: EventStore, experiment_id: str, *, since: float | None, until: float | None,
    segment: str | None = None, modes: Sequence[str] = ("ab",),
) -> UnitTable:
    """Per-(unit, arm[, segment]) sums for the window, via ``EventStore.unit_aggregates`` (SQL-side)."""
    return from_aggregates(
        store.unit_aggregates(experiment_id, since=since, until=until, segment=segment, modes=tuple(modes))
    )


def load_pre_period(
    store: EventStore, experiment_id: str, *, since: float | None, until: float | None, modes: Sequence[str]
) -> dict[str, np.ndarray]:
    """Pre-period sums per unit (summed over arms): unit id -> BASE_COLUMNS vector."""
    table = load_units(store, experiment_id, since=since, until=until, modes=modes)
    out: dict[str, np.ndarray] = {}
    for uid, row in zip(table.unit_ids.tolist(), table.values):
        prev = out.get(uid)
        out[uid] = row if prev is None else prev + row
    return out


def with_covariates(table: UnitTable, pre: dict[str, np.ndarray] | None) -> np.ndarray:
    """``table.values`` extended with the pre-period columns and the has-history indicator (0 rows without)."""
    extra = np.zeros((table.rows, len(PRE_COLUMNS)))
    if pre:
        for i, uid in enumerate(table.unit_ids.tolist()):
            row = pre.get(uid)
            if row is not None:
                extra[i, :-1] = row
                extra[i, -1] = 1.0
    return np.hstack([table.values, extra])


def moments_for(matrix: np.ndarray, mask: np.ndarray, columns: Sequence[str] = ALL_COLUMNS) -> Moments:
    """Moments of the masked rows of a matrix with ``columns``."""
    return Moments.from_matrix(columns, matrix[mask])


@dataclass(frozen=True, eq=False)
class InterleaveTable:
    """Per-unit interleaving counts: wins per team (columns ``teams``), ties and impressions."""

    teams: tuple[str, ...]
    wins: np.ndarray
    ties: np.ndarray
    impressions: np.ndarray


def load_interleave(
    store: EventStore, experiment_id: str, *, since: float | None, until: float | None
) -> InterleaveTable:
    """Per-unit win/tie counts via ``EventStore.interleave_aggregates`` (SQL-side)."""
    rows: list[InterleaveUnitAggregate] = list(store.interleave_aggregates(experiment_id, since=since, until=until))
    teams = tuple(sorted({t for r in rows for t in r.wins}))
    wins = np.array([[r.wins.get(t, 0) for t in teams] for r in rows], dtype=float).reshape(len(rows), len(teams))
    return InterleaveTable(teams, wins, np.array([r.ties for r in rows], dtype=float),
                           np.array([r.impressions for r in rows], dtype=float))
