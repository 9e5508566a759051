"""Fine-tuning: pairs, duplicate-free batches, mined negatives, and a real one-epoch run that writes a manifest."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from abharness.data import load_beir, slice_dataset, text_sha256
from abharness.encoders import fingerprint_dir, load_encoder
from abharness.errors import ConfigError, DataError, ModelError
from abharness.finetune import (
    MANIFEST_NAME,
    Example,
    FinetuneParams,
    duplicate_free_batches,
    finetune,
    mine_hard_negatives,
    read_manifest,
    training_pairs,
)


@pytest.fixture(scope="module")
def train_slice(shared_data: Path):
    return slice_dataset(load_beir(shared_data / "scifact", "train"), 30, 40, seed=11)


def test_training_pairs_follow_qrels(train_slice) -> None:
    pairs = training_pairs(train_slice)
    assert {(e.query_id, e.doc_id) for e in pairs} == {
        (q, d) for q, rels in train_slice.qrels.items() for d, s in rels.items() if s > 0
    }
    subset = training_pairs(train_slice, max_pairs=10, seed=1)
    assert len(subset) == 10 and subset == training_pairs(train_slice, max_pairs=10, seed=1)
    with pytest.raises(ConfigError):
        training_pairs(train_slice, max_pairs=1)


def test_duplicate_free_batches() -> None:
    # query q0 has three positives, and doc d0 is the positive of two queries
    examples = [Example("q0", "d0"), Example("q0", "d1"), Example("q0", "d2"), Example("q1", "d0")]
    examples += [Example(f"q{i}", f"d{i}") for i in range(2, 40)]
    batches = duplicate_free_batches(examples, 8, random.Random(0))
    for batch in batches:
        assert 2 <= len(batch) <= 8
        assert len({e.query_id for e in batch}) == len(batch)
        assert len({e.doc_id for e in batch}) == len(batch)
    kept = [e for b in batches for e in b]
    assert len(kept) == len(set(kept)) and len(kept) >= len(examples) - 2  # at most a trailing singleton dropped
    assert batches == duplicate_free_batches(examples, 8, random.Random(0))
    assert batches != duplicate_free_batches(examples, 8, random.Random(1))
    with pytest.raises(ConfigError):
        duplicate_free_batches(examples, 1, random.Random(0))


def test_mined_negatives_are_unjudged_and_in_rank_range(bow, train_slice, tmp_path: Path) -> None:
    examples = training_pairs(train_slice)
    mined = mine_hard_negatives(bow, train_slice, examples, per_pair=2, rank_range=(2, 12), seed=3, progress=False)
    assert [(e.query_id, e.doc_id) for e in mined] == [(e.query_id, e.doc_id) for e in examples]
    doc_ids = list(train_slice.corpus)
    doc_vectors = bow.encode([train_slice.corpus[d].full_text for d in doc_ids])
    for e in mined:
        assert len(e.negative_ids) == 2 and not set(e.negative_ids) & set(train_slice.qrels[e.query_id])
        scores = doc_vectors @ bow.encode([train_slice.queries[e.query_id]])[0]
        ranked = [doc_ids[i] for i in (-scores).argsort()]
        assert all(2 <= ranked.index(n) < 12 for n in e.negative_ids)
    with pytest.raises(DataError, match="widen rank_range"):
        mine_hard_negatives(bow, train_slice, examples, per_pair=5, rank_range=(0, 3), progress=False)


def test_params_are_validated(train_slice, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lr=2.0"):
        finetune(train_slice, base="minilm", out_dir=tmp_path / "m", params=FinetuneParams(lr=2.0))
    with pytest.raises(ConfigError, match=r"trainer='hf'; expected one of st, loop"):
        finetune(train_slice, base="minilm", out_dir=tmp_path / "m", params=FinetuneParams(trainer="hf"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        finetune(train_slice, base="minilm", out_dir=tmp_path / "busy")


@pytest.mark.model
@pytest.mark.parametrize("trainer", ["st", "loop"])
def test_one_epoch_on_a_few_dozen_pairs_writes_model_and_manifest(trainer, train_slice, minilm, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    params = FinetuneParams(epochs=1, batch_size=8, max_seq_length=64, max_pairs=32, trainer=trainer)
    manifest = finetune(train_slice, base="minilm", out_dir=out, params=params, seed=5, progress=False)
    on_disk = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    for key in ("base_model", "base_fingerprint", "fingerprint", "data_path", "data_hash", "split", "query_ids",
                "doc_ids", "pairs", "query_texts_sha256", "hyperparameters", "seed", "wall_seconds"):
        assert key in on_disk, key
    assert read_manifest(out) == manifest
    assert manifest.base_fingerprint == minilm.fingerprint != manifest.fingerprint
    assert manifest.fingerprint == fingerprint_dir(out)
    assert len(manifest.pairs) == 32 and manifest.split == "train" and manifest.seed == 5
    assert {q for q, _ in manifest.pairs} == set(manifest.query_ids)
    assert all(train_slice.qrels[q][d] > 0 for q, d in manifest.pairs)
    assert manifest.query_texts_sha256 == [text_sha256(train_slice.queries[q]) for q in manifest.query_ids]
    assert manifest.hyperparameters["batch_size"] == 8 and len(manifest.train_loss) == 1
    assert manifest.hyperparameters["trainer"] == trainer and manifest.train_loss[0] > 0
    tuned = load_encoder(out)
    assert tuned.fingerprint == manifest.fingerprint
    assert tuned.model.max_seq_length == minilm.model.max_seq_length == 256  # training truncation not saved
    a = tuned.encode(["Aspirin prevents heart attacks."])
    b = minilm.encode(["Aspirin prevents heart attacks."])
    assert float(a[0] @ b[0]) < 0.99999  # the weights moved
    assert read_manifest(tmp_path) is None


def test_read_manifest_errors(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ModelError, match="malformed JSON"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"base_model": "minilm"}))
    with pytest.raises(ModelError, match="missing keys"):
        read_manifest(tmp_path)
