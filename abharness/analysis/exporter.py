"""The experiment-statistics exporter: recompute the analysis every N seconds and export it as Prometheus gauges.

A use case over two adapters: an ``EventStore`` (read by :func:`abharness.analysis.analyze`) and the Prometheus
collector :class:`abharness.observability.experiment_metrics.ExperimentMetrics` (which knows nothing of the
analysis: it exports an ``ExperimentSnapshot`` of plain numbers). Here live the reduction of an
``AnalysisReport`` to that snapshot, the periodic job (a daemon thread), the HTTP server that serves the registry,
and the foreground loop with SIGTERM/SIGINT handling that ``abharness analyze --serve-metrics`` runs. The metric
names and their meaning are listed in the collector's module docstring and in docs/deploy.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from abharness.analysis.options import AnalysisOptions
from abharness.analysis.report import AnalysisReport
from abharness.analysis.usecase import analyze
from abharness.config import ExperimentConfig
from abharness.errors import AbharnessError, ConfigError
from abharness.observability.experiment_metrics import (
    ExperimentMetrics,
    ExperimentSnapshot,
    MetricSnapshot,
    register_experiment_metrics,
)
from abharness.stores.base import EventStore

__all__ = [
    "ExperimentMetricsJob",
    "ExperimentMetricsServer",
    "serve_experiment_metrics",
    "snapshot_from_report",
    "start_experiment_metrics_job",
    "start_experiment_metrics_server",
    "update_experiment_gauges",
]

log = logging.getLogger(__name__)


def update_experiment_gauges(
    metrics: ExperimentMetrics, report: AnalysisReport | ExperimentSnapshot, *, now: float | None = None, duration_s: float = 0.0
) -> ExperimentSnapshot:
    """Export an ``AnalysisReport`` (or an ``ExperimentSnapshot``) on ``metrics``; return the snapshot used."""
    if isinstance(report, ExperimentSnapshot):
        snap = report
    else:
        snap = snapshot_from_report(report, now=time.time() if now is None else now, duration_s=duration_s)
    metrics.update(snap)
    return snap


def snapshot_from_report(report: AnalysisReport, *, now: float, duration_s: float = 0.0) -> ExperimentSnapshot:
    """Reduce an ``AnalysisReport`` to the exported numbers.

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


def _analyze_closure(store: EventStore, experiment_id: str, config: ExperimentConfig | None) -> AnalyzeFn:
    """The default periodic analysis: everything the gauges need, without the cluster-bootstrap cross-check and
    the cumulative time series (neither is exported; both re-read the data and would multiply the cost of each
    cycle). Pass your own ``analyze`` callable for other options."""
    options = AnalysisOptions(bootstrap_samples=0, timeseries_points=0)

    def run() -> Any:
        return analyze(store, experiment_id, config=config, options=options)

    return run


def _roles_from_config(config: ExperimentConfig | None) -> dict[str, str]:
    if config is None:
        return {}
    return {a.name: a.role for a in config.arms}


def start_experiment_metrics_job(
    store: EventStore,
    experiment_id: str,
    *,
    interval_s: float,
    registry: CollectorRegistry,
    config: ExperimentConfig | None = None,
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
    store: EventStore,
    experiment_id: str,
    *,
    interval_s: float,
    port: int,
    host: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
    config: ExperimentConfig | None = None,
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
    store: EventStore,
    experiment_id: str,
    *,
    interval_s: float,
    port: int,
    host: str = "127.0.0.1",
    config: ExperimentConfig | None = None,
    analyze: AnalyzeFn | None = None,
    stop: threading.Event | None = None,
    on_start: Callable[[ExperimentMetricsServer], None] | None = None,
) -> int:
    """Run the exporter in the foreground until SIGTERM/SIGINT (or ``stop`` is set); return the number of analyses.

    This is the body of ``abharness analyze --serve-metrics``: the CLI parses its options, opens the store, then
    calls this. ``on_start`` receives the running server (e.g. to print its URL).
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
