"""A ``SearchBackend`` over a search engine a team already runs: a request template in, a JMESPath mapping out.

Request: ``method`` to ``url`` with ``headers`` (``${NAME}`` is read from the environment when the backend is
built, so secrets stay out of the experiment file and out of every message) and a JSON ``body`` template in which
the strings ``"{{query}}"``, ``"{{k}}"`` and ``"{{vector}}"`` are replaced (a whole-string ``{{k}}`` becomes a
number, ``{{vector}}`` the query's embedding from ``encoder``). Response: ``hits`` (JMESPath to the list), then per
hit ``doc_id``, ``score`` and ``title`` (JMESPath, https://jmespath.org, the ``jmespath`` package); ``fail_if``
(JMESPath) marks a 2xx answer as a failure, e.g. OpenSearch's partial results.

Presets (``preset:``):

- ``opensearch-match``: ``POST {url}`` ``{"size": k, "query": {"match": {text_field: query}}}``
- ``opensearch-knn``: ``POST {url}`` ``{"size": k, "query": {"knn": {vector_field: {"vector": [...], "k": k}}}}``
- both map ``hits.hits`` → ``_id``, ``_score``, ``_source.<title_field>`` and fail on ``timed_out`` or failed
  shards (OpenSearch answers 200 with partial hits then). Elasticsearch's ``_search`` has the same shapes.
- ``abharness``: the index server's ``POST /search {"queries": [q], "k": k}`` → ``results[0]``.

Connections are pooled (one thread-safe ``httpx.Client``); every failure (connect error, timeout, non-2xx with the
engine's error type and reason, a payload the mapping cannot read) is a ``BackendError`` naming the URL, which the
proxy turns into a fallback (treatment) or a 503 (control), as for the other backends. The fingerprint recorded
with every exposure is what the operator declares plus a hash of the arm's config (secrets unresolved).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jmespath

from abharness.backends.base import BackendInfo
from abharness.config import HttpBackendConfig
from abharness.core.hits import Hit
from abharness.errors import BackendError, ConfigError

__all__ = ["HttpBackend", "HttpSpec", "config_hash", "resolve_spec"]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_OPENSEARCH_FAIL = "timed_out || _shards.failed > `0`"


@dataclass(frozen=True)
class HttpSpec:
    """A resolved request template and response mapping."""

    url: str
    method: str
    headers: dict[str, str]
    body: Any
    hits: str
    doc_id: str
    score: str
    title: str | None
    fail_if: str | None
    needs_vector: bool
    health_url: str | None


def config_hash(cfg: HttpBackendConfig) -> str:
    """sha256 of the arm's config as written (``${NAME}`` placeholders, not the secrets), 16 hex digits."""
    text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _env_headers(headers: dict[str, str], environ: dict[str, str]) -> dict[str, str]:
    out = {}
    for name, value in headers.items():
        def sub(m: re.Match[str], header: str = name) -> str:
            var = m.group(1)
            if var not in environ:
                raise ConfigError(f"header {header!r} names the environment variable {var}, which is not set; "
                                  f"export {var}=... before starting")
            return environ[var]

        out[name] = _ENV.sub(sub, value)
    return out


def _contains(template: Any, marker: str) -> bool:
    if isinstance(template, str):
        return marker in template
    if isinstance(template, dict):
        return any(_contains(k, marker) or _contains(v, marker) for k, v in template.items())
    if isinstance(template, list):
        return any(_contains(v, marker) for v in template)
    return False


def resolve_spec(cfg: HttpBackendConfig, environ: dict[str, str] | None = None) -> HttpSpec:
    """The preset (if any) filled in and overridden by the explicit fields; headers' ``${NAME}`` resolved."""
    env = dict(os.environ if environ is None else environ)
    title_path = f"_source.{json.dumps(cfg.title_field)}"
    preset: dict[str, Any] = {}
    if cfg.preset in ("opensearch-match", "opensearch-knn"):
        query: dict[str, Any] = (
            {"match": {cfg.text_field: "{{query}}"}} if cfg.preset == "opensearch-match"
            else {"knn": {cfg.vector_field: {"vector": "{{vector}}", "k": "{{k}}"}}}
        )
        preset = {"method": "POST", "body": {"size": "{{k}}", "query": query}, "hits": "hits.hits", "doc_id": "_id",
                  "score": "_score", "title": title_path, "fail_if": _OPENSEARCH_FAIL}
    elif cfg.preset == "abharness":
        preset = {"method": "POST", "body": {"queries": ["{{query}}"], "k": "{{k}}"}, "hits": "results[0]",
                  "doc_id": "doc_id", "score": "score", "title": "title", "fail_if": None}
        if cfg.health_url is None:
            base = cfg.url.rsplit("/search", 1)[0] if cfg.url.endswith("/search") else cfg.url
            preset["health_url"] = base.rstrip("/") + "/readyz"
    url = cfg.url
    if cfg.preset == "abharness" and not url.rstrip("/").endswith("/search"):
        url = url.rstrip("/") + "/search"
    explicit = cfg.model_fields_set

    def pick(field: str) -> Any:
        value = getattr(cfg, field)
        return value if (field in explicit or field not in preset) else preset[field]

    body = pick("body")
    return HttpSpec(
        url=url, method=pick("method"), headers=_env_headers(cfg.headers, env), body=body, hits=pick("hits"),
        doc_id=pick("doc_id"), score=pick("score"), title=pick("title"), fail_if=pick("fail_if"),
        needs_vector=_contains(body, "{{vector}}"), health_url=cfg.health_url or preset.get("health_url"),
    )


def _render(template: Any, query: str, k: int, vector: list[float] | None) -> Any:
    if isinstance(template, str):
        if template == "{{k}}":
            return k
        if template == "{{vector}}":
            return vector
        return template.replace("{{query}}", query).replace("{{k}}", str(k))
    if isinstance(template, dict):
        return {_render(key, query, k, vector): _render(v, query, k, vector) for key, v in template.items()}
    if isinstance(template, list):
        return [_render(v, query, k, vector) for v in template]
    return template


def _engine_error(resp: httpx.Response) -> str:
    """The error type and reason of an OpenSearch/Elasticsearch error body, else the start of the body."""
    try:
        data = resp.json()
        kind = jmespath.search("error.type || error.root_cause[0].type", data)
        reason = jmespath.search("error.reason || error.root_cause[0].reason || error || detail", data)
        if kind or reason:
            return f"{kind + ': ' if kind else ''}{reason}"[:300]
    except ValueError:
        pass
    return resp.text[:200]


class HttpBackend:
    """One arm served over HTTP by an existing search engine (thread-safe; see the module docstring)."""

    def __init__(
        self,
        spec: HttpSpec,
        *,
        info: BackendInfo,
        timeout_s: float = 2.0,
        connect_timeout_s: float = 1.0,
        max_connections: int = 64,
        encoder: Any = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if spec.needs_vector and encoder is None:
            raise ConfigError(f"the request template for {spec.url} uses {{{{vector}}}}: configure an encoder")
        self.spec = spec
        self.info = info
        self.encoder = encoder
        self._hits = jmespath.compile(spec.hits)
        self._doc = jmespath.compile(spec.doc_id)
        self._score = jmespath.compile(spec.score)
        self._title = jmespath.compile(spec.title) if spec.title else None
        self._fail = jmespath.compile(spec.fail_if) if spec.fail_if else None
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers=spec.headers, transport=transport,
        )

    @classmethod
    def from_config(cls, cfg: HttpBackendConfig, *, timeout_s: float, encoder: Any = None,
                    transport: httpx.BaseTransport | None = None) -> HttpBackend:
        """Build from an arm's config; the fingerprint is the declared one plus the config's hash."""
        digest = config_hash(cfg)
        info = BackendInfo(model_fingerprint=f"{cfg.fingerprint.model}|http-config:{digest}",
                           index_fingerprint=f"{cfg.fingerprint.index}|http-config:{digest}", num_docs=0,
                           dim=int(getattr(encoder, "dim", 0) or 0))
        return cls(resolve_spec(cfg), info=info, timeout_s=timeout_s, max_connections=cfg.max_connections,
                   encoder=encoder, transport=transport)

    def _one(self, query: str, k: int, vector: list[float] | None) -> list[Hit]:
        spec = self.spec
        body = _render(spec.body, query, k, vector) if spec.body is not None else None
        try:
            if spec.method == "GET":
                resp = self._client.request("GET", spec.url, params={"q": query, "k": k})
            else:
                resp = self._client.request(spec.method, spec.url, json=body)
        except httpx.TimeoutException as exc:
            raise BackendError(f"search engine {spec.url} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"search engine {spec.url} unreachable ({type(exc).__name__}: {exc})") from exc
        if resp.status_code == 429:
            raise BackendError(f"search engine {spec.url} is rejecting requests (429 {_engine_error(resp)}); "
                               "it is overloaded: lower the traffic or scale it")
        if not 200 <= resp.status_code < 300:
            raise BackendError(f"search engine {spec.url} answered {resp.status_code}: {_engine_error(resp)}")
        try:
            data = resp.json()
        except ValueError as exc:
            raise BackendError(f"search engine {spec.url} sent a body that is not JSON") from exc
        if self._fail is not None and self._fail.search(data):
            raise BackendError(f"search engine {spec.url} answered with partial results ({spec.fail_if}); "
                               "not served")
        hits = self._hits.search(data)
        if not isinstance(hits, list):
            raise BackendError(f"search engine {spec.url}: hits path {spec.hits!r} found no list in the response; "
                               "fix the mapping")
        out = []
        for h in hits[:k]:
            doc, score = self._doc.search(h), self._score.search(h)
            if doc is None:
                raise BackendError(f"search engine {spec.url}: doc_id path {spec.doc_id!r} is empty for a hit")
            try:
                value = float(score) if score is not None else 0.0
            except (TypeError, ValueError) as exc:
                raise BackendError(f"search engine {spec.url}: score {score!r} is not a number") from exc
            title = self._title.search(h) if self._title is not None else None
            out.append(Hit(str(doc), value, "" if title is None else str(title)))
        return out

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-k hits per query, one request per query over the pooled client. Raises ``BackendError``."""
        if isinstance(queries, str):
            raise ConfigError("queries must be a sequence of strings, not one string; wrap it in a list")
        queries = list(queries)
        vectors: list[list[float] | None] = [None] * len(queries)
        if self.spec.needs_vector and queries:
            try:
                emb = self.encoder.encode(queries, batch_size=max(len(queries), 1), kind="query")
            except Exception as exc:
                raise BackendError(f"embedding the query for {self.spec.url} failed: {exc}") from exc
            vectors = [[float(x) for x in row] for row in emb]
        return [self._one(q, int(k), v) for q, v in zip(queries, vectors)]

    def ping(self) -> None:
        """Raise ``BackendError`` unless ``health_url`` answers 2xx (no-op without one)."""
        if self.spec.health_url is None:
            return
        try:
            resp = self._client.get(self.spec.health_url)
        except httpx.HTTPError as exc:
            raise BackendError(f"search engine health {self.spec.health_url} unreachable: {exc}") from exc
        if not 200 <= resp.status_code < 300:
            raise BackendError(f"search engine health {self.spec.health_url} answered {resp.status_code}")

    def close(self) -> None:
        self._client.close()
