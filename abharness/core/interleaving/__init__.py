"""Interleaving, in one place: build the list, credit the clicks, test the preference.

- ``teamdraft``: team-draft interleaving / multileaving (which team contributes each shown result).
- ``credit``: the rule that turns the clicks on one interleaved impression into a win, a tie or no click.
- ``inference``: per-unit preference test, Delta_AB, sign test (``interleaving_test``) and the ship / keep-running /
  rollback rule of an interleaving-only experiment (``decide_interleaving``).

Dependencies point one way: this package builds on ``abharness.core.stats`` (moments, ratio tests, mSPRT,
``Decision``); ``core.stats`` knows nothing of interleaving.
"""

from __future__ import annotations

from abharness.core.interleaving.credit import ImpressionCredit, credit_impression, credit_two_teams
from abharness.core.interleaving.inference import InterleavingResult, decide_interleaving, interleaving_test
from abharness.core.interleaving.teamdraft import team_draft

__all__ = [
    "ImpressionCredit", "InterleavingResult", "credit_impression", "credit_two_teams", "decide_interleaving",
    "interleaving_test", "team_draft",
]
