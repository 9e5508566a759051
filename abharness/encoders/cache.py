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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from abharness.data.download import cache_root
from abharness.encoders.base import Encoder
from abharness.errors import ConfigError

__all__ = ["encode_cached", "encode_cached_side_by_side", "embeddings_cache_dir", "cache_path"]

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


def _is_cached(path: Path, n: int, dim: int) -> bool:
    try:
        cached = np.load(path, mmap_mode="r", allow_pickle=False)
        return cached.shape == (n, dim) and cached.dtype == np.float32
    except (OSError, ValueError):
        return False


def encode_cached_side_by_side(
    jobs: Sequence[tuple[Encoder, Sequence[str], str]],
    *,
    cache_dir: Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
    kind: str = "document",
) -> list[np.ndarray]:
    """``encode_cached`` for each ``(encoder, texts, key)`` job, in order. When two or more jobs miss the cache and
    their encoders are distinct torch (sentence-transformers) models, those jobs run at once, each in its own
    thread, with the process's torch threads split between them (2 CPUs: two encodes of one thread each, instead
    of one after the other at two threads each): long documents through MiniLM keep one core busier than two
    threads keep two (docs/performance.md, "The cold demo"). The embeddings are those of ``encode_cached`` up to
    float noise (a GEMM split over fewer threads rounds differently). Otherwise the jobs run one after the other.
    With ``progress`` the first concurrent job shows its bar; the others run with theirs off (rich shows one live
    display at a time)."""
    from abharness.encoders.st import SentenceTransformerEncoder

    jobs = [(encoder, list(texts), key) for encoder, texts, key in jobs]
    missing = [i for i, (encoder, texts, key) in enumerate(jobs)
               if not _is_cached(cache_path(encoder, texts, key=key, kind=kind, cache_dir=cache_dir), len(texts),
                                 encoder.dim)]
    together = [i for i in missing if isinstance(jobs[i][0], SentenceTransformerEncoder)]
    together = [i for n, i in enumerate(together) if all(jobs[j][0] is not jobs[i][0] for j in together[:n])]
    out: dict[int, np.ndarray] = {}
    total = 1
    if len(together) >= 2:
        import torch

        total = torch.get_num_threads()
    if total >= 2:
        together = together[:total]
        each = max(1, total // len(together))

        def run(i: int, show: bool) -> np.ndarray:
            torch.set_num_threads(each)  # this thread's own OpenMP setting (and the process default meanwhile)
            encoder, texts, key = jobs[i]
            return encode_cached(encoder, texts, key=key, cache_dir=cache_dir, batch_size=batch_size, progress=show,
                                 kind=kind)

        torch.set_num_threads(each)
        try:
            with ThreadPoolExecutor(max_workers=len(together), thread_name_prefix="encode-side-by-side") as pool:
                futures = {i: pool.submit(run, i, progress and n == 0) for n, i in enumerate(together)}
                out = {i: f.result() for i, f in futures.items()}
        finally:
            torch.set_num_threads(total)
    return [out[i] if i in out else encode_cached(encoder, texts, key=key, cache_dir=cache_dir,
                                                    batch_size=batch_size, progress=progress, kind=kind)
            for i, (encoder, texts, key) in enumerate(jobs)]
