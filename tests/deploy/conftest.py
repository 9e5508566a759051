"""Fixtures for the deployment/monitoring tests: paths of the deploy files, promtool/prometheus binaries (skip with
a printed reason when absent), a PromQL metric-name extractor, and a proxy app on fake backends driven through
every code path that creates a metric series."""

from __future__ import annotations

import json
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DASHBOARDS = REPO / "dashboards"
RULES_FILE = DEPLOY / "prometheus" / "rules" / "abharness-alerts.yml"
RULE_TESTS_FILE = DEPLOY / "prometheus" / "tests" / "abharness-alerts.test.yml"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
ANALYSIS_TEMPLATE = DEPLOY / "k8s" / "argo" / "analysis-template.yaml"

# Series that Prometheus itself synthesises (not exported by any app); each is listed because a rule uses it.
PROMETHEUS_BUILTINS = frozenset({"up"})


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} not found on PATH: install Debian's prometheus package (apt-get install -y prometheus); "
            ".ci/run installs it in CI"
        )
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _binary("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return _binary("prometheus")


# ---------------------------------------------------------------- PromQL expressions of the deploy files

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"(?<![\w.:$])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "atan2", "inf", "nan",
})
_LABEL_VALUES = re.compile(r"label_values\(\s*([^,()]+?)\s*,\s*\w+\s*\)")


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's template variables so the expression is plain PromQL."""
    expr = _LABEL_VALUES.sub(lambda m: m.group(1), expr)  # label_values(metric, label) -> metric
    expr = re.sub(r"\$__(?:rate_)?interval|\$__range", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)  # $metric appears only inside =~"..." matchers


def argo_to_promql(expr: str) -> str:
    """Replace Argo Rollouts' {{args.x}} placeholders (used only in conditions, but be safe)."""
    return re.sub(r"\{\{\s*args\.[\w-]+\s*\}\}", "1", expr)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (tokenizer, not a full parser: strings, label matchers, grouping
    clauses and ranges are removed; identifiers followed by '(' are functions; keywords are dropped)."""
    s = _STRING.sub('""', expr)
    s = _MATCHERS.sub(" ", s)
    s = _GROUPING.sub(" ", s)
    s = _RANGE.sub(" ", s)
    names = set()
    for m in _IDENT.finditer(s):
        token = m.group(0)
        if s[m.end():].lstrip().startswith("("):
            continue  # function or aggregation
        if token.lower() in _KEYWORDS:
            continue
        names.add(token)
    return names


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, promql) for every target and query variable of every dashboard JSON."""
    out: list[tuple[str, str]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                out.append((where, grafana_to_promql(node["expr"])))
            for key, value in node.items():
                walk(value, f"{where}/{node.get('title', key) if key == 'targets' else key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]")

    for path in sorted(DASHBOARDS.glob("*.json")):
        doc = json.loads(path.read_text())
        walk(doc.get("panels", []), path.name)
        for var in doc.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                out.append((f"{path.name} variable {var['name']}", grafana_to_promql(q)))
    return out


def rule_exprs() -> list[tuple[str, str]]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return [
        (f"rule {r.get('alert') or r.get('record')}", r["expr"])
        for g in doc["groups"] for r in g["rules"]
    ]


def recorded_names() -> set[str]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}


def analysis_template_exprs() -> list[tuple[str, str]]:
    doc = yaml.safe_load(ANALYSIS_TEMPLATE.read_text())
    return [
        (f"AnalysisTemplate metric {m['name']}", argo_to_promql(m["provider"]["prometheus"]["query"]))
        for m in doc["spec"]["metrics"]
    ]


@pytest.fixture(scope="session")
def deploy() -> SimpleNamespace:
    """Paths and helpers of this area, as one namespace (test modules cannot import conftest under importlib)."""
    return SimpleNamespace(
        REPO=REPO, DEPLOY=DEPLOY, DASHBOARDS=DASHBOARDS, RULES_FILE=RULES_FILE, RULE_TESTS_FILE=RULE_TESTS_FILE,
        PROMETHEUS_YML=PROMETHEUS_YML, ANALYSIS_TEMPLATE=ANALYSIS_TEMPLATE, PROMETHEUS_BUILTINS=PROMETHEUS_BUILTINS,
        ARMS=ARMS, free_port=free_port, metric_names=metric_names, grafana_to_promql=grafana_to_promql,
        dashboard_exprs=dashboard_exprs, rule_exprs=rule_exprs, recorded_names=recorded_names,
        analysis_template_exprs=analysis_template_exprs, proxy_config=proxy_config, drive_traffic=drive_traffic,
        sample_names=sample_names,
    )


@pytest.fixture(scope="session")
def all_exprs() -> list[tuple[str, str]]:
    exprs = dashboard_exprs() + rule_exprs() + analysis_template_exprs()
    assert len(exprs) > 30, "the expression collectors found suspiciously few expressions"
    return exprs


# ---------------------------------------------------------------- a proxy app on fake backends

ARMS = ("baseline", "finetuned")


def proxy_config(store_url: str, **overrides: Any) -> Any:
    from abharness.config import parse_config

    data = {
        "experiment_id": "deploy-test",
        "salt": "deploy-test-salt",
        "arms": [
            {"name": "baseline", "role": "control", "backend": {"kind": "remote", "url": "http://127.0.0.1:9"}},
            {"name": "finetuned", "role": "treatment", "backend": {"kind": "remote", "url": "http://127.0.0.1:9"}},
        ],
        "weights": {"baseline": 0.5, "finetuned": 0.5},
        "store_url": store_url,
        "insecure_dev": True,
        "events": {"flush_interval_s": 0.05},
        **overrides,
    }
    return parse_config(data, source="tests/deploy")


@pytest.fixture
def fake_backends() -> dict[str, Any]:
    from abharness.testing.fakes import DictBackend, tiny_corpus

    docs = tiny_corpus(40)
    return {arm: DictBackend(docs, name=arm) for arm in ARMS}


def drive_traffic(client: Any, backends: dict[str, Any], *, searches: int = 40) -> dict[str, int]:
    """Send searches (both arms), clicks (accepted, duplicate, forged), and a burst with a failing treatment
    (errors + fallbacks). ``client`` is a sync httpx-like client. Returns counts per arm of served searches."""
    served: dict[str, int] = {}
    tokens = []
    for i in range(searches):
        r = client.post("/search", json={"query": f"protein cell study {i % 7}", "unit_id": f"user-{i}"})
        r.raise_for_status()
        body = r.json()
        served[body["arm"]] = served.get(body["arm"], 0) + 1
        tokens.append(body)
    for body in tokens[::2]:
        first = body["results"][0]
        click = {"impression_token": body["impression_token"], "doc_id": first["doc_id"], "position": 1}
        assert client.post("/click", json=click).status_code == 200
        client.post("/click", json=click)  # duplicate: stored once
    forged = {"impression_token": "forged.token", "doc_id": "d1", "position": 1}
    assert client.post("/click", json=forged).status_code in (403, 422)
    backends["finetuned"].fail = True
    try:
        for i in range(searches):
            client.post("/search", json={"query": "gene virus", "unit_id": f"user-{i}"})
    finally:
        backends["finetuned"].fail = False
    return served


def sample_names(exposition: str) -> set[str]:
    """Every sample name in a Prometheus text exposition (incl. _total, _bucket, _sum, _count, _created)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {s.name for fam in text_string_to_metric_families(exposition) for s in fam.samples}


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'events.db'}"


@pytest.fixture
def make_client() -> Iterator[Callable[..., Any]]:
    """Build create_app(config, backends=...) and enter it with Starlette's TestClient (runs the lifespan)."""
    from fastapi.testclient import TestClient

    from abharness.api.app import create_app

    opened: list[Any] = []

    def make(config: Any, backends: dict[str, Any], registry: Any) -> Any:
        client = TestClient(create_app(config, registry=registry, backends=backends))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for c in opened:
        c.__exit__(None, None, None)
