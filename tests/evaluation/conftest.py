"""Fixtures for the evaluation tests: a fake (hashing) encoder, a small BEIR-layout data directory built from
slices of the real shared data, a small suite, and one session-scoped MiniLM encoder."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from abharness.data import load_beir, slice_dataset
from abharness.data.types import RetrievalDataset

_WORD = re.compile(r"[a-z0-9]+")


class HashEncoder:
    """A deterministic stand-in ``Encoder``: the sum of seeded random vectors of the words, L2-normalised.
    Texts sharing words get similar vectors, so retrieval and STS give non-trivial numbers quickly."""

    def __init__(self, name: str, seed: int = 0, dim: int = 64) -> None:
        self.name = name
        self.dim = dim
        self.seed = seed
        self.fingerprint = hashlib.sha256(f"hash-{name}-{seed}-{dim}".encode()).hexdigest()[:16]

    def _word(self, word: str) -> np.ndarray:
        h = int.from_bytes(hashlib.sha256(f"{self.seed}:{word}".encode()).digest()[:8], "little")
        return np.random.default_rng(h).standard_normal(self.dim)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False,
               kind: str = "query") -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = _WORD.findall(text.lower()) or ["<empty>"]
            v = sum(self._word(w) for w in words)
            out[i] = v / np.linalg.norm(v)
        return out


def _write_beir(ds_by_split: dict[str, RetrievalDataset], out: Path) -> Path:
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    corpus, queries = {}, {}
    for ds in ds_by_split.values():
        corpus.update(ds.corpus)
        queries.update(ds.queries)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for d in corpus.values():
            f.write(json.dumps({"_id": d.doc_id, "title": d.title, "text": d.text}) + "\n")
    with (out / "queries.jsonl").open("w", encoding="utf-8") as f:
        for q, t in queries.items():
            f.write(json.dumps({"_id": q, "text": t}) + "\n")
    for split, ds in ds_by_split.items():
        with (out / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for q, docs in ds.qrels.items():
                for d, g in docs.items():
                    f.write(f"{q}\t{d}\t{g}\n")
    return out


@pytest.fixture(scope="session")
def mini_data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory like ../shared/data but small: SciFact test 24 q + train 40 q over ~300 docs,
    Cranfield/CISI test 10 q over ~150 docs; STS-B, SICK and TREC linked as is (the suite samples them)."""
    root = tmp_path_factory.mktemp("mini-data")
    sci = {s: slice_dataset(load_beir(shared_data / "scifact", s), n, 120, seed=1)
           for s, n in (("test", 24), ("train", 40))}
    _write_beir(sci, root / "scifact")
    for name in ("cranfield", "cisi"):
        ds = slice_dataset(load_beir(shared_data / name, "test", empty_docs="keep"), 10, 120, seed=2)
        _write_beir({"test": ds}, root / name)
    for name in ("stsbenchmark", "sick", "trec_qc"):
        (root / name).symlink_to(shared_data / name, target_is_directory=True)
    return root


SMALL = {
    "n_resamples": 500,
    "sts": {"sets": [{"dataset": "stsbenchmark", "loader": "stsb", "max_pairs": 150},
                     {"dataset": "sick", "loader": "sick", "max_pairs": 150}]},
    "classification": {"max_train": 240},
    "clustering": {"max_items": 120, "n_init": 3},
    "geometry": {"random_pairs": 500},
    "maps": {"sample": 60},
}


@pytest.fixture(scope="session")
def small() -> dict:
    """Suite overrides that keep a full evaluation to seconds (samples of STS, TREC; few resamples)."""
    return json.loads(json.dumps(SMALL))


@pytest.fixture(scope="session")
def hash_encoder() -> type[HashEncoder]:
    """The fake encoder class: ``hash_encoder("name", seed)``."""
    return HashEncoder


@pytest.fixture()
def eval_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ABHARNESS_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2, loaded once per session."""
    from abharness.encoders import load_encoder

    return load_encoder("minilm")
