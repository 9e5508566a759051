"""Experiment statistics as Prometheus metrics: recompute the analysis every N seconds, export gauges.

The proxy's own metrics (``abharness.observability.metrics``) say what is happening *now* (traffic, latency,
errors). This module exports what the *statistics* say about the whole experiment so far, so that Grafana can
plot the lift with its always-valid bounds and a rollout controller (Argo Rollouts, see deploy/k8s/) can gate on
the decision. Names are fixed by INTERFACES.md:

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
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from abharness.errors import AbharnessError, ConfigError

__all__ = [
    "DECISIONS",
    "MAX_LABEL_VALUES",
    "MetricSnapshot",
    "ExperimentSnapshot",
    "ExperimentMetrics",
    "ExperimentMetricsJob",
    "ExperimentMetricsServer",
    "register_experiment_metrics",
    "update_experiment_gauges",
    "snapshot_from_report",
    "start_experiment_metrics_job",
    "start_experiment_metrics_server",
    "serve_experiment_metrics",
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


def update_experiment_gauges(
    metrics: ExperimentMetrics, report: Any, *, now: float | None = None, duration_s: float = 0.0
) -> ExperimentSnapshot:
    """Export an ``AnalysisReport`` (or an ``ExperimentSnapshot``) on ``metrics``; return the snapshot used."""
    if isinstance(report, ExperimentSnapshot):
        snap = report
    else:
        snap = snapshot_from_report(report, now=time.time() if now is None else now, duration_s=duration_s)
    metrics.update(snap)
    return snap


def snapshot_from_report(report: Any, *, now: float, duration_s: float = 0.0) -> ExperimentSnapshot:
    """Reduce an ``abharness.analysis.AnalysisReport`` to the exported numbers.

    Per metric (outcomes and guardrails of the *first* treatment against control, as ``report.metrics`` and
    ``report.guardrails`` hold them): ``lift`` is the absolute lift (treatment - control) and ``lift_lower`` /
    ``lift_upper`` its always-valid mSPRT confidence sequence (``seq_lower``/``seq_upper``), on the same scale;
    ``p_value`` the fixed-horizon p and ``always_valid_p_value`` the mSPRT p. Per-arm estimates cover every arm
    that ``report.by_treatment`` compares. An interleaving result is exported as the metric
    ``interleaving_preference`` (mean per-unit preference, positive when the treatment wins) with its confidence
    sequence. Non-finite values (zero variance, too few units) are left out rather than exported as NaN.
    """
    metrics: list[MetricSnapshot] = []
    comps: dict[str, Any] = {**dict(report.metrics or {}), **dict(report.guardrails or {})}
    for name, c in comps.items():
        estimates = {c.control.arm: c.control.value, c.treatment.arm: c.treatment.value}
        for per_metric in (report.by_treatment or {}).values():
            other = per_metric.get(name)
            if other is not None:
                estimates[other.treatment.arm] = other.treatment.value
        metrics.append(MetricSnapshot(
            name=name, lift=c.lift, lift_lower=c.seq_lower, lift_upper=c.seq_upper, p_value=c.p_value,
            always_valid_p_value=c.always_valid_p, arm_estimates=estimates,
        ))
    inter = getattr(report, "interleaving", None)
    if inter is not None:
        metrics.append(MetricSnapshot(
            name="interleaving_preference", lift=inter.preference, lift_lower=inter.seq_lower,
            lift_upper=inter.seq_upper, p_value=inter.p_value, always_valid_p_value=inter.always_valid_p,
        ))
    srm = getattr(report, "srm", None)
    return ExperimentSnapshot(
        decision=report.decision,
        srm_p_value=None if srm is None else srm.p_value,
        metrics=tuple(metrics),
        units={str(a): int(n) for a, n in dict(report.units).items()},
        analysed_at=now,
        duration_s=duration_s,
    )


AnalyzeFn = Callable[[], Any]


class ExperimentMetricsJob:
    """Recompute the analysis every ``interval_s`` seconds on a daemon thread and export it.

    ``analyze`` is a zero-argument callable returning an ``AnalysisReport`` (usually a closure over
    ``abharness.analysis.analyze(store, experiment_id, config=...)``). A failing analysis is logged and counted
    (``abharness_experiment_analysis_errors_total``); the previous values stay exported and the timestamp gauge
    shows their age, which the ``AbharnessExperimentStatsStale`` alert watches.
    """

    def __init__(self, analyze: AnalyzeFn, metrics: ExperimentMetrics, *, interval_s: float) -> None:
        if not interval_s > 0:
            raise ConfigError(f"interval_s={interval_s!r}: the analysis interval must be a positive number of seconds")
        self._analyze = analyze
        self.metrics = metrics
        self.interval_s = float(interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.last_error: str | None = None

    def run_once(self) -> bool:
        """One analysis + export. Returns False (and counts an error) when the analysis failed."""
        t0 = time.perf_counter()
        try:
            report = self._analyze()
            update_experiment_gauges(self.metrics, report, duration_s=time.perf_counter() - t0)
        except AbharnessError as exc:  # data conditions (empty window, unknown experiment yet): keep going
            self.last_error = str(exc)
            self.metrics.record_error()
            log.warning("experiment analysis failed: %s", exc)
            return False
        except Exception as exc:  # noqa: BLE001 - a periodic job must survive a bad cycle; it is counted and logged
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.metrics.record_error()
            log.exception("experiment analysis crashed")
            return False
        finally:
            self.runs += 1
        self.last_error = None
        return True

    def start(self) -> ExperimentMetricsJob:
        """Run the first analysis now and then every ``interval_s`` seconds until ``stop``."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._loop, name="abharness-experiment-metrics", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop (an analysis in progress finishes first, up to ``timeout_s``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


def _analyze_closure(store: Any, experiment_id: str, config: Any | None) -> AnalyzeFn:
    """The default periodic analysis: everything the gauges need, without the cluster-bootstrap cross-check and
    the cumulative time series (neither is exported; both re-read the data and would multiply the cost of each
    cycle). Pass your own ``analyze`` callable for other options."""
    from abharness.analysis import AnalysisOptions, analyze  # late: the analysis pulls in statsmodels

    options = AnalysisOptions(bootstrap_samples=0, timeseries_points=0)

    def run() -> Any:
        return analyze(store, experiment_id, config=config, options=options)

    return run


def _roles_from_config(config: Any | None) -> dict[str, str]:
    if config is None:
        return {}
    return {a.name: a.role for a in config.arms}


def start_experiment_metrics_job(
    store: Any,
    experiment_id: str,
    *,
    interval_s: float,
    registry: CollectorRegistry,
    config: Any | None = None,
    analyze: AnalyzeFn | None = None,
) -> ExperimentMetricsJob:
    """Register the experiment gauges on ``registry`` and start the periodic analysis (in-process use).

    The proxy can call this to export the statistics on its own ``/metrics``; ``abharness analyze
    --serve-metrics`` uses :func:`start_experiment_metrics_server` instead. ``config`` (an
    ``ExperimentConfig``) gives the configured split for the SRM test and the arm roles.
    """
    metrics = register_experiment_metrics(registry, roles=_roles_from_config(config))
    fn = analyze if analyze is not None else _analyze_closure(store, experiment_id, config)
    return ExperimentMetricsJob(fn, metrics, interval_s=interval_s).start()


@dataclass
class ExperimentMetricsServer:
    """A running exporter: the HTTP server, its bound port and the periodic job. ``close()`` stops both."""

    host: str
    port: int
    registry: CollectorRegistry
    job: ExperimentMetricsJob
    _server: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self.job.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def start_experiment_metrics_server(
    store: Any,
    experiment_id: str,
    *,
    interval_s: float,
    port: int,
    host: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
    config: Any | None = None,
    analyze: AnalyzeFn | None = None,
) -> ExperimentMetricsServer:
    """Serve the experiment gauges on ``http://host:port/metrics`` and recompute them every ``interval_s`` s.

    ``port=0`` binds a free port (see ``.port`` on the result). Returns at once; call ``close()`` to stop.
    """
    from prometheus_client import start_http_server

    if not 0 <= port <= 65535:
        raise ConfigError(f"port={port}: choose a TCP port in 0..65535 (0 picks a free one)")
    reg = registry if registry is not None else CollectorRegistry()
    job = start_experiment_metrics_job(
        store, experiment_id, interval_s=interval_s, registry=reg, config=config, analyze=analyze
    )
    try:
        server, thread = start_http_server(port, addr=host, registry=reg)
    except OSError as exc:
        job.stop()
        raise ConfigError(
            f"cannot listen on {host}:{port} for the metrics exporter ({exc.strerror}); pick another port"
        ) from None
    return ExperimentMetricsServer(host, server.server_address[1], reg, job, server, thread)


def serve_experiment_metrics(
    store: Any,
    experiment_id: str,
    *,
    interval_s: float,
    port: int,
    host: str = "127.0.0.1",
    config: Any | None = None,
    analyze: AnalyzeFn | None = None,
    stop: threading.Event | None = None,
    on_start: Callable[[ExperimentMetricsServer], None] | None = None,
) -> int:
    """Run the exporter in the foreground until SIGTERM/SIGINT (or ``stop`` is set); return the number of analyses.

    This is the body of ``abharness analyze --serve-metrics`` (and ``abharness monitor``): the CLI parses its
    options, opens the store, then calls this. ``on_start`` receives the running server (e.g. to print its URL).
    """
    import signal

    stop = stop or threading.Event()
    server = start_experiment_metrics_server(
        store, experiment_id, interval_s=interval_s, port=port, host=host, config=config, analyze=analyze
    )
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        if on_start is not None:
            on_start(server)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()
    return server.job.runs
