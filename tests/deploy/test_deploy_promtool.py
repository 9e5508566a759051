"""promtool checks of the Prometheus files: scrape config, alert/recording rules, rule unit tests, and the syntax of
every PromQL expression in the dashboards and the Argo AnalysisTemplate (compiled by promtool as recording rules).

Skips with a printed reason when promtool is missing (.ci/run installs Debian's prometheus package)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import yaml


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_scrape_config_is_valid_and_loads_the_rules(promtool: str, deploy: SimpleNamespace) -> None:
    res = _run([promtool, "check", "config", str(deploy.PROMETHEUS_YML)])
    assert res.returncode == 0, res.stdout + res.stderr
    # the relative rule_files glob must find the rules file (0 files would still be "valid")
    assert "1 rule files found" in res.stdout, res.stdout
    assert deploy.RULES_FILE.name in res.stdout


def test_rules_are_valid(promtool: str, deploy: SimpleNamespace) -> None:
    res = _run([promtool, "check", "rules", str(deploy.RULES_FILE)])
    assert res.returncode == 0, res.stdout + res.stderr
    doc = yaml.safe_load(deploy.RULES_FILE.read_text())
    n_rules = sum(len(g["rules"]) for g in doc["groups"])
    assert f"SUCCESS: {n_rules} rules found" in res.stdout


def test_alert_rule_unit_tests_pass(promtool: str, deploy: SimpleNamespace) -> None:
    res = _run([promtool, "test", "rules", str(deploy.RULE_TESTS_FILE)])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_every_alert_has_a_firing_unit_test(deploy: SimpleNamespace) -> None:
    rules = yaml.safe_load(deploy.RULES_FILE.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load(deploy.RULE_TESTS_FILE.read_text())
    fired = {
        case["alertname"]
        for t in tests["tests"] for case in t.get("alert_rule_test", []) if case.get("exp_alerts")
    }
    assert alerts - fired == set(), f"alerts without a test that makes them fire: {sorted(alerts - fired)}"
    quiet = {
        case["alertname"]
        for t in tests["tests"] for case in t.get("alert_rule_test", []) if not case.get("exp_alerts")
    }
    guardrails = {
        "AbharnessTreatmentLatencyRegression", "AbharnessArmErrorRateHigh", "AbharnessFallbackRateHigh",
        "AbharnessSampleRatioMismatch", "AbharnessSignificantMetricDrop",
    }
    assert guardrails <= alerts
    assert guardrails - quiet == set(), f"guardrails without a must-stay-quiet case: {sorted(guardrails - quiet)}"


def test_a_broken_threshold_fails_the_rule_unit_tests(promtool: str, deploy: SimpleNamespace, tmp_path: Path) -> None:
    """The unit tests can fail: loosen the latency guardrail 10x and the suite must notice."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    text = deploy.RULES_FILE.read_text()
    assert "1.25 * abharness:search_latency_seconds:p95_5m:control" in text
    (tmp_path / "rules" / deploy.RULES_FILE.name).write_text(
        text.replace("1.25 * abharness:search_latency_seconds:p95_5m:control", "10 * abharness:search_latency_seconds:p95_5m:control")
    )
    shutil.copy(deploy.RULE_TESTS_FILE, tmp_path / "tests" / deploy.RULE_TESTS_FILE.name)
    res = _run([promtool, "test", "rules", str(tmp_path / "tests" / deploy.RULE_TESTS_FILE.name)])
    assert res.returncode != 0
    assert "AbharnessTreatmentLatencyRegression" in res.stdout + res.stderr


def test_dashboard_and_gate_queries_compile(promtool: str, deploy: SimpleNamespace, tmp_path: Path) -> None:
    """promtool parses each dashboard/AnalysisTemplate query (as a recording rule), catching PromQL typos."""
    exprs = deploy.dashboard_exprs() + deploy.analysis_template_exprs()
    assert len(exprs) >= 30
    rules = {"groups": [{"name": "syntax", "rules": [
        {"record": f"abharness_syntax_check_{i}", "expr": expr} for i, (_, expr) in enumerate(exprs)
    ]}]}
    path = tmp_path / "exprs.yml"
    path.write_text(yaml.safe_dump(rules))
    res = _run([promtool, "check", "rules", str(path)])
    if res.returncode != 0:
        bad = "\n".join(f"  {i}: {where}: {expr}" for i, (where, expr) in enumerate(exprs))
        raise AssertionError(f"{res.stdout}{res.stderr}\nexpressions by index:\n{bad}")
    assert f"SUCCESS: {len(exprs)} rules found" in res.stdout


def test_syntax_check_rejects_a_typo(promtool: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"record": "x", "expr": "sum by (arm (rate(abharness_search_requests_total[5m]))"}]}]}))
    assert _run([promtool, "check", "rules", str(path)]).returncode != 0
