"""The retrieval backend Protocol: a batch of query texts in, top-k hits out.

The proxy (one query per request, ``abharness.serve.service``) and the replay (batches, through
``abharness.backends.retrieval.search``) call ``search`` through this Protocol, so a replay ranks with the same
backend the proxy served. The offline evaluation does not: it ranks with ``FaissIndex.search_vectors`` over cached
embeddings (see ``abharness.backends.retrieval``). Implementations: in-process FAISS + encoder
(``abharness.backends.local``) and a remote index server over HTTP (``abharness.backends.remote``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from abharness.core.hits import Hit

__all__ = ["SearchBackend", "BackendInfo"]


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """What an arm's backend serves: fingerprints recorded with every exposure."""

    model_fingerprint: str
    index_fingerprint: str
    num_docs: int
    dim: int


@runtime_checkable
class SearchBackend(Protocol):
    info: BackendInfo

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-k hits per query, best first. Raises ``BackendError`` on failure."""

    def close(self) -> None:
        """Release resources (threads, HTTP pools)."""
