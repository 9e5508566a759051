"""Every PromQL expression in the dashboards, the alert rules and the Argo AnalysisTemplate selects only metrics
that a running app really exports: the proxy built by create_app (fake backends, real SQLite store, driven through
searches, clicks, a forged click and a failing treatment) and the experiment-statistics exporter, both scraped over
HTTP as Prometheus would."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry


def test_metric_name_extractor(deploy: SimpleNamespace) -> None:
    names = deploy.metric_names
    assert names('sum by (arm, le) (rate(abharness_search_latency_seconds_bucket{arm=~"a|b"}[5m]))') == {
        "abharness_search_latency_seconds_bucket"
    }
    assert names("time() - max(abharness_experiment_analysis_timestamp_seconds) or vector(1e9)") == {
        "abharness_experiment_analysis_timestamp_seconds"
    }
    assert names(
        "(a_total > on () group_left () 1.25 * rec:x:y) and on (arm) (b offset 5m > bool 0.05) unless ignoring(x) c"
    ) == {"a_total", "rec:x:y", "b", "c"}
    assert names('count(x{metric=~"ctr|mrr.*"} < 0) by (metric)') == {"x"}
    assert names(deploy.grafana_to_promql("label_values(abharness_experiment_lift, metric)")) == {
        "abharness_experiment_lift"
    }
    assert names(deploy.grafana_to_promql('rate(m_total{metric=~"$metric"}[$__rate_interval])')) == {"m_total"}


@pytest.fixture
def exported_names(deploy: SimpleNamespace, sqlite_url: str, fake_backends: dict, make_client) -> set[str]:
    """Sample names scraped from a driven proxy's /metrics plus the experiment exporter's HTTP endpoint."""
    import httpx

    from abharness.analysis.exporter import start_experiment_metrics_server
    from abharness.observability.experiment_metrics import ExperimentSnapshot, MetricSnapshot

    config = deploy.proxy_config(sqlite_url)
    client = make_client(config, fake_backends, CollectorRegistry())
    served = deploy.drive_traffic(client, fake_backends)
    assert set(served) == set(deploy.ARMS), f"both arms should have served some of the searches: {served}"
    proxy_text = client.get("/metrics").text

    snapshot = ExperimentSnapshot(
        decision="keep-running",
        srm_p_value=0.5,
        metrics=(MetricSnapshot("ctr", 0.01, -0.02, 0.04, 0.3, 0.8, {"baseline": 0.3, "finetuned": 0.31}),),
        units={"baseline": 10, "finetuned": 11},
        analysed_at=1.0e9,
    )
    server = start_experiment_metrics_server(
        None, "deploy-test", interval_s=3600, port=0, config=config, analyze=lambda: snapshot
    )
    try:
        exporter_text = httpx.get(server.url, timeout=10).text
    finally:
        server.close()
    return deploy.sample_names(proxy_text) | deploy.sample_names(exporter_text)


def test_every_queried_metric_is_exported(
    deploy: SimpleNamespace, all_exprs: list[tuple[str, str]], exported_names: set[str]
) -> None:
    known = exported_names | deploy.recorded_names() | deploy.PROMETHEUS_BUILTINS
    missing = {
        (where, name) for where, expr in all_exprs for name in deploy.metric_names(expr) if name not in known
    }
    assert not missing, "queried but not exported:\n" + "\n".join(f"  {w}: {n}" for w, n in sorted(missing))


def test_every_contract_metric_is_exported_and_used(
    deploy: SimpleNamespace, all_exprs: list[tuple[str, str]], exported_names: set[str]
) -> None:
    """The published metric names are all present on a driven app, and each appears in a dashboard or rule."""
    contract = {
        "abharness_search_requests_total", "abharness_search_latency_seconds_bucket", "abharness_search_errors_total",
        "abharness_fallbacks_total", "abharness_impressions_total", "abharness_clicks_total",
        "abharness_clicks_rejected_total", "abharness_event_queue_depth", "abharness_events_dropped_total",
        "abharness_events_written_total", "abharness_store_write_seconds_bucket", "abharness_allocation_weight",
        "abharness_experiment_paused", "abharness_backend_up",
        "abharness_experiment_lift", "abharness_experiment_lift_lower", "abharness_experiment_lift_upper",
        "abharness_experiment_p_value", "abharness_experiment_always_valid_p_value",
        "abharness_experiment_srm_p_value", "abharness_experiment_decision", "abharness_experiment_units",
    }
    assert contract - exported_names == set()
    used = {n for _, expr in all_exprs for n in deploy.metric_names(expr)}
    assert contract - used == set(), f"exported but shown nowhere: {sorted(contract - used)}"


def test_a_misspelt_metric_would_be_caught(deploy: SimpleNamespace, exported_names: set[str]) -> None:
    """Guard against a vacuous check: a name with a typo is not in the exported set."""
    expr = "sum by (arm) (rate(abharness_search_request_total[5m]))"
    known = exported_names | deploy.recorded_names()
    assert deploy.metric_names(expr) - known == {"abharness_search_request_total"}
