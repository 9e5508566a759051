"""The experiment-statistics exporter: gauges equal the analysis of a real SQLite event log, label sets stay
bounded and follow the analysis, failures are counted without losing the last values, and the HTTP server serves
what Prometheus scrapes."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats

from abharness.analysis.exporter import (
    ExperimentMetricsJob,
    snapshot_from_report,
    start_experiment_metrics_server,
    update_experiment_gauges,
)
from abharness.core.events import Click, Impression, ShownResult
from abharness.errors import AnalysisError, ConfigError
from abharness.observability.experiment_metrics import (
    DECISIONS,
    ExperimentSnapshot,
    MetricSnapshot,
    register_experiment_metrics,
)

EXPERIMENT = "exporter-test"


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text) for s in fam.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def write_experiment(store, *, units: int, ctr: dict[str, float], seed: int, t0: float = 1.7e9) -> dict[str, int]:
    """A/B log: each unit gets one arm (fair coin) and 3 impressions; a click at position 1 with prob ctr[arm].
    Returns units per arm."""
    rng = np.random.default_rng(seed)
    arms = sorted(ctr)
    events: list = []
    per_arm = dict.fromkeys(arms, 0)
    for u in range(units):
        arm = arms[int(rng.integers(len(arms)))]
        per_arm[arm] += 1
        for j in range(3):
            iid = f"{u}-{j}"
            ts = t0 + u + j / 10
            results = tuple(ShownResult(f"d{p}", p, 1.0 / p) for p in range(1, 6))
            events.append(Impression(iid, EXPERIMENT, ts, f"u{u}", arm, "ab", "q", 5, results, latency_ms=20.0))
            if rng.random() < ctr[arm]:
                events.append(Click(iid, EXPERIMENT, f"u{u}", arm, ts + 3.0, "d1", 1))
    store.write_batch(events)
    return per_arm


@pytest.fixture
def store(tmp_path: Path):
    from abharness.stores import open_store

    s = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    yield s
    s.close()


def test_gauges_equal_the_analysis_of_a_real_log(store, deploy: SimpleNamespace) -> None:
    from abharness.analysis import analyze

    per_arm = write_experiment(store, units=600, ctr={"baseline": 0.25, "finetuned": 0.40}, seed=7)
    config = deploy.proxy_config("sqlite:///:memory:")
    report = analyze(store, EXPERIMENT, config=config)
    registry = CollectorRegistry()
    metrics = register_experiment_metrics(registry, roles={a.name: a.role for a in config.arms})
    update_experiment_gauges(metrics, report, now=1234.5, duration_s=0.25)
    s = _samples(registry)

    ctr = report.metrics["ctr"]
    assert _value(s, "abharness_experiment_lift", metric="ctr") == pytest.approx(ctr.lift)
    assert _value(s, "abharness_experiment_lift_lower", metric="ctr") == pytest.approx(ctr.seq_lower)
    assert _value(s, "abharness_experiment_lift_upper", metric="ctr") == pytest.approx(ctr.seq_upper)
    assert _value(s, "abharness_experiment_p_value", metric="ctr") == pytest.approx(ctr.p_value)
    assert _value(s, "abharness_experiment_always_valid_p_value", metric="ctr") == pytest.approx(ctr.always_valid_p)
    # independent oracles: the log we wrote, and scipy's chi-square against the configured 50/50 split
    for arm, n in per_arm.items():
        assert _value(s, "abharness_experiment_units", arm=arm) == n
    srm_p = stats.chisquare(list(per_arm.values())).pvalue
    assert _value(s, "abharness_experiment_srm_p_value") == pytest.approx(srm_p)
    # a 15-point CTR effect on 600 units is real: the always-valid interval excludes zero on the good side
    assert _value(s, "abharness_experiment_lift_lower", metric="ctr") > 0
    assert {d: _value(s, "abharness_experiment_decision", decision=d) for d in DECISIONS} == {
        d: (1.0 if d == report.decision else 0.0) for d in DECISIONS
    }
    assert _value(s, "abharness_experiment_arm_estimate", metric="ctr", arm="baseline") == pytest.approx(
        ctr.control.value)
    assert _value(s, "abharness_experiment_arm_estimate", metric="mrr", arm="finetuned") == pytest.approx(
        report.metrics["mrr"].treatment.value)
    assert _value(s, "abharness_arm_info", arm="baseline", role="control") == 1.0
    assert _value(s, "abharness_arm_info", arm="finetuned", role="treatment") == 1.0
    assert _value(s, "abharness_experiment_analysis_timestamp_seconds") == 1234.5
    assert _value(s, "abharness_experiment_analysis_duration_seconds") == 0.25
    # guardrails are exported too, and every label value comes from the fixed metric table
    from abharness.core.stats.metrics import ONLINE_METRICS

    exported = {dict(lbl)["metric"] for (name, lbl) in s if name == "abharness_experiment_lift"}
    assert {"latency_ms", "error_rate", "fallback_rate"} <= exported <= set(ONLINE_METRICS)


def _snap(decision: str, metrics: tuple[MetricSnapshot, ...], units: dict[str, int], at: float = 1.0):
    return ExperimentSnapshot(decision=decision, srm_p_value=0.3, metrics=metrics, units=units, analysed_at=at)


def test_label_sets_follow_the_latest_analysis_and_stay_bounded() -> None:
    registry = CollectorRegistry()
    metrics = register_experiment_metrics(registry)
    many = tuple(MetricSnapshot(f"m{i}", lift=float(i)) for i in range(200))
    metrics.update(_snap("ship", many, {f"arm{i}": i for i in range(100)}))
    s = _samples(registry)
    assert sum(1 for (n, _) in s if n == "abharness_experiment_lift") == 64
    assert sum(1 for (n, _) in s if n == "abharness_experiment_units") == 64
    metrics.update(_snap("rollback", (MetricSnapshot("ctr", lift=-0.1, lift_upper=-0.01),), {"a": 1, "b": 2}))
    s = _samples(registry)
    assert [dict(lbl) for (n, lbl) in s if n == "abharness_experiment_lift"] == [{"metric": "ctr"}]
    assert sorted(dict(lbl)["arm"] for (n, lbl) in s if n == "abharness_experiment_units") == ["a", "b"]
    assert _value(s, "abharness_experiment_decision", decision="rollback") == 1.0
    assert sum(v for (n, _), v in s.items() if n == "abharness_experiment_decision") == 1.0


def test_non_finite_values_are_left_out_not_exported_as_nan() -> None:
    registry = CollectorRegistry()
    metrics = register_experiment_metrics(registry)
    metrics.update(_snap("keep-running", (MetricSnapshot("ctr", lift=math.nan, p_value=0.5, lift_upper=math.inf),),
                         {"a": 1}))
    s = _samples(registry)
    assert ("abharness_experiment_lift", (("metric", "ctr"),)) not in s
    assert ("abharness_experiment_lift_upper", (("metric", "ctr"),)) not in s
    assert _value(s, "abharness_experiment_p_value", metric="ctr") == 0.5


def test_nothing_but_roles_and_errors_before_the_first_analysis() -> None:
    registry = CollectorRegistry()
    register_experiment_metrics(registry, roles={"baseline": "control", "finetuned": "treatment"})
    names = {n for (n, _) in _samples(registry)}
    assert names == {"abharness_experiment_analysis_errors_total", "abharness_arm_info"}


def test_bad_decision_and_roles_are_refused() -> None:
    metrics = register_experiment_metrics(CollectorRegistry())
    with pytest.raises(ConfigError, match="'maybe' is not one of"):
        metrics.update(_snap("maybe", (), {}))
    with pytest.raises(ConfigError, match="not 'control' or 'treatment'"):
        metrics.set_roles({"a": "champion"})


def test_job_counts_failures_and_keeps_the_last_good_values(store) -> None:
    from abharness.analysis import analyze

    registry = CollectorRegistry()
    metrics = register_experiment_metrics(registry)
    # before any impression the experiment is unknown: an AnalysisError, counted, nothing exported yet
    job = ExperimentMetricsJob(lambda: analyze(store, EXPERIMENT), metrics, interval_s=60)
    assert job.run_once() is False
    assert "not found" in (job.last_error or "")
    assert _value(_samples(registry), "abharness_experiment_analysis_errors_total") == 1.0
    write_experiment(store, units=200, ctr={"baseline": 0.3, "finetuned": 0.3}, seed=3)
    assert job.run_once() is True and job.last_error is None
    before = _samples(registry)
    assert _value(before, "abharness_experiment_units", arm="baseline") > 0

    def broken():
        raise AnalysisError("store unreachable")

    job2 = ExperimentMetricsJob(broken, metrics, interval_s=60)
    assert job2.run_once() is False
    after = _samples(registry)
    assert _value(after, "abharness_experiment_analysis_errors_total") == 2.0
    assert _value(after, "abharness_experiment_analysis_timestamp_seconds") == _value(
        before, "abharness_experiment_analysis_timestamp_seconds")
    assert _value(after, "abharness_experiment_units", arm="baseline") == _value(
        before, "abharness_experiment_units", arm="baseline")


def test_job_refuses_a_non_positive_interval() -> None:
    metrics = register_experiment_metrics(CollectorRegistry())
    with pytest.raises(ConfigError, match="interval_s=0"):
        ExperimentMetricsJob(lambda: None, metrics, interval_s=0)


def test_server_serves_the_analysis_over_http(store, deploy: SimpleNamespace) -> None:
    write_experiment(store, units=300, ctr={"baseline": 0.3, "finetuned": 0.3}, seed=11)
    config = deploy.proxy_config("sqlite:///:memory:")
    server = start_experiment_metrics_server(store, EXPERIMENT, interval_s=3600, port=0, config=config)
    try:
        # the first analysis runs when the job starts; wait for it by polling the job (bounded)
        for _ in range(600):
            if server.job.runs:
                break
            server.job._stop.wait(0.05)
        assert server.job.runs >= 1 and server.job.last_error is None, server.job.last_error
        text = httpx.get(server.url, timeout=10).text
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        assert "abharness_experiment_decision" in fams
        assert {s.labels["arm"] for s in fams["abharness_experiment_units"].samples} == {"baseline", "finetuned"}
        assert {tuple(sorted(s.labels.items())) for s in fams["abharness_arm_info"].samples} == {
            (("arm", "baseline"), ("role", "control")), (("arm", "finetuned"), ("role", "treatment"))}
    finally:
        server.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url, timeout=2)


def test_server_reports_a_busy_port_and_a_bad_port() -> None:
    blocker = start_experiment_metrics_server(None, "x", interval_s=3600, port=0, analyze=lambda: None)
    try:
        with pytest.raises(ConfigError, match=f"127.0.0.1:{blocker.port}.*pick another port"):
            start_experiment_metrics_server(None, "x", interval_s=3600, port=blocker.port, analyze=lambda: None)
    finally:
        blocker.close()
    with pytest.raises(ConfigError, match="port=70000"):
        start_experiment_metrics_server(None, "x", interval_s=3600, port=70000, analyze=lambda: None)


def test_snapshot_of_an_interleaving_report(store) -> None:
    """An interleave-only experiment exports its preference as the metric ``interleaving_preference``."""
    from abharness.analysis import analyze

    rng = np.random.default_rng(5)
    events: list = []
    for u in range(150):
        for j in range(2):
            iid = f"i{u}-{j}"
            res = (ShownResult("a1", 1, 1.0, "finetuned"), ShownResult("b1", 2, 0.9, "baseline"))
            events.append(Impression(iid, EXPERIMENT, 1.7e9 + u + j / 10, f"u{u}", "interleaved", "interleave", "q", 2,
                                     res))
            doc, pos, team = ("a1", 1, "finetuned") if rng.random() < 0.7 else ("b1", 2, "baseline")
            events.append(Click(iid, EXPERIMENT, f"u{u}", "interleaved", 1.7e9 + u + 1, doc, pos, team))
    store.write_batch(events)
    from abharness.analysis import AnalysisOptions

    report = analyze(store, EXPERIMENT, options=AnalysisOptions(control="baseline"))
    snap = snapshot_from_report(report, now=5.0)
    (pref,) = [m for m in snap.metrics if m.name == "interleaving_preference"]
    assert pref.lift == pytest.approx(report.interleaving.preference)
    assert pref.lift > 0 and pref.lift_lower is not None and pref.lift_lower > 0
    assert snap.srm_p_value is None and snap.decision == report.decision


def test_serve_in_the_foreground_until_stopped(store) -> None:
    import threading

    from abharness.analysis.exporter import serve_experiment_metrics

    write_experiment(store, units=100, ctr={"baseline": 0.3, "finetuned": 0.3}, seed=2)
    stop = threading.Event()
    started: list = []
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(serve_experiment_metrics(
        store, EXPERIMENT, interval_s=0.2, port=0, stop=stop, on_start=started.append)))
    t.start()
    try:
        for _ in range(600):
            if started and started[0].job.runs >= 2:
                break
            stop.wait(0.05)
        text = httpx.get(started[0].url, timeout=10).text
        assert "abharness_experiment_decision" in text
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive() and result[0] >= 2
    with pytest.raises(httpx.TransportError):
        httpx.get(started[0].url, timeout=2)


def test_registering_twice_on_one_registry_is_refused_and_names_match_describe() -> None:
    registry = CollectorRegistry()
    metrics = register_experiment_metrics(registry, roles={"a": "control", "b": "treatment"})
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        register_experiment_metrics(registry)
    metrics.update(_snap("ship", (MetricSnapshot("ctr", 0.1, 0.0, 0.2, 0.01, 0.04, {"a": 0.3, "b": 0.4}),),
                         {"a": 1, "b": 2}))
    described = {f.name for f in metrics.describe()}
    collected = {f.name for f in metrics.collect()}
    assert collected == described


@pytest.mark.timeout(120)
def test_cli_serve_metrics_process_exports_and_stops_on_sigterm(tmp_path: Path, deploy: SimpleNamespace) -> None:
    """`abharness analyze --serve-metrics` as the compose/k8s exporter runs it: a real process, scraped over HTTP,
    stopped by SIGTERM with exit code 0."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import threading
    import time

    from abharness.stores import open_store

    db = tmp_path / "events.db"
    st = open_store(f"sqlite:///{db}")
    per_arm = write_experiment(st, units=120, ctr={"baseline": 0.3, "finetuned": 0.3}, seed=9)
    st.close()
    cfg = tmp_path / "experiment.yaml"
    cfg.write_text(yaml.safe_dump({
        "experiment_id": EXPERIMENT, "salt": "s",
        "arms": [{"name": "baseline", "role": "control", "backend": {"kind": "remote", "url": "http://127.0.0.1:9"}},
                 {"name": "finetuned", "role": "treatment", "backend": {"kind": "remote", "url": "http://127.0.0.1:9"}}],
        "weights": {"baseline": 0.5, "finetuned": 0.5},
    }))
    args = ["analyze", "--store", f"sqlite:///{db}", "--experiment", EXPERIMENT, "--config", str(cfg),
            "--serve-metrics", "--metrics-port", "0", "--interval", "0.5", "--bootstrap", "0",
            "--timeseries-points", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from abharness.cli.main import main; main(sys.argv[1:])", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
    )
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            m = re.search(r"(http://127\.0\.0\.1:\d+/metrics)", "".join(err))
            url = m.group(1) if m else None
            time.sleep(0.1)
        assert url, f"no metrics URL announced; exit={proc.poll()} stderr={''.join(err)}"
        text = ""
        while "abharness_experiment_units" not in text and time.monotonic() < deadline:
            text = httpx.get(url, timeout=5).text
            time.sleep(0.2)
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        units = {s.labels["arm"]: s.value for s in fams["abharness_experiment_units"].samples}
        assert units == {arm: float(n) for arm, n in per_arm.items()}
        assert {s.labels["role"] for s in fams["abharness_arm_info"].samples} == {"control", "treatment"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(10)
    assert code == 0, "".join(err)
    assert re.search(r"stopped after \d+ analyses", "".join(err))
