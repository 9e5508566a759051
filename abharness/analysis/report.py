"""The analysis result: frozen values, plus ``to_dict()`` for JSON (nan/inf become null)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from abharness.core.interleaving import InterleavingResult
from abharness.core.stats.compare import MetricComparison
from abharness.core.stats.srm import SRMResult

__all__ = ["AnalysisReport", "PowerSummary", "TimePoint", "CupedSummary", "SegmentBreakdown", "TrafficBucket",
           "jsonable", "duration_text"]


def duration_text(seconds: float) -> str:
    """A duration a person reads: '10 s', '4.5 min', '3.2 h', '2.5 days'."""
    if not math.isfinite(seconds):
        return "n/a"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def jsonable(value: Any) -> Any:
    """Plain JSON types: dataclasses to dicts, tuples to lists, non-finite floats to None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalar
        return jsonable(value.item())
    return value


@dataclass(frozen=True, slots=True)
class PowerSummary:
    """Power so far for one metric of one treatment arm.

    ``required_units`` is the total needed to detect ``target_relative_mde`` with ``power``; ``mde_relative``
    what the current units can detect; ``design_effect`` = delta-method variance / naive per-impression
    binomial variance of the control arm (CTR only: how much repeated units inflate the variance).
    """

    metric: str
    treatment: str
    sigma2_unit: float
    target_relative_mde: float
    target_absolute_mde: float
    power: float
    current_units: int
    required_units: float
    power_now: float
    mde_absolute: float
    mde_relative: float
    units_per_day: float
    days_still_needed: float
    design_effect: float | None = None
    observed_days: float = float("nan")

    @property
    def days_text(self) -> str:
        """What the power table shows for the days still needed, honest about short tests."""
        short = math.isfinite(self.observed_days) and self.observed_days < 1.0
        if self.days_still_needed == 0.0:
            return "0 (enough units)" + (f"; only {duration_text(self.observed_days * 86_400)} of data" if short else "")
        if short or math.isnan(self.days_still_needed):
            return "n/a: less than a day of data"
        if math.isinf(self.days_still_needed):
            return "never: no new units arrive"
        return f"{self.days_still_needed:.1f}"


@dataclass(frozen=True, slots=True)
class TimePoint:
    """Cumulative lift of the primary metric up to ``until`` (unadjusted), with fixed and always-valid bounds."""

    until: float
    units: int
    lift: float
    relative_lift: float
    lower: float
    upper: float
    seq_lower: float
    seq_upper: float
    p_value: float
    always_valid_p: float


@dataclass(frozen=True, slots=True)
class CupedSummary:
    """Where CUPED's covariates came from and how many units had any pre-period history."""

    applied: bool
    pre_experiment_id: str
    pre_since: float | None
    pre_until: float | None
    pre_modes: tuple[str, ...]
    units_with_history: int
    units_without_history: int
    note: str


@dataclass(frozen=True, slots=True)
class SegmentBreakdown:
    """Per value of a logged context attribute: units per arm and the outcome metrics (no CUPED, no decision)."""

    key: str
    value: str | None
    units: dict[str, int]
    metrics: dict[str, MetricComparison]


@dataclass(frozen=True, slots=True)
class TrafficBucket:
    """Traffic of one arm in one time bucket [start, start + bucket_s) (UTC-aligned; a day unless the window is
    short): distinct units with an impression in it, units first seen in it, and impressions; as logged, before
    any exclusion rule."""

    start: float
    arm: str
    units: int
    new_units: int
    impressions: int


@dataclass(frozen=True, slots=True)
class AnalysisReport:
    """Everything ``abharness analyze`` shows, computed once.

    ``metrics`` maps metric name -> comparison of the first treatment with control (``by_treatment`` has all);
    ``guardrails`` likewise; ``decision`` is one of ship / keep-running / rollback with ``reasons``.
    """

    experiment_id: str
    since: float | None
    until: float | None
    control: str
    treatments: tuple[str, ...]
    units: dict[str, int]
    impressions: dict[str, int]
    srm: SRMResult | None
    metrics: dict[str, MetricComparison]
    guardrails: dict[str, MetricComparison]
    by_treatment: dict[str, dict[str, MetricComparison]]
    primary: str
    power: tuple[PowerSummary, ...]
    cuped: CupedSummary | None
    interleaving: InterleavingResult | None
    segments: tuple[SegmentBreakdown, ...]
    timeseries: tuple[TimePoint, ...]
    decision: str
    reasons: tuple[str, ...]
    basis: str
    alpha: float
    diagnostics: tuple[str, ...] = field(default_factory=tuple)
    traffic: tuple[TrafficBucket, ...] = ()
    traffic_bucket_s: float = 86_400.0
    exclusions: Any = None  # abharness.analysis.exclusions.ExclusionSummary when rules were applied
    layered: Any = None  # abharness.analysis.interaction.LayeredSummary for an experiment of a layered file

    @property
    def exit_code(self) -> int:
        """ship 0, keep-running 10, rollback 20."""
        from abharness.core.stats.decision import EXIT_CODES

        return EXIT_CODES[self.decision]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (nan and inf become null)."""
        out = jsonable(self)
        out["exit_code"] = self.exit_code
        return out

    def to_frame(self) -> Any:
        """A pandas DataFrame with one row per (treatment, metric), outcome metrics and guardrails: control and
        treatment values, absolute and relative lift with their interval, fixed and always-valid p-values."""
        import pandas as pd

        rows = []
        blocks = [(t, comps, False) for t, comps in self.by_treatment.items()]
        if self.treatments:
            blocks.append((self.treatments[0], self.guardrails, True))
        for treatment, comps, guardrail in blocks:
            for name, c in comps.items():
                rows.append({
                    "treatment": treatment, "metric": name, "guardrail": guardrail,
                    "control_value": c.control.value, "treatment_value": c.treatment.value,
                    "control_units": c.control.units, "treatment_units": c.treatment.units,
                    "lift": c.lift, "lift_lower": c.lift_lower, "lift_upper": c.lift_upper,
                    "relative_lift": c.relative_lift, "relative_lower": c.relative_lower,
                    "relative_upper": c.relative_upper, "p_value": c.p_value, "always_valid_p": c.always_valid_p,
                    "cuped": c.cuped,
                })
        return pd.DataFrame(rows)
