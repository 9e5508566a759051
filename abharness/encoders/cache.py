"""On-disk embedding cache keyed by (encoder fingerprint, kind, caller key, texts hash).

Index building and offline evaluation both encode whole corpora; with the cache a re-run with the same model and
corpus loads an ``.npy`` file instead of re-encoding.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from abharness.data.download import cache_root
from abharness.encoders.base import Encoder
from abharness.errors import ConfigError

__all__ = ["encode_cached", "embeddings_cache_dir", "cache_path"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def embeddings_cache_dir() -> Path:
    """``$ABHARNESS_CACHE/embeddings`` or the platform user cache dir / "abharness" / "embeddings"."""
    return cache_root() / "embeddings"


def _texts_hash(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]


def cache_path(encoder: Encoder, texts: Sequence[str], *, key: str, kind: str, cache_dir: Path | None = None) -> Path:
    """Where ``encode_cached`` keeps these embeddings. The texts hash guards against a key reused for other texts."""
    if not key:
        raise ConfigError("encode_cached needs a non-empty key (e.g. the corpus hash)")
    safe_key = _SAFE.sub("_", key)[:80]
    name = f"{encoder.fingerprint}-{kind}-{safe_key}-{len(texts)}-{_texts_hash(texts)}.npy"
    return (cache_dir or embeddings_cache_dir()) / name


def encode_cached(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    key: str,
    cache_dir: Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
    kind: str = "document",
) -> np.ndarray:
    """Encode ``texts`` (float32, unit-norm rows) or load them from the cache. Written atomically (temp + rename),
    so concurrent runs never read half a file; a cached file of the wrong shape is ignored and rewritten."""
    texts = list(texts)
    path = cache_path(encoder, texts, key=key, kind=kind, cache_dir=cache_dir)
    if path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == (len(texts), encoder.dim) and cached.dtype == np.float32:
                return cached
        except (OSError, ValueError):
            pass  # unreadable: recompute below
    vectors = np.ascontiguousarray(
        encoder.encode(texts, batch_size=batch_size, show_progress=progress, kind=kind), dtype=np.float32
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, vectors, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return vectors
