"""Bots and outliers: rules that take units out of an analysis before any statistic is computed.

Rules (``ExclusionRules``; in the experiment file under ``exclusions:`` or as ``analyze`` options), applied in this
order, each unit counted under the first rule that removes it:

1. ``crawler_user_agents``: a unit that searched with a user agent on the crawler list of the ``crawlerdetect``
   package (a maintained port of JayBizzle/Crawler-Detect; the proxy records ``context.user_agent`` at search time).
2. ``max_searches_per_day``: a unit with more than N searches on any UTC day.
3. ``min_click_delay_ms``: a unit at least half of whose clicks came sooner than this after the results were
   served (faster than people read and click).
4. ``winsorize_percentile``: no unit is removed; every per-unit sum (impressions, clicks, successes, ...) above the
   p-th percentile of that column over the remaining units, both arms pooled, is set to that percentile (the
   classic winsorization of per-unit counts), so a few very heavy units cannot dominate a ratio metric.

The evidence comes from the store as aggregates (``EventStore.unit_activity`` and ``unit_aggregates`` with the
``user_agent`` segment), never as raw rows. ``ExclusionSummary`` says how many units, impressions and clicks each
rule removed (or, for winsorization, capped away) per arm.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from abharness.analysis.loading import UnitTable
from abharness.core.stats.srm import SRMResult
from abharness.errors import ConfigError
from abharness.stores.base import EventStore

__all__ = [
    "FAST_CLICK_SHARE",
    "ExclusionRules",
    "ExclusionSummary",
    "RuleEffect",
    "apply_exclusions",
    "exclude_interleaving",
    "excluded_units",
]

#: share of a unit's clicks that must be faster than ``min_click_delay_ms`` for the unit to be excluded.
FAST_CLICK_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class ExclusionRules:
    """Which units to leave out before any statistic (see the module docstring). Defaults: none."""

    max_searches_per_day: int | None = None
    min_click_delay_ms: float | None = None
    crawler_user_agents: bool = False
    winsorize_percentile: float | None = None

    def active(self) -> bool:
        return any(v not in (None, False) for v in (self.max_searches_per_day, self.min_click_delay_ms,
                                                    self.crawler_user_agents, self.winsorize_percentile))

    def validated(self) -> ExclusionRules:
        if self.max_searches_per_day is not None and self.max_searches_per_day < 1:
            raise ConfigError(f"max_searches_per_day={self.max_searches_per_day}: must be >= 1, e.g. 500")
        if self.min_click_delay_ms is not None and self.min_click_delay_ms <= 0:
            raise ConfigError(f"min_click_delay_ms={self.min_click_delay_ms}: must be > 0, e.g. 300")
        if self.winsorize_percentile is not None and not 50 < self.winsorize_percentile < 100:
            raise ConfigError(f"winsorize_percentile={self.winsorize_percentile}: must be in (50, 100), e.g. 99")
        return self

    @classmethod
    def from_config(cls, cfg: Any) -> ExclusionRules:
        """From an ``exclusions:`` section (a pydantic model or a mapping); None gives no rules."""
        if cfg is None:
            return cls()
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        return cls(max_searches_per_day=get("max_searches_per_day"), min_click_delay_ms=get("min_click_delay_ms"),
                   crawler_user_agents=bool(get("crawler_user_agents", False)),
                   winsorize_percentile=get("winsorize_percentile"))


@dataclass(frozen=True, slots=True)
class RuleEffect:
    """What one rule took out, per arm: units excluded (winsorization: units capped), impressions and clicks."""

    rule: str
    units: dict[str, int]
    impressions: dict[str, float]
    clicks: dict[str, float]


@dataclass(frozen=True, slots=True)
class ExclusionSummary:
    """Units per arm before and after the rules, each rule's effect, and the SRM test on all units."""

    rules: ExclusionRules
    effects: tuple[RuleEffect, ...]
    units_before: dict[str, int]
    units_after: dict[str, int]
    srm_before: SRMResult | None = None


def _per_arm(table: UnitTable, mask: np.ndarray, arms: list[str], col: int | None) -> dict[str, Any]:
    if col is None:
        return {a: int(np.sum(mask & (table.arm == a))) for a in arms}
    return {a: float(table.values[mask & (table.arm == a), col].sum()) for a in arms}


def _subset(table: UnitTable, keep: np.ndarray, values: np.ndarray | None = None) -> UnitTable:
    vals = table.values[keep] if values is None else values
    return UnitTable(table.unit_ids[keep], table.arm[keep], table.segment[keep], table.first_ts[keep], vals)


def _crawler_units(store: EventStore, experiment_id: str, since: float | None, until: float | None,
                   modes: tuple[str, ...] = ("ab",)) -> set[str]:
    from crawlerdetect import CrawlerDetect

    detector = CrawlerDetect()
    verdicts: dict[str, bool] = {}
    units: set[str] = set()
    for row in store.unit_aggregates(experiment_id, since=since, until=until, segment="user_agent", modes=modes):
        ua = row.segment
        if not ua:
            continue
        if ua not in verdicts:
            verdicts[ua] = bool(detector.isCrawler(ua))
        if verdicts[ua]:
            units.add(row.unit_id)
    return units


def excluded_units(
    store: EventStore, experiment_id: str, rules: ExclusionRules, *, since: float | None, until: float | None,
    modes: tuple[str, ...] = ("ab",),
) -> dict[str, str]:
    """Unit id -> the first rule (1-3) that excludes it, from store aggregates over impressions of ``modes``."""
    reason: dict[str, str] = {}
    if rules.crawler_user_agents:
        for u in _crawler_units(store, experiment_id, since, until, modes):
            reason.setdefault(u, "crawler user agent")
    if rules.max_searches_per_day is not None or rules.min_click_delay_ms is not None:
        fast_s = (rules.min_click_delay_ms or 0.0) / 1000.0
        for unit, _arm, max_daily, clicks, fast in store.unit_activity(experiment_id, since=since, until=until,
                                                                       fast_click_s=fast_s, modes=modes):
            if rules.max_searches_per_day is not None and max_daily > rules.max_searches_per_day:
                reason.setdefault(unit, f"more than {rules.max_searches_per_day} searches on a day")
            if rules.min_click_delay_ms is not None and clicks and fast >= FAST_CLICK_SHARE * clicks:
                reason.setdefault(unit, f"clicks faster than {rules.min_click_delay_ms:g} ms")
    return reason


def exclude_interleaving(inter: Any, reason: dict[str, str]) -> tuple[Any, RuleEffect | None]:
    """The interleaving table without the excluded units, and what that removed (arm "interleaved")."""
    if inter.unit_ids is None or not reason or inter.impressions.size == 0:
        return inter, None
    drop = np.array([u in reason for u in inter.unit_ids.tolist()], dtype=bool)
    effect = RuleEffect("bot rules (interleaving)", {"interleaved": int(drop.sum())},
                        {"interleaved": float(inter.impressions[drop].sum())},
                        {"interleaved": float(inter.wins[drop].sum() + inter.ties[drop].sum())})
    keep = ~drop
    return replace(inter, wins=inter.wins[keep], ties=inter.ties[keep], impressions=inter.impressions[keep],
                   unit_ids=inter.unit_ids[keep]), effect


def apply_exclusions(
    store: EventStore, experiment_id: str, table: UnitTable, rules: ExclusionRules, *,
    since: float | None, until: float | None,
) -> tuple[UnitTable, ExclusionSummary]:
    """``table`` without the excluded units (then winsorized), and what each rule did."""
    rules = rules.validated()
    arms = table.arms()
    before = table.units_per_arm()
    reason = excluded_units(store, experiment_id, rules, since=since, until=until)
    effects: list[RuleEffect] = []
    labels = np.array([reason.get(u, "") for u in table.unit_ids.tolist()], dtype=object)
    for rule in dict.fromkeys(reason.values()):
        mask = labels == rule
        effects.append(RuleEffect(rule, _per_arm(table, mask, arms, None), _per_arm(table, mask, arms, 0),
                                  _per_arm(table, mask, arms, 1)))
    kept = _subset(table, labels == "")
    if rules.winsorize_percentile is not None and kept.rows:
        caps = np.percentile(kept.values, rules.winsorize_percentile, axis=0)
        capped = np.minimum(kept.values, caps)
        hit = np.any(capped < kept.values, axis=1)
        removed = kept.values - capped
        effects.append(RuleEffect(
            f"winsorized at p{rules.winsorize_percentile:g}",
            {a: int(np.sum(hit & (kept.arm == a))) for a in arms},
            {a: float(removed[kept.arm == a, 0].sum()) for a in arms},
            {a: float(removed[kept.arm == a, 1].sum()) for a in arms},
        ))
        kept = _subset(kept, np.ones(kept.rows, dtype=bool), capped)
    return kept, ExclusionSummary(rules, tuple(effects), before, kept.units_per_arm())
