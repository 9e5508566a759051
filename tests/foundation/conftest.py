"""Fixtures for the foundation tests: the packaged model (loaded once), a SciFact slice, a tiny fake encoder."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from abharness.data import RetrievalDataset, load_beir, slice_dataset


class BagOfWordsEncoder:
    """A deterministic hashing bag-of-words encoder: fast, model-free, and good enough to rank exact word overlap.

    Counts its calls and the texts it saw so batching and caching can be checked.
    """

    def __init__(self, dim: int = 64, name: str = "bow", fingerprint: str = "bow0000000000000") -> None:
        self.name = name
        self.fingerprint = fingerprint
        self.dim = dim
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False, kind: str = "query"
    ) -> np.ndarray:
        with self._lock:
            self.calls.append(len(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out[:, 0] += (norms[:, 0] == 0).astype(np.float32)  # empty text -> a fixed unit vector
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def bow() -> BagOfWordsEncoder:
    return BagOfWordsEncoder()


@pytest.fixture(scope="session")
def minilm():
    from abharness.encoders import load_encoder

    return load_encoder("minilm")


@pytest.fixture(scope="session")
def scifact_test(shared_data: Path) -> RetrievalDataset:
    return load_beir(shared_data / "scifact", "test")


@pytest.fixture(scope="session")
def scifact_slice(scifact_test: RetrievalDataset) -> RetrievalDataset:
    """30 test queries, their judged abstracts and 170 distractors (about 200 documents)."""
    return slice_dataset(scifact_test, 30, 170, seed=7)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write into the user's real cache from a test."""
    monkeypatch.setenv("ABHARNESS_CACHE", str(tmp_path_factory.getbasetemp() / "abharness-cache"))
