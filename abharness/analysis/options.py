"""Settings of one analysis run (frozen). Built by the CLI or by callers; an experiment config fills gaps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from abharness.analysis.exclusions import ExclusionRules
from abharness.core.stats.metrics import GUARDRAIL_METRICS, ONLINE_METRICS, OUTCOME_METRICS, OnlineMetricSpec
from abharness.errors import ConfigError

__all__ = ["AnalysisOptions", "PrePeriod"]


@dataclass(frozen=True, slots=True)
class PrePeriod:
    """Where CUPED's pre-experiment covariates come from.

    Default: the same experiment's ``shadow``-mode impressions before the analysis window (shadow mode serves
    control to everyone, so those sums cannot be affected by the treatment). Pointing it at another experiment
    or at ``ab`` impressions is allowed, but the covariate must predate exposure to the treatment.
    """

    experiment_id: str | None = None
    since: float | None = None
    until: float | None = None
    modes: tuple[str, ...] = ("shadow",)


@dataclass(frozen=True, slots=True)
class AnalysisOptions:
    """Knobs of :func:`abharness.analysis.analyze`; every field has a safe default.

    ``weights``: configured allocation per arm for the SRM check (default: from the experiment config, else an
    equal split with a diagnostic). ``basis``: which intervals gate the decision ("sequential" = always-valid,
    safe to look at any time; "fixed" = fixed-horizon, valid only at the planned sample size).
    ``margins``: guardrail non-inferiority margins by metric name, overriding the defaults of the metric table.
    ``aggregation``: "rollup" (default) reads the per-unit sums the writer keeps (``unit_rollup``) where the store
    has them; "scan" re-aggregates every raw impression and click (the previous path, kept for comparison).
    Both give the same numbers (to float rounding, 1e-9).
    """

    control: str | None = None
    weights: Mapping[str, float] | None = None
    alpha: float = 0.05
    primary: str = "ctr"
    test: Literal["welch", "z"] = "welch"
    basis: Literal["sequential", "fixed"] = "sequential"
    tuning_units: float = 10_000
    target_relative_mde: float = 0.02
    power: float = 0.8
    bootstrap_samples: int = 200
    seed: int = 0
    timeseries_points: int = 8
    cuped: bool = True
    pre_period: PrePeriod = field(default_factory=PrePeriod)
    margins: Mapping[str, float] = field(default_factory=dict)
    exclusions: ExclusionRules = field(default_factory=ExclusionRules)
    aggregation: Literal["rollup", "scan"] = "rollup"

    def validated(self) -> AnalysisOptions:
        """Self, after checking ranges; raises ``ConfigError`` naming the bad value and the fix."""
        if not 0 < self.alpha < 0.5:
            raise ConfigError(f"alpha={self.alpha}: must be in (0, 0.5), e.g. 0.05")
        if not 0 < self.power < 1:
            raise ConfigError(f"power={self.power}: must be in (0, 1), e.g. 0.8")
        if self.primary not in OUTCOME_METRICS:
            raise ConfigError(f"primary metric {self.primary!r} unknown: choose from {', '.join(OUTCOME_METRICS)}")
        if self.test not in ("welch", "z"):
            raise ConfigError(f"test={self.test!r}: use 'welch' or 'z'")
        if self.basis not in ("sequential", "fixed"):
            raise ConfigError(f"basis={self.basis!r}: use 'sequential' or 'fixed'")
        if self.tuning_units <= 0:
            raise ConfigError(f"tuning_units={self.tuning_units}: must be > 0 (expected units at the end)")
        if self.target_relative_mde <= 0:
            raise ConfigError(f"target_relative_mde={self.target_relative_mde}: must be > 0, e.g. 0.02 for 2 %")
        if self.bootstrap_samples < 0 or self.bootstrap_samples == 1:
            raise ConfigError(f"bootstrap_samples={self.bootstrap_samples}: use 0 (off) or >= 2")
        if self.aggregation not in ("rollup", "scan"):
            raise ConfigError(f"aggregation={self.aggregation!r}: use 'rollup' (default) or 'scan'")
        if self.timeseries_points < 0:
            raise ConfigError(f"timeseries_points={self.timeseries_points}: must be >= 0")
        for name, margin in self.margins.items():
            if name not in GUARDRAIL_METRICS:
                raise ConfigError(f"margin for {name!r}: not a guardrail; choose from {', '.join(GUARDRAIL_METRICS)}")
            if margin <= 0:
                raise ConfigError(f"margin for {name!r}={margin}: must be > 0")
        self.exclusions.validated()
        if self.weights is not None and any(w < 0 for w in self.weights.values()):
            raise ConfigError(f"weights {dict(self.weights)}: must be non-negative")
        return self

    def guardrail_specs(self) -> list[OnlineMetricSpec]:
        """Guardrail metric specs with margins from ``margins`` where given."""
        out = []
        for name in GUARDRAIL_METRICS:
            spec = ONLINE_METRICS[name]
            out.append(replace(spec, margin=float(self.margins[name])) if name in self.margins else spec)
        return out

    def with_config(self, config: Any) -> AnalysisOptions:
        """Fill ``control`` and ``weights`` from an experiment config (``abharness.config.ExperimentConfig`` or
        anything with ``control`` and ``weights`` attributes) when they were not given explicitly."""
        if config is None:
            return self
        control = self.control or getattr(config, "control", None)
        weights = self.weights
        if weights is None:
            raw = getattr(config, "ordered_weights", None)
            weights = raw() if callable(raw) else getattr(config, "weights", None)
        exclusions = self.exclusions
        if not exclusions.active():
            exclusions = ExclusionRules.from_config(getattr(config, "exclusions", None))
        return replace(self, control=control, weights=dict(weights) if weights is not None else None,
                       exclusions=exclusions)
