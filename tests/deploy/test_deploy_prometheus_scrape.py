"""A real Prometheus process on loopback scrapes a real uvicorn proxy (fake backends, SQLite log) and the
experiment exporter analysing that same log; queries to Prometheus's HTTP API return per-arm series whose values
match what the proxy itself exports, and the recording rules of deploy/ evaluate on them.

Bounded in time: every wait is a poll with a deadline; the Prometheus process is always terminated."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

DEADLINE_S = 60.0


def _poll(fn, what: str, deadline_s: float = DEADLINE_S, every_s: float = 0.25) -> Any:
    """Call ``fn`` until it returns something truthy; fail naming ``what`` after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        try:
            last = fn()
        except (httpx.TransportError, KeyError, IndexError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every_s)
    raise AssertionError(f"timed out after {deadline_s}s waiting for {what}; last: {last!r}")


@pytest.fixture
def proxy_server(deploy: SimpleNamespace, tmp_path: Path, fake_backends: dict) -> Iterator[SimpleNamespace]:
    """create_app on fake backends, served by a real uvicorn on a free loopback port (in a thread)."""
    import uvicorn

    from abharness.api.app import create_app

    db = tmp_path / "events.db"
    config = deploy.proxy_config(f"sqlite:///{db}")
    app = create_app(config, registry=CollectorRegistry(), backends=fake_backends)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        _poll(lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200, "the proxy's /readyz")
        yield SimpleNamespace(base=base, port=port, config=config, db=db, backends=fake_backends)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def _prometheus_config(tmp_path: Path, deploy: SimpleNamespace, proxy_port: int, exporter_port: int) -> Path:
    """The repo's scrape jobs and rules, pointed at loopback with 1 s intervals (the rule group's own 30 s
    interval is dropped so the recording rules evaluate within the test)."""
    rules = yaml.safe_load(deploy.RULES_FILE.read_text())
    for group in rules["groups"]:
        group.pop("interval", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    cfg = yaml.safe_load(deploy.PROMETHEUS_YML.read_text())
    cfg["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    cfg["rule_files"] = [str(tmp_path / "rules.yml")]
    targets = {"abharness-proxy": f"127.0.0.1:{proxy_port}", "abharness-experiment": f"127.0.0.1:{exporter_port}"}
    jobs = []
    for job in cfg["scrape_configs"]:
        if job["job_name"] in targets:
            job.pop("scrape_interval", None)
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
            jobs.append(job)
    assert {j["job_name"] for j in jobs} == set(targets), "deploy/prometheus/prometheus.yml lost a scrape job"
    cfg["scrape_configs"] = jobs
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def prometheus_factory(prometheus_bin: str, tmp_path: Path, deploy: SimpleNamespace) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(config: Path) -> str:
        port = deploy.free_port()
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed with the process below
        proc = subprocess.Popen(
            [prometheus_bin, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {proc.returncode}: "
                                     f"{(tmp_path / 'prometheus.log').read_text()[-2000:]}")
            return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200

        _poll(ready, "prometheus /-/ready")
        return url

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _query(prom: str, promql: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": promql}, timeout=5)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def _by_arm(result: list[dict[str, Any]]) -> dict[str, float]:
    return {s["metric"]["arm"]: float(s["value"][1]) for s in result}


@pytest.mark.timeout(180)
def test_prometheus_scrapes_per_arm_series_from_a_running_proxy(
    deploy: SimpleNamespace, proxy_server: SimpleNamespace, prometheus_factory: Any, tmp_path: Path
) -> None:
    from abharness.analysis.exporter import start_experiment_metrics_server
    from abharness.stores import open_store

    store = open_store(f"sqlite:///{proxy_server.db}", migrate=False)
    exporter = start_experiment_metrics_server(store, "deploy-test", interval_s=1, port=0, config=proxy_server.config)
    stop = threading.Event()
    sent = {"n": 0}

    def background_searches() -> None:  # steady traffic while Prometheus scrapes, so rates are non-zero
        with httpx.Client(base_url=proxy_server.base, timeout=10) as c:
            while not stop.is_set():
                i = sent["n"]
                c.post("/search", json={"query": f"cell gene {i % 5}", "unit_id": f"bg-{i % 40}"}).raise_for_status()
                sent["n"] += 1
                stop.wait(0.02)

    bg = threading.Thread(target=background_searches, daemon=True)
    try:
        prom = prometheus_factory(_prometheus_config(tmp_path, deploy, proxy_server.port, exporter.port))
        up = _poll(lambda: (r := _query(prom, "up")) and len(r) == 2 and all(s["value"][1] == "1" for s in r)
                   and r, "both targets up")
        with httpx.Client(base_url=proxy_server.base, timeout=10) as client:
            deploy.drive_traffic(client, proxy_server.backends, searches=40)  # clicks, forged click, fallbacks
            bg.start()
            rates = _poll(lambda: (r := _by_arm(_query(prom, "abharness:search_requests:rate5m"))) and len(r) == 2
                          and all(v > 0 for v in r.values()) and r, "non-zero request rates per arm (recording rule)")
            p95 = _poll(lambda: (r := _by_arm(_query(prom, "abharness:search_latency_seconds:p95_5m")))
                        and len(r) == 2 and r, "p95 latency per arm (recording rule)")
            stop.set()
            bg.join(30)
            # traffic has stopped: the proxy's own counters are final; Prometheus must converge to them
            own = client.get("/metrics").text
        expected: dict[str, float] = {}
        for line in own.splitlines():
            if line.startswith("abharness_search_requests_total{"):
                arm = line.split('arm="')[1].split('"')[0]
                expected[arm] = expected.get(arm, 0.0) + float(line.rsplit(" ", 1)[1])
        requests_q = "sum by (arm) (abharness_search_requests_total)"
        got = _poll(lambda: (r := _by_arm(_query(prom, requests_q))) == expected and r, f"{requests_q} == {expected}")
        by_status = {f'{s["metric"]["arm"]}/{s["metric"]["status"]}': float(s["value"][1])
                     for s in _query(prom, "sum by (arm, status) (abharness_search_requests_total)")}
        roles = _poll(lambda: {s["metric"]["arm"]: s["metric"]["role"] for s in _query(prom, "abharness:arm_role")},
                      "the abharness:arm_role recording rule")
        units = _poll(lambda: (r := _by_arm(_query(prom, "abharness_experiment_units"))) and len(r) == 2 and r,
                      "experiment units per arm from the exporter")
        fallbacks = _by_arm(_query(prom, "sum by (arm) (abharness_fallbacks_total)"))
        decision = [s["metric"]["decision"] for s in _query(prom, "abharness_experiment_decision == 1")]
        lift = {s["metric"]["metric"]: round(float(s["value"][1]), 4) for s in _query(prom, "abharness_experiment_lift")}
    finally:
        stop.set()
        exporter.close()
        store.close()

    assert set(got) == set(deploy.ARMS)
    assert sum(got.values()) == 2 * 40 + sent["n"]  # every search we sent, counted once
    assert {s["metric"]["job"] for s in up} == {"abharness-proxy", "abharness-experiment"}
    assert roles == {"baseline": "control", "finetuned": "treatment"}
    assert all(v > 0 for v in p95.values())
    assert fallbacks.get("finetuned", 0) > 0  # the failing-treatment burst of drive_traffic
    assert set(units) == set(deploy.ARMS)
    assert len(decision) == 1 and decision[0] in ("ship", "keep-running", "rollback")
    assert "ctr" in lift
    print("\nPrometheus query results against the running proxy:")
    for name, value in [(requests_q, got), ("sum by (arm, status) (abharness_search_requests_total)", by_status),
                        ("abharness:search_requests:rate5m", rates),
                        ("abharness:search_latency_seconds:p95_5m", p95),
                        ("sum by (arm) (abharness_fallbacks_total)", fallbacks),
                        ("abharness:arm_role", roles), ("abharness_experiment_units", units),
                        ("abharness_experiment_decision == 1", decision), ("abharness_experiment_lift", lift)]:
        print(f"  {name}: {json.dumps(value, sort_keys=True)}")


def _dashboard_targets(deploy: SimpleNamespace) -> list[tuple[str, str, bool]]:
    """(panel title / refId, expr with Grafana's variables still in it, instant?) for every panel target."""
    out = []
    for path in sorted(deploy.DASHBOARDS.glob("*.json")):
        stack = list(json.loads(path.read_text())["panels"])
        while stack:
            panel = stack.pop(0)
            stack.extend(panel.get("panels", []))
            for t in panel.get("targets", []):
                if isinstance(t.get("expr"), str):
                    out.append((f"{path.name}: {panel['title']} [{t.get('refId')}]", t["expr"],
                                panel.get("type") == "stat" or bool(t.get("instant"))))
    return out


def _substitute(expr: str, variables: dict[str, str], rate_interval: str) -> str:
    """What Grafana sends for ``expr``: $__rate_interval/$__interval/$__range as a duration and each template
    variable as its selected values (a multi-value "All" becomes the regex alternation ``(a|b|c)``)."""
    import re

    expr = re.sub(r"\$__(?:rate_)?interval|\$__range", rate_interval, expr)
    for name, value in variables.items():
        expr = re.sub(r"\$\{" + name + r"(?::\w+)?\}|\$" + name + r"\b", value, expr)
    assert "$" not in expr, f"unsubstituted variable left in {expr!r}"
    return expr


@pytest.mark.timeout(240)
def test_every_grafana_panel_query_returns_data_from_a_running_proxy(
    deploy: SimpleNamespace, proxy_server: SimpleNamespace, prometheus_factory: Any, tmp_path: Path
) -> None:
    """Each panel of dashboards/*.json, queried the way Grafana would (its template variables filled from the
    label values Prometheus has, $__rate_interval as four scrape intervals), returns at least one series from a
    real Prometheus scraping a real proxy and the experiment exporter."""
    from abharness.analysis.exporter import start_experiment_metrics_server
    from abharness.stores import open_store

    store = open_store(f"sqlite:///{proxy_server.db}", migrate=False)
    exporter = start_experiment_metrics_server(store, "deploy-test", interval_s=1, port=0, config=proxy_server.config)
    stop = threading.Event()

    def background_searches() -> None:  # steady traffic (with clicks) while Prometheus scrapes, so rates exist
        with httpx.Client(base_url=proxy_server.base, timeout=10) as c:
            i = 0
            while not stop.is_set():
                body = c.post("/search", json={"query": f"cell gene {i % 5}", "unit_id": f"bg-{i % 40}"}).json()
                if i % 3 == 0:
                    first = body["results"][0]
                    c.post("/click", json={"impression_token": body["impression_token"], "doc_id": first["doc_id"],
                                           "position": 1})
                i += 1
                stop.wait(0.02)

    bg = threading.Thread(target=background_searches, daemon=True)
    results: dict[str, int] = {}
    try:
        prom = prometheus_factory(_prometheus_config(tmp_path, deploy, proxy_server.port, exporter.port))
        _poll(lambda: (r := _query(prom, "up")) and len(r) == 2 and all(s["value"][1] == "1" for s in r),
              "both targets up")
        with httpx.Client(base_url=proxy_server.base, timeout=10) as client:
            deploy.drive_traffic(client, proxy_server.backends, searches=40)  # clicks, forged click, fallbacks
        bg.start()
        metric_values = _poll(lambda: httpx.get(f"{prom}/api/v1/label/metric/values",
                                                params={"match[]": "abharness_experiment_lift"},
                                                timeout=5).json()["data"], "label_values(abharness_experiment_lift, "
                                                                           "metric)")
        variables = {"metric": "(" + "|".join(metric_values) + ")"}
        targets = _dashboard_targets(deploy)
        assert len(targets) >= 25, "the panel collector found suspiciously few targets"
        for where, expr, instant in targets:
            promql = _substitute(expr, variables, rate_interval="4s")

            def data(promql: str = promql, instant: bool = instant) -> int:
                if instant:
                    return len(_query(prom, promql))
                now = time.time()
                r = httpx.get(f"{prom}/api/v1/query_range", params={"query": promql, "start": now - 30,
                                                                    "end": now, "step": "1"}, timeout=5)
                r.raise_for_status()
                return len(r.json()["data"]["result"])

            results[where] = _poll(data, f"data for panel {where}: {promql}", deadline_s=30)
    finally:
        stop.set()
        bg.join(30)
        exporter.close()
        store.close()
    print("\nGrafana panel queries against Prometheus (series returned):")
    for where, n in results.items():
        print(f"  {n:3d}  {where}")
    assert all(n > 0 for n in results.values())
