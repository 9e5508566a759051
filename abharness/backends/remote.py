"""A ``SearchBackend`` that calls an ``abharness index-server`` over HTTP with a pooled ``httpx.Client``.

Wire format (served by ``abharness.api.index_server``):

    GET  /info    -> {"model_fingerprint", "index_fingerprint", "num_docs", "dim"}
    POST /search  {"queries": [...], "k": 10} -> {"results": [[{"doc_id", "score", "title"}, ...], ...]}
    GET  /readyz  -> 200 when the index is loaded

The client is thread-safe and keeps connections alive, so the proxy's worker threads share one pool. Every
failure (connect error, timeout, non-200, malformed payload) becomes a ``BackendError`` naming the URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from abharness.backends.base import BackendInfo
from abharness.core.hits import Hit
from abharness.errors import BackendError

__all__ = ["RemoteBackend"]


class RemoteBackend:
    """One arm served by a remote index server. ``info`` is fetched once at construction."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 2.0,
        connect_timeout_s: float = 1.0,
        max_connections: int = 64,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )
        try:
            self.info = self._fetch_info()
        except BaseException:
            self._client.close()
            raise

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise BackendError(f"index server {self.url}{path} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise BackendError(
                f"index server {self.url}{path} unreachable ({type(exc).__name__}: {exc}); is it running?"
            ) from exc
        if resp.status_code != 200:
            raise BackendError(f"index server {self.url}{path} answered {resp.status_code}: {resp.text[:200]}")
        try:
            return resp.json()
        except ValueError as exc:
            raise BackendError(f"index server {self.url}{path} sent invalid JSON") from exc

    def _fetch_info(self) -> BackendInfo:
        data = self._request("GET", "/info")
        try:
            return BackendInfo(
                model_fingerprint=str(data["model_fingerprint"]),
                index_fingerprint=str(data["index_fingerprint"]),
                num_docs=int(data["num_docs"]),
                dim=int(data["dim"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"index server {self.url}/info sent an unexpected payload: {data!r:.200}") from exc

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-k hits per query from the remote index; raises ``BackendError`` on any failure."""
        data = self._request("POST", "/search", json={"queries": list(queries), "k": int(k)})
        try:
            results = [
                [Hit(str(h["doc_id"]), float(h["score"]), str(h.get("title", ""))) for h in row]
                for row in data["results"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"index server {self.url}/search sent an unexpected payload") from exc
        if len(results) != len(queries):
            raise BackendError(f"index server {self.url} returned {len(results)} lists for {len(queries)} queries")
        return results

    def ping(self) -> None:
        """Raise ``BackendError`` unless the index server reports ready; refresh ``info``, so a redeploy of the
        index server behind a running proxy shows in the fingerprints recorded with the next impressions."""
        self._request("GET", "/readyz")
        self.info = self._fetch_info()

    def close(self) -> None:
        self._client.close()
