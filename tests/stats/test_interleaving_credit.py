"""The interleaving credit rule (core/interleaving/credit.py): hand-worked cases, and its two forms agree.

The stores' SQL is checked against ``credit_impression`` in tests/stores/test_store_contract.py.
"""

from __future__ import annotations

import numpy as np

from abharness.core.interleaving import ImpressionCredit, credit_impression, credit_two_teams


def test_hand_worked_impressions() -> None:
    # Chapelle et al. 2012: the team with strictly more clicks wins; equal positive counts tie; no clicks: no_click.
    assert credit_impression([]) == ImpressionCredit("no_click")
    assert credit_impression([None, None]) == ImpressionCredit("no_click")  # clicks without a team count for no one
    assert credit_impression(["A"]) == ImpressionCredit("win", "A")
    assert credit_impression(["A", "B", "B"]) == ImpressionCredit("win", "B")
    assert credit_impression(["A", "B"]) == ImpressionCredit("tie")
    assert credit_impression(["A", "B", "C", "C", "A"]) == ImpressionCredit("tie")  # multileaving: 2 leaders
    assert credit_impression(["A", None, None]) == ImpressionCredit("win", "A")


def test_vectorised_two_team_form_agrees_with_the_scalar_rule() -> None:
    rng = np.random.default_rng(3)
    clicks = rng.random((2000, 6)) < 0.2
    team = rng.random((2000, 6)) < 0.5
    win_t, win_c, tie = credit_two_teams(clicks, team)
    for i in range(clicks.shape[0]):
        c = credit_impression("t" if team[i, r] else "c" for r in range(6) if clicks[i, r])
        assert (win_t[i], win_c[i], tie[i]) == (c == ImpressionCredit("win", "t"), c == ImpressionCredit("win", "c"),
                                                 c.outcome == "tie")
    assert win_t.any() and win_c.any() and tie.any() and not (win_t & win_c).any()
