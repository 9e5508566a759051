"""The simulator against the real proxy app (in-process): the split, stickiness, real click tokens."""

from __future__ import annotations

import numpy as np

from abharness.core.assignment import assign
from abharness.stores import open_store


def test_simulated_traffic_honours_the_split_and_sticks_to_units(logged_ab) -> None:
    cfg, result, _, url = logged_ab
    summary = result.to_dict()
    assert result.errors == 0, summary
    assert result.searches == 60 * 6
    assert summary["units_seeing_more_than_one_arm"] == 0
    # every unit got the arm the salted hash assigns it
    for unit, arms in result.unit_arms.items():
        assert arms == {assign(cfg.salt, unit, cfg.ordered_weights())}
    # units per arm within the binomial 99.9% band around 50%
    n_units = len(result.unit_arms)
    n_base = sum(1 for a in result.unit_arms.values() if a == {"baseline"})
    assert abs(n_base - n_units / 2) <= 3.3 * np.sqrt(n_units / 4)
    # every click went through /click with a real token and was stored
    assert result.clicks_sent > 0 and result.clicks_accepted == result.clicks_sent
    store = open_store(url)
    try:
        counts = store.counts(cfg.experiment_id)
    finally:
        store.close()
    assert counts["impressions"] == result.searches
    assert counts["clicks"] == result.clicks_accepted
