"""Retrieval comparison of two runs on one qrels split: per-metric paired tests with Holm across metrics,
per-query win/tie/loss counts, and the queries that lost most (with their text). Pure: runs in, dict out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from abharness.core.irmetrics import MetricTable, compute_table
from abharness.core.significance import PairedComparison, compare_paired
from abharness.core.stats.multiple import holm
from abharness.evaluation.checks import combine_verdicts, significance_verdict

__all__ = ["score_runs", "compare_tables", "comparison_dict"]


def score_runs(
    baseline_run: Mapping[str, Sequence[str]],
    candidate_run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    metrics: Sequence[str],
) -> tuple[MetricTable, MetricTable]:
    """Per-query metric tables of both runs (same query order)."""
    return compute_table(baseline_run, qrels, metrics), compute_table(candidate_run, qrels, metrics)


def compare_tables(
    base: MetricTable, cand: MetricTable, metrics: Sequence[str], *, n_resamples: int, seed: int, alpha: float = 0.05
) -> list[PairedComparison]:
    """Paired comparison per metric (randomization p, bootstrap CI), with Holm-adjusted p across the metrics."""
    comps = [
        compare_paired(m, base.scores[m], cand.scores[m], n_resamples=n_resamples, alpha=alpha, seed=seed)
        for m in metrics
    ]
    adjusted = holm([c.p_value for c in comps])
    return [replace(c, p_holm=p) for c, p in zip(comps, adjusted)]


def comparison_dict(
    base: MetricTable,
    cand: MetricTable,
    metrics: Sequence[str],
    primary: str,
    queries: Mapping[str, str],
    *,
    n_resamples: int,
    seed: int,
    alpha: float,
    worst: int = 10,
    exclude: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON-ready retrieval section: metrics table, verdict on the primary metric, worst queries."""
    if exclude:
        keep = [q for q in base.query_ids if q not in set(exclude)]
        base, cand = base.subset(keep), cand.subset(keep)
    comps = compare_tables(base, cand, metrics, n_resamples=n_resamples, seed=seed, alpha=alpha)
    rows = [
        {
            "metric": c.metric, "baseline": c.baseline, "candidate": c.candidate, "delta": c.delta,
            "ci": [c.ci_low, c.ci_high], "p_value": c.p_value, "p_holm": c.p_holm,
            "wins": c.wins, "ties": c.ties, "losses": c.losses,
            "verdict": significance_verdict(c.delta, c.p_holm, alpha),
        }
        for c in comps
    ]
    d = cand.scores[primary] - base.scores[primary]
    order = np.argsort(d, kind="stable")
    worst_rows = [
        {
            "query_id": base.query_ids[i], "query": queries.get(base.query_ids[i], ""),
            "baseline": float(base.scores[primary][i]), "candidate": float(cand.scores[primary][i]),
            "delta": float(d[i]),
        }
        for i in order[:worst]
        if d[i] < 0
    ]
    primary_row = next(r for r in rows if r["metric"] == primary)
    return {
        "n_queries": len(base.query_ids),
        "primary_metric": primary,
        "metrics": rows,
        "worst_queries": worst_rows,
        "query_ids": list(base.query_ids),
        "per_query_delta": [float(x) for x in d],
        "verdict": primary_row["verdict"],
        "all_metrics_verdict": combine_verdicts([r["verdict"] for r in rows]),
    }
