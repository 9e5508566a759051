"""Prometheus metrics of the proxy, bound to an injected ``CollectorRegistry`` (a fresh one per app / per test).

Names are a published interface (dashboards, alert rules and the Argo analysis template under deploy/ query
them; tests/deploy/test_deploy_metric_names.py pins them). Labels are bounded: ``arm`` (from the config),
``mode``, ``status`` and ``reason`` (small fixed sets); never a query text or a unit id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["ProxyMetrics", "WriterStats", "LATENCY_BUCKETS"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


@dataclass(frozen=True, slots=True)
class WriterStats:
    """A snapshot of the background writer, read at scrape time."""

    queue_depth: int
    dropped: int
    written: int
    failed_batches: int = 0
    spooled: int = 0
    quarantined: int = 0
    lost: int = 0
    store_up: int = 1


class _WriterCollector(Collector):
    """Exports the writer's own counters at scrape time, so they cannot drift from the writer's state."""

    def __init__(self, read: Callable[[], WriterStats | None]) -> None:
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        stats = self._read() or WriterStats(0, 0, 0)
        depth = GaugeMetricFamily("abharness_event_queue_depth", "Events accepted but not yet written to the store")
        depth.add_metric([], stats.queue_depth)
        dropped = CounterMetricFamily(
            "abharness_events_dropped", "Events dropped or rejected because the event queue was full"
        )
        dropped.add_metric([], stats.dropped)
        written = CounterMetricFamily("abharness_events_written", "Events written to the event store")
        written.add_metric([], stats.written)
        yield depth
        yield dropped
        yield written
        for name, doc, value in (
            ("abharness_event_store_failures", "Batch writes (and probes) the event store refused; each is retried",
             stats.failed_batches),
            ("abharness_events_spooled", "Accepted events spilled to the spool while the store was down",
             stats.spooled),
            ("abharness_events_quarantined", "Events the store refused on their own, set aside in the quarantine",
             stats.quarantined),
            ("abharness_events_lost", "Accepted events neither written nor spooled at shutdown", stats.lost),
        ):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            yield family
        up = GaugeMetricFamily("abharness_event_store_up", "1 while the writer's last write succeeded, 0 while failing")
        up.add_metric([], stats.store_up)
        yield up

    def describe(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        return []


class ProxyMetrics:
    """All proxy metrics on ``registry``. ``attach_writer`` wires the queue/drop/written numbers."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.search_requests = Counter(
            "abharness_search_requests",
            "Search requests by serving arm, mode and status (ok, fallback, error, paused, rejected)",
            ["arm", "mode", "status"],
            registry=registry,
        )
        self.search_latency = Histogram(
            "abharness_search_latency_seconds",
            "Backend search latency per arm (encode + search, including any HTTP to an index server)",
            ["arm"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.search_errors = Counter(
            "abharness_search_errors", "Backend errors and timeouts per arm", ["arm"], registry=registry
        )
        self.fallbacks = Counter(
            "abharness_fallbacks", "Requests whose treatment failed and were served by control", ["arm"],
            registry=registry,
        )
        self.impressions = Counter(
            "abharness_impressions", "Impressions logged, by serving arm", ["arm"], registry=registry
        )
        self.clicks = Counter("abharness_clicks", "Accepted clicks, by serving arm", ["arm"], registry=registry)
        self.clicks_rejected = Counter(
            "abharness_clicks_rejected", "Rejected clicks by reason", ["reason"], registry=registry
        )
        self.store_write_seconds = Histogram(
            "abharness_store_write_seconds",
            "Time to write one batch of events to the store",
            buckets=WRITE_BUCKETS,
            registry=registry,
        )
        self.store_probe_seconds = Histogram(
            "abharness_store_probe_seconds",
            "Time of the readiness probe's committed heartbeat write to the event store",
            buckets=WRITE_BUCKETS,
            registry=registry,
        )
        self.allocation_weight = Gauge(
            "abharness_allocation_weight", "Current allocation weight per arm", ["arm"], registry=registry
        )
        self.paused = Gauge(
            "abharness_experiment_paused", "1 while the experiment is paused or killed (all traffic to control)",
            registry=registry,
        )
        self.backend_up = Gauge(
            "abharness_backend_up", "1 when the arm's backend answered its last call", ["arm"], registry=registry
        )
        self.arm_available = Gauge(
            "abharness_arm_available",
            "0 while an arm's backend could not be opened (its units are served by control), else 1",
            ["arm"],
            registry=registry,
        )
        self._writer_stats: Callable[[], WriterStats | None] = lambda: None
        registry.register(_WriterCollector(lambda: self._writer_stats()))

    def attach_writer(self, read: Callable[[], WriterStats | None]) -> None:
        """Read queue depth, dropped and written counts from ``read`` at scrape time."""
        self._writer_stats = read

    def observe_write(self, seconds: float) -> None:
        """Callback for the writer's ``on_write_seconds``."""
        self.store_write_seconds.observe(seconds)
