"""Experiment statistics as Prometheus metrics: recompute the analysis every N seconds, export gauges.

The proxy's own metrics (``abharness.observability.metrics``) say what is happening *now* (traffic, latency,
errors). This module exports what the *statistics* say about the whole experiment so far, so that Grafana can
plot the lift with its always-valid bounds and a rollout controller (Argo Rollouts, see deploy/k8s/) can gate on
the decision. The names below are a published interface (dashboards in deploy/grafana, the alert rules in
deploy/prometheus and the Argo analysis template query them; tests/deploy/test_deploy_metric_names.py pins them):

    abharness_experiment_lift{metric}                 lift of treatment over control (absolute: treatment - control)
    abharness_experiment_lift_lower{metric}           lower always-valid (mSPRT confidence-sequence) bound of it
    abharness_experiment_lift_upper{metric}           upper always-valid bound of it
    abharness_experiment_p_value{metric}              fixed-horizon p-value (valid at the planned end only)
    abharness_experiment_always_valid_p_value{metric} mSPRT p-value (valid while peeking)
    abharness_experiment_srm_p_value                  sample-ratio-mismatch chi-square p-value
    abharness_experiment_decision{decision}           1 for the current decision, 0 for the other two
    abharness_experiment_units{arm}                   randomisation units per arm in the window

and, additively, for dashboards and alerting:

    abharness_experiment_arm_estimate{metric,arm}     per-arm estimate of each metric (e.g. CTR, MRR)
    abharness_arm_info{arm,role}                      1 per configured arm; tells PromQL which arm is control
    abharness_experiment_analysis_timestamp_seconds   unix time of the last successful analysis (staleness)
    abharness_experiment_analysis_duration_seconds    how long that analysis took
    abharness_experiment_analysis_errors_total        analyses that failed (the last good values stay exported)

Labels are bounded: ``metric`` comes from the analysis' fixed metric table, ``arm`` from the experiment config,
``decision`` from a fixed set of three, and at most ``MAX_LABEL_VALUES`` values of each are ever exported.

Values are swapped in atomically: a collector reads one immutable :class:`ExperimentSnapshot` at scrape time,
so a scrape never sees half of an update, and label sets that disappear from the analysis disappear from
``/metrics`` instead of lingering with stale values.

This module is the Prometheus adapter only: the collector and the plain-data snapshot it exports. Turning an
analysis report into a snapshot, the periodic analysis job, its HTTP server and its signal handling are the
exporter use case in :mod:`abharness.analysis.exporter` (``abharness analyze --serve-metrics``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from abharness.errors import ConfigError

__all__ = [
    "DECISIONS",
    "MAX_LABEL_VALUES",
    "ExperimentMetrics",
    "ExperimentSnapshot",
    "MetricSnapshot",
    "register_experiment_metrics",
]

log = logging.getLogger(__name__)

DECISIONS: tuple[str, ...] = ("ship", "keep-running", "rollback")
_GAUGE_NAMES: tuple[str, ...] = (
    "abharness_arm_info", "abharness_experiment_lift", "abharness_experiment_lift_lower",
    "abharness_experiment_lift_upper", "abharness_experiment_p_value", "abharness_experiment_always_valid_p_value",
    "abharness_experiment_arm_estimate", "abharness_experiment_srm_p_value", "abharness_experiment_decision",
    "abharness_experiment_units", "abharness_experiment_analysis_timestamp_seconds",
    "abharness_experiment_analysis_duration_seconds",
)
#: hard cap on distinct values per label, so a bug upstream cannot explode the series count.
MAX_LABEL_VALUES = 64


@dataclass(frozen=True, slots=True)
class MetricSnapshot:
    """What is exported for one metric: lift with always-valid bounds, p-values, per-arm estimates."""

    name: str
    lift: float | None = None
    lift_lower: float | None = None
    lift_upper: float | None = None
    p_value: float | None = None
    always_valid_p_value: float | None = None
    arm_estimates: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExperimentSnapshot:
    """One analysis result reduced to the numbers that become gauges (pure data, no Prometheus)."""

    decision: str
    srm_p_value: float | None
    metrics: tuple[MetricSnapshot, ...]
    units: Mapping[str, int]
    analysed_at: float
    duration_s: float = 0.0


class ExperimentMetrics(Collector):
    """The experiment gauges on one ``CollectorRegistry``; ``update`` swaps in a new snapshot atomically.

    ``roles`` maps arm name to "control"/"treatment" (from the experiment config) and becomes
    ``abharness_arm_info``; the alert rules use it to compare treatment against control.
    """

    def __init__(self, registry: CollectorRegistry, *, roles: Mapping[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._snapshot: ExperimentSnapshot | None = None
        self._errors = 0
        self._roles = _bounded(dict(roles or {}), "arm")
        registry.register(self)

    @property
    def snapshot(self) -> ExperimentSnapshot | None:
        return self._snapshot

    @property
    def errors(self) -> int:
        return self._errors

    def set_roles(self, roles: Mapping[str, str]) -> None:
        """Replace the arm → role map exported as ``abharness_arm_info``."""
        bad = {a: r for a, r in roles.items() if r not in ("control", "treatment")}
        if bad:
            raise ConfigError(f"arm roles {bad} are not 'control' or 'treatment'")
        self._roles = _bounded(dict(roles), "arm")

    def update(self, snapshot: ExperimentSnapshot) -> None:
        """Export ``snapshot`` from now on (replacing the previous one as a whole)."""
        if snapshot.decision not in DECISIONS:
            raise ConfigError(f"decision {snapshot.decision!r} is not one of {list(DECISIONS)}")
        metrics = snapshot.metrics[:MAX_LABEL_VALUES]
        if len(snapshot.metrics) > MAX_LABEL_VALUES:
            log.warning("exporting only the first %d of %d metrics", MAX_LABEL_VALUES, len(snapshot.metrics))
        units = _bounded(dict(snapshot.units), "arm")
        with self._lock:
            self._snapshot = ExperimentSnapshot(
                decision=snapshot.decision,
                srm_p_value=snapshot.srm_p_value,
                metrics=metrics,
                units=units,
                analysed_at=snapshot.analysed_at,
                duration_s=snapshot.duration_s,
            )

    def record_error(self) -> None:
        """Count a failed analysis; the last good snapshot stays exported (its timestamp shows its age)."""
        with self._lock:
            self._errors += 1

    def describe(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        """Empty families with every exported name, so a second registration on one registry is refused."""
        yield CounterMetricFamily("abharness_experiment_analysis_errors", "")
        for name in _GAUGE_NAMES:
            yield GaugeMetricFamily(name, "")

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        with self._lock:
            snap, errors, roles = self._snapshot, self._errors, dict(self._roles)
        errs = CounterMetricFamily(
            "abharness_experiment_analysis_errors", "Analyses that failed (the last good values stay exported)"
        )
        errs.add_metric([], errors)
        yield errs
        info = GaugeMetricFamily(
            "abharness_arm_info", "1 per configured arm, labelled with its role (control or treatment)",
            labels=["arm", "role"],
        )
        for arm, role in sorted(roles.items()):
            info.add_metric([arm, role], 1.0)
        yield info
        if snap is None:
            return
        fams = {
            "lift": GaugeMetricFamily(
                "abharness_experiment_lift", "Lift of treatment over control (treatment - control)", labels=["metric"]
            ),
            "lift_lower": GaugeMetricFamily(
                "abharness_experiment_lift_lower", "Lower always-valid (confidence-sequence) bound of the lift", labels=["metric"]
            ),
            "lift_upper": GaugeMetricFamily(
                "abharness_experiment_lift_upper", "Upper always-valid (confidence-sequence) bound of the lift", labels=["metric"]
            ),
            "p_value": GaugeMetricFamily(
                "abharness_experiment_p_value", "Fixed-horizon p-value of the lift", labels=["metric"]
            ),
            "always_valid_p_value": GaugeMetricFamily(
                "abharness_experiment_always_valid_p_value",
                "Always-valid (mSPRT) p-value of the lift, valid under continuous monitoring",
                labels=["metric"],
            ),
        }
        est = GaugeMetricFamily(
            "abharness_experiment_arm_estimate", "Per-arm estimate of each metric", labels=["metric", "arm"]
        )
        for m in snap.metrics:
            for attr, fam in fams.items():
                value = getattr(m, attr)
                if _finite(value):
                    fam.add_metric([m.name], float(value))
            for arm, value in sorted(_bounded(dict(m.arm_estimates), "arm").items()):
                if _finite(value):
                    est.add_metric([m.name, arm], float(value))
        yield from fams.values()
        yield est
        srm = GaugeMetricFamily("abharness_experiment_srm_p_value", "Sample-ratio-mismatch chi-square p-value")
        if _finite(snap.srm_p_value):
            srm.add_metric([], float(snap.srm_p_value))  # type: ignore[arg-type]
        yield srm
        decision = GaugeMetricFamily(
            "abharness_experiment_decision", "1 for the current rollout decision, 0 for the others",
            labels=["decision"],
        )
        for d in DECISIONS:
            decision.add_metric([d], 1.0 if d == snap.decision else 0.0)
        yield decision
        units = GaugeMetricFamily("abharness_experiment_units", "Randomisation units per arm", labels=["arm"])
        for arm, n in sorted(snap.units.items()):
            units.add_metric([arm], float(n))
        yield units
        ts = GaugeMetricFamily(
            "abharness_experiment_analysis_timestamp_seconds", "Unix time of the last successful analysis"
        )
        ts.add_metric([], snap.analysed_at)
        yield ts
        dur = GaugeMetricFamily(
            "abharness_experiment_analysis_duration_seconds", "Duration of the last successful analysis"
        )
        dur.add_metric([], snap.duration_s)
        yield dur


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _bounded(d: dict[str, Any], what: str) -> dict[str, Any]:
    if len(d) <= MAX_LABEL_VALUES:
        return d
    log.warning("exporting only %d of %d %s label values", MAX_LABEL_VALUES, len(d), what)
    return dict(sorted(d.items())[:MAX_LABEL_VALUES])


def register_experiment_metrics(
    registry: CollectorRegistry, *, roles: Mapping[str, str] | None = None
) -> ExperimentMetrics:
    """Create the experiment gauges on ``registry`` (one call per registry)."""
    return ExperimentMetrics(registry, roles=roles)
