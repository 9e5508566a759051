"""Online metrics computed offline: logged clicks used as labels on a (replayed) ranked list (pure).

For one logged impression with clicked documents c_1, c_2, ... (in click order) and a ranked list L cut at the
impression's k, the per-impression sums are those the store computes online (``abharness.stores.queries``):

- ``clicks``               number of clicked documents in L
- ``clicked_impressions``  1 if any clicked document is in L (CTR numerator), ``abandoned`` = 1 - that
- ``successes``            same as clicked_impressions (a click within the top k)
- ``sum_reciprocal_rank``  1 / rank in L of the *first* clicked document c_1, 0 when it is not in L

When L is the list that was shown, these equal the online values exactly, so the per-unit sums, the delta-method
estimates and their intervals are the online analysis' own (the replay tests check this). For another list
(the other arm's ranking of the same query) they estimate what the online metric would have been had that list
been shown, *assuming the user would click the same documents wherever they appear*: an optimistic,
position-blind counterfactual, biased towards the arm that served the impression (only its documents could be
clicked). Replay therefore evaluates both arms on the impressions of *both* arms, so the bias is symmetric.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from abharness.core.stats.metrics import BASE_COLUMNS
from abharness.core.stats.moments import Moments
from abharness.replay.logged import LoggedImpression

__all__ = ["impression_row", "unit_moments", "REPLAYABLE_METRICS"]

#: online metrics that can be recomputed from a list and logged clicks (time to first click cannot).
REPLAYABLE_METRICS: tuple[str, ...] = ("ctr", "mrr", "success_at_k", "clicks_per_query", "abandonment")

_COL = {c: i for i, c in enumerate(BASE_COLUMNS)}


def impression_row(imp: LoggedImpression, ranked: Sequence[str], *, guardrails: bool = True) -> np.ndarray:
    """The BASE_COLUMNS sums of one impression for list ``ranked`` (see module docstring)."""
    row = np.zeros(len(BASE_COLUMNS))
    top = list(ranked[: imp.k])
    rank = {d: i + 1 for i, d in enumerate(top)}
    n_clicked = sum(1 for d in imp.clicked if d in rank)
    any_click = 1.0 if n_clicked else 0.0
    row[_COL["impressions"]] = 1.0
    row[_COL["clicks"]] = n_clicked
    row[_COL["clicked_impressions"]] = any_click
    row[_COL["abandoned"]] = 1.0 - any_click
    row[_COL["successes"]] = any_click
    if imp.clicked and imp.clicked[0] in rank:
        row[_COL["sum_reciprocal_rank"]] = 1.0 / rank[imp.clicked[0]]
    if guardrails:
        row[_COL["sum_latency_ms"]] = imp.latency_ms
        row[_COL["errors"]] = float(imp.error)
        row[_COL["fallbacks"]] = float(imp.fallback)
    return row


def unit_moments(units: Iterable[str], rows: np.ndarray, columns: Sequence[str] = BASE_COLUMNS) -> Moments:
    """Sum impression rows per unit and return the sufficient statistics over units (one row per unit)."""
    units = list(units)
    if not units:
        return Moments.empty(columns)
    index: dict[str, int] = {}
    ids = np.array([index.setdefault(u, len(index)) for u in units])
    per_unit = np.zeros((len(index), rows.shape[1]))
    np.add.at(per_unit, ids, rows)
    return Moments.from_matrix(columns, per_unit)

