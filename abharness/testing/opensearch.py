"""A loopback stand-in for OpenSearch's ``_search`` API (tests and the http-backend benchmark).

It answers with the response shapes OpenSearch 2.x sends (``took``, ``timed_out``, ``_shards``, ``hits.total``,
``hits.max_score``, ``hits.hits[]._index/_id/_score/_source``) for ``match`` and ``knn`` queries over a small corpus,
and with OpenSearch's error bodies (``{"error": {"root_cause": [...], "type", "reason"}, "status"}``) when told to:
``app.state.fault`` is ``None`` or one of ``"400"`` (parsing_exception), ``"500"``
(search_phase_execution_exception), ``"429"`` (es_rejected_execution_exception), ``"partial"`` (200 with
``timed_out: true`` and a failed shard), ``"slow"`` (answers after ``app.state.delay_s``). ``app.state.requests``
records every request body. ``HashEncoder`` embeds texts deterministically (the server's doc vectors and a client's
query vectors agree), so knn results are meaningful without a model.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

__all__ = ["HashEncoder", "opensearch_app"]

_WORD = re.compile(r"\w+")


class HashEncoder:
    """Bag of hashed words, L2-normalised (an ``Encoder`` for tests)."""

    name = "hash-encoder"
    fingerprint = "hash-encoder-v1"

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False,
               kind: str = "query") -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for w in _WORD.findall(text.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest()[:8], 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


def _error(status: int, kind: str, reason: str, **extra: Any) -> JSONResponse:
    cause = {"type": kind, "reason": reason}
    return JSONResponse({"error": {"root_cause": [cause], "type": kind, "reason": reason, **extra},
                         "status": status}, status_code=status)


def opensearch_app(docs: Mapping[str, str], *, index: str = "docs", title_field: str = "title",
                   text_field: str = "text", vector_field: str = "embedding") -> FastAPI:
    """A FastAPI app serving ``POST /{index}/_search`` over ``docs`` (doc id -> text)."""
    app = FastAPI()
    app.state.fault = None
    app.state.delay_s = 0.0
    app.state.requests = []
    ids = list(docs)
    encoder = HashEncoder()
    matrix = encoder.encode([docs[d] for d in ids], kind="document")
    words = {d: _WORD.findall(docs[d].lower()) for d in ids}

    @app.get("/")
    async def root() -> dict[str, Any]:
        return {"name": "stand-in", "cluster_name": "abharness-test", "version": {"distribution": "opensearch",
                                                                                 "number": "2.17.0"}}

    @app.post("/{name}/_search")
    async def search(name: str, request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        fault = app.state.fault
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "parse_exception", "request body is required")
        app.state.requests.append({"index": name, "body": body, "headers": dict(request.headers)})
        if name != index:
            return _error(404, "index_not_found_exception", f"no such index [{name}]", index=name,
                          **{"resource.type": "index_or_alias", "resource.id": name})
        if fault == "slow":
            await asyncio.sleep(app.state.delay_s)
        if fault == "400":
            return _error(400, "parsing_exception", "unknown query [mtch]", line=1, col=30)
        if fault == "429":
            return _error(429, "es_rejected_execution_exception",
                          "rejected execution of coordinating operation [shard_detail=[docs][0][P]]")
        if fault == "500":
            return _error(500, "search_phase_execution_exception", "all shards failed", phase="query",
                          grouped=True, failed_shards=[{"shard": 0, "index": index, "node": "n1", "reason": {
                              "type": "illegal_argument_exception", "reason": "field [x] not found"}}])
        size = int(body.get("size", 10))
        query = body.get("query", {})
        if "match" in query:
            text = str(query["match"][text_field]).lower()
            qw = set(_WORD.findall(text))
            scored = [(d, float(sum(w in qw for w in words[d]))) for d in ids]
            scored = [(d, s) for d, s in scored if s > 0]
        elif "knn" in query:
            spec = query["knn"][vector_field]
            vec = np.asarray(spec["vector"], dtype=np.float32)
            if vec.shape != (encoder.dim,):
                return _error(400, "illegal_argument_exception",
                              f"Query vector has invalid dimension: {vec.size}. Dimension should be: {encoder.dim}")
            sims = matrix @ vec
            scored = [(d, float(1.0 / (2.0 - s))) for d, s in zip(ids, sims.tolist())]  # OpenSearch's cosine
            scored.sort(key=lambda x: (-x[1], x[0]))
            scored = scored[: int(spec.get("k", size))]
        else:
            return _error(400, "parsing_exception", f"unknown query {list(query)}")
        scored.sort(key=lambda x: (-x[1], x[0]))
        hits = [{"_index": index, "_id": d, "_score": s,
                 "_source": {title_field: f"Title {d}", text_field: docs[d]}} for d, s in scored[:size]]
        partial = fault == "partial"
        return JSONResponse({
            "took": max(1, int((time.perf_counter() - t0) * 1000)),
            "timed_out": partial,
            "_shards": {"total": 2, "successful": 1 if partial else 2, "skipped": 0, "failed": 1 if partial else 0},
            "hits": {"total": {"value": len(scored), "relation": "eq"},
                     "max_score": hits[0]["_score"] if hits else None, "hits": hits},
        })

    return app
