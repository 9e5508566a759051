"""Open the search backends an experiment config names: one per arm (local FAISS + encoder, or a remote index server)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from abharness.backends.base import BackendInfo, SearchBackend
from abharness.config import ExperimentConfig, HttpBackendConfig, LocalBackendConfig
from abharness.core.hits import Hit
from abharness.errors import BackendError

__all__ = ["build_backends", "open_arm_backend", "UnavailableBackend"]

log = logging.getLogger(__name__)


class UnavailableBackend:
    """Stands in for a treatment arm whose backend could not be opened: every call raises ``BackendError`` (so
    the proxy falls back to control) until the background reconnect replaces it."""

    def __init__(self, arm: str, reason: str) -> None:
        self.arm = arm
        self.reason = reason
        self.info = BackendInfo(model_fingerprint="unavailable", index_fingerprint="unavailable", num_docs=0, dim=0)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        raise BackendError(f"arm {self.arm!r} is unavailable ({self.reason}); reconnecting in the background")

    def ping(self) -> None:
        raise BackendError(f"arm {self.arm!r} is unavailable ({self.reason})")

    def close(self) -> None:
        return None


def open_arm_backend(config: ExperimentConfig, name: str) -> SearchBackend:
    """Open the backend of arm ``name`` (local FAISS + encoder, or a remote index server)."""
    from abharness.backends.remote import RemoteBackend

    b = config.arm(name).backend
    if isinstance(b, LocalBackendConfig):
        from abharness.backends.local import open_local_backend

        return open_local_backend(
            b.index, b.model, cache_size=b.cache_size, max_batch=b.max_batch, max_wait_ms=b.max_wait_ms,
            max_parallel=b.max_parallel,
        )
    if isinstance(b, HttpBackendConfig):
        from abharness.backends.http import HttpBackend

        encoder = None
        if b.encoder is not None:
            from abharness.encoders.st import load_encoder

            encoder = load_encoder(b.encoder)
        return HttpBackend.from_config(
            b, timeout_s=max(config.timeouts.control_s, config.timeouts.shadow_s), encoder=encoder
        )
    return RemoteBackend(
        b.url, timeout_s=max(config.timeouts.control_s, config.timeouts.shadow_s), max_connections=b.max_connections
    )


def build_backends(config: ExperimentConfig, *, tolerate_treatments: bool = False) -> dict[str, SearchBackend]:
    """Open every arm's backend. Closes what it opened on error.

    With ``tolerate_treatments``, a treatment arm whose backend cannot be opened (``BackendError``: its index
    server is down) gets an ``UnavailableBackend`` instead of failing the start; control must open.
    """
    opened: dict[str, SearchBackend] = {}
    try:
        for arm in config.arms:
            try:
                opened[arm.name] = open_arm_backend(config, arm.name)
            except BackendError as exc:
                if not tolerate_treatments or arm.role == "control":
                    raise
                log.error("treatment arm %r is unavailable at start (%s); serving control for it and reconnecting "
                          "in the background", arm.name, exc)
                opened[arm.name] = UnavailableBackend(arm.name, "its backend could not be opened at start")
    except BaseException:
        for backend in opened.values():
            backend.close()
        raise
    return opened
