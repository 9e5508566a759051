"""Who wins an interleaved impression: the credit rule every part of the package applies.

Rule (Chapelle, Joachims, Radlinski & Yue, "Large-scale validation and analysis of interleaved search
evaluation", ACM TOIS 2012, section 3): each click counts for the team that contributed the clicked result (see
:func:`abharness.core.interleaving.teamdraft.team_draft`); clicks on results without a team count for no one. The
impression is a *win* for the team with strictly the most clicks, a *tie* when two or more teams share the highest
positive count, and *no_click* when no team got a click.

Two forms of the same rule: :func:`credit_impression` for one impression with any number of teams, and
:func:`credit_two_teams` vectorised over many impressions of a control/treatment pair (the simulations). The
stores compute it in SQL (``abharness.stores.queries.interleave_aggregates_sql``); a test checks that SQL against
:func:`credit_impression` on random impressions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["ImpressionCredit", "credit_impression", "credit_two_teams"]


@dataclass(frozen=True, slots=True)
class ImpressionCredit:
    """The outcome of one interleaved impression; ``team`` is the winner for ``"win"``, else ``None``."""

    outcome: Literal["win", "tie", "no_click"]
    team: str | None = None


def credit_impression(click_teams: Iterable[str | None]) -> ImpressionCredit:
    """Credit one impression from the team of each click on it (``None``: a click on a result without a team)."""
    counts = Counter(t for t in click_teams if t is not None)
    if not counts:
        return ImpressionCredit("no_click")
    top = max(counts.values())
    leaders = [t for t, n in counts.items() if n == top]
    return ImpressionCredit("win", leaders[0]) if len(leaders) == 1 else ImpressionCredit("tie")


def credit_two_teams(clicks: np.ndarray, team_is_treatment: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per impression (row) booleans (treatment wins, control wins, tie) for two-team interleaved lists.

    ``clicks`` and ``team_is_treatment`` are (impressions, k) boolean arrays: whether position r was clicked and
    whether it was contributed by the treatment team (every position belongs to one team).
    """
    clicks = np.asarray(clicks, dtype=bool)
    team = np.asarray(team_is_treatment, dtype=bool)
    ct = (clicks & team).sum(axis=1)
    cc = (clicks & ~team).sum(axis=1)
    return ct > cc, cc > ct, (ct == cc) & (ct > 0)
