"""Reading logged impressions for replay, and judgments derived from logged clicks (pure apart from the read).

Position-debiased click judgments: clicks over expected clicks (COEC; Zhang & Jones, "Clicks over expected
clicks", Yahoo! tech report 2007; Chapelle & Zhang 2009 discuss it as a click-model baseline). With ctr(r) the
click rate of rank r over every logged impression in the window (all arms), a (query, document) pair has

    COEC(q, d) = clicks(q, d) / sum_{impressions of q showing d} ctr(rank of d in that impression),

the clicks it received divided by the clicks an average result would have received at the same ranks. COEC > 1
means "clicked more than its positions explain". It is turned into graded labels for the IR metrics:
grade = min(max_grade, floor(COEC)) for pairs with at least ``min_clicks`` clicks (so 0 for pairs clicked less
than their positions predict). Assumption: the examination bias of a rank is the same for every query (the
position-based model).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from abharness.core.events import Click, Impression
from abharness.errors import AnalysisError
from abharness.stores.base import EventStore

__all__ = ["LoggedImpression", "read_logged", "position_ctr", "coec_judgments"]


@dataclass(frozen=True, slots=True)
class LoggedImpression:
    """What replay needs from one impression: who, which arm/mode, the shown list, and clicks in time order."""

    impression_id: str
    unit_id: str
    arm: str
    mode: str
    query: str
    k: int
    shown: tuple[str, ...]
    clicked: tuple[str, ...]  # doc ids in click order (ts, position), each once
    click_positions: tuple[int, ...]
    fingerprints: Mapping[str, Mapping[str, str]]
    latency_ms: float
    fallback: bool
    error: bool
    ts: float
    context: Mapping[str, object]


def _compact(imp: Impression, clicks: Sequence[Click]) -> LoggedImpression:
    seen: set[str] = set()
    ordered = []
    for c in sorted(clicks, key=lambda c: (c.ts, c.position)):
        if c.doc_id not in seen:
            seen.add(c.doc_id)
            ordered.append(c)
    return LoggedImpression(
        impression_id=imp.impression_id,
        unit_id=imp.unit_id,
        arm=imp.arm,
        mode=imp.mode,
        query=imp.query,
        k=imp.k,
        shown=tuple(r.doc_id for r in sorted(imp.results, key=lambda r: r.position)),
        clicked=tuple(c.doc_id for c in ordered),
        click_positions=tuple(c.position for c in ordered),
        fingerprints=imp.fingerprints,
        latency_ms=imp.latency_ms,
        fallback=imp.fallback,
        error=imp.error is not None,
        ts=imp.ts,
        context=imp.context,
    )


def read_logged(
    store: EventStore,
    experiment_id: str,
    *,
    since: float | None = None,
    until: float | None = None,
    sample: int | None = None,
    seed: int = 0,
    batch_size: int = 2000,
) -> list[LoggedImpression]:
    """Impressions of the window (via ``EventStore.iter_impressions``), optionally a seeded uniform sample of
    ``sample`` of them (reservoir sampling, so the window is read once in batches)."""
    if experiment_id not in store.experiments():
        known = ", ".join(store.experiments()) or "none"
        raise AnalysisError(f"experiment {experiment_id!r} has no impressions in {store.url}; known: {known}")
    if sample is not None and sample < 1:
        raise AnalysisError(f"--sample must be >= 1, got {sample}")
    rng = np.random.default_rng(seed)
    out: list[LoggedImpression] = []
    seen = 0
    for imp, clicks in store.iter_impressions(experiment_id, since=since, until=until, batch_size=batch_size):
        seen += 1
        if sample is None or len(out) < sample:
            out.append(_compact(imp, clicks))
        else:
            j = int(rng.integers(0, seen))
            if j < sample:
                out[j] = _compact(imp, clicks)
    if not out:
        raise AnalysisError(
            f"experiment {experiment_id!r} has no impressions between since={since} and until={until}; "
            "widen the window"
        )
    out.sort(key=lambda r: (r.ts, r.impression_id))
    return out


def position_ctr(logged: Sequence[LoggedImpression]) -> np.ndarray:
    """ctr[r-1] = clicks at rank r / impressions that showed a result at rank r (all arms and modes)."""
    k = max((len(r.shown) for r in logged), default=0)
    shown = np.zeros(k)
    clicked = np.zeros(k)
    for r in logged:
        shown[: len(r.shown)] += 1
        for p in r.click_positions:
            if 1 <= p <= k:
                clicked[p - 1] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(shown > 0, clicked / np.maximum(shown, 1), 0.0)


def coec_judgments(
    logged: Sequence[LoggedImpression], *, min_clicks: int = 1, max_grade: int = 3
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    """Graded qrels keyed by query text from clicks over expected clicks; also the raw COEC values."""
    ctr = position_ctr(logged)
    expected: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    clicks: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in logged:
        for i, d in enumerate(r.shown):
            expected[r.query][d] += float(ctr[i])
        for d in r.clicked:
            clicks[r.query][d] += 1
    coec: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for q, docs in clicks.items():
        for d, c in docs.items():
            e = expected[q].get(d, 0.0)
            value = c / e if e > 0 else math.inf
            coec.setdefault(q, {})[d] = value
            if c >= min_clicks:
                grade = min(max_grade, int(math.floor(value))) if math.isfinite(value) else max_grade
                if grade > 0:
                    qrels.setdefault(q, {})[d] = grade
    return qrels, coec
