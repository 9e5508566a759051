"""The table of online metrics: each is a ratio of two per-unit sums. Names are parsed from this one table, so
error messages and the CLI list the same valid names.

These are the *online* metrics of an A/B test (``OnlineMetricSpec``, ``ONLINE_METRICS``, ``parse_online_metrics``),
computed from logged clicks. The *offline* IR metrics over judged queries (``"ndcg@10"``) are a different family:
``IRMetricSpec`` / ``IR_METRICS`` / ``parse_ir_metrics`` in :mod:`abharness.core.irmetrics`.

Per unit (randomisation key) the store returns sums over the unit's impressions in the window
(:class:`abharness.core.events.UnitAggregate`); the columns below are named after those sums.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from abharness.errors import ConfigError

__all__ = [
    "OnlineMetricSpec", "ONLINE_METRICS", "OUTCOME_METRICS", "GUARDRAIL_METRICS", "BASE_COLUMNS", "parse_online_metrics",
]

#: per-unit sums available from the store, in this order in every matrix built by the analysis.
BASE_COLUMNS: tuple[str, ...] = (
    "impressions",
    "clicks",
    "clicked_impressions",
    "abandoned",
    "successes",
    "sum_reciprocal_rank",
    "sum_time_to_first_click",
    "sum_latency_ms",
    "errors",
    "fallbacks",
)


@dataclass(frozen=True, slots=True)
class OnlineMetricSpec:
    """A ratio metric sum(numerator) / sum(denominator) over units, and which direction is better.

    Guardrails carry a non-inferiority margin: ``margin_kind="relative"`` means the treatment may be at most
    ``margin`` x 100 % worse than control, ``"absolute"`` at most ``margin`` worse in the metric's own unit.
    """

    name: str
    label: str
    numerator: str
    denominator: str
    higher_is_better: bool
    guardrail: bool = False
    margin: float = 0.0
    margin_kind: Literal["absolute", "relative"] = "absolute"


ONLINE_METRICS: dict[str, OnlineMetricSpec] = {
    m.name: m
    for m in (
        OnlineMetricSpec("ctr", "CTR (share of searches with a click)", "clicked_impressions", "impressions", True),
        OnlineMetricSpec("mrr", "MRR of clicks (capped at k)", "sum_reciprocal_rank", "impressions", True),
        OnlineMetricSpec("success_at_k", "success@k (a click in the top k)", "successes", "impressions", True),
        OnlineMetricSpec("abandonment", "abandonment (no click)", "abandoned", "impressions", False),
        OnlineMetricSpec("clicks_per_query", "clicks per query", "clicks", "impressions", True),
        OnlineMetricSpec(
            "time_to_first_click", "time to first click (s, clicked searches)", "sum_time_to_first_click",
            "clicked_impressions", False,
        ),
        OnlineMetricSpec("latency_ms", "latency (ms, mean)", "sum_latency_ms", "impressions", False, True, 0.10, "relative"),
        OnlineMetricSpec("error_rate", "error rate", "errors", "impressions", False, True, 0.005, "absolute"),
        OnlineMetricSpec("fallback_rate", "fallback rate", "fallbacks", "impressions", False, True, 0.01, "absolute"),
    )
}
OUTCOME_METRICS: tuple[str, ...] = tuple(n for n, m in ONLINE_METRICS.items() if not m.guardrail)
GUARDRAIL_METRICS: tuple[str, ...] = tuple(n for n, m in ONLINE_METRICS.items() if m.guardrail)


def parse_online_metrics(names: Iterable[str] | None) -> tuple[str, ...]:
    """Validate outcome metric names (``None`` means all); raises ``ConfigError`` listing the valid ones."""
    if names is None:
        return OUTCOME_METRICS
    out: list[str] = []
    for raw in names:
        for name in (p.strip().lower().replace("-", "_").replace("@k", "_at_k") for p in raw.split(",")):
            if not name:
                continue
            if name not in ONLINE_METRICS or ONLINE_METRICS[name].guardrail:
                raise ConfigError(
                    f"unknown metric {name!r}: choose from {', '.join(OUTCOME_METRICS)} "
                    f"(guardrails {', '.join(GUARDRAIL_METRICS)} are always checked)"
                )
            if name not in out:
                out.append(name)
    if not out:
        raise ConfigError(f"no metric given: choose from {', '.join(OUTCOME_METRICS)}")
    return tuple(out)
