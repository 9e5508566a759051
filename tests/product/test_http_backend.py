"""kind: http against a loopback server answering as OpenSearch's _search does (match, knn, errors, timeouts,
partial results), the index-server preset, secrets from the environment, and the proxy's fallback with such an arm."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from abharness.api.app import create_app
from abharness.backends.http import HttpBackend, config_hash
from abharness.config import HttpBackendConfig
from abharness.errors import BackendError, ConfigError
from abharness.simulate.live import serve_in_thread
from abharness.testing.client import serving
from abharness.testing.configs import make_config
from abharness.testing.fakes import DictBackend, InlineWriter, MemoryStore, tiny_corpus
from abharness.testing.opensearch import HashEncoder, opensearch_app

CORPUS = tiny_corpus(60)


@pytest.fixture(scope="module")
def engine():
    app = opensearch_app(CORPUS)
    with serve_in_thread(app) as url:
        yield app, url


@pytest.fixture(autouse=True)
def _reset(engine):
    engine[0].state.fault = None
    engine[0].state.requests.clear()


def _cfg(**kw) -> HttpBackendConfig:
    return HttpBackendConfig.model_validate({"kind": "http", **kw})


def test_match_preset_sends_the_template_and_maps_hits(engine, monkeypatch):
    app, url = engine
    monkeypatch.setenv("OS_TOKEN", "s3cret-token-value")
    cfg = _cfg(preset="opensearch-match", url=f"{url}/docs/_search",
               headers={"Authorization": "Bearer ${OS_TOKEN}"}, fingerprint={"model": "bm25", "index": "docs-v1"})
    b = HttpBackend.from_config(cfg, timeout_s=2.0)
    try:
        [hits] = b.search(["cell protein"], 5)
    finally:
        b.close()
    sent = app.state.requests[-1]
    assert sent["body"] == {"size": 5, "query": {"match": {"text": "cell protein"}}}
    assert sent["headers"]["authorization"] == "Bearer s3cret-token-value"
    assert len(hits) == 5 and hits[0].title == f"Title {hits[0].doc_id}"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True) and hits[0].score == 2.0
    for h in hits:
        assert "cell" in CORPUS[h.doc_id] or "protein" in CORPUS[h.doc_id]
    digest = config_hash(cfg)
    assert b.info.model_fingerprint == f"bm25|http-config:{digest}"
    assert b.info.index_fingerprint == f"docs-v1|http-config:{digest}"
    assert "s3cret" not in b.info.model_fingerprint  # the hash is of the template, not the secret


def test_knn_preset_embeds_the_query(engine):
    app, url = engine
    enc = HashEncoder()
    cfg = _cfg(preset="opensearch-knn", url=f"{url}/docs/_search", encoder="hash")
    b = HttpBackend.from_config(cfg, timeout_s=2.0, encoder=enc)
    try:
        [hits] = b.search([CORPUS["d7"]], 4)
    finally:
        b.close()
    body = app.state.requests[-1]["body"]
    assert body["size"] == 4 and body["query"]["knn"]["embedding"]["k"] == 4
    assert len(body["query"]["knn"]["embedding"]["vector"]) == enc.dim
    assert hits[0].doc_id == "d7" and len(hits) == 4  # the exact document is the nearest


def test_knn_without_encoder_is_refused():
    with pytest.raises(ValueError, match="encoder"):
        _cfg(preset="opensearch-knn", url="http://127.0.0.1:9/docs/_search")


def test_missing_env_secret_and_bad_jmespath_are_one_line_errors():
    cfg = _cfg(preset="opensearch-match", url="http://127.0.0.1:9/x/_search",
               headers={"Authorization": "Bearer ${NOT_SET_ANYWHERE_123}"})
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE_123"):
        HttpBackend.from_config(cfg, timeout_s=1.0)
    with pytest.raises(ConfigError) as info:
        make_config(arms=[
            {"name": "baseline", "role": "control", "backend": {"kind": "http", "url": "http://127.0.0.1:9/s",
                                                                "body": {}, "hits": "hits[", "doc_id": "id",
                                                                "score": "s"}},
            {"name": "finetuned", "role": "treatment", "backend": {"kind": "remote", "url": "http://127.0.0.1:9"}}])
    assert "hits[" in str(info.value) and "JMESPath" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("fault, words", [
    ("400", ["400", "parsing_exception", "unknown query"]),
    ("500", ["500", "search_phase_execution_exception", "all shards failed"]),
    ("429", ["429", "es_rejected_execution_exception", "overloaded"]),
    ("partial", ["partial results"]),
])
def test_engine_errors_become_backend_errors_naming_the_cause(engine, fault, words):
    app, url = engine
    app.state.fault = fault
    b = HttpBackend.from_config(_cfg(preset="opensearch-match", url=f"{url}/docs/_search"), timeout_s=2.0)
    try:
        with pytest.raises(BackendError) as info:
            b.search(["cell"], 3)
    finally:
        b.close()
    for w in words:
        assert w in str(info.value)


def test_timeout_and_unreachable(engine):
    app, url = engine
    app.state.fault, app.state.delay_s = "slow", 1.0
    b = HttpBackend.from_config(_cfg(preset="opensearch-match", url=f"{url}/docs/_search"), timeout_s=0.2)
    try:
        with pytest.raises(BackendError, match="timed out"):
            b.search(["cell"], 3)
    finally:
        b.close()
    b = HttpBackend.from_config(_cfg(preset="opensearch-match", url="http://127.0.0.1:9/docs/_search"), timeout_s=0.5)
    try:
        with pytest.raises(BackendError, match="unreachable"):
            b.search(["cell"], 3)
    finally:
        b.close()


def test_custom_template_and_mapping(engine):
    app, url = engine
    cfg = _cfg(url=f"{url}/docs/_search", body={"size": "{{k}}", "query": {"match": {"text": "{{query}} study"}}},
               hits="hits.hits[?_score > `1`]", doc_id="_id", score="_score", title="_source.text")
    b = HttpBackend.from_config(cfg, timeout_s=2.0)
    try:
        [hits] = b.search(["cell"], 10)
    finally:
        b.close()
    assert app.state.requests[-1]["body"]["query"]["match"]["text"] == "cell study"
    assert hits and all(h.score > 1 and h.title == CORPUS[h.doc_id] for h in hits)


def test_abharness_index_server_preset():
    from abharness.api.index_server import create_index_server_app

    backend = DictBackend(CORPUS, name="idx")
    with serve_in_thread(create_index_server_app(backend)) as url:
        b = HttpBackend.from_config(_cfg(preset="abharness", url=url), timeout_s=2.0)
        try:
            [hits] = b.search(["heart brain"], 4)
            b.ping()
        finally:
            b.close()
    assert [h.doc_id for h in hits] == [h.doc_id for h in backend.search(["heart brain"], 4)[0]]


@pytest.mark.anyio
async def test_proxy_falls_back_when_the_http_treatment_fails(engine):
    app, url = engine
    cfg = make_config(arms=[
        {"name": "baseline", "role": "control", "backend": {"kind": "local", "index": "i", "model": "minilm"}},
        {"name": "finetuned", "role": "treatment",
         "backend": {"kind": "http", "preset": "opensearch-match", "url": f"{url}/docs/_search"}}],
        weights={"baseline": 0.0, "finetuned": 1.0})
    treatment = HttpBackend.from_config(cfg.arm("finetuned").backend, timeout_s=2.0)
    store = MemoryStore()
    backends = {"baseline": DictBackend(CORPUS, name="baseline"), "finetuned": treatment}
    proxy = create_app(cfg, registry=CollectorRegistry(), store=store, backends=backends, writer=InlineWriter(store))
    try:
        async with serving(proxy) as client:
            ok = (await client.post("/search", json={"query": "cell", "unit_id": "u1"})).json()
            app.state.fault = "500"
            fb = (await client.post("/search", json={"query": "cell", "unit_id": "u1"})).json()
    finally:
        treatment.close()
    assert ok["arm"] == "finetuned" and not ok["fallback"] and ok["results"][0]["title"].startswith("Title ")
    assert fb["arm"] == "finetuned" and fb["fallback"]
    imp = store.impressions[ok["impression_id"]]
    assert imp.fingerprints["finetuned"]["model"].startswith("undeclared|http-config:")
    assert "search_phase_execution_exception" in store.impressions[fb["impression_id"]].error
