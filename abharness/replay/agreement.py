"""Offline (replay) deltas beside online deltas: do they agree? (pure)

For each pair (offline measure, online metric) we report both deltas (treatment - control) with their (1 - alpha)
intervals and:

- ``sign_agrees``: the two point estimates have the same sign (None when either is exactly 0);
- ``magnitude_ratio``: offline delta / online delta (only meaningful for the same metric on the same scale:
  click-label metrics against their online counterparts; for IR metrics it is a unit-free indication);
- ``verdict``: ``agree`` (both intervals exclude 0 on the same side), ``disagree`` (both exclude 0 on opposite
  sides), ``same sign (n.s.)`` / ``opposite sign (n.s.)`` (n.s.: not both intervals exclude 0), or ``n/a`` (one side
  missing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Agreement", "agreement_rows", "classify"]


@dataclass(frozen=True, slots=True)
class Agreement:
    offline_source: str
    offline_metric: str
    online_metric: str
    offline_delta: float
    offline_lower: float
    offline_upper: float
    online_delta: float
    online_lower: float
    online_upper: float
    sign_agrees: bool | None
    magnitude_ratio: float
    verdict: str


def _side(lo: float, hi: float) -> int:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0
    return 1 if lo > 0 else (-1 if hi < 0 else 0)


def classify(off: tuple[float, float, float], on: tuple[float, float, float]) -> tuple[bool | None, float, str]:
    """(sign agrees, magnitude ratio, verdict) for (delta, lower, upper) offline and online."""
    d_off, d_on = off[0], on[0]
    if not (math.isfinite(d_off) and math.isfinite(d_on)):
        return None, float("nan"), "n/a"
    sign = None if d_off == 0 or d_on == 0 else (d_off > 0) == (d_on > 0)
    ratio = d_off / d_on if d_on != 0 else float("nan")
    s_off, s_on = _side(off[1], off[2]), _side(on[1], on[2])
    if s_off and s_on:
        verdict = "agree" if s_off == s_on else "disagree"
    elif sign is None:
        verdict = "n/a"
    else:
        verdict = "same sign (n.s.)" if sign else "opposite sign (n.s.)"
    return sign, ratio, verdict


PAIRS: tuple[tuple[str, str, str], ...] = (
    ("click labels", "ctr", "ctr"),
    ("click labels", "mrr", "mrr"),
    ("click labels", "success_at_k", "success_at_k"),
    ("click labels", "clicks_per_query", "clicks_per_query"),
    ("COEC judgments", "ndcg@10", "mrr"),
    ("COEC judgments", "mrr@10", "mrr"),
    ("qrels", "ndcg@10", "mrr"),
    ("qrels", "mrr@10", "mrr"),
    ("qrels", "recall@10", "ctr"),
)


def agreement_rows(online: Mapping, offline_click: Mapping, coec: Mapping, qrels: Mapping) -> tuple[Agreement, ...]:
    """Agreement rows for every pair in ``PAIRS`` whose offline and online sides both exist."""
    rows = []
    for source, off_metric, on_metric in PAIRS:
        on = online.get(on_metric)
        if on is None:
            continue
        if source == "click labels":
            o = offline_click.get(off_metric)
            off = None if o is None else (o.delta, o.lower, o.upper)
        else:
            table = coec if source == "COEC judgments" else qrels
            o = table.get(off_metric)
            off = None if o is None else (o.delta, o.ci_low, o.ci_high)
        if off is None:
            continue
        on_t = (on.lift, on.lift_lower, on.lift_upper)
        sign, ratio, verdict = classify(off, on_t)
        rows.append(Agreement(source, off_metric, on_metric, *off, *on_t, sign, ratio, verdict))
    return tuple(rows)
