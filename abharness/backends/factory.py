"""Open the search backends an experiment config names: one per arm (local FAISS + encoder, or a remote index server)."""

from __future__ import annotations

from abharness.backends.base import SearchBackend
from abharness.config import ExperimentConfig, LocalBackendConfig

__all__ = ["build_backends"]


def build_backends(config: ExperimentConfig) -> dict[str, SearchBackend]:
    """Open every arm's backend (local FAISS + encoder, or a remote index server). Closes what it opened on error."""
    from abharness.backends.remote import RemoteBackend

    opened: dict[str, SearchBackend] = {}
    try:
        for arm in config.arms:
            b = arm.backend
            if isinstance(b, LocalBackendConfig):
                from abharness.backends.local import open_local_backend

                opened[arm.name] = open_local_backend(
                    b.index, b.model, cache_size=b.cache_size, max_batch=b.max_batch, max_wait_ms=b.max_wait_ms
                )
            else:
                opened[arm.name] = RemoteBackend(
                    b.url, timeout_s=max(config.timeouts.control_s, config.timeouts.shadow_s),
                    max_connections=b.max_connections,
                )
    except BaseException:
        for backend in opened.values():
            backend.close()
        raise
    return opened
