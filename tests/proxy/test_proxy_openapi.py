"""The published OpenAPI schema matches the answers: every status and body the proxy sends is declared, 4xx/5xx
bodies follow ``ErrorBody``, /metrics is text/plain. A schemathesis run (generated valid and invalid requests)
against the app under a real uvicorn checks it: zero 5xx, zero answers that break the schema."""

from __future__ import annotations

import collections

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from prometheus_client import CollectorRegistry

from abharness.api.app import create_app
from abharness.simulate.live import serve_in_thread
from abharness.testing.configs import TEST_ADMIN_TOKEN, make_config
from abharness.testing.fakes import DictBackend, tiny_corpus

EXAMPLES_PER_OPERATION = 150  # ~2,000 cases in about a minute on the shared 2-CPU machine


LAYERED = {"buckets": [0, 5000], "holdout": {"salt": "h", "share": 0.1}, "layers": [{
    "name": "depth", "salt": "depth", "owns": ["k"], "experiments": [{
        "experiment_id": "k-test", "buckets": [0, 4000], "weights": {"c": 0.5, "t": 0.5},
        "arms": [{"name": "c", "role": "control", "params": {"k": 3}},
                 {"name": "t", "role": "treatment", "params": {"k": 7}}]}]}]}
#: The routes a layered file changes (the lifecycle calls answer 409 for a single-experiment file).
LAYERED_PATHS = ("/search", "/click", "/events", "/admin/layers", "/admin/experiments")


def _app(tmp_path, **over):
    corpus = tiny_corpus(40)
    cfg = make_config(store_url=f"sqlite:///{tmp_path / 'events.db'}", events={"spool_dir": str(tmp_path / "spool")},
                      **over)
    backends = {"baseline": DictBackend(corpus, name="baseline"), "finetuned": DictBackend(corpus, name="finetuned")}
    return create_app(cfg, registry=CollectorRegistry(), backends=backends)


def test_schema_declares_error_bodies_metrics_text_and_readiness(tmp_path):
    spec = _app(tmp_path).openapi()
    paths = spec["paths"]
    for path, ops in paths.items():
        for method, op in ops.items():
            for status, resp in op["responses"].items():
                if status.startswith(("4", "5")) and path != "/readyz":
                    ref = resp["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (method, path, status)
    assert "HTTPValidationError" not in str(paths)
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert "503" in paths["/readyz"]["get"]["responses"]
    search = spec["components"]["schemas"]["SearchRequest"]
    assert "unit_id" in search["required"]  # no session cookie configured: the proxy needs it
    assert {"413", "422", "503"} <= set(paths["/search"]["post"]["responses"])


@pytest.mark.slow
@pytest.mark.parametrize("layered", [False, True], ids=["single", "layered"])
def test_generated_requests_get_no_5xx_and_no_answer_outside_the_schema(tmp_path, layered):
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi import checks as oc

    checks = [not_a_server_error, oc.status_code_conformance, oc.content_type_conformance,
              oc.response_schema_conformance, oc.response_headers_conformance]
    statuses: collections.Counter[int] = collections.Counter()
    failures: list[str] = []
    with serve_in_thread(_app(tmp_path, **(LAYERED if layered else {}))) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()
            if layered and not operation.path.startswith(LAYERED_PATHS):
                continue
            strategy = (operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
                        | operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

            label = operation.label

            @given(case=strategy)
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case):
                n = sum(statuses.values())
                if case.path.startswith("/admin") and n % 2 == 0:  # half the admin calls authorised
                    case.headers = {**(case.headers or {}), "authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
                response = case.call(base_url=url, timeout=30)
                statuses[response.status_code] += 1
                # negative_data_rejection: a generated invalid request must be refused (413 counts as refused)
                extra = [oc.negative_data_rejection] if response.status_code != 413 else []
                try:
                    case.validate_response(response, checks=checks + extra)
                except BaseException as exc:  # schemathesis raises a FailureGroup (an exception group)
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    failures.append(f"{label} -> {response.status_code}: {str(exc)[:400]}")

            run()
    total = sum(statuses.values())
    server_errors = sum(n for s, n in statuses.items() if s >= 500)
    print(f"\nschemathesis: {total} cases, statuses {dict(sorted(statuses.items()))}, "
          f"5xx {server_errors}, schema failures {len(failures)}")
    assert total > (500 if layered else 1000)
    assert not failures, "\n".join(failures[:10])
    assert server_errors == 0
    assert statuses[200] > 100  # the run reached the real code paths, not only the validators
