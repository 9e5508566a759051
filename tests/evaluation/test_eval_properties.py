"""Hypothesis properties of the metric and significance cores, and HTML helper escaping."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from abharness.core.irmetrics import compute
from abharness.core.significance import paired_randomization_test
from abharness.report.html import fmt
from abharness.report.templating import render

docs = st.sampled_from([f"d{i}" for i in range(12)])


@settings(max_examples=60, deadline=None)
@given(
    qrels=st.dictionaries(docs, st.integers(0, 3), min_size=1, max_size=6),
    ranking=st.lists(docs, unique=True, max_size=12),
)
def test_metrics_lie_in_unit_interval_and_perfect_is_max(qrels: dict, ranking: list) -> None:
    metrics = ["ndcg@5", "recall@5", "map@10", "mrr@10", "precision@5", "hit_rate@3"]
    got = compute({"q": ranking}, {"q": qrels}, metrics)
    if not any(g >= 1 for g in qrels.values()):
        assert all(v.size == 0 for v in got.values())
        return
    ideal = sorted(qrels, key=lambda d: -qrels[d])
    best = compute({"q": ideal}, {"q": qrels}, metrics)
    for m in metrics:
        assert 0.0 <= got[m][0] <= 1.0 + 1e-12
        assert got[m][0] <= best[m][0] + 1e-12 or m.startswith("precision")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=40), st.integers(0, 5))
def test_randomization_p_is_symmetric_and_bounded(pairs: list, seed: int) -> None:
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    p_ab = paired_randomization_test(a, b, n_resamples=300, seed=seed)
    p_ba = paired_randomization_test(b, a, n_resamples=300, seed=seed)
    assert 0.0 < p_ab <= 1.0
    assert p_ab == p_ba  # swapping the systems flips every difference: same |statistic|, same null


def test_pages_escape_text() -> None:
    """Every page goes through the autoescaping Jinja2 templates: text from reports never becomes markup."""
    section = {"anchor": "s", "title": "S <1>", "verdict": "improved", "headline": "a < b", "blocks": [
        {"kind": "table", "headers": ["q"], "left": (0,),
         "rows": [["<script>alert(1)</script>"], [fmt(None)], [fmt(0.5)]]}, {"kind": "note", "text": "<b>n</b>"}]}
    doc = render("evaluation.html.j2", title="t & t", nav=[("s", "S <1>")], summary=[["x", {"badge": "pass"}, "y"]],
                 timing="", failed=False, sections=[section])
    assert "<script>alert" not in doc and "&lt;script&gt;" in doc and "—" in doc and "0.5000" in doc
    assert "t &amp; t" in doc and "S &lt;1&gt;" in doc and "a &lt; b" in doc and 'data-section="s"' in doc
    assert "&lt;b&gt;n&lt;/b&gt;" in doc and '<span class="badge pass">pass</span>' in doc
