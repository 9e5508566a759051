"""The interaction diagnostic of a layered experiment, from stored data (issue 16; docs/analysis.md).

For the analysed experiment B and every experiment A of another layer whose units overlap B's, the per-unit sums
of B's rows (the table the analysis already holds, after any exclusion rule) are joined with the arm each unit
had in A, and ``abharness.core.stats.interaction.interaction_check`` tests whether B's effect on the primary metric
differs between A's control and A's treatment (difference in differences, delta-method SE per cell).

Cost: one per-unit read of A's rows per A (the store's rollup, like ``load_units`` for B) and a sorted-array join in
numpy on 64-bit hashes of the unit ids (``np.intersect1d`` on integers; every match confirmed on the ids);
no per-unit Python objects and no sort of string arrays.
Units with rows in two arms of A or of B (re-assignment) are left out of the join and counted.

Multiple testing: one test per (other experiment, treatment of A, treatment of B): one per pair of layers when each
runs one two-arm experiment; a layer with several mutually exclusive experiments gives one per experiment (each on
its own units; a pooled test could hide opposite interactions).
Each raises an alarm at ``p < INTERACTION_ALARM_P`` (0.001); Holm-adjusted p-values across the tests of this report
are given beside the raw ones, and the note says how many tests were run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from abharness.analysis.layered import ArmsView, arms_view, layered_experiments
from abharness.analysis.loading import UnitTable, load_units
from abharness.core.stats.interaction import INTERACTION_ALARM_P, InteractionCheck, interaction_check
from abharness.core.stats.metrics import BASE_COLUMNS, ONLINE_METRICS
from abharness.core.stats.moments import Moments
from abharness.core.stats.multiple import holm
from abharness.stores.base import EventStore

__all__ = ["InteractionRow", "LayeredSummary", "interaction_rows", "layered_summary", "join_arms"]


@dataclass(frozen=True, slots=True)
class InteractionRow:
    """One interaction test: does B's (``b_treatment`` vs ``b_control``) effect differ by A's arm?"""

    experiment_a: str
    layer_a: str
    a_control: str
    a_treatment: str
    b_control: str
    b_treatment: str
    overlap_units: int
    check: InteractionCheck
    p_holm: float = float("nan")


@dataclass(frozen=True, slots=True)
class LayeredSummary:
    """Where the analysed experiment sits in a layered file, and the interaction diagnostic."""

    experiment: Mapping[str, Any]
    interactions: tuple[InteractionRow, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    threshold: float = INTERACTION_ALARM_P

    @property
    def alarms(self) -> tuple[InteractionRow, ...]:
        return tuple(r for r in self.interactions if r.check.alarm)


def _hashes(ids: np.ndarray) -> np.ndarray:
    """Python's own 64-bit ``hash`` of each id: salted per process, which is all a join inside one process needs
    (measured 15x faster than ``pandas.util.hash_array`` on a million object strings)."""
    return np.fromiter((hash(u) for u in np.asarray(ids, dtype=object).tolist()), dtype=np.int64, count=len(ids))


def _once(h: np.ndarray) -> tuple[np.ndarray, int]:
    """Positions of the hashes that occur once, ordered by hash, and how many distinct hashes occur more often."""
    order = np.argsort(h, kind="stable")
    hs = h[order]
    same = hs[1:] == hs[:-1]
    twice = np.zeros(h.size, dtype=bool)
    twice[1:] |= same
    twice[:-1] |= same
    return order[~twice], int((same & ~np.r_[False, same[:-1]]).sum())


def join_arms(b_ids: np.ndarray, a_ids: np.ndarray, a_arms: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """For B's rows (unit ids ``b_ids``), the index of each row that has a unit in A, and that unit's arm in A.

    Returns (row indices into ``b_ids``, in order; A arm per returned row; units of A left out for having rows in
    two arms). Unit ids are hashed to 64 bits and joined as integers (``np.intersect1d``), then every match
    is confirmed on the ids themselves, so a hash collision can only drop a pair, never join two units.
    """
    a_ids = np.asarray(a_ids, dtype=object)
    b_ids = np.asarray(b_ids, dtype=object)
    ha = _hashes(a_ids)
    keep, dropped = _once(ha)
    hb = _hashes(b_ids)
    # B's ids are unique (the caller drops re-assigned units), so both sides are sets of integers
    _, in_a, rows = np.intersect1d(ha[keep], hb, assume_unique=True, return_indices=True)
    order = np.argsort(rows, kind="stable")
    rows, pos = rows[order], keep[in_a[order]]
    same = a_ids[pos] == b_ids[rows]
    rows, pos = rows[same], pos[same]
    return rows, np.asarray(a_arms, dtype=object)[pos], dropped


def interaction_rows(
    table: UnitTable, view_b: ArmsView, others: Sequence[tuple[ArmsView, UnitTable]], *, metric: str,
    alpha: float = 0.05, threshold: float = INTERACTION_ALARM_P,
) -> tuple[list[InteractionRow], list[str]]:
    """Interaction tests of B (``table``, the per-unit rows of B) against each other experiment A (its rows).

    Pure apart from numpy: ``others`` holds each A's arms and its per-unit table. Returns the rows (Holm-adjusted
    across all of them) and notes on what was left out.
    """
    spec = ONLINE_METRICS[metric]
    notes: list[str] = []
    b_ids = np.asarray(table.unit_ids, dtype=object)
    b_keep, twice = _once(_hashes(b_ids))
    b_keep = np.sort(b_keep)
    if twice:
        notes.append(f"{twice} units of {view_b.experiment_id!r} with rows in two of its arms are left out of the "
                     "interaction check")
    b_arm = np.asarray(table.arm, dtype=object)[b_keep]
    values = table.values[b_keep]
    rows: list[InteractionRow] = []
    for view_a, a_table in others:
        idx, a_arm, dropped = join_arms(b_ids[b_keep], a_table.unit_ids, a_table.arm)
        if dropped:
            notes.append(f"{dropped} units of {view_a.experiment_id!r} with rows in two of its arms are left out of "
                         "its interaction check")
        if idx.size == 0:
            notes.append(f"no unit of {view_b.experiment_id!r} is also in {view_a.experiment_id!r} (layer "
                         f"{view_a.layer!r}) in the window: no interaction check for that pair")
            continue
        vb, va, x = b_arm[idx], a_arm, values[idx]
        for a_t in view_a.treatments:
            for b_t in view_b.treatments:
                cells = {(a, b): Moments.from_matrix(BASE_COLUMNS, x[(va == a) & (vb == b)])
                         for a in (view_a.control, a_t) for b in (view_b.control, b_t)}
                check = interaction_check(cells, spec, a_arms=(view_a.control, a_t), b_arms=(view_b.control, b_t),
                                          alpha=alpha, threshold=threshold)
                rows.append(InteractionRow(view_a.experiment_id, view_a.layer, view_a.control, a_t,
                                           view_b.control, b_t, int(idx.size), check))
    finite = [i for i, r in enumerate(rows) if np.isfinite(r.check.p_value)]
    if finite:
        adjusted = holm([rows[i].check.p_value for i in finite])
        for i, p in zip(finite, adjusted):
            r = rows[i]
            rows[i] = InteractionRow(r.experiment_a, r.layer_a, r.a_control, r.a_treatment, r.b_control,
                                     r.b_treatment, r.overlap_units, r.check, float(p))
    return rows, notes


def layered_summary(
    store: EventStore, config: Any, view: ArmsView, table: UnitTable, *, metric: str, since: float | None,
    until: float | None, aggregation: str = "rollup", alpha: float = 0.05,
    progress: Callable[[str], None] | None = None, audit: Callable[[], Sequence[Any]] | None = None,
) -> LayeredSummary:
    """The layered section of a report: the experiment's place in the file and its interaction diagnostic.

    The holdout pseudo-experiment gets no interaction check (its held-out units are in no experiment).
    """
    say = progress or (lambda _m: None)
    if view.holdout:
        return LayeredSummary(view.summary(), (), ("the holdout compares units that see only the defaults of every "
                                                   "layer with everyone else: no interaction check applies",))
    present = set(store.experiments())
    others: list[tuple[ArmsView, UnitTable]] = []
    for layer, eid in layered_experiments(config, audit):
        if layer == view.layer or eid not in present:
            continue
        va = arms_view(config, eid, audit)
        if va is None or not va.treatments:
            continue
        say(f"interaction check: reading the units of {eid!r}")
        others.append((va, load_units(store, eid, since=since, until=until, aggregation=aggregation)))
    rows, notes = interaction_rows(table, view, others, metric=metric, alpha=alpha)
    if rows:
        n = len(rows)
        notes.append(
            f"{n} interaction test{'s' if n != 1 else ''} on {metric} (one per experiment of another layer and "
            f"treatment pair); each alarms at p < {INTERACTION_ALARM_P:g}, so about {n * INTERACTION_ALARM_P:.2g} "
            "false alarms are expected in all; Holm-adjusted p-values are given beside the raw ones. An alarm says "
            "the two experiments' effects do not add up: read each effect within the other's arms before shipping")
    return LayeredSummary(view.summary(), tuple(rows), tuple(notes))

