"""The compose file, Dockerfile, Kubernetes/Argo manifests and Grafana provisioning parse, and what they say agrees
with the code: every `abharness ...` command line parses against the real CLI, experiment files validate with the
real config model, ports/URLs/service names line up, probe paths are routes of the real apps, mounted paths exist.

(No Docker engine or Kubernetes cluster runs here: this is what can be checked without one.)"""

from __future__ import annotations

import json
import re
import secrets
import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml


@pytest.fixture(scope="module")
def compose(deploy: SimpleNamespace) -> dict[str, Any]:
    return yaml.safe_load((deploy.DEPLOY / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def k8s(deploy: SimpleNamespace) -> list[dict[str, Any]]:
    docs = []
    for path in sorted((deploy.DEPLOY / "k8s").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                doc["__file__"] = str(path.relative_to(deploy.DEPLOY))
                docs.append(doc)
    return docs


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The first (base, not patch) document of that kind and name."""
    found = [d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name
             and not d["__file__"].endswith("-patch.yaml")]
    assert len(found) >= 1, f"no {kind}/{name} in deploy/k8s"
    return found[0]


@pytest.fixture(scope="module")
def cli() -> Any:
    import typer

    from abharness.cli.main import build_app

    return typer.main.get_command(build_app())


def parse_cli(cli: Any, args: list[str]) -> dict[str, Any]:
    """Parse an `abharness` argument list with the real click command (raises on an unknown command/option)."""
    assert args and args[0] in cli.commands, f"unknown abharness command in {args}: have {sorted(cli.commands)}"
    cmd = cli.commands[args[0]]
    return dict(cmd.make_context(args[0], list(args[1:])).params)


def _secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABHARNESS_ADMIN_TOKEN", secrets.token_urlsafe(24))
    monkeypatch.setenv("ABHARNESS_TOKEN_SECRET", secrets.token_urlsafe(24))


def _validate_experiment(data: dict[str, Any], monkeypatch: pytest.MonkeyPatch, source: str) -> Any:
    """Validate in *secure* mode with the secrets only in the environment, as the containers get them."""
    from abharness.config import parse_config

    assert "admin_token" not in data and "token_secret" not in data, f"{source}: secrets must not be in the file"
    _secrets_env(monkeypatch)
    return parse_config(data, source=source)


def _hostport(url: str) -> tuple[str, int]:
    u = urlparse(url)
    assert u.hostname and u.port, url
    return u.hostname, u.port


# ------------------------------------------------------------------------------------------------ compose


def test_compose_has_the_whole_stack(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "postgres", "index-baseline", "index-finetuned", "proxy", "experiment-metrics", "prometheus", "grafana"}


def test_compose_command_lines_parse_against_the_cli(compose: dict[str, Any], cli: Any) -> None:
    for name in ("index-baseline", "index-finetuned", "proxy", "experiment-metrics"):
        svc = compose["services"][name]
        assert svc["image"] == "abharness:local" and svc["build"]["dockerfile"] == "deploy/Dockerfile"
        parse_cli(cli, svc["command"])


def test_compose_experiment_file_validates_and_matches_the_services(
    compose: dict[str, Any], deploy: SimpleNamespace, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    proxy = services["proxy"]
    mount = next(v for v in proxy["volumes"] if v.endswith(":ro") and "experiment" in v)
    src, target, _ = mount.split(":")
    assert parse_cli(cli, proxy["command"])["config"] == Path(target)
    data = yaml.safe_load((deploy.DEPLOY / src).read_text())
    cfg = _validate_experiment(data, monkeypatch, src)
    # the proxy listens where compose publishes it and where Prometheus scrapes it
    assert cfg.host == "0.0.0.0"
    assert f"{cfg.port}:{cfg.port}" in proxy["ports"]
    prom = yaml.safe_load(deploy.PROMETHEUS_YML.read_text())
    targets = {j["job_name"]: j["static_configs"][0]["targets"][0] for j in prom["scrape_configs"]}
    assert targets["abharness-proxy"] == f"proxy:{cfg.port}"
    # each remote arm points at an index-server service, on the port that service listens on
    for arm in cfg.arms:
        assert arm.backend.kind == "remote"
        host, port = _hostport(arm.backend.url)
        assert host in services, f"arm {arm.name}: {host} is not a compose service"
        params = parse_cli(cli, services[host]["command"])
        assert params["port"] == port and params["host"] == "0.0.0.0"
        assert services[host]["command"][0] == "index-server"
    # the store URL names the postgres service with the credentials it is created with
    pg = services["postgres"]["environment"]
    url = urlparse(cfg.store_url)
    assert (url.scheme, url.hostname, url.port, url.username, url.password, url.path.lstrip("/")) == (
        "postgresql", "postgres", 5432, pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    # the two secrets the config reads from the environment are passed to the proxy
    assert {"ABHARNESS_ADMIN_TOKEN", "ABHARNESS_TOKEN_SECRET"} <= set(proxy["environment"])


def test_secrets_really_come_from_those_environment_variables(
    deploy: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from abharness.config import parse_config
    from abharness.errors import ConfigError

    data = yaml.safe_load((deploy.DEPLOY / "experiment.compose.yaml").read_text())
    monkeypatch.delenv("ABHARNESS_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("ABHARNESS_TOKEN_SECRET", raising=False)
    with pytest.raises(ConfigError, match="admin_token"):
        parse_config(data, source="compose")
    _secrets_env(monkeypatch)
    parse_config(data, source="compose")


def test_compose_exporter_matches_prometheus_and_the_store(
    compose: dict[str, Any], deploy: SimpleNamespace, cli: Any
) -> None:
    svc = compose["services"]["experiment-metrics"]
    params = parse_cli(cli, svc["command"])
    assert params["serve_metrics"] is True and params["interval"] > 0
    assert params["bootstrap"] == 0 and params["timeseries_points"] == 0  # unused by the gauges, costly per cycle
    prom = yaml.safe_load(deploy.PROMETHEUS_YML.read_text())
    targets = {j["job_name"]: j["static_configs"][0]["targets"][0] for j in prom["scrape_configs"]}
    assert targets["abharness-experiment"] == f"experiment-metrics:{params['metrics_port']}"
    assert f"{params['metrics_port']}:{params['metrics_port']}" in svc["ports"]
    assert params["store"] == yaml.safe_load((deploy.DEPLOY / "experiment.compose.yaml").read_text())["store_url"]
    assert params["experiment"] == "scifact-ft-vs-minilm"


def test_compose_mounts_exist_and_match_what_the_programs_read(compose: dict[str, Any], deploy: SimpleNamespace) -> None:
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith(".") and src != "../artifacts":  # artifacts/ is made by the user (docs/deploy.md)
                assert (deploy.DEPLOY / src).exists(), f"{name}: mounted path {src} does not exist"
    prom = compose["services"]["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prom["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    graf = compose["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":") for v in graf["volumes"] if v.startswith("."))
    provisioning = deploy.DASHBOARDS / "provisioning"
    assert mounts["../dashboards/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((provisioning / "dashboards" / "abharness.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == mounts["../dashboards"]
    home = graf["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (deploy.DASHBOARDS / Path(home).name).is_file()
    ds = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert ds["type"] == "prometheus" and _hostport(ds["url"]) == ("prometheus", 9090)
    assert "9090:9090" in prom["ports"]


def test_dashboard_is_a_grafana_dashboard_on_a_prometheus_datasource(deploy: SimpleNamespace) -> None:
    for path in deploy.DASHBOARDS.glob("*.json"):
        doc = json.loads(path.read_text())
        assert doc["uid"] and doc["title"] and doc["schemaVersion"] >= 36
        var = {v["name"]: v for v in doc["templating"]["list"]}
        assert var["datasource"]["type"] == "datasource" and var["datasource"]["query"] == "prometheus"
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids)), "panel ids must be unique"
        for p in doc["panels"]:
            if p["type"] != "row":
                assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        titles = " | ".join(p["title"] for p in doc["panels"])
        for needed in ("configured split", "SRM", "p50 / p95 / p99", "Error rate", "Fallback rate", "CTR and MRR",
                       "always-valid", "queue depth", "dropped", "allocation", "Paused"):
            assert needed.lower() in titles.lower(), f"no panel for {needed!r}"


# ------------------------------------------------------------------------------------------------ Dockerfile


def _dockerfile(deploy: SimpleNamespace) -> str:
    return (deploy.DEPLOY / "Dockerfile").read_text()


def test_dockerfile_copies_existing_paths_and_pins_cpu_torch(deploy: SimpleNamespace) -> None:
    text = _dockerfile(deploy)
    for line in text.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            parts = [p for p in shlex.split(line)[1:] if not p.startswith("--")]
            for src in parts[:-1]:
                if not src.startswith("artifacts/"):  # the optional with-artifacts target
                    assert (deploy.REPO / src).exists(), f"Dockerfile copies missing {src}"
    pyproject = (deploy.REPO / "pyproject.toml").read_text()
    pin = re.search(r'"torch==([^"]+)"', pyproject).group(1)
    assert f"ARG TORCH_VERSION={pin}" in text
    assert re.search(r"ARG TORCH_INDEX_URL=\S+/cpu\b", text)
    assert "HF_HUB_OFFLINE=1" in text


def test_dockerfile_entrypoint_ports_and_healthcheck_match_the_code(deploy: SimpleNamespace, cli: Any) -> None:
    from abharness.config import ExperimentConfig

    text = _dockerfile(deploy)
    assert 'ENTRYPOINT ["abharness"]' in text
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    params = parse_cli(cli, cmd)
    assert params["config"] == Path("/etc/abharness/experiment.yaml")
    exposed = {int(p) for p in re.search(r"^EXPOSE (.*)$", text, re.M).group(1).split()}
    proxy_port = ExperimentConfig.model_fields["port"].default
    index_port = cli.commands["index-server"].make_context("index-server", ["--index", "x"]).params["port"]
    assert {proxy_port, index_port, 9108} == exposed
    assert f"http://127.0.0.1:{proxy_port}/healthz" in text


def test_health_paths_are_routes_of_the_real_apps(deploy: SimpleNamespace, fake_backends: dict) -> None:
    """The probe and scrape paths of the manifests answer on the real apps (run with their lifespans)."""
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry

    from abharness.api.app import create_app
    from abharness.api.index_server import create_index_server_app

    proxy = create_app(deploy.proxy_config("sqlite:///:memory:"), registry=CollectorRegistry(),
                       backends=fake_backends)
    with TestClient(proxy) as c:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert c.get(path).status_code == 200, path
    with TestClient(create_index_server_app(fake_backends["baseline"])) as c:
        for path in ("/healthz", "/readyz"):
            assert c.get(path).status_code == 200, path
        assert c.get("/no-such-path").status_code == 404


# ------------------------------------------------------------------------------------------------ Kubernetes


def test_k8s_documents_are_well_formed(k8s: list[dict[str, Any]]) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in k8s if "metadata" in d}
    for needed in [("Deployment", "abharness-proxy"), ("Service", "abharness-proxy"),
                   ("ConfigMap", "abharness-experiment"), ("HorizontalPodAutoscaler", "abharness-proxy"),
                   ("AnalysisTemplate", "abharness-experiment-gate"), ("Rollout", "abharness-proxy")]:
        assert needed in kinds
    for d in k8s:
        assert d.get("apiVersion") and d.get("kind"), d["__file__"]
        if d["kind"] != "Kustomization":
            assert d["metadata"].get("name"), d["__file__"]


def test_kustomizations_list_existing_files(deploy: SimpleNamespace, k8s: list[dict[str, Any]]) -> None:
    for d in k8s:
        if d["kind"] != "Kustomization":
            continue
        here = deploy.DEPLOY / Path(d["__file__"]).parent
        for res in d["resources"]:
            assert (here / res).exists(), f"{d['__file__']}: {res} missing"
        for patch in d.get("patches", []):
            assert (here / patch["path"]).is_file()


def test_k8s_deployments_services_and_probes_line_up(
    deploy: SimpleNamespace, k8s: list[dict[str, Any]], cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cm = _one(k8s, "ConfigMap", "abharness-experiment")
    cfg = _validate_experiment(yaml.safe_load(cm["data"]["experiment.yaml"]), monkeypatch, "configmap.yaml")
    services = {d["metadata"]["name"]: d for d in k8s if d["kind"] == "Service"}
    for dep in (d for d in k8s if d["kind"] == "Deployment"):
        name = dep["metadata"]["name"]
        pod = dep["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        (container,) = pod["spec"]["containers"]
        params = parse_cli(cli, container["args"])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        svc = services[name]
        assert svc["spec"]["selector"].items() <= labels.items(), f"Service {name} selects no pod of {name}"
        for sp in svc["spec"]["ports"]:
            assert sp["targetPort"] in ports
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        assert set(mounts) <= set(volumes)
        for v in volumes.values():
            if "configMap" in v:
                assert v["configMap"]["name"] == cm["metadata"]["name"]
        env = {e["name"] for e in container.get("env", [])}
        if container["args"][0] == "serve":
            assert ports["http"] == cfg.port and cfg.host == "0.0.0.0"
            assert params["config"] == Path(mounts["experiment"]) / "experiment.yaml"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(cfg.port)
            assert {"ABHARNESS_ADMIN_TOKEN", "ABHARNESS_TOKEN_SECRET"} <= env
        elif container["args"][0] == "index-server":
            assert ports["http"] == params["port"] and params["host"] == "0.0.0.0"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        elif container["args"][0] == "analyze":
            assert params["serve_metrics"] is True and ports["metrics"] == params["metrics_port"]
            assert params["bootstrap"] == 0 and params["timeseries_points"] == 0
            assert params["store"] == cfg.store_url and params["experiment"] == cfg.experiment_id
            assert Path(params["config"]) == Path(mounts["experiment"]) / "experiment.yaml"
            assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(params["metrics_port"])
        else:
            raise AssertionError(f"unexpected command in Deployment {name}: {container['args']}")
    # every remote arm URL is a Service of an index server on the port that Service exposes
    for arm in cfg.arms:
        host, port = _hostport(arm.backend.url)
        assert host in services and port in {p["port"] for p in services[host]["spec"]["ports"]}
        assert services[host]["metadata"]["labels"]["abharness.io/arm"] == arm.name


def test_hpa_and_argo_objects_reference_what_exists(k8s: list[dict[str, Any]]) -> None:
    dep = _one(k8s, "Deployment", "abharness-proxy")
    hpa = _one(k8s, "HorizontalPodAutoscaler", "abharness-proxy")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "abharness-proxy"}
    assert hpa["spec"]["minReplicas"] >= 2
    rollout = _one(k8s, "Rollout", "abharness-proxy")
    ref = rollout["spec"]["workloadRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", dep["metadata"]["name"])
    assert rollout["spec"]["selector"] == dep["spec"]["selector"]
    template = _one(k8s, "AnalysisTemplate", "abharness-experiment-gate")
    canary = rollout["spec"]["strategy"]["canary"]
    used = {t["templateName"] for t in canary["analysis"]["templates"]}
    used |= {t["templateName"] for s in canary["steps"] if "analysis" in s for t in s["analysis"]["templates"]}
    assert used == {template["metadata"]["name"]}
    patch = [d for d in k8s if d["kind"] == "HorizontalPodAutoscaler" and "rollout" in d["__file__"]]
    assert patch and patch[0]["spec"]["scaleTargetRef"]["kind"] == "Rollout"


def test_analysis_template_gates_on_decision_srm_and_guardrails(k8s: list[dict[str, Any]]) -> None:
    template = _one(k8s, "AnalysisTemplate", "abharness-experiment-gate")
    args = {a["name"] for a in template["spec"]["args"]}
    queries = {}
    for m in template["spec"]["metrics"]:
        for text in (m.get("successCondition", ""), m.get("failureCondition", ""),
                     m["provider"]["prometheus"]["address"], m["provider"]["prometheus"]["query"]):
            for arg in re.findall(r"\{\{\s*args\.([\w-]+)\s*\}\}", text):
                assert arg in args, f"metric {m['name']} uses undefined arg {arg}"
        assert "result[0]" in m["successCondition"]
        queries[m["name"]] = m["provider"]["prometheus"]["query"]
    joined = " ".join(queries.values())
    for metric in ("abharness_experiment_decision", "abharness_experiment_srm_p_value",
                   "abharness_experiment_analysis_timestamp_seconds", "abharness_search_errors_total",
                   "abharness_fallbacks_total", "abharness_search_latency_seconds_bucket",
                   "abharness_experiment_lift_upper"):
        assert metric in joined, f"the gate does not look at {metric}"
    # fail closed: each experiment-statistics query has a fallback for a missing series
    for name in ("decision-not-rollback", "statistics-fresh", "no-sample-ratio-mismatch"):
        assert " or vector(" in queries[name]


def test_rules_reference_the_scrape_job_names(deploy: SimpleNamespace) -> None:
    prom = yaml.safe_load(deploy.PROMETHEUS_YML.read_text())
    jobs = {j["job_name"] for j in prom["scrape_configs"]}
    for _, expr in deploy.rule_exprs():
        for job in re.findall(r'job="([^"]+)"', expr):
            assert job in jobs


def test_the_console_script_of_the_entrypoint_is_callable(deploy: SimpleNamespace) -> None:
    """The image runs `abharness ...` (ENTRYPOINT): pyproject's console script must resolve to a function."""
    import importlib
    import tomllib

    scripts = tomllib.loads((deploy.REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attr = scripts["abharness"].partition(":")
    target = getattr(importlib.import_module(module), attr)
    assert callable(target), f"console script abharness = {scripts['abharness']} resolves to {target!r}"
