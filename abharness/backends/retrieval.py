"""Batched search of many queries through a ``SearchBackend``: what the replay and the demo use.

Who searches how (they do not all share one path):

* the proxy (``abharness.serve.service``) calls ``SearchBackend.search([query], k)`` once per request, in a worker
  thread with a per-arm timeout and fallback; the local backend micro-batches concurrent requests itself;
* the replay (``abharness.replay.runner``) and the demo call :func:`search` here, which hands the backend
  ``batch_size`` queries at a time: the same backend objects, encoders and indexes the proxy serves with;
* the offline evaluation (``abharness.evaluation.context``) uses no backend: it encodes through the embedding cache
  and ranks with ``FaissIndex.search_vectors`` on an exact (flat) index it builds per model.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from abharness.backends.base import SearchBackend
from abharness.core.hits import Hit
from abharness.errors import BackendError, ConfigError

__all__ = ["search"]


def search(
    backend: SearchBackend, queries: Sequence[str], k: int, batch_size: int = 64, *, progress: bool = False
) -> list[list[Hit]]:
    """Top-k hits for every query, in order, asking ``backend`` ``batch_size`` queries at a time.

    Checks that the backend answers once per query (else ``BackendError``), so a misbehaving remote backend cannot
    silently shift results onto the wrong queries.
    """
    if isinstance(queries, str):
        raise ConfigError("queries must be a sequence of strings, not one string; wrap it in a list")
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"k={k!r}; expected a positive integer")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}; expected a positive integer")
    queries = list(queries)
    results: list[list[Hit]] = []
    with Progress(
        TextColumn("searching"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), disable=not progress
    ) as bar:
        task = bar.add_task("search", total=len(queries))
        for start in range(0, len(queries), batch_size):
            chunk = queries[start : start + batch_size]
            hits = backend.search(chunk, k)
            if len(hits) != len(chunk):
                raise BackendError(f"backend answered {len(hits)} result lists for {len(chunk)} queries")
            results.extend(hits)
            bar.advance(task, len(chunk))
    return results
