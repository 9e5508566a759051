"""Rollup maintenance computed in Python per batch: the write side of ``abharness.stores.rollup``.

``write_batch`` (both SQL stores) inserts the batch's raw rows, then calls ``plan_maintenance`` with

* the impressions the batch stored for the first time (``codec.impression_row`` tuples),
* the stored ``impression_facts`` rows of the impressions its clicks point at (the *targets*), as they were
  before this batch,
* every stored click of those impressions and of the new ones (after this batch's click inserts),

and applies the plan it returns in the same transaction:

``facts_insert``
    one complete ``impression_facts`` row per new impression, its click summary computed from the stored clicks
    (clicks committed before their impression, by another replica or an earlier batch, are counted here);
``facts_update``
    the new click summary of each target whose summary changed;
``rollup``
    *additive* increments of ``unit_rollup`` per (experiment, mode, unit, arm, day): a new impression adds its
    whole contribution, a target adds ``contribution(new summary) - contribution(old summary)`` field by field
    (a field the clicks do not change adds exactly 0.0). The upsert adds them to the stored row
    (``rollup_upsert_sql``); first/last time are min/max.

Click summaries are *recomputed* from the stored clicks (never folded from the batch's clicks), so duplicate,
re-delivered, late and out-of-order clicks and clicks of another experiment count exactly as in the full scan;
only ``unit_rollup`` is maintained by deltas. Integer sums therefore equal a fresh backfill exactly; float sums
(reciprocal ranks, time to first click, latency) equal it up to the order of additions (the tests hold them to
1e-9). Correctness needs each plan to see every earlier batch's committed rows: SQLite's writers are serialised
by ``BEGIN IMMEDIATE``; PostgreSQL takes its maintenance advisory lock before reading (``postgres_write``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from abharness.stores.rollup import BUCKET_S

__all__ = [
    "FACT_COLUMNS",
    "SUM_COLUMNS",
    "ROLLUP_COLUMNS",
    "MaintenancePlan",
    "contribution",
    "summarize",
    "fact_of",
    "plan_maintenance",
    "rollup_upsert_sql",
]

#: ``impression_facts`` columns, in the order of the fact tuples used here.
FACT_COLUMNS: tuple[str, ...] = (
    "impression_id", "experiment_id", "mode", "unit_id", "arm", "ts", "k", "latency_ms", "fallback", "has_error",
    "n_clicks", "first_click_ts", "first_click_position", "min_click_position",
)
#: ``unit_rollup`` sums, in the order of ``contribution``.
SUM_COLUMNS: tuple[str, ...] = ("impressions", "clicks", "sum_rr", "successes", "sum_ttfc", "clicked",
                                "sum_latency", "sum_latency_sq", "errors", "fallbacks")
ROLLUP_COLUMNS: tuple[str, ...] = ("experiment_id", "mode", "unit_id", "arm", "bucket", *SUM_COLUMNS,
                                   "first_ts", "last_ts")

Summary = tuple[int, float | None, int | None, int | None]
EMPTY: Summary = (0, None, None, None)


def summarize(clicks: Iterable[tuple[float, int]]) -> Summary:
    """(n_clicks, first click time, first click's position, best position) of ``(ts, position)`` pairs; ties in
    time go to the higher-ranked click (``ORDER BY ts, position`` in the backfill SQL)."""
    n = 0
    first: tuple[float, int] | None = None
    best: int | None = None
    for ts, pos in clicks:
        n += 1
        if first is None or (ts, pos) < first:
            first = (ts, pos)
        if best is None or pos < best:
            best = pos
    if first is None:
        return EMPTY
    return (n, first[0], first[1], best)


def contribution(fact: Sequence[Any]) -> list[float | int]:
    """One impression's addition to each ``unit_rollup`` sum, as ``rollup._fact_contrib`` computes it in SQL."""
    k, ts, latency, n, first_ts, first_pos, min_pos = fact[6], fact[5], fact[7], fact[10], fact[11], fact[12], fact[13]
    return [
        1,
        n,
        1.0 / float(first_pos) if first_pos is not None and first_pos <= k else 0.0,
        1 if min_pos is not None and min_pos <= k else 0,
        first_ts - ts if first_ts is not None else 0.0,
        1 if n > 0 else 0,
        latency,
        latency * latency,
        fact[9],
        fact[8],
    ]


def fact_of(imp: Sequence[Any], summary: Summary) -> tuple[Any, ...]:
    """The ``impression_facts`` row of a ``codec.impression_row`` tuple with its click summary."""
    return (imp[0], imp[1], imp[5], imp[3], imp[4], imp[2], imp[7], imp[10], imp[11], imp[15], *summary)


@dataclass(slots=True)
class MaintenancePlan:
    """What one batch writes into the derived tables (see the module docstring)."""

    facts_insert: list[tuple[Any, ...]] = field(default_factory=list)
    #: (n_clicks, first_click_ts, first_click_position, min_click_position, impression_id)
    facts_update: list[tuple[Any, ...]] = field(default_factory=list)
    #: ``ROLLUP_COLUMNS`` rows, sorted by key (replicas take row locks in one order)
    rollup: list[tuple[Any, ...]] = field(default_factory=list)


def _key(fact: Sequence[Any]) -> tuple[Any, ...]:
    return (fact[1], fact[2], fact[3], fact[4], math.floor(fact[5] / BUCKET_S))


def plan_maintenance(
    new_imps: Sequence[Sequence[Any]],
    old_facts: Iterable[Sequence[Any]],
    stored_clicks: Iterable[Sequence[Any]],
) -> MaintenancePlan:
    """The maintenance of one batch (module docstring). ``stored_clicks``: ``(impression_id, experiment_id, ts,
    position)`` of every stored click of the new impressions and of the targets; ``old_facts``: the targets'
    ``FACT_COLUMNS`` rows before the batch (a target without a fact is a click before its impression: nothing
    to do until the impression arrives)."""
    by_imp: dict[str, list[tuple[str, float, int]]] = {}
    for imp_id, exp, ts, pos in stored_clicks:
        lst = by_imp.get(imp_id)
        if lst is None:
            by_imp[imp_id] = [(exp, ts, pos)]
        else:
            lst.append((exp, ts, pos))

    def summary_of(imp_id: str, experiment_id: str) -> Summary:
        clicks = by_imp.get(imp_id)
        if not clicks:
            return EMPTY
        return summarize((ts, pos) for exp, ts, pos in clicks if exp == experiment_id)

    plan = MaintenancePlan()
    acc: dict[tuple[Any, ...], list[Any]] = {}

    def add(key: tuple[Any, ...], delta: list[Any], ts: float) -> None:
        row = acc.get(key)
        if row is None:
            acc[key] = [*delta, ts, ts]
            return
        for i, d in enumerate(delta):
            row[i] += d
        if ts < row[10]:
            row[10] = ts
        if ts > row[11]:
            row[11] = ts

    for imp in new_imps:
        fact = fact_of(imp, summary_of(imp[0], imp[1]))
        plan.facts_insert.append(fact)
        add(_key(fact), contribution(fact), fact[5])
    for old in old_facts:
        old = tuple(old)
        summary = summary_of(old[0], old[1])
        if summary == tuple(old[10:14]):
            continue
        new = (*old[:10], *summary)
        plan.facts_update.append((*summary, old[0]))
        before, after = contribution(old), contribution(new)
        delta = [a - b for a, b in zip(after, before)]
        delta[0] = 0
        delta[6] = delta[7] = 0.0  # latency does not change with clicks: add exactly nothing
        add(_key(old), delta, old[5])
    plan.rollup = [(*key, *acc[key]) for key in sorted(acc)]
    plan.facts_update.sort(key=lambda r: r[4])
    return plan


def rollup_upsert_sql(dialect: str) -> str:
    """``INSERT ... ON CONFLICT DO UPDATE`` adding a ``ROLLUP_COLUMNS`` row to ``unit_rollup`` (``?`` marks for
    SQLite, ``%s`` for PostgreSQL)."""
    mark = "?" if dialect == "sqlite" else "%s"
    least, greatest = ("min", "max") if dialect == "sqlite" else ("LEAST", "GREATEST")
    sets = [f"{c} = unit_rollup.{c} + excluded.{c}" for c in SUM_COLUMNS]
    sets += [f"first_ts = {least}(unit_rollup.first_ts, excluded.first_ts)",
             f"last_ts = {greatest}(unit_rollup.last_ts, excluded.last_ts)"]
    return (f"INSERT INTO unit_rollup ({', '.join(ROLLUP_COLUMNS)}) VALUES ({', '.join(mark for _ in ROLLUP_COLUMNS)}) "
            "ON CONFLICT (experiment_id, mode, unit_id, arm, bucket) DO UPDATE SET " + ", ".join(sets))
